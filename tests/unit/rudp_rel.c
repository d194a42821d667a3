/* Unit tests for the rudp:// reliability engine (proto/rudp_rel.c): two engines over the
 * simulated link of rudp_sim.h, on a virtual clock, seeded — deterministic, and seconds of
 * real time for minutes of simulated time. Timing assertions are on the virtual clock, so
 * they are exact results of the model, not flaky wall-clock measurements. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "rudp_sim.h"

/* ---- message contents: a header (lane, seq, len) and a pattern derived from it ---- */

static uint8_t pat(uint32_t lane, uint32_t seq, size_t i) {
    return (uint8_t)(lane * 131u + seq * 7u + i * 13u + (i >> 8));
}

static size_t make_msg(uint8_t *buf, uint32_t lane, uint32_t seq, size_t len) {
    cr_assert(len >= 12);
    uint32_t h[3] = {lane, seq, (uint32_t)len};
    memcpy(buf, h, sizeof h);
    for (size_t i = 12; i < len; i++)
        buf[i] = pat(lane, seq, i);
    return len;
}

/* 1 if msg is intact; *seq gets its sequence number. */
static int check_msg(const uint8_t *m, size_t len, uint32_t lane, uint32_t *seq) {
    uint32_t h[3];
    if (len < 12)
        return 0;
    memcpy(h, m, sizeof h);
    if (h[0] != lane || h[2] != len)
        return 0;
    for (size_t i = 12; i < len; i++)
        if (m[i] != pat(lane, h[1], i))
            return 0;
    *seq = h[1];
    return 1;
}

/* Both directions go dark from `from` to `to`. */
static void sim_blackout(sim *s, uint64_t from, uint64_t to) {
    for (int i = 0; i < 2; i++) {
        s->dir[i].c.black_from = from;
        s->dir[i].c.black_to = to;
    }
}

/* ---- bulk: many messages of mixed sizes on several lanes, both directions ---- */

#define BULK_LANES 8
#define BULK_MAX 2000

typedef struct bulk {
    int n;                   /* messages per direction */
    size_t len[2][BULK_MAX]; /* sizes to send, by direction */
    uint32_t lane[2][BULK_MAX];
    uint32_t seq[2][BULK_MAX];
    int next[2];                           /* next message to queue */
    uint32_t lane_next_seq[2][BULK_LANES]; /* sender side: next seq per lane */
    uint32_t expect[2][BULK_LANES];        /* receiver side: next seq per lane */
    int got[2], bad, disorder;
    uint64_t t_done;
    uint8_t *buf;
} bulk;

static bulk *g_bulk;

static void bulk_gen(sim *s, bulk *b, int n, size_t max_len) {
    memset(b, 0, sizeof *b);
    b->n = n;
    b->buf = malloc(max_len);
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < n; i++) {
            uint64_t r = sim_rand(s) % 100;
            size_t len = r < 60   ? 12 + sim_rand(s) % 1000
                         : r < 90 ? 1024 + sim_rand(s) % 64512
                                  : 65536 + sim_rand(s) % (max_len - 65536 + 1);
            if (len > max_len)
                len = max_len;
            uint32_t lane = (uint32_t)(sim_rand(s) % BULK_LANES);
            b->len[d][i] = len;
            b->lane[d][i] = lane;
            b->seq[d][i] = b->lane_next_seq[d][lane]++;
        }
    }
}

static uint64_t bulk_app(sim *s) {
    bulk *b = g_bulk;
    for (int d = 0; d < 2; d++) {
        while (b->next[d] < b->n) {
            int i = b->next[d];
            size_t len = make_msg(b->buf, b->lane[d][i], b->seq[d][i], b->len[d][i]);
            int rc = gp_rel_send(s->ep[d], b->lane[d][i], b->buf, len);
            if (rc == GP_ERR_BUFFER)
                break;
            cr_assert_eq(rc, 0, "send: %s", gp_strerror(rc));
            b->next[d]++;
        }
    }
    /* Retry when acks have freed room: every 10 ms while something is left. */
    return b->next[0] < b->n || b->next[1] < b->n ? s->now + 10 * SIM_MS : UINT64_MAX;
}

static void bulk_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    bulk *b = g_bulk;
    int from = 1 - ep;
    uint32_t seq;
    if (lane >= BULK_LANES || !check_msg(m, len, lane, &seq)) {
        b->bad++;
        return;
    }
    if (seq != b->expect[from][lane])
        b->disorder++;
    b->expect[from][lane] = seq + 1;
    if (++b->got[ep] == b->n && b->got[1 - ep] == b->n)
        b->t_done = s->now;
}

static int bulk_done(sim *s) {
    (void)s;
    return g_bulk->got[0] == g_bulk->n && g_bulk->got[1] == g_bulk->n;
}

/* n random messages each way (up to max_len bytes, on BULK_LANES lanes) sent on s until all
 * are delivered, at most 600 s: 1 when they were (g_bulk holds the counts). */
static int bulk_run(sim *s, int n, size_t max_len) {
    static bulk b;
    g_bulk = &b;
    bulk_gen(s, &b, n, max_len);
    s->app = bulk_app;
    s->on_msg = bulk_msg;
    return sim_run(s, s->now + 600 * SIM_SEC, bulk_done);
}

/* After bulk_run: no message corrupted, none out of order within its lane, no expiry in the
 * past without output. Frees the messages' buffer. */
static void bulk_check(sim *s) {
    cr_assert_eq(g_bulk->bad, 0, "corrupted messages");
    cr_assert_eq(g_bulk->disorder, 0, "out of order within a lane");
    cr_assert_eq(s->stalls, 0, "expiry in the past without output");
    free(g_bulk->buf);
}

static void run_bulk(double loss, uint64_t seed) {
    sim s;
    sim_link l = link_of(loss, 20000000, 400000);
    sim_on(&s, seed, 1, &l);
    uint64_t t0 = s.now;
    int ok = bulk_run(&s, 150, 256 * 1024);
    gp_rel_stats a, z;
    gp_rel_get_stats(s.ep[0], &a);
    gp_rel_get_stats(s.ep[1], &z);
    printf("bulk loss=%2.0f%%: 2x150 msgs (%d lanes, up to 256 KiB) in %.2f s; A: %llu pkts, "
           "%llu retransmits, %llu repairs; B repaired %llu\n",
           loss * 100, BULK_LANES, (double)(s.now - t0) / 1e9, (unsigned long long)a.pkts_sent,
           (unsigned long long)a.retransmits, (unsigned long long)a.fec_sent,
           (unsigned long long)z.fec_repaired);
    const bulk *b = g_bulk;
    cr_assert(ok, "loss %.0f%%: only %d/%d and %d/%d delivered", loss * 100, b->got[1], b->n,
              b->got[0], b->n);
    bulk_check(&s);
    cr_assert(!gp_rel_dead(s.ep[0]) && !gp_rel_dead(s.ep[1]));
    sim_free(&s);
}

