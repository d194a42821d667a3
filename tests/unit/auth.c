/* Unit tests for proto/auth.c: the challenge–response proofs, decoy secrets, secrets at rest
 * and the failed-auth rate limiter. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"

static uint8_t secret[GP_SECRET_LEN], other[GP_SECRET_LEN], hn[32], bn[32], bn2[32];
static const gp_str id = GP_STR_LIT("house-1");

static void setup(void) {
    cr_assert_eq(gp_auth_init(), 0);
    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)i;
        other[i] = (uint8_t)(i + 1);
        hn[i] = (uint8_t)(0x40 + i);
        bn[i] = (uint8_t)(0x80 + i);
        bn2[i] = (uint8_t)(0xc0 + i);
    }
}

TestSuite(auth, .init = setup);

Test(auth, handshake_both_proofs_verify) {
    uint8_t bp[32], hp[32];
    gp_auth_proof(GP_ROLE_BRIDGE, secret, id, hn, bn, bp);
    cr_assert_eq(gp_auth_verify(GP_ROLE_BRIDGE, secret, id, hn, bn, bp), 0);
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, hp);
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, hp), 0);
    /* A proof for one role is not accepted for the other (no reflection). */
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, bp), GP_ERR_AUTH);
    cr_assert_eq(gp_auth_verify(GP_ROLE_BRIDGE, secret, id, hn, bn, hp), GP_ERR_AUTH);
}

Test(auth, replayed_auth_against_new_bridge_nonce_rejected) {
    uint8_t hp[32];
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, hp);
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn2, hp), GP_ERR_AUTH);
    /* And an old CHALLENGE replayed to a house with a fresh nonce. */
    uint8_t bp[32], hn2[32];
    memcpy(hn2, hn, 32);
    hn2[0] ^= 1;
    gp_auth_proof(GP_ROLE_BRIDGE, secret, id, hn, bn, bp);
    cr_assert_eq(gp_auth_verify(GP_ROLE_BRIDGE, secret, id, hn2, bn, bp), GP_ERR_AUTH);
}

Test(auth, every_bit_flip_rejected) {
    uint8_t hp[32];
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, hp);
    for (int bit = 0; bit < 256; bit++) {
        hp[bit / 8] ^= (uint8_t)(1 << (bit % 8));
        cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, hp), GP_ERR_AUTH);
        hp[bit / 8] ^= (uint8_t)(1 << (bit % 8));
    }
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, hp), 0);
    uint8_t zero[32] = {0};
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, zero), GP_ERR_AUTH);
}

Test(auth, wrong_secret_rejected) {
    uint8_t hp[32];
    gp_auth_proof(GP_ROLE_HOUSE, other, id, hn, bn, hp);
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, secret, id, hn, bn, hp), GP_ERR_AUTH);
}

Test(auth, proofs_differ_by_id_nonce_role) {
    uint8_t p[6][32];
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, p[0]);
    gp_auth_proof(GP_ROLE_BRIDGE, secret, id, hn, bn, p[1]);
    gp_auth_proof(GP_ROLE_HOUSE, secret, GP_STR_LIT("house-2"), hn, bn, p[2]);
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, bn, hn, p[3]); /* nonces swapped */
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn2, p[4]);
    gp_auth_proof(GP_ROLE_HOUSE, other, id, hn, bn, p[5]);
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            cr_assert(memcmp(p[i], p[j], 32) != 0, "proofs %d and %d collide", i, j);
    /* Deterministic for the same transcript. */
    uint8_t again[32];
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, again);
    cr_assert(memcmp(p[0], again, 32) == 0);
}

Test(auth, known_answer) {
    /* HMAC-SHA-256(secret, "gp/v1/house" | 00 07 | "house-1" | hn | bn), computed
     * independently with Python's hmac module; pins the wire format. */
    uint8_t hp[32];
    char hex[65];
    gp_auth_proof(GP_ROLE_HOUSE, secret, id, hn, bn, hp);
    gp_secret_to_hex(hp, hex);
    cr_assert_str_eq(hex, "e5d25c633910698d8ab421c43fe0795585da8c75f7e2c444d9b2413c3f6c9d29");
}

