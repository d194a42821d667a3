/* tunnel.c — the house's connection to a bridge: a libwebsockets client on our libuv loop,
 * the handshake of proto/PROTOCOL.md (HELLO -> CHALLENGE -> AUTH -> WELCOME), the request
 * streams the bridge opens, the round-robin send scheduler, liveness (PING/PONG) and the
 * reconnect policy (full-jitter exponential backoff, bridge rotation). I/O side; the codec
 * and the proofs are proto/'s pure functions.
 *
 * Memory is bounded by the send queue: every outgoing frame is encoded once into its own
 * buffer (with LWS_PRE headroom) on a per-stream queue; WRITEABLE writes one frame per call,
 * taking control frames first and then one frame from each stream in turn, so a 5 MiB
 * response never holds up a small one. Above HIGH_WATER queued bytes upstream.c pauses its
 * transfers; below LOW_WATER they resume. */
#include "../bridge/metrics.h"
#include "compress.h"
#include "house.h"
#include "rudp.h"

#include <libwebsockets.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HIGH_WATER (4u << 20)
#define LOW_WATER (1u << 20)
#define HANDSHAKE_MS 15000u /* dial + TLS + auth; the bridge allows 10 s for its part */
#define BACKOFF_BASE_MS 250u
#define STABLE_MS 60000u /* a connection up this long resets the backoff */
#define DRAIN_MS 10000u  /* GOAWAY DRAINING: longest wait for in-flight responses */
#define CLOSE_FLUSH_S 2  /* seconds lws may take to flush a GOAWAY before it kills */
#define DEFAULT_PING_MS 5000u
#define NBUCKETS 256u
#define SUBPROTOCOL "ghostport.v1"

typedef struct hs_out {
    struct hs_out *next;
    size_t len;
    uint8_t buf[]; /* LWS_PRE + frame */
} hs_out;

struct hs_stream {
    uint32_t id;
    hs_stream *hnext; /* hash chain */
    hs_stream *rnext; /* ready ring: streams with queued frames */
    int in_ring;
    hs_out *qh, *qt;
    hs_request req;
    uint64_t declared_len; /* REQ_HEAD body_len */
    size_t body_cap;
    int dispatched; /* request complete and handed to upstream.c (or answered) */
    int resp_fin;   /* the last response frame is queued */
    hs_xfer *up;
    uint64_t start_ms;
    uint64_t start_ns; /* uv_hrtime, for the duration histogram */
    uint16_t status;
    const char *error; /* static string for the log line */
    uint64_t resp_bytes;
    int replay;     /* answered from the cache */
    hs_centry *rec; /* the response being recorded for the cache */
    /* A stream whose connection dropped while its upstream call ran is detached: the call
     * goes on (no frame is sent) so that its response lands in the replay cache, and the
     * redelivered request is answered from there instead of running twice. */
    int detached;
    int rec_dropped;   /* the response outgrew what the cache keeps */
    hs_stream *dnext;  /* T.detached list */
    hs_stream *joined; /* this (new) stream waits for that detached call's response */
};

enum conn_state { CS_IDLE, CS_CONNECTING, CS_HELLO, CS_AUTH, CS_LIVE, CS_CLOSING };

/* What the next reconnect delay looks like. */
enum backoff_kind { BK_NORMAL, BK_LONG, BK_NOW };

static struct {
    struct lws_context *ctx;
    struct lws *wsi;
    enum conn_state state;
    gp_framer *fr;
    gp_zctx *zc;
    gp_frame *rxf; /* decode scratch: gp_frame is large */
    uint8_t *zbuf;
    size_t zcap;
    uint8_t hn[GP_NONCE_LEN];
    size_t bridge_idx;
    const char *url;
    uint64_t dial_ms, live_ms, last_rx_ms, last_ping_ms, drain_ms;
    uint64_t rtt_us; /* the last PING's round trip on this connection, 0: none yet */
    uint32_t ping_iv, max_frame;
    uint64_t epoch;
    unsigned attempt;
    enum backoff_kind next_backoff;
    char reason[160];
    int draining;
    int udp;       /* this connection is rudp:// (udp.c), not lws */
    int switch_to; /* the next dial goes to this bridge index (-1: the next one) */
    uint64_t probe_iv;
    int probe_idx; /* the preferred rudp:// bridge being probed while on wss (-1: none) */
    uv_timer_t retry, tick, probe;
    int timers; /* initialised, not yet closed */
    hs_stream *buckets[NBUCKETS];
    size_t nstreams;
    hs_stream *ring_head, *ring_tail;
    hs_out *ctl_head, *ctl_tail;
    size_t q_bytes;
    int congested;
    uint64_t requests;   /* served on this connection */
    size_t aborted;      /* streams detached/aborted ahead of conn_ended, for its log line */
    hs_stream *detached; /* streams whose upstream call outlived their connection */
} T;

static void conn_close(const char *reason, enum backoff_kind bk);
static void early_drop(void);

/* --- streams ---------------------------------------------------------------------------- */

static hs_stream *stream_find(uint32_t id) {
    for (hs_stream *s = T.buckets[id % NBUCKETS]; s; s = s->hnext)
        if (s->id == id)
            return s;
    return NULL;
}

static void ring_remove(hs_stream *s) {
    if (!s->in_ring)
        return;
    hs_stream **pp = &T.ring_head, *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->rnext;
    }
    if (*pp) {
        *pp = s->rnext;
        if (T.ring_tail == s)
            T.ring_tail = prev;
    }
    s->rnext = NULL;
    s->in_ring = 0;
}

static void ring_push(hs_stream *s) {
    if (s->in_ring)
        return;
    s->rnext = NULL;
    if (T.ring_tail)
        T.ring_tail->rnext = s;
    else
        T.ring_head = s;
    T.ring_tail = s;
    s->in_ring = 1;
}

static void queue_drop(hs_out **head, hs_out **tail) {
    for (hs_out *o = *head, *n; o; o = n) {
        n = o->next;
        T.q_bytes -= o->len;
        free(o);
    }
    *head = *tail = NULL;
}

