/* uv_admin.h — the admin port's HTTP server (proto/admin_http.h) on a libuv loop: the one
 * glue both daemons use (bridge/admin/admin.c, house/admin.c).
 *
 * An adapter, as hiredis keeps its event-loop adapters beside its library: proto/'s core
 * (libgpproto.a) stays sans-I/O, and what needs libuv sits here, in proto/adapters/, built into
 * its own small archive (libgpuv.a) that only the programs link. One copy, not one a daemon,
 * and neither daemon includes the other. An adapter includes only proto/ headers, the C
 * library and libuv; no proto/ file outside this folder includes it (scripts/check-layers.py,
 * bridge/DESIGN.md "Layers"). */
#ifndef GP_UV_ADMIN_H
#define GP_UV_ADMIN_H

#include "admin_http.h"

#include <uv.h>

/* Creates the server (not listening yet). NULL: out of memory. */
gp_admin *gp_admin_new(uv_loop_t *loop, const gp_admin_cfg *cfg);
/* Starts listening. Returns the port (the real one when cfg->port was 0), or a negative
 * libuv error (logged). */
int gp_admin_listen(gp_admin *a);
/* Closes the listener and every connection; memory is released as libuv closes handles
 * and pending calls are answered (their replies are dropped). NULL ok. */
void gp_admin_close(gp_admin *a);

#endif
