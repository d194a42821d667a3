/* replykey.c — what a producer's request may make the bridge write, and what a house may make
 * it say. A request's `reply` names its reply stream; the bridge writes only keys of the reply
 * family `<p>:rep:…`, never another key (the registry set, another house's hash, epoch or
 * request stream) and never a reply-family key that holds something other than a stream. A
 * refused request is settled and listed (recent list, log, metric) without being forwarded.
 * The house's recent list keeps bounded fields whatever a request carried. A house's response
 * with an impossible status or malformed header names/values never reaches a reply as such.
 * Real redis-server, bridge, houses and upstream on loopback ports; a raw WebSocket client
 * plays the hostile house. */
#include "../harness/world.h"

#include "auth.h"
#include "frame.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(replykey, .init = h_init, .fini = h_fini, .timeout = 120);

typedef h_world world;

/* Redis, an upstream and a bridge whose replies expire after 1 s (so that a TTL set on the
 * wrong key does its damage within the test) and whose admin port serves /metrics (the port:
 * h_admin_port(w.bridge)). */
static void world_up(world *w) {
    const char *extra[] = {"--reply-ttl", "1", "--admin-listen", "0", NULL};
    h_world_up(w, NULL, extra, NULL);
    cr_assert(h_admin_port(w->bridge), "the bridge logged no admin port");
}

static h_proc *house_up(world *w, const char *id, char secret[65]) {
    return h_house_up(w, id, secret, NULL);
}

static int stream_empty(void *house) {
    return h_int("XLEN gp:{%s}:req", (const char *)house) == 0;
}

/* A request of house `house` with the given reply field (binary: len), tagged with an
 * x-frame-id header so that the upstream counts it if it is ever forwarded. Waits until the
 * entry is settled (acknowledged and deleted). */
static void request_with_reply(const char *house, const char *frame_id, const char *reply,
                               size_t len) {
    h_xadd_tagged(house, frame_id, "GET", "/echo", NULL, "10000", reply, len);
    cr_assert(h_wait(stream_empty, (void *)house, 15000), "%s: request (reply %.60s) never settled",
              frame_id, reply);
}

static long long pttl(const char *key) {
    return h_int("PTTL %s", key);
}

static char *type_of(const char *key) {
    redisReply *r = h_cmd("TYPE %s", key);
    char *t = strdup(r->type == REDIS_REPLY_STATUS ? r->str : "?");
    freeReplyObject(r);
    return t;
}

/* The newest line of the house's recent list (malloc'd), or NULL. */
static char *recent_head(const char *house) {
    redisReply *r = h_cmd("LINDEX gp:{%s}:recent 0", house);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

/* The line of request `id` in the house's recent list (malloc'd), or NULL. */
static char *recent_of(const char *house, const char *id) {
    char needle[96];
    snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
    redisReply *r = h_cmd("LRANGE gp:{%s}:recent 0 -1", house);
    char *s = NULL;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !s; i++)
        if (strstr(r->element[i]->str, needle))
            s = strdup(r->element[i]->str);
    freeReplyObject(r);
    return s;
}

static long long upstream_hits(const char *house, const char *frame_id) {
    char q[128], id[64];
    snprintf(id, sizeof id, "hits-%s", frame_id);
    snprintf(q, sizeof q, "/hits?id=%s", frame_id);
    h_request(house, id, "GET", q, NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply(id, NULL, 15000, &r), "no answer from /hits");
    long long n = h_json_int((char *)r.body, "hits");
    h_reply_free(&r);
    return n;
}

/* --- reply keys outside the family are refused, nothing is written ---------------------- */

/* The registry set: a request with reply=gp:houses gave it a TTL, and `house list` came back
 * empty once it ran out. */
