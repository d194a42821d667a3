/* registry.h — the house registry in Redis, synchronous (hiredis blocking API), for the
 * `ghostport` CLI and the integration-test harness. I/O side: every function here talks to
 * Redis over the given client (rclient.h). Keys are those of rkeys.h (README.md's key
 * layout), the scripts those of store_house.h, the parsers store_state.c and store_views.c,
 * shared with the daemon's JSON API, which reads the same keys through its own async code. */
#ifndef GP_REGISTRY_H
#define GP_REGISTRY_H

#include "auth.h"

#include <hiredis/hiredis.h>

#include "ippkt.h"
#include "rclient.h"
#include "store_house.h"
#include "store_state.h"
#include "store_tun.h"
#include "tunbook.h"
#include <stddef.h>
#include <stdint.h>

/* Errors (negative), beside GP_ERR_* from gp.h. */
enum {
    GP_REG_EXISTS = -100,    /* house already registered (add without force) */
    GP_REG_NOT_FOUND = -101, /* no such house (rm) */
    GP_REG_REDIS = -102,     /* Redis error or connection lost: message in err */
};

/* Connects to a parsed Redis address (rurl.h: "redis://[user:password@]host:port/db",
 * "host:port", ...) — one server or any node of a Redis Cluster (commands follow MOVED, see
 * rclient.h) — with AUTH when it has a password, SELECT when its db is not 0, then PING.
 * timeout_ms bounds connect and every command (0: no timeout). Returns a client the caller
 * frees with br_rc_free, or NULL with a message in err (*auth_failed, when not NULL, is set
 * to 1 when Redis refused the credentials). */
br_rc *gp_reg_connect(const gp_rurl *u, unsigned timeout_ms, char *err, size_t errlen,
                      int *auth_failed);

/* Parses a 64-hex-digit master key into out[32]. 0 or GP_ERR_INVALID. */
int gp_reg_master_key(const char *hex, uint8_t out[32]);

/* Registers house `id` with `secret` (copied into Redis, sealed when master_key is non-NULL),
 * labels_json (a JSON object text, "{}" if NULL) and created_ms. Without force an existing
 * house is left alone and GP_REG_EXISTS returned; with force its hash is replaced (the
 * fencing epoch and live state are untouched: a connected house stays connected until it
 * reconnects and must then use the new secret). Returns 0, GP_ERR_INVALID (bad id),
 * GP_REG_EXISTS or GP_REG_REDIS. */
int gp_reg_add(br_rc *rc, const char *prefix, const char *id, const uint8_t secret[GP_SECRET_LEN],
               const uint8_t *master_key, const char *labels_json, uint64_t created_ms, int force,
               char *err, size_t errlen);

/* Removes house `id`: its hash, live state, epoch and set member, and frees its L3 tunnel
 * address (its index in <p>:tun: removal is removal, so a house added again under the same id
 * gets an address afresh, maybe another). The request stream is deleted only when purge is set
 * (it holds producers' pending requests and the consumer group). *stream_len (may be NULL)
 * receives the stream's length before any purge; *tun_freed (may be NULL) 1 with the index
 * freed in *tun_index, else 0. The index is read first: a user that may not touch <p>:tun
 * gets GP_REG_REDIS before anything is removed. Returns 0, GP_REG_NOT_FOUND (nothing of the
 * house existed), GP_ERR_INVALID or GP_REG_REDIS. */
int gp_reg_rm(br_rc *rc, const char *prefix, const char *id, int purge, long long *stream_len,
              int *tun_freed, uint64_t *tun_index, char *err, size_t errlen);

/* Deletes the byte keys of every TCP stream of house `id` (sin and sout, found with SCAN: they
 * are per stream, so no script names them); *deleted receives how many went. For
 * `house rm --purge`: without it they expire on their own (2 x idle_ms). Returns 0,
 * GP_ERR_INVALID, GP_REG_REDIS or GP_ERR_NOMEM. */
int gp_reg_rm_streams(br_rc *rc, const char *prefix, const char *id, long long *deleted, char *err,
                      size_t errlen);

/* Reads house `id`'s secret, opening a sealed value with master_key. Returns 0,
 * GP_REG_NOT_FOUND, GP_ERR_AUTH (sealed, and the key is missing or wrong), GP_ERR_INVALID or
 * GP_REG_REDIS. */
int gp_reg_secret(br_rc *rc, const char *prefix, const char *id, const uint8_t *master_key,
                  uint8_t out[GP_SECRET_LEN], char *err, size_t errlen);

/* One registered house as shown by `ghostport house list` and `top`. Strings are
 * NUL-terminated; empty when absent. */
