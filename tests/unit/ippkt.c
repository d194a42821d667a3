/* Unit tests for the L3 tunnel's packet logic (proto/ippkt.c): IPv4 and IPv6 packets built
 * by hand (ippkt_build.h) with their checksums computed by its own reference sum (not the code
 * under test), every reason a packet is refused, IPv6 extension headers and fragments of both
 * families, addresses and prefixes against inet_pton/inet_ntop, the pool's index arithmetic at
 * its edges, the allow rules (their parser's messages, their matching), the MSS clamp (its
 * checksum recomputed from scratch) and the ICMP too-big answers read back by the parser. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ippkt.h"
#include "ippkt_build.h"

static uint8_t buf[70000], l4b[70000];

/* ---- parse ---- */

Test(ippkt, v4_tcp_syn) {
    const uint8_t mss[] = {2, 4, 0x05, 0xb4, 1, 1, 4, 2}; /* MSS 1460, NOP, NOP, SACK-OK */
    size_t l = tcp(l4b, 40000, 22, 0x02, mss, sizeof mss, 0);
    spec s = {.src = "192.0.2.10", .dst = "10.1.2.3", .proto = 6, .frag = 0x4000};
    size_t n = build(buf, &s, l4b, l, 1);
    gp_ip_pkt k;
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.version, 4);
    cr_assert_eq(k.proto, GP_IPPROTO_TCP);
    cr_assert_eq(k.len, n);
    cr_assert_eq(k.hdr_len, 20);
    cr_assert_eq(k.l4_off, 20);
    cr_assert_eq(k.sport, 40000);
    cr_assert_eq(k.dport, 22);
    cr_assert_eq(k.tcp_flags, 0x02);
    cr_assert_eq(k.ttl, 64);
    cr_assert_eq(k.frag_id, 0x1234);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_DF | GP_IPF_TCP_SYN);
    cr_assert(gp_ip_addr_eq(&k.src, &(gp_ip_addr){4, {192, 0, 2, 10}}));
    cr_assert(gp_ip_addr_eq(&k.dst, &(gp_ip_addr){4, {10, 1, 2, 3}}));
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);
    buf[n - 1] ^= 1; /* an option byte: the TCP checksum no longer holds */
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK, "L4 checksums are not the parser's");
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 0);
}

Test(ippkt, v4_udp_icmp_and_options) {
    gp_ip_pkt k;
    size_t l = udp(l4b, 5353, 53, 30);
    const uint8_t ra[] = {148, 4, 0, 0}; /* router alert: an option that is fine */
    spec s = {.src = "10.0.0.2", .dst = "10.0.0.1", .proto = 17, .opts = ra, .opts_n = 4};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.l4_off, 24);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_IPV4_OPTIONS, "no DF: %x", k.flags);
    cr_assert(k.sport == 5353 && k.dport == 53);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);
    /* UDP over IPv4 without a checksum: nothing to check */
    buf[k.l4_off + 6] = buf[k.l4_off + 7] = 0;
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), -1);

    l = icmp(l4b, 8, 0, 56); /* echo request */
    spec si = {.src = "10.0.0.2", .dst = "10.0.0.1", .proto = 1};
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.icmp_type == 8 && k.icmp_code == 0);
    cr_assert_eq(k.flags, GP_IPF_L4);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);
    l = icmp(l4b, 11, 0, 28); /* time exceeded: an error */
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_ICMP_ERROR);

    /* another protocol (GRE): parsed, no L4 fields */
    memset(l4b, 0, 8);
    spec sg = {.src = "10.0.0.2", .dst = "10.0.0.1", .proto = 47};
    n = build(buf, &sg, l4b, 8, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.proto == 47 && k.flags == 0);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), -1);
}

Test(ippkt, v6_tcp_udp_icmpv6) {
    gp_ip_pkt k;
    size_t l = tcp(l4b, 50000, 443, 0x12, NULL, 0, 100); /* SYN-ACK with data, why not */
    spec s = {.src = "2001:db8::1", .dst = "fd00::5", .proto = 6};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.version, 6);
    cr_assert(k.l4_off == 40 && k.hdr_len == 40 && k.len == n);
    cr_assert(k.sport == 50000 && k.dport == 443 && k.tcp_flags == 0x12);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_DF | GP_IPF_TCP_SYN);
    cr_assert(gp_ip_addr_eq(&k.dst, &(gp_ip_addr){6, {0xfd, [15] = 5}}));
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);

    l = udp(l4b, 1, 65535, 0);
    spec su = {.src = "fe80::1", .dst = "fe80::2", .proto = 17};
    n = build(buf, &su, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.sport == 1 && k.dport == 65535);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);

    l = icmp(l4b, 128, 0, 16); /* echo request */
    spec sc = {.src = "fd00::1", .dst = "fd00::2", .proto = 58};
    n = build(buf, &sc, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.icmp_type == 128 && !(k.flags & GP_IPF_ICMP_ERROR));
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);
    l = icmp(l4b, 1, 4, 48); /* destination unreachable: an error */
    n = build(buf, &sc, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.flags & GP_IPF_ICMP_ERROR);

    /* protocol 1 in IPv6 is not ICMP (nor 58 in IPv4): no L4 fields */
    spec s1 = {.src = "fd00::1", .dst = "fd00::2", .proto = 1};
    n = build(buf, &s1, l4b, l, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags & GP_IPF_L4, 0);
    spec s58 = {.src = "10.0.0.1", .dst = "10.0.0.2", .proto = 58};
    n = build(buf, &s58, l4b, l, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags & GP_IPF_L4, 0);

    /* an empty payload with no next header is a packet */
    spec sn = {.src = "fd00::1", .dst = "fd00::2", .proto = 59};
    n = build(buf, &sn, NULL, 0, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.proto == 59 && k.l4_off == 40 && k.len == 40);
}

Test(ippkt, v6_extension_headers) {
    gp_ip_pkt k;
    uint8_t ext[256];
    size_t e = 0;
    e += ext_opts(ext + e, 43, 1);    /* hop-by-hop -> routing */
    e += ext_routing(ext + e, 60, 0); /* routing, no segments left -> destination options */
    e += ext_opts(ext + e, 6, 2);     /* destination options (16 bytes) -> TCP */
    size_t l = tcp(l4b, 1234, 8080, 0x02, NULL, 0, 0);
    spec s = {.src = "fd00::1", .dst = "fd00::2", .proto = 6, .ext = ext, .ext_n = e, .ext_nh = 0};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK, "%s",
                 gp_ip_drop_name(gp_ip_parse(buf, n, &k)));
    cr_assert_eq(k.proto, GP_IPPROTO_TCP);
    cr_assert_eq(k.l4_off, 40 + 8 + 24 + 16);
    cr_assert_eq(k.hdr_len, k.l4_off);
    cr_assert_eq(k.dport, 8080);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_DF | GP_IPF_TCP_SYN | GP_IPF_EXT_HEADERS);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);

    /* GP_IP_EXT_MAX destination options headers pass, one more is refused */
    for (int count = GP_IP_EXT_MAX; count <= GP_IP_EXT_MAX + 1; count++) {
        e = 0;
        for (int i = 0; i < count; i++)
            e += ext_opts(ext + e, i == count - 1 ? 17 : 60, 1);
        l = udp(l4b, 9, 9, 4);
        spec sd = {
            .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 60};
        n = build(buf, &sd, l4b, l, 1);
        cr_assert_eq(gp_ip_parse(buf, n, &k),
                     count <= GP_IP_EXT_MAX ? GP_IPD_OK : GP_IPD_TOO_MANY_EXT, "%d headers", count);
    }

    /* hop-by-hop after another header */
    e = 0;
    e += ext_opts(ext + e, 0, 1);
    e += ext_opts(ext + e, 17, 1);
    l = udp(l4b, 9, 9, 4);
    spec sh = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 60};
    n = build(buf, &sh, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_EXT_HEADER);

    /* an extension header longer than what is left */
    e = ext_opts(ext, 17, 1);
    ext[1] = 5; /* 48 bytes, 8 + 12 there */
    spec sl = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 60};
    n = build(buf, &sl, l4b, l, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_EXT_HEADER);
    /* and one cut inside its first 8 bytes */
    spec sc = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = 4, .ext_nh = 60};
    n = build(buf, &sc, NULL, 0, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_EXT_HEADER);

    /* a routing header with segments left: the destination field is not the last hop */
    e = ext_routing(ext, 17, 1);
    spec sr = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 43};
    n = build(buf, &sr, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_SOURCE_ROUTE);

    /* two fragment headers */
    e = 0;
    e += ext_frag(ext + e, 44, 0, 0, 1);
    e += ext_frag(ext + e, 17, 0, 0, 2);
    spec sf = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 44};
    n = build(buf, &sf, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_EXT_HEADER);

    /* an atomic fragment (offset 0, M clear) is a whole packet (RFC 6946) */
    e = ext_frag(ext, 17, 0, 0, 77);
    spec sa = {
        .src = "fd00::1", .dst = "fd00::2", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 44};
    n = build(buf, &sa, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_L4 | GP_IPF_DF | GP_IPF_EXT_HEADERS);
    cr_assert(k.frag_id == 77 && k.l4_off == 48 && k.dport == 9);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);
}

