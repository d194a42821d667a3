/* Unit tests for proto/rudp.c: a house and a bridge end, made from a real gp_sess handshake,
 * exchanging tunnel-sized messages over a simulated lossy link on a virtual clock (seeded):
 * everything arrives intact and in order per lane, compression is applied where it pays, and
 * send jitter does not inflate the RTT estimate. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rudp.h"

#define MS 1000000ull

static uint64_t g_rng;

static uint64_t rnd64(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void rnd(void *ud, uint8_t *p, size_t n) {
    (void)ud;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd64() >> 24);
}

/* A datagram in flight. */
typedef struct dg {
    uint64_t at;
    int to; /* 0 house, 1 bridge */
    size_t len;
    uint8_t b[1500];
} dg;

typedef struct link {
    dg *q;
    size_t n, cap;
    uint64_t now, delay;
    double loss;
    uint64_t sent, lost;
} link;

static void put(link *l, int to, const uint8_t *p, size_t len, uint64_t at) {
    l->sent++;
    if ((double)(rnd64() % 1000000) / 1e6 < l->loss) {
        l->lost++;
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->q = realloc(l->q, l->cap * sizeof *l->q);
    }
    dg *d = &l->q[l->n++];
    d->at = at + l->delay;
    d->to = to;
    d->len = len;
    memcpy(d->b, p, len);
}

/* Index of the earliest datagram, or -1. */
static long earliest(const link *l) {
    long best = -1;
    for (size_t i = 0; i < l->n; i++)
        if (best < 0 || l->q[i].at < l->q[best].at)
            best = (long)i;
    return best;
}

typedef struct ends {
    gp_rudp *r[2];
    link l;
} ends;

static void flush(ends *e, int side) {
    uint8_t out[1500];
    ssize_t n;
    while ((n = gp_rudp_output(e->r[side], out, sizeof out, e->l.now)) > 0)
        put(&e->l, 1 - side, out, (size_t)n, e->l.now);
    cr_assert_geq(n, 0, "output failed: %s", gp_strerror((int)n));
}

/* A handshake through the same lossless link, then both ends. */
static void connect_ends(ends *e, const gp_rudp_conf *conf) {
    memset(e, 0, sizeof *e);
    g_rng = 0x9e3779b97f4a7c15ull;
    uint8_t pub[32], priv[32], secret[32];
    gp_sess_keypair(pub, priv, rnd, NULL);
    rnd(NULL, secret, sizeof secret);
    gp_sess_server *srv = gp_sess_server_new(NULL, priv, rnd, NULL, 0);
    gp_sess *hs = gp_sess_client_new(NULL, pub, GP_STR_LIT("farm-1"), secret, rnd, NULL, 0, 1000);
    cr_assert(srv && hs);
    uint8_t a[1500], b[1500], junk[1500];
    ssize_t n = gp_sess_client_hello(hs, a, sizeof a, 0);
    cr_assert_gt(n, 0);
    gp_sess *sv = NULL;
    cr_assert_eq(gp_sess_server_classify(srv, a, (size_t)n, "h", 1, 0, 0, &sv), GP_SESS_INIT);
    gp_sess_hs *pend = NULL;
    cr_assert_eq(gp_sess_server_parse(srv, a, (size_t)n, 0, &pend, &sv), GP_SESS_HS_NEW);
    ssize_t m = gp_sess_server_respond(srv, pend, secret, 0, "h", 1, 0, 1000, b, sizeof b, &sv);
    cr_assert_gt(m, 0);
    unsigned flags = 0;
    cr_assert_geq(gp_sess_open(hs, b, (size_t)m, junk, sizeof junk, 0, &flags), 0);
    cr_assert(flags & GP_SESS_RX_ESTABLISHED);
    e->r[0] = gp_rudp_new(hs, conf, rnd, NULL, 0);
    e->r[1] = gp_rudp_new(sv, conf, rnd, NULL, 0);
    cr_assert(e->r[0] && e->r[1]);
    /* The server object only routes by connection id; the ends run without it from here. */
    gp_sess_server_free(srv);
    e->l.delay = 100 * MS; /* 200 ms round trip */
}

