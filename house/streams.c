/* streams.c — the house's TCP streams through Redis (streams.h, proto/STREAMS.md): service
 * connections on the loop, the contract's endpoint state machine (proto/stream.c) for
 * offsets, credit, half-close, reset and idle, and the frames of a stream produced when the
 * tunnel pulls them. I/O side; no tunnel here.
 *
 * A stream (hs_tcp) lives in a hash table by sid from its S_OPEN until its record expires:
 * first with a service connection (resolving, connecting, open), then as a record of how it
 * ended (dead). Service bytes go into chunks (64 KiB at most, filled up by later reads)
 * that stay until the opener acknowledged them; the opener's bytes go into uv_write
 * requests, acknowledged once written. Output is pulled: a ring of streams with something to
 * say, one frame of each in turn; within a stream, its S_OPENED first, then S_ATTACH, rst,
 * and data/fin/ack.
 *
 * An https:// HTTP upstream's connection runs TLS (tls.c) and its stream carries the
 * plaintext: the ciphertext read goes into the session through one buffer of the module, and
 * the plaintext out of it into the same chunks as a plain read's, as far as the opener's
 * window allows (what does not fit waits in the session, at most one read's worth, and the
 * socket is not read meanwhile); the opener's bytes go through the session into the uv_write
 * requests. The open succeeds once the handshake did; the upstream's close_notify, or its EOF
 * at a record's end, is its fin; our fin is our close_notify, then shutdown(SHUT_WR). */
#include "streams.h"

#include "compress.h"
#include "list.h"
#include "metrics.h"
#include "stream.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define NBUCKETS 64u
#define KEEP_RECORDS_EXTRA 256u /* records kept besides 4 x max-streams */
#define TIMER_MIN_MS 5u
#define SCRATCH (HS_STREAMS_CHUNK + 64u)
#define SMALLEST 4096u /* data bytes of an entry cut to fit a transport's room */
/* An https:// upstream's ciphertext is read, and the opener's bytes encrypted, about a TLS
 * record at a time: a session's memory BIOs keep the most they ever held (for the life of the
 * stream), which stays this small. */
#define TLS_RD 16384u
#define TLS_REC 16384u /* plaintext of a record */
#define TLS_REC_EXTRA                                                                              \
    256u /* and what encrypting it adds, at most (a guess: more is made room for) */
#define TLS_HINT "--upstream-ca-file names the CA that signed it"

typedef struct chunk {
    struct chunk *next;
    uint64_t off; /* offset of b[0] in the service->opener direction */
    size_t len, cap;
    uint8_t b[];
} chunk;

enum tstate { TS_RESOLVING, TS_CONNECTING, TS_TLS /* handshake */, TS_OPEN, TS_DEAD };

typedef struct hs_tcp hs_tcp;
struct hs_tcp {
    hs_streams *st;
    hs_tcp *hnext;         /* hash chain */
    hs_tcp *onext;         /* output ring */
    hs_tcp *dprev, *dnext; /* records, oldest first */
    int in_out, in_dead;
    char sid[GP_STREAM_ID_MAX + 1]; /* as received (1-64 bytes; may be refused) */
    size_t sidlen;
    char service[GP_STREAM_ID_MAX + 1];
    const hs_tcp_service *svc;
    uint32_t lane;
    enum tstate state;
    gp_stream g;
    uint64_t deadline_ms;   /* connect deadline */
    uint32_t timeout_ms;    /* the open's */
    uint64_t dead_until_ms; /* record expiry */
    uint64_t keep_ms;
    /* the outcome of the open (S_OPENED), 0 while connecting */
    uint16_t status;
    const char *error; /* static */
    char message[GP_STREAM_MESSAGE_MAX + 1];
    int opened_due, attach_due, rst_due, ack_force, rst_by_house, ever_open;
    int final_ack_due; /* a cleanly ended stream: our last ack again (it may have been lost) */
    char rst[GP_STREAM_REASON_MAX + 1];
    char rst_msg[GP_STREAM_MESSAGE_MAX + 1];
    /* the service connection */
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    uv_shutdown_t sreq;
    int tcp_init, tcp_closing, pending; /* pending: the handle and requests not called back */
    int reading, svc_eof, shut_done, resolving;
    hs_tls tls;   /* an https:// upstream's session (none: plain) */
    int sock_eof; /* TLS: the socket's EOF came (svc_eof once the session has given all) */
    /* service -> opener: bytes [g.snd_acked, read_end) in chunks */
    chunk *ch, *ct;
    uint64_t read_end;
    size_t chunk_bytes; /* allocated */
    /* opener -> service: writes in flight */
    size_t wbytes;
    uint64_t from_service, to_service;
};

typedef struct wreq {
    uv_write_t w;
    hs_tcp *s;
    size_t n; /* the opener's bytes it carries (TLS: fewer than its own; 0: TLS's own) */
    uint8_t b[];
} wreq;

struct hs_streams {
    uv_loop_t *loop;
    hs_streams_conf conf;
    hs_tcp *buckets[NBUCKETS];
    hs_tcp *out_head, *out_tail;
    hs_tcp *dead_head, *dead_tail;
    size_t nlive, nrec;
    int up, proto, stopping;
    uint64_t down_ms; /* when the tunnel went down (grace), valid while !up */
    uv_timer_t timer;
    int timer_open;
    uint64_t armed_at; /* 0: not armed */
    hs_zstate *zs_own;
    uint8_t *scratch; /* a pulled frame's data (SCRATCH bytes, with the first; a house of a load
                         test with thousands in a process never makes it) */
    char sid_out[GP_STREAM_ID_MAX + 1];
    char msg_out[GP_STREAM_MESSAGE_MAX + 1];
    char err_out[40];
    char rst_out[GP_STREAM_REASON_MAX + 1];
    /* The HTTP upstreams as services "http:<name>". */
    hs_tcp_service *http;
    size_t nhttp;
    /* https:// upstreams: the TLS context and the buffer their ciphertext is read into, both
     * made with the first such stream (most houses have none) */
    SSL_CTX *tls_ctx;
    uint8_t *tls_rd;
};

static uint64_t now_ms(const hs_streams *st) {
    return uv_now(st->loop);
}

