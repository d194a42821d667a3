/* ippkt.c — the L3 tunnel's packet logic (ippkt.h, proto/TUN.md). Pure. */
#include "ippkt.h"
#include "gp.h"

#include <stdio.h>
#include <string.h>

static uint16_t be16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
    put16(p, v >> 16);
    put16(p + 2, v);
}

/* ---- addresses ---- */

static unsigned addr_bits(const gp_ip_addr *a) {
    return a->family == 4 ? 32 : 128;
}

int gp_ip_addr_eq(const gp_ip_addr *x, const gp_ip_addr *y) {
    return x->family == y->family && memcmp(x->a, y->a, 16) == 0;
}

/* A dotted quad filling exactly s[0..n) into out[4]. */
static int parse_v4(const char *s, size_t n, uint8_t out[4]) {
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part && (i >= n || s[i++] != '.'))
            return -1;
        size_t start = i;
        unsigned v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        /* no digit, a leading zero (octal to inet_aton), a fourth digit, or over 255 */
        if (i == start || (s[start] == '0' && i - start > 1) || v > 255 ||
            (i < n && s[i] >= '0' && s[i] <= '9'))
            return -1;
        out[part] = (uint8_t)v;
    }
    return i == n ? 0 : -1;
}

/* RFC 4291 2.2 text filling exactly s[0..n) into out[16]. */
static int parse_v6(const char *s, size_t n, uint8_t out[16]) {
    uint16_t g[8];
    int ng = 0, gap = -1; /* gap: where "::" stands, in groups */
    size_t i = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
        if (i == n)
            goto expand;
    }
    for (;;) {
        /* a token up to the next ':' or the end: a dotted quad ends the address */
        size_t end = i;
        while (end < n && s[end] != ':')
            end++;
        if (memchr(s + i, '.', end - i)) {
            uint8_t q[4];
            if (end != n || ng > 6 || parse_v4(s + i, end - i, q) != 0)
                return -1;
            g[ng++] = (uint16_t)(q[0] << 8 | q[1]);
            g[ng++] = (uint16_t)(q[2] << 8 | q[3]);
            break;
        }
        if (end == i || end - i > 4 || ng == 8)
            return -1;
        unsigned v = 0;
        for (; i < end; i++) {
            int h = gp_hexval(s[i]);
            if (h < 0)
                return -1;
            v = v << 4 | (unsigned)h;
        }
        g[ng++] = (uint16_t)v;
        if (i == n)
            break;
        i++; /* the ':' */
        if (i < n && s[i] == ':') {
            if (gap >= 0)
                return -1;
            gap = ng;
            if (++i == n)
                break;
        } else if (i == n) {
            return -1; /* a trailing single ':' */
        }
    }
expand:
    if (gap < 0 ? ng != 8 : ng > 7)
        return -1;
    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : ng - gap;
    for (int k = 0; k < ng; k++) {
        int at = (gap < 0 || k < gap) ? k : 8 - tail + (k - gap);
        out[2 * at] = (uint8_t)(g[k] >> 8);
        out[2 * at + 1] = (uint8_t)g[k];
    }
    return 0;
}

int gp_ip_addr_parse(const char *s, size_t n, gp_ip_addr *out) {
    memset(out, 0, sizeof *out);
    if (memchr(s, ':', n)) {
        out->family = 6;
        return parse_v6(s, n, out->a);
    }
    out->family = 4;
    return parse_v4(s, n, out->a);
}

char *gp_ip_addr_format(const gp_ip_addr *a, char *buf) {
    const uint8_t *b = a->a;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a->family == 4) {
        snprintf(buf, GP_IP_ADDR_STRLEN, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        return buf;
    }
    if (memcmp(b, mapped, 12) == 0) { /* RFC 5952 5: the mixed notation for v4-mapped */
        snprintf(buf, GP_IP_ADDR_STRLEN, "::ffff:%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
        return buf;
    }
    /* the longest run of at least two zero groups becomes "::", the first of equal ones */
    int best = -1, best_len = 1;
    for (int k = 0; k < 8;) {
        int j = k;
        while (j < 8 && b[2 * j] == 0 && b[2 * j + 1] == 0)
            j++;
        if (j - k > best_len)
            best = k, best_len = j - k;
        k = j > k ? j : k + 1;
    }
    size_t o = 0;
    for (int k = 0; k < 8; k++) {
        if (k == best) {
            o += (size_t)snprintf(buf + o, GP_IP_ADDR_STRLEN - o, "::");
            k += best_len - 1;
            continue;
        }
        o += (size_t)snprintf(buf + o, GP_IP_ADDR_STRLEN - o, "%s%x",
                              (k && k != best + best_len) ? ":" : "", be16(b + 2 * k));
    }
    buf[o] = '\0';
    return buf;
}

/* ---- prefixes ---- */

/* 1 when the first bits of x and y are equal (both 16 bytes). */
static int prefix_eq(const uint8_t *x, const uint8_t *y, unsigned bits) {
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(x, y, whole) != 0)
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (x[whole] & mask) == (y[whole] & mask);
}

