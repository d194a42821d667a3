/* badinput.c — bad input gets a clear answer, nothing is lost, nobody else is disturbed:
 * malformed stream entries, limits, forbidden upstreams, dead upstreams, deadlines, failed
 * auth and its rate limit, hostile WebSocket peers, and Redis going away. Real processes,
 * started and stopped by PID. */
#include "../harness/world.h"

#include "auth.h"
#include "frame.h"

#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite(badinput, .init = h_init, .fini = h_fini, .timeout = 120);

typedef h_world world;

static void world_up(world *w, const char *id, const char *const *bridge_extra,
                     const char *const *house_extra) {
    h_world_up(w, id, bridge_extra, house_extra);
}

static void expect_error(const char *frame_id, int status, const char *error, int timeout_ms) {
    h_reply r;
    cr_assert(h_wait_reply(frame_id, NULL, timeout_ms, &r), "%s: no reply (want %d %s)", frame_id,
              status, error);
    cr_assert_eq(r.status, status, "%s: status %d, want %d (error %s message %s)", frame_id,
                 r.status, status, r.error ? r.error : "-", r.message ? r.message : "-");
    cr_assert(r.error && strcmp(r.error, error) == 0, "%s: error '%s', want '%s'", frame_id,
              r.error ? r.error : "(none)", error);
    cr_assert(r.message && *r.message, "%s: error reply without a message", frame_id);
    cr_assert_eq(r.entries, 1, "an error reply is one final entry");
    h_reply_free(&r);
}

Test(badinput, missing_method_or_path_is_400) {
    world w;
    world_up(&w, "h1", NULL, NULL);
    h_field no_method[] = {{"id", "nm-1", (size_t)-1},
                           {"path", "/echo", (size_t)-1},
                           {"reply", "gp:rep:nm-1", (size_t)-1}};
    h_field no_path[] = {{"id", "np-1", (size_t)-1},
                         {"method", "GET", (size_t)-1},
                         {"reply", "gp:rep:np-1", (size_t)-1}};
    h_field bad_path[] = {{"id", "bp-1", (size_t)-1},
                          {"method", "GET", (size_t)-1},
                          {"path", "no-slash", (size_t)-1},
                          {"reply", "gp:rep:bp-1", (size_t)-1}};
    h_xadd("h1", no_method, 3);
    h_xadd("h1", no_path, 3);
    h_xadd("h1", bad_path, 4);
    /* An entry with no fields the bridge knows, and no reply key: default reply key is
     * gp:rep:<entry id>. */
    h_field junk[] = {{"foo", "bar", (size_t)-1}};
    char junk_id[64];
    snprintf(junk_id, sizeof junk_id, "%s", h_xadd("h1", junk, 1));
    expect_error("nm-1", 400, "bad_request", 15000);
    expect_error("np-1", 400, "bad_request", 15000);
    expect_error("bp-1", 400, "bad_request", 15000);
    expect_error(junk_id, 400, "bad_request", 15000);
    h_reply r;
    h_request("h1", "nm-2", "GET", "/echo", NULL, NULL, 0, 10000);
    cr_assert(h_wait_reply("nm-2", NULL, 15000, &r));
    h_reply_free(&r);
    /* The message names what is wrong. */
    h_field again[] = {{"id", "nm-3", (size_t)-1}, {"path", "/echo", (size_t)-1}};
    h_xadd("h1", again, 2);
    cr_assert(h_wait_reply("nm-3", NULL, 15000, &r));
    cr_assert(r.message && strstr(r.message, "method"), "message '%s' does not name the field",
              r.message ? r.message : "");
    h_reply_free(&r);
    cr_assert(h_wait(h_no_pending, "h1", 10000), "bad entries left pending");
    h_assert_serves("h1", "after-bad");
}

Test(badinput, malformed_headers_json_is_400) {
    world w;
    world_up(&w, "h1", NULL, NULL);
    const char *bad[] = {"{not json", "[\"a\",\"b\"]", "{\"a\":1}", "\"str\"",
                         "{\"a\":{\"b\":\"c\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "mh-%zu", i);
        h_request("h1", id, "GET", "/echo", bad[i], NULL, 0, 10000);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "mh-%zu", i);
        expect_error(id, 400, "bad_request", 15000);
    }
    h_assert_serves("h1", "after-headers");
}

