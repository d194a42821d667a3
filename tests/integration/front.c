/* front.c — the bridge's HTTP front door (bridge/front/, README.md "The HTTP front door") as a
 * user meets it: curl against a real bridge (--http-listen 0) with a real house, upstream
 * (tests/upstream.py) and redis-server on loopback. GET and POST through to the upstream with
 * headers and body intact, a named service, Host routing, 404s, the token file (401 with a
 * challenge, 403 outside the globs, Bearer and Basic, failures rate-limited), a house nobody
 * holds (the janitor's 504 with its JSON body), a 5 MiB reply streamed chunked and whole, a
 * body over --max-body (413), the metrics, and a request in flight while the bridge holding
 * the house is killed with kill -9 (answered all the same: the contract's guarantee). And
 * WebSockets (an Upgrade carried over a TCP stream to the house's HTTP upstream: a node echo
 * server, a raw-socket client): the echo with 1 MiB intact and the close handshake, refusals
 * as the usual JSON, tokens, HTTPS, a slow client paused, a Redis Cluster, kill -9 of the
 * bridge holding the house mid-WebSocket, and an https:// upstream (the echo server behind
 * TLS with a throwaway certificate: trusted through --upstream-ca-file, refused without). */
#include "../harness/world.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

TestSuite(front, .init = h_init, .fini = h_fini, .timeout = 150);

#define TOKEN "front-door-token-farm-0123"
#define TOKEN_OTHER "front-door-token-other-4567"

/* The front door's port a bridge logged (event=listening transport=http), or 0. */
static int http_port(const h_proc *p) {
    return h_listen_port(p, "http");
}

typedef struct resp {
    int status;
    char *headers, *body;
    size_t body_len;
} resp;

/* curl -sS -D- with args (NULL-terminated) against http://127.0.0.1:port<path>. */
static void curl(resp *r, int port, const char *path, const char *const *args) {
    char url[512], hdr_path[600];
    if (strncmp(path, "https://", 8) == 0)
        snprintf(url, sizeof url, "%s", path); /* a whole URL */
    else
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(hdr_path, sizeof hdr_path, "%s", h_path("curl.headers"));
    const char *argv[32] = {"/usr/bin/curl", "-sS", "--max-time", "30", "-D", hdr_path, "-o", "-"};
    int n = 8;
    for (int i = 0; args && args[i] && n < 30; i++)
        argv[n++] = args[i];
    argv[n++] = url;
    argv[n] = NULL;
    memset(r, 0, sizeof *r);
    char *err = NULL;
    int rc = h_run(argv, 40000, &r->body, &r->body_len, &err);
    cr_assert_eq(rc, 0, "curl %s failed (%d): %s", url, rc, err ? err : "");
    free(err);
    r->headers = h_read_file(hdr_path, NULL);
    cr_assert_not_null(r->headers);
    r->status = atoi(r->headers + strlen("HTTP/1.1 "));
}

/* 1 MiB of pseudo-random bytes (seed) in the file name: "@<path>" into at[600] (curl's
 * --data-binary) and their SHA-256 into sum[65]. */
static void upload_file(const char *seed, const char *name, char *at, char *sum) {
    uint8_t *big = h_prandom(1 << 20, seed);
    const char *bf = h_path(name);
    FILE *fp = fopen(bf, "wb");
    cr_assert(fp && fwrite(big, 1, 1 << 20, fp) == 1 << 20);
    fclose(fp);
    h_sha256_hex(big, 1 << 20, sum);
    free(big);
    snprintf(at, 600, "@%s", bf);
}

static void resp_free(resp *r) {
    free(r->headers);
    free(r->body);
}

/* Header lookup in curl's dump (case-insensitive name, static value), or NULL. */
static const char *hdr(const resp *r, const char *name) {
    static char v[512];
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "") {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *s = p + nl + 1;
            while (*s == ' ')
                s++;
            size_t l = strcspn(s, "\r\n");
            snprintf(v, sizeof v, "%.*s", (int)l, s);
            return v;
        }
    }
    return NULL;
}

static h_world W;
static int P;

static void public_world(const char *const *extra_bridge) {
    const char *bx[16] = {"--http-listen", "0", "--http-public", "--reply-chunk", "1048576"};
    int n = 5;
    for (int i = 0; extra_bridge && extra_bridge[i]; i++)
        bx[n++] = extra_bridge[i];
    char svc[128];
    /* the house's named upstream "alt" is the same upstream (the echo shows which path) */
    h_world_up(&W, NULL, bx, NULL);
    snprintf(svc, sizeof svc, "alt=%s", W.up_url);
    const char *hx[] = {"--service", svc, NULL};
    W.house = h_house_up(&W, "farm-1", W.secret, hx);
    P = http_port(W.bridge);
    cr_assert(P, "the bridge logged no front door port");
}

/* curl as above on the front door (P): answered 200 by the upstream's /echo. */
static void echo(resp *r, const char *path, const char *const *args) {
    curl(r, P, path, args);
    cr_assert_eq(r->status, 200, "%s", r->headers);
    cr_assert_str_eq(h_json_str(r->body, "path"), "/echo");
}

Test(front, get_post_service_and_404) {
    public_world(NULL);
    resp r;
    const char *get[] = {"-H", "X-Test: hello", NULL};
    echo(&r, "/h/farm-1/echo?x=1", get);
    cr_assert_str_eq(h_json_str(r.body, "method"), "GET");
    cr_assert(strstr(r.body, "\"x-test\": \"hello\"") || strstr(r.body, "\"x-test\":\"hello\""),
              "%s", r.body);
    cr_assert(strstr(r.body, "x-forwarded-for"), "%s", r.body);
    cr_assert(strstr(r.body, "\"x\": \"1\"") || strstr(r.body, "\"x\":\"1\""), "%s", r.body);
    cr_assert_not_null(hdr(&r, "content-length"), "a one-entry reply has a length");
    resp_free(&r);

    const char *post[] = {
        "-X", "POST", "--data-binary", "0123456789", "-H", "Content-Type: text/plain", NULL};
    curl(&r, P, "/h/farm-1/echo", post);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_json_str(r.body, "method"), "POST");
    cr_assert_eq(h_json_int(r.body, "body_len"), 10, "%s", r.body);
    resp_free(&r);

    /* 1 MiB of binary (curl asks Expect: 100-continue first): the upstream sees every byte */
    char sum[65], at[600];
    upload_file("up", "front.upload", at, sum);
    const char *upload[] = {"--data-binary", at, NULL};
    curl(&r, P, "/h/farm-1/echo", upload);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_eq(h_json_int(r.body, "body_len"), 1 << 20, "%s", r.body);
    cr_assert_str_eq(h_json_str(r.body, "body_sha256"), sum);
    resp_free(&r);

    curl(&r, P, "/h/farm-1@alt/status/418", NULL);
    cr_assert_eq(r.status, 418, "%s", r.headers);
    cr_assert_str_eq(r.body, "status 418\n");
    resp_free(&r);

    const char *head[] = {"-I", NULL}; /* HEAD: the upstream's length, no body */
    curl(&r, P, "/h/farm-1/bytes/1234", head);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_not_null(hdr(&r, "content-length"), "%s", r.headers);
    cr_assert_str_eq(hdr(&r, "content-length"), "1234", "%s", r.headers);
    resp_free(&r);

    curl(&r, P, "/h/farm-1@nosuch/echo", NULL); /* the house refuses: its JSON error kept */
    cr_assert_eq(r.status, 403, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "forbidden_upstream", "%s", r.body);
    resp_free(&r);

    const char *bad[] = {"/", "/nope", "/h/", "/h/bad%20id/x", "/h/farm-1@/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        curl(&r, P, bad[i], NULL);
        cr_assert_eq(r.status, 404, "%s: %s", bad[i], r.headers);
        cr_assert_str_eq(h_json_str(r.body, "error"), "not_found", "%s", r.body);
        resp_free(&r);
    }
}

Test(front, host_routing_and_chunked_stream) {
    const char *bx[] = {"--http-domain", "gp.test", NULL};
    public_world(bx);
    resp r;
    const char *host[] = {"-H", "Host: farm-1.gp.test", NULL};
    echo(&r, "/echo", host);
    resp_free(&r);
    const char *svc[] = {"-H", "Host: ALT.farm-1.gp.test:8080", NULL};
    curl(&r, P, "/status/201", svc);
    cr_assert_eq(r.status, 201, "%s", r.headers);
    resp_free(&r);

    /* 5 MiB in 1 MiB entries: chunked, whole, the upstream's checksum header kept */
    curl(&r, P, "/h/farm-1/bytes/5242880?seed=front", NULL);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_eq(r.body_len, 5242880u);
    const char *te = hdr(&r, "transfer-encoding");
    cr_assert(te && strcmp(te, "chunked") == 0, "%s", r.headers);
    char sum[65];
    h_sha256_hex(r.body, r.body_len, sum);
    cr_assert_not_null(hdr(&r, "x-sha256"), "%s", r.headers);
    cr_assert_str_eq(hdr(&r, "x-sha256"), sum);
    resp_free(&r);
}

