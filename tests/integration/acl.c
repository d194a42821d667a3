/* acl.c — the least-privilege Redis users of deploy/redis-users.acl against real processes:
 * a redis-server that loads that very file (placeholder passwords replaced), a bridge and the
 * CLI each logged in as their own user, a house and its upstream, and producers speaking
 * RESP with AUTH.
 *
 * The bridge and the CLI log in with their role's user in the Redis URL
 * (redis://user:pw@host, rediss:// when the suite runs with TLS: make test runs it again with
 * GP_TEST_REDIS=auth+tls, so these users also stand behind a password and TLS).
 *
 * Every refusal is checked twice: the role's user gets NOPERM, and a user with broader rules
 * (`~* &* +@all`) does not, so each check can fail. */
#include "../harness/harness.h"
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(acl, .init = h_init, .fini = h_fini, .timeout = 120);

#define ACL_FILE "deploy/redis-users.acl"

/* The test copy of the shipped file: every ">CHANGE-ME-<role>" becomes ">pw-<role>"; the
 * `default` user (off in the shipped file) becomes the harness's own unrestricted client;
 * the example producer app1 gets a twin, app2, with the same rules on its own reply keys;
 * `extra` lines are appended. Returns its path (static buffer). */
static const char *acl_copy(const char *extra) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/users.acl", h_dir());
    size_t len;
    char *src = h_read_file(ACL_FILE, &len);
    cr_assert(src, "cannot read %s", ACL_FILE);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    int users = 0;
    for (char *line = strtok(src, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "user default ", 13) == 0) {
            /* The harness's own client, with its password when the mode has one. */
            const char *pw = h_redis_password();
            fprintf(f, "user default on %s%s ~* &* +@all\n", pw ? ">" : "nopass", pw ? pw : "");
            continue;
        }
        users += strncmp(line, "user ", 5) == 0;
        /* The example producer twice: as itself and as a second tenant, app2. */
        int copies = strncmp(line, "user gp-producer-app1 ", 22) == 0 ? 2 : 1;
        for (int k = 0; k < copies; k++) {
            for (char *p = line; *p; p++) {
                if (strncmp(p, ">CHANGE-ME-", 11) == 0) {
                    fputs(">pw-", f);
                    p += 10;
                } else if (k == 1 && strncmp(p, "app1", 4) == 0) {
                    fputs("app2", f);
                    p += 3;
                } else {
                    fputc(*p, f);
                }
            }
            fputc('\n', f);
        }
    }
    if (extra)
        fputs(extra, f);
    fclose(f);
    free(src);
    cr_assert_geq(users, 4, "want the bridge, admin, viewer and producer users in %s", ACL_FILE);
    return path;
}

/* --- addresses --------------------------------------------------------------------------- */

/* The address for --redis that logs in as user: the harness's own (redis:// or rediss://,
 * port) with that user's credentials instead of the harness's. Returns a static buffer per
 * call site: copy it. */
static const char *via(const char *user, const char *password) {
    const char *url = h_redis_url(), *sep = strstr(url, "://");
    const char *host = strrchr(url, '@');
    cr_assert(sep, "harness URL %s", url);
    host = host ? host + 1 : sep + 3;
    static char out[8][512];
    static int k;
    char *u = out[k++ % 8];
    snprintf(u, 512, "%.*s://%s:%s@%s", (int)(sep - url), url, user, password, host);
    return u;
}

/* --- clients -------------------------------------------------------------------------- */

/* A producer's (or anyone's) own connection, logged in as user. */
static redisContext *login(const char *user, const char *password) {
    char err[256];
    redisContext *c = h_redis_connect(h_redis_port(), 5000, err, sizeof err);
    cr_assert(c, "connect to redis: %s", err);
    redisReply *r = redisCommand(c, "AUTH %s %s", user, password);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "AUTH %s: %s", user, r ? r->str : c->errstr);
    freeReplyObject(r);
    return c;
}

