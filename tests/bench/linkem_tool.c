/* linkem_tool.c — linkem, the link emulator of the `links` benchmark (tests/bench/README.md):
 * two TUN devices, each created in a network namespace of the caller's choosing, joined by this
 * one process. Every IP packet the kernel routes into one device comes out of the other after
 * the impairments of its direction: a rate-limited bottleneck with a bounded drop-tail queue,
 * independent loss, one-way delay and jitter (the order is kept: jitter never reorders). It
 * works on whole IP packets, so TCP (ws://, ssh, kcptun's UDP) and UDP (rudp://) meet the very
 * same link — the kernel has no netem here, and a UDP relay such as gp-relay cannot carry TCP.
 *
 * The first half is the model, pure: lk_decide() is given a packet's length and arrival time
 * and returns its fate (dropped and why, or the time it leaves). Every random draw about the
 * n-th packet of a direction is a hash of (seed, direction, n, purpose), as gp-relay does, so
 * a loss pattern is a function of packet numbers only: two runs with the same seed drop the
 * same packet numbers whatever the timing. The second half is the I/O side: one thread, ppoll
 * on the two TUN file descriptors and a control socket (AF_UNIX datagrams: `set`, `stats`),
 * and key=value lines on stdout. The devices are not persistent: they vanish with the process,
 * however it ends. Test tool; needs CAP_NET_ADMIN (root).
 *
 *   linkem_tool --tun-a gpa --netns-a hub --addr-a 10.99.0.1 \
 *               --tun-b gpb --netns-b far --addr-b 10.99.0.2 \
 *               --delay 100 --jitter 5 --rate 10M --queue 125k --loss 0.05 --seed 1 \
 *               --ctl /tmp/linkem.sock
 *
 * Direction a2b carries what the kernel of side a sends to side b (into tun-a, out of tun-b);
 * b2a the reverse. Every impairment flag applies to both directions; `--set 'dir=a2b k=v ...'`
 * (also the control command `set`) sets one direction. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../relay/impair.h"
#include "list.h"

#define LK_MAX_PKT 65536       /* read buffer: any packet a TUN device can hand us */
#define LK_READ_BURST 256      /* packets read per wake-up and direction before timers run */
#define LK_MAX_PENDING 200000u /* packets held per direction (the delay line), beyond: dropped */

enum { A2B = 0, B2A = 1 };
static const char *const DIR_NAME[2] = {"a2b", "b2a"};

/* --- the model (pure) ---------------------------------------------------------------------- */

/* One direction's impairments. */
typedef struct lk_params {
    double loss;        /* probability, independent per packet */
    double delay_ms;    /* one-way propagation delay */
    double jitter_ms;   /* uniform in [-jitter, +jitter] around delay, order kept */
    double rate_bps;    /* bottleneck, bits/s; 0: unlimited */
    double queue_bytes; /* bottleneck queue (bytes waiting, the one on the wire included) */
    uint64_t seed;
} lk_params;

typedef struct lk_stats {
    uint64_t in, in_bytes;   /* packets (IP header included) that entered this direction */
    uint64_t out, out_bytes; /* written out of the far device */
    uint64_t drop_loss, drop_queue, drop_limit, write_err;
    double queue_hw; /* bottleneck high-water mark, bytes */
} lk_stats;

typedef struct lk_pkt {
    struct lk_pkt *next;
    uint64_t release_ns;
    uint32_t len;
    uint8_t data[];
} lk_pkt;

typedef struct lk_dir {
    lk_params p;
    uint64_t n;               /* packets decided since the seed was set */
    uint64_t link_free_ns;    /* when the bottleneck has sent everything it holds */
    uint64_t last_release_ns; /* FIFO horizon: no packet leaves before its predecessor */
    lk_pkt *head, *tail;      /* the delay line, in release order */
    size_t pending;
    lk_stats st;
} lk_dir;

enum lk_fate { LK_FORWARD = 0, LK_DROP_LOSS, LK_DROP_QUEUE };
enum { D_LOSS = 1, D_JITTER };

/* Uniform in [0, 1), a function of (seed, direction, packet number, purpose) only (direction
 * keys 1 and 2, as gp-relay's). */
static double lk_uniform(uint64_t seed, int dir, uint64_t n, unsigned what) {
    return imp_uniform(seed, (uint32_t)(dir + 1), n, what);
}