Test(front, house_nobody_holds_gets_the_janitors_504) {
    public_world(NULL);
    char secret[65];
    h_register("ghost", secret);
    resp r;
    const char *t[] = {"-H", "X-Gp-Timeout-Ms: 300", NULL};
    curl(&r, P, "/h/ghost/echo", t);
    cr_assert_eq(r.status, 504, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "timeout", "%s", r.body);
    resp_free(&r);
    /* /h/<house> without its slash: 308 to /h/<house>/ (the query kept), so that a browser
     * resolves the app's relative URLs under the house */
    curl(&r, P, "/h/farm-1?q=2", NULL);
    cr_assert_eq(r.status, 308, "%s", r.headers);
    cr_assert(strcasestr(r.headers, "\nLocation: /h/farm-1/?q=2\r\n"), "%s", r.headers);
    resp_free(&r);
    curl(&r, P, "/h/farm-1@alt", NULL);
    cr_assert_eq(r.status, 308, "%s", r.headers);
    cr_assert(strcasestr(r.headers, "\nLocation: /h/farm-1@alt/\r\n"), "%s", r.headers);
    resp_free(&r);
    /* an id no one registered: 404 at once, and no key of it is made in Redis */
    curl(&r, P, "/h/nobody-here/echo", t);
    cr_assert_eq(r.status, 404, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "unknown_house", "%s", r.body);
    resp_free(&r);
    cr_assert_eq(h_int("EXISTS gp:{nobody-here}:req"), 0, "a key for an unregistered house");
    /* Redis refuses the XADD (the stream key holds a string): 503 at once, JSON */
    h_register("broken", secret);
    h_int("SET gp:{broken}:req not-a-stream");
    curl(&r, P, "/h/broken/echo", NULL);
    cr_assert_eq(r.status, 503, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "unavailable", "%s", r.body);
    resp_free(&r);
    curl(&r, P, "/h/farm-1/status/200", NULL); /* the others go on */
    cr_assert_eq(r.status, 200, "%s", r.headers);
    resp_free(&r);
    const char *bad[] = {"-H", "X-Gp-Timeout-Ms: soon", NULL};
    curl(&r, P, "/h/farm-1/echo", bad);
    cr_assert_eq(r.status, 400, "%s", r.headers);
    resp_free(&r);
}

Test(front, tokens) {
    const char *tf = h_path("front.tokens");
    h_write_file(tf, "# front door tokens\n" TOKEN " farm-*\n" TOKEN_OTHER " other-* web\n", 0600);
    const char *bx[] = {"--http-listen",
                        "0",
                        "--http-token-file",
                        tf,
                        "--auth-addr-burst",
                        "5",
                        "--auth-addr-per-min",
                        "1",
                        NULL};
    h_world_up(&W, "farm-1", bx, NULL);
    P = http_port(W.bridge);
    cr_assert(P);
    resp r;
    curl(&r, P, "/h/farm-1/echo", NULL);
    cr_assert_eq(r.status, 401, "%s", r.headers);
    cr_assert_not_null(hdr(&r, "www-authenticate"), "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "unauthorized");
    resp_free(&r);

    const char *bearer[] = {"-H", "Authorization: Bearer " TOKEN, NULL};
    curl(&r, P, "/h/farm-1/echo", bearer);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_null(strstr(r.body, TOKEN), "the front door's token reached the upstream");
    resp_free(&r);
    const char *basic[] = {"-u", "me:" TOKEN, NULL};
    curl(&r, P, "/h/farm-1/echo", basic);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    resp_free(&r);

    const char *other[] = {"-H", "Authorization: Bearer " TOKEN_OTHER, NULL};
    curl(&r, P, "/h/farm-1/echo", other);
    cr_assert_eq(r.status, 403, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "forbidden");
    resp_free(&r);

    /* wrong tokens: refused 401 until the address's budget is spent, then 429 */
    const char *wrong[] = {"-H", "Authorization: Bearer not-the-token-at-all", NULL};
    int limited = 0;
    for (int i = 0; i < 10 && !limited; i++) {
        curl(&r, P, "/h/farm-1/echo", wrong);
        cr_assert(r.status == 401 || r.status == 429, "%s", r.headers);
        limited = r.status == 429;
        resp_free(&r);
    }
    cr_assert(limited, "failed attempts were never rate-limited");
}

Test(front, refuses_to_start_without_auth_or_off_loopback) {
    h_redis_start(0);
    int port;
    const char *noauth[] = {"--http-listen", "0", NULL};
    h_proc *b = h_bridge_start(0, &port, noauth, 0);
    cr_assert(h_wait_log(b, "http-public", 10000), "no clear refusal without auth");
    const char *wide[] = {"--http-listen", "0", "--http-public", "--http-bind", "0.0.0.0", NULL};
    h_proc *c = h_bridge_start(0, &port, wide, 0);
    cr_assert(h_wait_log(c, "http-insecure", 10000), "no clear refusal of plain HTTP off loopback");
}

Test(front, body_over_max_body_is_413_and_metrics_count) {
    const char *bx[] = {"--max-body", "1024", "--admin-listen", "0", NULL};
    public_world(bx);
    int admin = h_admin_port(W.bridge);
    cr_assert(admin);
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    resp r;
    const char *post[] = {"--data-binary", big, NULL};
    curl(&r, P, "/h/farm-1/echo", post);
    cr_assert_eq(r.status, 413, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "error"), "too_large", "%s", r.body);
    resp_free(&r);
    curl(&r, P, "/h/farm-1/echo", NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    curl(&r, P, "/nope", NULL);
    resp_free(&r);
    char *m = h_scrape(admin);
    cr_assert_not_null(m);
    cr_assert_geq(h_metric(m, "gp_bridge_http_requests_total{class=\"2xx\"}"), 1, "%s", m);
    cr_assert_geq(h_metric(m, "gp_bridge_http_requests_total{class=\"4xx\"}"), 1, "%s", m);
    cr_assert_eq(h_metric(m, "gp_bridge_http_inflight"), 0, "%s", m);
    free(m);
}

typedef struct bg_curl {
    int port, rc;
    char *out;
    size_t len;
} bg_curl;

static void *curl_thread(void *ud) {
    bg_curl *b = ud;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/h/farm-1/slow?ms=2000", b->port);
    const char *argv[] = {"/usr/bin/curl", "-sS", "--max-time", "60", "-w",
                          "|%{http_code}", url,   NULL};
    b->rc = h_run(argv, 70000, &b->out, &b->len, NULL);
    return NULL;
}

static int pending(void *house) {
    return h_xpending(house) > 0;
}

/* The front door on one bridge, the house held by another that is killed with kill -9 while
 * the upstream works on the request: the house reconnects, the request is delivered again
 * (README.md "Delivery guarantees") and curl gets its answer. */
Test(front, request_survives_kill9_of_the_bridge_holding_the_house) {
    h_world_up(&W, "farm-1", NULL, NULL);
    int bport;
    const char *fx[] = {"--http-listen", "0", "--http-public", "--bridge-id", "b-front", NULL};
    h_proc *front = h_bridge_start(0, &bport, fx, 1);
    P = http_port(front);
    cr_assert(P);
    bg_curl b = {.port = P};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, curl_thread, &b), 0);
    cr_assert(h_wait(pending, "farm-1", 10000), "the request never reached the house");
    h_kill9(W.bridge); /* the upstream is still working on it */
    W.bridge = h_bridge_start(W.bridge_port, NULL, NULL, 1);
    pthread_join(t, NULL);
    cr_assert_eq(b.rc, 0, "curl: %d %s", b.rc, b.out ? b.out : "");
    cr_assert_str_eq(b.out, "slow\n|200");
    free(b.out);
}

/* 64 requests at once (curl --parallel), each waiting on the upstream: the front door opens
 * reader connections as they are needed and every one is answered. */
/* n requests at once, each waiting 300 ms on the upstream: every one answered 200. */
static void all_at_once(int n) {
    static char urls[64][128];
    const char *argv[12 + 3 * 64] = {
        "/usr/bin/curl",  "-sS", "--max-time", "60", "-Z", "--parallel-max", "64", "-w",
        "%{http_code}\\n"};
    int k = 9;
    for (int i = 0; i < n && i < 64; i++) {
        snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d/h/farm-1/slow?ms=300&i=%d", P, i);
        argv[k++] = "-o";
        argv[k++] = "/dev/null";
        argv[k++] = urls[i];
    }
    argv[k] = NULL;
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(h_run(argv, 90000, &out, &len, NULL), 0, "%s", out ? out : "");
    int ok = 0;
    for (const char *p = out; (p = strstr(p, "200\n")); p += 4)
        ok++;
    cr_assert_eq(ok, n, "%s", out);
    free(out);
}

