/* rudp_fec.c — the FEC of rudp:// (see rudp_fec.h for what this file owns and why it stands
 * apart from the engine): GF(256) arithmetic, the Cauchy code, the sender's open block and
 * the receiver's store of protected packets and repairs. */
#include "rudp_fec.h"

#include <stdlib.h>
#include <string.h>

#include "gp.h"
#include "rudp_varint.h"

#define MS 1000000ull

/* GF(256), polynomial 0x11d, generator 2: gf_exp[i] = 2^i, gf_log its inverse (gf_log[0] is
 * unused). */
static const uint8_t gf_exp[255] = {
    1,   2,   4,   8,   16,  32,  64,  128, 29,  58,  116, 232, 205, 135, 19,  38,  76,  152, 45,
    90,  180, 117, 234, 201, 143, 3,   6,   12,  24,  48,  96,  192, 157, 39,  78,  156, 37,  74,
    148, 53,  106, 212, 181, 119, 238, 193, 159, 35,  70,  140, 5,   10,  20,  40,  80,  160, 93,
    186, 105, 210, 185, 111, 222, 161, 95,  190, 97,  194, 153, 47,  94,  188, 101, 202, 137, 15,
    30,  60,  120, 240, 253, 231, 211, 187, 107, 214, 177, 127, 254, 225, 223, 163, 91,  182, 113,
    226, 217, 175, 67,  134, 17,  34,  68,  136, 13,  26,  52,  104, 208, 189, 103, 206, 129, 31,
    62,  124, 248, 237, 199, 147, 59,  118, 236, 197, 151, 51,  102, 204, 133, 23,  46,  92,  184,
    109, 218, 169, 79,  158, 33,  66,  132, 21,  42,  84,  168, 77,  154, 41,  82,  164, 85,  170,
    73,  146, 57,  114, 228, 213, 183, 115, 230, 209, 191, 99,  198, 145, 63,  126, 252, 229, 215,
    179, 123, 246, 241, 255, 227, 219, 171, 75,  150, 49,  98,  196, 149, 55,  110, 220, 165, 87,
    174, 65,  130, 25,  50,  100, 200, 141, 7,   14,  28,  56,  112, 224, 221, 167, 83,  166, 81,
    162, 89,  178, 121, 242, 249, 239, 195, 155, 43,  86,  172, 69,  138, 9,   18,  36,  72,  144,
    61,  122, 244, 245, 247, 243, 251, 235, 203, 139, 11,  22,  44,  88,  176, 125, 250, 233, 207,
    131, 27,  54,  108, 216, 173, 71,  142,
};
static const uint8_t gf_log[256] = {
    0,   0,   1,   25,  2,   50,  26,  198, 3,   223, 51,  238, 27,  104, 199, 75,  4,   100, 224,
    14,  52,  141, 239, 129, 28,  193, 105, 248, 200, 8,   76,  113, 5,   138, 101, 47,  225, 36,
    15,  33,  53,  147, 142, 218, 240, 18,  130, 69,  29,  181, 194, 125, 106, 39,  249, 185, 201,
    154, 9,   120, 77,  228, 114, 166, 6,   191, 139, 98,  102, 221, 48,  253, 226, 152, 37,  179,
    16,  145, 34,  136, 54,  208, 148, 206, 143, 150, 219, 189, 241, 210, 19,  92,  131, 56,  70,
    64,  30,  66,  182, 163, 195, 72,  126, 110, 107, 58,  40,  84,  250, 133, 186, 61,  202, 94,
    155, 159, 10,  21,  121, 43,  78,  212, 229, 172, 115, 243, 167, 87,  7,   112, 192, 247, 140,
    128, 99,  13,  103, 74,  222, 237, 49,  197, 254, 24,  227, 165, 153, 119, 38,  184, 180, 124,
    17,  68,  146, 217, 35,  32,  137, 46,  55,  63,  209, 91,  149, 188, 207, 205, 144, 135, 151,
    178, 220, 252, 190, 97,  242, 86,  211, 171, 20,  42,  93,  158, 132, 60,  57,  83,  71,  109,
    65,  162, 31,  45,  67,  216, 183, 123, 164, 118, 196, 23,  73,  236, 127, 12,  111, 246, 108,
    161, 59,  82,  41,  157, 85,  170, 251, 96,  134, 177, 187, 204, 62,  90,  203, 89,  95,  176,
    156, 169, 160, 81,  11,  245, 22,  235, 122, 117, 44,  215, 79,  174, 213, 233, 230, 231, 173,
    232, 116, 214, 244, 234, 168, 80,  88,  175,
};

