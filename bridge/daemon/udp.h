/* udp.h — the rudp:// transport (udp.c, proto/RUDP.md): one UDP socket, the session server,
 * one peer per session. Its connections are conns' (conn.h); a confirmed session's house is
 * claimed through houses. */
#ifndef BR_UDP_H
#define BR_UDP_H

#include "house.h"

#include <stdint.h>

/* A context: the socket, the session server, the peers, its scripts' SHAs. env, conns,
 * houses and reqs are kept (main.c makes them all and outlives it). NULL: out of memory. */
typedef struct br_udp br_udp;
br_udp *br_udp_new(const br_env *env, br_conns *conns, br_houses *houses, br_requests *reqs);
/* Starts listening when rudp is on (env->cfg->rudp_listen >= 0) with the static private key
 * `key` (main.c reads it from --rudp-key). 0 (also when rudp is off), -1: cannot listen. */
int br_udp_start(br_udp *u, const uint8_t key[32]);
void br_udp_load_scripts(br_udp *u);
int br_udp_port(const br_udp *u); /* the port listened on, 0: off */
void br_udp_stop(br_udp *u);      /* drops every session and closes the socket (from the loop) */
void br_udp_free(br_udp *u);      /* after the loop: the session server and u (NULL ok) */
/* What the rudp sessions of the br_udp ud measured, for the metrics: mean smoothed RTT and
 * loss over live sessions (0 when none), retransmits and FEC repairs since start. */
void br_udp_metrics(void *ud, double *rtt_ms_mean, double *loss_mean, uint64_t *retransmits,
                    uint64_t *fec_repaired);

#endif
