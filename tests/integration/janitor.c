/* janitor.c — requests to houses nobody holds get their 504 after their deadline, whatever
 * lies ahead of them in the stream (long deadlines first, short ones behind), through the
 * janitor's deadline index; and a house's keys (its janitor index, its rudp_ts) go with
 * `house rm` / `--purge` / the API's DELETE: after a house was used every way that leaves
 * keys, `house rm --purge` leaves none with its hash tag in the whole keyspace. Also a cost note,
 * printed, not asserted: Redis commands per janitor pass with a 10,000-entry backlog and with none
 * (INFO commandstats). */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(janitor, .init = h_init, .fini = h_fini, .timeout = 180);

static const char *req_timeout(const char *house, const char *fid, unsigned timeout_ms) {
    char reply[96], t[16];
    snprintf(reply, sizeof reply, "gp:rep:%s", fid);
    snprintf(t, sizeof t, "%u", timeout_ms);
    return h_xadd_req(
        house,
        &(h_req){.id = fid, .method = "GET", .path = "/echo", .timeout_ms = t, .reply = reply});
}

/* For h_wait: the count Redis answers to fmt (one %s: the house) is want. */
struct count_is {
    const char *fmt, *house;
    long long want;
};
static int count_is(void *ud) {
    struct count_is *c = ud;
    return h_int(c->fmt, c->house) == c->want;
}
#define ZCARD "ZCARD gp:{%s}:deadlines"
#define XLEN "XLEN gp:{%s}:req"

/* The numbers: 50 requests of 24 h at the head of an offline house's stream, then 5
 * of 2 s. Each of the 5 gets its 504 within 10 s of its deadline; the 50 are left alone. */
Test(janitor, long_deadlines_ahead_do_not_hide_expired_requests) {
    h_redis_start(0);
    int bport;
    h_bridge_start(0, &bport, NULL, 1);
    char secret[65];
    h_register("away", secret); /* registered, never connected */
    for (int i = 0; i < 50; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "long-%d", i);
        req_timeout("away", fid, 86400000);
    }
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < 5; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "short-%d", i);
        req_timeout("away", fid, 2000);
    }
    int got = 0;
    for (int i = 0; i < 5; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "short-%d", i);
        int left = (int)(t0 + 2000 + 10000 - h_now_ms());
        h_reply r;
        if (h_wait_reply(fid, NULL, left > 0 ? left : 1, &r)) {
            cr_assert_eq(r.status, 504, "%s: status %d", fid, r.status);
            cr_assert(r.error && strcmp(r.error, "timeout") == 0, "%s: error %s", fid,
                      r.error ? r.error : "-");
            got++;
        }
        h_reply_free(&r);
    }
    cr_assert_eq(got, 5, "%d of 5 short requests got their 504 within 10 s of the deadline", got);
    /* A reply is written before its entry is acknowledged and deleted: the last XDEL may
     * follow the last reply by a moment. */
    struct count_is xl = {XLEN, "away", 50};
    cr_assert(h_wait(count_is, &xl, 5000),
              "the 24 h requests are not all still waiting (XLEN %lld)",
              h_int("XLEN gp:{away}:req"));
    cr_assert_gt(h_int("PTTL gp:{away}:deadlines"), 0, "the index has no TTL");
    cr_assert_gt(h_int("PTTL gp:{away}:jcursor"), 0, "the cursor has no TTL");
    /* The answered ones leave the index on a later pass, once their entries are gone. */
    struct count_is z = {ZCARD, "away", 50};
    cr_assert(h_wait(count_is, &z, 10000),
              "the index does not come to hold exactly the 50 waiting requests");
    /* None of the long ones was answered. */
    cr_assert_eq(h_int("EXISTS gp:rep:long-0"), 0);
    cr_assert_eq(h_int("EXISTS gp:rep:long-49"), 0);
}

/* A request whose house id was never registered (a typo) is owed its 504 too, and a request
 * whose house comes back before its deadline is served, not answered by the janitor. */
Test(janitor, unregistered_and_returning_houses) {
    h_redis_start(0);
    int bport, up;
    h_bridge_start(0, &bport, NULL, 1);
    h_upstream_start(&up);
    /* A cursor that is not an entry id (someone's hand edit) is read as "from the start". */
    freeReplyObject(h_cmd("SET gp:{typo}:jcursor not-an-id"));
    for (int i = 0; i < 3; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "typo-long-%d", i);
        req_timeout("typo", fid, 86400000);
    }
    req_timeout("typo", "typo-short", 1000);
    h_reply r;
    cr_assert(h_wait_reply("typo-short", NULL, 15000, &r), "no 504 for an unregistered house");
    cr_assert_eq(r.status, 504);
    h_reply_free(&r);

    char secret[65], url[64];
    h_register("back", secret);
    req_timeout("back", "back-late", 86400000);
    req_timeout("back", "back-soon", 1500);
    cr_assert(h_wait_reply("back-soon", NULL, 15000, &r), "no 504 for back-soon");
    cr_assert_eq(r.status, 504);
    h_reply_free(&r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", up);
    h_house_start("back", secret, bport, url, NULL);
    cr_assert(h_wait_connected("back", 15000));
    cr_assert(h_wait_reply("back-late", NULL, 15000, &r), "the returning house was not served");
    cr_assert_eq(r.status, 200, "back-late: %d %s", r.status, r.error ? r.error : "");
    h_reply_free(&r);
}

