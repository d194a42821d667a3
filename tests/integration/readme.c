/* readme.c — every producer example in README.md runs as written: the files in
 * scripts/examples/ are checked to appear verbatim in the README, then each is executed
 * against a real Redis, bridge, house "demo" and upstream. redis-cli and Python (Debian's
 * python3-redis) always; Node when node and npm are installed (`npm ci` of the example's
 * package-lock.json into $BUILD/node-examples). */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(readme, .init = h_init, .fini = h_fini, .timeout = 300);

static int exited(void *ud) {
    return !h_alive(ud);
}

/* Runs `sh -c cmd` (env GP_REDIS and GP_HOUSE=demo set), bounded; returns its exit code and
 * its output (stdout+stderr) in *out. */
static int run_sh(const char *name, const char *cmd, int timeout_ms, char **out) {
    char env[1200];
    const char *pw = h_redis_password(), *url = h_redis_url(), *at = strchr(url, '@');
    if (pw && at && strstr(name, "-sh")) {
        /* redis-cli does not percent-decode a URL's password: the shell example takes it from
         * REDISCLI_AUTH (as its comment says), and the URL without credentials. */
        const char *scheme_end = strstr(url, "://");
        int slen = scheme_end ? (int)(scheme_end - url) + 3 : 0;
        snprintf(env, sizeof env, "export REDISCLI_AUTH='%s' GP_REDIS='%.*s%s' GP_HOUSE=demo; %s",
                 pw, slen, url, at + 1, cmd);
    } else {
        snprintf(env, sizeof env, "export GP_REDIS='%s' GP_HOUSE=demo; %s", url, cmd);
    }
    char *argv[] = {"sh", "-c", env, NULL};
    h_proc *p = h_spawn(name, argv);
    if (!h_wait(exited, p, timeout_ms)) {
        h_stop(p);
        *out = h_read_file(p->log, NULL);
        return -1;
    }
    size_t len;
    char *s = h_read_file(p->log, &len);
    *out = s ? strdup(s + p->log_off) : strdup("");
    free(s);
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

static void world_demo(void) {
    h_redis_start(0);
    int up, bport;
    h_upstream_start(&up);
    h_bridge_start(0, &bport, NULL, 1);
    char sec[65], url[64];
    h_register("demo", sec);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", up);
    h_house_start("demo", sec, bport, url, NULL);
    cr_assert(h_wait_connected("demo", 15000), "demo house did not connect");
}

static void assert_in_readme(const char *example) {
    char *readme = h_read_file("README.md", NULL);
    cr_assert(readme, "README.md not found (run from the repository root)");
    char path[256];
    snprintf(path, sizeof path, "scripts/examples/%s", example);
    char *code = h_read_file(path, NULL);
    cr_assert(code, "%s missing", path);
    /* The README shows the file without its shebang line. */
    const char *body = code;
    if (strncmp(body, "#!", 2) == 0)
        body = strchr(body, '\n') + 1;
    cr_assert(strstr(readme, body), "README.md does not contain %s verbatim", path);
    free(readme);
    free(code);
}

Test(readme, examples_are_in_the_readme) {
    assert_in_readme("producer.sh");
    assert_in_readme("producer.py");
    assert_in_readme("producer.js");
}

Test(readme, redis_cli_example) {
    world_demo();
    char *out;
    int rc = run_sh("producer-sh", "sh scripts/examples/producer.sh", 30000, &out);
    cr_assert_eq(rc, 0, "producer.sh exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "status\n200\n"), "no status 200 in:\n%s", out);
    cr_assert(strstr(out, "\"from\": \"redis-cli\""), "no echo of the request in:\n%s", out);
    cr_assert(strstr(out, "final\n1"), "no final entry in:\n%s", out);
    free(out);
}

Test(readme, python_example) {
    world_demo();
    char *out;
    /* Debian's python3-redis lives in the system python; prefer the first python3 that
     * has it. */
    int rc = run_sh("producer-py",
                    "for p in python3 /usr/bin/python3; do "
                    "  if $p -c 'import redis' 2>/dev/null; then "
                    "    exec $p scripts/examples/producer.py; fi; done; "
                    "echo 'no python3 with the redis module (apt install python3-redis)'; exit 99",
                    30000, &out);
    cr_assert_eq(rc, 0, "producer.py exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "200 application/json"), "no 200 in:\n%s", out);
    cr_assert(strstr(out, "\"method\": \"POST\"") && strstr(out, "\"from\": \"python\""),
              "no echo of the request in:\n%s", out);
    free(out);
}

Test(readme, node_example) {
    if (system("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0)
        cr_skip_test("node/npm not installed");
    const char *build = getenv("BUILD") && *getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[2048];
    /* npm ci into the build tree from the committed lock file (never into scripts/). */
    snprintf(cmd, sizeof cmd,
             "set -e; d='%s/node-examples'; mkdir -p \"$d\"; "
             "cp scripts/examples/package.json scripts/examples/package-lock.json "
             "scripts/examples/producer.js \"$d\"/; cd \"$d\"; "
             "if [ ! -d node_modules/redis ] || [ package-lock.json -nt node_modules/.ok ]; then "
             "  npm ci --no-audit --no-fund --loglevel=error; touch node_modules/.ok; fi; "
             "node producer.js",
             build);
    world_demo();
    char *out;
    int rc = run_sh("producer-js", cmd, 240000, &out);
    cr_assert_eq(rc, 0, "producer.js (or npm ci) exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "200 application/json"), "no 200 in:\n%s", out);
    cr_assert(strstr(out, "\"from\": \"node\""), "no echo of the request in:\n%s", out);
    free(out);
}

/* `make demo`'s script: starts its own redis-server, upstream, bridge and house, prints a
 * real reply, the metrics and a top snapshot, and stops what it started. */
Test(readme, demo_script) {
    const char *build = getenv("BUILD") && *getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "unset GP_REDIS; BUILD='%s' sh scripts/demo.sh", build);
    char *out;
    int rc = run_sh("demo", cmd, 120000, &out);
    cr_assert_eq(rc, 0, "demo.sh exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK"), "no reply printed:\n%s", out);
    cr_assert(strstr(out, "\"hello\": \"world\""), "not the echo of the request:\n%s", out);
    /* The operator's view of it: the bridge's metrics count the request, top shows both. */
    cr_assert(strstr(out, "gp_bridge_requests_total{class=\"2xx\"} 1\n"), "metrics:\n%s", out);
    cr_assert(strstr(out, "BRIDGES 1") && strstr(out, "HOUSES 1 (1 online"), "no top snapshot:\n%s",
              out);
    free(out);
}
