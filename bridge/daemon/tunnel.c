/* tunnel.c — the WebSocket transport of the bridge: libwebsockets on our libuv loop, frame
 * reassembly and writing, and the handshake of proto/PROTOCOL.md (HELLO -> CHALLENGE ->
 * AUTH -> WELCOME) with rate limiting and decoy secrets. What follows the handshake is the
 * transport-neutral conn.c. I/O side; the codec and the proofs are proto/'s pure functions. */
#include "tunnel.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "flood.h"
#include "requests.h"

#include <errno.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(LWS_PRE <= BR_OUT_PRE, "br_out headroom must hold LWS_PRE");

/* A message normally holds one frame; allow a few frames' worth before calling it abuse. */
#define MAX_MESSAGE_BYTES (4u * (GP_DEFAULT_MAX_FRAME + GP_FRAME_HEADER_LEN))

/* A listener and what it was given: its connections find it through their transport
 * record (c->tp->ctx), lws callbacks through the context's user pointer. */
struct br_tunnel {
    const br_env *env;
    br_conns *conns;
    br_houses *houses;
    br_requests *reqs;
    br_flood *flood;
    br_transport tp_ws, tp_wss; /* ctx: this tunnel */
    br_tunnel *next_sink;       /* the list of lws's log sink (below) */
    /* Scratch for lazily encoded body frames (single-threaded: one write at a time). */
    uint8_t zbuf[GP_BODY_CHUNK];
    uint8_t wbuf[LWS_PRE + GP_FRAME_HEADER_LEN + GP_BODY_CHUNK + 64];
};

/* lws 4.1's log sink (lws_set_log_level) is process-wide and carries no user pointer, and
 * an EMFILE on accept(2) reaches us only as one of its lines (lws_log_emit): the tunnels
 * that listen are listed here so that line reaches their flood guards. The one mutable
 * file-scope variable below main.c (scripts/check-layers.py allows it by name). */
static br_tunnel *s_log_sinks;

static br_tunnel *tunnel_of(const br_conn *c) {
    return c->tp->ctx;
}

static br_tunnel *tunnel_of_wsi(struct lws *wsi) {
    return lws_context_user(lws_get_context(wsi));
}

static struct lws *wsi_of(const br_conn *c) {
    return c->tpd;
}

static void ws_kick(br_conn *c) {
    if (c->tpd)
        lws_callback_on_writable(wsi_of(c));
}

static void ws_rx_pause(br_conn *c, int pause) {
    if (c->tpd)
        lws_rx_flow_control(wsi_of(c), pause ? 0 : 1);
}

/* Closing is asynchronous: the GOAWAY is flushed from the writeable callback, which then
 * returns -1; a short lws timeout bounds the wait for a peer that stopped reading. */
static void ws_close(br_conn *c) {
    if (!c->tpd)
        return;
    lws_set_timeout(wsi_of(c), PENDING_TIMEOUT_USER_OK, 3);
    lws_callback_on_writable(wsi_of(c));
}

static void protocol_error(br_conn *c, const char *why, const char *detail) {
    br_conn_protocol_error(c, why, detail);
}

/* --- handshake -------------------------------------------------------------------------- */

/* What to do about a failed authentication of house id (reason: unknown_house or wrong_secret). */
static const char *auth_fix(const char *reason, const char *id, char *fix, size_t n) {
    if (strcmp(reason, "unknown_house") == 0)
        snprintf(fix, n,
                 "no house %s is registered (or its secret is sealed under another --master-key: "
                 "secret_unreadable): register it with ghostport house add %s and give it the "
                 "secret printed, or correct the house's --id",
                 id, id);
    else
        snprintf(fix, n,
                 "the house holds another secret than the registered one: give it the secret "
                 "printed by ghostport house add %s --force (which re-issues it)",
                 id);
    return fix;
}

