/* uv_signals.c — SIGINT, SIGTERM and SIGHUP on a libuv loop for both daemons and the load tools
 * (uv_signals.h).
 * An adapter, outside proto/'s sans-I/O core (uv_admin.c says why it lives here). */
#include "uv_signals.h"

#include <signal.h>

static void on_stop_signal(uv_signal_t *h, int signum) {
    gp_uv_signals *s = h->data;
    s->on_stop(s->ud, signum);
}

static void on_hup(uv_signal_t *h, int signum) {
    (void)signum;
    gp_uv_signals *s = h->data;
    s->on_reload(s->ud);
}

void gp_uv_signals_start(gp_uv_signals *s, uv_loop_t *loop, void (*on_stop)(void *ud, int signum),
                         void (*on_reload)(void *ud), void *ud) {
    s->on_stop = on_stop;
    s->on_reload = on_reload;
    s->ud = ud;
    s->open = 1;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_stop_signal, SIGTERM);
    if (on_reload) {
        uv_signal_init(loop, &s->sighup);
        s->sighup.data = s;
        uv_signal_start(&s->sighup, on_hup, SIGHUP);
    }
}

void gp_uv_signals_close(gp_uv_signals *s) {
    if (!s->open)
        return;
    s->open = 0;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    if (s->on_reload)
        uv_close((uv_handle_t *)&s->sighup, NULL);
}
