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
#include "../../house/streams.h"
#include "../../house/transport.h"
#include "uvtcp.h"

/* --- a fake transport: the test is the bridge ------------------------------------------- */

static struct {
    hs_transport base;
    int dials, sends, closes, drops;
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
static void f_drop(hs_transport *t) {
    F.drops++;
    t->up->on_closed(t->up->ud, t, "closed");
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
                                       .drop = f_drop,
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
static const hs_hooks *init_hooks;   /* the next init()'s hs_house.hooks */
static hs_tcp_service *init_tcp;     /* the next init()'s one --tcp-service (NULL: none) */
static uint8_t welcome_proto;        /* what the test bridge's WELCOME names (0: none) */
static int expect_live = 1;          /* handshake(): the WELCOME must make the tunnel live */
static uint8_t hello_min, hello_max; /* what the house's last HELLO offered */
static uint32_t welcome_ping = 5000; /* the WELCOME's ping interval (ms) */

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
    H.cfg.tcp_services = init_tcp;
    H.cfg.ntcp_services = init_tcp ? 1 : 0;
    H.cfg.max_streams = 16;
    H.cfg.stream_grace = 30;
    init_tcp = NULL;
    welcome_proto = 0;
    welcome_ping = 5000;
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

/* The bridge's WELCOME (bridge b1, the test's ping interval). */
static void welcome(uint64_t epoch, uint8_t proto) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_WELCOME, 0, 0);
    f.u.welcome.bridge_id = gp_str_c("b1");
    f.u.welcome.ping_interval_ms = welcome_ping;
    f.u.welcome.max_frame = GP_DEFAULT_MAX_FRAME;
    f.u.welcome.epoch = epoch;
    f.u.welcome.proto = proto;
    feed(&f);
}

/* The bridge's side of the handshake; `good`: with the right proof (else the house must
 * refuse it before its AUTH). */
static void handshake_n(int good, int dials) {
    cr_assert_eq(F.dials, dials);
    F.base.up->on_open(F.base.up->ud, &F.base);
    cr_assert(pull() && rx.type == GP_FRAME_HELLO, "no HELLO");
    hello_min = rx.u.hello.min_ver;
    hello_max = rx.u.hello.max_ver;
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
    welcome(7, welcome_proto);
    if (expect_live)
        cr_assert(hs_tunnel_live(H.tunnel), "not live after WELCOME");
}

static void handshake(int good) {
    handshake_n(good, 1);
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

/* A bridge silent for three ping intervals is presumed gone: the connection is dropped (no
 * goodbye, nothing awaited: transport.h), not closed, and the house dials again. */
Test(tunnel, a_silent_bridge_is_dropped_not_closed) {
    welcome_ping = 100;
    handshake(1);
    uint64_t t0 = hs_now_ms();
    while (!F.drops && hs_now_ms() - t0 < 5000) {
        while (pull())
            ; /* its pings go unanswered */
        uv_run(&loop, UV_RUN_ONCE);
    }
    cr_assert_eq(F.drops, 1, "the silent connection was not dropped");
    cr_assert_eq(F.closes, 0, "a dead connection was closed politely");
    cr_assert_geq(hs_now_ms() - t0, 300, "dropped before three ping intervals");
    cr_assert(!hs_tunnel_live(H.tunnel));
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

/* --- TCP streams (protocol 2): negotiation, dispatch, fairness ---------------------------- */

static void s_open(const char *sid, const char *service) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPEN, 0, 0);
    f.u.s_open.sid = gp_str_c(sid);
    f.u.s_open.service = gp_str_c(service);
    f.u.s_open.window = 1 << 20;
    f.u.s_open.idle_ms = 60000;
    f.u.s_open.timeout_ms = 5000;
    feed(&f);
}

