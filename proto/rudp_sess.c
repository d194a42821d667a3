/* rudp_sess.c — rudp:// session layer: handshake (Noise-like NKpsk1 over X25519, SHA-256 HKDF,
 * ChaCha20-Poly1305), datagram protection with a replay window and a key ratchet, header masks,
 * cookies, the amplification budget and padding. Pure: the caller passes time and randomness,
 * nothing here touches a socket, a clock or a log. The wire format is specified (with the
 * reasons) in proto/RUDP.md; the comments here say why the code does what it does.
 *
 * Invariants kept throughout:
 *  - every datagram is parsed from explicit lengths checked against fixed minimums before any
 *    byte is read; nothing is ever cast onto wire bytes;
 *  - a datagram that fails any check leaves the session exactly as it was (work is done on
 *    copies and committed only after authentication), and bumps one counter;
 *  - every buffer that held key material is wiped with sodium_memzero; MACs are compared with
 *    sodium_memcmp;
 *  - the bridge does no X25519 for a datagram that lacks a valid mac1. */
#include "rudp_sess.h"
#include "auth.h" /* gp_house_id_valid, GP_MAX_HOUSE_ID */
#include "list.h"
#include "rudp_noise.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- layout ---------------------------------------------------------------------------- */

/* Datagram kinds, in the two low bits of the first (masked) byte; the six others are random. */
enum { T_DATA = 0, T_INIT = 1, T_RESP = 2, T_COOKIE = 3 };
#define TYPE_BITS 0x03u

#define TAG 16    /* Poly1305 tag */
#define MAC 16    /* keyed BLAKE2b-128 */
#define SAMPLE 16 /* the last 16 bytes of every datagram seed its header mask */

/* INIT: type | e (32) | enc(id block) (81) | enc(timestamp) (24) | pad | mac1 | mac2 */
#define ID_BLOCK (1 + GP_MAX_HOUSE_ID)
#define INIT_E 1
#define INIT_ID 33
#define INIT_ID_CT (ID_BLOCK + TAG)
#define INIT_TS (INIT_ID + INIT_ID_CT)
#define INIT_TS_CT (8 + TAG)
#define INIT_MASKED (INIT_TS + INIT_TS_CT)
#define INIT_INNER (INIT_MASKED - 1) /* e .. enc(ts): the handshake proper, hashed */
#define INIT_MIN (INIT_MASKED + 2 * MAC)
#define INIT_PAD_SPAN 256

/* RESP: type | e (32) | enc(cid) (24) | pad | mac */
#define RESP_E 1
#define RESP_CT 33
#define RESP_CT_LEN (8 + TAG)
#define RESP_MASKED (RESP_CT + RESP_CT_LEN)
#define RESP_MIN (RESP_MASKED + MAC)

/* COOKIE: type | nonce (24) | enc(cookie | pad) */
#define COOKIE_LEN 16
#define CK_CT (1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#define COOKIE_MIN (CK_CT + COOKIE_LEN + TAG)
#define COOKIE_PAD_SPAN 64
#define COOKIE_MAX (COOKIE_MIN + COOKIE_PAD_SPAN)
#define COOKIE_USE_NS (110 * NS) /* the house stops using a cookie a little before 120 s */

/* DATA: house->bridge type | cid (8) | epoch:2 echo:2 pn:28 | ct | tag; bridge->house without
 * cid. epoch: the sender's key epoch mod 4; echo: the epoch it last received, mod 4. */
#define C2S_HDR 13
#define S2C_HDR 5
#define PN_BITS 28
#define EPOCH_SHIFT 30
#define ECHO_SHIFT 28
#define PN_MASK ((1u << PN_BITS) - 1)
#define PN_LIMIT (1ull << 62)

#define WORDS (GP_SESS_REPLAY_WINDOW / 64)
#define MAX_BUCKETS 64
#define WAYS 8
#define NS 1000000000ull

_Static_assert(INIT_MIN == 170, "INIT layout");
_Static_assert(RESP_MIN == 73, "RESP layout");
_Static_assert(COOKIE_MIN == 57, "COOKIE layout");
_Static_assert(C2S_HDR + 1 + TAG == GP_SESS_OVERHEAD, "house->bridge overhead");
_Static_assert(S2C_HDR + 1 + TAG == GP_SESS_OVERHEAD_S2C, "bridge->house overhead");
_Static_assert(INIT_MIN <= GP_SESS_MTU_MIN, "an initiation fits the smallest MTU");
_Static_assert(GP_SESS_REPLAY_WINDOW % 64 == 0, "window in whole words");

/* ---- small helpers --------------------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}
static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static void xor_into(uint8_t *dst, const uint8_t *src, const uint8_t *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ mask[i];
}
static size_t min_sz(size_t a, size_t b) {
    return a < b ? a : b;
}
static uint64_t elapsed(uint64_t now, uint64_t then) {
    return now > then ? now - then : 0;
}

/* ---- filler bits (the generator and the other primitives: rudp_noise.c) ---------------- */

static uint8_t filler_type(gp_noise_prng *r, unsigned type) {
    uint8_t b;
    gp_noise_prng_bytes(r, &b, 1);
    return (uint8_t)((b & ~TYPE_BITS) | type);
}

/* ---- replay window and packet numbers -------------------------------------------------- */

typedef struct rxwin {
    uint64_t max; /* highest packet number accepted */
    int any;
    uint64_t bits[WORDS]; /* bit pn % 2048 set: pn seen (for pn in (max - 2048, max]) */
} rxwin;

static int win_seen(const rxwin *w, uint64_t pn) {
    if (!w->any || pn > w->max)
        return 0;
    if (w->max - pn >= GP_SESS_REPLAY_WINDOW)
        return 1; /* too old to tell: treated as seen */
    uint64_t b = pn % GP_SESS_REPLAY_WINDOW;
    return (int)((w->bits[b / 64] >> (b % 64)) & 1);
}

static void win_set(rxwin *w, uint64_t pn) {
    if (!w->any) {
        memset(w->bits, 0, sizeof w->bits);
        w->any = 1;
        w->max = pn;
    } else if (pn > w->max) {
        /* The slots of the numbers skipped over held numbers 2048 older: clear them. */
        if (pn - w->max >= GP_SESS_REPLAY_WINDOW)
            memset(w->bits, 0, sizeof w->bits);
        else
            for (uint64_t q = w->max + 1; q < pn; q++) {
                uint64_t b = q % GP_SESS_REPLAY_WINDOW;
                w->bits[b / 64] &= ~(1ull << (b % 64));
            }
        w->max = pn;
    }
    uint64_t b = pn % GP_SESS_REPLAY_WINDOW;
    w->bits[b / 64] |= 1ull << (b % 64);
}

uint64_t gp_sess_pn_expand(uint64_t largest, int any, uint32_t trunc) {
    const uint64_t win = 1ull << PN_BITS, hwin = win / 2, mask = win - 1;
    uint64_t expected = any ? largest + 1 : 0;
    uint64_t cand = (expected & ~mask) | (trunc & mask);
    if (cand + hwin <= expected && cand < PN_LIMIT - win)
        return cand + win;
    if (cand > expected + hwin && cand >= win)
        return cand - win;
    return cand;
}

/* ---- sessions -------------------------------------------------------------------------- */

enum { ST_HANDSHAKE = 0, ST_EST = 1 };

typedef struct txdir {
    uint8_t key[32], chain[32];
    uint64_t epoch, pn, epoch_pkts, epoch_ns;
} txdir;

typedef struct rxdir {
    uint8_t cur[32], chain[32], prev[32]; /* chain: of the current epoch, to derive the next */
    uint64_t epoch, prev_until_ns;
    int has_prev;
    unsigned peer_echo; /* the epoch the peer last said it receives (mod 4), from its newest */
    rxwin win;
} rxdir;

struct gp_sess {
    int bridge; /* 1: bridge side (seals bridge->house, opens house->bridge) */
    int state;
    int confirmed; /* may seal: house once established; bridge once the house's data arrived */
    gp_sess_conf conf;
    gp_sess_rand_fn rnd;
    void *ud;
    gp_noise_prng rng;
    uint32_t bucket[MAX_BUCKETS];
    size_t nbuckets;