/* The CLI with --redis addr (a later --redis wins over the harness's). */
static int cli_as(const char *addr, char **out, char **err, const char *const *args) {
    const char *argv[32] = {"--redis", addr};
    int n = 2;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return h_cli(out, NULL, err, argv);
}
#define CLI_AS(addr, out, err, ...) cli_as(addr, out, err, (const char *const[]){__VA_ARGS__, NULL})

/* XADD a request to house as the producer c (reply key `reply`), then XREAD its final reply.
 * Returns the status (or -1), the error field into error[32]. */
static int produce(redisContext *c, const char *house, const char *id, const char *reply,
                   int timeout_ms, char error[32]) {
    char key[128], tmo[16];
    snprintf(key, sizeof key, "gp:{%s}:req", house);
    snprintf(tmo, sizeof tmo, "%d", timeout_ms);
    redisReply *r = redisCommand(c,
                                 "XADD %s MAXLEN ~ 10000 * id %s method GET path /echo "
                                 "timeout_ms %s reply %s",
                                 key, id, tmo, reply);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD %s: %s", key, r ? r->str : c->errstr);
    freeReplyObject(r);
    int status = -1;
    error[0] = '\0';
    char last[64] = "0-0";
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms + 15000;
    while (status < 0 && h_now_ms() < end) {
        r = redisCommand(c, "XREAD COUNT 10 BLOCK 1000 STREAMS %s %s", reply, last);
        cr_assert(r && r->type != REDIS_REPLY_ERROR, "XREAD %s: %s", reply, r ? r->str : "");
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->element[0]->element[1]->elements;
             i++) {
            redisReply *e = r->element[0]->element[1]->element[i];
            snprintf(last, sizeof last, "%s", e->element[0]->str);
            int st = -1, fin = 0;
            for (size_t j = 0; j + 1 < e->element[1]->elements; j += 2) {
                const char *f = e->element[1]->element[j]->str,
                           *v = e->element[1]->element[j + 1]->str;
                if (strcmp(f, "status") == 0)
                    st = atoi(v);
                else if (strcmp(f, "final") == 0)
                    fin = strcmp(v, "1") == 0;
                else if (strcmp(f, "error") == 0)
                    snprintf(error, 32, "%s", v);
            }
            if (fin)
                status = st;
        }
        freeReplyObject(r);
    }
    return status;
}

/* The reply to argv as user: 1 if Redis refused it for lack of permission (NOPERM), 0 if
 * it ran (whatever it answered). A fresh connection each time (SUBSCRIBE changes it). */
static int noperm(const char *user, const char *password, int argc, const char **argv) {
    redisContext *c = login(user, password);
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    cr_assert(r, "%s as %s: %s", argv[0], user, c->errstr);
    int refused = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0;
    freeReplyObject(r);
    redisFree(c);
    return refused;
}

static char g_entry[64]; /* a request entry of farm-1 */

/* Acknowledged and deleted from farm-1's stream: the bridge is done with it. */
static int settled(void *ud) {
    (void)ud;
    redisReply *r = h_cmd("XRANGE gp:{farm-1}:req %s %s", g_entry, g_entry);
    int done = r->type == REDIS_REPLY_ARRAY && r->elements == 0;
    freeReplyObject(r);
    return done;
}

static int reply_written(void *key) {
    return h_int("EXISTS %s", (const char *)key) == 1;
}

/* ACL LOG entries of user, as "reason object" lines into out (malloc'd). */
static char *acl_log(const char *user) {
    redisReply *r = h_cmd("ACL LOG 100");
    cr_assert(r->type == REDIS_REPLY_ARRAY);
    size_t cap = 64 + 200 * r->elements, o = 0;
    char *out = calloc(1, cap);
    for (size_t i = 0; i < r->elements; i++) {
        const char *reason = "", *object = "", *who = "";
        redisReply *e = r->element[i];
        for (size_t j = 0; j + 1 < e->elements; j += 2) {
            const char *k = e->element[j]->str, *v = e->element[j + 1]->str;
            if (!v)
                continue;
            if (strcmp(k, "reason") == 0)
                reason = v;
            else if (strcmp(k, "object") == 0)
                object = v;
            else if (strcmp(k, "username") == 0)
                who = v;
        }
        if (strcmp(who, user) == 0)
            o += (size_t)snprintf(out + o, cap - o, "%.20s %.150s\n", reason, object);
    }
    freeReplyObject(r);
    return out;
}