/* Clears the bits of a past len. */
static void mask_to(gp_ip_addr *a, unsigned len) {
    for (unsigned bit = len; bit < 128; bit++)
        a->a[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
}

int gp_cidr_parse(const char *s, gp_cidr *out, char *err, size_t errlen) {
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof *out);
    if (gp_ip_addr_parse(s, alen, &out->addr) != 0) {
        gp_errf(err, errlen, "\"%.*s\" is not an IPv4 or IPv6 address", (int)alen, s);
        return -1;
    }
    unsigned max = addr_bits(&out->addr), len = max;
    if (slash) {
        const char *d = slash + 1;
        size_t k = 0;
        len = 0;
        while (d[k] >= '0' && d[k] <= '9' && k < 4)
            len = len * 10 + (unsigned)(d[k++] - '0');
        if (k == 0 || d[k] != '\0' || (d[0] == '0' && k > 1) || len > max) {
            gp_errf(err, errlen, "prefix length \"%s\" is not a number from 0 to %u", d, max);
            return -1;
        }
    }
    out->len = (uint8_t)len;
    gp_ip_addr net = out->addr;
    mask_to(&net, len);
    if (!gp_ip_addr_eq(&net, &out->addr)) {
        char a[GP_IP_ADDR_STRLEN];
        gp_errf(err, errlen, "\"%s\" has bits set past /%u (the network is %s/%u)", s, len,
                gp_ip_addr_format(&net, a), len);
        return -1;
    }
    return 0;
}

char *gp_cidr_format(const gp_cidr *c, char *buf) {
    char a[GP_IP_ADDR_STRLEN];
    snprintf(buf, GP_CIDR_STRLEN, "%s/%u", gp_ip_addr_format(&c->addr, a), c->len);
    return buf;
}

int gp_cidr_list_parse(const char *s, size_t len, gp_cidr *out, size_t max, size_t *n, char *err,
                       size_t errlen) {
    *n = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        char one[GP_CIDR_STRLEN + 8];
        if (j == i || j - i >= sizeof one) {
            snprintf(err, errlen, "\"%.*s\": an empty or overlong item in a list of prefixes",
                     (int)(j - i < 64 ? j - i : 64), s + i);
            return -1;
        }
        if (*n == max) {
            snprintf(err, errlen, "more than %zu prefixes", max);
            return -1;
        }
        memcpy(one, s + i, j - i);
        one[j - i] = '\0';
        if (gp_cidr_parse(one, &out[*n], err, errlen) != 0)
            return -1;
        (*n)++;
        i = j + 1;
        if (j + 1 == len) { /* a trailing comma: an empty last item */
            snprintf(err, errlen, "an empty item at the end of a list of prefixes");
            return -1;
        }
    }
    return 0;
}

int gp_cidr_list_format(const gp_cidr *c, size_t n, const char *sep, char *out, size_t cap) {
    size_t o = 0, sl = strlen(sep);
    if (cap == 0)
        return -1;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char t[GP_CIDR_STRLEN];
        size_t tl = strlen(gp_cidr_format(&c[i], t));
        if (o + (i ? sl : 0) + tl >= cap)
            return -1;
        if (i) {
            memcpy(out + o, sep, sl);
            o += sl;
        }
        memcpy(out + o, t, tl + 1);
        o += tl;
    }
    return (int)o;
}

int gp_cidr_contains(const gp_cidr *c, const gp_ip_addr *a) {
    return c->addr.family == a->family && c->len <= addr_bits(a) &&
           prefix_eq(c->addr.a, a->a, c->len);
}

/* ---- pools ---- */

/* The pool's host bits. */
static unsigned host_bits(const gp_cidr *pool) {
    unsigned w = addr_bits(&pool->addr);
    return pool->len <= w ? w - pool->len : 0;
}

/* Host values below index 0: 1 (the network, or v6's subnet-router anycast address) unless
 * the pool is a point-to-point pair or one address (h below 2), where all are hosts. */
static unsigned pool_skip(unsigned h) {
    return h >= 2;
}

/* The low 64 bits of the address (for v4, its 32 bits). */
static uint64_t low64(const gp_ip_addr *a) {
    const uint8_t *b = a->family == 4 ? a->a : a->a + 8;
    int nb = a->family == 4 ? 4 : 8;
    uint64_t v = 0;
    for (int k = 0; k < nb; k++)
        v = v << 8 | b[k];
    return v;
}

uint64_t gp_pool_size(const gp_cidr *pool) {
    unsigned h = host_bits(pool);
    if (h < 2)
        return (uint64_t)1 << h;
    if (h >= 64)
        return UINT64_MAX; /* 2^64 - 1 exactly for a /64, capped below that */
    uint64_t all = (uint64_t)1 << h;
    return pool->addr.family == 4 ? all - 2 : all - 1; /* v4 skips the broadcast too */
}

