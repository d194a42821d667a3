/* Errors that lead somewhere (issue 15): each mistake an operator makes when wiring a house to a
 * bridge, the CLI to Redis, or a daemon to its files, made with the real programs, and the one
 * line it produces read back: it names the cause and says what to do (fix=...).
 *
 *   house dials                  its log line
 *   a host name DNS does not know   event=bridge_dns_failed
 *   a port nothing listens on       event=bridge_refused
 *   ws:// to a wss:// bridge        event=bridge_tls_expected
 *   wss:// to a ws:// bridge        event=bridge_not_tls
 *   a certificate not trusted       event=tls_verify_failed (self-signed, hostname mismatch,
 *                                   expired: OpenSSL's reason in words)
 *   a wrong secret, an unknown id   event=auth_failed on the house (one or the other: the
 *                                   bridge answers both alike), and on the bridge with the
 *                                   reason and the house it claimed, counted in
 *                                   gp_bridge_auth_failures_total
 * The CLI against a Redis with a bad host, a refused port, a wrong password, TLS to a plain
 * Redis and plain to a TLS one; and --check-config of both daemons on a swapped certificate
 * and key, a key that is not the certificate's, a private key as --ca-file, malformed and
 * world-readable secret and key files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/world.h"

TestSuite(errors, .init = h_init, .fini = h_fini, .timeout = 60);

#define NO_UPSTREAM "http://127.0.0.1:1"
static const char SECRET[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/* The first line of p's log (this incarnation) holding needle, malloc'd; NULL if none. */
static char *line_of(const h_proc *p, const char *needle) {
    size_t len;
    char *s = h_read_file(p->log, &len);
    char *hit = s && len > (size_t)p->log_off ? strstr(s + p->log_off, needle) : NULL, *r = NULL;
    if (hit) {
        char *a = hit, *z = strchr(hit, '\n');
        while (a > s + p->log_off && a[-1] != '\n')
            a--;
        r = strndup(a, z ? (size_t)(z - a) : strlen(a));
    }
    free(s);
    return r;
}

/* Waits (15 s) for p's line with `event` ("level=error event=x"), and checks it holds each of
 * parts and a fix="...". Returns the line (the caller frees it). */
static char *expect_line(const h_proc *p, const char *event, const char *const *parts) {
    cr_assert(h_wait_log(p, event, 15000), "%s: no line with %s (see %s)", p->name, event, p->log);
    char *l = line_of(p, event);
    cr_assert_not_null(l);
    cr_assert(strstr(l, " fix=\""), "%s: the line says nothing to do:\n%s", p->name, l);
    for (int i = 0; parts && parts[i]; i++)
        cr_assert(strstr(l, parts[i]), "%s: the line does not say \"%s\":\n%s", p->name, parts[i],
                  l);
    return l;
}

/* One line per failed dial: the cause's, not a generic connect_failed warning besides it. */
static void assert_no_generic(const h_proc *p) {
    cr_assert_eq(h_log_count(p, "level=warn event=connect_failed"), 0,
                 "%s: a generic connect_failed line as well (see %s)", p->name, p->log);
}

static h_proc *house_to(const char *id, const char *url, const char *const *extra) {
    return h_house_start_url(id, SECRET, url, NO_UPSTREAM, extra);
}

/* A self-signed certificate for `names` (a subjectAltName value) as <dir>/<name>.crt and
 * .key, valid now, or expired (2020-01-01 to 01-02) when expired. */
static void make_cert(const char *name, const char *names, int expired, char crt[700],
                      char key[700]) {
    snprintf(crt, 700, "%s/%s.crt", h_dir(), name);
    snprintf(key, 700, "%s/%s.key", h_dir(), name);
    char cmd[4096];
    if (!expired)
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                 "-keyout '%s' -out '%s' -subj /CN=gp-test -addext subjectAltName=%s "
                 ">>'%s/openssl.log' 2>&1",
                 key, crt, names, h_dir());
    else /* openssl req cannot date a certificate in the past; openssl ca can */
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && mkdir -p ca-%s && : >ca-%s/index && echo 01 >ca-%s/serial && "
                 "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=ca-%s/index\\nnew_certs_dir=ca-%s\\n"
                 "serial=ca-%s/serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n"
                 "[ext]\\nsubjectAltName=%s\\n' >ca-%s.cnf && "
                 "(openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '%s' "
                 "-out %s.csr -subj /CN=gp-test && openssl ca -batch -config ca-%s.cnf -selfsign "
                 "-keyfile '%s' -in %s.csr -out '%s' -startdate 20200101000000Z -enddate "
                 "20200102000000Z -extensions ext -notext) >>openssl.log 2>&1",
                 h_dir(), name, name, name, name, name, name, names, name, key, name, name, key,
                 name, crt);
    cr_assert_eq(system(cmd), 0, "openssl failed (see %s/openssl.log)", h_dir());
}

