/* rudp_pmtu.c — path MTU probing (see rudp_pmtu.h for what it owns and why). */
#include "rudp_pmtu.h"

#include <string.h>

void gp_pmtu_init(gp_pmtu *m, size_t base) {
    memset(m, 0, sizeof *m);
    m->base = m->lo = m->usable = m->target = base;
}

void gp_pmtu_set_target(gp_pmtu *m, size_t target, uint64_t now) {
    m->target = m->usable = target;
    m->lo = m->base;
    m->hi = 0;
    m->probe = 0;
    m->fails = 0;
    m->state = target <= m->base ? GP_PMTU_IDLE : GP_PMTU_CHECK;
    m->due_at = now;
}

unsigned gp_pmtu_fails_needed(double loss) {
    unsigned n = 3;
    double p = loss * loss * loss;
    while (n < GP_PMTU_FAILS_MAX && p > 1e-3) {
        p *= loss;
        n++;
    }
    return n;
}

/* Sets usable; 1 when it changed. */
static int use(gp_pmtu *m, size_t n) {
    size_t was = m->usable;
    m->usable = n;
    return n != was;
}

/* The search is as close as it gets: lo it is. */
static int settle(gp_pmtu *m, uint64_t now) {
    m->state = GP_PMTU_DONE;
    m->due_at = now + (m->lo < m->target ? GP_PMTU_RAISE_NS : GP_PMTU_RECHECK_NS);
    return use(m, m->lo);
}

size_t gp_pmtu_due(gp_pmtu *m, uint64_t now, double loss, int *changed) {
    int ch = 0;
    if (m->probe && now >= m->due_at)
        ch = gp_pmtu_lost(m, now, loss);
    if (changed)
        *changed = ch;
    if (m->state == GP_PMTU_IDLE || m->probe || now < m->due_at)
        return 0;
    if (m->state == GP_PMTU_CHECK)
        return m->target;
    if (m->state == GP_PMTU_SEARCH) /* rounded up: never lo itself, so the search moves */
        return m->lo + (m->hi - m->lo + 1) / 2;
    /* Done: a lowered size tries the target again (the path may have widened), a confirmed
     * one is checked again (it may have narrowed). */
    return m->usable < m->target ? m->target : m->usable;
}

void gp_pmtu_sent(gp_pmtu *m, size_t size, uint64_t pn, uint64_t now, uint64_t timeout_ns) {
    m->probe = size;
    m->pn = pn;
    m->due_at = now + (timeout_ns > GP_PMTU_PROBE_TIMEOUT_MIN_NS ? timeout_ns
                                                                 : GP_PMTU_PROBE_TIMEOUT_MIN_NS);
    m->probes++;
}

int gp_pmtu_acked(gp_pmtu *m, uint64_t pn, uint64_t now) {
    if (!m->probe || pn != m->pn)
        return 0;
    size_t size = m->probe;
    m->probe = 0;
    m->fails = 0;
    if (size > m->lo)
        m->lo = size;
    m->due_at = now; /* the next step of a search goes at once */
    if (m->state == GP_PMTU_SEARCH && m->hi && m->hi - m->lo > GP_PMTU_STEP)
        return use(m, m->lo); /* confirmed sizes are used as the search climbs */
    return settle(m, now);
}

int gp_pmtu_lost(gp_pmtu *m, uint64_t now, double loss) {
    if (!m->probe)
        return 0;
    size_t size = m->probe;
    m->probe = 0;
    m->lost++;
    m->due_at = now; /* try again at once ... */
    if (++m->fails < gp_pmtu_fails_needed(loss))
        return 0;
    /* ... until enough losses in a row say the size does not pass. */
    m->fails = 0;
    if (m->state == GP_PMTU_DONE && size > m->usable) {
        /* The target still does not pass: stay, try again later. */
        m->due_at = now + GP_PMTU_RAISE_NS;
        return 0;
    }
    if (m->state != GP_PMTU_SEARCH) {
        /* The target (CHECK), or a size that passed before (DONE: the path narrowed): what
         * passed is not known any more below it; search from the base. */
        m->lo = m->base;
        m->lowered++;
    }
    m->state = GP_PMTU_SEARCH;
    m->hi = size;
    if (m->hi - m->lo <= GP_PMTU_STEP)
        return settle(m, now);
    return use(m, m->lo);
}

uint64_t gp_pmtu_expiry(const gp_pmtu *m) {
    return m->state == GP_PMTU_IDLE ? UINT64_MAX : m->due_at;
}
