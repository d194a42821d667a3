/* stats.c — what a bridge tells about itself: the Prometheus metrics of bridge/admin/ADMIN.md
 * (declared here, counted where things happen), and the live stats it keeps in Redis for
 * `ghostport top` and the dashboard: <p>:bstats:<bid> every second (listed in the <p>:bridges
 * index), and the counters of each held house in its state hash. I/O side (Redis), the
 * registry itself is metrics.c's pure code. */
#include "stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_bridge.h"
#include "admin_http.h"
#include "hist.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BSTATS_TTL_MS 5000
#define BRIDGES_FORGET_MS 60000 /* index entries of bridges silent this long are dropped */
#define MAX_NODES 64

struct br_stats {
    br_stats_src src;
    br_metrics *m;         /* src.metrics: the handles made here, counted everywhere */
    double redis_rtt_ms;   /* last PING round trip, -1: none yet */
    uint64_t ping_sent_ns; /* 0: no PING in flight */
    uint8_t node_seen[MAX_NODES];
    char host[64];
    br_hist *hist; /* the request history: per minute, per house and for the bridge */
};

/* The metrics of bridge/admin/ADMIN.md, in the order the page lists them: where the handle
 * goes in br_metrics, the kind, name, help, label, and the series shown as 0 from the start
 * (so that rate() has a first point): the label values, space-separated; "": the unlabeled
 * series; NULL: none until counted. */
enum { COUNTER, GAUGE, DURATION };
typedef struct metric_spec {
    size_t off;
    int kind;
    const char *name, *help, *label, *zero;
} metric_spec;
#define M(field) offsetof(br_metrics, field)
static const metric_spec specs[] = {
    {M(houses), GAUGE, "gp_bridge_houses", "Houses held by this bridge now.", NULL, NULL},
    {M(connections), COUNTER, "gp_bridge_connections_total",
     "Houses that authenticated and were taken over, by transport.", "transport", "ws wss rudp"},
    {M(disconnects), COUNTER, "gp_bridge_disconnects_total",
     "Held houses let go (closed, lost, fenced), by transport.", "transport", "ws wss rudp"},
    {M(auth_failures), COUNTER, "gp_bridge_auth_failures_total",
     "Failed authentications (unknown house, wrong secret, invalid id; a house that hangs up at "
     "the challenge too), by transport.",
     "transport", "ws wss rudp"},
    {M(requests), COUNTER, "gp_bridge_requests_total",
     "Final replies written, by status class (error: an error reply of the bridge or house).",
     "class", "2xx 3xx 4xx 5xx error"},
    {M(forwarded), COUNTER, "gp_bridge_forwarded_total", "Requests forwarded to houses.", NULL,
     NULL},
    {M(duration), DURATION, "gp_bridge_request_duration_seconds",
     "Time from forwarding a request to its final reply.", NULL, NULL},
    {M(bytes), COUNTER, "gp_bridge_bytes_total", "Body bytes carried (uncompressed), by direction.",
     "direction", "to_house from_house"},
    {M(compressed), COUNTER, "gp_bridge_compressed_bytes_total",
     "Body bytes of zstd-compressed frames before and after compression (both directions).",
     "stage", "before after"},
    {M(rtt), GAUGE, "gp_bridge_rtt_seconds",
     "Mean round trip over the houses held now, by transport (ws, wss: the last ping; rudp: "
     "smoothed); 0 while none is measured.",
     "transport", NULL},
    {M(rudp_loss), GAUGE, "gp_bridge_rudp_loss_ratio",
     "Mean packet loss (worse direction) over rudp houses.", NULL, NULL},
    {M(rudp_retx), COUNTER, "gp_bridge_rudp_retransmits_total",
     "Message fragments sent again after a loss (rudp).", NULL, NULL},
    {M(rudp_fec), COUNTER, "gp_bridge_rudp_fec_repaired_total",
     "Packets rebuilt from FEC repair packets (rudp).", NULL, NULL},
    {M(tun_houses), GAUGE, "gp_bridge_tun_houses",
     "Houses with an L3 tunnel granted on this bridge now.", NULL, NULL},
    {M(tun_packets), COUNTER, "gp_bridge_tun_packets_total",
     "IP packets through the L3 tunnel, by direction (in: from houses into the hub's device; "
     "out: to houses).",
     "dir", "in out"},
    {M(tun_bytes), COUNTER, "gp_bridge_tun_bytes_total",
     "Bytes of those IP packets, by direction (in, out).", "dir", "in out"},
    {M(tun_drops), COUNTER, "gp_bridge_tun_drops_total",
     "IP packets the L3 tunnel dropped, by reason (a packet that does not parse: "
     "proto/ippkt.h's reason; no_route, spoofed, forbidden_dst, too_big, queue_full, "
     "write_fail).",
     "reason", NULL},
    {M(redis_rtt), GAUGE, "gp_bridge_redis_rtt_seconds", "Round trip of the last Redis PING.", NULL,
     NULL},
    {M(redis_reconnects), COUNTER, "gp_bridge_redis_reconnects_total",
     "Redis command connections re-established.", NULL, NULL},
    {M(pending_claimed), COUNTER, "gp_bridge_pending_claimed_total",
     "Entries delivered again from a pending list (after a crash or a lost reply).", NULL, NULL},
    {M(fenced), COUNTER, "gp_bridge_fenced_total",
     "Houses let go because another connection took over.", NULL, NULL},
    {M(janitor_timeouts), COUNTER, "gp_bridge_janitor_timeouts_total",
     "504s written for requests to houses nobody held.", NULL, NULL},
    {M(invalid_requests), COUNTER, "gp_bridge_invalid_requests_total",
     "Requests refused without being forwarded, by reason (reply_key: a reply key outside "
     "<p>:rep:, request: a malformed field, too_large: the body).",
     "reason", "reply_key request too_large"},
    {M(reply_failures), COUNTER, "gp_bridge_reply_failures_total",
     "Reply entries Redis refused (wrong_type: the reply key holds something other than a stream; "
     "error: any other error); their requests are settled all the same.",
     "reason", "wrong_type error"},
    {M(bad_responses), COUNTER, "gp_bridge_bad_responses_total",
     "Malformed parts of houses' responses (status: not 100..599, answered 502 bad_response; "
     "header_name, header_value: a header dropped).",
     "reason", "status header_name header_value"},
    {M(admin_conns), GAUGE, "gp_bridge_admin_connections", "Open connections to the admin port.",
     NULL, NULL},
    {M(preauth), GAUGE, "gp_bridge_preauth_connections",
     "House-listener connections not authenticated yet.", NULL, NULL},
    {M(preauth_shed), COUNTER, "gp_bridge_preauth_shed_total",
     "Pre-auth connections closed to make room or at their deadline, by reason (per_address, "
     "total: a cap was reached and the oldest went; deadline).",
     "reason", "per_address total deadline"},
    {M(accept_pauses), COUNTER, "gp_bridge_accept_pauses_total",
     "Times the house listener paused accepting: out of descriptors.", NULL, ""},
    {M(log_suppressed), COUNTER, "gp_bridge_log_suppressed_total",
     "Log lines dropped by the per-event rate limit.", NULL, NULL},
};
#undef M

