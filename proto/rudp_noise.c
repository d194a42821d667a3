/* rudp_noise.c — the session layer's cryptographic building blocks (see rudp_noise.h for
 * what this file owns and why it stands apart from rudp_sess.c). */
#include "rudp_noise.h"

#include <sodium.h>
#include <string.h>

/* ---- primitives ------------------------------------------------------------------------ */

void gp_noise_hmac2(uint8_t out[32], const uint8_t key[32], const uint8_t *a, size_t alen,
                    const uint8_t *b, size_t blen) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, a, alen);
    if (blen)
        crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* Noise's HKDF (Noise spec 4.3) with HMAC-SHA-256: two or three outputs. Outputs may alias ck
 * (the PRK is computed first). */
void gp_noise_hkdf(const uint8_t ck[32], const uint8_t *ikm, size_t n, uint8_t *o1, uint8_t *o2,
                   uint8_t *o3) {
    static const uint8_t one = 1, two = 2, three = 3;
    uint8_t prk[32], a[32], b[32], c[32];
    gp_noise_hmac2(prk, ck, ikm, n, NULL, 0);
    gp_noise_hmac2(a, prk, &one, 1, NULL, 0);
    gp_noise_hmac2(b, prk, a, 32, &two, 1);
    if (o3)
        gp_noise_hmac2(c, prk, b, 32, &three, 1);
    memcpy(o1, a, 32);
    memcpy(o2, b, 32);
    if (o3)
        memcpy(o3, c, 32);
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(a, sizeof a);
    sodium_memzero(b, sizeof b);
    sodium_memzero(c, sizeof c);
}

/* A labelled PRF output of a 32-byte key (HKDF-Expand, one block). out may alias key. */
void gp_noise_prf(uint8_t out[32], const uint8_t key[32], const char *label) {
    static const char pfx[] = "gp/rudp/v1 ";
    uint8_t t[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)pfx, sizeof pfx - 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    crypto_auth_hmacsha256_final(&st, t);
    memcpy(out, t, 32);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(t, sizeof t);
}

/* Keys anyone holding the bridges' public key can compute: they hide bytes from observers who
 * do not have it and let the bridge find its bearings before any DH. extra: an ephemeral key
 * for the house-bound handshake keys, else NULL. */
void gp_noise_pub_key(uint8_t out[32], const char *label, const uint8_t spub[32],
                      const uint8_t *extra) {
    static const char pfx[] = "gp/rudp/v1 ";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)pfx, sizeof pfx - 1);
    crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&st, spub, 32);
    if (extra)
        crypto_generichash_update(&st, extra, 32);
    crypto_generichash_final(&st, out, 32);
}

/* Keyed BLAKE2b-128 of a || b (mac1, mac2, cookies, table keys). key: 16..64 bytes. */
void gp_noise_mac16(uint8_t out[GP_NOISE_MAC], const uint8_t *key, size_t keylen, const uint8_t *a,
                    size_t alen, const uint8_t *b, size_t blen) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, keylen, GP_NOISE_MAC);
    crypto_generichash_update(&st, a, alen);
    if (blen)
        crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, GP_NOISE_MAC);
    sodium_memzero(&st, sizeof st);
}

void gp_noise_hash16(uint8_t out[16], const uint8_t *p, size_t n) {
    crypto_generichash(out, 16, p, n, NULL, 0);
}

/* Header mask: XChaCha20 keystream under `key` with the datagram's 16-byte sample (its tag or
 * trailing MAC) as nonce, so every datagram gets a fresh mask (as QUIC's header protection)
 * and every bit of the sample changes it: flipping any sample bit garbles the whole header. */
void gp_noise_mask(const uint8_t key[32], const uint8_t sample[GP_NOISE_SAMPLE], uint8_t *out,
                   size_t n) {
    uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {0};
    memcpy(nonce, sample, GP_NOISE_SAMPLE);
    crypto_stream_xchacha20(out, n, nonce, key);
}

