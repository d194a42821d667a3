/* front_int.h — what the front door's two halves share (not an API: only bridge/front/
 * includes it): front.c, the HTTP requests, the reader pool and the object; front_ws.c, the
 * WebSockets, which ride the same requests (the open's outcome) and readers (sout). */
#ifndef BR_FRONT_INT_H
#define BR_FRONT_INT_H

/* Include front.h first: this header is part of that module (it includes nothing of
 * bridge/front/ above it, so the module graph has no cycle). */
#include "../store/rkeys.h"
#include "adapters/uv_admin.h"
#include "froute.h"

#define FR_MAX_READERS 256     /* reader connections; more requests wait for one */
#define FR_WAIT_GRACE_MS 10000 /* past the deadline: the holder's or the janitor's 504 is due */
#define FR_TOKEN_FILE_MAX (1u << 20)
#define FR_MAX_TIMEOUT_MS 86400000LL
/* Reply bytes queued for one HTTP connection (a slow client) past which its reply stream is no
 * longer read: it waits in Redis, bounded there by the contract, not in the bridge. */
#define FR_MAX_QUEUED (1u << 20)
/* Entries an XREAD asks for: few until their size is known, then as many as fit in
 * FR_MAX_QUEUED (so one read of big chunks never holds a whole reply), at most FR_MAX_COUNT. */
#define FR_FIRST_COUNT 4
#define FR_MAX_COUNT 64

typedef struct fr_req fr_req;
typedef struct fr_ws fr_ws;

typedef struct fr_reader {
    br_front *f;
    br_redis *r;
    int node; /* the Redis node it reads from (br_db_key_node) */
    fr_req *busy;
    uint64_t idle_since; /* loop ms: not busy since */
} fr_reader;

struct fr_req {
    fr_req *next; /* the wait queue */
    br_front *f;
    gp_admin_call *call; /* NULL once answered */
    fr_reader *rd;
    char key[GP_KEY_MAX];
    char last[64];
    char house[FR_HOUSE_MAX + 1];
    uint64_t t0, wait_until;
    int status, started;
    int asked;      /* 1 + the node a reader was opened on for it (0: none) */
    unsigned count; /* entries an XREAD asks for (0: FR_FIRST_COUNT) */
    int paused;     /* waiting for its client to take what is queued (on_drained) */
    int head;       /* a HEAD request: the upstream's Content-Length is the answer's */
    int refs;       /* the XADD's answer and the read chain: freed when both are over */
    fr_ws *ws;      /* an Upgrade: its open, then its sout (the read chain reads for it) */
};

struct br_front {
    br_front_cfg cfg;
    char *prefix, *domain;
    gp_admin *srv;
    int port, stopping, tls;
    fr_tokens tokens;
    gp_authlimit *limit;
    fr_reader *readers[FR_MAX_READERS];
    unsigned nreaders, inflight, nwait;
    fr_req *wait_head, *wait_tail;
    fr_ws *ws_head, *ws_tail;
    unsigned nws;      /* WebSockets alive (each holds the front door like a request) */
    unsigned nws_open; /* of them open (gp_bridge_http_websockets) */
    gp_metric *m_req, *m_auth, *m_inflight, *m_paused, *m_ws, *m_upgrades;
    uv_timer_t *sweep; /* closes idle readers; its own allocation, freed when libuv closed it */
    br_script add;     /* store_req.h's GP_LUA_REQ_ADD_REGISTERED */
};

typedef struct fr_entry {
    const redisReply *status, *headers, *body, *final, *error, *message;
} fr_entry;

/* front.c */
void fr_count(br_front *f, int status); /* an answer, by status class */
void fr_front_free(br_front *f);
/* Answers call with status and the JSON error {"error":code,"message":msg} (and extra header
 * lines, or NULL), counted. */
void fr_error_reply(br_front *f, gp_admin_call *call, int status, const char *code, const char *msg,
                    const char *extra);
void fr_req_done(fr_req *rq); /* the read chain is over: the reader goes back to the pool */
void fr_requeue(fr_req *rq);  /* its reader gives it up: back to the head of the queue */
void fr_pump(br_front *f);    /* waiting requests to readers */
/* The args for fr_add: KEYS (the house's registry key and request stream, named into keys,
 * which a borrows: the caller's, alive until the command is sent) first, then the caller
 * appends the entry's fields. -1: a key does not fit. */
int fr_add_args(const br_front *f, const char *house, char keys[2][GP_KEY_MAX], br_args *a);
/* XADDs the entry in a (from fr_add_args) if the house is registered; rq's answer: 404
 * unknown_house, 503 when Redis did not take it (fr_on_xadd). -1 when not sent. */
int fr_add(br_front *f, fr_req *rq, const br_args *a);
int fr_issue_read(fr_req *rq); /* the next XREAD of rq's key (-1: back in the queue) */
/* XREAD of rq->key from rq->last, block capped at half the Redis timeout (-1: back in the
 * queue); fr_issue_read's and fr_ws_issue_read's one command. */
int fr_xread(fr_req *rq, uint64_t count, uint64_t block);
void fr_enqueue(fr_req *rq);
void fr_on_xadd(redisReply *r, void *ud); /* ud: the fr_req of the XADD */
void fr_on_read(redisReply *r, void *ud); /* ud: the fr_req of the XREAD */
void fr_entry_fields(const redisReply *kv, fr_entry *e);

/* front_ws.c */
int fr_is_websocket(const gp_http_request *req);    /* Upgrade: websocket, Connection: upgrade */
void fr_ws_count(br_front *f, const char *outcome); /* gp_bridge_http_upgrades_total */
/* An Upgrade that passed the route and token checks: the stream opened, then the bytes. */
void fr_ws_start(br_front *f, gp_admin_call *call, const gp_http_request *req, const fr_route *rt,
                 long long timeout);
int fr_ws_open(const fr_ws *ws); /* its stream is open (its reads are of sout) */
void fr_ws_on_read(fr_req *rq, redisReply *r);
int fr_ws_issue_read(fr_req *rq);
void fr_ws_chain_over(fr_ws *ws, int status); /* from fr_req_done */
void fr_ws_sweep(br_front *f, uint64_t now);  /* from the sweep timer */

#endif
