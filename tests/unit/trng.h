/* trng.h — seeded randomness for tests of proto/rudp_sess.c (the unit tests and the fuzz
 * target): a ChaCha20 keystream per generator, so that every run sees the same bytes. Pass
 * trand with a trng * wherever the session code takes a random source. Test-only. */
#ifndef GP_TEST_TRNG_H
#define GP_TEST_TRNG_H
#include <sodium.h>
#include <stdint.h>
#include <string.h>

typedef struct trng {
    uint8_t key[32];
    uint64_t ctr;
} trng;

static inline void trand(void *ud, uint8_t *p, size_t n) {
    trng *r = ud;
    uint8_t nonce[8];
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(r->ctr >> (8 * i));
    r->ctr++;
    crypto_stream_chacha20(p, n, nonce, r->key);
}

/* A generator whose key is the seed's bytes (little-endian) and a marker byte. */
static inline trng trng_seed(uint64_t seed) {
    trng r = {.ctr = 0};
    memset(r.key, 0, sizeof r.key);
    for (int i = 0; i < 8; i++)
        r.key[i] = (uint8_t)(seed >> (8 * i));
    r.key[31] = 0x5a;
    return r;
}
#endif