static void request_clear(hs_request *r) {
    free(r->frame_id);
    free(r->method);
    free(r->path);
    free(r->service);
    if (r->headers)
        for (size_t i = 0; i < r->nheaders; i++) {
            free((void *)r->headers[i].name.p);
            free((void *)r->headers[i].value.p);
        }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static void log_request(const hs_stream *s, const char *outcome) {
    const hs_request *r = &s->req;
    hs_log(HS_LOG_INFO, "request",
           "id=%s stream=%u method=%s path=%s service=%s status=%u error=%s outcome=%s "
           "bytes=%llu ms=%llu",
           hs_qs(r->frame_id), s->id, hs_qs(r->method), hs_qs(r->path), hs_qs(r->service),
           s->status, s->error ? s->error : "", outcome, (unsigned long long)s->resp_bytes,
           (unsigned long long)(hs_now_ms() - s->start_ms));
    hs_metrics_request(outcome, s->start_ns, r->body_len, s->resp_bytes);
}

int hs_tunnel_live(void) {
    return T.state == CS_LIVE;
}

double hs_tunnel_ping_rtt_ms(void) {
    return T.state == CS_LIVE ? (double)T.rtt_us / 1000 : 0;
}

int hs_tunnel_udp(void) {
    return T.state == CS_LIVE && T.udp;
}

static void resolve_joined(hs_stream *d);

/* Unlinks and frees; the caller has dealt with s->up. */
static void stream_free(hs_stream *s) {
    if (s->detached) {
        hs_stream **dp = &T.detached;
        while (*dp && *dp != s)
            dp = &(*dp)->dnext;
        if (*dp)
            *dp = s->dnext;
        request_clear(&s->req);
        hs_cache_discard(s->rec);
        free(s);
        return;
    }
    hs_stream **pp = &T.buckets[s->id % NBUCKETS];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    ring_remove(s);
    queue_drop(&s->qh, &s->qt);
    request_clear(&s->req);
    hs_cache_discard(s->rec);
    T.nstreams--;
    free(s);
}

static void maybe_finish_drain(void);

/* A stream is done when the upstream has let go, its last frame is queued and written. */
static void stream_maybe_done(hs_stream *s) {
    if (s->up || !s->resp_fin || s->qh)
        return;
    stream_free(s);
    maybe_finish_drain();
}

/* The connection is gone: no frame is sent for its streams any more, and the bridge will
 * deliver the requests it still holds again once we are back. With `detach`, upstream calls
 * still running go on detached (their responses are remembered for that redelivery: the
 * upstream never runs a request twice); without it (shutdown) they are aborted, detached
 * ones included. Returns how many calls were detached or aborted. */
static void stream_detach(hs_stream *s) {
    hs_stream **pp = &T.buckets[s->id % NBUCKETS];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    T.nstreams--;
    ring_remove(s);
    queue_drop(&s->qh, &s->qt);
    s->detached = 1;
    s->dnext = T.detached;
    T.detached = s;
}

static size_t streams_abort_all(int detach) {
    size_t n = 0;
    for (unsigned b = 0; b < NBUCKETS; b++)
        while (T.buckets[b]) {
            hs_stream *s = T.buckets[b];
            if (s->up && detach) {
                stream_detach(s);
                n++;
                continue;
            }
            if (s->up) {
                hs_upstream_abort(s->up);
                s->up = NULL;
                n++;
            }
            stream_free(s);
        }
    T.ring_head = T.ring_tail = NULL;
    while (!detach && T.detached) {
        hs_stream *d = T.detached;
        if (d->up)
            hs_upstream_abort(d->up);
        d->up = NULL;
        stream_free(d);
    }
    return n;
}

static int same_request(const hs_request *a, const hs_request *b) {
    return strcmp(a->frame_id, b->frame_id) == 0 && strcmp(a->method, b->method) == 0 &&
           strcmp(a->path, b->path) == 0;
}

/* An upstream call still running for this request's frame id, method and path: detached
 * (its connection dropped) or on this connection (the same request delivered twice at once:
 * a producer's retry, or an XADD Redis kept although its reply was lost). */
static hs_stream *running_find(const hs_stream *self) {
    for (hs_stream *d = T.detached; d; d = d->dnext)
        if (d->up && same_request(&d->req, &self->req))
            return d;
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (hs_stream *s = T.buckets[b]; s; s = s->hnext)
            if (s != self && s->up && same_request(&s->req, &self->req))
                return s;
    return NULL;
}

static int has_joiners(const hs_stream *d) {
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (const hs_stream *w = T.buckets[b]; w; w = w->hnext)
            if (w->joined == d)
                return 1;
    return 0;
}

const hs_request *hs_stream_request(const hs_stream *s) {
    return &s->req;
}

int hs_tunnel_congested(void) {
    return T.congested;
}

/* --- sending ---------------------------------------------------------------------------- */

static void want_write(void) {
    if (T.udp) {
        if (T.state >= CS_AUTH)
            hs_udp_kick();
    } else if (T.wsi && T.state >= CS_HELLO) {
        lws_callback_on_writable(T.wsi);
    }
}

/* Encodes f onto the stream's queue (s NULL: the control queue, sent first). */
static int queue_frame(hs_stream *s, const gp_frame *f) {
    if (s && s->detached)
        return 0; /* its connection is gone: the response only goes to the cache */
    size_t n = gp_frame_size(f);
    if (n - GP_FRAME_HEADER_LEN > T.max_frame)
        return GP_ERR_TOO_LARGE;
    hs_out *o = malloc(sizeof *o + LWS_PRE + n);
    if (!o)
        return GP_ERR_NOMEM;
    ssize_t w = gp_frame_encode(f, o->buf + LWS_PRE, n);
    if (w < 0) {
        free(o);
        return (int)w;
    }
    o->len = (size_t)w;
    o->next = NULL;
    hs_out **head = s ? &s->qh : &T.ctl_head, **tail = s ? &s->qt : &T.ctl_tail;
    if (*tail)
        (*tail)->next = o;
    else
        *head = o;
    *tail = o;
    T.q_bytes += o->len;
    if (T.q_bytes > HIGH_WATER)
        T.congested = 1;
    if (s)
        ring_push(s);
    want_write();
    return 0;
}

static void send_ctl(const gp_frame *f) {
    int rc = queue_frame(NULL, f);
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=%s err=%s", gp_frame_type_name(f->type),
               gp_strerror(rc));
}

static void send_error_head(hs_stream *s, uint16_t status, const char *error, const char *message) {
    hs_stream_head(s, status, NULL, 0, error, message, 0, 1);
}

void hs_stream_head(hs_stream *s, uint16_t status, const gp_header *h, size_t nh, const char *error,
                    const char *message, uint64_t body_len, int fin) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_HEAD;
    f.flags = fin ? GP_FLAG_FIN : 0;
    f.stream = s->id;
    f.u.resp_head.status = status;
    f.u.resp_head.headers = (gp_header *)h;
    f.u.resp_head.nheaders = nh;
    f.u.resp_head.error = gp_str_c(error);
    f.u.resp_head.message = gp_str_c(message);
    f.u.resp_head.body_len = body_len;
    s->status = status;
    s->error = error && *error ? error : NULL;
    if (!s->replay && !s->error && !s->rec)
        s->rec = hs_cache_begin(s->req.frame_id, s->req.method, s->req.path, status, h, nh);
    int rc = queue_frame(s, &f);
    if (rc == GP_ERR_TOO_LARGE && nh) {
        /* Headers that do not fit a frame: keep the status, say what happened. */
        hs_log(HS_LOG_WARN, "response_headers_dropped", "stream=%u id=%s headers=%zu", s->id,
               hs_qs(s->req.frame_id), nh);
        f.u.resp_head.headers = NULL;
        f.u.resp_head.nheaders = 0;
        rc = queue_frame(s, &f);
    }
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=RESP_HEAD stream=%u err=%s", s->id,
               gp_strerror(rc));
    if (fin)
        s->resp_fin = 1;
}

