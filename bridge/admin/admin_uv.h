/* admin_uv.h — the admin port (admin_http.h, pure) on this daemon's libuv loop: the listener,
 * the sockets and the timers. I/O side. house/admin_uv.h is the house's twin (see admin_uv.c
 * for why there are two). */
#ifndef GP_ADMIN_UV_H
#define GP_ADMIN_UV_H

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
