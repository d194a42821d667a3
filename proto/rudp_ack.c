/* rudp_ack.c — received packet-number ranges, the ACK frame and the receiver's loss meter
 * (see rudp_ack.h for what this file owns and why it stands apart from the engine). */
#include "rudp_ack.h"

#include <string.h>

#include "rudp_varint.h"

int gp_ack_seen(const gp_ack_ranges *a, uint64_t pn) {
    if (pn < a->floor)
        return 1;
    for (size_t i = a->n; i-- > 0;) {
        if (pn > a->r[i].hi)
            return 0;
        if (pn >= a->r[i].lo)
            return 1;
    }
    return 0;
}

void gp_ack_drop_below(gp_ack_ranges *a, uint64_t floor) {
    size_t k = 0;
    while (k < a->n && a->r[k].hi < floor)
        k++;
    memmove(a->r, a->r + k, (a->n - k) * sizeof *a->r);
    a->n -= k;
    if (a->n && a->r[0].lo < floor)
        a->r[0].lo = floor;
    if (floor > a->floor)
        a->floor = floor;
}

void gp_ack_add(gp_ack_ranges *a, uint64_t pn) {
    size_t n = a->n, i = 0;
    while (i < n && a->r[i].lo <= pn)
        i++;
    /* r[i-1].lo <= pn < r[i].lo; pn is not inside r[i-1] (gp_ack_seen said so) */
    if (i > 0 && a->r[i - 1].hi + 1 == pn) {
        a->r[i - 1].hi = pn;
        if (i < n && a->r[i].lo == pn + 1) {
            a->r[i - 1].hi = a->r[i].hi;
            memmove(a->r + i, a->r + i + 1, (n - i - 1) * sizeof *a->r);
            a->n--;
        }
        return;
    }
    if (i < n && a->r[i].lo == pn + 1) {
        a->r[i].lo = pn;
        return;
    }
    if (n == GP_ACK_RANGES_STORED) {
        /* Bounded: forget the oldest range. Its packets were acked in many ACK frames
         * already (each ACK repeats the newest ranges). */
        if (i == 0)
            return;
        gp_ack_drop_below(a, a->r[0].hi + 1);
        i--;
        n = a->n;
    }
    memmove(a->r + i + 1, a->r + i, (n - i) * sizeof *a->r);
    a->r[i] = (gp_pnrange){pn, pn};
    a->n++;
}

uint8_t *gp_ack_encode(const gp_ack_ranges *a, uint8_t *p, uint8_t *end, uint64_t delay_us,
                       uint64_t loss_bp, uint64_t *largest) {
    size_t n = a->n;
    if (!n)
        return NULL;
    const gp_pnrange *R = a->r;
    uint64_t lg = R[n - 1].hi, first = R[n - 1].hi - R[n - 1].lo;
    size_t hdr = 1 + gp_vlen(lg) + gp_vlen(delay_us) + gp_vlen(loss_bp) + 1 + gp_vlen(first);
    if (hdr > (size_t)(end - p))
        return NULL;
    size_t room = (size_t)(end - p) - hdr, used = 0, cnt = 0;
    for (size_t i = n - 1; i-- > 0 && cnt < GP_ACK_RANGES_SENT;) {
        size_t sz = gp_vlen(R[i + 1].lo - R[i].hi - 2) + gp_vlen(R[i].hi - R[i].lo);
        if (used + sz > room)
            break;
        used += sz;
        cnt++;
    }
    *p++ = GP_ACK_FT;
    p = gp_vput(p, lg);
    p = gp_vput(p, delay_us);
    p = gp_vput(p, loss_bp);
    p = gp_vput(p, cnt);
    p = gp_vput(p, first);
    for (size_t i = n - 1; cnt-- > 0; i--) {
        p = gp_vput(p, R[i].lo - R[i - 1].hi - 2);
        p = gp_vput(p, R[i - 1].hi - R[i - 1].lo);
    }
    *largest = lg;
    return p;
}

const uint8_t *gp_ack_next_range(const uint8_t *p, const uint8_t *end, uint64_t *hi, uint64_t *lo) {
    uint64_t gap, len;
    p = gp_vget(p, end, &gap);
    p = gp_vget(p, end, &len);
    if (!p || *lo < gap + 2)
        return NULL;
    *hi = *lo - gap - 2;
    if (*hi < len)
        return NULL;
    *lo = *hi - len;
    return p;
}

const uint8_t *gp_ack_decode(const uint8_t *p, const uint8_t *end, uint64_t next_pn,
                             gp_ack_frame *f) {
    p = gp_vget(p, end, &f->largest);
    p = gp_vget(p, end, &f->delay_us);
    p = gp_vget(p, end, &f->loss_bp);
    p = gp_vget(p, end, &f->nranges);
    p = gp_vget(p, end, &f->first);
    if (!p || f->loss_bp > 10000 || f->nranges > GP_ACK_RANGES_MAX_DECODE)
        return NULL;
    if (f->largest >= next_pn || f->first > f->largest)
        return NULL;
    f->ranges = p;
    uint64_t hi = f->largest, lo = f->largest - f->first;
    for (uint64_t i = 0; i < f->nranges; i++) {
        p = gp_ack_next_range(p, end, &hi, &lo);
        if (!p)
            return NULL;
    }
    f->ranges_end = p;
    return p;
}

void gp_ack_loss_count(gp_ack_loss *l, uint64_t pn, int has_largest, uint64_t largest) {
    if (!has_largest || pn > largest) {
        uint64_t gap = has_largest ? pn - largest - 1 : pn;
        l->miss += (unsigned)(gap < 256 ? gap : 256);
    } else if (l->miss) {
        l->miss--;
    }
    l->seen++;
    unsigned tot = l->seen + l->miss;
    /* The first window (16 packets) is taken as is, so the sender compensates for loss from
     * its second round trip on; later windows of 32 are smoothed (1/4). */
    if (tot >= (l->windows ? GP_ACK_LOSS_WINDOW : GP_ACK_LOSS_WINDOW_FIRST)) {
        double sample = (double)l->miss / tot;
        l->rate = l->windows++ ? l->rate + (sample - l->rate) / 4 : sample;
        l->seen = l->miss = 0;
    }
}

uint64_t gp_ack_loss_bp(const gp_ack_loss *l) {
    double lb = l->rate * 10000.0 + 0.5;
    return lb > 10000 ? 10000 : (uint64_t)lb;
}

/* The last ACK before a pause is the one nothing repeats: every ACK repeats the ranges of
 * the ones before it, but when a burst ends no further ACK follows. If it is lost, the
 * sender cannot tell the burst's unrecovered tail from packets still in flight (RFC 9002
 * declares nothing lost above the largest acknowledged) and waits for a probe timeout, and
 * the probe's own ACK, a round trip later — at 30% loss, in 30% of the bursts that need a
 * retransmission. So on a lossy path the last ACK goes again until the chance that every
 * copy is lost is under ~5%. A clean path (under 1% measured) sends no copies. */
unsigned gp_ack_repeats(double loss) {
    return loss < 0.01 ? 0 : loss < 0.2 ? 1 : 2;
}
