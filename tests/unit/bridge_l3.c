/* bridge_l3.c — the bridge's side of the L3 tunnel (bridge/daemon/l3.c) against the real kernel
 * in a network namespace of the test's own (unshare: nothing outside it is touched), with a
 * fake house connection (its transport captures the datagrams the bridge sends it) and the
 * grant given directly (br_l3_grant: what Redis's answers lead to). What a hostile or broken
 * house sends is dropped and counted by reason — garbage, truncated, oversized, a spoofed
 * source, a destination beyond the hub — while a good packet reaches a socket of the hub;
 * what the hub sends the house arrives as datagrams with its SYN's MSS clamped; the grant
 * names the granted route and refuses the others; the routes leave with the connection. */
#include "../../bridge/daemon/conn.h"
#include "../../bridge/daemon/l3.h"
#include "ippkt_build.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXCAP 32

static uv_loop_t loop;
static br_config cfg;
static br_env env;
static br_conns cs;
static br_conn conn;
static br_l3 *l3;
static uint8_t cap[MAXCAP][2048];
static size_t caplen[MAXCAP], ncap;
static int entered;

static int tp_dgram(br_conn *c, const uint8_t *p, size_t n) {
    (void)c;
    if (ncap < MAXCAP && n <= sizeof cap[0]) {
        memcpy(cap[ncap], p, n);
        caplen[ncap++] = n;
    }
    return 0;
}
static size_t tp_dgram_max(const br_conn *c) {
    (void)c;
    return 1400;
}
static int tp_set_mtu(br_conn *c, size_t mtu) {
    (void)c, (void)mtu;
    return 0;
}
static void tp_kick(br_conn *c) {
    (void)c;
}
static void tp_close(br_conn *c) {
    (void)c;
}
static const br_transport tp = {.name = "rudp",
                                .kick = tp_kick,
                                .close = tp_close,
                                .send_dgram = tp_dgram,
                                .dgram_max = tp_dgram_max,
                                .set_mtu = tp_set_mtu};