Test(ippkt, v4_fragments) {
    gp_ip_pkt k;
    /* first fragment of a UDP datagram of 1000 bytes: 8 + 496 here */
    udp(l4b, 4000, 53, 992);
    spec s = {.src = "10.0.0.9", .dst = "10.0.0.1", .proto = 17, .frag = 0x2000};
    size_t n = build(buf, &s, l4b, 504, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_FRAGMENT | GP_IPF_FIRST_FRAG | GP_IPF_L4);
    cr_assert(k.sport == 4000 && k.dport == 53 && k.frag_off == 0);
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), -1, "a fragment's checksum cannot be told");

    /* the last one, at 504: no ports */
    s.frag = 504 / 8;
    n = build(buf, &s, l4b + 504, 496, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_FRAGMENT);
    cr_assert(k.frag_off == 504 && k.sport == 0 && k.dport == 0 && k.l4_off == 20);

    /* a middle one not a multiple of 8 */
    s.frag = 0x2000 | 64;
    n = build(buf, &s, l4b, 100, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    /* reassembled past 65535 (ping of death) */
    s.frag = 0x1fff;
    n = build(buf, &s, l4b, 16, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    s.frag = 65512 / 8; /* the last piece can end at 65535 exactly, not one past */
    n = build(buf, &s, l4b, 3, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    n = build(buf, &s, l4b, 4, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    /* TCP at offset 8 would rewrite the first fragment's flags (RFC 1858) */
    spec st = {.src = "10.0.0.9", .dst = "10.0.0.1", .proto = 6, .frag = 1};
    n = build(buf, &st, l4b, 40, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    st.frag = 2;
    n = build(buf, &st, l4b, 40, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_FRAGMENT);
    /* a first TCP fragment of 8 bytes: without its header (tiny fragment) */
    tcp(l4b, 1, 22, 0x02, NULL, 0, 100);
    st.frag = 0x2000;
    n = build(buf, &st, l4b, 8, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_L4_TRUNCATED);
    n = build(buf, &st, l4b, 24, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert(k.dport == 22 && (k.flags & GP_IPF_TCP_SYN));
    /* a first UDP fragment: its length is the datagram's, not checked against the piece */
    udp(l4b, 1, 2, 1000);
    spec su = {.src = "10.0.0.9", .dst = "10.0.0.1", .proto = 17, .frag = 0x2000};
    n = build(buf, &su, l4b, 16, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    l4b[4] = 0, l4b[5] = 7;
    n = build(buf, &su, l4b, 16, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_UDP_LENGTH);
}

Test(ippkt, v6_fragments) {
    gp_ip_pkt k;
    uint8_t ext[64];
    size_t e = 0;
    e += ext_opts(ext + e, 44, 1);                /* hop-by-hop -> fragment */
    e += ext_frag(ext + e, 17, 0, 1, 0xdeadbeef); /* first, M set */
    udp(l4b, 7, 5060, 1992);
    spec s = {.src = "fd00::9", .dst = "fd00::1", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 0};
    size_t n = build(buf, &s, l4b, 1232, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags,
                 GP_IPF_FRAGMENT | GP_IPF_FIRST_FRAG | GP_IPF_L4 | GP_IPF_DF | GP_IPF_EXT_HEADERS);
    cr_assert(k.dport == 5060 && k.frag_id == 0xdeadbeef && k.l4_off == 56);

    /* the second piece: stops at the fragment header */
    e = 0;
    e += ext_opts(ext + e, 44, 1);
    e += ext_frag(ext + e, 17, 1232, 0, 0xdeadbeef);
    n = build(buf, &s, l4b + 1232, 768, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(k.flags, GP_IPF_FRAGMENT | GP_IPF_DF | GP_IPF_EXT_HEADERS);
    cr_assert(k.proto == 17 && k.frag_off == 1232 && k.l4_off == 56 && k.dport == 0);

    /* a first piece whose header chain goes on past its end (RFC 7112) */
    e = 0;
    e += ext_frag(ext + e, 60, 0, 1, 5);
    e += ext_opts(ext + e, 17, 1);
    s.ext_nh = 44;
    s.ext_n = e;
    n = build(buf, &s, NULL, 0, 0);
    cr_assert_eq(gp_ip_parse(buf, n - 8, &k), GP_IPD_TRUNCATED, "the buffer is shorter");
    buf[5] -= 8; /* payload length without the destination options */
    cr_assert_eq(gp_ip_parse(buf, n - 8, &k), GP_IPD_BAD_EXT_HEADER);

    /* a middle piece off the 8-byte grid, one past 65535, TCP at offset 8 */
    e = ext_frag(ext, 17, 8, 1, 5);
    spec sm = {
        .src = "fd00::9", .dst = "fd00::1", .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 44};
    n = build(buf, &sm, l4b, 12, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    n = build(buf, &sm, l4b, 16, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    e = ext_frag(ext, 17, 65528, 0, 5);
    n = build(buf, &sm, l4b, 8, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
    n = build(buf, &sm, l4b, 7, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    e = ext_frag(ext, 6, 8, 0, 5);
    n = build(buf, &sm, l4b, 40, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_BAD_FRAGMENT);
}

/* Every refusal, each from a good packet changed in one way. */
Test(ippkt, every_drop_reason) {
    gp_ip_pkt k;
    size_t l = udp(l4b, 1000, 53, 20);
    spec s4 = {.src = "10.0.0.2", .dst = "10.0.0.1", .proto = 17};
    spec s6 = {.src = "fd00::2", .dst = "fd00::1", .proto = 17};
    static uint8_t p[2000];
    size_t n;
    int seen[GP_IPD_COUNT] = {0};
#define EXPECT(bytes, len, why)                                                                    \
    do {                                                                                           \
        gp_ip_drop d_ = gp_ip_parse(bytes, len, &k);                                               \
        cr_assert_eq(d_, why, "line %d: %s, not %s", __LINE__, gp_ip_drop_name(d_),                \
                     gp_ip_drop_name(why));                                                        \
        seen[why] = 1;                                                                             \
    } while (0)
/* p as the IPv4 packet of s4 with its header checksum recomputed after a change */
#define REFIX4()                                                                                   \
    do {                                                                                           \
        size_t ihl_ = (size_t)(p[0] & 15) * 4;                                                     \
        p[10] = p[11] = 0;                                                                         \
        uint16_t c_ = ref_fold(ref_add(0, p, ihl_ < n ? ihl_ : n));                                \
        p[10] = (uint8_t)(c_ >> 8), p[11] = (uint8_t)c_;                                           \
    } while (0)

    n = build(p, &s4, l4b, l, 1);
    EXPECT(p, n, GP_IPD_OK);
    EXPECT(p, 0, GP_IPD_TRUNCATED);
    EXPECT(p, 19, GP_IPD_TRUNCATED);
    EXPECT(p, n - 1, GP_IPD_TRUNCATED);
    EXPECT(p, n + 1, GP_IPD_TRAILING_BYTES);
    p[0] = 0x55;
    EXPECT(p, n, GP_IPD_BAD_VERSION);
    p[0] = 0x05;
    EXPECT(p, n, GP_IPD_BAD_VERSION);
    p[0] = 0x44; /* IHL 16 bytes */
    REFIX4();
    EXPECT(p, n, GP_IPD_BAD_HEADER_LENGTH);
    n = build(p, &s4, l4b, l, 1);
    p[0] = 0x4f, p[3] = 40; /* IHL 60, total 40 */
    REFIX4();
    EXPECT(p, 40, GP_IPD_BAD_HEADER_LENGTH);
    n = build(p, &s4, l4b, l, 1);
    p[2] = 0, p[3] = 19;
    REFIX4();
    EXPECT(p, 19, GP_IPD_TRUNCATED); /* shorter than the fixed header first */
    EXPECT(p, n, GP_IPD_BAD_LENGTH);
    n = build(p, &s4, l4b, l, 1);
    p[8]--; /* TTL, checksum not updated */
    EXPECT(p, n, GP_IPD_BAD_CHECKSUM);

    const uint8_t bad_opt[] = {7, 1, 0, 0};             /* a length below 2 */
    const uint8_t long_opt[] = {1, 7, 9, 0};            /* past the options */
    const uint8_t lsrr[] = {131, 7, 4, 10, 0, 0, 1, 0}; /* loose source route */
    const uint8_t ssrr[] = {1, 137, 3, 4};              /* strict, after a NOP */
    const uint8_t eol[] = {0, 0xff, 0xff, 0xff};        /* after end of list: not read */
    spec so = s4;
    so.opts = bad_opt, so.opts_n = 4;
    n = build(p, &so, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_OPTIONS);
    so.opts = long_opt;
    n = build(p, &so, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_OPTIONS);
    so.opts = lsrr, so.opts_n = 8;
    n = build(p, &so, l4b, l, 1);
    EXPECT(p, n, GP_IPD_SOURCE_ROUTE);
    so.opts = ssrr, so.opts_n = 4;
    n = build(p, &so, l4b, l, 1);
    EXPECT(p, n, GP_IPD_SOURCE_ROUTE);
    so.opts = eol;
    n = build(p, &so, l4b, l, 1);
    EXPECT(p, n, GP_IPD_OK);

    spec sb = s4;
    sb.src = "224.0.0.5";
    n = build(p, &sb, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_SOURCE);
    sb.src = "255.255.255.255";
    n = build(p, &sb, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_SOURCE);
    sb.src = "0.0.0.0"; /* DHCP's: a valid source */
    n = build(p, &sb, l4b, l, 1);
    EXPECT(p, n, GP_IPD_OK);

    spec sf = s4;
    sf.frag = 0x2000 | 1;
    n = build(p, &sf, l4b, 12, 0);
    EXPECT(p, n, GP_IPD_BAD_FRAGMENT);

    n = build(p, &s4, l4b, 7, 0);
    EXPECT(p, n, GP_IPD_L4_TRUNCATED);
    l4b[5] = (uint8_t)(l + 1);
    n = build(p, &s4, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_UDP_LENGTH);
    l4b[5] = (uint8_t)l;

    spec st = s4;
    st.proto = 6;
    size_t lt = tcp(l4b, 1, 2, 0x10, NULL, 0, 0);
    n = build(p, &st, l4b, 19, 0);
    EXPECT(p, n, GP_IPD_L4_TRUNCATED);
    l4b[12] = 4 << 4;
    n = build(p, &st, l4b, lt, 1);
    EXPECT(p, n, GP_IPD_BAD_TCP_HEADER);
    l4b[12] = 6 << 4; /* 24 bytes of header in 20 */
    n = build(p, &st, l4b, lt, 1);
    EXPECT(p, n, GP_IPD_BAD_TCP_HEADER);

    spec si = s4;
    si.proto = 1;
    icmp(l4b, 8, 0, 0);
    n = build(p, &si, l4b, 7, 0);
    EXPECT(p, n, GP_IPD_L4_TRUNCATED);

    /* IPv6 */
    l = udp(l4b, 1000, 53, 20);
    n = build(p, &s6, l4b, l, 1);
    EXPECT(p, n, GP_IPD_OK);
    EXPECT(p, 39, GP_IPD_TRUNCATED);
    EXPECT(p, n - 1, GP_IPD_TRUNCATED);
    EXPECT(p, n + 3, GP_IPD_TRAILING_BYTES);
    p[4] = p[5] = 0; /* a jumbogram's payload length */
    EXPECT(p, n, GP_IPD_TRAILING_BYTES);
    spec s6b = s6;
    s6b.src = "ff02::1";
    n = build(p, &s6b, l4b, l, 1);
    EXPECT(p, n, GP_IPD_BAD_SOURCE);
    uint8_t ext[8 * (GP_IP_EXT_MAX + 1)];
    size_t e = 0;
    for (int i = 0; i <= GP_IP_EXT_MAX; i++)
        e += ext_opts(ext + e, i == GP_IP_EXT_MAX ? 17 : 60, 1);
    spec sx = s6;
    sx.ext = ext, sx.ext_n = e, sx.ext_nh = 60;
    n = build(p, &sx, l4b, l, 1);
    EXPECT(p, n, GP_IPD_TOO_MANY_EXT);
    sx.ext_n = 4;
    n = build(p, &sx, NULL, 0, 0);
    EXPECT(p, n, GP_IPD_BAD_EXT_HEADER);
    spec s6i = s6;
    s6i.proto = 58;
    n = build(p, &s6i, l4b, 4, 0);
    EXPECT(p, n, GP_IPD_L4_TRUNCATED);
#undef EXPECT
#undef REFIX4

    for (int d = GP_IPD_OK; d < GP_IPD_COUNT; d++) {
        cr_assert(seen[d], "no test refused a packet as %s", gp_ip_drop_name(d));
        const char *name = gp_ip_drop_name(d);
        cr_assert(name && name[0] && strcmp(name, "unknown") != 0);
        for (int o = 0; o < d; o++)
            cr_assert_str_neq(name, gp_ip_drop_name(o));
    }
    cr_assert_str_eq(gp_ip_drop_name(GP_IPD_COUNT), "unknown");
    cr_assert_str_eq(gp_ip_drop_name((gp_ip_drop)-1), "unknown");
    cr_assert_str_eq(gp_ip_drop_name(GP_IPD_TRUNCATED), "truncated");
    cr_assert_str_eq(gp_ip_drop_name(GP_IPD_BAD_CHECKSUM), "bad_checksum");
}

/* ---- addresses, prefixes, pools ---- */

Test(ippkt, addresses_against_inet_pton) {
    const char *good[] = {"0.0.0.0",
                          "255.255.255.255",
                          "10.0.0.1",
                          "192.168.100.200",
                          "::",
                          "::1",
                          "1::",
                          "2001:db8::1",
                          "fd00:0:0:1::",
                          "1:2:3:4:5:6:7:8",
                          "FE80::AbCd",
                          "::ffff:10.1.2.3",
                          "64:ff9b::c000:221",
                          "1::2:3",
                          "1:0:0:2::3",
                          "2001:db8:0:0:1:0:0:1",
                          "0:0:0:0:0:0:0:0"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        gp_ip_addr a;
        uint8_t ref[16] = {0};
        int v6 = strchr(good[i], ':') != NULL;
        cr_assert_eq(gp_ip_addr_parse(good[i], strlen(good[i]), &a), 0, "%s", good[i]);
        cr_assert_eq(inet_pton(v6 ? AF_INET6 : AF_INET, good[i], ref), 1);
        cr_assert_eq(a.family, v6 ? 6 : 4);
        cr_assert(memcmp(a.a, ref, 16) == 0, "%s", good[i]);
        /* printed like inet_ntop (glibc follows RFC 5952), read back the same */
        char txt[GP_IP_ADDR_STRLEN], want[INET6_ADDRSTRLEN];
        inet_ntop(v6 ? AF_INET6 : AF_INET, ref, want, sizeof want);
        cr_assert_str_eq(gp_ip_addr_format(&a, txt), want);
        gp_ip_addr b;
        cr_assert_eq(gp_ip_addr_parse(txt, strlen(txt), &b), 0);
        cr_assert(gp_ip_addr_eq(&a, &b));
    }
    const char *bad[] = {"",
                         "1.2.3",
                         "1.2.3.4.5",
                         "256.1.1.1",
                         "01.2.3.4",
                         "1.2.3.04",
                         "1..2.3",
                         "1.2.3.",
                         " 1.2.3.4",
                         "1.2.3.4 ",
                         "1.2.3.1000",
                         "a.b.c.d",
                         ":",
                         ":::",
                         "1:::2",
                         "1::2::3",
                         "12345::",
                         "1:2:3:4:5:6:7:8:9",
                         "1:2:3:4:5:6:7",
                         "::1:",
                         ":1::",
                         "1:2:3:4:5:6:7:8::",
                         "fe80::1%eth0",
                         "[::1]",
                         "::g",
                         "1.2.3.4::",
                         "::1.2.3",
                         "1:2:3:4:5:6:7:1.2.3.4",
                         "::1.2.3.4:5",
                         "-1.2.3.4",
                         "+1.2.3.4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gp_ip_addr a;
        cr_assert_eq(gp_ip_addr_parse(bad[i], strlen(bad[i]), &a), -1, "\"%s\" taken", bad[i]);
    }
    /* a dotted quad is read in any IPv6 address, printed only in a v4-mapped one (glibc
     * prints the deprecated v4-compatible ::a.b.c.d that way too: RFC 5952 5 names it not) */
    gp_ip_addr c;
    char txt[GP_IP_ADDR_STRLEN];
    cr_assert_eq(gp_ip_addr_parse("::1.2.3.4", 9, &c), 0);
    cr_assert_str_eq(gp_ip_addr_format(&c, txt), "::102:304");
    cr_assert_eq(gp_ip_addr_parse("64:ff9b::192.0.2.33", 19, &c), 0);
    cr_assert_str_eq(gp_ip_addr_format(&c, txt), "64:ff9b::c000:221");
    /* only n bytes are read */
    gp_ip_addr a;
    cr_assert_eq(gp_ip_addr_parse("10.0.0.1/8", 8, &a), 0);
    cr_assert(gp_ip_addr_eq(&a, &(gp_ip_addr){4, {10, 0, 0, 1}}));
    /* a v4-mapped address is no v4 address */
    gp_ip_addr m = A("::ffff:10.0.0.1");
    cr_assert(!gp_ip_addr_eq(&a, &m));
}

Test(ippkt, cidr_parse_format_contains) {
    char err[200], txt[GP_CIDR_STRLEN];
    gp_cidr c;
    cr_assert_eq(gp_cidr_parse("10.0.0.0/8", &c, err, sizeof err), 0);
    cr_assert_eq(c.len, 8);
    cr_assert_str_eq(gp_cidr_format(&c, txt), "10.0.0.0/8");
    cr_assert(gp_cidr_contains(&c, &(gp_ip_addr){4, {10, 255, 1, 2}}));
    cr_assert(!gp_cidr_contains(&c, &(gp_ip_addr){4, {11, 0, 0, 0}}));
    gp_ip_addr mapped = A("::ffff:10.0.0.1");
    cr_assert(!gp_cidr_contains(&c, &mapped), "a v4 prefix holds no v6 address");
    cr_assert_eq(gp_cidr_parse("192.168.1.7", &c, err, sizeof err), 0);
    cr_assert_eq(c.len, 32);
    cr_assert_str_eq(gp_cidr_format(&c, txt), "192.168.1.7/32");
    cr_assert_eq(gp_cidr_parse("0.0.0.0/0", &c, err, sizeof err), 0);
    cr_assert(gp_cidr_contains(&c, &(gp_ip_addr){4, {1, 2, 3, 4}}));
    gp_ip_addr v6 = A("fd00::1");
    cr_assert(!gp_cidr_contains(&c, &v6));
    cr_assert_eq(gp_cidr_parse("172.16.0.0/12", &c, err, sizeof err), 0);
    cr_assert(gp_cidr_contains(&c, &(gp_ip_addr){4, {172, 31, 255, 255}}));
    cr_assert(!gp_cidr_contains(&c, &(gp_ip_addr){4, {172, 32, 0, 0}}));

    cr_assert_eq(gp_cidr_parse("fd00::/64", &c, err, sizeof err), 0);
    cr_assert_str_eq(gp_cidr_format(&c, txt), "fd00::/64");
    gp_ip_addr in = A("fd00::ffff:ffff:ffff:ffff"), out = A("fd00:0:0:1::");
    cr_assert(gp_cidr_contains(&c, &in) && !gp_cidr_contains(&c, &out));
    cr_assert_eq(gp_cidr_parse("2001:db8:8000::/33", &c, err, sizeof err), 0);
    gp_ip_addr x = A("2001:db8:ffff::1"), y = A("2001:db8:7fff::1");
    cr_assert(gp_cidr_contains(&c, &x) && !gp_cidr_contains(&c, &y));
    cr_assert_eq(gp_cidr_parse("::/0", &c, err, sizeof err), 0);
    cr_assert(gp_cidr_contains(&c, &x));
    cr_assert(!gp_cidr_contains(&c, &(gp_ip_addr){4, {1, 2, 3, 4}}));
    cr_assert_eq(gp_cidr_parse("fd00::1/128", &c, err, sizeof err), 0);

    struct {
        const char *s, *msg;
    } bad[] = {
        {"10.0.0.1/8", "\"10.0.0.1/8\" has bits set past /8 (the network is 10.0.0.0/8)"},
        {"fd00::1/64", "\"fd00::1/64\" has bits set past /64 (the network is fd00::/64)"},
        {"10.0.0.0/33", "prefix length \"33\" is not a number from 0 to 32"},
        {"fd00::/129", "prefix length \"129\" is not a number from 0 to 128"},
        {"10.0.0.0/", "prefix length \"\" is not a number from 0 to 32"},
        {"10.0.0.0/08", "prefix length \"08\" is not a number from 0 to 32"},
        {"10.0.0.0/8x", "prefix length \"8x\" is not a number from 0 to 32"},
        {"10.0.0.0/-1", "prefix length \"-1\" is not a number from 0 to 32"},
        {"10.0.0/8", "\"10.0.0\" is not an IPv4 or IPv6 address"},
        {"", "\"\" is not an IPv4 or IPv6 address"},
        {"/8", "\"\" is not an IPv4 or IPv6 address"},
        {"host.example/8", "\"host.example\" is not an IPv4 or IPv6 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        cr_assert_eq(gp_cidr_parse(bad[i].s, &c, err, sizeof err), -1, "%s", bad[i].s);
        cr_assert_str_eq(err, bad[i].msg);
    }
    cr_assert_eq(gp_cidr_parse("x", &c, NULL, 0), -1, "no room for a message is fine");
}

static gp_cidr P(const char *s) {
    gp_cidr c;
    char err[200];
    cr_assert_eq(gp_cidr_parse(s, &c, err, sizeof err), 0, "%s: %s", s, err);
    return c;
}

/* Index i of pool is the address want, and back. */
static void pool_is(const char *pool, uint64_t i, const char *want) {
    gp_cidr c = P(pool);
    gp_ip_addr a;
    char txt[GP_IP_ADDR_STRLEN];
    cr_assert_eq(gp_pool_addr(&c, i, &a), 0, "%s index %llu", pool, (unsigned long long)i);
    cr_assert_str_eq(gp_ip_addr_format(&a, txt), want, "%s index %llu", pool,
                     (unsigned long long)i);
    uint64_t back = ~(uint64_t)0;
    cr_assert_eq(gp_pool_index(&c, &a, &back), 0, "%s: %s", pool, want);
    cr_assert_eq(back, i, "%s: %s", pool, want);
}

static void pool_no_index(const char *pool, const char *addr) {
    gp_cidr c = P(pool);
    gp_ip_addr a = A(addr);
    uint64_t i = 12345;
    cr_assert_eq(gp_pool_index(&c, &a, &i), -1, "%s has %s as index %llu", pool, addr,
                 (unsigned long long)i);
}

/* pool holds size addresses: index 0 is first, size - 1 is last, size is none. */
static void pool_ends(const char *pool, uint64_t size, const char *first, const char *last) {
    gp_cidr c = P(pool);
    cr_assert_eq(gp_pool_size(&c), size, "%s", pool);
    pool_is(pool, 0, first);
    pool_is(pool, size - 1, last);
    gp_ip_addr a;
    cr_assert_eq(gp_pool_addr(&c, size, &a), -1, "%s index %llu", pool, (unsigned long long)size);
}

Test(ippkt, pool_v4) {
    pool_ends("10.8.0.0/24", 254, "10.8.0.1", "10.8.0.254");
    gp_cidr c = P("10.8.0.0/24");
    gp_ip_addr a;
    cr_assert_eq(gp_pool_addr(&c, UINT64_MAX, &a), -1);
    pool_no_index("10.8.0.0/24", "10.8.0.0");   /* network */
    pool_no_index("10.8.0.0/24", "10.8.0.255"); /* broadcast */
    pool_no_index("10.8.0.0/24", "10.8.1.1");
    pool_no_index("10.8.0.0/24", "::ffff:10.8.0.1");

    pool_ends("10.9.0.0/30", 2, "10.9.0.1", "10.9.0.2");
    pool_no_index("10.9.0.0/30", "10.9.0.3");
    /* /31: both addresses (RFC 3021) */
    pool_ends("10.9.0.4/31", 2, "10.9.0.4", "10.9.0.5");
    pool_no_index("10.9.0.4/31", "10.9.0.6");
    /* /32: the one address */
    pool_ends("10.9.0.7/32", 1, "10.9.0.7", "10.9.0.7");
    pool_no_index("10.9.0.7/32", "10.9.0.6");
    /* the whole space: network and broadcast aside */
    pool_ends("0.0.0.0/0", 4294967294u, "0.0.0.1", "255.255.255.254");
    /* a few inside, across byte borders */
    pool_is("10.0.0.0/8", 255, "10.0.1.0");
    pool_is("10.0.0.0/8", 65535, "10.1.0.0");
    pool_is("100.64.0.0/10", 4194301, "100.127.255.254");
}

Test(ippkt, pool_v6) {
    /* 2^64 - 1 exactly */
    pool_ends("fd00:1::/64", UINT64_MAX, "fd00:1::1", "fd00:1::ffff:ffff:ffff:ffff");
    pool_is("fd00:1::/64", 65534, "fd00:1::ffff");
    pool_no_index("fd00:1::/64", "fd00:1::");
    pool_no_index("fd00:1::/64", "fd00:2::1");
    pool_no_index("fd00:1::/64", "10.0.0.1");

    pool_ends("fd00::/120", 255, "fd00::1", "fd00::ff");
    /* /127: both (RFC 6164); /128: the one */
    pool_ends("fd00::a/127", 2, "fd00::a", "fd00::b");
    pool_no_index("fd00::a/127", "fd00::c");
    pool_ends("fd00::7/128", 1, "fd00::7", "fd00::7");
    /* shorter than /64: the first 2^64 - 1 hosts have an index, the rest none */
    pool_ends("fd00::/48", UINT64_MAX, "fd00::1", "fd00::ffff:ffff:ffff:ffff");
    pool_no_index("fd00::/48", "fd00:0:0:1::1");
    pool_no_index("fd00::/48", "fd00::");
    pool_is("::/0", 41, "::2a");
}

/* ---- rules ---- */

Test(ippkt, rule_parse_good) {
    struct {
        const char *in, *canon;
    } good[] = {
        {"tcp:22", "tcp:22"},
        {"icmp", "icmp"},
        {"udp:53@192.168.1.0/24", "udp:53@192.168.1.0/24"},
        {"tcp:8000-8100@fd00::/64", "tcp:8000-8100@fd00::/64"},
        {"any@10.0.0.0/8", "any@10.0.0.0/8"},
        {"any", "any"},
        {"TCP:443", "tcp:443"},
        {"Udp", "udp"},
        {"tcp:1-65535", "tcp:1-65535"},
        {"tcp:80-80", "tcp:80"},
        {"icmp@10.1.2.3", "icmp@10.1.2.3/32"},
        {"udp@FD00:0:0:0::5", "udp@fd00::5/128"},
        {"tcp:65535@::/0", "tcp:65535@::/0"},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        gp_tun_rule r, r2;
        char err[200] = "", txt[GP_TUN_RULE_STRLEN];
        cr_assert_eq(gp_tun_rule_parse(good[i].in, &r, err, sizeof err), 0, "%s: %s", good[i].in,
                     err);
        cr_assert_str_eq(gp_tun_rule_format(&r, txt), good[i].canon);
        cr_assert_eq(gp_tun_rule_parse(txt, &r2, err, sizeof err), 0);
        cr_assert(memcmp(&r, &r2, sizeof r) == 0, "%s reads back the same", txt);
    }
    gp_tun_rule r;
    cr_assert_eq(gp_tun_rule_parse("udp:53-54@fd00::/8", &r, NULL, 0), 0);
    cr_assert(r.proto == GP_TUN_UDP && r.has_ports && r.port_lo == 53 && r.port_hi == 54);
    cr_assert(r.has_prefix && r.dst.len == 8 && r.dst.addr.family == 6);
    cr_assert_eq(gp_tun_rule_parse("icmp", &r, NULL, 0), 0);
    cr_assert(r.proto == GP_TUN_ICMP && !r.has_ports && !r.has_prefix);
    /* the longest canonical text fits */
    char txt[GP_TUN_RULE_STRLEN];
    cr_assert_eq(gp_tun_rule_parse("tcp:65534-65535@ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
                                   &r, NULL, 0),
                 0);
    cr_assert_str_eq(gp_tun_rule_format(&r, txt),
                     "tcp:65534-65535@ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
    cr_assert_eq(gp_tun_rule_parse("udp:1-2@::ffff:255.255.255.0/120", &r, NULL, 0), 0);
    cr_assert_str_eq(gp_tun_rule_format(&r, txt), "udp:1-2@::ffff:255.255.255.0/120");
}

Test(ippkt, rule_parse_bad) {
    struct {
        const char *in, *msg;
    } bad[] = {
        {"", "empty rule (PROTO[:PORT[-PORT]][@PREFIX])"},
        {"sctp:22", "rule \"sctp:22\": unknown protocol \"sctp\" (tcp, udp, icmp or any)"},
        {"tcp 22", "rule \"tcp 22\": unknown protocol \"tcp 22\" (tcp, udp, icmp or any)"},
        {"@10.0.0.0/8", "rule \"@10.0.0.0/8\": unknown protocol \"\" (tcp, udp, icmp or any)"},
        {"icmp:8", "rule \"icmp:8\": ports go only with tcp or udp"},
        {"any:22", "rule \"any:22\": ports go only with tcp or udp"},
        {"tcp:", "rule \"tcp:\": \"\" is not a port or range of ports (1-65535)"},
        {"tcp:0", "rule \"tcp:0\": \"0\" is not a port or range of ports (1-65535)"},
        {"tcp:65536", "rule \"tcp:65536\": \"65536\" is not a port or range of ports (1-65535)"},
        {"tcp:ssh", "rule \"tcp:ssh\": \"ssh\" is not a port or range of ports (1-65535)"},
        {"tcp:22-", "rule \"tcp:22-\": \"22-\" is not a port or range of ports (1-65535)"},
        {"tcp:-22", "rule \"tcp:-22\": \"-22\" is not a port or range of ports (1-65535)"},
        {"tcp:1-2-3", "rule \"tcp:1-2-3\": \"1-2-3\" is not a port or range of ports (1-65535)"},
        {"tcp:22,80", "rule \"tcp:22,80\": \"22,80\" is not a port or range of ports (1-65535)"},
        {"tcp:100-10", "rule \"tcp:100-10\": port range 100-10 runs backwards"},
        {"tcp:22@", "rule \"tcp:22@\": \"\" is not an IPv4 or IPv6 address"},
        {"tcp:22@10.0.0.1/8",
         "rule \"tcp:22@10.0.0.1/8\": \"10.0.0.1/8\" has bits set past /8 (the network is "
         "10.0.0.0/8)"},
        {"udp@10.0.0.0/40",
         "rule \"udp@10.0.0.0/40\": prefix length \"40\" is not a number from 0 to 32"},
        {"udp@fd00::/64@x", "rule \"udp@fd00::/64@x\": prefix length \"64@x\" is not a number "
                            "from 0 to 128"},
        {"tcp:22@ 10.0.0.1", "rule \"tcp:22@ 10.0.0.1\": \" 10.0.0.1\" is not an IPv4 or IPv6 "
                             "address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gp_tun_rule r;
        char err[300] = "";
        cr_assert_eq(gp_tun_rule_parse(bad[i].in, &r, err, sizeof err), -1, "\"%s\" taken",
                     bad[i].in);
        cr_assert_str_eq(err, bad[i].msg);
    }
}

Test(ippkt, rules_list) {
    gp_tun_rule r[4];
    size_t n = 0;
    char err[200] = "";
    cr_assert_eq(gp_tun_rules_parse("tcp:22, udp:53@10.0.0.0/8 ,icmp", r, 4, &n, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert(r[0].proto == GP_TUN_TCP && r[1].proto == GP_TUN_UDP && r[2].proto == GP_TUN_ICMP);
    /* appended after what is there */
    cr_assert_eq(gp_tun_rules_parse("any@fd00::/8", r, 4, &n, err, sizeof err), 0);
    cr_assert_eq(n, 4);
    cr_assert_eq(gp_tun_rules_parse("tcp:80", r, 4, &n, err, sizeof err), -1);
    cr_assert_str_eq(err, "more than 4 rules");
    cr_assert_eq(n, 4);
    n = 0;
    cr_assert_eq(gp_tun_rules_parse("tcp:22,,udp", r, 4, &n, err, sizeof err), -1);
    cr_assert_str_eq(err, "an empty rule in \"tcp:22,,udp\"");
    cr_assert_eq(n, 0, "nothing counted on an error");
    cr_assert_eq(gp_tun_rules_parse("tcp:22,", r, 4, &n, err, sizeof err), -1);
    cr_assert_eq(gp_tun_rules_parse("", r, 4, &n, err, sizeof err), -1);
    cr_assert_eq(gp_tun_rules_parse("tcp:22, udp:99999", r, 4, &n, err, sizeof err), -1);
    cr_assert_str_eq(err,
                     "rule \"udp:99999\": \"99999\" is not a port or range of ports (1-65535)");
    cr_assert_eq(n, 0);
}

/* The rule matched by the parsed packet built from s around l4[0..l), or -1. */
static int match(const gp_tun_rule *r, size_t nr, const spec *s, const uint8_t *l4, size_t l) {
    static uint8_t p[2000];
    size_t n = build(p, s, l4, l, 1);
    gp_ip_pkt k;
    gp_ip_drop d = gp_ip_parse(p, n, &k);
    cr_assert_eq(d, GP_IPD_OK, "%s", gp_ip_drop_name(d));
    return gp_tun_rules_match(r, nr, &k);
}

Test(ippkt, rules_match) {
    gp_tun_rule r[8];
    size_t nr = 0;
    char err[200];
    cr_assert_eq(gp_tun_rules_parse("tcp:22@10.0.0.0/24,udp:53,icmp@fd00::/64,"
                                    "tcp:8000-8100@fd00::/64,any@10.9.9.9",
                                    r, 8, &nr, err, sizeof err),
                 0, "%s", err);
    uint8_t t22[40], t23[40], t8050[40], u53[16], u54[16], ping[16], ping6[16];
    size_t lt = tcp(t22, 1000, 22, 0x02, NULL, 0, 0);
    tcp(t23, 1000, 23, 0x02, NULL, 0, 0);
    tcp(t8050, 1000, 8050, 0x02, NULL, 0, 0);
    size_t lu = udp(u53, 1000, 53, 8);
    udp(u54, 1000, 54, 8);
    size_t li = icmp(ping, 8, 0, 8);
    icmp(ping6, 128, 0, 8);

    spec v4 = {.src = "192.0.2.1", .dst = "10.0.0.5", .proto = 6};
    cr_assert_eq(match(r, nr, &v4, t22, lt), 0);
    cr_assert_eq(match(r, nr, &v4, t23, lt), -1, "another port");
    v4.dst = "10.0.1.5";
    cr_assert_eq(match(r, nr, &v4, t22, lt), -1, "outside the prefix");
    v4.dst = "10.9.9.9";
    cr_assert_eq(match(r, nr, &v4, t23, lt), 4, "any to that host");
    v4.proto = 17;
    v4.dst = "172.16.0.1";
    cr_assert_eq(match(r, nr, &v4, u53, lu), 1, "udp:53 to anywhere");
    cr_assert_eq(match(r, nr, &v4, u54, lu), -1);
    v4.proto = 6;
    uint8_t t53[20];
    tcp(t53, 1000, 53, 0x02, NULL, 0, 0);
    cr_assert_eq(match(r, nr, &v4, t53, lt), -1, "udp:53 is not tcp 53");
    v4.proto = 1;
    cr_assert_eq(match(r, nr, &v4, ping, li), -1, "icmp only to fd00::/64");

    spec v6 = {.src = "fd00::99", .dst = "fd00::5", .proto = 58};
    cr_assert_eq(match(r, nr, &v6, ping6, li), 2);
    v6.dst = "fd01::5";
    cr_assert_eq(match(r, nr, &v6, ping6, li), -1);
    v6.dst = "fd00::5";
    v6.proto = 6;
    cr_assert_eq(match(r, nr, &v6, t8050, lt), 3);
    cr_assert_eq(match(r, nr, &v6, t22, lt), -1, "tcp:22 holds for 10.0.0.0/24 only");
    v6.proto = 17;
    cr_assert_eq(match(r, nr, &v6, u53, lu), 1, "udp:53 to any family");

    /* icmp is ICMP in v4 and ICMPv6 in v6, not the other's number */
    gp_tun_rule ic;
    cr_assert_eq(gp_tun_rule_parse("icmp", &ic, NULL, 0), 0);
    spec a = {.src = "10.0.0.1", .dst = "10.0.0.2", .proto = 1};
    cr_assert_eq(match(&ic, 1, &a, ping, li), 0);
    a.proto = 58;
    cr_assert_eq(match(&ic, 1, &a, ping6, li), -1);
    spec b = {.src = "fd00::1", .dst = "fd00::2", .proto = 58};
    cr_assert_eq(match(&ic, 1, &b, ping6, li), 0);
    b.proto = 1;
    cr_assert_eq(match(&ic, 1, &b, ping, li), -1);

    /* default deny: no rules, nothing allowed */
    cr_assert_eq(match(r, 0, &a, ping, li), -1);

    /* fragments: the first is matched with its ports, a later one by protocol and
     * destination */
    spec f = {.src = "192.0.2.1", .dst = "10.0.0.5", .proto = 6, .frag = 0x2000};
    cr_assert_eq(match(r, nr, &f, t22, 24), 0);
    cr_assert_eq(match(r, nr, &f, t23, 24), -1);
    f.frag = 3; /* offset 24, last */
    cr_assert_eq(match(r, nr, &f, t23, 16), 0, "a later piece to a tcp:22 destination");
    f.dst = "10.0.1.5";
    cr_assert_eq(match(r, nr, &f, t23, 16), -1, "but not elsewhere");
    f.proto = 17;
    f.dst = "10.0.0.5";
    cr_assert_eq(match(r, nr, &f, t23, 16), 1, "udp:53 has no prefix");
    f.proto = 47;
    cr_assert_eq(match(r, nr, &f, t23, 16), -1);
}

/* ---- MSS clamp ---- */

/* The MSS of a TCP SYN p (L4 at off), after the option at o. */
static uint16_t mss_at(const uint8_t *p, size_t off, size_t o) {
    return (uint16_t)(p[off + o] << 8 | p[off + o + 1]);
}

Test(ippkt, mss_clamp_v4_and_v6) {
    const uint8_t opts[] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7};
    gp_ip_pkt k;
    /* v4 SYN: 1460 -> 1360 */
    size_t l = tcp(l4b, 40000, 443, 0x02, opts, sizeof opts, 0);
    spec s = {.src = "192.0.2.10", .dst = "10.1.2.3", .proto = 6, .frag = 0x4000};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1360), 1);
    cr_assert_eq(mss_at(buf, 20, 22), 1360);
    cr_assert(ref_l4_ok(buf, n, 20, 6), "checksum from scratch after the clamp");
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK, "the IP header untouched");
    /* again: nothing left to do, nothing changed */
    static uint8_t before[2000];
    memcpy(before, buf, n);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1360), 0);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1400), 0);
    cr_assert(memcmp(before, buf, n) == 0);

    /* v6 SYN-ACK behind an extension header: 1440 -> 1220 */
    uint8_t ext[8];
    ext_opts(ext, 6, 1);
    const uint8_t o6[] = {2, 4, 0x05, 0xa0};
    l = tcp(l4b, 443, 40000, 0x12, o6, sizeof o6, 0);
    spec s6 = {
        .src = "fd00::1", .dst = "2001:db8::2", .proto = 6, .ext = ext, .ext_n = 8, .ext_nh = 0};
    n = build(buf, &s6, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1220), 1);
    cr_assert_eq(mss_at(buf, 48, 22), 1220);
    cr_assert(ref_l4_ok(buf, n, 48, 6));
    cr_assert_eq(gp_l4_csum_ok(buf, n, &k), 1);

    /* not a SYN: untouched, whatever its options */
    l = tcp(l4b, 443, 40000, 0x10, o6, sizeof o6, 0);
    n = build(buf, &s6, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    memcpy(before, buf, n);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 536), 0);
    cr_assert(memcmp(before, buf, n) == 0);
    /* a SYN without MSS */
    const uint8_t nomss[] = {1, 1, 4, 2};
    l = tcp(l4b, 443, 40000, 0x02, nomss, sizeof nomss, 0);
    n = build(buf, &s6, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 536), 0);
    /* not TCP */
    l = udp(l4b, 1, 2, 30);
    spec su = {.src = "10.0.0.1", .dst = "10.0.0.2", .proto = 17};
    n = build(buf, &su, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 536), 0);
}

/* Every alignment of the MSS value (NOPs before it), MSS values around the limit and around
 * the checksum's wrap: the checksum holds from scratch each time. */
Test(ippkt, mss_clamp_any_alignment_and_value) {
    const uint16_t values[] = {0xffff, 0xff00, 0x8000, 1461, 1400, 1361, 1360, 0x0100, 0};
    const uint16_t limits[] = {1360, 1220, 536, 0, 0xfffe};
    gp_ip_pkt k;
    for (int v6 = 0; v6 <= 1; v6++)
        for (size_t nops = 0; nops <= 3; nops++)
            for (size_t vi = 0; vi < sizeof values / sizeof *values; vi++)
                for (size_t li = 0; li < sizeof limits / sizeof *limits; li++)
                    for (uint16_t port = 1; port < 2000; port += 661) {
                        uint8_t o[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
                        o[nops] = 2, o[nops + 1] = 4;
                        o[nops + 2] = (uint8_t)(values[vi] >> 8);
                        o[nops + 3] = (uint8_t)values[vi];
                        o[nops + 4] = 0; /* end of list */
                        size_t l = tcp(l4b, port, 22, 0x02, o, 8, port % 7);
                        spec s = {.src = v6 ? "fd00::1" : "10.0.0.1",
                                  .dst = v6 ? "fd00::2" : "10.0.0.2",
                                  .proto = 6};
                        size_t n = build(buf, &s, l4b, l, 1), off = v6 ? 40 : 20;
                        cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
                        int want = values[vi] > limits[li];
                        cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, limits[li]), want);
                        cr_assert_eq(mss_at(buf, off, 20 + nops + 2),
                                     want ? limits[li] : values[vi]);
                        cr_assert(ref_l4_ok(buf, n, off, 6), "v6 %d nops %zu value %u limit %u", v6,
                                  nops, values[vi], limits[li]);
                    }
}

Test(ippkt, mss_clamp_leaves_malformed_options_alone) {
    const struct {
        uint8_t o[8];
        const char *what;
    } bad[] = {
        {{2, 4, 0x05, 0xb4, 8, 1, 0, 0}, "a length of 1 after a good MSS"},
        {{2, 3, 0x05, 0xb4, 0, 0, 0, 0}, "an MSS option of 3 bytes"},
        {{2, 6, 0x05, 0xb4, 0, 0, 0, 0}, "an MSS option of 6 bytes"},
        {{1, 1, 1, 1, 1, 1, 1, 2}, "an MSS kind in the last byte"},
        {{2, 4, 0x05, 0xb4, 3, 9, 0, 0}, "an option past the header"},
        {{2, 4, 0x05, 0xb4, 5, 0, 0, 0}, "a length of 0 (would loop)"},
    };
    gp_ip_pkt k;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t l = tcp(l4b, 1, 22, 0x02, bad[i].o, 8, 10);
        spec s = {.src = "10.0.0.1", .dst = "10.0.0.2", .proto = 6};
        size_t n = build(buf, &s, l4b, l, 1);
        cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
        static uint8_t before[200];
        memcpy(before, buf, n);
        cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1000), -1, "%s", bad[i].what);
        cr_assert(memcmp(before, buf, n) == 0, "%s: changed", bad[i].what);
    }
    /* two MSS options: both clamped; one after end-of-list: not an option */
    const uint8_t two[] = {2, 4, 0x05, 0xb4, 2, 4, 0x23, 0x28, 0, 2, 4, 0xff};
    size_t l = tcp(l4b, 1, 22, 0x02, two, sizeof two, 0);
    spec s = {.src = "10.0.0.1", .dst = "10.0.0.2", .proto = 6};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1000), 1);
    cr_assert(mss_at(buf, 20, 22) == 1000 && mss_at(buf, 20, 26) == 1000);
    cr_assert(buf[20 + 29] == 2 && buf[20 + 30] == 4 && buf[20 + 31] == 0xff);
    cr_assert(ref_l4_ok(buf, n, 20, 6));
    /* a wrong checksum stays wrong (RFC 1624: no recomputation over the data) */
    const uint8_t one[] = {2, 4, 0x05, 0xb4};
    l = tcp(l4b, 1, 22, 0x02, one, sizeof one, 0);
    n = build(buf, &s, l4b, l, 1);
    buf[20 + 16] ^= 0x40;
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &k, 1000), 1);
    cr_assert(!ref_l4_ok(buf, n, 20, 6));
    buf[20 + 16] ^= 0x40;
    cr_assert(ref_l4_ok(buf, n, 20, 6), "off by exactly the damage done");
    /* a parse that is not this buffer's: nothing done, nothing read past it */
    gp_ip_pkt forged = k;
    forged.l4_off = (uint32_t)n - 4;
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &forged, 500), 0);
    forged = k;
    forged.len = (uint32_t)n + 100;
    cr_assert_eq(gp_tcp_mss_clamp(buf, n, &forged, 500), 0);
    forged = k;
    forged.len = forged.l4_off = forged.hdr_len = 0; /* an empty buffer said to be this */
    cr_assert_eq(gp_tcp_mss_clamp(buf, 0, &forged, 500), 0);
    cr_assert_eq(gp_l4_csum_ok(buf, 0, &forged), -1);
    size_t on = 1;
    static uint8_t out[600];
    gp_ip_addr from = A("10.0.0.9");
    cr_assert_eq(gp_icmp_too_big(buf, 0, &forged, &from, 100, out, sizeof out, &on), GP_TB_INVALID);
    cr_assert_eq(on, 0);
}

