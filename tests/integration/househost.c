/* househost.c — several real houses in one process: tests/load's gp-househost runs house/'s
 * own code (tunnel core, ws transport, libcurl upstream, replay cache) once per hs_house, all
 * on one libuv loop and one lws context. Each house connects with its own id and secret,
 * answers its own requests, keeps its own replay cache (a frame id one house ran is not
 * replayed by another), and all of them stop cleanly on SIGTERM. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(househost, .init = h_init, .fini = h_fini, .timeout = 120);

#define N 3

/* GET /echo of frame id `id` to `house`, answered on `reply`; returns the status. */
static int get(const char *house, const char *id, const char *reply) {
    h_xadd_tagged(house, id, "GET", "/echo", NULL, "10000", reply, (size_t)-1);
    h_reply r;
    cr_assert(h_wait_reply(id, reply, 15000, &r), "%s: no reply for %s", house, id);
    int status = r.status;
    h_reply_free(&r);
    return status;
}

/* Registers houses ids[0..n) and runs them all in one gp-househost, with opts (NULL-terminated)
 * before the houses, against the bridge on bridge_port; waits until each is connected. */
static h_proc *househost_up(int bridge_port, int n, const char *const ids[],
                            const char *const *opts) {
    static char url[64], secret[N][65], spec[N][256];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bridge_port);
    const char *argv[32] = {h_bin("gp-househost"), "--bridge", url};
    int k = 3;
    for (int i = 0; opts && opts[i]; i++)
        argv[k++] = opts[i];
    for (int i = 0; i < n; i++) {
        h_register(ids[i], secret[i]);
        snprintf(spec[i], sizeof spec[i], "%s=%s", ids[i], secret[i]);
        argv[k++] = spec[i];
    }
    argv[k] = NULL;
    h_proc *p = h_spawn("househost", (char *const *)argv);
    for (int i = 0; i < n; i++)
        cr_assert(h_wait_connected(ids[i], 15000), "%s did not connect", ids[i]);
    return p;
}

Test(househost, three_houses_in_one_process) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    const char *ids[N] = {"hh-1", "hh-2", "hh-3"};
    const char *opts[] = {"--upstream", w.up_url, "--log-level", "debug", NULL};
    h_proc *p = househost_up(w.bridge_port, N, ids, opts);
    cr_assert_eq(h_log_count(p, "event=connected"), N);

    for (int i = 0; i < N; i++) {
        char id[32], reply[48];
        snprintf(id, sizeof id, "hh-req-%d", i + 1);
        snprintf(reply, sizeof reply, "gp:rep:%s", id);
        cr_assert_eq(get(ids[i], id, reply), 200, "%s", ids[i]);
        cr_assert_eq(h_hits(w.up_port, id), 1);
    }
    /* hh-1's frame id at hh-2: hh-2 never ran it, so it runs (caches are per house)... */
    cr_assert_eq(get("hh-2", "hh-req-1", "gp:rep:other-house"), 200);
    cr_assert_eq(h_hits(w.up_port, "hh-req-1"), 2, "hh-2 answered from hh-1's cache");
    cr_assert_eq(h_log_count(p, "outcome=replayed"), 0);
    /* ...and at hh-1 again it is answered from hh-1's cache, not run a third time. */
    cr_assert_eq(get("hh-1", "hh-req-1", "gp:rep:same-house"), 200);
    cr_assert_eq(h_hits(w.up_port, "hh-req-1"), 2, "hh-1 ran its frame id twice");
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
    const char *ids[2] = {"ip-1", "ip-2"};
    const char *opts[] = {"--response-bytes", "300", "--delay-ms", "20", NULL};
    h_proc *p = househost_up(bridge_port, 2, ids, opts);
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
    h_xadd_get("ip-1", "ip-req-1", "/anything", "gp:rep:ip-again");
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
