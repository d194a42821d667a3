/* uv_tun.c — the L3 tunnel's TUN device (proto/adapters/uv_tun.c) and its rtnetlink client
 * (proto/adapters/rtnl.c) against the real kernel, each test in a network namespace of its own:
 * the test process (Criterion runs each test in one) unshares CLONE_NEWNET first, so nothing
 * it creates — devices, addresses, routes, sysctls — is the host's, and all of it is gone
 * with the process, also when a test fails or crashes. Needs root and /dev/net/tun: skipped
 * otherwise, saying so.
 *
 * Packets are built and parsed by hand here (headers, checksums), not with the module's
 * help: what the kernel routes into the device is read back exactly, what is written into it
 * reaches a local socket (UDP) or is answered by the kernel (ICMP echo, which also proves the
 * checksums right). Then: a route replaced moves a prefix from one device to another, a
 * deletion through the old device leaves it alone, a flush empties; the read budget and
 * backpressure; and the errors a daemon's operator will read. */
#include "adapters/uv_tun.h"
#include "adapters/rtnl.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXPKT 256
#define PKTLEN 2048

static uv_loop_t loop;
static gp_rtnl nl = {.fd = -1};
static char err[512];
/* The host's forwarding switches, opened before leaving its namespace: a sysctl file answers
 * for the namespace it was opened in, so these show the host's value after the unshare. */
static int host_fwd[2] = {-1, -1};
static int entered; /* the loop exists: a skipped test has nothing to tear down */

static void enter_netns(void) {
    if (geteuid() != 0)
        cr_skip_test("needs root (a network namespace of its own, a TUN device)");
    if (access("/dev/net/tun", F_OK) != 0)
        cr_skip_test("no /dev/net/tun: load the tun module, or pass the device to the container");
    host_fwd[0] = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
    host_fwd[1] = open("/proc/sys/net/ipv6/conf/all/forwarding", O_RDONLY | O_CLOEXEC);
    if (unshare(CLONE_NEWNET) != 0)
        cr_skip_test("cannot create a network namespace: %s", strerror(errno));
    /* Before anything is created: this must be a fresh namespace, lo alone, never the host's. */
    struct if_nameindex *ifs = if_nameindex();
    cr_assert_not_null(ifs);
    int n = 0;
    while (ifs[n].if_index)
        n++;
    cr_assert_eq(n, 1, "a new network namespace has lo only, not %d devices", n);
    if_freenameindex(ifs);
    cr_assert_eq(uv_loop_init(&loop), 0);
    entered = 1;
    cr_assert_eq(gp_rtnl_open(&nl, err, sizeof err), 0, "%s", err);
}

static void leave_netns(void) {
    if (!entered)
        return;
    gp_rtnl_close(&nl);
    uv_run(&loop, UV_RUN_NOWAIT); /* closing handles */
    uv_loop_close(&loop);
}

TestSuite(uv_tun, .init = enter_netns, .fini = leave_netns, .timeout = 30);

/* --- packets seen ----------------------------------------------------------------------- */

typedef struct seen {
    int n;          /* packets kept (at most MAXPKT; the rest counted in total) */
    int total;      /* every packet the callback saw */
    int wakeup;     /* packets since the test last reset it (one loop iteration) */
    int stop_after; /* > 0: stop reading when total reaches it */
    int close_after;
    int closed;
    int error; /* the on_error callback's code, 0 if none */
    gp_tun *t;
    size_t len[MAXPKT];
    uint8_t pkt[MAXPKT][PKTLEN];
} seen;

static void on_packet(void *ud, const uint8_t *p, size_t len) {
    seen *s = ud;
    s->total++;
    s->wakeup++;
    if (s->n < MAXPKT && len <= PKTLEN) {
        memcpy(s->pkt[s->n], p, len);
        s->len[s->n++] = len;
    }
    if (s->stop_after && s->total == s->stop_after)
        gp_tun_read_stop(s->t);
    if (s->close_after && s->total == s->close_after)
        gp_tun_close(s->t, NULL, NULL);
}

static void on_error(void *ud, int e) {
    ((seen *)ud)->error = e;
}

/* t reads into s from now on. */
static void read_into(gp_tun *t, seen *s) {
    s->t = t;
    cr_assert_eq(gp_tun_read_start(t, on_packet, on_error, s), 0);
}

static void on_closed(void *ud) {
    ((seen *)ud)->closed = 1;
}

static void tick(uv_timer_t *t) {
    (void)t;
}

