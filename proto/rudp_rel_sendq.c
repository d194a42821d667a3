/* rudp_rel_sendq.c — the reliability engine's send queues: what the application gave it to
 * send, until the peer has it. Part of the engine (rudp_rel.c is the rest; both include
 * rudp_rel_int.h); see proto/RUDP.md "Messages and lanes" and "Datagrams".
 *
 * Messages: gp_rel_send cuts each into fixed chunks when queued and names the previous message
 * of its lane (dep); the sent messages are kept by id in a ring until fully acked. Lanes live
 * in a hash table only while they have messages not fully acked; those with unsent chunks take
 * turns (round robin, RR_QUANTUM bytes a turn). Lost chunks wait in the resend heap, oldest
 * message first. Datagrams: a FIFO with a byte bound and a maximum wait, taking turns with the
 * lanes.
 *
 * rudp_rel.c builds the packets and decides when one goes; it asks this file to fill a
 * packet's room (gp_sendq_fill, gp_sendq_probe_fill, gp_sendq_dgram_alone) and tells it what
 * became of the chunks a packet carried (gp_sendq_acked, gp_sendq_lost). */
#include "buf.h"
#include "list.h"
#include "rudp_rel_int.h"
#include "rudp_varint.h"

#include <stdlib.h>
#include <string.h>

#define MSG_WINDOW GP_REASM_WINDOW /* message ids between sender floor and newest */
#define RR_QUANTUM 16384           /* bytes of new data a lane sends per round-robin turn */

/* chunk states */
enum { CH_UNSENT = 0, CH_FLIGHT, CH_LOST, CH_ACKED };

/* A message being sent. Chunk i covers data[i*csz, min((i+1)*csz, len)). */
struct smsg {
    uint64_t id, dep_delta; /* dep_delta: id - previous id on the lane, 0 = none */
    uint32_t lane;
    int single; /* one FT_MSG frame, no chunk fields */
    size_t len, csz;
    uint32_t nchunks, nacked, next_unsent;
    struct smsg *qnext; /* lane FIFO of messages with unsent chunks */
    uint8_t *data;      /* NULL once fully acked */
    uint8_t *st;        /* chunk states */
    uint64_t *cpn;      /* newest packet number carrying each chunk */
};

struct slane {
    uint32_t lane;
    uint64_t last_id; /* newest message queued on this lane */
    smsg *qhead, *qtail;
    struct slane *rr_next, *rr_prev; /* round robin among lanes with unsent chunks */
    int in_rr;
};

struct rq_ent {
    uint64_t id;
    uint32_t idx;
};

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

/* ---- lifecycle ---- */

void gp_sendq_init(gp_rel *r) {
    gp_ring_init(&r->sm, sizeof(smsg *), 16, GP_RING_UNBOUNDED);
}

void gp_sendq_free(gp_rel *r) {
    for (uint64_t id = r->sm_floor; id < r->next_id; id++)
        smsg_free(*sm_slot(r, id));
    gp_ring_free(&r->sm);
    for (size_t i = 0; i < r->lanes_cap; i++)
        free(r->lanes[i]);
    free(r->lanes);
    free(r->rq);
    for (dgram *d = r->dq_head, *n; d; d = n)
        n = d->next, free(d);
}

int gp_sendq_has_data(const gp_rel *r) {
    return r->rq_valid > 0 || r->rr != NULL || r->dq_head != NULL;
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

/* ---- what became of the chunks a packet carried ---- */

/* Frees fully acked messages at the floor; their lanes go when nothing else refers to them. */
void gp_sendq_advance(gp_rel *r) {
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

void gp_sendq_acked(gp_rel *r, const srec *s) {
    for (unsigned i = 0; i < s->nrefs; i++)
        chunk_acked(r, s->refs[i].id, s->refs[i].idx);
}

void gp_sendq_lost(gp_rel *r, const srec *s) {
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

/* ---- datagrams ---- */

size_t gp_rel_dgram_max(const gp_rel *r) {
    /* A packet of its own, FEC room kept (the ACK then goes in the next one: build, rudp_rel.c). */
    return r->cfg.max_payload - GP_REL_DGRAM_OVERHEAD;
}

/* Drops datagrams that waited longer than dgram_max_wait_ns: late IP packets only confuse the
 * TCP inside (it has retransmitted them already, or soon will). */
void gp_sendq_expire(gp_rel *r, uint64_t now) {
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
    uint64_t now = gp_rel_advance_now(r, now_ns);
    if (len == 0)
        return GP_ERR_INVALID;
    if (len > gp_rel_dgram_max(r))
        return GP_ERR_TOO_LARGE;
    gp_sendq_expire(r, now);
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

/* A smaller payload: queued datagrams that no longer fit one packet would block the queue for
 * good. */
void gp_sendq_refit(gp_rel *r) {
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

/* ---- filling packets ---- */

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

/* Lost chunks first (oldest loss first), then new chunks, lanes in turn, up to RR_QUANTUM
 * bytes per turn. One chunk per turn would finish concurrent messages of equal size all
 * together, at the end of the whole backlog: four 16 KiB responses waiting for the window
 * would all complete with the last one. With a 16 KiB quantum they complete one after the
 * other (oldest lane first), while a small message still waits for at most one quantum per
 * busy lane, never behind a whole 1 MiB transfer.
 *
 * Datagrams take turns with the lanes: a quantum of datagrams after each lane's quantum (all
 * of them when no lane has data), so a flood of IP packets leaves requests and streams at
 * least half of the link, and they leave it the other half. */
void gp_sendq_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
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

/* The largest datagram fills a packet with no room kept for an ACK: it goes alone, the ACK in
 * the next packet. */
int gp_sendq_dgram_alone(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
    if (!r->dq_head || !dgram_put(r, pp, end, rec))
        return 0;
    if (!r->dq_head)
        r->dg_turn = 0, r->dg_sent = 0;
    return 1;
}

/* A probe carries data (RFC 9002 §6.2.4): the unacked chunks of the oldest unacked
 * messages, lost or still in flight (lost ones bypass the congestion window this way).
 * Oldest *messages*, not oldest packets: the oldest message is the one everything else may
 * be waiting for at the receiver — and the one a receiver whose buffer is full always
 * admits — so probing it cannot deadlock; and a lost tail is repaired by the probe itself. */
void gp_sendq_probe_fill(gp_rel *r, uint8_t **pp, uint8_t *end, srec *rec) {
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
