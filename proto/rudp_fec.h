/* rudp_fec.h — forward error correction of the rudp:// reliability layer: a systematic
 * Cauchy Reed-Solomon code over GF(256) on blocks of consecutive packets.
 *
 * Owns: the code itself (encode a repair, solve a block: pure functions of bytes), how many
 * repairs a block needs for a loss rate and a failure target, the sender's open block (the
 * images of its packets, when it closes, the REPAIR frames that follow) and the receiver's
 * store (the last protected payloads and the repairs of up to 8 blocks). Separate from the
 * engine (rudp_rel.c) so that the code can be tested alone (tests/unit/rudp_fec.c: any k of
 * k + m packets rebuild a block) and so that a different code could replace it without
 * touching loss detection. What stays in the engine is the glue that needs its packets: which
 * loss to size for, marking sent packets as protected, feeding rebuilt packets back in.
 * Reasoning and figures: proto/RUDP.md, "Forward error correction". */
#ifndef GP_RUDP_FEC_H
#define GP_RUDP_FEC_H

#include <stddef.h>
#include <stdint.h>

#include "rudp_ack.h"

#define GP_FEC_FT 0x20          /* the REPAIR frame's type byte */
#define GP_FEC_K_MAX 32         /* sources per block we can decode */
#define GP_FEC_K_TARGET 16      /* sources per block we send */
#define GP_FEC_M_MAX 32         /* repairs per block */
#define GP_FEC_RX_SLOTS 64      /* protected packets the receiver keeps for decoding */
#define GP_FEC_RX_BLOCKS 8      /* blocks whose repairs the receiver keeps */
#define GP_FEC_RESERVE 20       /* room a protected packet leaves for the repair header */
#define GP_FEC_MIN_LOSS 0.01    /* below this measured loss FEC is off: ~zero cost on clean links */
#define GP_FEC_PRIOR_LOSS 0.2   /* what FEC assumes before any loss was measured */
#define GP_FEC_TAIL_TARGET 0.05 /* block-failure probability aimed at when a burst ends */
#define GP_FEC_RTX_TARGET 0.01  /* ... when it carries retransmissions, or is small: */
#define GP_FEC_SMALL_K 4
#define GP_FEC_MID_TARGET 0.25 /* ... for a full block in a longer transfer */
/* A block carrying datagrams (rudp_rel.h: no retransmission behind them): whatever it fails
 * to rebuild is lost for good, and the TCP inside an L3 tunnel reads every such loss as
 * congestion. So it aims at a low failure rate, and grows to GP_FEC_K_MAX sources, where the
 * same failure rate costs fewer repairs per source. */
#define GP_FEC_DGRAM_TARGET 0.005

/* ---- the code (pure) ----
 * A source image is 2 bytes of length (big-endian) then the packet's frames, zero-padded to
 * the block's L bytes. Repair i of a block of k sources is sum_j cauchy(i, j) x image_j. */

/* out[0..L) = repair i of the k images at img, img + stride, ... (each >= L bytes). */
void gp_fec_encode(uint8_t *out, const uint8_t *img, size_t stride, unsigned k, unsigned i,
                   size_t L);

/* Removes a known source j (its image src[0..L)) from u repair rows of L bytes whose repair
 * indices are rep_idx[0..u): what remains is a combination of the unknown sources only. */
void gp_fec_subtract(uint8_t *rows, size_t L, unsigned u, const uint8_t *rep_idx, unsigned j,
                     const uint8_t *src);

/* Solves in place: rows holds u repairs (indices rep_idx) with every known source
 * subtracted; unk[0..u) are the unknown sources' positions in the block. On success row c is
 * the image of source unk[c] and 0 is returned; -1 if the system is singular (it never is:
 * every square submatrix of a Cauchy matrix is invertible). u <= GP_FEC_K_MAX. */
int gp_fec_solve(uint8_t *rows, size_t L, unsigned u, const uint8_t *rep_idx, const unsigned *unk);

/* Smallest m such that a block of k sources plus m repairs fails to decode (more than m of
 * the k + m packets lost, losses independent at rate p) with probability <= target; 0 if p
 * is 0, at most GP_FEC_M_MAX. */
unsigned gp_fec_repairs(unsigned k, double p, double target);

