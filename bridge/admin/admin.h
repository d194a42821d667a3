/* admin.h — the bridge's admin port (admin.c, bridge/admin/ADMIN.md): /healthz, /readyz,
 * /metrics, the dashboard, and the JSON API (api.h). */
#ifndef BR_ADMIN_H
#define BR_ADMIN_H

#include "api.h"

struct gp_admin;

/* Starts the admin port when configured (v is kept; *admin and *admin_port receive the
 * server and its port). 0 (also when off), -1: cannot listen. */
int br_admin_start(const br_admin_view *v, struct gp_admin **admin, int *admin_port);
void br_admin_stop(void);

#endif
