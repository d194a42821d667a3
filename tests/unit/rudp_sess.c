/* Unit tests for proto/rudp_sess.c: the rudp:// handshake, datagram protection, masking,
 * cookies, the amplification budget and padding. Everything runs in one process on a virtual
 * clock with seeded randomness, so every run sees the same bytes. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rudp_sess.h"
#include "trng.h"

#define NS 1000000000ull
#define WALL 1700000000000ull /* a wall clock in ms */
#define BUF 2048

static uint8_t psk[32], psk2[32];
static const char A1[] = "198.51.100.7:40000", A2[] = "203.0.113.9:51111", A3[] = "192.0.2.44:1024";
#define ADDR(a) (a), (sizeof(a) - 1)

static void setup(void) {
    cr_assert(sodium_init() >= 0);
    for (int i = 0; i < 32; i++) {
        psk[i] = (uint8_t)(0xa0 + i);
        psk2[i] = (uint8_t)(0x10 + i);
    }
}

TestSuite(rudp_sess, .init = setup);

/* A bridge (server + its static key) and a house talking to it. */
typedef struct world {
    trng rs, rh;
    uint8_t priv[32], pub[32];
    gp_sess_server *srv;
    gp_sess *house, *bridge;
    uint64_t now;
} world;

static void world_init(world *w, uint64_t seed, const gp_sess_server_conf *sc) {
    memset(w, 0, sizeof *w);
    w->rs = trng_seed(seed);
    w->rh = trng_seed(seed + 1000);
    w->now = 5 * NS;
    gp_sess_keypair(w->pub, w->priv, trand, &w->rs);
    w->srv = gp_sess_server_new(sc, w->priv, trand, &w->rs, w->now);
    cr_assert_not_null(w->srv);
}

static void world_free(world *w) {
    gp_sess_free(w->house);
    gp_sess_free(w->bridge);
    gp_sess_server_free(w->srv);
}

/* The end of a test that made a bridge session b and a house h of its own: all freed. */
static void world_end(world *w, gp_sess *b, gp_sess *h) {
    gp_sess_free(b);
    gp_sess_free(h);
    world_free(w);
}

/* House side of a new handshake. */
static gp_sess *house_new(world *w, const gp_sess_conf *conf, const char *id, const uint8_t *secret,
                          uint64_t wall) {
    gp_sess *h =
        gp_sess_client_new(conf, w->pub, gp_str_c(id), secret, trand, &w->rh, w->now, wall);
    cr_assert_not_null(h);
    return h;
}

/* A bridge (seeded) and one house "house-1" of it, not yet connected. */
static gp_sess *world_house(world *w, uint64_t seed) {
    world_init(w, seed, NULL);
    return house_new(w, NULL, "house-1", psk, WALL);
}

/* Under load: house h's next initiation (into init[BUF], its length in *n) from addr is
 * answered with a cookie reply, into ck[BUF]; its length returned. */
static ssize_t hello_cookie(world *w, gp_sess *h, uint8_t *init, ssize_t *n, const char *addr,
                            size_t alen, uint8_t *ck) {
    *n = gp_sess_client_hello(h, init, BUF, w->now);
    cr_assert_gt(*n, 0);
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(w->srv, init, (size_t)*n, addr, alen, 1, w->now, &s),
                 GP_SESS_COOKIE);
    return gp_sess_server_cookie_reply(w->srv, init, (size_t)*n, addr, alen, w->now, ck, BUF);
}

/* House h's next initiation, into init[BUF] (its length returned), arriving from addr:
 * classified as an initiation (no load) and parsed as a new handshake into *hs. */
static ssize_t hello_new(world *w, gp_sess *h, uint8_t *init, const char *addr, size_t alen,
                         gp_sess_hs **hs) {
    ssize_t n = gp_sess_client_hello(h, init, BUF, w->now);
    cr_assert_gt(n, 0);
    gp_sess *s = NULL;
    cr_assert_eq(gp_sess_server_classify(w->srv, init, (size_t)n, addr, alen, 0, w->now, &s),
                 GP_SESS_INIT);
    cr_assert_eq(gp_sess_server_parse(w->srv, init, (size_t)n, w->now, hs, &s), GP_SESS_HS_NEW);
    return n;
}

/* House h's next initiation (from A1), parsed as a new handshake, is refused when the bridge
 * responds with psk p (NULL: the house is unknown): GP_ERR_AUTH, and no session. */
static void refused_at_respond(world *w, gp_sess *h, const uint8_t *p) {
    uint8_t init[BUF], resp[BUF];
    ssize_t n = gp_sess_client_hello(h, init, sizeof init, w->now);
    cr_assert_gt(n, 0);
    gp_sess_hs *hs;
    gp_sess *s = NULL;
    cr_assert_eq(gp_sess_server_parse(w->srv, init, (size_t)n, w->now, &hs, &s), GP_SESS_HS_NEW);
    cr_assert_eq(
        gp_sess_server_respond(w->srv, hs, p, 0, ADDR(A1), w->now, WALL, resp, sizeof resp, &s),
        GP_ERR_AUTH);
    cr_assert_null(s);
}

/* Runs INIT -> classify -> parse -> respond(p) -> house open; returns the bridge session. */
static gp_sess *do_handshake(world *w, gp_sess *house, const uint8_t *p, const char *addr,
                             size_t alen) {
    uint8_t init[BUF], resp[BUF], out[BUF];
    gp_sess *s = NULL;
    gp_sess_hs *hs = NULL;
    ssize_t n = hello_new(w, house, init, addr, alen, &hs);
    gp_str hid = gp_sess_hs_house_id(hs), want = gp_sess_house_id(house);
    cr_assert(hid.len == want.len && memcmp(hid.p, want.p, hid.len) == 0);
    ssize_t r =
        gp_sess_server_respond(w->srv, hs, p, 0, addr, alen, w->now, WALL, resp, sizeof resp, &s);
    cr_assert_gt(r, 0, "respond: %zd", r);
    cr_assert_not_null(s);
    cr_assert_leq(r, n, "a response is never larger than its initiation");
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(house, resp, (size_t)r, out, sizeof out, w->now, &f), 0);
    cr_assert(f & GP_SESS_RX_ESTABLISHED);
    cr_assert_eq(gp_sess_cid(house), gp_sess_cid(s));
    return s;
}

/* Full setup: handshake, then the house's first datagram confirms the session. */
static void world_up(world *w, uint64_t seed, const gp_sess_server_conf *sc,
                     const gp_sess_conf *hc) {
    world_init(w, seed, sc);
    w->house = house_new(w, hc, "house-1", psk, WALL);
    w->bridge = do_handshake(w, w->house, psk, ADDR(A1));
    uint8_t dg[BUF], out[BUF];
    ssize_t n = gp_sess_seal(w->house, NULL, 0, dg, sizeof dg, w->now);
    cr_assert_gt(n, 0);
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(w->bridge, dg, (size_t)n, out, sizeof out, w->now, &f), 0);
    cr_assert(f & GP_SESS_RX_CONFIRMED);
}

/* House -> bridge through classify, the way the bridge receives: the payload length, or a
 * negative error from open, or -1000 when classify dropped it. */
static ssize_t c2s(world *w, const uint8_t *dg, size_t len, const char *addr, size_t alen,
                   uint8_t *out, unsigned *f) {
    gp_sess *s = NULL;
    int k = gp_sess_server_classify(w->srv, dg, len, addr, alen, 0, w->now, &s);
    if (k != GP_SESS_DATA)
        return -1000;
    return gp_sess_open(s, dg, len, out, BUF, w->now, f);
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((seed + i) * 2654435761u >> 13);
}

static uint64_t srv_drops(const gp_sess_server_counters *c) {
    return c->drop_short + c->drop_type + c->drop_unknown_cid + c->drop_mac1;
}
static uint64_t sess_drops(const gp_sess_counters *c) {
    return c->drop_short + c->drop_type + c->drop_foreign + c->drop_auth + c->drop_replay +
           c->drop_old_key + c->drop_handshake;
}

/* ---- handshake ------------------------------------------------------------------------- */

