/* log.h — the bridge's one-line-per-event logger: `ts=… level=… event=… bridge=… k=v…` on
 * stderr. I/O side (it writes to a file descriptor). */
#ifndef BR_LOG_H
#define BR_LOG_H

#include <stddef.h>

enum { BR_LOG_ERROR = 0, BR_LOG_WARN = 1, BR_LOG_INFO = 2, BR_LOG_DEBUG = 3 };

/* Sets the threshold (messages above it are dropped) and the bridge id added to each line
 * (borrowed: must outlive logging). */
void br_log_init(int level, const char *bridge_id);
/* "error" | "warn" | "info" | "debug" -> level, or -1. */
int br_log_level_parse(const char *s);
int br_log_enabled(int level);

/* One event line; fmt holds further `key=value` pairs (may be NULL). */
void br_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same for lines a peer can trigger at will (floods, refusals, a library's complaints):
 * per event name at most 20 lines back to back and 10 a second; the lines dropped are
 * counted and the next line of that event that gets through ends with suppressed=N. */
void br_logr(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Lines dropped by br_logr since start (all events). */
unsigned long long br_log_suppressed(void);

/* Quotes and escapes untrusted text for a value: returns "..." with `"`, `\` and control
 * bytes escaped, truncated to ~200 bytes. The result lives in one of 8 rotating static
 * buffers (single-threaded daemon): use it within the same br_log call. */
const char *br_q(const char *s, size_t len);
const char *br_qs(const char *s); /* NUL-terminated; NULL -> "" */

#endif
