/* udp.h — the rudp:// transport (udp.c, proto/RUDP.md): one UDP socket, the session server,
 * one peer per session. Its connections are conns' (conn.h); a confirmed session's house is
 * claimed through houses. */
#ifndef BR_UDP_H
#define BR_UDP_H

#include "house.h"

#include <stdint.h>

/* Starts listening when rudp is on (env->cfg->rudp_listen >= 0) with the static private key
 * `key` (main.c reads it from --rudp-key). env, conns and houses are kept. 0 (also when rudp
 * is off), -1: cannot listen. */
int br_udp_start(const br_env *env, br_conns *conns, br_houses *houses, const uint8_t key[32]);
void br_udp_load_scripts(void);
void br_udp_stop(void);  /* drops every session and closes the socket (from the loop) */
void br_udp_final(void); /* after the loop: frees the session server */
/* What the rudp sessions measured, for the metrics: mean smoothed RTT and loss over live
 * sessions (0 when none), retransmits and FEC repairs since start. */
void br_udp_metrics(double *rtt_ms_mean, double *loss_mean, uint64_t *retransmits,
                    uint64_t *fec_repaired);

#endif
