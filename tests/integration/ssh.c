/* ssh.c — TCP streams through Redis with real peers (issue 13): a real sshd (Debian's
 * openssh-server, its own config, host key and authorized key in the test directory, on a
 * free loopback port) behind a house's `--tcp-service ssh=127.0.0.1:PORT`, reached by the
 * real ssh and scp with `-o ProxyCommand='ghostport connect %h ssh'`: a command and its
 * output, 50 MiB each way by scp with the checksums compared, 100 concurrent streams through
 * one `ghostport forward`, and a transfer that survives the bridge carrying it being killed
 * (SIGKILL), drained (SIGTERM: a rolling restart), and one over an rudp:// house. Every
 * process is started through the harness and stopped by its PID; every wait is on a
 * condition, bounded. */
#include "../harness/sshd.h"
#include "../harness/tcpsvc.h"
#include "../harness/world.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void ssh_fini(void);
TestSuite(ssh, .init = h_init, .fini = ssh_fini, .timeout = 120);

#define SCP_SIZE (50u << 20)

/* --- a real sshd -------------------------------------------------------------------------- */

typedef struct sshd {
    h_sshd d;
    char proxy[900]; /* ProxyCommand=... (ssh's -o) */
} sshd;

/* The harness's throwaway sshd; the test is skipped where it cannot run as root. */
static void sshd_up(sshd *s) {
    memset(s, 0, sizeof *s);
    if (geteuid() != 0) /* CI runs as root; sshd's privilege separation needs it */
        cr_skip_test("sshd needs root");
    char why[800];
    cr_assert_eq(h_sshd_start(&s->d, why, sizeof why), 0, "%s", why);
}

/* The ProxyCommand of the README: the CLI on the harness's Redis, %h the house (ssh's host). */
static void sshd_proxy(sshd *s) {
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport"));
    snprintf(s->proxy, sizeof s->proxy, "ProxyCommand='%s' --redis '%s' connect %%h ssh", bin,
             h_redis_url());
}

/* argv of ssh (scp: 1) with the options every run shares, up to the destination; returns the
 * count. */
static int ssh_argv(const sshd *s, int scp, const char **argv) {
    int n = 0;
    argv[n++] = scp ? "/usr/bin/scp" : "/usr/bin/ssh";
    n += h_ssh_opts(&s->d, argv + n);
    argv[n++] = "-o";
    argv[n++] = s->proxy;
    argv[n++] = scp ? "-P" : "-p";
    argv[n++] = "22";
    return n;
}

/* The harness's teardown (every process stopped by its PID), then the 50 MiB files go even
 * when the test failed (the harness keeps a failed test's directory for its logs). */
static void ssh_fini(void) {
    h_fini();
    const char *tags[] = {"up", "down"}, *ends[] = {"src", "dst"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            char n[32];
            snprintf(n, sizeof n, "%s.%s", tags[i], ends[j]);
            unlink(h_path(n));
        }
}

/* --- files -------------------------------------------------------------------------------- */

/* n random bytes into path; their sha256 into sha. */
static void random_file(const char *path, size_t n, char sha[65]) {
    uint8_t *b = malloc(n);
    cr_assert_not_null(b);
    randombytes_buf(b, n);
    h_sha256_hex(b, n, sha);
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(b, 1, n, f) == n, "write %s", path);
    fclose(f);
    free(b);
}

static void file_sha(const char *path, size_t want_len, char sha[65]) {
    size_t len = 0;
    char *b = h_read_file(path, &len);
    cr_assert_not_null(b, "%s unreadable", path);
    cr_assert_eq(len, want_len, "%s: %zu bytes, want %zu", path, len, want_len);
    h_sha256_hex(b, len, sha);
    free(b);
}

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* --- the world ---------------------------------------------------------------------------- */

#define HOUSE "farm-1"

/* sshd, Redis, the upstream, bridge b1 (and b2 when two), and house farm-1 allowing ssh,
 * connected to b1 (with b2's URL as its second). */
typedef struct world {
    h_world w;
    h_proc *b[2];
    int port[2];
    h_proc *house;
    sshd s;
    char secret[65];
} world;

