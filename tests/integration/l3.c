/* l3.c — the L3 tunnel (proto/TUN.md) as a user meets it: real bridge and house processes, each
 * with its own TUN device, in network namespaces of the test's own (tests/harness/netns.h):
 * "hub" (Redis, the bridge, this test process: the user on the bridge host) and "far" (the
 * house and the services it guards), joined by a veth pair carrying the rudp:// session. The
 * user pings the house's address and talks TCP to it; --tun-allow decides what gets in (a
 * port it does not name gets nothing), while the replies to what the house opened itself
 * always come back; a LAN behind the house is reached through its masquerade; a route the
 * registry does not allow is refused; the tunnel keeps TCP moving at 30% loss (random drops of
 * the session's UDP by nftables on the veth: this kernel has no netem), and iperf3 runs through
 * it over the project's link emulator (tests/bench/linkem_tool: 10 Mbit/s, 200 ms RTT) at 10%
 * and 30% loss. */
#include "../harness/netns.h"
#include "../harness/world.h"
#include "rudp.h"
#include "rudp_pmtu.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

TestSuite(l3, .init = h_init, .fini = h_fini, .timeout = 180);

/* A TCP echo server on every address of its namespace, one per port given. */
static const char echo_py[] =
    "import socket, sys, threading\n"
    "def serve(c):\n"
    "    with c:\n"
    "        while True:\n"
    "            b = c.recv(65536)\n"
    "            if not b: break\n"
    "            c.sendall(b)\n"
    "def listen(port):\n"
    "    s = socket.socket(socket.AF_INET6)\n"
    "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('::', port)); s.listen(64)\n"
    "    while True:\n"
    "        c, _ = s.accept()\n"
    "        threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    "for p in sys.argv[1:]:\n"
    "    threading.Thread(target=listen, args=(int(p),), daemon=True).start()\n"
    "print('listening', flush=True)\n"
    "threading.Event().wait()\n";

typedef struct l3w {
    char hub[64], far[64], lan[64];
    h_proc *bridge, *house, *echo;
    int bport, uport;
    char pub[65], secret[65], url[64];
    char addr4[64], addr6[64]; /* the house's, from the bridge's tun_up line */
} l3w;

static l3w W;

static h_proc *g_linkem;
static char g_ctl[64]; /* its control socket, @name: the abstract namespace */
static int link_is_up(void *ud);

/* Tells the emulator (its control socket) "set ..." while connections stay up. */
static void linkem_set(const char *what) {
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(g_ctl);
    memcpy(a.sun_path, g_ctl, n);
    a.sun_path[0] = '\0'; /* '@' names the abstract namespace */
    char msg[128];
    int len = snprintf(msg, sizeof msg, "set %s", what);
    cr_assert_eq(sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&a,
                        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
                 len, "linkem control: %s", strerror(errno));
    close(fd);
}

/* Joins hub and far through linkem_tool (10.99.0.1 - 10.99.0.2, 10 Mbit/s, 128 KiB queue,
 * 100 ms each way, loss applied both ways) instead of a veth. */
static void linkem_up(double loss) {
    char tool[PATH_MAX + 64], l[32];
    snprintf(tool, sizeof tool, "%s/../bench/linkem_tool", h_bin(""));
    if (access(tool, X_OK) != 0)
        cr_skip_test("no %s (make build/bench/linkem_tool)", tool);
    snprintf(l, sizeof l, "%.2f", loss);
    snprintf(g_ctl, sizeof g_ctl, "@gpt%d-linkem", (int)getpid());
    char *argv[] = {tool,  "--tun-a",  "lmhub", "--addr-a", "10.99.0.1", "--netns-a",
                    W.hub, "--tun-b",  "lmfar", "--addr-b", "10.99.0.2", "--netns-b",
                    W.far, "--rate",   "10M",   "--queue",  "128k",      "--delay",
                    "100", "--jitter", "5",     "--loss",   l,           "--seed",
                    "7",   "--ctl",    g_ctl,   NULL};
    h_netns_spawn_in(W.hub); /* its control socket (abstract) is in hub's namespace then */
    g_linkem = h_spawn("linkem", argv);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait(link_is_up, NULL, 10000), "the emulated link did not come up");
}

/* The namespaces, the link between them (a veth, or the emulator at `loss` when emulate),
 * Redis and a bridge with --tun in hub. */
