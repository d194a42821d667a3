/* gp.h — common definitions of the pure protocol core (proto/): error codes, byte strings,
 * the injected log sink. Sans-I/O: nothing in proto/ opens a socket, reads a clock or prints;
 * time, randomness and logging come from the caller. */
#ifndef GP_H
#define GP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GP_WUR __attribute__((warn_unused_result))

/* Errors: functions return 0 (or a size) on success and one of these (negative) on failure. */
enum {
    GP_OK = 0,
    GP_ERR_NOMEM = -1,     /* allocation failed */
    GP_ERR_TRUNCATED = -2, /* input ends inside a field: feed more bytes (framer) or reject */
    GP_ERR_TOO_LARGE = -3, /* a length exceeds its configured limit: close the connection */
    GP_ERR_MALFORMED = -4, /* bytes cannot be a valid frame/field: close the connection */
    GP_ERR_VERSION = -5,   /* unsupported protocol version */
    GP_ERR_BUFFER = -6,    /* caller's output buffer too small (encode): grow it and retry */
    GP_ERR_AUTH = -7,      /* authentication failed (MAC mismatch, wrong state) */
    GP_ERR_STATE = -8,     /* call not valid in the object's current state */
    GP_ERR_COMPRESS = -9,  /* zstd failure or decompressed size over the limit */
    GP_ERR_INVALID = -10,  /* invalid argument / config value */
};

/* Human-readable name of a GP_ERR_* code; never NULL. */
const char *gp_strerror(int err);

/* A borrowed byte string: points into someone else's buffer, not NUL-terminated. */
typedef struct gp_str {
    const uint8_t *p;
    size_t len;
} gp_str;

#define GP_STR_LIT(s) ((gp_str){(const uint8_t *)(s), sizeof(s) - 1})
gp_str gp_str_c(const char *s); /* borrow a C string (NULL -> empty) */
int gp_str_eq(gp_str a, const char *c);
/* 1 when s is a name: 1..max bytes of A-Z a-z 0-9 . _ - (house ids, stream ids, service
 * names: safe in keys, logs and URLs without quoting). */
int gp_name_ok(gp_str s, size_t max);
/* An HTTP header line p[0..n) (its CR LF already cut) split at its first ':' into *name and
 * *value, the value without the blanks around it. 0, or -1 when there is no ':' or no name. */
int gp_header_split(const char *p, size_t n, gp_str *name, gp_str *value);
/* The value of one hex digit (0-9, a-f, A-F): 0..15, or -1 for any other character. */
int gp_hexval(char c);
/* 64-bit FNV-1a of a NUL-terminated string: the hash of the daemons' tables keyed by house id
 * (ids are checked text, and each table bounds what an id may cost, so no keyed hash is
 * needed there; tables keyed by what a peer chooses freely use SipHash). */
uint64_t gp_fnv1a(const char *s);

/* Writes a formatted error message into err[errlen], if the caller gave one (err may be NULL
 * or errlen 0: the message is dropped). The one writer of the "char *err, size_t errlen" out
 * parameter that parsers and the store's clients take. */
__attribute__((format(printf, 3, 4))) void gp_errf(char *err, size_t errlen, const char *fmt, ...);

/* Frees each pointer given (NULL ones too): a destructor's list of owned strings and buffers
 * in one statement. GP_FREE_ALL(a, b, c) is gp_free_all over {a, b, c}. */
void gp_free_all(void *const *ps, size_t n);
#define GP_FREE_ALL(...)                                                                           \
    gp_free_all((void *[]){__VA_ARGS__}, sizeof((void *[]){__VA_ARGS__}) / sizeof(void *))

/* Log sink injected by the host. level: 0 error, 1 warn, 2 info, 3 debug. */
typedef void (*gp_log_fn)(void *ud, int level, const char *msg);

#endif
