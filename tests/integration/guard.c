/* guard.c — the house is the trust boundary of its upstreams: a request's path never leaves
 * its service's base path (dot segments, encoded dots, backslashes, encoded slashes), and
 * header names and values that an upstream could read differently from the house (a space
 * before the colon, VT/FF/ESC/DEL in a value) are refused with a 400 naming the header,
 * before any upstream call. The test upstream records every request target it receives
 * (GET /seen), so "never reached" is checked where it matters: at the upstream. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(guard, .init = h_init, .fini = h_fini, .timeout = 120);

typedef struct world {
    int bridge_port, up_port;
    char up_url[64], svc[128];
    char secret[65];
} world;

/* A house whose default upstream is the test upstream's root and whose service `r` is the
 * same upstream under /only/this. */
static void world_up(world *w, const char *id) {
    memset(w, 0, sizeof *w);
    h_redis_start(0);
    h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    snprintf(w->svc, sizeof w->svc, "r=http://127.0.0.1:%d/only/this", w->up_port);
    h_bridge_start(0, &w->bridge_port, NULL, 1);
    h_register(id, w->secret);
    const char *extra[] = {"--service", w->svc, NULL};
    h_house_start(id, w->secret, w->bridge_port, w->up_url, extra);
    cr_assert(h_wait_connected(id, 15000), "house %s did not connect within 15 s", id);
}

/* The request targets the upstream has received so far (a JSON array). */
static json_t *seen(const world *w) {
    char *body = NULL;
    int st = h_http_get(w->up_port, "/seen", &body);
    cr_assert_eq(st, 200, "GET /seen on the upstream: %d", st);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    cr_assert(json_is_array(j), "/seen is not a JSON array");
    return j;
}

static int seen_has(const world *w, const char *target) {
    json_t *j = seen(w);
    int found = 0;
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) found |= strcmp(json_string_value(v), target) == 0;
    json_decref(j);
    return found;
}

static const char *send_req(const char *house, const char *fid, const char *service,
                            const char *path, const char *headers) {
    char reply[96];
    snprintf(reply, sizeof reply, "gp:rep:%s", fid);
    return h_xadd_req(house, &(h_req){.id = fid,
                                      .method = "GET",
                                      .path = path,
                                      .service = service,
                                      .headers = headers,
                                      .reply = reply});
}

static void expect_400(const char *fid, const char *path, const char *want_in_message) {
    h_reply r;
    cr_assert(h_wait_reply(fid, NULL, 15000, &r), "%s (%s): no reply", fid, path);
    cr_assert_eq(r.status, 400, "%s (%s): status %d, want 400 (error %s message %s)", fid, path,
                 r.status, r.error ? r.error : "-", r.message ? r.message : "-");
    cr_assert(r.error && strcmp(r.error, "bad_request") == 0, "%s: error '%s'", fid,
              r.error ? r.error : "(none)");
    cr_assert(r.message && *r.message, "%s: a 400 without a message", fid);
    if (want_in_message)
        cr_assert(strstr(r.message, want_in_message), "%s: message '%s' does not name '%s'", fid,
                  r.message, want_in_message);
    h_reply_free(&r);
}

Test(guard, dot_segments_never_leave_the_service_base) {
    world w;
    world_up(&w, "g1");
    /* Every one of these would leave /only/this once dots (plain or percent-encoded) are
     * resolved by curl or by the upstream, or once a server reads '\' or %2f as '/'. */
    static const char *const escape[] = {
        "/../../outside/p13",
        "/%2e%2e/outside",
        "/a/../../outside",
        "/.%2E/outside",
        "/%2E./x/../../outside",
        "/a/%2e%2e/%2E%2e/outside",
        "/..",
        "/a/b/../../../outside",
        "/..;/outside",
        "/..%2foutside",
        "/..%2Foutside",
        "/..\\outside",
        "/a%5c..%5c..%5coutside",
    };
    size_t n = sizeof escape / sizeof *escape;
    for (size_t i = 0; i < n; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "dot-%zu", i);
        send_req("g1", fid, "r", escape[i], NULL);
    }
    for (size_t i = 0; i < n; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "dot-%zu", i);
        expect_400(fid, escape[i], NULL);
    }
    /* Dots that stay inside the base are resolved there. */
    send_req("g1", "dot-in", "r", "/a/./b/../c?q=/../x", NULL);
    h_reply r;
    cr_assert(h_wait_reply("dot-in", NULL, 15000, &r), "dot-in: no reply");
    cr_assert_eq(r.status, 404, "dot-in: status %d (error %s)", r.status, r.error ? r.error : "-");
    h_reply_free(&r);
    cr_assert(seen_has(&w, "/only/this/a/c?q=/../x"), "/a/./b/../c did not reach base/a/c");
    /* Nothing outside the base was ever asked for. */
    json_t *j = seen(&w);
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) {
        const char *t = json_string_value(v);
        cr_assert(strncmp(t, "/only/this/", 11) == 0, "the upstream received %s", t);
    }
    cr_assert_eq(json_array_size(j), 1, "the upstream received %zu requests, want 1",
                 json_array_size(j));
    json_decref(j);
}

Test(guard, hostile_header_names_and_values_are_refused) {
    world w;
    world_up(&w, "g2");
    static const struct {
        const char *headers, *names;
    } bad[] = {
        /* The bridge's entry parser refuses this name already (as "Transfer-Encoding?"); the
         * house refuses it too when a bridge lets it through (tests/unit/reqcheck.c). */
        {"{\"Transfer-Encoding \":\"chunked\"}", NULL},
        {"{\"X-Vt\":\"a\\u000bb\"}", "X-Vt"},
        {"{\"X-Ff\":\"a\\u000cb\"}", "X-Ff"},
        {"{\"X-Esc\":\"\\u001b]0;owned\\u0007\"}", "X-Esc"},
        {"{\"X-Del\":\"a\\u007fb\"}", "X-Del"},
        {"{\"X-Ok\":\"fine\",\"X-Bs\":\"\\u0008\"}", "X-Bs"},
    };
    size_t n = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < n; i++) {
        char fid[32], path[64];
        snprintf(fid, sizeof fid, "hdr-%zu", i);
        snprintf(path, sizeof path, "/echo?bad=%zu", i);
        send_req("g2", fid, NULL, path, bad[i].headers);
    }
    for (size_t i = 0; i < n; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "hdr-%zu", i);
        expect_400(fid, bad[i].headers, bad[i].names);
    }
    /* A tab is allowed inside a value, and so are bytes above 0x7f. */
    send_req("g2", "hdr-ok", NULL, "/echo?ok=1", "{\"X-Tab\":\"a\\tb\",\"X-Utf8\":\"caf\\u00e9\"}");
    h_reply r;
    cr_assert(h_wait_reply("hdr-ok", NULL, 15000, &r), "hdr-ok: no reply");
    cr_assert_eq(r.status, 200, "hdr-ok: status %d (error %s message %s)", r.status,
                 r.error ? r.error : "-", r.message ? r.message : "-");
    h_reply_free(&r);
    json_t *j = seen(&w);
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) {
        const char *t = json_string_value(v);
        cr_assert(!strstr(t, "bad="), "the upstream received the refused request %s", t);
    }
    cr_assert_eq(json_array_size(j), 1, "the upstream received %zu requests, want 1",
                 json_array_size(j));
    json_decref(j);
}
