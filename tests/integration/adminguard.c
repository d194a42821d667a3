/* adminguard.c — the admin port against hostile clients: slowloris (many half-sent requests
 * from one address must not keep /metrics and /readyz from another), Host names (DNS
 * rebinding: only IP literals, localhost and configured names), the dashboard's security
 * headers, and wrong admin tokens rate-limited per address. Real redis-server and bridge on
 * loopback ports, stopped by PID. */
#include "../harness/world.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

TestSuite(adminguard, .init = h_init, .fini = h_fini, .timeout = 120);

#define TOKEN "t0ken-for-the-admin-guard-tests"

static h_proc *bridge_admin(int *aport, const char *const *more) {
    char *path = h_path("admin.token");
    h_write_file(path, TOKEN "\n", 0600); /* a secret: the bridge refuses it readable by others */
    const char *extra[16] = {"--admin-listen",     "0", "--admin-bind", "0.0.0.0",
                             "--admin-token-file", path};
    int n = 6;
    for (int i = 0; more && more[i] && n < 15; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    int port;
    h_proc *b = h_bridge_start(0, &port, extra, 1);
    *aport = h_admin_port(b);
    cr_assert(*aport, "the bridge logged no admin port");
    return b;
}

/* A TCP connection from source address src (127.0.0.x) to 127.0.0.1:port, or -1. */
static int connect_from(const char *src, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in s = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &s.sin_addr);
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    d.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0 ||
        connect(fd, (struct sockaddr *)&d, sizeof d) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One request from src with the given Host and extra header lines; the status (-1: no
 * answer), the response head in *head (malloc'd) when asked. */
static int get_from(const char *src, int port, const char *path, const char *host, const char *hdrs,
                    char **head) {
    if (head)
        *head = NULL;
    int fd = connect_from(src, port);
    if (fd < 0)
        return -1;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n",
                     path, host, hdrs ? hdrs : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char *buf = malloc(1 << 20);
    size_t len = 0;
    ssize_t r;
    while (len < (1 << 20) - 1 && (r = read(fd, buf + len, (1 << 20) - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    int status = strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
    char *e = strstr(buf, "\r\n\r\n");
    if (e)
        *e = '\0';
    if (head)
        *head = strdup(buf);
    free(buf);
    return status;
}

static int has_header(const char *head, const char *line) {
    return head && strstr(head, line) != NULL;
}

Test(adminguard, slowloris_from_one_address_leaves_others_served) {
    h_redis_start(0);
    int aport;
    bridge_admin(&aport, NULL);
    static int slow[100];
    int served = 0, asked = 0;
    for (int round = 0; round < 3; round++) {
        /* 100 connections from 127.0.0.1, each a request head never finished, held open. */
        int n = 0;
        for (int i = 0; i < 100; i++) {
            int fd = connect_from("127.0.0.1", aport);
            if (fd < 0)
                continue;
            static const char part[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            if (write(fd, part, sizeof part - 1) < 0) {
            }
            slow[n++] = fd;
        }
        cr_assert_gt(n, 64, "only %d slow connections opened", n);
        for (int k = 0; k < 5; k++) {
            char host[64];
            snprintf(host, sizeof host, "127.0.0.1:%d", aport);
            asked += 2;
            served += get_from("127.0.0.2", aport, "/metrics", host, NULL, NULL) == 200;
            served += get_from("127.0.0.2", aport, "/readyz", host, NULL, NULL) == 200;
        }
        for (int i = 0; i < n; i++)
            close(slow[i]);
    }
    cr_assert_eq(served, asked, "/metrics and /readyz from 127.0.0.2 answered %d of %d times",
                 served, asked);
}

Test(adminguard, host_names_dns_rebinding) {
    h_redis_start(0);
    int aport;
    /* Through the environment, as GP_ADMIN_HOST works like the flag. */
    setenv("GP_ADMIN_HOST", "dash.example, prom.example:9090", 1);
    bridge_admin(&aport, NULL);
    unsetenv("GP_ADMIN_HOST");
    char h[128];
    const char *ok[] = {"127.0.0.1",    "localhost",    "[::1]",        "10.1.2.3",
                        "dash.example", "DASH.example", "prom.example", "localhost"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(h, sizeof h, "%s:%d", ok[i], aport);
        cr_assert_eq(get_from("127.0.0.1", aport, "/metrics", h, NULL, NULL), 200, "Host %s", h);
        cr_assert_eq(get_from("127.0.0.1", aport, "/metrics", ok[i], NULL, NULL), 200, "Host %s",
                     ok[i]);
    }
    const char *bad[] = {"evil.example", "127.0.0.1.evil.example", "localhost.evil.example",
                         "dash.example.evil"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(h, sizeof h, "%s:%d", bad[i], aport);
        char *head = NULL;
        int st = get_from("127.0.0.1", aport, "/metrics", h, NULL, &head);
        cr_assert_eq(st, 421, "Host %s got %d", h, st);
        cr_assert(has_header(head, "Content-Type: application/json"), "%s", head);
        free(head);
        cr_assert_eq(get_from("127.0.0.1", aport, "/", bad[i], NULL, NULL), 421, "Host %s", bad[i]);
        cr_assert_eq(get_from("127.0.0.1", aport, "/api/overview", bad[i],
                              "Authorization: Bearer " TOKEN "\r\n", NULL),
                     421, "Host %s", bad[i]);
    }
}

Test(adminguard, dashboard_security_headers) {
    h_redis_start(0);
    int aport;
    bridge_admin(&aport, NULL);
    char *head = NULL;
    cr_assert_eq(get_from("127.0.0.1", aport, "/", "127.0.0.1", NULL, &head), 200);
    cr_assert(has_header(head, "\r\nContent-Security-Policy: default-src 'none'; "), "%s", head);
    cr_assert(has_header(head, "frame-ancestors 'none'"), "%s", head);
    cr_assert(has_header(head, "\r\nX-Frame-Options: DENY\r\n"), "%s", head);
    cr_assert(has_header(head, "\r\nX-Content-Type-Options: nosniff\r\n"), "%s", head);
    free(head);
    cr_assert_eq(get_from("127.0.0.1", aport, "/assets/app.js", "127.0.0.1", NULL, &head), 200);
    cr_assert(has_header(head, "frame-ancestors 'none'"), "%s", head);
    cr_assert(has_header(head, "\r\nX-Frame-Options: DENY\r\n"), "%s", head);
    free(head);
}

Test(adminguard, wrong_tokens_rate_limited_per_address) {
    h_redis_start(0);
    int aport;
    bridge_admin(&aport, NULL);
    const char *wrong = "Authorization: Bearer not-the-token-0123456789\r\n";
    const char *right = "Authorization: Bearer " TOKEN "\r\n";
    cr_assert_eq(get_from("127.0.0.1", aport, "/api/overview", "127.0.0.1", right, NULL), 200);
    int n403 = 0, st = 0;
    char *head = NULL;
    for (int i = 0; i < 30 && st != 429; i++) {
        free(head);
        st = get_from("127.0.0.1", aport, "/api/overview", "127.0.0.1", wrong, &head);
        n403 += st == 403;
    }
    cr_assert_eq(st, 429, "30 wrong tokens in a row were never refused with 429");
    cr_assert_geq(n403, 3, "only %d wrong tokens were answered 403 before 429", n403);
    cr_assert(has_header(head, "\r\nRetry-After: "), "%s", head);
    free(head);
    /* That address waits, even with the right token; another address does not. */
    cr_assert_eq(get_from("127.0.0.1", aport, "/api/overview", "127.0.0.1", right, NULL), 429);
    cr_assert_eq(get_from("127.0.0.3", aport, "/api/overview", "127.0.0.1", right, NULL), 200);
}