static uint32_t fnv(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static hs_tcp *find(hs_streams *st, gp_str sid) {
    if (sid.len == 0 || sid.len > GP_STREAM_ID_MAX)
        return NULL;
    for (hs_tcp *s = st->buckets[fnv((const char *)sid.p, sid.len) % NBUCKETS]; s; s = s->hnext)
        if (s->sidlen == sid.len && memcmp(s->sid, sid.p, sid.len) == 0)
            return s;
    return NULL;
}

static const char *qsid(const hs_tcp *s) {
    return hs_q(s->sid, s->sidlen);
}

/* --- timer -------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Something is due at `when` (ms, uv_now's clock): the timer fires no later. */
static void arm(hs_streams *st, uint64_t when) {
    if (!st->timer_open || st->stopping)
        return;
    if (st->armed_at && st->armed_at <= when)
        return;
    uint64_t now = now_ms(st);
    uint64_t delay = when > now ? when - now : 0;
    if (delay < TIMER_MIN_MS)
        delay = TIMER_MIN_MS;
    st->armed_at = now + delay;
    uv_timer_start(&st->timer, on_timer, delay, 0);
}

/* --- output ------------------------------------------------------------------------------- */

static uint64_t buffered(const hs_tcp *s) {
    return s->read_end - s->g.snd_acked;
}

/* Every byte the opener sent us is in the service's socket: acknowledge now (STREAMS.md: a
 * reader that caught up with the key acks, so that the writer can trim). */
static int caught_up(const gp_stream *g) {
    return g->rcv_consumed == g->rcv_next;
}

/* Whether the stream has a frame to say now. */
static int out_due(const hs_tcp *s, uint64_t now) {
    if (s->opened_due || s->rst_due || s->final_ack_due)
        return 1;
    if (s->state != TS_OPEN)
        return 0;
    if (s->attach_due || s->ack_force)
        return 1;
    const gp_stream *g = &s->g;
    if (s->read_end > g->snd_next && gp_stream_can_send(g) > 0)
        return 1;
    if (gp_stream_fin_due(g) && g->snd_next == g->snd_fin_off)
        return 1;
    if (!g->snd_fin && s->svc_eof && g->snd_next == s->read_end)
        return 1;
    uint64_t ack;
    return gp_stream_ack_due(g, now, caught_up(g), &ack);
}

static void want_out(hs_tcp *s) {
    hs_streams *st = s->st;
    if (s->in_out || st->stopping || !out_due(s, now_ms(st)))
        return;
    GP_SLIST_APPEND(st->out_head, st->out_tail, s, onext);
    s->in_out = 1;
    if (st->up && st->conf.wake)
        st->conf.wake(st->conf.ud);
}

/* --- metrics and log ---------------------------------------------------------------------- */

static hs_metrics *M(hs_streams *st) {
    return st->conf.m;
}

static void gauge(hs_streams *st) {
    if (M(st))
        gp_metric_set(M(st)->streams_open, NULL, (double)st->nlive);
}

static void count_open(hs_streams *st, const char *outcome) {
    if (M(st))
        gp_metric_inc(M(st)->streams_opened, outcome);
}

static void count_reset(hs_streams *st, const char *reason) {
    if (M(st))
        gp_metric_inc(M(st)->stream_resets, reason);
}

static void count_bytes(hs_streams *st, const char *dir, size_t n) {
    if (M(st))
        gp_metric_add(M(st)->stream_bytes, dir, (double)n);
}

/* --- the end of a stream ------------------------------------------------------------------ */

static void free_chunks(hs_tcp *s) {
    for (chunk *c = s->ch, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    s->ch = s->ct = NULL;
    s->chunk_bytes = 0;
}

static void unlink_free(hs_tcp *s) {
    hs_streams *st = s->st;
    GP_CHAIN_REMOVE(st->buckets[fnv(s->sid, s->sidlen) % NBUCKETS], s, hnext);
    if (s->in_out)
        GP_SLIST_REMOVE(st->out_head, st->out_tail, s, onext);
    if (s->in_dead) {
        GP_LIST_UNLINK(st->dead_head, st->dead_tail, s, dprev, dnext);
        st->nrec--;
    }
    free_chunks(s);
    hs_tls_free(&s->tls);
    free(s);
}

/* A record goes once expired and nothing of the loop refers to it any more. */
static int maybe_free(hs_tcp *s, uint64_t now) {
    if (s->state != TS_DEAD || s->pending || s->opened_due || s->rst_due || s->final_ack_due)
        return 0;
    if (!s->st->stopping && now < s->dead_until_ms)
        return 0;
    unlink_free(s);
    return 1;
}

static void on_closed(uv_handle_t *h) {
    hs_tcp *s = h->data;
    s->pending--;
    maybe_free(s, now_ms(s->st));
}

/* Closes the service connection; reset: with SO_LINGER 0, so the service sees a reset. */
static void close_socket(hs_tcp *s, int reset) {
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->gai); /* its callback comes (canceled or not) */
    if (!s->tcp_init || s->tcp_closing)
        return;
    s->tcp_closing = 1;
    if (reset) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
    }
    if (s->reading)
        uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
    uv_close((uv_handle_t *)&s->tcp, on_closed);
}

/* Most records kept: the oldest that nothing refers to go first. */
static void trim_records(hs_streams *st) {
    size_t cap = 4u * st->conf.max_streams + KEEP_RECORDS_EXTRA;
    for (hs_tcp *s = st->dead_head, *n; s && st->nrec > cap; s = n) {
        n = s->dnext;
        if (!s->pending && !s->opened_due && !s->rst_due && !s->final_ack_due)
            unlink_free(s);
    }
}

/* The stream has no service connection any more (or never had one): it becomes a record. */
static void go_dead(hs_tcp *s, int reset) {
    hs_streams *st = s->st;
    if (s->state == TS_DEAD)
        return;
    close_socket(s, reset);
    hs_tls_free(&s->tls); /* nothing reads or writes through it any more */
    st->nlive--;
    gauge(st);
    s->state = TS_DEAD;
    s->attach_due = s->ack_force = 0;
    free_chunks(s);
    uint64_t now = now_ms(st);
    s->dead_until_ms = now + s->keep_ms;
    GP_LIST_APPEND(st->dead_head, st->dead_tail, s, dprev, dnext);
    s->in_dead = 1;
    st->nrec++;
    arm(st, s->dead_until_ms); /* trimmed when the next stream opens (not while walking them) */
}

/* The house ends the stream with an rst to the opener (reason of STREAMS.md). */
static void house_reset(hs_tcp *s, const char *reason, const char *message) {
    if (s->state == TS_DEAD)
        return;
    gp_stream_reset(&s->g, GP_SR_LOCAL);
    snprintf(s->rst, sizeof s->rst, "%s", reason);
    gp_stream_printable(s->rst_msg, sizeof s->rst_msg, message); /* the codec's rule */
    s->rst_due = s->rst_by_house = 1;
    hs_log(HS_LOG_INFO, "stream_reset",
           "sid=%s service=%s reason=%s by=house message=%s from_service=%llu to_service=%llu",
           qsid(s), hs_qs(s->service), reason, hs_qs(s->rst_msg),
           (unsigned long long)s->from_service, (unsigned long long)s->to_service);
    count_reset(s->st, reason);
    go_dead(s, 1);
    want_out(s);
}

/* The opener reset the stream: the service sees a reset too; nothing goes back. */
static void peer_reset(hs_tcp *s, const char *reason) {
    hs_log(HS_LOG_INFO, "stream_reset",
           "sid=%s service=%s reason=%s by=opener from_service=%llu to_service=%llu", qsid(s),
           hs_qs(s->service), hs_qs(reason), (unsigned long long)s->from_service,
           (unsigned long long)s->to_service);
    count_reset(s->st, "peer");
    go_dead(s, 1);
}

/* Both directions ended cleanly (fins delivered and acknowledged both ways). */
static void check_done(hs_tcp *s) {
    if (s->state != TS_OPEN || s->g.reset != GP_SR_NONE || !gp_stream_done(&s->g) || s->wbytes)
        return;
    hs_log(HS_LOG_INFO, "stream_close",
           "sid=%s service=%s reason=fin from_service=%llu to_service=%llu", qsid(s),
           hs_qs(s->service), (unsigned long long)s->from_service,
           (unsigned long long)s->to_service);
    go_dead(s, 0);
}

/* --- the open ----------------------------------------------------------------------------- */