int gp_pool_addr(const gp_cidr *pool, uint64_t i, gp_ip_addr *out) {
    if (i >= gp_pool_size(pool))
        return -1;
    uint64_t host = i + pool_skip(host_bits(pool)); /* < 2^h and <= UINT64_MAX */
    *out = pool->addr;
    /* the network's host bits are zero: adding is OR-ing into the low bytes */
    uint8_t *b = out->family == 4 ? out->a : out->a + 8;
    for (int k = (out->family == 4 ? 3 : 7); k >= 0; k--, host >>= 8)
        b[k] |= (uint8_t)host;
    return 0;
}

int gp_pool_index(const gp_cidr *pool, const gp_ip_addr *a, uint64_t *i) {
    if (!gp_cidr_contains(pool, a))
        return -1;
    unsigned h = host_bits(pool);
    if (a->family == 6 && h > 64 && !prefix_eq(a->a, pool->addr.a, 64))
        return -1; /* past the first 2^64 hosts: no index */
    uint64_t host = low64(a);
    if (h < 64)
        host &= ((uint64_t)1 << h) - 1;
    if (pool_skip(h)) {
        if (host == 0)
            return -1; /* the network (v4) or the subnet-router anycast address (v6) */
        if (a->family == 4 && host == ((uint64_t)1 << h) - 1)
            return -1; /* the broadcast */
        host--;
    }
    *i = host;
    return 0;
}

/* ---- checksums ---- */

uint32_t gp_csum_add(uint32_t sum, const uint8_t *p, size_t n) {
    uint64_t s = sum;
    size_t k = 0;
    for (; k + 1 < n; k += 2)
        s += (uint32_t)(p[k] << 8 | p[k + 1]);
    if (k < n)
        s += (uint32_t)p[k] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint32_t)s;
}

uint16_t gp_csum_fold(uint32_t sum) {
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

uint32_t gp_csum_pseudo(const gp_ip_addr *src, const gp_ip_addr *dst, uint8_t proto,
                        uint32_t l4_len) {
    size_t al = src->family == 4 ? 4 : 16;
    uint32_t s = gp_csum_add(0, src->a, al);
    s = gp_csum_add(s, dst->a, al);
    /* v4: zero, proto, 16-bit length; v6: 32-bit length, three zeros, next header: the same
     * words to a one's complement sum */
    uint8_t tail[6] = {(uint8_t)(l4_len >> 24),
                       (uint8_t)(l4_len >> 16),
                       (uint8_t)(l4_len >> 8),
                       (uint8_t)l4_len,
                       0,
                       proto};
    return gp_csum_add(s, tail, sizeof tail);
}

/* ---- parse ---- */

static const char *const drop_names[] = {
    [GP_IPD_OK] = "ok",
    [GP_IPD_TRUNCATED] = "truncated",
    [GP_IPD_BAD_VERSION] = "bad_version",
    [GP_IPD_BAD_HEADER_LENGTH] = "bad_header_length",
    [GP_IPD_BAD_LENGTH] = "bad_length",
    [GP_IPD_TRAILING_BYTES] = "trailing_bytes",
    [GP_IPD_BAD_CHECKSUM] = "bad_checksum",
    [GP_IPD_BAD_OPTIONS] = "bad_options",
    [GP_IPD_SOURCE_ROUTE] = "source_route",
    [GP_IPD_BAD_SOURCE] = "bad_source",
    [GP_IPD_BAD_FRAGMENT] = "bad_fragment",
    [GP_IPD_BAD_EXT_HEADER] = "bad_ext_header",
    [GP_IPD_TOO_MANY_EXT] = "too_many_ext_headers",
    [GP_IPD_L4_TRUNCATED] = "l4_truncated",
    [GP_IPD_BAD_TCP_HEADER] = "bad_tcp_header",
    [GP_IPD_BAD_UDP_LENGTH] = "bad_udp_length",
};
_Static_assert(sizeof drop_names / sizeof *drop_names == GP_IPD_COUNT, "a name per reason");

const char *gp_ip_drop_name(gp_ip_drop d) {
    if ((unsigned)d >= GP_IPD_COUNT)
        return "unknown";
    return drop_names[d];
}

static int v4_multicast(const gp_ip_addr *a) {
    return (a->a[0] & 0xf0) == 0xe0;
}

static int v4_limited_broadcast(const gp_ip_addr *a) {
    return a->a[0] == 255 && a->a[1] == 255 && a->a[2] == 255 && a->a[3] == 255;
}

static int v6_multicast(const gp_ip_addr *a) {
    return a->a[0] == 0xff;
}

/* IPv4 options p[0..n): walked in bounds, source routes refused (the destination field
 * would not be where the packet ends up, and the rules look at it). */
static gp_ip_drop v4_options(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t kind = p[i];
        if (kind == 0) /* end of options list */
            break;
        if (kind == 1) { /* no operation */
            i++;
            continue;
        }
        if (i + 1 >= n || p[i + 1] < 2 || p[i + 1] > n - i)
            return GP_IPD_BAD_OPTIONS;
        if (kind == 131 || kind == 137) /* loose and strict source and record route */
            return GP_IPD_SOURCE_ROUTE;
        i += p[i + 1];
    }
    return GP_IPD_OK;
}

