/* flowtab.h — the house's flow table (proto/TUN.md, "Replies (flow table)"): what the house
 * itself sent toward the hub (house -> hub) is recorded as a flow, so that the replies to it,
 * and the ICMP errors about it, may come back in (hub -> house) without an allow rule: a
 * firewall's `ct state established,related accept`. The --tun-allow rules (ippkt.h) stay as
 * they are for everything else.
 *
 * Pure: no clock (the time is passed in, in milliseconds, and must not go backwards: if it
 * does, flows live longer, nothing worse; past GP_FLOWTAB_TIME_MAX it stands still), no I/O,
 * no global, no log. The table is allocated
 * once by gp_flowtab_new and never grows: at most `capacity` flows; when full, a new flow takes
 * the place of an expired one if there is one, else of the least recently used (counted as
 * evicted). O(1) on average per packet: a chained hash table keyed with SipHash-2-4 under the
 * caller's secret key (libsodium's crypto_shorthash), so that the hub side cannot choose
 * addresses and ports that collide, and one LRU list per timeout class.
 *
 * A flow's key: family, L4 protocol, both addresses, and for TCP and UDP both ports; for an
 * ICMP echo (ICMPv4 in IPv4, ICMPv6 in IPv6) the echo id and the request type (8 or 128: a
 * request goes out, its reply, 0 or 129, comes back); for any other protocol the addresses and
 * the protocol alone. Inbound packets are looked up with source and destination swapped.
 *
 * Every input is hostile: the packet is read only within the n bytes given, and the parse
 * (gp_ip_pkt) is checked against them first; an ICMP error's quote is parsed here, bounded. */
#ifndef GP_FLOWTAB_H
#define GP_FLOWTAB_H

#include <stddef.h>
#include <stdint.h>

#include "ippkt.h"

#define GP_FLOWTAB_DEFAULT_CAPACITY 16384u
#define GP_FLOWTAB_MAX_CAPACITY (1u << 22)
#define GP_FLOWTAB_KEY_LEN 16                /* crypto_shorthash_KEYBYTES: the hash's secret key */
#define GP_FLOWTAB_TIME_MAX (UINT64_MAX / 2) /* a later time is taken as this one */

/* Idle timeouts, in ms: a flow not seen (in or out) for this long is gone. */
#define GP_FLOWTAB_TCP_NEW_MS 60000u      /* TCP that never had a packet back (a SYN alone) */
#define GP_FLOWTAB_TCP_MS 3600000u        /* TCP once a packet came back */
#define GP_FLOWTAB_TCP_CLOSE_MS 30000u    /* TCP after a RST (either way), or FIN both ways */
#define GP_FLOWTAB_UDP_MS 60000u          /* UDP that never had a datagram back */
#define GP_FLOWTAB_UDP_REPLIED_MS 180000u /* UDP once one came back */
#define GP_FLOWTAB_ICMP_MS 30000u         /* ICMP echo */
#define GP_FLOWTAB_OTHER_MS 60000u        /* any other protocol */

typedef struct gp_flowtab gp_flowtab;

typedef struct gp_flowtab_stats {
    uint64_t flows;      /* recorded now (expired ones not yet dropped included) */
    uint64_t created;    /* flows recorded since the start */
    uint64_t evicted;    /* live flows dropped to make room: the least recently used */
    uint64_t expired;    /* flows dropped after their timeout: at a lookup, by the sweep, or
                            to make room (flows == created - evicted - expired) */
    uint64_t in_allowed; /* inbound packets let in as part of a flow (later fragments too) */
    uint64_t in_related; /* inbound ICMP errors let in for quoting a flow's packet */
    uint64_t in_frag;    /* of in_allowed: later fragments, let in by their address pair */
} gp_flowtab_stats;

/* A table of at most capacity flows (0: GP_FLOWTAB_DEFAULT_CAPACITY), all of its memory
 * allocated here, once (136 to 144 bytes a flow: 2.2 MB at the default). key: GP_FLOWTAB_KEY_LEN
 * secret random bytes (randombytes_buf), kept by the table. NULL: capacity above
 * GP_FLOWTAB_MAX_CAPACITY, no key, or out of memory. */
gp_flowtab *gp_flowtab_new(size_t capacity, const uint8_t *key);
void gp_flowtab_free(gp_flowtab *t); /* NULL is fine */
size_t gp_flowtab_capacity(const gp_flowtab *t);

/* An outbound packet (the house -> the hub) p[0..n), as gp_ip_parse accepted it into pkt:
 * records its flow or refreshes it. 1 recorded or refreshed, 0 nothing to record: a fragment
 * that is not the first (it has no ports; the first one recorded the flow), an ICMP message
 * other than an echo request (errors are answers, not flows), a TCP RST without a flow, a
 * pkt that does not describe p[0..n). TCP: a FIN or RST moves the flow toward its close
 * timeout; a SYN (without ACK) on a closed or reset flow starts it afresh. */
int gp_flowtab_out(gp_flowtab *t, const gp_ip_pkt *pkt, const uint8_t *p, size_t n,
                   uint64_t now_ms);

/* An inbound packet (the hub -> the house) p[0..n), as gp_ip_parse accepted it into pkt:
 * 1 when it may enter the house because of a flow, else 0 (the rules decide). 1 for:
 *  - a reply: the packet of a recorded, unexpired flow, source and destination swapped (TCP,
 *    UDP, an ICMP echo reply to the house's request with its id, any other protocol by its
 *    addresses); the flow is refreshed (and marked replied, TCP FIN and RST noted);
 *  - a related ICMP error: ICMPv4 destination unreachable (fragmentation needed too), time
 *    exceeded, parameter problem; ICMPv6 destination unreachable, packet too big, time
 *    exceeded, parameter problem: not fragmented, to the address that sent the quoted packet,
 *    quoting (IP header, extension headers walked, then at least 8 bytes of TCP, UDP or ICMP;
 *    the IP header alone for other protocols) a packet of a recorded, unexpired flow as the
 *    house sent it. The flow is not refreshed: an error is no sign of life;
 *  - a fragment that is not the first (no ports to look up): when a flow of its protocol
 *    between the same two addresses exists or lately did (the latest deadline any such flow
 *    reached). Its first fragment, with the ports, was looked up like any packet; a later one
 *    reassembles with nothing else at the house, but is not itself tied to one flow. */
int gp_flowtab_in(gp_flowtab *t, const gp_ip_pkt *pkt, const uint8_t *p, size_t n, uint64_t now_ms);

/* Drops at most budget flows whose timeout has passed at now_ms (each class's least recently
 * used first: the work is the number dropped, plus one look per class). Returns how many.
 * Expired flows are dropped at lookup too, and to make room; this bounds their memory
 * between packets. */
size_t gp_flowtab_expire(gp_flowtab *t, uint64_t now_ms, size_t budget);

void gp_flowtab_get_stats(const gp_flowtab *t, gp_flowtab_stats *out);

/* Walks the whole table (O(capacity)) and checks its invariants: every flow in the list of its
 * class and found by its key, the lists ordered by last use (true while the time passed in has
 * never gone backwards), the address pairs' counts, the free lists, flows <= capacity and
 * flows == created - evicted - expired. 0, or the number of the first check that failed. For
 * tests and fuzzing. */
int gp_flowtab_check(const gp_flowtab *t);

#endif
