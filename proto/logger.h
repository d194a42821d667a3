/* logger.h — the one logger of both daemons: levels, one key=value event line per event
 * (`ts=… level=… event=… [fixed] k=v… [tail]`) written to stderr in a single write(2), a
 * per-event rate limit for lines a peer can trigger, an optional sink, and the two ways a
 * value is quoted. Pure but for that write and the clocks it reads (as conf.c reads files).
 * The log is the process's (one level, one set of fixed pairs): bridge/log.h names it br_log,
 * br_logr, br_q; house/house.h hs_log, hs_q — thin aliases, so call sites stay as they were.
 * The pieces below the process logger (format, rate limit, quoting) are usable alone. */
#ifndef GP_LOGGER_H
#define GP_LOGGER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum { GP_LOG_ERROR = 0, GP_LOG_WARN = 1, GP_LOG_INFO = 2, GP_LOG_DEBUG = 3 };

/* "error" | "warn" | "info" | "debug" (any case) -> level, or -1. */
int gp_log_level_parse(const char *s);
const char *gp_log_level_name(int level);

/* The longest line, newline included, is GP_LOG_LINE - 1 bytes (longer ones are cut). */
#define GP_LOG_LINE 2048

/* Formats one line into line[GP_LOG_LINE]: ts= (the wall clock now, UTC, ms), level=,
 * event=, then `fixed` (pairs every line of this process carries, e.g. "bridge=x"; NULL or
 * "": none), fmt's pairs (fmt may be NULL), `tail` (NULL or "": none), and '\n'. Returns
 * its length (> 0). */
size_t gp_log_vformat(char *line, int level, const char *event, const char *fixed, const char *tail,
                      const char *fmt, va_list ap);
/* The same line as one JSON object (logjson.c; --log-format json), into line[GP_LOG_JSON_LINE]:
 *   {"ts":"…","level":"info","event":"…",<fixed>,<fmt's pairs>,<tail>}\n
 * Each key=value pair becomes a member in its order, its value decoded from the key=value
 * quoting (`\"`, `\\`, `\xNN`) back to the bytes logged, and written as a JSON string: `"`,
 * `\` and control characters (C0, DEL, C1, U+2028/9) escaped, valid UTF-8 kept, each byte
 * that is not UTF-8 written as U+FFFD; the line always parses, whatever the bytes. A value is a
 * JSON number only when fmt wrote it whole with one numeric conversion (%d %i %u %f %e %g, any
 * size) and it reads as one within int64 (so never "inf", "05", 2^64-1), and in tail (the
 * logger's own pairs: suppressed=N) when it reads as one; fixed's and every %s value are
 * strings, whatever they hold. Names have their control characters as '_', are cut at 64
 * bytes, and one met again gets "_2", "_3"… (no two members of one name; ts, level and event
 * stay the logger's). Text that is no pair belongs to the value before it (`err=No such file`),
 * or to "msg" at the start. A line that does not fit is cut at a character, closed and marked
 * "cut":true. Returns its length. */
#define GP_LOG_JSON_LINE (2 * GP_LOG_LINE)
size_t gp_log_vformat_json(char *line, int level, const char *event, const char *fixed,
                           const char *tail, const char *fmt, va_list ap);
/* The converter alone, for the fuzzer and the tests: the pairs of kv[0..len) (as a key=value
 * line holds them) as one JSON object (no ts, level, event) into out[0..cap), cap >= 64,
 * NUL-terminated; returns its length. num (NULL: none) marks the bytes of kv a numeric
 * conversion wrote; numbers: 0 every value a string, 1 those num marks may be numbers, 2 any
 * bare value that is a JSON number is one. */
size_t gp_log_kv_json(char *out, size_t cap, const char *kv, size_t len, const unsigned char *num,
                      int numbers);
/* Writes a formatted line to stderr in one write(2), so lines of several processes sharing
 * a terminal or a pipe never interleave mid-line. */
