/* Unit tests for rudp:// forward error correction (proto/rudp_fec.c): the Cauchy code is MDS
 * (any k of k + m packets rebuild a block), repairs are sized for the loss, the sender's
 * block and the receiver's store work together. Pure and seeded: no link, no clock. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rudp_fec.h"
#include "rudp_varint.h"

#define MP 1140 /* max_payload */

static uint64_t rng = 42;
static uint64_t next(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* k packets of random lengths 3..MP and contents. */
static void make_packets(uint8_t pk[][MP], size_t *len, unsigned k) {
    for (unsigned j = 0; j < k; j++) {
        len[j] = 3 + next() % (MP - 2);
        for (size_t i = 0; i < len[j]; i++)
            pk[j][i] = (uint8_t)next();
    }
}

/* Rebuilds the block from the sources and repairs that survived, as the receiver does:
 * subtract the known sources, solve for the unknown ones. */
static void check_erasures(unsigned k, unsigned m, const uint8_t *img, size_t stride, size_t L,
                           const uint8_t *rep, const int *lost) {
    unsigned unk[GP_FEC_K_MAX], u = 0;
    uint8_t idx[GP_FEC_M_MAX];
    for (unsigned j = 0; j < k; j++)
        if (lost[j])
            unk[u++] = j;
    uint8_t *rows = malloc((size_t)(u ? u : 1) * L);
    unsigned got = 0;
    for (unsigned i = 0; i < m && got < u; i++)
        if (!lost[k + i]) {
            idx[got] = (uint8_t)i;
            memcpy(rows + (size_t)got * L, rep + (size_t)i * L, L);
            got++;
        }
    cr_assert_eq(got, u, "test bug: more losses than repairs");
    for (unsigned j = 0; j < k; j++)
        if (!lost[j])
            gp_fec_subtract(rows, L, u, idx, j, img + j * stride);
    cr_assert_eq(gp_fec_solve(rows, L, u, idx, unk), 0);
    for (unsigned c = 0; c < u; c++)
        cr_assert_eq(memcmp(rows + (size_t)c * L, img + unk[c] * stride, L), 0,
                     "k=%u m=%u: source %u not rebuilt", k, m, unk[c]);
    free(rows);
}

Test(rudp_fec, any_k_of_k_plus_m_packets_rebuild_the_block) {
    static uint8_t pk[GP_FEC_K_MAX][MP];
    size_t len[GP_FEC_K_MAX];
    gp_fec_tx t;
    unsigned shapes[][2] = {{1, 1}, {2, 1}, {4, 3}, {16, 4}, {16, 12}, {16, 19}, {32, 32}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        unsigned k = shapes[s][0], m = shapes[s][1];
        make_packets(pk, len, k);
        gp_fec_tx_init(&t, MP);
        t.img = malloc((size_t)GP_FEC_K_MAX * t.stride); /* room for 32 sources */
        for (unsigned j = 0; j < k; j++) {
            t.img[j * t.stride] = (uint8_t)(len[j] >> 8);
            t.img[j * t.stride + 1] = (uint8_t)len[j];
            memset(t.img + j * t.stride + 2, 0, t.stride - 2);
            memcpy(t.img + j * t.stride + 2, pk[j], len[j]);
        }
        size_t L = t.stride;
        uint8_t *rep = malloc((size_t)m * L);
        for (unsigned i = 0; i < m; i++)
            gp_fec_encode(rep + (size_t)i * L, t.img, t.stride, k, i, L);
        /* 200 random erasure patterns of exactly m of the k + m packets (at most k sources). */
        for (int trial = 0; trial < 200; trial++) {
            int lost[GP_FEC_K_MAX + GP_FEC_M_MAX] = {0};
            unsigned n = 0, srcs = 0;
            while (n < m) {
                unsigned x = (unsigned)(next() % (k + m));
                if (lost[x] || (x < k && srcs == k))
                    continue;
                lost[x] = 1;
                n++;
                srcs += x < k;
            }
            check_erasures(k, m, t.img, t.stride, L, rep, lost);
        }
        free(rep);
        gp_fec_tx_free(&t);
    }
}

Test(rudp_fec, repairs_are_sized_for_the_loss_and_the_target) {
    cr_assert_eq(gp_fec_repairs(16, 0.0, 0.05), 0, "no loss, no repairs");
    cr_assert_eq(gp_fec_repairs(16, 0.3, 0.05), 12, "one round at 95%% needs 12 at 30%% loss");
    cr_assert_eq(gp_fec_repairs(16, 0.3, 0.01), 15);
    cr_assert_eq(gp_fec_repairs(4, 0.3, 0.01), 7);
    cr_assert_eq(gp_fec_repairs(32, 0.9, 1e-4), GP_FEC_M_MAX, "capped (and p capped at 0.5)");
    unsigned prev = 0;
    for (double p = 0.01; p <= 0.5; p += 0.01) {
        unsigned m = gp_fec_repairs(16, p, 0.05);
        cr_assert_geq(m, prev, "more loss never needs fewer repairs (p=%.2f)", p);
        cr_assert_geq(gp_fec_repairs(16, p, 0.01), m, "a stricter target never needs fewer");
        prev = m;
    }
}

Test(rudp_fec, a_block_stays_open_a_quarter_rtt_within_5_and_50_ms) {
    cr_assert_eq(gp_fec_hold(8000000ull), 5000000ull);
    cr_assert_eq(gp_fec_hold(100000000ull), 25000000ull);
    cr_assert_eq(gp_fec_hold(600000000ull), 50000000ull);
}

Test(rudp_fec, closing_a_block_picks_the_target_by_kind) {
    gp_fec_tx t;
    gp_fec_tx_init(&t, MP);
    uint8_t pkt[100] = {1};
    for (unsigned j = 0; j < 16; j++)
        cr_assert_eq(gp_fec_tx_add(&t, 1000 + j, pkt, sizeof pkt, 5), 0);
    cr_assert(t.open);
    cr_assert_eq(t.first, 1000);
    cr_assert_eq(t.k, 16);
    cr_assert_eq(t.L, 2 + sizeof pkt);
    cr_assert_eq(gp_fec_tx_close(&t, 1, 0.3, 1), 12, "a burst's tail aims at 5%%");
    cr_assert(!t.open && t.closing);
    gp_fec_tx_free(&t);

    gp_fec_tx_init(&t, MP);
    for (unsigned j = 0; j < 16; j++)
        gp_fec_tx_add(&t, j, pkt, sizeof pkt, 5);
    t.rtx = 1;
    cr_assert_eq(gp_fec_tx_close(&t, 1, 0.3, 1), 15, "retransmissions aim at 1%%");
    gp_fec_tx_free(&t);

    gp_fec_tx_init(&t, MP);
    for (unsigned j = 0; j < 16; j++)
        gp_fec_tx_add(&t, j, pkt, sizeof pkt, 5);
    cr_assert_eq(gp_fec_tx_close(&t, 0, 0.3, 1), gp_fec_repairs(16, 0.3, 0.25),
                 "a full block mid-transfer aims at 25%%");
    gp_fec_tx_free(&t);

    gp_fec_tx_init(&t, MP);
    gp_fec_tx_add(&t, 0, pkt, sizeof pkt, 5);
    cr_assert_eq(gp_fec_tx_close(&t, 1, 0.5, 1), 4, "never more than k + 3");
    cr_assert_eq(t.m, 4);
    gp_fec_tx_free(&t);

    gp_fec_tx_init(&t, MP);
    gp_fec_tx_add(&t, 0, pkt, sizeof pkt, 5);
    cr_assert_eq(gp_fec_tx_close(&t, 1, 0.3, 0), 0, "disabled: nothing to send");
    cr_assert(!t.closing);
    cr_assert_eq(gp_fec_tx_close(&t, 1, 0.0, 1), 0, "no loss: nothing to send");
    gp_fec_tx_free(&t);
}

/* Parses a REPAIR frame written by gp_fec_tx_repair_put. */
static const uint8_t *parse_repair(const uint8_t *p, const uint8_t *end, uint64_t *back,
                                   uint64_t *k, uint64_t *i, uint64_t *L) {
    cr_assert_eq(*p, GP_FEC_FT);
    p = gp_vget(p + 1, end, back);
    p = gp_vget(p, end, k);
    p = gp_vget(p, end, i);
    p = gp_vget(p, end, L);
    cr_assert_not_null(p);
    cr_assert_eq((uint64_t)(end - p), *L);
    return p;
}

/* The sender's block and the receiver's store: sources 100..115, some lost, repairs in
 * REPAIR frames; the receiver rebuilds exactly the lost packets. */
Test(rudp_fec, the_receiver_rebuilds_what_the_sender_protected) {
    static uint8_t pk[GP_FEC_K_MAX][MP];
    size_t len[GP_FEC_K_MAX];
    unsigned k = 16;
    make_packets(pk, len, k);
    gp_fec_tx t;
    gp_fec_rx x;
    gp_ack_ranges seen = {0};
    gp_fec_tx_init(&t, MP);
    gp_fec_rx_init(&x, MP);
    for (unsigned j = 0; j < k; j++)
        cr_assert_eq(gp_fec_tx_add(&t, 100 + j, pk[j], len[j], 0), 0);
    unsigned m = gp_fec_tx_close(&t, 1, 0.3, 1);
    cr_assert_eq(m, 12);
    int lost[16] = {0};
    unsigned lost_list[] = {0, 3, 4, 9, 15};
    for (unsigned c = 0; c < 5; c++)
        lost[lost_list[c]] = 1;
    for (unsigned j = 0; j < k; j++)
        if (!lost[j]) {
            gp_ack_add(&seen, 100 + j);
            gp_fec_rx_source(&x, 100 + j, pk[j], len[j]);
        }
    gp_fec_rx_block *b = NULL;
    uint8_t *rows = NULL;
    unsigned unk[GP_FEC_K_MAX], u = 0;
    uint64_t first = 0;
    for (unsigned i = 0; i < m && !rows; i++) {
        uint8_t buf[MP + 32];
        uint64_t pn = 100 + k + i, back, kk, ri, L;
        t.m_sent = i;
        uint8_t *end = gp_fec_tx_repair_put(&t, buf, buf + sizeof buf, pn);
        cr_assert_not_null(end);
        if (i % 3 == 1)
            continue; /* a third of the repairs are lost too */
        const uint8_t *d = parse_repair(buf, end, &back, &kk, &ri, &L);
        cr_assert_eq(pn - back, 100);
        b = gp_fec_rx_repair(&x, pn - back, (unsigned)kk, (unsigned)ri, d, (size_t)L, &seen, 1,
                             115);
        cr_assert_not_null(b);
        cr_assert_null(gp_fec_rx_repair(&x, pn - back, (unsigned)kk, (unsigned)ri, d, (size_t)L,
                                        &seen, 1, 115),
                       "a duplicate repair is of no use");
        rows = gp_fec_rx_solve(&x, b, &seen, unk, &u, &first);
        if (!rows)
            cr_assert(b->used, "not enough repairs yet: the block waits");
    }
    cr_assert_not_null(rows, "5 losses, 12 repairs of which 8 arrive: rebuilt");
    cr_assert_eq(first, 100);
    cr_assert_eq(u, 5);
    for (unsigned c = 0; c < u; c++) {
        const uint8_t *q = rows + (size_t)c * t.L;
        size_t n = (size_t)q[0] << 8 | q[1];
        cr_assert_eq(unk[c], lost_list[c]);
        cr_assert_eq(n, len[unk[c]]);
        cr_assert_eq(memcmp(q + 2, pk[unk[c]], n), 0);
    }
    free(rows);
    for (size_t i = 0; i < GP_FEC_RX_BLOCKS; i++)
        cr_assert(!x.blk[i].used, "a solved block is freed");
    gp_fec_tx_free(&t);
    gp_fec_rx_free(&x);
}

Test(rudp_fec, repairs_of_a_complete_block_are_not_kept) {
    gp_fec_rx x;
    gp_ack_ranges seen = {0};
    gp_fec_rx_init(&x, MP);
    for (uint64_t pn = 0; pn < 4; pn++)
        gp_ack_add(&seen, pn);
    uint8_t d[10] = {0};
    cr_assert_null(gp_fec_rx_repair(&x, 0, 4, 0, d, sizeof d, &seen, 1, 3));
    /* One missing: kept; the block is then dropped once its sources left the slots. */
    cr_assert_not_null(gp_fec_rx_repair(&x, 10, 4, 0, d, sizeof d, &seen, 1, 3));
    cr_assert_not_null(gp_fec_rx_repair(&x, 200, 4, 0, d, sizeof d, &seen, 1, 200));
    int used = 0;
    for (size_t i = 0; i < GP_FEC_RX_BLOCKS; i++)
        used += x.blk[i].used;
    cr_assert_eq(used, 1, "block 10 fell out of the 64 slots when pn 200 arrived");
    cr_assert_null(gp_fec_rx_repair(&x, 200, 5, 1, d, sizeof d, &seen, 1, 200),
                   "a repair that disagrees with its block's k is refused");
    gp_fec_rx_free(&x);
}
