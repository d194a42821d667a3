/* relay.c — gp-relay (tests/relay/), the UDP impairment relay, as a real process between a UDP
 * client and a UDP echo server (a thread of the test), all on free loopback ports. Each test
 * checks one impairment against what the client and the echo server saw and against the
 * relay's final stats; counts are checked for consistency (what the relay says it sent is what
 * arrived), loss rates against binomial bounds, and time only as lower bounds. */
#include "../harness/harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(relay, .init = h_init, .fini = h_fini, .timeout = 120);

#define MAXSEQ 4096
#define MARKER 60000u /* seq of datagrams the echo server sends on its own */

/* --- datagrams: "GPRT", seq (big endian), then bytes that depend on seq and position ------- */

static size_t dgram_make(uint8_t *p, uint32_t seq, size_t len) {
    memcpy(p, "GPRT", 4);
    uint32_t be = htonl(seq);
    memcpy(p + 4, &be, 4);
    for (size_t k = 8; k < len; k++)
        p[k] = (uint8_t)(seq * 131u + k * 7u);
    return len;
}

/* The seq of an intact datagram, or -1. */
static long dgram_check(const uint8_t *p, size_t len) {
    if (len < 8 || memcmp(p, "GPRT", 4) != 0)
        return -1;
    uint32_t be;
    memcpy(&be, p + 4, 4);
    uint32_t seq = ntohl(be);
    for (size_t k = 8; k < len; k++)
        if (p[k] != (uint8_t)(seq * 131u + k * 7u))
            return -1;
    return seq;
}

