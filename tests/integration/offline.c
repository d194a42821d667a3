/* offline.c — offline and disabled houses as an operator meets them: `ghostport request
 * --fail-fast` and `--wait-online` (exit status and the one line saying why: no house, offline
 * since when and on which bridge, disabled), the state and "offline since" in `house list`,
 * `top --json` and the JSON API, recorded when a house goes away and when its bridge is killed
 * (SIGKILL: no goodbye, the state hash just expires), and a re-enabled house back within
 * seconds over ws and rudp. Real redis-server, bridge, house and upstream. */
#include "../harness/harness.h"
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(offline, .init = h_init, .fini = h_fini, .timeout = 120);

#define CLI(out, err, ...) h_cli(out, NULL, err, (const char *const[]){__VA_ARGS__, NULL})

/* Redis's clock, ms. */
static long long redis_ms(void) {
    redisReply *r = h_cmd("TIME");
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* The line of `out` that starts with id (static buffer; "" when none). */
static const char *line_of(const char *out, const char *id) {
    static char line[1024];
    size_t n = strlen(id);
    for (const char *p = out; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > n && strncmp(p, id, n) == 0 && p[n] == ' ') {
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            return line;
        }
        p = e ? e + 1 : NULL;
    }
    return "";
}

/* `house list --json`'s object for id (the caller decrefs), or NULL. */
static json_t *listed(const char *id) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "list", "--json"), 0, "%s", err);
    json_t *found = NULL;
    for (char *p = out; p && *p && !found;) {
        char *e = strchr(p, '\n');
        if (e)
            *e = '\0';
        json_t *o = json_loads(p, 0, NULL);
        if (o && strcmp(json_string_value(json_object_get(o, "id")), id) == 0)
            found = o;
        else
            json_decref(o);
        p = e ? e + 1 : NULL;
    }
    free(out), free(err);
    return found;
}

/* `top --json`'s house id (the caller decrefs the whole snapshot, in *snap). */
static json_t *top_house(const char *id, json_t **snap) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(CLI(&out, &err, "top", "--json", "--interval", "0"), 0, "%s", err);
    *snap = json_loads(out, 0, NULL);
    free(out), free(err);
    cr_assert(*snap, "top --json is not JSON");
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(*snap, "houses"), i, h) {
        if (strcmp(json_string_value(json_object_get(h, "id")), id) == 0)
            return h;
    }
    cr_assert_fail("top --json has no house %s", id);
    return NULL;
}

/* `request --fail-fast` (or other options) to house: its exit status, stderr in *err. */
static int request(const char *house, char **err, const char *opt, const char *val) {
    char *out = NULL;
    int rc = val ? CLI(&out, err, "request", house, "GET", "/echo", opt, val, "--timeout", "5000")
                 : CLI(&out, err, "request", house, "GET", "/echo", opt, "--timeout", "5000");
    free(out);
    return rc;
}