static void set_outcome(hs_tcp *s, uint16_t status, const char *error, const char *message) {
    s->status = status;
    s->error = error;
    snprintf(s->message, sizeof s->message, "%s", message ? message : "");
    s->opened_due = 1;
    count_open(s->st, status == 200 ? "ok" : error);
    hs_log(status == 200 ? HS_LOG_INFO : HS_LOG_WARN, "stream_open",
           "sid=%s service=%s status=%u reason=%s message=%s", qsid(s), hs_qs(s->service), status,
           status == 200 ? "ok" : error, hs_qs(s->message));
}

static void fail_open(hs_tcp *s, const char *what, int err) {
    char m[sizeof s->message];
    if (err)
        snprintf(m, sizeof m, "connect to %s:%s (service %s): %s", s->svc->host, s->svc->port,
                 s->service, what ? what : uv_strerror(err));
    else
        snprintf(m, sizeof m, "connect to %s:%s (service %s): %s", s->svc->host, s->svc->port,
                 s->service, what);
    set_outcome(s, 502, "upstream_unreachable", m);
    go_dead(s, 0);
    want_out(s);
}

static void update_reading(hs_tcp *s);
static void maybe_shutdown(hs_tcp *s);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
static int tls_send(hs_tcp *s);

/* The service's connection is up (and its TLS handshake done): the open succeeds. */
static void open_ok(hs_tcp *s) {
    s->state = TS_OPEN;
    s->ever_open = 1;
    /* its keep-alive and idle clock from now: a scan while it was connecting (or in its TLS
     * handshake) armed the timer for the open's deadline only */
    arm(s->st, gp_stream_next_timer(&s->g));
    set_outcome(s, 200, "", "");
    update_reading(s);
    maybe_shutdown(s); /* the opener's fin may be in already */
    want_out(s);
}

/* The TLS session failed: before the open's outcome the open fails (502 with why), after
 * it the stream is reset. */
static void tls_failed(hs_tcp *s, const char *why) {
    if (s->state == TS_TLS)
        fail_open(s, why, 0);
    else
        house_reset(s, "refused", why);
}

static void tls_failed_session(hs_tcp *s) {
    char why[GP_STREAM_MESSAGE_MAX];
    hs_tls_why(&s->tls, "upstream", TLS_HINT, why, sizeof why);
    tls_failed(s, why);
}

/* The handshake as far as the upstream's bytes allow; complete, the open succeeds. */
static void tls_handshake(hs_tcp *s) {
    int r = hs_tls_handshake(&s->tls);
    int rc = tls_send(s); /* its next message, or the alert that tells the upstream why */
    if (r < 0) {
        tls_failed_session(s);
        return;
    }
    if (rc != 0) {
        fail_open(s, rc == GP_ERR_NOMEM ? "out of memory" : NULL, rc == GP_ERR_NOMEM ? 0 : rc);
        return;
    }
    if (r == 1)
        open_ok(s);
}

/* TCP is up to an https:// upstream: its TLS session starts (the ClientHello), the socket is
 * read for the handshake. */
static void tls_begin(hs_tcp *s) {
    hs_streams *st = s->st;
    char err[GP_STREAM_MESSAGE_MAX];
    if (!st->tls_ctx && !(st->tls_ctx = hs_tls_ctx_new(st->conf.tls_ca_file, err, sizeof err))) {
        fail_open(s, err, 0); /* the next open tries again */
        return;
    }
    if (!st->tls_rd && !(st->tls_rd = malloc(TLS_RD))) {
        fail_open(s, "out of memory", 0);
        return;
    }
    if (hs_tls_start(&s->tls, st->tls_ctx, s->svc->host, !st->conf.tls_insecure, err, sizeof err) !=
        0) {
        fail_open(s, strcmp(err, "out_of_memory") == 0 ? "out of memory" : err, 0);
        return;
    }
    s->state = TS_TLS;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc != 0) {
        fail_open(s, NULL, rc);
        return;
    }
    s->reading = 1;
    tls_handshake(s);
}

