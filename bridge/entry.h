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
    int has_reply;
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

/* Parses a `headers` field: a JSON object of at most GP_MAX_HEADERS string values whose names
 * are HTTP tokens and whose values hold no CR, LF or NUL. NULL if it is not; the caller owns
 * (json_decref) the result. */
json_t *br_headers_load(gp_str s);

#endif
