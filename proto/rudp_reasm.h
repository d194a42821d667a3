/* rudp_reasm.h — the receiver's side of rudp:// messages: reassembly of fragments and
 * delivery in lane order.
 *
 * Owns: the records of messages being received (in a ring by message id, from the floor of
 * delivered ids), the receive-buffer bound and its one exception (the oldest undelivered
 * message is always admitted, so a full buffer cannot deadlock), delivery once a message is
 * complete and its lane predecessor (`dep`) was delivered, and the queue the application
 * takes messages from. Separate from the engine (rudp_rel.c) because it needs nothing of
 * packets, acks or timers: the engine decodes and validates frames, then hands each message
 * fragment here. Lanes cost nothing here: ordering follows `dep`, there is no per-lane state.
 * Reasoning: proto/RUDP.md, "Messages and lanes" and "Bounds". */
#ifndef GP_RUDP_REASM_H
#define GP_RUDP_REASM_H

#include "gp.h"
#include "rudp_ring.h"

#define GP_REASM_WINDOW 4096u /* message ids accepted beyond the floor of delivered ones */

/* One fragment, as the engine decoded it (lengths already checked against max_message). */
typedef struct gp_reasm_frag {
    uint64_t id;
    uint64_t dep; /* id of the lane's previous message, UINT64_MAX: none to wait for */
    uint32_t lane;
    int chunked;     /* a MSG_CHUNK (else a whole message, MSG) */
    size_t len, csz; /* message length; chunk size (len when not chunked) */
    uint32_t idx;    /* chunk index (0 when not chunked) */
    const uint8_t *data;
    size_t dlen;
} gp_reasm_frag;

typedef struct gp_reasm_dq gp_reasm_dq;

typedef struct gp_reasm {
    gp_ring rm;               /* records by id: [floor, floor + rm.cap), NULL where none */
    uint64_t floor;           /* ids below it were delivered */
    size_t mem, max_mem;      /* bytes of partial, waiting and undelivered messages; the bound */
    gp_reasm_dq *head, *tail; /* delivered, not yet taken */
    uint8_t *lent;            /* what gp_reasm_recv lent last */
    size_t lent_len;
    uint64_t delivered; /* messages delivered so far */
} gp_reasm;

void gp_reasm_init(gp_reasm *q, size_t recv_buffer);
void gp_reasm_free(gp_reasm *q);

/* 1 if f disagrees with what earlier fragments said of its message (lane, length, chunk
 * size, dep, chunked or not): the packet carrying it is malformed. */
int gp_reasm_conflicts(const gp_reasm *q, const gp_reasm_frag *f);

/* Applies a fragment (idempotent). Returns 0, 1 if it was refused for lack of room (beyond
 * the id window or the receive buffer: the packet must not be acked), or GP_ERR_NOMEM. */
int gp_reasm_add(gp_reasm *q, const gp_reasm_frag *f);

/* Takes the next delivered message (as gp_rel_recv): its length, or 0 when none is ready.
 * *msg is lent until the next call. */
ssize_t gp_reasm_recv(gp_reasm *q, uint32_t *lane, const uint8_t **msg);

#endif
