/* front.c — the bridge's HTTP front door (front.h, README.md "The HTTP front door"). I/O side:
 * the HTTP server is the admin port's sans-I/O core (proto/admin_http.h, with its streamed
 * answers) on its libuv adapter; the pure parts are froute.c.
 *
 * A request: route (404), token (401/403/429), one XADD of the public contract on the
 * bridge's Redis connection, then the reply key read with XREAD BLOCK on a reader connection
 * of the front door's own pool (one request a reader at a time, so a blocked read never
 * delays another; requests wait in a queue when all are busy), each entry written to the
 * client as it arrives: one entry with Content-Length, several as chunks. */
#include "front.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "adapters/uv_admin.h"
#include "conf.h"
#include "front_tls.h"
#include "froute.h"
#include "stream.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/* WebSockets (an Upgrade carried over a TCP stream of proto/STREAMS.md, to the house's HTTP
 * upstream): each holds a reader connection for its sout, so at most half the pool. */
#define FR_WS_MAX (FR_MAX_READERS / 2)
#define FR_WS_CHUNK (64u << 10)   /* data bytes a sin entry (STREAMS.md: writers use 64 KiB) */
#define FR_WS_IN_MAX (256u << 10) /* client bytes held for sin: its reading stops past this */
#define FR_WS_READ_COUNT 64       /* sout entries an XREAD */
#define FR_WS_XDEL_BATCH 128
#define FR_WS_LINGER_MS 10000 /* an ended WebSocket's queued bytes, then its connection closes */

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

/* A sin entry we wrote: deleted once the house acknowledged every byte below `end`. */
typedef struct fr_sent {
    char id[48];
    uint64_t end;
} fr_sent;

enum { WS_OPENING, WS_OPEN };

/* A WebSocket: the client's connection (taken over from the HTTP server once the stream is
 * open) joined to a TCP stream to the house's HTTP upstream; the opener's endpoint of
 * STREAMS.md (gp_stream) decides credit, acks, fin, reset and idle. */
struct fr_ws {
    fr_ws *prev, *next; /* br_front's list */
    br_front *f;
    fr_req *rq;          /* the read chain (open outcome, then sout); NULL once it ended */
    gp_admin_conn *conn; /* the client's, once taken over; NULL once released */
    gp_stream s;
    int phase;
    char sid[33];
    char house[FR_HOUSE_MAX + 1];
    char kin[GP_KEY_MAX], kout[GP_KEY_MAX];
    /* client -> sin: bytes read, not yet written (the request head first) */
    uint8_t *ib;
    size_t ilen, icap;
    int in_eof, xadd_busy, reading;
    uint64_t xadd_end; /* the offset after the data XADD in flight */
    int xadd_fin;      /* it carries our fin */
    int xadd_bare;     /* it is a bare fin: never trimmed (an ack of its offset may predate it) */
    fr_sent *ents;     /* our sin data entries not yet trimmed, oldest first (a ring) */
    size_t ents_head, ents_len, ents_cap;
    char last_ack_id[48]; /* our last ack-only entry: deleted when the next supersedes it */
    int paused;           /* sout not read while the client has over FR_MAX_QUEUED queued */
    int over, rst_sent, out_shut, refused, counted;
    uint64_t t0, over_at;
    uint64_t bytes_in, bytes_out;
    int refs; /* the read chain, the client's connection, each XADD in flight */
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
};

int br_front_loopback(const char *addr) {
    unsigned char b[16];
    if (!addr || strcmp(addr, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, addr, b) == 1)
        return b[0] == 127;
    static const unsigned char one[16] = {[15] = 1};
    return inet_pton(AF_INET6, addr, b) == 1 && memcmp(b, one, 16) == 0;
}

int br_front_port(const br_front *f) {
    return f ? f->port : -1;
}

/* --- answering ------------------------------------------------------------------------------ */

static void count(br_front *f, int status) {
    static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    if (f->m_req && status >= 100 && status < 600)
        gp_metric_inc(f->m_req, cls[status / 100 - 1]);
}

static void front_free(br_front *f) {
    for (unsigned i = 0; i < f->nreaders; i++)
        free(f->readers[i]);
    fr_tokens_free(&f->tokens);
    gp_authlimit_free(f->limit);
    free(f->prefix);
    free(f->domain);
    free(f);
}

static void error_reply(br_front *f, gp_admin_call *call, int status, const char *code,
                        const char *msg, const char *extra) {
    size_t len = 0;
    char *body = gp_admin_error_json(code, msg, &len);
    gp_admin_reply(call, status, "application/json", extra, body ? body : "", body ? len : 0);
    free(body);
    count(f, status);
}

static void pump(br_front *f);

/* The reader's request is over: it is idle from now. */
static void reader_free_up(fr_reader *rd) {
    rd->busy = NULL;
    rd->idle_since = uv_now(rd->f->cfg.loop);
}

/* One of the request's two holders let go (the XADD's answer came, or its read chain
 * ended); the last frees it, and a stopping front door with its last request. */
static void req_unref(fr_req *rq) {
    if (--rq->refs > 0)
        return;
    br_front *f = rq->f;
    f->inflight--;
    if (f->m_inflight)
        gp_metric_set(f->m_inflight, NULL, f->inflight);
    br_log(BR_LOG_DEBUG, "http_request", "house=%s status=%d ms=%llu", rq->house, rq->status,
           (unsigned long long)(uv_now(f->cfg.loop) - rq->t0));
    free(rq);
    if (f->stopping && f->inflight == 0 && f->nws == 0)
        front_free(f);
}

static void ws_chain_over(fr_ws *ws, int status);

/* The read chain is over (answered, or its client gone): the reader goes back to the pool. */
static void req_done(fr_req *rq) {
    br_front *f = rq->f;
    if (rq->ws) { /* its WebSocket ends with the chain (or never opened) */
        fr_ws *ws = rq->ws;
        rq->ws = NULL;
        ws->rq = NULL;
        ws_chain_over(ws, rq->status);
    }
    if (rq->call) { /* not answered yet: the client is gone or the front door stops */
        error_reply(f, rq->call, 503, "unavailable", "the front door is stopping", NULL);
        rq->call = NULL;
    }
    if (rq->rd)
        reader_free_up(rq->rd);
    rq->rd = NULL;
    int stopping = f->stopping;
    req_unref(rq);
    if (!stopping)
        pump(f);
}

static void answer_error(fr_req *rq, int status, const char *code, const char *msg) {
    rq->status = status;
    if (rq->call && !rq->started)
        error_reply(rq->f, rq->call, status, code, msg, NULL);
    else if (rq->call)
        gp_admin_stream_abort(rq->call); /* mid-stream: the client sees it cut short */
    rq->call = NULL;
    req_done(rq);
}

/* --- the reply: entries -> HTTP -------------------------------------------------------------- */

typedef struct fr_entry {
    const redisReply *status, *headers, *body, *final, *error, *message;
} fr_entry;

static int field_is(const redisReply *k, const char *name) {
    return k->type == REDIS_REPLY_STRING && k->len == strlen(name) &&
           memcmp(k->str, name, k->len) == 0;
}

static void entry_fields(const redisReply *kv, fr_entry *e) {
    memset(e, 0, sizeof *e);
    if (kv->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        if (field_is(k, "status"))
            e->status = v;
        else if (field_is(k, "headers"))
            e->headers = v;
        else if (field_is(k, "body"))
            e->body = v;
        else if (field_is(k, "final"))
            e->final = v;
        else if (field_is(k, "error"))
            e->error = v;
        else if (field_is(k, "message"))
            e->message = v;
    }
}

/* The upstream's headers (the reply's JSON object) as header lines, without hop-by-hop ones
 * and without the framing the front door sets itself (its Content-Length into *clen, -1 when
 * absent). malloc'd. */
static char *header_lines(const redisReply *hj, long long *clen) {
    *clen = -1;
    json_t *h = hj ? json_loadb(hj->str, hj->len, 0, NULL) : NULL;
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    if (!out) {
        json_decref(h);
        return NULL;
    }
    out[0] = '\0';
    const char *conn =
        json_is_object(h) ? json_string_value(json_object_get(h, "connection")) : NULL;
    const char *name;
    json_t *v;
    if (json_is_object(h))
        json_object_foreach(h, name, v) {
            const char *s = json_string_value(v);
            if (s && strcmp(name, "content-length") == 0 && *s >= '0' && *s <= '9')
                *clen = strtoll(s, NULL, 10);
            if (!s || fr_hop_by_hop(name, conn) || strcmp(name, "content-length") == 0 ||
                !fr_header_ok(name, s))
                continue;
            size_t need = n + strlen(name) + strlen(s) + 5;
            if (need > cap) {
                char *p = realloc(out, need * 2);
                if (!p)
                    break;
                out = p;
                cap = need * 2;
            }
            n += (size_t)sprintf(out + n, "%s: %s\r\n", name, s);
        }
    json_decref(h);
    return out;
}

