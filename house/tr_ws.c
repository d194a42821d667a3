/* tr_ws.c — the house's ws:// and wss:// transport (transport.h): a TCP connection on the
 * house's libuv loop, TLS by OpenSSL through memory BIOs (tls.c, shared with the streams to
 * https:// upstreams), the WebSocket upgrade and framing by proto/wsframe.c. It owns the
 * socket, the TLS session and its options (--ca-file, --insecure), the WebSocket close
 * handshake; the frames it carries and what they mean are the tunnel core's (tunnel.c).
 * Received binary messages go up as a byte stream (a frame may span messages); frames are
 * pulled from the core while less than WQ_HIGH bytes wait in the socket's write queue, each
 * masked in place (the core leaves HS_OUT_PRE bytes of headroom for the header).
 *
 * Why not libwebsockets' client, as before: Debian bookworm's 4.1 takes every received byte
 * through a state machine call (80% of the house's CPU while a TCP stream uploads, under perf)
 * and cannot dial a raw connection with TLS to frame ourselves. Here the payload of a frame
 * is handed up in place, reads go through one buffer for the whole process (none a
 * connection), and an idle TLS session keeps no buffers (SSL_MODE_RELEASE_BUFFERS). The
 * bridge's side is libwebsockets' server, unchanged. I/O side. */
#include "house.h"
#include "tls.h"
#include "transport.h"
#include "wsframe.h"

#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBPROTOCOL "ghostport.v1"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define CLOSE_FLUSH_MS 2000  /* our close sent: how long the bridge has to answer it */
#define WQ_HIGH (256u << 10) /* stop pulling frames while the socket holds this much */
#define WQ_LOW (64u << 10)   /* ... and pull again below this */
#define RD_CHUNK (64u << 10)

_Static_assert(GP_WS_HDR_MAX <= HS_OUT_PRE, "a client frame's header fits the core's headroom");

/* The TLS client settings the houses of a process share (hs_ws_shared_new). */
struct hs_ws_shared {
    SSL_CTX *ctx;
};

typedef struct tr_ws tr_ws;

/* One connection. Its own allocation: libuv may still call back for it after the transport
 * moved on (a new dial) or was freed; it goes once all its handles are closed. */
typedef struct ws_conn {
    tr_ws *w; /* NULL once it is over (detached) */
    uv_getaddrinfo_t gai;
    uv_connect_t con;
    uv_tcp_t sock;
    uv_idle_t kick;   /* pull frames from the loop */
    uv_timer_t timer; /* the close handshake's bound */
    int refs;         /* handles not closed yet and a resolve in flight: freed at 0 */
    int sock_open;    /* sock is initialised and not closing */
    struct addrinfo *ai, *ai_next;
    gp_ws_url url;
    hs_tls tls;    /* none for ws:// */
    int tls_done;  /* TLS handshake complete (or no TLS) */
    int open;      /* upgraded: frames flow */
    int connected; /* the TCP connect succeeded */
    /* The bridge's first bytes, kept while the TLS handshake runs: "HTTP/1.0 403" from a plain
     * ws:// bridge says why a wss:// dial fails. */
    uint8_t first[16];
    size_t nfirst;
    int over;
    size_t wq; /* bytes in libuv's write queue */
    char accept[32];
    uint8_t *head; /* the answer to the upgrade so far */
    size_t head_len;
    gp_ws_rx rx;
    int close_sent, peer_closed;
} ws_conn;

struct tr_ws {
    hs_transport base; /* first */
    hs_house *h;
    uv_loop_t *loop;
    struct hs_ws_shared *shared; /* the process's, or own (made at the first wss://) */
    struct hs_ws_shared own;
    ws_conn *c;  /* the current connection, NULL between them */
    int closing; /* close asked: flush what the core gives, then our close frame */
    int tls;
};

/* Reads are consumed before the read callback returns: one buffer serves every connection
 * of the process (one loop, one thread). */
static uint8_t g_rd[RD_CHUNK], g_plain[RD_CHUNK];

