/* l3.c — the bridge's side of the L3 tunnel (l3.h, proto/TUN.md). I/O side.
 *
 * Packets, device -> house: parse (proto/ippkt.h), find the house by destination (its address,
 * or the longest granted route containing it), refuse what does not fit the tunnel with an ICMP
 * "too big" written back into the device, clamp a SYN's MSS, and hand the packet to the house's
 * transport as a datagram. House -> device: parse, the source must be the house's own address
 * or inside a route granted to it (no spoofing another house or the hub), the destination one
 * of the bridges' own addresses (the hub host: a house reaches neither other houses nor the
 * networks beyond the hub), clamp, write. Every drop is counted by reason. */
#include "l3.h"

#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_tun.h"
#include "adapters/uv_tun.h"
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_BUCKETS 1024u     /* house addresses by hash */
#define POOL_ROUTE_METRIC 4242 /* the pools' catch-all route: below every house's */

struct br_l3_house {
    br_conn *c;
    gp_ip_addr addr[2]; /* [0] IPv4, [1] IPv6 */
    int has[2];
    uint64_t index;
    gp_cidr routes[BR_L3_ROUTES_MAX];
    size_t nroutes;
    gp_rtnl_route installed[2 + BR_L3_ROUTES_MAX];
    size_t ninstalled;
    unsigned mtu;          /* the grant's */
    unsigned path_mtu;     /* the largest packet its session carries now, as last logged */
    br_l3_house *anext[2]; /* address table chains, per family */
    uint64_t pkts_in, pkts_out, bytes_in, bytes_out, drops;
};

/* A granted route in the forwarding table. */
typedef struct fwd_route {
    gp_cidr cidr;
    br_l3_house *h;
} fwd_route;

/* A grant waiting for Redis (the house's allowed routes, then its index). */
typedef struct pending {
    br_l3 *l3;
    br_conn *c; /* referenced */
    unsigned mtu;
    gp_cidr asked[BR_L3_ROUTES_MAX];
    size_t nasked;
    char allowed[GP_L3_LIST_MAX + 1];
} pending;

struct br_l3 {
    const br_env *env;
    br_l3_conf conf;
    gp_tun *tun;
    gp_rtnl nl;
    gp_ip_addr hub[2]; /* the bridges' own addresses: index 0 of each pool */
    uint64_t max_index;
    char pools_text[2 * GP_CIDR_STRLEN + 2]; /* for L3_GRANT's hub */
    int pools_bad;                           /* Redis holds other pools: refuse */
    br_script pools, alloc;
    char ktun[GP_KEY_MAX];
    br_l3_house *addr_tab[2][ADDR_BUCKETS];
    fwd_route *routes; /* granted routes, longest prefix first */
    size_t nroutes, routes_cap;
    uint8_t icmp[GP_ICMP_TB_V6_MAX];
    uint8_t pkt[GP_TUN_PKT_MAX]; /* the packet being forwarded (both ways: one loop) */
    br_l3_totals t;
};

static int fam(const gp_ip_addr *a) {
    return a->family == 6;
}

static unsigned addr_hash(const gp_ip_addr *a) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < (a->family == 4 ? 4 : 16); i++)
        h = (h ^ a->a[i]) * 16777619u;
    return h % ADDR_BUCKETS;
}

static void cidr_route(const gp_cidr *c, gp_rtnl_route *r) {
    memset(r, 0, sizeof *r);
    r->dst = c->addr;
    r->dst_len = c->len;
}