Test(front, many_at_once) {
    public_world(NULL);
    all_at_once(64);
}

static int clients_at_most(void *ud) {
    redisReply *r = h_cmd("CLIENT LIST");
    int n = 0;
    for (const char *p = r->type == REDIS_REPLY_STRING ? r->str : ""; (p = strchr(p, '\n')); p++)
        n++;
    freeReplyObject(r);
    return n <= *(int *)ud;
}

/* The reader connections opened for a burst are closed once they have been idle a while
 * (twice --redis-timeout): the pool shrinks back to nothing. */
Test(front, idle_readers_are_closed) {
    const char *bx[] = {"--redis-timeout", "1000", NULL};
    public_world(bx);
    redisReply *r = h_cmd("CLIENT LIST");
    int before = 0;
    for (const char *p = r->str; (p = strchr(p, '\n')); p++)
        before++;
    freeReplyObject(r);
    all_at_once(16);
    int more = before + 8;
    cr_assert(!clients_at_most(&more), "the burst opened no readers");
    cr_assert(h_wait(clients_at_most, &before, 15000), "idle readers were never closed");
    all_at_once(4); /* and new ones open as needed */
}

/* HTTPS with the front door's own certificate (--http-cert/--http-key; self-signed, curl
 * trusting it): a GET that says https in X-Forwarded-Proto, a 1 MiB upload and a 5 MiB chunked
 * reply, whole; a client speaking plain HTTP to it is dropped and disturbs nobody. */
Test(front, https_with_its_own_certificate) {
    char cert[700], key[700];
    cr_assert(h_self_signed("rsa:2048", cert, sizeof cert, key, sizeof key),
              "openssl failed (see openssl.log)");
    const char *bx[] = {"--http-cert", cert, "--http-key", key, NULL};
    public_world(bx);
    cr_assert(h_wait_log(W.bridge, "transport=http port=", 1000));
    cr_assert(h_wait_log(W.bridge, "tls=1", 1000), "the front door is not on TLS");
    char url[256];
    resp r;
    const char *ca[] = {"--cacert", cert, NULL};
    snprintf(url, sizeof url, "https://localhost:%d/h/farm-1/echo?tls=1", P);
    curl(&r, P, url, ca);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert(strstr(r.body, "\"x-forwarded-proto\": \"https\"") ||
                  strstr(r.body, "\"x-forwarded-proto\":\"https\""),
              "%s", r.body);
    resp_free(&r);

    char sum[65], at[600];
    upload_file("tls-up", "front.tls-upload", at, sum);
    const char *upload[] = {"--cacert", cert, "--data-binary", at, NULL};
    curl(&r, P, url, upload);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_str_eq(h_json_str(r.body, "body_sha256"), sum);
    resp_free(&r);

    /* plain HTTP to the TLS port: no answer but a closed connection */
    char *body = NULL;
    cr_assert_lt(h_http(P, "GET", "/h/farm-1/echo", NULL, NULL, 0, &body, NULL), 200);
    free(body);

    snprintf(url, sizeof url, "https://localhost:%d/h/farm-1/bytes/5242880?seed=tls", P);
    curl(&r, P, url, ca);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_eq(r.body_len, 5242880u);
    h_sha256_hex(r.body, r.body_len, sum);
    cr_assert_str_eq(hdr(&r, "x-sha256"), sum);
    resp_free(&r);
}

/* --http-tls with the bridge's own certificate (--tls-cert/--tls-key, as for wss://): the house
 * connects over wss and curl reaches it over https on the front door. */
Test(front, https_with_the_bridges_certificate) {
    char cert[700], key[700];
    const char *bx[] = {"--http-tls", "--http-listen", "0", "--http-public", NULL};
    h_world_wss_up(&W, "farm-1", bx, cert, key);
    P = http_port(W.bridge);
    cr_assert(P);
    char url[256];
    snprintf(url, sizeof url, "https://localhost:%d/h/farm-1/status/200", P);
    resp r;
    const char *ca[] = {"--cacert", cert, NULL};
    curl(&r, P, url, ca);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_str_eq(r.body, "status 200\n");
    resp_free(&r);
}

/* In a Redis Cluster a reply key (gp:rep:<random id>) lives in a slot of its own, mostly on
 * another node than the seed the bridge was given: the front door reads it on the node that
 * holds it. Twelve requests, their keys spread over the three nodes, all answered 200. */
static h_proc *ws_echo_start(int *port);
static void ws_echo_once(const char *path);

Test(front, redis_cluster) {
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    int up, bport, wport;
    h_upstream_start(&up);
    ws_echo_start(&wport);
    char svc[128];
    snprintf(svc, sizeof svc, "ws=http://127.0.0.1:%d", wport);
    const char *hx[] = {"--service", svc, NULL};
    const char *bx[] = {"--http-listen", "0", "--http-public", NULL};
    h_proc *b = h_bridge_start(0, &bport, bx, 1);
    P = http_port(b);
    cr_assert(P);
    char sec[65], upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_register("farm-1", sec);
    h_house_start("farm-1", sec, bport, upurl, hx);
    cr_assert(h_wait_connected("farm-1", 20000), "house did not connect");
    for (int i = 0; i < 12; i++) {
        char path[64];
        snprintf(path, sizeof path, "/h/farm-1/status/200?i=%d", i);
        resp r;
        curl(&r, P, path, NULL);
        cr_assert_eq(r.status, 200, "request %d: %s%s", i, r.headers, r.body);
        resp_free(&r);
    }
    /* WebSockets: each open's reply key on some node, its sout on the house's */
    for (int i = 0; i < 6; i++)
        ws_echo_once("/h/farm-1@ws/live");
}

/* SIGHUP reads the token file again (rotating tokens is rewriting the file): the new token
 * works and the old one is refused at once; a file that does not parse keeps the tokens
 * before it. */
Test(front, sighup_reloads_the_token_file) {
    const char *tf = h_path("front.tokens");
    h_write_file(tf, TOKEN " farm-*\n", 0600);
    const char *bx[] = {"--http-listen", "0", "--http-token-file", tf, NULL};
    h_world_up(&W, "farm-1", bx, NULL);
    P = http_port(W.bridge);
    cr_assert(P);
    const char *old_tok[] = {"-H", "Authorization: Bearer " TOKEN, NULL};
    const char *new_tok[] = {"-H", "Authorization: Bearer " TOKEN_OTHER, NULL};
    resp r;
    curl(&r, P, "/h/farm-1/echo", new_tok);
    cr_assert_eq(r.status, 401, "%s", r.headers);
    resp_free(&r);

    h_write_file(tf, TOKEN_OTHER " farm-*\n", 0600);
    kill(W.bridge->pid, SIGHUP);
    cr_assert(h_wait_log(W.bridge, "event=http_tokens_loaded", 5000), "no reload of the tokens");
    curl(&r, P, "/h/farm-1/echo", new_tok);
    cr_assert_eq(r.status, 200, "the new token: %s", r.headers);
    resp_free(&r);
    curl(&r, P, "/h/farm-1/echo", old_tok);
    cr_assert_eq(r.status, 401, "the old token still works: %s", r.headers);
    resp_free(&r);

    h_write_file(tf, "short farm-*\n", 0600);
    kill(W.bridge->pid, SIGHUP);
    cr_assert(h_wait_log(W.bridge, "option=http-token-file", 5000), "no reload failure logged");
    curl(&r, P, "/h/farm-1/echo", new_tok);
    cr_assert_eq(r.status, 200, "a broken file took the tokens away: %s", r.headers);
    resp_free(&r);
}

/* --check-config checks the front door too: its options and its token file, read and parsed
 * (exit 1 with the reason), without listening. */
