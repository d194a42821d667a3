/* l3.h — the bridge's side of the L3 tunnel (proto/TUN.md): one TUN device (--tun) with the
 * bridges' own addresses (index 0 of each pool, --tun-pool), and for every held house that
 * asked for L3 (an L3_REQ over rudp://) its addresses from the pools (Redis, store_tun.h: the
 * same on every bridge), routes to them and to the subnets the registry lets it route, in the
 * device; IP packets between the device and the house's rudp datagrams, checked both ways.
 * I/O side (the device through proto/adapters/uv_tun.h, routes through rtnl.h, Redis through
 * env->db); the packet rules are proto/ippkt.h's.
 *
 * Lifetimes: a house's L3 state (br_l3_house) hangs off its connection (c->l3) from its grant
 * until br_l3_conn_gone, which takes its routes out of the device: the bridge holding a house
 * owns its routes, a fenced or closed connection gives them up (another bridge's `replace`
 * may have taken them already: then there is nothing to delete). */
#ifndef BR_L3_H
#define BR_L3_H

#include "conn.h"
#include "env.h"
#include "frame.h"
#include "ippkt.h"
#include "rudp.h"

#include <stddef.h>
#include <stdint.h>

#define BR_L3_MTU_DEFAULT 1280 /* IPv6's minimum: what every path should carry */
#define BR_L3_ROUTES_MAX 64    /* routes a house may be granted */
#define BR_L3_MTU_MAX (GP_RUDP_MTU_MAX - GP_RUDP_DGRAM_OVERHEAD(1)) /* 1439 */

typedef struct br_l3 br_l3;
typedef struct br_l3_house br_l3_house;

typedef struct br_l3_conf {
    const char *dev; /* the device's name ("gp0") */
    gp_cidr pool[2]; /* [0] IPv4, [1] IPv6 */
    int has[2];
    unsigned mtu; /* the tunnel's largest IP packet (a house may ask for less) */
} br_l3_conf;

/* Parses --tun-pool ("CIDR[,CIDR]": at most one IPv4 and one IPv6 pool, each with room for
 * the bridges' address and at least one house) into c. 0, or -1 with err. */
int br_l3_pools_parse(br_l3_conf *c, const char *s, char *err, size_t errlen);

/* Opens and configures the device (address, MTU, up, the pools' catch-all route) and starts
 * reading; records the pools in Redis once it is up (br_l3_redis_up). NULL with err (no
 * CAP_NET_ADMIN, no /dev/net/tun, ...). */
br_l3 *br_l3_new(const br_env *env, const br_l3_conf *conf, char *err, size_t errlen);
/* Shutdown: the device goes (and with it every route through it); grants and datagrams are
 * refused from now on. NULL ok. */
void br_l3_stop(br_l3 *l3);
void br_l3_free(br_l3 *l3); /* NULL ok; after every connection is gone */
/* Redis is (again) up: the pools are recorded or checked (a bridge whose pools differ from
 * those recorded refuses every L3 request, logged once). */
void br_l3_redis_up(br_l3 *l3);

/* A house's L3_REQ (f) on its live connection: answered with L3_GRANT, now or once Redis
 * answered. l3 NULL (no --tun): refused. */
void br_l3_request(br_l3 *l3, br_conn *c, const gp_frame *f);
/* The grant's last step, once Redis gave the house its pool index and its registry's allowed
 * routes (allowed_text, comma-separated): routes into the device, the session's datagram
 * size, the forwarding tables, and the L3_GRANT (or its refusal) to c. What br_l3_request's
 * Redis answers lead to, and what tests call directly. */
void br_l3_grant(br_l3 *l3, br_conn *c, long long index, unsigned mtu, const gp_cidr *asked,
                 size_t nasked, const char *allowed_text);
/* A datagram (an IP packet) from the house of c. */
void br_l3_dgram(br_l3 *l3, br_conn *c, const uint8_t *p, size_t n);
/* c is closing or gone: its routes leave the device. Idempotent. */
void br_l3_conn_gone(br_l3 *l3, br_conn *c);

/* The L3 figures of a connection, for its live state (0s without L3). addr: its IPv4 and/or
 * IPv6 address, comma-separated ("" without). */
typedef struct br_l3_figures {
    char addr[2 * GP_IP_ADDR_STRLEN];
    uint64_t pkts_in, pkts_out, bytes_in, bytes_out, drops;
} br_l3_figures;
void br_l3_figures_of(const br_conn *c, br_l3_figures *out);

/* Bridge-wide counters (metrics). */
typedef struct br_l3_totals {
    uint64_t houses, pkts_in, pkts_out, bytes_in, bytes_out;
    uint64_t drops[GP_IPD_COUNT]; /* by parse reason */
    uint64_t no_route, spoofed, forbidden_dst, too_big, queue_full, write_fail;
} br_l3_totals;
void br_l3_totals_get(const br_l3 *l3, br_l3_totals *out);
/* t's drops by reason as the metrics name them (ADMIN.md): the parse reasons first
 * (gp_ip_drop_name), then no_route, spoofed, forbidden_dst, too_big, queue_full, write_fail.
 * Fills reason[k] (static strings) and n[k] for k < BR_L3_DROP_REASONS. */
#define BR_L3_DROP_REASONS (GP_IPD_COUNT - 1 + 6)
void br_l3_totals_drops(const br_l3_totals *t, const char *reason[BR_L3_DROP_REASONS],
                        uint64_t n[BR_L3_DROP_REASONS]);

#endif
