/* logger.c — the one logger of both daemons (proto/logger.c): the line's shape and its cut,
 * levels, the per-event rate limit on a virtual clock, the two quoting styles (the bridge's
 * br_q, the house's hs_q) and the sink. */
#include "logger.h"

#include <criterion/criterion.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static size_t fmt_line(char *line, int level, const char *event, const char *fixed,
                       const char *tail, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = gp_log_vformat(line, level, event, fixed, tail, fmt, ap);
    va_end(ap);
    return n;
}

static int matches(const char *s, const char *re) {
    regex_t r;
    cr_assert_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    int ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

Test(logger, line_shape) {
    char line[GP_LOG_LINE];
    size_t n = fmt_line(line, GP_LOG_WARN, "x_happened", "bridge=b1", " suppressed=3", "a=%d b=%s",
                        1, "two");
    line[n] = '\0';
    cr_assert(matches(line, "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                            "level=warn event=x_happened bridge=b1 a=1 b=two suppressed=3\n$"),
              "%s", line);
    n = fmt_line(line, GP_LOG_INFO, "bare", NULL, NULL, NULL);
    line[n] = '\0';
    cr_assert(matches(line, "Z level=info event=bare\n$"), "%s", line);
}

Test(logger, long_line_cut_to_one_line) {
    static char big[5000];
    memset(big, 'v', sizeof big - 1);
    char line[GP_LOG_LINE];
    size_t n = fmt_line(line, GP_LOG_ERROR, "big", "", "", "k=%s", big);
    cr_assert_eq(n, GP_LOG_LINE - 1);
    cr_assert_eq(line[n - 1], '\n');
    cr_assert_null(memchr(line, '\n', n - 1));
    cr_assert_eq(line[n - 2], 'v');
}

Test(logger, levels) {
    cr_assert_eq(gp_log_level_parse("error"), GP_LOG_ERROR);
    cr_assert_eq(gp_log_level_parse("WARN"), GP_LOG_WARN);
    cr_assert_eq(gp_log_level_parse("debug"), GP_LOG_DEBUG);
    cr_assert_eq(gp_log_level_parse("loud"), -1);
    cr_assert_eq(gp_log_level_parse(NULL), -1);
    cr_assert_str_eq(gp_log_level_name(GP_LOG_INFO), "info");
    gp_log_init(GP_LOG_WARN, NULL);
    cr_assert(gp_log_enabled(GP_LOG_ERROR) && gp_log_enabled(GP_LOG_WARN));
    cr_assert(!gp_log_enabled(GP_LOG_INFO));
}

Test(logger, rate_limit_burst_then_ten_a_second) {
    static gp_log_rl rl;
    unsigned long long sup = 99;
    uint64_t t = 1000;
    for (int i = 0; i < 20; i++)
        cr_assert(gp_log_rl_pass(&rl, "flood", t, &sup), "burst line %d", i);
    cr_assert_eq(sup, 0);
    for (int i = 0; i < 5; i++)
        cr_assert(!gp_log_rl_pass(&rl, "flood", t, &sup));
    cr_assert(gp_log_rl_pass(&rl, "other", t, &sup), "events are limited apart");
    cr_assert(!gp_log_rl_pass(&rl, "flood", t + 50, &sup), "half a token");
    cr_assert(gp_log_rl_pass(&rl, "flood", t + 100, &sup), "a token a 100 ms");
    cr_assert_eq(sup, 6, "the drops are reported once");
    cr_assert(!gp_log_rl_pass(&rl, "flood", t + 100, &sup));
    cr_assert_eq(rl.total, 7);
    /* past the table's size, events share the last slot */
    for (int i = 0; i < 40; i++) {
        char ev[16];
        snprintf(ev, sizeof ev, "e%d", i);
        gp_log_rl_pass(&rl, ev, t, &sup);
    }
    cr_assert_str_eq(rl.slot[GP_LOG_RL_SLOTS - 1].event, "e29");
}

Test(logger, quote_styles) {
    char b[GP_LOG_QCAP];
    cr_assert_str_eq(gp_log_quote(b, "a\"b\\c\n\x7f\xc3\xa9", 9),
                     "\"a\\\"b\\\\c\\x0a\\x7f\xc3\xa9\"");
    cr_assert_str_eq(gp_log_quote(b, "", 0), "\"\"");
    cr_assert_str_eq(gp_log_value(b, "plain-1.2", 9), "plain-1.2");
    cr_assert_str_eq(gp_log_value(b, "k=v", 3), "\"k=v\"");
    cr_assert_str_eq(gp_log_value(b, "a b\xc3", 4), "\"a b\\xc3\"");
    cr_assert_str_eq(gp_log_value(b, "", 0), "\"\"");
    static char big[1000];
    memset(big, 'x', sizeof big);
    const char *q = gp_log_quote(b, big, sizeof big);
    cr_assert_lt(strlen(q), GP_LOG_QCAP);
    cr_assert(strstr(q, "...\""), "%s", q);
    q = gp_log_value(b, big, sizeof big);
    cr_assert_lt(strlen(q), 256);
    cr_assert(strstr(q, "..."), "%s", q);
    /* the rotating buffers: several values in one call stay apart */
    const char *x = gp_q("one", 3), *y = gp_q("two", 3);
    cr_assert_str_eq(x, "\"one\"");
    cr_assert_str_eq(y, "\"two\"");
}

static char got[256];
static void sink(int level, const char *event, const char *kv) {
    snprintf(got, sizeof got, "%d %s %s", level, event, kv);
}

Test(logger, sink_gets_event_and_pairs_of_enabled_levels) {
    gp_log_init(GP_LOG_INFO, "bridge=b");
    gp_log_set_sink(sink);
    got[0] = '\0';
    gp_log(GP_LOG_DEBUG, "hidden", "a=1");
    cr_assert_str_eq(got, "");
    gp_log(GP_LOG_INFO, "shown", "a=%d", 2);
    cr_assert_str_eq(got, "2 shown a=2");
    gp_log(GP_LOG_ERROR, "nopairs", NULL);
    cr_assert_str_eq(got, "0 nopairs ");
    gp_log_set_sink(NULL);
}