int br_l3_pools_parse(br_l3_conf *c, const char *s, char *err, size_t errlen) {
    gp_cidr v[3];
    size_t n = 0;
    char why[200];
    c->has[0] = c->has[1] = 0;
    if (gp_cidr_list_parse(s ? s : "", s ? strlen(s) : 0, v, 3, &n, why, sizeof why) != 0) {
        snprintf(err, errlen, "--tun-pool: %s", why);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int f = fam(&v[i].addr);
        char t[GP_CIDR_STRLEN];
        if (c->has[f]) {
            snprintf(err, errlen, "--tun-pool: more than one IPv%d pool", f ? 6 : 4);
            return -1;
        }
        if (gp_pool_size(&v[i]) < 2) {
            snprintf(err, errlen,
                     "--tun-pool %s: too small (the bridges' address and at least one house)",
                     gp_cidr_format(&v[i], t));
            return -1;
        }
        c->pool[f] = v[i];
        c->has[f] = 1;
    }
    if (!c->has[0] && !c->has[1]) {
        snprintf(err, errlen, "--tun needs --tun-pool CIDR (an IPv4 and/or an IPv6 pool)");
        return -1;
    }
    return 0;
}

/* ---- forwarding tables ---- */

static void addr_insert(br_l3 *l3, br_l3_house *h, int f) {
    unsigned b = addr_hash(&h->addr[f]);
    h->anext[f] = l3->addr_tab[f][b];
    l3->addr_tab[f][b] = h;
}

static void addr_remove(br_l3 *l3, br_l3_house *h, int f) {
    for (br_l3_house **pp = &l3->addr_tab[f][addr_hash(&h->addr[f])]; *pp; pp = &(*pp)->anext[f])
        if (*pp == h) {
            *pp = h->anext[f];
            return;
        }
}

static br_l3_house *addr_find(const br_l3 *l3, const gp_ip_addr *a) {
    int f = fam(a);
    for (br_l3_house *h = l3->addr_tab[f][addr_hash(a)]; h; h = h->anext[f])
        if (gp_ip_addr_eq(&h->addr[f], a))
            return h;
    return NULL;
}

static int routes_add(br_l3 *l3, const gp_cidr *c, br_l3_house *h) {
    if (gp_grow(&l3->routes, &l3->routes_cap, l3->nroutes + 1, 16, sizeof *l3->routes) != 0)
        return -1;
    size_t i = l3->nroutes;
    while (i > 0 && l3->routes[i - 1].cidr.len < c->len) { /* longest prefix first */
        l3->routes[i] = l3->routes[i - 1];
        i--;
    }
    l3->routes[i] = (fwd_route){*c, h};
    l3->nroutes++;
    return 0;
}

static void routes_remove(br_l3 *l3, const br_l3_house *h) {
    size_t o = 0;
    for (size_t i = 0; i < l3->nroutes; i++)
        if (l3->routes[i].h != h)
            l3->routes[o++] = l3->routes[i];
    l3->nroutes = o;
}

/* The house a packet to dst goes to: its own address, else the longest granted route. */
static br_l3_house *lookup(const br_l3 *l3, const gp_ip_addr *dst) {
    br_l3_house *h = addr_find(l3, dst);
    for (size_t i = 0; !h && i < l3->nroutes; i++)
        if (gp_cidr_contains(&l3->routes[i].cidr, dst))
            h = l3->routes[i].h;
    return h;
}

/* ---- packets ---- */

static uint16_t mss_for(unsigned mtu, int v6) {
    return (uint16_t)(mtu - (v6 ? 60 : 40));
}

/* The largest IP packet the house's tunnel carries now: the grant's MTU, or less when its
 * session found the UDP path narrower than that (rudp path MTU probing: proto/RUDP.md). A
 * change is logged once, with what to do about it. */
static unsigned path_mtu(br_l3_house *h) {
    size_t d = h->c->tp->dgram_max ? h->c->tp->dgram_max(h->c) : 0;
    unsigned mtu = d && d < h->mtu ? (unsigned)d : h->mtu;
    if (mtu != h->path_mtu) {
        if (mtu < h->mtu)
            br_log(BR_LOG_WARN, "tun_path_mtu",
                   "house=%s mtu=%u tunnel_mtu=%u reason=\"the UDP path to the house carries "
                   "less than the tunnel's MTU: larger packets get ICMP too big (a path MTU of "
                   "%u bytes over IPv4 would carry them)\"",
                   h->c->house, mtu, h->mtu, h->mtu + (unsigned)GP_RUDP_DGRAM_OVERHEAD(1) + 28);
        else if (h->path_mtu)
            br_log(BR_LOG_INFO, "tun_path_mtu", "house=%s mtu=%u", h->c->house, mtu);
        h->path_mtu = mtu;
    }
    return mtu;
}

