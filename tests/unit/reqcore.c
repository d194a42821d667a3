/* reqcore.c — the bridge's request/reply core (bridge/daemon/reqcore.c) driven with a fake house, a
 * fake Redis and a virtual clock: every script the core runs is recorded with its arguments
 * and answered by the test, in any order, and every frame it sends to the house is recorded,
 * so the contract (a request forwarded, its response chunked into reply entries, deadlines
 * as 504s, the ack only after Redis confirmed the reply, a lost or abandoned reply never
 * acked, backpressure counters, bad house responses) is checked in milliseconds. */
#include "../../bridge/daemon/reqcore.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
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
    int nsettled;
    int pressure[2]; /* ops.pressure calls: off, on */
    char settled_house[64];
    unsigned final_status;
    uint64_t final_epoch;
    int final_error;
    int metric[8];
    char label[8][32];
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
static void f_count(void *ud, br_rc_metric m, const char *label) {
    fake *f = ud;
    f->metric[m]++;
    snprintf(f->label[m], sizeof f->label[m], "%s", label ? label : "");
}
static void f_live(void *ud, unsigned n) {
    ((fake *)ud)->live = n;
}

static void f_settled(void *ud, const char *house) {
    fake *f = ud;
    f->nsettled++;
    snprintf(f->settled_house, sizeof f->settled_house, "%s", house);
}

static void f_pressure(void *ud, int on) {
    ((fake *)ud)->pressure[!!on]++;
}

static const br_replies_ops OPS = {f_eval,  f_now_ns, f_now_redis, f_fenced,  f_final,
                                   f_count, f_live,   f_settled,   f_pressure};

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

/* The reply went out as three entries (final 0, 0, 1) and Redis confirms them in the order a,
 * b, last: only after the last of them may the request be acknowledged (call 3); then nothing
 * of the reply stays. */
static void three_chunks_confirmed(int a, int b, int last) {
    cr_assert_eq(count(BR_RS_REPLY), 3);
    cr_assert_str_eq(field(&F.calls[0], "final"), "0");
    cr_assert_str_eq(field(&F.calls[1], "final"), "0");
    cr_assert_str_eq(field(&F.calls[2], "final"), "1");
    answer_int(a, 1);
    answer_int(b, 1);
    cr_assert_eq(count(BR_RS_ACK), 0, "chunk %d is still unconfirmed", last);
    answer_int(last, 1);
    cr_assert_eq(count(BR_RS_ACK), 1);
    answer_int(3, 1);
    cr_assert_eq(br_replies_live(RS), 0);
}

Test(reqcore, chunks_all_confirmed_before_the_ack_in_any_order) {
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    br_reply_entry(rp, (const uint8_t *)"aaaa", 4, 0);
    br_reply_entry(rp, (const uint8_t *)"bbbb", 4, 0);
    br_reply_entry(rp, (const uint8_t *)"cc", 2, 1);
    br_reply_unref(rp);
    three_chunks_confirmed(2, 0, 1);
}

/* A house faster than Redis: past BR_REPLY_WBYTES_HIGH unconfirmed bytes the bridge is told
 * to stop reading houses, once; below BR_REPLY_WBYTES_LOW, to read on, once. Lost writes
 * count as confirmed (their bytes are gone from the bridge too). */
