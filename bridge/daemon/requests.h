/* requests.h — the request/reply half of the Redis contract with the daemon's real ops
 * (requests.c, glue of reqcore.c): stream entries -> frames, frames -> reply entries,
 * deadlines, acknowledgement. It reports upward through br_requests_ops (house.c installs
 * them), so it calls the house table by no name. */
#ifndef BR_REQUESTS_H
#define BR_REQUESTS_H

#include "conn.h"
#include "entry.h"

#include <stddef.h>
#include <stdint.h>

typedef struct br_requests_ops {
    void *ud;
    /* An acknowledgement found a newer epoch for (house, epoch): let go of it. */
    void (*fenced)(void *ud, const char *house, uint64_t epoch);
    /* The connection that holds `house` on this bridge, or NULL. */
    br_conn *(*find)(void *ud, const char *house);
    /* Room freed up on c (its reads were capped): read its stream again. */
    void (*read_more)(void *ud, br_conn *c);
    /* Replies wait for Redis beyond a bound (on 1), or no longer (on 0): stop reading the
     * houses' connections, or read on (reqcore.h, pressure). */
    void (*pressure)(void *ud, int on);
} br_requests_ops;

typedef struct br_requests br_requests;
struct br_stats;

/* A context: its reply writer and settling table, its scripts' SHAs, the ops up. env and
 * stats are kept (they outlive it). NULL: out of memory. main.c makes it; br_houses_init
 * installs the ops before the first entry is read. */
br_requests *br_requests_new(const br_env *env, struct br_stats *stats);
void br_requests_set_ops(br_requests *r, const br_requests_ops *ops);
void br_requests_free(br_requests *r); /* at exit, after the loop (NULL ok) */
void br_req_load_scripts(br_requests *r);
void br_req_entries(br_requests *r, br_conn *c, const redisReply *entries, int pending);
/* One entry of them (house.c routes each entry by its kind: requests here, stream opens to
 * streams.h). */
void br_req_entry(br_requests *r, br_conn *c, const redisReply *e, int pending);
void br_req_frame(br_requests *r, br_conn *c, const gp_frame *f);
void br_req_free_all(br_requests *r, br_conn *c);  /* every request dropped, entries left pending */
void br_req_conn_free(br_requests *r, br_conn *c); /* the connection's table, once it is freed */
void br_req_deadlines(br_requests *r, br_conn *c, uint64_t now_redis);
int br_req_in_flight(br_requests *r, const br_conn *c, const char *entry_id);
/* 1 while a reply to (house, entry) is being written or acknowledged by this bridge. */
int br_reply_settling(br_requests *r, const char *house, const char *entry_id);
/* br_reply objects alive: reply writes and acks not yet settled (shutdown waits for 0). */
unsigned br_req_replies_live(const br_requests *r);
/* SIGTERM: 1 while c must stay (requests of its house in flight, or replies not yet settled);
 * it is closed with GOAWAY DRAINING as soon as neither holds. */
int br_req_drain_busy(const br_requests *r, const br_conn *c);
/* Next body frame of the round-robin queue into *f (data borrowed / in scratch). 1 if a
 * frame was produced, 0 if the queue is empty. When it was the body's last chunk, *spent
 * receives the body buffer, which the caller frees once the frame is encoded. */
int br_req_next_body(br_requests *r, br_conn *c, gp_frame *f, uint8_t *scratch, size_t cap,
                     uint8_t **spent);

/* Writes an error reply (final) for entry `en` and then acks it (error NULL and
 * en->reply_kind "stream": the 200 outcome of a stream open, reqcore.h). holder: NULL = acked under
 * our epoch for `c`; otherwise the janitor path (ack only if the state still names `holder`,
 * "" for none). Takes no ownership. */
void br_reply_error(br_requests *r, br_conn *c, const char *house, const char *reqkey,
                    const br_entry *en, int status, const char *error, const char *message,
                    const char *holder);

#endif