Test(rudp_sess, handshake_then_data_both_ways) {
    world w;
    world_init(&w, 1, NULL);
    w.house = house_new(&w, NULL, "house-1", psk, WALL);
    cr_assert_not(gp_sess_established(w.house));
    cr_assert_eq(gp_sess_cid(w.house), 0);
    w.bridge = do_handshake(&w, w.house, psk, ADDR(A1));
    cr_assert(gp_sess_established(w.house) && gp_sess_confirmed(w.house));
    cr_assert(gp_sess_established(w.bridge) && gp_sess_is_bridge(w.bridge));
    cr_assert(gp_str_eq(gp_sess_house_id(w.bridge), "house-1"));
    cr_assert_eq(gp_sess_timestamp(w.bridge), WALL);
    cr_assert_eq(gp_sess_expiry(w.house), UINT64_MAX);

    /* The bridge may not send before the house's first datagram (key confirmation). */
    uint8_t dg[BUF], out[BUF], pl[BUF];
    cr_assert_not(gp_sess_confirmed(w.bridge));
    cr_assert_eq(gp_sess_seal(w.bridge, pl, 10, dg, sizeof dg, w.now), GP_ERR_STATE);
    cr_assert_eq(gp_sess_expiry(w.bridge), w.now + 20 * NS, "free it if unconfirmed by then");

    size_t sizes[] = {0, 1, 17, 100, 500, 1000, 1170};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fill(pl, sizes[i], (uint32_t)i);
        ssize_t n = gp_sess_seal(w.house, pl, sizes[i], dg, sizeof dg, w.now);
        cr_assert_gt(n, 0);
        cr_assert_leq(n, 1200);
        unsigned f = 0;
        ssize_t got = c2s(&w, dg, (size_t)n, ADDR(A1), out, &f);
        cr_assert_eq(got, (ssize_t)sizes[i]);
        cr_assert_eq(memcmp(out, pl, sizes[i]), 0);
        cr_assert(f & GP_SESS_RX_DATA);
        cr_assert_eq(!!(f & GP_SESS_RX_CONFIRMED), i == 0, "confirmed once, on the first");
    }
    cr_assert(gp_sess_confirmed(w.bridge));
    cr_assert_eq(gp_sess_expiry(w.bridge), UINT64_MAX);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fill(pl, sizes[i], (uint32_t)(100 + i));
        ssize_t n = gp_sess_seal(w.bridge, pl, sizes[i], dg, sizeof dg, w.now);
        cr_assert_gt(n, 0);
        unsigned f = 0;
        cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, &f),
                     (ssize_t)sizes[i]);
        cr_assert_eq(memcmp(out, pl, sizes[i]), 0);
    }
    gp_sess_server_counters sc;
    gp_sess_server_stats(w.srv, &sc);
    cr_assert_eq(sc.handshakes, 1);
    cr_assert_eq(sc.dh, 3); /* es at parse; keygen + ee at respond */
    world_free(&w);
}

Test(rudp_sess, house_id_hidden_and_its_length_too) {
    world w;
    world_init(&w, 2, NULL);
    gp_sess_conf np = {.no_padding = 1};
    char longid[65];
    memset(longid, 'q', 64);
    longid[64] = 0;
    gp_sess *a = house_new(&w, &np, "h", psk, WALL);
    gp_sess *b = house_new(&w, &np, longid, psk, WALL);
    uint8_t da[BUF], db[BUF];
    ssize_t na = gp_sess_client_hello(a, da, sizeof da, w.now);
    ssize_t nb = gp_sess_client_hello(b, db, sizeof db, w.now);
    cr_assert_eq(na, 170);
    cr_assert_eq(nb, 170, "same size whatever the id's length");
    cr_assert_null(memmem(db, (size_t)nb, "qqqq", 4));
    gp_sess_hs *hs;
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(w.srv, db, (size_t)nb, ADDR(A1), 0, w.now, &s),
                 GP_SESS_INIT);
    cr_assert_eq(gp_sess_server_parse(w.srv, db, (size_t)nb, w.now, &hs, &s), GP_SESS_HS_NEW);
    cr_assert(gp_str_eq(gp_sess_hs_house_id(hs), longid));
    gp_sess_hs_free(hs);
    gp_sess_free(a);
    gp_sess_free(b);
    world_free(&w);
    cr_assert_null(gp_sess_client_new(NULL, w.pub, gp_str_c("bad id"), psk, trand, &w.rh, 0, 1));
    cr_assert_null(gp_sess_client_new(NULL, w.pub, gp_str_c(""), psk, trand, &w.rh, 0, 1));
    gp_sess_conf tiny = {.mtu = 100};
    cr_assert_null(gp_sess_client_new(&tiny, w.pub, gp_str_c("h"), psk, trand, &w.rh, 0, 1));
}

Test(rudp_sess, wrong_psk_house_fails_at_bridge) {
    world w;
    world_init(&w, 3, NULL);
    gp_sess *h = house_new(&w, NULL, "house-1", psk2, WALL); /* the house holds another secret */
    uint8_t init[BUF], resp[BUF];
    gp_sess *s;
    gp_sess_hs *hs;
    hello_new(&w, h, init, ADDR(A1), &hs);
    cr_assert_eq(
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A1), w.now, WALL, resp, sizeof resp, &s),
        GP_ERR_AUTH);
    cr_assert_null(s);
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_psk, 1);
    cr_assert_eq(c.handshakes, 0);
    /* An unknown house (no psk found) is refused the same way: silence. */
    refused_at_respond(&w, h, NULL);
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_unknown_house, 1);
    gp_sess_free(h);
    world_free(&w);
}

/* The bridge proves the psk: two houses with the same ephemeral key and timestamp (same seed)
 * but different secrets; a response made for one is refused by the other, whose handshake
 * then still completes with the genuine response. */
Test(rudp_sess, wrong_psk_bridge_response_refused) {
    world w, w2;
    world_init(&w, 4, NULL);
    world_init(&w2, 4, NULL); /* same static key, separate replay table */
    trng ra = trng_seed(77), rb = trng_seed(77);
    gp_sess *ha =
        gp_sess_client_new(NULL, w.pub, gp_str_c("house-1"), psk, trand, &ra, w.now, WALL);
    gp_sess *hb =
        gp_sess_client_new(NULL, w.pub, gp_str_c("house-1"), psk2, trand, &rb, w.now, WALL);
    gp_sess *sb = do_handshake(&w, hb, psk2, ADDR(A1)); /* bridge knowing only psk2 */
    (void)sb;
    uint8_t init[BUF], resp[BUF], out[BUF];
    /* Get a response under psk2 for the shared ephemeral: resend it. */
    ssize_t n = gp_sess_client_hello(ha, init, sizeof init, w.now);
    gp_sess *s = NULL;
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A1), 0, w.now, &s),
                 GP_SESS_INIT);
    ssize_t r = gp_sess_server_resend(w.srv, sb, ADDR(A1), w.now, resp, sizeof resp);
    cr_assert_gt(r, 0);
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(ha, resp, (size_t)r, out, sizeof out, w.now, &f), GP_ERR_AUTH);
    cr_assert_not(gp_sess_established(ha));
    gp_sess_counters hc;
    gp_sess_stats(ha, &hc);
    cr_assert_eq(hc.drop_auth, 1);
    /* Unchanged by the forgery: the right bridge's response completes it. */
    gp_sess *sa = do_handshake(&w2, ha, psk, ADDR(A1));
    cr_assert(gp_sess_established(ha));
    gp_sess_free(sa);
    gp_sess_free(ha);
    gp_sess_free(hb);
    gp_sess_free(sb);
    world_free(&w);
    world_free(&w2);
}

/* The bridge proves its static key: a bridge with another key neither answers nor can forge a
 * response the house accepts. */
Test(rudp_sess, other_static_key_silent_and_refused) {
    world w, o;
    world_init(&w, 5, NULL);
    world_init(&o, 6, NULL);
    uint8_t init[BUF], resp[BUF], out[BUF];
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL);
    ssize_t n = gp_sess_client_hello(h, init, sizeof init, w.now);
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(o.srv, init, (size_t)n, ADDR(A1), 0, w.now, &s),
                 GP_SESS_DROP);
    gp_sess_server_counters c;
    gp_sess_server_stats(o.srv, &c);
    cr_assert_eq(srv_drops(&c), 1); /* its header unmasks to garbage under the other key */
    cr_assert_eq(c.dh, 0);
    /* Same ephemeral, addressed to the other bridge: its genuine response is no good for h. */
    trng r1 = trng_seed(99), r2 = trng_seed(99);
    gp_sess *hx = gp_sess_client_new(NULL, w.pub, gp_str_c("house-1"), psk, trand, &r1, 0, WALL);
    gp_sess *hy = gp_sess_client_new(NULL, o.pub, gp_str_c("house-1"), psk, trand, &r2, 0, WALL);
    gp_sess *sy = do_handshake(&o, hy, psk, ADDR(A1));
    n = gp_sess_client_hello(hx, init, sizeof init, w.now);
    cr_assert_eq(gp_sess_server_classify(o.srv, init, (size_t)n, ADDR(A1), 0, w.now, &s),
                 GP_SESS_DROP);
    gp_sess_server_amp_validate(o.srv, ADDR(A1));
    ssize_t r = gp_sess_server_resend(o.srv, sy, ADDR(A1), w.now, resp, sizeof resp);
    cr_assert_gt(r, 0);
    cr_assert_eq(gp_sess_open(hx, resp, (size_t)r, out, sizeof out, w.now, NULL), GP_ERR_AUTH);
    cr_assert_not(gp_sess_established(hx));
    gp_sess_free(hx);
    gp_sess_free(hy);
    gp_sess_free(sy);
    gp_sess_free(h);
    world_free(&w);
    world_free(&o);
}