Test(replykey, registry_set_is_not_a_reply_key) {
    world w;
    world_up(&w);
    char sec[65];
    house_up(&w, "att", sec);
    cr_assert_eq(pttl("gp:houses"), -1);
    int refused = h_log_count(w.bridge, "reason=reply_key");
    request_with_reply("att", "reg-1", "gp:houses", (size_t)-1);
    cr_assert_eq(pttl("gp:houses"), -1, "the registry set got a TTL (PTTL %lld)",
                 pttl("gp:houses"));
    char *t = type_of("gp:houses");
    cr_assert_str_eq(t, "set", "gp:houses is a %s now", t);
    free(t);
    cr_assert(h_wait_log_n(w.bridge, "reason=reply_key", refused + 1, 5000),
              "no bad_request log line for the refused reply key");
    h_assert_serves("att", "reg-after"); /* time passes: a TTL of 1 s would have run out */
    char *out = NULL, *err = NULL;
    const char *args[] = {"house", "list", NULL};
    cr_assert_eq(h_cli(&out, NULL, &err, args), 0, "house list failed: %s", err ? err : "");
    cr_assert(out && strstr(out, "att"), "house list lost the house: '%s'", out ? out : "");
    free(out);
    free(err);
    /* Refused, listed, counted, never forwarded. */
    char *line = recent_of("att", "reg-1");
    cr_assert(line && strstr(line, "bad_reply"), "recent list: %s", line ? line : "(none)");
    cr_assert(strstr(line, "\"status\":400"), "recent list: %s", line);
    free(line);
    char *m = h_scrape(h_admin_port(w.bridge));
    cr_assert(m, "no /metrics");
    double n = h_metric(m, "gp_bridge_invalid_requests_total{reason=\"reply_key\"}");
    cr_assert_eq(n, 1, "invalid_requests_total{reason=\"reply_key\"} = %g", n);
    free(m);
    cr_assert_eq(upstream_hits("att", "reg-1"), 0, "a refused request was forwarded");
}

/* Another house's hash and epoch: the hash was deleted (its house then failed auth), the
 * epoch expired and fenced a connected house. */
static void other_house_key(const char *key, const char *type) {
    world w;
    world_up(&w);
    char sa[65], sv[65];
    house_up(&w, "att", sa);
    h_proc *vic = house_up(&w, "vic", sv);
    long long epoch = h_int("GET gp:{vic}:epoch");
    request_with_reply("att", "oh-1", key, (size_t)-1);
    long long t = pttl(key);
    cr_assert_eq(t, -1, "%s got a TTL or vanished (PTTL %lld)", key, t);
    char *ty = type_of(key);
    cr_assert_str_eq(ty, type, "%s is a %s now", key, ty);
    free(ty);
    redisReply *r = h_cmd("HGET gp:{vic}:house secret");
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, sv) == 0, "vic's secret changed");
    freeReplyObject(r);
    cr_assert_eq(h_int("GET gp:{vic}:epoch"), epoch, "vic's epoch changed");
    h_assert_serves("vic", "vic-1");
    cr_assert_eq(h_log_count(w.bridge, "event=house_fenced"), 0, "vic was fenced");
    /* It still authenticates: a fresh connection is welcomed. */
    h_stop(vic);
    cr_assert(h_wait_offline("vic", 15000), "vic's state not cleared");
    h_house_start("vic", sv, w.bridge_port, w.up_url, NULL);
    cr_assert(h_wait_connected("vic", 15000), "vic no longer authenticates");
    h_assert_serves("vic", "vic-2");
}

Test(replykey, other_house_hash_is_not_a_reply_key) {
    other_house_key("gp:{vic}:house", "hash");
}

Test(replykey, other_house_epoch_is_not_a_reply_key) {
    other_house_key("gp:{vic}:epoch", "string");
}

/* Another house's request stream: XADD MAXLEN ~ 1000 trimmed its backlog of 3,000 and the TTL
 * then dropped the rest. */
Test(replykey, other_house_backlog_is_not_a_reply_key) {
    world w;
    world_up(&w);
    char sa[65], sv[65];
    house_up(&w, "att", sa);
    h_register("vic", sv); /* offline: its requests wait */
    for (int i = 0; i < 3000; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        h_request("vic", id, "GET", "/echo", NULL, NULL, 0, 600000);
    }
    request_with_reply("att", "bl-1", "gp:{vic}:req", (size_t)-1);
    cr_assert_eq(h_int("XLEN gp:{vic}:req"), 3000, "vic's backlog changed: %lld entries",
                 h_int("XLEN gp:{vic}:req"));
    cr_assert_eq(pttl("gp:{vic}:req"), -1, "vic's request stream got a TTL");
}

