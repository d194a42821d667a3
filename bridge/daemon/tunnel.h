/* tunnel.h — the WebSocket transport (ws/wss, tunnel.c): libwebsockets on the daemon's loop
 * and the handshake of proto/PROTOCOL.md. Its connections are conns' (conn.h); a proven
 * house is claimed through houses. */
#ifndef BR_TUNNEL_H
#define BR_TUNNEL_H

#include "flood.h"
#include "house.h"

struct lws_context;

/* A context: one listener, its transport records, its scratch. env, conns, houses, reqs and
 * flood are kept (main.c makes them all and outlives them). NULL: out of memory. */
typedef struct br_tunnel br_tunnel;
br_tunnel *br_tunnel_new(const br_env *env, br_conns *conns, br_houses *houses, br_requests *reqs,
                         br_flood *flood);
/* Starts listening: *lws receives the lws context (lws NULLs it once destroyed) and
 * *listen_port the port. 0, or -1 (logged). */
int br_tunnel_start(br_tunnel *tn, struct lws_context **lws, int *listen_port);
void br_tunnel_free(br_tunnel *tn); /* after the lws context is gone (NULL ok) */

#endif
