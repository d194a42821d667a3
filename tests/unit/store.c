/* store.c — the store's pure parsers of what Redis holds (bridge/store/store_state.c, the one
 * parser of a house's live state, and bridge/store/store_views.c): replies as RESP through
 * hiredis's own reader, as the clients get them; values anyone could have written come out bounded,
 * terminated, without control bytes, and numbers that are not numbers as "absent" (-1). */
#include "../../bridge/store/registry.h"
#include "../../bridge/store/store_state.h"

#include <criterion/criterion.h>
#include <hiredis/read.h>
#include <stdio.h>
#include <string.h>

/* One reply from RESP text (freeReplyObject). */
static redisReply *resp(const char *text) {
    redisReader *rd = redisReaderCreate();
    cr_assert_eq(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    void *r = NULL;
    cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK);
    cr_assert_not_null(r, "incomplete RESP: %s", text);
    redisReaderFree(rd);
    return r;
}

Test(store, state_as_the_bridge_writes_it) {
    redisReply *r =
        resp("*18\r\n$6\r\nbridge\r\n$5\r\nbr-e2\r\n$9\r\ntransport\r\n$4\r\nrudp\r\n"
             "$5\r\nsince\r\n$13\r\n1700000000000\r\n$9\r\nlast_seen\r\n$13\r\n1700000001000\r\n"
             "$6\r\nrtt_ms\r\n$3\r\n1.5\r\n$5\r\nepoch\r\n$1\r\n7\r\n"
             "$4\r\naddr\r\n$9\r\n127.0.0.1\r\n$9\r\nreq_total\r\n$2\r\n42\r\n"
             "$8\r\nloss_pct\r\n$4\r\n0.25\r\n");
    gp_state s;
    gp_state_init(&s);
    cr_assert_eq(s.connected, 0);
    cr_assert_eq(s.epoch, -1);
    gp_state_parse(&s, r);
    freeReplyObject(r);
    cr_assert_eq(s.connected, 1);
    cr_assert_str_eq(s.bridge, "br-e2");
    cr_assert_str_eq(s.transport, "rudp");
    cr_assert_str_eq(s.addr, "127.0.0.1");
    cr_assert_eq(s.since_ms, 1700000000000LL);
    cr_assert_eq(s.last_seen_ms, 1700000001000LL);
    cr_assert_eq(s.epoch, 7);
    cr_assert_eq(s.req_total, 42);
    cr_assert_float_eq(s.rtt_ms, 1.5, 1e-9);
    cr_assert_float_eq(s.loss_pct, 0.25, 1e-9);
    cr_assert_eq(s.err_total, -1, "absent: -1");
    cr_assert_eq(s.ts_ms, -1);
}

Test(store, state_written_by_anyone) {
    char big[400], text[600];
    memset(big, 'b', 300);
    big[300] = '\0';
    snprintf(text, sizeof text,
             "*10\r\n$6\r\nbridge\r\n$300\r\n%s\r\n$9\r\ntransport\r\n$3\r\nw\x01s\r\n"
             "$5\r\nepoch\r\n$3\r\n1x2\r\n$6\r\nrtt_ms\r\n$3\r\ninf\r\n$5\r\nextra\r\n$1\r\n1\r\n",
             big);
    redisReply *r = resp(text);
    gp_state s;
    gp_state_init(&s);
    gp_state_parse(&s, r);
    freeReplyObject(r);
    cr_assert_eq(strlen(s.bridge), sizeof s.bridge - 1, "bounded");
    cr_assert_str_eq(s.bridge + sizeof s.bridge - 4, "...", "cut, and says so");
    cr_assert_str_eq(s.transport, "w?s", "control bytes replaced");
    cr_assert_eq(s.epoch, -1, "not a number");
    cr_assert_eq(s.rtt_ms, -1, "not a finite number");
}

Test(store, no_state_is_not_connected) {
    const char *texts[] = {"*0\r\n", "$-1\r\n", "-ERR x\r\n", ":1\r\n", "*1\r\n$1\r\na\r\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        redisReply *r = resp(texts[i]);
        gp_state s;
        gp_state_init(&s);
        gp_state_parse(&s, r);
        freeReplyObject(r);
        cr_assert_eq(s.connected, 0, "%s", texts[i]);
    }
}