/* ---- ICMP too big ---- */

/* Parses an answer back: what it says, to whom, and that it quotes p's first bytes. */
static void check_answer(const uint8_t *ans, size_t an, const uint8_t *orig, size_t on,
                         const char *from, const char *to, uint32_t mtu, size_t quote) {
    gp_ip_pkt k;
    gp_ip_drop d = gp_ip_parse(ans, an, &k);
    cr_assert_eq(d, GP_IPD_OK, "%s", gp_ip_drop_name(d)); /* v4: its header checksum too */
    gp_ip_addr f = A(from), t = A(to);
    cr_assert(gp_ip_addr_eq(&k.src, &f) && gp_ip_addr_eq(&k.dst, &t));
    cr_assert(k.flags & GP_IPF_L4 && k.flags & GP_IPF_ICMP_ERROR && k.flags & GP_IPF_DF);
    cr_assert_eq(k.ttl, GP_ICMP_TB_HOP_LIMIT);
    cr_assert_eq(gp_l4_csum_ok(ans, an, &k), 1);
    cr_assert(ref_l4_ok(ans, an, k.l4_off, k.proto), "ICMP checksum from scratch");
    const uint8_t *ic = ans + k.l4_off;
    if (k.version == 4) {
        cr_assert(k.proto == 1 && k.icmp_type == 3 && k.icmp_code == 4 && k.l4_off == 20);
        cr_assert(ic[4] == 0 && ic[5] == 0 && (ic[6] << 8 | ic[7]) == (int)mtu);
        cr_assert_leq(an, GP_ICMP_TB_V4_MAX);
    } else {
        cr_assert(k.proto == 58 && k.icmp_type == 2 && k.icmp_code == 0 && k.l4_off == 40);
        cr_assert_eq((uint32_t)ic[4] << 24 | ic[5] << 16 | ic[6] << 8 | ic[7], mtu);
        cr_assert_leq(an, GP_ICMP_TB_V6_MAX);
    }
    cr_assert_eq(an, k.l4_off + 8 + quote);
    cr_assert_leq(quote, on);
    cr_assert(memcmp(ic + 8, orig, quote) == 0, "the quote is the packet's start");
}