br_stats *br_stats_new(const br_stats_src *src) {
    br_stats *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->src = *src;
    st->m = src->metrics;
    gp_metrics *m = gp_metrics_new();
    st->hist = br_hist_new(src->env);
    if (!m || !st->hist) {
        gp_metrics_free(m);
        br_hist_free(st->hist);
        free(st);
        return NULL;
    }
    st->m->reg = m;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        const metric_spec *sp = &specs[i];
        gp_metric *x = sp->kind == GAUGE     ? gp_metrics_gauge(m, sp->name, sp->help, sp->label)
                       : sp->kind == COUNTER ? gp_metrics_counter(m, sp->name, sp->help, sp->label)
                                             : gp_metrics_duration(m, sp->name, sp->help);
        *(gp_metric **)((char *)st->m + sp->off) = x;
        if (sp->zero && !*sp->zero)
            gp_metric_add(x, NULL, 0);
        for (const char *z = sp->zero; z && *z; z += strspn(z, " ")) {
            char v[32];
            size_t n = strcspn(z, " ");
            snprintf(v, sizeof v, "%.*s", (int)n, z);
            gp_metric_add(x, v, 0);
            z += n;
        }
    }
    /* Every drop reason from the start, as the tunnel names them. */
    br_stats_tun tun;
    st->src.tun_metrics(st->src.link_ud, &tun);
    for (size_t i = 0; i < tun.nreasons; i++)
        gp_metric_add(st->m->tun_drops, tun.reason[i], 0);
    st->redis_rtt_ms = -1;
    gethostname(st->host, sizeof st->host - 1);
    return st;
}

void br_stats_free(br_stats *st) {
    if (!st)
        return; /* never started */
    gp_metrics_free(st->m->reg);
    memset(st->m, 0, sizeof *st->m);
    br_hist_free(st->hist);
    free(st);
}

/* --- counting --------------------------------------------------------------------------- */

static const char *status_class(unsigned status, int is_error) {
    if (is_error || status < 200 || status > 599)
        return "error";
    static const char *const c[] = {"2xx", "3xx", "4xx", "5xx"};
    return c[status / 100 - 2];
}

