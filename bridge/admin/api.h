/* api.h — the admin port's JSON API under /api/ (api.c, bridge/admin/ADMIN.md). */
#ifndef BR_API_H
#define BR_API_H

#include "../daemon/env.h"
#include "api_hist.h"
#include "token.h"

struct gp_admin_call;
struct gp_http_request;

/* What the admin port and its API see of the daemon (main.c fills it; kept). */
typedef struct br_admin_view {
    const br_env *env;
    br_admin_token *token;
    /* 1 when Redis answers and the house listener is up; else 0 with *why (/readyz). */
    int (*ready)(const char **why);
    /* The Prometheus text of /metrics (malloc'd; NULL: out of memory). */
    char *(*metrics)(size_t *len);
    /* What the bridge listens on now, into *out. */
    br_listeners_fn *listeners;
} br_admin_view;

/* A context: the view (copied), the registry scripts' SHAs, the stored overview. NULL: out
 * of memory. The admin port makes it and routes /api to br_api_handle with it as ud. */
typedef struct br_api br_api;
br_api *br_api_new(const br_admin_view *v);
void br_api_handle(struct gp_admin_call *call, const struct gp_http_request *req, void *ud);
void br_api_load_scripts(br_api *api);
void br_api_free(br_api *api); /* the stored overview and api (at exit; NULL ok) */

#endif
