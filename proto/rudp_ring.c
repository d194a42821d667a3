/* rudp_ring.c — the ring buffer of rudp_ring.h: growth is the only code with a loop. */
#include "rudp_ring.h"

#include <stdlib.h>
#include <string.h>

#include "gp.h"

void gp_ring_init(gp_ring *g, size_t esz, size_t first_cap, size_t max_cap) {
    memset(g, 0, sizeof *g);
    g->esz = esz;
    g->first_cap = first_cap;
    g->max_cap = max_cap;
}

void gp_ring_free(gp_ring *g) {
    free(g->slots);
    g->slots = NULL;
    g->cap = 0;
}

int gp_ring_fit(gp_ring *g, uint64_t lo, uint64_t hi, uint64_t span) {
    if (span <= g->cap)
        return 0;
    size_t ncap = g->cap ? g->cap : g->first_cap;
    while (ncap < span) {
        if (ncap >= g->max_cap)
            return GP_ERR_BUFFER;
        ncap *= 2;
    }
    if (ncap > g->max_cap)
        return GP_ERR_BUFFER;
    uint8_t *n = calloc(ncap, g->esz);
    if (!n)
        return GP_ERR_NOMEM;
    /* Every live number keeps its slot's bytes; numbers map to distinct slots in both rings
     * because the window is never longer than either capacity. */
    for (uint64_t seq = lo; g->cap && seq < hi; seq++)
        memcpy(n + (size_t)(seq & (ncap - 1)) * g->esz, gp_ring_at(g, seq), g->esz);
    free(g->slots);
    g->slots = n;
    g->cap = ncap;
    return 0;
}
