/* relay.c — gp-relay: a UDP impairment relay, so tests, benchmarks and users can put a bad link
 * between a rudp:// house and its bridge. Clients send datagrams to the relay's listen address;
 * for each client address the relay opens its own upstream socket toward the target and sends
 * the target's answers back to that client. Each direction (up: client->target, down:
 * target->client) has its own impairments: independent and Gilbert-Elliott loss, delay and
 * jitter (order kept unless reordering is asked for), reordering, duplication, a rate-limited
 * bottleneck with a drop-tail queue, blackout windows, drop-everything toggled by SIGUSR1 and
 * SIGUSR2, and NAT rebinding (a new upstream source port every N ms).
 *
 * The first half of the file is the model, pure: rl_decide() is given a datagram's length and
 * the time and returns its fate (dropped and why, or one or two copies with their release
 * times). Every random draw about the n-th datagram of a direction is a hash of (seed,
 * direction, n, purpose), so a decision does not depend on timing or on what happened to other
 * datagrams; only the Gilbert-Elliott state carries over, and it advances exactly once per
 * datagram. The second half is the I/O side: one libuv loop, its timers (monotonic clock),
 * sockets and signals, and the key=value event lines on stdout. Test tool. */
#include "../harness/tool.h"
#include "conf.h"
#include "impair.h"
#include "list.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#define RL_MAX_WINDOWS 64
#define RL_OLD_PORTS 8     /* retired upstream sockets kept open per client (NAT rebinding) */
#define RL_HASH 1024       /* client address buckets */
#define RL_SWEEP_MS 1000u  /* idle-flow check */
#define RL_MAX_DGRAM 65536 /* receive buffer: any UDP payload fits */
#define RL_MAX_SOURCES 16

enum { UP = 0, DOWN = 1 };
static const char *const DIR_NAME[2] = {"up", "down"};

/* Why a datagram (or one copy of it) was dropped. */
enum rl_reason {
    R_BLOCKED,  /* drop-all (SIGUSR1) */
    R_BLACKOUT, /* inside a --blackout window */
    R_LOSS,     /* independent loss */
    R_BURST,    /* Gilbert-Elliott bad state */
    R_QUEUE,    /* bottleneck queue full (drop-tail) */
    R_REBIND,   /* down: sent to a retired upstream port under --rebind-drop */
    R_FOREIGN,  /* down: not from the target's address */
    R_SEND,     /* the relay's own send failed */
    R_FLOWS,    /* up: a new client beyond --max-flows, or its upstream socket failed */
    R_COUNT
};
static const char *const REASON_NAME[R_COUNT] = {
    "blocked", "blackout", "loss", "burst", "queue", "rebind", "foreign", "send_error", "flows"};

/* --- configuration ------------------------------------------------------------------------ */

/* One direction's impairments, as given, then what rl_validate() derives from them. */
typedef struct rl_dconf {
    double loss, burst_len, ge_p, ge_r, ge_loss;
    double delay_ms, jitter_ms, reorder, reorder_ms, dup;
    double rate_bps, queue_bytes;
    /* derived */
    int ge;                               /* Gilbert-Elliott state machine in use */
    double p_loss, p_gb, p_bg, p_badloss; /* independent loss; GE transitions; loss when bad */
} rl_dconf;

typedef struct rl_window {
    double start_ms, dur_ms; /* since the relay started */
} rl_window;

typedef struct rl_config {
    char *listen, *target, *source, *log_level, *jitter_dist;
    long long seed, stats_interval, rebind_every, idle_timeout, max_flows, sock_buf;
    int rebind_drop, drop_all, help;
    rl_dconf d[2];
    rl_window win[RL_MAX_WINDOWS];
    size_t nwin;
} rl_config;

/* Per-direction options: each exists as NAME (both directions), NAME-up and NAME-down. */
enum rl_kind { K_PROB, K_MS, K_LEN, K_RATE, K_BYTES };
enum {
    P_LOSS,
    P_BURST_LEN,
    P_GE_P,
    P_GE_R,
    P_GE_LOSS,
    P_DELAY,
    P_JITTER,
    P_REORDER,
    P_REORDER_MS,
    P_DUP,
    P_RATE,
    P_QUEUE,
    P_COUNT
};
static const struct {
    size_t off;
    enum rl_kind kind;
} PARAMS[P_COUNT] = {
    [P_LOSS] = {offsetof(rl_dconf, loss), K_PROB},
    [P_BURST_LEN] = {offsetof(rl_dconf, burst_len), K_LEN},
    [P_GE_P] = {offsetof(rl_dconf, ge_p), K_PROB},
    [P_GE_R] = {offsetof(rl_dconf, ge_r), K_PROB},
    [P_GE_LOSS] = {offsetof(rl_dconf, ge_loss), K_PROB},
    [P_DELAY] = {offsetof(rl_dconf, delay_ms), K_MS},
    [P_JITTER] = {offsetof(rl_dconf, jitter_ms), K_MS},
    [P_REORDER] = {offsetof(rl_dconf, reorder), K_PROB},
    [P_REORDER_MS] = {offsetof(rl_dconf, reorder_ms), K_MS},
    [P_DUP] = {offsetof(rl_dconf, dup), K_PROB},
    [P_RATE] = {offsetof(rl_dconf, rate_bps), K_RATE},
    [P_QUEUE] = {offsetof(rl_dconf, queue_bytes), K_BYTES},
};

/* A decimal number, all of `s`; K_RATE takes a k/M/G suffix (x1000, bits/s convention),
 * K_BYTES a k/m/g suffix (x1024, as conf.c does for sizes). */
static int parse_value(const char *name, enum rl_kind kind, const char *s, double *out, char *err,
                       size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v)) {
        snprintf(err, errlen, "%s: \"%s\" is not a number", name, s);
        return GP_ERR_INVALID;
    }
    double mul = 1;
    if (*end && !end[1] && (kind == K_RATE || kind == K_BYTES)) {
        double base = kind == K_RATE ? 1000 : 1024;
        switch (*end) {
        case 'k':
        case 'K':
            mul = base, end++;
            break;
        case 'm':
        case 'M':
            mul = base * base, end++;
            break;
        case 'g':
        case 'G':
            mul = base * base * base, end++;
            break;
        }
    }
    if (*end) {
        snprintf(err, errlen, "%s: \"%s\" is not a number", name, s);
        return GP_ERR_INVALID;
    }
    v *= mul;
    const char *why = NULL;
    switch (kind) {
    case K_PROB:
        why = v < 0 || v > 1 ? "a probability from 0 to 1" : NULL;
        break;
    case K_MS:
        why = v < 0 || v > 3600000 ? "milliseconds from 0 to 3600000" : NULL;
        break;
    case K_LEN:
        why = v != 0 && (v < 1 || v > 1e6) ? "0 (off) or a mean length from 1 to 1000000" : NULL;
        break;
    case K_RATE:
        why = v < 0 || v > 1e12 ? "bits per second from 0 (unlimited) to 1T" : NULL;
        break;
    case K_BYTES:
        why = v < 1 || v > (double)(1LL << 32) ? "bytes from 1 to 4g" : NULL;
        break;
    }
    if (why) {
        snprintf(err, errlen, "%s: \"%s\" must be %s", name, s, why);
        return GP_ERR_INVALID;
    }
    *out = v;
    return 0;
}