Test(ippkt, too_big_v4) {
    static uint8_t out[2000];
    size_t on = 0;
    gp_ip_pkt k;
    gp_ip_addr from = A("10.99.0.1");
    size_t l = tcp(l4b, 40000, 443, 0x10, NULL, 0, 1480);
    spec s = {.src = "192.168.5.5", .dst = "10.1.2.3", .proto = 6, .frag = 0x4000};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(n, 1520);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1400, out, sizeof out, &on), GP_TB_BUILT);
    cr_assert_eq(on, 576, "as much as 576 bytes hold");
    check_answer(out, on, buf, n, "10.99.0.1", "192.168.5.5", 1400, 576 - 28);

    /* a small packet over a small MTU: all of it quoted */
    l = udp(l4b, 1, 2, 72);
    spec su = {.src = "192.168.5.5", .dst = "10.1.2.3", .proto = 17, .frag = 0x4000};
    n = build(buf, &su, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "10.99.0.1", "192.168.5.5", 68, n);
    /* a buffer that holds the header and 8 bytes but not the whole 100 */
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, 28 + 28, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "10.99.0.1", "192.168.5.5", 68, 28);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, 28 + 27, &on), GP_TB_INVALID);
    cr_assert_eq(on, 0);

    /* refusals */
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 100, out, sizeof out, &on), GP_TB_NOT_TOO_BIG);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 67, out, sizeof out, &on), GP_TB_INVALID);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 65536, out, sizeof out, &on), GP_TB_INVALID);
    gp_ip_addr from6 = A("fd00::1");
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from6, 68, out, sizeof out, &on), GP_TB_INVALID);
    su.frag = 0;
    n = build(buf, &su, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, sizeof out, &on), GP_TB_DF_CLEAR);
    su.frag = 0x4000;
    const char *no_host[] = {"0.0.0.0", "0.1.2.3", "127.0.0.1", "240.0.0.1"};
    for (size_t i = 0; i < sizeof no_host / sizeof *no_host; i++) {
        su.src = no_host[i];
        n = build(buf, &su, l4b, l, 1);
        cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
        cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, sizeof out, &on), GP_TB_BAD_SOURCE,
                     "%s", no_host[i]);
    }
    su.src = "192.168.5.5";
    const char *group[] = {"224.0.0.251", "239.1.2.3", "255.255.255.255"};
    for (size_t i = 0; i < sizeof group / sizeof *group; i++) {
        su.dst = group[i];
        n = build(buf, &su, l4b, l, 1);
        cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
        cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 68, out, sizeof out, &on),
                     GP_TB_MULTICAST_DEST, "%s", group[i]);
    }
    su.dst = "10.1.2.3";
    /* an ICMP error is not answered; an echo request is */
    spec si = {.src = "192.168.5.5", .dst = "10.1.2.3", .proto = 1, .frag = 0x4000};
    l = icmp(l4b, 3, 1, 200);
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 100, out, sizeof out, &on), GP_TB_ICMP_ERROR);
    l = icmp(l4b, 8, 0, 200);
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 100, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "10.99.0.1", "192.168.5.5", 100, n);
    /* the answer itself is an error: never answered */
    uint8_t again[600];
    size_t an = on;
    memcpy(again, out, an);
    cr_assert_eq(gp_ip_parse(again, an, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(again, an, &k, &from, 100, out, sizeof out, &on),
                 GP_TB_ICMP_ERROR);
    /* fragments: the first is answered, a later one is not */
    l = udp(l4b, 1, 2, 1000);
    spec sf = {.src = "192.168.5.5", .dst = "10.1.2.3", .proto = 17, .frag = 0x6000};
    n = build(buf, &sf, l4b, 800, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 600, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "10.99.0.1", "192.168.5.5", 600, 548);
    sf.frag = 0x4000 | 100;
    n = build(buf, &sf, l4b, 208, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 200, out, sizeof out, &on), GP_TB_FRAGMENT);
    /* a parse that is not this buffer's */
    gp_ip_pkt forged = k;
    forged.len = 5000;
    cr_assert_eq(gp_icmp_too_big(buf, n, &forged, &from, 200, out, sizeof out, &on), GP_TB_INVALID);
}

