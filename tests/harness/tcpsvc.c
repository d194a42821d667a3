/* tcpsvc.c — TCP services the tests put behind a house's `--tcp-service` (tcpsvc.h). */
#include "tcpsvc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *echo_conn(void *ud) {
    int fd = (int)(intptr_t)ud;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(fd, buf + o, (size_t)(n - o));
            if (w <= 0)
                goto out;
            o += w;
        }
    }
out:
    shutdown(fd, SHUT_WR);
    close(fd);
    return NULL;
}

typedef struct svc {
    int lfd;
    void *(*conn)(void *);
} svc;

static void *svc_main(void *ud) {
    svc sv = *(svc *)ud;
    free(ud);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256u << 10);
    for (;;) {
        int fd = accept(sv.lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, &at, sv.conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
    pthread_attr_destroy(&at);
    return NULL;
}

int h_tcpsvc_start(void *(*conn)(void *fd)) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return -1;
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    svc *sv = malloc(sizeof *sv);
    pthread_t t;
    if (!sv || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 512) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &l) != 0) {
        free(sv);
        close(lfd);
        return -1;
    }
    *sv = (svc){.lfd = lfd, .conn = conn};
    if (pthread_create(&t, NULL, svc_main, sv) != 0) {
        free(sv);
        close(lfd);
        return -1;
    }
    pthread_detach(t);
    return ntohs(a.sin_port);
}

int h_echo_start(h_echo *e) {
    e->port = h_tcpsvc_start(echo_conn);
    return e->port < 0 ? -1 : 0;
}