void hs_stream_body(hs_stream *s, gp_str content_type, const uint8_t *p, size_t len, int fin) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_BODY;
    f.flags = fin ? GP_FLAG_FIN : 0;
    f.stream = s->id;
    f.u.body.data = (gp_str){p, len};
    if (gp_compress_worthwhile(content_type, p, len)) {
        ssize_t z = gp_compress(T.zc, p, len, T.zbuf, T.zcap);
        if (z > 0) {
            f.flags |= GP_FLAG_ZSTD;
            f.u.body.data = (gp_str){T.zbuf, (size_t)z};
        }
    }
    s->resp_bytes += len;
    if (s->rec && hs_cache_append(s->rec, p, len) != 0) {
        hs_cache_discard(s->rec); /* too big to remember */
        s->rec = NULL;
        s->rec_dropped = 1;
    }
    int rc = queue_frame(s, &f);
    if (rc != 0)
        hs_log(HS_LOG_ERROR, "frame_encode_failed", "type=RESP_BODY stream=%u err=%s", s->id,
               gp_strerror(rc));
    if (fin)
        s->resp_fin = 1;
}

void hs_stream_upstream_done(hs_stream *s, const char *outcome) {
    s->up = NULL;
    if (s->rec && strcmp(outcome, "ok") == 0) {
        hs_journal_commit(s->rec, hs_now_ms(), s->start_ms + s->req.timeout_ms);
    } else {
        hs_cache_discard(s->rec);
        if (s->rec_dropped) {
            /* It ran, but its response is not kept: remember that much, so that a delivery
             * of it again is told so instead of running the upstream call twice. */
            hs_centry *t = hs_cache_begin(s->req.frame_id, s->req.method, s->req.path, 0, NULL, 0);
            if (t)
                hs_journal_commit(t, hs_now_ms(), s->start_ms + s->req.timeout_ms);
        } else {
            hs_journal_forget(&s->req);
        }
    }
    s->rec = NULL;
    if (s->detached) {
        char o[64];
        snprintf(o, sizeof o, "detached_%s", outcome);
        log_request(s, o);
        resolve_joined(s);
        stream_free(s);
        return;
    }
    log_request(s, outcome);
    T.requests++;
    resolve_joined(s); /* s stays in the table meanwhile, so the connection cannot end */
    stream_maybe_done(s);
}

/* The next frame to send, taken off its queue, if it is at most max bytes: control frames
 * first, then one frame of each stream that has something to say, in turn (round robin: a
 * 5 MiB response never holds up a small one). *sp: its stream, NULL for control. */
static hs_out *next_out(hs_stream **sp, size_t max) {
    hs_out *o = NULL;
    hs_stream *s = NULL;
    if (T.ctl_head) {
        if (T.ctl_head->len > max)
            return NULL;
        o = T.ctl_head;
        T.ctl_head = o->next;
        if (!T.ctl_head)
            T.ctl_tail = NULL;
    } else if (T.state == CS_LIVE && T.ring_head) {
        s = T.ring_head;
        if (s->qh->len > max)
            return NULL;
        o = s->qh;
        s->qh = o->next;
        if (!s->qh)
            s->qt = NULL;
        /* Round robin: the stream goes to the back of the ring if it has more to say. */
        T.ring_head = s->rnext;
        if (!T.ring_head)
            T.ring_tail = NULL;
        s->in_ring = 0;
        s->rnext = NULL;
        if (s->qh)
            ring_push(s);
    }
    if (o)
        T.q_bytes -= o->len;
    *sp = s;
    return o;
}

/* A frame of s (or a control frame) has gone to the transport. */
static void sent_out(hs_stream *s) {
    if (s)
        stream_maybe_done(s);
    if (T.congested && T.q_bytes < LOW_WATER) {
        T.congested = 0;
        hs_upstream_resume();
    }
}

void hs_tunnel_fill(gp_rudp *ru) {
    hs_out *o;
    hs_stream *s;
    while (T.udp && (o = next_out(&s, gp_rudp_send_space(ru))) != NULL) {
        int rc = gp_rudp_send(ru, s ? s->id : 0, o->buf + LWS_PRE, o->len);
        free(o);
        if (rc != 0)
            hs_log(HS_LOG_ERROR, "rudp_send_failed", "err=%s", gp_strerror(rc));
        sent_out(s);
    }
}

static int on_writeable(struct lws *wsi) {
    hs_stream *s;
    hs_out *o = next_out(&s, SIZE_MAX);
    if (o) {
        int w = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_BINARY);
        int short_write = w < (int)o->len;
        free(o);
        if (short_write) {
            snprintf(T.reason, sizeof T.reason, "write_failed");
            return -1;
        }
    }
    sent_out(s);
    if (T.state == CS_CLOSING && !T.ctl_head) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    if (T.ctl_head || (T.state == CS_LIVE && T.ring_head))
        lws_callback_on_writable(wsi);
    return 0;
}

/* --- connection lifecycle --------------------------------------------------------------- */

static void dial(void);
static void tick_start(void);

static void on_retry(uv_timer_t *t) {
    (void)t;
    dial();
}

static uint64_t backoff_delay(enum backoff_kind bk) {
    if (bk == BK_NOW)
        return 0;
    uint32_t cap = (uint32_t)g_hs.cfg.reconnect_max_ms; /* --reconnect-max-ms */
    if (bk == BK_LONG) /* the bridge refused us: hammering it will not help */
        return cap / 2 + randombytes_uniform(cap / 2 + 1);
    unsigned a = T.attempt < 16 ? T.attempt : 16;
    uint64_t window = (uint64_t)BACKOFF_BASE_MS << a;
    if (window > cap)
        window = cap;
    T.attempt++;
    return randombytes_uniform((uint32_t)window + 1); /* full jitter */
}