static void on_connect(uv_connect_t *req, int status) {
    hs_tcp *s = req->data;
    s->pending--;
    if (s->state != TS_CONNECTING) { /* timed out, reset or stopping meanwhile */
        maybe_free(s, now_ms(s->st));
        return;
    }
    if (status < 0) {
        fail_open(s, NULL, status);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    if (s->svc->tls)
        tls_begin(s);
    else
        open_ok(s);
}

static void connect_addr(hs_tcp *s, const struct sockaddr *sa) {
    int rc = uv_tcp_init(s->st->loop, &s->tcp);
    if (rc != 0) {
        fail_open(s, NULL, rc);
        return;
    }
    s->tcp_init = 1;
    s->pending++; /* the handle, until on_closed */
    s->tcp.data = s;
    s->creq.data = s;
    s->state = TS_CONNECTING;
    rc = uv_tcp_connect(&s->creq, &s->tcp, sa, on_connect);
    if (rc != 0) {
        fail_open(s, NULL, rc);
        return;
    }
    s->pending++;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    hs_tcp *s = req->data;
    s->pending--;
    s->resolving = 0;
    if (s->state != TS_RESOLVING) {
        uv_freeaddrinfo(res);
        maybe_free(s, now_ms(s->st));
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        fail_open(s, status < 0 ? NULL : "no address", status < 0 ? status : 0);
        return;
    }
    connect_addr(s, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void connect_start(hs_tcp *s) {
    struct sockaddr_storage ss;
    int port = atoi(s->svc->port);
    if (uv_ip4_addr(s->svc->host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(s->svc->host, port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_addr(s, (const struct sockaddr *)&ss);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->gai.data = s;
    s->state = TS_RESOLVING;
    int rc = uv_getaddrinfo(s->st->loop, &s->gai, on_resolved, s->svc->host, s->svc->port, &hints);
    if (rc != 0) {
        fail_open(s, NULL, rc);
        return;
    }
    s->pending++;
    s->resolving = 1;
}

static const hs_tcp_service *service_find(const hs_streams *st, gp_str name) {
    for (size_t i = 0; i < st->nhttp; i++)
        if (gp_str_eq(name, st->http[i].name))
            return &st->http[i];
    for (size_t i = 0; i < st->conf.nservices; i++)
        if (gp_str_eq(name, st->conf.services[i].name))
            return &st->conf.services[i];
    return NULL;
}

static void on_open(hs_streams *st, const gp_frame *f) {
    const __typeof__(f->u.s_open) *o = &f->u.s_open;
    hs_tcp *s = find(st, o->sid);
    if (s && s->state == TS_DEAD && !s->status && !s->pending && !s->in_out) {
        unlink_free(s); /* dropped before it had an outcome: a new attempt */
        s = NULL;
    }
    if (s) {
        /* Delivered again (a failover): the outcome it had, or will have once connected. */
        hs_log(HS_LOG_INFO, "stream_open_again", "sid=%s service=%s status=%u", qsid(s),
               hs_qs(s->service), s->status);
        if (s->status) {
            s->opened_due = 1;
            if (s->state == TS_DEAD && s->rst_by_house && s->ever_open)
                s->rst_due = 1; /* its end, again */
            want_out(s);
        }
        return;
    }
    if (o->sid.len == 0 || o->sid.len > GP_STREAM_ID_MAX)
        return; /* the decoder refuses these already */
    trim_records(st);
    s = calloc(1, sizeof *s);
    if (!s) {
        hs_log(HS_LOG_ERROR, "out_of_memory", "what=stream");
        return;
    }
    uint64_t now = now_ms(st);
    s->st = st;
    memcpy(s->sid, o->sid.p, o->sid.len);
    s->sidlen = o->sid.len;
    s->lane = 0x80000000u | (fnv(s->sid, s->sidlen) & 0x7fffffffu);
    size_t sl = o->service.len < GP_STREAM_ID_MAX ? o->service.len : GP_STREAM_ID_MAX;
    if (sl)
        memcpy(s->service, o->service.p, sl);
    uint32_t idle = o->idle_ms;
    uint64_t keep = st->conf.keep_closed_ms;
    if (!keep)
        keep = 2ull * idle > HS_STREAMS_KEEP_MIN_MS ? 2ull * idle : HS_STREAMS_KEEP_MIN_MS;
    s->keep_ms = keep;
    hs_tcp **b = &st->buckets[fnv(s->sid, s->sidlen) % NBUCKETS];
    s->hnext = *b;
    *b = s;
    st->nlive++; /* go_dead counts it out again */
    s->state = TS_RESOLVING;
    char m[160];
    const char *bad = NULL;
    if (!gp_name_ok(o->sid, GP_STREAM_ID_MAX))
        bad = "sid: 1-64 of [A-Za-z0-9._-]";
    else if (!gp_stream_service_ok(o->service))
        bad = "service: 1-64 of [A-Za-z0-9._-], or http:<name>";
    else if (o->window < GP_STREAM_WIN_MIN || o->window > GP_STREAM_WIN_MAX)
        snprintf(m, sizeof m, "window: %u is outside %u-%u", o->window, GP_STREAM_WIN_MIN,
                 GP_STREAM_WIN_MAX),
            bad = m;
    else if (o->idle_ms < GP_STREAM_IDLE_MIN || o->idle_ms > GP_STREAM_IDLE_MAX)
        snprintf(m, sizeof m, "idle_ms: %u is outside %u-%u", o->idle_ms, GP_STREAM_IDLE_MIN,
                 GP_STREAM_IDLE_MAX),
            bad = m;
    if (bad) {
        set_outcome(s, 400, "bad_request", bad);
        go_dead(s, 0);
        want_out(s);
        return;
    }
    s->svc = service_find(st, o->service);
    int http = strncmp(s->service, "http:", 5) == 0;
    if (!s->svc) {
        if (!http)
            snprintf(m, sizeof m, "service \"%s\" is not one of this house's --tcp-service names",
                     s->service);
        else if (s->service[5])
            snprintf(m, sizeof m, "this house has no HTTP upstream named \"%s\" (--service)",
                     s->service + 5);
        else
            snprintf(m, sizeof m, "this house has no default HTTP upstream (--upstream)");
        set_outcome(s, 403, "forbidden_service", m);
        go_dead(s, 0);
        want_out(s);
        return;
    }
    if (st->nlive > st->conf.max_streams) {
        snprintf(m, sizeof m, "the house is at its --max-streams %u", st->conf.max_streams);
        set_outcome(s, 503, "unavailable", m);
        go_dead(s, 0);
        want_out(s);
        return;
    }
    if (gp_stream_init(&s->g, now, o->window, o->idle_ms) != 0) { /* checked above */
        set_outcome(s, 400, "bad_request", "window or idle_ms out of bounds");
        go_dead(s, 0);
        want_out(s);
        return;
    }
    uint32_t timeout = o->timeout_ms ? o->timeout_ms : 30000u;
    if (timeout > GP_STREAM_IDLE_MAX)
        timeout = GP_STREAM_IDLE_MAX;
    s->timeout_ms = timeout;
    s->deadline_ms = now + timeout;
    arm(st, s->deadline_ms);
    arm(st, gp_stream_next_timer(&s->g));
    gauge(st);
    connect_start(s);
}

/* --- service -> opener ------------------------------------------------------------------ */

static uint64_t room_left(const hs_tcp *s) {
    uint64_t used = buffered(s);
    return s->g.snd_win > used ? s->g.snd_win - used : 0;
}

/* Where the service's next bytes go: the tail chunk's free space, or a new chunk, within
 * the opener's window. 0: none (the window is full, or no memory). */
static int read_space(hs_tcp *s, uint8_t **p, size_t *n) {
    uint64_t room = room_left(s);
    if (room == 0)
        return 0;
    chunk *t = s->ct;
    if (t && t->len < t->cap && t->off + t->len == s->read_end) {
        size_t k = t->cap - t->len;
        *p = t->b + t->len;
        *n = k < room ? k : (size_t)room;
        return 1;
    }
    size_t cap = room < HS_STREAMS_CHUNK ? (size_t)room : HS_STREAMS_CHUNK;
    chunk *c = malloc(sizeof *c + cap);
    if (!c)
        return 0;
    c->next = NULL;
    c->off = s->read_end;
    c->len = 0;
    c->cap = cap;
    GP_SLIST_APPEND(s->ch, s->ct, c, next);
    s->chunk_bytes += cap;
    *p = c->b;
    *n = cap;
    return 1;
}

/* n bytes of the service landed where read_space said. */
static void read_took(hs_tcp *s, size_t n) {
    s->ct->len += n;
    s->read_end += n;
    s->from_service += n;
    count_bytes(s->st, "from_service", n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    hs_tcp *s = h->data;
    *buf = uv_buf_init(NULL, 0);
    if (hs_tls_active(&s->tls)) {
        /* ciphertext: read while its plaintext has somewhere to go (the handshake's always).
         * Every read is drained at once as far as the window allows, so the session holds
         * at most one read's worth besides a partial record */
        if (s->state == TS_OPEN && room_left(s) == 0)
            return;
        *buf = uv_buf_init((char *)s->st->tls_rd, TLS_RD);
        return;
    }
    uint8_t *p;
    size_t n;
    if (read_space(s, &p, &n))
        *buf = uv_buf_init((char *)p, (unsigned)n);
}

static void tls_on_read(hs_tcp *s, ssize_t nread, const uv_buf_t *buf);

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
    hs_tcp *s = h->data;
    if (s->state != TS_OPEN && s->state != TS_TLS)
        return;
    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) { /* the window is full (or no memory): wait for acks */
        uv_read_stop(h);
        s->reading = 0;
        return;
    }
    if (hs_tls_active(&s->tls) && (nread > 0 || nread == UV_EOF)) {
        tls_on_read(s, nread, buf);
        return;
    }
    if (nread > 0) {
        read_took(s, (size_t)nread); /* on_alloc handed out the tail chunk's free space */
        update_reading(s);
        want_out(s);
        return;
    }
    if (nread == UV_EOF) {
        s->svc_eof = 1;
        update_reading(s);
        want_out(s); /* the fin, once every byte is written */
        return;
    }
    if (s->state == TS_TLS) {
        fail_open(s, NULL, (int)nread);
        return;
    }
    char m[160];
    snprintf(m, sizeof m, "service %s reset the connection: %s", s->service,
             uv_strerror((int)nread));
    house_reset(s, "refused", m);
}

/* --- TLS (an https:// upstream) ----------------------------------------------------------- */

/* The plaintext the session holds, into chunks while the opener's window has room; what
 * reading made the session say, to the socket; the upstream's close_notify, or its socket's
 * EOF once the session has given everything, as its fin (an EOF inside a record cut the
 * stream short: a reset). 0, or -1: the stream was reset. */
static int tls_drain(hs_tcp *s) {
    int got = 0, full = 0, r = HS_TLS_WANT;
    while (!s->svc_eof && hs_tls_buffered(&s->tls)) {
        uint8_t *p;
        size_t n;
        if (!read_space(s, &p, &n)) {
            full = 1; /* the window is full: the rest waits in the session */
            break;
        }
        r = hs_tls_read(&s->tls, p, n);
        if (r <= 0)
            break;
        read_took(s, (size_t)r);
        got = 1;
    }
    if (r == HS_TLS_FAIL) {
        tls_failed_session(s);
        return -1;
    }
    /* after our close_notify the session has nothing more to say that could go out */
    int rc = s->shut_done ? 0 : tls_send(s);
    if (rc != 0) {
        char m[160];
        snprintf(m, sizeof m, "writing to service %s: %s", s->service,
                 rc == GP_ERR_NOMEM ? "out of memory" : uv_strerror(rc));
        house_reset(s, "refused", m);
        return -1;
    }
    if (r == HS_TLS_EOF) {
        s->svc_eof = 1;
    } else if (!full && s->sock_eof && !s->svc_eof) {
        if (hs_tls_buffered(&s->tls)) {
            char m[160];
            snprintf(m, sizeof m, "service %s: TLS: the connection ended inside a record",
                     s->service);
            house_reset(s, "refused", m);
            return -1;
        }
        s->svc_eof = 1;
    }
    if (got || s->svc_eof)
        want_out(s);
    return 0;
}

static void tls_on_read(hs_tcp *s, ssize_t nread, const uv_buf_t *buf) {
    if (nread == UV_EOF) {
        if (s->state == TS_TLS) {
            tls_failed_session(s); /* "the connection closed" */
            return;
        }
        s->sock_eof = 1;
        update_reading(s); /* stops reading; the fin once the session has given all */
        return;
    }
    if (hs_tls_feed(&s->tls, buf->base, (size_t)nread) != 0) {
        tls_failed(s, "out of memory");
        return;
    }
    if (s->state == TS_TLS)
        tls_handshake(s);
    else
        update_reading(s);
}

/* Reads the service only while its bytes fit the opener's window (TLS: once the plaintext
 * the session holds is out, as far as it fits). */
static void update_reading(hs_tcp *s) {
    if (s->state != TS_OPEN || s->tcp_closing)
        return;
    if (hs_tls_active(&s->tls) && tls_drain(s) != 0)
        return;
    int want = !s->svc_eof && !s->sock_eof && buffered(s) < s->g.snd_win;
    if (want && !s->reading) {
        if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0)
            s->reading = 1;
    } else if (!want && s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = 0;
    }
}

/* The opener acknowledged up to g.snd_acked: those bytes go. */
static void drop_acked(hs_tcp *s) {
    while (s->ch && s->ch->off + s->ch->len <= s->g.snd_acked &&
           (s->ch->len == s->ch->cap || s->ch != s->ct)) {
        chunk *c = s->ch;
        GP_SLIST_SHIFT(s->ch, s->ct, next);
        s->chunk_bytes -= c->cap;
        free(c);
    }
    /* an emptied tail chunk that still has room is kept for the next read; if it is wholly
     * acknowledged and not being filled, it goes too */
    if (s->ch && s->ch == s->ct && s->ch->off + s->ch->len <= s->g.snd_acked && !s->reading) {
        s->chunk_bytes -= s->ch->cap;
        free(s->ch);
        s->ch = s->ct = NULL;
    }
}

/* --- opener -> service ------------------------------------------------------------------ */

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status; /* a service that cannot take our half-close notices the rest itself */
    hs_tcp *s = req->data;
    s->pending--;
    maybe_free(s, now_ms(s->st));
}

static void maybe_shutdown(hs_tcp *s) {
    gp_stream *g = &s->g;
    if (s->state != TS_OPEN || s->shut_done || !g->rcv_fin || g->rcv_consumed != g->rcv_fin_off ||
        s->wbytes)
        return;
    /* TLS: our close_notify before the socket's FIN; an upstream that cannot take it notices
     * the rest itself, as with the FIN */
    if (hs_tls_active(&s->tls) && hs_tls_close(&s->tls) == 0)
        (void)tls_send(s);
    s->shut_done = 1;
    s->sreq.data = s;
    if (uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, on_shutdown) == 0)
        s->pending++;
}

static void on_write(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    hs_tcp *s = w->s;
    size_t n = w->n;
    free(w);
    s->pending--;
    s->wbytes -= n;
    if (s->state == TS_DEAD) {
        maybe_free(s, now_ms(s->st));
        return;
    }
    if (status < 0 && s->state == TS_TLS) {
        fail_open(s, NULL, status);
        return;
    }
    if (status < 0) {
        char m[160];
        snprintf(m, sizeof m, "writing to service %s: %s", s->service, uv_strerror(status));
        house_reset(s, "refused", m);
        return;
    }
    if (n == 0)
        return;                              /* TLS's own bytes */
    if (gp_stream_consumed(&s->g, n) != 0) { /* cannot be: n was delivered */
        house_reset(s, "closed", "house: consumed past delivered");
        return;
    }
    s->to_service += n;
    count_bytes(s->st, "to_service", n);
    maybe_shutdown(s);
    want_out(s); /* an ack may be due */
    check_done(s);
}

/* w's len bytes to the socket; the write carries `plain` of the opener's bytes. 0, or
 * libuv's error (w freed). */
static int submit(hs_tcp *s, wreq *w, size_t len, size_t plain) {
    w->s = s;
    w->n = plain;
    uv_buf_t b = uv_buf_init((char *)w->b, (unsigned)len);
    int rc = uv_write(&w->w, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w);
        return rc;
    }
    s->pending++;
    s->wbytes += plain;
    return 0;
}

/* What the TLS session has for the socket (its own: handshake, alerts, close_notify), in one
 * write. 0, GP_ERR_NOMEM or libuv's error. */
static int tls_send(hs_tcp *s) {
    size_t len = hs_tls_pending(&s->tls);
    if (len == 0)
        return 0;
    wreq *w = malloc(sizeof *w + len);
    if (!w)
        return GP_ERR_NOMEM;
    return submit(s, w, hs_tls_pull(&s->tls, w->b, len), 0);
}

/* n of the opener's bytes through the TLS session, a record at a time, into one write. 0,
 * 1 (the session broke: why filled), GP_ERR_NOMEM or libuv's error. */
static int tls_deliver(hs_tcp *s, const uint8_t *p, size_t n, char *why, size_t whylen) {
    size_t cap = n + (n / TLS_REC + 1) * TLS_REC_EXTRA, len = 0;
    wreq *w = malloc(sizeof *w + cap);
    if (!w)
        return GP_ERR_NOMEM;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < TLS_REC ? n - off : TLS_REC;
        if (hs_tls_write(&s->tls, p + off, k) != 0) {
            free(w);
            hs_tls_why(&s->tls, "upstream", TLS_HINT, why, whylen);
            return 1;
        }
        off += k;
        size_t more = hs_tls_pending(&s->tls);
        if (len + more > cap) {
            wreq *g = realloc(w, sizeof *w + len + more);
            if (!g) {
                free(w);
                return GP_ERR_NOMEM;
            }
            w = g;
            cap = len + more;
        }
        len += hs_tls_pull(&s->tls, w->b + len, more);
    }
    return submit(s, w, len, n);
}