static void hub_up_link(const char *const *bridge_extra, int emulate, double loss) {
    if (access("/dev/net/tun", F_OK) != 0)
        cr_skip_test("no /dev/net/tun: load the tun module, or pass the device to the container");
    h_netns_add("hub", W.hub, sizeof W.hub);
    h_netns_add("far", W.far, sizeof W.far);
    if (emulate)
        linkem_up(loss);
    else
        h_netns_link(W.hub, "vhub", "10.99.0.1/24", W.far, "vfar", "10.99.0.2/24");
    h_netns_enter(W.hub);
    h_redis_start(0);
    char keyf[600];
    snprintf(keyf, sizeof keyf, "%s/rudp.key", h_dir());
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", keyf, NULL}),
                 0, "rudp-keygen: %s", err);
    snprintf(W.pub, sizeof W.pub, "%.64s", out);
    free(out), free(err);
    W.uport = h_free_port();
    char udp[16];
    snprintf(udp, sizeof udp, "%d", W.uport);
    snprintf(W.url, sizeof W.url, "rudp://10.99.0.1:%d", W.uport);
    const char *bx[24] = {"--bridge-id",   "b1",   "--bind",     "0.0.0.0",
                          "--rudp-listen", udp,    "--rudp-key", keyf,
                          "--tun",         "gpb0", "--tun-pool", "100.96.0.0/24,fd7a:6770::/64"};
    int n = 12;
    for (int i = 0; bridge_extra && bridge_extra[i]; i++)
        bx[n++] = bridge_extra[i];
    W.bridge = h_bridge_start(0, &W.bport, bx, 1);
    cr_assert(h_wait_log(W.bridge, "event=tun_listening", 10000), "the bridge's TUN is not up");
}

static void hub_up(const char *const *bridge_extra) {
    hub_up_link(bridge_extra, 0, 0);
}

/* The emulated link answers a ping from hub to far. */
static int link_is_up(void *ud) {
    (void)ud;
    return h_netns_sh(W.hub, 5000, NULL, "ping -n -c 1 -W 1 10.99.0.2 >/dev/null 2>&1") == 0;
}

/* Copies the value of key= in the first log line of p holding `line` into out. */
static int log_value(const h_proc *p, const char *line, const char *key, char *out, size_t cap) {
    size_t len;
    char *log = h_read_file(p->log, &len);
    int ok = 0;
    const char *l = log ? strstr(log, line) : NULL;
    const char *eol = l ? strchr(l, '\n') : NULL;
    const char *k = l ? strstr(l, key) : NULL;
    if (k && (!eol || k < eol)) {
        k += strlen(key);
        size_t n = strcspn(k, " \n");
        if (n < cap) {
            memcpy(out, k, n);
            out[n] = '\0';
            ok = 1;
        }
    }
    free(log);
    return ok;
}

/* The house in far with --tun gph0 and extra options, registered, granted. */
static void house_up(const char *const *extra) {
    h_register("farm-1", W.secret);
    const char *hx[32] = {"--bridge-key", W.pub, "--tun", "gph0"};
    int n = 4;
    for (int i = 0; extra && extra[i]; i++)
        hx[n++] = extra[i];
    h_netns_spawn_in(W.far);
    W.house = h_house_start_url("farm-1", W.secret, W.url, "http://127.0.0.1:1", hx);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait_log(W.house, "event=tun_up", 15000), "the house got no L3 grant");
    cr_assert(h_wait_log(W.bridge, "event=tun_up", 5000));
    char addrs[60];
    cr_assert(log_value(W.bridge, "event=tun_up", "addr=", addrs, sizeof addrs));
    char *comma = strchr(addrs, ',');
    cr_assert_not_null(comma, "one address of each family: %s", addrs);
    *comma = '\0';
    snprintf(W.addr4, sizeof W.addr4, "%s", addrs);
    snprintf(W.addr6, sizeof W.addr6, "%s", comma + 1);
}

static void echo_up(const char *ns, const char *ports) {
    char py[600];
    snprintf(py, sizeof py, "%s/echo.py", h_dir());
    FILE *f = fopen(py, "w");
    cr_assert_not_null(f);
    fputs(echo_py, f);
    fclose(f);
    char *argv[8] = {"python3", py};
    int n = 2;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", ports);
    for (char *t = strtok(buf, " "); t && n < 7; t = strtok(NULL, " "))
        argv[n++] = t;
    argv[n] = NULL;
    h_netns_spawn_in(ns);
    W.echo = h_spawn("echo", argv);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait_log(W.echo, "listening", 5000));
}

