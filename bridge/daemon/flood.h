/* flood.h — the house listener's defences against connection floods (flood.c): caps on
 * connections that have not authenticated yet (per source address and in total, the oldest
 * shed first), their deadline, and no busy loop when accept(2) runs out of descriptors.
 * I/O side: it closes lws connections and touches the listening socket. */
#ifndef BR_FLOOD_H
#define BR_FLOOD_H

#include "env.h"

#include <stdint.h>
#include <sys/socket.h>

struct lws;
struct lws_context;

/* A context: the pre-auth records of one listener, its caps, its EMFILE state. main.c makes
 * it (env kept) and gives it to the tunnel, which sets it up and reports to it. */
typedef struct br_flood br_flood;
br_flood *br_flood_new(const br_env *env); /* NULL: out of memory */

/* Sizes the caps from the options and the descriptors lws may use (its table). Where the
 * listener's lws context and port will be (tunnel.c's) are kept. */
void br_flood_init(br_flood *fl, struct lws_context *const *lws, const int *listen_port,
                   unsigned lws_fds);
/* The total and per-address caps in force (after clamping to the table). */
unsigned br_flood_cap_total(const br_flood *fl);
unsigned br_flood_cap_addr(const br_flood *fl);

/* A connection from sa was accepted (LWS_CALLBACK_FILTER_NETWORK_CONNECTION): makes room
 * for it under the caps by shedding the oldest pre-auth connection of its address, or of
 * all, and remembers its address for br_flood_adopted. Always admits it. */
void br_flood_accepted(br_flood *fl, const struct sockaddr *sa);
/* lws made the accepted connection wsi (LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED). */
void br_flood_adopted(br_flood *fl, struct lws *wsi);
/* The connection became a WebSocket (br_conn now keeps the handshake deadline). */
void br_flood_upgraded(br_flood *fl, struct lws *wsi);
/* The house on wsi authenticated: no longer pre-auth. */
void br_flood_authed(br_flood *fl, struct lws *wsi);
/* 1 when wsi is closing because this module shed it (the bridge hung up, not the peer). */
int br_flood_was_shed(const struct lws *wsi);
/* lws frees wsi (LWS_CALLBACK_WSI_DESTROY). */
void br_flood_destroyed(br_flood *fl, struct lws *wsi);
/* Every second: closes pre-auth connections past their deadline. */
void br_flood_tick(br_flood *fl, uint64_t now_ms);
/* accept(2) failed for want of descriptors (lws logged it): drain the listen queue with the
 * spare descriptor, and pause accepting for a while. */
void br_flood_emfile(br_flood *fl);
/* Pre-auth connections now. */
unsigned br_flood_preauth(const br_flood *fl);
/* Drops every record, closes the spare descriptor and the pause timer (from the loop). */
void br_flood_stop(br_flood *fl);
/* After the loop has run the timer's close (NULL ok). */
void br_flood_free(br_flood *fl);

#endif