Test(offline, fail_fast_says_why_and_sends_nothing) {
    h_world w;
    h_world_up(&w, NULL, (const char *const[]){"--bridge-id", "b1", NULL}, NULL);
    char sec[65], *err = NULL;
    h_register("farm-1", sec);

    cr_assert_eq(request("nope", &err, "--fail-fast", NULL), 6, "%s", err);
    cr_assert(strstr(err, "no house nope"), "%s", err);
    free(err);
    cr_assert_eq(h_int("EXISTS gp:{nope}:req"), 0, "a request for no house was sent");

    /* Registered, never connected: offline, and no bridge to name. */
    cr_assert_eq(request("farm-1", &err, "--fail-fast", NULL), 4, "%s", err);
    cr_assert(strstr(err, "house farm-1 is offline (no bridge has held it yet)"), "%s", err);
    free(err);
    cr_assert_eq(h_int("XLEN gp:{farm-1}:req"), 0, "--fail-fast sent the request");
    json_t *o = listed("farm-1");
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "offline");
    cr_assert(json_is_null(json_object_get(o, "offline_since_ms")));
    json_decref(o);

    /* Online: sent and answered. */
    h_proc *house = h_house_start("farm-1", sec, w.bridge_port, w.up_url, NULL);
    cr_assert(h_wait_connected("farm-1", 15000));
    cr_assert_eq(request("farm-1", &err, "--fail-fast", NULL), 0, "%s", err);
    free(err);
    char *out = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0);
    cr_assert(strstr(line_of(out, "farm-1"), " online ") && strstr(line_of(out, "farm-1"), " b1 "),
              "%s", out);
    free(out), free(err);

    /* Gone (the house stopped, its bridge let it go): offline since then, on b1. */
    long long before = redis_ms();
    h_stop(house);
    cr_assert(h_wait_offline("farm-1", 10000));
    long long after = redis_ms();
    cr_assert_eq(request("farm-1", &err, "--fail-fast", NULL), 4, "%s", err);
    cr_assert(strstr(err, "house farm-1 is offline since ") &&
                  strstr(err, "last held by bridge b1"),
              "%s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "not one line: %s", err);
    fprintf(stderr, "  offline: %s", err);
    free(err);
    long long xlen = h_int("XLEN gp:{farm-1}:req");
    o = listed("farm-1");
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "offline");
    long long since = json_integer_value(json_object_get(o, "offline_since_ms"));
    cr_assert(since >= before - 6000 && since <= after, "offline_since_ms %lld not in [%lld, %lld]",
              since, before - 6000, after);
    cr_assert_str_eq(json_string_value(json_object_get(o, "last_bridge")), "b1");
    json_decref(o);
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0);
    const char *l = line_of(out, "farm-1");
    cr_assert(strstr(l, " offline ") && strstr(l, "(b1)") && strstr(l, "ago"), "%s", out);
    fprintf(stderr, "  house list: %s\n", l);
    free(out), free(err);
    json_t *snap;
    json_t *t = top_house("farm-1", &snap);
    cr_assert_str_eq(json_string_value(json_object_get(t, "state")), "offline");
    cr_assert_eq(json_integer_value(json_object_get(t, "offline_since_ms")), since);
    json_decref(snap);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0"), 0, "%s", err);
    cr_assert(strstr(out, "0 online, 1 offline, 0 disabled") &&
                  strstr(line_of(out, "farm-1"), "(b1)") &&
                  strstr(line_of(out, "farm-1"), "offline"),
              "%s", out);
    free(out), free(err);

    /* Disabled: says so, and how to undo it; wins over offline. */
    cr_assert_eq(CLI(&out, &err, "house", "disable", "farm-1"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(request("farm-1", &err, "--fail-fast", NULL), 5, "%s", err);
    cr_assert(strstr(err, "house farm-1 is disabled (ghostport house enable farm-1)"), "%s", err);
    free(err);
    o = listed("farm-1");
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "disabled");
    json_decref(o);
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0);
    cr_assert(strstr(line_of(out, "farm-1"), " disabled "), "%s", out);
    free(out), free(err);
    cr_assert_eq(h_int("XLEN gp:{farm-1}:req"), xlen, "a refused request was sent");

    /* Without --fail-fast the request is sent and waits (the note names the state) until the
     * janitor answers it 504 at its deadline. */
    cr_assert_eq(CLI(&out, &err, "request", "farm-1", "GET", "/", "--timeout", "200"), 1, "%s",
                 err);
    cr_assert(strstr(err, "house farm-1 is disabled; the request waits") && strstr(err, "504"),
              "%s", err);
    free(out), free(err);
}

/* The CLI, started in the background: request --wait-online ms to house. */
static h_proc *request_bg(const char *name, const char *house, const char *ms) {
    const char *argv[] = {
        h_bin("ghostport"), "--redis", h_redis_url(), "request", house, "GET", "/echo",
        "--wait-online",    ms,        NULL};
    return h_spawn(name, (char *const *)argv);
}

static int exited(void *p) {
    return !h_alive(p);
}

