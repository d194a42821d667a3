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
 * This file is the engine: messages, lanes, packets, loss detection, timers, pacing, and the
 * glue between the parts it calls, each a file of its own with its own unit test:
 *   rudp_ack.[ch]    received packet numbers, the ACK frame, the receiver's loss meter;
 *   rudp_fec.[ch]    the Cauchy Reed-Solomon code, the open block, the receiver's store;
 *   rudp_cc.[ch]     RTT estimation and the congestion controller (an ops record: BBR-like);
 *   rudp_pmtu.[ch]   path MTU probing: how large a packet the path is trusted with;
 *   rudp_reasm.[ch]  received messages: reassembly, the receive buffer, lane-ordered delivery;
 *   rudp_ring.[ch]   the ring buffer of the engine's windows (messages, packets);
 *   rudp_varint.h    the varints of every frame. */
#include "rudp_rel.h"

#include "buf.h"
#include "list.h"
#include "rudp_ack.h"
#include "rudp_cc.h"
#include "rudp_fec.h"
#include "rudp_pmtu.h"
#include "rudp_reasm.h"
#include "rudp_ring.h"
#include "rudp_varint.h"

#include <stdlib.h>
#include <string.h>

/* ---- tunables (protocol constants; the rationale is in RUDP.md) ---- */
#define MS 1000000ull
#define SEC 1000000000ull
#define GRANULARITY_NS (1 * MS)    /* RFC 9002 kGranularity */
#define PKT_THRESHOLD 3            /* RFC 9002 kPacketThreshold */
#define MSG_WINDOW GP_REASM_WINDOW /* message ids between sender floor and newest */
#define REFS_MAX 16                /* message fragments per packet */
#define SR_RING_MAX (1u << 16)     /* unresolved sent packets; beyond it the oldest is lost */
#define PKT_HDR_MAX 9              /* flags + 8-byte packet number */
#define ACK_ROOM 32                /* room a full data packet leaves for a piggybacked ACK */
#define MIN_CHUNK 64
#define RR_QUANTUM 16384            /* bytes of new data a lane sends per round-robin turn */
#define PACE_CREDIT_MIN_NS (2 * MS) /* pacing credit kept for late calls: srtt/4 within these */
#define PACE_CREDIT_MAX_NS (25 * MS)
#define ACK_REPEAT_GAP_NS (5 * MS) /* copies of a burst's last ACK, this far apart */
#define DGRAM_HDR 3                /* FT_DGRAM + a 2-byte length varint */
_Static_assert(GP_REL_DGRAM_OVERHEAD == PKT_HDR_MAX + GP_FEC_RESERVE + DGRAM_HDR,
               "rudp_rel.h's datagram overhead is this file's headers");

#define NONE UINT64_MAX

/* frame types */
enum {
    FT_PING = 0x01,
    FT_ACK = GP_ACK_FT,
    FT_MSG = 0x10,
    FT_MSG_CHUNK = 0x11,
    FT_DGRAM = 0x12,
    FT_REPAIR = GP_FEC_FT
};
#define HF_PROTECTED 0x01 /* packet header flag: FEC source packet, keep it for decoding */

/* chunk states */
enum { CH_UNSENT = 0, CH_FLIGHT, CH_LOST, CH_ACKED };

/* sent-packet flags */
enum {
    SF_INFLIGHT = 1,    /* counts toward bytes in flight and loss detection */
    SF_ELICITING = 2,   /* carries MSG or PING: the peer acks it promptly; arms the PTO */
    SF_APP_LIMITED = 4, /* sent while the application had nothing more to send */
    SF_RESOLVED = 8,    /* acked or declared lost */
    SF_FEC_PENDING = 16 /* FEC source whose repairs are not all sent yet */
};