static int set_param(void *obj, int param, int dirs, const char *name, const char *value, char *err,
                     size_t errlen) {
    rl_config *c = obj;
    double v;
    if (parse_value(name, PARAMS[param].kind, value, &v, err, errlen) != 0)
        return GP_ERR_INVALID;
    for (int d = 0; d < 2; d++)
        if (dirs & (1 << d))
            memcpy((char *)&c->d[d] + PARAMS[param].off, &v, sizeof v);
    return 0;
}

/* conf.h's custom setters get no option pointer: three small setters per parameter. */
#define RL_SETTERS(id, param, name)                                                                \
    static int set_##id(void *o, const char *v, char *e, size_t n) {                               \
        return set_param(o, param, 3, name, v, e, n);                                              \
    }                                                                                              \
    static int set_##id##_up(void *o, const char *v, char *e, size_t n) {                          \
        return set_param(o, param, 1, name "-up", v, e, n);                                        \
    }                                                                                              \
    static int set_##id##_down(void *o, const char *v, char *e, size_t n) {                        \
        return set_param(o, param, 2, name "-down", v, e, n);                                      \
    }
RL_SETTERS(loss, P_LOSS, "loss")
RL_SETTERS(burst_len, P_BURST_LEN, "burst-len")
RL_SETTERS(ge_p, P_GE_P, "ge-p")
RL_SETTERS(ge_r, P_GE_R, "ge-r")
RL_SETTERS(ge_loss, P_GE_LOSS, "ge-loss")
RL_SETTERS(delay, P_DELAY, "delay")
RL_SETTERS(jitter, P_JITTER, "jitter")
RL_SETTERS(reorder, P_REORDER, "reorder")
RL_SETTERS(reorder_ms, P_REORDER_MS, "reorder-ms")
RL_SETTERS(dup, P_DUP, "dup")
RL_SETTERS(rate, P_RATE, "rate")
RL_SETTERS(queue, P_QUEUE, "queue-bytes")

/* "START:DURATION" in ms, several separated by commas; each occurrence adds windows. */
static int set_blackout(void *obj, const char *value, char *err, size_t errlen) {
    rl_config *c = obj;
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, ", \t");
        if (n) {
            char buf[64], *colon;
            if (n >= sizeof buf || !(colon = memchr(p, ':', n))) {
                snprintf(err, errlen, "blackout: \"%.*s\" must be START_MS:DURATION_MS", (int)n, p);
                return GP_ERR_INVALID;
            }
            if (c->nwin >= RL_MAX_WINDOWS) {
                snprintf(err, errlen, "blackout: at most %d windows", RL_MAX_WINDOWS);
                return GP_ERR_INVALID;
            }
            memcpy(buf, p, n);
            buf[n] = '\0';
            buf[colon - p] = '\0';
            rl_window *w = &c->win[c->nwin];
            if (parse_value("blackout start", K_MS, buf, &w->start_ms, err, errlen) != 0 ||
                parse_value("blackout duration", K_MS, buf + (colon - p) + 1, &w->dur_ms, err,
                            errlen) != 0)
                return GP_ERR_INVALID;
            c->nwin++;
        }
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