/* n bytes through the echo on fd (written and read concurrently in slices), checked byte for
 * byte. The rate in Mbit/s. */
static double echo_on(int fd, size_t n, int timeout_ms) {
    uint8_t *out = h_prandom(n, "l3-echo"), *in = malloc(n);
    size_t sent = 0, got = 0;
    uint64_t t0 = h_now_ms(), end = t0 + (uint64_t)timeout_ms;
    while (got < n) {
        cr_assert(h_now_ms() < end, "%zu of %zu bytes echoed in %d ms", got, n, timeout_ms);
        struct pollfd pf = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (poll(&pf, 1, 500) <= 0)
            continue;
        if ((pf.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, out + sent, n - sent < 16384 ? n - sent : 16384,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        if (pf.revents & POLLIN) {
            ssize_t r = recv(fd, in + got, n - got, MSG_DONTWAIT);
            cr_assert(r > 0 || (r < 0 && errno == EAGAIN), "the echo ended at %zu of %zu", got, n);
            if (r > 0)
                got += (size_t)r;
        }
    }
    double ms = (double)(h_now_ms() - t0);
    cr_assert_eq(memcmp(in, out, n), 0, "the echo came back changed");
    free(in);
    free(out);
    return ms > 0 ? (double)n * 8 / 1000 / ms : 0;
}

static double echo_bytes(const char *addr, int port, size_t n, int timeout_ms) {
    int fd = h_tcp_connect(addr, port, 10000);
    cr_assert(fd >= 0, "no TCP connection to %s:%d", addr, port);
    double r = echo_on(fd, n, timeout_ms);
    close(fd);
    return r;
}

static int ping(const char *ns, const char *addr, int count) {
    char *out = NULL;
    int rc = h_netns_sh(ns, 20000, &out, "ping -n -c %d -i 0.2 -W 3 %s", count, addr);
    if (rc != 0)
        fprintf(stderr, "ping %s: %s\n", addr, out ? out : "");
    free(out);
    return rc;
}

/* The house's live state has its L3 address and packets both ways. */
static int state_has_tun(void *ud) {
    (void)ud;
    redisReply *r = h_cmd("HMGET gp:{farm-1}:state tun_addr tun_pkts_in tun_pkts_out");
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             r->element[0]->type == REDIS_REPLY_STRING && strstr(r->element[0]->str, W.addr4) &&
             r->element[1]->type == REDIS_REPLY_STRING && atoll(r->element[1]->str) > 100 &&
             r->element[2]->type == REDIS_REPLY_STRING && atoll(r->element[2]->str) > 100;
    freeReplyObject(r);
    return ok;
}

/* The house's /metrics, from its namespace (its admin port is on its own loopback). */
static char *house_metrics(int port) {
    char *out = NULL;
    int rc = h_netns_sh(W.far, 10000, &out, "curl -sf http://127.0.0.1:%d/metrics", port);
    cr_assert_eq(rc, 0, "the house's /metrics: %s", out ? out : "");
    return out;
}

/* `ghostport top --json` with args; the house farm-1 in it (the document in *doc). */
static json_t *top_house(json_t **doc, const char *interval) {
    char *out = NULL, *err = NULL;
    int rc = h_cli(&out, NULL, &err,
                   (const char *const[]){"top", "--json", "--interval", interval, NULL});
    cr_assert_eq(rc, 0, "top --json: %s", err);
    *doc = json_loads(out, 0, NULL);
    cr_assert_not_null(*doc, "top --json printed: %s", out);
    free(out), free(err);
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(*doc, "houses"), i, h) {
        if (strcmp(json_string_value(json_object_get(h, "id")), "farm-1") == 0)
            return h;
    }
    cr_assert_fail("no farm-1 in top --json");
    return NULL;
}

static double jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_number(v), "%s is not a number", k);
    return json_number_value(v);
}

/* What a user does first: ping the house's addresses, talk TCP to an allowed service over
 * IPv4 and IPv6; a port the rules do not name gets nothing, not even a reset; and the house's
 * own connections to the hub get their replies back although no rule names them. What the
 * operator sees of it: `top` (the house's address, its packets per second and totals), the
 * bridge's and the house's metrics (packets both ways; the refused SYNs counted as denied). */
