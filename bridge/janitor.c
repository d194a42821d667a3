/* janitor.c — the 504 for requests to houses nobody holds. A request waits in its stream
 * while its house is away (it may be moments from reconnecting); once its deadline has
 * passed somebody must answer it. One bridge at a time (a short lock key) walks the request
 * streams a slice per tick (SCAN MATCH <p>:{*}:req TYPE stream — not the registry: a
 * request for a house id that was never registered, a producer's typo, is owed its 504 too),
 * and for each house with no live holder answers the expired entries at the head of its
 * stream. Bounded work per tick. I/O side. */
#include "bridge.h"

#include <stdlib.h>
#include <string.h>

#define LOCK_MS 3000
#define KEYS_PER_TICK 1000 /* SCAN COUNT: keys looked at per tick, of any kind */
#define ENTRIES_PER_HOUSE 50

/* KEYS: lock. ARGV: bridge id, ttl ms. SET NX PX, or renew if it is already ours. */
static br_script s_lock = {
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "return 0\n",
    ""};

static struct {
    int busy;         /* a pass is running */
    unsigned pending; /* outstanding commands of this pass */
    char cursor[32];  /* SCAN cursor on node `node`, kept across ticks */
    int node;         /* a cluster is walked one node after the other */
} J = {0, 0, "0", 0};

typedef struct jhouse {
    char id[GP_MAX_HOUSE_ID + 1];
    char holder[80];
} jhouse;

void br_janitor_load_scripts(void) {
    br_db_load_script(g_br.db, &s_lock);
}

static void step_done(void) {
    if (J.pending && --J.pending == 0)
        J.busy = 0;
}

static int jsend(br_redis_fn fn, void *ud, const br_args *a) {
    J.pending++;
    if (br_db_cmd(g_br.db, fn, ud, a) == 0)
        return 0;
    J.pending--;
    return -1;
}

static void on_range(redisReply *rep, void *ud) {
    jhouse *h = ud;
    if (rep && rep->type == REDIS_REPLY_ARRAY && !br_house_find(h->id)) {
        uint64_t now = br_now_redis();
        char reqkey[GP_KEY_MAX];
        gp_key_req(reqkey, g_br.cfg.prefix, h->id);
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
                continue;
            br_entry en;
            br_entry_parse(e, g_br.cfg.max_body, &en);
            if (en.status < 0 || en.deadline > now)
                continue;
            if (en.status) {
                br_reply_error(NULL, h->id, reqkey, &en, en.status, en.error, en.message,
                               h->holder);
            } else {
                gp_metric_inc(g_bm.janitor_timeouts, NULL);
                br_reply_error(NULL, h->id, reqkey, &en, 504, "timeout",
                               "no bridge holds this house", h->holder);
            }
        }
    }
    free(h);
    step_done();
}

static void scan_stream(jhouse *h) {
    char key[GP_KEY_MAX];
    gp_key_req(key, g_br.cfg.prefix, h->id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XRANGE");
    br_args_str(&a, key);
    br_args_str(&a, "-");
    br_args_str(&a, "+");
    br_args_str(&a, "COUNT");
    br_args_u64(&a, ENTRIES_PER_HOUSE);
    if (jsend(on_range, h, &a) != 0)
        free(h);
}

/* The state names a holder: it holds the house only while its lease lives (a bridge killed
 * with -9 leaves its state behind). */
static void on_lease(redisReply *rep, void *ud) {
    jhouse *h = ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        scan_stream(h);
    else
        free(h);
    step_done();
}

static void on_state(redisReply *rep, void *ud) {
    jhouse *h = ud;
    if (!rep || rep->type == REDIS_REPLY_ERROR || br_house_find(h->id)) {
        free(h);
    } else if (rep->type == REDIS_REPLY_STRING && rep->len > 0) {
        snprintf(h->holder, sizeof h->holder, "%.*s", (int)rep->len, rep->str);
        char key[GP_KEY_MAX];
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "EXISTS");
        br_args_str(&a, gp_key_bridge(key, g_br.cfg.prefix, h->holder) > 0 ? key : "");
        if (jsend(on_lease, h, &a) != 0)
            free(h);
    } else {
        scan_stream(h);
    }
    step_done();
}

static void on_scan(redisReply *rep, void *ud) {
    (void)ud;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len < sizeof J.cursor &&
        rep->element[1]->type == REDIS_REPLY_ARRAY) {
        memcpy(J.cursor, rep->element[0]->str, rep->element[0]->len + 1);
        if (strcmp(J.cursor, "0") == 0) /* this node is done: the next one */
            J.node = (J.node + 1) % br_db_nodes(g_br.db);
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            char id[GP_MAX_HOUSE_ID + 1];
            int n = k->type == REDIS_REPLY_STRING
                        ? gp_key_house_of_req(k->str, k->len, g_br.cfg.prefix, id, sizeof id)
                        : -1;
            if (n <= 0 || !gp_house_id_valid((gp_str){(const uint8_t *)id, (size_t)n}) ||
                br_house_find(id))
                continue;
            jhouse *h = calloc(1, sizeof *h);
            if (!h)
                break;
            memcpy(h->id, id, (size_t)n + 1);
            char key[GP_KEY_MAX];
            gp_key_state(key, g_br.cfg.prefix, h->id);
            br_args a;
            br_args_init(&a);
            br_args_str(&a, "HGET");
            br_args_str(&a, key);
            br_args_str(&a, "bridge");
            if (jsend(on_state, h, &a) != 0)
                free(h);
        }
    }
    step_done();
}

static void on_lock(redisReply *rep, void *ud) {
    (void)ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        /* The prefix is literal: escape what a glob pattern would read. */
        char pat[GP_KEY_MAX * 2 + 16], *o = pat;
        for (const char *p = g_br.cfg.prefix; *p; p++) {
            if (strchr("*?[]\\", *p))
                *o++ = '\\';
            *o++ = *p;
        }
        strcpy(o, ":{*}:req");
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "SCAN");
        br_args_str(&a, J.cursor);
        br_args_str(&a, "MATCH");
        br_args_str(&a, pat);
        br_args_str(&a, "COUNT");
        br_args_u64(&a, KEYS_PER_TICK);
        br_args_str(&a, "TYPE");
        br_args_str(&a, "stream");
        if (J.node >= br_db_nodes(g_br.db))
            J.node = 0;
        J.pending++;
        if (br_db_cmd_node(g_br.db, J.node, on_scan, NULL, &a) != 0) {
            J.pending--; /* that node is away: go on with the next */
            J.node = (J.node + 1) % br_db_nodes(g_br.db);
            strcpy(J.cursor, "0");
        }
    }
    step_done();
}

void br_janitor_tick(uint64_t now) {
    (void)now;
    if (J.busy || g_br.stopping || !g_br.time_ok || !br_db_ready(g_br.db))
        return;
    char key[GP_KEY_MAX];
    gp_key_janitor(key, g_br.cfg.prefix);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, key);
    br_args_str(&a, g_br.cfg.bridge_id);
    br_args_u64(&a, LOCK_MS);
    J.busy = 1;
    J.pending = 1;
    if (br_db_eval(g_br.db, &s_lock, on_lock, NULL, 1, &a) != 0)
        J.busy = 0, J.pending = 0;
}
