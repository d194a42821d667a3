/* stats.h — what a bridge tells about itself (stats.c): the metrics of bridge/admin/ADMIN.md,
 * counted where things happen through env->metrics and the br_stats_* calls, and the live stats it
 * keeps in Redis. It reads the rest of the daemon only through the br_stats_src given at
 * init (main.c fills it), so the modules that count can include this header freely. */
#ifndef BR_STATS_H
#define BR_STATS_H

#include "../daemon/conn.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

struct gp_admin;

typedef struct br_metrics {
    gp_metrics *reg;
    gp_metric *houses, *connections, *disconnects, *auth_failures, *requests, *forwarded, *duration,
        *bytes, *compressed, *rtt, *rudp_loss, *rudp_retx, *rudp_fec, *redis_rtt, *redis_reconnects,
        *pending_claimed, *fenced, *janitor_timeouts, *admin_conns, *preauth, *preauth_shed,
        *accept_pauses, *log_suppressed;
    gp_metric *tun_houses, *tun_packets, *tun_bytes, *tun_drops;  /* the L3 tunnel's */
    gp_metric *invalid_requests, *reply_failures, *bad_responses; /* requests.c */
} br_metrics;

/* The L3 tunnel's bridge-wide figures (zeros without --tun): houses granted now, packets and
 * bytes in (from houses into the hub) and out (to houses), and packets dropped, by reason. */
#define BR_STATS_TUN_REASONS 32
typedef struct br_stats_tun {
    uint64_t houses, pkts_in, pkts_out, bytes_in, bytes_out;
    size_t nreasons; /* <= BR_STATS_TUN_REASONS; always the same reasons, in the same order */
    const char *reason[BR_STATS_TUN_REASONS]; /* static strings */
    uint64_t drops[BR_STATS_TUN_REASONS];
} br_stats_tun;

/* The read-only view of the daemon that the gauges and the live stats are taken from. */
typedef struct br_stats_src {
    const br_env *env;
    br_metrics *metrics;           /* filled by br_stats_new (env->metrics points here) */
    const br_conns *conns;         /* every connection (RTT by transport, dirty state) */
    const unsigned *nlive;         /* houses held now */
    struct gp_admin *const *admin; /* the admin port (its connections), *admin NULL: off */
    void *ud;
    void (*state_update)(void *ud, br_conn *c); /* house.c: write c's state hash now */
    /* udp.c: mean RTT and loss over rudp sessions, retransmits and FEC repairs since start */
    void *link_ud;
    void (*link_metrics)(void *link_ud, double *rtt_ms, double *loss, uint64_t *retx,
                         uint64_t *fec);
    /* l3.c: the L3 tunnel's totals (link_ud) */
    void (*tun_metrics)(void *link_ud, br_stats_tun *out);
} br_stats_src;

typedef struct br_stats br_stats;

/* The metrics' registry (into src->metrics) and the live stats' state; src is kept. NULL:
 * out of memory. main.c makes it; the request core counts through it. */
br_stats *br_stats_new(const br_stats_src *src);
void br_stats_free(br_stats *st); /* NULL ok */
void br_stats_tick(br_stats *st, uint64_t now);
char *br_stats_render(br_stats *st, size_t *len);
/* A final reply written for house (its connection c, NULL: none now): the metrics, c's live
 * stats and the house's history (hist.h). fwd_ns: uv_hrtime() when forwarded, 0: never. */
void br_stats_reply(br_stats *st, br_conn *c, const char *house, unsigned status, int is_error,
                    uint64_t fwd_ns);
void br_stats_bytes(br_stats *st, br_conn *c, int from_house, size_t n);
void br_stats_compressed(br_stats *st, size_t before, size_t after);
void br_stats_node_up(br_stats *st, int node); /* also loads the history's script */
/* The request history (hist.h): everything counted and not written yet, sent now (the
 * shutdown; returns the scripts sent); 1 while some is not sent. */
size_t br_stats_history_flush(br_stats *st);
int br_stats_history_pending(const br_stats *st);

#endif