/* The L4 header at p[pkt->l4_off..pkt->len) of a whole packet or first fragment. */
static gp_ip_drop parse_l4(const uint8_t *p, gp_ip_pkt *pkt) {
    size_t off = pkt->l4_off, avail = pkt->len - off;
    const uint8_t *h = p + off;
    int icmp = (pkt->version == 4 && pkt->proto == GP_IPPROTO_ICMP) ||
               (pkt->version == 6 && pkt->proto == GP_IPPROTO_ICMPV6);
    if (pkt->proto == GP_IPPROTO_TCP) {
        if (avail < 20)
            return GP_IPD_L4_TRUNCATED;
        size_t doff = (size_t)(h[12] >> 4) * 4;
        /* the whole TCP header in the first fragment too: its options (MSS) are read */
        if (doff < 20 || doff > avail)
            return GP_IPD_BAD_TCP_HEADER;
        pkt->sport = be16(h);
        pkt->dport = be16(h + 2);
        pkt->tcp_flags = h[13];
        if (h[13] & 0x02)
            pkt->flags |= GP_IPF_TCP_SYN;
    } else if (pkt->proto == GP_IPPROTO_UDP) {
        if (avail < 8)
            return GP_IPD_L4_TRUNCATED;
        uint16_t ulen = be16(h + 4);
        /* a first fragment holds only the start of the datagram ulen describes */
        if ((pkt->flags & GP_IPF_FRAGMENT) ? ulen < 8 : ulen != avail)
            return GP_IPD_BAD_UDP_LENGTH;
        pkt->sport = be16(h);
        pkt->dport = be16(h + 2);
    } else if (icmp) {
        if (avail < 8)
            return GP_IPD_L4_TRUNCATED;
        pkt->icmp_type = h[0];
        pkt->icmp_code = h[1];
        int err = pkt->version == 4
                      ? (h[0] == 3 || h[0] == 4 || h[0] == 5 || h[0] == 11 || h[0] == 12)
                      : h[0] < 128;
        if (err)
            pkt->flags |= GP_IPF_ICMP_ERROR;
    } else {
        return GP_IPD_OK; /* another protocol: no L4 fields */
    }
    pkt->flags |= GP_IPF_L4;
    return GP_IPD_OK;
}

static gp_ip_drop parse_v4_pkt(const uint8_t *p, size_t n, gp_ip_pkt *pkt) {
    if (n < 20)
        return GP_IPD_TRUNCATED;
    size_t ihl = (size_t)(p[0] & 0x0f) * 4, tot = be16(p + 2);
    if (ihl < 20)
        return GP_IPD_BAD_HEADER_LENGTH;
    if (tot < 20)
        return GP_IPD_BAD_LENGTH;
    if (ihl > tot)
        return GP_IPD_BAD_HEADER_LENGTH;
    if (n < tot)
        return GP_IPD_TRUNCATED;
    if (n > tot)
        return GP_IPD_TRAILING_BYTES;
    if (gp_csum_fold(gp_csum_add(0, p, ihl)) != 0)
        return GP_IPD_BAD_CHECKSUM;
    if (ihl > 20) {
        pkt->flags |= GP_IPF_IPV4_OPTIONS;
        gp_ip_drop d = v4_options(p + 20, ihl - 20);
        if (d)
            return d;
    }
    pkt->version = 4;
    pkt->len = (uint32_t)tot;
    pkt->hdr_len = pkt->l4_off = (uint32_t)ihl;
    pkt->ttl = p[8];
    pkt->proto = p[9];
    pkt->frag_id = be16(p + 4);
    pkt->src.family = pkt->dst.family = 4;
    memcpy(pkt->src.a, p + 12, 4);
    memcpy(pkt->dst.a, p + 16, 4);
    if (v4_multicast(&pkt->src) || v4_limited_broadcast(&pkt->src))
        return GP_IPD_BAD_SOURCE;

    uint16_t ff = be16(p + 6);
    int mf = (ff & 0x2000) != 0;
    size_t data = tot - ihl;
    pkt->frag_off = (uint32_t)(ff & 0x1fff) * 8;
    if (ff & 0x4000)
        pkt->flags |= GP_IPF_DF;
    if (mf || pkt->frag_off) {
        pkt->flags |= GP_IPF_FRAGMENT;
        if (!pkt->frag_off)
            pkt->flags |= GP_IPF_FIRST_FRAG;
        /* reassembled past 65535 bytes (ping of death); a middle piece off the 8-byte grid;
         * a TCP piece at offset 8 overwriting the first one's flags (RFC 1858) */
        if (ihl + pkt->frag_off + data > 65535 || (mf && data % 8) ||
            (pkt->proto == GP_IPPROTO_TCP && pkt->frag_off == 8))
            return GP_IPD_BAD_FRAGMENT;
        if (pkt->frag_off)
            return GP_IPD_OK; /* no L4 header in this one */
    }
    return parse_l4(p, pkt);
}

