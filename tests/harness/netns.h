/* netns.h — network namespaces for the tests that need more than loopback (the L3 tunnel's:
 * TUN devices, routes, a LAN behind a house), so that nothing a test does touches the host's
 * own interfaces or routes. Each namespace is named gpt<pid>-<name> (the test's pid), made with
 * `ip netns add`, and removed by h_fini after every process was stopped; namespaces of a test
 * that died without its teardown are removed by the next h_netns_add. */
#ifndef GP_HARNESS_NETNS_H
#define GP_HARNESS_NETNS_H

#include <stddef.h>

/* Makes namespace <name> with its loopback up; its full name into full[cap]. Skips the test
 * (cr_skip) where namespaces cannot be made (not root, no ip). */
void h_netns_add(const char *name, char *full, size_t cap);
/* The test process itself moves into namespace full (its later children are born there). */
void h_netns_enter(const char *full);
/* The processes h_spawn starts from now on run in namespace full (NULL: the test's own). */
void h_netns_spawn_in(const char *full);
/* Runs `sh -c cmd` in namespace full (NULL: the test's own), bounded by timeout_ms; its
 * output (stdout and stderr) into *out when out is not NULL (malloc'd). The exit status, or -1
 * (could not run, or timed out: killed). */
int h_netns_sh(const char *full, int timeout_ms, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* h_netns_sh that must succeed: fails the test with the command and its output otherwise. */
void h_netns_ok(const char *full, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A veth pair between two namespaces: <a_if> in a with address a_cidr, <b_if> in b with
 * b_cidr, both up. */
void h_netns_link(const char *a, const char *a_if, const char *a_cidr, const char *b,
                  const char *b_if, const char *b_cidr);
/* For netns_test.c: the full name of a new namespace <name> into full[cap] (the first call
 * removes the namespaces of dead tests first), -1 when this test has made as many as it may;
 * and the record of one made, removed by h_netns_cleanup. */
int h_netns_name(const char *name, char *full, size_t cap);
void h_netns_made(const char *full);
/* Removes every namespace this test made (h_fini calls it). */
void h_netns_cleanup(void);
/* The namespace h_spawn's children go into, NULL for the test's own (harness.c). */
const char *h_netns_spawn_target(void);

#endif