Test(auth, decoy_deterministic_per_id) {
    uint8_t key[32] = {9}, key2[32] = {10}, a[32], b[32], c[32], d[32];
    gp_auth_decoy_secret(key, id, a);
    gp_auth_decoy_secret(key, id, b);
    gp_auth_decoy_secret(key, GP_STR_LIT("house-2"), c);
    gp_auth_decoy_secret(key2, id, d);
    cr_assert(memcmp(a, b, 32) == 0);
    cr_assert(memcmp(a, c, 32) != 0);
    cr_assert(memcmp(a, d, 32) != 0);
}

Test(auth, house_id_charset) {
    cr_assert(gp_house_id_valid(GP_STR_LIT("abc-DEF_0.9")));
    cr_assert(!gp_house_id_valid(GP_STR_LIT("")));
    cr_assert(!gp_house_id_valid(GP_STR_LIT("a b")));
    cr_assert(!gp_house_id_valid(GP_STR_LIT("a{b}")));
    cr_assert(!gp_house_id_valid(GP_STR_LIT("a\0b")));
    char id64[65], id65[66];
    memset(id64, 'x', 64);
    id64[64] = 0;
    memset(id65, 'x', 65);
    id65[65] = 0;
    cr_assert(gp_house_id_valid(gp_str_c(id64)));
    cr_assert(!gp_house_id_valid(gp_str_c(id65)));
}

Test(auth, hex_round_trip_and_rejects) {
    char hex[65];
    uint8_t out[32];
    gp_secret_to_hex(secret, hex);
    cr_assert_eq(strlen(hex), 64);
    cr_assert_eq(gp_secret_from_hex(hex, out), 0);
    cr_assert(memcmp(out, secret, 32) == 0);
    for (int i = 0; i < 64; i++)
        hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]); /* upper case is fine */
    cr_assert_eq(gp_secret_from_hex(hex, out), 0);
    cr_assert(memcmp(out, secret, 32) == 0);
    hex[10] = 'g';
    cr_assert_eq(gp_secret_from_hex(hex, out), GP_ERR_INVALID);
    cr_assert_eq(gp_secret_from_hex("00", out), GP_ERR_INVALID);
    char longer[70];
    gp_secret_to_hex(secret, longer);
    strcat(longer, "00");
    cr_assert_eq(gp_secret_from_hex(longer, out), GP_ERR_INVALID);
    cr_assert_eq(gp_secret_from_hex("", out), GP_ERR_INVALID);
    cr_assert_eq(gp_secret_from_hex(NULL, out), GP_ERR_INVALID);
}

Test(auth, seal_open_round_trip) {
    uint8_t mk[32] = {1, 2, 3}, out[32];
    char sealed[GP_SEALED_MAX], sealed2[GP_SEALED_MAX];
    cr_assert_eq(gp_secret_seal(mk, id, secret, sealed), 0);
    cr_assert(strncmp(sealed, "enc1:", 5) == 0);
    cr_assert_lt(strlen(sealed), GP_SEALED_MAX);
    cr_assert_eq(gp_secret_open(mk, id, gp_str_c(sealed), out), 0);
    cr_assert(memcmp(out, secret, 32) == 0);
    /* A fresh nonce each time: equal secrets do not give equal stored values. */
    cr_assert_eq(gp_secret_seal(mk, id, secret, sealed2), 0);
    cr_assert_str_neq(sealed, sealed2);
}

Test(auth, seal_open_refuses_wrong_key_or_house) {
    uint8_t mk[32] = {1, 2, 3}, mk2[32] = {1, 2, 4}, out[32];
    char sealed[GP_SEALED_MAX];
    cr_assert_eq(gp_secret_seal(mk, id, secret, sealed), 0);
    cr_assert_eq(gp_secret_open(mk2, id, gp_str_c(sealed), out), GP_ERR_AUTH);
    cr_assert_eq(gp_secret_open(mk, GP_STR_LIT("house-2"), gp_str_c(sealed), out), GP_ERR_AUTH);
    cr_assert_eq(gp_secret_open(NULL, id, gp_str_c(sealed), out), GP_ERR_AUTH);
    /* Tampering with the ciphertext is caught by the MAC. */
    sealed[40] = sealed[40] == 'A' ? 'B' : 'A';
    cr_assert_eq(gp_secret_open(mk, id, gp_str_c(sealed), out), GP_ERR_AUTH);
}

