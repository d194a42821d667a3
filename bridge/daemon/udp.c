/* udp.c — the rudp:// transport of the bridge (proto/RUDP.md, "The tunnel over rudp"): one
 * libuv UDP socket, the session server (handshakes, cookies, amplification budget), and one
 * peer per session carrying a gp_rudp. A peer becomes a br_conn once the house's first
 * datagram confirms its session; from there on it is a house connection like any other
 * (conn.c), its frames one message each on the lane of their stream. I/O side: sockets,
 * timers and Redis here, the protocol in proto/. */
#include "udp.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_state.h"
#include "list.h"
#include "requests.h"
#include "rudp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLOSE_LINGER_MS 1000   /* a closing peer keeps its session this long for the GOAWAY */
#define UNDER_LOAD_PENDING 256 /* secret lookups in flight above which cookies are asked */
#define PEER_BUCKETS 4096u
/* Addresses that have not shown they receive at their address: one proof from each may be
 * checked at a time, and once one fails the address must answer a cookie (mac2) for a
 * minute before another is checked (proto/RUDP.md, "Failed-auth budgets"). */
#define UNPROVEN_BURST 1
#define UNPROVEN_PER_MIN 1
#define UNPROVEN_SLOTS 4096

typedef struct br_udp br_udp;

typedef struct br_peer {
    br_udp *u;
    struct br_peer *hnext; /* cid table */
    uint64_t cid;
    gp_rudp *ru;
    br_conn *c; /* NULL until the session is confirmed */
    struct sockaddr_storage addr;
    socklen_t alen;
    int validated; /* its address answered: out of the handshake's 3x budget */
    int closing;
    uint64_t close_at; /* loop ms */
    uv_timer_t timer;
} br_peer;

/* A secret lookup in flight for a parsed initiation. */
typedef struct lookup {
    br_udp *u;
    gp_sess_hs *hs;
    struct sockaddr_storage addr;
    socklen_t alen;
    char house[GP_MAX_HOUSE_ID + 1];
    int proven; /* the initiation carried a valid mac2: its sender receives at addr */
} lookup;

/* The rudp listener and its sessions. Peers and lookups point back to it; its conns find it
 * through their transport record (c->tp->ctx), the socket through its handle's data. */
struct br_udp {
    const br_env *env;
    br_conns *conns;
    br_houses *houses;
    br_requests *reqs;
    br_transport tp; /* ctx: this br_udp */
    /* The session lookup and replay-floor scripts (texts and SHAs): store_house.h. */
    br_script lookup, ts;
    int on, port; /* listening, on that port */
    uv_udp_t sock;
    gp_sess_server *srv;
    gp_ratelimit *unproven; /* by host: initiations whose sender answered no cookie */
    br_peer *table[PEER_BUCKETS];
    unsigned npeers, pending;
    uint64_t retx_gone, fec_gone; /* counters of sessions already freed (for the metrics) */
    uint8_t rx[65536];
    uint8_t tx[GP_RUDP_MTU_MAX + 64];
    uint8_t zbuf[GP_BODY_CHUNK];
    uint8_t wbuf[GP_FRAME_HEADER_LEN + GP_BODY_CHUNK + 64];
};

static void on_rand(void *ud, uint8_t *p, size_t n) {
    (void)ud;
    randombytes_buf(p, n);
}

static uint64_t now_ns(void) {
    return uv_hrtime();
}

static void addr_str(const struct sockaddr_storage *a, char *out, size_t cap) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
    }
    /* IPv4 peers on a dual-stack socket show up as ::ffff:a.b.c.d */
    const char *p = strncmp(ip, "::ffff:", 7) == 0 ? ip + 7 : ip;
    snprintf(out, cap, "%s:%d", p, port);
}

/* The rate limiter and logs key addresses without the port (NATs change ports). */
static void addr_host(const struct sockaddr_storage *a, char *out, size_t cap) {
    addr_str(a, out, cap);
    char *colon = strrchr(out, ':');
    if (colon)
        *colon = '\0';
}