static void on_secret(redisReply *rep, void *ud) {
    br_conn *c = ud;
    br_tunnel *tn = tunnel_of(c);
    if (!br_conn_alive(c) || c->state != BR_CS_LOOKUP) {
        br_conn_unref(c);
        return;
    }
    gp_str id = gp_str_c(c->house);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        br_logr(BR_LOG_WARN, "auth_unavailable", "house=%s addr=%s err=%s", c->house, c->addr,
                br_qs(rep ? rep->str : "redis unavailable"));
        br_conn_close(c, GP_GOAWAY_DRAINING, "registry unavailable, retry later");
        br_conn_unref(c);
        return;
    }
    c->secret_known = 0;
    /* HMGET secret disabled */
    const redisReply *sec =
        rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 ? rep->element[0] : NULL;
    const redisReply *dis = sec ? rep->element[1] : NULL;
    c->disabled = dis && dis->type == REDIS_REPLY_STRING && dis->len == 1 && dis->str[0] == '1';
    if (sec && sec->type == REDIS_REPLY_STRING) {
        gp_str stored = {(const uint8_t *)sec->str, sec->len};
        int rc = gp_secret_open(tn->env->master_key, id, stored, c->secret);
        if (rc == 0)
            c->secret_known = 1;
        else
            br_log(BR_LOG_WARN, "secret_unreadable", "house=%s err=%s hint=%s", c->house,
                   gp_strerror(rc), rc == GP_ERR_AUTH ? "check --master-key" : "corrupt value");
    }
    /* Unknown (or unreadable) id: answer exactly as for a known one, under a decoy secret. */
    if (!c->secret_known)
        gp_auth_decoy_secret(tn->env->server_key, id, c->secret);
    randombytes_buf(c->bn, sizeof c->bn);
    uint8_t proof[GP_PROOF_LEN];
    gp_auth_proof(GP_ROLE_BRIDGE, c->secret, id, c->hn, c->bn, proof);
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_CHALLENGE, 0, 0);
    f.u.challenge.nonce = c->bn;
    f.u.challenge.proof = proof;
    c->state = BR_CS_CHALLENGED;
    br_conn_send(c, &f);
    br_conn_unref(c);
}

static void rate_limited(br_conn *c, gp_str id) {
    br_logr(BR_LOG_WARN, "auth_rate_limited", "addr=%s house=%s transport=%s", c->addr,
            br_q((const char *)id.p, id.len), c->tp->name);
    br_conn_close(c, GP_GOAWAY_RATE_LIMIT, "too many failed attempts");
}

static void on_hello(br_conn *c, const gp_frame *f) {
    br_tunnel *tn = tunnel_of(c);
    gp_str id = f->u.hello.house_id;
    if (f->u.hello.min_ver > GP_PROTO_MAX || f->u.hello.max_ver < GP_PROTO_MIN ||
        f->u.hello.min_ver > f->u.hello.max_ver) {
        br_log(BR_LOG_WARN, "protocol_error", "addr=%s reason=version min=%u max=%u", c->addr,
               f->u.hello.min_ver, f->u.hello.max_ver);
        br_conn_close(c, GP_GOAWAY_PROTOCOL, "unsupported protocol version");
        return;
    }
    c->proto = f->u.hello.max_ver < GP_PROTO_MAX ? f->u.hello.max_ver : GP_PROTO_MAX;
    /* An early check that charges nothing: a handshake that could not be verified is not
     * worth a Redis lookup. The token is taken at AUTH, right before the proof is checked. */
    if (!gp_authlimit_allow(tn->env->auth_ws, gp_str_c(c->addr), id, br_env_now(tn->env))) {
        rate_limited(c, id);
        return;
    }
    if (!gp_house_id_valid(id)) {
        /* Cannot exist, so refusing early reveals nothing; still counts as a failure. */
        (void)gp_authlimit_take(tn->env->auth_ws, gp_str_c(c->addr), id, br_env_now(tn->env));
        gp_metric_inc(tn->env->metrics->auth_failures, c->tp->name);
        br_logr(BR_LOG_WARN, "auth_failed",
                "addr=%s house=%s transport=%s reason=invalid_id fix=\"a house id is 1-64 of "
                "[A-Za-z0-9_.-]: correct the house's --id\"",
                c->addr, br_q((const char *)id.p, id.len), c->tp->name);
        br_conn_close(c, GP_GOAWAY_AUTH, "authentication failed");
        return;
    }
    memcpy(c->house, id.p, id.len);
    c->house[id.len] = '\0';
    memcpy(c->hn, f->u.hello.nonce, GP_NONCE_LEN);

    char key[GP_KEY_MAX];
    gp_key_house(key, tn->env->cfg->prefix, c->house);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "HMGET");
    br_args_str(&a, key);
    br_args_str(&a, "secret");
    br_args_str(&a, "disabled");
    c->state = BR_CS_LOOKUP;
    br_conn_ref(c);
    if (br_db_cmd(tn->env->db, on_secret, c, &a) != 0)
        on_secret(NULL, c);
}

