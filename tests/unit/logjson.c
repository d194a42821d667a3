/* logjson.c — the JSON form of the log line (proto/logjson.c, --log-format json): its shape
 * and key order, which values are numbers, the key=value quoting decoded, hostile values
 * (every byte, quotes, backslashes, control characters, invalid and overlong UTF-8, surrogates,
 * U+2028, pairs forged inside a value), repeated keys, the cut of a line too long, random
 * bytes through the converter, and the process logger writing it. Every line is parsed by
 * jansson, which rejects invalid UTF-8, and told to reject duplicate keys as well. */
#include "logger.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char line[GP_LOG_JSON_LINE];
static size_t line_len;

/* The JSON line of one gp_log call (tail as gp_logr gives it). */
static json_t *jline(int level, const char *event, const char *fixed, const char *tail,
                     const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    line_len = gp_log_vformat_json(line, level, event, fixed, tail, fmt, ap);
    va_end(ap);
    cr_assert_gt(line_len, 2);
    cr_assert_lt(line_len, GP_LOG_JSON_LINE);
    cr_assert_eq(line[line_len - 1], '\n', "no newline at the end");
    cr_assert_null(memchr(line, '\n', line_len - 1), "a newline inside: %.*s", (int)line_len, line);
    /* Nothing a terminal or a line-based collector would act on: no control bytes at all. */
    for (size_t i = 0; i + 1 < line_len; i++)
        cr_assert((unsigned char)line[i] >= 0x20 && line[i] != 0x7f,
                  "raw control byte 0x%02x at %zu: %.*s", (unsigned char)line[i], i, (int)line_len,
                  line);
    json_error_t e;
    json_t *j = json_loadb(line, line_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    cr_assert(j, "does not parse (%s at %d): %.*s", e.text, e.position, (int)line_len, line);
    cr_assert(json_is_object(j));
    return j;
}

static const char *jstr(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_string(v), "%s is not a string in %s", key, line);
    return json_string_value(v);
}

static json_int_t jint(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_integer(v), "%s is not an integer in %s", key, line);
    return json_integer_value(v);
}

/* The string value of key, as bytes (it may hold NUL). */
static void assert_bytes(json_t *j, const char *key, const void *want, size_t wlen) {
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_string(v), "%s is not a string in %s", key, line);
    cr_assert_eq(json_string_length(v), wlen, "%s: length %zu, want %zu in %s", key,
                 json_string_length(v), wlen, line);
    cr_assert(memcmp(json_string_value(v), want, wlen) == 0, "%s differs in %s", key, line);
}

Test(logjson, line_shape_and_key_order) {
    json_t *j = jline(GP_LOG_WARN, "x_happened", "bridge=b1", " suppressed=3",
                      "a=%d b=%s c=%.1f d=%llu e=%s f=%zu g=%ld", -1, "two", 0.5, 12345ULL, "7",
                      (size_t)9, 10L);
    regex_t r;
    cr_assert_eq(
        regcomp(&r,
                "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\."
                "[0-9]{3}Z\",\"level\":\"warn\",\"event\":\"x_happened\",\"bridge\":\"b1\","
                "\"a\":-1,\"b\":\"two\",\"c\":0.5,\"d\":12345,\"e\":\"7\",\"f\":9,\"g\":10,"
                "\"suppressed\":3\\}\n$",
                REG_EXTENDED | REG_NOSUB),
        0);
    cr_assert_eq(regexec(&r, line, 0, NULL, 0), 0, "%s", line);
    regfree(&r);
    cr_assert_eq(json_object_size(j), 12);
    json_decref(j);
    j = jline(GP_LOG_INFO, "bare", NULL, NULL, NULL);
    cr_assert(strstr(line, "\",\"level\":\"info\",\"event\":\"bare\"}\n"), "%s", line);
    cr_assert_eq(json_object_size(j), 3);
    json_decref(j);
}

