/* l3.c — the house's side of the L3 tunnel (l3.h, proto/TUN.md). I/O side.
 *
 * Device -> bridge: parse, the destination must be on the hub side (inside the prefixes the
 * grant named), the source the house's own address or inside a granted route (a LAN host
 * answering through the masquerade has the house's address by then); the flow is recorded
 * (its replies may come back), a SYN's MSS clamped, and a packet over the tunnel's MTU answered
 * with ICMP "too big" written back into the device. Bridge -> device: parse, the source must be
 * on the hub side and the destination the house's address or inside a granted route; then
 * the flow table (a reply or a related ICMP error) or the --tun-allow rules decide; clamp,
 * write. Every drop is counted. */
#include "l3.h"

#include "adapters/uv_tun.h"
#include "flowtab.h"
#include "house.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUB_MAX 4 /* prefixes of the hub side a grant may name */

struct hs_l3 {
    uv_loop_t *loop;
    hs_l3_conf conf;
    char dev[GP_IFNAMSIZ];
    gp_tun_rule rules[HS_L3_RULES_MAX];
    gp_cidr asked[HS_L3_ROUTES_MAX];
    hs_l3_ops ops;
    gp_tun *tun;
    gp_rtnl nl;
    gp_flowtab *flows;
    hs_transport *tr; /* the live connection's, while granted or asking */
    int granted;
    unsigned mtu;      /* the grant's */
    unsigned path_mtu; /* the largest packet the session carries now, as last logged */
    gp_ip_addr addr[2];
    int has[2];
    gp_cidr hub[HUB_MAX];
    size_t nhub;
    gp_cidr routes[HS_L3_ROUTES_MAX]; /* granted */
    size_t nroutes;
    gp_rtnl_route installed[HUB_MAX];
    size_t ninstalled;
    int nft; /* the masquerade table is ours to delete */
    uint8_t pkt[GP_TUN_PKT_MAX];
    uint8_t icmp[GP_ICMP_TB_V6_MAX];
    uint64_t last_expire_ms;
    hs_l3_counters n;
};

static int in_any(const gp_cidr *c, size_t n, const gp_ip_addr *a) {
    for (size_t i = 0; i < n; i++)
        if (gp_cidr_contains(&c[i], a))
            return 1;
    return 0;
}

/* The house's side of a packet: its own address, or inside a granted route. */
static int ours(const hs_l3 *l3, const gp_ip_addr *a) {
    int f = a->family == 6;
    return (l3->has[f] && gp_ip_addr_eq(&l3->addr[f], a)) || in_any(l3->routes, l3->nroutes, a);
}

/* ---- masquerade (nftables) ---- */

