/* Unit tests for rudp:// acknowledgements (proto/rudp_ack.c): the received ranges, the ACK
 * frame's encoding and decoding, the receiver's loss meter. Pure: no link, no clock. */
#include <criterion/criterion.h>
#include <string.h>

#include "rudp_ack.h"
#include "rudp_varint.h"

static void add(gp_ack_ranges *a, uint64_t pn) {
    if (!gp_ack_seen(a, pn))
        gp_ack_add(a, pn);
}

Test(rudp_ack, adjacent_numbers_merge_into_one_range) {
    gp_ack_ranges a = {0};
    uint64_t order[] = {3, 1, 2, 5, 4, 7, 6};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        add(&a, order[i]);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.r[0].lo, 1);
    cr_assert_eq(a.r[0].hi, 7);
    cr_assert(!gp_ack_seen(&a, 0));
    cr_assert(gp_ack_seen(&a, 4));
    cr_assert(!gp_ack_seen(&a, 8));
}

Test(rudp_ack, gaps_stay_gaps_and_ranges_stay_sorted) {
    gp_ack_ranges a = {0};
    uint64_t order[] = {14, 10, 12, 20};
    for (size_t i = 0; i < 4; i++)
        add(&a, order[i]);
    cr_assert_eq(a.n, 4);
    for (size_t i = 1; i < a.n; i++)
        cr_assert_gt(a.r[i].lo, a.r[i - 1].hi + 1);
    cr_assert(!gp_ack_seen(&a, 11));
    cr_assert(!gp_ack_seen(&a, 13));
    add(&a, 11);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.r[0].lo, 10);
    cr_assert_eq(a.r[0].hi, 12);
}

Test(rudp_ack, the_oldest_range_is_forgotten_at_the_bound) {
    gp_ack_ranges a = {0};
    for (uint64_t i = 0; i < GP_ACK_RANGES_STORED + 10; i++)
        add(&a, 2 * i); /* every other number: one range each */
    cr_assert_eq(a.n, GP_ACK_RANGES_STORED);
    /* Forgotten numbers count as seen (they were acked many times already), holes too. */
    cr_assert(gp_ack_seen(&a, 0));
    cr_assert(gp_ack_seen(&a, 1));
    cr_assert_eq(a.r[0].lo, 20);
    cr_assert(!gp_ack_seen(&a, 21));
    /* At the bound, a number older than every range is ignored rather than evicting a
     * newer one. */
    gp_ack_ranges b = {0};
    for (uint64_t i = 0; i < GP_ACK_RANGES_STORED; i++)
        add(&b, 100 + 2 * i);
    gp_ack_add(&b, 50);
    cr_assert_eq(b.n, GP_ACK_RANGES_STORED);
    cr_assert_eq(b.r[0].lo, 100);
    cr_assert(!gp_ack_seen(&b, 50));
}

Test(rudp_ack, drop_below_trims_and_raises_the_floor) {
    gp_ack_ranges a = {0};
    for (uint64_t pn = 0; pn < 10; pn++)
        add(&a, pn);
    add(&a, 20);
    gp_ack_drop_below(&a, 5);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.r[0].lo, 5);
    cr_assert_eq(a.floor, 5);
    gp_ack_drop_below(&a, 15);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.r[0].lo, 20);
    cr_assert(gp_ack_seen(&a, 14)); /* below the floor */
    cr_assert(!gp_ack_seen(&a, 15));
    gp_ack_drop_below(&a, 3); /* never lowers the floor */
    cr_assert_eq(a.floor, 15);
}

/* Decodes the frame at buf and marks every number it acks in got[0..n). */
static const uint8_t *decode_into(const uint8_t *buf, const uint8_t *end, uint64_t next_pn,
                                  gp_ack_frame *f, uint8_t *got, size_t n) {
    cr_assert_eq(buf[0], GP_ACK_FT);
    const uint8_t *p = gp_ack_decode(buf + 1, end, next_pn, f);
    if (!p)
        return NULL;
    uint64_t hi = f->largest, lo = f->largest - f->first;
    const uint8_t *q = f->ranges;
    for (uint64_t i = 0;; i++) {
        for (uint64_t pn = lo; pn <= hi; pn++)
            if (pn < n)
                got[pn] = 1;
        if (i == f->nranges)
            break;
        q = gp_ack_next_range(q, f->ranges_end, &hi, &lo);
        cr_assert_not_null(q);
    }
    return p;
}

Test(rudp_ack, a_frame_says_exactly_what_was_received) {
    gp_ack_ranges a = {0};
    uint8_t want[200] = {0}, got[200] = {0};
    for (uint64_t pn = 100; pn < 200; pn++)
        if (pn % 7 != 2 && pn % 11 != 5) { /* 23 gaps between 100 and 199 */
            add(&a, pn);
            want[pn] = 1;
        }
    uint8_t buf[1200];
    uint64_t largest = 0;
    uint8_t *end = gp_ack_encode(&a, buf, buf + sizeof buf, 1234, 2500, &largest);
    cr_assert_not_null(end);
    cr_assert_eq(largest, 199);
    gp_ack_frame f;
    cr_assert_eq(decode_into(buf, end, 200, &f, got, 200), end);
    cr_assert_eq(f.delay_us, 1234);
    cr_assert_eq(f.loss_bp, 2500);
    cr_assert_leq(f.nranges, GP_ACK_RANGES_SENT);
    cr_assert_eq(memcmp(got, want, sizeof got), 0, "the frame acks what was received, no more");
}

