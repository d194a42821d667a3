/* netlab.h — the network lab of the benchmarks that put tunnels on a bad link (links.c, l3.c):
 * a hub network namespace, which this process enters, and far namespaces each joined to it by
 * its own linkem_tool link (linkem_tool.c: two TUN devices, seeded loss, delay and jitter, a
 * rate-limited bottleneck with a bounded queue, on whole IP packets); the processes started in
 * them; the links' counters and loss settings; the teardown. Everything is named gpb<pid>-*
 * (namespaces) or gpb<pid>... (devices); the teardown stops every process by PID, kills what
 * is left inside the namespaces (children the daemons forked) and removes the namespaces, also
 * on SIGINT/SIGTERM/SIGHUP/abort; namespaces of runs killed with SIGKILL are removed by the next
 * run. Header only (each C file under tests/bench is a program of its own); needs root. */
#ifndef GP_BENCH_NETLAB_H
#define GP_BENCH_NETLAB_H

#include "../harness/harness.h"
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The link every suite of the lab meets (links.md): 10 Mbit/s each way through a 128 KiB
 * drop-tail queue (~100 ms), 100 ms one-way delay with ±5 ms jitter (RTT 200 ms). */
#define NL_RTT_MS 200
#define NL_JITTER_MS 5
#define NL_RATE "10M"   /* each direction, bits/s */
#define NL_QUEUE "128k" /* bottleneck queue */
#define NL_MAX_NS 16
#define NL_MAX_LINKS 12

/* One far namespace and its link to the hub: a = hub (tun_h, hub_ip), b = far (tun_f, far_ip). */
typedef struct nl_link {
    char name[16]; /* what it carries, e.g. "rudp" */
    char ns[32], tun_h[16], tun_f[16], hub_ip[16], far_ip[16], ctl[48];
    h_proc *lk; /* its linkem_tool */
} nl_link;

/* Linkem counters, a = hub, b = far: a2b is "down" (hub to far), b2a "up". */
typedef struct nl_snap {
    double down_in_bytes, up_in_bytes, down_pending, up_pending, down_qdrop, up_qdrop, down_in,
        up_in, down_loss, up_loss;
    int ok;
} nl_snap;

static const char *nl_suite = "netlab"; /* for messages and the skipped line */
static const char *nl_verbose_env;      /* progress on stderr when this is set */
static char nl_ip_bin[PATH_MAX];        /* the ip(8) binary */
static char nl_hub[32];                 /* the hub namespace */
static char nl_ns_name[NL_MAX_NS][32];  /* every namespace made, the hub first */
static ino_t nl_ns_ino[NL_MAX_NS];      /* to find every process left inside them */
static int nl_nns;
static nl_link *nl_links[NL_MAX_LINKS]; /* every link started, in order */
static int nl_nlinks;

/* --- small helpers ------------------------------------------------------------------------- */

