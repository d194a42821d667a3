/* Unit tests for rudp:// path MTU probing (proto/rudp_pmtu.c): a path is a size limit and a
 * loss rate, probes are acked or lost by a seeded draw, the clock is virtual. The search finds
 * what the path carries, never trusts more, and random loss alone never lowers the size. Then
 * the engine with it (rudp_sim.h, a link that silently drops what exceeds its MTU): datagrams
 * above the path are refused once it is found, the rest and every message still cross. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "rudp_pmtu.h"
#include "rudp_sim.h"

#define MS 1000000ull
#define SEC (1000 * MS)
#define BASE 1140
#define TARGET 1344
#define TIMEOUT (400 * MS) /* what the engine would give at 200 ms RTT */

static uint64_t rng = 7;
static double unif(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

typedef struct path {
    size_t max;  /* largest payload it carries */
    double loss; /* of every packet, the probe and its ack each */
    uint64_t now, pn;
    unsigned changes; /* times usable changed */
} path;

/* Runs the prober on the path until `until`: each probe due is sent, then acked one RTT later
 * or left to time out. */
static void run(gp_pmtu *m, path *p, uint64_t until) {
    while (p->now < until) {
        int ch = 0;
        double rt = 1 - (1 - p->loss) * (1 - p->loss); /* the probe's way and its ack's */
        size_t size = gp_pmtu_due(m, p->now, rt, &ch);
        p->changes += (unsigned)ch;
        cr_assert_leq(m->usable, m->target);
        cr_assert_geq(m->usable, m->base);
        if (!size) {
            uint64_t e = gp_pmtu_expiry(m);
            cr_assert_gt(e, p->now, "the prober says now but has nothing to do");
            p->now = e < until ? e : until;
            continue;
        }
        cr_assert_gt(size, m->base, "a probe of a size that needs no proof");
        cr_assert_leq(size, m->target);
        uint64_t pn = p->pn++;
        gp_pmtu_sent(m, size, pn, p->now, TIMEOUT);
        int arrives = size <= p->max && unif() >= p->loss && unif() >= p->loss;
        if (arrives) {
            p->now += 200 * MS;
            p->changes += (unsigned)gp_pmtu_acked(m, pn, p->now);
        }
    }
}

Test(rudp_pmtu, a_path_that_carries_the_target_keeps_it) {
    for (int i = 0; i < 3; i++) {
        static const double loss[] = {0, 0.1, 0.3};
        gp_pmtu m;
        gp_pmtu_init(&m, BASE);
        path p = {.max = 1500, .loss = loss[i], .now = SEC};
        gp_pmtu_set_target(&m, TARGET, p.now);
        cr_assert_eq(m.usable, TARGET, "optimistic: the target at once");
        run(&m, &p, p.now + 300 * SEC);
        cr_assert_eq(m.state, GP_PMTU_DONE);
        cr_assert_eq(m.usable, TARGET, "loss %.0f%%", loss[i] * 100);
        cr_assert_eq(p.changes, 0, "loss %.0f%%: random loss lowered the size %u times",
                     loss[i] * 100, p.changes);
        cr_assert_eq(m.lowered, 0);
        /* Checked again every 30 s, not more: 300 s, ~10 probes and the retries of lost ones. */
        cr_assert_leq(m.probes, 10 + 1 + m.lost, "%llu probes", (unsigned long long)m.probes);
    }
}

Test(rudp_pmtu, a_narrow_path_is_found_within_a_step_and_never_exceeded) {
    static const size_t widths[] = {1141, 1200, 1300, 1343};
    for (size_t w = 0; w < 4; w++) {
        for (int l = 0; l < 2; l++) {
            gp_pmtu m;
            gp_pmtu_init(&m, BASE);
            path p = {.max = widths[w], .loss = l ? 0.3 : 0, .now = SEC};
            gp_pmtu_set_target(&m, TARGET, p.now);
            run(&m, &p, p.now + 60 * SEC);
            cr_assert_eq(m.state, GP_PMTU_DONE, "width %zu loss %d: still %d", widths[w], l,
                         m.state);
            cr_assert_leq(m.usable, widths[w], "width %zu: usable %zu", widths[w], m.usable);
            cr_assert_geq(m.usable + GP_PMTU_STEP, widths[w], "width %zu: usable %zu", widths[w],
                          m.usable);
            cr_assert_eq(m.lowered, 1);
        }
    }
}

Test(rudp_pmtu, how_fast_the_target_falls_on_a_black_hole) {
    gp_pmtu m;
    gp_pmtu_init(&m, BASE);
    path p = {.max = 1200, .loss = 0, .now = SEC};
    gp_pmtu_set_target(&m, TARGET, p.now);
    uint64_t t0 = p.now;
    while (m.usable == TARGET)
        run(&m, &p, p.now + 10 * MS);
    /* Three probes, each lost after its timeout. */
    cr_assert_leq(p.now - t0, 3 * TIMEOUT + 10 * MS, "%llu ms",
                  (unsigned long long)((p.now - t0) / MS));
    cr_assert_eq(m.usable, BASE, "what passes is not known: the base until the search says");
}

Test(rudp_pmtu, a_path_that_narrows_is_noticed_and_one_that_widens_is_used_again) {
    gp_pmtu m;
    gp_pmtu_init(&m, BASE);
    path p = {.max = 1500, .now = SEC};
    gp_pmtu_set_target(&m, TARGET, p.now);
    run(&m, &p, p.now + 10 * SEC);
    cr_assert_eq(m.usable, TARGET);
    p.max = 1250; /* a route change */
    run(&m, &p, p.now + GP_PMTU_RECHECK_NS + 10 * SEC);
    cr_assert_leq(m.usable, 1250);
    cr_assert_geq(m.usable + GP_PMTU_STEP, 1250);
    p.max = 1500; /* and back */
    run(&m, &p, p.now + GP_PMTU_RAISE_NS + 10 * SEC);
    cr_assert_eq(m.usable, TARGET);
}

Test(rudp_pmtu, losses_needed_grow_with_the_loss_rate) {
    cr_assert_eq(gp_pmtu_fails_needed(0), 3);
    cr_assert_eq(gp_pmtu_fails_needed(0.05), 3);
    cr_assert_eq(gp_pmtu_fails_needed(0.2), 5);
    cr_assert_eq(gp_pmtu_fails_needed(0.3), 6);
    cr_assert_eq(gp_pmtu_fails_needed(0.51), 11); /* 30% each way */
    cr_assert_eq(gp_pmtu_fails_needed(0.9), GP_PMTU_FAILS_MAX);
}

Test(rudp_pmtu, a_target_at_or_below_the_base_is_not_probed) {
    gp_pmtu m;
    gp_pmtu_init(&m, BASE);
    gp_pmtu_set_target(&m, 1000, SEC);
    cr_assert_eq(m.usable, 1000);
    cr_assert_eq(gp_pmtu_due(&m, 2 * SEC, 0, NULL), 0);
    cr_assert_eq(gp_pmtu_expiry(&m), UINT64_MAX);
    /* An ack of anything is no probe's. */
    cr_assert_eq(gp_pmtu_acked(&m, 0, 2 * SEC), 0);
}

/* ---- the engine on a narrow path ---- */

typedef struct flow {
    size_t big, small; /* datagram sizes offered alternately */
    uint64_t t_steady; /* small datagrams offered from here on are counted apart */
    uint64_t t_found;  /* when ep 0 first refused a large datagram */
    uint32_t sent_small, got_small, sent_steady, got_steady, got_big, refused_big;
    uint32_t msgs_sent, msgs_got;
} flow;
static flow g_f;

static uint64_t app(sim *s) {
    flow *f = &g_f;
    uint8_t b[3000] = {0}; /* a message is 3000 bytes, datagrams fewer */
    memcpy(b, &s->now, sizeof s->now);
    /* 100 large and 100 small datagrams a second; a 3000-byte message every 100 ms. */
    if (gp_rel_send_dgram(s->ep[0], b, f->big, s->now) == GP_ERR_TOO_LARGE) {
        f->refused_big++;
        if (!f->t_found)
            f->t_found = s->now;
    }
    if (gp_rel_send_dgram(s->ep[0], b, f->small, s->now) == 0) {
        f->sent_small++;
        f->sent_steady += s->now >= f->t_steady;
    }
    if ((s->now / SIM_MS) % 100 < 10 && gp_rel_send(s->ep[0], 1, b, 3000) == 0)
        f->msgs_sent++;
    return s->now + 10 * SIM_MS;
}

static void on_dgram(sim *s, int ep, const uint8_t *p, size_t len) {
    (void)s;
    cr_assert_eq(ep, 1);
    uint64_t at;
    memcpy(&at, p, sizeof at);
    if (len == g_f.small) {
        g_f.got_small++;
        g_f.got_steady += at >= g_f.t_steady;
    } else {
        g_f.got_big++;
    }
}

static void on_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)s, (void)lane, (void)m;
    cr_assert_eq(ep, 1);
    cr_assert_eq(len, 3000);
    g_f.msgs_got++;
}