    uint64_t cid;
    char house_id[GP_MAX_HOUSE_ID + 1];
    size_t house_id_len;
    uint64_t ts;

    uint8_t spub[32];
    uint8_t k_mac1[32], k_c2s_hdr[32], k_cookie[32];
    uint8_t k_hs_mask[32], k_hs_mac[32]; /* house-bound handshake datagrams */

    /* house: the initiation, kept for retransmits until established */
    uint8_t e_priv[32];
    uint8_t inner[INIT_INNER];
    uint8_t init_hash[16];
    gp_noise_sym hs;
    uint8_t cookie[COOKIE_LEN];
    int has_cookie;
    uint64_t cookie_ns, created_ns, hello_next_ns, hello_rto_ns;

    /* bridge: the response, kept for retransmits until confirmed */
    gp_sess_server *srv;
    int has_resp;
    uint8_t resp_e[32], resp_ct[RESP_CT_LEN];
    size_t resp_cap; /* size of the initiation being answered: the response is never larger */
    uint64_t unconfirmed_until_ns; /* the caller frees the session if still unconfirmed */

    uint8_t hp_tx[32], hp_rx[32]; /* session header-mask keys per direction */
    txdir tx;
    rxdir rx;
    gp_sess_counters st;
};

static int conf_resolve(const gp_sess_conf *in, gp_sess_conf *out) {
    *out = in ? *in : (gp_sess_conf){0};
    if (!out->mtu)
        out->mtu = GP_SESS_MTU_DEFAULT;
    if (out->mtu < GP_SESS_MTU_MIN || out->mtu > GP_SESS_DGRAM_MAX)
        return GP_ERR_INVALID;
    if (!out->rekey_packets)
        out->rekey_packets = 1ull << 20;
    if (!out->rekey_ns)
        out->rekey_ns = 120 * NS;
    if (!out->old_key_ns)
        out->old_key_ns = 10 * NS;
    if (!out->hello_rto_ns)
        out->hello_rto_ns = 1 * NS;
    if (!out->hello_lifetime_ns)
        out->hello_lifetime_ns = 15 * NS;
    return 0;
}

/* Per-session ladder of datagram sizes: the first between 40 and 103 bytes, each next one 5-15%
 * (at least 16 bytes) larger, the last the MTU. A datagram is padded to the first rung that
 * holds it, or one rung higher one time in four. Seeded per session, so sessions differ;
 * rungs 5-15% apart bound the average padding near 7% of the datagram. */
static void buckets_init(gp_sess *s) {
    size_t n = 0;
    uint32_t b = 40 + gp_noise_prng_below(&s->rng, 64);
    while (b < s->conf.mtu && n < MAX_BUCKETS - 1) {
        s->bucket[n++] = b;
        uint32_t step = b * (5 + gp_noise_prng_below(&s->rng, 11)) / 100;
        b += step < 16 ? 16 : step;
    }
    s->bucket[n++] = (uint32_t)s->conf.mtu;
    s->nbuckets = n;
}

static size_t pad_target(gp_sess *s, size_t need) {
    if (s->conf.no_padding)
        return need;
    size_t i = 0;
    while (i + 1 < s->nbuckets && s->bucket[i] < need)
        i++;
    if (i + 1 < s->nbuckets && gp_noise_prng_below(&s->rng, 4) == 0)
        i++;
    return s->bucket[i] > need ? s->bucket[i] : need;
}

static gp_sess *sess_alloc(const gp_sess_conf *conf, gp_sess_rand_fn rnd, void *ud) {
    gp_sess_conf c;
    if (!rnd || conf_resolve(conf, &c) != 0 || sodium_init() < 0)
        return NULL;
    gp_sess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->conf = c;
    s->rnd = rnd;
    s->ud = ud;
    gp_noise_prng_seed(&s->rng, rnd, ud);
    buckets_init(s);
    return s;
}

/* Traffic keys from the final chaining key: a chain per direction (key epoch e uses
 * PRF(chain_e, "key"); chain_e+1 = PRF(chain_e, "next"), so an old key cannot be recomputed
 * from a newer state) and a fixed header-mask key per direction. */
static void derive_traffic(gp_sess *s, const gp_noise_sym *t, uint64_t now_ns) {
    uint8_t c2s[32], s2c[32], hp_c2s[32], hp_s2c[32];
    gp_noise_prf(c2s, t->ck, "c2s chain");
    gp_noise_prf(s2c, t->ck, "s2c chain");
    gp_noise_prf(hp_c2s, t->ck, "c2s hp");
    gp_noise_prf(hp_s2c, t->ck, "s2c hp");
    memcpy(s->tx.chain, s->bridge ? s2c : c2s, 32);
    memcpy(s->rx.chain, s->bridge ? c2s : s2c, 32);
    memcpy(s->hp_tx, s->bridge ? hp_s2c : hp_c2s, 32);
    memcpy(s->hp_rx, s->bridge ? hp_c2s : hp_s2c, 32);
    gp_noise_prf(s->tx.key, s->tx.chain, "key");
    gp_noise_prf(s->rx.cur, s->rx.chain, "key");
    s->tx.epoch_ns = now_ns;
    s->state = ST_EST;
    sodium_memzero(c2s, 32);
    sodium_memzero(s2c, 32);
    sodium_memzero(hp_c2s, 32);
    sodium_memzero(hp_s2c, 32);
}

/* ---- data datagrams -------------------------------------------------------------------- */

/* A new send epoch after rekey_packets datagrams or rekey_ns, but only once the peer has said
 * (the echo in its datagrams) that it receives the current one — QUIC's rule for key updates.
 * So the receiver is never more than one epoch behind, and two bits of epoch on the wire always
 * suffice, however many datagrams are lost: keys then simply live longer. */
static void tx_maybe_rekey(gp_sess *s, uint64_t now_ns) {
    txdir *t = &s->tx;
    if (t->epoch_pkts < s->conf.rekey_packets && elapsed(now_ns, t->epoch_ns) < s->conf.rekey_ns)
        return;
    if ((t->epoch & 3) != s->rx.peer_echo)
        return;
    gp_noise_prf(t->chain, t->chain, "next");
    gp_noise_prf(t->key, t->chain, "key");
    t->epoch++;
    t->epoch_pkts = 0;
    t->epoch_ns = now_ns;
    s->st.rekey_tx++;
}

ssize_t gp_sess_seal(gp_sess *s, const uint8_t *payload, size_t len, uint8_t *out, size_t cap,
                     uint64_t now_ns) {
    if (!s || !out || (len && !payload))
        return GP_ERR_INVALID;
    if (s->state != ST_EST || !s->confirmed || s->tx.pn >= PN_LIMIT)
        return GP_ERR_STATE;
    size_t hdr = s->bridge ? S2C_HDR : C2S_HDR;
    if (len > gp_sess_payload_limit(s))
        return GP_ERR_TOO_LARGE;
    size_t need = hdr + len + 1 + TAG;
    if (cap < need)
        return GP_ERR_BUFFER;
    size_t total = min_sz(pad_target(s, need), cap);
    tx_maybe_rekey(s, now_ns);

    /* Plaintext: payload | 0x01 | zeros (TLS 1.3 style: the padding is encrypted too). */
    if (len)
        memmove(out + hdr, payload, len);
    out[hdr + len] = 1;
    memset(out + hdr + len + 1, 0, total - need);

    out[0] = filler_type(&s->rng, T_DATA);
    if (!s->bridge)
        put_be64(out + 1, s->cid);
    put_be32(out + hdr - 4, (uint32_t)((s->tx.epoch & 3) << EPOCH_SHIFT |
                                       (s->rx.epoch & 3) << ECHO_SHIFT | (s->tx.pn & PN_MASK)));
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(s->tx.pn >> (8 * i));
    uint8_t *tag = out + total - TAG;
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out + hdr, tag, NULL, out + hdr, total - hdr - TAG, out, hdr, NULL, nonce, s->tx.key);
    /* Masks go on after sealing (the AEAD authenticates the clear header). Towards the bridge,
     * type and cid under the key every house shares with the bridge (it must find the session
     * first), the packet number under the session's key. */
    uint8_t m[C2S_HDR];
    if (!s->bridge) {
        gp_noise_mask(s->k_c2s_hdr, tag, m, 9);
        gp_noise_mask(s->hp_tx, tag, m + 9, 4);
    } else {
        gp_noise_mask(s->hp_tx, tag, m, S2C_HDR);
    }
    xor_into(out, out, m, hdr);

    s->tx.pn++;
    s->tx.epoch_pkts++;
    s->st.tx_datagrams++;
    s->st.tx_bytes += total;
    s->st.tx_payload += len;
    s->st.tx_padding += total - need;
    return (ssize_t)total;
}