static gp_ip_drop parse_v6_pkt(const uint8_t *p, size_t n, gp_ip_pkt *pkt) {
    if (n < 40)
        return GP_IPD_TRUNCATED;
    size_t tot = 40 + (size_t)be16(p + 4);
    if (n < tot)
        return GP_IPD_TRUNCATED;
    if (n > tot)
        return GP_IPD_TRAILING_BYTES;
    pkt->version = 6;
    pkt->len = (uint32_t)tot;
    pkt->ttl = p[7];
    pkt->flags |= GP_IPF_DF; /* IPv6 routers never fragment */
    pkt->src.family = pkt->dst.family = 6;
    memcpy(pkt->src.a, p + 8, 16);
    memcpy(pkt->dst.a, p + 24, 16);
    if (v6_multicast(&pkt->src))
        return GP_IPD_BAD_SOURCE;

    uint8_t nh = p[6];
    size_t off = 40;
    int count = 0, frag_seen = 0;
    while (nh == GP_IPPROTO_HOPOPTS || nh == GP_IPPROTO_ROUTING || nh == GP_IPPROTO_FRAGMENT ||
           nh == GP_IPPROTO_DSTOPTS) {
        pkt->flags |= GP_IPF_EXT_HEADERS;
        if (++count > GP_IP_EXT_MAX)
            return GP_IPD_TOO_MANY_EXT;
        /* every extension header is at least 8 bytes; hop-by-hop comes first or not at all
         * (RFC 8200 4.1); the whole chain is in the first fragment (RFC 7112) */
        if ((nh == GP_IPPROTO_HOPOPTS && off != 40) || tot - off < 8)
            return GP_IPD_BAD_EXT_HEADER;
        const uint8_t *h = p + off;
        if (nh == GP_IPPROTO_FRAGMENT) {
            if (frag_seen++)
                return GP_IPD_BAD_EXT_HEADER;
            uint16_t fo = be16(h + 2);
            int m = fo & 1;
            size_t data = tot - off - 8;
            pkt->frag_off = fo & 0xfff8u;
            pkt->frag_id = be32(h + 4);
            nh = h[0];
            off += 8;
            if (!m && !pkt->frag_off)
                continue; /* an atomic fragment: a whole packet (RFC 6946) */
            pkt->flags |= GP_IPF_FRAGMENT;
            if (!pkt->frag_off)
                pkt->flags |= GP_IPF_FIRST_FRAG;
            /* the reassembled payload (headers before this one, offset, data) past 65535 */
            if ((off - 8 - 40) + pkt->frag_off + data > 65535 || (m && data % 8) ||
                (nh == GP_IPPROTO_TCP && pkt->frag_off == 8))
                return GP_IPD_BAD_FRAGMENT;
            if (pkt->frag_off)
                break; /* the rest of the chain, and the L4 header, are in the first one */
            continue;
        }
        size_t hl = ((size_t)h[1] + 1) * 8;
        if (hl > tot - off)
            return GP_IPD_BAD_EXT_HEADER;
        /* segments left: the packet goes on past its destination field */
        if (nh == GP_IPPROTO_ROUTING && h[3] != 0)
            return GP_IPD_SOURCE_ROUTE;
        nh = h[0];
        off += hl;
    }
    pkt->proto = nh;
    pkt->hdr_len = pkt->l4_off = (uint32_t)off;
    if ((pkt->flags & GP_IPF_FRAGMENT) && pkt->frag_off)
        return GP_IPD_OK;
    return parse_l4(p, pkt);
}

gp_ip_drop gp_ip_parse(const uint8_t *p, size_t n, gp_ip_pkt *pkt) {
    memset(pkt, 0, sizeof *pkt);
    if (n == 0)
        return GP_IPD_TRUNCATED;
    switch (p[0] >> 4) {
    case 4:
        return parse_v4_pkt(p, n, pkt);
    case 6:
        return parse_v6_pkt(p, n, pkt);
    default:
        return GP_IPD_BAD_VERSION;
    }
}

/* pkt could describe p[0..n): the offsets the callers below use are within it. */
static int pkt_fits(const uint8_t *p, size_t n, const gp_ip_pkt *pkt) {
    return p && pkt && (pkt->version == 4 || pkt->version == 6) && pkt->len == n &&
           n >= (pkt->version == 4 ? 20u : 40u) && pkt->l4_off <= n && pkt->hdr_len <= n &&
           (p[0] >> 4) == pkt->version && pkt->src.family == pkt->version;
}

int gp_l4_csum_ok(const uint8_t *p, size_t n, const gp_ip_pkt *pkt) {
    if (!pkt_fits(p, n, pkt) || (pkt->flags & GP_IPF_FRAGMENT) || !(pkt->flags & GP_IPF_L4))
        return -1;
    size_t off = pkt->l4_off, l4 = n - off;
    uint32_t s;
    if (pkt->proto == GP_IPPROTO_TCP || pkt->proto == GP_IPPROTO_UDP) {
        if (l4 < 8 || (pkt->proto == GP_IPPROTO_UDP && pkt->version == 4 && be16(p + off + 6) == 0))
            return -1; /* UDP over IPv4 may go without a checksum */
        s = gp_csum_pseudo(&pkt->src, &pkt->dst, pkt->proto, (uint32_t)l4);
    } else if (pkt->version == 4 && pkt->proto == GP_IPPROTO_ICMP) {
        s = 0; /* ICMPv4 has no pseudo-header */
    } else if (pkt->version == 6 && pkt->proto == GP_IPPROTO_ICMPV6) {
        s = gp_csum_pseudo(&pkt->src, &pkt->dst, GP_IPPROTO_ICMPV6, (uint32_t)l4);
    } else {
        return -1;
    }
    return gp_csum_fold(gp_csum_add(s, p + off, l4)) == 0;
}

