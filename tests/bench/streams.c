/* streams.c — TCP streams through Redis (proto/STREAMS.md, issue 13: "a stream carries
 * >= 100 MB/s on loopback and adds <= 1 ms to an echo round trip; Redis memory per open idle
 * stream <= 2 KiB"). One service in this process (a TCP server: upload to a sink, download
 * from a source, echo), reached three ways in the same run:
 *   direct     baseline: a TCP connection straight to the service;
 *   ssh_L      the alternative: `ssh -L` port forwarding through a temporary sshd on loopback
 *              (generated host and user keys, as root);
 *   ghostport  the subject: `ghostport forward` -> Redis -> bridge -> house (--tcp-service)
 *              -> the service.
 * One connection a path, opened once (an open is not measured). Each round runs every path
 * in turn (the order reversed every other round): an upload of SIZE incompressible bytes (to
 * the sink: timed from the first byte written to the sink's one-byte receipt), a download of
 * SIZE bytes, and N echo round trips of 32 bytes (p50, p99). Ratios are taken round by round
 * (ghostport / direct, ghostport / ssh_L), then the median. For the ghostport path, the CPU
 * time of each process per MB moved (the CLI, bridge, house, Redis). Then idle streams: K
 * connections through `ghostport forward`, one echo each, and Redis before and after: the
 * keys' bytes per stream (MEMORY USAGE of every key) and used_memory per stream (keys, plus
 * the opener's share: the CLI's two connections serve all its streams); once with Redis's
 * default stream-node-max-bytes and once with 256 (not in QUICK mode). Reports, never asserts
 * a timing (tests/bench/README.md). Knobs: BENCH_STREAMS_ROUNDS, _MB, _RTT, _IDLE, _PATHS (say
 * "ghostport"), _DIRS ("up", "down"), _WINDOW (the CLI's --window), _ALT_BIN_DIR (another build's
 * bin/: its bridge, house and CLI as the path ghostport_alt, an A/B in the same run,
 * alt_*_ratio = alt / ghostport), _HOLD_S (seconds to keep the idle streams open, to look at
 * Redis). */
#include "../harness/sshd.h"
#include "../harness/tcpsvc.h"
#include "bench.h"
#include "bench_world.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define HOUSE "sbench"
#define HOUSE_ALT "sbench-alt"
#define MAX_ROUNDS 16
#define MAX_RTT 20000
#define PATTERN (1u << 20) /* incompressible bytes, sent over and over */
#define ECHO_LEN 32
#define NPATHS 4

enum { P_DIRECT, P_SSH, P_GHOST, P_ALT };
static const char *const path_name[NPATHS] = {"direct", "ssh_L", "ghostport", "ghostport_alt"};

static uint8_t *g_pattern;

#define die(...) h_fatal("bench streams", 1, __VA_ARGS__)