/* A key of the reply family that holds something else: no TTL, unchanged; a stream's reply
 * goes through; a request whose reply key is refused still settles. */
Test(replykey, family_key_of_another_type_is_left_alone) {
    world w;
    world_up(&w);
    char sa[65];
    h_proc *b = w.bridge;
    house_up(&w, "att", sa);
    freeReplyObject(h_cmd("SET gp:rep:alice:str keep-me"));
    freeReplyObject(h_cmd("HSET gp:rep:alice:hash f v"));
    int failed = h_log_count(b, "event=reply_failed");
    request_with_reply("att", "fam-1", "gp:rep:alice:str", (size_t)-1);
    request_with_reply("att", "fam-2", "gp:rep:alice:hash", (size_t)-1);
    cr_assert(h_wait_log_n(b, "event=reply_failed", failed + 2, 5000), "refused writes not logged");
    cr_assert_eq(pttl("gp:rep:alice:str"), -1, "a string in the family got a TTL");
    cr_assert_eq(pttl("gp:rep:alice:hash"), -1, "a hash in the family got a TTL");
    redisReply *r = h_cmd("GET gp:rep:alice:str");
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "keep-me") == 0, "string changed");
    freeReplyObject(r);
    cr_assert_eq(h_int("HLEN gp:rep:alice:hash"), 1, "hash changed");
    char *m = h_scrape(h_admin_port(w.bridge));
    cr_assert(m, "no /metrics");
    double n = h_metric(m, "gp_bridge_reply_failures_total{reason=\"wrong_type\"}");
    cr_assert_eq(n, 2, "reply_failures_total{reason=\"wrong_type\"} = %g", n);
    free(m);
    h_assert_serves("att", "fam-after");
}

/* A reply-family stream that exists without a TTL was made by its producer (a long-lived
 * inbox): the bridge appends the reply but neither trims it nor gives it a TTL, so another
 * producer naming it in `reply` cannot make it expire or shrink. One the bridge created (it
 * has a TTL) is trimmed and its TTL refreshed as usual. */
Test(replykey, producer_owned_stream_keeps_its_entries_and_no_ttl) {
    world w;
    world_up(&w);
    char sa[65];
    house_up(&w, "own", sa);
    /* alice's inbox: 1,500 entries, no TTL (over the bridge's MAXLEN ~ 1000). */
    for (int i = 0; i < 1500; i++)
        freeReplyObject(h_cmd("XADD gp:rep:alice:inbox * n %d", i));
    long long before = h_int("XLEN gp:rep:alice:inbox");
    request_with_reply("own", "own-1", "gp:rep:alice:inbox", (size_t)-1);
    redisReply *x = h_cmd("XREVRANGE gp:rep:alice:inbox + - COUNT 1");
    cr_assert(x->type == REDIS_REPLY_ARRAY && x->elements == 1, "the inbox is empty");
    const redisReply *fv = x->element[0]->element[1];
    int got = 0;
    for (size_t i = 0; i + 1 < fv->elements; i += 2)
        got |= !strcmp(fv->element[i]->str, "id") && !strcmp(fv->element[i + 1]->str, "own-1");
    freeReplyObject(x);
    cr_assert(got, "the reply is not the inbox's newest entry");
    cr_assert_eq(pttl("gp:rep:alice:inbox"), -1, "the producer's inbox got a TTL");
    cr_assert_eq(h_int("XLEN gp:rep:alice:inbox"), before + 1, "the inbox was trimmed");
    h_reply r;
    /* A reply key the bridge creates still gets its TTL. */
    request_with_reply("own", "own-2", "gp:rep:alice:own-2", (size_t)-1);
    cr_assert(h_wait_reply("own-2", "gp:rep:alice:own-2", 15000, &r), "no reply");
    h_reply_free(&r);
    long long t = pttl("gp:rep:alice:own-2");
    cr_assert(t > 0 && t <= 1000, "a key the bridge created: PTTL %lld", t);
}

