/* front_tls.c — the front door's HTTP server over TLS (front_tls.h). I/O side: accept, read,
 * write, one timer a connection, as proto/adapters/uv_admin.c does for plain HTTP, with an
 * OpenSSL session on memory BIOs in between: ciphertext read from the socket goes into the
 * session and the plaintext out of it into the core; what the core writes is encrypted and
 * written as one socket write, whose completion is reported to the core as its write's. While
 * the core does not read (a request is being answered), decrypted input stays in the session
 * and is handed over when it reads again. */
#include "front_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF 16384

typedef struct tglue {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    SSL_CTX *ctx;
    gp_admin *a;
} tglue;

typedef struct tconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_idle_t drain; /* hands buffered plaintext over once the core reads again */
    uv_shutdown_t shut;
    int nclosed; /* of tcp, timer and drain */
    int closing, reading;
    gp_admin_conn *c;
    SSL *ssl;
    BIO *rbio, *wbio; /* ciphertext in, ciphertext out (owned by ssl) */
} tconn;

typedef struct wreq {
    uv_write_t w;
    tconn *t;
    int report; /* the core's write (reported), or the session's own (handshake, alerts) */
    char buf[];
} wreq;

static uint64_t io_now(void *ud) {
    return uv_now(((tglue *)ud)->loop);
}

static void io_done(void *ud) {
    tglue *gl = ud;
    SSL_CTX_free(gl->ctx);
    free(gl);
}

static void on_written(uv_write_t *w, int status) {
    wreq *r = (wreq *)w;
    tconn *t = r->t;
    int report = r->report;
    free(r);
    if (report)
        gp_admin_written(t->c, status);
}

/* Writes what the session has produced: 0 (also when nothing), or -1. */
static int flush(tconn *t, int report) {
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0 && !report)
        return 0;
    wreq *r = malloc(sizeof *r + n + 1);
    if (!r)
        return -1;
    int got = n ? BIO_read(t->wbio, r->buf, (int)n) : 0;
    if (got < 0 || (size_t)got != n) {
        free(r);
        return -1;
    }
    r->t = t;
    r->report = report;
    uv_buf_t b = uv_buf_init(r->buf, (unsigned)n);
    if (uv_write(&r->w, (uv_stream_t *)&t->tcp, &b, 1, on_written) != 0) {
        free(r);
        return -1;
    }
    return 0;
}

static int io_write(void *io, const void *buf, size_t len) {
    tconn *t = io;
    if (t->closing || !SSL_is_init_finished(t->ssl))
        return -1;
    if (len && SSL_write(t->ssl, buf, (int)len) != (int)len)
        return -1;
    return flush(t, 1);
}

static void io_try_write(void *io, const void *buf, size_t len) {
    tconn *t = io; /* before the handshake (the 503 of a connection over the caps): dropped */
    if (!t->closing && SSL_is_init_finished(t->ssl) && SSL_write(t->ssl, buf, (int)len) > 0)
        flush(t, 0);
}

/* Hands decrypted input to the core while it reads. */
static void deliver(tconn *t) {
    char buf[READ_BUF];
    while (t->reading && !t->closing) {
        int n = SSL_read(t->ssl, buf, sizeof buf);
        if (n > 0) {
            gp_admin_input(t->c, buf, n);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        flush(t, 0); /* a key update, an alert */
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE && !t->closing)
            gp_admin_input(t->c, NULL, -1); /* close_notify, or a broken session */
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h, (void)suggested;
    b->base = malloc(READ_BUF);
    b->len = b->base ? READ_BUF : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    tconn *t = s->data;
    if (n < 0) {
        free(b->base);
        if (!t->closing)
            gp_admin_input(t->c, NULL, -1);
        return;
    }
    if (n > 0 && BIO_write(t->rbio, b->base, (int)n) != (int)n) {
        free(b->base);
        gp_admin_input(t->c, NULL, -1);
        return;
    }
    free(b->base);
    if (!SSL_is_init_finished(t->ssl)) {
        int rc = SSL_do_handshake(t->ssl);
        flush(t, 0);
        if (rc <= 0) {
            int e = SSL_get_error(t->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                gp_admin_input(t->c, NULL, -1); /* not TLS, or a failed handshake */
            }
            return;
        }
    }
    deliver(t);
}

static void on_drain(uv_idle_t *h) {
    tconn *t = h->data;
    uv_idle_stop(h);
    deliver(t);
}

static int io_reading(void *io, int on) {
    tconn *t = io;
    uv_stream_t *s = (uv_stream_t *)&t->tcp;
    t->reading = on;
    if (!on)
        return uv_read_stop(s);
    if (SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0)
        uv_idle_start(&t->drain, on_drain); /* not from inside the core's own call */
    return uv_read_start(s, on_alloc, on_read);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req, (void)status;
}

static int io_shutdown(void *io) {
    tconn *t = io;
    SSL_shutdown(t->ssl); /* close_notify */
    flush(t, 0);
    return uv_shutdown(&t->shut, (uv_stream_t *)&t->tcp, on_shutdown);
}

static void on_timer(uv_timer_t *h) {
    gp_admin_timeout(((tconn *)h->data)->c);
}

static void io_timer(void *io, unsigned ms) {
    uv_timer_start(&((tconn *)io)->timer, on_timer, ms, 0);
}

static void io_timer_stop(void *io) {
    uv_timer_stop(&((tconn *)io)->timer);
}

static void on_closed(uv_handle_t *h) {
    tconn *t = h->data;
    if (++t->nclosed < 3)
        return;
    if (t->c)
        gp_admin_released(t->c);
    SSL_free(t->ssl);
    free(t);
}

static void io_close(void *io) {
    tconn *t = io;
    t->closing = 1;
    uv_close((uv_handle_t *)&t->tcp, on_closed);
    uv_close((uv_handle_t *)&t->timer, on_closed);
    uv_close((uv_handle_t *)&t->drain, on_closed);
}

static void peer(uv_tcp_t *t, char *ip, size_t cap, int *port) {
    struct sockaddr_storage ss;
    int slen = sizeof ss;
    snprintf(ip, cap, "?");
    *port = 0;
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &slen) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, cap);
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, cap);
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
}