Test(front, check_config_reads_the_token_file) {
    h_redis_start(0);
    const char *tf = h_path("front.tokens");
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-bridge"));
    const char *argv[] = {bin, "--allow-ws",        "--redis", h_redis_url(),    "--http-listen",
                          "0", "--http-token-file", tf,        "--check-config", NULL};
    struct {
        const char *text; /* NULL: no file */
        int ok;
        const char *says;
    } cases[] = {{TOKEN " farm-*\n", 1, "configuration ok"},
                 {"short farm-*\n", 0, "shorter than 16"},
                 {TOKEN "\n", 0, "want TOKEN HOUSE-GLOB"},
                 {"# nothing\n", 0, "no token in it"},
                 {NULL, 0, "http-token-file"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(tf);
        if (cases[i].text)
            h_write_file(tf, cases[i].text, 0600);
        char *out = NULL;
        int rc = h_run(argv, 20000, &out, NULL, NULL);
        cr_assert_eq(rc != 0, !cases[i].ok, "case %zu: exit %d: %s", i, rc, out ? out : "");
        cr_assert(out && strstr(out, cases[i].says), "case %zu: %s", i, out ? out : "");
        free(out);
    }
    /* neither a token file nor --http-public */
    const char *open_door[] = {bin, "--allow-ws",     "--redis", h_redis_url(), "--http-listen",
                               "0", "--check-config", NULL};
    char *out = NULL;
    int rc = h_run(open_door, 20000, &out, NULL, NULL);
    cr_assert_neq(rc, 0, "%s", out ? out : "");
    cr_assert(out && strstr(out, "--http-public"), "%s", out ? out : "");
    free(out);
}

/* The bridge's resident memory, KiB (/proc), or -1. */
static long rss_kib(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *s = h_read_file(path, NULL);
    const char *q = s ? strstr(s, "VmRSS:") : NULL;
    long kib = q ? atol(q + 6) : -1;
    free(s);
    return kib;
}

#define SLOW_REPLY (32L << 20)

struct slow {
    pid_t bridge;
    long base_kib;
    int admin;
};

/* The whole reply is in Redis: its last entry is the final one. */
static int reply_complete(void *ud) {
    (void)ud;
    redisReply *k = h_cmd("KEYS gp:rep:*");
    int done = 0;
    for (size_t i = 0; k->type == REDIS_REPLY_ARRAY && i < k->elements && !done; i++) {
        redisReply *e = h_cmd("XREVRANGE %s + - COUNT 1", k->element[i]->str);
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
            const redisReply *fv = e->element[0]->element[1];
            for (size_t j = 0; j + 1 < fv->elements; j += 2)
                done |= strcmp(fv->element[j]->str, "final") == 0;
        }
        freeReplyObject(e);
    }
    freeReplyObject(k);
    return done;
}

/* The bridge either stopped reading the reply (its metric) or has taken most of it in. */
static int paused_or_grown(void *ud) {
    const struct slow *s = ud;
    if (rss_kib(s->bridge) > s->base_kib + (long)(SLOW_REPLY >> 10) / 2)
        return 1;
    char *m = h_scrape(s->admin);
    int paused = m && h_metric(m, "gp_bridge_http_reads_paused_total") >= 1;
    free(m);
    return paused;
}

/* A client with a small receive buffer that asks the front door (P) for SLOW_REPLY bytes
 * (seed) with that timeout and reads nothing yet: its socket. */
static int slow_get(const char *seed, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 65536;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)P)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /h/farm-1/bytes/%ld?seed=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "X-Gp-Timeout-Ms: %d\r\nConnection: close\r\n\r\n",
                     SLOW_REPLY, seed, timeout_ms);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    return fd;
}

/* A client that does not read its answer: the bridge stops reading the reply stream once about
 * 1 MiB is queued for it, so its memory stays far below the 32 MiB reply (which waits in Redis);
 * once the client reads, the whole reply arrives. */
Test(front, slow_client_bounded_memory) {
    const char *bx[] = {"--admin-listen", "0", NULL};
#if defined(__SANITIZE_ADDRESS__)
    /* ASan keeps freed blocks in a 256 MiB quarantine, so the 32 MiB the house sends through
     * the bridge into Redis would show in its RSS whatever the front door holds: without the
     * quarantine, freed blocks are reused and RSS again measures what is live. */
    const char *prev = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", prev ? prev : "", prev ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    public_world(bx);
    struct slow s = {W.bridge->pid, rss_kib(W.bridge->pid), h_admin_port(W.bridge)};
    cr_assert(s.base_kib > 0 && s.admin);
    int fd = slow_get("slow", 120000);
    cr_assert(h_wait(reply_complete, NULL, 60000), "the reply never reached Redis whole");
    cr_assert(h_wait(paused_or_grown, &s, 20000), "neither paused nor grown");
    long rss = rss_kib(s.bridge);
    cr_assert_leq(rss, s.base_kib + (long)(SLOW_REPLY >> 10) / 2,
                  "the bridge holds the reply for its slow client: rss %ld KiB, %ld before", rss,
                  s.base_kib);
    /* now read it all: every byte arrives, and the chunked answer ends */
    size_t got = 0;
    char buf[65536], tail[5] = {0};
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            break;
        got += (size_t)r;
        for (ssize_t i = 0; i < r; i++) { /* the last 5 bytes, whatever the reads' sizes */
            memmove(tail, tail + 1, 4);
            tail[4] = buf[i];
        }
    }
    close(fd);
    cr_assert_geq(got, (size_t)SLOW_REPLY, "only %zu bytes arrived", got);
    cr_assert(memcmp(tail, "0\r\n\r\n", 5) == 0, "the chunked answer did not end");
}

static int none_inflight(void *ud) {
    char *m = h_scrape(*(int *)ud);
    int none = m && h_metric(m, "gp_bridge_http_inflight") == 0;
    free(m);
    return none;
}

/* A client that never reads does not hold its request (and a reader connection) past the
 * deadline either: its stream is cut as any reply not done by then (deadline + 10 s). */
Test(front, slow_client_cut_at_the_deadline) {
    const char *bx[] = {"--admin-listen", "0", "--redis-timeout", "1000", NULL};
    public_world(bx);
    int admin = h_admin_port(W.bridge);
    cr_assert(admin);
    int fd = slow_get("cut", 5000);
    struct slow s = {W.bridge->pid, rss_kib(W.bridge->pid), admin};
    cr_assert(h_wait(paused_or_grown, &s, 20000), "never paused");
    cr_assert(!none_inflight(&admin), "the request ended already");
    cr_assert(h_wait(none_inflight, &admin, 30000), "the paused request outlived its deadline");
    close(fd);
}

/* --- WebSockets ---------------------------------------------------------------------------
 *
 * A WebSocket echo server in node (the built-in http module; the handshake and frames by
 * hand): it answers 101 with the path and X-Forwarded-* it saw, echoes each message unmasked,
 * answers a close frame with a close frame and ends its side, and ends it too at the client's
 * EOF; /refuse answers 403 and would answer LEAK to anything sent after; a text message
 * "flood N" gets N bytes (byte i is i % 251) in 64 KiB binary messages,
 * then "flood done". With a certificate and key after the port it serves HTTPS (the https
 * module: the same upgrades over TLS), and a plain request gets "over https". */
static const char ws_echo_js[] =
    "const http = require('http'), https = require('https'), crypto = require('crypto');\n"
    "const fs = require('fs'), port = +process.argv[2], tls = !!process.argv[3];\n"
    "const plain = (q, s) => { s.end(tls ? 'over https\\n' : 'plain http\\n'); };\n"
    "const srv = tls ? https.createServer({cert: fs.readFileSync(process.argv[3]),\n"
    "    key: fs.readFileSync(process.argv[4])}, plain) : http.createServer(plain);\n"
    "srv.on('upgrade', (req, sock, head) => {\n"
    "  if (req.url === '/refuse') {\n"
    "    sock.write('HTTP/1.1 403 Forbidden\\r\\nContent-Length: 2\\r\\n\\r\\nno');\n"
    "    sock.on('data', () => sock.write('LEAK'));\n"
    "    sock.on('end', () => sock.end()); sock.on('error', () => {}); return; }\n"
    "  const key = req.headers['sec-websocket-key'];\n"
    "  if (!key || (req.headers.upgrade || '').toLowerCase() !== 'websocket') {\n"
    "    sock.end('HTTP/1.1 400 Bad Request\\r\\n\\r\\n'); return; }\n"
    "  const acc = crypto.createHash('sha1').update(key + "
    "'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');\n"
    "  sock.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n' +\n"
    "    'Connection: Upgrade\\r\\nSec-WebSocket-Accept: ' + acc + '\\r\\nX-Seen-Path: ' +\n"
    "    req.url + '\\r\\nX-Seen-Xff: ' + (req.headers['x-forwarded-for'] || '-') +\n"
    "    '\\r\\nX-Seen-Auth: ' + (req.headers['authorization'] ? 'yes' : 'no') +\n"
    "    '\\r\\nX-Seen-Proto: ' + (req.headers['x-forwarded-proto'] || '-') + '\\r\\n\\r\\n');\n"
    "  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);\n"
    "  const frame = (op, p) => { let h;\n"
    "    if (p.length < 126) { h = Buffer.from([0x80 | op, p.length]); }\n"
    "    else if (p.length < 65536) { h = Buffer.alloc(4); h[0] = 0x80 | op; h[1] = 126;\n"
    "      h.writeUInt16BE(p.length, 2); }\n"
    "    else { h = Buffer.alloc(10); h[0] = 0x80 | op; h[1] = 127;\n"
    "      h.writeBigUInt64BE(BigInt(p.length), 2); }\n"
    "    sock.write(Buffer.concat([h, p])); };\n"
    "  sock.on('data', d => { buf = Buffer.concat([buf, d]);\n"
    "    for (;;) { if (buf.length < 2) return;\n"
    "      const op = buf[0] & 15, masked = buf[1] & 128; let len = buf[1] & 127, o = 2;\n"
    "      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); o = 4; }\n"
    "      else if (len === 127) { if (buf.length < 10) return;\n"
    "        len = Number(buf.readBigUInt64BE(2)); o = 10; }\n"
    "      const mo = o; if (masked) o += 4; if (buf.length < o + len) return;\n"
    "      const p = Buffer.from(buf.subarray(o, o + len));\n"
    "      if (masked) for (let i = 0; i < len; i++) p[i] ^= buf[mo + (i & 3)];\n"
    "      buf = buf.subarray(o + len);\n"
    "      if (op === 8) { frame(8, p); sock.end(); return; }\n"
    "      if (op === 9) { frame(10, p); continue; }\n"
    "      const fl = op === 1 && /^flood (\\d+)$/.exec(p.toString());\n"
    "      if (fl) { const n = +fl[1], c = Buffer.alloc(65536);\n"
    "        for (let o = 0; o < n; o += c.length) {\n"
    "          const k = Math.min(c.length, n - o), b = Buffer.alloc(k);\n"
    "          for (let i = 0; i < k; i++) b[i] = (o + i) % 251;\n"
    "          frame(2, b); }\n"
    "        frame(1, Buffer.from('flood done')); continue; }\n"
    "      frame(op, p); } });\n"
    "  sock.on('end', () => sock.end());\n"
    "  sock.on('error', () => {});\n"
    "});\n"
    "srv.listen(port, '127.0.0.1');\n";