static void conn_end(ws_conn *c, const char *why);
static void conn_fail(ws_conn *c, int level, const char *event, const char *why, const char *fix);
static void pump_out(ws_conn *c);
static void on_kick(uv_idle_t *k);

/* Frames are pulled from the loop, not from inside whatever called us. */
static void kick(ws_conn *c) {
    uv_idle_start(&c->kick, on_kick);
}

/* --- TLS ------------------------------------------------------------------------------------ */

struct hs_ws_shared *hs_ws_shared_new(const char *ca_file) {
    struct hs_ws_shared *s = calloc(1, sizeof *s);
    char err[300];
    if (!s || !(s->ctx = hs_tls_ctx_new(ca_file, err, sizeof err))) {
        hs_log(HS_LOG_ERROR, "tls_init_failed", "err=%s", hs_qs(s ? err : "out of memory"));
        free(s);
        return NULL;
    }
    return s;
}

void hs_ws_shared_free(struct hs_ws_shared *s) {
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    free(s);
}

/* Why the TLS session failed, in words that say what to do. */
static void tls_why(ws_conn *c, char *why, size_t n) {
    hs_tls_why(&c->tls, "bridge", "--ca-file names the CA that signed it", why, n);
}

/* 1 when the bridge's first bytes are no TLS record (content types 20-23, version 3.x): a
 * plain ws:// bridge answering the ClientHello ("HTTP/1.0 403 ..."). */
static int first_not_tls(const ws_conn *c) {
    return c->nfirst >= 2 && !(c->first[0] >= 20 && c->first[0] <= 23 && c->first[1] == 3);
}

/* wss:// that failed before the session was up: the bridge speaks no TLS, its certificate was
 * refused, or the handshake failed otherwise; one line says which and what to do. */
static void tls_handshake_failed(ws_conn *c, const char *closed) {
    char why[700], fix[700];
    const gp_ws_url *u = &c->url;
    if (first_not_tls(c)) {
        char said[sizeof c->first + 1];
        size_t k = 0;
        for (; k < c->nfirst && c->first[k] >= ' ' && c->first[k] < 0x7f; k++)
            said[k] = (char)c->first[k];
        said[k] = '\0';
        snprintf(why, sizeof why, "the bridge answered the TLS handshake in plain text%s%s%s",
                 k ? " (\"" : "", said, k ? "...\")" : "");
        snprintf(fix, sizeof fix,
                 "this bridge serves ws:// (--allow-ws): dial ws://%s:%d/, or give the bridge "
                 "--tls-cert and --tls-key for wss://",
                 u->host, u->port);
        conn_fail(c, HS_LOG_ERROR, "bridge_not_tls", why, fix);
        return;
    }
    tr_ws *w = c->w;
    hs_tls_peer peer = {"bridge", u->host, u->port, "--ca-file", w ? w->h->cfg.ca_file : NULL};
    if (hs_tls_verify_failure(&c->tls, &peer, why, sizeof why, fix, sizeof fix)) {
        conn_fail(c, HS_LOG_ERROR, "tls_verify_failed", why, fix);
        return;
    }
    if (closed)
        snprintf(why, sizeof why, "%s", closed);
    else
        tls_why(c, why, sizeof why);
    snprintf(fix, sizeof fix,
             "check that %s port %d is a wss:// bridge (its log, and openssl s_client -connect "
             "%s:%d)",
             u->host, u->port, u->host, u->port);
    conn_fail(c, HS_LOG_ERROR, "tls_failed", why, fix);
}

static int tls_start(tr_ws *w, ws_conn *c) {
    char err[300];
    if (!w->shared) {
        if (!(w->own.ctx = hs_tls_ctx_new(w->h->cfg.ca_file, err, sizeof err))) {
            conn_end(c, err);
            return -1;
        }
        w->shared = &w->own;
    }
    if (hs_tls_start(&c->tls, w->shared->ctx, c->url.host, !w->h->cfg.insecure, err, sizeof err) !=
        0) {
        conn_end(c, err);
        return -1;
    }
    return 0;
}