static int is_final(const fr_entry *e) {
    return e->final && e->final->len == 1 && e->final->str[0] == '1';
}

/* One entry of the reply: 1 when it was the final one. */
static int on_entry(fr_req *rq, const fr_entry *e) {
    int final = is_final(e);
    if (!rq->call) /* client gone: read on to the end only to stop at it */
        return final;
    if (!rq->started) {
        int status = e->status ? atoi(e->status->str) : 502;
        if (status < 100 || status > 599)
            status = 502;
        rq->status = status;
        if (e->error) {
            char code[64], msg[512];
            snprintf(code, sizeof code, "%.*s", (int)e->error->len, e->error->str);
            snprintf(msg, sizeof msg, "%.*s", e->message ? (int)e->message->len : 0,
                     e->message ? e->message->str : "");
            error_reply(rq->f, rq->call, status, code, msg, NULL);
            rq->call = NULL;
            return 1;
        }
        long long clen;
        char *lines = header_lines(e->headers, &clen);
        long long len = final ? (long long)(e->body ? e->body->len : 0) : -1;
        rq->started = 1;
        gp_admin_stream_start(rq->call, status, lines ? lines : "",
                              rq->head && clen >= 0 ? clen : len);
        free(lines);
        count(rq->f, status);
    }
    if (e->body && e->body->len)
        gp_admin_stream_data(rq->call, e->body->str, e->body->len);
    if (final) {
        gp_admin_stream_end(rq->call);
        rq->call = NULL;
    }
    return final;
}

static int issue_read(fr_req *rq);

/* The reader cannot read for rq now: rq goes back to the head of the line (the reply waits
 * in Redis), to be taken by the next reader that is up. */
static void requeue(fr_req *rq) {
    br_front *f = rq->f;
    reader_free_up(rq->rd);
    rq->rd = NULL;
    rq->next = f->wait_head;
    f->wait_head = rq;
    if (!f->wait_tail)
        f->wait_tail = rq;
    f->nwait++;
}

static void on_drained(void *ud);

static void ws_on_read(fr_req *rq, redisReply *r);

static void on_read(redisReply *r, void *ud) {
    fr_req *rq = ud;
    br_front *f = rq->f;
    if (!r) { /* the reader's connection is lost (or stopping) */
        if (f->stopping) {
            answer_error(rq, 503, "unavailable", "the front door is stopping");
            return;
        }
        requeue(rq);
        pump(f);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        br_logr(BR_LOG_WARN, "http_read_failed", "house=%s error=%s", rq->house,
                br_q(r->str, r->len));
        answer_error(rq, 503, "unavailable", "reading the reply from Redis failed");
        return;
    }
    if (rq->ws) {
        ws_on_read(rq, r);
        return;
    }
    /* [[key, [[id, [field, value, ...]], ...]]], or nil when the block timed out */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *es = r->element[0]->element[1];
        for (size_t i = 0; es->type == REDIS_REPLY_ARRAY && i < es->elements; i++) {
            const redisReply *en = es->element[i];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
                en->element[0]->type != REDIS_REPLY_STRING)
                continue;
            snprintf(rq->last, sizeof rq->last, "%.*s", (int)en->element[0]->len,
                     en->element[0]->str);
            fr_entry e;
            entry_fields(en->element[1], &e);
            size_t big = e.body ? e.body->len + 1 : 1;
            unsigned fit = (unsigned)(FR_MAX_QUEUED / big);
            fit = fit < 1 ? 1 : fit > FR_MAX_COUNT ? FR_MAX_COUNT : fit;
            if (!rq->count || fit < rq->count)
                rq->count = fit;
            if (on_entry(rq, &e)) {
                req_done(rq);
                return;
            }
            if (rq->call && gp_admin_call_queued(rq->call) > FR_MAX_QUEUED &&
                gp_admin_call_on_drain(rq->call, FR_MAX_QUEUED / 2, on_drained, rq) == 0) {
                rq->paused = 1;
                if (f->m_paused)
                    gp_metric_inc(f->m_paused, NULL);
                return; /* the entries after rq->last wait in Redis, read again on drain */
            }
        }
    }
    issue_read(rq);
}

/* The slow client took enough of what was queued for it (or its connection is gone, or the
 * front door stops): the reply is read on from rq->last. */
static void on_drained(void *ud) {
    fr_req *rq = ud;
    rq->paused = 0;
    if (rq->f->stopping)
        answer_error(rq, 503, "unavailable", "the front door is stopping");
    else
        issue_read(rq);
}

static int ws_issue_read(fr_req *rq);

/* The next XREAD of rq's reply; -1 when it could not be sent (rq is back in the queue). */
static int issue_read(fr_req *rq) {
    br_front *f = rq->f;
    if (rq->ws && rq->ws->phase == WS_OPEN)
        return ws_issue_read(rq);
    uint64_t now = uv_now(f->cfg.loop);
    if (rq->call && gp_admin_call_gone(rq->call)) {
        gp_admin_reply(rq->call, 499, NULL, NULL, NULL, 0); /* dropped: only frees the call */
        rq->call = NULL;
    }
    if (!rq->call) {
        req_done(rq);
        return 0;
    }
    if (now >= rq->wait_until) {
        answer_error(rq, 504, "timeout", "no reply came by the deadline");
        return 0;
    }
    uint64_t block = rq->wait_until - now, cap = f->cfg.redis_timeout_ms / 2;
    if (block > cap)
        block = cap ? cap : 1;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XREAD");
    br_args_str(&a, "COUNT");
    br_args_u64(&a, rq->count ? rq->count : FR_FIRST_COUNT);
    br_args_str(&a, "BLOCK");
    br_args_u64(&a, block);
    br_args_str(&a, "STREAMS");
    br_args_str(&a, rq->key);
    br_args_str(&a, rq->last);
    if (br_redis_cmd(rq->rd->r, on_read, rq, &a) == 0)
        return 0;
    requeue(rq); /* not connected: its reconnection (reader_up) pumps again */
    return -1;
}

/* --- reader pool ------------------------------------------------------------------------------ */

static void reader_up(br_redis *r) {
    fr_reader *rd = br_redis_ud(r);
    pump(rd->f);
}

/* Drops an idle reader (not busy): its connection closes, its slot in the pool is free. */
static void reader_drop(br_front *f, unsigned i) {
    fr_reader *rd = f->readers[i];
    br_redis_free(rd->r);
    free(rd);
    f->readers[i] = f->readers[--f->nreaders];
}

/* A reader on Redis node `node` (the one holding the reply keys it will read: in a cluster,
 * a key on another node answers MOVED). With the pool full, an idle reader of another node
 * makes room. NULL: none could be opened. */
static fr_reader *reader_new(br_front *f, int node) {
    if (f->nreaders >= FR_MAX_READERS) {
        unsigned i = 0;
        while (i < f->nreaders && (f->readers[i]->busy || f->readers[i]->node == node))
            i++;
        if (i == f->nreaders)
            return NULL;
        reader_drop(f, i);
    }
    fr_reader *rd = calloc(1, sizeof *rd);
    if (!rd)
        return NULL;
    rd->f = f;
    rd->node = node;
    rd->idle_since = uv_now(f->cfg.loop);
    if (!(rd->r = br_db_connect(f->cfg.db, node, "http", reader_up, rd))) {
        free(rd);
        return NULL;
    }
    f->readers[f->nreaders++] = rd;
    return rd;
}

/* Hands waiting requests to idle connected readers on their reply key's node, and opens one
 * reader for each waiting request that has none coming (it takes the next waiting request of
 * its node once it is up). */