/* A packet that does not fit the house's tunnel (mtu): "too big" back to its sender, from the
 * house's address as a router on the path would (the sender is usually this host: an ICMP
 * from one of its own addresses arriving on a device would be dropped as a martian). */
static void too_big(br_l3 *l3, const br_l3_house *h, const uint8_t *p, size_t n,
                    const gp_ip_pkt *pkt, unsigned mtu) {
    l3->t.too_big++;
    int f = pkt->version == 6;
    size_t len;
    if (gp_icmp_too_big(p, n, pkt, h->has[f] ? &h->addr[f] : &l3->hub[f], mtu, l3->icmp,
                        sizeof l3->icmp, &len) == GP_TB_BUILT)
        gp_tun_write(l3->tun, l3->icmp, len);
}

static void on_tun_packet(void *ud, const uint8_t *cp, size_t n) {
    br_l3 *l3 = ud;
    uint8_t *p = l3->pkt; /* a copy: the clamp writes */
    if (n > sizeof l3->pkt)
        return;
    memcpy(p, cp, n);
    gp_ip_pkt pkt;
    gp_ip_drop d = gp_ip_parse(p, n, &pkt);
    if (d != GP_IPD_OK) {
        l3->t.drops[d]++;
        return;
    }
    br_l3_house *h = lookup(l3, &pkt.dst);
    if (!h || !h->c->tp->send_dgram) {
        l3->t.no_route++; /* an address nobody holds here: the pools' catch-all route */
        return;
    }
    unsigned mtu = path_mtu(h);
    if (n > mtu) {
        too_big(l3, h, p, n, &pkt, mtu);
        h->drops++;
        return;
    }
    if (pkt.flags & GP_IPF_TCP_SYN)
        gp_tcp_mss_clamp(p, n, &pkt, mss_for(mtu, pkt.version == 6));
    int rc = h->c->tp->send_dgram(h->c, p, n);
    if (rc != 0) {
        if (rc == GP_ERR_TOO_LARGE)
            too_big(l3, h, p, n, &pkt, path_mtu(h));
        else
            l3->t.queue_full++;
        h->drops++;
        return;
    }
    h->pkts_out++;
    h->bytes_out += n;
    h->c->st_dirty = 1; /* its live state shows the tunnel's counters (stats.c, every second) */
    l3->t.pkts_out++;
    l3->t.bytes_out += n;
}

static void on_tun_error(void *ud, int err) {
    br_l3 *l3 = ud;
    br_log(BR_LOG_ERROR, "tun_read_failed", "dev=%s err=%s", l3->conf.dev, br_qs(strerror(-err)));
}

/* The source a house may send from: its own address, or inside one of its granted routes. */
static int source_ok(const br_l3_house *h, const gp_ip_addr *src) {
    int f = fam(src);
    if (h->has[f] && gp_ip_addr_eq(&h->addr[f], src))
        return 1;
    for (size_t i = 0; i < h->nroutes; i++)
        if (gp_cidr_contains(&h->routes[i], src))
            return 1;
    return 0;
}