/* A failed authentication on c: counted and logged (rate-limited), with what to do. by_house:
 * the house hung up at the CHALLENGE rather than sending a proof we refused. */
static void auth_failed(br_conn *c, int by_house) {
    gp_metric_inc(tunnel_of(c)->env->metrics->auth_failures, c->tp->name);
    const char *reason = c->secret_known ? "wrong_secret" : "unknown_house";
    char fix[400];
    br_logr(BR_LOG_WARN, "auth_failed", "addr=%s house=%s transport=%s reason=%s%s fix=%s", c->addr,
            c->house, c->tp->name, reason, by_house ? " by=house" : "",
            br_qs(auth_fix(reason, c->house, fix, sizeof fix)));
}

static void on_auth(br_conn *c, const gp_frame *f) {
    br_tunnel *tn = tunnel_of(c);
    gp_str id = gp_str_c(c->house), addr = gp_str_c(c->addr);
    /* Charged now, before the proof is checked (given back if it is right): handshakes run in
     * parallel cannot have more proofs checked than the budget holds. Unknown ids are charged
     * the same as known ones. */
    if (!gp_authlimit_take(tn->env->auth_ws, addr, id, br_env_now(tn->env))) {
        sodium_memzero(c->secret, sizeof c->secret);
        rate_limited(c, id);
        return;
    }
    /* Verified under the decoy secret too, so an unknown id costs the same time. */
    int proof_ok = gp_auth_verify(GP_ROLE_HOUSE, c->secret, id, c->hn, c->bn, f->u.auth.proof) == 0;
    int ok = proof_ok && c->secret_known;
    sodium_memzero(c->secret, sizeof c->secret);
    if (!ok) {
        auth_failed(c, 0);
        br_conn_close(c, GP_GOAWAY_AUTH, "authentication failed");
        return;
    }
    gp_authlimit_refund(tn->env->auth_ws, addr, id,
                        br_env_now(tn->env)); /* a right proof costs nothing */
    if (c->disabled) {
        /* The house proved who it is, so telling it why is safe; not a failed attempt. */
        br_logr(BR_LOG_INFO, "auth_refused", "addr=%s house=%s transport=%s reason=disabled",
                c->addr, c->house, c->tp->name);
        br_conn_close(c, GP_GOAWAY_AUTH, GP_GOAWAY_MSG_DISABLED);
        return;
    }
    c->state = BR_CS_CLAIMING;
    br_house_claim(tn->houses, c);
}

/* --- incoming frames -------------------------------------------------------------------- */

static void on_frame(br_conn *c, const gp_frame *f) {
    br_tunnel *tn = tunnel_of(c);
    c->last_rx_ms = br_env_now(tn->env); /* any frame proves the house alive */
    switch (c->state) {
    case BR_CS_HELLO:
        if (f->type == GP_FRAME_HELLO)
            on_hello(c, f);
        else
            protocol_error(c, "unexpected_frame", gp_frame_type_name(f->type));
        return;
    case BR_CS_CHALLENGED:
        if (f->type == GP_FRAME_AUTH) {
            on_auth(c, f);
            if (c->state == BR_CS_CLAIMING || c->state == BR_CS_LIVE)
                br_flood_authed(tn->flood, wsi_of(c)); /* proved who it is: no longer pre-auth */
        } else
            protocol_error(c, "unexpected_frame", gp_frame_type_name(f->type));
        return;
    case BR_CS_LOOKUP:
    case BR_CS_CLAIMING:
        protocol_error(c, "unexpected_frame", gp_frame_type_name(f->type));
        return;
    case BR_CS_CLOSING:
        return;
    case BR_CS_LIVE:
        br_conn_frame(c, f);
        return;
    }
}

