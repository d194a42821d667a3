/* tunnel.c — the house's tunnel core: the handshake of proto/PROTOCOL.md (HELLO -> CHALLENGE
 * -> AUTH -> WELCOME), the table of request streams the bridge opens (what arrives on them,
 * with replay and joining of redelivered requests, is exchange.c's), the round-robin send
 * scheduler, liveness
 * (PING/PONG) and the reconnect policy (full-jitter exponential backoff, bridge rotation,
 * going back to a probed rudp:// bridge). It talks to a bridge only through the transport
 * interface of transport.h (tr_ws.c, tr_rudp.c): no sockets here. One hs_tunnel per house.
 * The codec and the proofs are proto/'s pure functions.
 *
 * Memory is bounded by the send queue: every outgoing frame is encoded once into its own
 * buffer (with HS_OUT_PRE headroom) on a per-stream queue; the transport pulls one frame at
 * a time, control frames first and then one frame from each stream in turn, so a 5 MiB
 * response never holds up a small one. Above HIGH_WATER queued bytes upstream.c pauses its
 * transfers; below LOW_WATER they resume.
 *
 * TCP streams (protocol 2, streams.c) take one place in that ring (tcp_lane): their frames
 * are not queued here but pulled from streams.c when it is their turn (one frame of one
 * stream, the streams in turn there), so a bulk stream gets one turn like any response and
 * a slow connection stops the reading of the service sockets instead of growing a queue. */
#include "buf.h"
#include "compress.h"
#include "list.h"
#include "metrics.h"
#include "tunnel_int.h"

#include "l3.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HIGH_WATER (4u << 20)
#define LOW_WATER (1u << 20)
#define HANDSHAKE_MS 15000u /* dial + TLS + auth; the bridge allows 10 s for its part */
#define BACKOFF_BASE_MS 250u
#define DISABLED_RETRY_MS 2000u /* refused as disabled: next dial in 2-3 s (BK_DISABLED) */
#define STABLE_MS 60000u        /* a connection up this long resets the backoff */
#define DRAIN_MS 10000u         /* GOAWAY DRAINING: longest wait for in-flight responses */
#define DEFAULT_PING_MS 5000u

static void conn_close(hs_tunnel *t, const char *reason, enum backoff_kind bk);
static void early_drop(hs_tunnel *t);

/* --- streams ---------------------------------------------------------------------------- */

void hs_tn_event(hs_tunnel *t, enum hs_event ev, const char *reason, uint64_t ms) {
    const hs_hooks *k = t->h->hooks;
    if (k && k->on_event)
        k->on_event(t->h->hooks_ud, t->h, ev, t->url, reason, ms);
}

hs_stream *hs_tn_stream_find(hs_tunnel *t, uint32_t id) {
    for (hs_stream *s = t->buckets ? t->buckets[id % NBUCKETS] : NULL; s; s = s->hnext)
        if (s->id == id)
            return s;
    return NULL;
}

static void ring_remove(hs_tunnel *t, hs_stream *s) {
    if (!s->in_ring)
        return;
    GP_SLIST_REMOVE(t->ring_head, t->ring_tail, s, rnext);
    s->rnext = NULL;
    s->in_ring = 0;
}

static void ring_push(hs_tunnel *t, hs_stream *s) {
    if (s->in_ring)
        return;
    GP_SLIST_APPEND(t->ring_head, t->ring_tail, s, rnext);
    s->in_ring = 1;
}

static void queue_drop(hs_tunnel *t, hs_out **head, hs_out **tail) {
    for (hs_out *o = *head, *n; o; o = n) {
        n = o->next;
        t->q_bytes -= o->len;
        free(o);
    }
    *head = *tail = NULL;
}

int hs_tunnel_live(const hs_tunnel *t) {
    return t->state == CS_LIVE;
}

/* Unlinks and frees; the caller has dealt with s->up. */
void hs_tn_stream_free(hs_stream *s) {
    hs_tunnel *t = s->t;
    if (s->detached) {
        hs_stream **dp = &t->detached;
        while (*dp && *dp != s)
            dp = &(*dp)->dnext;
        if (*dp)
            *dp = s->dnext;
        hs_ex_request_clear(&s->req);
        hs_cache_discard(s->rec);
        free(s);
        return;
    }
    GP_CHAIN_REMOVE(t->buckets[s->id % NBUCKETS], s, hnext);
    ring_remove(t, s);
    queue_drop(t, &s->qh, &s->qt);
    hs_ex_request_clear(&s->req);
    hs_cache_discard(s->rec);
    t->nstreams--;
    free(s);
}

/* A stream is done when the upstream has let go, its last frame is queued and written. */
void hs_tn_stream_maybe_done(hs_stream *s) {
    if (s->up || !s->resp_fin || s->qh)
        return;
    hs_tunnel *t = s->t;
    if (!s->detached)
        hs_tn_event(t, HS_EV_ANSWERED, s->req.frame_id, 0);
    hs_tn_stream_free(s);
    hs_tn_maybe_finish_drain(t);
}

/* The connection is gone: no frame is sent for its streams any more, and the bridge will
 * deliver the requests it still holds again once we are back. With `detach`, upstream calls
 * still running go on detached (their responses are remembered for that redelivery: the
 * upstream never runs a request twice); without it (shutdown) they are aborted, detached
 * ones included. Returns how many calls were detached or aborted. */
void hs_tn_stream_detach(hs_stream *s) {
    hs_tunnel *t = s->t;
    GP_CHAIN_REMOVE(t->buckets[s->id % NBUCKETS], s, hnext);
    t->nstreams--;
    ring_remove(t, s);
    queue_drop(t, &s->qh, &s->qt);
    s->detached = 1;
    s->dnext = t->detached;
    t->detached = s;
}

static size_t streams_abort_all(hs_tunnel *t, int detach) {
    size_t n = 0;
    for (unsigned b = 0; t->buckets && b < NBUCKETS; b++)
        while (t->buckets[b]) {
            hs_stream *s = t->buckets[b];
            if (s->up && detach) {
                hs_tn_stream_detach(s);
                n++;
                continue;
            }
            if (s->up) {
                t->h->exec->abort(t->h->exec_ud, s->up);
                s->up = NULL;
                n++;
            }
            hs_tn_stream_free(s);
        }
    t->ring_head = t->ring_tail = NULL;
    t->tcp_lane.in_ring = 0;
    t->tcp_lane.rnext = NULL;
    while (!detach && t->detached) {
        hs_stream *d = t->detached;
        if (d->up)
            t->h->exec->abort(t->h->exec_ud, d->up);
        d->up = NULL;
        hs_tn_stream_free(d);
    }
    return n;
}

const hs_request *hs_stream_request(const hs_stream *s) {
    return &s->req;
}

int hs_tunnel_congested(const hs_tunnel *t) {
    return t->congested;
}

/* --- sending ---------------------------------------------------------------------------- */

/* Frames are queued: the transport pulls them when it can write. (A transport that
 * authenticates itself goes from CONNECTING to AUTH: HELLO is never its state.) */