/* How long a block may stay open for a window-limited sender: clamp(srtt/4, 5 ms, 50 ms). */
uint64_t gp_fec_hold(uint64_t srtt_ns);

/* ---- sending: the open block ---- */
typedef struct gp_fec_tx {
    uint8_t *img;  /* GP_FEC_K_MAX images of (2 + max_payload) bytes, allocated on use */
    size_t stride; /* 2 + max_payload */
    int open;      /* a block is collecting packets */
    int rtx;       /* the open block carries retransmitted chunks or a probe */
    int dgram;     /* the open block carries datagrams (GP_FEC_DGRAM_TARGET) */
    int closing;   /* block closed, repairs being sent */
    uint64_t first, opened_at; /* its first packet number, when it opened */
    unsigned k, m, m_sent;     /* sources, repairs to send, repairs sent */
    size_t L;                  /* longest image so far */
} gp_fec_tx;

void gp_fec_tx_init(gp_fec_tx *t, size_t max_payload);
void gp_fec_tx_free(gp_fec_tx *t);

/* Adds packet pn (its frames[0..len)) to the open block, opening one if none is. Returns 0,
 * GP_ERR_NOMEM or GP_ERR_BUFFER (the block already has GP_FEC_K_MAX sources): the packet then
 * goes unprotected. */
int gp_fec_tx_add(gp_fec_tx *t, uint64_t pn, const uint8_t *frames, size_t len, uint64_t now);

/* Closes the open block and sizes its repairs for loss p: `tail` if the burst ended. Returns
 * the number of repairs now due (closing is set), or 0 when none are (FEC disabled or not
 * needed at p: the caller finalizes the block at once). */
unsigned gp_fec_tx_close(gp_fec_tx *t, int tail, double p, int enabled);

/* Writes the next REPAIR frame (number m_sent) of the closing block, carried by packet pn,
 * into p[0..end). Returns its end, or NULL if it does not fit. */
uint8_t *gp_fec_tx_repair_put(const gp_fec_tx *t, uint8_t *p, uint8_t *end, uint64_t pn);

/* ---- receiving ---- */
typedef struct gp_fec_rx_block {
    int used;
    uint64_t first; /* its first source's packet number */
    unsigned k;
    size_t L;
    unsigned nrep;
    uint8_t idx[GP_FEC_M_MAX];
    uint8_t *rep[GP_FEC_M_MAX];
} gp_fec_rx_block;

typedef struct gp_fec_rx {
    size_t max_payload;
    uint8_t *mem; /* GP_FEC_RX_SLOTS x max_payload, allocated on first use */
    struct {
        uint64_t pn; /* UINT64_MAX: empty */
        size_t len;
    } slot[GP_FEC_RX_SLOTS];
    gp_fec_rx_block blk[GP_FEC_RX_BLOCKS];
} gp_fec_rx;

void gp_fec_rx_init(gp_fec_rx *x, size_t max_payload);
void gp_fec_rx_free(gp_fec_rx *x);

/* Keeps the protected packet pn (its frames p[0..len), len <= max_payload) for decoding. */
void gp_fec_rx_source(gp_fec_rx *x, uint64_t pn, const uint8_t *p, size_t len);

/* Stores repair ridx (data[0..L)) of the block of k sources starting at first. `seen` says
 * which packets arrived; has_largest/largest (the largest received) let blocks whose sources
 * left the slots go. Returns the block, or NULL if the repair is of no use (nothing missing,
 * a duplicate, inconsistent with an earlier repair, no memory). */
gp_fec_rx_block *gp_fec_rx_repair(gp_fec_rx *x, uint64_t first, unsigned k, unsigned ridx,
                                  const uint8_t *data, size_t L, const gp_ack_ranges *seen,
                                  int has_largest, uint64_t largest);

/* Rebuilds the missing sources of block b if enough repairs arrived. Returns NULL when there
 * is nothing to rebuild yet (the block is freed if nothing is missing any more), else
 * *u images of b->L bytes (2-byte length, then the packet's frames; the caller frees them),
 * image c being source *first + unk[c]. The block is freed on success. */
uint8_t *gp_fec_rx_solve(gp_fec_rx *x, gp_fec_rx_block *b, const gp_ack_ranges *seen,
                         unsigned unk[GP_FEC_K_MAX], unsigned *u, uint64_t *first);

void gp_fec_rx_block_free(gp_fec_rx_block *b);

#endif
