/* rtnl.c — the synchronous rtnetlink client of the L3 tunnel (rtnl.h). Each call builds one
 * request in a fixed buffer (bounded: a header, one struct, a few attributes), sends it with
 * NLM_F_ACK and reads until the kernel's NLMSG_ERROR for that sequence number arrives (bounded
 * in time by SO_RCVTIMEO and in reads by MAX_READS). An adapter (uv_admin.c says why here). */
#include "rtnl.h"

#include "gp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX 256 /* the largest request built here: a route, about 80 bytes */
#define ANSWER_MAX 8192
#define MAX_READS 64   /* datagrams read while waiting for one ACK (others' are skipped) */
#define WHAT_MAX 160   /* "adding route <v6>/128 metric N src <v6> dev NAME" */
#define SETTLE_MS 1000 /* the longest a new IPv6 address takes to be usable (about 1 ms) */

_Static_assert(GP_IFNAMSIZ == IFNAMSIZ, "gp_netdev.name is an interface name");

/* One request: the header, then its struct and attributes appended in place. */
typedef struct req {
    union {
        struct nlmsghdr h;
        char buf[REQ_MAX];
    } u;
} req;

static void *req_put(req *r, size_t len) {
    size_t at = NLMSG_ALIGN(r->u.h.nlmsg_len);
    /* Every request here is far below REQ_MAX; this guards a future one, not input. */
    if (at + NLMSG_ALIGN(len) > sizeof r->u.buf)
        return NULL;
    r->u.h.nlmsg_len = (uint32_t)(at + len);
    memset(r->u.buf + at, 0, len);
    return r->u.buf + at;
}

static int req_attr(req *r, unsigned short type, const void *data, size_t len) {
    struct rtattr *a = req_put(r, RTA_LENGTH(len));
    if (!a)
        return -EMSGSIZE;
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    return 0;
}

static int req_u32(req *r, unsigned short type, uint32_t v) {
    return req_attr(r, type, &v, sizeof v);
}

static void req_init(req *r, uint16_t type, uint16_t flags) {
    memset(&r->u.h, 0, sizeof r->u.h);
    r->u.h.nlmsg_len = NLMSG_HDRLEN;
    r->u.h.nlmsg_type = type;
    r->u.h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
}

static int family_af(uint8_t family) {
    return family == 4 ? AF_INET : family == 6 ? AF_INET6 : -1;
}

static size_t family_bytes(uint8_t family) {
    return family == 4 ? 4 : 16;
}

static const char *ip_text(const gp_rtnl_ip *a, char buf[INET6_ADDRSTRLEN]) {
    if (family_af(a->family) < 0 || !inet_ntop(family_af(a->family), a->a, buf, INET6_ADDRSTRLEN))
        snprintf(buf, INET6_ADDRSTRLEN, "(family %u)", a->family);
    return buf;
}

int gp_rtnl_open(gp_rtnl *nl, char *err, size_t errlen) {
    nl->fd = -1;
    nl->seq = 0;
    nl->portid = 0;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        int e = errno;
        gp_errf(err, errlen, "opening a NETLINK_ROUTE socket: %s", strerror(e));
        return -e;
    }
    /* Bounded waits: a call never hangs its daemon on a kernel that does not answer. */
    struct timeval tv = {GP_RTNL_TIMEOUT_MS / 1000, (GP_RTNL_TIMEOUT_MS % 1000) * 1000};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* The kernel's own words with an error (since 4.12), and ACKs without our request echoed
     * back in them (4.3): both optional, older kernels just ignore them. */
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    socklen_t salen = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
        int e = errno;
        close(fd);
        gp_errf(err, errlen, "binding a NETLINK_ROUTE socket: %s", strerror(e));
        return -e;
    }
    nl->fd = fd;
    nl->portid = sa.nl_pid;
    return 0;
}

void gp_rtnl_close(gp_rtnl *nl) {
    if (nl->fd >= 0)
        close(nl->fd);
    nl->fd = -1;
}

