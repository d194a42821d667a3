/* tunbook.c — the values of the L3 address book: pools, indexes, addresses, a house's allowed
 * routes as text and back (tunbook.h). Pure. */
#include "tunbook.h"

#include "gp.h"

#include <stdio.h>
#include <string.h>

static int cidr_eq(const gp_cidr *a, const gp_cidr *b) {
    return a->len == b->len && gp_ip_addr_eq(&a->addr, &b->addr);
}

/* The next comma-separated piece of s[*at..len), spaces around it trimmed, into p[cap]: 1, 0 at
 * the end, -1 when it does not fit (no prefix is that long). */
static int next_piece(const char *s, size_t len, size_t *at, char *p, size_t cap) {
    if (*at > len)
        return 0;
    size_t b = *at, e = b;
    while (e < len && s[e] != ',')
        e++;
    *at = e + 1;
    while (b < e && s[b] == ' ')
        b++;
    while (e > b && s[e - 1] == ' ')
        e--;
    if (e - b >= cap) {
        snprintf(p, cap, "%.*s", (int)(cap - 1), s + b);
        return -1;
    }
    memcpy(p, s + b, e - b);
    p[e - b] = '\0';
    return 1;
}

/* Appends c to r[0..*n) unless it is there: 1 added, 0 a duplicate, -1 full. */
static int add_one(gp_cidr *r, size_t *n, size_t max, const gp_cidr *c) {
    for (size_t i = 0; i < *n; i++)
        if (cidr_eq(&r[i], c))
            return 0;
    if (*n >= max)
        return -1;
    r[(*n)++] = *c;
    return 1;
}

int gp_tun_routes_add(gp_cidr *r, size_t *n, const char *s, char *err, size_t errlen) {
    size_t len = strlen(s), at = 0;
    char p[GP_CIDR_STRLEN + 8];
    int k;
    while ((k = next_piece(s, len, &at, p, sizeof p)) != 0) {
        gp_cidr c;
        if (k < 0) {
            gp_errf(err, errlen, "\"%s...\" is not a CIDR prefix", p);
            return -1;
        }
        if (!p[0]) {
            gp_errf(err, errlen, "an empty prefix in \"%s\"", s);
            return -1;
        }
        if (gp_cidr_parse(p, &c, err, errlen) != 0)
            return -1;
        if (add_one(r, n, GP_TUN_ROUTES_MAX, &c) < 0) {
            gp_errf(err, errlen, "more than %d routes", GP_TUN_ROUTES_MAX);
            return -1;
        }
    }
    return 0;
}

size_t gp_tun_routes_parse(const char *s, size_t len, gp_cidr *r, size_t max, size_t *skipped) {
    size_t n = 0, at = 0, bad = 0;
    char p[GP_CIDR_STRLEN + 8], err[8];
    int k;
    if (len == 0)
        at = 1; /* no field, or an empty one: no route (not one empty piece) */
    while ((k = next_piece(s, len, &at, p, sizeof p)) != 0) {
        gp_cidr c;
        if (k < 0 || gp_cidr_parse(p, &c, err, sizeof err) != 0 || add_one(r, &n, max, &c) < 0)
            bad++;
    }
    if (skipped)
        *skipped = bad;
    return n;
}

/* One pool's recorded text: 1 parsed into c, 0 absent or empty (the bridges run without that
 * family), -1 not a prefix of that family. */
static int pool_parse(const redisReply *v, int family, gp_cidr *c, char *err, size_t errlen) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0)
        return 0;
    char t[GP_CIDR_STRLEN + 8], why[160];
    if (v->len >= sizeof t || memchr(v->str, '\0', v->len)) {
        gp_errf(err, errlen, "the IPv%d pool recorded is not a prefix", family);
        return -1;
    }
    memcpy(t, v->str, v->len);
    t[v->len] = '\0';
    if (gp_cidr_parse(t, c, why, sizeof why) != 0) {
        gp_errf(err, errlen, "the IPv%d pool recorded does not parse: %s", family, why);
        return -1;
    }
    if (c->addr.family != family) {
        gp_errf(err, errlen, "the IPv%d pool recorded, %s, is of the other family", family, t);
        return -1;
    }
    return 1;
}

int gp_tun_pools_parse(gp_tun_pools *p, const redisReply *v4, const redisReply *v6, char *err,
                       size_t errlen) {
    memset(p, 0, sizeof *p);
    int absent = !(v4 && v4->type == REDIS_REPLY_STRING) && !(v6 && v6->type == REDIS_REPLY_STRING);
    int a = pool_parse(v4, 4, &p->p4, err, errlen);
    int b = a < 0 ? 0 : pool_parse(v6, 6, &p->p6, err, errlen);
    if (a < 0 || b < 0) {
        memset(p, 0, sizeof *p);
        return -1;
    }
    p->has4 = a;
    p->has6 = b;
    return absent ? 1 : 0;
}

int gp_tun_index_parse(const redisReply *v, uint64_t *idx) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 20)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i < v->len; i++) {
        unsigned d = (unsigned)((unsigned char)v->str[i] - '0');
        if (d > 9 || n > (UINT64_MAX - d) / 10)
            return 0;
        n = n * 10 + d;
    }
    *idx = n;
    return 1;
}

void gp_tun_pool_addrs(const gp_tun_pools *p, uint64_t idx, gp_ip_addr *a4, gp_ip_addr *a6) {
    memset(a4, 0, sizeof *a4);
    memset(a6, 0, sizeof *a6);
    if (p && p->has4 && gp_pool_addr(&p->p4, idx, a4) != 0)
        memset(a4, 0, sizeof *a4);
    if (p && p->has6 && gp_pool_addr(&p->p6, idx, a6) != 0)
        memset(a6, 0, sizeof *a6);
}

size_t gp_tun_claim_item(const gp_cidr *c, char *out) {
    size_t o = 0;
    out[o++] = c->addr.family == 6 ? '6' : '4';
    out[o++] = ':';
    for (unsigned i = 0; i < c->len; i++)
        out[o++] = (c->addr.a[i / 8] >> (7 - i % 8)) & 1 ? '1' : '0';
    out[o++] = '=';
    gp_cidr_format(c, out + o);
    return o + strlen(out + o);
}
