/* tr_rudp.c — the house's rudp:// transport (transport.h; proto/RUDP.md, "The tunnel over
 * rudp"): a libuv UDP socket towards one bridge, the session handshake (gp_sess: initiation,
 * retransmits, cookies), then a gp_rudp carrying the tunnel's frames, one message each on its
 * stream's lane. The tunnel core decides what to send (pulled while the engine has room) and
 * what frames mean; this file moves datagrams. Also the probe: a handshake alone, to learn
 * whether UDP gets through again while the house is on wss. One per house. I/O side. */
#include "house.h"
#include "rudp.h"
#include "transport.h"
#include "wsframe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLOSE_LINGER_MS 500 /* a closing session stays this long to get its GOAWAY across */
/* The handshake on a bad link: an initiation (and so its response) goes out twice, so that
 * at 30% loss a round trip succeeds 83% of the time instead of 49%; it is repeated after
 * 0.5 s (x1.5 each time, at most 3 s), and after 8 s without an answer UDP is taken not to get
 * through (the house moves on: to wss when it has a wss:// bridge too). */
#define HELLO_COPIES 2
#define HELLO_RTO_NS (500ull * 1000000ull)
#define HELLO_LIFETIME_NS (8ull * 1000000000ull)

typedef struct tr_rudp tr_rudp;

/* One UDP path to a bridge: the connection, or the probe. */
typedef struct upath {
    tr_rudp *r;
    int probe;
    int active, closing;
    unsigned gen;   /* bumped on every reset: a late DNS answer for an older dial is ignored */
    uv_udp_t *sock; /* one per session: a closing one may still be in libuv's hands */
    int port;
    char host[256]; /* as dialed, for the lines that say why a dial failed */
    struct sockaddr_storage addr;
    gp_sess *hs; /* handshaking */
    gp_rudp *ru; /* established */
    uv_timer_t timer, kick;
    uint64_t close_at;
} upath;

struct tr_rudp {
    hs_transport base;
    hs_house *h;
    upath conn, probe;
    uint64_t retx_gone, fec_gone; /* of sessions already over (metrics) */
    uint64_t last_wall;
    int timers;
    uint8_t rx[65536], tx[GP_RUDP_MTU_MAX + 64];
};

static void on_rand(void *ud, uint8_t *p, size_t n) {
    (void)ud;
    randombytes_buf(p, n);
}

static uint64_t now_ns(void) {
    return uv_hrtime();
}

/* Initiation timestamps must grow strictly, across handshakes of this process too. */
static uint64_t next_wall(tr_rudp *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t w = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (w <= r->last_wall)
        w = r->last_wall + 1;
    return r->last_wall = w;
}

static void on_sock_closed(uv_handle_t *h) {
    free(h);
}

/* Everything of the path goes; no callback to the core. */
static void path_reset(upath *u) {
    tr_rudp *r = u->r;
    u->gen++;
    if (u->sock) {
        uv_udp_recv_stop(u->sock);
        uv_close((uv_handle_t *)u->sock, on_sock_closed);
        u->sock = NULL;
    }
    if (r->timers) {
        uv_timer_stop(&u->timer);
        uv_timer_stop(&u->kick);
    }
    if (u->ru && !u->probe) {
        gp_rudp_stats st;
        gp_rudp_stats_get(u->ru, &st);
        r->retx_gone += st.rel.retransmits;
        r->fec_gone += st.rel.fec_repaired;
    }
    gp_sess_free(u->hs);
    gp_rudp_free(u->ru);
    u->hs = NULL;
    u->ru = NULL;
    u->active = u->closing = 0;
}

/* The path ended by itself (dead, refused, closed): tell the core. */
static void path_end(upath *u, const char *why) {
    const hs_transport_up *up = u->r->base.up;
    path_reset(u);
    if (u->probe)
        up->on_probe(up->ud, &u->r->base, 0);
    else
        up->on_closed(up->ud, &u->r->base, why);
}