static inline double nl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void nl_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Progress on stderr when the suite's verbose variable is set (ms since the first line). */
static inline void nl_vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void nl_vlog(const char *fmt, ...) {
    static double t0;
    if (!nl_verbose_env || !getenv(nl_verbose_env))
        return;
    if (t0 == 0)
        t0 = nl_now_ms();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %7.0f ms: ", nl_suite, nl_now_ms() - t0);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* name on PATH (or in the sbin directories) into out; 1 if found. */
static inline int nl_find_bin(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Short-lived commands (setup steps, pings, transfers), started without the harness's process
 * table (h_spawn keeps every process it ever started, 64 at most): stdout and stderr to a log
 * file, stdin /dev/null, killed if this process dies, and by nl_cleanup if still running. */
typedef struct nl_task {
    pid_t pid; /* 0 once reaped */
    int status;
    char log[PATH_MAX];
} nl_task;

#define NL_MAX_TASKS 64
static pid_t nl_task_pids[NL_MAX_TASKS]; /* started and not reaped yet */

static inline void nl_task_forget(pid_t pid) {
    for (int i = 0; i < NL_MAX_TASKS; i++)
        if (nl_task_pids[i] == pid)
            nl_task_pids[i] = 0;
}

/* Starts argv (argv[0] a path) with its output into log (appended, or truncated first).
 * 0, or -1 (t->pid 0) when it could not fork (or log's name is too long). */
static inline int nl_task_start(nl_task *t, const char *const *argv, const char *log, int append) {
    memset(t, 0, sizeof *t);
    if ((size_t)snprintf(t->log, sizeof t->log, "%s", log) >= sizeof t->log)
        return -1; /* no room for its name */
    int slot = -1;
    for (int i = 0; i < NL_MAX_TASKS && slot < 0; i++)
        if (!nl_task_pids[i])
            slot = i;
    int fd = open(log, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (slot < 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    pid_t pid = h_fork_exec((char *const *)argv, -1, fd, fd, NULL);
    if (pid < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    t->pid = pid;
    nl_task_pids[slot] = pid;
    return 0;
}

/* 1 when t has ended (reaped: its wait status in t->status), 0 while it runs. */
static inline int nl_task_done(nl_task *t) {
    if (!t->pid)
        return 1;
    if (waitpid(t->pid, &t->status, WNOHANG) != t->pid)
        return 0;
    nl_task_forget(t->pid);
    t->pid = 0;
    return 1;
}

/* SIGTERM, up to grace_ms for it to end, then SIGKILL; reaped. */
static inline void nl_task_stop(nl_task *t, int grace_ms) {
    if (!t->pid)
        return;
    kill(t->pid, SIGTERM);
    double end = nl_now_ms() + grace_ms;
    while (!nl_task_done(t) && nl_now_ms() < end)
        nl_sleep_ms(5);
    if (t->pid) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, &t->status, 0);
        nl_task_forget(t->pid);
        t->pid = 0;
    }
}

/* Exit status of a task that ended (-1: killed by a signal). */
static inline int nl_task_rc(const nl_task *t) {
    return WIFEXITED(t->status) ? WEXITSTATUS(t->status) : -1;
}

/* Runs argv (NULL-terminated, argv[0] a path) to completion with output appended to
 * <dir>/setup.log. Returns its exit status (-1 if it could not run or took over 20 s). */
static inline int nl_run(const char *const *argv) {
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/setup.log", h_dir());
    nl_task t;
    if (nl_task_start(&t, argv, log, 1) != 0)
        return -1;
    double end = nl_now_ms() + 20000;
    while (!nl_task_done(&t)) {
        if (nl_now_ms() > end) {
            nl_task_stop(&t, 0);
            return -1;
        }
        nl_sleep_ms(2);
    }
    return nl_task_rc(&t);
}

/* ip(8) with the arguments given (NULL-terminated, at most 15), through nl_run. */
static inline int nl_ip(const char *a1, ...) {
    const char *argv[17] = {nl_ip_bin, a1};
    int n = 2;
    va_list ap;
    va_start(ap, a1);
    for (const char *a; n < 16 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return nl_run(argv);
}

/* "bench=<suite> case=skipped reason=..." and exit 77: this machine cannot run the suite. */
static inline void nl_skip(const char *reason) __attribute__((noreturn));
static inline void nl_skip(const char *reason) {
    bench_result(nl_suite, "skipped", "reason=%s", reason);
    fprintf(stderr, "%s: skipped: %s\n", nl_suite, reason);
    exit(77);
}

/* Waits for needle in p's log; gives up early when p died. 1 when seen. */
static inline int nl_wait_log_alive(h_proc *p, const char *needle, int ms) {
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < end) {
        if (h_log_count(p, needle) > 0)
            return 1;
        if (!h_alive(p))
            return 0;
        nl_sleep_ms(10);
    }
    return h_log_count(p, needle) > 0;
}

/* A process (argv NULL-terminated) in namespace ns (ip netns exec: its pid is the program's),
 * its output in <dir>/<name>.log. */
static inline h_proc *nl_spawn_in(const char *ns, const char *name, const char *const *argv) {
    const char *full[48] = {nl_ip_bin, "netns", "exec", ns};
    int n = 4;
    for (int i = 0; argv[i] && n < 47; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    return h_spawn(name, (char *const *)full);
}

static inline void nl_write_file(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        fprintf(stderr, "%s: write %s: %s\n", nl_suite, path, strerror(errno));
        exit(1);
    }
    close(fd);
}

/* The 1-minute load average: the links share the machine's two cores with whatever else runs. */
static inline double nl_loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* "<short hash>" of HEAD, "+dirty" when proto/, bridge/ or house/ differ from it: the numbers
 * belong to the code that was built. */
static inline void nl_git_state(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    char hash[48] = "";
    if (f) {
        if (!fgets(hash, sizeof hash, f))
            hash[0] = '\0';
        pclose(f);
    }
    hash[strcspn(hash, "\r\n")] = '\0';
    if (!hash[0])
        return;
    int dirty = 0;
    f = popen("git status --porcelain -- proto bridge house 2>/dev/null", "r");
    if (f) {
        char line[256];
        dirty = fgets(line, sizeof line, f) != NULL;
        pclose(f);
    }
    snprintf(out, cap, "%s%s", hash, dirty ? "+dirty" : "");
}

/* The number after "key=" in a line of key=value words (0 when absent). */
static inline double nl_kv(const char *s, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "%s=", key);
    for (const char *p = s; (p = strstr(p, k)); p++)
        if (p == s || p[-1] == ' ')
            return strtod(p + strlen(k), NULL);
    return 0;
}

/* --- namespaces and teardown --------------------------------------------------------------- */

static inline void nl_ns_remove(const char *name) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "/run/netns/%s", name);
    /* What `ip netns del` does: the namespace dies once no process or mount holds it. */
    umount2(p, MNT_DETACH);
    unlink(p);
}

