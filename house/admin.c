/* admin.c — the house's admin port (bridge/ADMIN.md): /healthz, /readyz (connected to a
 * bridge) and /metrics (gp_house_*), on the admin HTTP server shared with the bridge
 * (bridge/admin_http.c) and its metrics registry (bridge/metrics.c). I/O side. */
#include "../bridge/admin_http.h"
#include "../bridge/metrics.h"
#include "house.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hs_metrics g_hm;
static gp_admin *g_admin;

int hs_admin_init(void) {
    gp_metrics *m = gp_metrics_new();
    if (!m)
        return -1;
    g_hm.reg = m;
    g_hm.connected =
        gp_metrics_gauge(m, "gp_house_connected", "1 while connected to a bridge.", NULL);
    g_hm.connects =
        gp_metrics_counter(m, "gp_house_connects_total",
                           "Connections to a bridge established, by transport.", "transport");
    g_hm.requests = gp_metrics_counter(
        m, "gp_house_requests_total",
        "Requests by outcome (as in the request log line: ok, replayed, rejected, failed, ...).",
        "outcome");
    g_hm.duration = gp_metrics_duration(m, "gp_house_request_duration_seconds",
                                        "From a request's head to its outcome.");
    g_hm.upstream_errors =
        gp_metrics_counter(m, "gp_house_upstream_errors_total",
                           "Upstream calls that failed (unreachable, timeout, too large).", NULL);
    g_hm.bytes = gp_metrics_counter(m, "gp_house_bytes_total",
                                    "Body bytes (uncompressed), by direction.", "direction");
    g_hm.cache_entries = gp_metrics_gauge(m, "gp_house_replay_cache_entries",
                                          "Responses remembered for redeliveries.", NULL);
    g_hm.cache_bytes =
        gp_metrics_gauge(m, "gp_house_replay_cache_bytes", "Bytes the replay cache holds.", NULL);
    g_hm.rtt = gp_metrics_gauge(m, "gp_house_rtt_seconds",
                                "Round trip to the bridge: smoothed for rudp, the last ping for "
                                "ws/wss (0: not connected or not measured yet).",
                                NULL);
    g_hm.rudp_loss = gp_metrics_gauge(m, "gp_house_rudp_loss_ratio",
                                      "Packet loss of the rudp session, worse direction.", NULL);
    g_hm.rudp_retx = gp_metrics_counter(m, "gp_house_rudp_retransmits_total",
                                        "Message fragments sent again after a loss (rudp).", NULL);
    g_hm.rudp_fec = gp_metrics_counter(m, "gp_house_rudp_fec_repaired_total",
                                       "Packets rebuilt from FEC repair packets (rudp).", NULL);
    static const char *const transports[] = {"ws", "wss", "rudp"};
    for (size_t i = 0; i < 3; i++)
        gp_metric_add(g_hm.connects, transports[i], 0);
    static const char *const outcomes[] = {"ok", "replayed", "rejected", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        gp_metric_add(g_hm.requests, outcomes[i], 0);
    gp_metric_add(g_hm.bytes, "from_bridge", 0);
    gp_metric_add(g_hm.bytes, "to_bridge", 0);
    return 0;
}

void hs_metrics_request(const char *outcome, uint64_t start_ns, size_t from_bridge,
                        uint64_t to_bridge) {
    /* "cancelled reason=..." and the like: the label is the first word. */
    char o[48];
    size_t n = strcspn(outcome, " ");
    snprintf(o, sizeof o, "%.*s", (int)(n < sizeof o ? n : sizeof o - 1), outcome);
    gp_metric_inc(g_hm.requests, o);
    if (start_ns)
        gp_metric_observe(g_hm.duration, (double)(uv_hrtime() - start_ns) / 1e9);
    gp_metric_add(g_hm.bytes, "from_bridge", (double)from_bridge);
    gp_metric_add(g_hm.bytes, "to_bridge", (double)to_bridge);
}

/* Gauges read off the running state. */
static void collect(void) {
    gp_metric_set(g_hm.connected, NULL, hs_tunnel_live());
    size_t entries, bytes;
    uint64_t evicted;
    hs_cache_stats(&entries, &bytes, &evicted);
    gp_metric_set(g_hm.cache_entries, NULL, (double)entries);
    gp_metric_set(g_hm.cache_bytes, NULL, (double)bytes);
    double rtt, loss;
    uint64_t retx, fec;
    hs_udp_metrics(&rtt, &loss, &retx, &fec);
    gp_metric_set(g_hm.rtt, NULL, (hs_tunnel_udp() ? rtt : hs_tunnel_ping_rtt_ms()) / 1000.0);
    gp_metric_set(g_hm.rudp_loss, NULL, loss);
    gp_metric_add(g_hm.rudp_retx, NULL, (double)retx - gp_metric_value(g_hm.rudp_retx, NULL));
    gp_metric_add(g_hm.rudp_fec, NULL, (double)fec - gp_metric_value(g_hm.rudp_fec, NULL));
}

/* --- routes ----------------------------------------------------------------------------- */

static int ready(const char **why) {
    *why = "not_connected";
    return hs_tunnel_live();
}

static char *render(size_t *len) {
    collect();
    return gp_metrics_render(g_hm.reg, len);
}

static void admin_log(int level, const char *event, const char *kv) {
    hs_log(level, event, "house=%s %s", g_hs.cfg.id, kv);
}

int hs_admin_start(void) {
    const hs_config *c = &g_hs.cfg;
    if (c->admin_listen < 0)
        return 0;
    gp_admin_cfg ac = {.bind = c->admin_bind,
                       .port = (int)c->admin_listen,
                       .hosts = c->admin_host,
                       .log = admin_log};
    g_admin = gp_admin_new(g_hs.loop, &ac);
    if (!g_admin)
        return -1;
    static const gp_admin_probes probes = {ready, render};
    gp_admin_route_probes(g_admin, &probes);
    int port = gp_admin_listen(g_admin);
    if (port < 0) {
        gp_admin_close(g_admin);
        g_admin = NULL;
        return -1;
    }
    hs_log(HS_LOG_INFO, "listening", "transport=admin port=%d bind=%s house=%s", port,
           hs_qs(c->admin_bind), c->id);
    return 0;
}

void hs_admin_stop(void) {
    gp_admin_close(g_admin);
    g_admin = NULL;
}

void hs_admin_final(void) {
    gp_metrics_free(g_hm.reg);
    memset(&g_hm, 0, sizeof g_hm);
}