/* --- bytes on the wire ------------------------------------------------------------------------ */

typedef struct wreq {
    uv_write_t req;
    ws_conn *c;
    size_t len;
    uint8_t data[];
} wreq;

static void on_written(uv_write_t *req, int status) {
    wreq *r = (wreq *)req;
    ws_conn *c = r->c;
    c->wq -= r->len;
    free(r);
    if (c->over)
        return;
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof why, "write_failed: %s", uv_strerror(status));
        conn_end(c, why);
        return;
    }
    if (c->close_sent && c->peer_closed && c->wq == 0) {
        conn_end(c, "closed"); /* our answer to the bridge's close is out */
        return;
    }
    if (c->open && c->wq < WQ_LOW && c->w)
        kick(c);
}

/* n bytes to the socket: written now if the socket takes them, else copied and queued. */
static int wire_write(ws_conn *c, const uint8_t *p, size_t n) {
    if (c->wq == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        int k = uv_try_write((uv_stream_t *)&c->sock, &b, 1);
        if (k == (int)n)
            return 0;
        if (k < 0 && k != UV_EAGAIN) {
            char why[96];
            snprintf(why, sizeof why, "write_failed: %s", uv_strerror(k));
            conn_end(c, why);
            return -1;
        }
        if (k > 0)
            p += k, n -= (size_t)k;
    }
    wreq *r = malloc(sizeof *r + n);
    if (!r) {
        conn_end(c, "out_of_memory");
        return -1;
    }
    r->c = c;
    r->len = n;
    memcpy(r->data, p, n);
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)n);
    int rc = uv_write(&r->req, (uv_stream_t *)&c->sock, &b, 1, on_written);
    if (rc < 0) {
        free(r);
        conn_end(c, "write_failed");
        return -1;
    }
    c->wq += n;
    return 0;
}

/* What TLS has to send, to the socket. */
static int tls_flush(ws_conn *c) {
    size_t n;
    while ((n = hs_tls_pull(&c->tls, g_rd, sizeof g_rd)) > 0)
        if (wire_write(c, g_rd, n) != 0)
            return -1;
    return 0;
}

/* Plain bytes of the connection out (through TLS when there is TLS). */
static int out(ws_conn *c, const uint8_t *p, size_t n) {
    if (!hs_tls_active(&c->tls))
        return wire_write(c, p, n);
    if (hs_tls_write(&c->tls, p, n) != 0) {
        char why[200];
        tls_why(c, why, sizeof why);
        conn_end(c, why);
        return -1;
    }
    return tls_flush(c);
}

/* One client frame of n payload bytes at p, which has GP_WS_HDR_MAX bytes of headroom before
 * it: masked in place, header in front, out. */
static int write_frame(ws_conn *c, unsigned opcode, uint8_t *p, size_t n) {
    uint8_t mask[4], hdr[GP_WS_HDR_MAX];
    randombytes_buf(mask, sizeof mask);
    size_t hl = gp_ws_client_header(hdr, opcode, n, mask);
    gp_ws_mask(p, n, mask);
    memcpy(p - hl, hdr, hl);
    return out(c, p - hl, n + hl);
}

static int write_control(ws_conn *c, unsigned opcode, const uint8_t *p, size_t n) {
    uint8_t buf[GP_WS_HDR_MAX + GP_WS_CTL_MAX];
    memcpy(buf + GP_WS_HDR_MAX, p, n);
    return write_frame(c, opcode, buf + GP_WS_HDR_MAX, n);
}

static void on_close_timeout(uv_timer_t *t) {
    conn_end(t->data, "closed"); /* the bridge did not answer our close: we go anyway */
}

/* Our close frame (code 1000, or the bridge's echoed). The bridge answers it and closes. */
static void send_close(ws_conn *c, unsigned code) {
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    c->close_sent = 1;
    if (write_control(c, GP_WS_CLOSE, b, code ? 2 : 0) != 0)
        return;
    if (c->peer_closed && c->wq == 0)
        conn_end(c, "closed");
    else if (!c->peer_closed)
        uv_timer_start(&c->timer, on_close_timeout, CLOSE_FLUSH_MS, 0);
}

