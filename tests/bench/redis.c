/* redis.c — benchmark of the Redis plane on loopback (issue 5, part 1; tests/bench/README.md).
 * Closed-loop producers XADD small requests (64 in flight, then 1) and read their replies
 * from one reply stream per producer connection; they are answered, round after round and
 * pair by pair, by
 *   redis_only  a minimal consumer process (this program, `redis consumer PORT STREAM`)
 *               issuing the bridge's commands straight from Redis: the ceiling,
 *   ghostport   ghostport-bridge + ghostport-house + httpd_tool (100-byte answers),
 *   http        nobody: the same closed loop over HTTP/1.1 keep-alive to httpd_tool.
 * Reports requests/s, latency percentiles, CPU per request of every process (utime+stime
 * deltas from /proc) and the daemons' peak RSS, with the ratios against the baselines.
 * Test-only I/O: one libuv loop drives the hiredis async producers or the HTTP clients. */
#include "../../bridge/store/uvredis.h"
#include "../harness/harness.h"
#include "bench.h"
#include "bench_world.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define SUITE "redis"
#define HOUSE "bench"
#define HOUSE_ALT "bench-alt"
#define BASE_STREAM "bench:{base}:req"
#define GROUP "gp"
#define RING 4096      /* per producer connection: > requests in flight on it */
#define RESP_BYTES 100 /* what the upstream answers, and the consumer */
#define DRAIN_MS 10000 /* after a run: wait this long at most for requests in flight */
#define REPLY_TTL_MS "300000"

/* ghostport_alt: a second bridge + house from BENCH_REDIS_ALT_BIN_DIR (a patched build, say),
 * alternated with the others pair by pair; only when that variable is set. */
enum { C_REDIS, C_GP, C_HTTP, C_ALT, NCASES };
static const char *const CASE_NAME[NCASES] = {"redis_only", "ghostport", "http", "ghostport_alt"};
#define IS_GP(k) ((k) == C_GP || (k) == C_ALT)
static const int CONCS[] = {64, 1};
#define NCONC 2
#define MAX_ROUNDS 9

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define die(...) h_fatal("bench redis", 1, __VA_ARGS__)

/* ---- the Redis-only consumer (a process of its own) ----------------------------------- */

static const redisReply *fv_get(const redisReply *fv, const char *name) {
    if (!fv || fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2)
        if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, name) == 0)
            return fv->element[i + 1]->type == REDIS_REPLY_STRING ? fv->element[i + 1] : NULL;
    return NULL;
}

/* The entries of a one-stream XREAD/XREADGROUP reply ([[stream, [entry, ...]]]), or NULL. */
static const redisReply *xread_entries(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                   r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2
               ? r->element[0]->element[1]
               : NULL;
}

/* An entry's [field, value, ...] when it is [id, [...]], else NULL (skipped). */
static const redisReply *entry_fv(const redisReply *e) {
    return e->type == REDIS_REPLY_ARRAY && e->elements >= 2 ? e->element[1] : NULL;
}

static void append_read(redisContext *c, const char *stream) {
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP,     "c",    "COUNT", "100",
                          "BLOCK",      "1000",  "STREAMS", stream, ">"};
    redisAppendCommandArgv(c, 11, argv, NULL);
}

/* What the bridge does per request, with plain commands and no tunnel: read a batch through
 * the consumer group; per entry XADD the reply (the headers the bridge writes for
 * httpd_tool's answer), PEXPIRE it, XACK + XDEL the entry. Everything of a batch goes out in
 * one write together with the next XREADGROUP. */