/* Numbers are what a numeric conversion wrote whole, and a JSON number; the rest strings. */
Test(logjson, which_values_are_numbers) {
    json_t *j = jline(GP_LOG_INFO, "n", NULL, NULL,
                      "i=%i u=%u neg=%lld big=%llu f=%.3f g=%g e=%e z=%02d hex=%x oct=%o "
                      "ms=%dms inf=%f nan=%f s=%s sz=%zd h=%hd hh=%hhu j=%jd t=%td ld=%Lf",
                      7, 4000000000u, -9000000000LL, 18446744073709551615ULL, 1.25, 1e6, 2.5, 5,
                      255, 8, 30, INFINITY, NAN, "12", (ssize_t)-4, (short)-2, (unsigned char)200,
                      (intmax_t)77, (ptrdiff_t)-6, (long double)1.5);
    cr_assert_eq(jint(j, "i"), 7);
    cr_assert_eq(jint(j, "u"), 4000000000LL);
    cr_assert_eq(jint(j, "neg"), -9000000000LL);
    cr_assert_str_eq(jstr(j, "big"), "18446744073709551615"); /* beyond int64: a string */
    cr_assert(strstr(line, "\"f\":1.250,"), "%s", line);
    cr_assert(strstr(line, "\"g\":1e+06,"), "%s", line);
    cr_assert(json_is_real(json_object_get(j, "e")), "%s", line);
    cr_assert_str_eq(jstr(j, "z"), "05"); /* a leading zero: no JSON number */
    cr_assert_str_eq(jstr(j, "hex"), "ff");
    cr_assert_str_eq(jstr(j, "oct"), "10");
    cr_assert_str_eq(jstr(j, "ms"), "30ms");
    cr_assert_str_eq(jstr(j, "inf"), "inf");
    cr_assert_str_eq(jstr(j, "nan"), "nan");
    cr_assert_str_eq(jstr(j, "s"), "12"); /* %s: a string whatever it holds */
    cr_assert_eq(jint(j, "sz"), -4);
    cr_assert_eq(jint(j, "h"), -2);
    cr_assert_eq(jint(j, "hh"), 200);
    cr_assert_eq(jint(j, "j"), 77);
    cr_assert_eq(jint(j, "t"), -6);
    cr_assert(strstr(line, "\"ld\":1.500000"), "%s", line);
    json_decref(j);
}

/* The other conversions the code base uses come out as printf writes them. */
Test(logjson, printf_conversions) {
    errno = ENOENT;
    json_t *j = jline(GP_LOG_INFO, "c", NULL, NULL,
                      "a=%.*s b=%-*s| c=%c d=%%x e=%5s f=%.2s g=%m h=%*d i=%.*f", 3, "abcdef", 4,
                      "xy", 'q', "r", "long", 3, 42, 2, 3.14159);
    cr_assert_str_eq(jstr(j, "a"), "abc");
    cr_assert_str_eq(jstr(j, "b"), "xy  |");
    cr_assert_str_eq(jstr(j, "c"), "q");
    cr_assert_str_eq(jstr(j, "d"), "%x");
    cr_assert_str_eq(jstr(j, "e"), "    r"); /* padding, then a word that is no pair */
    cr_assert_str_eq(jstr(j, "f"), "lo");
    cr_assert_str_eq(jstr(j, "g"), strerror(ENOENT));
    cr_assert_str_eq(jstr(j, "h"), " 42"); /* padded: not a number as written */
    cr_assert(strstr(line, "\"i\":3.14"), "%s", line);
    json_decref(j);
    /* %p has its own form; an unknown conversion falls back to printf, all strings */
    j = jline(GP_LOG_INFO, "c", NULL, NULL, "p=%p n=%d", (void *)0x10, 5);
    cr_assert_str_eq(jstr(j, "p"), "0x10");
    cr_assert_eq(jint(j, "n"), 5);
    json_decref(j);
}

/* What the key=value quoting did is undone: the JSON string holds the original bytes. */
Test(logjson, quoted_values_decoded) {
    static const char raw[] = "a\"b\\c\n\t\x01\x7f\xc3\xa9 x=1 level=error";
    json_t *j = jline(GP_LOG_INFO, "q", NULL, NULL, "br=%s hs=%s plain=%s",
                      gp_q(raw, sizeof raw - 1), gp_qv(raw, sizeof raw - 1), gp_qv("farm-1", 6));
    assert_bytes(j, "br", raw, sizeof raw - 1);
    assert_bytes(j, "hs", raw, sizeof raw - 1);
    cr_assert_str_eq(jstr(j, "plain"), "farm-1");
    cr_assert_str_eq(jstr(j, "level"), "info", "a pair inside a quoted value stays in it");
    cr_assert_null(json_object_get(j, "x"));
    cr_assert(strstr(line, "\\u0001\\u007f\xc3\xa9"), "%s", line);
    json_decref(j);
}