/* --- frames out: pulled from the core -------------------------------------------------------- */

static void pump_out(ws_conn *c) {
    tr_ws *w = c->w;
    if (!w || c->over || !c->open || c->close_sent)
        return;
    const hs_transport_up *up = w->base.up;
    while (c->wq < WQ_HIGH) {
        hs_out *o = up->pull(up->ud, &w->base, SIZE_MAX);
        if (o) {
            int failed = write_frame(c, GP_WS_BINARY, o->buf + HS_OUT_PRE, o->len) != 0;
            up->sent(up->ud, &w->base, o, !failed);
            if (failed || c->over)
                return;
        } else {
            up->sent(up->ud, &w->base, NULL, 1);
        }
        if (c->over || c->w != w)
            return;
        int more = up->pending(up->ud, &w->base);
        if (w->closing && !more) {
            send_close(c, 1000);
            return;
        }
        if (!more)
            return;
        if (!o) { /* something waits that cannot go yet: look again next loop turn */
            kick(c);
            return;
        }
    }
}

static void on_kick(uv_idle_t *k) {
    ws_conn *c = k->data;
    uv_idle_stop(k);
    pump_out(c);
}

/* --- frames in ---------------------------------------------------------------------------------
 */

static int rx_data(void *ud, unsigned opcode, const uint8_t *p, size_t n) {
    ws_conn *c = ud;
    const hs_transport_up *up = c->w->base.up;
    if (opcode != GP_WS_BINARY) {
        up->on_error(up->ud, &c->w->base, "text_message");
        return 1; /* the core closes (a GOAWAY first): read nothing more */
    }
    up->on_bytes(up->ud, &c->w->base, p, n);
    return c->over || !c->w ? 1 : 0;
}

static int rx_control(void *ud, unsigned opcode, const uint8_t *p, size_t n) {
    ws_conn *c = ud;
    if (opcode == GP_WS_PING)
        return write_control(c, GP_WS_PONG, p, n) != 0;
    if (opcode != GP_WS_CLOSE)
        return 0;
    unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : 0;
    char why[64];
    snprintf(why, sizeof why, "peer_closed code=%u", code);
    c->w->base.up->on_reason(c->w->base.up->ud, &c->w->base, why, 0);
    c->peer_closed = 1;
    if (c->close_sent)
        conn_end(c, "closed"); /* the answer to ours */
    else
        send_close(c, code && code != 1005 ? code : 1000);
    return 1;
}

/* The answer to the upgrade, possibly with frames after it. 1 upgraded (*used bytes were the
 * head), 0 more to come, -1 refused (c ended). */
static int rx_head(ws_conn *c, const uint8_t *p, size_t n, size_t *used) {
    if (!c->head && !(c->head = malloc(GP_WS_HEAD_MAX))) {
        conn_end(c, "out_of_memory");
        return -1;
    }
    size_t room = GP_WS_HEAD_MAX - c->head_len, take = n < room ? n : room;
    memcpy(c->head + c->head_len, p, take);
    size_t end = gp_ws_head_end(c->head, c->head_len + take);
    if (!end) {
        c->head_len += take;
        *used = take;
        if (c->head_len < GP_WS_HEAD_MAX)
            return 0;
        conn_end(c, "the bridge's answer to the WebSocket upgrade is too long");
        return -1;
    }
    *used = end - c->head_len;
    int status;
    char why[200];
    int rc = gp_ws_handshake_check((const char *)c->head, end, c->accept, SUBPROTOCOL, &status, why,
                                   sizeof why);
    free(c->head);
    c->head = NULL;
    if (rc != 0) {
        char fix[700];
        snprintf(fix, sizeof fix,
                 "check that %s port %d is a Ghost Port bridge's (its --listen) and that the URL's "
                 "path is /",
                 c->url.host, c->url.port);
        conn_fail(c, HS_LOG_ERROR, "bridge_upgrade_refused", why, fix);
        return -1;
    }
    return 1;
}

