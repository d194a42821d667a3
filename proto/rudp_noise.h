/* rudp_noise.h — the cryptographic building blocks of the rudp:// session layer: HMAC-SHA-256
 * and Noise's HKDF, labelled PRF and public-key-derived keys, keyed BLAKE2b MACs, the header
 * mask keystream, X25519 key canonicalization, the Noise symmetric state (h, ck, k) and the
 * seeded generator for padding and filler bits. All from libsodium.
 *
 * Separate from rudp_sess.c, which uses them to build and open datagrams and run the
 * handshake, because they are the part with no datagram layout, no session and no policy:
 * small functions of keys and bytes, each wiping what it held. Keeping them apart leaves
 * rudp_sess.c to the protocol (what goes where, and when) and under 1,500 lines. The wire
 * format and the handshake they implement are in proto/RUDP.md. */
#ifndef GP_RUDP_NOISE_H
#define GP_RUDP_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "rudp_sess.h" /* gp_sess_rand_fn */

#define GP_NOISE_TAG 16    /* Poly1305 tag */
#define GP_NOISE_MAC 16    /* keyed BLAKE2b-128 */
#define GP_NOISE_SAMPLE 16 /* the last 16 bytes of every datagram seed its header mask */

/* HMAC-SHA-256(key, a || b) (b may be empty). */
void gp_noise_hmac2(uint8_t out[32], const uint8_t key[32], const uint8_t *a, size_t alen,
                    const uint8_t *b, size_t blen);

/* Noise's HKDF (Noise spec 4.3) with HMAC-SHA-256: two or three outputs (o3 may be NULL).
 * Outputs may alias ck. */
void gp_noise_hkdf(const uint8_t ck[32], const uint8_t *ikm, size_t n, uint8_t *o1, uint8_t *o2,
                   uint8_t *o3);

/* A labelled PRF output of a 32-byte key (HKDF-Expand, one block). out may alias key. */
void gp_noise_prf(uint8_t out[32], const uint8_t key[32], const char *label);

/* BLAKE2b-256("gp/rudp/v1 " label || spub [|| extra]): keys anyone holding the bridges' public
 * key can compute. extra: an ephemeral key for the house-bound handshake keys, else NULL. */
void gp_noise_pub_key(uint8_t out[32], const char *label, const uint8_t spub[32],
                      const uint8_t *extra);

/* Keyed BLAKE2b-128 of a || b (mac1, mac2, cookies, table keys). key: 16..64 bytes. */
void gp_noise_mac16(uint8_t out[GP_NOISE_MAC], const uint8_t *key, size_t keylen, const uint8_t *a,
                    size_t alen, const uint8_t *b, size_t blen);

/* Unkeyed BLAKE2b-128. */
void gp_noise_hash16(uint8_t out[16], const uint8_t *p, size_t n);

/* out[0..n) = XChaCha20 keystream under key, nonce = sample || 0: a datagram's header mask. */
void gp_noise_mask(const uint8_t key[32], const uint8_t sample[GP_NOISE_SAMPLE], uint8_t *out,
                   size_t n);

/* An X25519 public key from the wire with its (random) top bit cleared. */
void gp_noise_canon(uint8_t out[32], const uint8_t wire[32]);

/* The seeded generator: the caller's randomness seeds a ChaCha20 keystream once. */
typedef struct gp_noise_prng {
    uint8_t key[32];
    uint64_t ctr;
    uint8_t buf[64];
    unsigned pos;
} gp_noise_prng;

void gp_noise_prng_seed(gp_noise_prng *r, gp_sess_rand_fn rnd, void *ud);
void gp_noise_prng_bytes(gp_noise_prng *r, uint8_t *p, size_t n);
uint32_t gp_noise_prng_below(gp_noise_prng *r, uint32_t n); /* uniform-ish in [0, n) */

/* The Noise symmetric state. */
typedef struct gp_noise_sym {
    uint8_t h[32], ck[32], k[32];
} gp_noise_sym;

/* h = ck = HASH(protocol name), then the responder's static key as pre-message (NK). */
void gp_noise_init(gp_noise_sym *s, const uint8_t spub[32]);
void gp_noise_mix_hash(gp_noise_sym *s, const uint8_t *d, size_t n);
void gp_noise_mix_key(gp_noise_sym *s, const uint8_t *ikm, size_t n);
void gp_noise_mix_key_and_hash(gp_noise_sym *s, const uint8_t psk[32]);
/* EncryptAndHash: c[0..n + GP_NOISE_TAG) = AEAD(k, nonce 0, ad h, p[0..n)). */
void gp_noise_enc_hash(gp_noise_sym *s, const uint8_t *p, size_t n, uint8_t *c);
/* DecryptAndHash: 0, or -1 if c does not authenticate (s unchanged). */
int gp_noise_dec_hash(gp_noise_sym *s, const uint8_t *c, size_t clen, uint8_t *p);

#endif
