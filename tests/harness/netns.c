/* netns.c — network namespaces for tests (netns.h). */
#include "netns.h"

#include "harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NS 8

static char g_ns[MAX_NS][64];
static int g_nns;
static const char *g_spawn_ns;

const char *h_netns_spawn_target(void) {
    return g_spawn_ns;
}

/* Runs argv (no shell), bounded; its output into *out. The exit status or -1. */
static int run(char *const argv[], int timeout_ms, char **out) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]), close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        for (int i = 3; i < 1024; i++)
            if (i != pfd[1])
                close(i);
        execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int st = -1, done = 0;
    while (!done) {
        ssize_t r = buf ? read(pfd[0], buf + len, cap - 1 - len) : -1;
        if (r > 0) {
            len += (size_t)r;
            if (len + 1 == cap) {
                char *nb = realloc(buf, cap * 2);
                if (nb)
                    buf = nb, cap *= 2;
            }
            continue;
        }
        int ws;
        pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) {
            while (buf && (r = read(pfd[0], buf + len, cap - 1 - len)) > 0)
                len += (size_t)r;
            st = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
            done = 1;
        } else if (h_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            done = 1;
        } else {
            usleep(2000);
        }
    }
    close(pfd[0]);
    if (buf)
        buf[len] = '\0';
    if (out)
        *out = buf;
    else
        free(buf);
    return st;
}

int h_netns_sh(const char *full, int timeout_ms, char **out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (full) {
        char *argv[] = {"ip", "netns", "exec", (char *)full, "sh", "-c", cmd, NULL};
        return run(argv, timeout_ms, out);
    }
    char *argv[] = {"sh", "-c", cmd, NULL};
    return run(argv, timeout_ms, out);
}

/* Namespaces of earlier tests that died without their teardown (gpt<pid>-*, pid gone). */
static void remove_stale(void) {
    DIR *d = opendir("/run/netns");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        if (sscanf(e->d_name, "gpt%d-", &pid) != 1 || pid <= 0)
            continue;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char *argv[] = {"ip", "netns", "del", e->d_name, NULL};
        run(argv, 5000, NULL);
    }
    closedir(d);
}

void h_netns_add(const char *name, char *full, size_t cap) {
    if (geteuid() != 0)
        cr_skip_test("network namespaces need root");
    if (g_nns == 0)
        remove_stale();
    cr_assert_lt(g_nns, MAX_NS, "too many namespaces");
    snprintf(full, cap, "gpt%d-%s", (int)getpid(), name);
    char *out = NULL;
    char *argv[] = {"ip", "netns", "add", full, NULL};
    int rc = run(argv, 5000, &out);
    if (rc != 0) {
        if (rc == 127 || (out && strstr(out, "Operation not permitted")))
            cr_skip_test("no network namespaces here: %s", out ? out : "");
        cr_assert_fail("ip netns add %s: %s", full, out ? out : "");
    }
    free(out);
    snprintf(g_ns[g_nns++], sizeof g_ns[0], "%s", full);
    cr_assert_eq(h_netns_sh(full, 5000, NULL, "ip link set lo up"), 0);
}

void h_netns_enter(const char *full) {
    char p[128];
    snprintf(p, sizeof p, "/run/netns/%s", full);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open %s: %s", p, strerror(errno));
    cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns %s: %s", full, strerror(errno));
    close(fd);
}

void h_netns_spawn_in(const char *full) {
    g_spawn_ns = full;
}

void h_netns_link(const char *a, const char *a_if, const char *a_cidr, const char *b,
                  const char *b_if, const char *b_cidr) {
    char *out = NULL;
    int rc = h_netns_sh(NULL, 5000, &out,
                        "ip link add %s netns %s type veth peer name %s netns %s && "
                        "ip -n %s addr add %s dev %s && ip -n %s link set %s up && "
                        "ip -n %s addr add %s dev %s && ip -n %s link set %s up",
                        a_if, a, b_if, b, a, a_cidr, a_if, a, a_if, b, b_cidr, b_if, b, b_if);
    cr_assert_eq(rc, 0, "veth %s-%s: %s", a_if, b_if, out ? out : "");
    free(out);
}

void h_netns_cleanup(void) {
    g_spawn_ns = NULL;
    for (int i = 0; i < g_nns; i++) {
        char *argv[] = {"ip", "netns", "del", g_ns[i], NULL};
        run(argv, 5000, NULL);
    }
    g_nns = 0;
}