/* The dial failed for a cause recognised: its own line (transport.h, on_cause), then the end. */
static void path_fail(upath *u, int level, const char *event, const char *why, const char *fix) {
    const hs_transport_up *up = u->r->base.up;
    if (!u->probe && up->on_cause) {
        up->on_reason(up->ud, &u->r->base, why, 1);
        up->on_cause(up->ud, &u->r->base, level, event, fix);
    }
    path_end(u, why);
}

/* Frames from the core into the engine while it has room. */
static void fill(tr_rudp *r, gp_rudp *ru) {
    const hs_transport_up *up = r->base.up;
    hs_out *o;
    while ((o = up->pull(up->ud, &r->base, gp_rudp_send_space(ru))) != NULL) {
        int rc = gp_rudp_send(ru, o->lane, o->buf + HS_OUT_PRE, o->len);
        if (rc != 0)
            hs_log(HS_LOG_ERROR, "rudp_send_failed", "err=%s", gp_strerror(rc));
        up->sent(up->ud, &r->base, o, 1);
    }
}

static void send_now(void *ud, const uint8_t *b, size_t len) {
    upath *u = ud;
    uv_buf_t buf = uv_buf_init((char *)b, (unsigned)len);
    /* A datagram the kernel cannot take now is a lost one: the engine sends it again. */
    uv_udp_try_send(u->sock, &buf, 1, (const struct sockaddr *)&u->addr);
}

static void arm(upath *u);

/* The initiation, HELLO_COPIES times (each in its own disguise). 0, or -1 when it is too old
 * to send again. */
static int send_hello(upath *u, uint64_t now) {
    for (int i = 0; i < HELLO_COPIES; i++) {
        ssize_t n = gp_sess_client_hello(u->hs, u->r->tx, sizeof u->r->tx, now);
        if (n < 0)
            return -1;
        send_now(u, u->r->tx, (size_t)n);
    }
    return 0;
}

/* Frames from the core into the engine, then the engine's datagrams onto the wire. */
static void pump(upath *u) {
    if (!u->ru)
        return;
    if (!u->probe)
        fill(u->r, u->ru);
    if (gp_rudp_flush(u->ru, u->r->tx, sizeof u->r->tx, now_ns(), send_now, u) != 0) {
        path_end(u, "rudp_dead");
        return;
    }
    arm(u);
}

static void on_timer(uv_timer_t *t) {
    upath *u = t->data;
    uint64_t now = now_ns();
    if (u->closing && hs_now_ms() >= u->close_at) {
        path_end(u, NULL);
        return;
    }
    if (u->hs) { /* still handshaking: the next retransmit of the initiation */
        if (send_hello(u, now) != 0) {
            /* A bridge answers no initiation it cannot accept (proto/RUDP.md): an unknown id,
             * a wrong secret or a wrong --bridge-key look like a bridge that is not there. */
            char why[400], fix[700];
            snprintf(why, sizeof why, "no answer from rudp://%s:%d to the session handshake",
                     u->host, u->port);
            snprintf(fix, sizeof fix,
                     "check that the bridge listens on UDP port %d (--rudp-listen) and that no "
                     "firewall drops it, that --bridge-key is the bridges' public key (ghostport "
                     "rudp-keygen --show KEYFILE), and the id and secret (ghostport house list; "
                     "ghostport house add ID --force): a bridge stays silent to each of these",
                     u->port);
            path_fail(u, HS_LOG_WARN, "bridge_no_answer", why, fix);
        } else
            arm(u);
        return;
    }
    pump(u);
}

static void arm(upath *u) {
    uint64_t next = u->hs ? gp_sess_expiry(u->hs) : u->ru ? gp_rudp_expiry(u->ru) : UINT64_MAX;
    uint64_t ms = gp_rudp_timer_ms(next, now_ns());
    if (u->closing) {
        uint64_t left = u->close_at > hs_now_ms() ? u->close_at - hs_now_ms() : 0;
        if (left < ms)
            ms = left;
    }
    uv_timer_start(&u->timer, on_timer, ms, 0);
}

static void on_kick(uv_timer_t *t) {
    pump(t->data);
}

