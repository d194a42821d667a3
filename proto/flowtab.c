/* flowtab.c — the house's flow table (flowtab.h, proto/TUN.md "Replies (flow table)"). Pure.
 *
 * Layout: flows live in one array of `cap` slots, free ones on a free list; a slot is found by
 * its key through a chained hash table (bucket heads, chains through the slots, SipHash-2-4 of
 * the key under the caller's secret). Each flow is also on the list of its timeout class, most
 * recently used first: with the time never going backwards a list is ordered by last use, so
 * its tail is the first of its class to expire, and the least recently used flow of the table
 * is the oldest of the classes' tails. Later fragments need the flows of an address pair: the
 * pairs (family, protocol, both addresses) have their own slots and hash table, each with the
 * number of flows that use it and the latest deadline one of them reached. Indexes are 32-bit,
 * NIL for none. */
#include "flowtab.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(GP_FLOWTAB_KEY_LEN == crypto_shorthash_KEYBYTES, "SipHash-2-4's key");
_Static_assert(GP_FLOWTAB_MAX_CAPACITY < UINT32_MAX / 2, "slot indexes and bucket counts fit");

#define NIL UINT32_MAX

/* A flow's key, house side first: [0] family, [1] protocol, [2..4) the house's port or the echo
 * id, [4..6) the hub's port or the echo request's type, [6..22) the house's address, [22..38)
 * the hub's. An address pair's key: the same without the ports. */
enum { FK_LEN = 38, PK_LEN = 34 };

/* Timeout classes: one LRU list each. */
enum { C_TCP_NEW, C_TCP, C_TCP_CLOSE, C_UDP, C_UDP_REPLIED, C_ICMP, C_OTHER, NCLS };
static const uint32_t class_ms[NCLS] = {
    [C_TCP_NEW] = GP_FLOWTAB_TCP_NEW_MS,
    [C_TCP] = GP_FLOWTAB_TCP_MS,
    [C_TCP_CLOSE] = GP_FLOWTAB_TCP_CLOSE_MS,
    [C_UDP] = GP_FLOWTAB_UDP_MS,
    [C_UDP_REPLIED] = GP_FLOWTAB_UDP_REPLIED_MS,
    [C_ICMP] = GP_FLOWTAB_ICMP_MS,
    [C_OTHER] = GP_FLOWTAB_OTHER_MS,
};

/* flow.st */
enum { ST_REPLIED = 1, ST_FIN_OUT = 2, ST_FIN_IN = 4, ST_RST = 8 };

/* TCP flags */
enum { TH_FIN = 0x01, TH_SYN = 0x02, TH_RST = 0x04, TH_ACK = 0x10 };

typedef struct flow {
    uint8_t k[FK_LEN];
    uint8_t cls, st;
    uint32_t hnext;      /* the bucket's chain; the free list's when unused */
    uint32_t prev, next; /* the class's list, head the most recently used */
    uint32_t pair;
    uint32_t bucket;
    uint64_t last; /* ms */
} flow;

typedef struct pair {
    uint8_t k[PK_LEN];
    uint32_t hnext; /* the bucket's chain; the free list's when unused */
    uint32_t refs;  /* flows of this pair; 0: the slot is free */
    uint32_t bucket;
    uint64_t until; /* the latest deadline one of its flows reached */
} pair;

struct gp_flowtab {
    uint8_t key[GP_FLOWTAB_KEY_LEN];
    uint32_t cap, mask; /* mask: buckets - 1 (a power of two, both tables) */
    uint32_t *fb, *pb;  /* bucket heads: flows, pairs */
    flow *f;
    pair *pr;
    uint32_t ffree, pfree;
    uint32_t head[NCLS], tail[NCLS];
    gp_flowtab_stats st;
};

/* ---- the table ---- */