/* The current connection is gone (connect error or close): clean up, plan the next dial. */
static void conn_ended(const char *why) {
    uint64_t now = hs_now_ms();
    int was_live = T.live_ms != 0;
    if (!T.reason[0])
        snprintf(T.reason, sizeof T.reason, "%s", why ? why : "closed");
    size_t detached = streams_abort_all(!g_hs.stopping) + T.aborted;
    T.aborted = 0;
    queue_drop(&T.ctl_head, &T.ctl_tail);
    T.congested = 0;
    T.wsi = NULL;
    T.udp = 0;
    early_drop();
    T.state = CS_IDLE;
    T.draining = 0;
    T.probe_idx = -1;
    uv_timer_stop(&T.tick);
    uv_timer_stop(&T.probe);
    if (was_live && now - T.live_ms >= STABLE_MS)
        T.attempt = 0;
    if (was_live || T.dial_ms)
        hs_log(HS_LOG_WARN, was_live ? "disconnected" : "connect_failed",
               "house=%s bridge=%s reason=%s up_ms=%llu detached=%zu", g_hs.cfg.id, hs_qs(T.url),
               hs_qs(T.reason), (unsigned long long)(was_live ? now - T.live_ms : 0), detached);
    T.live_ms = 0;
    if (g_hs.stopping)
        return;
    /* Several bridges: the next attempt goes to the next one (or back to rudp:// when a
     * probe found UDP open again). */
    T.bridge_idx = T.switch_to >= 0 ? (size_t)T.switch_to : (T.bridge_idx + 1) % g_hs.cfg.nbridges;
    T.switch_to = -1;
    uint64_t ms = backoff_delay(T.next_backoff);
    T.next_backoff = BK_NORMAL;
    hs_log(HS_LOG_INFO, "reconnect_in", "ms=%llu bridge=%s attempt=%u", (unsigned long long)ms,
           hs_qs(g_hs.cfg.bridges[T.bridge_idx]), T.attempt);
    uv_timer_start(&T.retry, on_retry, ms, 0);
}

/* Closes the connection; conn_ended() follows from lws. Frames queued on the control queue
 * (a GOAWAY) are flushed first when the socket is open. */