#define RL_DIR_OPTS(id, name, def, help)                                                           \
    {name, GP_CONF_FN, 0, 0, 0, def, set_##id, help " (both directions)"},                         \
        {name "-up", GP_CONF_FN, 0, 0, 0, NULL, set_##id##_up, "--" name ", client->target only"}, \
    {                                                                                              \
        name "-down", GP_CONF_FN, 0, 0, 0, NULL, set_##id##_down,                                  \
            "--" name ", target->client only"                                                      \
    }

#define OFF(f) offsetof(rl_config, f)
static const gp_conf_opt opts[] = {
    {"listen", GP_CONF_STR, OFF(listen), 0, 0, "127.0.0.1:0", NULL,
     "HOST:PORT clients send to (port 0: any free one, printed in event=listening)"},
    {"target", GP_CONF_STR, OFF(target), 0, 0, NULL, NULL,
     "HOST:PORT datagrams are relayed to (required)"},
    {"source", GP_CONF_STR, OFF(source), 0, 0, NULL, NULL,
     "local addresses for the upstream sockets, comma-separated; each rebinding moves to the "
     "next one, so the target sees a new address too (default: any address)"},
    {"seed", GP_CONF_INT, OFF(seed), 0, INT64_MAX, "1", NULL,
     "seed of every random decision: the same seed and input give the same decisions"},
    RL_DIR_OPTS(loss, "loss", "0", "probability a datagram is lost"),
    RL_DIR_OPTS(burst_len, "burst-len", "0",
                "mean loss burst in datagrams: --loss becomes bursty with the same mean rate"),
    RL_DIR_OPTS(ge_p, "ge-p", "0",
                "Gilbert-Elliott: probability per datagram of going from good to bad"),
    RL_DIR_OPTS(ge_r, "ge-r", "0", "Gilbert-Elliott: probability of going from bad to good"),
    RL_DIR_OPTS(ge_loss, "ge-loss", "1", "Gilbert-Elliott: loss probability in the bad state"),
    RL_DIR_OPTS(delay, "delay", "0", "one-way delay in ms"),
    RL_DIR_OPTS(jitter, "jitter", "0",
                "jitter in ms (uniform: +-J, normal: standard deviation J); order is kept"),
    RL_DIR_OPTS(reorder, "reorder", "0",
                "probability a datagram is held back an extra 0..reorder-ms and overtaken"),
    RL_DIR_OPTS(reorder_ms, "reorder-ms", "10", "largest extra delay of a reordered datagram"),
    RL_DIR_OPTS(dup, "dup", "0", "probability a datagram is sent twice"),
    RL_DIR_OPTS(rate, "rate", "0", "bottleneck in bits/s, k/M/G suffixes (0: unlimited)"),
    RL_DIR_OPTS(queue, "queue-bytes", "64k",
                "bottleneck queue size; a datagram that does "
                "not fit is dropped (drop-tail)"),
    {"jitter-dist", GP_CONF_STR, OFF(jitter_dist), 0, 0, "uniform", NULL,
     "jitter distribution: uniform or normal"},
    {"blackout", GP_CONF_FN, 0, 0, 0, NULL, set_blackout,
     "START_MS:DURATION_MS after start during which everything is dropped"},
    {"drop-all", GP_CONF_BOOL, OFF(drop_all), 0, 1, "0", NULL,
     "start dropping everything (SIGUSR1 turns this on, SIGUSR2 off)"},
    {"rebind-every", GP_CONF_INT, OFF(rebind_every), 0, 86400000, "0", NULL,
     "ms between NAT rebindings: each client gets a new upstream source port (0: never)"},
    {"rebind-drop", GP_CONF_BOOL, OFF(rebind_drop), 0, 1, "0", NULL,
     "after a rebinding, drop what the target sends to the old port"},
    {"max-flows", GP_CONF_INT, OFF(max_flows), 1, 100000, "1024", NULL,
     "most clients relayed at once (more are dropped, reason=flows)"},
    {"idle-timeout", GP_CONF_INT, OFF(idle_timeout), 0, 86400000, "120000", NULL,
     "ms without traffic after which a client's upstream socket is closed (0: never)"},
    {"sock-buf", GP_CONF_INT, OFF(sock_buf), 0, 1LL << 30, "4194304", NULL,
     "socket send/receive buffer bytes asked of the kernel (0: leave the default)"},
    {"stats-interval", GP_CONF_INT, OFF(stats_interval), 0, 86400000, "1000", NULL,
     "ms between event=stats lines (0: only the final ones)"},
    {"log-level", GP_CONF_STR, OFF(log_level), 0, 0, "info", NULL,
     "error, warn, info or debug (debug: one line per datagram decision)"},
    {"help", GP_CONF_BOOL, OFF(help), 0, 1, "0", NULL, "print this help"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

/* Derives the loss model of each direction; 0, or -1 with a message. */
static int rl_validate(rl_config *c, char *err, size_t errlen) {
    for (int i = 0; i < 2; i++) {
        rl_dconf *d = &c->d[i];
        const char *dn = DIR_NAME[i];
        d->ge = 0;
        d->p_loss = d->loss;
        d->p_gb = d->p_bg = d->p_badloss = 0;
        if (d->burst_len > 0 && (d->ge_p > 0 || d->ge_r > 0)) {
            snprintf(err, errlen,
                     "%s: burst-len and ge-p/ge-r are two ways to ask for bursty loss: give one",
                     dn);
            return -1;
        }
        if (d->burst_len > 0 && d->loss > 0 && d->loss < 1) {
            /* Simple Gilbert channel: bad always loses, good never. Mean burst L = 1/r, and the
             * stationary share of bad p/(p+r) equals --loss when p = loss*r/(1-loss). */
            double gb = d->loss / (d->burst_len * (1 - d->loss));
            if (gb > 1) {
                snprintf(err, errlen, "%s: burst-len %g is too short for loss %g (at least %g)", dn,
                         d->burst_len, d->loss, d->loss / (1 - d->loss));
                return -1;
            }
            d->ge = 1;
            d->p_gb = gb;
            d->p_bg = 1 / d->burst_len;
            d->p_badloss = 1;
            d->p_loss = 0;
        } else if (d->ge_p > 0) {
            if (d->ge_r <= 0) {
                snprintf(err, errlen, "%s: ge-p needs ge-r > 0 (the bad state would never end)",
                         dn);
                return -1;
            }
            d->ge = 1;
            d->p_gb = d->ge_p;
            d->p_bg = d->ge_r;
            d->p_badloss = d->ge_loss;
        }
        if (d->rate_bps > 0 && d->rate_bps < 8) {
            snprintf(err, errlen, "%s: rate below 8 bits/s", dn);
            return -1;
        }
    }
    if (strcmp(c->jitter_dist, "uniform") != 0 && strcmp(c->jitter_dist, "normal") != 0) {
        snprintf(err, errlen, "jitter-dist: \"%s\" is not uniform or normal", c->jitter_dist);
        return -1;
    }
    return 0;
}

/* --- the model (pure) --------------------------------------------------------------------- */

typedef struct rl_stats {
    uint64_t in, in_bytes, out, out_bytes, dropped[R_COUNT], duplicated, reordered, pending;
    double queue_hw; /* bytes */
} rl_stats;

/* One direction's state. */
typedef struct rl_dstate {
    uint64_t n;               /* datagrams that entered so far; the next is n + 1 */
    int ge_bad;               /* Gilbert-Elliott: in the bad state */
    uint64_t link_free_ns;    /* the bottleneck has sent all it accepted by then */
    uint64_t last_release_ns; /* in-order datagrams never leave before this */
    rl_stats st;
} rl_dstate;

typedef struct rl_model {
    const rl_config *cfg;
    uint64_t start_ns;
    int drop_all;
} rl_model;

typedef struct rl_copy {
    int reason;          /* -1: scheduled; R_QUEUE: this copy did not fit the queue */
    uint64_t release_ns; /* when it is sent on */
    double queued_bytes; /* bottleneck occupancy it found */
    double queue_ms, delay_ms, extra_ms;
    int reordered;
} rl_copy;

typedef struct rl_verdict {
    uint64_t n;
    int reason; /* -1: forwarded as ncopies copies; else dropped whole */
    int ncopies;
    rl_copy copy[2];
} rl_verdict;

/* Draw purposes; per copy c the jitter and reordering draws are D_COPY + 4c + 0..3. */
enum { D_GE = 1, D_LOSS, D_BADLOSS, D_DUP, D_COPY };

/* Uniform in [0, 1): a function of (seed, direction, datagram number, purpose) only. */
static double rl_uniform(uint64_t seed, int dir, uint64_t n, unsigned what) {
    return imp_uniform(seed, (uint32_t)dir, n, what);
}

static double rl_normal(uint64_t seed, int dir, uint64_t n, unsigned what) {
    double u1 = 1.0 - rl_uniform(seed, dir, n, what), u2 = rl_uniform(seed, dir, n, what + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int in_blackout(const rl_config *c, uint64_t since_start_ns) {
    double t = (double)since_start_ns / 1e6;
    for (size_t i = 0; i < c->nwin; i++)
        if (t >= c->win[i].start_ms && t < c->win[i].start_ms + c->win[i].dur_ms)
            return 1;
    return 0;
}

/* Decides the fate of the next datagram of `dir`, `len` bytes, arriving at now_ns. Updates the
 * direction's state (number, loss state, bottleneck, in-order horizon) and its drop, duplicate,
 * reorder and queue high-water counters; the caller counts datagrams in and out. */
static void rl_decide(const rl_model *m, rl_dstate *s, int dir, size_t len, uint64_t now_ns,
                      rl_verdict *v) {
    const rl_config *c = m->cfg;
    const rl_dconf *d = &c->d[dir];
    uint64_t seed = (uint64_t)c->seed, n = ++s->n;
    memset(v, 0, sizeof *v);
    v->n = n;
    v->reason = -1;
    /* The loss state moves for every datagram, dropped or not, so it stays a function of n. */
    if (d->ge) {
        double u = rl_uniform(seed, dir, n, D_GE);
        s->ge_bad = s->ge_bad ? !(u < d->p_bg) : u < d->p_gb;
    }
    if (m->drop_all)
        v->reason = R_BLOCKED;
    else if (c->nwin && in_blackout(c, now_ns - m->start_ns))
        v->reason = R_BLACKOUT;
    else if (d->p_loss > 0 && rl_uniform(seed, dir, n, D_LOSS) < d->p_loss)
        v->reason = R_LOSS;
    else if (d->ge && s->ge_bad && rl_uniform(seed, dir, n, D_BADLOSS) < d->p_badloss)
        v->reason = R_BURST;
    if (v->reason >= 0) {
        s->st.dropped[v->reason]++;
        return;
    }
    v->ncopies = d->dup > 0 && rl_uniform(seed, dir, n, D_DUP) < d->dup ? 2 : 1;
    if (v->ncopies == 2)
        s->st.duplicated++;
    for (int k = 0; k < v->ncopies; k++) {
        rl_copy *cp = &v->copy[k];
        unsigned base = D_COPY + 4u * (unsigned)k;
        uint64_t t = now_ns;
        cp->reason = -1;
        if (d->rate_bps > 0) {
            if (imp_bottleneck(&s->link_free_ns, d->rate_bps, d->queue_bytes, len, now_ns,
                               &cp->queued_bytes, &s->st.queue_hw, &t) != 0) {
                cp->reason = R_QUEUE;
                s->st.dropped[R_QUEUE]++;
                continue;
            }
            cp->queue_ms = (double)(t - now_ns) / 1e6;
        }
        double delay = d->delay_ms;
        if (d->jitter_ms > 0) {
            if (c->jitter_dist[0] == 'n')
                delay += d->jitter_ms * rl_normal(seed, dir, n, base);
            else
                delay += d->jitter_ms * (2 * rl_uniform(seed, dir, n, base) - 1);
            if (delay < 0)
                delay = 0;
        }
        cp->delay_ms = delay;
        t += (uint64_t)(delay * 1e6);
        if (d->reorder > 0 && rl_uniform(seed, dir, n, base + 2) < d->reorder) {
            /* Held back, and outside the in-order horizon: later datagrams overtake it. */
            cp->extra_ms = d->reorder_ms * (1 - rl_uniform(seed, dir, n, base + 3));
            t += (uint64_t)(cp->extra_ms * 1e6);
            cp->reordered = 1;
            s->st.reordered++;
        } else {
            /* Jitter alone never reorders: a datagram leaves no earlier than its predecessor. */
            if (t < s->last_release_ns)
                t = s->last_release_ns;
            s->last_release_ns = t;
        }
        cp->release_ns = t;
    }
}

/* --- I/O side ----------------------------------------------------------------------------- */

typedef struct rl_flow rl_flow;

typedef struct rl_sock {
    uv_udp_t h;
    rl_flow *f;
    int stale; /* retired by a rebinding */
    int port;
    char name[64]; /* local address:port */
} rl_sock;

/* One client address and its upstream socket(s). */
struct rl_flow {
    rl_flow *hnext, *prev, *next;
    struct sockaddr_storage client;
    char name[64];
    rl_sock *cur, *old[RL_OLD_PORTS];
    size_t nold, nsocks; /* nsocks: upstream sockets opened so far (picks the --source) */
    uv_timer_t rebind;
    uint64_t last_ns;
    size_t pending; /* scheduled or being sent: the flow lives while > 0 */
};

typedef struct rl_item {
    uv_udp_send_t req;
    uint64_t release_ns, seq, n;
    rl_flow *f;
    int dir, copy;
    size_t len;
    uint8_t data[];
} rl_item;

static struct {
    rl_config cfg;
    int log_level;
    uv_loop_t *loop;
    uv_udp_t listen;
    uv_timer_t sched, stats, sweep;
    uv_signal_t sig[4];
    uv_prepare_t flush;
    struct sockaddr_storage target, src[RL_MAX_SOURCES];
    size_t nsrc;
    char target_name[64];
    rl_model model;
    rl_dstate ds[2];
    rl_flow *hash[RL_HASH], *flows;
    size_t nflows;
    uint64_t rebinds, seq;
    rl_item **heap;
    size_t nheap, capheap;
    int stopping;
} G;

enum { L_ERROR, L_WARN, L_INFO, L_DEBUG };
static const char *const LEVELS[] = {"error", "warn", "info", "debug"};

/* One event line on stdout. Lines are flushed before the loop blocks (on_flush), and at once
 * for the lines a test waits on. */
static void rl_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rl_log(int level, const char *event, const char *fmt, ...) {
    if (level > G.log_level)
        return;
    printf("event=%s", event);
    if (level <= L_WARN)
        printf(" level=%s", LEVELS[level]);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        putchar(' ');
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf(" t_ms=%.3f\n", (double)(uv_hrtime() - G.model.start_ns) / 1e6);
}

static void addr_name(const struct sockaddr *a, char *out, size_t cap) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)a, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in *)a)->sin_port);
        snprintf(out, cap, "%s:%d", ip, port);
    } else {
        uv_ip6_name((const struct sockaddr_in6 *)a, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
        snprintf(out, cap, "[%s]:%d", ip, port);
    }
}

static int addr_eq(const struct sockaddr *a, const struct sockaddr *b) {
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static size_t addr_len(const struct sockaddr *a) {
    return a->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static unsigned addr_hash(const struct sockaddr *a) {
    const uint8_t *p;
    size_t n;
    uint16_t port;
    if (a->sa_family == AF_INET) {
        p = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr, n = 4;
        port = ((const struct sockaddr_in *)a)->sin_port;
    } else {
        p = (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr, n = 16;
        port = ((const struct sockaddr_in6 *)a)->sin6_port;
    }
    uint32_t h = 2166136261u ^ port;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % RL_HASH;
}

/* HOST:PORT or [V6]:PORT; an empty host means any address. */
static int parse_addr(const char *what, const char *s, struct sockaddr_storage *out, char *err,
                      size_t errlen) {
    char host[256];
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host)
            goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(rb - s - 1), s + 1);
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
        port = colon + 1;
    }
    if (!*port)
        goto bad;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV | (host[0] ? 0 : AI_PASSIVE)};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "%s: \"%s\": %s", what, s, gai_strerror(rc));
        return -1;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(err, errlen, "%s: \"%s\" must be HOST:PORT or [IPV6]:PORT", what, s);
    return -1;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    static char rx[RL_MAX_DGRAM]; /* each datagram is copied out before the next read */
    (void)h, (void)hint;
    *buf = uv_buf_init(rx, sizeof rx);
}

