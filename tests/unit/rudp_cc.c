/* Unit tests for rudp:// congestion control (proto/rudp_cc.c): the RTT estimator and the
 * BBR-like controller driven alone on a virtual clock — one ACK per round over a path of
 * known rate and delay, so every expected figure is arithmetic — and a controller of the
 * test's own swapped in through gp_rel_config.cc, to show the engine calls through the
 * record. */
#include <criterion/criterion.h>

#include "rudp_cc.h"
#include "rudp_sim.h"

#define MS 1000000ull
#define MSS 1140u
#define RATE 1250000ull /* bytes/s: 10 Mbit/s */
#define MIN_RTT (100 * MS)
#define MAX_ACK_DELAY (26 * MS)

/* ---- RTT ---- */

Test(rudp_cc, rtt_starts_at_250_ms_then_follows_the_samples) {
    gp_rtt t;
    gp_rtt_init(&t);
    cr_assert(!t.have);
    cr_assert_eq(t.srtt, 250 * MS);
    cr_assert_eq(t.rttvar, 125 * MS);
    gp_rtt_update(&t, 100 * MS, 0, MAX_ACK_DELAY, 1);
    cr_assert(t.have);
    cr_assert_eq(t.srtt, 100 * MS);
    cr_assert_eq(t.rttvar, 50 * MS);
    cr_assert_eq(t.min_rtt, 100 * MS);
    /* 30 ms of claimed ack delay is trusted up to 26 ms, and the result is clamped at
     * min_rtt: 120 - 26 = 94 -> 100. */
    gp_rtt_update(&t, 120 * MS, 30 * MS, MAX_ACK_DELAY, 2);
    cr_assert_eq(t.latest, 120 * MS);
    cr_assert_eq(t.srtt, 100 * MS);
    cr_assert_eq(t.rttvar, 3 * 50 * MS / 4);
    /* Without the clamp the delay comes off: 160 - 20 = 140. */
    gp_rtt_update(&t, 160 * MS, 20 * MS, MAX_ACK_DELAY, 3);
    cr_assert_eq(t.srtt, (7 * 100 * MS + 140 * MS) / 8);
}

Test(rudp_cc, min_rtt_is_a_ten_second_window) {
    gp_rtt t;
    gp_rtt_init(&t);
    gp_rtt_update(&t, 100 * MS, 0, MAX_ACK_DELAY, 1000 * MS);
    gp_rtt_update(&t, 200 * MS, 0, MAX_ACK_DELAY, 6000 * MS);
    cr_assert_eq(t.min_rtt, 100 * MS, "5 s later the old minimum stands");
    gp_rtt_update(&t, 200 * MS, 0, MAX_ACK_DELAY, 11001 * MS);
    cr_assert_eq(t.min_rtt, 200 * MS, "after 10 s the route change is noticed");
    gp_rtt_update(&t, 0, 0, MAX_ACK_DELAY, 11002 * MS);
    cr_assert_eq(t.min_rtt, 1, "a zero sample counts as 1 ns");
}

/* ---- BBR, one ACK per round ---- */

typedef struct path {
    gp_cc cc;
    gp_rtt rtt;
    uint64_t now, delivered;
} path;

static void path_init(path *p) {
    gp_cc_init(&p->cc, NULL, MSS, 7);
    gp_rtt_init(&p->rtt);
    p->now = 1000 * MS;
    p->delivered = 0;
}

/* One round trip: `rate` bytes/s delivered over min_rtt, the sample's packet seeing `rtt`. */
static void round_trip(path *p, double rate, uint64_t rtt, double peer_loss, int app_limited) {
    uint64_t prior = p->delivered;
    p->delivered += (uint64_t)(rate * (double)MIN_RTT / 1e9);
    p->now += MIN_RTT;
    gp_rtt_update(&p->rtt, rtt, 0, MAX_ACK_DELAY, p->now);
    if (p->cc.ops->on_rtt)
        p->cc.ops->on_rtt(&p->cc, rtt);
    gp_cc_ack a = {.now = p->now,
                   .valid = 1,
                   .app_limited = app_limited,
                   .prior_delivered = prior,
                   .delivered = p->delivered,
                   .interval = MIN_RTT,
                   .rtt = rtt,
                   .inflight = 0,
                   .peer_loss = peer_loss};
    p->cc.ops->on_ack(&p->cc, &a, &p->rtt);
}