Test(rudp_rel, delivers_everything_in_lane_order_at_0_loss) {
    run_bulk(0.0, 1);
}
Test(rudp_rel, delivers_everything_in_lane_order_at_10_loss) {
    run_bulk(0.10, 2);
}
Test(rudp_rel, delivers_everything_in_lane_order_at_20_loss) {
    run_bulk(0.20, 3);
}
Test(rudp_rel, delivers_everything_in_lane_order_at_30_loss) {
    run_bulk(0.30, 4);
}

/* ---- request/response exchanges ---- */

/* Endpoint ep sends message seq of lane, len bytes (built in buf): 0 a request, 1 its answer. */
static void send_msg(sim *s, int ep, uint32_t lane, uint32_t seq, uint8_t *buf, size_t len) {
    size_t n = make_msg(buf, lane, seq, len);
    cr_assert_eq(gp_rel_send(s->ep[ep], lane, buf, n), 0);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The num/den quantile of v[0..n) in ms (sorts v). */
static double pct_ms(uint64_t *v, size_t n, size_t num, size_t den) {
    qsort(v, n, sizeof v[0], cmp_u64);
    return (double)v[n * num / den] / 1e6;
}

/* What the one-at-a-time exchanges and the steady load share: n exchanges, each a req_len-byte
 * request from endpoint 0 answered by a resp_len-byte response from endpoint 1; how many were
 * sent, completed, and the malformed messages. */
typedef struct traffic {
    int n, sent, done, bad;
    size_t req_len, resp_len;
    uint8_t buf[65536];
} traffic;

static traffic *g_traffic; /* the run's */

static int traffic_done(sim *s) {
    (void)s;
    return g_traffic->done == g_traffic->n;
}

/* Runs t's n exchanges of req_len and resp_len bytes on s with app and on_msg, at most until
 * t_end: all of them complete, no message malformed, no expiry in the past without output. */
static void run_traffic(sim *s, traffic *t, int n, size_t req_len, size_t resp_len, sim_app_fn app,
                        sim_msg_fn on_msg, uint64_t t_end) {
    t->n = n;
    t->req_len = req_len;
    t->resp_len = resp_len;
    g_traffic = t;
    s->app = app;
    s->on_msg = on_msg;
    int ok = sim_run(s, t_end, traffic_done);
    cr_assert(ok, "only %d of %d exchanges completed", t->done, n);
    cr_assert_eq(t->bad, 0);
    cr_assert_eq(s->stalls, 0);
}

#define EX_MAX 1000

typedef struct exch {
    traffic t;
    uint64_t t_start, next_at;
    uint64_t lat[EX_MAX];
} exch;

static exch *g_ex;

static uint64_t ex_app(sim *s) {
    exch *x = g_ex;
    traffic *t = &x->t;
    if (t->sent == t->done && t->sent < t->n && s->now >= x->next_at) {
        send_msg(s, 0, (uint32_t)t->sent, 0, t->buf, t->req_len);
        x->t_start = s->now;
        t->sent++;
    }
    return t->sent == t->done && t->sent < t->n ? x->next_at : UINT64_MAX;
}

static void ex_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    exch *x = g_ex;
    uint32_t seq;
    if (!check_msg(m, len, lane, &seq)) {
        x->t.bad++;
        return;
    }
    if (ep == 1) { /* the house answers every request with a 16 KiB body */
        send_msg(s, 1, lane, 1, x->t.buf, x->t.resp_len);
        return;
    }
    x->lat[x->t.done++] = s->now - x->t_start;
    /* A short, varying think time: exchanges do not all start in phase with the pacer. */
    x->next_at = s->now + 20 * SIM_MS + sim_rand(s) % (50 * SIM_MS);
    s->app_next = x->next_at;
}

typedef struct ex_result {
    double p50_ms, p99_ms, max_ms;
    gp_rel_stats a, b;
} ex_result;

/* n exchanges "1-packet request, 16 KiB response" over a 10 Mbit/s, 200 ms RTT link. */
static ex_result run_exchanges(double loss, int fec, int n, uint64_t seed, uint64_t jitter) {
    sim s;
    sim_link l = link_of(loss, 10000000, 250000);
    sim_on(&s, seed, fec, &l);
    s.send_jitter_ns = jitter;
    static exch x;
    memset(&x, 0, sizeof x);
    x.next_at = s.now;
    g_ex = &x;
    run_traffic(&s, &x.t, n, 200, 16384, ex_app, ex_msg, s.now + 3600 * SIM_SEC);
    ex_result res;
    res.p50_ms = pct_ms(x.lat, (size_t)n, 1, 2);
    res.p99_ms = pct_ms(x.lat, (size_t)n, 99, 100);
    res.max_ms = (double)x.lat[n - 1] / 1e6; /* sorted */
    gp_rel_get_stats(s.ep[0], &res.a);
    gp_rel_get_stats(s.ep[1], &res.b);
    sim_free(&s);
    return res;
}

static void print_ex(const char *what, double loss, const ex_result *r) {
    printf("%s loss=%2.0f%%: p50 %.0f ms (%.2f RTT)  p99 %.0f ms (%.2f RTT)  max %.0f ms; "
           "house: %llu pkts, %llu retransmits, %llu repairs (%.1f%% of bytes); "
           "hub repaired %llu\n",
           what, loss * 100, r->p50_ms, r->p50_ms / (RTT / 1e6), r->p99_ms, r->p99_ms / (RTT / 1e6),
           r->max_ms, (unsigned long long)r->b.pkts_sent, (unsigned long long)r->b.retransmits,
           (unsigned long long)r->b.fec_sent,
           r->b.bytes_sent ? 100.0 * (double)r->b.fec_bytes / (double)r->b.bytes_sent : 0.0,
           (unsigned long long)r->a.fec_repaired);
}

Test(rudp_rel, exchange_tail_latency_stays_within_a_few_rtt) {
    static const double losses[] = {0, 0.10, 0.20, 0.30};
    for (size_t i = 0; i < 4; i++) {
        ex_result r = run_exchanges(losses[i], 1, 500, 100 + i, 0);
        print_ex("exchange", losses[i], &r);
        /* Generous bounds on a deterministic model: at 0% one round trip plus transfer
         * time; at 30% the "within a few RTTs". */
        if (losses[i] == 0)
            cr_assert_lt(r.p99_ms, 1.5 * (RTT / 1e6));
        cr_assert_lt(r.p99_ms, 6 * (RTT / 1e6), "p99 %.0f ms at %.0f%% loss", r.p99_ms,
                     losses[i] * 100);
    }
}

/* ---- steady load: overlapping exchanges ----
 * The end-to-end case that built a standing backlog: 20 requests/s, each a 300-byte request
 * on a new lane answered by a 16 KiB response on the same lane, for 10 s, at 30% loss each
 * way and 200 ms RTT — many exchanges in flight at once, unlike the one-at-a-time exchanges
 * above. Latency is request sent -> whole response delivered. Set RUDP_TRACE=1 to print the
 * responder's congestion state every 250 ms. */