static int consumer_main(int port, const char *stream) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        fprintf(stderr, "consumer: connect: %s\n", c ? c->errstr : "oom");
        return 1;
    }
    redisReply *r = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", stream, GROUP);
    if (!r || (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "BUSYGROUP"))) {
        fprintf(stderr, "consumer: XGROUP: %s\n", r ? r->str : c->errstr);
        return 1;
    }
    freeReplyObject(r);
    char body[RESP_BYTES];
    memset(body, 'x', sizeof body);
    const char *hdr = "{\"content-type\":\"application/octet-stream\",\"content-length\":\"100\"}";
    printf("consumer ready stream=%s\n", stream);
    fflush(stdout);
    append_read(c, stream);
    for (;;) {
        void *vr = NULL;
        if (redisGetReply(c, &vr) != REDIS_OK) {
            fprintf(stderr, "consumer: %s\n", c->errstr);
            return 1;
        }
        r = vr;
        size_t ncmd = 0;
        const redisReply *es = xread_entries(r);
        for (size_t i = 0; es && i < es->elements; i++) {
            const redisReply *e = es->element[i], *fv = entry_fv(e);
            if (!fv)
                continue;
            const redisReply *id = fv_get(fv, "id"), *rk = fv_get(fv, "reply");
            const char *eid = e->element[0]->str;
            if (id && rk && rk->len) {
                const char *a[] = {"XADD", rk->str, "MAXLEN", "~",   "1000",    "*",
                                   "id",   id->str, "status", "200", "headers", hdr,
                                   "body", body,    "final",  "1"};
                size_t l[16];
                for (int k = 0; k < 16; k++) /* body is binary, not a C string */
                    l[k] = k == 13 ? sizeof body : strlen(a[k]);
                redisAppendCommandArgv(c, 16, a, l);
                const char *p[] = {"PEXPIRE", rk->str, REPLY_TTL_MS};
                redisAppendCommandArgv(c, 3, p, NULL);
                ncmd += 2;
            }
            const char *ack[] = {"XACK", stream, GROUP, eid};
            redisAppendCommandArgv(c, 4, ack, NULL);
            const char *del[] = {"XDEL", stream, eid};
            redisAppendCommandArgv(c, 3, del, NULL);
            ncmd += 2;
        }
        freeReplyObject(r);
        append_read(c, stream);
        for (size_t i = 0; i < ncmd; i++) {
            if (redisGetReply(c, &vr) != REDIS_OK) {
                fprintf(stderr, "consumer: %s\n", c->errstr);
                return 1;
            }
            freeReplyObject(vr);
        }
    }
}

/* ---- the load: closed-loop producers and HTTP clients ---------------------------------- */

typedef struct run run;

/* Redis's INFO commandstats: calls and µs per command. */
#define MAX_CMDS 48
typedef struct cmdstats {
    int n;
    char name[MAX_CMDS][32];
    long long calls[MAX_CMDS], usec[MAX_CMDS];
} cmdstats;

static void cmdstats_get(cmdstats *cs) {
    cs->n = 0;
    redisReply *r = h_cmd("INFO commandstats");
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) {
        freeReplyObject(r);
        return;
    }
    /* cmdstat_xadd:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0 */
    for (char *save, *l = strtok_r(r->str, "\r\n", &save); l && cs->n < MAX_CMDS;
         l = strtok_r(NULL, "\r\n", &save)) {
        long long calls, usec;
        char name[32];
        if (sscanf(l, "cmdstat_%31[^:]:calls=%lld,usec=%lld", name, &calls, &usec) == 3) {
            snprintf(cs->name[cs->n], sizeof cs->name[0], "%s", name);
            cs->calls[cs->n] = calls;
            cs->usec[cs->n] = usec;
            cs->n++;
        }
    }
    freeReplyObject(r);
}

/* Commands (and Redis's own µs in them) per request between a and b; with verbose, one line
 * per command on stderr. */
static double cmdstats_per_req(const cmdstats *a, const cmdstats *b, double nreq,
                               const char *label) {
    long long calls = 0;
    for (int i = 0; i < b->n; i++) {
        long long c0 = 0, u0 = 0;
        for (int j = 0; j < a->n; j++)
            if (strcmp(a->name[j], b->name[i]) == 0)
                c0 = a->calls[j], u0 = a->usec[j];
        if (strcmp(b->name[i], "info") == 0 || b->calls[i] == c0)
            continue;
        calls += b->calls[i] - c0;
        if (label && nreq > 0 && (double)(b->calls[i] - c0) / nreq >= 0.001)
            fprintf(stderr, "bench redis: %s %-12s calls/req=%.3f usec/req=%.2f\n", label,
                    b->name[i], (double)(b->calls[i] - c0) / nreq,
                    (double)(b->usec[i] - u0) / nreq);
    }
    return nreq > 0 ? (double)calls / nreq : 0;
}

typedef struct slot {
    uint64_t seq, t; /* t: send time (ns), 0 when answered */
} slot;

typedef struct producer {
    run *run;
    int k;
    redisAsyncContext *w, *r; /* XADDs; XREAD BLOCK on the reply stream */
    char reply_key[64], last[48];
    uint64_t seq;
    int inflight;
    slot ring[RING];
} producer;

typedef struct hclient {
    run *run;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    char buf[8192];
    size_t len;
    uint64_t t;
    int busy, open;
} hclient;

