/* keyfile.c — the one file reader and key-file reader of both daemons (proto/conf.c,
 * gp_read_file and gp_read_key_file): whole files under a bound, errors naming the file, and
 * key files that are 0600-checked before they are read, 64 hex digits with whitespace around
 * them (or anywhere, for the bridge's rudp key). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"

#define HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static char path[64];

static void put(const char *text, mode_t mode) {
    snprintf(path, sizeof path, "/tmp/gp-keyfile-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
}

static void done(void) {
    unlink(path);
}

Test(keyfile, read_file_whole_and_bounded, .fini = done) {
    put("a=1\nb=2\n", 0644);
    size_t len = 0;
    char err[256] = "";
    char *t = gp_read_file(path, 100, &len, err, sizeof err);
    cr_assert_not_null(t);
    cr_assert_eq(len, 8);
    cr_assert_str_eq(t, "a=1\nb=2\n");
    free(t);
    cr_assert_null(gp_read_file(path, 7, &len, err, sizeof err));
    cr_assert_eq(errno, EFBIG);
    cr_assert(strstr(err, "file too large") && strstr(err, path), "%s", err);
}

Test(keyfile, read_file_larger_than_a_chunk) {
    char *big = malloc(20001);
    memset(big, 'x', 20000);
    big[20000] = '\0';
    put(big, 0600);
    size_t len = 0;
    char *t = gp_read_file(path, 1 << 20, &len, NULL, 0);
    cr_assert_not_null(t);
    cr_assert_eq(len, 20000);
    cr_assert_eq(memcmp(t, big, 20000), 0);
    cr_assert_eq(t[len], '\0');
    free(t);
    free(big);
    done();
}

/* gp_read_fd: what the CLI reads from stdin or a file it opened; appends, bounded. */
Test(keyfile, read_fd_appends_from_a_pipe_and_is_bounded) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(write(p[1], "body", 4), 4);
    close(p[1]);
    gp_buf b = {0};
    gp_buf_add(&b, "<", 1);
    cr_assert_eq(gp_read_fd(p[0], 100, &b), 0);
    close(p[0]);
    cr_assert_eq(b.len, 5);
    cr_assert_str_eq(b.p, "<body");
    gp_buf_free(&b);

    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(write(p[1], "0123456789", 10), 10);
    close(p[1]);
    cr_assert_eq(gp_read_fd(p[0], 9, &b), -1);
    cr_assert_eq(errno, EFBIG);
    close(p[0]);
    gp_buf_free(&b);
}

Test(keyfile, missing_file_names_it_and_keeps_errno) {
    char err[256] = "";
    size_t len;
    cr_assert_null(gp_read_file("/nonexistent/gp-x", 10, &len, err, sizeof err));
    cr_assert_eq(errno, ENOENT);
    cr_assert(strstr(err, "/nonexistent/gp-x: "), "%s", err);
    unsigned char k[32];
    cr_assert_eq(gp_read_key_file("/nonexistent/gp-x", 0, k, err, sizeof err), GP_KEY_UNREADABLE);
    cr_assert_eq(errno, ENOENT);
}

Test(keyfile, key_with_whitespace_around, .fini = done) {
    put("\n  " HEX " \r\n", 0600);
    unsigned char k[32] = {0};
    char err[256] = "";
    cr_assert_eq(gp_read_key_file(path, 0, k, err, sizeof err), 0, "%s", err);
    cr_assert_eq(k[0], 0x00);
    cr_assert_eq(k[1], 0x11);
    cr_assert_eq(k[31], 0xff);
}

Test(keyfile, group_or_others_permission_refused_before_reading, .fini = done) {
    put(HEX "\n", 0640);
    unsigned char k[32];
    char err[256] = "";
    cr_assert_eq(gp_read_key_file(path, 0, k, err, sizeof err), GP_KEY_UNPROTECTED);
    cr_assert(strstr(err, "chmod 600"), "%s", err);
}

Test(keyfile, spaces_inside_only_with_the_flag, .fini = done) {
    put("00112233445566778899aabbccddeeff 00112233445566778899aabbccddeeff\n", 0600);
    unsigned char k[32];
    char err[256] = "";
    cr_assert_eq(gp_read_key_file(path, 0, k, err, sizeof err), GP_KEY_INVALID);
    cr_assert(strstr(err, "64 hex digits"), "%s", err);
    cr_assert_eq(gp_read_key_file(path, GP_KEY_SPACES, k, err, sizeof err), 0, "%s", err);
}

