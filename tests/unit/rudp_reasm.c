/* Unit tests for reassembly and lane-ordered delivery of received rudp:// messages
 * (proto/rudp_reasm.c): fragments in any order, lanes independent, the receive buffer bound
 * and its exception for the oldest message. Pure: no link, no clock. */
#include <criterion/criterion.h>
#include <string.h>

#include "rudp_reasm.h"

#define NONE UINT64_MAX

static uint8_t data[4096];

/* Fragment idx of message id (len bytes of `data` cut in csz chunks; csz 0: whole). */
static gp_reasm_frag frag(uint64_t id, uint64_t dep, uint32_t lane, size_t len, size_t csz,
                          uint32_t idx) {
    gp_reasm_frag f = {.id = id, .dep = dep, .lane = lane, .len = len, .csz = csz ? csz : len};
    f.chunked = csz != 0;
    f.idx = idx;
    size_t off = (size_t)idx * f.csz;
    f.data = data + off;
    f.dlen = len - off < f.csz ? len - off : f.csz;
    return f;
}

static int add(gp_reasm *q, gp_reasm_frag f) {
    return gp_reasm_add(q, &f);
}

/* Takes the next message; returns its lane (or -1) and checks its bytes. */
static long take(gp_reasm *q, size_t want_len) {
    uint32_t lane;
    const uint8_t *m;
    ssize_t n = gp_reasm_recv(q, &lane, &m);
    if (n == 0)
        return -1;
    cr_assert_eq((size_t)n, want_len);
    cr_assert_eq(memcmp(m, data, want_len), 0);
    return lane;
}

Test(rudp_reasm, fragments_in_any_order_make_one_message) {
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    gp_reasm q;
    gp_reasm_init(&q, 1 << 20);
    uint32_t order[] = {3, 0, 4, 2, 1};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(add(&q, frag(0, NONE, 9, 1000, 200, order[i])), 0);
        cr_assert_eq(add(&q, frag(0, NONE, 9, 1000, 200, order[i])), 0, "duplicates are fine");
        if (i < 4)
            cr_assert_eq(take(&q, 1000), -1, "incomplete: nothing delivered");
    }
    cr_assert_eq(take(&q, 1000), 9);
    cr_assert_eq(q.delivered, 1);
    cr_assert_eq(add(&q, frag(0, NONE, 9, 1000, 200, 1)), 0, "a late copy is ignored");
    cr_assert_eq(take(&q, 1000), -1);
    gp_reasm_free(&q);
}

Test(rudp_reasm, a_lane_waits_for_its_predecessor_and_no_other) {
    gp_reasm q;
    gp_reasm_init(&q, 1 << 20);
    /* lane 1: ids 0 then 2 (dep 0); lane 2: id 1. Id 0 is late. */
    cr_assert_eq(add(&q, frag(2, 0, 1, 100, 0, 0)), 0);
    cr_assert_eq(add(&q, frag(1, NONE, 2, 100, 0, 0)), 0);
    cr_assert_eq(take(&q, 100), 2, "lane 2 is not held back by lane 1");
    cr_assert_eq(take(&q, 100), -1, "id 2 waits for id 0");
    cr_assert_eq(add(&q, frag(0, NONE, 1, 100, 0, 0)), 0);
    cr_assert_eq(take(&q, 100), 1);
    cr_assert_eq(take(&q, 100), 1, "then the message that waited on it");
    cr_assert_eq(q.floor, 3);
    gp_reasm_free(&q);
}

Test(rudp_reasm, the_buffer_is_bounded_but_the_oldest_is_always_admitted) {
    gp_reasm q;
    gp_reasm_init(&q, 1000);
    cr_assert_eq(add(&q, frag(1, NONE, 1, 800, 0, 0)), 0);
    cr_assert_eq(add(&q, frag(2, NONE, 2, 800, 0, 0)), 1, "over the bound: refused");
    cr_assert_eq(add(&q, frag(0, NONE, 3, 800, 0, 0)), 0, "the oldest always fits");
    cr_assert_eq(q.mem, 1600);
    cr_assert_eq(take(&q, 800), 1, "no dep: delivered when complete, in arrival order");
    cr_assert_eq(take(&q, 800), 3);
    cr_assert_eq(q.mem, 800, "the last message taken is lent until the next call");
    cr_assert_eq(add(&q, frag(3, NONE, 2, 800, 0, 0)), 1, "the lent one still counts");
    cr_assert_eq(take(&q, 800), -1);
    cr_assert_eq(q.mem, 0);
    cr_assert_eq(add(&q, frag(3, NONE, 2, 800, 0, 0)), 0, "room again");
    cr_assert_eq(add(&q, frag(2 + GP_REASM_WINDOW, NONE, 2, 10, 0, 0)), 1, "beyond the id window");
    gp_reasm_free(&q);
}

Test(rudp_reasm, a_fragment_that_contradicts_its_message_is_a_conflict) {
    gp_reasm q;
    gp_reasm_init(&q, 1 << 20);
    cr_assert_eq(add(&q, frag(0, NONE, 1, 1000, 200, 0)), 0);
    gp_reasm_frag f = frag(0, NONE, 1, 1000, 200, 1);
    cr_assert(!gp_reasm_conflicts(&q, &f));
    f.lane = 2;
    cr_assert(gp_reasm_conflicts(&q, &f));
    f = frag(0, NONE, 1, 1200, 200, 1);
    cr_assert(gp_reasm_conflicts(&q, &f));
    f = frag(0, NONE, 1, 1000, 100, 1);
    cr_assert(gp_reasm_conflicts(&q, &f));
    f = frag(0, 7, 1, 1000, 200, 1);
    cr_assert(gp_reasm_conflicts(&q, &f));
    f = frag(5, 7, 1, 1000, 200, 1);
    cr_assert(!gp_reasm_conflicts(&q, &f), "nothing known of id 5 yet");
    gp_reasm_free(&q);
}
