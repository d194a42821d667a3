/* api.c — the admin port's JSON API (bridge/admin/ADMIN.md): the overview of every bridge and house
 * and one house's detail, read from Redis so that any bridge answers for all; adding,
 * disabling, enabling and removing a house, with the same Lua as the CLI (store_house.h). Token
 * auth (admin.c), JSON errors, one log line per call, never with a token or a secret. I/O
 * side: every answer waits for Redis (async, through rdb.h), so a call keeps its own copy of
 * what it needs from the request. */
#include "api.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_house.h"
#include "../store/store_tun.h"
#include "admin_http.h"
#include "api_body.h"

#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BRIDGE_FRESH_MS 10000 /* bridges whose stats are older are not listed */

enum op { OP_OVERVIEW, OP_HOUSE, OP_ADD, OP_DISABLE, OP_ENABLE, OP_REMOVE };

/* One API call in flight. */
typedef struct api_ctx {
    br_api *api;
    gp_admin_call *call;
    enum op op;
    char method[16], path[128], addr[80];
    char id[GP_MAX_HOUSE_ID + 1];
    unsigned pending; /* Redis commands outstanding */
    int failed;       /* one of them got no answer */
    /* results */
    json_t *bridges;   /* overview: each bridge's stats */
    br_house_view *hv; /* overview: every registered id (nh); detail: the one house */
    size_t nh;
    json_t *recent; /* house detail */
    int registered;
    long long removed, stream_len;
    char secret_hex[GP_SECRET_HEX_LEN + 1];
} api_ctx;

/* Per command: the call it belongs to, and the houses it fills (h[0..n); NULL: none). */
typedef struct sub {
    api_ctx *ctx;
    br_house_view *h;
    size_t n;
} sub;

static void house_views_free(br_house_view *hv, size_t n) {
    for (size_t i = 0; hv && i < n; i++)
        br_house_view_clear(&hv[i]);
    free(hv);
}

/* The overview is the whole deployment: with many houses it costs the bridge real CPU (one
 * build at 10,000 houses: ~100 ms of CPU, bench scale observe_10000). A call within
 * OVERVIEW_REUSE_MS of the last build gets that build's body; calls that come while one runs
 * wait for it. Any number of open dashboards then cost at most one build per period, and the
 * data is no older than what bridges publish (every second) anyway. A change made through
 * the API drops the stored body, so its author sees it at once. */
#define OVERVIEW_REUSE_MS 1000
typedef struct overview {
    char *body; /* the last build's JSON, NULL: none */
    size_t len;
    uint64_t at;       /* loop ms of that build */
    api_ctx *building; /* the call whose build runs, NULL: none */
    api_ctx **waiters; /* calls answered with it */
    size_t nwait, capwait;
} overview;

/* The API of one admin port: what it was given, its scripts (texts and SHAs: store_house.h),
 * the stored overview. Each call in flight points back to it (api_ctx.api). */
struct br_api {
    br_admin_view v;
    br_script add, disable, rm, tunforget;
    overview ov;
};

br_api *br_api_new(const br_admin_view *v) {
    br_api *api = calloc(1, sizeof *api);
    if (!api)
        return NULL;
    api->v = *v;
    api->add = (br_script){GP_REG_ADD_LUA, ""};
    api->disable = (br_script){GP_REG_DISABLE_LUA, ""};
    api->rm = (br_script){GP_REG_RM_LUA, ""};
    api->tunforget = (br_script){GP_TUN_FORGET_LUA, ""};
    return api;
}

void br_api_load_scripts(br_api *api) {
    br_db_load_script(api->v.env->db, &api->add);
    br_db_load_script(api->v.env->db, &api->disable);
    br_db_load_script(api->v.env->db, &api->rm);
    br_db_load_script(api->v.env->db, &api->tunforget);
}

static void ctx_free(api_ctx *x) {
    json_decref(x->bridges);
    house_views_free(x->hv, x->nh);
    json_decref(x->recent);
    sodium_memzero(x->secret_hex, sizeof x->secret_hex);
    free(x);
}

static void finish_log(const api_ctx *x, int status) {
    br_log(status >= 500 ? BR_LOG_WARN : BR_LOG_INFO, "admin_api",
           "method=%s path=%s status=%d addr=%s", x->method, br_qs(x->path), status, x->addr);
}