/* SIGKILLs every process (but us) inside one of our namespaces: what h_stop_all cannot see,
 * such as the per-connection children sshd forks, which outlive it when their client's side of
 * the link is already gone. All of them descend from processes this run started. */
static inline void nl_sweep(void) {
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0 || pid == (int)getpid())
            continue;
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/ns/net", pid);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        for (int i = 0; i < nl_nns; i++)
            if (nl_ns_ino[i] && st.st_ino == nl_ns_ino[i])
                kill(pid, SIGKILL);
    }
    closedir(d);
}

/* Stops every process, then removes the namespaces (atexit, fatal signals; once). */
static inline void nl_cleanup(void) {
    static int done;
    if (done)
        return;
    done = 1;
    for (int i = 0; i < NL_MAX_TASKS; i++)
        if (nl_task_pids[i] > 0) {
            kill(nl_task_pids[i], SIGKILL);
            waitpid(nl_task_pids[i], NULL, 0);
            nl_task_pids[i] = 0;
        }
    h_stop_all();
    nl_sweep();
    for (int i = nl_nns - 1; i >= 0; i--)
        nl_ns_remove(nl_ns_name[i]);
}

static inline void nl_on_fatal(int sig) {
    nl_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Namespaces of earlier runs that were killed before their teardown (gpb<pid>-*, pid gone). */
static inline void nl_remove_stale(void) {
    DIR *d = opendir("/run/netns");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = 0, n = 0;
        if (sscanf(e->d_name, "gpb%d-%n", &pid, &n) == 1 && n > 0 && pid > 0 && kill(pid, 0) != 0 &&
            errno == ESRCH)
            nl_ns_remove(e->d_name);
    }
    closedir(d);
}

/* Makes namespace gpb<pid>-<suffix> (its loopback up) and its full name into full; skips the
 * suite (exit 77) when namespaces cannot be made. */
static inline void nl_ns_add(const char *suffix, char *full, size_t cap) {
    if (nl_nns == NL_MAX_NS) {
        fprintf(stderr, "%s: too many namespaces\n", nl_suite);
        exit(1);
    }
    snprintf(full, cap, "gpb%d-%s", (int)getpid(), suffix);
    if (nl_ip("netns", "add", full, NULL) != 0)
        nl_skip("cannot_create_network_namespaces");
    snprintf(nl_ns_name[nl_nns], sizeof nl_ns_name[0], "%s", full);
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "/run/netns/%s", full);
    nl_ns_ino[nl_nns++] = stat(p, &st) == 0 ? st.st_ino : 0;
    nl_ip("-n", full, "link", "set", "lo", "up", NULL);
}

