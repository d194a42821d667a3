/* ippkt.h — the packet logic of the L3 tunnel (proto/TUN.md): IP packets read from a TUN device
 * (IFF_NO_PI: raw IPv4 or IPv6, no header before them) checked and parsed, the allow rules
 * (--tun-allow) they are matched against, CIDR prefixes and the arithmetic of an address pool,
 * the TCP MSS clamp and the ICMP "too big" answer. Both ends use it: the bridge on what its TUN
 * device reads, the house on what arrives from the bridge before it writes it to its own.
 *
 * Pure: no socket, no clock, no log, no allocation; every buffer is the caller's. No system
 * network header either (proto/ may not include them): addresses are 16 bytes and a family,
 * parsed and printed here.
 *
 * Every input is hostile: a packet is read only within the n bytes given, and the functions
 * that take a parsed packet (gp_ip_pkt) check it against the buffer again before they touch it,
 * so a stale or forged parse cannot make them read or write out of bounds. */
#ifndef GP_IPPKT_H
#define GP_IPPKT_H

#include <stddef.h>
#include <stdint.h>

/* IP protocol numbers this file knows by name. */
enum {
    GP_IPPROTO_HOPOPTS = 0,
    GP_IPPROTO_ICMP = 1,
    GP_IPPROTO_TCP = 6,
    GP_IPPROTO_UDP = 17,
    GP_IPPROTO_ROUTING = 43,
    GP_IPPROTO_FRAGMENT = 44,
    GP_IPPROTO_ICMPV6 = 58,
    GP_IPPROTO_NONE = 59, /* IPv6 "no next header" */
    GP_IPPROTO_DSTOPTS = 60,
};

/* ---- addresses and prefixes ---- */

/* An address: family 4 or 6 (not AF_INET: no socket header here). An IPv4 address is in
 * a[0..4), the rest zero, so that a v4 address and a v4-mapped v6 one never compare equal. */
typedef struct gp_ip_addr {
    uint8_t family;
    uint8_t a[16];
} gp_ip_addr;

#define GP_IP_ADDR_STRLEN 46 /* the longest text gp_ip_addr_format writes, NUL included */
#define GP_CIDR_STRLEN 50    /* with "/128" */

/* Text to address: dotted quad (four decimal numbers 0–255, no leading zeros: inet_aton
 * would read 010 as octal) or IPv6 (RFC 4291 text, "::" once, a dotted quad as its last 32
 * bits; no zone, no brackets). 0, or -1. */
int gp_ip_addr_parse(const char *s, size_t n, gp_ip_addr *out);
/* Address to text (RFC 5952 for IPv6: lower case, the longest run of two or more zero groups
 * as "::"). buf needs GP_IP_ADDR_STRLEN bytes; returns buf. */
char *gp_ip_addr_format(const gp_ip_addr *a, char *buf);
int gp_ip_addr_eq(const gp_ip_addr *x, const gp_ip_addr *y); /* same family and bytes */

typedef struct gp_cidr {
    gp_ip_addr addr; /* the network: no bit set past len */
    uint8_t len;     /* 0..32 or 0..128 */
} gp_cidr;

/* "ADDR/N", or "ADDR" alone (a host: /32 or /128). Bits set past N are refused ("10.0.0.1/8":
 * the message names 10.0.0.0/8): a typo there would widen or move a rule or a pool unseen.
 * 0, or -1 with a message in err. */
int gp_cidr_parse(const char *s, gp_cidr *out, char *err, size_t errlen);
char *gp_cidr_format(const gp_cidr *c, char *buf); /* buf: GP_CIDR_STRLEN bytes */
/* A comma-separated list of prefixes (or addresses), s[0..len) (an L3 frame's field, an
 * option): each as gp_cidr_parse takes it, into out[0..max); *n how many. An empty text is no
 * prefix. 0, or -1 with err (an empty or overlong piece, more than max, gp_cidr_parse's). */
int gp_cidr_list_parse(const char *s, size_t len, gp_cidr *out, size_t max, size_t *n, char *err,
                       size_t errlen);
/* c[0..n) as text, sep between two ("," for a field or frame, ", " for people), into out[cap]
 * ("" for none): its length, or -1 when it does not fit. */
int gp_cidr_list_format(const gp_cidr *c, size_t n, const char *sep, char *out, size_t cap);
/* 1 when a is in c (same family, first len bits equal), else 0. */
int gp_cidr_contains(const gp_cidr *c, const gp_ip_addr *a);

