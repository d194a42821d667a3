/* auth.c — house/bridge challenge–response proofs, decoy secrets, secrets at rest and the
 * failed-auth rate limiter (pure: randomness for seal nonces comes from libsodium, the time
 * from the caller; nothing here touches a socket or Redis).
 *
 * Every MAC input is length-prefixed or fixed-size after a role label, so two different
 * transcripts can never hash the same bytes; every temporary that held key material is
 * wiped before return. */
#include "auth.h"
#include "frame.h" /* GP_PROOF_LEN, GP_NONCE_LEN */

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SEALED_PREFIX "enc1:"
#define SEALED_PREFIX_LEN (sizeof SEALED_PREFIX - 1)
#define SEALED_BIN_LEN (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + GP_SECRET_LEN)
#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

_Static_assert(SEALED_PREFIX_LEN + sodium_base64_ENCODED_LEN(SEALED_BIN_LEN, B64_VARIANT) <=
                   GP_SEALED_MAX,
               "GP_SEALED_MAX too small for a sealed secret");
_Static_assert(GP_PROOF_LEN == crypto_auth_hmacsha256_BYTES, "proof is one HMAC-SHA-256");

int gp_auth_init(void) {
    return sodium_init() < 0 ? GP_ERR_NOMEM : 0;
}

int gp_house_id_valid(gp_str id) {
    return gp_name_ok(id, GP_MAX_HOUSE_ID);
}

/* The id's length prefix is 16 bits; ids are at most GP_MAX_HOUSE_ID, so it cannot wrap for
 * any id the frame decoder lets through. */
static void id_prefix(gp_str id, uint8_t out[2]) {
    out[0] = (uint8_t)(id.len >> 8);
    out[1] = (uint8_t)id.len;
}

void gp_auth_proof(enum gp_auth_role role, const uint8_t secret[GP_SECRET_LEN], gp_str house_id,
                   const uint8_t house_nonce[32], const uint8_t bridge_nonce[32], uint8_t out[32]) {
    /* Distinct labels per role: a house can never be tricked into reflecting the bridge's
     * proof as its own, and vice versa. */
    static const char house_label[] = "gp/v1/house", bridge_label[] = "gp/v1/bridge";
    const char *label = role == GP_ROLE_BRIDGE ? bridge_label : house_label;
    uint8_t idlen[2];
    id_prefix(house_id, idlen);

    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, secret, GP_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    crypto_auth_hmacsha256_update(&st, idlen, sizeof idlen);
    crypto_auth_hmacsha256_update(&st, house_id.p, house_id.len);
    crypto_auth_hmacsha256_update(&st, house_nonce, 32);
    crypto_auth_hmacsha256_update(&st, bridge_nonce, 32);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int gp_auth_verify(enum gp_auth_role role, const uint8_t secret[GP_SECRET_LEN], gp_str house_id,
                   const uint8_t house_nonce[32], const uint8_t bridge_nonce[32],
                   const uint8_t proof[32]) {
    uint8_t want[GP_PROOF_LEN];
    gp_auth_proof(role, secret, house_id, house_nonce, bridge_nonce, want);
    int ok = sodium_memcmp(want, proof, GP_PROOF_LEN) == 0;
    sodium_memzero(want, sizeof want);
    return ok ? 0 : GP_ERR_AUTH;
}

/* Keyed hash under a label of its own, so a decoy can never equal any other value derived
 * from the server key. */
void gp_auth_decoy_secret(const uint8_t server_key[32], gp_str house_id,
                          uint8_t out[GP_SECRET_LEN]) {
    static const char label[] = "gp/v1/decoy";
    crypto_generichash_state st;
    crypto_generichash_init(&st, server_key, 32, GP_SECRET_LEN);
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof label - 1);
    crypto_generichash_update(&st, house_id.p, house_id.len);
    crypto_generichash_final(&st, out, GP_SECRET_LEN);
    sodium_memzero(&st, sizeof st);
}