#define LOAD_MAX 1000

typedef struct load {
    traffic t;
    uint64_t period, t_next, t_trace, t_start;
    int trace;
    uint64_t t_req[LOAD_MAX], lat[LOAD_MAX], t_arr[LOAD_MAX];
    gp_rel_stats prev;
} load;
static load *g_load;

static void load_trace(sim *s) {
    load *L = g_load;
    gp_rel_stats b;
    gp_rel_get_stats(s->ep[1], &b);
    printf("  t=%5.2f cc=%d cwnd=%6llu infl=%6llu pace=%5.1f btlbw=%5.1f Mbit/s srtt=%3.0f "
           "min=%3.0f ms loss tx=%.2f det=%.2f | +pkts %4llu +lost %3llu +rtx %3llu +rep %3llu "
           "+probes %llu | done %d/%d\n",
           (double)(s->now - L->t_start) / 1e9, b.cc_state, (unsigned long long)b.cwnd_bytes,
           (unsigned long long)b.inflight, (double)b.pacing_bps / 1e6, (double)b.btlbw_bps / 1e6,
           (double)b.srtt_ns / 1e6, (double)b.min_rtt_ns / 1e6, b.loss_rate_tx, b.loss_rate_det,
           (unsigned long long)(b.pkts_sent - L->prev.pkts_sent),
           (unsigned long long)(b.pkts_lost - L->prev.pkts_lost),
           (unsigned long long)(b.retransmits - L->prev.retransmits),
           (unsigned long long)(b.fec_sent - L->prev.fec_sent),
           (unsigned long long)(b.probes - L->prev.probes), L->t.done, L->t.sent);
    L->prev = b;
}

static uint64_t load_app(sim *s) {
    load *L = g_load;
    traffic *t = &L->t;
    while (t->sent < t->n && s->now >= L->t_next) {
        uint32_t lane = (uint32_t)t->sent + 1;
        send_msg(s, 0, lane, 0, t->buf, t->req_len);
        L->t_req[t->sent++] = s->now;
        L->t_next += L->period;
    }
    uint64_t next = t->sent < t->n ? L->t_next : UINT64_MAX;
    if (L->trace) {
        if (s->now >= L->t_trace) {
            load_trace(s);
            L->t_trace += (s->now - L->t_start < 2 * SIM_SEC ? 50 : 250) * SIM_MS;
        }
        next = sim_min(next, L->t_trace);
    }
    return next;
}

static void load_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    load *L = g_load;
    uint32_t seq;
    if (lane == 0 || lane > (uint32_t)L->t.sent || !check_msg(m, len, lane, &seq) ||
        seq != (ep == 1 ? 0u : 1u)) {
        L->t.bad++;
        return;
    }
    if (ep == 1) {
        L->t_arr[lane - 1] = s->now - L->t_req[lane - 1];
        send_msg(s, 1, lane, 1, L->t.buf, L->t.resp_len);
        return;
    }
    L->lat[lane - 1] = s->now - L->t_req[lane - 1];
    L->t.done++;
}

/* The host: ideal (called back exactly at gp_rel_expiry), or busy — libuv-like 1 ms timers
 * rounded up, every wake-up 0-15 ms late, and a relay delivering on 1 ms ticks: what the
 * house and bridge processes see on a loaded machine. The field report's standing backlog
 * came from there: before the pacing fix the busy host gave p50 6.2 s, p99 8.1 s without a
 * bottleneck (p50 2.3 s, p99 4.2 s with wake-ups only 0-12 ms late — the report's figures),
 * p50 1.2 s, p99 6.4 s behind 10 Mbit/s. */
enum { HOST_IDEAL, HOST_BUSY };

#define LOAD_RUNS 3  /* seeds per case, pooled: percentiles of 600 exchanges, not 200 */
#define LOAD_N 200   /* 20/s for 10 s */
#define LOAD_WARM 20 /* exchanges started in the first second (slow start) */

typedef struct load_result {
    double p50_ms, p99_ms, max_ms;
    double steady_p99_ms;     /* exchanges started after the first second */
    double first_ms, last_ms; /* mean of the first / last tenth of the exchanges */
    double wire_per_useful;   /* responder's wire bytes (payload + 88) per response byte */
    double fec_share;         /* of the responder's payload bytes, repairs */
    uint64_t pkts, retransmits, repairs, probes, repaired;
} load_result;

static load_result run_load(uint64_t rate_bps, double loss, uint64_t seed, int host) {
    static uint64_t all[LOAD_RUNS * LOAD_N], steady[LOAD_RUNS * LOAD_N];
    size_t nall = 0, nsteady = 0, tenth = LOAD_N / 10;
    double sf = 0, sl = 0, wire = 0, useful = 0, fec = 0, payload = 0;
    load_result res;
    memset(&res, 0, sizeof res);
    for (int run = 0; run < LOAD_RUNS; run++) {
        sim s;
        gp_rel_config c = cfg_default(1);
        sim_init(&s, seed + (uint64_t)run * 1000, &c, &c);
        sim_link l = link_rtt(loss);
        l.rate_bps = rate_bps;
        l.queue_bytes = rate_bps ? 250000 : 0;
        if (host == HOST_BUSY) {
            l.gran_ns = SIM_MS;
            s.timer_gran_ns = SIM_MS;
            s.wake_late_ns = 15 * SIM_MS;
        }
        sim_link_both(&s, &l);
        static load L;
        memset(&L, 0, sizeof L);
        L.period = 50 * SIM_MS;
        L.t_start = L.t_next = L.t_trace = s.now;
        L.trace = getenv("RUDP_TRACE") != NULL && run == 0;
        g_load = &L;
        run_traffic(&s, &L.t, LOAD_N, 300, 16384, load_app, load_msg, s.now + 120 * SIM_SEC);
        if (L.trace) {
            printf("  request arrival/exchange (ms):");
            for (int i = 0; i < LOAD_N; i++)
                printf(" %.0f/%.0f", (double)L.t_arr[i] / 1e6, (double)L.lat[i] / 1e6);
            printf("\n");
        }
        for (int i = 0; i < L.t.n; i++) {
            all[nall++] = L.lat[i];
            if (i >= LOAD_WARM)
                steady[nsteady++] = L.lat[i];
        }
        for (size_t i = 0; i < tenth; i++) {
            sf += (double)L.lat[i] / 1e6;
            sl += (double)L.lat[(size_t)L.t.n - 1 - i] / 1e6;
        }
        gp_rel_stats a, b;
        gp_rel_get_stats(s.ep[0], &a);
        gp_rel_get_stats(s.ep[1], &b);
        wire += (double)(b.bytes_sent + b.pkts_sent * l.overhead);
        payload += (double)b.bytes_sent;
        useful += (double)L.t.n * (double)L.t.resp_len;
        fec += (double)b.fec_bytes;
        res.pkts += b.pkts_sent;
        res.retransmits += b.retransmits;
        res.repairs += b.fec_sent;
        res.probes += b.probes;
        res.repaired += a.fec_repaired;
        sim_free(&s);
    }
    res.first_ms = sf / (double)(tenth * LOAD_RUNS);
    res.last_ms = sl / (double)(tenth * LOAD_RUNS);
    res.p50_ms = pct_ms(all, nall, 1, 2);
    res.p99_ms = pct_ms(all, nall, 99, 100);
    res.max_ms = (double)all[nall - 1] / 1e6;
    res.steady_p99_ms = pct_ms(steady, nsteady, 99, 100);
    res.wire_per_useful = wire / useful;
    res.fec_share = fec / payload;
    return res;
}