static void world_up(world *x, int two) {
    memset(x, 0, sizeof *x);
    sshd_up(&x->s);
    const char *b1[] = {"--bridge-id", "b1", NULL};
    h_world_up(&x->w, NULL, b1, NULL);
    x->b[0] = x->w.bridge;
    x->port[0] = x->w.bridge_port;
    char svc[64], url2[64];
    snprintf(svc, sizeof svc, "ssh=127.0.0.1:%d", x->s.d.port);
    const char *hx[8] = {"--tcp-service", svc};
    int n = 2;
    if (two) {
        const char *b2[] = {"--bridge-id", "b2", NULL};
        x->b[1] = h_bridge_start(0, &x->port[1], b2, 1);
        snprintf(url2, sizeof url2, "ws://127.0.0.1:%d/", x->port[1]);
        hx[n++] = "--bridge";
        hx[n++] = url2;
    }
    hx[n] = NULL;
    x->house = h_house_up(&x->w, HOUSE, x->secret, hx);
    sshd_proxy(&x->s);
}

/* --- processes ---------------------------------------------------------------------------- */

static int exited(void *ud) {
    return !h_alive(ud);
}

/* Waits for p to end (timeout_ms) and fails the test unless it exited 0. */
static void expect_exit0(h_proc *p, int timeout_ms) {
    cr_assert(h_wait(exited, p, timeout_ms), "%s still running after %d ms (see %s)", p->name,
              timeout_ms, p->log);
    size_t len;
    char *log = h_read_file(p->log, &len);
    cr_assert(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0, "%s: status %d:\n%s", p->name,
              p->status, log ? log : "");
    free(log);
}

static int stream_over(void *ud) {
    const h_proc *house = ud;
    return h_log_count(house, "event=stream_reset") + h_log_count(house, "event=stream_close") >= 1;
}

/* --- tests -------------------------------------------------------------------------------- */

/* ssh with ProxyCommand runs a command on the house's sshd; its output comes back. */
Test(ssh, command_through_proxycommand) {
    world x;
    world_up(&x, 0);
    const char *argv[40];
    int n = ssh_argv(&x.s, 0, argv);
    argv[n++] = "root@" HOUSE;
    argv[n++] = "echo hello; uname -s";
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    uint64_t t0 = h_now_ms();
    int rc = h_run(argv, 60000, &out, NULL, &err);
    cr_assert_eq(rc, 0, "ssh exited %d: %s", rc, err ? err : "");
    cr_assert_str_eq(out, "hello\nLinux\n", "output: %s", out);
    printf("ssh: command round trip %llu ms\n", (unsigned long long)(h_now_ms() - t0));
    fflush(stdout);
    free(out);
    free(err);
    /* ssh hangs up its ProxyCommand (SIGHUP) as it exits, after closing its stdin: the
     * stream ends at once and cleanly (connect waits briefly for sshd's fin rather than
     * resetting), not after the idle timeout. */
    cr_assert(h_wait(stream_over, x.house, 10000), "the house still holds the stream");
    size_t len;
    char *log = h_read_file(x.house->log, &len);
    cr_assert(log && strstr(log, "event=stream_close"), "no clean close in the house's log");
    cr_assert_null(strstr(log, "event=stream_reset"), "the session ended with a reset");
    free(log);
}

typedef struct xfer {
    char src[600], dst[600], spec_src[700], spec_dst[700], sha[65], name[32];
    h_proc *p;
    uint64_t t0, ms;
} xfer;

/* An upload (up 1: local src -> remote dst) or a download of a fresh 50 MiB random file:
 * the file and the command line, not started yet (xfer_go). */
static void xfer_prepare(xfer *t, int up, const char *tag) {
    memset(t, 0, sizeof *t);
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "%s.src", tag);
    snprintf(n2, sizeof n2, "%s.dst", tag);
    snprintf(t->src, sizeof t->src, "%s", h_path(n1));
    snprintf(t->dst, sizeof t->dst, "%s", h_path(n2));
    snprintf(t->name, sizeof t->name, "scp-%s", tag);
    random_file(t->src, SCP_SIZE, t->sha);
    /* sshd runs on this machine: the remote path is the same file. */
    snprintf(t->spec_src, sizeof t->spec_src, "%s%s", up ? "" : "root@" HOUSE ":", t->src);
    snprintf(t->spec_dst, sizeof t->spec_dst, "%s%s", up ? "root@" HOUSE ":" : "", t->dst);
}

/* The pair every scp test copies: 50 MiB up (up.src -> up.dst) and 50 MiB down. */
static void xfer_prepare_both(xfer *up, xfer *down) {
    xfer_prepare(up, 1, "up");
    xfer_prepare(down, 0, "down");
}