Test(ippkt, too_big_v6) {
    static uint8_t out[3000];
    size_t on = 0;
    gp_ip_pkt k;
    gp_ip_addr from = A("fd00::1");
    size_t l = udp(l4b, 5000, 443, 1452); /* QUIC-sized */
    uint8_t ext[16];
    ext_opts(ext, 17, 2);
    spec s = {.src = "2001:db8::77",
              .dst = "fd00::5",
              .proto = 17,
              .ext = ext,
              .ext_n = 16,
              .ext_nh = 60};
    size_t n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(n, 1516);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, sizeof out, &on), GP_TB_BUILT);
    cr_assert_eq(on, 1280, "as much as the minimum MTU holds");
    check_answer(out, on, buf, n, "fd00::1", "2001:db8::77", 1280, 1280 - 48);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1500, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "fd00::1", "2001:db8::77", 1500, 1280 - 48);
    /* a smaller buffer: what fits */
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, 200, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "fd00::1", "2001:db8::77", 1280, 200 - 48);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, 95, &on), GP_TB_INVALID);

    /* multicast destinations get a Packet Too Big (RFC 4443 2.4 e.2) */
    s.dst = "ff0e::101";
    n = build(buf, &s, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1400, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "fd00::1", "2001:db8::77", 1400, 1280 - 48);
    s.dst = "fd00::5";

    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1279, out, sizeof out, &on), GP_TB_INVALID);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1516, out, sizeof out, &on), GP_TB_NOT_TOO_BIG);
    gp_ip_addr from4 = A("10.0.0.1");
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from4, 1280, out, sizeof out, &on), GP_TB_INVALID);
    const char *no_host[] = {"::", "::1"};
    for (size_t i = 0; i < 2; i++) {
        s.src = no_host[i];
        n = build(buf, &s, l4b, l, 1);
        cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
        cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, sizeof out, &on),
                     GP_TB_BAD_SOURCE, "%s", no_host[i]);
    }
    s.src = "2001:db8::77";
    /* ICMPv6 errors (type < 128) are not answered, informational ones are */
    spec si = {.src = "2001:db8::77", .dst = "fd00::5", .proto = 58};
    l = icmp(l4b, 3, 0, 1400);
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, sizeof out, &on), GP_TB_ICMP_ERROR);
    l = icmp(l4b, 128, 0, 1400);
    n = build(buf, &si, l4b, l, 1);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, sizeof out, &on), GP_TB_BUILT);
    check_answer(out, on, buf, n, "fd00::1", "2001:db8::77", 1280, 1232);
    /* a later fragment is not answered */
    uint8_t fx[8];
    ext_frag(fx, 17, 1448, 0, 9);
    spec sf = {
        .src = "2001:db8::77", .dst = "fd00::5", .proto = 17, .ext = fx, .ext_n = 8, .ext_nh = 44};
    n = build(buf, &sf, l4b, 1400, 0);
    cr_assert_eq(gp_ip_parse(buf, n, &k), GP_IPD_OK);
    cr_assert_eq(gp_icmp_too_big(buf, n, &k, &from, 1280, out, sizeof out, &on), GP_TB_FRAGMENT);

    for (int r = 0; r < GP_TB_COUNT; r++)
        for (int o = 0; o < r; o++)
            cr_assert_str_neq(gp_icmp_tb_name(r), gp_icmp_tb_name(o));
    cr_assert_str_eq(gp_icmp_tb_name(GP_TB_ICMP_ERROR), "icmp_error");
    cr_assert_str_eq(gp_icmp_tb_name(GP_TB_COUNT), "unknown");
}