gp_flowtab *gp_flowtab_new(size_t capacity, const uint8_t *key) {
    if (!key || capacity > GP_FLOWTAB_MAX_CAPACITY)
        return NULL;
    if (capacity == 0)
        capacity = GP_FLOWTAB_DEFAULT_CAPACITY;
    uint32_t nb = 16;
    while (nb < capacity)
        nb <<= 1;
    gp_flowtab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->fb = malloc(nb * sizeof *t->fb);
    t->pb = malloc(nb * sizeof *t->pb);
    t->f = calloc(capacity, sizeof *t->f);
    t->pr = calloc(capacity, sizeof *t->pr);
    if (!t->fb || !t->pb || !t->f || !t->pr) {
        gp_flowtab_free(t);
        return NULL;
    }
    memcpy(t->key, key, GP_FLOWTAB_KEY_LEN);
    t->cap = (uint32_t)capacity;
    t->mask = nb - 1;
    for (uint32_t b = 0; b < nb; b++)
        t->fb[b] = t->pb[b] = NIL;
    for (uint32_t i = 0; i < t->cap; i++) {
        t->f[i].hnext = i + 1 < t->cap ? i + 1 : NIL;
        t->pr[i].hnext = i + 1 < t->cap ? i + 1 : NIL;
    }
    t->ffree = t->pfree = 0;
    for (int c = 0; c < NCLS; c++)
        t->head[c] = t->tail[c] = NIL;
    return t;
}

void gp_flowtab_free(gp_flowtab *t) {
    if (!t)
        return;
    sodium_memzero(t->key, sizeof t->key);
    free(t->fb);
    free(t->pb);
    free(t->f);
    free(t->pr);
    free(t);
}

size_t gp_flowtab_capacity(const gp_flowtab *t) {
    return t->cap;
}

void gp_flowtab_get_stats(const gp_flowtab *t, gp_flowtab_stats *out) {
    *out = t->st;
}

static uint32_t bucket_of(const gp_flowtab *t, const uint8_t *k, size_t len) {
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, k, len, t->key);
    uint32_t v = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    return v & t->mask;
}

/* Times past GP_FLOWTAB_TIME_MAX are taken as it: a deadline never overflows. */
static uint64_t clock_of(uint64_t now) {
    return now > GP_FLOWTAB_TIME_MAX ? GP_FLOWTAB_TIME_MAX : now;
}

static uint64_t deadline(const flow *f) {
    return f->last + class_ms[f->cls];
}

static int expired(const flow *f, uint64_t now) {
    return now >= deadline(f);
}

/* The flow of key k (in bucket b), or NIL. */
static uint32_t flow_find(const gp_flowtab *t, const uint8_t *k, uint32_t b) {
    for (uint32_t i = t->fb[b]; i != NIL; i = t->f[i].hnext)
        if (memcmp(t->f[i].k, k, FK_LEN) == 0)
            return i;
    return NIL;
}

static uint32_t pair_find(const gp_flowtab *t, const uint8_t *k, uint32_t b) {
    for (uint32_t i = t->pb[b]; i != NIL; i = t->pr[i].hnext)
        if (memcmp(t->pr[i].k, k, PK_LEN) == 0)
            return i;
    return NIL;
}

/* A flow key's address pair: the key without its ports. */
static void pair_key(const uint8_t *fk, uint8_t *pk) {
    pk[0] = fk[0];
    pk[1] = fk[1];
    memcpy(pk + 2, fk + 6, 32);
}

static void lru_unlink(gp_flowtab *t, uint32_t i) {
    flow *f = &t->f[i];
    if (f->prev != NIL)
        t->f[f->prev].next = f->next;
    else
        t->head[f->cls] = f->next;
    if (f->next != NIL)
        t->f[f->next].prev = f->prev;
    else
        t->tail[f->cls] = f->prev;
    f->prev = f->next = NIL;
}

static void lru_push(gp_flowtab *t, uint32_t i) {
    flow *f = &t->f[i];
    f->prev = NIL;
    f->next = t->head[f->cls];
    if (f->next != NIL)
        t->f[f->next].prev = i;
    else
        t->tail[f->cls] = i;
    t->head[f->cls] = i;
}

static void pair_unref(gp_flowtab *t, uint32_t i) {
    pair *p = &t->pr[i];
    if (--p->refs)
        return;
    uint32_t *link = &t->pb[p->bucket];
    while (*link != i)
        link = &t->pr[*link].hnext;
    *link = p->hnext;
    p->hnext = t->pfree;
    t->pfree = i;
}

