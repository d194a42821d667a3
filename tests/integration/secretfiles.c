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

#include "../harness/world.h"

TestSuite(secretfiles, .init = h_init, .fini = h_fini, .timeout = 120);

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

/* With file at `mode`, argv is refused, and the message names the file, its mode and the fix. */
static void refused_at(const char *what, const char *const *argv, const char *file, mode_t mode) {
    char m[8];
    snprintf(m, sizeof m, "%04o", (unsigned)mode);
    cr_assert_eq(chmod(file, mode), 0);
    char *out;
    int rc = run(argv, &out);
    assert_refused(what, rc, out, file, m);
    free(out);
}

/* With file at 0600 (or `mode`, a file without secrets), argv is accepted. */
static void accepted_at(const char *what, const char *const *argv, const char *file, mode_t mode) {
    cr_assert_eq(chmod(file, mode), 0);
    char *out;
    int rc = run(argv, &out);
    cr_assert_eq(rc, 0, "%s: a %04o file was refused: %s", what, (unsigned)mode, out);
    free(out);
}

static const char HEX[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";

Test(secretfiles, house_refuses_a_secret_file_others_can_read) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    char sec[65], url[64];
    h_register("h1", sec);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", w.bridge_port);
    const char *up = w.up_url;
    char *file = h_path("house.secret");
    char text[80];
    snprintf(text, sizeof text, "%s\n", sec);
    h_write_file(file, text, 0644);
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-house"));

    const char *check[] = {bin, "--id",       "h1", "--secret-file",  file, "--bridge",
                           url, "--upstream", up,   "--check-config", NULL};
    refused_at("house --check-config", check, file, 0644);
    const char *live[] = {bin,          "--id", "h1", "--secret-file", file, "--bridge", url,
                          "--upstream", up,     NULL};
    refused_at("house", live, file, 0644); /* refused at start: exits, never connects */
    cr_assert_eq(h_int("EXISTS gp:{h1}:state"), 0);
    refused_at("house --check-config", check, file, 0640); /* group-readable is refused too */
    accepted_at("house --check-config", check, file, 0600);
    h_spawn("house-h1", (char *const *)live);
    cr_assert(h_wait_connected("h1", 15000), "the house with a 0600 secret file did not connect");

    /* A config file that holds the secret itself is a secret file too. */
    char *conf = h_path("house.conf");
    char ctext[400];
    snprintf(ctext, sizeof ctext, "id = h2\nsecret = %s\nbridge = %s\nupstream = %s\n", sec, url,
             up);
    h_write_file(conf, ctext, 0644);
    const char *cc[] = {bin, "--config", conf, "--check-config", NULL};
    refused_at("house --config", cc, conf, 0644);
    accepted_at("house --config", cc, conf, 0600);
}

Test(secretfiles, bridge_refuses_key_token_and_config_others_can_read) {
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-bridge"));
    char *key = h_path("rudp.key"), *token = h_path("admin.token");
    char *conf = h_path("bridge.conf");
    h_write_file(key, HEX, 0644);
    h_write_file(token, "an-admin-token-of-some-length-0123\n", 0600);
    const char *with_key[] = {bin,          "--allow-ws", "--rudp-listen",  "0",
                              "--rudp-key", key,          "--check-config", NULL};
    refused_at("bridge --rudp-key", with_key, key, 0644);
    accepted_at("bridge --rudp-key", with_key, key, 0600);

    const char *with_token[] = {bin,   "--allow-ws",     "--admin-token-file",
                                token, "--check-config", NULL};
    refused_at("bridge --admin-token-file", with_token, token, 0604);
    accepted_at("bridge --admin-token-file", with_token, token, 0600);

    /* The master key lives in the config file (or GP_MASTER_KEY): then so does a secret. */
    char ctext[200];
    snprintf(ctext, sizeof ctext, "allow-ws = 1\nmaster-key = %s", HEX);
    h_write_file(conf, ctext, 0640);
    const char *with_conf[] = {bin, "--config", conf, "--check-config", NULL};
    refused_at("bridge --config with master-key", with_conf, conf, 0640);
    accepted_at("bridge --config with master-key", with_conf, conf, 0600);
    /* A config file without a secret in it may be readable by anyone. */
    h_write_file(conf, "allow-ws = 1\nlog-level = info\n", 0644);
    accepted_at("bridge --config without secrets", with_conf, conf, 0644);
}

Test(secretfiles, cli_refuses_a_key_others_can_read) {
    h_redis_start(0);
    char *key = h_path("rudp.key");
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
