/* entry.h — request stream entries: the producer-facing fields, validated (pure). */
#ifndef GP_BRIDGE_ENTRY_H
#define GP_BRIDGE_ENTRY_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdint.h>

#include "frame.h"
#include "gp.h"

typedef struct br_entry {
    const char *entry_id;
    gp_str id, method, path, service, headers, body, reply;
    gp_str kind; /* the `kind` field (p NULL: absent) */
    int has_reply;
    /* The reply's `kind` field ("stream": the outcome of a stream open), NULL: none. Set by
     * whoever answers the entry, not by br_entry_parse. */
    const char *reply_kind;
    uint64_t timeout_ms, deadline;
    int status; /* 0: valid, else the error reply to give */
    const char *error, *message;
    char msgbuf[160]; /* storage for a formatted message */
} br_entry;
/* Validates one XREADGROUP/XRANGE entry ([id, [field, value, ...]]). Never fails: on return
 * status is 0 (valid: forward it), 400/413 (answer with error/message and acknowledge), or
 * -1 (not an entry, or deleted while pending: acknowledge without a reply). The gp_str fields
 * borrow from `e`. max_body: the largest body accepted (413 beyond). */
void br_entry_parse(const redisReply *e, long long max_body, br_entry *out);

/* What an entry of a house's request stream is, by its `kind` field (proto/STREAMS.md): a
 * request (no `kind`, or `http`; also anything that is not an entry), a TCP stream open
 * (`stream`), or another kind (br_entry_parse answers it with a 400 naming `kind`). */
enum { BR_KIND_HTTP, BR_KIND_STREAM, BR_KIND_OTHER };
int br_entry_kind(const redisReply *e);

/* Parses a `headers` field: a JSON object of at most GP_MAX_HEADERS string values whose names
 * are HTTP tokens and whose values hold no control byte but tab (nor DEL). NULL if it is not,
 * with what is wrong, naming the header, in why (NULL ok); the caller owns (json_decref) the
 * result. */
json_t *br_headers_load(gp_str s, char *why, size_t whylen);

/* --- reply keys (README: Reply) ----------------------------------------------------------- */
/* A reply key is `<prefix>:rep:` and at least one more byte, at most BR_REPLY_KEY_MAX bytes in
 * all, without NUL or control bytes: the bridge writes nothing else for a producer, so that a
 * `reply` field cannot name the registry, another house's keys or anything outside Ghost Port
 * (and Redis ACLs can scope a producer to `<prefix>:rep:<producer>:*`). */
#define BR_REPLY_KEY_MAX 256
/* NULL if key[0..len) is such a key, else why not (a message for the producer). */
const char *br_reply_key_check(const char *key, size_t len, const char *prefix);
/* The reply key of a parsed entry into out[BR_REPLY_KEY_MAX + 1] (NUL-terminated): its
 * `reply` field, or `<prefix>:rep:<id>` when it has none. Returns the key's length, 0 when no
 * reply is wanted (an empty `reply` field), or -1 when the key is refused (*why says why). */
int br_entry_reply_key(const br_entry *en, const char *prefix, char *out, const char **why);

/* --- a house's response (RESP_HEAD), checked before anything reaches a reply ------------- */
/* Status codes a reply may carry: 100..599 (RFC 9110 §15). */
int br_resp_status_ok(unsigned status);
/* NULL if name is an HTTP token (RFC 7230 §3.2.6, 1..256 bytes) and value holds no control
 * byte but HTAB (no CR, LF, NUL, other C0 or DEL: RFC 7230 field-content); else the reason,
 * "header_name" or "header_value". */
const char *br_resp_header_check(gp_str name, gp_str value);

/* The length of s[0..len) cut to at most max bytes at a UTF-8 character boundary (max >=
 * 4), leaving room for the 3-byte marker BR_CLIP_MARK that the caller appends when the
 * result is shorter than len. */
#define BR_CLIP_MARK "\xe2\x80\xa6" /* U+2026 HORIZONTAL ELLIPSIS */
size_t br_clip_len(const char *s, size_t len, size_t max);

#endif
