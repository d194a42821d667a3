/* rudp_cc.c — the RTT estimator and the congestion controllers of rudp:// (see rudp_cc.h for
 * what this file owns and why it stands apart from the engine). */
#include "rudp_cc.h"

#include <string.h>

#define MS 1000000ull
#define SEC 1000000000ull
#define NONE UINT64_MAX
#define GRANULARITY_NS (1 * MS) /* RFC 9002 kGranularity */
#define MIN_CWND_PACKETS 4
#define BW_ROUNDS 10
#define STARTUP_GAIN 2.885    /* 2/ln 2, BBR's startup pacing gain */
#define STARTUP_CWND_GAIN 2.0 /* BBRv3's: 2.885 x BDP in flight overflows a 1-BDP buffer */

enum { BBR_STARTUP = 0, BBR_DRAIN = 1, BBR_PROBE_BW = 2, BBR_PROBE_RTT = 3 };
/* PROBE_RTT (BBRv2's): every PROBE_RTT_AFTER_NS of probing bandwidth, the window drops to
 * half a BDP for PROBE_RTT_NS (at least a round trip), so a standing queue drains and every
 * half of min_rtt's window holds a queue-free sample. Without it a queue that stands longer
 * than that window becomes min_rtt: every sample then looks queue-free, the loss compensation
 * divides them all by (1 - p), and the estimate climbs past the bottleneck — a datagram flood
 * at 5% loss estimated 24 Mbit/s on a 10 Mbit/s link and lost 40% of its packets at the
 * queue, which FEC, sized on that loss, made worse. A flow that never fills half a BDP (a
 * request/response load) is not held back by it at all. */
#define PROBE_RTT_AFTER_NS (5 * SEC)
#define PROBE_RTT_NS (200 * MS)
static const double bbr_cycle[8] = {1.25, 0.75, 1, 1, 1, 1, 1, 1};

