/* Unit tests for house/tunnel.c, the tunnel core, through its transport interface
 * (house/transport.h) with a fake transport and a fake executor: no socket, no lws, no curl.
 * The test plays the bridge: it reads the frames the core lets the transport pull and feeds
 * it frames as the transport would. Covered: the handshake (the bridge's proof is checked,
 * the house's proof is right), a request run once, its redelivery answered from the replay
 * cache without a second run, and a bridge with a wrong proof refused. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../house/house.h"
#include "../../house/transport.h"

/* --- a fake transport: the test is the bridge ------------------------------------------- */

static struct {
    hs_transport base;
    int dials, sends, closes;
} F;

static int f_dial(hs_transport *t, const char *url) {
    (void)url;
    F.dials++;
    return t->up->on_dialing(t->up->ud, t, 0);
}
static void f_send(hs_transport *t) {
    (void)t;
    F.sends++;
}
static void f_close(hs_transport *t) {
    (void)t;
    F.closes++;
}
static void f_nop(hs_transport *t) {
    (void)t;
}
static const char *f_label(hs_transport *t) {
    (void)t;
    return "ws";
}
static const hs_transport_ops f_ops = {.dial = f_dial,
                                       .send = f_send,
                                       .close = f_close,
                                       .stop = f_nop,
                                       .free = f_nop,
                                       .label = f_label};

/* The core makes its transports through these (tr_ws.c and tr_rudp.c are not linked). */
hs_transport *hs_tr_ws_new(hs_house *h, const hs_transport_up *up) {
    (void)h;
    F.base.ops = &f_ops;
    F.base.up = up;
    return &F.base;
}
hs_transport *hs_tr_rudp_new(hs_house *h, const hs_transport_up *up) {
    (void)h, (void)up;
    return NULL;
}
/* admin.c (the metrics) is not linked either. */
void hs_metrics_request(hs_house *h, const char *outcome, uint64_t start_ns, size_t from_bridge,
                        uint64_t to_bridge) {
    (void)h, (void)outcome, (void)start_ns, (void)from_bridge, (void)to_bridge;
}

/* --- a fake executor: records the calls, the test answers them -------------------------- */

static struct {
    int starts, aborts;
    hs_stream *last;
} X;

static int x_check(void *ud, hs_request *r, uint16_t *status, const char **error,
                   const char **message) {
    (void)ud, (void)status, (void)error, (void)message;
    r->base_url = "http://upstream.invalid";
    return 0;
}
static hs_xfer *x_start(void *ud, hs_stream *s) {
    (void)ud;
    X.starts++;
    X.last = s;
    return (hs_xfer *)&X; /* any non-NULL token: the core only hands it back */
}
static void x_abort(void *ud, hs_xfer *x) {
    (void)ud, (void)x;
    X.aborts++;
}
static void x_resume(void *ud) {
    (void)ud;
}
static const hs_exec x_exec = {x_check, x_start, x_abort, x_resume};

/* --- the house under test --------------------------------------------------------------- */

static uv_loop_t loop;
static hs_house H;
static char *bridges[] = {"ws://bridge.invalid/"};
static gp_frame rx; /* the last frame pulled */
static uint8_t rxbuf[1 << 17];
static const hs_hooks *init_hooks; /* the next init()'s hs_house.hooks */

static void init(void) {
    cr_assert_geq(sodium_init(), 0);
    memset(&F, 0, sizeof F);
    memset(&X, 0, sizeof X);
    memset(&H, 0, sizeof H);
    uv_loop_init(&loop);
    H.loop = &loop;
    H.cfg.id = "h1";
    H.cfg.bridges = bridges;
    H.cfg.nbridges = 1;
    H.cfg.max_body = 1 << 20;
    H.cfg.reconnect_max_ms = 30000;
    H.cfg.rudp_probe_ms = 30000;
    randombytes_buf(H.secret, sizeof H.secret);
    char err[128];
    cr_assert_not_null(H.cache = hs_cache_new());
    cr_assert_not_null(H.journal = hs_journal_open(H.cache, NULL, "h1", 0, err, sizeof err));
    H.exec = &x_exec;
    H.hooks = init_hooks;
    init_hooks = NULL;
    cr_assert_not_null(H.tunnel = hs_tunnel_new(&H));
    cr_assert_eq(hs_tunnel_start(H.tunnel), 0);
}

