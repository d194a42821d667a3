/* rudp_rel.c — the reliability engine of rudp:// (pure: no sockets, no clock, no printing, no
 * global mutable state; the caller owns the loop). See rudp_rel.h for the API and
 * proto/RUDP.md "Reliability" for the wire format and the reasoning behind each mechanism.
 *
 * Sender side: messages are cut into fixed chunks when queued; each chunk has a state
 * (unsent, in flight, lost, acked) and remembers the newest packet number carrying it.
 * Packet numbers are never reused: a retransmission is a new packet, so every ack gives an
 * unambiguous RTT sample (QUIC's rule, RFC 9000 §12.3). Sent packets are kept in a ring by
 * packet number until acked or declared lost (RFC 9002 loss detection).
 *
 * Receiver side: messages carry a global id and the id of the previous message of their lane
 * ("dep"); a message is delivered once complete and once its dep was delivered. That gives
 * per-lane order with no per-lane state at the receiver, so lanes are free.
 *
 * This file is the engine's packet side: its lifecycle, sent packets, loss detection, timers,
 * pacing, packet building and parsing, what was received (messages, datagrams), and the glue
 * between the parts it calls. What waits to be sent — messages and their chunks, lanes and
 * their round robin, the resend heap, datagrams — is rudp_rel_sendq.c, the other file of the
 * engine; the two share struct gp_rel through rudp_rel_int.h. The parts, each a file of its
 * own with its own unit test:
 *   rudp_ack.[ch]    received packet numbers, the ACK frame, the receiver's loss meter;
 *   rudp_fec.[ch]    the Cauchy Reed-Solomon code, the open block, the receiver's store;
 *   rudp_cc.[ch]     RTT estimation and the congestion controller (an ops record: BBR-like);
 *   rudp_pmtu.[ch]   path MTU probing: how large a packet the path is trusted with;
 *   rudp_reasm.[ch]  received messages: reassembly, the receive buffer, lane-ordered delivery;
 *   rudp_ring.[ch]   the ring buffer of the engine's windows (messages, packets);
 *   rudp_varint.h    the varints of every frame. */
#include "rudp_rel.h"

#include "list.h"
#include "rudp_rel_int.h"
#include "rudp_varint.h"

#include <stdlib.h>
#include <string.h>

/* ---- tunables (protocol constants; the rationale is in RUDP.md) ---- */
#define MS 1000000ull
#define SEC 1000000000ull
#define GRANULARITY_NS (1 * MS) /* RFC 9002 kGranularity */
#define PKT_THRESHOLD 3         /* RFC 9002 kPacketThreshold */
#define SR_RING_MAX (1u << 16)  /* unresolved sent packets; beyond it the oldest is lost */
#define ACK_ROOM 32             /* room a full data packet leaves for a piggybacked ACK */
#define MIN_CHUNK 64
#define PACE_CREDIT_MIN_NS (2 * MS) /* pacing credit kept for late calls: srtt/4 within these */
#define PACE_CREDIT_MAX_NS (25 * MS)
#define ACK_REPEAT_GAP_NS (5 * MS) /* copies of a burst's last ACK, this far apart */

#define HF_PROTECTED 0x01 /* packet header flag: FEC source packet, keep it for decoding */

