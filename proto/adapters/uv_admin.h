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

/* A byte filter between the socket and the server core, one session a connection (TLS:
 * bridge/front/front_tls.c implements it with OpenSSL, which this adapter does not include).
 * Bytes read from the socket go in, what comes out is the core's input; what the core writes
 * goes in on the other side, and what the filter then has for the socket is written as one
 * socket write, whose completion is reported as the core's write. */
typedef struct gp_admin_filter {
    void *ud;
    void *(*open)(void *ud); /* a connection's session; NULL: refused (out of memory) */
    void (*free)(void *fc);  /* after the connection is closed */
    void (*done)(void *ud);  /* the server is freed */
    /* Socket bytes in (also drives a handshake). 0, or <0: the session is broken. */
    int (*in)(void *fc, const void *buf, size_t len);
    /* The core's next input: >0 bytes, 0 none yet, <0 the peer ended or broke the session. */
    long (*read)(void *fc, char *buf, size_t cap);
    int (*held)(void *fc); /* input already in the session, not yet read: nonzero */
    /* The core's bytes out: 0, or <0 (session not ready or broken). */
    int (*out)(void *fc, const void *buf, size_t len);
    /* What the session has for the socket: its size, and taking it (returns bytes taken). */
    size_t (*pending)(void *fc);
    size_t (*take)(void *fc, void *buf, size_t len);
    void (*shutdown)(void *fc); /* the session's own end (close_notify) before the socket's */
} gp_admin_filter;

/* As gp_admin_new, every connection through f (copied; its done is called with the server's
 * end, also when this fails). NULL: out of memory. */
gp_admin *gp_admin_new_filtered(uv_loop_t *loop, const gp_admin_cfg *cfg, const gp_admin_filter *f);
/* Starts listening. Returns the port (the real one when cfg->port was 0), or a negative
 * libuv error (logged). */
int gp_admin_listen(gp_admin *a);
/* Closes the listener and every connection; memory is released as libuv closes handles
 * and pending calls are answered (their replies are dropped). NULL ok. */
void gp_admin_close(gp_admin *a);

#endif
