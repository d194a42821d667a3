/* rudp_sim.h — a simulated datagram link with a virtual clock, for testing gp_rel (the
 * picoquic way: two engines in one process, seeded, milliseconds of real time for minutes of
 * simulated time).
 *
 * Each direction is a link model applied in this order: the caller's send jitter (send_at),
 * a blackout window, a size limit (a path MTU that sends no ICMP back), a rate-limited bottleneck
 * with a byte-bounded FIFO queue (tail drop), then random loss (independent and/or Gilbert-Elliott
 * bursts) *after* the bottleneck — the lost packet used the bottleneck, as on a radio hop, which is
 * the harder case for bandwidth estimation — then propagation delay plus jitter (kept FIFO unless
 * reordering is asked for), reordering (a packet held back by extra delay), and duplication.
 *
 * Header-only, static functions: included by the unit tests and nothing else. */
#ifndef GP_RUDP_SIM_H
#define GP_RUDP_SIM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rudp_rel.h"

#define SIM_MS 1000000ull
#define SIM_SEC 1000000000ull

#ifndef RTT /* the tests' round trip; overridable to explore other paths: -DRTT="(600 * SIM_MS)"   \
             */
#define RTT (200 * SIM_MS)
#endif

typedef struct sim_link {
    uint64_t delay_ns;                /* one-way propagation delay */
    uint64_t jitter_ns;               /* extra delay uniform in [0, jitter_ns] (FIFO kept) */
    double loss;                      /* independent loss probability */
    double ge_gb, ge_bg, ge_bad_loss; /* Gilbert-Elliott: P(good->bad), P(bad->good), loss in bad */
    double reorder; /* probability a packet is held back reorder_ns (others overtake it) */
    uint64_t reorder_ns;
    double dup;                    /* probability a packet arrives twice */
    uint64_t rate_bps;             /* bottleneck rate, 0 = unlimited */
    size_t queue_bytes;            /* bottleneck queue, bytes (tail drop) */
    size_t overhead;               /* wire bytes added per payload (session, UDP/IP) for the rate */
    uint64_t black_from, black_to; /* everything entering in [from, to) is dropped */
    uint64_t gran_ns; /* arrivals rounded up to a multiple of this (a relay's ms timer) */
    size_t mtu;       /* payloads larger than this are dropped, silently (0: any size) */
} sim_link;

typedef struct sim_dir {
    sim_link c;
    uint64_t busy_until, last_arrival;
    int ge_bad;
    uint64_t sent, dropped, delivered;
    uint64_t qdropped; /* of dropped: by the bottleneck's full queue (not the loss draws) */
} sim_dir;

typedef struct sim_pkt {
    uint64_t at, seq;
    int to;
    size_t len;
    uint8_t *data;
} sim_pkt;

typedef struct sim sim;
/* A delivered message at endpoint ep. */
typedef void (*sim_msg_fn)(sim *s, int ep, uint32_t lane, const uint8_t *msg, size_t len);
/* A datagram delivered at endpoint ep. */
typedef void (*sim_dgram_fn)(sim *s, int ep, const uint8_t *p, size_t len);
/* Application tick: act at s->now, return the next time it wants to run (UINT64_MAX: none). */
typedef uint64_t (*sim_app_fn)(sim *s);
/* Extra drop decision for a packet from endpoint `from` (1: drop). */
typedef int (*sim_drop_fn)(sim *s, int from, const uint8_t *pkt, size_t len);
/* Called for every packet an endpoint sends (before the link). */
typedef void (*sim_tx_fn)(sim *s, int from, uint64_t send_at, const uint8_t *pkt, size_t len);

struct sim {
    uint64_t now, rng, seq;
    gp_rel *ep[2];
    sim_dir dir[2];          /* dir[i]: from ep[i] to ep[1 - i] */
    uint64_t send_jitter_ns; /* the caller's obfuscation jitter: send_at = now + U[0, j] */
    sim_pkt *heap;
    size_t nheap, capheap;
    sim_msg_fn on_msg;
    sim_dgram_fn on_dgram;
    sim_app_fn app;
    sim_drop_fn drop;
    sim_tx_fn on_tx;
    uint64_t app_next;
    void *ud;
    uint64_t stalls; /* iterations where an expiry <= now produced nothing (should be 0) */
    /* The host's timer granularity (0: exact). A real host (libuv) sleeps until expiry rounded
     * up to whole milliseconds and only pulls output when its timer fires, a datagram
     * arrives or the application queued something; with timer_gran_ns set the simulation
     * does the same, per endpoint. */
    uint64_t timer_gran_ns;
    uint64_t wake_late_ns; /* and each timer fires up to this much late (a busy machine) */
    uint64_t wake_at[2];
    int kicked[2];
};