/* The echo server on a free port (*port); with cert and key (PEM files), over TLS. */
static h_proc *ws_echo_start_with(int *port, const char *cert, const char *key) {
    const char *js = h_path("ws_echo.js");
    h_write_file(js, ws_echo_js, 0600);
    *port = h_free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%d", *port);
    char *argv[] = {"/usr/bin/node", (char *)js, ps, (char *)cert, (char *)key, NULL};
    h_proc *p = h_spawn(cert ? "wss_echo" : "ws_echo", argv);
    cr_assert(h_wait_port(*port, 10000), "the WebSocket echo server did not start");
    return p;
}

static h_proc *ws_echo_start(int *port) {
    return ws_echo_start_with(port, NULL, NULL);
}

/* A world whose house has the echo server as HTTP upstream "ws" (and an https:// one that
 * refuses connections, "tls"), the bridge's front door and admin port; extra bridge args
 * (token file) may be given. */
static void ws_world(const char *const *extra_bridge, int public_) {
    int wport;
    const char *bx[16] = {"--http-listen", "0", "--admin-listen", "0"};
    int n = 4;
    if (public_)
        bx[n++] = "--http-public";
    for (int i = 0; extra_bridge && extra_bridge[i]; i++)
        bx[n++] = extra_bridge[i];
    h_world_up(&W, NULL, bx, NULL);
    ws_echo_start(&wport);
    char svc[128];
    snprintf(svc, sizeof svc, "ws=http://127.0.0.1:%d", wport);
    const char *hx[] = {"--service", svc, "--service", "tls=https://127.0.0.1:1", NULL};
    W.house = h_house_up(&W, "farm-1", W.secret, hx);
    P = http_port(W.bridge);
    cr_assert(P, "the bridge logged no front door port");
}

static int ws_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send failed");
        b += w, n -= (size_t)w;
    }
}

static void recv_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        cr_assert(r > 0, "recv: %zd with %zu bytes still expected", r, n);
        b += r, n -= (size_t)r;
    }
}

/* Sends the handshake for path (extra header lines may be NULL) and reads the answer's head
 * into head[cap] (after it, up to *extra bytes already read land in rest). Returns the
 * status. */
static int ws_handshake(int fd, const char *path, const char *extra, char *head, size_t cap) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: keep-alive, Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, P, extra ? extra : "");
    send_all(fd, req, (size_t)n);
    size_t len = 0;
    while (len < cap - 1) { /* byte by byte: nothing past the head is taken */
        ssize_t r = recv(fd, head + len, 1, 0);
        if (r <= 0)
            break;
        len++;
        head[len] = '\0';
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[len] = '\0';
    return len > 12 ? atoi(head + 9) : 0;
}

/* The rest of an error answer (Content-Length bytes) after its head. malloc'd. */
static char *ws_body(int fd, const char *head) {
    const char *cl = strcasestr(head, "content-length:");
    cr_assert_not_null(cl, "%s", head);
    size_t n = (size_t)atol(cl + 15);
    char *b = calloc(1, n + 1);
    recv_all(fd, b, n);
    return b;
}

/* One masked client frame (fin set). */
static void ws_send(int fd, int op, const uint8_t *p, size_t n) {
    uint8_t h[14];
    size_t k = 0;
    h[k++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        h[k++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[k++] = 0x80 | 126;
        h[k++] = (uint8_t)(n >> 8), h[k++] = (uint8_t)n;
    } else {
        h[k++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + k, mask, 4);
    k += 4;
    uint8_t *m = malloc(k + n);
    memcpy(m, h, k);
    for (size_t i = 0; i < n; i++)
        m[k + i] = p[i] ^ mask[i & 3];
    send_all(fd, m, k + n);
    free(m);
}

/* One server frame (unmasked): its opcode, the payload malloc'd in *p. */
static int ws_recv(int fd, uint8_t **p, size_t *n) {
    uint8_t h[2];
    recv_all(fd, h, 2);
    cr_assert(!(h[1] & 0x80), "a server frame is not masked");
    uint64_t len = h[1] & 127;
    if (len == 126) {
        uint8_t e[2];
        recv_all(fd, e, 2);
        len = (uint64_t)e[0] << 8 | e[1];
    } else if (len == 127) {
        uint8_t e[8];
        recv_all(fd, e, 8);
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | e[i];
    }
    cr_assert_leq(len, 4u << 20);
    *p = malloc(len + 1);
    recv_all(fd, *p, len);
    *n = len;
    return h[0] & 15;
}

/* A connection to the front door whose handshake for path (extra header lines may be NULL) is
 * answered `status` (else the test fails), the answer's head in head[cap]. Returns the fd. */
static int ws_open(const char *path, const char *extra, int status, char *head, size_t cap) {
    int fd = ws_connect(P);
    int st = ws_handshake(fd, path, extra, head, cap);
    cr_assert_eq(st, status, "%s: %s", path, head);
    return fd;
}

/* A text message msg sent, and the same message back. */
static void ws_echo_text(int fd, const char *msg) {
    size_t len = strlen(msg), n;
    uint8_t *got;
    ws_send(fd, 1, (const uint8_t *)msg, len);
    cr_assert_eq(ws_recv(fd, &got, &n), 1);
    cr_assert(n == len && memcmp(got, msg, len) == 0, "%s came back as %.*s", msg, (int)n, got);
    free(got);
}

/* The answer after head (a refusal) is JSON with error `error` (and a message naming says,
 * when not NULL); fd is closed. */
static void ws_expect_error(int fd, const char *head, const char *error, const char *says) {
    char *body = ws_body(fd, head);
    cr_assert_str_eq(h_json_str(body, "error"), error, "%s", body);
    if (says)
        cr_assert(strstr(h_json_str(body, "message"), says), "%s", body);
    free(body);
    close(fd);
}

/* The close handshake: 1000 sent, a close frame back. */
static void ws_close_handshake(int fd) {
    uint8_t *got;
    size_t n;
    ws_send(fd, 8, (const uint8_t *)"\x03\xe8", 2);
    cr_assert_eq(ws_recv(fd, &got, &n), 8);
    free(got);
}

typedef struct ws_bg {
    int fd;
    const uint8_t *p;
    size_t n;
} ws_bg;

static void *ws_send_thread(void *ud) {
    ws_bg *b = ud;
    ws_send(b->fd, 2, b->p, b->n);
    return NULL;
}

static int ws_none_open(void *ud) {
    char *m = h_scrape(*(int *)ud);
    int none = m && h_metric(m, "gp_bridge_http_websockets") == 0;
    free(m);
    return none;
}

/* Handshake, one echo and the close handshake on path. */
static void ws_echo_once(const char *path) {
    char head[2048];
    int fd = ws_open(path, NULL, 101, head, sizeof head);
    ws_echo_text(fd, "once");
    ws_close_handshake(fd);
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 0);
    close(fd);
}

/* The echo through the front door: 101 with the upstream's own Sec-WebSocket-Accept, the
 * path routed and X-Forwarded-For added, a text message, a 1 MiB binary one intact (sent
 * while its echo comes back), a ping, then the close handshake and the connection's end; the
 * metrics count it and show none open after. */
/* For h_wait: farm-1's one stream holds no entry in Redis (the front door deletes the house's
 * ack-only entries it read from sout, the bridge those of sin: STREAMS.md). */
/* For h_wait: the WebSocket's two byte keys exist, hold no entry and cost under 2 KiB (a key
 * with one entry: over 4 KiB). Checked together and polled: a keep-alive written between one
 * key's XLEN and its MEMORY USAGE is no idle moment. What was seen last goes to ud. */
static int ws_keys_empty(void *ud) {
    long long *seen = ud; /* entries, bytes */
    return h_stream_keys("farm-1", &seen[0], &seen[1]) == 2 && seen[0] == 0 && seen[1] < 2048;
}

Test(front, websocket_echo_through_the_front_door) {
    ws_world(NULL, 1);
    int admin = h_admin_port(W.bridge);
    cr_assert(admin);
    char head[2048];
    int fd = ws_open("/h/farm-1@ws/chat?room=7", NULL, 101, head, sizeof head);
    cr_assert(strcasestr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "%s",
              head);
    cr_assert(strcasestr(head, "X-Seen-Path: /chat?room=7\r\n"), "%s", head);
    cr_assert(strcasestr(head, "X-Seen-Xff: 127.0.0.1\r\n"), "%s", head);

    ws_echo_text(fd, "hello, house");
    uint8_t *got;
    size_t n;

    uint8_t *big = h_prandom(1 << 20, "ws-big");
    ws_bg b = {fd, big, 1 << 20};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, ws_send_thread, &b), 0);
    cr_assert_eq(ws_recv(fd, &got, &n), 2);
    pthread_join(t, NULL);
    cr_assert_eq(n, 1u << 20);
    cr_assert(memcmp(got, big, n) == 0, "the 1 MiB message came back changed");
    free(got);
    free(big);
    long long seen[2] = {0, 0};
    cr_assert(h_wait(ws_keys_empty, seen, 10000),
              "an idle WebSocket's stream keys: %lld entries, %lld bytes (goal: none, 2 KiB)",
              seen[0], seen[1]);

    ws_send(fd, 9, (const uint8_t *)"ping", 4);
    cr_assert_eq(ws_recv(fd, &got, &n), 10, "a pong");
    free(got);

    const uint8_t bye[] = {0x03, 0xe8}; /* 1000: normal closure */
    ws_send(fd, 8, bye, 2);
    cr_assert_eq(ws_recv(fd, &got, &n), 8, "the close frame answered");
    cr_assert(n == 2 && got[0] == 0x03 && got[1] == 0xe8);
    free(got);
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 0, "the upstream's end reaches the client as EOF");
    shutdown(fd, SHUT_WR);
    close(fd);
    cr_assert(h_wait(ws_none_open, &admin, 15000), "the WebSocket is still counted open");
    char *m = h_scrape(admin);
    cr_assert_eq(h_metric(m, "gp_bridge_http_upgrades_total{outcome=\"opened\"}"), 1, "%s", m);
    free(m);
    cr_assert(h_wait_log(W.bridge, "event=http_websocket_closed", 10000));
    cr_assert_eq(h_log_count(W.bridge, "event=http_websocket_reset"), 0);

    /* and plain requests go on beside it */
    resp r;
    curl(&r, P, "/h/farm-1@ws/", NULL);
    cr_assert_eq(r.status, 200, "%s", r.headers);
    cr_assert_str_eq(r.body, "plain http\n");
    resp_free(&r);
}