/* ws:// to a bridge that serves wss:// only: lws hangs up on a plain upgrade without a word
 * (how: "reset the connection"), or a TLS stack answers it with an alert. */
static void tls_expected(ws_conn *c, const char *how) {
    char why[700], fix[700];
    snprintf(why, sizeof why,
             "the bridge %s at the plain WebSocket upgrade: it expects TLS (wss://)", how);
    snprintf(fix, sizeof fix,
             "dial wss://%s:%d/ (ws:// only reaches a bridge started with --allow-ws)", c->url.host,
             c->url.port);
    conn_fail(c, HS_LOG_ERROR, "bridge_tls_expected", why, fix);
}

/* Plain bytes from the bridge. 0 on, -1 the connection is over. */
static int plain_in(ws_conn *c, const uint8_t *p, size_t n) {
    tr_ws *w = c->w;
    if (!c->open && !c->url.tls && c->head_len == 0 && n >= 2 && (p[0] == 21 || p[0] == 22) &&
        p[1] == 3) { /* a TLS alert or handshake record: the bridge expects TLS */
        tls_expected(c, "answered in TLS");
        return -1;
    }
    if (!c->open) {
        size_t used = 0;
        int rc = rx_head(c, p, n, &used);
        if (rc <= 0)
            return rc;
        c->open = 1;
        gp_ws_rx_init(&c->rx);
        w->base.up->on_open(w->base.up->ud, &w->base);
        if (c->over || c->w != w)
            return -1;
        p += used, n -= used;
    }
    if (n == 0 || c->peer_closed)
        return 0;
    gp_ws_rx_cb cb = {.ud = c, .on_data = rx_data, .on_control = rx_control};
    const char *why = NULL;
    int rc = gp_ws_rx_feed(&c->rx, p, n, &cb, &why);
    if (rc == GP_WS_PROTOCOL_ERROR) {
        char m[160];
        snprintf(m, sizeof m, "websocket_protocol_error: %s", why);
        conn_end(c, m);
        return -1;
    }
    return c->over ? -1 : 0;
}

static int send_upgrade(ws_conn *c) {
    uint8_t nonce[16], sha[20];
    char key[32], keyed[32 + sizeof WS_GUID], req[1024], host[300];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2base64(key, sizeof key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
    snprintf(keyed, sizeof keyed, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)keyed, strlen(keyed), sha);
    sodium_bin2base64(c->accept, sizeof c->accept, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
    snprintf(host, sizeof host, c->url.ipv6 ? "[%s]:%d" : "%s:%d", c->url.host, c->url.port);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: " SUBPROTOCOL "\r\n\r\n",
                     c->url.path, host, key);
    if (n < 0 || (size_t)n >= sizeof req) {
        conn_end(c, "the bridge URL's path is too long");
        return -1;
    }
    return out(c, (const uint8_t *)req, (size_t)n);
}