static int read_full(int fd, void *b, size_t n) {
    uint8_t *p = b;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *b, size_t n) {
    const uint8_t *p = b;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* --- the service: one thread a connection ------------------------------------------------
 * Commands: 'U' u64 n: n bytes follow, dropped, then 'K' is sent back; 'D' u64 n: n bytes are
 * sent; 'E' u8 n: n bytes follow and are sent back. EOF ends the connection. */

static void *svc_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    uint8_t *buf = malloc(1u << 16);
    for (;;) {
        uint8_t cmd;
        if (!buf || read_full(fd, &cmd, 1) != 0)
            break;
        if (cmd == 'U' || cmd == 'D') {
            uint64_t n;
            if (read_full(fd, &n, 8) != 0)
                break;
            int bad = 0;
            for (uint64_t done = 0; done < n && !bad;) {
                size_t want = n - done < (1u << 16) ? (size_t)(n - done) : (1u << 16);
                if (cmd == 'U') {
                    ssize_t r = read(fd, buf, want);
                    bad = r <= 0 && !(r < 0 && errno == EINTR);
                    done += r > 0 ? (uint64_t)r : 0;
                } else {
                    size_t at = (size_t)(done % PATTERN);
                    if (want > PATTERN - at)
                        want = PATTERN - at;
                    bad = write_full(fd, g_pattern + at, want) != 0;
                    done += want;
                }
            }
            if (bad || (cmd == 'U' && write_full(fd, "K", 1) != 0))
                break;
        } else if (cmd == 'E') {
            uint8_t n;
            if (read_full(fd, &n, 1) != 0 || read_full(fd, buf, n) != 0 ||
                write_full(fd, buf, n) != 0)
                break;
        } else {
            break;
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

/* --- the client ---------------------------------------------------------------------------- */

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* Upload of n bytes to the sink: MB/s (10^6 bytes), from the first byte to the receipt. */
static double upload(int fd, uint64_t n, const char *who) {
    uint8_t hdr[9] = {'U'};
    memcpy(hdr + 1, &n, 8);
    double t0 = bench_now_us();
    if (write_full(fd, hdr, sizeof hdr) != 0)
        die("%s: upload: %s", who, strerror(errno));
    for (uint64_t done = 0; done < n;) {
        size_t at = (size_t)(done % PATTERN), want = PATTERN - at;
        if (want > n - done)
            want = (size_t)(n - done);
        if (write_full(fd, g_pattern + at, want) != 0)
            die("%s: upload: %s", who, strerror(errno));
        done += want;
    }
    uint8_t k;
    if (read_full(fd, &k, 1) != 0 || k != 'K')
        die("%s: no receipt for the upload", who);
    return (double)n / (bench_now_us() - t0);
}

/* Download of n bytes from the source: MB/s, from the request to the last byte. */
static double download(int fd, uint64_t n, const char *who) {
    static uint8_t buf[1u << 16];
    uint8_t hdr[9] = {'D'};
    memcpy(hdr + 1, &n, 8);
    double t0 = bench_now_us();
    if (write_full(fd, hdr, sizeof hdr) != 0)
        die("%s: download: %s", who, strerror(errno));
    for (uint64_t done = 0; done < n;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("%s: download cut at %llu of %llu bytes", who, (unsigned long long)done,
                (unsigned long long)n);
        done += (uint64_t)r;
    }
    return (double)n / (bench_now_us() - t0);
}

/* One echo round trip of ECHO_LEN bytes: microseconds. */
static double echo_once(int fd, const char *who) {
    uint8_t msg[2 + ECHO_LEN] = {'E', ECHO_LEN}, back[ECHO_LEN];
    memset(msg + 2, 'e', ECHO_LEN);
    double t0 = bench_now_us();
    if (write_full(fd, msg, sizeof msg) != 0 || read_full(fd, back, sizeof back) != 0)
        die("%s: echo: %s", who, strerror(errno));
    return bench_now_us() - t0;
}

/* --- ssh -L: a temporary sshd ------------------------------------------------------------- */

/* Starts the harness's throwaway sshd and `ssh -N -L` from a free port to the service. The
 * forwarded port, or -1 with the reason in why (then no ssh case). */
static int ssh_start(int svc_port, char *why, size_t whylen) {
    h_sshd sshd;
    if (h_sshd_start(&sshd, why, whylen) != 0)
        return -1;
    int lport = h_free_port();
    char fwd[64], sports[16];
    snprintf(fwd, sizeof fwd, "127.0.0.1:%d:127.0.0.1:%d", lport, svc_port);
    snprintf(sports, sizeof sports, "%d", sshd.port);
    const char *cv[40] = {"/usr/bin/ssh", "-N", "-T"};
    int n = 3;
    n += h_ssh_opts(&sshd, cv + n);
    const char *rest[] = {"-o", "ExitOnForwardFailure=yes", "-p", sports, "-L",
                          fwd,  "root@127.0.0.1",           NULL};
    for (int i = 0; rest[i]; i++)
        cv[n++] = rest[i];
    h_proc *ssh = h_spawn("ssh", (char *const *)cv);
    if (!h_wait_port(lport, 10000)) {
        snprintf(why, whylen, "ssh -L did not listen (see %s and %s)", ssh->log, sshd.p->log);
        return -1;
    }
    return lport;
}

/* --- Redis memory ------------------------------------------------------------------------- */

static long long info_mem(redisContext *c, const char *field) {
    redisReply *r = redisCommand(c, "INFO memory");
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        char needle[64];
        snprintf(needle, sizeof needle, "\r\n%s:", field);
        const char *p = strstr(r->str, needle);
        if (p)
            v = atoll(p + strlen(needle));
    }
    if (r)
        freeReplyObject(r);
    return v;
}

/* DEL of every key matching pattern. */
static void del_keys(redisContext *c, const char *pattern) {
    char cur[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cur, pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            die("SCAN failed");
        snprintf(cur, sizeof cur, "%s", r->element[0]->str);
        const redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++)
            freeReplyObject(redisCommand(c, "DEL %b", ks->element[i]->str, ks->element[i]->len));
        freeReplyObject(r);
    } while (strcmp(cur, "0") != 0);
}

/* The sum of MEMORY USAGE (every sample) over every key: what the data set holds. */
static long long keys_bytes(redisContext *c) {
    long long sum = 0;
    char cur[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s COUNT 1000", cur);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            die("SCAN failed");
        snprintf(cur, sizeof cur, "%s", r->element[0]->str);
        const redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++)
            redisAppendCommand(c, "MEMORY USAGE %b SAMPLES 0", ks->element[i]->str,
                               ks->element[i]->len);
        for (size_t i = 0; i < ks->elements; i++) {
            redisReply *m = NULL;
            if (redisGetReply(c, (void **)&m) != REDIS_OK)
                die("MEMORY USAGE failed");
            if (m && m->type == REDIS_REPLY_INTEGER)
                sum += m->integer;
            if (m)
                freeReplyObject(m);
        }
        freeReplyObject(r);
    } while (strcmp(cur, "0") != 0);
    return sum;
}

