/* reqcore.c — the bridge's reply writer and settling table (bridge/reqcore.c) driven with a
 * fake Redis and a virtual clock: every script the core runs is recorded with its arguments
 * and answered by the test, in any order, so the contract's ordering (reply confirmed, then
 * ack under the epoch; a lost or abandoned reply never acked) is checked in milliseconds. */
#include "../../bridge/reqcore.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define MAXCALLS 32

typedef struct call {
    br_rs_script s;
    int nkeys, argc;
    char argv[BR_ARGS_MAX][256];
    br_redis_fn fn;
    void *fnud;
    int answered;
} call;

typedef struct fake {
    call calls[MAXCALLS];
    int ncalls;
    int refuse; /* eval returns -1 (not connected) */
    uint64_t ns, redis_ms;
    int nfenced;
    char fenced_house[80];
    uint64_t fenced_epoch;
    int nfinal;
    unsigned final_status;
    uint64_t final_epoch;
    int final_error;
    int nfailed;
    char failed_reason[32];
    unsigned live;
} fake;

static int f_eval(void *ud, br_rs_script s, int nkeys, const br_args *a, br_redis_fn fn,
                  void *fnud) {
    fake *f = ud;
    if (f->refuse)
        return -1;
    cr_assert_lt(f->ncalls, MAXCALLS);
    call *c = &f->calls[f->ncalls++];
    memset(c, 0, sizeof *c);
    c->s = s;
    c->nkeys = nkeys;
    c->argc = a->n;
    for (int i = 0; i < a->n; i++)
        snprintf(c->argv[i], sizeof c->argv[i], "%.*s", (int)a->l[i], a->v[i]);
    c->fn = fn;
    c->fnud = fnud;
    return 0;
}
static uint64_t f_now_ns(void *ud) {
    return ((fake *)ud)->ns;
}
static uint64_t f_now_redis(void *ud) {
    return ((fake *)ud)->redis_ms;
}
static void f_fenced(void *ud, const char *house, uint64_t epoch) {
    fake *f = ud;
    f->nfenced++;
    snprintf(f->fenced_house, sizeof f->fenced_house, "%s", house);
    f->fenced_epoch = epoch;
}
static void f_final(void *ud, const char *house, uint64_t epoch, unsigned status, int is_error,
                    uint64_t fwd_ns) {
    fake *f = ud;
    (void)house, (void)fwd_ns;
    f->nfinal++;
    f->final_status = status;
    f->final_epoch = epoch;
    f->final_error = is_error;
}
static void f_failed(void *ud, const char *reason) {
    fake *f = ud;
    f->nfailed++;
    snprintf(f->failed_reason, sizeof f->failed_reason, "%s", reason);
}
static void f_live(void *ud, unsigned n) {
    ((fake *)ud)->live = n;
}

static const br_replies_ops OPS = {f_eval,  f_now_ns, f_now_redis, f_fenced,
                                   f_final, f_failed, f_live};

static fake F;
static br_replies *RS;

static void setup(void) {
    memset(&F, 0, sizeof F);
    F.ns = 1000000000ull;
    F.redis_ms = 1700000000000ull;
    br_replies_cfg cfg = {"gp", 50, 300};
    RS = br_replies_new(&cfg, &OPS, &F);
    cr_assert_not_null(RS);
}
static void teardown(void) {
    br_replies_free(RS);
}

