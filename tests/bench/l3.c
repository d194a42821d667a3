/* l3.c — `make bench` suite l3: Ghost Port's L3 tunnel (proto/TUN.md: IP packets in rudp://
 * datagrams, FEC, no retransmission) against the VPNs people would pick instead, all Debian
 * packages — wireguard-go (configured with wg), OpenVPN over UDP and over TCP (static key),
 * tinc 1.0 (router mode) — and against no tunnel at all ("direct"), on the links suite's
 * emulated link (netlab.h, linkem_tool.c: 10 Mbit/s bottleneck, 128 KiB queue, seeded loss,
 * RTT 200 ms). Each tunnel has its own far namespace and its own identical link (same seed:
 * the same packet numbers are lost); all of them run at the same time, so every comparison is
 * paired in time. Per loss rate (0/5/10/20/30%, QUICK: 0/30): one iperf3 TCP transfer through
 * every tunnel at once (goodput, and the link's bytes per useful byte), with the kernel's
 * default congestion control and again with cubic when the default is another; then pings
 * through every tunnel at once (p50, p99, lost). Then, with no emulator (a veth), packets per
 * second and daemon CPU per packet through Ghost Port and wireguard-go. Reports, never asserts
 * a number; exit 1 when an installed tunnel does not come up (or carries nothing at 0% loss),
 * 77 when this machine cannot run the lab. I/O side, test-only; needs root. See l3.md. */
#include "../harness/harness.h"
#include "bench.h"
#include "netlab.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUITE "l3"
/* Fixed ports: the namespaces are this run's own. */
#define P_WS 18080
#define P_RUDP 18443
#define P_IPERF "5201"
#define P_WG 51820
#define P_OV_UDP "1194"
#define P_OV_TCP "1195"
#define MAX_PINGS 400
#define MAX_LOSSES 5
#define MAX_PASSES 2

enum { T_GP, T_WG, T_OVU, T_OVT, T_TINC, T_DIRECT, T_N };
static const char *const T_NAME[T_N] = {"ghostport",   "wireguard", "openvpn_udp",
                                        "openvpn_tcp", "tinc",      "direct"};
/* Loopback: Ghost Port and wireguard-go over a plain veth, and the veth itself. */
enum { LO_GP, LO_WG, LO_DIRECT, LO_N };
static const int LO_KIND[LO_N] = {T_GP, T_WG, T_DIRECT};

enum { ST_NONE, ST_UP, ST_SKIPPED, ST_FAILED };

/* One tunnel: its hub end in the hub namespace (this process's), its far end in far_ns, over
 * the underlay hub_ep <-> far_ep (a linkem link, or the loopback veth). */
typedef struct tunnel {
    int kind;
    char label[24]; /* "ghostport", "lo_wireguard" */
    char far_ns[32];
    char hub_ep[16], far_ep[16];     /* underlay */
    char hub_addr[48], far_addr[48]; /* inside the tunnel */
    char ifh[16], iff[16];           /* its devices */
    h_proc *hub_d, *far_d, *srv; /* hub and far daemons (Ghost Port: bridge, house), iperf3 -s */
    const nl_link *link;         /* NULL on loopback */
    int state;                   /* ST_* */
    char why[128];
} tunnel;

static tunnel g_t[T_N], g_lo[LO_N];
static nl_link g_link[T_N];
static char g_lo_ns[32];
static h_proc *g_bridge;
static char g_pub[65];  /* the bridges' rudp public key */
static char g_dir[512]; /* the run's log directory (h_dir) */
static const char *g_log_level;
static int g_quick, g_failed;
static char B_WGGO[PATH_MAX], B_WG[PATH_MAX], B_OPENVPN[PATH_MAX], B_TINCD[PATH_MAX],
    B_IPERF[PATH_MAX], B_PING[PATH_MAX], B_SS[PATH_MAX];

/* --- small helpers ------------------------------------------------------------------------- */

/* A tunnel that does not work where it must: reported, the suite goes on, exits 1. */
static void fail_tunnel(tunnel *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_tunnel(tunnel *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof t->why, fmt, ap);
    va_end(ap);
    for (char *p = t->why; *p; p++)
        if (*p == ' ')
            *p = '_';
    t->state = ST_FAILED;
    g_failed = 1;
    bench_result(SUITE, "failed", "transport=%s reason=%s", t->label, t->why);
    fprintf(stderr, "l3: %s: did not work: %s (logs in %s)\n", t->label, t->why, g_dir);
}

static void skip_tunnel(tunnel *t, const char *why) {
    snprintf(t->why, sizeof t->why, "%s", why);
    t->state = ST_SKIPPED;
    bench_result(SUITE, "skipped", "transport=%s reason=%s", t->label, why);
}

/* A process in t's far namespace. */
static h_proc *spawn_far(const tunnel *t, const char *name, const char *const *argv) {
    return nl_spawn_in(t->far_ns, name, argv);
}

/* `wg genkey` into <dir>/<name>.key (0600) and its public key into pub. 0 or -1. */
static int wg_keypair(const char *name, char *keyfile, size_t cap, char pub[64]) {
    char *out = NULL, *err = NULL; /* stderr apart: wg warns about the file mode there */
    snprintf(keyfile, cap, "%s/%s.key", g_dir, name);
    int rc = h_run((const char *const[]){B_WG, "genkey", NULL}, 5000, &out, NULL, &err);
    free(err);
    if (rc != 0 || !out) {
        free(out);
        return -1;
    }
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ssize_t n = fd >= 0 ? write(fd, out, strlen(out)) : -1;
    if (fd >= 0)
        close(fd);
    free(out);
    out = err = NULL;
    rc = n > 0 ? h_run_in((const char *const[]){B_WG, "pubkey", NULL}, keyfile, 5000, &out, NULL,
                          &err)
               : -1;
    free(err);
    if (rc != 0 || !out) {
        free(out);
        return -1;
    }
    snprintf(pub, 64, "%.*s", (int)strcspn(out, "\r\n"), out);
    free(out);
    return 0;
}

/* The address the house was granted, from its log line event=tun_up (addr=V4,V6). */
static int house_addr(const h_proc *house, char *out, size_t cap) {
    size_t len;
    char *log = h_read_file(house->log, &len);
    const char *l = log ? strstr(log, "event=tun_up") : NULL;
    const char *a = l ? strstr(l, " addr=") : NULL;
    int ok = 0;
    if (a) {
        a += 6;
        if (*a == '"')
            a++;
        size_t n = strcspn(a, ", \"\n");
        if (n > 0 && n < cap) {
            memcpy(out, a, n);
            out[n] = '\0';
            ok = 1;
        }
    }
    free(log);
    return ok;
}

/* --- the tunnels ------------------------------------------------------------------------------ */

static void tunnel_init(tunnel *t, int kind, const char *label, const char *far_ns,
                        const char *hub_ep, const char *far_ep, const nl_link *link) {
    memset(t, 0, sizeof *t);
    t->kind = kind;
    snprintf(t->label, sizeof t->label, "%s", label);
    snprintf(t->far_ns, sizeof t->far_ns, "%s", far_ns);
    snprintf(t->hub_ep, sizeof t->hub_ep, "%s", hub_ep);
    snprintf(t->far_ep, sizeof t->far_ep, "%s", far_ep);
    t->link = link;
}

/* Ghost Port: house <id> in the far namespace on rudp://<hub_ep>, --tun gph0, the iperf3 port
 * and ICMP allowed; its address comes with the grant (gp_wait). */
