/* Fault tests (issue 3, README.md "Delivery guarantees"): a steady load from several
 * producers runs while a bridge is killed, bridges are restarted one after the other, a house
 * is killed, Redis is restarted, a house's first connection goes half-open, and 2,000 houses
 * share one bridge. At the end every request is checked one by one (tests/harness/load.h):
 * exactly one final reply each (duplicates counted apart), and the upstream never ran a frame
 * id twice. Each test prints its figures ("fault=... requests=... lost=...") and appends them
 * to $BUILD/fault-results.txt, from which the README's table is made. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/load.h"
#include "../harness/proxy.h"
#include "../harness/world.h"
#include "auth.h"
#include "frame.h"

#define NH 3

static const char *const g_houses[NH] = {"h1", "h2", "h3"};

typedef struct world {
    h_proc *redis, *up, *br[2], *house[NH], *nodes[3];
    int up_port, bport[2];
    char up_url[64], secret[NH][65], bid[2][8];
    const char *const *bextra[2];
} world;

/* Bridge i of the world, restarted on its port when it has one already. */
static void bridge_up(world *w, int i, const char *const *more) {
    snprintf(w->bid[i], sizeof w->bid[i], "b%d", i + 1);
    const char *extra[16] = {"--bridge-id", w->bid[i]};
    int n = 2;
    for (int k = 0; more && more[k] && n < 15; k++)
        extra[n++] = more[k];
    extra[n] = NULL;
    w->br[i] = h_bridge_start(w->bport[i], &w->bport[i], extra, 1);
}

enum { STANDALONE, CLUSTER };

/* Redis (AOF when aof; a 3-node Redis Cluster when cluster: h1 lands on one node, h2 and h3
 * on another), the upstream, two bridges, NH houses dialing bridge 1 then 2. */
static void world_up_on(world *w, int cluster, int aof, const char *const *bridge_extra) {
    memset(w, 0, sizeof *w);
    if (cluster) {
        h_redis_cluster_start(3, aof, w->nodes);
        w->redis = w->nodes[0];
    } else {
        w->redis = aof ? h_redis_start_aof(0) : h_redis_start(0);
    }
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    bridge_up(w, 0, bridge_extra);
    bridge_up(w, 1, bridge_extra);
    for (int i = 0; i < NH; i++)
        h_register(g_houses[i], w->secret[i]);
}

static void world_up(world *w, int aof, const char *const *bridge_extra) {
    world_up_on(w, STANDALONE, aof, bridge_extra);
}

static h_proc *house_up(world *w, int i, const char *first_url, const char *const *more) {
    char second[64], url[64];
    snprintf(second, sizeof second, "ws://127.0.0.1:%d/", w->bport[1]);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", w->bport[0]);
    /* A journal, so that at-most-once holds across a house's own restart too. */
    char state[600];
    snprintf(state, sizeof state, "%s/state", h_dir());
    const char *extra[16] = {"--bridge", second, "--state-dir", state};
    int n = 4;
    for (int k = 0; more && more[k] && n < 15; k++)
        extra[n++] = more[k];
    extra[n] = NULL;
    w->house[i] =
        h_house_start_url(g_houses[i], w->secret[i], first_url ? first_url : url, w->up_url, extra);
    return w->house[i];
}

struct held {
    const char *house, *bridge;
};

static int held_by(void *ud) {
    const struct held *h = ud;
    redisReply *r = h_cmd("HGET gp:{%s}:state bridge", h->house);
    int ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, h->bridge) == 0;
    freeReplyObject(r);
    return ok;
}

/* Every house's live state names `bridge` within timeout_ms. */
static int wait_all_held_by(const char *bridge, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (int i = 0; i < NH; i++) {
        struct held h = {g_houses[i], bridge};
        int left = (int)(end > h_now_ms() ? end - h_now_ms() : 0);
        if (!h_wait(held_by, &h, left))
            return 0;
    }
    return 1;
}

static h_load *load_start(const char *const *houses, size_t n, int rate) {
    h_load_cfg cfg = {.producers = 4, .rate = rate, .houses = houses, .nhouses = n};
    h_load *l = h_load_start(&cfg);
    cr_assert_not_null(l, "load generator did not start");
    return l;
}