/* Checks what the lab needs (root, ip, /dev/net/tun: exit 77 without them), removes stale
 * namespaces, installs the teardown, makes the hub namespace and moves this process into it:
 * from then on this process, its threads and every child live there. verbose_env: the
 * variable that turns nl_vlog on. */
static inline void nl_init(const char *suite, const char *verbose_env) {
    nl_suite = suite;
    nl_verbose_env = verbose_env;
    if (geteuid() != 0)
        nl_skip("not_root_(network_namespaces_and_TUN_devices_need_CAP_NET_ADMIN)");
    if (!nl_find_bin("ip", nl_ip_bin, sizeof nl_ip_bin))
        nl_skip("no_ip_command_(Debian_package_iproute2)");
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        /* A container may lack the node while the kernel has the driver. */
        mkdir("/dev/net", 0755);
        mknod("/dev/net/tun", S_IFCHR | 0666, makedev(10, 200));
        if (access("/dev/net/tun", R_OK | W_OK) != 0)
            nl_skip("no_/dev/net/tun");
    }
    nl_remove_stale();
    atexit(nl_cleanup);
    signal(SIGINT, nl_on_fatal);
    signal(SIGTERM, nl_on_fatal);
    signal(SIGHUP, nl_on_fatal);
    signal(SIGABRT, nl_on_fatal);
    signal(SIGPIPE, SIG_IGN);
    nl_ns_add("hub", nl_hub, sizeof nl_hub);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "/run/netns/%s", nl_hub);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
        nl_skip("cannot_enter_a_network_namespace");
    close(fd);
}

/* --- the suite's frame ----------------------------------------------------------------------- */

/* BUILD (default build) and GP_IT_DIR ($BUILD/bench-logs/<suite>) when unset, then the
 * harness (h_init: this run's log directory). */
static inline void nl_main_init(const char *suite) {
    if (!getenv("BUILD"))
        setenv("BUILD", "build", 1);
    if (!getenv("GP_IT_DIR")) {
        char d[PATH_MAX];
        snprintf(d, sizeof d, "%s/bench-logs/%s", getenv("BUILD"), suite);
        setenv("GP_IT_DIR", d, 1);
    }
    h_init();
}

/* The loss rates (percent, 0-100) listed in environment variable env ("0,30"), at most max,
 * into losses, their number into *n; both untouched when env is unset. */
static inline void nl_env_losses(const char *env, int *losses, int max, int *n) {
    const char *v = getenv(env);
    if (!v)
        return;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    for (char *sv = NULL, *t = strtok_r(buf, ",", &sv); t && *n < max; t = strtok_r(NULL, ",", &sv))
        if (atoi(t) >= 0 && atoi(t) <= 100)
            losses[(*n)++] = atoi(t);
}

/* The bridges' rudp key pair: the private key into <dir>/rudp.key (its path into key), the
 * public key's hex into pub. Exits when the CLI fails. */
static inline void nl_rudp_keygen(const char *dir, char *key, size_t cap, char pub[65]) {
    snprintf(key, cap, "%s/rudp.key", dir);
    char *out = NULL, *err = NULL;
    if (h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", key, NULL}) != 0) {
        fprintf(stderr, "%s: rudp-keygen failed: %s\n", nl_suite, err ? err : "");
        exit(1);
    }
    snprintf(pub, 65, "%.64s", out);
    free(out), free(err);
}

/* The bridge in the hub (bridge id b1, log "bridge"): plain ws:// on every address at ws_port
 * (--allow-ws), rudp:// at rudp_port with key, the harness's Redis, log_level, then extra
 * (NULL-terminated, at most 12). Exits when it does not listen on both within 10 s. */