enum { R_SHORT = -100, R_TYPE, R_FOREIGN, R_AUTH, R_REPLAY, R_OLD_KEY, R_BUFFER };

/* Opens a data datagram. Returns the payload length or an R_* reason; the session changes only
 * after the AEAD verified. */
static ssize_t open_data(gp_sess *s, const uint8_t *dg, size_t len, uint8_t *out, size_t cap,
                         uint64_t now_ns, unsigned *flags) {
    size_t hdr = s->bridge ? C2S_HDR : S2C_HDR;
    if (len < hdr + 1 + TAG)
        return R_SHORT;
    const uint8_t *tag = dg + len - TAG;
    uint8_t h[C2S_HDR], m[C2S_HDR];
    if (s->bridge) {
        gp_noise_mask(s->k_c2s_hdr, tag, m, 9);
        gp_noise_mask(s->hp_rx, tag, m + 9, 4);
    } else {
        gp_noise_mask(s->hp_rx, tag, m, S2C_HDR);
    }
    xor_into(h, dg, m, hdr);
    if ((h[0] & TYPE_BITS) != T_DATA)
        return R_TYPE;
    if (s->bridge && get_be64(h + 1) != s->cid)
        return R_FOREIGN;
    uint32_t pnk = get_be32(h + hdr - 4);
    uint64_t pn = gp_sess_pn_expand(s->rx.win.max, s->rx.win.any, pnk & PN_MASK);
    unsigned d = (unsigned)(((pnk >> EPOCH_SHIFT) - s->rx.epoch) & 3);
    size_t ctlen = len - hdr - TAG;
    if (cap < ctlen)
        return R_BUFFER;

    /* Key by epoch distance: 0 current, 1 next (derived on a copy, adopted only if the datagram
     * authenticates), 3 previous (while kept), 2 two back (gone). The sender is never more
     * than one epoch ahead (tx_maybe_rekey). */
    uint8_t chain[32], key[32];
    const uint8_t *k = s->rx.cur;
    if (d == 3 || d == 2) {
        if (s->rx.epoch < 4 - d)
            return R_AUTH; /* before the first epoch: not from the peer */
        if (d == 2 || now_ns >= s->rx.prev_until_ns)
            return R_OLD_KEY; /* a straggler, or garbage: it cannot be told any more */
        k = s->rx.prev;
    } else if (d == 1) {
        gp_noise_prf(chain, s->rx.chain, "next");
        gp_noise_prf(key, chain, "key");
        k = key;
    }
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(pn >> (8 * i));
    int bad = crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, dg + hdr, ctlen, tag, h,
                                                                 hdr, nonce, k) != 0;
    size_t i = ctlen;
    if (!bad) {
        while (i > 0 && out[i - 1] == 0)
            i--;
        bad = i == 0 || out[i - 1] != 1; /* authentic but malformed: a broken peer */
    }
    /* The window is checked after the AEAD, so only authentic repeats count as replays (a
     * forged datagram must not be able to look like one, nor touch the window). */
    if (!bad && win_seen(&s->rx.win, pn))
        bad = 2;
    if (bad) {
        if (d == 1) {
            sodium_memzero(chain, sizeof chain);
            sodium_memzero(key, sizeof key);
        }
        return bad == 2 ? R_REPLAY : R_AUTH;
    }

    unsigned f = GP_SESS_RX_DATA;
    if (d == 1) {
        /* The previous key stays a while for datagrams reordered across the switch. */
        memcpy(s->rx.prev, s->rx.cur, 32);
        memcpy(s->rx.cur, key, 32);
        memcpy(s->rx.chain, chain, 32);
        s->rx.has_prev = 1;
        s->rx.prev_until_ns = now_ns + s->conf.old_key_ns;
        s->rx.epoch++;
        s->st.rekey_rx++;
        f |= GP_SESS_RX_REKEY;
        sodium_memzero(chain, sizeof chain);
        sodium_memzero(key, sizeof key);
    }
    if (!s->rx.win.any || pn > s->rx.win.max) {
        f |= GP_SESS_RX_NEWEST;
        s->rx.peer_echo = (pnk >> ECHO_SHIFT) & 3; /* echoes only grow with the sender's pn */
    }
    win_set(&s->rx.win, pn);
    if (s->bridge && !s->confirmed) {
        /* Key confirmation: only the house holding the response's keys can produce this. */
        s->confirmed = 1;
        s->has_resp = 0;
        sodium_memzero(s->resp_e, sizeof s->resp_e);
        sodium_memzero(s->resp_ct, sizeof s->resp_ct);
        f |= GP_SESS_RX_CONFIRMED;
    }
    s->st.rx_datagrams++;
    s->st.rx_bytes += len;
    s->st.rx_payload += i - 1;
    *flags |= f;
    return (ssize_t)(i - 1);
}

/* ---- house side ------------------------------------------------------------------------ */

gp_sess *gp_sess_client_new(const gp_sess_conf *conf, const uint8_t bridge_pub[GP_SESS_KEY_LEN],
                            gp_str house_id, const uint8_t secret[GP_SESS_KEY_LEN],
                            gp_sess_rand_fn rnd, void *ud, uint64_t now_ns, uint64_t wall_ms) {
    if (!bridge_pub || !secret || !gp_house_id_valid(house_id))
        return NULL;
    gp_sess *s = sess_alloc(conf, rnd, ud);
    if (!s)
        return NULL;
    uint8_t e_pub[32], es[32], idblock[ID_BLOCK] = {0}, ts8[8];
    gp_noise_sym *t = &s->hs;

    memcpy(s->spub, bridge_pub, 32);
    gp_noise_pub_key(s->k_mac1, "mac1", s->spub, NULL);
    gp_noise_pub_key(s->k_c2s_hdr, "c2s hdr", s->spub, NULL);
    gp_noise_pub_key(s->k_cookie, "cookie", s->spub, NULL);

    rnd(ud, s->e_priv, 32);
    crypto_scalarmult_base(e_pub, s->e_priv);
    memcpy(s->inner, e_pub, 32);
    s->inner[31] |= (uint8_t)(filler_type(&s->rng, 0) & 0x80);

    /* -> e, es, {id}, psk, {ts}  (psk handshakes also MixKey(e), Noise s9.2) */
    gp_noise_init(t, s->spub);
    gp_noise_mix_hash(t, e_pub, 32);
    gp_noise_mix_key(t, e_pub, 32);
    if (crypto_scalarmult(es, s->e_priv, s->spub) != 0)
        goto fail; /* a low-order "bridge key" */
    gp_noise_mix_key(t, es, 32);
    idblock[0] = (uint8_t)house_id.len;
    memcpy(idblock + 1, house_id.p, house_id.len);
    gp_noise_enc_hash(t, idblock, ID_BLOCK, s->inner + INIT_ID - 1);
    gp_noise_mix_key_and_hash(t, secret);
    put_be64(ts8, wall_ms);
    gp_noise_enc_hash(t, ts8, 8, s->inner + INIT_TS - 1);
    gp_noise_hash16(s->init_hash, s->inner, INIT_INNER);
    gp_noise_pub_key(s->k_hs_mask, "s2c hs mask", s->spub, e_pub);
    gp_noise_pub_key(s->k_hs_mac, "s2c hs mac", s->spub, e_pub);

    memcpy(s->house_id, house_id.p, house_id.len);
    s->house_id_len = house_id.len;
    s->ts = wall_ms;
    s->created_ns = s->hello_next_ns = now_ns;
    s->hello_rto_ns = s->conf.hello_rto_ns;
    s->confirmed = 0;
    sodium_memzero(es, sizeof es);
    return s;
fail:
    sodium_memzero(es, sizeof es);
    gp_sess_free(s);
    return NULL;
}