Test(reqcore, reply_bytes_waiting_for_redis_push_back_on_the_houses) {
    enum { N = 12 };
    static uint8_t chunk[BR_REPLY_WBYTES_HIGH / 8]; /* 8 of them (and their keys) are past it */
    br_reply *rp = held("gp:reply:a");
    br_reply_set(rp, 200, "{}", (gp_str){0}, (gp_str){0});
    for (int i = 0; i < N; i++) {
        br_reply_entry(rp, chunk, sizeof chunk, i == N - 1);
        cr_assert_eq(F.pressure[1], i >= 7 ? 1 : 0, "after %d chunks: %d", i + 1, F.pressure[1]);
    }
    br_reply_unref(rp);
    cr_assert_gt(br_replies_wbytes(RS), (size_t)N * sizeof chunk);
    /* Below LOW (half of HIGH) once 3 remain (4 and their keys are just above it). */
    for (int i = 0; i < N; i++) {
        if (i == 3)
            answer_null(i);
        else
            answer_int(i, 1);
        cr_assert_eq(F.pressure[0], i >= 8 ? 1 : 0, "after %d confirmed: %d", i + 1, F.pressure[0]);
    }
    cr_assert_eq(br_replies_wbytes(RS), 0);
    cr_assert_eq(F.pressure[1], 1, "told twice");
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
    cr_assert_eq(F.metric[BR_RC_REPLY_FAILURES], 1);
    cr_assert_str_eq(F.label[BR_RC_REPLY_FAILURES], "wrong_type");
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
    /* What a draining bridge waits for, house by house (requests.c, br_req_drain_busy). */
    cr_assert_eq(br_replies_house_settling(RS, "h1"), 1);
    cr_assert_eq(br_replies_house_settling(RS, "h2"), 1);
    cr_assert_eq(br_replies_house_settling(RS, "h3"), 0);
    br_reply_unref(a);
    cr_assert_not(br_replies_settling(RS, "h1", "1-0"));
    cr_assert(br_replies_settling(RS, "h2", "1-0"));
    cr_assert_eq(br_replies_house_settling(RS, "h1"), 0);
    cr_assert_eq(F.nsettled, 1, "no word that h1's reply settled");
    cr_assert_str_eq(F.settled_house, "h1");
    br_reply_unref(b);
    cr_assert_eq(br_replies_live(RS), 0);
    cr_assert_eq(F.nsettled, 2);
    cr_assert_str_eq(F.settled_house, "h2");
}

/* --- the requests in flight on one house connection (br_reqtab) ------------------------- */

#include <hiredis/read.h>

#define MAXFRAMES 64

typedef struct sent {
    uint8_t type;
    uint32_t stream;
    uint8_t flags;
    uint32_t timeout_ms;
    uint64_t body_len;
    size_t data_len;
    char text[64]; /* REQ_HEAD: method; CANCEL: reason */
} sent;

typedef struct house {
    sent frames[MAXFRAMES];
    int nframes;
    int closed; /* a protocol error closed the connection */
    char why[64];
    int rooms;
    size_t in, out;
    br_reqtab *t;
} house;

static house H;
static br_reqtab *T;
static gp_zctx *ZC;

static int h_send(void *ud, const gp_frame *f) {
    house *h = ud;
    cr_assert_lt(h->nframes, MAXFRAMES);
    sent *s = &h->frames[h->nframes++];
    memset(s, 0, sizeof *s);
    s->type = f->type;
    s->stream = f->stream;
    s->flags = f->flags;
    if (f->type == GP_FRAME_REQ_HEAD) {
        s->timeout_ms = f->u.req_head.timeout_ms;
        s->body_len = f->u.req_head.body_len;
        snprintf(s->text, sizeof s->text, "%.*s", (int)f->u.req_head.method.len,
                 (const char *)f->u.req_head.method.p);
    } else if (f->type == GP_FRAME_REQ_BODY) {
        s->data_len = f->u.body.data.len;
    } else if (f->type == GP_FRAME_CANCEL) {
        snprintf(s->text, sizeof s->text, "%.*s", (int)f->u.cancel.reason.len,
                 (const char *)f->u.cancel.reason.p);
    }
    return 0;
}
static void h_protocol_error(void *ud, const char *why, uint32_t stream) {
    house *h = ud;
    (void)stream;
    h->closed++;
    snprintf(h->why, sizeof h->why, "%s", why);
    br_reqtab_free_all(h->t); /* as closing the connection does */
}
static void h_room(void *ud) {
    ((house *)ud)->rooms++;
}
static void h_bytes(void *ud, int in, size_t n) {
    house *h = ud;
    if (in)
        h->in += n;
    else
        h->out += n;
}

static const br_reqtab_ops HOPS = {h_send, h_protocol_error, h_room, h_bytes, NULL};

/* Entry ids are Redis ms: the virtual clock starts at 1700000000000. */
#define T0 1700000000000ull

static void tab_setup(void) {
    setup();
    memset(&H, 0, sizeof H);
    ZC = gp_zctx_new(3);
    cr_assert_not_null(ZC);
    br_reqtab_cfg cfg = {"h1", "gp:{h1}:req", "gp:{h1}:epoch", 7, 1 << 20, 1024, ZC};
    T = br_reqtab_new(RS, &cfg, &HOPS, &H);
    cr_assert_not_null(T);
    H.t = T;
}
static void tab_teardown(void) {
    br_reqtab_free(T);
    gp_zctx_free(ZC);
    teardown();
}