Test(l3, ping_tcp_and_the_allow_rules) {
    const char *bx[] = {"--admin-listen", "0", NULL};
    hub_up(bx);
    echo_up(W.far, "7 8");
    const char *hx[] = {"--tun-allow", "tcp:7", "--tun-allow", "icmp", "--admin-listen", "0", NULL};
    house_up(hx);
    cr_assert_eq(ping(NULL, W.addr4, 3), 0, "no ping reply from %s", W.addr4);
    cr_assert_eq(ping(NULL, W.addr6, 3), 0, "no ping reply from %s", W.addr6);
    double r4 = echo_bytes(W.addr4, 7, 4 << 20, 60000);
    double r6 = echo_bytes(W.addr6, 7, 1 << 20, 60000);
    printf("l3 echo on a clean veth: IPv4 4 MiB at %.1f Mbit/s, IPv6 1 MiB at %.1f Mbit/s\n", r4,
           r6);
    int fd = h_tcp_connect(W.addr4, 8, 3000);
    cr_assert_lt(fd, 0, "port 8 answered although only tcp:7 is allowed");
    /* The operator's view: the house's live state shows its address and the tunnel's
     * counters (written every second while it has traffic). */
    cr_assert(h_wait(state_has_tun, NULL, 5000), "the live state shows no tunnel traffic");
    /* top: the address, the totals, and packets per second while a ping runs (two samples
     * 1.5 s apart: the bridge writes the counters every second while there is traffic). */
    char pcount[8] = "20",
         *pargv[] = {"ping", "-n", "-q", "-i", "0.2", "-c", pcount, W.addr4, NULL};
    h_proc *pinger = h_spawn("pinger", pargv);
    json_t *doc, *th = top_house(&doc, "1500");
    cr_assert(json_is_true(json_object_get(th, "tun_up")), "top: the tunnel is not up");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(th, "tun_addr"), 0)),
                     W.addr4);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(th, "tun_addr"), 1)),
                     W.addr6);
    cr_assert_gt(jnum(th, "tun_pkts_in"), 100);
    cr_assert_gt(jnum(th, "tun_pkts_out"), 100);
    cr_assert_gt(jnum(th, "tun_bytes_in"), 1 << 20);
    cr_assert_gt(jnum(th, "tun_pkts_in_per_s"), 0, "no packets/s in while pinging");
    cr_assert_gt(jnum(th, "tun_pkts_out_per_s"), 0, "no packets/s out while pinging");
    cr_assert_gt(jnum(th, "tun_bits_out_per_s"), 0);
    cr_assert(json_is_number(json_object_get(th, "fec_repaired")), "fec_repaired");
    printf("l3 top: %.0f packets in, %.0f out; %.1f/s in, %.1f/s out while pinging\n",
           jnum(th, "tun_pkts_in"), jnum(th, "tun_pkts_out"), jnum(th, "tun_pkts_in_per_s"),
           jnum(th, "tun_pkts_out_per_s"));
    json_decref(doc);
    h_stop(pinger);
    /* The bridge's metrics: packets and bytes both ways, the house granted. */
    int baport = h_admin_port(W.bridge);
    cr_assert(baport, "the bridge logged no admin port");
    char *bm = h_scrape(baport);
    cr_assert_not_null(bm);
    cr_assert_eq(h_metric(bm, "gp_bridge_tun_houses"), 1);
    cr_assert_gt(h_metric(bm, "gp_bridge_tun_packets_total{dir=\"in\"}"), 100, "%s", bm);
    cr_assert_gt(h_metric(bm, "gp_bridge_tun_packets_total{dir=\"out\"}"), 100);
    cr_assert_gt(h_metric(bm, "gp_bridge_tun_bytes_total{dir=\"out\"}"), 4 << 20);
    cr_assert_geq(h_metric(bm, "gp_bridge_tun_drops_total{reason=\"bad_checksum\"}"), 0,
                  "every reason is listed");
    free(bm);
    /* The house's: granted, packets both ways, the SYNs to port 8 refused by its rules. */
    int haport = h_admin_port(W.house);
    cr_assert(haport, "the house logged no admin port");
    char *hm = house_metrics(haport);
    cr_assert_eq(h_metric(hm, "gp_house_tun_up"), 1, "%s", hm);
    cr_assert_gt(h_metric(hm, "gp_house_tun_packets_total{dir=\"in\"}"), 100);
    cr_assert_gt(h_metric(hm, "gp_house_tun_packets_total{dir=\"out\"}"), 100);
    cr_assert_gt(h_metric(hm, "gp_house_tun_bytes_total{dir=\"in\"}"), 4 << 20);
    cr_assert_gt(h_metric(hm, "gp_house_tun_drops_total{reason=\"denied\"}"), 0,
                 "the SYNs to port 8 are not counted as denied:\n%s", hm);
    free(hm);
    /* The house opens a connection to the hub (port 9 of the bridges' address): its SYN-ACK
     * and data come back through the flow table. */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "100.96.0.1", &la.sin_addr);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cr_assert_eq(bind(ls, (struct sockaddr *)&la, sizeof la), 0, "bind 100.96.0.1:9: %s",
                 strerror(errno));
    cr_assert_eq(listen(ls, 4), 0);
    h_netns_ok(W.far, 15000,
               "python3 -c \"import socket; s=socket.create_connection(('100.96.0.1',9),"
               " timeout=10); s.sendall(b'from the house'); s.close()\"");
    struct pollfd pf = {.fd = ls, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1, "the house's connection to the hub never arrived");
    int c = accept(ls, NULL, NULL);
    char buf[64] = {0};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_gt(recv(c, buf, sizeof buf - 1, 0), 0);
    cr_assert_str_eq(buf, "from the house");
    close(c);
    close(ls);
}