static void gp_start(tunnel *t, const char *id) {
    char secret[65], url[64], name[32];
    h_register(id, secret);
    snprintf(url, sizeof url, "rudp://%s:%d", t->hub_ep, P_RUDP);
    snprintf(name, sizeof name, "house-%s", t->label);
    const char *hv[] = {h_bin("ghostport-house"),
                        "--id",
                        id,
                        "--secret",
                        secret,
                        "--bridge",
                        url,
                        "--bridge-key",
                        g_pub,
                        "--upstream",
                        "http://127.0.0.1:1",
                        "--tun",
                        "gph0",
                        "--tun-allow",
                        "tcp:" P_IPERF,
                        "--tun-allow",
                        "udp:" P_IPERF,
                        "--tun-allow",
                        "icmp",
                        "--log-level",
                        g_log_level,
                        NULL};
    t->hub_d = g_bridge;
    t->far_d = spawn_far(t, name, hv);
    snprintf(t->hub_addr, sizeof t->hub_addr, "100.96.0.1");
}

static void gp_wait(tunnel *t) {
    if (!nl_wait_log_alive(t->far_d, "event=tun_up", 20000))
        fail_tunnel(t, "the house got no L3 grant in 20 s (see %s)", t->far_d->log);
    else if (!house_addr(t->far_d, t->far_addr, sizeof t->far_addr))
        fail_tunnel(t, "no addr= in the house's event=tun_up line");
}

/* wireguard-go at both ends (devices ifh, iff; UDP port), keys from wg genkey, configured
 * with wg set and ip; addresses 10.<net>.0.1 (hub) and .2 (far). */
static void wg_start(tunnel *t, int net, int port, const char *tag) {
    unsigned p6 = (unsigned)getpid() % 1000000u;
    snprintf(t->ifh, sizeof t->ifh, "gpw%u%sh", p6, tag);
    snprintf(t->iff, sizeof t->iff, "gpw%u%sf", p6, tag);
    snprintf(t->hub_addr, sizeof t->hub_addr, "10.%d.0.1", net);
    snprintf(t->far_addr, sizeof t->far_addr, "10.%d.0.2", net);
    char kh[PATH_MAX], kf[PATH_MAX], ph[64], pf[64], nh[40], nf[40];
    snprintf(nh, sizeof nh, "wg-%s-hub", t->label);
    snprintf(nf, sizeof nf, "wg-%s-far", t->label);
    if (wg_keypair(nh, kh, sizeof kh, ph) != 0 || wg_keypair(nf, kf, sizeof kf, pf) != 0) {
        fail_tunnel(t, "wg genkey/pubkey failed");
        return;
    }
    t->hub_d = h_spawn(nh, (char *const[]){B_WGGO, "-f", t->ifh, NULL});
    t->far_d = spawn_far(t, nf, (const char *const[]){B_WGGO, "-f", t->iff, NULL});
    /* Their configuration sockets (the same directory in every namespace). */
    char sh[PATH_MAX], sf[PATH_MAX];
    snprintf(sh, sizeof sh, "/var/run/wireguard/%s.sock", t->ifh);
    snprintf(sf, sizeof sf, "/var/run/wireguard/%s.sock", t->iff);
    for (double end = nl_now_ms() + 5000; nl_now_ms() < end;) {
        if (access(sh, F_OK) == 0 && access(sf, F_OK) == 0)
            break;
        nl_sleep_ms(20);
    }
    char ports[16], eh[40], ef[40], ah[56], af[56], ch[56], cf[56];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(eh, sizeof eh, "%s:%d", t->hub_ep, port);
    snprintf(ef, sizeof ef, "%s:%d", t->far_ep, port);
    snprintf(ah, sizeof ah, "%s/32", t->hub_addr);
    snprintf(af, sizeof af, "%s/32", t->far_addr);
    snprintf(ch, sizeof ch, "%s/24", t->hub_addr);
    snprintf(cf, sizeof cf, "%s/24", t->far_addr);
    int rc =
        nl_run((const char *const[]){B_WG, "set", t->ifh, "private-key", kh, "listen-port", ports,
                                     "peer", pf, "endpoint", ef, "allowed-ips", af, NULL});
    rc |= nl_run((const char *const[]){nl_ip_bin, "netns", "exec", t->far_ns, B_WG, "set", t->iff,
                                       "private-key", kf, "listen-port", ports, "peer", ph,
                                       "endpoint", eh, "allowed-ips", ah, NULL});
    rc |= nl_ip("addr", "add", ch, "dev", t->ifh, NULL);
    rc |= nl_ip("link", "set", t->ifh, "up", NULL);
    rc |= nl_ip("-n", t->far_ns, "addr", "add", cf, "dev", t->iff, NULL);
    rc |= nl_ip("-n", t->far_ns, "link", "set", t->iff, "up", NULL);
    if (rc != 0)
        fail_tunnel(t, "configuring wireguard-go failed (see setup.log, %s)", t->hub_d->log);
}

/* OpenVPN point-to-point with a static key (--secret; AES-256-CBC + HMAC-SHA256: 2.6 has no
 * default cipher for it that OpenSSL 3 still ships), over UDP or TCP; the hub end listens. */
static void ov_start(tunnel *t, int tcp) {
    static char key[PATH_MAX];
    if (!key[0]) {
        snprintf(key, sizeof key, "%s/openvpn.key", g_dir);
        if (nl_run((const char *const[]){B_OPENVPN, "--genkey", "secret", key, NULL}) != 0) {
            key[0] = '\0';
            fail_tunnel(t, "openvpn --genkey failed (see setup.log)");
            return;
        }
    }
    unsigned p6 = (unsigned)getpid() % 1000000u;
    snprintf(t->ifh, sizeof t->ifh, "gp%c%uh", tcp ? 'c' : 'u', p6);
    snprintf(t->iff, sizeof t->iff, "gp%c%uf", tcp ? 'c' : 'u', p6);
    snprintf(t->hub_addr, sizeof t->hub_addr, "10.%d.0.1", tcp ? 203 : 202);
    snprintf(t->far_addr, sizeof t->far_addr, "10.%d.0.2", tcp ? 203 : 202);
    const char *port = tcp ? P_OV_TCP : P_OV_UDP;
    char name_h[40], name_f[40];
    snprintf(name_h, sizeof name_h, "%s-hub", t->label);
    snprintf(name_f, sizeof name_f, "%s-far", t->label);
    /* The same options both ends; the hub listens, the far end dials it. */
    const char *hv[32], *fv[32];
    const char *both[] = {B_OPENVPN,     "--dev-type", "tun",    "--secret", key, "--cipher",
                          "AES-256-CBC", "--auth",     "SHA256", "--verb",   "3", NULL};
    int nh = 0, nf = 0;
    for (int i = 0; both[i]; i++)
        hv[nh++] = fv[nf++] = both[i];
    const char *h_only[] = {"--dev",
                            t->ifh,
                            "--ifconfig",
                            t->hub_addr,
                            t->far_addr,
                            "--proto",
                            tcp ? "tcp-server" : "udp",
                            "--lport",
                            port,
                            NULL};
    const char *f_only[] = {"--dev",
                            t->iff,
                            "--ifconfig",
                            t->far_addr,
                            t->hub_addr,
                            "--proto",
                            tcp ? "tcp-client" : "udp",
                            "--remote",
                            t->hub_ep,
                            port,
                            NULL};
    for (int i = 0; h_only[i]; i++)
        hv[nh++] = h_only[i];
    for (int i = 0; f_only[i]; i++)
        fv[nf++] = f_only[i];
    if (tcp) { /* without it Nagle holds a ping behind unacknowledged bytes: up to an RTT more */
        hv[nh++] = fv[nf++] = "--socket-flags";
        hv[nh++] = fv[nf++] = "TCP_NODELAY";
    }
    hv[nh] = fv[nf] = NULL;
    t->hub_d = h_spawn(name_h, (char *const *)hv);
    t->far_d = spawn_far(t, name_f, fv);
}

static void ov_wait(tunnel *t) {
    const char *done = "Initialization Sequence Completed";
    if (!nl_wait_log_alive(t->hub_d, done, 20000) || !nl_wait_log_alive(t->far_d, done, 20000))
        fail_tunnel(t, "openvpn did not complete its initialisation in 20 s (see %s)",
                    t->far_d->log);
}