/* Answers call i: NULL (Redis gone), an integer, or an error. */
static void answer_null(int i) {
    cr_assert_lt(i, F.ncalls);
    cr_assert_not(F.calls[i].answered);
    F.calls[i].answered = 1;
    if (F.calls[i].fn)
        F.calls[i].fn(NULL, F.calls[i].fnud);
}
static void answer_int(int i, long long v) {
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = v};
    cr_assert_lt(i, F.ncalls);
    cr_assert_not(F.calls[i].answered);
    F.calls[i].answered = 1;
    if (F.calls[i].fn)
        F.calls[i].fn(&r, F.calls[i].fnud);
}
static void answer_err(int i, const char *msg) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", msg);
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = buf, .len = strlen(buf)};
    cr_assert_lt(i, F.ncalls);
    F.calls[i].answered = 1;
    F.calls[i].fn(&r, F.calls[i].fnud);
}
static int count(br_rs_script s) {
    int n = 0;
    for (int i = 0; i < F.ncalls; i++)
        n += F.calls[i].s == s;
    return n;
}
/* The value after field name `field` in a reply entry's argv, or NULL. */
static const char *field(const call *c, const char *name) {
    for (int i = 3; i + 1 < c->argc; i += 2)
        if (strcmp(c->argv[i], name) == 0)
            return c->argv[i + 1];
    return NULL;
}

/* A reply of entry 1-0 of house h1 held under epoch 7, to key gp:reply:a. */
static br_reply *held(const char *key) {
    br_reply *rp = br_reply_new(RS, "h1", "gp:{h1}:req", "1-0", gp_str_c("req-1"), key,
                                "gp:{h1}:epoch", 7, NULL);
    cr_assert_not_null(rp);
    br_reply_meta(rp, gp_str_c("GET"), gp_str_c("/x"), F.ns);
    return rp;
}

TestSuite(reqcore, .init = setup, .fini = teardown);

Test(reqcore, ack_only_after_redis_confirmed_the_reply) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{\"a\":\"b\"}", (gp_str){0}, (gp_str){0});
    cr_assert(br_replies_settling(RS, "h1", "1-0"));
    br_reply_entry(rp, (const uint8_t *)"hello", 5, 1);
    br_reply_unref(rp); /* the request is gone; the write goes on */
    cr_assert_eq(F.ncalls, 1);
    const call *x = &F.calls[0];
    cr_assert_eq(x->s, BR_RS_REPLY);
    cr_assert_eq(x->nkeys, 1);
    cr_assert_str_eq(x->argv[0], "gp:reply:a");
    cr_assert_str_eq(x->argv[2], "300000"); /* --reply-ttl in ms */
    cr_assert_str_eq(field(x, "id"), "req-1");
    cr_assert_str_eq(field(x, "status"), "200");
    cr_assert_str_eq(field(x, "body"), "hello");
    cr_assert_str_eq(field(x, "final"), "1");
    cr_assert_eq(count(BR_RS_ACK), 0, "no ack before Redis confirmed the reply");
    cr_assert(br_replies_settling(RS, "h1", "1-0"));
    cr_assert_eq(F.nfinal, 1);
    cr_assert_eq(F.final_status, 200);
    cr_assert_eq(F.final_epoch, 7);

    answer_int(0, 1);
    cr_assert_eq(F.ncalls, 2);
    const call *k = &F.calls[1];
    cr_assert_eq(k->s, BR_RS_ACK);
    cr_assert_eq(k->nkeys, 3);
    cr_assert_str_eq(k->argv[0], "gp:{h1}:epoch");
    cr_assert_str_eq(k->argv[1], "gp:{h1}:req");
    cr_assert_str_eq(k->argv[3], "7");
    cr_assert_str_eq(k->argv[5], "1-0");
    cr_assert(br_replies_settling(RS, "h1", "1-0"), "settling until the ack has run");
    cr_assert_eq(F.live, 1);
    answer_int(1, 1);
    cr_assert_not(br_replies_settling(RS, "h1", "1-0"));
    cr_assert_eq(F.live, 0);
    cr_assert_eq(br_replies_live(RS), 0);
    cr_assert_eq(F.nfenced, 0);
}