void br_l3_dgram(br_l3 *l3, br_conn *c, const uint8_t *cp, size_t n) {
    br_l3_house *h = c->l3;
    if (!l3 || !h || !l3->tun)
        return; /* no grant: the house sends before its L3_GRANT, or without asking */
    uint8_t *buf = l3->pkt;
    if (n > sizeof l3->pkt)
        return;
    memcpy(buf, cp, n); /* the clamp writes; the datagram is the engine's */
    gp_ip_pkt pkt;
    gp_ip_drop d = gp_ip_parse(buf, n, &pkt);
    if (d != GP_IPD_OK) {
        l3->t.drops[d]++;
        h->drops++;
        return;
    }
    if (n > h->mtu) { /* the house's MTU is the grant's: a larger packet is not one of ours */
        l3->t.too_big++;
        h->drops++;
        return;
    }
    if (!source_ok(h, &pkt.src)) {
        l3->t.spoofed++;
        h->drops++;
        return;
    }
    int f = pkt.version == 6;
    if (!l3->conf.has[f] || !gp_ip_addr_eq(&pkt.dst, &l3->hub[f])) {
        l3->t.forbidden_dst++;
        h->drops++;
        return;
    }
    if (pkt.flags & GP_IPF_TCP_SYN)
        gp_tcp_mss_clamp(buf, n, &pkt, mss_for(h->mtu, f));
    if (gp_tun_write(l3->tun, buf, n) != 0) {
        l3->t.write_fail++;
        h->drops++;
        return;
    }
    h->pkts_in++;
    h->bytes_in += n;
    c->st_dirty = 1;
    l3->t.pkts_in++;
    l3->t.bytes_in += n;
}

/* ---- grants ---- */

static void grant_refuse(br_conn *c, uint16_t status, const char *error, const char *message) {
    gp_frame g;
    gp_frame_init(&g, GP_FRAME_L3_GRANT, 0, 0);
    g.u.l3_grant.status = status;
    g.u.l3_grant.error = gp_str_c(error);
    g.u.l3_grant.message = gp_str_c(message);
    br_conn_send(c, &g);
    br_log(BR_LOG_WARN, "tun_refused", "house=%s status=%u error=%s reason=%s", c->house, status,
           error, br_qs(message));
}

/* Whether c lies inside one of the pools (a house may not claim the tunnel's own space). */
static int in_pools(const br_l3 *l3, const gp_cidr *c) {
    int f = fam(&c->addr);
    return l3->conf.has[f] && (gp_cidr_contains(&l3->conf.pool[f], &c->addr) ||
                               gp_cidr_contains(c, &l3->conf.pool[f].addr));
}

static void append(char *buf, size_t cap, const char *s) {
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%s", l ? "," : "", s);
}