Test(store, house_hash_fields) {
    /* tun_routes as anyone may have written it: a duplicate, junk, a prefix with host bits. */
    redisReply *r = resp("*6\r\n$12\r\n{\"site\":\"n\"}\r\n$3\r\n123\r\n$1\r\n1\r\n"
                         "$50\r\n10.1.2.0/24, fd00::/64,junk,10.1.2.0/24,10.0.0.1/8\r\n"
                         "$3\r\n456\r\n$4\r\nb\x1b[1\r\n");
    gp_reg_house h;
    gp_reg_house_init(&h, "farm-1", 6);
    gp_reg_house_parse(&h, r);
    freeReplyObject(r);
    cr_assert_str_eq(h.id, "farm-1");
    cr_assert_eq(h.registered, 1);
    cr_assert_str_eq(h.labels, "{\"site\":\"n\"}");
    cr_assert_eq(h.created_ms, 123);
    cr_assert_eq(h.disabled, 1);
    cr_assert_eq(h.st.connected, 0);
    cr_assert_eq(h.last_seen_ms, 456);
    cr_assert_str_eq(h.last_bridge, "b?[1", "no escape sequence reaches a terminal");
    cr_assert_str_eq(gp_reg_house_state(&h), "disabled");
    cr_assert_eq(gp_reg_offline_since(&h), 456, "offline since a bridge last heard from it");
    h.disabled = 0;
    cr_assert_str_eq(gp_reg_house_state(&h), "offline");
    h.st.connected = 1;
    cr_assert_str_eq(gp_reg_house_state(&h), "online");
    cr_assert_eq(gp_reg_offline_since(&h), -1, "online: not offline since anything");
    cr_assert_eq(h.tun_has, 0, "the index is <p>:tun's, not the hash's");
    char text[256];
    cr_assert_eq(h.ntun_routes, 2, "what parses, once");
    gp_cidr_list_format(h.tun_routes, h.ntun_routes, ",", text, sizeof text);
    cr_assert_str_eq(text, "10.1.2.0/24,fd00::/64");
    r = resp("*6\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n");
    gp_reg_house_init(&h, "gone", 4);
    gp_reg_house_parse(&h, r);
    freeReplyObject(r);
    cr_assert_eq(h.registered, 0, "no field: a stale set member");
    cr_assert_eq(h.last_seen_ms, -1);
    cr_assert_eq(gp_reg_offline_since(&h), -1, "never held: not offline since anything");
}

/* Routes given by the operator: canonical, once each, gp_cidr_parse's message on a bad one;
 * at most GP_TUN_ROUTES_MAX; the text as stored. */