/* Random loss of the session's UDP, both ways, on the veth (nftables in far: every datagram
 * in or out of its veth is dropped with probability pct %). */
static void udp_loss(int pct) {
    h_netns_ok(W.far, 5000,
               "nft add table inet gploss && "
               "nft add chain inet gploss in '{ type filter hook input priority 0; }' && "
               "nft add chain inet gploss out '{ type filter hook output priority 0; }' && "
               "nft add rule inet gploss in iifname vfar meta l4proto udp numgen random "
               "mod 100 '<' %d drop && "
               "nft add rule inet gploss out oifname vfar meta l4proto udp numgen random "
               "mod 100 '<' %d drop",
               pct, pct);
}

/* At 30% loss of every datagram both ways, ping answers and a TCP transfer through the tunnel
 * keeps moving and completes, checked byte for byte: the tunnel never retransmits, FEC repairs
 * what it can, and the TCP inside sees little of the loss. */
Test(l3, tcp_keeps_moving_at_30_percent_loss) {
    hub_up(NULL);
    echo_up(W.far, "7");
    const char *hx[] = {"--tun-allow", "tcp:7", "--tun-allow", "icmp", NULL};
    house_up(hx);
    udp_loss(30);
    cr_assert_eq(ping(NULL, W.addr4, 10), 0, "no ping through at 30%% loss");
    double r = echo_bytes(W.addr4, 7, 512 << 10, 90000);
    printf("l3 echo at 30%% datagram loss each way (no delay): 512 KiB at %.1f Mbit/s\n", r);
}

/* A LAN behind the house (namespace lan: 192.168.77.2, no route back to the hub) reached
 * through the house's masquerade, once the registry allows the house its route; the LAN host
 * sees the house's address, not the hub's. */