/* tinc 1.0, router mode, nodes "hub" and "far" (far connects), 2048-bit RSA keys made by
 * tincd -K, AES-256-CBC + SHA256 (1.0's default is Blowfish, which OpenSSL 3 no longer ships
 * by default); each node's tinc-up gives its device its address. */
static void tinc_conf(tunnel *t, const char *node, const char *dev, const char *addr, char *dir,
                      size_t cap) {
    char p[PATH_MAX + 64], text[1024];
    snprintf(dir, cap, "%s/tinc-%s", g_dir, node);
    snprintf(p, sizeof p, "%s/hosts", dir);
    mkdir(dir, 0700);
    mkdir(p, 0700);
    snprintf(text, sizeof text,
             "Name = %s\nMode = router\nDevice = /dev/net/tun\nInterface = %s\n"
             "AddressFamily = ipv4\n%s",
             node, dev, strcmp(node, "hub") != 0 ? "ConnectTo = hub\n" : "");
    snprintf(p, sizeof p, "%s/tinc.conf", dir);
    nl_write_file(p, text, 0600);
    /* The hub's host file says where to reach it; both say what they route and how they
     * encrypt what is sent to them. */
    int hub = strcmp(node, "hub") == 0;
    snprintf(text, sizeof text, "%s%s%sSubnet = %s/32\nCipher = aes-256-cbc\nDigest = sha256\n",
             hub ? "Address = " : "", hub ? t->hub_ep : "", hub ? "\n" : "", addr);
    snprintf(p, sizeof p, "%s/hosts/%s", dir, node);
    nl_write_file(p, text, 0600);
    snprintf(
        text, sizeof text,
        "#!/bin/sh\n%.400s addr add %s/24 dev \"$INTERFACE\"\n%.400s link set \"$INTERFACE\" up\n",
        nl_ip_bin, addr, nl_ip_bin);
    snprintf(p, sizeof p, "%s/tinc-up", dir);
    nl_write_file(p, text, 0700);
}

/* Copies host file <node> from one tinc directory to the other. 0 or -1. */
static int tinc_share(const char *from, const char *to, const char *node) {
    char a[PATH_MAX + 32], b[PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/hosts/%s", from, node);
    snprintf(b, sizeof b, "%s/hosts/%s", to, node);
    size_t len;
    char *text = h_read_file(a, &len);
    if (!text)
        return -1;
    nl_write_file(b, text, 0600);
    free(text);
    return 0;
}

static void tinc_start(tunnel *t) {
    unsigned p6 = (unsigned)getpid() % 1000000u;
    snprintf(t->ifh, sizeof t->ifh, "gpn%uh", p6);
    snprintf(t->iff, sizeof t->iff, "gpn%uf", p6);
    snprintf(t->hub_addr, sizeof t->hub_addr, "10.204.0.1");
    snprintf(t->far_addr, sizeof t->far_addr, "10.204.0.2");
    char dh[600], df[600];
    tinc_conf(t, "hub", t->ifh, t->hub_addr, dh, sizeof dh);
    tinc_conf(t, "far", t->iff, t->far_addr, df, sizeof df);
    if (nl_run((const char *const[]){B_TINCD, "-c", dh, "-K2048", NULL}) != 0 ||
        nl_run((const char *const[]){B_TINCD, "-c", df, "-K2048", NULL}) != 0 ||
        tinc_share(dh, df, "hub") != 0 || tinc_share(df, dh, "far") != 0) {
        fail_tunnel(t, "tincd -K failed (see setup.log)");
        return;
    }
    char pidh[640], pidf[640];
    snprintf(pidh, sizeof pidh, "--pidfile=%s/tinc.pid", dh);
    snprintf(pidf, sizeof pidf, "--pidfile=%s/tinc.pid", df);
    t->hub_d = h_spawn("tinc-hub", (char *const[]){B_TINCD, "-c", dh, "-D", "-d1", pidh, NULL});
    t->far_d =
        spawn_far(t, "tinc-far", (const char *const[]){B_TINCD, "-c", df, "-D", "-d1", pidf, NULL});
}

/* --- pings --------------------------------------------------------------------------------- */

typedef struct ping_res {
    int have, sent, recv;
    double p50, p99, max;
} ping_res;

static void ping_start(nl_task *task, const tunnel *t, int count, const char *interval,
                       const char *tag) {
    char n[16], log[PATH_MAX + 64];
    snprintf(n, sizeof n, "%d", count);
    snprintf(log, sizeof log, "%s/ping-%s-%s.log", g_dir, t->label, tag);
    nl_task_start(
        task,
        (const char *const[]){B_PING, "-n", "-c", n, "-i", interval, "-W", "3", t->far_addr, NULL},
        log, 0);
}

/* Parses a ping's output: every reply's time (duplicates left out), and the summary's counts
 * (when ping was cut before it: count sent, the replies seen received). */
static ping_res ping_parse(const char *log, int count) {
    ping_res r;
    memset(&r, 0, sizeof r);
    size_t len;
    char *text = h_read_file(log, &len);
    if (!text)
        return r;
    double rtt[MAX_PINGS];
    int n = 0, sent = -1, recv = -1;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        const char *tm = strstr(l, "time=");
        if (tm && !strstr(l, "DUP!") && n < MAX_PINGS)
            rtt[n++] = atof(tm + 5);
        const char *pt = strstr(l, " packets transmitted, ");
        if (pt) {
            sent = atoi(l);
            recv = atoi(pt + strlen(" packets transmitted, "));
        }
    }
    free(text);
    r.have = 1;
    r.sent = sent >= 0 ? sent : count;
    r.recv = recv >= 0 ? recv : n;
    qsort(rtt, (size_t)n, sizeof *rtt, bench_cmp_double);
    r.p50 = bench_pct(rtt, (size_t)n, 50);
    r.p99 = bench_pct(rtt, (size_t)n, 99);
    r.max = n ? rtt[n - 1] : 0;
    return r;
}

/* Pings through every tunnel of ts at once (count at interval), bounded; results into out. */
static void ping_phase(tunnel *const *ts, int nt, int count, const char *interval, const char *tag,
                       ping_res *out) {
    nl_task task[T_N];
    for (int i = 0; i < nt; i++)
        ping_start(&task[i], ts[i], count, interval, tag);
    double end = nl_now_ms() + count * atof(interval) * 1000 + 8000;
    for (int done = 0; !done && nl_now_ms() < end; nl_sleep_ms(20)) {
        done = 1;
        for (int i = 0; i < nt; i++)
            done &= nl_task_done(&task[i]);
    }
    for (int i = 0; i < nt; i++) {
        nl_task_stop(&task[i], 500);
        out[i] = ping_parse(task[i].log, count);
    }
}

/* --- TCP transfers -------------------------------------------------------------------------- */

typedef struct tcp_res {
    int have, stalled, cut, from_server;
    double kbit, rx_bytes, secs, retrans, down, up, qdrop, ldrop;
    char cc[16], err[64];
} tcp_res;

static double jnum(json_t *o, const char *a, const char *b) {
    json_t *x = json_object_get(o, a);
    if (x && b)
        x = json_object_get(x, b);
    return x && json_is_number(x) ? json_number_value(x) : -1;
}