Test(tunnel, hello_offers_streams_and_welcome_2_carries_them) {
    welcome_proto = GP_PROTO_STREAMS;
    handshake(1);
    cr_assert_eq(hello_min, GP_PROTO_MIN);
    cr_assert_eq(hello_max, GP_PROTO_MAX);
    s_open("s1", "ssh"); /* no --tcp-service here: refused, over this connection */
    cr_assert(pull() && rx.type == GP_FRAME_S_OPENED, "no S_OPENED");
    cr_assert_eq(rx.u.s_opened.status, 403);
    cr_assert(gp_str_eq(rx.u.s_opened.error, "forbidden_service"));
    cr_assert_eq(F.closes, 0);
    /* frames only a house sends are a protocol error from a bridge */
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_ATTACH, 0, 0);
    f.u.s_attach.sid = gp_str_c("s1");
    feed(&f);
    cr_assert(pull() && rx.type == GP_FRAME_GOAWAY, "S_ATTACH from a bridge was taken");
    cr_assert_eq(rx.u.goaway.code, GP_GOAWAY_PROTOCOL);
    cr_assert_eq(F.closes, 1);
}

Test(tunnel, stream_frames_under_protocol_1_are_a_protocol_error) {
    welcome_proto = 0; /* an older bridge: WELCOME names no protocol */
    handshake(1);
    s_open("s1", "ssh");
    cr_assert(pull() && rx.type == GP_FRAME_GOAWAY, "S_OPEN taken under protocol 1");
    cr_assert_eq(rx.u.goaway.code, GP_GOAWAY_PROTOCOL);
    cr_assert_eq(F.closes, 1);
}

Test(tunnel, welcome_naming_a_protocol_not_offered_is_refused) {
    welcome_proto = GP_PROTO_MAX + 1;
    expect_live = 0;
    handshake(1);
    expect_live = 1;
    cr_assert_not(hs_tunnel_live(H.tunnel), "live on a protocol it never offered");
    cr_assert(pull() && rx.type == GP_FRAME_GOAWAY);
    cr_assert_eq(rx.u.goaway.code, GP_GOAWAY_PROTOCOL);
    cr_assert_eq(F.closes, 1);
}

/* A loopback service that sends 4 MiB to whoever connects. */
static struct {
    uv_tcp_t lis, conn;
    int accepted;
    char port[8];
} B;
static uint8_t bulk[4 << 20];

static void b_written(uv_write_t *w, int status) {
    (void)status;
    free(w);
}

static void b_accept(uv_stream_t *lis, int status) {
    cr_assert_eq(status, 0);
    uv_tcp_init(&loop, &B.conn);
    cr_assert_eq(uv_accept(lis, (uv_stream_t *)&B.conn), 0);
    B.accepted = 1;
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init((char *)bulk, sizeof bulk);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&B.conn, &b, 1, b_written), 0);
}

static hs_tcp_service b_svc;

/* The house again, with the bulk service as --tcp-service "bulk". */
static void restart_with_bulk(void) {
    fini();
    memset(&B, 0, sizeof B);
    b_svc = (hs_tcp_service){.name = "bulk", .host = "127.0.0.1", .port = B.port};
    init_tcp = &b_svc;
    init();
    snprintf(B.port, sizeof B.port, "%d", uvt_bind_loopback(&loop, &B.lis));
    cr_assert_eq(uv_listen((uv_stream_t *)&B.lis, 4, b_accept), 0);
}

static void close_bulk(void) {
    uv_close((uv_handle_t *)&B.lis, NULL);
    if (B.accepted)
        uv_close((uv_handle_t *)&B.conn, NULL);
    H.stopping = 1;
    hs_tunnel_stop(H.tunnel);
    uv_run(&loop, UV_RUN_DEFAULT); /* every handle closes: the service's and the house's */
}

static int nop_ran;
static void nop_cb(uv_timer_t *t) {
    (void)t;
    nop_ran++;
}