static void print_load(const char *what, double loss, const load_result *r) {
    printf("%s loss=%2.0f%%: p50 %.0f ms  p99 %.0f ms (%.2f RTT)  max %.0f ms; after the first "
           "second p99 %.0f ms (%.2f RTT); first/last tenth %.0f/%.0f ms; house: %.2f wire B "
           "per useful B, FEC %.1f%% of bytes, %llu pkts, %llu retransmits, %llu repairs, %llu "
           "probes; hub repaired %llu\n",
           what, loss * 100, r->p50_ms, r->p99_ms, r->p99_ms / (RTT / 1e6), r->max_ms,
           r->steady_p99_ms, r->steady_p99_ms / (RTT / 1e6), r->first_ms, r->last_ms,
           r->wire_per_useful, r->fec_share * 100, (unsigned long long)r->pkts,
           (unsigned long long)r->retransmits, (unsigned long long)r->repairs,
           (unsigned long long)r->probes, (unsigned long long)r->repaired);
}

static void check_load(int host) {
    static const struct {
        const char *name;
        uint64_t rate;
        int host;
    } cases[] = {
        {"load 20/s, no bottleneck,            ideal host", 0, HOST_IDEAL},
        {"load 20/s, 10 Mbit/s + 250 KB queue, ideal host", 10000000, HOST_IDEAL},
        {"load 20/s, no bottleneck,            busy host ", 0, HOST_BUSY},
        {"load 20/s, 10 Mbit/s + 250 KB queue, busy host ", 10000000, HOST_BUSY},
    };
    double rtt_ms = RTT / 1e6;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].host != host)
            continue;
        load_result r = run_load(cases[i].rate, 0.30, 500 + i, cases[i].host);
        print_load(cases[i].name, 0.30, &r);
        /* No standing backlog: the last exchanges are as fast as a lone one (1.1 RTT). */
        cr_assert_lt(r.last_ms, 1.5 * rtt_ms, "%s: last tenth %.0f ms", cases[i].name, r.last_ms);
        /* Under load, exchanges take about what a lone one takes (1.1 RTT, ~2.2 with one
         * recovery round): p99 within 3 RTT, behind the 10 Mbit/s bottleneck and on the busy
         * host too, once the session is past its first second. (Before the fixes the ideal
         * host was already there, ~2.2 RTT; the busy host was at 32-40 RTT.) */
        cr_assert_lt(r.steady_p99_ms, 3 * rtt_ms, "%s: p99 %.0f ms after the first second",
                     cases[i].name, r.steady_p99_ms);
        /* The first second counted too: a cold session starts from a 32-packet window while
         * this load wants ~100 packets per round trip (four 16 KiB responses plus repairs),
         * and slow start needs two or three round trips to get there, so some of the first
         * ~15 exchanges take 3-5 RTT. Whole-run p99 here 2.9-3.5 RTT (2.6-4.0 over other
         * seeds); before the fixes 4.3 RTT on the ideal host, 32-40 on the busy one. */
        cr_assert_lt(r.p99_ms, 4 * rtt_ms, "%s: p99 %.0f ms", cases[i].name, r.p99_ms);
        cr_assert_lt(r.max_ms, 6 * rtt_ms, "%s: max %.0f ms", cases[i].name, r.max_ms);
        /* Proportionate redundancy: one repair per source at 30% loss (the old 1% tail
         * target everywhere: 2.31 wire bytes per useful byte here) is more than one round
         * needs; now 2.05-2.17. */
        cr_assert_lt(r.wire_per_useful, 2.25, "%s: %.2f wire bytes per useful byte", cases[i].name,
                     r.wire_per_useful);
    }
}

Test(rudp_rel, steady_load_at_30_loss_builds_no_backlog) {
    check_load(HOST_IDEAL);
}

Test(rudp_rel, steady_load_at_30_loss_on_a_busy_host_builds_no_backlog) {
    check_load(HOST_BUSY);
}

/* ---- FEC ---- */

Test(rudp_rel, fec_repairs_and_saves_retransmissions_at_10_and_20_loss) {
    static const double losses[] = {0.10, 0.20};
    for (size_t i = 0; i < 2; i++) {
        ex_result on = run_exchanges(losses[i], 1, 300, 200 + i, 0);
        ex_result off = run_exchanges(losses[i], 0, 300, 200 + i, 0);
        print_ex("fec=1", losses[i], &on);
        print_ex("fec=0", losses[i], &off);
        cr_assert_gt(on.a.fec_repaired, 0);
        cr_assert_eq(off.a.fec_repaired, 0);
        cr_assert_eq(off.b.fec_sent, 0);
        cr_assert_lt(on.b.retransmits, off.b.retransmits, "%llu vs %llu",
                     (unsigned long long)on.b.retransmits, (unsigned long long)off.b.retransmits);
        cr_assert_lt(on.p99_ms, off.p99_ms, "FEC should cut the tail");
    }
}

Test(rudp_rel, fec_costs_nothing_on_a_clean_link) {
    ex_result r = run_exchanges(0, 1, 200, 300, 0);
    double ovh =
        (double)(r.a.fec_bytes + r.b.fec_bytes) / (double)(r.a.bytes_sent + r.b.bytes_sent);
    printf("fec overhead at 0%% loss: %.2f%% of bytes\n", ovh * 100);
    cr_assert_lt(ovh, 0.05);
}

/* ---- goodput ---- */

typedef struct bulk1 {
    int n, got, bad;
    size_t len;
    uint8_t buf[65536];
} bulk1;
static bulk1 *g_b1;

static void b1_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)s;
    uint32_t seq;
    if (ep != 1 || !check_msg(m, len, lane, &seq) || seq != (uint32_t)g_b1->got)
        g_b1->bad++;
    g_b1->got++;
}
static int b1_done(sim *s) {
    (void)s;
    return g_b1->got == g_b1->n;
}

/* 1 MiB as 16 messages of 64 KiB (the tunnel's body chunk) on one lane, 10 Mbit/s
 * bottleneck with a 250 KB queue, 200 ms RTT: s set up and the messages sent, not run. */
