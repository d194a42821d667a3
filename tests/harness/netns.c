/* netns.c — network namespaces for tests (netns.h): names, the commands run in them, where
 * h_spawn's children go, the teardown. No Criterion here (the benchmarks link it); the calls
 * that assert or skip a test are in netns_test.c. */
#include "netns.h"

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

int h_netns_name(const char *name, char *full, size_t cap) {
    if (g_nns == 0)
        remove_stale();
    if (g_nns >= MAX_NS)
        return -1;
    snprintf(full, cap, "gpt%d-%s", (int)getpid(), name);
    return 0;
}

void h_netns_made(const char *full) {
    if (g_nns < MAX_NS)
        snprintf(g_ns[g_nns++], sizeof g_ns[0], "%s", full);
}

void h_netns_spawn_in(const char *full) {
    g_spawn_ns = full;
}

void h_netns_cleanup(void) {
    g_spawn_ns = NULL;
    for (int i = 0; i < g_nns; i++) {
        char *argv[] = {"ip", "netns", "del", g_ns[i], NULL};
        run(argv, 5000, NULL);
    }
    g_nns = 0;
}
