/* cli.c — the `ghostport` command-line tool against real processes: house add/list/rm (output,
 * what lands in Redis, exit codes) and request (curl -i style output and exit codes). */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(cli, .init = h_init, .fini = h_fini, .timeout = 120);

/* Runs the CLI; returns the exit code, output in *out (caller frees) and stderr in *err. */
#define CLI(out, err, ...) h_cli(out, NULL, err, (const char *const[]){__VA_ARGS__, NULL})

static int is_hex64(const char *s) {
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return !isxdigit((unsigned char)s[64]);
}

/* The 64-hex secret after "secret: " in add's output (static buffer). */
static const char *secret_of(const char *out) {
    static char s[65];
    const char *p = strstr(out, "secret: ");
    cr_assert(p, "no 'secret: ' line in: %s", out);
    memcpy(s, p + 8, 64);
    s[64] = '\0';
    cr_assert(is_hex64(p + 8), "secret is not 64 hex digits: %s", out);
    return s;
}

Test(cli, house_add_list_rm) {
    h_redis_start(0);
    char *out, *err;

    cr_assert_eq(
        CLI(&out, &err, "house", "add", "farm-1", "--label", "site=north", "--label", "kind=pump"),
        0, "add failed: %s", err);
    char secret[65];
    snprintf(secret, sizeof secret, "%s", secret_of(out));
    cr_assert(strstr(out, "ghostport-house"), "add does not say how to start the house: %s", out);
    /* ... with the secret in a file: printed once, never in a command to type. */
    cr_assert(strstr(out, "--secret-file") && !strstr(out, "GP_SECRET") &&
                  !strstr(strstr(out, secret) + 1, secret),
              "the hint puts the secret on a command line: %s", out);
    free(out), free(err);
    redisReply *r = h_cmd("HGET gp:{farm-1}:house secret");
    cr_assert(r->type == REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, secret, "stored secret differs from the printed one");
    freeReplyObject(r);
    r = h_cmd("HGET gp:{farm-1}:house labels");
    cr_assert_str_eq(r->str, "{\"kind\":\"pump\",\"site\":\"north\"}");
    freeReplyObject(r);
    cr_assert_eq(h_int("SISMEMBER gp:houses farm-1"), 1);
    cr_assert_gt(h_int("HGET gp:{farm-1}:house created"), 1600000000000LL);

    /* No silent overwrite. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-1"), 1);
    cr_assert(strstr(err, "already exists"), "stderr: %s", err);
    free(out), free(err);
    r = h_cmd("HGET gp:{farm-1}:house secret");
    cr_assert_str_eq(r->str, secret, "secret changed without --force");
    freeReplyObject(r);

    /* Invalid ids are usage errors. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "bad id"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "add", "x{y}"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "add"), 2);
    free(out), free(err);

    /* -q prints only the secret. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-2", "-q"), 0);
    cr_assert(is_hex64(out) && out[64] == '\n' && out[65] == '\0', "-q output: '%s'", out);
    free(out), free(err);

    /* list: both, offline, with labels. */
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "list: %s", err);
    cr_assert(strstr(out, "farm-1") && strstr(out, "farm-2"), "list: %s", out);
    cr_assert(strstr(out, "offline"), "list: %s", out);
    cr_assert(strstr(out, "\"site\":\"north\""), "labels missing: %s", out);
    free(out), free(err);

    /* Connected: list shows the bridge, transport and rtt column. */
    int up, bport;
    h_upstream_start(&up);
    const char *bx[] = {"--bridge-id", "b-test", NULL};
    h_bridge_start(0, &bport, bx, 1);
    char upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_house_start("farm-1", secret, bport, upurl, NULL);
    cr_assert(h_wait_connected("farm-1", 15000), "house with the CLI's secret did not connect");
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0);
    char *line = strstr(out, "farm-1");
    cr_assert(line && strstr(line, "online") && strstr(line, "b-test") && strstr(line, "ws"),
              "list does not show the live state: %s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list", "--json"), 0);
    cr_assert(strstr(out, "\"id\":\"farm-1\"") && strstr(out, "\"connected\":true") &&
                  strstr(out, "\"bridge\":\"b-test\""),
              "json: %s", out);
    free(out), free(err);

    /* --force replaces the secret. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-2", "--force"), 0);
    cr_assert(strstr(out, "replaced"), "force output: %s", out);
    free(out), free(err);

    /* rm: says what it removed and what it kept. */
    h_request("farm-2", "queued-1", "GET", "/", NULL, NULL, 0, 60000);
    cr_assert_eq(CLI(&out, &err, "house", "rm", "farm-2"), 0, "rm: %s", err);
    cr_assert(strstr(out, "removed") && strstr(out, "gp:{farm-2}:req") && strstr(out, "kept"),
              "rm output: %s", out);
    free(out), free(err);
    cr_assert_eq(h_int("EXISTS gp:{farm-2}:house"), 0);
    cr_assert_eq(h_int("SISMEMBER gp:houses farm-2"), 0);
    cr_assert_eq(h_int("XLEN gp:{farm-2}:req"), 1, "rm deleted the request stream silently");
    cr_assert_eq(CLI(&out, &err, "house", "rm", "farm-2"), 1, "rm of a missing house");
    free(out), free(err);
    /* --purge deletes the stream too. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-2", "-q"), 0);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "rm", "farm-2", "--purge"), 0);
    cr_assert(strstr(out, "deleted"), "purge output: %s", out);
    free(out), free(err);
    cr_assert_eq(h_int("EXISTS gp:{farm-2}:req"), 0);

    /* Redis unreachable: exit 2. */
    char bad[64];
    snprintf(bad, sizeof bad, "127.0.0.1:%d", h_free_port());
    cr_assert_eq(CLI(&out, &err, "--redis", bad, "house", "list"), 2);
    cr_assert(strstr(err, "connect"), "stderr: %s", err);
    free(out), free(err);
}

