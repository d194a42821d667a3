/* udp.c — the house's rudp:// transport (proto/RUDP.md, "The tunnel over rudp"): a libuv UDP
 * socket towards one bridge, the session handshake (gp_sess: initiation, retransmits,
 * cookies), then a gp_rudp carrying the tunnel's frames, one message each on its stream's
 * lane. tunnel.c decides what to send (hs_tunnel_fill) and what frames mean; this file moves
 * datagrams. Also the probe: a handshake alone, to learn whether UDP gets through again while
 * the house is on wss. I/O side. */
#include "house.h"
#include "rudp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MTU GP_SESS_MTU_DEFAULT
#define CLOSE_LINGER_MS 500 /* a closing session stays this long to get its GOAWAY across */
/* The handshake on a bad link: an initiation (and so its response) goes out twice, so that
 * at 30% loss a round trip succeeds 83% of the time instead of 49%; it is repeated after
 * 0.5 s (x1.5 each time, at most 3 s), and after 8 s without an answer UDP is taken not to get
 * through (the house moves on: to wss when it has a wss:// bridge too). */
#define HELLO_COPIES 2
#define HELLO_RTO_NS (500ull * 1000000ull)
#define HELLO_LIFETIME_NS (8ull * 1000000000ull)

/* One UDP path to a bridge: the connection, or the probe. */
typedef struct upath {
    int probe;
    int active, closing;
    unsigned gen;   /* bumped on every reset: a late DNS answer for an older dial is ignored */
    uv_udp_t *sock; /* one per session: a closing one may still be in libuv's hands */
    int port;
    struct sockaddr_storage addr;
    gp_sess *hs; /* handshaking */
    gp_rudp *ru; /* established */
    uv_timer_t timer, kick;
    uint64_t close_at;
} upath;

static upath g_conn = {.probe = 0}, g_probe = {.probe = 1};
static uint64_t g_retx_gone, g_fec_gone; /* of sessions already over (metrics) */
static uint8_t g_rx[65536], g_tx[MTU + 64];
static uint64_t g_last_wall;
static int g_timers;

static void on_rand(void *ud, uint8_t *p, size_t n) {
    (void)ud;
    randombytes_buf(p, n);
}

static uint64_t now_ns(void) {
    return uv_hrtime();
}

/* Initiation timestamps must grow strictly, across handshakes of this process too. */
static uint64_t next_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t w = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (w <= g_last_wall)
        w = g_last_wall + 1;
    return g_last_wall = w;
}

static void on_sock_closed(uv_handle_t *h) {
    free(h);
}

/* Everything of the path goes; no callback to tunnel.c. */
static void path_reset(upath *u) {
    u->gen++;
    if (u->sock) {
        uv_udp_recv_stop(u->sock);
        uv_close((uv_handle_t *)u->sock, on_sock_closed);
        u->sock = NULL;
    }
    if (g_timers) {
        uv_timer_stop(&u->timer);
        uv_timer_stop(&u->kick);
    }
    if (u->ru && !u->probe) {
        gp_rudp_stats st;
        gp_rudp_stats_get(u->ru, &st);
        g_retx_gone += st.rel.retransmits;
        g_fec_gone += st.rel.fec_repaired;
    }
    gp_sess_free(u->hs);
    gp_rudp_free(u->ru);
    u->hs = NULL;
    u->ru = NULL;
    u->active = u->closing = 0;
}

/* The path ended by itself (dead, refused, closed): tell tunnel.c. */
static void path_end(upath *u, const char *why) {
    path_reset(u);
    if (u->probe)
        hs_tunnel_probe_result(0);
    else
        hs_tunnel_udp_gone(why);
}

static void send_now(upath *u, const uint8_t *b, size_t len) {
    uv_buf_t buf = uv_buf_init((char *)b, (unsigned)len);
    /* A datagram the kernel cannot take now is a lost one: the engine sends it again. */
    uv_udp_try_send(u->sock, &buf, 1, (const struct sockaddr *)&u->addr);
}

static void arm(upath *u);

/* The initiation, HELLO_COPIES times (each in its own disguise). 0, or -1 when it is too old
 * to send again. */
static int send_hello(upath *u, uint64_t now) {
    for (int i = 0; i < HELLO_COPIES; i++) {
        ssize_t n = gp_sess_client_hello(u->hs, g_tx, sizeof g_tx, now);
        if (n < 0)
            return -1;
        send_now(u, g_tx, (size_t)n);
    }
    return 0;
}

/* Frames from tunnel.c into the engine, then the engine's datagrams onto the wire. */
static void pump(upath *u) {
    if (!u->ru)
        return;
    if (!u->probe)
        hs_tunnel_fill(u->ru);
    uint64_t now = now_ns();
    ssize_t n;
    while ((n = gp_rudp_output(u->ru, g_tx, sizeof g_tx, now)) > 0)
        send_now(u, g_tx, (size_t)n);
    if (n < 0 || gp_rudp_dead(u->ru)) {
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
        if (send_hello(u, now) != 0)
            path_end(u, "rudp_no_answer");
        else
            arm(u);
        return;
    }
    pump(u);
}