/* ---- rules ---- */

static int word_is(const char *s, size_t n, const char *w) {
    if (strlen(w) != n)
        return 0;
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != w[k])
            return 0;
    }
    return 1;
}

/* A port 1..65535 at s[0..n), decimal. 0, or -1. */
static int parse_port(const char *s, size_t n, uint16_t *port) {
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[k] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int gp_tun_rule_parse(const char *s, gp_tun_rule *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    size_t len = strlen(s);
    if (len == 0) {
        gp_errf(err, errlen, "empty rule (PROTO[:PORT[-PORT]][@PREFIX])");
        return -1;
    }
    const char *at = strchr(s, '@');
    size_t head = at ? (size_t)(at - s) : len;
    const char *colon = memchr(s, ':', head);
    size_t plen = colon ? (size_t)(colon - s) : head;
    if (word_is(s, plen, "tcp"))
        r->proto = GP_TUN_TCP;
    else if (word_is(s, plen, "udp"))
        r->proto = GP_TUN_UDP;
    else if (word_is(s, plen, "icmp"))
        r->proto = GP_TUN_ICMP;
    else if (word_is(s, plen, "any"))
        r->proto = GP_TUN_ANY;
    else {
        gp_errf(err, errlen, "rule \"%s\": unknown protocol \"%.*s\" (tcp, udp, icmp or any)", s,
                (int)plen, s);
        return -1;
    }
    if (colon) {
        if (r->proto != GP_TUN_TCP && r->proto != GP_TUN_UDP) {
            gp_errf(err, errlen, "rule \"%s\": ports go only with tcp or udp", s);
            return -1;
        }
        const char *ps = colon + 1, *pe = s + head;
        const char *dash = memchr(ps, '-', (size_t)(pe - ps));
        const char *lo_end = dash ? dash : pe;
        if (parse_port(ps, (size_t)(lo_end - ps), &r->port_lo) != 0 ||
            (dash && parse_port(dash + 1, (size_t)(pe - dash - 1), &r->port_hi) != 0)) {
            gp_errf(err, errlen, "rule \"%s\": \"%.*s\" is not a port or range of ports (1-65535)",
                    s, (int)(pe - ps), ps);
            return -1;
        }
        if (!dash)
            r->port_hi = r->port_lo;
        if (r->port_lo > r->port_hi) {
            gp_errf(err, errlen, "rule \"%s\": port range %u-%u runs backwards", s, r->port_lo,
                    r->port_hi);
            return -1;
        }
        r->has_ports = 1;
    }
    if (at) {
        char why[160];
        if (gp_cidr_parse(at + 1, &r->dst, why, sizeof why) != 0) {
            gp_errf(err, errlen, "rule \"%s\": %s", s, why);
            return -1;
        }
        r->has_prefix = 1;
    }
    return 0;
}

int gp_tun_rules_parse(const char *s, gp_tun_rule *r, size_t max, size_t *n, char *err,
                       size_t errlen) {
    size_t got = *n;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t k = strcspn(p, ",");
        size_t e = k;
        while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        char one[128];
        if (e == 0) {
            gp_errf(err, errlen, "an empty rule in \"%s\"", s);
            return -1;
        }
        if (e >= sizeof one) {
            gp_errf(err, errlen, "rule \"%.*s...\" is too long", 40, p);
            return -1;
        }
        if (got >= max) {
            gp_errf(err, errlen, "more than %zu rules", max);
            return -1;
        }
        memcpy(one, p, e);
        one[e] = '\0';
        if (gp_tun_rule_parse(one, &r[got], err, errlen) != 0)
            return -1;
        got++;
        if (p[k] != ',')
            break;
        p += k + 1;
    }
    *n = got;
    return 0;
}

char *gp_tun_rule_format(const gp_tun_rule *r, char *buf) {
    static const char *const names[] = {
        [GP_TUN_ANY] = "any", [GP_TUN_TCP] = "tcp", [GP_TUN_UDP] = "udp", [GP_TUN_ICMP] = "icmp"};
    const char *name = r->proto < sizeof names / sizeof *names ? names[r->proto] : "?";
    size_t o = (size_t)snprintf(buf, GP_TUN_RULE_STRLEN, "%s", name);
    if (r->has_ports && r->port_lo == r->port_hi)
        o += (size_t)snprintf(buf + o, GP_TUN_RULE_STRLEN - o, ":%u", r->port_lo);
    else if (r->has_ports)
        o += (size_t)snprintf(buf + o, GP_TUN_RULE_STRLEN - o, ":%u-%u", r->port_lo, r->port_hi);
    if (r->has_prefix) {
        char c[GP_CIDR_STRLEN];
        snprintf(buf + o, GP_TUN_RULE_STRLEN - o, "@%s", gp_cidr_format(&r->dst, c));
    }
    return buf;
}

