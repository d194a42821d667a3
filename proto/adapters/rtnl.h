/* rtnl.h — a small synchronous rtnetlink client: what the L3 tunnel needs to configure its TUN
 * device (uv_tun.h) — MTU, up/down, an address, routes through it — and nothing else. One
 * request, one ACK: each call sends a message on a NETLINK_ROUTE socket and waits (bounded,
 * GP_RTNL_TIMEOUT_MS) for the kernel's answer, decoding its error and, where the kernel gives
 * one, its extended-ACK text ("Nexthop device is not up").
 *
 * Synchronous on purpose: a daemon configures its device at start and on reload, a handful of
 * calls that each take microseconds; an asynchronous client would be more code for nothing.
 * No libmnl or libnl: an adapter links only the C library and libuv (uv_admin.h says why these
 * files live in proto/adapters/).
 *
 * Every call returns 0 or a negative errno, and on failure writes what failed into err
 * ("adding route 10.0.0.0/24 dev gp0: File exists"). Routes this module adds carry its own
 * routing protocol number (GP_RTNL_PROTO, shown by `ip route` as "proto 77"), so that they can
 * be told from an administrator's, and a deletion names the device: it never removes a route
 * that another device (another daemon's) has taken over with a replace. */
#ifndef GP_RTNL_H
#define GP_RTNL_H

#include "../ippkt.h"

#include <stddef.h>
#include <stdint.h>

#define GP_RTNL_TIMEOUT_MS 5000 /* the longest a call waits for the kernel's answer */
#define GP_RTNL_PROTO 77        /* rtm_protocol of the routes added here */
#define GP_IFNAMSIZ 16          /* IFNAMSIZ: an interface name, its NUL included */

/* A NETLINK_ROUTE socket and the sequence number of its last request. Not shared between
 * threads; any number may be open. */
typedef struct gp_rtnl {
    int fd; /* -1: closed */
    uint32_t seq;
    uint32_t portid; /* the kernel's answers carry it */
} gp_rtnl;

/* A network device: its index (what the kernel goes by) and its name (what messages say). A
 * plain value: it may outlive the device, and a call on a device that is gone fails with
 * -ENODEV rather than touching one that has since taken its name. */
typedef struct gp_netdev {
    int index;
    char name[GP_IFNAMSIZ];
} gp_netdev;

/* An address: proto/ippkt.h's (family 4 or 6, the bytes in network order, IPv4 in a[0..4)),
 * so that what the tunnel parsed goes to the kernel as it is. */
typedef gp_ip_addr gp_rtnl_ip;

/* A route through a device: dst/dst_len (no bit set past dst_len: refused, not masked), an
 * optional metric (0: the kernel's default, 0 for IPv4 and 1024 for IPv6), an optional
 * preferred source address (family 0: none; else the family of dst, an address of this host:
 * what a local socket binds to when it sends along the route). */
typedef struct gp_rtnl_route {
    gp_rtnl_ip dst;
    uint8_t dst_len;
    uint32_t metric;
    gp_rtnl_ip src;
} gp_rtnl_route;

/* Opens the socket. 0, or -errno (err says why). */
int gp_rtnl_open(gp_rtnl *nl, char *err, size_t errlen);
/* Closes it; a closed or never-opened one (fd -1) is fine. */
void gp_rtnl_close(gp_rtnl *nl);

/* The device's MTU (IPv6 needs at least 1280: below that the kernel turns IPv6 off on it). */
int gp_rtnl_set_mtu(gp_rtnl *nl, const gp_netdev *dev, unsigned mtu, char *err, size_t errlen);
/* Brings the device up (up != 0) or down. Down drops its routes (the kernel's doing). */
int gp_rtnl_set_up(gp_rtnl *nl, const gp_netdev *dev, int up, char *err, size_t errlen);
/* Adds a/prefix_len to the device; adding one it already has is not an error (replace
 * semantics: a restart configures the same again). IPv6 addresses are added with IFA_F_NODAD
 * (no duplicate detection: a TUN has no link to detect on), and on a device that is up the call
 * returns once the kernel receives on the address (it installs the address's local route a
 * moment after its ACK): bring the device up first. */
int gp_rtnl_addr_add(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_ip *a, unsigned prefix_len,
                     char *err, size_t errlen);

/* Adds a route through the device: -EEXIST when the main table has one for the same prefix and
 * metric already (through any device). */
int gp_rtnl_route_add(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                      size_t errlen);
/* Adds or replaces the route for the same prefix and metric (NLM_F_REPLACE), whichever device
 * it went through: one atomic change in the kernel, so a prefix moving from one daemon's device
 * to another's is never without a route, nor with two. */
int gp_rtnl_route_replace(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                          size_t errlen);
/* Deletes the route through this device (its prefix, metric when nonzero, and protocol):
 * -ESRCH when there is none — never deleted, or taken over by another device. */
int gp_rtnl_route_del(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                      size_t errlen);
/* Deletes routes[0..n) (the caller's list of what it added through dev). A route already gone
 * (-ESRCH: taken over, or gone with its device: -ENODEV) is not an error; any other failure
 * does not stop the others, and the first is returned and described. */
int gp_rtnl_route_flush(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *routes, size_t n,
                        char *err, size_t errlen);

#endif
