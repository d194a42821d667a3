/* uv_signals.c — the signals both daemons watch (proto/adapters/uv_signals.c) on a real libuv
 * loop, raised at this process: SIGHUP reaches on_reload, SIGINT and SIGTERM reach on_stop
 * with their number every time (the bridge's second signal skips its drain), and once closed
 * the handles no longer keep the loop alive (a daemon's loop ends after its stop). */
#include "adapters/uv_signals.h"

#include <criterion/criterion.h>
#include <signal.h>

typedef struct seen {
    int reloads, stops, last;
} seen;

static uv_loop_t loop;
static seen S;
static gp_uv_signals sig;

static void on_stop(void *ud, int signum) {
    seen *s = ud;
    s->stops++;
    s->last = signum;
}

static void on_reload(void *ud) {
    ((seen *)ud)->reloads++;
}

/* Raises signum and runs the loop until *count moves (the handler has written to libuv's pipe
 * by the time raise returns; the test's timeout bounds a failure). */
static void raise_and_wait(int signum, const int *count) {
    int before = *count;
    cr_assert_eq(raise(signum), 0);
    while (*count == before)
        uv_run(&loop, UV_RUN_ONCE);
}

static void start(void) {
    uv_loop_init(&loop);
    gp_uv_signals_start(&sig, &loop, on_stop, on_reload, &S);
}

Test(uv_signals, reload_and_stop_reach_the_callbacks, .init = start, .timeout = 10) {
    raise_and_wait(SIGHUP, &S.reloads);
    cr_assert_eq(S.reloads, 1);
    cr_assert_eq(S.stops, 0);
    raise_and_wait(SIGTERM, &S.stops);
    cr_assert_eq(S.last, SIGTERM);
    raise_and_wait(SIGINT, &S.stops);
    cr_assert_eq(S.last, SIGINT);
    cr_assert_eq(S.stops, 2, "every stop signal is reported, not only the first");
    cr_assert_eq(S.reloads, 1);
    gp_uv_signals_close(&sig);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(uv_signals, closed_handles_let_the_loop_end, .init = start, .timeout = 10) {
    cr_assert_neq(uv_loop_alive(&loop), 0, "watching signals keeps the loop running");
    gp_uv_signals_close(&sig);
    gp_uv_signals_close(&sig); /* a second close (a stop after a failed start) does nothing */
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle was left open");
}