static int rule_allows(const gp_tun_rule *r, const gp_ip_pkt *pkt) {
    switch (r->proto) {
    case GP_TUN_ANY:
        break;
    case GP_TUN_TCP:
        if (pkt->proto != GP_IPPROTO_TCP)
            return 0;
        break;
    case GP_TUN_UDP:
        if (pkt->proto != GP_IPPROTO_UDP)
            return 0;
        break;
    case GP_TUN_ICMP:
        /* Echo requests only (ping, traceroute's probes): what the hub side starts. Errors
         * about what the house sent come back as related (proto/flowtab.h); anything else the
         * hub side could send unasked — redirects, router advertisements — would reconfigure
         * the house's routing. A later fragment of an echo request has no type: it passes on
         * protocol and destination, as for ports. */
        if (!(pkt->version == 4 && pkt->proto == GP_IPPROTO_ICMP) &&
            !(pkt->version == 6 && pkt->proto == GP_IPPROTO_ICMPV6))
            return 0;
        if ((pkt->flags & GP_IPF_L4) && pkt->icmp_type != (pkt->version == 4 ? 8 : 128))
            return 0;
        break;
    default:
        return 0;
    }
    if (r->has_prefix && !gp_cidr_contains(&r->dst, &pkt->dst))
        return 0;
    if (r->has_ports) {
        if (pkt->flags & GP_IPF_L4)
            return pkt->dport >= r->port_lo && pkt->dport <= r->port_hi;
        /* no ports to match: only a later fragment may pass, on protocol and destination */
        return (pkt->flags & GP_IPF_FRAGMENT) && !(pkt->flags & GP_IPF_FIRST_FRAG);
    }
    return 1;
}

int gp_tun_rules_match(const gp_tun_rule *r, size_t n, const gp_ip_pkt *pkt) {
    for (size_t k = 0; k < n; k++)
        if (rule_allows(&r[k], pkt))
            return (int)k;
    return -1;
}

/* ---- MSS clamp ---- */

/* Replaces the 2 bytes at seg[o] with v and updates the checksum at seg[csum] for it
 * (RFC 1624 eq. 3: HC' = ~(~HC + ~m + m')). The sum's words are aligned to seg, so an odd o
 * changes two of them: both are taken, before and after. */
static void replace16(uint8_t *seg, size_t csum, size_t o, uint16_t v) {
    size_t a = o & ~(size_t)1, b = (o + 3) & ~(size_t)1;
    uint32_t before = gp_csum_add(0, seg + a, b - a);
    put16(seg + o, v);
    uint32_t after = gp_csum_add(0, seg + a, b - a);
    uint32_t s = (uint16_t)~be16(seg + csum) + (uint16_t)~before + after;
    put16(seg + csum, gp_csum_fold(s));
}

/* Walks the options of the TCP header tcp[0..n) (from byte 20): -1 malformed, else the
 * number of MSS options above max (clamped when clamp, the checksum at tcp[16] updated). */
static int mss_walk(uint8_t *tcp, size_t n, uint16_t max, int clamp) {
    int over = 0;
    size_t i = 20;
    while (i < n) {
        uint8_t kind = tcp[i];
        if (kind == 0) /* end of option list */
            break;
        if (kind == 1) { /* no operation */
            i++;
            continue;
        }
        if (i + 1 >= n || tcp[i + 1] < 2 || tcp[i + 1] > n - i)
            return -1;
        if (kind == 2) {
            if (tcp[i + 1] != 4)
                return -1;
            if (be16(tcp + i + 2) > max) {
                over++;
                if (clamp)
                    replace16(tcp, 16, i + 2, max);
            }
        }
        i += tcp[i + 1];
    }
    return over;
}

int gp_tcp_mss_clamp(uint8_t *p, size_t n, const gp_ip_pkt *pkt, uint16_t mss_max) {
    if (!pkt_fits(p, n, pkt) || pkt->proto != GP_IPPROTO_TCP || !(pkt->flags & GP_IPF_L4))
        return 0;
    size_t off = pkt->l4_off;
    if (n - off < 20)
        return 0;
    uint8_t *tcp = p + off;
    if (!(tcp[13] & 0x02)) /* the packet's own SYN bit, not pkt's word for it */
        return 0;
    size_t doff = (size_t)(tcp[12] >> 4) * 4;
    if (doff < 20 || doff > n - off)
        return -1;
    int over = mss_walk(tcp, doff, mss_max, 0);
    if (over <= 0)
        return over;
    mss_walk(tcp, doff, mss_max, 1);
    return 1;
}

/* ---- ICMP too big ---- */

