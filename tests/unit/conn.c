/* conn.c — the bridge's connection layer (bridge/daemon/conn.c) on a fake transport and fake
 * hooks: the queue of encoded frames, the frames a live connection answers itself (PING,
 * GOAWAY, unexpected ones), what goes up to the holder of the house (responses, closing,
 * freeing), the reference count across a close, draining, and the deadlines of the tick on
 * a virtual clock. Until now only whole-system tests (it_e2e, it_fault, it_flood) reached it. */
#include "../../bridge/daemon/conn.h"
#include "../../bridge/log.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

typedef struct fake {
    int kicks, closes;            /* transport */
    int frames, closed_up, freed; /* hooks */
    uint8_t last_up_type;
} fake;

static fake F;
static uv_loop_t loop;
static br_config cfg;
static br_env env;
static br_conns cs;

static void tp_kick(br_conn *c) {
    (void)c;
    F.kicks++;
}
static void tp_close(br_conn *c) {
    (void)c;
    F.closes++;
}
static const br_transport TP = {.name = "ws", .kick = tp_kick, .close = tp_close};

static void up_frame(void *ud, br_conn *c, const gp_frame *f) {
    (void)ud, (void)c;
    F.frames++;
    F.last_up_type = f->type;
}
static void up_closed(void *ud, br_conn *c) {
    (void)ud, (void)c;
    F.closed_up++;
}
static void up_free(void *ud, br_conn *c) {
    (void)ud, (void)c;
    F.freed++;
}

static void setup(void) {
    memset(&F, 0, sizeof F);
    br_log_init(BR_LOG_ERROR, "test"); /* only errors: the test provokes warnings */
    uv_loop_init(&loop);
    memset(&cfg, 0, sizeof cfg);
    cfg.ping_interval = 1000;
    cfg.auth_timeout = 5;
    env = (br_env){.loop = &loop, .cfg = &cfg};
    cs = (br_conns){.env = &env, .hooks = {NULL, up_frame, up_closed, up_free}};
}

static void teardown(void) {
    uv_loop_close(&loop);
}

TestSuite(conn, .init = setup, .fini = teardown);

/* The type of the next queued frame, decoded (-1: none queued). */
static int next_type(br_conn *c, gp_frame *out) {
    br_out *o = br_conn_pop(c);
    if (!o)
        return -1;
    gp_frame f;
    ssize_t n = gp_frame_decode(o->buf + BR_OUT_PRE, o->len, GP_DEFAULT_MAX_FRAME, &f);
    cr_assert_gt(n, 0, "a queued frame decodes");
    if (out)
        *out = f;
    int t = f.type;
    free(o);
    return t;
}

static br_conn *live(const char *house) {
    br_conn *c = br_conn_new(&cs, &TP, (void *)1, "127.0.0.1:9");
    cr_assert(c);
    snprintf(c->house, sizeof c->house, "%s", house);
    c->state = BR_CS_LIVE;
    return c;
}

Test(conn, new_conns_are_listed_and_numbered) {
    br_conn *a = br_conn_new(&cs, &TP, (void *)1, "10.0.0.1:1");
    br_conn *b = br_conn_new(&cs, &TP, (void *)1, "10.0.0.2:2");
    cr_assert(a && b);
    cr_expect_eq(a->owner, &cs);
    cr_expect_eq(b->serial, a->serial + 1);
    cr_expect_eq(cs.all, b, "newest first");
    cr_expect_eq(b->all_next, a);
    cr_expect_eq(br_conn_count_open(&cs), 2);
    cr_expect_eq(a->state, BR_CS_HELLO);
    br_conn_closed(a, NULL);
    cr_expect_eq(cs.all, b);
    cr_expect_null(b->all_next, "a left the list");
    cr_expect_eq(F.freed, 1, "the last reference went: the holder frees what hangs off it");
    br_conn_closed(b, NULL);
    cr_expect_null(cs.all);
    cr_expect_eq(br_conn_count_open(&cs), 0);
}

Test(conn, ping_is_answered_and_responses_go_up) {
    br_conn *c = live("h1");
    gp_frame f, r;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_PING;
    f.u.ping.opaque = 42;
    br_conn_frame(c, &f);
    cr_expect_eq(F.kicks, 1, "the transport is told");
    cr_expect_eq(next_type(c, &r), GP_FRAME_PONG);
    cr_expect_eq(r.u.ping.opaque, 42, "the PONG echoes the PING");
    cr_expect_eq(F.frames, 0, "PING stays in the connection layer");
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_HEAD;
    f.stream = 3;
    br_conn_frame(c, &f);
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_BODY;
    br_conn_frame(c, &f);
    cr_expect_eq(F.frames, 2, "responses go up to the holder");
    cr_expect_eq(F.last_up_type, GP_FRAME_RESP_BODY);
    cr_expect_eq(next_type(c, NULL), -1, "nothing answered to a response");
    br_conn_closed(c, NULL);
}

