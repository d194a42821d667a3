/* rudp_cc.h — congestion control of the rudp:// reliability layer, and the path estimates it
 * reads (round-trip time).
 *
 * Owns: the RTT estimator (RFC 9002 §5, with our ack-delay rule), the congestion-controller
 * interface the engine calls through (gp_cc_ops: a record of function pointers plus
 * per-algorithm state in gp_cc, as ngtcp2's ngtcp2_cc and picoquic's per-algorithm records)
 * and its one implementation today, gp_cc_bbr (BBR-like, loss-compensated). Separate from the
 * engine (rudp_rel.c) so that an algorithm can be tested alone on a virtual clock
 * (tests/unit/rudp_cc.c) and another swapped in (gp_rel_config.cc) without touching loss
 * detection, FEC or the wire. The engine keeps what belongs to the packets: delivery-rate
 * sampling (per-packet snapshots), app-limited marking, pacing and the window check; a
 * controller only sees one summary per ACK and sets cwnd and pacing_rate.
 * Reasoning and figures: proto/RUDP.md, "Congestion control". */
#ifndef GP_RUDP_CC_H
#define GP_RUDP_CC_H

#include <stddef.h>
#include <stdint.h>

#define GP_RTT_INITIAL_NS 250000000ull      /* before the first sample (RFC 9002 uses 333 ms) */
#define GP_RTT_MIN_WINDOW_NS 10000000000ull /* min_rtt is a minimum over 10 s */
#define GP_CC_IW_PACKETS 32 /* initial window: a 16 KiB response goes out in the first flight */

/* ---- round-trip time ---- */
typedef struct gp_rtt {
    int have;              /* a sample was taken (before it: srtt = 250 ms, min_rtt = none) */
    uint64_t srtt, rttvar; /* smoothed, ack delay taken off */
    uint64_t min_rtt;      /* windowed minimum of raw samples (UINT64_MAX: none yet) */
    uint64_t min_rtt_stamp, latest;
    /* The window in two halves: the minimum of the current half (since min_half_start) and
     * of the one before; min_rtt is the smaller. A new half starts every half window, so a
     * sample counts for between one half and a whole window. */
    uint64_t min_cur, min_prev, min_half_start;
} gp_rtt;

void gp_rtt_init(gp_rtt *t);

/* Takes a sample (ns, 0 counts as 1) at time now. ack_delay is what the peer says it held
 * the ACK, trusted up to max_ack_delay; it is subtracted, clamped at min_rtt (RFC 9002 §5.3
 * would not subtract at all when the result falls below min_rtt). */
void gp_rtt_update(gp_rtt *t, uint64_t sample, uint64_t ack_delay, uint64_t max_ack_delay,
                   uint64_t now);

/* ---- congestion control ---- */
typedef struct gp_cc gp_cc;

/* What one ACK taught, handed to on_ack after loss detection ran. The rate sample follows
 * draft-cheng-iccrg-delivery-rate-estimation: `delivered - prior_delivered` bytes over
 * `interval` ns, from the newest packet acked, sent `rtt` ns before the ACK. */
typedef struct gp_cc_ack {
    uint64_t now;
    int valid;                /* the ACK newly acked a packet in flight: the sample is real */
    int app_limited;          /* that packet left while the application had nothing more */
    uint64_t prior_delivered; /* bytes delivered when that packet was sent */
    uint64_t delivered;       /* bytes delivered now (this ACK included) */
    uint64_t interval;        /* ns the sample spans */
    uint64_t rtt;             /* that packet's round trip (no ack-delay correction) */
    uint64_t inflight;        /* bytes in flight after this ACK and the losses it revealed */
    double peer_loss;         /* fraction of our packets the peer measures lost */
} gp_cc_ack;

typedef struct gp_cc_ops {
    const char *name;
    /* Sets the initial cwnd and pacing_rate; cc->mss and cc->seed are set. */
    void (*init)(gp_cc *cc);
    /* Every RTT sample, before the on_ack of the same ACK. May be NULL. */
    void (*on_rtt)(gp_cc *cc, uint64_t sample_ns);
    /* After each ACK that newly acknowledged packets. */
    void (*on_ack)(gp_cc *cc, const gp_cc_ack *a, const gp_rtt *rtt);
    /* A packet of `bytes` in flight was declared lost. May be NULL (BBR ignores loss). */
    void (*on_lost)(gp_cc *cc, uint64_t bytes, uint64_t now);
} gp_cc_ops;

/* BBR's own state (see rudp_cc.c). */
typedef struct gp_cc_bbr_state {
    int filled_pipe, full_bw_count, cycle_idx;
    uint64_t bw_slot[10], bw_slot_round[10]; /* max filter over 10 rounds */
    uint64_t round_count, next_round_delivered;
    uint64_t full_bw, cycle_stamp;
    uint64_t round_min_rtt; /* smallest RTT sample of the current round (queue detection) */
    unsigned delay_hits;    /* consecutive RTT samples showing a queue (startup exit) */
    double pacing_gain, cwnd_gain;
    uint64_t rng;            /* the probing phase is drawn at random */
    uint64_t probe_rtt_done; /* PROBE_RTT: when it may end (0: the window not low yet) */
    uint64_t probe_rtt_last; /* when the last PROBE_RTT ended (or probing began) */
} gp_cc_bbr_state;

struct gp_cc {
    const gp_cc_ops *ops;
    uint64_t mss;  /* max_payload: the packet size windows are counted in */
    uint64_t seed; /* randomness for the algorithm */
    /* Outputs, read by the engine after every call: */
    uint64_t cwnd;        /* bytes that may be in flight */
    uint64_t pacing_rate; /* bytes/s */
    uint64_t bw;          /* bottleneck bandwidth estimate, bytes/s (0: none; stats only) */
    int state;            /* the algorithm's phase (stats only) */
    union {
        gp_cc_bbr_state bbr;
        uint64_t any[64]; /* room for another algorithm's state */
    } u;
};

/* BBR-like, loss-compensated (proto/RUDP.md). state: 0 startup, 1 drain, 2 probe-bw. */
extern const gp_cc_ops gp_cc_bbr;

/* Sets cc up to run ops (NULL: gp_cc_bbr) for packets of mss bytes. */
void gp_cc_init(gp_cc *cc, const gp_cc_ops *ops, uint64_t mss, uint64_t seed);

#endif
