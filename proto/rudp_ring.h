/* rudp_ring.h — the one ring buffer of the rudp:// engine: slots indexed by a 64-bit sequence
 * number (a message id, a packet number) at seq & (cap - 1).
 *
 * The engine keeps three windows of consecutive numbers — messages being sent, packets sent
 * and not yet resolved, messages being received — that slide forward and occasionally grow.
 * Each used to be its own array with its own copy of "double it and move every live slot to
 * its new home"; this is that code once. The ring does not know which sequence numbers are
 * live: the caller keeps its window [lo, hi) (its floor and next number) and says so when it
 * grows the ring. Slots are zeroed when the ring is made or grown, so a pointer ring reads
 * NULL where nothing was stored. Pure: no clock, no I/O. */
#ifndef GP_RUDP_RING_H
#define GP_RUDP_RING_H

#include <stddef.h>
#include <stdint.h>

#define GP_RING_UNBOUNDED ((size_t)1 << 62) /* max_cap of a ring bounded by its user */

typedef struct gp_ring {
    uint8_t *slots;
    size_t cap;       /* slots: 0, or a power of two from first_cap up to max_cap */
    size_t esz;       /* bytes per slot */
    size_t first_cap; /* capacity of the first allocation */
    size_t max_cap;   /* the ring never grows past this */
} gp_ring;

/* An empty ring (no allocation yet) of esz-byte slots. first_cap and max_cap are powers of
 * two, first_cap <= max_cap. */
void gp_ring_init(gp_ring *g, size_t esz, size_t first_cap, size_t max_cap);

/* Frees the slots (not what they point to). */
void gp_ring_free(gp_ring *g);

/* The slot of seq. The ring must have a capacity (cap > 0). */
static inline void *gp_ring_at(const gp_ring *g, uint64_t seq) {
    return g->slots + (size_t)(seq & (g->cap - 1)) * g->esz;
}

/* Makes room for `span` consecutive numbers starting at lo: doubles the capacity (from
 * first_cap) until cap >= span, moving the slots of the live numbers [lo, hi) to their new
 * homes. Returns 0, GP_ERR_BUFFER if span would need more than max_cap (nothing changes), or
 * GP_ERR_NOMEM. */
int gp_ring_fit(gp_ring *g, uint64_t lo, uint64_t hi, uint64_t span);

#endif