static void fail(api_ctx *x, int status, const char *code, const char *message);

/* Answers with the JSON text s (stolen; NULL: out of memory) and ends the call. */
static void done_text(api_ctx *x, int status, char *s) {
    if (!s) {
        fail(x, 503, "unavailable", "out of memory");
        return;
    }
    finish_log(x, status);
    gp_admin_reply(x->call, status, "application/json", NULL, s, strlen(s));
    if (x->op == OP_OVERVIEW && status == 200) {
        /* Kept for the calls waiting and those of the next OVERVIEW_REUSE_MS. */
        free(x->api->ov.body);
        x->api->ov.body = s;
        x->api->ov.len = strlen(s);
        x->api->ov.at = br_env_now(x->api->v.env);
        for (size_t i = 0; i < x->api->ov.nwait; i++) {
            finish_log(x->api->ov.waiters[i], 200);
            gp_admin_reply(x->api->ov.waiters[i]->call, 200, "application/json", NULL, s,
                           x->api->ov.len);
            ctx_free(x->api->ov.waiters[i]);
        }
        x->api->ov.nwait = 0;
        x->api->ov.building = NULL;
    } else {
        if (x->op != OP_OVERVIEW && x->op != OP_HOUSE && status < 300) {
            free(x->api->ov.body); /* a change: the next overview is built afresh */
            x->api->ov.body = NULL;
        }
        sodium_memzero(s, strlen(s)); /* may hold a new secret */
        free(s);
    }
    ctx_free(x);
}

/* Answers with body (stolen) and ends the call. */
static void done(api_ctx *x, int status, json_t *body) {
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(body);
    done_text(x, status, s);
}

static void fail(api_ctx *x, int status, const char *code, const char *message) {
    finish_log(x, status);
    gp_admin_reply_error(x->call, status, code, message);
    if (x == x->api->ov.building) { /* those waiting for its build get the same answer */
        for (size_t i = 0; i < x->api->ov.nwait; i++) {
            finish_log(x->api->ov.waiters[i], status);
            gp_admin_reply_error(x->api->ov.waiters[i]->call, status, code, message);
            ctx_free(x->api->ov.waiters[i]);
        }
        x->api->ov.nwait = 0;
        x->api->ov.building = NULL;
    }
    ctx_free(x);
}

/* An overview call: the stored body when it is fresh, a place among the waiters when a build
 * runs; 0 when it must build (it is then the building call). */
static int overview_shared(api_ctx *x) {
    if (x->api->ov.body && br_env_now(x->api->v.env) - x->api->ov.at < OVERVIEW_REUSE_MS) {
        finish_log(x, 200);
        gp_admin_reply(x->call, 200, "application/json", NULL, x->api->ov.body, x->api->ov.len);
        ctx_free(x);
        return 1;
    }
    if (!x->api->ov.building) {
        x->api->ov.building = x;
        return 0;
    }
    if (gp_grow(&x->api->ov.waiters, &x->api->ov.capwait, x->api->ov.nwait + 1, 8,
                sizeof *x->api->ov.waiters) != 0) {
        fail(x, 503, "unavailable", "out of memory");
        return 1;
    }
    x->api->ov.waiters[x->api->ov.nwait++] = x;
    return 1;
}

void br_api_free(br_api *api) {
    if (!api)
        return;
    free(api->ov.body);
    free(api->ov.waiters);
    free(api);
}

static void fail_allow(api_ctx *x, const char *allow) {
    char hdr[64], body[160];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    int n = snprintf(body, sizeof body,
                     "{\"error\":\"method_not_allowed\",\"message\":\"allowed: %s\"}", allow);
    finish_log(x, 405);
    gp_admin_reply(x->call, 405, "application/json", hdr, body, (size_t)n);
    ctx_free(x);
}

/* --- values from Redis ------------------------------------------------------------------ */

/* JSON strings must be UTF-8; what Redis holds need not be. */
static json_t *jstr(const char *p, size_t n) {
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    char *t = malloc(n + 1);
    if (!t)
        return json_null();
    for (size_t i = 0; i < n; i++)
        t[i] = (unsigned char)p[i] >= 0x80 || p[i] == '\0' ? '?' : p[i];
    j = json_stringn(t, n);
    free(t);
    return j ? j : json_null();
}

