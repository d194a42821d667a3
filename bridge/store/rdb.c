/* rdb.c — routing the bridge's Redis commands to one server or across a Redis Cluster (see
 * rdb.h). I/O side: the connections are br_redis ones; this file adds the slot map, the
 * MOVED/ASK redirections and the per-node setup (keyspace notifications). */
#include "rdb.h"

#include "../log.h"
#include "rkeys.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NSLOTS 16384
#define MAX_NODES 64
#define MAX_HOPS 5
#define REFRESH_MIN_MS 1000

typedef struct node {
    br_db *db;
    int idx;
    char host[256];
    int port;
    br_redis *cmd, *sub;
    int keyspace_ok;
    int owns; /* holds at least one slot */
} node;

enum { MODE_UNKNOWN, MODE_SINGLE, MODE_CLUSTER };

struct br_db {
    uv_loop_t *loop;
    br_db_cfg cfg;
    br_redis_strs s; /* the seed node's host, heartbeat channel, user, password */
    int mode;
    node *nodes[MAX_NODES];
    int nnodes;
    uint8_t slot_node[NSLOTS];
    int refreshing;
    uint64_t last_refresh_ms;
};

/* --- slots -------------------------------------------------------------------------------- */

/* Position of the key in a command we send, 0 when it has none. */
static int key_index(const br_args *a) {
    static const struct {
        const char *name;
        int idx;
    } t[] = {{"XADD", 1},   {"PEXPIRE", 1}, {"HGET", 1},          {"HSET", 1},
             {"DEL", 1},    {"SET", 1},     {"GET", 1},           {"EXISTS", 1},
             {"XRANGE", 1}, {"XLEN", 1},    {"XACK", 1},          {"XDEL", 1},
             {"XGROUP", 2}, {"EXPIRE", 1},  {"HMGET", 1},         {"HGETALL", 1},
             {"HDEL", 1},   {"SADD", 1},    {"SREM", 1},          {"SMEMBERS", 1},
             {"LRANGE", 1}, {"ZADD", 1},    {"ZRANGEBYSCORE", 1}, {"ZREMRANGEBYSCORE", 1}};
    if (a->n < 1)
        return 0;
    if (a->l[0] == 5 && strncasecmp(a->v[0], "XREAD", 5) == 0) { /* its first key follows STREAMS */
        for (int i = 1; i + 1 < a->n; i++)
            if (a->l[i] == 7 && strncasecmp(a->v[i], "STREAMS", 7) == 0)
                return i + 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (a->l[0] == strlen(t[i].name) && strncasecmp(a->v[0], t[i].name, a->l[0]) == 0)
            return t[i].idx < a->n ? t[i].idx : 0;
    return 0;
}

static node *node_for_slot(br_db *db, unsigned slot) {
    if (db->mode == MODE_UNKNOWN)
        return NULL;
    unsigned i = db->slot_node[slot];
    return i < (unsigned)db->nnodes ? db->nodes[i] : NULL;
}

/* --- nodes -------------------------------------------------------------------------------- */

static void refresh_map(br_db *db);
static node *node_get(br_db *db, const char *host, int port);

static int all_ready(const br_db *db, int doorbell) {
    if (db->mode == MODE_UNKNOWN)
        return 0;
    for (int i = 0; i < db->nnodes; i++) {
        const node *n = db->nodes[i];
        if (!n->owns)
            continue;
        if (!br_redis_ready(n->cmd))
            return 0;
        if (doorbell && (!n->keyspace_ok || !br_redis_ready(n->sub)))
            return 0;
    }
    return 1;
}

int br_db_ready(const br_db *db) {
    return db && all_ready(db, 0);
}

int br_db_doorbell_ok(const br_db *db) {
    return db && all_ready(db, 1);
}

int br_db_auth_failed(const br_db *db) {
    if (!db)
        return 0;
    for (int i = 0; i < db->nnodes; i++)
        if (br_redis_auth_failed(db->nodes[i]->cmd) || br_redis_auth_failed(db->nodes[i]->sub))
            return 1;
    return 0;
}

int br_db_cluster(const br_db *db) {
    return db->mode == MODE_CLUSTER;
}

int br_db_nodes(const br_db *db) {
    return db->nnodes;
}

static void on_config_set(redisReply *rep, void *ud) {
    node *n = ud;
    if (rep && rep->type == REDIS_REPLY_STATUS) {
        n->keyspace_ok = 1;
        br_log(BR_LOG_INFO, "keyspace_enabled", "node=%s:%d", n->host, n->port);
    } else if (rep) {
        br_log(BR_LOG_WARN, "keyspace_config_refused", "node=%s:%d err=%s fallback=sweep_1s",
               n->host, n->port,
               br_qs(rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply"));
    }
}

/* Keyspace notifications for streams need K (keyspace channel) and t (stream commands);
 * keep whatever flags the operator already set. */
static void on_config_get(redisReply *rep, void *ud) {
    node *n = ud;
    if (!rep)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        on_config_set(rep, n);
        return;
    }
    const char *cur = rep->element[1]->str;
    int has_k = strchr(cur, 'K') != NULL, has_t = strchr(cur, 't') || strchr(cur, 'A');
    if (has_k && has_t) {
        n->keyspace_ok = 1;
        return;
    }
    char flags[64];
    snprintf(flags, sizeof flags, "%.40s%s%s", cur, has_k ? "" : "K", has_t ? "" : "t");
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "CONFIG");
    br_args_str(&a, "SET");
    br_args_str(&a, "notify-keyspace-events");
    br_args_str(&a, flags);
    br_redis_cmd(n->cmd, on_config_set, n, &a);
}

/* The node's command connection is up and routing is known. */
static void node_setup(node *n) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "CONFIG");
    br_args_str(&a, "GET");
    br_args_str(&a, "notify-keyspace-events");
    br_redis_cmd(n->cmd, on_config_get, n, &a);
    if (n->db->cfg.on_node_up)
        n->db->cfg.on_node_up(n->db, n->idx);
    /* A subscriber that came up before routing was known could not subscribe yet. */
    if (br_redis_ready(n->sub) && n->db->cfg.on_sub_up)
        n->db->cfg.on_sub_up(n->db, n->idx);
}

