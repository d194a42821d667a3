/* l3.h — the house's side of the L3 tunnel (proto/TUN.md): its own TUN device (--tun), which
 * gets the address the bridges give it and routes toward the hub; IP packets between the device
 * and the bridge's rudp datagrams; what the hub side may reach decided by --tun-allow rules
 * (the default: nothing) and by the flow table (replies to what the house itself opened, and
 * the ICMP errors about it, always come back); --tun-route subnets the house asks to route,
 * --tun-masquerade to reach its LAN under its own address. I/O side (the device through
 * proto/adapters/uv_tun.h and rtnl.h); the packet rules are proto/ippkt.h's and flowtab.h's.
 *
 * The tunnel (tunnel.c) calls it when a connection comes up and goes down, with the bridge's
 * L3_GRANT and with each datagram; it sends its L3_REQ and its datagrams back through the ops
 * it is given. The device lives as long as the house: its address and routes stay across
 * reconnects and bridge moves (the address is the same on every bridge), so the TCP
 * connections through it survive them. */
#ifndef HS_L3_H
#define HS_L3_H

#include "frame.h"
#include "ippkt.h"
#include "rudp.h"
#include "transport.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HS_L3_RULES_MAX 64
#define HS_L3_ROUTES_MAX 64
#define HS_L3_MTU_DEFAULT 1280
#define HS_L3_MTU_MAX (GP_RUDP_MTU_MAX - GP_RUDP_DGRAM_OVERHEAD(0)) /* 1431 */

typedef struct hs_l3 hs_l3;

typedef struct hs_l3_conf {
    const char *dev;
    const gp_tun_rule *rules; /* --tun-allow */
    size_t nrules;
    const gp_cidr *routes; /* --tun-route */
    size_t nroutes;
    int masquerade; /* --tun-masquerade */
    unsigned mtu;   /* --tun-mtu */
} hs_l3_conf;

/* How it reaches the tunnel (tunnel.c fills it). */
typedef struct hs_l3_ops {
    void *ud;
    /* Queues a control frame on the current connection: 0, or an error. */
    int (*send_frame)(void *ud, const gp_frame *f);
} hs_l3_ops;

/* Opens the device (up, its MTU, no address yet), the masquerade rules and forwarding when
 * asked, and starts reading. NULL with err (no CAP_NET_ADMIN, no /dev/net/tun, nft missing,
 * ...). */
hs_l3 *hs_l3_new(uv_loop_t *loop, const hs_l3_conf *conf, const hs_l3_ops *ops, char *err,
                 size_t errlen);
/* The device and the masquerade rules go. NULL ok. */
void hs_l3_free(hs_l3 *l3);

/* A connection is live with protocol proto over transport tr: the L3_REQ goes out when both
 * can (protocol 3, a transport with datagrams); else one log line says why not. */
void hs_l3_tunnel_up(hs_l3 *l3, int proto, hs_transport *tr, const char *bridge);
/* The connection is gone: packets from the device are dropped (counted) until the next one;
 * the device keeps its address and routes. */
void hs_l3_tunnel_down(hs_l3 *l3);
/* The bridge's L3_GRANT. */
void hs_l3_grant(hs_l3 *l3, const gp_frame *f);
/* A datagram from the bridge. */
void hs_l3_dgram(hs_l3 *l3, const uint8_t *p, size_t n);

typedef struct hs_l3_counters {
    uint64_t pkts_in, pkts_out, bytes_in, bytes_out; /* in: from the hub into the device */
    uint64_t denied;                                 /* refused by the rules */
    uint64_t bad;        /* failed gp_ip_parse (either way), or a wrong address */
    uint64_t no_tunnel;  /* from the device while no grant is live */
    uint64_t too_big;    /* answered with ICMP "too big" */
    uint64_t queue_full; /* the transport refused the datagram */
    uint64_t write_fail; /* the device refused the packet */
} hs_l3_counters;
void hs_l3_counters_get(const hs_l3 *l3, hs_l3_counters *out);
/* 1 while a grant is live (the device has its address and packets flow), else 0. NULL: 0. */
int hs_l3_granted(const hs_l3 *l3);

#endif
