/* uv_signals.h — the signals a daemon answers, on its libuv loop: SIGINT and SIGTERM ask it to
 * stop, SIGHUP to read its configuration again. Both daemons (bridge/daemon/main.c,
 * house/main.c) watch the same three signals the same way; what a stop or a reload does is
 * theirs (the callbacks). The load tools (gp-loadhouses, gp-househost) watch the two stop
 * signals alone: they have nothing to reload.
 *
 * An adapter (see uv_admin.h): libuv glue kept once, beside proto/'s sans-I/O core and outside
 * its library (libgpuv.a), so that neither daemon writes it again nor includes the other. */
#ifndef GP_UV_SIGNALS_H
#define GP_UV_SIGNALS_H

#include <uv.h>

typedef struct gp_uv_signals {
    uv_signal_t sigint, sigterm, sighup;
    void (*on_stop)(void *ud, int signum); /* SIGINT or SIGTERM, every time one arrives */
    void (*on_reload)(void *ud);           /* SIGHUP; NULL: not watched */
    void *ud;
    int open;
} gp_uv_signals;

/* Starts watching SIGINT, SIGTERM (on_stop) and SIGHUP (on_reload) on loop. With on_reload
 * NULL, SIGHUP is left alone (its default effect stands). */
void gp_uv_signals_start(gp_uv_signals *s, uv_loop_t *loop, void (*on_stop)(void *ud, int signum),
                         void (*on_reload)(void *ud), void *ud);
/* Stops watching and closes the handles (the loop can then end); once only, later calls
 * do nothing. With the handles gone, a further SIGINT or SIGTERM has its default effect. */
void gp_uv_signals_close(gp_uv_signals *s);

#endif