static void pump(br_front *f) {
    fr_req *prev = NULL, *next;
    for (fr_req *rq = f->wait_head; rq && !f->stopping; rq = next) {
        next = rq->next;
        int node = br_db_key_node(f->cfg.db, rq->key);
        fr_reader *idle = NULL;
        for (unsigned i = 0; i < f->nreaders && !idle; i++) {
            fr_reader *rd = f->readers[i];
            if (!rd->busy && rd->node == node && br_redis_ready(rd->r))
                idle = rd;
        }
        if (!idle) {
            if (rq->asked != node + 1 && reader_new(f, node))
                rq->asked = node + 1;
            prev = rq;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            f->wait_head = next;
        if (f->wait_tail == rq)
            f->wait_tail = prev;
        f->nwait--;
        rq->next = NULL;
        rq->rd = idle;
        idle->busy = rq;
        if (issue_read(rq) != 0)
            return;
        prev = NULL, next = f->wait_head; /* issue_read may have changed the queue */
    }
}

/* How long a connected reader may sit idle before it is closed: twice the Redis timeout (its
 * XREADs block for half of that), at least a second. */
static uint64_t reader_idle_ms(const br_front *f) {
    uint64_t ms = 2ull * f->cfg.redis_timeout_ms;
    return ms < 1000 ? 1000 : ms;
}

static void ws_sweep(br_front *f, uint64_t now);

/* Closes the readers idle for longer than reader_idle_ms: a burst's pool shrinks back. A reader
 * still connecting is kept (a waiting request may count on it). A reply paused for a client
 * that does not read is cut at its deadline, as any reply not done by then (issue_read): the
 * connection closes, and its release calls on_drained, which ends the request. */
static void on_sweep(uv_timer_t *t) {
    br_front *f = t->data;
    uint64_t now = uv_now(f->cfg.loop), idle = reader_idle_ms(f);
    for (unsigned i = 0; i < f->nreaders; i++) {
        fr_req *rq = f->readers[i]->busy;
        if (rq && rq->paused && rq->call && now >= rq->wait_until) {
            br_logr(BR_LOG_WARN, "http_slow_client", "house=%s addr=%s", rq->house,
                    br_qs(gp_admin_call_ip(rq->call)));
            rq->status = 504;
            gp_admin_stream_abort(rq->call);
            rq->call = NULL;
        }
    }
    ws_sweep(f, now);
    for (unsigned i = 0; i < f->nreaders;) {
        fr_reader *rd = f->readers[i];
        if (!rd->busy && br_redis_ready(rd->r) && now - rd->idle_since >= idle)
            reader_drop(f, i); /* the last one moves to i */
        else
            i++;
    }
}

static void on_sweep_closed(uv_handle_t *h) {
    free(h);
}

static void enqueue(fr_req *rq) {
    br_front *f = rq->f;
    rq->next = NULL;
    if (f->wait_tail)
        f->wait_tail->next = rq;
    else
        f->wait_head = rq;
    f->wait_tail = rq;
    f->nwait++;
    pump(f);
}

/* The XADD's answer. Its reply is being read already (the read was sent with it, not after
 * it: one Redis round trip less a request); a refused XADD answers 503, and the read chain
 * ends at its next turn, finding the call answered. */
static void on_xadd(redisReply *r, void *ud) {
    fr_req *rq = ud;
    if (!rq->f->stopping && (!r || r->type == REDIS_REPLY_ERROR)) {
        br_logr(BR_LOG_WARN, "http_xadd_failed", "house=%s error=%s", rq->house,
                r ? br_q(r->str, r->len) : "\"no answer\"");
        if (rq->call && !rq->started) {
            rq->status = 503;
            error_reply(rq->f, rq->call, 503, "unavailable", "Redis did not take the request",
                        NULL);
            rq->call = NULL;
        }
    }
    req_unref(rq);
}

/* --- the request: HTTP -> one entry of the contract ------------------------------------------ */

/* The request's headers for the contract: hop-by-hop ones, Host, the front door's own
 * (Authorization when it checked a token, X-Gp-Timeout-Ms) and Content-Length left out;
 * X-Forwarded-For/-Proto/-Host added. NULL: a value that is not UTF-8 (or out of memory). */
static char *headers_json(const br_front *f, const gp_http_request *req, const char *ip) {
    json_t *h = json_object();
    const char *conn = gp_http_header_get(req, "connection");
    int ok = h != NULL;
    for (size_t i = 0; ok && i < req->nheaders; i++) {
        const char *n = req->headers[i].name, *v = req->headers[i].value;
        if (fr_hop_by_hop(n, conn) || strcmp(n, "host") == 0 || strcmp(n, "content-length") == 0 ||
            strcmp(n, "x-gp-timeout-ms") == 0 || strcmp(n, "expect") == 0 ||
            (!f->cfg.public_ && strcmp(n, "authorization") == 0) ||
            strncmp(n, "x-forwarded-", 12) == 0)
            continue;
        json_t *old = json_object_get(h, n);
        json_t *s;
        if (old) {
            size_t need = strlen(json_string_value(old)) + strlen(v) + 3;
            char *j = malloc(need);
            if (!j) {
                ok = 0;
                break;
            }
            snprintf(j, need, "%s, %s", json_string_value(old), v);
            s = json_string(j);
            free(j);
        } else {
            s = json_string(v);
        }
        ok = s && json_object_set_new(h, n, s) == 0;
    }
    const char *xff = gp_http_header_get(req, "x-forwarded-for");
    const char *host = gp_http_header_get(req, "host");
    char fwd[1024];
    snprintf(fwd, sizeof fwd, "%s%s%s", xff ? xff : "", xff ? ", " : "", ip);
    if (ok)
        ok = json_object_set_new(h, "x-forwarded-for", json_string(fwd)) == 0 &&
             json_object_set_new(h, "x-forwarded-proto", json_string(f->tls ? "https" : "http")) ==
                 0 &&
             (!host || json_object_set_new(h, "x-forwarded-host", json_string(host)) == 0);
    char *out = ok ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    return out;
}

/* The front door's token check: 0 to go on, or answered (-1). */
static int authorize(br_front *f, gp_admin_call *call, const gp_http_request *req,
                     const fr_route *rt) {
    static const char challenge[] = "WWW-Authenticate: Bearer realm=\"ghostport\"\r\n"
                                    "WWW-Authenticate: Basic realm=\"ghostport\"\r\n";
    if (f->cfg.public_)
        return 0;
    const char *ip = gp_admin_call_ip(call);
    gp_str addr = {(const uint8_t *)ip, strlen(ip)};
    gp_str house = {(const uint8_t *)rt->house, strlen(rt->house)};
    uint64_t now = uv_now(f->cfg.loop);
    char tok[512];
    const char *reason = NULL;
    int status = 0;
    if (!gp_authlimit_allow_addr(f->limit, addr, now)) {
        reason = "rate_limited", status = 429;
    } else if (fr_auth_token(gp_http_header_get(req, "authorization"), tok, sizeof tok) != 0) {
        reason = "missing", status = 401;
    } else if (!gp_authlimit_take(f->limit, addr, house, now)) {
        reason = "rate_limited", status = 429;
    } else {
        int rc = fr_tokens_check(&f->tokens, tok, strlen(tok), rt->house, rt->service);
        if (rc == FR_AUTH_OK)
            gp_authlimit_refund(f->limit, addr, house, now);
        reason = rc == FR_AUTH_OK ? NULL : rc == FR_AUTH_FORBIDDEN ? "forbidden" : "unknown";
        status = rc == FR_AUTH_OK ? 0 : rc == FR_AUTH_FORBIDDEN ? 403 : 401;
    }
    sodium_memzero(tok, sizeof tok);
    if (!reason)
        return 0;
    if (f->m_auth)
        gp_metric_inc(f->m_auth, reason);
    br_logr(BR_LOG_WARN, "http_auth_failed", "addr=%s house=%s reason=%s", br_qs(ip), rt->house,
            reason);
    if (status == 429)
        error_reply(f, call, 429, "rate_limited",
                    "too many failed attempts from this address; "
                    "wait a minute",
                    "Retry-After: 60\r\n");
    else if (status == 403)
        error_reply(f, call, 403, "forbidden", "this token does not reach that house or service",
                    NULL);
    else
        error_reply(f, call, 401, "unauthorized",
                    reason[0] == 'm' ? "a token is needed (Authorization: Bearer TOKEN)"
                                     : "unknown token",
                    challenge);
    return -1;
}

/* X-Gp-Timeout-Ms, or the default: 1..86400000, else -1. */
static long long timeout_of(const br_front *f, const gp_http_request *req) {
    const char *v = gp_http_header_get(req, "x-gp-timeout-ms");
    if (!v)
        return f->cfg.timeout_ms;
    char *end;
    long long t = strtoll(v, &end, 10);
    return *v >= '0' && *v <= '9' && *end == '\0' && t >= 1 && t <= FR_MAX_TIMEOUT_MS ? t : -1;
}

static int submit(br_front *f, fr_req *rq, const gp_http_request *req, const fr_route *rt,
                  long long timeout, const char *headers) {
    uint8_t rnd[16];
    char id[33], reqkey[GP_KEY_MAX];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(id, sizeof id, rnd, sizeof rnd);
    if (gp_key_req(reqkey, f->prefix, rt->house) < 0 || gp_key_reply(rq->key, f->prefix, id) < 0)
        return -1;
    br_args a;
    br_args_init(&a);
    const char *fixed[] = {"XADD",    reqkey,  "MAXLEN", "~",         "10000", "*",
                           "id",      id,      "method", req->method, "path",  rt->path,
                           "headers", headers, "reply",  rq->key};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        br_args_str(&a, fixed[i]);
    br_args_str(&a, "timeout_ms");
    br_args_u64(&a, (uint64_t)timeout);
    br_args_str(&a, "body");
    br_args_bin(&a, req->body ? (const void *)req->body : "", req->body_len);
    if (rt->service[0]) {
        br_args_str(&a, "service");
        br_args_str(&a, rt->service);
    }
    return br_db_cmd(f->cfg.db, on_xadd, rq, &a);
}

/* --- WebSockets: an Upgrade over a TCP stream ------------------------------------------------
 *
 * `Upgrade: websocket` goes to the house's HTTP upstream as bytes: one stream of
 * proto/STREAMS.md (service `http:<service>`) is opened with an XADD on the house's request
 * stream, its outcome read from its reply key (an error is answered as any request's); then the
 * client's connection is taken over from the HTTP server (gp_admin_call_takeover), the request
 * head goes first on sin, and bytes flow both ways: the client's into sin entries below the
 * house's credit (its reading stops when out of credit), sout's to the client, acknowledged
 * once handed to it (sout is not read while the client has over FR_MAX_QUEUED queued). The
 * upstream's own 101 comes back through sout. Client EOF: our fin; the house's fin: the
 * client's write side shut; either side's rst: the connection closed. */

static void ws_noop(redisReply *r, void *ud) {
    (void)r, (void)ud;
}

static void ws_count(br_front *f, const char *outcome) {
    if (f->m_upgrades)
        gp_metric_inc(f->m_upgrades, outcome);
}

static void ws_unref(fr_ws *ws) {
    if (--ws->refs > 0)
        return;
    br_front *f = ws->f;
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        f->ws_head = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    else
        f->ws_tail = ws->prev;
    f->nws--;
    free(ws->ib);
    free(ws->ents);
    free(ws);
    if (f->stopping && f->inflight == 0 && f->nws == 0)
        front_free(f);
}

/* XADD kin * fields, then PEXPIRE kin 2 x idle (the key of an abandoned stream expires). */
static int ws_xadd(fr_ws *ws, const gp_stream_entry *e, br_redis_fn fn, void *ud) {
    gp_stream_field fl[GP_STREAM_FIELDS_MAX];
    char scratch[96];
    int n = gp_stream_entry_build(e, fl, scratch, sizeof scratch);
    if (n < 0)
        return -1;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XADD");
    br_args_str(&a, ws->kin);
    br_args_str(&a, "*");
    for (int i = 0; i < n; i++) {
        br_args_bin(&a, fl[i].name.p, fl[i].name.len);
        br_args_bin(&a, fl[i].value.len ? (const void *)fl[i].value.p : "", fl[i].value.len);
    }
    if (br_db_cmd(ws->f->cfg.db, fn, ud, &a) != 0)
        return -1;
    br_args_init(&a);
    br_args_str(&a, "PEXPIRE");
    br_args_str(&a, ws->kin);
    br_args_u64(&a, 2ull * (ws->phase == WS_OPEN ? ws->s.idle_ms : GP_STREAM_IDLE_DEFAULT));
    (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
    return 0;
}

static void ws_end(fr_ws *ws);

/* Our rst on sin (once; not after the house's own), with a printable message. */
static void ws_send_rst(fr_ws *ws, const char *reason, const char *message) {
    if (ws->rst_sent || ws->s.reset == GP_SR_PEER)
        return;
    ws->rst_sent = 1;
    gp_stream_entry e = {0};
    snprintf(e.rst, sizeof e.rst, "%s", reason);
    char msg[GP_STREAM_MESSAGE_MAX + 1];
    size_t n = 0;
    for (; message && message[n] && n < GP_STREAM_MESSAGE_MAX; n++)
        msg[n] = message[n] >= 0x20 && message[n] <= 0x7e ? message[n] : '?';
    msg[n] = '\0';
    e.message = (gp_str){(const uint8_t *)msg, n};
    (void)ws_xadd(ws, &e, ws_noop, NULL);
}

/* Resets the stream (reason: a token of STREAMS.md) and closes the client's connection. */
static void ws_reset(fr_ws *ws, gp_stream_reason why, const char *reason, const char *message) {
    if (ws->over)
        return;
    br_logr(BR_LOG_WARN, "http_websocket_reset", "house=%s sid=%s reason=%s message=%s", ws->house,
            ws->sid, reason, br_qs(message));
    if (ws->s.reset == GP_SR_NONE)
        gp_stream_reset(&ws->s, why);
    ws_send_rst(ws, reason, message);
    if (ws->conn)
        gp_admin_raw_close(ws->conn);
    ws_end(ws);
}

static void ws_close_now(void *ud) {
    fr_ws *ws = ud;
    if (ws->conn)
        gp_admin_raw_close(ws->conn);
}

/* Over: nothing more is read or written; the client's connection closes once its queued
 * bytes are out (at most FR_WS_LINGER_MS: the sweep). */
static void ws_end(fr_ws *ws) {
    if (ws->over)
        return;
    ws->over = 1;
    ws->over_at = uv_now(ws->f->cfg.loop);
    if (ws->counted) {
        ws->counted = 0;
        ws->f->nws_open--;
        if (ws->f->m_ws)
            gp_metric_set(ws->f->m_ws, NULL, ws->f->nws_open);
    }
    if (ws->phase == WS_OPEN)
        br_log(BR_LOG_INFO, "http_websocket_closed",
               "house=%s sid=%s bytes_in=%llu bytes_out=%llu ms=%llu reset=%s", ws->house, ws->sid,
               (unsigned long long)ws->bytes_in, (unsigned long long)ws->bytes_out,
               (unsigned long long)(ws->over_at - ws->t0),
               ws->s.reset == GP_SR_NONE   ? "none"
               : ws->s.reset == GP_SR_PEER ? ws->s.rst_reason
                                           : gp_stream_reason_name(ws->s.reset));
    if (!ws->conn)
        return;
    if (gp_admin_raw_queued(ws->conn) == 0 ||
        gp_admin_raw_on_drain(ws->conn, 0, ws_close_now, ws) != 0)
        gp_admin_raw_close(ws->conn);
}

/* The read chain ended (status: the answer it gave, when it answered). Before the stream was
 * open: an rst on sin, so that an open delivered late closes at once (or is refused 409). */
static void ws_chain_over(fr_ws *ws, int status) {
    if (ws->phase == WS_OPENING && !ws->refused) {
        ws_count(ws->f, status == 504 ? "timeout" : status == 503 ? "unavailable" : "gone");
        ws_send_rst(ws, status == 504 ? "timeout" : "closed",
                    "the front door gave up the open of this WebSocket");
    } else if (ws->phase == WS_OPEN && !ws->over) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door stopped reading this stream");
    }
    ws_end(ws);
    ws_unref(ws);
}

static void ws_kick(fr_ws *ws);

static void ws_reading(fr_ws *ws) {
    int on = ws->conn && !ws->over && !ws->in_eof && ws->ilen < FR_WS_IN_MAX / 2;
    int off = ws->ilen >= FR_WS_IN_MAX;
    if (ws->conn && on && !ws->reading) {
        ws->reading = 1;
        gp_admin_raw_reading(ws->conn, 1); /* may deliver held bytes at once */
    } else if (ws->conn && off && ws->reading) {
        ws->reading = 0;
        gp_admin_raw_reading(ws->conn, 0);
    }
}

/* A data (or fin) XADD on sin was answered. */
static void ws_on_sin(redisReply *r, void *ud) {
    fr_ws *ws = ud;
    ws->xadd_busy = 0;
    if (!ws->over && (!r || r->type != REDIS_REPLY_STRING || r->len >= 48)) {
        br_logr(BR_LOG_WARN, "http_websocket_xadd_failed", "house=%s sid=%s error=%s", ws->house,
                ws->sid,
                r && r->type == REDIS_REPLY_ERROR ? br_q(r->str, r->len) : "\"no answer\"");
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door lost Redis");
    } else if (!ws->over) {
        if (ws->xadd_fin)
            gp_stream_fin_written(&ws->s, uv_now(ws->f->cfg.loop));
        if (ws->xadd_bare) { /* it stays until the keys expire */
            ws_reading(ws);
            ws_kick(ws);
            ws_unref(ws);
            return;
        }
        if (ws->ents_len == ws->ents_cap) {
            size_t cap = ws->ents_cap ? ws->ents_cap * 2 : 16;
            fr_sent *v = malloc(cap * sizeof *v);
            if (!v) {
                ws_reset(ws, GP_SR_LOCAL, "closed", "out of memory");
                ws_unref(ws);
                return;
            }
            for (size_t i = 0; i < ws->ents_len; i++)
                v[i] = ws->ents[(ws->ents_head + i) % ws->ents_cap];
            free(ws->ents);
            ws->ents = v, ws->ents_cap = cap, ws->ents_head = 0;
        }
        fr_sent *e = &ws->ents[(ws->ents_head + ws->ents_len++) % ws->ents_cap];
        memcpy(e->id, r->str, r->len);
        e->id[r->len] = '\0';
        e->end = ws->xadd_end;
        ws_reading(ws);
        ws_kick(ws);
    }
    ws_unref(ws);
}

/* Writes what the client sent, below the house's credit, one entry at a time; the fin once
 * the client's input ended and everything before it is written. */
static void ws_kick(fr_ws *ws) {
    if (ws->over || ws->xadd_busy || ws->phase != WS_OPEN || ws->s.reset != GP_SR_NONE)
        return;
    uint64_t now = uv_now(ws->f->cfg.loop), credit = gp_stream_can_send(&ws->s);
    size_t n = ws->ilen;
    if (n > credit)
        n = (size_t)credit;
    if (n > FR_WS_CHUNK)
        n = FR_WS_CHUNK;
    int closing = ws->in_eof && n == ws->ilen && !ws->s.snd_fin;
    if (n == 0 && !closing && !gp_stream_fin_due(&ws->s))
        return;
    gp_stream_entry e = {.has_off = 1, .off = ws->s.snd_next, .data = {ws->ib, n}};
    if (n && gp_stream_sent(&ws->s, now, n) != 0)
        return;
    if (closing && gp_stream_close(&ws->s) != 0)
        return;
    e.fin = gp_stream_fin_due(&ws->s);
    ws->xadd_end = ws->s.snd_next;
    ws->xadd_fin = e.fin;
    ws->xadd_bare = n == 0;
    if (ws_xadd(ws, &e, ws_on_sin, ws) != 0) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door could not write to Redis");
        return;
    }
    ws->refs++;
    ws->xadd_busy = 1;
    ws->bytes_in += n;
    memmove(ws->ib, ws->ib + n, ws->ilen - n);
    ws->ilen -= n;
    ws_reading(ws);
}