/* What the contract allows: a producer-bound family gp:rep:<producer>:<anything> and the
 * default gp:rep:<id>. Malformed keys are refused whatever their prefix. */
Test(replykey, producer_family_and_malformed_keys) {
    world w;
    world_up(&w);
    char sa[65];
    house_up(&w, "att", sa);
    h_xadd_get("att", "pf-1", "/echo?p=1", "gp:rep:alice:pf-1");
    h_reply r;
    cr_assert(h_wait_reply("pf-1", "gp:rep:alice:pf-1", 15000, &r), "no reply in alice's family");
    cr_assert_eq(r.status, 200, "status %d error %s", r.status, r.error ? r.error : "-");
    h_reply_free(&r);
    cr_assert_gt(pttl("gp:rep:alice:pf-1"), 0, "a reply without its TTL");
    h_field d[] = {
        {"id", "pf-2", (size_t)-1}, {"method", "GET", (size_t)-1}, {"path", "/echo", (size_t)-1}};
    h_xadd("att", d, 3);
    cr_assert(h_wait_reply("pf-2", NULL, 15000, &r), "no reply on the default key gp:rep:pf-2");
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);

    char longkey[300];
    memset(longkey, 'k', sizeof longkey);
    memcpy(longkey, "gp:rep:", 7);
    struct {
        const char *key;
        size_t len;
    } bad[] = {{"gp:rep:", 7},      {"gp:rep", 6},       {"rep:x", 5},
               {"gp:rep:a\nb", 10}, {"gp:rep:a\0b", 10}, {longkey, sizeof longkey},
               {"gp:REP:x", 8}};
    size_t nbad = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < nbad; i++) {
        char id[32];
        snprintf(id, sizeof id, "mk-%zu", i);
        request_with_reply("att", id, bad[i].key, bad[i].len);
        char *line = recent_head("att");
        cr_assert(line && strstr(line, id) && strstr(line, "bad_reply"), "key %zu: recent %s", i,
                  line ? line : "(none)");
        free(line);
    }
    cr_assert_eq(h_int("EXISTS gp:rep:"), 0, "the empty-suffix key was written");
    cr_assert_eq(h_int("EXISTS gp:rep"), 0);
    cr_assert_eq(h_int("EXISTS rep:x"), 0);
    cr_assert_eq(h_int("EXISTS gp:REP:x"), 0);
    char *m = h_scrape(h_admin_port(w.bridge));
    cr_assert(m, "no /metrics");
    double n = h_metric(m, "gp_bridge_invalid_requests_total{reason=\"reply_key\"}");
    cr_assert_eq(n, (double)nbad, "invalid_requests_total{reason=\"reply_key\"} = %g", n);
    free(m);
    h_assert_serves("att", "mk-after");
}

/* The janitor answers the requests of houses nobody holds: the same rule for their keys. */
Test(replykey, janitor_keeps_to_the_family_too) {
    world w;
    world_up(&w);
    char sec[65];
    h_register("away", sec); /* registered, never connected */
    h_xadd_req("away", &(h_req){.id = "jan-1",
                                .method = "GET",
                                .path = "/echo",
                                .timeout_ms = "300",
                                .reply = "gp:houses"});
    h_request("away", "jan-2", "GET", "/echo", NULL, NULL, 0, 300);
    h_reply r;
    cr_assert(h_wait_reply("jan-2", NULL, 15000, &r), "no 504 from the janitor");
    cr_assert_eq(r.status, 504);
    h_reply_free(&r);
    cr_assert(h_wait(stream_empty, "away", 15000), "the janitor left an entry");
    cr_assert_eq(pttl("gp:houses"), -1, "the janitor gave the registry set a TTL");
    char *t = type_of("gp:houses");
    cr_assert_str_eq(t, "set");
    free(t);
    char *line = recent_of("away", "jan-1");
    cr_assert(line && strstr(line, "bad_reply"), "recent: %s", line ? line : "(none)");
    free(line);
}