/* TLS: the handshake, then what it decrypts. 0 on, -1 over. */
static int tls_in(ws_conn *c) {
    if (!c->tls_done) {
        int r = hs_tls_handshake(&c->tls);
        if (tls_flush(c) != 0)
            return -1;
        if (r != 1) {
            if (r == 0)
                return 0;
            tls_handshake_failed(c, NULL);
            return -1;
        }
        c->tls_done = 1;
        if (send_upgrade(c) != 0)
            return -1;
    }
    for (;;) {
        int k = hs_tls_read(&c->tls, g_plain, sizeof g_plain);
        if (k > 0) {
            if (plain_in(c, g_plain, (size_t)k) != 0)
                return -1;
            continue;
        }
        if (k == HS_TLS_WANT)
            break;
        if (k == HS_TLS_EOF) {
            conn_end(c, "closed");
            return -1;
        }
        char why[200];
        tls_why(c, why, sizeof why);
        conn_end(c, why);
        return -1;
    }
    return tls_flush(c); /* what reading produced (a key update's answer) */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    (void)h, (void)hint;
    *b = uv_buf_init((char *)g_rd, sizeof g_rd);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    ws_conn *c = s->data;
    if (c->over || n == 0)
        return;
    if (n < 0) {
        if (!c->open && !c->url.tls && c->head_len == 0 && (n == UV_EOF || n == UV_ECONNRESET))
            tls_expected(c, n == UV_EOF ? "closed the connection" : "reset the connection");
        else if (!c->open && c->url.tls && !c->tls_done)
            tls_handshake_failed(c, n == UV_EOF ? "the bridge closed the connection during the "
                                                  "TLS handshake"
                                                : uv_strerror((int)n));
        else if (n != UV_EOF)
            conn_end(c, uv_strerror((int)n));
        else if (!c->open)
            conn_end(c, "the bridge closed the connection before the upgrade");
        else
            conn_end(c, "closed");
        return;
    }
    if (!c->tls_done && c->nfirst < sizeof c->first) { /* kept for tls_handshake_failed */
        size_t k =
            sizeof c->first - c->nfirst < (size_t)n ? sizeof c->first - c->nfirst : (size_t)n;
        memcpy(c->first + c->nfirst, b->base, k);
        c->nfirst += k;
    }
    if (!hs_tls_active(&c->tls)) {
        plain_in(c, (const uint8_t *)b->base, (size_t)n);
        return;
    }
    if (hs_tls_feed(&c->tls, b->base, (size_t)n) != 0) {
        conn_end(c, "out_of_memory");
        return;
    }
    tls_in(c);
}

/* --- connecting ---------------------------------------------------------------------------- */

static void conn_unref(ws_conn *c) {
    if (--c->refs > 0)
        return;
    if (c->ai)
        uv_freeaddrinfo(c->ai);
    hs_tls_free(&c->tls);
    free(c->head);
    free(c);
}

static void on_handle_closed(uv_handle_t *h) {
    conn_unref(h->data);
}

static void try_connect(ws_conn *c);

/* The TCP connect to the last of the name's addresses failed: refused (nothing listens, or a
 * firewall rejects), unreachable, or else. */
static void connect_failed(ws_conn *c, int status) {
    char why[700], fix[700];
    const gp_ws_url *u = &c->url;
    if (status == UV_ECONNREFUSED) {
        snprintf(why, sizeof why, "nothing listens on %s port %d (connection refused)", u->host,
                 u->port);
        snprintf(fix, sizeof fix,
                 "check the port in --bridge against the bridge's --listen (default 8443), that "
                 "the bridge runs (systemctl status ghostport-bridge) and that no firewall "
                 "rejects port %d",
                 u->port);
        conn_fail(c, HS_LOG_WARN, "bridge_refused", why, fix);
    } else if (status == UV_ETIMEDOUT || status == UV_EHOSTUNREACH || status == UV_ENETUNREACH) {
        snprintf(why, sizeof why, "cannot reach %s port %d: %s", u->host, u->port,
                 uv_strerror(status));
        snprintf(fix, sizeof fix,
                 "check the address in --bridge, this machine's route to it and that no "
                 "firewall drops TCP port %d",
                 u->port);
        conn_fail(c, HS_LOG_WARN, "bridge_unreachable", why, fix);
    } else {
        snprintf(why, sizeof why, "cannot connect to %s port %d: %s", u->host, u->port,
                 uv_strerror(status));
        conn_end(c, why);
    }
}

static void on_sock_closed_retry(uv_handle_t *h) {
    ws_conn *c = h->data;
    if (!c->over)
        try_connect(c);
    conn_unref(c);
}

static void on_connect(uv_connect_t *req, int status) {
    ws_conn *c = req->data;
    if (c->over)
        return;
    if (status < 0) {
        if (c->ai_next) { /* the name's next address, once this socket is closed */
            c->sock_open = 0;
            uv_close((uv_handle_t *)&c->sock, on_sock_closed_retry);
            return;
        }
        connect_failed(c, status);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->sock, 1);
    if (uv_read_start((uv_stream_t *)&c->sock, on_alloc, on_read) != 0) {
        conn_end(c, "read_failed");
        return;
    }
    if (c->url.tls) {
        if (tls_start(c->w, c) == 0)
            tls_in(c); /* the ClientHello */
    } else {
        c->tls_done = 1;
        send_upgrade(c);
    }
}