static void deliver(upath *u) {
    const hs_transport_up *up = u->r->base.up;
    uint32_t lane;
    const uint8_t *m;
    ssize_t n;
    while (u->ru && (n = gp_rudp_recv(u->ru, &lane, &m)) != 0)
        if (n > 0)
            up->on_frame(up->ud, &u->r->base, m, (size_t)n); /* may close us: u->ru NULL */
    while (u->ru && (n = gp_rudp_recv_dgram(u->ru, &m)) != 0)
        if (n > 0 && up->on_dgram)
            up->on_dgram(up->ud, &u->r->base, m, (size_t)n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    tr_rudp *r = ((upath *)h->data)->r;
    *buf = uv_buf_init((char *)r->rx, sizeof r->rx);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
    (void)flags, (void)from;
    upath *u = h->data;
    const hs_transport_up *up = u->r->base.up;
    if (n <= 0 || !u->active || u->closing)
        return;
    const uint8_t *b = (const uint8_t *)buf->base;
    uint64_t now = now_ns();
    if (u->hs) {
        unsigned f = 0;
        uint8_t scratch[64];
        if (gp_sess_open(u->hs, b, (size_t)n, scratch, sizeof scratch, now, &f) < 0)
            return;                  /* not for us: dropped and counted */
        if (f & GP_SESS_RX_COOKIE) { /* the bridge is under load: ask again, with the cookie */
            send_hello(u, now);
            return;
        }
        if (!(f & GP_SESS_RX_ESTABLISHED))
            return;
        gp_rudp_conf conf;
        gp_rudp_conf_init(&conf);
        conf.jitter_ms = (unsigned)u->r->h->cfg.rudp_jitter_ms;
        u->ru = gp_rudp_new(u->hs, &conf, on_rand, NULL, now); /* takes the session over */
        u->hs = NULL;
        if (!u->ru) {
            path_end(u, "out_of_memory");
            return;
        }
        if (u->probe) {
            /* UDP gets through. The probe's session is not used: the bridge forgets it. */
            path_reset(u);
            up->on_probe(up->ud, &u->r->base, 1);
            return;
        }
        up->on_open(up->ud, &u->r->base);
        pump(u); /* the first datagram confirms the session to the bridge */
        return;
    }
    if (!u->ru || gp_rudp_input(u->ru, b, (size_t)n, now, NULL) != 0)
        return;
    up->on_heard(up->ud, &u->r->base);
    deliver(u);
    if (u->ru)
        pump(u);
}

static void start_session(upath *u) {
    hs_house *h = u->r->h;
    u->hs = gp_sess_client_new(
        &(gp_sess_conf){.hello_rto_ns = HELLO_RTO_NS, .hello_lifetime_ns = HELLO_LIFETIME_NS},
        h->bridge_key, gp_str_c(h->cfg.id), h->secret, on_rand, NULL, now_ns(), next_wall(u->r));
    int rc = -1;
    if (u->hs && (u->sock = malloc(sizeof *u->sock)) != NULL) {
        if ((rc = uv_udp_init(h->loop, u->sock)) != 0) {
            free(u->sock);
            u->sock = NULL;
        } else {
            u->sock->data = u;
            rc = uv_udp_recv_start(u->sock, on_alloc, on_recv);
        }
    }
    if (rc != 0 || send_hello(u, now_ns()) != 0) {
        path_end(u, "rudp_setup_failed");
        return;
    }
    arm(u);
}

typedef struct gai {
    uv_getaddrinfo_t req;
    upath *u;
    unsigned gen;
} gai;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    gai *g = req->data;
    upath *u = g->u;
    int stale = g->gen != u->gen || !u->active;
    free(g);
    if (stale) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status != 0 || !res) {
        uv_freeaddrinfo(res);
        char why[400], fix[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", u->host, uv_strerror(status));
        if (status == UV_EAI_AGAIN)
            snprintf(fix, sizeof fix,
                     "DNS did not answer: check this machine's resolver (/etc/resolv.conf) and "
                     "network; the house keeps trying");
        else
            snprintf(fix, sizeof fix,
                     "check the host name in --bridge (a typo?) and that DNS knows it: getent "
                     "hosts %s",
                     u->host);
        path_fail(u, status == UV_EAI_AGAIN ? HS_LOG_WARN : HS_LOG_ERROR, "bridge_dns_failed", why,
                  fix);
        return;
    }
    memset(&u->addr, 0, sizeof u->addr);
    memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
    if (u->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&u->addr)->sin_port = htons((uint16_t)u->port);
    else
        ((struct sockaddr_in6 *)&u->addr)->sin6_port = htons((uint16_t)u->port);
    uv_freeaddrinfo(res);
    start_session(u);
}