/* The first JSON document of text (from its first '{'), or NULL (none, or not whole yet). */
static json_t *first_json(const char *text) {
    const char *brace = text ? strchr(text, '{') : NULL;
    json_error_t jerr;
    return brace ? json_loads(brace, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
}

/* What iperf3 -J printed into log, or NULL. */
static json_t *iperf_json(const char *log) {
    size_t len;
    char *text = h_read_file(log, &len);
    json_t *j = first_json(text);
    free(text);
    return j;
}

/* The receiver's bytes and seconds of an iperf3 -J document (client or server), into r. 1 when
 * it has them. */
static int tcp_received(json_t *j, tcp_res *r) {
    json_t *end = json_object_get(j, "end");
    double bytes = jnum(end, "sum_received", "bytes"), secs = jnum(end, "sum_received", "seconds");
    if (bytes < 0 || secs <= 0)
        return 0;
    r->rx_bytes = bytes;
    r->secs = secs;
    r->kbit = bytes * 8 / secs / 1000;
    return 1;
}

/* The client's account (log): its error, the sender's retransmissions and congestion control,
 * and — when it ended normally (no error) — the receiver's figures, which the server sent it.
 * 1 when those are in r. */
static int tcp_parse(const char *log, tcp_res *r) {
    json_t *j = iperf_json(log);
    if (!j) {
        snprintf(r->err, sizeof r->err, "no_output");
        return 0;
    }
    json_t *end = json_object_get(j, "end");
    double rt = jnum(end, "sum_sent", "retransmits");
    r->retrans = rt > 0 ? rt : 0;
    json_t *cc = json_object_get(end, "sender_tcp_congestion");
    if (json_is_string(cc))
        snprintf(r->cc, sizeof r->cc, "%s", json_string_value(cc));
    json_t *e = json_object_get(j, "error");
    int ok = 0;
    if (json_is_string(e)) {
        snprintf(r->err, sizeof r->err, "%s", json_string_value(e));
        for (char *p = r->err; *p; p++)
            if (*p == ' ' || *p == '=' || *p == '\t')
                *p = '_';
    } else {
        ok = tcp_received(j, r);
    }
    json_decref(j);
    return ok;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The server's account of the first test it reported after offset off of its log (iperf3 -s
 * -J prints one document per test, also when the client ended it early), waiting until
 * deadline (ms) for it. 1 when found. */
static int server_received(const tunnel *t, long off, double deadline, tcp_res *r) {
    for (;; nl_sleep_ms(100)) {
        size_t len;
        char *text = h_read_file(t->srv->log, &len);
        json_t *j = text && (long)len > off ? first_json(text + off) : NULL;
        free(text);
        if (j) {
            int ok = tcp_received(j, r);
            json_decref(j);
            return ok;
        }
        if (nl_now_ms() >= deadline)
            return 0;
    }
}

/* One iperf3 TCP transfer (secs s, sender in the hub: the data goes hub -> far) through every
 * tunnel of ts at once; cc NULL: the kernel's default. A client still running secs + grace_s
 * after its start (connecting, or exchanging the results over a lossy control connection) is
 * cut (SIGTERM: it tells the server); what the receiver got is then the server's account.
 * Each link's counters are read when its transfer starts and when it ends. */
static void tcp_phase(tunnel *const *ts, int nt, int secs, int grace_s, const char *cc,
                      const char *tag, tcp_res *out) {
    nl_task task[T_N];
    nl_snap s0[T_N], s1[T_N];
    long off[T_N];
    char t_s[16];
    snprintf(t_s, sizeof t_s, "%d", secs);
    for (int i = 0; i < nt; i++) {
        memset(&out[i], 0, sizeof out[i]);
        char log[PATH_MAX + 64];
        snprintf(log, sizeof log, "%s/tcp-%s-%s.json", g_dir, ts[i]->label, tag);
        const char *argv[] = {B_IPERF, "-c", ts[i]->far_addr,     "-p",    P_IPERF,          "-t",
                              t_s,     "-J", "--connect-timeout", "15000", cc ? "-C" : NULL, cc,
                              NULL};
        off[i] = file_size(ts[i]->srv->log);
        if (ts[i]->link)
            s0[i] = nl_lk_stats(ts[i]->link);
        nl_task_start(&task[i], argv, log, 0);
    }
    int left = nt;
    double end = nl_now_ms() + (secs + grace_s) * 1000.0;
    while (left > 0 && nl_now_ms() < end) {
        nl_sleep_ms(20);
        for (int i = 0; i < nt; i++)
            if (!out[i].have && nl_task_done(&task[i])) {
                out[i].have = 1, left--;
                if (ts[i]->link)
                    s1[i] = nl_lk_stats(ts[i]->link);
            }
    }
    for (int i = 0; i < nt; i++)
        if (!out[i].have) {
            nl_task_stop(&task[i], 3000);
            if (ts[i]->link)
                s1[i] = nl_lk_stats(ts[i]->link);
            out[i].have = out[i].cut = 1;
        }
    double deadline = nl_now_ms() + 10000;
    for (int i = 0; i < nt; i++) {
        tcp_res *r = &out[i];
        if (!tcp_parse(task[i].log, r))
            r->from_server = server_received(ts[i], off[i], deadline, r);
        if (r->cut && !r->err[0])
            snprintf(r->err, sizeof r->err, "cut_after_%ds", secs + grace_s);
        r->stalled = r->rx_bytes <= 0;
        if (ts[i]->link) {
            r->down = s1[i].down_in_bytes - s0[i].down_in_bytes;
            r->up = s1[i].up_in_bytes - s0[i].up_in_bytes;
            r->qdrop = s1[i].down_qdrop - s0[i].down_qdrop + s1[i].up_qdrop - s0[i].up_qdrop;
            r->ldrop = s1[i].down_loss - s0[i].down_loss + s1[i].up_loss - s0[i].up_loss;
        }
    }
}

/* --- setup ------------------------------------------------------------------------------------ */

/* Up: a ping through t answers within ms. */
static int ping_through(const tunnel *t, int ms) {
    for (double end = nl_now_ms() + ms; nl_now_ms() < end;) {
        if (h_run((const char *const[]){B_PING, "-n", "-c", "1", "-W", "1", t->far_addr, NULL},
                  3000, NULL, NULL, NULL) == 0)
            return 1;
        nl_sleep_ms(100);
    }
    return 0;
}

/* iperf3 -s bound to t's far address, one JSON document per test (-J; flushed at once). */
static void iperf_server(tunnel *t) {
    char name[40], want[64];
    snprintf(name, sizeof name, "iperf3-s-%s", t->label);
    t->srv = spawn_far(t, name,
                       (const char *const[]){B_IPERF, "-s", "-B", t->far_addr, "-p", P_IPERF, "-J",
                                             "--forceflush", NULL});
    /* -J prints nothing before the first test: listening is read from the socket table. */
    snprintf(want, sizeof want, "%s:" P_IPERF " ", t->far_addr);
    for (double end = nl_now_ms() + 10000; nl_now_ms() < end && h_alive(t->srv); nl_sleep_ms(50)) {
        char *out = NULL;
        int rc =
            h_run((const char *const[]){nl_ip_bin, "netns", "exec", t->far_ns, B_SS, "-Hltn", NULL},
                  5000, &out, NULL, NULL);
        int up = rc == 0 && out && strstr(out, want);
        free(out);
        if (up)
            return;
    }
    fail_tunnel(t, "iperf3 -s on %s did not listen (see %s)", t->far_addr, t->srv->log);
}

/* The kinds asked for (L3_KINDS=ghostport,wireguard,...; all by default). */
static int wanted(int kind) {
    const char *k = getenv("L3_KINDS");
    if (!k || !*k)
        return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", k);
    for (char *sv = NULL, *w = strtok_r(buf, ",", &sv); w; w = strtok_r(NULL, ",", &sv))
        if (strcmp(w, T_NAME[kind]) == 0)
            return 1;
    return 0;
}

/* Starts one kind of tunnel on t (its binaries checked: skipped when missing). */
static void start_kind(tunnel *t, int lo) {
    switch (t->kind) {
    case T_GP:
        gp_start(t, lo ? "l3-lo" : "l3-link");
        break;
    case T_WG:
        if (!B_WGGO[0] || !B_WG[0])
            skip_tunnel(t, B_WGGO[0] ? "wg_not_installed_(wireguard-tools)"
                                     : "wireguard-go_not_installed");
        else
            wg_start(t, lo ? 211 : 201, lo ? P_WG + 1 : P_WG, lo ? "l" : "");
        break;
    case T_OVU:
    case T_OVT:
        if (!B_OPENVPN[0])
            skip_tunnel(t, "openvpn_not_installed");
        else
            ov_start(t, t->kind == T_OVT);
        break;
    case T_TINC:
        if (!B_TINCD[0])
            skip_tunnel(t, "tincd_not_installed_(tinc)");
        else
            tinc_start(t);
        break;
    case T_DIRECT:
        snprintf(t->hub_addr, sizeof t->hub_addr, "%s", t->hub_ep);
        snprintf(t->far_addr, sizeof t->far_addr, "%s", t->far_ep);
        break;
    }
}

/* Waits for t to carry a ping, then starts its iperf3 server. */
static void finish_kind(tunnel *t) {
    if (t->state != ST_NONE)
        return;
    if (t->kind == T_GP)
        gp_wait(t);
    else if (t->kind == T_OVU || t->kind == T_OVT)
        ov_wait(t);
    if (t->state != ST_NONE)
        return;
    if (!ping_through(t, 20000)) {
        fail_tunnel(t, "no ping through it to %s in 20 s at 0%% loss", t->far_addr);
        return;
    }
    iperf_server(t);
    if (t->state == ST_NONE)
        t->state = ST_UP;
}

static void setup(int loopback) {
    nl_init(SUITE, "L3_VERBOSE");
    snprintf(g_dir, sizeof g_dir, "%s", h_dir());
    g_log_level = getenv("L3_LOG_LEVEL") ? getenv("L3_LOG_LEVEL") : "info";
    if (!nl_find_bin("iperf3", B_IPERF, sizeof B_IPERF))
        nl_skip("no_iperf3_(Debian_package_iperf3)");
    if (!nl_find_bin("ss", B_SS, sizeof B_SS))
        nl_skip("no_ss_(Debian_package_iproute2)");
    if (!nl_find_bin("ping", B_PING, sizeof B_PING))
        nl_skip("no_ping_(Debian_package_iputils-ping)");
    if (!nl_find_bin("wireguard-go", B_WGGO, sizeof B_WGGO))
        B_WGGO[0] = '\0';
    if (!nl_find_bin("wg", B_WG, sizeof B_WG))
        B_WG[0] = '\0';
    if (!nl_find_bin("openvpn", B_OPENVPN, sizeof B_OPENVPN))
        B_OPENVPN[0] = '\0';
    if (!nl_find_bin("tincd", B_TINCD, sizeof B_TINCD))
        B_TINCD[0] = '\0';
    nl_vlog("setup");
    for (int k = 0; k < T_N; k++) {
        nl_link_start(&g_link[k], T_NAME[k], k);
        tunnel_init(&g_t[k], k, T_NAME[k], g_link[k].ns, g_link[k].hub_ip, g_link[k].far_ip,
                    &g_link[k]);
    }
    if (loopback) { /* a plain veth, no emulator */
        unsigned p6 = (unsigned)getpid() % 1000000u;
        char vh[16], vf[16];
        snprintf(vh, sizeof vh, "gpv%uh", p6);
        snprintf(vf, sizeof vf, "gpv%uf", p6);
        nl_ns_add("lo", g_lo_ns, sizeof g_lo_ns);
        if (nl_ip("link", "add", vh, "type", "veth", "peer", "name", vf, "netns", g_lo_ns, NULL) ||
            nl_ip("addr", "add", "10.98.0.1/24", "dev", vh, NULL) ||
            nl_ip("link", "set", vh, "up", NULL) ||
            nl_ip("-n", g_lo_ns, "addr", "add", "10.98.0.2/24", "dev", vf, NULL) ||
            nl_ip("-n", g_lo_ns, "link", "set", vf, "up", NULL)) {
            fprintf(stderr, "l3: the loopback veth could not be made (see %s/setup.log)\n", g_dir);
            exit(1);
        }
        const char *lab[LO_N] = {"lo_ghostport", "lo_wireguard", "lo_direct"};
        for (int i = 0; i < LO_N; i++)
            tunnel_init(&g_lo[i], LO_KIND[i], lab[i], g_lo_ns, "10.98.0.1", "10.98.0.2", NULL);
    }
    nl_links_ready();
    nl_vlog("links ready");

    h_redis_start(0);
    char key[PATH_MAX];
    nl_rudp_keygen(g_dir, key, sizeof key, g_pub);
    g_bridge = nl_bridge(
        P_WS, P_RUDP, key, g_log_level,
        (const char *const[]){"--tun", "gpb0", "--tun-pool", "100.96.0.0/24,fd7a:6770::/64", NULL});
    if (!nl_wait_log_alive(g_bridge, "event=tun_listening", 10000)) {
        fprintf(stderr, "l3: the bridge's TUN device is not up (see %s)\n", g_bridge->log);
        exit(1);
    }
    nl_vlog("bridge up");
    for (int k = 0; k < T_N; k++)
        if (!wanted(k))
            g_t[k].state = ST_SKIPPED;
        else
            start_kind(&g_t[k], 0);
    for (int i = 0; loopback && i < LO_N; i++)
        start_kind(&g_lo[i], 1);
    nl_vlog("tunnels started");
    for (int k = 0; k < T_N; k++)
        finish_kind(&g_t[k]);
    for (int i = 0; loopback && i < LO_N; i++)
        finish_kind(&g_lo[i]);
    nl_vlog("tunnels up");
}

/* --- results -------------------------------------------------------------------------------- */

/* "%.*f" of v, or "na" when it has no value (v < 0). */
static const char *num(char *buf, size_t cap, double v, int prec) {
    if (v < 0)
        snprintf(buf, cap, "na");
    else
        snprintf(buf, cap, "%.*f", prec, v);
    return buf;
}

/* subject / baseline, "na" without a baseline figure, "inf" over a baseline of 0. */
static const char *ratio(char *buf, size_t cap, double s, double b) {
    if (s < 0 || b < 0)
        snprintf(buf, cap, "na");
    else if (b == 0)
        snprintf(buf, cap, s > 0 ? "inf" : "na");
    else
        snprintf(buf, cap, "%.2f", s / b);
    return buf;
}

static double wire_ratio(const tcp_res *r) {
    return r->rx_bytes > 0 ? (r->down + r->up) / r->rx_bytes : -1;
}

static double p99_of(const ping_res *p) {
    return p->recv > 0 ? p->p99 : -1;
}

/* One tunnel's line at one loss rate: the pings (pass 0 only) and the transfer of the pass. */
static void report(const tunnel *t, const char *kase, int lp, const ping_res *p, const tcp_res *r,
                   double rtt, double tail, int reconnects) {
    char line[1536], a[32], b[32], c[32], d[32];
    int n = snprintf(line, sizeof line, "transport=%s loss_pct=%d", t->label, lp);
    if (p) {
        double lost = p->sent > 0 ? 100.0 * (p->sent - p->recv) / p->sent : 0;
        n += snprintf(line + n, sizeof line - (size_t)n,
                      " ping_sent=%d ping_recv=%d ping_loss_pct=%.1f ping_p50_ms=%s ping_p99_ms=%s "
                      "ping_max_ms=%s ping_p99_rtt_ratio=%s",
                      p->sent, p->recv, lost, num(a, sizeof a, p->recv ? p->p50 : -1, 0),
                      num(b, sizeof b, p99_of(p), 0), num(c, sizeof c, p->recv ? p->max : -1, 0),
                      num(d, sizeof d, p->recv && rtt > 0 ? p->p99 / rtt : -1, 2));
    }
    n += snprintf(line + n, sizeof line - (size_t)n,
                  " cc=%s goodput_kbit_s=%.0f stalled=%d cut=%d rx_bytes=%.0f tcp_s=%.1f "
                  "retransmits=%.0f "
                  "wire_ratio=%s down_wire_ratio=%s up_wire_ratio=%s queue_drops=%.0f "
                  "loss_drops=%.0f tail_ms=%.0f",
                  r->cc[0] ? r->cc : "unknown", r->kbit, r->stalled, r->cut, r->rx_bytes, r->secs,
                  r->retrans, num(a, sizeof a, wire_ratio(r), 3),
                  num(b, sizeof b, r->rx_bytes > 0 ? r->down / r->rx_bytes : -1, 3),
                  num(c, sizeof c, r->rx_bytes > 0 ? r->up / r->rx_bytes : -1, 3), r->qdrop,
                  r->ldrop, tail);
    if (reconnects >= 0)
        n += snprintf(line + n, sizeof line - (size_t)n, " reconnects=%d", reconnects);
    if (r->err[0])
        snprintf(line + n, sizeof line - (size_t)n, " tcp_error=%s", r->err);
    bench_result(SUITE, kase, "%s", line);
}

static const char *yesno(int v) {
    return v ? "yes" : "no";
}

/* The targets at this loss rate and pass (sfx: "" or "_<cc>"), where both sides ran. */
static void targets(int lp, const char *sfx, double rtt, const tcp_res *r, const ping_res *p,
                    const int *have) {
    char kase[64], a[32];
    const tcp_res *gp = have[T_GP] ? &r[T_GP] : NULL, *wg = have[T_WG] ? &r[T_WG] : NULL;
    if (gp && wg && (lp == 0 || lp == 10)) {
        double goal = lp == 0 ? 0.9 : 5, rt = wg->kbit > 0 ? gp->kbit / wg->kbit : -1;
        snprintf(kase, sizeof kase, "target_vs_wireguard%s_l%d", sfx, lp);
        bench_result(SUITE, kase,
                     "ghostport_kbit_s=%.0f wireguard_kbit_s=%.0f goodput_ratio=%s "
                     "goal=goodput_ratio>=%g goal_met=%s",
                     gp->kbit, wg->kbit, ratio(a, sizeof a, gp->kbit, wg->kbit), goal,
                     yesno(wg->kbit > 0 ? rt >= goal : gp->kbit > 0));
    }
    if (lp != 30 || !gp)
        return;
    snprintf(kase, sizeof kase, "target_moving%s_l30", sfx);
    char others[256] = "";
    int n = 0;
    for (int k = T_WG; k <= T_OVT; k += T_OVT - T_WG)
        if (have[k])
            n += snprintf(others + n, sizeof others - (size_t)n, " %s_kbit_s=%.0f %s_below_1000=%s",
                          T_NAME[k], r[k].kbit, T_NAME[k], yesno(r[k].kbit < 1000));
    bench_result(SUITE, kase, "ghostport_kbit_s=%.0f%s goal=ghostport_kbit_s>=1000 goal_met=%s",
                 gp->kbit, others, yesno(gp->kbit >= 1000));
    snprintf(kase, sizeof kase, "target_wire%s_l30", sfx);
    double w = wire_ratio(gp);
    bench_result(SUITE, kase, "transport=ghostport wire_ratio=%s goal=wire_ratio<=2 goal_met=%s",
                 num(a, sizeof a, w, 3), yesno(w >= 0 && w <= 2));
    if (p) {
        double p99 = p99_of(&p[T_GP]);
        bench_result(SUITE, "target_ping_l30",
                     "transport=ghostport ping_p99_ms=%s rtt_ms=%.0f ping_p99_rtt_ratio=%.2f "
                     "goal=ping_p99_rtt_ratio<=2 goal_met=%s",
                     num(a, sizeof a, p99, 0), rtt, p99 >= 0 && rtt > 0 ? p99 / rtt : 0,
                     yesno(p99 >= 0 && rtt > 0 && p99 / rtt <= 2));
    }
}

/* Ghost Port against each other tunnel at this loss rate and pass. */
static void compare(int lp, const char *sfx, const tcp_res *r, const ping_res *p, const int *have) {
    if (!have[T_GP])
        return;
    for (int k = T_WG; k < T_N; k++) {
        if (!have[k])
            continue;
        char kase[64], a[32], b[32], c[32];
        snprintf(kase, sizeof kase, "ghostport_vs_%s%s_l%d", T_NAME[k], sfx, lp);
        if (p)
            bench_result(
                SUITE, kase, "loss_pct=%d goodput_ratio=%s ping_p50_ratio=%s ping_p99_ratio=%s", lp,
                ratio(a, sizeof a, r[T_GP].kbit, r[k].kbit),
                ratio(b, sizeof b, p[T_GP].recv ? p[T_GP].p50 : -1, p[k].recv ? p[k].p50 : -1),
                ratio(c, sizeof c, p99_of(&p[T_GP]), p99_of(&p[k])));
        else
            bench_result(SUITE, kase, "loss_pct=%d goodput_ratio=%s", lp,
                         ratio(a, sizeof a, r[T_GP].kbit, r[k].kbit));
    }
}

/* --- loopback: packets per second and CPU per packet ------------------------------------------ */

/* The fixed rate of the CPU-per-packet run: 20,000 packets/s of 64-byte payloads, well under
 * what either tunnel carries here, so that no packet is dropped after costing CPU. */
#define LO_FIXED_PPS 20000
#define LO_FIXED_RATE "10240K" /* 64 B x 8 x 20,000 /s */

typedef struct lo_res {
    int max_ok, fix_ok, tcp_ok;
    double tx_pps, rx_pps, lost_pct;          /* UDP as fast as the sender can */
    double fix_pps, fix_lost, hub_us, far_us; /* UDP at LO_FIXED_PPS: CPU µs per packet received */
    double mbit, hub_us_mb, far_us_mb;        /* TCP: CPU µs per MB received */
    double zero;                              /* always 0 (lo_ratio of one field) */
} lo_res;

static long long cpu_of(const h_proc *p) {
    return p && p->pid > 0 ? bench_cpu_us(p->pid) : 0;
}

/* One iperf3 run through t (the arguments after -c ADDR -p PORT -J), bounded; the JSON, or
 * NULL. CPU of t's daemons over the run into hub_us and far_us. */
static json_t *lo_run(const tunnel *t, const char *const *extra, int secs, const char *tag,
                      double *hub_us, double *far_us) {
    const char *argv[24] = {B_IPERF, "-c", t->far_addr, "-p", P_IPERF, "-J"};
    int n = 6;
    for (int i = 0; extra[i] && n < 23; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/lo-%s-%s.json", g_dir, t->label, tag);
    long long h0 = cpu_of(t->hub_d), f0 = cpu_of(t->far_d);
    nl_task task;
    if (nl_task_start(&task, argv, log, 0) != 0)
        return NULL;
    double end = nl_now_ms() + (secs + 15) * 1000.0;
    while (!nl_task_done(&task) && nl_now_ms() < end)
        nl_sleep_ms(20);
    nl_task_stop(&task, 2000);
    *hub_us = (double)(cpu_of(t->hub_d) - h0);
    *far_us = (double)(cpu_of(t->far_d) - f0);
    return iperf_json(log);
}

/* UDP packets sent and received per second, lost percent, from a client's -J document; the
 * packets received into *rx. 1 when it has them. */
static int lo_udp(json_t *j, double *tx_pps, double *rx_pps, double *lost_pct, double *rx) {
    json_t *end = json_object_get(j, "end");
    double tx = jnum(end, "sum_sent", "packets"), got = jnum(end, "sum_received", "packets"),
           lost = jnum(end, "sum_received", "lost_packets"),
           sec = jnum(end, "sum_received", "seconds");
    if (tx <= 0 || got < 0 || lost < 0 || sec <= 0 || got - lost <= 0)
        return 0;
    *rx = got - lost;
    *tx_pps = tx / sec;
    *rx_pps = *rx / sec;
    *lost_pct = 100 * lost / got;
    return 1;
}

static void lo_measure(const tunnel *t, int secs, int round, lo_res *r) {
    memset(r, 0, sizeof *r);
    char t_s[16], tag[32];
    snprintf(t_s, sizeof t_s, "%d", secs);
    double hub, far, rx, x;
    /* UDP, 64-byte payloads (92-byte IPv4 packets), as fast as the sender can. */
    snprintf(tag, sizeof tag, "udpmax-r%d", round);
    json_t *j = lo_run(t, (const char *const[]){"-u", "-b", "0", "-l", "64", "-t", t_s, NULL}, secs,
                       tag, &hub, &far);
    r->max_ok = j && lo_udp(j, &r->tx_pps, &r->rx_pps, &r->lost_pct, &rx);
    json_decref(j);
    /* The same at a fixed rate: the daemons' CPU per packet. */
    if (t->hub_d) {
        snprintf(tag, sizeof tag, "udpfix-r%d", round);
        j = lo_run(t, (const char *const[]){"-u", "-b", LO_FIXED_RATE, "-l", "64", "-t", t_s, NULL},
                   secs, tag, &hub, &far);
        r->fix_ok = j && lo_udp(j, &x, &r->fix_pps, &r->fix_lost, &rx);
        if (r->fix_ok)
            r->hub_us = hub / rx, r->far_us = far / rx;
        json_decref(j);
    }
    /* TCP: one bulk transfer. */
    snprintf(tag, sizeof tag, "tcp-r%d", round);
    j = lo_run(t, (const char *const[]){"-t", t_s, NULL}, secs, tag, &hub, &far);
    tcp_res tr;
    memset(&tr, 0, sizeof tr);
    if (j && tcp_received(j, &tr) && tr.rx_bytes > 0) {
        r->tcp_ok = 1;
        r->mbit = tr.kbit / 1000;
        r->hub_us_mb = hub / (tr.rx_bytes / 1e6);
        r->far_us_mb = far / (tr.rx_bytes / 1e6);
    }
    json_decref(j);
}

#define MAX_ROUNDS 9

/* Median of the n values of field f over the rounds that have it. */
static double lo_med(const lo_res (*res)[LO_N], int rounds, int i, size_t f, size_t ok) {
    double v[MAX_ROUNDS];
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        const char *x = (const char *)&res[r][i];
        if (*(const int *)(x + ok))
            v[n++] = *(const double *)(x + f);
    }
    return bench_median(v, (size_t)n);
}
#define LO_MED(field, okf) lo_med(res, rounds, i, offsetof(lo_res, field), offsetof(lo_res, okf))

/* Median over the rounds of subject / baseline (Ghost Port / wireguard-go) of a + b. */
static double lo_ratio(const lo_res (*res)[LO_N], int rounds, size_t a, size_t b, size_t ok) {
    double v[MAX_ROUNDS];
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        const char *g = (const char *)&res[r][LO_GP], *w = (const char *)&res[r][LO_WG];
        double den = *(const double *)(w + a) + *(const double *)(w + b);
        if (*(const int *)(g + ok) && *(const int *)(w + ok) && den > 0)
            v[n++] = (*(const double *)(g + a) + *(const double *)(g + b)) / den;
    }
    return bench_median(v, (size_t)n);
}
#define LO_RATIO(fa, fb, okf)                                                                      \
    lo_ratio(res, rounds, offsetof(lo_res, fa), offsetof(lo_res, fb), offsetof(lo_res, okf))