static void try_connect(ws_conn *c) {
    struct addrinfo *a = c->ai_next;
    c->ai_next = a->ai_next;
    uv_tcp_init(c->w->loop, &c->sock);
    c->sock.data = c;
    c->sock_open = 1;
    c->refs++;
    c->con.data = c;
    int rc = uv_tcp_connect(&c->con, &c->sock, a->ai_addr, on_connect);
    if (rc < 0)
        connect_failed(c, rc);
}

/* The bridge's name did not resolve: unknown (a typo?), or DNS not answering now. */
static void dns_failed(const gp_ws_url *u, int status, char *why, size_t wn, char *fix, size_t fn) {
    snprintf(why, wn, "cannot resolve %s: %s", u->host, uv_strerror(status));
    if (status == UV_EAI_AGAIN)
        snprintf(fix, fn,
                 "DNS did not answer: check this machine's resolver (/etc/resolv.conf) and "
                 "network; the house keeps trying");
    else
        snprintf(fix, fn,
                 "check the host name in --bridge (a typo?) and that DNS knows it: getent hosts "
                 "%s",
                 u->host);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    ws_conn *c = req->data;
    c->ai = res;
    if (!c->over && (status < 0 || !res)) {
        char why[700], fix[700];
        dns_failed(&c->url, status, why, sizeof why, fix, sizeof fix);
        conn_fail(c, status == UV_EAI_AGAIN ? HS_LOG_WARN : HS_LOG_ERROR, "bridge_dns_failed", why,
                  fix);
    } else if (!c->over) {
        c->ai_next = res;
        try_connect(c);
    }
    conn_unref(c); /* the resolve's reference */
}

/* --- the end of a connection ---------------------------------------------------------------- */

/* The connection is over: its handles close, the core hears why (once). */
static void conn_end(ws_conn *c, const char *why) {
    if (c->over)
        return;
    c->over = 1;
    tr_ws *w = c->w;
    c->w = NULL;
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->sock_open) {
        c->sock_open = 0;
        uv_close((uv_handle_t *)&c->sock, on_handle_closed);
    }
    if (w && w->c == c) {
        w->c = NULL;
        w->closing = 0;
        w->base.up->on_closed(w->base.up->ud, &w->base, why);
    }
}

/* The connection failed for a cause recognised: its own line (transport.h, on_cause), then
 * the end. */
static void conn_fail(ws_conn *c, int level, const char *event, const char *why, const char *fix) {
    tr_ws *w = c->w;
    if (!c->over && w && w->c == c && w->base.up->on_cause)
        w->base.up->on_cause(w->base.up->ud, &w->base, level, event, fix);
    conn_end(c, why);
}

/* --- the transport's operations --------------------------------------------------------------- */