static void flow_remove(gp_flowtab *t, uint32_t i) {
    flow *f = &t->f[i];
    uint32_t *link = &t->fb[f->bucket];
    while (*link != i)
        link = &t->f[*link].hnext;
    *link = f->hnext;
    lru_unlink(t, i);
    pair_unref(t, f->pair);
    f->hnext = t->ffree;
    t->ffree = i;
    t->st.flows--;
}

/* The class a flow's protocol and state put it in. */
static uint8_t class_of(const flow *f) {
    switch (f->k[1]) {
    case GP_IPPROTO_TCP:
        if ((f->st & ST_RST) || (f->st & (ST_FIN_OUT | ST_FIN_IN)) == (ST_FIN_OUT | ST_FIN_IN))
            return C_TCP_CLOSE;
        return (f->st & ST_REPLIED) ? C_TCP : C_TCP_NEW;
    case GP_IPPROTO_UDP:
        return (f->st & ST_REPLIED) ? C_UDP_REPLIED : C_UDP;
    case GP_IPPROTO_ICMP:
        return f->k[0] == 4 ? C_ICMP : C_OTHER;
    case GP_IPPROTO_ICMPV6:
        return f->k[0] == 6 ? C_ICMP : C_OTHER;
    default:
        return C_OTHER;
    }
}

/* Used now: its class from its state, to the head of that list, its pair's deadline. */
static void flow_touch(gp_flowtab *t, uint32_t i, uint64_t now) {
    flow *f = &t->f[i];
    lru_unlink(t, i);
    f->cls = class_of(f);
    f->last = now;
    lru_push(t, i);
    uint64_t d = deadline(f);
    if (t->pr[f->pair].until < d)
        t->pr[f->pair].until = d;
}

size_t gp_flowtab_expire(gp_flowtab *t, uint64_t now_ms, size_t budget) {
    size_t done = 0;
    now_ms = clock_of(now_ms);
    for (int c = 0; c < NCLS && done < budget; c++) {
        while (done < budget && t->tail[c] != NIL && expired(&t->f[t->tail[c]], now_ms)) {
            flow_remove(t, t->tail[c]);
            t->st.expired++;
            done++;
        }
    }
    return done;
}

/* A free slot for a new flow: one that was free, else an expired flow's, else the least
 * recently used one's (the oldest of the classes' tails; the lower class on a tie). */
static uint32_t flow_slot(gp_flowtab *t, uint64_t now) {
    if (t->ffree == NIL && gp_flowtab_expire(t, now, 1) == 0) {
        uint32_t lru = NIL;
        for (int c = 0; c < NCLS; c++) {
            uint32_t i = t->tail[c];
            if (i != NIL && (lru == NIL || t->f[i].last < t->f[lru].last))
                lru = i;
        }
        flow_remove(t, lru); /* full: cap >= 1 flows are on the lists */
        t->st.evicted++;
    }
    uint32_t i = t->ffree;
    t->ffree = t->f[i].hnext;
    return i;
}

/* Records a new flow of key k (bucket b, not in the table). */
static uint32_t flow_add(gp_flowtab *t, const uint8_t *k, uint32_t b, uint64_t now) {
    uint32_t i = flow_slot(t, now);
    flow *f = &t->f[i];
    memcpy(f->k, k, FK_LEN);
    f->st = 0;
    f->bucket = b;
    f->hnext = t->fb[b];
    t->fb[b] = i;

    uint8_t pk[PK_LEN];
    pair_key(k, pk);
    uint32_t pbk = bucket_of(t, pk, PK_LEN);
    uint32_t pi = pair_find(t, pk, pbk);
    if (pi == NIL) { /* there are never more pairs than flows: a slot is free */
        pi = t->pfree;
        pair *p = &t->pr[pi];
        t->pfree = p->hnext;
        memcpy(p->k, pk, PK_LEN);
        p->refs = 0;
        p->until = 0;
        p->bucket = pbk;
        p->hnext = t->pb[pbk];
        t->pb[pbk] = pi;
    }
    t->pr[pi].refs++;
    f->pair = pi;

    f->cls = class_of(f);
    f->last = now;
    lru_push(t, i);
    t->pr[pi].until = deadline(f) > t->pr[pi].until ? deadline(f) : t->pr[pi].until;
    t->st.flows++;
    t->st.created++;
    return i;
}

