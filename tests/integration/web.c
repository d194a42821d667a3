/* web.c — the dashboard in a real browser against real processes: redis-server, a bridge with
 * its admin port (--admin-listen 0 --admin-token), a house and the upstream. The test sends a
 * few requests, checks the bridge serves the embedded dashboard, then runs
 * tests/web/dashboard.test.js (Debian's headless chromium driven by playwright-core: sign in,
 * wrong token, connected house with its transport, its recent requests, disable -> it drops,
 * enable -> it comes back, add a house and read its secret, remove it, a narrow window; then
 * Redis is stopped and the page must say "Redis unavailable") and asserts it exits 0. Its
 * output: <it-logs>/web.dashboard_in_chromium/dashboard.log (kept when the test fails); its
 * screenshots are copied to <it-logs>/web-<name>.png, kept when the test passes too.
 *
 * And a house's web app through the bridge's HTTP front door (--http-listen 0 --http-public):
 * the house's upstream is tests/web/app_server.js; curl gets its JSON API through the door, then
 * tests/web/app.test.js opens http://127.0.0.1:<front>/h/<house>/ in chromium, where the page
 * fetches that API, opens a WebSocket through the door (echo, then a counter the app pushes
 * every 100 ms) and closes it; the app's and the bridge's logs must say the same. Its output:
 * <it-logs>/web.house_web_app_through_the_front_door/app.log; screenshot <it-logs>/web-app.png.
 *
 * Needs node, tests/web/node_modules (npm ci) and /usr/bin/chromium, which scripts/deps.sh
 * installs: when any is missing the test fails and says which, it never skips. */
#include "../../bridge/store/store_hist.h"
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(web, .init = h_init, .fini = h_fini, .timeout = 260);

#define TOKEN "web-test-admin-token-7f3c9a"
#define HOUSE "farm-web"
#define NODE_TIMEOUT_S 200

static int exited(void *ud) {
    return !h_alive(ud);
}

static char g_stop_file[PATH_MAX];

/* A house with the L3 tunnel, as a bridge with --tun would have written it into Redis (its
 * address in the book <p>:tun, a route in its hash, its live state with the grant's
 * counters): no bridge here holds it, the test moves its counters (l3_traffic), the page must
 * show its address, routes, packets, bytes, drops and packets per second. */
#define L3_HOUSE "farm-l3"
#define L3_ADDR "100.96.0.7" /* index 6 of 100.96.0.0/16 */

static void l3_house(void) {
    char sec[65], now[32];
    h_register(L3_HOUSE, sec);
    redisReply *t = h_cmd("TIME");
    snprintf(now, sizeof now, "%lld",
             atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000);
    freeReplyObject(t);
    freeReplyObject(h_cmd("HSET gp:tun pool4 100.96.0.0/16 pool6 fd7a:6770::/64 h:" L3_HOUSE
                          " 6 i:6 " L3_HOUSE));
    freeReplyObject(h_cmd("HSET gp:{" L3_HOUSE "}:house tun_routes 10.1.2.0/24"));
    freeReplyObject(h_cmd(
        "HSET gp:{" L3_HOUSE "}:state bridge b-l3 transport rudp since %s last_seen %s rtt_ms 40 "
        "epoch 1 addr 10.0.0.9:4000 req_total 0 err_total 0 bytes_in 0 bytes_out 0 loss_pct 1.5 "
        "fec_repaired 7 tun_addr " L3_ADDR ",fd7a:6770::7 tun_pkts_in 1000 tun_pkts_out 500 "
        "tun_bytes_in 100000 tun_bytes_out 50000 tun_drops 3",
        now, now));
}

/* A day of request history for the L3 house, as its bridge b-l3 would have written it (with the
 * history script itself, into the house's, the bridge's and every bridge's hash): a daily curve
 * of 5-35 requests a minute, an error now and then and a burst of them every 97 minutes,
 * latencies around 40 ms with a slow tail, bodies of 300 bytes to the house and 2.2 kB back.
 * Synthetic, so that the 6 h and 24 h charts have something to show; the last two minutes are
 * left to the real house's requests. */
