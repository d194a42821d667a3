/* scale.c — `make bench` part 2, Scale (issue 5; tests/bench/README.md): what holding many
 * houses costs one bridge, what spreading a load over many houses costs, and how long a
 * restarted bridge takes to get its houses back. Real redis-server and ghostport-bridge,
 * gp-loadhouses for the houses (N simulated houses in one process that answer at once), all
 * started with the test harness and stopped by PID. Test-only I/O.
 *
 * Cases (result lines "bench=scale case=<case> key=value ...", see the README for the keys):
 *  idle_<N>, idle_wss_<N>  N idle houses held by a fresh bridge over ws:// (the tunnel's own
 *        cost) or wss:// (with TLS, as deployed): bridge RSS before and with them, per house
 *        (RSS_N - RSS_0) / N, Redis used_memory per house, then the cost of holding them over
 *        a window: bridge and Redis CPU%, Redis commands/s.
 *  bridge_1000, bridge_wss_1000  the bridge's RSS at 1000 houses against the goal.
 *  observe_<N>  with N idle ws:// houses held: `ghostport top --json` (one sample), the
 *        dashboard's GET /api/overview and GET /metrics, medians of 3, in ms; baseline: the
 *        floor, every house's two hashes in one pipeline (top_vs_floor, api_vs_floor).
 *  tput_1house (baseline), tput_100houses  closed-loop producers (one thread, pipelined
 *        XADDs, 64 in flight, replies on one stream) through one bridge holding 100 houses:
 *        every request to one house, then round-robin over the 100; rounds alternate the
 *        order; rps_ratio is 100 houses / 1 house, round by round, then the median.
 *  reconnect_kill9, reconnect_drain  1000 houses on a bridge; kill -9 it (or SIGTERM and wait
 *        until it has drained and exited) and start a new one on the same port: ms from the
 *        restart until gp-loadhouses has all houses live again and until Redis shows all of
 *        them held by the new bridge; baseline: the same houses' first connect (all dialing at
 *        once) in the same round.
 *
 * Environment (besides the runner's BUILD, QUICK, BENCH_RESULTS, GP_IT_DIR): SCALE_ROUNDS
 * (rounds of the throughput and reconnect cases; default 5, QUICK 1), SCALE_WSS_10000=1 (also
 * 10,000 idle wss:// houses: a minute or more). Exit status 0 when it ran, whatever the
 * numbers; 1 when a case could not run. */
#include "../harness/harness.h"
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SUITE "scale"
#define INFLIGHT 64
#define TPUT_HOUSES 100
#define RECONNECT_HOUSES 1000
#define MAX_ROUNDS 15
#define FD_MARGIN 256 /* descriptors beyond one per house, per process */
#define REPLY_KEY "gp:rep:bench-scale"
#define PER_HOUSE_GOAL 10240 /* bytes of bridge RSS per idle house (issue 5) */
#define BRIDGE_1000_GOAL_MB 20
#define ADMIN_TOKEN "bench-scale-admin-token"

static int g_quick;
static int g_failed;                                     /* a case could not run */
static char g_cert[PATH_MAX + 32], g_key[PATH_MAX + 32]; /* empty: no wss cases */