struct run {
    uv_loop_t *loop;
    int kase, conc, nprod;
    const char *stream;
    int http_port, redis_port;
    char tag[32];
    uint64_t t_measure, t_end, t_deadline; /* ns */
    int phase;                             /* 0 warm-up, 1 measuring, 2 draining, 3 closing */
    double *lat;                           /* µs, completions inside the measured window */
    size_t nlat, cap;
    long errors, total; /* total: every answer, warm-up and drain included */
    int inflight;
    uv_timer_t timer;
    producer *p;
    hclient *h;
    char http_req[256];
    size_t http_req_len;
    /* CPU snapshots at the window's edges */
    long long cpu0[8], cpu1[8];
    cmdstats cs0, cs1; /* Redis's INFO commandstats at the same edges */
    struct rusage self0, self1;
};

static void record(run *rn, uint64_t t_sent) {
    uint64_t t = now_ns();
    rn->total++;
    if (rn->phase != 1 || t < rn->t_measure || t >= rn->t_end)
        return;
    if (rn->nlat == rn->cap) {
        rn->cap = rn->cap ? rn->cap * 2 : 65536;
        rn->lat = realloc(rn->lat, rn->cap * sizeof *rn->lat);
        if (!rn->lat)
            die("out of memory");
    }
    rn->lat[rn->nlat++] = (double)(t - t_sent) / 1000.0;
}

static void producer_send(producer *p) {
    run *rn = p->run;
    uint64_t seq = p->seq++;
    slot *s = &p->ring[seq % RING];
    if (s->t)
        die("more than %d requests in flight on one producer connection", RING);
    char fid[64];
    snprintf(fid, sizeof fid, "%s.%d.%" PRIu64, rn->tag, p->k, seq);
    const char *argv[] = {"XADD",       rn->stream, "MAXLEN", "~",         "10000", "*",
                          "id",         fid,        "method", "GET",       "path",  "/bench",
                          "timeout_ms", "10000",    "reply",  p->reply_key};
    s->seq = seq;
    s->t = now_ns();
    p->inflight++;
    rn->inflight++;
    redisAsyncCommandArgv(p->w, NULL, NULL, 16, argv, NULL);
}

static void producer_read(producer *p);

static void on_replies(redisAsyncContext *ac, void *vr, void *ud) {
    producer *p = ud;
    run *rn = p->run;
    redisReply *r = vr;
    (void)ac;
    if (!r || rn->phase == 3)
        return;
    if (r->type == REDIS_REPLY_ERROR)
        die("XREAD: %s", r->str);
    const redisReply *es = xread_entries(r);
    for (size_t i = 0; es && i < es->elements; i++) {
        const redisReply *e = es->element[i], *fv = entry_fv(e);
        if (!fv)
            continue;
        snprintf(p->last, sizeof p->last, "%s", e->element[0]->str);
        const redisReply *id = fv_get(fv, "id"), *fin = fv_get(fv, "final"),
                         *st = fv_get(fv, "status");
        const char *dot = id ? strrchr(id->str, '.') : NULL;
        if (!dot || !fin || strcmp(fin->str, "1") != 0)
            continue;
        uint64_t seq = strtoull(dot + 1, NULL, 10);
        slot *s = &p->ring[seq % RING];
        if (s->seq != seq || !s->t)
            continue; /* a duplicate */
        if (!st || strcmp(st->str, "200") != 0)
            rn->errors++;
        record(rn, s->t);
        s->t = 0;
        p->inflight--;
        rn->inflight--;
        if (rn->phase < 2)
            producer_send(p);
    }
    producer_read(p);
}

static void producer_read(producer *p) {
    const char *argv[] = {"XREAD", "BLOCK", "1000", "STREAMS", p->reply_key, p->last};
    redisAsyncCommandArgv(p->r, on_replies, p, 6, argv, NULL);
}

static redisAsyncContext *aconnect(run *rn) {
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", rn->redis_port);
    if (!ac || ac->err)
        die("redis connect: %s", ac ? ac->errstr : "oom");
    if (br_uvr_attach(ac, rn->loop) != REDIS_OK)
        die("redis attach failed");
    return ac;
}

static void hclient_send(hclient *h);

