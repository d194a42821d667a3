/* ippkt_build.h — IP packets built by hand for the unit tests of the L3 tunnel's packet logic
 * (tests/unit/ippkt.c, tests/unit/flowtab.c): a reference one's complement sum (not the code
 * under test's), IPv4 and IPv6 headers (options, extension headers) around an L4 part, TCP,
 * UDP and ICMP headers, IPv6 extension headers, addresses from text. Criterion asserts on bad
 * test input. Test-only. */
#ifndef GP_TEST_IPPKT_BUILD_H
#define GP_TEST_IPPKT_BUILD_H
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ippkt.h"

/* The one's complement sum of p[0..n) (n even but the last piece), the naive way. */
static inline uint32_t ref_add(uint32_t s, const uint8_t *p, size_t n) {
    for (size_t k = 0; k < n; k += 2)
        s += (uint32_t)p[k] << 8 | (k + 1 < n ? p[k + 1] : 0);
    return s;
}

static inline uint16_t ref_fold(uint32_t s) {
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static inline void addr_of(const char *s, int *v, uint8_t a[16]) {
    memset(a, 0, 16);
    *v = strchr(s, ':') ? 6 : 4;
    cr_assert_eq(inet_pton(*v == 6 ? AF_INET6 : AF_INET, s, a), 1, "test address %s", s);
}

/* The pseudo-header as bytes (RFC 793 / RFC 8200 8.1), summed. */
static inline uint32_t ref_pseudo(int v, const uint8_t *src, const uint8_t *dst, uint8_t proto,
                                  size_t len) {
    uint8_t ph[40];
    size_t n;
    if (v == 4) {
        memcpy(ph, src, 4), memcpy(ph + 4, dst, 4);
        ph[8] = 0, ph[9] = proto, ph[10] = (uint8_t)(len >> 8), ph[11] = (uint8_t)len;
        n = 12;
    } else {
        memcpy(ph, src, 16), memcpy(ph + 16, dst, 16);
        ph[32] = (uint8_t)(len >> 24), ph[33] = (uint8_t)(len >> 16);
        ph[34] = (uint8_t)(len >> 8), ph[35] = (uint8_t)len;
        ph[36] = ph[37] = ph[38] = 0, ph[39] = proto;
        n = 40;
    }
    return ref_add(0, ph, n);
}

/* Where the checksum of an L4 header of proto is, or -1. */
static inline int csum_at(int v, uint8_t proto) {
    if (proto == 6)
        return 16;
    if (proto == 17)
        return 6;
    if ((v == 4 && proto == 1) || (v == 6 && proto == 58))
        return 2;
    return -1;
}

/* 1 when the L4 checksum of a whole packet (L4 header at off) is right, from scratch. */
static inline int ref_l4_ok(const uint8_t *p, size_t n, size_t off, uint8_t proto) {
    int v = p[0] >> 4;
    const uint8_t *src = p + (v == 4 ? 12 : 8), *dst = p + (v == 4 ? 16 : 24);
    uint32_t s = (v == 4 && proto == 1) ? 0 : ref_pseudo(v, src, dst, proto, n - off);
    return ref_fold(ref_add(s, p + off, n - off)) == 0;
}

typedef struct spec {
    const char *src, *dst;
    uint8_t proto;       /* the L4 protocol (the last next header for v6) */
    uint16_t frag;       /* v4: flags and offset field */
    const uint8_t *opts; /* v4 options (a multiple of 4 bytes) */
    size_t opts_n;       /* or v6 extension headers, ext_nh the first one's type */
    const uint8_t *ext;  /* v6 extension headers, whole, their next headers filled in */
    size_t ext_n;
    uint8_t ext_nh;
} spec;

/* The packet of s around l4[0..l4n) into out; the L4 checksum computed (at off 0 of l4) when
 * fix_l4. Returns its length. */
static inline size_t build(uint8_t *out, const spec *s, const uint8_t *l4, size_t l4n, int fix_l4) {
    int v, v2;
    uint8_t src[16], dst[16];
    addr_of(s->src, &v, src);
    addr_of(s->dst, &v2, dst);
    cr_assert_eq(v, v2);
    size_t off;
    if (v == 4) {
        size_t ihl = 20 + s->opts_n;
        memset(out, 0, 20);
        out[0] = (uint8_t)(0x40 | ihl / 4);
        out[2] = (uint8_t)((ihl + l4n) >> 8), out[3] = (uint8_t)(ihl + l4n);
        out[4] = 0x12, out[5] = 0x34;
        out[6] = (uint8_t)(s->frag >> 8), out[7] = (uint8_t)s->frag;
        out[8] = 64, out[9] = s->proto;
        memcpy(out + 12, src, 4), memcpy(out + 16, dst, 4);
        if (s->opts_n)
            memcpy(out + 20, s->opts, s->opts_n);
        uint16_t c = ref_fold(ref_add(0, out, ihl));
        out[10] = (uint8_t)(c >> 8), out[11] = (uint8_t)c;
        off = ihl;
    } else {
        size_t plen = s->ext_n + l4n;
        memset(out, 0, 40);
        out[0] = 0x60, out[1] = 0x01, out[3] = 0x42; /* traffic class 0, some flow label */
        out[4] = (uint8_t)(plen >> 8), out[5] = (uint8_t)plen;
        out[6] = s->ext_n ? s->ext_nh : s->proto;
        out[7] = 64;
        memcpy(out + 8, src, 16), memcpy(out + 24, dst, 16);
        if (s->ext_n)
            memcpy(out + 40, s->ext, s->ext_n);
        off = 40 + s->ext_n;
    }
    if (l4n)
        memcpy(out + off, l4, l4n);
    int at = csum_at(v, s->proto);
    if (fix_l4 && at >= 0 && l4n >= (size_t)at + 2) {
        out[off + at] = out[off + at + 1] = 0;
        uint32_t sum = (v == 4 && s->proto == 1) ? 0 : ref_pseudo(v, src, dst, s->proto, l4n);
        uint16_t c = ref_fold(ref_add(sum, out + off, l4n));
        out[off + at] = (uint8_t)(c >> 8), out[off + at + 1] = (uint8_t)c;
        cr_assert(ref_l4_ok(out, off + l4n, off, s->proto));
    }
    return off + l4n;
}

/* A TCP header (options given, a multiple of 4) and payload bytes into o; returns the length. */
static inline size_t tcp(uint8_t *o, uint16_t sp, uint16_t dp, uint8_t flags, const uint8_t *opts,
                         size_t on, size_t payload) {
    size_t hl = 20 + on;
    memset(o, 0, hl);
    o[0] = (uint8_t)(sp >> 8), o[1] = (uint8_t)sp, o[2] = (uint8_t)(dp >> 8), o[3] = (uint8_t)dp;
    o[4] = 0x11, o[5] = 0x22, o[6] = 0x33, o[7] = 0x44; /* seq */
    o[12] = (uint8_t)(hl / 4 << 4);
    o[13] = flags;
    o[14] = 0xfa, o[15] = 0xf0; /* window */
    if (on)
        memcpy(o + 20, opts, on);
    for (size_t k = 0; k < payload; k++)
        o[hl + k] = (uint8_t)(k * 13 + 7);
    return hl + payload;
}

static inline size_t udp(uint8_t *o, uint16_t sp, uint16_t dp, size_t payload) {
    size_t n = 8 + payload;
    o[0] = (uint8_t)(sp >> 8), o[1] = (uint8_t)sp, o[2] = (uint8_t)(dp >> 8), o[3] = (uint8_t)dp;
    o[4] = (uint8_t)(n >> 8), o[5] = (uint8_t)n, o[6] = o[7] = 0;
    for (size_t k = 0; k < payload; k++)
        o[8 + k] = (uint8_t)(k * 5 + 1);
    return n;
}

static inline size_t icmp(uint8_t *o, uint8_t type, uint8_t code, size_t payload) {
    memset(o, 0, 8);
    o[0] = type, o[1] = code, o[4] = 0xbe, o[5] = 0xef, o[7] = 1;
    for (size_t k = 0; k < payload; k++)
        o[8 + k] = (uint8_t)k;
    return 8 + payload;
}

/* An IPv6 extension header of 8 * units bytes (hop-by-hop or destination options: PadN). */
static inline size_t ext_opts(uint8_t *o, uint8_t next, size_t units) {
    memset(o, 0, 8 * units);
    o[0] = next, o[1] = (uint8_t)(units - 1);
    o[2] = 1, o[3] = (uint8_t)(8 * units - 4); /* PadN over the rest */
    return 8 * units;
}

static inline size_t ext_routing(uint8_t *o, uint8_t next, uint8_t segleft) {
    memset(o, 0, 24);
    o[0] = next, o[1] = 2, o[2] = 4 /* segment routing */, o[3] = segleft;
    return 24;
}

static inline size_t ext_frag(uint8_t *o, uint8_t next, uint16_t off, int m, uint32_t id) {
    o[0] = next, o[1] = 0;
    uint16_t fo = (uint16_t)(off | (m ? 1 : 0));
    o[2] = (uint8_t)(fo >> 8), o[3] = (uint8_t)fo;
    o[4] = (uint8_t)(id >> 24), o[5] = (uint8_t)(id >> 16), o[6] = (uint8_t)(id >> 8);
    o[7] = (uint8_t)id;
    return 8;
}

static inline gp_ip_addr A(const char *s) {
    gp_ip_addr a;
    cr_assert_eq(gp_ip_addr_parse(s, strlen(s), &a), 0, "address %s", s);
    return a;
}
#endif
