/* entry.c — the bridge's pure checks of what producers and houses send (bridge/daemon/entry.c):
 * reply keys confined to <prefix>:rep:, an entry's reply key (given or default), a house's
 * response status and header names/values, and the cutting of recent-list fields. */
#include "../../bridge/daemon/entry.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static const char *check(const char *key, const char *prefix) {
    return br_reply_key_check(key, strlen(key), prefix);
}

Test(entry, reply_keys_of_the_family_pass) {
    cr_assert_null(check("gp:rep:x", "gp"));
    cr_assert_null(check("gp:rep:7f3c-1", "gp"));
    cr_assert_null(check("gp:rep:alice:7f3c", "gp"));
    cr_assert_null(check("gp:rep:{alice}:x y", "gp"), "braces and spaces are plain bytes");
    cr_assert_null(check("gp:rep:caf\xc3\xa9", "gp"), "UTF-8 is not a control byte");
    cr_assert_null(check("myapp:rep:x", "myapp"));
    char k[BR_REPLY_KEY_MAX + 2];
    memset(k, 'k', sizeof k);
    memcpy(k, "gp:rep:", 7);
    cr_assert_null(br_reply_key_check(k, BR_REPLY_KEY_MAX, "gp"), "256 bytes is the most");
    cr_assert_not_null(br_reply_key_check(k, BR_REPLY_KEY_MAX + 1, "gp"), "257 bytes");
}

Test(entry, other_keys_are_refused) {
    const char *bad[] = {"gp:houses",    "gp:{vic}:house", "gp:{vic}:epoch", "gp:{vic}:req",
                         "gp:rep:",      "gp:rep",         "gp:re",          "",
                         "gpx:rep:a",    "xgp:rep:a",      "gp:REP:a",       "gp::rep:a",
                         "gp:rep:a\nb",  "gp:rep:a\rb",    "gp:rep:\x1b]0;", "gp:rep:a\x7f",
                         "gp:bridge:b1", "gp:janitor",     "rep:x",          "other:rep:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not_null(check(bad[i], "gp"), "'%s' passed", bad[i]);
    cr_assert_not_null(br_reply_key_check("gp:rep:a\0b", 10, "gp"), "a NUL byte passed");
    cr_assert_not_null(check("gp:rep:x", "myapp"), "another prefix's family passed");
    cr_assert_not_null(check("myapp:rep:x", "gp"));
}

static br_entry entry(const char *id, const char *reply, int has_reply) {
    br_entry e;
    memset(&e, 0, sizeof e);
    e.entry_id = "1-1";
    e.id = gp_str_c(id);
    e.reply = reply ? gp_str_c(reply) : (gp_str){0};
    e.has_reply = has_reply;
    return e;
}

Test(entry, an_entrys_reply_key) {
    char out[BR_REPLY_KEY_MAX + 1];
    const char *why;
    br_entry e = entry("f-1", "gp:rep:alice:f-1", 1);
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), 16);
    cr_assert_str_eq(out, "gp:rep:alice:f-1");
    cr_assert_null(why);

    e = entry("f-1", NULL, 1); /* no reply field: the default */
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), 10);
    cr_assert_str_eq(out, "gp:rep:f-1");

    e = entry("f-1", NULL, 0); /* reply "": none wanted */
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), 0);
    cr_assert_null(why);

    e = entry("f-1", "gp:houses", 1);
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), -1);
    cr_assert_not_null(why);
    cr_assert_str_eq(out, "", "a refused key must not be left in out");

    char big[600];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "gp:rep:", 7);
    e = entry("f-1", big, 1);
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), -1, "600-byte key");

    /* An id that makes the default key too long (ids may have 200 bytes, prefixes 64). */
    char id[201], prefix[65];
    memset(id, 'i', 200);
    id[200] = '\0';
    memset(prefix, 'p', 64);
    prefix[64] = '\0';
    e = entry(id, NULL, 1);
    cr_assert_eq(br_entry_reply_key(&e, prefix, out, &why), -1);
    cr_assert_not_null(why);
    cr_assert_eq(br_entry_reply_key(&e, "gp", out, &why), 207, "gp:rep:<200 bytes> fits");
}

Test(entry, response_status) {
    cr_assert(br_resp_status_ok(100));
    cr_assert(br_resp_status_ok(200));
    cr_assert(br_resp_status_ok(599));
    cr_assert_not(br_resp_status_ok(0));
    cr_assert_not(br_resp_status_ok(99));
    cr_assert_not(br_resp_status_ok(600));
    cr_assert_not(br_resp_status_ok(65535));
}

