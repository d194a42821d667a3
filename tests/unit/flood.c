/* flood.c — two of the house listener's flood guards (bridge/daemon/flood.c) side by side in
 * one process: each br_flood is a context of its own (caps, pre-auth records by connection
 * and by address, the gauge it counts into), so one process can hold two listeners. Until
 * the guard was a context its state was a file-level singleton, and a second one would have
 * shared (and overwritten) the first's. No I/O: connections are fake lws pointers that are
 * never shed (that would close them through lws), only counted. */
#include "../../bridge/daemon/flood.h"
#include "../../bridge/admin/stats.h"
#include "../../bridge/log.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

typedef struct side {
    br_config cfg;
    br_metrics m;
    br_env env;
    br_flood *fl;
} side;

static uv_loop_t loop;
static side A, B;

static void side_init(side *s, long long total, long long per_addr, unsigned lws_fds) {
    memset(s, 0, sizeof *s);
    s->cfg.preauth_max = total;
    s->cfg.preauth_per_addr = per_addr;
    s->cfg.auth_timeout = 5;
    s->m.reg = gp_metrics_new();
    cr_assert_not_null(s->m.reg);
    s->m.preauth = gp_metrics_gauge(s->m.reg, "preauth", "pre-auth connections", NULL);
    s->m.preauth_shed = gp_metrics_counter(s->m.reg, "shed", "shed", "reason");
    s->m.accept_pauses = gp_metrics_counter(s->m.reg, "pauses", "pauses", NULL);
    s->env = (br_env){.loop = &loop, .cfg = &s->cfg, .metrics = &s->m};
    s->fl = br_flood_new(&s->env);
    cr_assert_not_null(s->fl);
    br_flood_init(s->fl, NULL, NULL, lws_fds); /* no listener: EMFILE handling stays off */
}

static void side_free(side *s) {
    br_flood_stop(s->fl);
    uv_run(&loop, UV_RUN_DEFAULT); /* the pause timer's close */
    br_flood_free(s->fl);
    gp_metrics_free(s->m.reg);
}

static void setup(void) {
    br_log_init(BR_LOG_ERROR, "test");
    uv_loop_init(&loop);
    side_init(&A, 4, 2, 1u << 20);
    side_init(&B, 100, 10, 1u << 20);
}

static void teardown(void) {
    side_free(&A);
    side_free(&B);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle of a guard is still open");
}

/* An accepted connection from ip, then lws's wsi for it. */
static void connect_from(side *s, const char *ip, struct lws *wsi) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    br_flood_accepted(s->fl, (const struct sockaddr *)&sa);
    br_flood_adopted(s->fl, wsi);
}

static double gauge(const side *s) {
    return gp_metric_value(s->m.preauth, NULL);
}

/* Fake lws connections: only their addresses are used (as hash keys). */
static char conns[4];
#define WSI(i) ((struct lws *)&conns[i])

TestSuite(flood, .init = setup, .fini = teardown);

Test(flood, each_context_has_its_own_caps) {
    cr_assert_eq(br_flood_cap_total(A.fl), 4);
    cr_assert_eq(br_flood_cap_addr(A.fl), 2);
    cr_assert_eq(br_flood_cap_total(B.fl), 100);
    cr_assert_eq(br_flood_cap_addr(B.fl), 10);
    /* Set up again with a small lws table: only that context's caps are clamped to half of it. */
    side_free(&B);
    side_init(&B, 100, 10, 16);
    cr_assert_eq(br_flood_cap_total(B.fl), 8);
    cr_assert_eq(br_flood_cap_addr(B.fl), 8);
    cr_assert_eq(br_flood_cap_total(A.fl), 4, "A's caps changed with B's");
    cr_assert_eq(br_flood_cap_addr(A.fl), 2);
}

Test(flood, each_context_counts_only_its_connections) {
    connect_from(&A, "192.0.2.1", WSI(0));
    connect_from(&A, "192.0.2.2", WSI(1));
    cr_assert_eq(br_flood_preauth(A.fl), 2);
    cr_assert_eq(br_flood_preauth(B.fl), 0, "B counted A's connections");
    cr_assert_eq(gauge(&A), 2);
    cr_assert_eq(gauge(&B), 0, "B's gauge moved with A's");

    /* The same wsi pointer known to both (their tables are separate): gone from A, still in B. */
    connect_from(&B, "192.0.2.1", WSI(0));
    cr_assert_eq(br_flood_preauth(B.fl), 1);
    br_flood_destroyed(A.fl, WSI(0));
    cr_assert_eq(br_flood_preauth(A.fl), 1);
    cr_assert_eq(br_flood_preauth(B.fl), 1, "A's destroy dropped B's record");
    br_flood_authed(B.fl, WSI(0));
    cr_assert_eq(br_flood_preauth(B.fl), 0);
    cr_assert_eq(br_flood_preauth(A.fl), 1, "B's auth dropped A's record");
    cr_assert_eq(gauge(&A), 1);
    cr_assert_eq(gauge(&B), 0);
}

Test(flood, per_address_records_are_per_context) {
    /* Up to A's per-address cap (2) from one address in A, and as many in B: nothing is shed
     * (a shed would close the fake connection through lws), as neither sees the other's. */
    connect_from(&A, "198.51.100.7", WSI(0));
    connect_from(&A, "198.51.100.7", WSI(1));
    connect_from(&B, "198.51.100.7", WSI(2));
    connect_from(&B, "198.51.100.7", WSI(3));
    cr_assert_eq(br_flood_preauth(A.fl), 2);
    cr_assert_eq(br_flood_preauth(B.fl), 2);
    cr_assert_eq(gp_metric_value(A.m.preauth_shed, "per_address"), 0);
    cr_assert_eq(gp_metric_value(B.m.preauth_shed, "per_address"), 0);
    /* Within the deadline the tick sheds nothing, in either. */
    br_flood_tick(A.fl, uv_now(&loop) + 1000);
    br_flood_tick(B.fl, uv_now(&loop) + 1000);
    cr_assert_eq(br_flood_preauth(A.fl) + br_flood_preauth(B.fl), 4);
}