static void on_receive(br_conn *c, struct lws *wsi, const void *in, size_t len) {
    if (c->state == BR_CS_CLOSING)
        return;
    if (!lws_frame_is_binary(wsi)) {
        protocol_error(c, "text_message", NULL);
        return;
    }
    if (lws_is_first_fragment(wsi))
        c->msg_bytes = 0;
    c->msg_bytes += len;
    if (c->msg_bytes > MAX_MESSAGE_BYTES) {
        protocol_error(c, "message_too_large", NULL);
        return;
    }
    int rc = gp_framer_feed(c->fr, in, len);
    gp_frame *f = malloc(sizeof *f); /* gp_frame is large (header buffer): keep it off the stack */
    if (!f)
        rc = GP_ERR_NOMEM;
    while (rc == 0 && c->state != BR_CS_CLOSING) {
        rc = gp_framer_next(c->fr, f);
        if (rc <= 0)
            break;
        on_frame(c, f);
        rc = 0;
    }
    free(f);
    if (rc < 0 && c->state != BR_CS_CLOSING)
        protocol_error(c, rc == GP_ERR_TOO_LARGE ? "frame_too_large" : "bad_frame",
                       gp_strerror(rc));
}

/* --- writing ---------------------------------------------------------------------------- */

static int on_writeable(br_conn *c, struct lws *wsi) {
    br_tunnel *tn = tunnel_of(c);
    br_out *o = br_conn_pop(c);
    if (o) {
        int w = lws_write(wsi, o->buf + BR_OUT_PRE, o->len, LWS_WRITE_BINARY);
        size_t len = o->len;
        free(o);
        if (w < (int)len)
            return -1;
    } else if (c->state == BR_CS_LIVE) {
        gp_frame f;
        uint8_t *spent;
        if (br_req_next_body(tn->reqs, c, &f, tn->zbuf, sizeof tn->zbuf, &spent)) {
            ssize_t n = gp_frame_encode(&f, tn->wbuf + LWS_PRE, sizeof tn->wbuf - LWS_PRE);
            free(spent);
            if (n < 0) {
                br_log(BR_LOG_ERROR, "frame_encode_failed", "house=%s err=%s", c->house,
                       gp_strerror((int)n));
                return -1;
            }
            if (lws_write(wsi, tn->wbuf + LWS_PRE, (size_t)n, LWS_WRITE_BINARY) < (int)n)
                return -1;
        }
    }
    if (c->q_head || (c->state == BR_CS_LIVE && c->body_head)) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->state == BR_CS_CLOSING) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    return 0;
}

/* --- lws glue --------------------------------------------------------------------------- */

static void on_established(struct lws *wsi, br_conn **slot) {
    br_tunnel *tn = tunnel_of_wsi(wsi);
    char a[64] = "";
    lws_get_peer_simple(wsi, a, sizeof a);
    /* IPv4 peers on a dual-stack socket show up as ::ffff:a.b.c.d */
    br_conn *c = br_conn_new(tn->conns, lws_is_ssl(wsi) ? &tn->tp_wss : &tn->tp_ws, wsi,
                             strncmp(a, "::ffff:", 7) == 0 ? a + 7 : a);
    if (c && !(c->fr = gp_framer_new(GP_DEFAULT_MAX_FRAME))) {
        c->tpd = NULL;
        br_conn_closed(c, "out_of_memory");
        c = NULL;
    }
    *slot = c;
    br_flood_upgraded(tn->flood, wsi);
    if (c && tn->env->stopping)
        br_conn_close(c, GP_GOAWAY_DRAINING, "bridge shutting down");
}

/* The house hung up after our CHALLENGE instead of answering it: its secret does not prove
 * ours (a wrong secret, or an unknown id under the decoy), so it gave up, as PROTOCOL.md says
 * a house does. Logged and counted as a failed authentication, as a wrong AUTH is, and charged
 * to the same budget: a client that hangs up at every CHALLENGE gets no free lookups. */
static void challenge_refused(br_conn *c) {
    br_tunnel *tn = tunnel_of(c);
    sodium_memzero(c->secret, sizeof c->secret);
    (void)gp_authlimit_take(tn->env->auth_ws, gp_str_c(c->addr), gp_str_c(c->house),
                            br_env_now(tn->env));
    auth_failed(c, 1);
}

