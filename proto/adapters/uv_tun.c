/* uv_tun.c — a TUN device and its packets on libuv (uv_tun.h): open and create the device,
 * read packets on a uv_poll_t within a budget, write them without blocking, count, close;
 * and the forwarding switches the house sets. An adapter (uv_admin.c says why here). */
#include "uv_tun.h"

#include "gp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TUN_NODE "/dev/net/tun"

struct gp_tun {
    uv_poll_t poll;
    int fd;
    int reading, closing;
    gp_netdev dev;
    gp_tun_packet_fn on_packet;
    gp_tun_error_fn on_error;
    void *ud;
    void (*on_closed)(void *ud);
    void *closed_ud;
    gp_tun_stats stats;
    uint8_t buf[GP_TUN_PKT_MAX]; /* one packet: a read never takes more than one */
};

/* The kernel's rules for a name (dev_valid_name), checked here for a clear message. A "%d"
 * template is the kernel's to check (one %d at most). */
static const char *name_problem(const char *name) {
    size_t n = strlen(name);
    if (n >= IFNAMSIZ)
        return "too long (at most 15 characters)";
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return "not a name";
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == ':' || *p == ' ' || (*p >= '\t' && *p <= '\r'))
            return "contains '/', ':' or a blank";
    return NULL;
}

/* What to do about EPERM on TUNSETIFF: the capability, named, and how to grant it to this
 * very program. */
static void no_cap(char *err, size_t errlen, const char *name) {
    char exe[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        snprintf(exe, sizeof exe, "<program>");
    else
        exe[n] = '\0';
    gp_errf(err, errlen,
            "opening TUN device %s: %s: needs root or CAP_NET_ADMIN (setcap cap_net_admin+ep %s, "
            "or AmbientCapabilities=CAP_NET_ADMIN in its systemd unit)",
            name, strerror(EPERM), exe);
}

int gp_tun_open(uv_loop_t *loop, const char *name, gp_tun **out, char *err, size_t errlen) {
    *out = NULL;
    if (!name || !*name)
        name = "tun%d";
    const char *bad = name_problem(name);
    if (bad) {
        gp_errf(err, errlen, "opening TUN device \"%s\": the name is %s", name, bad);
        return -EINVAL;
    }
    int fd = open(TUN_NODE, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        const char *why =
            e == ENOENT ? ": no such device node: load the tun module (modprobe tun); in a "
                          "container, pass the device (docker run --device /dev/net/tun)"
            : e == ENODEV || e == ENXIO
                ? ": the tun driver is not there: load the tun module (modprobe tun)"
            : e == EACCES ? ": needs read and write access to " TUN_NODE " (usually mode 0666), "
                            "or root"
            : e == EPERM  ? ": the device is not allowed here (a container: pass it, docker run "
                            "--device /dev/net/tun --cap-add NET_ADMIN)"
                          : "";
        gp_errf(err, errlen, "opening TUN device %s: %s: %s%s", name, TUN_NODE, strerror(e), why);
        return -e;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    memcpy(ifr.ifr_name, name, strlen(name) + 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        if (e == EPERM)
            no_cap(err, errlen, name);
        else
            gp_errf(err, errlen, "opening TUN device %s: %s%s", name, strerror(e),
                    e == EBUSY ? ": it exists and another process has it open (another daemon?)"
                    : e == EINVAL
                        ? ": a device of that name exists and is not a TUN device, or the "
                          "template has more than one %d"
                        : "");
        return -e;
    }
    gp_tun *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        gp_errf(err, errlen, "opening TUN device %s: out of memory", ifr.ifr_name);
        return -ENOMEM;
    }
    t->fd = fd;
    memcpy(t->dev.name, ifr.ifr_name, IFNAMSIZ);
    t->dev.name[IFNAMSIZ - 1] = '\0';
    /* The index: what rtnetlink goes by, stable if the device is renamed. */
    t->dev.index = (int)if_nametoindex(t->dev.name);
    int rc = t->dev.index ? 0 : -errno;
    if (!rc)
        rc = uv_poll_init(loop, &t->poll, fd);
    if (rc < 0) {
        gp_errf(err, errlen, "opening TUN device %s: %s", t->dev.name, strerror(-rc));
        close(fd);
        free(t);
        return rc;
    }
    t->poll.data = t;
    *out = t;
    return 0;
}

const gp_netdev *gp_tun_dev(const gp_tun *t) {
    return &t->dev;
}

const gp_tun_stats *gp_tun_stats_get(const gp_tun *t) {
    return &t->stats;
}

/* Reading stops on an error and the caller hears of it once. */
static void read_failed(gp_tun *t, int e) {
    t->stats.read_errors++;
    gp_tun_read_stop(t);
    if (t->on_error)
        t->on_error(t->ud, e);
}

static void on_readable(uv_poll_t *h, int status, int events) {
    gp_tun *t = h->data;
    if (status < 0) { /* POLLERR: the device was deleted (libuv says UV_EBADF) */
        read_failed(t, status);
        return;
    }
    if (!(events & UV_READABLE))
        return;
    /* Level-triggered: what the budget leaves is read on the next wakeup. The callback may stop
     * reading or close: checked before every read. */
    for (int i = 0; i < GP_TUN_READ_BUDGET && t->reading && !t->closing; i++) {
        ssize_t n = read(t->fd, t->buf, sizeof t->buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                read_failed(t, -errno);
            return;
        }
        if (n == 0)
            continue;
        t->stats.read_pkts++;
        t->stats.read_bytes += (uint64_t)n;
        t->on_packet(t->ud, t->buf, (size_t)n);
    }
}

int gp_tun_read_start(gp_tun *t, gp_tun_packet_fn on_packet, gp_tun_error_fn on_error, void *ud) {
    if (t->closing)
        return -EBADF;
    t->on_packet = on_packet;
    t->on_error = on_error;
    t->ud = ud;
    int rc = uv_poll_start(&t->poll, UV_READABLE, on_readable);
    if (rc < 0)
        return rc;
    t->reading = 1;
    return 0;
}

void gp_tun_read_stop(gp_tun *t) {
    if (!t->reading)
        return;
    t->reading = 0;
    uv_poll_stop(&t->poll);
}

int gp_tun_write(gp_tun *t, const uint8_t *pkt, size_t len) {
    if (t->closing)
        return -EBADF;
    if (len == 0 || len > GP_TUN_PKT_MAX) {
        t->stats.write_errors++;
        return -EMSGSIZE;
    }
    ssize_t n;
    do
        n = write(t->fd, pkt, len);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        /* The kernel's queue or memory: a NIC would drop too. */
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS)
            t->stats.write_drops++;
        else
            t->stats.write_errors++;
        return -e;
    }
    t->stats.write_pkts++;
    t->stats.write_bytes += len;
    return 0;
}