static void want_write(hs_tunnel *t) {
    if (t->tr && t->state >= CS_HELLO)
        t->tr->ops->send(t->tr);
}

/* Encodes f onto the stream's queue (s NULL: the control queue, sent first). */
static int queue_frame(hs_tunnel *t, hs_stream *s, const gp_frame *f) {
    if (s && s->detached)
        return 0; /* its connection is gone: the response only goes to the cache */
    size_t n = gp_frame_size(f);
    if (n - GP_FRAME_HEADER_LEN > t->max_frame)
        return GP_ERR_TOO_LARGE;
    hs_out *o = malloc(sizeof *o + HS_OUT_PRE + n);
    if (!o)
        return GP_ERR_NOMEM;
    ssize_t w = gp_frame_encode(f, o->buf + HS_OUT_PRE, n);
    if (w < 0) {
        free(o);
        return (int)w;
    }
    o->len = (size_t)w;
    o->s = s;
    o->lane = s ? s->id : 0;
    hs_out **head = s ? &s->qh : &t->ctl_head, **tail = s ? &s->qt : &t->ctl_tail;
    GP_SLIST_APPEND(*head, *tail, o, next);
    t->q_bytes += o->len;
    if (t->q_bytes > HIGH_WATER)
        t->congested = 1;
    if (s)
        ring_push(t, s);
    want_write(t);
    return 0;
}

static void send_ctl(hs_tunnel *t, const gp_frame *f) {
    int rc = queue_frame(t, NULL, f);
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=%s err=%s", gp_frame_type_name(f->type),
               gp_strerror(rc));
}

void hs_tn_send_error_head(hs_stream *s, uint16_t status, const char *error, const char *message) {
    hs_stream_head(s, status, NULL, 0, error, message, 0, 1);
}

void hs_stream_head(hs_stream *s, uint16_t status, const gp_header *h, size_t nh, const char *error,
                    const char *message, uint64_t body_len, int fin) {
    hs_tunnel *t = s->t;
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_RESP_HEAD, s->id, fin ? GP_FLAG_FIN : 0);
    f.u.resp_head.status = status;
    f.u.resp_head.headers = (gp_header *)h;
    f.u.resp_head.nheaders = nh;
    f.u.resp_head.error = gp_str_c(error);
    f.u.resp_head.message = gp_str_c(message);
    f.u.resp_head.body_len = body_len;
    s->status = status;
    s->error = error && *error ? error : NULL;
    if (!s->replay && !s->error && !s->rec && !t->h->no_replay)
        s->rec =
            hs_cache_begin(t->h->cache, s->req.frame_id, s->req.method, s->req.path, status, h, nh);
    int rc = queue_frame(t, s, &f);
    if (rc == GP_ERR_TOO_LARGE && nh) {
        /* Headers that do not fit a frame: keep the status, say what happened. */
        hs_log(HS_LOG_WARN, "response_headers_dropped", "stream=%u id=%s headers=%zu", s->id,
               hs_qs(s->req.frame_id), nh);
        f.u.resp_head.headers = NULL;
        f.u.resp_head.nheaders = 0;
        rc = queue_frame(t, s, &f);
    }
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=RESP_HEAD stream=%u err=%s", s->id,
               gp_strerror(rc));
    if (fin)
        s->resp_fin = 1;
}

void hs_stream_body(hs_stream *s, gp_str content_type, const uint8_t *p, size_t len, int fin) {
    hs_tunnel *t = s->t;
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_RESP_BODY, s->id, fin ? GP_FLAG_FIN : 0);
    f.u.body.data = (gp_str){p, len};
    hs_zstate *zs =
        gp_compress_worthwhile(content_type, p, len) ? hs_zstate_ready(t->h->zs, &t->zs, 1) : NULL;
    if (zs) {
        size_t cap;
        uint8_t *zbuf = hs_zstate_buf(zs, &cap);
        ssize_t z = gp_compress(hs_zstate_zctx(zs), p, len, zbuf, cap);
        if (z > 0) {
            f.flags |= GP_FLAG_ZSTD;
            f.u.body.data = (gp_str){zbuf, (size_t)z};
        }
    }
    s->resp_bytes += len;
    if (s->rec && hs_cache_append(s->rec, p, len) != 0) {
        hs_cache_discard(s->rec); /* too big to remember */
        s->rec = NULL;
        s->rec_dropped = 1;
    }
    int rc = queue_frame(t, s, &f);
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=RESP_BODY stream=%u err=%s", s->id,
               gp_strerror(rc));
    if (fin)
        s->resp_fin = 1;
}

void hs_stream_upstream_done(hs_stream *s, const char *outcome) {
    hs_tunnel *t = s->t;
    s->up = NULL;
    if (s->rec && strcmp(outcome, "ok") == 0) {
        hs_journal_commit(t->h->journal, s->rec, hs_now_ms(), s->start_ms + s->req.timeout_ms);
    } else {
        hs_cache_discard(s->rec);
        if (s->rec_dropped) {
            /* It ran, but its response is not kept: remember that much, so that a delivery
             * of it again is told so instead of running the upstream call twice. */
            hs_centry *ts = hs_cache_begin(t->h->cache, s->req.frame_id, s->req.method, s->req.path,
                                           0, NULL, 0);
            if (ts)
                hs_journal_commit(t->h->journal, ts, hs_now_ms(), s->start_ms + s->req.timeout_ms);
        } else {
            hs_journal_forget(t->h->journal, &s->req);
        }
    }
    s->rec = NULL;
    if (s->detached) {
        char o[64];
        snprintf(o, sizeof o, "detached_%s", outcome);
        hs_ex_log_request(s, o);
        hs_ex_resolve_joined(s);
        hs_tn_stream_free(s);
        return;
    }
    hs_ex_log_request(s, outcome);
    t->requests++;
    hs_ex_resolve_joined(s); /* s stays in the table meanwhile, so the connection cannot end */
    hs_tn_stream_maybe_done(s);
}

/* The next frame to send, taken off its queue, if it is at most max bytes: control frames
 * first, then one frame of each stream that has something to say, in turn (round robin: a
 * 5 MiB response never holds up a small one). Its stream (o->s) is NULL for control. */
static hs_out *tcp_pull(hs_tunnel *t, size_t max);

