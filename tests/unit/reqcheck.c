/* Unit tests for house/reqcheck.c: path normalisation under a service's base path (RFC 3986
 * remove_dot_segments with percent-encoded dots, refusals for paths that would leave the
 * base or that a server could read differently) and the header name/value checks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../house/reqcheck.h"

static const char *clean(const char *in, char *out, size_t cap) {
    const char *why = NULL;
    int n = hs_path_clean(in, strlen(in), out, cap, &why);
    if (n < 0) {
        cr_assert_not_null(why, "%s: refused without a reason", in);
        return NULL;
    }
    cr_assert_eq((size_t)n, strlen(out), "%s: length %d for '%s'", in, n, out);
    cr_assert_leq((size_t)n, strlen(in), "%s: result '%s' longer than the input", in, out);
    return out;
}

Test(reqcheck, dot_segments_inside_the_base_are_resolved) {
    static const char *const cases[][2] = {
        {"/", "/"},
        {"/a/b", "/a/b"},
        {"/a/./b/../c", "/a/c"},
        {"/a/b/..", "/a/"},
        {"/a/b/.", "/a/b/"},
        {"/.", "/"},
        {"/a/..", "/"},
        {"/a/%2e%2E/b", "/b"},
        {"/a/.%2e/b", "/b"},
        {"/a/%2e/b", "/a/b"},
        {"/a//../b", "/a/b"},
        {"/a/b/../c?x=/../../y", "/a/c?x=/../../y"},
        {"/a/..?q", "/?q"},
        {"/a#/../../x", "/a#/../../x"},
        {"/...", "/..."},
        {"/.a/..b/a..", "/.a/..b/a.."},
        {"/%2e%2e%2e", "/%2e%2e%2e"},
        {"/%2", "/%2"},
        {"/a;b/c", "/a;b/c"},
        {"/echo?ok=1", "/echo?ok=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[64];
        const char *got = clean(cases[i][0], out, sizeof out);
        cr_assert_not_null(got, "%s: refused", cases[i][0]);
        cr_assert_str_eq(got, cases[i][1], "%s: got '%s', want '%s'", cases[i][0], got,
                         cases[i][1]);
    }
}

Test(reqcheck, paths_that_would_leave_the_base_are_refused) {
    static const char *const bad[] = {
        "/..",
        "/../../outside/p13",
        "/%2e%2e/outside",
        "/%2E%2E/outside",
        "/.%2e/outside",
        "/%2e./outside",
        "/a/../../outside",
        "/a/b/../../../c",
        "/./../x",
        "/a/%2e%2e/%2e%2e",
        "/..\\outside",
        "/a\\b",
        "/..%2foutside",
        "/..%2Foutside",
        "/a%5c..%5c..",
        "/a%5C",
        "/a%00b",
        "/..;/outside",
        "/.;x/a",
        "/%2e%2e;jsessionid=1/x",
        "",
        "a/b",
        "?x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[64];
        const char *got = clean(bad[i], out, sizeof out);
        cr_assert_null(got, "'%s' was accepted as '%s'", bad[i], got ? got : "");
    }
}

Test(reqcheck, refusal_reasons_are_clear) {
    char out[64];
    const char *why = NULL;
    cr_assert_lt(hs_path_clean("/../x", 5, out, sizeof out, &why), 0);
    cr_assert(strstr(why, "leaves the service's base path"), "reason: %s", why);
    cr_assert_lt(hs_path_clean("/a%2fb", 6, out, sizeof out, &why), 0);
    cr_assert(strstr(why, "%2f"), "reason: %s", why);
}

Test(reqcheck, the_query_may_hold_anything) {
    char out[64];
    cr_assert_not_null(clean("/a?%2f\\..", out, sizeof out));
    cr_assert_str_eq(out, "/a?%2f\\..");
}

Test(reqcheck, a_small_buffer_is_refused_not_overrun) {
    char out[5];
    const char *why = NULL;
    cr_assert_lt(hs_path_clean("/abcd", 5, out, sizeof out, &why), 0);
    cr_assert_eq(hs_path_clean("/abc", 4, out, sizeof out, &why), 4);
    cr_assert_str_eq(out, "/abc");
}

Test(reqcheck, header_names_are_tokens) {
    cr_assert(hs_header_name_ok("Content-Type", 12));
    cr_assert(hs_header_name_ok("x-a!#$%&'*+.^_`|~9", 18));
    cr_assert_not(hs_header_name_ok("Transfer-Encoding ", 18), "a space before the colon");
    cr_assert_not(hs_header_name_ok(" Host", 5));
    cr_assert_not(hs_header_name_ok("a:b", 3));
    cr_assert_not(hs_header_name_ok("a\rb", 3));
    cr_assert_not(hs_header_name_ok("a\tb", 3));
    cr_assert_not(hs_header_name_ok("a\0b", 3));
    cr_assert_not(hs_header_name_ok("caf\xc3\xa9", 5));
    cr_assert_not(hs_header_name_ok("", 0));
    char big[258];
    memset(big, 'a', sizeof big);
    cr_assert(hs_header_name_ok(big, 256));
    cr_assert_not(hs_header_name_ok(big, 257));
}

Test(reqcheck, header_values_hold_no_control_bytes_but_tab) {
    cr_assert(hs_header_value_ok("", 0));
    cr_assert(hs_header_value_ok("a\tb c", 5));
    cr_assert(hs_header_value_ok("caf\xc3\xa9 \xc2\x9d", 8), "bytes >= 0x80 are obs-text");
    for (int c = 0; c < 0x20; c++) {
        char v[3] = {'a', (char)c, 'b'};
        if (c == '\t')
            continue;
        cr_assert_not(hs_header_value_ok(v, 3), "control byte 0x%02x accepted", c);
    }
    cr_assert_not(hs_header_value_ok("a\x7f", 2), "DEL accepted");
}

Test(reqcheck, printable_copies_for_messages) {
    char out[8];
    cr_assert_str_eq(hs_printable("a\x1b]b", 4, out, sizeof out), "a?]b");
    cr_assert_str_eq(hs_printable("abcdefghij", 10, out, sizeof out), "abcd...");
    cr_assert_str_eq(hs_printable("abcdefg", 7, out, sizeof out), "abcdefg");
}