static void set_bufs(uv_udp_t *h) {
    if (G.cfg.sock_buf <= 0)
        return;
    int v = (int)G.cfg.sock_buf;
    uv_recv_buffer_size((uv_handle_t *)h, &v);
    v = (int)G.cfg.sock_buf;
    uv_send_buffer_size((uv_handle_t *)h, &v);
}

/* --- the schedule: a min-heap of datagrams by release time, then arrival order --------- */

static int item_before(const rl_item *a, const rl_item *b) {
    return a->release_ns < b->release_ns || (a->release_ns == b->release_ns && a->seq < b->seq);
}

static int heap_push(rl_item *it) {
    if (G.nheap == G.capheap) {
        size_t cap = G.capheap ? G.capheap * 2 : 256;
        rl_item **h = realloc(G.heap, cap * sizeof *h);
        if (!h)
            return -1;
        G.heap = h;
        G.capheap = cap;
    }
    size_t i = G.nheap++;
    while (i > 0 && item_before(it, G.heap[(i - 1) / 2])) {
        G.heap[i] = G.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    G.heap[i] = it;
    return 0;
}

static rl_item *heap_pop(void) {
    rl_item *top = G.heap[0], *last = G.heap[--G.nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const rl_item *best = last;
        if (l < G.nheap && item_before(G.heap[l], best))
            m = l, best = G.heap[l];
        if (r < G.nheap && item_before(G.heap[r], best))
            m = r;
        if (m == i)
            break;
        G.heap[i] = G.heap[m];
        i = m;
    }
    if (G.nheap)
        G.heap[i] = last;
    return top;
}

static void item_free(rl_item *it) {
    it->f->pending--;
    G.ds[it->dir].st.pending--;
    free(it);
}

static void on_sent(uv_udp_send_t *req, int status) {
    rl_item *it = req->data;
    rl_stats *st = &G.ds[it->dir].st;
    if (status == 0) {
        st->out++;
        st->out_bytes += it->len;
    } else {
        st->dropped[R_SEND]++;
        if (status != UV_ECANCELED)
            rl_log(L_WARN, "send_error", "dir=%s n=%llu len=%zu error=%s", DIR_NAME[it->dir],
                   (unsigned long long)it->n, it->len, uv_strerror(status));
    }
    item_free(it);
}

static void item_send(rl_item *it) {
    rl_stats *st = &G.ds[it->dir].st;
    uv_udp_t *h = it->dir == UP ? (it->f->cur ? &it->f->cur->h : NULL) : &G.listen;
    const struct sockaddr *to =
        (const struct sockaddr *)(it->dir == UP ? &G.target : &it->f->client);
    int r = UV_EBADF;
    if (h) {
        uv_buf_t b = uv_buf_init((char *)it->data, (unsigned)it->len);
        r = uv_udp_try_send(h, &b, 1, to);
        if (r == UV_EAGAIN) {
            /* Socket buffer full, or earlier sends still queued: queue behind them. */
            it->req.data = it;
            r = uv_udp_send(&it->req, h, &b, 1, to, on_sent);
            if (r == 0)
                return;
        }
    }
    if (r >= 0) {
        st->out++;
        st->out_bytes += it->len;
    } else {
        st->dropped[R_SEND]++;
        rl_log(L_WARN, "send_error", "dir=%s n=%llu len=%zu error=%s", DIR_NAME[it->dir],
               (unsigned long long)it->n, it->len, uv_strerror(r));
    }
    item_free(it);
}

static void on_sched(uv_timer_t *t);

/* Sends everything due and sets the timer for the next release. The timer may fire up to a
 * millisecond early (the loop's clock is in whole ms): then nothing is due and it is set
 * again, so nothing ever leaves before its release time. */
static void run_due(void) {
    uint64_t now = uv_hrtime();
    while (G.nheap && G.heap[0]->release_ns <= now)
        item_send(heap_pop());
    if (G.nheap && !G.stopping) {
        uint64_t wait_ns = G.heap[0]->release_ns - now;
        uv_update_time(G.loop);
        uv_timer_start(&G.sched, on_sched, (wait_ns + 999999) / 1000000, 0);
    }
}

static void on_sched(uv_timer_t *t) {
    (void)t;
    run_due();
}

/* --- datagrams in ------------------------------------------------------------------------- */

static void process(int dir, rl_flow *f, const uint8_t *p, size_t len) {
    rl_dstate *s = &G.ds[dir];
    uint64_t now = uv_hrtime();
    s->st.in++;
    s->st.in_bytes += len;
    f->last_ns = now;
    rl_verdict v;
    G.model.drop_all = G.cfg.drop_all;
    rl_decide(&G.model, s, dir, len, now, &v);
    if (v.reason >= 0) {
        rl_log(L_DEBUG, "drop", "dir=%s n=%llu len=%zu reason=%s", DIR_NAME[dir],
               (unsigned long long)v.n, len, REASON_NAME[v.reason]);
        return;
    }
    if (v.ncopies > 1)
        rl_log(L_DEBUG, "dup", "dir=%s n=%llu len=%zu", DIR_NAME[dir], (unsigned long long)v.n,
               len);
    for (int k = 0; k < v.ncopies; k++) {
        const rl_copy *cp = &v.copy[k];
        if (cp->reason >= 0) {
            rl_log(L_DEBUG, "drop", "dir=%s n=%llu copy=%d len=%zu reason=%s queued_bytes=%.0f",
                   DIR_NAME[dir], (unsigned long long)v.n, k, len, REASON_NAME[cp->reason],
                   cp->queued_bytes);
            continue;
        }
        rl_item *it = malloc(sizeof *it + (len ? len : 1));
        if (it) {
            it->release_ns = cp->release_ns;
            it->seq = ++G.seq;
            it->n = v.n;
            it->f = f;
            it->dir = dir;
            it->copy = k;
            it->len = len;
            if (len)
                memcpy(it->data, p, len);
        }
        if (!it || heap_push(it) != 0) {
            free(it);
            s->st.dropped[R_SEND]++;
            rl_log(L_WARN, "drop", "dir=%s n=%llu len=%zu reason=out_of_memory", DIR_NAME[dir],
                   (unsigned long long)v.n, len);
            continue;
        }
        f->pending++;
        s->st.pending++;
        rl_log(L_DEBUG, "forward",
               "dir=%s n=%llu copy=%d len=%zu queued_bytes=%.0f queue_ms=%.3f delay_ms=%.3f "
               "reordered=%d extra_ms=%.3f",
               DIR_NAME[dir], (unsigned long long)v.n, k, len, cp->queued_bytes, cp->queue_ms,
               cp->delay_ms, cp->reordered, cp->extra_ms);
    }
    run_due();
}

static void on_up_sock_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *addr, unsigned flags);