static int path_dial(upath *u, const char *host, int port) {
    path_reset(u);
    gai *g = malloc(sizeof *g);
    if (!g)
        return -1;
    g->u = u;
    g->gen = u->gen;
    g->req.data = g;
    u->active = 1;
    u->port = port;
    snprintf(u->host, sizeof u->host, "%s", host);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    if (uv_getaddrinfo(u->r->h->loop, &g->req, on_resolved, host, NULL, &hints) != 0) {
        free(g);
        u->active = 0;
        return -1;
    }
    return 0;
}

/* --- the transport's ops (transport.h) ---------------------------------------------------- */

/* A rudp:// URL, read by the parser tr_ws.c reads its URLs with. */
static int parse_url(const char *url, gp_ws_url *u) {
    return gp_ws_url_parse(url, u) == 0 && u->rudp ? 0 : -1;
}

static int rudp_dial(hs_transport *t, const char *url) {
    gp_ws_url d;
    if (parse_url(url, &d) != 0)
        return HS_TR_BAD_URL;
    if (t->up->on_dialing(t->up->ud, t, 0) != 0)
        return -1;
    /* The session handshake authenticates both ends: no HELLO/CHALLENGE/AUTH follows, the
     * bridge's WELCOME does (on_open). */
    return path_dial(&((tr_rudp *)t)->conn, d.host, d.port);
}

static int rudp_probe(hs_transport *t, const char *url) {
    gp_ws_url d;
    return parse_url(url, &d) != 0 ? -1 : path_dial(&((tr_rudp *)t)->probe, d.host, d.port);
}

static void rudp_send(hs_transport *t) {
    upath *u = &((tr_rudp *)t)->conn;
    /* From the loop, not from inside whoever queued a frame (it may be mid-stream). */
    if (u->ru && !uv_is_active((uv_handle_t *)&u->kick))
        uv_timer_start(&u->kick, on_kick, 0, 0);
}

static void rudp_close(hs_transport *t) {
    upath *u = &((tr_rudp *)t)->conn;
    if (!u->active || u->closing)
        return;
    if (!u->ru) { /* still resolving or handshaking: nothing to flush */
        path_end(u, NULL);
        return;
    }
    u->closing = 1;
    u->close_at = hs_now_ms() + CLOSE_LINGER_MS;
    rudp_send(t); /* the GOAWAY, from the loop */
}

static void rudp_flush_now(hs_transport *t) {
    tr_rudp *r = (tr_rudp *)t;
    upath *u = &r->conn;
    if (!u->ru)
        return;
    fill(r, u->ru);
    ssize_t n;
    /* Far enough in the future that jittered datagrams count as due: nothing waits now. */
    while ((n = gp_rudp_output(u->ru, r->tx, sizeof r->tx, now_ns() + 1000000000ull)) > 0)
        send_now(u, r->tx, (size_t)n);
}

static void rudp_stop(hs_transport *t) {
    tr_rudp *r = (tr_rudp *)t;
    path_reset(&r->conn);
    path_reset(&r->probe);
    if (r->timers) {
        upath *paths[2] = {&r->conn, &r->probe};
        for (int i = 0; i < 2; i++) {
            uv_close((uv_handle_t *)&paths[i]->timer, NULL);
            uv_close((uv_handle_t *)&paths[i]->kick, NULL);
        }
        r->timers = 0;
    }
}