static h_proc *wss_bridge(const char *crt, const char *key, int *port) {
    const char *bx[] = {"--tls-cert", crt, "--tls-key", key, NULL};
    return h_bridge_start(0, port, bx, 1);
}

/* --- the house's dial ------------------------------------------------------------------------ */

Test(errors, house_dns_failure_and_refused_port) {
    int closed = h_free_port(); /* nothing listens there */
    char url[96];
    snprintf(url, sizeof url, "ws://no-such-host.invalid:%d/", closed);
    h_proc *dns = house_to("dns", url, NULL);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", closed);
    h_proc *refused = house_to("refused", url, NULL);

    /* Level error for a name DNS does not know, warn when DNS did not answer (no resolver). */
    free(expect_line(dns, "event=bridge_dns_failed",
                     (const char *const[]){"cannot resolve no-such-host.invalid",
                                           "check the host name in --bridge",
                                           "getent hosts no-such-host.invalid", NULL}));
    free(
        expect_line(refused, "level=warn event=bridge_refused",
                    (const char *const[]){"nothing listens on 127.0.0.1 port", "connection refused",
                                          "--listen", "systemctl status ghostport-bridge", NULL}));
    assert_no_generic(dns);
    assert_no_generic(refused);
}

Test(errors, house_ws_and_wss_mixed_up) {
    h_redis_start(0);
    char crt[700], key[700];
    make_cert("bridge", "DNS:localhost,IP:127.0.0.1", 0, crt, key);
    int tls_port, plain_port;
    wss_bridge(crt, key, &tls_port);
    h_bridge_start(0, &plain_port, NULL, 1);

    char url[96], want[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", tls_port);
    h_proc *ws = house_to("ws-to-wss", url, NULL);
    snprintf(url, sizeof url, "wss://localhost:%d/", plain_port);
    h_proc *wss = house_to("wss-to-ws", url, (const char *const[]){"--ca-file", crt, NULL});

    snprintf(want, sizeof want, "fix=\"dial wss://127.0.0.1:%d/", tls_port);
    free(expect_line(ws, "level=error event=bridge_tls_expected",
                     (const char *const[]){"it expects TLS", want, "--allow-ws", NULL}));
    snprintf(want, sizeof want, "dial ws://localhost:%d/", plain_port);
    free(expect_line(wss, "level=error event=bridge_not_tls",
                     (const char *const[]){"answered the TLS handshake in plain text", "HTTP/",
                                           want, "--tls-cert and --tls-key", NULL}));
    assert_no_generic(ws);
    assert_no_generic(wss);
}

Test(errors, house_tls_verification_failures) {
    h_redis_start(0);
    char crt[700], key[700], crt2[700], key2[700], crt3[700], key3[700];
    make_cert("bridge", "DNS:localhost,IP:127.0.0.1", 0, crt, key);
    make_cert("elsewhere", "DNS:elsewhere.test", 0, crt2, key2);
    make_cert("expired", "DNS:localhost,IP:127.0.0.1", 1, crt3, key3);
    int p1, p2, p3;
    wss_bridge(crt, key, &p1);
    h_proc *b3 = wss_bridge(crt3, key3, &p3);
    wss_bridge(crt2, key2, &p2);
    /* The bridge starts with an expired certificate, and says so. */
    cr_assert(h_wait_log(b3, "event=tls_cert_not_valid", 5000), "no warning of the expiry");

    char url[96];
    snprintf(url, sizeof url, "wss://localhost:%d/", p1);
    h_proc *untrusted = house_to("untrusted", url, NULL);
    snprintf(url, sizeof url, "wss://localhost:%d/", p2);
    h_proc *mismatch = house_to("mismatch", url, (const char *const[]){"--ca-file", crt2, NULL});
    snprintf(url, sizeof url, "wss://localhost:%d/", p3);
    h_proc *expired = house_to("expired", url, (const char *const[]){"--ca-file", crt3, NULL});

    free(expect_line(untrusted, "level=error event=tls_verify_failed",
                     (const char *const[]){"the bridge's certificate is not trusted: self-signed "
                                           "certificate",
                                           "give --ca-file the bridge's certificate file", NULL}));
    free(expect_line(mismatch, "level=error event=tls_verify_failed",
                     (const char *const[]){"hostname mismatch",
                                           "the certificate is for elsewhere.test, not localhost",
                                           NULL}));
    free(expect_line(expired, "level=error event=tls_verify_failed",
                     (const char *const[]){"certificate has expired",
                                           "renew the bridge's certificate (it expired Jan  2",
                                           NULL}));
    assert_no_generic(untrusted);
    assert_no_generic(mismatch);
    assert_no_generic(expired);
}

/* A house cannot be told whether its id is unknown or its secret wrong: the bridge answers an
 * unknown id under a decoy secret (proto/PROTOCOL.md), so nobody can list the ids. The house's
 * line says it is one or the other and how to check each; the bridge's says which, with the
 * address and the id claimed, and counts it, although it is the house that hangs up. */
Test(errors, wrong_secret_and_unknown_id) {
    h_redis_start(0);
    char sec[65];
    h_register("h1", sec);
    int port;
    h_proc *b = h_bridge_start(0, &port, (const char *const[]){"--admin-listen", "0", NULL}, 1);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    h_proc *wrong = house_to("h1", url, NULL); /* SECRET is not h1's */
    h_proc *ghost = house_to("ghost", url, NULL);

    const char *house_says[] = {"the id is not registered, or the secret is not the registered one",
                                "ghostport house list", NULL, NULL};
    house_says[2] = "ghostport house add h1 --force";
    free(expect_line(wrong, "level=error event=auth_failed", house_says));
    house_says[2] = "ghostport house add ghost --force";
    free(expect_line(ghost, "level=error event=auth_failed", house_says));
    assert_no_generic(wrong);
    assert_no_generic(ghost);
    cr_assert_eq(h_log_count(wrong, "bridge_auth_failed"), 0, "the old, misleading event");

    free(expect_line(b, "house=h1 transport=ws reason=wrong_secret",
                     (const char *const[]){"event=auth_failed", "addr=127.0.0.1",
                                           "ghostport house add h1 --force", NULL}));
    free(expect_line(b, "house=ghost transport=ws reason=unknown_house",
                     (const char *const[]){"event=auth_failed", "addr=127.0.0.1",
                                           "ghostport house add ghost", NULL}));
    char *m = h_scrape(h_admin_port(b));
    cr_assert_not_null(m);
    double n = h_metric(m, "gp_bridge_auth_failures_total{transport=\"ws\"}");
    cr_assert_geq(n, 2, "gp_bridge_auth_failures_total{transport=\"ws\"} = %g", n);
    free(m);
    cr_assert_eq(h_int("EXISTS gp:{h1}:state"), 0);
}

/* --- the CLI and Redis ------------------------------------------------------------------------ */

/* `ghostport --redis URL house list` fails (exit 2) with a message holding each part. */
static void cli_says(const char *url, const char *const *parts) {
    const char *argv[] = {h_bin("ghostport"), "--redis", url, "house", "list", NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(argv, 20000, &out, NULL, &err);
    cr_assert_eq(rc, 2, "%s: exit %d: %s", url, rc, err);
    for (int i = 0; parts[i]; i++)
        cr_assert(err && strstr(err, parts[i]), "%s: the message does not say \"%s\": %s", url,
                  parts[i], err);
    free(out), free(err);
}

Test(errors, cli_redis_plain) {
    h_redis_mode_set("auth");
    h_redis_start(0);
    int port = h_redis_port(), closed = h_free_port();
    char url[128];
    cli_says(
        "redis://no-such-host.invalid:6379",
        (const char *const[]){"no-such-host.invalid:6379", "check the host name in --redis", NULL});
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", closed);
    cli_says(url, (const char *const[]){"Connection refused", "nothing listens there",
                                        "redis-server runs", NULL});
    snprintf(url, sizeof url, "redis://:not-the-password@127.0.0.1:%d", port);
    cli_says(url, (const char *const[]){"refused the credentials", "--redis-password-file", NULL});
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    cli_says(url, (const char *const[]){"requires a password", "--redis-password-file", NULL});
    /* TLS to a plain Redis: it answers a ClientHello with nothing (the CLI gives up at 5 s). */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d", port);
    cli_says(url, (const char *const[]){"did not answer the TLS handshake", "use redis://", NULL});
}

Test(errors, cli_redis_tls) {
    h_redis_mode_set("tls");
    h_redis_start(0);
    int port = h_redis_port();
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    cli_says(url, (const char *const[]){"hung up at the first command", "is it a TLS port?",
                                        "rediss://127.0.0.1:", NULL});
    /* Without the CA (GP_REDIS_CA_FILE, set by the harness), Redis's certificate is not
     * trusted; a private key given as the CA is refused before any connection. */
    char *ca = strdup(getenv("GP_REDIS_CA_FILE"));
    unsetenv("GP_REDIS_CA_FILE");
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d", port);
    cli_says(url, (const char *const[]){"certificate verify failed", "--redis-ca-file", NULL});
    char keyca[700];
    snprintf(keyca, sizeof keyca, "%s/redis-key.pem", h_dir());
    setenv("GP_REDIS_CA_FILE", keyca, 1);
    cli_says(url, (const char *const[]){keyca, "holds no certificate", NULL});
    setenv("GP_REDIS_CA_FILE", ca, 1);
    free(ca);
}

/* --- --check-config ------------------------------------------------------------------------- */

/* argv exits non-zero (or 0 when ok is set) and its output holds each part. */
static void check(const char *const *argv, int ok, const char *const *parts) {
    char *out = NULL;
    int rc = h_run(argv, 20000, &out, NULL, NULL);
    if (ok)
        cr_assert_eq(rc, 0, "%s --check-config refused: %s", argv[0], out);
    else
        cr_assert_neq(rc, 0, "%s --check-config said ok: %s", argv[0], out);
    for (int i = 0; parts && parts[i]; i++)
        cr_assert(out && strstr(out, parts[i]), "the message does not say \"%s\": %s", parts[i],
                  out);
    free(out);
}

Test(errors, bridge_check_config) {
    char crt[700], key[700], crt2[700], key2[700], bin[700];
    make_cert("bridge", "DNS:localhost,IP:127.0.0.1", 0, crt, key);
    make_cert("other", "DNS:localhost", 0, crt2, key2);
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-bridge"));
#define BRIDGE(...) ((const char *const[]){bin, "--check-config", __VA_ARGS__, NULL})
    check(BRIDGE("--tls-cert", crt, "--tls-key", key), 1,
          (const char *const[]){"configuration ok", NULL});
    check(BRIDGE("--tls-cert", key, "--tls-key", crt), 0,
          (const char *const[]){key, "holds a private key, not a certificate", "swapped", NULL});
    check(BRIDGE("--tls-cert", crt, "--tls-key", crt), 0,
          (const char *const[]){"holds a certificate, not a private key", NULL});
    check(BRIDGE("--tls-cert", crt, "--tls-key", key2), 0,
          (const char *const[]){key2, "is not the key of the certificate in", crt, NULL});
    chmod(key, 0644);
    check(BRIDGE("--tls-cert", crt, "--tls-key", key), 0,
          (const char *const[]){key, "0644", "chmod 600", NULL});
    chmod(key, 0600);
    /* The front door's own pair, checked the same way. */
    check(BRIDGE("--allow-ws", "--http-listen", "0", "--http-public", "--http-cert", key,
                 "--http-key", crt),
          0, (const char *const[]){"http-cert", "swapped", NULL});
    /* A Redis password file others can read; the rudp key in the wrong form. */
    char *pw = h_path("redis.pw"), *rk = h_path("rudp.key");
    h_write_file(pw, "a-password\n", 0644);
    check(BRIDGE("--allow-ws", "--redis-password-file", pw), 0,
          (const char *const[]){pw, "chmod 600", NULL});
    h_write_file(rk, "not a key\n", 0600);
    check(BRIDGE("--allow-ws", "--rudp-listen", "0", "--rudp-key", rk), 0,
          (const char *const[]){rk, "64 hex digits", "ghostport rudp-keygen --out", NULL});
#undef BRIDGE
}

Test(errors, house_check_config) {
    char crt[700], key[700], bin[700];
    make_cert("bridge", "DNS:localhost,IP:127.0.0.1", 0, crt, key);
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-house"));
    char *sf = h_path("house.secret"), *junk = h_path("junk.pem");
    char text[80];
    snprintf(text, sizeof text, "%s\n", SECRET);
    h_write_file(sf, text, 0600);
    h_write_file(junk, "not a certificate\n", 0644);
#define HOUSE(...)                                                                                 \
    ((const char *const[]){bin, "--check-config", "--id", "h1", "--bridge", "wss://localhost:1/",  \
                           "--upstream", NO_UPSTREAM, __VA_ARGS__, NULL})
    check(HOUSE("--secret-file", sf, "--ca-file", crt), 1,
          (const char *const[]){"configuration ok", NULL});
    /* A private key as the CA: it used to pass, and the house retried forever. */
    check(HOUSE("--secret-file", sf, "--ca-file", key), 0,
          (const char *const[]){key, "holds a private key, not a certificate", "--tls-cert", NULL});
    check(HOUSE("--secret-file", sf, "--ca-file", junk), 0,
          (const char *const[]){junk, "holds no certificate", NULL});
    h_write_file(sf, "a secret, but not 64 hex digits\n", 0600);
    check(HOUSE("--secret-file", sf), 0,
          (const char *const[]){sf, "64 hex digits", "ghostport house add h1 --force", NULL});
    h_write_file(sf, text, 0644);
    check(HOUSE("--secret-file", sf), 0, (const char *const[]){sf, "0644", "chmod 600", NULL});
#undef HOUSE
}