static void on_http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    hclient *h = s->data;
    run *rn = h->run;
    (void)b;
    if (n < 0) {
        if (rn->phase < 3)
            die("http: connection lost: %s", uv_strerror((int)n));
        return;
    }
    h->len += (size_t)n;
    for (;;) {
        char *eoh = h->len >= 4 ? memmem(h->buf, h->len, "\r\n\r\n", 4) : NULL;
        if (!eoh)
            return;
        size_t hl = (size_t)(eoh + 4 - h->buf);
        char *cl = memmem(h->buf, hl, "content-length:", 15);
        size_t clen = cl ? strtoul(cl + 15, NULL, 10) : 0;
        if (h->len < hl + clen)
            return;
        if (strncmp(h->buf, "HTTP/1.1 200", 12) != 0)
            rn->errors++;
        memmove(h->buf, h->buf + hl + clen, h->len - hl - clen);
        h->len -= hl + clen;
        record(rn, h->t);
        h->busy = 0;
        rn->inflight--;
        if (rn->phase < 2)
            hclient_send(h);
    }
}

static void on_http_alloc(uv_handle_t *hd, size_t want, uv_buf_t *out) {
    hclient *h = hd->data;
    (void)want;
    *out = uv_buf_init(h->buf + h->len, (unsigned)(sizeof h->buf - h->len));
}

static void on_http_written(uv_write_t *w, int status) {
    (void)w;
    if (status < 0)
        die("http write: %s", uv_strerror(status));
}

static void hclient_send(hclient *h) {
    run *rn = h->run;
    uv_buf_t b = uv_buf_init(rn->http_req, (unsigned)rn->http_req_len);
    h->t = now_ns();
    h->busy = 1;
    rn->inflight++;
    if (uv_write(&h->wreq, (uv_stream_t *)&h->tcp, &b, 1, on_http_written) != 0)
        die("http write failed");
}

static void on_http_connected(uv_connect_t *c, int status) {
    hclient *h = c->data;
    if (status < 0)
        die("http connect: %s", uv_strerror(status));
    uv_tcp_nodelay(&h->tcp, 1);
    uv_read_start((uv_stream_t *)&h->tcp, on_http_alloc, on_http_read);
    hclient_send(h);
}

/* redis, bridge, house, upstream, consumer; then the alternative bridge and house */
static pid_t g_pids[8];
#define NPIDS_ALL 7
static const char *const PID_NAME[8] = {"redis", "bridge", "house", "upstream", "consumer"};
#define NPIDS 5

static void snap(long long *cpu, struct rusage *self, cmdstats *cs) {
    if (cs)
        cmdstats_get(cs);
    for (int i = 0; i < NPIDS_ALL; i++)
        cpu[i] = g_pids[i] > 0 ? bench_cpu_us(g_pids[i]) : -1;
    getrusage(RUSAGE_SELF, self);
}

static void close_all(run *rn) {
    rn->phase = 3;
    for (int i = 0; i < rn->nprod; i++) {
        redisAsyncFree(rn->p[i].w);
        redisAsyncFree(rn->p[i].r);
    }
    for (int i = 0; rn->h && i < rn->conc; i++)
        if (rn->h[i].open)
            uv_close((uv_handle_t *)&rn->h[i].tcp, NULL);
    uv_close((uv_handle_t *)&rn->timer, NULL);
}

static void on_tick(uv_timer_t *t) {
    run *rn = t->data;
    uint64_t now = now_ns();
    if (rn->phase == 0 && now >= rn->t_measure) {
        snap(rn->cpu0, &rn->self0, rn->kase != C_HTTP ? &rn->cs0 : NULL);
        rn->t_measure = now;
        rn->phase = 1;
    }
    if (rn->phase == 1 && now >= rn->t_end) {
        snap(rn->cpu1, &rn->self1, rn->kase != C_HTTP ? &rn->cs1 : NULL);
        rn->t_end = now;
        rn->phase = 2;
        rn->t_deadline = now + (uint64_t)DRAIN_MS * 1000000ull;
    }
    if (rn->phase == 2 && (rn->inflight == 0 || now >= rn->t_deadline)) {
        if (rn->inflight)
            fprintf(stderr, "bench redis: %d requests still unanswered %d ms after the run\n",
                    rn->inflight, DRAIN_MS);
        close_all(rn);
    }
}

typedef struct result {
    double rps, p50, p99, p999;
    double redis_calls; /* Redis commands per request (all clients) */
    double cpu[NPIDS];  /* µs per request; -1 unknown */
    double self_cpu;    /* the load generator (this process) */
    long hwm_bridge, hwm_house;
    long n, errors, total;
} result;

static const char *g_tag_base;
static int g_want_case[NCASES], g_want_conc[NCONC];
static int g_run_no;

static int cmp_d(const void *a, const void *b) {
    return bench_cmp_double(a, b);
}