Test(badinput, body_over_max_is_413) {
    world w;
    const char *extra[] = {"--max-body", "1024", NULL};
    world_up(&w, "h1", extra, NULL);
    char big[2048];
    memset(big, 'x', sizeof big);
    h_request("h1", "big-1", "POST", "/echo", NULL, big, sizeof big, 10000);
    h_request("h1", "fits-1", "POST", "/echo", NULL, big, 1024, 10000);
    expect_error("big-1", 413, "too_large", 15000);
    h_reply r;
    cr_assert(h_wait_reply("fits-1", NULL, 15000, &r));
    cr_assert_eq(r.status, 200, "a body of exactly the maximum must pass (got %d)", r.status);
    cr_assert_eq(h_json_int((char *)r.body, "body_len"), 1024);
    h_reply_free(&r);
}

Test(badinput, unknown_service_is_403_named_service_works) {
    world w;
    int up2;
    h_upstream_start(&up2);
    char svc[96];
    snprintf(svc, sizeof svc, "other=http://127.0.0.1:%d", up2);
    const char *hextra[] = {"--service", svc, NULL};
    world_up(&w, "h1", NULL, hextra);
    h_xadd_req("h1",
               &(h_req){.id = "svc-bad", .method = "GET", .path = "/echo", .service = "nope"});
    expect_error("svc-bad", 403, "forbidden_upstream", 15000);

    h_xadd_req("h1",
               &(h_req){.id = "svc-ok", .method = "GET", .path = "/headers", .service = "other"});
    h_reply r;
    cr_assert(h_wait_reply("svc-ok", NULL, 15000, &r));
    cr_assert_eq(r.status, 200, "named service: %d %s", r.status, r.message ? r.message : "");
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", up2);
    cr_assert_str_eq(h_json_str((char *)r.body, "host"), host, "not served by the named service");
    h_reply_free(&r);
}

Test(badinput, upstream_down_is_502) {
    h_redis_start(0);
    int bport;
    h_bridge_start(0, &bport, NULL, 1);
    char sec[65], dead[64];
    h_register("h1", sec);
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", h_free_port()); /* nothing listens */
    h_house_start("h1", sec, bport, dead, NULL);
    cr_assert(h_wait_connected("h1", 15000));
    h_request("h1", "down-1", "GET", "/echo", NULL, NULL, 0, 10000);
    expect_error("down-1", 502, "upstream_unreachable", 15000);
}

Test(badinput, deadline_passed_is_504_never_forwarded) {
    world w;
    world_up(&w, "h1", NULL, NULL);
    /* An entry whose id (its timestamp) is in 1970: its deadline passed long ago. */
    const char *argv[] = {"XADD",
                          "gp:{h1}:req",
                          "1-1",
                          "id",
                          "old-1",
                          "method",
                          "GET",
                          "path",
                          "/echo",
                          "headers",
                          "{\"x-frame-id\":\"old-1\"}",
                          "timeout_ms",
                          "1000",
                          "reply",
                          "gp:rep:old-1"};
    redisReply *x = h_cmdv(15, argv, NULL);
    int ok = x->type == REDIS_REPLY_STRING;
    freeReplyObject(x);
    if (ok) {
        expect_error("old-1", 504, "timeout", 15000);
        h_request("h1", "hits-old", "GET", "/hits?id=old-1", NULL, NULL, 0, 10000);
        h_reply r;
        cr_assert(h_wait_reply("hits-old", NULL, 15000, &r));
        cr_assert_eq(h_json_int((char *)r.body, "hits"), 0, "an expired request was forwarded");
        h_reply_free(&r);
    }
    /* An upstream slower than the deadline. */
    h_request("h1", "slow-1", "GET", "/slow?ms=5000", NULL, NULL, 0, 800);
    uint64_t t0 = h_now_ms();
    expect_error("slow-1", 504, "timeout", 10000);
    cr_assert_lt(h_now_ms() - t0, 4500, "504 came long after the deadline");
    h_assert_serves("h1", "after-slow");
}

Test(badinput, house_offline_gets_504_at_deadline) {
    world w;
    world_up(&w, NULL, NULL, NULL);
    h_register("away", w.secret); /* registered, never started */
    h_request("away", "off-1", "GET", "/echo", NULL, NULL, 0, 1000);
    h_reply r;
    cr_assert_eq(h_wait_reply("off-1", NULL, 500, &r), 0, "replied before the deadline");
    h_reply_free(&r);
    expect_error("off-1", 504, "timeout", 15000);
}

static int stream_empty(void *house) {
    return h_int("XLEN gp:{%s}:req", (const char *)house) == 0;
}

