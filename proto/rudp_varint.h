/* rudp_varint.h — the integers of the rudp:// reliability layer's plaintext: varints with a
 * 2-bit length prefix (1, 2, 4 or 8 bytes, 62-bit values, big-endian; QUIC's encoding).
 *
 * Separate because three modules write and read them — the engine's frames (rudp_rel.c),
 * the ACK frame (rudp_ack.c) and the REPAIR frame (rudp_fec.c) — and a header of inline
 * functions keeps them as cheap as when they were static in one file. */
#ifndef GP_RUDP_VARINT_H
#define GP_RUDP_VARINT_H

#include <stddef.h>
#include <stdint.h>

static inline size_t gp_vlen(uint64_t v) {
    return v < 0x40 ? 1 : v < 0x4000 ? 2 : v < 0x40000000 ? 4 : 8;
}

/* Writes v (< 2^62) at p, which has gp_vlen(v) bytes of room; returns the end. */
static inline uint8_t *gp_vput(uint8_t *p, uint64_t v) {
    size_t n = gp_vlen(v);
    uint8_t tag = n == 1 ? 0x00 : n == 2 ? 0x40 : n == 4 ? 0x80 : 0xc0;
    for (size_t i = n; i-- > 0;) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    p[0] = (uint8_t)((p[0] & 0x3f) | tag);
    return p + n;
}

/* Decoders take (p, end, &out) and return the position after the field, NULL on overrun
 * (a NULL p propagates, so a chain of reads needs one check at the end). */
static inline const uint8_t *gp_vget(const uint8_t *p, const uint8_t *end, uint64_t *out) {
    if (!p || p >= end)
        return NULL;
    size_t n = (size_t)1 << (p[0] >> 6);
    if ((size_t)(end - p) < n)
        return NULL;
    uint64_t v = p[0] & 0x3f;
    for (size_t i = 1; i < n; i++)
        v = v << 8 | p[i];
    *out = v;
    return p + n;
}

#endif
