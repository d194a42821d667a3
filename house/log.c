/* log.c — the house's event log: one line per event on stderr, key=value pairs, values quoted
 * only when they need it, so that `grep event=connected` and simple parsers both work.
 * The log is the process's, not a house's: its level is one for all the houses a process
 * runs (their lines say house=). Also the house's monotonic clock (hs_now_ms). I/O side
 * (writes to stderr, reads the wall clock for ts=). */
#include "house.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int g_level = HS_LOG_INFO;
static hs_log_sink g_sink; /* NULL: stderr */
static const char *const level_names[] = {"error", "warn", "info", "debug"};

int hs_log_parse_level(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void hs_log_set_level(int level) {
    g_level = level;
}

int hs_log_enabled(int level) {
    return level <= g_level;
}

void hs_log_set_sink(hs_log_sink sink) {
    g_sink = sink;
}

void hs_log(int level, const char *event, const char *fmt, ...) {
    if (!hs_log_enabled(level))
        return;
    if (g_sink) {
        char kv[2048] = "";
        if (fmt && *fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(kv, sizeof kv, fmt, ap);
            va_end(ap);
        }
        g_sink(level, event, kv);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (fmt && *fmt && n > 0 && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2; /* truncated: still one line */
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

/* Rotating buffers let one hs_log call quote several values. */
#define QBUFS 6
#define QLEN 256

const char *hs_q(const void *vp, size_t len) {
    static char bufs[QBUFS][QLEN];
    static unsigned next;
    char *b = bufs[next++ % QBUFS];
    const unsigned char *p = vp;
    int plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\' || p[i] == '=')
            plain = 0;
    size_t o = 0;
    if (plain) {
        for (size_t i = 0; i < len && o < QLEN - 4; i++)
            b[o++] = (char)p[i];
        if (len > o)
            memcpy(b + o, "...", 3), o += 3;
        b[o] = '\0';
        return b;
    }
    b[o++] = '"';
    for (size_t i = 0; i < len && o < QLEN - 8; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            b[o++] = '\\';
            b[o++] = (char)c;
        } else if (c < ' ' || c >= 0x7f) {
            o += (size_t)snprintf(b + o, QLEN - o, "\\x%02x", c);
        } else {
            b[o++] = (char)c;
        }
        if (i + 1 < len && o >= QLEN - 8) {
            memcpy(b + o, "...", 3);
            o += 3;
        }
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}

const char *hs_qs(const char *s) {
    return hs_q(s ? s : "", s ? strlen(s) : 0);
}

uint64_t hs_now_ms(void) {
    return uv_hrtime() / 1000000u;
}