static inline uint64_t u64min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}
static inline uint64_t u64max(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* ---- RTT (RFC 9002 §5) ---- */

void gp_rtt_init(gp_rtt *t) {
    memset(t, 0, sizeof *t);
    t->srtt = GP_RTT_INITIAL_NS;
    t->rttvar = GP_RTT_INITIAL_NS / 2;
    t->min_rtt = t->min_cur = t->min_prev = NONE;
}

void gp_rtt_update(gp_rtt *t, uint64_t sample, uint64_t ack_delay, uint64_t max_ack_delay,
                   uint64_t now) {
    if (sample == 0)
        sample = 1;
    t->latest = sample;
    /* min_rtt: the minimum of the samples of the last 5-10 s, so a route change is noticed.
     * Not "reset to the current sample when 10 s have passed" (BBR's filter): that sample is
     * taken with whatever queue stands then, and a queue that stood past the window became
     * the propagation delay (the congestion controller then took every sample for a
     * queue-free one). The two halves keep the lowest sample actually seen, which PROBE_RTT
     * (rudp_cc's BBR) makes sure is a drained one. */
    if (!t->have || now - t->min_half_start >= GP_RTT_MIN_WINDOW_NS / 2) {
        t->min_prev = t->have ? t->min_cur : NONE;
        t->min_cur = NONE;
        t->min_half_start = now;
    }
    if (sample < t->min_cur)
        t->min_cur = sample;
    uint64_t m = u64min(t->min_cur, t->min_prev);
    if (m != t->min_rtt) {
        t->min_rtt = m;
        t->min_rtt_stamp = now;
    }
    /* The peer's reported delay is trusted up to its ack timer plus the send jitter its
     * caller may add (RFC 9002 caps at max_ack_delay alone; ours also covers jitter). */
    ack_delay = u64min(ack_delay, max_ack_delay);
    /* RFC 9002 §5.3 subtracts the delay only if the result stays >= min_rtt, else not at
     * all; but min_rtt itself holds some ack delay, so with jittered acks nothing would ever
     * be subtracted. Subtract, then clamp at min_rtt. */
    uint64_t adj = sample > ack_delay ? u64max(sample - ack_delay, t->min_rtt) : sample;
    if (!t->have) {
        t->have = 1;
        t->srtt = adj;
        t->rttvar = adj / 2;
    } else {
        uint64_t d = t->srtt > adj ? t->srtt - adj : adj - t->srtt;
        t->rttvar = (3 * t->rttvar + d) / 4;
        t->srtt = (7 * t->srtt + adj) / 8;
    }
}

/* ---- the interface ---- */

void gp_cc_init(gp_cc *cc, const gp_cc_ops *ops, uint64_t mss, uint64_t seed) {
    memset(cc, 0, sizeof *cc);
    cc->ops = ops ? ops : &gp_cc_bbr;
    cc->mss = mss;
    cc->seed = seed;
    cc->ops->init(cc);
}

/* ---- gp_cc_bbr: BBR-like, loss-compensated ----
 * Loss-based controllers (Reno, Cubic) halve on every loss: at 5-30% random loss the window
 * never grows. BBR models the path instead (bottleneck bandwidth = max delivery rate over
 * 10 rounds, propagation delay = min RTT) and ignores loss. Plain BBR still decays at high
 * random loss, because the delivery rate it measures is (1 - p) x what it sent, and its
 * 1.25 probing gain cannot make up more than 20% loss. So a sample taken while the RTT shows
 * no standing queue is divided by (1 - p), p being the loss the peer measures: random loss
 * then no longer shrinks the estimate. While a queue stands (RTT above min_rtt) the raw
 * delivery rate is the bottleneck rate itself and is used as is — a full queue is exactly
 * when losses may be congestive, so congestion still caps the rate. */

static uint64_t rng_next(gp_cc_bbr_state *b) { /* splitmix64 */
    uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t bdp_bytes(const gp_cc *cc, const gp_rtt *t, double gain) {
    if (!cc->bw || !t->have)
        return (uint64_t)GP_CC_IW_PACKETS * cc->mss;
    return (uint64_t)(gain * (double)cc->bw * (double)t->min_rtt / 1e9);
}

static void bbr_set(gp_cc *cc, const gp_rtt *t) {
    const gp_cc_bbr_state *b = &cc->u.bbr;
    uint64_t mss = cc->mss;
    if (!cc->bw)
        return;
    uint64_t c = bdp_bytes(cc, t, b->cwnd_gain) + 3 * mss;
    if (!b->filled_pipe)
        c = u64max(c, (uint64_t)GP_CC_IW_PACKETS * mss);
    cc->cwnd = u64max(c, (uint64_t)MIN_CWND_PACKETS * mss);
    uint64_t p = (uint64_t)(b->pacing_gain * (double)cc->bw);
    /* Floor: never slower than a minimum window per smoothed RTT. */
    uint64_t floor = (uint64_t)MIN_CWND_PACKETS * mss * SEC / u64max(t->srtt, GRANULARITY_NS);
    p = u64max(p, floor);
    cc->pacing_rate = b->filled_pipe ? p : u64max(cc->pacing_rate, p);
}

static void bbr_init(gp_cc *cc) {
    gp_cc_bbr_state *b = &cc->u.bbr;
    b->rng = cc->seed;
    b->round_min_rtt = NONE;
    cc->state = BBR_STARTUP;
    b->pacing_gain = STARTUP_GAIN;
    b->cwnd_gain = STARTUP_CWND_GAIN;
    cc->cwnd = (uint64_t)GP_CC_IW_PACKETS * cc->mss;
    /* Before any sample, pace the initial window over a guessed 100 ms round trip at the
     * startup gain: fast enough that a first response is not held back by pacing. */
    cc->pacing_rate = (uint64_t)(STARTUP_GAIN * (double)cc->cwnd * 10.0);
    b->cycle_idx = (int)(rng_next(b) % 8);
}

static void bbr_on_rtt(gp_cc *cc, uint64_t sample) {
    if (sample < cc->u.bbr.round_min_rtt)
        cc->u.bbr.round_min_rtt = sample;
}

/* PROBE_RTT: entered when min_rtt is stale; the window is half a BDP (the queue drains) until
 * PROBE_RTT_NS after inflight came down to it; then back to probing bandwidth. Returns 1 while
 * in it (the caller sets the window). */
static int bbr_probe_rtt(gp_cc *cc, const gp_cc_ack *a, const gp_rtt *t) {
    gp_cc_bbr_state *st = &cc->u.bbr;
    if (cc->state == BBR_PROBE_BW && t->have && a->now >= st->probe_rtt_last + PROBE_RTT_AFTER_NS) {
        cc->state = BBR_PROBE_RTT;
        st->pacing_gain = 1.0;
        st->probe_rtt_done = 0;
    }
    if (cc->state != BBR_PROBE_RTT)
        return 0;
    uint64_t low = u64max(bdp_bytes(cc, t, 0.5), (uint64_t)MIN_CWND_PACKETS * cc->mss);
    if (!st->probe_rtt_done && a->inflight <= low)
        st->probe_rtt_done = a->now + u64max(PROBE_RTT_NS, t->min_rtt);
    if (st->probe_rtt_done && a->now >= st->probe_rtt_done) {
        st->probe_rtt_last = a->now;
        cc->state = BBR_PROBE_BW;
        st->cycle_idx = 2; /* cruise: the bandwidth probe comes back in its turn */
        st->cycle_stamp = a->now;
        st->pacing_gain = 1.0;
        return 0;
    }
    cc->cwnd = low;
    cc->pacing_rate = (uint64_t)(double)cc->bw;
    return 1;
}

static void bbr_on_ack(gp_cc *cc, const gp_cc_ack *a, const gp_rtt *t) {
    gp_cc_bbr_state *st = &cc->u.bbr;
    int round_start = 0;
    if (a->valid && a->prior_delivered >= st->next_round_delivered) {
        st->next_round_delivered = a->delivered;
        st->round_count++;
        round_start = 1;
    }
    /* Startup exit on delay, per sample (in the spirit of HyStart++): eight RTT samples in a
     * row a quarter above min_rtt (+10 ms for jitter) mean the queue is filling now; waiting
     * for the round to end (BBR's plateau test) overflows a shallow buffer first. Random
     * loss never looks like this, so it never ends startup early. */
    if (!st->filled_pipe && t->have && a->valid) {
        if (a->rtt > t->min_rtt + t->min_rtt / 4 + 10 * MS) {
            if (++st->delay_hits >= 8)
                st->filled_pipe = 1;
        } else {
            st->delay_hits = 0;
        }
    }
    if (a->valid && a->interval > 0 && t->have && a->interval >= t->min_rtt) {
        uint64_t d = a->delivered - a->prior_delivered;
        double bw = (double)d * 1e9 / (double)a->interval;
        uint64_t quiet = t->min_rtt + u64max(t->min_rtt / 8, 10 * MS);
        if (a->rtt <= quiet) {
            double p = a->peer_loss < 0.5 ? a->peer_loss : 0.5;
            bw /= 1.0 - p;
        }
        uint64_t b = (uint64_t)bw;
        if (!a->app_limited || b >= cc->bw) {
            size_t s = st->round_count % BW_ROUNDS;
            if (st->bw_slot_round[s] != st->round_count) {
                st->bw_slot_round[s] = st->round_count;
                st->bw_slot[s] = 0;
            }
            st->bw_slot[s] = u64max(st->bw_slot[s], b);
        }
        uint64_t best = 0;
        for (size_t i = 0; i < BW_ROUNDS; i++)
            if (st->bw_slot_round[i] + BW_ROUNDS > st->round_count)
                best = u64max(best, st->bw_slot[i]);
        /* Ten rounds of app-limited samples only (a request/response load that never fills
         * the window) leave no slot in the window: the estimate then stands, as Linux BBR's
         * max filter does — it must not fall to whatever an app-limited sample says. */
        if (best)
            cc->bw = best;
    }
    if (round_start) {
        if (!st->filled_pipe && !a->app_limited && cc->bw) {
            if (cc->bw >= st->full_bw + st->full_bw / 4) {
                st->full_bw = cc->bw;
                st->full_bw_count = 0;
            } else if (++st->full_bw_count >= 3) {
                st->filled_pipe = 1;
            }
        }
        /* A whole round whose best RTT sits well above min_rtt means a standing queue: the
         * pipe is full even if the bandwidth samples still grow (they grow with loss
         * compensation while we overfill). Leave startup before the queue overflows. */
        if (!st->filled_pipe && t->have && st->round_min_rtt != NONE &&
            st->round_min_rtt > t->min_rtt + t->min_rtt / 4 + 20 * MS)
            st->filled_pipe = 1;
        st->round_min_rtt = NONE;
    }
    if (cc->state == BBR_STARTUP && st->filled_pipe) {
        cc->state = BBR_DRAIN;
        st->pacing_gain = 1.0 / STARTUP_GAIN;
        st->cwnd_gain = STARTUP_CWND_GAIN;
    }
    if (cc->state == BBR_DRAIN && a->inflight <= bdp_bytes(cc, t, 1.0)) {
        cc->state = BBR_PROBE_BW;
        st->probe_rtt_last = a->now;
        st->cycle_idx = (int)(rng_next(st) % 7);
        if (st->cycle_idx >= 1) /* never start in the draining phase */
            st->cycle_idx++;
        st->cycle_stamp = a->now;
        st->cwnd_gain = 2.0;
    }
    if (cc->state == BBR_PROBE_BW) {
        if (t->have && a->now - st->cycle_stamp > t->min_rtt) {
            st->cycle_idx = (st->cycle_idx + 1) % 8;
            st->cycle_stamp = a->now;
        }
        st->pacing_gain = bbr_cycle[st->cycle_idx];
    }
    if (bbr_probe_rtt(cc, a, t))
        return;
    bbr_set(cc, t);
}

const gp_cc_ops gp_cc_bbr = {
    .name = "bbr",
    .init = bbr_init,
    .on_rtt = bbr_on_rtt,
    .on_ack = bbr_on_ack,
    .on_lost = NULL,
};