Test(store, tun_routes_from_the_command_line) {
    gp_cidr r[GP_TUN_ROUTES_MAX];
    size_t n = 0;
    char err[160], text[GP_TUN_ROUTES_MAX * GP_CIDR_STRLEN];
    cr_assert_eq(gp_tun_routes_add(r, &n, "10.1.2.0/24", err, sizeof err), 0, "%s", err);
    cr_assert_eq(
        gp_tun_routes_add(r, &n, "fd00:0:0::/64, 10.1.2.0/24,192.168.1.1", err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(gp_cidr_list_format(r, n, ",", text, sizeof text), 36);
    cr_assert_str_eq(text, "10.1.2.0/24,fd00::/64,192.168.1.1/32");
    gp_cidr_list_format(r, n, ", ", text, sizeof text);
    cr_assert_str_eq(text, "10.1.2.0/24, fd00::/64, 192.168.1.1/32");
    cr_assert_eq(gp_cidr_list_format(r, n, ",", text, 20), -1, "does not fit");
    cr_assert_eq(gp_tun_routes_add(r, &n, "10.1.2.3/24", err, sizeof err), -1);
    cr_assert_str_eq(err, "\"10.1.2.3/24\" has bits set past /24 (the network is 10.1.2.0/24)");
    cr_assert_eq(gp_tun_routes_add(r, &n, "10.1.2.0/24,", err, sizeof err), -1, "empty piece");
    cr_assert_eq(gp_tun_routes_add(r, &n, "", err, sizeof err), -1, "empty");
    cr_assert_eq(gp_tun_routes_add(r, &n, "nope", err, sizeof err), -1);
    cr_assert(strstr(err, "not an IPv4 or IPv6 address"), "%s", err);
    n = 0;
    for (int i = 0; i < GP_TUN_ROUTES_MAX; i++) {
        char p[32];
        snprintf(p, sizeof p, "10.%d.0.0/16", i);
        cr_assert_eq(gp_tun_routes_add(r, &n, p, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(gp_tun_routes_add(r, &n, "10.0.0.0/16", err, sizeof err), 0, "a duplicate");
    cr_assert_eq(gp_tun_routes_add(r, &n, "11.0.0.0/16", err, sizeof err), -1);
    cr_assert_str_eq(err, "more than 64 routes");
    cr_assert_eq(gp_tun_routes_parse("", 0, r, GP_TUN_ROUTES_MAX, NULL), 0);
}

/* <p>:tun's values: the pools (none recorded, one family, junk) and indexes. */
Test(store, tun_pools_and_indexes) {
    gp_tun_pools p;
    char err[160];
    redisReply *r = resp("*2\r\n$-1\r\n$-1\r\n");
    cr_assert_eq(gp_tun_pools_parse(&p, r->element[0], r->element[1], err, sizeof err), 1);
    freeReplyObject(r);
    r = resp("*2\r\n$13\r\n100.96.0.0/16\r\n$0\r\n\r\n");
    cr_assert_eq(gp_tun_pools_parse(&p, r->element[0], r->element[1], err, sizeof err), 0);
    cr_assert(p.has4 && !p.has6 && p.p4.len == 16);
    freeReplyObject(r);
    r = resp("*2\r\n$14\r\nfd7a:6770::/64\r\n$-1\r\n");
    cr_assert_eq(gp_tun_pools_parse(&p, r->element[0], r->element[1], err, sizeof err), -1,
                 "an IPv6 pool as pool4");
    freeReplyObject(r);

    uint64_t idx;
    r = resp("*5\r\n$1\r\n7\r\n$20\r\n18446744073709551615\r\n$20\r\n18446744073709551616\r\n"
             "$2\r\n-1\r\n$-1\r\n");
    cr_assert_eq(gp_tun_index_parse(r->element[0], &idx), 1);
    cr_assert_eq(idx, 7);
    cr_assert_eq(gp_tun_index_parse(r->element[1], &idx), 1);
    cr_assert_eq(idx, UINT64_MAX);
    cr_assert_eq(gp_tun_index_parse(r->element[2], &idx), 0, "past 64 bits");
    cr_assert_eq(gp_tun_index_parse(r->element[3], &idx), 0);
    cr_assert_eq(gp_tun_index_parse(r->element[4], &idx), 0);
    freeReplyObject(r);

    /* Index 6: the 7th host of each pool; past a pool's end, no address of that family. */
    r = resp("*2\r\n$13\r\n100.96.0.0/30\r\n$14\r\nfd7a:6770::/64\r\n");
    cr_assert_eq(gp_tun_pools_parse(&p, r->element[0], r->element[1], err, sizeof err), 0, "%s",
                 err);
    freeReplyObject(r);
    gp_ip_addr a4, a6;
    gp_tun_pool_addrs(&p, 1, &a4, &a6);
    char a[GP_IP_ADDR_STRLEN];
    cr_assert_str_eq(gp_ip_addr_format(&a4, a), "100.96.0.2");
    cr_assert_str_eq(gp_ip_addr_format(&a6, a), "fd7a:6770::2");
    gp_tun_pool_addrs(&p, 6, &a4, &a6);
    cr_assert_eq(a4.family, 0, "a /30 has 2 hosts");
    cr_assert_str_eq(gp_ip_addr_format(&a6, a), "fd7a:6770::7");
    gp_tun_pool_addrs(NULL, 6, &a4, &a6);
    cr_assert_eq(a6.family, 0, "no pools known");
}

Test(store, bridge_stats_and_recent) {
    redisReply *r = resp("*6\r\n$2\r\nid\r\n$2\r\nb1\r\n$6\r\nhouses\r\n$1\r\n3\r\n"
                         "$12\r\nredis_rtt_ms\r\n$3\r\n0.5\r\n");
    gp_reg_bstats b;
    memset(&b, 0, sizeof b);
    gp_reg_bstats_parse(&b, r);
    freeReplyObject(r);
    cr_assert_str_eq(b.id, "b1");
    cr_assert_eq(b.houses, 3);
    cr_assert_float_eq(b.redis_rtt_ms, 0.5, 1e-9);
    gp_reg_recent_req q;
    r = resp("$52\r\n{\"id\":\"r1\",\"status\":200,\"ms\":4,\"path\":\"/a\\u001b[2J\"}\r\n");
    cr_assert_eq(gp_reg_recent_parse(&q, r), 1);
    freeReplyObject(r);
    cr_assert_str_eq(q.id, "r1");
    cr_assert_eq(q.status, 200);
    cr_assert_eq(q.ts_ms, -1);
    cr_assert_str_eq(q.path, "/a?[2J", "no escape sequence reaches a terminal");
    r = resp("$5\r\n[1,2]\r\n");
    cr_assert_eq(gp_reg_recent_parse(&q, r), 0, "not an object: skipped");
    freeReplyObject(r);
}

/* The parser's field names are the ones the claim and refresh scripts write (ts_ms: read
 * when a bridge writes it, none does today). */
Test(store, state_fields_are_the_scripts_fields) {
    const char *fields[] = {GP_STATE_BRIDGE,    GP_STATE_TRANSPORT, GP_STATE_SINCE,
                            GP_STATE_LAST_SEEN, GP_STATE_RTT,       GP_STATE_EPOCH,
                            GP_STATE_ADDR,      GP_STATE_REQ_TOTAL, GP_STATE_ERR_TOTAL,
                            GP_STATE_BYTES_IN,  GP_STATE_BYTES_OUT, GP_STATE_LOSS};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        char q[40];
        snprintf(q, sizeof q, "'%s'", fields[i]);
        cr_assert(strstr(GP_LUA_STATE_REFRESH, q), "the refresh script does not write %s", q);
        if (strcmp(fields[i], GP_STATE_RTT) != 0) /* measured later: refresh writes it */
            cr_assert(strstr(GP_LUA_STATE_CLAIM, q), "the claim script does not write %s", q);
    }
}
