/* rudp_rel_int.h — what the reliability engine's own files share: the engine's state (struct
 * gp_rel), the sent-packet record and the wire constants both sides of a packet use. Only the
 * engine's files include it: rudp_rel.c (packets, acks, loss detection, timers, pacing, FEC
 * glue, what was received) and rudp_rel_sendq.c (what is queued to send: messages, lanes,
 * the resend heap, datagrams, and the filling of a packet from them). Everyone else sees
 * rudp_rel.h. The ngtcp2/picoquic way: one connection record, several files working on it. */
#ifndef GP_RUDP_REL_INT_H
#define GP_RUDP_REL_INT_H

#include "rudp_ack.h"
#include "rudp_cc.h"
#include "rudp_fec.h"
#include "rudp_pmtu.h"
#include "rudp_reasm.h"
#include "rudp_rel.h"
#include "rudp_ring.h"

#include <stddef.h>
#include <stdint.h>

#define REFS_MAX 16   /* message fragments per packet */
#define PKT_HDR_MAX 9 /* flags + 8-byte packet number */
#define DGRAM_HDR 3   /* FT_DGRAM + a 2-byte length varint */
_Static_assert(GP_REL_DGRAM_OVERHEAD == PKT_HDR_MAX + GP_FEC_RESERVE + DGRAM_HDR,
               "rudp_rel.h's datagram overhead is the engine's headers");

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

/* sent-packet flags */
enum {
    SF_INFLIGHT = 1,    /* counts toward bytes in flight and loss detection */
    SF_ELICITING = 2,   /* carries MSG or PING: the peer acks it promptly; arms the PTO */
    SF_APP_LIMITED = 4, /* sent while the application had nothing more to send */
    SF_RESOLVED = 8,    /* acked or declared lost */
    SF_FEC_PENDING = 16 /* FEC source whose repairs are not all sent yet */
};

/* The send queues' own records (rudp_rel_sendq.c). */
typedef struct smsg smsg;     /* a message being sent */
typedef struct slane slane;   /* a lane with messages not fully acked */
typedef struct rq_ent rq_ent; /* a lost chunk in the resend heap */

/* A message fragment a sent packet carries: chunk idx of message id. */
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

    /* datagrams: the send queue (its turn against the lanes' in gp_sendq_fill), received ones */
    dgram *dq_head, *dq_tail;
    size_t dq_bytes;
    int dg_turn;    /* datagrams go before the next lane */
    size_t dg_sent; /* bytes of datagrams sent in this turn */
    dgram *dr_head, *dr_tail, *dr_lent;
    size_t dr_bytes;
};

static inline uint64_t gp_rel_advance_now(gp_rel *r, uint64_t now) {
    if (now > r->now) /* a clock that steps back is treated as standing still */
        r->now = now;
    return r->now;
}

/* ---- the send queues (rudp_rel_sendq.c) ---- */

void gp_sendq_init(gp_rel *r);
void gp_sendq_free(gp_rel *r); /* the queued messages, lanes, resend heap and datagrams */
/* Whether anything waits to go: a lost chunk, a lane with unsent chunks, a datagram. */
int gp_sendq_has_data(const gp_rel *r);
/* The chunks a packet carried were acked, or the packet was declared lost. */
void gp_sendq_acked(gp_rel *r, const srec *s);
void gp_sendq_lost(gp_rel *r, const srec *s);
/* Frees fully acked messages at the floor (after an ACK frame). */
void gp_sendq_advance(gp_rel *r);
/* Queued datagrams: drops those that waited too long, or no longer fit a packet. */
void gp_sendq_expire(gp_rel *r, uint64_t now);
void gp_sendq_refit(gp_rel *r);
/* Fill [*pp, end) of the packet rec describes, moving *pp: with data (lost chunks, then the
 * lanes and datagrams in turn), with a probe's chunks, or with one datagram alone (1 if it
 * went). */
void gp_sendq_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec);
void gp_sendq_probe_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec);
int gp_sendq_dgram_alone(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec);

#endif
