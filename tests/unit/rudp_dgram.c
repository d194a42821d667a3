/* rudp_dgram.c — the datagram lane of gp_rel (rudp_rel.h: gp_rel_send_dgram), the one an L3
 * tunnel's IP packets ride: each datagram crosses whole and at most once, in one packet, never
 * retransmitted; FEC keeps what the TCP inside would see as loss a small fraction of the link's;
 * datagrams and message lanes take turns, so neither starves the other; hostile frames are
 * refused whole. Two engines over the simulated link of rudp_sim.h (virtual clock, seeded:
 * the figures are deterministic, so the bounds below are properties of the code, not of the
 * machine running the test). */
#include <criterion/criterion.h>
#include <stdio.h>

#include "rudp_sim.h"

#define DG_MAX 200000

typedef struct dgflow {
    uint64_t rate_bps; /* offered load, ep 0 -> ep 1 */
    size_t len;        /* datagram size */
    uint64_t t_end;    /* stop offering at */
    uint32_t next_seq;
    uint64_t sent_at[DG_MAX];
    uint8_t got[DG_MAX];
    uint64_t lat[DG_MAX];
    uint64_t t_steady; /* latencies of datagrams offered from here on go to lat_steady too */
    uint64_t lat_steady[DG_MAX];
    size_t ngot, nsteady, dups, bad, refused;
    uint64_t credit_bits, last;
} dgflow;

static dgflow *g_dg;

static void dg_fill(uint8_t *b, uint32_t seq, size_t len) {
    memcpy(b, &seq, 4);
    for (size_t i = 4; i < len; i++)
        b[i] = (uint8_t)(seq * 31u + i);
}

/* Offers datagrams at rate_bps, in 1 ms ticks. */
static uint64_t dg_app(sim *s) {
    dgflow *f = g_dg;
    if (s->now >= f->t_end)
        return UINT64_MAX;
    if (f->last)
        f->credit_bits += (s->now - f->last) * f->rate_bps / SIM_SEC;
    f->last = s->now;
    uint8_t b[2048];
    while (f->credit_bits >= f->len * 8 && f->next_seq < DG_MAX) {
        f->credit_bits -= f->len * 8;
        dg_fill(b, f->next_seq, f->len);
        f->sent_at[f->next_seq] = s->now;
        if (gp_rel_send_dgram(s->ep[0], b, f->len, s->now) != 0)
            f->refused++;
        f->next_seq++;
    }
    return s->now + SIM_MS;
}