static inline uint8_t gf_mul(uint8_t a, uint8_t b) {
    return a && b ? gf_exp[(gf_log[a] + gf_log[b]) % 255] : 0;
}
static inline uint8_t gf_inv(uint8_t a) { /* a != 0 */
    return gf_exp[(255 - gf_log[a]) % 255];
}
/* row[x] = c * x for every x: walks the powers of 2, 2^i -> 2^(i + log c), so it needs neither
 * a product per entry nor a mod. c != 0. */
static void gf_row(uint8_t row[256], uint8_t c) {
    unsigned e = gf_log[c];
    row[0] = 0;
    for (unsigned i = 0; i < 255; i++) {
        row[gf_exp[i]] = gf_exp[e];
        e = e == 254 ? 0 : e + 1;
    }
}
/* dst ^= c * src over n bytes, through the 256-entry row of c's products: one lookup per
 * byte and no branch (the log/exp form took two and a branch). Repairs are k x m x L of
 * these, 16 x 12 x 1.1 KB per block at 30% loss: the engine's hottest loop by far. */
static void gf_addmul(uint8_t *dst, const uint8_t *src, uint8_t c, size_t n) {
    if (!c)
        return;
    uint8_t row[256];
    gf_row(row, c);
    for (size_t i = 0; i < n; i++)
        dst[i] ^= row[src[i]];
}
static void gf_scale(uint8_t *dst, uint8_t c, size_t n) {
    uint8_t row[256];
    gf_row(row, c);
    for (size_t i = 0; i < n; i++)
        dst[i] = row[dst[i]];
}
/* Coefficient of source j in repair i: a Cauchy matrix 1/(x_i + y_j) with x_i = 32 + i and
 * y_j = j, disjoint sets, so every square submatrix is invertible and the code is MDS: any k
 * of the k + m packets of a block rebuild its k sources. */
static inline uint8_t cauchy(unsigned i, unsigned j) {
    return gf_inv((uint8_t)((GP_FEC_K_MAX + i) ^ j));
}

/* ---- the code ---- */

void gp_fec_encode(uint8_t *out, const uint8_t *img, size_t stride, unsigned k, unsigned i,
                   size_t L) {
    memset(out, 0, L);
    for (unsigned j = 0; j < k; j++)
        gf_addmul(out, img + j * stride, cauchy(i, j), L);
}

void gp_fec_subtract(uint8_t *rows, size_t L, unsigned u, const uint8_t *rep_idx, unsigned j,
                     const uint8_t *src) {
    for (unsigned i = 0; i < u; i++)
        gf_addmul(rows + (size_t)i * L, src, cauchy(rep_idx[i], j), L);
}

static void row_swap(uint8_t *rows, size_t L, unsigned x, unsigned y, uint8_t *tmp) {
    memcpy(tmp, rows + (size_t)x * L, L);
    memcpy(rows + (size_t)x * L, rows + (size_t)y * L, L);
    memcpy(rows + (size_t)y * L, tmp, L);
}

/* Gauss-Jordan on the u x u Cauchy submatrix, applied to the rows as it goes. */
int gp_fec_solve(uint8_t *rows, size_t L, unsigned u, const uint8_t *rep_idx, const unsigned *unk) {
    uint8_t a[GP_FEC_K_MAX][GP_FEC_K_MAX];
    for (unsigned i = 0; i < u; i++)
        for (unsigned c = 0; c < u; c++)
            a[i][c] = cauchy(rep_idx[i], unk[c]);
    uint8_t *tmp = NULL;
    for (unsigned c = 0; c < u; c++) {
        unsigned piv = c;
        while (piv < u && !a[piv][c])
            piv++;
        if (piv == u) {
            free(tmp);
            return -1;
        }
        if (piv != c) {
            for (unsigned x = 0; x < u; x++) {
                uint8_t t = a[c][x];
                a[c][x] = a[piv][x];
                a[piv][x] = t;
            }
            if (!tmp && !(tmp = malloc(L)))
                return -1;
            row_swap(rows, L, c, piv, tmp);
        }
        uint8_t inv = gf_inv(a[c][c]);
        for (unsigned x = 0; x < u; x++)
            a[c][x] = gf_mul(a[c][x], inv);
        gf_scale(rows + (size_t)c * L, inv, L);
        for (unsigned i = 0; i < u; i++) {
            if (i == c || !a[i][c])
                continue;
            uint8_t f = a[i][c];
            for (unsigned x = 0; x < u; x++)
                a[i][x] ^= gf_mul(f, a[c][x]);
            gf_addmul(rows + (size_t)i * L, rows + (size_t)c * L, f, L);
        }
    }
    free(tmp);
    return 0;
}