/* An upgrade the door or the house refuses gets the usual JSON error, and the connection is
 * not taken over: 404 for a bad route, the house's 403 for an HTTP upstream it does not have,
 * its 502 for one it cannot reach (an https:// one here: refused before any TLS), naming the
 * address and why. */
Test(front, websocket_refusals) {
    ws_world(NULL, 1);
    int admin = h_admin_port(W.bridge);
    const struct {
        const char *path;
        int status;
        const char *error, *says;
    } cases[] = {
        {"/h/", 404, "not_found", NULL},
        {"/h/farm-1@nosuch/chat", 403, "forbidden_service", "HTTP upstream named \"nosuch\""},
        {"/h/farm-1@tls/chat", 502, "upstream_unreachable",
         "connect to 127.0.0.1:1 (service http:tls): connection refused"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char head[2048];
        int fd = ws_open(cases[i].path, NULL, cases[i].status, head, sizeof head);
        cr_assert(strcasestr(head, "content-type: application/json"), "%s", head);
        ws_expect_error(fd, head, cases[i].error, cases[i].says);
    }
    /* a house nobody holds: the 504 of a request, JSON; one no one registered: 404 */
    char secret[65];
    h_register("ghost", secret);
    char head[2048];
    int fd = ws_open("/h/ghost@ws/chat", "X-Gp-Timeout-Ms: 300\r\n", 504, head, sizeof head);
    ws_expect_error(fd, head, "timeout", NULL);
    fd = ws_open("/h/nobody-here@ws/chat", NULL, 404, head, sizeof head);
    ws_expect_error(fd, head, "unknown_house", NULL);
    char *m = h_scrape(admin);
    cr_assert_eq(h_metric(m, "gp_bridge_http_upgrades_total{outcome=\"refused\"}") +
                     h_metric(m, "gp_bridge_http_upgrades_total{outcome=\"timeout\"}"),
                 3, "%s", m);
    cr_assert_eq(h_metric(m, "gp_bridge_http_upgrades_total{outcome=\"rejected\"}"), 1, "%s", m);
    cr_assert_eq(h_metric(m, "gp_bridge_http_websockets"), 0, "%s", m);
    free(m);
}

/* With a token file: no token 401, a token for other houses 403 (the usual JSON), the right
 * one opens, and the front door's token does not reach the upstream. */
Test(front, websocket_needs_a_token) {
    const char *tf = h_path("front.tokens");
    h_write_file(tf, TOKEN " farm-*\n" TOKEN_OTHER " other-*\n", 0600);
    const char *bx[] = {"--http-token-file", tf, NULL};
    ws_world(bx, 0);
    const struct {
        const char *auth;
        int status;
        const char *error;
    } cases[] = {
        {NULL, 401, "unauthorized"},
        {"Authorization: Bearer " TOKEN_OTHER "\r\n", 403, "forbidden"},
    };
    char head[2048]; /* a house the token does not reach */
    close(ws_open("/h/elsewhere@ws/chat", "Authorization: Bearer " TOKEN "\r\n", 403, head,
                  sizeof head));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int fd = ws_open("/h/farm-1@ws/chat", cases[i].auth, cases[i].status, head, sizeof head);
        ws_expect_error(fd, head, cases[i].error, NULL);
    }
    int fd =
        ws_open("/h/farm-1@ws/chat", "Authorization: Bearer " TOKEN "\r\n", 101, head, sizeof head);
    cr_assert(strcasestr(head, "X-Seen-Auth: no\r\n"), "%s", head);
    ws_echo_text(fd, "hi");
    close(fd); /* gone without a close handshake: its EOF ends the upstream's side too */
    int admin = h_admin_port(W.bridge);
    cr_assert(h_wait(ws_none_open, &admin, 15000), "the WebSocket is still counted open");
    cr_assert(h_wait_log(W.bridge, "event=http_websocket_closed", 10000));
}

/* A WebSocket client over TLS in python (the ssl module): the handshake, 300 KB echoed (sent
 * from a thread while the echo comes back), the close handshake and the end. */