static void msleep(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Nearest-rank percentile p of v[0..n) (sorts v); 0 when empty. */
static double pct(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return bench_pct(v, n, p);
}

static double cpu_s(pid_t pid) {
    return (double)bench_cpu_us(pid) / 1e6;
}

/* The bench cannot go on (its own Redis connection failed): stop everything, exit 1. */
static void die(void) __attribute__((noreturn));
static void die(void) {
    h_stop_all();
    exit(1);
}

static double max_of(const double *v, int n) {
    double m = n ? v[0] : 0;
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* --- Redis -------------------------------------------------------------------------------- */

/* A numeric field of INFO <section>, -1 if absent. */
static long long redis_info(const char *section, const char *field) {
    redisReply *r = h_cmd("INFO %s", section);
    long long v = -1;
    if (r->type == REDIS_REPLY_STRING) {
        size_t fl = strlen(field);
        for (const char *p = r->str; p && *p; p = strchr(p, '\n')) {
            if (*p == '\n')
                p++;
            if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
                v = strtoll(p + fl + 1, NULL, 10);
                break;
            }
        }
    }
    freeReplyObject(r);
    return v;
}

typedef struct cmdstat {
    char name[32];
    long long calls;
} cmdstat;

/* INFO commandstats as (name, calls) pairs; returns how many (at most cap). */
static int redis_cmdstats(cmdstat *out, int cap) {
    redisReply *r = h_cmd("INFO commandstats");
    int n = 0;
    if (r->type == REDIS_REPLY_STRING) {
        for (const char *p = strstr(r->str, "cmdstat_"); p && n < cap;
             p = strstr(p + 1, "cmdstat_")) {
            const char *colon = strchr(p, ':'), *calls = strstr(p, "calls=");
            if (!colon || !calls)
                break;
            size_t nl = (size_t)(colon - p - 8);
            if (nl >= sizeof out[n].name)
                nl = sizeof out[n].name - 1;
            memcpy(out[n].name, p + 8, nl);
            out[n].name[nl] = '\0';
            out[n].calls = strtoll(calls + 6, NULL, 10);
            n++;
        }
    }
    freeReplyObject(r);
    return n;
}

/* "name:rate,..." for the `top` commands called most between a and b, their call counts
 * divided by div (seconds, requests) with `decimals` digits (INFO itself left out: ours). */
static void top_cmds(char *out, size_t cap, const cmdstat *a, int na, const cmdstat *b, int nb,
                     double div, int top, int decimals) {
    cmdstat d[128];
    int nd = 0;
    for (int i = 0; i < nb && nd < 128; i++) {
        if (strcmp(b[i].name, "info") == 0)
            continue;
        long long before = 0;
        for (int j = 0; j < na; j++)
            if (strcmp(a[j].name, b[i].name) == 0)
                before = a[j].calls;
        if (b[i].calls > before) {
            d[nd] = b[i];
            d[nd++].calls = b[i].calls - before;
        }
    }
    out[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < top && nd; k++) {
        int best = 0;
        for (int i = 1; i < nd; i++)
            if (d[i].calls > d[best].calls)
                best = i;
        int w = snprintf(out + used, cap - used, "%s%s:%.*f", k ? "," : "", d[best].name, decimals,
                         (double)d[best].calls / div);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
        d[best] = d[--nd];
    }
    if (!used)
        snprintf(out, cap, "none");
}

/* MEMORY USAGE of a key in bytes (-1: no such key). */
static long long key_bytes(const char *key) {
    redisReply *r = h_cmd("MEMORY USAGE %s SAMPLES 0", key);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* How many of <prefix>1..<prefix>n have a live state naming bridge `bid`: one script, so
 * polling it costs Redis one call, not n (no cluster here, so undeclared keys are fine). */
static long held_by(const char *prefix, long n, const char *bid) {
    static const char lua[] =
        "local c=0 for i=1,tonumber(ARGV[2]) do "
        "if redis.call('HGET','gp:{'..ARGV[1]..i..'}:state','bridge')==ARGV[3] then c=c+1 end "
        "end return c";
    redisReply *r = h_cmd("EVAL %s 0 %s %ld %s", lua, prefix, n, bid);
    long v = r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* --- processes ---------------------------------------------------------------------------- */

/* The harness's bridge (ws:// allowed, debug log) at info level with our id; tls: also wss://
 * with the self-signed certificate (the houses then dial wss://). */
static h_proc *bridge_start(int port, int *out_port, const char *bid, int tls, int wait) {
    const char *extra[] = {"--log-level",
                           "info",
                           "--bridge-id",
                           bid,
                           "--admin-listen",
                           "0",
                           "--admin-token",
                           ADMIN_TOKEN,
                           NULL,
                           NULL,
                           NULL,
                           NULL,
                           NULL};
    if (tls) {
        extra[8] = "--tls-cert";
        extra[9] = g_cert;
        extra[10] = "--tls-key";
        extra[11] = g_key;
    }
    return h_bridge_start(port, out_port, extra, wait);
}

static redisContext *connect_redis(void);

/* The admin port the bridge logged, or 0. */
static int admin_port(const h_proc *br) {
    if (!h_wait_log(br, "transport=admin port=", 5000))
        return 0;
    char *log = h_read_file(br->log, NULL);
    const char *q = log ? strstr(log, "transport=admin port=") : NULL;
    int port = q ? atoi(q + strlen("transport=admin port=")) : 0;
    free(log);
    return port;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The floor under any view of the deployment: every registered house's two hashes (house
 * and live state) in one pipeline over one connection, the least a reader must fetch. ms. */
static double floor_ms(redisContext *c, long n) {
    uint64_t t0 = now_us();
    redisReply *m = redisCommand(c, "SMEMBERS gp:houses");
    if (!m || m->type != REDIS_REPLY_ARRAY || (long)m->elements < n) {
        if (m)
            freeReplyObject(m);
        return -1;
    }
    for (size_t i = 0; i < m->elements; i++) {
        redisAppendCommand(c, "HGETALL gp:{%s}:house", m->element[i]->str);
        redisAppendCommand(c, "HGETALL gp:{%s}:state", m->element[i]->str);
    }
    for (size_t i = 0; i < 2 * m->elements; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK) {
            freeReplyObject(m);
            return -1;
        }
        freeReplyObject(r);
    }
    freeReplyObject(m);
    return (double)(now_us() - t0) / 1000.0;
}

/* What watching a deployment of n held houses costs: `ghostport top --json` (one sample), the
 * dashboard's GET /api/overview and a Prometheus scrape, each the median of 3, against the
 * floor above (median of 3, same moment). */
static void observe_case(const char *name, h_proc *br, long n) {
    int aport = admin_port(br);
    redisContext *c = connect_redis();
    if (!aport || !c) {
        bench_result(SUITE, name, "houses=%ld error=no_admin_port_or_redis", n);
        g_failed = 1;
        if (c)
            redisFree(c);
        return;
    }
    double fl[3], top[3], api[3], api_cpu[3], shared[3], met[3];
    size_t api_bytes = 0, top_bytes = 0;
    int ok = 1;
    for (int i = 0; i < 3 && ok; i++) {
        fl[i] = floor_ms(c, n);
        char *out = NULL, *err = NULL;
        size_t olen = 0;
        uint64_t t0 = now_us();
        int rc = h_cli(&out, &olen, &err,
                       (const char *const[]){"top", "--json", "--interval", "0", NULL});
        top[i] = (double)(now_us() - t0) / 1000.0;
        top_bytes = olen;
        free(out), free(err);
        char *body = NULL;
        /* A build of its own: past the second within which the bridge shares the last one
         * (ADMIN.md); then a call right after it, which gets the shared one. */
        msleep(1100);
        double cpu0 = cpu_s(br->pid);
        t0 = now_us();
        int st = h_http(aport, "GET", "/api/overview", "Authorization: Bearer " ADMIN_TOKEN "\r\n",
                        NULL, 0, &body, NULL);
        api[i] = (double)(now_us() - t0) / 1000.0;
        api_cpu[i] = (cpu_s(br->pid) - cpu0) * 1000.0;
        api_bytes = body ? strlen(body) : 0;
        free(body);
        body = NULL;
        t0 = now_us();
        int st2 = h_http(aport, "GET", "/api/overview", "Authorization: Bearer " ADMIN_TOKEN "\r\n",
                         NULL, 0, &body, NULL);
        shared[i] = (double)(now_us() - t0) / 1000.0;
        free(body);
        body = NULL;
        t0 = now_us();
        int sm = h_http(aport, "GET", "/metrics", NULL, NULL, 0, &body, NULL);
        met[i] = (double)(now_us() - t0) / 1000.0;
        free(body);
        ok = rc == 0 && st == 200 && st2 == 200 && sm == 200 && fl[i] >= 0;
    }
    redisFree(c);
    if (!ok) {
        bench_result(SUITE, name, "houses=%ld error=a_view_failed", n);
        g_failed = 1;
        return;
    }
    qsort(fl, 3, sizeof *fl, cmp_d);
    qsort(top, 3, sizeof *top, cmp_d);
    qsort(api, 3, sizeof *api, cmp_d);
    qsort(met, 3, sizeof *met, cmp_d);
    qsort(api_cpu, 3, sizeof *api_cpu, cmp_d);
    qsort(shared, 3, sizeof *shared, cmp_d);
    bench_result(SUITE, name,
                 "houses=%ld top_ms=%.1f api_overview_ms=%.1f floor_ms=%.1f top_vs_floor=%.2f "
                 "api_vs_floor=%.2f api_bridge_cpu_ms=%.1f api_shared_ms=%.2f metrics_ms=%.2f "
                 "top_json_kb=%.0f "
                 "api_overview_kb=%.0f",
                 n, top[1], api[1], fl[1], top[1] / fl[1], api[1] / fl[1], api_cpu[1], shared[1],
                 met[1], (double)top_bytes / 1024, (double)api_bytes / 1024);
}

/* A self-signed ECDSA P-256 certificate for localhost (what a deployment would likely use; an
 * RSA-2048 handshake costs the bridge several times more). 0 if openssl failed. */
static int make_cert(void) {
    char cmd[3 * PATH_MAX + 256];
    snprintf(g_cert, sizeof g_cert, "%s/bridge.crt", h_dir());
    snprintf(g_key, sizeof g_key, "%s/bridge.key", h_dir());
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-keyout '%s' -out '%s' -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >'%s/openssl.log' 2>&1",
             g_key, g_cert, h_dir());
    if (system(cmd) != 0) {
        fprintf(stderr, "scale: openssl failed (see %s/openssl.log): no wss cases\n", h_dir());
        g_cert[0] = g_key[0] = '\0';
        return 0;
    }
    return 1;
}

/* gp-loadhouses and what its stdout said so far (read from its log as it grows). */
typedef struct lh_run {
    h_proc *p;
    long off;
    long n;
    int all_connected;
    long connect_ms; /* from event=all_connected */
    long live, reconnects, rss_kb, dial_failures;
    char part[4096];
    size_t plen;
} lh_run;

static long kv(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static void lh_line(lh_run *l, const char *line) {
    if (strncmp(line, "event=all_connected ", 20) == 0) {
        l->all_connected = 1;
        l->connect_ms = kv(line, "ms");
    } else if (strncmp(line, "event=stats ", 12) == 0) {
        l->live = kv(line, "live");
        l->reconnects = kv(line, "reconnects");
        l->rss_kb = kv(line, "rss_kb");
        l->dial_failures = kv(line, "dial_failures");
    }
}

/* Reads what the log gained since the last call and takes in its complete lines. */
static void lh_poll(lh_run *l) {
    int fd = open(l->p->log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (!l->off)
        l->off = l->p->log_off;
    char buf[16384];
    ssize_t r;
    while ((r = pread(fd, buf, sizeof buf, l->off)) > 0) {
        l->off += r;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                l->part[l->plen] = '\0';
                lh_line(l, l->part);
                l->plen = 0;
            } else if (l->plen < sizeof l->part - 1) {
                l->part[l->plen++] = buf[i];
            }
        }
    }
    close(fd);
}

static void lh_start(lh_run *l, const char *name, int bridge_port, int tls, long n, const char *idp,
                     long rate, int stats_ms) {
    char url[64], count[24], rates[24], stats[24];
    if (tls)
        snprintf(url, sizeof url, "wss://localhost:%d/", bridge_port);
    else
        snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bridge_port);
    snprintf(count, sizeof count, "%ld", n);
    snprintf(rates, sizeof rates, "%ld", rate);
    snprintf(stats, sizeof stats, "%d", stats_ms);
    char bin[PATH_MAX + 64];
    snprintf(bin, sizeof bin, "%s", h_bin("gp-loadhouses"));
    /* Frame ids are remembered 10 s, not 10 min: the throughput runs send ~10^5 of them. */
    const char *argv[24] = {bin,
                            "--bridge",
                            url,
                            "--redis",
                            h_redis_url(),
                            "--register",
                            "--count",
                            count,
                            "--id-prefix",
                            idp,
                            "--connect-rate",
                            rates,
                            "--stats-interval",
                            stats,
                            "--remember-ms",
                            "10000"};
    int k = 16;
    if (tls) {
        argv[k++] = "--ca-file";
        argv[k++] = g_cert;
    }
    argv[k] = NULL;
    memset(l, 0, sizeof *l);
    l->n = n;
    l->live = l->reconnects = l->rss_kb = -1;
    l->p = h_spawn(name, (char *const *)argv);
}

