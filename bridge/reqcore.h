/* reqcore.h — the request/reply core of the bridge, free of the daemon's globals: every call
 * takes its control block (br_replies), and everything from outside (running a Lua script on
 * Redis, the clocks, fencing news, stats and metrics) comes in through br_replies_ops given
 * to the constructor. Unit-tested on a fake Redis and a virtual clock (tests/unit/reqcore.c).
 *
 * It owns today the reply writer and the settling table: a br_reply is one final reply being
 * written (entries XADDed through the reply script, refcounted by their callbacks, so it
 * outlives the request and its connection), then, only once Redis has confirmed every entry
 * of it, the acknowledgement (XACK+XDEL under the house's fencing epoch, or under the state
 * hash's holder for the janitor). Until that ack has run the (house, entry) pair is
 * "settling": a rescan of the pending list must not deliver it again.
 *
 * Still in requests.c (its glue and the next step of the move): the in-flight table, body
 * round robin, chunking of responses and deadlines, which reach their br_conn. */
#ifndef BR_REQCORE_H
#define BR_REQCORE_H

#include "auth.h"
#include "gp.h"
#include "redis.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The scripts the core runs (store_req.h, store_reply.h): the glue maps them to br_script. */
typedef enum {
    BR_RS_ACK,        /* XACK+XDEL under the epoch */
    BR_RS_ACK_UNHELD, /* XACK+XDEL under the state hash's holder (the janitor) */
    BR_RS_REPLY,      /* one reply entry, TTL refreshed */
    BR_RS_REPLY_DROP, /* a partial reply abandoned mid-stream */
} br_rs_script;

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
    void (*reply_failed)(void *ud, const char *reason); /* metric: a reply write refused */
    void (*live)(void *ud, unsigned n);                 /* br_reply objects alive now */
} br_replies_ops;

typedef struct br_replies br_replies;
typedef struct br_reply br_reply;

br_replies *br_replies_new(const br_replies_cfg *cfg, const br_replies_ops *ops, void *ud);
/* Replies still alive keep their memory (their callbacks are pending); call at exit. */
void br_replies_free(br_replies *rs);
void br_replies_set_cfg(br_replies *rs, const br_replies_cfg *cfg); /* SIGHUP */
unsigned br_replies_live(const br_replies *rs);
/* 1 while a reply of (house, entry) is written or its ack not yet run. */
int br_replies_settling(const br_replies *rs, const char *house, const char *entry_id);

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

/* JSON strings must be UTF-8; bytes from the wire need not be ('?' replaces the others). */
json_t *br_json_bytes(gp_str s);

#endif
