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
#include "../store/store_req.h"
#include "../store/store_state.h"
#include "adapters/uv_admin.h"
#include "conf.h"
#include "front_int.h"
#include "front_tls.h"
#include "froute.h"
#include "list.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void fr_count(br_front *f, int status) {
    static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    if (f->m_req && status >= 100 && status < 600)
        gp_metric_inc(f->m_req, cls[status / 100 - 1]);
}

void fr_front_free(br_front *f) {
    for (unsigned i = 0; i < f->nreaders; i++)
        free(f->readers[i]);
    fr_tokens_free(&f->tokens);
    gp_authlimit_free(f->limit);
    free(f->prefix);
    free(f->domain);
    free(f);
}

void fr_error_reply(br_front *f, gp_admin_call *call, int status, const char *code, const char *msg,
                    const char *extra) {
    size_t len = 0;
    char *body = gp_admin_error_json(code, msg, &len);
    gp_admin_reply(call, status, "application/json", extra, body ? body : "", body ? len : 0);
    free(body);
    fr_count(f, status);
}

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
        fr_front_free(f);
}

/* The read chain is over (answered, or its client gone): the reader goes back to the pool. */
void fr_req_done(fr_req *rq) {
    br_front *f = rq->f;
    if (rq->ws) { /* its WebSocket ends with the chain (or never opened) */
        fr_ws *ws = rq->ws;
        rq->ws = NULL;
        fr_ws_chain_over(ws, rq->status); /* it forgets rq */
    }
    if (rq->call) { /* not answered yet: the client is gone or the front door stops */
        fr_error_reply(f, rq->call, 503, "unavailable", "the front door is stopping", NULL);
        rq->call = NULL;
    }
    if (rq->rd)
        reader_free_up(rq->rd);
    rq->rd = NULL;
    int stopping = f->stopping;
    req_unref(rq);
    if (!stopping)
        fr_pump(f);
}

static void answer_error(fr_req *rq, int status, const char *code, const char *msg) {
    rq->status = status;
    if (rq->call && !rq->started)
        fr_error_reply(rq->f, rq->call, status, code, msg, NULL);
    else if (rq->call)
        gp_admin_stream_abort(rq->call); /* mid-stream: the client sees it cut short */
    rq->call = NULL;
    fr_req_done(rq);
}

/* --- the reply: entries -> HTTP -------------------------------------------------------------- */

void fr_entry_fields(const redisReply *kv, fr_entry *e) {
    memset(e, 0, sizeof *e);
    if (kv->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        if (gp_reply_is(k, "status"))
            e->status = v;
        else if (gp_reply_is(k, "headers"))
            e->headers = v;
        else if (gp_reply_is(k, "body"))
            e->body = v;
        else if (gp_reply_is(k, "final"))
            e->final = v;
        else if (gp_reply_is(k, "error"))
            e->error = v;
        else if (gp_reply_is(k, "message"))
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
            fr_error_reply(rq->f, rq->call, status, code, msg, NULL);
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
        fr_count(rq->f, status);
    }
    if (e->body && e->body->len)
        gp_admin_stream_data(rq->call, e->body->str, e->body->len);
    if (final) {
        gp_admin_stream_end(rq->call);
        rq->call = NULL;
    }
    return final;
}

/* The reader cannot read for rq now: rq goes back to the head of the line (the reply waits
 * in Redis), to be taken by the next reader that is up. */
