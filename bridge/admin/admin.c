/* admin.c — the bridge's admin port (bridge/admin/ADMIN.md): /healthz, /readyz, /metrics, the
 * dashboard's static files, and the JSON API under /api/ (api.c), on admin_http.c's server.
 * I/O side. The admin token is kept only as a hash and compared in constant time. */
#include "../daemon/bridge.h"
#include "admin_http.h"
#include "conf.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The dashboard's files, generated from bridge/admin/web/ (scripts/embed-web.py). Until that file
 * is linked in, this fallback answers "no such file". */
__attribute__((weak)) const uint8_t *br_web_asset(const char *path, size_t *len,
                                                  const char **content_type) {
    (void)path, (void)len, (void)content_type;
    return NULL;
}

/* --- token ------------------------------------------------------------------------------ */

#define TOKEN_MIN 16 /* bytes: a guessable token would open the whole deployment */
#define TOKEN_MAX 4096

static void token_hash(const char *t, size_t n, uint8_t out[32]) {
    crypto_generichash(out, 32, (const unsigned char *)t, n, NULL, 0);
}

int br_admin_load_token(const br_config *cfg, uint8_t hash[32], int *has, char *err,
                        size_t errlen) {
    *has = 0;
    memset(hash, 0, 32);
    if (cfg->admin_token_file && *cfg->admin_token_file) {
        char perr[400];
        if (gp_conf_secret_file_ok(cfg->admin_token_file, perr, sizeof perr) != 0) {
            snprintf(err, errlen, "admin-token-file: %s", perr);
            return -1;
        }
        FILE *f = fopen(cfg->admin_token_file, "rb");
        if (!f) {
            snprintf(err, errlen, "admin-token-file: %s: %s", cfg->admin_token_file,
                     strerror(errno));
            return -1;
        }
        char buf[TOKEN_MAX + 1];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        /* One line; surrounding whitespace (a trailing newline) is not part of it. */
        size_t a = 0;
        while (a < n && strchr(" \t\r\n", buf[a]))
            a++;
        while (n > a && strchr(" \t\r\n", buf[n - 1]))
            n--;
        if (n - a < TOKEN_MIN || n - a > TOKEN_MAX - 1) {
            sodium_memzero(buf, sizeof buf);
            snprintf(err, errlen,
                     "admin-token-file: %s must hold one token of %d-%d bytes (make one with "
                     "openssl rand -hex 32)",
                     cfg->admin_token_file, TOKEN_MIN, TOKEN_MAX - 1);
            return -1;
        }
        token_hash(buf + a, n - a, hash);
        sodium_memzero(buf, sizeof buf);
        *has = 1;
        return 0;
    }
    if (cfg->admin_token && *cfg->admin_token) {
        if (strlen(cfg->admin_token) < TOKEN_MIN || strlen(cfg->admin_token) > TOKEN_MAX - 1) {
            snprintf(err, errlen, "admin-token: %d-%d bytes (make one with openssl rand -hex 32)",
                     TOKEN_MIN, TOKEN_MAX - 1);
            return -1;
        }
        token_hash(cfg->admin_token, strlen(cfg->admin_token), hash);
        *has = 1;
    }
    return 0;
}

/* Wrong tokens per client address: TOKEN_BURST back to back, then one every
 * TOKEN_RETRY_S seconds; past that the API answers 429 without looking at the token. */
#define TOKEN_BURST 10
#define TOKEN_RETRY_S 10
static gp_ratelimit *g_token_rl;

int br_admin_token_check(const char *addr, const char *token, size_t len, unsigned *retry_s) {
    if (!g_token_rl && !(g_token_rl = gp_ratelimit_new(TOKEN_BURST, 60 / TOKEN_RETRY_S, 4096)))
        return 403;
    /* "ip:port": the port changes with every connection, the address does not */
    const char *colon = strrchr(addr, ':');
    gp_str key = {(const uint8_t *)addr, colon ? (size_t)(colon - addr) : strlen(addr)};
    *retry_s = TOKEN_RETRY_S;
    if (!gp_ratelimit_allow(g_token_rl, key, br_now()))
        return 429;
    if (br_admin_token_ok(token, len))
        return 0;
    gp_ratelimit_fail(g_token_rl, key, br_now());
    return 403;
}

int br_admin_token_ok(const char *token, size_t len) {
    if (!g_br.has_admin_token)
        return 0;
    uint8_t h[32];
    token_hash(token, len, h);
    /* Hashes of equal length: the comparison's time says nothing about the token. */
    int ok = sodium_memcmp(h, g_br.admin_token_hash, sizeof h) == 0;
    sodium_memzero(h, sizeof h);
    return ok;
}

/* --- plain routes ----------------------------------------------------------------------- */

/* The dashboard's policy (also in index.html's <meta>, which cannot say frame-ancestors). */
#define DASHBOARD_HEADERS                                                                          \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "              \
    "frame-ancestors 'none'\r\n"

static void on_asset(gp_admin_call *call, const gp_http_request *req, void *ud) {
    (void)ud;
    if (!gp_admin_get_only(call, req))
        return;
    const char *name = strcmp(req->path, "/") == 0 ? "index.html" : req->path + strlen("/assets/");
    size_t len = 0;
    const char *ctype = NULL;
    const uint8_t *p = strchr(name, '/') ? NULL : br_web_asset(name, &len, &ctype);
    if (!p) {
        gp_admin_reply_error(call, 404, "not_found", "no such file");
        return;
    }
    gp_admin_reply(call, 200, ctype ? ctype : "application/octet-stream", DASHBOARD_HEADERS, p,
                   len);
}

/* --- server ----------------------------------------------------------------------------- */

static void admin_log(int level, const char *event, const char *kv) {
    /* warnings here are a client's doing (busy, misdirected): rate-limited */
    if (level <= BR_LOG_WARN)
        br_logr(level, event, "%s", kv);
    else
        br_log(level, event, "%s", kv);
}

int br_admin_start(void) {
    const br_config *cfg = &g_br.cfg;
    if (cfg->admin_listen < 0)
        return 0;
    gp_admin_cfg ac = {.bind = cfg->admin_bind,
                       .port = (int)cfg->admin_listen,
                       .hosts = cfg->admin_host,
                       .log = admin_log};
    gp_admin *a = gp_admin_new(g_br.loop, &ac);
    if (!a)
        return -1;
    static const gp_admin_probes probes = {br_ready, br_stats_render};
    gp_admin_route_probes(a, &probes);
    gp_admin_route(a, "/", 0, on_asset, NULL);
    gp_admin_route(a, "/assets/", 1, on_asset, NULL);
    gp_admin_route(a, "/api/", 1, br_api_handle, NULL);
    gp_admin_route(a, "/api", 0, br_api_handle, NULL);
    int port = gp_admin_listen(a);
    if (port < 0) {
        gp_admin_close(a);
        return -1;
    }
    g_br.admin = a;
    g_br.admin_port = port;
    br_log(BR_LOG_INFO, "listening", "transport=admin port=%d bind=%s api=%s", port,
           br_qs(cfg->admin_bind), g_br.has_admin_token ? "token" : "disabled");
    return 0;
}

void br_admin_stop(void) {
    gp_admin_close(g_br.admin);
    g_br.admin = NULL;
    br_api_free();
    gp_ratelimit_free(g_token_rl);
    g_token_rl = NULL;
}