static void l3_history(void) {
    redisReply *t = h_cmd("TIME");
    long long now_min = atoll(t->element[0]->str) / 60;
    freeReplyObject(t);
    const char *keys[][2] = {{"gp:{" L3_HOUSE "}:hist", "gp:{" L3_HOUSE "}:house"},
                             {"gp:bhist:b-l3", NULL},
                             {"gp:hist", NULL}};
    for (long long m = now_min - 1439; m < now_min - 1; m++) {
        double phase = (double)(m % 1440) / 1440.0 * 2 * M_PI;
        int req = 20 + (int)(15 * sin(phase)) + (int)(m % 7);
        int err = m % 97 == 0 ? 6 : m % 13 == 0;
        int fast = req * 6 / 10, slow = req - fast - 1;
        char rec[256], slot[16], hour[24], min[8];
        snprintf(rec, sizeof rec, "%d %d %d %d %u:%d,%u:%d,%u:1", req, err, req * 300, req * 2200,
                 gp_hist_bucket(38000), fast, gp_hist_bucket(45000), slow,
                 gp_hist_bucket(m % 60 == 0 ? 900000 : 120000));
        snprintf(slot, sizeof slot, "%lld", (m / 60) % GP_HIST_SLOTS);
        snprintf(hour, sizeof hour, "%lld", m / 60);
        snprintf(min, sizeof min, "%lld", m % 60);
        for (size_t k = 0; k < 3; k++) {
            const char *argv[10] = {"EVAL", GP_HIST_ADD_LUA, keys[k][1] ? "2" : "1", keys[k][0]};
            int n = 4;
            if (keys[k][1])
                argv[n++] = keys[k][1];
            argv[n++] = slot, argv[n++] = hour, argv[n++] = min, argv[n++] = rec;
            argv[n++] = "90000000";
            redisReply *r = h_cmdv(n, argv, NULL);
            cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer == 1, "history script: %s",
                      r->str ? r->str : "");
            freeReplyObject(r);
        }
    }
}

/* The house's history in Redis holds at least n requests (the bridge wrote them). */
static int history_holds(void *ud) {
    redisReply *r = h_cmd("HVALS gp:{" HOUSE "}:hist");
    int n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        for (const char *p = strchr(r->element[i]->str, ';'); p; p = strchr(p + 1, ';'))
            n += atoi(strchr(p, ' ') ? strchr(p, ' ') + 1 : p + 1);
    freeReplyObject(r);
    return n >= *(int *)ud;
}

/* Traffic through its tunnel every half second: 100 packets (100 kB) in, 50 (25 kB) out. */
static void l3_traffic(uint64_t *last) {
    if (h_now_ms() - *last < 500)
        return;
    *last = h_now_ms();
    freeReplyObject(h_cmd("HINCRBY gp:{" L3_HOUSE "}:state tun_pkts_in 100"));
    freeReplyObject(h_cmd("HINCRBY gp:{" L3_HOUSE "}:state tun_pkts_out 50"));
    freeReplyObject(h_cmd("HINCRBY gp:{" L3_HOUSE "}:state tun_bytes_in 100000"));
    freeReplyObject(h_cmd("HINCRBY gp:{" L3_HOUSE "}:state tun_bytes_out 25000"));
}

typedef struct browsing {
    h_proc *node;
    uint64_t last_traffic;
} browsing;

/* The browser test asks for Redis to be stopped (GP_WEB_STOP_REDIS_FILE), or it ended; until
 * then the L3 house has traffic. */
static int stop_asked(void *ud) {
    browsing *b = ud;
    if (access(g_stop_file, F_OK) == 0 || !h_alive(b->node))
        return 1;
    l3_traffic(&b->last_traffic);
    return 0;
}