static hs_out *next_out(hs_tunnel *t, size_t max) {
    hs_out *o = NULL;
    hs_stream *s = NULL;
    if (t->ctl_head) {
        if (t->ctl_head->len > max)
            return NULL;
        o = t->ctl_head;
        GP_SLIST_SHIFT(t->ctl_head, t->ctl_tail, next);
    } else if (t->state == CS_LIVE && t->ring_head == &t->tcp_lane) {
        /* The TCP streams' turn: one frame pulled from streams.c (none: its turn passes). */
        s = &t->tcp_lane;
        o = tcp_pull(t, max);
        if (!o && hs_streams_pending(t->streams))
            return NULL; /* the frame due does not fit max: wait for a bigger chance */
        GP_SLIST_SHIFT(t->ring_head, t->ring_tail, rnext);
        s->in_ring = 0;
        s->rnext = NULL;
        if (hs_streams_pending(t->streams))
            ring_push(t, s);
        if (!o)
            return next_out(t, max);
        return o; /* not counted in q_bytes: it was never queued */
    } else if (t->state == CS_LIVE && t->ring_head) {
        s = t->ring_head;
        if (s->qh->len > max)
            return NULL;
        o = s->qh;
        GP_SLIST_SHIFT(s->qh, s->qt, next);
        /* Round robin: the stream goes to the back of the ring if it has more to say. */
        GP_SLIST_SHIFT(t->ring_head, t->ring_tail, rnext);
        s->in_ring = 0;
        s->rnext = NULL;
        if (s->qh)
            ring_push(t, s);
    }
    if (o)
        t->q_bytes -= o->len;
    return o;
}

/* A frame of s (or a control frame) has gone to the transport. */
static void sent_out(hs_tunnel *t, hs_stream *s) {
    if (s)
        hs_tn_stream_maybe_done(s);
    if (t->congested && t->q_bytes < LOW_WATER) {
        t->congested = 0;
        t->h->exec->resume(t->h->exec_ud);
    }
}

/* --- the transport's pull side (transport.h) ---------------------------------------------- */

static hs_out *up_pull(void *ud, hs_transport *tr, size_t max) {
    hs_tunnel *t = ud;
    return tr == t->tr ? next_out(t, max) : NULL;
}

static int up_pending(void *ud, hs_transport *tr) {
    hs_tunnel *t = ud;
    return tr == t->tr && (t->ctl_head || (t->state == CS_LIVE && t->ring_head));
}

/* A pulled frame is written (ok), or was not (the connection is failing: it closes next). */
static void up_sent(void *ud, hs_transport *tr, hs_out *o, int ok) {
    hs_tunnel *t = ud;
    hs_stream *s = o ? o->s : NULL;
    free(o);
    if (ok && tr == t->tr)
        sent_out(t, s);
}

/* --- TCP streams (streams.c) -------------------------------------------------------------- */

/* A frame of streams.c encoded for the transport, if one is due and fits max. */
static hs_out *tcp_pull(hs_tunnel *t, size_t max) {
    if (!t->streams || t->proto < GP_PROTO_STREAMS)
        return NULL;
    size_t lim = (size_t)t->max_frame + GP_FRAME_HEADER_LEN;
    gp_frame f;
    uint32_t lane;
    if (!hs_streams_pull(t->streams, max < lim ? max : lim, &f, &lane))
        return NULL;
    size_t n = gp_frame_size(&f);
    hs_out *o = malloc(sizeof *o + HS_OUT_PRE + n);
    ssize_t w = o ? gp_frame_encode(&f, o->buf + HS_OUT_PRE, n) : GP_ERR_NOMEM;
    if (w < 0) {
        /* Lost like a frame lost in transit: resent after the next connection's S_ATTACH. */
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=%s err=%s", gp_frame_type_name(f.type),
               gp_strerror((int)w));
        free(o);
        return NULL;
    }
    o->next = NULL;
    o->s = NULL;
    o->lane = lane;
    o->len = (size_t)w;
    return o;
}

/* streams.c has frames due: the TCP streams take their place in the ring. */
static void tcp_wake(void *ud) {
    hs_tunnel *t = ud;
    if (t->state != CS_LIVE || t->proto < GP_PROTO_STREAMS || !t->streams)
        return;
    ring_push(t, &t->tcp_lane);
    want_write(t);
}

static void on_stream_frame(hs_tunnel *t, const gp_frame *f) {
    if (t->proto < GP_PROTO_STREAMS || !t->streams) {
        hs_tn_protocol_error(t, "unexpected_frame", gp_frame_type_name(f->type));
        return;
    }
    hs_streams_on_frame(t->streams, f);
}

/* --- connection lifecycle --------------------------------------------------------------- */

static void dial(hs_tunnel *t);
static void tick_start(hs_tunnel *t);

/* Time to dial: now, or once the owner's gate lets the house through (hs_tunnel_dial). */
static void dial_or_wait(hs_tunnel *t) {
    const hs_hooks *k = t->h->hooks;
    if (t->h->stopping || t->state != CS_IDLE || t->gated)
        return;
    if (k && k->dial_gate) {
        t->gated = 1;
        k->dial_gate(t->h->hooks_ud, t->h);
        return;
    }
    dial(t);
}

void hs_tunnel_dial(hs_tunnel *t) {
    if (!t->gated)
        return;
    t->gated = 0;
    dial(t);
}

static void on_retry(uv_timer_t *tm) {
    dial_or_wait(tm->data);
}

static uint64_t backoff_delay(hs_tunnel *t, enum backoff_kind bk) {
    if (bk == BK_NOW)
        return 0;
    uint32_t cap = (uint32_t)t->h->cfg.reconnect_max_ms; /* --reconnect-max-ms */
    /* Disabled: only the operator's enable lets us in, and we cannot hear it; asking every few
     * seconds costs the bridge a handshake each time (no failed attempt is charged). */
    if (bk == BK_DISABLED && cap >= DISABLED_RETRY_MS * 3 / 2)
        return DISABLED_RETRY_MS + randombytes_uniform(DISABLED_RETRY_MS / 2 + 1);
    if (bk == BK_LONG || bk == BK_DISABLED) /* the bridge refused us: hammering it won't help */
        return cap / 2 + randombytes_uniform(cap / 2 + 1);
    unsigned a = t->attempt < 16 ? t->attempt : 16;
    uint64_t window = (uint64_t)BACKOFF_BASE_MS << a;
    if (window > cap)
        window = cap;
    t->attempt++;
    return randombytes_uniform((uint32_t)window + 1); /* full jitter */
}

