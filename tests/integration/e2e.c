/* e2e.c — the main job end to end with real processes: producer XADD → Redis → bridge →
 * house → local HTTP upstream → reply stream. Every test starts its own redis-server, bridge,
 * house(s) and upstream on free loopback ports and stops them by PID. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(e2e, .init = h_init, .fini = h_fini, .timeout = 120);

typedef h_world world;

/* Redis, an upstream, a bridge (with extra args) and house `id`, connected. */
static void world_up(world *w, const char *id, const char *const *bridge_extra) {
    h_world_up(w, id, bridge_extra, NULL);
}

Test(e2e, get_with_headers_and_query) {
    world w;
    world_up(&w, "h1", NULL);
    h_request("h1", "get-1", "GET", "/echo?x=1&y=two",
              "{\"x-test\":\"yes\",\"accept\":\"application/json\"}", NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply("get-1", NULL, 15000, &r), "no final reply");
    cr_assert_eq(r.status, 200, "status %d error %s message %s", r.status, r.error ? r.error : "",
                 r.message ? r.message : "");
    cr_assert_null(r.error);
    const char *b = (const char *)r.body;
    cr_assert_str_eq(h_json_str(b, "method"), "GET");
    cr_assert_str_eq(h_json_str(b, "path"), "/echo");
    cr_assert(strstr(b, "\"x\": \"1\"") && strstr(b, "\"y\": \"two\""), "query lost: %s", b);
    cr_assert(strstr(b, "\"x-test\": \"yes\""), "request header lost: %s", b);
    cr_assert(strstr(b, "\"accept\": \"application/json\""), "accept header lost: %s", b);
    const char *ct = h_reply_header(&r, "content-type");
    cr_assert(ct && strcmp(ct, "application/json") == 0, "content-type %s", ct ? ct : "(none)");
    /* The upstream (Python) spells it "Content-type": reply header names are lower-cased. */
    cr_assert(strstr(r.headers, "\"content-type\":"), "names not lower-cased: %s", r.headers);
    h_reply_free(&r);
}

Test(e2e, post_put_delete_with_bodies) {
    world w;
    world_up(&w, "h1", NULL);
    /* POST: JSON body, checked through its sha256 at the upstream. */
    const char *json = "{\"hello\":\"world\"}";
    char sha[65];
    h_sha256_hex(json, strlen(json), sha);
    h_request("h1", "post-1", "POST", "/echo", "{\"content-type\":\"application/json\"}", json,
              strlen(json), 10000);
    /* PUT: binary with NULs and every byte value, echoed back raw. */
    uint8_t bin[512];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7);
    bin[0] = 0, bin[1] = 0, bin[100] = 0;
    h_request("h1", "put-1", "PUT", "/echo?raw=1",
              "{\"content-type\":\"application/octet-stream\"}", bin, sizeof bin, 10000);
    h_request("h1", "del-1", "DELETE", "/echo", NULL, NULL, 0, 10000);
    /* A non-2xx upstream status is a normal reply, not an error. */
    h_request("h1", "st-404", "GET", "/status/404", NULL, NULL, 0, 10000);

    h_reply r;
    cr_assert(h_wait_reply("post-1", NULL, 15000, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_json_str((char *)r.body, "method"), "POST");
    cr_assert_eq(h_json_int((char *)r.body, "body_len"), (long long)strlen(json));
    cr_assert_str_eq(h_json_str((char *)r.body, "body_sha256"), sha);
    h_reply_free(&r);

    cr_assert(h_wait_reply("put-1", NULL, 15000, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, sizeof bin, "binary body came back with %zu bytes", r.body_len);
    cr_assert(memcmp(r.body, bin, sizeof bin) == 0, "binary body changed in transit");
    h_reply_free(&r);

    cr_assert(h_wait_reply("del-1", NULL, 15000, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_json_str((char *)r.body, "method"), "DELETE");
    h_reply_free(&r);

    cr_assert(h_wait_reply("st-404", NULL, 15000, &r));
    cr_assert_eq(r.status, 404);
    cr_assert_null(r.error, "upstream 404 must not be an error reply");
    cr_assert(strstr((char *)r.body, "status 404"));
    h_reply_free(&r);
}

Test(e2e, five_mib_both_ways) {
    world w;
    world_up(&w, "h1", NULL);
    const size_t n = 5u << 20;
    uint8_t *up = h_prandom(n, "upload");
    char sha[65];
    h_sha256_hex(up, n, sha);
    /* Upload, hashed by the upstream. */
    h_request("h1", "big-up", "POST", "/echo", "{\"content-type\":\"application/octet-stream\"}",
              up, n, 60000);
    /* Upload and echo: 5 MiB each way in one exchange. */
    h_request("h1", "big-echo", "PUT", "/echo?raw=1",
              "{\"content-type\":\"application/octet-stream\"}", up, n, 60000);
    /* Download of deterministic bytes. */
    h_request("h1", "big-down", "GET", "/bytes/5242880?seed=s5", NULL, NULL, 0, 60000);

    h_reply r;
    cr_assert(h_wait_reply("big-up", NULL, 60000, &r), "no reply for the 5 MiB upload");
    cr_assert_eq(r.status, 200, "status %d %s %s", r.status, r.error ? r.error : "",
                 r.message ? r.message : "");
    cr_assert_eq(h_json_int((char *)r.body, "body_len"), (long long)n);
    cr_assert_str_eq(h_json_str((char *)r.body, "body_sha256"), sha);
    h_reply_free(&r);

    cr_assert(h_wait_reply("big-echo", NULL, 60000, &r), "no reply for the 5 MiB echo");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, n);
    cr_assert(memcmp(r.body, up, n) == 0, "echoed 5 MiB differ");
    cr_assert_gt(r.entries, 1, "a 5 MiB reply should arrive in several entries");
    h_reply_free(&r);

    uint8_t *want = h_prandom(n, "s5");
    cr_assert(h_wait_reply("big-down", NULL, 60000, &r), "no reply for the 5 MiB download");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, n, "download has %zu bytes", r.body_len);
    cr_assert(memcmp(r.body, want, n) == 0, "downloaded bytes differ");
    h_reply_free(&r);
    free(want);
    free(up);
}