/* Ends the load and checks the promise request by request. */
static h_load_result load_finish(h_load *l, const char *name, int upstream_port) {
    h_load_result r = h_load_finish(l, name, upstream_port);
    cr_assert_eq(r.lost, 0, "%s: %ld requests lost", name, r.lost);
    cr_assert_gt(r.sent, 0);
    return r;
}

static int exited_cleanly(int status) {
    return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Every house connected to b1 (h1 through first_url when not NULL), a load of 100 requests/s
 * running for 2 s; then the fault window opens (h_load_mark). */
static h_load *load_on_b1(world *w, const char *first_url) {
    for (int i = 0; i < NH; i++)
        house_up(w, i, i == 0 ? first_url : NULL, NULL);
    cr_assert(wait_all_held_by("b1", 15000), "houses did not connect to b1");
    h_load *l = load_start(g_houses, NH, 100);
    h_load_run_for(l, 2000);
    h_load_mark(l, 1);
    return l;
}

/* The usual start of a fault: the world (as world_up_on), then load_on_b1. */
static h_load *loaded_world(world *w, int cluster, int aof, const char *const *bridge_extra) {
    world_up_on(w, cluster, aof, bridge_extra);
    return load_on_b1(w, NULL);
}

/* The usual end: the fault window closes, 3 s more load, then every request is checked. */
static h_load_result after_fault(h_load *l, const char *name, int upstream_port) {
    h_load_mark(l, 0);
    h_load_run_for(l, 3000);
    return load_finish(l, name, upstream_port);
}

/* The world with only h1 started, held by b1. */
static void world_h1(world *w, int cluster, const char *const *bridge_extra) {
    world_up_on(w, cluster, 0, bridge_extra);
    house_up(w, 0, NULL, NULL);
    struct held h = {"h1", "b1"};
    cr_assert(h_wait(held_by, &h, 15000), "h1 did not connect to b1");
}

TestSuite(fault, .init = h_init, .fini = h_fini, .timeout = 180);

/* 1. kill -9 of the bridge holding every house, mid-load: the houses move to the second
 * bridge, which claims their pending entries and delivers them again. */
static void bridge_kill9(int cluster, const char *name) {
    world w;
    h_load *l = loaded_world(&w, cluster, 0, NULL);
    h_kill9(w.br[0]);
    cr_assert(wait_all_held_by("b2", 15000), "houses did not move to b2");
    h_load_result r = after_fault(l, name, w.up_port);
    cr_assert_eq(r.s5xx, 0, "%ld 5xx replies", r.s5xx);
}

Test(fault, bridge_kill9_houses_move_to_second_bridge) {
    bridge_kill9(STANDALONE, "bridge_kill9");
}

/* The same on a Redis Cluster: the houses' streams live on different nodes, each node rings
 * its own doorbells, and the claims, fenced reads and acks all stay within one slot. */
Test(fault, cluster_bridge_kill9) {
    bridge_kill9(CLUSTER, "cluster_bridge_kill9");
}

/* 2. A rolling restart: SIGTERM b1 (it drains: its houses finish what is in flight and move to
 * b2), start it again, then the same for b2. Nothing lost, no 5xx, no duplicate. */
static void rolling_restart(int cluster, const char *name) {
    world w;
    h_load *l = loaded_world(&w, cluster, 0, NULL);
    for (int k = 0; k < 2; k++) {
        cr_assert(exited_cleanly(h_stop(w.br[k])), "bridge b%d did not drain and exit cleanly",
                  k + 1);
        cr_assert(h_log_count(w.br[k], "reason=drained") == 1,
                  "b%d did not finish its drain before exiting", k + 1);
        cr_assert(wait_all_held_by(k ? "b1" : "b2", 15000), "houses did not move off b%d", k + 1);
        bridge_up(&w, k, NULL);
    }
    h_load_result r = after_fault(l, name, w.up_port);
    cr_assert_eq(r.s5xx, 0, "%ld 5xx replies during a rolling restart", r.s5xx);
    cr_assert_eq(r.dup_replies, 0, "%ld duplicate replies during a rolling restart", r.dup_replies);
}

Test(fault, rolling_restart_with_sigterm) {
    rolling_restart(STANDALONE, "rolling_restart");
}

Test(fault, cluster_rolling_restart) {
    rolling_restart(CLUSTER, "cluster_rolling_restart");
}

/* 3. A house killed mid-load and started again: the requests that arrived meanwhile waited
 * in its stream and are served when it is back; its journal (--state-dir) keeps the upstream
 * from running again what was in flight at the kill (answered 502 replay_unavailable, or
 * replayed when its response was recorded). */
Test(fault, house_killed_and_restarted) {
    world w;
    h_load *l = loaded_world(&w, STANDALONE, 0, NULL);
    h_kill9(w.house[0]);
    h_load_run_for(l, 2000); /* requests for h1 pile up in its stream */
    h_proc *h = house_up(&w, 0, NULL, NULL);
    cr_assert(h_wait_log(h, "event=connected", 15000), "h1 did not come back");
    after_fault(l, "house_kill9_restart", w.up_port);
}

struct reconn {
    const h_proc *bridge;
    int before;
};

static int bridge_reconnected(void *ud) {
    const struct reconn *rc = ud;
    /* cmd and sub connections both back since the restart */
    return h_log_count_all(rc->bridge, "event=redis_up") >= rc->before + 2;
}

/* 4. Redis restarted (kill -9, AOF with appendfsync always) mid-load: nothing Redis
 * acknowledged is lost; bridges reconnect on their own; producers re-send what was refused. */
Test(fault, redis_restart_with_aof) {
    world w;
    h_load *l = loaded_world(&w, STANDALONE, 1, NULL);
    int port = h_redis_port();
    struct reconn rc = {w.br[0], h_log_count_all(w.br[0], "event=redis_up")};
    h_kill9(w.redis);
    h_load_run_for(l, 1000); /* producers see it gone and retry */
    w.redis = h_redis_start_aof(port);
    cr_assert(h_wait(bridge_reconnected, &rc, 20000), "bridge did not reconnect to Redis");
    after_fault(l, "redis_restart_aof", w.up_port);
}

/* 5. A house's connection to b1 goes half-open (the path goes dark, nothing is closed). The
 * house gives up on it and connects to b2 while b1 still believes it holds the house: the
 * claim fences b1 out (its reads are refused by epoch, and the claim tells it directly), well
 * within the lease; b1 forwards nothing for the house after that. */
Test(fault, half_open_connection_fenced) {
    world w;
    const char *fast[] = {"--ping-interval", "1000", NULL};
    world_up(&w, 0, fast);
    int pport;
    h_proxy *px = h_proxy_start(w.bport[0], &pport);
    char via[64];
    snprintf(via, sizeof via, "ws://127.0.0.1:%d/", pport);
    h_load *l = load_on_b1(&w, via);
    h_proxy_freeze(px, 0, 1); /* b1 -> house goes dark; the house still talks to b1 */
    struct held moved = {"h1", "b2"};
    cr_assert(h_wait(held_by, &moved, 20000), "h1 did not move to b2");
    uint64_t t_moved = h_now_ms();
    cr_assert(h_wait_log(w.br[0], "event=house_fenced", 15000),
              "b1 was not fenced out within the 15 s lease");
    uint64_t fenced_after = h_now_ms() - t_moved;
    h_load_result r = after_fault(l, "half_open_fence", w.up_port);
    h_proxy_stop(px);
    printf("fault=half_open_fence fenced_after_ms<=%llu\n", (unsigned long long)fenced_after);
    fflush(stdout);

    /* b1's log: fenced by the claim (not by its own silence timeout), and not one request
     * forwarded to h1 after that. */
    size_t len;
    char *log = h_read_file(w.br[0]->log, &len);
    cr_assert_not_null(log);
    char *f = strstr(log, "event=house_fenced");
    /* Whichever comes first: the claim's message, or a read refused by the new epoch. */
    cr_assert(f && strstr(f, "house=h1") &&
                  (strstr(f, "reason=claimed_elsewhere") || strstr(f, "reason=epoch_moved")),
              "b1 was not fenced by the claim");
    for (char *p = f; (p = strstr(p, "event=request_forwarded")) != NULL; p++) {
        char *eol = strchr(p, '\n');
        char *h1 = strstr(p, "house=h1 ");
        cr_assert(!h1 || (eol && h1 > eol), "b1 forwarded a request to h1 after it was fenced");
    }
    free(log);
    cr_assert_eq(r.s5xx, 0, "%ld 5xx replies", r.s5xx);
}

static long rss_kb(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    size_t len;
    char *s = h_read_file(path, &len);
    long kb = -1;
    char *p = s ? strstr(s, "VmRSS:") : NULL;
    if (p)
        kb = strtol(p + 6, NULL, 10);
    free(s);
    return kb;
}

/* 6. 2,000 houses on one bridge (simulated by tests/load's gp-loadhouses from one process),
 * each receiving requests through the keyspace doorbell; all answered, none run twice. */
Test(fault, two_thousand_houses_one_bridge) {
    enum { N = 2000 };
    world w;
    memset(&w, 0, sizeof w);
    w.redis = h_redis_start(0);
    bridge_up(&w, 0, NULL);
    long rss0 = rss_kb(w.br[0]->pid);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", w.bport[0]);
    h_proc *lh = h_loadhouses_start(url, N, NULL);
    cr_assert(h_wait_log(lh, "event=all_connected", 120000), "not every simulated house connected");
    long rss1 = rss_kb(w.br[0]->pid);

    static char ids[N][16];
    static const char *houses[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "lh-%d", i + 1); /* gp-loadhouses: lh-1 .. lh-N */
        houses[i] = ids[i];
    }
    h_load *l = load_start(houses, N, 400);
    h_load_mark(l, 1);
    h_load_run_for(l, 10000); /* 4,000 requests: two per house */
    h_load_mark(l, 0);
    h_load_result r = load_finish(l, "houses_2000", 0);
    cr_assert_eq(r.dup_replies, 0, "%ld duplicate replies", r.dup_replies);
    cr_assert_eq(r.s2xx, r.sent, "%ld of %ld answered 2xx", r.s2xx, r.sent);
    long rss2 = rss_kb(w.br[0]->pid);
    cr_assert_eq(h_stop(lh) >= 0, 1);
    cr_assert(h_log_count(lh, "dup_exec=0") > 0 &&
                  h_log_count(lh, "dup_exec=") == h_log_count(lh, "dup_exec=0"),
              "a simulated house ran a request twice");
    printf("fault=houses_2000 bridge_rss_kb idle=%ld connected=%ld loaded=%ld "
           "per_house_bytes=%ld\n",
           rss0, rss1, rss2, (rss1 - rss0) * 1024 / N);
    fflush(stdout);
}

