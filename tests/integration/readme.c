/* readme.c — every producer example in README.md runs as written: the files in
 * scripts/examples/ are checked to appear verbatim in the README, then each is executed
 * against a real Redis, bridge, house "demo" and upstream. redis-cli and Python (Debian's
 * python3-redis) always; Node when node and npm are installed (`npm ci` of the example's
 * package-lock.json into $BUILD/node-examples). `make demo`'s script runs too. And the
 * section "A bridge and a house on two machines" runs as the README has it, block by block,
 * on two machines made of namespaces (two_machines, below). */
#include "../harness/netns.h"
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* --- "A bridge and a house on two machines", as written ------------------------------------ */

/* The README marks each block of that section with <!-- two-machine:MACHINE[:daemon] -->:
 * the machine it runs on (bridge, house) and whether its last command is a daemon that keeps
 * running. Each block runs, in the README's order, as one shell script (sh -e) in a fresh
 * environment (PATH with build/bin first, HOME, nothing else: no GP_* of the test's), in the
 * machine's working directory; a daemon block runs in the background until the end.
 *
 * A machine is a network namespace (the two joined by a veth: the bridge machine has
 * 192.0.2.10, the README's address, the house machine 192.0.2.20), a mount namespace whose
 * /etc is an overlay on a tmpfs (so /etc/ghostport and /etc/redis are its own and the host's
 * /etc is never written; its /etc/hosts names bridge.example.net, the README's name, as DNS
 * would), and a PID namespace, whose first process (`sleep`, under `unshare --kill-child`)
 * takes every process of the machine with it when it is killed — by the test's end, or by
 * the kernel when the test dies. Nothing of the README is replaced: its name and address are
 * made true instead. What the README does not write as a command is done by the test: a
 * Redis as Debian's package leaves it on the bridge machine (loopback only, no password, its
 * /etc/redis/redis.conf), a web service on 127.0.0.1:8080 on the house machine, and the copy
 * of farm-1.secret and bridge.crt from one machine to the other. */

#define TM_BRIDGE_ADDR "192.0.2.10"
#define TM_HOUSE_ADDR "192.0.2.20"

typedef struct tm_machine {
    const char *name;
    char ns[64];
    char home[PATH_MAX]; /* its working directory (the host's file system, but /etc) */
    h_proc *holder;      /* unshare, waiting on the namespace's first process */
    pid_t init;          /* that process (sleep), as the test sees it */
} tm_machine;

static tm_machine g_tm[2] = {{.name = "bridge"}, {.name = "house"}};
static char g_tm_path[PATH_MAX + 128];

/* The machine's first process: the holder's child. */
static int tm_init_known(void *ud) {
    tm_machine *m = ud;
    char p[64], buf[64] = "";
    snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)m->holder->pid, (int)m->holder->pid);
    FILE *f = fopen(p, "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    m->init = (pid_t)atoi(buf);
    return m->init > 0 && h_log_count(m->holder, "machine-ready");
}

/* The namespaces and the overlay of /etc (setup: shell run as the machine's first process
 * before it sleeps). */
static void tm_machine_up(tm_machine *m, const char *setup) {
    char fs[PATH_MAX], script[32768];
    snprintf(m->home, sizeof m->home, "%s/%s-home", h_dir(), m->name);
    snprintf(fs, sizeof fs, "%s/%s-fs", h_dir(), m->name);
    cr_assert(mkdir(m->home, 0755) == 0 && mkdir(fs, 0755) == 0, "mkdir: %s", strerror(errno));
    snprintf(script, sizeof script,
             "set -e; mount -t tmpfs -o mode=755 tmpfs '%s'; mkdir '%s/up' '%s/work'; "
             "mount -t overlay overlay -o lowerdir=/etc,upperdir='%s/up',workdir='%s/work' /etc; "
             "printf '127.0.0.1 localhost\\n%s bridge.example.net\\n' > /etc/hosts; %s; "
             "echo machine-ready; exec sleep 100000",
             fs, fs, fs, fs, fs, TM_BRIDGE_ADDR, setup);
    char *argv[] = {"unshare",      "--mount", "--pid", "--fork", "--kill-child",
                    "--mount-proc", "sh",      "-c",    script,   NULL};
    h_netns_spawn_in(m->ns);
    char name[32];
    snprintf(name, sizeof name, "%s-machine", m->name);
    m->holder = h_spawn(name, argv);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait(tm_init_known, m, 10000), "the %s machine did not come up (see %s)", m->name,
              m->holder->log);
}