static const char ws_tls_py[] =
    "import socket, ssl, sys, os, base64, struct, threading\n"
    "port, ca = int(sys.argv[1]), sys.argv[2]\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20),\n"
    "                    server_hostname='localhost')\n"
    "key = base64.b64encode(os.urandom(16)).decode()\n"
    "s.sendall(('GET /h/farm-1@ws/tls HTTP/1.1\\r\\nHost: localhost:%d\\r\\n'\n"
    "  'Upgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: %s\\r\\n'\n"
    "  'Sec-WebSocket-Version: 13\\r\\n\\r\\n' % (port, key)).encode())\n"
    "buf = b''\n"
    "while b'\\r\\n\\r\\n' not in buf:\n"
    "    d = s.recv(4096)\n"
    "    assert d, 'closed during the handshake: %r' % buf\n"
    "    buf += d\n"
    "head, buf = buf.split(b'\\r\\n\\r\\n', 1)\n"
    "print(head.decode().split('\\r\\n')[0])\n"
    "assert head.startswith(b'HTTP/1.1 101'), head\n"
    "assert b'X-Seen-Proto: https' in head, head\n"
    "def need(n):\n"
    "    global buf\n"
    "    while len(buf) < n:\n"
    "        d = s.recv(65536)\n"
    "        assert d, 'EOF with %d of %d' % (len(buf), n)\n"
    "        buf += d\n"
    "    out, buf = buf[:n], buf[n:]\n"
    "    return out\n"
    "def frame(op, p):\n"
    "    m = os.urandom(4)\n"
    "    n = len(p)\n"
    "    h = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else\n"
    "        bytes([0x80 | 126]) + struct.pack('>H', n) if n < 65536 else\n"
    "        bytes([0x80 | 127]) + struct.pack('>Q', n))\n"
    "    return h + m + bytes(b ^ m[i & 3] for i, b in enumerate(p))\n"
    "def read():\n"
    "    a, b = need(2)\n"
    "    n = b & 127\n"
    "    if n == 126: n = struct.unpack('>H', need(2))[0]\n"
    "    elif n == 127: n = struct.unpack('>Q', need(8))[0]\n"
    "    return a & 15, need(n)\n"
    "msg = os.urandom(300000)\n"
    "t = threading.Thread(target=lambda: s.sendall(frame(2, msg)))\n"
    "t.start()\n"
    "op, got = read()\n"
    "t.join()\n"
    "assert op == 2 and got == msg, 'the message came back changed'\n"
    "s.sendall(frame(8, b'\\x03\\xe8'))\n"
    "op, got = read()\n"
    "assert op == 8 and got == b'\\x03\\xe8', (op, got)\n"
    "try:\n"
    "    rest = s.recv(1)\n"
    "except ssl.SSLError as e:\n"
    "    rest = b''\n"
    "assert rest == b'', rest\n"
    "print('echo ok')\n";

/* The same through the HTTPS front door (its own certificate): the connection taken over
 * keeps its TLS session; the upstream is told X-Forwarded-Proto: https. */
Test(front, websocket_over_https) {
    char cert[700], key[700];
    cr_assert(
        h_self_signed("ec -pkeyopt ec_paramgen_curve:P-256", cert, sizeof cert, key, sizeof key),
        "openssl failed (see openssl.log)");
    const char *bx[] = {"--http-cert", cert, "--http-key", key, NULL};
    ws_world(bx, 1);
    const char *py = h_path("ws_tls.py");
    h_write_file(py, ws_tls_py, 0600);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", P);
    const char *argv[] = {"/usr/bin/python3", py, ps, cert, NULL};
    char *out = NULL, *err = NULL;
    size_t len = 0;
    int rc = h_run(argv, 60000, &out, &len, &err);
    cr_assert_eq(rc, 0, "python: %s %s", out ? out : "", err ? err : "");
    cr_assert(strstr(out, "HTTP/1.1 101 Switching Protocols"), "%s", out);
    cr_assert(strstr(out, "echo ok"), "%s", out);
    free(out);
    free(err);
}

/* --- an https:// upstream ------------------------------------------------------------------ */

/* The echo server over TLS with a fresh self-signed certificate (for localhost and 127.0.0.1:
 * cert and key, 700 bytes each), the house's HTTP upstream "wss" at https://127.0.0.1:<its
 * port>, trusted with --upstream-ca-file when trust is set; the front door and admin port.
 * Returns the echo server's port. */
static int wss_world(int trust, char *cert, char *key) {
    cr_assert(h_self_signed("ec -pkeyopt ec_paramgen_curve:P-256", cert, 700, key, 700),
              "openssl failed (see openssl.log)");
    const char *bx[] = {"--http-listen", "0", "--http-public", "--admin-listen", "0", NULL};
    h_world_up(&W, NULL, bx, NULL);
    int wport;
    ws_echo_start_with(&wport, cert, key);
    char svc[128];
    snprintf(svc, sizeof svc, "wss=https://127.0.0.1:%d", wport);
    const char *hx[] = {"--service", svc, trust ? "--upstream-ca-file" : NULL, cert, NULL};
    W.house = h_house_up(&W, "farm-1", W.secret, hx);
    P = http_port(W.bridge);
    cr_assert(P, "the bridge logged no front door port");
    return wport;
}

/* A binary message of n bytes (seeded) sent from a thread while its echo comes back: the
 * same bytes. */
static void ws_echo_binary(int fd, size_t n, const char *seed) {
    uint8_t *msg = h_prandom(n, seed), *got;
    size_t len;
    ws_bg b = {fd, msg, n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, ws_send_thread, &b), 0);
    cr_assert_eq(ws_recv(fd, &got, &len), 2);
    pthread_join(t, NULL);
    cr_assert_eq(len, n, "a message of %zu bytes came back with %zu", n, len);
    cr_assert(memcmp(got, msg, n) == 0, "the message of %zu bytes came back changed", n);
    free(got);
    free(msg);
}

/* What "flood N" answers: N bytes from the upstream (byte i is i % 251), in order, then
 * "flood done". */
static void ws_flood_recv(int fd, size_t total) {
    size_t got = 0;
    for (;;) {
        uint8_t *p;
        size_t n;
        int op = ws_recv(fd, &p, &n);
        if (op == 1) {
            cr_assert(n == 10 && memcmp(p, "flood done", 10) == 0);
            free(p);
            break;
        }
        cr_assert_eq(op, 2);
        for (size_t i = 0; i < n; i++)
            if (p[i] != (uint8_t)((got + i) % 251))
                cr_assert_fail("byte %zu changed", got + i);
        got += n;
        free(p);
    }
    cr_assert_eq(got, total);
}

/* "flood N", and its answer checked. */
static void ws_flood(int fd, size_t total) {
    char cmd[32];
    int cl = snprintf(cmd, sizeof cmd, "flood %zu", total);
    ws_send(fd, 1, (const uint8_t *)cmd, (size_t)cl);
    ws_flood_recv(fd, total);
}

/* A WebSocket through the front door to an https:// upstream with a self-signed certificate
 * the house trusts (--upstream-ca-file): the house's stream runs TLS to it and carries the
 * plaintext. The upstream's own 101, text and binary messages byte for byte (one of 300 KiB,
 * sent while its echo comes back), 4 MiB from the upstream in order (four credit windows
 * through TLS), the close handshake and the end; and a plain request to the same upstream
 * goes through curl with the same trust. */
Test(front, websocket_to_an_https_upstream) {
    char cert[700], key[700];
    wss_world(1, cert, key);
    char head[2048];
    int fd = ws_open("/h/farm-1@wss/chat?tls=1", NULL, 101, head, sizeof head);
    cr_assert(strcasestr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "%s",
              head);
    cr_assert(strcasestr(head, "X-Seen-Path: /chat?tls=1\r\n"), "%s", head);
    ws_echo_text(fd, "hello, https upstream");
    ws_echo_binary(fd, 1000, "wss-small");
    ws_echo_binary(fd, 300 << 10, "wss-big");
    ws_echo_text(fd, "after the big one");
    ws_flood(fd, 4u << 20);
    ws_echo_text(fd, "after the flood");
    ws_close_handshake(fd);
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 0, "the upstream's end reaches the client as EOF");
    close(fd);
    cr_assert(h_wait_log(W.house, "service=http:wss status=200 reason=ok", 1000));
    cr_assert(h_wait_log(W.house, "event=stream_close", 10000));
    cr_assert_eq(h_log_count(W.house, "event=stream_reset"), 0);

    resp r;
    curl(&r, P, "/h/farm-1@wss/", NULL);
    cr_assert_eq(r.status, 200, "%s%s", r.headers, r.body);
    cr_assert_str_eq(r.body, "over https\n");
    resp_free(&r);
}

/* Without --upstream-ca-file the house verifies with the system's CAs, which do not know the
 * upstream's self-signed certificate: the upgrade is refused 502 upstream_unreachable, saying
 * so and what to do, and so is a plain request (in curl's words). A house with
 * --upstream-insecure warns at start and takes the certificate unverified. */