static void ws_on_data(void *ud, const void *p, size_t len) {
    fr_ws *ws = ud;
    if (ws->over)
        return;
    if (ws->ilen + len > ws->icap) {
        size_t cap = ws->ilen + len + FR_WS_CHUNK;
        uint8_t *b = realloc(ws->ib, cap);
        if (!b) {
            ws_reset(ws, GP_SR_LOCAL, "closed", "out of memory");
            return;
        }
        ws->ib = b, ws->icap = cap;
    }
    memcpy(ws->ib + ws->ilen, p, len);
    ws->ilen += len;
    ws_kick(ws);
    ws_reading(ws);
}

static void ws_on_eof(void *ud) {
    fr_ws *ws = ud;
    ws->in_eof = 1;
    ws->reading = 0;
    ws_kick(ws);
}

static void ws_on_closed(void *ud) {
    fr_ws *ws = ud;
    ws->conn = NULL;
    if (!ws->over)
        ws_reset(ws, GP_SR_LOCAL, "closed", "the client's connection closed");
    ws_unref(ws);
}

/* Our ack-only entry was written: the one before it is superseded. */
static void ws_on_ack(redisReply *r, void *ud) {
    fr_ws *ws = ud;
    if (r && r->type == REDIS_REPLY_STRING && r->len < sizeof ws->last_ack_id) {
        if (ws->last_ack_id[0]) {
            br_args a;
            br_args_init(&a);
            br_args_str(&a, "XDEL");
            br_args_str(&a, ws->kin);
            br_args_str(&a, ws->last_ack_id);
            (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
        }
        memcpy(ws->last_ack_id, r->str, r->len);
        ws->last_ack_id[r->len] = '\0';
    } else if (!ws->over) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door lost Redis");
    }
    ws_unref(ws);
}