Test(offline, wait_online_sends_once_the_house_is_up_and_gives_up_at_its_bound) {
    h_world w;
    h_world_up(&w, NULL, (const char *const[]){"--bridge-id", "b1", NULL}, NULL);
    char sec[65], *err = NULL;
    h_register("farm-2", sec);

    /* Never up: gives up after its bound, with --fail-fast's line and status. */
    uint64_t t0 = h_now_ms();
    cr_assert_eq(request("farm-2", &err, "--wait-online", "700"), 4, "%s", err);
    uint64_t took = h_now_ms() - t0;
    cr_assert(took >= 700 && took < 5000, "gave up after %llu ms", (unsigned long long)took);
    cr_assert(strstr(err, "house farm-2 is offline"), "%s", err);
    free(err);
    cr_assert_eq(h_int("XLEN gp:{farm-2}:req"), 0, "sent although the house never came");
    cr_assert_eq(request("nope", &err, "--wait-online", "5000"), 6, "%s", err);
    free(err);

    /* Comes up during the wait: the CLI is still waiting (nothing sent), then it is answered. */
    h_proc *cli = request_bg("cli-wait", "farm-2", "30000");
    cr_assert(!h_wait(exited, cli, 500), "the CLI did not wait for the house");
    cr_assert_eq(h_int("XLEN gp:{farm-2}:req"), 0, "sent before the house was online");
    t0 = h_now_ms();
    h_house_start("farm-2", sec, w.bridge_port, w.up_url, NULL);
    cr_assert(h_wait(exited, cli, 20000), "the CLI is still waiting");
    cr_assert(WIFEXITED(cli->status) && WEXITSTATUS(cli->status) == 0, "exit status %d",
              cli->status);
    cr_assert(h_log_count(cli, "HTTP/1.1 200 OK") == 1, "no 200 in the CLI's output");
    fprintf(stderr, "  wait-online: answered %llu ms after the house was started\n",
            (unsigned long long)(h_now_ms() - t0));

    /* Disabled during the whole wait: gives up saying so. */
    char *out = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "disable", "farm-2"), 0, "%s", err);
    free(out), free(err);
    cr_assert(h_wait_offline("farm-2", 10000));
    cr_assert_eq(request("farm-2", &err, "--wait-online", "300"), 5, "%s", err);
    cr_assert(strstr(err, "is disabled"), "%s", err);
    free(err);
}

/* house hash's last_seen, or -1 */
static long long hash_last_seen(const char *house) {
    redisReply *r = h_cmd("HGET gp:{%s}:house last_seen", house);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

struct seen_after {
    const char *house;
    long long ms;
};
static int seen_after(void *ud) {
    struct seen_after *s = ud;
    return hash_last_seen(s->house) > s->ms;
}

Test(offline, offline_since_survives_a_bridge_killed_without_a_word) {
    h_world w;
    /* A short lease: the state hash expires 3 s after the bridge dies; renewed every 1 s, and
     * so is the house hash's last_seen (the last time the bridge heard from the house, which
     * PINGs every 500 ms here). */
    h_world_up(&w, NULL,
               (const char *const[]){"--bridge-id", "b-dies", "--lease-ms", "3000",
                                     "--ping-interval", "500", NULL},
               NULL);
    char sec[65], *err = NULL;
    h_house_up(&w, "farm-3", sec, NULL);
    long long claimed = hash_last_seen("farm-3");
    cr_assert_gt(claimed, 0, "the claim did not record last_seen");
    /* Renewals carry it forward (at most every third of the lease). */
    struct seen_after sa = {"farm-3", claimed};
    cr_assert(h_wait(seen_after, &sa, 5000), "last_seen not renewed with the lease");
    long long killed = redis_ms();
    h_kill9(w.bridge);
    cr_assert(h_wait_offline("farm-3", 10000), "the state hash outlived its lease");
    long long seen = hash_last_seen("farm-3");
    cr_assert(seen <= killed && killed - seen <= 1000 + 500 + 500,
              "offline since %lld, killed at %lld: more than a third of the lease and a PING apart",
              seen, killed);
    cr_assert_eq(request("farm-3", &err, "--fail-fast", NULL), 4, "%s", err);
    cr_assert(strstr(err, "house farm-3 is offline since ") &&
                  strstr(err, "last held by bridge b-dies"),
              "%s", err);
    fprintf(stderr, "  after SIGKILL: %s", err);
    free(err);
    json_t *o = listed("farm-3");
    cr_assert_eq(json_integer_value(json_object_get(o, "offline_since_ms")), seen);
    cr_assert_str_eq(json_string_value(json_object_get(o, "last_bridge")), "b-dies");
    json_decref(o);

    /* Another bridge takes it: online there, and the record follows. */
    int port2;
    h_bridge_start(0, &port2, (const char *const[]){"--bridge-id", "b2", NULL}, 1);
    /* The house keeps dialing its one (dead) bridge: start a second house process against b2. */
    h_house_start("farm-3", sec, port2, w.up_url, NULL);
    cr_assert(h_wait_connected("farm-3", 15000));
    redisReply *r = h_cmd("HGET gp:{farm-3}:house last_bridge");
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "b2") == 0, "last_bridge %s",
              r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
    freeReplyObject(r);
    o = listed("farm-3");
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "online");
    cr_assert(json_is_null(json_object_get(o, "offline_since_ms")));
    json_decref(o);
}

