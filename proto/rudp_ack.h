/* rudp_ack.h — acknowledgements of the rudp:// reliability layer: what the receiver knows
 * about the packet numbers it got, and the ACK frame that tells the sender.
 *
 * Owns: the set of received packet-number ranges (bounded, oldest forgotten), the ACK frame's
 * encoding and decoding (QUIC's ranges, RFC 9000 §19.3, plus our delay and loss fields), the
 * receiver's loss meter (packet-number gaps over windows, reported in every ACK) and how many
 * copies of a burst's last ACK a lossy path deserves. Separate from the engine (rudp_rel.c)
 * because none of it needs the engine's messages, packets or timers: it is a pure function of
 * the packet numbers seen, and its unit test (tests/unit/rudp_ack.c) checks it without a link.
 * The frame layout and the reasons behind each rule are in proto/RUDP.md, "Acknowledgements". */
#ifndef GP_RUDP_ACK_H
#define GP_RUDP_ACK_H

#include <stddef.h>
#include <stdint.h>

#define GP_ACK_RANGES_STORED 64      /* received ranges remembered */
#define GP_ACK_RANGES_SENT 32        /* ranges per ACK frame at most (after the first) */
#define GP_ACK_RANGES_MAX_DECODE 256 /* ranges accepted in a received frame */
#define GP_ACK_FT 0x02               /* the ACK frame's type byte */
#define GP_ACK_LOSS_WINDOW_FIRST 16u /* the loss meter's first window of packet numbers */
#define GP_ACK_LOSS_WINDOW 32u       /* ... and the later ones */

typedef struct gp_pnrange {
    uint64_t lo, hi; /* inclusive */
} gp_pnrange;

/* Received packet numbers: sorted, disjoint, non-adjacent ranges, oldest first; numbers
 * below `floor` count as seen (forgotten, or acked in an ACK the peer has seen). Zeroed is
 * empty. */
typedef struct gp_ack_ranges {
    gp_pnrange r[GP_ACK_RANGES_STORED];
    size_t n;
    uint64_t floor;
} gp_ack_ranges;

/* 1 if pn was received already, or is too old to tell (below the floor). */
int gp_ack_seen(const gp_ack_ranges *a, uint64_t pn);

/* Records pn, which gp_ack_seen says is new. At GP_ACK_RANGES_STORED ranges the oldest is
 * forgotten (its numbers now count as seen); a pn older than every range is then ignored. */
void gp_ack_add(gp_ack_ranges *a, uint64_t pn);

/* Forgets every number below floor (they count as seen from now on). */
void gp_ack_drop_below(gp_ack_ranges *a, uint64_t floor);

/* Writes an ACK frame (type byte included) for the newest ranges into p[0..end): largest,
 * delay_us, loss_bp, then as many older ranges as fit, up to GP_ACK_RANGES_SENT. Returns the
 * end of the frame and sets *largest, or NULL if there is nothing to ack or no room for the
 * frame's fixed part. */
uint8_t *gp_ack_encode(const gp_ack_ranges *a, uint8_t *p, uint8_t *end, uint64_t delay_us,
                       uint64_t loss_bp, uint64_t *largest);

/* A decoded ACK frame. The ranges after the first stay encoded in [ranges, ranges_end); walk
 * them with gp_ack_next_range. */
typedef struct gp_ack_frame {
    uint64_t largest, delay_us, loss_bp, nranges, first;
    const uint8_t *ranges, *ranges_end;
} gp_ack_frame;

/* Decodes an ACK frame's body at p (after the type byte). next_pn is the sender's next packet
 * number: an ack of a number never sent is a lie (or an optimistic-ack attack to inflate our
 * rate) and fails the frame. Every range is checked. Returns the position after the frame, or
 * NULL if it is malformed. */
const uint8_t *gp_ack_decode(const uint8_t *p, const uint8_t *end, uint64_t next_pn,
                             gp_ack_frame *f);

/* The range after [*lo, *hi]: start with hi = largest, lo = largest - first, p = ranges,
 * end = ranges_end; returns the position after it (NULL if invalid, which cannot happen on a
 * frame gp_ack_decode accepted). */
const uint8_t *gp_ack_next_range(const uint8_t *p, const uint8_t *end, uint64_t *hi, uint64_t *lo);

/* The receiver's loss meter: packet-number gaps over windows (16 numbers, then 32 smoothed
 * 1/4). A late packet takes back a miss. Zeroed is "nothing measured yet". */
typedef struct gp_ack_loss {
    unsigned seen, miss, windows; /* windows: closed so far */
    double rate;                  /* the last measurement (0 until the first window closes) */
} gp_ack_loss;

/* Counts the arrival of pn; largest is the largest number received before it (has_largest
 * 0: none yet). Packets rebuilt by FEC are not counted: this measures the channel. */
void gp_ack_loss_count(gp_ack_loss *l, uint64_t pn, int has_largest, uint64_t largest);

/* Loss in 1/10000 as the ACK frame carries it. */
uint64_t gp_ack_loss_bp(const gp_ack_loss *l);

/* Copies of a burst's last ACK to send at this measured loss: 0 under 1%, 1 under 20%, else
 * 2 (the chance that every copy is lost stays under ~5%). */
unsigned gp_ack_repeats(double loss);

#endif