static size_t len_of(uint32_t seq) {
    return 32 + seq % 200;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pause_ms(int ms) { /* send pacing, never synchronisation */
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A UDP socket on 127.0.0.1, any port, with a receive buffer big enough for a burst. */
static int udp_socket(int *port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "socket");
    int sz = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* --- the echo server: a thread that records what arrives and sends it back ---------------- */

typedef struct echo {
    int fd, port, reply;
    pthread_t th;
    pthread_mutex_t mu;
    volatile int stop;
    int nrecv, nsent, bad, inorder; /* inorder: seqs arrived strictly increasing */
    long last_seq;
    unsigned char seen[MAXSEQ];
    double first_ms, last_ms;
    int ports[16], nports; /* distinct source ports, first seen first */
    uint32_t addrs[16];    /* the address each of those came from */
} echo;

static void *echo_main(void *ud) {
    echo *e = ud;
    uint8_t buf[65536];
    while (!e->stop) {
        struct pollfd pfd = {e->fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(e->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            continue;
        double t = now_ms();
        long seq = dgram_check(buf, (size_t)n);
        pthread_mutex_lock(&e->mu);
        if (seq < 0 || seq >= MAXSEQ) {
            e->bad++;
        } else {
            if (e->nrecv == 0)
                e->first_ms = t;
            e->last_ms = t;
            e->nrecv++;
            if (e->seen[seq] < 255)
                e->seen[seq]++;
            if (seq <= e->last_seq)
                e->inorder = 0;
            e->last_seq = seq;
        }
        int port = ntohs(from.sin_port), known = 0;
        for (int i = 0; i < e->nports; i++)
            known |= e->ports[i] == port;
        if (!known && e->nports < 16) {
            e->addrs[e->nports] = ntohl(from.sin_addr.s_addr);
            e->ports[e->nports++] = port;
        }
        pthread_mutex_unlock(&e->mu);
        if (e->reply && sendto(e->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) == n) {
            pthread_mutex_lock(&e->mu);
            e->nsent++;
            pthread_mutex_unlock(&e->mu);
        }
    }
    return NULL;
}

static echo *echo_start(int reply) {
    echo *e = calloc(1, sizeof *e);
    cr_assert(e);
    e->fd = udp_socket(&e->port);
    e->reply = reply;
    e->inorder = 1;
    e->last_seq = -1;
    pthread_mutex_init(&e->mu, NULL);
    cr_assert(pthread_create(&e->th, NULL, echo_main, e) == 0);
    return e;
}

static void echo_stop(echo *e) {
    e->stop = 1;
    pthread_join(e->th, NULL);
    close(e->fd);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* A consistent copy of the counters (the thread is still running). */
static echo echo_snap(echo *e) {
    pthread_mutex_lock(&e->mu);
    echo s = *e;
    pthread_mutex_unlock(&e->mu);
    return s;
}

/* Waits until nothing has reached the echo server for quiet_ms (bounded by 20 s): with the
 * relay's delays much shorter than that, nothing is in flight any more. */
static echo echo_wait_quiet(echo *e, int quiet_ms) {
    double end = now_ms() + 20000, since = now_ms();
    echo s = echo_snap(e);
    int last = s.nrecv;
    while (now_ms() - since < quiet_ms && now_ms() < end) {
        pause_ms(10);
        s = echo_snap(e);
        if (s.nrecv != last)
            last = s.nrecv, since = now_ms();
    }
    return s;
}

/* --- the client --------------------------------------------------------------------------- */

typedef struct client {
    int fd, port;
    struct sockaddr_in to;
    int nrecv, bad, markers;
    unsigned char seen[MAXSEQ];
} client;

static void client_open(client *c, int relay_port) {
    memset(c, 0, sizeof *c);
    c->fd = udp_socket(&c->port);
    c->to = loopback(relay_port);
}

static void client_send(client *c, uint32_t seq, size_t len) {
    uint8_t buf[2048];
    dgram_make(buf, seq, len);
    cr_assert(sendto(c->fd, buf, len, 0, (struct sockaddr *)&c->to, sizeof c->to) == (ssize_t)len,
              "sendto relay");
}

/* Receives one datagram within timeout_ms: its seq (MARKER for the echo's own), or -1. */
static long client_recv(client *c, int timeout_ms) {
    struct pollfd pfd = {c->fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    uint8_t buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    long seq = n < 0 ? -1 : dgram_check(buf, (size_t)n);
    if (seq == MARKER) {
        c->markers++;
    } else if (seq < 0 || seq >= MAXSEQ) {
        c->bad++;
    } else {
        c->nrecv++;
        if (c->seen[seq] < 255)
            c->seen[seq]++;
    }
    return seq < 0 ? -2 : seq;
}

/* Reads until nothing has come for quiet_ms (bounded by 20 s). */
static void client_drain(client *c, int quiet_ms) {
    double end = now_ms() + 20000;
    while (client_recv(c, quiet_ms) != -1 && now_ms() < end)
        ;
}

/* n datagrams from seq first, in bursts of 10 a millisecond apart, reading replies between. */
/* Datagrams first .. first + n - 1, len bytes each, at once. */
static void client_burst(client *c, uint32_t first, int n, size_t len) {
    for (int i = 0; i < n; i++)
        client_send(c, first + (uint32_t)i, len);
}
static void client_send_paced(client *c, uint32_t first, int n) {
    for (int i = 0; i < n; i++) {
        client_send(c, first + (uint32_t)i, len_of(first + (uint32_t)i));
        if (i % 10 == 9) {
            while (client_recv(c, 0) != -1)
                ;
            pause_ms(1);
        }
    }
}

/* --- the relay process -------------------------------------------------------------------- */

typedef struct relay {
    h_proc *p;
    int port;
    char up[1024], down[1024]; /* final stats lines */
} relay;

/* Starts gp-relay toward 127.0.0.1:target_port with extra args; waits for event=listening. */
static void relay_start(relay *r, const char *name, int target_port, const char *const *extra) {
    memset(r, 0, sizeof *r);
    char bin[4200], target[32];
    snprintf(bin, sizeof bin, "%s", h_bin("gp-relay"));
    snprintf(target, sizeof target, "127.0.0.1:%d", target_port);
    const char *argv[40] = {bin, "--listen", "127.0.0.1:0", "--target", target};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    r->p = h_spawn(name, (char *const *)argv);
    cr_assert(h_wait_log(r->p, "event=listening port=", 10000),
              "%s did not print event=listening within 10 s (see %s)", name, r->p->log);
    size_t len;
    char *log = h_read_file(r->p->log, &len);
    cr_assert(log);
    const char *l = strstr(log + r->p->log_off, "event=listening port=");
    cr_assert(l);
    r->port = atoi(l + strlen("event=listening port="));
    free(log);
    cr_assert(r->port > 0);
}

/* An echo server (replying when `reply`), gp-relay in front of it with extra, and a client of
 * the relay: the usual rig of a test. */
typedef struct rig {
    echo *e;
    relay r;
    client c;
} rig;
static void rig_up(rig *g, int reply, const char *const *extra) {
    g->e = echo_start(reply);
    relay_start(&g->r, "relay", g->e->port, extra);
    client_open(&g->c, g->r.port);
}

/* Stops the relay (SIGTERM), checks it exited 0 and keeps its final stats lines. */
static void relay_stop(relay *r) {
    int st = h_stop(r->p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "relay exit status %d (see %s)", st,
              r->p->log);
    size_t len;
    char *log = h_read_file(r->p->log, &len);
    cr_assert(log);
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "event=stats") || !strstr(line, " final=1"))
            continue;
        if (strstr(line, " dir=up "))
            snprintf(r->up, sizeof r->up, "%s", line);
        else if (strstr(line, " dir=down "))
            snprintf(r->down, sizeof r->down, "%s", line);
    }
    free(log);
    cr_assert(r->up[0] && r->down[0], "no final stats lines (see %s)", r->p->log);
}

/* The rig's relay stopped (its final stats in r), then the echo server. */
static void rig_down(rig *g) {
    relay_stop(&g->r);
    echo_stop(g->e);
}

/* A numeric field of a key=value line. */
static long long kv(const char *line, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, " %s=", key);
    const char *p = strstr(line, needle);
    cr_assert(p, "no %s in \"%s\"", key, line);
    return strtoll(p + strlen(needle), NULL, 10);
}

/* Every datagram the relay took in is accounted for: in + duplicated = out + dropped +
 * pending. */
static void assert_balanced(const char *line) {
    cr_assert_eq(kv(line, "in") + kv(line, "duplicated"),
                 kv(line, "out") + kv(line, "dropped") + kv(line, "pending"), "unbalanced: %s",
                 line);
}

/* The numbers n of the relay's logged drops in one direction (debug log), as a bitmap. */
static void logged_drops(const relay *r, const char *dir, unsigned char *map, size_t cap) {
    memset(map, 0, cap);
    size_t len;
    char *log = h_read_file(r->p->log, &len);
    cr_assert(log);
    char needle[64];
    snprintf(needle, sizeof needle, "event=drop dir=%s n=", dir);
    for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle)) {
        long n = atol(p + strlen(needle));
        if (n > 0 && (size_t)n < cap)
            map[n] = 1;
    }
    free(log);
}