/* An address pool: host addresses of a prefix numbered from 0, for the bridge to hand out
 * (it stores which index is whose; the arithmetic is here). IPv4: the network and broadcast
 * addresses are skipped (index 0 is network+1), except in a /31 (RFC 3021: both addresses of
 * a point-to-point link) and a /32 (the one address). IPv6: the all-zeros host (the subnet-
 * router anycast address, RFC 4291) is skipped (index 0 is prefix::1), except in a /127
 * (RFC 6164) and a /128. Indexes are 64-bit: a pool shorter than /64 offers only its first
 * 2^64 - 1 hosts, the rest are not pool addresses. */
uint64_t gp_pool_size(const gp_cidr *pool); /* the number of indexes */
/* The address of index i: 0, or -1 when i >= gp_pool_size(pool). */
int gp_pool_addr(const gp_cidr *pool, uint64_t i, gp_ip_addr *out);
/* The index of address a: 0, or -1 when a is not one of the pool's host addresses (other
 * family, outside the prefix, a skipped address, past the 64-bit index range). */
int gp_pool_index(const gp_cidr *pool, const gp_ip_addr *a, uint64_t *i);

/* ---- parse and check a packet ---- */

/* Why a packet was refused; gp_ip_drop_name gives the counter's name. */
typedef enum gp_ip_drop {
    GP_IPD_OK = 0,
    GP_IPD_TRUNCATED,         /* "truncated": shorter than its header or its total length */
    GP_IPD_BAD_VERSION,       /* "bad_version": neither 4 nor 6 (or empty) */
    GP_IPD_BAD_HEADER_LENGTH, /* "bad_header_length": IPv4 IHL below 5 or past the total */
    GP_IPD_BAD_LENGTH,        /* "bad_length": IPv4 total length below 20 */
    GP_IPD_TRAILING_BYTES,    /* "trailing_bytes": bytes past the total length (an IPv6
                                 jumbogram too: payload length 0, never on our MTU) */
    GP_IPD_BAD_CHECKSUM,      /* "bad_checksum": the IPv4 header checksum */
    GP_IPD_BAD_OPTIONS,       /* "bad_options": IPv4 options that do not parse */
    GP_IPD_SOURCE_ROUTE,      /* "source_route": IPv4 LSRR/SSRR, an IPv6 routing header
                                 with segments left: the destination is not the last hop */
    GP_IPD_BAD_SOURCE,        /* "bad_source": a multicast or limited-broadcast source */
    GP_IPD_BAD_FRAGMENT,      /* "bad_fragment": past 65535 bytes, a non-last fragment not a
                                 multiple of 8, a TCP fragment at offset 8 (RFC 1858) */
    GP_IPD_BAD_EXT_HEADER,    /* "bad_ext_header": an IPv6 extension header past the end,
                                 hop-by-hop not first, a second fragment header */
    GP_IPD_TOO_MANY_EXT,      /* "too_many_ext_headers": more than GP_IP_EXT_MAX */
    GP_IPD_L4_TRUNCATED,      /* "l4_truncated": a whole packet or first fragment without all
                                 of its TCP (20), UDP (8) or ICMP (8) header */
    GP_IPD_BAD_TCP_HEADER,    /* "bad_tcp_header": data offset below 5 or past the end */
    GP_IPD_BAD_UDP_LENGTH,    /* "bad_udp_length": UDP length is not the IP payload's */
    GP_IPD_COUNT
} gp_ip_drop;
const char *gp_ip_drop_name(gp_ip_drop d); /* never NULL ("unknown" out of range) */

#define GP_IP_EXT_MAX 8 /* IPv6 extension headers walked before the packet is refused */

/* gp_ip_pkt.flags */
enum {
    GP_IPF_FRAGMENT = 1 << 0,   /* part of a fragmented datagram (MF set or offset > 0);
                                   not an IPv6 atomic fragment (offset 0, M clear: RFC 6946) */
    GP_IPF_FIRST_FRAG = 1 << 1, /* with GP_IPF_FRAGMENT: the one at offset 0 */
    GP_IPF_L4 = 1 << 2,         /* the TCP/UDP ports or ICMP type and code are set: a TCP,
                                   UDP, ICMP or ICMPv6 packet, whole or first fragment */
    GP_IPF_DF = 1 << 3,         /* may not be fragmented on the way: IPv4 DF, always IPv6 */
    GP_IPF_TCP_SYN = 1 << 4,    /* TCP with SYN (SYN-ACK too: see tcp_flags) */
    GP_IPF_ICMP_ERROR = 1 << 5, /* an ICMP error message (v4 types 3, 4, 5, 11, 12; v6 < 128) */
    GP_IPF_IPV4_OPTIONS = 1 << 6,
    GP_IPF_EXT_HEADERS = 1 << 7, /* IPv6 extension headers were walked */
};

