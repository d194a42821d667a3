/* Unit tests for house/streams.c, the house's TCP streams through Redis (proto/STREAMS.md),
 * on a real libuv loop against real loopback services (bound to port 0) that the test runs
 * on the same loop: echo, sink, or scripted; plain, or behind TLS (an https:// upstream: the
 * test's own OpenSSL server on memory BIOs, with a certificate made for localhost). The test plays
 * the tunnel and the opener: it feeds S_OPEN / S_ENTRY frames, pulls what the module says (encoded
 * and decoded again, so every frame is a valid one), and waits for conditions with a deadline,
 * never a fixed sleep (a "nothing more happens" check runs the loop to a short deadline and looks).
 */
#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "../../house/streams.h"
#include "../harness/sframe.h"
#include "compress.h"
#include "metrics.h"
#include "uvtcp.h"

/* --- a loopback service ----------------------------------------------------------------- */

#define MAXC 8

enum svc_mode { SVC_SINK, SVC_ECHO };

typedef struct sconn {
    uv_tcp_t h;
    int open, eof, closed;
    int err;     /* a read error (UV_ECONNRESET: the house reset it) */
    uint8_t *rx; /* what the house sent (behind TLS: the plaintext) */
    size_t rxlen, rxcap;
    SSL *ssl; /* S.tls: the server's session (owns its BIOs) */
    BIO *rb, *wb;
    int tls_up, tls_closed, tls_failed; /* handshake done, close_notify read, broken */
} sconn;

static struct {
    uv_tcp_t lis;
    int port;
    enum svc_mode mode;
    int tls; /* connections accepted from now on run TLS (server side) */
    sconn c[MAXC];
    int nconn;
} S;

static uv_loop_t loop;

static void s_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    (void)h;
    *b = uv_buf_init(malloc(sug), (unsigned)sug);
}

static void s_written(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
    free(w);
}

static void s_write(sconn *c, const void *p, size_t n) {
    uv_write_t *w = malloc(sizeof *w);
    w->data = malloc(n ? n : 1);
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&c->h, &b, 1, s_written), 0);
}

static void rx_add(sconn *c, const void *p, size_t n) {
    if (c->rxlen + n > c->rxcap) {
        c->rxcap = (c->rxlen + n) * 2;
        c->rx = realloc(c->rx, c->rxcap);
    }
    memcpy(c->rx + c->rxlen, p, n);
    c->rxlen += n;
}

/* --- the service behind TLS ----------------------------------------------------------------- */

static SSL_CTX *srv_ctx;
static char ca_path[64]; /* the certificate as PEM: what the house trusts (tls_ca_file) */

/* A self-signed certificate for the name localhost only (no IP address: an https:// URL
 * with 127.0.0.1 must not pass), its key, the server's context, and the PEM file. */
static void tls_setup(void) {
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    cr_assert(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *ext[][2] = {{"subjectAltName", "DNS:localhost"},
                            {"basicConstraints", "critical,CA:TRUE"}};
    for (size_t i = 0; i < 2; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, ext[i][0], ext[i][1]);
        cr_assert_not_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    cr_assert(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(ca_path, sizeof ca_path, "/tmp/gp-unit-streams-%d.pem", (int)getpid());
    FILE *f = fopen(ca_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    srv_ctx = SSL_CTX_new(TLS_server_method());
    cr_assert(srv_ctx && SSL_CTX_use_certificate(srv_ctx, x) == 1 &&
              SSL_CTX_use_PrivateKey(srv_ctx, k) == 1);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* What the server's session has for the socket, raw. */
static void s_tls_flush(sconn *c) {
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(c->wb, buf, sizeof buf)) > 0)
        s_write(c, buf, (size_t)n);
}

/* Plaintext to the house through the server's session. */
static void s_send(sconn *c, const void *p, size_t n) {
    if (!c->ssl) {
        s_write(c, p, n);
        return;
    }
    cr_assert_eq(SSL_write(c->ssl, p, (int)n), (int)n);
    s_tls_flush(c);
}

/* The server's close_notify (it sends nothing more; the house may). */
static void s_close_notify(sconn *c) {
    cr_assert_geq(SSL_shutdown(c->ssl), 0);
    s_tls_flush(c);
}

static void s_tls_in(sconn *c, const void *p, size_t n) {
    cr_assert_eq(BIO_write(c->rb, p, (int)n), (int)n);
    if (!c->tls_up) {
        int r = SSL_accept(c->ssl);
        s_tls_flush(c);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            c->tls_failed |= e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            ERR_clear_error();
            return;
        }
        c->tls_up = 1;
    }
    static uint8_t buf[65536];
    int k;
    while ((k = SSL_read(c->ssl, buf, sizeof buf)) > 0) {
        rx_add(c, buf, (size_t)k);
        if (S.mode == SVC_ECHO)
            cr_assert_eq(SSL_write(c->ssl, buf, k), k);
    }
    if (SSL_get_error(c->ssl, k) == SSL_ERROR_ZERO_RETURN)
        c->tls_closed = 1;
    ERR_clear_error();
    s_tls_flush(c);
}

static void s_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
    sconn *c = h->data;
    if (n > 0 && c->ssl) {
        s_tls_in(c, b->base, (size_t)n);
    } else if (n > 0) {
        rx_add(c, b->base, (size_t)n);
        if (S.mode == SVC_ECHO)
            s_write(c, b->base, (size_t)n);
    } else if (n == UV_EOF) {
        c->eof = 1;
    } else if (n < 0) {
        c->err = (int)n;
        uv_read_stop(h);
    }
    free(b->base);
}

static void s_closed(uv_handle_t *h) {
    ((sconn *)h->data)->closed = 1;
}

static void s_accept(uv_stream_t *lis, int status) {
    cr_assert_eq(status, 0);
    cr_assert_lt(S.nconn, MAXC);
    sconn *c = &S.c[S.nconn++];
    uv_tcp_init(&loop, &c->h);
    c->h.data = c;
    cr_assert_eq(uv_accept(lis, (uv_stream_t *)&c->h), 0);
    c->open = 1;
    if (S.tls) {
        c->ssl = SSL_new(srv_ctx);
        c->rb = BIO_new(BIO_s_mem());
        c->wb = BIO_new(BIO_s_mem());
        cr_assert(c->ssl && c->rb && c->wb);
        SSL_set_bio(c->ssl, c->rb, c->wb);
        SSL_set_accept_state(c->ssl);
    }
    uv_read_start((uv_stream_t *)&c->h, s_alloc, s_read);
}

/* A close with SO_LINGER 0: the house sees a reset. */
static void s_reset(sconn *c) {
    uv_os_fd_t fd;
    cr_assert_eq(uv_fileno((uv_handle_t *)&c->h, &fd), 0);
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    uv_close((uv_handle_t *)&c->h, s_closed);
    c->open = 0;
}

static void s_shutdown_done(uv_shutdown_t *r, int status) {
    (void)status;
    free(r);
}

static void s_shutdown(sconn *c) {
    uv_shutdown_t *r = malloc(sizeof *r);
    cr_assert_eq(uv_shutdown(r, (uv_stream_t *)&c->h, s_shutdown_done), 0);
}

static int free_port(void) {
    static uv_tcp_t t; /* closed on the loop: outlives this call */
    int port = uvt_bind_loopback(&loop, &t);
    uv_close((uv_handle_t *)&t, NULL);
    return port;
}

/* --- the captured frames (what the module sent the bridge) -------------------------------- */

typedef struct cap {
    uint8_t type, flags, has;
    char sid[65];
    uint16_t status;
    char error[64], message[300], rst[40];
    uint64_t off, ack, rcv_next, snd_acked;
    uint8_t *data;
    size_t len;
    uint32_t lane;
} cap;

