/* api_hist.h — the JSON API's request history and listeners (api_hist.c, bridge/admin/ADMIN.md):
 * GET /api/houses/<id>/history, /api/bridges/<bid>/history, /api/history (every bridge) with
 * ?range=1h|6h|24h, read from Redis (bridge/store/store_hist.h), and GET /api/listeners, what
 * this bridge listens on (the dashboard's "add a house" hint). */
#ifndef BR_API_HIST_H
#define BR_API_HIST_H

#include "../daemon/env.h"

#include <stddef.h>

struct gp_admin_call;
struct gp_http_request;

/* What the bridge listens on (GET /api/listeners): the house listeners (ws or wss, rudp) and
 * the HTTP front door (http or https), with the ports actually bound. */
#define BR_MAX_LISTENERS 4
typedef struct br_listener {
    const char *kind;   /* "house" or "http" (static) */
    const char *scheme; /* "ws", "wss", "rudp", "http", "https" (static) */
    char bind[64];      /* the address bound ("0.0.0.0": every one) */
    int port;
    char key[65]; /* rudp: the bridges' public key (hex) a house gives as --bridge-key, else "" */
} br_listener;
typedef struct br_listeners {
    size_t n;
    br_listener l[BR_MAX_LISTENERS];
} br_listeners;
typedef void br_listeners_fn(br_listeners *out); /* fills *out (main.c's) */

/* Answers the call when req->path is one of these routes (the token checked already by api.c)
 * and returns 1; 0 (nothing done) for any other path. listeners: what the bridge listens on
 * now (main.c's, through the admin view); addr: the client's, for the log. */
int br_api_hist_handle(const br_env *env, br_listeners_fn *listeners, struct gp_admin_call *call,
                       const struct gp_http_request *req, const char *addr);

#endif