Test(front, websocket_to_an_untrusted_https_upstream_is_502) {
    char cert[700], key[700];
    int wport = wss_world(0, cert, key);
    char head[2048];
    int fd = ws_open("/h/farm-1@wss/chat", NULL, 502, head, sizeof head);
    char *body = ws_body(fd, head);
    close(fd);
    cr_assert_str_eq(h_json_str(body, "error"), "upstream_unreachable", "%s", body);
    const char *msg = h_json_str(body, "message");
    cr_assert(strstr(msg, "TLS: the upstream's certificate is not trusted: "), "%s", body);
    cr_assert(strstr(msg, "--upstream-ca-file"), "%s", body);
    free(body);
    cr_assert_eq(h_log_count(W.house, "event=upstream_tls_insecure"), 0);

    resp r;
    curl(&r, P, "/h/farm-1@wss/", NULL);
    cr_assert_eq(r.status, 502, "%s%s", r.headers, r.body);
    cr_assert_str_eq(h_json_str(r.body, "error"), "upstream_unreachable", "%s", r.body);
    cr_assert(strstr(h_json_str(r.body, "message"), "certificate"), "%s", r.body);
    resp_free(&r);

    char svc[128], secret[65];
    snprintf(svc, sizeof svc, "wss=https://127.0.0.1:%d", wport);
    const char *hx[] = {"--service", svc, "--upstream-insecure", NULL};
    h_proc *insecure = h_house_up(&W, "farm-2", secret, hx);
    cr_assert(h_wait_log(insecure, "event=upstream_tls_insecure", 1000), "no warning");
    fd = ws_open("/h/farm-2@wss/chat", NULL, 101, head, sizeof head);
    ws_echo_text(fd, "unverified");
    ws_close_handshake(fd);
    close(fd);
}

/* A client that does not read while the upstream sends 24 MiB: the front door stops reading
 * sout past 1 MiB queued for it (the bytes wait in Redis, bounded by the stream's window, and
 * the house stops reading the upstream), and once the client reads, every byte arrives in
 * order. */
static int reads_paused(void *ud) {
    char *m = h_scrape(*(int *)ud);
    int yes = m && h_metric(m, "gp_bridge_http_reads_paused_total") >= 1;
    free(m);
    return yes;
}

/* Data bytes sout holds now (the one stream's of farm-1). */
static long sout_bytes(void) {
    redisReply *k = h_cmd("KEYS gp:{farm-1}:sout:*");
    long n = 0;
    for (size_t i = 0; k->type == REDIS_REPLY_ARRAY && i < k->elements; i++) {
        redisReply *e = h_cmd("XRANGE %s - +", k->element[i]->str);
        for (size_t j = 0; e->type == REDIS_REPLY_ARRAY && j < e->elements; j++) {
            const redisReply *fv = e->element[j]->element[1];
            for (size_t f = 0; f + 1 < fv->elements; f += 2)
                if (strcmp(fv->element[f]->str, "data") == 0)
                    n += (long)fv->element[f + 1]->len;
        }
        freeReplyObject(e);
    }
    freeReplyObject(k);
    return n;
}

static int sout_filled(void *ud) {
    (void)ud;
    return sout_bytes() >= (512 << 10);
}

Test(front, websocket_slow_client_is_paused_not_buffered) {
    ws_world(NULL, 1);
    int admin = h_admin_port(W.bridge);
    int fd = ws_connect(P);
    int small = 64 << 10; /* a small receive buffer: the bytes back up in the bridge first */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    char head[2048];
    cr_assert_eq(ws_handshake(fd, "/h/farm-1@ws/flood", NULL, head, sizeof head), 101, "%s", head);
    const size_t total = 24u << 20;
    char cmd[32];
    int cl = snprintf(cmd, sizeof cmd, "flood %zu", total);
    ws_send(fd, 1, (const uint8_t *)cmd, (size_t)cl);
    cr_assert(h_wait(reads_paused, &admin, 20000), "sout was never paused for the slow client");
    cr_assert(h_wait(sout_filled, NULL, 20000), "the bytes did not wait in Redis");
    long held = sout_bytes(); /* the window (1 MiB) and one entry at most: the house waits */
    cr_assert_leq(held, (1 << 20) + (64 << 10), "sout holds %ld bytes", held);
    ws_flood_recv(fd, total);
    close(fd);
    cr_assert(h_wait(ws_none_open, &admin, 15000), "the WebSocket is still counted open");
}

/* The front door on one bridge, the house held by another that is killed with kill -9 while a
 * WebSocket is open: the house holds the upstream's connection (its grace), reconnects, the
 * next bridge resumes the stream at the acknowledged offsets, and the same WebSocket echoes on
 * (the stream contract's guarantee). */
Test(front, websocket_survives_kill9_of_the_bridge_holding_the_house) {
    int wport;
    h_world_up(&W, NULL, NULL, NULL);
    ws_echo_start(&wport);
    char svc[128];
    snprintf(svc, sizeof svc, "ws=http://127.0.0.1:%d", wport);
    const char *hx[] = {"--service", svc, NULL};
    W.house = h_house_up(&W, "farm-1", W.secret, hx);
    int bport;
    const char *fx[] = {"--http-listen", "0", "--http-public", "--bridge-id", "b-front", NULL};
    h_proc *front = h_bridge_start(0, &bport, fx, 1);
    P = http_port(front);
    cr_assert(P);
    char head[2048];
    int fd = ws_open("/h/farm-1@ws/live", NULL, 101, head, sizeof head);
    ws_echo_text(fd, "before");
    uint8_t *got;
    size_t n;

    h_kill9(W.bridge);
    ws_send(fd, 1, (const uint8_t *)"during", 6); /* waits in sin meanwhile */
    W.bridge = h_bridge_start(W.bridge_port, NULL, NULL, 1);
    cr_assert(h_wait_connected("farm-1", 20000), "the house did not reconnect");
    cr_assert_eq(ws_recv(fd, &got, &n), 1);
    cr_assert(n == 6 && memcmp(got, "during", 6) == 0, "%.*s", (int)n, got);
    free(got);
    ws_echo_text(fd, "after");
    ws_close_handshake(fd);
    close(fd);
}

/* An upgrade the upstream declines (403, not 101): its answer reaches the client, and nothing
 * the client sends after its request head does reach the upstream (the connection carries no
 * second request past the door's routing and X-Forwarded-*): the upstream sees the end of the
 * input, answers nothing more, and the client sees the end. */
Test(front, websocket_declined_by_the_upstream_carries_nothing_more) {
    ws_world(NULL, 1);
    int admin = h_admin_port(W.bridge);
    char head[2048];
    int fd = ws_open("/h/farm-1@ws/refuse", NULL, 403, head, sizeof head);
    static const char more[] =
        "GET /admin HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
    send(fd, more, sizeof more - 1, MSG_NOSIGNAL);
    char rest[64];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, rest + n, sizeof rest - 1 - n, 0);
        cr_assert(r >= 0, "no end of the connection");
        if (r == 0)
            break;
        n += (size_t)r;
        cr_assert_lt(n, sizeof rest - 1);
    }
    rest[n] = '\0';
    cr_assert_str_eq(rest, "no", "the client's bytes after the head reached the upstream");
    close(fd);
    char *m = h_scrape(admin);
    cr_assert_eq(h_metric(m, "gp_bridge_http_upgrades_total{outcome=\"declined\"}"), 1, "%s", m);
    free(m);
    cr_assert(h_wait(ws_none_open, &admin, 15000), "the WebSocket is still counted open");
}

/* Hostile ingress: over-long headers get 431 and the connection ends; a slowloris holding
 * more half-sent requests than the door keeps connections (1024) loses its oldest ones, and
 * a real request is still answered. */
Test(front, long_headers_and_slowloris) {
    public_world(NULL);
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    /* 431: 200 headers of 1 KiB */
    int fd = h_dial(P);
    cr_assert_geq(fd, 0);
    char line[1100];
    const char *head = "GET /h/farm-1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    memset(line, 'v', sizeof line);
    for (int i = 0; i < 200; i++) {
        int n = snprintf(line, sizeof line, "X-Big-%d: ", i);
        memset(line + n, 'v', 1024);
        memcpy(line + n + 1024, "\r\n", 2);
        if (write(fd, line, (size_t)n + 1026) < 0)
            break; /* the door may have answered and closed already */
    }
    char buf[512] = {0};
    ssize_t got = read(fd, buf, sizeof buf - 1);
    cr_assert_gt(got, 0, "no answer to 200 KiB of headers");
    cr_assert(strncmp(buf, "HTTP/1.1 431", 12) == 0, "answer: %.60s", buf);
    close(fd);

    /* slowloris: 1100 connections each with half a request */
    enum { N = 1100 };
    static int fds[N];
    const char *half = "GET /h/farm-1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    for (int i = 0; i < N; i++) {
        fds[i] = h_dial(P);
        cr_assert_geq(fds[i], 0, "dial %d", i);
        cr_assert_eq(write(fds[i], half, strlen(half)), (ssize_t)strlen(half));
    }
    resp r;
    echo(&r, "/h/farm-1/echo", NULL); /* answered while they hang */
    resp_free(&r);
    /* the oldest were closed to make room: the first connection reads EOF (or a reset) */
    struct pollfd pf = {.fd = fds[0], .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1, "the oldest half request was never closed");
    cr_assert_leq(read(fds[0], buf, sizeof buf), 0, "the oldest got an answer, not a close");
    for (int i = 0; i < N; i++)
        close(fds[i]);
}