/* Rounds over Ghost Port, wireguard-go and the bare veth (the order reversed every other
 * round), each a UDP flood, UDP at the fixed rate and a TCP transfer of secs. */
static void loopback(int rounds, int secs) {
    lo_res res[MAX_ROUNDS][LO_N];
    memset(res, 0, sizeof res);
    for (int r = 0; r < rounds; r++)
        for (int o = 0; o < LO_N; o++) {
            int i = r % 2 ? LO_N - 1 - o : o;
            const tunnel *t = &g_lo[i];
            if (t->state != ST_UP)
                continue;
            lo_res *x = &res[r][i];
            lo_measure(t, secs, r + 1, x);
            bench_result(SUITE, "loopback_round",
                         "transport=%s round=%d max_rx_pps=%.0f max_tx_pps=%.0f fixed_pps=%.0f "
                         "cpu_us_per_pkt=%.2f tcp_mbit_s=%.0f cpu_us_per_mb=%.0f",
                         t->label, r + 1, x->rx_pps, x->tx_pps, x->fix_pps, x->hub_us + x->far_us,
                         x->mbit, x->hub_us_mb + x->far_us_mb);
        }
    for (int i = 0; i < LO_N; i++) {
        const tunnel *t = &g_lo[i];
        if (t->state != ST_UP)
            continue;
        if (i == LO_DIRECT) {
            bench_result(SUITE, "loopback_veth",
                         "transport=veth max_rx_pps=%.0f max_tx_pps=%.0f max_lost_pct=%.1f "
                         "tcp_mbit_s=%.0f rounds=%d",
                         LO_MED(rx_pps, max_ok), LO_MED(tx_pps, max_ok), LO_MED(lost_pct, max_ok),
                         LO_MED(mbit, tcp_ok), rounds);
            continue;
        }
        char kase[48];
        snprintf(kase, sizeof kase, "loopback_%s", T_NAME[LO_KIND[i]]);
        double hub = LO_MED(hub_us, fix_ok), far = LO_MED(far_us, fix_ok);
        bench_result(
            SUITE, kase,
            "transport=%s max_rx_pps=%.0f max_tx_pps=%.0f max_lost_pct=%.1f fixed_pps=%.0f "
            "fixed_lost_pct=%.2f hub_cpu_us_per_pkt=%.2f far_cpu_us_per_pkt=%.2f "
            "cpu_us_per_pkt=%.2f tcp_mbit_s=%.0f hub_cpu_us_per_mb=%.0f "
            "far_cpu_us_per_mb=%.0f cpu_us_per_mb=%.0f rounds=%d",
            T_NAME[LO_KIND[i]], LO_MED(rx_pps, max_ok), LO_MED(tx_pps, max_ok),
            LO_MED(lost_pct, max_ok), LO_MED(fix_pps, fix_ok), LO_MED(fix_lost, fix_ok), hub, far,
            hub + far, LO_MED(mbit, tcp_ok), LO_MED(hub_us_mb, tcp_ok), LO_MED(far_us_mb, tcp_ok),
            LO_MED(hub_us_mb, tcp_ok) + LO_MED(far_us_mb, tcp_ok), rounds);
    }
    if (g_lo[LO_GP].state != ST_UP || g_lo[LO_WG].state != ST_UP)
        return;
    /* ratios round by round (a field plus a zero one where there is one figure) */
    bench_result(SUITE, "loopback_ghostport_vs_wireguard",
                 "max_pps_ratio=%.2f cpu_per_pkt_ratio=%.2f tcp_ratio=%.2f cpu_per_mb_ratio=%.2f",
                 LO_RATIO(rx_pps, zero, max_ok), LO_RATIO(hub_us, far_us, fix_ok),
                 LO_RATIO(mbit, zero, tcp_ok), LO_RATIO(hub_us_mb, far_us_mb, tcp_ok));
}