Test(rudp_cc, bbr_starts_with_a_32_packet_window) {
    path p;
    path_init(&p);
    cr_assert_str_eq(p.cc.ops->name, "bbr");
    cr_assert_eq(p.cc.state, 0);
    cr_assert_eq(p.cc.cwnd, 32 * MSS);
    cr_assert_eq(p.cc.pacing_rate, (uint64_t)(2.885 * 32 * MSS * 10.0));
    cr_assert_eq(p.cc.bw, 0);
}

Test(rudp_cc, bbr_finds_the_bottleneck_and_leaves_startup_on_the_plateau) {
    path p;
    path_init(&p);
    int rounds = 0;
    while (p.cc.state == 0 && rounds < 50) {
        round_trip(&p, RATE, MIN_RTT, 0, 0);
        rounds++;
    }
    cr_assert_eq(rounds, 4, "one round to measure, three without 25%% growth");
    cr_assert_eq(p.cc.state, 2, "drained at once (nothing in flight): probe-bw");
    cr_assert_eq(p.cc.bw, RATE);
    for (int i = 0; i < 20; i++)
        round_trip(&p, RATE, MIN_RTT, 0, 0);
    uint64_t bdp = RATE * MIN_RTT / 1000000000ull;
    cr_assert_eq(p.cc.cwnd, 2 * bdp + 3 * MSS, "cwnd = 2 x BDP + 3 packets");
    /* The gain cycle: pacing at 1.25, 0.75 or 1 x the estimate, every phase visited. */
    int seen[3] = {0};
    for (int i = 0; i < 16; i++) {
        round_trip(&p, RATE, MIN_RTT, 0, 0);
        double g = (double)p.cc.pacing_rate / (double)RATE;
        cr_assert(g > 0.74 && g < 1.26, "pacing gain %.3f", g);
        seen[g > 1.1 ? 0 : g < 0.9 ? 1 : 2] = 1;
    }
    cr_assert(seen[0] && seen[1] && seen[2]);
}

Test(rudp_cc, random_loss_does_not_shrink_the_estimate) {
    path p;
    path_init(&p);
    for (int i = 0; i < 30; i++)
        round_trip(&p, 0.7 * RATE, MIN_RTT, 0.3, 0); /* 30% lost after the bottleneck */
    double r = (double)p.cc.bw / RATE;
    cr_assert(r > 0.99 && r < 1.01, "estimate %.3f x the rate: loss compensated", r);
}

Test(rudp_cc, a_standing_queue_turns_loss_compensation_off) {
    path p;
    path_init(&p);
    gp_rtt_update(&p.rtt, MIN_RTT, 0, MAX_ACK_DELAY, p.now); /* the path's min_rtt */
    for (int i = 0; i < 30; i++)
        round_trip(&p, 0.7 * RATE, MIN_RTT + 50 * MS, 0.3, 0);
    double r = (double)p.cc.bw / RATE;
    cr_assert(r > 0.69 && r < 0.71, "estimate %.3f x the rate: the raw delivery rate", r);
    cr_assert_neq(p.cc.state, 0, "a standing queue ends startup");
}

Test(rudp_cc, app_limited_rounds_leave_the_estimate_standing) {
    path p, q;
    path_init(&p);
    for (int i = 0; i < 20; i++)
        round_trip(&p, RATE, MIN_RTT, 0, 0);
    q = p;
    for (int i = 0; i < 30; i++) {
        round_trip(&p, 0.01 * RATE, MIN_RTT, 0, 1);
        round_trip(&q, 0.01 * RATE, MIN_RTT, 0, 0);
    }
    cr_assert_eq(p.cc.bw, RATE, "app-limited samples never lower the max filter");
    cr_assert_lt(q.cc.bw, RATE / 50, "the same samples not app-limited do, after 10 rounds");
}