/* The last step of a grant: the index is known. */
void br_l3_grant(br_l3 *l3, br_conn *c, long long index, unsigned mtu, const gp_cidr *asked,
                 size_t nasked, const char *allowed_text) {
    if (index < 1 || (uint64_t)index > l3->max_index) {
        grant_refuse(c, 503, "pool_full", "no free address left in the tunnel's pools");
        return;
    }
    br_l3_house *h = calloc(1, sizeof *h);
    if (!h) {
        grant_refuse(c, 503, "unavailable", "out of memory");
        return;
    }
    h->c = c;
    h->index = (uint64_t)index;
    for (int f = 0; f < 2; f++)
        if (l3->conf.has[f] && gp_pool_addr(&l3->conf.pool[f], h->index, &h->addr[f]) == 0)
            h->has[f] = 1;
    /* The routes: those asked that the registry allows (inside an allowed prefix), none in
     * the pools; the rest named in the message. */
    gp_cidr allowed[BR_L3_ROUTES_MAX];
    size_t nallowed = 0;
    char why[200] = "", msg[1024] = "";
    if (gp_cidr_list_parse(allowed_text, strlen(allowed_text), allowed, BR_L3_ROUTES_MAX, &nallowed,
                           why, sizeof why) != 0) {
        nallowed = 0; /* the registry's field is bad: allow none, say so */
        snprintf(msg, sizeof msg, "the registry's tun_routes do not parse (%s): no route granted",
                 why);
    }
    for (size_t i = 0; i < nasked; i++) {
        const gp_cidr *a = &asked[i];
        int ok = !in_pools(l3, a) && lookup(l3, &a->addr) == NULL;
        int inside = 0;
        for (size_t j = 0; ok && !inside && j < nallowed; j++)
            inside = allowed[j].len <= a->len && gp_cidr_contains(&allowed[j], &a->addr) &&
                     fam(&allowed[j].addr) == fam(&a->addr);
        char t[GP_CIDR_STRLEN];
        gp_cidr_format(a, t);
        if (ok && inside) {
            h->routes[h->nroutes++] = *a;
        } else {
            char one[GP_CIDR_STRLEN + 64];
            snprintf(one, sizeof one, "route %s %s", t,
                     !ok ? "overlaps the pools or another house's" : "not allowed for this house");
            append(msg, sizeof msg, one);
        }
    }
    /* Routes into the device: the house's addresses, then its routes (replace: a house moving
     * from another bridge takes them over in one step). */
    char err[256];
    for (int f = 0; f < 2; f++)
        if (h->has[f]) {
            gp_rtnl_route *r = &h->installed[h->ninstalled];
            memset(r, 0, sizeof *r);
            r->dst = h->addr[f];
            r->dst_len = f ? 128 : 32;
            r->src = l3->hub[f];
            if (gp_rtnl_route_replace(&l3->nl, gp_tun_dev(l3->tun), r, err, sizeof err) == 0)
                h->ninstalled++;
            else
                br_log(BR_LOG_ERROR, "tun_route_failed", "house=%s reason=%s", c->house,
                       br_qs(err));
        }
    for (size_t i = 0; i < h->nroutes; i++) {
        gp_rtnl_route *r = &h->installed[h->ninstalled];
        cidr_route(&h->routes[i], r);
        if (gp_rtnl_route_replace(&l3->nl, gp_tun_dev(l3->tun), r, err, sizeof err) == 0)
            h->ninstalled++;
        else
            br_log(BR_LOG_ERROR, "tun_route_failed", "house=%s reason=%s", c->house, br_qs(err));
    }
    /* The session carries one packet of the tunnel's MTU in one datagram. */
    h->mtu = mtu;
    if (c->tp->set_mtu(c, h->mtu + GP_RUDP_DGRAM_OVERHEAD(1)) != 0) {
        br_log(BR_LOG_WARN, "tun_mtu_failed", "house=%s mtu=%u", c->house, h->mtu);
    }
    for (int f = 0; f < 2; f++)
        if (h->has[f])
            addr_insert(l3, h, f);
    for (size_t i = 0; i < h->nroutes; i++)
        routes_add(l3, &h->routes[i], h);
    c->l3 = h;
    l3->t.houses++;

    char addrs[2 * GP_IP_ADDR_STRLEN + 2] = "", routes[GP_L3_LIST_MAX + 1] = "";
    for (int f = 0; f < 2; f++)
        if (h->has[f]) {
            char t[GP_IP_ADDR_STRLEN];
            append(addrs, sizeof addrs, gp_ip_addr_format(&h->addr[f], t));
        }
    gp_cidr_list_format(h->routes, h->nroutes, ",", routes, sizeof routes); /* fits: 64 max */
    gp_frame g;
    gp_frame_init(&g, GP_FRAME_L3_GRANT, 0, 0);
    g.u.l3_grant.status = 200;
    g.u.l3_grant.error = gp_str_c("");
    g.u.l3_grant.message = gp_str_c(msg);
    g.u.l3_grant.addrs = gp_str_c(addrs);
    g.u.l3_grant.hub = gp_str_c(l3->pools_text);
    g.u.l3_grant.routes = gp_str_c(routes);
    g.u.l3_grant.mtu = (uint16_t)h->mtu;
    br_conn_send(c, &g);
    br_log(BR_LOG_INFO, "tun_up", "house=%s addr=%s routes=%s mtu=%u%s%s", c->house, addrs,
           *routes ? routes : "-", h->mtu, *msg ? " note=" : "", *msg ? br_qs(msg) : "");
}