Test(cli, master_key_seals_secret) {
    h_redis_start(0);
    const char *mk = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "--master-key", mk, "house", "add", "sealed", "-q"), 0, "%s", err);
    char secret[65];
    snprintf(secret, sizeof secret, "%.64s", out);
    free(out), free(err);
    redisReply *r = h_cmd("HGET gp:{sealed}:house secret");
    cr_assert(r->type == REDIS_REPLY_STRING && strncmp(r->str, "enc1:", 5) == 0,
              "secret not sealed at rest: %s", r->str);
    cr_assert(!strstr(r->str, secret), "plain secret visible in Redis");
    freeReplyObject(r);
    cr_assert_eq(CLI(&out, &err, "--master-key", "abc", "house", "add", "x"), 2);
    free(out), free(err);

    /* A bridge with the same key accepts the house. */
    int up, bport;
    h_upstream_start(&up);
    const char *bx[] = {"--master-key", mk, NULL};
    h_bridge_start(0, &bport, bx, 1);
    char upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_house_start("sealed", secret, bport, upurl, NULL);
    cr_assert(h_wait_connected("sealed", 15000), "bridge with the master key refused the house");
}

Test(cli, request_output_and_exit_codes) {
    h_redis_start(0);
    int up, bport;
    h_upstream_start(&up);
    h_bridge_start(0, &bport, NULL, 1);
    char sec[65], sec2[65], upurl[64];
    h_register("h1", sec);
    h_register("away", sec2);
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    h_house_start("h1", sec, bport, upurl, NULL);
    cr_assert(h_wait_connected("h1", 15000));

    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET", "/echo?x=1", "-H", "X-Thing: yes"), 0,
                 "stderr: %s", err);
    cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line: %s", out);
    cr_assert(strcasestr(out, "\r\ncontent-type: application/json\r\n"), "headers: %s", out);
    char *body = strstr(out, "\r\n\r\n");
    cr_assert(body, "no blank line between headers and body: %s", out);
    body += 4;
    cr_assert_str_eq(h_json_str(body, "method"), "GET");
    cr_assert(strstr(body, "\"x-thing\": \"yes\""), "header not sent: %s", body);
    free(out), free(err);

    /* Binary body from a file, body-only output: exact bytes. */
    char path[600];
    snprintf(path, sizeof path, "%s/blob.bin", h_dir());
    uint8_t *blob = h_prandom(300000, "cli");
    blob[5] = 0;
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(blob, 1, 300000, f);
    fclose(f);
    char at[620];
    snprintf(at, sizeof at, "@%s", path);
    size_t n;
    const char *args[] = {"request",       "h1", "PUT", "/echo?raw=1",
                          "--data-binary", at,   "-H",  "Content-Type: application/octet-stream",
                          "--body-only",   NULL};
    cr_assert_eq(h_cli(&out, &n, &err, args), 0, "stderr: %s", err);
    cr_assert_eq(n, 300000, "body-only printed %zu bytes", n);
    cr_assert(memcmp(out, blob, n) == 0, "body bytes differ");
    free(out), free(err), free(blob);

    /* -d literal body. */
    cr_assert_eq(CLI(&out, &err, "request", "h1", "POST", "/echo", "-d", "hello"), 0);
    cr_assert(strstr(out, "\"body_len\": 5"), "%s", out);
    free(out), free(err);

    /* Upstream status >= 400: printed, exit 1. */
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET", "/status/404"), 1);
    cr_assert(strncmp(out, "HTTP/1.1 404", 12) == 0, "%s", out);
    free(out), free(err);

    /* Error reply: exit 1, error and message on stderr. */
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET", "/echo", "--service", "nope"), 1);
    cr_assert(strncmp(out, "HTTP/1.1 403", 12) == 0, "%s", out);
    cr_assert(strstr(err, "forbidden_upstream"), "stderr: %s", err);
    free(out), free(err);

    /* Usage errors: exit 2. */
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET", "/x", "--timeout", "soon"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "request", "nobody", "GET", "/x"), 6, "unregistered house");
    cr_assert(strstr(err, "no house nobody"), "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "frobnicate"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "--help"), 0);
    cr_assert(strstr(out, "house add") && strstr(out, "request"), "%s", out);
    free(out), free(err);

    /* A house nobody holds: the bridge answers 504 at the deadline: exit 1. */
    cr_assert_eq(CLI(&out, &err, "request", "away", "GET", "/", "--timeout", "500"), 1);
    cr_assert(strncmp(out, "HTTP/1.1 504", 12) == 0, "%s", out);
    cr_assert(strstr(err, "offline"), "no offline note: %s", err);
    free(out), free(err);
}