/* What the open stream(s) keep in Redis after all the transfers: entries and bytes of their
 * byte keys (acknowledged bytes leave; each side's last ack-only entry stays). */
static void keys_left(int rounds) {
    redisContext *c = redisConnect("127.0.0.1", h_redis_port());
    if (!c || c->err)
        die("redis: %s", c ? c->errstr : "out of memory");
    usleep(300 * 1000);
    long long entries = 0, bytes = 0, nkeys = 0;
    char cur[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH gp:{" HOUSE "}:s* COUNT 1000", cur);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            die("SCAN failed");
        snprintf(cur, sizeof cur, "%s", r->element[0]->str);
        const redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++) {
            redisReply *x = redisCommand(c, "XLEN %b", ks->element[i]->str, ks->element[i]->len);
            redisReply *m = redisCommand(c, "MEMORY USAGE %b SAMPLES 0", ks->element[i]->str,
                                         ks->element[i]->len);
            entries += x && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
            bytes += m && m->type == REDIS_REPLY_INTEGER ? m->integer : 0;
            nkeys++;
            if (x)
                freeReplyObject(x);
            if (m)
                freeReplyObject(m);
        }
        freeReplyObject(r);
    } while (strcmp(cur, "0") != 0);
    bench_result("streams", "ghostport_keys",
                 "rounds=%d keys=%lld entries_left=%lld bytes_left=%lld", rounds, nkeys, entries,
                 bytes);
    redisFree(c);
}

/* --- the driver ---------------------------------------------------------------------------- */

/* The processes of the ghostport path whose CPU time is taken per MB moved. */
#define NCPU 4
static const char *const cpu_name[NCPU] = {"cli", "bridge", "house", "redis"};
static pid_t g_cpu_pid[NCPU];

typedef struct meas {
    double up, down, p50, p99;
    double cpu_up[NCPU], cpu_down[NCPU]; /* us of CPU per MB, ghostport only */
} meas;

static void cpu_now(long long *t) {
    for (int i = 0; i < NCPU; i++)
        t[i] = g_cpu_pid[i] > 0 ? bench_cpu_us(g_cpu_pid[i]) : 0;
}

static void cpu_per_mb(const long long *t0, uint64_t size, double *out) {
    long long t1[NCPU];
    cpu_now(t1);
    for (int i = 0; i < NCPU; i++)
        out[i] = (double)(t1[i] - t0[i]) / ((double)size / 1e6);
}