Test(keyfile, wrong_length_or_not_hex_is_invalid, .fini = done) {
    put(HEX "0\n", 0600);
    unsigned char k[32];
    char err[256] = "";
    cr_assert_eq(gp_read_key_file(path, GP_KEY_SPACES, k, err, sizeof err), GP_KEY_INVALID);
    done();
    put("zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0600);
    cr_assert_eq(gp_read_key_file(path, 0, k, err, sizeof err), GP_KEY_INVALID);
    done();
    put("", 0600);
    cr_assert_eq(gp_read_key_file(path, 0, k, err, sizeof err), GP_KEY_INVALID);
}

/* The config layer's file: named by the last --config (either form) before "--", else the
 * environment's; read and parsed into the table's object. */
Test(keyfile, config_file_named_and_loaded, .fini = done) {
    char *a1[] = {"prog", "--config", "a.conf", "--x=1", "--config=b.conf", NULL};
    cr_assert_str_eq(gp_conf_file_arg(5, a1, "env.conf"), "b.conf");
    char *a2[] = {"prog", "--x", "--", "--config=c.conf", NULL};
    cr_assert_str_eq(gp_conf_file_arg(4, a2, "env.conf"), "env.conf");
    cr_assert_null(gp_conf_file_arg(1, a2, NULL));

    typedef struct {
        char *name;
        long long n;
    } obj;
    const gp_conf_opt t[] = {
        {"name", GP_CONF_STR, offsetof(obj, name), 0, 0, NULL, NULL, "a name"},
        {"n", GP_CONF_INT, offsetof(obj, n), 0, 100, "1", NULL, "a number"},
        {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
    };
    obj o = {0};
    char err[256] = "";
    put("name = x\nn = 7\n", 0600);
    cr_assert_eq(gp_conf_load_file(t, &o, path, 4096, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(o.name, "x");
    cr_assert_eq(o.n, 7);
    cr_assert_eq(gp_conf_load_file(t, &o, path, 4, err, sizeof err), GP_CONF_EREAD);
    cr_assert_eq(errno, EFBIG);
    cr_assert_eq(gp_conf_load_file(t, &o, "/nonexistent/x.conf", 4096, err, sizeof err),
                 GP_CONF_EREAD);
    done();
    put("n = 1000\n", 0600);
    cr_assert_eq(gp_conf_load_file(t, &o, path, 4096, err, sizeof err), -1);
    cr_assert(strstr(err, "n"), "%s", err);
    gp_conf_clear(t, &o);
}

/* SIGHUP's comparison: what differs and may be reloaded is applied and named in changed;
 * what differs and may not, in restart; what differs() skips, nowhere. */
typedef struct rcfg {
    char *level, *secret, *addr;
    long long n, port;
    int flag;
} rcfg;
static const gp_conf_opt rt[] = {
    {"log-level", GP_CONF_STR, offsetof(rcfg, level), 0, 0, NULL, NULL, "l"},
    {"secret", GP_CONF_STR, offsetof(rcfg, secret), 0, 0, NULL, NULL, "s"},
    {"addr", GP_CONF_STR, offsetof(rcfg, addr), 0, 0, NULL, NULL, "a"},
    {"n", GP_CONF_INT, offsetof(rcfg, n), 0, 100, NULL, NULL, "n"},
    {"port", GP_CONF_INT, offsetof(rcfg, port), 0, 100, NULL, NULL, "p"},
    {"flag", GP_CONF_BOOL, offsetof(rcfg, flag), 0, 1, NULL, NULL, "f"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
static int skip_secret(const gp_conf_opt *o, const void *cur, const void *next) {
    return strcmp(o->name, "secret") != 0 && gp_conf_differs(o, cur, next);
}

Test(keyfile, reload_applies_the_reloadable_and_names_the_rest) {
    rcfg cur = {strdup("info"), strdup("old"), NULL, 1, 80, 0};
    rcfg next = {strdup("debug"), strdup("new"), strdup("x"), 2, 81, 0};
    static const char *const reloadable[] = {"log-level", "n", NULL};
    char changed[64] = "", restart[64] = "";
    gp_conf_reload(rt, &cur, &next, reloadable, skip_secret, changed, sizeof changed, restart,
                   sizeof restart);
    cr_assert_str_eq(changed, "log-level,n");
    cr_assert_str_eq(restart, "addr,port", "NULL and \"x\" differ; the secret is skipped");
    cr_assert_str_eq(cur.level, "debug");
    cr_assert_str_eq(next.level, "info", "swapped: the old value goes with next");
    cr_assert_eq(cur.n, 2);
    cr_assert_eq(cur.port, 80, "not reloadable: kept");
    cr_assert_str_eq(cur.secret, "old");
    gp_conf_list_append(changed, 16, "admin-token");
    cr_assert_str_eq(changed, "log-level,n,adm", "cut at cap");
    gp_conf_clear(rt, &cur);
    gp_conf_clear(rt, &next);
}