static int lh_all_connected(void *ud) {
    lh_run *l = ud;
    lh_poll(l);
    return l->all_connected || !h_alive(l->p);
}

static int stop_within(h_proc *p, int ms);

/* gp-loadhouses closes every connection cleanly on SIGTERM, which takes longer than the
 * harness's 5 s at 10,000 houses: give it 20 s, then SIGKILL. */
static void lh_stop(lh_run *l) {
    if (!stop_within(l->p, 20000)) {
        fprintf(stderr, "scale: %s still running 20 s after SIGTERM: SIGKILL\n", l->p->name);
        h_kill9(l->p);
    }
}

/* SIGTERM and wait up to ms for the exit (no SIGKILL: for a draining bridge). */
static int stop_within(h_proc *p, int ms) {
    if (!h_alive(p))
        return 1;
    kill(p->pid, SIGTERM);
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_alive(p)) {
        if (h_now_ms() >= end)
            return 0;
        msleep(2);
    }
    return 1;
}

static void flushall(void) {
    freeReplyObject(h_cmd("FLUSHALL"));
}

/* --- idle houses -------------------------------------------------------------------------- */

/* n idle houses on a fresh bridge (Redis flushed): memory with and without them, then the
 * cost of holding them over window_ms. tls: wss:// instead of ws://. settle_ms: after the
 * last handshake, before the window (their Redis writes and subscriptions). */