static inline uint64_t u64min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}
static inline uint64_t u64max(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* ---- data structures ---- */

/* A message being sent. Chunk i covers data[i*csz, min((i+1)*csz, len)). */
typedef struct smsg {
    uint64_t id, dep_delta; /* dep_delta: id - previous id on the lane, 0 = none */
    uint32_t lane;
    int single; /* one FT_MSG frame, no chunk fields */
    size_t len, csz;
    uint32_t nchunks, nacked, next_unsent;
    struct smsg *qnext; /* lane FIFO of messages with unsent chunks */
    uint8_t *data;      /* NULL once fully acked */
    uint8_t *st;        /* chunk states */
    uint64_t *cpn;      /* newest packet number carrying each chunk */
} smsg;

typedef struct slane {
    uint32_t lane;
    uint64_t last_id; /* newest message queued on this lane */
    smsg *qhead, *qtail;
    struct slane *rr_next, *rr_prev; /* round robin among lanes with unsent chunks */
    int in_rr;
} slane;

typedef struct sref {
    uint64_t id;
    uint32_t idx;
} sref;

typedef struct srec {
    uint64_t pn;
    uint64_t sent_at;     /* send_at given by the caller: RTT samples are taken from it */
    uint64_t loss_ref;    /* time the time-threshold counts from */
    uint64_t fec_end;     /* last repair pn of this packet's block (0: not protected) */
    uint64_t ack_largest; /* largest acked in the ACK frame this packet carried, or NONE */
    uint64_t delivered, delivered_time, first_sent_time; /* delivery-rate snapshot */
    uint32_t size;
    uint16_t ndg; /* datagrams it carried (for dgrams_lost) */
    uint8_t flags, nrefs;
    sref refs[REFS_MAX];
} srec;

/* A datagram queued to send (t: when) or received and not yet taken. */
typedef struct dgram {
    struct dgram *next;
    uint64_t t;
    size_t len;
    uint8_t b[];
} dgram;

typedef struct rq_ent {
    uint64_t id;
    uint32_t idx;
} rq_ent;

struct gp_rel {
    gp_rel_config cfg;
    uint64_t now;
    int dead;
    gp_rel_stats st;

    /* sender: messages */
    gp_ring sm;                 /* smsg * by id: [sm_floor, next_id) */
    uint64_t sm_floor, next_id; /* ids below sm_floor are fully acked (and freed) */
    size_t sbuf_bytes;
    slane **lanes;
    size_t lanes_cap, nlanes;
    slane *rr;
    size_t rr_sent; /* bytes of new chunks the current lane sent in its turn */
    rq_ent *rq;
    size_t rq_cap, rq_len, rq_valid; /* resend heap; rq_valid: chunks in CH_LOST */
    size_t chunk_budget;

    /* sender: packets */
    gp_ring sr; /* srec by packet number: [sr_base, next_pn) */
    uint64_t sr_base, next_pn;
    uint64_t inflight, eliciting_inflight;
    uint64_t last_eliciting_sent;
    int has_largest_acked;
    uint64_t largest_acked;
    uint64_t loss_time; /* 0: none */
    uint64_t pto_deadline;
    unsigned pto_count;
    int probes_due;
    uint64_t last_tx, last_rx;
    double peer_loss;    /* loss the peer measures on our packets (from its ACKs) */
    int peer_loss_known; /* the peer has measured a first window (it saw our pn 15) */
    double det_loss;

    gp_rtt rtt; /* RFC 9002 §5 */

    /* delivery rate (draft-cheng-iccrg-delivery-rate-estimation) */
    uint64_t delivered, delivered_time, first_sent_time, app_limited_until;

    gp_cc cc; /* congestion control: sets cc.cwnd and cc.pacing_rate */
    uint64_t pace_next;
    int cwnd_blocked; /* the last call sent nothing for a full window (see pace_credit) */

    gp_fec_tx ftx;          /* FEC, sending: the open block */
    size_t pending_payload; /* a new max_payload waiting for the FEC block to be sent */
    gp_pmtu pmtu;           /* path MTU: max_payload follows its usable size */
    double small_loss;      /* loss of our packets no larger than pmtu.base (see pmtu_loss) */

    /* receiver: packets and acks */
    gp_ack_ranges rx; /* packet numbers received */
    int has_rx;
    uint64_t rx_largest, rx_largest_time;
    int ack_dirty, ack_now;
    unsigned ack_elicit;
    uint64_t ack_deadline; /* 0: none */
    unsigned ack_rep_left; /* copies of the last ACK still to send if nothing follows it */
    int ack_repeating;     /* the ACK being built is such a copy */
    uint64_t ack_rep_at;
    gp_ack_loss rxl; /* loss we measure on the peer's packets (reported in our ACKs) */

    /* receiver: messages */
    gp_reasm reasm; /* reassembly, delivery in lane order */

    gp_fec_rx frx; /* FEC, receiving: protected packets and repairs */

    /* datagrams: the send queue (its turn against the lanes' in data_fill), received ones */
    dgram *dq_head, *dq_tail;
    size_t dq_bytes;
    int dg_turn;    /* datagrams go before the next lane */
    size_t dg_sent; /* bytes of datagrams sent in this turn */
    dgram *dr_head, *dr_tail, *dr_lent;
    size_t dr_bytes;
};

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

/* ---- sender messages: ids [sm_floor, next_id) in the ring r->sm ---- */

static smsg **sm_slot(const gp_rel *r, uint64_t id) {
    return (smsg **)gp_ring_at(&r->sm, id);
}

static smsg *sm_get(const gp_rel *r, uint64_t id) {
    if (id < r->sm_floor || id >= r->next_id)
        return NULL;
    return *sm_slot(r, id);
}

static int sm_reserve(gp_rel *r) { /* room for id next_id */
    uint64_t span = r->next_id + 1 - r->sm_floor;
    return gp_ring_fit(&r->sm, r->sm_floor, r->next_id, span) ? GP_ERR_NOMEM : 0;
}

static void smsg_free(smsg *m) {
    if (!m)
        return;
    free(m->data);
    free(m);
}

/* ---- lanes: open addressing on lane number, linear probing, backward-shift deletion ---- */

static size_t lane_hash(uint32_t lane, size_t cap) {
    return (size_t)((lane * 0x9e3779b1u) ^ (lane >> 16)) & (cap - 1);
}

static slane *lane_find(const gp_rel *r, uint32_t lane) {
    if (!r->lanes_cap)
        return NULL;
    for (size_t i = lane_hash(lane, r->lanes_cap);; i = (i + 1) & (r->lanes_cap - 1)) {
        slane *l = r->lanes[i];
        if (!l)
            return NULL;
        if (l->lane == lane)
            return l;
    }
}

static int lanes_insert_raw(slane **tab, size_t cap, slane *l) {
    for (size_t i = lane_hash(l->lane, cap);; i = (i + 1) & (cap - 1)) {
        if (!tab[i]) {
            tab[i] = l;
            return 0;
        }
    }
}

static slane *lane_get(gp_rel *r, uint32_t lane) {
    slane *l = lane_find(r, lane);
    if (l)
        return l;
    if ((r->nlanes + 1) * 2 > r->lanes_cap) { /* keep the load factor under 1/2 */
        size_t ncap = r->lanes_cap ? r->lanes_cap * 2 : 16;
        slane **n = calloc(ncap, sizeof *n);
        if (!n)
            return NULL;
        for (size_t i = 0; i < r->lanes_cap; i++)
            if (r->lanes[i])
                lanes_insert_raw(n, ncap, r->lanes[i]);
        free(r->lanes);
        r->lanes = n;
        r->lanes_cap = ncap;
    }
    l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->lane = lane;
    l->last_id = NONE;
    lanes_insert_raw(r->lanes, r->lanes_cap, l);
    r->nlanes++;
    return l;
}

static void lane_remove(gp_rel *r, slane *l) {
    size_t mask = r->lanes_cap - 1, i = lane_hash(l->lane, r->lanes_cap);
    while (r->lanes[i] != l)
        i = (i + 1) & mask;
    r->lanes[i] = NULL;
    /* Backward shift: move later members of the probe run into the hole when their home
     * slot is at or before it, so lookups never stop early at the hole. */
    for (size_t j = (i + 1) & mask; r->lanes[j]; j = (j + 1) & mask) {
        size_t h = lane_hash(r->lanes[j]->lane, r->lanes_cap);
        if (((j - h) & mask) >= ((j - i) & mask)) {
            r->lanes[i] = r->lanes[j];
            r->lanes[j] = NULL;
            i = j;
        }
    }
    r->nlanes--;
    free(l);
}

static void rr_add(gp_rel *r, slane *l) {
    if (l->in_rr)
        return;
    l->in_rr = 1;
    if (!r->rr) {
        l->rr_next = l->rr_prev = l;
        r->rr = l;
    } else { /* insert just before the current lane: served last in this turn */
        l->rr_next = r->rr;
        l->rr_prev = r->rr->rr_prev;
        l->rr_prev->rr_next = l;
        r->rr->rr_prev = l;
    }
}

static void rr_del(gp_rel *r, slane *l) {
    if (!l->in_rr)
        return;
    l->in_rr = 0;
    if (l->rr_next == l) {
        r->rr = NULL;
    } else {
        l->rr_prev->rr_next = l->rr_next;
        l->rr_next->rr_prev = l->rr_prev;
        if (r->rr == l)
            r->rr = l->rr_next;
    }
    l->rr_next = l->rr_prev = NULL;
}

/* ---- resend queue: a min-heap on (message id, chunk) ----
 * Lost chunks go out oldest message first: the oldest message is what the receiver's lane
 * (and its buffer floor) waits for; retransmitting in loss order could starve it behind
 * younger messages the receiver has no room for yet. Entries whose chunk is no longer lost
 * (acked meanwhile, or carried by a probe) are dropped when they reach the top. */

static int rq_less(rq_ent a, rq_ent b) {
    return a.id < b.id || (a.id == b.id && a.idx < b.idx);
}

static int rq_push(gp_rel *r, uint64_t id, uint32_t idx) {
    if (gp_grow(&r->rq, &r->rq_cap, r->rq_len + 1, 64, sizeof *r->rq) != 0)
        return GP_ERR_NOMEM;
    rq_ent e = {id, idx};
    size_t i = r->rq_len++;
    while (i > 0 && rq_less(e, r->rq[(i - 1) / 2])) {
        r->rq[i] = r->rq[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    r->rq[i] = e;
    return 0;
}

static void rq_pop(gp_rel *r) {
    rq_ent last = r->rq[--r->rq_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->rq_len)
            break;
        if (c + 1 < r->rq_len && rq_less(r->rq[c + 1], r->rq[c]))
            c++;
        if (!rq_less(r->rq[c], last))
            break;
        r->rq[i] = r->rq[c];
        i = c;
    }
    if (r->rq_len)
        r->rq[i] = last;
}

/* The lowest lost chunk, after dropping entries that are no longer lost. */
static int rq_front(gp_rel *r, smsg **m, uint32_t *idx) {
    while (r->rq_len) {
        rq_ent e = r->rq[0];
        smsg *s = sm_get(r, e.id);
        if (s && s->st[e.idx] == CH_LOST) {
            *m = s;
            *idx = e.idx;
            return 1;
        }
        rq_pop(r);
    }
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
    gp_ring_init(&r->sm, sizeof(smsg *), 16, GP_RING_UNBOUNDED);
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
    for (uint64_t id = r->sm_floor; id < r->next_id; id++)
        smsg_free(*sm_slot(r, id));
    gp_ring_free(&r->sm);
    for (size_t i = 0; i < r->lanes_cap; i++)
        free(r->lanes[i]);
    free(r->lanes);
    free(r->rq);
    gp_ring_free(&r->sr);
    gp_reasm_free(&r->reasm);
    gp_fec_tx_free(&r->ftx);
    gp_fec_rx_free(&r->frx);
    for (dgram *d = r->dq_head, *n; d; d = n)
        n = d->next, free(d);
    for (dgram *d = r->dr_head, *n; d; d = n)
        n = d->next, free(d);
    free(r->dr_lent);
    free(r);
}

int gp_rel_dead(const gp_rel *r) {
    return r->dead;
}

static uint64_t advance_now(gp_rel *r, uint64_t now) {
    if (now > r->now) /* a clock that steps back is treated as standing still */
        r->now = now;
    return r->now;
}

/* ---- sending messages ---- */

size_t gp_rel_send_space(const gp_rel *r) {
    if (r->dead || r->next_id - r->sm_floor >= MSG_WINDOW)
        return 0;
    if (r->sbuf_bytes == 0)
        return r->cfg.max_message;
    size_t room = r->sbuf_bytes < r->cfg.send_buffer ? r->cfg.send_buffer - r->sbuf_bytes : 0;
    return room < r->cfg.max_message ? room : r->cfg.max_message;
}

static size_t chunk_len(const smsg *m, uint32_t idx) {
    size_t off = (size_t)idx * m->csz;
    return m->len - off < m->csz ? m->len - off : m->csz;
}

int gp_rel_send(gp_rel *r, uint32_t lane, const uint8_t *msg, size_t len) {
    return gp_rel_send2(r, lane, msg, len, NULL, 0);
}

int gp_rel_send2(gp_rel *r, uint32_t lane, const uint8_t *msg, size_t len1, const uint8_t *more,
                 size_t len2) {
    size_t len = len1 + len2;
    if (r->dead)
        return GP_ERR_STATE;
    if (len == 0)
        return GP_ERR_INVALID;
    if (len > r->cfg.max_message)
        return GP_ERR_TOO_LARGE;
    if (r->next_id - r->sm_floor >= MSG_WINDOW)
        return GP_ERR_BUFFER;
    if (r->sbuf_bytes && r->sbuf_bytes + len > r->cfg.send_buffer)
        return GP_ERR_BUFFER;
    if (sm_reserve(r))
        return GP_ERR_NOMEM;
    slane *l = lane_get(r, lane);
    if (!l)
        return GP_ERR_NOMEM;
    uint64_t id = r->next_id;
    /* The previous message of the lane is named only while it may be undelivered: every id
     * below sm_floor is fully acked, hence complete at the receiver, hence delivered (its
     * own dep is older still, so by induction the whole prefix is delivered). */
    uint64_t dep_delta = l->last_id != NONE && l->last_id >= r->sm_floor ? id - l->last_id : 0;

    /* Chunk size: what fits in a data packet after the packet header, the room a repair
     * header needs and the room kept for a piggybacked ACK, minus this message's fragment
     * header at its largest. Fixed per message, so chunk i is the same bytes in every
     * retransmission and the receiver tracks one bit per chunk. */
    size_t B = r->chunk_budget;
    size_t hs = 1 + gp_vlen(id) + gp_vlen(dep_delta) + gp_vlen(lane) + gp_vlen(len);
    int single = hs + len <= B;
    size_t csz = single ? len : B - hs - gp_vlen(B) - gp_vlen(len);
    size_t nchunks = single ? 1 : (len + csz - 1) / csz;

    smsg *m = calloc(1, sizeof *m + nchunks * (sizeof(uint64_t) + 1));
    if (!m)
        goto nomem;
    m->data = malloc(len);
    if (!m->data)
        goto nomem;
    if (len1)
        memcpy(m->data, msg, len1);
    if (len2)
        memcpy(m->data + len1, more, len2);
    m->cpn = (uint64_t *)(m + 1);
    m->st = (uint8_t *)(m->cpn + nchunks);
    m->id = id;
    m->dep_delta = dep_delta;
    m->lane = lane;
    m->single = single;
    m->len = len;
    m->csz = csz;
    m->nchunks = (uint32_t)nchunks;
    *sm_slot(r, id) = m;
    r->next_id++;
    r->sbuf_bytes += len;
    GP_SLIST_APPEND(l->qhead, l->qtail, m, qnext);
    l->last_id = id;
    rr_add(r, l);
    r->st.msgs_sent++;
    return 0;
nomem:
    if (m)
        smsg_free(m);
    if (l->last_id == NONE && !l->qhead)
        lane_remove(r, l);
    return GP_ERR_NOMEM;
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
    /* A smaller payload: queued datagrams that no longer fit one packet would block the
     * queue for good. */
    r->dq_tail = NULL;
    for (dgram **dp = &r->dq_head; *dp;) {
        dgram *d = *dp;
        if (d->len <= gp_rel_dgram_max(r)) {
            r->dq_tail = d;
            dp = &d->next;
            continue;
        }
        *dp = d->next;
        r->dq_bytes -= d->len;
        r->st.dgrams_dropped++;
        free(d);
    }
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

/* ---- datagrams ---- */

size_t gp_rel_dgram_max(const gp_rel *r) {
    /* A packet of its own, FEC room kept (the ACK then goes in the next one: see build). */
    return r->cfg.max_payload - GP_REL_DGRAM_OVERHEAD;
}

/* Drops datagrams that waited longer than dgram_max_wait_ns: late IP packets only confuse the
 * TCP inside (it has retransmitted them already, or soon will). */
static void dq_expire(gp_rel *r, uint64_t now) {
    while (r->dq_head && now - r->dq_head->t > r->cfg.dgram_max_wait_ns) {
        dgram *d = r->dq_head;
        GP_SLIST_SHIFT(r->dq_head, r->dq_tail, next);
        r->dq_bytes -= d->len;
        r->st.dgrams_dropped++;
        free(d);
    }
}

int gp_rel_send_dgram(gp_rel *r, const uint8_t *p, size_t len, uint64_t now_ns) {
    if (r->dead)
        return GP_ERR_STATE;
    uint64_t now = advance_now(r, now_ns);
    if (len == 0)
        return GP_ERR_INVALID;
    if (len > gp_rel_dgram_max(r))
        return GP_ERR_TOO_LARGE;
    dq_expire(r, now);
    if (r->dq_bytes + len > r->cfg.dgram_queue) {
        r->st.dgrams_dropped++;
        return GP_ERR_BUFFER;
    }
    dgram *d = malloc(sizeof *d + len);
    if (!d)
        return GP_ERR_NOMEM;
    d->next = NULL;
    d->t = now;
    d->len = len;
    memcpy(d->b, p, len);
    GP_SLIST_APPEND(r->dq_head, r->dq_tail, d, next);
    r->dq_bytes += len;
    return 0;
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

/* Frees fully acked messages at the floor; their lanes go when nothing else refers to them. */
static void sm_advance(gp_rel *r) {
    while (r->sm_floor < r->next_id) {
        smsg *m = *sm_slot(r, r->sm_floor);
        if (m->nacked < m->nchunks)
            break;
        r->sbuf_bytes -= m->len;
        slane *l = lane_find(r, m->lane);
        if (l && !l->qhead && l->last_id == m->id)
            lane_remove(r, l);
        *sm_slot(r, r->sm_floor) = NULL;
        smsg_free(m);
        r->sm_floor++;
    }
}

static void chunk_acked(gp_rel *r, uint64_t id, uint32_t idx) {
    smsg *m = sm_get(r, id);
    if (!m || idx >= m->nchunks || m->st[idx] == CH_ACKED)
        return;
    if (m->st[idx] == CH_LOST)
        r->rq_valid--;
    m->st[idx] = CH_ACKED;
    if (++m->nacked == m->nchunks) {
        free(m->data);
        m->data = NULL;
    }
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
    for (unsigned i = 0; i < s->nrefs; i++) {
        smsg *m = sm_get(r, s->refs[i].id);
        uint32_t idx = s->refs[i].idx;
        /* Only the newest copy decides: an older packet's loss says nothing about a chunk
         * already sent again. */
        if (m && m->st[idx] == CH_FLIGHT && m->cpn[idx] == s->pn && rq_push(r, m->id, idx) == 0) {
            m->st[idx] = CH_LOST;
            r->rq_valid++;
        }
    }
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
    for (unsigned i = 0; i < s->nrefs; i++)
        chunk_acked(r, s->refs[i].id, s->refs[i].idx);
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
    sm_advance(r);
    set_pto(r);
}

/* ---- messages received ---- */

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
    uint64_t now = advance_now(r, now_ns);
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

static size_t frag_size(const smsg *m, uint32_t idx) {
    size_t h = 1 + gp_vlen(m->id) + gp_vlen(m->dep_delta) + gp_vlen(m->lane) + gp_vlen(m->len);
    if (!m->single)
        h += gp_vlen(m->csz) + gp_vlen(idx);
    return h + chunk_len(m, idx);
}

static uint8_t *frag_put(uint8_t *p, const smsg *m, uint32_t idx) {
    *p++ = m->single ? FT_MSG : FT_MSG_CHUNK;
    p = gp_vput(p, m->id);
    p = gp_vput(p, m->dep_delta);
    p = gp_vput(p, m->lane);
    p = gp_vput(p, m->len);
    if (!m->single) {
        p = gp_vput(p, m->csz);
        p = gp_vput(p, idx);
    }
    size_t n = chunk_len(m, idx);
    memcpy(p, m->data + (size_t)idx * m->csz, n);
    return p + n;
}

static void ref_add(gp_rel *r, srec *rec, smsg *m, uint32_t idx) {
    if (m->st[idx] == CH_LOST)
        r->rq_valid--;
    if (m->st[idx] != CH_UNSENT)
        r->st.retransmits++;
    m->st[idx] = CH_FLIGHT;
    m->cpn[idx] = rec->pn;
    rec->refs[rec->nrefs++] = (sref){m->id, idx};
}

/* Lost chunks first (oldest loss first), then new chunks, lanes in turn, up to RR_QUANTUM
 * bytes per turn. One chunk per turn would finish concurrent messages of equal size all
 * together, at the end of the whole backlog: four 16 KiB responses waiting for the window
 * would all complete with the last one. With a 16 KiB quantum they complete one after the
 * other (oldest lane first), while a small message still waits for at most one quantum per
 * busy lane, never behind a whole 1 MiB transfer. */
/* Puts the first queued datagram if it fits in [*pp, end): 1, else 0. */
static int dgram_put(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
    dgram *d = r->dq_head;
    if (DGRAM_HDR + d->len > (size_t)(end - *pp))
        return 0;
    uint8_t *p = *pp;
    *p++ = FT_DGRAM;
    p = gp_vput(p, d->len);
    memcpy(p, d->b, d->len);
    *pp = p + d->len;
    GP_SLIST_SHIFT(r->dq_head, r->dq_tail, next);
    r->dq_bytes -= d->len;
    r->dg_sent += d->len;
    rec->ndg++;
    r->st.dgrams_sent++;
    r->st.dgram_bytes_sent += d->len;
    free(d);
    return 1;
}

/* A lane's turn ended: the datagrams' comes next. */
static void lane_turn_over(gp_rel *r) {
    r->rr_sent = 0;
    if (r->dq_head)
        r->dg_turn = 1;
}

/* Datagrams take turns with the lanes: a quantum of datagrams after each lane's quantum (all
 * of them when no lane has data), so a flood of IP packets leaves requests and streams at
 * least half of the link, and they leave it the other half. */
static void data_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
    while (rec->nrefs < REFS_MAX) {
        smsg *m;
        uint32_t idx;
        if (rq_front(r, &m, &idx)) {
            if (frag_size(m, idx) > (size_t)(end - *pp))
                return;
            *pp = frag_put(*pp, m, idx);
            rq_pop(r);
            ref_add(r, rec, m, idx);
            continue;
        }
        slane *l = r->rr;
        if (r->dq_head && (r->dg_turn || !l)) {
            if (!dgram_put(r, pp, end, rec))
                return;
            if (r->dg_sent >= RR_QUANTUM || !r->dq_head) {
                r->dg_turn = 0;
                r->dg_sent = 0;
            }
            continue;
        }
        if (!l)
            return;
        m = l->qhead;
        idx = m->next_unsent;
        if (frag_size(m, idx) > (size_t)(end - *pp))
            return;
        *pp = frag_put(*pp, m, idx);
        ref_add(r, rec, m, idx);
        r->rr_sent += chunk_len(m, idx);
        if (++m->next_unsent == m->nchunks) {
            GP_SLIST_SHIFT(l->qhead, l->qtail, qnext);
            m->qnext = NULL;
            if (!l->qhead) {
                rr_del(r, l);
                lane_turn_over(r);
                continue;
            }
        }
        if (r->rr_sent >= RR_QUANTUM) {
            r->rr = l->rr_next;
            lane_turn_over(r);
        }
    }
}

/* A probe carries data (RFC 9002 §6.2.4): the unacked chunks of the oldest unacked
 * messages, lost or still in flight (lost ones bypass the congestion window this way).
 * Oldest *messages*, not oldest packets: the oldest message is the one everything else may
 * be waiting for at the receiver — and the one a receiver whose buffer is full always
 * admits — so probing it cannot deadlock; and a lost tail is repaired by the probe itself. */
static void probe_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
    unsigned scanned = 0;
    for (uint64_t id = r->sm_floor; id < r->next_id && scanned < 256; id++) {
        smsg *m = sm_get(r, id);
        for (uint32_t idx = 0; idx < m->next_unsent && scanned < 256; idx++, scanned++) {
            if (rec->nrefs == REFS_MAX)
                return;
            if (m->st[idx] == CH_ACKED || m->cpn[idx] == rec->pn)
                continue;
            if (frag_size(m, idx) > (size_t)(end - *pp))
                return;
            *pp = frag_put(*pp, m, idx);
            ref_add(r, rec, m, idx);
        }
    }
}

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

static int has_data(const gp_rel *r) {
    return r->rq_valid > 0 || r->rr != NULL || r->dq_head != NULL;
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
            probe_fill(r, &p, dend, &rec);
        if (kind == K_DATA || kind == K_PROBE)
            data_fill(r, &p, dend, &rec);
        /* The largest datagram fills a packet with no room kept for an ACK: it goes alone,
         * the ACK in the next packet. */
        if (kind == K_DATA && p == frames && r->dq_head && dgram_put(r, &p, end, &rec)) {
            want_ack = 0;
            if (!r->dq_head)
                r->dg_turn = 0, r->dg_sent = 0;
        }
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
        int burst_end = !has_data(r);
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
    uint64_t now = advance_now(r, now_ns);
    uint64_t send_at = send_at_ns > now ? send_at_ns : now;
    if (now - r->last_rx >= r->cfg.dead_after_ns) {
        r->dead = 1;
        return GP_ERR_STATE;
    }
    if (cap < r->cfg.max_payload)
        return GP_ERR_BUFFER;
    dq_expire(r, now);
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
        size_t probe = gp_pmtu_due(&r->pmtu, now, pmtu_loss(r), NULL);
        if (probe && probe <= cap)
            return build_pmtu_probe(r, buf, probe, now, send_at);
    }
    if (paced && !r->ftx.closing && r->inflight < r->cc.cwnd && has_data(r))
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
    r->cwnd_blocked = !r->ftx.closing && has_data(r) && r->inflight >= r->cc.cwnd;
    /* Nothing to send although the window has room: samples taken now measure the
     * application, not the path (delivery-rate estimation, app-limited marking). */
    if (!has_data(r) && r->inflight < r->cc.cwnd)
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
    if (r->ftx.closing || (has_data(r) && r->inflight < r->cc.cwnd))
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