Test(rudp_sess, forged_initiations_dropped_without_dh) {
    world w;
    world_init(&w, 7, NULL);
    trng r = trng_seed(1234);
    uint8_t dg[BUF];
    gp_sess *s;
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(i % 1300);
        trand(&r, dg, len ? len : 1);
        for (int load = 0; load < 2; load++)
            cr_assert_eq(gp_sess_server_classify(w.srv, dg, len, ADDR(A1), load, w.now, &s),
                         GP_SESS_DROP);
        cr_assert_null(s);
    }
    /* A real initiation with any one bit flipped: dropped, under load too (no cookie). */
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL);
    ssize_t n = gp_sess_client_hello(h, dg, sizeof dg, w.now);
    for (size_t i = 0; i < (size_t)n; i++)
        for (int bit = 0; bit < 8; bit += 7) {
            dg[i] ^= (uint8_t)(1 << bit);
            cr_assert_eq(gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR(A1), 1, w.now, &s),
                         GP_SESS_DROP, "byte %zu", i);
            gp_sess_hs *hs;
            cr_assert_lt(gp_sess_server_parse(w.srv, dg, (size_t)n, w.now, &hs, &s), 0);
            dg[i] ^= (uint8_t)(1 << bit);
        }
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.dh, 0, "no DH for anything without a valid mac1");
    cr_assert_eq(c.cookie_needed + c.cookies_sent, 0);
    cr_assert_gt(c.drop_mac1, (uint64_t)n);
    cr_assert_eq(srv_drops(&c), c.rx_datagrams + 2 * (uint64_t)n, "classify and parse count");
    /* The untouched one still passes. */
    cr_assert_eq(gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR(A1), 0, w.now, &s),
                 GP_SESS_INIT);
    gp_sess_free(h);
    world_free(&w);
}

/* gp_sess_server_init_proven: an initiation is proven only by a mac2 made with a cookie for
 * the address it comes from (the bridge charges failed-auth budgets only for those). */
Test(rudp_sess, init_proven_only_with_a_cookie_for_that_address) {
    world w;
    gp_sess *h = world_house(&w, 8);
    uint8_t init[BUF], ck[BUF], out[BUF];
    ssize_t n = gp_sess_client_hello(h, init, sizeof init, w.now);
    cr_assert_eq(gp_sess_server_init_proven(w.srv, init, (size_t)n, ADDR(A1), w.now), 0,
                 "no cookie yet: its random mac2 proves nothing");
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A1), 1, w.now, &s),
                 GP_SESS_COOKIE);
    ssize_t cn =
        gp_sess_server_cookie_reply(w.srv, init, (size_t)n, ADDR(A1), w.now, ck, sizeof ck);
    cr_assert_gt(cn, 0);
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(h, ck, (size_t)cn, out, sizeof out, w.now, &f), 0);
    n = gp_sess_client_hello(h, init, sizeof init, w.now);
    cr_assert_eq(gp_sess_server_init_proven(w.srv, init, (size_t)n, ADDR(A1), w.now), 1);
    cr_assert_eq(gp_sess_server_init_proven(w.srv, init, (size_t)n, ADDR(A2), w.now), 0,
                 "a cookie for another address proves nothing");
    init[n - 40] ^= 1; /* mac1 no longer holds */
    cr_assert_eq(gp_sess_server_init_proven(w.srv, init, (size_t)n, ADDR(A1), w.now), 0);
    cr_assert_eq(gp_sess_server_init_proven(NULL, init, (size_t)n, ADDR(A1), w.now), 0);
    gp_sess_free(h);
    world_free(&w);
}

Test(rudp_sess, cookie_under_load) {
    world w;
    gp_sess *h = world_house(&w, 8);
    uint8_t init[BUF], ck[BUF], resp[BUF], out[BUF];
    ssize_t n;
    gp_sess *s;
    ssize_t cn = hello_cookie(&w, h, init, &n, ADDR(A1), ck);
    cr_assert_geq(cn, 57);
    cr_assert_leq(cn, n);
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.dh, 0, "no DH before the cookie");
    cr_assert_eq(c.handshakes, 0);
    /* A cookie reply with a bit flipped is refused; the genuine one accepted. */
    ck[cn / 2] ^= 4;
    cr_assert_eq(gp_sess_open(h, ck, (size_t)cn, out, sizeof out, w.now, NULL), GP_ERR_AUTH);
    ck[cn / 2] ^= 4;
    w.now += NS / 10;
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(h, ck, (size_t)cn, out, sizeof out, w.now, &f), 0);
    cr_assert(f & GP_SESS_RX_COOKIE);
    cr_assert_eq(gp_sess_expiry(h), w.now, "hello again at once");
    n = gp_sess_client_hello(h, init, sizeof init, w.now);
    /* From another address the cookie is worth nothing. */
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A2), 1, w.now, &s),
                 GP_SESS_COOKIE);
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A1), 1, w.now, &s),
                 GP_SESS_INIT);
    /* Still good after one rotation of the bridge's secret (previous secret kept). */
    w.now += 121 * NS;
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A1), 1, w.now, &s),
                 GP_SESS_INIT);
    gp_sess_hs *hs;
    gp_sess *b = NULL;
    cr_assert_eq(gp_sess_server_parse(w.srv, init, (size_t)n, w.now, &hs, &s), GP_SESS_HS_NEW);
    ssize_t r =
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A1), w.now, WALL, resp, sizeof resp, &b);
    cr_assert_gt(r, 0);
    cr_assert_eq(gp_sess_open(h, resp, (size_t)r, out, sizeof out, w.now, &f), 0);
    cr_assert(f & GP_SESS_RX_ESTABLISHED);
    /* Two rotations later the cookie is stale. */
    w.now += 121 * NS;
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A1), 1, w.now, &s),
                 GP_SESS_COOKIE);
    /* A cookie reply for a forged initiation: refused. */
    init[n - 40] ^= 1;
    cr_assert_eq(
        gp_sess_server_cookie_reply(w.srv, init, (size_t)n, ADDR(A1), w.now, ck, sizeof ck),
        GP_ERR_AUTH);
    world_end(&w, b, h);
}

Test(rudp_sess, amplification_budget) {
    world w;
    world_init(&w, 9, NULL);
    /* The helper: 3x what was received, unlimited once validated. */
    cr_assert_eq(gp_sess_server_amp_allow(w.srv, ADDR(A3), 1), 0, "nothing received");
    gp_sess_server_amp_credit(w.srv, ADDR(A3), 100);
    cr_assert(gp_sess_server_amp_allow(w.srv, ADDR(A3), 300));
    cr_assert_not(gp_sess_server_amp_allow(w.srv, ADDR(A3), 1));
    gp_sess_server_amp_credit(w.srv, ADDR(A3), 1);
    cr_assert(gp_sess_server_amp_allow(w.srv, ADDR(A3), 3));
    cr_assert_not(gp_sess_server_amp_allow(w.srv, ADDR(A3), 1));
    gp_sess_server_amp_validate(w.srv, ADDR(A3));
    cr_assert(gp_sess_server_amp_allow(w.srv, ADDR(A3), 100000));

    /* The handshake applies it: one initiation credited, responses resent until the budget
     * runs out; never more than 3x what the address sent. */
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL);
    uint8_t init[BUF], resp[BUF];
    gp_sess *b;
    gp_sess_hs *hs;
    ssize_t n = hello_new(&w, h, init, ADDR(A2), &hs);
    ssize_t sent =
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A2), w.now, WALL, resp, sizeof resp, &b);
    cr_assert_gt(sent, 0);
    int blocked = 0;
    for (int i = 0; i < 50; i++) {
        ssize_t r = gp_sess_server_resend(w.srv, b, ADDR(A2), w.now, resp, sizeof resp);
        cr_assert_geq(r, 0);
        if (r == 0) {
            blocked = 1;
            break;
        }
        sent += r;
    }
    cr_assert(blocked);
    cr_assert_leq(sent, 3 * n);
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_amp, 1);
    /* An address that sent nothing gets nothing; a cookie reply is never larger than the
     * initiation. */
    cr_assert_eq(gp_sess_server_resend(w.srv, b, ADDR(A1), w.now, resp, sizeof resp), 0);
    for (int i = 0; i < 200; i++) {
        n = gp_sess_client_hello(h, init, sizeof init, w.now);
        gp_sess_server_amp_credit(w.srv, ADDR(A1), (size_t)n);
        ssize_t cn =
            gp_sess_server_cookie_reply(w.srv, init, (size_t)n, ADDR(A1), w.now, resp, sizeof resp);
        cr_assert_gt(cn, 0);
        cr_assert_leq(cn, n);
    }
    world_end(&w, b, h);
}

