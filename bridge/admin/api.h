/* api.h — the admin port's JSON API under /api/ (api.c, bridge/admin/ADMIN.md). */
#ifndef BR_API_H
#define BR_API_H

#include "../daemon/env.h"
#include "token.h"

struct gp_admin_call;
struct gp_http_request;

/* What the admin port and its API see of the daemon (main.c fills it; kept). */
typedef struct br_admin_view {
    const br_env *env;
    br_admin_token *token;
    /* 1 when Redis answers and the house listener is up; else 0 with *why (/readyz). */
    int (*ready)(const char **why);
} br_admin_view;

void br_api_init(const br_admin_view *v);
void br_api_handle(struct gp_admin_call *call, const struct gp_http_request *req, void *ud);
void br_api_load_scripts(void);
void br_api_free(void); /* the stored overview (at exit) */

#endif