static void ws_write_ack(fr_ws *ws, int flush) {
    uint64_t now = uv_now(ws->f->cfg.loop), ack = 0;
    if (ws->over || !gp_stream_ack_due(&ws->s, now, flush, &ack))
        return;
    gp_stream_entry e = {.has_ack = 1, .ack = ack};
    if (ws_xadd(ws, &e, ws_on_ack, ws) != 0) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door could not write to Redis");
        return;
    }
    ws->refs++;
    gp_stream_ack_written(&ws->s, now, ack);
}

/* Deletes our sin entries the house acknowledged wholly. */
static void ws_trim(fr_ws *ws) {
    while (ws->ents_len && ws->ents[ws->ents_head].end <= ws->s.snd_acked) {
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "XDEL");
        br_args_str(&a, ws->kin);
        for (int k = 0;
             k < FR_WS_XDEL_BATCH && ws->ents_len && ws->ents[ws->ents_head].end <= ws->s.snd_acked;
             k++) {
            br_args_str(&a, ws->ents[ws->ents_head].id);
            ws->ents_head = (ws->ents_head + 1) % ws->ents_cap;
            ws->ents_len--;
        }
        (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
    }
}

/* One sout entry. 0 on, 1 the stream is over. */
static int ws_take(fr_ws *ws, const redisReply *fv) {
    gp_stream_field fl[GP_STREAM_FIELDS_MAX];
    char err[160];
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0 ||
        fv->elements / 2 > GP_STREAM_FIELDS_MAX) {
        ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout entry of unexpected shape");
        return 1;
    }
    size_t nf = fv->elements / 2;
    for (size_t i = 0; i < fv->elements; i++)
        if (fv->element[i]->type != REDIS_REPLY_STRING) {
            ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout field that is not a string");
            return 1;
        }
    for (size_t i = 0; i < nf; i++) {
        fl[i].name = (gp_str){(const uint8_t *)fv->element[2 * i]->str, fv->element[2 * i]->len};
        fl[i].value =
            (gp_str){(const uint8_t *)fv->element[2 * i + 1]->str, fv->element[2 * i + 1]->len};
    }
    gp_stream_entry e;
    if (gp_stream_entry_parse(&e, fl, nf, err, sizeof err) != 0) {
        ws_reset(ws, GP_SR_MALFORMED, "malformed", err);
        return 1;
    }
    size_t skip = 0, take = 0;
    int rc = gp_stream_apply(&ws->s, uv_now(ws->f->cfg.loop), &e, &skip, &take);
    if (ws->s.reset == GP_SR_PEER) {
        char m[GP_STREAM_MESSAGE_MAX + 1];
        snprintf(m, sizeof m, "%.*s", (int)e.message.len, (const char *)e.message.p);
        br_log(BR_LOG_INFO, "http_websocket_reset", "house=%s sid=%s by=house reason=%s message=%s",
               ws->house, ws->sid, ws->s.rst_reason, br_qs(m));
        if (ws->conn)
            gp_admin_raw_close(ws->conn);
        ws_end(ws);
        return 1;
    }
    if (rc != 0) {
        const char *why = gp_stream_reason_name(ws->s.reset);
        ws_reset(ws, ws->s.reset, why, "the front door refused an entry of sout");
        return 1;
    }
    if (take) {
        if (ws->conn)
            (void)gp_admin_raw_write(ws->conn, e.data.p + skip, take);
        ws->bytes_out += take;
        if (gp_stream_consumed(&ws->s, take) != 0) { /* handed to the client: queued for it */
            ws_reset(ws, GP_SR_LOCAL, "closed", "internal error: consumed past delivered");
            return 1;
        }
    }
    return 0;
}