/* Decides the fate of the next packet of direction `dir` (len bytes, arriving at now_ns) and
 * advances the direction's state. A packet first crosses the bottleneck (drop-tail when the
 * queue would exceed queue_bytes), so a packet lost afterwards still took its share of the
 * link, as on a lossy radio hop behind a slow uplink; then the loss draw; then delay and
 * jitter, never earlier than the packet before it. On LK_FORWARD, *release_ns is when it
 * leaves. */
static enum lk_fate lk_decide(lk_dir *d, int dir, size_t len, uint64_t now_ns,
                              uint64_t *release_ns) {
    const lk_params *p = &d->p;
    uint64_t n = ++d->n, t = now_ns;
    double held;
    if (p->rate_bps > 0 && imp_bottleneck(&d->link_free_ns, p->rate_bps, p->queue_bytes, len,
                                          now_ns, &held, &d->st.queue_hw, &t) != 0)
        return LK_DROP_QUEUE;
    if (p->loss > 0 && lk_uniform(p->seed, dir, n, D_LOSS) < p->loss)
        return LK_DROP_LOSS;
    double delay = p->delay_ms;
    if (p->jitter_ms > 0)
        delay += p->jitter_ms * (2 * lk_uniform(p->seed, dir, n, D_JITTER) - 1);
    if (delay > 0)
        t += (uint64_t)(delay * 1e6);
    if (t < d->last_release_ns)
        t = d->last_release_ns;
    d->last_release_ns = t;
    *release_ns = t;
    return LK_FORWARD;
}

/* A decimal number, all of s. suffix_base 1000 takes k/M/G (rates, bits/s), 1024 takes k/m/g
 * (sizes). -1 if malformed or negative. */
static double lk_num(const char *s, double suffix_base) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    if (*end && suffix_base > 0 && end[1] == '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            v *= suffix_base;
            end++;
            break;
        case 'm':
        case 'M':
            v *= suffix_base * suffix_base;
            end++;
            break;
        case 'g':
        case 'G':
            v *= suffix_base * suffix_base * suffix_base;
            end++;
            break;
        default:
            break;
        }
    }
    return *end ? -1 : v;
}

/* Applies one "key=value" to p (dir= is handled by the caller). 0, or -1 with err set. A new
 * seed also restarts the packet numbering (*reseed = 1), so the same seed replays the same
 * loss pattern from the next packet on. */
/* The numeric keys: their k/M/G suffix base (0: none), the range a value other than 0 must
 * fall in, and the field they set. */
static const struct lk_key {
    const char *key;
    double base, min, max;
    size_t off;
} LK_KEYS[] = {
    {"loss", 0, 0, 1, offsetof(lk_params, loss)},
    {"delay", 0, 0, 60000, offsetof(lk_params, delay_ms)},
    {"jitter", 0, 0, 60000, offsetof(lk_params, jitter_ms)},
    {"rate", 1000, 8, HUGE_VAL, offsetof(lk_params, rate_bps)},
    {"queue", 1024, 0, 1e9, offsetof(lk_params, queue_bytes)},
};

static int lk_set_one(lk_params *p, const char *key, const char *val, int *reseed, char *err,
                      size_t errlen) {
    for (size_t i = 0; i < sizeof LK_KEYS / sizeof LK_KEYS[0]; i++) {
        const struct lk_key *k = &LK_KEYS[i];
        if (strcmp(key, k->key) != 0)
            continue;
        double v = lk_num(val, k->base);
        if (v < 0 || (v != 0 && v < k->min) || v > k->max)
            goto bad;
        *(double *)((char *)p + k->off) = v;
        return 0;
    }
    if (strcmp(key, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(val, &end, 10);
        if (errno || end == val || *end)
            goto bad;
        p->seed = s;
        *reseed = 1;
    } else {
        snprintf(err, errlen, "unknown key %s", key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "bad value %s=%s", key, val);
    return -1;
}

/* Applies "k=v k=v ..." (space-separated; dir=a2b|b2a|both first or anywhere, default both) to
 * both directions' parameters, all or nothing. 0, or -1 with err set. */
static int lk_set(lk_dir d[2], const char *spec, char *err, size_t errlen) {
    lk_params np[2] = {d[0].p, d[1].p};
    int which = 3, reseed[2] = {0, 0};
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    /* dir= first, so it applies to every other key wherever it is written. */
    for (char *save = NULL, *tok = strtok_r(buf, " \t\r\n", &save); tok;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (strncmp(tok, "dir=", 4) == 0) {
            which = strcmp(tok + 4, "a2b") == 0    ? 1
                    : strcmp(tok + 4, "b2a") == 0  ? 2
                    : strcmp(tok + 4, "both") == 0 ? 3
                                                   : 0;
            if (!which) {
                snprintf(err, errlen, "bad %s (a2b, b2a or both)", tok);
                return -1;
            }
        }
    }
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, " \t\r\n", &save); tok;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (strncmp(tok, "dir=", 4) == 0)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "expected key=value, got %s", tok);
            return -1;
        }
        *eq = '\0';
        for (int i = 0; i < 2; i++)
            if ((which & (1 << i)) && lk_set_one(&np[i], tok, eq + 1, &reseed[i], err, errlen) != 0)
                return -1;
    }
    for (int i = 0; i < 2; i++) {
        d[i].p = np[i];
        if (reseed[i])
            d[i].n = 0;
    }
    return 0;
}

