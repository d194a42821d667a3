/* exchange.c — the request exchanges a bridge opens on the tunnel (REQ_HEAD, REQ_BODY,
 * CANCEL): each becomes an hs_stream, is checked (reqcheck.c via the executor's check), and is
 * dispatched to upstream.c once whole — unless the same frame id already ran (answered again
 * from cache.c's memory, or 502 replay_unavailable: at most once) or is running (the new
 * delivery joins that call and is answered when it ends). The connection itself, the send
 * queue and the stream table are tunnel.c's (tunnel_int.h). */
#include "buf.h"
#include "compress.h"
#include "tunnel_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void answer_again(hs_stream *s, const hs_centry *e);

void hs_ex_request_clear(hs_request *r) {
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

void hs_ex_log_request(const hs_stream *s, const char *outcome) {
    hs_tunnel *t = s->t;
    const hs_request *r = &s->req;
    hs_log(HS_LOG_INFO, "request",
           "id=%s stream=%u method=%s path=%s service=%s status=%u error=%s outcome=%s "
           "bytes=%llu ms=%llu",
           hs_qs(r->frame_id), s->id, hs_qs(r->method), hs_qs(r->path), hs_qs(r->service),
           s->status, s->error ? s->error : "", outcome, (unsigned long long)s->resp_bytes,
           (unsigned long long)(hs_now_ms() - s->start_ms));
    hs_metrics_request(t->h, outcome, s->start_ns, r->body_len, s->resp_bytes);
}

static int same_request(const hs_request *a, const hs_request *b) {
    return strcmp(a->frame_id, b->frame_id) == 0 && strcmp(a->method, b->method) == 0 &&
           strcmp(a->path, b->path) == 0;
}

/* An upstream call still running for this request's frame id, method and path: detached
 * (its connection dropped) or on this connection (the same request delivered twice at once:
 * a producer's retry, or an XADD Redis kept although its reply was lost). */
static hs_stream *running_find(const hs_stream *self) {
    hs_tunnel *t = self->t;
    for (hs_stream *d = t->detached; d; d = d->dnext)
        if (d->up && same_request(&d->req, &self->req))
            return d;
    for (unsigned b = 0; t->buckets && b < NBUCKETS; b++)
        for (hs_stream *s = t->buckets[b]; s; s = s->hnext)
            if (s != self && s->up && same_request(&s->req, &self->req))
                return s;
    return NULL;
}

static int has_joiners(const hs_stream *d) {
    const hs_tunnel *t = d->t;
    for (unsigned b = 0; t->buckets && b < NBUCKETS; b++)
        for (const hs_stream *w = t->buckets[b]; w; w = w->hnext)
            if (w->joined == d)
                return 1;
    return 0;
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

/* This frame id (same method and path) already ran or is running: answer from memory, or
 * wait for that call. Returns 1 when s is taken care of that way. */
static int answered_or_joined(hs_stream *s) {
    hs_tunnel *t = s->t;
    const hs_request *r = &s->req;
    if (t->h->no_replay)
        return 0;
    const hs_centry *e = hs_cache_find(t->h->cache, r->frame_id, r->method, r->path, hs_now_ms());
    if (e) {
        hs_tn_event(t, HS_EV_REPLAYED, r->frame_id, 0);
        answer_again(s, e);
        return 1;
    }
    hs_stream *d = running_find(s);
    if (!d)
        return 0;
    hs_tn_event(t, HS_EV_REPLAYED, r->frame_id, 0);
    s->dispatched = 1;
    s->joined = d;
    hs_log(HS_LOG_INFO, "request_joined", "id=%s stream=%u running=%s", hs_qs(r->frame_id), s->id,
           d->detached ? "detached" : "live");
    return 1;
}

static void dispatch(hs_stream *s) {
    hs_tunnel *t = s->t;
    s->dispatched = 1;
    if (answered_or_joined(s))
        return;
    if (hs_journal_start(t->h->journal, &s->req, s->start_ms) != 0) {
        hs_tn_send_error_head(s, 503, "unavailable", "house could not write its journal");
        hs_ex_log_request(s, "journal_failed");
        hs_tn_stream_maybe_done(s);
        return;
    }
    s->up = t->h->exec->start(t->h->exec_ud, s);
    if (!s->up) {
        hs_journal_forget(t->h->journal, &s->req);
        hs_ex_log_request(s, "failed"); /* answered with an error head by upstream.c */
        hs_tn_stream_maybe_done(s);
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
    hs_ex_log_request(s, "replayed");
    hs_tn_stream_maybe_done(s);
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
    hs_tn_send_error_head(
        s, 502, "replay_unavailable",
        "an earlier delivery of this request ran on the upstream but its response "
        "could not be remembered");
    hs_ex_log_request(s, "replay_unavailable");
    hs_tn_stream_maybe_done(s);
}

/* The detached call `d` has ended: answer the streams that joined it. */
void hs_ex_resolve_joined(hs_stream *d) {
    hs_tunnel *t = d->t;
    const hs_centry *e =
        hs_cache_find(t->h->cache, d->req.frame_id, d->req.method, d->req.path, hs_now_ms());
    for (unsigned b = 0; t->buckets && b < NBUCKETS; b++)
        for (hs_stream *w = t->buckets[b], *next; w; w = next) {
            next = w->hnext;
            if (w->joined != d)
                continue;
            w->joined = NULL;
            answer_again(w, e);
        }
}

void hs_ex_on_req_head(hs_tunnel *t, const gp_frame *f) {
    if (f->stream == 0 || hs_tn_stream_find(t, f->stream)) {
        hs_tn_protocol_error(t, "bad_stream_id", NULL);
        return;
    }
    if (!t->buckets)
        t->buckets = calloc(NBUCKETS, sizeof *t->buckets);
    hs_stream *s = t->buckets ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        hs_tn_protocol_error(t, "out_of_memory", NULL);
        return;
    }
    s->t = t;
    s->id = f->stream;
    s->start_ms = hs_now_ms();
    s->start_ns = uv_hrtime();
    s->hnext = t->buckets[s->id % NBUCKETS];
    t->buckets[s->id % NBUCKETS] = s;
    t->nstreams++;
    hs_request *r = &s->req;
    const __typeof__(f->u.req_head) *h = &f->u.req_head;
    r->frame_id = dup_str(h->frame_id);
    r->method = dup_str(h->method);
    r->path = dup_str(h->path);
    r->service = dup_str(h->service);
    r->timeout_ms = h->timeout_ms;
    s->declared_len = h->body_len;
    hs_tn_event(t, HS_EV_REQUEST, r->frame_id, 0);
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
        hs_tn_send_error_head(s, 503, "unavailable", "house out of memory");
        hs_tn_stream_maybe_done(s);
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
    } else if (t->h->exec->check(t->h->exec_ud, r, &status, &err, &msg) == 0) {
        status = 0;
        if (s->declared_len != GP_LEN_UNKNOWN && s->declared_len > (uint64_t)t->h->cfg.max_body) {
            snprintf(mbuf, sizeof mbuf, "request body of %llu bytes exceeds max-body %lld",
                     (unsigned long long)s->declared_len, t->h->cfg.max_body);
            status = 413, err = "too_large", msg = mbuf;
        }
    }
    if (status) {
        /* Answer now; body frames that still arrive find no stream and are ignored. */
        s->dispatched = 1;
        hs_tn_send_error_head(s, status, err, msg);
        hs_ex_log_request(s, "rejected");
        hs_tn_stream_maybe_done(s);
        return;
    }
    if (f->flags & GP_FLAG_FIN)
        dispatch(s);
    else
        answered_or_joined(s); /* known already: the body that follows is ignored */
}

void hs_ex_on_req_body(hs_tunnel *t, const gp_frame *f) {
    hs_stream *s = hs_tn_stream_find(t, f->stream);
    if (!s || s->dispatched)
        return; /* answered early (403/413/...) or cancelled: the rest is noise */
    hs_request *r = &s->req;
    gp_str d = f->u.body.data;
    size_t max = (size_t)t->h->cfg.max_body, n = d.len;
    int zstd = f->flags & GP_FLAG_ZSTD;
    if (zstd) {
        ssize_t dn = gp_decompressed_size(d.p, d.len);
        if (dn < 0 || (size_t)dn > GP_BODY_CHUNK * 2u) {
            hs_tn_protocol_error(t, "bad_compressed_body",
                                 gp_strerror(dn < 0 ? (int)dn : GP_ERR_TOO_LARGE));
            return;
        }
        n = (size_t)dn;
    }
    if (zstd && !hs_zstate_ready(t->h->zs, &t->zs, 0)) {
        s->dispatched = 1;
        hs_tn_send_error_head(s, 503, "unavailable", "house out of memory");
        hs_tn_stream_maybe_done(s);
        return;
    }
    if (r->body_len + n > max) {
        char mbuf[128];
        snprintf(mbuf, sizeof mbuf, "request body exceeds max-body %lld", t->h->cfg.max_body);
        s->dispatched = 1;
        hs_tn_send_error_head(s, 413, "too_large", mbuf);
        hs_ex_log_request(s, "rejected");
        hs_tn_stream_maybe_done(s);
        return;
    }
    /* room from the declared length when it is within bounds, else doubling from 64 KiB */
    size_t first = 65536;
    if (s->declared_len != GP_LEN_UNKNOWN && s->declared_len <= max && first < s->declared_len)
        first = (size_t)s->declared_len;
    if (gp_grow(&r->body, &s->body_cap, r->body_len + n, first, 1) != 0) {
        s->dispatched = 1;
        hs_tn_send_error_head(s, 503, "unavailable", "house out of memory");
        hs_tn_stream_maybe_done(s);
        return;
    }
    if (zstd) {
        ssize_t m = gp_decompress(hs_zstate_zctx(hs_zstate_ready(t->h->zs, &t->zs, 0)), d.p, d.len,
                                  r->body + r->body_len, n);
        if (m < 0) {
            hs_tn_protocol_error(t, "bad_compressed_body", gp_strerror((int)m));
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

void hs_ex_on_cancel(hs_tunnel *t, const gp_frame *f) {
    hs_stream *s = hs_tn_stream_find(t, f->stream);
    if (!s)
        return;
    hs_tn_event(t, HS_EV_CANCELLED, s->req.frame_id, 0);
    if (s->up && has_joiners(s)) {
        /* Another delivery of the same request waits for this call: it goes on detached. */
        hs_ex_log_request(s, "cancelled_call_kept_for_a_redelivery");
        hs_tn_stream_detach(s);
        hs_tn_maybe_finish_drain(t);
        return;
    }
    if (s->up) {
        t->h->exec->abort(t->h->exec_ud, s->up);
        s->up = NULL;
        hs_journal_forget(t->h->journal, &s->req);
    }
    s->error = "cancelled";
    char outcome[160];
    snprintf(outcome, sizeof outcome, "cancelled reason=%s",
             hs_q(f->u.cancel.reason.p, f->u.cancel.reason.len));
    hs_ex_log_request(s, outcome);
    hs_tn_stream_free(s);
    hs_tn_maybe_finish_drain(t);
}
