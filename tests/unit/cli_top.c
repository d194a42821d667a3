/* cli_top.c — the model of `ghostport top` (bridge/cli/cli_top_model.c), pure: rates from
 * snapshots of the counters bridges publish (a house's requests and bytes, its rudp session's
 * FEC repairs, its L3 tunnel's packets and bytes), each group of counters on its own, a new
 * connection starting over; the tunnel's address (the one routed now, else the registry's),
 * its sortable columns and number formats. */
#include "../../bridge/cli/cli_top.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A connected house: bridge b1, epoch, since 1000; counters req, bytes, fec and the tunnel's
 * (tun_pkts_in < 0: no L3 grant, its counters absent). */
static top_house house(const char *id, long long epoch, long long req, long long fec,
                       long long tun_pkts_in, long long tun_pkts_out, long long tun_bytes_in,
                       long long tun_bytes_out) {
    top_house t;
    memset(&t, 0, sizeof t);
    snprintf(t.h.id, sizeof t.h.id, "%s", id);
    t.h.registered = 1;
    gp_state_init(&t.h.st);
    gp_state *st = &t.h.st;
    st->connected = 1;
    snprintf(st->bridge, sizeof st->bridge, "b1");
    snprintf(st->transport, sizeof st->transport, "rudp");
    st->epoch = epoch;
    st->since_ms = 1000;
    st->req_total = req;
    st->err_total = 0;
    st->bytes_in = req * 100;
    st->bytes_out = req * 1000;
    st->fec_repaired = fec;
    if (tun_pkts_in >= 0) {
        snprintf(st->tun_addr, sizeof st->tun_addr, "100.96.0.7,fd7a:6770::7");
        st->tun_pkts_in = tun_pkts_in;
        st->tun_pkts_out = tun_pkts_out;
        st->tun_bytes_in = tun_bytes_in;
        st->tun_bytes_out = tun_bytes_out;
        st->tun_drops = 0;
    }
    t.r = top_rates_unknown;
    return t;
}

static top_snap snap(long long now_ms, top_house *h, size_t n) {
    return (top_snap){.now_ms = now_ms, .houses = h, .nhouses = n};
}

static void rates(top_snap *cur, const top_snap *p0, const top_snap *p1) {
    const top_snap *prev[2] = {p0, p1};
    top_compute_rates(cur, prev, 2);
}

#define assert_rate(got, want) cr_assert_float_eq((got), (want), 1e-9, "%s: %g", #got, (got))

Test(cli_top, the_tunnels_packets_and_bytes_per_second) {
    top_house a = house("farm-1", 3, 10, 2, 100, 50, 10000, 5000);
    top_house b = house("farm-1", 3, 30, 6, 300, 250, 30000, 25000);
    top_snap s0 = snap(10000, &a, 1), s1 = snap(12000, &b, 1);
    rates(&s1, NULL, &s0);
    const top_rates *r = &s1.houses[0].r;
    assert_rate(r->req, 10);
    assert_rate(r->in, 1000);
    assert_rate(r->fec, 2);
    assert_rate(r->tun_pkts_in, 100);
    assert_rate(r->tun_pkts_out, 100);
    assert_rate(r->tun_bytes_in, 10000);
    assert_rate(r->tun_bytes_out, 10000);
    /* The same by index. */
    assert_rate(r->v[TOP_R_TUN_PKTS_OUT], 100);
    assert_rate(r->v[TOP_R_REQ], 10);
}

Test(cli_top, a_reconnection_starts_every_rate_over) {
    top_house a = house("farm-1", 3, 10, 2, 100, 50, 10000, 5000);
    top_house b = house("farm-1", 4, 30, 6, 300, 250, 30000, 25000); /* a new epoch */
    top_snap s0 = snap(10000, &a, 1), s1 = snap(12000, &b, 1);
    rates(&s1, NULL, &s0);
    for (int i = 0; i < TOP_NRATES; i++)
        cr_assert_eq(s1.houses[0].r.v[i], -1, "rate %d after a reconnection", i);
    /* Offline: nothing is known. */
    top_house c = house("farm-1", 4, 40, 7, 400, 350, 40000, 35000);
    c.h.st.connected = 0;
    top_snap s2 = snap(14000, &c, 1);
    rates(&s2, &s0, &s1);
    for (int i = 0; i < TOP_NRATES; i++)
        cr_assert_eq(s2.houses[0].r.v[i], -1, "rate %d offline", i);
}

/* A house that asks for L3 again on the same connection is granted afresh: its tunnel's
 * counters start from 0, its requests' go on. Each group keeps to itself. */