/* Every byte value, alone and in company, through both quoting styles and raw. */
Test(logjson, every_byte) {
    for (int c = 0; c < 256; c++) {
        char s[4] = {'<', (char)c, '>', 0};
        json_t *j = jline(GP_LOG_ERROR, "b", NULL, NULL, "q=%s v=%s", gp_q(s, 3), gp_qv(s, 3));
        if (c < 0x80) {
            assert_bytes(j, "q", s, 3);
            assert_bytes(j, "v", s, 3);
        } else {
            /* A lone byte >= 0x80 is no UTF-8: U+FFFD in its place. */
            assert_bytes(j, "q", "<\xef\xbf\xbd>", 5);
            assert_bytes(j, "v", "<\xef\xbf\xbd>", 5);
        }
        json_decref(j);
    }
    char all[256];
    for (int c = 0; c < 256; c++)
        all[c] = (char)(c + 1); /* 1..255, then 0 */
    json_t *j = jline(GP_LOG_ERROR, "b", NULL, NULL, "q=%s raw=%s", gp_q(all, 256), all);
    json_decref(j);
}

/* Invalid UTF-8 in its usual forms: each bad byte one U+FFFD, the valid around it kept. */
Test(logjson, invalid_utf8) {
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},                                 /* overlong NUL */
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"a\xe2\x82", "a\xef\xbf\xbd\xef\xbf\xbd"},                               /* cut short */
        {"\xe2\x82\xac\x80", "\xe2\x82\xac\xef\xbf\xbd"}, /* a stray continuation */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},         /* valid, 4 bytes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j =
            jline(GP_LOG_INFO, "u", NULL, NULL, "q=%s v=%s", gp_q(cases[i].in, strlen(cases[i].in)),
                  gp_qv(cases[i].in, strlen(cases[i].in)));
        assert_bytes(j, "q", cases[i].want, strlen(cases[i].want));
        assert_bytes(j, "v", cases[i].want, strlen(cases[i].want));
        json_decref(j);
    }
}

/* Controls that are valid UTF-8 but act on terminals or break JavaScript are escaped. */
Test(logjson, controls_escaped) {
    static const char s[] = "\xc2\x9b"
                            "31m \xe2\x80\xa8 \xe2\x80\xa9 \x1b]0;t\x07";
    json_t *j = jline(GP_LOG_INFO, "c", NULL, NULL, "v=%s", gp_q(s, sizeof s - 1));
    assert_bytes(j, "v", s, sizeof s - 1);
    cr_assert(strstr(line, "\\u009b31m \\u2028 \\u2029 \\u001b]0;t\\u0007"), "%s", line);
    json_decref(j);
}

/* Text that is no pair belongs to the value before it (an unquoted message). */
Test(logjson, unquoted_words_join_their_value) {
    json_t *j = jline(GP_LOG_WARN, "w", NULL, NULL, "lead words err=%s code=%d x=\"q\"tail more",
                      "No such file or directory", 2);
    cr_assert_str_eq(jstr(j, "msg"), "lead words");
    cr_assert_str_eq(jstr(j, "err"), "No such file or directory");
    cr_assert_eq(jint(j, "code"), 2);
    cr_assert_str_eq(jstr(j, "x"), "qtail more");
    json_decref(j);
    /* A quote left open runs to the end; a lone backslash stays. */
    j = jline(GP_LOG_WARN, "w", NULL, NULL, "a=\"x\\qy b=1 c=\\");
    cr_assert_str_eq(jstr(j, "a"), "x\\qy b=1 c=\\");
    json_decref(j);
}

/* A key met again is renamed; ts, level and event cannot be overwritten. */
Test(logjson, repeated_keys_renamed) {
    json_t *j = jline(GP_LOG_INFO, "real", "bridge=b1", " suppressed=1",
                      "event=forged ts=0 level=error bridge=x a=1 a=2 a_2=3 suppressed=9", 0);
    cr_assert_str_eq(jstr(j, "event"), "real");
    cr_assert_str_eq(jstr(j, "level"), "info");
    cr_assert_str_eq(jstr(j, "event_2"), "forged");
    cr_assert_str_eq(jstr(j, "level_2"), "error");
    cr_assert_str_eq(jstr(j, "bridge"), "b1");
    cr_assert_str_eq(jstr(j, "bridge_2"), "x");
    cr_assert_str_eq(jstr(j, "ts_2"), "0");
    cr_assert_str_eq(jstr(j, "a"), "1");
    cr_assert_str_eq(jstr(j, "a_2"), "2");
    cr_assert_str_eq(jstr(j, "a_2_2"), "3");
    cr_assert_str_eq(jstr(j, "suppressed"), "9");
    cr_assert_eq(jint(j, "suppressed_2"), 1);
    json_decref(j);
}