static void ends_free(ends *e) {
    gp_rudp_free(e->r[0]);
    gp_rudp_free(e->r[1]);
    free(e->l.q);
}

/* Both sides' MTU raised as the L3 tunnel does (the two daemons' figures). */
static void raise_mtu(ends *e) {
    cr_assert_eq(gp_rudp_set_mtu(e->r[0], 1343), 0);
    cr_assert_eq(gp_rudp_set_mtu(e->r[1], 1335), 0);
}

/* Runs the link until `until` or until nothing is scheduled; delivered messages go to fn. */
typedef void (*deliver_fn)(ends *e, int side, uint32_t lane, const uint8_t *m, size_t n);

static void run(ends *e, uint64_t until, deliver_fn fn) {
    flush(e, 0);
    flush(e, 1);
    while (e->l.now < until) {
        long i = earliest(&e->l);
        uint64_t next = i >= 0 ? e->l.q[i].at : UINT64_MAX;
        for (int s = 0; s < 2; s++) {
            uint64_t x = gp_rudp_expiry(e->r[s]);
            if (x < next)
                next = x;
        }
        if (next == UINT64_MAX || next > until)
            break;
        if (next > e->l.now)
            e->l.now = next;
        if (i >= 0 && e->l.q[i].at <= e->l.now) {
            dg d = e->l.q[i];
            e->l.q[i] = e->l.q[--e->l.n];
            gp_rudp_input(e->r[d.to], d.b, d.len, e->l.now, NULL);
            uint32_t lane;
            const uint8_t *msg;
            ssize_t k;
            while ((k = gp_rudp_recv(e->r[d.to], &lane, &msg)) > 0)
                fn(e, d.to, lane, msg, (size_t)k);
        }
        flush(e, 0);
        flush(e, 1);
    }
}

/* --- an echo exchange ---------------------------------------------------------------------- */

#define NMSG 60

static struct {
    size_t got[2];
    uint32_t next_seq[8];
    uint8_t *expect[NMSG];
    size_t expect_len[NMSG];
    uint64_t done_at;
} X;

/* Message i: lane i % 8, sequence i / 8 on it; every third is text (compressible). */
static size_t make_msg(int i, uint8_t *p) {
    size_t len = 100 + (size_t)(i * 997) % 20000;
    p[0] = (uint8_t)i;
    for (size_t k = 1; k < len; k++)
        p[k] = i % 3 == 0 ? (uint8_t)("lorem ipsum dolor sit amet "[k % 27]) : (uint8_t)rnd64();
    return len;
}

static void on_echo(ends *e, int side, uint32_t lane, const uint8_t *m, size_t n) {
    int i = m[0];
    cr_assert_lt(i, NMSG);
    cr_assert_eq(lane, (uint32_t)(i % 8));
    cr_assert_eq(n, X.expect_len[i], "message %d: %zu bytes, want %zu", i, n, X.expect_len[i]);
    cr_assert(memcmp(m, X.expect[i], n) == 0, "message %d corrupted", i);
    X.got[side]++;
    if (side == 0 && X.got[0] == NMSG)
        X.done_at = e->l.now;
    if (side == 1) { /* the bridge: in order per lane, then echo it back */
        cr_assert_eq((uint32_t)(i / 8), X.next_seq[lane], "lane %u out of order", lane);
        X.next_seq[lane]++;
        cr_assert_eq(gp_rudp_send(e->r[1], lane, m, n), 0);
    }
}