/* --- tests ---------------------------------------------------------------------------- */

/* The bridge serves requests under its role (the janitor's 504 included), the admin role runs
 * house add/disable/enable/rm and request, the viewer role house list and top and nothing that
 * writes, the example producer reaches its houses; Redis refuses the bridge nothing but CONFIG
 * (keyspace notifications come from redis.conf) and the keys a hostile producer named. */
Test(acl, bridge_admin_viewer_and_producer_roles) {
    h_redis_start_acl(0, acl_copy(NULL));
    char admin[64], viewer[64], bridge_url[64];
    snprintf(admin, sizeof admin, "%s", via("gp-admin", "pw-admin"));
    snprintf(viewer, sizeof viewer, "%s", via("gp-viewer", "pw-viewer"));
    snprintf(bridge_url, sizeof bridge_url, "%s", via("gp-bridge", "pw-bridge"));
    char *out, *err;

    /* Registering is the admin's: the viewer is refused. */
    cr_assert_neq(CLI_AS(viewer, &out, &err, "house", "add", "farm-1"), 0, "viewer added: %s", out);
    cr_assert(strstr(err, "NOPERM"), "stderr: %s", err);
    free(out), free(err);
    cr_assert_eq(h_int("EXISTS gp:{farm-1}:house"), 0);
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "add", "farm-1", "--quiet"), 0, "%s", err);
    char secret[65];
    snprintf(secret, sizeof secret, "%.64s", out);
    free(out), free(err);
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "add", "farm-2", "--quiet"), 0, "%s", err);
    free(out), free(err);

    /* The L3 address book (as a bridge with --tun would have recorded its pools): the admin
     * gives farm-2 a fixed address and routes, and farm-3 one, which the API frees below. */
    freeReplyObject(h_cmd("HSET gp:tun pool4 100.96.0.0/16 pool6 fd7a:6770::/64"));
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "tun", "farm-2", "--addr", "100.96.0.9",
                        "--route", "10.9.0.0/24"),
                 0, "%s", err);
    cr_assert(strstr(out, "100.96.0.9, fd7a:6770::9"), "%s", out);
    free(out), free(err);
    cr_assert_eq(
        CLI_AS(admin, &out, &err, "house", "add", "farm-3", "--tun-addr", "100.96.0.10", "--quiet"),
        0, "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI_AS(viewer, &out, &err, "house", "tun", "farm-2", "--addr", "auto"), 2,
                 "the viewer changed an address: %s", out);
    cr_assert(strstr(err, "NOPERM"), "stderr: %s", err);
    free(out), free(err);
    cr_assert_eq(h_int("HGET gp:tun h:farm-2"), 8, "the viewer's attempt changed it");

    /* No bridge has published stats yet: top does without SCAN, which the viewer may not run. */
    cr_assert_eq(CLI_AS(viewer, &out, &err, "top", "--once", "--interval", "0"), 0, "%s", err);
    cr_assert(strstr(out, "BRIDGES 0") && strstr(out, "farm-2"), "%s", out);
    free(out), free(err);

    int up_port, bport;
    h_upstream_start(&up_port);
    char up[64];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    const char *tok = h_path("admin.token");
    h_write_file(tok, "acl-token-for-the-admin-api\n", 0600);
    h_proc *bp = h_bridge_start(0, &bport,
                                (const char *const[]){"--redis", bridge_url, "--admin-listen", "0",
                                                      "--admin-token-file", tok,
                                                      "--history-flush-ms", "1000", NULL},
                                1);
    /* Back within a second once enabled again (after a refusal it waits 15-30 s by default). */
    h_house_start("farm-1", secret, bport, up,
                  (const char *const[]){"--reconnect-max-ms", "1000", NULL});
    cr_assert(h_wait_connected("farm-1", 20000), "farm-1 did not connect through a gp-bridge");

    /* The producer: its house answers, an offline one gets the janitor's 504. */
    redisContext *p = login("gp-producer-app1", "pw-app1");
    char error[32];
    cr_assert_eq(produce(p, "farm-1", "a1", "gp:rep:app1:a1", 10000, error), 200, "error %s",
                 error);
    cr_assert_eq(produce(p, "farm-2", "a2", "gp:rep:app1:a2", 300, error), 504);
    cr_assert_str_eq(error, "timeout");
    redisReply *r = redisCommand(p, "DEL gp:rep:app1:a1 gp:rep:app1:a2");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 2, "the producer's DEL");
    freeReplyObject(r);
    /* It may name another family in `reply`: the bridge writes there (inside gp:rep:), but
     * only that family's owner can read it. */
    redisContext *p2 = login("gp-producer-app2", "pw-app2");
    cr_assert_eq(produce(p2, "farm-1", "a3", "gp:rep:app2:a3", 10000, error), 200);
    redisFree(p2);
    r = redisCommand(p, "XADD gp:{farm-1}:req * id a4 method GET path /echo reply gp:rep:app2:a4");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    cr_assert(h_wait(reply_written, "gp:rep:app2:a4", 10000), "no reply in gp:rep:app2:a4");
    const char *peek[] = {"XRANGE", "gp:rep:app2:a4", "-", "+"};
    cr_assert(noperm("gp-producer-app1", "pw-app1", 4, peek), "app1 reads app2's reply key");
    cr_assert(!noperm("gp-producer-app2", "pw-app2", 4, peek));

    /* A hostile producer names the registry and other houses' keys as its reply key (issue
     * 11, defect 1): the bridge's user may XADD and PEXPIRE inside gp:rep: only, so Redis
     * itself refuses the damage, whatever the bridge checks first. */
    const char *targets[] = {"gp:houses", "gp:{farm-2}:house", "gp:{farm-1}:epoch",
                             "gp:{farm-2}:req"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        r = redisCommand(p, "XADD gp:{farm-1}:req * id evil%d method GET path /echo reply %s",
                         (int)i, targets[i]);
        cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD: %s", r ? r->str : "");
        snprintf(g_entry, sizeof g_entry, "%s", r->str);
        freeReplyObject(r);
        cr_assert(h_wait(settled, NULL, 10000), "the request naming %s was not settled",
                  targets[i]);
    }
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        cr_assert_eq(h_int("PTTL %s", targets[i]), -1, "%s got a TTL", targets[i]);
    cr_assert_eq(h_int("SISMEMBER gp:houses farm-2"), 1);
    redisReply *t = h_cmd("TYPE gp:{farm-1}:epoch");
    cr_assert_str_eq(t->str, "string");
    freeReplyObject(t);
    cr_assert_eq(h_int("XLEN gp:{farm-2}:req"), 0, "a reply entry landed in a request stream");
    cr_assert(h_wait_connected("farm-1", 1000));
    redisFree(p);

    /* The CLI's request as the admin. */
    cr_assert_eq(CLI_AS(admin, &out, &err, "request", "farm-1", "GET", "/echo"), 0, "%s", err);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    free(out), free(err);

    /* The viewer reads, L3 addresses too; it may not disable. */
    cr_assert_eq(CLI_AS(viewer, &out, &err, "house", "list"), 0, "%s", err);
    cr_assert(strstr(out, "farm-1") && strstr(out, "online"), "%s", out);
    cr_assert(strstr(out, "100.96.0.9"), "farm-2's address: %s", out);
    free(out), free(err);
    cr_assert_eq(CLI_AS(viewer, &out, &err, "house", "list", "--json"), 0, "%s", err);
    cr_assert(strstr(out, "\"tun_addr\":[\"100.96.0.9\",\"fd7a:6770::9\"]") &&
                  strstr(out, "\"tun_routes\":[\"10.9.0.0/24\"]"),
              "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI_AS(viewer, &out, &err, "house", "tun", "farm-2"), 0, "%s", err);
    cr_assert(strstr(out, "100.96.0.9"), "%s", out);
    free(out), free(err);

    /* The bridge's JSON API (as gp-bridge): the view has the address, DELETE frees it. */
    int aport = h_admin_port(bp);
    cr_assert(aport, "no admin port");
    const char *auth = "Authorization: Bearer acl-token-for-the-admin-api\r\n";
    char *body = NULL;
    int st = h_http(aport, "GET", "/api/houses/farm-2", auth, NULL, 0, &body, NULL);
    cr_assert_eq(st, 200, "GET: %d %s", st, body ? body : "");
    cr_assert(strstr(body, "\"tun_index\":8,\"tun_addr\":[\"100.96.0.9\",\"fd7a:6770::9\"],"
                           "\"tun_routes\":[\"10.9.0.0/24\"]"),
              "%s", body);
    free(body);
    st = h_http(aport, "DELETE", "/api/houses/farm-3", auth, NULL, 0, &body, NULL);
    cr_assert_eq(st, 200, "DELETE: %d %s", st, body ? body : "");
    free(body);
    cr_assert_eq(h_int("HEXISTS gp:tun h:farm-3"), 0, "the API's DELETE kept the index");
    cr_assert_eq(h_int("HEXISTS gp:tun i:9"), 0);

    /* The request history: the gp-bridge writes it (its script, once a second here: farm-1's
     * requests, farm-2's 504) and reads it for the API; the viewer reads it and may not write
     * it; the admin's house rm below deletes farm-2's. */
    cr_assert(h_wait(reply_written, "gp:{farm-1}:hist", 10000), "no history for farm-1");
    cr_assert(h_wait(reply_written, "gp:{farm-2}:hist", 10000), "no history for farm-2's 504");
    cr_assert(h_wait(reply_written, "gp:hist", 10000), "no history of every bridge");
    st = h_http(aport, "GET", "/api/houses/farm-1/history", auth, NULL, 0, &body, NULL);
    cr_assert_eq(st, 200, "GET history: %d %s", st, body ? body : "");
    cr_assert(strstr(body, "\"scope\":\"house\"") && strstr(body, "\"total\":{\"requests\":") &&
                  !strstr(body, "\"total\":{\"requests\":0,"),
              "%s", body);
    free(body);
    st = h_http(aport, "GET", "/api/history?range=24h", auth, NULL, 0, &body, NULL);
    cr_assert_eq(st, 200, "GET /api/history: %d %s", st, body ? body : "");
    free(body);
    const char *hist_read[] = {"HGETALL", "gp:{farm-1}:hist"};
    const char *fleet_read[] = {"HGETALL", "gp:hist"};
    const char *hist_write[] = {"HSET", "gp:{farm-1}:hist", "0", "x"};
    cr_assert(!noperm("gp-viewer", "pw-viewer", 2, hist_read), "the viewer may not read history");
    cr_assert(!noperm("gp-viewer", "pw-viewer", 2, fleet_read));
    cr_assert(noperm("gp-viewer", "pw-viewer", 4, hist_write), "the viewer wrote history");
    cr_assert(!noperm("gp-admin", "pw-admin", 2, fleet_read));
    cr_assert_eq(CLI_AS(viewer, &out, &err, "top", "--once", "--interval", "0"), 0, "%s", err);
    cr_assert(strstr(out, "farm-1"), "%s", out);
    free(out), free(err);
    cr_assert_neq(CLI_AS(viewer, &out, &err, "house", "disable", "farm-1"), 0);
    cr_assert(strstr(err, "NOPERM"), "stderr: %s", err);
    free(out), free(err);

    /* The admin disables (the bridge, told on gp:ctl, closes the house), enables, removes. */
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "disable", "farm-1"), 0, "%s", err);
    free(out), free(err);
    cr_assert(h_wait_offline("farm-1", 15000), "the bridge did not close the disabled house");
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "enable", "farm-1"), 0, "%s", err);
    free(out), free(err);
    cr_assert(h_wait_connected("farm-1", 30000), "farm-1 did not come back once enabled");
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "rm", "farm-2", "--purge"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(h_int("SISMEMBER gp:houses farm-2"), 0);
    cr_assert_eq(h_int("EXISTS gp:{farm-2}:house"), 0);
    cr_assert_eq(h_int("EXISTS gp:{farm-2}:hist"), 0, "house rm kept the history");
    cr_assert_eq(h_int("HEXISTS gp:tun h:farm-2"), 0, "house rm kept the L3 index");

    /* What Redis refused the bridge and the admin: CONFIG only (the bridge asks for keyspace
     * notifications, which redis.conf sets). */
    char *log = acl_log("gp-bridge");
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n")) {
        int expected = strcmp(l, "command config|get") == 0;
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
            expected |= strncmp(l, "key ", 4) == 0 && strcmp(l + 4, targets[i]) == 0;
        cr_assert(expected, "the bridge was refused: %s", l);
    }
    free(log);
    log = acl_log("gp-admin");
    cr_assert_str_eq(log, "", "the admin was refused:\n%s", log);
    free(log);
}