static void on_alloc(redisReply *r, void *ud) {
    pending *pd = ud;
    br_conn *c = pd->c;
    if (br_conn_alive(c) && c->state == BR_CS_LIVE && !c->l3) {
        if (!r || r->type != REDIS_REPLY_INTEGER)
            grant_refuse(c, 503, "unavailable", "Redis did not answer the address allocation");
        else
            br_l3_grant(pd->l3, c, r->integer, pd->mtu, pd->asked, pd->nasked, pd->allowed);
    }
    br_conn_unref(c);
    free(pd);
}

static void on_routes(redisReply *r, void *ud) {
    pending *pd = ud;
    br_l3 *l3 = pd->l3;
    br_conn *c = pd->c;
    if (!br_conn_alive(c) || c->state != BR_CS_LIVE) {
        br_conn_unref(c);
        free(pd);
        return;
    }
    if (r && r->type == REDIS_REPLY_STRING && r->len <= GP_L3_LIST_MAX) {
        memcpy(pd->allowed, r->str, r->len);
        pd->allowed[r->len] = '\0';
    }
    br_args a;
    br_args_init(&a);
    br_args_str(&a, l3->ktun);
    br_args_str(&a, c->house);
    br_args_u64(&a, l3->max_index);
    if (br_db_eval(l3->env->db, &l3->alloc, on_alloc, pd, 1, &a) != 0) {
        grant_refuse(c, 503, "unavailable", "Redis is not connected");
        br_conn_unref(c);
        free(pd);
    }
}

void br_l3_request(br_l3 *l3, br_conn *c, const gp_frame *f) {
    if (!l3) {
        grant_refuse(c, 501, "not_supported", "this bridge runs no L3 tunnel (--tun)");
        return;
    }
    if (!c->tp->send_dgram) {
        grant_refuse(c, 400, "bad_request", "the L3 tunnel needs rudp://");
        return;
    }
    if (l3->pools_bad || !l3->tun) {
        grant_refuse(c, 503, "unavailable",
                     "this bridge's --tun-pool differs from the pools other bridges use");
        return;
    }
    if (c->l3) { /* asked again (a repeated frame): the grant stands; send it again */
        br_l3_conn_gone(l3, c);
    }
    unsigned mtu = f->u.l3_req.mtu ? f->u.l3_req.mtu : BR_L3_MTU_DEFAULT;
    if (mtu > l3->conf.mtu)
        mtu = l3->conf.mtu;
    if (mtu < 576 || (l3->conf.has[1] && mtu < 1280)) {
        grant_refuse(c, 400, "bad_request",
                     l3->conf.has[1] ? "an MTU below 1280 cannot carry IPv6" : "an MTU below 576");
        return;
    }
    pending *pd = calloc(1, sizeof *pd);
    if (!pd) {
        grant_refuse(c, 503, "unavailable", "out of memory");
        return;
    }
    pd->l3 = l3;
    pd->c = c;
    pd->mtu = mtu;
    char why[200];
    if (gp_cidr_list_parse((const char *)f->u.l3_req.routes.p, f->u.l3_req.routes.len, pd->asked,
                           BR_L3_ROUTES_MAX, &pd->nasked, why, sizeof why) != 0) {
        free(pd);
        grant_refuse(c, 400, "bad_request", why);
        return;
    }
    br_conn_ref(c);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "HGET");
    br_args_str(&a, c->housekey);
    br_args_str(&a, GP_HOUSE_TUN_ROUTES);
    if (br_db_cmd(l3->env->db, on_routes, pd, &a) != 0) {
        grant_refuse(c, 503, "unavailable", "Redis is not connected");
        br_conn_unref(c);
        free(pd);
    }
}