/* 20 s over a 200 ms RTT link carrying at most `mtu` bytes of payload (0: any), after ep 0
 * raised its size to `target` (as the L3 tunnel does). */
static void run_engine(size_t mtu, double loss, size_t target, gp_rel_stats *st) {
    sim s;
    sim_init(&s, 11, NULL, NULL);
    sim_link l = {.delay_ns = 100 * SIM_MS, .loss = loss, .mtu = mtu};
    sim_link_both(&s, &l);
    cr_assert_eq(gp_rel_set_max_payload(s.ep[0], target), 0);
    memset(&g_f, 0, sizeof g_f);
    g_f.big = target - GP_REL_DGRAM_OVERHEAD;
    g_f.small = 1000;
    g_f.t_steady = s.now + 10 * SIM_SEC;
    s.app = app;
    s.on_dgram = on_dgram;
    s.on_msg = on_msg;
    uint64_t t0 = s.now, end = s.now + 20 * SIM_SEC;
    sim_run(&s, end, NULL);
    s.app = NULL; /* the last messages land */
    sim_run(&s, end + 3 * SIM_SEC, NULL);
    cr_assert_eq(s.stalls, 0);
    gp_rel_get_stats(s.ep[0], st);
    printf("path %zu, loss %.0f%%: trusted %zu after %.1f s, %llu probes (%llu lost); large "
           "datagrams %u arrived / %u refused, small %u/%u (%u/%u after 10 s), messages %u/%u\n",
           mtu, loss * 100, st->path_payload,
           g_f.t_found ? (double)(g_f.t_found - t0) / SIM_SEC : 0.0,
           (unsigned long long)st->pmtu_probes, (unsigned long long)st->pmtu_probes_lost,
           g_f.got_big, g_f.refused_big, g_f.got_small, g_f.sent_small, g_f.got_steady,
           g_f.sent_steady, g_f.msgs_got, g_f.msgs_sent);
    cr_assert_eq(g_f.msgs_got, g_f.msgs_sent, "a message lost: its chunks outgrew the path");
    /* Once the search is over, datagrams that fit cross as on any path (FEC at 30%). */
    cr_assert_geq(g_f.got_steady, g_f.sent_steady * (loss > 0 ? 0.99 : 1.0));
    sim_free(&s);
}

