/* store_state.h — the store's live state of a house, <p>:{h}:state (README.md's key layout):
 * the hash the bridge holding a house keeps while it holds it (its lease: PEXPIRE), written by
 * the claim and refresh scripts below (sent by bridge/daemon/house.c). Its field names, its
 * scripts, the one struct it is read into and the one parser of it, shared by the daemon's JSON API
 * (api_body.c), the CLI's `house list` / `house show` and `top` (registry.c). Pure: no I/O; fuzzed
 * by tests/fuzz/fuzz_registry.c and tests/fuzz/fuzz_api_house.c. */
#ifndef GP_STORE_STATE_H
#define GP_STORE_STATE_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* The fields (README.md). The scripts that write them name them in their Lua text. */
#define GP_STATE_BRIDGE "bridge"       /* id of the bridge holding the house */
#define GP_STATE_TRANSPORT "transport" /* ws, wss or rudp */
#define GP_STATE_SINCE "since"         /* ms of the claim */
#define GP_STATE_LAST_SEEN "last_seen" /* ms of the last sign of life */
#define GP_STATE_RTT "rtt_ms"          /* ping RTT (rudp: smoothed RTT), ms to 0.001 */
#define GP_STATE_EPOCH "epoch"         /* the fencing epoch of this connection */
#define GP_STATE_ADDR "addr"           /* the house's address as the bridge saw it */
#define GP_STATE_REQ_TOTAL "req_total" /* counters of the connection, written by its bridge */
#define GP_STATE_ERR_TOTAL "err_total"
#define GP_STATE_BYTES_IN "bytes_in"
#define GP_STATE_BYTES_OUT "bytes_out"
#define GP_STATE_LOSS "loss_pct"    /* rudp's loss estimate, 0 for wss */
#define GP_STATE_FEC "fec_repaired" /* rudp: the house's packets rebuilt by FEC */
/* The L3 tunnel (proto/TUN.md), once granted: the house's addresses, and its packets and
 * bytes in (from the house into the hub's device) and out, and those dropped. */
#define GP_STATE_TUN_ADDR "tun_addr"
#define GP_STATE_TUN_PKTS_IN "tun_pkts_in"
#define GP_STATE_TUN_PKTS_OUT "tun_pkts_out"
#define GP_STATE_TUN_BYTES_IN "tun_bytes_in"
#define GP_STATE_TUN_BYTES_OUT "tun_bytes_out"
#define GP_STATE_TUN_DROPS "tun_drops"
#define GP_STATE_TS "ts_ms" /* when the bridge wrote the counters */

/* One house's live state. Strings are NUL-terminated, control bytes replaced by '?', "..."
 * at the end when truncated; empty when absent. Numbers are -1 when absent or not numbers. */
typedef struct gp_state {
    int connected; /* the hash exists */
    char bridge[128], transport[16], addr[64];
    long long since_ms, last_seen_ms, epoch;
    double rtt_ms; /* 0.1 ms resolution */
    long long req_total, err_total, bytes_in, bytes_out, ts_ms;
    double loss_pct;
    long long fec_repaired;
    char tun_addr[96]; /* empty: no L3 tunnel */
    long long tun_pkts_in, tun_pkts_out, tun_bytes_in, tun_bytes_out, tun_drops;
} gp_state;

void gp_state_init(gp_state *s); /* nothing known: not connected */

/* A house's state as `house list`, `top`, the JSON API and `request --fail-fast` name it
 * (README.md): "disabled" (its registry hash says so; wins, as a house still held is about to
 * be closed by its bridge), "online" (a bridge holds it: its live state exists) or
 * "offline". */
#define GP_HOUSE_ONLINE "online"
#define GP_HOUSE_OFFLINE "offline"
#define GP_HOUSE_DISABLED_STATE "disabled"
const char *gp_house_state(int disabled, const gp_state *st);
/* HGETALL <p>:{h}:state into s (fields it does not know are ignored; any reply is safe). */
void gp_state_parse(gp_state *s, const redisReply *r);