/* The text of an extended ACK (NLMSGERR_ATTR_MSG) after the nlmsgerr in m, or NULL. */
static const char *ext_ack_msg(const struct nlmsghdr *m) {
    if (!(m->nlmsg_flags & NLM_F_ACK_TLVS))
        return NULL;
    const struct nlmsgerr *e = NLMSG_DATA(m);
    /* The TLVs follow the request as echoed: its header only when capped (NLM_F_CAPPED). */
    size_t off = NLMSG_HDRLEN + sizeof *e;
    if (e->msg.nlmsg_len < NLMSG_HDRLEN)
        return NULL;
    if (!(m->nlmsg_flags & NLM_F_CAPPED))
        off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
    if (off > m->nlmsg_len)
        return NULL;
    size_t left = m->nlmsg_len - off;
    const struct rtattr *a = (const struct rtattr *)((const char *)m + off);
    for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        size_t n = RTA_PAYLOAD(a);
        const char *s = RTA_DATA(a);
        if (a->rta_type == NLMSGERR_ATTR_MSG && n > 0 && memchr(s, '\0', n))
            return s;
    }
    return NULL;
}

/* An answer before the ACK (a GET's): handed to the caller, who keeps what it needs. */
typedef void (*reply_fn)(void *ud, const struct nlmsghdr *m);

/* Sends r and waits for its ACK, handing any other answer to it to on_reply (may be NULL). 0, or
 * -errno with "<what>: <strerror>[ (<kernel's text>)]". */
static int transact_reply(gp_rtnl *nl, req *r, reply_fn on_reply, void *ud, const char *what,
                          char *err, size_t errlen) {
    if (nl->fd < 0) {
        gp_errf(err, errlen, "%s: the netlink socket is not open", what);
        return -EBADF;
    }
    uint32_t seq = ++nl->seq;
    r->u.h.nlmsg_seq = seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t n;
    do
        n = sendto(nl->fd, r->u.buf, r->u.h.nlmsg_len, 0, (struct sockaddr *)&kernel,
                   sizeof kernel);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        gp_errf(err, errlen, "%s: sending to the kernel: %s", what, strerror(e));
        return -e;
    }
    /* Aligned for the headers read in place. */
    union {
        struct nlmsghdr h;
        char buf[ANSWER_MAX];
    } ans;
    for (int reads = 0; reads < MAX_READS; reads++) {
        do
            n = recv(nl->fd, ans.buf, sizeof ans.buf, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            int e = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
            if (e == ETIMEDOUT)
                gp_errf(err, errlen, "%s: no answer from the kernel in %d ms", what,
                        GP_RTNL_TIMEOUT_MS);
            else
                gp_errf(err, errlen, "%s: reading the kernel's answer: %s", what, strerror(e));
            return -e;
        }
        size_t left = (size_t)n;
        for (const struct nlmsghdr *m = &ans.h; NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
            /* An answer to an earlier request that timed out: not ours. */
            if (m->nlmsg_seq != seq || m->nlmsg_pid != nl->portid)
                continue;
            if (m->nlmsg_type != NLMSG_ERROR) {
                if (on_reply)
                    on_reply(ud, m);
                continue;
            }
            if (m->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
                gp_errf(err, errlen, "%s: a truncated answer from the kernel", what);
                return -EPROTO;
            }
            const struct nlmsgerr *e = NLMSG_DATA(m);
            if (e->error == 0)
                return 0;
            int code = e->error < 0 ? e->error : -EPROTO;
            const char *why = ext_ack_msg(m);
            gp_errf(err, errlen, "%s: %s%s%s%s", what, strerror(-code), why ? " (" : "",
                    why ? why : "", why ? ")" : "");
            return code;
        }
    }
    gp_errf(err, errlen, "%s: no answer from the kernel among %d messages", what, MAX_READS);
    return -EPROTO;
}

static int transact(gp_rtnl *nl, req *r, const char *what, char *err, size_t errlen) {
    return transact_reply(nl, r, NULL, NULL, what, err, errlen);
}