static inline h_proc *nl_bridge(int ws_port, int rudp_port, const char *key, const char *log_level,
                                const char *const *extra) {
    char ws_s[16], rudp_s[16], bridge[PATH_MAX];
    snprintf(ws_s, sizeof ws_s, "%d", ws_port);
    snprintf(rudp_s, sizeof rudp_s, "%d", rudp_port);
    snprintf(bridge, sizeof bridge, "%s", h_bin("ghostport-bridge"));
    const char *bv[32] = {bridge,        "--allow-ws", "--bind",        "0.0.0.0",
                          "--listen",    ws_s,         "--redis",       h_redis_url(),
                          "--bridge-id", "b1",         "--rudp-listen", rudp_s,
                          "--rudp-key",  key,          "--log-level",   log_level};
    int n = 16;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        bv[n++] = extra[i];
    bv[n] = NULL;
    h_proc *br = h_spawn("bridge", (char *const *)bv);
    if (!h_wait_port(ws_port, 10000) || !nl_wait_log_alive(br, "transport=rudp", 10000)) {
        fprintf(stderr, "%s: the bridge did not start (see %s)\n", nl_suite, br->log);
        exit(1);
    }
    return br;
}

/* --- links ----------------------------------------------------------------------------------- */

/* Makes far namespace gpb<pid>-<name> and starts the linkem_tool joining it to the hub (link
 * number idx, 0-9: hub 10.99.<idx>.1, far 10.99.<idx>.2), with the lab's parameters and seed.
 * nl_links_ready waits for every link started. */
static inline void nl_link_start(nl_link *L, const char *name, int idx) {
    int pid = (int)getpid();
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", name);
    nl_ns_add(name, L->ns, sizeof L->ns);
    /* Interface names have 15 characters at most: 6 digits of the pid and one of idx. */
    unsigned p6 = (unsigned)pid % 1000000u, i1 = (unsigned)idx % 10u;
    snprintf(L->tun_h, sizeof L->tun_h, "gpb%uh%u", p6, i1);
    snprintf(L->tun_f, sizeof L->tun_f, "gpb%uf%u", p6, i1);
    snprintf(L->hub_ip, sizeof L->hub_ip, "10.99.%u.1", i1);
    snprintf(L->far_ip, sizeof L->far_ip, "10.99.%u.2", i1);
    snprintf(L->ctl, sizeof L->ctl, "@gpb%d-linkem-%s", pid, name);
    char linkem[PATH_MAX], delay[16], jitter[16], lname[32];
    snprintf(linkem, sizeof linkem, "%s/bench/linkem_tool", getenv("BUILD"));
    snprintf(delay, sizeof delay, "%d", NL_RTT_MS / 2);
    snprintf(jitter, sizeof jitter, "%d", NL_JITTER_MS);
    snprintf(lname, sizeof lname, "linkem-%s", name);
    const char *argv[] = {linkem,    "--tun-a", L->tun_h, "--netns-a", nl_hub, "--addr-a",
                          L->hub_ip, "--tun-b", L->tun_f, "--netns-b", L->ns,  "--addr-b",
                          L->far_ip, "--delay", delay,    "--jitter",  jitter, "--rate",
                          NL_RATE,   "--queue", NL_QUEUE, "--seed",    "100",  "--ctl",
                          L->ctl,    NULL};
    L->lk = h_spawn(lname, (char *const *)argv);
    if (nl_nlinks < NL_MAX_LINKS)
        nl_links[nl_nlinks++] = L;
}

/* Every link's devices are up (else the suite is skipped: no TUN here). */
static inline void nl_links_ready(void) {
    for (int i = 0; i < nl_nlinks; i++)
        if (!nl_wait_log_alive(nl_links[i]->lk, "event=ready", 5000))
            nl_skip("linkem_could_not_create_its_TUN_devices");
}