/* What gp_ip_parse found. Offsets are from the start of the packet. */
typedef struct gp_ip_pkt {
    uint8_t version; /* 4 or 6 */
    uint8_t proto;   /* the L4 protocol: IPv4's, or the IPv6 header chain's last next header */
    uint8_t ttl;     /* TTL or hop limit */
    uint8_t tcp_flags;
    uint16_t flags;               /* GP_IPF_* */
    uint16_t sport, dport;        /* TCP/UDP, with GP_IPF_L4 */
    uint8_t icmp_type, icmp_code; /* ICMP/ICMPv6, with GP_IPF_L4 */
    uint32_t len;                 /* the packet: total length (== the buffer's) */
    uint32_t hdr_len;             /* IP header with options or extension headers */
    uint32_t l4_off;              /* where the L4 header (or a fragment's data) starts */
    uint32_t frag_off;            /* fragment offset in bytes */
    uint32_t frag_id;             /* IPv4 identification or IPv6 fragment header id */
    gp_ip_addr src, dst;
} gp_ip_pkt;

/* Checks the packet p[0..n) and fills *pkt. GP_IPD_OK, or why it must be dropped (pkt is then
 * partly filled, to be ignored). A buffer longer than the packet's total length is refused,
 * not trimmed: a TUN read and a tunnel datagram carry exactly one packet, so extra bytes mean
 * a broken or crafted sender, and nothing is forwarded that these checks did not cover. The
 * TCP, UDP and ICMP checksums are not verified (the receiving host does; the rules do not
 * depend on them). */
gp_ip_drop gp_ip_parse(const uint8_t *p, size_t n, gp_ip_pkt *pkt);

/* ---- allow rules (--tun-allow) ---- */

/* PROTO[:PORT[-PORT]][@PREFIX]: PROTO tcp, udp, icmp (ICMP in IPv4, ICMPv6 in IPv6) or any;
 * ports (1–65535, a range low to high) only after tcp or udp, matched against the destination
 * port; PREFIX the destination (CIDR or one address, v4 or v6: the rule then matches that
 * family only). Without @PREFIX any destination matches. */
enum { GP_TUN_ANY, GP_TUN_TCP, GP_TUN_UDP, GP_TUN_ICMP };
typedef struct gp_tun_rule {
    uint8_t proto;      /* GP_TUN_* */
    uint8_t has_ports;  /* else any port */
    uint8_t has_prefix; /* else any destination */
    uint16_t port_lo, port_hi;
    gp_cidr dst;
} gp_tun_rule;

#define GP_TUN_RULE_STRLEN 72 /* "tcp:65535-65535@" and a prefix, NUL included */

/* One rule (the whole string, no spaces). 0, or -1 with a message in err naming what is
 * wrong and the text at fault. Protocol names are case-insensitive. */
int gp_tun_rule_parse(const char *s, gp_tun_rule *r, char *err, size_t errlen);
/* A list: rules separated by commas (spaces around them ignored), as one --tun-allow value.
 * Appends to r[*n..max); 0, or -1 with err (and *n as before the call). Empty rules and more
 * than max are errors. */
int gp_tun_rules_parse(const char *s, gp_tun_rule *r, size_t max, size_t *n, char *err,
                       size_t errlen);
/* The rule in its canonical text (what gp_tun_rule_parse reads back to the same rule); buf
 * needs GP_TUN_RULE_STRLEN bytes; returns buf. */
char *gp_tun_rule_format(const gp_tun_rule *r, char *buf);
/* The first rule of r[0..n) that allows pkt (a packet gp_ip_parse accepted), or -1: denied
 * (the default, an empty list too). A fragment that is not the first has no ports: it matches
 * a rule by protocol and destination alone, ports aside (its first fragment carried them and
 * was matched with them; without it nothing reassembles). Stateless: a reply to a connection
 * the other side opened needs a rule like any packet. */
int gp_tun_rules_match(const gp_tun_rule *r, size_t n, const gp_ip_pkt *pkt);

/* ---- checksums ---- */

/* The 16-bit one's complement sum of p[0..n) added to sum (not complemented; an odd last byte
 * padded with zero, so only the last piece of a sum may be odd). Start from 0. */
