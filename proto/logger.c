/* logger.c — the one logger (see logger.h). Pure but for the line's write(2) to stderr and
 * the clocks it reads (as conf.c reads files). */
#include "logger.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int gp_log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

const char *gp_log_level_name(int level) {
    return level_names[level & 3];
}

size_t gp_log_vformat(char *line, int level, const char *event, const char *fixed, const char *tail,
                      const char *fmt, va_list ap) {
    const size_t cap = GP_LOG_LINE;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, cap, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s%s%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, gp_log_level_name(level), event,
                     fixed && *fixed ? " " : "", fixed ? fixed : "");
    if (n < 0)
        n = 0;
    if (fmt && *fmt && (size_t)n < cap - 2) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, cap - (size_t)n - 1, fmt, ap);
        if (m > 0)
            n += m;
    }
    if (tail && *tail && (size_t)n < cap - 2) {
        int m = snprintf(line + n, cap - (size_t)n - 1, "%s", tail);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > cap - 2)
        n = (int)cap - 2; /* cut: still one line */
    line[n++] = '\n';
    return (size_t)n;
}

void gp_log_emit(const char *line, size_t len) {
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void gp_log_vkv(char *kv, size_t cap, const char *fmt, va_list ap) {
    kv[0] = '\0';
    if (fmt && *fmt)
        vsnprintf(kv, cap, fmt, ap);
}

uint64_t gp_log_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static gp_log_rl_slot *rl_slot(gp_log_rl *rl, const char *event, uint64_t now_ms) {
    for (size_t i = 0; i < GP_LOG_RL_SLOTS; i++) {
        gp_log_rl_slot *s = &rl->slot[i];
        if (!s->event[0]) {
            snprintf(s->event, sizeof s->event, "%s", event);
            s->tokens = GP_LOG_RL_BURST;
            s->last_ms = now_ms;
            return s;
        }
        if (strcmp(s->event, event) == 0)
            return s;
    }
    return &rl->slot[GP_LOG_RL_SLOTS - 1];
}

int gp_log_rl_pass(gp_log_rl *rl, const char *event, uint64_t now_ms,
                   unsigned long long *suppressed) {
    gp_log_rl_slot *s = rl_slot(rl, event, now_ms);
    s->tokens += (double)(now_ms - s->last_ms) * GP_LOG_RL_PER_S / 1000.0;
    if (s->tokens > GP_LOG_RL_BURST)
        s->tokens = GP_LOG_RL_BURST;
    s->last_ms = now_ms;
    if (s->tokens < 1.0) {
        s->suppressed++;
        rl->total++;
        return 0;
    }
    s->tokens -= 1.0;
    *suppressed = s->suppressed;
    s->suppressed = 0;
    return 1;
}

const char *gp_log_quote(char *o, const void *vp, size_t len) {
    const unsigned char *s = vp;
    size_t j = 0;
    o[j++] = '"';
    for (size_t i = 0; i < len && j < 400; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            o[j++] = '\\';
            o[j++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            j += (size_t)snprintf(o + j, 5, "\\x%02x", c);
        } else {
            o[j++] = (char)c;
        }
    }
    if (len && j >= 400)
        o[j++] = '.', o[j++] = '.', o[j++] = '.';
    o[j++] = '"';
    o[j] = '\0';
    return o;
}

#define VLEN 256 /* gp_log_value's room */

const char *gp_log_value(char *b, const void *vp, size_t len) {
    const unsigned char *p = vp;
    int plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\' || p[i] == '=')
            plain = 0;
    size_t o = 0;
    if (plain) {
        for (size_t i = 0; i < len && o < VLEN - 4; i++)
            b[o++] = (char)p[i];
        if (len > o)
            memcpy(b + o, "...", 3), o += 3;
        b[o] = '\0';
        return b;
    }
    b[o++] = '"';
    for (size_t i = 0; i < len && o < VLEN - 8; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            b[o++] = '\\';
            b[o++] = (char)c;
        } else if (c < ' ' || c >= 0x7f) {
            o += (size_t)snprintf(b + o, VLEN - o, "\\x%02x", c);
        } else {
            b[o++] = (char)c;
        }
        if (i + 1 < len && o >= VLEN - 8) {
            memcpy(b + o, "...", 3);
            o += 3;
        }
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}

/* --- the process's logger --------------------------------------------------------------- */

static int g_level = GP_LOG_INFO;
static int g_format = GP_LOG_FMT_KV;
static char g_fixed[160];
static gp_log_sink g_sink;
static gp_log_rl g_rl;

void gp_log_init(int level, const char *fixed) {
    g_level = level;
    snprintf(g_fixed, sizeof g_fixed, "%s", fixed ? fixed : "");
}

int gp_log_format_parse(const char *s) {
    return s && strcasecmp(s, "kv") == 0     ? GP_LOG_FMT_KV
           : s && strcasecmp(s, "json") == 0 ? GP_LOG_FMT_JSON
                                             : -1;
}

const char *gp_log_format_name(int format) {
    return format == GP_LOG_FMT_JSON ? "json" : "kv";
}

void gp_log_set_format(int format) {
    g_format = format == GP_LOG_FMT_JSON ? GP_LOG_FMT_JSON : GP_LOG_FMT_KV;
}

int gp_log_get_format(void) {
    return g_format;
}

size_t gp_log_vline(char *line, int level, const char *event, const char *fixed, const char *tail,
                    const char *fmt, va_list ap) {
    if (g_format == GP_LOG_FMT_JSON)
        return gp_log_vformat_json(line, level, event, fixed, tail, fmt, ap);
    return gp_log_vformat(line, level, event, fixed, tail, fmt, ap);
}

void gp_log_set_level(int level) {
    g_level = level;
}

int gp_log_enabled(int level) {
    return level <= g_level;
}

void gp_log_set_sink(gp_log_sink sink) {
    g_sink = sink;
}

static void vlog(int level, const char *event, const char *tail, const char *fmt, va_list ap) {
    if (g_sink) {
        char kv[GP_LOG_LINE];
        gp_log_vkv(kv, sizeof kv, fmt, ap);
        g_sink(level, event, kv);
        return;
    }
    char line[GP_LOG_JSON_LINE];
    size_t n = gp_log_vline(line, level, event, g_fixed, tail, fmt, ap);
    gp_log_emit(line, n);
}

void gp_log(int level, const char *event, const char *fmt, ...) {
    if (level > g_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, "", fmt, ap);
    va_end(ap);
}

void gp_logr(int level, const char *event, const char *fmt, ...) {
    unsigned long long suppressed = 0;
    if (level > g_level || !gp_log_rl_pass(&g_rl, event, gp_log_mono_ms(), &suppressed))
        return;
    char tail[48] = "";
    if (suppressed)
        snprintf(tail, sizeof tail, " suppressed=%llu", suppressed);
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, tail, fmt, ap);
    va_end(ap);
}

unsigned long long gp_log_suppressed(void) {
    return g_rl.total;
}

const char *gp_q(const void *s, size_t len) {
    static char bufs[8][GP_LOG_QCAP];
    static unsigned next;
    return gp_log_quote(bufs[next++ & 7], s, len);
}

const char *gp_qv(const void *s, size_t len) {
    static char bufs[8][GP_LOG_QCAP];
    static unsigned next;
    return gp_log_value(bufs[next++ & 7], s, len);
}