/* ---- packets ---- */

static uint16_t be16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* pkt could describe p[0..n): what is read below is within it. */
static int pkt_fits(const gp_ip_pkt *pkt, const uint8_t *p, size_t n) {
    if (!pkt || !p || (pkt->version != 4 && pkt->version != 6))
        return 0;
    if (pkt->len != n || n < (pkt->version == 4 ? 20u : 40u) || (p[0] >> 4) != pkt->version ||
        pkt->src.family != pkt->version || pkt->dst.family != pkt->version)
        return 0;
    /* the L4 header's first 8 bytes: ports, ICMP type, code and echo id */
    return !(pkt->flags & GP_IPF_L4) || (pkt->l4_off <= n && n - pkt->l4_off >= 8);
}

static int is_icmp(uint8_t version, uint8_t proto) {
    return (version == 4 && proto == GP_IPPROTO_ICMP) ||
           (version == 6 && proto == GP_IPPROTO_ICMPV6);
}

static int later_fragment(const gp_ip_pkt *pkt) {
    return (pkt->flags & GP_IPF_FRAGMENT) && !(pkt->flags & GP_IPF_FIRST_FRAG);
}

/* The key's family, protocol and addresses (house, hub: each 4 or 16 bytes). */
static void key_head(uint8_t *k, uint8_t version, uint8_t proto, const uint8_t *house,
                     const uint8_t *hub) {
    size_t al = version == 4 ? 4 : 16;
    memset(k, 0, FK_LEN);
    k[0] = version;
    k[1] = proto;
    memcpy(k + 6, house, al);
    memcpy(k + 22, hub, al);
}

/* The key of the flow pkt belongs to: out, pkt's source is the house's; in, its destination.
 * 1, or 0 when the packet is of no flow (see gp_flowtab_out and _in). */
static int pkt_key(const gp_ip_pkt *pkt, const uint8_t *p, int in, uint8_t *k) {
    const gp_ip_addr *house = in ? &pkt->dst : &pkt->src, *hub = in ? &pkt->src : &pkt->dst;
    uint8_t v = pkt->version, proto = pkt->proto;
    key_head(k, v, proto, house->a, hub->a);
    if (proto == GP_IPPROTO_TCP || proto == GP_IPPROTO_UDP) {
        if (!(pkt->flags & GP_IPF_L4))
            return 0;
        put16(k + 2, in ? pkt->dport : pkt->sport);
        put16(k + 4, in ? pkt->sport : pkt->dport);
    } else if (is_icmp(v, proto)) {
        if (!(pkt->flags & GP_IPF_L4))
            return 0;
        uint8_t request = v == 4 ? 8 : 128, reply = v == 4 ? 0 : 129;
        if (pkt->icmp_type != (in ? reply : request))
            return 0;
        memcpy(k + 2, p + pkt->l4_off + 4, 2); /* the echo id */
        k[5] = request;
    }
    return 1;
}

/* The key of the packet an ICMP error quotes, q[0..qn) (IP header and on, as the house sent
 * it: its source is the house), for an error of IP version v. 1, or 0: too short, not IP of
 * the same version, a TCP, UDP or ICMP packet without its first 8 bytes of L4 header or not
 * the first fragment, an ICMP message other than an echo request. Reads nothing past qn. */