ssize_t gp_sess_client_hello(gp_sess *s, uint8_t *out, size_t cap, uint64_t now_ns) {
    if (!s || !out)
        return GP_ERR_INVALID;
    if (s->bridge || s->state != ST_HANDSHAKE ||
        elapsed(now_ns, s->created_ns) > s->conf.hello_lifetime_ns)
        return GP_ERR_STATE;
    if (cap < INIT_MIN)
        return GP_ERR_BUFFER;
    size_t total = INIT_MIN;
    if (!s->conf.no_padding)
        total += gp_noise_prng_below(&s->rng, INIT_PAD_SPAN);
    total = min_sz(total, min_sz(s->conf.mtu, cap));

    out[0] = filler_type(&s->rng, T_INIT);
    memcpy(out + 1, s->inner, INIT_INNER);
    gp_noise_prng_bytes(&s->rng, out + INIT_MASKED, total - 2 * MAC - INIT_MASKED);
    uint8_t *mac1 = out + total - 2 * MAC, *mac2 = out + total - MAC;
    gp_noise_mac16(mac1, s->k_mac1, 32, out, total - 2 * MAC, NULL, 0);
    if (s->has_cookie && elapsed(now_ns, s->cookie_ns) < COOKIE_USE_NS)
        gp_noise_mac16(mac2, s->cookie, COOKIE_LEN, out, total - MAC, NULL, 0);
    else
        gp_noise_prng_bytes(&s->rng, mac2,
                            MAC); /* no cookie: random, so the trailer never is constant */
    /* The MACs cover the clear bytes; the mask (seeded by mac2) goes on last. */
    uint8_t m[INIT_MASKED];
    gp_noise_mask(s->k_c2s_hdr, mac2, m, INIT_MASKED);
    xor_into(out, out, m, INIT_MASKED);

    s->hello_next_ns = now_ns + s->hello_rto_ns;
    uint64_t cap_rto = 3 * s->conf.hello_rto_ns;
    s->hello_rto_ns = s->hello_rto_ns * 3 / 2 < cap_rto ? s->hello_rto_ns * 3 / 2 : cap_rto;
    s->st.tx_hellos++;
    return (ssize_t)total;
}

/* Cookie reply for our initiation: keep the cookie; the caller sends hello again at once. */
static ssize_t open_cookie(gp_sess *s, const uint8_t *dg, size_t len, uint8_t type_byte,
                           uint64_t now_ns, unsigned *flags) {
    uint8_t pt[COOKIE_LEN + COOKIE_PAD_SPAN], ad[17];
    if (len > COOKIE_MAX)
        return R_TYPE;
    memcpy(ad, s->init_hash, 16);
    ad[16] = type_byte;
    size_t ctlen = len - CK_CT - TAG;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            pt, NULL, dg + CK_CT, ctlen, dg + len - TAG, ad, sizeof ad, dg + 1, s->k_cookie) != 0)
        return R_AUTH;
    memcpy(s->cookie, pt, COOKIE_LEN);
    sodium_memzero(pt, sizeof pt);
    s->has_cookie = 1;
    s->cookie_ns = now_ns;
    s->hello_next_ns = now_ns;
    *flags |= GP_SESS_RX_COOKIE;
    return 0;
}

/* The bridge's response: <- e, ee, {cid}. Worked on a copy of the handshake state, so a forged
 * response changes nothing. */
static ssize_t open_resp(gp_sess *s, const uint8_t *dg, size_t len, const uint8_t *m,
                         uint64_t now_ns, unsigned *flags) {
    if (len < RESP_MIN)
        return R_SHORT;
    uint8_t u[RESP_MASKED], want[MAC], e_b[32], ee[32], cid8[8];
    xor_into(u, dg, m, RESP_MASKED);
    gp_noise_mac16(want, s->k_hs_mac, 32, u, RESP_MASKED, dg + RESP_MASKED,
                   len - MAC - RESP_MASKED);
    if (sodium_memcmp(want, dg + len - MAC, MAC) != 0)
        return R_AUTH; /* cheap filter before the DH */
    gp_noise_canon(e_b, u + RESP_E);
    gp_noise_sym t = s->hs;
    gp_noise_mix_hash(&t, e_b, 32);
    gp_noise_mix_key(&t, e_b, 32);
    ssize_t rc = R_AUTH;
    if (crypto_scalarmult(ee, s->e_priv, e_b) == 0) {
        gp_noise_mix_key(&t, ee, 32);
        if (gp_noise_dec_hash(&t, u + RESP_CT, RESP_CT_LEN, cid8) == 0 && get_be64(cid8) != 0) {
            s->cid = get_be64(cid8);
            derive_traffic(s, &t, now_ns);
            s->confirmed = 1;
            sodium_memzero(s->e_priv, sizeof s->e_priv);
            sodium_memzero(&s->hs, sizeof s->hs);
            *flags |= GP_SESS_RX_ESTABLISHED;
            rc = 0;
        }
    }
    sodium_memzero(&t, sizeof t);
    sodium_memzero(ee, sizeof ee);
    return rc;
}

/* House side, before keys: a response or a cookie reply, masked under keys bound to our
 * ephemeral. */
static ssize_t open_handshake(gp_sess *s, const uint8_t *dg, size_t len, uint64_t now_ns,
                              unsigned *flags) {
    if (len < COOKIE_MIN)
        return R_SHORT;
    uint8_t m[RESP_MASKED];
    gp_noise_mask(s->k_hs_mask, dg + len - SAMPLE, m, RESP_MASKED);
    switch ((dg[0] ^ m[0]) & TYPE_BITS) {
    case T_COOKIE:
        return open_cookie(s, dg, len, dg[0] ^ m[0], now_ns, flags);
    case T_RESP:
        return open_resp(s, dg, len, m, now_ns, flags);
    default:
        return R_TYPE;
    }
}

/* After establishment: is this a duplicate response or cookie reply of our handshake (counted
 * apart from forgeries)? */
static int is_handshake_dup(gp_sess *s, const uint8_t *dg, size_t len) {
    if (len < COOKIE_MIN)
        return 0;
    uint8_t m[RESP_MASKED], u[RESP_MASKED], want[MAC], pt[COOKIE_LEN + COOKIE_PAD_SPAN];
    gp_noise_mask(s->k_hs_mask, dg + len - SAMPLE, m, RESP_MASKED);
    unsigned type = (dg[0] ^ m[0]) & TYPE_BITS;
    if (type == T_RESP && len >= RESP_MIN) {
        xor_into(u, dg, m, RESP_MASKED);
        gp_noise_mac16(want, s->k_hs_mac, 32, u, RESP_MASKED, dg + RESP_MASKED,
                       len - MAC - RESP_MASKED);
        return sodium_memcmp(want, dg + len - MAC, MAC) == 0;
    }
    if (type != T_COOKIE || len > COOKIE_MAX)
        return 0;
    uint8_t ad[17];
    memcpy(ad, s->init_hash, 16);
    ad[16] = dg[0] ^ m[0];
    int ok = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                 pt, NULL, dg + CK_CT, len - CK_CT - TAG, dg + len - TAG, ad, sizeof ad, dg + 1,
                 s->k_cookie) == 0;
    sodium_memzero(pt, sizeof pt);
    return ok;
}