static void ws_on_drained(void *ud) {
    fr_ws *ws = ud;
    if (!ws->paused)
        return;
    ws->paused = 0;
    if (ws->rq)
        issue_read(ws->rq);
}

/* After a batch of `got` sout entries: the house's fin, trim, credit, ack, idle, the end. */
static void ws_after(fr_ws *ws, size_t got) {
    uint64_t now = uv_now(ws->f->cfg.loop);
    if (!ws->out_shut && ws->s.rcv_fin && ws->s.rcv_consumed == ws->s.rcv_fin_off) {
        ws->out_shut = 1;
        if (ws->conn)
            gp_admin_raw_shutdown(ws->conn);
    }
    ws_trim(ws);
    ws_kick(ws);
    ws_write_ack(ws, got < FR_WS_READ_COUNT);
    if (ws->over)
        return;
    if (got == 0 && gp_stream_tick(&ws->s, now)) {
        ws_reset(ws, GP_SR_IDLE, "idle", "nothing from the house within idle_ms");
        return;
    }
    if (gp_stream_done(&ws->s))
        ws_end(ws); /* both fins delivered and acknowledged */
}

/* The open's outcome, on its reply key: 200, or an error answered as the request's. */
static void ws_on_outcome(fr_req *rq, redisReply *r) {
    fr_ws *ws = rq->ws;
    br_front *f = rq->f;
    const redisReply *es = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        es = r->element[0]->element[1];
    for (size_t i = 0; es && i < es->elements; i++) {
        const redisReply *en = es->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= sizeof rq->last)
            continue;
        snprintf(rq->last, sizeof rq->last, "%s", en->element[0]->str);
        fr_entry e;
        entry_fields(en->element[1], &e);
        if (!e.status && !e.error)
            continue;
        int status = e.status ? atoi(e.status->str) : 502;
        if (status < 100 || status > 599)
            status = 502;
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "DEL");
        br_args_str(&a, rq->key);
        (void)br_db_cmd(f->cfg.db, ws_noop, NULL, &a);
        if (e.error || status != 200) {
            char code[64], msg[512];
            snprintf(code, sizeof code, "%.*s", e.error ? (int)e.error->len : 0,
                     e.error ? e.error->str : "");
            snprintf(msg, sizeof msg, "%.*s", e.message ? (int)e.message->len : 0,
                     e.message ? e.message->str : "");
            ws->refused = 1;
            ws_count(f, "refused");
            rq->status = status;
            if (rq->call)
                error_reply(f, rq->call, status, code[0] ? code : "bad_gateway", msg, NULL);
            rq->call = NULL;
            req_done(rq);
            return;
        }
        /* open: the connection is the stream's from now on */
        ws->phase = WS_OPEN;
        uint64_t now = uv_now(f->cfg.loop);
        if (gp_stream_init(&ws->s, now, GP_STREAM_WIN_DEFAULT, GP_STREAM_IDLE_DEFAULT) != 0)
            ws->over = 1; /* cannot happen: the defaults are in bounds */
        rq->status = 101;
        ws_count(f, "opened");
        count(f, 101);
        ws->counted = 1;
        f->nws_open++;
        if (f->m_ws)
            gp_metric_set(f->m_ws, NULL, f->nws_open);
        br_log(BR_LOG_INFO, "http_websocket_open", "house=%s sid=%s addr=%s", ws->house, ws->sid,
               br_qs(rq->call ? gp_admin_call_ip(rq->call) : ""));
        const gp_admin_raw_cb cb = {ws_on_data, ws_on_eof, ws_on_closed, ws};
        gp_admin_conn *c = rq->call ? gp_admin_call_takeover(rq->call, &cb) : NULL;
        rq->call = NULL;
        if (!c) {
            ws_reset(ws, GP_SR_LOCAL, "closed", "the client left before the stream opened");
            req_done(rq);
            return;
        }
        ws->conn = c;
        ws->refs++;
        snprintf(rq->key, sizeof rq->key, "%s", ws->kout);
        snprintf(rq->last, sizeof rq->last, "0-0");
        rq->count = FR_WS_READ_COUNT;
        ws_kick(ws); /* the request head */
        ws_reading(ws);
        if (br_db_key_node(f->cfg.db, rq->key) != rq->rd->node) {
            requeue(rq); /* sout lives on another node: a reader of that one */
            pump(f);
        } else {
            issue_read(rq);
        }
        return;
    }
    issue_read(rq); /* nothing yet: read on (issue_read answers 504 past the deadline) */
}

static void ws_on_read(fr_req *rq, redisReply *r) {
    fr_ws *ws = rq->ws;
    if (ws->phase == WS_OPENING) {
        ws_on_outcome(rq, r);
        return;
    }
    size_t got = 0;
    const redisReply *es = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        es = r->element[0]->element[1];
    else if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_ARRAY)
        ws_reset(ws, GP_SR_LOCAL, "closed", "unexpected XREAD reply");
    for (size_t i = 0; es && i < es->elements && !ws->over; i++) {
        const redisReply *en = es->element[i];
        got++;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= sizeof rq->last) {
            ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout entry of unexpected shape");
            break;
        }
        snprintf(rq->last, sizeof rq->last, "%s", en->element[0]->str);
        ws_take(ws, en->element[1]);
    }
    if (!ws->over)
        ws_after(ws, got);
    if (ws->over) {
        req_done(rq);
        return;
    }
    if (ws->conn && gp_admin_raw_queued(ws->conn) > FR_MAX_QUEUED &&
        gp_admin_raw_on_drain(ws->conn, FR_MAX_QUEUED / 2, ws_on_drained, ws) == 0) {
        ws->paused = 1; /* sout waits in Redis, bounded there by the window */
        if (rq->f->m_paused)
            gp_metric_inc(rq->f->m_paused, NULL);
        return;
    }
    issue_read(rq);
}

/* The next XREAD of sout, blocking until the stream's next timer (keep-alive ack, idle). */
static int ws_issue_read(fr_req *rq) {
    br_front *f = rq->f;
    fr_ws *ws = rq->ws;
    if (ws->over || f->stopping) {
        req_done(rq);
        return 0;
    }
    if (ws->paused)
        return 0;
    uint64_t now = uv_now(f->cfg.loop), t = gp_stream_next_timer(&ws->s);
    uint64_t block = t > now ? t - now : 1, cap = f->cfg.redis_timeout_ms / 2;
    if (block > cap)
        block = cap ? cap : 1;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XREAD");
    br_args_str(&a, "COUNT");
    br_args_u64(&a, FR_WS_READ_COUNT);
    br_args_str(&a, "BLOCK");
    br_args_u64(&a, block);
    br_args_str(&a, "STREAMS");
    br_args_str(&a, rq->key);
    br_args_str(&a, rq->last);
    if (br_redis_cmd(rq->rd->r, on_read, rq, &a) == 0)
        return 0;
    requeue(rq);
    return -1;
}

/* The sweep's part: a WebSocket paused for a client that does not read still times out
 * (idle: the house is not heard meanwhile), and an ended one's connection closes after
 * FR_WS_LINGER_MS even if its client never takes what is queued. */
static void ws_sweep(br_front *f, uint64_t now) {
    for (fr_ws *ws = f->ws_head, *next; ws; ws = next) {
        next = ws->next;
        if (ws->over && ws->conn && now - ws->over_at >= FR_WS_LINGER_MS)
            gp_admin_raw_close(ws->conn);
        else if (!ws->over && ws->paused && gp_stream_tick(&ws->s, now))
            ws_reset(ws, GP_SR_IDLE, "idle", "the client did not read within idle_ms");
    }
}

/* 1 for a WebSocket handshake: Upgrade lists websocket, Connection lists upgrade. */
static int is_websocket(const gp_http_request *req) {
    return fr_header_lists(gp_http_header_get(req, "upgrade"), "websocket") &&
           fr_header_lists(gp_http_header_get(req, "connection"), "upgrade");
}

static int put(char **b, size_t *n, size_t *cap, const char *p, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t c = (*n + len + 1) * 2;
        char *q = realloc(*b, c);
        if (!q)
            return -1;
        *b = q, *cap = c;
    }
    memcpy(*b + *n, p, len);
    *n += len;
    (*b)[*n] = '\0';
    return 0;
}

static int puts3(char **b, size_t *n, size_t *cap, const char *x, const char *y, const char *z) {
    return put(b, n, cap, x, strlen(x)) || put(b, n, cap, y, strlen(y)) ||
           put(b, n, cap, z, strlen(z));
}