/* --- tests -------------------------------------------------------------------------------- */

Test(relay, clean_path_delivers_everything_intact) {
    rig g;
    rig_up(&g, 1, NULL);
    /* At most 32 in flight: a lost datagram would stall this and fail the bounded wait. */
    uint32_t next = 0;
    for (; next < 32; next++)
        client_send(&g.c, next, len_of(next));
    while (g.c.nrecv < 1000) {
        long seq = client_recv(&g.c, 5000);
        cr_assert(seq >= 0, "no echo within 5 s after %d of 1000 (bad %d)", g.c.nrecv, g.c.bad);
        if (next < 1000) {
            client_send(&g.c, next, len_of(next));
            next++;
        }
    }
    cr_assert_eq(g.c.bad, 0, "corrupted datagrams came back");
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(g.c.seen[i], 1, "seq %d came back %d times", i, g.c.seen[i]);
    echo s = echo_snap(g.e);
    cr_assert_eq(s.nrecv, 1000);
    cr_assert_eq(s.bad, 0);
    cr_assert_eq(s.nports, 1, "one client, one upstream port");
    relay_stop(&g.r);
    cr_assert_eq(kv(g.r.up, "in"), 1000);
    cr_assert_eq(kv(g.r.up, "out"), 1000);
    cr_assert_eq(kv(g.r.down, "out"), 1000);
    cr_assert_eq(kv(g.r.up, "dropped") + kv(g.r.down, "dropped"), 0);
    echo_stop(g.e);
}