static void setup(void) {
    if (geteuid() != 0 || access("/dev/net/tun", F_OK) != 0)
        cr_skip_test("needs root and /dev/net/tun (a network namespace and a TUN device)");
    if (unshare(CLONE_NEWNET) != 0)
        cr_skip_test("cannot create a network namespace: %s", strerror(errno));
    struct if_nameindex *ifs = if_nameindex();
    int n = 0;
    while (ifs && ifs[n].if_index)
        n++;
    if_freenameindex(ifs);
    cr_assert_eq(n, 1, "a fresh namespace has lo only");
    cr_assert_eq(system("ip link set lo up"), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    entered = 1;
    cfg.prefix = "gp";
    env.loop = &loop;
    env.cfg = &cfg;
    cs.env = &env;
    br_l3_conf c = {.dev = "gpb0", .mtu = 1280};
    char err[512];
    cr_assert_eq(br_l3_pools_parse(&c, "100.96.0.0/24,fd7a:6770::/64", err, sizeof err), 0, "%s",
                 err);
    l3 = br_l3_new(&env, &c, err, sizeof err);
    cr_assert_not_null(l3, "%s", err);
    memset(&conn, 0, sizeof conn);
    conn.owner = &cs;
    conn.tp = &tp;
    conn.tpd = &conn;
    conn.state = BR_CS_LIVE;
    snprintf(conn.house, sizeof conn.house, "farm-1");
    ncap = 0;
}

static void teardown(void) {
    if (!entered)
        return;
    br_l3_conn_gone(l3, &conn);
    for (br_out *o; (o = br_conn_pop(&conn));)
        free(o);
    br_l3_stop(l3);
    uv_run(&loop, UV_RUN_DEFAULT);
    br_l3_free(l3);
    uv_loop_close(&loop);
}

TestSuite(bridge_l3, .init = setup, .fini = teardown, .timeout = 30);

/* Grants index 1 (100.96.0.2, fd7a:6770::2) asking for 10.50.1.0/24 and 10.60.0.0/16 with
 * 10.50.0.0/16 allowed; returns the grant frame's routes and message checked. */
static void grant(void) {
    gp_cidr asked[2];
    char err[160];
    cr_assert_eq(gp_cidr_parse("10.50.1.0/24", &asked[0], err, sizeof err), 0);
    cr_assert_eq(gp_cidr_parse("10.60.0.0/16", &asked[1], err, sizeof err), 0);
    br_l3_grant(l3, &conn, 1, 1280, asked, 2, "10.50.0.0/16");
    br_out *o = br_conn_pop(&conn);
    cr_assert_not_null(o, "no L3_GRANT queued");
    gp_frame f;
    cr_assert_gt(gp_frame_decode(o->buf + BR_OUT_PRE, o->len, GP_DEFAULT_MAX_FRAME, &f), 0);
    cr_assert_eq(f.type, GP_FRAME_L3_GRANT);
    cr_assert_eq(f.u.l3_grant.status, 200);
    cr_assert(gp_str_eq(f.u.l3_grant.addrs, "100.96.0.2,fd7a:6770::2"));
    cr_assert(gp_str_eq(f.u.l3_grant.routes, "10.50.1.0/24"));
    cr_assert(memmem(f.u.l3_grant.message.p, f.u.l3_grant.message.len,
                     "route 10.60.0.0/16 not allowed", 30),
              "the refused route is not named");
    cr_assert_eq(f.u.l3_grant.mtu, 1280);
    free(o);
}

/* Runs the loop until the fake transport has n datagrams (bounded). */
static void await_dgrams(size_t n) {
    for (int i = 0; i < 2000 && ncap < n; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    cr_assert_geq(ncap, n, "%zu datagrams for the house, %zu expected", ncap, n);
}

Test(bridge_l3, the_hub_reaches_the_house_and_its_route_with_the_mss_clamped) {
    grant();
    /* UDP to the house's address and into its granted route: the kernel routes both into
     * the device; the bridge hands them to the house's session. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "100.96.0.2", &a.sin_addr);
    cr_assert_eq(sendto(u, "hi", 2, 0, (struct sockaddr *)&a, sizeof a), 2, "%s", strerror(errno));
    inet_pton(AF_INET, "10.50.1.7", &a.sin_addr);
    cr_assert_eq(sendto(u, "lan", 3, 0, (struct sockaddr *)&a, sizeof a), 3, "%s", strerror(errno));
    inet_pton(AF_INET, "10.60.0.1", &a.sin_addr); /* refused: no route, the kernel says so */
    cr_assert_lt(sendto(u, "no", 2, 0, (struct sockaddr *)&a, sizeof a), 0);
    close(u);
    await_dgrams(2);
    gp_ip_pkt p;
    cr_assert_eq(gp_ip_parse(cap[0], caplen[0], &p), GP_IPD_OK);
    char t[GP_IP_ADDR_STRLEN];
    cr_assert_str_eq(gp_ip_addr_format(&p.dst, t), "100.96.0.2");
    cr_assert_str_eq(gp_ip_addr_format(&p.src, t), "100.96.0.1", "the hub's own address");
    cr_assert_eq(gp_ip_parse(cap[1], caplen[1], &p), GP_IPD_OK);
    cr_assert_str_eq(gp_ip_addr_format(&p.dst, t), "10.50.1.7");
    /* A TCP SYN from the hub: its MSS leaves at most 1280 - 40. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    inet_pton(AF_INET, "100.96.0.2", &a.sin_addr);
    a.sin_port = htons(22);
    int big = 8000;
    setsockopt(s, IPPROTO_TCP, 2 /* TCP_MAXSEG */, &big, sizeof big);
    connect(s, (struct sockaddr *)&a, sizeof a);
    await_dgrams(3);
    cr_assert_eq(gp_ip_parse(cap[2], caplen[2], &p), GP_IPD_OK);
    cr_assert(p.flags & GP_IPF_TCP_SYN);
    const uint8_t *o = cap[2] + p.l4_off + 20;
    const uint8_t *end = cap[2] + p.l4_off + (cap[2][p.l4_off + 12] >> 4) * 4;
    int mss = -1;
    while (o < end && *o != 0) {
        if (*o == 1) {
            o++;
            continue;
        }
        if (*o == 2 && o[1] == 4)
            mss = o[2] << 8 | o[3];
        o += o[1] ? o[1] : 1;
    }
    cr_assert(mss > 0 && mss <= 1240, "the SYN left with MSS %d", mss);
    cr_assert_eq(gp_l4_csum_ok(cap[2], caplen[2], &p), 1, "the clamp broke the checksum");
    close(s);
}

Test(bridge_l3, what_a_house_may_not_send_is_dropped_and_counted) {
    grant();
    /* A hub socket the good packets are for. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5353)};
    inet_pton(AF_INET, "100.96.0.1", &a.sin_addr);
    cr_assert_eq(bind(u, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
    fcntl(u, F_SETFL, O_NONBLOCK);
    uint8_t pkt[2048], l4[1600];
    br_l3_totals t0, t;
    br_l3_totals_get(l3, &t0);

    static const uint8_t garbage[] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
    br_l3_dgram(l3, &conn, garbage, sizeof garbage);
    size_t n = build(pkt, &(spec){.src = "100.96.0.2", .dst = "100.96.0.1", .proto = 17}, l4,
                     udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, 15); /* truncated */
    n = build(pkt, &(spec){.src = "100.96.0.77", .dst = "100.96.0.1", .proto = 17}, l4,
              udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n); /* another house's address */
    n = build(pkt, &(spec){.src = "192.0.2.1", .dst = "100.96.0.1", .proto = 17}, l4,
              udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n); /* the internet's */
    n = build(pkt, &(spec){.src = "100.96.0.2", .dst = "100.96.0.3", .proto = 17}, l4,
              udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n); /* another house */
    n = build(pkt, &(spec){.src = "100.96.0.2", .dst = "8.8.8.8", .proto = 17}, l4,
              udp(l4, 1000, 53, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n); /* beyond the hub */
    n = build(pkt, &(spec){.src = "100.96.0.2", .dst = "100.96.0.1", .proto = 17}, l4,
              udp(l4, 1000, 5353, 1400), 1);
    br_l3_dgram(l3, &conn, pkt, n); /* larger than the tunnel's MTU */
    br_l3_totals_get(l3, &t);
    cr_assert_eq(t.drops[GP_IPD_BAD_VERSION] - t0.drops[GP_IPD_BAD_VERSION], 1);
    cr_assert_eq(t.drops[GP_IPD_TRUNCATED] - t0.drops[GP_IPD_TRUNCATED], 1);
    cr_assert_eq(t.spoofed - t0.spoofed, 2);
    cr_assert_eq(t.forbidden_dst - t0.forbidden_dst, 2);
    cr_assert_eq(t.too_big - t0.too_big, 1);
    cr_assert_eq(t.pkts_in - t0.pkts_in, 0, "a bad packet was written into the device");
    char b[64];
    cr_assert_lt(recv(u, b, sizeof b, 0), 0, "a bad packet reached the hub");

    /* Good ones: from the house's address, and from inside its granted route. */
    n = build(pkt, &(spec){.src = "100.96.0.2", .dst = "100.96.0.1", .proto = 17}, l4,
              udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n);
    n = build(pkt, &(spec){.src = "10.50.1.9", .dst = "100.96.0.1", .proto = 17}, l4,
              udp(l4, 1000, 5353, 5), 1);
    br_l3_dgram(l3, &conn, pkt, n);
    br_l3_totals_get(l3, &t);
    cr_assert_eq(t.pkts_in - t0.pkts_in, 2);
    int got = 0;
    for (int i = 0; i < 1000 && got < 2; i++) {
        if (recv(u, b, sizeof b, 0) == 5)
            got++;
        else
            usleep(1000);
    }
    cr_assert_eq(got, 2, "the hub's socket got %d of 2 good packets", got);
    br_l3_figures f;
    br_l3_figures_of(&conn, &f);
    cr_assert_str_eq(f.addr, "100.96.0.2,fd7a:6770::2");
    cr_assert_eq(f.pkts_in, 2);
    cr_assert_eq(f.drops, 7, "all of this house's bad packets are its drops too");
    close(u);
}

Test(bridge_l3, the_routes_leave_with_the_connection) {
    grant();
    FILE *p = popen("ip route show; ip -6 route show", "r");
    char all[4096] = "";
    size_t n = fread(all, 1, sizeof all - 1, p);
    all[n] = '\0';
    pclose(p);
    cr_assert(strstr(all, "100.96.0.2 dev gpb0") && strstr(all, "10.50.1.0/24 dev gpb0") &&
                  strstr(all, "fd7a:6770::2 dev gpb0"),
              "%s", all);
    br_l3_conn_gone(l3, &conn);
    p = popen("ip route show; ip -6 route show", "r");
    n = fread(all, 1, sizeof all - 1, p);
    all[n] = '\0';
    pclose(p);
    cr_assert(!strstr(all, "100.96.0.2 dev") && !strstr(all, "10.50.1.0/24") &&
                  !strstr(all, "fd7a:6770::2 dev"),
              "routes stayed: %s", all);
    cr_assert(strstr(all, "100.96.0.0/24 dev gpb0"), "the pool's catch-all went too: %s", all);
}

/* A bridge whose device takes 1400-byte packets, a house granted 1280: a packet between the
 * two, sent with DF, is answered with ICMP "fragmentation needed" (MTU 1280) written back into
 * the device, and the hub's kernel learns the path MTU to the house. */
Test(bridge_l3, a_packet_too_big_for_the_house_gets_icmp_back) {
    br_l3_free(l3); /* setup's, with MTU 1280: this test wants a wider device */
    br_l3_conf c = {.dev = "gpb1", .mtu = 1400};
    char err[512];
    cr_assert_eq(br_l3_pools_parse(&c, "100.96.0.0/24", err, sizeof err), 0);
    l3 = br_l3_new(&env, &c, err, sizeof err);
    cr_assert_not_null(l3, "%s", err);
    br_l3_grant(l3, &conn, 1, 1280, NULL, 0, "");
    for (br_out *o; (o = br_conn_pop(&conn));)
        free(o);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    int pmtu = IP_PMTUDISC_DO;
    setsockopt(u, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "100.96.0.2", &a.sin_addr);
    static uint8_t big[1350];
    cr_assert_eq(sendto(u, big, sizeof big, 0, (struct sockaddr *)&a, sizeof a),
                 (ssize_t)sizeof big, "%s", strerror(errno));
    br_l3_totals t;
    for (int i = 0; i < 2000; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        br_l3_totals_get(l3, &t);
        if (t.too_big)
            break;
        usleep(1000);
    }
    cr_assert_eq(t.too_big, 1, "the packet was not refused as too big");
    cr_assert_eq(ncap, 0, "a packet too big for the house was sent to it");
    /* The kernel took the answer: the route to the house now has MTU 1280. */
    char all[512] = "";
    for (int i = 0; i < 1000 && !strstr(all, "mtu 1280"); i++) {
        FILE *p = popen("ip route get 100.96.0.2", "r");
        size_t n = fread(all, 1, sizeof all - 1, p);
        all[n] = '\0';
        pclose(p);
        if (!strstr(all, "mtu 1280"))
            usleep(1000);
    }
    cr_assert(strstr(all, "mtu 1280"), "the hub did not learn the path MTU: %s", all);
    close(u);
}
