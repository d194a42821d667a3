/* uv_tun.h — a TUN device owned by a daemon, its packets on a libuv loop: the L3 tunnel's one
 * contact with the kernel's IP stack. Both ends use it: the bridge and the house each own a
 * device; what the kernel routes into it is read here and handed to the caller (who sends it
 * over the session as a datagram), and what arrives from the peer is written back into it.
 * Configuring the device (MTU, up, addresses, routes) is rtnl.h's; the house's forwarding
 * switches are here (gp_tun_forwarding_enable).
 *
 * The device is IFF_TUN | IFF_NO_PI: every read is one raw IPv4 or IPv6 packet, every write
 * must be one. It is not persistent: it exists while this handle is open, and the kernel
 * deletes it, its addresses and its routes when the descriptor is closed (also when the daemon
 * dies).
 *
 * A TUN is a NIC queue, not a stream: reading takes at most GP_TUN_READ_BUDGET packets a wakeup
 * (the loop's other handles get their turn; the rest are read on the next one), and a write
 * never blocks the loop — a packet the kernel cannot take now is dropped and counted, as a full
 * NIC queue drops, and TCP above recovers.
 *
 * An adapter (uv_admin.h says why these files live in proto/adapters/): libuv, the C library
 * and kernel headers only. */
#ifndef GP_UV_TUN_H
#define GP_UV_TUN_H

#include "rtnl.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define GP_TUN_READ_BUDGET 64 /* packets read a wakeup at most */
#define GP_TUN_PKT_MAX 65535  /* the largest IP packet (the read buffer's size) */

typedef struct gp_tun gp_tun;

/* Counters since open; "read" is what the kernel routed into the device (to send to the peer),
 * "write" what was written into it (from the peer). */
typedef struct gp_tun_stats {
    uint64_t read_pkts, read_bytes;
    uint64_t write_pkts, write_bytes;
    uint64_t write_drops;  /* the kernel could not take the packet now (EAGAIN): dropped */
    uint64_t read_errors;  /* a read that failed other than "nothing more" */
    uint64_t write_errors; /* refused: bad packet (EINVAL), device down (EIO), gone, ... */
} gp_tun_stats;

/* One packet read from the device (valid during the call only). The callback may stop reading
 * or close the handle; the read loop then ends. */
typedef void (*gp_tun_packet_fn)(void *ud, const uint8_t *pkt, size_t len);
/* Reading stopped because of an error (-errno; -EBADF, libuv's word for the descriptor's
 * POLLERR, when the device was deleted under it): reading is off; the caller logs and
 * closes. */
typedef void (*gp_tun_error_fn)(void *ud, int err);

/* Opens /dev/net/tun and creates (or attaches to a persistent) device called name: a fixed
 * name ("gp0") or a template with one %d ("gp%d", the kernel picks the number); NULL or "": the
 * kernel's "tun%d". Non-blocking, close-on-exec. The real name and index: gp_tun_dev. Not
 * reading yet. 0 and *out, or -errno with err saying why and what to do (no CAP_NET_ADMIN, no
 * /dev/net/tun, the name taken, ...). */
int gp_tun_open(uv_loop_t *loop, const char *name, gp_tun **out, char *err, size_t errlen);
/* The device's name and index, for rtnl.h's calls. */
const gp_netdev *gp_tun_dev(const gp_tun *t);
/* Starts (or restarts, with new callbacks) reading; on_error may be NULL. Stopping is the
 * caller's backpressure: while its queue toward the peer is full, the kernel's queue of the
 * device fills instead and drops (the device's txqueuelen). 0, or -errno (closing: -EBADF). */
int gp_tun_read_start(gp_tun *t, gp_tun_packet_fn on_packet, gp_tun_error_fn on_error, void *ud);
void gp_tun_read_stop(gp_tun *t);
/* Writes one packet (IPv4 or IPv6, 1..GP_TUN_PKT_MAX bytes) into the device: the kernel takes
 * it as received. Never blocks. 0: written; -EAGAIN: the kernel could not take it now, dropped
 * and counted; other -errno: refused and counted (-EINVAL not an IP packet, -EIO device down,
 * -EBADFD device deleted, -EMSGSIZE size, -EBADF closing). */
int gp_tun_write(gp_tun *t, const uint8_t *pkt, size_t len);
const gp_tun_stats *gp_tun_stats_get(const gp_tun *t);
/* Stops reading and closes: the descriptor is closed and the memory freed in libuv's close
 * callback (then on_closed(ud), which may be NULL); the device is gone with the descriptor.
 * Once only; t must not be used after this call. Safe inside the packet callback. */
void gp_tun_close(gp_tun *t, void (*on_closed)(void *ud), void *ud);

/* Turns IP forwarding on for family 4 (net.ipv4.ip_forward) or 6
 * (net.ipv6.conf.all.forwarding) in this network namespace: the house forwards the tunnel's
 * packets to its network. Already on: 0, nothing written (a daemon without the right to write
 * it works when an administrator set it). 0, or -errno with err saying why and what to do.
 * IPv6: with forwarding on, the kernel ignores router advertisements on interfaces whose
 * accept_ra is 1; a house host that takes its own default route from SLAAC needs accept_ra=2
 * on that interface (not set here: it is the host's network, not the tunnel's). */
int gp_tun_forwarding_enable(int family, char *err, size_t errlen);

#endif