typedef struct lossrun {
    unsigned char up[1001], rt[1001]; /* arrived at the echo / back at the client, by seq */
    unsigned char drop_up[1100], drop_down[1100]; /* logged drops by the relay's n */
    int sent_down;                                /* echoes sent by the echo server */
    long long drop_loss_up, drop_loss_down;
} lossrun;

/* 1,000 datagrams through --loss 0.3 --seed seed, with checks that every count adds up. */
static void loss_run(long long seed, int k, lossrun *out) {
    memset(out, 0, sizeof *out);
    echo *e = echo_start(1);
    char name[32], seedtxt[24];
    snprintf(name, sizeof name, "relay-%lld-%d", seed, k);
    snprintf(seedtxt, sizeof seedtxt, "%lld", seed);
    const char *extra[] = {"--loss", "0.3", "--seed", seedtxt, "--log-level", "debug", NULL};
    relay r;
    relay_start(&r, name, e->port, extra);
    client c;
    client_open(&c, r.port);
    client_send_paced(&c, 0, 1000);
    client_drain(&c, 300); /* loopback and no delay: 300 ms quiet means nothing in flight */
    relay_stop(&r);
    echo s = echo_snap(e);
    echo_stop(e);
    /* Counts that must match unless a socket buffer overflowed or something is in flight. */
    cr_assert_eq(kv(r.up, "in"), 1000, "the relay did not read all 1000: %s", r.up);
    cr_assert_eq(kv(r.up, "out"), s.nrecv, "relay sent %lld up, echo got %d", kv(r.up, "out"),
                 s.nrecv);
    cr_assert_eq(kv(r.down, "in"), s.nsent);
    cr_assert_eq(kv(r.down, "out"), c.nrecv);
    cr_assert_eq(kv(r.up, "pending") + kv(r.down, "pending"), 0);
    assert_balanced(r.up);
    assert_balanced(r.down);
    cr_assert_eq(s.bad + c.bad, 0, "corrupted datagrams");
    for (int i = 0; i < 1000; i++) {
        out->up[i] = s.seen[i];
        out->rt[i] = c.seen[i];
    }
    out->sent_down = s.nsent;
    out->drop_loss_up = kv(r.up, "drop_loss");
    out->drop_loss_down = kv(r.down, "drop_loss");
    cr_assert_eq(out->drop_loss_up, 1000 - s.nrecv);
    cr_assert_eq(out->drop_loss_down, s.nsent - c.nrecv);
    logged_drops(&r, "up", out->drop_up, sizeof out->drop_up);
    logged_drops(&r, "down", out->drop_down, sizeof out->drop_down);
}

/* |lost/n - p| within 4.5 standard deviations of a binomial: a correct relay fails this with
 * probability below 1e-5 (and with a fixed seed its outcome is fixed anyway). */
static void assert_binomial(int lost, int n, double p, const char *what) {
    double frac = (double)lost / n, band = 4.5 * sqrt(p * (1 - p) / n);
    cr_assert(fabs(frac - p) <= band, "%s: lost %d of %d (%.3f), want %.2f +- %.3f", what, lost, n,
              frac, p, band);
}

