/* steady.c — exactly-once under a steady load without a fault: four producers XADD requests
 * at an even rate to two houses behind one bridge, and every request must get exactly one
 * final reply with the upstream running it at most once. The baseline the fault tests
 * (fault.c, the same checker with a fault in the middle) compare against. Real redis-server,
 * bridge, houses and upstream on loopback ports (tests/harness/load.h). */
#include "../harness/harness.h"
#include "../harness/load.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

TestSuite(steady, .init = h_init, .fini = h_fini, .timeout = 180);

typedef struct world {
    int bridge_port, up_port;
    char up_url[64];
    h_proc *redis, *bridge, *up, *house[2];
    char secret[2][65];
} world;

static const char *const HOUSES[] = {"steady-a", "steady-b"};

/* An upstream, one bridge and both houses, connected, on an already started Redis. */
static void world_up(world *w) {
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    w->bridge = h_bridge_start(0, &w->bridge_port, NULL, 1);
    for (int i = 0; i < 2; i++) {
        h_register(HOUSES[i], w->secret[i]);
        w->house[i] = h_house_start(HOUSES[i], w->secret[i], w->bridge_port, w->up_url, NULL);
    }
    for (int i = 0; i < 2; i++)
        cr_assert(h_wait_connected(HOUSES[i], 15000), "house %s did not connect within 15 s",
                  HOUSES[i]);
}

static h_load *load_start(void) {
    h_load_cfg cfg = {.producers = 4,
                      .rate = 100,
                      .houses = HOUSES,
                      .nhouses = 2,
                      .path = "/echo",
                      .timeout_ms = 10000};
    h_load *l = h_load_start(&cfg);
    cr_assert_not_null(l, "load generator did not start");
    return l;
}

static void print_result(const char *name, const h_load_result *r) {
    printf("steady: %s sent=%ld answered=%ld lost=%ld dup_replies=%ld 2xx=%ld 4xx=%ld 5xx=%ld "
           "504=%ld p50_ms=%.0f p99_ms=%.0f p99_fault_ms=%.0f max_ms=%.0f upstream_dup=%ld "
           "resent=%ld stray=%ld\n",
           name, r->sent, r->answered, r->lost, r->dup_replies, r->s2xx, r->s4xx, r->s5xx, r->s504,
           r->p50_ms, r->p99_ms, r->p99_fault_ms, r->max_ms, r->upstream_dup, r->resent, r->stray);
    fflush(stdout);
}

Test(steady, steady_load_no_fault) {
    world w = {0};
    w.redis = h_redis_start(0);
    world_up(&w);
    h_load *l = load_start();
    h_load_run_for(l, 5000);
    h_load_stop(l);
    int all = h_load_settle(l, 5000);
    h_load_check_upstream(l, w.up_port);
    h_load_report(l, "none");
    h_load_result r = h_load_result_get(l);
    h_load_free(l);
    print_result("none", &r);
    cr_assert(all, "settle: %ld of %ld requests unanswered", r.lost, r.sent);
    cr_assert_eq(r.lost, 0, "lost %ld of %ld requests", r.lost, r.sent);
    cr_assert_eq(r.dup_replies, 0, "%ld duplicate final replies without a fault", r.dup_replies);
    cr_assert_eq(r.s5xx, 0, "%ld 5xx replies (%ld 504) without a fault", r.s5xx, r.s504);
    cr_assert_eq(r.s2xx, r.answered, "%ld of %ld replies not 2xx", r.answered - r.s2xx, r.answered);
    cr_assert_eq(r.upstream_dup, 0, "upstream ran %ld requests more than once", r.upstream_dup);
    cr_assert(r.sent >= 450 && r.sent <= 550, "sent %ld requests in 5 s at 100/s", r.sent);
    cr_assert_eq(r.stray, 0, "%ld replies for frame ids nobody sent", r.stray);
}