static int cli_ok(const char *const *args) {
    char *out = NULL, *err = NULL;
    size_t n = 0;
    int rc = h_cli(&out, &n, &err, args);
    free(out), free(err);
    return rc;
}

/* rudp_ts (and, with the stream, the janitor's index) go with the house: CLI and API. */
Test(janitor, rm_removes_every_key_of_the_house) {
    h_redis_start(0);
    char secret[65];
    const char *ids[] = {"rm-a", "rm-b", "rm-c"};
    for (int i = 0; i < 3; i++) {
        h_register(ids[i], secret);
        freeReplyObject(h_cmd("SET gp:{%s}:rudp_ts 1700000000000", ids[i]));
        req_timeout(ids[i], ids[i], 86400000);
        freeReplyObject(h_cmd("ZADD gp:{%s}:deadlines 1 0-1", ids[i]));
        freeReplyObject(h_cmd("SET gp:{%s}:jcursor 0-1", ids[i]));
        /* An L3 address (index i + 1 of the pools), as a bridge gives one: <p>:tun is not the
         * house's slot, and removal frees it too. */
        freeReplyObject(h_cmd("HSET gp:tun i:%d %s h:%s %d", i + 1, ids[i], ids[i], i + 1));
    }
    const char *rm[] = {"house", "rm", "rm-a", NULL};
    cr_assert_eq(cli_ok(rm), 0);
    cr_assert_eq(h_int("EXISTS gp:{rm-a}:rudp_ts"), 0, "house rm left rudp_ts");
    cr_assert_eq(h_int("HEXISTS gp:tun h:rm-a"), 0, "house rm kept the L3 index");
    cr_assert_eq(h_int("HEXISTS gp:tun i:1"), 0, "house rm kept the L3 index");
    cr_assert_eq(h_int("EXISTS gp:{rm-a}:req"), 1, "house rm deleted the stream");
    cr_assert_eq(h_int("EXISTS gp:{rm-a}:deadlines"), 1, "house rm dropped a kept stream's index");

    const char *purge[] = {"house", "rm", "rm-b", "--purge", NULL};
    cr_assert_eq(cli_ok(purge), 0);
    cr_assert_eq(h_int("EXISTS gp:{rm-b}:rudp_ts"), 0, "house rm --purge left rudp_ts");
    cr_assert_eq(h_int("EXISTS gp:{rm-b}:req"), 0);
    cr_assert_eq(h_int("EXISTS gp:{rm-b}:deadlines"), 0, "--purge left the janitor's index");
    cr_assert_eq(h_int("EXISTS gp:{rm-b}:jcursor"), 0, "--purge left the janitor's cursor");

    /* The API's DELETE (same Lua, the bridge's side). */
    const char *tok = h_path("admin.token");
    h_write_file(tok, "rm-token-for-the-janitor-suite\n", 0600); /* the bridge refuses others' */
    const char *extra[] = {"--admin-listen", "0", "--admin-token-file", tok, NULL};
    int bport;
    h_proc *b = h_bridge_start(0, &bport, extra, 1);
    int aport = h_admin_port(b);
    cr_assert(aport, "no admin port");
    char *body = NULL;
    int st =
        h_http(aport, "DELETE", "/api/houses/rm-c",
               "Authorization: Bearer rm-token-for-the-janitor-suite\r\n", NULL, 0, &body, NULL);
    cr_assert_eq(st, 200, "DELETE: %d %s", st, body ? body : "");
    free(body);
    cr_assert_eq(h_int("EXISTS gp:{rm-c}:house"), 0);
    cr_assert_eq(h_int("EXISTS gp:{rm-c}:rudp_ts"), 0, "the API's DELETE left rudp_ts");
    cr_assert_eq(h_int("HEXISTS gp:tun h:rm-c"), 0, "the API's DELETE kept the L3 index");
    cr_assert_eq(h_int("HEXISTS gp:tun i:3"), 0, "the API's DELETE kept the L3 index");
}