Test(relay, loss_rate_is_binomial_and_seeded) {
    lossrun *a = calloc(3, sizeof *a), *b = a + 1, *o = a + 2;
    cr_assert(a);
    loss_run(7, 1, a);
    int up_ok = 0, rt_ok = 0;
    for (int i = 0; i < 1000; i++) {
        up_ok += a->up[i] > 0;
        rt_ok += a->rt[i] > 0;
    }
    assert_binomial(1000 - up_ok, 1000, 0.3, "up");
    assert_binomial(a->sent_down - rt_ok, a->sent_down, 0.3, "down");

    /* The same seed and send pattern: the same datagrams are lost, and the relay logged the
     * same decisions. */
    loss_run(7, 2, b);
    cr_assert(memcmp(a->up, b->up, sizeof a->up) == 0, "seed 7 lost different datagrams up");
    cr_assert(memcmp(a->rt, b->rt, sizeof a->rt) == 0, "seed 7 lost different round trips");
    cr_assert(memcmp(a->drop_up, b->drop_up, sizeof a->drop_up) == 0);
    cr_assert(memcmp(a->drop_down, b->drop_down, sizeof a->drop_down) == 0);
    /* ... and another seed does not (otherwise the comparison above proves nothing). */
    loss_run(8, 1, o);
    cr_assert(memcmp(a->up, o->up, sizeof a->up) != 0, "seeds 7 and 8 lost the same datagrams");
    free(a);
}

Test(relay, bursty_loss_comes_in_runs) {
    const char *extra[] = {"--loss-up", "0.3", "--burst-len-up", "5", "--seed", "3", NULL};
    rig g;
    rig_up(&g, 0, extra);
    client_send_paced(&g.c, 0, 2000);
    echo s = echo_wait_quiet(g.e, 300);
    rig_down(&g);
    cr_assert_eq(kv(g.r.up, "in"), 2000, "%s", g.r.up);
    cr_assert_eq(s.nrecv, kv(g.r.up, "out"));
    cr_assert_eq(kv(g.r.up, "drop_burst"), 2000 - s.nrecv);
    int lost = 0, runs = 0;
    for (int i = 0; i < 2000; i++)
        if (!s.seen[i]) {
            lost++;
            runs += i == 0 || s.seen[i - 1];
        }
    /* Independent loss at 30% has runs of 1/(1-0.3) = 1.4 on average; this asks for 5. */
    double mean = runs ? (double)lost / runs : 0;
    cr_assert(mean >= 3.0, "mean loss run %.2f (lost %d in %d runs), want about 5", mean, lost,
              runs);
    cr_assert(lost >= 2000 * 0.15 && lost <= 2000 * 0.45, "lost %d of 2000, want about 30%%", lost);
}

Test(relay, delay_bounds_rtt_from_below) {
    const char *extra[] = {"--delay", "100", NULL};
    rig g;
    rig_up(&g, 1, extra);
    for (uint32_t i = 0; i < 5; i++) {
        double t0 = now_ms();
        client_send(&g.c, i, len_of(i));
        long seq = client_recv(&g.c, 5000);
        double rtt = now_ms() - t0;
        cr_assert_eq(seq, (long)i, "datagram %u did not come back within 5 s", i);
        cr_assert(rtt >= 200.0, "round trip %.1f ms with 100 ms each way", rtt);
    }
    rig_down(&g);
    cr_assert_eq(kv(g.r.down, "out"), 5);
}

Test(relay, rate_limit_drops_tail_of_burst) {
    const char *extra[] = {"--rate-up", "1M", "--queue-bytes-up", "8000", NULL};
    rig g;
    rig_up(&g, 0, extra);
    /* 60 kB at once into an 8 kB queue draining 125 bytes per ms. */
    double t0 = now_ms();
    client_burst(&g.c, 0, 60, 1000);
    /* What the queue held leaves 8 ms apart: 300 ms of quiet means it is empty. */
    echo s = echo_wait_quiet(g.e, 300);
    rig_down(&g);
    long long out = kv(g.r.up, "out");
    cr_assert_eq(kv(g.r.up, "in"), 60, "%s", g.r.up);
    cr_assert_eq(s.nrecv, out, "relay sent %lld, echo got %d", out, s.nrecv);
    cr_assert(kv(g.r.up, "drop_queue") > 0, "no drop-tail: %s", g.r.up);
    cr_assert_eq(out + kv(g.r.up, "drop_queue"), 60, "%s", g.r.up);
    cr_assert(out >= 8 && out < 60, "%lld of 60 went through an 8000-byte queue", out);
    cr_assert(kv(g.r.up, "queue_hw") <= 8000, "%s", g.r.up);
    cr_assert(kv(g.r.up, "queue_hw") >= 7000, "%s", g.r.up);
    /* The k-th accepted datagram leaves 8 ms * k after the first arrived (1000 bytes at 1
     * Mbit/s), so the last arrival is at least out * 8 ms after the first send. */
    cr_assert(s.last_ms - t0 >= (double)out * 8.0, "%lld datagrams in %.1f ms at 1 Mbit/s", out,
              s.last_ms - t0);
}

