/* uv_admin.c — the admin port's I/O glue on libuv (uv_admin.h: gp_admin_new, gp_admin_listen
 * and gp_admin_close). I/O side: it accepts, reads, writes and runs one timer a connection,
 * and hands every event to the server in proto/admin_http.c, which decides everything else
 * (parsing, routes, limits, keep-alive, timeouts, shedding, lingering).
 *
 * Why here, in proto/adapters/ (the way hiredis keeps its event-loop adapters beside its
 * library): both daemons run the same glue, so it is written once, not once in each; it needs
 * libuv, so it stays out of proto/'s sans-I/O core and its library (libgpproto.a) and is built
 * into its own archive, libgpuv.a, which the daemons and the tools that host a house link; and
 * bridge/ and house/ both include it from here, so neither includes the other. */
#include "uv_admin.h"

#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF 16384

typedef struct glue {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    int filtered;
    gp_admin_filter f; /* when filtered */
    gp_admin *a;
} glue;

typedef struct gconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_idle_t drain; /* hands input held in the filter over once the core reads again */
    uv_shutdown_t shut;
    int nclosed; /* of tcp, timer and drain */
    int closing, reading;
    glue *gl;
    void *fc; /* the filter's session, or NULL */
    gp_admin_conn *c;
} gconn;

typedef struct wreq {
    uv_write_t w;
    gconn *g;
    int report; /* the core's write (reported), or the filter's own (handshake, alerts) */
    char buf[];
} wreq;

static uint64_t io_now(void *ud) {
    return uv_now(((glue *)ud)->loop);
}

static void io_done(void *ud) {
    glue *gl = ud;
    if (gl->filtered && gl->f.done)
        gl->f.done(gl->f.ud);
    free(gl);
}

static void on_written(uv_write_t *w, int status) {
    wreq *r = (wreq *)w;
    gconn *g = r->g;
    int report = r->report;
    free(r);
    if (report)
        gp_admin_written(g->c, status);
}

/* One socket write of len bytes: buf, or (buf NULL) what the filter has. 0, or -1. */
static int send_bytes(gconn *g, const void *buf, size_t len, int report) {
    wreq *r = malloc(sizeof *r + len + 1);
    if (!r)
        return -1;
    if (buf)
        memcpy(r->buf, buf, len);
    else if (len && g->gl->f.take(g->fc, r->buf, len) != len) {
        free(r);
        return -1;
    }
    r->g = g;
    r->report = report;
    uv_buf_t b = uv_buf_init(r->buf, (unsigned)len);
    if (uv_write(&r->w, (uv_stream_t *)&g->tcp, &b, 1, on_written) != 0) {
        free(r);
        return -1;
    }
    return 0;
}

/* Writes what the filter has for the socket: 0 (also when nothing and not reporting), or -1. */
static int flush(gconn *g, int report) {
    size_t n = g->gl->f.pending(g->fc);
    return n == 0 && !report ? 0 : send_bytes(g, NULL, n, report);
}

static int io_write(void *io, const void *buf, size_t len) {
    gconn *g = io;
    if (!g->fc)
        return send_bytes(g, buf, len, 1);
    if (g->closing || g->gl->f.out(g->fc, buf, len) != 0)
        return -1;
    return flush(g, 1);
}