static void arm(upath *u) {
    uint64_t next = u->hs ? gp_sess_expiry(u->hs) : u->ru ? gp_rudp_expiry(u->ru) : UINT64_MAX;
    uint64_t now = now_ns();
    uint64_t ms = next == UINT64_MAX ? 60000 : next <= now ? 0 : (next - now + 999999) / 1000000;
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
    uint32_t lane;
    const uint8_t *m;
    ssize_t n;
    while (u->ru && (n = gp_rudp_recv(u->ru, &lane, &m)) != 0)
        if (n > 0)
            hs_tunnel_udp_frame(m, (size_t)n); /* may close us: u->ru then NULL */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h, (void)suggested;
    *buf = uv_buf_init((char *)g_rx, sizeof g_rx);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
    (void)flags, (void)from;
    upath *u = h->data;
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
        conf.jitter_ms = (unsigned)g_hs.cfg.rudp_jitter_ms;
        u->ru = gp_rudp_new(u->hs, &conf, on_rand, NULL, now); /* takes the session over */
        u->hs = NULL;
        if (!u->ru) {
            path_end(u, "out_of_memory");
            return;
        }
        if (u->probe) {
            /* UDP gets through. The probe's session is not used: the bridge forgets it. */
            path_reset(u);
            hs_tunnel_probe_result(1);
            return;
        }
        hs_tunnel_udp_up();
        pump(u); /* the first datagram confirms the session to the bridge */
        return;
    }
    if (!u->ru || gp_rudp_input(u->ru, b, (size_t)n, now, NULL) != 0)
        return;
    hs_tunnel_udp_heard();
    deliver(u);
    if (u->ru)
        pump(u);
}

static void start_session(upath *u) {
    u->hs = gp_sess_client_new(
        &(gp_sess_conf){.hello_rto_ns = HELLO_RTO_NS, .hello_lifetime_ns = HELLO_LIFETIME_NS},
        g_hs.bridge_key, gp_str_c(g_hs.cfg.id), g_hs.secret, on_rand, NULL, now_ns(), next_wall());
    int rc = -1;
    if (u->hs && (u->sock = malloc(sizeof *u->sock)) != NULL) {
        if ((rc = uv_udp_init(g_hs.loop, u->sock)) != 0) {
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
        path_end(u, "dns_failed");
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
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    if (uv_getaddrinfo(g_hs.loop, &g->req, on_resolved, host, NULL, &hints) != 0) {
        free(g);
        u->active = 0;
        return -1;
    }
    return 0;
}

/* --- API for tunnel.c ----------------------------------------------------------------------- */

void hs_udp_init(void) {
    upath *paths[2] = {&g_conn, &g_probe};
    for (int i = 0; i < 2; i++) {
        uv_timer_init(g_hs.loop, &paths[i]->timer);
        uv_timer_init(g_hs.loop, &paths[i]->kick);
        paths[i]->timer.data = paths[i]->kick.data = paths[i];
    }
    g_timers = 1;
}

int hs_udp_dial(const char *host, int port) {
    return path_dial(&g_conn, host, port);
}

int hs_udp_probe(const char *host, int port) {
    return path_dial(&g_probe, host, port);
}

void hs_udp_kick(void) {
    /* From the loop, not from inside whoever queued a frame (it may be mid-stream). */
    if (g_conn.ru && !uv_is_active((uv_handle_t *)&g_conn.kick))
        uv_timer_start(&g_conn.kick, on_kick, 0, 0);
}

void hs_udp_close(void) {
    upath *u = &g_conn;
    if (!u->active || u->closing)
        return;
    if (!u->ru) { /* still resolving or handshaking: nothing to flush */
        path_end(u, NULL);
        return;
    }
    u->closing = 1;
    u->close_at = hs_now_ms() + CLOSE_LINGER_MS;
    hs_udp_kick(); /* the GOAWAY, from the loop */
}

void hs_udp_flush_now(void) {
    upath *u = &g_conn;
    if (!u->ru)
        return;
    hs_tunnel_fill(u->ru);
    ssize_t n;
    /* Far enough in the future that jittered datagrams count as due: nothing waits now. */
    while ((n = gp_rudp_output(u->ru, g_tx, sizeof g_tx, now_ns() + 1000000000ull)) > 0)
        send_now(u, g_tx, (size_t)n);
}

void hs_udp_stop(void) {
    path_reset(&g_conn);
    path_reset(&g_probe);
    if (g_timers) {
        upath *paths[2] = {&g_conn, &g_probe};
        for (int i = 0; i < 2; i++) {
            uv_close((uv_handle_t *)&paths[i]->timer, NULL);
            uv_close((uv_handle_t *)&paths[i]->kick, NULL);
        }
        g_timers = 0;
    }
}

void hs_udp_metrics(double *rtt_ms, double *loss, uint64_t *retransmits, uint64_t *fec_repaired) {
    *rtt_ms = *loss = 0;
    *retransmits = g_retx_gone;
    *fec_repaired = g_fec_gone;
    if (!g_conn.ru)
        return;
    gp_rudp_stats st;
    gp_rudp_stats_get(g_conn.ru, &st);
    *rtt_ms = (double)st.rel.srtt_ns / 1e6;
    *loss = st.rel.loss_rate_tx > st.rel.loss_rate_rx ? st.rel.loss_rate_tx : st.rel.loss_rate_rx;
    *retransmits += st.rel.retransmits;
    *fec_repaired += st.rel.fec_repaired;
}

void hs_udp_stats(char *out, size_t cap) {
    out[0] = '\0';
    if (!g_conn.ru)
        return;
    gp_rudp_stats st;
    gp_rudp_stats_get(g_conn.ru, &st);
    snprintf(out, cap,
             "srtt_ms=%.1f loss_tx=%.3f loss_rx=%.3f retransmits=%llu fec_repaired=%llu "
             "cwnd=%llu",
             (double)st.rel.srtt_ns / 1e6, st.rel.loss_rate_tx, st.rel.loss_rate_rx,
             (unsigned long long)st.rel.retransmits, (unsigned long long)st.rel.fec_repaired,
             (unsigned long long)st.rel.cwnd_bytes);
}