static void on_sock_closed(uv_handle_t *h) {
    free(h->data);
}

/* A new upstream socket for f: any port, the target's address family. NULL on failure. */
static rl_sock *sock_open(rl_flow *f) {
    rl_sock *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->f = f;
    s->h.data = s;
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = G.target.ss_family;
    if (G.nsrc)
        any = G.src[f->nsocks % G.nsrc]; /* port 0 */
    f->nsocks++;
    int r = uv_udp_init(G.loop, &s->h);
    if (r != 0) {
        free(s);
        rl_log(L_ERROR, "socket_error", "client=%s error=%s", f->name, uv_strerror(r));
        return NULL;
    }
    r = uv_udp_bind(&s->h, (const struct sockaddr *)&any, 0);
    if (r == 0)
        r = uv_udp_recv_start(&s->h, on_alloc, on_up_sock_recv);
    if (r == 0) {
        struct sockaddr_storage me;
        int len = sizeof me;
        set_bufs(&s->h);
        if (uv_udp_getsockname(&s->h, (struct sockaddr *)&me, &len) == 0) {
            addr_name((const struct sockaddr *)&me, s->name, sizeof s->name);
            s->port = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
                                                    : ((struct sockaddr_in6 *)&me)->sin6_port);
        }
        return s;
    }
    rl_log(L_ERROR, "socket_error", "client=%s error=%s", f->name, uv_strerror(r));
    uv_close((uv_handle_t *)&s->h, on_sock_closed);
    return NULL;
}