Test(auth, hex_form_without_and_with_master_key) {
    uint8_t mk[32] = {7}, out[32];
    char stored[GP_SEALED_MAX];
    cr_assert_eq(gp_secret_seal(NULL, id, secret, stored), 0);
    cr_assert_eq(strlen(stored), 64);
    cr_assert_eq(gp_secret_open(NULL, id, gp_str_c(stored), out), 0);
    cr_assert(memcmp(out, secret, 32) == 0);
    memset(out, 0, 32);
    cr_assert_eq(gp_secret_open(mk, id, gp_str_c(stored), out), 0); /* pre-master-key record */
    cr_assert(memcmp(out, secret, 32) == 0);
}

Test(auth, open_garbage_is_invalid) {
    uint8_t mk[32] = {7}, out[32];
    char sealed[GP_SEALED_MAX];
    cr_assert_eq(gp_secret_seal(mk, id, secret, sealed), 0);
    const char *bad[] = {"",
                         "enc1:",
                         "enc1:!!!!",
                         "enc1:AAAA",
                         "hello",
                         "enc2:abcd",
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(gp_secret_open(mk, id, gp_str_c(bad[i]), out), GP_ERR_INVALID, "%s", bad[i]);
    char longer[GP_SEALED_MAX + 4];
    snprintf(longer, sizeof longer, "%sAA", sealed);
    cr_assert_eq(gp_secret_open(mk, id, gp_str_c(longer), out), GP_ERR_INVALID);
    sealed[strlen(sealed) - 1] = '\0';
    cr_assert_eq(gp_secret_open(mk, id, gp_str_c(sealed), out), GP_ERR_INVALID);
    /* Not NUL-terminated: only stored.len bytes are read. */
    char hex[65];
    gp_secret_to_hex(secret, hex);
    cr_assert_eq(gp_secret_open(NULL, id, (gp_str){(const uint8_t *)hex, 63}, out), GP_ERR_INVALID);
}

Test(auth, ratelimit_burst_block_refill) {
    /* 3 back to back, then one more every 10 s (6 a minute). */
    gp_ratelimit *rl = gp_ratelimit_new(3, 6, 64);
    gp_str ip = GP_STR_LIT("10.0.0.1");
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        cr_assert(gp_ratelimit_allow(rl, ip, t));
        gp_ratelimit_fail(rl, ip, t);
    }
    cr_assert(!gp_ratelimit_allow(rl, ip, t));
    cr_assert(gp_ratelimit_allow(rl, GP_STR_LIT("10.0.0.2"), t)); /* others unaffected */
    cr_assert(!gp_ratelimit_allow(rl, ip, t + 9999));
    cr_assert(gp_ratelimit_allow(rl, ip, t + 10000));
    gp_ratelimit_fail(rl, ip, t + 10000);
    cr_assert(!gp_ratelimit_allow(rl, ip, t + 10000));
    /* After a long quiet spell the bucket is full again, but never more than full. */
    t += 10LL * 60 * 60 * 1000;
    for (int i = 0; i < 3; i++) {
        cr_assert(gp_ratelimit_allow(rl, ip, t));
        gp_ratelimit_fail(rl, ip, t);
    }
    cr_assert(!gp_ratelimit_allow(rl, ip, t));
    /* A clock stepping back refills nothing. */
    cr_assert(!gp_ratelimit_allow(rl, ip, 0));
    gp_ratelimit_free(rl);
    gp_ratelimit_free(NULL);
}