static void bulk_start(sim *s, double loss, int fec, uint64_t seed) {
    sim_link l = link_of(loss, 10000000, 250000);
    sim_on(s, seed, fec, &l);
    static bulk1 b;
    memset(&b, 0, sizeof b);
    b.n = 16;
    g_b1 = &b;
    s->on_msg = b1_msg;
    for (int i = 0; i < b.n; i++)
        cr_assert_eq(gp_rel_send(s->ep[0], 7, b.buf, make_msg(b.buf, 7, (uint32_t)i, 65536)), 0);
}

/* bulk_start's transfer to the end. Returns goodput in Mbit/s. */
static double run_goodput(double loss, int fec, uint64_t seed, gp_rel_stats *out) {
    sim s;
    bulk_start(&s, loss, fec, seed);
    uint64_t t0 = s.now;
    cr_assert(sim_run(&s, t0 + 600 * SIM_SEC, b1_done));
    cr_assert_eq(g_b1->bad, 0);
    double secs = (double)(s.now - t0) / 1e9;
    gp_rel_get_stats(s.ep[0], out);
    sim_free(&s);
    return 8.0 * 16 * 65536 / secs / 1e6;
}

Test(rudp_rel, goodput_of_1mib_at_10mbit_200ms) {
    static const double losses[] = {0, 0.10, 0.30};
    for (size_t i = 0; i < 3; i++) {
        gp_rel_stats st, st0;
        double g = run_goodput(losses[i], 1, 400 + i, &st);
        double g0 = run_goodput(losses[i], 0, 400 + i, &st0);
        printf("goodput 1 MiB loss=%2.0f%%: %.2f Mbit/s (%.2f s); %llu pkts, %llu retransmits, "
               "%llu repairs, btlbw est %.1f Mbit/s; with fec=0: %.2f Mbit/s, %llu retransmits\n",
               losses[i] * 100, g, 8.0 * 16 * 65536 / g / 1e6, (unsigned long long)st.pkts_sent,
               (unsigned long long)st.retransmits, (unsigned long long)st.fec_sent,
               (double)st.btlbw_bps / 1e6, g0, (unsigned long long)st0.retransmits);
        /* Not a speed contest in a unit test, but the window must not collapse: even at
         * 30% loss the transfer keeps a good share of the 10 Mbit/s. */
        cr_assert_gt(g, losses[i] < 0.2 ? 3.0 : 1.5, "%.2f Mbit/s at %.0f%%", g, losses[i] * 100);
    }
}

/* After a transfer has measured the path, a quiet spell of small messages (app-limited
 * samples only, for many more rounds than the 10-round bandwidth window) must not drag the
 * estimate down to the trickle's rate: the next burst would be paced at that. */
static int trickle_i;
static uint64_t trickle_app(sim *s) {
    static uint8_t buf[1000];
    if (trickle_i >= 30)
        return UINT64_MAX;
    size_t len = make_msg(buf, 9, (uint32_t)trickle_i++, sizeof buf);
    cr_assert_eq(gp_rel_send(s->ep[0], 9, buf, len), 0);
    return s->now + 200 * SIM_MS;
}

Test(rudp_rel, bandwidth_estimate_survives_app_limited_rounds) {
    sim s;
    bulk_start(&s, 0.10, 1, 16);
    cr_assert(sim_run(&s, s.now + 60 * SIM_SEC, b1_done));
    gp_rel_stats before, after;
    gp_rel_get_stats(s.ep[0], &before);
    s.on_msg = NULL;
    trickle_i = 0;
    s.app = trickle_app;
    s.app_next = s.now;
    sim_run(&s, s.now + 7 * SIM_SEC, NULL); /* 30 small messages, 200 ms apart: 30 rounds */
    gp_rel_get_stats(s.ep[0], &after);
    printf("btlbw after 1 MiB: %.1f Mbit/s; after 6 s of 1 KB every 200 ms: %.1f Mbit/s\n",
           (double)before.btlbw_bps / 1e6, (double)after.btlbw_bps / 1e6);
    cr_assert_gt(before.btlbw_bps, 5000000);
    cr_assert_geq(after.btlbw_bps, before.btlbw_bps / 2);
    sim_free(&s);
}

/* ---- lane independence ---- */

static int drop_first_pn0(sim *s, int from, const uint8_t *p, size_t len) {
    (void)s;
    (void)len;
    /* Header: flags byte, then the packet number varint; pn 0 is one byte 0x00. */
    return from == 0 && p[1] == 0x00;
}

typedef struct lanes_t {
    uint64_t t_a, t_b;
} lanes_t;
static lanes_t g_lanes;
static void lanes_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)m;
    (void)len;
    if (ep != 1)
        return;
    if (lane == 1)
        g_lanes.t_a = s->now;
    if (lane == 2)
        g_lanes.t_b = s->now;
}
static int lanes_done(sim *s) {
    (void)s;
    return g_lanes.t_a && g_lanes.t_b;
}

/* Ep 0 sends message seq of lane, len bytes (at most 3000). */
static void lanes_send(sim *s, uint32_t lane, uint32_t seq, size_t len) {
    static uint8_t buf[3000];
    send_msg(s, 0, lane, seq, buf, len);
}

/* Two engines without FEC on a clean path whose first packet (pn 0) from ep 0 is lost; the
 * times lanes 1 and 2 deliver go to g_lanes. Lane 1's first message, 3000 bytes, goes first
 * (the older id) and loses that packet. The time it was sent. */
static uint64_t lanes_start(sim *s, uint64_t seed) {
    sim_plain(s, seed, 0, 0);
    s->drop = drop_first_pn0;
    s->on_msg = lanes_msg;
    memset(&g_lanes, 0, sizeof g_lanes);
    uint64_t t0 = s->now;
    lanes_send(s, 1, 0, 3000);
    return t0;
}

Test(rudp_rel, a_lost_packet_on_one_lane_does_not_delay_another) {
    sim s;
    uint64_t t0 = lanes_start(&s, 5);
    lanes_send(&s, 2, 0, 100);
    cr_assert(sim_run(&s, t0 + 10 * SIM_SEC, lanes_done));
    printf("lanes: lane 2 delivered after %.0f ms, lane 1 (lost a packet) after %.0f ms\n",
           (double)(g_lanes.t_b - t0) / 1e6, (double)(g_lanes.t_a - t0) / 1e6);
    cr_assert_lt(g_lanes.t_b - t0, RTT / 2 + 20 * SIM_MS, "lane 2 waited for lane 1");
    cr_assert_gt(g_lanes.t_a - t0, RTT, "lane 1 cannot be complete before a retransmission");
    sim_free(&s);
}

Test(rudp_rel, messages_of_one_lane_wait_for_a_lost_predecessor) {
    sim s;
    uint64_t t0 = lanes_start(&s, 6);
    /* Same lane this time: the small message must wait. */
    lanes_send(&s, 1, 1, 100);
    lanes_send(&s, 2, 0, 100);
    cr_assert(sim_run(&s, t0 + 10 * SIM_SEC, lanes_done));
    gp_rel_stats b;
    gp_rel_get_stats(s.ep[1], &b);
    cr_assert_eq(b.msgs_delivered, 3);
    sim_free(&s);
}

