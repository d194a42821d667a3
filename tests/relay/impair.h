/* impair.h — the pieces of a link's impairment model that the UDP relay (tests/relay/relay.c,
 * gp-relay) and the links benchmark's TUN link emulator (tests/bench/linkem_tool.c) share:
 * seeded draws that depend only on (seed, direction, packet number, purpose), so that a loss
 * pattern is a function of packet numbers whatever the timing, and the fluid bottleneck with a
 * drop-tail queue. Pure, header-only (each tool is one translation unit); test tools only. */
#ifndef GP_TEST_IMPAIR_H
#define GP_TEST_IMPAIR_H
#include <stddef.h>
#include <stdint.h>

static inline uint64_t imp_mix64(uint64_t z) { /* splitmix64's finaliser */
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1): a function of (seed, direction key, packet number, purpose) only. */
static inline double imp_uniform(uint64_t seed, uint32_t dirkey, uint64_t n, unsigned what) {
    uint64_t h = imp_mix64(imp_mix64(imp_mix64(seed) ^ n) ^ ((uint64_t)dirkey << 32 | what));
    return (double)(h >> 11) * 0x1p-53;
}

/* A fluid bottleneck of rate_bps (> 0) whose queue holds at most queue_bytes: what it holds at
 * now_ns is what it has not sent by then (*held, set in any case). A packet of len bytes that
 * does not fit is refused (-1); else it is queued: *link_free_ns moves to when its last byte is
 * sent, which is also *leave_ns, and *hw keeps the most the queue held. */
static inline int imp_bottleneck(uint64_t *link_free_ns, double rate_bps, double queue_bytes,
                                 size_t len, uint64_t now_ns, double *held, double *hw,
                                 uint64_t *leave_ns) {
    double ns_per_byte = 8e9 / rate_bps;
    *held = *link_free_ns > now_ns ? (double)(*link_free_ns - now_ns) / ns_per_byte : 0;
    if (*held + (double)len > queue_bytes)
        return -1;
    uint64_t from = *link_free_ns > now_ns ? *link_free_ns : now_ns;
    *link_free_ns = from + (uint64_t)((double)len * ns_per_byte + 0.5);
    if (*held + (double)len > *hw)
        *hw = *held + (double)len;
    *leave_ns = *link_free_ns;
    return 0;
}
#endif