/* Exactly 2 * GP_SECRET_LEN hex digits, nothing before or after. */
static int from_hex(const char *hex, size_t len, uint8_t out[GP_SECRET_LEN]) {
    uint8_t tmp[GP_SECRET_LEN];
    size_t n = 0;
    const char *hex_end = NULL;
    int rc = GP_ERR_INVALID;
    if (len == GP_SECRET_HEX_LEN &&
        sodium_hex2bin(tmp, sizeof tmp, hex, len, NULL, &n, &hex_end) == 0 && n == GP_SECRET_LEN &&
        hex_end == hex + len) {
        memcpy(out, tmp, GP_SECRET_LEN);
        rc = 0;
    }
    sodium_memzero(tmp, sizeof tmp);
    return rc;
}

int gp_secret_from_hex(const char *hex, uint8_t out[GP_SECRET_LEN]) {
    return hex ? from_hex(hex, strnlen(hex, GP_SECRET_HEX_LEN + 1), out) : GP_ERR_INVALID;
}

void gp_secret_to_hex(const uint8_t secret[GP_SECRET_LEN], char out[GP_SECRET_HEX_LEN + 1]) {
    sodium_bin2hex(out, GP_SECRET_HEX_LEN + 1, secret, GP_SECRET_LEN);
}

/* The box key is derived from the master key and the house id: a sealed value copied onto
 * another house's record fails to open instead of authenticating that house. */
static void box_key(const uint8_t *master_key, gp_str house_id,
                    uint8_t key[crypto_secretbox_KEYBYTES]) {
    static const char label[] = "gp/v1/secret-at-rest";
    uint8_t idlen[2];
    id_prefix(house_id, idlen);
    crypto_generichash_state st;
    crypto_generichash_init(&st, master_key, 32, crypto_secretbox_KEYBYTES);
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof label - 1);
    crypto_generichash_update(&st, idlen, sizeof idlen);
    crypto_generichash_update(&st, house_id.p, house_id.len);
    crypto_generichash_final(&st, key, crypto_secretbox_KEYBYTES);
    sodium_memzero(&st, sizeof st);
}