static void idle_case(h_proc *redis, long n, int tls, int window_ms, int settle_ms) {
    char name[32], bid[48];
    snprintf(name, sizeof name, "idle_%s%ld", tls ? "wss_" : "", n);
    snprintf(bid, sizeof bid, "scale-%s", name);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        rl.rlim_max < (rlim_t)(n + FD_MARGIN)) {
        fprintf(stderr, "scale: %s skipped: hard fd limit %llu < %ld\n", name,
                (unsigned long long)rl.rlim_max, n + FD_MARGIN);
        bench_result(SUITE, name, "houses=%ld skipped=fd_hard_limit_%llu_below_%ld", n,
                     (unsigned long long)rl.rlim_max, n + FD_MARGIN);
        return;
    }
    if (tls && !g_cert[0]) {
        bench_result(SUITE, name, "houses=%ld skipped=no_certificate", n);
        return;
    }
    flushall();
    int port;
    h_proc *br = bridge_start(0, &port, bid, tls, 1);
    msleep(g_quick ? 200 : 500); /* a measurement window, not a synchronisation: it settles */
    long rss0 = bench_status_kb(br->pid, "VmRSS");
    long long mem0 = redis_info("memory", "used_memory");

    lh_run l;
    char lname[48];
    snprintf(lname, sizeof lname, "lh-%s", name);
    /* Up to 1000 houses dial at once, as after a restart. Beyond, ws:// dials faster than a
     * few thousand a second are no quicker (tests/load/README.md); wss:// handshakes cost
     * both sides ~1 ms of CPU each, and at 4000/s the backlog outgrew the 10 s handshake
     * timeout (a storm of retries that took 70 s): 500/s keeps up with room to spare. */
    long rate = n <= 1000 ? 100000 : tls ? 500 : 4000;
    double ccpu0 = cpu_s(br->pid);
    lh_start(&l, lname, port, tls, n, "lh-", rate, 250);
    int to = 30000 + (int)(n * (tls ? 6 : 2));
    if (!h_wait(lh_all_connected, &l, to) || !l.all_connected) {
        lh_poll(&l);
        fprintf(stderr, "scale: %s: only %ld of %ld houses connected within %d ms\n", name, l.live,
                n, to);
        bench_result(SUITE, name, "houses=%ld error=not_all_connected live=%ld", n, l.live);
        g_failed = 1;
        lh_stop(&l);
        h_stop(br);
        return;
    }
    double connect_cpu_us = (cpu_s(br->pid) - ccpu0) * 1e6 / (double)n;
    msleep(settle_ms);

    /* The cost of holding them: a window spanning ping intervals and lease renewals. */
    cmdstat c0[128], c1[128];
    int nc0 = redis_cmdstats(c0, 128);
    long long ops0 = redis_info("stats", "total_commands_processed");
    double bcpu0 = cpu_s(br->pid), rcpu0 = cpu_s(redis->pid);
    uint64_t t0 = now_us();
    msleep(window_ms);
    double secs = (double)(now_us() - t0) / 1e6;
    double bcpu1 = cpu_s(br->pid), rcpu1 = cpu_s(redis->pid);
    long long ops1 = redis_info("stats", "total_commands_processed");
    int nc1 = redis_cmdstats(c1, 128);
    char top[256];
    top_cmds(top, sizeof top, c0, nc0, c1, nc1, secs, 4, 0);

    long rss = bench_status_kb(br->pid, "VmRSS"), hwm = bench_hwm_kb(br->pid);
    long long mem = redis_info("memory", "used_memory");
    long long kb[4];
    static const char *const kinds[4] = {"house", "state", "req", "epoch"};
    for (int i = 0; i < 4; i++) {
        char k[64];
        snprintf(k, sizeof k, "gp:{lh-1}:%s", kinds[i]);
        kb[i] = key_bytes(k);
    }
    lh_poll(&l);
    /* Ours in the window: the INFO stats call that read ops0 (a command is counted after it
     * ran, so the one that read ops1 is not in ops1). Commands that scripts call count too. */
    double ops_s = (double)(ops1 - ops0 - 1) / secs;
    double per_house = (double)(rss - rss0) * 1024.0 / (double)n;
    /* Below 1000 houses the per-house figures are mostly page and allocator granularity. */
    char goal[96] = "";
    if (n >= 1000)
        snprintf(goal, sizeof goal, " goal=per_house_bytes<%d goal_met=%s", PER_HOUSE_GOAL,
                 per_house < PER_HOUSE_GOAL ? "yes" : "no");
    /* The summary line, then the details (round=1: the summary table leaves it out). */
    bench_result(SUITE, name,
                 "houses=%ld transport=%s connect_ms=%ld bridge_connect_cpu_us=%.0f "
                 "bridge_rss_kb=%ld bridge_rss0_kb=%ld per_house_bytes=%.0f%s bridge_hwm_kb=%ld "
                 "redis_per_house_bytes=%.0f bridge_cpu_pct=%.2f redis_cpu_pct=%.2f "
                 "redis_ops_per_s=%.0f",
                 n, tls ? "wss" : "ws", l.connect_ms, connect_cpu_us, rss, rss0, per_house, goal,
                 hwm, (double)(mem - mem0) / (double)n, 100.0 * (bcpu1 - bcpu0) / secs,
                 100.0 * (rcpu1 - rcpu0) / secs, ops_s);
    bench_result(SUITE, name,
                 "round=1 connect_rate=%ld redis_key_bytes=house:%lld,state:%lld,req:%lld,"
                 "epoch:%lld redis_ops_per_house_per_s=%.3f redis_top_per_s=%s window_s=%.1f "
                 "lh_rss_kb=%ld",
                 rate, kb[0], kb[1], kb[2], kb[3], ops_s / (double)n, top, secs, l.rss_kb);
    if (n >= 1000 && !tls) {
        char oname[32];
        snprintf(oname, sizeof oname, "observe_%ld", n);
        observe_case(oname, br, n);
    }
    if (n == 1000) {
        double mb = (double)rss * 1024.0 / 1e6;
        bench_result(SUITE, tls ? "bridge_wss_1000" : "bridge_1000",
                     "houses=1000 transport=%s bridge_rss_mb=%.1f goal=bridge_rss_mb<%d "
                     "goal_met=%s",
                     tls ? "wss" : "ws", mb, BRIDGE_1000_GOAL_MB,
                     mb < BRIDGE_1000_GOAL_MB ? "yes" : "no");
    }
    lh_stop(&l);
    h_stop(br);
}