Test(reqcore, chunks_all_confirmed_before_the_ack_in_any_order) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"aaaa", 4, 0);
    br_reply_entry(rp, (const uint8_t *)"bbbb", 4, 0);
    br_reply_entry(rp, (const uint8_t *)"cc", 2, 1);
    br_reply_unref(rp);
    cr_assert_eq(count(BR_RS_REPLY), 3);
    cr_assert_str_eq(field(&F.calls[0], "final"), "0");
    cr_assert_str_eq(field(&F.calls[1], "final"), "0");
    cr_assert_str_eq(field(&F.calls[2], "final"), "1");
    answer_int(2, 1);
    answer_int(0, 1);
    cr_assert_eq(count(BR_RS_ACK), 0, "a chunk is still unconfirmed");
    answer_int(1, 1);
    cr_assert_eq(count(BR_RS_ACK), 1);
    answer_int(3, 1);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, lost_reply_is_never_acked_and_stops_settling) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"x", 1, 0);
    br_reply_entry(rp, (const uint8_t *)"y", 1, 1);
    br_reply_unref(rp);
    answer_null(0); /* Redis went away under the first chunk */
    answer_int(1, 1);
    cr_assert_eq(count(BR_RS_ACK), 0, "the entry stays pending, delivered again");
    cr_assert_not(br_replies_settling(RS, "h1", "1-0"), "free for the redelivery");
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, redis_not_connected_counts_as_lost) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 504, "{}", gp_str_c("timeout"), gp_str_c("late"));
    F.refuse = 1;
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    cr_assert_eq(F.ncalls, 0);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, house_gone_mid_reply_drops_the_partial_reply) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"part", 4, 0);
    br_reply_abandon(rp);
    cr_assert_eq(F.ncalls, 2);
    cr_assert_eq(F.calls[1].s, BR_RS_REPLY_DROP);
    cr_assert_eq(F.calls[1].nkeys, 1);
    cr_assert_str_eq(F.calls[1].argv[0], "gp:reply:a");
    cr_assert(br_replies_settling(RS, "h1", "1-0"), "its chunk write is still in flight");
    answer_int(0, 1);
    cr_assert_eq(count(BR_RS_ACK), 0, "left pending: the redelivery writes it all again");
    cr_assert_not(br_replies_settling(RS, "h1", "1-0"));
    cr_assert_eq(br_replies_live(RS), 0);
    cr_assert_eq(F.nfinal, 0);
}

Test(reqcore, abandon_after_the_final_entry_keeps_the_reply) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"all", 3, 1);
    br_reply_abandon(rp);
    cr_assert_eq(count(BR_RS_REPLY_DROP), 0);
    answer_int(0, 1);
    cr_assert_eq(count(BR_RS_ACK), 1);
    answer_int(1, 1);
}

Test(reqcore, wrong_type_reply_key_is_counted_and_still_acked) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"x", 1, 1);
    br_reply_unref(rp);
    answer_err(0, "WRONGTYPE Operation against a key holding the wrong kind of value");
    cr_assert_eq(F.nfailed, 1);
    cr_assert_str_eq(F.failed_reason, "wrong_type");
    cr_assert_eq(count(BR_RS_ACK), 1, "retrying cannot help: the entry is settled");
    answer_int(1, 1);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, refused_reply_key_writes_nothing_but_settles_with_a_recent_line) {
    /* The glue refuses the key (br_entry_reply_key): no key, status 400 bad_reply. */
    br_reply *rp = br_reply_new(RS, "h1", "gp:{h1}:req", "1-0", gp_str_c("req-1"), NULL,
                                "gp:{h1}:epoch", 7, NULL);
    br_reply_meta(rp, gp_str_c("GET"), gp_str_c("/x"), 0);
    br_reply_set(rp, 400, "{}", gp_str_c("bad_reply"), gp_str_c("not a key"));
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    cr_assert_eq(F.ncalls, 1);
    cr_assert_eq(F.calls[0].s, BR_RS_ACK);
    cr_assert_str_eq(F.calls[0].argv[2], "gp:{h1}:recent");
    cr_assert(strstr(F.calls[0].argv[6], "\"status\":400"), "%s", F.calls[0].argv[6]);
    cr_assert(strstr(F.calls[0].argv[6], "\"error\":\"bad_reply\""), "%s", F.calls[0].argv[6]);
    cr_assert_str_eq(F.calls[0].argv[7], "50");
    cr_assert_eq(F.final_status, 400);
    cr_assert(F.final_error);
    answer_int(0, 1);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, recent_line_times_the_request_on_the_virtual_clock) {
    br_reply *rp = held("gp:reply:a"); /* forwarded at F.ns */
    br_reply_set(rp, 504, "{}", gp_str_c("timeout"), gp_str_c("late"));
    F.ns += 250 * 1000000ull;
    F.redis_ms += 250;
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    cr_assert_str_eq(field(&F.calls[0], "error"), "timeout");
    cr_assert_str_eq(field(&F.calls[0], "message"), "late");
    answer_int(0, 1);
    const char *line = F.calls[1].argv[6];
    cr_assert(strstr(line, "\"ms\":250"), "%s", line);
    cr_assert(strstr(line, "\"ts_ms\":1700000000250"), "%s", line);
    cr_assert(strstr(line, "\"path\":\"/x\""), "%s", line);
    answer_int(1, 1);
}