void br_l3_conn_gone(br_l3 *l3, br_conn *c) {
    br_l3_house *h = c->l3;
    if (!l3 || !h)
        return;
    char err[256];
    for (size_t i = 0; l3->tun && i < h->ninstalled; i++) {
        int rc = gp_rtnl_route_del(&l3->nl, gp_tun_dev(l3->tun), &h->installed[i], err, sizeof err);
        if (rc != 0 && rc != -ESRCH) /* ESRCH: taken over by another bridge's device already */
            br_log(BR_LOG_WARN, "tun_route_failed", "house=%s reason=%s", c->house, br_qs(err));
    }
    for (int f = 0; f < 2; f++)
        if (h->has[f])
            addr_remove(l3, h, f);
    routes_remove(l3, h);
    br_log(BR_LOG_INFO, "tun_down", "house=%s pkts_in=%llu pkts_out=%llu drops=%llu", c->house,
           (unsigned long long)h->pkts_in, (unsigned long long)h->pkts_out,
           (unsigned long long)h->drops);
    c->l3 = NULL;
    free(h);
    if (l3->t.houses)
        l3->t.houses--;
}

void br_l3_figures_of(const br_conn *c, br_l3_figures *out) {
    memset(out, 0, sizeof *out);
    const br_l3_house *h = c->l3;
    if (!h)
        return;
    for (int f = 0; f < 2; f++)
        if (h->has[f]) {
            char t[GP_IP_ADDR_STRLEN];
            append(out->addr, sizeof out->addr, gp_ip_addr_format(&h->addr[f], t));
        }
    out->pkts_in = h->pkts_in;
    out->pkts_out = h->pkts_out;
    out->bytes_in = h->bytes_in;
    out->bytes_out = h->bytes_out;
    out->drops = h->drops;
}

void br_l3_totals_get(const br_l3 *l3, br_l3_totals *out) {
    if (l3)
        *out = l3->t;
    else
        memset(out, 0, sizeof *out);
}

void br_l3_totals_drops(const br_l3_totals *t, const char *reason[BR_L3_DROP_REASONS],
                        uint64_t n[BR_L3_DROP_REASONS]) {
    size_t k = 0;
    for (int d = GP_IPD_OK + 1; d < GP_IPD_COUNT; d++, k++) {
        reason[k] = gp_ip_drop_name((gp_ip_drop)d);
        n[k] = t->drops[d];
    }
    const struct {
        const char *name;
        uint64_t n;
    } own[] = {{"no_route", t->no_route},           {"spoofed", t->spoofed},
               {"forbidden_dst", t->forbidden_dst}, {"too_big", t->too_big},
               {"queue_full", t->queue_full},       {"write_fail", t->write_fail}};
    _Static_assert(sizeof own / sizeof own[0] + GP_IPD_COUNT - 1 == BR_L3_DROP_REASONS,
                   "every reason named");
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++, k++) {
        reason[k] = own[i].name;
        n[k] = own[i].n;
    }
}

/* ---- lifecycle ---- */

static void on_pools(redisReply *r, void *ud) {
    br_l3 *l3 = ud;
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
        return; /* Redis went away: checked again when it is back */
    int bad = !(r->len == 2 && memcmp(r->str, "ok", 2) == 0);
    if (bad && !l3->pools_bad)
        br_log(BR_LOG_ERROR, "tun_pools_differ",
               "ours=%s recorded=%.*s reason=\"every bridge must run with the same --tun-pool: "
               "refusing L3 requests\"",
               br_qs(l3->pools_text), (int)r->len, r->str);
    l3->pools_bad = bad;
}

void br_l3_redis_up(br_l3 *l3) {
    if (!l3)
        return;
    char p4[GP_CIDR_STRLEN] = "", p6[GP_CIDR_STRLEN] = "";
    if (l3->conf.has[0])
        gp_cidr_format(&l3->conf.pool[0], p4);
    if (l3->conf.has[1])
        gp_cidr_format(&l3->conf.pool[1], p6);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, l3->ktun);
    br_args_str(&a, p4);
    br_args_str(&a, p6);
    br_db_eval(l3->env->db, &l3->pools, on_pools, l3, 1, &a);
}