/* n of the opener's bytes to the service. 0, or -1 with why (the stream is to be reset). */
static int deliver(hs_tcp *s, const uint8_t *p, size_t n, char *why, size_t whylen) {
    int rc = GP_ERR_NOMEM;
    if (hs_tls_active(&s->tls)) {
        rc = tls_deliver(s, p, n, why, whylen);
        if (rc == 1)
            return -1;
    } else {
        wreq *w = malloc(sizeof *w + n);
        if (w) {
            memcpy(w->b, p, n);
            rc = submit(s, w, n, n);
        }
    }
    if (rc == 0)
        return 0;
    snprintf(why, whylen, "writing to service %s: %s", s->service,
             rc == GP_ERR_NOMEM ? "out of memory" : uv_strerror(rc));
    return -1;
}

static void on_entry(hs_streams *st, const gp_frame *f) {
    const __typeof__(f->u.s_entry) *x = &f->u.s_entry;
    hs_tcp *s = find(st, x->sid);
    if (!s || s->state == TS_DEAD || s->status != 200) {
        /* Not (or no longer) ours: an entry of a stream that ended, or before its open. */
        hs_log(HS_LOG_DEBUG, "stream_entry_ignored", "sid=%s state=%s", hs_q(x->sid.p, x->sid.len),
               s ? "ended_or_refused" : "unknown");
        if (s && s->state != TS_DEAD && !s->status && x->rst.len) /* an rst while connecting */
            peer_reset(s, "peer");
        return;
    }
    char err[96] = "";
    gp_stream_entry e;
    memset(&e, 0, sizeof e);
    e.has_off = !!(x->has & GP_SE_OFF);
    e.has_ack = !!(x->has & GP_SE_ACK);
    e.has_win = !!(x->has & GP_SE_WIN);
    e.fin = !!(x->has & GP_SE_FIN);
    e.off = x->off;
    e.ack = x->ack;
    e.win = x->win;
    e.message = x->message;
    e.data = x->data;
    uint8_t *plain = NULL;
    if (x->rst.len > GP_STREAM_REASON_MAX) {
        snprintf(err, sizeof err, "bad rst");
    } else if (x->rst.len) {
        memcpy(e.rst, x->rst.p, x->rst.len);
        e.rst[x->rst.len] = '\0';
        if (memchr(x->rst.p, '\0', x->rst.len))
            snprintf(err, sizeof err, "bad rst");
    }
    if (!err[0] && (f->flags & GP_FLAG_ZSTD)) {
        ssize_t dn = gp_decompressed_size(x->data.p, x->data.len);
        if (dn < 0 || (size_t)dn > GP_STREAM_DATA_MAX) {
            snprintf(err, sizeof err, "bad compressed data");
        } else if (!(plain = malloc(dn ? (size_t)dn : 1))) {
            house_reset(s, "closed", "house out of memory");
            return;
        } else {
            hs_zstate *z = hs_zstate_ready(st->conf.zs, &st->zs_own, 0);
            ssize_t m =
                z ? gp_decompress(hs_zstate_zctx(z), x->data.p, x->data.len, plain, (size_t)dn)
                  : GP_ERR_NOMEM;
            if (m < 0)
                snprintf(err, sizeof err, "bad compressed data");
            else
                e.data = (gp_str){plain, (size_t)m};
        }
    }
    if (!err[0]) {
        gp_stream_field fl[GP_STREAM_FIELDS_MAX];
        char scratch[96];
        if (gp_stream_entry_build(&e, fl, scratch, sizeof scratch) < 0)
            snprintf(err, sizeof err, "entry fields break STREAMS.md's rules");
    }
    if (err[0]) {
        free(plain);
        gp_stream_reset(&s->g, GP_SR_MALFORMED);
        house_reset(s, "malformed", err);
        return;
    }
    if (e.rst[0]) {
        free(plain);
        gp_stream_on_rst(&s->g, now_ms(st), e.rst);
        peer_reset(s, e.rst);
        return;
    }
    size_t skip = 0, take = 0;
    int rc = gp_stream_apply(&s->g, now_ms(st), &e, &skip, &take);
    if (rc < 0) {
        free(plain);
        const char *why = gp_stream_reason_name(s->g.reset);
        char m[160];
        snprintf(m, sizeof m, "entry at off %llu len %zu ack %llu: %s", (unsigned long long)e.off,
                 e.data.len, (unsigned long long)e.ack, why);
        house_reset(s, why, m);
        return;
    }
    if (take) {
        char m[GP_STREAM_MESSAGE_MAX];
        if (deliver(s, e.data.p + skip, take, m, sizeof m) != 0) {
            free(plain);
            house_reset(s, "refused", m);
            return;
        }
    }
    free(plain);
    if (e.has_ack || e.has_win) {
        drop_acked(s);
        update_reading(s);
    }
    maybe_shutdown(s);
    want_out(s);
    check_done(s);
}