/* The current connection is gone (connect error or close): clean up, plan the next dial. */
static void conn_ended(hs_tunnel *t, const char *why) {
    uint64_t now = hs_now_ms();
    int was_live = t->live_ms != 0;
    if (!t->reason[0])
        snprintf(t->reason, sizeof t->reason, "%s", why ? why : "closed");
    size_t detached = streams_abort_all(t, !t->h->stopping) + t->aborted;
    t->aborted = 0;
    if (t->streams)
        hs_streams_tunnel_down(t->streams);
    hs_l3_tunnel_down(t->l3);
    queue_drop(t, &t->ctl_head, &t->ctl_tail);
    t->congested = 0;
    t->tr = NULL;
    early_drop(t);
    t->state = CS_IDLE;
    t->draining = 0;
    t->probe_idx = -1;
    uv_timer_stop(&t->tick);
    uv_timer_stop(&t->probe);
    if (was_live && now - t->live_ms >= STABLE_MS)
        t->attempt = 0;
    if (was_live || t->dial_ms)
        hs_tn_event(t, was_live ? HS_EV_DISCONNECTED : HS_EV_DIAL_FAILED, t->reason, 0);
    if (!was_live && t->dial_ms && t->fail_event[0]) /* one line: what failed, what to do */
        hs_log(t->fail_level, t->fail_event, "house=%s bridge=%s reason=%s fix=%s", t->h->cfg.id,
               hs_qs(t->url), hs_qs(t->reason), hs_qs(t->fail_fix));
    else if (was_live || t->dial_ms)
        hs_log(!was_live && t->fail_logged ? HS_LOG_DEBUG : HS_LOG_WARN,
               was_live ? "disconnected" : "connect_failed",
               "house=%s bridge=%s reason=%s up_ms=%llu detached=%zu", t->h->cfg.id, hs_qs(t->url),
               hs_qs(t->reason), (unsigned long long)(was_live ? now - t->live_ms : 0), detached);
    t->fail_event[0] = '\0';
    t->fail_logged = 0;
    t->live_ms = 0;
    if (t->h->stopping)
        return;
    /* Several bridges: the next attempt goes to the next one (or back to rudp:// when a
     * probe found UDP open again). */
    t->bridge_idx =
        t->switch_to >= 0 ? (size_t)t->switch_to : (t->bridge_idx + 1) % t->h->cfg.nbridges;
    t->switch_to = -1;
    uint64_t ms = backoff_delay(t, t->next_backoff);
    t->next_backoff = BK_NORMAL;
    hs_log(HS_LOG_INFO, "reconnect_in", "ms=%llu bridge=%s attempt=%u", (unsigned long long)ms,
           hs_qs(t->h->cfg.bridges[t->bridge_idx]), t->attempt);
    hs_tn_event(t, HS_EV_WAITING, NULL, ms);
    uv_timer_start(&t->retry, on_retry, ms, 0);
}

/* Closes the connection; conn_ended() follows from the transport. Frames queued on the
 * control queue (a GOAWAY) are flushed first when the connection is open. */
static void conn_end_with(hs_tunnel *t, const char *reason, enum backoff_kind bk, int dead) {
    if (t->state == CS_IDLE || t->state == CS_CLOSING || !t->tr)
        return;
    snprintf(t->reason, sizeof t->reason, "%s", reason);
    if (bk != BK_NORMAL)
        t->next_backoff = bk;
    t->state = CS_CLOSING;
    /* Nothing more goes out for the streams; their upstream calls stop now. */
    t->aborted += streams_abort_all(t, !t->h->stopping);
    if (dead && t->tr->ops->drop)
        t->tr->ops->drop(t->tr); /* on_closed, at once */
    else
        t->tr->ops->close(t->tr); /* flushes a GOAWAY, then on_closed */
}

static void conn_close(hs_tunnel *t, const char *reason, enum backoff_kind bk) {
    conn_end_with(t, reason, bk, 0);
}

static void send_goaway(hs_tunnel *t, uint16_t code, const char *msg) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_GOAWAY, 0, 0);
    f.u.goaway.code = code;
    f.u.goaway.message = gp_str_c(msg);
    send_ctl(t, &f);
}

void hs_tn_protocol_error(hs_tunnel *t, const char *why, const char *detail) {
    hs_log(HS_LOG_WARN, "protocol_error", "house=%s bridge=%s reason=%s detail=%s", t->h->cfg.id,
           hs_qs(t->url), why, hs_qs(detail));
    send_goaway(t, GP_GOAWAY_PROTOCOL, why);
    conn_close(t, why, BK_NORMAL);
}

void hs_tn_maybe_finish_drain(hs_tunnel *t) {
    if (t->draining && t->state == CS_LIVE && t->nstreams == 0)
        conn_close(t, "draining", BK_NOW);
}

/* Which transport serves a bridge URL (the rudp one exists when a bridge is rudp://). */
static hs_transport *transport_for(hs_tunnel *t, const char *url) {
    return strncmp(url, "rudp://", 7) == 0 ? t->rudp : t->ws;
}

/* The transport has parsed the URL and is about to connect: the handshake clock starts. */
static int up_dialing(void *ud, hs_transport *tr, int tls) {
    hs_tunnel *t = ud;
    t->tr = tr;
    t->reason[0] = '\0';
    t->fail_event[0] = '\0';
    t->fail_logged = 0;
    t->state = CS_CONNECTING;
    t->dial_ms = hs_now_ms();
    t->live_ms = 0;
    t->draining = 0;
    t->max_frame = GP_DEFAULT_MAX_FRAME;
    t->ping_iv = DEFAULT_PING_MS;
    gp_framer_free(t->fr);
    t->fr = gp_framer_new(GP_DEFAULT_MAX_FRAME);
    hs_log(HS_LOG_DEBUG, "dialing", "bridge=%s tls=%d", hs_qs(t->url), tls);
    hs_tn_event(t, HS_EV_DIALING, NULL, 0);
    tick_start(t); /* enforces the handshake deadline */
    if (!t->fr) {
        conn_ended(t, "out_of_memory");
        return -1;
    }
    return 0;
}

static void dial(hs_tunnel *t) {
    if (t->h->stopping || t->state != CS_IDLE)
        return;
    const char *url = t->h->cfg.bridges[t->bridge_idx];
    t->url = url;
    hs_transport *tr = transport_for(t, url);
    int rc = tr->ops->dial(tr, url);
    if (rc == HS_TR_BAD_URL) {
        hs_log(HS_LOG_ERROR, "bad_bridge_url", "bridge=%s", hs_qs(url));
        t->dial_ms = 0;
        t->reason[0] = '\0';
        conn_ended(t, "bad_url");
    } else if (rc != 0 && t->state != CS_IDLE) { /* not reported through on_closed already */
        conn_ended(t, "connect_failed");
    }
}

/* --- the transport's events (transport.h) -------------------------------------------------- */

static void on_established(hs_tunnel *t);
static void send_hello(hs_tunnel *t);
static void on_frame(hs_tunnel *t, const gp_frame *f);

static void up_open(void *ud, hs_transport *tr) {
    hs_tunnel *t = ud;
    if (tr != t->tr || t->state != CS_CONNECTING)
        return;
    if (!(tr->ops->flags & HS_TR_AUTHENTICATES)) {
        on_established(t);
        return;
    }
    t->state = CS_AUTH; /* the session authenticated both ends: waiting for WELCOME */
    t->last_rx_ms = hs_now_ms();
    /* No handshake frames, but the bridge still has to learn the protocols we speak: a HELLO
     * goes with the first datagram (proto/RUDP.md); arriving after the bridge's WELCOME, it
     * gets a second WELCOME that names the protocol. A bridge of protocol 1 drops it before
     * its WELCOME and refuses it after (GOAWAY protocol): then we stop offering. */
    if (!t->no_rudp_hello)
        send_hello(t);
}

static void up_heard(void *ud, hs_transport *tr) {
    hs_tunnel *t = ud;
    if (tr == t->tr)
        t->last_rx_ms = hs_now_ms();
}

static void up_closed(void *ud, hs_transport *tr, const char *why) {
    hs_tunnel *t = ud;
    if (tr == t->tr)
        conn_ended(t, why ? why : "closed");
}