ssize_t gp_sess_open(gp_sess *s, const uint8_t *dg, size_t len, uint8_t *out, size_t cap,
                     uint64_t now_ns, unsigned *flags) {
    unsigned f = 0;
    if (flags)
        *flags = 0;
    if (!s || !dg || (!out && cap))
        return GP_ERR_INVALID;
    ssize_t r;
    if (len > GP_SESS_DGRAM_MAX)
        r = R_SHORT;
    else if (s->state == ST_HANDSHAKE)
        r = open_handshake(s, dg, len, now_ns, &f);
    else
        r = open_data(s, dg, len, out, cap, now_ns, &f);
    if (flags)
        *flags = f;
    if (r >= 0)
        return r;
    switch (r) {
    case R_SHORT:
        s->st.drop_short++;
        return GP_ERR_TRUNCATED;
    case R_BUFFER:
        return GP_ERR_BUFFER;
    case R_TYPE:
    case R_AUTH:
        if (s->state == ST_EST && !s->bridge && is_handshake_dup(s, dg, len)) {
            s->st.drop_handshake++;
            return GP_ERR_STATE;
        }
        if (r == R_TYPE)
            s->st.drop_type++;
        else
            s->st.drop_auth++;
        return GP_ERR_AUTH;
    case R_FOREIGN:
        s->st.drop_foreign++;
        return GP_ERR_AUTH;
    case R_REPLAY:
        s->st.drop_replay++;
        return GP_ERR_AUTH;
    case R_OLD_KEY:
        s->st.drop_old_key++;
        return GP_ERR_AUTH;
    default:
        s->st.drop_auth++;
        return GP_ERR_AUTH;
    }
}

/* ---- bridge side ----------------------------------------------------------------------- */

/* Set-associative table slot: the replay table (per house) and the amplification budget (per
 * address). Keys are keyed hashes under a per-server random key, so nobody can aim entries at
 * one set; a full set evicts its least recently touched slot. */
typedef struct slot {
    uint8_t key[16];
    uint64_t touched; /* replay: acceptance time (ns); amp: a use counter */
    uint64_t a, b;    /* replay: timestamp, cid; amp: bytes received, bytes sent */
    uint8_t hash[16]; /* replay: hash of the accepted initiation */
    uint8_t used, validated;
} slot;

struct gp_sess_hs {
    gp_sess_server *srv;
    gp_sess_hs *prev, *next;
    char id[GP_MAX_HOUSE_ID + 1];
    size_t id_len;
    gp_noise_sym t;
    uint8_t e[32]; /* the house's ephemeral, canonical */
    uint8_t enc_ts[INIT_TS_CT];
    uint8_t init_hash[16];
    size_t init_len;
};

struct gp_sess_server {
    gp_sess_server_conf conf;
    gp_sess_rand_fn rnd;
    void *ud;
    gp_noise_prng rng;
    uint8_t spriv[32], spub[32];
    uint8_t k_mac1[32], k_c2s_hdr[32], k_cookie[32];
    gp_noise_sym sym0;
    uint8_t cookie_cur[32], cookie_prev[32];
    uint64_t cookie_ns;
    uint8_t tbl_key[32];
    slot *replay, *amp;
    size_t replay_sets, amp_sets;
    uint64_t amp_tick;
    gp_sess **idx; /* cid -> session, open addressing, linear probing */
    size_t idx_cap, idx_n;
    gp_sess_hs *pending;
    size_t npending;
    gp_sess_server_counters st;
};

static slot *tbl_find(slot *t, size_t sets, const uint8_t key[16], int create) {
    slot *base = t + (get_le64(key) % sets) * WAYS, *victim = NULL;
    for (size_t i = 0; i < WAYS; i++) {
        slot *e = base + i;
        if (e->used && memcmp(e->key, key, 16) == 0)
            return e;
        if (!victim || (victim->used && (!e->used || e->touched < victim->touched)))
            victim = e;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof *victim);
    memcpy(victim->key, key, 16);
    victim->used = 1;
    return victim;
}

static void tbl_key(const gp_sess_server *srv, uint8_t kind, const void *p, size_t n,
                    uint8_t out[16]) {
    gp_noise_mac16(out, srv->tbl_key, 32, &kind, 1, p, n);
}

static size_t idx_home(const gp_sess_server *srv, uint64_t cid) {
    return (size_t)((cid * 0x9E3779B97F4A7C15ull) >> 20) & (srv->idx_cap - 1);
}

static gp_sess *idx_get(const gp_sess_server *srv, uint64_t cid) {
    if (!srv->idx_cap || !cid)
        return NULL;
    for (size_t i = idx_home(srv, cid);; i = (i + 1) & (srv->idx_cap - 1)) {
        if (!srv->idx[i])
            return NULL;
        if (srv->idx[i]->cid == cid)
            return srv->idx[i];
    }
}

static void idx_insert(gp_sess_server *srv, gp_sess *s) {
    size_t i = idx_home(srv, s->cid);
    while (srv->idx[i])
        i = (i + 1) & (srv->idx_cap - 1);
    srv->idx[i] = s;
    srv->idx_n++;
}

static int idx_put(gp_sess_server *srv, gp_sess *s) {
    if ((srv->idx_n + 1) * 2 > srv->idx_cap) {
        size_t ncap = srv->idx_cap ? srv->idx_cap * 2 : 64;
        gp_sess **old = srv->idx, **nidx = calloc(ncap, sizeof *nidx);
        if (!nidx)
            return GP_ERR_NOMEM;
        size_t ocap = srv->idx_cap;
        srv->idx = nidx;
        srv->idx_cap = ncap;
        srv->idx_n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i])
                idx_insert(srv, old[i]);
        free(old);
    }
    idx_insert(srv, s);
    return 0;
}

/* Removal by backward shift, so probe chains never need tombstones. */
static void idx_del(gp_sess_server *srv, gp_sess *s) {
    size_t mask = srv->idx_cap - 1, i = idx_home(srv, s->cid);
    while (srv->idx[i] && srv->idx[i] != s)
        i = (i + 1) & mask;
    if (!srv->idx[i])
        return;
    for (size_t j = (i + 1) & mask; srv->idx[j]; j = (j + 1) & mask) {
        size_t k = idx_home(srv, srv->idx[j]->cid);
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        int home_between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!home_between) {
            srv->idx[i] = srv->idx[j];
            i = j;
        }
    }
    srv->idx[i] = NULL;
    srv->idx_n--;
}

gp_sess_server *gp_sess_server_new(const gp_sess_server_conf *conf,
                                   const uint8_t priv[GP_SESS_KEY_LEN], gp_sess_rand_fn rnd,
                                   void *ud, uint64_t now_ns) {
    gp_sess_server_conf c = conf ? *conf : (gp_sess_server_conf){0};
    gp_sess_conf sc;
    if (!priv || !rnd || conf_resolve(&c.sess, &sc) != 0 || sodium_init() < 0)
        return NULL;
    c.sess = sc;
    if (!c.replay_slots)
        c.replay_slots = 16384;
    if (!c.amp_slots)
        c.amp_slots = 4096;
    if (!c.max_pending)
        c.max_pending = 1024;
    if (!c.retransmit_window_ns)
        c.retransmit_window_ns = 20 * NS;
    if (!c.cookie_rotate_ns)
        c.cookie_rotate_ns = 120 * NS;
    gp_sess_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->conf = c;
    srv->rnd = rnd;
    srv->ud = ud;
    memcpy(srv->spriv, priv, 32);
    if (gp_sess_pubkey(priv, srv->spub) != 0)
        goto fail;
    gp_noise_pub_key(srv->k_mac1, "mac1", srv->spub, NULL);
    gp_noise_pub_key(srv->k_c2s_hdr, "c2s hdr", srv->spub, NULL);
    gp_noise_pub_key(srv->k_cookie, "cookie", srv->spub, NULL);
    gp_noise_init(&srv->sym0, srv->spub);
    gp_noise_prng_seed(&srv->rng, rnd, ud);
    rnd(ud, srv->cookie_cur, 32);
    rnd(ud, srv->cookie_prev, 32);
    rnd(ud, srv->tbl_key, 32);
    srv->cookie_ns = now_ns;
    srv->replay_sets = (c.replay_slots + WAYS - 1) / WAYS;
    srv->amp_sets = (c.amp_slots + WAYS - 1) / WAYS;
    srv->replay = calloc(srv->replay_sets * WAYS, sizeof *srv->replay);
    srv->amp = calloc(srv->amp_sets * WAYS, sizeof *srv->amp);
    if (!srv->replay || !srv->amp)
        goto fail;
    return srv;
fail:
    gp_sess_server_free(srv);
    return NULL;
}