static const char *hc(const char *n, const char *v) {
    return br_resp_header_check(gp_str_c(n), gp_str_c(v));
}

Test(entry, response_headers) {
    cr_assert_null(hc("content-type", "text/plain; charset=utf-8"));
    cr_assert_null(hc("X-Weird!#$%&'*+-.^_`|~", "v"), "every tchar");
    cr_assert_null(hc("x", ""), "an empty value");
    cr_assert_null(hc("x", "a\tb c"), "HTAB and SP");
    cr_assert_null(hc("x", "caf\xc3\xa9 \x80\xff"), "obs-text");
    const char *names[] = {"", "Bad Name", "x:y", "x\r\nset-cookie", "x\n", "(x)", "x\"", "\x01"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_assert_str_eq(hc(names[i], "v") ? hc(names[i], "v") : "(ok)", "header_name", "'%s'",
                         names[i]);
    char longname[258];
    memset(longname, 'n', 257);
    longname[257] = '\0';
    cr_assert_str_eq(hc(longname, "v"), "header_name");
    longname[256] = '\0';
    cr_assert_null(hc(longname, "v"));
    const char *values[] = {
        "a\r\nSet-Cookie: x", "a\rb", "a\nb", "\x1b]0;t\x07", "a\x7f", "\x0b", "\x0c", "\x01"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        cr_assert_str_eq(hc("x", values[i]) ? hc("x", values[i]) : "(ok)", "header_value",
                         "value %zu", i);
    cr_assert_str_eq(br_resp_header_check(gp_str_c("x"), (gp_str){(const uint8_t *)"a\0b", 3}),
                     "header_value", "a NUL byte");
}

Test(entry, clip_keeps_utf8_whole) {
    cr_assert_eq(br_clip_len("abc", 3, 10), 3);
    cr_assert_eq(br_clip_len("abcdefghij", 10, 10), 10);
    cr_assert_eq(br_clip_len("abcdefghijk", 11, 10), 7, "room for the 3-byte marker");
    /* "aaaaaa" then é (c3 a9): a cut at 7 would split it. */
    const char *s = "aaaaaa\xc3\xa9zzzz";
    cr_assert_eq(br_clip_len(s, strlen(s), 10), 6);
    const char *t = "aaaaaaa\xe2\x80\xa6zz"; /* … at 7..9 */
    cr_assert_eq(br_clip_len(t, strlen(t), 10), 7);
    const char *u = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
    size_t n = br_clip_len(u, strlen(u), 6);
    cr_assert_eq(n, 2, "cut to %zu", n);
}

/* A producer's request headers: the same value rule as a house's response, and the message
 * names the header (the bridge answers 400 before the house ever sees them). */
static const char *hl(const char *json) {
    static char why[160];
    json_t *h = br_headers_load(gp_str_c(json), why, sizeof why);
    if (h) {
        json_decref(h);
        return NULL;
    }
    return why;
}

Test(entry, request_headers) {
    cr_assert_null(hl("{\"X-Tab\":\"a\\tb\",\"X-Utf8\":\"caf\\u00e9\"}"));
    const struct {
        const char *json, *why;
    } bad[] = {
        {"{\"X-Vt\":\"a\\u000bb\"}", "header \"X-Vt\": value holds a control character"},
        {"{\"X-Ff\":\"\\u000c\"}", "header \"X-Ff\": value holds a control character"},
        {"{\"X-Esc\":\"\\u001b]0;t\\u0007\"}", "header \"X-Esc\": value holds a control"},
        {"{\"X-Del\":\"a\\u007f\"}", "header \"X-Del\": value holds a control"},
        {"{\"X-Cr\":\"a\\r\\nSet-Cookie: x\"}", "header \"X-Cr\": value holds a control"},
        {"{\"Transfer-Encoding \":\"chunked\"}", "header \"Transfer-Encoding?\": name is not"},
        {"{\"X-N\":1}", "header \"X-N\": value is not a string"},
        {"[1]", "headers must be a JSON object"},
        {"{", "headers must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = hl(bad[i].json);
        cr_assert_not_null(why, "%s was accepted", bad[i].json);
        cr_assert(strncmp(why, bad[i].why, strlen(bad[i].why)) == 0, "%s: '%s'", bad[i].json, why);
    }
}