/* --- throughput --------------------------------------------------------------------------- */

typedef struct drive_res {
    double rps, p50_ms, p99_ms;
    long done;   /* final replies inside the counted window */
    long total;  /* final replies in the whole run (warm-up and the last ones too) */
    long reads;  /* our XREAD calls */
    long errors; /* non-200 replies, XADD errors, requests never answered */
    long dups;   /* final replies for a request already answered (or not ours) */
} drive_res;

#define RING 4096 /* > INFLIGHT: a frame id's slot is free again long before it comes round */

typedef struct sent_slot {
    unsigned long seq; /* the frame id's number, "s<seq>" */
    uint64_t us;       /* when its XADD was queued; 0 once its final reply came */
} sent_slot;

static redisContext *connect_redis(void) {
    char err[512]; /* as the harness: AUTH and TLS per GP_TEST_REDIS */
    redisContext *c = h_redis_connect(h_redis_port(), 5000, err, sizeof err);
    if (!c) {
        fprintf(stderr, "scale: redis connect: %s\n", err);
        die();
    }
    return c;
}

static unsigned long g_seq;

/* Keeps `inflight` requests in flight round-robin over houses lh-1..lh-<nh> for warm_ms (not
 * counted) then dur_ms (counted), then lets the last ones finish. One thread: XADDs are
 * pipelined on w, replies read from one stream with XREAD BLOCK on r. */
static drive_res drive(redisContext *w, redisContext *r, int nh, int inflight, int warm_ms,
                       int dur_ms) {
    static sent_slot sent[RING];
    size_t cap = 1u << 20, nlat = 0;
    double *lat = malloc(cap * sizeof *lat);
    drive_res res = {0};
    char last[64] = "0-0";
    int open = 0;
    unsigned long next_house = 0;
    uint64_t start = now_us(), t_from = start + (uint64_t)warm_ms * 1000u,
             t_to = t_from + (uint64_t)dur_ms * 1000u, t_quit = t_to + 15000000u;
    for (;;) {
        uint64_t now = now_us();
        int sending = now < t_to;
        if (!sending && open == 0)
            break;
        if (now > t_quit) {
            fprintf(stderr, "scale: %d requests unanswered 15 s after the run\n", open);
            res.errors += open;
            break;
        }
        int queued = 0;
        while (sending && open < inflight) {
            char id[32], house[32];
            unsigned long seq = g_seq++;
            snprintf(id, sizeof id, "s%lu", seq);
            snprintf(house, sizeof house, "gp:{lh-%lu}:req", next_house++ % (unsigned long)nh + 1);
            sent[seq % RING] = (sent_slot){seq, now_us()};
            redisAppendCommand(w,
                               "XADD %s MAXLEN ~ 10000 * id %s method GET path /x "
                               "timeout_ms 10000 reply %s",
                               house, id, REPLY_KEY);
            open++;
            queued++;
        }
        for (int i = 0; i < queued; i++) {
            void *rep = NULL;
            if (redisGetReply(w, &rep) != REDIS_OK) {
                fprintf(stderr, "scale: XADD: %s\n", w->errstr);
                die();
            }
            if (((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "scale: XADD: %s\n", ((redisReply *)rep)->str);
                res.errors++;
                open--;
            }
            freeReplyObject(rep);
        }
        redisReply *x =
            redisCommand(r, "XREAD COUNT 1024 BLOCK 1000 STREAMS %s %s", REPLY_KEY, last);
        if (!x) {
            fprintf(stderr, "scale: XREAD: %s\n", r->errstr);
            die();
        }
        res.reads++;
        uint64_t t = now_us();
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 1 && x->element[0]->elements == 2) {
            redisReply *ents = x->element[0]->element[1];
            for (size_t i = 0; i < ents->elements; i++) {
                redisReply *e = ents->element[i], *fv = e->element[1];
                snprintf(last, sizeof last, "%s", e->element[0]->str);
                const char *fid = NULL, *fin = NULL, *st = NULL;
                for (size_t j = 0; j + 1 < fv->elements; j += 2) {
                    const char *f = fv->element[j]->str;
                    if (strcmp(f, "id") == 0)
                        fid = fv->element[j + 1]->str;
                    else if (strcmp(f, "final") == 0)
                        fin = fv->element[j + 1]->str;
                    else if (strcmp(f, "status") == 0)
                        st = fv->element[j + 1]->str;
                }
                if (!fin || strcmp(fin, "1") != 0 || !fid || fid[0] != 's')
                    continue;
                unsigned long seq = strtoul(fid + 1, NULL, 10);
                sent_slot *sl = &sent[seq % RING];
                if (sl->seq != seq || !sl->us) {
                    res.dups++; /* a second final reply, or one for a request not in flight */
                    continue;
                }
                uint64_t sent_us = sl->us;
                sl->us = 0;
                open--;
                res.total++;
                if (!st || strcmp(st, "200") != 0)
                    res.errors++;
                if (t >= t_from && t < t_to) {
                    res.done++;
                    if (nlat < cap)
                        lat[nlat++] = (double)(t - sent_us) / 1000.0;
                }
            }
        }
        freeReplyObject(x);
    }
    res.rps = (double)res.done / ((double)dur_ms / 1000.0);
    res.p99_ms = pct(lat, nlat, 99);
    res.p50_ms = pct(lat, nlat, 50);
    free(lat);
    freeReplyObject(h_cmd("DEL %s", REPLY_KEY));
    return res;
}