/* ---- reordering, duplication ---- */

Test(rudp_rel, survives_reordering_duplication_and_jitter) {
    sim s;
    sim_link l = link_of(0.05, 20000000, 400000);
    l.jitter_ns = 20 * SIM_MS;
    l.reorder = 0.10;
    l.reorder_ns = 40 * SIM_MS;
    l.dup = 0.10;
    sim_on(&s, 7, 1, &l);
    s.send_jitter_ns = 15 * SIM_MS;
    cr_assert(bulk_run(&s, 100, 128 * 1024));
    bulk_check(&s);
    gp_rel_stats st;
    gp_rel_get_stats(s.ep[1], &st);
    cr_assert_gt(st.duplicates, 0, "the link duplicated packets: they must be seen as such");
    cr_assert_eq(st.malformed, 0);
    sim_free(&s);
}

Test(rudp_rel, send_jitter_does_not_inflate_rtt) {
    ex_result r = run_exchanges(0, 1, 100, 8, 15 * SIM_MS);
    printf("with 0-15 ms send jitter: srtt %.1f ms, min_rtt %.1f ms (path 200 ms)\n",
           (double)r.a.srtt_ns / 1e6, (double)r.a.min_rtt_ns / 1e6);
    cr_assert_geq(r.a.min_rtt_ns, RTT);
    cr_assert_lt(r.a.srtt_ns, RTT + 8 * SIM_MS);
}

/* ---- blackouts, probes, dead peers ---- */

typedef struct txlog {
    uint64_t last[2], max_gap[2], from, to;
} txlog;
static txlog g_tx;

static void tx_gap(sim *s, int from, uint64_t t, const uint8_t *p, size_t len) {
    (void)s;
    (void)p;
    (void)len;
    if (t >= g_tx.from && t < g_tx.to && g_tx.last[from]) {
        uint64_t gap = t - g_tx.last[from];
        if (gap > g_tx.max_gap[from])
            g_tx.max_gap[from] = gap;
    }
    g_tx.last[from] = t;
}

Test(rudp_rel, ten_second_blackout_is_survived_with_capped_probe_backoff) {
    sim s;
    sim_link l = link_of(0.02, 5000000, 200000);
    sim_on(&s, 9, 1, &l);
    const uint64_t from = s.now + 1 * SIM_SEC, to = s.now + 11 * SIM_SEC;
    sim_blackout(&s, from, to);
    memset(&g_tx, 0, sizeof g_tx);
    g_tx.from = from;
    g_tx.to = to;
    s.on_tx = tx_gap;
    static bulk1 b;
    memset(&b, 0, sizeof b);
    b.n = 40; /* 2.5 MiB at 5 Mbit/s: ~4 s of transfer, cut by the blackout */
    g_b1 = &b;
    s.on_msg = b1_msg;
    for (int i = 0; i < b.n; i++)
        cr_assert_eq(gp_rel_send(s.ep[0], 7, b.buf, make_msg(b.buf, 7, (uint32_t)i, 65536)), 0);
    /* Mid-blackout (10 s of silence by its end) nobody is dead. */
    sim_run(&s, to, NULL);
    cr_assert(!gp_rel_dead(s.ep[0]) && !gp_rel_dead(s.ep[1]));
    cr_assert_lt(b.got, b.n, "the blackout should have cut the transfer");
    cr_assert(sim_run(&s, to + 60 * SIM_SEC, b1_done), "transfer did not resume");
    printf("blackout 10 s: transfer done %.2f s after it ended; longest gap between probes "
           "during it: %.2f s (hub), %.2f s (house)\n",
           (double)(s.now - to) / 1e9, (double)g_tx.max_gap[0] / 1e9,
           (double)g_tx.max_gap[1] / 1e9);
    cr_assert_eq(b.bad, 0);
    cr_assert(!gp_rel_dead(s.ep[0]) && !gp_rel_dead(s.ep[1]));
    /* Within the blackout the sender kept probing at most every 2 s (+ pacing slack). */
    cr_assert_leq(g_tx.max_gap[0], GP_REL_PTO_CAP_NS + 5 * SIM_MS);
    cr_assert_gt(g_tx.max_gap[0], 0);
    /* Resumed promptly: no backoff hangover. */
    cr_assert_lt(s.now - to, 10 * SIM_SEC);
    sim_free(&s);
}

Test(rudp_rel, forty_second_blackout_is_declared_dead_after_dead_after) {
    sim s;
    sim_plain(&s, 10, 1, 0);
    const uint64_t from = s.now + 1 * SIM_SEC;
    sim_blackout(&s, from, s.now + 41 * SIM_SEC);
    static uint8_t buf[100];
    cr_assert_eq(gp_rel_send(s.ep[0], 1, buf, make_msg(buf, 1, 0, 100)), 0);
    /* 29 s into the silence: probing, not dead. */
    sim_run(&s, from + 29 * SIM_SEC, NULL);
    cr_assert(!gp_rel_dead(s.ep[0]) && !gp_rel_dead(s.ep[1]));
    sim_run(&s, from + 31 * SIM_SEC, NULL);
    cr_assert(gp_rel_dead(s.ep[0]) && gp_rel_dead(s.ep[1]));
    static uint8_t out[2000];
    cr_assert_eq(gp_rel_output(s.ep[0], out, sizeof out, s.now, s.now), GP_ERR_STATE);
    cr_assert_eq(gp_rel_send(s.ep[0], 1, buf, 100), GP_ERR_STATE);
    cr_assert_eq(gp_rel_expiry(s.ep[0]), UINT64_MAX);
    sim_free(&s);
}

Test(rudp_rel, idle_engines_keep_the_nat_binding_alive) {
    for (int lossy = 0; lossy < 2; lossy++) {
        sim s;
        sim_plain(&s, 11 + (uint64_t)lossy, 1, lossy ? 0.30 : 0);
        memset(&g_tx, 0, sizeof g_tx);
        g_tx.from = 0;
        g_tx.to = UINT64_MAX;
        g_tx.last[0] = g_tx.last[1] = s.now;
        s.on_tx = tx_gap;
        uint64_t t0 = s.now;
        sim_run(&s, t0 + 600 * SIM_SEC, NULL);
        gp_rel_stats a;
        gp_rel_get_stats(s.ep[0], &a);
        printf("idle 600 s, loss %d%%: longest silence %.1f s (hub) %.1f s (house); hub sent "
               "%llu packets\n",
               lossy ? 30 : 0, (double)g_tx.max_gap[0] / 1e9, (double)g_tx.max_gap[1] / 1e9,
               (unsigned long long)a.pkts_sent);
        for (int e = 0; e < 2; e++) {
            cr_assert_leq(g_tx.max_gap[e], cfg_default(1).idle_keepalive_ns);
            cr_assert_gt(g_tx.max_gap[e], 0);
            /* 30% loss each way loses a probe or its ack half the time: not dead for it. */
            cr_assert(!gp_rel_dead(s.ep[e]), "declared dead on an idle %s link",
                      lossy ? "lossy" : "clean");
        }
        cr_assert_lt(a.pkts_sent, 600 / 5 * 4, "keepalives should be cheap");
        sim_free(&s);
    }
}

