/* bytes.h — the fixed-width big-endian integers of Ghost Port's byte formats: the tunnel frame
 * codec (frame.c) and the house's replay journal (house/journal.c) write and read them alike.
 * The rudp:// layer's variable-length integers are rudp_varint.h.
 *
 * Inline because each codec calls them for every field. */
#ifndef GP_BYTES_H
#define GP_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Writes the low n bytes of v (n <= 8), most significant first, at p; returns the end. */
static inline uint8_t *gp_be_put(uint8_t *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* Reads an n-byte (n <= 8) big-endian integer at p into *v; returns the position after it, or
 * NULL if fewer than n bytes remain before end. A NULL p propagates (and *v is left alone), so
 * a chain of reads needs one check at its end. */
static inline const uint8_t *gp_be_get(const uint8_t *p, const uint8_t *end, int n, uint64_t *v) {
    if (!p || end - p < n)
        return NULL;
    uint64_t x = 0;
    for (int i = 0; i < n; i++)
        x = x << 8 | p[i];
    *v = x;
    return p + n;
}

#endif