Test(e2e, two_hundred_concurrent) {
    world w;
    world_up(&w, "h1", NULL);
    enum { N = 200 };
    char id[32], path[64], body[64];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "c-%d", i);
        snprintf(path, sizeof path, "/echo?n=%d", i);
        int bl = snprintf(body, sizeof body, "body of request %d", i);
        h_request("h1", id, i % 2 ? "POST" : "GET", path, NULL, i % 2 ? body : NULL,
                  i % 2 ? (size_t)bl : 0, 60000);
    }
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "c-%d", i);
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 60000, &r), "no reply for %s", id);
        cr_assert_eq(r.status, 200, "%s: status %d %s", id, r.status, r.message ? r.message : "");
        char want[32];
        snprintf(want, sizeof want, "\"n\": \"%d\"", i);
        cr_assert(strstr((char *)r.body, want), "%s got someone else's reply: %s", id, r.body);
        cr_assert_str_eq(h_json_str((char *)r.body, "method"), i % 2 ? "POST" : "GET");
        h_reply_free(&r);
    }
    /* Acknowledged after the replies: nothing stays pending. */
    cr_assert(h_wait(h_no_pending, "h1", 10000), "entries still pending: %d", h_xpending("h1"));
}

/* Request <prefix>-<i> was answered 200 by the upstream at host (its /headers echo). */
static void served_by(const char *prefix, int i, const char *host) {
    char id[32];
    h_reply r;
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    cr_assert(h_wait_reply(id, NULL, 20000, &r), "no reply for %s", id);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_json_str((char *)r.body, "host"), host, "%s served by the wrong house", id);
    h_reply_free(&r);
}

Test(e2e, two_houses_one_bridge) {
    world w;
    world_up(&w, "ha", NULL);
    int up2;
    h_upstream_start(&up2);
    char url2[64], sec2[65];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d", up2);
    h_register("hb", sec2);
    h_house_start("hb", sec2, w.bridge_port, url2, NULL);
    cr_assert(h_wait_connected("hb", 15000), "second house did not connect");
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "a-%d", i);
        h_request("ha", id, "GET", "/headers", NULL, NULL, 0, 15000);
        snprintf(id, sizeof id, "b-%d", i);
        h_request("hb", id, "GET", "/headers", NULL, NULL, 0, 15000);
    }
    char host_a[64], host_b[64];
    snprintf(host_a, sizeof host_a, "127.0.0.1:%d", w.up_port);
    snprintf(host_b, sizeof host_b, "127.0.0.1:%d", up2);
    for (int i = 0; i < 10; i++) {
        served_by("a", i, host_a);
        served_by("b", i, host_b);
    }
    /* Both live states name the same bridge. */
    redisReply *a = h_cmd("HGET gp:{ha}:state bridge"), *b = h_cmd("HGET gp:{hb}:state bridge");
    cr_assert(a->type == REDIS_REPLY_STRING && b->type == REDIS_REPLY_STRING);
    cr_assert_str_eq(a->str, b->str);
    freeReplyObject(a);
    freeReplyObject(b);
}