/* A stream entry [id, [k, v, ...]] as Redis sends it (freeReplyObject). */
static redisReply *entry(const char *id, int n, const char *const *kv) {
    size_t cap = 256 + strlen(id);
    for (int i = 0; i < n; i++)
        cap += strlen(kv[i]) + 32;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    size_t len = (size_t)snprintf(buf, cap, "*2\r\n$%zu\r\n%s\r\n*%d\r\n", strlen(id), id, n);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "$%zu\r\n%s\r\n", strlen(kv[i]), kv[i]);
    redisReader *rd = redisReaderCreate();
    cr_assert_eq(redisReaderFeed(rd, buf, len), REDIS_OK);
    free(buf);
    void *r = NULL;
    cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK);
    cr_assert_not_null(r);
    redisReaderFree(rd);
    return r;
}

/* Feeds one entry at Redis time now. */
static void feed(const char *id, int n, const char *const *kv, int pending, uint64_t now) {
    redisReply *e = entry(id, n, kv);
    br_reqtab_entry(T, e, pending, now);
    freeReplyObject(e);
}

static void get(const char *id, const char *rid, uint64_t now) {
    const char *kv[] = {"id", rid, "method", "GET", "path", "/x", "timeout_ms", "5000"};
    feed(id, 8, kv, 0, now);
}

static void resp_head(uint32_t stream, unsigned status, int fin, const gp_header *h, size_t nh) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_HEAD;
    f.stream = stream;
    f.flags = fin ? GP_FLAG_FIN : 0;
    f.u.resp_head.status = (uint16_t)status;
    f.u.resp_head.headers = (gp_header *)h;
    f.u.resp_head.nheaders = nh;
    br_reqtab_frame(T, &f);
}

static void resp_body(uint32_t stream, const uint8_t *p, size_t n, int fin) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_BODY;
    f.stream = stream;
    f.flags = fin ? GP_FLAG_FIN : 0;
    f.u.body.data = (gp_str){p, n};
    br_reqtab_frame(T, &f);
}

/* The index of the n-th recorded script call of kind s (from 0), or -1. */
static int nth(br_rs_script s, int n) {
    for (int i = 0; i < F.ncalls; i++)
        if (F.calls[i].s == s && n-- == 0)
            return i;
    return -1;
}

TestSuite(reqtab, .init = tab_setup, .fini = tab_teardown);

Test(reqtab, request_forwarded_answered_and_acked_after_the_reply) {
    get("1700000000000-0", "r1", T0 + 1000);
    cr_assert_eq(H.nframes, 1);
    cr_assert_eq(H.frames[0].type, GP_FRAME_REQ_HEAD);
    cr_assert_eq(H.frames[0].stream, 1);
    cr_assert(H.frames[0].flags & GP_FLAG_FIN, "no body: the head ends the request");
    cr_assert_str_eq(H.frames[0].text, "GET");
    cr_assert_eq(H.frames[0].timeout_ms, 4000, "what is left of the deadline at forwarding");
    cr_assert_eq(br_reqtab_count(T), 1);
    cr_assert_eq(br_reqtab_min_deadline(T), T0 + 5000);
    cr_assert_eq(F.metric[BR_RC_FORWARDED], 1);
    cr_assert(br_reqtab_in_flight(T, "1700000000000-0"));

    gp_header hh[] = {{GP_STR_LIT("Content-Type"), GP_STR_LIT("text/plain")}};
    resp_head(1, 200, 0, hh, 1);
    resp_body(1, (const uint8_t *)"hello", 5, 1);
    cr_assert_eq(br_reqtab_count(T), 0);
    cr_assert_eq(br_reqtab_min_deadline(T), T0 + 5000, "recomputed at the next deadline pass");
    cr_assert_eq(H.rooms, 1);
    cr_assert_eq(H.in, 5);
    cr_assert_eq(F.ncalls, 1);
    const call *x = &F.calls[0];
    cr_assert_eq(x->s, BR_RS_REPLY);
    cr_assert_str_eq(x->argv[0], "gp:rep:r1", "the default reply key");
    cr_assert_str_eq(field(x, "status"), "200");
    cr_assert_str_eq(field(x, "headers"), "{\"content-type\":\"text/plain\"}");
    cr_assert_str_eq(field(x, "body"), "hello");
    cr_assert_str_eq(field(x, "final"), "1");
    cr_assert(br_reqtab_in_flight(T, "1700000000000-0"), "settling: not delivered again");
    answer_int(0, 1);
    cr_assert_eq(F.calls[1].s, BR_RS_ACK);
    cr_assert_str_eq(F.calls[1].argv[3], "7");
    answer_int(1, 1);
    cr_assert_not(br_reqtab_in_flight(T, "1700000000000-0"));
}