/* The failure's own line, logged by conn_ended (fix: what to do). */
static void fail_cause(hs_tunnel *t, int level, const char *event, const char *fix) {
    t->fail_level = level;
    snprintf(t->fail_event, sizeof t->fail_event, "%s", event);
    snprintf(t->fail_fix, sizeof t->fail_fix, "%s", fix);
}

static void up_cause(void *ud, hs_transport *tr, int level, const char *event, const char *fix) {
    hs_tunnel *t = ud;
    if (tr == t->tr && t->state != CS_LIVE)
        fail_cause(t, level, event, fix);
}

static void up_reason(void *ud, hs_transport *tr, const char *why, int replace) {
    hs_tunnel *t = ud;
    if (tr == t->tr && (replace || !t->reason[0]))
        snprintf(t->reason, sizeof t->reason, "%s", why);
}

/* Frames only mean something between HELLO (or the transport's own handshake) and close. */
static int receiving(const hs_tunnel *t, const hs_transport *tr) {
    return tr == t->tr && t->state >= CS_HELLO && t->state != CS_CLOSING;
}

static void up_error(void *ud, hs_transport *tr, const char *why) {
    hs_tunnel *t = ud;
    if (receiving(t, tr))
        hs_tn_protocol_error(t, why, NULL);
}

/* Lanes are independent (HS_TR_UNORDERED): a request the bridge sent right after WELCOME can
 * arrive before it when the WELCOME's packet was lost. Such frames wait here (bounded) for
 * the WELCOME. */
typedef struct early {
    struct early *next;
    size_t len;
    uint8_t b[];
} early;
#define EARLY_MAX (4u << 20)

static void early_drop(hs_tunnel *t) {
    while (t->early) {
        early *e = t->early;
        t->early = e->next;
        free(e);
    }
    t->early_tail = &t->early;
    t->early_bytes = 0;
}

/* A decoded frame (about 4 KiB) lives on the stack: a house keeps no decode scratch. */
static void frame_in(hs_tunnel *t, const uint8_t *m, size_t n) {
    gp_frame f;
    ssize_t k = gp_frame_decode(m, n, t->max_frame, &f);
    if (k != (ssize_t)n) {
        hs_tn_protocol_error(t, "bad_frame", gp_strerror(k < 0 ? (int)k : GP_ERR_MALFORMED));
        return;
    }
    int welcome = f.type == GP_FRAME_WELCOME;
    if (t->state == CS_AUTH && !welcome && f.type != GP_FRAME_GOAWAY &&
        (t->tr->ops->flags & HS_TR_UNORDERED)) {
        early *e = t->early_bytes + n <= EARLY_MAX ? malloc(sizeof *e + n) : NULL;
        if (!e) {
            hs_tn_protocol_error(t, "too_much_before_welcome", NULL);
            return;
        }
        e->next = NULL;
        e->len = n;
        memcpy(e->b, m, n);
        *t->early_tail = e;
        t->early_tail = &e->next;
        t->early_bytes += n;
        return;
    }
    on_frame(t, &f);
    if (welcome && t->state == CS_LIVE) {
        early *e = t->early;
        t->early = NULL;
        t->early_tail = &t->early;
        t->early_bytes = 0;
        while (e) {
            early *next = e->next;
            if (t->state == CS_LIVE)
                frame_in(t, e->b, e->len);
            free(e);
            e = next;
        }
    }
}

/* One message of a message transport: one frame. */
static void up_frame(void *ud, hs_transport *tr, const uint8_t *m, size_t n) {
    hs_tunnel *t = ud;
    if (receiving(t, tr))
        frame_in(t, m, n);
}

/* A byte stream of frames (ws: a binary message's bytes, frames may span messages). */
static void up_bytes(void *ud, hs_transport *tr, const uint8_t *p, size_t len) {
    hs_tunnel *t = ud;
    if (!receiving(t, tr))
        return;
    gp_frame f;
    int rc = gp_framer_feed(t->fr, p, len);
    while (rc == 0 && t->state != CS_CLOSING && t->state != CS_IDLE) {
        rc = gp_framer_next(t->fr, &f);
        if (rc <= 0)
            break;
        on_frame(t, &f);
        rc = 0;
    }
    if (rc < 0 && t->state != CS_CLOSING && t->state != CS_IDLE)
        hs_tn_protocol_error(t, rc == GP_ERR_TOO_LARGE ? "frame_too_large" : "bad_frame",
                             gp_strerror(rc));
}

/* While on a transport that cannot probe (wss) and a bridge is configured on one that can
 * (rudp://): see now and then whether that path gets through again, and go back to it when
 * it does. The probe is a handshake alone; it does not touch the live connection. */
static int first_probe_target(hs_tunnel *t) {
    for (size_t i = 0; i < t->h->cfg.nbridges; i++) {
        hs_transport *tr = transport_for(t, t->h->cfg.bridges[i]);
        if (tr != t->tr && tr->ops->probe)
            return (int)i;
    }
    return -1;
}

static void probe_result(hs_tunnel *t, int ok);

static void on_probe(uv_timer_t *tm) {
    hs_tunnel *t = tm->data;
    if (t->state != CS_LIVE || t->probe_idx < 0)
        return;
    const char *url = t->h->cfg.bridges[t->probe_idx];
    hs_transport *tr = transport_for(t, url);
    if (tr->ops->probe(tr, url) != 0)
        probe_result(t, 0);
}

static void probe_start(hs_tunnel *t) {
    t->probe_idx = t->tr->ops->probe ? -1 : first_probe_target(t);
    if (t->probe_idx < 0)
        return;
    if (!t->probe_iv)
        t->probe_iv = (uint64_t)t->h->cfg.rudp_probe_ms;
    uv_timer_start(&t->probe, on_probe, t->probe_iv, 0);
}

static void probe_result(hs_tunnel *t, int ok) {
    if (t->state != CS_LIVE || t->probe_idx < 0)
        return;
    if (!ok) {
        t->probe_iv = t->probe_iv * 2 > 300000 ? 300000 : t->probe_iv * 2;
        uv_timer_start(&t->probe, on_probe, t->probe_iv, 0);
        return;
    }
    hs_log(HS_LOG_INFO, "rudp_available", "house=%s bridge=%s from=%s", t->h->cfg.id,
           hs_qs(t->h->cfg.bridges[t->probe_idx]), hs_qs(t->url));
    t->probe_iv = 0;
    t->switch_to = t->probe_idx;
    /* Requests in flight here are delivered again over rudp (joined, never run twice). */
    send_goaway(t, GP_GOAWAY_DRAINING, "moving to rudp");
    conn_close(t, "moving_to_rudp", BK_NOW);
}

static void up_dgram(void *ud, hs_transport *tr, const uint8_t *p, size_t n) {
    hs_tunnel *t = ud;
    if (tr == t->tr && t->state == CS_LIVE)
        hs_l3_dgram(t->l3, p, n);
}

static int l3_send_frame(void *ud, const gp_frame *f) {
    hs_tunnel *t = ud;
    send_ctl(t, f);
    return 0;
}