static json_t *jnum(const redisReply *v) {
    double d = br_redis_num(v);
    if (isnan(d))
        return json_null();
    return d == floor(d) && fabs(d) < 9e15 ? json_integer((json_int_t)d) : json_real(d);
}

/* --- commands --------------------------------------------------------------------------- */

static void step_done(api_ctx *x);

/* The start of a call holds one count while it sends its first commands (so that nothing
 * answers before all are out); this lets go of it. */
static void release(api_ctx *x) {
    x->pending--;
    step_done(x);
}

/* Sends a command (or a script when s is set) for x; cb gets a sub {x, h, n}. 0, or -1 when
 * Redis is not there (x->failed is set then). */
static int rsend_n(api_ctx *x, br_script *s, int nkeys, const br_args *a, br_redis_fn cb,
                   br_house_view *h, size_t n) {
    sub *u = calloc(1, sizeof *u);
    if (!u) {
        x->failed = 1;
        return -1;
    }
    u->ctx = x;
    u->h = h;
    u->n = n;
    x->pending++;
    int rc = s ? br_db_eval(x->api->v.env->db, s, cb, u, nkeys, a)
               : br_db_cmd(x->api->v.env->db, cb, u, a);
    if (rc != 0) {
        x->pending--;
        x->failed = 1;
        free(u);
        return -1;
    }
    return 0;
}

/* The same for one house (or none). */
static int rsend(api_ctx *x, br_script *s, int nkeys, const br_args *a, br_redis_fn cb,
                 br_house_view *h) {
    return rsend_n(x, s, nkeys, a, cb, h, 1);
}

/* Takes the sub apart: its call, after noting a lost reply. */
static api_ctx *sub_take(sub *u, const redisReply *r) {
    api_ctx *x = u->ctx;
    free(u);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            br_log(BR_LOG_WARN, "admin_api_redis_error", "path=%s err=%s", br_qs(x->path),
                   br_qs(r->str));
        x->failed = 1;
    }
    x->pending--;
    return x;
}

static void cmd2(br_args *a, const char *c, const char *key) {
    br_args_init(a);
    br_args_str(a, c);
    br_args_str(a, key);
}

/* --- overview --------------------------------------------------------------------------- */

static void on_bstats(redisReply *r, void *ud) {
    sub *u = ud;
    api_ctx *x = sub_take(u, r);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        json_t *b = json_object();
        static const char *const strs[] = {"id", "host"};
        for (size_t i = 0; b && i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                gp_reply_is(k, "ts_ms") || k->len > 64)
                continue;
            char name[72];
            memcpy(name, k->str, k->len);
            name[k->len] = '\0';
            int is_str = 0;
            for (size_t j = 0; j < 2; j++)
                is_str |= strcmp(name, strs[j]) == 0;
            json_object_set_new(b, name, is_str ? jstr(v->str, v->len) : jnum(v));
        }
        if (b && json_object_get(b, "id"))
            json_array_append(x->bridges, b);
        json_decref(b);
    }
    step_done(x);
}

static void on_bridges(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements && !x->failed; i++) {
            const redisReply *m = r->element[i];
            char key[GP_KEY_MAX], bid[80];
            if (m->type != REDIS_REPLY_STRING || m->len == 0 || m->len >= sizeof bid)
                continue;
            memcpy(bid, m->str, m->len);
            bid[m->len] = '\0';
            if (gp_key_bstats(key, x->api->v.env->cfg->prefix, bid) < 0)
                continue;
            br_args a;
            cmd2(&a, "HGETALL", key);
            rsend(x, NULL, 0, &a, on_bstats, NULL);
        }
    }
    step_done(x);
}

static void on_house_hash(redisReply *r, void *ud) {
    br_house_view *h = ((sub *)ud)->h;
    api_ctx *x = sub_take(ud, r);
    br_house_view_parse_house(h, r);
    x->registered |= h->registered;
    step_done(x);
}

static void on_state(redisReply *r, void *ud) {
    br_house_view *h = ((sub *)ud)->h;
    api_ctx *x = sub_take(ud, r);
    br_house_view_parse_state(h, r);
    step_done(x);
}