/* ---- checksums ---- */

Test(ippkt, checksum_helpers) {
    /* RFC 1071's example: the sum of 0001 f203 f4f5 f6f7 is ddf2 */
    const uint8_t ex[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    cr_assert_eq(gp_csum_add(0, ex, sizeof ex), 0xddf2);
    cr_assert_eq(gp_csum_fold(gp_csum_add(0, ex, sizeof ex)), 0x220d);
    /* in pieces (even ones), the same */
    cr_assert_eq(gp_csum_add(gp_csum_add(0, ex, 2), ex + 2, 6), 0xddf2);
    /* an odd last byte is padded */
    const uint8_t odd[] = {0x12, 0x34, 0x56};
    cr_assert_eq(gp_csum_add(0, odd, 3), 0x1234 + 0x5600);
    /* many 0xffff words carry around */
    static uint8_t ff[65536];
    memset(ff, 0xff, sizeof ff);
    cr_assert_eq(gp_csum_add(0, ff, sizeof ff), 0xffff);
    cr_assert_eq(gp_csum_fold(0x1ffff), 0xfffe);
    /* the pseudo-header as this file builds it */
    gp_ip_addr s4 = A("10.0.0.1"), d4 = A("192.168.7.9"), s6 = A("fd00::1"), d6 = A("2001:db8::2");
    cr_assert_eq(gp_csum_fold(gp_csum_pseudo(&s4, &d4, 6, 1234)),
                 ref_fold(ref_pseudo(4, s4.a, d4.a, 6, 1234)));
    cr_assert_eq(gp_csum_fold(gp_csum_pseudo(&s6, &d6, 58, 70000)),
                 ref_fold(ref_pseudo(6, s6.a, d6.a, 58, 70000)));
}

/* Lists of prefixes (an L3 frame's fields, options): parsed strictly, written back the same. */
Test(ippkt, prefix_lists_parse_strictly_and_format_back) {
    gp_cidr c[4];
    size_t n;
    char err[200], out[200];
    static const char ok[] = "100.96.0.0/16,fd7a:6770::/64,192.168.1.7";
    cr_assert_eq(gp_cidr_list_parse(ok, strlen(ok), c, 4, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(gp_cidr_list_format(c, n, ",", out, sizeof out), (int)strlen(ok) + 3);
    cr_assert_str_eq(out, "100.96.0.0/16,fd7a:6770::/64,192.168.1.7/32");
    cr_assert_eq(gp_cidr_list_format(c, n, ",", out, 10), -1, "does not fit");
    cr_assert_eq(gp_cidr_list_parse("", 0, c, 4, &n, err, sizeof err), 0);
    cr_assert_eq(n, 0);
    static const char *const bad[] = {",",
                                      "10.0.0.0/8,",
                                      ",10.0.0.0/8",
                                      "10.0.0.0/8,,10.1.0.0/16",
                                      "10.0.0.1/8",
                                      "nope",
                                      "1.2.3.4,1.2.3.5,1.2.3.6,1.2.3.7,1.2.3.8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(gp_cidr_list_parse(bad[i], strlen(bad[i]), c, 4, &n, err, sizeof err), -1,
                     "\"%s\" parsed", bad[i]);
        cr_assert(err[0], "no message for \"%s\"", bad[i]);
    }
}

/* `icmp` lets the hub side's echo requests in, nothing else it could send unasked: replies and
 * errors about the house's own packets come in as related (the flow table), and redirects or
 * router advertisements would reconfigure the house's routing. */
Test(ippkt, the_icmp_rule_is_echo_requests_only) {
    gp_tun_rule r;
    char err[160];
    cr_assert_eq(gp_tun_rule_parse("icmp", &r, err, sizeof err), 0, "%s", err);
    static const struct {
        const char *src, *dst;
        uint8_t proto, type;
        int allowed;
    } cases[] = {
        {"100.96.0.1", "100.96.0.2", 1, 8, 1}, {"fd7a::1", "fd7a::2", 58, 128, 1},
        {"100.96.0.1", "100.96.0.2", 1, 0, 0}, {"100.96.0.1", "100.96.0.2", 1, 5, 0},
        {"100.96.0.1", "100.96.0.2", 1, 3, 0}, {"fd7a::1", "fd7a::2", 58, 134, 0},
        {"fd7a::1", "fd7a::2", 58, 137, 0},    {"fd7a::1", "fd7a::2", 58, 129, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t pkt[256], l4[64];
        size_t n =
            build(pkt, &(spec){.src = cases[i].src, .dst = cases[i].dst, .proto = cases[i].proto},
                  l4, icmp(l4, cases[i].type, 0, 8), 1);
        gp_ip_pkt p;
        cr_assert_eq(gp_ip_parse(pkt, n, &p), GP_IPD_OK, "case %zu", i);
        cr_assert_eq(gp_tun_rules_match(&r, 1, &p) == 0, cases[i].allowed, "ICMP%s type %u: %s",
                     cases[i].proto == 58 ? "v6" : "", cases[i].type,
                     cases[i].allowed ? "refused" : "let in");
    }
}