static void conn_close(const char *reason, enum backoff_kind bk) {
    if (T.state == CS_IDLE || T.state == CS_CLOSING || (!T.wsi && !T.udp))
        return;
    snprintf(T.reason, sizeof T.reason, "%s", reason);
    if (bk != BK_NORMAL)
        T.next_backoff = bk;
    int open = T.state >= CS_HELLO;
    T.state = CS_CLOSING;
    /* Nothing more goes out for the streams; their upstream calls stop now. */
    T.aborted += streams_abort_all(!g_hs.stopping);
    if (T.udp) {
        hs_udp_close(); /* flushes a GOAWAY, then hs_tunnel_udp_gone */
        return;
    }
    if (open) {
        lws_set_timeout(T.wsi, PENDING_TIMEOUT_USER_OK, CLOSE_FLUSH_S);
        lws_callback_on_writable(T.wsi);
    } else {
        /* Still connecting (only the tick gets here, outside any lws callback). lws 4.1
         * ignores LWS_TO_KILL_ASYNC on a connecting wsi, so kill it now. */
        lws_set_timeout(T.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void send_goaway(uint16_t code, const char *msg) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_GOAWAY;
    f.u.goaway.code = code;
    f.u.goaway.message = gp_str_c(msg);
    send_ctl(&f);
}

static void protocol_error(const char *why, const char *detail) {
    hs_log(HS_LOG_WARN, "protocol_error", "house=%s bridge=%s reason=%s detail=%s", g_hs.cfg.id,
           hs_qs(T.url), why, hs_qs(detail));
    send_goaway(GP_GOAWAY_PROTOCOL, why);
    conn_close(why, BK_NORMAL);
}

static void maybe_finish_drain(void) {
    if (T.draining && T.state == CS_LIVE && T.nstreams == 0)
        conn_close("draining", BK_NOW);
}

static void dial(void) {
    if (g_hs.stopping || T.state != CS_IDLE)
        return;
    const char *url = g_hs.cfg.bridges[T.bridge_idx];
    T.url = url;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", url);
    const char *prot = NULL, *ads = NULL, *path = NULL;
    int port = 0;
    if (lws_parse_uri(buf, &prot, &ads, &port, &path) || !ads || !*ads) {
        hs_log(HS_LOG_ERROR, "bad_bridge_url", "bridge=%s", hs_qs(url));
        T.dial_ms = 0;
        T.reason[0] = '\0';
        conn_ended("bad_url");
        return;
    }
    int tls = strcmp(prot, "wss") == 0;
    char fullpath[400], host[300];
    snprintf(fullpath, sizeof fullpath, "/%s", path ? path : "");
    snprintf(host, sizeof host, "%s:%d", ads, port);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = T.ctx;
    i.address = ads;
    i.port = port;
    i.path = fullpath;
    i.host = host;
    i.origin = host;
    i.protocol = SUBPROTOCOL;
    i.local_protocol_name = SUBPROTOCOL;
    if (tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (g_hs.cfg.insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }

    T.reason[0] = '\0';
    T.state = CS_CONNECTING;
    T.dial_ms = hs_now_ms();
    T.live_ms = 0;
    T.draining = 0;
    T.max_frame = GP_DEFAULT_MAX_FRAME;
    T.ping_iv = DEFAULT_PING_MS;
    gp_framer_free(T.fr);
    T.fr = gp_framer_new(GP_DEFAULT_MAX_FRAME);
    hs_log(HS_LOG_DEBUG, "dialing", "bridge=%s tls=%d", hs_qs(url), tls);
    tick_start(); /* enforces the handshake deadline */
    if (!T.fr) {
        conn_ended("out_of_memory");
        return;
    }
    T.wsi = NULL;
    if (strcmp(prot, "rudp") == 0) {
        /* The session handshake authenticates both ends: no HELLO/CHALLENGE/AUTH follows,
         * the bridge's WELCOME does (hs_tunnel_udp_up). */
        T.udp = 1;
        if (hs_udp_dial(ads, port) != 0)
            conn_ended("connect_failed");
        return;
    }
    struct lws *w = lws_client_connect_via_info(&i);
    if (T.state == CS_IDLE)
        return; /* lws already reported the failure through the callback */
    if (!w)
        conn_ended("connect_failed");
    else
        T.wsi = w;
}

/* --- rudp:// ------------------------------------------------------------------------------ */

void hs_tunnel_udp_up(void) {
    if (!T.udp || T.state != CS_CONNECTING)
        return;
    T.state = CS_AUTH; /* waiting for WELCOME */
    T.last_rx_ms = hs_now_ms();
}

void hs_tunnel_udp_heard(void) {
    if (T.udp)
        T.last_rx_ms = hs_now_ms();
}

void hs_tunnel_udp_gone(const char *why) {
    if (T.udp)
        conn_ended(why ? why : "closed");
}

static void on_frame(const gp_frame *f);
static void protocol_error(const char *why, const char *detail);

/* Lanes are independent: a request the bridge sent right after WELCOME can arrive before it
 * when the WELCOME's packet was lost. Such frames wait here (bounded) for the WELCOME. */
typedef struct early {
    struct early *next;
    size_t len;
    uint8_t b[];
} early;
static early *g_early, **g_early_tail = &g_early;
static size_t g_early_bytes;
#define EARLY_MAX (4u << 20)

static void early_drop(void) {
    while (g_early) {
        early *e = g_early;
        g_early = e->next;
        free(e);
    }
    g_early_tail = &g_early;
    g_early_bytes = 0;
}

static void udp_frame(const uint8_t *m, size_t n) {
    ssize_t k = gp_frame_decode(m, n, T.max_frame, T.rxf);
    if (k != (ssize_t)n) {
        protocol_error("bad_frame", gp_strerror(k < 0 ? (int)k : GP_ERR_MALFORMED));
        return;
    }
    int welcome = T.rxf->type == GP_FRAME_WELCOME;
    if (T.state == CS_AUTH && !welcome && T.rxf->type != GP_FRAME_GOAWAY) {
        early *e = g_early_bytes + n <= EARLY_MAX ? malloc(sizeof *e + n) : NULL;
        if (!e) {
            protocol_error("too_much_before_welcome", NULL);
            return;
        }
        e->next = NULL;
        e->len = n;
        memcpy(e->b, m, n);
        *g_early_tail = e;
        g_early_tail = &e->next;
        g_early_bytes += n;
        return;
    }
    on_frame(T.rxf);
    if (welcome && T.state == CS_LIVE) {
        early *e = g_early;
        g_early = NULL;
        g_early_tail = &g_early;
        g_early_bytes = 0;
        while (e) {
            early *next = e->next;
            if (T.state == CS_LIVE)
                udp_frame(e->b, e->len);
            free(e);
            e = next;
        }
    }
}

void hs_tunnel_udp_frame(const uint8_t *m, size_t n) {
    if (!T.udp || T.state < CS_AUTH || T.state == CS_CLOSING)
        return;
    udp_frame(m, n);
}

/* On wss while a rudp:// bridge is configured: see now and then whether UDP gets through
 * again, and go back to it when it does. The probe is a handshake alone; it does not touch
 * the live connection. */
static int first_rudp(void) {
    for (size_t i = 0; i < g_hs.cfg.nbridges; i++)
        if (strncmp(g_hs.cfg.bridges[i], "rudp://", 7) == 0)
            return (int)i;
    return -1;
}

static void on_probe(uv_timer_t *t) {
    (void)t;
    if (T.state != CS_LIVE || T.udp || T.probe_idx < 0)
        return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", g_hs.cfg.bridges[T.probe_idx]);
    const char *prot = NULL, *ads = NULL, *path = NULL;
    int port = 0;
    if (lws_parse_uri(buf, &prot, &ads, &port, &path) || hs_udp_probe(ads, port) != 0)
        hs_tunnel_probe_result(0);
}

static void probe_start(void) {
    T.probe_idx = T.udp ? -1 : first_rudp();
    if (T.probe_idx < 0)
        return;
    if (!T.probe_iv)
        T.probe_iv = (uint64_t)g_hs.cfg.rudp_probe_ms;
    uv_timer_start(&T.probe, on_probe, T.probe_iv, 0);
}

void hs_tunnel_probe_result(int ok) {
    if (T.state != CS_LIVE || T.udp || T.probe_idx < 0)
        return;
    if (!ok) {
        T.probe_iv = T.probe_iv * 2 > 300000 ? 300000 : T.probe_iv * 2;
        uv_timer_start(&T.probe, on_probe, T.probe_iv, 0);
        return;
    }
    hs_log(HS_LOG_INFO, "rudp_available", "house=%s bridge=%s from=%s", g_hs.cfg.id,
           hs_qs(g_hs.cfg.bridges[T.probe_idx]), hs_qs(T.url));
    T.probe_iv = 0;
    T.switch_to = T.probe_idx;
    /* Requests in flight here are delivered again over rudp (joined, never run twice). */
    send_goaway(GP_GOAWAY_DRAINING, "moving to rudp");
    conn_close("moving_to_rudp", BK_NOW);
}

/* --- handshake and incoming frames ------------------------------------------------------ */

static void on_established(void) {
    T.state = CS_HELLO;
    T.last_rx_ms = hs_now_ms();
    randombytes_buf(T.hn, sizeof T.hn);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_HELLO;
    f.u.hello.min_ver = GP_PROTO_VERSION;
    f.u.hello.max_ver = GP_PROTO_VERSION;
    f.u.hello.house_id = gp_str_c(g_hs.cfg.id);
    f.u.hello.nonce = T.hn;
    send_ctl(&f);
}

static void on_challenge(const gp_frame *f) {
    gp_str id = gp_str_c(g_hs.cfg.id);
    if (gp_auth_verify(GP_ROLE_BRIDGE, g_hs.secret, id, T.hn, f->u.challenge.nonce,
                       f->u.challenge.proof) != 0) {
        /* The bridge does not know our secret: an impostor, or our registry entry differs. */
        hs_log(HS_LOG_ERROR, "bridge_auth_failed", "house=%s bridge=%s", g_hs.cfg.id, hs_qs(T.url));
        conn_close("bridge_auth_failed", BK_LONG);
        return;
    }
    uint8_t proof[GP_PROOF_LEN];
    gp_auth_proof(GP_ROLE_HOUSE, g_hs.secret, id, T.hn, f->u.challenge.nonce, proof);
    gp_frame a;
    memset(&a, 0, sizeof a);
    a.type = GP_FRAME_AUTH;
    a.u.auth.proof = proof;
    send_ctl(&a);
    sodium_memzero(proof, sizeof proof);
    T.state = CS_AUTH;
}

static void on_welcome(const gp_frame *f) {
    uint64_t now = hs_now_ms();
    T.state = CS_LIVE;
    T.live_ms = now;
    T.last_ping_ms = now;
    T.rtt_us = 0;
    T.ping_iv = f->u.welcome.ping_interval_ms ? f->u.welcome.ping_interval_ms : DEFAULT_PING_MS;
    T.max_frame = f->u.welcome.max_frame ? f->u.welcome.max_frame : GP_DEFAULT_MAX_FRAME;
    T.epoch = f->u.welcome.epoch;
    T.requests = 0;
    tick_start();
    probe_start();
    gp_metric_inc(g_hm.connects, T.udp ? "rudp" : strncmp(T.url, "wss://", 6) == 0 ? "wss" : "ws");
    hs_log(HS_LOG_INFO, "connected", "house=%s bridge=%s bridge_id=%s epoch=%llu ping_ms=%u",
           g_hs.cfg.id, hs_qs(T.url), hs_q(f->u.welcome.bridge_id.p, f->u.welcome.bridge_id.len),
           (unsigned long long)T.epoch, T.ping_iv);
}

static void on_goaway(const gp_frame *f) {
    uint16_t code = f->u.goaway.code;
    const char *msg = hs_q(f->u.goaway.message.p, f->u.goaway.message.len);
    switch (code) {
    case GP_GOAWAY_DRAINING:
        hs_log(HS_LOG_INFO, "goaway", "code=draining bridge=%s msg=%s inflight=%zu", hs_qs(T.url),
               msg, T.nstreams);
        if (T.state != CS_LIVE) {
            /* Refused while connecting (the bridge is going away): the usual backoff, not an
             * immediate redial, or a house with one bridge hammers it until it is gone. */
            conn_close("draining", BK_NORMAL);
            return;
        }
        /* Finish what is in flight, then move on; the close usually comes from the bridge. */
        T.draining = 1;
        T.drain_ms = hs_now_ms();
        T.next_backoff = BK_NOW;
        maybe_finish_drain();
        return;
    case GP_GOAWAY_AUTH:
        /* Wrong secret, or the house is disabled or removed (msg says which). */
        hs_log(HS_LOG_ERROR, "auth_rejected", "code=auth house=%s bridge=%s msg=%s", g_hs.cfg.id,
               hs_qs(T.url), msg);
        conn_close("auth_rejected", BK_LONG);
        return;
    case GP_GOAWAY_RATE_LIMIT:
        hs_log(HS_LOG_ERROR, "auth_rate_limited", "house=%s bridge=%s msg=%s", g_hs.cfg.id,
               hs_qs(T.url), msg);
        conn_close("rate_limited", BK_LONG);
        return;
    case GP_GOAWAY_FENCED:
        /* Another connection of this id took over (a second house with our id?). */
        hs_log(HS_LOG_WARN, "fenced", "house=%s bridge=%s msg=%s", g_hs.cfg.id, hs_qs(T.url), msg);
        conn_close("fenced", BK_LONG);
        return;
    default:
        hs_log(HS_LOG_WARN, "goaway", "code=%u bridge=%s msg=%s", code, hs_qs(T.url), msg);
        conn_close("goaway", BK_NORMAL);
        return;
    }
}

static int valid_str(gp_str s) {
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] == '\0')
            return 0;
    return 1;
}

static char *dup_str(gp_str s) {
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.p, s.len);
        p[s.len] = '\0';
    }
    return p;
}