/* Sends a datagram every 20 ms (reading echoes meanwhile) until the echo server has seen the
 * relay from two source ports. */
static void wait_two_ports(client *c, echo *e) {
    double end = now_ms() + 5000;
    uint32_t seq = 0;
    while (echo_snap(e).nports < 2) {
        cr_assert(now_ms() < end, "the echo server saw one source port for 5 s");
        client_send(c, seq, len_of(seq));
        seq = (seq + 1) % MAXSEQ;
        client_recv(c, 20);
    }
}

/* The echo server sends MARKER (len bytes) to the relay's first source port. */
static void send_to_old_port(echo *e, size_t len) {
    echo s = echo_snap(e);
    uint8_t buf[1024];
    dgram_make(buf, MARKER, len);
    struct sockaddr_in old = loopback(s.ports[0]);
    cr_assert(sendto(e->fd, buf, len, 0, (struct sockaddr *)&old, sizeof old) == (ssize_t)len);
}

Test(relay, rebinding_changes_source_port) {
    const char *extra[] = {"--rebind-every", "150", NULL};
    rig g;
    rig_up(&g, 1, extra);
    wait_two_ports(&g.c, g.e);
    cr_assert(h_wait_log(g.r.p, "event=rebind ", 1000));
    /* Without --rebind-drop the old mapping still delivers... */
    send_to_old_port(g.e, 300);
    double end = now_ms() + 5000;
    while (g.c.markers == 0 && now_ms() < end)
        client_recv(&g.c, 100);
    cr_assert_eq(g.c.markers, 1, "a reply to the old port did not reach the client");
    /* ... and the new one carries the echoes. */
    int before = g.c.nrecv;
    client_send(&g.c, 7, len_of(7));
    end = now_ms() + 5000;
    while (g.c.nrecv == before && now_ms() < end)
        client_recv(&g.c, 100);
    cr_assert(g.c.nrecv > before, "no echo after the rebinding");
    relay_stop(&g.r);
    cr_assert(kv(g.r.up, "rebinds") >= 1);
    echo_stop(g.e);
}

Test(relay, rebinding_rotates_source_addresses) {
    const char *extra[] = {"--rebind-every", "150", "--source", "127.0.0.2,127.0.0.3", NULL};
    rig g;
    rig_up(&g, 1, extra);
    wait_two_ports(&g.c, g.e);
    echo s = echo_snap(g.e);
    cr_assert_eq(s.addrs[0], 0x7f000002u, "first source %08x", s.addrs[0]);
    cr_assert_eq(s.addrs[1], 0x7f000003u, "second source %08x", s.addrs[1]);
    rig_down(&g);
}

Test(relay, rebind_drop_silences_the_old_port) {
    const char *extra[] = {"--rebind-every", "150", "--rebind-drop", "--log-level", "debug", NULL};
    rig g;
    rig_up(&g, 1, extra);
    wait_two_ports(&g.c, g.e);
    send_to_old_port(g.e, 777);
    cr_assert(h_wait_log(g.r.p, "len=777 reason=rebind", 5000),
              "the relay did not drop the reply to the old port");
    client_drain(&g.c, 100);
    cr_assert_eq(g.c.markers, 0, "a reply to the old port reached the client");
    relay_stop(&g.r);
    cr_assert(kv(g.r.down, "drop_rebind") >= 1);
    echo_stop(g.e);
}