void fr_requeue(fr_req *rq) {
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

void fr_on_read(redisReply *r, void *ud) {
    fr_req *rq = ud;
    br_front *f = rq->f;
    if (!r) { /* the reader's connection is lost (or stopping) */
        if (f->stopping) {
            answer_error(rq, 503, "unavailable", "the front door is stopping");
            return;
        }
        fr_requeue(rq);
        fr_pump(f);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        br_logr(BR_LOG_WARN, "http_read_failed", "house=%s error=%s", rq->house,
                br_q(r->str, r->len));
        answer_error(rq, 503, "unavailable", "reading the reply from Redis failed");
        return;
    }
    if (rq->ws) {
        fr_ws_on_read(rq, r);
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
            fr_entry_fields(en->element[1], &e);
            size_t big = e.body ? e.body->len + 1 : 1;
            unsigned fit = (unsigned)(FR_MAX_QUEUED / big);
            fit = fit < 1 ? 1 : fit > FR_MAX_COUNT ? FR_MAX_COUNT : fit;
            if (!rq->count || fit < rq->count)
                rq->count = fit;
            if (on_entry(rq, &e)) {
                fr_req_done(rq);
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
    fr_issue_read(rq);
}

/* The slow client took enough of what was queued for it (or its connection is gone, or the
 * front door stops): the reply is read on from rq->last. */
static void on_drained(void *ud) {
    fr_req *rq = ud;
    rq->paused = 0;
    if (rq->f->stopping)
        answer_error(rq, 503, "unavailable", "the front door is stopping");
    else
        fr_issue_read(rq);
}

/* The next XREAD of rq's reply; -1 when it could not be sent (rq is back in the queue). */
int fr_issue_read(fr_req *rq) {
    br_front *f = rq->f;
    if (rq->ws && fr_ws_open(rq->ws))
        return fr_ws_issue_read(rq);
    uint64_t now = uv_now(f->cfg.loop);
    if (rq->call && gp_admin_call_gone(rq->call)) {
        gp_admin_reply(rq->call, 499, NULL, NULL, NULL, 0); /* dropped: only frees the call */
        rq->call = NULL;
    }
    if (!rq->call) {
        fr_req_done(rq);
        return 0;
    }
    if (now >= rq->wait_until) {
        answer_error(rq, 504, "timeout", "no reply came by the deadline");
        return 0;
    }
    return fr_xread(rq, rq->count ? rq->count : FR_FIRST_COUNT, rq->wait_until - now);
}

/* XREAD COUNT count BLOCK block (at most half the Redis timeout) STREAMS rq->key rq->last on
 * rq's reader; -1 when it could not be sent (rq is back in the queue). */
int fr_xread(fr_req *rq, uint64_t count, uint64_t block) {
    uint64_t cap = rq->f->cfg.redis_timeout_ms / 2;
    if (block > cap)
        block = cap ? cap : 1;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XREAD");
    br_args_str(&a, "COUNT");
    br_args_u64(&a, count);
    br_args_str(&a, "BLOCK");
    br_args_u64(&a, block);
    br_args_str(&a, "STREAMS");
    br_args_str(&a, rq->key);
    br_args_str(&a, rq->last);
    if (br_redis_cmd(rq->rd->r, fr_on_read, rq, &a) == 0)
        return 0;
    fr_requeue(rq); /* not connected: its reconnection (reader_up) pumps again */
    return -1;
}

/* --- reader pool ------------------------------------------------------------------------------ */

static void reader_up(br_redis *r) {
    fr_reader *rd = br_redis_ud(r);
    fr_pump(rd->f);
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
void fr_pump(br_front *f) {
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
        if (fr_issue_read(rq) != 0)
            return;
        prev = NULL, next = f->wait_head; /* fr_issue_read may have changed the queue */
    }
}

/* How long a connected reader may sit idle before it is closed: twice the Redis timeout (its
 * XREADs block for half of that), at least a second. */
static uint64_t reader_idle_ms(const br_front *f) {
    uint64_t ms = 2ull * f->cfg.redis_timeout_ms;
    return ms < 1000 ? 1000 : ms;
}

/* Closes the readers idle for longer than reader_idle_ms: a burst's pool shrinks back. A reader
 * still connecting is kept (a waiting request may count on it). A reply paused for a client
 * that does not read is cut at its deadline, as any reply not done by then (fr_issue_read): the
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
    fr_ws_sweep(f, now);
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

void fr_enqueue(fr_req *rq) {
    br_front *f = rq->f;
    GP_SLIST_APPEND(f->wait_head, f->wait_tail, rq, next);
    f->nwait++;
    fr_pump(f);
}

/* The XADD's answer. Its reply is being read already (the read was sent with it, not after
 * it: one Redis round trip less a request); a refused XADD answers 503, and the read chain
 * ends at its next turn, finding the call answered. */
int fr_add_args(const br_front *f, const char *house, char keys[2][GP_KEY_MAX], br_args *a) {
    if (gp_key_house(keys[0], f->prefix, house) < 0 || gp_key_req(keys[1], f->prefix, house) < 0)
        return -1;
    br_args_str(a, keys[0]);
    br_args_str(a, keys[1]);
    return 0;
}

int fr_add(br_front *f, fr_req *rq, const br_args *a) {
    return br_db_eval(f->cfg.db, &f->add, fr_on_xadd, rq, 2, a);
}

void fr_on_xadd(redisReply *r, void *ud) {
    fr_req *rq = ud;
    if (!rq->f->stopping && r && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        /* Not registered: nothing was written (GP_LUA_REQ_ADD_REGISTERED). */
        if (rq->call && !rq->started) {
            rq->status = 404;
            char msg[160];
            snprintf(msg, sizeof msg, "no house %s is registered", rq->house);
            fr_error_reply(rq->f, rq->call, 404, "unknown_house", msg, NULL);
            rq->call = NULL;
        }
    } else if (!rq->f->stopping && (!r || r->type == REDIS_REPLY_ERROR)) {
        br_logr(BR_LOG_WARN, "http_xadd_failed", "house=%s error=%s", rq->house,
                r ? br_q(r->str, r->len) : "\"no answer\"");
        if (rq->call && !rq->started) {
            rq->status = 503;
            fr_error_reply(rq->f, rq->call, 503, "unavailable", "Redis did not take the request",
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
        fr_error_reply(f, call, 429, "rate_limited",
                       "too many failed attempts from this address; "
                       "wait a minute",
                       "Retry-After: 60\r\n");
    else if (status == 403)
        fr_error_reply(f, call, 403, "forbidden", "this token does not reach that house or service",
                       NULL);
    else
        fr_error_reply(f, call, 401, "unauthorized",
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
    char id[33];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(id, sizeof id, rnd, sizeof rnd);
    if (gp_key_reply(rq->key, f->prefix, id) < 0)
        return -1;
    br_args a;
    br_args_init(&a);
    char keys[2][GP_KEY_MAX];
    if (fr_add_args(f, rt->house, keys, &a) != 0)
        return -1;
    const char *fixed[] = {"id",     id,        "method", req->method, "path",
                           rt->path, "headers", headers,  "reply",     rq->key};
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
    return fr_add(f, rq, &a);
}

static void on_request(gp_admin_call *call, const gp_http_request *req, void *ud) {
    br_front *f = ud;
    if (f->stopping) {
        fr_error_reply(f, call, 503, "unavailable", "the bridge is stopping", NULL);
        return;
    }
    fr_route rt;
    const char *why;
    int ws = fr_is_websocket(req);
    if (fr_route_parse(req->target, gp_http_header_get(req, "host"), f->domain, &rt, &why) != 0) {
        if (ws)
            fr_ws_count(f, "rejected");
        fr_error_reply(f, call, 404, "not_found", why, NULL);
        return;
    }
    long long timeout = timeout_of(f, req);
    char *headers = NULL;
    if (authorize(f, call, req, &rt) != 0) {
        if (ws)
            fr_ws_count(f, "rejected");
        fr_route_clear(&rt);
        return;
    }
    if (rt.owned && !ws) {
        /* /h/<house> without its slash: a browser would resolve the app's relative URLs against
         * /h/ (other houses' names). Its root is /h/<house>/, as a web server redirects a
         * directory (308: the method and body stay). The target holds no CR or LF (the
         * parser's). */
        const char *t = req->target, *q = strchr(t, '?');
        size_t n = q ? (size_t)(q - t) : strlen(t);
        char *loc = malloc(strlen(t) + 16);
        if (loc)
            snprintf(loc, strlen(t) + 16, "Location: %.*s/%s\r\n", (int)n, t, q ? q : "");
        fr_error_reply(f, call, loc ? 308 : 503, loc ? "moved" : "unavailable",
                       loc ? "the house's root ends with a slash" : "out of memory", loc);
        free(loc);
        fr_route_clear(&rt);
        return;
    }
    if (timeout < 0) {
        if (ws)
            fr_ws_count(f, "rejected");
        fr_error_reply(f, call, 400, "bad_request", "X-Gp-Timeout-Ms must be 1..86400000", NULL);
    } else if (ws) {
        fr_ws_start(f, call, req, &rt, timeout);
    } else if (!(headers = headers_json(f, req, gp_admin_call_ip(call)))) {
        fr_error_reply(f, call, 400, "bad_request", "a header value is not UTF-8", NULL);
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
            fr_error_reply(f, call, 503, "unavailable", "Redis is not connected", NULL);
        } else {
            fr_enqueue(rq);
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
                                       "the house), timeout, unavailable, gone (the client "
                                       "left), declined (opened, but the upstream did not "
                                       "answer 101)",
                                       "outcome");
    if (f->m_upgrades) {
        static const char *const outcomes[] = {"opened",      "rejected", "refused", "timeout",
                                               "unavailable", "gone",     "declined"};
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
    f->add = (br_script){GP_LUA_REQ_ADD_REGISTERED, ""};
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
        fr_front_free(f);
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
    for (unsigned i = 0; i < f->nreaders; i++) { /* their reads end with NULL: fr_req_done */
        br_redis *r = f->readers[i]->r;
        f->readers[i]->r = NULL;
        br_redis_free(r);
    }
    if (--f->inflight == 0 && f->nws == 0)
        fr_front_free(f);
}