/* What a producer cannot do, each checked against a broader user that can. */
Test(acl, producer_is_confined) {
    h_redis_start_acl(0, acl_copy("user broad on >pw-broad ~* &* +@all\n"));
    char sec[65];
    h_register("farm-1", sec);
    h_register("farm-3", sec);
    redisReply *r = h_cmd("XADD gp:rep:app2:x * status 200 final 1");
    freeReplyObject(r);

    /* What it can do. */
    redisContext *p = login("gp-producer-app1", "pw-app1");
    r = redisCommand(p, "XADD gp:{farm-1}:req MAXLEN ~ 10000 * id q1 method GET path / reply "
                        "gp:rep:app1:q1");
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD to its house: %s", r ? r->str : "");
    freeReplyObject(r);
    r = redisCommand(p, "HGETALL gp:{farm-1}:state");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "its house's live state: %s",
              r && r->str ? r->str : "");
    freeReplyObject(r);
    /* A stream opener deletes the house's ack-only entries it read from sout (STREAMS.md). */
    r = redisCommand(p, "XDEL gp:{farm-1}:sout:s1 1-1");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "XDEL on its house's sout: %s",
              r && r->str ? r->str : "");
    freeReplyObject(r);
    /* `ghostport connect`/`forward` name their two shared connections, and the writer wakes
     * the reader's blocked XREAD when a stream joins (cli_stream.c). */
    const char *client[] = {"CLIENT ID", "CLIENT SETNAME ghostport-cli:1:reader",
                            "CLIENT UNBLOCK 999999"};
    for (size_t i = 0; i < sizeof client / sizeof client[0]; i++) {
        r = redisCommand(p, client[i]);
        cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", client[i],
                  r && r->str ? r->str : "");
        freeReplyObject(r);
    }
    redisFree(p);

    const char *refused[][8] = {
        {"HGET", "gp:{farm-1}:house", "secret"}, /* a secret, even of its own house */
        {"HGETALL", "gp:{farm-1}:house"},
        {"XADD", "gp:{farm-3}:req", "*", "method", "GET", "path", "/"}, /* another house */
        {"XRANGE", "gp:{farm-1}:req", "-", "+"}, /* other producers' requests */
        {"XREADGROUP", "GROUP", "gp", "house", "STREAMS", "gp:{farm-1}:req", ">"},
        {"DEL", "gp:{farm-1}:req"},
        {"XRANGE", "gp:rep:app2:x", "-", "+"}, /* another producer's reply */
        {"XREAD", "STREAMS", "gp:rep:app2:x", "0"},
        {"DEL", "gp:rep:app2:x"},
        {"XRANGE", "gp:rep:q1", "-", "+"}, /* a reply outside any producer's family */
        {"SCAN", "0"},
        {"KEYS", "*"},
        {"SMEMBERS", "gp:houses"},
        {"SUBSCRIBE", "__keyspace@0__:gp:{farm-1}:req"},
        {"PSUBSCRIBE", "*"},
        {"SUBSCRIBE", "gp:ctl"},
        {"PUBLISH", "gp:ctl", "remove farm-1"},
        {"CONFIG", "GET", "*"},
        {"EVAL", "return 1", "0"},
        {"HGET", "gp:tun", "pool4"}, /* the L3 address book */
        {"HMGET", "gp:tun", "h:farm-1"},
    };
    size_t n = sizeof refused / sizeof refused[0];
    int argc[sizeof refused / sizeof refused[0]];
    for (size_t i = 0; i < n; i++)
        for (argc[i] = 0; argc[i] < 8 && refused[i][argc[i]];)
            argc[i]++;
    for (size_t i = 0; i < n; i++)
        cr_assert(noperm("gp-producer-app1", "pw-app1", argc[i], refused[i]),
                  "the producer may %s %s", refused[i][0], refused[i][1]);
    cr_assert_eq(h_int("EXISTS gp:{farm-1}:req"), 1, "the producer deleted a request stream");
    cr_assert_eq(h_int("EXISTS gp:rep:app2:x"), 1, "the producer deleted another's reply");
    /* Each of those checks can fail: a user with broad rules is refused none of them. */
    for (size_t i = 0; i < n; i++)
        cr_assert(!noperm("broad", "pw-broad", argc[i], refused[i]),
                  "a broad user is refused %s %s too: the check cannot fail", refused[i][0],
                  refused[i][1]);
}

