/* streams_svc.c — the service side of the house's TCP streams (streams.h, proto/STREAMS.md):
 * a stream's connection to its service on the loop. streams.c has the rest of the module (the
 * table of streams, the contract's endpoint state, records, the frames in and out, the clock);
 * the two share streams_int.h.
 *
 * The connect: resolve (unless the host is an address), TCP, and for an https:// upstream the
 * TLS handshake; the open succeeds once that is done (S_OPENED 200) and fails with a 502 if
 * any step fails (the open's deadline is streams.c's clock). Then the service's bytes are read
 * into chunks (64 KiB at most, filled up by later reads) only while they fit the opener's
 * window, and stay there until the opener acknowledged them (streams.c makes the entries of
 * them); the opener's bytes go into uv_write requests, acknowledged once written; the
 * opener's fin, once all of it is written, is our shutdown(SHUT_WR).
 *
 * An https:// HTTP upstream's connection runs TLS (tls.c) and its stream carries the
 * plaintext: the ciphertext read goes into the session through one buffer of the module, and
 * the plaintext out of it into the same chunks as a plain read's, as far as the opener's
 * window allows (what does not fit waits in the session, at most one read's worth, and the
 * socket is not read meanwhile); the opener's bytes go through the session into the uv_write
 * requests. The upstream's close_notify, or its EOF at a record's end, is its fin; our fin is
 * our close_notify, then shutdown(SHUT_WR). */
#include "streams_int.h"

#include "list.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An https:// upstream's ciphertext is read, and the opener's bytes encrypted, about a TLS
 * record at a time: a session's memory BIOs keep the most they ever held (for the life of the
 * stream), which stays this small. */
#define TLS_RD 16384u
#define TLS_REC 16384u /* plaintext of a record */
#define TLS_REC_EXTRA                                                                              \
    256u /* and what encrypting it adds, at most (a guess: more is made room for) */
#define TLS_HINT "--upstream-ca-file names the CA that signed it"

/* A write to the service socket. */
typedef struct wreq {
    uv_write_t w;
    hs_tcp *s;
    size_t n; /* the opener's bytes it carries (TLS: fewer than its own; 0: TLS's own) */
    uint8_t b[];
} wreq;

/* --- the connection's end ----------------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
    hs_tcp *s = h->data;
    s->pending--;
    hs_st_maybe_free(s, hs_st_now_ms(s->st));
}

/* Closes the service connection; reset: with SO_LINGER 0, so the service sees a reset. */
void hs_svc_close(hs_tcp *s, int reset) {
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

/* --- the connect -------------------------------------------------------------------------- */

void hs_svc_fail_open(hs_tcp *s, const char *what, int err) {
    char m[sizeof s->message];
    if (err)
        snprintf(m, sizeof m, "connect to %s:%s (service %s): %s", s->svc->host, s->svc->port,
                 s->service, what ? what : uv_strerror(err));
    else
        snprintf(m, sizeof m, "connect to %s:%s (service %s): %s", s->svc->host, s->svc->port,
                 s->service, what);
    hs_st_set_outcome(s, 502, "upstream_unreachable", m);
    hs_st_go_dead(s, 0);
    hs_st_want_out(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
static int tls_send(hs_tcp *s);

/* The service's connection is up (and its TLS handshake done): the open succeeds. */
static void open_ok(hs_tcp *s) {
    s->state = TS_OPEN;
    s->ever_open = 1;
    /* its keep-alive and idle clock from now: a scan while it was connecting (or in its TLS
     * handshake) armed the timer for the open's deadline only */
    hs_st_arm(s->st, gp_stream_next_timer(&s->g));
    hs_st_set_outcome(s, 200, "", "");
    hs_svc_update_reading(s);
    hs_svc_maybe_shutdown(s); /* the opener's fin may be in already */
    hs_st_want_out(s);
}

/* The TLS session failed: before the open's outcome the open fails (502 with why), after
 * it the stream is reset. */
static void tls_failed(hs_tcp *s, const char *why) {
    if (s->state == TS_TLS)
        hs_svc_fail_open(s, why, 0);
    else
        hs_st_house_reset(s, "refused", why);
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
        hs_svc_fail_open(s, rc == GP_ERR_NOMEM ? "out of memory" : NULL,
                         rc == GP_ERR_NOMEM ? 0 : rc);
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
        hs_svc_fail_open(s, err, 0); /* the next open tries again */
        return;
    }
    if (!st->tls_rd && !(st->tls_rd = malloc(TLS_RD))) {
        hs_svc_fail_open(s, "out of memory", 0);
        return;
    }
    if (hs_tls_start(&s->tls, st->tls_ctx, s->svc->host, !st->conf.tls_insecure, err, sizeof err) !=
        0) {
        hs_svc_fail_open(s, strcmp(err, "out_of_memory") == 0 ? "out of memory" : err, 0);
        return;
    }
    s->state = TS_TLS;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc != 0) {
        hs_svc_fail_open(s, NULL, rc);
        return;
    }
    s->reading = 1;
    tls_handshake(s);
}

static void on_connect(uv_connect_t *req, int status) {
    hs_tcp *s = req->data;
    s->pending--;
    if (s->state != TS_CONNECTING) { /* timed out, reset or stopping meanwhile */
        hs_st_maybe_free(s, hs_st_now_ms(s->st));
        return;
    }
    if (status < 0) {
        hs_svc_fail_open(s, NULL, status);
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
        hs_svc_fail_open(s, NULL, rc);
        return;
    }
    s->tcp_init = 1;
    s->pending++; /* the handle, until on_closed */
    s->tcp.data = s;
    s->creq.data = s;
    s->state = TS_CONNECTING;
    rc = uv_tcp_connect(&s->creq, &s->tcp, sa, on_connect);
    if (rc != 0) {
        hs_svc_fail_open(s, NULL, rc);
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
        hs_st_maybe_free(s, hs_st_now_ms(s->st));
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        hs_svc_fail_open(s, status < 0 ? NULL : "no address", status < 0 ? status : 0);
        return;
    }
    connect_addr(s, res->ai_addr);
    uv_freeaddrinfo(res);
}

void hs_svc_connect(hs_tcp *s) {
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
        hs_svc_fail_open(s, NULL, rc);
        return;
    }
    s->pending++;
    s->resolving = 1;
}