/* A producer's typo: a request for a house id nobody ever registered still gets its 504 at
 * the deadline, never silence. */
Test(badinput, unregistered_house_gets_504_at_deadline) {
    h_redis_start(0);
    int bport;
    h_bridge_start(0, &bport, NULL, 1);
    h_request("no-such-house", "typo-1", "GET", "/echo", NULL, NULL, 0, 1000);
    expect_error("typo-1", 504, "timeout", 15000);
    cr_assert(h_wait(stream_empty, "no-such-house", 5000), "the answered entry is still there");
}

Test(badinput, wrong_secret_and_unknown_id_same_answer) {
    const char *bextra[] = {"--auth-burst", "1000", "--auth-per-min", "1000", NULL};
    world w;
    world_up(&w, "good", bextra, NULL);
    char sec[65];
    h_register("h1", sec);

    /* On the wire: a raw client that knows neither secret. */
    uint8_t wrong[32];
    randombytes_buf(wrong, sizeof wrong);
    int fd1 = h_ws_connect(w.bridge_port, NULL, 0), fd2 = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd1 >= 0 && fd2 >= 0, "websocket upgrade refused");
    int code1, code2, st1, st2;
    char m1[128], m2[128];
    int t1 = h_ws_auth(fd1, "h1", wrong, &code1, m1, sizeof m1, &st1);
    int t2 = h_ws_auth(fd2, "no-such-house", wrong, &code2, m2, sizeof m2, &st2);
    cr_assert_eq(t1, GP_FRAME_GOAWAY, "wrong secret: got frame %d", t1);
    cr_assert_eq(t2, GP_FRAME_GOAWAY, "unknown id: got frame %d", t2);
    cr_assert_eq(st1, 1, "wrong secret: refused before the challenge");
    cr_assert_eq(st2, 1, "unknown id: refused before the challenge (reveals that it is unknown)");
    cr_assert_eq(code1, GP_GOAWAY_AUTH);
    cr_assert_eq(code2, GP_GOAWAY_AUTH);
    cr_assert_str_eq(m1, m2, "answers differ: '%s' vs '%s'", m1, m2);
    cr_assert(h_ws_wait_closed(fd1, 5000), "connection not closed after failed auth");
    cr_assert(h_ws_wait_closed(fd2, 5000), "connection not closed after failed auth");
    close(fd1);
    close(fd2);

    /* Real houses: each detects that the bridge does not prove its secret, the same way. */
    char bad_hex[65];
    gp_secret_to_hex(wrong, bad_hex);
    h_proc *ha = h_house_start("h1", bad_hex, w.bridge_port, w.up_url, NULL);
    h_proc *hb = h_house_start("ghost", bad_hex, w.bridge_port, w.up_url, NULL);
    cr_assert(h_wait_log(ha, "event=auth_failed", 15000), "house with a wrong secret: no "
                                                          "auth_failed");
    cr_assert(h_wait_log(hb, "event=auth_failed", 15000), "unknown house: no auth_failed");
    cr_assert_eq(h_int("EXISTS gp:{h1}:state"), 0, "a house with a wrong secret got a state");
    cr_assert_eq(h_int("EXISTS gp:{ghost}:state"), 0, "an unknown house got a state");
    cr_assert(h_wait_log(w.bridge, "auth_failed", 5000), "bridge did not log the failure");
    h_assert_serves("good", "after-auth");
}

Test(badinput, failed_auth_is_rate_limited) {
    h_redis_start(0);
    int bport;
    const char *bextra[] = {"--auth-burst", "3", "--auth-per-min", "1", NULL};
    h_proc *b = h_bridge_start(0, &bport, bextra, 1);
    char sec[65];
    h_register("h1", sec);
    uint8_t wrong[32];
    randombytes_buf(wrong, sizeof wrong);
    int limited = 0, attempts = 0;
    for (; attempts < 10 && !limited; attempts++) {
        int fd = h_ws_connect(bport, NULL, 0);
        if (fd < 0) { /* refusing the upgrade is a valid way to rate limit */
            limited = 1;
            break;
        }
        int code, st;
        char m[128];
        int t = h_ws_auth(fd, "h1", wrong, &code, m, sizeof m, &st);
        if (t == GP_FRAME_GOAWAY && code == GP_GOAWAY_RATE_LIMIT)
            limited = 1;
        else if (t == -1 && st == 0)
            limited = 1; /* closed without a challenge */
        else
            cr_assert_eq(code, GP_GOAWAY_AUTH, "attempt %d: frame %d code %d", attempts, t, code);
        close(fd);
    }
    cr_assert(limited, "10 failed attempts in a row were never rate limited");
    cr_assert_geq(attempts, 4, "rate limited before the burst of 3 failures was used");
    cr_assert(h_wait_log(b, "auth_rate_limited", 5000), "bridge did not log the rate limiting");
    /* Even the right secret is refused while limited (the limit is per address). */
    uint8_t good[32];
    cr_assert_eq(gp_secret_from_hex(sec, good), 0);
    int fd = h_ws_connect(bport, NULL, 0);
    if (fd >= 0) {
        int code, st;
        char m[128];
        int t = h_ws_auth(fd, "h1", good, &code, m, sizeof m, &st);
        cr_assert(t != GP_FRAME_WELCOME, "rate limit bypassed by a correct secret");
        close(fd);
    }
}