Test(cli, request_without_bridge_exits_3) {
    h_redis_start(0);
    char sec[65];
    h_register("h1", sec);
    char *out, *err;
    uint64_t t0 = h_now_ms();
    cr_assert_eq(CLI(&out, &err, "request", "h1", "GET", "/", "--timeout", "200"), 3);
    cr_assert(strstr(err, "no reply"), "stderr: %s", err);
    cr_assert_lt(h_now_ms() - t0, 10000, "waited far past the deadline");
    free(out), free(err);
}

/* No terminal control character of someone else's text reaches the terminal: C0 (ESC, BEL,
 * CR, LF), DEL, C1 as UTF-8 (U+009D: OSC, U+009B: CSI) or as raw bytes. */
static void assert_no_controls(const char *what, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int c1_utf8 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
        cr_assert(!(*p < 0x20 && *p != '\n' && *p != '\r') && *p != 0x7f && !c1_utf8 &&
                      !(*p >= 0x80 && *p <= 0x9f &&
                        (p == (const unsigned char *)s || (p[-1] & 0xe0) != 0xc0)),
                  "%s: control byte 0x%02x at offset %td: %s", what, *p, (const char *)p - s, s);
    }
}

/* A hostile house's reply, written straight into Redis as a bridge would (before the CLI
 * asks: it reads the reply stream from its start): header values with CR/LF (a forged
 * Set-Cookie line), an OSC title sequence in C0 and C1 form, a raw 0x9b byte. */