Test(auth, ratelimit_table_bounded) {
    gp_ratelimit *rl = gp_ratelimit_new(1, 1, 32);
    char key[32];
    /* Thousands of attackers: the table never grows, and the most recent ones are
     * remembered while the oldest are forgotten. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "192.0.2.%d", i);
        gp_ratelimit_fail(rl, gp_str_c(key), (uint64_t)i);
    }
    snprintf(key, sizeof key, "192.0.2.%d", 4999);
    cr_assert(!gp_ratelimit_allow(rl, gp_str_c(key), 5000));
    snprintf(key, sizeof key, "192.0.2.%d", 0);
    cr_assert(gp_ratelimit_allow(rl, gp_str_c(key), 5000)); /* evicted long ago */
    int remembered = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "192.0.2.%d", i);
        remembered += !gp_ratelimit_allow(rl, gp_str_c(key), 5000);
    }
    cr_assert_leq(remembered, 32);
    cr_assert_geq(remembered, 8);
    gp_ratelimit_free(rl);
}

Test(auth, ratelimit_tiny_tables) {
    gp_ratelimit *rl = gp_ratelimit_new(1, 1, 0);
    cr_assert_not_null(rl);
    gp_ratelimit_fail(rl, GP_STR_LIT("a"), 1);
    cr_assert(!gp_ratelimit_allow(rl, GP_STR_LIT("a"), 1));
    gp_ratelimit_fail(rl, GP_STR_LIT("b"), 2); /* evicts a */
    cr_assert(gp_ratelimit_allow(rl, GP_STR_LIT("a"), 2));
    cr_assert(!gp_ratelimit_allow(rl, GP_STR_LIT("b"), 2));
    gp_ratelimit_free(rl);
}

/* ---- failed-auth budgets per (address, house id) and per address (issue 11, defect 4) --- */

static gp_authlimit *authlimit(unsigned hb, unsigned hpm, unsigned ab, unsigned apm) {
    gp_authlimit_conf c = {hb, hpm, ab, apm, 256};
    gp_authlimit *al = gp_authlimit_new(&c);
    cr_assert_not_null(al);
    return al;
}

/* An attacker behind a NAT exhausting its budget for one house id leaves the other houses
 * behind that address alone, and other addresses too. */
Test(auth, authlimit_per_house_budget_spares_neighbours) {
    gp_authlimit *al = authlimit(3, 6, 100, 60);
    gp_str nat = GP_STR_LIT("198.51.100.7"), evil = GP_STR_LIT("victim"),
           good = GP_STR_LIT("neighbour");
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++)
        cr_assert(gp_authlimit_take(al, nat, evil, t), "attempt %d refused within the burst", i);
    cr_assert(!gp_authlimit_take(al, nat, evil, t));
    cr_assert(!gp_authlimit_allow(al, nat, evil, t));
    cr_assert(gp_authlimit_allow(al, nat, good, t), "a neighbour behind the NAT is locked out");
    cr_assert(gp_authlimit_take(al, nat, good, t));
    gp_authlimit_refund(al, nat, good, t);
    cr_assert(gp_authlimit_allow(al, GP_STR_LIT("203.0.113.1"), evil, t));
    /* The id's budget refills at its rate (6 a minute: one every 10 s of virtual time). */
    cr_assert(!gp_authlimit_allow(al, nat, evil, t + 9999));
    cr_assert(gp_authlimit_take(al, nat, evil, t + 10000));
    cr_assert(!gp_authlimit_take(al, nat, evil, t + 10000));
    gp_authlimit_free(al);
    gp_authlimit_free(NULL);
}

/* Cycling through ids does not escape the looser budget of the address. */
Test(auth, authlimit_per_address_budget_bounds_all_ids) {
    gp_authlimit *al = authlimit(3, 6, 10, 60);
    gp_str nat = GP_STR_LIT("198.51.100.7");
    char hid[32];
    uint64_t t = 1;
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(hid, sizeof hid, "id-%d", i);
        ok += gp_authlimit_take(al, nat, gp_str_c(hid), t);
    }
    cr_assert_eq(ok, 10, "%d attempts from one address passed a per-address burst of 10", ok);
    cr_assert(!gp_authlimit_allow_addr(al, nat, t));
    cr_assert(!gp_authlimit_allow(al, nat, GP_STR_LIT("fresh"), t));
    cr_assert(gp_authlimit_allow_addr(al, GP_STR_LIT("198.51.100.8"), t));
    /* 60 a minute: one more a second. */
    cr_assert(gp_authlimit_take(al, nat, GP_STR_LIT("fresh"), t + 1000));
    cr_assert(!gp_authlimit_take(al, nat, GP_STR_LIT("fresh2"), t + 1000));
    gp_authlimit_free(al);
}