/* Hostile WebSocket peers: each gets its connection closed and a log line; a real house on
 * the same bridge keeps serving throughout. */
static int closes_and_logs(world *w, int fd, const char *what, const char *needle, int before) {
    cr_assert(h_ws_wait_closed(fd, 15000), "%s: connection not closed", what);
    close(fd);
    cr_assert(h_wait_log_n(w->bridge, needle, before + 1, 5000), "%s: no '%s' in the bridge log",
              what, needle);
    return 1;
}

Test(badinput, hostile_websocket_frames) {
    world w;
    world_up(&w, "good", NULL, NULL);
    char sec2[65];
    h_register("h2", sec2);
    uint8_t s2[32];
    cr_assert_eq(gp_secret_from_hex(sec2, s2), 0);
    int n;

    /* 1. garbage bytes as a binary message: not a frame (version byte wrong). */
    int fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    uint8_t junk[64];
    randombytes_buf(junk, sizeof junk);
    junk[0] = 0x7f;
    n = h_log_count(w.bridge, "protocol_error");
    h_ws_send(fd, 2, junk, sizeof junk, 1);
    closes_and_logs(&w, fd, "garbage", "protocol_error", n);
    h_assert_serves("good", "after-garbage");

    /* 2. a text message. */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    n = h_log_count(w.bridge, "protocol_error");
    h_ws_send(fd, 1, "hello", 5, 1);
    closes_and_logs(&w, fd, "text message", "protocol_error", n);

    /* 3. a frame header announcing a payload over the limit (4 GiB - 1). */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    uint8_t hdr[12] = {GP_PROTO_VERSION, GP_FRAME_HELLO, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    n = h_log_count(w.bridge, "protocol_error");
    h_ws_send(fd, 2, hdr, sizeof hdr, 1);
    closes_and_logs(&w, fd, "oversized frame", "protocol_error", n);

    /* 4. an oversized WebSocket message (2 MiB, over the 1 MiB frame limit). */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    size_t big = 2u << 20;
    uint8_t *b = calloc(1, big);
    b[0] = GP_PROTO_VERSION;
    b[1] = GP_FRAME_HELLO;
    n = h_log_count(w.bridge, "protocol_error");
    h_ws_send(fd, 2, b, big, 1);
    free(b);
    closes_and_logs(&w, fd, "oversized message", "protocol_error", n);
    h_assert_serves("good", "after-oversized");

    /* 5. a truncated WebSocket frame, then the peer half-closes. */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    uint8_t trunc[] = {0x82, 0x80 | 100, 1, 2, 3, 4, 9, 9, 9}; /* says 100 bytes, sends 3 */
    n = h_log_count(w.bridge, "conn_closed");
    h_ws_send_raw(fd, trunc, sizeof trunc);
    shutdown(fd, SHUT_WR);
    closes_and_logs(&w, fd, "truncated websocket frame", "conn_closed", n);

    /* 6. a truncated Ghost Port frame inside a complete message, then a close. */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    uint8_t half[6] = {GP_PROTO_VERSION, GP_FRAME_HELLO, 0, 0, 0, 0};
    n = h_log_count(w.bridge, "conn_closed");
    h_ws_send(fd, 2, half, sizeof half, 1);
    h_ws_send(fd, 8, "\x03\xe8", 2, 1);
    closes_and_logs(&w, fd, "truncated frame", "conn_closed", n);

    /* 7. an authenticated house that then sends garbage: dropped, logged with its id. */
    fd = h_ws_connect(w.bridge_port, NULL, 0);
    cr_assert(fd >= 0);
    int code, st;
    int t = h_ws_auth(fd, "h2", s2, &code, NULL, 0, &st);
    cr_assert_eq(t, GP_FRAME_WELCOME, "raw client with the right secret was not welcomed");
    cr_assert(h_wait_connected("h2", 5000));
    n = h_log_count(w.bridge, "protocol_error");
    h_ws_send(fd, 2, junk, sizeof junk, 1);
    closes_and_logs(&w, fd, "garbage after auth", "protocol_error", n);
    cr_assert(h_wait_offline("h2", 10000), "state of the dropped house not cleared");
    char *log = h_read_file(w.bridge->log, NULL);
    cr_assert(log && strstr(log, "house=h2"), "protocol error not logged with the house id");
    free(log);

    h_assert_serves("good", "after-all");
    cr_assert(h_alive(w.bridge), "bridge died");
}

Test(badinput, redis_unavailable_at_bridge_start) {
    int rport = h_free_port();
    /* Bridge first, pointed at a port where nothing listens yet. */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", rport);
    int bport = h_free_port();
    const char *extra[] = {"--redis", url, NULL};
    h_proc *b = h_bridge_start(bport, NULL, extra, 0);
    cr_assert(h_wait_log(b, "redis", 10000), "bridge did not log the missing Redis");
    cr_assert(h_alive(b), "bridge exited when Redis was unavailable");
    /* Then Redis: the bridge connects and serves. */
    h_redis_start(rport);
    int up;
    h_upstream_start(&up);
    char upurl[64], sec[65];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_register("h1", sec);
    cr_assert(h_wait_port(bport, 15000), "bridge never listened");
    h_house_start("h1", sec, bport, upurl, NULL);
    cr_assert(h_wait_connected("h1", 20000), "house not connected after Redis came up");
    h_assert_serves("h1", "late-redis");
}

Test(badinput, redis_restart_mid_run) {
    world w;
    world_up(&w, "h1", NULL, NULL);
    h_assert_serves("h1", "before-restart");
    int rport = h_redis_port();
    h_kill9(w.redis);
    cr_assert(h_wait_log(w.bridge, "redis_unavailable", 15000), "bridge did not log losing Redis");
    w.redis = h_redis_start(rport); /* empty: --save '' */
    /* The registry lived in Redis: put the house back (same secret). */
    redisReply *r = h_cmd("HSET gp:{h1}:house secret %s labels {} created 1", w.secret);
    freeReplyObject(r);
    r = h_cmd("SADD gp:houses h1");
    freeReplyObject(r);
    cr_assert(h_wait_connected("h1", 20000), "house state not restored after the Redis restart");
    h_assert_serves("h1", "after-restart");
    cr_assert(h_alive(w.bridge), "bridge died");
}

static int exited(void *ud) {
    return !h_alive(ud);
}

/* A port another process holds: the bridge says so and exits 1 (a supervisor restarts it, a
 * deploy script sees it), for the houses' port and for the admin port. It used to run on
 * with no house listener, and to crash when the admin port was taken too. */
Test(badinput, taken_ports_exit_with_an_error) {
    h_redis_start(0);
    int port;
    const char *admin[] = {"--admin-listen", "0", NULL};
    h_proc *b1 = h_bridge_start(0, &port, admin, 1);
    int aport = h_admin_port(b1);
    cr_assert(aport, "the first bridge logged no admin port");
    char ap[16];
    snprintf(ap, sizeof ap, "%d", aport);
    const char *both[] = {"--admin-listen", ap, NULL};
    h_proc *b2 = h_bridge_start(port, NULL, both, 0);
    cr_assert(h_wait(exited, b2, 10000), "a bridge on a taken port kept running");
    cr_assert(WIFEXITED(b2->status) && WEXITSTATUS(b2->status) == 1, "status %d", b2->status);
    cr_assert(h_log_count(b2, "event=listen_failed") >= 1);
    const char *admin_only[] = {"--admin-listen", ap, NULL};
    h_proc *b3 = h_bridge_start(h_free_port(), NULL, admin_only, 0);
    cr_assert(h_wait(exited, b3, 10000), "a bridge whose admin port is taken kept running");
    cr_assert(WIFEXITED(b3->status) && WEXITSTATUS(b3->status) == 1, "status %d", b3->status);
    cr_assert(h_log_count(b3, "transport=admin") >= 1);
    cr_assert(h_alive(b1), "the first bridge suffered");
}
