/* janitor.c — the 504 for requests to houses nobody holds. A request waits in its stream
 * while its house is away (it may be moments from reconnecting); once its deadline has
 * passed somebody must answer it. One bridge at a time (a short lock key) walks the request
 * streams a slice per tick (SCAN MATCH <p>:{*}:req TYPE stream — not the registry: a
 * request for a house id that was never registered, a producer's typo, is owed its 504 too),
 * and for each house with no live holder answers the entries whose deadline has passed.
 *
 * Deadlines are not in stream order (a 24 h request may sit ahead of a 2 s one), so reading
 * the head of the stream is not enough, and reading all of it costs as much as the backlog.
 * Instead each house has an index in its own slot: <p>:{h}:deadlines (ZSET, entry id scored
 * by deadline) and <p>:{h}:jcursor (the last entry id indexed). One script per visit indexes
 * the entries after the cursor and returns those due; a member whose entry is gone (answered
 * and acknowledged — by the janitor or by a bridge that took the house over —, trimmed,
 * deleted) leaves the index when it next falls due. So a visit costs the new entries plus the
 * due ones, whatever the backlog; due entries are answered through the bridge's settle path
 * (br_reply_error: reply, then XACK+XDEL under the holder check) and leave the index on the
 * visit after, once gone. `house rm --purge` deletes both keys with the stream (store_house.h).
 * Bounded work per tick. I/O side. */
#include "janitor.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_bridge.h"
#include "../store/store_req.h"
#include "../store/store_state.h"
#include "requests.h"

#include <stdlib.h>
#include <string.h>

#define LOCK_MS 3000
#define KEYS_PER_TICK 1000 /* SCAN COUNT: keys looked at per tick, of any kind */
/* Entries per script call (their bodies pass through the script's memory, up to max-body
 * each): new ones indexed, due ones returned. A house with more new entries gets further
 * calls in the same tick, up to INDEX_BATCHES; the rest waits for the next tick. */
#define NEW_PER_CALL 100
#define DUE_PER_CALL 50
#define INDEX_BATCHES 20
/* As bridge/daemon/entry.c reads `timeout_ms`; the janitor checks each due entry with its parser
 * (br_entry_parse) before answering, and re-scores it if the two disagree. */
#define DEFAULT_TIMEOUT_MS 30000
#define MAX_TIMEOUT_MS 86400000
/* The index and its cursor expire together this long after they last grew: members of
 * entries a bridge delivered while it held the house are otherwise dropped only when the
 * janitor visits the house again; after a long held spell (twice the longest deadline) the
 * next visit simply indexes what is left in the stream again. */
#define INDEX_TTL_MS (2ull * MAX_TIMEOUT_MS)

struct br_janitor {
    const br_env *env;
    const br_houses *houses;
    br_requests *reqs; /* settling checks and the 504s go through the request core */
    /* The lock and index scripts (texts and SHAs), with their KEYS and ARGV: store_bridge.h,
     * store_req.h. */
    br_script lock, due;
    int busy;         /* a pass is running */
    unsigned pending; /* outstanding commands of this pass */
    char cursor[32];  /* SCAN cursor on node `node`, kept across ticks */
    int node;         /* a cluster is walked one node after the other */
};

typedef struct jhouse {
    br_janitor *j;
    char id[GP_MAX_HOUSE_ID + 1];
    char holder[80];
    int calls; /* due-script calls this tick */
} jhouse;

br_janitor *br_janitor_new(const br_env *env, const br_houses *houses, br_requests *reqs) {
    br_janitor *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    *j = (br_janitor){.env = env,
                      .houses = houses,
                      .reqs = reqs,
                      .lock = {GP_LUA_JANITOR_LOCK, ""},
                      .due = {GP_LUA_REQ_JANITOR_DUE, ""},
                      .cursor = "0"};
    return j;
}

void br_janitor_free(br_janitor *j) {
    free(j);
}

void br_janitor_load_scripts(br_janitor *j) {
    br_db_load_script(j->env->db, &j->lock);
    br_db_load_script(j->env->db, &j->due);
}