typedef struct gp_reg_house {
    char id[GP_MAX_HOUSE_ID + 1];
    char labels[512]; /* JSON text, truncated with "..." if longer */
    long long created_ms;
    int registered; /* the house hash exists (0: only a stale set member) */
    int disabled;   /* its hash has disabled = 1 (ADMIN.md) */
    gp_state st;    /* its live state (store_state.h): st.connected while a bridge holds it */
    /* When a bridge last heard from it and which (its hash's last_seen, last_bridge:
     * store_house.h; -1 and "" when none has recorded it): while st.connected is 0, the time
     * it has been offline since. */
    long long last_seen_ms;
    char last_bridge[128];
    /* The L3 tunnel (store_tun.h). tun_has: 1 the house has pool index tun_index (fixed by
     * the operator or given by a bridge when it first asked), 0 none yet, -1 unknown (the
     * Redis user may not read <p>:tun). tun4, tun6: its addresses, the index-th host of each
     * pool recorded (family 0: no such pool, or none recorded). */
    int tun_has;
    uint64_t tun_index;
    gp_ip_addr tun4, tun6;
    /* The prefixes it may advertise (its hash's tun_routes, as gp_tun_routes_parse reads it:
     * tunbook.h). */
    gp_cidr tun_routes[GP_TUN_ROUTES_MAX];
    size_t ntun_routes;
} gp_reg_house;

/* Lists registered houses sorted by id into a malloc'd array (*out, freed with free()),
 * count in *n: one SMEMBERS, then both hashes of every house and one HMGET of <p>:tun (the
 * pools and every listed house's index: one key, so one Cluster slot) in one pipeline. A user
 * that may not read <p>:tun gets the houses with tun_has -1. Returns 0 or GP_REG_REDIS /
 * GP_ERR_NOMEM. */
int gp_reg_list(br_rc *rc, const char *prefix, gp_reg_house **out, size_t *n, char *err,
                size_t errlen);

/* Fills *h for one house (registered or not): its hash, state and L3 index (as gp_reg_list).
 * 0 or GP_REG_REDIS. */
int gp_reg_get(br_rc *rc, const char *prefix, const char *id, gp_reg_house *h, char *err,
               size_t errlen);
/* The same without the L3 index (tun_has 0): its hash's shown fields and its state, in one
 * round trip (a pipeline of two commands on one slot), for `request --wait-online`'s polls.
 * 0, GP_ERR_INVALID or GP_REG_REDIS. */
int gp_reg_peek(br_rc *rc, const char *prefix, const char *id, gp_reg_house *h, char *err,
                size_t errlen);

/* Redis's clock (TIME) in ms, or -1 on error. */
long long gp_reg_time_ms(br_rc *rc);

/* Sets (disabled = 1) or clears the `disabled` field of a registered house's hash; when
 * disabling, then PUBLISHes "disable <id>" on <p>:ctl so that the bridge holding the house
 * closes it (ADMIN.md). Enabling publishes nothing: the house is let in at its next
 * connection attempt. Returns 0, GP_REG_NOT_FOUND (no house hash: nothing written),
 * GP_ERR_INVALID (bad id) or GP_REG_REDIS. */
int gp_reg_set_disabled(br_rc *rc, const char *prefix, const char *id, int disabled, char *err,
                        size_t errlen);

/* --- the L3 tunnel's address book, <p>:tun (store_tun.h) --- */

/* Reads the pools. 0; GP_REG_NOT_FOUND when none are recorded yet (no bridge has started with
 * --tun); GP_ERR_INVALID when what is recorded does not parse (message in err); GP_REG_REDIS. */
int gp_reg_tun_pools_get(br_rc *rc, const char *prefix, gp_tun_pools *out, char *err,
                         size_t errlen);

/* The house holding pool index idx into holder[GP_MAX_HOUSE_ID + 1] ("" when free). 0 or
 * GP_REG_REDIS / GP_ERR_INVALID. */
int gp_reg_tun_holder(br_rc *rc, const char *prefix, uint64_t idx, char *holder, char *err,
                      size_t errlen);

/* Gives house `id` pool index idx (GP_TUN_SET_LUA), freeing the one it had; idx 0 only frees
 * (index 0 is the bridges' own address, never a house's: the house gets an index from the
 * pools when it next asks). The house need not be registered. 0; GP_REG_EXISTS when another
 * house holds idx (its id in holder[GP_MAX_HOUSE_ID + 1]; nothing changed); GP_ERR_INVALID;
 * GP_REG_REDIS. */
int gp_reg_tun_set(br_rc *rc, const char *prefix, const char *id, uint64_t idx, char *holder,
                   char *err, size_t errlen);