br_l3 *br_l3_new(const br_env *env, const br_l3_conf *conf, char *err, size_t errlen) {
    br_l3 *l3 = calloc(1, sizeof *l3);
    if (!l3) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l3->env = env;
    l3->conf = *conf;
    l3->nl.fd = -1;
    l3->pools = (br_script){GP_TUN_POOLS_LUA, ""};
    l3->alloc = (br_script){GP_TUN_ALLOC_LUA, ""};
    if (gp_key_tun(l3->ktun, env->cfg->prefix) < 0) {
        snprintf(err, errlen, "prefix too long");
        goto fail;
    }
    uint64_t max = UINT64_MAX;
    for (int f = 0; f < 2; f++) {
        if (!conf->has[f])
            continue;
        uint64_t sz = gp_pool_size(&conf->pool[f]);
        if (sz - 1 < max)
            max = sz - 1;
        gp_pool_addr(&conf->pool[f], 0, &l3->hub[f]);
        char t[GP_CIDR_STRLEN];
        append(l3->pools_text, sizeof l3->pools_text, gp_cidr_format(&conf->pool[f], t));
    }
    l3->max_index = max;
    if (gp_tun_open(env->loop, conf->dev, &l3->tun, err, errlen) != 0)
        goto fail;
    if (gp_rtnl_open(&l3->nl, err, errlen) != 0)
        goto fail;
    const gp_netdev *dev = gp_tun_dev(l3->tun);
    if (gp_rtnl_set_mtu(&l3->nl, dev, conf->mtu, err, errlen) != 0 ||
        gp_rtnl_set_up(&l3->nl, dev, 1, err, errlen) != 0)
        goto fail;
    for (int f = 0; f < 2; f++) {
        if (!conf->has[f])
            continue;
        /* The bridges' own address, alone (no prefix route: every house's route is its own,
         * pointing at the device of the bridge that holds it). */
        if (gp_rtnl_addr_add(&l3->nl, dev, &l3->hub[f], f ? 128 : 32, err, errlen) != 0)
            goto fail;
        /* The pools' catch-all, below every house's route: a packet to an address nobody
         * holds here comes to us (dropped, counted) instead of following the default route
         * out of the host. */
        gp_rtnl_route r;
        cidr_route(&conf->pool[f], &r);
        r.metric = POOL_ROUTE_METRIC;
        if (gp_rtnl_route_replace(&l3->nl, dev, &r, err, errlen) != 0)
            goto fail;
    }
    if (gp_tun_read_start(l3->tun, on_tun_packet, on_tun_error, l3) != 0) {
        snprintf(err, errlen, "reading the TUN device failed");
        goto fail;
    }
    char hub[2 * GP_IP_ADDR_STRLEN + 2] = "";
    for (int f = 0; f < 2; f++)
        if (conf->has[f]) {
            char t[GP_IP_ADDR_STRLEN];
            append(hub, sizeof hub, gp_ip_addr_format(&l3->hub[f], t));
        }
    br_log(BR_LOG_INFO, "tun_listening", "dev=%s addr=%s pools=%s mtu=%u", dev->name, hub,
           l3->pools_text, conf->mtu);
    return l3;
fail:
    br_l3_free(l3);
    return NULL;
}

void br_l3_stop(br_l3 *l3) {
    if (!l3 || !l3->tun)
        return;
    gp_tun_close(l3->tun, NULL, NULL); /* the device goes, and its routes with it */
    l3->tun = NULL;
    gp_rtnl_close(&l3->nl);
}

void br_l3_free(br_l3 *l3) {
    if (!l3)
        return;
    br_l3_stop(l3);
    free(l3->routes);
    free(l3);
}
