/* api_hist.c — the JSON API's request history and listeners (api_hist.h, bridge/admin/ADMIN.md
 * "History"). A history call reads one hash (HGETALL; a house's with EXISTS of its registry
 * hash, same slot) and answers with the series store_hist.c builds from it: whatever Redis
 * holds there is parsed as untrusted, what does not parse is skipped and counted. I/O side. */
#include "api_hist.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_hist.h"
#include "admin_http.h"
#include "auth.h"
#include "buf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum scope { S_HOUSE, S_BRIDGE, S_ALL };
static const char *const SCOPE[] = {"house", "bridge", "all"};

/* One history call in flight. */
typedef struct hist_call {
    const br_env *env;
    gp_admin_call *call;
    enum scope scope;
    char id[GP_MAX_HOUSE_ID + 1]; /* the house or bridge; "" for all */
    char range[8];
    char method[16], path[128], addr[80];
    unsigned pending;
    int failed, registered;
    gp_hist_series s;
} hist_call;

static void log_call(const char *method, const char *path, int status, const char *addr) {
    br_log(status >= 500 ? BR_LOG_WARN : BR_LOG_INFO, "admin_api",
           "method=%s path=%s status=%d addr=%s", method, br_qs(path), status, addr);
}

static void fail_call(gp_admin_call *call, const gp_http_request *req, const char *addr, int status,
                      const char *code, const char *message) {
    log_call(req->method, req->path, status, addr);
    gp_admin_reply_error(call, status, code, message);
}

static void hc_free(hist_call *x) {
    gp_hist_series_free(&x->s);
    free(x);
}

static void hc_done(hist_call *x) {
    if (x->pending)
        return;
    if (x->failed) {
        log_call(x->method, x->path, 503, x->addr);
        gp_admin_reply_error(x->call, 503, "redis_unavailable", "Redis did not answer");
        hc_free(x);
        return;
    }
    if (x->scope == S_HOUSE && !x->registered) {
        log_call(x->method, x->path, 404, x->addr);
        gp_admin_reply_error(x->call, 404, "not_found", "no such house");
        hc_free(x);
        return;
    }
    gp_buf b = {0};
    gp_buf_printf(&b, "{\"scope\":\"%s\",\"id\":", SCOPE[x->scope]);
    if (x->scope == S_ALL)
        gp_buf_puts(&b, "null");
    else
        gp_buf_printf(&b, "\"%s\"", x->id); /* checked: [A-Za-z0-9_.-] */
    gp_buf_printf(&b, ",\"range\":\"%s\",\"now_ms\":%llu,\"flush_ms\":%lld,", x->range,
                  (unsigned long long)br_env_now_redis(x->env), x->env->cfg->history_flush_ms);
    gp_hist_series_json(&b, &x->s);
    gp_buf_puts(&b, "}");
    size_t len = 0;
    char *body = gp_buf_take(&b, &len);
    if (!body) {
        log_call(x->method, x->path, 503, x->addr);
        gp_admin_reply_error(x->call, 503, "unavailable", "out of memory");
    } else {
        log_call(x->method, x->path, 200, x->addr);
        gp_admin_reply(x->call, 200, "application/json", NULL, body, len);
    }
    free(body);
    hc_free(x);
}

static void on_hash(redisReply *r, void *ud) {
    hist_call *x = ud;
    x->pending--;
    if (!r) {
        x->failed = 1;
    } else {
        /* An error (the key holds another type): logged, counted as skipped, the answer
         * still 200 with what there is (nothing). */
        if (r->type == REDIS_REPLY_ERROR)
            br_log(BR_LOG_WARN, "admin_api_redis_error", "path=%s err=%s", br_qs(x->path),
                   br_qs(r->str));
        gp_hist_series_add_reply(&x->s, r);
    }
    hc_done(x);
}

static void on_exists(redisReply *r, void *ud) {
    hist_call *x = ud;
    x->pending--;
    if (!r || r->type == REDIS_REPLY_ERROR)
        x->failed = 1;
    else
        x->registered = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    hc_done(x);
}

static int send2(hist_call *x, const char *cmd, const char *key, br_redis_fn fn) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, cmd);
    br_args_str(&a, key);
    x->pending++;
    if (br_db_cmd(x->env->db, fn, x, &a) != 0) {
        x->pending--;
        x->failed = 1;
        return -1;
    }
    return 0;
}

static void history_start(hist_call *x) {
    const char *p = x->env->cfg->prefix;
    char key[GP_KEY_MAX], kh[GP_KEY_MAX];
    int rc = x->scope == S_HOUSE    ? gp_key_hist(key, p, x->id)
             : x->scope == S_BRIDGE ? gp_key_bhist(key, p, x->id)
                                    : gp_key_fhist(key, p);
    x->pending++; /* held while the commands are sent */
    if (rc < 0 || (x->scope == S_HOUSE && gp_key_house(kh, p, x->id) < 0))
        x->failed = 1;
    else if (x->scope != S_HOUSE || send2(x, "EXISTS", kh, on_exists) == 0)
        send2(x, "HGETALL", key, on_hash);
    x->pending--;
    hc_done(x);
}