void gp_sess_server_free(gp_sess_server *srv) {
    if (!srv)
        return;
    for (size_t i = 0; i < srv->idx_cap; i++)
        if (srv->idx[i])
            srv->idx[i]->srv = NULL;
    for (gp_sess_hs *h = srv->pending; h; h = h->next)
        h->srv = NULL;
    free(srv->idx);
    free(srv->replay);
    free(srv->amp);
    sodium_memzero(srv, sizeof *srv);
    free(srv);
}

static void cookie_rotate(gp_sess_server *srv, uint64_t now_ns) {
    if (elapsed(now_ns, srv->cookie_ns) < srv->conf.cookie_rotate_ns)
        return;
    memcpy(srv->cookie_prev, srv->cookie_cur, 32);
    srv->rnd(srv->ud, srv->cookie_cur, 32);
    srv->cookie_ns = now_ns;
}

static void make_cookie(const uint8_t secret[32], const void *addr, size_t alen,
                        uint8_t out[COOKIE_LEN]) {
    gp_noise_mac16(out, secret, 32, (const uint8_t *)"cookie", 6, addr, addr ? alen : 0);
}

/* Unmasks an initiation's first INIT_MASKED bytes into u and checks its type and mac1. No DH,
 * no state: what the bridge does for any datagram before it trusts anything. */
static int init_check(const gp_sess_server *srv, const uint8_t *dg, size_t len,
                      uint8_t u[INIT_MASKED]) {
    if (len < INIT_MIN || len > GP_SESS_DGRAM_MAX)
        return -1;
    uint8_t m[INIT_MASKED], want[MAC];
    gp_noise_mask(srv->k_c2s_hdr, dg + len - MAC, m, INIT_MASKED);
    xor_into(u, dg, m, INIT_MASKED);
    if ((u[0] & TYPE_BITS) != T_INIT)
        return -1;
    gp_noise_mac16(want, srv->k_mac1, 32, u, INIT_MASKED, dg + INIT_MASKED,
                   len - 2 * MAC - INIT_MASKED);
    return sodium_memcmp(want, dg + len - 2 * MAC, MAC) == 0 ? 0 : -1;
}

static int mac2_ok(const gp_sess_server *srv, const uint8_t *u, const uint8_t *dg, size_t len,
                   const void *addr, size_t alen) {
    const uint8_t *secrets[2] = {srv->cookie_cur, srv->cookie_prev};
    int ok = 0;
    for (int i = 0; i < 2 && !ok; i++) {
        uint8_t cookie[COOKIE_LEN], want[MAC];
        make_cookie(secrets[i], addr, alen, cookie);
        gp_noise_mac16(want, cookie, COOKIE_LEN, u, INIT_MASKED, dg + INIT_MASKED,
                       len - MAC - INIT_MASKED);
        ok = sodium_memcmp(want, dg + len - MAC, MAC) == 0;
        sodium_memzero(cookie, sizeof cookie);
    }
    return ok;
}

int gp_sess_server_classify(gp_sess_server *srv, const uint8_t *dg, size_t len, const void *addr,
                            size_t addrlen, int under_load, uint64_t now_ns, gp_sess **sess) {
    if (sess)
        *sess = NULL;
    if (!srv)
        return GP_SESS_DROP;
    srv->st.rx_datagrams++;
    if (!dg || len < GP_SESS_OVERHEAD || len > GP_SESS_DGRAM_MAX) {
        srv->st.drop_short++;
        return GP_SESS_DROP;
    }
    uint8_t m[9], u[INIT_MASKED];
    gp_noise_mask(srv->k_c2s_hdr, dg + len - SAMPLE, m, sizeof m);
    switch ((dg[0] ^ m[0]) & TYPE_BITS) {
    case T_DATA: {
        uint8_t cid8[8];
        xor_into(cid8, dg + 1, m + 1, 8);
        gp_sess *s = idx_get(srv, get_be64(cid8));
        if (!s) {
            srv->st.drop_unknown_cid++;
            return GP_SESS_DROP;
        }
        if (sess)
            *sess = s;
        return GP_SESS_DATA;
    }
    case T_INIT:
        if (len < INIT_MIN) {
            srv->st.drop_short++;
            return GP_SESS_DROP;
        }
        if (init_check(srv, dg, len, u) != 0) {
            srv->st.drop_mac1++;
            return GP_SESS_DROP;
        }
        cookie_rotate(srv, now_ns);
        gp_sess_server_amp_credit(srv, addr, addrlen, len);
        if (under_load && !mac2_ok(srv, u, dg, len, addr, addrlen)) {
            srv->st.cookie_needed++;
            return GP_SESS_COOKIE;
        }
        return GP_SESS_INIT;
    default:
        srv->st.drop_type++;
        return GP_SESS_DROP;
    }
}

int gp_sess_server_init_proven(gp_sess_server *srv, const uint8_t *dg, size_t len, const void *addr,
                               size_t addrlen, uint64_t now_ns) {
    uint8_t u[INIT_MASKED];
    if (!srv || !dg || init_check(srv, dg, len, u) != 0)
        return 0;
    cookie_rotate(srv, now_ns);
    return mac2_ok(srv, u, dg, len, addr, addrlen);
}

static void hs_unlink(gp_sess_hs *h) {
    if (!h->srv)
        return;
    GP_LIST_REMOVE(h->srv->pending, h, prev, next);
    h->srv->npending--;
    h->srv = NULL;
}

void gp_sess_hs_free(gp_sess_hs *hs) {
    if (!hs)
        return;
    hs_unlink(hs);
    sodium_memzero(hs, sizeof *hs);
    free(hs);
}

gp_str gp_sess_hs_house_id(const gp_sess_hs *hs) {
    return hs ? (gp_str){(const uint8_t *)hs->id, hs->id_len} : (gp_str){(const uint8_t *)"", 0};
}

/* The session that answered an initiation with this hash, if a retransmit of it may still be
 * answered: it exists, the house has not confirmed it (then it has the response), and the
 * initiation was accepted less than the retransmit window ago. */
static gp_sess *retransmit_target(gp_sess_server *srv, const slot *e, const uint8_t hash[16],
                                  uint64_t now_ns, int *same) {
    *same = e && sodium_memcmp(e->hash, hash, 16) == 0;
    if (!*same)
        return NULL;
    gp_sess *old = idx_get(srv, e->b);
    if (!old || old->confirmed || !old->has_resp ||
        elapsed(now_ns, e->touched) > srv->conf.retransmit_window_ns)
        return NULL;
    return old;
}

