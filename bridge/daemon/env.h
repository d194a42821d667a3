/* env.h — what the modules below main.c share of the daemon: the loop, the configuration, the
 * Redis handle, the clocks and the keys. main.c owns the one br_env (inside its top-level
 * object), fills it, and hands each module a pointer to it at init; the modules only read
 * it. Everything else a module needs it owns itself or is given at init (its own header). */
#ifndef BR_ENV_H
#define BR_ENV_H

#include "../store/rdb.h"
#include "auth.h"
#include "compress.h"
#include "config.h"

#include <stdint.h>
#include <uv.h>

struct br_metrics; /* admin/stats.h */

typedef struct br_env {
    uv_loop_t *loop;
    const br_config *cfg; /* reloaded in place on SIGHUP: read it at use, do not copy it */
    br_db *db;            /* Redis: one server or a cluster (rdb.h) */
    gp_zctx *zc;
    const uint8_t *master_key; /* sealing key of the house secrets, NULL: none configured */
    const uint8_t *server_key; /* per-process key of the decoy secrets */
    int rdb;                   /* the Redis db number (keyspace channel names) */
    const char *fence_channel; /* <prefix>:fence:<bridge id>: other bridges' claims of ours */
    const char *ctl_channel;   /* <prefix>:ctl: disable/remove a house (ADMIN.md) */
    gp_authlimit *auth_ws;     /* failed-auth budgets of ws/wss houses (SIGHUP replaces them) */
    gp_authlimit *auth_rudp;   /* those of rudp houses (never shared: proto/RUDP.md) */
    int stopping;              /* SIGTERM seen: draining */
    int time_ok;               /* the Redis clock offset is known */
    int64_t time_offset;       /* Redis ms - loop ms */
    uint64_t started_ms;       /* loop ms at start */
    const struct br_metrics *metrics; /* where the modules count (admin/stats.h) */
} br_env;

/* The loop's monotonic ms, and Redis's clock in ms (the loop's plus the offset measured
 * with TIME: deadlines are on Redis's clock, so no clock sync between machines matters). */
static inline uint64_t br_env_now(const br_env *e) {
    return uv_now(e->loop);
}
static inline uint64_t br_env_now_redis(const br_env *e) {
    return (uint64_t)((int64_t)uv_now(e->loop) + e->time_offset);
}

#endif