/* Copies a file (the screenshot) so that it outlives the test directory. */
static int copy_file(const char *from, const char *to) {
    size_t len;
    char *data = h_read_file(from, &len);
    if (!data)
        return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    free(data);
    return ok ? 0 : -1;
}

/* Keeps the browser test's final screenshot, <name>.png in the test directory, as
 * web-<name>.png beside it, where a passing test's directory does not take it along. */
static void keep_screenshot(const char *name) {
    char shot[PATH_MAX + 32], dir[PATH_MAX], keep[PATH_MAX + 32];
    snprintf(shot, sizeof shot, "%s/%s.png", h_dir(), name);
    snprintf(dir, sizeof dir, "%s", h_dir());
    snprintf(keep, sizeof keep, "%s/web-%s.png", dirname(dir), name);
    cr_assert_eq(copy_file(shot, keep), 0, "no screenshot at %s", shot);
    printf("web: screenshot %s\n", keep);
}

/* Fails the test, saying why, when node ended with exit code 127 (not found) or 2 (the
 * browser cannot run). */
static void assert_node_ran(h_proc *p, int code) {
    cr_assert_neq(code, 127, "node did not run: is Node.js installed? (scripts/deps.sh; see %s)",
                  p->log);
    cr_assert_neq(code, 2,
                  "the browser cannot run here (playwright-core from `npm ci` in tests/web, "
                  "/usr/bin/chromium: scripts/deps.sh installs both; see %s)",
                  p->log);
}

static int exit_code(const h_proc *p) {
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
}

/* Fails the test unless the browser test node is done (when not, within timeout_s: it is
 * stopped) and exited with status 0. */
static void assert_browser_test_passed(h_proc *node, int done, int timeout_s) {
    if (!done)
        h_stop(node);
    cr_assert(done, "the browser test did not finish within %d s (see %s)", timeout_s, node->log);
    int code = exit_code(node);
    assert_node_ran(node, code);
    cr_assert_eq(code, 0, "the browser test failed with exit status %d (see %s)", code, node->log);
}