static void dg_recv(sim *s, int ep, const uint8_t *p, size_t len) {
    dgflow *f = g_dg;
    uint32_t seq;
    if (ep != 1 || len != f->len) {
        f->bad++;
        return;
    }
    memcpy(&seq, p, 4);
    uint8_t want[2048];
    dg_fill(want, seq, len);
    if (seq >= f->next_seq || memcmp(p, want, len) != 0) {
        f->bad++;
        return;
    }
    if (f->got[seq]) {
        f->dups++;
        return;
    }
    f->got[seq] = 1;
    f->lat[f->ngot++] = s->now - f->sent_at[seq];
    if (f->sent_at[seq] >= f->t_steady)
        f->lat_steady[f->nsteady++] = s->now - f->sent_at[seq];
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct dg_result {
    double residual;     /* offered datagrams that never arrived, after the first 2 s */
    double residual_all; /* ... of all (slow start included) */
    double p50_ms, p99_ms;
    double p99_steady_ms; /* of the datagrams offered after the first 2 s (startup behind) */
    double wire;          /* ep 0's bytes on the wire (payload + 88) per datagram byte delivered */
    gp_rel_stats a, b;
} dg_result;

/* rate_bps of len-byte datagrams for 20 s over a 10 Mbit/s, 200 ms RTT link with `loss`. */
static dg_result run_flow(double loss, uint64_t rate_bps, size_t len, uint64_t seed) {
    sim s;
    sim_link l = link_of(loss, 10000000, 250000);
    sim_on(&s, seed, 1, &l);
    static dgflow f;
    memset(&f, 0, sizeof f);
    f.rate_bps = rate_bps;
    f.len = len;
    f.t_end = s.now + 20 * SIM_SEC;
    f.t_steady = s.now + 2 * SIM_SEC;
    g_dg = &f;
    s.app = dg_app;
    s.on_dgram = dg_recv;
    sim_run(&s, f.t_end + 2 * SIM_SEC, NULL);
    cr_assert_eq(f.bad, 0, "a datagram arrived corrupted or unsent");
    cr_assert_eq(f.dups, 0, "a datagram arrived twice");
    cr_assert_eq(s.stalls, 0);
    dg_result r;
    r.residual_all = 1.0 - (double)f.ngot / (double)f.next_seq;
    size_t offered = 0;
    for (uint32_t i = 0; i < f.next_seq; i++)
        offered += f.sent_at[i] >= f.t_steady;
    r.residual = 1.0 - (double)f.nsteady / (double)offered;
    qsort(f.lat, f.ngot, sizeof f.lat[0], cmp_u64);
    r.p50_ms = f.ngot ? (double)f.lat[f.ngot / 2] / 1e6 : 0;
    r.p99_ms = f.ngot ? (double)f.lat[f.ngot * 99 / 100] / 1e6 : 0;
    qsort(f.lat_steady, f.nsteady, sizeof f.lat_steady[0], cmp_u64);
    r.p99_steady_ms = f.nsteady ? (double)f.lat_steady[f.nsteady * 99 / 100] / 1e6 : 0;
    gp_rel_get_stats(s.ep[0], &r.a);
    gp_rel_get_stats(s.ep[1], &r.b);
    r.wire = (double)(r.a.bytes_sent + 88 * r.a.pkts_sent) / (double)(f.ngot * len);
    sim_free(&s);
    return r;
}

static void print_flow(double loss, uint64_t rate, const dg_result *r) {
    printf("datagrams %llu Mbit/s at %2.0f%% loss: residual loss %.3f%% (with the first 2 s: "
           "%.3f%%), p50 %.0f ms, p99 %.0f "
           "ms (after 2 s: %.0f ms), wire %.2f x; sender: %llu pkts, %llu repairs, %llu dropped, "
           "%llu lost\n",
           (unsigned long long)(rate / 1000000), loss * 100, r->residual * 100,
           r->residual_all * 100, r->p50_ms, r->p99_ms, r->p99_steady_ms, r->wire,
           (unsigned long long)r->a.pkts_sent, (unsigned long long)r->a.fec_sent,
           (unsigned long long)r->a.dgrams_dropped, (unsigned long long)r->a.dgrams_lost);
}

/* What an L3 tunnel needs: at 10% and 30% link loss, the loss left after FEC is a small
 * fraction of the link's, latency stays near one way + the FEC hold, and the wire cost stays
 * under 2x at 30% loss. */
Test(rudp_dgram, fec_keeps_unrepaired_loss_small) {
    static const double losses[] = {0, 0.10, 0.30};
    static const double max_residual[] = {0.0005, 0.005, 0.015};
    static const double max_wire[] = {1.15, 1.6, 2.2};
    for (size_t i = 0; i < 3; i++) {
        dg_result r = run_flow(losses[i], 4000000, 1100, 7 + i);
        print_flow(losses[i], 4000000, &r);
        cr_assert_leq(r.residual, max_residual[i], "loss %.0f%%: %.3f%% lost after FEC",
                      losses[i] * 100, r.residual * 100);
        cr_assert_leq(r.wire, max_wire[i], "loss %.0f%%: wire %.2f x", losses[i] * 100, r.wire);
        /* One way, the FEC hold (50 ms at most), a few packets of pacing and queue. */
        cr_assert_leq(r.p99_steady_ms, 100 + 50 + 30, "loss %.0f%%: p99 %.0f ms", losses[i] * 100,
                      r.p99_steady_ms);
        cr_assert_eq(r.b.dgrams_dropped_rx, 0);
    }
}

/* Offered more than the link carries: the queue bounds what waits (dropped, counted, never
 * delivered late), and what is delivered keeps a bounded latency. */
Test(rudp_dgram, an_overloaded_link_drops_at_the_queue_not_later) {
    dg_result r = run_flow(0.0, 20000000, 1100, 3);
    print_flow(0.0, 20000000, &r);
    cr_assert_gt(r.a.dgrams_dropped, 0, "20 Mbit/s into 10 Mbit/s dropped nothing");
    /* One way, the queue's 150 ms, and the bottleneck's queue (250 KB: 200 ms). */
    cr_assert_leq(r.p99_ms, 100 + 150 + 200 + 20, "p99 %.0f ms: datagrams waited past their bound",
                  r.p99_ms);
    cr_assert_geq(r.residual_all, 0.3);
}

/* ---- turns: datagrams never starve messages, messages never starve datagrams ---- */

typedef struct mixed {
    int nex, done;
    uint64_t t0, lat_max, lat[10];
    uint8_t buf[20000];
} mixed;
static mixed *g_mx;

static void mx_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)m;
    mixed *x = g_mx;
    if (ep == 1) { /* a request: 16 KiB back */
        cr_assert_eq(gp_rel_send(s->ep[1], lane, x->buf, 16384), 0);
        return;
    }
    cr_assert_eq(len, 16384);
    uint64_t lat = s->now - x->t0;
    if (getenv("DG_DEBUG")) {
        gp_rel_stats a, b;
        gp_rel_get_stats(s->ep[0], &a);
        gp_rel_get_stats(s->ep[1], &b);
        printf("exchange %d: %.0f ms; a: lost %llu rtx %llu srtt %.0f cwnd %llu bw %.1f; b: lost "
               "%llu rtx %llu srtt %.0f cwnd %llu bw %.1f loss_tx %.3f\n",
               x->done, (double)lat / 1e6, (unsigned long long)a.pkts_lost,
               (unsigned long long)a.retransmits, (double)a.srtt_ns / 1e6,
               (unsigned long long)a.cwnd_bytes, (double)a.btlbw_bps / 1e6,
               (unsigned long long)b.pkts_lost, (unsigned long long)b.retransmits,
               (double)b.srtt_ns / 1e6, (unsigned long long)b.cwnd_bytes, (double)b.btlbw_bps / 1e6,
               b.loss_rate_tx);
    }
    if (lat > x->lat_max)
        x->lat_max = lat;
    x->lat[x->done++] = lat;
}