struct bp {
    long max_pending;
};

static long xpending_count(const char *house) {
    redisReply *r = h_cmd("XPENDING gp:{%s}:req gp", house);
    long n = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                     r->element[0]->type == REDIS_REPLY_INTEGER
                 ? (long)r->element[0]->integer
                 : -1;
    freeReplyObject(r);
    return n;
}

/* Backpressure: a house slower than its producers never has more than --max-inflight
 * requests taken from its stream; the backlog waits in Redis (XPENDING counts what the bridge
 * has taken), and all of it is served in the end. */
Test(fault, slow_house_backlog_stays_in_redis) {
    world w;
    const char *cap[] = {"--max-inflight", "3", NULL};
    world_h1(&w, STANDALONE, cap);
    enum { N = 30 };
    char id[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "slow-%d", i);
        h_request("h1", id[i], "GET", "/slow?ms=150", NULL, NULL, 0, 60000);
    }
    long max_pending = 0, max_backlog = 0;
    int done = 0;
    uint64_t end = h_now_ms() + 30000;
    while (!done && h_now_ms() < end) {
        long p = xpending_count("h1");
        long backlog = h_int("XLEN gp:{h1}:req");
        if (p > max_pending)
            max_pending = p;
        if (backlog > max_backlog)
            max_backlog = backlog;
        done = backlog == 0;
    }
    cr_assert(done, "backlog not served within 30 s");
    /* The pending list also holds answered entries whose acknowledgement is on its way (the
     * bridge takes the next request as soon as one is answered): at most one more per slot. */
    cr_assert_leq(max_pending, 6, "the bridge took %ld requests at once (cap 3)", max_pending);
    cr_assert_geq(max_backlog, 20, "the backlog never waited in Redis (max XLEN %ld)", max_backlog);
    for (int i = 0; i < N; i++) {
        h_reply r;
        cr_assert(h_wait_reply(id[i], NULL, 10000, &r), "%s got no reply", id[i]);
        cr_assert_eq(r.status, 200);
        h_reply_free(&r);
    }
}