Test(cli, request_escapes_control_characters) {
    h_redis_start(0);
    char sec[65];
    h_register("h1", sec);
    const char *hdrs = "{\"x-split\":\"a\\r\\nSet-Cookie: stolen=1\","
                       "\"x-title\":\"\\u001b]0;pwned\\u0007\","
                       "\"x-c1\":\"\\u009d0;pwned\\u009c\","
                       "\"x-fine\":\"caf\\u00e9\"}";
    redisReply *r =
        h_cmd("XADD gp:rep:evil-1 * id evil-1 status 200 headers %s body ok final 1", hdrs);
    freeReplyObject(r);
    char *out, *err;
    cr_assert_eq(
        CLI(&out, &err, "request", "h1", "GET", "/", "--id", "evil-1", "--timeout", "2000"), 0,
        "stderr: %s", err);
    /* Every line of the head is one of ours: no line starts with the forged header. */
    cr_assert_null(strstr(out, "\nSet-Cookie"), "a header value forged a line:\n%s", out);
    cr_assert(strstr(out, "x-split: a\\r\\nSet-Cookie: stolen=1\r\n"), "%s", out);
    cr_assert(strstr(out, "x-title: \\x1b]0;pwned\\x07\r\n"), "%s", out);
    cr_assert(strstr(out, "x-c1: \\u009d0;pwned\\u009c\r\n"), "%s", out);
    cr_assert(strstr(out, "x-fine: caf\xc3\xa9\r\n"), "valid UTF-8 is kept: %s", out);
    assert_no_controls("request output", out);
    free(out), free(err);

    /* An error reply: `error` and `message` go to stderr, escaped too. */
    r = h_cmd("XADD gp:rep:evil-2 * id evil-2 status 502 error %b message %b body '' final 1",
              "bad\x1b[2J", (size_t)7,
              "up\xc2\x9b"
              "2J\r\nok \x9b"
              "31m",
              (size_t)15);
    freeReplyObject(r);
    cr_assert_eq(
        CLI(&out, &err, "request", "h1", "GET", "/", "--id", "evil-2", "--timeout", "2000"), 1);
    cr_assert(strstr(err, "502 bad\\x1b[2J: up\\u009b2J\\r\\nok \\x9b31m"), "stderr: %s", err);
    assert_no_controls("request stderr", err);
    free(out), free(err);
}

/* `house list` and `top --once` print labels, bridge ids and recent requests that others
 * wrote: C1 controls (U+009D) are escaped as well as C0. */
Test(cli, list_and_top_escape_control_characters) {
    h_redis_start(0);
    char sec[65];
    h_register("h1", sec);
    /* As `house add --label k=...` stores it: JSON, with C1 characters as raw UTF-8. */
    const char *labels = "{\"k\":\"\xc2\x9d"
                         "0;pwned\xc2\x9c\"}";
    redisReply *r = h_cmd("HSET gp:{h1}:house labels %s", labels);
    freeReplyObject(r);
    r = h_cmd("HSET gp:{h1}:state bridge %b transport ws since 1 last_seen 1",
              "b\xc2\x9d"
              "1",
              (size_t)5);
    freeReplyObject(r);
    r = h_cmd("LPUSH gp:{h1}:recent %s",
              "{\"ts_ms\":1,\"id\":\"r1\",\"method\":\"GET\",\"path\":\"/\\u009d0;t\\u009c\","
              "\"status\":502,\"ms\":3,\"error\":\"e\\u009b2J\\u001b[2J\"}");
    freeReplyObject(r);
    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "%s", err);
    assert_no_controls("house list", out);
    cr_assert(strstr(out, "\\u009d0;pwned\\u009c"), "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list", "--json"), 0, "%s", err);
    assert_no_controls("house list --json", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0", "--house", "h1"), 0, "%s",
                 err);
    assert_no_controls("top --once --house", out);
    cr_assert(strstr(out, "/\\u009d0;t\\u009c"), "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0"), 0, "%s", err);
    assert_no_controls("top --once", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--json", "--house", "h1"), 0, "%s", err);
    assert_no_controls("top --json", out);
    free(out), free(err);
}

