/* reqcore.h — the request/reply core of the bridge, free of the daemon's globals: every call
 * takes its control block, and everything from outside (sending a frame to the house,
 * running a Lua script on Redis, the clocks, fencing news, stats and metrics) comes in
 * through the ops given to the constructor. Unit-tested on a fake house, a fake Redis and a
 * virtual clock (tests/unit/reqcore.c). requests.c builds it with the daemon's real ops.
 *
 * Two control blocks:
 * - br_replies (one per daemon): the reply writer and the settling table. A br_reply is one
 *   final reply being written (entries through the reply script, refcounted by their
 *   callbacks, so it outlives the request and its connection), then, only once Redis has
 *   confirmed every entry of it, the acknowledgement (XACK+XDEL under the house's fencing
 *   epoch, or under the state hash's holder for the janitor). Until that ack has run the
 *   (house, entry) pair is "settling": a rescan of the pending list must not deliver it again.
 * - br_reqtab (one per live house connection): the requests in flight on it. Stream entries
 *   become REQ_HEAD frames (REQ_BODY frames in round robin), RESP_HEAD/RESP_BODY frames
 *   become reply entries of at most reply_chunk bytes, deadlines become 504s; a request that
 *   leaves the table (answered, timed out, or its house gone) hands its reply to br_replies. */
#ifndef BR_REQCORE_H
#define BR_REQCORE_H

#include "../store/redis.h"
#include "auth.h"
#include "compress.h"
#include "entry.h"
#include "frame.h"
#include "gp.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The scripts the core runs (store_req.h, store_reply.h): the glue maps them to br_script. */
typedef enum {
    BR_RS_ACK,        /* XACK+XDEL under the epoch */
    BR_RS_ACK_UNHELD, /* XACK+XDEL under the state hash's holder (the janitor) */
    BR_RS_REPLY,      /* one reply entry, TTL refreshed */
    BR_RS_REPLY_DROP, /* a partial reply abandoned mid-stream */
    BR_RS_COUNT
} br_rs_script;

/* The counters the core increments (the daemon's metrics, bridge/admin/ADMIN.md). */
typedef enum {
    BR_RC_REPLY_FAILURES,   /* label: wrong_type, error */
    BR_RC_INVALID_REQUESTS, /* label: request, too_large, reply_key */
    BR_RC_FORWARDED,
    BR_RC_PENDING_CLAIMED,
    BR_RC_BAD_RESPONSES, /* label: status, header_name, header_value */
} br_rc_metric;

typedef struct br_replies_cfg {
    const char *prefix;  /* key prefix (the recent list, the state hash); borrowed */
    long long recent;    /* entries kept in a house's recent list, 0: none */
    long long reply_ttl; /* seconds */
} br_replies_cfg;

typedef struct br_replies_ops {
    /* Runs a script with nkeys of a's values as KEYS (fn may be NULL). 0: fn will be called
     * exactly once (NULL reply: Redis unavailable); -1: fn is NOT called. */
    int (*eval)(void *ud, br_rs_script s, int nkeys, const br_args *a, br_redis_fn fn, void *fnud);
    uint64_t (*now_ns)(void *ud);       /* monotonic ns (request latency) */
    uint64_t (*now_redis_ms)(void *ud); /* Redis clock ms (the recent list) */
    /* An ack found a newer epoch: the house is held elsewhere now. */
    void (*fenced)(void *ud, const char *house, uint64_t epoch);
    /* A final reply issued (epoch 0: by the janitor). */
    void (*final)(void *ud, const char *house, uint64_t epoch, unsigned status, int is_error,
                  uint64_t fwd_ns);
    void (*count)(void *ud, br_rc_metric m, const char *label); /* a metric's increment */
    void (*live)(void *ud, unsigned n);                         /* br_reply objects alive now */
    /* One of house's replies settled: written and acknowledged (or given up). May be NULL. */
    void (*settled)(void *ud, const char *house);
    /* on 1: more than BR_REPLY_WBYTES_HIGH bytes of reply entries wait for Redis to confirm
     * them: stop reading the houses' responses (their TCP windows hold the rest); on 0: below
     * BR_REPLY_WBYTES_LOW again, read on. May be NULL. */
    void (*pressure)(void *ud, int on);
} br_replies_ops;

#define BR_REPLY_WBYTES_HIGH (2u << 20)
#define BR_REPLY_WBYTES_LOW (1u << 20)

typedef struct br_replies br_replies;
typedef struct br_reply br_reply;

br_replies *br_replies_new(const br_replies_cfg *cfg, const br_replies_ops *ops, void *ud);
/* Replies still alive keep their memory (their callbacks are pending); call at exit. */
void br_replies_free(br_replies *rs);
void br_replies_set_cfg(br_replies *rs, const br_replies_cfg *cfg); /* SIGHUP */
unsigned br_replies_live(const br_replies *rs);
size_t br_replies_wbytes(const br_replies *rs); /* bytes of reply entries Redis has not confirmed */
/* 1 while a reply of (house, entry) is written or its ack not yet run. */
int br_replies_settling(const br_replies *rs, const char *house, const char *entry_id);
/* How many of house's replies are written or being acknowledged now (a scan of the table: for
 * a draining bridge, not for every request). */
unsigned br_replies_house_settling(const br_replies *rs, const char *house);

