/* hiredis_uv.h — a hiredis 0.14 async <-> libuv adapter for the benchmarks' producers, in
 * place of <hiredis/adapters/libuv.h>, whose syscalls per command showed up in the bridge's
 * profile (tests/bench/README.md, findings):
 *  1. hiredis asks for reads again after every read and every write, and for writes on every
 *     command; the stock adapter answers each with uv_poll_start, and libuv's uv_poll_start
 *     always stops the poll first (epoll_ctl DEL, then ADD on the next iteration): two
 *     syscalls each time. This one touches the uv_poll only when the watched events change.
 *  2. Commands are written from a uv_check (end of the loop iteration: what I/O callbacks
 *     queued) or a uv_prepare (before blocking: what timers queued), all of an iteration in
 *     one write, instead of waiting a loop turn for POLLOUT; POLLOUT only when the socket is
 *     full.
 * Header only, test-only I/O. gp_uvr_attach(ac, loop) replaces redisLibuvAttach. */
#ifndef GP_HIREDIS_UV_H
#define GP_HIREDIS_UV_H
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <uv.h>

typedef struct gp_uvr {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_check_t check;     /* end of the iteration: what the I/O callbacks queued */
    uv_prepare_t prepare; /* before blocking: what timers queued */
    int events, want_write, in_check, open;
} gp_uvr;

static void gp_uvr_on_poll(uv_poll_t *h, int status, int events) {
    gp_uvr *p = h->data;
    if (status != 0)
        return;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void gp_uvr_set(gp_uvr *p, int ev) {
    if (ev == p->events)
        return;
    p->events = ev;
    if (ev)
        uv_poll_start(&p->poll, ev, gp_uvr_on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void gp_uvr_flush(gp_uvr *p) {
    uv_check_stop(&p->check);
    uv_prepare_stop(&p->prepare);
    if (!p->ac || !p->want_write)
        return;
    /* Before the connection is up, POLLOUT says when it is (hiredis checks SO_ERROR then). */
    if (p->ac->c.flags & REDIS_CONNECTED) {
        p->in_check = 1;
        redisAsyncHandleWrite(p->ac);
        p->in_check = 0;
    }
    if (p->ac && p->want_write)
        gp_uvr_set(p, p->events | UV_WRITABLE); /* the rest when the socket drains */
}

static void gp_uvr_on_check(uv_check_t *h) {
    gp_uvr_flush(h->data);
}

static void gp_uvr_on_prepare(uv_prepare_t *h) {
    gp_uvr_flush(h->data);
}

static void gp_uvr_add_read(void *d) {
    gp_uvr *p = d;
    gp_uvr_set(p, p->events | UV_READABLE);
}
static void gp_uvr_del_read(void *d) {
    gp_uvr *p = d;
    gp_uvr_set(p, p->events & ~UV_READABLE);
}
static void gp_uvr_add_write(void *d) {
    gp_uvr *p = d;
    p->want_write = 1;
    if (!p->in_check && !(p->events & UV_WRITABLE)) {
        uv_check_start(&p->check, gp_uvr_on_check);
        uv_prepare_start(&p->prepare, gp_uvr_on_prepare);
    }
}
static void gp_uvr_del_write(void *d) {
    gp_uvr *p = d;
    p->want_write = 0;
    gp_uvr_set(p, p->events & ~UV_WRITABLE);
}
static void gp_uvr_closed(uv_handle_t *h) {
    gp_uvr *p = h->data;
    if (--p->open == 0)
        free(p);
}
static void gp_uvr_cleanup(void *d) {
    gp_uvr *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, gp_uvr_closed);
    uv_close((uv_handle_t *)&p->check, gp_uvr_closed);
    uv_close((uv_handle_t *)&p->prepare, gp_uvr_closed);
}

static int gp_uvr_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data)
        return REDIS_ERR;
    gp_uvr *p = calloc(1, sizeof *p);
    if (!p)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_check_init(loop, &p->check);
    uv_prepare_init(loop, &p->prepare);
    p->poll.data = p->check.data = p->prepare.data = p;
    p->open = 3;
    p->ac = ac;
    ac->ev.addRead = gp_uvr_add_read;
    ac->ev.delRead = gp_uvr_del_read;
    ac->ev.addWrite = gp_uvr_add_write;
    ac->ev.delWrite = gp_uvr_del_write;
    ac->ev.cleanup = gp_uvr_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}
#endif