static uint64_t sim_rand(sim *s) { /* splitmix64 */
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double sim_unif(sim *s) {
    return (double)(sim_rand(s) >> 11) / 9007199254740992.0;
}

static void sim_init(sim *s, uint64_t seed, const gp_rel_config *ca, const gp_rel_config *cb) {
    memset(s, 0, sizeof *s);
    s->rng = seed;
    s->now = 1 * SIM_SEC; /* not 0: catches code that treats time 0 as "unset" */
    s->ep[0] = gp_rel_new(ca, s->now);
    s->ep[1] = gp_rel_new(cb, s->now);
    for (int i = 0; i < 2; i++)
        s->dir[i].c.overhead = 88;
    s->app_next = s->now;
}

static void sim_link_both(sim *s, const sim_link *l) {
    s->dir[0].c = *l;
    s->dir[1].c = *l;
}

static void sim_free(sim *s) {
    gp_rel_free(s->ep[0]);
    gp_rel_free(s->ep[1]);
    for (size_t i = 0; i < s->nheap; i++)
        free(s->heap[i].data);
    free(s->heap);
}

static int sim_less(const sim_pkt *a, const sim_pkt *b) {
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void sim_push(sim *s, int to, uint64_t at, const uint8_t *p, size_t len) {
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? s->capheap * 2 : 256;
        s->heap = realloc(s->heap, s->capheap * sizeof *s->heap);
    }
    sim_pkt k = {at, s->seq++, to, len, malloc(len)};
    memcpy(k.data, p, len);
    size_t i = s->nheap++;
    while (i > 0 && sim_less(&k, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = k;
}

static sim_pkt sim_pop(sim *s) {
    sim_pkt top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && sim_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!sim_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

/* Puts a packet sent by `from` at send_at through the link model. */
static void sim_link_send(sim *s, int from, uint64_t t, const uint8_t *p, size_t len) {
    sim_dir *d = &s->dir[from];
    const sim_link *c = &d->c;
    d->sent++;
    if (s->on_tx)
        s->on_tx(s, from, t, p, len);
    if (t >= c->black_from && t < c->black_to) {
        d->dropped++;
        return;
    }
    if ((c->mtu && len > c->mtu) || (s->drop && s->drop(s, from, p, len))) {
        d->dropped++;
        return;
    }
    uint64_t exit = t;
    if (c->rate_bps) {
        uint64_t wire = (uint64_t)(len + c->overhead);
        uint64_t backlog_ns = d->busy_until > t ? d->busy_until - t : 0;
        if ((double)backlog_ns * (double)c->rate_bps / 8e9 > (double)c->queue_bytes) {
            d->dropped++;
            d->qdropped++;
            return;
        }
        uint64_t start = d->busy_until > t ? d->busy_until : t;
        d->busy_until = start + wire * 8 * SIM_SEC / c->rate_bps;
        exit = d->busy_until;
    }
    int lost = 0;
    if (c->loss > 0 && sim_unif(s) < c->loss)
        lost = 1;
    if (c->ge_gb > 0) {
        if (d->ge_bad ? sim_unif(s) < c->ge_bg : sim_unif(s) < c->ge_gb)
            d->ge_bad = !d->ge_bad;
        if (d->ge_bad && sim_unif(s) < c->ge_bad_loss)
            lost = 1;
    }
    if (lost) {
        d->dropped++;
        return;
    }
    uint64_t at = exit + c->delay_ns;
    if (c->jitter_ns)
        at += sim_rand(s) % (c->jitter_ns + 1);
    if (c->gran_ns)
        at = (at + c->gran_ns - 1) / c->gran_ns * c->gran_ns;
    if (at < d->last_arrival)
        at = d->last_arrival; /* jitter alone does not reorder */
    d->last_arrival = at;
    if (c->reorder > 0 && sim_unif(s) < c->reorder)
        at += c->reorder_ns; /* held back: later packets overtake it */
    sim_push(s, 1 - from, at, p, len);
    if (c->dup > 0 && sim_unif(s) < c->dup)
        sim_push(s, 1 - from, at + 1 + sim_rand(s) % (5 * SIM_MS), p, len);
}

static uint64_t sim_min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

/* One step at s->now: deliver due packets, hand out messages, run the app, pull output. */
static int sim_step(sim *s) {
    static uint8_t buf[65536];
    int did = 0;
    while (s->nheap && s->heap[0].at <= s->now) {
        sim_pkt k = sim_pop(s);
        if (s->ep[k.to] && !gp_rel_dead(s->ep[k.to])) {
            gp_rel_input(s->ep[k.to], k.data, k.len, s->now);
            s->dir[1 - k.to].delivered++;
            s->kicked[k.to] = 1;
        }
        free(k.data);
        did = 1;
    }
    for (int e = 0; e < 2; e++) {
        uint32_t lane;
        const uint8_t *msg;
        ssize_t n;
        while (s->ep[e] && (n = gp_rel_recv(s->ep[e], &lane, &msg)) > 0) {
            if (s->on_msg)
                s->on_msg(s, e, lane, msg, (size_t)n);
            did = 1;
        }
        while (s->ep[e] && (n = gp_rel_recv_dgram(s->ep[e], &msg)) > 0) {
            if (s->on_dgram)
                s->on_dgram(s, e, msg, (size_t)n);
            did = 1;
        }
    }
    if (s->app && s->now >= s->app_next) {
        s->app_next = s->app(s);
        s->kicked[0] = s->kicked[1] = 1; /* it may have queued messages */
    }
    for (int e = 0; e < 2; e++) {
        if (s->timer_gran_ns && !s->kicked[e] && s->now < s->wake_at[e])
            continue;
        s->kicked[e] = 0;
        for (;;) {
            if (!s->ep[e] || gp_rel_dead(s->ep[e]))
                break;
            uint64_t at = s->now + (s->send_jitter_ns ? sim_rand(s) % s->send_jitter_ns : 0);
            ssize_t n = gp_rel_output(s->ep[e], buf, sizeof buf, s->now, at);
            if (n <= 0)
                break;
            sim_link_send(s, e, at, buf, (size_t)n);
            did = 1;
        }
        if (s->timer_gran_ns && s->ep[e]) { /* re-arm: uv_timer_start(ceil(ms)) */
            uint64_t x = gp_rel_expiry(s->ep[e]), g = s->timer_gran_ns;
            s->wake_at[e] = x == UINT64_MAX ? UINT64_MAX
                            : x <= s->now   ? s->now
                                            : s->now + (x - s->now + g - 1) / g * g;
            if (s->wake_late_ns && x != UINT64_MAX)
                s->wake_at[e] += sim_rand(s) % (s->wake_late_ns + 1);
        }
    }
    return did;
}

/* Runs until `done` says so (checked after every step) or the clock passes t_end.
 * Returns 1 if done, 0 on timeout. */
static int sim_run(sim *s, uint64_t t_end, int (*done)(sim *)) {
    for (;;) {
        sim_step(s);
        if (done && done(s))
            return 1;
        uint64_t next = UINT64_MAX;
        for (int e = 0; e < 2; e++)
            if (s->ep[e])
                next = sim_min(next, s->timer_gran_ns ? s->wake_at[e] : gp_rel_expiry(s->ep[e]));
        if (s->nheap)
            next = sim_min(next, s->heap[0].at);
        if (s->app)
            next = sim_min(next, s->app_next);
        if (next <= s->now) {
            /* An expiry in the past that output did not act on would spin a real loop. */
            s->stalls++;
            next = s->now + 1000;
        }
        if (next > t_end) {
            s->now = t_end;
            return 0;
        }
        s->now = next;
    }
}

/* ---- the tests' links and engines ---- */

/* The tests' path: RTT round trip, `loss`, 88 bytes of headers a packet; no bottleneck. */
static inline sim_link link_rtt(double loss) {
    sim_link l;
    memset(&l, 0, sizeof l);
    l.delay_ns = RTT / 2;
    l.loss = loss;
    l.overhead = 88;
    return l;
}

/* The default engine config, FEC on or off. */
static inline gp_rel_config cfg_default(int fec) {
    gp_rel_config c;
    gp_rel_config_init(&c);
    c.fec = fec;
    return c;
}

/* link_rtt(loss) behind a bottleneck of rate_bps with a queue of queue_bytes. */
static inline sim_link link_of(double loss, uint64_t rate_bps, size_t queue_bytes) {
    sim_link l = link_rtt(loss);
    l.rate_bps = rate_bps;
    l.queue_bytes = queue_bytes;
    return l;
}

/* Two engines of cfg_default(fec) on link l both ways, seeded. */
static inline void sim_on(sim *s, uint64_t seed, int fec, const sim_link *l) {
    gp_rel_config c = cfg_default(fec);
    sim_init(s, seed, &c, &c);
    sim_link_both(s, l);
}

/* The same on link_rtt(loss). */
static inline void sim_plain(sim *s, uint64_t seed, int fec, double loss) {
    sim_link l = link_rtt(loss);
    sim_on(s, seed, fec, &l);
}

#endif