Test(l3, a_lan_behind_the_house_through_its_masquerade) {
    hub_up(NULL);
    h_netns_add("lan", W.lan, sizeof W.lan);
    h_netns_link(W.far, "vlan0", "192.168.77.1/24", W.lan, "vlan1", "192.168.77.2/24");
    echo_up(W.lan, "7");
    const char *hx[] = {"--tun-allow",     "tcp:7@192.168.77.0/24", "--tun-route",
                        "192.168.77.0/24", "--tun-masquerade",      NULL};
    /* The registry's route must be there before the house asks: register first. */
    h_register("farm-1", W.secret);
    freeReplyObject(h_cmd("HSET gp:{farm-1}:house tun_routes 192.168.77.0/24"));
    const char *hx2[32] = {"--bridge-key", W.pub, "--tun", "gph0"};
    int n = 4;
    for (int i = 0; hx[i]; i++)
        hx2[n++] = hx[i];
    h_netns_spawn_in(W.far);
    W.house = h_house_start_url("farm-1", W.secret, W.url, "http://127.0.0.1:1", hx2);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait_log(W.house, "event=tun_up", 15000), "no grant");
    cr_assert(h_wait_log(W.bridge, "routes=192.168.77.0/24", 5000), "the route was not granted");
    double r = echo_bytes("192.168.77.2", 7, 1 << 20, 60000);
    printf("l3 echo to the LAN behind the house: 1 MiB at %.1f Mbit/s\n", r);
    /* Who the LAN host saw: conntrack-free check, its established connection's peer. */
    int fd = h_tcp_connect("192.168.77.2", 7, 5000);
    cr_assert(fd >= 0);
    char *out = NULL;
    h_netns_sh(W.lan, 5000, &out, "ss -tn state established '( sport = :7 )'");
    cr_assert(out && strstr(out, "192.168.77.1"), "the LAN saw someone else: %s", out);
    cr_assert(!strstr(out, "100.96.0.1"), "the hub's address leaked onto the LAN: %s", out);
    free(out);
    close(fd);
}

/* A route the house asks for that its registry entry does not allow is refused (named in the
 * grant's note), and the hub has no route for it; one it allows is granted. */
Test(l3, a_route_the_registry_does_not_allow_is_refused) {
    hub_up(NULL);
    h_register("farm-1", W.secret);
    freeReplyObject(h_cmd("HSET gp:{farm-1}:house tun_routes 10.50.0.0/16"));
    const char *hx[] = {"--bridge-key", W.pub,         "--tun",        "gph0", "--tun-route",
                        "10.50.1.0/24", "--tun-route", "10.60.0.0/16", NULL};
    h_netns_spawn_in(W.far);
    W.house = h_house_start_url("farm-1", W.secret, W.url, "http://127.0.0.1:1", hx);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait_log(W.bridge, "event=tun_up", 15000));
    cr_assert(h_wait_log(W.bridge, "routes=10.50.1.0/24", 1000), "the allowed route went missing");
    cr_assert(h_wait_log(W.bridge, "route 10.60.0.0/16 not allowed for this house", 1000),
              "the refusal is not named");
    char *out = NULL;
    h_netns_sh(NULL, 5000, &out, "ip route show 10.60.0.0/16; ip route show 10.50.1.0/24");
    cr_assert(out && !strstr(out, "10.60.0.0/16"), "a refused route is in the table: %s", out);
    cr_assert(strstr(out, "10.50.1.0/24 dev gpb0"), "the granted route is not: %s", out);
    free(out);
}

/* The bridge holding the house dies (kill -9): the house moves to the second bridge, which
 * takes its routes into its own device, and a TCP connection open through the tunnel before
 * carries on after, on the same address. */
Test(l3, the_house_moves_to_another_bridge_and_tcp_survives) {
    const char *bx[] = {"--ping-interval", "500", NULL};
    hub_up(bx);
    /* The second bridge: same pools, its own device and UDP port. */
    char keyf[600], udp[16];
    snprintf(keyf, sizeof keyf, "%s/rudp.key", h_dir());
    int u2 = h_free_port();
    snprintf(udp, sizeof udp, "%d", u2);
    const char *b2x[] = {"--bridge-id",     "b2",   "--bind",     "0.0.0.0",
                         "--rudp-listen",   udp,    "--rudp-key", keyf,
                         "--tun",           "gpb1", "--tun-pool", "100.96.0.0/24,fd7a:6770::/64",
                         "--ping-interval", "500",  NULL};
    int b2port;
    h_proc *b2 = h_bridge_start(0, &b2port, b2x, 1);
    cr_assert(h_wait_log(b2, "event=tun_listening", 10000));
    char url2[64];
    snprintf(url2, sizeof url2, "rudp://10.99.0.1:%d", u2);
    echo_up(W.far, "7");
    const char *hx[] = {"--tun-allow", "tcp:7", "--bridge", url2, NULL};
    house_up(hx);
    int fd = h_tcp_connect(W.addr4, 7, 5000);
    cr_assert(fd >= 0);
    char buf[16] = {0};
    cr_assert_eq(send(fd, "before", 6, 0), 6);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 5000), 1);
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 6);
    h_kill9(W.bridge);
    cr_assert(h_wait_log(b2, "event=tun_up", 30000), "the second bridge never took the house");
    char *out = NULL;
    h_netns_sh(NULL, 5000, &out, "ip route get %s", W.addr4);
    cr_assert(out && strstr(out, "dev gpb1"), "the house's route did not follow it: %s", out);
    free(out);
    cr_assert_eq(send(fd, "after!", 6, 0), 6);
    memset(buf, 0, sizeof buf);
    pf.revents = 0;
    cr_assert_eq(poll(&pf, 1, 20000), 1, "the connection did not survive the move");
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 6);
    cr_assert_str_eq(buf, "after!");
    close(fd);
}