/* Runs the loop until pred(ud) or ms pass (a 10 ms tick bounds each wait). */
static void run_until(int (*pred)(void *), void *ud, int ms) {
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    uv_timer_start(&timer, tick, 10, 10);
    uint64_t end = uv_now(&loop) + (uint64_t)ms;
    while (!pred(ud) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* --- addresses, devices ----------------------------------------------------------------- */

static gp_rtnl_ip ip(const char *s) {
    gp_rtnl_ip a = {0};
    if (inet_pton(AF_INET, s, a.a) == 1)
        a.family = 4;
    else if (inet_pton(AF_INET6, s, a.a) == 1)
        a.family = 6;
    cr_assert(a.family, "bad address %s in the test", s);
    return a;
}

static gp_rtnl_route route(const char *dst, unsigned len, const char *src) {
    gp_rtnl_route r = {.dst = ip(dst), .dst_len = (uint8_t)len};
    if (src)
        r.src = ip(src);
    return r;
}

/* A device opened, MTU 1280, up. */
static gp_tun *tun_up(const char *name) {
    gp_tun *t = NULL;
    cr_assert_eq(gp_tun_open(&loop, name, &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_set_mtu(&nl, gp_tun_dev(t), 1280, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_set_up(&nl, gp_tun_dev(t), 1, err, sizeof err), 0, "%s", err);
    return t;
}

static void addr(gp_tun *t, const char *a, unsigned len) {
    gp_rtnl_ip x = ip(a);
    cr_assert_eq(gp_rtnl_addr_add(&nl, gp_tun_dev(t), &x, len, err, sizeof err), 0, "%s", err);
}

/* The device as an ordinary socket ioctl sees it: its MTU and flags. */
static void if_info(const char *name, int *mtu, int *flags) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    cr_assert_eq(ioctl(fd, SIOCGIFMTU, &ifr), 0);
    *mtu = ifr.ifr_mtu;
    cr_assert_eq(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
    *flags = ifr.ifr_flags;
    close(fd);
}

/* addr:port as a socket address into ss: its length. */
static socklen_t sockaddr_of(const char *addr, int port, struct sockaddr_storage *ss) {
    gp_rtnl_ip a = ip(addr);
    memset(ss, 0, sizeof *ss);
    if (a.family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        memcpy(&s4->sin_addr, a.a, 4);
        return sizeof *s4;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    memcpy(&s6->sin6_addr, a.a, 16);
    return sizeof *s6;
}

/* A UDP socket for ss's family. */
static int udp_socket(const struct sockaddr_storage *ss) {
    int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    return fd;
}

/* A UDP datagram from an ordinary socket to addr:port; 0 or errno. */
static int udp_send(const char *to, int port, const char *payload) {
    struct sockaddr_storage ss;
    socklen_t sl = sockaddr_of(to, port, &ss);
    int fd = udp_socket(&ss);
    int rc = sendto(fd, payload, strlen(payload), 0, (struct sockaddr *)&ss, sl) < 0 ? errno : 0;
    close(fd);
    return rc;
}

/* --- packets by hand -------------------------------------------------------------------- */

static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* RFC 1071: the one's complement sum of 16-bit words (an odd byte padded with zero). */
static uint32_t sum(uint32_t s, const uint8_t *p, size_t n) {
    for (size_t i = 0; i + 1 < n; i += 2)
        s += get16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s) {
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* An L4 checksum over its pseudo-header (addresses, protocol, length) and the segment. */
static uint16_t l4_sum(const gp_rtnl_ip *src, const gp_rtnl_ip *dst, uint8_t proto,
                       const uint8_t *seg, size_t n) {
    size_t alen = src->family == 4 ? 4 : 16;
    uint32_t s = sum(sum(0, src->a, alen), dst->a, alen);
    s += proto + (uint32_t)n;
    return fold(sum(s, seg, n));
}

/* An IPv4 or IPv6 header for a payload of n bytes of proto, into p; returns its size. */
static size_t ip_header(uint8_t *p, const gp_rtnl_ip *src, const gp_rtnl_ip *dst, uint8_t proto,
                        size_t n) {
    if (src->family == 4) {
        memset(p, 0, 20);
        p[0] = 0x45;
        put16(p + 2, (unsigned)(20 + n));
        put16(p + 4, 0x1234); /* id */
        p[8] = 64;            /* TTL */
        p[9] = proto;
        memcpy(p + 12, src->a, 4);
        memcpy(p + 16, dst->a, 4);
        put16(p + 10, fold(sum(0, p, 20)));
        return 20;
    }
    memset(p, 0, 40);
    p[0] = 0x60;
    put16(p + 4, (unsigned)n);
    p[6] = proto;
    p[7] = 64; /* hop limit */
    memcpy(p + 8, src->a, 16);
    memcpy(p + 24, dst->a, 16);
    return 40;
}

static size_t udp_packet(uint8_t *p, const char *from, int sport, const char *to, int dport,
                         const char *payload) {
    gp_rtnl_ip s = ip(from), d = ip(to);
    size_t n = 8 + strlen(payload);
    size_t h = ip_header(p, &s, &d, 17, n);
    uint8_t *u = p + h;
    put16(u, (unsigned)sport);
    put16(u + 2, (unsigned)dport);
    put16(u + 4, (unsigned)n);
    put16(u + 6, 0);
    memcpy(u + 8, payload, n - 8);
    uint16_t c = l4_sum(&s, &d, 17, u, n);
    put16(u + 6, c ? c : 0xffff); /* 0 means "none" in UDP: sent as all ones */
    return h + n;
}

/* An ICMP echo request (id, seq, 8 bytes of data). */
static size_t echo_request(uint8_t *p, const char *from, const char *to, unsigned id,
                           unsigned seq) {
    gp_rtnl_ip s = ip(from), d = ip(to);
    size_t h = ip_header(p, &s, &d, 1, 16);
    uint8_t *c = p + h;
    memset(c, 0, 16);
    c[0] = 8; /* echo request */
    put16(c + 4, id);
    put16(c + 6, seq);
    memcpy(c + 8, "gp-echo!", 8);
    put16(c + 2, fold(sum(0, c, 16)));
    return h + 16;
}

/* What the tests check of a packet read from the device. */
typedef struct parsed {
    int version, proto;
    gp_rtnl_ip src, dst;
    const uint8_t *l4;
    size_t l4len;
} parsed;

static int parse(const uint8_t *p, size_t n, parsed *o) {
    memset(o, 0, sizeof *o);
    if (n < 20)
        return -1;
    o->version = p[0] >> 4;
    if (o->version == 4) {
        size_t ihl = (size_t)(p[0] & 15) * 4;
        if (ihl < 20 || get16(p + 2) != n || n < ihl || fold(sum(0, p, ihl)) != 0)
            return -1;
        o->proto = p[9];
        o->src.family = o->dst.family = 4;
        memcpy(o->src.a, p + 12, 4);
        memcpy(o->dst.a, p + 16, 4);
        o->l4 = p + ihl;
        o->l4len = n - ihl;
        return 0;
    }
    if (o->version != 6 || n < 40 || (size_t)get16(p + 4) != n - 40)
        return -1;
    o->proto = p[6]; /* the tests' packets carry no extension header */
    o->src.family = o->dst.family = 6;
    memcpy(o->src.a, p + 8, 16);
    memcpy(o->dst.a, p + 24, 16);
    o->l4 = p + 40;
    o->l4len = n - 40;
    return 0;
}

static int ip_eq(const gp_rtnl_ip *a, const char *text) {
    gp_rtnl_ip b = ip(text);
    return a->family == b.family && !memcmp(a->a, b.a, a->family == 4 ? 4 : 16);
}

/* The kernel's own IPv6 chatter on a device coming up (router solicitations, MLD reports,
 * neighbour discovery): not the test's packets. */
static int chatter(const parsed *p) {
    return p->version == 6 && p->proto == 58 && p->l4len > 0 && p->l4[0] >= 130 && p->l4[0] <= 143;
}

/* The index in s of the one UDP datagram to dst:dport (from src) carrying payload, checked
 * whole (lengths, checksum); -1 if none; fails the test on a second one. */
static int find_udp(const seen *s, const char *src, const char *dst, int dport,
                    const char *payload) {
    int found = -1;
    for (int i = 0; i < s->n; i++) {
        parsed p;
        if (parse(s->pkt[i], s->len[i], &p) < 0 || p.proto != 17 || !ip_eq(&p.dst, dst))
            continue;
        cr_assert_eq(found, -1, "one datagram to %s, not two", dst);
        cr_assert(ip_eq(&p.src, src), "the source is %s", src);
        cr_assert_geq(p.l4len, 8);
        cr_assert_eq(get16(p.l4 + 2), dport);
        cr_assert_eq(get16(p.l4 + 4), p.l4len, "UDP length");
        cr_assert_eq(p.l4len - 8, strlen(payload));
        cr_assert_eq(memcmp(p.l4 + 8, payload, p.l4len - 8), 0);
        cr_assert_eq(l4_sum(&p.src, &p.dst, 17, p.l4, p.l4len), 0, "UDP checksum");
        found = i;
    }
    return found;
}

typedef struct want {
    seen *s;
    const char *src, *dst, *payload;
} want;

static int has_udp(void *ud) {
    want *w = ud;
    return find_udp(w->s, w->src, w->dst, 9, w->payload) >= 0;
}

/* Sends one datagram to dst:9 and waits for it on the device that s reads. */
static void expect_udp(seen *s, const char *src, const char *dst, const char *payload) {
    cr_assert_eq(udp_send(dst, 9, payload), 0, "sending to %s", dst);
    want w = {s, src, dst, payload};
    run_until(has_udp, &w, 3000);
    cr_assert(has_udp(&w), "the datagram to %s came out of the device", dst);
}

/* A message from the kernel's answer: the kernel may add its own words after it, in
 * parentheses (extended ACK, depending on its version). */
#define assert_prefix(msg, want)                                                                   \
    cr_assert(!strncmp((msg), (want), strlen(want)), "\"%s\" does not begin \"%s\"", (msg), (want))

static int total_reaches(void *ud) {
    seen *s = ud;
    return s->total >= s->stop_after;
}

/* --- tests ------------------------------------------------------------------------------ */

Test(uv_tun, routed_packets_come_out_of_the_device_exactly) {
    gp_tun *t = tun_up("gp%d");
    const gp_netdev *d = gp_tun_dev(t);
    cr_assert_str_eq(d->name, "gp0", "the template's number, chosen by the kernel");
    cr_assert_eq((unsigned)d->index, if_nametoindex("gp0"));
    int mtu, flags;
    if_info("gp0", &mtu, &flags);
    cr_assert_eq(mtu, 1280);
    cr_assert(flags & IFF_UP);
    addr(t, "10.77.0.1", 32);
    addr(t, "fd77::1", 128);
    addr(t, "fd77::1", 128); /* again: a restart configures the same, not an error */
    gp_rtnl_route r4 = route("10.77.1.0", 24, NULL), r6 = route("fd77:1::", 64, NULL);
    cr_assert_eq(gp_rtnl_route_add(&nl, d, &r4, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_route_add(&nl, d, &r6, err, sizeof err), 0, "%s", err);

    static seen s;
    read_into(t, &s);
    expect_udp(&s, "10.77.0.1", "10.77.1.5", "over the tunnel, v4");
    expect_udp(&s, "fd77::1", "fd77:1::5", "over the tunnel, v6");
    /* Nothing else came out but the kernel's own IPv6 chatter. */
    for (int i = 0; i < s.n; i++) {
        parsed p;
        cr_assert_eq(parse(s.pkt[i], s.len[i], &p), 0, "packet %d is a whole IP packet", i);
        cr_assert(p.proto == 17 || chatter(&p), "packet %d: protocol %d", i, p.proto);
    }
    const gp_tun_stats *st = gp_tun_stats_get(t);
    cr_assert_eq(st->read_pkts, (uint64_t)s.total);
    cr_assert_eq(st->read_errors, 0);
    size_t bytes = 0;
    for (int i = 0; i < s.n; i++)
        bytes += s.len[i];
    cr_assert_eq(st->read_bytes, bytes);
    cr_assert_eq(s.error, 0);
    gp_tun_close(t, on_closed, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(s.closed);
    cr_assert_eq(if_nametoindex("gp0"), 0, "the device is gone with its descriptor");
}

/* A UDP socket bound to a:port. */
static int udp_bound(const char *a, int port) {
    struct sockaddr_storage ss;
    socklen_t sl = sockaddr_of(a, port, &ss);
    int fd = udp_socket(&ss);
    cr_assert_eq(bind(fd, (struct sockaddr *)&ss, sl), 0, "bind %s: %s", a, strerror(errno));
    return fd;
}

/* Receives one datagram on fd within 3 s; checks its payload and source address. */
static void expect_recv(int fd, const char *payload, const char *from, int sport) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 3000), 1, "\"%s\" arrives on the socket", payload);
    char buf[256];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &sl);
    cr_assert_eq(n, (ssize_t)strlen(payload));
    cr_assert_eq(memcmp(buf, payload, (size_t)n), 0);
    gp_rtnl_ip src = {0};
    int port;
    if (ss.ss_family == AF_INET) {
        src.family = 4;
        memcpy(src.a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else {
        src.family = 6;
        memcpy(src.a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    cr_assert(ip_eq(&src, from), "from %s", from);
    cr_assert_eq(port, sport);
}

static int has_echo_reply(void *ud) {
    seen *s = ud;
    for (int i = 0; i < s->n; i++) {
        parsed p;
        if (parse(s->pkt[i], s->len[i], &p) == 0 && p.proto == 1 && p.l4len >= 8 && p.l4[0] == 0)
            return 1;
    }
    return 0;
}

Test(uv_tun, packets_written_into_the_device_are_received) {
    gp_tun *t = tun_up("gp0");
    addr(t, "10.77.0.1", 32);
    addr(t, "fd77::1", 128);
    gp_rtnl_route r4 = route("10.77.1.0", 24, NULL), r6 = route("fd77:1::", 64, NULL);
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(t), &r4, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(t), &r6, err, sizeof err), 0, "%s", err);
    int fd4 = udp_bound("10.77.0.1", 5000), fd6 = udp_bound("fd77::1", 5000);

    uint8_t p[256];
    size_t n = udp_packet(p, "10.77.1.5", 4000, "10.77.0.1", 5000, "from the peer, v4");
    cr_assert_eq(gp_tun_write(t, p, n), 0);
    expect_recv(fd4, "from the peer, v4", "10.77.1.5", 4000);
    size_t n6 = udp_packet(p, "fd77:1::5", 4001, "fd77::1", 5000, "from the peer, v6");
    cr_assert_eq(gp_tun_write(t, p, n6), 0);
    expect_recv(fd6, "from the peer, v6", "fd77:1::5", 4001);

    /* An echo request in; the kernel's reply out of the device, to the peer. */
    static seen s;
    read_into(t, &s);
    size_t ne = echo_request(p, "10.77.1.5", "10.77.0.1", 0x4750, 7);
    cr_assert_eq(gp_tun_write(t, p, ne), 0);
    run_until(has_echo_reply, &s, 3000);
    cr_assert(has_echo_reply(&s), "the kernel answered the echo request");
    for (int i = 0; i < s.n; i++) {
        parsed q;
        if (parse(s.pkt[i], s.len[i], &q) || q.proto != 1)
            continue;
        cr_assert(ip_eq(&q.src, "10.77.0.1") && ip_eq(&q.dst, "10.77.1.5"));
        cr_assert_eq(q.l4len, 16);
        cr_assert_eq(get16(q.l4 + 4), 0x4750);
        cr_assert_eq(get16(q.l4 + 6), 7);
        cr_assert_eq(memcmp(q.l4 + 8, "gp-echo!", 8), 0);
        cr_assert_eq(fold(sum(0, q.l4, q.l4len)), 0, "ICMP checksum");
    }
    const gp_tun_stats *st = gp_tun_stats_get(t);
    cr_assert_eq(st->write_pkts, 3);
    cr_assert_eq(st->write_bytes, n + n6 + ne);
    cr_assert_eq(st->write_errors + st->write_drops, 0);

    /* Not an IP packet: the kernel refuses it, counted. */
    uint8_t junk[20] = {0};
    cr_assert_eq(gp_tun_write(t, junk, sizeof junk), -EINVAL);
    cr_assert_eq(gp_tun_write(t, junk, 0), -EMSGSIZE);
    cr_assert_eq(st->write_errors, 2);
    /* A device that is down takes nothing. */
    cr_assert_eq(gp_rtnl_set_up(&nl, gp_tun_dev(t), 0, err, sizeof err), 0, "%s", err);
    int mtu, flags;
    if_info("gp0", &mtu, &flags);
    cr_assert_not(flags & IFF_UP);
    cr_assert_eq(gp_tun_write(t, p, n), -EIO);
    cr_assert_eq(st->write_errors, 3);
    cr_assert_eq(st->write_pkts, 3);
    close(fd4);
    close(fd6);
    gp_tun_close(t, NULL, NULL);
}

Test(uv_tun, a_replaced_route_moves_to_the_other_device) {
    gp_tun *a = tun_up("gpa"), *b = tun_up("gpb");
    const gp_netdev *da = gp_tun_dev(a), *db = gp_tun_dev(b);
    addr(a, "10.77.0.1", 32);
    addr(a, "fd77::1", 128);
    static seen sa, sb;
    read_into(a, &sa);
    read_into(b, &sb);
    gp_rtnl_route r[2] = {route("10.77.1.0", 24, NULL), route("fd77:1::", 64, NULL)};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(gp_rtnl_route_add(&nl, da, &r[i], err, sizeof err), 0, "%s", err);
    expect_udp(&sa, "10.77.0.1", "10.77.1.5", "to a");
    expect_udp(&sa, "fd77::1", "fd77:1::5", "to a, v6");

    /* Adding it again, through either device, is refused: the prefix has its route. */
    cr_assert_eq(gp_rtnl_route_add(&nl, db, &r[0], err, sizeof err), -EEXIST);
    assert_prefix(err, "adding route 10.77.1.0/24 dev gpb: File exists");
    cr_assert_eq(gp_rtnl_route_add(&nl, db, &r[1], err, sizeof err), -EEXIST);
    assert_prefix(err, "adding route fd77:1::/64 dev gpb: File exists");

    /* Replaced through b: the prefix moves, in one step. */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(gp_rtnl_route_replace(&nl, db, &r[i], err, sizeof err), 0, "%s", err);
    int before = sa.n;
    expect_udp(&sb, "10.77.0.1", "10.77.1.6", "to b");
    expect_udp(&sb, "fd77::1", "fd77:1::6", "to b, v6");
    for (int i = before; i < sa.n; i++) {
        parsed p;
        cr_assert_eq(parse(sa.pkt[i], sa.len[i], &p), 0);
        cr_assert(chatter(&p), "nothing for the moved prefixes comes out of a any more");
    }

    /* a's owner cleaning up does not take b's route: deleting through a finds none. */
    cr_assert_eq(gp_rtnl_route_del(&nl, da, &r[0], err, sizeof err), -ESRCH);
    assert_prefix(err, "deleting route 10.77.1.0/24 dev gpa: No such process");
    cr_assert_eq(gp_rtnl_route_flush(&nl, da, r, 2, err, sizeof err), 0, "%s", err);
    expect_udp(&sb, "10.77.0.1", "10.77.1.7", "still to b");

    /* b's flush removes them; a second flush finds nothing and is content. */
    cr_assert_eq(gp_rtnl_route_flush(&nl, db, r, 2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(udp_send("10.77.1.8", 9, "nowhere"), ENETUNREACH);
    cr_assert_eq(udp_send("fd77:1::8", 9, "nowhere"), ENETUNREACH);
    cr_assert_eq(gp_rtnl_route_flush(&nl, db, r, 2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_route_del(&nl, db, &r[1], err, sizeof err), -ESRCH);
    gp_tun_close(a, NULL, NULL);
    gp_tun_close(b, NULL, NULL);
}

Test(uv_tun, a_route_with_a_preferred_source_and_a_metric) {
    gp_tun *t = tun_up("gp0");
    const gp_netdev *d = gp_tun_dev(t);
    addr(t, "10.77.0.1", 32);
    addr(t, "10.77.0.2", 32);
    addr(t, "fd77::1", 128);
    addr(t, "fd77::2", 128);
    gp_rtnl_route r4 = route("10.77.2.0", 24, "10.77.0.2"), r6 = route("fd77:2::", 64, "fd77::2");
    r4.metric = r6.metric = 50;
    cr_assert_eq(gp_rtnl_route_replace(&nl, d, &r4, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_route_replace(&nl, d, &r6, err, sizeof err), 0, "%s", err);
    static seen s;
    read_into(t, &s);
    expect_udp(&s, "10.77.0.2", "10.77.2.9", "from the preferred source");
    expect_udp(&s, "fd77::2", "fd77:2::9", "from the preferred source, v6");
    /* A deletion names the metric: another metric is another route. */
    gp_rtnl_route other = r4;
    other.metric = 51;
    cr_assert_eq(gp_rtnl_route_del(&nl, d, &other, err, sizeof err), -ESRCH);
    assert_prefix(err, "deleting route 10.77.2.0/24 metric 51 dev gp0 src 10.77.0.2: No such "
                       "process");
    cr_assert_eq(gp_rtnl_route_del(&nl, d, &r4, err, sizeof err), 0, "%s", err);
    cr_assert_eq(gp_rtnl_route_del(&nl, d, &r6, err, sizeof err), 0, "%s", err);
    cr_assert_eq(udp_send("10.77.2.9", 9, "nowhere"), ENETUNREACH);
    gp_tun_close(t, NULL, NULL);
}

/* Many packets queued: one wakeup reads GP_TUN_READ_BUDGET of them at most, the rest on the
 * next; a stop inside the callback ends the round at once; a close inside it too. */
Test(uv_tun, the_read_budget_and_backpressure) {
    gp_tun *t = tun_up("gp0");
    addr(t, "10.77.0.1", 32);
    gp_rtnl_route r = route("10.77.1.0", 24, NULL);
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(t), &r, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(udp_send("10.77.1.5", 9, "queued"), 0);

    static seen s;
    s.stop_after = 10;
    read_into(t, &s);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(s.total, 10, "stopped inside the callback: the round ends there");
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(s.total, 10, "and nothing is read while stopped");

    s.stop_after = 0;
    read_into(t, &s);
    int most = 0;
    for (int round = 0; round < 100 && s.total < 200; round++) {
        s.wakeup = 0;
        uv_run(&loop, UV_RUN_NOWAIT);
        most = s.wakeup > most ? s.wakeup : most;
    }
    cr_assert_geq(s.total, 200, "every packet read, %d", s.total);
    cr_assert_eq(most, GP_TUN_READ_BUDGET, "a wakeup reads the budget, no more");

    /* Closed from inside the callback: no packet after it, the close completes. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(udp_send("10.77.1.5", 9, "more"), 0);
    s.close_after = s.total + 1;
    s.stop_after = s.close_after; /* for run_until */
    run_until(total_reaches, &s, 3000);
    cr_assert_eq(s.total, s.close_after);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(s.total, s.close_after, "no packet after the close");
    cr_assert_eq(if_nametoindex("gp0"), 0);
}

static int errored(void *ud) {
    return ((seen *)ud)->error != 0;
}

Test(uv_tun, a_device_deleted_under_it_stops_reading_with_an_error) {
    if (system("command -v ip >/dev/null 2>&1") != 0)
        cr_skip_test("no ip(8) to delete the device with");
    gp_tun *t = tun_up("gp0");
    static seen s;
    read_into(t, &s);
    cr_assert_eq(system("ip link del gp0"), 0); /* this namespace's gp0: ours */
    run_until(errored, &s, 3000);
    cr_assert_eq(s.error, -EBADF, "on_error was called: %d", s.error);
    cr_assert_eq(gp_tun_stats_get(t)->read_errors, 1);
    uint8_t p[256];
    size_t n = udp_packet(p, "10.77.1.5", 4000, "10.77.0.1", 5000, "to nowhere");
    cr_assert_eq(gp_tun_write(t, p, n), -EBADFD);
    gp_tun_close(t, on_closed, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(s.closed);
}

Test(uv_tun, errors_say_what_failed) {
    gp_tun *t = NULL;
    cr_assert_eq(gp_tun_open(&loop, "gp-this-name-is-too-long", &t, err, sizeof err), -EINVAL);
    cr_assert_null(t);
    cr_assert_str_eq(err, "opening TUN device \"gp-this-name-is-too-long\": the name is too long "
                          "(at most 15 characters)");
    cr_assert_eq(gp_tun_open(&loop, "gp/0", &t, err, sizeof err), -EINVAL);

    /* A name in use by another open device. */
    gp_tun *a = tun_up("gp0");
    cr_assert_eq(gp_tun_open(&loop, "gp0", &t, err, sizeof err), -EBUSY);
    assert_prefix(err, "opening TUN device gp0: Device or resource busy");

    /* The kernel's own words: a route through a device that is down. */
    gp_tun *down = NULL;
    cr_assert_eq(gp_tun_open(&loop, "gpdown", &down, err, sizeof err), 0, "%s", err);
    /* (An IPv6 address on a device that is down is taken into use when it comes up: the call
     * does not wait for that.) */
    gp_rtnl_ip v6 = ip("fd77::9");
    uint64_t t0 = uv_hrtime();
    cr_assert_eq(gp_rtnl_addr_add(&nl, gp_tun_dev(down), &v6, 128, err, sizeof err), 0, "%s", err);
    cr_assert_lt(uv_hrtime() - t0, 500 * 1000 * 1000ull);
    gp_rtnl_route r = route("10.77.1.0", 24, NULL);
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(down), &r, err, sizeof err), -ENETDOWN);
    assert_prefix(err, "adding route 10.77.1.0/24 dev gpdown: Network is down");
    gp_tun_close(down, NULL, NULL);

    /* Checked before asking the kernel. */
    gp_rtnl_route bits = route("10.77.1.5", 24, NULL);
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(a), &bits, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "adding route 10.77.1.5/24 dev gp0: bits set past the prefix length 24");
    gp_rtnl_ip x = ip("fd77::1");
    cr_assert_eq(gp_rtnl_addr_add(&nl, gp_tun_dev(a), &x, 129, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "adding address fd77::1/129 dev gp0: prefix length 129 (IPv6: at most "
                          "128)");
    gp_rtnl_route mixed = route("10.77.1.0", 24, "fd77::1");
    cr_assert_eq(gp_rtnl_route_add(&nl, gp_tun_dev(a), &mixed, err, sizeof err), -EINVAL);
    cr_assert_eq(gp_rtnl_set_mtu(&nl, gp_tun_dev(a), 70000, err, sizeof err), -EINVAL);
    assert_prefix(err, "setting MTU 70000 on gp0: Invalid argument");

    /* A device that was closed: its value outlives it, the kernel knows it no more. */
    gp_netdev gone = *gp_tun_dev(a);
    static seen s;
    gp_tun_close(a, on_closed, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(s.closed);
    gp_rtnl_ip a4 = ip("10.77.0.1");
    cr_assert_eq(gp_rtnl_addr_add(&nl, &gone, &a4, 32, err, sizeof err), -ENODEV);
    assert_prefix(err, "adding address 10.77.0.1/32 dev gp0: No such device");
    cr_assert_eq(gp_rtnl_set_up(&nl, &gone, 1, err, sizeof err), -ENODEV);
    assert_prefix(err, "bringing gp0 up: No such device");

    gp_rtnl closed = {.fd = -1};
    cr_assert_eq(gp_rtnl_set_up(&closed, &gone, 1, err, sizeof err), -EBADF);
}

/* Runs gp_tun_open("gp0") in a child after prepare() (which returns 0, or its own exit code on
 * failure): what it returned (-errno, or its exit code) and its message into msg. A child, so
 * that what prepare takes away (a capability, a device node) is gone for it alone. */
static int open_in_child(int (*prepare)(void), char *msg, size_t cap) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        int code = prepare();
        if (code)
            _exit(code);
        uv_loop_t l;
        uv_loop_init(&l);
        gp_tun *t = NULL;
        char e[512] = "";
        int rc = gp_tun_open(&l, "gp0", &t, e, sizeof e);
        if (write(fds[1], e, strlen(e) + 1) < 0)
            _exit(102);
        _exit(rc < 0 ? -rc : 0);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, cap - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st));
    return WEXITSTATUS(st) >= 100 ? WEXITSTATUS(st) : -WEXITSTATUS(st);
}

/* Root without CAP_NET_ADMIN: /dev/net/tun opens (root owns it), the device cannot be made. */
static int drop_net_admin(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct c[2];
    if (syscall(SYS_capget, &h, c) != 0)
        return 100;
    uint32_t bit = 1u << (CAP_NET_ADMIN % 32);
    c[CAP_NET_ADMIN / 32].effective &= ~bit;
    c[CAP_NET_ADMIN / 32].permitted &= ~bit;
    c[CAP_NET_ADMIN / 32].inheritable &= ~bit;
    return syscall(SYS_capset, &h, c) != 0 ? 101 : 0;
}

/* No /dev/net/tun: an empty tmpfs over /dev/net, in a mount namespace of the child's own. */
static int hide_dev_net(void) {
    if (unshare(CLONE_NEWNS) != 0)
        return 103;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 104;
    return mount("tmpfs", "/dev/net", "tmpfs", 0, "size=4k") != 0 ? 105 : 0;
}

Test(uv_tun, without_cap_net_admin_the_message_names_it) {
    char msg[512];
    int rc = open_in_child(drop_net_admin, msg, sizeof msg);
    cr_assert_eq(rc, -EPERM, "%d: %s", rc, msg);
    cr_assert(strstr(msg, "opening TUN device gp0: Operation not permitted: needs root or "
                          "CAP_NET_ADMIN (setcap cap_net_admin+ep /"),
              "%s", msg);
    cr_assert(strstr(msg, "AmbientCapabilities=CAP_NET_ADMIN in its systemd unit)"), "%s", msg);
}

Test(uv_tun, without_dev_net_tun_the_message_says_so) {
    char msg[512];
    int rc = open_in_child(hide_dev_net, msg, sizeof msg);
    if (rc >= 103)
        cr_skip_test("no mount namespace to hide /dev/net in (step %d)", rc);
    cr_assert_eq(rc, -ENOENT, "%d: %s", rc, msg);
    cr_assert_str_eq(msg, "opening TUN device gp0: /dev/net/tun: No such file or directory: no "
                          "such device node: load the tun module (modprobe tun); in a container, "
                          "pass the device (docker run --device /dev/net/tun)");
}

static int read_flag(const char *path) {
    char b[8] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s", path);
    cr_assert_gt(read(fd, b, sizeof b - 1), 0);
    close(fd);
    return b[0] == '1';
}

static int host_flag(int fd) {
    char b[8] = "";
    cr_assert_gt(pread(fd, b, sizeof b - 1, 0), 0);
    return b[0] == '1';
}

Test(uv_tun, forwarding_is_turned_on_in_this_namespace_only) {
    cr_assert_geq(host_fwd[0], 0);
    int host4 = host_flag(host_fwd[0]);
    int host6 = host_fwd[1] >= 0 ? host_flag(host_fwd[1]) : -1;
    cr_assert_eq(gp_tun_forwarding_enable(4, err, sizeof err), 0, "%s", err);
    cr_assert(read_flag("/proc/sys/net/ipv4/ip_forward"));
    if (access("/proc/sys/net/ipv6", F_OK) == 0) {
        cr_assert_eq(gp_tun_forwarding_enable(6, err, sizeof err), 0, "%s", err);
        cr_assert(read_flag("/proc/sys/net/ipv6/conf/all/forwarding"));
        cr_assert_eq(gp_tun_forwarding_enable(6, err, sizeof err), 0, "already on: %s", err);
    }
    cr_assert_eq(host_flag(host_fwd[0]), host4, "the host's switch did not move");
    if (host6 >= 0)
        cr_assert_eq(host_flag(host_fwd[1]), host6, "the host's switch did not move");
    cr_assert_eq(gp_tun_forwarding_enable(5, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "enabling IP forwarding: family 5 (4 or 6)");
}
