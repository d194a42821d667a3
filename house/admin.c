/* admin.c — the house's admin port (bridge/admin/ADMIN.md): /healthz, /readyz (connected to a
 * bridge) and /metrics (gp_house_*), on the admin HTTP server shared with the bridge
 * (proto/admin_http.c, on this loop through proto/adapters/uv_admin.c) and its metrics registry
 * (proto/metrics.c). I/O side. */
#include "adapters/uv_admin.h"
#include "house.h"
#include "l3.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* gp_house_tun_drops_total's reasons, in hs_l3_counters' order (tun_drops below). */
static const char *const TUN_DROPS[] = {"denied",  "bad",        "no_tunnel",
                                        "too_big", "queue_full", "write_fail"};

int hs_admin_init(hs_house *h) {
    gp_metrics *m = gp_metrics_new();
    if (!m)
        return -1;
    hs_metrics *hm = &h->m;
    hm->reg = m;
    hm->connected =
        gp_metrics_gauge(m, "gp_house_connected", "1 while connected to a bridge.", NULL);
    hm->connects =
        gp_metrics_counter(m, "gp_house_connects_total",
                           "Connections to a bridge established, by transport.", "transport");
    hm->requests = gp_metrics_counter(
        m, "gp_house_requests_total",
        "Requests by outcome (as in the request log line: ok, replayed, rejected, failed, ...).",
        "outcome");
    hm->duration = gp_metrics_duration(m, "gp_house_request_duration_seconds",
                                       "From a request's head to its outcome.");
    hm->upstream_errors =
        gp_metrics_counter(m, "gp_house_upstream_errors_total",
                           "Upstream calls that failed (unreachable, timeout, too large).", NULL);
    hm->bytes = gp_metrics_counter(m, "gp_house_bytes_total",
                                   "Body bytes (uncompressed), by direction.", "direction");
    hm->cache_entries = gp_metrics_gauge(m, "gp_house_replay_cache_entries",
                                         "Responses remembered for redeliveries.", NULL);
    hm->cache_bytes =
        gp_metrics_gauge(m, "gp_house_replay_cache_bytes", "Bytes the replay cache holds.", NULL);
    hm->rtt = gp_metrics_gauge(m, "gp_house_rtt_seconds",
                               "Round trip to the bridge: smoothed for rudp, the last ping for "
                               "ws/wss (0: not connected or not measured yet).",
                               NULL);
    hm->rudp_loss = gp_metrics_gauge(m, "gp_house_rudp_loss_ratio",
                                     "Packet loss of the rudp session, worse direction.", NULL);
    hm->rudp_retx = gp_metrics_counter(m, "gp_house_rudp_retransmits_total",
                                       "Message fragments sent again after a loss (rudp).", NULL);
    hm->rudp_fec = gp_metrics_counter(m, "gp_house_rudp_fec_repaired_total",
                                      "Packets rebuilt from FEC repair packets (rudp).", NULL);
    hm->streams_open =
        gp_metrics_gauge(m, "gp_house_streams_open",
                         "TCP streams with a service connection (connecting or open).", NULL);
    hm->streams_opened = gp_metrics_counter(
        m, "gp_house_streams_opened_total",
        "Stream opens by outcome: ok, bad_request, forbidden_service, unavailable, "
        "upstream_unreachable.",
        "outcome");
    hm->stream_bytes =
        gp_metrics_counter(m, "gp_house_stream_bytes_total",
                           "Stream bytes, by direction (from_service, to_service).", "direction");
    hm->stream_resets = gp_metrics_counter(
        m, "gp_house_stream_resets_total",
        "Streams reset, by reason (peer: the opener's rst; the house's reasons of "
        "proto/STREAMS.md: idle, grace, refused, malformed, gap, window, bad_ack, closed).",
        "reason");
    hm->tun_up = gp_metrics_gauge(m, "gp_house_tun_up",
                                  "1 while the L3 tunnel is granted (--tun), else 0.", NULL);
    hm->tun_packets = gp_metrics_counter(
        m, "gp_house_tun_packets_total",
        "IP packets through the L3 tunnel, by direction (in: from the hub into the house's "
        "device; out: from the device to the hub).",
        "dir");
    hm->tun_bytes = gp_metrics_counter(m, "gp_house_tun_bytes_total",
                                       "Bytes of those IP packets, by direction (in, out).", "dir");
    hm->tun_drops = gp_metrics_counter(
        m, "gp_house_tun_drops_total",
        "IP packets the L3 tunnel dropped, by reason (denied: by the --tun-allow rules; bad: "
        "did not parse, or a wrong address; no_tunnel: from the device with no grant live; "
        "too_big; queue_full; write_fail).",
        "reason");
    for (size_t i = 0; i < sizeof TUN_DROPS / sizeof TUN_DROPS[0]; i++)
        gp_metric_add(hm->tun_drops, TUN_DROPS[i], 0);
    gp_metric_add(hm->tun_packets, "in", 0);
    gp_metric_add(hm->tun_packets, "out", 0);
    gp_metric_add(hm->tun_bytes, "in", 0);
    gp_metric_add(hm->tun_bytes, "out", 0);
    static const char *const transports[] = {"ws", "wss", "rudp"};
    for (size_t i = 0; i < 3; i++)
        gp_metric_add(hm->connects, transports[i], 0);
    static const char *const outcomes[] = {"ok", "replayed", "rejected", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        gp_metric_add(hm->requests, outcomes[i], 0);
    gp_metric_add(hm->bytes, "from_bridge", 0);
    gp_metric_add(hm->bytes, "to_bridge", 0);
    return 0;
}

void hs_metrics_request(hs_house *h, const char *outcome, uint64_t start_ns, size_t from_bridge,
                        uint64_t to_bridge) {
    /* "cancelled reason=..." and the like: the label is the first word. */
    char o[48];
    size_t n = strcspn(outcome, " ");
    snprintf(o, sizeof o, "%.*s", (int)(n < sizeof o ? n : sizeof o - 1), outcome);
    hs_metrics *hm = &h->m;
    gp_metric_inc(hm->requests, o);
    if (start_ns)
        gp_metric_observe(hm->duration, (double)(uv_hrtime() - start_ns) / 1e9);
    gp_metric_add(hm->bytes, "from_bridge", (double)from_bridge);
    gp_metric_add(hm->bytes, "to_bridge", (double)to_bridge);
}

/* Gauges read off the running state. */
static void collect(hs_house *h) {
    hs_metrics *hm = &h->m;
    gp_metric_set(hm->connected, NULL, hs_tunnel_live(h->tunnel));
    size_t entries, bytes;
    uint64_t evicted;
    hs_cache_stats(h->cache, &entries, &bytes, &evicted);
    gp_metric_set(hm->cache_entries, NULL, (double)entries);
    gp_metric_set(hm->cache_bytes, NULL, (double)bytes);
    double rtt, loss;
    uint64_t retx, fec;
    hs_tunnel_link(h->tunnel, &rtt, &loss, &retx, &fec);
    gp_metric_set(hm->rtt, NULL, rtt / 1000.0);
    gp_metric_set(hm->rudp_loss, NULL, loss);
    gp_metric_add(hm->rudp_retx, NULL, (double)retx - gp_metric_value(hm->rudp_retx, NULL));
    gp_metric_add(hm->rudp_fec, NULL, (double)fec - gp_metric_value(hm->rudp_fec, NULL));
    /* The L3 tunnel's counters are its own: ours are brought up to them. */
    const struct hs_l3 *l3 = hs_tunnel_l3(h->tunnel);
    hs_l3_counters n;
    hs_l3_counters_get(l3, &n);
    gp_metric_set(hm->tun_up, NULL, hs_l3_granted(l3));
    const struct {
        gp_metric *m;
        const char *label;
        uint64_t v;
    } tot[] = {
        {hm->tun_packets, "in", n.pkts_in},          {hm->tun_packets, "out", n.pkts_out},
        {hm->tun_bytes, "in", n.bytes_in},           {hm->tun_bytes, "out", n.bytes_out},
        {hm->tun_drops, TUN_DROPS[0], n.denied},     {hm->tun_drops, TUN_DROPS[1], n.bad},
        {hm->tun_drops, TUN_DROPS[2], n.no_tunnel},  {hm->tun_drops, TUN_DROPS[3], n.too_big},
        {hm->tun_drops, TUN_DROPS[4], n.queue_full}, {hm->tun_drops, TUN_DROPS[5], n.write_fail},
    };
    for (size_t i = 0; i < sizeof tot / sizeof tot[0]; i++)
        gp_metric_add(tot[i].m, tot[i].label,
                      (double)tot[i].v - gp_metric_value(tot[i].m, tot[i].label));
}

/* --- routes ----------------------------------------------------------------------------- */

/* The probes of bridge/admin/ADMIN.md, answered as gp_admin_route_probes answers them; routed here
 * with the house as their pointer (the probes' record carries none). */
static void on_healthz(gp_admin_call *c, const gp_http_request *req, void *ud) {
    (void)ud;
    if (gp_admin_get_only(c, req))
        gp_admin_reply(c, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
}

static void on_readyz(gp_admin_call *c, const gp_http_request *req, void *ud) {
    hs_house *h = ud;
    if (!gp_admin_get_only(c, req))
        return;
    if (hs_tunnel_live(h->tunnel)) {
        gp_admin_reply(c, 200, "text/plain; charset=utf-8", NULL, "ready\n", 6);
        return;
    }
    static const char body[] = "{\"ready\":false,\"reason\":\"not_connected\"}";
    gp_admin_reply(c, 503, "application/json", NULL, body, sizeof body - 1);
}

static void on_metrics(gp_admin_call *c, const gp_http_request *req, void *ud) {
    hs_house *h = ud;
    if (!gp_admin_get_only(c, req))
        return;
    collect(h);
    size_t len;
    char *text = gp_metrics_render(h->m.reg, &len);
    if (!text) {
        gp_admin_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    gp_admin_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
}

int hs_admin_start(hs_house *h, void (*log)(int level, const char *event, const char *kv)) {
    const hs_config *c = &h->cfg;
    if (c->admin_listen < 0)
        return 0;
    gp_admin_cfg ac = {
        .bind = c->admin_bind, .port = (int)c->admin_listen, .hosts = c->admin_host, .log = log};
    h->admin = gp_admin_new(h->loop, &ac);
    if (!h->admin)
        return -1;
    if (gp_admin_route(h->admin, "/healthz", 0, on_healthz, h) != 0 ||
        gp_admin_route(h->admin, "/readyz", 0, on_readyz, h) != 0 ||
        gp_admin_route(h->admin, "/metrics", 0, on_metrics, h) != 0) {
        gp_admin_close(h->admin);
        h->admin = NULL;
        return -1;
    }
    int port = gp_admin_listen(h->admin);
    if (port < 0) {
        gp_admin_close(h->admin);
        h->admin = NULL;
        return -1;
    }
    hs_log(HS_LOG_INFO, "listening", "transport=admin port=%d bind=%s house=%s", port,
           hs_qs(c->admin_bind), c->id);
    return 0;
}

void hs_admin_stop(hs_house *h) {
    gp_admin_close(h->admin);
    h->admin = NULL;
}

void hs_admin_final(hs_house *h) {
    gp_metrics_free(h->m.reg);
    memset(&h->m, 0, sizeof h->m);
}