Test(e2e, house_restart_mid_run) {
    world w;
    world_up(&w, "h1", NULL);
    h_assert_get_ok("h1", "before", "/echo?when=before");

    h_stop(w.house);
    cr_assert(h_wait_offline("h1", 15000), "the bridge did not notice the house leaving");
    /* Requests sent while the house is away wait in its stream... */
    for (int i = 0; i < 5; i++) {
        char id[32], path[64];
        snprintf(id, sizeof id, "during-%d", i);
        snprintf(path, sizeof path, "/echo?during=%d", i);
        h_request("h1", id, "POST", path, NULL, "x", 1, 60000);
    }
    /* ... no reply while it is away ... */
    cr_assert_eq(h_int("EXISTS gp:rep:during-0"), 0, "a reply appeared with no house connected");
    /* ... and are served once it is back. */
    w.house = h_house_start("h1", w.secret, w.bridge_port, w.up_url, NULL);
    cr_assert(h_wait_connected("h1", 15000), "house did not reconnect");
    h_reply r;
    for (int i = 0; i < 5; i++) {
        char id[32], want[32];
        snprintf(id, sizeof id, "during-%d", i);
        snprintf(want, sizeof want, "\"during\": \"%d\"", i);
        cr_assert(h_wait_reply(id, NULL, 30000, &r),
                  "request %s sent while the house was down "
                  "was never served",
                  id);
        cr_assert_eq(r.status, 200, "%s: %d %s", id, r.status, r.message ? r.message : "");
        cr_assert(strstr((char *)r.body, want));
        h_reply_free(&r);
    }
    cr_assert(h_wait(h_no_pending, "h1", 10000), "entries still pending");
}

Test(e2e, reply_has_ttl_and_no_reply_wanted) {
    world w;
    const char *extra[] = {"--reply-ttl", "60", NULL};
    world_up(&w, "h1", extra);
    h_assert_get_ok("h1", "ttl-1", "/echo");
    long long ttl = h_int("PTTL gp:rep:ttl-1");
    cr_assert(ttl > 0 && ttl <= 60000, "reply key PTTL %lld, want (0, 60000]", ttl);

    /* A custom reply key of the reply family (a producer's own gp:rep:<producer>:...) is
     * honoured, with a TTL too. */
    h_xadd_get("h1", "custom-1", "/echo", "gp:rep:myapp:1");
    h_reply r;
    cr_assert(h_wait_reply("custom-1", "gp:rep:myapp:1", 15000, &r));
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);
    ttl = h_int("PTTL gp:rep:myapp:1");
    cr_assert(ttl > 0 && ttl <= 60000, "custom reply key PTTL %lld", ttl);

    /* reply "" : executed, acknowledged, nothing written. */
    h_xadd_tagged("h1", "fire-1", "GET", "/echo", NULL, NULL, "", 0);
    /* The upstream counts requests carrying X-Frame-Id: fire-1; ask it through the tunnel. */
    int hits = 0;
    for (int tries = 0; tries < 200 && hits < 1; tries++) {
        char id[32];
        snprintf(id, sizeof id, "hits-%d", tries);
        h_request("h1", id, "GET", "/hits?id=fire-1", NULL, NULL, 0, 10000);
        cr_assert(h_wait_reply(id, NULL, 15000, &r));
        hits = (int)h_json_int((char *)r.body, "hits");
        h_reply_free(&r);
    }
    cr_assert_eq(hits, 1, "fire-and-forget request ran %d times", hits);
    cr_assert_eq(h_int("EXISTS gp:rep:fire-1"), 0, "reply written although reply was empty");
    cr_assert(h_wait(h_no_pending, "h1", 10000), "entries still pending");
}