/* Both hashes of house h. */
static void read_house(api_ctx *x, br_house_view *h) {
    char kh[GP_KEY_MAX], ks[GP_KEY_MAX];
    if (gp_key_house(kh, x->api->v.env->cfg->prefix, h->id) < 0 ||
        gp_key_state(ks, x->api->v.env->cfg->prefix, h->id) < 0)
        return;
    br_args a;
    cmd2(&a, "HGETALL", kh);
    if (rsend(x, NULL, 0, &a, on_house_hash, h) != 0)
        return;
    cmd2(&a, "HGETALL", ks);
    rsend(x, NULL, 0, &a, on_state, h);
}

/* HMGET <p>:tun pool4 pool6 h:<id>... for u's houses. An error reply (the bridge's Redis user
 * may not read <p>:tun: an ACL file older than the L3 tunnel) leaves their L3 fields unknown
 * rather than failing the call; a reply lost fails it as any other. */
static void on_tun(redisReply *r, void *ud) {
    sub *u = ud;
    br_house_view *h = u->h;
    size_t n = u->n;
    api_ctx *x = u->ctx;
    if (r && r->type == REDIS_REPLY_ERROR) {
        free(u);
        x->pending--;
        br_log(BR_LOG_DEBUG, "admin_api_tun_unreadable", "err=%s", br_qs(r->str));
    } else {
        x = sub_take(ud, r);
    }
    br_house_view_parse_tun(h, n, r);
    step_done(x);
}

/* The L3 indexes of houses h[0..n) and the pools, in HMGETs of TUN_BATCH houses (what a
 * br_args holds). One key: one Cluster slot. */
#define TUN_BATCH (BR_ARGS_MAX - 4)
static void read_tun(api_ctx *x, br_house_view *h, size_t n) {
    char kt[GP_KEY_MAX];
    if (gp_key_tun(kt, x->api->v.env->cfg->prefix) < 0)
        return;
    for (size_t at = 0; at < n && !x->failed; at += TUN_BATCH) {
        size_t m = n - at < TUN_BATCH ? n - at : TUN_BATCH;
        char f[TUN_BATCH][GP_MAX_HOUSE_ID + 3];
        br_args a;
        cmd2(&a, "HMGET", kt);
        br_args_str(&a, "pool4");
        br_args_str(&a, "pool6");
        for (size_t i = 0; i < m; i++) {
            snprintf(f[i], sizeof f[i], "h:%s", h[at + i].id);
            br_args_str(&a, f[i]);
        }
        if (rsend_n(x, NULL, 0, &a, on_tun, &h[at], m) != 0)
            return;
    }
}

static void on_members(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    size_t m = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    x->hv = calloc(m ? m : 1, sizeof *x->hv);
    if (!x->hv)
        x->failed = 1;
    for (size_t i = 0; i < m && !x->failed; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING ||
            !gp_house_id_valid((gp_str){(const uint8_t *)e->str, e->len}))
            continue; /* not written by us */
        char id[GP_MAX_HOUSE_ID + 1];
        memcpy(id, e->str, e->len);
        id[e->len] = '\0';
        br_house_view *h = &x->hv[x->nh++];
        br_house_view_init(h, id);
        read_house(x, h);
    }
    read_tun(x, x->hv, x->nh);
    step_done(x);
}

static int cmp_id(const void *a, const void *b) {
    return strcmp((*(const br_house_view *const *)a)->id, (*(const br_house_view *const *)b)->id);
}

static void overview_start(api_ctx *x) {
    x->bridges = json_array();
    if (!x->bridges) {
        fail(x, 503, "unavailable", "out of memory");
        return;
    }
    char idx[GP_KEY_MAX], hs[GP_KEY_MAX];
    gp_key_bridges(idx, x->api->v.env->cfg->prefix);
    gp_key_houses(hs, x->api->v.env->cfg->prefix);
    uint64_t now = br_env_now_redis(x->api->v.env);
    br_args a;
    cmd2(&a, "ZRANGEBYSCORE", idx);
    br_args_u64(&a, now > BRIDGE_FRESH_MS ? now - BRIDGE_FRESH_MS : 0);
    br_args_str(&a, "+inf");
    x->pending++; /* held while the first commands are sent */
    rsend(x, NULL, 0, &a, on_bridges, NULL);
    cmd2(&a, "SMEMBERS", hs);
    rsend(x, NULL, 0, &a, on_members, NULL);
    release(x);
}