static void fini(void) {
    H.stopping = 1;
    hs_tunnel_stop(H.tunnel);
    uv_run(&loop, UV_RUN_NOWAIT);
    hs_tunnel_final(H.tunnel);
    uv_run(&loop, UV_RUN_NOWAIT);
    hs_tunnel_free(H.tunnel);
    hs_journal_close(H.journal);
    hs_cache_free(H.cache);
    uv_loop_close(&loop);
}

TestSuite(tunnel, .init = init, .fini = fini, .timeout = 10);

/* Takes the next frame the core would write; 0 when there is none. */
static int pull(void) {
    const hs_transport_up *up = F.base.up;
    hs_out *o = up->pull(up->ud, &F.base, SIZE_MAX);
    if (!o)
        return 0;
    cr_assert_leq(o->len, sizeof rxbuf);
    memcpy(rxbuf, o->buf + HS_OUT_PRE, o->len);
    ssize_t n = gp_frame_decode(rxbuf, o->len, GP_DEFAULT_MAX_FRAME, &rx);
    cr_assert_eq(n, (ssize_t)o->len, "the core wrote a bad frame");
    up->sent(up->ud, &F.base, o, 1);
    return 1;
}

static void feed(const gp_frame *f) {
    uint8_t b[4096];
    ssize_t n = gp_frame_encode(f, b, sizeof b);
    cr_assert_gt(n, 0);
    F.base.up->on_bytes(F.base.up->ud, &F.base, b, (size_t)n);
}

/* The bridge's side of the handshake; `good`: with the right proof (else the house must
 * refuse it before its AUTH). */
static void handshake(int good) {
    cr_assert_eq(F.dials, 1);
    F.base.up->on_open(F.base.up->ud, &F.base);
    cr_assert(pull() && rx.type == GP_FRAME_HELLO, "no HELLO");
    cr_assert_eq(rx.u.hello.house_id.len, 2);
    uint8_t hn[GP_NONCE_LEN], bn[GP_NONCE_LEN], proof[GP_PROOF_LEN];
    memcpy(hn, rx.u.hello.nonce, sizeof hn);
    randombytes_buf(bn, sizeof bn);
    uint8_t secret[GP_SECRET_LEN];
    memcpy(secret, H.secret, sizeof secret);
    if (!good)
        secret[0] ^= 1;
    gp_auth_proof(GP_ROLE_BRIDGE, secret, gp_str_c("h1"), hn, bn, proof);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_CHALLENGE;
    f.u.challenge.nonce = bn;
    f.u.challenge.proof = proof;
    feed(&f);
    if (!good)
        return;
    cr_assert(pull() && rx.type == GP_FRAME_AUTH, "no AUTH");
    cr_assert_eq(gp_auth_verify(GP_ROLE_HOUSE, H.secret, gp_str_c("h1"), hn, bn, rx.u.auth.proof),
                 0, "the house's proof does not verify");
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_WELCOME;
    f.u.welcome.bridge_id = gp_str_c("b1");
    f.u.welcome.ping_interval_ms = 5000;
    f.u.welcome.max_frame = GP_DEFAULT_MAX_FRAME;
    f.u.welcome.epoch = 7;
    feed(&f);
    cr_assert(hs_tunnel_live(H.tunnel), "not live after WELCOME");
}

static void request(uint32_t stream, const char *frame_id) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_REQ_HEAD;
    f.flags = GP_FLAG_FIN;
    f.stream = stream;
    f.u.req_head.frame_id = gp_str_c(frame_id);
    f.u.req_head.method = gp_str_c("GET");
    f.u.req_head.path = gp_str_c("/x");
    f.u.req_head.service = gp_str_c("");
    f.u.req_head.timeout_ms = 10000;
    f.u.req_head.body_len = 0;
    feed(&f);
}

