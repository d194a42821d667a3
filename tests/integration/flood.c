/* flood.c — connection floods against the house listener: a bridge with few descriptors
 * (256) under more idle TCP connections than it has, held open. It must not spin (CPU well
 * under a core), must not flood its log, must keep serving the house it holds, and must let
 * a new house in while the flood sits there. Real processes, loopback only. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(flood, .init = h_init, .fini = h_fini, .timeout = 120);

#define FLOOD 400
#define STR_(x) #x
#define STR(x) STR_(x)

/* The bridge under `prlimit --nofile=N:N` (prlimit sets its own limit, then execs). */
static h_proc *bridge_limited(int limit, int port, const char *const *extra) {
    char ports[16], bin[4096], lim[48];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(lim, sizeof lim, "--nofile=%d:%d", limit, limit);
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-bridge"));
    const char *argv[32] = {"prlimit",     lim,           "--",       bin,   "--allow-ws",
                            "--bind",      "127.0.0.1",   "--listen", ports, "--redis",
                            h_redis_url(), "--log-level", "info"};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    h_proc *p = h_spawn("bridge", (char *const *)argv);
    cr_assert(h_wait_port(port, 10000), "bridge did not listen on %d", port);
    return p;
}

/* utime + stime of a process, in clock ticks. */
static long long cpu_ticks(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *s = h_read_file(path, NULL);
    cr_assert(s, "cannot read %s", path);
    const char *p = strrchr(s, ')');
    cr_assert(p);
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    int got = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
    free(s);
    cr_assert_eq(got, 2, "cannot parse %s", path);
    return (long long)(ut + st);
}

/* Descriptors the process holds now (entries of /proc/PID/fd), or -1. */
static int fd_count(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* 1 when the peer of fd closed it (readable, and reading would give EOF or a reset). */
static int peer_closed(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    if (poll(&p, 1, 0) != 1)
        return 0;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

struct shed {
    const int *fds;
    int n, want;
};
static int shed_done(void *ud) {
    const struct shed *s = ud;
    int closed = 0;
    for (int i = 0; i < s->n; i++)
        closed += peer_closed(s->fds[i]);
    return closed >= s->want;
}

struct fds_full {
    pid_t pid;
    int limit;
};
static int out_of_fds(void *ud) {
    const struct fds_full *f = ud;
    return fd_count(f->pid) >= f->limit;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* FLOOD idle connections to port (non-blocking connects; the kernel completes them from its
 * listen queue whether the bridge accepts or not). Returns how many were opened. */
static int open_flood(int port, int *fds, int n) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int k = 0;
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
            close(fd);
            break;
        }
        fds[k++] = fd;
    }
    return k;
}

/* Redis, an upstream and a bridge (on w->bridge_port) under a descriptor limit; the test
 * itself may hold 2048 sockets. */
static void world_limited(h_world *w, int limit, const char *const *extra) {
    h_raise_nofile(2048);
    memset(w, 0, sizeof *w);
    w->redis = h_redis_start(0);
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    w->bridge_port = h_free_port();
    w->bridge = bridge_limited(limit, w->bridge_port, extra);
}

/* The bridge's CPU over 2 s with the flood held (a measurement window, not a wait), and its
 * log's growth since it was log0 bytes: it must stay alive, under half a core, and under
 * 256 KiB of log. */
static void assert_quiet_under(h_proc *br, long log0, const char *what) {
    long long t0 = cpu_ticks(br->pid);
    uint64_t w0 = h_now_ms();
    usleep(2000 * 1000);
    long long t1 = cpu_ticks(br->pid);
    double secs = (double)(h_now_ms() - w0) / 1000.0;
    double cpu = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) / secs;
    cr_assert(h_alive(br), "bridge died under the flood");
    cr_assert_lt(cpu, 0.5, "bridge used %.0f%% of a core %s", cpu * 100, what);
    long grew = file_size(br->log) - log0;
    cr_assert_lt(grew, 256 * 1024, "log grew by %ld bytes in %.1f s", grew, secs);
}