static int quote_key(const uint8_t *q, size_t qn, uint8_t v, uint8_t *k) {
    size_t off;
    uint8_t proto;
    uint32_t frag_off;
    if (v == 4) {
        if (qn < 20 || (q[0] >> 4) != 4)
            return 0;
        off = (size_t)(q[0] & 0x0f) * 4;
        if (off < 20 || off > qn)
            return 0;
        proto = q[9];
        frag_off = (uint32_t)(be16(q + 6) & 0x1fff) * 8;
        key_head(k, 4, proto, q + 12, q + 16);
    } else {
        if (qn < 40 || (q[0] >> 4) != 6)
            return 0;
        proto = q[6];
        off = 40;
        frag_off = 0;
        int count = 0;
        while (proto == GP_IPPROTO_HOPOPTS || proto == GP_IPPROTO_ROUTING ||
               proto == GP_IPPROTO_FRAGMENT || proto == GP_IPPROTO_DSTOPTS) {
            if (++count > GP_IP_EXT_MAX || qn - off < 8)
                return 0;
            const uint8_t *h = q + off;
            if (proto == GP_IPPROTO_FRAGMENT) {
                frag_off = be16(h + 2) & 0xfff8u;
                proto = h[0];
                off += 8;
                if (frag_off)
                    break; /* the rest of the chain is in the first fragment */
                continue;
            }
            size_t hl = ((size_t)h[1] + 1) * 8;
            if (hl > qn - off)
                return 0;
            proto = h[0];
            off += hl;
        }
        key_head(k, 6, proto, q + 8, q + 24);
    }
    const uint8_t *l4 = q + off;
    size_t l4n = qn - off;
    if (proto == GP_IPPROTO_TCP || proto == GP_IPPROTO_UDP) {
        if (frag_off || l4n < 8)
            return 0;
        memcpy(k + 2, l4, 4); /* both ports, the house's first */
    } else if (is_icmp(v, proto)) {
        if (frag_off || l4n < 8 || l4[0] != (v == 4 ? 8 : 128))
            return 0;
        memcpy(k + 2, l4 + 4, 2);
        k[5] = l4[0];
    }
    return 1;
}

/* The ICMP errors that may be related to a flow. */
static int related_type(uint8_t v, uint8_t type) {
    if (v == 4) /* destination unreachable (fragmentation needed: code 4), time exceeded,
                   parameter problem; not source quench or redirect */
        return type == 3 || type == 11 || type == 12;
    /* destination unreachable, packet too big, time exceeded, parameter problem */
    return type >= 1 && type <= 4;
}

int gp_flowtab_out(gp_flowtab *t, const gp_ip_pkt *pkt, const uint8_t *p, size_t n,
                   uint64_t now_ms) {
    uint8_t k[FK_LEN];
    if (!t || !pkt_fits(pkt, p, n) || later_fragment(pkt) || !pkt_key(pkt, p, 0, k))
        return 0;
    now_ms = clock_of(now_ms);
    int tcp = pkt->proto == GP_IPPROTO_TCP;
    uint8_t fl = tcp ? pkt->tcp_flags : 0;
    uint32_t b = bucket_of(t, k, FK_LEN);
    uint32_t i = flow_find(t, k, b);
    if (i != NIL && expired(&t->f[i], now_ms)) {
        flow_remove(t, i);
        t->st.expired++;
        i = NIL;
    }
    if (i == NIL) {
        if ((fl & TH_RST) && !(fl & TH_SYN))
            return 0; /* a reset opens nothing */
        i = flow_add(t, k, b, now_ms);
    } else if ((fl & (TH_SYN | TH_ACK)) == TH_SYN && t->f[i].cls == C_TCP_CLOSE) {
        t->f[i].st = 0; /* the same ports again: a new connection */
    }
    if (fl & TH_RST)
        t->f[i].st |= ST_RST;
    if (fl & TH_FIN)
        t->f[i].st |= ST_FIN_OUT;
    flow_touch(t, i, now_ms);
    return 1;
}

/* An inbound ICMP error (pkt, p[0..n): fits, L4, not a fragment): 1 when it quotes a packet
 * of a live flow, sent from the address the error goes to. */
static int related(gp_flowtab *t, const gp_ip_pkt *pkt, const uint8_t *p, size_t n, uint64_t now) {
    uint8_t k[FK_LEN];
    size_t at = (size_t)pkt->l4_off + 8; /* pkt_fits: <= n */
    if (!quote_key(p + at, n - at, pkt->version, k))
        return 0;
    size_t al = pkt->version == 4 ? 4 : 16;
    if (memcmp(k + 6, pkt->dst.a, al) != 0)
        return 0; /* an error about a packet some other host sent */
    uint32_t b = bucket_of(t, k, FK_LEN);
    uint32_t i = flow_find(t, k, b);
    if (i == NIL)
        return 0;
    if (expired(&t->f[i], now)) {
        flow_remove(t, i);
        t->st.expired++;
        return 0;
    }
    t->st.in_related++;
    return 1;
}