/* The value of `name` in a query string ("a=1&range=24h"), into out[cap]; 0, or -1 absent. */
static int query_get(const char *q, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(out, cap, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

/* The id between prefix and "/history" in path, into id[]: 0, or -1 when path is not that. */
static int id_in(const char *path, const char *prefix, char id[GP_MAX_HOUSE_ID + 1]) {
    size_t pl = strlen(prefix), tl = strlen("/history");
    size_t len = strlen(path);
    if (len <= pl + tl || strncmp(path, prefix, pl) != 0 ||
        strcmp(path + len - tl, "/history") != 0)
        return -1;
    size_t n = len - pl - tl;
    if (n > GP_MAX_HOUSE_ID || !gp_house_id_valid((gp_str){(const uint8_t *)path + pl, n}))
        return -2;
    memcpy(id, path + pl, n);
    id[n] = '\0';
    return 0;
}

/* GET /api/listeners. */
static void listeners(const br_env *env, br_listeners_fn *get, gp_admin_call *call,
                      const gp_http_request *req, const char *addr) {
    br_listeners ls = {0};
    if (get)
        get(&ls);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < ls.n; i++) {
        const br_listener *l = &ls.l[i];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:i, s:s?}", "kind", l->kind,
                                             "scheme", l->scheme, "bind", l->bind, "port", l->port,
                                             "key", l->key[0] ? l->key : NULL));
    }
    json_t *o =
        json_pack("{s:s, s:s, s:o*, s:I}", "bridge", env->cfg->bridge_id, "host", host, "listeners",
                  arr, "history_flush_ms", (json_int_t)env->cfg->history_flush_ms);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        fail_call(call, req, addr, 503, "unavailable", "out of memory");
        return;
    }
    log_call(req->method, req->path, 200, addr);
    gp_admin_reply(call, 200, "application/json", NULL, s, strlen(s));
    free(s);
}

int br_api_hist_handle(const br_env *env, br_listeners_fn *get_listeners, gp_admin_call *call,
                       const gp_http_request *req, const char *addr) {
    const char *path = req->path;
    enum scope scope;
    char id[GP_MAX_HOUSE_ID + 1] = "";
    int rc = 0;
    if (strcmp(path, "/api/listeners") == 0) {
        if (!gp_admin_get_only(call, req))
            log_call(req->method, path, 405, addr);
        else
            listeners(env, get_listeners, call, req, addr);
        return 1;
    }
    if (strcmp(path, "/api/history") == 0)
        scope = S_ALL;
    else if ((rc = id_in(path, "/api/houses/", id)) != -1)
        scope = S_HOUSE;
    else if ((rc = id_in(path, "/api/bridges/", id)) != -1)
        scope = S_BRIDGE;
    else
        return 0;
    if (rc == -2) {
        fail_call(call, req, addr, 400, "bad_request",
                  scope == S_HOUSE ? "bad house id: 1-64 of [A-Za-z0-9_.-]"
                                   : "bad bridge id: 1-64 of [A-Za-z0-9_.-]");
        return 1;
    }
    if (!gp_admin_get_only(call, req)) {
        log_call(req->method, path, 405, addr);
        return 1;
    }
    char range[8] = "1h"; /* the default; longer than any range: refused */
    unsigned minutes, step;
    query_get(req->query ? req->query : "", "range", range, sizeof range);
    if (gp_hist_range(range, &minutes, &step) != 0) {
        fail_call(call, req, addr, 400, "bad_request", "range: 1h, 6h or 24h");
        return 1;
    }
    if (!br_db_ready(env->db)) {
        fail_call(call, req, addr, 503, "redis_unavailable",
                  "Redis is not reachable from this bridge");
        return 1;
    }
    hist_call *x = calloc(1, sizeof *x);
    if (!x ||
        gp_hist_series_init(&x->s, (int64_t)(br_env_now_redis(env) / 60000), minutes, step) != 0) {
        free(x);
        fail_call(call, req, addr, 503, "unavailable", "out of memory");
        return 1;
    }
    x->env = env;
    x->call = call;
    x->scope = scope;
    snprintf(x->id, sizeof x->id, "%s", id);
    snprintf(x->range, sizeof x->range, "%s", range);
    snprintf(x->method, sizeof x->method, "%s", req->method);
    snprintf(x->path, sizeof x->path, "%s", path);
    snprintf(x->addr, sizeof x->addr, "%s", addr);
    history_start(x);
    return 1;
}