/* Pulls stream's response: a 200 head and the body "hello". */
static void expect_hello(uint32_t stream) {
    cr_assert(pull() && rx.type == GP_FRAME_RESP_HEAD, "no RESP_HEAD");
    cr_assert_eq(rx.stream, stream);
    cr_assert_eq(rx.u.resp_head.status, 200);
    cr_assert(pull() && rx.type == GP_FRAME_RESP_BODY, "no RESP_BODY");
    cr_assert_eq(rx.stream, stream);
    cr_assert(rx.flags & GP_FLAG_FIN);
    cr_assert_eq(rx.u.body.data.len, 5);
    cr_assert(memcmp(rx.u.body.data.p, "hello", 5) == 0);
}

Test(tunnel, handshake_request_and_replay_over_any_transport) {
    handshake(1);
    request(1, "f1");
    cr_assert_eq(X.starts, 1, "the request was not run");
    gp_header h = {GP_STR_LIT("content-type"), GP_STR_LIT("text/plain")};
    hs_stream_head(X.last, 200, &h, 1, "", "", 5, 0);
    hs_stream_body(X.last, h.value, (const uint8_t *)"hello", 5, 1);
    hs_stream_upstream_done(X.last, "ok");
    cr_assert_gt(F.sends, 0, "the transport was never asked to write");
    expect_hello(1);
    /* The bridge delivers it again (it crashed before acknowledging): no second run. */
    request(3, "f1");
    cr_assert_eq(X.starts, 1, "a redelivered request ran twice");
    expect_hello(3);
    cr_assert_eq(pull(), 0);
    cr_assert_eq(X.aborts, 0);
}

Test(tunnel, bridge_with_a_wrong_proof_is_refused) {
    handshake(0);
    cr_assert_eq(F.closes, 1, "the connection was not closed");
    cr_assert_not(hs_tunnel_live(H.tunnel));
    cr_assert_eq(pull(), 0, "AUTH went to an impostor");
}

/* --- hooks: events and the dial gate ----------------------------------------------------- */

static struct {
    int n[HS_EV_CANCELLED + 1];
    int gated;
    char reason[64];
} E;

static void e_event(void *ud, hs_house *h, enum hs_event ev, const char *bridge, const char *reason,
                    uint64_t ms) {
    (void)ud, (void)h, (void)bridge, (void)ms;
    E.n[ev]++;
    if (reason)
        snprintf(E.reason, sizeof E.reason, "%s", reason);
}
static void e_gate(void *ud, hs_house *h) {
    (void)ud, (void)h;
    E.gated++;
}
static const hs_hooks e_hooks = {e_event, e_gate};

/* The house of init() with hooks, started again: the first dial waits at the gate. */
static void restart_with_hooks(void) {
    fini();
    init_hooks = &e_hooks;
    init();
}

Test(tunnel, hooks_report_the_connection_and_gate_every_dial) {
    memset(&E, 0, sizeof E);
    restart_with_hooks();
    H.cfg.reconnect_max_ms = 20; /* a fence's long backoff: 10..20 ms here */
    cr_assert_eq(F.dials, 0, "dialed past the gate");
    cr_assert_eq(E.gated, 1, "the first dial did not ask the gate");
    hs_tunnel_dial(H.tunnel);
    cr_assert_eq(F.dials, 1);
    hs_tunnel_dial(H.tunnel); /* not at the gate: nothing */
    cr_assert_eq(F.dials, 1);
    cr_assert_eq(E.n[HS_EV_DIALING], 1);
    handshake(1);
    cr_assert_eq(E.n[HS_EV_LIVE], 1);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_GOAWAY;
    f.u.goaway.code = GP_GOAWAY_FENCED;
    f.u.goaway.message = gp_str_c("another connection");
    feed(&f);
    cr_assert_eq(E.n[HS_EV_FENCED], 1);
    cr_assert_eq(F.closes, 1);
    F.base.up->on_closed(F.base.up->ud, &F.base, "closed");
    cr_assert_eq(E.n[HS_EV_DISCONNECTED], 1);
    cr_assert_str_eq(E.reason, "fenced");
    cr_assert_eq(E.n[HS_EV_WAITING], 1);
    /* The backoff runs out: the reconnect asks the gate again, and dials only through it. */
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(E.gated, 2, "the reconnect did not ask the gate");
    cr_assert_eq(F.dials, 1);
    hs_tunnel_dial(H.tunnel);
    cr_assert_eq(F.dials, 2);
    F.base.up->on_closed(F.base.up->ud, &F.base, "refused");
    cr_assert_eq(E.n[HS_EV_DIAL_FAILED], 1);
}

