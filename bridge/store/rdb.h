/* rdb.h — the bridge's Redis: one server or a Redis Cluster, behind one interface. I/O side.
 *
 * Every command is routed by its key's hash slot to the master that owns it (a house's keys
 * all carry its id in braces, so one house lives on one node and its scripts never cross
 * slots). A standalone server is the one-node case: the seed answers CLUSTER SLOTS with an
 * error and owns every slot. In a cluster, a MOVED or ASK reply sends the command on to the
 * node it names and refreshes the slot map; nodes are connected on demand.
 *
 * Pub/sub: keyspace notifications are local to the node that holds the key, so each node
 * gets a subscriber connection and a house's doorbell is subscribed on its stream's node;
 * ordinary channels (PUBLISH, also from scripts) reach every node, so a channel that is not
 * a key's is subscribed on one node only. Every node also gets notify-keyspace-events with
 * K and t (keeping flags already set).
 *
 * Each node's two connections are br_redis ones (redis.h): reconnects, watchdog, timeouts. */
#ifndef BR_RDB_H
#define BR_RDB_H

#include "redis.h"

typedef struct br_db br_db;

typedef struct br_db_cfg {
    const char *host; /* seed (copied) */
    int port, db;     /* db must be 0 for a cluster */
    /* AUTH on every connection of every node, redirections' new nodes included (see
     * br_redis_cfg; copied). */
    const char *user, *pass;
    int tls; /* rediss:// (every node through the TLS relay, tlsrelay.h) */
    unsigned timeout_ms;
    const char *hb_channel; /* subscriber heartbeat channel (copied) */
    /* A node's command connection is up and routing is known: (re)issue per-node setup. */
    void (*on_node_up)(br_db *db, int node);
    void (*on_node_down)(br_db *db, int node);
    /* A node's subscriber is up: subscribe again whatever should be. */
    void (*on_sub_up)(br_db *db, int node);
    /* Every pub/sub push of every node (see br_redis_msg_fn). */
    void (*on_msg)(const char *kind, const char *chan, size_t clen, const char *msg, size_t mlen);
    /* The slot map changed owners: keyspace subscriptions must be made again. */
    void (*on_map_changed)(br_db *db);
} br_db_cfg;

br_db *br_db_new(uv_loop_t *loop, const br_db_cfg *cfg); /* NULL on allocation failure */
void br_db_free(br_db *db);                              /* NULL ok; see br_redis_free */

/* Routing known and every node's command connection up. */
int br_db_ready(const br_db *db);
/* Also every node's keyspace notifications on and its subscriber up: the doorbell rings. */
int br_db_doorbell_ok(const br_db *db);
int br_db_cluster(const br_db *db); /* 1 in a Redis Cluster */
/* 1 when some node's connection was last refused for its credentials (br_redis_auth_failed). */
int br_db_auth_failed(const br_db *db);
int br_db_nodes(const br_db *db);

/* A command routed by its key (the key's position is known per command name; keyless ones
 * go to the node of slot 0). Same contract as br_redis_cmd: 0 and fn is called exactly once
 * (NULL reply: lost, timed out, or not routable), or -1 and fn is not called. */
int br_db_cmd(br_db *db, br_redis_fn fn, void *ud, const br_args *a);
/* A script routed by its first key (KEYS[1]); same contract as br_redis_eval. */
int br_db_eval(br_db *db, br_script *s, br_redis_fn fn, void *ud, int nkeys, const br_args *a);
/* A keyless command for one node (SCAN walks every node: 0 .. br_db_nodes()-1). */
int br_db_cmd_node(br_db *db, int node, br_redis_fn fn, void *ud, const br_args *a);
/* SCRIPT LOAD on every node that is up (each node keeps its own script cache). */
void br_db_load_script(br_db *db, br_script *s);

/* The node holding key's slot (0, the seed, outside a cluster or while the map is unknown). */
int br_db_key_node(const br_db *db, const char *key);
/* A connection of the caller's own to node idx (br_db_key_node), with the database's number,
 * credentials, TLS and timeout: for a blocking read that must not stall the node's command
 * connection. on_up and ud as in br_redis_cfg. NULL: no such node, or out of memory. */
br_redis *br_db_connect(br_db *db, int idx, const char *name, void (*on_up)(br_redis *), void *ud);

/* SUBSCRIBE/UNSUBSCRIBE channel on the subscriber of the node holding `key` (a keyspace
 * channel), or on the first node's when key is NULL (an ordinary channel). 0 or -1. */
int br_db_subscribe(br_db *db, const char *key, const char *channel, int on);

#endif
