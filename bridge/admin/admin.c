/* admin.c — the bridge's admin port (bridge/admin/ADMIN.md): /healthz, /readyz, /metrics, the
 * dashboard's static files, and the JSON API under /api/ (api.c), on admin_http.c's server.
 * I/O side. The admin token is kept only as a hash and compared in constant time. */
#include "admin.h"
#include "../log.h"
#include "adapters/uv_admin.h"
#include "api.h"
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

/* The admin port: what it was given at start, its API, its probes (their record is the
 * server's ud for /readyz and /metrics, so it lives as long as the port). */
struct br_admin {
    br_admin_view v;
    struct gp_admin **admin;
    br_api *api;
    gp_admin_probes probes;
};

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

br_admin *br_admin_new(const br_admin_view *v) {
    br_admin *ad = calloc(1, sizeof *ad);
    if (!ad)
        return NULL;
    ad->v = *v;
    ad->api = br_api_new(v);
    if (!ad->api) {
        free(ad);
        return NULL;
    }
    return ad;
}

void br_admin_load_scripts(br_admin *ad) {
    br_api_load_scripts(ad->api);
}

int br_admin_start(br_admin *ad, struct gp_admin **admin, int *admin_port) {
    const br_admin_view *v = &ad->v;
    const br_config *cfg = v->env->cfg;
    ad->admin = admin;
    if (cfg->admin_listen < 0)
        return 0;
    gp_admin_cfg ac = {.bind = cfg->admin_bind,
                       .port = (int)cfg->admin_listen,
                       .hosts = cfg->admin_host,
                       .log = admin_log};
    gp_admin *a = gp_admin_new(v->env->loop, &ac);
    if (!a)
        return -1;
    ad->probes = (gp_admin_probes){v->ready, v->metrics};
    gp_admin_route_probes(a, &ad->probes);
    gp_admin_route(a, "/", 0, on_asset, NULL);
    gp_admin_route(a, "/assets/", 1, on_asset, NULL);
    gp_admin_route(a, "/api/", 1, br_api_handle, ad->api);
    gp_admin_route(a, "/api", 0, br_api_handle, ad->api);
    int port = gp_admin_listen(a);
    if (port < 0) {
        gp_admin_close(a);
        return -1;
    }
    *admin = a;
    *admin_port = port;
    br_log(BR_LOG_INFO, "listening", "transport=admin port=%d bind=%s api=%s", port,
           br_qs(cfg->admin_bind), v->token->has ? "token" : "disabled");
    return 0;
}

void br_admin_stop(br_admin *ad) {
    if (ad->admin && *ad->admin) {
        gp_admin_close(*ad->admin);
        *ad->admin = NULL;
    }
    if (ad->v.token)
        br_admin_token_free(ad->v.token);
}

void br_admin_free(br_admin *ad) {
    if (!ad)
        return;
    br_api_free(ad->api);
    free(ad);
}
