/* sshd.c — a throwaway sshd (sshd.h). */
#include "sshd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SSHD "/usr/sbin/sshd" /* sshd re-executes itself: an absolute path */

static int keygen(const char *path, char *why, size_t whylen) {
    const char *argv[] = {
        "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path, "-C", "gp-test", NULL};
    char *err = NULL;
    int rc = h_run(argv, 20000, NULL, NULL, &err);
    if (rc != 0)
        snprintf(why, whylen, "ssh-keygen %s: exit %d: %s", path, rc, err ? err : "");
    free(err);
    return rc == 0 ? 0 : -1;
}

int h_sshd_start(h_sshd *s, char *why, size_t whylen) {
    memset(s, 0, sizeof *s);
    if (access(SSHD, X_OK) != 0 || access("/usr/bin/ssh", X_OK) != 0) {
        snprintf(why, whylen, "no " SSHD " or /usr/bin/ssh (apt-get install openssh-server)");
        return -1;
    }
    if (geteuid() != 0) {
        snprintf(why, whylen, "not root: sshd's privilege separation needs it");
        return -1;
    }
    /* The privilege separation directory Debian's sshd wants (made by its init scripts). */
    if (mkdir("/run/sshd", 0755) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "mkdir /run/sshd: %s", strerror(errno));
        return -1;
    }
    char host[600], authz[700], conf[600], pid[600];
    snprintf(host, sizeof host, "%s/ssh_host_ed25519_key", h_dir());
    snprintf(s->key, sizeof s->key, "%s/id_ed25519", h_dir());
    snprintf(authz, sizeof authz, "%s.pub", s->key);
    snprintf(conf, sizeof conf, "%s/sshd_config", h_dir());
    snprintf(pid, sizeof pid, "%s/sshd.pid", h_dir());
    if (keygen(host, why, whylen) != 0 || keygen(s->key, why, whylen) != 0)
        return -1;
    s->port = h_free_port();
    FILE *f = fopen(conf, "w");
    if (!f) {
        snprintf(why, whylen, "%s: %s", conf, strerror(errno));
        return -1;
    }
    fprintf(f,
            "Port %d\n"
            "ListenAddress 127.0.0.1\n"
            "HostKey %s\n"
            "PidFile %s\n"
            "AuthorizedKeysFile %s\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "AllowTcpForwarding yes\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n",
            s->port, host, pid, authz);
    if (fclose(f) != 0) {
        snprintf(why, whylen, "%s: %s", conf, strerror(errno));
        return -1;
    }
    const char *argv[] = {SSHD, "-D", "-e", "-f", conf, NULL};
    s->p = h_spawn("sshd", (char *const *)argv);
    if (!h_wait_port(s->port, 10000)) {
        snprintf(why, whylen, "sshd did not listen on %d (see %s)", s->port, s->p->log);
        return -1;
    }
    return 0;
}

int h_ssh_opts(const h_sshd *s, const char **argv) {
    const char *o[] = {"-F", "/dev/null",
                       "-o", "BatchMode=yes",
                       "-o", "StrictHostKeyChecking=no",
                       "-o", "UserKnownHostsFile=/dev/null",
                       "-o", "LogLevel=ERROR",
                       "-o", "IdentitiesOnly=yes",
                       "-i", s->key,
                       NULL};
    int n = 0;
    for (; o[n]; n++)
        argv[n] = o[n];
    return n;
}
