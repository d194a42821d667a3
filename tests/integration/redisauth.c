/* redisauth.c — Redis with a password and TLS, from the outside: a wrong or missing password
 * is a clear error (the bridge logs it and /readyz says redis_auth_failed while it keeps
 * retrying; the CLI exits 2 with the message), the password never reaches a log, a TLS
 * server whose certificate is not trusted is refused (never a plain-text fallback), and a
 * restarted Redis is logged into again. Each test sets its own GP_TEST_REDIS mode. */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(redisauth, .init = h_init, .fini = h_fini, .timeout = 120);

static int g_bport; /* the last bridge's house port */

/* A bridge with an admin port on `url` (NULL: the harness's). */
static h_proc *bridge(const char *url, int *aport) {
    const char *extra[] = {"--redis", url ? url : h_redis_url(), "--admin-listen", "0", NULL};
    h_proc *b = h_bridge_start(0, &g_bport, extra, 1);
    *aport = h_admin_port(b);
    cr_assert(*aport > 0, "no admin port logged");
    return b;
}

struct ready {
    int port, want;
    const char *reason;
};
static int ready_is(void *ud) {
    struct ready *r = ud;
    char *body = NULL;
    int st = h_http(r->port, "GET", "/readyz", NULL, NULL, 0, &body, NULL);
    int ok = st == r->want && (!r->reason || (body && strstr(body, r->reason)));
    free(body);
    return ok;
}

/* The URL of the harness's Redis with another password (percent-encoded by the caller). */
static void url_with_password(char *out, size_t cap, const char *pw) {
    snprintf(out, cap, "%s://:%s@127.0.0.1:%d/0",
             strncmp(h_redis_url(), "rediss", 6) == 0 ? "rediss" : "redis", pw, h_redis_port());
}

static void roundtrip(const char *house, const char *frame) {
    h_request(house, frame, "GET", "/echo", NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply(frame, NULL, 15000, &r), "no reply");
    cr_assert_eq(r.status, 200, "status %d", r.status);
    h_reply_free(&r);
}

static int file_has(const char *path, const char *needle) {
    size_t len;
    char *t = h_read_file(path, &len);
    int found = t && memmem(t, len, needle, strlen(needle)) != NULL;
    free(t);
    return found;
}

Test(redisauth, wrong_password_bridge_says_so_and_recovers) {
    h_redis_mode_set("auth");
    h_redis_start(0);
    char url[512];
    url_with_password(url, sizeof url, "wrong-Secret-42");
    int aport;
    h_proc *b = bridge(url, &aport);
    cr_assert(h_wait_log(b, "event=redis_auth_failed", 10000), "no redis_auth_failed line");
    cr_assert(h_log_count(b, "WRONGPASS") > 0, "the line does not say WRONGPASS");
    cr_assert(h_log_count(b, "--redis-password-file") > 0, "the line does not say what to do");
    struct ready rd = {aport, 503, "\"reason\":\"redis_auth_failed\""};
    cr_assert(h_wait(ready_is, &rd, 10000), "/readyz does not say redis_auth_failed");
    /* It keeps retrying: once Redis takes that password, the bridge comes up by itself. */
    redisReply *r = h_cmd("CONFIG SET requirepass wrong-Secret-42");
    freeReplyObject(r);
    rd = (struct ready){aport, 200, NULL};
    cr_assert(h_wait(ready_is, &rd, 15000), "the bridge did not recover with the right password");
    cr_assert(h_log_count(b, "auth=password") > 0, "redis_up does not say it authenticated");
    /* One error line per outage, not one per retry. */
    cr_assert_leq(h_log_count(b, "level=error event=redis_auth_failed"), 2);
    cr_assert(!file_has(b->log, "wrong-Secret-42"), "the password is in the bridge's log");
}

Test(redisauth, missing_password_is_noauth) {
    h_redis_mode_set("auth");
    h_redis_start(0);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", h_redis_port());
    int aport;
    h_proc *b = bridge(url, &aport);
    cr_assert(h_wait_log(b, "event=redis_auth_failed", 10000), "no redis_auth_failed line");
    cr_assert(h_log_count(b, "NOAUTH") > 0 && h_log_count(b, "requires a password") > 0,
              "the line does not say a password is needed");
    struct ready rd = {aport, 503, "\"reason\":\"redis_auth_failed\""};
    cr_assert(h_wait(ready_is, &rd, 10000), "/readyz does not say redis_auth_failed");
}

Test(redisauth, cli_wrong_or_missing_password_exits_2) {
    h_redis_mode_set("auth");
    h_redis_start(0);
    char url[512], *out = NULL, *err = NULL;
    size_t olen;
    url_with_password(url, sizeof url, "not-the-Password");
    const char *a1[] = {"--redis", url, "house", "list", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a1), 2, "stderr: %s", err);
    cr_assert(strstr(err, "refused the credentials") && strstr(err, "WRONGPASS"), "%s", err);
    cr_assert_null(strstr(err, "not-the-Password"), "the password is printed: %s", err);
    free(out), free(err);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", h_redis_port());
    const char *a2[] = {"--redis", url, "house", "list", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a2), 2, "stderr: %s", err);
    cr_assert(strstr(err, "requires a password") && strstr(err, "--redis-password-file"), "%s",
              err);
    free(out), free(err);
    /* The same address with --redis-password-file works. */
    char pwf[600];
    snprintf(pwf, sizeof pwf, "%s/redis.pw", h_dir());
    FILE *f = fopen(pwf, "w");
    cr_assert(f);
    fprintf(f, "%s\n", h_redis_password());
    fclose(f);
    chmod(pwf, 0600); /* a password file others can read is refused */
    const char *a3[] = {"--redis", url, "--redis-password-file", pwf, "house", "add", "pwf", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a3), 0, "stderr: %s", err);
    free(out), free(err);
    cr_assert_eq(h_int("SISMEMBER gp:houses pwf"), 1);
}