/* The house's network changes under a TCP connection through the tunnel (its address on the
 * link moves from 10.99.0.2 to 10.99.0.3, as a phone changing cell): the session follows it
 * (the bridge logs the rebinding) and the connection carries on, checked byte for byte. */
Test(l3, nat_rebinding_mid_transfer) {
    hub_up(NULL);
    echo_up(W.far, "7");
    const char *hx[] = {"--tun-allow", "tcp:7", NULL};
    house_up(hx);
    int fd = h_tcp_connect(W.addr4, 7, 5000);
    cr_assert(fd >= 0);
    echo_on(fd, 1 << 20, 30000);
    h_netns_ok(W.far, 5000,
               "echo 1 > /proc/sys/net/ipv4/conf/vfar/promote_secondaries && "
               "ip addr add 10.99.0.3/24 dev vfar && ip addr del 10.99.0.2/24 dev vfar");
    double r = echo_on(fd, 1 << 20, 60000);
    cr_assert(h_wait_log(W.bridge, "event=rudp_rebind", 5000), "the session did not move");
    cr_assert(h_log_count(W.bridge, "to=10.99.0.3") >= 1, "the session moved elsewhere");
    printf("l3 echo after the house's address changed: 1 MiB at %.1f Mbit/s\n", r);
    close(fd);
}

/* iperf3 (TCP, the kernel's default congestion control) from the hub to the house through
 * the tunnel, over the emulated link: 10 s, received Mbit/s from its JSON report. */
static double iperf3(void) {
    char *out = NULL;
    int rc = h_netns_sh(NULL, 40000, &out, "iperf3 -c %s -t 10 -J", W.addr4);
    const char *r = out ? strstr(out, "\"sum_received\"") : NULL;
    const char *b = r ? strstr(r, "\"bits_per_second\":") : NULL;
    double v = b ? atof(b + strlen("\"bits_per_second\":")) / 1e6 : -1;
    cr_assert(rc == 0 && v >= 0, "iperf3 failed: %.600s", out ? out : "");
    free(out);
    return v;
}

/* What the issue asks of the tunnel on a bad link: 200 ms RTT, 10 Mbit/s, 10% and then 30%
 * loss both ways (the emulator's, on every packet of the session), ping answers and iperf3's
 * TCP keeps moving. The figures are printed, not asserted (make bench compares them with
 * WireGuard and OpenVPN); what is asserted is that data got through at all. */
Test(l3, iperf3_at_10_and_30_percent_loss_200ms_rtt, .timeout = 240) {
    hub_up_link(NULL, 1, 0.10);
    h_netns_spawn_in(W.far);
    char *argv[] = {"iperf3", "-s", "-p", "5201", "--forceflush", NULL};
    h_proc *srv = h_spawn("iperf3-server", argv);
    h_netns_spawn_in(NULL);
    cr_assert(h_wait_log(srv, "Server listening", 5000));
    const char *hx[] = {"--tun-allow", "tcp:5201", "--tun-allow", "icmp", NULL};
    house_up(hx);
    cr_assert_eq(ping(NULL, W.addr4, 10), 0, "no ping through at 10%% loss");
    double r10 = iperf3();
    /* 30%: the emulator's loss changed in place; the tunnel and the server stay up. */
    linkem_set("loss=0.30");
    cr_assert_eq(ping(NULL, W.addr4, 20), 0, "no ping through at 30%% loss");
    double r30 = iperf3();
    printf("l3 iperf3 through the tunnel, 10 Mbit/s, 200 ms RTT: %.2f Mbit/s at 10%% loss, "
           "%.2f Mbit/s at 30%%\n",
           r10, r30);
    cr_assert_gt(r10, 0.0, "nothing got through at 10%% loss");
    cr_assert_gt(r30, 0.0, "nothing got through at 30%% loss");
}