Test(reqcore, entry_that_vanished_settles_without_recent_line) {
    br_reply *rp = br_reply_new(RS, "h1", "gp:{h1}:req", "1-0", gp_str_c("1-0"), NULL,
                                "gp:{h1}:epoch", 7, NULL);
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    cr_assert_eq(F.nfinal, 0, "no status: not a reply");
    cr_assert_eq(F.calls[0].s, BR_RS_ACK);
    cr_assert_str_eq(F.calls[0].argv[6], "");
    cr_assert_str_eq(F.calls[0].argv[7], "0");
    answer_int(0, 1);
}

Test(reqcore, fenced_ack_reports_the_newer_holder) {
    br_reply *rp = held(NULL);
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    answer_int(0, 0); /* the epoch moved on: another bridge holds the house */
    cr_assert_eq(F.nfenced, 1);
    cr_assert_str_eq(F.fenced_house, "h1");
    cr_assert_eq(F.fenced_epoch, 7);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, janitor_acks_under_the_holder) {
    br_reply *rp = br_reply_new(RS, "h2", "gp:{h2}:req", "5-0", gp_str_c("r5"), "gp:reply:j",
                                "gp:{h2}:state", 0, "");
    br_reply_set(rp, 504, "{}", gp_str_c("timeout"), gp_str_c("nobody holds the house"));
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
    cr_assert_eq(F.final_epoch, 0);
    answer_int(0, 1);
    cr_assert_eq(F.calls[1].s, BR_RS_ACK_UNHELD);
    cr_assert_str_eq(F.calls[1].argv[0], "gp:{h2}:state");
    cr_assert_str_eq(F.calls[1].argv[3], "");
    answer_int(1, 0); /* held again meanwhile: no fencing news for a janitor ack */
    cr_assert_eq(F.nfenced, 0);
}

Test(reqcore, settling_is_per_house_and_entry) {
    br_reply *a = held("gp:reply:a");
    br_reply *b =
        br_reply_new(RS, "h2", "gp:{h2}:req", "1-0", gp_str_c("r"), NULL, "gp:{h2}:epoch", 3, NULL);
    cr_assert(br_replies_settling(RS, "h1", "1-0"));
    cr_assert(br_replies_settling(RS, "h2", "1-0"));
    cr_assert_not(br_replies_settling(RS, "h1", "2-0"));
    cr_assert_eq(br_replies_live(RS), 2);
    br_reply_unref(a);
    cr_assert_not(br_replies_settling(RS, "h1", "1-0"));
    cr_assert(br_replies_settling(RS, "h2", "1-0"));
    br_reply_unref(b);
    cr_assert_eq(br_replies_live(RS), 0);
}