/* The keys holding `tag` ("{house}") among ALL keys of the server (KEYS *: a test's own
 * Redis), as one sorted, space-separated line (malloc'd). */
static char *keys_with(const char *tag) {
    redisReply *r = h_cmd("KEYS *");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    char **k = calloc(r->elements + 1, sizeof *k);
    size_t n = 0, len = 1;
    for (size_t i = 0; i < r->elements; i++)
        if (strstr(r->element[i]->str, tag))
            len += strlen(k[n++] = r->element[i]->str) + 1;
    for (size_t i = 0; i + 1 < n; i++) /* a few keys: a selection sort will do */
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(k[j], k[i]) < 0) {
                char *t = k[i];
                k[i] = k[j], k[j] = t;
            }
    char *out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, " ");
        strcat(out, k[i]);
    }
    free(k);
    freeReplyObject(r);
    return out;
}

/* The bridge's stats (rewritten every second) say it holds no house. */
static int bridge_holds_none(void *ud) {
    (void)ud;
    redisReply *r = h_cmd("HGET gp:bstats:b1 houses");
    int none = r->type == REDIS_REPLY_STRING && strcmp(r->str, "0") == 0;
    freeReplyObject(r);
    return none;
}

static int has_history(void *ud) {
    return h_int("EXISTS gp:{%s}:hist", (const char *)ud) == 1;
}

static int has_deadline(void *ud) {
    return h_int("ZCARD gp:{%s}:deadlines", (const char *)ud) >= 1;
}

/* A house used in every way that leaves keys — connected over rudp:// (state, epoch, rudp_ts),
 * served requests (stream, recent list, request history), requests waiting while it was away (the
 * janitor's index and cursor) — then `house rm --purge` while it is connected: afterwards no key of
 * the whole keyspace carries its hash tag, also once its bridge has let it go. */
Test(janitor, rm_purge_leaves_no_key_of_a_used_house) {
    h_redis_start(0);
    int up;
    h_upstream_start(&up);
    char upurl[64], secret[65], pub[65], rurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    int bport;
    setenv("GP_HISTORY_FLUSH_MS", "1000", 1); /* its request history, written every second */
    h_proc *b = h_rudp_bridge_start(&bport, rurl, pub);
    h_register("used", secret);
    const char *hx[] = {"--bridge-key", pub, NULL};
    h_proc *house = h_house_start_url("used", secret, rurl, upurl, hx);
    cr_assert(h_wait_connected("used", 15000), "the house did not connect over rudp");
    h_reply r;
    h_request("used", "used-1", "GET", "/echo", NULL, NULL, 0, 10000);
    cr_assert(h_wait_reply("used-1", NULL, 15000, &r) && r.status == 200, "used-1 not served");
    h_reply_free(&r);
    /* Away: a request waits, and the janitor indexes it. */
    h_stop(house);
    cr_assert(h_wait_offline("used", 15000));
    req_timeout("used", "used-2", 86400000);
    cr_assert(h_wait(has_deadline, "used", 20000), "the janitor did not index the stream");
    /* Back: the waiting request is served. */
    house = h_house_start_url("used", secret, rurl, upurl, hx);
    cr_assert(h_wait_connected("used", 15000), "the house did not come back");
    cr_assert(h_wait_reply("used-2", NULL, 15000, &r) && r.status == 200, "used-2 not served");
    h_reply_free(&r);

    /* A TCP stream's byte keys, as an opener and the bridge leave them (no script names
     * them: per stream). */
    freeReplyObject(h_cmd("XADD gp:{used}:sin:s1 * off 0 data x"));
    freeReplyObject(h_cmd("XADD gp:{used}:sout:s1 * ack 1"));
    cr_assert(h_wait(has_history, "used", 10000), "the bridge wrote no history of the house");
    char *before = keys_with("{used}");
    const char *kinds[] = {"house",     "state",   "epoch",  "recent",  "req", "rudp_ts",
                           "deadlines", "jcursor", "sin:s1", "sout:s1", "hist"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        char k[64];
        snprintf(k, sizeof k, "gp:{used}:%s", kinds[i]);
        cr_assert(strstr(before, k), "the test did not create %s: %s", k, before);
    }
    const char *purge[] = {"house", "rm", "used", "--purge", NULL};
    cr_assert_eq(cli_ok(purge), 0);
    char *after = keys_with("{used}");
    cr_assert_str_eq(after, "", "house rm --purge left: %s (before: %s)", after, before);
    free(after);
    /* The bridge closes the house and lets it go: nothing comes back. */
    cr_assert(h_wait_log(b, "house_closed_by_admin", 10000), "the bridge kept the house");
    cr_assert(h_wait(bridge_holds_none, NULL, 10000), "the bridge still holds the house");
    after = keys_with("{used}");
    cr_assert_str_eq(after, "", "keys came back once the bridge let go: %s (before: %s)", after,
                     before);
    free(after);
    free(before);
}