/* Runs `nft -f -` with script on its standard input. 0, or -1 with nft's own words in err. */
static int run_nft(const char *script, char *err, size_t errlen) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        goto sys;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]), close(in[1]);
        goto sys;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        goto sys;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        execlp("nft", "nft", "-f", "-", (char *)NULL);
        dprintf(2, "nft: %s (install the nftables package)", strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    size_t len = strlen(script);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(in[1], script + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(in[1]);
    char buf[512];
    size_t got = 0;
    ssize_t r;
    while ((r = read(out[0], buf + got, sizeof buf - 1 - got)) > 0 && got < sizeof buf - 1)
        got += (size_t)r;
    buf[got] = '\0';
    close(out[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    signal(SIGPIPE, old);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    for (char *q = buf; *q; q++)
        if (*q == '\n')
            *q = ' ';
    snprintf(err, errlen, "nft: %s", got ? buf : "failed");
    return -1;
sys:
    snprintf(err, errlen, "running nft: %s", strerror(errno));
    return -1;
}

/* The table's name: the device's, with what nft would not take as a name made '_'. */
static void nft_table(const hs_l3 *l3, char *out, size_t cap) {
    snprintf(out, cap, "ghostport_%s", l3->dev);
    for (char *q = out; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
            *q = '_';
}

/* Packets from the tunnel leaving by another interface take the house's address there (the
 * LAN answers the house, and the answer comes back through the device); the table is ours
 * alone (added whole, replaced at start, deleted at exit). */
static int masquerade_on(hs_l3 *l3, char *err, size_t errlen) {
    for (int f = 4; f <= 6; f += 2)
        if (gp_tun_forwarding_enable(f, err, errlen) != 0)
            return -1;
    char t[64], script[1024];
    nft_table(l3, t, sizeof t);
    snprintf(script, sizeof script,
             "table inet %s\n"
             "delete table inet %s\n"
             "table inet %s {\n"
             "  chain post {\n"
             "    type nat hook postrouting priority srcnat; policy accept;\n"
             "    iifname \"%s\" oifname != \"%s\" masquerade\n"
             "  }\n"
             "}\n",
             t, t, t, l3->dev, l3->dev);
    if (run_nft(script, err, errlen) != 0)
        return -1;
    l3->nft = 1;
    return 0;
}

static void masquerade_off(hs_l3 *l3) {
    if (!l3->nft)
        return;
    char t[64], script[128], err[256];
    nft_table(l3, t, sizeof t);
    snprintf(script, sizeof script, "delete table inet %s\n", t);
    if (run_nft(script, err, sizeof err) != 0)
        hs_log(HS_LOG_WARN, "tun_masquerade_left", "dev=%s reason=%s", l3->dev, hs_qs(err));
    l3->nft = 0;
}

/* ---- packets ---- */

/* Counts a dropped packet; the first of each kind (and then one in 1000) is logged at debug,
 * with what it was. */
static void dropped(hs_l3 *l3, uint64_t *counter, const char *why, const gp_ip_pkt *pkt) {
    if ((*counter)++ % 1000 != 0)
        return;
    char s[GP_IP_ADDR_STRLEN] = "-", d[GP_IP_ADDR_STRLEN] = "-";
    if (pkt && pkt->version) {
        gp_ip_addr_format(&pkt->src, s);
        gp_ip_addr_format(&pkt->dst, d);
    }
    hs_log(HS_LOG_DEBUG, "tun_drop", "dev=%s reason=%s src=%s dst=%s proto=%u count=%llu", l3->dev,
           why, s, d, pkt ? pkt->proto : 0, (unsigned long long)*counter);
}

/* Copies cp[0..n) into l3->pkt (the clamp writes) and checks it: a packet from the device
 * (out) goes from the house's side to the hub's, one from the bridge the other way. 0, or -1
 * dropped and counted. */
static int take(hs_l3 *l3, const uint8_t *cp, size_t n, gp_ip_pkt *pkt, int out) {
    if (n > sizeof l3->pkt)
        return -1;
    memcpy(l3->pkt, cp, n);
    memset(pkt, 0, sizeof *pkt);
    gp_ip_drop d = gp_ip_parse(l3->pkt, n, pkt);
    const gp_ip_addr *hub_side = out ? &pkt->dst : &pkt->src, *our = out ? &pkt->src : &pkt->dst;
    if (d == GP_IPD_OK && in_any(l3->hub, l3->nhub, hub_side) && ours(l3, our))
        return 0;
    dropped(l3, &l3->n.bad,
            d != GP_IPD_OK ? gp_ip_drop_name(d)
            : out          ? "not_to_the_hub"
                           : "not_for_the_house",
            pkt);
    return -1;
}

static uint16_t mss_for(unsigned mtu, int v6) {
    return (uint16_t)(mtu - (v6 ? 60 : 40));
}

/* The largest IP packet the tunnel carries now: the grant's MTU, or less when the session
 * found the UDP path narrower than that (rudp path MTU probing: proto/RUDP.md). A change is
 * logged once, with what to do about it. */
static unsigned path_mtu(hs_l3 *l3) {
    size_t d = l3->tr->ops->dgram_max(l3->tr);
    unsigned mtu = d && d < l3->mtu ? (unsigned)d : l3->mtu;
    if (mtu != l3->path_mtu) {
        if (mtu < l3->mtu)
            hs_log(HS_LOG_WARN, "tun_path_mtu",
                   "dev=%s mtu=%u tunnel_mtu=%u reason=\"the UDP path to the bridge carries "
                   "less than the tunnel's MTU: larger packets get ICMP too big (a path MTU of "
                   "%u bytes over IPv4 would carry them)\"",
                   l3->dev, mtu, l3->mtu, l3->mtu + (unsigned)GP_RUDP_DGRAM_OVERHEAD(0) + 28);
        else if (l3->path_mtu)
            hs_log(HS_LOG_INFO, "tun_path_mtu", "dev=%s mtu=%u", l3->dev, mtu);
        l3->path_mtu = mtu;
    }
    return mtu;
}

/* "Too big" back into the device for a packet from it that does not fit (mtu): from the
 * hub's address of the packet's destination prefix (the next hop, as a router would answer):
 * one of our own addresses as the source would be dropped by our kernel as a martian. */
static void too_big(hs_l3 *l3, const uint8_t *p, size_t n, const gp_ip_pkt *pkt, unsigned mtu) {
    size_t len;
    gp_ip_addr from;
    l3->n.too_big++;
    for (size_t i = 0; i < l3->nhub; i++)
        if (gp_cidr_contains(&l3->hub[i], &pkt->dst) && gp_pool_addr(&l3->hub[i], 0, &from) == 0 &&
            gp_icmp_too_big(p, n, pkt, &from, mtu, l3->icmp, sizeof l3->icmp, &len) ==
                GP_TB_BUILT) {
            gp_tun_write(l3->tun, l3->icmp, len);
            break;
        }
}

static void on_tun_packet(void *ud, const uint8_t *cp, size_t n) {
    hs_l3 *l3 = ud;
    if (!l3->granted || !l3->tr) {
        dropped(l3, &l3->n.no_tunnel, "no_tunnel", NULL);
        return;
    }
    uint8_t *p = l3->pkt;
    gp_ip_pkt pkt;
    if (take(l3, cp, n, &pkt, 1) != 0)
        return;
    int f = pkt.version == 6;
    unsigned mtu = path_mtu(l3);
    if (n > mtu) {
        too_big(l3, p, n, &pkt, mtu);
        return;
    }
    uint64_t now = uv_now(l3->loop);
    gp_flowtab_out(l3->flows, &pkt, p, n, now);
    if (now - l3->last_expire_ms >= 1000) {
        gp_flowtab_expire(l3->flows, now, 256);
        l3->last_expire_ms = now;
    }
    if (pkt.flags & GP_IPF_TCP_SYN)
        gp_tcp_mss_clamp(p, n, &pkt, mss_for(mtu, f));
    int rc = l3->tr->ops->send_dgram(l3->tr, p, n);
    if (rc == GP_ERR_TOO_LARGE) { /* the session lowered its size since path_mtu asked */
        too_big(l3, p, n, &pkt, path_mtu(l3));
        return;
    }
    if (rc != 0) {
        dropped(l3, &l3->n.queue_full, gp_strerror(rc), &pkt);
        return;
    }
    l3->n.pkts_out++;
    l3->n.bytes_out += n;
}

static void on_tun_error(void *ud, int err) {
    hs_l3 *l3 = ud;
    hs_log(HS_LOG_ERROR, "tun_read_failed", "dev=%s err=%s", l3->dev, hs_qs(strerror(-err)));
}

void hs_l3_dgram(hs_l3 *l3, const uint8_t *cp, size_t n) {
    if (!l3 || !l3->granted)
        return;
    uint8_t *p = l3->pkt;
    gp_ip_pkt pkt;
    if (take(l3, cp, n, &pkt, 0) != 0)
        return;
    uint64_t now = uv_now(l3->loop);
    if (!gp_flowtab_in(l3->flows, &pkt, p, n, now) &&
        gp_tun_rules_match(l3->rules, l3->conf.nrules, &pkt) < 0) {
        dropped(l3, &l3->n.denied, "denied", &pkt);
        return;
    }
    if (pkt.flags & GP_IPF_TCP_SYN)
        gp_tcp_mss_clamp(p, n, &pkt, mss_for(l3->mtu, pkt.version == 6));
    if (gp_tun_write(l3->tun, p, n) != 0) {
        dropped(l3, &l3->n.write_fail, "write_failed", &pkt);
        return;
    }
    l3->n.pkts_in++;
    l3->n.bytes_in += n;
}

/* ---- the grant ---- */

/* One list of the grant into out (at most max): the count, or -1 with err. */
static int list_parse(gp_str s, gp_cidr *out, size_t max, char *err, size_t errlen) {
    size_t n;
    return gp_cidr_list_parse((const char *)s.p, s.len, out, max, &n, err, errlen) == 0 ? (int)n
                                                                                        : -1;
}

static void routes_out(hs_l3 *l3) {
    char err[256];
    if (l3->ninstalled && gp_rtnl_route_flush(&l3->nl, gp_tun_dev(l3->tun), l3->installed,
                                              l3->ninstalled, err, sizeof err) != 0)
        hs_log(HS_LOG_WARN, "tun_route_failed", "dev=%s reason=%s", l3->dev, hs_qs(err));
    l3->ninstalled = 0;
}

void hs_l3_grant(hs_l3 *l3, const gp_frame *f) {
    if (!l3)
        return;
    if (f->u.l3_grant.status != 200) {
        hs_log(HS_LOG_ERROR, "tun_refused", "dev=%s status=%u error=%s reason=%s", l3->dev,
               f->u.l3_grant.status, hs_q(f->u.l3_grant.error.p, f->u.l3_grant.error.len),
               hs_q(f->u.l3_grant.message.p, f->u.l3_grant.message.len));
        return;
    }
    gp_cidr addrs[2], hub[HUB_MAX], routes[HS_L3_ROUTES_MAX];
    char err[256] = "the grant names no address or no hub prefix";
    int na = list_parse(f->u.l3_grant.addrs, addrs, 2, err, sizeof err);
    int nh = na >= 1 ? list_parse(f->u.l3_grant.hub, hub, HUB_MAX, err, sizeof err) : -1;
    int nr =
        nh >= 1 ? list_parse(f->u.l3_grant.routes, routes, HS_L3_ROUTES_MAX, err, sizeof err) : -1;
    unsigned mtu = f->u.l3_grant.mtu;
    if (nr < 0 || mtu < 576 || mtu > l3->conf.mtu) {
        hs_log(HS_LOG_ERROR, "tun_refused", "dev=%s reason=%s", l3->dev,
               hs_qs(nr < 0 ? err : "the grant's MTU is out of range"));
        return;
    }
    /* The session first: one packet of the tunnel's MTU in one datagram. */
    if (!l3->tr || l3->tr->ops->set_mtu(l3->tr, mtu + GP_RUDP_DGRAM_OVERHEAD(0)) != 0) {
        hs_log(HS_LOG_ERROR, "tun_refused", "dev=%s reason=\"the session cannot carry MTU %u\"",
               l3->dev, mtu);
        return;
    }
    const gp_netdev *dev = gp_tun_dev(l3->tun);
    routes_out(l3);
    l3->has[0] = l3->has[1] = 0;
    for (int i = 0; i < na; i++) {
        int fam = addrs[i].addr.family == 6;
        if (gp_rtnl_addr_add(&l3->nl, dev, &addrs[i].addr, fam ? 128 : 32, err, sizeof err) != 0) {
            hs_log(HS_LOG_ERROR, "tun_addr_failed", "dev=%s reason=%s", l3->dev, hs_qs(err));
            continue;
        }
        l3->addr[fam] = addrs[i].addr;
        l3->has[fam] = 1;
    }
    if (gp_rtnl_set_mtu(&l3->nl, dev, mtu, err, sizeof err) != 0)
        hs_log(HS_LOG_WARN, "tun_mtu_failed", "dev=%s reason=%s", l3->dev, hs_qs(err));
    l3->nhub = 0;
    for (int i = 0; i < nh; i++) {
        gp_rtnl_route *r = &l3->installed[l3->ninstalled];
        memset(r, 0, sizeof *r);
        r->dst = hub[i].addr;
        r->dst_len = hub[i].len;
        int fam = hub[i].addr.family == 6;
        if (l3->has[fam])
            r->src = l3->addr[fam];
        if (gp_rtnl_route_replace(&l3->nl, dev, r, err, sizeof err) == 0)
            l3->ninstalled++;
        else
            hs_log(HS_LOG_ERROR, "tun_route_failed", "dev=%s reason=%s", l3->dev, hs_qs(err));
        l3->hub[l3->nhub++] = hub[i];
    }
    memcpy(l3->routes, routes, (size_t)nr * sizeof *routes);
    l3->nroutes = (size_t)nr;
    l3->mtu = mtu;
    l3->granted = 1;
    hs_log(HS_LOG_INFO, "tun_up", "dev=%s addr=%s hub=%s routes=%s mtu=%u%s%s", l3->dev,
           hs_q(f->u.l3_grant.addrs.p, f->u.l3_grant.addrs.len),
           hs_q(f->u.l3_grant.hub.p, f->u.l3_grant.hub.len),
           nr ? hs_q(f->u.l3_grant.routes.p, f->u.l3_grant.routes.len) : "-", mtu,
           f->u.l3_grant.message.len ? " note=" : "",
           f->u.l3_grant.message.len ? hs_q(f->u.l3_grant.message.p, f->u.l3_grant.message.len)
                                     : "");
}

void hs_l3_tunnel_up(hs_l3 *l3, int proto, hs_transport *tr, const char *bridge) {
    if (!l3)
        return;
    l3->tr = NULL;
    if (proto < GP_PROTO_L3 || !tr->ops->send_dgram) {
        hs_log(HS_LOG_WARN, "tun_unsupported", "dev=%s bridge=%s reason=%s", l3->dev, hs_qs(bridge),
               !tr->ops->send_dgram ? "\"the L3 tunnel needs rudp://\""
                                    : "\"this bridge does not speak protocol 3\"");
        return;
    }
    l3->tr = tr;
    char routes[GP_L3_LIST_MAX + 1];
    if (gp_cidr_list_format(l3->asked, l3->conf.nroutes, ",", routes, sizeof routes) < 0) {
        hs_log(HS_LOG_ERROR, "tun_refused", "dev=%s reason=\"--tun-route: too many\"", l3->dev);
        return;
    }
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_L3_REQ, 0, 0);
    f.u.l3_req.mtu = (uint16_t)l3->conf.mtu;
    f.u.l3_req.routes = gp_str_c(routes);
    l3->ops.send_frame(l3->ops.ud, &f);
}

void hs_l3_tunnel_down(hs_l3 *l3) {
    if (!l3)
        return;
    /* The device keeps its address and routes: the next grant (the same address, from any
     * bridge) picks up where this one left, and the TCP connections inside never notice. */
    l3->granted = 0;
    l3->tr = NULL;
}

void hs_l3_counters_get(const hs_l3 *l3, hs_l3_counters *out) {
    if (l3)
        *out = l3->n;
    else
        memset(out, 0, sizeof *out);
}

int hs_l3_granted(const hs_l3 *l3) {
    return l3 && l3->granted;
}

/* ---- lifecycle ---- */

hs_l3 *hs_l3_new(uv_loop_t *loop, const hs_l3_conf *conf, const hs_l3_ops *ops, char *err,
                 size_t errlen) {
    hs_l3 *l3 = calloc(1, sizeof *l3);
    if (!l3) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l3->loop = loop;
    l3->conf = *conf;
    l3->ops = *ops;
    l3->nl.fd = -1;
    if (conf->nrules > HS_L3_RULES_MAX || conf->nroutes > HS_L3_ROUTES_MAX) {
        snprintf(err, errlen, "too many --tun-allow or --tun-route");
        goto fail;
    }
    if (conf->nrules) /* (NULL, 0) is no list: memcpy may not be given NULL even for 0 bytes */
        memcpy(l3->rules, conf->rules, conf->nrules * sizeof *conf->rules);
    if (conf->nroutes)
        memcpy(l3->asked, conf->routes, conf->nroutes * sizeof *conf->routes);
    l3->conf.rules = l3->rules;
    l3->conf.routes = l3->asked;
    uint8_t key[GP_FLOWTAB_KEY_LEN];
    randombytes_buf(key, sizeof key);
    l3->flows = gp_flowtab_new(GP_FLOWTAB_DEFAULT_CAPACITY, key);
    if (!l3->flows) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (gp_tun_open(loop, conf->dev, &l3->tun, err, errlen) != 0 ||
        gp_rtnl_open(&l3->nl, err, errlen) != 0)
        goto fail;
    const gp_netdev *dev = gp_tun_dev(l3->tun);
    snprintf(l3->dev, sizeof l3->dev, "%s", dev->name);
    if (gp_rtnl_set_mtu(&l3->nl, dev, conf->mtu, err, errlen) != 0 ||
        gp_rtnl_set_up(&l3->nl, dev, 1, err, errlen) != 0)
        goto fail;
    if (conf->masquerade && masquerade_on(l3, err, errlen) != 0)
        goto fail;
    if (gp_tun_read_start(l3->tun, on_tun_packet, on_tun_error, l3) != 0) {
        snprintf(err, errlen, "reading the TUN device failed");
        goto fail;
    }
    hs_log(HS_LOG_INFO, "tun_open", "dev=%s mtu=%u rules=%zu routes=%zu masquerade=%d", l3->dev,
           conf->mtu, conf->nrules, conf->nroutes, conf->masquerade);
    return l3;
fail:
    hs_l3_free(l3);
    return NULL;
}

void hs_l3_free(hs_l3 *l3) {
    if (!l3)
        return;
    masquerade_off(l3);
    if (l3->tun)
        gp_tun_close(l3->tun, NULL, NULL); /* the device goes, its address and routes too */
    gp_rtnl_close(&l3->nl);
    gp_flowtab_free(l3->flows);
    free(l3);
}