static void answer_again(hs_stream *s, const hs_centry *e);

/* This frame id (same method and path) already ran or is running: answer from memory, or
 * wait for that call. Returns 1 when s is taken care of that way. */
static int answered_or_joined(hs_stream *s) {
    const hs_request *r = &s->req;
    const hs_centry *e = hs_cache_find(r->frame_id, r->method, r->path, hs_now_ms());
    if (e) {
        answer_again(s, e);
        return 1;
    }
    hs_stream *d = running_find(s);
    if (!d)
        return 0;
    s->dispatched = 1;
    s->joined = d;
    hs_log(HS_LOG_INFO, "request_joined", "id=%s stream=%u running=%s", hs_qs(r->frame_id), s->id,
           d->detached ? "detached" : "live");
    return 1;
}

static void dispatch(hs_stream *s) {
    s->dispatched = 1;
    if (answered_or_joined(s))
        return;
    if (hs_journal_start(&s->req, s->start_ms) != 0) {
        send_error_head(s, 503, "unavailable", "house could not write its journal");
        log_request(s, "journal_failed");
        stream_maybe_done(s);
        return;
    }
    s->up = hs_upstream_start(s);
    if (!s->up) {
        hs_journal_forget(&s->req);
        log_request(s, "failed"); /* answered with an error head by upstream.c */
        stream_maybe_done(s);
    }
}

/* A redelivered request we already answered: send the remembered response again. */
static void replay(hs_stream *s, const hs_centry *e) {
    s->dispatched = 1;
    s->replay = 1;
    size_t nh;
    const gp_header *h = hs_cache_headers(e, &nh);
    gp_str body = hs_cache_body(e), ctype = {NULL, 0};
    for (size_t i = 0; i < nh; i++)
        if (h[i].name.len == 12 && strncasecmp((const char *)h[i].name.p, "content-type", 12) == 0)
            ctype = h[i].value;
    hs_stream_head(s, hs_cache_status(e), h, nh, "", "", body.len, body.len == 0);
    for (size_t off = 0; off < body.len;) {
        size_t n = body.len - off < GP_BODY_CHUNK ? body.len - off : GP_BODY_CHUNK;
        hs_stream_body(s, ctype, body.p + off, n, off + n == body.len);
        off += n;
    }
    log_request(s, "replayed");
    stream_maybe_done(s);
}

/* A request that already ran: answer with the remembered response. When there is none (e
 * NULL: the call failed; or a tombstone, status 0: the response outgrew the cache) running it
 * again would break the at-most-once promise, so the producer is told the truth instead:
 * 502 replay_unavailable. */
static void answer_again(hs_stream *s, const hs_centry *e) {
    if (e && hs_cache_status(e) != 0) {
        replay(s, e);
        return;
    }
    s->dispatched = 1;
    send_error_head(s, 502, "replay_unavailable",
                    "an earlier delivery of this request ran on the upstream but its response "
                    "could not be remembered");
    log_request(s, "replay_unavailable");
    stream_maybe_done(s);
}

/* The detached call `d` has ended: answer the streams that joined it. */
static void resolve_joined(hs_stream *d) {
    const hs_centry *e = hs_cache_find(d->req.frame_id, d->req.method, d->req.path, hs_now_ms());
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (hs_stream *w = T.buckets[b], *next; w; w = next) {
            next = w->hnext;
            if (w->joined != d)
                continue;
            w->joined = NULL;
            answer_again(w, e);
        }
}

static void on_req_head(const gp_frame *f) {
    if (f->stream == 0 || stream_find(f->stream)) {
        protocol_error("bad_stream_id", NULL);
        return;
    }
    hs_stream *s = calloc(1, sizeof *s);
    if (!s) {
        protocol_error("out_of_memory", NULL);
        return;
    }
    s->id = f->stream;
    s->start_ms = hs_now_ms();
    s->start_ns = uv_hrtime();
    s->hnext = T.buckets[s->id % NBUCKETS];
    T.buckets[s->id % NBUCKETS] = s;
    T.nstreams++;
    hs_request *r = &s->req;
    const __typeof__(f->u.req_head) *h = &f->u.req_head;
    r->frame_id = dup_str(h->frame_id);
    r->method = dup_str(h->method);
    r->path = dup_str(h->path);
    r->service = dup_str(h->service);
    r->timeout_ms = h->timeout_ms;
    s->declared_len = h->body_len;
    int oom = !r->frame_id || !r->method || !r->path || !r->service;
    if (h->nheaders && !oom) {
        r->headers = calloc(h->nheaders, sizeof *r->headers);
        oom = !r->headers;
        for (size_t i = 0; !oom && i < h->nheaders; i++) {
            char *n = dup_str(h->headers[i].name), *v = dup_str(h->headers[i].value);
            r->headers[i].name = (gp_str){(const uint8_t *)n, h->headers[i].name.len};
            r->headers[i].value = (gp_str){(const uint8_t *)v, h->headers[i].value.len};
            r->nheaders = i + 1;
            oom = !n || !v;
        }
    }
    if (oom) {
        s->dispatched = 1;
        send_error_head(s, 503, "unavailable", "house out of memory");
        stream_maybe_done(s);
        return;
    }
    /* NUL bytes cannot pass through C strings intact: refuse rather than truncate. */
    int ok = valid_str(h->method) && valid_str(h->path) && valid_str(h->service);
    for (size_t i = 0; ok && i < h->nheaders; i++)
        ok = valid_str(h->headers[i].name) && valid_str(h->headers[i].value);
    uint16_t status = 0;
    const char *err = NULL, *msg = NULL;
    char mbuf[128];
    if (!ok) {
        status = 400, err = "bad_request", msg = "NUL byte in method, path or headers";
    } else if (hs_upstream_check(r, &status, &err, &msg) == 0) {
        status = 0;
        if (s->declared_len != GP_LEN_UNKNOWN && s->declared_len > (uint64_t)g_hs.cfg.max_body) {
            snprintf(mbuf, sizeof mbuf, "request body of %llu bytes exceeds max-body %lld",
                     (unsigned long long)s->declared_len, g_hs.cfg.max_body);
            status = 413, err = "too_large", msg = mbuf;
        }
    }
    if (status) {
        /* Answer now; body frames that still arrive find no stream and are ignored. */
        s->dispatched = 1;
        send_error_head(s, status, err, msg);
        log_request(s, "rejected");
        stream_maybe_done(s);
        return;
    }
    if (f->flags & GP_FLAG_FIN)
        dispatch(s);
    else
        answered_or_joined(s); /* known already: the body that follows is ignored */
}