int gp_flowtab_in(gp_flowtab *t, const gp_ip_pkt *pkt, const uint8_t *p, size_t n,
                  uint64_t now_ms) {
    if (!t || !pkt_fits(pkt, p, n))
        return 0;
    now_ms = clock_of(now_ms);
    uint8_t k[FK_LEN];
    if (later_fragment(pkt)) {
        uint8_t pk[PK_LEN];
        key_head(k, pkt->version, pkt->proto, pkt->dst.a, pkt->src.a);
        pair_key(k, pk);
        uint32_t pi = pair_find(t, pk, bucket_of(t, pk, PK_LEN));
        if (pi == NIL || now_ms >= t->pr[pi].until)
            return 0;
        t->st.in_allowed++;
        t->st.in_frag++;
        return 1;
    }
    if (is_icmp(pkt->version, pkt->proto) && (pkt->flags & GP_IPF_L4) &&
        (pkt->flags & GP_IPF_ICMP_ERROR))
        return !(pkt->flags & GP_IPF_FRAGMENT) && related_type(pkt->version, pkt->icmp_type) &&
               related(t, pkt, p, n, now_ms);
    if (!pkt_key(pkt, p, 1, k))
        return 0;
    uint32_t b = bucket_of(t, k, FK_LEN);
    uint32_t i = flow_find(t, k, b);
    if (i == NIL)
        return 0;
    flow *f = &t->f[i];
    if (expired(f, now_ms)) {
        flow_remove(t, i);
        t->st.expired++;
        return 0;
    }
    f->st |= ST_REPLIED;
    if (pkt->proto == GP_IPPROTO_TCP) {
        if (pkt->tcp_flags & TH_RST)
            f->st |= ST_RST;
        if (pkt->tcp_flags & TH_FIN)
            f->st |= ST_FIN_IN;
    }
    flow_touch(t, i, now_ms);
    t->st.in_allowed++;
    return 1;
}

/* ---- invariants ---- */

int gp_flowtab_check(const gp_flowtab *t) {
    uint64_t on_lists = 0, refs = 0;
    for (int c = 0; c < NCLS; c++) {
        uint32_t prev = NIL;
        for (uint32_t i = t->head[c]; i != NIL; prev = i, i = t->f[i].next) {
            const flow *f = &t->f[i];
            if (i >= t->cap || ++on_lists > t->cap)
                return 1; /* out of the array, or a cycle */
            if (f->prev != prev || f->cls != c || class_of(f) != c)
                return 2;
            if (prev != NIL && t->f[prev].last < f->last)
                return 3; /* not in the order of last use */
            if (f->bucket != bucket_of(t, f->k, FK_LEN) || flow_find(t, f->k, f->bucket) != i)
                return 4;
            uint8_t pk[PK_LEN];
            pair_key(f->k, pk);
            if (f->pair >= t->cap || t->pr[f->pair].refs == 0 ||
                memcmp(t->pr[f->pair].k, pk, PK_LEN) != 0 || t->pr[f->pair].until < deadline(f))
                return 5;
        }
        if (t->tail[c] != prev)
            return 6;
    }
    if (on_lists != t->st.flows || t->st.flows > t->cap ||
        t->st.flows != t->st.created - t->st.evicted - t->st.expired)
        return 7;
    uint64_t free_flows = 0, pairs = 0, free_pairs = 0;
    for (uint32_t i = t->ffree; i != NIL; i = t->f[i].hnext)
        if (i >= t->cap || ++free_flows > t->cap)
            return 8;
    for (uint32_t b = 0; b <= t->mask; b++) {
        for (uint32_t i = t->pb[b]; i != NIL; i = t->pr[i].hnext) {
            if (i >= t->cap || ++pairs > t->cap || t->pr[i].refs == 0 || t->pr[i].bucket != b ||
                bucket_of(t, t->pr[i].k, PK_LEN) != b)
                return 9;
            refs += t->pr[i].refs;
        }
    }
    for (uint32_t i = t->pfree; i != NIL; i = t->pr[i].hnext)
        if (i >= t->cap || ++free_pairs > t->cap)
            return 10;
    if (free_flows + t->st.flows != t->cap || refs != t->st.flows || pairs > t->st.flows ||
        free_pairs + pairs != t->cap)
        return 11;
    return 0;
}