/* One control datagram to L's linkem (set, stats, config) and its answer. 0 or -1. */
static inline int nl_lk_ctl(const nl_link *L, const char *cmd, char *rep, size_t cap) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un me = {.sun_family = AF_UNIX}, to = {.sun_family = AF_UNIX};
    /* autobind: the kernel picks an abstract address for linkem to answer to */
    if (bind(fd, (struct sockaddr *)&me, sizeof(sa_family_t)) != 0) {
        close(fd);
        return -1;
    }
    snprintf(to.sun_path, sizeof to.sun_path, "%s", L->ctl);
    to.sun_path[0] = '\0'; /* "@name" */
    socklen_t tl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(L->ctl));
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = -1;
    if (sendto(fd, cmd, strlen(cmd), 0, (struct sockaddr *)&to, tl) == (ssize_t)strlen(cmd))
        n = recv(fd, rep, cap - 1, 0);
    close(fd);
    if (n < 0)
        return -1;
    rep[n] = '\0';
    return 0;
}

static inline nl_snap nl_lk_stats(const nl_link *L) {
    char rep[2048];
    nl_snap s;
    memset(&s, 0, sizeof s);
    if (nl_lk_ctl(L, "stats", rep, sizeof rep) != 0)
        return s;
    s.ok = 1;
    s.down_in_bytes = nl_kv(rep, "a2b_in_bytes");
    s.up_in_bytes = nl_kv(rep, "b2a_in_bytes");
    s.down_in = nl_kv(rep, "a2b_in");
    s.up_in = nl_kv(rep, "b2a_in");
    s.down_pending = nl_kv(rep, "a2b_pending");
    s.up_pending = nl_kv(rep, "b2a_pending");
    s.down_qdrop = nl_kv(rep, "a2b_drop_queue");
    s.up_qdrop = nl_kv(rep, "b2a_drop_queue");
    s.down_loss = nl_kv(rep, "a2b_drop_loss");
    s.up_loss = nl_kv(rep, "b2a_drop_loss");
    return s;
}

/* Every link to loss (both directions), its draws starting afresh from seed. 1 when all took
 * it. */
static inline int nl_set_loss(double loss, int seed) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "set loss=%g seed=%d", loss, seed);
    int ok = 1;
    for (int i = 0; i < nl_nlinks; i++) {
        char rep[1024];
        if (nl_lk_ctl(nl_links[i], cmd, rep, sizeof rep) != 0 || strncmp(rep, "ok", 2) != 0)
            ok = 0;
    }
    return ok;
}

/* Waits (bounded) until no link carries data any more: less than one full packet per 50 ms
 * poll, for 300 ms (pings, keepalives and acks do not count). tail (may be NULL; one per link,
 * in the order they were started) gets how long each link still carried data, in ms (max_ms
 * when it never stopped). The links keep their settings. */
static inline void nl_links_idle(int max_ms, double *tail) {
    double t0 = nl_now_ms(), end = t0 + max_ms, quiet_since = t0;
    double last[NL_MAX_LINKS], busy_at[NL_MAX_LINKS];
    for (int l = 0; l < nl_nlinks; l++) {
        nl_snap s = nl_lk_stats(nl_links[l]);
        last[l] = s.down_in_bytes + s.up_in_bytes;
        busy_at[l] = t0;
    }
    int done = 0;
    while (!done && nl_now_ms() < end) {
        nl_sleep_ms(50);
        double now = nl_now_ms();
        for (int l = 0; l < nl_nlinks; l++) {
            nl_snap s = nl_lk_stats(nl_links[l]);
            double tot = s.down_in_bytes + s.up_in_bytes;
            if (tot - last[l] >= 1200)
                busy_at[l] = now, quiet_since = now;
            last[l] = tot;
        }
        done = now - quiet_since >= 300;
    }
    for (int l = 0; tail && l < nl_nlinks; l++)
        tail[l] = !done && nl_now_ms() - busy_at[l] < 300 ? max_ms : busy_at[l] - t0;
}

/* Between phases: the links turn clean and this waits (nl_links_idle) until they carry no data
 * any more, so what a phase left behind (the rest of a cancelled transfer in a TCP send buffer
 * or a tunnel's lane, retransmissions) neither counts in the next phase nor delays it. */
static inline void nl_links_quiet(int max_ms, double *tail) {
    nl_set_loss(0, 1);
    nl_links_idle(max_ms, tail);
}

#endif