Test(rudp_ack, a_small_room_sends_the_newest_ranges_only) {
    gp_ack_ranges a = {0};
    for (uint64_t pn = 0; pn < 100; pn += 2)
        add(&a, pn);
    uint8_t buf[16], got[100] = {0};
    uint64_t largest;
    uint8_t *end = gp_ack_encode(&a, buf, buf + sizeof buf, 0, 0, &largest);
    cr_assert_not_null(end);
    gp_ack_frame f;
    cr_assert_not_null(decode_into(buf, end, 100, &f, got, 100));
    cr_assert_gt(f.nranges, 0);
    cr_assert_lt(f.nranges, 49);
    cr_assert(got[98] && !got[97]);
    for (uint64_t pn = 0; pn < 100; pn++)
        cr_assert(!got[pn] || pn % 2 == 0, "pn %lu acked but never received", (unsigned long)pn);
    cr_assert_null(gp_ack_encode(&a, buf, buf + 3, 0, 0, &largest), "no room: no frame");
    gp_ack_ranges none = {0};
    cr_assert_null(gp_ack_encode(&none, buf, buf + sizeof buf, 0, 0, &largest));
}

/* Encodes an ACK frame body from fields, unchecked. */
static size_t raw(uint8_t *buf, uint64_t largest, uint64_t delay, uint64_t loss, uint64_t n,
                  uint64_t first, const uint64_t *pairs) {
    uint8_t *p = buf;
    p = gp_vput(p, largest);
    p = gp_vput(p, delay);
    p = gp_vput(p, loss);
    p = gp_vput(p, n);
    p = gp_vput(p, first);
    for (uint64_t i = 0; pairs && i < 2 * n; i++)
        p = gp_vput(p, pairs[i]);
    return (size_t)(p - buf);
}

Test(rudp_ack, hostile_frames_are_refused) {
    uint8_t b[64];
    gp_ack_frame f;
    uint64_t ok_pairs[] = {0, 1}; /* 10..8 received, 7 missing (gap 0 = 1 missing), 6..5 */
    size_t n = raw(b, 10, 0, 0, 1, 2, ok_pairs);
    cr_assert_eq(gp_ack_decode(b, b + n, 11, &f), b + n);
    cr_assert_null(gp_ack_decode(b, b + n, 10, &f), "acks a number never sent");
    cr_assert_null(gp_ack_decode(b, b + n - 1, 11, &f), "truncated");
    n = raw(b, 10, 0, 0, 0, 11, NULL);
    cr_assert_null(gp_ack_decode(b, b + n, 11, &f), "first range below zero");
    uint64_t under[] = {20, 0};
    n = raw(b, 10, 0, 0, 1, 0, under);
    cr_assert_null(gp_ack_decode(b, b + n, 11, &f), "gap below zero");
    uint64_t longr[] = {0, 9};
    n = raw(b, 10, 0, 0, 1, 0, longr);
    cr_assert_null(gp_ack_decode(b, b + n, 11, &f), "range below zero");
    n = raw(b, 10, 0, 10001, 0, 0, NULL);
    cr_assert_null(gp_ack_decode(b, b + n, 11, &f), "loss over 100%");
    n = raw(b, 1000, 0, 0, GP_ACK_RANGES_MAX_DECODE + 1, 0, NULL);
    cr_assert_null(gp_ack_decode(b, b + n, 2000, &f), "too many ranges");
}

Test(rudp_ack, the_loss_meter_counts_gaps_per_window) {
    gp_ack_loss l = {0};
    /* pn 0 lost, 1..15 received: the first window (16 numbers) closes at 1/16. */
    int has = 0;
    uint64_t largest = 0;
    for (uint64_t pn = 1; pn <= 15; pn++) {
        gp_ack_loss_count(&l, pn, has, largest);
        has = 1;
        largest = pn;
    }
    cr_assert_eq(l.windows, 1);
    cr_assert_float_eq(l.rate, 1.0 / 16, 1e-12);
    cr_assert_eq(gp_ack_loss_bp(&l), 625);
    /* Later windows of 32 are smoothed by 1/4: 8 of 32 lost gives 1/16 + (1/4 - 1/16) / 4. */
    for (uint64_t pn = 16; pn < 16 + 32; pn++) {
        if (pn % 4 == 0)
            continue;
        gp_ack_loss_count(&l, pn, 1, largest);
        largest = pn;
    }
    cr_assert_eq(l.windows, 2, "a window closes when seen + missed reaches 32");
    cr_assert_float_eq(l.rate, 1.0 / 16 + (0.25 - 1.0 / 16) / 4, 1e-12);
}

Test(rudp_ack, a_late_packet_takes_back_its_miss) {
    gp_ack_loss l = {0};
    gp_ack_loss_count(&l, 0, 0, 0);
    gp_ack_loss_count(&l, 2, 1, 0); /* 1 missing */
    cr_assert_eq(l.miss, 1);
    gp_ack_loss_count(&l, 1, 1, 2); /* 1 arrives late */
    cr_assert_eq(l.miss, 0);
    cr_assert_eq(l.seen, 3);
}

Test(rudp_ack, a_lossy_path_repeats_the_last_ack) {
    cr_assert_eq(gp_ack_repeats(0.0), 0);
    cr_assert_eq(gp_ack_repeats(0.009), 0);
    cr_assert_eq(gp_ack_repeats(0.05), 1);
    cr_assert_eq(gp_ack_repeats(0.3), 2);
}
