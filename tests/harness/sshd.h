/* sshd.h — a throwaway sshd for the tests and benchmarks that put real ssh through a stream:
 * Debian's openssh-server on a free loopback port, with a config, host key and client key of
 * its own in the test directory. */
#ifndef GP_TEST_SSHD_H
#define GP_TEST_SSHD_H

#include "harness.h"

#include <stddef.h>

typedef struct h_sshd {
    h_proc *p;
    int port;
    char key[600]; /* the client's private key (its .pub is the authorized key) */
} h_sshd;

/* Starts sshd (in the foreground, -D, logging to its log, -e) for root logins with s->key:
 * 0, or -1 with the reason in why (no sshd or ssh installed, not root: its privilege separation
 * needs it, a key not made, or it did not listen within 10 s). */
int h_sshd_start(h_sshd *s, char *why, size_t whylen);

/* Appends to argv the options every ssh (or scp) run against s shares: no config file, batch
 * mode, no host key checks or records, quiet, s->key only; returns how many. */
int h_ssh_opts(const h_sshd *s, const char **argv);

#endif