Test(redisauth, password_never_logged) {
    h_redis_mode_set("auth");
    h_redis_start(0);
    int up_port;
    h_upstream_start(&up_port);
    char up[64], secret[65];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    int aport;
    h_proc *b = bridge(NULL, &aport); /* the URL carries the password, debug logging */
    h_register("pw1", secret);
    h_house_start("pw1", secret, g_bport, up, NULL);
    cr_assert(h_wait_connected("pw1", 15000), "house did not connect");
    roundtrip("pw1", "pw-1");
    const char *pw = h_redis_password();
    cr_assert(pw && strlen(pw) > 8);
    /* A bad address and a failing command show the URL masked. */
    char *out = NULL, *err = NULL;
    size_t olen;
    char bad[512];
    snprintf(bad, sizeof bad, "redis://:%s@127.0.0.1:99999/0", "Leaky-Pass");
    const char *a1[] = {"--redis", bad, "house", "list", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a1), 2);
    cr_assert_null(strstr(err, "Leaky-Pass"), "%s", err);
    cr_assert(strstr(err, "***"), "%s", err);
    free(out), free(err);
    const char *a2[] = {"top", "--once", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a2), 0, "stderr: %s", err);
    cr_assert_null(strstr(out, pw), "top prints the password");
    cr_assert_null(strstr(out, "gp%40t"), "top prints the encoded password");
    free(out), free(err);
    h_stop_all();
    cr_assert(!file_has(b->log, pw), "the password is in the bridge's log");
    cr_assert(!file_has(b->log, "gp%40t"), "the encoded password is in the bridge's log");
}

Test(redisauth, tls_untrusted_certificate_refused) {
    h_redis_mode_set("auth+tls");
    h_redis_start(0);
    /* The programs trust the system's CAs only, which did not sign the test certificate. */
    setenv("GP_REDIS_CA_FILE", "", 1);
    int aport;
    h_proc *b = bridge(NULL, &aport);
    cr_assert(h_wait_log(b, "event=redis_tls_failed", 10000), "no redis_tls_failed line");
    cr_assert(h_log_count(b, "certificate verify failed") > 0, "the line does not say why");
    struct ready rd = {aport, 503, "\"reason\":\"redis_unavailable\""};
    cr_assert(h_wait(ready_is, &rd, 5000), "/readyz is not 503");
    cr_assert_eq(h_log_count(b, "event=redis_up"), 0, "the bridge connected anyway");
    char *out = NULL, *err = NULL;
    size_t olen;
    const char *a[] = {"house", "list", NULL};
    cr_assert_eq(h_cli(&out, &olen, &err, a), 2, "stderr: %s", err);
    cr_assert(strstr(err, "certificate verify failed"), "%s", err);
    free(out), free(err);
}

Test(redisauth, redis_restart_reauthenticates) {
    h_redis_mode_set("auth+tls");
    h_proc *r = h_redis_start(0);
    int port = h_redis_port(), aport;
    h_proc *b = bridge(NULL, &aport);
    struct ready rd = {aport, 200, NULL};
    cr_assert(h_wait(ready_is, &rd, 10000), "bridge not ready");
    int ups = h_log_count(b, "event=redis_up");
    h_stop(r);
    rd.want = 503;
    cr_assert(h_wait(ready_is, &rd, 15000), "/readyz did not notice Redis went away");
    h_redis_start(port);
    rd.want = 200;
    cr_assert(h_wait(ready_is, &rd, 20000), "the bridge did not come back");
    cr_assert_gt(h_log_count(b, "event=redis_up"), ups, "no new connection");
    cr_assert_eq(h_log_count(b, "event=redis_auth_failed"), 0);
    /* And it works: a house connects and is served through the re-authenticated
     * connections. */
    int up_port;
    h_upstream_start(&up_port);
    char up[64], secret[65];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    h_register("re1", secret);
    h_house_start("re1", secret, g_bport, up, NULL);
    cr_assert(h_wait_connected("re1", 15000), "house did not connect");
    roundtrip("re1", "re-1");
}

Test(redisauth, tls_client_certificate) {
    h_redis_mode_set("auth+mtls");
    h_redis_start(0);
    /* Without a certificate Redis ends the handshake: a TLS error, not ready. */
    char *cert = strdup(getenv("GP_REDIS_CERT_FILE")), *key = strdup(getenv("GP_REDIS_KEY_FILE"));
    unsetenv("GP_REDIS_CERT_FILE");
    unsetenv("GP_REDIS_KEY_FILE");
    int aport;
    h_proc *b = bridge(NULL, &aport);
    cr_assert(h_wait_log(b, "event=redis_tls_failed", 10000), "no redis_tls_failed line");
    cr_assert_eq(h_log_count(b, "event=redis_up"), 0, "connected without a certificate");
    h_stop(b);
    /* With --redis-cert-file / --redis-key-file it is let in. */
    const char *extra[] = {
        "--redis-cert-file", cert, "--redis-key-file", key, "--admin-listen", "0", NULL};
    b = h_bridge_start(0, NULL, extra, 1);
    aport = h_admin_port(b);
    struct ready rd = {aport, 200, NULL};
    cr_assert(h_wait(ready_is, &rd, 10000), "not ready with a client certificate");
    free(cert);
    free(key);
}