/* A lost response: the house retransmits (different bytes, same handshake), the bridge answers
 * with the same session's response, and both end with the same keys. */
Test(rudp_sess, lost_response_retransmit) {
    world w;
    gp_sess *h = world_house(&w, 10);
    uint8_t i1[BUF], i2[BUF], r1[BUF], r2[BUF], out[BUF], dg[BUF];
    gp_sess *s, *b;
    gp_sess_hs *hs;
    ssize_t n1 = hello_new(&w, h, i1, ADDR(A1), &hs);
    ssize_t m1 =
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A1), w.now, WALL, r1, sizeof r1, &b);
    cr_assert_gt(m1, 0); /* ... and lost */
    cr_assert_eq(gp_sess_expiry(h), w.now + NS);
    w.now += NS;
    ssize_t n2 = gp_sess_client_hello(h, i2, sizeof i2, w.now);
    cr_assert(n1 != n2 || memcmp(i1, i2, (size_t)n1) != 0, "a retransmit looks new");
    cr_assert_eq(gp_sess_expiry(h), w.now + 3 * NS / 2);
    cr_assert_eq(gp_sess_server_classify(w.srv, i2, (size_t)n2, ADDR(A1), 0, w.now, &s),
                 GP_SESS_INIT);
    cr_assert_eq(gp_sess_server_parse(w.srv, i2, (size_t)n2, w.now, &hs, &s),
                 GP_SESS_HS_RETRANSMIT);
    cr_assert_eq(s, b);
    ssize_t m2 = gp_sess_server_resend(w.srv, b, ADDR(A1), w.now, r2, sizeof r2);
    cr_assert_gt(m2, 0);
    cr_assert_leq(m2, n2);
    cr_assert(m1 != m2 || memcmp(r1, r2, (size_t)m1) != 0, "the resent response looks new");
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(h, r2, (size_t)m2, out, sizeof out, w.now, &f), 0);
    cr_assert(f & GP_SESS_RX_ESTABLISHED);
    /* The first response, late: a counted duplicate, nothing changes. */
    cr_assert_eq(gp_sess_open(h, r1, (size_t)m1, out, sizeof out, w.now, &f), GP_ERR_STATE);
    gp_sess_counters hc;
    gp_sess_stats(h, &hc);
    cr_assert_eq(hc.drop_handshake, 1);
    ssize_t n = gp_sess_seal(h, (const uint8_t *)"ping", 4, dg, sizeof dg, w.now);
    cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, &f), 4);
    cr_assert(f & GP_SESS_RX_CONFIRMED);
    /* Once confirmed, a retransmitted initiation is stale: dropped. */
    cr_assert_eq(gp_sess_server_parse(w.srv, i2, (size_t)n2, w.now, &hs, &s), GP_ERR_AUTH);
    cr_assert_eq(gp_sess_server_resend(w.srv, b, ADDR(A1), w.now, r2, sizeof r2), GP_ERR_STATE);
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.retransmits, 1);
    cr_assert_eq(c.handshakes, 1);
    world_end(&w, b, h);
}

/* Every single-bit flip of the datagram p[0..n) and every truncation of it is refused by house
 * h (the flips with GP_ERR_AUTH when auth_err, else with any error); p is left as it was. */
static void refused_if_tampered(gp_sess *h, uint64_t now, uint8_t *p, ssize_t n, int auth_err,
                                const char *what) {
    uint8_t out[BUF];
    for (ssize_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1 << bit);
            int rc = gp_sess_open(h, p, (size_t)n, out, sizeof out, now, NULL);
            cr_assert(auth_err ? rc == GP_ERR_AUTH : rc < 0, "%s byte %zd bit %d: %d", what, i, bit,
                      rc);
            p[i] ^= (uint8_t)(1 << bit);
        }
    for (ssize_t len = 0; len < n; len++)
        cr_assert_lt(gp_sess_open(h, p, (size_t)len, out, sizeof out, now, NULL), 0,
                     "%s cut at %zd", what, len);
}

/* Every bit of a response and of a cookie reply is authenticated: any flip is refused, and the
 * handshake then still completes with the genuine datagram. */
Test(rudp_sess, tampered_handshake_replies_refused) {
    world w;
    gp_sess *h = world_house(&w, 15);
    uint8_t init[BUF], ck[BUF], resp[BUF], out[BUF];
    ssize_t n;
    gp_sess *s, *b;
    gp_sess_hs *hs;
    gp_sess_server_amp_validate(w.srv, ADDR(A1));
    ssize_t cn = hello_cookie(&w, h, init, &n, ADDR(A1), ck);
    refused_if_tampered(h, w.now, ck, cn, 1, "cookie");
    cr_assert_eq(gp_sess_expiry(h), w.now + NS, "no cookie taken");
    cr_assert_eq(gp_sess_server_parse(w.srv, init, (size_t)n, w.now, &hs, &s), GP_SESS_HS_NEW);
    ssize_t r =
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A1), w.now, WALL, resp, sizeof resp, &b);
    refused_if_tampered(h, w.now, resp, r, 0, "response");
    cr_assert_not(gp_sess_established(h));
    gp_sess_counters c;
    gp_sess_stats(h, &c);
    cr_assert_eq(c.drop_auth + c.drop_type + c.drop_short, (uint64_t)(8 * cn + cn + 8 * r + r));
    unsigned f = 0;
    cr_assert_eq(gp_sess_open(h, ck, (size_t)cn, out, sizeof out, w.now, &f), 0);
    cr_assert(f & GP_SESS_RX_COOKIE);
    cr_assert_eq(gp_sess_open(h, resp, (size_t)r, out, sizeof out, w.now, &f), 0);
    cr_assert(f & GP_SESS_RX_ESTABLISHED);
    world_end(&w, b, h);
}

/* A retransmit parsed while the first copy still awaits its psk: the second respond resends. */
Test(rudp_sess, duplicate_initiations_awaiting_psk) {
    world w;
    gp_sess *h = world_house(&w, 11);
    uint8_t i1[BUF], i2[BUF], r1[BUF], r2[BUF], out[BUF];
    ssize_t n1 = gp_sess_client_hello(h, i1, sizeof i1, w.now);
    ssize_t n2 = gp_sess_client_hello(h, i2, sizeof i2, w.now);
    gp_sess *s, *b1, *b2;
    gp_sess_hs *hs1, *hs2;
    gp_sess_server_amp_credit(w.srv, ADDR(A1), 1000);
    cr_assert_eq(gp_sess_server_parse(w.srv, i1, (size_t)n1, w.now, &hs1, &s), GP_SESS_HS_NEW);
    cr_assert_eq(gp_sess_server_parse(w.srv, i2, (size_t)n2, w.now, &hs2, &s), GP_SESS_HS_NEW);
    ssize_t m1 =
        gp_sess_server_respond(w.srv, hs1, psk, 0, ADDR(A1), w.now, WALL, r1, sizeof r1, &b1);
    ssize_t m2 =
        gp_sess_server_respond(w.srv, hs2, psk, 0, ADDR(A1), w.now, WALL, r2, sizeof r2, &b2);
    cr_assert_gt(m1, 0);
    cr_assert_gt(m2, 0);
    cr_assert_not_null(b1);
    cr_assert_null(b2, "no second session");
    cr_assert_eq(gp_sess_open(h, r2, (size_t)m2, out, sizeof out, w.now, NULL), 0);
    cr_assert_eq(gp_sess_cid(h), gp_sess_cid(b1));
    gp_sess_free(b1);
    gp_sess_free(h);
    world_free(&w);
}