Test(flood, idle_connections_past_the_fd_limit) {
    h_world w;
    world_limited(&w, 256, NULL);
    h_proc *br = w.bridge;
    int port = w.bridge_port;
    char s1[65], s2[65];
    h_house_up(&w, "old", s1, NULL);
    h_assert_serves("old", "before");

    static int fds[FLOOD];
    long log0 = file_size(br->log);
    int n = open_flood(port, fds, FLOOD);
    cr_assert_gt(n, 256, "opened only %d connections", n);
    assert_quiet_under(br, log0, "under an idle flood");

    /* The house it holds still answers, and a new house gets in while the flood is held. */
    h_assert_serves("old", "during");
    h_house_up(&w, "new", s2, NULL); /* a new house connects during the flood */
    h_assert_serves("new", "new-during");
    cr_assert(h_log_count(br, "event=preauth_shed") > 0, "no pre-auth connection was shed");
    cr_assert(h_log_count(br, "suppressed=") > 0, "no log line counted what was suppressed");
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* The reserve kept out of lws's reach used up by the admin port (64 connections held from
 * four addresses): the house listener then meets EMFILE, and must pause, not spin; once the
 * descriptors are given back it accepts again.
 * Each step waits for the bridge to have finished the one before, because which path the
 * second flood takes depends on it: if the admin port accepts while lws still works through
 * the first flood's queue, lws's later accepts get descriptors numbered past its table, which
 * lws closes at once ("too high", its table-full path) — the process never fills and
 * accept(2) never meets EMFILE. So: the first flood is shed down to a known cap (30 held, the
 * rest closed by the bridge) with low descriptor numbers; then the admin connections fill
 * every descriptor left; only then comes the second flood, whose accept(2) must fail. */
#define PREAUTH_CAP 30
Test(flood, out_of_descriptors_pauses_instead_of_spinning) {
    h_world w;
    const char *extra[] = {
        "--admin-listen", "0", "--preauth-max", STR(PREAUTH_CAP), "--preauth-per-addr",
        STR(PREAUTH_CAP), NULL};
    world_limited(&w, 100, extra);
    h_proc *br = w.bridge;
    int port = w.bridge_port;
    int aport = h_admin_port(br);
    cr_assert(aport, "no admin port");
    char s1[65], s2[65];
    h_house_up(&w, "old", s1, NULL);

    static int fds[FLOOD], adm[64];
    int n = open_flood(port, fds, 100);
    struct shed sh = {fds, n, n - PREAUTH_CAP};
    cr_assert(h_wait(shed_done, &sh, 10000), "the bridge did not shed the first flood to %d",
              PREAUTH_CAP);
    int na = 0;
    for (int a = 0; a < 4; a++)
        for (int i = 0; i < 16; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)a);
            struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)aport)};
            dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (fd >= 0 && bind(fd, (struct sockaddr *)&src, sizeof src) == 0 &&
                connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0)
                adm[na++] = fd;
            else if (fd >= 0)
                close(fd);
        }
    /* Well within the admin port's request timeout (5 s from accept), which frees them. */
    struct fds_full full = {br->pid, 100};
    cr_assert(h_wait(out_of_fds, &full, 3000),
              "the bridge never ran out of descriptors (%d of %d held)", fd_count(br->pid),
              full.limit);
    long log0 = file_size(br->log);
    n += open_flood(port, fds + n, FLOOD - n);
    assert_quiet_under(br, log0, "out of descriptors");
    cr_assert(h_log_count(br, "event=accept_paused") > 0, "the listener never met EMFILE");
    h_assert_serves("old", "out-of-fds");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    for (int i = 0; i < na; i++)
        close(adm[i]);
    /* Paused, not stopped: with descriptors back, a new house gets in. */
    h_house_up(&w, "new", s2, NULL);
    h_assert_serves("new", "after-fds");
}

/* Many houses from one address dialing at once, more than --preauth-per-addr: the bridge sheds
 * the oldest pre-auth connections (some of them with their CHALLENGE out), the houses dial
 * again, and all get in. A connection the bridge shed is not a house that gave up on its
 * CHALLENGE: counting it as a failed authentication once exhausted the address's budget, and
 * 1000 houses behind one NAT (the scale bench) were refused for good. */
Test(flood, houses_shed_before_auth_are_no_failed_auth) {
    enum { N = 300 };
    h_redis_start(0);
    int port = h_free_port();
    const char *extra[] = {"--bridge-id", "b1", "--admin-listen", "0", "--preauth-per-addr",
                           "8",           NULL};
    h_proc *br = bridge_limited(4096, port, extra);
    int admin = h_admin_port(br);
    cr_assert(admin);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    h_proc *lh =
        h_loadhouses_start(url, N, (const char *const[]){"--connect-rate", "100000", NULL});
    cr_assert(h_wait_log(lh, "event=all_connected", 60000), "not every house got in");
    cr_assert(h_log_count(br, "event=preauth_shed") > 0,
              "nothing was shed: the test tests nothing");
    char *m = h_scrape(admin);
    cr_assert_not_null(m);
    double failed = h_metric(m, "gp_bridge_auth_failures_total{transport=\"ws\"}");
    free(m);
    cr_assert(failed <= 0, "%.0f failed authentications counted for houses the bridge shed",
              failed);
    cr_assert_eq(h_log_count(br, "event=auth_rate_limited"), 0);
    h_stop(lh);
}