/* --- pulling frames ----------------------------------------------------------------------- */

/* S_ENTRY header bytes besides sid, rst, message and data. */
#define ENTRY_FIXED (GP_FRAME_HEADER_LEN + 2u + 1u + 8u + 8u + 4u + 2u + 2u)

/* The control frame *f of a stream, owed while *due: 1 and no longer owed when it fits max,
 * else -1 (it stays owed until there is room). */
static int control_out(const gp_frame *f, size_t max, int *due) {
    if (gp_frame_size(f) > max)
        return -1;
    *due = 0;
    return 1;
}

/* One frame of s into *f: 1, 0 nothing due, -1 does not fit max. */
static int produce(hs_streams *st, hs_tcp *s, size_t max, gp_frame *f) {
    uint64_t now = now_ms(st);
    memcpy(st->sid_out, s->sid, s->sidlen);
    gp_str sid = {(const uint8_t *)st->sid_out, s->sidlen};
    if (s->opened_due) {
        gp_frame_init(f, GP_FRAME_S_OPENED, 0, 0);
        f->u.s_opened.sid = sid;
        f->u.s_opened.status = s->status;
        snprintf(st->err_out, sizeof st->err_out, "%s", s->error ? s->error : "");
        snprintf(st->msg_out, sizeof st->msg_out, "%s", s->message);
        f->u.s_opened.error = gp_str_c(st->err_out);
        f->u.s_opened.message = gp_str_c(st->msg_out);
        return control_out(f, max, &s->opened_due);
    }
    if (s->attach_due && s->state == TS_OPEN) {
        gp_frame_init(f, GP_FRAME_S_ATTACH, 0, 0);
        f->u.s_attach.sid = sid;
        f->u.s_attach.rcv_next = s->g.rcv_next;
        f->u.s_attach.snd_acked = s->g.snd_acked;
        f->u.s_attach.window = s->g.snd_win; /* the opener's, grown by its `win` if it did */
        f->u.s_attach.idle_ms = s->g.idle_ms;
        return control_out(f, max, &s->attach_due);
    }
    if (s->rst_due) {
        gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
        f->u.s_entry.sid = sid;
        snprintf(st->rst_out, sizeof st->rst_out, "%s", s->rst);
        f->u.s_entry.rst = gp_str_c(st->rst_out);
        snprintf(st->msg_out, sizeof st->msg_out, "%s", s->rst_msg);
        f->u.s_entry.message = gp_str_c(st->msg_out);
        return control_out(f, max, &s->rst_due);
    }
    if (s->final_ack_due) {
        gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
        f->u.s_entry.sid = sid;
        f->u.s_entry.has = GP_SE_ACK;
        f->u.s_entry.ack = s->g.rcv_consumed;
        return control_out(f, max, &s->final_ack_due);
    }
    if (s->state != TS_OPEN)
        return 0;
    gp_stream *g = &s->g;
    uint64_t ack;
    int ackd = gp_stream_ack_due(g, now, caught_up(g), &ack) || s->ack_force;
    ack = g->rcv_consumed;
    /* data: from the chunk holding snd_next, within the credit */
    size_t n = 0;
    const uint8_t *p = NULL;
    uint64_t credit = gp_stream_can_send(g);
    if (s->read_end > g->snd_next && credit > 0) {
        chunk *c = s->ch;
        while (c && c->off + c->len <= g->snd_next)
            c = c->next;
        if (c && c->off <= g->snd_next) {
            uint64_t in = c->off + c->len - g->snd_next;
            n = (size_t)(in < credit ? in : credit);
            if (n > HS_STREAMS_CHUNK)
                n = HS_STREAMS_CHUNK;
            size_t fixed = ENTRY_FIXED + s->sidlen;
            /* a smaller entry when the transport has less room, but no crumbs: below
             * SMALLEST (or the bytes there are) it waits for room */
            size_t least = n < SMALLEST ? n : SMALLEST;
            if (max < fixed + least)
                return -1;
            if (n > max - fixed)
                n = max - fixed;
            p = c->b + (g->snd_next - c->off);
        }
    }
    /* fin: on the entry that writes our last byte, or alone */
    int fin = 0;
    if (g->snd_fin) {
        fin = gp_stream_fin_due(g) && g->snd_next + n == g->snd_fin_off;
    } else if (s->svc_eof && g->snd_next + n == s->read_end) {
        fin = 1;
    }
    if (!n && !fin && !ackd)
        return 0;
    if ((n || fin) && g->rcv_consumed > g->rcv_acked)
        ackd = 1; /* an ack rides along for free */
    gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
    f->u.s_entry.sid = sid;
    if (n || fin) {
        f->u.s_entry.has |= GP_SE_OFF;
        f->u.s_entry.off = g->snd_next;
    }
    if (fin)
        f->u.s_entry.has |= GP_SE_FIN;
    if (ackd) {
        f->u.s_entry.has |= GP_SE_ACK;
        f->u.s_entry.ack = ack;
    }
    if (n && !st->scratch && !(st->scratch = malloc(SCRATCH)))
        return 0; /* out of memory: the bytes stay, tried again with the next pull */
    if (n) {
        memcpy(st->scratch, p, n);
        f->u.s_entry.data = (gp_str){st->scratch, n};
        hs_zstate *z = gp_compress_worthwhile(GP_STR_LIT(""), st->scratch, n)
                           ? hs_zstate_ready(st->conf.zs, &st->zs_own, 1)
                           : NULL;
        if (z) {
            size_t cap;
            uint8_t *zbuf = hs_zstate_buf(z, &cap);
            ssize_t zn = gp_compress(hs_zstate_zctx(z), st->scratch, n, zbuf, cap);
            if (zn > 0) {
                f->flags |= GP_FLAG_ZSTD;
                f->u.s_entry.data = (gp_str){zbuf, (size_t)zn};
            }
        }
    }
    if (gp_frame_size(f) > max)
        return -1;
    if (n && gp_stream_sent(g, now, n) != 0)
        return 0; /* cannot be: n is within the credit */
    if (fin) {
        if (!g->snd_fin && gp_stream_close(g) != 0)
            return 0;
        gp_stream_fin_written(g, now);
    }
    if (ackd) {
        gp_stream_ack_written(g, now, ack);
        s->ack_force = 0;
    }
    return 1;
}