/* In a Redis Cluster the reply key lives in another slot than the house's keys: the reply
 * script is routed by it, and a refused key is refused there too. */
Test(replykey, cluster_reply_keys) {
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    int up_port, bport;
    h_upstream_start(&up_port);
    char up_url[64], sec[65];
    snprintf(up_url, sizeof up_url, "http://127.0.0.1:%d", up_port);
    h_bridge_start(0, &bport, NULL, 1);
    h_register("att", sec);
    h_house_start("att", sec, bport, up_url, NULL);
    cr_assert(h_wait_connected("att", 20000), "house did not connect");
    /* Keys on several nodes: each gets its reply. */
    for (int i = 0; i < 6; i++) {
        char id[32], key[64];
        snprintf(id, sizeof id, "cl-%d", i);
        snprintf(key, sizeof key, "gp:rep:p%d:%s", i, id);
        h_field f[] = {{"id", id, (size_t)-1},
                       {"method", "GET", (size_t)-1},
                       {"path", "/echo", (size_t)-1},
                       {"reply", key, (size_t)-1}};
        h_xadd("att", f, 4);
        h_reply r;
        cr_assert(h_wait_reply(id, key, 15000, &r), "%s: no reply on %s", id, key);
        cr_assert_eq(r.status, 200);
        h_reply_free(&r);
        cr_assert_gt(h_int("PTTL %s", key), 0, "%s without its TTL", key);
    }
    request_with_reply("att", "cl-bad", "gp:houses", (size_t)-1);
    cr_assert_eq(h_int("PTTL gp:houses"), -1, "the registry set got a TTL");
    freeReplyObject(h_cmd("SET gp:rep:p0:str keep"));
    request_with_reply("att", "cl-str", "gp:rep:p0:str", (size_t)-1);
    cr_assert_eq(h_int("PTTL gp:rep:p0:str"), -1, "a string in the family got a TTL");
    h_assert_serves("att", "cl-after");
}

/* --- the recent list keeps bounded fields ----------------------------------------------- */

Test(replykey, recent_fields_are_bounded) {
    world w;
    world_up(&w);
    char sa[65];
    house_up(&w, "att", sa);
    size_t big = 1u << 20;
    char *method = malloc(big), *path = malloc(big);
    memset(method, 'M', big);
    memset(path, 'p', big);
    path[0] = '/';
    h_field f[] = {{"id", "big-1", (size_t)-1}, {"method", method, big}, {"path", path, big}};
    h_xadd("att", f, 3);
    free(method);
    free(path);
    h_reply r;
    cr_assert(h_wait_reply("big-1", NULL, 15000, &r), "no reply to the 1 MiB method");
    cr_assert_eq(r.status, 400);
    h_reply_free(&r);
    cr_assert(h_wait(stream_empty, "att", 15000), "never settled");
    char *line = recent_head("att");
    cr_assert(line, "no recent entry");
    cr_assert_lt(strlen(line), 1024, "recent entry of %zu bytes", strlen(line));
    printf("replykey=recent_bounded entry_bytes=%zu method_bytes=%zu path_bytes=%zu\n",
           strlen(line), big, big);
    fflush(stdout);
    cr_assert(strstr(line, "\"id\":\"big-1\""), "recent: %s", line);
    cr_assert(strstr(line, "MMMM"), "the method is not shown at all: %s", line);
    free(line);
}

/* --- a hostile house's response --------------------------------------------------------- */

/* The next frame of `type` the bridge sends on fd (PINGs and others skipped); its stream, or
 * 0. A REQ_HEAD's frame id goes to frame_id. */