static void on_closed(br_conn *c) {
    /* Only when the house hung up: a connection the bridge shed (too many pre-auth ones from
     * its address) closes in this state too, and counting those made 1000 houses dialing from
     * one address at once exhaust its failed-auth budget and back off for good. */
    if (c->state == BR_CS_CHALLENGED && !br_flood_was_shed(c->tpd))
        challenge_refused(c);
    /* Bytes left in the framer mean the peer hung up in the middle of a frame: worth a
     * warning, as a truncated frame is either a broken house or someone probing. */
    size_t partial = gp_framer_pending(c->fr);
    c->tpd = NULL;
    br_conn_closed(c, partial ? "truncated_frame" : NULL);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    /* Connection life, before `user` is our slot (flood.c counts pre-auth connections). */
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        br_flood_accepted(
            tunnel_of_wsi(wsi)->flood,
            (const struct sockaddr *)&((struct lws_filter_network_conn_args *)user)->cli_addr);
        return 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        br_flood_adopted(tunnel_of_wsi(wsi)->flood, wsi);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        br_flood_destroyed(tunnel_of_wsi(wsi)->flood, wsi);
        return 0;
    default:
        break;
    }
    br_conn **slot = user;
    br_conn *c = slot ? *slot : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64] = "";
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0 || strcmp(uri, "/") != 0)
            return 1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        on_established(wsi, slot);
        return *slot ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (c)
            on_receive(c, wsi, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? on_writeable(c, wsi) : 0;
    case LWS_CALLBACK_CLOSED:
        if (c) {
            *slot = NULL;
            on_closed(c);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return -1; /* only WebSocket upgrades are served */
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* lws gives every connection a receive buffer of this size for as long as it lives. Frames
 * are reassembled by gp_framer whatever the piece size, so a small buffer costs a few more
 * callbacks per large body and saves ~60 KiB per held house: with 64 KiB, 10,000 idle houses
 * would slowly touch 600 MiB as the heap is reused. */
#define RX_BUFFER 4096

/* Descriptors kept out of lws's table (a quarter of the limit when that is less): Redis (two
 * per node, up to 64 nodes), the admin port (64 connections), UDP, uv's own, files. */
#define FD_RESERVE 320

static const struct lws_protocols protocols[] = {
    /* First, so an upgrade that names no subprotocol still lands here. */
    {"ghostport.v1", callback, sizeof(br_conn *), RX_BUFFER, 0, NULL, GP_BODY_CHUNK + 4096},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* lws's lines: a peer can trigger them at will, so they are rate-limited. lws 4.1 logs a
 * failed accept(2) and returns, leaving the listening socket readable: out of descriptors,
 * that is a busy loop, which flood.c breaks. */
static void lws_log_emit(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (strstr(line, "accept: errno 24") || strstr(line, "accept: errno 23"))
        for (br_tunnel *tn = s_log_sinks; tn; tn = tn->next_sink)
            br_flood_emfile(tn->flood);
    br_logr(level == LLL_ERR    ? BR_LOG_ERROR
            : level == LLL_WARN ? BR_LOG_WARN
                                : BR_LOG_DEBUG,
            "lws", "msg=%s", br_q(line, n));
}

/* 1 when another socket already listens on bind:port (which lws would fail on after
 * building half a context, see br_tunnel_start). A probe bind with SO_REUSEADDR, as lws
 * binds: a port in TIME_WAIT is not taken. Port 0 is never taken. */
static int port_taken(const char *bind_addr, int port) {
    if (port <= 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST},
                    *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const char *host = bind_addr && *bind_addr ? bind_addr : NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return 0; /* a name, not an address: lws resolves it (an interface name) */
    int taken = 0;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        taken = bind(fd, res->ai_addr, res->ai_addrlen) != 0 && errno == EADDRINUSE;
        close(fd);
    }
    freeaddrinfo(res);
    return taken;
}

br_tunnel *br_tunnel_new(const br_env *env, br_conns *conns, br_houses *houses, br_requests *reqs,
                         br_flood *flood) {
    br_tunnel *tn = calloc(1, sizeof *tn);
    if (!tn)
        return NULL;
    tn->env = env;
    tn->conns = conns;
    tn->houses = houses;
    tn->reqs = reqs;
    tn->flood = flood;
    tn->tp_ws = (br_transport){
        .name = "ws", .kick = ws_kick, .close = ws_close, .ctx = tn, .rx_pause = ws_rx_pause};
    tn->tp_wss = tn->tp_ws;
    tn->tp_wss.name = "wss";
    return tn;
}

void br_tunnel_free(br_tunnel *tn) {
    if (!tn)
        return;
    for (br_tunnel **p = &s_log_sinks; *p; p = &(*p)->next_sink)
        if (*p == tn) {
            *p = tn->next_sink;
            break;
        }
    free(tn);
}

int br_tunnel_start(br_tunnel *tn, struct lws_context **lws, int *listen_port) {
    const br_env *env = tn->env;
    const br_config *cfg = env->cfg;
    int tls = cfg->tls_cert && *cfg->tls_cert;
    lws_set_log_level(LLL_ERR | LLL_WARN | (br_log_enabled(BR_LOG_DEBUG) ? LLL_NOTICE : 0),
                      lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {env->loop};
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.foreign_loops = loops;
    info.pcontext = lws;
    info.user = tn;
    info.port = (int)cfg->listen;
    /* lws binds the wildcard address when iface is NULL. */
    if (cfg->bind && *cfg->bind && strcmp(cfg->bind, "0.0.0.0") != 0 &&
        strcmp(cfg->bind, "::") != 0)
        info.iface = cfg->bind;
    if (cfg->bind && strchr(cfg->bind, '.') && !strchr(cfg->bind, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = 10;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    if (port_taken(cfg->bind, (int)cfg->listen)) {
        br_log(BR_LOG_ERROR, "listen_failed", "bind=%s port=%lld tls=%d err=%s", br_qs(cfg->bind),
               cfg->listen, tls, br_qs(strerror(EADDRINUSE)));
        return -1;
    }
    /* lws sizes its descriptor table from the soft limit it sees when the context is made,
     * and stops accepting when that table is full. Show it the limit less a reserve for the
     * rest (Redis, the admin port, UDP, files), then give the process its limit back: the
     * table fills before the process does, so accept(2) does not meet EMFILE in a flood. */
    struct rlimit rl;
    unsigned lws_fds = 1u << 20;
    int lowered = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 64) {
        rlim_t reserve = rl.rlim_cur / 4 < FD_RESERVE ? rl.rlim_cur / 4 : FD_RESERVE;
        struct rlimit lower = {rl.rlim_cur - reserve, rl.rlim_max};
        lowered = setrlimit(RLIMIT_NOFILE, &lower) == 0;
        if (lowered) /* lws takes a limit over 10,000,000 for a mistake and uses 2,560 */
            lws_fds = lower.rlim_cur > 10000000 ? 2560 : (unsigned)lower.rlim_cur;
    }
    *lws = lws_create_context(&info);
    if (lowered)
        setrlimit(RLIMIT_NOFILE, &rl);
    br_flood_init(tn->flood, lws, listen_port, lws_fds);
    tn->next_sink = s_log_sinks;
    s_log_sinks = tn;
    if (!*lws) {
        br_log(BR_LOG_ERROR, "listen_failed", "bind=%s port=%lld tls=%d", br_qs(cfg->bind),
               cfg->listen, tls);
        return -1;
    }
    /* lws 4.1 returns a context even when its default vhost could not listen (lost a race
     * for the port checked above), and destroying that context on a foreign loop later jumps
     * into freed memory. A bridge houses cannot reach must not look started: exit now,
     * without a teardown (the OS takes back what it holds). */
    struct lws_vhost *vh = lws_get_vhost_by_name(*lws, "default");
    if (!vh) {
        br_log(BR_LOG_ERROR, "listen_failed", "bind=%s port=%lld tls=%d err=%s", br_qs(cfg->bind),
               cfg->listen, tls, br_qs("cannot listen (see the lws lines above)"));
        fflush(stderr);
        _exit(1);
    }
    *listen_port = lws_get_vhost_listen_port(vh);
    br_log(BR_LOG_INFO, "listening",
           "bind=%s port=%d transport=%s max_fds=%llu lws_fds=%u preauth_max=%u "
           "preauth_per_addr=%u",
           br_qs(cfg->bind), *listen_port, tls ? "wss" : "ws",
           (unsigned long long)(lowered ? rl.rlim_cur : 0), lws_fds, br_flood_cap_total(tn->flood),
           br_flood_cap_addr(tn->flood));
    return 0;
}