static void rudp_free(hs_transport *t) {
    free(t); /* after rudp_stop and the loop: nothing of it is in libuv's hands */
}

static void rudp_metrics(hs_transport *t, double *rtt_ms, double *loss, uint64_t *retransmits,
                         uint64_t *fec_repaired) {
    tr_rudp *r = (tr_rudp *)t;
    *rtt_ms = *loss = 0;
    *retransmits = r->retx_gone;
    *fec_repaired = r->fec_gone;
    if (!r->conn.ru)
        return;
    gp_rudp_stats st;
    gp_rudp_stats_get(r->conn.ru, &st);
    *rtt_ms = (double)st.rel.srtt_ns / 1e6;
    *loss = st.rel.loss_rate_tx > st.rel.loss_rate_rx ? st.rel.loss_rate_tx : st.rel.loss_rate_rx;
    *retransmits += st.rel.retransmits;
    *fec_repaired += st.rel.fec_repaired;
}

/* "srtt_ms=... loss_tx=..." of the session (an empty line without one). */
static void rudp_log_stats(hs_transport *t) {
    tr_rudp *r = (tr_rudp *)t;
    char out[256] = "";
    if (r->conn.ru) {
        gp_rudp_stats st;
        gp_rudp_stats_get(r->conn.ru, &st);
        snprintf(out, sizeof out,
                 "srtt_ms=%.1f loss_tx=%.3f loss_rx=%.3f retransmits=%llu fec_repaired=%llu "
                 "cwnd=%llu",
                 (double)st.rel.srtt_ns / 1e6, st.rel.loss_rate_tx, st.rel.loss_rate_rx,
                 (unsigned long long)st.rel.retransmits, (unsigned long long)st.rel.fec_repaired,
                 (unsigned long long)st.rel.cwnd_bytes);
    }
    hs_log(HS_LOG_DEBUG, "rudp_stats", "%s", out);
}

static const char *rudp_label(hs_transport *t) {
    (void)t;
    return "rudp";
}

static int rudp_send_dgram(hs_transport *t, const uint8_t *p, size_t n) {
    upath *u = &((tr_rudp *)t)->conn;
    if (!u->ru || u->closing)
        return GP_ERR_STATE;
    int rc = gp_rudp_send_dgram(u->ru, p, n, now_ns());
    if (rc == 0)
        rudp_send(t); /* out from the loop, with whatever else comes in this turn */
    return rc;
}

static size_t rudp_dgram_max(hs_transport *t) {
    upath *u = &((tr_rudp *)t)->conn;
    return u->ru ? gp_rudp_dgram_max(u->ru) : 0;
}

static int rudp_set_mtu(hs_transport *t, size_t mtu) {
    upath *u = &((tr_rudp *)t)->conn;
    return u->ru ? gp_rudp_set_mtu(u->ru, mtu) : GP_ERR_STATE;
}

static const hs_transport_ops rudp_ops = {
    .flags = HS_TR_AUTHENTICATES | HS_TR_UNORDERED,
    .dial = rudp_dial,
    .send = rudp_send,
    .close = rudp_close,
    .flush_now = rudp_flush_now,
    .stop = rudp_stop,
    .free = rudp_free,
    .probe = rudp_probe,
    .metrics = rudp_metrics,
    .log_stats = rudp_log_stats,
    .label = rudp_label,
    .send_dgram = rudp_send_dgram,
    .dgram_max = rudp_dgram_max,
    .set_mtu = rudp_set_mtu,
};

hs_transport *hs_tr_rudp_new(hs_house *h, const hs_transport_up *up) {
    tr_rudp *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base.ops = &rudp_ops;
    r->base.up = up;
    r->h = h;
    upath *paths[2] = {&r->conn, &r->probe};
    for (int i = 0; i < 2; i++) {
        paths[i]->r = r;
        paths[i]->probe = i;
        uv_timer_init(h->loop, &paths[i]->timer);
        uv_timer_init(h->loop, &paths[i]->kick);
        paths[i]->timer.data = paths[i]->kick.data = paths[i];
    }
    r->timers = 1;
    return &r->base;
}