/* Starts the copy; limit_kbit (scp -l) NULL: as fast as it goes. */
static void xfer_go(const sshd *s, xfer *t, const char *limit_kbit) {
    const char *argv[40];
    int n = ssh_argv(s, 1, argv);
    argv[n++] = "-q";
    if (limit_kbit) {
        argv[n++] = "-l";
        argv[n++] = limit_kbit;
    }
    argv[n++] = t->spec_src;
    argv[n++] = t->spec_dst;
    argv[n] = NULL;
    t->t0 = h_now_ms();
    t->p = h_spawn(t->name, (char *const *)argv);
}

static void xfer_finish(xfer *t, int timeout_ms) {
    expect_exit0(t->p, timeout_ms);
    t->ms = h_now_ms() - t->t0;
    char got[65];
    file_sha(t->dst, SCP_SIZE, got);
    cr_assert_str_eq(got, t->sha, "%s: the copy differs", t->p->name);
    printf("%s: 50 MiB in %llu ms (%.1f MB/s)\n", t->p->name, (unsigned long long)t->ms,
           SCP_SIZE / 1e6 / ((double)t->ms / 1000));
    fflush(stdout);
}

/* 50 MiB up and 50 MiB down by scp, one after the other; the checksums match. */
Test(ssh, scp_50mib_both_ways) {
    world x;
    world_up(&x, 0);
    xfer up, down;
    xfer_prepare_both(&up, &down);
    xfer_go(&x.s, &up, NULL);
    xfer_finish(&up, 60000);
    xfer_go(&x.s, &down, NULL);
    xfer_finish(&down, 60000);
}

/* --- 100 concurrent streams through one `ghostport forward` ------------------------------- */

#define NSTREAMS 100
#define PER_STREAM (256u << 10)

typedef struct client {
    int fd;
    uint8_t *data, *got;
    size_t sent, rcvd;
    int shut, eof;
} client;

/* 100 client sockets on one `ghostport forward` listener, all open at once: each sends its own
 * 256 KiB through a 64 KiB window (credit runs out and comes back several times a stream),
 * gets exactly them back, half-closes and sees the echo's EOF. */
Test(ssh, hundred_concurrent_streams) {
    h_raise_nofile(4096);
    h_echo echo;
    cr_assert_eq(h_echo_start(&echo), 0, "echo: %s", strerror(errno));
    char svc[64], secret[65];
    snprintf(svc, sizeof svc, "echo=127.0.0.1:%d", echo.port);
    h_world w;
    const char *hx[] = {"--tcp-service", svc, NULL};
    h_world_up(&w, NULL, NULL, NULL);
    h_proc *house = h_house_up(&w, HOUSE, secret, hx);
    int port = h_free_port();
    char listen_at[32];
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", port);
    char bin[700];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport"));
    const char *argv[] = {bin,   "--redis", h_redis_url(), "forward", listen_at,
                          HOUSE, "echo",    "--window",    "65536",   NULL};
    h_proc *fwd = h_spawn("forward", (char *const *)argv);
    cr_assert(h_wait_log(fwd, "listening on", 10000), "forward did not listen (see %s)", fwd->log);

    uint64_t t0 = h_now_ms();
    client c[NSTREAMS];
    for (int i = 0; i < NSTREAMS; i++) {
        char seed[32];
        snprintf(seed, sizeof seed, "stream-%d", i);
        c[i] = (client){
            .fd = h_dial(port), .data = h_prandom(PER_STREAM, seed), .got = malloc(PER_STREAM)};
        cr_assert_geq(c[i].fd, 0, "connect %d", i);
        fcntl(c[i].fd, F_SETFL, fcntl(c[i].fd, F_GETFL) | O_NONBLOCK);
    }
    int done = 0;
    uint64_t end = h_now_ms() + 30000;
    while (done < NSTREAMS) {
        if (h_now_ms() >= end) {
            for (int i = 0; i < NSTREAMS; i++)
                if (!c[i].eof)
                    fprintf(stderr, "stream %d: sent %zu shut %d received %zu\n", i, c[i].sent,
                            c[i].shut, c[i].rcvd);
            cr_assert_fail("%d of %d streams finished", done, NSTREAMS);
        }
        struct pollfd pf[NSTREAMS];
        for (int i = 0; i < NSTREAMS; i++) {
            pf[i].fd = c[i].eof ? -1 : c[i].fd;
            pf[i].events = (short)(POLLIN | (c[i].sent < PER_STREAM ? POLLOUT : 0));
            pf[i].revents = 0;
        }
        cr_assert_geq(poll(pf, NSTREAMS, 500), 0);
        for (int i = 0; i < NSTREAMS; i++) {
            client *k = &c[i];
            if (pf[i].revents & POLLOUT) {
                ssize_t n = write(k->fd, k->data + k->sent, PER_STREAM - k->sent);
                if (n > 0)
                    k->sent += (size_t)n;
                if (k->sent == PER_STREAM && !k->shut) {
                    shutdown(k->fd, SHUT_WR);
                    k->shut = 1;
                }
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                uint8_t buf[65536];
                ssize_t n = read(k->fd, buf, sizeof buf);
                if (n > 0) {
                    cr_assert_leq(k->rcvd + (size_t)n, PER_STREAM, "stream %d: too many bytes", i);
                    memcpy(k->got + k->rcvd, buf, (size_t)n);
                    k->rcvd += (size_t)n;
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                    cr_assert_eq(n, 0, "stream %d: %s", i, strerror(errno));
                    k->eof = 1;
                    done++;
                    cr_assert_eq(k->rcvd, PER_STREAM, "stream %d: %zu bytes back of %u", i, k->rcvd,
                                 PER_STREAM);
                    cr_assert_eq(memcmp(k->got, k->data, PER_STREAM), 0,
                                 "stream %d: its bytes came back changed", i);
                }
            }
        }
    }
    printf("%d concurrent streams of %u KiB each way: %llu ms\n", NSTREAMS, PER_STREAM >> 10,
           (unsigned long long)(h_now_ms() - t0));
    fflush(stdout);
    for (int i = 0; i < NSTREAMS; i++) {
        close(c[i].fd);
        free(c[i].data);
        free(c[i].got);
    }
    cr_assert(h_wait_log_n(house, "event=stream_close", NSTREAMS, 20000),
              "%d of %d streams closed cleanly at the house",
              h_log_count(house, "event=stream_close"), NSTREAMS);
    cr_assert_eq(h_log_count(house, "event=stream_reset"), 0);
    cr_assert(h_alive(fwd), "forward died");
}