/* wss:// as the README shows it: a self-signed certificate made with openssl, the bridge
 * with --tls-cert/--tls-key, the house trusting it with --ca-file. */
Test(e2e, wss_with_self_signed_certificate) {
    world w;
    char cert[700], key[700];
    h_world_wss_up(&w, "tls1", NULL, cert, key);
    redisReply *t = h_cmd("HGET gp:{tls1}:state transport");
    cr_assert(t->type == REDIS_REPLY_STRING && strcmp(t->str, "wss") == 0,
              "transport is %s, want wss", t->type == REDIS_REPLY_STRING ? t->str : "(nil)");
    freeReplyObject(t);
    h_request("tls1", "tls-req", "GET", "/echo", NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply("tls-req", NULL, 15000, &r));
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);

    /* A house that does not trust the certificate never connects. */
    char sec2[65];
    h_register("tls2", sec2);
    char url[64];
    snprintf(url, sizeof url, "wss://localhost:%d/", w.bridge_port);
    h_proc *bad = h_house_start_url("tls2", sec2, url, w.up_url, NULL);
    cr_assert(h_wait_log(bad, "event=tls_verify_failed", 15000),
              "untrusted certificate: no failure");
    cr_assert_eq(h_int("EXISTS gp:{tls2}:state"), 0, "house connected to an untrusted bridge");
}

/* Sends a slow request, kills the bridge with -9 while the upstream works on it, starts a new
 * bridge on the same address and waits (30 s) for the reply into *r. */
static void kill9_mid_flight_path(world *w, const char *id, const char *path, h_reply *r) {
    char hdr[96];
    snprintf(hdr, sizeof hdr, "{\"x-frame-id\":\"%s\"}", id);
    h_request("h1", id, "GET", path, hdr, NULL, 0, 60000);
    h_hits_arg a = {w->up_port, id};
    cr_assert(h_wait(h_upstream_hit, &a, 10000), "request never reached the upstream");
    h_kill9(w->bridge); /* the upstream is still working on it */
    cr_assert_eq(h_int("EXISTS gp:rep:%s", id), 0, "reply written before the kill");
    w->bridge = h_bridge_start(w->bridge_port, NULL, NULL, 1);
    cr_assert(h_wait_log(w->bridge, "house_connected", 30000), "house did not reconnect");
    cr_assert(h_wait_reply(id, NULL, 30000, r), "request in flight during kill -9 was lost");
}

/* Frame id `id` sent twice to a fresh world's house, on reply keys gp:rep:<id>-a and -b (the
 * second once the first was answered when after_reply, else at once); check() judges both final
 * replies; the upstream must have run the frame id once. */
static void twice_runs_once(const char *id, const char *method, const char *path, const char *body,
                            int after_reply, void (*check)(const h_reply *r1, const h_reply *r2)) {
    world w;
    world_up(&w, "h1", NULL);
    char ka[96], kb[96];
    snprintf(ka, sizeof ka, "gp:rep:%s-a", id);
    snprintf(kb, sizeof kb, "gp:rep:%s-b", id);
    h_reply r1, r2;
    h_xadd_tagged("h1", id, method, path, body, NULL, ka, (size_t)-1);
    if (after_reply)
        cr_assert(h_wait_reply(id, ka, 15000, &r1), "%s: no first reply", id);
    h_xadd_tagged("h1", id, method, path, body, NULL, kb, (size_t)-1);
    if (!after_reply)
        cr_assert(h_wait_reply(id, ka, 15000, &r1), "%s: no first reply", id);
    cr_assert(h_wait_reply(id, kb, 15000, &r2), "%s: no second reply", id);
    check(&r1, &r2);
    h_reply_free(&r1);
    h_reply_free(&r2);
    cr_assert_eq(h_hits(w.up_port, id), 1, "%s: the frame id ran again", id);
}

/* A fresh world's house gets a slow request (path) whose bridge is killed -9 mid-flight;
 * check() judges the reply that comes after the new bridge took over; with once, the upstream
 * must have run the request once. */
