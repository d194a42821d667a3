/* Unit tests for the rudp:// engine's ring buffer (proto/rudp_ring.c): slots by sequence
 * number survive growth, the bound holds, a sliding window reuses slots. */
#include <criterion/criterion.h>

#include "gp.h"
#include "rudp_ring.h"

typedef struct rec {
    uint64_t seq, payload;
} rec;

static rec *at(gp_ring *g, uint64_t seq) {
    return (rec *)gp_ring_at(g, seq);
}

Test(rudp_ring, a_sliding_window_keeps_its_slots_through_growth) {
    gp_ring g;
    gp_ring_init(&g, sizeof(rec), 4, 4096);
    cr_assert_eq(g.cap, 0);
    uint64_t lo = 1000, hi = 1000; /* not 0: the window is anywhere in the number space */
    for (int step = 0; step < 5000; step++) {
        /* push one; every third step pop two from the front */
        cr_assert_eq(gp_ring_fit(&g, lo, hi, hi + 1 - lo), 0);
        *at(&g, hi) = (rec){hi, hi * 7};
        hi++;
        if (step % 3 == 2 && hi - lo >= 2)
            lo += 2;
        for (uint64_t s = lo; s < hi; s += 37)
            cr_assert_eq(at(&g, s)->seq, s, "step %d: slot of %lu lost", step, (unsigned long)s);
    }
    cr_assert_geq(g.cap, hi - lo);
    cr_assert_eq(g.cap & (g.cap - 1), 0, "a power of two");
    for (uint64_t s = lo; s < hi; s++)
        cr_assert_eq(at(&g, s)->payload, s * 7);
    gp_ring_free(&g);
}

Test(rudp_ring, growth_stops_at_the_bound) {
    gp_ring g;
    gp_ring_init(&g, sizeof(rec), 4, 16);
    for (uint64_t s = 0; s < 16; s++) {
        cr_assert_eq(gp_ring_fit(&g, 0, s, s + 1), 0);
        *at(&g, s) = (rec){s, 0};
    }
    cr_assert_eq(g.cap, 16);
    cr_assert_eq(gp_ring_fit(&g, 0, 16, 17), GP_ERR_BUFFER);
    cr_assert_eq(g.cap, 16, "a refused growth changes nothing");
    for (uint64_t s = 0; s < 16; s++)
        cr_assert_eq(at(&g, s)->seq, s);
    gp_ring_free(&g);
}

Test(rudp_ring, new_slots_are_zero) {
    gp_ring g;
    gp_ring_init(&g, sizeof(void *), 2, 1u << 20);
    cr_assert_eq(gp_ring_fit(&g, 5, 5, 100), 0);
    cr_assert_eq(g.cap, 128);
    for (uint64_t s = 5; s < 105; s++)
        cr_assert_null(*(void **)gp_ring_at(&g, s));
    gp_ring_free(&g);
    cr_assert_null(g.slots);
}