static meas run_path(int fd, const char *who, uint64_t size, int nrtt, int cpu) {
    static double v[MAX_RTT];
    meas m = {0};
    long long t0[NCPU];
    const char *dirs = getenv("BENCH_STREAMS_DIRS"); /* "up", "down": only that one */
    int up = !dirs || !*dirs || strstr(dirs, "up"), down = !dirs || !*dirs || strstr(dirs, "down");
    cpu_now(t0);
    m.up = up ? upload(fd, size, who) : 0;
    if (cpu)
        cpu_per_mb(t0, size, m.cpu_up);
    cpu_now(t0);
    m.down = down ? download(fd, size, who) : 0;
    if (cpu)
        cpu_per_mb(t0, size, m.cpu_down);
    for (int i = 0; i < nrtt; i++)
        v[i] = echo_once(fd, who);
    qsort(v, (size_t)nrtt, sizeof *v, bench_cmp_double);
    m.p50 = bench_pct(v, (size_t)nrtt, 50);
    m.p99 = bench_pct(v, (size_t)nrtt, 99);
    return m;
}

static int env_int(const char *name, int def, int lo, int hi);

/* The ghostport_alt path: bridge, house HOUSE_ALT (service svc=...) and forward from dir. The
 * forward's port. */
static int start_alt(const char *dir, const char *upurl, const char *tcpsvc) {
    char abs[3][PATH_MAX], url[64], secret[65];
    const char *names[3] = {"ghostport-bridge", "ghostport-house", "ghostport"};
    bench_alt_bins(dir, "BENCH_STREAMS_ALT_BIN_DIR", names, 3, abs);
    int port;
    h_proc *b = bench_alt_bridge(abs[0], &port);
    h_register(HOUSE_ALT, secret);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    char *const hargv[] = {abs[1],         "--id",        HOUSE_ALT, "--secret",
                           secret,         "--bridge",    url,       "--upstream",
                           (char *)upurl,  "--log-level", "warn",    "--tcp-service",
                           (char *)tcpsvc, NULL};
    h_proc *h = h_spawn("house-alt", hargv);
    if (!h_wait_connected(HOUSE_ALT, 15000))
        die("the alternative house did not connect (see %s, %s)", h->log, b->log);
    int aport = h_free_port();
    char aports[32];
    snprintf(aports, sizeof aports, "127.0.0.1:%d", aport);
    char *const av[] = {
        abs[2], "--redis", (char *)h_redis_url(), "forward", aports, HOUSE_ALT, "svc", "-q", NULL};
    h_proc *af = h_spawn("forward-alt", av);
    if (!h_wait_port(aport, 10000))
        die("the alternative ghostport forward did not listen (see %s)", af->log);
    return aport;
}

/* n idle streams through `ghostport forward` on fport, one echo each: Redis's memory before and
 * after, per stream; the case's line. */
static void idle_case(redisContext *c, int fport, int n, const char *kase, const char *extra) {
    /* Redis accounts clients' buffers in its cron, a little at a time, and shrinks idle ones
     * after 2 s: both readings after a settle. Streams that ended (their keys kept 60 s) are in
     * both. */
    int settle_ms = bench_quick() ? 2200 : 3000;
    /* Streams that ended keep their keys 60 s, then expire: gone within the window, they
     * would count against the new ones. No stream is open now (the connections are closed):
     * their keys are deleted first. */
    usleep(1000 * 1000);
    del_keys(c, "gp:{" HOUSE "}:s*");
    del_keys(c, "gp:{" HOUSE_ALT "}:s*");
    del_keys(c, "gp:rep:*");
    usleep((useconds_t)settle_ms * 1000);
    long long u0 = info_mem(c, "used_memory"), k0 = keys_bytes(c);
    int *ifd = calloc((size_t)n, sizeof *ifd);
    for (int i = 0; i < n; i++) {
        ifd[i] = dial(fport);
        echo_once(ifd[i], "idle stream");
    }
    usleep((useconds_t)settle_ms * 1000);
    long long u1 = info_mem(c, "used_memory"), k1 = keys_bytes(c);
    double keys = (double)(k1 - k0) / n, total = (double)(u1 - u0) / n;
    bench_result("streams", kase,
                 "streams=%d%s redis_keys_per_stream_bytes=%.0f redis_per_stream_bytes=%.0f "
                 "redis_other_per_stream_bytes=%.0f goal=redis_keys_per_stream_bytes<=2048 "
                 "goal_met=%s",
                 n, extra, keys, total, total - keys, keys <= 2048 ? "yes" : "no");
    sleep((unsigned)env_int("BENCH_STREAMS_HOLD_S", 0, 0, 3600)); /* to look at Redis */
    for (int i = 0; i < n; i++)
        close(ifd[i]);
    free(ifd);
}