typedef struct path_mtu_want {
    const h_proc *p;
    int lo, hi, last;
} path_mtu_want;

/* The last tunnel MTU p logged (event=tun_path_mtu) is within [lo, hi]. */
static int path_mtu_found(void *ud) {
    path_mtu_want *w = ud;
    size_t len;
    char *log = h_read_file(w->p->log, &len);
    const char *l = NULL;
    for (const char *q = log; q && (q = strstr(q, "event=tun_path_mtu")); q++)
        l = q;
    const char *m = l ? strstr(l, " mtu=") : NULL;
    w->last = m ? atoi(m + 5) : 0;
    free(log);
    return w->last >= w->lo && w->last <= w->hi;
}

/* A UDP path narrower than the tunnel needs that drops what does not fit without a word (no
 * ICMP "fragmentation needed" comes back: a path MTU black hole, made here by nftables in far
 * for UDP packets over 1300 bytes): both sessions find the path's size by probing (proto/
 * rudp_pmtu.h), each daemon logs the tunnel's smaller MTU and answers larger packets with ICMP
 * "too big" carrying it, and TCP through the tunnel then works both ways in smaller segments. */
Test(l3, a_narrow_udp_path_that_sends_no_icmp_is_found_by_probing) {
    hub_up(NULL);
    echo_up(W.far, "7");
    char *out = NULL;
    int rc = h_netns_sh(W.far, 5000, &out,
                        "nft add table inet gpmtu && "
                        "nft add chain inet gpmtu in '{ type filter hook input priority 0; }' && "
                        "nft add chain inet gpmtu out '{ type filter hook output priority 0; }' && "
                        "nft add rule inet gpmtu in iifname vfar meta l4proto udp meta length "
                        "'>' 1300 drop && "
                        "nft add rule inet gpmtu out oifname vfar meta l4proto udp meta length "
                        "'>' 1300 drop");
    cr_assert_eq(rc, 0, "nft: %s", out ? out : "");
    free(out);
    const char *hx[] = {"--tun-allow", "tcp:7", "--tun-allow", "icmp", NULL};
    house_up(hx);
    /* The hub's TCP sends full segments at first (the grant's MTU, 1280): they vanish until
     * the bridge's session has found the path, then come back as "too big" and shrink. The
     * echo's replies from far go through the house's the same way. */
    double r = echo_bytes(W.addr4, 7, 1 << 20, 60000);
    printf("l3 echo over a 1300-byte UDP path with no ICMP: 1 MiB at %.1f Mbit/s\n", r);
    /* 1300 less the UDP/IPv4 headers, the session's and the datagram's overheads, within the
     * search's step (it logs each size it climbs to). */
    int fits = 1300 - 28 - (int)GP_RUDP_DGRAM_OVERHEAD(1);
    path_mtu_want pw = {W.bridge, fits - GP_PMTU_STEP - 1, fits, 0};
    cr_assert(h_wait(path_mtu_found, &pw, 15000), "the bridge's tunnel MTU: %d, the path fits %d",
              pw.last, fits);
    int mtu = pw.last;
    fits = 1300 - 28 - (int)GP_RUDP_DGRAM_OVERHEAD(0);
    pw = (path_mtu_want){W.house, fits - GP_PMTU_STEP - 1, fits, 0};
    cr_assert(h_wait(path_mtu_found, &pw, 15000), "the house's tunnel MTU: %d, the path fits %d",
              pw.last, fits);
    /* A ping that does not fit, with DF: the answer is "too big" with that MTU, not silence. */
    out = NULL;
    h_netns_sh(NULL, 10000, &out, "ping -n -c 3 -i 0.3 -W 2 -M do -s %d %s 2>&1", mtu + 100,
               W.addr4);
    char want[32];
    snprintf(want, sizeof want, "mtu = %d", mtu);
    cr_assert(out && (strstr(out, want) || strstr(out, "mtu=")), "ping: %s", out ? out : "");
    free(out);
    /* And one that fits crosses. */
    cr_assert_eq(
        h_netns_sh(NULL, 10000, NULL, "ping -n -c 3 -i 0.3 -W 2 -M do -s %d %s", mtu - 28, W.addr4),
        0);
}