unsigned gp_fec_repairs(unsigned k, double p, double target) {
    if (p <= 0)
        return 0;
    if (p > 0.5)
        p = 0.5;
    for (unsigned m = 0; m < GP_FEC_M_MAX; m++) {
        unsigned n = k + m;
        double pmf = 1, cdf;
        for (unsigned i = 0; i < n; i++)
            pmf *= 1 - p;
        cdf = pmf;
        for (unsigned i = 0; i < m; i++) {
            pmf *= (double)(n - i) / (double)(i + 1) * p / (1 - p);
            cdf += pmf;
        }
        if (1 - cdf <= target)
            return m;
    }
    return GP_FEC_M_MAX;
}

uint64_t gp_fec_hold(uint64_t srtt_ns) {
    uint64_t h = srtt_ns / 4;
    return h < 5 * MS ? 5 * MS : h > 50 * MS ? 50 * MS : h;
}

/* ---- sending ---- */

void gp_fec_tx_init(gp_fec_tx *t, size_t max_payload) {
    memset(t, 0, sizeof *t);
    t->stride = 2 + max_payload;
}

void gp_fec_tx_free(gp_fec_tx *t) {
    free(t->img);
    t->img = NULL;
}

int gp_fec_tx_add(gp_fec_tx *t, uint64_t pn, const uint8_t *frames, size_t len, uint64_t now) {
    size_t stride = t->stride;
    if (!t->img && !(t->img = malloc(GP_FEC_K_MAX * stride)))
        return GP_ERR_NOMEM;
    if (t->open && t->k == GP_FEC_K_MAX)
        return GP_ERR_BUFFER; /* the engine closes blocks before; never fail silently */
    if (!t->open) {
        t->open = 1;
        t->rtx = 0;
        t->dgram = 0;
        t->first = pn;
        t->k = 0;
        t->L = 0;
        t->opened_at = now;
    }
    uint8_t *img = t->img + t->k * stride;
    img[0] = (uint8_t)(len >> 8);
    img[1] = (uint8_t)len;
    memcpy(img + 2, frames, len);
    memset(img + 2 + len, 0, stride - 2 - len);
    if (2 + len > t->L)
        t->L = 2 + len;
    t->k++;
    return 0;
}

/* A tail block that fails costs its messages a little over one round trip: the time
 * threshold (9/8 RTT after the last repair) reveals the loss and the missing chunks go again,
 * in a block of their own. Two failures in a row are what pushes an exchange past ~3 RTT, so:
 * - a block carrying retransmissions (or a probe) aims at 1%;
 * - so does a small one (up to GP_FEC_SMALL_K packets: a request, control frames), whose
 *   repairs cost few bytes;
 * - a larger first transmission aims at 5%. Aiming it at 1% too spent as many repair bytes
 *   as data bytes at 30% loss (15 repairs for 15 sources, where 5% takes 12 and the loss
 *   itself is 6.4), and under load those bytes compete with the data.
 * A full block in the middle of a transfer aims at 25% and leaves the rest to fast
 * retransmission: later packets reveal its losses within a round trip.
 * A block with datagrams has no retransmission behind it: GP_FEC_DGRAM_TARGET, tail or not. */
unsigned gp_fec_tx_close(gp_fec_tx *t, int tail, double p, int enabled) {
    t->open = 0;
    double target = t->dgram                           ? GP_FEC_DGRAM_TARGET
                    : !tail                            ? GP_FEC_MID_TARGET
                    : t->rtx || t->k <= GP_FEC_SMALL_K ? GP_FEC_RTX_TARGET
                                                       : GP_FEC_TAIL_TARGET;
    unsigned m = gp_fec_repairs(t->k, p, target);
    if (m > t->k + 3)
        m = t->k + 3;
    if (!enabled || m == 0)
        return 0;
    t->closing = 1;
    t->m = m;
    t->m_sent = 0;
    return m;
}

uint8_t *gp_fec_tx_repair_put(const gp_fec_tx *t, uint8_t *p, uint8_t *end, uint64_t pn) {
    unsigned i = t->m_sent, k = t->k;
    size_t L = t->L;
    uint64_t back = pn - t->first;
    size_t need = 1 + gp_vlen(back) + gp_vlen(k) + gp_vlen(i) + gp_vlen(L) + L;
    if (need > (size_t)(end - p))
        return NULL;
    *p++ = GP_FEC_FT;
    p = gp_vput(p, back);
    p = gp_vput(p, k);
    p = gp_vput(p, i);
    p = gp_vput(p, L);
    gp_fec_encode(p, t->img, t->stride, k, i, L);
    return p + L;
}

/* ---- receiving ---- */

void gp_fec_rx_init(gp_fec_rx *x, size_t max_payload) {
    memset(x, 0, sizeof *x);
    x->max_payload = max_payload;
    for (size_t i = 0; i < GP_FEC_RX_SLOTS; i++)
        x->slot[i].pn = UINT64_MAX;
}

void gp_fec_rx_block_free(gp_fec_rx_block *b) {
    for (unsigned i = 0; i < b->nrep; i++)
        free(b->rep[i]);
    memset(b, 0, sizeof *b);
}