static int lk_fmt_params(char *out, size_t cap, int dir, const lk_params *p) {
    return snprintf(out, cap,
                    "%s_loss=%g %s_delay_ms=%g %s_jitter_ms=%g %s_rate_bps=%.0f "
                    "%s_queue_bytes=%.0f %s_seed=%llu",
                    DIR_NAME[dir], p->loss, DIR_NAME[dir], p->delay_ms, DIR_NAME[dir], p->jitter_ms,
                    DIR_NAME[dir], p->rate_bps, DIR_NAME[dir], p->queue_bytes, DIR_NAME[dir],
                    (unsigned long long)p->seed);
}

static int lk_fmt_stats(char *out, size_t cap, int dir, const lk_dir *d) {
    const lk_stats *s = &d->st;
    const char *n = DIR_NAME[dir];
    return snprintf(out, cap,
                    "%s_in=%llu %s_in_bytes=%llu %s_out=%llu %s_out_bytes=%llu %s_drop_loss=%llu "
                    "%s_drop_queue=%llu %s_drop_limit=%llu %s_write_err=%llu %s_queue_hw=%.0f "
                    "%s_pending=%zu",
                    n, (unsigned long long)s->in, n, (unsigned long long)s->in_bytes, n,
                    (unsigned long long)s->out, n, (unsigned long long)s->out_bytes, n,
                    (unsigned long long)s->drop_loss, n, (unsigned long long)s->drop_queue, n,
                    (unsigned long long)s->drop_limit, n, (unsigned long long)s->write_err, n,
                    s->queue_hw, n, d->pending);
}

/* --- I/O side ------------------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Enters network namespace `ns` (a name under /run/netns, or a path); returns an fd of the
 * namespace we were in, to come back with setns(), or -1 (errno set). ns NULL: no change, a
 * dup of the current one. */
static int netns_enter(const char *ns) {
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0 || !ns)
        return self;
    char path[512];
    snprintf(path, sizeof path, strchr(ns, '/') ? "%s" : "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        close(self);
        errno = e;
        return -1;
    }
    close(fd);
    return self;
}

static int set_if_addr(int s, unsigned long req, const char *name, const char *ip) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    memcpy(&ifr.ifr_addr, &sin, sizeof sin);
    return ioctl(s, req, &ifr);
}

/* Creates TUN device `name` (no packet info header, non-blocking, not persistent) inside
 * netns `ns` (NULL: ours), turns IPv6 off on it (no router solicitations or MLD reports to
 * count as traffic), gives it `addr` with the point-to-point peer `peer` and `mtu`, and brings
 * it up. Returns the fd or -1 with a message in err. */