int hs_streams_pull(hs_streams *st, size_t max, gp_frame *f, uint32_t *lane) {
    if (!st->up || st->stopping)
        return 0;
    while (st->out_head) {
        hs_tcp *s = st->out_head;
        int r = produce(st, s, max, f);
        if (r < 0)
            return 0; /* waits at the head for a bigger chance */
        GP_SLIST_SHIFT(st->out_head, st->out_tail, onext);
        s->in_out = 0;
        s->onext = NULL;
        if (r == 0) {
            maybe_free(s, now_ms(st));
            continue;
        }
        *lane = s->lane;
        want_out(s); /* to the back of the ring if it has more to say */
        check_done(s);
        if (!s->in_out && s->state == TS_DEAD)
            maybe_free(s, now_ms(st));
        return 1;
    }
    return 0;
}

int hs_streams_pending(const hs_streams *st) {
    return st->up && !st->stopping && st->out_head != NULL;
}

/* --- the tunnel --------------------------------------------------------------------------- */

static void each(hs_streams *st, void (*fn)(hs_tcp *s, void *ud), void *ud) {
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (hs_tcp *s = st->buckets[b], *n; s; s = n) {
            n = s->hnext;
            fn(s, ud);
        }
}

static void attach_one(hs_tcp *s, void *ud) {
    (void)ud;
    if (s->state == TS_OPEN) {
        s->attach_due = 1;
        s->ack_force = 1;
        (void)gp_stream_resume(&s->g);
        update_reading(s);
    } else if (s->state == TS_DEAD && s->rst_by_house && s->ever_open) {
        s->rst_due = 1; /* it may have been lost with the last connection */
    } else if (s->state == TS_DEAD && s->ever_open && s->g.reset == GP_SR_NONE) {
        s->final_ack_due = 1; /* ended cleanly: our ack of the opener's fin, again */
    }
    want_out(s);
}

void hs_streams_tunnel_up(hs_streams *st, int proto) {
    if (st->stopping)
        return;
    st->proto = proto;
    st->up = proto >= GP_PROTO_STREAMS;
    if (!st->up)
        return;
    hs_log(HS_LOG_INFO, "streams_attach", "open=%zu records=%zu", st->nlive, st->nrec);
    each(st, attach_one, NULL);
    if (st->out_head && st->conf.wake)
        st->conf.wake(st->conf.ud);
    arm(st, now_ms(st));
}

void hs_streams_tunnel_down(hs_streams *st) {
    if (!st->up && st->down_ms)
        return;
    st->up = 0;
    st->down_ms = now_ms(st);
    if (st->nlive)
        arm(st, st->down_ms + st->conf.grace_ms);
}

void hs_streams_on_frame(hs_streams *st, const gp_frame *f) {
    if (st->stopping)
        return;
    if (f->type == GP_FRAME_S_OPEN)
        on_open(st, f);
    else if (f->type == GP_FRAME_S_ENTRY)
        on_entry(st, f);
}

/* --- the clock ---------------------------------------------------------------------------- */

typedef struct scan {
    uint64_t now, next;
} scan;

static void next_at(scan *sc, uint64_t t) {
    if (t < sc->next)
        sc->next = t;
}