/* --- service -> opener -------------------------------------------------------------------- */

/* The service's bytes held for the opener: read and not yet acknowledged. */
static uint64_t buffered(const hs_tcp *s) {
    return s->read_end - s->g.snd_acked;
}

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
    hs_st_count_bytes(s->st, "from_service", n);
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
        hs_svc_update_reading(s);
        hs_st_want_out(s);
        return;
    }
    if (nread == UV_EOF) {
        s->svc_eof = 1;
        hs_svc_update_reading(s);
        hs_st_want_out(s); /* the fin, once every byte is written */
        return;
    }
    if (s->state == TS_TLS) {
        hs_svc_fail_open(s, NULL, (int)nread);
        return;
    }
    char m[160];
    snprintf(m, sizeof m, "service %s reset the connection: %s", s->service,
             uv_strerror((int)nread));
    hs_st_house_reset(s, "refused", m);
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
        hs_st_house_reset(s, "refused", m);
        return -1;
    }
    if (r == HS_TLS_EOF) {
        s->svc_eof = 1;
    } else if (!full && s->sock_eof && !s->svc_eof) {
        if (hs_tls_buffered(&s->tls)) {
            char m[160];
            snprintf(m, sizeof m, "service %s: TLS: the connection ended inside a record",
                     s->service);
            hs_st_house_reset(s, "refused", m);
            return -1;
        }
        s->svc_eof = 1;
    }
    if (got || s->svc_eof)
        hs_st_want_out(s);
    return 0;
}

static void tls_on_read(hs_tcp *s, ssize_t nread, const uv_buf_t *buf) {
    if (nread == UV_EOF) {
        if (s->state == TS_TLS) {
            tls_failed_session(s); /* "the connection closed" */
            return;
        }
        s->sock_eof = 1;
        hs_svc_update_reading(s); /* stops reading; the fin once the session has given all */
        return;
    }
    if (hs_tls_feed(&s->tls, buf->base, (size_t)nread) != 0) {
        tls_failed(s, "out of memory");
        return;
    }
    if (s->state == TS_TLS)
        tls_handshake(s);
    else
        hs_svc_update_reading(s);
}

/* Reads the service only while its bytes fit the opener's window (TLS: once the plaintext
 * the session holds is out, as far as it fits). */
void hs_svc_update_reading(hs_tcp *s) {
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
void hs_svc_drop_acked(hs_tcp *s) {
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

/* --- opener -> service -------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status; /* a service that cannot take our half-close notices the rest itself */
    hs_tcp *s = req->data;
    s->pending--;
    hs_st_maybe_free(s, hs_st_now_ms(s->st));
}

void hs_svc_maybe_shutdown(hs_tcp *s) {
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
        hs_st_maybe_free(s, hs_st_now_ms(s->st));
        return;
    }
    if (status < 0 && s->state == TS_TLS) {
        hs_svc_fail_open(s, NULL, status);
        return;
    }
    if (status < 0) {
        char m[160];
        snprintf(m, sizeof m, "writing to service %s: %s", s->service, uv_strerror(status));
        hs_st_house_reset(s, "refused", m);
        return;
    }
    if (n == 0)
        return;                              /* TLS's own bytes */
    if (gp_stream_consumed(&s->g, n) != 0) { /* cannot be: n was delivered */
        hs_st_house_reset(s, "closed", "house: consumed past delivered");
        return;
    }
    s->to_service += n;
    hs_st_count_bytes(s->st, "to_service", n);
    hs_svc_maybe_shutdown(s);
    hs_st_want_out(s); /* an ack may be due */
    hs_st_check_done(s);
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
int hs_svc_deliver(hs_tcp *s, const uint8_t *p, size_t n, char *why, size_t whylen) {
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
