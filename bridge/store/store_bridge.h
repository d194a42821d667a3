/* store_bridge.h — the store's bridge family: a running bridge's lease <p>:bridge:<bid>, its
 * stats <p>:bstats:<bid> and their index <p>:bridges (plain commands, bridge/daemon/main.c and
 * stats.c; parsed by store_views.c), and the janitor's lock <p>:janitor, whose script is
 * here as Lua text (sent by bridge/daemon/janitor.c). */
#ifndef GP_STORE_BRIDGE_H
#define GP_STORE_BRIDGE_H

/* The fields of <p>:bstats:<bid> (bridge/admin/ADMIN.md), written by bridge/admin/stats.c every
 * second and read by store_views.c (gp_reg_bstats_parse) for `top`. */
#define GP_BSTATS_ID "id"
#define GP_BSTATS_HOST "host"
#define GP_BSTATS_PID "pid"
#define GP_BSTATS_SINCE "since_ms"
#define GP_BSTATS_TS "ts_ms"
#define GP_BSTATS_HOUSES "houses"
#define GP_BSTATS_REQ_TOTAL "req_total"
#define GP_BSTATS_ERR_TOTAL "err_total"
#define GP_BSTATS_BYTES_IN "bytes_in"
#define GP_BSTATS_BYTES_OUT "bytes_out"
#define GP_BSTATS_CONNECTS "connects_total"
#define GP_BSTATS_AUTH_FAILURES "auth_failures_total"
#define GP_BSTATS_REDIS_RTT "redis_rtt_ms"

/* KEYS: lock. ARGV: bridge id, ttl ms. SET NX PX, or renew if it is already ours. */
#define GP_LUA_JANITOR_LOCK                                                                        \
    "local v = redis.call('GET', KEYS[1])\n"                                                       \
    "if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"         \
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"                  \
    "return 0\n"

#endif
