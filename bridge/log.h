/* log.h — the bridge's names for the shared logger (proto/logger.h): one line per event,
 * `ts=… level=… event=… bridge=<id> k=v…`, on stderr in one write(2). I/O side. */
#ifndef BR_LOG_H
#define BR_LOG_H

#include "logger.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum {
    BR_LOG_ERROR = GP_LOG_ERROR,
    BR_LOG_WARN = GP_LOG_WARN,
    BR_LOG_INFO = GP_LOG_INFO,
    BR_LOG_DEBUG = GP_LOG_DEBUG
};

/* Sets the threshold (messages above it are dropped) and the bridge id added to each line. */
static inline void br_log_init(int level, const char *bridge_id) {
    char fixed[160];
    snprintf(fixed, sizeof fixed, "bridge=%s", bridge_id ? bridge_id : "");
    gp_log_init(level, fixed);
}
/* "error" | "warn" | "info" | "debug" -> level, or -1. */
#define br_log_level_parse gp_log_level_parse
#define br_log_enabled gp_log_enabled

/* One event line; fmt holds further `key=value` pairs (may be NULL). */
#define br_log gp_log

/* The same for lines a peer can trigger at will (floods, refusals, a library's complaints):
 * per event name at most 20 lines back to back and 10 a second; the lines dropped are
 * counted and the next line of that event that gets through ends with suppressed=N. */
#define br_logr gp_logr
/* Lines dropped by br_logr since start (all events). */
#define br_log_suppressed gp_log_suppressed

/* Quotes and escapes untrusted text for a value: returns "..." with `"`, `\` and control
 * bytes escaped, truncated to ~400 bytes. The result lives in one of 8 rotating static
 * buffers (single-threaded daemon): use it within the same br_log call. */
static inline const char *br_q(const char *s, size_t len) {
    return gp_q(s, len);
}
static inline const char *br_qs(const char *s) { /* NUL-terminated; NULL -> "" */
    return gp_q(s ? s : "", s ? strlen(s) : 0);
}

#endif