Test(web, dashboard_in_chromium) {
    h_proc *redis = h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char upstream[64];
    snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d", up_port);

    int port;
    /* The history written every second: what is sent before the page opens is in Redis then. */
    h_proc *bridge =
        h_bridge_start(0, &port,
                       (const char *const[]){"--admin-listen", "0", "--admin-token", TOKEN,
                                             "--history-flush-ms", "1000", NULL},
                       0);
    int admin = h_admin_port(bridge);
    cr_assert(admin, "the bridge logged no admin port (see %s)", bridge->log);
    cr_assert(h_wait_port(port, 10000), "the bridge's house port %d is not open", port);

    /* The dashboard is served from the binary, without a token. */
    char *body = NULL;
    int st = h_http_get(admin, "/", &body);
    cr_assert_eq(st, 200, "GET / on the admin port: %d", st);
    cr_assert(body && strstr(body, "<title>Ghost Port</title>") && strstr(body, "/assets/app.js"),
              "GET / is not the dashboard: %.200s", body ? body : "(no body)");
    free(body);
    body = NULL;
    st = h_http_get(admin, "/assets/app.js", &body);
    cr_assert_eq(st, 200, "GET /assets/app.js: %d", st);
    cr_assert(body && strstr(body, "Ghost Port dashboard"), "app.js: %.200s", body ? body : "");
    free(body);
    body = NULL;
    st = h_http_get(admin, "/assets/no-such-file.js", &body);
    cr_assert_eq(st, 404, "GET /assets/no-such-file.js: %d", st);
    free(body);

    char secret[65];
    h_register(HOUSE, secret);
    /* Back soon after the disable/enable round (a refusal waits half to all of this). */
    h_house_start(HOUSE, secret, port, upstream,
                  (const char *const[]){"--reconnect-max-ms", "2000", NULL});
    cr_assert(h_wait_connected(HOUSE, 15000), "house %s did not connect", HOUSE);

    /* A few requests for its page's recent list. */
    for (int i = 1; i <= 3; i++) {
        char id[32], path[32];
        snprintf(id, sizeof id, "web-%d", i);
        snprintf(path, sizeof path, "/echo?web=%d", i);
        h_request(HOUSE, id, "GET", path, NULL, NULL, 0, 10000);
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 12000, &r), "no reply to %s", path);
        cr_assert_eq(r.status, 200, "%s: status %d", path, r.status);
        h_reply_free(&r);
    }

    /* Before the page opens: the house's history holds those requests (the chart must show
     * them, not only what happens while the page is open). */
    int three = 3;
    cr_assert(h_wait(history_holds, &three, 10000), "the bridge did not write the history");

    l3_house();
    l3_history();
    setenv("GP_WEB_L3_HOUSE", L3_HOUSE, 1);
    char burl[64];
    snprintf(burl, sizeof burl, "ws://127.0.0.1:%d/", port);
    setenv("GP_WEB_BRIDGE_URL", burl, 1); /* what the "add a house" hint must say */
    setenv("GP_WEB_L3_ADDR", L3_ADDR, 1);

    char url[64], timeout[16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", admin);
    snprintf(timeout, sizeof timeout, "%d", NODE_TIMEOUT_S - 10);
    setenv("GP_WEB_TIMEOUT_S", timeout, 1);
    snprintf(g_stop_file, sizeof g_stop_file, "%s/stop-redis", h_dir());
    setenv("GP_WEB_STOP_REDIS_FILE", g_stop_file, 1);
    char *const argv[] = {"node",
                          "tests/web/dashboard.test.js",
                          url,
                          TOKEN,
                          HOUSE,
                          "ws",
                          (char *)h_dir(),
                          "/echo?web=",
                          "3",
                          NULL};
    h_proc *node = h_spawn("dashboard", argv);
    uint64_t t0 = h_now_ms();
    browsing br = {node, 0};
    int done = h_wait(stop_asked, &br, NODE_TIMEOUT_S * 1000);
    if (done && h_alive(node)) {
        /* Everything but the Redis outage is done: check what the browser did in Redis (the
         * house is enabled and connected again, the house it added is gone), then stop
         * Redis for the page's "Redis unavailable". */
        cr_assert(h_wait_connected(HOUSE, 5000));
        redisReply *r = h_cmd("HGET gp:{" HOUSE "}:house disabled");
        cr_assert(r->type == REDIS_REPLY_NIL ||
                      (r->type == REDIS_REPLY_STRING && strcmp(r->str, "0") == 0),
                  "%s is still disabled", HOUSE);
        freeReplyObject(r);
        /* The houses, and the 520 "zz-many-" ones the page added through the API (its "many
         * houses" step); the one added with the form was removed. */
        cr_assert_eq(h_int("SCARD gp:houses"), 522,
                     "the house added in the browser was not removed (or the many were not added)");
        h_stop(redis);
        int left = NODE_TIMEOUT_S * 1000 - (int)(h_now_ms() - t0);
        done = h_wait(exited, node, left > 0 ? left : 1);
    }
    assert_browser_test_passed(node, done, NODE_TIMEOUT_S);

    cr_assert(access(g_stop_file, F_OK) == 0, "the browser test never asked to stop Redis");

    /* Kept for people to look at (README "Tests"): the overview with its history (1 h, 24 h),
     * a house's page and the L3 house's day, the removal's confirmation, the hint. */
    const char *shots[] = {"dashboard", "overview",       "overview-24h", "house",  "house-24h",
                           "l3",        "remove-confirm", "added",        "narrow", "redis-down"};
    for (size_t i = 0; i < sizeof shots / sizeof *shots; i++)
        keep_screenshot(shots[i]);
}

#define APP_HOUSE "farm-app"
#define APP_TEXT "Hello from the house's web app" /* tests/web/app_server.js's API */
#define APP_TIMEOUT_S 90