Test(conn, unexpected_frame_is_a_protocol_error) {
    br_conn *c = live("h1");
    gp_frame f, g;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_HELLO;
    br_conn_frame(c, &f);
    cr_expect_eq(c->state, BR_CS_CLOSING);
    cr_expect_eq(F.closes, 1);
    cr_expect_geq(F.closed_up, 1, "the holder let go of the house");
    cr_expect_eq(next_type(c, &g), GP_FRAME_GOAWAY);
    cr_expect_eq(g.u.goaway.code, GP_GOAWAY_PROTOCOL);
    cr_expect_not(br_conn_alive(c));
    cr_expect_eq(br_conn_send(c, &f), -1, "nothing more is sent once closing");
    br_conn_closed(c, NULL);
}

Test(conn, goaway_from_the_house_closes_without_one_back) {
    br_conn *c = live("h1");
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_GOAWAY;
    f.u.goaway.code = GP_GOAWAY_DRAINING;
    br_conn_frame(c, &f);
    cr_expect_eq(c->state, BR_CS_CLOSING);
    cr_expect_eq(next_type(c, NULL), -1, "no GOAWAY answered to a GOAWAY");
    br_conn_closed(c, NULL);
}

/* A Redis callback's reference keeps the conn (not its place in the list) past its close. */
Test(conn, a_reference_outlives_the_transport) {
    br_conn *c = live("h1");
    br_conn_ref(c);
    br_conn_closed(c, "test");
    cr_expect_null(cs.all, "gone from the list");
    cr_expect_eq(F.freed, 0, "still referenced");
    cr_expect_not(br_conn_alive(c));
    cr_expect_eq(c->refs, 1);
    br_conn_unref(c);
    cr_expect_eq(F.freed, 1);
}

/* For br_conn_drain_all: the test's notion of busy (requests.c adds replies settling). */
static int busy_if_inflight(void *ud, const br_conn *c) {
    (void)ud;
    return c->ninflight > 0;
}

/* SIGTERM: a busy house hears nothing yet and stays (told and closed later, once not busy:
 * requests.c); the others get GOAWAY DRAINING and are closed at once. */
Test(conn, drain_keeps_busy_houses_until_answered) {
    br_conn *busy = live("busy"), *idle = live("idle");
    busy->ninflight = 2;
    br_conn_drain_all(&cs, busy_if_inflight, NULL);
    gp_frame g;
    cr_expect_eq(busy->state, BR_CS_LIVE);
    cr_expect_eq(next_type(busy, NULL), -1, "a busy house was told to go");
    cr_expect_eq(idle->state, BR_CS_CLOSING);
    cr_expect_eq(next_type(idle, &g), GP_FRAME_GOAWAY);
    cr_expect_eq(g.u.goaway.code, GP_GOAWAY_DRAINING);
    cr_expect_eq(br_conn_count_open(&cs), 1);
    br_conn_close_all(&cs);
    cr_expect_eq(br_conn_count_open(&cs), 0);
    cr_expect_eq(next_type(busy, &g), GP_FRAME_GOAWAY, "closed without a GOAWAY");
    cr_expect_eq(g.u.goaway.code, GP_GOAWAY_DRAINING);
    br_conn_closed(busy, NULL);
    br_conn_closed(idle, NULL);
}

/* The tick on a virtual clock: a handshake past --auth-timeout is closed, a live house is
 * pinged every ping interval and closed when silent for three. */
Test(conn, tick_deadlines) {
    br_conn *hs = br_conn_new(&cs, &TP, (void *)1, "10.0.0.3:3");
    br_conn *c = live("h1");
    uint64_t t0 = 1000000;
    hs->accepted_ms = t0;
    c->last_rx_ms = c->last_ping_ms = t0;
    br_conn_tick(&cs, t0 + 999);
    cr_expect_eq(next_type(c, NULL), -1, "no PING before the interval");
    cr_expect_eq(hs->state, BR_CS_HELLO);
    br_conn_tick(&cs, t0 + 1000);
    cr_expect_eq(next_type(c, NULL), GP_FRAME_PING);
    br_conn_tick(&cs, t0 + 5001);
    cr_expect_eq(hs->state, BR_CS_CLOSING, "handshake timeout");
    cr_expect_eq(c->state, BR_CS_CLOSING, "silent for more than three intervals");
    br_conn_closed(hs, NULL);
    br_conn_closed(c, NULL);
}
