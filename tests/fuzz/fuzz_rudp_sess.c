/* libFuzzer target for the rudp:// session layer (proto/rudp_sess.c). Each input builds a fresh
 * world from fixed seeds — a bridge server, an established and confirmed house/bridge session
 * pair (keys ratchet every 3 datagrams) and a second house still handshaking — then runs the
 * input as a script of operations:
 *   raw datagrams into the server's classify (and on into parse/respond/resend/cookie reply or
 *   the session it names), into the house, into the bridge session, into the handshaking house;
 *   valid datagrams (data both ways, initiations, responses) XORed with input bytes;
 *   captured datagrams replayed; the clock advanced.
 * Oracles (abort on violation): a datagram with any non-zero XOR applied is never accepted; an
 * untouched one is accepted exactly once with the payload that was sealed; no output is ever
 * larger than its buffer or (handshake replies) than the datagram that asked for it; only the
 * documented errors come back. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/trng.h"
#include "rudp_sess.h"

#define NS 1000000000ull
#define WALL 1700000000000ull
#define BUF 1600

/* Aborts with the failing line, so a crash names the broken oracle. */
#define check(ok)                                                                                  \
    do {                                                                                           \
        if (!(ok)) {                                                                               \
            fprintf(stderr, "fuzz_rudp_sess: check failed at line %d\n", __LINE__);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t PSK[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const char ADDR[] = "192.0.2.1:9", ADDR2[] = "192.0.2.2:9";

typedef struct world {
    trng rs, rh;
    uint8_t priv[32], pub[32];
    gp_sess_server *srv;
    gp_sess *house, *bridge, *pending_house;
    gp_sess *extra[8]; /* bridge sessions created by the script */
    int nextra;
    uint64_t now;
    uint8_t cap[4][BUF]; /* captured datagrams: 0,1 house->bridge; 2,3 bridge->house */
    size_t caplen[4];
} world;

static int is_err(ssize_t r) {
    return r == GP_ERR_TRUNCATED || r == GP_ERR_AUTH || r == GP_ERR_STATE || r == GP_ERR_BUFFER ||
           r == GP_ERR_MALFORMED || r == GP_ERR_TOO_LARGE || r == GP_ERR_NOMEM;
}

static void keep(world *w, gp_sess *s) {
    if (!s)
        return;
    if (w->nextra == 8) {
        gp_sess_free(s);
        return;
    }
    w->extra[w->nextra++] = s;
}

/* Everything the bridge does with a datagram from `addr`. */
static void bridge_rx(world *w, const uint8_t *dg, size_t len, const char *addr, int load,
                      int good_psk) {
    uint8_t out[BUF];
    gp_sess *s = NULL;
    int k = gp_sess_server_classify(w->srv, dg, len, addr, strlen(addr), load, w->now, &s);
    check(k >= GP_SESS_DROP && k <= GP_SESS_COOKIE);
    check((k == GP_SESS_DATA) == (s != NULL));
    /* Proven (a mac2 for this address) only for an initiation with a valid mac1; under load
     * classify has checked that same mac2. */
    int proven = gp_sess_server_init_proven(w->srv, dg, len, addr, strlen(addr), w->now);
    check(proven == 0 || proven == 1);
    check(!proven || k == GP_SESS_INIT);
    check(!(load && k == GP_SESS_INIT) || proven);
    if (k == GP_SESS_DATA) {
        unsigned f;
        ssize_t r = gp_sess_open(s, dg, len, out, sizeof out, w->now, &f);
        check(r >= 0 ? (size_t)r < len && (f & GP_SESS_RX_DATA) : is_err(r));
    } else if (k == GP_SESS_COOKIE) {
        ssize_t r = gp_sess_server_cookie_reply(w->srv, dg, len, addr, strlen(addr), w->now, out,
                                                sizeof out);
        check(r >= 0 ? (size_t)r <= len : is_err(r));
    } else if (k == GP_SESS_INIT) {
        gp_sess_hs *hs = NULL;
        int rc = gp_sess_server_parse(w->srv, dg, len, w->now, &hs, &s);
        if (rc == GP_SESS_HS_NEW) {
            check(hs != NULL);
            gp_str id = gp_sess_hs_house_id(hs);
            check(id.len >= 1 && id.len <= 64);
            gp_sess *ns = NULL;
            ssize_t r = gp_sess_server_respond(w->srv, hs, good_psk ? PSK : NULL, 0, addr,
                                               strlen(addr), w->now, WALL, out, sizeof out, &ns);
            check(r >= 0 ? (size_t)r <= len : is_err(r));
            check(r > 0 || ns == NULL);
            keep(w, ns);
        } else if (rc == GP_SESS_HS_RETRANSMIT) {
            check(s != NULL);
            ssize_t r =
                gp_sess_server_resend(w->srv, s, addr, strlen(addr), w->now, out, sizeof out);
            check(r >= 0 ? (size_t)r <= len : is_err(r));
        } else {
            check(is_err(rc) && hs == NULL);
        }
    }
}

static ssize_t house_rx(world *w, gp_sess *h, const uint8_t *dg, size_t len) {
    uint8_t out[BUF];
    unsigned f;
    ssize_t r = gp_sess_open(h, dg, len, out, sizeof out, w->now, &f);
    check(r >= 0 ? (size_t)r < len || (r == 0 && f) : is_err(r));
    return r;
}

/* XORs m[0..mlen) into dg at offset off; returns 1 if that changed anything. */
static int mutate(uint8_t *dg, size_t len, size_t off, const uint8_t *m, size_t mlen) {
    int changed = 0;
    for (size_t i = 0; i < mlen && off + i < len; i++) {
        dg[off + i] ^= m[i];
        changed |= m[i] != 0;
    }
    return changed;
}

static int world_up(world *w) {
    memset(w, 0, sizeof *w);
    w->rs.key[0] = 1;
    w->rh.key[0] = 2;
    w->now = 10 * NS;
    static uint8_t priv[32], pub[32];
    static int have_keys;
    if (!have_keys) { /* the same every time (fixed seed): computed once */
        gp_sess_keypair(pub, priv, trand, &w->rs);
        have_keys = 1;
    }
    w->rs.ctr = 1; /* as if generated now, so every input sees the same bytes */
    memcpy(w->priv, priv, 32);
    memcpy(w->pub, pub, 32);
    gp_sess_server_conf sc = {.sess = {.rekey_packets = 3, .old_key_ns = 2 * NS},
                              .max_pending = 4,
                              .retransmit_window_ns = 5 * NS};
    gp_sess_conf hc = {.rekey_packets = 3, .old_key_ns = 2 * NS};
    w->srv = gp_sess_server_new(&sc, w->priv, trand, &w->rs, w->now);
    w->house =
        gp_sess_client_new(&hc, w->pub, gp_str_c("house-1"), PSK, trand, &w->rh, w->now, WALL);

    check(w->srv && w->house);
    uint8_t a[BUF], b[BUF], out[BUF];
    ssize_t n = gp_sess_client_hello(w->house, a, sizeof a, w->now);
    gp_sess *s;
    gp_sess_hs *hs;
    check(gp_sess_server_classify(w->srv, a, (size_t)n, ADDR, sizeof ADDR - 1, 0, w->now, &s) ==
          GP_SESS_INIT);
    check(gp_sess_server_parse(w->srv, a, (size_t)n, w->now, &hs, &s) == GP_SESS_HS_NEW);
    ssize_t r = gp_sess_server_respond(w->srv, hs, PSK, 0, ADDR, sizeof ADDR - 1, w->now, WALL, b,
                                       sizeof b, &w->bridge);
    check(r > 0 && w->bridge);
    check(gp_sess_open(w->house, b, (size_t)r, out, sizeof out, w->now, NULL) == 0);
    n = gp_sess_seal(w->house, NULL, 0, a, sizeof a, w->now);
    check(gp_sess_open(w->bridge, a, (size_t)n, out, sizeof out, w->now, NULL) == 0);
    return 0;
}

/* The second house (its handshake costs two X25519) is made when a script first needs it. */
static gp_sess *pending(world *w) {
    if (!w->pending_house) {
        gp_sess_conf hc = {.rekey_packets = 3, .old_key_ns = 2 * NS};
        w->pending_house =
            gp_sess_client_new(&hc, w->pub, gp_str_c("house-2"), PSK, trand, &w->rh, w->now, WALL);
        check(w->pending_house);
    }
    return w->pending_house;
}

static void world_free(world *w) {
    for (int i = 0; i < w->nextra; i++)
        gp_sess_free(w->extra[i]);
    gp_sess_free(w->house);
    gp_sess_free(w->bridge);
    gp_sess_free(w->pending_house);
    gp_sess_server_free(w->srv);
}

/* A valid datagram, XORed with the script's bytes: rejected iff anything changed. */
static void mutated_data(world *w, int to_bridge, const uint8_t *arg, size_t alen) {
    uint8_t pl[64], dg[BUF], out[BUF];
    size_t plen = alen ? arg[0] % sizeof pl : 0;
    memset(pl, 0x5a, plen);
    gp_sess *tx = to_bridge ? w->house : w->bridge;
    ssize_t n = gp_sess_seal(tx, pl, plen, dg, sizeof dg, w->now);
    check(n > 0);
    size_t off = alen > 1 ? arg[1] % (size_t)n : 0;
    int changed = alen > 2 && mutate(dg, (size_t)n, off, arg + 2, alen - 2);
    ssize_t r;
    if (to_bridge) {
        gp_sess *s = NULL;
        int k =
            gp_sess_server_classify(w->srv, dg, (size_t)n, ADDR2, sizeof ADDR2 - 1, 0, w->now, &s);
        if (changed) {
            check(k != GP_SESS_INIT && k != GP_SESS_COOKIE);
            if (k != GP_SESS_DATA)
                return;
        } else {
            check(k == GP_SESS_DATA && s == w->bridge);
        }
        r = gp_sess_open(s, dg, (size_t)n, out, sizeof out, w->now, NULL);
    } else {
        r = gp_sess_open(w->house, dg, (size_t)n, out, sizeof out, w->now, NULL);
    }
    if (changed) {
        check(r < 0 && is_err(r));
    } else {
        check(r == (ssize_t)plen && memcmp(out, pl, plen) == 0);
        /* and exactly once */
        gp_sess *rx = to_bridge ? w->bridge : w->house;
        check(gp_sess_open(rx, dg, (size_t)n, out, sizeof out, w->now, NULL) == GP_ERR_AUTH);
    }
}

static void mutated_init(world *w, const uint8_t *arg, size_t alen) {
    uint8_t dg[BUF];
    ssize_t n = gp_sess_client_hello(pending(w), dg, sizeof dg, w->now);
    if (n < 0) {
        check(n == GP_ERR_STATE);
        return;
    }
    size_t off = alen ? arg[0] % (size_t)n : 0;
    int changed = alen > 1 && mutate(dg, (size_t)n, off, arg + 1, alen - 1);
    gp_sess *s;
    int k = gp_sess_server_classify(w->srv, dg, (size_t)n, ADDR2, sizeof ADDR2 - 1, 0, w->now, &s);
    if (changed) {
        check(k == GP_SESS_DROP);
        gp_sess_hs *hs;
        check(gp_sess_server_parse(w->srv, dg, (size_t)n, w->now, &hs, &s) < 0);
    } else {
        check(k == GP_SESS_INIT);
        bridge_rx(w, dg, (size_t)n, ADDR2, 0, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) {
        check(sodium_init() >= 0);
        inited = 1;
    }
    world w;
    world_up(&w);
    const uint8_t *p = data, *end = data + size;
    /* Script: op (1 byte), length (1 byte), argument. */
    while (end - p >= 2) {
        uint8_t op = p[0];
        size_t alen = p[1];
        p += 2;
        if (alen > (size_t)(end - p))
            alen = (size_t)(end - p);
        const uint8_t *arg = p;
        p += alen;
        uint8_t dg[BUF];
        switch (op % 12) {
        case 0: /* raw datagram to the bridge */
            bridge_rx(&w, arg, alen, ADDR, op & 0x10, op & 0x20);
            break;
        case 1: /* raw datagram to the established house */
            house_rx(&w, w.house, arg, alen);
            break;
        case 2: { /* raw datagram straight into the bridge session */
            uint8_t out[BUF];
            ssize_t r = gp_sess_open(w.bridge, arg, alen, out, sizeof out, w.now, NULL);
            check(r >= 0 ? (size_t)r < alen : is_err(r));
            break;
        }
        case 3: /* raw datagram to the handshaking house */
            house_rx(&w, pending(&w), arg, alen);
            break;
        case 4:
            mutated_data(&w, 1, arg, alen);
            break;
        case 5:
            mutated_data(&w, 0, arg, alen);
            break;
        case 6:
            mutated_init(&w, arg, alen);
            break;
        case 7: { /* capture a fresh datagram for later replay */
            int slot = (op >> 4) & 3;
            gp_sess *tx = slot < 2 ? w.house : w.bridge;
            ssize_t n = gp_sess_seal(tx, arg, alen < 64 ? alen : 64, w.cap[slot], BUF, w.now);
            check(n > 0);
            w.caplen[slot] = (size_t)n;
            break;
        }
        case 8: { /* replay a captured datagram (maybe cut) */
            int slot = (op >> 4) & 3;
            size_t len = w.caplen[slot];
            if (alen && len)
                len = arg[0] % (len + 1);
            memcpy(dg, w.cap[slot], w.caplen[slot]);
            if (slot < 2)
                bridge_rx(&w, dg, len, (op & 0x40) ? ADDR2 : ADDR, 0, 1);
            else
                house_rx(&w, w.house, dg, len);
            break;
        }
        case 9: { /* time passes: 0..255 x 100 ms */
            w.now += (uint64_t)(alen ? arg[0] : 1) * (NS / 10);
            break;
        }
        case 10: { /* a response for the handshaking house, mutated */
            ssize_t n = gp_sess_client_hello(pending(&w), dg, sizeof dg, w.now);
            if (n < 0)
                break;
            gp_sess *s;
            gp_sess_hs *hs;
            uint8_t resp[BUF];
            int k = gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR2, sizeof ADDR2 - 1, 0, w.now,
                                            &s);
            if (k != GP_SESS_INIT)
                break;
            int rc = gp_sess_server_parse(w.srv, dg, (size_t)n, w.now, &hs, &s);
            ssize_t r;
            gp_sess *ns = NULL;
            if (rc == GP_SESS_HS_NEW) {
                r = gp_sess_server_respond(w.srv, hs, PSK, 0, ADDR2, sizeof ADDR2 - 1, w.now, WALL,
                                           resp, sizeof resp, &ns);
                keep(&w, ns);
            } else if (rc == GP_SESS_HS_RETRANSMIT) {
                r = gp_sess_server_resend(w.srv, s, ADDR2, sizeof ADDR2 - 1, w.now, resp,
                                          sizeof resp);
            } else {
                break;
            }
            if (r <= 0)
                break;
            size_t off = alen ? arg[0] % (size_t)r : 0;
            int changed = alen > 1 && mutate(resp, (size_t)r, off, arg + 1, alen - 1);
            int was = gp_sess_established(w.pending_house);
            ssize_t o = house_rx(&w, w.pending_house, resp, (size_t)r);
            if (changed && !was)
                check(o < 0 && !gp_sess_established(w.pending_house));
            break;
        }
        case 11: { /* the cookie path for the handshaking house, reply mutated */
            ssize_t n = gp_sess_client_hello(pending(&w), dg, sizeof dg, w.now);
            if (n < 0)
                break;
            gp_sess *s;
            uint8_t ck[BUF];
            if (gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR2, sizeof ADDR2 - 1, 1, w.now,
                                        &s) != GP_SESS_COOKIE)
                break;
            ssize_t r = gp_sess_server_cookie_reply(w.srv, dg, (size_t)n, ADDR2, sizeof ADDR2 - 1,
                                                    w.now, ck, sizeof ck);
            check(r > 0 && r <= n);
            size_t off = alen ? arg[0] % (size_t)r : 0;
            int changed = alen > 1 && mutate(ck, (size_t)r, off, arg + 1, alen - 1);
            ssize_t o = house_rx(&w, w.pending_house, ck, (size_t)r);
            if (changed)
                check(o < 0);
            break;
        }
        }
    }
    world_free(&w);
    return 0;
}
