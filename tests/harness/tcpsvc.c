/* tcpsvc.c — TCP services the tests put behind a house's `--tcp-service` (tcpsvc.h). */
#include "tcpsvc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
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

static void *echo_main(void *ud) {
    int lfd = (int)(intptr_t)ud;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            pthread_detach(t);
    }
}

int h_echo_start(h_echo *e) {
    memset(e, 0, sizeof *e);
    e->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (e->lfd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    pthread_t t;
    if (bind(e->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(e->lfd, 256) != 0 ||
        getsockname(e->lfd, (struct sockaddr *)&a, &l) != 0 ||
        pthread_create(&t, NULL, echo_main, (void *)(intptr_t)e->lfd) != 0) {
        close(e->lfd);
        e->lfd = -1;
        return -1;
    }
    e->port = ntohs(a.sin_port);
    pthread_detach(t);
    return 0;
}
