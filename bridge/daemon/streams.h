/* streams.h — TCP streams through Redis, the bridge's side (streams.c; the contract:
 * proto/STREAMS.md). The bridge is a relay: the house is the stream's endpoint. It opens a
 * stream when an entry `kind stream` arrives on a held house's request stream (S_OPEN, the
 * house's S_OPENED, the outcome on the reply key), then carries each open stream's `sin`
 * entries to the house (S_ENTRY) and the house's S_ENTRY frames to `sout`, under the house's
 * epoch. A house that reconnects names its live streams (S_ATTACH) and they go on from the
 * bytes Redis still holds. Its state is only what it relays: the bytes stay in Redis.
 *
 * A context (br_streams, made by main.c, handed to house.c): every call takes it first. It
 * reports up through br_streams_ops (house.c installs them), so it calls the house table by
 * no name. */
#ifndef BR_STREAMS_H
#define BR_STREAMS_H

#include "conn.h"
#include "requests.h"

#include <stddef.h>
#include <stdint.h>

/* Streams relayed by one bridge at most (opening or open): more opens get 503 unavailable. */
#define BR_STREAMS_MAX 10000
/* ... and for one house connection (its own --max-streams is the house's check; this one
 * keeps a hostile house from taking every slot of the bridge with S_ATTACH). */
#define BR_STREAMS_PER_HOUSE 4096

typedef struct br_streams br_streams;

typedef struct br_streams_ops {
    void *ud;
    /* A fenced write found a newer epoch for (house, epoch): let go of the house. */
    void (*fenced)(void *ud, const char *house, uint64_t epoch);
} br_streams_ops;

/* env and reqs are kept (they outlive it): the outcomes of opens are reply entries written and
 * acknowledged by the request core. Declares its metrics on env->metrics->reg. NULL: out of
 * memory. */
br_streams *br_streams_new(const br_env *env, br_requests *reqs);
void br_streams_set_ops(br_streams *s, const br_streams_ops *ops);
void br_streams_free(br_streams *s); /* at exit, after the loop (NULL ok) */
void br_streams_load_scripts(br_streams *s);

/* An entry `kind stream` of c's request stream (XREADGROUP's [id, [field, value, ...]]);
 * pending: read from the pending list (skipped while this bridge is still answering it). */
void br_streams_open(br_streams *s, br_conn *c, const redisReply *e, int pending);
/* S_OPENED, S_ENTRY, S_ATTACH from c (conn.c lets them through only at protocol 2). */
void br_streams_frame(br_streams *s, br_conn *c, const gp_frame *f);
/* c is closing or was fenced: its streams are dropped here (their bytes stay in Redis). */
void br_streams_conn_gone(br_streams *s, br_conn *c);
/* A pub/sub push: 1 when it was a stream's doorbell (a sin key's keyspace channel), else 0. */
int br_streams_on_message(br_streams *s, const char *kind, const char *chan, size_t clen,
                          const char *msg, size_t mlen);
void br_streams_sub_up(br_streams *s); /* the subscribers are back: subscribe again */
/* Every 100 ms (loop ms): opens past their deadline, sweeps, paused streams. */
void br_streams_tick(br_streams *s, uint64_t now);
unsigned br_streams_count(const br_streams *s); /* relayed now (opening or open) */

#endif