static const char *const tb_names[] = {
    [GP_TB_BUILT] = "built",
    [GP_TB_ICMP_ERROR] = "icmp_error",
    [GP_TB_FRAGMENT] = "fragment",
    [GP_TB_BAD_SOURCE] = "bad_source",
    [GP_TB_MULTICAST_DEST] = "multicast_dest",
    [GP_TB_NOT_TOO_BIG] = "not_too_big",
    [GP_TB_DF_CLEAR] = "df_clear",
    [GP_TB_INVALID] = "invalid",
};
_Static_assert(sizeof tb_names / sizeof *tb_names == GP_TB_COUNT, "a name per result");

const char *gp_icmp_tb_name(gp_icmp_tb r) {
    if ((unsigned)r >= GP_TB_COUNT)
        return "unknown";
    return tb_names[r];
}

/* No single host sent it: an error to it would go nowhere or to many (RFC 1812 4.3.2.7,
 * RFC 4443 2.4 e.3). */
static int no_single_host(const gp_ip_addr *a) {
    if (a->family == 4)
        return a->a[0] == 0 || a->a[0] == 127 || a->a[0] >= 224;
    static const uint8_t zero[16], one[16] = {[15] = 1};
    return v6_multicast(a) || memcmp(a->a, zero, 16) == 0 || memcmp(a->a, one, 16) == 0;
}

gp_icmp_tb gp_icmp_too_big(const uint8_t *p, size_t n, const gp_ip_pkt *pkt, const gp_ip_addr *from,
                           uint32_t mtu, uint8_t *out, size_t cap, size_t *out_len) {
    *out_len = 0;
    if (!pkt_fits(p, n, pkt) || !from || from->family != pkt->version || !out)
        return GP_TB_INVALID;
    int v4 = pkt->version == 4;
    if (mtu < (v4 ? 68u : 1280u) || mtu > 65535)
        return GP_TB_INVALID;
    if ((pkt->flags & GP_IPF_FRAGMENT) && !(pkt->flags & GP_IPF_FIRST_FRAG))
        return GP_TB_FRAGMENT;
    if (pkt->flags & GP_IPF_ICMP_ERROR)
        return GP_TB_ICMP_ERROR;
    if (no_single_host(&pkt->src))
        return GP_TB_BAD_SOURCE;
    if (v4 && (v4_multicast(&pkt->dst) || v4_limited_broadcast(&pkt->dst)))
        return GP_TB_MULTICAST_DEST;
    if (n <= mtu)
        return GP_TB_NOT_TOO_BIG;
    if (v4 && !(pkt->flags & GP_IPF_DF))
        return GP_TB_DF_CLEAR;

    size_t hdrs = v4 ? 20 + 8 : 40 + 8, limit = v4 ? GP_ICMP_TB_V4_MAX : GP_ICMP_TB_V6_MAX;
    if (cap < limit)
        limit = cap;
    /* RFC 792/1812: the IP header and at least 8 bytes after it (the ports); RFC 4443: as
     * much as fits the minimum MTU, its header and 8 bytes at the least here */
    size_t need = v4 ? pkt->hdr_len + 8 : 40 + 8;
    if (need > n)
        need = n;
    if (limit < hdrs + need)
        return GP_TB_INVALID;
    size_t quote = n < limit - hdrs ? n : limit - hdrs, total = hdrs + quote;

    uint8_t *icmp;
    if (v4) {
        uint8_t *ip = out;
        memset(ip, 0, 20);
        ip[0] = 0x45;
        put16(ip + 2, (uint32_t)total);
        put16(ip + 6, 0x4000); /* DF: an atomic datagram, ID 0 is fine (RFC 6864) */
        ip[8] = GP_ICMP_TB_HOP_LIMIT;
        ip[9] = GP_IPPROTO_ICMP;
        memcpy(ip + 12, from->a, 4);
        memcpy(ip + 16, pkt->src.a, 4);
        put16(ip + 10, gp_csum_fold(gp_csum_add(0, ip, 20)));
        icmp = out + 20;
        icmp[0] = 3; /* destination unreachable */
        icmp[1] = 4; /* fragmentation needed and DF set */
        put16(icmp + 4, 0);
        put16(icmp + 6, mtu); /* next-hop MTU (RFC 1191) */
    } else {
        uint8_t *ip = out;
        memset(ip, 0, 40);
        ip[0] = 0x60;
        put16(ip + 4, (uint32_t)(8 + quote));
        ip[6] = GP_IPPROTO_ICMPV6;
        ip[7] = GP_ICMP_TB_HOP_LIMIT;
        memcpy(ip + 8, from->a, 16);
        memcpy(ip + 24, pkt->src.a, 16);
        icmp = out + 40;
        icmp[0] = 2; /* packet too big */
        icmp[1] = 0;
        put32(icmp + 4, mtu);
    }
    icmp[2] = icmp[3] = 0;
    memcpy(icmp + 8, p, quote);
    uint32_t s = v4 ? 0 : gp_csum_pseudo(from, &pkt->src, GP_IPPROTO_ICMPV6, (uint32_t)(8 + quote));
    put16(icmp + 2, gp_csum_fold(gp_csum_add(s, icmp, 8 + quote)));
    *out_len = total;
    return GP_TB_BUILT;
}