static void up_probe(void *ud, hs_transport *tr, int ok) {
    (void)tr;
    probe_result(ud, ok);
}

/* --- handshake and incoming frames ------------------------------------------------------ */

static void on_established(hs_tunnel *t) {
    t->state = CS_HELLO;
    t->last_rx_ms = hs_now_ms();
    send_hello(t);
}

/* HELLO: the protocols we speak, our id and a fresh nonce (the proof's, over WebSocket). */
static void send_hello(hs_tunnel *t) {
    randombytes_buf(t->hn, sizeof t->hn);
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_HELLO, 0, 0);
    f.u.hello.min_ver = GP_PROTO_MIN;
    f.u.hello.max_ver = GP_PROTO_MAX;
    f.u.hello.house_id = gp_str_c(t->h->cfg.id);
    f.u.hello.nonce = t->hn;
    send_ctl(t, &f);
}

static void on_challenge(hs_tunnel *t, const gp_frame *f) {
    gp_str id = gp_str_c(t->h->cfg.id);
    if (gp_auth_verify(GP_ROLE_BRIDGE, t->h->secret, id, t->hn, f->u.challenge.nonce,
                       f->u.challenge.proof) != 0) {
        /* The bridge does not prove our secret. A bridge answers an id it does not know under a
         * decoy secret, exactly as a known one (proto/PROTOCOL.md), so that nobody can learn
         * which ids exist: which of the two it is, only the registry can tell. */
        char fix[400];
        snprintf(fix, sizeof fix,
                 "check that ghostport house list shows %s; if it does, re-issue its secret with "
                 "ghostport house add %s --force and give this house the new one (a bridge "
                 "whose --master-key differs from the CLI's logs secret_unreadable)",
                 t->h->cfg.id, t->h->cfg.id);
        fail_cause(t, HS_LOG_ERROR, "auth_failed", fix);
        conn_close(t,
                   "the bridge does not know this house's secret: the id is not registered, or "
                   "the secret is not the registered one",
                   BK_LONG);
        return;
    }
    uint8_t proof[GP_PROOF_LEN];
    gp_auth_proof(GP_ROLE_HOUSE, t->h->secret, id, t->hn, f->u.challenge.nonce, proof);
    gp_frame a;
    gp_frame_init(&a, GP_FRAME_AUTH, 0, 0);
    a.u.auth.proof = proof;
    send_ctl(t, &a);
    sodium_memzero(proof, sizeof proof);
    t->state = CS_AUTH;
}

static void on_welcome(hs_tunnel *t, const gp_frame *f) {
    if (f->u.welcome.proto > GP_PROTO_MAX) { /* we offered up to GP_PROTO_MAX */
        char d[32];
        snprintf(d, sizeof d, "proto=%u", f->u.welcome.proto);
        hs_tn_protocol_error(t, "unsupported_protocol", d);
        return;
    }
    uint64_t now = hs_now_ms();
    t->state = CS_LIVE;
    t->live_ms = now;
    t->last_ping_ms = now;
    t->rtt_us = 0;
    t->ping_iv = f->u.welcome.ping_interval_ms ? f->u.welcome.ping_interval_ms : DEFAULT_PING_MS;
    t->max_frame = f->u.welcome.max_frame ? f->u.welcome.max_frame : GP_DEFAULT_MAX_FRAME;
    t->epoch = f->u.welcome.epoch;
    t->proto = f->u.welcome.proto ? f->u.welcome.proto : 1; /* absent: protocol 1 */
    t->requests = 0;
    tick_start(t);
    probe_start(t);
    gp_metric_inc(t->h->m.connects, t->tr->ops->label(t->tr));
    hs_tn_event(t, HS_EV_LIVE, NULL, 0);
    hs_log(HS_LOG_INFO, "connected",
           "house=%s bridge=%s bridge_id=%s epoch=%llu ping_ms=%u proto=%d", t->h->cfg.id,
           hs_qs(t->url), hs_q(f->u.welcome.bridge_id.p, f->u.welcome.bridge_id.len),
           (unsigned long long)t->epoch, t->ping_iv, t->proto);
    if (t->streams) {
        if (t->proto < GP_PROTO_STREAMS && t->h->cfg.ntcp_services)
            hs_log(HS_LOG_WARN, "streams_unsupported",
                   "house=%s bridge=%s proto=%d: this bridge carries no TCP streams", t->h->cfg.id,
                   hs_qs(t->url), t->proto);
        hs_streams_tunnel_up(t->streams, t->proto);
    }
    /* Over rudp the protocol may be named by a second WELCOME (on_welcome_again): ask then. */
    if (t->proto >= GP_PROTO_L3 || !(t->tr->ops->flags & HS_TR_AUTHENTICATES))
        hs_l3_tunnel_up(t->l3, t->proto, t->tr, t->url);
}

/* Over rudp our protocol offer may reach the bridge after its WELCOME: the second WELCOME,
 * same epoch, names the protocol agreed. Anywhere else a WELCOME is a protocol error. */
static void on_welcome_again(hs_tunnel *t, const gp_frame *f) {
    uint8_t proto = f->u.welcome.proto;
    if (!(t->tr->ops->flags & HS_TR_AUTHENTICATES) || f->u.welcome.epoch != t->epoch ||
        proto < t->proto || proto > GP_PROTO_MAX) {
        hs_tn_protocol_error(t, "unexpected_frame", "WELCOME");
        return;
    }
    if (proto == t->proto)
        return;
    t->proto = proto;
    hs_log(HS_LOG_INFO, "protocol", "house=%s bridge=%s proto=%d (offer arrived after WELCOME)",
           t->h->cfg.id, hs_qs(t->url), t->proto);
    if (t->streams)
        hs_streams_tunnel_up(t->streams, t->proto);
    if (t->proto >= GP_PROTO_L3)
        hs_l3_tunnel_up(t->l3, t->proto, t->tr, t->url);
}