int gp_sess_server_parse(gp_sess_server *srv, const uint8_t *dg, size_t len, uint64_t now_ns,
                         gp_sess_hs **hs, gp_sess **sess) {
    if (hs)
        *hs = NULL;
    if (sess)
        *sess = NULL;
    if (!srv || !dg || !hs || !sess)
        return GP_ERR_INVALID;
    uint8_t u[INIT_MASKED], e[32], es[32], idblock[ID_BLOCK], hash[16], key[16];
    if (init_check(srv, dg, len, u) != 0) {
        srv->st.drop_mac1++;
        return GP_ERR_AUTH;
    }
    gp_noise_sym t = srv->sym0;
    gp_noise_canon(e, u + INIT_E);
    gp_noise_mix_hash(&t, e, 32);
    gp_noise_mix_key(&t, e, 32);
    srv->st.dh++;
    int rc = GP_ERR_AUTH;
    if (crypto_scalarmult(es, srv->spriv, e) != 0) {
        srv->st.drop_init_auth++;
        goto out;
    }
    gp_noise_mix_key(&t, es, 32);
    if (gp_noise_dec_hash(&t, u + INIT_ID, INIT_ID_CT, idblock) != 0) {
        srv->st.drop_init_auth++;
        goto out;
    }
    size_t idlen = idblock[0];
    int zeros = 1;
    for (size_t i = 1 + (idlen <= GP_MAX_HOUSE_ID ? idlen : 0); i < ID_BLOCK; i++)
        zeros &= idblock[i] == 0;
    if (idlen > GP_MAX_HOUSE_ID || !zeros || !gp_house_id_valid((gp_str){idblock + 1, idlen})) {
        srv->st.drop_init_malformed++;
        rc = GP_ERR_MALFORMED;
        goto out;
    }
    gp_noise_hash16(hash, u + 1, INIT_INNER);
    tbl_key(srv, 'h', idblock + 1, idlen, key);
    int same;
    gp_sess *old = retransmit_target(srv, tbl_find(srv->replay, srv->replay_sets, key, 0), hash,
                                     now_ns, &same);
    if (old) {
        old->resp_cap = len;
        *sess = old;
        rc = GP_SESS_HS_RETRANSMIT;
        goto out;
    }
    if (same) { /* the very initiation accepted before, outside the window: a replay */
        srv->st.drop_replay++;
        goto out;
    }
    if (srv->npending >= srv->conf.max_pending) {
        srv->st.drop_pending++;
        rc = GP_ERR_TOO_LARGE;
        goto out;
    }
    gp_sess_hs *h = calloc(1, sizeof *h);
    if (!h) {
        rc = GP_ERR_NOMEM;
        goto out;
    }
    memcpy(h->id, idblock + 1, idlen);
    h->id_len = idlen;
    h->t = t;
    memcpy(h->e, e, 32);
    memcpy(h->enc_ts, u + INIT_TS, INIT_TS_CT);
    memcpy(h->init_hash, hash, 16);
    h->init_len = len;
    h->srv = srv;
    GP_LIST_PUSH(srv->pending, h, prev, next);
    srv->npending++;
    *hs = h;
    rc = GP_SESS_HS_NEW;
out:
    sodium_memzero(&t, sizeof t);
    sodium_memzero(es, sizeof es);
    sodium_memzero(idblock, sizeof idblock);
    return rc;
}

/* Writes a response of s (fresh padding, MAC and mask; same e and ciphertext) into out. The
 * size is drawn up to the initiation's own size, so a response never outweighs what asked for
 * it; the address's 3x budget is checked as well. */
static ssize_t build_resp(gp_sess_server *srv, gp_sess *s, const void *addr, size_t alen,
                          uint8_t *out, size_t cap) {
    size_t hi = min_sz(min_sz(s->resp_cap, s->conf.mtu), cap);
    size_t total = RESP_MIN;
    if (!s->conf.no_padding && hi > RESP_MIN)
        total += gp_noise_prng_below(&s->rng, (uint32_t)(hi - RESP_MIN + 1));
    if (!gp_sess_server_amp_allow(srv, addr, alen, total)) {
        srv->st.drop_amp++;
        return 0;
    }
    out[0] = filler_type(&s->rng, T_RESP);
    memcpy(out + RESP_E, s->resp_e, 32);
    memcpy(out + RESP_CT, s->resp_ct, RESP_CT_LEN);
    gp_noise_prng_bytes(&s->rng, out + RESP_MASKED, total - MAC - RESP_MASKED);
    gp_noise_mac16(out + total - MAC, s->k_hs_mac, 32, out, total - MAC, NULL, 0);
    uint8_t m[RESP_MASKED];
    gp_noise_mask(s->k_hs_mask, out + total - MAC, m, RESP_MASKED);
    xor_into(out, out, m, RESP_MASKED);
    return (ssize_t)total;
}

ssize_t gp_sess_server_respond(gp_sess_server *srv, gp_sess_hs *hs, const uint8_t *psk,
                               uint64_t floor_ts, const void *addr, size_t addrlen, uint64_t now_ns,
                               uint64_t wall_ms, uint8_t *out, size_t cap, gp_sess **sess) {
    if (sess)
        *sess = NULL;
    if (!hs)
        return GP_ERR_INVALID;
    ssize_t rc;
    gp_noise_sym t = hs->t;
    uint8_t key[16], ts8[8], e_priv[32], e_pub[32], ee[32], cid8[8];
    gp_sess *s = NULL;
    if (!srv || hs->srv != srv) {
        rc = GP_ERR_STATE;
        goto out;
    }
    if (!out || !sess) {
        rc = GP_ERR_INVALID;
        goto out;
    }
    if (cap < RESP_MIN) {
        rc = GP_ERR_BUFFER;
        goto out;
    }
    rc = GP_ERR_AUTH;
    if (!psk) {
        srv->st.drop_unknown_house++;
        goto out;
    }
    tbl_key(srv, 'h', hs->id, hs->id_len, key);
    slot *e = tbl_find(srv->replay, srv->replay_sets, key, 0);
    int same;
    gp_sess *old = retransmit_target(srv, e, hs->init_hash, now_ns, &same);
    if (old) { /* a retransmit parsed while its twin awaited the psk */
        old->resp_cap = hs->init_len;
        rc = build_resp(srv, old, addr, addrlen, out, cap);
        srv->st.retransmits += rc > 0;
        goto out;
    }
    if (same) {
        srv->st.drop_replay++;
        goto out;
    }
    gp_noise_mix_key_and_hash(&t, psk);
    if (gp_noise_dec_hash(&t, hs->enc_ts, INIT_TS_CT, ts8) != 0) {
        srv->st.drop_psk++; /* the house does not hold this secret */
        goto out;
    }
    uint64_t ts = get_be64(ts8);
    if ((e && ts <= e->a) || ts <= floor_ts) {
        srv->st.drop_replay++;
        goto out;
    }
    if (srv->conf.max_skew_ms &&
        (ts > wall_ms + srv->conf.max_skew_ms || ts + srv->conf.max_skew_ms < wall_ms)) {
        srv->st.drop_skew++;
        goto out;
    }

    /* <- e, ee, {cid} */
    s = sess_alloc(&srv->conf.sess, srv->rnd, srv->ud);
    if (!s) {
        rc = GP_ERR_NOMEM;
        goto out;
    }
    s->bridge = 1;
    /* The bridge's ephemeral lives only in this function: once ee is mixed in, nothing that
     * stays in memory can recompute this session's keys (forward secrecy). */
    srv->rnd(srv->ud, e_priv, 32);
    crypto_scalarmult_base(e_pub, e_priv);
    srv->st.dh += 2;
    gp_noise_mix_hash(&t, e_pub, 32);
    gp_noise_mix_key(&t, e_pub, 32);
    if (crypto_scalarmult(ee, e_priv, hs->e) != 0)
        goto out; /* unreachable: a low-order e already failed es */
    gp_noise_mix_key(&t, ee, 32);
    for (int tries = 0;; tries++) { /* random, non-zero, unique among live sessions */
        if (tries == 64) {
            rc = GP_ERR_NOMEM; /* only a broken random source gets here */
            goto out;
        }
        srv->rnd(srv->ud, cid8, 8);
        s->cid = get_be64(cid8);
        if (s->cid && !idx_get(srv, s->cid))
            break;
    }
    gp_noise_enc_hash(&t, cid8, 8, s->resp_ct);
    memcpy(s->resp_e, e_pub, 32);
    s->resp_e[31] |= (uint8_t)(filler_type(&s->rng, 0) & 0x80);
    derive_traffic(s, &t, now_ns);
    memcpy(s->spub, srv->spub, 32);
    memcpy(s->k_c2s_hdr, srv->k_c2s_hdr, 32);
    gp_noise_pub_key(s->k_hs_mask, "s2c hs mask", srv->spub, hs->e);
    gp_noise_pub_key(s->k_hs_mac, "s2c hs mac", srv->spub, hs->e);
    memcpy(s->house_id, hs->id, hs->id_len);
    s->house_id_len = hs->id_len;
    s->ts = ts;
    s->has_resp = 1;
    s->resp_cap = hs->init_len;
    s->created_ns = now_ns;
    s->unconfirmed_until_ns = now_ns + srv->conf.retransmit_window_ns;
    if (idx_put(srv, s) != 0) {
        rc = GP_ERR_NOMEM;
        goto out;
    }
    s->srv = srv;
    e = tbl_find(srv->replay, srv->replay_sets, key, 1);
    e->a = ts;
    e->b = s->cid;
    e->touched = now_ns;
    memcpy(e->hash, hs->init_hash, 16);
    srv->st.handshakes++;
    rc = build_resp(srv, s, addr, addrlen, out, cap);
    *sess = s;
    s = NULL;
out:
    if (s)
        gp_sess_free(s);
    sodium_memzero(&t, sizeof t);
    sodium_memzero(e_priv, sizeof e_priv);
    sodium_memzero(ee, sizeof ee);
    sodium_memzero(ts8, sizeof ts8);
    gp_sess_hs_free(hs);
    return rc;
}

