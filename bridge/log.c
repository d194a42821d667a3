/* log.c — key=value event lines on stderr, one write(2) per line so lines from several
 * processes sharing a terminal or a pipe never interleave mid-line. I/O side. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int g_level = BR_LOG_INFO;
static const char *g_bridge = "";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void br_log_init(int level, const char *bridge_id) {
    g_level = level;
    g_bridge = bridge_id ? bridge_id : "";
}

int br_log_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int br_log_enabled(int level) {
    return level <= g_level;
}

/* One line: the header, fmt's pairs, then `tail` (pairs the caller adds, or ""). */
static void vlog(int level, const char *event, const char *tail, const char *fmt, va_list ap) {
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s bridge=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level & 3], event, g_bridge);
    if (fmt && *fmt && n > 0 && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        if (m > 0)
            n += m;
    }
    if (n > 0 && tail[0] && (size_t)n < sizeof line - 2) {
        int m = snprintf(line + n, sizeof line - (size_t)n - 1, "%s", tail);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void br_log(int level, const char *event, const char *fmt, ...) {
    if (level > g_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, "", fmt, ap);
    va_end(ap);
}

/* --- rate-limited lines ------------------------------------------------------------------ *
 * A token bucket per event name: RL_BURST lines back to back, then RL_PER_S a second. A line
 * over the budget is only counted; the next one that passes carries suppressed=N. Events
 * beyond the table's size share its last slot (still limited, counted together). */

#define RL_SLOTS 32
#define RL_BURST 20.0
#define RL_PER_S 10.0

static struct rl_slot {
    char event[48];
    double tokens;
    uint64_t last_ms;
    unsigned long long suppressed;
} g_rl[RL_SLOTS];
static unsigned long long g_rl_total;

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct rl_slot *rl_slot(const char *event) {
    for (size_t i = 0; i < RL_SLOTS; i++) {
        struct rl_slot *s = &g_rl[i];
        if (!s->event[0]) {
            snprintf(s->event, sizeof s->event, "%s", event);
            s->tokens = RL_BURST;
            s->last_ms = mono_ms();
            return s;
        }
        if (strcmp(s->event, event) == 0)
            return s;
    }
    return &g_rl[RL_SLOTS - 1];
}

void br_logr(int level, const char *event, const char *fmt, ...) {
    if (level > g_level)
        return;
    struct rl_slot *s = rl_slot(event);
    uint64_t now = mono_ms();
    s->tokens += (double)(now - s->last_ms) * RL_PER_S / 1000.0;
    if (s->tokens > RL_BURST)
        s->tokens = RL_BURST;
    s->last_ms = now;
    if (s->tokens < 1.0) {
        s->suppressed++;
        g_rl_total++;
        return;
    }
    s->tokens -= 1.0;
    char tail[48] = "";
    if (s->suppressed)
        snprintf(tail, sizeof tail, " suppressed=%llu", s->suppressed);
    s->suppressed = 0;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, event, tail, fmt, ap);
    va_end(ap);
}

unsigned long long br_log_suppressed(void) {
    return g_rl_total;
}

const char *br_q(const char *s, size_t len) {
    static char bufs[8][420];
    static unsigned next;
    char *o = bufs[next++ & 7];
    size_t j = 0;
    o[j++] = '"';
    for (size_t i = 0; i < len && j < 400; i++) {
        unsigned char c = (unsigned char)s[i];
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

const char *br_qs(const char *s) {
    return br_q(s ? s : "", s ? strlen(s) : 0);
}