static void echo_at(double loss) {
    ends e;
    connect_ends(&e, NULL);
    e.l.loss = loss;
    memset(&X, 0, sizeof X);
    uint8_t buf[20200];
    for (int i = 0; i < NMSG; i++) {
        X.expect_len[i] = make_msg(i, buf);
        X.expect[i] = malloc(X.expect_len[i]);
        memcpy(X.expect[i], buf, X.expect_len[i]);
        cr_assert_eq(gp_rudp_send(e.r[0], (uint32_t)(i % 8), buf, X.expect_len[i]), 0);
    }
    run(&e, 120ull * 1000 * MS, on_echo);
    cr_assert_eq(X.got[1], NMSG, "bridge got %zu of %d at %.0f%% loss", X.got[1], NMSG, loss * 100);
    cr_assert_eq(X.got[0], NMSG, "house got %zu echoes of %d", X.got[0], NMSG);
    gp_rudp_stats st;
    gp_rudp_stats_get(e.r[0], &st);
    cr_assert_gt(st.msgs_compressed, 0, "text messages went out uncompressed");
    cr_assert_lt(st.bytes_after, st.bytes_before);
    printf("rudp echo at %2.0f%% loss: %d messages both ways in %.2f s (virtual), "
           "%llu datagrams, %llu lost; zstd %llu -> %llu bytes\n",
           loss * 100, NMSG, (double)X.done_at / 1e9, (unsigned long long)e.l.sent,
           (unsigned long long)e.l.lost, (unsigned long long)st.bytes_before,
           (unsigned long long)st.bytes_after);
    for (int i = 0; i < NMSG; i++)
        free(X.expect[i]);
    ends_free(&e);
}

Test(rudp, echo_lossless) {
    echo_at(0);
}

Test(rudp, echo_at_30_percent_loss) {
    echo_at(0.3);
}

static void on_nothing(ends *e, int side, uint32_t lane, const uint8_t *m, size_t n) {
    (void)e, (void)side, (void)lane, (void)m, (void)n;
}

/* Up to 15 ms of jitter before each datagram leaves is not mistaken for path delay. */
Test(rudp, jitter_does_not_inflate_rtt) {
    gp_rudp_conf c;
    gp_rudp_conf_init(&c);
    c.jitter_ms = 15;
    ends e;
    connect_ends(&e, &c);
    uint8_t m[500] = {1};
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(gp_rudp_send(e.r[0], 1, m, sizeof m), 0);
        run(&e, e.l.now + 50 * MS, on_nothing);
    }
    run(&e, e.l.now + 2000 * MS, on_nothing);
    gp_rudp_stats st;
    gp_rudp_stats_get(e.r[0], &st);
    double srtt = (double)st.rel.srtt_ns / 1e6;
    printf("rudp srtt with 0-15 ms jitter on a 200 ms path: %.1f ms\n", srtt);
    cr_assert(srtt >= 199 && srtt < 206, "srtt %.1f ms", srtt);
    ends_free(&e);
}

Test(rudp, refuses_a_session_without_keys_and_bad_jitter) {
    uint8_t pub[32], priv[32], secret[32] = {0};
    gp_sess_keypair(pub, priv, rnd, NULL);
    gp_sess *hs = gp_sess_client_new(NULL, pub, GP_STR_LIT("farm-1"), secret, rnd, NULL, 0, 1);
    cr_assert_null(gp_rudp_new(hs, NULL, rnd, NULL, 0)); /* not established: freed */
    cr_assert_null(gp_rudp_new(NULL, NULL, rnd, NULL, 0));
}

/* --- datagrams ----------------------------------------------------------------------------- */

static struct { size_t got, text, bad; } D;

/* Datagram i: 1000 bytes, text (compressible) when i is even, random otherwise. */
static size_t make_dgram(int i, uint8_t *p) {
    uint64_t s = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    p[0] = (uint8_t)i;
    for (size_t k = 1; k < 1000; k++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[k] = i % 2 == 0 ? (uint8_t)("GET /status HTTP/1.1 "[k % 21]) : (uint8_t)(s >> 33);
    }
    return 1000;
}

static void on_none(ends *e, int side, uint32_t lane, const uint8_t *m, size_t n) {
    (void)e, (void)side, (void)lane, (void)m, (void)n;
}

/* The house sends 60 datagrams, text and random, over the session: each arrives whole and
 * once; the text ones went compressed, the random ones raw. */