static int stream_empty(void *house) {
    return h_int("XLEN gp:{%s}:req", (const char *)house) == 0;
}

/* The claim itself tells the previous holder: with no traffic at all (no read to be refused,
 * no renewal due for seconds), b1 lets go of h1 as soon as another connection of h1
 * authenticates at b2. */
Test(fault, claim_fences_previous_holder_at_once) {
    world w;
    const char *long_lease[] = {"--lease-ms", "60000", NULL}; /* no renewal during the test */
    world_h1(&w, STANDALONE, long_lease);
    /* One round trip first: b1's start-up reads are done, so no read of its can be the one
     * that notices the new epoch. */
    h_request("h1", "warm-1", "GET", "/echo", NULL, NULL, 0, 5000);
    h_reply rw;
    cr_assert(h_wait_reply("warm-1", NULL, 5000, &rw), "h1 not served");
    h_reply_free(&rw);
    cr_assert(h_wait(stream_empty, "h1", 5000), "warm-1 was not acknowledged");
    uint8_t secret[32];
    cr_assert_eq(gp_secret_from_hex(w.secret[0], secret), 0);
    int fd = h_ws_connect(w.bport[1], NULL, 0);
    cr_assert_geq(fd, 0);
    int code = 0, stage = 0;
    char msg[128];
    cr_assert_eq(h_ws_auth(fd, "h1", secret, &code, msg, sizeof msg, &stage), GP_FRAME_WELCOME);
    uint64_t t0 = h_now_ms();
    cr_assert(h_wait_log(w.br[0], "reason=claimed_elsewhere", 5000),
              "b1 did not let go of h1 when b2 claimed it");
    printf("fault=claim_fence fenced_after_ms<=%llu\n", (unsigned long long)(h_now_ms() - t0));
    fflush(stdout);
    cr_assert(h_wait_log(w.house[0], "event=fenced", 5000), "h1 was not told it was fenced");
    close(fd);
}