/* One closed-loop run of case kase with conc requests in flight: warm_ms, then measure_ms. */
static result run_case(int kase, int conc, int redis_port, int http_port, int warm_ms,
                       int measure_ms) {
    run rn;
    memset(&rn, 0, sizeof rn);
    rn.loop = uv_default_loop();
    rn.kase = kase;
    rn.conc = conc;
    rn.redis_port = redis_port;
    rn.http_port = http_port;
    rn.stream = kase == C_GP    ? "gp:{" HOUSE "}:req"
                : kase == C_ALT ? "gp:{" HOUSE_ALT "}:req"
                                : BASE_STREAM;
    int bi = kase == C_ALT ? 5 : 1, hi = kase == C_ALT ? 6 : 2; /* its bridge and house */
    snprintf(rn.tag, sizeof rn.tag, "%s%d", g_tag_base, ++g_run_no);
    if (bench_reset_hwm(g_pids[bi]) != 0 || bench_reset_hwm(g_pids[hi]) != 0)
        fprintf(stderr, "bench redis: cannot reset VmHWM: peaks cover the processes' lives\n");
    uint64_t t0 = now_ns();
    rn.t_measure = t0 + (uint64_t)warm_ms * 1000000ull;
    rn.t_end = rn.t_measure + (uint64_t)measure_ms * 1000000ull;
    uv_timer_init(rn.loop, &rn.timer);
    rn.timer.data = &rn;
    uv_timer_start(&rn.timer, on_tick, 1, 1);

    if (kase == C_HTTP) {
        rn.http_req_len = (size_t)snprintf(rn.http_req, sizeof rn.http_req,
                                           "GET /bench HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                           "Accept: */*\r\n\r\n",
                                           http_port);
        rn.h = calloc((size_t)conc, sizeof *rn.h);
        if (!rn.h)
            die("out of memory");
        struct sockaddr_in sa;
        uv_ip4_addr("127.0.0.1", http_port, &sa);
        for (int i = 0; i < conc; i++) {
            hclient *h = &rn.h[i];
            h->run = &rn;
            uv_tcp_init(rn.loop, &h->tcp);
            h->tcp.data = h;
            h->creq.data = h;
            h->open = 1;
            if (uv_tcp_connect(&h->creq, &h->tcp, (const struct sockaddr *)&sa,
                               on_http_connected) != 0)
                die("http connect failed");
        }
    } else {
        rn.nprod = conc >= 4 ? 4 : 1;
        rn.p = calloc((size_t)rn.nprod, sizeof *rn.p);
        if (!rn.p)
            die("out of memory");
        for (int i = 0; i < rn.nprod; i++) {
            producer *p = &rn.p[i];
            p->run = &rn;
            p->k = i;
            snprintf(p->reply_key, sizeof p->reply_key, "gp:rep:bench:%s:%d", rn.tag, i);
            snprintf(p->last, sizeof p->last, "0-0");
            p->w = aconnect(&rn);
            p->r = aconnect(&rn);
            producer_read(p);
        }
        for (int j = 0; j < conc; j++)
            producer_send(&rn.p[j % rn.nprod]);
    }
    uv_run(rn.loop, UV_RUN_DEFAULT);

    result res;
    memset(&res, 0, sizeof res);
    double secs = (double)(rn.t_end - rn.t_measure) / 1e9;
    res.n = (long)rn.nlat;
    res.errors = rn.errors;
    res.total = rn.total;
    if (kase != C_HTTP) {
        char label[48];
        snprintf(label, sizeof label, "%s_c%d", CASE_NAME[kase], conc);
        const char *verbose = getenv("BENCH_REDIS_VERBOSE");
        res.redis_calls =
            cmdstats_per_req(&rn.cs0, &rn.cs1, (double)rn.nlat,
                             verbose && *verbose && strcmp(verbose, "0") != 0 ? label : NULL);
    }
    res.rps = (double)rn.nlat / secs;
    if (rn.nlat) /* qsort(NULL, 0) is undefined */
        qsort(rn.lat, rn.nlat, sizeof *rn.lat, cmp_d);
    res.p50 = bench_pct(rn.lat, rn.nlat, 50);
    res.p99 = bench_pct(rn.lat, rn.nlat, 99);
    res.p999 = bench_pct(rn.lat, rn.nlat, 99.9);
    for (int i = 0; i < NPIDS; i++) {
        int j = i == 1 ? bi : i == 2 ? hi : i; /* the case's own bridge and house */
        res.cpu[i] = rn.cpu0[j] >= 0 && rn.cpu1[j] >= 0 && rn.nlat
                         ? (double)(rn.cpu1[j] - rn.cpu0[j]) / (double)rn.nlat
                         : -1;
    }
    double s0 = (double)rn.self0.ru_utime.tv_sec * 1e6 + (double)rn.self0.ru_utime.tv_usec +
                (double)rn.self0.ru_stime.tv_sec * 1e6 + (double)rn.self0.ru_stime.tv_usec;
    double s1 = (double)rn.self1.ru_utime.tv_sec * 1e6 + (double)rn.self1.ru_utime.tv_usec +
                (double)rn.self1.ru_stime.tv_sec * 1e6 + (double)rn.self1.ru_stime.tv_usec;
    res.self_cpu = rn.nlat ? (s1 - s0) / (double)rn.nlat : -1;
    res.hwm_bridge = bench_hwm_kb(g_pids[bi]);
    res.hwm_house = bench_hwm_kb(g_pids[hi]);
    free(rn.lat);
    free(rn.p);
    free(rn.h);
    if (kase != C_HTTP) {
        /* The reply streams of this run are done with. */
        for (int i = 0; i < rn.nprod; i++) {
            redisReply *r = h_cmd("DEL gp:rep:bench:%s:%d", rn.tag, i);
            freeReplyObject(r);
        }
    }
    if (!res.n)
        die("%s with %d in flight: no request answered in the measured window", CASE_NAME[kase],
            conc);
    return res;
}

/* ---- the driver ------------------------------------------------------------------------- */

static char g_self[PATH_MAX];

/* The CPU keys of case kase: each process that takes part in it. */
static int cpu_relevant(int i, int kase) {
    switch (i) {
    case 0: /* redis */
        return kase != C_HTTP;
    case 3: /* upstream */
        return kase != C_REDIS;
    case 4: /* consumer */
        return kase == C_REDIS;
    default: /* bridge, house */
        return IS_GP(kase);
    }
}

/* " redis_cpu_us=… … sum_cpu_us=…": µs of CPU per request of each process of the case and
 * of all of them with the load generator (rps ≈ cores / sum_cpu_us when the CPU is the
 * limit). */
static void cpu_keys(char *out, size_t cap, const result *r, int kase) {
    size_t n = 0;
    double sum = r->self_cpu;
    out[0] = '\0';
    if (kase != C_HTTP)
        n += (size_t)snprintf(out, cap, " redis_calls=%.1f", r->redis_calls);
    for (int i = 0; i < NPIDS; i++) {
        if (!cpu_relevant(i, kase) || r->cpu[i] < 0)
            continue;
        n += (size_t)snprintf(out + n, cap - n, " %s_cpu_us=%.1f", PID_NAME[i], r->cpu[i]);
        sum += r->cpu[i];
    }
    snprintf(out + n, cap - n, " load_cpu_us=%.1f sum_cpu_us=%.1f", r->self_cpu, sum);
}

static void print_case(const char *name, int round, const result *r, int kase) {
    char cpu[512], extra[128] = "";
    cpu_keys(cpu, sizeof cpu, r, kase);
    if (IS_GP(kase))
        snprintf(extra, sizeof extra, " bridge_hwm_kb=%ld house_hwm_kb=%ld", r->hwm_bridge,
                 r->hwm_house);
    bench_result(
        SUITE, name,
        "round=%d rps=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f%s%s n=%ld total=%ld errors=%ld",
        round, r->rps, r->p50, r->p99, r->p999, cpu, extra, r->n, r->total, r->errors);
}

/* The result line of case kase at conc in flight: medians over the rounds of every figure,
 * and for ghostport the ratios against the baselines, round by round, then their median. */
static void summarise(result (*res)[MAX_ROUNDS], int kase, int conc, int rounds) {
    double v[11][MAX_ROUNDS];
    long errors = 0;
    for (int r = 0; r < rounds; r++) {
        const result *x = &res[kase][r];
        v[0][r] = x->rps, v[1][r] = x->p50, v[2][r] = x->p99, v[3][r] = x->p999;
        for (int i = 0; i < NPIDS; i++)
            v[4 + i][r] = x->cpu[i];
        v[9][r] = x->self_cpu;
        v[10][r] = x->redis_calls;
        errors += x->errors;
    }
    result med;
    memset(&med, 0, sizeof med);
    med.rps = bench_median(v[0], (size_t)rounds);
    med.p50 = bench_median(v[1], (size_t)rounds);
    med.p99 = bench_median(v[2], (size_t)rounds);
    med.p999 = bench_median(v[3], (size_t)rounds);
    for (int i = 0; i < NPIDS; i++)
        med.cpu[i] = bench_median(v[4 + i], (size_t)rounds);
    med.self_cpu = bench_median(v[9], (size_t)rounds);
    med.redis_calls = bench_median(v[10], (size_t)rounds);
    char cpu[512], extra[512] = "";
    cpu_keys(cpu, sizeof cpu, &med, kase);
    if (IS_GP(kase)) {
        double rr[MAX_ROUNDS], hr[MAX_ROUNDS], a50[MAX_ROUNDS], a99[MAX_ROUNDS];
        double xr[MAX_ROUNDS], x50[MAX_ROUNDS], x99[MAX_ROUNDS];
        long hb = 0, hh = 0;
        for (int r = 0; r < rounds; r++) {
            const result *g = &res[kase][r], *b = &res[C_REDIS][r], *h = &res[C_HTTP][r],
                         *o = &res[C_GP][r];
            rr[r] = g->rps / b->rps;
            hr[r] = g->rps / h->rps;
            a50[r] = g->p50 - b->p50;
            a99[r] = g->p99 - b->p99;
            xr[r] = g->rps / o->rps;
            x50[r] = g->p50 - o->p50;
            x99[r] = g->p99 - o->p99;
            hb = g->hwm_bridge > hb ? g->hwm_bridge : hb;
            hh = g->hwm_house > hh ? g->hwm_house : hh;
        }
        size_t n =
            (size_t)snprintf(extra, sizeof extra, " bridge_hwm_kb=%ld house_hwm_kb=%ld", hb, hh);
        if (g_want_case[C_REDIS]) {
            double ratio = bench_median(rr, (size_t)rounds);
            double added = bench_median(a50, (size_t)rounds);
            n += (size_t)snprintf(extra + n, sizeof extra - n,
                                  " rps_ratio=%.2f added_p50_us=%.0f added_p99_us=%.0f", ratio,
                                  added, bench_median(a99, (size_t)rounds));
            if (kase != C_GP)
                ; /* the goals are the current build's */
            else if (conc == 64)
                n += (size_t)snprintf(extra + n, sizeof extra - n,
                                      " goal=rps_ratio>=0.50 goal_met=%s",
                                      ratio >= 0.5 ? "yes" : "no");
            else if (conc == 1)
                n += (size_t)snprintf(extra + n, sizeof extra - n,
                                      " goal=added_p50_us<=200 goal_met=%s",
                                      added <= 200 ? "yes" : "no");
        }
        if (g_want_case[C_HTTP])
            n += (size_t)snprintf(extra + n, sizeof extra - n, " http_rps_ratio=%.2f",
                                  bench_median(hr, (size_t)rounds));
        if (kase == C_ALT && g_want_case[C_GP])
            snprintf(extra + n, sizeof extra - n,
                     " alt_rps_ratio=%.2f alt_added_p50_us=%.0f alt_added_p99_us=%.0f",
                     bench_median(xr, (size_t)rounds), bench_median(x50, (size_t)rounds),
                     bench_median(x99, (size_t)rounds));
    }
    char name[32];
    snprintf(name, sizeof name, "%s_c%d", CASE_NAME[kase], conc);
    bench_result(SUITE, name,
                 "rps=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f%s%s rounds=%d errors=%ld", med.rps,
                 med.p50, med.p99, med.p999, cpu, extra, rounds, errors);
}

/* The ghostport_alt pair: ghostport-bridge and ghostport-house from dir, the bridge on a port
 * of its own, house HOUSE_ALT behind it with the same upstream, the same Redis. */
static void start_alt(const char *dir, const char *upurl, pid_t *bpid, pid_t *hpid) {
    char abs[2][PATH_MAX], url[64], secret[65];
    const char *names[2] = {"ghostport-bridge", "ghostport-house"};
    bench_alt_bins(dir, "BENCH_REDIS_ALT_BIN_DIR", names, 2, abs);
    int port;
    h_proc *b = bench_alt_bridge(abs[0], &port);
    h_register(HOUSE_ALT, secret);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    char *const hargv[] = {abs[1], "--id",       HOUSE_ALT,     "--secret",    secret, "--bridge",
                           url,    "--upstream", (char *)upurl, "--log-level", "warn", NULL};
    h_proc *h = h_spawn("house-alt", hargv);
    if (!h_wait_connected(HOUSE_ALT, 15000))
        die("the alternative house did not connect (see %s, %s)", h->log, b->log);
    *bpid = b->pid;
    *hpid = h->pid;
}

/* A comma-separated list in the environment variable env selects names[0..n) into want
 * (all of them when unset). */
static void select_from_env(const char *env, const char *const *names, int n, int *want) {
    const char *v = getenv(env);
    for (int i = 0; i < n; i++)
        want[i] = !v || !*v;
    if (!v || !*v)
        return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(t, names[i]) == 0)
                want[i] = found = 1;
        if (!found)
            die("%s: unknown value '%s'", env, t);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "consumer") == 0)
        return consumer_main(atoi(argv[2]), argv[3]);
    if (argc != 1) {
        fprintf(stderr, "usage: redis   (or: redis consumer PORT STREAM)\n");
        return 2;
    }
    ssize_t sl = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (sl <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    g_self[sl] = '\0';
    static char tagb[24];
    snprintf(tagb, sizeof tagb, "r%d-", (int)getpid());
    g_tag_base = tagb;

    int quick = bench_quick();
    int rounds = quick ? 1 : 5;
    int warm_ms = quick ? 300 : 500, measure_ms = quick ? 1000 : 3000;
    const char *r_env = getenv("BENCH_REDIS_ROUNDS"), *m_env = getenv("BENCH_REDIS_MS");
    if (r_env && atoi(r_env) > 0)
        rounds = atoi(r_env) > MAX_ROUNDS ? MAX_ROUNDS : atoi(r_env);
    if (m_env && atoi(m_env) > 0)
        measure_ms = atoi(m_env);

    static const char *const conc_names[NCONC] = {"64", "1"};
    select_from_env("BENCH_REDIS_CASES", CASE_NAME, NCASES, g_want_case);
    const char *alt_dir = getenv("BENCH_REDIS_ALT_BIN_DIR");
    if (!alt_dir || !*alt_dir)
        g_want_case[C_ALT] = 0;
    select_from_env("BENCH_REDIS_CONC", conc_names, NCONC, g_want_conc);

    h_init();
    h_proc *redis = h_redis_start(0);
    int rport = h_redis_port();
    char secret[65];
    h_register(HOUSE, secret);
    int hport;
    h_proc *up = bench_httpd(&hport, RESP_BYTES);
    const char *bx[] = {"--log-level", "warn", NULL};
    int bport;
    h_proc *bridge = h_bridge_start(0, &bport, bx, 1);
    char upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%d", hport);
    h_proc *house = bench_house(HOUSE, secret, bport, hport);
    if (!house)
        die("house did not connect (see its log and %s)", bridge->log);
    char ports[16];
    snprintf(ports, sizeof ports, "%d", rport);
    char *const cargv[] = {g_self, "consumer", ports, BASE_STREAM, NULL};
    h_proc *cons = h_spawn("consumer", cargv);
    if (!h_wait_log(cons, "consumer ready", 10000))
        die("the Redis-only consumer did not start (see %s)", cons->log);
    g_pids[0] = redis->pid;
    g_pids[1] = bridge->pid;
    g_pids[2] = house->pid;
    g_pids[3] = up->pid;
    g_pids[4] = cons->pid;
    if (g_want_case[C_ALT])
        start_alt(alt_dir, upurl, &g_pids[5], &g_pids[6]);

    /* Warm-up: connections, curl's pool, Redis's scripts, reply keys. */
    const char *w_env = getenv("BENCH_REDIS_WARMUP");
    for (int k = 0; k < NCASES && !(w_env && strcmp(w_env, "0") == 0); k++)
        if (g_want_case[k])
            run_case(k, 64, rport, hport, 100, 300);

    static result res[NCONC][NCASES][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        for (int ci = 0; ci < NCONC; ci++) {
            if (!g_want_conc[ci])
                continue;
            for (int j = 0; j < NCASES; j++) {
                /* ABC, then CBA: drift over a round weighs on every case alike. */
                int k = r % 2 == 0 ? j : NCASES - 1 - j;
                if (!g_want_case[k])
                    continue;
                res[ci][k][r] = run_case(k, CONCS[ci], rport, hport, warm_ms, measure_ms);
                char name[32];
                snprintf(name, sizeof name, "%s_c%d", CASE_NAME[k], CONCS[ci]);
                print_case(name, r + 1, &res[ci][k][r], k);
            }
        }
    }

    for (int ci = 0; ci < NCONC; ci++) {
        for (int k = 0; k < NCASES; k++)
            if (g_want_conc[ci] && g_want_case[k])
                summarise(res[ci], k, CONCS[ci], rounds);
    }
    h_fini();
    return 0;
}