static void step_done(br_janitor *j) {
    if (j->pending && --j->pending == 0)
        j->busy = 0;
}

static int jsend(br_janitor *j, br_redis_fn fn, void *ud, const br_args *a) {
    j->pending++;
    if (br_db_cmd(j->env->db, fn, ud, a) == 0)
        return 0;
    j->pending--;
    return -1;
}

static void visit(jhouse *h);

/* Re-scores a due member whose deadline, as the bridge's parser reads it, is later. */
static void rescore(br_janitor *j, const char *house, const br_entry *en) {
    char key[GP_KEY_MAX];
    gp_key_deadlines(key, j->env->cfg->prefix, house);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "ZADD");
    br_args_str(&a, key);
    br_args_str(&a, "XX");
    br_args_u64(&a, en->deadline);
    br_args_str(&a, en->entry_id);
    br_db_cmd(j->env->db, NULL, NULL, &a);
}

static void on_due(redisReply *rep, void *ud) {
    jhouse *h = ud;
    br_janitor *j = h->j;
    int again = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_ARRAY && !br_house_find(j->houses, h->id)) {
        uint64_t now = br_env_now_redis(j->env);
        char reqkey[GP_KEY_MAX];
        gp_key_req(reqkey, j->env->cfg->prefix, h->id);
        const redisReply *due = rep->element[1];
        for (size_t i = 0; i < due->elements; i++) {
            const redisReply *e = due->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
                continue;
            br_entry en;
            br_entry_parse(e, j->env->cfg->max_body, &en);
            if (en.status < 0 || br_reply_settling(j->reqs, h->id, en.entry_id))
                continue; /* answered already, its acknowledgement on its way */
            if (en.deadline > now) {
                rescore(h->j, h->id, &en);
                continue;
            }
            if (en.status) {
                br_reply_error(j->reqs, NULL, h->id, reqkey, &en, en.status, en.error, en.message,
                               h->holder);
            } else {
                gp_metric_inc(j->env->metrics->janitor_timeouts, NULL);
                br_reply_error(j->reqs, NULL, h->id, reqkey, &en, 504, "timeout",
                               "no bridge holds this house", h->holder);
            }
        }
        /* A full batch of new entries: more may follow, index them now. */
        again = rep->element[0]->integer >= NEW_PER_CALL && h->calls < INDEX_BATCHES;
    }
    if (again)
        visit(h);
    else
        free(h);
    step_done(j);
}

static void visit(jhouse *h) {
    br_janitor *j = h->j;
    char kreq[GP_KEY_MAX], kdl[GP_KEY_MAX], kcur[GP_KEY_MAX];
    gp_key_req(kreq, j->env->cfg->prefix, h->id);
    gp_key_deadlines(kdl, j->env->cfg->prefix, h->id);
    gp_key_jcursor(kcur, j->env->cfg->prefix, h->id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, kreq);
    br_args_str(&a, kdl);
    br_args_str(&a, kcur);
    br_args_u64(&a, br_env_now_redis(j->env));
    br_args_u64(&a, NEW_PER_CALL);
    br_args_u64(&a, DUE_PER_CALL);
    br_args_u64(&a, DEFAULT_TIMEOUT_MS);
    br_args_u64(&a, MAX_TIMEOUT_MS);
    br_args_str(&a, h->calls + 1 >= INDEX_BATCHES ? "1" : "0");
    br_args_u64(&a, INDEX_TTL_MS);
    h->calls++;
    j->pending++;
    if (br_db_eval(j->env->db, &j->due, on_due, h, 3, &a) != 0) {
        j->pending--;
        free(h);
    }
}

/* The state names a holder: it holds the house only while its lease lives (a bridge killed
 * with -9 leaves its state behind). */
static void on_lease(redisReply *rep, void *ud) {
    jhouse *h = ud;
    br_janitor *j = h->j;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        visit(h);
    else
        free(h);
    step_done(j);
}