void br_stats_reply(br_stats *st, br_conn *c, const char *house, unsigned status, int is_error,
                    uint64_t fwd_ns) {
    gp_metric_inc(st->m->requests, status_class(status, is_error));
    uint64_t lat_ns = fwd_ns ? uv_hrtime() - fwd_ns : 0;
    if (fwd_ns)
        gp_metric_observe(st->m->duration, (double)lat_ns / 1e9);
    br_hist_reply(st->hist, house, is_error || status >= 500,
                  fwd_ns ? lat_ns / 1000 : BR_HIST_NO_LATENCY);
    if (c) {
        c->st_req++;
        c->st_err += is_error || status >= 500;
        c->st_dirty = 1;
    }
}

void br_stats_bytes(br_stats *st, br_conn *c, int from_house, size_t n) {
    gp_metric_add(st->m->bytes, from_house ? "from_house" : "to_house", (double)n);
    if (!c)
        return;
    br_hist_bytes(st->hist, c->house, from_house, n);
    if (from_house)
        c->st_bytes_in += n;
    else
        c->st_bytes_out += n;
    c->st_dirty = 1;
}

void br_stats_compressed(br_stats *st, size_t before, size_t after) {
    gp_metric_add(st->m->compressed, "before", (double)before);
    gp_metric_add(st->m->compressed, "after", (double)after);
}

void br_stats_node_up(br_stats *st, int node) {
    br_hist_load_scripts(st->hist);
    if (node < 0 || node >= MAX_NODES)
        return;
    if (st->node_seen[node])
        gp_metric_inc(st->m->redis_reconnects, NULL);
    st->node_seen[node] = 1;
}

size_t br_stats_history_flush(br_stats *st) {
    return br_hist_flush(st->hist);
}

int br_stats_history_pending(const br_stats *st) {
    return br_hist_pending(st->hist);
}

/* Gauges that are read off the running state rather than counted. */
static void collect(br_stats *st) {
    gp_metric_set(st->m->houses, NULL, *st->src.nlive);
    double rtt, loss;
    uint64_t retx, fec;
    st->src.link_metrics(st->src.link_ud, &rtt, &loss, &retx, &fec);
    /* RTT by transport: a walk over the held houses (one scrape costs what a tick does). */
    static const char *const TP[] = {"ws", "wss", "rudp"};
    double sum[3] = {0, 0, rtt};
    unsigned n[3] = {0, 0, rtt > 0};
    for (const br_conn *c = st->src.conns->all; c; c = c->all_next)
        for (int t = 0; t < 2; t++)
            if (c->state == BR_CS_LIVE && c->rtt_us > 0 && strcmp(c->tp->name, TP[t]) == 0) {
                sum[t] += c->rtt_us / 1000.0;
                n[t]++;
            }
    for (int t = 0; t < 3; t++)
        gp_metric_set(st->m->rtt, TP[t], n[t] ? sum[t] / n[t] / 1000.0 : 0);
    gp_metric_set(st->m->rudp_loss, NULL, loss);
    /* Counters owned by the rudp engines: bring ours up to their total. */
    gp_metric_add(st->m->rudp_retx, NULL, (double)retx - gp_metric_value(st->m->rudp_retx, NULL));
    gp_metric_add(st->m->rudp_fec, NULL, (double)fec - gp_metric_value(st->m->rudp_fec, NULL));
    /* The L3 tunnel's, owned by it too. */
    br_stats_tun tun;
    st->src.tun_metrics(st->src.link_ud, &tun);
    gp_metric_set(st->m->tun_houses, NULL, (double)tun.houses);
    const struct {
        gp_metric *m;
        const char *dir;
        uint64_t v;
    } tot[] = {{st->m->tun_packets, "in", tun.pkts_in},
               {st->m->tun_packets, "out", tun.pkts_out},
               {st->m->tun_bytes, "in", tun.bytes_in},
               {st->m->tun_bytes, "out", tun.bytes_out}};
    for (size_t i = 0; i < sizeof tot / sizeof tot[0]; i++)
        gp_metric_add(tot[i].m, tot[i].dir,
                      (double)tot[i].v - gp_metric_value(tot[i].m, tot[i].dir));
    for (size_t i = 0; i < tun.nreasons; i++)
        gp_metric_add(st->m->tun_drops, tun.reason[i],
                      (double)tun.drops[i] - gp_metric_value(st->m->tun_drops, tun.reason[i]));
    if (st->redis_rtt_ms >= 0)
        gp_metric_set(st->m->redis_rtt, NULL, st->redis_rtt_ms / 1000.0);
    gp_metric_set(st->m->admin_conns, NULL, gp_admin_conns(*st->src.admin));
    gp_metric_add(st->m->log_suppressed, NULL,
                  (double)br_log_suppressed() - gp_metric_value(st->m->log_suppressed, NULL));
}

char *br_stats_render(br_stats *st, size_t *len) {
    collect(st);
    return gp_metrics_render(st->m->reg, len);
}

