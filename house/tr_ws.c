/* tr_ws.c — the house's ws:// and wss:// transport (transport.h): a libwebsockets client on
 * the house's libuv loop, in an lws context of its own or in one shared by the houses of a
 * process (hs_house.ws_ctx, hs_ws_context_new). It owns its context (when not shared), the wsi,
 * TLS options (--ca-file, --insecure), the WebSocket close handshake and lws's log; the frames
 * it carries and what they mean are the tunnel core's (tunnel.c). Received binary messages
 * go up as a byte stream (a frame may span messages); writes pull one frame per WRITEABLE.
 * I/O side. */
#include "house.h"
#include "transport.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBPROTOCOL "ghostport.v1"
#define CLOSE_FLUSH_S 2      /* seconds lws may take to flush a GOAWAY before it kills */
#define HANDSHAKE_S (15 + 5) /* lws's own timeout: the core's 15 s deadline fires first */

_Static_assert(LWS_PRE <= HS_OUT_PRE, "the core's headroom fits lws's");

typedef struct tr_ws {
    hs_transport base; /* first: the callback finds us from it */
    hs_house *h;
    struct lws_context *ctx;
    int shared;  /* ctx is hs_house.ws_ctx: its owner destroys it */
    int stopped; /* shared: our connection was told to go (once) */
    struct lws *wsi;
    int active;  /* a connection of ours is under way: dialled, its end not reported yet */
    int open;    /* established */
    int closing; /* close asked: flush what the core gives, then close */
    int tls;
} tr_ws;

/* Our wsi carries us as its opaque user data (from the connect info); in a context of our
 * own, the context's user data says it too (before lws has copied the former). */
static tr_ws *of_wsi(struct lws *wsi) {
    tr_ws *w = lws_get_opaque_user_data(wsi);
    return w ? w : lws_context_user(lws_get_context(wsi));
}

static void ended(tr_ws *w, const char *why) {
    w->active = w->open = w->closing = 0;
    w->wsi = NULL;
    w->base.up->on_closed(w->base.up->ud, &w->base, why);
}