static void on_rebind(uv_timer_t *t) {
    rl_flow *f = t->data;
    rl_sock *s = sock_open(f);
    if (!s)
        return; /* keep the current port; logged */
    rl_sock *old = f->cur;
    old->stale = 1;
    if (f->nold == RL_OLD_PORTS) {
        uv_close((uv_handle_t *)&f->old[0]->h, on_sock_closed);
        memmove(f->old, f->old + 1, (RL_OLD_PORTS - 1) * sizeof *f->old);
        f->nold--;
    }
    f->old[f->nold++] = old;
    f->cur = s;
    G.rebinds++;
    rl_log(L_INFO, "rebind", "client=%s old_port=%d new_port=%d old=%s new=%s", f->name, old->port,
           s->port, old->name, s->name);
}

static rl_flow *flow_find(const struct sockaddr *a) {
    for (rl_flow *f = G.hash[addr_hash(a)]; f; f = f->hnext)
        if (addr_eq((const struct sockaddr *)&f->client, a))
            return f;
    return NULL;
}

static rl_flow *flow_new(const struct sockaddr *a) {
    char name[64];
    addr_name(a, name, sizeof name);
    if (G.nflows >= (size_t)G.cfg.max_flows) {
        static int warned; /* once: each refused datagram is a debug drop line */
        if (!warned++)
            rl_log(L_WARN, "flows_full", "max_flows=%lld client=%s", G.cfg.max_flows, name);
        return NULL;
    }
    rl_flow *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    memcpy(&f->client, a, addr_len(a));
    snprintf(f->name, sizeof f->name, "%s", name);
    if (!(f->cur = sock_open(f))) {
        free(f);
        return NULL;
    }
    uv_timer_init(G.loop, &f->rebind);
    f->rebind.data = f;
    if (G.cfg.rebind_every > 0)
        uv_timer_start(&f->rebind, on_rebind, (uint64_t)G.cfg.rebind_every,
                       (uint64_t)G.cfg.rebind_every);
    unsigned b = addr_hash(a);
    f->hnext = G.hash[b];
    G.hash[b] = f;
    GP_LIST_PUSH(G.flows, f, prev, next);
    G.nflows++;
    rl_log(L_INFO, "flow", "client=%s port=%d upstream=%s flows=%zu", f->name, f->cur->port,
           f->cur->name, G.nflows);
    return f;
}

static void flow_close_handles(rl_flow *f, uv_close_cb timer_cb) {
    for (size_t i = 0; i < f->nold; i++)
        uv_close((uv_handle_t *)&f->old[i]->h, on_sock_closed);
    f->nold = 0;
    if (f->cur)
        uv_close((uv_handle_t *)&f->cur->h, on_sock_closed);
    f->cur = NULL;
    uv_close((uv_handle_t *)&f->rebind, timer_cb);
}

static void on_flow_timer_closed(uv_handle_t *h) {
    free(h->data);
}

/* An idle flow with nothing scheduled: unlinked, its sockets closed, freed once closed. */
static void flow_expire(rl_flow *f) {
    rl_flow **pp = &G.hash[addr_hash((const struct sockaddr *)&f->client)];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    GP_LIST_REMOVE(G.flows, f, prev, next);
    G.nflows--;
    rl_log(L_INFO, "flow_idle", "client=%s flows=%zu", f->name, G.nflows);
    flow_close_handles(f, on_flow_timer_closed);
}