Test(cli_top, a_new_grant_starts_the_tunnel_over_not_the_requests) {
    top_house a = house("farm-1", 3, 10, 2, 100, 50, 10000, 5000);
    top_house b = house("farm-1", 3, 20, 4, 200, 150, 20000, 15000);
    top_house c = house("farm-1", 3, 40, 8, 5, 5, 500, 500); /* granted again */
    top_snap s0 = snap(10000, &a, 1), s1 = snap(11000, &b, 1), s2 = snap(12000, &c, 1);
    rates(&s1, NULL, &s0);
    assert_rate(s1.houses[0].r.tun_pkts_in, 100);
    rates(&s2, &s0, &s1);
    const top_rates *r = &s2.houses[0].r;
    assert_rate(r->req, 15); /* from s0: 30 over 2 s */
    assert_rate(r->fec, 3);
    /* No earlier sample has counters below these: the newest rates stand. */
    assert_rate(r->tun_pkts_in, 100);
    assert_rate(r->tun_bytes_out, 10000);
    /* And from there on, the new grant's counters give the rates. */
    top_house d = house("farm-1", 3, 50, 8, 105, 55, 10500, 5500);
    top_snap s3 = snap(13000, &d, 1);
    rates(&s3, &s1, &s2);
    assert_rate(s3.houses[0].r.tun_pkts_in, 100);
    assert_rate(s3.houses[0].r.tun_bytes_in, 10000);
    assert_rate(s3.houses[0].r.req, 15); /* from s1: 30 over 2 s */
}

Test(cli_top, without_the_tunnel_its_rates_are_unknown) {
    top_house a = house("farm-1", 3, 10, 2, -1, 0, 0, 0);
    top_house b = house("farm-1", 3, 30, 2, -1, 0, 0, 0);
    top_snap s0 = snap(10000, &a, 1), s1 = snap(12000, &b, 1);
    rates(&s1, NULL, &s0);
    const top_rates *r = &s1.houses[0].r;
    assert_rate(r->req, 10);
    assert_rate(r->fec, 0);
    cr_assert_eq(r->tun_pkts_in, -1);
    cr_assert_eq(r->tun_bytes_out, -1);
    /* Granted in between: no rate until two samples have the counters. */
    top_house c = house("farm-1", 3, 40, 2, 10, 10, 1000, 1000);
    top_snap s2 = snap(13000, &c, 1);
    rates(&s2, &s0, &s1);
    assert_rate(s2.houses[0].r.req, 10);
    cr_assert_eq(s2.houses[0].r.tun_pkts_in, -1);
    /* A bridge publishes no tunnel counters: its rates of them stay unknown. */
    top_bridge br0, br1;
    memset(&br0, 0, sizeof br0);
    snprintf(br0.s.id, sizeof br0.s.id, "b1");
    br0.s.pid = 7, br0.s.since_ms = 1000, br0.s.ts_ms = 10000, br0.s.req_total = 10;
    br0.s.err_total = br0.s.bytes_in = br0.s.bytes_out = 0;
    br1 = br0;
    br1.s.ts_ms = 11000, br1.s.req_total = 20;
    top_snap t0 = {.now_ms = 10000, .bridges = &br0, .nbridges = 1};
    top_snap t1 = {.now_ms = 11000, .bridges = &br1, .nbridges = 1};
    rates(&t1, NULL, &t0);
    assert_rate(br1.r.req, 10);
    cr_assert_eq(br1.r.tun_pkts_in, -1);
    cr_assert_eq(br1.r.fec, -1);
}

Test(cli_top, the_tunnels_address_live_or_from_the_registry) {
    top_house t = house("farm-1", 3, 10, 2, 1, 1, 1, 1);
    char a[2 * GP_IP_ADDR_STRLEN];
    cr_assert_eq(top_tun_addr(&t.h, a, sizeof a), 1, "granted: the live state's");
    cr_assert_str_eq(a, "100.96.0.7,fd7a:6770::7");
    /* Written by anyone: nothing but an address list reaches a terminal. */
    snprintf(t.h.st.tun_addr, sizeof t.h.st.tun_addr, "10.0.0.1\x1b[2J\xc2\x9b");
    top_tun_addr(&t.h, a, sizeof a);
    cr_assert_str_eq(a, "10.0.0.1??2???");
    /* Not granted now: the registry's, both families. */
    t.h.st.tun_addr[0] = '\0';
    cr_assert_eq(top_tun_addr(&t.h, a, sizeof a), 0);
    cr_assert_str_eq(a, "");
    t.h.tun_has = 1;
    t.h.tun_index = 9;
    cr_assert_eq(gp_ip_addr_parse("100.96.0.10", 11, &t.h.tun4), 0);
    cr_assert_eq(gp_ip_addr_parse("fd7a:6770::a", 12, &t.h.tun6), 0);
    cr_assert_eq(top_tun_addr(&t.h, a, sizeof a), 0);
    cr_assert_str_eq(a, "100.96.0.10,fd7a:6770::a");
    top_snap s = snap(1, &t, 1);
    cr_assert(top_has_tun(&s));
    t.h.tun_has = -1; /* may not read <p>:tun */
    cr_assert_not(top_has_tun(&s));
}