static void on_req_body(const gp_frame *f) {
    hs_stream *s = stream_find(f->stream);
    if (!s || s->dispatched)
        return; /* answered early (403/413/...) or cancelled: the rest is noise */
    hs_request *r = &s->req;
    gp_str d = f->u.body.data;
    size_t max = (size_t)g_hs.cfg.max_body, n = d.len;
    int zstd = f->flags & GP_FLAG_ZSTD;
    if (zstd) {
        ssize_t dn = gp_decompressed_size(d.p, d.len);
        if (dn < 0 || (size_t)dn > GP_BODY_CHUNK * 2u) {
            protocol_error("bad_compressed_body", gp_strerror(dn < 0 ? (int)dn : GP_ERR_TOO_LARGE));
            return;
        }
        n = (size_t)dn;
    }
    if (r->body_len + n > max) {
        char mbuf[128];
        snprintf(mbuf, sizeof mbuf, "request body exceeds max-body %lld", g_hs.cfg.max_body);
        s->dispatched = 1;
        send_error_head(s, 413, "too_large", mbuf);
        log_request(s, "rejected");
        stream_maybe_done(s);
        return;
    }
    if (r->body_len + n > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap : 65536;
        if (s->declared_len != GP_LEN_UNKNOWN && s->declared_len <= max && cap < s->declared_len)
            cap = (size_t)s->declared_len;
        while (cap < r->body_len + n)
            cap *= 2;
        uint8_t *b = realloc(r->body, cap);
        if (!b) {
            s->dispatched = 1;
            send_error_head(s, 503, "unavailable", "house out of memory");
            stream_maybe_done(s);
            return;
        }
        r->body = b;
        s->body_cap = cap;
    }
    if (zstd) {
        ssize_t m = gp_decompress(T.zc, d.p, d.len, r->body + r->body_len, n);
        if (m < 0) {
            protocol_error("bad_compressed_body", gp_strerror((int)m));
            return;
        }
        r->body_len += (size_t)m;
    } else if (n) {
        memcpy(r->body + r->body_len, d.p, n);
        r->body_len += n;
    }
    if (f->flags & GP_FLAG_FIN)
        dispatch(s);
}

static void on_cancel(const gp_frame *f) {
    hs_stream *s = stream_find(f->stream);
    if (!s)
        return;
    if (s->up && has_joiners(s)) {
        /* Another delivery of the same request waits for this call: it goes on detached. */
        log_request(s, "cancelled_call_kept_for_a_redelivery");
        stream_detach(s);
        maybe_finish_drain();
        return;
    }
    if (s->up) {
        hs_upstream_abort(s->up);
        s->up = NULL;
        hs_journal_forget(&s->req);
    }
    s->error = "cancelled";
    char outcome[160];
    snprintf(outcome, sizeof outcome, "cancelled reason=%s",
             hs_q(f->u.cancel.reason.p, f->u.cancel.reason.len));
    log_request(s, outcome);
    stream_free(s);
    maybe_finish_drain();
}

static void on_frame(const gp_frame *f) {
    T.last_rx_ms = hs_now_ms();
    if (f->type == GP_FRAME_GOAWAY) {
        on_goaway(f);
        return;
    }
    switch (T.state) {
    case CS_HELLO:
        if (f->type == GP_FRAME_CHALLENGE)
            on_challenge(f);
        else
            protocol_error("unexpected_frame", gp_frame_type_name(f->type));
        return;
    case CS_AUTH:
        if (f->type == GP_FRAME_WELCOME)
            on_welcome(f);
        else
            protocol_error("unexpected_frame", gp_frame_type_name(f->type));
        return;
    case CS_LIVE:
        break;
    default:
        return;
    }
    gp_frame r;
    switch (f->type) {
    case GP_FRAME_REQ_HEAD:
        on_req_head(f);
        return;
    case GP_FRAME_REQ_BODY:
        on_req_body(f);
        return;
    case GP_FRAME_CANCEL:
        on_cancel(f);
        return;
    case GP_FRAME_PING:
        memset(&r, 0, sizeof r);
        r.type = GP_FRAME_PONG;
        r.u.ping.opaque = f->u.ping.opaque;
        send_ctl(&r);
        return;
    case GP_FRAME_PONG: {
        /* Our PINGs carry the monotonic clock in µs (a LAN RTT is under a millisecond). */
        uint64_t now = uv_hrtime() / 1000;
        if (f->u.ping.opaque <= now) {
            T.rtt_us = now - f->u.ping.opaque;
            hs_log(HS_LOG_DEBUG, "pong", "rtt_ms=%.3f", (double)T.rtt_us / 1000);
        }
        return;
    }
    case GP_FRAME_CREDIT: /* reserved in v1 */
        return;
    default:
        protocol_error("unexpected_frame", gp_frame_type_name(f->type));
    }
}

static void on_receive(struct lws *wsi, const void *in, size_t len) {
    if (T.state == CS_CLOSING || T.state < CS_HELLO)
        return;
    if (!lws_frame_is_binary(wsi)) {
        protocol_error("text_message", NULL);
        return;
    }
    int rc = gp_framer_feed(T.fr, in, len);
    while (rc == 0 && T.state != CS_CLOSING && T.state != CS_IDLE) {
        rc = gp_framer_next(T.fr, T.rxf);
        if (rc <= 0)
            break;
        on_frame(T.rxf);
        rc = 0;
    }
    if (rc < 0 && T.state != CS_CLOSING && T.state != CS_IDLE)
        protocol_error(rc == GP_ERR_TOO_LARGE ? "frame_too_large" : "bad_frame", gp_strerror(rc));
}