static void set_single(br_db *db) {
    db->mode = MODE_SINGLE;
    memset(db->slot_node, 0, sizeof db->slot_node);
    db->nodes[0]->owns = 1;
}

/* CLUSTER SLOTS: [[start, end, [host, port, id], replicas...], ...] */
static void on_slots(redisReply *rep, void *ud) {
    br_db *db = ud;
    db->refreshing = 0;
    if (!rep)
        return;
    int was = db->mode;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (db->mode == MODE_UNKNOWN) {
            set_single(db);
            br_log(BR_LOG_DEBUG, "redis_mode", "mode=standalone");
            node_setup(db->nodes[0]);
        }
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY)
        return;
    static uint8_t map[NSLOTS];
    memset(map, 0xff, sizeof map);
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *r = rep->element[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER ||
            r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2 ||
            r->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            r->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = r->element[0]->integer, hi = r->element[1]->integer;
        const char *host = r->element[2]->element[0]->str;
        node *n = node_get(db, *host ? host : db->s.host, (int)r->element[2]->element[1]->integer);
        if (!n || lo < 0 || hi >= NSLOTS || lo > hi)
            continue;
        for (long long s = lo; s <= hi; s++)
            map[s] = (uint8_t)n->idx;
    }
    int changed = memcmp(map, db->slot_node, sizeof map) != 0;
    memcpy(db->slot_node, map, sizeof map);
    for (int i = 0; i < db->nnodes; i++)
        db->nodes[i]->owns = 0;
    for (unsigned s = 0; s < NSLOTS; s++)
        if (map[s] < db->nnodes)
            db->nodes[map[s]]->owns = 1;
    db->mode = MODE_CLUSTER;
    if (was == MODE_UNKNOWN) {
        br_log(BR_LOG_INFO, "redis_mode", "mode=cluster nodes=%d", db->nnodes);
        for (int i = 0; i < db->nnodes; i++)
            if (br_redis_ready(db->nodes[i]->cmd))
                node_setup(db->nodes[i]);
    } else if (changed && db->cfg.on_map_changed) {
        br_log(BR_LOG_INFO, "redis_slots_moved", "nodes=%d", db->nnodes);
        db->cfg.on_map_changed(db);
    }
}

static void refresh_map(br_db *db) {
    uint64_t now = uv_now(db->loop);
    if (db->refreshing || (db->last_refresh_ms && now - db->last_refresh_ms < REFRESH_MIN_MS))
        return;
    for (int i = 0; i < db->nnodes; i++) {
        if (!br_redis_ready(db->nodes[i]->cmd))
            continue;
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "CLUSTER");
        br_args_str(&a, "SLOTS");
        if (br_redis_cmd(db->nodes[i]->cmd, on_slots, db, &a) == 0) {
            db->refreshing = 1;
            db->last_refresh_ms = now;
        }
        return;
    }
}

static void cmd_up(br_redis *r) {
    node *n = br_redis_ud(r);
    br_db *db = n->db;
    if (db->mode == MODE_UNKNOWN) {
        db->last_refresh_ms = 0;
        refresh_map(db); /* on_slots decides the mode and sets every node up */
        return;
    }
    if (db->mode == MODE_CLUSTER) {
        db->last_refresh_ms = 0; /* a node came back: a failover may have moved slots */
        refresh_map(db);
    }
    node_setup(n);
}