static int same_addr(const struct sockaddr_storage *a, socklen_t al,
                     const struct sockaddr_storage *b, socklen_t bl) {
    return al == bl && memcmp(a, b, al) == 0;
}

/* --- peers ---------------------------------------------------------------------------------- */

static br_peer *peer_find(br_udp *u, uint64_t cid) {
    for (br_peer *p = u->table[cid % PEER_BUCKETS]; p; p = p->hnext)
        if (p->cid == cid)
            return p;
    return NULL;
}

static void on_timer_closed(uv_handle_t *h) {
    br_peer *p = h->data;
    gp_rudp_free(p->ru);
    free(p);
}

/* Forgets the peer: its conn (if any) is told it is gone, the session is wiped. */
static void peer_free(br_peer *p, const char *why) {
    br_udp *u = p->u;
    GP_CHAIN_REMOVE(u->table[p->cid % PEER_BUCKETS], p, hnext);
    u->npeers--;
    gp_rudp_stats st;
    gp_rudp_stats_get(p->ru, &st);
    u->retx_gone += st.rel.retransmits;
    u->fec_gone += st.rel.fec_repaired;
    uv_timer_stop(&p->timer);
    br_conn *c = p->c;
    p->c = NULL;
    if (c)
        br_conn_closed(c, why);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static void send_dgram(void *ud, const uint8_t *b, size_t len) {
    br_peer *p = ud;
    br_udp *u = p->u;
    if (!p->validated &&
        !gp_sess_server_amp_allow(u->srv, &p->addr, p->alen, len)) /* 3x rule, new address */
        return;
    uv_buf_t buf = uv_buf_init((char *)b, (unsigned)len);
    /* UDP: a datagram the kernel cannot take now is a lost one; the engine resends. */
    uv_udp_try_send(&u->sock, &buf, 1, (const struct sockaddr *)&p->addr);
}

static void arm(br_peer *p);

/* Moves queued frames and body chunks into the engine while it has room, then sends what the
 * engine has to send (now, or after its jitter). */
static void pump(br_peer *p) {
    br_udp *u = p->u;
    br_conn *c = p->c;
    if (c && c->tpd) {
        br_out *o;
        while ((o = c->q_head) && gp_rudp_send_space(p->ru) >= o->len) {
            o = br_conn_pop(c);
            int rc = gp_rudp_send(p->ru, o->lane, o->buf + BR_OUT_PRE, o->len);
            free(o);
            if (rc != 0)
                br_log(BR_LOG_WARN, "rudp_send_failed", "house=%s err=%s", c->house,
                       gp_strerror(rc));
        }
        while (c->state == BR_CS_LIVE && !c->q_head && c->body_head &&
               gp_rudp_send_space(p->ru) >= sizeof u->wbuf) {
            gp_frame f;
            uint8_t *spent;
            if (!br_req_next_body(u->reqs, c, &f, u->zbuf, sizeof u->zbuf, &spent))
                break;
            ssize_t n = gp_frame_encode(&f, u->wbuf, sizeof u->wbuf);
            free(spent);
            if (n > 0)
                gp_rudp_send(p->ru, f.stream, u->wbuf, (size_t)n);
        }
    }
    if (gp_rudp_flush(p->ru, u->tx, sizeof u->tx, now_ns(), send_dgram, p) != 0) {
        if (p->c)
            br_log(BR_LOG_WARN, "house_timeout", "house=%s addr=%s transport=rudp reason=silent",
                   p->c->house, p->c->addr);
        peer_free(p, "rudp_dead");
        return;
    }
    arm(p);
}

static void on_timer(uv_timer_t *t) {
    br_peer *p = t->data;
    br_udp *u = p->u;
    uint64_t now = now_ns();
    if (p->closing && br_env_now(u->env) >= p->close_at) {
        peer_free(p, NULL);
        return;
    }
    gp_sess *s = gp_rudp_sess(p->ru);
    if (!gp_sess_confirmed(s) && now >= gp_sess_expiry(s)) {
        /* Answered, never confirmed: the house gave up, or the initiation was replayed. */
        peer_free(p, NULL);
        return;
    }
    pump(p);
}

static void arm(br_peer *p) {
    br_udp *u = p->u;
    uint64_t ms = gp_rudp_timer_ms(gp_rudp_expiry(p->ru), now_ns());
    if (p->closing) {
        uint64_t left = p->close_at > br_env_now(u->env) ? p->close_at - br_env_now(u->env) : 0;
        if (left < ms)
            ms = left;
    }
    uv_timer_start(&p->timer, on_timer, ms, 0);
}

/* --- the transport for conn.c -------------------------------------------------------------- */

static void rudp_kick(br_conn *c) {
    if (c->tpd)
        pump(c->tpd);
}

static void rudp_close(br_conn *c) {
    br_peer *p = c->tpd;
    br_udp *u = c->tp->ctx;
    if (!p || p->closing)
        return;
    p->closing = 1;
    p->close_at = br_env_now(u->env) + CLOSE_LINGER_MS;
    pump(p); /* the GOAWAY, if any */
}

static int rudp_send_dgram(br_conn *c, const uint8_t *b, size_t n) {
    br_peer *p = c->tpd;
    if (!p || p->closing)
        return GP_ERR_STATE;
    int rc = gp_rudp_send_dgram(p->ru, b, n, now_ns());
    if (rc == 0) /* out once this loop turn's packets are in: small ones share a datagram */
        uv_timer_start(&p->timer, on_timer, 0, 0);
    return rc;
}

static size_t rudp_dgram_max(const br_conn *c) {
    const br_peer *p = c->tpd;
    return p ? gp_rudp_dgram_max(p->ru) : 0;
}

static int rudp_set_mtu(br_conn *c, size_t mtu) {
    br_peer *p = c->tpd;
    return p ? gp_rudp_set_mtu(p->ru, mtu) : GP_ERR_STATE;
}

static void link_stats(const gp_rudp *ru, br_link_stats *out) {
    gp_rudp_stats st;
    gp_rudp_stats_get(ru, &st);
    out->rtt_ms = (double)st.rel.srtt_ns / 1e6;
    out->loss =
        st.rel.loss_rate_tx > st.rel.loss_rate_rx ? st.rel.loss_rate_tx : st.rel.loss_rate_rx;
    out->retransmits = st.rel.retransmits;
    out->fec_repaired = st.rel.fec_repaired;
}

static void rudp_stats(const br_conn *c, br_link_stats *out) {
    const br_peer *p = c->tpd;
    memset(out, 0, sizeof *out);
    if (p)
        link_stats(p->ru, out);
}

void br_udp_metrics(void *ud, double *rtt_ms_mean, double *loss_mean, uint64_t *retransmits,
                    uint64_t *fec_repaired) {
    const br_udp *u = ud;
    double rtt = 0, loss = 0;
    uint64_t retx = u->retx_gone, fec = u->fec_gone;
    unsigned n = 0;
    for (unsigned b = 0; u->on && b < PEER_BUCKETS; b++)
        for (const br_peer *p = u->table[b]; p; p = p->hnext) {
            br_link_stats ls;
            link_stats(p->ru, &ls);
            retx += ls.retransmits;
            fec += ls.fec_repaired;
            if (!p->c || p->c->state != BR_CS_LIVE)
                continue;
            rtt += ls.rtt_ms;
            loss += ls.loss;
            n++;
        }
    *rtt_ms_mean = n ? rtt / n : 0;
    *loss_mean = n ? loss / n : 0;
    *retransmits = retx;
    *fec_repaired = fec;
}

/* --- datagrams in --------------------------------------------------------------------------- */

static void on_confirmed(br_peer *p) {
    br_udp *u = p->u;
    gp_sess *s = gp_rudp_sess(p->ru);
    gp_str id = gp_sess_house_id(s);
    char a[80];
    addr_host(&p->addr, a, sizeof a);
    br_conn *c = br_conn_new(u->conns, &u->tp, p, a);
    if (!c) {
        peer_free(p, NULL);
        return;
    }
    p->c = c;
    memcpy(c->house, id.p, id.len);
    c->house[id.len] = '\0';
    if (u->env->stopping) {
        br_conn_close(c, GP_GOAWAY_DRAINING, "bridge shutting down");
        return;
    }
    /* The session proved the secret: straight to the claim (no HELLO/CHALLENGE/AUTH). */
    c->state = BR_CS_CLAIMING;
    br_house_claim(u->houses, c);
}

static void deliver(br_peer *p) {
    br_udp *u = p->u;
    uint32_t lane;
    const uint8_t *m;
    ssize_t n;
    gp_frame *f = NULL;
    while (p->c && (n = gp_rudp_recv(p->ru, &lane, &m)) != 0) {
        if (n < 0)
            continue; /* a message that does not decode: skipped, counted by the engine */
        br_conn *c = p->c;
        if (!f && !(f = malloc(sizeof *f)))
            break;
        ssize_t k = gp_frame_decode(m, (size_t)n, GP_DEFAULT_MAX_FRAME, f);
        if (k == n && f->type == GP_FRAME_HELLO) {
            /* The house's protocol offer (no handshake frames over rudp: the session already
             * proved who it is; the HELLO's id and nonce are unused). It is sent with the
             * house's first datagram but may arrive after our WELCOME went out (send jitter,
             * loss): then WELCOME goes again, naming the protocol. A house of protocol 1
             * sends none: WELCOME names no protocol. */
            int offered = f->u.hello.min_ver <= GP_PROTO_MAX &&
                          f->u.hello.max_ver >= GP_PROTO_MIN &&
                          f->u.hello.min_ver <= f->u.hello.max_ver;
            uint8_t proto = f->u.hello.max_ver < GP_PROTO_MAX ? f->u.hello.max_ver : GP_PROTO_MAX;
            if (offered && proto > c->proto) {
                c->proto = proto;
                if (c->state == BR_CS_LIVE && proto >= GP_PROTO_STREAMS)
                    br_house_welcome(u->houses, c);
            }
            continue;
        }
        if (c->state != BR_CS_LIVE)
            continue; /* nothing else is expected before WELCOME has gone out */
        if (k != n) {
            br_conn_protocol_error(c, "bad_frame", gp_strerror(k < 0 ? (int)k : GP_ERR_MALFORMED));
            break;
        }
        br_conn_frame(c, f);
    }
    free(f);
    while (p->c && (n = gp_rudp_recv_dgram(p->ru, &m)) != 0) {
        br_conn *c = p->c;
        if (n > 0 && c->state == BR_CS_LIVE && c->owner->hooks.on_dgram)
            c->owner->hooks.on_dgram(c->owner->hooks.ud, c, m, (size_t)n);
    }
}

static void on_data(br_peer *p, const uint8_t *b, size_t len, const struct sockaddr_storage *from,
                    socklen_t flen) {
    br_udp *u = p->u;
    unsigned flags = 0;
    if (gp_rudp_input(p->ru, b, len, now_ns(), &flags) != 0)
        return; /* tampered, replayed, foreign: dropped and counted by the session */
    if (p->c)
        p->c->last_rx_ms = br_env_now(u->env);
    if ((flags & GP_SESS_RX_NEWEST) && !same_addr(&p->addr, p->alen, from, flen)) {
        /* NAT rebinding or a new network: the session follows the house (as WireGuard's
         * roaming does). The datagram that moved it was authenticated and newer than any
         * before, so nobody off the path can forge or replay it: the new address is the
         * house's. (Holding replies to 3x what a small ack brought would stall the session —
         * the house, hearing nothing, says nothing more.) The 3x rule guards the handshake,
         * where nothing is proven yet. */
        char was[80], now_a[80];
        addr_str(&p->addr, was, sizeof was);
        addr_str(from, now_a, sizeof now_a);
        br_log(BR_LOG_INFO, "rudp_rebind", "house=%s from=%s to=%s", p->c ? p->c->house : "-", was,
               now_a);
        memcpy(&p->addr, from, flen);
        p->alen = flen;
        if (p->c)
            addr_host(from, p->c->addr, sizeof p->c->addr);
    }
    if (!p->validated) { /* the house's first datagram of the session confirms its address */
        p->validated = 1;
        gp_sess_server_amp_validate(u->srv, from, flen);
    }
    if ((flags & GP_SESS_RX_CONFIRMED) && !p->c)
        on_confirmed(p);
    if (p->c)
        deliver(p);
    if (p->c || !p->closing)
        pump(p);
}

/* The initiation's lookup and replay floor, with their KEYS and ARGV: store_state.h. */
static void respond(lookup *lk, const uint8_t *psk, uint64_t floor_ts) {
    br_udp *u = lk->u;
    gp_sess *s = NULL;
    char host[80];
    addr_host(&lk->addr, host, sizeof host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* the initiation's timestamp is wall-clock time */
    uint64_t wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* Charged right before the proof is checked, given back if it is right. A sender that
     * answered a cookie is charged on the rudp budgets of its address; one that did not may be
     * anyone forging that address, so it is charged nothing of anyone's: it spends the
     * address's single unproven token, and a failure makes the address answer cookies. */
    gp_str h = gp_str_c(host), id = gp_str_c(lk->house);
    int charged = lk->proven ? gp_authlimit_take(u->env->auth_rudp, h, id, br_env_now(u->env))
                             : gp_ratelimit_take(u->unproven, h, br_env_now(u->env));
    if (!charged) {
        br_log(BR_LOG_DEBUG, "auth_rate_limited", "addr=%s house=%s transport=rudp proven=%d", host,
               lk->house, lk->proven);
        gp_sess_hs_free(lk->hs);
        lk->hs = NULL;
        return; /* silence: rudp has no GOAWAY before a session */
    }
    ssize_t n = gp_sess_server_respond(u->srv, lk->hs, psk, floor_ts, &lk->addr, lk->alen, now_ns(),
                                       wall, u->tx, sizeof u->tx, &s);
    lk->hs = NULL; /* consumed */
    if (n < 0) {
        /* Unknown house, wrong secret or a replayed initiation: the same silence for all. */
        gp_metric_inc(u->env->metrics->auth_failures, "rudp");
        char fix[300];
        if (psk)
            snprintf(fix, sizeof fix,
                     "a wrong secret (give the house the one ghostport house add %s --force "
                     "prints) or a replayed initiation (nothing to do)",
                     lk->house);
        else
            snprintf(fix, sizeof fix,
                     "no house %s is registered: ghostport house add %s, or correct the house's "
                     "--id",
                     lk->house, lk->house);
        br_logr(BR_LOG_WARN, "auth_failed",
                "addr=%s house=%s transport=rudp reason=%s proven=%d fix=%s", host, lk->house,
                psk ? "bad_proof_or_replay" : "unknown_house", lk->proven, br_qs(fix));
        return;
    }
    if (lk->proven)
        gp_authlimit_refund(u->env->auth_rudp, h, id, br_env_now(u->env));
    else
        gp_ratelimit_refund(u->unproven, h, br_env_now(u->env));
    if (n > 0) {
        uv_buf_t buf = uv_buf_init((char *)u->tx, (unsigned)n);
        uv_udp_try_send(&u->sock, &buf, 1, (const struct sockaddr *)&lk->addr);
    }
    if (!s)
        return; /* a duplicate: its response went out again */
    gp_rudp_conf conf;
    gp_rudp_conf_init(&conf);
    conf.jitter_ms = (unsigned)u->env->cfg->rudp_jitter_ms;
    br_peer *p = calloc(1, sizeof *p);
    gp_rudp *ru = gp_rudp_new(s, &conf, on_rand, NULL, now_ns()); /* takes s over */
    if (!p || !ru) {
        free(p);
        gp_rudp_free(ru);
        return;
    }
    p->u = u;
    p->ru = ru;
    p->cid = gp_sess_cid(s);
    memcpy(&p->addr, &lk->addr, lk->alen);
    p->alen = lk->alen;
    uv_timer_init(u->env->loop, &p->timer);
    p->timer.data = p;
    p->hnext = u->table[p->cid % PEER_BUCKETS];
    u->table[p->cid % PEER_BUCKETS] = p;
    u->npeers++;
    arm(p);
    /* Remember the time of this initiation, so that a replay of it fails everywhere. */
    char key[GP_KEY_MAX], tsv[24];
    gp_key_rudp_ts(key, u->env->cfg->prefix, lk->house);
    snprintf(tsv, sizeof tsv, "%llu", (unsigned long long)gp_sess_timestamp(s));
    br_args a;
    br_args_init(&a);
    br_args_str(&a, key);
    br_args_str(&a, tsv);
    br_db_eval(u->env->db, &u->ts, NULL, NULL, 1, &a);
}

static void on_lookup(redisReply *rep, void *ud) {
    lookup *lk = ud;
    br_udp *u = lk->u;
    u->pending--;
    if (!u->on || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        /* Redis is away: no answer; the house retransmits its initiation. */
        gp_sess_hs_free(lk->hs);
        free(lk);
        return;
    }
    uint8_t psk[GP_SECRET_LEN];
    int known = 0;
    const redisReply *sec = rep->element[0], *ts = rep->element[1];
    /* A disabled house is answered as any other: once the session proves its secret, the claim
     * refuses it with GOAWAY(AUTH, "house disabled") inside the session (house.c), which tells
     * the house to try again soon rather than after its long wait (PROTOCOL.md, Goaway). */
    if (sec->type == REDIS_REPLY_STRING) {
        int rc = gp_secret_open(u->env->master_key, gp_str_c(lk->house),
                                (gp_str){(const uint8_t *)sec->str, sec->len}, psk);
        known = rc == 0;
        if (rc != 0)
            br_log(BR_LOG_WARN, "secret_unreadable", "house=%s err=%s", lk->house, gp_strerror(rc));
    }
    uint64_t floor_ts = ts->type == REDIS_REPLY_STRING ? strtoull(ts->str, NULL, 10) : 0;
    respond(lk, known ? psk : NULL, floor_ts);
    sodium_memzero(psk, sizeof psk);
    free(lk);
}

static void on_init(br_udp *u, const uint8_t *b, size_t len, const struct sockaddr_storage *from,
                    socklen_t flen, const char *host, int proven) {
    /* An unproven sender got here only with tokens left (on_recv asked the others for a
     * cookie); a proven one whose address has spent its budget gets silence. */
    if ((proven &&
         !gp_authlimit_allow_addr(u->env->auth_rudp, gp_str_c(host), br_env_now(u->env))) ||
        u->env->stopping)
        return; /* silence: rudp has no GOAWAY before a session */
    gp_sess_hs *hs = NULL;
    gp_sess *s = NULL;
    int rc = gp_sess_server_parse(u->srv, b, len, now_ns(), &hs, &s);
    if (rc == GP_SESS_HS_RETRANSMIT) {
        ssize_t n = gp_sess_server_resend(u->srv, s, from, flen, now_ns(), u->tx, sizeof u->tx);
        if (n > 0) {
            uv_buf_t buf = uv_buf_init((char *)u->tx, (unsigned)n);
            uv_udp_try_send(&u->sock, &buf, 1, (const struct sockaddr *)from);
        }
        return;
    }
    if (rc != GP_SESS_HS_NEW)
        return;
    gp_str id = gp_sess_hs_house_id(hs);
    lookup *lk = calloc(1, sizeof *lk);
    if (!lk || id.len > GP_MAX_HOUSE_ID ||
        (proven &&
         !gp_authlimit_allow(u->env->auth_rudp, gp_str_c(host), id, br_env_now(u->env)))) {
        free(lk);
        gp_sess_hs_free(hs);
        return;
    }
    lk->u = u;
    lk->hs = hs;
    lk->proven = proven;
    memcpy(&lk->addr, from, flen);
    lk->alen = flen;
    memcpy(lk->house, id.p, id.len);
    char khouse[GP_KEY_MAX], kts[GP_KEY_MAX];
    gp_key_house(khouse, u->env->cfg->prefix, lk->house);
    gp_key_rudp_ts(kts, u->env->cfg->prefix, lk->house);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, khouse);
    br_args_str(&a, kts);
    u->pending++;
    if (br_db_eval(u->env->db, &u->lookup, on_lookup, lk, 2, &a) != 0)
        on_lookup(NULL, lk);
}

/* 1 when initiations from host must carry a valid mac2 before their proof is checked: an
 * unproven proof from it failed lately, or its rudp budget is spent (so that only a sender
 * that receives at the address can be refused on its budget). */
static int must_prove(br_udp *u, const char *host) {
    return !gp_ratelimit_allow(u->unproven, gp_str_c(host), br_env_now(u->env)) ||
           !gp_authlimit_allow_addr(u->env->auth_rudp, gp_str_c(host), br_env_now(u->env));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    br_udp *u = h->data;
    (void)h, (void)suggested;
    *buf = uv_buf_init((char *)u->rx, sizeof u->rx);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
    (void)flags;
    br_udp *u = h->data;
    if (n <= 0 || !from)
        return;
    struct sockaddr_storage a;
    socklen_t alen =
        from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memset(&a, 0, sizeof a);
    memcpy(&a, from, alen);
    const uint8_t *b = (const uint8_t *)buf->base;
    gp_sess *s = NULL;
    int under_load = u->pending > UNDER_LOAD_PENDING;
    switch (gp_sess_server_classify(u->srv, b, (size_t)n, &a, alen, under_load, now_ns(), &s)) {
    case GP_SESS_DATA: {
        br_peer *p = s ? peer_find(u, gp_sess_cid(s)) : NULL;
        if (p)
            on_data(p, b, (size_t)n, &a, alen);
        return;
    }
    case GP_SESS_INIT: {
        char host[80];
        addr_host(&a, host, sizeof host);
        int proven =
            under_load || gp_sess_server_init_proven(u->srv, b, (size_t)n, &a, alen, now_ns());
        if (proven || !must_prove(u, host)) {
            on_init(u, b, (size_t)n, &a, alen, host, proven);
            return;
        }
        /* This address failed unproven, or spent its budget: first it shows it receives. */
    }
    /* fallthrough */
    case GP_SESS_COOKIE: {
        ssize_t k = gp_sess_server_cookie_reply(u->srv, b, (size_t)n, &a, alen, now_ns(), u->tx,
                                                sizeof u->tx);
        if (k > 0) {
            uv_buf_t out = uv_buf_init((char *)u->tx, (unsigned)k);
            uv_udp_try_send(&u->sock, &out, 1, (const struct sockaddr *)&a);
        }
        return;
    }
    default:
        return; /* never answer what is not ours */
    }
}

/* --- start / stop --------------------------------------------------------------------------- */

br_udp *br_udp_new(const br_env *env, br_conns *conns, br_houses *houses, br_requests *reqs) {
    br_udp *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->env = env;
    u->conns = conns;
    u->houses = houses;
    u->reqs = reqs;
    u->tp = (br_transport){.name = "rudp",
                           .kick = rudp_kick,
                           .close = rudp_close,
                           .stats = rudp_stats,
                           .ctx = u,
                           .send_dgram = rudp_send_dgram,
                           .dgram_max = rudp_dgram_max,
                           .set_mtu = rudp_set_mtu};
    u->lookup = (br_script){GP_LUA_RUDP_LOOKUP, ""};
    u->ts = (br_script){GP_LUA_RUDP_TS, ""};
    u->sock.data = u;
    return u;
}

void br_udp_free(br_udp *u) {
    if (!u)
        return;
    gp_sess_server_free(u->srv);
    gp_ratelimit_free(u->unproven);
    free(u);
}

int br_udp_start(br_udp *u, const uint8_t key[32]) {
    const br_env *env = u->env;
    const br_config *cfg = env->cfg;
    if (cfg->rudp_listen < 0)
        return 0;
    gp_sess_server_conf sc;
    memset(&sc, 0, sizeof sc);
    u->srv = gp_sess_server_new(&sc, key, on_rand, NULL, now_ns());
    u->unproven = gp_ratelimit_new(UNPROVEN_BURST, UNPROVEN_PER_MIN, UNPROVEN_SLOTS);
    if (!u->srv || !u->unproven)
        return -1;
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    const char *bind = cfg->bind && *cfg->bind ? cfg->bind : "0.0.0.0";
    if (uv_ip4_addr(bind, (int)cfg->rudp_listen, (struct sockaddr_in *)&a) != 0 &&
        uv_ip6_addr(bind, (int)cfg->rudp_listen, (struct sockaddr_in6 *)&a) != 0) {
        br_log(BR_LOG_ERROR, "listen_failed", "transport=rudp bind=%s err=bad_address", bind);
        return -1;
    }
    uv_udp_init(env->loop, &u->sock);
    u->sock.data = u;
    int rc = uv_udp_bind(&u->sock, (const struct sockaddr *)&a, 0);
    if (rc == 0) {
        int big = 4 << 20; /* bursts of many houses' datagrams */
        uv_send_buffer_size((uv_handle_t *)&u->sock, &big);
        big = 4 << 20;
        uv_recv_buffer_size((uv_handle_t *)&u->sock, &big);
        rc = uv_udp_recv_start(&u->sock, on_alloc, on_recv);
    }
    if (rc != 0) {
        br_log(BR_LOG_ERROR, "listen_failed", "transport=rudp bind=%s port=%lld err=%s", bind,
               cfg->rudp_listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&u->sock, NULL);
        return -1;
    }
    struct sockaddr_storage got;
    int glen = sizeof got;
    uv_udp_getsockname(&u->sock, (struct sockaddr *)&got, &glen);
    int port = got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&got)->sin_port);
    u->on = 1;
    u->port = port;
    br_log(BR_LOG_INFO, "listening", "bind=%s port=%d transport=rudp", bind, port);
    return 0;
}

int br_udp_port(const br_udp *u) {
    return u && u->on ? u->port : 0;
}

void br_udp_load_scripts(br_udp *u) {
    br_db_load_script(u->env->db, &u->lookup);
    br_db_load_script(u->env->db, &u->ts);
}

/* Every peer goes (their conns were closed with GOAWAYs already), then the socket. */
void br_udp_stop(br_udp *u) {
    if (!u->on)
        return;
    u->on = 0;
    for (unsigned b = 0; b < PEER_BUCKETS; b++)
        while (u->table[b])
            peer_free(u->table[b], NULL);
    uv_udp_recv_stop(&u->sock);
    uv_close((uv_handle_t *)&u->sock, NULL);
}