/* The house reset no stream, but for the end of each ssh: ssh hangs up its ProxyCommand as it
 * exits (SIGHUP), often before the last fin went, and the CLI resets ("by=opener"). */
static void no_resets(const h_proc *house) {
    int all = h_log_count_all(house, "event=stream_reset"),
        hup = h_log_count_all(house, "reason=closed by=opener");
    cr_assert_eq(all, hup, "the house reset %d stream(s) (see %s)", all - hup, house->log);
}

/* --- failover mid-transfer ---------------------------------------------------------------- */

/* The bridge that holds the house now ("b1", "b2"), or "" */
static void holder(char out[16]) {
    redisReply *r = h_cmd("HGET gp:{" HOUSE "}:state bridge");
    snprintf(out, 16, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

typedef struct held_by {
    const char *id;
} held_by;
static int is_held_by(void *ud) {
    char h[16];
    holder(h);
    return strcmp(h, ((held_by *)ud)->id) == 0;
}

typedef struct progress {
    const xfer *t[2];
    long long both, either;
} progress;
/* Both transfers have written at least `both` bytes, one of them at least `either`. */
static int past(void *ud) {
    progress *p = ud;
    long long a = file_size(p->t[0]->dst), b = file_size(p->t[1]->dst);
    return a >= p->both && b >= p->both && (a >= p->either || b >= p->either);
}

/* Waits until both copies are past `both` bytes and one past `either`; both must still run
 * (the thresholds are well below 50 MiB: the one ahead cannot have finished). */
static void wait_progress(xfer *up, xfer *down, long long both, long long either) {
    progress p = {{up, down}, both, either};
    cr_assert(h_wait(past, &p, 60000), "the transfers stalled (%lld and %lld bytes)",
              file_size(up->dst), file_size(down->dst));
    for (int i = 0; i < 2; i++) {
        xfer *t = i ? down : up;
        if (!h_alive(t->p)) {
            char *log = h_read_file(t->p->log, NULL);
            cr_assert_fail("%s ended (status %d) before the bridge went; up %lld, down %lld "
                           "bytes:\n%s",
                           t->name, t->p->status, file_size(up->dst), file_size(down->dst),
                           log ? log : "");
        }
    }
}

/* scp options that keep a 50 MiB copy running long enough to act in its middle: 30 MB/s. */
#define SCP_LIMIT_KBIT "240000"

/* Two bridges, the house on b1, and 50 MiB up and 50 MiB down by scp at once (at
 * SCP_LIMIT_KBIT), both past 4 MiB and still running. */
static void copies_under_way(world *x, xfer *up, xfer *down) {
    world_up(x, 1);
    char h[16];
    holder(h);
    cr_assert_str_eq(h, "b1");
    xfer_prepare_both(up, down);
    xfer_go(&x->s, up, SCP_LIMIT_KBIT);
    xfer_go(&x->s, down, SCP_LIMIT_KBIT);
    wait_progress(up, down, 4 << 20, 0);
}

/* 50 MiB up and 50 MiB down by scp at once; when both are past 4 MiB the bridge carrying the
 * house is SIGKILLed: the house moves to the other bridge, which resumes both streams; both
 * copies complete with the right checksums. */
Test(ssh, scp_survives_bridge_kill) {
    world x;
    xfer up, down;
    copies_under_way(&x, &up, &down);
    h_kill9(x.b[0]);
    held_by b2 = {"b2"};
    cr_assert(h_wait(is_held_by, &b2, 20000), "the house did not move to b2");
    xfer_finish(&up, 60000);
    xfer_finish(&down, 60000);
    cr_assert_geq(h_log_count(x.b[1], "event=stream_attach"), 2, "b2 did not resume the streams");
    no_resets(x.house);
}

/* A rolling restart in the middle of 50 MiB up and 50 MiB down: b1 drains (SIGTERM), the house
 * moves to b2, b1 comes back on its port; then b2 drains and the house moves back to b1. Both
 * copies complete with the right checksums. */
Test(ssh, scp_survives_rolling_restart) {
    world x;
    xfer up, down;
    copies_under_way(&x, &up, &down);
    cr_assert_eq(kill(x.b[0]->pid, SIGTERM), 0);
    held_by b2 = {"b2"}, b1 = {"b1"};
    cr_assert(h_wait(is_held_by, &b2, 20000), "the house did not move to b2");
    cr_assert(h_wait_log_n(x.b[1], "event=stream_attach", 2, 10000), "b2 did not resume both");
    cr_assert(h_wait(exited, x.b[0], 20000), "b1 did not finish its drain");
    cr_assert(WIFEXITED(x.b[0]->status) && WEXITSTATUS(x.b[0]->status) == 0,
              "b1 ended with status %d", x.b[0]->status);
    const char *id1[] = {"--bridge-id", "b1", NULL};
    int p1 = x.port[0];
    x.b[0] = h_bridge_start(p1, &p1, id1, 1);

    wait_progress(&up, &down, 6 << 20, 20 << 20);
    cr_assert_eq(kill(x.b[1]->pid, SIGTERM), 0);
    cr_assert(h_wait(is_held_by, &b1, 20000), "the house did not move back to b1");
    cr_assert(h_wait_log_n(x.b[0], "event=stream_attach", 2, 10000), "b1 did not resume both");
    cr_assert(h_wait(exited, x.b[1], 20000), "b2 did not finish its drain");
    xfer_finish(&up, 60000);
    xfer_finish(&down, 60000);
    no_resets(x.house);
}

/* --- rudp -------------------------------------------------------------------------------- */

static int on_rudp(void *ud) {
    (void)ud;
    redisReply *r = h_cmd("HGET gp:{" HOUSE "}:state transport");
    int ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, "rudp") == 0;
    freeReplyObject(r);
    return ok;
}

/* The house connected over rudp:// (UDP): 50 MiB up and 50 MiB down by scp at once, the house
 * on rudp throughout. (Until the house's HELLO rode its first datagram, an rudp house was taken
 * for protocol 1 and every open was refused 501 unsupported.) */
Test(ssh, scp_over_rudp) {
    world x;
    memset(&x, 0, sizeof x);
    sshd_up(&x.s);
    x.w.redis = h_redis_start(0);
    x.w.up = h_upstream_start(&x.w.up_port);
    snprintf(x.w.up_url, sizeof x.w.up_url, "http://127.0.0.1:%d", x.w.up_port);
    char pub[65], url[64], svc[64];
    x.w.bridge = h_rudp_bridge_start(&x.w.bridge_port, url, pub);
    h_register(HOUSE, x.secret);
    snprintf(svc, sizeof svc, "ssh=127.0.0.1:%d", x.s.d.port);
    const char *hx[] = {"--bridge-key", pub, "--tcp-service", svc, NULL};
    x.house = h_house_start_url(HOUSE, x.secret, url, x.w.up_url, hx);
    cr_assert(h_wait(on_rudp, NULL, 15000), "house not connected over rudp");
    sshd_proxy(&x.s);
    xfer up, down;
    xfer_prepare_both(&up, &down);
    xfer_go(&x.s, &up, NULL);
    xfer_go(&x.s, &down, NULL);
    xfer_finish(&up, 60000);
    xfer_finish(&down, 60000);
    cr_assert(on_rudp(NULL), "the house left rudp");
}