ssize_t gp_sess_server_resend(gp_sess_server *srv, gp_sess *s, const void *addr, size_t addrlen,
                              uint64_t now_ns, uint8_t *out, size_t cap) {
    (void)now_ns;
    if (!srv || !s || !out)
        return GP_ERR_INVALID;
    if (s->srv != srv || !s->bridge || s->confirmed || !s->has_resp)
        return GP_ERR_STATE;
    if (cap < RESP_MIN)
        return GP_ERR_BUFFER;
    ssize_t n = build_resp(srv, s, addr, addrlen, out, cap);
    srv->st.retransmits += n > 0;
    return n;
}

ssize_t gp_sess_server_cookie_reply(gp_sess_server *srv, const uint8_t *dg, size_t len,
                                    const void *addr, size_t addrlen, uint64_t now_ns, uint8_t *out,
                                    size_t cap) {
    if (!srv || !dg || !out)
        return GP_ERR_INVALID;
    if (cap < COOKIE_MIN)
        return GP_ERR_BUFFER;
    uint8_t u[INIT_MASKED], e[32], ad[17], k_mask[32], m[1];
    if (init_check(srv, dg, len, u) != 0) {
        srv->st.drop_mac1++;
        return GP_ERR_AUTH;
    }
    cookie_rotate(srv, now_ns);
    size_t hi = min_sz(min_sz(min_sz(len, COOKIE_MAX), srv->conf.sess.mtu), cap);
    size_t total = COOKIE_MIN;
    if (!srv->conf.sess.no_padding)
        total += gp_noise_prng_below(&srv->rng, (uint32_t)(hi - COOKIE_MIN + 1));
    if (!gp_sess_server_amp_allow(srv, addr, addrlen, total)) {
        srv->st.drop_amp++;
        return 0;
    }
    gp_noise_canon(e, u + INIT_E);
    gp_noise_pub_key(k_mask, "s2c hs mask", srv->spub, e);
    out[0] = filler_type(&srv->rng, T_COOKIE);
    gp_noise_hash16(ad, u + 1, INIT_INNER);
    ad[16] = out[0];
    gp_noise_prng_bytes(&srv->rng, out + 1, CK_CT - 1); /* XChaCha nonce: 192 random bits */
    make_cookie(srv->cookie_cur, addr, addrlen, out + CK_CT);
    memset(out + CK_CT + COOKIE_LEN, 0, total - COOKIE_MIN);
    /* AD: the hash of the initiation proper (the same in all its retransmits, so the house
     * knows the cookie answers its handshake and nobody else's) and the clear first byte (so
     * that no bit of the datagram goes unauthenticated). */
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out + CK_CT, out + total - TAG, NULL,
                                                        out + CK_CT, total - TAG - CK_CT, ad,
                                                        sizeof ad, NULL, out + 1, srv->k_cookie);
    gp_noise_mask(k_mask, out + total - TAG, m, 1);
    out[0] ^= m[0];
    srv->st.cookies_sent++;
    return (ssize_t)total;
}

static slot *amp_slot(gp_sess_server *srv, const void *addr, size_t alen, int create) {
    uint8_t key[16];
    tbl_key(srv, 'a', addr, addr ? alen : 0, key);
    slot *e = tbl_find(srv->amp, srv->amp_sets, key, create);
    if (e)
        e->touched = ++srv->amp_tick;
    return e;
}

void gp_sess_server_amp_credit(gp_sess_server *srv, const void *addr, size_t addrlen, size_t n) {
    if (srv)
        amp_slot(srv, addr, addrlen, 1)->a += n;
}

int gp_sess_server_amp_allow(gp_sess_server *srv, const void *addr, size_t addrlen, size_t n) {
    if (!srv)
        return 0;
    slot *e = amp_slot(srv, addr, addrlen, 0);
    if (!e)
        return n == 0;
    if (!e->validated && (e->b + n < e->b || e->b + n > 3 * e->a))
        return 0;
    e->b += n;
    return 1;
}

void gp_sess_server_amp_validate(gp_sess_server *srv, const void *addr, size_t addrlen) {
    if (srv)
        amp_slot(srv, addr, addrlen, 1)->validated = 1;
}

void gp_sess_server_stats(const gp_sess_server *srv, gp_sess_server_counters *out) {
    if (srv && out)
        *out = srv->st;
}

/* ---- keys, getters, free --------------------------------------------------------------- */

void gp_sess_keypair(uint8_t pub[GP_SESS_KEY_LEN], uint8_t priv[GP_SESS_KEY_LEN],
                     gp_sess_rand_fn rnd, void *ud) {
    rnd(ud, priv, GP_SESS_KEY_LEN);
    crypto_scalarmult_base(pub, priv);
}

int gp_sess_pubkey(const uint8_t priv[GP_SESS_KEY_LEN], uint8_t pub[GP_SESS_KEY_LEN]) {
    if (!priv || !pub || sodium_init() < 0)
        return GP_ERR_INVALID;
    return crypto_scalarmult_base(pub, priv) == 0 ? 0 : GP_ERR_INVALID;
}

size_t gp_sess_max_payload(size_t mtu) {
    if (mtu < GP_SESS_MTU_MIN)
        return 0;
    return min_sz(mtu, GP_SESS_DGRAM_MAX) - GP_SESS_OVERHEAD;
}

size_t gp_sess_payload_limit(const gp_sess *s) {
    if (!s)
        return 0;
    return s->conf.mtu - (s->bridge ? GP_SESS_OVERHEAD_S2C : GP_SESS_OVERHEAD);
}

int gp_sess_set_mtu(gp_sess *s, size_t mtu) {
    if (!s || mtu < GP_SESS_MTU_MIN || mtu > GP_SESS_DGRAM_MAX)
        return GP_ERR_INVALID;
    s->conf.mtu = mtu;
    buckets_init(s);
    return 0;
}

uint64_t gp_sess_expiry(const gp_sess *s) {
    if (s && s->bridge && !s->confirmed)
        return s->unconfirmed_until_ns;
    if (!s || s->bridge || s->state != ST_HANDSHAKE)
        return UINT64_MAX;
    return s->hello_next_ns;
}

int gp_sess_established(const gp_sess *s) {
    return s && s->state == ST_EST;
}
int gp_sess_confirmed(const gp_sess *s) {
    return s && s->state == ST_EST && s->confirmed;
}
int gp_sess_is_bridge(const gp_sess *s) {
    return s && s->bridge;
}
uint64_t gp_sess_cid(const gp_sess *s) {
    return s && s->state == ST_EST ? s->cid : 0;
}
gp_str gp_sess_house_id(const gp_sess *s) {
    return s ? (gp_str){(const uint8_t *)s->house_id, s->house_id_len}
             : (gp_str){(const uint8_t *)"", 0};
}
uint64_t gp_sess_timestamp(const gp_sess *s) {
    return s ? s->ts : 0;
}
void gp_sess_stats(const gp_sess *s, gp_sess_counters *out) {
    if (s && out)
        *out = s->st;
}

void gp_sess_free(gp_sess *s) {
    if (!s)
        return;
    if (s->srv)
        idx_del(s->srv, s);
    sodium_memzero(s, sizeof *s);
    free(s);
}