/* INFO commandstats: calls of `name` (0 when never called). */
static long long calls_of(const char *name) {
    redisReply *r = h_cmd("INFO commandstats");
    long long n = 0;
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", name);
    const char *p = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
                        ? strstr(r->str, needle)
                        : NULL;
    if (p)
        n = atoll(p + strlen(needle));
    freeReplyObject(r);
    return n;
}

static int scans_reach(void *ud) {
    return calls_of("scan") >= *(int *)ud;
}

/* Commands Redis ran during `passes` janitor passes (one SCAN each), the bridge's other
 * traffic (stats, lease) included: a note for people, not an assertion. */
static void measure(const char *label, int passes) {
    freeReplyObject(h_cmd("CONFIG RESETSTAT"));
    cr_assert(h_wait(scans_reach, &passes, 30000), "no %d janitor passes in 30 s", passes);
    const char *names[] = {"evalsha", "scan", "hget", "xrange", "zrangebyscore", "zadd", "set"};
    char line[512];
    size_t o = (size_t)snprintf(line, sizeof line, "janitor cost, %s, %d passes:", label, passes);
    for (size_t i = 0; i < sizeof names / sizeof *names && o < sizeof line; i++)
        o += (size_t)snprintf(line + o, sizeof line - o, " %s=%lld", names[i], calls_of(names[i]));
    redisReply *r = h_cmd("INFO commandstats");
    const char *e = strstr(r->str, "cmdstat_evalsha:");
    long long usec = e && strstr(e, "usec=") ? atoll(strstr(e, "usec=") + 5) : -1;
    freeReplyObject(r);
    fprintf(stderr, "%s; scripts (lock + due): %lld us of Redis CPU in all\n", line, usec);
}

Test(janitor, cost_note_backlog_vs_empty) {
    h_redis_start(0);
    int bport;
    h_bridge_start(0, &bport, NULL, 1);
    char secret[65];
    h_register("quiet", secret);
    req_timeout("quiet", "quiet-1", 86400000);
    struct count_is z1 = {ZCARD, "quiet", 1};
    cr_assert(h_wait(count_is, &z1, 15000), "the janitor did not index the quiet house");
    measure("1 waiting request", 5);

    /* 10,000 waiting requests of 24 h, added in one pipeline-free loop. */
    for (int i = 0; i < 10000; i++) {
        char fid[32];
        snprintf(fid, sizeof fid, "bk-%d", i);
        req_timeout("quiet", fid, 86400000);
    }
    uint64_t t0 = h_now_ms();
    struct count_is z2 = {ZCARD, "quiet", 10001};
    cr_assert(h_wait(count_is, &z2, 60000), "the janitor did not index the backlog in 60 s");
    fprintf(stderr, "janitor: 10,000 new entries indexed within %llu ms\n",
            (unsigned long long)(h_now_ms() - t0));
    measure("10,001 waiting requests", 5);
}

/* The same on a 3-node Redis Cluster: houses whose keys live on different nodes, each with
 * long requests ahead of short ones; the index stays in each house's slot. */
Test(janitor, cluster_long_deadlines_ahead) {
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    int bport;
    h_bridge_start(0, &bport, NULL, 1);
    static const char *const ids[] = {"h1", "h2", "h3", "h4"};
    uint64_t t0 = h_now_ms();
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 50; i++) {
            char fid[32];
            snprintf(fid, sizeof fid, "%s-long-%d", ids[k], i);
            req_timeout(ids[k], fid, 86400000);
        }
        for (int i = 0; i < 2; i++) {
            char fid[32];
            snprintf(fid, sizeof fid, "%s-short-%d", ids[k], i);
            req_timeout(ids[k], fid, 2000);
        }
    }
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++) {
            char fid[32];
            snprintf(fid, sizeof fid, "%s-short-%d", ids[k], i);
            int left = (int)(t0 + 2000 + 10000 - h_now_ms());
            h_reply r;
            cr_assert(h_wait_reply(fid, NULL, left > 0 ? left : 1, &r),
                      "%s: no 504 within 10 s of its deadline on the cluster", fid);
            cr_assert_eq(r.status, 504);
            h_reply_free(&r);
        }
    for (int k = 0; k < 4; k++) {
        struct count_is xl = {XLEN, ids[k],
                              50}; /* the last XDEL may follow the last reply a moment */
        cr_assert(h_wait(count_is, &xl, 5000), "%s: XLEN %lld, want 50", ids[k],
                  h_int("XLEN gp:{%s}:req", ids[k]));
    }
}