void gp_fec_rx_free(gp_fec_rx *x) {
    free(x->mem);
    x->mem = NULL;
    for (size_t b = 0; b < GP_FEC_RX_BLOCKS; b++)
        gp_fec_rx_block_free(&x->blk[b]);
}

static int slot_has(const gp_fec_rx *x, uint64_t pn) {
    return x->mem && x->slot[pn % GP_FEC_RX_SLOTS].pn == pn;
}

void gp_fec_rx_source(gp_fec_rx *x, uint64_t pn, const uint8_t *p, size_t len) {
    size_t mp = x->max_payload;
    if (!x->mem && !(x->mem = malloc(GP_FEC_RX_SLOTS * mp)))
        return;
    x->slot[pn % GP_FEC_RX_SLOTS].pn = pn;
    x->slot[pn % GP_FEC_RX_SLOTS].len = len;
    memcpy(x->mem + (pn % GP_FEC_RX_SLOTS) * mp, p, len);
}

gp_fec_rx_block *gp_fec_rx_repair(gp_fec_rx *x, uint64_t first, unsigned k, unsigned ridx,
                                  const uint8_t *data, size_t L, const gp_ack_ranges *seen,
                                  int has_largest, uint64_t largest) {
    unsigned missing = 0;
    for (unsigned j = 0; j < k; j++)
        missing += !gp_ack_seen(seen, first + j);
    if (!missing)
        return NULL;
    gp_fec_rx_block *b = NULL, *victim = NULL;
    for (size_t i = 0; i < GP_FEC_RX_BLOCKS; i++) {
        gp_fec_rx_block *y = &x->blk[i];
        /* Blocks whose sources left the slots can no longer be decoded. */
        if (y->used && has_largest && y->first + y->k + GP_FEC_RX_SLOTS <= largest)
            gp_fec_rx_block_free(y);
        if (y->used && y->first == first)
            b = y;
        /* Victim: a free block, else the oldest one. */
        if (!victim || (victim->used && (!y->used || y->first < victim->first)))
            victim = y;
    }
    if (b) {
        if (b->k != k || b->L != L)
            return NULL;
    } else {
        b = victim;
        gp_fec_rx_block_free(b);
        b->used = 1;
        b->first = first;
        b->k = k;
        b->L = L;
    }
    for (unsigned i = 0; i < b->nrep; i++)
        if (b->idx[i] == ridx)
            return NULL;
    if (b->nrep == GP_FEC_M_MAX)
        return NULL;
    uint8_t *d = malloc(b->L);
    if (!d)
        return NULL;
    memcpy(d, data, b->L);
    b->idx[b->nrep] = (uint8_t)ridx;
    b->rep[b->nrep++] = d;
    return b;
}

/* The image of kept source pn: its length, then its frames, zero-padded to L. */
static void slot_image(const gp_fec_rx *x, uint64_t pn, uint8_t *img, size_t L) {
    size_t len = x->slot[pn % GP_FEC_RX_SLOTS].len;
    memset(img, 0, L);
    img[0] = (uint8_t)(len >> 8);
    img[1] = (uint8_t)len;
    memcpy(img + 2, x->mem + (pn % GP_FEC_RX_SLOTS) * x->max_payload, len < L - 2 ? len : L - 2);
}

uint8_t *gp_fec_rx_solve(gp_fec_rx *x, gp_fec_rx_block *b, const gp_ack_ranges *seen,
                         unsigned unk[GP_FEC_K_MAX], unsigned *u, uint64_t *first) {
    unsigned n = 0, missing = 0;
    for (unsigned j = 0; j < b->k; j++) {
        uint64_t pn = b->first + j;
        if (!gp_ack_seen(seen, pn))
            missing++;
        if (!slot_has(x, pn))
            unk[n++] = j;
    }
    if (!missing) {
        gp_fec_rx_block_free(b);
        return NULL;
    }
    if (b->nrep < n)
        return NULL;
    size_t L = b->L;
    uint8_t *rows = malloc((size_t)n * L + L);
    if (!rows)
        return NULL;
    uint8_t *img = rows + (size_t)n * L;
    for (unsigned i = 0; i < n; i++)
        memcpy(rows + (size_t)i * L, b->rep[i], L);
    for (unsigned j = 0, c = 0; j < b->k; j++) {
        if (c < n && unk[c] == j) {
            c++;
            continue;
        }
        slot_image(x, b->first + j, img, L);
        gp_fec_subtract(rows, L, n, b->idx, j, img);
    }
    if (gp_fec_solve(rows, L, n, b->idx, unk)) {
        free(rows);
        return NULL;
    }
    *first = b->first;
    *u = n;
    gp_fec_rx_block_free(b);
    return rows;
}