static void cmd_down(br_redis *r) {
    node *n = br_redis_ud(r);
    n->keyspace_ok = 0;
    if (n->db->cfg.on_node_down)
        n->db->cfg.on_node_down(n->db, n->idx);
}

static void sub_up(br_redis *r) {
    node *n = br_redis_ud(r);
    if (n->db->mode != MODE_UNKNOWN && n->db->cfg.on_sub_up)
        n->db->cfg.on_sub_up(n->db, n->idx);
}

static void sub_msg(br_redis *r, const char *kind, const char *chan, size_t clen, const char *msg,
                    size_t mlen) {
    node *n = br_redis_ud(r);
    if (n->db->cfg.on_msg)
        n->db->cfg.on_msg(kind, chan, clen, msg, mlen);
}

/* A connection to host:port with the database's number, credentials, TLS and timeout. */
static br_redis_cfg conn_cfg(const br_db *db, const char *name, const char *host, int port,
                             void (*on_up)(br_redis *), void *ud) {
    return (br_redis_cfg){.name = name,
                          .host = host,
                          .port = port,
                          .db = db->cfg.db,
                          .user = db->cfg.user,
                          .pass = db->cfg.pass,
                          .tls = db->cfg.tls,
                          .timeout_ms = db->cfg.timeout_ms,
                          .on_up = on_up,
                          .ud = ud};
}

static node *node_get(br_db *db, const char *host, int port) {
    for (int i = 0; i < db->nnodes; i++)
        if (db->nodes[i]->port == port && strcmp(db->nodes[i]->host, host) == 0)
            return db->nodes[i];
    if (db->nnodes >= MAX_NODES || strlen(host) >= sizeof db->nodes[0]->host)
        return NULL;
    node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->db = db;
    n->idx = db->nnodes;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    br_redis_cfg c = conn_cfg(db, "cmd", host, port, cmd_up, n);
    c.on_down = cmd_down;
    n->cmd = br_redis_new(db->loop, &c);
    c.name = "sub";
    c.hb_channel = db->s.hb;
    c.on_msg = sub_msg;
    c.on_up = sub_up;
    c.on_down = NULL;
    n->sub = br_redis_new(db->loop, &c);
    if (!n->cmd || !n->sub) {
        br_redis_free(n->cmd);
        br_redis_free(n->sub);
        free(n);
        return NULL;
    }
    db->nodes[db->nnodes++] = n;
    return n;
}

br_db *br_db_new(uv_loop_t *loop, const br_db_cfg *cfg) {
    br_db *db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->loop = loop;
    db->cfg = *cfg;
    if (br_redis_strs_dup(&db->s, cfg->host, cfg->hb_channel ? cfg->hb_channel : "gp:hb", cfg->user,
                          cfg->pass) != 0) {
        free(db);
        return NULL;
    }
    db->cfg.user = db->s.user, db->cfg.pass = db->s.pass;
    if (!node_get(db, cfg->host, cfg->port)) {
        br_redis_strs_free(&db->s);
        free(db);
        return NULL;
    }
    return db;
}

void br_db_free(br_db *db) {
    if (!db)
        return;
    for (int i = 0; i < db->nnodes; i++) {
        br_redis_free(db->nodes[i]->cmd);
        br_redis_free(db->nodes[i]->sub);
        free(db->nodes[i]);
    }
    br_redis_strs_free(&db->s);
    free(db);
}

/* --- routed commands ---------------------------------------------------------------------- */

/* In a cluster a command keeps a copy of its arguments, to be sent on after MOVED/ASK. */
typedef struct rq {
    br_db *db;
    br_redis_fn fn;
    void *ud;
    br_script *script; /* NULL: a plain command */
    int nkeys, n, hops;
    unsigned slot;
    char *v[BR_ARGS_MAX];
    size_t l[BR_ARGS_MAX];
} rq;

static void rq_free(rq *q) {
    for (int i = 0; i < q->n; i++)
        free(q->v[i]);
    free(q);
}

static int rq_send(rq *q, node *n, int asking);

/* "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" */
static node *redirect_target(br_db *db, const char *err, unsigned *slot) {
    const char *sp = strchr(err, ' ');
    if (!sp)
        return NULL;
    *slot = (unsigned)strtoul(sp + 1, NULL, 10);
    const char *addr = strchr(sp + 1, ' ');
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon - addr - 1 <= 0 || colon - addr - 1 >= 256 || *slot >= NSLOTS)
        return NULL;
    char host[256];
    memcpy(host, addr + 1, (size_t)(colon - addr - 1));
    host[colon - addr - 1] = '\0';
    return node_get(db, host[0] ? host : db->s.host, atoi(colon + 1));
}