static void io_try_write(void *io, const void *buf, size_t len) {
    gconn *g = io;
    if (!g->fc) {
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        uv_try_write((uv_stream_t *)&g->tcp, &b, 1);
    } else if (!g->closing && g->gl->f.out(g->fc, buf, len) == 0) {
        flush(g, 0); /* before a handshake (the 503 of a connection over the caps): dropped */
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h, (void)suggested;
    b->base = malloc(READ_BUF);
    b->len = b->base ? READ_BUF : 0;
}

/* Hands the filter's output to the core while it reads. */
static void deliver(gconn *g) {
    char buf[READ_BUF];
    while (g->reading && !g->closing) {
        long n = g->gl->f.read(g->fc, buf, sizeof buf);
        if (n > 0) {
            gp_admin_input(g->c, buf, n);
            continue;
        }
        flush(g, 0); /* a key update, an alert */
        if (n < 0 && !g->closing)
            gp_admin_input(g->c, NULL, -1); /* the session's end, or a broken one */
        break;
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    gconn *g = s->data;
    if (!g->fc) {
        gp_admin_input(g->c, b->base, (long)n);
        free(b->base);
        return;
    }
    int bad = n < 0 || (n > 0 && g->gl->f.in(g->fc, b->base, (size_t)n) != 0);
    free(b->base);
    if (n >= 0)
        flush(g, 0); /* the handshake's answer */
    if (bad) {
        if (!g->closing)
            gp_admin_input(g->c, NULL, -1); /* not the filter's protocol, or the peer left */
        return;
    }
    deliver(g);
}

static void on_drain(uv_idle_t *h) {
    uv_idle_stop(h);
    deliver(h->data);
}

static int io_reading(void *io, int on) {
    gconn *g = io;
    uv_stream_t *s = (uv_stream_t *)&g->tcp;
    g->reading = on;
    if (!on)
        return uv_read_stop(s);
    if (g->fc && g->gl->f.held(g->fc))
        uv_idle_start(&g->drain, on_drain); /* not from inside the core's own call */
    return uv_read_start(s, on_alloc, on_read);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req, (void)status; /* the server's linger timer or the client's EOF ends it */
}

static int io_shutdown(void *io) {
    gconn *g = io;
    if (g->fc) {
        g->gl->f.shutdown(g->fc);
        flush(g, 0);
    }
    return uv_shutdown(&g->shut, (uv_stream_t *)&g->tcp, on_shutdown);
}

static void on_timer(uv_timer_t *t) {
    gp_admin_timeout(((gconn *)t->data)->c);
}

static void io_timer(void *io, unsigned ms) {
    uv_timer_start(&((gconn *)io)->timer, on_timer, ms, 0);
}

static void io_timer_stop(void *io) {
    uv_timer_stop(&((gconn *)io)->timer);
}

static void on_closed(uv_handle_t *h) {
    gconn *g = h->data;
    if (++g->nclosed < 3)
        return;
    if (g->fc) /* first: the release may free the server, and the glue (gl) with it */
        g->gl->f.free(g->fc);
    g->fc = NULL;
    if (g->c)
        gp_admin_released(g->c);
    free(g);
}

static void io_close(void *io) {
    gconn *g = io;
    g->closing = 1;
    uv_close((uv_handle_t *)&g->tcp, on_closed);
    uv_close((uv_handle_t *)&g->timer, on_closed);
    uv_close((uv_handle_t *)&g->drain, on_closed);
}

/* "ip" and port of the peer ("?" and 0 when unknown). */
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
    glue *gl = srv->data;
    if (status < 0)
        return;
    gconn *g = calloc(1, sizeof *g);
    if (g && gl->filtered && !(g->fc = gl->f.open(gl->f.ud))) {
        free(g);
        g = NULL;
    }
    if (!g) { /* take it off the queue, or libuv calls again at once */
        uv_tcp_t *t = malloc(sizeof *t);
        if (t && uv_tcp_init(gl->loop, t) == 0) {
            (void)uv_accept(srv, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, on_rejected);
        } else {
            free(t);
        }
        return;
    }
    g->gl = gl;
    uv_tcp_init(gl->loop, &g->tcp);
    uv_timer_init(gl->loop, &g->timer);
    uv_idle_init(gl->loop, &g->drain);
    g->tcp.data = g->timer.data = g->drain.data = g;
    char ip[INET6_ADDRSTRLEN + 8] = "?";
    int port = 0;
    if (uv_accept(srv, (uv_stream_t *)&g->tcp) == 0) {
        peer(&g->tcp, ip, sizeof ip, &port);
        uv_tcp_nodelay(&g->tcp, 1);
        g->c = gp_admin_accepted(gl->a, g, ip, port);
    }
    if (!g->c) /* not accepted, or out of memory: closed, nobody else knows it */
        io_close(g);
}

gp_admin *gp_admin_new(uv_loop_t *loop, const gp_admin_cfg *cfg) {
    return gp_admin_new_filtered(loop, cfg, NULL);
}

gp_admin *gp_admin_new_filtered(uv_loop_t *loop, const gp_admin_cfg *cfg,
                                const gp_admin_filter *f) {
    glue *gl = calloc(1, sizeof *gl);
    if (!gl) {
        if (f && f->done)
            f->done(f->ud);
        return NULL;
    }
    gl->loop = loop;
    if (f) {
        gl->filtered = 1;
        gl->f = *f;
    }
    const gp_admin_io io = {gl,         io_now,      io_done,  io_write,      io_try_write,
                            io_reading, io_shutdown, io_timer, io_timer_stop, io_close};
    gl->a = gp_admin_core_new(cfg, &io);
    gp_admin *a = gl->a;
    if (!a)
        io_done(gl);
    return a;
}

static void on_listener_closed(uv_handle_t *h) {
    gp_admin_unref(((glue *)h->data)->a);
}

int gp_admin_listen(gp_admin *a) {
    glue *gl = gp_admin_io_ud(a);
    const gp_admin_cfg *cfg = gp_admin_config(a);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(cfg->bind, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg->bind, cfg->port, (struct sockaddr_in6 *)&ss) != 0) {
        gp_admin_logf(a, 0, "listen_failed", "transport=admin bind=%s err=bad_address", cfg->bind);
        return UV_EINVAL;
    }
    uv_tcp_init(gl->loop, &gl->listener);
    gl->listener.data = gl;
    gl->listener_open = 1;
    int rc = uv_tcp_bind(&gl->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&gl->listener, 128, on_connection);
    if (rc != 0) {
        gp_admin_logf(a, 0, "listen_failed", "transport=admin bind=%s port=%d err=%s", cfg->bind,
                      cfg->port, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage got;
    int glen = sizeof got;
    uv_tcp_getsockname(&gl->listener, (struct sockaddr *)&got, &glen);
    return got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&got)->sin_port);
}

void gp_admin_close(gp_admin *a) {
    if (!a)
        return;
    glue *gl = gp_admin_io_ud(a);
    if (gp_admin_shutdown(a) != 0)
        return; /* closing already */
    if (gl->listener_open) {
        gl->listener_open = 0;
        uv_close((uv_handle_t *)&gl->listener, on_listener_closed);
    } else {
        gp_admin_unref(a);
    }
}