#define MAXF 20000
static cap *F;
static size_t nf;
static int pulling = 1; /* the tunnel takes frames (0: a stalled tunnel) */
static int wakes;
static size_t pull_max = 1 << 20;
static gp_zctx *zc;

static hs_streams *st;
static hs_metrics m;
static gp_metrics *reg;
static hs_tcp_service services[3];
static char portbuf[3][8];

static void drain(void) {
    if (!pulling)
        return;
    gp_frame f;
    uint32_t lane;
    static uint8_t enc[(1 << 20) + 64];
    while (hs_streams_pull(st, pull_max, &f, &lane)) {
        ssize_t n = gp_frame_encode(&f, enc, sizeof enc);
        cr_assert_gt(n, 0, "the module made a frame that does not encode");
        cr_assert_leq((size_t)n, pull_max, "a frame over the pull's max");
        gp_frame d;
        cr_assert_eq(gp_frame_decode(enc, (size_t)n, 1 << 20, &d), n);
        cr_assert_lt(nf, MAXF);
        cap *c = &F[nf++];
        memset(c, 0, sizeof *c);
        c->type = d.type;
        c->flags = d.flags;
        c->lane = lane;
        switch (d.type) {
        case GP_FRAME_S_OPENED:
            snprintf(c->sid, sizeof c->sid, "%.*s", (int)d.u.s_opened.sid.len, d.u.s_opened.sid.p);
            c->status = d.u.s_opened.status;
            snprintf(c->error, sizeof c->error, "%.*s", (int)d.u.s_opened.error.len,
                     d.u.s_opened.error.p);
            snprintf(c->message, sizeof c->message, "%.*s", (int)d.u.s_opened.message.len,
                     d.u.s_opened.message.p);
            break;
        case GP_FRAME_S_ATTACH:
            snprintf(c->sid, sizeof c->sid, "%.*s", (int)d.u.s_attach.sid.len, d.u.s_attach.sid.p);
            c->rcv_next = d.u.s_attach.rcv_next;
            c->snd_acked = d.u.s_attach.snd_acked;
            break;
        case GP_FRAME_S_ENTRY:
            snprintf(c->sid, sizeof c->sid, "%.*s", (int)d.u.s_entry.sid.len, d.u.s_entry.sid.p);
            c->has = d.u.s_entry.has;
            c->off = d.u.s_entry.off;
            c->ack = d.u.s_entry.ack;
            snprintf(c->rst, sizeof c->rst, "%.*s", (int)d.u.s_entry.rst.len, d.u.s_entry.rst.p);
            snprintf(c->message, sizeof c->message, "%.*s", (int)d.u.s_entry.message.len,
                     d.u.s_entry.message.p);
            cr_assert_leq(d.u.s_entry.data.len, 65536 + 1024);
            if (d.flags & GP_FLAG_ZSTD) {
                ssize_t dn = gp_decompressed_size(d.u.s_entry.data.p, d.u.s_entry.data.len);
                cr_assert(dn > 0 && dn <= 65536, "a compressed entry of %zd bytes", dn);
                c->data = malloc((size_t)dn);
                cr_assert_eq(gp_decompress(zc, d.u.s_entry.data.p, d.u.s_entry.data.len, c->data,
                                           (size_t)dn),
                             dn);
                c->len = (size_t)dn;
            } else {
                c->len = d.u.s_entry.data.len;
                c->data = malloc(c->len ? c->len : 1);
                memcpy(c->data, d.u.s_entry.data.p, c->len);
            }
            break;
        default:
            cr_assert_fail("the module sent a %s", gp_frame_type_name(d.type));
        }
    }
}

static void wake(void *ud) {
    (void)ud;
    wakes++; /* the tunnel would mark itself writable; the test drains after each loop turn */
}

static uv_timer_t beat;
static void on_beat(uv_timer_t *t) {
    (void)t;
}

/* Runs the loop until cond() or ms passed; drains frames after each turn. */
static int run_until(int (*cond)(void), uint64_t ms) {
    uint64_t end = uv_now(&loop) + ms;
    drain();
    while (!cond()) {
        if (uv_now(&loop) >= end)
            return 0;
        uv_run(&loop, UV_RUN_ONCE);
        drain();
    }
    return 1;
}

static int never(void) {
    return 0;
}
/* Runs the loop for ms (for "nothing more happens" checks only). */
static void run_for(uint64_t ms) {
    run_until(never, ms);
}

/* --- the module under test ---------------------------------------------------------------- */

static hs_streams_conf conf;
/* HTTP upstreams: streams reach them as http:<name>. "tls" refuses connections, "wss" and
 * "wssname" are the service (S.tls: behind TLS) by IP address and by name. */
static hs_service http_svc[4];
static char http_url[4][64];

static void setup_with(uint32_t max_streams, uint64_t grace_ms, uint64_t keep_ms) {
    memset(&S, 0, sizeof S);
    tls_setup();
    uv_loop_init(&loop);
    F = calloc(MAXF, sizeof *F);
    nf = 0;
    pulling = 1;
    wakes = 0;
    pull_max = 1 << 20;
    zc = gp_zctx_new(3);
    /* the service */
    S.port = uvt_bind_loopback(&loop, &S.lis);
    cr_assert_eq(uv_listen((uv_stream_t *)&S.lis, 16, s_accept), 0);
    snprintf(portbuf[0], sizeof portbuf[0], "%d", S.port);
    snprintf(portbuf[1], sizeof portbuf[1], "%d", free_port());
    snprintf(portbuf[2], sizeof portbuf[2], "%d", S.port);
    services[0] = (hs_tcp_service){.name = "svc", .host = "127.0.0.1", .port = portbuf[0]};
    services[1] = (hs_tcp_service){.name = "closed", .host = "127.0.0.1", .port = portbuf[1]};
    services[2] = (hs_tcp_service){.name = "byname", .host = "localhost", .port = portbuf[2]};
    snprintf(http_url[0], sizeof http_url[0], "http://127.0.0.1:%d/base/", S.port);
    snprintf(http_url[1], sizeof http_url[1], "http://user@localhost:%d", S.port);
    http_svc[0] = (hs_service){.name = "web", .url = http_url[0]};
    http_svc[1] = (hs_service){.name = "tls", .url = "https://127.0.0.1:1"};
    snprintf(http_url[2], sizeof http_url[2], "https://127.0.0.1:%d", S.port);
    snprintf(http_url[3], sizeof http_url[3], "https://localhost:%d/base", S.port);
    http_svc[2] = (hs_service){.name = "wss", .url = http_url[2]};
    http_svc[3] = (hs_service){.name = "wssname", .url = http_url[3]};
    /* metrics */
    memset(&m, 0, sizeof m);
    reg = gp_metrics_new();
    m.reg = reg;
    m.streams_open = gp_metrics_gauge(reg, "o", "h", NULL);
    m.streams_opened = gp_metrics_counter(reg, "op", "h", "outcome");
    m.stream_bytes = gp_metrics_counter(reg, "b", "h", "direction");
    m.stream_resets = gp_metrics_counter(reg, "r", "h", "reason");
    conf = (hs_streams_conf){.services = services,
                             .nservices = 3,
                             .http = http_svc,
                             .nhttp = 4,
                             .http_default = http_url[1],
                             .tls_ca_file = ca_path,
                             .max_streams = max_streams,
                             .grace_ms = grace_ms,
                             .keep_closed_ms = keep_ms,
                             .m = &m,
                             .zs = NULL,
                             .wake = wake,
                             .ud = NULL};
    cr_assert_not_null(st = hs_streams_new(&loop, &conf));
    uv_timer_init(&loop, &beat);
    uv_timer_start(&beat, on_beat, 2, 2);
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
}

static void setup(void) {
    setup_with(8, 30000, 0);
}

