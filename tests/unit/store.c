/* store.c — the store's pure parsers of what Redis holds (bridge/store/store_state.c, the one
 * parser of a house's live state, and bridge/store/store_views.c): replies as RESP through
 * hiredis's own reader, as the clients get them; values anyone could have written come out bounded,
 * terminated, without control bytes, and numbers that are not numbers as "absent" (-1). */
#include "../../bridge/store/registry.h"
#include "../../bridge/store/store_state.h"

#include <criterion/criterion.h>
#include <hiredis/read.h>
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
    redisReply *r = resp("*3\r\n$12\r\n{\"site\":\"n\"}\r\n$3\r\n123\r\n$1\r\n1\r\n");
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
    r = resp("*3\r\n$-1\r\n$-1\r\n$-1\r\n");
    gp_reg_house_init(&h, "gone", 4);
    gp_reg_house_parse(&h, r);
    freeReplyObject(r);
    cr_assert_eq(h.registered, 0, "no field: a stale set member");
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