Test(rudp_sess, handshake_replay_rejected) {
    gp_sess_server_conf sc = {.retransmit_window_ns = 5 * NS};
    world w;
    world_init(&w, 12, &sc);
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL);
    uint8_t init[BUF], resp[BUF];
    ssize_t n = gp_sess_client_hello(h, init, sizeof init, w.now);
    gp_sess *b = do_handshake(&w, h, psk, ADDR(A1));
    (void)n;
    gp_sess *s;
    gp_sess_hs *hs;
    gp_sess_server_counters c;
    /* (a) the captured initiation, replayed after the retransmit window */
    w.now += 6 * NS;
    cr_assert_eq(gp_sess_server_classify(w.srv, init, (size_t)n, ADDR(A3), 0, w.now, &s),
                 GP_SESS_INIT);
    cr_assert_eq(gp_sess_server_parse(w.srv, init, (size_t)n, w.now, &hs, &s), GP_ERR_AUTH);
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_replay, 1);
    /* (b) a new initiation with an older or equal timestamp */
    uint64_t walls[] = {WALL - 1, WALL};
    for (int i = 0; i < 2; i++) {
        gp_sess *old = house_new(&w, NULL, "house-1", psk, walls[i]);
        refused_at_respond(&w, old, psk);
        gp_sess_free(old);
    }
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_replay, 3);
    /* (c) newer than this bridge knows but not than the shared floor (another bridge's) */
    gp_sess *h2 = house_new(&w, NULL, "house-1", psk, WALL + 10);
    ssize_t m = gp_sess_client_hello(h2, init, sizeof init, w.now);
    cr_assert_eq(gp_sess_server_parse(w.srv, init, (size_t)m, w.now, &hs, &s), GP_SESS_HS_NEW);
    cr_assert_eq(gp_sess_server_respond(w.srv, hs, psk, WALL + 10, ADDR(A1), w.now, WALL, resp,
                                        sizeof resp, &s),
                 GP_ERR_AUTH);
    gp_sess_free(h2);
    /* (d) newer than all: a re-handshake, accepted; the old session keeps working */
    gp_sess *h3 = house_new(&w, NULL, "house-1", psk, WALL + 11);
    gp_sess *b3 = do_handshake(&w, h3, psk, ADDR(A2));
    uint8_t dg[BUF], out[BUF];
    ssize_t k = gp_sess_seal(h, (const uint8_t *)"old", 3, dg, sizeof dg, w.now);
    cr_assert_eq(c2s(&w, dg, (size_t)k, ADDR(A1), out, NULL), 3);
    k = gp_sess_seal(b, (const uint8_t *)"old", 3, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(h, dg, (size_t)k, out, sizeof out, w.now, NULL), 3);
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_replay, 4);
    cr_assert_eq(c.handshakes, 2);
    gp_sess_free(b3);
    gp_sess_free(h3);
    world_end(&w, b, h);
}

Test(rudp_sess, clock_skew_checked_when_configured) {
    gp_sess_server_conf sc = {.max_skew_ms = 60000};
    world w;
    world_init(&w, 13, &sc);
    uint64_t walls[] = {WALL - 61000, WALL + 61000};
    for (int i = 0; i < 2; i++) {
        gp_sess *h = house_new(&w, NULL, "house-1", psk, walls[i]);
        refused_at_respond(&w, h, psk);
        gp_sess_free(h);
    }
    gp_sess_server_counters c;
    gp_sess_server_stats(w.srv, &c);
    cr_assert_eq(c.drop_skew, 2);
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL + 59000);
    gp_sess *b = do_handshake(&w, h, psk, ADDR(A1));
    world_end(&w, b, h);
}

Test(rudp_sess, pending_handshakes_bounded) {
    gp_sess_server_conf sc = {.max_pending = 2};
    world w;
    world_init(&w, 14, &sc);
    uint8_t init[BUF];
    gp_sess_hs *hs[3] = {0};
    gp_sess *s, *h[3];
    for (int i = 0; i < 3; i++) {
        h[i] = house_new(&w, NULL, "house-1", psk, WALL + (uint64_t)i);
        ssize_t n = gp_sess_client_hello(h[i], init, sizeof init, w.now);
        int rc = gp_sess_server_parse(w.srv, init, (size_t)n, w.now, &hs[i], &s);
        cr_assert_eq(rc, i < 2 ? GP_SESS_HS_NEW : GP_ERR_TOO_LARGE);
        if (i == 2) {
            gp_sess_hs_free(hs[0]);
            cr_assert_eq(gp_sess_server_parse(w.srv, init, (size_t)n, w.now, &hs[2], &s),
                         GP_SESS_HS_NEW);
        }
    }
    gp_sess_hs_free(hs[1]);
    /* The server may go first: the handshake it left behind is detached. */
    gp_sess_server_free(w.srv);
    w.srv = NULL;
    uint8_t resp[BUF];
    cr_assert_eq(gp_sess_server_respond(NULL, hs[2], psk, 0, ADDR(A1), w.now, WALL, resp, 200, &s),
                 GP_ERR_STATE);
    for (int i = 0; i < 3; i++)
        gp_sess_free(h[i]);
}

/* ---- datagrams ------------------------------------------------------------------------- */

Test(rudp_sess, tampered_datagrams_dropped_and_counted) {
    world w;
    world_up(&w, 20, NULL, NULL);
    uint8_t pl[300], dg[BUF], out[BUF];
    fill(pl, sizeof pl, 3);
    /* house -> bridge: every byte, three different flips, through classify as received */
    ssize_t n = gp_sess_seal(w.house, pl, sizeof pl, dg, sizeof dg, w.now);
    gp_sess_server_counters c0, c1;
    gp_sess_counters s0, s1;
    gp_sess_server_stats(w.srv, &c0);
    gp_sess_stats(w.bridge, &s0);
    const uint8_t flips[] = {0x01, 0x80, 0xff};
    uint64_t tries = 0;
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t j = 0; j < sizeof flips; j++) {
            dg[i] ^= flips[j];
            cr_assert_lt(c2s(&w, dg, (size_t)n, ADDR(A1), out, NULL), 0, "byte %zu", i);
            dg[i] ^= flips[j];
            tries++;
        }
    gp_sess_server_stats(w.srv, &c1);
    gp_sess_stats(w.bridge, &s1);
    cr_assert_eq(srv_drops(&c1) - srv_drops(&c0) + sess_drops(&s1) - sess_drops(&s0), tries);
    cr_assert_gt(s1.drop_auth, s0.drop_auth);
    cr_assert_eq(s1.rx_datagrams, s0.rx_datagrams);
    cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, NULL), (ssize_t)sizeof pl);
    cr_assert_eq(memcmp(out, pl, sizeof pl), 0);

    /* bridge -> house */
    n = gp_sess_seal(w.bridge, pl, sizeof pl, dg, sizeof dg, w.now);
    gp_sess_stats(w.house, &s0);
    tries = 0;
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t j = 0; j < sizeof flips; j++) {
            dg[i] ^= flips[j];
            cr_assert_lt(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 0);
            dg[i] ^= flips[j];
            tries++;
        }
    gp_sess_stats(w.house, &s1);
    cr_assert_eq(sess_drops(&s1) - sess_drops(&s0), tries);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL),
                 (ssize_t)sizeof pl);
    world_free(&w);
}

Test(rudp_sess, truncated_datagrams_dropped_at_every_length) {
    world w;
    world_up(&w, 21, NULL, NULL);
    uint8_t pl[200], dg[BUF], out[BUF];
    fill(pl, sizeof pl, 4);
    gp_sess *sides[2] = {w.house, w.bridge};
    for (int d = 0; d < 2; d++) {
        gp_sess *tx = sides[d], *rx = sides[1 - d];
        ssize_t n = gp_sess_seal(tx, pl, sizeof pl, dg, sizeof dg, w.now);
        gp_sess_counters s0, s1;
        gp_sess_server_counters c0, c1;
        gp_sess_stats(rx, &s0);
        gp_sess_server_stats(w.srv, &c0);
        for (size_t len = 0; len < (size_t)n; len++) {
            ssize_t r = d == 0 ? c2s(&w, dg, len, ADDR(A1), out, NULL)
                               : gp_sess_open(rx, dg, len, out, sizeof out, w.now, NULL);
            cr_assert_lt(r, 0, "length %zu", len);
            /* and the tail alone (a datagram cut at the front) */
            r = d == 0 ? c2s(&w, dg + len + 1, (size_t)n - len - 1, ADDR(A1), out, NULL)
                       : gp_sess_open(rx, dg + len + 1, (size_t)n - len - 1, out, sizeof out, w.now,
                                      NULL);
            cr_assert_lt(r, 0);
        }
        gp_sess_stats(rx, &s1);
        gp_sess_server_stats(w.srv, &c1);
        cr_assert_eq(sess_drops(&s1) - sess_drops(&s0) + srv_drops(&c1) - srv_drops(&c0),
                     2 * (uint64_t)n);
        cr_assert_eq(d == 0 ? c2s(&w, dg, (size_t)n, ADDR(A1), out, NULL)
                            : gp_sess_open(rx, dg, (size_t)n, out, sizeof out, w.now, NULL),
                     (ssize_t)sizeof pl);
    }
    world_free(&w);
}

