/* buf.c — the growable buffer (proto/buf.c): appends, printf, NUL termination, oom that
 * sticks, handing over, and gp_grow's doubling and overflow refusal. */
#include "buf.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Test(buf, appends_keep_a_nul_and_grow) {
    gp_buf b = {0};
    cr_assert_eq(gp_buf_add(&b, "", 0), 0);
    cr_assert_not_null(b.p);
    cr_assert_str_eq(b.p, "");
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(gp_buf_printf(&b, "%d,", i % 10), 0);
    cr_assert_eq(b.len, 2000);
    cr_assert_eq(b.p[b.len], '\0');
    cr_assert_geq(b.cap, b.len + 1);
    cr_assert_eq(strncmp(b.p, "0,1,2,", 6), 0);
    cr_assert_eq(gp_buf_add(&b, "\0x", 2), 0, "binary bytes are fine");
    cr_assert_eq(b.len, 2002);
    cr_assert_eq(b.p[2001], 'x');
    gp_buf_puts(&b, "end");
    size_t len;
    char *s = gp_buf_take(&b, &len);
    cr_assert_eq(len, 2005);
    cr_assert_str_eq(s + 2002, "end");
    cr_assert_null(b.p);
    cr_assert_eq(b.len, 0);
    free(s);
}

Test(buf, long_printf_in_one_go) {
    gp_buf b = {0};
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(gp_buf_printf(&b, "<%s>", big), 0);
    cr_assert_eq(b.len, sizeof big + 1);
    cr_assert_eq(b.p[0], '<');
    cr_assert_eq(b.p[b.len - 1], '>');
    gp_buf_free(&b);
    gp_buf_free(NULL);
}

Test(buf, oom_sticks_and_take_gives_null) {
    gp_buf b = {0};
    gp_buf_puts(&b, "abc");
    cr_assert_eq(gp_buf_reserve(&b, SIZE_MAX - 2), -1, "a size that overflows is refused");
    cr_assert(b.oom);
    cr_assert_eq(gp_buf_puts(&b, "more"), -1, "later appends are dropped");
    cr_assert_str_eq(b.p, "abc");
    cr_assert_null(gp_buf_take(&b, NULL));
    cr_assert_null(b.p);
}

Test(buf, take_of_empty_is_an_empty_string) {
    gp_buf b = {0};
    size_t len = 99;
    char *s = gp_buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(s, "");
    free(s);
}

Test(buf, grow_doubles_from_first_and_refuses_overflow) {
    int *a = NULL;
    size_t cap = 0;
    cr_assert_eq(gp_grow(&a, &cap, 1, 16, sizeof *a), 0);
    cr_assert_eq(cap, 16);
    a[15] = 7;
    cr_assert_eq(gp_grow(&a, &cap, 16, 16, sizeof *a), 0);
    cr_assert_eq(cap, 16, "enough room: unchanged");
    cr_assert_eq(gp_grow(&a, &cap, 100, 16, sizeof *a), 0);
    cr_assert_eq(cap, 128);
    cr_assert_eq(a[15], 7, "content kept");
    int *before = a;
    cr_assert_eq(gp_grow(&a, &cap, SIZE_MAX / 2, 16, sizeof *a), -1);
    cr_assert_eq(a, before);
    cr_assert_eq(cap, 128);
    free(a);
}
