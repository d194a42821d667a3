/* tunnel.h — the WebSocket transport (ws/wss, tunnel.c): libwebsockets on the daemon's loop
 * and the handshake of proto/PROTOCOL.md. Its connections are conns' (conn.h); a proven
 * house is claimed through houses. */
#ifndef BR_TUNNEL_H
#define BR_TUNNEL_H

#include "house.h"

struct lws_context;

/* Starts listening. env, conns and houses are kept; *lws receives the lws context (lws NULLs
 * it once destroyed) and *listen_port the port. 0, or -1 (logged). */
int br_tunnel_start(const br_env *env, br_conns *conns, br_houses *houses, struct lws_context **lws,
                    int *listen_port);

#endif