/* --- main ------------------------------------------------------------------------------------- */

/* Congestion-control passes: the kernel's default, then cubic when the default is another
 * (Linux's own default; most hosts run it) — or L3_CC=name,name ("default" for the kernel's). */
static int cc_passes(char names[MAX_PASSES][16], char *dflt, size_t cap) {
    snprintf(dflt, cap, "unknown");
    size_t len;
    char *d = h_read_file("/proc/sys/net/ipv4/tcp_congestion_control", &len);
    if (d) {
        snprintf(dflt, cap, "%.*s", (int)strcspn(d, " \n"), d);
        free(d);
    }
    int n = 0;
    const char *env = getenv("L3_CC");
    if (env && *env) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", env);
        for (char *sv = NULL, *w = strtok_r(buf, ",", &sv); w && n < MAX_PASSES;
             w = strtok_r(NULL, ",", &sv))
            snprintf(names[n++], 16, "%s", strcmp(w, dflt) == 0 ? "default" : w);
        return n;
    }
    snprintf(names[n++], 16, "default");
    char *avail = h_read_file("/proc/sys/net/ipv4/tcp_available_congestion_control", &len);
    if (!g_quick && strcmp(dflt, "cubic") != 0 && avail && strstr(avail, "cubic"))
        snprintf(names[n++], 16, "cubic");
    free(avail);
    return n;
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