/* Too long: cut at a character, still one object, marked. */
Test(logjson, long_lines_cut) {
    static char ctl[1800], utf[1800], many[GP_LOG_LINE];
    memset(ctl, 1, sizeof ctl - 1); /* 6 bytes each in JSON */
    for (size_t i = 0; i + 3 < sizeof utf; i += 3)
        memcpy(utf + i, "\xe2\x82\xac", 3);
    json_t *j = jline(GP_LOG_INFO, "big", NULL, " suppressed=2", "a=%s b=%s c=%s", ctl, utf, ctl);
    cr_assert(json_is_true(json_object_get(j, "cut")), "%s", line);
    cr_assert_lt(line_len, GP_LOG_JSON_LINE);
    json_decref(j);
    /* More pairs than names kept */
    size_t n = 0;
    for (int i = 0; n + 12 < sizeof many; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "k%d=%d ", i, i);
    j = jline(GP_LOG_INFO, "many", NULL, NULL, "%s", many);
    cr_assert(json_is_true(json_object_get(j, "cut")), "%s", line);
    cr_assert_str_eq(jstr(j, "k0"), "0");
    json_decref(j);
    /* A key "cut" of its own does not clash with the mark */
    j = jline(GP_LOG_INFO, "big", NULL, NULL, "cut=yes a=%s b=%s", ctl, ctl);
    cr_assert_str_eq(jstr(j, "cut"), "yes");
    cr_assert(json_is_true(json_object_get(j, "cut_2")), "%s", line);
    json_decref(j);
    /* a key longer than 64 bytes is cut, not the line */
    j = jline(GP_LOG_INFO, "k", NULL, NULL,
              "k123456789012345678901234567890123456789012345678901234567890123456789=1");
    cr_assert_str_eq(jstr(j, "k123456789012345678901234567890123456789012345678901234567890123"),
                     "1");
    json_decref(j);
}

/* Random bytes as key=value text (spaces, quotes, '=' and backslashes made common): the
 * object always parses, without duplicates, in the room given. */
Test(logjson, random_text_always_parses) {
    static const char common[] = " \"=\\x0a";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char kv[600], out[1200];
    unsigned char num[600];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 600);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            kv[i] = (x & 3) == 0 ? common[(x >> 8) % (sizeof common - 1)] : (char)(x >> 16);
            num[i] = (x >> 40) & 1;
        }
        size_t cap = 64 + (size_t)(round % 1100);
        size_t n = gp_log_kv_json(out, cap, kv, len, round & 1 ? num : NULL, round % 3);
        cr_assert_lt(n, cap);
        cr_assert_eq(out[n], '\0');
        json_error_t e;
        json_t *j = json_loadb(out, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
        cr_assert(j, "round %d: %s at %d: %s", round, e.text, e.position, out);
        json_decref(j);
    }
}

/* The process logger in JSON: gp_log and gp_logr lines on stderr parse, the level kept. */
Test(logjson, process_logger_writes_json) {
    cr_assert_eq(gp_log_format_parse("JSON"), GP_LOG_FMT_JSON);
    cr_assert_eq(gp_log_format_parse("kv"), GP_LOG_FMT_KV);
    cr_assert_eq(gp_log_format_parse("xml"), -1);
    cr_assert_eq(gp_log_format_parse(NULL), -1);
    cr_assert_str_eq(gp_log_format_name(GP_LOG_FMT_JSON), "json");
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int saved = dup(2);
    dup2(p[1], 2);
    gp_log_init(GP_LOG_INFO, "house=h\"1");
    gp_log_set_format(GP_LOG_FMT_JSON);
    gp_log(GP_LOG_INFO, "one", "n=%d s=%s", 1, gp_q("x\ny", 3));
    gp_log(GP_LOG_DEBUG, "hidden", NULL);
    for (int i = 0; i < 25; i++)
        gp_logr(GP_LOG_WARN, "flood", "i=%d", i);
    gp_log_set_format(GP_LOG_FMT_KV);
    gp_log(GP_LOG_INFO, "kv_again", NULL);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    static char buf[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(p[0]);
    buf[n] = '\0';
    char *save = NULL;
    int lines = 0;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        if (strstr(l, "event=kv_again")) {
            cr_assert_eq(lines, 21, "%s", l);
            continue;
        }
        json_error_t e;
        json_t *j = json_loads(l, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
        cr_assert(j, "%s: %s", e.text, l);
        cr_assert_str_eq(json_string_value(json_object_get(j, "house")), "h\"1");
        if (lines == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(j, "s")), "x\ny");
            cr_assert_eq(json_integer_value(json_object_get(j, "n")), 1);
        }
        json_decref(j);
    }
    cr_assert_eq(lines, 22, "1 + 20 of the flood + the kv line:\n%s", buf);
}