/* Sets the routes house `id` may advertise (GP_TUN_ROUTES_LUA): r[0..n) stored as
 * gp_cidr_list_format's text, n 0 clears them; claimed first in <p>:tun (GP_TUN_CLAIM_LUA), so
 * that no two houses may route overlapping subnets. 0; GP_REG_EXISTS (one overlaps a route of
 * another house, named in err: nothing written); GP_REG_NOT_FOUND (not registered: nothing
 * written); GP_ERR_INVALID (the list is too long); GP_REG_REDIS. */
int gp_reg_tun_routes_set(br_rc *rc, const char *prefix, const char *id, const gp_cidr *r, size_t n,
                          char *err, size_t errlen);

/* Every key matching the glob `pattern`, SCANning each master of a Redis Cluster (found
 * with CLUSTER SLOTS; at most 16) or the one server. *keys: a malloc'd array of malloc'd
 * NUL-terminated names (gp_reg_keys_free), in no particular order; a key may appear twice
 * if the cluster was resharded meanwhile. Returns 0, GP_REG_REDIS or GP_ERR_NOMEM. */
int gp_reg_scan(br_rc *rc, const char *pattern, char ***keys, size_t *n, char *err, size_t errlen);
void gp_reg_keys_free(char **keys, size_t n);

/* One bridge's live stats: the hash <p>:bstats:<bid> it rewrites every second (ADMIN.md).
 * Numbers are -1 when absent. */
typedef struct gp_reg_bstats {
    char id[128], host[128];
    long long pid, since_ms, ts_ms, houses;
    long long req_total, err_total, bytes_in, bytes_out, connects_total, auth_failures_total;
    double redis_rtt_ms;
} gp_reg_bstats;

/* The stats of every bridge that published in the last 5 s, sorted by id, into a malloc'd
 * array (free()). Which bridges: those of the <p>:bridges index (ZSET of ids the bridges
 * keep), or when there is none, the keys SCAN finds (<p>:bstats:* on every node); then one
 * pipelined HGETALL each (a bridge whose hash expired is left out). Returns 0,
 * GP_ERR_INVALID, GP_REG_REDIS or GP_ERR_NOMEM. */
int gp_reg_bstats_list(br_rc *rc, const char *prefix, gp_reg_bstats **out, size_t *n, char *err,
                       size_t errlen);

/* One completed request from <p>:{h}:recent (ADMIN.md). Strings are copied with control
 * bytes replaced; numbers -1 when absent. */
typedef struct gp_reg_recent_req {
    long long ts_ms, ms;
    int status;
    char id[128], method[24], path[256], error[32];
} gp_reg_recent_req;

/* The newest `max` completed requests of house `id`, newest first, into a malloc'd array
 * (free()). Entries that are not JSON objects are skipped. Returns 0, GP_ERR_INVALID,
 * GP_REG_REDIS or GP_ERR_NOMEM. */
int gp_reg_recent(br_rc *rc, const char *prefix, const char *id, size_t max,
                  gp_reg_recent_req **out, size_t *n, char *err, size_t errlen);

/* The pure parsers (store_views.c), for registry.c and the fuzz target: values come from
 * Redis, written by anyone; strings come out terminated, control bytes replaced.
 * gp_reg_house_init: nothing known of house id[0..idlen). gp_reg_house_parse: the HMGET
 * reply of GP_REG_HOUSE_FIELDS. gp_reg_bstats_parse: HGETALL <p>:bstats:<bid> (an array).
 * gp_reg_recent_parse: one entry of <p>:{h}:recent; 0 when it is not a JSON object. (The
 * L3 address book's values: tunbook.h.) */
#define GP_REG_HOUSE_FIELDS                                                                        \
    GP_HOUSE_LABELS, GP_HOUSE_CREATED, GP_HOUSE_DISABLED, GP_HOUSE_TUN_ROUTES, GP_HOUSE_LAST_SEEN, \
        GP_HOUSE_LAST_BRIDGE
#define GP_REG_NHOUSE_FIELDS 6
void gp_reg_house_init(gp_reg_house *h, const char *id, size_t idlen);
void gp_reg_house_parse(gp_reg_house *h, const redisReply *r);
/* h's state as every view names it: gp_house_state (store_state.h). */
const char *gp_reg_house_state(const gp_reg_house *h);
/* Since when h has been offline (ms), or -1: online, or no bridge recorded it. */
long long gp_reg_offline_since(const gp_reg_house *h);
void gp_reg_bstats_parse(gp_reg_bstats *b, const redisReply *r);
/* The fields of a bridge's stats hash as gp_reg_bstats_parse reads them (store_state.h), in
 * the hash's order: the CLI's `top --json` writes a bridge with the same names. */
extern const gp_hash_field gp_reg_bstats_fields[];
extern const size_t gp_reg_bstats_nfields;
int gp_reg_recent_parse(gp_reg_recent_req *q, const redisReply *e);

#endif