Test(rudp_sess, replayed_datagrams_dropped) {
    world w;
    world_up(&w, 22, NULL, NULL);
    uint8_t dg[BUF], out[BUF];
    ssize_t n = gp_sess_seal(w.house, (const uint8_t *)"x", 1, dg, sizeof dg, w.now);
    cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, NULL), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A2), out, NULL), GP_ERR_AUTH);
    gp_sess_counters c;
    gp_sess_stats(w.bridge, &c);
    cr_assert_eq(c.drop_replay, 3);
    n = gp_sess_seal(w.bridge, (const uint8_t *)"y", 1, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), GP_ERR_AUTH);
    gp_sess_stats(w.house, &c);
    cr_assert_eq(c.drop_replay, 1);
    world_free(&w);
}

/* Two houses on one bridge: each session refuses the other's datagrams. */
Test(rudp_sess, foreign_datagrams_dropped) {
    world w;
    world_up(&w, 23, NULL, NULL);
    gp_sess *h2 = house_new(&w, NULL, "house-2", psk2, WALL);
    gp_sess *b2 = do_handshake(&w, h2, psk2, ADDR(A2));
    uint8_t dg[BUF], out[BUF];
    ssize_t n = gp_sess_seal(h2, (const uint8_t *)"b", 1, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.bridge, dg, (size_t)n, out, sizeof out, w.now, NULL), GP_ERR_AUTH);
    gp_sess_counters c;
    gp_sess_stats(w.bridge, &c);
    cr_assert_eq(c.drop_foreign, 1);
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR(A1), 0, w.now, &s),
                 GP_SESS_DATA);
    cr_assert_eq(s, b2, "classify finds the right session, whatever the address");
    cr_assert_eq(gp_sess_open(b2, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
    for (int i = 0; i < 50; i++) {
        n = gp_sess_seal(b2, (const uint8_t *)"c", 1, dg, sizeof dg, w.now);
        cr_assert_lt(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 0);
        cr_assert_eq(gp_sess_open(h2, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
    }
    gp_sess_stats(w.house, &c);
    cr_assert_eq(c.drop_type + c.drop_auth, 50);
    /* A freed session's datagrams are unknown to the server. */
    n = gp_sess_seal(h2, (const uint8_t *)"d", 1, dg, sizeof dg, w.now);
    gp_sess_free(b2);
    cr_assert_eq(gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR(A2), 0, w.now, &s),
                 GP_SESS_DROP);
    gp_sess_server_counters sc;
    gp_sess_server_stats(w.srv, &sc);
    cr_assert_eq(sc.drop_unknown_cid, 1);
    gp_sess_free(h2);
    world_free(&w);
}

Test(rudp_sess, replay_window_edges) {
    world w;
    world_up(&w, 24, NULL, NULL); /* packet 0 (the confirming keepalive) already delivered */
    enum { N = 5000 };
    static uint8_t dgs[N][64];
    static size_t lens[N];
    for (int i = 1; i < N; i++) {
        ssize_t n = gp_sess_seal(w.house, (const uint8_t *)&i, sizeof i, dgs[i], 64, w.now);
        cr_assert_gt(n, 0);
        lens[i] = (size_t)n;
    }
    uint8_t out[BUF];
    unsigned f;
#define DELIVER(i) c2s(&w, dgs[i], lens[i], ADDR(A1), out, &f)
    cr_assert_eq(DELIVER(3), 4);
    cr_assert(f & GP_SESS_RX_NEWEST);
    cr_assert_eq(DELIVER(2), 4, "late but in the window");
    cr_assert_not(f & GP_SESS_RX_NEWEST);
    cr_assert_eq(DELIVER(2), GP_ERR_AUTH, "duplicate");
    cr_assert_eq(DELIVER(4999), 4, "far ahead");
    cr_assert_eq(DELIVER(4999 - 2048), GP_ERR_AUTH, "just outside the window");
    cr_assert_eq(DELIVER(4999 - 2047), 4, "oldest slot inside the window");
    cr_assert_eq(DELIVER(4999 - 2047), GP_ERR_AUTH);
    cr_assert_eq(DELIVER(1), GP_ERR_AUTH, "long gone");
    for (int i = 4000; i < 4999; i += 3)
        cr_assert_eq(DELIVER(i), 4);
    for (int i = 4000; i < 4999; i += 3)
        cr_assert_eq(DELIVER(i), GP_ERR_AUTH);
    gp_sess_counters c;
    gp_sess_stats(w.bridge, &c);
    cr_assert_eq(c.drop_replay, 4 + 333);
#undef DELIVER
    world_free(&w);
}

Test(rudp_sess, packet_number_expansion) {
    const uint64_t W = 1ull << 28; /* 28 bits of the packet number are on the wire */
    cr_assert_eq(gp_sess_pn_expand(0, 0, 0), 0);
    cr_assert_eq(gp_sess_pn_expand(0, 0, 5), 5);
    cr_assert_eq(gp_sess_pn_expand(W - 2, 1, 1), W + 1, "wraps forward");
    cr_assert_eq(gp_sess_pn_expand(W + 1, 1, (uint32_t)(W - 3)), W - 3, "late, behind a wrap");
    cr_assert_eq(gp_sess_pn_expand(5 * W + 10, 1, 9), 5 * W + 9);
    cr_assert_eq(gp_sess_pn_expand(5 * W + 10, 1, 10 + (uint32_t)(W / 2) - 1),
                 5 * W + 10 + W / 2 - 1);
}

/* Rekey every 16 datagrams. The sender seals batches of 12, delivered shuffled (so datagrams
 * of the old epoch arrive after the new one's), and the receiver answers each batch (as acks
 * would): all delivered exactly once, and the receiver follows every epoch. */
Test(rudp_sess, rekey_with_reordering_across_the_switch) {
    gp_sess_server_conf sc = {.sess = {.rekey_packets = 16}};
    gp_sess_conf hc = {.rekey_packets = 16};
    world w;
    world_up(&w, 25, &sc, &hc);
    enum { N = 400, WIN = 12 };
    static uint8_t dgs[N][128];
    size_t lens[N];
    int order[N];
    for (int d = 0; d < 2; d++) {
        gp_sess *tx = d == 0 ? w.house : w.bridge, *rx = d == 0 ? w.bridge : w.house;
        trng r = trng_seed(5 + (uint64_t)d);
        int seen[N] = {0}, switches_in_batch = 0;
        for (int b = 0; b < N; b += WIN) {
            int cnt = b + WIN < N ? WIN : N - b;
            gp_sess_counters before;
            gp_sess_stats(tx, &before);
            for (int i = b; i < b + cnt; i++) {
                ssize_t n = gp_sess_seal(tx, (const uint8_t *)&i, sizeof i, dgs[i], 128, w.now);
                cr_assert_gt(n, 0);
                lens[i] = (size_t)n;
                order[i] = i;
            }
            gp_sess_counters after;
            gp_sess_stats(tx, &after);
            switches_in_batch += after.rekey_tx != before.rekey_tx;
            for (int i = b + cnt - 1; i > b; i--) {
                uint8_t x;
                trand(&r, &x, 1);
                int j = b + x % (i - b + 1), t = order[i];
                order[i] = order[j], order[j] = t;
            }
            for (int k = b; k < b + cnt; k++) {
                uint8_t out[BUF];
                int i = order[k], v;
                ssize_t got = d == 0
                                  ? c2s(&w, dgs[i], lens[i], ADDR(A1), out, NULL)
                                  : gp_sess_open(rx, dgs[i], lens[i], out, sizeof out, w.now, NULL);
                cr_assert_eq(got, 4, "datagram %d (position %d)", i, k);
                memcpy(&v, out, 4);
                cr_assert_eq(v, i);
                seen[i]++;
            }
            uint8_t ack[BUF], out[BUF];
            ssize_t n = gp_sess_seal(rx, NULL, 0, ack, sizeof ack, w.now);
            cr_assert_eq(d == 0 ? gp_sess_open(tx, ack, (size_t)n, out, sizeof out, w.now, NULL)
                                : c2s(&w, ack, (size_t)n, ADDR(A1), out, NULL),
                         0);
        }
        for (int i = 0; i < N; i++)
            cr_assert_eq(seen[i], 1);
        gp_sess_counters tc, rc;
        gp_sess_stats(tx, &tc);
        gp_sess_stats(rx, &rc);
        cr_assert_geq(tc.rekey_tx, N / 24 - 1);
        cr_assert_eq(rc.rekey_rx, tc.rekey_tx, "the receiver followed every epoch");
        cr_assert_geq(switches_in_batch, N / 24 - 1);
    }
    world_free(&w);
}

/* A sender whose datagrams are all lost moves at most one epoch ahead (it waits for the peer's
 * echo), so the session survives any loss; stragglers of the previous epoch open until
 * old_key_ns; time alone also rotates keys. */
Test(rudp_sess, rekey_waits_for_peer_and_old_key_expires) {
    gp_sess_conf hc = {.rekey_packets = 4, .rekey_ns = 30 * NS};
    gp_sess_server_conf sc = {.sess = {.old_key_ns = 2 * NS}};
    world w;
    world_up(&w, 26, &sc, &hc); /* the house's packet 0 delivered, epoch 0 */
    uint8_t dgs[40][128], out[BUF], dg[BUF];
    size_t lens[40];
    gp_sess_counters c;
    /* 40 datagrams, all lost: pn 1-3 in epoch 0, then epoch 1 and no further */
    for (int i = 0; i < 40; i++)
        lens[i] = (size_t)gp_sess_seal(w.house, (const uint8_t *)"k", 1, dgs[i], 128, w.now);
    gp_sess_stats(w.house, &c);
    cr_assert_eq(c.rekey_tx, 1, "one epoch ahead at most");
    unsigned f = 0;
    cr_assert_eq(c2s(&w, dgs[39], lens[39], ADDR(A1), out, &f), 1);
    cr_assert(f & GP_SESS_RX_REKEY);
    cr_assert_eq(c2s(&w, dgs[1], lens[1], ADDR(A1), out, NULL), 1, "previous epoch straggler");
    /* The bridge's next datagram echoes epoch 1: the house may move on. */
    ssize_t n = gp_sess_seal(w.bridge, NULL, 0, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 0);
    n = gp_sess_seal(w.house, (const uint8_t *)"x", 1, dg, sizeof dg, w.now);
    gp_sess_stats(w.house, &c);
    cr_assert_eq(c.rekey_tx, 2);
    cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, &f), 1);
    cr_assert(f & GP_SESS_RX_REKEY);
    cr_assert_eq(c2s(&w, dgs[31], lens[31], ADDR(A1), out, NULL), 1, "epoch 1, key still kept");
    w.now += 3 * NS;
    cr_assert_eq(c2s(&w, dgs[30], lens[30], ADDR(A1), out, NULL), GP_ERR_AUTH, "expired key");
    cr_assert_eq(c2s(&w, dgs[2], lens[2], ADDR(A1), out, NULL), GP_ERR_AUTH, "two epochs back");
    gp_sess_stats(w.bridge, &c);
    cr_assert_eq(c.drop_old_key, 2);
    cr_assert_eq(c.rekey_rx, 2);
    /* Time-based: 30 s with one key, then a new one at the next datagram. */
    n = gp_sess_seal(w.bridge, NULL, 0, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 0);
    w.now += 31 * NS;
    n = gp_sess_seal(w.house, (const uint8_t *)"t", 1, dg, sizeof dg, w.now);
    gp_sess_stats(w.house, &c);
    cr_assert_eq(c.rekey_tx, 3, "by time, after 1 datagram of 4");
    cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, &f), 1);
    cr_assert(f & GP_SESS_RX_REKEY);
    world_free(&w);
}