static void kill9_case(const char *id, const char *path, int once,
                       void (*check)(const h_reply *r)) {
    world w;
    world_up(&w, "h1", NULL);
    h_reply r;
    kill9_mid_flight_path(&w, id, path, &r);
    check(&r);
    h_reply_free(&r);
    if (once)
        cr_assert_eq(h_hits(w.up_port, id), 1, "%s: the redelivered request ran again", id);
    cr_assert(h_wait(h_no_pending, "h1", 10000), "entry still pending");
}

static void slow_once(const h_reply *r) {
    cr_assert_eq(r->status, 200, "status %d %s %s", r->status, r->error ? r->error : "",
                 r->message ? r->message : "");
    cr_assert_str_eq((char *)r->body, "slow\n");
    cr_assert_eq(r->extra, 0, "more than one reply");
}

static void replay_unavailable(const h_reply *r) {
    h_assert_error_reply(r, 502, "replay_unavailable");
}

/* README.md, "Delivery guarantees": a bridge killed with kill -9 mid-flight loses nothing; the
 * house's pending entry is delivered again when it reconnects (to any bridge). */
Test(e2e, bridge_kill9_mid_flight_loses_nothing) {
    kill9_case("mid-1", "/slow?ms=1500", 0, slow_once);
}

/* README.md, "Delivery guarantees" (exactly-once effects at the house): a request delivered
 * again gets the remembered response instead of running twice — for the request that was in
 * flight when its bridge died. */
Test(e2e, redelivery_after_kill9_does_not_run_twice) {
    kill9_case("mid-2", "/slow?ms=1500", 1, slow_once);
}

static void same_answer(const h_reply *r1, const h_reply *r2) {
    cr_assert_eq(r1->status, 200);
    cr_assert_eq(r2->status, 200);
    cr_assert_eq(r1->body_len, r2->body_len);
    cr_assert(memcmp(r1->body, r2->body, r1->body_len) == 0, "the retry got a different body");
}

/* A producer retrying with the same frame id gets the remembered response: the upstream runs
 * the request once. */
Test(e2e, same_frame_id_answered_from_memory) {
    twice_runs_once("retry-1", "POST", "/echo", "payload", 1, same_answer);
}

static void both_slow(const h_reply *r1, const h_reply *r2) {
    cr_assert_eq(r1->status, 200);
    cr_assert_eq(r2->status, 200);
    cr_assert_str_eq((char *)r2->body, "slow\n");
}

/* The same frame id delivered twice at once (a producer retrying before the first reply, or
 * an XADD that Redis kept although its acknowledgement was lost): the second waits for the
 * first's call and gets its response; the upstream runs it once. */
Test(e2e, same_frame_id_twice_at_once_runs_once) {
    twice_runs_once("twin-1", "GET", "/slow?ms=300", NULL, 0, both_slow);
}

/* The call in flight when the bridge died returns a response too large for the house's memory
 * (over 1 MiB): the redelivery must not run it again, so the producer gets a clear 502
 * replay_unavailable instead of a second upstream call. */
Test(e2e, redelivery_of_unrememberable_response_is_502_not_a_rerun) {
    kill9_case("mid-big", "/slow?ms=1500&bytes=2000000", 1, replay_unavailable);
}

static void big_then_tombstone(const h_reply *r1, const h_reply *r2) {
    cr_assert_eq(r1->status, 200);
    cr_assert_eq(r1->body_len, 2000000);
    replay_unavailable(r2);
}

/* A request that already ran with a response too large to remember, delivered again after it
 * finished (here: a producer retrying the same frame id), is answered 502 replay_unavailable
 * from the house's tombstone; the upstream still runs it once. */
Test(e2e, rerun_of_unrememberable_response_is_502) {
    twice_runs_once("big-retry", "GET", "/bytes/2000000", NULL, 1, big_then_tombstone);
}

/* Liveness: with pings every 200 ms a quiet, healthy house stays connected across many
 * silence windows (3 intervals) — neither side mistakes its PINGs and PONGs for silence. */
Test(e2e, quiet_house_stays_connected) {
    world w;
    const char *fast[] = {"--ping-interval", "200", NULL};
    world_up(&w, "h1", fast);
    cr_assert_eq(h_wait_log(w.bridge, "event=house_timeout", 2500), 0,
                 "the bridge dropped a healthy house as silent");
    cr_assert_eq(h_log_count(w.house, "event=disconnected"), 0, "the house reconnected");
    cr_assert_eq(h_int("HGET gp:{h1}:state epoch"), 1);
}