/* The HGET of field f of key k as a string (static buffer; "(nil)" when absent). */
static const char *hget(const char *k, const char *f) {
    static char v[256];
    redisReply *r = h_cmd("HGET %s %s", k, f);
    snprintf(v, sizeof v, "%s", r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
    freeReplyObject(r);
    return v;
}

/* The line of `house list` output starting with id (static buffer, without its newline). */
static const char *list_line(const char *out, const char *id) {
    static char l[1024];
    size_t n = strlen(id);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, id, n) == 0 && p[n] == ' ') {
            size_t len = strcspn(p, "\n");
            snprintf(l, sizeof l, "%.*s", (int)len, p);
            return l;
        }
    cr_assert_fail("no line for %s in:\n%s", id, out);
    return NULL;
}

/* The column where `what` starts in line (-1: not there). */
static long col(const char *line, const char *what) {
    const char *p = strstr(line, what);
    return p ? p - line : -1;
}

/* The L3 tunnel's settings of houses (house add --tun-addr/--tun-route, house tun, list, rm),
 * against pools written by hand as a bridge with --tun records them (store_tun.h). */
Test(cli, house_tun_addresses_and_routes) {
    h_redis_start(0);
    char *out, *err;

    /* No bridge has recorded its pools: a fixed address is refused, and nothing written. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-1", "--tun-addr", "100.96.0.7"), 1);
    cr_assert(strstr(err, "no bridge has started with --tun yet, so the pools are unknown; start "
                          "one first, or leave --tun-addr out: the house gets an address from "
                          "the pool when it first asks"),
              "stderr: %s", err);
    free(out), free(err);
    cr_assert_eq(h_int("EXISTS gp:{t-1}:house"), 0, "added without its address");

    freeReplyObject(h_cmd("HSET gp:tun pool4 100.96.0.0/16 pool6 fd7a:6770::/64"));
    /* 100.96.0.1 is index 0 (the bridges'), so 100.96.0.7 is index 6, and so is fd7a:6770::7.
     * Routes: canonical, once each, comma-separated or repeated. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-1", "--tun-addr", "100.96.0.7", "--tun-route",
                     "10.1.2.0/24", "--tun-route", "fd00:0:0::/64, 10.1.2.0/24"),
                 0, "%s", err);
    cr_assert(strstr(out, "L3 addresses: 100.96.0.7, fd7a:6770::7"), "%s", out);
    cr_assert(strstr(out, "10.1.2.0/24, fd00::/64"), "%s", out);
    secret_of(out);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "h:t-1"), "6");
    cr_assert_str_eq(hget("gp:tun", "i:6"), "t-1");
    cr_assert_str_eq(hget("gp:{t-1}:house", "tun_routes"), "10.1.2.0/24,fd00::/64");

    /* Refusals, each naming what is wrong; t-2 is never added by them. */
    struct {
        const char *opt, *val, *msg;
        int rc;
    } bad[] = {
        {"--tun-addr", "fd7a:6770::7", "L3 address fd7a:6770::7 is taken by house t-1", 1},
        {"--tun-addr", "100.97.0.1", "100.97.0.1 is outside the IPv4 pool 100.96.0.0/16", 1},
        {"--tun-addr", "100.96.0.1", "100.96.0.1 is the bridges' own address", 1},
        {"--tun-addr", "fd7a:6770::1", "the bridges' own address in the pool fd7a:6770::/64", 1},
        {"--tun-addr", "100.96.0.0",
         "is in the IPv4 pool 100.96.0.0/16, but is not one of its "
         "host addresses",
         1},
        {"--tun-addr", "fd7a:6770::1:0:0", "the IPv4 pool 100.96.0.0/16 has no index", 1},
        {"--tun-addr", "fd7a:6770::40:0:0:1", "past 2^53", 1},
        {"--tun-addr", "100.96.7", "'100.96.7' is not an IPv4 or IPv6 address", 2},
        {"--tun-route", "10.1.2.3/24",
         "--tun-route: \"10.1.2.3/24\" has bits set past /24 (the network is 10.1.2.0/24)", 2},
        {"--tun-route", "10.1.2.0/33", "prefix length \"33\" is not a number from 0 to 32", 2},
        {"--tun-route", "fd00::/64,", "an empty prefix", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(CLI(&out, &err, "house", "add", "t-2", bad[i].opt, bad[i].val), bad[i].rc,
                     "%s %s: %s", bad[i].opt, bad[i].val, err);
        cr_assert(strstr(err, bad[i].msg), "%s %s: stderr: %s", bad[i].opt, bad[i].val, err);
        free(out), free(err);
    }
    cr_assert_eq(h_int("EXISTS gp:{t-2}:house"), 0, "added despite a refusal");
    /* A house that exists: refused before its address is claimed. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-1", "--tun-addr", "100.96.0.20"), 1);
    cr_assert(strstr(err, "already exists"), "%s", err);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:tun i:19"), 0, "an address claimed for a refused add");

    /* An IPv6 address gives the same index in the IPv4 pool. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-2", "--tun-addr", "fd7a:6770::9", "-q"), 0,
                 "%s", err);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "h:t-2"), "8");

    /* house tun: shows, changes (taken refused), frees, sets and clears routes. */
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2"), 0, "%s", err);
    cr_assert(strstr(out, "address: 100.96.0.9, fd7a:6770::9 (pool index 8)") &&
                  strstr(out, "routes:  none"),
              "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--addr", "100.96.0.7"), 1);
    cr_assert(strstr(err, "taken by house t-1"), "%s", err);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "h:t-2"), "8", "a refused change changed it");
    cr_assert_eq(
        CLI(&out, &err, "house", "tun", "t-2", "--addr", "100.96.1.0", "--route", "192.168.7.0/24"),
        0, "%s", err);
    cr_assert(strstr(out, "100.96.1.0, fd7a:6770::100 (pool index 255)") &&
                  strstr(out, "routes:  192.168.7.0/24"),
              "%s", out);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "h:t-2"), "255");
    cr_assert_str_eq(hget("gp:tun", "i:255"), "t-2");
    cr_assert_eq(h_int("HEXISTS gp:tun i:8"), 0, "the old index is not freed");
    cr_assert_str_eq(hget("gp:{t-2}:house", "tun_routes"), "192.168.7.0/24");
    /* A subnet goes to one house: a route overlapping one t-1 may route is refused, whichever
     * holds the other, IPv4 or IPv6, and nothing changes. */
    struct {
        const char *route, *msg;
    } overlap[] = {
        {"10.1.0.0/16", "route 10.1.0.0/16 overlaps 10.1.2.0/24, which house t-1 may route"},
        {"10.1.2.128/25", "route 10.1.2.128/25 overlaps 10.1.2.0/24, which house t-1 may route"},
        {"0.0.0.0/0", "route 0.0.0.0/0 overlaps 10.1.2.0/24"},
        {"fd00::/8", "route fd00::/8 overlaps fd00::/64, which house t-1 may route"},
    };
    for (size_t i = 0; i < sizeof overlap / sizeof overlap[0]; i++) {
        cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--route", "172.16.0.0/12", "--route",
                         overlap[i].route),
                     1, "%s: %s", overlap[i].route, err);
        cr_assert(strstr(err, overlap[i].msg), "%s: stderr: %s", overlap[i].route, err);
        free(out), free(err);
        cr_assert_str_eq(hget("gp:{t-2}:house", "tun_routes"), "192.168.7.0/24");
    }
    /* Next to it (10.1.3.0/24), and the same house again with its own: fine. */
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--route", "192.168.7.0/24,10.1.3.0/24"), 0,
                 "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-1", "--route", "10.1.2.0/24,fd00::/64"), 0,
                 "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--no-routes"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:{t-2}:house tun_routes"), 0);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--addr", "auto"), 0, "%s", err);
    cr_assert(strstr(out, "freed") && strstr(out, "address: none yet"), "%s", out);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:tun h:t-2"), 0);
    cr_assert_eq(h_int("HEXISTS gp:tun i:255"), 0);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "nobody"), 1);
    cr_assert(strstr(err, "no house 'nobody'"), "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--route", "10.0.0.0/8", "--no-routes"), 2);
    free(out), free(err);

    /* list: the TUN column, aligned; --json's tun_addr and tun_routes. */
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "%s", err);
    const char *head = out;
    char l1[1024], l2[1024];
    snprintf(l1, sizeof l1, "%s", list_line(out, "t-1"));
    snprintf(l2, sizeof l2, "%s", list_line(out, "t-2"));
    cr_assert_eq(col(l1, "100.96.0.7"), col(head, "TUN"), "TUN column:\n%s", out);
    long tc = col(head, "TUN");
    cr_assert(tc > 0 && strncmp(l2 + tc - 1, " - ", 3) == 0, "TUN column:\n%s", out);
    cr_assert_eq(strrchr(l1, ' ') + 1 - l1, col(head, "LABELS"), "LABELS column:\n%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list", "--json"), 0, "%s", err);
    cr_assert(strstr(out, "\"tun_addr\":[\"100.96.0.7\",\"fd7a:6770::7\"],"
                          "\"tun_routes\":[\"10.1.2.0/24\",\"fd00::/64\"]"),
              "%s", out);
    cr_assert(strstr(out, "\"tun_addr\":[],\"tun_routes\":[]"), "t-2: %s", out);
    free(out), free(err);
    /* Bridges with an IPv6 pool only: the column shows that address, and widens. */
    freeReplyObject(h_cmd("HSET gp:tun pool4 %s", ""));
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "%s", err);
    head = out;
    snprintf(l1, sizeof l1, "%s", list_line(out, "t-1"));
    cr_assert_eq(col(l1, "fd7a:6770::7"), col(head, "TUN"), "%s", out);
    cr_assert_eq(strrchr(l1, ' ') + 1 - l1, col(head, "LABELS"), "LABELS column:\n%s", out);
    free(out), free(err);
    freeReplyObject(h_cmd("HSET gp:tun pool4 100.96.0.0/16"));

    /* --force (a new secret) keeps the address and the routes. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-1", "--force", "-q"), 0, "%s", err);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "h:t-1"), "6");
    cr_assert_str_eq(hget("gp:{t-1}:house", "tun_routes"), "10.1.2.0/24,fd00::/64");

    /* rm frees the index, and says so; the address is free for the next house. */
    cr_assert_eq(CLI(&out, &err, "house", "rm", "t-1"), 0, "%s", err);
    cr_assert(strstr(out, "L3 address 100.96.0.7, fd7a:6770::7 freed"), "%s", out);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:tun h:t-1"), 0);
    cr_assert_eq(h_int("HEXISTS gp:tun i:6"), 0);
    /* And its routes' claim: t-2 may now route what t-1 could. */
    cr_assert_eq(h_int("HEXISTS gp:tun r:t-1"), 0);
    cr_assert_eq(CLI(&out, &err, "house", "tun", "t-2", "--route", "10.1.0.0/16"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "rm", "t-2"), 0, "%s", err);
    cr_assert_null(strstr(out, "freed"), "t-2 had no address: %s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "add", "t-3", "--tun-addr", "100.96.0.7", "-q"), 0, "%s",
                 err);
    free(out), free(err);
    cr_assert_str_eq(hget("gp:tun", "i:6"), "t-3");
}