/* Runs the loop ms (a timer wakes it), pulling nothing. */
static void run_ms(uint64_t ms) {
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, nop_cb, ms, 0);
    int before = nop_ran;
    while (nop_ran == before)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

Test(tunnel, a_bulk_stream_never_stalls_a_response) {
    for (size_t i = 0; i < sizeof bulk; i++)
        bulk[i] = (uint8_t)((i * 2654435761u) >> 13); /* not compressible */
    restart_with_bulk();
    welcome_proto = GP_PROTO_STREAMS;
    handshake(1);
    s_open("b1", "bulk");
    int opened = 0, entries = 0;
    for (int i = 0; i < 200 && !(opened && entries); i++) {
        run_ms(5);
        while (pull()) {
            if (rx.type == GP_FRAME_S_OPENED) {
                cr_assert_eq(rx.u.s_opened.status, 200, "%.*s", (int)rx.u.s_opened.message.len,
                             rx.u.s_opened.message.p);
                opened = 1;
            }
            entries += rx.type == GP_FRAME_S_ENTRY && rx.u.s_entry.data.len > 0;
            if (entries)
                break;
        }
    }
    cr_assert(opened && entries, "the stream did not start");
    run_ms(100); /* the house reads its window (1 MiB) of the service meanwhile */
    /* a small request now: its 4 frames go out among the stream's, not after them */
    request(1, "small");
    gp_header h = {GP_STR_LIT("content-type"), GP_STR_LIT("image/png")};
    hs_stream_head(X.last, 200, &h, 1, "", "", 3000, 0);
    static uint8_t part[1000];
    for (int i = 0; i < 3; i++)
        hs_stream_body(X.last, h.value, part, sizeof part, i == 2);
    hs_stream_upstream_done(X.last, "ok");
    int pulls = 0, stream_frames = 0, done = 0;
    while (!done && pull()) {
        pulls++;
        stream_frames += rx.type == GP_FRAME_S_ENTRY;
        done = rx.type == GP_FRAME_RESP_BODY && (rx.flags & GP_FLAG_FIN);
    }
    cr_assert(done, "the response never went out");
    cr_assert_leq(pulls, 9, "the response waited behind %d frames of the stream", stream_frames);
    cr_assert_geq(stream_frames, 2, "the stream was not served in between: %d", stream_frames);
    /* the stream's frames are each at most a chunk, and the house stops at the window */
    size_t got = 0;
    while (pull())
        if (rx.type == GP_FRAME_S_ENTRY) {
            cr_assert_leq(rx.u.s_entry.data.len, HS_STREAMS_CHUNK);
            got = rx.u.s_entry.off + rx.u.s_entry.data.len;
        }
    run_ms(50);
    while (pull())
        if (rx.type == GP_FRAME_S_ENTRY && rx.u.s_entry.data.len)
            got = rx.u.s_entry.off + rx.u.s_entry.data.len;
    cr_assert_eq(got, 1u << 20, "sent up to %zu without an ack for a window of 1 MiB", got);
    close_bulk();
}

Test(tunnel, streams_survive_a_reconnect_with_s_attach) {
    for (size_t i = 0; i < sizeof bulk; i++)
        bulk[i] = (uint8_t)i;
    restart_with_bulk();
    H.cfg.reconnect_max_ms = 1000;
    welcome_proto = GP_PROTO_STREAMS;
    handshake(1);
    s_open("b2", "bulk");
    int opened = 0;
    for (int i = 0; i < 200 && !opened; i++) {
        run_ms(5);
        while (pull())
            opened |= rx.type == GP_FRAME_S_OPENED && rx.u.s_opened.status == 200;
    }
    cr_assert(opened);
    while (pull())
        ;
    /* the connection drops; the house dials again after its backoff */
    F.base.up->on_closed(F.base.up->ud, &F.base, "closed");
    cr_assert_not(hs_tunnel_live(H.tunnel));
    for (int i = 0; i < 400 && F.dials < 2; i++)
        run_ms(5);
    cr_assert_eq(F.dials, 2, "no second dial");
    handshake_n(1, 2);
    cr_assert(pull() && rx.type == GP_FRAME_S_ATTACH, "no S_ATTACH after the reconnect");
    cr_assert(gp_str_eq(rx.u.s_attach.sid, "b2"));
    cr_assert_eq(rx.u.s_attach.rcv_next, 0);
    cr_assert_eq(rx.u.s_attach.snd_acked, 0);
    /* then the bytes again from the opener's ack (none: from 0) */
    int from0 = 0;
    while (pull())
        if (rx.type == GP_FRAME_S_ENTRY && (rx.u.s_entry.has & GP_SE_OFF) && !from0) {
            cr_assert_eq(rx.u.s_entry.off, 0);
            from0 = 1;
        }
    cr_assert(from0, "nothing resent");
    close_bulk();
}