Test(rudp_pmtu, the_engine_finds_a_narrow_path_and_refuses_what_does_not_fit) {
    for (int l = 0; l < 2; l++) {
        gp_rel_stats st;
        run_engine(1250, l ? 0.3 : 0, 1344, &st);
        cr_assert_leq(st.path_payload, 1250);
        cr_assert_geq(st.path_payload + GP_PMTU_STEP, 1250);
        cr_assert_eq(st.pmtu_lowered, 1);
        /* Found in seconds (five lost probes on a young session, whose loss is not measured
         * yet; eleven at 30% each way), then large datagrams are refused (the caller's "too
         * big"), not sent into the hole. */
        cr_assert_leq(g_f.t_found - SIM_SEC, (l ? 8 : 4) * SIM_SEC);
        cr_assert_eq(g_f.got_big, 0);
    }
}

Test(rudp_pmtu, the_engine_keeps_a_wide_path_at_a_probe_per_half_minute) {
    for (int l = 0; l < 2; l++) {
        gp_rel_stats st;
        run_engine(0, l ? 0.3 : 0, 1344, &st);
        cr_assert_eq(st.path_payload, 1344);
        cr_assert_eq(st.pmtu_lowered, 0);
        cr_assert_eq(g_f.refused_big, 0);
        cr_assert_leq(st.pmtu_probes, 1 + st.pmtu_probes_lost);
    }
}