/* RTM_NEWLINK on an existing device: flags under change (IFF_UP) and an optional MTU. */
static int link_set(gp_rtnl *nl, const gp_netdev *dev, unsigned change, unsigned flags,
                    unsigned mtu, const char *what, char *err, size_t errlen) {
    req r;
    req_init(&r, RTM_NEWLINK, 0);
    struct ifinfomsg *ifi = req_put(&r, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = dev->index;
    ifi->ifi_change = change;
    ifi->ifi_flags = flags;
    if (mtu && req_u32(&r, IFLA_MTU, mtu) < 0) {
        gp_errf(err, errlen, "%s: request too large", what);
        return -EMSGSIZE;
    }
    return transact(nl, &r, what, err, errlen);
}

int gp_rtnl_set_mtu(gp_rtnl *nl, const gp_netdev *dev, unsigned mtu, char *err, size_t errlen) {
    char what[WHAT_MAX];
    snprintf(what, sizeof what, "setting MTU %u on %s", mtu, dev->name);
    if (mtu == 0) {
        gp_errf(err, errlen, "%s: an MTU is at least 1", what);
        return -EINVAL;
    }
    return link_set(nl, dev, 0, 0, mtu, what, err, errlen);
}

int gp_rtnl_set_up(gp_rtnl *nl, const gp_netdev *dev, int up, char *err, size_t errlen) {
    char what[WHAT_MAX];
    snprintf(what, sizeof what, "bringing %s %s", dev->name, up ? "up" : "down");
    return link_set(nl, dev, IFF_UP, up ? IFF_UP : 0, 0, what, err, errlen);
}

/* 0 when a has a known family and no bit set past len; else -EINVAL described. */
static int prefix_ok(const gp_rtnl_ip *a, unsigned len, int host_bits_ok, const char *what,
                     char *err, size_t errlen) {
    if (family_af(a->family) < 0) {
        gp_errf(err, errlen, "%s: address family %u (4 or 6)", what, a->family);
        return -EINVAL;
    }
    unsigned max = (unsigned)family_bytes(a->family) * 8;
    if (len > max) {
        gp_errf(err, errlen, "%s: prefix length %u (IPv%u: at most %u)", what, len, a->family, max);
        return -EINVAL;
    }
    if (host_bits_ok)
        return 0;
    for (unsigned bit = len; bit < max; bit++)
        if (a->a[bit / 8] & (0x80u >> (bit % 8))) {
            gp_errf(err, errlen, "%s: bits set past the prefix length %u", what, len);
            return -EINVAL;
        }
    return 0;
}

static void link_flags(void *ud, const struct nlmsghdr *m) {
    if (m->nlmsg_type == RTM_NEWLINK && m->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg)))
        *(unsigned *)ud = ((const struct ifinfomsg *)NLMSG_DATA(m))->ifi_flags;
}

static void route_type(void *ud, const struct nlmsghdr *m) {
    if (m->nlmsg_type == RTM_NEWROUTE && m->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg)))
        *(int *)ud = ((const struct rtmsg *)NLMSG_DATA(m))->rtm_type;
}

/* The kernel acknowledges a new IPv6 address before it can receive on it: the address's local
 * route is installed by a work item a moment later (addrconf's DAD work, run even with
 * IFA_F_NODAD), and until then a packet to it is dropped. So on a device that is up, wait
 * (bounded, SETTLE_MS) until a route lookup of the address says "local". On a device that is
 * down the kernel waits for it to come up: nothing to wait for here. */