static uint32_t next_frame(int fd, gp_framer *fr, uint8_t type, char *frame_id, size_t cap) {
    uint64_t end = h_now_ms() + 15000;
    while (h_now_ms() < end) {
        gp_frame f;
        int k = gp_framer_next(fr, &f);
        cr_assert_geq(k, 0, "bad frame from the bridge");
        if (k == 1) {
            if (f.type == type && type == GP_FRAME_REQ_HEAD)
                snprintf(frame_id, cap, "%.*s", (int)f.u.req_head.frame_id.len,
                         (const char *)f.u.req_head.frame_id.p);
            if (f.type == type)
                return f.stream;
            continue;
        }
        uint8_t *msg = NULL;
        int closed = 0;
        long n = h_ws_recv(fd, &msg, 1000, &closed);
        cr_assert(n != -1, "the bridge closed the hostile house's connection");
        if (n > 0)
            cr_assert_eq(gp_framer_feed(fr, msg, (size_t)n), 0);
        free(msg);
    }
    return 0;
}

static void send_head(int fd, uint32_t stream, unsigned status, gp_header *h, size_t nh,
                      const char *error, const char *message) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_HEAD;
    f.flags = GP_FLAG_FIN;
    f.stream = stream;
    f.u.resp_head.status = (uint16_t)status;
    f.u.resp_head.headers = h;
    f.u.resp_head.nheaders = nh;
    f.u.resp_head.error = gp_str_c(error);
    f.u.resp_head.message = gp_str_c(message);
    cr_assert_eq(h_ws_send_frame(fd, &f), 0);
}

static gp_header hdr(const char *n, const char *v) {
    return (gp_header){gp_str_c(n), gp_str_c(v)};
}

/* A world with a real house "good" and a raw client authenticated as house "evil". */
typedef struct evil {
    world w;
    int fd;
    gp_framer *fr;
} evil;

static void evil_up(evil *e) {
    world_up(&e->w);
    char sg[65], se[65];
    house_up(&e->w, "good", sg);
    h_register("evil", se);
    uint8_t secret[32];
    cr_assert_eq(gp_secret_from_hex(se, secret), 0);
    e->fd = h_ws_connect(e->w.bridge_port, NULL, 0);
    cr_assert(e->fd >= 0);
    int code, st;
    cr_assert_eq(h_ws_auth(e->fd, "evil", secret, &code, NULL, 0, &st), GP_FRAME_WELCOME);
    cr_assert(h_wait_connected("evil", 5000));
    e->fr = gp_framer_new(GP_DEFAULT_MAX_FRAME);
}

/* Sends request `id` to evil and returns the stream the bridge forwarded it on. */
static uint32_t evil_request(evil *e, const char *id) {
    char fid[64];
    h_request("evil", id, "GET", "/x", NULL, NULL, 0, 10000);
    uint32_t s = next_frame(e->fd, e->fr, GP_FRAME_REQ_HEAD, fid, sizeof fid);
    cr_assert(s, "%s: never forwarded", id);
    cr_assert_str_eq(fid, id);
    return s;
}

static void evil_down(evil *e) {
    gp_framer_free(e->fr);
    close(e->fd);
    h_assert_serves("good", "after-evil");
}

static double metric(const world *w, const char *key) {
    char *m = h_scrape(h_admin_port(w->bridge));
    cr_assert(m, "no /metrics");
    double v = h_metric(m, key);
    free(m);
    return v;
}

/* The bridge logged needle (within 5 s) and counts n bad responses of `reason` (and n2 of
 * reason2 when not NULL); then the evil house goes. */
static void evil_down_counted(evil *e, const char *needle, const char *reason, int n,
                              const char *reason2, int n2) {
    cr_assert(h_wait_log(e->w.bridge, needle, 5000), "no bad_response log line");
    for (int k = 0; k < 2; k++) {
        const char *r = k ? reason2 : reason;
        if (!r)
            continue;
        char key[128];
        snprintf(key, sizeof key, "gp_bridge_bad_responses_total{reason=\"%s\"}", r);
        cr_assert_eq(metric(&e->w, key), k ? n2 : n, "%s", key);
    }
    evil_down(e);
}