Test(rudp_cc, eight_delayed_samples_end_startup_before_the_queue_overflows) {
    path p;
    path_init(&p);
    gp_rtt_update(&p.rtt, MIN_RTT, 0, MAX_ACK_DELAY, p.now);
    double rate = RATE / 16.0;
    /* The rate doubles every round (so the plateau test never fires), RTT 140 ms: above
     * min_rtt + 1/4 + 10 ms, below what the per-round queue test needs (+20 ms). */
    for (int i = 1; i <= 8; i++) {
        round_trip(&p, rate, MIN_RTT + 40 * MS, 0, 0);
        rate *= 2;
        if (i < 8)
            cr_assert_eq(p.cc.state, 0, "still in startup after %d delayed samples", i);
    }
    cr_assert_neq(p.cc.state, 0, "the 8th delayed sample ends startup");
}

Test(rudp_cc, the_probing_phase_follows_the_seed) {
    gp_cc a, b, c;
    gp_cc_init(&a, NULL, MSS, 1);
    gp_cc_init(&b, NULL, MSS, 1);
    cr_assert_eq(a.u.bbr.cycle_idx, b.u.bbr.cycle_idx);
    int differs = 0;
    for (uint64_t s = 2; s < 20; s++) {
        gp_cc_init(&c, NULL, MSS, s);
        differs |= c.u.bbr.cycle_idx != a.u.bbr.cycle_idx;
    }
    cr_assert(differs);
}

/* ---- another controller, swapped in through gp_rel_config.cc ---- */

#define FIXED_PACKETS 6
static void fixed_init(gp_cc *cc) {
    cc->cwnd = FIXED_PACKETS * cc->mss;
    cc->pacing_rate = 100 * RATE;
    cc->state = 42;
}
static void fixed_on_ack(gp_cc *cc, const gp_cc_ack *a, const gp_rtt *rtt) {
    (void)rtt;
    cc->u.any[0]++;
    cc->u.any[1] = a->delivered;
}
static void fixed_on_lost(gp_cc *cc, uint64_t bytes, uint64_t now) {
    (void)now;
    cc->u.any[2] += bytes;
}
static const gp_cc_ops fixed = {
    .name = "fixed", .init = fixed_init, .on_ack = fixed_on_ack, .on_lost = fixed_on_lost};

static uint64_t max_inflight, got_bytes;
static void on_tx(sim *s, int from, uint64_t send_at, const uint8_t *pkt, size_t len) {
    (void)send_at, (void)pkt, (void)len;
    gp_rel_stats st;
    gp_rel_get_stats(s->ep[from], &st);
    if (from == 0 && st.inflight > max_inflight)
        max_inflight = st.inflight;
}
static void on_msg(sim *s, int ep, uint32_t lane, const uint8_t *msg, size_t len) {
    (void)s, (void)ep, (void)lane, (void)msg;
    got_bytes += len;
}
static int all_there(sim *s) {
    (void)s;
    return got_bytes == 256 * 1024;
}

Test(rudp_cc, the_engine_runs_whichever_controller_it_is_given) {
    gp_rel_config ca;
    gp_rel_config_init(&ca);
    ca.cc = &fixed;
    ca.fec = 0; /* repairs go out beyond the window; leave them out to see it exactly */
    sim s;
    sim_init(&s, 3, &ca, NULL);
    sim_link l = {.delay_ns = 50 * SIM_MS, .loss = 0.1};
    sim_link_both(&s, &l);
    s.on_tx = on_tx;
    s.on_msg = on_msg;
    static uint8_t msg[256 * 1024];
    cr_assert_eq(gp_rel_send(s.ep[0], 1, msg, sizeof msg), 0);
    cr_assert(sim_run(&s, 120 * SIM_SEC, all_there), "delivered over the swapped-in controller");
    gp_rel_stats st;
    gp_rel_get_stats(s.ep[0], &st);
    cr_assert_eq(st.cc_state, 42);
    cr_assert_eq(st.cwnd_bytes, FIXED_PACKETS * ca.max_payload);
    /* The last packet may start below the window and end above it; the two probes of a
     * timeout go beyond it (RFC 9002). */
    cr_assert_leq(max_inflight, (FIXED_PACKETS + 3) * ca.max_payload, "in flight %lu",
                  (unsigned long)max_inflight);
    cr_assert_gt(max_inflight, (FIXED_PACKETS - 1) * ca.max_payload, "the window was used");
    sim_free(&s);
}