/* argv[20] of `sh FLAG WHAT` (-e FILE, or -c CMD) in machine m, in its home, with a fresh
 * environment; pid and wd are its buffers (16 and PATH_MAX + 8 bytes). */
static void tm_argv(const tm_machine *m, const char *flag, const char *what, char *pid, char *wd,
                    char **argv) {
    snprintf(pid, 16, "%d", (int)m->init);
    snprintf(wd, PATH_MAX + 8, "--wd=%s", m->home);
    const char *v[] = {"/usr/bin/env", "-i", g_tm_path, "HOME=/root", "LANG=C.UTF-8", "nsenter",
                       "-t",           pid,  "-m",      "-n",         "-p",           wd,
                       "sh",           flag, what,      NULL};
    memcpy(argv, v, sizeof v);
}

/* Runs cmd (sh -c) in machine m to its end; its output (stdout and stderr) into *out. */
static int tm_sh(const tm_machine *m, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tm_sh(const tm_machine *m, char **out, const char *fmt, ...) {
    char cmd[4096], pid[16], wd[PATH_MAX + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *argv[20];
    tm_argv(m, "-c", cmd, pid, wd, argv);
    return h_run((const char *const *)argv, 20000, out, NULL, NULL);
}

/* Kills each machine's first process, and so every process in it; the holders end then. */
static void tm_down(void) {
    for (int i = 0; i < 2; i++)
        if (g_tm[i].init > 0 && g_tm[i].holder && h_alive(g_tm[i].holder))
            kill(g_tm[i].init, SIGKILL);
    for (int i = 0; i < 2; i++) {
        if (g_tm[i].holder)
            h_stop(g_tm[i].holder);
        g_tm[i].holder = NULL, g_tm[i].init = 0;
    }
}

typedef struct tm_block {
    char machine[16];
    int daemon;
    char *text;
} tm_block;

/* The marked blocks of README.md, in order; their count. */
static int tm_blocks(tm_block *b, int max) {
    char *readme = h_read_file("README.md", NULL);
    cr_assert(readme, "README.md not found (run from the repository root)");
    static const char mark[] = "<!-- two-machine:";
    int n = 0;
    for (const char *p = strstr(readme, mark); p; p = strstr(p + 1, mark)) {
        cr_assert_lt(n, max, "more marked blocks than expected");
        const char *q = p + sizeof mark - 1, *end = strstr(q, " -->\n```sh\n");
        cr_assert(end && end - q < 32, "a two-machine mark not followed by a ```sh block: %.60s",
                  p);
        size_t ml = strcspn(q, ": ");
        cr_assert(ml < sizeof b[n].machine);
        memcpy(b[n].machine, q, ml);
        b[n].machine[ml] = '\0';
        b[n].daemon = strncmp(q + ml, ":daemon -->", 11) == 0;
        const char *code = end + strlen(" -->\n```sh\n"), *close = strstr(code, "\n```\n");
        cr_assert(close, "an unclosed block after %.60s", p);
        b[n].text = strndup(code, (size_t)(close - code + 1));
        n++;
    }
    free(readme);
    return n;
}

Test(readme, two_machines, .fini = tm_down, .timeout = 120) {
    if (access("/usr/bin/unshare", X_OK) != 0 || access("/usr/bin/nsenter", X_OK) != 0)
        cr_skip_test("no unshare/nsenter (util-linux)");
    tm_block blk[16];
    int nb = tm_blocks(blk, 16);
    cr_assert_geq(nb, 4, "the two-machine section has %d marked blocks", nb);
    for (int i = 0; i < nb; i++) {
        cr_assert(!strcmp(blk[i].machine, "bridge") || !strcmp(blk[i].machine, "house"),
                  "unknown machine %s", blk[i].machine);
        /* Secrets only through files or the environment: no hex key or password typed. */
        static const char *const typed[] = {
            "GP_SECRET=", "--secret ", "--master-key ", "--admin-token ",
            " -a ",       "redis://:", "@192.0.2.10"};
        for (size_t k = 0; k < sizeof typed / sizeof typed[0]; k++)
            cr_assert(!strstr(blk[i].text, typed[k]), "a secret on a command line (%s) in:\n%s",
                      typed[k], blk[i].text);
    }
    char bin[PATH_MAX];
    cr_assert(realpath(h_bin(""), bin), "%s: %s", h_bin(""), strerror(errno));
    snprintf(g_tm_path, sizeof g_tm_path,
             "PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", bin);

    int host_had_key = access("/etc/ghostport/master.key", F_OK) == 0;
    tm_machine *br = &g_tm[0], *ho = &g_tm[1];
    h_netns_add("bridge", br->ns, sizeof br->ns);
    h_netns_add("house", ho->ns, sizeof ho->ns);
    h_netns_link(br->ns, "eth0", TM_BRIDGE_ADDR "/24", ho->ns, "eth0", TM_HOUSE_ADDR "/24");
    /* Redis as Debian's package configures it (loopback only, protected mode, no password),
     * its files in the test directory. */
    char rconf[2048];
    snprintf(rconf, sizeof rconf,
             "mkdir -p /etc/redis; printf 'bind 127.0.0.1 -::1\\nport 6379\\nprotected-mode yes\\n"
             "daemonize no\\nappendonly no\\ndir %s\\n' > /etc/redis/redis.conf",
             h_dir());
    tm_machine_up(br, rconf);
    tm_machine_up(ho, "true");
    char pid[16], wd[PATH_MAX + 8], *argv[20];
    tm_argv(br, "-c", "exec redis-server /etc/redis/redis.conf", pid, wd, argv);
    h_spawn("redis", argv);
    char *out = NULL;
    int up = 0;
    for (int i = 0; i < 500 && !up; i++) {
        free(out);
        up = tm_sh(br, &out, "redis-cli ping") == 0 && strstr(out, "PONG");
        if (!up)
            usleep(20000);
    }
    cr_assert(up, "Redis on the bridge machine: %s", out);
    free(out);
    /* The service the house guards: a web server with a page of the test's own. */
    char www[PATH_MAX + 16], page[PATH_MAX + 32], marker[64];
    snprintf(www, sizeof www, "%s/www", h_dir());
    snprintf(page, sizeof page, "%s/index.html", www);
    snprintf(marker, sizeof marker, "two machines %d", (int)getpid());
    cr_assert_eq(mkdir(www, 0755), 0);
    h_write_file(page, marker, 0644);
    char web[PATH_MAX + 128];
    snprintf(web, sizeof web, "exec python3 -m http.server 8080 --bind 127.0.0.1 --directory '%s'",
             www);
    tm_argv(ho, "-c", web, pid, wd, argv);
    h_spawn("web", argv);

    /* The README's blocks, in its order. */
    int copied = 0;
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < nb; i++) {
        tm_machine *m = !strcmp(blk[i].machine, "bridge") ? br : ho;
        if (m == ho && !copied) {
            /* "Copy farm-1.secret and /etc/ghostport/bridge.crt (not the key) to the
             * directory you work in on the house machine" */
            char *o = NULL;
            int rc = h_netns_sh(NULL, 10000, &o,
                                "nsenter -t %d -m cat /etc/ghostport/bridge.crt > '%s/bridge.crt' "
                                "&& cp '%s/farm-1.secret' '%s/'",
                                (int)br->init, ho->home, br->home, ho->home);
            cr_assert_eq(rc, 0, "copying to the house machine: %s", o ? o : "");
            free(o);
            copied = 1;
        }
        char file[PATH_MAX + 32];
        snprintf(file, sizeof file, "%s/block-%d.sh", h_dir(), i + 1);
        h_write_file(file, blk[i].text, 0644);
        char name[32];
        snprintf(name, sizeof name, "block-%d-%s", i + 1, m->name);
        tm_argv(m, "-e", file, pid, wd, argv);
        h_proc *p = h_spawn(name, argv);
        if (blk[i].daemon) {
            /* Up once it listens (the bridge) or is connected (the house). */
            const char *ready = m == br ? "transport=wss" : "event=connected";
            cr_assert(h_wait_log(p, ready, 30000), "block %d (%s) did not get to %s:\n%s\n%s",
                      i + 1, m->name, ready, blk[i].text, h_read_file(p->log, NULL));
            continue;
        }
        cr_assert(h_wait(exited, p, 30000), "block %d (%s) did not end", i + 1, m->name);
        char *log = h_read_file(p->log, NULL);
        cr_assert(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0,
                  "block %d (%s) failed:\n%s\n---\n%s", i + 1, m->name, blk[i].text, log);
        if (i == nb - 1) {
            /* The last block: the house listed, and a request through to the house's
             * machine and back. */
            cr_assert(strstr(log, "farm-1"), "house list does not name farm-1:\n%s", log);
            cr_assert(strstr(log, "HTTP/1.1 200"), "no 200 from the house:\n%s", log);
            cr_assert(strstr(log, marker), "not the house machine's page:\n%s", log);
        }
        free(log);
    }
    cr_assert(copied, "no block ran on the house machine");
    fprintf(stderr, "readme/two_machines: %d blocks in %.1f s\n", nb,
            (double)(h_now_ms() - t0) / 1000.0);

    /* What the section says of Redis holds: from the house machine, Redis at the bridge's
     * address wants the password (protected mode on, no DENIED), and takes it. */
    char *o = NULL;
    tm_sh(ho, &o, "redis-cli -h " TM_BRIDGE_ADDR " ping");
    cr_assert(strstr(o, "NOAUTH"), "Redis without the password: %s", o);
    free(o);
    cr_assert_eq(tm_sh(br, &o, "cat /etc/ghostport/redis.pw"), 0);
    char pw[128];
    snprintf(pw, sizeof pw, "%s", o);
    free(o);
    tm_sh(ho, &o, "REDISCLI_AUTH='%s' redis-cli -h " TM_BRIDGE_ADDR " ping", pw);
    cr_assert(strstr(o, "PONG"), "Redis with the password, from the house machine: %s", o);
    free(o);
    tm_sh(br, &o,
          "grep -c -e '^requirepass' -e '^bind .*" TM_BRIDGE_ADDR "' /etc/redis/redis.conf; "
          "grep -c '^protected-mode yes' /etc/redis/redis.conf");
    cr_assert(!strcmp(o, "2\n1\n"), "redis.conf after CONFIG REWRITE: %s", o);
    free(o);
    /* The secrets' files: only root reads them. */
    tm_sh(ho, &o, "stat -c '%%a %%n' /etc/ghostport /etc/ghostport/house.secret; ls");
    cr_assert(strstr(o, "750 /etc/ghostport\n600 /etc/ghostport/house.secret\n") &&
                  !strstr(o, "farm-1.secret"),
              "house machine: %s", o);
    free(o);
    tm_sh(br, &o,
          "stat -c '%%a %%n' /etc/ghostport/bridge.key /etc/ghostport/redis.pw "
          "/etc/ghostport/master.key farm-1.secret");
    cr_assert(strstr(o, "600 /etc/ghostport/bridge.key\n600 /etc/ghostport/redis.pw\n"
                        "600 /etc/ghostport/master.key\n600 farm-1.secret\n"),
              "bridge machine: %s", o);
    free(o);
    /* And the host's /etc was not touched. */
    cr_assert_eq(access("/etc/ghostport/master.key", F_OK) == 0, host_had_key,
                 "the test wrote into the host's /etc/ghostport");
    for (int i = 0; i < nb; i++)
        free(blk[i].text);
}