int main(void) {
    nl_main_init(SUITE);
    double t_begin = nl_now_ms();
    g_quick = bench_quick();
    int do_lo = env_int("L3_LOOPBACK", 1) != 0;
    setup(do_lo);
    int losses[MAX_LOSSES] = {0, 5, 10, 20, 30}, nloss = 5;
    if (g_quick)
        losses[1] = 30, nloss = 2;
    /* Overrides for digging into one case (not for the reported runs). */
    nl_env_losses("L3_LOSSES", losses, MAX_LOSSES, &nloss);
    int pings = env_int("L3_PINGS", g_quick ? 20 : 50);
    if (pings < 1 || pings > MAX_PINGS)
        pings = 50;
    int tcp_s = env_int("L3_TCP_S", g_quick ? 3 : 10), grace_s = g_quick ? 6 : 20;
    int quiet_ms = g_quick ? 2000 : 8000;
    int lo_rounds = env_int("L3_LO_ROUNDS", g_quick ? 1 : 3),
        lo_s = env_int("L3_LO_S", g_quick ? 1 : 3);
    if (lo_rounds < 1 || lo_rounds > MAX_ROUNDS)
        lo_rounds = 3;
    char passes[MAX_PASSES][16], dflt[16];
    int npass = cc_passes(passes, dflt, sizeof dflt);

    tunnel *ts[T_N];
    int nt = 0, idx[T_N];
    for (int k = 0; k < T_N; k++)
        if (g_t[k].state == ST_UP)
            idx[nt] = k, ts[nt++] = &g_t[k];
    if (nt == 0) {
        fprintf(stderr, "l3: no tunnel came up (see %s)\n", g_dir);
        return 1;
    }
    /* The link's RTT: pings straight over the clean link. */
    double rtt = NL_RTT_MS;
    if (g_t[T_DIRECT].state == ST_UP) {
        tunnel *d = &g_t[T_DIRECT];
        ping_res pr;
        ping_phase(&d, 1, 5, "0.2", "rtt", &pr);
        if (pr.recv > 0)
            rtt = pr.p50;
    }
    char commit[64], pass_list[64] = "";
    nl_git_state(commit, sizeof commit);
    for (int i = 0; i < npass; i++)
        snprintf(pass_list + strlen(pass_list), sizeof pass_list - strlen(pass_list), "%s%s",
                 i ? "," : "", strcmp(passes[i], "default") == 0 ? dflt : passes[i]);
    bench_result(SUITE, "link",
                 "rtt_ms=%.0f delay_ms=%d jitter_ms=%d rate=%s_bit_s queue=%s_bytes pings=%d "
                 "ping_interval_s=0.1 tcp_s=%d cc_default=%s cc_passes=%s concurrent=%d "
                 "setup_s=%.1f commit=%s loadavg=%.2f",
                 rtt, NL_RTT_MS / 2, NL_JITTER_MS, NL_RATE, NL_QUEUE, pings, tcp_s, dflt, pass_list,
                 nt, (nl_now_ms() - t_begin) / 1000, commit, nl_loadavg());

    /* Warm-up (not reported): handshakes, tinc's path MTU, caches. */
    tcp_res warm[T_N];
    tcp_phase(ts, nt, g_quick ? 1 : 2, 10, NULL, "warmup", warm);
    nl_links_quiet(quiet_ms, NULL);
    nl_vlog("warm");

    for (int li = 0; li < nloss; li++) {
        int lp = losses[li];
        char tag[32];
        int disc0 = g_t[T_GP].far_d ? h_log_count_all(g_t[T_GP].far_d, "event=disconnected") : 0;
        /* The transfers first, then the pings, the links lossy throughout: a tunnel meets the
         * pings having carried traffic at this loss rate (Ghost Port sizes its FEC from the
         * loss its peer measures, over windows of 32 packets: ten pings a second alone would
         * take seconds to show it, where a house on a lossy link has long known). */
        tcp_res tk[MAX_PASSES][T_N];
        double tails[MAX_PASSES][NL_MAX_LINKS];
        memset(tk, 0, sizeof tk);
        for (int ps = 0; ps < npass; ps++) {
            const char *cc = strcmp(passes[ps], "default") == 0 ? NULL : passes[ps];
            tcp_res tr[T_N];
            nl_set_loss(lp / 100.0, 200 + lp); /* each pass meets the same loss pattern */
            snprintf(tag, sizeof tag, "l%d-%s", lp, cc ? cc : "default");
            tcp_phase(ts, nt, tcp_s, grace_s, cc, tag, tr);
            nl_links_idle(quiet_ms, tails[ps]);
            for (int i = 0; i < nt; i++)
                tk[ps][idx[i]] = tr[i];
            nl_vlog("l%d tcp %s done", lp, cc ? cc : "default");
        }
        ping_res pr[T_N], pk[T_N];
        memset(pk, 0, sizeof pk);
        nl_set_loss(lp / 100.0, 100 + lp);
        snprintf(tag, sizeof tag, "l%d", lp);
        ping_phase(ts, nt, pings, "0.1", tag, pr);
        for (int i = 0; i < nt; i++)
            pk[idx[i]] = pr[i];
        nl_links_quiet(quiet_ms, NULL);
        nl_vlog("l%d pings done", lp);
        int rec =
            g_t[T_GP].far_d ? h_log_count_all(g_t[T_GP].far_d, "event=disconnected") - disc0 : -1;
        for (int ps = 0; ps < npass; ps++) {
            char sfx[24] = "";
            if (ps > 0)
                snprintf(sfx, sizeof sfx, "_%s", passes[ps]);
            int have[T_N] = {0};
            for (int i = 0; i < nt; i++) {
                int k = idx[i];
                have[k] = 1;
                char kase[64];
                snprintf(kase, sizeof kase, "%s%s_l%d", T_NAME[k], sfx, lp);
                /* links were started in kind order: tails[ps][k] is this tunnel's */
                report(&g_t[k], kase, lp, ps == 0 ? &pk[k] : NULL, &tk[ps][k], rtt, tails[ps][k],
                       k == T_GP ? rec : -1);
                if (lp == 0 && ps == 0 && g_t[k].state == ST_UP) {
                    if (pk[k].recv == 0)
                        fail_tunnel(&g_t[k], "no ping answered at 0%% loss");
                    else if (tk[ps][k].stalled)
                        fail_tunnel(&g_t[k], "no TCP transfer at 0%% loss (%s)",
                                    tk[ps][k].err[0] ? tk[ps][k].err : "stalled");
                }
            }
            compare(lp, sfx, tk[ps], ps == 0 ? pk : NULL, have);
            targets(lp, sfx, rtt, tk[ps], ps == 0 ? pk : NULL, have);
        }
    }
    if (do_lo) {
        nl_vlog("loopback");
        loopback(lo_rounds, lo_s);
    }
    bench_result(SUITE, "total", "secs=%.1f quick=%d loadavg=%.2f failed=%d",
                 (nl_now_ms() - t_begin) / 1000, g_quick, nl_loadavg(), g_failed);
    nl_cleanup();
    h_fini();
    return g_failed ? 1 : 0;
}
