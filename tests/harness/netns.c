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

int h_netns_sh(const char *full, int timeout_ms, char **out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (full) {
        char *argv[] = {"ip", "netns", "exec", (char *)full, "sh", "-c", cmd, NULL};
        return h_capture(argv, timeout_ms, out);
    }
    char *argv[] = {"sh", "-c", cmd, NULL};
    return h_capture(argv, timeout_ms, out);
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
        h_capture(argv, 5000, NULL);
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
        h_capture(argv, 5000, NULL);
    }
    g_nns = 0;
}