/* On a cluster the janitor walks every node: a request for an id nobody registered, whose
 * stream lands on a node no held house uses, still gets its 504. */
Test(fault, cluster_unheld_house_gets_504) {
    world w;
    world_h1(&w, CLUSTER, NULL);
    h_request("no-such-house", "typo-c", "GET", "/echo", NULL, NULL, 0, 1000);
    h_reply r;
    cr_assert(h_wait_reply("typo-c", NULL, 15000, &r), "no 504 for an unheld house");
    cr_assert_eq(r.status, 504);
    h_reply_free(&r);
    h_request("h1", "c-1", "GET", "/echo", NULL, NULL, 0, 5000);
    cr_assert(h_wait_reply("c-1", NULL, 5000, &r), "h1 not served on the cluster");
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);
}

#define CLI(out, err, ...) h_cli(out, NULL, err, (const char *const[]){__VA_ARGS__, NULL})

/* The CLI against a cluster (given one node, like the bridge): register a house, run it,
 * send it a request, list it — each command follows MOVED to the node of its keys. */
Test(fault, cluster_cli_end_to_end) {
    world w;
    world_up_on(&w, CLUSTER, 0, NULL);
    char *out = NULL, *err = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-9", "--quiet"), 0, "add: %s", err);
    char secret[65];
    snprintf(secret, sizeof secret, "%.64s", out);
    free(out), free(err);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", w.bport[0]);
    h_house_start_url("farm-9", secret, url, w.up_url, NULL);
    cr_assert(h_wait_connected("farm-9", 15000), "farm-9 did not connect");
    cr_assert_eq(CLI(&out, &err, "request", "farm-9", "GET", "/status/201", "--body-only"), 0,
                 "request: %s", err);
    cr_assert_str_eq(out, "status 201\n");
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "list: %s", err);
    cr_assert(strstr(out, "farm-9") && strstr(out, "b1"), "list: %s", out);
    free(out), free(err);
}