static int ws_dial(hs_transport *t, const char *url) {
    tr_ws *w = (tr_ws *)t;
    gp_ws_url u;
    if (gp_ws_url_parse(url, &u) != 0 || u.rudp)
        return HS_TR_BAD_URL;
    ws_conn *c = calloc(1, sizeof *c);
    if (!c) {
        t->up->on_reason(t->up->ud, t, "out_of_memory", 1);
        return -1;
    }
    c->url = u;
    w->tls = u.tls;
    w->closing = 0;
    if (t->up->on_dialing(t->up->ud, t, u.tls) != 0) {
        free(c);
        return -1;
    }
    c->w = w;
    uv_idle_init(w->loop, &c->kick);
    uv_timer_init(w->loop, &c->timer);
    c->kick.data = c->timer.data = c->gai.data = c;
    c->refs = 3; /* kick, timer, the resolve */
    w->c = c;
    char port[8];
    snprintf(port, sizeof port, "%d", u.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(w->loop, &c->gai, on_resolved, u.host, port, &hints);
    if (rc < 0) {
        c->refs--; /* no resolve: no callback */
        char why[700], fix[700];
        dns_failed(&u, rc, why, sizeof why, fix, sizeof fix);
        t->up->on_reason(t->up->ud, t, why, 1);
        if (t->up->on_cause)
            t->up->on_cause(t->up->ud, t, HS_LOG_ERROR, "bridge_dns_failed", fix);
        w->c = NULL; /* failed at once: reported by our return, not on_closed */
        c->w = NULL;
        c->over = 1;
        uv_close((uv_handle_t *)&c->kick, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return -1;
    }
    return 0;
}

static void ws_send(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (w->c && w->c->open)
        kick(w->c);
}

static void ws_close(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    ws_conn *c = w->c;
    if (!c)
        return;
    if (!c->open) { /* still connecting: nothing to say goodbye to */
        conn_end(c, "closed");
        return;
    }
    w->closing = 1;
    uv_timer_start(&c->timer, on_close_timeout, CLOSE_FLUSH_MS, 0);
    kick(c);
}

static void ws_drop(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    ws_conn *c = w->c;
    if (c && !c->connected && c->ai) { /* the core's deadline, the TCP connect still waiting */
        char why[700], fix[700];
        snprintf(why, sizeof why, "no answer from %s port %d (the TCP connect timed out)",
                 c->url.host, c->url.port);
        snprintf(fix, sizeof fix,
                 "check the address in --bridge and that no firewall drops TCP port %d on the "
                 "way",
                 c->url.port);
        t->up->on_reason(t->up->ud, t, why, 1);
        conn_fail(c, HS_LOG_WARN, "bridge_unreachable", why, fix);
    } else if (c)
        conn_end(c, "closed");
}

/* From inside the loop: everything goes. An open connection gets a close frame (1001, going
 * away) on its way out if the socket takes it at once. */
static void ws_stop(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    ws_conn *c = w->c;
    if (!c)
        return;
    if (c->open && !c->close_sent) {
        c->close_sent = 1;
        c->peer_closed = 1; /* no answer awaited */
        uint8_t code[2] = {1001 >> 8, 1001 & 0xff};
        (void)write_control(c, GP_WS_CLOSE, code, 2);
    }
    conn_end(c, "closed");
}

static void ws_free(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (w->c) { /* stop() was not called: let the connection go without telling the core */
        ws_conn *c = w->c;
        w->c = NULL;
        c->w = NULL;
        conn_end(c, "closed");
    }
    SSL_CTX_free(w->own.ctx);
    free(w);
}

static const char *ws_label(hs_transport *t) {
    return ((tr_ws *)t)->tls ? "wss" : "ws";
}

static const hs_transport_ops ws_ops = {
    .flags = 0,
    .dial = ws_dial,
    .send = ws_send,
    .close = ws_close,
    .drop = ws_drop,
    .stop = ws_stop,
    .free = ws_free,
    .label = ws_label,
};

hs_transport *hs_tr_ws_new(hs_house *h, const hs_transport_up *up) {
    tr_ws *w = calloc(1, sizeof *w);
    if (!w) {
        hs_log(HS_LOG_ERROR, "out_of_memory", NULL);
        return NULL;
    }
    w->base.ops = &ws_ops;
    w->base.up = up;
    w->h = h;
    w->loop = h->loop;
    w->shared = h->ws_shared;
    for (size_t i = 0; i < h->cfg.nbridges; i++) {
        const char *u = h->cfg.bridges[i];
        if (strncmp(u, "ws://", 5) == 0)
            hs_log(HS_LOG_WARN, "plain_ws", "bridge=%s note=\"no TLS: testing only\"", hs_qs(u));
    }
    if (h->cfg.insecure)
        hs_log(HS_LOG_WARN, "tls_insecure",
               "note=\"bridge certificates are not verified: testing only\"");
    return &w->base;
}
