/* deploy.c — deploy/ tested without a container engine or systemd as PID 1.
 *
 * compose_as_processes: the services of deploy/docker-compose.yml run as plain processes on
 * loopback — their command lines and environments derived from the compose file by
 * `tests/integration/deploy.py plan` (ports, service hosts, volumes and binaries remapped), in
 * depends_on order, each waited for as compose would (one-shots to exit 0, the others to pass
 * their own health check) — then a request through Redis, a bridge and the house over rudp://,
 * the same after the house's bridge drains away, and over wss:// with the init job's
 * certificate. The daemons run under strace, and each trace is held against its systemd unit
 * (system calls, address families, W+X memory, files written): what the units' sandbox would
 * refuse, they do not do.
 * compose_file, dockerfile, systemd_units: the static checks of deploy.py. */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(deploy, .init = h_init, .fini = h_fini, .timeout = 240);

static const char *build_dir(void) {
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

/* Debian's python3 has python3-yaml (scripts/deps.sh); another python3 on PATH may not. */
static const char *python(void) {
    const char *p = getenv("GP_PYTHON");
    if (p && *p)
        return p;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* deploy.py SUBCOMMAND ARGS...: its report is logged; returns its exit code. */
static int deploy_py(int timeout_ms, const char *const *args) {
    char *argv[16] = {(char *)python(), "tests/integration/deploy.py"};
    int n = 2;
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char *out;
    int rc = h_capture(argv, timeout_ms, &out);
    cr_log_info("deploy.py %s (rc=%d):\n%s", argv[2], rc, out);
    if (rc != 0)
        fprintf(stderr, "deploy.py %s (rc=%d):\n%s\n", argv[2], rc, out);
    free(out);
    return rc;
}
#define DEPLOY_PY(timeout_ms, ...) deploy_py(timeout_ms, (const char *const[]){__VA_ARGS__, NULL})

Test(deploy, compose_file) {
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin", build_dir());
    cr_assert_eq(DEPLOY_PY(60000, "compose", bin), 0, "docker-compose.yml: see the report above");
}

Test(deploy, config_files) {
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin", build_dir());
    cr_assert_eq(DEPLOY_PY(60000, "configs", bin), 0, "deploy/*.conf: see the report above");
}

Test(deploy, dockerfile, .timeout = 900) {
    cr_assert_eq(DEPLOY_PY(850000, "dockerfile", build_dir()), 0,
                 "Dockerfile: see the report above");
}

Test(deploy, systemd_units) {
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin", build_dir());
    cr_assert_eq(DEPLOY_PY(60000, "units", bin), 0, "units: see the report above");
}

/* --- the compose services as processes ---------------------------------------------------- */

typedef struct svc {
    json_t *j; /* its entry of the plan */
    const char *name, *role;
    h_proc *p;
    char trace[PATH_MAX]; /* strace output, "" when not traced */
} svc;

static svc g_svc[16];
static int g_nsvc;
static int g_trace; /* strace the daemons (GP_DEPLOY_TRACE=0: not) */

static svc *find_role(const char *role, int nth) {
    for (int i = 0; i < g_nsvc; i++)
        if (strcmp(g_svc[i].role, role) == 0 && nth-- == 0)
            return &g_svc[i];
    return NULL;
}

static const char *sstr(const svc *s, const char *key) {
    return json_string_value(json_object_get(s->j, key));
}

static const char *senv(const svc *s, const char *var) {
    return json_string_value(json_object_get(json_object_get(s->j, "env"), var));
}

/* "env -i K=V... ARGV..." for a service: its environment, nothing of ours (as in a container).
 * args: the command (a JSON array); extra: appended (NULL-terminated, may be NULL); override
 * replaces one variable ("K=V", may be NULL). Free with argv_free. */
static char **svc_argv(const svc *s, const json_t *args, const char *const *extra,
                       const char *override, const char *trace) {
    size_t n = 0, cap = 64;
    char **v = calloc(cap, sizeof *v);
    if (trace) {
        /* setpriv: the daemon dies with strace, as everything the harness starts dies with
         * the test (strace passes no PDEATHSIG on to what it starts). */
        const char *pre[] = {"strace", "-f",      "-qq",         "-o",   trace,
                             "--",     "setpriv", "--pdeathsig", "KILL", "--"};
        for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
            v[n++] = strdup(pre[i]);
    }
    v[n++] = strdup("/usr/bin/env");
    v[n++] = strdup("-i");
    const char *k;
    json_t *val;
    size_t olen = override ? (size_t)(strchr(override, '=') - override) : 0;
    json_object_foreach(json_object_get(s->j, "env"), k, val) {
        if (override && strlen(k) == olen && strncmp(k, override, olen) == 0)
            continue;
        char *e = malloc(strlen(k) + strlen(json_string_value(val)) + 2);
        sprintf(e, "%s=%s", k, json_string_value(val));
        v[n++] = e;
    }
    if (override)
        v[n++] = strdup(override);
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a) {
        if (n + 8 >= cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = strdup(json_string_value(a));
    }
    for (; extra && *extra; extra++) {
        if (n + 2 >= cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = strdup(*extra);
    }
    v[n] = NULL;
    return v;
}

static void argv_free(char **v) {
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

/* The CLI as the compose file's `cli` service runs it: `docker compose run --rm cli ARGS`. */
static int cli(char **out, const char *const *args) {
    svc *c = find_role("tool", 0);
    cr_assert(c, "the compose file has no cli service (profile tools)");
    json_t *argv0 = json_array();
    json_array_append_new(
        argv0, json_string(json_string_value(json_array_get(json_object_get(c->j, "argv"), 0))));
    char **v = svc_argv(c, argv0, args, NULL, NULL);
    json_decref(argv0);
    int rc = h_capture(v, 20000, out);
    argv_free(v);
    return rc;
}
#define CLI(out, ...) cli(out, (const char *const[]){__VA_ARGS__, NULL})

/* The house's line of `ghostport house list --json`, or NULL (malloc'd). */
static char *house_line(const char *id) {
    char *out;
    if (CLI(&out, "house", "list", "--json") != 0) {
        free(out);
        return NULL;
    }
    char needle[128];
    snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
    char *l = strstr(out, needle), *line = NULL;
    if (l) {
        while (l > out && l[-1] != '\n')
            l--;
        line = strndup(l, strcspn(l, "\n"));
    }
    free(out);
    return line;
}

struct hw {
    const char *id, *want; /* want: a substring of the house's line, e.g. "transport":"wss" */
    const char * not ;     /* and not this one */
};
static int house_is(void *ud) {
    struct hw *w = ud;
    char *line = house_line(w->id);
    int ok = line && strstr(line, "\"connected\":true") && (!w->want || strstr(line, w->want)) &&
             (!w->not || !strstr(line, w->not ));
    free(line);
    return ok;
}

static int wait_house(const char *id, const char *want, const char * not, int timeout_ms) {
    struct hw w = {id, want, not };
    return h_wait(house_is, &w, timeout_ms);
}

/* The process strace started (its only child), found through /proc/<pid>/stat. */
static pid_t child_of(pid_t parent) {
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    struct dirent *e;
    pid_t found = -1;
    while ((e = readdir(d)) && found < 0) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == parent)
            found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* Stops a service by PID: SIGTERM to the daemon itself (under strace: the traced child),
 * bounded wait, then the harness's SIGTERM/SIGKILL. */
static void stop_svc(svc *s) {
    if (!s->p || !h_alive(s->p))
        return;
    pid_t target = s->trace[0] ? child_of(s->p->pid) : s->p->pid;
    if (target > 0) {
        kill(target, SIGTERM);
        uint64_t end = h_now_ms() + 20000;
        while (h_alive(s->p) && h_now_ms() < end) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    h_stop(s->p);
}

/* Runs a health check command (a JSON array) in the service's environment until it
 * succeeds, at most timeout_ms. */
static int health_ok(const svc *s, const json_t *cmd, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    char **v = svc_argv(s, cmd, NULL, NULL, NULL);
    int ok = 0;
    do {
        if (h_capture(v, 5000, NULL) == 0) {
            ok = 1;
            break;
        }
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    } while (h_now_ms() < end);
    argv_free(v);
    return ok;
}

/* Starts a service (log <name>.log) and waits for it as `docker compose up` would before
 * starting what depends on it: a one-shot until it exits 0, a daemon until it is healthy. */
static void start_svc(svc *s, const char *logname, const char *override) {
    int traced = g_trace && (strcmp(s->role, "bridge") == 0 || strcmp(s->role, "house") == 0);
    s->trace[0] = '\0';
    if (traced)
        snprintf(s->trace, sizeof s->trace, "%s/%s.strace", h_dir(), logname);
    char **v = svc_argv(s, json_object_get(s->j, "argv"), NULL, override, traced ? s->trace : NULL);
    s->p = h_spawn(logname, v);
    argv_free(v);
    if (strcmp(s->role, "oneshot") == 0) {
        uint64_t end = h_now_ms() + 60000;
        while (h_alive(s->p) && h_now_ms() < end) {
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
        cr_assert(!h_alive(s->p), "one-shot %s did not finish in 60 s", s->name);
        cr_assert(WIFEXITED(s->p->status) && WEXITSTATUS(s->p->status) == 0,
                  "one-shot %s failed (status %d)", s->name, s->p->status);
        return;
    }
    json_t *hc = json_object_get(s->j, "health");
    if (hc && !json_is_null(hc)) {
        cr_assert(health_ok(s, hc, 30000), "%s not healthy within 30 s (its healthcheck)", s->name);
        json_t *ih = json_object_get(s->j, "image_health");
        if (ih && !json_is_null(ih))
            cr_assert(health_ok(s, ih, 10000), "%s: the image's HEALTHCHECK fails", s->name);
    }
    cr_assert(h_alive(s->p), "%s exited", s->name);
}

static void request_ok(const char *house, const char *tag) {
    char path[128];
    snprintf(path, sizeof path, "/echo?from=%s", tag);
    char *out;
    int rc = CLI(&out, "request", house, "GET", path, "--timeout", "10000");
    cr_assert_eq(rc, 0, "request (%s) failed, rc=%d: %s", tag, rc, out);
    char from[64];
    snprintf(from, sizeof from, "\"from\": \"%s\"", tag); /* the upstream's echo of the query */
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0 && strstr(out, from), "request (%s): %s", tag,
              out);
    free(out);
}

Test(deploy, compose_as_processes) {
    /* The master key the compose file wants from deploy/.env. */
    uint8_t key[32];
    int fd = open("/dev/urandom", O_RDONLY);
    cr_assert(fd >= 0 && read(fd, key, sizeof key) == (ssize_t)sizeof key);
    close(fd);
    char hex[65];
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", key[i]);
    setenv("GP_MASTER_KEY", hex, 1);
    const char *t = getenv("GP_DEPLOY_TRACE");
    g_trace = !(t && strcmp(t, "0") == 0);
    if (g_trace && access("/usr/bin/strace", X_OK) != 0)
        cr_assert_fail("strace not installed (scripts/deps.sh installs it; GP_DEPLOY_TRACE=0 "
                       "skips the sandbox checks)");

    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin", build_dir());
    char *const argv[] = {
        (char *)python(), "tests/integration/deploy.py", "plan", (char *)h_dir(), bin, NULL};
    char *out;
    int rc = h_capture(argv, 60000, &out);
    cr_assert_eq(rc, 0, "deploy.py plan: %s", out);
    json_error_t jerr;
    json_t *plan = json_loads(out, 0, &jerr);
    cr_assert(plan, "plan is not JSON (%s): %s", jerr.text, out);
    free(out);
    if (g_trace && json_is_true(json_object_get(plan, "sanitizer"))) {
        /* `make asan`: LeakSanitizer fails every exit under ptrace, and the units are for
         * release builds anyway. A note, not cr_log_warn: Criterion 2.4 exits 1 after a
         * warning even when every test passed. */
        fprintf(stderr, "deploy: sanitizer build: daemons not traced against their units\n");
        g_trace = 0;
    }
    size_t i;
    json_t *sj;
    g_nsvc = 0;
    json_array_foreach(json_object_get(plan, "services"), i, sj) {
        cr_assert(g_nsvc < 16);
        g_svc[g_nsvc++] = (svc){.j = sj,
                                .name = json_string_value(json_object_get(sj, "name")),
                                .role = json_string_value(json_object_get(sj, "role"))};
    }

    /* Up, in depends_on order. */
    for (int k = 0; k < g_nsvc; k++)
        if (strcmp(g_svc[k].role, "tool") != 0)
            start_svc(&g_svc[k], g_svc[k].name, NULL);
    svc *house = find_role("house", 0), *b1 = find_role("bridge", 0), *b2 = find_role("bridge", 1);
    cr_assert(house && b1 && b2, "want a house and two bridges in the compose file");
    const char *id = sstr(house, "house_id");

    /* rudp:// first: the house is on rudp, and a request goes through. */
    cr_assert(wait_house(id, "\"transport\":\"rudp\"", NULL, 20000),
              "the house is not connected over rudp: %s", house_line(id));
    request_ok(id, "rudp");

    /* Its bridge drains (SIGTERM, as `docker compose stop` sends): the house moves to the
     * other one, with the same rudp key. */
    char *line = house_line(id);
    svc *held = strstr(line, senv(b1, "GP_BRIDGE_ID")) ? b1 : b2;
    svc *other = held == b1 ? b2 : b1;
    char want[128];
    snprintf(want, sizeof want, "\"bridge\":\"%s\"", senv(other, "GP_BRIDGE_ID"));
    free(line);
    stop_svc(held);
    cr_assert(WIFEXITED(held->p->status) && WEXITSTATUS(held->p->status) == 0,
              "%s did not drain and exit 0 on SIGTERM (status %d)", held->name, held->p->status);
    cr_assert(wait_house(id, want, NULL, 20000), "the house did not move to %s: %s", other->name,
              house_line(id));
    request_ok(id, "failover");
    char again[64];
    snprintf(again, sizeof again, "%s.restart", held->name);
    start_svc(held, again, NULL); /* `docker compose start`: same command, same keys */

    /* wss:// with the init job's certificate as the house's CA: the same house with its
     * rudp:// bridges left out (as when UDP does not get through). */
    stop_svc(house);
    cr_assert(WIFEXITED(house->p->status) && WEXITSTATUS(house->p->status) == 0,
              "the house did not exit 0 on SIGTERM (status %d)", house->p->status);
    svc wss = *house;
    char override[512];
    snprintf(override, sizeof override, "GP_BRIDGE=%s", sstr(house, "bridge_wss"));
    start_svc(&wss, "house-wss", override);
    cr_assert(wait_house(id, "\"transport\":\"wss\"", NULL, 20000),
              "the house is not connected over wss: %s", house_line(id));
    request_ok(id, "wss");

    /* Redis runs with what the deployment relies on. */
    svc *redis = NULL;
    for (int k = 0; k < g_nsvc && !redis; k++)
        if (json_object_get(json_object_get(g_svc[k].j, "ports"), "6379"))
            redis = &g_svc[k];
    cr_assert(redis, "no service exposes 6379");
    int rport =
        (int)json_integer_value(json_object_get(json_object_get(redis->j, "ports"), "6379"));
    redisContext *rc_ = redisConnect("127.0.0.1", rport);
    cr_assert(rc_ && !rc_->err, "redis on %d", rport);
    /* Its ACL users are on: a client that has not logged in gets nothing but NOAUTH. The
     * operator's user (password made by the redis-users job) may read the settings. */
    redisReply *ar = redisCommand(rc_, "PING");
    cr_assert(ar && ar->type == REDIS_REPLY_ERROR && strstr(ar->str, "NOAUTH"),
              "redis answers a client that has not logged in: %s", ar ? ar->str : rc_->errstr);
    freeReplyObject(ar);
    char pwpath[PATH_MAX];
    snprintf(pwpath, sizeof pwpath, "%s/vol/cli-redis/ops.password", h_dir());
    char *pw = h_read_file(pwpath, NULL);
    cr_assert(pw, "no %s (the redis-users job makes it)", pwpath);
    pw[strcspn(pw, "\r\n")] = '\0';
    ar = redisCommand(rc_, "AUTH gp-ops %s", pw);
    cr_assert(ar && ar->type == REDIS_REPLY_STATUS, "AUTH gp-ops: %s", ar ? ar->str : "");
    freeReplyObject(ar);
    free(pw);
    const char *want_conf[][2] = {{"appendonly", "yes"},
                                  {"maxmemory-policy", "noeviction"},
                                  {"notify-keyspace-events", NULL}};
    for (size_t k = 0; k < 3; k++) {
        redisReply *r = redisCommand(rc_, "CONFIG GET %s", want_conf[k][0]);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        const char *v = r->element[1]->str;
        if (want_conf[k][1])
            cr_assert_str_eq(v, want_conf[k][1], "redis %s", want_conf[k][0]);
        else
            cr_assert(strchr(v, 'K') && (strchr(v, 't') || strchr(v, 'A')),
                      "redis notify-keyspace-events %s", v);
        freeReplyObject(r);
    }
    redisFree(rc_);

    /* Down, by PID, in reverse order; then each daemon's trace (every incarnation) against
     * its unit. */
    stop_svc(&wss);
    for (int k = g_nsvc - 1; k >= 0; k--)
        stop_svc(&g_svc[k]);
    if (g_trace) {
        DIR *d = opendir(h_dir());
        cr_assert(d);
        struct dirent *e;
        int checked = 0;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 8 || strcmp(e->d_name + l - 7, ".strace") != 0)
                continue;
            int is_house = strncmp(e->d_name, house->name, strlen(house->name)) == 0;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", h_dir(), e->d_name);
            const char *args[] = {"trace",
                                  is_house ? "deploy/ghostport-house.service"
                                           : "deploy/ghostport-bridge.service",
                                  path,
                                  is_house ? "ghostport-house" : "ghostport-bridge",
                                  is_house ? senv(house, "GP_STATE_DIR") : NULL,
                                  NULL};
            cr_assert_eq(deploy_py(60000, args), 0,
                         "%s leaves its unit's sandbox: see the report above", e->d_name);
            checked++;
        }
        closedir(d);
        cr_assert_eq(checked, 5, "want traces of 2 bridges, a restart and 2 houses, got %d",
                     checked);
    }
    json_decref(plan);
}
