/* cli_esc.c — escaping of terminal control characters in the CLI's output
 * (bridge/cli/cli_esc.c): C0, DEL, C1 as UTF-8 and as raw bytes, invalid UTF-8; valid text kept. */
#include "../../bridge/cli/cli_esc.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void check(const char *in, size_t len, const char *want) {
    char *got = cli_esc_dup(in, len);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    cr_assert_eq(cli_esc(NULL, 0, in, len), strlen(want), "the needed length");
    free(got);
}
#define CHECK(lit, want) check(lit, sizeof lit - 1, want)

Test(cli_esc, plain_text_and_utf8_kept) {
    CHECK("text/html; charset=utf-8", "text/html; charset=utf-8");
    CHECK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 a\\b",
          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 a\\b");
    CHECK("\xc2\xa0nbsp", "\xc2\xa0nbsp"); /* U+00A0: first code point after C1 */
    CHECK("", "");
}

Test(cli_esc, c0_and_del) {
    CHECK("a\r\nSet-Cookie: x=1", "a\\r\\nSet-Cookie: x=1");
    CHECK("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07");
    CHECK("tab\there", "tab\\there");
    CHECK("nul\0end", "nul\\x00end");
    CHECK("del\x7f", "del\\x7f");
    CHECK("\x0b\x0c\x1f", "\\x0b\\x0c\\x1f");
}

Test(cli_esc, c1_as_utf8) {
    /* U+009D (OSC), U+009B (CSI), U+0080, U+009F */
    CHECK("\xc2\x9d"
          "0;t\xc2\x9c",
          "\\u009d0;t\\u009c");
    CHECK("\xc2\x9b"
          "2J",
          "\\u009b2J");
    CHECK("\xc2\x80\xc2\x9f", "\\u0080\\u009f");
}

Test(cli_esc, invalid_utf8_bytes) {
    CHECK("\x9d"
          "0;t\x07",
          "\\x9d0;t\\x07"); /* raw C1 byte: 8-bit terminals obey it */
    CHECK("\x80\x9f", "\\x80\\x9f");
    CHECK("latin1 \xe9t\xe9", "latin1 \\xe9t\\xe9");
    CHECK("\xc0\x9d", "\\xc0\\x9d");                   /* overlong form of U+001D */
    CHECK("\xe0\x82\x9d", "\\xe0\\x82\\x9d");          /* overlong U+009D in 3 bytes */
    CHECK("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* surrogate */
    CHECK("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
    CHECK("cut \xe2\x82", "cut \\xe2\\x82");           /* truncated sequence */
    CHECK("\xc2", "\\xc2");
}

Test(cli_esc, truncation_never_splits) {
    char out[8];
    size_t need = cli_esc(out, sizeof out,
                          "ab\x1b"
                          "cdef",
                          7);
    cr_assert_eq(need, 10);
    cr_assert_str_eq(out, "ab\\x1bc", "an escape is written whole or not at all");
    need = cli_esc(out, 5, "abc\xe2\x82\xac", 6);
    cr_assert_str_eq(out, "abc", "a UTF-8 character is written whole or not at all");
    cr_assert_eq(need, 6);
    cli_esc(out, 1, "abc", 3);
    cr_assert_str_eq(out, "");
    char big[64];
    cr_assert_str_eq(cli_esc_str(big, sizeof big, "x\ny"), "x\\ny");
}