static void on_state(redisReply *rep, void *ud) {
    jhouse *h = ud;
    br_janitor *j = h->j;
    if (!rep || rep->type == REDIS_REPLY_ERROR || br_house_find(j->houses, h->id)) {
        free(h);
    } else if (rep->type == REDIS_REPLY_STRING && rep->len > 0) {
        snprintf(h->holder, sizeof h->holder, "%.*s", (int)rep->len, rep->str);
        char key[GP_KEY_MAX];
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "EXISTS");
        br_args_str(&a, gp_key_bridge(key, j->env->cfg->prefix, h->holder) > 0 ? key : "");
        if (jsend(j, on_lease, h, &a) != 0)
            free(h);
    } else {
        visit(h);
    }
    step_done(j);
}

static void on_scan(redisReply *rep, void *ud) {
    br_janitor *j = ud;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len < sizeof j->cursor &&
        rep->element[1]->type == REDIS_REPLY_ARRAY) {
        memcpy(j->cursor, rep->element[0]->str, rep->element[0]->len + 1);
        if (strcmp(j->cursor, "0") == 0) /* this node is done: the next one */
            j->node = (j->node + 1) % br_db_nodes(j->env->db);
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            char id[GP_MAX_HOUSE_ID + 1];
            int n = k->type == REDIS_REPLY_STRING
                        ? gp_key_house_of_req(k->str, k->len, j->env->cfg->prefix, id, sizeof id)
                        : -1;
            if (n <= 0 || !gp_house_id_valid((gp_str){(const uint8_t *)id, (size_t)n}) ||
                br_house_find(j->houses, id))
                continue;
            jhouse *h = calloc(1, sizeof *h);
            if (!h)
                break;
            h->j = j;
            memcpy(h->id, id, (size_t)n + 1);
            char key[GP_KEY_MAX];
            gp_key_state(key, j->env->cfg->prefix, h->id);
            br_args a;
            br_args_init(&a);
            br_args_str(&a, "HGET");
            br_args_str(&a, key);
            br_args_str(&a, GP_STATE_BRIDGE);
            if (jsend(j, on_state, h, &a) != 0)
                free(h);
        }
    }
    step_done(j);
}

static void on_lock(redisReply *rep, void *ud) {
    br_janitor *j = ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        /* The prefix is literal: escape what a glob pattern would read. */
        char pat[GP_KEY_MAX * 2 + 16], *o = pat;
        for (const char *p = j->env->cfg->prefix; *p; p++) {
            if (strchr("*?[]\\", *p))
                *o++ = '\\';
            *o++ = *p;
        }
        strcpy(o, ":{*}:req");
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "SCAN");
        br_args_str(&a, j->cursor);
        br_args_str(&a, "MATCH");
        br_args_str(&a, pat);
        br_args_str(&a, "COUNT");
        br_args_u64(&a, KEYS_PER_TICK);
        br_args_str(&a, "TYPE");
        br_args_str(&a, "stream");
        if (j->node >= br_db_nodes(j->env->db))
            j->node = 0;
        j->pending++;
        if (br_db_cmd_node(j->env->db, j->node, on_scan, j, &a) != 0) {
            j->pending--; /* that node is away: go on with the next */
            j->node = (j->node + 1) % br_db_nodes(j->env->db);
            strcpy(j->cursor, "0");
        }
    }
    step_done(j);
}

void br_janitor_tick(br_janitor *j, uint64_t now) {
    (void)now;
    if (j->busy || j->env->stopping || !j->env->time_ok || !br_db_ready(j->env->db))
        return;
    char key[GP_KEY_MAX];
    gp_key_janitor(key, j->env->cfg->prefix);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, key);
    br_args_str(&a, j->env->cfg->bridge_id);
    br_args_u64(&a, LOCK_MS);
    j->busy = 1;
    j->pending = 1;
    if (br_db_eval(j->env->db, &j->lock, on_lock, j, 1, &a) != 0)
        j->busy = 0, j->pending = 0;
}