/* Issue 13's "done when": a user reaches a house's web app with curl and with a browser, its
 * WebSocket ("live parts") included, through the front door and nothing else. */
Test(web, house_web_app_through_the_front_door) {
    h_redis_start(0);
    int port;
    h_proc *bridge = h_bridge_start(
        0, &port, (const char *const[]){"--http-listen", "0", "--http-public", NULL}, 1);
    int front = h_listen_port(bridge, "http");
    cr_assert(front, "the bridge logged no front door port (see %s)", bridge->log);

    /* The house's web app, on a free port. */
    int app_port = h_free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%d", app_port);
    char *const app_argv[] = {"node", "tests/web/app_server.js", ps, NULL};
    h_proc *app = h_spawn("app_server", app_argv);
    if (!h_wait_log(app, "app_server: listening on", 10000)) {
        if (!h_alive(app))
            assert_node_ran(app, exit_code(app));
        cr_assert_fail("tests/web/app_server.js did not say it is listening (see %s)", app->log);
    }
    char app_url[64];
    snprintf(app_url, sizeof app_url, "http://127.0.0.1:%d", app_port);

    char secret[65];
    h_register(APP_HOUSE, secret);
    h_house_start(APP_HOUSE, secret, port, app_url, NULL);
    cr_assert(h_wait_connected(APP_HOUSE, 15000), "house %s did not connect", APP_HOUSE);

    /* curl: the app's API through the door. */
    char api[128];
    snprintf(api, sizeof api, "http://127.0.0.1:%d/h/" APP_HOUSE "/api/hello", front);
    const char *const curl[] = {"/usr/bin/curl",  "-sS", "--max-time", "20", "-w",
                                "\n%{http_code}", api,   NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(curl, 30000, &out, NULL, &err);
    cr_assert_eq(rc, 0, "curl %s: exit %d: %s", api, rc, err ? err : "");
    char *code = out ? strrchr(out, '\n') : NULL;
    cr_assert(code && strcmp(code + 1, "200") == 0, "curl %s: not 200: %s", api, out ? out : "");
    *code = '\0';
    cr_assert(strstr(out, "\"text\":\"" APP_TEXT "\""), "curl %s: %s", api, out);
    cr_assert(strstr(out, "\"path\":\"/api/hello\""), "the app saw another path: %s", out);
    free(out);
    free(err);

    /* The browser: the page, its fetch, its WebSocket. */
    char url[96], timeout[16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/h/" APP_HOUSE "/", front);
    snprintf(timeout, sizeof timeout, "%d", APP_TIMEOUT_S - 10);
    setenv("GP_WEB_TIMEOUT_S", timeout, 1);
    char *const argv[] = {"node", "tests/web/app.test.js", url, (char *)h_dir(), NULL};
    h_proc *node = h_spawn("app", argv);
    assert_browser_test_passed(node, h_wait(exited, node, APP_TIMEOUT_S * 1000), APP_TIMEOUT_S);

    /* What reached the app: the upgrade, through the door (X-Forwarded-For), on the page's
     * path; the echo; the page's close. And the bridge closed the WebSocket cleanly. */
    cr_assert(h_log_count(app, "app_server: upgrade /ws origin=http://127.0.0.1:") == 1 &&
                  h_log_count(app, "xff=127.0.0.1") >= 3,
              "the app did not see one WebSocket and the page's requests through the door "
              "(see %s)",
              app->log);
    cr_assert(h_log_count(app, "app_server: ws message \"hello\"") == 1, "see %s", app->log);
    cr_assert(h_wait_log(app, "app_server: ws closed (close 1000)", 10000),
              "the page's close did not reach the app (see %s)", app->log);
    cr_assert(h_wait_log(bridge, "event=http_websocket_closed", 10000),
              "the bridge did not log the WebSocket's end (see %s)", bridge->log);
    cr_assert_eq(h_log_count(bridge, "event=http_websocket_reset"), 0, "see %s", bridge->log);

    keep_screenshot("app");
}