static int env_int(const char *name, int def, int lo, int hi) {
    const char *v = getenv(name);
    int x = v && *v ? atoi(v) : def;
    return x < lo ? lo : x > hi ? hi : x;
}

int main(void) {
    int quick = bench_quick();
    int rounds = env_int("BENCH_STREAMS_ROUNDS", quick ? 1 : 5, 1, MAX_ROUNDS);
    uint64_t size = (uint64_t)env_int("BENCH_STREAMS_MB", quick ? 8 : 64, 1, 4096) << 20;
    int nrtt = env_int("BENCH_STREAMS_RTT", quick ? 300 : 2000, 10, MAX_RTT);
    int nidle = env_int("BENCH_STREAMS_IDLE", quick ? 50 : 200, 0, 250);
    signal(SIGPIPE, SIG_IGN);
    g_pattern = h_prandom(PATTERN, "bench-streams");

    h_init();
    g_cpu_pid[3] = h_redis_start(0)->pid;
    int svc = h_tcpsvc_start(svc_conn);
    if (svc < 0)
        die("service: %s", strerror(errno));
    char secret[65];
    h_register(HOUSE, secret);
    int up;
    bench_httpd(&up, 100);
    const char *bx[] = {"--log-level", "warn", NULL};
    int bport;
    h_proc *bridge = h_bridge_start(0, &bport, bx, 1);
    char upurl[64], tcpsvc[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", up);
    snprintf(tcpsvc, sizeof tcpsvc, "svc=127.0.0.1:%d", svc);
    const char *hx[] = {"--log-level", "warn", "--tcp-service", tcpsvc, NULL};
    h_proc *house = h_house_start(HOUSE, secret, bport, upurl, hx);
    if (!h_wait_connected(HOUSE, 15000))
        die("house did not connect (see %s and %s)", house->log, bridge->log);

    /* ghostport forward: one local port, one stream a connection */
    int fport = h_free_port();
    char fports[32];
    snprintf(fports, sizeof fports, "127.0.0.1:%d", fport);
    char ghost[PATH_MAX];
    snprintf(ghost, sizeof ghost, "%s", h_bin("ghostport"));
    const char *win = getenv("BENCH_STREAMS_WINDOW"); /* the CLI's --window, default its own */
    char *const fv[] = {
        ghost, "--redis", (char *)h_redis_url(),           "forward",   fports, HOUSE,
        "svc", "-q",      win && *win ? "--window" : NULL, (char *)win, NULL};
    h_proc *fwd = h_spawn("forward", fv);
    g_cpu_pid[0] = fwd->pid, g_cpu_pid[1] = bridge->pid, g_cpu_pid[2] = house->pid;
    if (!h_wait_port(fport, 10000))
        die("ghostport forward did not listen (see %s)", fwd->log);
    /* A/B: BENCH_STREAMS_ALT_BIN_DIR=DIR (a patched build's bin/, say): the path ghostport_alt,
     * DIR's bridge (a port of its own, the same Redis), house HOUSE_ALT on it (the same
     * service) and `ghostport forward` to that house. */
    const char *alt = getenv("BENCH_STREAMS_ALT_BIN_DIR");
    int aport = -1;
    if (alt && *alt)
        aport = start_alt(alt, upurl, tcpsvc);
    char why[1200] = "";
    const char *only = getenv("BENCH_STREAMS_PATHS"); /* e.g. "ghostport": the others skipped */
    int sshport = only && *only && !strstr(only, "ssh_L") ? -2 : ssh_start(svc, why, sizeof why);
    if (sshport == -1)
        fprintf(stderr, "bench streams: no ssh_L case: %s\n", why);

    int port[NPATHS] = {svc, sshport, fport, aport}, fd[NPATHS];
    for (int k = 0; k < NPATHS; k++) {
        if (only && *only && !strstr(only, path_name[k]))
            port[k] = -1;
        fd[k] = port[k] > 0 ? dial(port[k]) : -1;
        if (fd[k] >= 0) /* warm-up: the stream's open, ssh's channel, caches */
            run_path(fd[k], path_name[k], size / 8 ? size / 8 : 1, 50, 0);
    }

    static double up_v[NPATHS][MAX_ROUNDS], down_v[NPATHS][MAX_ROUNDS], p50_v[NPATHS][MAX_ROUNDS],
        p99_v[NPATHS][MAX_ROUNDS];
    static double rup_d[MAX_ROUNDS], rdown_d[MAX_ROUNDS], rup_s[MAX_ROUNDS], rdown_s[MAX_ROUNDS],
        add50_d[MAX_ROUNDS], add99_d[MAX_ROUNDS], add50_s[MAX_ROUNDS];
    static double cpu_up_v[NCPU][MAX_ROUNDS], cpu_down_v[NCPU][MAX_ROUNDS];
    static double alt_up[MAX_ROUNDS], alt_down[MAX_ROUNDS], alt_p50[MAX_ROUNDS];
    static double sup_d[MAX_ROUNDS], sdown_d[MAX_ROUNDS], sadd50_d[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        meas m[NPATHS] = {0};
        for (int j = 0; j < NPATHS; j++) {
            int k = r % 2 == 0 ? j : NPATHS - 1 - j;
            if (fd[k] < 0)
                continue;
            m[k] = run_path(fd[k], path_name[k], size, nrtt, k == P_GHOST);
            for (int i = 0; k == P_GHOST && i < NCPU; i++)
                cpu_up_v[i][r] = m[k].cpu_up[i], cpu_down_v[i][r] = m[k].cpu_down[i];
            up_v[k][r] = m[k].up, down_v[k][r] = m[k].down;
            p50_v[k][r] = m[k].p50, p99_v[k][r] = m[k].p99;
        }
        const meas *d = &m[P_DIRECT], *s = &m[P_SSH], *g = &m[P_GHOST];
        if (fd[P_ALT] >= 0) {
            const meas *x = &m[P_ALT];
            alt_up[r] = g->up > 0 ? x->up / g->up : 0,
            alt_down[r] = g->down > 0 ? x->down / g->down : 0;
            alt_p50[r] = x->p50 - g->p50;
        }
        rup_d[r] = d->up > 0 ? g->up / d->up : 0, rdown_d[r] = d->down > 0 ? g->down / d->down : 0;
        add50_d[r] = g->p50 - d->p50, add99_d[r] = g->p99 - d->p99;
        for (int k = 0; k < NPATHS; k++)
            if (fd[k] >= 0)
                bench_result("streams", path_name[k],
                             "round=%d up_mbps=%.1f down_mbps=%.1f rtt_p50_us=%.0f "
                             "rtt_p99_us=%.0f",
                             r + 1, m[k].up, m[k].down, m[k].p50, m[k].p99);
        if (fd[P_SSH] >= 0) {
            rup_s[r] = s->up > 0 ? g->up / s->up : 0,
            rdown_s[r] = s->down > 0 ? g->down / s->down : 0;
            add50_s[r] = g->p50 - s->p50;
            sup_d[r] = d->up > 0 ? s->up / d->up : 0,
            sdown_d[r] = d->down > 0 ? s->down / d->down : 0;
            sadd50_d[r] = s->p50 - d->p50;
        }
    }
    size_t R = (size_t)rounds;
    int mb = (int)(size >> 20);
#define MED(a) bench_median((a), R)
    bench_result("streams", "direct",
                 "mib=%d rtt_n=%d rounds=%d up_mbps=%.1f down_mbps=%.1f rtt_p50_us=%.0f "
                 "rtt_p99_us=%.0f",
                 mb, nrtt, rounds, MED(up_v[P_DIRECT]), MED(down_v[P_DIRECT]), MED(p50_v[P_DIRECT]),
                 MED(p99_v[P_DIRECT]));
    if (fd[P_SSH] >= 0)
        bench_result("streams", "ssh_L",
                     "mib=%d rtt_n=%d rounds=%d up_mbps=%.1f down_mbps=%.1f rtt_p50_us=%.0f "
                     "rtt_p99_us=%.0f up_ratio=%.3f down_ratio=%.3f added_p50_us=%.0f",
                     mb, nrtt, rounds, MED(up_v[P_SSH]), MED(down_v[P_SSH]), MED(p50_v[P_SSH]),
                     MED(p99_v[P_SSH]), MED(sup_d), MED(sdown_d), MED(sadd50_d));
    double gup = MED(up_v[P_GHOST]), gdown = MED(down_v[P_GHOST]);
    double worst = gup < gdown ? gup : gdown, a50 = MED(add50_d);
    char vs_ssh[160] = "";
    if (fd[P_SSH] >= 0)
        snprintf(vs_ssh, sizeof vs_ssh,
                 " up_ssh_ratio=%.3f down_ssh_ratio=%.3f ssh_added_p50_us=%.0f", MED(rup_s),
                 MED(rdown_s), MED(add50_s));
    bench_result("streams", "ghostport",
                 "mib=%d rtt_n=%d rounds=%d up_mbps=%.1f down_mbps=%.1f rtt_p50_us=%.0f "
                 "rtt_p99_us=%.0f up_ratio=%.3f down_ratio=%.3f added_p50_us=%.0f "
                 "added_p99_us=%.0f%s",
                 mb, nrtt, rounds, gup, gdown, MED(p50_v[P_GHOST]), MED(p99_v[P_GHOST]), MED(rup_d),
                 MED(rdown_d), a50, MED(add99_d), vs_ssh);
    if (fd[P_ALT] >= 0)
        bench_result("streams", "ghostport_alt",
                     "mib=%d rtt_n=%d rounds=%d up_mbps=%.1f down_mbps=%.1f rtt_p50_us=%.0f "
                     "rtt_p99_us=%.0f alt_up_ratio=%.3f alt_down_ratio=%.3f alt_added_p50_us=%.0f",
                     mb, nrtt, rounds, MED(up_v[P_ALT]), MED(down_v[P_ALT]), MED(p50_v[P_ALT]),
                     MED(p99_v[P_ALT]), MED(alt_up), MED(alt_down), MED(alt_p50));
    char cpu[512];
    int cn = 0;
    for (int i = 0; i < NCPU; i++)
        cn += snprintf(cpu + cn, sizeof cpu - (size_t)cn, "%sup_%s_us_per_mb=%.0f", i ? " " : "",
                       cpu_name[i], MED(cpu_up_v[i]));
    for (int i = 0; i < NCPU; i++)
        cn += snprintf(cpu + cn, sizeof cpu - (size_t)cn, " down_%s_us_per_mb=%.0f", cpu_name[i],
                       MED(cpu_down_v[i]));
    if (fd[P_GHOST] >= 0)
        bench_result("streams", "ghostport_cpu", "%s", cpu);
    bench_result("streams", "ghostport_mbps", "min_mbps=%.1f goal=min_mbps>=100 goal_met=%s", worst,
                 worst >= 100 ? "yes" : "no");
    bench_result("streams", "ghostport_rtt",
                 "added_p50_us=%.0f goal=added_p50_us<=1000 goal_met=%s", a50,
                 a50 <= 1000 ? "yes" : "no");
    if (fd[P_GHOST] >= 0)
        keys_left(rounds);
    for (int k = 0; k < NPATHS; k++)
        if (fd[k] >= 0)
            close(fd[k]);

    /* Idle streams: Redis memory per open stream, with Redis's default stream-node-max-bytes
     * (4096: a stream's first node is allocated that big, whatever it holds) and with 256. */
    if (nidle > 0) {
        redisContext *c = redisConnect("127.0.0.1", h_redis_port());
        if (!c || c->err)
            die("redis: %s", c ? c->errstr : "out of memory");
        idle_case(c, fport, nidle, "idle_streams", "");
        if (!quick) {
            freeReplyObject(redisCommand(c, "CONFIG SET stream-node-max-bytes 256"));
            idle_case(c, fport, nidle, "idle_streams_node256", " stream_node_max_bytes=256");
            freeReplyObject(redisCommand(c, "CONFIG SET stream-node-max-bytes 4096"));
        }
        redisFree(c);
    }
    h_fini();
    free(g_pattern);
    return 0;
}