Test(reqtab, response_chunked_into_reply_entries) {
    get("1700000000000-0", "r1", T0);
    resp_head(1, 200, 0, NULL, 0);
    uint8_t big[3000];
    memset(big, 'a', sizeof big);
    resp_body(1, big, 1500, 0); /* one 1024-byte entry, 476 held */
    cr_assert_eq(count(BR_RS_REPLY), 1);
    cr_assert_eq(strlen(field(&F.calls[0], "body")), 255, "argv copy is cut at 255");
    cr_assert_str_eq(field(&F.calls[0], "final"), "0");
    resp_body(1, big, 1500, 1); /* 476 + 1500 = 1976: one more entry of 1024, the final 952 */
    cr_assert_eq(H.in, 3000);
    three_chunks_confirmed(2, 1, 0);
}

Test(reqtab, deadline_passed_cancels_and_answers_504) {
    get("1700000000000-0", "r1", T0);
    get("1700000000000-1", "r2", T0);
    br_reqtab_deadlines(T, T0 + 4999);
    cr_assert_eq(H.nframes, 2, "nothing due yet");
    br_reqtab_deadlines(T, T0 + 5000);
    cr_assert_eq(br_reqtab_count(T), 0);
    cr_assert_eq(br_reqtab_min_deadline(T), 0);
    cr_assert_eq(H.nframes, 4);
    cr_assert_eq(H.frames[2].type, GP_FRAME_CANCEL);
    cr_assert_str_eq(H.frames[2].text, "deadline");
    cr_assert_eq(count(BR_RS_REPLY), 2);
    cr_assert_str_eq(field(&F.calls[0], "status"), "504");
    cr_assert_str_eq(field(&F.calls[0], "error"), "timeout");
    /* The house's late answer is a stray frame now: nothing more is written. */
    resp_head(1, 200, 1, NULL, 0);
    cr_assert_eq(count(BR_RS_REPLY), 2);
    answer_int(0, 1);
    answer_int(1, 1);
}

Test(reqtab, deadline_passed_before_forwarding_is_a_504_without_a_frame) {
    get("1700000000000-0", "r1", T0 + 5000);
    cr_assert_eq(H.nframes, 0);
    cr_assert_eq(br_reqtab_count(T), 0);
    cr_assert_eq(count(BR_RS_REPLY), 1);
    cr_assert_str_eq(field(&F.calls[0], "status"), "504");
    cr_assert_str_eq(field(&F.calls[0], "message"),
                     "deadline passed before the request was forwarded");
    answer_int(0, 1);
}

Test(reqtab, house_gone_mid_reply_drops_it_and_leaves_the_entry_pending) {
    get("1700000000000-0", "r1", T0);
    resp_head(1, 200, 0, NULL, 0);
    uint8_t big[1500];
    memset(big, 'b', sizeof big);
    resp_body(1, big, sizeof big, 0);
    cr_assert_eq(count(BR_RS_REPLY), 1);
    br_reqtab_free_all(T); /* the connection closed */
    cr_assert_eq(br_reqtab_count(T), 0);
    int d = nth(BR_RS_REPLY_DROP, 0);
    cr_assert_geq(d, 0, "the partial reply is dropped");
    cr_assert_str_eq(F.calls[d].argv[0], "gp:rep:r1");
    answer_int(0, 1);
    cr_assert_eq(count(BR_RS_ACK), 0, "left pending: delivered again");
    cr_assert_not(br_replies_settling(RS, "h1", "1700000000000-0"));
    /* Its redelivery (from the pending list) is forwarded again. */
    get("1700000000000-0", "r1", T0 + 10);
    cr_assert_eq(br_reqtab_count(T), 1);
}

Test(reqtab, pending_rescan_skips_what_is_in_flight_or_settling) {
    const char *kv[] = {"id", "r1", "method", "GET", "path", "/x", "timeout_ms", "5000"};
    feed("1700000000000-0", 8, kv, 0, T0);
    feed("1700000000000-0", 8, kv, 1, T0 + 1);
    cr_assert_eq(H.nframes, 1, "in flight: not forwarded twice");
    resp_head(1, 204, 1, NULL, 0);
    feed("1700000000000-0", 8, kv, 1, T0 + 2);
    cr_assert_eq(H.nframes, 1, "settling: not forwarded twice");
    answer_int(0, 1);
    answer_int(1, 1);
    feed("1700000000000-0", 8, kv, 1, T0 + 3);
    cr_assert_eq(H.nframes, 2, "settled yet pending: delivered again");
    cr_assert_eq(F.metric[BR_RC_PENDING_CLAIMED], 1);
}