int gp_secret_seal(const uint8_t *master_key, gp_str house_id, const uint8_t secret[GP_SECRET_LEN],
                   char out[GP_SEALED_MAX]) {
    if (house_id.len > UINT16_MAX)
        return GP_ERR_INVALID;
    if (!master_key) {
        gp_secret_to_hex(secret, out);
        return 0;
    }
    uint8_t key[crypto_secretbox_KEYBYTES], bin[SEALED_BIN_LEN];
    box_key(master_key, house_id, key);
    randombytes_buf(bin, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(bin + crypto_secretbox_NONCEBYTES, secret, GP_SECRET_LEN, bin, key);
    memcpy(out, SEALED_PREFIX, SEALED_PREFIX_LEN);
    sodium_bin2base64(out + SEALED_PREFIX_LEN, GP_SEALED_MAX - SEALED_PREFIX_LEN, bin, sizeof bin,
                      B64_VARIANT);
    sodium_memzero(key, sizeof key);
    return 0;
}

int gp_secret_open(const uint8_t *master_key, gp_str house_id, gp_str stored,
                   uint8_t out[GP_SECRET_LEN]) {
    const char *s = (const char *)stored.p;
    if (stored.len < SEALED_PREFIX_LEN || memcmp(s, SEALED_PREFIX, SEALED_PREFIX_LEN) != 0)
        return from_hex(s, stored.len, out);
    if (house_id.len > UINT16_MAX)
        return GP_ERR_INVALID;

    uint8_t bin[SEALED_BIN_LEN], key[crypto_secretbox_KEYBYTES], tmp[GP_SECRET_LEN];
    size_t n = 0;
    const char *b64_end = NULL;
    if (sodium_base642bin(bin, sizeof bin, s + SEALED_PREFIX_LEN, stored.len - SEALED_PREFIX_LEN,
                          NULL, &n, &b64_end, B64_VARIANT) != 0 ||
        n != sizeof bin || b64_end != s + stored.len)
        return GP_ERR_INVALID;
    if (!master_key)
        return GP_ERR_AUTH;
    box_key(master_key, house_id, key);
    int rc = crypto_secretbox_open_easy(tmp, bin + crypto_secretbox_NONCEBYTES,
                                        sizeof bin - crypto_secretbox_NONCEBYTES, bin, key) == 0
                 ? 0
                 : GP_ERR_AUTH;
    if (rc == 0)
        memcpy(out, tmp, GP_SECRET_LEN);
    sodium_memzero(key, sizeof key);
    sodium_memzero(tmp, sizeof tmp);
    return rc;
}

/* ---- failed-auth rate limiting ------------------------------------------------------ */

/* Set-associative table: a key's hash picks a set of RL_WAYS slots; a new key evicts the
 * least recently used slot of its set. Lookups cost O(RL_WAYS) whatever the table size, and
 * the table never grows. Keys are stored as a SipHash under a per-table random key, so an
 * attacker cannot aim many addresses at one set. Tokens are kept in units of 1/60000 token
 * so that refilling per_min tokens a minute is exact integer arithmetic per millisecond. */
#define RL_WAYS 8
#define RL_UNIT 60000u /* units per token: ms per minute */

typedef struct rl_slot {
    uint64_t hash;
    uint64_t touched_ms; /* last refill/use: both the bucket clock and the LRU age */
    uint64_t units;      /* tokens * RL_UNIT */
    int used;
} rl_slot;

struct gp_ratelimit {
    uint64_t cap_units; /* burst * RL_UNIT */
    unsigned per_min;
    size_t nsets, ways;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    rl_slot slots[];
};

gp_ratelimit *gp_ratelimit_new(unsigned burst, unsigned per_min, size_t slots) {
    size_t ways = slots < RL_WAYS ? (slots ? slots : 1) : RL_WAYS;
    size_t nsets = slots / ways ? slots / ways : 1;
    if (nsets > (SIZE_MAX - sizeof(gp_ratelimit)) / sizeof(rl_slot) / ways)
        return NULL;
    gp_ratelimit *rl = calloc(1, sizeof *rl + nsets * ways * sizeof(rl_slot));
    if (!rl)
        return NULL;
    rl->cap_units = (uint64_t)burst * RL_UNIT;
    rl->per_min = per_min;
    rl->nsets = nsets;
    rl->ways = ways;
    randombytes_buf(rl->hkey, sizeof rl->hkey);
    return rl;
}

void gp_ratelimit_free(gp_ratelimit *rl) {
    free(rl);
}

static void refill(const gp_ratelimit *rl, rl_slot *s, uint64_t now_ms) {
    if (now_ms <= s->touched_ms) /* a clock that steps back refills nothing */
        return;
    uint64_t elapsed = now_ms - s->touched_ms, missing = rl->cap_units - s->units;
    s->touched_ms = now_ms;
    if (rl->per_min == 0)
        return;
    /* Clamp before multiplying so that no product can overflow: `full` ms refill it all. */
    uint64_t full = (missing + rl->per_min - 1) / rl->per_min;
    uint64_t add = (elapsed < full ? elapsed : full) * rl->per_min;
    s->units = add >= missing ? rl->cap_units : s->units + add;
}

/* The key's slot, or NULL; with `victim`, also the set's slot to reuse for a new key. */
static rl_slot *lookup(gp_ratelimit *rl, gp_str key, uint64_t *hash, rl_slot **victim) {
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key.p, key.len, rl->hkey);
    uint64_t x = 0;
    for (size_t i = 0; i < sizeof h; i++)
        x = x << 8 | h[i];
    *hash = x;
    rl_slot *set = rl->slots + (x % rl->nsets) * rl->ways, *lru = set;
    for (size_t i = 0; i < rl->ways; i++) {
        if (set[i].used && set[i].hash == x)
            return &set[i];
        if (!set[i].used || (lru->used && set[i].touched_ms < lru->touched_ms))
            lru = &set[i];
    }
    if (victim)
        *victim = lru;
    return NULL;
}

int gp_ratelimit_allow(gp_ratelimit *rl, gp_str key, uint64_t now_ms) {
    uint64_t hash;
    rl_slot *s = lookup(rl, key, &hash, NULL);
    if (!s) /* never failed (or forgotten): a full bucket */
        return rl->cap_units >= RL_UNIT;
    refill(rl, s, now_ms);
    return s->units >= RL_UNIT;
}

void gp_ratelimit_fail(gp_ratelimit *rl, gp_str key, uint64_t now_ms) {
    uint64_t hash;
    rl_slot *victim = NULL, *s = lookup(rl, key, &hash, &victim);
    if (!s) {
        s = victim;
        *s = (rl_slot){.hash = hash, .touched_ms = now_ms, .units = rl->cap_units, .used = 1};
    }
    refill(rl, s, now_ms);
    s->units = s->units >= RL_UNIT ? s->units - RL_UNIT : 0;
}