static void teardown(void) {
    hs_streams_stop(st);
    uv_close((uv_handle_t *)&beat, NULL);
    uv_close((uv_handle_t *)&S.lis, NULL);
    for (int i = 0; i < S.nconn; i++)
        if (!uv_is_closing((uv_handle_t *)&S.c[i].h))
            uv_close((uv_handle_t *)&S.c[i].h, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hs_streams_free(st);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle of the module is still open");
    for (size_t i = 0; i < nf; i++)
        free(F[i].data);
    free(F);
    for (int i = 0; i < S.nconn; i++) {
        free(S.c[i].rx);
        SSL_free(S.c[i].ssl);
    }
    SSL_CTX_free(srv_ctx);
    unlink(ca_path);
    gp_metrics_free(reg);
    gp_zctx_free(zc);
}

TestSuite(house_streams, .init = setup, .fini = teardown, .timeout = 20);

/* --- the bridge's side ------------------------------------------------------------------- */

static void s_open(const char *sid, const char *service, uint32_t window, uint32_t idle_ms) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPEN, 0, 0);
    f.u.s_open.sid = gp_str_c(sid);
    f.u.s_open.service = gp_str_c(service);
    f.u.s_open.window = window;
    f.u.s_open.idle_ms = idle_ms;
    f.u.s_open.timeout_ms = 5000;
    hs_streams_on_frame(st, &f);
}

/* One entry the opener wrote on sin. has: GP_SE_*; rst: NULL for none. */
static void s_entry(const char *sid, uint8_t has, uint64_t off, uint64_t ack, const void *data,
                    size_t len, const char *rst) {
    gp_frame f;
    h_s_entry(&f, sid, has, off, ack, (gp_str){data, len}, rst);
    /* through the codec, as the tunnel would hand it over */
    static uint8_t enc[(1 << 20) + 64];
    ssize_t n = gp_frame_encode(&f, enc, sizeof enc);
    cr_assert_gt(n, 0);
    gp_frame d;
    cr_assert_eq(gp_frame_decode(enc, (size_t)n, 1 << 20, &d), n);
    hs_streams_on_frame(st, &d);
}

static void s_ack(const char *sid, uint64_t ack) {
    s_entry(sid, GP_SE_ACK, 0, ack, NULL, 0, NULL);
}

/* The last S_OPENED of sid, or NULL. */
static const cap *opened(const char *sid) {
    for (size_t i = nf; i-- > 0;)
        if (F[i].type == GP_FRAME_S_OPENED && strcmp(F[i].sid, sid) == 0)
            return &F[i];
    return NULL;
}

static size_t count_type(const char *sid, uint8_t type) {
    size_t n = 0;
    for (size_t i = 0; i < nf; i++)
        n += F[i].type == type && strcmp(F[i].sid, sid) == 0;
    return n;
}

/* The first rst of sid, or NULL. */
static const cap *rst_of(const char *sid) {
    for (size_t i = 0; i < nf; i++)
        if (F[i].type == GP_FRAME_S_ENTRY && F[i].rst[0] && strcmp(F[i].sid, sid) == 0)
            return &F[i];
    return NULL;
}

/* The opener's view of sout from frame `from` on: the bytes in order (each entry starts at or
 * below what it has: a gap fails the test), whether a fin came, and the largest ack of sin. */
typedef struct sout {
    uint8_t *b;
    size_t len;
    int fin;
    uint64_t ack;
    int acks;
} sout;

static sout view_from(const char *sid, size_t from) {
    sout v = {.b = malloc(1)};
    for (size_t i = from; i < nf; i++) {
        const cap *c = &F[i];
        if (c->type != GP_FRAME_S_ENTRY || strcmp(c->sid, sid) != 0)
            continue;
        if (c->has & GP_SE_ACK) {
            v.acks++;
            if (c->ack > v.ack)
                v.ack = c->ack;
        }
        if (!(c->has & GP_SE_OFF))
            continue;
        cr_assert_leq(c->off, v.len, "a gap in sout: entry at %llu, opener has %zu",
                      (unsigned long long)c->off, v.len);
        if (c->off + c->len > v.len) {
            size_t skip = (size_t)(v.len - c->off), n = c->len - skip;
            v.b = realloc(v.b, v.len + n);
            memcpy(v.b + v.len, c->data + skip, n);
            v.len += n;
        }
        if (c->has & GP_SE_FIN)
            v.fin = 1;
    }
    return v;
}

static sout view(const char *sid) {
    return view_from(sid, 0);
}

static size_t sout_len(const char *sid) {
    sout v = view(sid);
    free(v.b);
    return v.len;
}

static const char *cur_sid;
static size_t want_len;

static int has_conn(void) {
    return S.nconn >= 1;
}
static int svc_got_want(void) {
    return S.nconn && S.c[0].rxlen >= want_len;
}
static int svc_eof(void) {
    return S.nconn && S.c[0].eof;
}
static int svc_err(void) {
    return S.nconn && S.c[0].err != 0;
}
static int has_rst(void) {
    return rst_of(cur_sid) != NULL;
}
static int sout_has_want(void) {
    sout v = view(cur_sid);
    free(v.b);
    return v.len >= want_len;
}
static int sout_fin(void) {
    sout v = view(cur_sid);
    free(v.b);
    return v.fin;
}
static uint64_t want_ack;
static int sin_acked(void) {
    sout v = view(cur_sid);
    free(v.b);
    return v.ack >= want_ack;
}
static int no_open(void) {
    return hs_streams_open_count(st) == 0;
}

/* Opens sid on `service` and waits for its outcome. */
static size_t count_type(const char *sid, uint8_t type);
static size_t opened_before;
static int has_new_opened(void) {
    return count_type(cur_sid, GP_FRAME_S_OPENED) > opened_before;
}

static const cap *open_wait(const char *sid, const char *service, uint32_t window, uint32_t idle) {
    cur_sid = sid;
    opened_before = count_type(sid, GP_FRAME_S_OPENED);
    s_open(sid, service, window, idle);
    cr_assert(run_until(has_new_opened, 5000), "no S_OPENED for %s", sid);
    return opened(sid);
}

/* sid opened on service svc (window, idle_ms) with a 200, and the service's connection came. */
static void open_connected(const char *sid, uint32_t window, uint32_t idle) {
    cr_assert_eq(open_wait(sid, "svc", window, idle)->status, 200);
    cr_assert(run_until(has_conn, 2000));
}

/* sout of sid holds exactly the len bytes at data. */
static void expect_sout(const char *sid, const void *data, size_t len) {
    sout v = view(sid);
    cr_assert_eq(v.len, len, "sout has %zu of %zu", v.len, len);
    cr_assert_eq(memcmp(v.b, data, len), 0, "sout's bytes differ");
    free(v.b);
}

/* --- tests -------------------------------------------------------------------------------- */

