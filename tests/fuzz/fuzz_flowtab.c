/* fuzz_flowtab.c — libFuzzer target for the house's flow table (proto/flowtab.c): packets going
 * out and coming in over one small table, on a clock that only moves forward.
 *
 * Input: byte 0 sets the table (bits 0-3: capacity 1-16; bit 4-6: the hash key; bit 7: the
 * clock starts 2^24 ms (4.7 h) before GP_FLOWTAB_TIME_MAX, past which it stands still), then
 * records: a control byte, a time step (2 bytes little-endian: ms, or with bit 15 set seconds of
 * the low 15 bits), a length (2 bytes little-endian, cut to what is left) and that many bytes of
 * one IP packet. Control bits 0-1: 0 the packet goes out, 1 it comes in, 2 it goes out and then its
 * mirror (addresses and ports swapped, an echo request made a reply) comes in, 3 it goes out and
 * then an ICMP error quoting it comes in (bits 4-5 pick the type; bit 7 quotes only half of
 * it); bit 2: the harness sets the IPv4 header checksum and total length, or the IPv6 payload
 * length, before parsing; bit 3 (modes 0 and 1): the previous record's parse is passed with
 * these bytes (a stale parse); bit 6: a sweep after the record (budget 1-4: bits 4-5).
 *
 * Properties: every call returns 0 or 1 and exactly the same on a second table under another
 * hash key (the key decides where flows sit, never what is let in); a packet that just went
 * out and recorded a flow has its mirror let in, and a related error quoting at least its
 * IP header and 8 bytes of L4 let in, an ICMP redirect never; the counters move with the
 * answers (in_allowed + in_related by one for each 1 of gp_flowtab_in); gp_flowtab_check's
 * invariants hold after every record (flows <= capacity, flows == created - evicted -
 * expired, lists, hash chains and address pairs consistent); sanitizers see no bad access. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flowtab.h"
#include "ippkt.h"

static void put16(uint8_t *p, size_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void swap(uint8_t *a, uint8_t *b, size_t n) {
    for (size_t k = 0; k < n; k++) {
        uint8_t x = a[k];
        a[k] = b[k];
        b[k] = x;
    }
}

static gp_flowtab *t1, *t2;

static void same_stats(void) {
    gp_flowtab_stats a, b;
    gp_flowtab_get_stats(t1, &a);
    gp_flowtab_get_stats(t2, &b);
    if (memcmp(&a, &b, sizeof a) != 0 || a.flows > gp_flowtab_capacity(t1) ||
        a.flows != a.created - a.evicted - a.expired)
        abort();
}

static uint64_t let_in(const gp_flowtab *t) {
    gp_flowtab_stats s;
    gp_flowtab_get_stats(t, &s);
    return s.in_allowed + s.in_related;
}

/* The same call on both tables: the same answer, counters that agree with it. */
static int out2(const gp_ip_pkt *pkt, const uint8_t *p, size_t n, uint64_t now) {
    int a = gp_flowtab_out(t1, pkt, p, n, now), b = gp_flowtab_out(t2, pkt, p, n, now);
    if (a != b || (a != 0 && a != 1))
        abort();
    same_stats();
    return a;
}

static int in2(const gp_ip_pkt *pkt, const uint8_t *p, size_t n, uint64_t now) {
    uint64_t before = let_in(t1);
    int a = gp_flowtab_in(t1, pkt, p, n, now), b = gp_flowtab_in(t2, pkt, p, n, now);
    if (a != b || (a != 0 && a != 1) || let_in(t1) != before + (uint64_t)a)
        abort();
    same_stats();
    return a;
}

/* An ICMP error of type and code from pkt's destination to its source quoting p[0..qn) into
 * o; its length. */
