/* admin.h — the bridge's admin port (admin.c, bridge/admin/ADMIN.md): /healthz, /readyz,
 * /metrics, the dashboard, and the JSON API (api.h). */
#ifndef BR_ADMIN_H
#define BR_ADMIN_H

#include "api.h"

struct gp_admin;

/* A context: the view (copied), its API (br_api), the probes' record. main.c makes it.
 * NULL: out of memory. */
typedef struct br_admin br_admin;
br_admin *br_admin_new(const br_admin_view *v);
void br_admin_load_scripts(br_admin *ad); /* the API's (Redis came up) */
/* Starts the admin port when configured (*admin and *admin_port receive the server and its
 * port). 0 (also when off), -1: cannot listen. */
int br_admin_start(br_admin *ad, struct gp_admin **admin, int *admin_port);
void br_admin_stop(br_admin *ad); /* closes the port (from the loop) */
void br_admin_free(br_admin *ad); /* after the loop (NULL ok) */

#endif
