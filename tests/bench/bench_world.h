/* bench_world.h — what the benchmarks that drive a whole system start alike, on the harness
 * (tests/harness/harness.h): httpd_tool as the house's upstream, and a house on it connected to
 * a bridge, both at log-level warn (their logs stay small under load). Header only; test-only. */
#ifndef GP_BENCH_WORLD_H
#define GP_BENCH_WORLD_H

#include "../harness/harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The monotonic clock in µs (latency samples). */
static inline double bench_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The binaries names[0..n) (n <= 4) of dir, another build for an A/B in the same run, as
 * absolute paths into abs; exits naming env (the variable that gave dir) when one is missing. */
static inline void bench_alt_bins(const char *dir, const char *env, const char *const *names, int n,
                                  char abs[][PATH_MAX]) {
    for (int i = 0; i < n; i++) {
        char bin[PATH_MAX + 32];
        snprintf(bin, sizeof bin, "%s/%s", dir, names[i]);
        if (!realpath(bin, abs[i]) || access(abs[i], X_OK) != 0)
            h_fatal("bench", 1, "%s: no %s", env, bin);
    }
}

/* That build's bridge (an absolute path) on a ws port of its own (*port), the same Redis, at
 * log-level warn (exits when it does not listen within 10 s). */
static inline h_proc *bench_alt_bridge(const char *bridge, int *port_out) {
    char ports[16];
    int port = *port_out = h_free_port();
    snprintf(ports, sizeof ports, "%d", port);
    char *const argv[] = {(char *)bridge,
                          "--allow-ws",
                          "--bind",
                          "127.0.0.1",
                          "--listen",
                          ports,
                          "--redis",
                          (char *)h_redis_url(),
                          "--log-level",
                          "warn",
                          "--bridge-id",
                          "bench-alt",
                          NULL};
    h_proc *b = h_spawn("bridge-alt", argv);
    if (!h_wait_port(port, 10000))
        h_fatal("bench", 1, "the alternative bridge did not start (see %s)", b->log);
    return b;
}

/* Starts $BUILD/bench/httpd_tool on a free port (*port) answering size-byte bodies; exits
 * when it is not built or did not start. */
static inline h_proc *bench_httpd(int *port, int size) {
    char bin[PATH_MAX], abs[PATH_MAX], ports[16], sizes[16];
    const char *build = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/bench/httpd_tool", build && *build ? build : "build");
    if (access(bin, X_OK) != 0 || !realpath(bin, abs))
        h_fatal("bench", 1, "%s: not built (make bench builds it)", bin);
    *port = h_free_port();
    snprintf(ports, sizeof ports, "%d", *port);
    snprintf(sizes, sizeof sizes, "%d", size);
    char *const argv[] = {abs, "--port", ports, "--size", sizes, NULL};
    h_proc *p = h_spawn("upstream", argv);
    if (!h_wait_log(p, "listening", 10000))
        h_fatal("bench", 1, "httpd_tool did not start (see %s)", p->log);
    return p;
}

/* House id (registered: secret) on the bridge's ws port bport with upstream up_port, at
 * log-level warn. NULL when it did not connect within 15 s (see its log). */
static inline h_proc *bench_house(const char *id, const char *secret, int bport, int up_port) {
    char upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up_port);
    const char *hx[] = {"--log-level", "warn", NULL};
    h_proc *house = h_house_start(id, secret, bport, upurl, hx);
    return h_wait_connected(id, 15000) ? house : NULL;
}

#endif