int gp_ratelimit_take(gp_ratelimit *rl, gp_str key, uint64_t now_ms) {
    uint64_t hash;
    rl_slot *victim = NULL, *s = lookup(rl, key, &hash, &victim);
    if (!s) {
        if (rl->cap_units < RL_UNIT)
            return 0;
        s = victim;
        *s = (rl_slot){.hash = hash, .touched_ms = now_ms, .units = rl->cap_units, .used = 1};
    }
    refill(rl, s, now_ms);
    if (s->units < RL_UNIT)
        return 0;
    s->units -= RL_UNIT;
    return 1;
}

void gp_ratelimit_refund(gp_ratelimit *rl, gp_str key, uint64_t now_ms) {
    uint64_t hash;
    rl_slot *s = lookup(rl, key, &hash, NULL);
    if (!s)
        return;
    refill(rl, s, now_ms);
    s->units = rl->cap_units - s->units > RL_UNIT ? s->units + RL_UNIT : rl->cap_units;
}

/* ---- failed-auth budgets per (address, house id) and per address ------------------------ */

struct gp_authlimit {
    gp_ratelimit *pair, *addr;
};

gp_authlimit *gp_authlimit_new(const gp_authlimit_conf *conf) {
    gp_authlimit *al = calloc(1, sizeof *al);
    if (!al)
        return NULL;
    al->pair = gp_ratelimit_new(conf->house_burst, conf->house_per_min, conf->slots);
    al->addr = gp_ratelimit_new(conf->addr_burst, conf->addr_per_min, conf->slots);
    if (!al->pair || !al->addr) {
        gp_authlimit_free(al);
        return NULL;
    }
    return al;
}

void gp_authlimit_free(gp_authlimit *al) {
    if (!al)
        return;
    gp_ratelimit_free(al->pair);
    gp_ratelimit_free(al->addr);
    free(al);
}

/* The pair's key: the address, a NUL (which neither an address nor an id contains, so no two
 * pairs share a key), the id as sent. Ids longer than any valid one are cut: they are all
 * refused anyway, and share one budget per prefix. */
#define PAIR_KEY_MAX (96 + 1 + GP_MAX_HOUSE_ID + 8)
static gp_str pair_key(gp_str addr, gp_str house, uint8_t buf[PAIR_KEY_MAX]) {
    size_t a = addr.len < 96 ? addr.len : 96;
    size_t h = house.len < PAIR_KEY_MAX - 1 - a ? house.len : PAIR_KEY_MAX - 1 - a;
    memcpy(buf, addr.p, a);
    buf[a] = 0;
    if (h)
        memcpy(buf + a + 1, house.p, h);
    return (gp_str){buf, a + 1 + h};
}

int gp_authlimit_allow(gp_authlimit *al, gp_str addr, gp_str house, uint64_t now_ms) {
    uint8_t kb[PAIR_KEY_MAX];
    return gp_ratelimit_allow(al->addr, addr, now_ms) &&
           gp_ratelimit_allow(al->pair, pair_key(addr, house, kb), now_ms);
}

int gp_authlimit_allow_addr(gp_authlimit *al, gp_str addr, uint64_t now_ms) {
    return gp_ratelimit_allow(al->addr, addr, now_ms);
}

int gp_authlimit_take(gp_authlimit *al, gp_str addr, gp_str house, uint64_t now_ms) {
    uint8_t kb[PAIR_KEY_MAX];
    gp_str pk = pair_key(addr, house, kb);
    if (!gp_ratelimit_allow(al->addr, addr, now_ms) || !gp_ratelimit_take(al->pair, pk, now_ms))
        return 0;
    return gp_ratelimit_take(al->addr, addr, now_ms); /* allowed just above: cannot fail */
}

void gp_authlimit_refund(gp_authlimit *al, gp_str addr, gp_str house, uint64_t now_ms) {
    uint8_t kb[PAIR_KEY_MAX];
    gp_ratelimit_refund(al->pair, pair_key(addr, house, kb), now_ms);
    gp_ratelimit_refund(al->addr, addr, now_ms);
}