/* --- liveness tick ---------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
    (void)t;
    uint64_t now = hs_now_ms();
    switch (T.state) {
    case CS_CONNECTING:
    case CS_HELLO:
    case CS_AUTH:
        if (now - T.dial_ms > HANDSHAKE_MS)
            conn_close("handshake_timeout", BK_NORMAL);
        return;
    case CS_LIVE:
        if (now - T.last_rx_ms > 3ull * T.ping_iv) {
            hs_log(HS_LOG_WARN, "bridge_silent", "bridge=%s silent_ms=%llu", hs_qs(T.url),
                   (unsigned long long)(now - T.last_rx_ms));
            conn_close("ping_timeout", BK_NORMAL);
            return;
        }
        if (T.draining && now - T.drain_ms > DRAIN_MS) {
            conn_close("draining", BK_NOW);
            return;
        }
        if (now - T.last_ping_ms >= T.ping_iv) {
            gp_frame f;
            memset(&f, 0, sizeof f);
            f.type = GP_FRAME_PING;
            f.u.ping.opaque = uv_hrtime() / 1000;
            T.last_ping_ms = now;
            send_ctl(&f);
            if (T.udp && hs_log_enabled(HS_LOG_DEBUG)) {
                char st[256];
                hs_udp_stats(st, sizeof st);
                hs_log(HS_LOG_DEBUG, "rudp_stats", "%s", st);
            }
        }
        return;
    default:
        return;
    }
}

static void tick_start(void) {
    /* A quarter interval keeps the 3x-silence detection within 25% of its target. */
    uint64_t iv = T.state == CS_LIVE ? T.ping_iv / 4 : 250;
    if (iv < 20)
        iv = 20;
    if (iv > 1000)
        iv = 1000;
    uv_timer_start(&T.tick, on_tick, iv, iv);
}

/* --- lws glue --------------------------------------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    /* A late callback of an older connection must not touch the current one. */
    int ours = T.state != CS_IDLE && !T.udp && (!T.wsi || wsi == T.wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (ours) {
            char why[160];
            snprintf(why, sizeof why, "%s", in ? (const char *)in : "connect_failed");
            if (!T.reason[0])
                snprintf(T.reason, sizeof T.reason, "%s", why);
            conn_ended(why);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (ours && T.state == CS_CONNECTING) {
            T.wsi = wsi;
            on_established();
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (ours)
            on_receive(wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return ours ? on_writeable(wsi) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (ours && !T.reason[0]) {
            unsigned code = len >= 2 ? ((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1] : 0;
            snprintf(T.reason, sizeof T.reason, "peer_closed code=%u", code);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (ours)
            conn_ended("closed");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* A wsi killed while still connecting (our handshake deadline) gets neither of the
         * above: this is the one callback every wsi ends with. */
        if (ours && wsi == T.wsi)
            conn_ended("closed");
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {SUBPROTOCOL, callback, 0, GP_BODY_CHUNK + 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    hs_log(level == LLL_ERR ? HS_LOG_WARN : HS_LOG_DEBUG, "lws", "msg=%s", hs_q(line, n));
}

int hs_tunnel_start(void) {
    uv_timer_init(g_hs.loop, &T.retry);
    uv_timer_init(g_hs.loop, &T.tick);
    uv_timer_init(g_hs.loop, &T.probe);
    T.timers = 1;
    T.switch_to = T.probe_idx = -1;
    hs_udp_init();
    T.zc = gp_zctx_new(GP_ZSTD_LEVEL);
    T.zcap = gp_compress_bound(GP_BODY_CHUNK);
    T.zbuf = malloc(T.zcap);
    T.rxf = malloc(sizeof *T.rxf);
    T.max_frame = GP_DEFAULT_MAX_FRAME;
    if (!T.zc || !T.zbuf || !T.rxf) {
        hs_log(HS_LOG_ERROR, "out_of_memory", NULL);
        return -1;
    }
    lws_set_log_level(LLL_ERR | (hs_log_enabled(HS_LOG_DEBUG) ? LLL_WARN | LLL_NOTICE : 0),
                      lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {g_hs.loop};
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.pcontext = &T.ctx;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = HANDSHAKE_MS / 1000 + 5; /* our own deadline fires first */
    if (g_hs.cfg.ca_file && *g_hs.cfg.ca_file)
        info.client_ssl_ca_filepath = g_hs.cfg.ca_file;
    T.ctx = lws_create_context(&info);
    if (!T.ctx) {
        hs_log(HS_LOG_ERROR, "lws_init_failed", NULL);
        return -1;
    }
    for (size_t i = 0; i < g_hs.cfg.nbridges; i++) {
        const char *u = g_hs.cfg.bridges[i];
        if (strncmp(u, "ws://", 5) == 0)
            hs_log(HS_LOG_WARN, "plain_ws", "bridge=%s note=\"no TLS: testing only\"", hs_qs(u));
    }
    if (g_hs.cfg.insecure)
        hs_log(HS_LOG_WARN, "tls_insecure",
               "note=\"bridge certificates are not verified: testing only\"");
    dial();
    return 0;
}

void hs_tunnel_stop(void) {
    if (T.state != CS_IDLE) {
        snprintf(T.reason, sizeof T.reason, "shutdown");
        /* Now, not when lws reports the close: upstream.c is stopped right after us. */
        T.aborted = streams_abort_all(0);
    } else {
        streams_abort_all(0); /* between connections: only detached calls are left */
    }
    if (T.timers) {
        uv_close((uv_handle_t *)&T.retry, NULL);
        uv_close((uv_handle_t *)&T.tick, NULL);
        uv_close((uv_handle_t *)&T.probe, NULL);
        T.timers = 0;
    }
    if (T.udp && T.state >= CS_AUTH) {
        /* No close handshake under UDP: say goodbye, so the bridge lets go now. */
        send_goaway(GP_GOAWAY_DRAINING, "house shutting down");
        hs_udp_flush_now();
    }
    hs_udp_stop();
    /* From inside the loop: lws closes the connection (CLIENT_CLOSED -> conn_ended, which
     * sees g_hs.stopping) and its own handles; it NULLs T.ctx through info.pcontext once
     * libuv has closed them. */
    if (T.ctx)
        lws_context_destroy(T.ctx);
}

void hs_tunnel_final(void) {
    if (T.ctx)
        lws_context_destroy(T.ctx);
    T.ctx = NULL;
    streams_abort_all(0);
    queue_drop(&T.ctl_head, &T.ctl_tail);
    hs_cache_clear();
    gp_framer_free(T.fr);
    gp_zctx_free(T.zc);
    free(T.zbuf);
    free(T.rxf);
    T.fr = NULL;
    T.zc = NULL;
    T.zbuf = NULL;
    T.rxf = NULL;
}