Test(rudp, datagrams_cross_the_session_whole_and_compressed_when_worth_it) {
    ends e;
    connect_ends(&e, NULL);
    memset(&D, 0, sizeof D);
    uint8_t b[1500];
    cr_assert_eq(gp_rudp_send_dgram(e.r[0], b, gp_rudp_dgram_max(e.r[0]) + 1, e.l.now),
                 GP_ERR_TOO_LARGE);
    cr_assert_eq(gp_rudp_send_dgram(e.r[0], b, 0, e.l.now), GP_ERR_INVALID);
    for (int i = 0; i < 60; i++)
        cr_assert_eq(gp_rudp_send_dgram(e.r[0], b, make_dgram(i, b), e.l.now), 0);
    uint8_t seen[60] = {0};
    for (int round = 0; round < 50 && D.got < 60; round++) {
        run(&e, e.l.now + 50 * MS, on_none);
        const uint8_t *p;
        ssize_t n;
        while ((n = gp_rudp_recv_dgram(e.r[1], &p)) > 0) {
            uint8_t want[1000];
            int i = p[0];
            if (i >= 60 || (size_t)n != make_dgram(i, want) || memcmp(p, want, 1000) != 0 ||
                seen[i]++) {
                D.bad++;
                continue;
            }
            D.got++;
        }
        cr_assert_eq(n, 0);
    }
    cr_assert_eq(D.bad, 0, "a datagram arrived corrupted or twice");
    cr_assert_eq(D.got, 60, "%zu of 60 datagrams arrived on a clean link", D.got);
    gp_rudp_stats st;
    gp_rudp_stats_get(e.r[0], &st);
    cr_assert_eq(st.dgrams_compressed, 30, "%llu of 30 text datagrams compressed",
                 (unsigned long long)st.dgrams_compressed);
    cr_assert_lt(st.dgram_bytes_after, st.dgram_bytes_before / 4);
    ends_free(&e);
}

/* The L3 tunnel raises both sides' MTU so that a 1280-byte IP packet fits one datagram: the
 * default MTU (1200) cannot carry it, the raised one does, both ways, and the peer takes the
 * larger datagrams without being told. Lowering is refused. */
Test(rudp, a_raised_mtu_carries_1280_byte_datagrams_both_ways) {
    ends e;
    connect_ends(&e, NULL);
    static uint8_t b[1280];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)rnd64();
    for (int side = 0; side < 2; side++)
        cr_assert_eq(gp_rudp_send_dgram(e.r[side], b, sizeof b, e.l.now), GP_ERR_TOO_LARGE);
    cr_assert_eq(gp_rudp_set_mtu(e.r[0], 1000), GP_ERR_INVALID, "lowered");
    cr_assert_eq(gp_rudp_set_mtu(e.r[0], GP_RUDP_MTU_MAX + 1), GP_ERR_INVALID);
    raise_mtu(&e);
    run(&e, e.l.now + 10 * MS, on_none); /* the engines switch at their next output */
    for (int side = 0; side < 2; side++) {
        cr_assert_geq(gp_rudp_dgram_max(e.r[side]), 1280, "side %d: %zu", side,
                      gp_rudp_dgram_max(e.r[side]));
        cr_assert_eq(gp_rudp_send_dgram(e.r[side], b, sizeof b, e.l.now), 0);
    }
    run(&e, e.l.now + 500 * MS, on_none);
    for (int side = 0; side < 2; side++) {
        const uint8_t *p;
        cr_assert_eq(gp_rudp_recv_dgram(e.r[1 - side], &p), (ssize_t)sizeof b,
                     "side %d's datagram did not arrive", side);
        cr_assert_eq(memcmp(p, b, sizeof b), 0);
    }
    ends_free(&e);
}

/* After the raise, small datagrams keep flowing both ways, round after round (a ping). */
Test(rudp, small_datagrams_keep_flowing_after_a_raise) {
    ends e;
    connect_ends(&e, NULL);
    raise_mtu(&e);
    uint8_t b[84];
    memset(b, 0x42, sizeof b);
    for (int round = 0; round < 20; round++) {
        for (int side = 0; side < 2; side++) {
            b[0] = (uint8_t)round;
            cr_assert_eq(gp_rudp_send_dgram(e.r[side], b, sizeof b, e.l.now), 0);
        }
        run(&e, e.l.now + 300 * MS, on_none);
        for (int side = 0; side < 2; side++) {
            const uint8_t *p;
            cr_assert_eq(gp_rudp_recv_dgram(e.r[1 - side], &p), (ssize_t)sizeof b,
                         "round %d: side %d's datagram did not arrive", round, side);
            cr_assert_eq(p[0], round);
        }
    }
    ends_free(&e);
}