static int tun_open(const char *name, const char *ns, const char *addr, const char *peer, int mtu,
                    char *err, size_t errlen) {
    int back = netns_enter(ns);
    if (back < 0) {
        snprintf(err, errlen, "netns %s: %s", ns ? ns : "(self)", strerror(errno));
        return -1;
    }
    int fd = -1, s = -1;
    const char *what = "open /dev/net/tun";
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        goto fail;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    what = "TUNSETIFF";
    if (ioctl(fd, TUNSETIFF, &ifr) != 0)
        goto fail;
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int v6 = open(path, O_WRONLY | O_CLOEXEC);
    if (v6 >= 0) {
        if (write(v6, "1\n", 2) != 2) { /* IPv6 disabled on the host: nothing to turn off */
        }
        close(v6);
    }
    what = "socket";
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        goto fail;
    what = "SIOCSIFADDR";
    if (set_if_addr(s, SIOCSIFADDR, name, addr) != 0)
        goto fail;
    what = "SIOCSIFDSTADDR";
    if (set_if_addr(s, SIOCSIFDSTADDR, name, peer) != 0)
        goto fail;
    what = "SIOCSIFMTU";
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    ifr.ifr_mtu = mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) != 0)
        goto fail;
    what = "SIOCGIFFLAGS";
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        goto fail;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    what = "SIOCSIFFLAGS";
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
        goto fail;
    close(s);
    if (setns(back, CLONE_NEWNET) != 0) {
        snprintf(err, errlen, "setns back: %s", strerror(errno));
        close(back);
        close(fd);
        return -1;
    }
    close(back);
    return fd;
fail:
    snprintf(err, errlen, "%s %s: %s", what, name, strerror(errno));
    if (s >= 0)
        close(s);
    if (fd >= 0)
        close(fd);
    if (setns(back, CLONE_NEWNET) != 0) { /* nothing better to do: we exit right after */
    }
    close(back);
    return -1;
}

static lk_dir g_dir[2];
static int g_tun[2]; /* g_tun[A2B] is device a: packets read from it go a->b */

/* Reads up to LK_READ_BURST packets from the device of `dir` and schedules each. */
static void lk_read(int dir, uint8_t *buf) {
    lk_dir *d = &g_dir[dir];
    for (int i = 0; i < LK_READ_BURST; i++) {
        ssize_t n = read(g_tun[dir], buf, LK_MAX_PKT);
        if (n <= 0)
            return; /* EAGAIN: drained; other errors: a device going away, we stop soon */
        uint64_t now = mono_ns(), rel;
        d->st.in++;
        d->st.in_bytes += (uint64_t)n;
        enum lk_fate f = lk_decide(d, dir, (size_t)n, now, &rel);
        if (f == LK_DROP_QUEUE) {
            d->st.drop_queue++;
            continue;
        }
        if (f == LK_DROP_LOSS) {
            d->st.drop_loss++;
            continue;
        }
        lk_pkt *p = d->pending < LK_MAX_PENDING ? malloc(sizeof *p + (size_t)n) : NULL;
        if (!p) {
            d->st.drop_limit++;
            continue;
        }
        p->release_ns = rel;
        p->len = (uint32_t)n;
        memcpy(p->data, buf, (size_t)n);
        GP_SLIST_APPEND(d->head, d->tail, p, next);
        d->pending++;
    }
}

/* Writes out every packet of `dir` that is due; returns the next release time (0: none). */
static uint64_t lk_release(int dir, uint64_t now) {
    lk_dir *d = &g_dir[dir];
    while (d->head && d->head->release_ns <= now) {
        lk_pkt *p = d->head;
        /* Into the other device: the kernel on that side receives it. */
        if (write(g_tun[!dir], p->data, p->len) == (ssize_t)p->len) {
            d->st.out++;
            d->st.out_bytes += p->len;
        } else {
            d->st.write_err++;
        }
        d->head = p->next;
        if (!d->head)
            d->tail = NULL;
        d->pending--;
        free(p);
    }
    return d->head ? d->head->release_ns : 0;
}

/* One control datagram: "set k=v ...", "stats", "config". The answer goes back to the
 * sender's address (a client socket must be bound, e.g. autobind). */