/* --- Redis ------------------------------------------------------------------------------ */

static void on_pong(redisReply *rep, void *ud) {
    br_stats *st = ud;
    if (rep && rep->type == REDIS_REPLY_STATUS && st->ping_sent_ns)
        st->redis_rtt_ms = (double)(uv_hrtime() - st->ping_sent_ns) / 1e6;
    st->ping_sent_ns = 0;
}

static void ping(br_stats *st) {
    if (st->ping_sent_ns)
        return; /* the last one is still out: the watchdog deals with a stuck connection */
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "PING");
    st->ping_sent_ns = uv_hrtime();
    if (br_db_cmd(st->src.env->db, on_pong, st, &a) != 0)
        st->ping_sent_ns = 0;
}

static void put_num(br_args *a, const char *name, char buf[32], double v) {
    br_args_str(a, name);
    snprintf(buf, 32, "%.0f", v);
    br_args_str(a, buf);
}

/* <p>:bstats:<bid> (bridge/admin/ADMIN.md), and our entry in the <p>:bridges index. */
static void publish_bstats(br_stats *st) {
    char key[GP_KEY_MAX], idx[GP_KEY_MAX];
    if (gp_key_bstats(key, st->src.env->cfg->prefix, st->src.env->cfg->bridge_id) < 0 ||
        gp_key_bridges(idx, st->src.env->cfg->prefix) < 0)
        return;
    const br_env *e = st->src.env;
    uint64_t now = br_env_now_redis(e);
    uint64_t since = now - (br_env_now(e) - e->started_ms);
    const br_metrics *m = st->m;
    char v[10][32], rtt[32], pid[24];
    snprintf(rtt, sizeof rtt, "%.3f", st->redis_rtt_ms < 0 ? 0 : st->redis_rtt_ms);
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "HSET");
    br_args_str(&a, key);
    br_args_str(&a, GP_BSTATS_ID);
    br_args_str(&a, st->src.env->cfg->bridge_id);
    br_args_str(&a, GP_BSTATS_HOST);
    br_args_str(&a, st->host);
    br_args_str(&a, GP_BSTATS_PID);
    br_args_str(&a, pid);
    put_num(&a, GP_BSTATS_SINCE, v[0], (double)since);
    put_num(&a, GP_BSTATS_TS, v[1], (double)now);
    put_num(&a, GP_BSTATS_HOUSES, v[2], *st->src.nlive);
    put_num(&a, GP_BSTATS_REQ_TOTAL, v[3], gp_metric_total(m->requests));
    put_num(&a, GP_BSTATS_ERR_TOTAL, v[4],
            gp_metric_value(m->requests, "5xx") + gp_metric_value(m->requests, "error"));
    put_num(&a, GP_BSTATS_BYTES_IN, v[5], gp_metric_value(m->bytes, "from_house"));
    put_num(&a, GP_BSTATS_BYTES_OUT, v[6], gp_metric_value(m->bytes, "to_house"));
    put_num(&a, GP_BSTATS_CONNECTS, v[7], gp_metric_total(m->connections));
    put_num(&a, GP_BSTATS_AUTH_FAILURES, v[8], gp_metric_total(m->auth_failures));
    br_args_str(&a, GP_BSTATS_REDIS_RTT);
    br_args_str(&a, rtt);
    br_db_cmd(st->src.env->db, NULL, NULL, &a);
    br_args_init(&a);
    br_args_str(&a, "PEXPIRE");
    br_args_str(&a, key);
    br_args_u64(&a, BSTATS_TTL_MS);
    br_db_cmd(st->src.env->db, NULL, NULL, &a);
    br_args_init(&a);
    br_args_str(&a, "ZADD");
    br_args_str(&a, idx);
    br_args_u64(&a, now);
    br_args_str(&a, st->src.env->cfg->bridge_id);
    br_db_cmd(st->src.env->db, NULL, NULL, &a);
    br_args_init(&a);
    br_args_str(&a, "ZREMRANGEBYSCORE");
    br_args_str(&a, idx);
    br_args_str(&a, "-inf");
    br_args_u64(&a, now > BRIDGES_FORGET_MS ? now - BRIDGES_FORGET_MS : 0);
    br_db_cmd(st->src.env->db, NULL, NULL, &a);
}

void br_stats_tick(br_stats *st, uint64_t now) {
    (void)now;
    if (!br_db_ready(st->src.env->db) || !st->src.env->time_ok)
        return;
    ping(st);
    publish_bstats(st);
    br_hist_tick(st->hist);
    /* Houses that had traffic: their state hash gets the new counters (under the fence). */
    for (br_conn *c = st->src.conns->all; c; c = c->all_next)
        if (c->in_table && c->st_dirty)
            st->src.state_update(st->src.ud, c);
}