/* ---- receive buffer bound ---- */

static int drop_id0(sim *s, int from, const uint8_t *p, size_t len) {
    (void)len;
    /* Drop, for the first 2 s, every packet whose first frame is a fragment of message id
     * 0 (flags byte, pn varint, then type 0x10/0x11 and id 0x00). */
    size_t f = 1 + ((size_t)1 << (p[1] >> 6));
    return from == 0 && s->now < 3 * SIM_SEC && f + 1 < len && (p[f] == 0x10 || p[f] == 0x11) &&
           p[f + 1] == 0x00;
}

Test(rudp_rel, receive_buffer_is_bounded_and_never_deadlocks) {
    sim s;
    gp_rel_config ca = cfg_default(0), cb = cfg_default(0);
    ca.max_message = cb.max_message = 4096;
    ca.send_buffer = 1 << 20;
    cb.recv_buffer = 16384; /* far smaller than what the sender may have in flight */
    sim_init(&s, 12, &ca, &cb);
    sim_link l = link_rtt(0);
    sim_link_both(&s, &l);
    s.drop = drop_id0;
    static bulk1 b;
    memset(&b, 0, sizeof b);
    b.n = 100;
    g_b1 = &b;
    s.on_msg = b1_msg;
    for (int i = 0; i < b.n; i++)
        cr_assert_eq(gp_rel_send(s.ep[0], 7, b.buf, make_msg(b.buf, 7, (uint32_t)i, 4000)), 0);
    cr_assert(sim_run(&s, s.now + 120 * SIM_SEC, b1_done));
    cr_assert_eq(b.bad, 0);
    gp_rel_stats st;
    gp_rel_get_stats(s.ep[1], &st);
    cr_assert_gt(st.dropped_full, 0, "the small receive buffer should have pushed back");
    sim_free(&s);
}

/* ---- API ---- */

Test(rudp_rel, api_errors) {
    gp_rel_config c;
    gp_rel_config_init(&c);
    cr_assert_eq(gp_rel_config_check(&c), 0);
    c.max_payload = 100;
    cr_assert_eq(gp_rel_config_check(&c), GP_ERR_INVALID);
    cr_assert_null(gp_rel_new(&c, 0));
    gp_rel_config_init(&c);
    c.dead_after_ns = c.idle_keepalive_ns;
    cr_assert_eq(gp_rel_config_check(&c), GP_ERR_INVALID);
    gp_rel_config_init(&c);
    c.max_message = 1000;
    c.send_buffer = 3000;
    gp_rel *r = gp_rel_new(&c, 5);
    cr_assert_not_null(r);
    static uint8_t buf[4000];
    cr_assert_eq(gp_rel_send(r, 1, buf, 0), GP_ERR_INVALID);
    cr_assert_eq(gp_rel_send(r, 1, buf, 1001), GP_ERR_TOO_LARGE);
    cr_assert_eq(gp_rel_send_space(r), 1000);
    cr_assert_eq(gp_rel_send(r, 1, buf, 1000), 0);
    cr_assert_eq(gp_rel_send(r, 2, buf, 1000), 0);
    cr_assert_eq(gp_rel_send(r, 3, buf, 1000), 0);
    cr_assert_eq(gp_rel_send_space(r), 0);
    cr_assert_eq(gp_rel_send(r, 4, buf, 1), GP_ERR_BUFFER);
    cr_assert_eq(gp_rel_output(r, buf, 1000, 5, 5), GP_ERR_BUFFER);
    cr_assert_gt(gp_rel_output(r, buf, sizeof buf, 5, 5), 0);
    uint32_t lane;
    const uint8_t *m;
    cr_assert_eq(gp_rel_recv(r, &lane, &m), 0);
    cr_assert_leq(gp_rel_expiry(r), 5 + GP_REL_PTO_CAP_NS);
    gp_rel_free(r);
    gp_rel_free(NULL);
    r = gp_rel_new(NULL, 0);
    cr_assert_not_null(r);
    gp_rel_free(r);
}

/* ---- hostile input ---- */

static uint8_t *vput_t(uint8_t *p, uint64_t v) {
    if (v < 0x40) {
        *p++ = (uint8_t)v;
    } else if (v < 0x4000) {
        *p++ = (uint8_t)(0x40 | v >> 8);
        *p++ = (uint8_t)v;
    } else if (v < 0x40000000) {
        *p++ = (uint8_t)(0x80 | v >> 24);
        *p++ = (uint8_t)(v >> 16);
        *p++ = (uint8_t)(v >> 8);
        *p++ = (uint8_t)v;
    } else {
        *p++ = (uint8_t)(0xc0 | v >> 56);
        for (int i = 6; i >= 0; i--)
            *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

/* A hand-made packet in buf: header flags, packet number pn, one frame of `type` with the
 * varints v[0..n), then `fill` bytes of fill_byte. Returns its length. */
static size_t forge(uint8_t *buf, uint8_t flags, uint64_t pn, uint8_t type, const uint64_t *v,
                    size_t n, size_t fill, uint8_t fill_byte) {
    uint8_t *p = buf;
    *p++ = flags;
    p = vput_t(p, pn);
    *p++ = type;
    for (size_t i = 0; i < n; i++)
        p = vput_t(p, v[i]);
    memset(p, fill_byte, fill);
    return (size_t)(p + fill - buf);
}
#define V(...) (const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / 8
#define V0 NULL, 0

typedef struct cap_t {
    uint8_t pkt[64][1200];
    size_t len[64];
    int n;
} cap_t;
static cap_t g_cap;
static void capture(sim *s, int from, uint64_t t, const uint8_t *p, size_t len) {
    (void)s;
    (void)t;
    if (from == 0 && g_cap.n < 64) {
        memcpy(g_cap.pkt[g_cap.n], p, len);
        g_cap.len[g_cap.n++] = len;
    }
}
static int g_one_got;
static void one_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)s;
    (void)ep;
    (void)lane;
    (void)m;
    (void)len;
    g_one_got++;
}
static int one_done(sim *s) {
    (void)s;
    return g_one_got > 0;
}