static void lk_control(int ctl) {
    char req[1024], rep[2048];
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(ctl, req, sizeof req - 1, 0, (struct sockaddr *)&from, &fl);
    if (n <= 0)
        return;
    req[n] = '\0';
    while (n > 0 && (req[n - 1] == '\n' || req[n - 1] == '\r'))
        req[--n] = '\0';
    int len;
    if (strncmp(req, "set ", 4) == 0 || strcmp(req, "set") == 0) {
        char err[256];
        if (lk_set(g_dir, req + 3, err, sizeof err) == 0) {
            len = snprintf(rep, sizeof rep, "ok ");
            len += lk_fmt_params(rep + len, sizeof rep - (size_t)len, A2B, &g_dir[A2B].p);
            len += snprintf(rep + len, sizeof rep - (size_t)len, " ");
            len += lk_fmt_params(rep + len, sizeof rep - (size_t)len, B2A, &g_dir[B2A].p);
            printf("event=set %s\n", req + 4);
            fflush(stdout);
        } else {
            len = snprintf(rep, sizeof rep, "error %s", err);
        }
    } else if (strcmp(req, "stats") == 0) {
        len = lk_fmt_stats(rep, sizeof rep, A2B, &g_dir[A2B]);
        len += snprintf(rep + len, sizeof rep - (size_t)len, " ");
        len += lk_fmt_stats(rep + len, sizeof rep - (size_t)len, B2A, &g_dir[B2A]);
    } else if (strcmp(req, "config") == 0) {
        len = lk_fmt_params(rep, sizeof rep, A2B, &g_dir[A2B].p);
        len += snprintf(rep + len, sizeof rep - (size_t)len, " ");
        len += lk_fmt_params(rep + len, sizeof rep - (size_t)len, B2A, &g_dir[B2A].p);
    } else {
        len = snprintf(rep, sizeof rep, "error unknown command (set, stats, config)");
    }
    if (len > (int)sizeof rep - 1)
        len = (int)sizeof rep - 1;
    if (fl > sizeof(sa_family_t))
        sendto(ctl, rep, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&from, fl);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: linkem_tool --tun-a NAME --addr-a IPV4 [--netns-a NS]\n"
            "                   --tun-b NAME --addr-b IPV4 [--netns-b NS]\n"
            "                   [--mtu N] [--ctl PATH] [impairments]\n"
            "Joins two TUN devices (created here, gone when this process ends) through an\n"
            "emulated link. Impairments, both directions (a2b: into tun-a, out of tun-b):\n"
            "  --delay MS       one-way delay (default 0)\n"
            "  --jitter MS      uniform +-MS around the delay, order kept (default 0)\n"
            "  --loss P         independent loss probability 0..1 (default 0)\n"
            "  --rate BPS       bottleneck bits/s, k/M/G suffixes (default 0: unlimited)\n"
            "  --queue BYTES    bottleneck drop-tail queue, k/m suffixes (default 64k)\n"
            "  --seed N         seed of every draw (default 1)\n"
            "  --set 'dir=a2b|b2a|both k=v ...'   keys loss delay jitter rate queue seed\n"
            "Control socket (--ctl PATH, or @NAME in the abstract namespace; AF_UNIX datagrams,\n"
            "answers go to the sender's address): 'set k=v ...', 'stats', 'config'.\n"
            "SIGTERM/SIGINT: final stats on stdout, exit 0.\n");
}