/* Impossible statuses: a 502 bad_response instead, whether a body was announced or not. */
Test(replykey, hostile_house_status_is_checked) {
    evil e;
    evil_up(&e);
    unsigned statuses[] = {0, 65535, 99, 600};
    for (size_t i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "st-%zu", i);
        uint32_t s = evil_request(&e, id);
        send_head(e.fd, s, statuses[i], NULL, 0, "", "");
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 10000, &r), "%s: no reply", id);
        cr_assert_eq(r.status, 502, "status %u came out as %d", statuses[i], r.status);
        cr_assert(r.error && strcmp(r.error, "bad_response") == 0, "error %s",
                  r.error ? r.error : "-");
        cr_assert(r.message && *r.message, "no message");
        cr_assert_eq(r.entries, 1);
        h_reply_free(&r);
    }
    /* A head that announces a body: the house gets a CANCEL, its body frames are ignored. */
    uint32_t s = evil_request(&e, "st-body");
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_HEAD;
    f.stream = s;
    f.u.resp_head.body_len = 5;
    cr_assert_eq(h_ws_send_frame(e.fd, &f), 0);
    cr_assert_eq(next_frame(e.fd, e.fr, GP_FRAME_CANCEL, NULL, 0), s, "no CANCEL for the body");
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_RESP_BODY;
    f.flags = GP_FLAG_FIN;
    f.stream = s;
    f.u.body.data = gp_str_c("hello");
    cr_assert_eq(h_ws_send_frame(e.fd, &f), 0);
    h_reply r;
    cr_assert(h_wait_reply("st-body", NULL, 10000, &r), "no reply");
    cr_assert_eq(r.status, 502);
    cr_assert_eq(r.body_len, 0, "the body of a bad response reached the reply");
    h_reply_free(&r);
    evil_down_counted(&e, "reason=status", "status", 5, NULL, 0);
}

/* Malformed header names and values are dropped; the rest of the response stands. */
Test(replykey, hostile_house_headers_are_checked) {
    evil e;
    evil_up(&e);
    uint32_t s = evil_request(&e, "hd-1");
    gp_header hs[] = {hdr("x-ok", "fine"),   hdr("x-tab", "a\tb"),
                      hdr("Bad Name", "v1"), hdr("x-crlf\r\nset-cookie", "v2"),
                      hdr("", "v3"),         hdr("x-inject", "a\r\nSet-Cookie: sid=1"),
                      hdr("x-lf", "a\nb"),   hdr("x-esc", "\x1b]0;title\x07"),
                      hdr("x-del", "a\x7f")};
    send_head(e.fd, s, 200, hs, sizeof hs / sizeof hs[0], "", "");
    h_reply r;
    cr_assert(h_wait_reply("hd-1", NULL, 10000, &r), "no reply");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_reply_header(&r, "x-ok"), "fine");
    cr_assert_str_eq(h_reply_header(&r, "x-tab"), "a\tb");
    cr_assert(!strstr(r.headers, "v1") && !strstr(r.headers, "v2") && !strstr(r.headers, "v3"),
              "a malformed header name passed: %s", r.headers);
    cr_assert(!strstr(r.headers, "x-inject") && !strstr(r.headers, "x-lf") &&
                  !strstr(r.headers, "x-esc") && !strstr(r.headers, "x-del"),
              "a header value with control bytes passed: %s", r.headers);
    h_reply_free(&r);
    evil_down_counted(&e, "event=bad_response", "header_name", 3, "header_value", 4);
}

/* A house's error string of 60 KB: the recent list keeps a bounded one. */
Test(replykey, hostile_house_error_is_bounded_in_recent) {
    evil e;
    evil_up(&e);
    uint32_t s = evil_request(&e, "er-1");
    char *err = malloc(60000);
    memset(err, 'e', 59999);
    err[59999] = '\0';
    send_head(e.fd, s, 502, NULL, 0, err, "m");
    free(err);
    h_reply r;
    cr_assert(h_wait_reply("er-1", NULL, 10000, &r), "no reply");
    cr_assert_eq(r.status, 502);
    h_reply_free(&r);
    cr_assert(h_wait(stream_empty, "evil", 10000));
    char *line = recent_of("evil", "er-1");
    cr_assert(line && strlen(line) < 1024, "recent entry: %zu bytes", line ? strlen(line) : 0);
    cr_assert(strstr(line, "eeee"), "the error is not shown at all: %s", line);
    free(line);
    evil_down(&e);
}