Test(rudp_rel, hostile_input_is_rejected_and_counted) {
    sim s;
    sim_plain(&s, 13, 1, 0);
    const gp_rel_config c = cfg_default(1);
    memset(&g_cap, 0, sizeof g_cap);
    s.on_tx = capture;
    s.on_msg = one_msg;
    static uint8_t buf[70000];
    g_one_got = 0;
    cr_assert_eq(gp_rel_send(s.ep[0], 3, buf, make_msg(buf, 3, 0, 5000)), 0);
    cr_assert(sim_run(&s, s.now + 5 * SIM_SEC, one_done));
    gp_rel *b = s.ep[1];
    gp_rel_stats st0, st;
    gp_rel_get_stats(b, &st0);
    uint64_t now = s.now;
    int bad = 0;

    /* Truncations of real packets: every prefix is a whole packet or malformed. */
    for (int i = 0; i < g_cap.n; i++) {
        for (size_t cut = 0; cut < g_cap.len[i]; cut++) {
            int rc = gp_rel_input(b, g_cap.pkt[i], cut, now);
            cr_assert(rc == 0 || rc == GP_ERR_MALFORMED, "rc %d", rc);
            bad += rc < 0;
        }
    }
    /* Random garbage. */
    for (int i = 0; i < 20000; i++) {
        size_t len = sim_rand(&s) % 1200;
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)sim_rand(&s);
        if (len && i % 2)
            buf[0] &= 1; /* half with a valid header byte, to get past it */
        int rc = gp_rel_input(b, buf, len, now);
        cr_assert(rc == 0 || rc == GP_ERR_MALFORMED || rc == GP_ERR_TOO_LARGE, "rc %d", rc);
        bad += rc < 0;
    }
    gp_rel_get_stats(b, &st);
    cr_assert_eq(st.malformed - st0.malformed, (uint64_t)bad);

    uint64_t pn = 1000000;
    /* Overlong: more than max_payload. */
    memset(buf, 0, sizeof buf);
    cr_assert_eq(gp_rel_input(b, buf, c.max_payload + 1, now), GP_ERR_MALFORMED);
    /* Unknown header flags. */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0x80, pn++, 0x01, V0, 0, 0), now),
                 GP_ERR_MALFORMED);
    /* Unknown frame type. */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0, pn++, 0x7f, V0, 0, 0), now), GP_ERR_MALFORMED);
    /* A message claiming more than max_message: id, dep, lane, len, csz, idx. */
    cr_assert_eq(
        gp_rel_input(b, buf,
                     forge(buf, 0, pn++, 0x11, V(50, 0, 1, c.max_message + 1, 1000, 0), 1000, 0xaa),
                     now),
        GP_ERR_TOO_LARGE);
    /* A fragment whose data runs past the packet. */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0, pn++, 0x10, V(50, 0, 1, 900), 100, 0xaa), now),
                 GP_ERR_MALFORMED);
    /* A varint claiming 8 bytes at the end of the packet. */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0, pn++, 0x02, V0, 1, 0xc0), now),
                 GP_ERR_MALFORMED);
    /* An ACK of packet numbers b never sent: largest, delay, loss, ranges, first range. */
    gp_rel_get_stats(b, &st0);
    cr_assert_eq(gp_rel_input(b, buf,
                              forge(buf, 0, pn++, 0x02, V(st0.pkts_sent + 5, 0, 0, 0, 10), 0, 0),
                              now),
                 GP_ERR_MALFORMED);
    /* ACK ranges running below packet number 0 (a gap of 5 below 1). */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0, pn++, 0x02, V(1, 0, 0, 1, 0, 5, 0), 0, 0), now),
                 GP_ERR_MALFORMED);
    /* A repair claiming sources after itself: back 1, k 4 > back. */
    cr_assert_eq(gp_rel_input(b, buf, forge(buf, 0, pn++, 0x20, V(1, 4, 0, 10), 10, 0), now),
                 GP_ERR_MALFORMED);
    /* Inconsistent fragments of one message (length changes between fragments). */
    for (int k = 0; k < 2; k++) {
        size_t n = forge(buf, 0, pn++, 0x11, V(60, 0, 1, k ? 3000 : 2000, 500, 1), 500, 0xaa);
        cr_assert_eq(gp_rel_input(b, buf, n, now), k ? GP_ERR_MALFORMED : 0);
    }

    /* And the session still works. */
    g_one_got = 0;
    s.on_tx = NULL;
    cr_assert_eq(gp_rel_send(s.ep[0], 3, buf, make_msg(buf, 3, 1, 3000)), 0);
    cr_assert(sim_run(&s, s.now + 5 * SIM_SEC, one_done));
    sim_free(&s);
}

Test(rudp_rel, bursty_loss_gilbert_elliott) {
    sim s;
    gp_rel_config c = cfg_default(1);
    sim_init(&s, 14, &c, &c);
    sim_link l = link_rtt(0.02);
    /* Bursts: ~5% of the time in a bad state that loses 80%, mean burst 10 packets. */
    l.ge_gb = 0.005;
    l.ge_bg = 0.1;
    l.ge_bad_loss = 0.8;
    l.rate_bps = 20000000;
    l.queue_bytes = 400000;
    sim_link_both(&s, &l);
    cr_assert(bulk_run(&s, 100, 256 * 1024));
    bulk_check(&s);
    sim_free(&s);
}

/* ---- many lanes ---- */

typedef struct many_t {
    int n, got, bad;
    uint8_t first_seen[4500]; /* by lane index: its message 0 was delivered */
} many_t;
static many_t g_many;
static void many_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)s;
    uint32_t seq, idx = lane * 244002641u; /* inverse of the multiplier below, mod 2^32 */
    if (ep != 1 || !check_msg(m, len, lane, &seq) || idx >= 4500 || seq > 1 ||
        g_many.first_seen[idx] != seq)
        g_many.bad++;
    else
        g_many.first_seen[idx] = 1;
    g_many.got++;
}
static int many_done(sim *s) {
    (void)s;
    return g_many.got == g_many.n;
}

Test(rudp_rel, thousands_of_lanes_come_and_go) {
    sim s;
    sim_plain(&s, 15, 1, 0.10);
    s.on_msg = many_msg;
    memset(&g_many, 0, sizeof g_many);
    static uint8_t buf[2000];
    /* Three waves of 1500 lanes each (spread over the hash), two messages per lane; each
     * wave is sent once the previous one is delivered, so lanes are created and freed. */
    for (int wave = 0; wave < 3; wave++) {
        for (uint32_t i = 0; i < 1500; i++) {
            uint32_t lane = (i + 1500u * (uint32_t)wave) * 2654435761u;
            for (uint32_t k = 0; k < 2; k++) {
                size_t len = make_msg(buf, lane, k, 20 + (i % 900));
                int rc;
                /* The 4096-message window may be full of the last wave's unacked tail:
                 * retry as a caller would, after letting the engines run. */
                while ((rc = gp_rel_send(s.ep[0], lane, buf, len)) == GP_ERR_BUFFER)
                    sim_run(&s, s.now + 10 * SIM_MS, NULL);
                cr_assert_eq(rc, 0);
            }
        }
        g_many.n += 3000;
        cr_assert(sim_run(&s, s.now + 120 * SIM_SEC, many_done), "wave %d: %d of %d", wave,
                  g_many.got, g_many.n);
    }
    cr_assert_eq(g_many.bad, 0);
    sim_free(&s);
}
