/* bench_world.h — what the benchmarks that drive a whole system start alike, on the harness
 * (tests/harness/harness.h): httpd_tool as the house's upstream, and a house on it connected to
 * a bridge, both at log-level warn (their logs stay small under load). Header only; test-only. */
#ifndef GP_BENCH_WORLD_H
#define GP_BENCH_WORLD_H

#include "../harness/harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Starts $BUILD/bench/httpd_tool on a free port (*port) answering size-byte bodies. NULL with
 * the reason in err when it is not built or did not start. */
static inline h_proc *bench_httpd(int *port, int size, char *err, size_t errlen) {
    char bin[PATH_MAX], abs[PATH_MAX], ports[16], sizes[16];
    const char *build = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/bench/httpd_tool", build && *build ? build : "build");
    if (access(bin, X_OK) != 0 || !realpath(bin, abs)) {
        snprintf(err, errlen, "%.400s: not built (make bench builds it)", bin);
        return NULL;
    }
    *port = h_free_port();
    snprintf(ports, sizeof ports, "%d", *port);
    snprintf(sizes, sizeof sizes, "%d", size);
    char *const argv[] = {abs, "--port", ports, "--size", sizes, NULL};
    h_proc *p = h_spawn("upstream", argv);
    if (!h_wait_log(p, "listening", 10000)) {
        snprintf(err, errlen, "httpd_tool did not start (see %.400s)", p->log);
        return NULL;
    }
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