Test(cli_top, sorting_by_the_tunnels_columns) {
    top_house h[4] = {
        house("a", 1, 0, 0, -1, 0, 0, 0), /* no tunnel */
        house("b", 1, 0, 0, 1, 1, 1, 1),  /* 100.96.0.7 */
        house("c", 1, 0, 0, 1, 1, 1, 1),  /* 100.96.0.10 */
        house("d", 1, 0, 0, 1, 1, 1, 1),  /* IPv6 only */
    };
    snprintf(h[2].h.st.tun_addr, sizeof h[2].h.st.tun_addr, "100.96.0.10,fd7a:6770::a");
    snprintf(h[3].h.st.tun_addr, sizeof h[3].h.st.tun_addr, "fd7a:6770::2");
    h[1].r.tun_pkts_in = 5, h[1].r.tun_pkts_out = 5, h[1].r.tun_bytes_in = 900;
    h[2].r.tun_pkts_in = 1, h[2].r.tun_pkts_out = 20, h[2].r.tun_bytes_out = 100;
    h[3].r.tun_pkts_in = 0, h[3].r.tun_pkts_out = 0, h[3].r.tun_bytes_in = 0;
    h[3].r.fec = 4, h[1].r.fec = 1;
    top_snap s = snap(1, h, 4);
    size_t idx[4];
    const struct {
        const char *col;
        int reverse;
        const char *order;
    } cases[] = {
        {"tun", 0, "bcda"},     /* as addresses: .7 < .10, IPv4 before IPv6, none last */
        {"tun", 1, "dcba"},     /* descending, none still last */
        {"pps", 1, "cbda"},     /* in + out: 21, 10, 0 */
        {"tun_pps", 0, "dbca"}, /* the same column by its name */
        {"bit/s", 1, "bcda"},   /* bytes in + out: 900, 100, 0 */
        {"fec", 1, "dbac"},     /* 4, 1; unknown last, by id */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int col = top_col_by_name(cases[k].col);
        cr_assert_geq(col, 0, "no column %s", cases[k].col);
        size_t n = top_view(&s, NULL, col, cases[k].reverse, idx);
        char got[8] = "";
        for (size_t i = 0; i < n; i++)
            got[i] = h[idx[i]].h.id[0];
        cr_assert_str_eq(got, cases[k].order, "--sort %s%s", cases[k].col,
                         cases[k].reverse ? " -r" : "");
    }
    cr_assert_str_eq(top_col_names[TOP_COL_TUN_BPS], "tun_bps");
}

Test(cli_top, formats_of_the_tunnels_rates) {
    const struct {
        double bytes_per_s;
        const char *want;
    } bits[] = {{-1, "-"},        {0, "0"},         {100, "800"},     {1012.5, "8.1k"},
                {1250000, "10M"}, {124900, "999k"}, {124999, "1.0M"}, {1.5e8, "1.2G"}};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        char out[16];
        top_fmt_bits(out, sizeof out, bits[i].bytes_per_s);
        cr_assert_str_eq(out, bits[i].want, "%g bytes/s", bits[i].bytes_per_s);
    }
    char out[32];
    top_fmt_inout(out, sizeof out, 12000, 900, 0);
    cr_assert_str_eq(out, "12.0k/900");
    top_fmt_inout(out, sizeof out, 1012500, 400000, 1);
    cr_assert_str_eq(out, "8.1M/3.2M");
    top_fmt_inout(out, sizeof out, -1, -1, 1);
    cr_assert_str_eq(out, "-/-");
}

Test(cli_top, the_history_holds_the_tunnels_packets) {
    top_house h = house("farm-1", 1, 0, 0, 1, 1, 1, 1);
    h.r.tun_pkts_in = 30, h.r.tun_pkts_out = 12;
    top_snap s = snap(1, &h, 1);
    top_hist *hist = NULL;
    size_t n = 0;
    cr_assert_eq(top_hist_push(&hist, &n, &s), 0);
    h.r = top_rates_unknown;
    cr_assert_eq(top_hist_push(&hist, &n, &s), 0);
    const top_hist *e = top_hist_find(hist, n, "farm-1");
    cr_assert_not_null(e);
    cr_assert_eq(e->n, 2);
    cr_assert_float_eq(e->tun_pps[0], 42, 1e-6);
    cr_assert_float_eq(e->tun_pps[1], -1, 1e-6, "unknown: no value");
    free(hist);
}