/* The request head the upstream gets (then the body, if any): the method, the routed path,
 * the headers but hop-by-hop ones (Upgrade and Connection written again), the front door's
 * own (Authorization when it checked a token, X-Gp-Timeout-Ms, Expect) and earlier
 * X-Forwarded-*, with X-Forwarded-For/-Proto/-Host added. malloc'd, *len its length. */
static char *ws_head(const br_front *f, const gp_http_request *req, const fr_route *rt,
                     const char *ip, size_t *len) {
    char *b = NULL;
    size_t n = 0, cap = 0;
    const char *conn = gp_http_header_get(req, "connection");
    int bad = puts3(&b, &n, &cap, req->method, " ", rt->path) ||
              puts3(&b, &n, &cap, " HTTP/1.1\r\n", "", "");
    for (size_t i = 0; !bad && i < req->nheaders; i++) {
        const char *nm = req->headers[i].name, *v = req->headers[i].value;
        if (fr_hop_by_hop(nm, conn) || strcmp(nm, "x-gp-timeout-ms") == 0 ||
            strcmp(nm, "expect") == 0 || (!f->cfg.public_ && strcmp(nm, "authorization") == 0) ||
            strncmp(nm, "x-forwarded-", 12) == 0 || !fr_header_ok(nm, v))
            continue;
        bad = puts3(&b, &n, &cap, nm, ": ", v) || puts3(&b, &n, &cap, "\r\n", "", "");
    }
    const char *up = gp_http_header_get(req, "upgrade");
    const char *xff = gp_http_header_get(req, "x-forwarded-for");
    const char *host = gp_http_header_get(req, "host");
    if (!bad)
        bad = puts3(&b, &n, &cap, "connection: Upgrade\r\nupgrade: ",
                    fr_header_ok("upgrade", up) ? up : "websocket", "\r\n") ||
              puts3(&b, &n, &cap,
                    "x-forwarded-for: ", xff && fr_header_ok("x-forwarded-for", xff) ? xff : "",
                    xff && fr_header_ok("x-forwarded-for", xff) ? ", " : "") ||
              puts3(&b, &n, &cap, ip, "\r\nx-forwarded-proto: ", f->tls ? "https" : "http") ||
              puts3(&b, &n, &cap, "\r\n", "", "");
    if (!bad && host && fr_header_ok("host", host))
        bad = puts3(&b, &n, &cap, "x-forwarded-host: ", host, "\r\n");
    if (!bad)
        bad = puts3(&b, &n, &cap, "\r\n", "", "");
    if (!bad && req->body_len)
        bad = put(&b, &n, &cap, (const char *)req->body, req->body_len);
    if (bad) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

/* The open entry of the stream, on the house's request stream. */
static int ws_submit(br_front *f, fr_req *rq, const fr_route *rt, long long timeout) {
    fr_ws *ws = rq->ws;
    char reqkey[GP_KEY_MAX], svc[FR_SERVICE_MAX + 8];
    if (gp_key_req(reqkey, f->prefix, rt->house) < 0 ||
        gp_key_reply(rq->key, f->prefix, ws->sid) < 0 ||
        gp_key_sin(ws->kin, f->prefix, rt->house, ws->sid) < 0 ||
        gp_key_sout(ws->kout, f->prefix, rt->house, ws->sid) < 0)
        return -1;
    snprintf(svc, sizeof svc, "http:%s", rt->service);
    br_args a;
    br_args_init(&a);
    const char *fixed[] = {"XADD",   reqkey, "MAXLEN", "~",       "10000", "*",     "kind",
                           "stream", "id",   ws->sid,  "service", svc,     "reply", rq->key};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        br_args_str(&a, fixed[i]);
    br_args_str(&a, "window");
    br_args_u64(&a, GP_STREAM_WIN_DEFAULT);
    br_args_str(&a, "idle_ms");
    br_args_u64(&a, GP_STREAM_IDLE_DEFAULT);
    br_args_str(&a, "timeout_ms");
    br_args_u64(&a, (uint64_t)timeout);
    return br_db_cmd(f->cfg.db, on_xadd, rq, &a);
}

/* An Upgrade request that passed the route and token checks. */
static void ws_start(br_front *f, gp_admin_call *call, const gp_http_request *req,
                     const fr_route *rt, long long timeout) {
    if (f->nws >= FR_WS_MAX) {
        ws_count(f, "unavailable");
        error_reply(f, call, 503, "unavailable", "too many WebSockets through this front door",
                    NULL);
        return;
    }
    size_t hlen = 0;
    char *head = ws_head(f, req, rt, gp_admin_call_ip(call), &hlen);
    fr_req *rq = head ? calloc(1, sizeof *rq) : NULL;
    fr_ws *ws = rq ? calloc(1, sizeof *ws) : NULL;
    if (!ws) {
        free(head);
        free(rq);
        ws_count(f, "unavailable");
        error_reply(f, call, 503, "unavailable", "out of memory", NULL);
        return;
    }
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(ws->sid, sizeof ws->sid, rnd, sizeof rnd);
    ws->f = f;
    ws->rq = rq;
    ws->refs = 1; /* the read chain's */
    ws->ib = (uint8_t *)head;
    ws->ilen = ws->icap = hlen;
    ws->t0 = uv_now(f->cfg.loop);
    snprintf(ws->house, sizeof ws->house, "%s", rt->house);
    ws->prev = f->ws_tail;
    if (f->ws_tail)
        f->ws_tail->next = ws;
    else
        f->ws_head = ws;
    f->ws_tail = ws;
    f->nws++;
    rq->f = f;
    rq->call = call;
    rq->ws = ws;
    rq->refs = 2;
    rq->t0 = ws->t0;
    rq->wait_until = rq->t0 + (uint64_t)timeout + FR_WAIT_GRACE_MS;
    snprintf(rq->last, sizeof rq->last, "0-0");
    snprintf(rq->house, sizeof rq->house, "%s", rt->house);
    f->inflight++;
    if (f->m_inflight)
        gp_metric_set(f->m_inflight, NULL, f->inflight);
    if (ws_submit(f, rq, rt, timeout) != 0) {
        rq->call = NULL;
        rq->ws = NULL;
        ws->rq = NULL;
        ws->refused = 1; /* nothing was written: nothing to reset */
        f->inflight--;
        free(rq);
        ws_count(f, "unavailable");
        error_reply(f, call, 503, "unavailable", "Redis is not connected", NULL);
        ws_unref(ws);
        return;
    }
    enqueue(rq);
}

static void on_request(gp_admin_call *call, const gp_http_request *req, void *ud) {
    br_front *f = ud;
    if (f->stopping) {
        error_reply(f, call, 503, "unavailable", "the bridge is stopping", NULL);
        return;
    }
    fr_route rt;
    const char *why;
    int ws = is_websocket(req);
    if (fr_route_parse(req->target, gp_http_header_get(req, "host"), f->domain, &rt, &why) != 0) {
        if (ws)
            ws_count(f, "rejected");
        error_reply(f, call, 404, "not_found", why, NULL);
        return;
    }
    long long timeout = timeout_of(f, req);
    char *headers = NULL;
    if (authorize(f, call, req, &rt) != 0) {
        if (ws)
            ws_count(f, "rejected");
        fr_route_clear(&rt);
        return;
    }
    if (timeout < 0) {
        if (ws)
            ws_count(f, "rejected");
        error_reply(f, call, 400, "bad_request", "X-Gp-Timeout-Ms must be 1..86400000", NULL);
    } else if (ws) {
        ws_start(f, call, req, &rt, timeout);
    } else if (!(headers = headers_json(f, req, gp_admin_call_ip(call)))) {
        error_reply(f, call, 400, "bad_request", "a header value is not UTF-8", NULL);
    } else {
        fr_req *rq = calloc(1, sizeof *rq);
        if (rq) {
            rq->f = f;
            rq->call = call;
            rq->refs = 2;
            rq->head = strcmp(req->method, "HEAD") == 0;
            rq->t0 = uv_now(f->cfg.loop);
            rq->wait_until = rq->t0 + (uint64_t)timeout + FR_WAIT_GRACE_MS;
            snprintf(rq->last, sizeof rq->last, "0-0");
            snprintf(rq->house, sizeof rq->house, "%s", rt.house);
            f->inflight++;
            if (f->m_inflight)
                gp_metric_set(f->m_inflight, NULL, f->inflight);
        }
        if (!rq || submit(f, rq, req, &rt, timeout, headers) != 0) {
            if (rq) {
                rq->call = NULL;
                f->inflight--;
                free(rq);
            }
            error_reply(f, call, 503, "unavailable", "Redis is not connected", NULL);
        } else {
            enqueue(rq);
        }
    }
    free(headers);
    fr_route_clear(&rt);
}

/* --- start, stop -------------------------------------------------------------------------------
 */

static void front_log(int level, const char *event, const char *kv) {
    if (level <= BR_LOG_WARN)
        br_logr(level, event, "%s", kv);
    else
        br_log(level, event, "%s", kv);
}

/* Reads and parses the token file into out (empty on failure): 0, or -1 with the reason. */
static int load_tokens(const char *file, fr_tokens *out, char *err, size_t errlen) {
    char why[256];
    memset(out, 0, sizeof *out);
    if (gp_conf_secret_file_ok(file, why, sizeof why) != 0) {
        snprintf(err, errlen, "--http-token-file: %s", why);
        return -1;
    }
    size_t len = 0;
    char *text = gp_read_file(file, FR_TOKEN_FILE_MAX, &len, why, sizeof why);
    if (!text) {
        snprintf(err, errlen, "--http-token-file: %s", why);
        return -1;
    }
    int rc = fr_tokens_parse(text, len, out, why, sizeof why);
    sodium_memzero(text, len);
    free(text);
    if (rc != 0) {
        snprintf(err, errlen, "--http-token-file %s: %s", file, why);
    } else if (out->n == 0) {
        snprintf(err, errlen, "--http-token-file %s: no token in it", file);
        rc = -1;
    }
    return rc;
}

static int has_token_file(const br_front_cfg *c) {
    return c->token_file && *c->token_file;
}

int br_front_reload_tokens(br_front *f, char *err, size_t errlen) {
    if (!f || !has_token_file(&f->cfg))
        return 0;
    fr_tokens next;
    if (load_tokens(f->cfg.token_file, &next, err, errlen) != 0)
        return -1;
    fr_tokens_free(&f->tokens);
    f->tokens = next;
    br_log(BR_LOG_INFO, "http_tokens_loaded", "tokens=%zu", next.n);
    return 0;
}

static int check_cfg(const br_front_cfg *c, char *err, size_t errlen) {
    const char *bind = c->bind && *c->bind ? c->bind : "127.0.0.1";
    int tls = c->cert && *c->cert && c->key && *c->key;
    if (!tls && !br_front_loopback(bind) && !c->insecure) {
        snprintf(err, errlen,
                 "--http-bind %s is not a loopback address and the front door would speak plain "
                 "HTTP: give it a certificate (--http-tls, with --http-cert/--http-key or the "
                 "bridge's --tls-cert/--tls-key), or pass --http-insecure behind a TLS proxy, "
                 "or bind to 127.0.0.1",
                 bind);
        return -1;
    }
    int has_file = has_token_file(c);
    if (!has_file && !c->public_) {
        snprintf(err, errlen,
                 "--http-listen needs --http-token-file FILE (lines TOKEN HOUSE-GLOB "
                 "[SERVICE-GLOB]) or, for open access, --http-public");
        return -1;
    }
    if (has_file && c->public_) {
        snprintf(err, errlen, "--http-token-file and --http-public exclude each other");
        return -1;
    }
    return 0;
}

int br_front_check(const br_front_cfg *cfg, char *err, size_t errlen) {
    if (check_cfg(cfg, err, errlen) != 0)
        return -1;
    fr_tokens t;
    if (has_token_file(cfg) && load_tokens(cfg->token_file, &t, err, errlen) != 0)
        return -1;
    if (has_token_file(cfg))
        fr_tokens_free(&t);
    return 0;
}

static void metrics_init(br_front *f) {
    if (!f->cfg.reg)
        return;
    f->m_req = gp_metrics_counter(f->cfg.reg, "gp_bridge_http_requests_total",
                                  "front door HTTP requests answered, by status class", "class");
    f->m_auth = gp_metrics_counter(f->cfg.reg, "gp_bridge_http_auth_failures_total",
                                   "front door requests refused by the token check", "reason");
    f->m_inflight = gp_metrics_gauge(f->cfg.reg, "gp_bridge_http_inflight",
                                     "front door requests waiting for their reply", NULL);
    f->m_paused = gp_metrics_counter(f->cfg.reg, "gp_bridge_http_reads_paused_total",
                                     "front door replies no longer read while a slow client had "
                                     "over 1 MiB queued",
                                     NULL);
    f->m_ws = gp_metrics_gauge(f->cfg.reg, "gp_bridge_http_websockets",
                               "WebSockets open through the front door", NULL);
    f->m_upgrades = gp_metrics_counter(f->cfg.reg, "gp_bridge_http_upgrades_total",
                                       "front door WebSocket upgrades, by outcome: opened, "
                                       "rejected (404/401/403/429/400 at the door), refused (by "
                                       "the house), timeout, unavailable, gone (the client left)",
                                       "outcome");
    if (f->m_upgrades) {
        static const char *const outcomes[] = {"opened",  "rejected",    "refused",
                                               "timeout", "unavailable", "gone"};
        for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++)
            gp_metric_add(f->m_upgrades, outcomes[i], 0);
    }
}

