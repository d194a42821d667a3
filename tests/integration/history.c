/* history.c — the request history (bridge/store/store_hist.h, bridge/admin/hist.c) and its JSON
 * API (bridge/admin/api_hist.c, ADMIN.md "History") against real processes: a house's requests
 * counted per minute into its hash, the bridge's and every bridge's; what the API answers for
 * each range; nothing written for an idle house; a house removed loses its history and does
 * not get it back; the script adding into hostile values; hostile values read back (skipped
 * and counted); a house moving to another bridge keeps one history, the first bridge's share
 * written by its shutdown; what the bridge listens on (GET /api/listeners); and what it all
 * costs Redis, counted with MONITOR. Real redis-server, bridges, houses and upstream on
 * loopback ports. */
#include "../../bridge/store/store_hist.h"
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(history, .init = h_init, .fini = h_fini, .timeout = 120);

#define TOKEN "t0ken-for-the-history-tests"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

/* --- helpers ---------------------------------------------------------------------------- */

/* A bridge `id` with the admin port and the token; flush_ms NULL: the default (a minute). */
static h_proc *bridge(const char *id, int *port, int *aport, const char *flush_ms) {
    const char *extra[] = {"--admin-listen",
                           "0",
                           "--admin-token",
                           TOKEN,
                           "--bridge-id",
                           id,
                           "--ping-interval",
                           "300",
                           NULL,
                           NULL,
                           NULL};
    if (flush_ms)
        extra[8] = "--history-flush-ms", extra[9] = flush_ms;
    h_proc *b = h_bridge_start(0, port, extra, 1);
    if (aport) {
        *aport = h_admin_port(b);
        cr_assert(*aport, "the bridge logged no admin port");
    }
    return b;
}

/* GET path on the admin port with the token: the status, the body parsed into *out (NULL when
 * it is not JSON). */
static int api_get(int aport, const char *path, json_t **out) {
    char *body = NULL;
    int st = h_http(aport, "GET", path, AUTH, NULL, 0, &body, NULL);
    json_error_t je;
    *out = body ? json_loads(body, 0, &je) : NULL;
    free(body);
    return st;
}

static long long total_of(json_t *o, const char *field) {
    return json_integer_value(json_object_get(json_object_get(o, "total"), field));
}

/* Requests, one after another, each answered: n POSTs of a 100-byte body to /echo, then m
 * GETs of /status/503 (errors). */
static void traffic(const char *house, const char *tag, int n, int m) {
    static const char body[101] = "0123456789012345678901234567890123456789012345678901234567890123"
                                  "456789012345678901234567890123456789";
    for (int i = 0; i < n + m; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", tag, i);
        if (i < n)
            h_request(house, id, "POST", "/echo", NULL, body, 100, 10000);
        else
            h_request(house, id, "GET", "/status/503", NULL, NULL, 0, 10000);
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 15000, &r), "no reply to %s", id);
        cr_assert_eq(r.status, i < n ? 200 : 503, "%s: %d", id, r.status);
        h_reply_free(&r);
    }
}

typedef struct want {
    int aport;
    const char *path;
    long long requests;
} want;

/* The API's total for w->path reached w->requests. */
static int total_reached(void *ud) {
    const want *w = ud;
    json_t *o;
    int st = api_get(w->aport, w->path, &o);
    int ok = st == 200 && total_of(o, "requests") >= w->requests;
    json_decref(o);
    return ok;
}

static long long hour_now(void) {
    redisReply *t = h_cmd("TIME");
    long long s = atoll(t->element[0]->str);
    freeReplyObject(t);
    return s / 3600;
}

/* The history script (GP_HIST_ADD_LUA) run by hand for house: slot, hour, minute, record. Its
 * integer answer (1 written, 0 not). */