/* The zstd context and buffer come with the first body that needs them. */
/* Request fid on stream 1 answered with 8 KiB of byte c as text/plain: the body frame must
 * go out compressed, and smaller. */
static void compressible_answer(const char *fid, uint8_t c) {
    handshake(1);
    request(1, fid);
    cr_assert_eq(X.starts, 1);
    static uint8_t body[8192];
    memset(body, c, sizeof body);
    gp_header h = {GP_STR_LIT("content-type"), GP_STR_LIT("text/plain")};
    hs_stream_head(X.last, 200, &h, 1, "", "", sizeof body, 0);
    hs_stream_body(X.last, h.value, body, sizeof body, 1);
    hs_stream_upstream_done(X.last, "ok");
    cr_assert(pull() && rx.type == GP_FRAME_RESP_HEAD);
    cr_assert(pull() && rx.type == GP_FRAME_RESP_BODY);
    cr_assert(rx.flags & GP_FLAG_ZSTD, "a compressible body went out raw");
    cr_assert_lt(rx.u.body.data.len, sizeof body);
}

Test(tunnel, a_compressible_response_is_compressed) {
    compressible_answer("f2", 'a');
}

/* The same through a compression state shared by the houses of a process (hs_house.zs). */
Test(tunnel, a_shared_compression_state_compresses) {
    hs_zstate *zs = hs_zstate_new();
    cr_assert_not_null(zs);
    H.zs = zs;
    compressible_answer("f5", 'b');
    H.zs = NULL;
    hs_zstate_free(zs);
}

Test(tunnel, request_events_and_no_replay) {
    memset(&E, 0, sizeof E);
    restart_with_hooks();
    hs_tunnel_dial(H.tunnel);
    handshake(1);
    request(1, "f3");
    cr_assert_eq(E.n[HS_EV_REQUEST], 1);
    gp_header h = {GP_STR_LIT("content-type"), GP_STR_LIT("text/plain")};
    hs_stream_head(X.last, 200, &h, 1, "", "", 5, 0);
    hs_stream_body(X.last, h.value, (const uint8_t *)"hello", 5, 1);
    hs_stream_upstream_done(X.last, "ok");
    cr_assert_eq(E.n[HS_EV_ANSWERED], 0, "answered before it was written");
    expect_hello(1);
    cr_assert_eq(E.n[HS_EV_ANSWERED], 1);
    request(3, "f3"); /* redelivered: replayed */
    cr_assert_eq(E.n[HS_EV_REPLAYED], 1);
    cr_assert_eq(X.starts, 1);
    expect_hello(3);
    cr_assert_eq(E.n[HS_EV_ANSWERED], 2);
    /* Cancelled while running. */
    request(5, "f4");
    cr_assert_eq(X.starts, 2);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_CANCEL;
    f.stream = 5;
    f.u.cancel.reason = gp_str_c("deadline");
    feed(&f);
    cr_assert_eq(E.n[HS_EV_CANCELLED], 1);
    cr_assert_eq(X.aborts, 1);
    /* Without the replay cache a redelivery runs again. */
    H.no_replay = 1;
    request(7, "f3");
    cr_assert_eq(X.starts, 3, "no_replay: the redelivery did not run");
    cr_assert_eq(E.n[HS_EV_REPLAYED], 1);
}

/* hs_log_set_sink: the lines go to the sink, not stderr. */
static char sunk[256];
static void sink(int level, const char *event, const char *kv) {
    if (level == HS_LOG_INFO && strcmp(event, "connected") == 0)
        snprintf(sunk, sizeof sunk, "%s", kv);
}

Test(tunnel, log_lines_go_to_the_sink) {
    sunk[0] = '\0';
    hs_log_set_level(HS_LOG_INFO);
    hs_log_set_sink(sink);
    handshake(1);
    hs_log_set_sink(NULL);
    cr_assert(strstr(sunk, "house=h1 ") != NULL, "connected went elsewhere: \"%s\"", sunk);
}