static void on_rejected(uv_handle_t *h) {
    free(h);
}

static void on_connection(uv_stream_t *srv, int status) {
    tglue *gl = srv->data;
    if (status < 0)
        return;
    tconn *t = calloc(1, sizeof *t);
    SSL *ssl = t ? SSL_new(gl->ctx) : NULL;
    BIO *rb = ssl ? BIO_new(BIO_s_mem()) : NULL, *wb = rb ? BIO_new(BIO_s_mem()) : NULL;
    if (!wb) { /* take it off the queue, or libuv calls again at once */
        BIO_free(rb);
        SSL_free(ssl);
        free(t);
        uv_tcp_t *x = malloc(sizeof *x);
        if (x && uv_tcp_init(gl->loop, x) == 0) {
            (void)uv_accept(srv, (uv_stream_t *)x);
            uv_close((uv_handle_t *)x, on_rejected);
        } else {
            free(x);
        }
        return;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_accept_state(ssl);
    t->ssl = ssl, t->rbio = rb, t->wbio = wb;
    uv_tcp_init(gl->loop, &t->tcp);
    uv_timer_init(gl->loop, &t->timer);
    uv_idle_init(gl->loop, &t->drain);
    t->tcp.data = t->timer.data = t->drain.data = t;
    char ip[INET6_ADDRSTRLEN + 8] = "?";
    int port = 0;
    if (uv_accept(srv, (uv_stream_t *)&t->tcp) == 0) {
        peer(&t->tcp, ip, sizeof ip, &port);
        uv_tcp_nodelay(&t->tcp, 1);
        t->c = gp_admin_accepted(gl->a, t, ip, port);
    }
    if (!t->c)
        io_close(t);
}

gp_admin *br_front_tls_new(uv_loop_t *loop, const gp_admin_cfg *cfg, const char *cert,
                           const char *key, char *err, size_t errlen) {
    tglue *gl = calloc(1, sizeof *gl);
    SSL_CTX *ctx = gl ? SSL_CTX_new(TLS_server_method()) : NULL;
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        free(gl);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[200];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        snprintf(err, errlen, "TLS certificate %s / key %s: %s", cert, key, why);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        free(gl);
        return NULL;
    }
    gl->loop = loop;
    gl->ctx = ctx;
    const gp_admin_io io = {gl,         io_now,      io_done,  io_write,      io_try_write,
                            io_reading, io_shutdown, io_timer, io_timer_stop, io_close};
    if (!(gl->a = gp_admin_core_new(cfg, &io))) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        free(gl);
        return NULL;
    }
    return gl->a;
}

static void on_listener_closed(uv_handle_t *h) {
    gp_admin_unref(((tglue *)h->data)->a);
}

int br_front_tls_listen(gp_admin *a) {
    tglue *gl = gp_admin_io_ud(a);
    const gp_admin_cfg *cfg = gp_admin_config(a);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(cfg->bind, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg->bind, cfg->port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    uv_tcp_init(gl->loop, &gl->listener);
    gl->listener.data = gl;
    gl->listener_open = 1;
    int rc = uv_tcp_bind(&gl->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&gl->listener, 128, on_connection);
    if (rc != 0)
        return rc;
    struct sockaddr_storage got;
    int glen = sizeof got;
    uv_tcp_getsockname(&gl->listener, (struct sockaddr *)&got, &glen);
    return got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&got)->sin_port);
}

void br_front_tls_close(gp_admin *a) {
    if (!a)
        return;
    tglue *gl = gp_admin_io_ud(a);
    if (gp_admin_shutdown(a) != 0)
        return;
    if (gl->listener_open) {
        gl->listener_open = 0;
        uv_close((uv_handle_t *)&gl->listener, on_listener_closed);
    } else {
        gp_admin_unref(a);
    }
}