uint32_t gp_csum_add(uint32_t sum, const uint8_t *p, size_t n);
/* The checksum field for a sum: folded to 16 bits and complemented. */
uint16_t gp_csum_fold(uint32_t sum);
/* The pseudo-header's sum for TCP, UDP or ICMPv6 (RFC 793, 768, 8200 8.1): both addresses,
 * proto and the L4 length; the family is src's. */
uint32_t gp_csum_pseudo(const gp_ip_addr *src, const gp_ip_addr *dst, uint8_t proto,
                        uint32_t l4_len);
/* The L4 checksum of a whole (not fragmented) TCP, UDP, ICMP or ICMPv6 packet checked from
 * scratch: 1 right, 0 wrong, -1 cannot tell (a fragment, another protocol, UDP over IPv4
 * without a checksum, pkt not p's). For tests and for what the caller wants to verify. */
int gp_l4_csum_ok(const uint8_t *p, size_t n, const gp_ip_pkt *pkt);

/* ---- TCP MSS clamp ---- */

/* A TCP SYN (or SYN-ACK) of p[0..n) (parsed into pkt) carrying an MSS option above mss_max
 * gets mss_max there and its checksum updated (RFC 1624: only the changed words, so a packet
 * whose checksum was wrong stays wrong). Every MSS option is clamped. The options are walked
 * first, in bounds; if they do not parse (a length below 2 or past the header, an MSS option
 * not 4 bytes) nothing is changed. Returns 1 clamped, 0 nothing to do (not a SYN, no MSS
 * option, at most mss_max), -1 malformed options (untouched). */
int gp_tcp_mss_clamp(uint8_t *p, size_t n, const gp_ip_pkt *pkt, uint16_t mss_max);

/* ---- ICMP "too big" ---- */

#define GP_ICMP_TB_V4_MAX 576u  /* the answer's size limit: what every IPv4 host accepts */
#define GP_ICMP_TB_V6_MAX 1280u /* IPv6's minimum MTU (RFC 4443 2.4 c) */
#define GP_ICMP_TB_HOP_LIMIT 64

/* What gp_icmp_too_big did: built, or why not (gp_icmp_tb_name for counters). */
typedef enum gp_icmp_tb {
    GP_TB_BUILT = 0,
    GP_TB_ICMP_ERROR,     /* "icmp_error": never an error about an error (RFC 1812, 4443) */
    GP_TB_FRAGMENT,       /* "fragment": not the first fragment (no L4 header to quote) */
    GP_TB_BAD_SOURCE,     /* "bad_source": the source is no single host (0/8, 127/8, class D
                             and E, ::, ::1, ff00::/8) */
    GP_TB_MULTICAST_DEST, /* "multicast_dest": IPv4 to multicast or 255.255.255.255 (IPv6
                             sends Packet Too Big to multicast too: RFC 4443 2.4 e.2) */
    GP_TB_NOT_TOO_BIG,    /* "not_too_big": the packet fits mtu */
    GP_TB_DF_CLEAR,       /* "df_clear": IPv4 without DF may be fragmented, not refused */
    GP_TB_INVALID,        /* "invalid": from's family not the packet's, mtu below 68 (v4) or
                             1280 (v6) or above 65535, out too small, pkt not p's */
    GP_TB_COUNT
} gp_icmp_tb;
const char *gp_icmp_tb_name(gp_icmp_tb r);

/* The answer to the too big packet p[0..n) (parsed into pkt): ICMPv4 "fragmentation needed"
 * (type 3 code 4, next-hop MTU mtu, RFC 1191) or ICMPv6 "packet too big" (type 2, MTU mtu),
 * from address from to the packet's source, quoting as much of the packet as fits in 576
 * (v4) or 1280 (v6) bytes and in out[cap] (at least its IP header and 8 bytes, or all of a
 * smaller packet: else GP_TB_INVALID). IPv4 header: no options, DF set (so any ID will do,
 * RFC 6864: ID 0), TTL GP_ICMP_TB_HOP_LIMIT; IPv6 hop limit the same. Both checksums done.
 * GP_TB_BUILT with *out_len set, or why no answer may be sent. */
gp_icmp_tb gp_icmp_too_big(const uint8_t *p, size_t n, const gp_ip_pkt *pkt, const gp_ip_addr *from,
                           uint32_t mtu, uint8_t *out, size_t cap, size_t *out_len);

#endif
