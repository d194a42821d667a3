/* libFuzzer target for the frame codec and the framer (proto/frame.c).
 *
 * Input: byte 0 = n, bytes 1..n (n % 8) = slice sizes for the framer, the rest = the byte
 * stream. Oracles: a decoded frame re-encodes to exactly the bytes it came from (the
 * encoding is canonical), and the framer fed the stream in slices yields exactly the frames
 * and the error that decoding the whole stream frame by frame does. */
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX_PAYLOAD 65536u

static uint8_t scratch[GP_FRAME_HEADER_LEN + MAX_PAYLOAD];

static void check(int ok) {
    if (!ok)
        abort();
}

/* Re-encode f and compare with the wire bytes; then decode that again and compare. */
static void round_trip(const gp_frame *f, const uint8_t *wire, size_t n) {
    static gp_frame g;
    check(gp_frame_size(f) == n);
    check(gp_frame_encode(f, scratch, sizeof scratch) == (ssize_t)n);
    check(memcmp(scratch, wire, n) == 0);
    check(gp_frame_decode(scratch, n, MAX_PAYLOAD, &g) == (ssize_t)n);
    static uint8_t again[sizeof scratch];
    check(gp_frame_encode(&g, again, sizeof again) == (ssize_t)n);
    check(memcmp(again, wire, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static gp_frame f;
    if (size == 0)
        return 0;
    size_t nslices = data[0] % 8;
    if (size < 1 + nslices)
        return 0;
    const uint8_t *slices = data + 1, *p = data + 1 + nslices;
    size_t len = size - 1 - nslices;

    gp_framer *fr = gp_framer_new(MAX_PAYLOAD);
    if (!fr)
        return 0;
    size_t off = 0, fed = 0, k = 0;
    int end_rc = 0;
    for (;;) {
        /* Reference: decode the stream frame by frame. */
        ssize_t n = gp_frame_decode(p + off, len - off, MAX_PAYLOAD, &f);
        int want = n > 0 ? 1 : n == GP_ERR_TRUNCATED ? 0 : (int)n;
        if (n > 0)
            round_trip(&f, p + off, (size_t)n);
        /* The framer must agree once it has been fed enough bytes. */
        static gp_frame g;
        int rc;
        while ((rc = gp_framer_next(fr, &g)) == 0 && fed < len) {
            size_t s = nslices ? (size_t)slices[k++ % nslices] + 1 : len - fed;
            s = s < len - fed ? s : len - fed;
            check(gp_framer_feed(fr, p + fed, s) == 0);
            fed += s;
        }
        check(rc == want);
        if (rc != 1) {
            end_rc = rc;
            break;
        }
        check(gp_frame_size(&g) == (size_t)n);
        check(gp_frame_encode(&g, scratch, sizeof scratch) == n);
        check(memcmp(scratch, p + off, (size_t)n) == 0);
        off += (size_t)n;
    }
    /* Sticky: a failed framer keeps failing with the same code. */
    if (end_rc < 0) {
        check(gp_framer_next(fr, &f) == end_rc);
        check(gp_framer_feed(fr, p, len) == end_rc);
    } else {
        check(gp_framer_pending(fr) == len - off);
    }
    gp_framer_free(fr);
    return 0;
}