static long long add(const char *house, const char *slot, const char *hour, const char *minute,
                     const char *rec) {
    char k1[128], k2[128];
    snprintf(k1, sizeof k1, "gp:{%s}:hist", house);
    snprintf(k2, sizeof k2, "gp:{%s}:house", house);
    const char *argv[] = {"EVAL", GP_HIST_ADD_LUA, "2", k1,        k2, slot,
                          hour,   minute,          rec, "90000000"};
    redisReply *r = h_cmdv(10, argv, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "EVAL: %s", r->str ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* --- tests ------------------------------------------------------------------------------ */

/* One house's requests, errors, bytes each way and latencies: in its hash (field and TTL as
 * the layout says), in the API for 1 h, 6 h and 24 h, in the bridge's and every bridge's
 * history; an idle house gets no key and the bridge writes nothing while all are idle; a
 * house removed through the API loses its history and gets none back. */
Test(history, house_and_bridge_history) {
    h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char up[64], sec[65], sec2[65];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    int port, aport;
    bridge("hb1", &port, &aport, "1000");
    h_register("farm-h", sec);
    h_register("farm-idle", sec2);
    h_house_start("farm-h", sec, port, up, NULL);
    h_house_start("farm-idle", sec2, port, up, NULL);
    cr_assert(h_wait_connected("farm-h", 15000) && h_wait_connected("farm-idle", 15000));

    uint64_t t0 = h_now_ms();
    traffic("farm-h", "h", 9, 3);
    want w = {aport, "/api/houses/farm-h/history", 12};
    cr_assert(h_wait(total_reached, &w, 10000), "the house's history did not reach 12 requests");
    fprintf(stderr, "history: 12 requests written and read back %llu ms after the first\n",
            (unsigned long long)(h_now_ms() - t0));

    json_t *o;
    cr_assert_eq(api_get(aport, "/api/houses/farm-h/history", &o), 200);
    cr_assert_str_eq(json_string_value(json_object_get(o, "scope")), "house");
    cr_assert_str_eq(json_string_value(json_object_get(o, "id")), "farm-h");
    cr_assert_str_eq(json_string_value(json_object_get(o, "range")), "1h");
    cr_assert_eq(json_integer_value(json_object_get(o, "step_s")), 60);
    cr_assert_eq(json_integer_value(json_object_get(o, "flush_ms")), 1000);
    json_t *pts = json_object_get(o, "points");
    cr_assert_eq(json_array_size(pts), 60);
    cr_assert_eq(total_of(o, "requests"), 12);
    cr_assert_eq(total_of(o, "errors"), 3);
    cr_assert_eq(total_of(o, "bytes_to_house"), 900, "9 bodies of 100 bytes to the house");
    cr_assert_gt(total_of(o, "bytes_from_house"), 900, "the echoes and the 503s' bodies");
    cr_assert_eq(total_of(o, "latency_samples"), 12);
    double p50 = json_real_value(json_object_get(json_object_get(o, "total"), "p50_ms"));
    double p99 = json_real_value(json_object_get(json_object_get(o, "total"), "p99_ms"));
    cr_assert(p50 > 0 && p99 >= p50 && p99 < 10000, "p50 %.3f ms, p99 %.3f ms", p50, p99);
    fprintf(stderr, "history: p50 %.3f ms, p99 %.3f ms, error_pct %.2f\n", p50, p99,
            json_real_value(json_object_get(json_object_get(o, "total"), "error_pct")));
    /* The points add up to the total, the last one is now's minute. */
    long long sum = 0;
    for (size_t i = 0; i < json_array_size(pts); i++)
        sum += json_integer_value(json_object_get(json_array_get(pts, i), "requests"));
    cr_assert_eq(sum, 12);
    long long last_t = json_integer_value(json_object_get(json_array_get(pts, 59), "t_ms"));
    long long now = json_integer_value(json_object_get(o, "now_ms"));
    cr_assert(last_t <= now && now < last_t + 60000, "last point %lld, now %lld", last_t, now);
    json_decref(o);

    const struct {
        const char *q;
        size_t points;
    } ranges[] = {{"?range=24h", 144}, {"?range=6h", 72}, {"?range=1h&x=1", 60}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/houses/farm-h/history%s", ranges[i].q);
        cr_assert_eq(api_get(aport, path, &o), 200, "%s", path);
        cr_assert_eq(json_array_size(json_object_get(o, "points")), ranges[i].points, "%s", path);
        cr_assert_eq(total_of(o, "requests"), 12, "%s", path);
        json_decref(o);
    }
    /* The bridge's own, and every bridge's (one here). */
    cr_assert_eq(api_get(aport, "/api/bridges/hb1/history", &o), 200);
    cr_assert_str_eq(json_string_value(json_object_get(o, "scope")), "bridge");
    cr_assert_eq(total_of(o, "requests"), 12);
    cr_assert_eq(total_of(o, "bytes_to_house"), 900);
    json_decref(o);
    cr_assert_eq(api_get(aport, "/api/history?range=24h", &o), 200);
    cr_assert_str_eq(json_string_value(json_object_get(o, "scope")), "all");
    cr_assert(json_is_null(json_object_get(o, "id")));
    cr_assert_eq(total_of(o, "requests"), 12);
    json_decref(o);
    cr_assert_eq(api_get(aport, "/api/bridges/gone/history", &o), 200, "a bridge with none");
    cr_assert_eq(total_of(o, "requests"), 0);
    json_decref(o);

    /* Refusals. */
    cr_assert_eq(api_get(aport, "/api/houses/farm-h/history?range=2h", &o), 400);
    cr_assert_str_eq(json_string_value(json_object_get(o, "error")), "bad_request");
    json_decref(o);
    cr_assert_eq(api_get(aport, "/api/houses/no-such/history", &o), 404);
    json_decref(o);
    cr_assert_eq(api_get(aport, "/api/houses/bad!id/history", &o), 400);
    json_decref(o);
    char *body = NULL;
    cr_assert_eq(h_http(aport, "GET", "/api/history", NULL, NULL, 0, &body, NULL), 401);
    free(body);
    cr_assert_eq(h_http(aport, "POST", "/api/history", AUTH, "{}", 2, &body, NULL), 405);
    free(body);

    /* The layout: field = hour mod 25, its value the hour's records; a TTL of 25 h. */
    long long hour = hour_now();
    char field[16], head[32];
    snprintf(field, sizeof field, "%lld", hour % GP_HIST_SLOTS);
    redisReply *r = h_cmd("HGET gp:{farm-h}:hist %s", field);
    if (r->type != REDIS_REPLY_STRING) { /* the hour turned since: the records are in the last */
        freeReplyObject(r);
        hour--;
        snprintf(field, sizeof field, "%lld", hour % GP_HIST_SLOTS);
        r = h_cmd("HGET gp:{farm-h}:hist %s", field);
    }
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    snprintf(head, sizeof head, "%lld;", hour);
    cr_assert(strncmp(r->str, head, strlen(head)) == 0, "field %s: %s", field, r->str);
    fprintf(stderr, "history: gp:{farm-h}:hist %s = %s\n", field, r->str);
    freeReplyObject(r);
    long long ttl = h_int("PTTL gp:{farm-h}:hist");
    cr_assert(ttl > 25LL * 3600000 - 60000 && ttl <= 25LL * 3600000, "PTTL %lld", ttl);
    cr_assert_leq(h_int("HLEN gp:{farm-h}:hist"), 2);
    long long mem = h_int("MEMORY USAGE gp:{farm-h}:hist");
    fprintf(stderr, "history: MEMORY USAGE gp:{farm-h}:hist %lld bytes\n", mem);

    /* Idle: no key for the idle house; nothing written while every house is idle. */
    redisReply *before = h_cmd("HGETALL gp:bhist:hb1");
    uint64_t idle_until = h_now_ms() + 3500;
    while (h_now_ms() < idle_until)
        usleep(100000);
    redisReply *after = h_cmd("HGETALL gp:bhist:hb1");
    cr_assert_eq(before->elements, after->elements);
    for (size_t i = 0; i < before->elements; i++)
        cr_assert_str_eq(before->element[i]->str, after->element[i]->str,
                         "the bridge's history changed while every house was idle");
    freeReplyObject(before);
    freeReplyObject(after);
    cr_assert_eq(h_int("EXISTS gp:{farm-idle}:hist"), 0, "an idle house got a history key");

    /* Removed: the history goes with the house and does not come back. */
    cr_assert_eq(h_http(aport, "DELETE", "/api/houses/farm-h", AUTH, NULL, 0, &body, NULL), 200);
    free(body);
    cr_assert_eq(h_int("EXISTS gp:{farm-h}:hist"), 0, "the API's DELETE left the history");
    uint64_t until = h_now_ms() + 2500;
    while (h_now_ms() < until)
        usleep(100000);
    cr_assert_eq(h_int("EXISTS gp:{farm-h}:hist"), 0, "the history came back after rm");
}

/* The script (store_hist.h) adding a minute into what Redis holds: two writes of one minute
 * add up, buckets merged in order; another hour in the slot is replaced; a house that is not
 * registered gets nothing; garbage in a record counts as 0, and the bridge's own writes go on
 * over it. Then hostile values read back through the API: skipped, counted, 200. */
Test(history, hostile_values) {
    h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char up[64], sec[65];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    int port, aport;
    bridge("hb1", &port, &aport, "1000");
    h_register("farm-x", sec);

    /* The script alone. */
    cr_assert_eq(add("farm-x", "3", "480003", "7", "2 1 10 20 5:1,9:1"), 1);
    cr_assert_eq(add("farm-x", "3", "480003", "8", "1 0 0 0"), 1);
    cr_assert_eq(add("farm-x", "3", "480003", "7", "3 0 1 2 7:2,9:4,200:1"), 1);
    redisReply *r = h_cmd("HGET gp:{farm-x}:hist 3");
    cr_assert_str_eq(r->str, "480003;7 5 1 11 22 5:1,7:2,9:5,200:1;8 1 0 0 0");
    freeReplyObject(r);
    cr_assert_eq(h_int("PTTL gp:{farm-x}:hist") > 89000000, 1);
    /* The slot's next use, 25 h later: replaced whole. */
    cr_assert_eq(add("farm-x", "3", "480028", "1", "4 0 0 0"), 1);
    r = h_cmd("HGET gp:{farm-x}:hist 3");
    cr_assert_str_eq(r->str, "480028;1 4 0 0 0");
    freeReplyObject(r);
    /* No registry hash: nothing. */
    cr_assert_eq(add("nobody", "3", "480028", "1", "4 0 0 0"), 0);
    cr_assert_eq(h_int("EXISTS gp:{nobody}:hist"), 0);
    /* Garbage in the minute being merged: what is not a whole number >= 0 counts as 0. */
    freeReplyObject(h_cmd("HSET gp:{farm-x}:hist 3 %s", "480028;1 x y -5 \xff 7:z,q"));
    cr_assert_eq(add("farm-x", "3", "480028", "1", "4 1 2 3 6:1"), 1);
    r = h_cmd("HGET gp:{farm-x}:hist 3");
    cr_assert_str_eq(r->str, "480028;1 4 1 2 3 6:1", "garbage counted as 0");
    freeReplyObject(r);

    /* Every slot of the hash holding garbage for this hour and the next, the bridge's writes
     * going on over it: its requests are counted all the same. */
    long long hour = hour_now();
    freeReplyObject(h_cmd("DEL gp:{farm-x}:hist"));
    for (long long hh = hour; hh <= hour + 1; hh++) {
        char v[4096];
        int o = snprintf(v, sizeof v, "%lld", hh);
        for (int m = 0; m < 60; m++)
            o += snprintf(v + o, sizeof v - (size_t)o, ";%d x y z w 999:abc", m);
        freeReplyObject(h_cmd("HSET gp:{farm-x}:hist %lld %s", hh % GP_HIST_SLOTS, v));
    }
    h_house_start("farm-x", sec, port, up, NULL);
    cr_assert(h_wait_connected("farm-x", 15000));
    traffic("farm-x", "x", 4, 0);
    want w = {aport, "/api/houses/farm-x/history", 4};
    cr_assert(h_wait(total_reached, &w, 10000), "the requests were not counted over garbage");
    json_t *o;
    cr_assert_eq(api_get(aport, "/api/houses/farm-x/history", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 4);
    cr_assert_eq(total_of(o, "latency_samples"), 4);
    cr_assert_gt(json_integer_value(json_object_get(o, "skipped")), 50,
                 "the garbage records are counted");
    json_decref(o);

    /* Values that are not records at all, and a key of another type. */
    freeReplyObject(h_cmd("HSET gp:{farm-x}:hist 20 %b 21 %s 22 %s", "\x00\x01\xff", (size_t)3,
                          "99999999999999999999999;1 1 1 1 1", "not an hour"));
    cr_assert_eq(api_get(aport, "/api/houses/farm-x/history?range=24h", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 4);
    json_decref(o);
    freeReplyObject(h_cmd("DEL gp:bhist:weird"));
    freeReplyObject(h_cmd("SET gp:bhist:weird x"));
    cr_assert_eq(api_get(aport, "/api/bridges/weird/history", &o), 200, "a key of another type");
    cr_assert_eq(json_integer_value(json_object_get(o, "skipped")), 1);
    json_decref(o);
}

/* A house that moves from one bridge to another within the hour has one history: the first
 * bridge (writing once a minute) writes its share when it is stopped, the second its own;
 * each bridge's history holds its share, every bridge's both. */
Test(history, house_moved_between_bridges) {
    h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char up[64], sec[65];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    int p1, p2, a2;
    h_proc *b1 = bridge("hb1", &p1, NULL, NULL); /* the default: a minute */
    bridge("hb2", &p2, &a2, "1000");
    h_register("farm-m", sec);
    char u1[64], u2[64];
    snprintf(u1, sizeof u1, "ws://127.0.0.1:%d/", p1);
    snprintf(u2, sizeof u2, "ws://127.0.0.1:%d/", p2);
    h_house_start_url("farm-m", sec, u1, up,
                      (const char *const[]){"--bridge", u2, "--reconnect-max-ms", "1000", NULL});
    cr_assert(h_wait_connected("farm-m", 15000));
    redisReply *r = h_cmd("HGET gp:{farm-m}:state bridge");
    cr_assert_str_eq(r->str, "hb1");
    freeReplyObject(r);
    traffic("farm-m", "m1", 5, 0);
    cr_assert_eq(h_int("EXISTS gp:{farm-m}:hist"), 0, "hb1 writes once a minute, not yet");

    h_stop(b1); /* drains: the house moves; its history is written on the way out */
    cr_assert_gt(h_int("EXISTS gp:bhist:hb1"), 0, "hb1's shutdown did not write its history");
    cr_assert(h_wait_connected("farm-m", 15000));
    r = h_cmd("HGET gp:{farm-m}:state bridge");
    cr_assert_str_eq(r->str, "hb2");
    freeReplyObject(r);
    traffic("farm-m", "m2", 0, 2);
    want w = {a2, "/api/houses/farm-m/history", 7};
    cr_assert(h_wait(total_reached, &w, 10000), "one history of 5 + 2 requests");
    json_t *o;
    cr_assert_eq(api_get(a2, "/api/houses/farm-m/history", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 7);
    cr_assert_eq(total_of(o, "errors"), 2);
    json_decref(o);
    cr_assert_eq(api_get(a2, "/api/bridges/hb1/history", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 5);
    json_decref(o);
    cr_assert_eq(api_get(a2, "/api/bridges/hb2/history", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 2);
    json_decref(o);
    cr_assert_eq(api_get(a2, "/api/history", &o), 200);
    cr_assert_eq(total_of(o, "requests"), 7);
    json_decref(o);
}

/* GET /api/listeners: the house listener (ws here: no certificate), rudp with the public key
 * houses need, the front door, each with the port really bound. */
Test(history, listeners) {
    h_redis_start(0);
    char keyf[600], udp[16], *out = NULL, *err = NULL;
    snprintf(keyf, sizeof keyf, "%s", h_path("rudp.key"));
    cr_assert_eq(h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", keyf, NULL}),
                 0, "rudp-keygen: %s", err);
    char pub[65];
    snprintf(pub, sizeof pub, "%.64s", out);
    free(out), free(err);
    snprintf(udp, sizeof udp, "%d", h_free_port());
    int port;
    h_proc *b = h_bridge_start(0, &port,
                               (const char *const[]){"--admin-listen", "0", "--admin-token", TOKEN,
                                                     "--bridge-id", "hb-l", "--rudp-listen", udp,
                                                     "--rudp-key", keyf, "--http-listen", "0",
                                                     "--http-public", NULL},
                               1);
    int aport = h_admin_port(b), hport = h_listen_port(b, "http");
    cr_assert(aport && hport);
    json_t *o;
    cr_assert_eq(api_get(aport, "/api/listeners", &o), 200);
    cr_assert_str_eq(json_string_value(json_object_get(o, "bridge")), "hb-l");
    cr_assert_eq(json_integer_value(json_object_get(o, "history_flush_ms")), 60000);
    json_t *ls = json_object_get(o, "listeners");
    cr_assert_eq(json_array_size(ls), 3, "%s", json_dumps(o, 0));
    const struct {
        const char *kind, *scheme, *bind;
        int port;
        const char *key;
    } exp[] = {{"house", "ws", "127.0.0.1", port, NULL},
               {"house", "rudp", "127.0.0.1", atoi(udp), pub},
               {"http", "http", "127.0.0.1", hport, NULL}};
    for (size_t i = 0; i < 3; i++) {
        json_t *l = json_array_get(ls, i);
        cr_assert_str_eq(json_string_value(json_object_get(l, "kind")), exp[i].kind);
        cr_assert_str_eq(json_string_value(json_object_get(l, "scheme")), exp[i].scheme);
        cr_assert_str_eq(json_string_value(json_object_get(l, "bind")), exp[i].bind);
        cr_assert_eq(json_integer_value(json_object_get(l, "port")), exp[i].port);
        if (exp[i].key)
            cr_assert_str_eq(json_string_value(json_object_get(l, "key")), exp[i].key);
        else
            cr_assert(json_is_null(json_object_get(l, "key")));
    }
    json_decref(o);
}

/* MONITOR lines read from c until `until_ms` (h_now_ms): the history scripts among them, by
 * the key they write: a house's (gp:{...}:hist), a bridge's (gp:bhist:...), every bridge's; and
 * any other command sent on a history key (none expected). */
typedef struct cost {
    int house, bridge, all, other_hist;
} cost;

static void watch(redisContext *c, uint64_t until_ms, cost *n) {
    while (h_now_ms() < until_ms) {
        struct timeval tv = {0, 200000};
        redisSetTimeout(c, tv);
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            cr_assert(c->err == REDIS_ERR_IO, "MONITOR: %s", c->errstr);
            c->err = 0; /* a read timeout: go on */
            continue;
        }
        const char *l = r->str ? r->str : "";
        if (strstr(l, " lua] ")) {
            /* the commands a script runs (HGET, HSET, PEXPIRE): not commands sent */
        } else if (strstr(l, "\"EVALSHA\"") || strstr(l, "\"EVAL\"")) {
            if (strstr(l, "}:hist\""))
                n->house++;
            else if (strstr(l, "\"gp:bhist:"))
                n->bridge++;
            else if (strstr(l, "\"gp:hist\""))
                n->all++;
        } else if (strstr(l, "hist")) {
            fprintf(stderr, "history cost: another command on a history key: %s\n", l);
            n->other_hist++;
        }
        freeReplyObject(r);
    }
}

/* The cost in Redis, counted with MONITOR: six houses connected, two of them with a request:
 * each flush with traffic sends one script per house that had traffic and two for the bridge
 * (its own history and every bridge's), nothing else; while every house is idle, nothing. */
Test(history, redis_cost) {
    h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char up[64];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    int port;
    bridge("hb1", &port, NULL, "1000");
    char ids[6][16], sec[65];
    for (int i = 0; i < 6; i++) {
        snprintf(ids[i], sizeof ids[i], "farm-c%d", i);
        h_register(ids[i], sec);
        h_house_start(ids[i], sec, port, up, NULL);
    }
    for (int i = 0; i < 6; i++)
        cr_assert(h_wait_connected(ids[i], 15000), "%s did not connect", ids[i]);
    char err[256];
    redisContext *mon = h_redis_connect(h_redis_port(), 5000, err, sizeof err);
    cr_assert(mon, "%s", err);
    redisReply *r = redisCommand(mon, "MONITOR");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    cost busy = {0}, idle = {0};
    traffic("farm-c1", "c1", 1, 0);
    traffic("farm-c4", "c4", 1, 0);
    watch(mon, h_now_ms() + 2500, &busy); /* two flushes at most */
    fprintf(stderr,
            "history cost: 6 houses, 2 with a request: %d house scripts, %d of the bridge, %d of "
            "every bridge\n",
            busy.house, busy.bridge, busy.all);
    cr_assert_eq(busy.house, 2, "one script per house with traffic");
    cr_assert(busy.bridge == busy.all && (busy.bridge == 1 || busy.bridge == 2),
              "the bridge's: %d and %d", busy.bridge, busy.all);
    cr_assert_eq(busy.other_hist, 0);
    watch(mon, h_now_ms() + 3000, &idle);
    fprintf(stderr, "history cost: 6 idle houses for 3 s: %d scripts\n",
            idle.house + idle.bridge + idle.all);
    cr_assert_eq(idle.house + idle.bridge + idle.all + idle.other_hist, 0,
                 "history written while every house was idle");
    redisFree(mon);
}
