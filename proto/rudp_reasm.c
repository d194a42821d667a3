/* rudp_reasm.c — reassembly and lane-ordered delivery of received messages (see
 * rudp_reasm.h for what this file owns and why it stands apart from the engine). */
#include "rudp_reasm.h"

#include "list.h"

#include <stdlib.h>
#include <string.h>

/* A message being received. */
typedef struct rmsg {
    uint64_t id;
    int known, complete, delivered, has_waiter;
    uint32_t lane;
    uint64_t dep;    /* UINT64_MAX: first of its lane (as far as ordering goes) */
    uint64_t waiter; /* the next message of the lane, complete and waiting for this one */
    size_t len, csz;
    uint32_t nchunks, nrecv;
    uint8_t *bits, *data;
} rmsg;

struct gp_reasm_dq {
    gp_reasm_dq *next;
    uint32_t lane;
    size_t len;
    uint8_t *data;
};

static rmsg **rm_slot(const gp_reasm *q, uint64_t id) {
    return (rmsg **)gp_ring_at(&q->rm, id);
}

static rmsg *rm_get(const gp_reasm *q, uint64_t id) {
    if (id < q->floor || id - q->floor >= q->rm.cap)
        return NULL;
    rmsg *m = *rm_slot(q, id);
    return m && m->id == id ? m : NULL;
}

/* Finds or creates the record of message id (floor <= id < floor + GP_REASM_WINDOW). */
static rmsg *rm_make(gp_reasm *q, uint64_t id) {
    rmsg *m = rm_get(q, id);
    if (m)
        return m;
    /* Every record in the ring has an id in [floor, floor + cap): that is the window to
     * move. */
    if (gp_ring_fit(&q->rm, q->floor, q->floor + q->rm.cap, id + 1 - q->floor))
        return NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->id = id;
    m->dep = UINT64_MAX;
    *rm_slot(q, id) = m;
    return m;
}

static void rmsg_free(rmsg *m) {
    if (!m)
        return;
    free(m->bits);
    free(m->data);
    free(m);
}

void gp_reasm_init(gp_reasm *q, size_t recv_buffer) {
    memset(q, 0, sizeof *q);
    gp_ring_init(&q->rm, sizeof(rmsg *), 16, GP_RING_UNBOUNDED);
    q->max_mem = recv_buffer;
}

void gp_reasm_free(gp_reasm *q) {
    for (uint64_t id = q->floor; id < q->floor + q->rm.cap; id++)
        rmsg_free(*rm_slot(q, id));
    gp_ring_free(&q->rm);
    while (q->head) {
        gp_reasm_dq *n = q->head;
        q->head = n->next;
        free(n->data);
        free(n);
    }
    free(q->lent);
    q->lent = NULL;
}

/* f disagrees with what is known of its message. */
static int differs(const rmsg *m, const gp_reasm_frag *f) {
    return m->lane != f->lane || m->len != f->len || m->csz != f->csz || m->dep != f->dep ||
           (m->nchunks > 1) != f->chunked;
}

static void floor_advance(gp_reasm *q) {
    for (;;) {
        rmsg *m = rm_get(q, q->floor);
        if (!m || !m->delivered)
            return;
        *rm_slot(q, m->id) = NULL;
        rmsg_free(m);
        q->floor++;
    }
}

/* Delivers m if its lane predecessor was delivered, then whatever waited on it. */
static int try_deliver(gp_reasm *q, rmsg *m) {
    for (;;) {
        if (m->dep != UINT64_MAX && m->dep >= q->floor) {
            rmsg *d = rm_get(q, m->dep);
            if (!d || !d->delivered) {
                if (!d && !(d = rm_make(q, m->dep)))
                    return GP_ERR_NOMEM;
                d->has_waiter = 1;
                d->waiter = m->id;
                return 0;
            }
        }
        gp_reasm_dq *n = malloc(sizeof *n);
        if (!n)
            return GP_ERR_NOMEM;
        n->lane = m->lane;
        n->len = m->len;
        n->data = m->data;
        m->data = NULL;
        GP_SLIST_APPEND(q->head, q->tail, n, next);
        m->delivered = 1;
        q->delivered++;
        int hw = m->has_waiter;
        uint64_t w = m->waiter;
        floor_advance(q); /* may free m */
        if (!hw)
            return 0;
        m = rm_get(q, w);
        if (!m || !m->complete || m->delivered)
            return 0;
    }
}

int gp_reasm_conflicts(const gp_reasm *q, const gp_reasm_frag *f) {
    const rmsg *m = rm_get(q, f->id);
    return m && m->known && differs(m, f);
}

int gp_reasm_add(gp_reasm *q, const gp_reasm_frag *f) {
    if (f->id < q->floor)
        return 0; /* delivered already: a retransmission crossed our ack */
    if (f->id - q->floor >= GP_REASM_WINDOW)
        return 1;
    rmsg *m = rm_get(q, f->id);
    /* The oldest undelivered message is always admitted: everything else may wait for it,
     * so refusing it could deadlock a full buffer. */
    if ((!m || !m->known) && f->id != q->floor && q->mem + f->len > q->max_mem)
        return 1;
    if (!m && !(m = rm_make(q, f->id)))
        return GP_ERR_NOMEM;
    if (!m->known) {
        size_t nchunks = f->chunked ? (f->len + f->csz - 1) / f->csz : 1;
        m->data = malloc(f->len);
        m->bits = calloc((nchunks + 7) / 8, 1);
        if (!m->data || !m->bits) {
            free(m->data);
            free(m->bits);
            m->data = m->bits = NULL;
            return GP_ERR_NOMEM;
        }
        m->known = 1;
        m->lane = f->lane;
        m->dep = f->dep;
        m->len = f->len;
        m->csz = f->csz;
        m->nchunks = (uint32_t)nchunks;
        q->mem += m->len;
    } else if (differs(m, f)) {
        return 0; /* the engine checked in its first pass; only a packet rebuilt by FEC gets here */
    }
    if (m->complete)
        return 0;
    uint32_t idx = f->idx;
    if (m->bits[idx / 8] & (1u << (idx % 8)))
        return 0;
    m->bits[idx / 8] |= (uint8_t)(1u << (idx % 8));
    memcpy(m->data + (size_t)idx * m->csz, f->data, f->dlen);
    if (++m->nrecv < m->nchunks)
        return 0;
    m->complete = 1;
    free(m->bits);
    m->bits = NULL;
    return try_deliver(q, m);
}

ssize_t gp_reasm_recv(gp_reasm *q, uint32_t *lane, const uint8_t **msg) {
    if (q->lent) {
        free(q->lent);
        q->mem -= q->lent_len;
        q->lent = NULL;
        q->lent_len = 0;
    }
    gp_reasm_dq *n = q->head;
    if (!n)
        return 0;
    GP_SLIST_SHIFT(q->head, q->tail, next);
    q->lent = n->data;
    q->lent_len = n->len;
    *lane = n->lane;
    *msg = n->data;
    ssize_t len = (ssize_t)n->len;
    free(n);
    return len;
}