Test(reqtab, counters_for_backpressure) {
    char body[3000];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    const char *kv[] = {"method", "POST", "path", "/u", "body", body, "timeout_ms", "5000"};
    feed("1700000000000-0", 8, kv, 0, T0);
    feed("1700000000000-1", 8, kv, 0, T0);
    cr_assert_eq(br_reqtab_count(T), 2);
    cr_assert_eq(br_reqtab_bytes(T), 2 * 2999, "the bodies held here");
    cr_assert_not_null(br_reqtab_body_head(T));
    uint8_t scratch[70000], *spent;
    gp_frame f;
    cr_assert(br_reqtab_next_body(T, &f, scratch, sizeof scratch, &spent));
    cr_assert_eq(f.stream, 1);
    cr_assert(f.flags & GP_FLAG_FIN);
    cr_assert_not_null(spent);
    free(spent);
    cr_assert_eq(br_reqtab_bytes(T), 2999);
    cr_assert_eq(H.rooms, 1, "room to read again");
    cr_assert(br_reqtab_next_body(T, &f, scratch, sizeof scratch, &spent));
    cr_assert_eq(f.stream, 2);
    free(spent);
    cr_assert_eq(br_reqtab_bytes(T), 0);
    cr_assert_null(br_reqtab_body_head(T));
    cr_assert_not(br_reqtab_next_body(T, &f, scratch, sizeof scratch, &spent));
    cr_assert_eq(br_reqtab_count(T), 2, "still in flight until answered");
    resp_head(1, 200, 1, NULL, 0);
    cr_assert_eq(br_reqtab_count(T), 1);
    cr_assert_eq(H.rooms, 3);
}

Test(reqtab, max_inflight_and_max_inflight_bytes_stop_reading) {
    cr_assert_eq(br_reqtab_room(NULL, 3, 1024), 3, "no table yet: all the room");
    cr_assert_eq(br_reqtab_room(T, 3, 1024), 3);
    get("1700000000000-0", "r1", T0);
    get("1700000000000-1", "r2", T0);
    cr_assert_eq(br_reqtab_room(T, 3, 1024), 1);
    cr_assert_eq(br_reqtab_room(T, 2, 1024), 0, "max-inflight reached");
    char body[2000];
    memset(body, 'z', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    const char *kv[] = {"method", "POST", "path", "/u", "body", body, "timeout_ms", "5000"};
    feed("1700000000000-2", 8, kv, 0, T0);
    cr_assert_eq(br_reqtab_room(T, 10, 1024), 0, "max-inflight-bytes reached");
    cr_assert_eq(br_reqtab_room(T, 10, 4096), 7);
    int rooms = H.rooms;
    resp_head(1, 200, 1, NULL, 0);
    cr_assert_eq(H.rooms, rooms + 1, "the owner hears of the room");
    cr_assert_eq(br_reqtab_room(T, 2, 4096), 0);
    resp_head(2, 200, 1, NULL, 0);
    cr_assert_eq(br_reqtab_room(T, 2, 4096), 1);
    uint8_t scratch[70000], *spent;
    gp_frame f;
    cr_assert(br_reqtab_next_body(T, &f, scratch, sizeof scratch, &spent));
    free(spent);
    cr_assert_eq(br_reqtab_room(T, 10, 1024), 9, "its body went out: bytes free again");
}

Test(reqtab, bodies_go_out_round_robin) {
    static char big[200001];
    memset(big, 'y', sizeof big - 1);
    const char *kb[] = {"method", "POST", "path", "/big", "body", big, "timeout_ms", "5000"};
    const char *ks[] = {"method", "POST", "path", "/small", "body", "tiny", "timeout_ms", "5000"};
    redisReply *e = entry("1700000000000-0", 8, kb);
    br_reqtab_entry(T, e, 0, T0);
    freeReplyObject(e);
    feed("1700000000000-1", 8, ks, 0, T0);
    uint8_t scratch[70000], *spent;
    gp_frame f;
    uint32_t order[8];
    int n = 0;
    while (n < 8 && br_reqtab_next_body(T, &f, scratch, sizeof scratch, &spent)) {
        order[n++] = f.stream;
        free(spent);
    }
    cr_assert_eq(n, 5, "4 chunks of 64 KiB for the big body, 1 for the small one");
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 2, "the small body does not wait for the big one");
    cr_assert_eq(order[4], 1);
    cr_assert_eq(H.out, 200000 + 4);
}