/* A reply of one entry. fencekey: the epoch key (holder NULL, ack under epoch) or the state
 * key (holder set: ack only while the hash names that holder). key: the checked reply key,
 * or NULL: no reply is written, only the ack. NULL when out of memory. */
br_reply *br_reply_new(br_replies *rs, const char *house, const char *reqkey, const char *entry_id,
                       gp_str frame_id, const char *key, const char *fencekey, uint64_t epoch,
                       const char *holder);
/* What the recent list says about the request. */
void br_reply_meta(br_reply *rp, gp_str method, gp_str path, uint64_t fwd_ns);
void br_reply_set(br_reply *rp, unsigned status, const char *headers, gp_str error, gp_str message);
/* Appends one entry (final or not); after the final one and every entry confirmed, acks. */
void br_reply_entry(br_reply *rp, const uint8_t *body, size_t len, int final);
/* Abandoned mid-stream (house gone): a partial reply is dropped, the entry stays pending
 * and its redelivery writes the whole reply again. Then releases the caller's reference. */
void br_reply_abandon(br_reply *rp);
void br_reply_unref(br_reply *rp);

/* The one error reply of an entry, then its ack (both the holding bridge and the janitor
 * answer with it). error NULL: not an error (a stream open's 200, en->reply_kind "stream": the
 * reply is `id status final kind`, proto/STREAMS.md). A refused reply key (br_entry_reply_key) gets
 * nothing written: a 400 bad_reply goes to the recent list and the entry is settled. fencekey,
 * epoch, holder: as for br_reply_new. */
void br_replies_error(br_replies *rs, const char *house, const char *reqkey, const char *fencekey,
                      uint64_t epoch, const char *holder, const br_entry *en, int status,
                      const char *error, const char *message);

/* --- the requests in flight on one house connection -------------------------------------- */

typedef struct br_req br_req;
typedef struct br_reqtab br_reqtab;

typedef struct br_reqtab_cfg {
    const char *house, *reqkey, *epochkey; /* copied */
    uint64_t epoch;
    long long max_body; /* --max-body: larger request bodies get a 413 */
    size_t reply_chunk; /* --reply-chunk: body bytes per reply entry */
    gp_zctx *zc;        /* compression of request bodies, decompression of responses */
} br_reqtab_cfg;

typedef struct br_reqtab_ops {
    /* Sends a frame to the house. Non-zero: the connection is closing, and the table was
     * emptied (br_reqtab_free_all) before this returned. */
    int (*send)(void *ud, const gp_frame *f);
    /* The house broke the protocol: close the connection (which empties the table). */
    void (*protocol_error)(void *ud, const char *why, uint32_t stream);
    /* A request left the table or its body went out: there may be room to read again (or
     * nothing left to drain). The table may be emptied from here. */
    void (*room)(void *ud);
    void (*bytes)(void *ud, int in, size_t n);          /* body bytes: in from the house */
    void (*compressed)(void *ud, size_t raw, size_t z); /* a compressed body chunk */
} br_reqtab_ops;

br_reqtab *br_reqtab_new(br_replies *rs, const br_reqtab_cfg *cfg, const br_reqtab_ops *ops,
                         void *ud);
/* The ud its br_replies was made with (the glue's context), for the table's callbacks. */
void *br_reqtab_owner(const br_reqtab *t);
void br_reqtab_free(br_reqtab *t); /* frees its requests too (abandoning their replies); NULL ok */
/* Every request dropped: partial replies abandoned, entries left pending. */
void br_reqtab_free_all(br_reqtab *t);
/* One entry of the house's stream ([id, [field, value, ...]]), read at Redis time now (ms):
 * forwarded, or answered with an error reply; pending: from the pending list (skipped when
 * still in flight or settling). */
void br_reqtab_entry(br_reqtab *t, const redisReply *e, int pending, uint64_t now);
/* A RESP_HEAD or RESP_BODY frame from the house. */
void br_reqtab_frame(br_reqtab *t, const gp_frame *f);
/* Timed-out requests: CANCEL to the house, 504 to the producer. now: Redis ms. */
void br_reqtab_deadlines(br_reqtab *t, uint64_t now);
/* The next REQ_BODY frame (round robin between bodies), compressed into scratch when it
 * pays. 0: none. *spent: a body buffer to free once f is encoded (or NULL). */
int br_reqtab_next_body(br_reqtab *t, gp_frame *f, uint8_t *scratch, size_t cap, uint8_t **spent);
/* Backpressure: how many more entries may be read (max_inflight less those in flight), 0 when
 * full or when the bodies held reach max_bytes: a house that does not keep up leaves its
 * backlog in Redis, never in our memory. t NULL: an empty table. */
long long br_reqtab_room(const br_reqtab *t, long long max_inflight, long long max_bytes);
int br_reqtab_in_flight(const br_reqtab *t, const char *entry_id); /* or settling */
unsigned br_reqtab_count(const br_reqtab *t);
size_t br_reqtab_bytes(const br_reqtab *t);          /* request body bytes held */
uint64_t br_reqtab_min_deadline(const br_reqtab *t); /* Redis ms, 0: none */
br_req *br_reqtab_body_head(const br_reqtab *t);     /* NULL: no body bytes to send */

/* JSON strings must be UTF-8; bytes from the wire need not be ('?' replaces the others). */
json_t *br_json_bytes(gp_str s);

#endif