static void on_sweep(uv_timer_t *t) {
    (void)t;
    uint64_t now = uv_hrtime(), idle = (uint64_t)G.cfg.idle_timeout * 1000000u;
    for (rl_flow *f = G.flows, *next; f; f = next) {
        next = f->next;
        if (f->pending == 0 && now - f->last_ns >= idle)
            flow_expire(f);
    }
}

static void on_listen_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                           const struct sockaddr *addr, unsigned flags) {
    (void)h, (void)flags;
    if (nread < 0) {
        rl_log(L_WARN, "recv_error", "dir=up error=%s", uv_strerror((int)nread));
        return;
    }
    if (!addr || G.stopping) /* nread 0 without an address: nothing was read */
        return;
    rl_flow *f = flow_find(addr);
    if (!f && !(f = flow_new(addr))) {
        rl_dstate *s = &G.ds[UP];
        s->st.in++;
        s->st.in_bytes += (uint64_t)nread;
        s->st.dropped[R_FLOWS]++;
        char from[64];
        addr_name(addr, from, sizeof from);
        rl_log(L_DEBUG, "drop", "dir=up n=%llu len=%zd reason=flows client=%s",
               (unsigned long long)++s->n, nread, from);
        return;
    }
    process(UP, f, (const uint8_t *)buf->base, (size_t)nread);
}

static void on_up_sock_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *addr, unsigned flags) {
    (void)flags;
    rl_sock *s = h->data;
    if (nread < 0) {
        rl_log(L_WARN, "recv_error", "dir=down client=%s error=%s", s->f->name,
               uv_strerror((int)nread));
        return;
    }
    if (!addr || G.stopping)
        return;
    int reason = -1;
    if (!addr_eq(addr, (const struct sockaddr *)&G.target))
        reason = R_FOREIGN;
    else if (s->stale && G.cfg.rebind_drop)
        reason = R_REBIND;
    if (reason >= 0) {
        rl_dstate *d = &G.ds[DOWN];
        d->st.in++;
        d->st.in_bytes += (uint64_t)nread;
        d->st.dropped[reason]++;
        char from[64];
        addr_name(addr, from, sizeof from);
        rl_log(L_DEBUG, "drop", "dir=down n=%llu len=%zd reason=%s client=%s port=%d from=%s",
               (unsigned long long)++d->n, nread, REASON_NAME[reason], s->f->name, s->port, from);
        return;
    }
    process(DOWN, s->f, (const uint8_t *)buf->base, (size_t)nread);
}

/* --- stats, signals, shutdown ------------------------------------------------------------- */

static void print_stats(int final) {
    uint64_t up_ms = (uv_hrtime() - G.model.start_ns) / 1000000u;
    for (int d = 0; d < 2; d++) {
        const rl_stats *st = &G.ds[d].st;
        uint64_t dropped = 0;
        for (int r = 0; r < R_COUNT; r++)
            dropped += st->dropped[r];
        printf("event=stats dir=%s in=%llu in_bytes=%llu out=%llu out_bytes=%llu dropped=%llu",
               DIR_NAME[d], (unsigned long long)st->in, (unsigned long long)st->in_bytes,
               (unsigned long long)st->out, (unsigned long long)st->out_bytes,
               (unsigned long long)dropped);
        for (int r = 0; r < R_COUNT; r++)
            printf(" drop_%s=%llu", REASON_NAME[r], (unsigned long long)st->dropped[r]);
        printf(" duplicated=%llu reordered=%llu queue_hw=%.0f pending=%llu rebinds=%llu "
               "flows=%zu drop_all=%d uptime_ms=%llu%s\n",
               (unsigned long long)st->duplicated, (unsigned long long)st->reordered,
               ceil(st->queue_hw), (unsigned long long)st->pending, (unsigned long long)G.rebinds,
               G.nflows, G.cfg.drop_all, (unsigned long long)up_ms, final ? " final=1" : "");
    }
    fflush(stdout);
}

static void on_stats(uv_timer_t *t) {
    (void)t;
    print_stats(0);
}

static void on_flush(uv_prepare_t *p) {
    (void)p;
    fflush(stdout);
}