static inline uint64_t u64min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}
static inline uint64_t u64max(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* ---- config ---- */

void gp_rel_config_init(gp_rel_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_payload = GP_REL_DEFAULT_MAX_PAYLOAD;
    cfg->max_message = GP_REL_DEFAULT_MAX_MESSAGE;
    cfg->send_buffer = GP_REL_DEFAULT_SEND_BUFFER;
    cfg->recv_buffer = 2 * (size_t)GP_REL_DEFAULT_SEND_BUFFER + GP_REL_DEFAULT_MAX_MESSAGE;
    cfg->idle_keepalive_ns = GP_REL_DEFAULT_KEEPALIVE_NS;
    cfg->dead_after_ns = GP_REL_DEFAULT_DEAD_NS;
    cfg->fec = 1;
    cfg->seed = 0;
    cfg->dgram_queue = 256u << 10;
    cfg->dgram_max_wait_ns = 150 * MS;
    cfg->dgram_rx_queue = 256u << 10;
}

int gp_rel_config_check(const gp_rel_config *c) {
    if (c->max_payload < GP_REL_MIN_PAYLOAD || c->max_payload > GP_REL_MAX_PAYLOAD)
        return GP_ERR_INVALID;
    if (c->max_payload_rx &&
        (c->max_payload_rx < GP_REL_MIN_PAYLOAD || c->max_payload_rx > GP_REL_MAX_PAYLOAD))
        return GP_ERR_INVALID;
    if (c->max_message == 0 || c->max_message > (1u << 30))
        return GP_ERR_INVALID;
    if (c->send_buffer < c->max_message || c->recv_buffer < c->max_message)
        return GP_ERR_INVALID;
    if (c->idle_keepalive_ns == 0 || c->dead_after_ns <= c->idle_keepalive_ns)
        return GP_ERR_INVALID;
    if (c->fec != 0 && c->fec != 1)
        return GP_ERR_INVALID;
    return 0;
}

/* ---- sent packets: pns [sr_base, next_pn) in the ring r->sr ---- */

static srec *sr_slot(const gp_rel *r, uint64_t pn) {
    return (srec *)gp_ring_at(&r->sr, pn);
}

static srec *sr_get(const gp_rel *r, uint64_t pn) {
    if (pn < r->sr_base || pn >= r->next_pn)
        return NULL;
    srec *s = sr_slot(r, pn);
    return s->pn == pn ? s : NULL;
}

/* Room for packet next_pn; GP_ERR_BUFFER at SR_RING_MAX (the caller resolves the oldest). */
static int sr_reserve(gp_rel *r) {
    return gp_ring_fit(&r->sr, r->sr_base, r->next_pn, r->next_pn + 1 - r->sr_base);
}

static void sr_advance(gp_rel *r) {
    while (r->sr_base < r->next_pn) {
        srec *s = sr_slot(r, r->sr_base);
        if (!(s->flags & SF_RESOLVED))
            break;
        r->sr_base++;
    }
}

/* ---- lifecycle ---- */

gp_rel *gp_rel_new(const gp_rel_config *cfg, uint64_t now_ns) {
    gp_rel_config def;
    gp_rel *r = NULL;
    if (!cfg) {
        gp_rel_config_init(&def);
        cfg = &def;
    }
    if (gp_rel_config_check(cfg))
        goto fail;
    r = calloc(1, sizeof *r);
    if (!r)
        goto fail;
    r->cfg = *cfg;
    if (!r->cfg.max_payload_rx)
        r->cfg.max_payload_rx = cfg->max_payload > GP_REL_DEFAULT_RX_PAYLOAD
                                    ? cfg->max_payload
                                    : GP_REL_DEFAULT_RX_PAYLOAD;
    gp_sendq_init(r);
    gp_ring_init(&r->sr, sizeof(srec), 64, SR_RING_MAX);
    gp_reasm_init(&r->reasm, cfg->recv_buffer);
    r->now = now_ns;
    r->last_rx = r->last_tx = now_ns;
    gp_pmtu_init(&r->pmtu, cfg->max_payload);
    r->small_loss = GP_FEC_PRIOR_LOSS;
    r->chunk_budget = cfg->max_payload - PKT_HDR_MAX - GP_FEC_RESERVE - ACK_ROOM;
    gp_rtt_init(&r->rtt);
    gp_cc_init(&r->cc, cfg->cc, cfg->max_payload, cfg->seed);
    gp_fec_tx_init(&r->ftx, cfg->max_payload);
    gp_fec_rx_init(&r->frx, r->cfg.max_payload_rx);
    return r;
fail:
    gp_rel_free(r);
    return NULL;
}

void gp_rel_free(gp_rel *r) {
    if (!r)
        return;
    gp_sendq_free(r);
    gp_ring_free(&r->sr);
    gp_reasm_free(&r->reasm);
    gp_fec_tx_free(&r->ftx);
    gp_fec_rx_free(&r->frx);
    for (dgram *d = r->dr_head, *n; d; d = n)
        n = d->next, free(d);
    free(r->dr_lent);
    free(r);
}

int gp_rel_dead(const gp_rel *r) {
    return r->dead;
}

/* ---- payload size ---- */

/* Applies a new max_payload once no FEC block is being built or sent: a block's images all
 * have its stride. Message chunks never grow past the base payload (the one the engine was
 * created with, which needs no probing: rudp_pmtu.h): they are cut when queued, and a chunk
 * larger than a path that turned out narrower would block its lane for good. Only datagrams
 * use a raised size. */
static void apply_payload(gp_rel *r) {
    if (!r->pending_payload || r->ftx.open || r->ftx.closing)
        return;
    r->cfg.max_payload = r->pending_payload;
    r->pending_payload = 0;
    r->chunk_budget =
        u64min(r->cfg.max_payload, r->pmtu.base) - PKT_HDR_MAX - GP_FEC_RESERVE - ACK_ROOM;
    gp_fec_tx_free(&r->ftx);
    gp_fec_tx_init(&r->ftx, r->cfg.max_payload);
    gp_sendq_refit(r);
}

/* The path MTU prober changed its usable size: follow it. */
static void pmtu_follow(gp_rel *r) {
    r->pending_payload = r->pmtu.usable;
    apply_payload(r);
}

int gp_rel_set_max_payload(gp_rel *r, size_t n) {
    if (n < GP_REL_MIN_PAYLOAD || n > GP_REL_MAX_PAYLOAD)
        return GP_ERR_INVALID;
    gp_pmtu_set_target(&r->pmtu, n, r->now);
    pmtu_follow(r);
    return 0;
}

size_t gp_rel_max_payload(const gp_rel *r) {
    return u64max(r->pmtu.target, r->cfg.max_payload);
}

size_t gp_rel_payload_now(const gp_rel *r) {
    return r->cfg.max_payload;
}

/* ---- RTT, PTO ---- */

/* An RTT sample; the peer's ack delay is trusted up to its ack timer plus the send jitter its
 * caller may add. The controller sees every sample. */
static void rtt_sample(gp_rel *r, uint64_t sample, uint64_t ack_delay, uint64_t now) {
    gp_rtt_update(&r->rtt, sample, ack_delay, GP_REL_MAX_ACK_DELAY_NS + GP_REL_MAX_JITTER_NS, now);
    if (r->cc.ops->on_rtt)
        r->cc.ops->on_rtt(&r->cc, sample ? sample : 1);
}

static uint64_t pto_interval(const gp_rel *r) {
    uint64_t base =
        r->rtt.srtt + u64max(4 * r->rtt.rttvar, GRANULARITY_NS) + GP_REL_MAX_ACK_DELAY_NS;
    /* RFC 9002 doubles without bound; on a link that blacks out for seconds that means
     * minutes of silence after it comes back. The backoff stops at 2 s (or at the base
     * interval if that is longer). */
    uint64_t cap = u64max(GP_REL_PTO_CAP_NS, base), v = base;
    for (unsigned i = 0; i < r->pto_count && v < cap; i++)
        v *= 2;
    return u64min(v, cap);
}

static void set_pto(gp_rel *r) {
    r->pto_deadline = r->eliciting_inflight ? r->last_eliciting_sent + pto_interval(r) : 0;
}

/* ---- loss detection (RFC 9002 §6) ---- */

static void det_loss_sample(gp_rel *r, const srec *s, int lost) {
    r->det_loss += ((lost ? 1.0 : 0.0) - r->det_loss) / 64.0;
    if (s->size <= r->pmtu.base)
        r->small_loss += ((lost ? 1.0 : 0.0) - r->small_loss) / 64.0;
}

static void on_lost(gp_rel *r, srec *s) {
    s->flags |= SF_RESOLVED;
    if (!(s->flags & SF_INFLIGHT))
        return;
    r->inflight -= s->size;
    if (s->flags & SF_ELICITING)
        r->eliciting_inflight--;
    r->st.pkts_lost++;
    r->st.dgrams_lost += s->ndg;
    det_loss_sample(r, s, 1);
    if (r->cc.ops->on_lost)
        r->cc.ops->on_lost(&r->cc, s->size, r->now);
    gp_sendq_lost(r, s);
}

static void detect_lost(gp_rel *r, uint64_t now) {
    r->loss_time = 0;
    if (!r->has_largest_acked)
        return;
    uint64_t rtt = u64max(r->rtt.latest, r->rtt.srtt);
    uint64_t delay = u64max(rtt * 9 / 8, GRANULARITY_NS);
    uint64_t end = u64min(r->largest_acked, r->next_pn);
    for (uint64_t pn = r->sr_base; pn < end; pn++) {
        srec *s = sr_slot(r, pn);
        if ((s->flags & SF_RESOLVED) || !(s->flags & SF_INFLIGHT))
            continue;
        /* An FEC source is not lost by the packet threshold until an ack newer than its
         * last repair arrives: the receiver may still rebuild it, and counting it lost
         * before that would retransmit what FEC already carried. */
        int by_pkt = !(s->flags & SF_FEC_PENDING) && r->largest_acked >= pn + PKT_THRESHOLD &&
                     (s->fec_end == 0 || r->largest_acked > s->fec_end);
        if (by_pkt || now >= s->loss_ref + delay) {
            on_lost(r, s);
        } else {
            uint64_t t = s->loss_ref + delay;
            if (!r->loss_time || t < r->loss_time)
                r->loss_time = t;
        }
    }
    sr_advance(r);
}

/* ---- frames ---- */

typedef struct frame {
    uint8_t type;
    gp_ack_frame ack;
    /* MSG / MSG_CHUNK */
    uint64_t id, dep_delta, lane, len, csz, idx;
    /* REPAIR */
    uint64_t back, k, ridx, L;
    const uint8_t *data;
    size_t dlen;
} frame;

/* Decodes one frame at p. Returns the position after it, or NULL with *err set. pn is the
 * packet's number (a repair refers back from it). Checks everything that does not depend on
 * the receiver's message state. */
static const uint8_t *frame_decode(const gp_rel *r, uint64_t pn, const uint8_t *p,
                                   const uint8_t *end, frame *f, int *err) {
    *err = GP_ERR_MALFORMED;
    memset(f, 0, sizeof *f);
    if (p >= end)
        return NULL;
    f->type = *p++;
    switch (f->type) {
    case FT_PING:
        return p;
    case FT_ACK:
        return gp_ack_decode(p, end, r->next_pn, &f->ack);
    case FT_MSG:
    case FT_MSG_CHUNK: {
        p = gp_vget(p, end, &f->id);
        p = gp_vget(p, end, &f->dep_delta);
        p = gp_vget(p, end, &f->lane);
        p = gp_vget(p, end, &f->len);
        if (f->type == FT_MSG_CHUNK) {
            p = gp_vget(p, end, &f->csz);
            p = gp_vget(p, end, &f->idx);
        }
        if (!p || f->lane > UINT32_MAX || f->dep_delta > f->id || f->len == 0)
            return NULL;
        if (f->len > r->cfg.max_message) {
            *err = GP_ERR_TOO_LARGE;
            return NULL;
        }
        if (f->type == FT_MSG) {
            f->dlen = (size_t)f->len;
        } else {
            if (f->csz < MIN_CHUNK || f->csz >= f->len)
                return NULL;
            uint64_t nchunks = (f->len + f->csz - 1) / f->csz;
            if (f->idx >= nchunks)
                return NULL;
            uint64_t off = f->idx * f->csz;
            f->dlen = (size_t)u64min(f->csz, f->len - off);
        }
        if ((size_t)(end - p) < f->dlen)
            return NULL;
        f->data = p;
        return p + f->dlen;
    }
    case FT_DGRAM:
        p = gp_vget(p, end, &f->len);
        if (!p || f->len == 0 || f->len > (uint64_t)(end - p))
            return NULL;
        f->data = p;
        f->dlen = (size_t)f->len;
        return p + f->dlen;
    case FT_REPAIR:
        p = gp_vget(p, end, &f->back);
        p = gp_vget(p, end, &f->k);
        p = gp_vget(p, end, &f->ridx);
        p = gp_vget(p, end, &f->L);
        if (!p || f->k == 0 || f->k > GP_FEC_K_MAX || f->ridx >= GP_FEC_M_MAX || f->back < f->k ||
            f->back > pn || f->L < 3 || f->L > r->cfg.max_payload_rx || (uint64_t)(end - p) < f->L)
            return NULL;
        f->data = p;
        f->dlen = (size_t)f->L;
        return p + f->L;
    default:
        return NULL;
    }
}

/* ---- acks received (sender side) ---- */

typedef struct rate_sample {
    int valid, app_limited;
    uint64_t prior_delivered, prior_time, send_elapsed, rtt;
} rate_sample;

static void on_acked(gp_rel *r, srec *s, uint64_t now, rate_sample *rs) {
    s->flags |= SF_RESOLVED;
    r->st.bytes_acked += s->size;
    if (s->flags & SF_INFLIGHT) {
        r->inflight -= s->size;
        if (s->flags & SF_ELICITING)
            r->eliciting_inflight--;
        det_loss_sample(r, s, 0);
        r->delivered += s->size;
        r->delivered_time = now;
        if (!rs->valid || s->delivered > rs->prior_delivered) {
            rs->valid = 1;
            rs->prior_delivered = s->delivered;
            rs->prior_time = s->delivered_time;
            rs->app_limited = !!(s->flags & SF_APP_LIMITED);
            rs->send_elapsed = s->sent_at - s->first_sent_time;
            rs->rtt = now > s->sent_at ? now - s->sent_at : 0;
            r->first_sent_time = s->sent_at;
        }
    }
    /* The peer has seen our ACK frame up to ack_largest: stop repeating those ranges
     * (RFC 9000 §13.2.4), which keeps ACK frames small. */
    if (s->ack_largest != NONE)
        gp_ack_drop_below(&r->rx, s->ack_largest + 1);
    gp_sendq_acked(r, s);
}

static void on_ack_frame(gp_rel *r, const frame *f, uint64_t now, int recovered) {
    rate_sample rs = {0};
    uint64_t newly = 0, sent_at = 0;
    int largest_new = 0, largest_elicit = 0; /* largest_elicit: acked promptly */
    const gp_ack_frame *a = &f->ack;
    const uint8_t *p = a->ranges;
    uint64_t hi = a->largest, lo = a->largest - a->first;
    for (uint64_t i = 0;; i++) {
        /* Only the part of the range inside the ring can name unresolved packets: work is
         * bounded by the ring, whatever the ranges claim. */
        if (hi >= r->sr_base) {
            uint64_t top = u64min(hi, r->next_pn - 1), bot = u64max(lo, r->sr_base);
            for (uint64_t pn = top + 1; pn-- > bot;) {
                srec *s = sr_get(r, pn);
                if (!s || (s->flags & SF_RESOLVED))
                    continue;
                if (pn == a->largest) {
                    largest_new = 1;
                    largest_elicit = !!(s->flags & SF_INFLIGHT);
                    sent_at = s->sent_at;
                }
                newly++;
                on_acked(r, s, now, &rs);
            }
        }
        if (r->pmtu.probe && r->pmtu.pn >= lo && r->pmtu.pn <= hi &&
            gp_pmtu_acked(&r->pmtu, r->pmtu.pn, now))
            pmtu_follow(r);
        if (i == a->nranges)
            break;
        p = gp_ack_next_range(p, a->ranges_end, &hi, &lo);
    }
    if (!r->has_largest_acked || a->largest > r->largest_acked) {
        r->has_largest_acked = 1;
        r->largest_acked = a->largest;
    }
    r->peer_loss = (double)a->loss_bp / 10000.0;
    /* The peer's first loss window closes when it has seen our packet number 15 (it counts
     * numbers, received or missing, from 0): an ACK with a larger `largest` carries a
     * measurement; before it, loss_bp is 0 for want of one. */
    if (a->largest >= GP_ACK_LOSS_WINDOW_FIRST - 1)
        r->peer_loss_known = 1;
    /* RTT from the largest newly acked packet if the peer acks it promptly (RFC 9002 §5.1):
     * ack-eliciting packets, and repairs, which arm the peer's ack timer too — a burst's last
     * packets are repairs, so requiring an ack-eliciting one missed the sample of most
     * bursts' final ACK, and a session's first RTT sample came a round late. (ACK-only
     * packets, which the peer may hold, are never in flight, hence never newly acked.) An
     * ACK rebuilt by FEC arrived late: no sample. */
    if (largest_new && largest_elicit && !recovered && now >= sent_at)
        rtt_sample(r, now - sent_at, a->delay_us * 1000, now);
    if (newly)
        r->pto_count = 0;
    detect_lost(r, now);
    if (newly) {
        uint64_t ack_elapsed = r->delivered_time - rs.prior_time;
        uint64_t interval = u64max(rs.send_elapsed, ack_elapsed);
        if (r->app_limited_until && r->delivered > r->app_limited_until)
            r->app_limited_until = 0;
        gp_cc_ack ca = {.now = now,
                        .valid = rs.valid,
                        .app_limited = rs.app_limited,
                        .prior_delivered = rs.prior_delivered,
                        .delivered = r->delivered,
                        .interval = interval,
                        .rtt = rs.rtt,
                        .inflight = r->inflight,
                        .peer_loss = r->peer_loss};
        r->cc.ops->on_ack(&r->cc, &ca, &r->rtt);
    }
    sr_advance(r);
    gp_sendq_advance(r);
    set_pto(r);
}

/* ---- messages and datagrams received ---- */

/* The fragment a MSG or MSG_CHUNK frame carries, for the reassembly. */
static gp_reasm_frag frag_of(const frame *f) {
    int chunked = f->type == FT_MSG_CHUNK;
    return (gp_reasm_frag){.id = f->id,
                           .dep = f->dep_delta ? f->id - f->dep_delta : NONE,
                           .lane = (uint32_t)f->lane,
                           .chunked = chunked,
                           .len = (size_t)f->len,
                           .csz = (size_t)(chunked ? f->csz : f->len),
                           .idx = chunked ? (uint32_t)f->idx : 0,
                           .data = f->data,
                           .dlen = f->dlen};
}

ssize_t gp_rel_recv(gp_rel *r, uint32_t *lane, const uint8_t **msg) {
    return gp_reasm_recv(&r->reasm, lane, msg);
}

ssize_t gp_rel_recv_dgram(gp_rel *r, const uint8_t **p) {
    free(r->dr_lent);
    r->dr_lent = r->dr_head;
    if (!r->dr_head)
        return 0;
    GP_SLIST_SHIFT(r->dr_head, r->dr_tail, next);
    r->dr_bytes -= r->dr_lent->len;
    *p = r->dr_lent->b;
    return (ssize_t)r->dr_lent->len;
}

static void dr_push(gp_rel *r, const uint8_t *p, size_t len) {
    dgram *d;
    if (r->dr_bytes + len > r->cfg.dgram_rx_queue || !(d = malloc(sizeof *d + len))) {
        r->st.dgrams_dropped_rx++;
        return;
    }
    d->next = NULL;
    d->t = r->now;
    d->len = len;
    memcpy(d->b, p, len);
    GP_SLIST_APPEND(r->dr_head, r->dr_tail, d, next);
    r->dr_bytes += len;
    r->st.dgrams_recv++;
    r->st.dgram_bytes_recv += len;
}

/* ---- FEC, receiving ---- */

static int rx_packet(gp_rel *r, uint64_t pn, uint8_t flags, const uint8_t *p, const uint8_t *end,
                     uint64_t now, int recovered);

/* Rebuilds the missing sources of block b if enough repairs arrived, and processes them as
 * if they had arrived (one at a time: each may change what counts as seen). */
static void fec_try(gp_rel *r, gp_fec_rx_block *b, uint64_t now) {
    unsigned unk[GP_FEC_K_MAX], u = 0;
    uint64_t first = 0;
    size_t L = b->L;
    uint8_t *rows = gp_fec_rx_solve(&r->frx, b, &r->rx, unk, &u, &first);
    if (!rows)
        return;
    for (unsigned c = 0; c < u; c++) {
        const uint8_t *q = rows + (size_t)c * L;
        size_t len = (size_t)q[0] << 8 | q[1];
        uint64_t pn = first + unk[c];
        if (len == 0 || len > L - 2 || gp_ack_seen(&r->rx, pn))
            continue;
        if (rx_packet(r, pn, 0, q + 2, q + 2 + len, now, 1) == 0 && gp_ack_seen(&r->rx, pn))
            r->st.fec_repaired++;
    }
    free(rows);
}

/* ---- receiving packets ---- */

/* Handles the frames p[0..end) of packet pn. The first pass validates everything: nothing
 * is applied from a packet that is malformed in any part. The second applies. A packet
 * with a fragment refused for lack of buffer is applied for the rest but not acked (as if
 * lost): the peer sends its content again, and what we did take (the oldest message is
 * always taken) is idempotent. */
static int rx_packet(gp_rel *r, uint64_t pn, uint8_t flags, const uint8_t *p, const uint8_t *end,
                     uint64_t now, int recovered) {
    frame f;
    int err, eliciting = 0, repair = 0, nframes = 0;
    for (const uint8_t *q = p; q < end; nframes++) {
        q = frame_decode(r, pn, q, end, &f, &err);
        if (!q) {
            r->st.malformed++;
            return err;
        }
        if (f.type == FT_PING || f.type == FT_DGRAM) {
            eliciting = 1;
        } else if (f.type == FT_REPAIR) {
            repair = 1;
        } else if (f.type == FT_MSG || f.type == FT_MSG_CHUNK) {
            eliciting = 1;
            gp_reasm_frag g = frag_of(&f);
            if (gp_reasm_conflicts(&r->reasm, &g)) {
                r->st.malformed++;
                return GP_ERR_MALFORMED;
            }
        }
    }
    if (!nframes) {
        r->st.malformed++;
        return GP_ERR_MALFORMED;
    }
    if (gp_ack_seen(&r->rx, pn)) {
        r->st.duplicates++;
        r->last_rx = now;
        return 0;
    }
    r->last_rx = now;

    int rc = 0, refused = 0;
    gp_fec_rx_block *tryb = NULL;
    for (const uint8_t *q = p; q < end;) {
        q = frame_decode(r, pn, q, end, &f, &err);
        if (!q)
            break;
        if (f.type == FT_ACK) {
            on_ack_frame(r, &f, now, recovered);
        } else if (f.type == FT_MSG || f.type == FT_MSG_CHUNK) {
            gp_reasm_frag g = frag_of(&f);
            int e = gp_reasm_add(&r->reasm, &g);
            if (e > 0)
                refused = 1;
            else if (e < 0)
                rc = e;
        } else if (f.type == FT_DGRAM) {
            /* Taken even from a packet refused for want of message buffer: that packet's
             * chunks come again, its datagrams never would. */
            dr_push(r, f.data, f.dlen);
        } else if (f.type == FT_REPAIR && !recovered) {
            tryb = gp_fec_rx_repair(&r->frx, pn - f.back, (unsigned)f.k, (unsigned)f.ridx, f.data,
                                    (size_t)f.L, &r->rx, r->has_rx, r->rx_largest);
        }
    }
    if (refused) {
        r->st.dropped_full++;
        return rc;
    }

    r->st.pkts_recv++;
    if (!recovered)
        gp_ack_loss_count(&r->rxl, pn, r->has_rx, r->rx_largest);
    int in_order = !r->has_rx || pn == r->rx_largest + 1;
    if (!r->has_rx || pn > r->rx_largest) {
        r->has_rx = 1;
        r->rx_largest = pn;
        r->rx_largest_time = now;
    }
    gp_ack_add(&r->rx, pn);
    r->ack_dirty = 1;
    /* Ack every second ack-eliciting packet, at once on a gap (the sender's loss detection
     * wants to hear about it), else within max_ack_delay. Repair packets only arm the
     * timer, so they are acked (and leave the sender's flight) without ack ping-pong. */
    if (eliciting) {
        if (++r->ack_elicit >= 2 || !in_order)
            r->ack_now = 1;
    }
    if ((eliciting || repair) && !r->ack_deadline)
        r->ack_deadline = now + GP_REL_MAX_ACK_DELAY_NS;

    /* Decoding runs after the packet is fully applied, and rebuilt packets never decode
     * further (recovered = 1 skips repairs), so recursion is one level deep. */
    if (!recovered && (flags & HF_PROTECTED)) {
        gp_fec_rx_source(&r->frx, pn, p, (size_t)(end - p));
        for (size_t i = 0; i < GP_FEC_RX_BLOCKS; i++) {
            gp_fec_rx_block *b = &r->frx.blk[i];
            if (b->used && pn >= b->first && pn < b->first + b->k)
                fec_try(r, b, now);
        }
    }
    if (tryb && tryb->used)
        fec_try(r, tryb, now);
    return rc;
}

int gp_rel_input(gp_rel *r, const uint8_t *p, size_t len, uint64_t now_ns) {
    if (r->dead)
        return GP_ERR_STATE;
    uint64_t now = gp_rel_advance_now(r, now_ns);
    const uint8_t *end = p + len;
    uint64_t pn;
    if (len > r->cfg.max_payload_rx || len < 3 || (p[0] & ~HF_PROTECTED)) {
        r->st.malformed++;
        return GP_ERR_MALFORMED;
    }
    const uint8_t *q = gp_vget(p + 1, end, &pn);
    if (!q) {
        r->st.malformed++;
        return GP_ERR_MALFORMED;
    }
    r->st.bytes_recv += len;
    return rx_packet(r, pn, p[0], q, end, now, 0);
}

/* ---- FEC, sending ---- */

/* The loss FEC is sized for: what the peer measures on our packets. Until it has measured
 * anything (its first 16 of our packet numbers), a session's first bursts would go out
 * unprotected, and on a lossy path their recovery — with no RTT sample yet, or one or two —
 * is the slowest of the session. So until then FEC assumes the loss we measure on the peer's
 * packets (paths are usually about as lossy both ways), or GP_FEC_PRIOR_LOSS before that too.
 * On a clean path that costs a few repairs in the first round trip of a session. */
static double fec_loss(const gp_rel *r) {
    if (r->peer_loss_known)
        return r->peer_loss;
    return r->rxl.windows ? r->rxl.rate : GP_FEC_PRIOR_LOSS;
}

static int fec_active(const gp_rel *r) {
    return r->cfg.fec && fec_loss(r) >= GP_FEC_MIN_LOSS;
}

static void fec_finalize(gp_rel *r, uint64_t last_repair_pn, uint64_t now) {
    for (uint64_t pn = r->ftx.first; pn < r->ftx.first + r->ftx.k; pn++) {
        srec *s = sr_get(r, pn);
        if (!s || (s->flags & SF_RESOLVED))
            continue;
        s->flags &= (uint8_t)~SF_FEC_PENDING;
        s->fec_end = last_repair_pn;
        if (last_repair_pn)
            s->loss_ref = u64max(s->loss_ref, now);
    }
    r->ftx.closing = 0;
    r->ftx.k = 0;
}

/* Closes the open block (`tail`: the burst ended); repairs are sized by gp_fec_tx_close. A
 * block that needs none is finalized at once. */
static void fec_close(gp_rel *r, int tail, uint64_t now) {
    if (!gp_fec_tx_close(&r->ftx, tail, fec_loss(r), r->cfg.fec))
        fec_finalize(r, 0, now);
}

/* ---- building packets ---- */

enum { K_DATA, K_PROBE, K_ACK, K_PING, K_REPAIR };

static uint8_t *ack_put(gp_rel *r, uint8_t *p, uint8_t *end, uint64_t now, uint64_t *largest) {
    /* `now` is the send_at time: an ACK held back by the caller's jitter reports that too. */
    uint64_t delay_us = now > r->rx_largest_time ? (now - r->rx_largest_time) / 1000 : 0;
    return gp_ack_encode(&r->rx, p, end, delay_us, gp_ack_loss_bp(&r->rxl), largest);
}

/* How far behind schedule the pacer may fall and still catch up, as time at the pacing rate.
 * Hosts do not call back exactly at gp_rel_expiry: libuv timers count whole milliseconds and
 * a busy machine wakes several ms late. If a late call could only use a couple of packets of
 * credit, the rate would be capped at ~3 packets per wake-up whatever the pacing rate — and
 * the delivery rate, hence the bandwidth estimate, would follow it down (a host waking every
 * 8 ms would send ~2.5 Mbit/s and build a standing backlog at 30% loss). So the time a call
 * comes late is owed, up to srtt/4 within 2-25 ms — after a pause for pacing (the host was
 * asked back at pace_next) or for want of data (a response after a quiet spell leaves at
 * once: the pipe has drained meanwhile). Not after a full window (cwnd_blocked): what ACKs
 * open then goes out paced, two packets of credit as before, or ACK compression would turn
 * into bursts into the bottleneck's queue (a bulk transfer at 20-30% loss lost ~12% of its
 * goodput that way). */
static uint64_t pace_credit(const gp_rel *r) {
    uint64_t c = r->rtt.srtt / 4;
    return c < PACE_CREDIT_MIN_NS   ? PACE_CREDIT_MIN_NS
           : c > PACE_CREDIT_MAX_NS ? PACE_CREDIT_MAX_NS
                                    : c;
}

/* Pacing: one packet per size/rate, with the credit of a late call kept up to pace_credit()
 * (see there). */
static void pace_after(gp_rel *r, size_t size, uint64_t now) {
    uint64_t iv = (uint64_t)size * SEC / u64max(r->cc.pacing_rate, 1);
    uint64_t keep = r->cwnd_blocked ? 2 * iv : u64max(2 * iv, pace_credit(r));
    uint64_t lo = now > keep ? now - keep : 0;
    r->pace_next = u64max(r->pace_next, lo) + iv;
}

static unsigned ack_repeats(const gp_rel *r);

static ssize_t build(gp_rel *r, uint8_t *buf, int kind, uint64_t now, uint64_t send_at) {
    int rc = sr_reserve(r);
    if (rc == GP_ERR_BUFFER) { /* ring at its bound: the oldest unresolved packet is lost */
        on_lost(r, sr_slot(r, r->sr_base));
        sr_advance(r);
        rc = sr_reserve(r);
    }
    if (rc)
        return rc;
    size_t mp = r->cfg.max_payload;
    uint64_t pn = r->next_pn;
    /* Data and probes open an FEC block; while one is open every packet joins it (a block is
     * a run of consecutive packet numbers). Keepalives do not open one: liveness has its own
     * probing, and a repair per idle ping would triple an idle link's cost. */
    int protect = kind != K_REPAIR && !r->ftx.closing &&
                  (r->ftx.open || ((kind == K_DATA || kind == K_PROBE) && fec_active(r)));
    uint8_t *p = buf;
    *p++ = protect ? HF_PROTECTED : 0;
    p = gp_vput(p, pn);
    uint8_t *frames = p, *end = buf + mp - (protect ? GP_FEC_RESERVE : 0);
    srec rec;
    memset(&rec, 0, sizeof rec);
    rec.pn = pn;
    rec.ack_largest = NONE;
    int elicit = 0;
    uint64_t rtx0 = r->st.retransmits;
    if (kind == K_REPAIR) {
        uint8_t *q = gp_fec_tx_repair_put(&r->ftx, p, buf + mp, pn);
        if (!q) { /* cannot happen with GP_FEC_RESERVE; give the block up rather than stall */
            fec_finalize(r, 0, now);
            return 0;
        }
        p = q;
    } else {
        int want_ack = r->ack_dirty && r->rx.n;
        uint8_t *dend = end;
        if (want_ack && kind != K_ACK && kind != K_PING)
            dend = end - ACK_ROOM;
        if (kind == K_PROBE)
            gp_sendq_probe_fill(r, &p, dend, &rec);
        if (kind == K_DATA || kind == K_PROBE)
            gp_sendq_fill(r, &p, dend, &rec);
        /* The largest datagram fills a packet with no room kept for an ACK: it goes alone,
         * the ACK in the next packet. */
        if (kind == K_DATA && p == frames && gp_sendq_dgram_alone(r, &p, end, &rec))
            want_ack = 0;
        if (kind == K_PING || (kind == K_PROBE && !rec.nrefs))
            *p++ = FT_PING;
        elicit = rec.nrefs > 0 || rec.ndg > 0 || kind == K_PING || kind == K_PROBE;
        if (want_ack) {
            uint8_t *q = ack_put(r, p, end, send_at, &rec.ack_largest);
            if (q) {
                p = q;
                if (r->ack_repeating)
                    r->ack_rep_left--;
                else
                    r->ack_rep_left = ack_repeats(r);
                r->ack_repeating = 0;
                r->ack_rep_at = now + ACK_REPEAT_GAP_NS;
                r->ack_dirty = 0;
                r->ack_now = 0;
                r->ack_elicit = 0;
                r->ack_deadline = 0;
            }
        }
    }
    if (p == frames)
        return 0;
    size_t size = (size_t)(p - buf);

    rec.size = (uint32_t)size;
    rec.sent_at = rec.loss_ref = send_at;
    if (kind == K_ACK) {
        /* Ack-only packets are not in flight: nothing to retransmit, and a peer that only
         * receives them never acks them. Resolved at once. */
        rec.flags = SF_RESOLVED;
    } else {
        rec.flags = SF_INFLIGHT | (elicit ? SF_ELICITING : 0);
        if (r->inflight == 0) {
            r->first_sent_time = send_at;
            r->delivered_time = send_at;
        }
        rec.delivered = r->delivered;
        rec.delivered_time = r->delivered_time;
        rec.first_sent_time = r->first_sent_time;
        if (r->app_limited_until)
            rec.flags |= SF_APP_LIMITED;
        r->inflight += size;
    }
    if (protect) {
        rec.flags |= SF_FEC_PENDING;
        if (gp_fec_tx_add(&r->ftx, pn, frames, (size_t)(p - frames), now)) {
            rec.flags &= (uint8_t)~SF_FEC_PENDING, protect = 0;
        } else {
            if (kind == K_PROBE || r->st.retransmits != rtx0)
                r->ftx.rtx = 1;
            if (rec.ndg)
                r->ftx.dgram = 1;
        }
    }
    *sr_slot(r, pn) = rec;
    r->next_pn++;
    r->last_tx = now;
    r->st.pkts_sent++;
    r->st.bytes_sent += size;
    if (elicit) {
        r->eliciting_inflight++;
        r->last_eliciting_sent = send_at;
        set_pto(r);
    }
    if (kind == K_DATA || kind == K_REPAIR)
        pace_after(r, size, now);
    if (kind == K_REPAIR) {
        r->st.fec_sent++;
        r->st.fec_bytes += size;
        if (++r->ftx.m_sent == r->ftx.m)
            fec_finalize(r, pn, send_at);
    } else if (protect && r->ftx.open) {
        /* A block with datagrams does not close when the burst ends: IP packets come one
         * by one as the TCP inside sends them, and a block of one costs four repairs at 30%
         * loss. It closes full (GP_FEC_K_MAX) or after gp_fec_hold (on_timers): what it
         * rebuilds arrives that much later, which the TCP inside sees as delay, not loss. */
        int burst_end = !gp_sendq_has_data(r);
        unsigned kmax = r->ftx.dgram ? GP_FEC_K_MAX : GP_FEC_K_TARGET;
        if (r->ftx.k >= kmax || (burst_end && !r->ftx.dgram))
            fec_close(r, burst_end, now);
    }
    if (rec.flags & SF_RESOLVED)
        sr_advance(r);
    return (ssize_t)size;
}

/* ---- path MTU probes (rudp_pmtu.h) ---- */

/* The chance a probe goes unanswered by bad luck alone: lost on its way, or every ack naming
 * it lost on theirs (acks repeat their ranges, so this overstates it, which only asks for more
 * losses in a row). Our way's loss is that of our packets no larger than the base: on a path
 * narrower than the raised size every larger packet is lost, and counting those (as the
 * peer's measure of our packets does) would make a black hole look like a lossy link and ask
 * for twelve lost probes instead of three. */
static double pmtu_loss(const gp_rel *r) {
    double q = r->rxl.windows ? r->rxl.rate : GP_FEC_PRIOR_LOSS;
    return 1 - (1 - r->small_loss) * (1 - q);
}

/* How long a probe's ack may take: two smoothed RTTs (or one plus its variation, if more),
 * the peer's ack delay and our send jitter. */
static uint64_t pmtu_timeout(const gp_rel *r) {
    return u64max(2 * r->rtt.srtt, r->rtt.srtt + 4 * r->rtt.rttvar) + GP_REL_MAX_ACK_DELAY_NS +
           GP_REL_MAX_JITTER_NS;
}

/* A probe: a packet of exactly `size` bytes of PING frames (one byte each: every peer takes
 * them, so probing needs no new frame and no negotiation). Not in flight and not protected:
 * its loss says nothing about congestion (RFC 8899 §4.5) and it must not join an FEC block,
 * whose images are max_payload wide; the prober alone follows its fate. */
static ssize_t build_pmtu_probe(gp_rel *r, uint8_t *buf, size_t size, uint64_t now,
                                uint64_t send_at) {
    if (sr_reserve(r))
        return 0; /* the ring is at its bound: data first */
    uint64_t pn = r->next_pn;
    uint8_t *p = buf;
    *p++ = 0;
    p = gp_vput(p, pn);
    memset(p, FT_PING, size - (size_t)(p - buf));
    srec rec;
    memset(&rec, 0, sizeof rec);
    rec.pn = pn;
    rec.ack_largest = NONE;
    rec.size = (uint32_t)size;
    rec.sent_at = rec.loss_ref = send_at;
    rec.flags = SF_RESOLVED;
    *sr_slot(r, pn) = rec;
    r->next_pn++;
    sr_advance(r);
    r->last_tx = now;
    r->st.pkts_sent++;
    r->st.bytes_sent += size;
    pace_after(r, size, now);
    gp_pmtu_sent(&r->pmtu, size, pn, now, pmtu_timeout(r));
    return (ssize_t)size;
}

static int ack_due(const gp_rel *r, uint64_t now) {
    return r->ack_dirty && r->rx.n && (r->ack_now || (r->ack_deadline && now >= r->ack_deadline));
}

/* Copies of a burst's last ACK (see gp_ack_repeats), on the loss we measure. */
static unsigned ack_repeats(const gp_rel *r) {
    return gp_ack_repeats(r->rxl.rate);
}

static int keepalive_due(const gp_rel *r, uint64_t now) {
    /* NAT bindings need outbound traffic every idle_keepalive; and after half of that
     * without hearing from the peer, a PING (ack-eliciting, so probed with backoff until
     * acked) checks it is still there long before dead_after runs out. */
    return now - r->last_tx >= r->cfg.idle_keepalive_ns ||
           (!r->eliciting_inflight && now - r->last_rx >= r->cfg.idle_keepalive_ns / 2);
}

static void on_timers(gp_rel *r, uint64_t now) {
    if (r->loss_time && now >= r->loss_time) {
        detect_lost(r, now);
        set_pto(r);
    }
    /* Not `else`: the loss timer may leave no loss time and a probe deadline already past
     * (gp_rel_expiry shows the loss time first, RFC 9002 §6.2.1); returning with nothing
     * sent and an expiry in the past would cost the host a wasted wake-up. */
    if (!r->loss_time && r->pto_deadline && now >= r->pto_deadline) {
        r->pto_count++;
        r->st.probes++;
        r->probes_due = 2;
        r->pto_deadline = now + pto_interval(r);
    }
    if (r->ftx.open && now >= r->ftx.opened_at + gp_fec_hold(r->rtt.srtt))
        fec_close(r, 0, now);
    if (r->pmtu.probe && now >= r->pmtu.due_at && gp_pmtu_lost(&r->pmtu, now, pmtu_loss(r)))
        pmtu_follow(r);
}

ssize_t gp_rel_output(gp_rel *r, uint8_t *buf, size_t cap, uint64_t now_ns, uint64_t send_at_ns) {
    if (r->dead)
        return GP_ERR_STATE;
    uint64_t now = gp_rel_advance_now(r, now_ns);
    uint64_t send_at = send_at_ns > now ? send_at_ns : now;
    if (now - r->last_rx >= r->cfg.dead_after_ns) {
        r->dead = 1;
        return GP_ERR_STATE;
    }
    if (cap < r->cfg.max_payload)
        return GP_ERR_BUFFER;
    gp_sendq_expire(r, now);
    on_timers(r, now);
    apply_payload(r);
    if (r->probes_due > 0) {
        r->probes_due--;
        return build(r, buf, K_PROBE, now, send_at);
    }
    int paced = now >= r->pace_next;
    if (paced && r->ftx.closing) {
        ssize_t n = build(r, buf, K_REPAIR, now, send_at);
        if (n)
            return n;
    }
    /* A probe goes between FEC blocks (a block is a run of consecutive packet numbers). */
    if (paced && !r->ftx.open && !r->ftx.closing) {
        int changed = 0; /* (on_timers has seen a timed-out probe already; never twice) */
        size_t probe = gp_pmtu_due(&r->pmtu, now, pmtu_loss(r), &changed);
        if (changed)
            pmtu_follow(r);
        if (probe && probe <= cap)
            return build_pmtu_probe(r, buf, probe, now, send_at);
    }
    if (paced && !r->ftx.closing && r->inflight < r->cc.cwnd && gp_sendq_has_data(r))
        return build(r, buf, K_DATA, now, send_at);
    if (r->ack_rep_left && !r->ack_dirty && r->rx.n && now >= r->ack_rep_at) {
        r->ack_dirty = r->ack_now = r->ack_repeating = 1;
    }
    if (ack_due(r, now))
        return build(r, buf, K_ACK, now, send_at);
    if (keepalive_due(r, now)) {
        r->st.keepalives++;
        return build(r, buf, K_PING, now, send_at);
    }
    r->cwnd_blocked = !r->ftx.closing && gp_sendq_has_data(r) && r->inflight >= r->cc.cwnd;
    /* Nothing to send although the window has room: samples taken now measure the
     * application, not the path (delivery-rate estimation, app-limited marking). */
    if (!gp_sendq_has_data(r) && r->inflight < r->cc.cwnd)
        r->app_limited_until = u64max(r->delivered + r->inflight, 1);
    return 0;
}

uint64_t gp_rel_expiry(const gp_rel *r) {
    if (r->dead)
        return UINT64_MAX;
    uint64_t t = r->last_rx + r->cfg.dead_after_ns;
    if (r->probes_due)
        return r->now;
    if (r->ack_rep_left && !r->ack_dirty && r->rx.n)
        t = u64min(t, r->ack_rep_at);
    if (r->ack_dirty && r->rx.n) {
        if (r->ack_now)
            return r->now;
        if (r->ack_deadline)
            t = u64min(t, r->ack_deadline);
    }
    if (r->loss_time)
        t = u64min(t, r->loss_time);
    else if (r->pto_deadline)
        t = u64min(t, r->pto_deadline);
    if (r->ftx.closing || (gp_sendq_has_data(r) && r->inflight < r->cc.cwnd))
        t = u64min(t, r->pace_next);
    if (r->ftx.open)
        t = u64min(t, r->ftx.opened_at + gp_fec_hold(r->rtt.srtt));
    /* A probe's timeout; or the next probe, which waits for pacing and for no FEC block. */
    if (r->pmtu.probe)
        t = u64min(t, r->pmtu.due_at);
    else if (!r->ftx.open && !r->ftx.closing)
        t = u64min(t, u64max(gp_pmtu_expiry(&r->pmtu), r->pace_next));
    t = u64min(t, r->last_tx + r->cfg.idle_keepalive_ns);
    if (!r->eliciting_inflight)
        t = u64min(t, r->last_rx + r->cfg.idle_keepalive_ns / 2);
    return t;
}

void gp_rel_get_stats(const gp_rel *r, gp_rel_stats *out) {
    *out = r->st;
    out->msgs_delivered = r->reasm.delivered;
    out->srtt_ns = r->rtt.srtt;
    out->rttvar_ns = r->rtt.rttvar;
    out->min_rtt_ns = r->rtt.have ? r->rtt.min_rtt : 0;
    out->latest_rtt_ns = r->rtt.latest;
    out->loss_rate_tx = r->peer_loss;
    out->loss_rate_rx = r->rxl.rate;
    out->loss_rate_det = r->det_loss;
    out->cwnd_bytes = r->cc.cwnd;
    out->inflight = r->inflight;
    out->pacing_bps = r->cc.pacing_rate * 8;
    out->btlbw_bps = r->cc.bw * 8;
    out->cc_state = r->cc.state;
    out->path_payload = r->pmtu.usable;
    out->pmtu_probes = r->pmtu.probes;
    out->pmtu_probes_lost = r->pmtu.lost;
    out->pmtu_lowered = r->pmtu.lowered;
}