static void on_goaway(hs_tunnel *t, const gp_frame *f) {
    uint16_t code = f->u.goaway.code;
    const char *msg = hs_q(f->u.goaway.message.p, f->u.goaway.message.len);
    switch (code) {
    case GP_GOAWAY_DRAINING:
        hs_log(HS_LOG_INFO, "goaway", "code=draining bridge=%s msg=%s inflight=%zu", hs_qs(t->url),
               msg, t->nstreams);
        if (t->state != CS_LIVE) {
            /* Refused while connecting (the bridge is going away): the usual backoff, not an
             * immediate redial, or a house with one bridge hammers it until it is gone. */
            conn_close(t, "draining", BK_NORMAL);
            return;
        }
        /* Finish what is in flight, then move on; the close usually comes from the bridge. */
        t->draining = 1;
        t->drain_ms = hs_now_ms();
        t->next_backoff = BK_NOW;
        hs_tn_maybe_finish_drain(t);
        return;
    case GP_GOAWAY_AUTH: {
        /* The house is disabled (it proved its secret: the bridge may say so), or its proof
         * was refused (msg says which). */
        char fix[300];
        int disabled = gp_str_eq(f->u.goaway.message, GP_GOAWAY_MSG_DISABLED);
        if (disabled)
            snprintf(fix, sizeof fix,
                     "an operator disabled this house: ghostport house enable %s lets it in again",
                     t->h->cfg.id);
        else
            snprintf(fix, sizeof fix,
                     "check the id with ghostport house list and re-issue the secret with "
                     "ghostport house add %s --force",
                     t->h->cfg.id);
        hs_log(HS_LOG_ERROR, "auth_rejected", "code=auth house=%s bridge=%s msg=%s fix=%s",
               t->h->cfg.id, hs_qs(t->url), msg, hs_qs(fix));
        t->fail_logged = 1;
        conn_close(t, "auth_rejected", disabled ? BK_DISABLED : BK_LONG);
        return;
    }
    case GP_GOAWAY_RATE_LIMIT:
        hs_log(HS_LOG_ERROR, "auth_rate_limited", "house=%s bridge=%s msg=%s fix=%s", t->h->cfg.id,
               hs_qs(t->url), msg,
               hs_qs("the bridge refuses this id from this address for a while after failed "
                     "attempts (its --auth-burst, --auth-per-min): correct the secret (see the "
                     "auth_failed line) and the house gets in again"));
        t->fail_logged = 1;
        conn_close(t, "rate_limited", BK_LONG);
        return;
    case GP_GOAWAY_FENCED:
        /* Another connection of this id took over (a second house with our id?). */
        hs_log(HS_LOG_WARN, "fenced", "house=%s bridge=%s msg=%s", t->h->cfg.id, hs_qs(t->url),
               msg);
        hs_tn_event(t, HS_EV_FENCED, "fenced", 0);
        conn_close(t, "fenced", BK_LONG);
        return;
    default:
        if (code == GP_GOAWAY_PROTOCOL && t->tr && (t->tr->ops->flags & HS_TR_AUTHENTICATES) &&
            t->proto < GP_PROTO_STREAMS && !t->no_rudp_hello && f->u.goaway.message.len == 16 &&
            memcmp(f->u.goaway.message.p, "unexpected_frame", 16) == 0) {
            /* A rudp bridge of protocol 1 refusing the HELLO it got after its WELCOME: no
             * offer to it from now on (it carries requests only). */
            t->no_rudp_hello = 1;
            hs_log(HS_LOG_WARN, "streams_unsupported",
                   "house=%s bridge=%s: a protocol 1 bridge refused our offer; protocol 1 over "
                   "rudp from now on",
                   t->h->cfg.id, hs_qs(t->url));
            conn_close(t, "goaway", BK_NOW);
            return;
        }
        hs_log(HS_LOG_WARN, "goaway", "code=%u bridge=%s msg=%s", code, hs_qs(t->url), msg);
        conn_close(t, "goaway", BK_NORMAL);
        return;
    }
}

static void on_frame(hs_tunnel *t, const gp_frame *f) {
    t->last_rx_ms = hs_now_ms();
    if (f->type == GP_FRAME_GOAWAY) {
        on_goaway(t, f);
        return;
    }
    /* Before LIVE, each handshake state takes one frame type; any other is a protocol error. */
    static const struct {
        enum conn_state state;
        uint8_t type;
        void (*fn)(hs_tunnel *t, const gp_frame *f);
    } handshake[] = {{CS_HELLO, GP_FRAME_CHALLENGE, on_challenge},
                     {CS_AUTH, GP_FRAME_WELCOME, on_welcome}};
    for (size_t i = 0; i < sizeof handshake / sizeof handshake[0]; i++)
        if (t->state == handshake[i].state) {
            if (f->type == handshake[i].type)
                handshake[i].fn(t, f);
            else
                hs_tn_protocol_error(t, "unexpected_frame", gp_frame_type_name(f->type));
            return;
        }
    if (t->state != CS_LIVE)
        return;
    gp_frame r;
    switch (f->type) {
    case GP_FRAME_REQ_HEAD:
        hs_ex_on_req_head(t, f);
        return;
    case GP_FRAME_REQ_BODY:
        hs_ex_on_req_body(t, f);
        return;
    case GP_FRAME_CANCEL:
        hs_ex_on_cancel(t, f);
        return;
    case GP_FRAME_PING:
        gp_frame_pong(&r, f);
        send_ctl(t, &r);
        return;
    case GP_FRAME_PONG:
        /* Our PINGs carry the monotonic clock in µs (a LAN RTT is under a millisecond). */
        if (gp_frame_pong_rtt(f, uv_hrtime() / 1000, &t->rtt_us))
            hs_log(HS_LOG_DEBUG, "pong", "rtt_ms=%.3f", (double)t->rtt_us / 1000);
        return;
    case GP_FRAME_CREDIT: /* reserved in v1 */
        return;
    case GP_FRAME_S_OPEN:
    case GP_FRAME_S_ENTRY:
        on_stream_frame(t, f);
        return;
    case GP_FRAME_WELCOME:
        on_welcome_again(t, f);
        return;
    case GP_FRAME_L3_GRANT:
        if (t->l3 && t->proto >= GP_PROTO_L3)
            hs_l3_grant(t->l3, f);
        else
            hs_tn_protocol_error(t, "unexpected_frame", "L3_GRANT");
        return;
    default:
        hs_tn_protocol_error(t, "unexpected_frame", gp_frame_type_name(f->type));
    }
}

/* --- liveness tick ---------------------------------------------------------------------- */

static void on_tick(uv_timer_t *tm) {
    hs_tunnel *t = tm->data;
    uint64_t now = hs_now_ms();
    switch (t->state) {
    case CS_CONNECTING:
    case CS_HELLO:
    case CS_AUTH:
        if (now - t->dial_ms > HANDSHAKE_MS)
            conn_end_with(t, "handshake_timeout", BK_NORMAL, 1);
        return;
    case CS_LIVE:
        if (now - t->last_rx_ms > 3ull * t->ping_iv) {
            hs_log(HS_LOG_WARN, "bridge_silent", "bridge=%s silent_ms=%llu", hs_qs(t->url),
                   (unsigned long long)(now - t->last_rx_ms));
            conn_end_with(t, "ping_timeout", BK_NORMAL, 1);
            return;
        }
        if (t->draining && now - t->drain_ms > DRAIN_MS) {
            conn_close(t, "draining", BK_NOW);
            return;
        }
        if (now - t->last_ping_ms >= t->ping_iv) {
            gp_frame f;
            gp_frame_ping(&f, uv_hrtime() / 1000);
            t->last_ping_ms = now;
            send_ctl(t, &f);
            if (t->tr->ops->log_stats && hs_log_enabled(HS_LOG_DEBUG))
                t->tr->ops->log_stats(t->tr);
        }
        return;
    default:
        return;
    }
}

static void tick_start(hs_tunnel *t) {
    /* A quarter interval keeps the 3x-silence detection within 25% of its target. */
    uint64_t iv = t->state == CS_LIVE ? t->ping_iv / 4 : 250;
    if (iv < 20)
        iv = 20;
    if (iv > 1000)
        iv = 1000;
    uv_timer_start(&t->tick, on_tick, iv, iv);
}