static void stop(const char *why) {
    if (G.stopping)
        return;
    G.stopping = 1;
    rl_log(L_INFO, "stopping", "signal=%s", why);
    print_stats(1); /* pending= counts what is discarded now */
    while (G.nheap)
        item_free(heap_pop());
    uv_close((uv_handle_t *)&G.listen, NULL);
    /* Flows are freed after the loop: a send still queued in libuv is cancelled while its
     * socket closes, and its callback touches its flow. */
    for (rl_flow *f = G.flows; f; f = f->next)
        flow_close_handles(f, NULL);
    uv_close((uv_handle_t *)&G.sched, NULL);
    uv_close((uv_handle_t *)&G.stats, NULL);
    uv_close((uv_handle_t *)&G.sweep, NULL);
    uv_close((uv_handle_t *)&G.flush, NULL);
    for (int i = 0; i < 4; i++)
        uv_close((uv_handle_t *)&G.sig[i], NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)h;
    if (signum == SIGUSR1 || signum == SIGUSR2) {
        G.cfg.drop_all = signum == SIGUSR1;
        rl_log(L_INFO, "drop_all", "on=%d signal=%s", G.cfg.drop_all,
               signum == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
        fflush(stdout);
        return;
    }
    stop(signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* --- configuration loading and main ------------------------------------------------------- */

/* The NAME-up and NAME-down lines would triple the list: the header explains them instead.
 * conf.h calls every custom option repeatable; here only --blackout is. */
static void print_line(void *ud, const char *line) {
    (void)ud;
    if (strstr(line, ", client->target only") || strstr(line, ", target->client only"))
        return;
    const char *rep = strstr(line, ", repeatable");
    if (rep && !strstr(line, "--blackout"))
        printf("%.*s%s\n", (int)(rep - line), line, rep + strlen(", repeatable"));
    else
        printf("%s\n", line);
}

static void usage(void) {
    static const char text[] =
        "usage: gp-relay --target HOST:PORT [--listen HOST:PORT] [impairments]\n"
        "Relays UDP datagrams from clients to the target and back, impairing each direction\n"
        "(up: client->target, down: target->client). Options marked (both directions) also\n"
        "exist as NAME-up and NAME-down; a later one overrides an earlier one. Signals:\n"
        "SIGUSR1 drops everything, SIGUSR2 stops that, SIGTERM/SIGINT print the final stats\n"
        "and exit 0. See tests/relay/README.md.\n";
    tool_usage(text, opts, print_line);
}

static int load_config(int argc, char **argv, char *err, size_t errlen) {
    rl_config *c = &G.cfg;
    if (tool_conf_load(opts, c, &c->help, NULL, argc, argv, err, errlen) != 0 || c->help)
        return c->help ? 0 : -1;
    if (!c->target || !*c->target) {
        snprintf(err, errlen, "target: required (--target HOST:PORT)");
        return -1;
    }
    if ((G.log_level = tool_log_level(c->log_level, err, errlen)) < 0)
        return -1;
    if (rl_validate(c, err, errlen) != 0)
        return -1;
    struct sockaddr_storage l;
    if (parse_addr("target", c->target, &G.target, err, errlen) != 0 ||
        parse_addr("listen", c->listen, &l, err, errlen) != 0)
        return -1;
    addr_name((const struct sockaddr *)&G.target, G.target_name, sizeof G.target_name);
    for (const char *p = c->source ? c->source : ""; *p;) {
        size_t n = strcspn(p, ", \t");
        if (n) {
            char ip[128], hp[160];
            if (G.nsrc == RL_MAX_SOURCES || n >= sizeof ip) {
                snprintf(err, errlen, "source: at most %d addresses", RL_MAX_SOURCES);
                return -1;
            }
            snprintf(ip, sizeof ip, "%.*s", (int)n, p);
            snprintf(hp, sizeof hp, strchr(ip, ':') ? "[%s]:0" : "%s:0", ip);
            struct sockaddr_storage *a = &G.src[G.nsrc];
            if (parse_addr("source", hp, a, err, errlen) != 0)
                return -1;
            if (a->ss_family != G.target.ss_family) {
                snprintf(err, errlen, "source: %s is not of the target's address family", ip);
                return -1;
            }
            G.nsrc++;
        }
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

static int start(char *err, size_t errlen) {
    struct sockaddr_storage l;
    if (parse_addr("listen", G.cfg.listen, &l, err, errlen) != 0)
        return -1;
    uv_udp_init(G.loop, &G.listen);
    int r = uv_udp_bind(&G.listen, (const struct sockaddr *)&l, 0);
    if (r == 0)
        r = uv_udp_recv_start(&G.listen, on_alloc, on_listen_recv);
    if (r != 0) {
        snprintf(err, errlen, "listen %s: %s", G.cfg.listen, uv_strerror(r));
        uv_close((uv_handle_t *)&G.listen, NULL);
        return -1;
    }
    set_bufs(&G.listen);
    struct sockaddr_storage me;
    int len = sizeof me;
    uv_udp_getsockname(&G.listen, (struct sockaddr *)&me, &len);
    char name[64];
    addr_name((const struct sockaddr *)&me, name, sizeof name);
    int port = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
                                             : ((struct sockaddr_in6 *)&me)->sin6_port);
    printf("event=listening port=%d addr=%s target=%s seed=%lld pid=%d\n", port, name,
           G.target_name, G.cfg.seed, (int)getpid());
    fflush(stdout);
    return 0;
}

static void print_config(void) {
    for (int i = 0; i < 2; i++) {
        const rl_dconf *d = &G.cfg.d[i];
        rl_log(L_INFO, "config",
               "dir=%s loss=%g ge=%d ge_p=%g ge_r=%g ge_loss=%g delay_ms=%g jitter_ms=%g "
               "jitter_dist=%s reorder=%g reorder_ms=%g dup=%g rate_bps=%.0f queue_bytes=%.0f",
               DIR_NAME[i], d->p_loss, d->ge, d->p_gb, d->p_bg, d->p_badloss, d->delay_ms,
               d->jitter_ms, G.cfg.jitter_dist, d->reorder, d->reorder_ms, d->dup, d->rate_bps,
               d->queue_bytes);
    }
    for (size_t i = 0; i < G.cfg.nwin; i++)
        rl_log(L_INFO, "config", "blackout_start_ms=%g blackout_ms=%g", G.cfg.win[i].start_ms,
               G.cfg.win[i].dur_ms);
    rl_log(L_INFO, "config", "rebind_every_ms=%lld rebind_drop=%d drop_all=%d", G.cfg.rebind_every,
           G.cfg.rebind_drop, G.cfg.drop_all);
}

int main(int argc, char **argv) {
    char err[512] = "";
    G.model.start_ns = uv_hrtime();
    int rc = tool_configure("gp-relay", argc, argv, load_config, &G.cfg.help, usage);
    if (rc >= 0)
        goto out;
    rc = 1;
    G.model.cfg = &G.cfg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    G.loop = &loop;
    uv_timer_init(&loop, &G.sched);
    uv_timer_init(&loop, &G.stats);
    uv_timer_init(&loop, &G.sweep);
    uv_prepare_init(&loop, &G.flush);
    uv_prepare_start(&G.flush, on_flush);
    static const int sigs[4] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&loop, &G.sig[i]);
        uv_signal_start(&G.sig[i], on_signal, sigs[i]);
    }
    G.model.start_ns = uv_hrtime(); /* blackout windows and t_ms count from here */
    if (start(err, sizeof err) != 0) {
        fprintf(stderr, "gp-relay: %s\n", err);
        G.stopping = 1;
        uv_close((uv_handle_t *)&G.sched, NULL);
        uv_close((uv_handle_t *)&G.stats, NULL);
        uv_close((uv_handle_t *)&G.sweep, NULL);
        uv_close((uv_handle_t *)&G.flush, NULL);
        for (int i = 0; i < 4; i++)
            uv_close((uv_handle_t *)&G.sig[i], NULL);
    } else {
        rc = 0;
        print_config();
        if (G.cfg.stats_interval > 0)
            uv_timer_start(&G.stats, on_stats, (uint64_t)G.cfg.stats_interval,
                           (uint64_t)G.cfg.stats_interval);
        if (G.cfg.idle_timeout > 0)
            uv_timer_start(&G.sweep, on_sweep, RL_SWEEP_MS, RL_SWEEP_MS);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (rl_flow *f = G.flows, *next; f; f = next) {
        next = f->next;
        free(f);
    }
    if (uv_loop_close(&loop) != 0)
        rl_log(L_WARN, "loop_not_empty", NULL);
    fflush(stdout);
out:
    free(G.heap);
    gp_conf_clear(opts, &G.cfg);
    return rc;
}