/* Per-request costs of one drive(): CPU of the bridge, Redis and the houses' process, and
 * the Redis commands the bridge and the houses caused (ours taken out). */
typedef struct tput_res {
    drive_res d;
    double bridge_us, redis_us, lh_us, calls;
    char top[256]; /* Redis commands per request, the producer's XADD and XREAD included */
} tput_res;

static tput_res tput_run(h_proc *redis, h_proc *br, h_proc *lh, redisContext *w, redisContext *r,
                         int nh, int dur_ms) {
    tput_res t;
    double b0 = cpu_s(br->pid), r0 = cpu_s(redis->pid), l0 = cpu_s(lh->pid);
    cmdstat c0[128], c1[128];
    int nc0 = redis_cmdstats(c0, 128);
    long long o0 = redis_info("stats", "total_commands_processed");
    t.d = drive(w, r, nh, INFLIGHT, 300, dur_ms);
    long long o1 = redis_info("stats", "total_commands_processed");
    int nc1 = redis_cmdstats(c1, 128);
    double n = t.d.total > 0 ? (double)t.d.total : 1;
    t.bridge_us = (cpu_s(br->pid) - b0) * 1e6 / n;
    t.redis_us = (cpu_s(redis->pid) - r0) * 1e6 / n;
    t.lh_us = (cpu_s(lh->pid) - l0) * 1e6 / n;
    /* Ours: one XADD per request, the XREADs, the DEL of the reply stream, the INFO for o0. */
    t.calls = (double)(o1 - o0 - t.d.total - t.d.reads - 2) / n;
    top_cmds(t.top, sizeof t.top, c0, nc0, c1, nc1, n, 6, 2);
    return t;
}

static void tput_case(h_proc *redis, int rounds, int dur_ms) {
    flushall();
    int port;
    h_proc *br = bridge_start(0, &port, "scale-tput", 0, 1);
    lh_run l;
    lh_start(&l, "lh-tput", port, 0, TPUT_HOUSES, "lh-", 100000, 1000);
    if (!h_wait(lh_all_connected, &l, 30000) || !l.all_connected) {
        fprintf(stderr, "scale: tput: the %d houses did not connect\n", TPUT_HOUSES);
        bench_result(SUITE, "tput_1house", "error=houses_not_connected");
        g_failed = 1;
        lh_stop(&l);
        h_stop(br);
        return;
    }
    redisContext *w = connect_redis(), *r = connect_redis();
    drive(w, r, TPUT_HOUSES, INFLIGHT, 0, g_quick ? 200 : 500); /* every house has had some */
    enum { RPS, P50, P99, BUS, RUS, LUS, CALLS, RATIO, CPU_RATIO, NM };
    double v[2][NM][MAX_ROUNDS];
    long errors[2] = {0, 0}, dups[2] = {0, 0};
    char top[2][256] = {"", ""};
    static const char *const names[2] = {"tput_1house", "tput_100houses"};
    for (int k = 0; k < rounds; k++) {
        for (int j = 0; j < 2; j++) {
            int spread = (j + k) % 2; /* AB BA AB ...: neither goes first every time */
            tput_res t = tput_run(redis, br, l.p, w, r, spread ? TPUT_HOUSES : 1, dur_ms);
            errors[spread] += t.d.errors;
            dups[spread] += t.d.dups;
            memcpy(top[spread], t.top, sizeof top[spread]);
            double row[NM] = {t.d.rps,    t.d.p50_ms * 1000, t.d.p99_ms * 1000, t.bridge_us,
                              t.redis_us, t.lh_us,           t.calls,           0,
                              0};
            for (int m = 0; m < NM; m++)
                v[spread][m][k] = row[m];
        }
        v[1][RATIO][k] = v[0][RPS][k] > 0 ? v[1][RPS][k] / v[0][RPS][k] : 0;
        v[1][CPU_RATIO][k] = v[0][BUS][k] > 0 ? v[1][BUS][k] / v[0][BUS][k] : 0;
        for (int s = 0; s < 2; s++) {
            char ratio[64] = "";
            if (s)
                snprintf(ratio, sizeof ratio, " rps_ratio=%.2f bridge_cpu_ratio=%.2f",
                         v[1][RATIO][k], v[1][CPU_RATIO][k]);
            bench_result(SUITE, names[s],
                         "round=%d rps=%.0f p50_us=%.0f p99_us=%.0f bridge_cpu_us=%.1f "
                         "redis_cpu_us=%.1f lh_cpu_us=%.1f redis_calls=%.2f%s redis_top_calls=%s",
                         k + 1, v[s][RPS][k], v[s][P50][k], v[s][P99][k], v[s][BUS][k],
                         v[s][RUS][k], v[s][LUS][k], v[s][CALLS][k], ratio, top[s]);
        }
    }
    for (int s = 0; s < 2; s++) {
        double med[NM];
        for (int m = 0; m < NM; m++)
            med[m] = bench_median(v[s][m], (size_t)rounds);
        char ratio[64] = "";
        if (s)
            snprintf(ratio, sizeof ratio, " rps_ratio=%.2f bridge_cpu_ratio=%.2f", med[RATIO],
                     med[CPU_RATIO]);
        bench_result(SUITE, names[s],
                     "houses=%d inflight=%d rps=%.0f p50_us=%.0f p99_us=%.0f bridge_cpu_us=%.1f "
                     "redis_cpu_us=%.1f lh_cpu_us=%.1f redis_calls=%.2f%s rounds=%d errors=%ld "
                     "dup_replies=%ld",
                     s ? TPUT_HOUSES : 1, INFLIGHT, med[RPS], med[P50], med[P99], med[BUS],
                     med[RUS], med[LUS], med[CALLS], ratio, rounds, errors[s], dups[s]);
    }
    redisFree(w);
    redisFree(r);
    lh_stop(&l);
    h_stop(br);
}

