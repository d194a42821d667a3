/* netns_test.c — the calls of netns.h that fail or skip the Criterion test (making, entering
 * and joining namespaces); the benchmarks link the harness without this file, as without
 * world.c. */
#include "netns.h"

#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void h_netns_add(const char *name, char *full, size_t cap) {
    if (geteuid() != 0)
        cr_skip_test("network namespaces need root");
    cr_assert_eq(h_netns_name(name, full, cap), 0, "too many namespaces");
    char *out = NULL;
    int rc = h_netns_sh(NULL, 5000, &out, "ip netns add %s", full);
    if (rc != 0) {
        if (rc == 127 || (out && strstr(out, "Operation not permitted")))
            cr_skip_test("no network namespaces here: %s", out ? out : "");
        cr_assert_fail("ip netns add %s: %s", full, out ? out : "");
    }
    free(out);
    h_netns_made(full);
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

void h_netns_ok(const char *full, int timeout_ms, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = h_netns_sh(full, timeout_ms, &out, "%s", cmd);
    cr_assert_eq(rc, 0, "in %s: `%s` exited %d: %s", full ? full : "the test's namespace", cmd, rc,
                 out ? out : "");
    free(out);
}

void h_netns_link(const char *a, const char *a_if, const char *a_cidr, const char *b,
                  const char *b_if, const char *b_cidr) {
    h_netns_ok(NULL, 5000,
               "ip link add %s netns %s type veth peer name %s netns %s && "
               "ip -n %s addr add %s dev %s && ip -n %s link set %s up && "
               "ip -n %s addr add %s dev %s && ip -n %s link set %s up",
               a_if, a, b_if, b, a, a_cidr, a_if, a, a_if, b, b_cidr, b_if, b, b_if);
}