/* Values of Redis replies as the store reads them (anyone with access may have written
 * them): an integer / a finite number written as text, -1 when absent or not one; a string
 * copied into dst[cap] as gp_state's strings are. */
long long gp_reply_ll(const redisReply *v);
double gp_reply_num(const redisReply *v);
void gp_reply_copy(char *dst, size_t cap, const redisReply *v);
/* A string reply equal to name (a field's name in what HGETALL or XREAD gave). */
int gp_reply_is(const redisReply *k, const char *name);

/* A hash read into a struct by a table of its fields: each field's name, where its value goes
 * (offset in the struct) and as what (gp_reply_ll into a long long, gp_reply_num into a
 * double, gp_reply_copy into a char array of `cap` bytes). The live state and a bridge's stats
 * hash (store_views.c) are both read this way. */
typedef struct gp_hash_field {
    const char *name;
    size_t off;
    enum { GP_HF_LL, GP_HF_NUM, GP_HF_STR } kind;
    size_t cap;
} gp_hash_field;
#define GP_HF_LL_OF(type, name, member)                                                            \
    { name, offsetof(type, member), GP_HF_LL, 0 }
#define GP_HF_NUM_OF(type, name, member)                                                           \
    { name, offsetof(type, member), GP_HF_NUM, 0 }
#define GP_HF_STR_OF(type, name, member)                                                           \
    { name, offsetof(type, member), GP_HF_STR, sizeof(((type *)0)->member) }
/* An HGETALL reply (field, value, field, value, ...) into dst by fields[0..n): a field named
 * exactly as in the table is read (the last one wins), any other field, and any entry that is
 * not a string, is skipped. Any reply is safe. */
void gp_hash_parse(void *dst, const gp_hash_field *fields, size_t n, const redisReply *r);

/* --- the scripts of the family (Lua text; the bridge sends each with its own client) ------
 * The claim, refresh and release of a house's lease (the state hash and the fencing epoch,
 * bridge/daemon/house.c), and the rudp:// initiation's replay floor (<p>:{h}:rudp_ts,
 * bridge/daemon/udp.c). Every script touches the keys of one house only (one Cluster slot). */

/* KEYS: epoch, state, house. ARGV: bridge, transport, now, addr, lease ms, fence channel
 * prefix, house id.
 * New epoch and a fresh state; the previous holder (another bridge) hears of it on its
 * fence channel. -1, and nothing changes, when the house is disabled (checked at
 * authentication already; this closes the window of a disable in between). The house hash's
 * last_seen and last_bridge (store_house.h) name this bridge from now on; a house removed in
 * between gets no hash back. */
#define GP_LUA_STATE_CLAIM                                                                         \
    "if redis.call('HGET', KEYS[3], 'disabled') == '1' then return -1 end\n"                       \
    "local e = redis.call('INCR', KEYS[1])\n"                                                      \
    "local old = redis.call('HGET', KEYS[2], 'bridge')\n"                                          \
    "redis.call('DEL', KEYS[2])\n"                                                                 \
    "redis.call('HSET', KEYS[2], 'bridge', ARGV[1], 'transport', ARGV[2], 'since', ARGV[3],\n"     \
    "  'last_seen', ARGV[3], 'epoch', e, 'addr', ARGV[4], 'req_total', 0, 'err_total', 0,\n"       \
    "  'bytes_in', 0, 'bytes_out', 0, 'loss_pct', 0)\n"                                            \
    "redis.call('PEXPIRE', KEYS[2], ARGV[5])\n"                                                    \
    "if redis.call('EXISTS', KEYS[3]) == 1 then\n"                                                 \
    "  redis.call('HSET', KEYS[3], 'last_seen', ARGV[3], 'last_bridge', ARGV[1])\n"                \
    "end\n"                                                                                        \
    "if old and old ~= ARGV[1] then\n"                                                             \
    "  redis.call('PUBLISH', ARGV[6] .. old, e .. ' ' .. ARGV[7])\n"                               \
    "end\n"                                                                                        \
    "return e\n"

