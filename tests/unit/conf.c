/* Unit tests for proto/conf.c: defaults, bounds, config text, environment, argv. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

typedef struct cfg {
    char *name;
    char *redis;
    long long port, size;
    int tls;
    int nseen;
    char seen[4][32];
} cfg;

static int add_seen(void *obj, const char *value, char *err, size_t errlen) {
    cfg *c = obj;
    if (c->nseen == 4 || strlen(value) >= 32) {
        snprintf(err, errlen, "seen: too many or too long");
        return GP_ERR_INVALID;
    }
    strcpy(c->seen[c->nseen++], value);
    return 0;
}

#define OFF(f) offsetof(cfg, f)
static const gp_conf_opt opts[] = {
    {"name", GP_CONF_STR, OFF(name), 0, 0, NULL, NULL, "a name"},
    {"redis", GP_CONF_STR, OFF(redis), 0, 0, "127.0.0.1:6379", NULL, "Redis address"},
    {"port", GP_CONF_INT, OFF(port), 1, 65535, "8443", NULL, "port"},
    {"max.size", GP_CONF_INT, OFF(size), 0, 1LL << 40, "1k", NULL, "size in bytes"},
    {"tls", GP_CONF_BOOL, OFF(tls), 0, 1, "1", NULL, "use TLS"},
    {"seen", GP_CONF_FN, 0, 0, 0, NULL, add_seen, "repeatable"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static cfg c;
static char err[256];

static void setup(void) {
    memset(&c, 0, sizeof c);
    err[0] = '\0';
    cr_assert_eq(gp_conf_defaults(opts, &c, err, sizeof err), 0, "%s", err);
}

static void teardown(void) {
    gp_conf_clear(opts, &c);
    cr_assert_null(c.redis);
}

TestSuite(conf, .init = setup, .fini = teardown);

Test(conf, defaults) {
    cr_assert_null(c.name);
    cr_assert_str_eq(c.redis, "127.0.0.1:6379");
    cr_assert_eq(c.port, 8443);
    cr_assert_eq(c.size, 1024);
    cr_assert_eq(c.tls, 1);
    cr_assert_eq(c.nseen, 0);
}

Test(conf, bad_default_is_reported) {
    static const gp_conf_opt bad[] = {
        {"port", GP_CONF_INT, OFF(port), 1, 10, "11", NULL, NULL},
        {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
    };
    cfg x = {0};
    cr_assert_eq(gp_conf_defaults(bad, &x, err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "default of port: 11 is above the maximum 10");
}

Test(conf, set_values_and_bounds) {
    cr_assert_eq(gp_conf_set(opts, &c, "port", "0", err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "port: 0 is below the minimum 1");
    cr_assert_eq(gp_conf_set(opts, &c, "port", "65536", err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "port: 65536 is above the maximum 65535");
    cr_assert_eq(gp_conf_set(opts, &c, "port", "12x", err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "port: \"12x\" is not an integer");
    cr_assert_eq(gp_conf_set(opts, &c, "port", "", err, sizeof err), GP_ERR_INVALID);
    cr_assert_eq(gp_conf_set(opts, &c, "port", " 80", err, sizeof err), GP_ERR_INVALID);
    cr_assert_eq(c.port, 8443); /* failed sets change nothing */
    cr_assert_eq(gp_conf_set(opts, &c, "port", "80", err, sizeof err), 0);
    cr_assert_eq(c.port, 80);
    cr_assert_eq(gp_conf_set(opts, &c, "port", "+81", err, sizeof err), 0);
    cr_assert_eq(c.port, 81);
    cr_assert_eq(gp_conf_set(opts, &c, "port", "-1", err, sizeof err), GP_ERR_INVALID);

    cr_assert_eq(gp_conf_set(opts, &c, "max.size", "3M", err, sizeof err), 0);
    cr_assert_eq(c.size, 3LL << 20);
    cr_assert_eq(gp_conf_set(opts, &c, "max.size", "2g", err, sizeof err), 0);
    cr_assert_eq(c.size, 2LL << 30);
    cr_assert_eq(gp_conf_set(opts, &c, "max.size", "2kb", err, sizeof err), GP_ERR_INVALID);
    cr_assert_eq(gp_conf_set(opts, &c, "max.size", "99999999999999999999", err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_eq(gp_conf_set(opts, &c, "max.size", "9223372036854775807g", err, sizeof err),
                 GP_ERR_INVALID);

    const char *yes[] = {"1", "true", "YES", "on"}, *no[] = {"0", "False", "no", "OFF"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(gp_conf_set(opts, &c, "tls", no[i], err, sizeof err), 0);
        cr_assert_eq(c.tls, 0);
        cr_assert_eq(gp_conf_set(opts, &c, "tls", yes[i], err, sizeof err), 0);
        cr_assert_eq(c.tls, 1);
    }
    cr_assert_eq(gp_conf_set(opts, &c, "tls", "maybe", err, sizeof err), GP_ERR_INVALID);
    cr_assert(strstr(err, "tls: \"maybe\" is not a boolean") == err, "%s", err);

    cr_assert_eq(gp_conf_set(opts, &c, "redis", "10.0.0.1:7000", err, sizeof err), 0);
    cr_assert_str_eq(c.redis, "10.0.0.1:7000");
    cr_assert_eq(gp_conf_set(opts, &c, "nope", "1", err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "unknown option \"nope\"");
    /* err may be NULL. */
    cr_assert_eq(gp_conf_set(opts, &c, "port", "0", NULL, 0), GP_ERR_INVALID);
}

Test(conf, fn_options_repeat_and_report) {
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gp_conf_set(opts, &c, "seen", "x", err, sizeof err), 0);
    cr_assert_eq(c.nseen, 4);
    cr_assert_eq(gp_conf_set(opts, &c, "seen", "x", err, sizeof err), GP_ERR_INVALID);
    cr_assert_str_eq(err, "seen: too many or too long");
}

Test(conf, text_with_comments_and_quotes) {
    const char text[] = "# a comment\n"
                        "\n"
                        "   name = \"a value # not a comment\"   # but this is\n"
                        "port=9000\r\n"
                        "\tredis =  host:1  # trailing comment\n"
                        "max.size = 2k\n"
                        "tls = off\n"
                        "seen = \"quote \\\" and backslash \\\\\"\n"
                        "seen = url#frag\n"
                        "seen =\n"
                        "seen = #only a comment";
    cr_assert_eq(gp_conf_parse_text(opts, &c, text, sizeof text - 1, err, sizeof err), 0, "%s",
                 err);
    cr_assert_str_eq(c.name, "a value # not a comment");
    cr_assert_eq(c.port, 9000);
    cr_assert_str_eq(c.redis, "host:1");
    cr_assert_eq(c.size, 2048);
    cr_assert_eq(c.tls, 0);
    cr_assert_eq(c.nseen, 4);
    cr_assert_str_eq(c.seen[0], "quote \" and backslash \\");
    cr_assert_str_eq(c.seen[1], "url#frag");
    cr_assert_str_eq(c.seen[2], "");
    cr_assert_str_eq(c.seen[3], "");
}

Test(conf, text_errors_name_the_line) {
    struct {
        const char *text, *want;
    } cases[] = {
        {"port = 1\nport = 0\n", "line 2: port: 0 is below the minimum 1"},
        {"\n\n# c\nbogus = 1", "line 4: unknown option \"bogus\""},
        {"port 80", "line 1: expected \"name = value\""},
        {"= 80", "line 1: expected \"name = value\""},
        {"name = \"open", "line 1: name: unterminated quoted value"},
        {"name = \"a\" b", "line 1: name: unexpected text after the closing quote"},
        {"tls = perhaps", "line 1: tls: \"perhaps\" is not a boolean (1/0, true/false, yes/no, "
                          "on/off)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(
            gp_conf_parse_text(opts, &c, cases[i].text, strlen(cases[i].text), err, sizeof err),
            GP_ERR_INVALID, "%s", cases[i].text);
        cr_assert_str_eq(err, cases[i].want);
    }
    const char nul[] = "name = a\0b\n";
    cr_assert_eq(gp_conf_parse_text(opts, &c, nul, sizeof nul - 1, err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_str_eq(err, "line 1: NUL byte in line");
    /* Only len bytes are read: a line cut short is parsed as it stands. */
    cr_assert_eq(gp_conf_parse_text(opts, &c, "port = 12345", 9, err, sizeof err), 0);
    cr_assert_eq(c.port, 12);
    cr_assert_eq(gp_conf_parse_text(opts, &c, NULL, 0, err, sizeof err), 0);
}

static char *fake_env(const char *name) {
    if (strcmp(name, "GP_PORT") == 0)
        return "7000";
    if (strcmp(name, "GP_MAX_SIZE") == 0)
        return "5k";
    if (strcmp(name, "GP_NAME") == 0)
        return ""; /* empty: as if unset */
    if (strcmp(name, "GP_SEEN") == 0)
        return "from-env";
    return NULL;
}

static char *bad_env(const char *name) {
    return strcmp(name, "GP_TLS") == 0 ? "sometimes" : NULL;
}

Test(conf, env_overrides) {
    const char *file = "port = 1\nname = file";
    cr_assert_eq(gp_conf_parse_text(opts, &c, file, strlen(file), err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_conf_apply_env(opts, &c, fake_env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.port, 7000);
    cr_assert_eq(c.size, 5120);
    cr_assert_str_eq(c.name, "file");
    cr_assert_eq(c.nseen, 1);
    cr_assert_str_eq(c.seen[0], "from-env");
    cr_assert_eq(gp_conf_apply_env(opts, &c, bad_env, err, sizeof err), GP_ERR_INVALID);
    cr_assert(strstr(err, "environment GP_TLS: tls: ") == err, "%s", err);
}

Test(conf, argv_forms) {
    char *argv[] = {"prog",   "--port=81", "--redis",  "r:1", "pos1",     "--tls",
                    "--name", "--weird",   "--tls=no", "--",  "--port=1", NULL};
    int argc = 11, pos[4], npos = -1;
    cr_assert_eq(gp_conf_set(opts, &c, "tls", "0", err, sizeof err), 0);
    cr_assert_eq(gp_conf_parse_argv(opts, &c, argc, argv, 1, pos, 4, &npos, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(c.port, 81);
    cr_assert_str_eq(c.redis, "r:1");
    cr_assert_str_eq(c.name, "--weird"); /* --name takes the next argument whatever it is */
    cr_assert_eq(c.tls, 0);              /* bare --tls set it, --tls=no cleared it again */
    cr_assert_eq(npos, 2);
    cr_assert_eq(pos[0], 4);
    cr_assert_eq(pos[1], 10); /* after "--", options are positional */

    char *bare[] = {"prog", "--tls", NULL};
    cr_assert_eq(gp_conf_parse_argv(opts, &c, 2, bare, 1, pos, 4, &npos, err, sizeof err), 0);
    cr_assert_eq(c.tls, 1);
    cr_assert_eq(npos, 0);
}

Test(conf, argv_errors) {
    int pos[1], npos;
    char *unknown[] = {"prog", "--nope=1", NULL};
    cr_assert_eq(gp_conf_parse_argv(opts, &c, 2, unknown, 1, pos, 1, &npos, err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_str_eq(err, "unknown option --nope");
    char *missing[] = {"prog", "--port", NULL};
    cr_assert_eq(gp_conf_parse_argv(opts, &c, 2, missing, 1, pos, 1, &npos, err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_str_eq(err, "--port needs a value");
    char *range[] = {"prog", "--port", "70000", NULL};
    cr_assert_eq(gp_conf_parse_argv(opts, &c, 3, range, 1, pos, 1, &npos, err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_str_eq(err, "port: 70000 is above the maximum 65535");
    char *many[] = {"prog", "a", "b", NULL};
    cr_assert_eq(gp_conf_parse_argv(opts, &c, 3, many, 1, pos, 1, &npos, err, sizeof err),
                 GP_ERR_INVALID);
    cr_assert_str_eq(err, "unexpected argument \"b\"");
}

static void collect(void *ud, const char *line) {
    char *buf = ud;
    strcat(buf, line);
    strcat(buf, "\n");
}

Test(conf, usage_lists_every_option) {
    char buf[4096] = "";
    gp_conf_usage(opts, collect, buf);
    cr_assert(strstr(buf, "--port N"), "%s", buf);
    cr_assert(strstr(buf, "env GP_MAX_SIZE, default 1k"), "%s", buf);
    cr_assert(strstr(buf, "--tls "), "%s", buf);
    cr_assert(strstr(buf, "repeatable"), "%s", buf);
    int lines = 0;
    for (char *p = buf; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(lines, 6);
}

/* --version anywhere before "--" (as --help), printed as "<prog> <version>". */
static void capture_stdout(void) {
    cr_redirect_stdout();
}

Test(conf, version_flag, .init = capture_stdout) {
    char *none[] = {"prog", "--port", "1", "--", "--version", NULL};
    cr_assert_eq(gp_conf_version(5, none, "gp-test", "9.8.7 (git abc1234)"), 0);
    char *after[] = {"prog", "--port", "1", "--version", NULL};
    cr_assert_eq(gp_conf_version(4, after, "gp-test", "9.8.7 (git abc1234)"), 1);
    fflush(stdout);
    cr_assert_stdout_eq_str("gp-test 9.8.7 (git abc1234)\n");
}

/* Secret files, as ssh judges a private key: refused when ours and open to group or others;
 * someone else's file handed to us is not second-guessed. */
Test(conf, secret_file_modes) {
    char msg[512];
    cr_assert_eq(gp_conf_secret_mode_ok("s", 0100600, 1000, 1000, msg, sizeof msg), 0);
    cr_assert_eq(gp_conf_secret_mode_ok("s", 0100400, 1000, 1000, msg, sizeof msg), 0);
    static const unsigned open_modes[] = {0644, 0640, 0604, 0660, 0602, 0620, 0610, 0601, 0777};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        msg[0] = '\0';
        cr_assert_eq(gp_conf_secret_mode_ok("/etc/gp/house.secret", 0100000 | open_modes[i], 0, 0,
                                            msg, sizeof msg),
                     -1, "mode 0%o accepted", open_modes[i]);
        char mode[8];
        snprintf(mode, sizeof mode, "0%o", open_modes[i]);
        cr_assert(strstr(msg, "/etc/gp/house.secret") && strstr(msg, mode) &&
                      strstr(msg, "chmod 600"),
                  "message does not name the file, its mode and the fix: %s", msg);
    }
    /* root:ghostport 0640 read by a service user in that group; a root-owned 0444 mount. */
    cr_assert_eq(gp_conf_secret_mode_ok("s", 0100640, 0, 1000, msg, sizeof msg), 0);
    cr_assert_eq(gp_conf_secret_mode_ok("s", 0100444, 0, 10001, msg, sizeof msg), 0);
    cr_assert_eq(gp_conf_secret_mode_ok("s", 0100644, 1, 1, NULL, 0), -1); /* err optional */
    cr_assert_eq(gp_conf_secret_file_ok("/nonexistent/secret", msg, sizeof msg), 0,
                 "a missing file is left to the caller's open");
}