static size_t wrap(uint8_t *o, const gp_ip_pkt *pkt, const uint8_t *p, size_t qn, uint8_t type,
                   uint8_t code) {
    size_t h = pkt->version == 4 ? 20 : 40, al = pkt->version == 4 ? 4 : 16;
    memset(o, 0, h + 8);
    if (pkt->version == 4) {
        o[0] = 0x45;
        put16(o + 2, h + 8 + qn);
        o[6] = 0x40; /* DF */
        o[8] = 64;
        o[9] = GP_IPPROTO_ICMP;
        memcpy(o + 12, pkt->dst.a, al);
        memcpy(o + 16, pkt->src.a, al);
        put16(o + 10, gp_csum_fold(gp_csum_add(0, o, 20)));
    } else {
        o[0] = 0x60;
        put16(o + 4, 8 + qn);
        o[6] = GP_IPPROTO_ICMPV6;
        o[7] = 64;
        memcpy(o + 8, pkt->dst.a, al);
        memcpy(o + 24, pkt->src.a, al);
    }
    o[h] = type;
    o[h + 1] = code;
    memcpy(o + h + 8, p, qn);
    return h + 8 + qn;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t p[70000], m[70000], e[1600];
    if (size < 1)
        return 0;
    uint8_t key[GP_FLOWTAB_KEY_LEN];
    for (int k = 0; k < GP_FLOWTAB_KEY_LEN; k++)
        key[k] = (uint8_t)(k * 37 + (data[0] >> 4 & 7));
    t1 = gp_flowtab_new(1 + (data[0] & 15), key);
    key[0] ^= 0x80;
    t2 = gp_flowtab_new(1 + (data[0] & 15), key);
    if (!t1 || !t2)
        abort();
    uint64_t now = (data[0] & 0x80) ? GP_FLOWTAB_TIME_MAX - ((uint64_t)1 << 24) : 0;
    gp_ip_pkt prev;
    int have_prev = 0;

    size_t i = 1;
    while (size - i >= 5) {
        uint8_t ctl = data[i];
        unsigned step = data[i + 1] | data[i + 2] << 8;
        size_t n = (size_t)(data[i + 3] | data[i + 4] << 8);
        i += 5;
        if (n > size - i)
            n = size - i;
        memcpy(p, data + i, n);
        i += n;
        uint64_t ms = (step & 0x8000) ? (uint64_t)(step & 0x7fff) * 1000 : step;
        now = now > UINT64_MAX - ms ? UINT64_MAX : now + ms;

        if (n >= 20 && (p[0] >> 4) == 4 && (ctl & 4)) {
            put16(p + 2, n);
            size_t ihl = (size_t)(p[0] & 15) * 4;
            if (ihl >= 20 && ihl <= n) {
                p[10] = p[11] = 0;
                put16(p + 10, gp_csum_fold(gp_csum_add(0, p, ihl)));
            }
        } else if (n >= 40 && (p[0] >> 4) == 6 && (ctl & 4)) {
            put16(p + 4, n - 40);
        }
        gp_ip_pkt pkt;
        int ok = gp_ip_parse(p, n, &pkt) == GP_IPD_OK;
        int mode = ctl & 3;

        if (mode <= 1 && (ctl & 8) && have_prev) {
            /* a stale parse: never a read past these bytes, never a yes for other lengths */
            int r = mode ? in2(&prev, p, n, now) : out2(&prev, p, n, now);
            if (r && prev.len != n)
                abort();
        } else if (ok && mode == 1) {
            in2(&pkt, p, n, now);
        } else if (ok) {
            int r = out2(&pkt, p, n, now);
            if (r && mode == 2) {
                /* the mirror: addresses (the IPv4 header sum does not change), ports, echo */
                memcpy(m, p, n);
                size_t al = pkt.version == 4 ? 4 : 16, at = pkt.version == 4 ? 12 : 8;
                swap(m + at, m + at + al, al);
                if (pkt.flags & GP_IPF_L4) {
                    uint8_t *l4 = m + pkt.l4_off;
                    if (pkt.proto == GP_IPPROTO_TCP || pkt.proto == GP_IPPROTO_UDP)
                        swap(l4, l4 + 2, 2);
                    else
                        l4[0] = pkt.version == 4 ? 0 : 129; /* an echo request's reply */
                }
                gp_ip_pkt mk;
                if (gp_ip_parse(m, n, &mk) == GP_IPD_OK && in2(&mk, m, n, now) != 1)
                    abort();
            } else if (r && mode == 3) {
                static const uint8_t types[2][4][2] = {{{3, 4}, {3, 3}, {11, 0}, {12, 0}},
                                                       {{2, 0}, {1, 4}, {3, 0}, {4, 0}}};
                const uint8_t *ty = types[pkt.version == 6][(ctl >> 4) & 3];
                size_t qn = (ctl & 0x80) ? n / 2 : n;
                if (qn > 1400)
                    qn = 1400;
                gp_ip_pkt ek;
                size_t en = wrap(e, &pkt, p, qn, ty[0], ty[1]);
                if (gp_ip_parse(e, en, &ek) == GP_IPD_OK) {
                    int r2 = in2(&ek, e, en, now);
                    if (qn >= (size_t)pkt.l4_off + 8 && r2 != 1)
                        abort();                     /* the quote holds all that is needed */
                    en = wrap(e, &pkt, p, qn, 5, 0); /* a redirect (v4), unassigned (v6) */
                    if (gp_ip_parse(e, en, &ek) == GP_IPD_OK && in2(&ek, e, en, now) != 0)
                        abort();
                }
            }
        }
        if (ok) {
            prev = pkt;
            have_prev = 1;
        }
        if (ctl & 0x40) {
            size_t budget = 1 + ((ctl >> 4) & 3);
            size_t a = gp_flowtab_expire(t1, now, budget), b = gp_flowtab_expire(t2, now, budget);
            if (a != b || a > budget)
                abort();
            same_stats();
        }
        if (gp_flowtab_check(t1) != 0 || gp_flowtab_check(t2) != 0)
            abort();
    }
    gp_flowtab_free(t1);
    gp_flowtab_free(t2);
    t1 = t2 = NULL;
    return 0;
}