/* KEYS: epoch, state, house. ARGV: epoch, bridge, transport, since, last_seen, rtt_ms, addr,
 * lease, req_total, err_total, bytes_in, bytes_out, loss_pct, fec_repaired, tun_addr,
 * tun_pkts_in, tun_pkts_out, tun_bytes_in, tun_bytes_out, tun_drops (the live stats of
 * bridge/admin/ADMIN.md; tun_* written only when tun_addr is not empty), ts_ms (when they were
 * counted, Redis's clock: `top` measures rates against it), mark ('1': last_seen and the
 * bridge go into the house hash too, store_house.h; the bridge asks for it at most once a
 * third of the lease, however often the counters are written, so that the house's "offline
 * since" is never older than that when the bridge dies without a word).
 * 0 when another connection has taken the house (a newer epoch). A missing epoch key means
 * Redis lost its data (restart without persistence): re-assert ours rather than drop a
 * house that is still connected. */
#define GP_LUA_STATE_REFRESH                                                                       \
    "local e = redis.call('GET', KEYS[1])\n"                                                       \
    "if e == false then redis.call('SET', KEYS[1], ARGV[1]) e = ARGV[1] end\n"                     \
    "if e ~= ARGV[1] then return 0 end\n"                                                          \
    "redis.call('HSET', KEYS[2], 'bridge', ARGV[2], 'transport', ARGV[3], 'since', ARGV[4],\n"     \
    "  'last_seen', ARGV[5], 'rtt_ms', ARGV[6], 'epoch', ARGV[1], 'addr', ARGV[7],\n"              \
    "  'req_total', ARGV[9], 'err_total', ARGV[10], 'bytes_in', ARGV[11],\n"                       \
    "  'bytes_out', ARGV[12], 'loss_pct', ARGV[13], 'fec_repaired', ARGV[14], 'ts_ms', "           \
    "ARGV[21])\n"                                                                                  \
    "if ARGV[15] ~= '' then\n"                                                                     \
    "  redis.call('HSET', KEYS[2], 'tun_addr', ARGV[15], 'tun_pkts_in', ARGV[16],\n"               \
    "    'tun_pkts_out', ARGV[17], 'tun_bytes_in', ARGV[18], 'tun_bytes_out', ARGV[19],\n"         \
    "    'tun_drops', ARGV[20])\n"                                                                 \
    "end\n"                                                                                        \
    "redis.call('PEXPIRE', KEYS[2], ARGV[8])\n"                                                    \
    "if ARGV[22] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then\n"                             \
    "  redis.call('HSET', KEYS[3], 'last_seen', ARGV[5], 'last_bridge', ARGV[2])\n"                \
    "end\n"                                                                                        \
    "return 1\n"

/* KEYS: epoch, state, house. ARGV: epoch, last_seen (ms: when the bridge last heard from the
 * house), bridge. Clears the state only if it is still ours, and then records in the house
 * hash (if it still exists) when and where the house was last seen: its "offline since". */
#define GP_LUA_STATE_RELEASE                                                                       \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"                                 \
    "redis.call('DEL', KEYS[2])\n"                                                                 \
    "if redis.call('EXISTS', KEYS[3]) == 1 then\n"                                                 \
    "  redis.call('HSET', KEYS[3], 'last_seen', ARGV[2], 'last_bridge', ARGV[3])\n"                \
    "end\n"                                                                                        \
    "return 1\n"

/* KEYS: house hash, rudp_ts. The stored secret and the last accepted initiation time (a
 * disabled house is refused by the claim, GP_LUA_STATE_CLAIM, once its session is up). */
#define GP_LUA_RUDP_LOOKUP                                                                         \
    "return {redis.call('HGET', KEYS[1], 'secret'),\n"                                             \
    "        redis.call('GET', KEYS[2])}\n"

/* KEYS: rudp_ts. ARGV: timestamp. Only ever moves forward. */
#define GP_LUA_RUDP_TS                                                                             \
    "local t = tonumber(redis.call('GET', KEYS[1]) or '0')\n"                                      \
    "if tonumber(ARGV[1]) > t then redis.call('SET', KEYS[1], ARGV[1]) end\n"                      \
    "return 1\n"

#endif