/* NAT rebinding: the same session is found from a new address; only datagrams that advance
 * the packet number say "newest" (a replayed old one cannot move the peer's address). */
Test(rudp_sess, connection_id_survives_address_change) {
    world w;
    world_up(&w, 27, NULL, NULL);
    uint8_t d1[BUF], d2[BUF], out[BUF];
    ssize_t n1 = gp_sess_seal(w.house, (const uint8_t *)"1", 1, d1, sizeof d1, w.now);
    ssize_t n2 = gp_sess_seal(w.house, (const uint8_t *)"2", 1, d2, sizeof d2, w.now);
    gp_sess *s;
    cr_assert_eq(gp_sess_server_classify(w.srv, d2, (size_t)n2, ADDR(A2), 0, w.now, &s),
                 GP_SESS_DATA);
    cr_assert_eq(s, w.bridge);
    unsigned f;
    cr_assert_eq(gp_sess_open(s, d2, (size_t)n2, out, sizeof out, w.now, &f), 1);
    cr_assert(f & GP_SESS_RX_NEWEST);
    cr_assert_eq(gp_sess_server_classify(w.srv, d1, (size_t)n1, ADDR(A3), 0, w.now, &s),
                 GP_SESS_DATA);
    cr_assert_eq(gp_sess_open(s, d1, (size_t)n1, out, sizeof out, w.now, &f), 1);
    cr_assert_not(f & GP_SESS_RX_NEWEST);
    /* the cid is never on the wire in clear: not as bytes, at any offset */
    uint8_t cid[8];
    uint64_t v = gp_sess_cid(w.house);
    for (int i = 0; i < 8; i++)
        cid[i] = (uint8_t)(v >> (56 - 8 * i));
    for (int i = 0; i < 1000; i++) {
        ssize_t n = gp_sess_seal(w.house, (const uint8_t *)"z", 1, d1, sizeof d1, w.now);
        cr_assert_null(memmem(d1, (size_t)n, cid, 8));
        cr_assert_null(memmem(d1, (size_t)n, cid, 4));
    }
    world_free(&w);
}

/* Each of the first `pos` byte positions: every bit takes both values and there are many
 * distinct values. */
static void check_no_constant(uint8_t (*first)[16], size_t count, const char *what) {
    for (int p = 0; p < 16; p++) {
        int seen[256] = {0}, distinct = 0;
        unsigned and_ = 0xff, or_ = 0;
        for (size_t i = 0; i < count; i++) {
            distinct += !seen[first[i][p]]++;
            and_ &= first[i][p];
            or_ |= first[i][p];
        }
        cr_assert_eq(and_, 0, "%s: a bit always 1 at byte %d", what, p);
        cr_assert_eq(or_, 0xff, "%s: a bit always 0 at byte %d", what, p);
        cr_assert_geq(distinct, 250, "%s: byte %d has only %d values", what, p, distinct);
    }
}

Test(rudp_sess, no_constant_byte_in_datagrams) {
    world w;
    world_up(&w, 28, NULL, NULL);
    enum { N = 10000 };
    static uint8_t first[N][16];
    uint8_t zero[64] = {0}, dg[BUF], out[BUF];
    for (int d = 0; d < 2; d++) {
        gp_sess *tx = d == 0 ? w.house : w.bridge, *rx = d == 0 ? w.bridge : w.house;
        for (int i = 0; i < N; i++) {
            /* the same (all-zero) payload every time: only masking makes bytes differ */
            ssize_t n = gp_sess_seal(tx, zero, sizeof zero, dg, sizeof dg, w.now);
            cr_assert_geq(n, 16);
            memcpy(first[i], dg, 16);
            cr_assert_eq(gp_sess_open(rx, dg, (size_t)n, out, sizeof out, w.now, NULL), 64);
        }
        check_no_constant(first, N, d == 0 ? "house->bridge" : "bridge->house");
    }
    world_free(&w);
}

Test(rudp_sess, no_constant_byte_in_handshakes) {
    world w;
    world_init(&w, 29, NULL);
    enum { N = 10000, R = 1000 };
    static uint8_t first[N][16];
    uint8_t dg[BUF], resp[BUF];
    /* initiations of 10,000 handshakes of one house */
    for (int i = 0; i < N; i++) {
        gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL + (uint64_t)i);
        ssize_t n = gp_sess_client_hello(h, dg, sizeof dg, w.now);
        memcpy(first[i], dg, 16);
        gp_sess_free(h);
        (void)n;
    }
    check_no_constant(first, N, "initiations");
    /* 10,000 retransmits of one initiation */
    gp_sess *h = house_new(&w, NULL, "house-1", psk, WALL);
    for (int i = 0; i < N; i++) {
        ssize_t n = gp_sess_client_hello(h, dg, sizeof dg, w.now);
        cr_assert_gt(n, 0);
        memcpy(first[i], dg, 16);
    }
    check_no_constant(first, N, "retransmitted initiation");
    /* responses resent, and cookie replies */
    ssize_t n = gp_sess_client_hello(h, dg, sizeof dg, w.now);
    gp_sess *s, *b;
    gp_sess_hs *hs;
    gp_sess_server_amp_validate(w.srv, ADDR(A1));
    cr_assert_eq(gp_sess_server_parse(w.srv, dg, (size_t)n, w.now, &hs, &s), GP_SESS_HS_NEW);
    cr_assert_gt(
        gp_sess_server_respond(w.srv, hs, psk, 0, ADDR(A1), w.now, WALL, resp, sizeof resp, &b), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_gt(gp_sess_server_resend(w.srv, b, ADDR(A1), w.now, resp, sizeof resp), 0);
        memcpy(first[i], resp, 16);
    }
    check_no_constant(first, N, "responses");
    for (int i = 0; i < N; i++) {
        cr_assert_gt(
            gp_sess_server_cookie_reply(w.srv, dg, (size_t)n, ADDR(A1), w.now, resp, sizeof resp),
            0);
        memcpy(first[i], resp, 16);
    }
    check_no_constant(first, N, "cookie replies");
    (void)R;
    world_end(&w, b, h);
}