void gp_log_emit(const char *line, size_t len);
/* fmt's pairs alone (for a log sink): into kv[cap], "" when fmt is NULL or empty. */
void gp_log_vkv(char *kv, size_t cap, const char *fmt, va_list ap);

/* Rate limit per event name, for lines a peer can trigger at will: a token bucket of
 * GP_LOG_RL_BURST lines back to back, then GP_LOG_RL_PER_S a second. Events beyond the
 * table share its last slot (still limited, counted together). */
#define GP_LOG_RL_SLOTS 32
#define GP_LOG_RL_BURST 20.0
#define GP_LOG_RL_PER_S 10.0
typedef struct gp_log_rl_slot {
    char event[48];
    double tokens;
    uint64_t last_ms;
    unsigned long long suppressed;
} gp_log_rl_slot;
typedef struct gp_log_rl {
    gp_log_rl_slot slot[GP_LOG_RL_SLOTS];
    unsigned long long total; /* lines dropped since start */
} gp_log_rl;
/* 1: the line of `event` may be written now (then *suppressed is how many of that event
 * were dropped since the last one that passed, and is reset); 0: it is dropped (counted).
 * now_ms: a monotonic clock. */
int gp_log_rl_pass(gp_log_rl *rl, const char *event, uint64_t now_ms,
                   unsigned long long *suppressed);
uint64_t gp_log_mono_ms(void); /* CLOCK_MONOTONIC, ms */

/* Values from untrusted text, written into out (at least GP_LOG_QCAP bytes):
 * gp_log_quote: always "..." with `"`, `\` and control bytes (< 0x20, 0x7f) escaped (\xNN),
 *   other bytes as they are, cut at ~400 bytes with "..." (the bridge's br_q);
 * gp_log_value: bare when plain (no space, control, non-ASCII, `"`, `\` or `=`), else quoted
 *   with non-ASCII escaped too, cut at ~250 bytes (the house's hs_q). */
#define GP_LOG_QCAP 420
const char *gp_log_quote(char *out, const void *s, size_t len);
const char *gp_log_value(char *out, const void *s, size_t len);

/* --- the process's logger --------------------------------------------------------------- */

/* Line formats: key=value (the default) or one JSON object a line (--log-format). */
enum { GP_LOG_FMT_KV = 0, GP_LOG_FMT_JSON = 1 };
int gp_log_format_parse(const char *s); /* "kv" | "json" (any case) -> format, or -1 */
/* The daemons' --help for --log-format. */
#define GP_LOG_FORMAT_HELP                                                                         \
    "kv (key=value pairs) or json (one JSON object a line, the same fields) [SIGHUP]"
const char *gp_log_format_name(int format);
void gp_log_set_format(int format);
int gp_log_get_format(void);
/* gp_log_vformat or gp_log_vformat_json as the process's format says, into
 * line[GP_LOG_JSON_LINE] (for a tool that writes its own lines beside the process logger). */
size_t gp_log_vline(char *line, int level, const char *event, const char *fixed, const char *tail,
                    const char *fmt, va_list ap);

/* Level threshold (lines above it are dropped) and the pairs every line carries after
 * event= (copied, e.g. "bridge=<id>"; NULL: none). */
void gp_log_init(int level, const char *fixed);
void gp_log_set_level(int level);
int gp_log_enabled(int level);
/* Lines go to sink(level, event, kv) instead of stderr (NULL: back to stderr). */
typedef void (*gp_log_sink)(int level, const char *event, const char *kv);
void gp_log_set_sink(gp_log_sink sink);

/* One event line; fmt holds further `key=value` pairs (may be NULL). */
void gp_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, rate-limited per event (gp_log_rl_pass): the next line of an event that gets
 * through after drops ends with suppressed=N. */
void gp_logr(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
unsigned long long gp_log_suppressed(void); /* lines gp_logr dropped since start */

/* gp_log_quote / gp_log_value into one of 8 rotating static buffers (one thread): use the
 * result within the same gp_log call. */
const char *gp_q(const void *s, size_t len);
const char *gp_qv(const void *s, size_t len);

#endif