static uint64_t mx_app(sim *s) {
    mixed *x = g_mx;
    /* Both ends flood datagrams at twice the link rate, all the time. */
    uint8_t b[1100];
    memset(b, 7, sizeof b);
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 3; i++)
            gp_rel_send_dgram(s->ep[e], b, sizeof b, s->now);
    /* A request every 500 ms, after the flood has filled the queues. */
    if (s->now >= x->t0 + 500 * SIM_MS && x->done == x->nex && x->nex < 10 &&
        s->now > 3 * SIM_SEC) {
        x->t0 = s->now;
        cr_assert_eq(gp_rel_send(s->ep[0], (uint32_t)x->nex, x->buf, 200), 0);
        x->nex++;
    }
    return s->now + SIM_MS;
}

Test(rudp_dgram, a_datagram_flood_does_not_starve_requests) {
    sim s;
    sim_link l = link_of(0, 10000000, 128 << 10); /* as the links bench: ~100 ms at 10 Mbit/s */
    sim_on(&s, 11, 1, &l);
    static mixed x;
    memset(&x, 0, sizeof x);
    g_mx = &x;
    s.app = mx_app;
    s.on_msg = mx_msg;
    sim_run(&s, s.now + 12 * SIM_SEC, NULL);
    gp_rel_stats a;
    gp_rel_get_stats(s.ep[0], &a);
    cr_assert_eq(x.nex, 10);
    cr_assert_eq(x.done, 10, "requests starved by datagrams");
    qsort(x.lat, 10, sizeof x.lat[0], cmp_u64);
    printf("flood: %d exchanges, p50 %.0f ms, slowest %.0f ms, srtt %.0f ms (the bottleneck's "
           "queue stands full); %llu datagrams sent, %llu dropped\n",
           x.done, (double)x.lat[5] / 1e6, (double)x.lat_max / 1e6, (double)a.srtt_ns / 1e6,
           (unsigned long long)a.dgrams_sent, (unsigned long long)a.dgrams_dropped);
    /* An exchange waits for its turns (a 16 KiB quantum of datagrams before the request and
     * between the response's quanta: ~13 ms each at 10 Mbit/s) on top of the round trip and
     * the bottleneck's queue, which the flood keeps filled (128 KiB: ~105 ms each way); never
     * behind the whole datagram queue as well (up to 150 ms more each way). */
    uint64_t queue_ns = (uint64_t)(l.queue_bytes * 8) * SIM_SEC / l.rate_bps;
    cr_assert_leq(x.lat[5], RTT + 2 * queue_ns + 60 * SIM_MS, "exchange p50 %.0f ms",
                  (double)x.lat[5] / 1e6);
    cr_assert_gt(a.dgrams_sent, 5000, "datagrams starved");
    sim_free(&s);
}

/* ---- limits and hostile frames ---- */