/* --- start and stop --------------------------------------------------------------------- */

hs_tunnel *hs_tunnel_new(hs_house *h) {
    hs_tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->h = h;
    t->switch_to = t->probe_idx = -1;
    t->early_tail = &t->early;
    t->max_frame = GP_DEFAULT_MAX_FRAME;
    t->up = (hs_transport_up){.ud = t,
                              .on_dialing = up_dialing,
                              .on_open = up_open,
                              .on_bytes = up_bytes,
                              .on_frame = up_frame,
                              .on_heard = up_heard,
                              .on_error = up_error,
                              .on_reason = up_reason,
                              .on_closed = up_closed,
                              .on_cause = up_cause,
                              .pull = up_pull,
                              .pending = up_pending,
                              .sent = up_sent,
                              .on_probe = up_probe,
                              .on_dgram = up_dgram};
    return t;
}

int hs_tunnel_start(hs_tunnel *t) {
    uv_timer_init(t->h->loop, &t->retry);
    uv_timer_init(t->h->loop, &t->tick);
    uv_timer_init(t->h->loop, &t->probe);
    t->retry.data = t->tick.data = t->probe.data = t;
    t->timers = 1;
    int rudp = 0; /* its transport only where a bridge needs it: a house costs less */
    for (size_t i = 0; i < t->h->cfg.nbridges; i++)
        rudp |= strncmp(t->h->cfg.bridges[i], "rudp://", 7) == 0;
    t->rudp = rudp ? hs_tr_rudp_new(t->h, &t->up) : NULL;
    if (rudp && !t->rudp) {
        hs_log(HS_LOG_ERROR, "out_of_memory", NULL);
        return -1;
    }
    t->ws = hs_tr_ws_new(t->h, &t->up); /* logs why not */
    if (!t->ws)
        return -1;
    hs_config *c = &t->h->cfg;
    hs_streams_conf sc = {
        .services = c->tcp_services,
        .nservices = c->ntcp_services,
        .http = c->services,
        .nhttp = c->nservices,
        .http_default = c->upstream,
        .tls_ca_file = c->upstream_ca_file,
        .tls_insecure = c->upstream_insecure,
        .max_streams = c->max_streams > 0 ? (uint32_t)c->max_streams : HS_STREAMS_MAX_DEFAULT,
        .grace_ms =
            c->stream_grace > 0 ? (uint64_t)c->stream_grace * 1000u : HS_STREAMS_GRACE_DEFAULT_MS,
        .m = &t->h->m,
        .zs = t->h->zs,
        .wake = tcp_wake,
        .ud = t,
    };
    if (!(t->streams = hs_streams_new(t->h->loop, &sc))) {
        hs_log(HS_LOG_ERROR, "out_of_memory", NULL);
        return -1;
    }
    if (c->tun && *c->tun) {
        hs_l3_conf lc = {.dev = c->tun,
                         .rules = c->tun_rules,
                         .nrules = c->ntun_rules,
                         .routes = c->tun_routes,
                         .nroutes = c->ntun_routes,
                         .masquerade = c->tun_masquerade,
                         .mtu = (unsigned)c->tun_mtu};
        char err[512];
        if (!(t->l3 =
                  hs_l3_new(t->h->loop, &lc, &(hs_l3_ops){t, l3_send_frame}, err, sizeof err))) {
            hs_log(HS_LOG_ERROR, "tun_failed", "dev=%s reason=%s", hs_qs(c->tun), hs_qs(err));
            fprintf(stderr, "ghostport-house: --tun %s: %s\n", c->tun, err);
            return -1;
        }
    }
    t->bridge_idx = t->h->cfg.nbridges ? t->h->first_bridge % t->h->cfg.nbridges : 0;
    dial_or_wait(t);
    return 0;
}

void hs_tunnel_link(const hs_tunnel *t, double *rtt_ms, double *loss, uint64_t *retransmits,
                    uint64_t *fec_repaired) {
    *rtt_ms = *loss = 0;
    *retransmits = *fec_repaired = 0;
    int own_rtt = 0;
    hs_transport *all[2] = {t->ws, t->rudp};
    for (int i = 0; i < 2; i++) {
        if (!all[i] || !all[i]->ops->metrics)
            continue;
        double r, l;
        uint64_t x, f;
        all[i]->ops->metrics(all[i], &r, &l, &x, &f);
        *retransmits += x;
        *fec_repaired += f;
        if (l > *loss)
            *loss = l;
        if (t->state == CS_LIVE && all[i] == t->tr) {
            *rtt_ms = r;
            own_rtt = 1;
        }
    }
    if (!own_rtt)
        *rtt_ms = t->state == CS_LIVE ? (double)t->rtt_us / 1000 : 0;
}

struct hs_l3 *hs_tunnel_l3(const hs_tunnel *t) {
    return t->l3;
}

void hs_tunnel_stop(hs_tunnel *t) {
    t->gated = 0; /* a late hs_tunnel_dial does nothing */
    if (t->state != CS_IDLE) {
        snprintf(t->reason, sizeof t->reason, "shutdown");
        /* Now, not when the transport reports the close: upstream.c is stopped right after. */
        t->aborted = streams_abort_all(t, 0);
    } else {
        streams_abort_all(t, 0); /* between connections: only detached calls are left */
    }
    hs_streams_stop(t->streams);
    hs_l3_free(t->l3); /* the device and its masquerade rules go now; closed on the loop */
    t->l3 = NULL;
    if (t->timers) {
        uv_close((uv_handle_t *)&t->retry, NULL);
        uv_close((uv_handle_t *)&t->tick, NULL);
        uv_close((uv_handle_t *)&t->probe, NULL);
        t->timers = 0;
    }
    if (t->tr && t->tr->ops->flush_now && t->state >= CS_AUTH) {
        /* No close handshake of its own (rudp): say goodbye, so the bridge lets go now. */
        send_goaway(t, GP_GOAWAY_DRAINING, "house shutting down");
        t->tr->ops->flush_now(t->tr);
    }
    /* From inside the loop: each transport closes its connection (on_closed -> conn_ended,
     * which sees h->stopping) and its handles. */
    if (t->rudp)
        t->rudp->ops->stop(t->rudp);
    if (t->ws)
        t->ws->ops->stop(t->ws);
}

void hs_tunnel_final(hs_tunnel *t) {
    if (t->ws)
        t->ws->ops->stop(t->ws); /* nothing left once stopped: for a transport that needs it */
    streams_abort_all(t, 0);
    queue_drop(t, &t->ctl_head, &t->ctl_tail);
    early_drop(t);
}

void hs_tunnel_free(hs_tunnel *t) {
    if (!t)
        return;
    if (t->ws)
        t->ws->ops->free(t->ws);
    if (t->rudp)
        t->rudp->ops->free(t->rudp);
    gp_framer_free(t->fr);
    hs_zstate_free(t->zs);
    hs_streams_free(t->streams);
    free(t->buckets);
    free(t);
}