/* --- a transport with its own handshake (rudp): the protocol offer ------------------------ */

static const hs_transport_ops f_ops_auth = {.flags = HS_TR_AUTHENTICATES,
                                            .dial = f_dial,
                                            .send = f_send,
                                            .close = f_close,
                                            .stop = f_nop,
                                            .free = f_nop,
                                            .label = f_label};

/* Over rudp the HELLO is only the protocol offer, sent at once; when it reaches the bridge
 * after its WELCOME, a second WELCOME (same epoch) names protocol 2 and streams work from
 * then on. Any other second WELCOME is a protocol error. */
Test(tunnel, rudp_offer_and_a_second_welcome_naming_the_protocol) {
    F.base.ops = &f_ops_auth;
    F.base.up->on_open(F.base.up->ud, &F.base);
    cr_assert(pull() && rx.type == GP_FRAME_HELLO, "no protocol offer over rudp");
    cr_assert_eq(rx.u.hello.max_ver, GP_PROTO_MAX);
    welcome(7, 0); /* the offer was late: protocol 1 for now */
    cr_assert(hs_tunnel_live(H.tunnel));
    welcome(7, GP_PROTO_STREAMS);
    s_open("s1", "ssh"); /* under protocol 1 this would be a protocol error */
    cr_assert(pull() && rx.type == GP_FRAME_S_OPENED, "streams not carried after the upgrade");
    cr_assert(gp_str_eq(rx.u.s_opened.error, "forbidden_service"));
    welcome(8, GP_PROTO_STREAMS); /* another epoch: not ours */
    cr_assert(pull() && rx.type == GP_FRAME_GOAWAY);
    cr_assert_eq(rx.u.goaway.code, GP_GOAWAY_PROTOCOL);
}

/* A rudp bridge of protocol 1 refuses the late HELLO (GOAWAY protocol unexpected_frame): the
 * house stops offering, and the next connection carries requests as before. */
Test(tunnel, rudp_bridge_of_protocol_1_refusing_the_offer) {
    H.cfg.reconnect_max_ms = 20;
    F.base.ops = &f_ops_auth;
    F.base.up->on_open(F.base.up->ud, &F.base);
    cr_assert(pull() && rx.type == GP_FRAME_HELLO);
    welcome(7, 0);
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_GOAWAY, 0, 0);
    f.u.goaway.code = GP_GOAWAY_PROTOCOL;
    f.u.goaway.message = gp_str_c("unexpected_frame");
    feed(&f);
    cr_assert_eq(F.closes, 1);
    F.base.up->on_closed(F.base.up->ud, &F.base, "closed");
    for (int i = 0; i < 100 && F.dials < 2; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(F.dials, 2, "no redial");
    F.base.up->on_open(F.base.up->ud, &F.base);
    cr_assert_not(pull(), "offered again to a bridge that refused it");
    welcome(9, 0);
    request(1, "r1");
    cr_assert_eq(X.starts, 1, "requests not carried after the refusal");
}