static int v6_settle(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_ip *a, const char *what,
                     char *err, size_t errlen) {
    req r;
    req_init(&r, RTM_GETLINK, 0);
    struct ifinfomsg *ifi = req_put(&r, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = dev->index;
    unsigned flags = 0;
    int rc = transact_reply(nl, &r, link_flags, &flags, what, err, errlen);
    if (rc < 0 || !(flags & IFF_UP))
        return rc;
    for (int waited = 0; waited < SETTLE_MS; waited++) {
        req_init(&r, RTM_GETROUTE, 0);
        struct rtmsg *rtm = req_put(&r, sizeof *rtm);
        rtm->rtm_family = AF_INET6;
        rtm->rtm_dst_len = 128;
        int type = -1;
        if (req_attr(&r, RTA_DST, a->a, 16) < 0)
            return -EMSGSIZE;
        /* Before the local route: "unreachable", an error answer that is not ours to report. */
        char ignored[8];
        transact_reply(nl, &r, route_type, &type, what, ignored, sizeof ignored);
        if (type == RTN_LOCAL)
            return 0;
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
    gp_errf(err, errlen, "%s: the kernel did not take the address into use in %d ms", what,
            SETTLE_MS);
    return -ETIMEDOUT;
}

int gp_rtnl_addr_add(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_ip *a, unsigned prefix_len,
                     char *err, size_t errlen) {
    char what[WHAT_MAX], t[INET6_ADDRSTRLEN];
    snprintf(what, sizeof what, "adding address %s/%u dev %s", ip_text(a, t), prefix_len,
             dev->name);
    int rc = prefix_ok(a, prefix_len, 1, what, err, errlen);
    if (rc < 0)
        return rc;
    req r;
    req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    struct ifaddrmsg *ifa = req_put(&r, sizeof *ifa);
    ifa->ifa_family = (unsigned char)family_af(a->family);
    ifa->ifa_prefixlen = (unsigned char)prefix_len;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)dev->index;
    size_t n = family_bytes(a->family);
    /* LOCAL is the address, ADDRESS the peer: the same when there is none (as `ip` does). */
    rc = req_attr(&r, IFA_LOCAL, a->a, n);
    if (!rc)
        rc = req_attr(&r, IFA_ADDRESS, a->a, n);
    if (!rc && a->family == 6) {
        ifa->ifa_flags = IFA_F_NODAD;
        rc = req_u32(&r, IFA_FLAGS, IFA_F_NODAD);
    }
    if (rc < 0) {
        gp_errf(err, errlen, "%s: request too large", what);
        return rc;
    }
    rc = transact(nl, &r, what, err, errlen);
    if (rc == 0 && a->family == 6)
        rc = v6_settle(nl, dev, a, what, err, errlen);
    return rc;
}

/* RTM_NEWROUTE / RTM_DELROUTE for r through dev, described in what[WHAT_MAX]. */
static int route_req(gp_rtnl *nl, uint16_t type, uint16_t flags, const char *verb,
                     const gp_netdev *dev, const gp_rtnl_route *r, char *err, size_t errlen) {
    char what[WHAT_MAX], t[INET6_ADDRSTRLEN], metric[24] = "", src[8 + INET6_ADDRSTRLEN] = "";
    if (r->metric)
        snprintf(metric, sizeof metric, " metric %u", (unsigned)r->metric);
    if (r->src.family) {
        char s[INET6_ADDRSTRLEN];
        snprintf(src, sizeof src, " src %s", ip_text(&r->src, s));
    }
    snprintf(what, sizeof what, "%s route %s/%u%s dev %s%s", verb, ip_text(&r->dst, t),
             (unsigned)r->dst_len, metric, dev->name, src);
    int rc = prefix_ok(&r->dst, r->dst_len, 0, what, err, errlen);
    if (rc < 0)
        return rc;
    if (r->src.family && r->src.family != r->dst.family) {
        gp_errf(err, errlen, "%s: the source address is not of the destination's family", what);
        return -EINVAL;
    }
    req q;
    req_init(&q, type, flags);
    struct rtmsg *rtm = req_put(&q, sizeof *rtm);
    rtm->rtm_family = (unsigned char)family_af(r->dst.family);
    rtm->rtm_dst_len = r->dst_len;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = GP_RTNL_PROTO;
    /* An IPv4 route through a device, no gateway, is link-scoped (IPv6 has no route scopes,
     * as `ip` sends them: universe); a deletion matches any scope. */
    rtm->rtm_scope = type == RTM_DELROUTE ? RT_SCOPE_NOWHERE
                     : r->dst.family == 4 ? RT_SCOPE_LINK
                                          : RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    size_t n = family_bytes(r->dst.family);
    rc = req_attr(&q, RTA_DST, r->dst.a, n);
    if (!rc)
        rc = req_u32(&q, RTA_OIF, (uint32_t)dev->index);
    if (!rc && r->metric)
        rc = req_u32(&q, RTA_PRIORITY, r->metric);
    if (!rc && r->src.family)
        rc = req_attr(&q, RTA_PREFSRC, r->src.a, n);
    if (rc < 0) {
        gp_errf(err, errlen, "%s: request too large", what);
        return rc;
    }
    return transact(nl, &q, what, err, errlen);
}

int gp_rtnl_route_add(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                      size_t errlen) {
    return route_req(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, "adding", dev, r, err, errlen);
}

int gp_rtnl_route_replace(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                          size_t errlen) {
    return route_req(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, "replacing", dev, r, err,
                     errlen);
}

int gp_rtnl_route_del(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *r, char *err,
                      size_t errlen) {
    return route_req(nl, RTM_DELROUTE, 0, "deleting", dev, r, err, errlen);
}

int gp_rtnl_route_flush(gp_rtnl *nl, const gp_netdev *dev, const gp_rtnl_route *routes, size_t n,
                        char *err, size_t errlen) {
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        char e[512];
        int rc = gp_rtnl_route_del(nl, dev, &routes[i], e, sizeof e);
        if (rc == 0 || rc == -ESRCH || rc == -ENODEV)
            continue;
        if (!first) {
            first = rc;
            gp_errf(err, errlen, "%s", e);
        }
    }
    return first;
}