/* A TCP stream with every process on its least-privilege user: the admin's `ghostport
 * connect` opens it (sin written, sout read, its own entries trimmed), the gp-bridge relays
 * it (sin read and trimmed, sout written, both keys' TTLs, the sin doorbell), and Redis
 * refuses neither. The house's TCP service is the HTTP upstream, spoken to by hand. */
Test(acl, stream_on_least_privilege_users) {
    h_redis_start_acl(0, acl_copy(NULL));
    char admin[64], bridge_url[64];
    snprintf(admin, sizeof admin, "%s", via("gp-admin", "pw-admin"));
    snprintf(bridge_url, sizeof bridge_url, "%s", via("gp-bridge", "pw-bridge"));
    char *out, *err;
    cr_assert_eq(CLI_AS(admin, &out, &err, "house", "add", "farm-1", "--quiet"), 0, "%s", err);
    char secret[65];
    snprintf(secret, sizeof secret, "%.64s", out);
    free(out), free(err);
    int up_port, bport;
    h_upstream_start(&up_port);
    char up[64], svc[64];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    snprintf(svc, sizeof svc, "web=127.0.0.1:%d", up_port);
    h_bridge_start(0, &bport, (const char *const[]){"--redis", bridge_url, NULL}, 1);
    h_house_start("farm-1", secret, bport, up, (const char *const[]){"--tcp-service", svc, NULL});
    cr_assert(h_wait_connected("farm-1", 20000), "farm-1 did not connect through a gp-bridge");

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "printf 'GET /echo HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' | '%s' --redis '%s' connect "
             "farm-1 web --timeout 10000",
             h_bin("ghostport"), admin);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    int rc = h_run(argv, 60000, &out, NULL, &err);
    cr_assert_eq(rc, 0, "connect as gp-admin: rc %d, stderr: %s", rc, err);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "the upstream's answer: %s", out);
    free(out), free(err);

    char *log = acl_log("gp-bridge");
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n"))
        cr_assert_str_eq(l, "command config|get", "the bridge was refused: %s", l);
    free(log);
    log = acl_log("gp-admin");
    cr_assert_str_eq(log, "", "the admin was refused:\n%s", log);
    free(log);
}
