/* Files that hold secrets (issue 11, defect 8): a house secret file, the bridges' rudp key,
 * the admin token file, a config file that sets the master key or a house secret, and a key
 * the CLI reads. Readable by group or others, each used to be accepted silently; now each is
 * refused as ssh refuses such a private key, with an error naming the file, its mode and
 * `chmod 600`, by the daemon and by --check-config alike. 0600 is accepted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/harness.h"

TestSuite(secretfiles, .init = h_init, .fini = h_fini, .timeout = 120);

static char *path_in_dir(const char *name) {
    static char paths[8][600];
    static int n;
    char *p = paths[n++ % 8];
    snprintf(p, 600, "%s/%s", h_dir(), name);
    return p;
}

static void write_mode(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

/* Runs argv to its end (bounded, 20 s), stdout and stderr together into *out. */
static int run(const char *const *argv, char **out) {
    return h_run(argv, 20000, out, NULL, NULL);
}

/* Refused, and the message names the file, its mode and the fix. */
static void assert_refused(const char *what, int rc, const char *out, const char *path,
                           const char *mode) {
    const char *fix = "chmod 600";
    cr_assert_neq(rc, 0, "%s: a %s secret file was accepted: %s", what, mode, out);
    cr_assert(strstr(out, path) && strstr(out, mode) && strstr(out, fix),
              "%s: the error does not name the file, its mode %s and `%s`: %s", what, mode, fix,
              out);
}

static const char HEX[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";

Test(secretfiles, house_refuses_a_secret_file_others_can_read) {
    h_redis_start(0);
    int up_port, bport;
    h_upstream_start(&up_port);
    h_bridge_start(0, &bport, NULL, 1);
    char sec[65], url[64], up[64];
    h_register("h1", sec);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bport);
    snprintf(up, sizeof up, "http://127.0.0.1:%d", up_port);
    char *file = path_in_dir("house.secret");
    char text[80];
    snprintf(text, sizeof text, "%s\n", sec);
    write_mode(file, text, 0644);
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-house"));

    const char *check[] = {bin, "--id",       "h1", "--secret-file",  file, "--bridge",
                           url, "--upstream", up,   "--check-config", NULL};
    char *out;
    int rc = run(check, &out);
    assert_refused("house --check-config", rc, out, file, "0644");
    free(out);
    const char *live[] = {bin,          "--id", "h1", "--secret-file", file, "--bridge", url,
                          "--upstream", up,     NULL};
    rc = run(live, &out); /* refused at start: exits, never connects */
    assert_refused("house", rc, out, file, "0644");
    free(out);
    cr_assert_eq(h_int("EXISTS gp:{h1}:state"), 0);
    chmod(file, 0640); /* group-readable is refused too */
    rc = run(check, &out);
    assert_refused("house --check-config", rc, out, file, "0640");
    free(out);

    chmod(file, 0600);
    rc = run(check, &out);
    cr_assert_eq(rc, 0, "a 0600 secret file was refused: %s", out);
    free(out);
    h_spawn("house-h1", (char *const *)live);
    cr_assert(h_wait_connected("h1", 15000), "the house with a 0600 secret file did not connect");

    /* A config file that holds the secret itself is a secret file too. */
    char *conf = path_in_dir("house.conf");
    char ctext[400];
    snprintf(ctext, sizeof ctext, "id = h2\nsecret = %s\nbridge = %s\nupstream = %s\n", sec, url,
             up);
    write_mode(conf, ctext, 0644);
    const char *cc[] = {bin, "--config", conf, "--check-config", NULL};
    rc = run(cc, &out);
    assert_refused("house --config", rc, out, conf, "0644");
    free(out);
    chmod(conf, 0600);
    rc = run(cc, &out);
    cr_assert_eq(rc, 0, "a 0600 config file was refused: %s", out);
    free(out);
}

Test(secretfiles, bridge_refuses_key_token_and_config_others_can_read) {
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-bridge"));
    char *key = path_in_dir("rudp.key"), *token = path_in_dir("admin.token");
    char *conf = path_in_dir("bridge.conf");
    write_mode(key, HEX, 0644);
    write_mode(token, "an-admin-token-of-some-length-0123\n", 0600);
    const char *with_key[] = {bin,          "--allow-ws", "--rudp-listen",  "0",
                              "--rudp-key", key,          "--check-config", NULL};
    char *out;
    int rc = run(with_key, &out);
    assert_refused("bridge --rudp-key", rc, out, key, "0644");
    free(out);
    chmod(key, 0600);
    rc = run(with_key, &out);
    cr_assert_eq(rc, 0, "a 0600 rudp key was refused: %s", out);
    free(out);

    const char *with_token[] = {bin,   "--allow-ws",     "--admin-token-file",
                                token, "--check-config", NULL};
    chmod(token, 0604);
    rc = run(with_token, &out);
    assert_refused("bridge --admin-token-file", rc, out, token, "0604");
    free(out);
    chmod(token, 0600);
    rc = run(with_token, &out);
    cr_assert_eq(rc, 0, "a 0600 admin token file was refused: %s", out);
    free(out);

    /* The master key lives in the config file (or GP_MASTER_KEY): then so does a secret. */
    char ctext[200];
    snprintf(ctext, sizeof ctext, "allow-ws = 1\nmaster-key = %s", HEX);
    write_mode(conf, ctext, 0640);
    const char *with_conf[] = {bin, "--config", conf, "--check-config", NULL};
    rc = run(with_conf, &out);
    assert_refused("bridge --config with master-key", rc, out, conf, "0640");
    free(out);
    chmod(conf, 0600);
    rc = run(with_conf, &out);
    cr_assert_eq(rc, 0, "a 0600 config file was refused: %s", out);
    free(out);
    /* A config file without a secret in it may be readable by anyone. */
    write_mode(conf, "allow-ws = 1\nlog-level = info\n", 0644);
    rc = run(with_conf, &out);
    cr_assert_eq(rc, 0, "a config file without secrets was refused: %s", out);
    free(out);
}

Test(secretfiles, cli_refuses_a_key_others_can_read) {
    h_redis_start(0);
    char *key = path_in_dir("rudp.key");
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", key, NULL}),
                 0, "rudp-keygen: %s", err);
    free(out), free(err);
    struct stat st;
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "rudp-keygen wrote its key 0%o", st.st_mode & 0777);
    chmod(key, 0644);
    int rc = h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--show", key, NULL});
    assert_refused("ghostport rudp-keygen --show", rc, err ? err : "", key, "0644");
    free(out), free(err);
    chmod(key, 0600);
    rc = h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--show", key, NULL});
    cr_assert_eq(rc, 0, "a 0600 key was refused: %s", err);
    free(out), free(err);
}