Test(rudp_dgram, sizes_and_a_full_queue_are_refused_clearly) {
    gp_rel *r = gp_rel_new(NULL, SIM_SEC);
    cr_assert_not_null(r);
    size_t max = gp_rel_dgram_max(r);
    cr_assert_geq(max, 1100, "a 1140-byte payload carries %zu-byte datagrams", max);
    static uint8_t b[70000];
    cr_assert_eq(gp_rel_send_dgram(r, b, 0, SIM_SEC), GP_ERR_INVALID);
    cr_assert_eq(gp_rel_send_dgram(r, b, max + 1, SIM_SEC), GP_ERR_TOO_LARGE);
    int full = 0;
    for (int i = 0; i < 1000 && !full; i++) {
        int rc = gp_rel_send_dgram(r, b, max, SIM_SEC);
        cr_assert(rc == 0 || rc == GP_ERR_BUFFER);
        full = rc == GP_ERR_BUFFER;
    }
    cr_assert(full, "256 KiB of queue never filled");
    gp_rel_stats st;
    gp_rel_get_stats(r, &st);
    cr_assert_eq(st.dgrams_dropped, 1);
    gp_rel_free(r);
}

/* A packet "flags 0, pn 0, frames" fed to a fresh engine. */
static int feed(gp_rel *r, const uint8_t *frames, size_t n) {
    uint8_t p[64] = {0, 0};
    memcpy(p + 2, frames, n);
    return gp_rel_input(r, p, n + 2, 2 * SIM_SEC);
}

Test(rudp_dgram, hostile_datagram_frames_are_refused_whole) {
    gp_rel *r = gp_rel_new(NULL, SIM_SEC);
    const uint8_t *p;
    static const uint8_t empty[] = {0x12, 0x00};
    static const uint8_t overlong[] = {0x12, 0x05, 'a', 'b'};
    static const uint8_t truncated_len[] = {0x12, 0x40};
    static const uint8_t bad_after[] = {0x12, 0x02, 'h', 'i', 0x7f};
    cr_assert_eq(feed(r, empty, sizeof empty), GP_ERR_MALFORMED);
    cr_assert_eq(feed(r, overlong, sizeof overlong), GP_ERR_MALFORMED);
    cr_assert_eq(feed(r, truncated_len, sizeof truncated_len), GP_ERR_MALFORMED);
    cr_assert_eq(feed(r, bad_after, sizeof bad_after), GP_ERR_MALFORMED);
    cr_assert_eq(gp_rel_recv_dgram(r, &p), 0, "a datagram of a refused packet was delivered");
    static const uint8_t two[] = {0x12, 0x02, 'h', 'i', 0x12, 0x01, '!'};
    cr_assert_eq(feed(r, two, sizeof two), 0);
    cr_assert_eq(gp_rel_recv_dgram(r, &p), 2);
    cr_assert_eq(memcmp(p, "hi", 2), 0);
    cr_assert_eq(gp_rel_recv_dgram(r, &p), 1);
    cr_assert_eq(p[0], '!');
    cr_assert_eq(feed(r, two, sizeof two), 0, "a duplicate packet is not an error");
    cr_assert_eq(gp_rel_recv_dgram(r, &p), 0, "a duplicated packet delivered its datagrams twice");
    gp_rel_stats st;
    gp_rel_get_stats(r, &st);
    cr_assert_eq(st.malformed, 4);
    cr_assert_eq(st.dgrams_recv, 2);
    gp_rel_free(r);
}

/* An engine nobody called for a while keeps its last time: a datagram queued then waits from
 * the time it is given, not from the engine's stale one (which dropped every packet of an idle
 * tunnel as too old: the first ping after a quiet spell never left). */
static int g_one_got;
static void one_recv(sim *s, int ep, const uint8_t *p, size_t len) {
    (void)s, (void)p, (void)len;
    g_one_got += ep == 1;
}

Test(rudp_dgram, a_datagram_after_a_quiet_spell_leaves) {
    sim s;
    sim_on(&s, 5, 1, &(sim_link){.delay_ns = 20 * SIM_MS});
    s.on_dgram = one_recv;
    g_one_got = 0;
    sim_run(&s, s.now + 3 * SIM_SEC, NULL); /* quiet: the engines sleep until their keepalive */
    uint8_t b[84] = {0x45};
    cr_assert_eq(gp_rel_send_dgram(s.ep[0], b, sizeof b, s.now), 0);
    sim_run(&s, s.now + 200 * SIM_MS, NULL);
    gp_rel_stats st;
    gp_rel_get_stats(s.ep[0], &st);
    cr_assert_eq(st.dgrams_dropped, 0, "the datagram was dropped as too old");
    cr_assert_eq(g_one_got, 1);
    sim_free(&s);
}