/* --- reconnect after a restart ------------------------------------------------------------ */

typedef struct rc_wait {
    lh_run *l;
    int port;
    long target_reconnects;
    const char *bid;
    uint64_t t_restart, listen_at, live_at, held_at, next_held_check;
} rc_wait;

static int rc_done(void *ud) {
    rc_wait *w = ud;
    uint64_t now = now_us();
    if (!w->listen_at && h_wait_port(w->port, 0)) /* one connect, refused at once if closed */
        w->listen_at = now;
    lh_poll(w->l);
    if (!w->live_at && w->l->live == w->l->n && w->l->reconnects >= w->target_reconnects)
        w->live_at = now;
    if (!w->held_at && now >= w->next_held_check) {
        w->next_held_check = now + 20000; /* one script call per 20 ms at most */
        if (held_by("rc-", w->l->n, w->bid) == w->l->n)
            w->held_at = now;
    }
    return w->live_at && w->held_at;
}

static int rc_held(void *ud) {
    rc_wait *w = ud;
    return held_by("rc-", w->l->n, w->bid) == w->l->n;
}

typedef struct rc_res {
    double listen_ms, live_ms, held_ms; /* from the new bridge's start */
    double stop_ms;                     /* from the signal to the old bridge's exit */
    double failed_dials;                /* per house, from the signal until all are back */
    double cold_ms; /* baseline: the same houses' first connect, all dialing at once */
} rc_res;

/* One round: 1000 houses on bridge A; A is killed (drain 0) or drained (drain 1), and B starts
 * on the same port once A is gone. Returns 0 if it could not measure. */
static int reconnect_round(int drain, int k, rc_res *out) {
    char bida[48], bidb[48], lname[32];
    snprintf(bida, sizeof bida, "scale-rc%d-%da", drain, k);
    snprintf(bidb, sizeof bidb, "scale-rc%d-%db", drain, k);
    snprintf(lname, sizeof lname, "lh-rc%d-%d", drain, k);
    flushall();
    int port;
    h_proc *a = bridge_start(0, &port, bida, 0, 1);
    lh_run l;
    /* Fresh houses every round: their backoff starts from 250 ms, as for houses that have
     * been up for a while (a connection up less than 60 s keeps its backoff step). The
     * dial pacer is raised out of the way (default 500/s). */
    lh_start(&l, lname, port, 0, RECONNECT_HOUSES, "rc-", 100000, 50);
    rc_wait w = {.l = &l, .port = port, .bid = bida};
    if (!h_wait(lh_all_connected, &l, 30000) || !l.all_connected || !h_wait(rc_held, &w, 10000)) {
        fprintf(stderr, "scale: reconnect round: houses did not all connect to the first bridge\n");
        lh_stop(&l);
        h_stop(a);
        return 0;
    }
    out->cold_ms = (double)l.connect_ms;
    msleep(300);
    lh_poll(&l);
    w.bid = bidb;
    w.target_reconnects = (l.reconnects > 0 ? l.reconnects : 0) + RECONNECT_HOUSES;
    long fails0 = l.dial_failures;
    uint64_t t_sig = now_us();
    if (drain) {
        if (!stop_within(a, 30000)) {
            fprintf(stderr, "scale: draining bridge still running 30 s after SIGTERM\n");
            h_kill9(a);
        }
    } else {
        h_kill9(a);
    }
    w.t_restart = now_us();
    out->stop_ms = (double)(w.t_restart - t_sig) / 1000.0;
    h_proc *b = bridge_start(port, NULL, bidb, 0, 0);
    int ok = h_wait(rc_done, &w, 60000);
    if (ok) {
        out->listen_ms = w.listen_at ? (double)(w.listen_at - w.t_restart) / 1000.0 : -1;
        out->live_ms = (double)(w.live_at - w.t_restart) / 1000.0;
        out->held_ms = (double)(w.held_at - w.t_restart) / 1000.0;
        lh_poll(&l);
        out->failed_dials = (double)(l.dial_failures - fails0) / RECONNECT_HOUSES;
    } else {
        lh_poll(&l);
        fprintf(stderr, "scale: after the restart only live=%ld held=%ld within 60 s\n", l.live,
                held_by("rc-", RECONNECT_HOUSES, bidb));
    }
    lh_stop(&l);
    h_stop(b);
    return ok;
}

