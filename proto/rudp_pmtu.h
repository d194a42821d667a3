/* rudp_pmtu.h — path MTU probing of the rudp:// engine (datagram packetization-layer PMTU
 * discovery, RFC 8899's way: the engine's own padded packets are the probes, no ICMP needed).
 *
 * Owns: which payload size the path is trusted with, when a probe goes and of what size, and
 * what an acked or lost probe teaches. Pure and alone (tests/unit/rudp_pmtu.c drives it with a
 * virtual clock); the engine (rudp_rel.c) sends the probes it asks for, tells it their fate and
 * sends nothing larger than gp_pmtu_usable().
 *
 * Why and how (proto/RUDP.md, "Path MTU"):
 * - The base (the session's default payload, a 1200-byte datagram) is trusted: every path
 *   rudp runs on carries it, and messages never use more (their chunks are cut at queue time,
 *   so a chunk larger than the path would stall its lane for good). Only datagrams — the L3
 *   tunnel's IP packets, for which the daemons raise the size — ride above it.
 * - Raising the target is optimistic: the target is used at once and a probe of its size
 *   goes out. Paths that carry ~1400 bytes are the rule, and a tunnel that waited for a proof
 *   would start every session with its large packets refused.
 * - A probe lost `gp_pmtu_fails_needed(loss)` times in a row (3 on a clean link, more as the
 *   measured loss grows: at 30% loss each way a probe or its ack is lost half the time, and
 *   three in a row happen by chance one check in eight)
 *   means the path does not carry it: usable falls back to the largest size known to pass, and
 *   a binary search between that and the failed size follows, to within GP_PMTU_STEP bytes.
 * - What was confirmed is probed again every GP_PMTU_RECHECK_NS (a path can narrow: a route
 *   change, a tunnel in the path), and a lowered target again every GP_PMTU_RAISE_NS (it can
 *   widen; RFC 8899's PMTU_RAISE_TIMER). */
#ifndef GP_RUDP_PMTU_H
#define GP_RUDP_PMTU_H

#include <stddef.h>
#include <stdint.h>

#define GP_PMTU_STEP 16                         /* the search stops this close */
#define GP_PMTU_RECHECK_NS 30000000000ull       /* a confirmed size is probed again after 30 s */
#define GP_PMTU_RAISE_NS 600000000000ull        /* a lowered one tries the target after 10 min */
#define GP_PMTU_PROBE_TIMEOUT_MIN_NS 100000000u /* a probe unacked this long is lost, at least */
#define GP_PMTU_FAILS_MAX 12

typedef enum {
    GP_PMTU_IDLE = 0, /* target <= base: nothing to learn */
    GP_PMTU_CHECK,    /* usable = target, its probe not acked yet (optimistic) */
    GP_PMTU_SEARCH,   /* the target failed: usable = lo, probing between lo and hi */
    GP_PMTU_DONE      /* usable confirmed (the target, or the search's result) */
} gp_pmtu_state;

typedef struct gp_pmtu {
    gp_pmtu_state state;
    size_t base;                    /* trusted without a probe */
    size_t target;                  /* what the owner wants */
    size_t lo, hi;                  /* lo passes (confirmed or base); hi failed (0: none known) */
    size_t usable;                  /* what the engine may send now */
    size_t probe;                   /* size of the probe in flight (0: none) */
    uint64_t pn;                    /* its packet number */
    uint64_t due_at;                /* when the next probe may go (or the one in flight is lost) */
    unsigned fails;                 /* consecutive losses of probes of this size */
    uint64_t probes, lost, lowered; /* counters: probes sent, lost, times usable fell */
} gp_pmtu;

/* base: the payload every path carries; usable starts there. */
void gp_pmtu_init(gp_pmtu *m, size_t base);

/* The owner wants `target` bytes (the L3 tunnel's packets): usable becomes target at once
 * (optimistic) and a probe of it is due now. A target at or below base stops probing. */
void gp_pmtu_set_target(gp_pmtu *m, size_t target, uint64_t now);

/* Size of the probe to send now, or 0. A probe in flight past its timeout is lost first,
 * with `loss` the measured loss rate (then the return says whether usable changed through
 * *changed, when not NULL). */
size_t gp_pmtu_due(gp_pmtu *m, uint64_t now, double loss, int *changed);

/* A probe of `size` (what gp_pmtu_due returned) went out as packet pn; it is lost if no ack
 * names it within timeout_ns (the engine's idea of how long an ack may take; at least
 * GP_PMTU_PROBE_TIMEOUT_MIN_NS). */
void gp_pmtu_sent(gp_pmtu *m, size_t size, uint64_t pn, uint64_t now, uint64_t timeout_ns);

/* An ack names packet pn: when it is the probe in flight's, its size passes. Returns 1 when
 * usable changed. (An ack after the timeout is not counted: the next probe will tell.) */
int gp_pmtu_acked(gp_pmtu *m, uint64_t pn, uint64_t now);

/* The probe in flight is lost (the engine's loss detection, or gp_pmtu_due's timeout).
 * Returns 1 when usable changed. */
int gp_pmtu_lost(gp_pmtu *m, uint64_t now, double loss);

/* Losses in a row that prove a size does not pass when a probe goes unanswered by chance
 * with probability `loss` (the engine counts the probe's and its ack's way: 1 - (1 - p)^2):
 * the smallest n >= 3 with loss^n <= 1e-3, at most GP_PMTU_FAILS_MAX (0.51^12: 3e-4). */
unsigned gp_pmtu_fails_needed(double loss);

/* When gp_pmtu_due next has something to do (UINT64_MAX: never). */
uint64_t gp_pmtu_expiry(const gp_pmtu *m);

#endif