/* The ms of the house's last "reconnect_in" line (-1 when none). */
static long long last_reconnect_ms(const h_proc *p) {
    char *log = h_read_file(p->log, NULL);
    long long ms = -1;
    for (const char *q = log; q && (q = strstr(q, "event=reconnect_in ms=")); q++)
        ms = atoll(q + strlen("event=reconnect_in ms="));
    free(log);
    return ms;
}

/* Disables house (connected to w's bridge as proc), waits until it has been refused at a
 * reconnect too, enables it, and returns how long it took to be back (ms). */
static uint64_t disable_then_enable(const char *house, const h_proc *proc) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "disable", house), 0, "%s", err);
    free(out), free(err);
    /* Closed by its bridge (1), then refused when it came back (2). */
    cr_assert(h_wait_log_n(proc, "msg=\"house disabled\"", 2, 15000),
              "the house was not refused at a reconnect within 15 s");
    cr_assert(!h_wait_connected(house, 200), "a disabled house connected");
    long long next = last_reconnect_ms(proc);
    cr_assert(next >= 2000 && next <= 3000, "refused as disabled, it waits %lld ms", next);
    cr_assert_eq(CLI(&out, &err, "house", "enable", house), 0, "%s", err);
    free(out), free(err);
    uint64_t t0 = h_now_ms();
    cr_assert(h_wait_connected(house, 6000), "an enabled house was not back within 6 s");
    return h_now_ms() - t0;
}

Test(offline, an_enabled_house_is_back_within_seconds) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    char sec[65];
    /* The default --reconnect-max-ms (30 s): a refusal used to cost 15-30 s. */
    h_proc *house = h_house_up(&w, "farm-4", sec, NULL);
    uint64_t took = disable_then_enable("farm-4", house);
    fprintf(stderr, "  ws: back %llu ms after house enable\n", (unsigned long long)took);
    cr_assert(h_wait_log(w.bridge, "reason=disabled", 1000), "the bridge did not log the refusal");
    h_assert_serves("farm-4", "after-enable");
}

Test(offline, an_enabled_house_is_back_within_seconds_over_rudp) {
    h_redis_start(0);
    int up, port;
    h_upstream_start(&up);
    char url[64], pub[65], upurl[64], sec[65];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_proc *bridge = h_rudp_bridge_start(&port, url, pub);
    h_register("farm-5", sec);
    h_proc *house = h_house_start_url("farm-5", sec, url, upurl,
                                      (const char *const[]){"--bridge-key", pub, NULL});
    cr_assert(h_wait_connected("farm-5", 15000));
    redisReply *r = h_cmd("HGET gp:{farm-5}:state transport");
    cr_assert_str_eq(r->str, "rudp");
    freeReplyObject(r);
    /* Refused inside the session now (it was silence, and the house's dial timed out). */
    uint64_t took = disable_then_enable("farm-5", house);
    fprintf(stderr, "  rudp: back %llu ms after house enable\n", (unsigned long long)took);
    cr_assert(h_wait_log(bridge, "transport=rudp reason=disabled", 1000),
              "the bridge did not log the refusal");
    r = h_cmd("HGET gp:{farm-5}:state transport");
    cr_assert_str_eq(r->str, "rudp");
    freeReplyObject(r);
}