Test(house_streams, open_ok) {
    const cap *o = open_wait("s1", "svc", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s", o->status, o->error, o->message);
    cr_assert_str_empty(o->error);
    cr_assert(run_until(has_conn, 2000), "the service saw no connection");
    cr_assert_eq(hs_streams_open_count(st), 1);
    cr_assert_eq(gp_metric_value(m.streams_open, NULL), 1);
    cr_assert_eq(gp_metric_value(m.streams_opened, "ok"), 1);
    cr_assert(o->lane & 0x80000000u, "a stream's lane is apart from the request streams'");
}

Test(house_streams, open_by_name_resolves) {
    const cap *o = open_wait("s1", "byname", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s", o->status, o->error, o->message);
}

Test(house_streams, forbidden_service) {
    const cap *o = open_wait("s1", "nosuch", 65536, 60000);
    cr_assert_eq(o->status, 403);
    cr_assert_str_eq(o->error, "forbidden_service");
    cr_assert(strstr(o->message, "nosuch"), "%s", o->message);
    run_for(50);
    cr_assert_eq(S.nconn, 0, "a connection for a refused open");
    cr_assert_eq(hs_streams_open_count(st), 0);
    cr_assert_eq(gp_metric_value(m.streams_opened, "forbidden_service"), 1);
}

/* http:<name> reaches the house's HTTP upstream <name> at its URL's host and port (the
 * front door's WebSockets), http: its default one; one it cannot reach (an https:// one
 * too) is 502 naming the address, an unknown name 403 naming what is missing. */
Test(house_streams, http_upstreams_as_services) {
    const cap *o = open_wait("h1", "http:web", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s", o->status, o->error, o->message);
    o = open_wait("h2", "http:", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s", o->status, o->error, o->message);
    run_until(has_conn, 2000);
    o = open_wait("h3", "http:tls", 65536, 60000);
    cr_assert_eq(o->status, 502);
    cr_assert_str_eq(o->error, "upstream_unreachable");
    cr_assert(strstr(o->message, "127.0.0.1:1 (service http:tls)"), "%s", o->message);
    cr_assert(strstr(o->message, "refused"), "%s", o->message);
    o = open_wait("h4", "http:nosuch", 65536, 60000);
    cr_assert_eq(o->status, 403);
    cr_assert_str_eq(o->error, "forbidden_service");
    cr_assert(strstr(o->message, "HTTP upstream named \"nosuch\""), "%s", o->message);
    o = open_wait("h5", "http:svc", 65536, 60000); /* a --tcp-service is not an HTTP one */
    cr_assert_eq(o->status, 403);
    cr_assert_eq(hs_streams_open_count(st), 2);
}

Test(house_streams, bad_open_fields) {
    const cap *o = open_wait("w", "svc", 100, 60000);
    cr_assert_eq(o->status, 400);
    cr_assert_str_eq(o->error, "bad_request");
    cr_assert(strstr(o->message, "window"), "%s", o->message);
    o = open_wait("i", "svc", 65536, 10);
    cr_assert_eq(o->status, 400);
    cr_assert(strstr(o->message, "idle_ms"), "%s", o->message);
    o = open_wait("bad/sid", "svc", 65536, 60000);
    cr_assert_eq(o->status, 400);
    cr_assert(strstr(o->message, "sid"), "%s", o->message);
    run_for(30);
    cr_assert_eq(S.nconn, 0);
}

Test(house_streams, refused_port_is_502) {
    const cap *o = open_wait("s1", "closed", 65536, 60000);
    cr_assert_eq(o->status, 502);
    cr_assert_str_eq(o->error, "upstream_unreachable");
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", portbuf[1]);
    cr_assert(strstr(o->message, addr), "the message names the address: %s", o->message);
    cr_assert(strstr(o->message, "refused"), "and the error: %s", o->message);
    cr_assert_eq(hs_streams_open_count(st), 0);
    cr_assert_eq(gp_metric_value(m.streams_opened, "upstream_unreachable"), 1);
}

static int three_opened(void) {
    return opened("a") && opened("b") && opened("c");
}

/* The module again, made with other limits. */
static void remake(uint32_t max_streams, uint64_t grace_ms, uint64_t keep_ms) {
    hs_streams_stop(st);
    uv_run(&loop, UV_RUN_NOWAIT);
    hs_streams_free(st);
    conf.max_streams = max_streams;
    conf.grace_ms = grace_ms;
    conf.keep_closed_ms = keep_ms;
    cr_assert_not_null(st = hs_streams_new(&loop, &conf));
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
}

Test(house_streams, max_streams) {
    remake(2, 30000, 0);
    s_open("a", "svc", 65536, 60000);
    s_open("b", "svc", 65536, 60000);
    s_open("c", "svc", 65536, 60000);
    cr_assert(run_until(three_opened, 5000));
    cr_assert_eq(opened("a")->status, 200);
    cr_assert_eq(opened("b")->status, 200);
    cr_assert_eq(opened("c")->status, 503);
    cr_assert_str_eq(opened("c")->error, "unavailable");
    cr_assert_eq(hs_streams_open_count(st), 2);
}

static int two_conns(void) {
    return S.nconn >= 2;
}

Test(house_streams, duplicate_open_answered_without_reconnect) {
    const cap *o = open_wait("dup", "svc", 65536, 60000);
    cr_assert_eq(o->status, 200);
    cr_assert(run_until(has_conn, 2000));
    size_t before = count_type("dup", GP_FRAME_S_OPENED);
    s_open("dup", "svc", 65536, 60000); /* a failover delivers the open again */
    run_for(100);
    cr_assert_eq(count_type("dup", GP_FRAME_S_OPENED), before + 1, "answered again");
    cr_assert_eq(opened("dup")->status, 200);
    cr_assert_eq(S.nconn, 1, "connected twice");
    cr_assert_eq(hs_streams_open_count(st), 1);
    /* a refused one answers the same refusal */
    o = open_wait("dup2", "closed", 65536, 60000);
    cr_assert_eq(o->status, 502);
    s_open("dup2", "closed", 65536, 60000);
    run_for(50);
    cr_assert_eq(count_type("dup2", GP_FRAME_S_OPENED), 2);
    cr_assert_eq(opened("dup2")->status, 502);
    (void)two_conns;
}

/* total bytes, each from i by mul and div, for the echo tests. */
static uint8_t *pattern(size_t total, size_t mul, size_t div) {
    uint8_t *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (uint8_t)(i * mul + i / div);
    return data;
}

/* On the open stream sid to an echo service: the opener sends data in entries of `entry`
 * bytes, within the window (acks from the house open it again; the opener acks what it got of
 * sout); the service gets it all, in order; the echo comes back, acked as it arrives (at most
 * rounds acks), whole and in order. */
static void echo_round_trip(const char *sid, const uint8_t *data, size_t total, size_t entry,
                            int rounds) {
    size_t off = 0;
    while (off < total) {
        size_t n = total - off < entry ? total - off : entry;
        s_entry(sid, GP_SE_OFF, off, 0, data + off, n, NULL);
        off += n;
        want_ack = off > 131072 ? off - 131072 : 0;
        cr_assert(run_until(sin_acked, 5000), "the house does not ack sin");
        s_ack(sid, sout_len(sid));
    }
    want_len = total;
    cr_assert(run_until(svc_got_want, 5000), "the service got %zu of %zu",
              S.nconn ? S.c[0].rxlen : 0, total);
    cr_assert_eq(memcmp(S.c[0].rx, data, total), 0, "the service's bytes differ");
    for (int i = 0; i < rounds; i++) {
        size_t got = sout_len(sid);
        s_ack(sid, got);
        if (got >= total)
            break;
        want_len = got + 1;
        run_until(sout_has_want, 2000);
    }
    expect_sout(sid, data, total);
}

Test(house_streams, data_both_ways_in_order_with_acks) {
    S.mode = SVC_ECHO;
    const char *sid = "echo";
    cr_assert_eq(open_wait(sid, "svc", 262144, 60000)->status, 200);
    size_t total = 200000;
    uint8_t *data = pattern(total, 7, 251);
    echo_round_trip(sid, data, total, 20000, 100);
    want_ack = total;
    cr_assert(run_until(sin_acked, 2000), "the house does not ack all of sin");
    cr_assert_eq(gp_metric_value(m.stream_bytes, "to_service"), total);
    cr_assert_eq(gp_metric_value(m.stream_bytes, "from_service"), total);
    free(data);
}

/* text[0..n) unit over and over: compressible. */
static void repeat(char *text, size_t n, const char *unit) {
    size_t u = strlen(unit);
    for (size_t i = 0; i < n; i++)
        text[i] = unit[i % u];
}

Test(house_streams, compressible_data_goes_zstd) {
    S.mode = SVC_SINK;
    const char *sid = "z";
    open_connected(sid, 262144, 60000);
    char text[30000];
    repeat(text, sizeof text, "the quick brown fox ");
    s_write(&S.c[0], text, sizeof text);
    want_len = sizeof text;
    cr_assert(run_until(sout_has_want, 3000));
    int z = 0;
    for (size_t i = 0; i < nf; i++)
        z |= F[i].type == GP_FRAME_S_ENTRY && (F[i].flags & GP_FLAG_ZSTD);
    cr_assert(z, "text went uncompressed");
    sout v = view(sid);
    cr_assert_eq(memcmp(v.b, text, sizeof text), 0);
    free(v.b);
}

/* The service has sent total bytes (big, freed here) on stream sid with a window of win: the
 * house sends a window and stops; half acknowledged, half a window more and no more; acked as
 * it goes (at most rounds acks), everything arrives, in order. */
static void window_then_all(const char *sid, uint32_t win, uint8_t *big, size_t total, int rounds) {
    want_len = win;
    cr_assert(run_until(sout_has_want, 3000));
    run_for(150); /* nothing more may come */
    cr_assert_eq(sout_len(sid), win, "the house went past the window: %zu", sout_len(sid));
    s_ack(sid, win / 2);
    want_len = win + win / 2;
    cr_assert(run_until(sout_has_want, 3000));
    run_for(100);
    cr_assert_eq(sout_len(sid), win + win / 2);
    for (int i = 0; i < rounds && sout_len(sid) < total; i++) {
        s_ack(sid, sout_len(sid));
        want_len = sout_len(sid) + 1;
        run_until(sout_has_want, 2000);
    }
    expect_sout(sid, big, total);
    free(big);
}

Test(house_streams, window_respected_until_acked) {
    S.mode = SVC_SINK;
    const char *sid = "win";
    uint32_t win = 65536;
    open_connected(sid, win, 60000);
    size_t total = 1 << 20;
    uint8_t *big = malloc(total);
    for (size_t i = 0; i < total; i++)
        big[i] = (uint8_t)(i % 253);
    s_write(&S.c[0], big, total); /* the service sends far more than the window */
    window_then_all(sid, win, big, total, 2000);
}

Test(house_streams, stalled_tunnel_stops_reading_at_the_window) {
    S.mode = SVC_SINK;
    const char *sid = "stall";
    uint32_t win = 65536;
    open_connected(sid, win, 60000);
    pulling = 0; /* the tunnel's socket is slow: nothing is pulled */
    size_t total = 1 << 20;
    uint8_t *big = calloc(1, total);
    for (size_t i = 0; i < total; i++)
        big[i] = (uint8_t)((i * 131) >> 3);
    s_write(&S.c[0], big, total);
    run_for(200);
    pulling = 1;
    drain();
    cr_assert_eq(sout_len(sid), win, "held %zu bytes for a window of %u", sout_len(sid), win);
    free(big);
}

Test(house_streams, half_close_both_ways_then_clean_end) {
    S.mode = SVC_SINK;
    const char *sid = "hc";
    open_connected(sid, 65536, 60000);
    /* the opener sends 5 bytes and its fin: the service reads them, then EOF */
    s_entry(sid, GP_SE_OFF | GP_SE_FIN, 0, 0, "hello", 5, NULL);
    cr_assert(run_until(svc_eof, 3000), "the service saw no EOF");
    cr_assert_eq(S.c[0].rxlen, 5);
    cur_sid = sid;
    want_ack = 5;
    cr_assert(run_until(sin_acked, 2000), "the fin's bytes are not acked");
    /* the other direction goes on: the service answers, then closes its side */
    s_write(&S.c[0], "world!", 6);
    s_shutdown(&S.c[0]);
    cr_assert(run_until(sout_fin, 3000), "no fin on sout");
    expect_sout(sid, "world!", 6);
    cr_assert_eq(hs_streams_open_count(st), 1, "over before the opener acked the fin");
    s_ack(sid, 6);
    cr_assert(run_until(no_open, 2000), "not over after both fins were acked");
    cr_assert_null(rst_of(sid), "a clean end has no rst");
    cr_assert_eq(hs_streams_record_count(st), 1, "no record of the ended stream");
    /* its open delivered again: the recorded outcome, no second connect */
    s_open(sid, "svc", 65536, 60000);
    run_for(100);
    cr_assert_eq(count_type(sid, GP_FRAME_S_OPENED), 2);
    cr_assert_eq(opened(sid)->status, 200);
    cr_assert_eq(S.nconn, 1);
    /* a new bridge hears our last ack again (the one it may have lost), nothing else */
    hs_streams_tunnel_down(st);
    size_t mark = nf;
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
    run_for(30);
    cr_assert_eq(nf, mark + 1, "%zu frames to the new bridge", nf - mark);
    cr_assert_eq(F[mark].type, GP_FRAME_S_ENTRY);
    cr_assert_eq(F[mark].has, GP_SE_ACK);
    cr_assert_eq(F[mark].ack, 5);
}

Test(house_streams, rst_from_opener_resets_the_service) {
    const char *sid = "r1";
    open_connected(sid, 65536, 60000);
    s_entry(sid, 0, 0, 0, NULL, 0, "closed");
    cr_assert(run_until(svc_err, 3000), "the service saw no reset");
    cr_assert_eq(S.c[0].err, UV_ECONNRESET, "%s", uv_strerror(S.c[0].err));
    cr_assert(run_until(no_open, 1000));
    cr_assert_null(rst_of(sid), "an rst answered with an rst");
    cr_assert_eq(gp_metric_value(m.stream_resets, "peer"), 1);
}

Test(house_streams, rst_from_service_is_refused) {
    const char *sid = "r2";
    cur_sid = sid;
    open_connected(sid, 65536, 60000);
    s_reset(&S.c[0]);
    cr_assert(run_until(has_rst, 3000), "no rst on sout");
    cr_assert_str_eq(rst_of(sid)->rst, "refused");
    cr_assert(run_until(no_open, 1000));
    cr_assert_eq(gp_metric_value(m.stream_resets, "refused"), 1);
}

Test(house_streams, protocol_errors_reset_one_stream_only) {
    S.mode = SVC_SINK;
    cr_assert_eq(open_wait("ok", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("gap", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("win", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("ack", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("mal", "svc", 65536, 60000)->status, 200);
    s_entry("gap", GP_SE_OFF, 10, 0, "x", 1, NULL);
    static uint8_t big[70000];
    s_entry("win", GP_SE_OFF, 0, 0, big, sizeof big, NULL);
    s_entry("ack", GP_SE_ACK, 0, 999, NULL, 0, NULL);
    s_entry("mal", GP_SE_FIN, 0, 0, NULL, 0, NULL); /* fin without off */
    cur_sid = "mal";
    cr_assert(run_until(has_rst, 2000));
    drain();
    cr_assert_str_eq(rst_of("gap")->rst, "gap");
    cr_assert_str_eq(rst_of("win")->rst, "window");
    cr_assert_str_eq(rst_of("ack")->rst, "bad_ack");
    cr_assert_str_eq(rst_of("mal")->rst, "malformed");
    cr_assert(rst_of("mal")->message[0], "an rst without a message");
    /* the good one goes on */
    cr_assert_null(rst_of("ok"));
    s_entry("ok", GP_SE_OFF, 0, 0, "fine", 4, NULL);
    cur_sid = "ok";
    want_ack = 4;
    cr_assert(run_until(sin_acked, 2000));
    cr_assert_eq(hs_streams_open_count(st), 1);
    /* an entry for a stream that does not exist is ignored */
    s_entry("nosuch", GP_SE_OFF, 0, 0, "x", 1, NULL);
    run_for(20);
    cr_assert_eq(count_type("nosuch", GP_FRAME_S_ENTRY), 0);
}

Test(house_streams, compressed_entry_from_the_bridge) {
    S.mode = SVC_SINK;
    const char *sid = "zin";
    open_connected(sid, 65536, 60000);
    char text[8000];
    repeat(text, sizeof text, "abcdefgh");
    uint8_t z[9000];
    ssize_t zn = gp_compress(zc, (const uint8_t *)text, sizeof text, z, sizeof z);
    cr_assert_gt(zn, 0);
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_ENTRY, 0, GP_FLAG_ZSTD);
    f.u.s_entry.sid = gp_str_c(sid);
    f.u.s_entry.has = GP_SE_OFF;
    f.u.s_entry.data = (gp_str){z, (size_t)zn};
    hs_streams_on_frame(st, &f);
    want_len = sizeof text;
    cr_assert(run_until(svc_got_want, 2000));
    cr_assert_eq(memcmp(S.c[0].rx, text, sizeof text), 0);
    /* garbage flagged zstd: that stream is reset as malformed */
    f.u.s_entry.off = sizeof text;
    f.u.s_entry.data = GP_STR_LIT("not zstd at all");
    hs_streams_on_frame(st, &f);
    cur_sid = sid;
    cr_assert(run_until(has_rst, 2000));
    cr_assert_str_eq(rst_of(sid)->rst, "malformed");
}

static int acks_only(const char *sid) {
    int n = 0;
    for (size_t i = 0; i < nf; i++)
        n += F[i].type == GP_FRAME_S_ENTRY && strcmp(F[i].sid, sid) == 0 && F[i].has == GP_SE_ACK &&
             !F[i].rst[0];
    return n;
}

Test(house_streams, idle_timeout_and_keepalives) {
    const char *sid = "idle";
    cur_sid = sid;
    open_connected(sid, 65536, 1000);
    uint64_t t0 = uv_now(&loop);
    cr_assert(run_until(has_rst, 3000), "no idle reset");
    uint64_t dt = uv_now(&loop) - t0;
    cr_assert_str_eq(rst_of(sid)->rst, "idle");
    cr_assert_geq(dt, 800, "reset after %llu ms, before its idle_ms", (unsigned long long)dt);
    cr_assert_geq(acks_only(sid), 2, "keep-alive acks every idle_ms / 3: %d", acks_only(sid));
    cr_assert(run_until(svc_err, 2000), "the service connection is not reset");
    cr_assert_eq(gp_metric_value(m.stream_resets, "idle"), 1);
}

Test(house_streams, entries_keep_it_alive) {
    const char *sid = "alive";
    cur_sid = sid;
    cr_assert_eq(open_wait(sid, "svc", 65536, 1000)->status, 200);
    for (int i = 0; i < 6; i++) { /* 1.8 s of an opener that acks now and then */
        run_for(300);
        s_ack(sid, 0);
    }
    cr_assert_null(rst_of(sid), "reset although the opener spoke");
}

static int attached(void) {
    return count_type(cur_sid, GP_FRAME_S_ATTACH) > 0;
}

Test(house_streams, tunnel_down_up_attach_and_resend_from_acked) {
    S.mode = SVC_SINK;
    const char *sid = "fo";
    cur_sid = sid;
    open_connected(sid, 65536, 60000);
    /* 3 bytes in from the opener, 10000 out of the service, of which the opener acks 4000 */
    s_entry(sid, GP_SE_OFF, 0, 0, "abc", 3, NULL);
    uint8_t out[30000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 13 + 5);
    s_write(&S.c[0], out, 10000);
    want_len = 10000;
    cr_assert(run_until(sout_has_want, 2000));
    want_len = 3;
    cr_assert(run_until(svc_got_want, 2000));
    s_ack(sid, 4000);
    run_for(20);
    /* the bridge goes away; meanwhile the service sends more */
    hs_streams_tunnel_down(st);
    s_write(&S.c[0], out + 10000, 20000);
    run_for(200);
    cr_assert_eq(S.c[0].err, 0, "reset within the grace");
    cr_assert(!S.c[0].eof);
    size_t mark = nf;
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
    cr_assert(run_until(attached, 2000), "no S_ATTACH");
    const cap *a = NULL;
    for (size_t i = mark; i < nf; i++)
        if (F[i].type == GP_FRAME_S_ATTACH)
            a = &F[i];
    cr_assert_eq(a->rcv_next, 3);
    cr_assert_eq(a->snd_acked, 4000);
    /* the first frame after the attach is not data of this stream before it */
    for (size_t i = mark; i < nf && &F[i] != a; i++)
        cr_assert(!(F[i].type == GP_FRAME_S_ENTRY && strcmp(F[i].sid, sid) == 0),
                  "an entry before the S_ATTACH");
    /* bytes again from 4000: the first data entry after the attach starts there */
    int first = 1;
    for (size_t i = mark; i < nf; i++)
        if (F[i].type == GP_FRAME_S_ENTRY && (F[i].has & GP_SE_OFF) && first) {
            cr_assert_eq(F[i].off, 4000, "resent from %llu", (unsigned long long)F[i].off);
            first = 0;
        }
    cr_assert(!first, "nothing resent");
    /* the new bridge's ack was forced: the house tells where sin stands */
    int acked = 0;
    for (size_t i = mark; i < nf; i++)
        acked |= F[i].type == GP_FRAME_S_ENTRY && (F[i].has & GP_SE_ACK) && F[i].ack == 3;
    cr_assert(acked, "no ack of sin after the attach");
    /* the opener gets everything, in order, acking as it goes */
    for (int i = 0; i < 200 && sout_len(sid) < 30000; i++) {
        s_ack(sid, sout_len(sid));
        want_len = sout_len(sid) + 1;
        run_until(sout_has_want, 1000);
    }
    sout v = view(sid);
    cr_assert_eq(v.len, 30000);
    cr_assert_eq(memcmp(v.b, out, 30000), 0);
    free(v.b);
}

Test(house_streams, fin_resent_after_failover) {
    S.mode = SVC_SINK;
    const char *sid = "finfo";
    cur_sid = sid;
    open_connected(sid, 65536, 60000);
    s_write(&S.c[0], "bye", 3);
    s_shutdown(&S.c[0]);
    cr_assert(run_until(sout_fin, 2000));
    hs_streams_tunnel_down(st);
    size_t mark = nf;
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
    run_for(50);
    sout v = view_from(sid, mark);
    cr_assert_eq(v.len, 3, "the unacked bytes are not resent");
    cr_assert(v.fin, "the fin is not resent");
    free(v.b);
}

Test(house_streams, protocol_1_bridge_carries_nothing) {
    const char *sid = "p1";
    cr_assert_eq(open_wait(sid, "svc", 65536, 60000)->status, 200);
    hs_streams_tunnel_down(st);
    size_t mark = nf;
    hs_streams_tunnel_up(st, 1);
    cr_assert_eq(hs_streams_pending(st), 0);
    run_for(50);
    cr_assert_eq(nf, mark, "frames to a protocol-1 bridge");
}

Test(house_streams, grace_expiry) {
    remake(8, 300, 0);
    const char *sid = "gr";
    cur_sid = sid;
    open_connected(sid, 65536, 60000);
    hs_streams_tunnel_down(st);
    uint64_t t0 = uv_now(&loop);
    cr_assert(run_until(svc_err, 3000), "the service connection outlived the grace");
    uint64_t dt = uv_now(&loop) - t0;
    cr_assert_geq(dt, 250, "reset after %llu ms of a 300 ms grace", (unsigned long long)dt);
    cr_assert_eq(hs_streams_open_count(st), 0);
    cr_assert_null(rst_of(sid), "an rst sent without a tunnel");
    hs_streams_tunnel_up(st, GP_PROTO_STREAMS);
    cr_assert(run_until(has_rst, 1000), "the next bridge gets no rst");
    cr_assert_str_eq(rst_of(sid)->rst, "grace");
    cr_assert_eq(gp_metric_value(m.stream_resets, "grace"), 1);
}

Test(house_streams, records_expire) {
    remake(8, 30000, 200);
    cr_assert_eq(open_wait("gone", "closed", 65536, 60000)->status, 502);
    cr_assert_eq(hs_streams_record_count(st), 1);
    run_for(400);
    cr_assert_eq(hs_streams_record_count(st), 0, "the record outlived keep_closed_ms");
    /* a new open of that sid is a new stream */
    const cap *o = open_wait("gone", "svc", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s (%zu frames)", o->status, o->error, o->message, nf);
}

Test(house_streams, frames_fit_a_small_max) {
    S.mode = SVC_SINK;
    const char *sid = "small";
    pull_max = 6000; /* entries are cut to fit it, not into crumbs */
    open_connected(sid, 65536, 60000);
    static uint8_t r[50000];
    for (size_t i = 0; i < sizeof r; i++)
        r[i] = (uint8_t)((i * 2654435761u) >> 24);
    pull_max = 1000; /* room for less than 4096 data bytes: the data waits */
    s_write(&S.c[0], r, sizeof r);
    run_for(100);
    cr_assert_eq(sout_len(sid), 0, "crumbs of %zu bytes", sout_len(sid));
    pull_max = 6000;
    want_len = sizeof r;
    cur_sid = sid;
    cr_assert(run_until(sout_has_want, 2000));
    for (size_t i = 0; i < nf; i++)
        cr_assert(F[i].len <= 6000 - 40, "an entry of %zu bytes", F[i].len);
    sout v = view(sid);
    cr_assert_eq(memcmp(v.b, r, sizeof r), 0);
    free(v.b);
}

Test(house_streams, records_are_bounded) {
    remake(1, 30000, 0); /* records kept: 4 x 1 + 256 */
    char sid[16];
    for (int i = 0; i < 400; i++) {
        snprintf(sid, sizeof sid, "r%d", i);
        s_open(sid, "nosuch", 65536, 60000);
        drain();
    }
    cr_assert_leq(hs_streams_record_count(st), 4 + 256 + 1, "%zu records",
                  hs_streams_record_count(st));
    cr_assert_eq(count_type("r399", GP_FRAME_S_OPENED), 1);
}

Test(house_streams, hostile_entry_fields_reset_that_stream) {
    cr_assert_eq(open_wait("badrst", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("badwin", "svc", 65536, 60000)->status, 200);
    cr_assert_eq(open_wait("rstoff", "svc", 65536, 60000)->status, 200);
    s_entry("badrst", 0, 0, 0, NULL, 0, "NOT A REASON");
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_ENTRY, 0, 0);
    f.u.s_entry.sid = gp_str_c("badwin");
    f.u.s_entry.has = GP_SE_WIN;
    f.u.s_entry.win = 12; /* below the smallest window */
    hs_streams_on_frame(st, &f);
    s_entry("rstoff", GP_SE_OFF, 0, 0, "x", 1, "closed"); /* rst with data */
    cur_sid = "rstoff";
    cr_assert(run_until(has_rst, 2000));
    drain();
    cr_assert_str_eq(rst_of("badrst")->rst, "malformed");
    cr_assert_str_eq(rst_of("badwin")->rst, "malformed");
    cr_assert_str_eq(rst_of("rstoff")->rst, "malformed");
    cr_assert_eq(gp_metric_value(m.stream_resets, "malformed"), 3);
}

/* A service whose accept queue is full (a listen backlog of 0, one connection waiting, never
 * accepted): the next connect hangs, so the open's timeout_ms ends it. */
Test(house_streams, connect_timeout_is_502) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0 && cfd >= 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    cr_assert_eq(connect(cfd, (struct sockaddr *)&a, sizeof a), 0, "the filler did not connect");
    static char port[8];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    services[1].port = port; /* "closed" now names the full one */
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPEN, 0, 0);
    f.u.s_open.sid = gp_str_c("slow");
    f.u.s_open.service = gp_str_c("closed");
    f.u.s_open.window = 65536;
    f.u.s_open.idle_ms = 60000;
    f.u.s_open.timeout_ms = 300;
    uint64_t t0 = uv_now(&loop);
    hs_streams_on_frame(st, &f);
    cur_sid = "slow";
    opened_before = 0;
    cr_assert(run_until(has_new_opened, 3000), "no outcome");
    uint64_t dt = uv_now(&loop) - t0;
    const cap *o = opened("slow");
    cr_assert_eq(o->status, 502, "%u %s", o->status, o->message);
    cr_assert_str_eq(o->error, "upstream_unreachable");
    cr_assert(strstr(o->message, "timed out after 300 ms"), "%s", o->message);
    cr_assert(strstr(o->message, port), "%s", o->message);
    cr_assert(dt >= 250 && dt < 2000, "the outcome came after %llu ms", (unsigned long long)dt);
    cr_assert_eq(hs_streams_open_count(st), 0);
    close(cfd);
    close(lfd);
}

static int two_connected(void) {
    return S.nconn >= 2;
}

/* Two bulk streams share the tunnel in turn: neither waits for the other's window. */
Test(house_streams, streams_take_turns) {
    S.mode = SVC_SINK;
    cr_assert_eq(open_wait("t1", "svc", 262144, 60000)->status, 200);
    cr_assert_eq(open_wait("t2", "svc", 262144, 60000)->status, 200);
    cr_assert(run_until(two_connected, 2000));
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)((i * 2654435761u) >> 11);
    pulling = 0; /* both fill their buffers first */
    s_write(&S.c[0], big, sizeof big);
    s_write(&S.c[1], big, sizeof big);
    run_for(150);
    pulling = 1;
    size_t mark = nf;
    drain();
    char last[65] = "";
    int runs = 0, data = 0;
    for (size_t i = mark; i < nf; i++) {
        if (F[i].type != GP_FRAME_S_ENTRY || !F[i].len)
            continue;
        data++;
        runs += strcmp(F[i].sid, last) != 0;
        snprintf(last, sizeof last, "%s", F[i].sid);
    }
    cr_assert_geq(data, 6, "%d data entries", data);
    cr_assert_eq(runs, data, "the streams did not alternate: %d runs in %d entries", runs, data);
}

/* --- https:// upstreams: TLS over the service connection -------------------------------- */

static int tls_up(void) {
    return S.nconn && S.c[0].tls_up;
}
static int want_conns;
static int has_want_conns(void) {
    return S.nconn >= want_conns;
}
static int second_tls_up(void) {
    return S.nconn >= 2 && S.c[1].tls_up;
}
static int svc_closed_notify_and_eof(void) {
    return S.nconn && S.c[0].tls_closed && S.c[0].eof;
}

/* An open with its own timeout_ms; its outcome awaited. */
static const cap *open_wait_timeout(const char *sid, const char *service, uint32_t timeout_ms) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPEN, 0, 0);
    f.u.s_open.sid = gp_str_c(sid);
    f.u.s_open.service = gp_str_c(service);
    f.u.s_open.window = 65536;
    f.u.s_open.idle_ms = 60000;
    f.u.s_open.timeout_ms = timeout_ms;
    cur_sid = sid;
    opened_before = count_type(sid, GP_FRAME_S_OPENED);
    hs_streams_on_frame(st, &f);
    cr_assert(run_until(has_new_opened, 5000), "no S_OPENED for %s", sid);
    return opened(sid);
}

/* The stream to an https:// upstream carries the plaintext both ways: open once the
 * handshake is done (the certificate of localhost trusted through tls_ca_file, by name),
 * bytes echoed in order with acks, counted as plaintext. */
Test(house_streams, tls_echo_carries_the_plaintext) {
    S.mode = SVC_ECHO;
    S.tls = 1;
    const char *sid = "tls";
    const cap *o = open_wait(sid, "http:wssname", 262144, 60000);
    cr_assert_eq(o->status, 200, "%u %s %s", o->status, o->error, o->message);
    cr_assert(run_until(tls_up, 2000), "the service's handshake is not done");
    size_t total = 300000;
    uint8_t *data = pattern(total, 13, 509);
    echo_round_trip(sid, data, total, 30000, 200);
    cr_assert_eq(gp_metric_value(m.stream_bytes, "to_service"), total);
    cr_assert_eq(gp_metric_value(m.stream_bytes, "from_service"), total);
    cr_assert_null(rst_of(sid));
    free(data);
}

/* The plaintext the session gives goes no further than the opener's window: the rest waits
 * (in the session, then in the socket) until acks come, and arrives whole and in order. */
Test(house_streams, tls_window_respected_until_acked) {
    S.mode = SVC_SINK;
    S.tls = 1;
    const char *sid = "tlswin";
    uint32_t win = 65536;
    cr_assert_eq(open_wait(sid, "http:wssname", win, 60000)->status, 200);
    cr_assert(run_until(tls_up, 2000));
    size_t total = 1 << 20;
    uint8_t *big = malloc(total);
    for (size_t i = 0; i < total; i++)
        big[i] = (uint8_t)(i % 241);
    s_send(&S.c[0], big, total);
    window_then_all(sid, win, big, total, 4000);
}

/* Half-close through TLS: the upstream's close_notify is its fin (what it sent before
 * arrives first); the opener's fin is our close_notify and then the socket's EOF; the
 * stream ends cleanly once both fins are acked. */
Test(house_streams, tls_close_notify_both_ways_then_clean_end) {
    S.mode = SVC_SINK;
    S.tls = 1;
    const char *sid = "tlshc";
    cr_assert_eq(open_wait(sid, "http:wssname", 65536, 60000)->status, 200);
    cr_assert(run_until(tls_up, 2000));
    s_send(&S.c[0], "bye", 3);
    s_close_notify(&S.c[0]);
    cur_sid = sid;
    cr_assert(run_until(sout_fin, 3000), "the close_notify made no fin");
    expect_sout(sid, "bye", 3);
    s_entry(sid, GP_SE_OFF | GP_SE_FIN, 0, 0, "hello", 5, NULL);
    cr_assert(run_until(svc_closed_notify_and_eof, 3000),
              "the service saw no close_notify and EOF (close_notify %d, eof %d)",
              S.c[0].tls_closed, S.c[0].eof);
    cr_assert_eq(S.c[0].rxlen, 5);
    cr_assert_eq(memcmp(S.c[0].rx, "hello", 5), 0);
    want_ack = 5;
    cr_assert(run_until(sin_acked, 2000));
    s_ack(sid, 3);
    cr_assert(run_until(no_open, 2000), "not over after both fins were acked");
    cr_assert_null(rst_of(sid), "a clean end has no rst");
}

/* The upstream's EOF without a close_notify is a fin too, when it comes between records; in
 * the middle of one, the stream was cut short: a reset that says so, none of the record's
 * bytes delivered. */
Test(house_streams, tls_eof_is_a_fin_unless_inside_a_record) {
    S.mode = SVC_SINK;
    S.tls = 1;
    cr_assert_eq(open_wait("eof", "http:wssname", 65536, 60000)->status, 200);
    cr_assert(run_until(tls_up, 2000));
    s_send(&S.c[0], "last", 4);
    s_shutdown(&S.c[0]);
    cur_sid = "eof";
    cr_assert(run_until(sout_fin, 3000), "the EOF made no fin");
    expect_sout("eof", "last", 4);
    cr_assert_null(rst_of("eof"));

    cr_assert_eq(open_wait("cut", "http:wssname", 65536, 60000)->status, 200);
    cr_assert(run_until(second_tls_up, 2000));
    sconn *c = &S.c[1];
    cr_assert_eq(SSL_write(c->ssl, "cut short", 9), 9);
    uint8_t rec[256];
    int n = BIO_read(c->wb, rec, sizeof rec);
    cr_assert_gt(n, 9);
    s_write(c, rec, (size_t)n - 4); /* the record without its last bytes, then the end */
    s_shutdown(c);
    cur_sid = "cut";
    cr_assert(run_until(has_rst, 3000), "no rst for a record cut short");
    cr_assert_str_eq(rst_of("cut")->rst, "refused");
    cr_assert(strstr(rst_of("cut")->message, "inside a record"), "%s", rst_of("cut")->message);
    cr_assert_eq(sout_len("cut"), 0);
}

/* Verification as curl's: a certificate no CA of the house's vouches for is refused (502,
 * saying so and what to do), so is one for another name than the URL's (here: its IP
 * address); tls_insecure takes any. */
Test(house_streams, tls_certificate_checks) {
    S.tls = 1;
    conf.tls_ca_file = NULL; /* the system's CAs: they do not know the test's */
    remake(8, 30000, 0);
    const cap *o = open_wait("sys", "http:wssname", 65536, 60000);
    cr_assert_eq(o->status, 502, "%u %s", o->status, o->message);
    cr_assert_str_eq(o->error, "upstream_unreachable");
    cr_assert(strstr(o->message, "TLS: the upstream's certificate is not trusted: "), "%s",
              o->message);
    cr_assert(strstr(o->message, "--upstream-ca-file"), "%s", o->message);
    cr_assert(strstr(o->message, "localhost:"), "the message names the upstream: %s", o->message);

    conf.tls_ca_file = ca_path;
    remake(8, 30000, 0);
    o = open_wait("ip", "http:wss", 65536, 60000);
    cr_assert_eq(o->status, 502, "a certificate for localhost taken for 127.0.0.1");
    cr_assert(strstr(o->message, "not trusted: IP address mismatch"), "%s", o->message);

    conf.tls_ca_file = NULL;
    conf.tls_insecure = 1;
    remake(8, 30000, 0);
    o = open_wait("any", "http:wss", 65536, 60000);
    cr_assert_eq(o->status, 200, "%u %s", o->status, o->message);
    cr_assert_eq(hs_streams_open_count(st), 1);
}

/* A service that does not speak TLS: one that answers something else fails the handshake at
 * once, one that says nothing times out (the open's timeout_ms covers the handshake), one
 * that closes ends it; each a 502 saying which, and nothing left open. */
Test(house_streams, tls_handshake_failures_are_502) {
    S.mode = SVC_ECHO; /* our ClientHello comes back */
    const cap *o = open_wait("echo", "http:wssname", 65536, 60000);
    cr_assert_eq(o->status, 502, "%u %s", o->status, o->message);
    cr_assert(strstr(o->message, "TLS handshake failed: "), "%s", o->message);
    S.mode = SVC_SINK;
    o = open_wait_timeout("mute", "http:wssname", 300);
    cr_assert_eq(o->status, 502);
    cr_assert(strstr(o->message, "TLS handshake timed out after 300 ms"), "%s", o->message);
    cur_sid = "gone";
    opened_before = 0;
    s_open("gone", "http:wssname", 65536, 60000);
    int n0 = S.nconn;
    want_conns = n0 + 1;
    cr_assert(run_until(has_want_conns, 2000));
    s_shutdown(&S.c[n0]);
    cr_assert(run_until(has_new_opened, 3000));
    o = opened("gone");
    cr_assert_eq(o->status, 502);
    cr_assert(strstr(o->message, "TLS handshake failed: the connection closed"), "%s", o->message);
    cr_assert(run_until(no_open, 1000));
    cr_assert_eq(gp_metric_value(m.streams_opened, "upstream_unreachable"), 3);
}