Test(reqtab, bad_status_is_a_502_and_the_house_gets_a_cancel) {
    get("1700000000000-0", "r1", T0);
    resp_head(1, 0, 0, NULL, 0);
    cr_assert_eq(F.metric[BR_RC_BAD_RESPONSES], 1);
    cr_assert_str_eq(F.label[BR_RC_BAD_RESPONSES], "status");
    cr_assert_eq(H.frames[1].type, GP_FRAME_CANCEL);
    cr_assert_str_eq(H.frames[1].text, "bad_response");
    cr_assert_eq(br_reqtab_count(T), 0);
    cr_assert_str_eq(field(&F.calls[0], "status"), "502");
    cr_assert_str_eq(field(&F.calls[0], "error"), "bad_response");
    cr_assert_eq(H.closed, 0, "the connection stays");
    answer_int(0, 1);
}

Test(reqtab, bad_header_dropped_the_rest_stands) {
    get("1700000000000-0", "r1", T0);
    gp_header hh[] = {{GP_STR_LIT("X-Ok"), GP_STR_LIT("1")},
                      {GP_STR_LIT("X-Bad"), GP_STR_LIT("a\r\nb")},
                      {GP_STR_LIT("Bad Name"), GP_STR_LIT("v")}};
    resp_head(1, 200, 1, hh, 3);
    cr_assert_eq(F.metric[BR_RC_BAD_RESPONSES], 2);
    cr_assert_str_eq(field(&F.calls[0], "status"), "200");
    cr_assert_str_eq(field(&F.calls[0], "headers"), "{\"x-ok\":\"1\"}");
    answer_int(0, 1);
}

Test(reqtab, protocol_errors_close_the_connection) {
    get("1700000000000-0", "r1", T0);
    resp_body(1, (const uint8_t *)"x", 1, 0);
    cr_assert_eq(H.closed, 1);
    cr_assert_str_eq(H.why, "resp_body_before_head");
    cr_assert_eq(br_reqtab_count(T), 0);
    get("1700000000000-1", "r2", T0);
    resp_head(2, 200, 0, NULL, 0);
    resp_head(2, 200, 0, NULL, 0);
    cr_assert_eq(H.closed, 2);
    cr_assert_str_eq(H.why, "duplicate_resp_head");
}

Test(reqtab, refused_reply_key_writes_nothing) {
    const char *kv[] = {"id", "r1", "method", "GET", "path", "/x", "reply", "gp:{h2}:req"};
    feed("1700000000000-0", 8, kv, 0, T0);
    cr_assert_eq(H.nframes, 0, "not forwarded");
    cr_assert_eq(F.metric[BR_RC_INVALID_REQUESTS], 1);
    cr_assert_str_eq(F.label[BR_RC_INVALID_REQUESTS], "reply_key");
    cr_assert_eq(count(BR_RS_REPLY), 0, "nothing written to a key we do not own");
    cr_assert_eq(count(BR_RS_ACK), 1);
    cr_assert(strstr(F.calls[0].argv[6], "\"error\":\"bad_reply\""), "%s", F.calls[0].argv[6]);
    answer_int(0, 1);
}

Test(reqtab, invalid_entry_gets_a_400) {
    const char *kv[] = {"id", "r1", "path", "/x"};
    feed("1700000000000-0", 4, kv, 0, T0);
    cr_assert_eq(H.nframes, 0);
    cr_assert_eq(F.metric[BR_RC_INVALID_REQUESTS], 1);
    cr_assert_str_eq(F.label[BR_RC_INVALID_REQUESTS], "request");
    cr_assert_str_eq(field(&F.calls[0], "status"), "400");
    cr_assert_str_eq(field(&F.calls[0], "error"), "bad_request");
    answer_int(0, 1);
    answer_int(1, 1);
}

Test(reqtab, no_reply_wanted_acks_without_writing) {
    const char *kv[] = {"id", "r1", "method", "GET", "path", "/x", "reply", ""};
    feed("1700000000000-0", 8, kv, 0, T0);
    cr_assert_eq(H.nframes, 1);
    resp_head(1, 200, 0, NULL, 0);
    uint8_t big[3000] = {0};
    resp_body(1, big, sizeof big, 1);
    cr_assert_eq(count(BR_RS_REPLY), 0);
    cr_assert_eq(count(BR_RS_ACK), 1);
    answer_int(0, 1);
}