static void reconnect_case(int drain, int rounds) {
    enum { LISTEN, LIVE, HELD, STOP, FAILS, COLD, RATIO, NM };
    double v[NM][MAX_ROUNDS];
    int m = 0;
    const char *name = drain ? "reconnect_drain" : "reconnect_kill9";
    for (int k = 0; k < rounds; k++) {
        rc_res r = {0};
        if (!reconnect_round(drain, k, &r))
            continue;
        double row[NM] = {r.listen_ms,
                          r.live_ms,
                          r.held_ms,
                          r.stop_ms,
                          r.failed_dials,
                          r.cold_ms,
                          r.cold_ms > 0 ? r.live_ms / r.cold_ms : 0};
        for (int i = 0; i < NM; i++)
            v[i][m] = row[i];
        bench_result(SUITE, name,
                     "round=%d live_ms=%.0f held_ms=%.0f stop_ms=%.0f listen_ms=%.0f "
                     "failed_dials_per_house=%.2f cold_connect_ms=%.0f live_cold_ratio=%.2f",
                     k + 1, r.live_ms, r.held_ms, r.stop_ms, r.listen_ms, r.failed_dials, r.cold_ms,
                     row[RATIO]);
        m++;
    }
    if (!m) {
        bench_result(SUITE, name, "houses=%d error=not_measured", RECONNECT_HOUSES);
        g_failed = 1;
        return;
    }
    double lmax = max_of(v[LIVE], m), hmax = max_of(v[HELD], m);
    double med[NM];
    for (int i = 0; i < NM; i++)
        med[i] = bench_median(v[i], (size_t)m);
    bench_result(SUITE, name,
                 "houses=%d live_ms=%.0f held_ms=%.0f live_max_ms=%.0f held_max_ms=%.0f "
                 "stop_ms=%.0f listen_ms=%.0f failed_dials_per_house=%.2f cold_connect_ms=%.0f "
                 "live_cold_ratio=%.2f rounds=%d",
                 RECONNECT_HOUSES, med[LIVE], med[HELD], lmax, hmax, med[STOP], med[LISTEN],
                 med[FAILS], med[COLD], med[RATIO], m);
}

/* --- main --------------------------------------------------------------------------------- */

int main(void) {
    g_quick = bench_quick();
    const char *rs = getenv("SCALE_ROUNDS");
    int rounds = rs && atoi(rs) > 0 ? atoi(rs) : g_quick ? 1 : 5;
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;

    h_init();
    h_proc *redis = h_redis_start(0);
    make_cert();
    uint64_t t0 = h_now_ms();

    /* ws:// idle houses (the tunnel's own cost), then wss:// (what a deployment pays: TLS). The
     * cost window spans one ping interval and one lease renewal (both every 5 s) at 1000, two
     * at 10000; QUICK's windows are too short for that (its cost figures only show it runs). */
    /* 10,000 wss:// houses take 30-80 s to connect here (a TLS handshake costs the bridge
     * ~1-3 ms of CPU, more as it holds more: lws 4.1 keeps its timeouts in a sorted list),
     * which does not fit the 3 minutes: SCALE_WSS_10000=1 adds them. */
    const char *wss_env = getenv("SCALE_WSS_10000");
    int wss_10000 = wss_env && *wss_env && strcmp(wss_env, "0") != 0;
    static const struct {
        long n;
        int tls, full, quick;
    } idle[] = {{1, 0, 1, 1},     {100, 0, 1, 1},  {1000, 0, 1, 1},
                {10000, 0, 1, 0}, {1000, 1, 1, 1}, {10000, 1, 2, 0}};
    for (size_t i = 0; i < sizeof idle / sizeof idle[0]; i++) {
        if (!(g_quick ? idle[i].quick : idle[i].full == 1 || (idle[i].full == 2 && wss_10000)))
            continue;
        int big = idle[i].n >= 1000;
        int window = g_quick ? (big ? 1000 : 300) : idle[i].n >= 10000 ? 10200 : big ? 5200 : 1000;
        uint64_t c0 = h_now_ms();
        idle_case(redis, idle[i].n, idle[i].tls, window, g_quick ? 300 : 1000);
        fprintf(stderr, "scale: idle %s%ld took %.1f s\n", idle[i].tls ? "wss " : "", idle[i].n,
                (double)(h_now_ms() - c0) / 1000.0);
    }
    uint64_t c0 = h_now_ms();
    tput_case(redis, rounds, g_quick ? 700 : 3000);
    fprintf(stderr, "scale: throughput took %.1f s\n", (double)(h_now_ms() - c0) / 1000.0);
    c0 = h_now_ms();
    reconnect_case(0, rounds);
    reconnect_case(1, rounds);
    fprintf(stderr, "scale: reconnects took %.1f s; all %.1f s\n",
            (double)(h_now_ms() - c0) / 1000.0, (double)(h_now_ms() - t0) / 1000.0);
    h_fini();
    return g_failed ? 1 : 0;
}
