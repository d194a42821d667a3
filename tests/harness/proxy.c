/* proxy.c — see proxy.h. */
#include "proxy.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 32

typedef struct pair {
    int c, t; /* client side, target side; -1 once closed */
} pair;

struct h_proxy {
    int lfd, target_port, wake[2];
    atomic_int up_frozen, down_frozen, stop, accepted;
    pair pairs[MAX_PAIRS];
    int npairs;
    pthread_t thr;
};

static void die(const char *what) {
    fprintf(stderr, "proxy: %s: %s\n", what, strerror(errno));
    abort();
}

static void close_pair(pair *p) {
    if (p->c >= 0)
        close(p->c);
    if (p->t >= 0)
        close(p->t);
    p->c = p->t = -1;
}

/* Moves what is readable on `from` to `to`. 0 on progress, -1 on EOF/error. Writes block:
 * the peers are test processes on loopback that keep reading. */
static int relay(int from, int to) {
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return -1;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return -1;
        off += w;
    }
    return 0;
}

static void *run(void *arg) {
    h_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[2 + 2 * MAX_PAIRS];
        int idx[2 + 2 * MAX_PAIRS], nf = 0;
        int up = atomic_load(&p->up_frozen), down = atomic_load(&p->down_frozen);
        fds[nf] = (struct pollfd){p->wake[0], POLLIN, 0}, idx[nf++] = -1;
        fds[nf] = (struct pollfd){p->lfd, POLLIN, 0}, idx[nf++] = -2;
        for (int i = 0; i < p->npairs; i++) {
            pair *q = &p->pairs[i];
            /* A frozen direction is not read at all: its bytes wait in the kernel, and its
             * EOF goes unnoticed, which is what keeps the other end half-open. */
            if (q->c >= 0 && !up)
                fds[nf] = (struct pollfd){q->c, POLLIN, 0}, idx[nf++] = 2 * i;
            if (q->t >= 0 && !down)
                fds[nf] = (struct pollfd){q->t, POLLIN, 0}, idx[nf++] = 2 * i + 1;
        }
        if (poll(fds, (nfds_t)nf, 1000) < 0 && errno != EINTR)
            die("poll");
        for (int k = 0; k < nf; k++) {
            if (!fds[k].revents)
                continue;
            if (idx[k] == -1) {
                char b[16];
                if (read(p->wake[0], b, sizeof b) < 0)
                    break;
                continue;
            }
            if (idx[k] == -2) {
                int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                int t = h_dial(p->target_port);
                if (t < 0 || p->npairs >= MAX_PAIRS) {
                    close(c);
                    if (t >= 0)
                        close(t);
                    continue;
                }
                p->pairs[p->npairs++] = (pair){c, t};
                atomic_fetch_add(&p->accepted, 1);
                continue;
            }
            pair *q = &p->pairs[idx[k] / 2];
            int from_client = idx[k] % 2 == 0;
            int from = from_client ? q->c : q->t, to = from_client ? q->t : q->c;
            if (from < 0 || to < 0)
                continue;
            if (relay(from, to) != 0) {
                if (atomic_load(&p->up_frozen) || atomic_load(&p->down_frozen)) {
                    /* Gone dark: the closing side is dropped, the other is left hanging. */
                    close(from);
                    if (from_client)
                        q->c = -1;
                    else
                        q->t = -1;
                } else {
                    close_pair(q);
                }
            }
        }
    }
    return NULL;
}

h_proxy *h_proxy_start(int target_port, int *listen_port) {
    h_proxy *p = calloc(1, sizeof *p);
    if (!p)
        die("calloc");
    p->target_port = target_port;
    for (int i = 0; i < MAX_PAIRS; i++)
        p->pairs[i] = (pair){-1, -1};
    if (pipe(p->wake) != 0)
        die("pipe");
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->lfd, 16) != 0 || getsockname(p->lfd, (struct sockaddr *)&a, &al) != 0)
        die("listen");
    *listen_port = ntohs(a.sin_port);
    if (pthread_create(&p->thr, NULL, run, p) != 0)
        die("pthread_create");
    return p;
}

void h_proxy_freeze(h_proxy *p, int up, int down) {
    atomic_store(&p->up_frozen, up);
    atomic_store(&p->down_frozen, down);
    if (write(p->wake[1], "x", 1) < 0)
        die("write");
}

int h_proxy_accepted(h_proxy *p) {
    return atomic_load(&p->accepted);
}

void h_proxy_stop(h_proxy *p) {
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    if (write(p->wake[1], "x", 1) < 0)
        die("write");
    pthread_join(p->thr, NULL);
    for (int i = 0; i < p->npairs; i++)
        close_pair(&p->pairs[i]);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}