/* X25519 public keys are < 2^255: their top bit is always 0. Senders set it at random (RFC
 * 7748 s5: receivers ignore it); receivers clear it before use and in every hash. */
void gp_noise_canon(uint8_t out[32], const uint8_t wire[32]) {
    memcpy(out, wire, 32);
    out[31] &= 0x7f;
}

/* ---- seeded generator for padding and filler bits -------------------------------------- */

/* The caller's randomness (a syscall per call in production) seeds a ChaCha20 keystream once;
 * padding lengths, pad bytes and the random header bits come from it. */

void gp_noise_prng_seed(gp_noise_prng *r, gp_sess_rand_fn rnd, void *ud) {
    rnd(ud, r->key, sizeof r->key);
    r->ctr = 0;
    r->pos = sizeof r->buf;
}

void gp_noise_prng_bytes(gp_noise_prng *r, uint8_t *p, size_t n) {
    while (n) {
        if (r->pos == sizeof r->buf) {
            uint8_t nonce[8];
            for (int i = 0; i < 8; i++)
                nonce[i] = (uint8_t)(r->ctr >> (8 * i));
            r->ctr++;
            crypto_stream_chacha20(r->buf, sizeof r->buf, nonce, r->key);
            r->pos = 0;
        }
        size_t take = n < sizeof r->buf - r->pos ? n : sizeof r->buf - r->pos;
        memcpy(p, r->buf + r->pos, take);
        r->pos += (unsigned)take, p += take, n -= take;
    }
}

uint32_t gp_noise_prng_below(gp_noise_prng *r, uint32_t n) {
    uint8_t b[4];
    gp_noise_prng_bytes(r, b, sizeof b);
    uint32_t v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return (uint32_t)(((uint64_t)v * n) >> 32);
}

/* ---- Noise symmetric state ------------------------------------------------------------- */

static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

void gp_noise_mix_hash(gp_noise_sym *s, const uint8_t *d, size_t n) {
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, s->h, 32);
    crypto_hash_sha256_update(&st, d, n);
    crypto_hash_sha256_final(&st, s->h);
}

/* h = ck = HASH(protocol name), then the responder's static key as pre-message (NK). */
void gp_noise_init(gp_noise_sym *s, const uint8_t spub[32]) {
    static const char name[] = "GhostPort_rudp1_NKpsk1_25519_ChaChaPoly_SHA256";
    crypto_hash_sha256(s->h, (const uint8_t *)name, sizeof name - 1);
    memcpy(s->ck, s->h, 32);
    memset(s->k, 0, 32);
    gp_noise_mix_hash(s, spub, 32);
}

void gp_noise_mix_key(gp_noise_sym *s, const uint8_t *ikm, size_t n) {
    gp_noise_hkdf(s->ck, ikm, n, s->ck, s->k, NULL);
}

void gp_noise_mix_key_and_hash(gp_noise_sym *s, const uint8_t psk[32]) {
    uint8_t t[32];
    gp_noise_hkdf(s->ck, psk, 32, s->ck, t, s->k);
    gp_noise_mix_hash(s, t, 32);
    sodium_memzero(t, sizeof t);
}

/* Each key k is used for exactly one encryption (every mix_key makes a new one): nonce 0. */
void gp_noise_enc_hash(gp_noise_sym *s, const uint8_t *p, size_t n, uint8_t *c) {
    crypto_aead_chacha20poly1305_ietf_encrypt(c, NULL, p, n, s->h, 32, NULL, zero_nonce, s->k);
    gp_noise_mix_hash(s, c, n + GP_NOISE_TAG);
}

int gp_noise_dec_hash(gp_noise_sym *s, const uint8_t *c, size_t clen, uint8_t *p) {
    if (crypto_aead_chacha20poly1305_ietf_decrypt(p, NULL, NULL, c, clen, s->h, 32, zero_nonce,
                                                  s->k) != 0)
        return -1;
    gp_noise_mix_hash(s, c, clen);
    return 0;
}