Test(relay, sigusr1_drops_everything_sigusr2_restores) {
    const char *extra[] = {"--log-level", "debug", NULL};
    rig g;
    rig_up(&g, 1, extra);
    client_send(&g.c, 1, 100);
    cr_assert_eq(client_recv(&g.c, 5000), 1, "no echo before SIGUSR1");

    kill(g.r.p->pid, SIGUSR1);
    cr_assert(h_wait_log(g.r.p, "event=drop_all on=1", 5000));
    client_burst(&g.c, 2, 20, 100);
    cr_assert(h_wait_log_n(g.r.p, "reason=blocked", 20, 5000), "20 drops not logged");
    cr_assert_eq(echo_snap(g.e).nrecv, 1, "a datagram passed while dropping everything");
    cr_assert_eq(client_recv(&g.c, 0), -1);

    kill(g.r.p->pid, SIGUSR2);
    cr_assert(h_wait_log(g.r.p, "event=drop_all on=0", 5000));
    client_send(&g.c, 30, 100);
    cr_assert_eq(client_recv(&g.c, 5000), 30, "no echo after SIGUSR2");
    rig_down(&g);
    cr_assert_eq(kv(g.r.up, "drop_blocked"), 20);
    cr_assert_eq(kv(g.r.up, "out"), 2);
}

Test(relay, blackout_window_drops_everything) {
    const char *extra[] = {"--blackout", "0:600000", "--log-level", "debug", NULL};
    rig g;
    rig_up(&g, 1, extra);
    client_burst(&g.c, 0, 10, 64);
    cr_assert(h_wait_log_n(g.r.p, "reason=blackout", 10, 5000));
    relay_stop(&g.r);
    cr_assert_eq(kv(g.r.up, "drop_blackout"), 10);
    cr_assert_eq(echo_snap(g.e).nrecv, 0);
    echo_stop(g.e);
}

Test(relay, jitter_keeps_order_reorder_and_dup_do_not) {
    /* Jitter alone: every datagram arrives, in order. */
    echo *e = echo_start(0);
    const char *jit[] = {"--delay", "5", "--jitter", "4", NULL};
    relay r;
    relay_start(&r, "relay-jitter", e->port, jit);
    client c;
    client_open(&c, r.port);
    client_send_paced(&c, 0, 300);
    echo s = echo_wait_quiet(e, 300);
    cr_assert_eq(s.nrecv, 300);
    cr_assert(s.inorder, "jitter without --reorder reordered datagrams");
    relay_stop(&r);
    echo_stop(e);
    close(c.fd);

    /* Reordering and duplication: some overtaken, some twice, the relay's books balanced. */
    e = echo_start(0);
    const char *ro[] = {"--reorder", "0.2", "--dup", "0.1", "--seed", "5", NULL};
    relay_start(&r, "relay-reorder", e->port, ro);
    client_open(&c, r.port);
    client_send_paced(&c, 0, 300);
    s = echo_wait_quiet(e, 300);
    relay_stop(&r);
    echo_stop(e);
    int twice = 0;
    for (int i = 0; i < 300; i++) {
        cr_assert(s.seen[i] >= 1 && s.seen[i] <= 2, "seq %d arrived %d times", i, s.seen[i]);
        twice += s.seen[i] == 2;
    }
    cr_assert_eq(s.nrecv, kv(r.up, "out"));
    cr_assert_eq(kv(r.up, "pending"), 0);
    cr_assert(!s.inorder, "--reorder 0.2 kept every datagram in order");
    cr_assert(twice > 0 && twice == kv(r.up, "duplicated"), "%d duplicates arrived, stats: %s",
              twice, r.up);
    cr_assert(kv(r.up, "reordered") > 0);
    assert_balanced(r.up);
}