br_front *br_front_start(const br_front_cfg *cfg, char *err, size_t errlen) {
    if (check_cfg(cfg, err, errlen) != 0)
        return NULL;
    br_front *f = calloc(1, sizeof *f);
    if (!f || !(f->prefix = strdup(cfg->prefix)) ||
        !(f->domain = strdup(cfg->domain ? cfg->domain : "")) ||
        !(f->limit = gp_authlimit_new(&cfg->auth_limit))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    f->cfg = *cfg;
    if (has_token_file(cfg) && load_tokens(cfg->token_file, &f->tokens, err, errlen) != 0)
        goto fail;
    gp_admin_cfg ac = {.bind = cfg->bind,
                       .port = cfg->port,
                       .any_host = 1,
                       .continue_100 = 1,
                       .max_conns = 1024,
                       .max_per_addr = 1024,
                       .request_ms = 30000,
                       .max_body = (size_t)cfg->max_body,
                       .log = front_log};
    f->tls = cfg->cert && *cfg->cert && cfg->key && *cfg->key;
    if (f->tls) {
        if (!(f->srv = br_front_tls_new(cfg->loop, &ac, cfg->cert, cfg->key, err, errlen)))
            goto fail;
    } else if (!(f->srv = gp_admin_new(cfg->loop, &ac))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    gp_admin_route(f->srv, "/", 1, on_request, f);
    if ((f->port = gp_admin_listen(f->srv)) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->bind ? cfg->bind : "127.0.0.1",
                 cfg->port, uv_strerror(f->port));
        gp_admin_close(f->srv);
        goto fail;
    }
    metrics_init(f);
    if ((f->sweep = malloc(sizeof *f->sweep))) {
        uv_timer_init(cfg->loop, f->sweep);
        f->sweep->data = f;
        uint64_t every = reader_idle_ms(f) / 2;
        uv_timer_start(f->sweep, on_sweep, every, every);
    }
    br_log(BR_LOG_INFO, "listening", "transport=http port=%d bind=%s tls=%d auth=%s domain=%s",
           f->port, br_qs(cfg->bind ? cfg->bind : "127.0.0.1"), f->tls,
           cfg->public_ ? "public" : "token", br_qs(f->domain));
    return f;
fail:
    if (f)
        front_free(f);
    return NULL;
}

void br_front_stop(br_front *f) {
    if (!f || f->stopping)
        return;
    f->stopping = 1;
    f->inflight++; /* held until the end of this call: a request ending here frees nothing */
    if (f->sweep)
        uv_close((uv_handle_t *)f->sweep, on_sweep_closed);
    f->sweep = NULL;
    gp_admin_close(f->srv);
    f->srv = NULL;
    while (f->wait_head) {
        fr_req *rq = f->wait_head;
        f->wait_head = rq->next;
        f->nwait--;
        answer_error(rq, 503, "unavailable", "the front door is stopping");
    }
    f->wait_tail = NULL;
    for (unsigned i = 0; i < f->nreaders; i++) { /* their reads end with NULL: req_done */
        br_redis *r = f->readers[i]->r;
        f->readers[i]->r = NULL;
        br_redis_free(r);
    }
    if (--f->inflight == 0 && f->nws == 0)
        front_free(f);
}