/* {"now_ms":..,"bridges":[..],"houses":[..registered ones, sorted by id..]} */
static void overview_done(api_ctx *x) {
    const br_house_view **v = calloc(x->nh ? x->nh : 1, sizeof *v);
    char *bridges = json_dumps(x->bridges, JSON_COMPACT | JSON_REAL_PRECISION(9));
    br_sbuf b = {0};
    if (!v || !bridges) {
        free(v), free(bridges);
        fail(x, 503, "unavailable", "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < x->nh; i++)
        if (x->hv[i].registered)
            v[k++] = &x->hv[i];
    qsort(v, k, sizeof *v, cmp_id);
    char t[48];
    snprintf(t, sizeof t,
             "{\"now_ms\":%llu,\"bridges\":", (unsigned long long)br_env_now_redis(x->api->v.env));
    br_sb_puts(&b, t);
    br_sb_puts(&b, bridges);
    br_sb_puts(&b, ",\"houses\":[");
    for (size_t i = 0; i < k; i++) {
        br_sb_puts(&b, i ? ",{" : "{");
        br_house_view_json(&b, v[i]);
        br_sb_puts(&b, "}");
    }
    br_sb_puts(&b, "]}");
    free(v), free(bridges);
    if (b.oom) {
        free(b.p);
        b.p = NULL;
    }
    done_text(x, 200, b.p);
}

/* --- one house -------------------------------------------------------------------------- */

static void on_recent(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (r && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            json_t *j = e->type == REDIS_REPLY_STRING ? json_loadb(e->str, e->len, 0, NULL) : NULL;
            if (json_is_object(j))
                json_array_append(x->recent, j);
            json_decref(j);
        }
    step_done(x);
}

static void house_start(api_ctx *x) {
    x->hv = calloc(1, sizeof *x->hv);
    x->recent = json_array();
    if (!x->hv || !x->recent) {
        fail(x, 503, "unavailable", "out of memory");
        return;
    }
    char kr[GP_KEY_MAX];
    gp_key_recent(kr, x->api->v.env->cfg->prefix, x->id);
    x->nh = 1;
    br_house_view_init(x->hv, x->id);
    x->pending++;
    read_house(x, x->hv);
    read_tun(x, x->hv, 1);
    br_args a;
    cmd2(&a, "LRANGE", kr);
    br_args_str(&a, "0");
    br_args_u64(&a,
                (uint64_t)(x->api->v.env->cfg->recent > 0 ? x->api->v.env->cfg->recent : 50) - 1);
    rsend(x, NULL, 0, &a, on_recent, NULL);
    release(x);
}

static void house_done(api_ctx *x) {
    if (!x->registered) {
        fail(x, 404, "not_found", "no such house");
        return;
    }
    char *recent = json_dumps(x->recent, JSON_COMPACT | JSON_REAL_PRECISION(9));
    br_sbuf b = {0};
    br_sb_puts(&b, "{");
    br_house_view_json(&b, x->hv);
    br_sb_puts(&b, ",\"recent\":");
    br_sb_puts(&b, recent ? recent : "[]");
    br_sb_puts(&b, "}");
    free(recent);
    if (b.oom || !recent) {
        free(b.p);
        b.p = NULL;
    }
    done_text(x, 200, b.p);
}

/* x's house into (SADD) or out of (SREM) the index of registered houses, <p>:houses. */
static void houses_index(api_ctx *x, const char *verb, br_redis_fn cb) {
    char hs[GP_KEY_MAX];
    gp_key_houses(hs, x->api->v.env->cfg->prefix);
    br_args a;
    cmd2(&a, verb, hs);
    br_args_str(&a, x->id);
    rsend(x, NULL, 0, &a, cb, NULL);
}

/* --- add -------------------------------------------------------------------------------- */

static void on_sadd(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    step_done(x);
}

static void on_added(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (!x->failed && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && !x->pending) {
        fail(x, 409, "exists", "a house with this id is registered already");
        return;
    }
    if (!x->failed) {
        houses_index(x, "SADD", on_sadd);
    }
    step_done(x);
}

static void add_start(api_ctx *x, const gp_http_request *req) {
    char *labels;
    const char *why = NULL;
    if (br_api_parse_add(req->body, req->body_len, x->id, &labels, &why) != 0) {
        fail(x, 400, "bad_request", why);
        return;
    }
    uint8_t secret[GP_SECRET_LEN];
    char sealed[GP_SEALED_MAX];
    randombytes_buf(secret, sizeof secret);
    int rv = gp_secret_seal(x->api->v.env->master_key, gp_str_c(x->id), secret, sealed);
    gp_secret_to_hex(secret, x->secret_hex);
    sodium_memzero(secret, sizeof secret);
    if (rv != 0) {
        free(labels);
        fail(x, 503, "unavailable", "sealing the secret failed");
        return;
    }
    char kh[GP_KEY_MAX];
    gp_key_house(kh, x->api->v.env->cfg->prefix, x->id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, kh);
    br_args_str(&a, sealed);
    br_args_str(&a, labels);
    br_args_u64(&a, br_env_now_redis(x->api->v.env));
    br_args_str(&a, "0"); /* never replace: 409 */
    x->pending++;
    rsend(x, &x->api->add, 1, &a, on_added, NULL);
    sodium_memzero(sealed, sizeof sealed);
    free(labels);
    release(x);
}

static void add_done(api_ctx *x) {
    json_t *o = json_pack("{s:s, s:s}", "id", x->id, "secret", x->secret_hex);
    br_log(BR_LOG_INFO, "house_added", "house=%s by=api addr=%s", x->id, x->addr);
    done(x, 201, o);
}

/* --- disable / enable ------------------------------------------------------------------- */

static void on_disabled(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (!x->failed && r->type == REDIS_REPLY_INTEGER)
        x->registered = r->integer == 1;
    step_done(x);
}

static void disable_start(api_ctx *x) {
    char kh[GP_KEY_MAX];
    gp_key_house(kh, x->api->v.env->cfg->prefix, x->id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, kh);
    br_args_str(&a, x->op == OP_DISABLE ? "1" : "0");
    br_args_str(&a, x->api->v.env->ctl_channel);
    br_args_str(&a, x->id);
    x->pending++;
    rsend(x, &x->api->disable, 1, &a, on_disabled, NULL);
    release(x);
}

static void disable_done(api_ctx *x) {
    if (!x->registered) {
        fail(x, 404, "not_found", "no such house");
        return;
    }
    int dis = x->op == OP_DISABLE;
    br_log(BR_LOG_INFO, dis ? "house_disabled" : "house_enabled", "house=%s by=api addr=%s", x->id,
           x->addr);
    done(x, 200, json_pack("{s:s, s:b}", "id", x->id, "disabled", dis));
}

/* --- remove ----------------------------------------------------------------------------- */

static void on_srem(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (!x->failed && r->type == REDIS_REPLY_INTEGER)
        x->removed += r->integer;
    step_done(x);
}

/* The house's L3 index freed. Not the answer's business: the house is gone by then, and a
 * DELETE again would be a 404; a failure (the bridge's Redis user may not write <p>:tun) is
 * logged: the index stays taken until `ghostport house tun ID --addr auto`. */
static void on_tun_freed(redisReply *r, void *ud) {
    sub *u = ud;
    api_ctx *x = u->ctx;
    free(u);
    x->pending--;
    if (!r || r->type == REDIS_REPLY_ERROR)
        br_log(BR_LOG_WARN, "tun_index_not_freed", "house=%s err=%s", x->id,
               br_qs(r ? r->str : "no reply"));
    step_done(x);
}

/* The house's history deleted; refused (an ACL older than the history), it expires on its
 * own and no bridge writes it again: logged, not the answer's business. */
static void on_hist_freed(redisReply *r, void *ud) {
    sub *u = ud;
    api_ctx *x = u->ctx;
    free(u);
    x->pending--;
    if (!r || r->type == REDIS_REPLY_ERROR)
        br_log(BR_LOG_WARN, "history_not_removed", "house=%s err=%s", x->id,
               br_qs(r ? r->str : "no reply"));
    step_done(x);
}

static void on_rm(redisReply *r, void *ud) {
    api_ctx *x = sub_take(ud, r);
    if (!x->failed && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        x->removed += r->element[0]->integer;
        x->stream_len = r->element[1]->integer;
        houses_index(x, "SREM", on_srem);
        /* Its L3 index and routes' claim (another slot), as `ghostport house rm` frees them:
         * removal is removal. */
        char kt[GP_KEY_MAX];
        gp_key_tun(kt, x->api->v.env->cfg->prefix);
        br_args a;
        br_args_init(&a);
        br_args_str(&a, kt);
        br_args_str(&a, x->id);
        rsend(x, &x->api->tunforget, 1, &a, on_tun_freed, NULL);
        /* Its request history, apart (store_house.h: an older ACL may refuse it). */
        char k[GP_HOUSE_NKEYS][GP_KEY_MAX];
        gp_key_house_all(k, x->api->v.env->cfg->prefix, x->id);
        cmd2(&a, "DEL", k[GP_REG_RM_NKEYS]);
        rsend(x, NULL, 0, &a, on_hist_freed, NULL);
    } else {
        x->failed = 1;
    }
    step_done(x);
}

static void remove_start(api_ctx *x) {
    const char *p = x->api->v.env->cfg->prefix;
    char k[GP_HOUSE_NKEYS][GP_KEY_MAX];
    gp_key_house_all(k, p, x->id); /* the id is checked: the keys fit */
    br_args a;
    br_args_init(&a);
    for (int i = 0; i < GP_REG_RM_NKEYS; i++)
        br_args_str(&a, k[i]);
    br_args_str(&a, "0"); /* the request stream stays: producers' requests get their 504 */
    br_args_str(&a, x->api->v.env->ctl_channel);
    br_args_str(&a, x->id);
    x->pending++;
    rsend(x, &x->api->rm, GP_REG_RM_NKEYS, &a, on_rm, NULL);
    release(x);
}

static void remove_done(api_ctx *x) {
    if (!x->removed) {
        fail(x, 404, "not_found", "no such house");
        return;
    }
    br_log(BR_LOG_INFO, "house_removed", "house=%s by=api addr=%s pending=%lld", x->id, x->addr,
           x->stream_len);
    done(x, 200,
         json_pack("{s:s, s:b, s:I}", "id", x->id, "removed", 1, "pending",
                   (json_int_t)x->stream_len));
}

/* Every command of the call has answered: the answer. */
static void step_done(api_ctx *x) {
    if (x->pending)
        return;
    if (x->failed) {
        fail(x, 503, "redis_unavailable", "Redis did not answer");
        return;
    }
    switch (x->op) {
    case OP_OVERVIEW:
        overview_done(x);
        return;
    case OP_HOUSE:
        house_done(x);
        return;
    case OP_ADD:
        add_done(x);
        return;
    case OP_DISABLE:
    case OP_ENABLE:
        disable_done(x);
        return;
    case OP_REMOVE:
        remove_done(x);
        return;
    }
}

/* --- routing ---------------------------------------------------------------------------- */

/* "Authorization: Bearer <token>": 0 ok, 401 none sent, 403 wrong, 429 too many wrong ones
 * from this address (*retry_s). */
static int check_auth(br_api *api, const gp_http_request *req, const char *addr,
                      unsigned *retry_s) {
    const char *h = gp_http_header_get(req, "authorization");
    if (!h || !*h)
        return 401;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return 403;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    return n ? br_admin_token_check(api->v.token, addr, t, n, br_env_now(api->v.env), retry_s)
             : 403;
}

static int is(const gp_http_request *req, const char *m) {
    return strcmp(req->method, m) == 0;
}

/* "/api/houses/<id>[/<action>]": the id into x->id, the action (or "") into act. 0, or -1
 * when the id is not a valid house id. */
static int split_house_path(api_ctx *x, const char *rest, char *act, size_t actcap) {
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    snprintf(act, actcap, "%s", slash ? slash + 1 : "");
    if (n == 0 || n > GP_MAX_HOUSE_ID || !gp_house_id_valid((gp_str){(const uint8_t *)rest, n}))
        return -1;
    memcpy(x->id, rest, n);
    x->id[n] = '\0';
    return 0;
}

void br_api_handle(struct gp_admin_call *call, const struct gp_http_request *req, void *ud) {
    br_api *api = ud;
    api_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        gp_admin_reply_error(call, 503, "unavailable", "out of memory");
        return;
    }
    x->api = api;
    x->call = call;
    snprintf(x->method, sizeof x->method, "%s", req->method);
    snprintf(x->path, sizeof x->path, "%s", req->path);
    snprintf(x->addr, sizeof x->addr, "%s", gp_admin_call_addr(call));
    const char *path = req->path;

    if (strcmp(path, "/api/health") == 0) {
        if (!is(req, "GET")) {
            fail_allow(x, "GET");
            return;
        }
        const char *why = "";
        int ready = x->api->v.ready(&why);
        done(x, 200,
             json_pack("{s:b, s:s, s:b, s:s, s:b}", "ok", 1, "bridge",
                       x->api->v.env->cfg->bridge_id, "ready", ready, "reason", ready ? "" : why,
                       "api", x->api->v.token->has));
        return;
    }
    if (!x->api->v.token->has) {
        fail(x, 403, "admin_disabled",
             "no admin token is configured on this bridge (--admin-token-file)");
        return;
    }
    unsigned retry_s = 0;
    int auth = check_auth(api, req, x->addr, &retry_s);
    if (auth == 429) {
        char hdr[64], body[160];
        snprintf(hdr, sizeof hdr, "Retry-After: %u\r\n", retry_s);
        int n = snprintf(body, sizeof body,
                         "{\"error\":\"rate_limited\",\"message\":\"too many wrong admin "
                         "tokens from this address, retry in %u s\"}",
                         retry_s);
        finish_log(x, 429);
        gp_admin_reply(x->call, 429, "application/json", hdr, body, (size_t)n);
        ctx_free(x);
        return;
    }
    if (auth == 401) {
        fail(x, 401, "unauthorized", "send Authorization: Bearer <admin token>");
        return;
    }
    if (auth) {
        fail(x, 403, "forbidden", "wrong admin token");
        return;
    }

    if (br_api_hist_handle(api->v.env, api->v.listeners, call, req,
                           x->addr)) { /* history, listeners */
        ctx_free(x);
        return;
    }
    char act[32] = "";
    if (strcmp(path, "/api/overview") == 0) {
        if (!is(req, "GET")) {
            fail_allow(x, "GET");
            return;
        }
        x->op = OP_OVERVIEW;
    } else if (strcmp(path, "/api/houses") == 0 || strcmp(path, "/api/houses/") == 0) {
        if (!is(req, "POST")) {
            fail_allow(x, "POST");
            return;
        }
        x->op = OP_ADD;
    } else if (strncmp(path, "/api/houses/", 12) == 0) {
        if (split_house_path(x, path + 12, act, sizeof act) != 0) {
            fail(x, 400, "bad_request", "bad house id: 1-64 of [A-Za-z0-9_.-]");
            return;
        }
        if (!act[0]) {
            if (is(req, "GET"))
                x->op = OP_HOUSE;
            else if (is(req, "DELETE"))
                x->op = OP_REMOVE;
            else {
                fail_allow(x, "GET, DELETE");
                return;
            }
        } else if (strcmp(act, "disable") == 0 || strcmp(act, "enable") == 0) {
            if (!is(req, "POST")) {
                fail_allow(x, "POST");
                return;
            }
            x->op = act[0] == 'd' ? OP_DISABLE : OP_ENABLE;
        } else {
            fail(x, 404, "not_found", "no such API path");
            return;
        }
    } else {
        fail(x, 404, "not_found", "no such API path");
        return;
    }
    if (!br_db_ready(x->api->v.env->db)) {
        fail(x, 503, "redis_unavailable", "Redis is not reachable from this bridge");
        return;
    }
    switch (x->op) {
    case OP_OVERVIEW:
        if (!overview_shared(x))
            overview_start(x);
        return;
    case OP_HOUSE:
        house_start(x);
        return;
    case OP_ADD:
        add_start(x, req);
        return;
    case OP_DISABLE:
    case OP_ENABLE:
        disable_start(x);
        return;
    case OP_REMOVE:
        remove_start(x);
        return;
    }
}
