/* rurl.c — the one Redis address parser (bridge/store/rurl.c): every accepted form,
 * percent-decoding of the credentials, what is refused, and that no error message or redacted URL
 * carries the password. */
#include "../../bridge/store/rurl.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static gp_rurl ok(const char *url) {
    gp_rurl u;
    char err[256] = "";
    cr_assert_eq(gp_rurl_parse(url, &u, err, sizeof err), 0, "%s: %s", url, err);
    return u;
}

static void bad(const char *url, const char *secret) {
    gp_rurl u;
    char err[512] = "";
    cr_assert_neq(gp_rurl_parse(url, &u, err, sizeof err), 0, "%s was accepted", url);
    cr_assert(err[0], "%s: no message", url);
    if (secret)
        cr_assert_null(strstr(err, secret), "the error shows the password: %s", err);
}

/* text parses, to host, port and db. */
static gp_rurl at(const char *text, const char *host, int port, int db) {
    gp_rurl u = ok(text);
    cr_assert_str_eq(u.host, host, "%s", text);
    cr_assert_eq(u.port, port, "%s", text);
    cr_assert_eq(u.db, db, "%s", text);
    return u;
}

Test(rurl, plain_forms) {
    gp_rurl u = at("127.0.0.1:6380", "127.0.0.1", 6380, 0);
    cr_assert_eq(u.tls, 0);
    cr_assert_eq(u.has_pass, 0);
    at("localhost", "localhost", 6379, 0);
    at("redis://redis.example.com:7000/3", "redis.example.com", 7000, 3);
    at("redis://h/", "h", 6379, 0);
}

Test(rurl, ipv6) {
    at("[::1]:6379", "::1", 6379, 0);
    gp_rurl u = at("rediss://:pw@[fd00::2]/1", "fd00::2", 6379, 1);
    cr_assert_eq(u.tls, 1);
    char hp[64];
    gp_rurl_hostport(u.host, u.port, hp, sizeof hp);
    cr_assert_str_eq(hp, "[fd00::2]:6379");
}

Test(rurl, credentials) {
    gp_rurl u = ok("redis://:s3cret@127.0.0.1:6379/0");
    cr_assert_eq(u.has_pass, 1);
    cr_assert_str_eq(u.user, "");
    cr_assert_str_eq(u.pass, "s3cret");
    /* redis-cli's reading: no colon means a password for the default user */
    u = ok("redis://s3cret@h:1");
    cr_assert_str_eq(u.user, "");
    cr_assert_str_eq(u.pass, "s3cret");
    u = ok("rediss://gp-bridge:p%40ss%3Aw%2Fo%25rd@h:6380/2");
    cr_assert_eq(u.tls, 1);
    cr_assert_str_eq(u.user, "gp-bridge");
    cr_assert_str_eq(u.pass, "p@ss:w/o%rd");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 2);
    /* an unencoded '@' in the password: the last one before the path ends the credentials */
    u = ok("redis://u:a@b@h:5");
    cr_assert_str_eq(u.pass, "a@b");
    cr_assert_str_eq(u.host, "h");
    u = ok("redis://bob%20x:pw@h");
    cr_assert_str_eq(u.user, "bob x");
}

Test(rurl, refused) {
    bad("", NULL);
    bad("http://h:1", NULL);
    bad("redis://", NULL);
    bad("redis://h:0", NULL);
    bad("redis://h:65536", NULL);
    bad("redis://h:12x", NULL);
    bad("redis://h:6379/x", NULL);
    bad("redis://h:6379/-1", NULL);
    bad("redis://h h:1", NULL);
    bad("redis://[::1:6379", NULL);
    bad("redis://[::1]x", NULL);
    bad("redis://:topsecret@h:0", "topsecret");
    bad("redis://:topsecret@", "topsecret");
    bad("redis://u:top%zzsecret@h", "top");
    bad("redis://u:top%00secret@h", "top");
    bad("topsecret@h:1", "topsecret"); /* credentials need the URL form */
}

Test(rurl, redact) {
    char out[256];
    gp_rurl_redact("redis://:s3cret@h:1/0", out, sizeof out);
    cr_assert_str_eq(out, "redis://:***@h:1/0");
    gp_rurl_redact("rediss://bob:s3cret@h:1", out, sizeof out);
    cr_assert_str_eq(out, "rediss://bob:***@h:1");
    gp_rurl_redact("redis://s3cret@h", out, sizeof out);
    cr_assert_str_eq(out, "redis://***@h");
    gp_rurl_redact("redis://h:1/0", out, sizeof out);
    cr_assert_str_eq(out, "redis://h:1/0");
    gp_rurl_redact("garbage:s3cret@", out, sizeof out);
    cr_assert_null(strstr(out, "s3cret"));
}

Test(rurl, password_file) {
    char path[] = "/tmp/gp-rurl-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "fromfile\n", 9), 9);
    close(fd);
    gp_rurl u = ok("redis://olduser:urlpw@h:1");
    char err[256] = "";
    cr_assert_eq(gp_rurl_credentials(&u, "newuser", path, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.user, "newuser");
    cr_assert_str_eq(u.pass, "fromfile");
    cr_assert_eq(u.has_pass, 1);
    /* an empty file is a mistake, not "no password" */
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    cr_assert_neq(gp_rurl_credentials(&u, NULL, path, err, sizeof err), 0);
    cr_assert(strstr(err, path));
    unlink(path);
    cr_assert_neq(gp_rurl_credentials(&u, NULL, path, err, sizeof err), 0);
    gp_rurl_wipe(&u);
    cr_assert_str_eq(u.pass, "");
}
