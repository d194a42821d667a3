/* househost.c — several real houses in one process: tests/load's gp-househost runs house/'s
 * own code (tunnel core, ws transport, libcurl upstream, replay cache) once per hs_house, all
 * on one libuv loop and one lws context. Each house connects with its own id and secret,
 * answers its own requests, keeps its own replay cache (a frame id one house ran is not
 * replayed by another), and all of them stop cleanly on SIGTERM. */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(househost, .init = h_init, .fini = h_fini, .timeout = 120);

#define N 3

/* Upstream calls that carried x-frame-id: id (tests/upstream.py counts them). */
static int hits(int port, const char *id) {
    char path[128], *body = NULL;
    snprintf(path, sizeof path, "/hits?id=%s", id);
    int st = h_http_get(port, path, &body);
    int n = st == 200 ? (int)h_json_int(body, "hits") : -1;
    free(body);
    return n;
}

/* GET /echo of frame id `id` to `house`, answered on `reply`; returns the status. */
static int get(const char *house, const char *id, const char *reply) {
    char hdr[96];
    snprintf(hdr, sizeof hdr, "{\"x-frame-id\":\"%s\"}", id);
    h_field f[] = {{"id", id, (size_t)-1},        {"method", "GET", (size_t)-1},
                   {"path", "/echo", (size_t)-1}, {"headers", hdr, (size_t)-1},
                   {"timeout_ms", "10000", 5},    {"reply", reply, (size_t)-1}};
    h_xadd(house, f, 6);
    h_reply r;
    cr_assert(h_wait_reply(id, reply, 15000, &r), "%s: no reply for %s", house, id);
    int status = r.status;
    h_reply_free(&r);
    return status;
}

Test(househost, three_houses_in_one_process) {
    h_redis_start(0);
    int up_port, bridge_port;
    h_upstream_start(&up_port);
    h_bridge_start(0, &bridge_port, NULL, 1);
    char up_url[64], url[64], secret[N][65], spec[N][256], ids[N][16];
    snprintf(up_url, sizeof up_url, "http://127.0.0.1:%d", up_port);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bridge_port);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "hh-%d", i + 1);
        h_register(ids[i], secret[i]);
        snprintf(spec[i], sizeof spec[i], "%s=%s", ids[i], secret[i]);
    }
    char *argv[] = {(char *)h_bin("gp-househost"),
                    "--bridge",
                    url,
                    "--upstream",
                    up_url,
                    "--log-level",
                    "debug",
                    spec[0],
                    spec[1],
                    spec[2],
                    NULL};
    h_proc *p = h_spawn("househost", argv);
    for (int i = 0; i < N; i++)
        cr_assert(h_wait_connected(ids[i], 15000), "%s did not connect", ids[i]);
    cr_assert_eq(h_log_count(p, "event=connected"), N);

    for (int i = 0; i < N; i++) {
        char id[32], reply[48];
        snprintf(id, sizeof id, "hh-req-%d", i + 1);
        snprintf(reply, sizeof reply, "gp:rep:%s", id);
        cr_assert_eq(get(ids[i], id, reply), 200, "%s", ids[i]);
        cr_assert_eq(hits(up_port, id), 1);
    }
    /* hh-1's frame id at hh-2: hh-2 never ran it, so it runs (caches are per house)... */
    cr_assert_eq(get("hh-2", "hh-req-1", "gp:rep:other-house"), 200);
    cr_assert_eq(hits(up_port, "hh-req-1"), 2, "hh-2 answered from hh-1's cache");
    cr_assert_eq(h_log_count(p, "outcome=replayed"), 0);
    /* ...and at hh-1 again it is answered from hh-1's cache, not run a third time. */
    cr_assert_eq(get("hh-1", "hh-req-1", "gp:rep:same-house"), 200);
    cr_assert_eq(hits(up_port, "hh-req-1"), 2, "hh-1 ran its frame id twice");
    cr_assert_eq(h_log_count(p, "outcome=replayed"), 1);

    int st = h_stop(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gp-househost status %d", st);
    cr_assert_eq(h_log_count(p, "event=stopped"), 1);
    cr_assert_eq(h_log_count(p, "event=loop_not_empty"), 0, "handles left open at exit");
    cr_assert_eq(h_log_count(p, "event=disconnected"), N, "not every house said goodbye");
    for (int i = 0; i < N; i++)
        cr_assert(h_wait_offline(ids[i], 15000), "%s still held after the exit", ids[i]);
}

/* The same tunnels with an executor of the tool's own (hs_exec) instead of libcurl: no
 * upstream runs, each house answers 300 bytes of JSON that name it, and a redelivery is
 * still answered by the house's replay cache. */
Test(househost, in_process_executor) {
    h_redis_start(0);
    int bridge_port;
    h_bridge_start(0, &bridge_port, NULL, 1);
    char url[64], secret[2][65], spec[2][256];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bridge_port);
    const char *ids[2] = {"ip-1", "ip-2"};
    for (int i = 0; i < 2; i++) {
        h_register(ids[i], secret[i]);
        snprintf(spec[i], sizeof spec[i], "%s=%s", ids[i], secret[i]);
    }
    char *argv[] = {(char *)h_bin("gp-househost"),
                    "--bridge",
                    url,
                    "--response-bytes",
                    "300",
                    "--delay-ms",
                    "20",
                    spec[0],
                    spec[1],
                    NULL};
    h_proc *p = h_spawn("househost", argv);
    for (int i = 0; i < 2; i++)
        cr_assert(h_wait_connected(ids[i], 15000), "%s did not connect", ids[i]);
    for (int i = 0; i < 2; i++) {
        char id[32];
        snprintf(id, sizeof id, "ip-req-%d", i + 1);
        h_request(ids[i], id, "GET", "/anything", NULL, NULL, 0, 10000);
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 15000, &r), "%s: no reply", ids[i]);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.body_len, 300);
        cr_assert_str_eq(h_json_str((const char *)r.body, "house"), ids[i]);
        cr_assert_str_eq(h_json_str((const char *)r.body, "id"), id);
        h_reply_free(&r);
    }
    cr_assert_eq(h_log_count(p, "outcome=ok"), 2);
    h_field f[] = {{"id", "ip-req-1", (size_t)-1},
                   {"method", "GET", (size_t)-1},
                   {"path", "/anything", (size_t)-1},
                   {"reply", "gp:rep:ip-again", (size_t)-1}};
    h_xadd("ip-1", f, 4);
    h_reply r;
    cr_assert(h_wait_reply("ip-req-1", "gp:rep:ip-again", 15000, &r), "no reply to the redelivery");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 300);
    h_reply_free(&r);
    cr_assert_eq(h_log_count(p, "outcome=replayed"), 1, "the redelivery ran again");
    cr_assert_eq(h_log_count(p, "outcome=ok"), 2);
    int st = h_stop(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gp-househost status %d", st);
    cr_assert_eq(h_log_count(p, "event=loop_not_empty"), 0, "handles left open at exit");
}