static int on_writeable(tr_ws *w, struct lws *wsi) {
    const hs_transport_up *up = w->base.up;
    hs_out *o = up->pull(up->ud, &w->base, SIZE_MAX);
    if (o) {
        int n = lws_write(wsi, o->buf + HS_OUT_PRE, o->len, LWS_WRITE_BINARY);
        int short_write = n < (int)o->len;
        up->sent(up->ud, &w->base, o, !short_write);
        if (short_write) {
            up->on_reason(up->ud, &w->base, "write_failed", 1);
            return -1;
        }
    } else {
        up->sent(up->ud, &w->base, NULL, 1);
    }
    int more = up->pending(up->ud, &w->base);
    if (w->closing && !more) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    if (more)
        lws_callback_on_writable(wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    tr_ws *w = of_wsi(wsi);
    /* A late callback of an older connection must not touch the current one. */
    int ours = w && w->active && (!w->wsi || wsi == w->wsi);
    const hs_transport_up *up = w ? w->base.up : NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (ours) {
            char why[160];
            snprintf(why, sizeof why, "%s", in ? (const char *)in : "connect_failed");
            ended(w, why);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (ours && !w->open) {
            w->wsi = wsi;
            w->open = 1;
            up->on_open(up->ud, &w->base);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!ours)
            return 0;
        if (!lws_frame_is_binary(wsi))
            up->on_error(up->ud, &w->base, "text_message");
        else
            up->on_bytes(up->ud, &w->base, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return ours ? on_writeable(w, wsi) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (ours) {
            unsigned code = len >= 2 ? ((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1] : 0;
            char why[64];
            snprintf(why, sizeof why, "peer_closed code=%u", code);
            up->on_reason(up->ud, &w->base, why, 0);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (ours)
            ended(w, "closed");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* A wsi killed while still connecting (the core's handshake deadline) gets neither of
         * the above: this is the one callback every wsi ends with. */
        if (ours && wsi == w->wsi)
            ended(w, "closed");
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {SUBPROTOCOL, callback, 0, GP_BODY_CHUNK + 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
static const struct lws_protocols protocols_small_rx[] = {
    /* HS_WS_SMALL_RX */
    {SUBPROTOCOL, callback, 0, 4096 + GP_FRAME_HEADER_LEN, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int ws_dial(hs_transport *t, const char *url) {
    tr_ws *w = (tr_ws *)t;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", url);
    const char *prot = NULL, *ads = NULL, *path = NULL;
    int port = 0;
    if (lws_parse_uri(buf, &prot, &ads, &port, &path) || !ads || !*ads)
        return HS_TR_BAD_URL;
    int tls = strcmp(prot, "wss") == 0;
    char fullpath[400], host[300];
    snprintf(fullpath, sizeof fullpath, "/%s", path ? path : "");
    snprintf(host, sizeof host, "%s:%d", ads, port);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = w->ctx;
    i.address = ads;
    i.port = port;
    i.path = fullpath;
    i.host = host;
    i.origin = host;
    i.protocol = SUBPROTOCOL;
    i.local_protocol_name = SUBPROTOCOL;
    i.opaque_user_data = w;
    if (tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (w->h->cfg.insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    w->tls = tls;
    w->wsi = NULL;
    w->open = w->closing = 0;
    if (t->up->on_dialing(t->up->ud, t, tls) != 0)
        return -1;
    w->active = 1;
    struct lws *c = lws_client_connect_via_info(&i);
    if (!w->active)
        return -1; /* lws already reported the failure through the callback */
    if (!c) {
        w->active = 0;
        return -1;
    }
    w->wsi = c;
    return 0;
}

static void ws_send(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (w->wsi)
        lws_callback_on_writable(w->wsi);
}

static void ws_close(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (!w->wsi)
        return;
    w->closing = 1;
    if (w->open) {
        lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_FLUSH_S);
        lws_callback_on_writable(w->wsi);
    } else {
        /* Still connecting (only the core's tick gets here, outside any lws callback). lws
         * 4.1 ignores LWS_TO_KILL_ASYNC on a connecting wsi, so kill it now. */
        lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

/* From inside the loop: lws closes the connection (CLIENT_CLOSED -> on_closed) and its own
 * handles; it NULLs w->ctx through info.pcontext once libuv has closed them. In a shared
 * context only our connection goes (the owner destroys the context). */
static void ws_stop(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (w->shared) {
        if (w->wsi && !w->stopped)
            lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK,
                            w->open ? LWS_TO_KILL_ASYNC : LWS_TO_KILL_SYNC);
        w->stopped = 1;
        return;
    }
    if (w->ctx)
        lws_context_destroy(w->ctx);
}

static void ws_free(hs_transport *t) {
    tr_ws *w = (tr_ws *)t;
    if (w->ctx && !w->shared)
        lws_context_destroy(w->ctx);
    w->ctx = NULL;
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
    .stop = ws_stop,
    .free = ws_free,
    .label = ws_label,
};

static void lws_log_emit(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    hs_log(level == LLL_ERR ? HS_LOG_WARN : HS_LOG_DEBUG, "lws", "msg=%s", hs_q(line, n));
}

/* A client context on loop; user: what the callback finds for a wsi not yet ours. */
static struct lws_context *context_new(uv_loop_t *loop, const char *ca_file, unsigned flags,
                                       void *user, struct lws_context **pcontext) {
    /* lws's log is the process's: the last context made sets its level. */
    lws_set_log_level(LLL_ERR | (hs_log_enabled(HS_LOG_DEBUG) ? LLL_WARN | LLL_NOTICE : 0),
                      lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {loop};
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.pcontext = pcontext;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = flags & HS_WS_SMALL_RX ? protocols_small_rx : protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = user;
    info.timeout_secs = HANDSHAKE_S;
    if (ca_file && *ca_file)
        info.client_ssl_ca_filepath = ca_file;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        hs_log(HS_LOG_ERROR, "lws_init_failed", NULL);
    return ctx;
}

struct lws_context *hs_ws_context_new(uv_loop_t *loop, const char *ca_file, unsigned flags,
                                      struct lws_context **pcontext) {
    return context_new(loop, ca_file, flags, NULL, pcontext);
}

hs_transport *hs_tr_ws_new(hs_house *h, const hs_transport_up *up) {
    tr_ws *w = calloc(1, sizeof *w);
    if (!w) {
        hs_log(HS_LOG_ERROR, "out_of_memory", NULL);
        return NULL;
    }
    w->base.ops = &ws_ops;
    w->base.up = up;
    w->h = h;
    if (h->ws_ctx) {
        w->ctx = h->ws_ctx;
        w->shared = 1;
    } else if (!(w->ctx = context_new(h->loop, h->cfg.ca_file, 0, w, &w->ctx))) {
        free(w);
        return NULL;
    }
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
