/* front.c — the HTTP front door's added latency (bridge/front/, issue 13: "the front door adds
 * <= 150 us to p50 at 1 in flight over the Redis contract path"). One request in flight, the
 * same house, bridge, upstream (httpd_tool, 100-byte answers) and Redis for both cases:
 *   producer   baseline: a producer on the Redis contract (blocking hiredis: XADD the request
 *              with its own reply key, XREAD BLOCK the reply);
 *   front      curl's job done by hand: GET /h/<house>/x on one keep-alive connection to the
 *              bridge's --http-listen port (--http-public), the answer read whole.
 * Rounds alternate the cases (AB, then BA); per round p50/p99 of each, and the front door's
 * added p50 (front - producer) and p50 ratio (front / producer); medians over the rounds.
 * Reports, never asserts a timing (tests/bench/README.md). */
#include "bench.h"
#include "bench_world.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#define HOUSE "fbench"
#define MAX_ROUNDS 16
#define MAX_REQS 20000

#define die(...) h_fatal("bench front", 1, __VA_ARGS__)

/* --- the baseline: a producer on the Redis contract ---------------------------------------- */

static unsigned long g_seq;

/* One request through Redis, its whole reply read: microseconds. */
static double producer_once(redisContext *c) {
    char id[48], reply[96];
    snprintf(id, sizeof id, "fb%d.%lu", (int)getpid(), g_seq++);
    snprintf(reply, sizeof reply, "gp:rep:fbench:%s", id);
    double t0 = bench_now_us();
    redisReply *r = redisCommand(c,
                                 "XADD gp:{" HOUSE "}:req MAXLEN ~ 10000 * id %s method GET "
                                 "path /x timeout_ms 10000 reply %s",
                                 id, reply);
    if (!r || r->type == REDIS_REPLY_ERROR)
        die("XADD: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
    char last[64] = "0";
    for (int final = 0; !final;) {
        r = redisCommand(c, "XREAD BLOCK 10000 STREAMS %s %s", reply, last);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 1)
            die("XREAD %s: no reply within 10 s", reply);
        const redisReply *es = r->element[0]->element[1];
        for (size_t i = 0; i < es->elements; i++) {
            const redisReply *e = es->element[i], *fv = e->element[1];
            snprintf(last, sizeof last, "%s", e->element[0]->str);
            for (size_t j = 0; j + 1 < fv->elements; j += 2)
                final |= strcmp(fv->element[j]->str, "final") == 0;
        }
        freeReplyObject(r);
    }
    double t = bench_now_us() - t0;
    freeReplyObject(redisCommand(c, "DEL %s", reply));
    return t;
}

/* --- the subject: HTTP through the front door --------------------------------------------- */

static int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect to the front door: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One GET on the keep-alive connection, its answer read whole (Content-Length): microseconds. */
static double front_once(int fd) {
    static const char req[] = "GET /h/" HOUSE "/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[8192];
    double t0 = bench_now_us();
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        die("write: %s", strerror(errno));
    size_t got = 0;
    long want = -1;
    while (want < 0 || got < (size_t)want) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            die("the front door closed the connection");
        got += (size_t)n;
        buf[got] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        if (want < 0 && end) {
            const char *cl = strcasestr(buf, "content-length:");
            if (!cl || cl > end || strncmp(buf, "HTTP/1.1 200", 12) != 0)
                die("unexpected answer: %.200s", buf);
            want = (long)(end + 4 - buf) + atol(cl + 15);
        }
        if (got >= sizeof buf - 1)
            die("answer too big");
    }
    return bench_now_us() - t0;
}

/* --- the driver ---------------------------------------------------------------------------- */

typedef struct stats {
    double p50, p99;
} stats;

static stats measure(int front, redisContext *c, int fd, int n) {
    static double v[MAX_REQS];
    for (int i = 0; i < n; i++)
        v[i] = front ? front_once(fd) : producer_once(c);
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return (stats){bench_pct(v, (size_t)n, 50), bench_pct(v, (size_t)n, 99)};
}

int main(void) {
    int quick = bench_quick();
    int rounds = quick ? 2 : 7, n = quick ? 300 : 2000;
    h_init();
    h_redis_start(0);
    char secret[65];
    h_register(HOUSE, secret);
    int up;
    bench_httpd(&up, 100);
    int hport = h_free_port(); /* at log-level warn the bridge does not log it */
    char hports[16];
    snprintf(hports, sizeof hports, "%d", hport);
    const char *bx[] = {"--log-level", "warn", "--http-listen", hports, "--http-public", NULL};
    int bport;
    h_proc *bridge = h_bridge_start(0, &bport, bx, 1);
    if (!h_wait_port(hport, 10000))
        die("the front door did not listen on %d (see %s)", hport, bridge->log);
    if (!bench_house(HOUSE, secret, bport, up))
        die("house did not connect (see its log and %s)", bridge->log);
    redisContext *c = redisConnect("127.0.0.1", h_redis_port());
    if (!c || c->err)
        die("redis: %s", c ? c->errstr : "out of memory");
    int fd = http_connect(hport);
    measure(0, c, fd, n / 4); /* warm-up: connections, scripts, the front door's reader */
    measure(1, c, fd, n / 4);

    double added[MAX_ROUNDS], ratio[MAX_ROUNDS], p50f[MAX_ROUNDS], p50p[MAX_ROUNDS];
    double p99f[MAX_ROUNDS], p99p[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        stats s[2];
        for (int j = 0; j < 2; j++) {
            int k = r % 2 == 0 ? j : 1 - j; /* AB, then BA */
            s[k] = measure(k, c, fd, n);
        }
        added[r] = s[1].p50 - s[0].p50;
        ratio[r] = s[0].p50 > 0 ? s[1].p50 / s[0].p50 : 0;
        p50p[r] = s[0].p50, p99p[r] = s[0].p99, p50f[r] = s[1].p50, p99f[r] = s[1].p99;
        bench_result("front", "producer_c1", "round=%d n=%d p50_us=%.0f p99_us=%.0f", r + 1, n,
                     s[0].p50, s[0].p99);
        bench_result("front", "front_c1", "round=%d n=%d p50_us=%.0f p99_us=%.0f added_p50_us=%.0f",
                     r + 1, n, s[1].p50, s[1].p99, added[r]);
    }
    bench_result("front", "producer_c1", "n=%d rounds=%d p50_us=%.0f p99_us=%.0f", n, rounds,
                 bench_median(p50p, (size_t)rounds), bench_median(p99p, (size_t)rounds));
    double a = bench_median(added, (size_t)rounds);
    bench_result("front", "front_c1",
                 "n=%d rounds=%d p50_us=%.0f p99_us=%.0f p50_ratio=%.2f added_p50_us=%.0f "
                 "goal=added_p50_us<=150 goal_met=%s",
                 n, rounds, bench_median(p50f, (size_t)rounds), bench_median(p99f, (size_t)rounds),
                 bench_median(ratio, (size_t)rounds), a, a <= 150 ? "yes" : "no");
    close(fd);
    redisFree(c);
    h_fini();
    return 0;
}