/* Padding: sizes spread over the session's ladder; the average growth stays bounded. */
Test(rudp_sess, padding_overhead_measured_and_bounded) {
    world w;
    world_up(&w, 30, NULL, NULL);
    uint8_t pl[BUF], dg[BUF], out[BUF];
    size_t maxp = gp_sess_max_payload(1200);
    fill(pl, maxp, 9);
    trng r = trng_seed(30);
    enum { N = 20000 };
    uint64_t wire = 0, payload = 0, unpadded = 0;
    int sizes[1201] = {0}, distinct = 0;
    for (int i = 0; i < N; i++) {
        uint8_t x[2];
        trand(&r, x, 2);
        size_t len = (size_t)((x[0] << 8 | x[1]) % (maxp + 1));
        ssize_t n = gp_sess_seal(w.house, pl, len, dg, sizeof dg, w.now);
        cr_assert_leq(n, 1200);
        cr_assert_geq(n, (ssize_t)(len + GP_SESS_OVERHEAD));
        distinct += !sizes[n]++;
        wire += (uint64_t)n;
        payload += len;
        unpadded += len + GP_SESS_OVERHEAD;
        cr_assert_eq(c2s(&w, dg, (size_t)n, ADDR(A1), out, NULL), (ssize_t)len);
    }
    double pad = (double)(wire - unpadded) / (double)unpadded;
    double total = (double)(wire - payload) / (double)payload;
    uint64_t fwire = 0;
    for (int i = 0; i < 1000; i++)
        fwire += (uint64_t)gp_sess_seal(w.house, pl, maxp, dg, sizeof dg, w.now);
    double full = (double)fwire / (1000.0 * (double)maxp) - 1;
    /* small payloads (acks) */
    uint64_t swire = 0;
    for (int i = 0; i < 1000; i++)
        swire += (uint64_t)gp_sess_seal(w.house, pl, 20, dg, sizeof dg, w.now);
    fprintf(stderr,
            "rudp_sess padding: uniform 0..%zu payloads: padding +%.1f%% over unpadded "
            "datagrams, total overhead %.1f%% of payload, %d distinct sizes; full-size (%zu): "
            "%.1f%% (%d bytes); 20-byte payloads: %.1f bytes on average\n",
            maxp, 100 * pad, 100 * total, distinct, maxp, 100 * full, GP_SESS_OVERHEAD,
            (double)swire / 1000);
    cr_assert_leq(pad, 0.15, "padding adds %.3f", pad);
    cr_assert_leq(full, 0.15);
    cr_assert_geq(distinct, 20);
    gp_sess_counters c;
    gp_sess_stats(w.house, &c);
    cr_assert_gt(c.tx_padding, 0);
    /* Sessions differ in their ladders. */
    world w2;
    world_up(&w2, 31, NULL, NULL);
    int differ = 0;
    for (int i = 0; i < 200 && !differ; i++) {
        ssize_t a = gp_sess_seal(w.house, pl, 10, dg, sizeof dg, w.now);
        ssize_t b = gp_sess_seal(w2.house, pl, 10, dg, sizeof dg, w.now);
        differ = a != b;
    }
    cr_assert(differ);
    world_free(&w2);
    world_free(&w);
}

Test(rudp_sess, payload_limits) {
    cr_assert_eq(gp_sess_max_payload(1200), 1170);
    cr_assert_eq(gp_sess_max_payload(1500), 1470);
    cr_assert_eq(gp_sess_max_payload(100), 0);
    world w;
    world_up(&w, 32, NULL, NULL);
    cr_assert_eq(gp_sess_payload_limit(w.house), 1170);
    cr_assert_eq(gp_sess_payload_limit(w.bridge), 1178);
    uint8_t pl[BUF] = {0}, dg[BUF], out[BUF];
    cr_assert_eq(gp_sess_seal(w.house, pl, 1170, dg, sizeof dg, w.now), 1200);
    cr_assert_eq(gp_sess_seal(w.house, pl, 1171, dg, sizeof dg, w.now), GP_ERR_TOO_LARGE);
    cr_assert_eq(gp_sess_seal(w.bridge, pl, 1178, dg, sizeof dg, w.now), 1200);
    cr_assert_eq(gp_sess_seal(w.house, pl, 100, dg, 129, w.now), GP_ERR_BUFFER);
    ssize_t n = gp_sess_seal(w.house, pl, 100, dg, 130, w.now);
    cr_assert_eq(n, 130, "padding shrinks to the buffer");
    cr_assert_eq(gp_sess_open(w.bridge, dg, (size_t)n, out, 10, w.now, NULL), GP_ERR_BUFFER);
    cr_assert_eq(gp_sess_open(w.bridge, dg, (size_t)n, out, (size_t)n, w.now, NULL), 100,
                 "a too-small buffer changed nothing");
    world_free(&w);
}

Test(rudp_sess, hello_schedule_and_lifetime) {
    world w;
    gp_sess *h = world_house(&w, 33);
    uint8_t dg[BUF];
    uint64_t t0 = w.now;
    cr_assert_eq(gp_sess_expiry(h), t0);
    uint64_t expect[] = {NS, NS + 3 * NS / 2, NS + 3 * NS / 2 + 9 * NS / 4};
    uint64_t t = t0;
    for (int i = 0; i < 3; i++) {
        cr_assert_gt(gp_sess_client_hello(h, dg, sizeof dg, t), 0);
        t = gp_sess_expiry(h);
        cr_assert_eq(t, t0 + expect[i]);
    }
    cr_assert_gt(gp_sess_client_hello(h, dg, sizeof dg, t), 0);
    cr_assert_eq(gp_sess_expiry(h) - t, 3 * NS, "capped at 3 s");
    cr_assert_eq(gp_sess_client_hello(h, dg, 169, t), GP_ERR_BUFFER);
    cr_assert_gt(gp_sess_client_hello(h, dg, sizeof dg, t0 + 15 * NS), 0);
    cr_assert_eq(gp_sess_client_hello(h, dg, sizeof dg, t0 + 15 * NS + 1), GP_ERR_STATE);
    gp_sess_counters c;
    gp_sess_stats(h, &c);
    cr_assert_eq(c.tx_hellos, 5);
    gp_sess_free(h);
    world_free(&w);
}

/* Many sessions on one server, freed in a shuffled order: the cid index stays exact. */
Test(rudp_sess, many_sessions_index) {
    world w;
    world_init(&w, 34, NULL);
    enum { N = 300 };
    gp_sess *h[N], *b[N];
    int alive[N];
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "house-%d", i);
        h[i] = house_new(&w, NULL, id, psk, WALL);
        b[i] = do_handshake(&w, h[i], psk, ADDR(A1));
        alive[i] = 1;
    }
    trng r = trng_seed(34);
    uint8_t dg[BUF], out[BUF];
    for (int round = 0; round < N; round++) {
        uint8_t x[2];
        trand(&r, x, 2);
        int k = (x[0] << 8 | x[1]) % N;
        if (alive[k]) {
            gp_sess_free(b[k]);
            alive[k] = 0;
        }
        for (int i = 0; i < N; i += 7) {
            ssize_t n = gp_sess_seal(h[i], (const uint8_t *)"i", 1, dg, sizeof dg, w.now);
            gp_sess *s;
            int kind = gp_sess_server_classify(w.srv, dg, (size_t)n, ADDR(A1), 0, w.now, &s);
            cr_assert_eq(kind, alive[i] ? GP_SESS_DATA : GP_SESS_DROP);
            if (alive[i]) {
                cr_assert_eq(s, b[i]);
                cr_assert_eq(gp_sess_open(s, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
            }
        }
    }
    for (int i = 0; i < N; i++) {
        if (alive[i])
            gp_sess_free(b[i]);
        gp_sess_free(h[i]);
    }
    world_free(&w);
}

/* The server may be freed before its sessions: they keep sealing and opening. */
Test(rudp_sess, sessions_outlive_server) {
    world w;
    world_up(&w, 35, NULL, NULL);
    gp_sess_server_free(w.srv);
    w.srv = NULL;
    uint8_t dg[BUF], out[BUF];
    ssize_t n = gp_sess_seal(w.house, (const uint8_t *)"q", 1, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.bridge, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
    n = gp_sess_seal(w.bridge, (const uint8_t *)"r", 1, dg, sizeof dg, w.now);
    cr_assert_eq(gp_sess_open(w.house, dg, (size_t)n, out, sizeof out, w.now, NULL), 1);
    world_free(&w);
    gp_sess_free(NULL);
    gp_sess_server_free(NULL);
    gp_sess_hs_free(NULL);
}