static void rq_reply(redisReply *rep, void *ud) {
    rq *q = ud;
    int moved = br_reply_is_error(rep, "MOVED "), ask = br_reply_is_error(rep, "ASK ");
    if ((moved || ask) && q->hops < MAX_HOPS) {
        unsigned slot;
        node *n = redirect_target(q->db, rep->str, &slot);
        if (n && moved) {
            q->db->slot_node[slot] = (uint8_t)n->idx;
            n->owns = 1;
            refresh_map(q->db);
        }
        q->hops++;
        if (n && rq_send(q, n, ask) == 0)
            return;
        rep = NULL; /* the node it names is not connected yet: lost, like a timeout */
    }
    if (q->fn)
        q->fn(rep, q->ud);
    rq_free(q);
}

static int rq_send(rq *q, node *n, int asking) {
    br_args a;
    br_args_init(&a);
    for (int i = 0; i < q->n; i++)
        br_args_bin(&a, q->v[i], q->l[i]);
    if (asking) {
        br_args k;
        br_args_init(&k);
        br_args_str(&k, "ASKING");
        if (br_redis_cmd(n->cmd, NULL, NULL, &k) != 0)
            return -1;
    }
    return q->script ? br_redis_eval(n->cmd, q->script, rq_reply, q, q->nkeys, &a)
                     : br_redis_cmd(n->cmd, rq_reply, q, &a);
}

static int route(br_db *db, br_script *s, br_redis_fn fn, void *ud, int nkeys, const br_args *a) {
    if (db->mode == MODE_SINGLE) { /* one node: no slot to compute */
        node *n = db->nodes[0];
        return s ? br_redis_eval(n->cmd, s, fn, ud, nkeys, a) : br_redis_cmd(n->cmd, fn, ud, a);
    }
    int ki = s ? (nkeys > 0 ? 0 : -1) : key_index(a);
    unsigned slot = 0;
    if (ki >= 0 && (s || ki > 0))
        slot = gp_key_slot(a->v[ki], a->l[ki]);
    node *n = node_for_slot(db, slot);
    if (!n)
        return -1;
    rq *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    q->db = db, q->fn = fn, q->ud = ud, q->script = s, q->nkeys = nkeys, q->slot = slot;
    for (int i = 0; i < a->n; i++) {
        q->v[i] = malloc(a->l[i] + 1);
        if (!q->v[i]) {
            rq_free(q);
            return -1;
        }
        q->n = i + 1;
        memcpy(q->v[i], a->v[i], a->l[i]);
        q->l[i] = a->l[i];
    }
    if (rq_send(q, n, 0) != 0) {
        rq_free(q);
        return -1;
    }
    return 0;
}

int br_db_cmd(br_db *db, br_redis_fn fn, void *ud, const br_args *a) {
    return route(db, NULL, fn, ud, 0, a);
}

int br_db_eval(br_db *db, br_script *s, br_redis_fn fn, void *ud, int nkeys, const br_args *a) {
    return route(db, s, fn, ud, nkeys, a);
}

int br_db_cmd_node(br_db *db, int i, br_redis_fn fn, void *ud, const br_args *a) {
    if (i < 0 || i >= db->nnodes || db->mode == MODE_UNKNOWN)
        return -1;
    return br_redis_cmd(db->nodes[i]->cmd, fn, ud, a);
}

void br_db_load_script(br_db *db, br_script *s) {
    for (int i = 0; i < db->nnodes; i++)
        if (br_redis_ready(db->nodes[i]->cmd))
            br_redis_load_script(db->nodes[i]->cmd, s);
}

int br_db_subscribe(br_db *db, const char *key, const char *channel, int on) {
    node *n = node_for_slot(db, key ? gp_key_slot(key, strlen(key)) : 0);
    return n ? br_redis_subscribe(n->sub, channel, on) : -1;
}

int br_db_key_node(const br_db *db, const char *key) {
    if (db->mode != MODE_CLUSTER) /* the seed: one server, or the map not known yet */
        return 0;
    unsigned i = db->slot_node[gp_key_slot(key, strlen(key))];
    return i < (unsigned)db->nnodes ? (int)i : 0;
}

br_redis *br_db_connect(br_db *db, int idx, const char *name, void (*on_up)(br_redis *), void *ud) {
    if (idx < 0 || idx >= db->nnodes)
        return NULL;
    const node *n = db->nodes[idx];
    br_redis_cfg c = conn_cfg(db, name, n->host, n->port, on_up, ud);
    return br_redis_new(db->loop, &c);
}