static void on_closed(uv_handle_t *h) {
    gp_tun *t = h->data;
    void (*cb)(void *) = t->on_closed;
    void *ud = t->closed_ud;
    /* Only now: libuv must not poll a descriptor that is closed (or reused). */
    close(t->fd);
    free(t);
    if (cb)
        cb(ud);
}

void gp_tun_close(gp_tun *t, void (*cb)(void *ud), void *ud) {
    if (!t || t->closing)
        return;
    t->closing = 1;
    t->reading = 0;
    t->on_closed = cb;
    t->closed_ud = ud;
    uv_close((uv_handle_t *)&t->poll, on_closed);
}

int gp_tun_forwarding_enable(int family, char *err, size_t errlen) {
    const char *path = family == 4   ? "/proc/sys/net/ipv4/ip_forward"
                       : family == 6 ? "/proc/sys/net/ipv6/conf/all/forwarding"
                                     : NULL;
    const char *knob = family == 4 ? "net.ipv4.ip_forward" : "net.ipv6.conf.all.forwarding";
    if (!path) {
        gp_errf(err, errlen, "enabling IP forwarding: family %d (4 or 6)", family);
        return -EINVAL;
    }
    char cur[8] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, cur, sizeof cur - 1);
        cur[n > 0 ? n : 0] = '\0';
        close(fd);
        if (cur[0] == '1')
            return 0;
    }
    int e = 0;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        e = errno;
    else {
        ssize_t n = write(fd, "1\n", 2);
        if (n != 2)
            e = n < 0 ? errno : EIO;
        if (close(fd) < 0 && !e)
            e = errno;
    }
    if (!e)
        return 0;
    char why[160] = "";
    if (e == ENOENT)
        snprintf(why, sizeof why, "%s",
                 family == 6 ? ": IPv6 is off in this kernel (ipv6.disable=1?)"
                             : ": is /proc mounted?");
    else if (e == EROFS)
        snprintf(why, sizeof why,
                 ": /proc/sys is read-only here (a container: set it from outside, e.g. docker "
                 "run --sysctl %s=1)",
                 knob);
    else if (e == EACCES || e == EPERM)
        snprintf(why, sizeof why,
                 ": needs root, or set it beforehand (sysctl -w %s=1, or a file in "
                 "/etc/sysctl.d/)",
                 knob);
    gp_errf(err, errlen, "enabling IP forwarding (%s, %s): %s%s", knob, path, strerror(e), why);
    return -e;
}