static void tick_one(hs_tcp *s, void *ud) {
    scan *sc = ud;
    hs_streams *st = s->st;
    uint64_t now = sc->now;
    if (s->state == TS_RESOLVING || s->state == TS_CONNECTING || s->state == TS_TLS) {
        if (now >= s->deadline_ms) {
            char m[64];
            snprintf(m, sizeof m, "%stimed out after %u ms",
                     s->state == TS_TLS ? "TLS handshake " : "", s->timeout_ms);
            fail_open(s, m, 0);
            return;
        }
        next_at(sc, s->deadline_ms);
    }
    if (s->state != TS_DEAD && !st->up) {
        uint64_t end = st->down_ms + st->conf.grace_ms;
        if (now >= end) {
            char m[96];
            snprintf(m, sizeof m, "the house had no bridge for %llu ms",
                     (unsigned long long)(now - st->down_ms));
            if (s->state == TS_OPEN) {
                house_reset(s, "grace", m);
            } else {
                /* no outcome given yet: the open is delivered again to the next bridge */
                go_dead(s, 1);
                s->dead_until_ms = now; /* nothing to remember */
            }
            return;
        }
        next_at(sc, end);
    }
    if (s->state == TS_OPEN) {
        if (gp_stream_tick(&s->g, now)) {
            char m[64];
            snprintf(m, sizeof m, "nothing from the opener for %u ms", s->g.idle_ms);
            house_reset(s, "idle", m);
            return;
        }
        next_at(sc, s->g.last_rx_ms + s->g.idle_ms);
        if (st->up) {
            want_out(s); /* a keep-alive ack may be due */
            uint64_t ka = s->g.last_ack_ms + s->g.idle_ms / 3;
            next_at(sc, ka > now ? ka : now + s->g.idle_ms / 3);
        }
    }
    if (s->state == TS_DEAD) {
        if (maybe_free(s, now))
            return;
        next_at(sc, s->dead_until_ms > now ? s->dead_until_ms : now + 1000);
    }
}

static void on_timer(uv_timer_t *t) {
    hs_streams *st = t->data;
    st->armed_at = 0;
    scan sc = {.now = now_ms(st), .next = UINT64_MAX};
    each(st, tick_one, &sc);
    if (sc.next != UINT64_MAX)
        arm(st, sc.next);
}

/* --- life --------------------------------------------------------------------------------- */

void hs_tcp_services_free(hs_tcp_service *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        GP_FREE_ALL(v[i].name, v[i].host, v[i].port);
    free(v);
}

static void http_free(hs_streams *st) {
    hs_tcp_services_free(st->http, st->nhttp);
    st->http = NULL;
    st->nhttp = 0;
}

/* One HTTP upstream as a service: "http:<name>" at the URL's host and port (80 without
 * one; https://: 443, and TLS to that host). 0, or -1 out of memory. A URL of another shape
 * (the config checks them) is left out: the open is then refused 403. */
static int http_add(hs_streams *st, const char *name, const char *url) {
    hs_tcp_service *v = &st->http[st->nhttp];
    memset(v, 0, sizeof *v);
    size_t nl = strlen(name);
    if (nl + 5 > GP_STREAM_ID_MAX || !(v->name = malloc(nl + 6)))
        return nl + 5 > GP_STREAM_ID_MAX ? 0 : -1;
    memcpy(v->name, "http:", 5);
    memcpy(v->name + 5, name, nl + 1);
    v->tls = strncmp(url, "https://", 8) == 0;
    const char *h = v->tls ? url + 8 : strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
    size_t hl = h ? strcspn(h, "/?#") : 0;
    const char *at = h ? memchr(h, '@', hl) : NULL;
    if (at) {
        hl -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    const char *port = v->tls ? "443" : "80";
    size_t pl = strlen(port);
    size_t hostl = hl;
    const char *host = h;
    if (h && hl && h[0] == '[') { /* [v6]:port */
        const char *e = memchr(h, ']', hl);
        if (!e) {
            free(v->name);
            return 0;
        }
        host = h + 1;
        hostl = (size_t)(e - host);
        if ((size_t)(e + 1 - h) < hl && e[1] == ':')
            port = e + 2, pl = hl - (size_t)(e + 2 - h);
    } else if (h) {
        const char *c = memchr(h, ':', hl);
        if (c) {
            hostl = (size_t)(c - h);
            port = c + 1, pl = hl - hostl - 1;
        }
    }
    int pok = pl > 0 && pl <= 5;
    for (size_t i = 0; pok && i < pl; i++)
        pok = port[i] >= '0' && port[i] <= '9';
    if (!h || hostl == 0 || !pok || atoi(port) < 1 || atoi(port) > 65535) {
        free(v->name);
        return 0;
    }
    v->host = strndup(host, hostl);
    v->port = strndup(port, pl);
    if (!v->host || !v->port) {
        free(v->name);
        free(v->host);
        free(v->port);
        return -1;
    }
    st->nhttp++;
    return 0;
}

static int http_init(hs_streams *st) {
    size_t n = st->conf.nhttp + 1;
    if (!(st->http = calloc(n, sizeof *st->http)))
        return -1;
    for (size_t i = 0; i < st->conf.nhttp; i++)
        if (st->conf.http[i].name && *st->conf.http[i].name && st->conf.http[i].url &&
            http_add(st, st->conf.http[i].name, st->conf.http[i].url) != 0)
            return -1;
    if (st->conf.http_default && *st->conf.http_default &&
        http_add(st, "", st->conf.http_default) != 0)
        return -1;
    return 0;
}

hs_streams *hs_streams_new(uv_loop_t *loop, const hs_streams_conf *conf) {
    hs_streams *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->conf = *conf;
    if (http_init(st) != 0) {
        http_free(st);
        free(st);
        return NULL;
    }
    st->loop = loop;
    st->conf = *conf;
    if (!st->conf.max_streams)
        st->conf.max_streams = HS_STREAMS_MAX_DEFAULT;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    st->timer_open = 1;
    gauge(st);
    if (M(st)) {
        gp_metric_add(M(st)->streams_opened, "ok", 0);
        gp_metric_add(M(st)->stream_bytes, "from_service", 0);
        gp_metric_add(M(st)->stream_bytes, "to_service", 0);
    }
    return st;
}

size_t hs_streams_open_count(const hs_streams *st) {
    return st->nlive;
}

size_t hs_streams_record_count(const hs_streams *st) {
    return st->nrec;
}

static void stop_one(hs_tcp *s, void *ud) {
    (void)ud;
    s->opened_due = s->rst_due = s->final_ack_due = 0;
    if (s->state != TS_DEAD) {
        hs_log(HS_LOG_INFO, "stream_close", "sid=%s service=%s reason=shutdown", qsid(s),
               hs_qs(s->service));
        go_dead(s, 1);
    }
}

void hs_streams_stop(hs_streams *st) {
    if (!st || st->stopping)
        return;
    st->stopping = 1;
    st->up = 0;
    each(st, stop_one, NULL);
    if (st->timer_open) {
        uv_close((uv_handle_t *)&st->timer, NULL);
        st->timer_open = 0;
    }
}

void hs_streams_free(hs_streams *st) {
    if (!st)
        return;
    for (unsigned b = 0; b < NBUCKETS; b++)
        while (st->buckets[b])
            unlink_free(st->buckets[b]);
    hs_zstate_free(st->zs_own);
    free(st->scratch);
    http_free(st);
    SSL_CTX_free(st->tls_ctx);
    free(st->tls_rd);
    free(st);
}
