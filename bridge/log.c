/* log.c — key=value event lines on stderr, one write(2) per line so lines from several
 * processes sharing a terminal or a pipe never interleave mid-line. I/O side. */
#include "log.h"

#include <stdarg.h>
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

void br_log(int level, const char *event, const char *fmt, ...) {
    if (level > g_level)
        return;
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
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
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