/* A refused attempt (one budget empty) takes nothing from the other. */
Test(auth, authlimit_refusal_takes_nothing) {
    gp_authlimit *al = authlimit(1, 1, 5, 1);
    gp_str a = GP_STR_LIT("192.0.2.1");
    cr_assert(gp_authlimit_take(al, a, GP_STR_LIT("x"), 0));
    for (int i = 0; i < 20; i++)
        cr_assert(!gp_authlimit_take(al, a, GP_STR_LIT("x"), 0));
    /* Only the one real attempt came off the address's 5. */
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        char hid[16];
        snprintf(hid, sizeof hid, "y%d", i);
        ok += gp_authlimit_take(al, a, gp_str_c(hid), 0);
    }
    cr_assert_eq(ok, 4);
    gp_authlimit_free(al);
}

/* Houses that authenticate spend nothing, however often they reconnect; a refund never lifts
 * a budget above its burst. */
Test(auth, authlimit_refund_on_success) {
    gp_authlimit *al = authlimit(3, 1, 5, 1);
    gp_str a = GP_STR_LIT("192.0.2.1"), h = GP_STR_LIT("h1");
    for (int i = 0; i < 1000; i++) {
        cr_assert(gp_authlimit_take(al, a, h, (uint64_t)i), "success %d was charged", i);
        gp_authlimit_refund(al, a, h, (uint64_t)i);
    }
    gp_authlimit_refund(al, a, h, 1000); /* nothing was taken: no extra token */
    gp_authlimit_refund(al, a, h, 1000);
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += gp_authlimit_take(al, a, h, 1000);
    cr_assert_eq(ok, 3, "burst 3 gave %d attempts after refunds", ok);
    gp_authlimit_free(al);
}

/* 60 handshakes started before any proof is checked (the budget is taken per attempt, not
 * per failure): only the burst gets its proof checked, whatever the order of outcomes. */
Test(auth, authlimit_parallel_attempts_capped_by_burst) {
    gp_authlimit *al = authlimit(10, 6, 100, 60);
    gp_str a = GP_STR_LIT("192.0.2.1"), h = GP_STR_LIT("h1");
    uint64_t t = 42;
    int all = 1;
    for (int i = 0; i < 60; i++) /* every HELLO passes the early check: nothing is charged */
        all &= gp_authlimit_allow(al, a, h, t);
    cr_assert(all);
    int checked = 0;
    for (int i = 0; i < 60; i++) /* then the 60 AUTHs */
        checked += gp_authlimit_take(al, a, h, t);
    cr_assert_eq(checked, 10, "%d proofs checked against a burst of 10", checked);
    /* One of the ten was right: its token comes back, and one more may be tried. */
    gp_authlimit_refund(al, a, h, t);
    cr_assert(gp_authlimit_take(al, a, h, t));
    cr_assert(!gp_authlimit_take(al, a, h, t));
    gp_authlimit_free(al);
}

Test(auth, ratelimit_take_and_refund) {
    gp_ratelimit *rl = gp_ratelimit_new(2, 1, 16);
    gp_str k = GP_STR_LIT("k");
    cr_assert(gp_ratelimit_take(rl, k, 0));
    cr_assert(gp_ratelimit_take(rl, k, 0));
    cr_assert(!gp_ratelimit_take(rl, k, 0));
    gp_ratelimit_refund(rl, k, 0);
    cr_assert(gp_ratelimit_allow(rl, k, 0));
    cr_assert(gp_ratelimit_take(rl, k, 0));
    cr_assert(!gp_ratelimit_allow(rl, k, 0));
    gp_ratelimit_refund(rl, GP_STR_LIT("never-seen"), 0); /* no slot: nothing to do */
    cr_assert(gp_ratelimit_allow(rl, GP_STR_LIT("never-seen"), 0));
    gp_ratelimit_free(rl);
}