int main(int argc, char **argv) {
    const char *tun[2] = {NULL, NULL}, *ns[2] = {NULL, NULL}, *addr[2] = {NULL, NULL};
    const char *ctl_path = NULL;
    int mtu = 1500;
    for (int i = 0; i < 2; i++)
        g_dir[i].p = (lk_params){.queue_bytes = 65536, .seed = 1};
    /* O_KEY: an impairment for both directions, as --set 'KEY=value' (KEY: the option's name). */
    enum { O_TUN_A = 256, O_TUN_B, O_NS_A, O_NS_B, O_ADDR_A, O_ADDR_B, O_MTU, O_CTL, O_SET, O_KEY };
    static const struct option opts[] = {
        {"tun-a", required_argument, NULL, O_TUN_A},
        {"tun-b", required_argument, NULL, O_TUN_B},
        {"netns-a", required_argument, NULL, O_NS_A},
        {"netns-b", required_argument, NULL, O_NS_B},
        {"addr-a", required_argument, NULL, O_ADDR_A},
        {"addr-b", required_argument, NULL, O_ADDR_B},
        {"mtu", required_argument, NULL, O_MTU},
        {"ctl", required_argument, NULL, O_CTL},
        {"set", required_argument, NULL, O_SET},
        {"delay", required_argument, NULL, O_KEY},
        {"jitter", required_argument, NULL, O_KEY},
        {"loss", required_argument, NULL, O_KEY},
        {"rate", required_argument, NULL, O_KEY},
        {"queue", required_argument, NULL, O_KEY},
        {"seed", required_argument, NULL, O_KEY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o, idx = 0;
    char err[256], spec[300];
    while ((o = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        const char *key = NULL;
        switch (o) {
        case O_TUN_A:
        case O_TUN_B:
            tun[o - O_TUN_A] = optarg;
            break;
        case O_NS_A:
        case O_NS_B:
            ns[o - O_NS_A] = optarg;
            break;
        case O_ADDR_A:
        case O_ADDR_B:
            addr[o - O_ADDR_A] = optarg;
            break;
        case O_MTU:
            mtu = atoi(optarg);
            break;
        case O_CTL:
            ctl_path = optarg;
            break;
        case O_SET:
            if (lk_set(g_dir, optarg, err, sizeof err) != 0) {
                fprintf(stderr, "linkem: --set: %s\n", err);
                return 2;
            }
            break;
        case O_KEY:
            key = opts[idx].name;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (key) {
            snprintf(spec, sizeof spec, "%s=%s", key, optarg);
            if (lk_set(g_dir, spec, err, sizeof err) != 0) {
                fprintf(stderr, "linkem: --%s: %s\n", key, err);
                return 2;
            }
        }
    }
    if (optind < argc || !tun[0] || !tun[1] || !addr[0] || !addr[1] || mtu < 576 ||
        mtu > LK_MAX_PKT) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        g_tun[i] = tun_open(tun[i], ns[i], addr[i], addr[!i], mtu, err, sizeof err);
        if (g_tun[i] < 0) {
            fprintf(stderr, "linkem: %s\n", err);
            return 1;
        }
    }
    int ctl = -1;
    if (ctl_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(ctl_path) >= sizeof sa.sun_path) {
            fprintf(stderr, "linkem: --ctl path too long\n");
            return 2;
        }
        /* "@name": Linux's abstract namespace (no file; scoped to the network namespace). */
        int abstract = ctl_path[0] == '@';
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ctl_path);
        socklen_t sl = sizeof sa;
        if (abstract) {
            sa.sun_path[0] = '\0';
            sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ctl_path));
        } else {
            unlink(ctl_path);
        }
        ctl = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (ctl < 0 || bind(ctl, (struct sockaddr *)&sa, sl) != 0) {
            fprintf(stderr, "linkem: control socket %s: %s\n", ctl_path, strerror(errno));
            return 1;
        }
    }
    /* Signals are blocked except inside ppoll: a SIGTERM is never lost between checks. */
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &during);
    sigdelset(&during, SIGTERM);
    sigdelset(&during, SIGINT);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char line[2048];
    printf("event=ready tun_a=%s tun_b=%s addr_a=%s addr_b=%s mtu=%d ctl=%s pid=%d\n", tun[0],
           tun[1], addr[0], addr[1], mtu, ctl_path ? ctl_path : "-", (int)getpid());
    for (int i = 0; i < 2; i++) {
        lk_fmt_params(line, sizeof line, i, &g_dir[i].p);
        printf("event=config %s\n", line);
    }
    fflush(stdout);

    uint8_t *buf = malloc(LK_MAX_PKT);
    if (!buf)
        return 1;
    struct pollfd pf[3] = {{.fd = g_tun[A2B], .events = POLLIN},
                           {.fd = g_tun[B2A], .events = POLLIN},
                           {.fd = ctl, .events = POLLIN}};
    int rc = 0;
    while (!g_stop) {
        uint64_t now = mono_ns(), next = 0;
        for (int i = 0; i < 2; i++) {
            uint64_t r = lk_release(i, now);
            if (r && (!next || r < next))
                next = r;
        }
        struct timespec ts, *tp = NULL;
        if (next) {
            uint64_t wait = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000ull);
            ts.tv_nsec = (long)(wait % 1000000000ull);
            tp = &ts;
        }
        int n = ppoll(pf, ctl >= 0 ? 3 : 2, tp, &during);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "linkem: ppoll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (pf[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                fprintf(stderr, "linkem: device %s gone\n", tun[i]);
                g_stop = 1;
                rc = 1;
            } else if (pf[i].revents & POLLIN) {
                lk_read(i, buf);
            }
        }
        if (ctl >= 0 && (pf[2].revents & POLLIN))
            lk_control(ctl);
    }
    for (int i = 0; i < 2; i++) {
        lk_fmt_stats(line, sizeof line, i, &g_dir[i]);
        printf("event=stats %s final=1\n", line);
        while (g_dir[i].head) {
            lk_pkt *p = g_dir[i].head;
            g_dir[i].head = p->next;
            free(p);
        }
        close(g_tun[i]);
    }
    fflush(stdout);
    if (ctl >= 0) {
        close(ctl);
        if (ctl_path[0] != '@')
            unlink(ctl_path);
    }
    free(buf);
    return rc;
}
