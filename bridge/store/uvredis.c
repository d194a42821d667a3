/* uvredis.c — see uvredis.h. */
#include "uvredis.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>

typedef struct br_uvr {
    redisAsyncContext *ac;
    uv_poll_t poll;
    uv_check_t check;     /* end of the iteration: what the I/O callbacks queued */
    uv_prepare_t prepare; /* before blocking: what timers queued */
    int events, want_write, in_check, open;
} br_uvr;

static void br_uvr_on_poll(uv_poll_t *h, int status, int events) {
    br_uvr *p = h->data;
    if (status != 0)
        return;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void br_uvr_set(br_uvr *p, int ev) {
    if (ev == p->events)
        return;
    p->events = ev;
    if (ev)
        uv_poll_start(&p->poll, ev, br_uvr_on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void br_uvr_flush(br_uvr *p) {
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
        br_uvr_set(p, p->events | UV_WRITABLE); /* the rest when the socket drains */
}

static void br_uvr_on_check(uv_check_t *h) {
    br_uvr_flush(h->data);
}

static void br_uvr_on_prepare(uv_prepare_t *h) {
    br_uvr_flush(h->data);
}

static void br_uvr_add_read(void *d) {
    br_uvr *p = d;
    br_uvr_set(p, p->events | UV_READABLE);
}
static void br_uvr_del_read(void *d) {
    br_uvr *p = d;
    br_uvr_set(p, p->events & ~UV_READABLE);
}
static void br_uvr_add_write(void *d) {
    br_uvr *p = d;
    p->want_write = 1;
    if (!p->in_check && !(p->events & UV_WRITABLE)) {
        uv_check_start(&p->check, br_uvr_on_check);
        uv_prepare_start(&p->prepare, br_uvr_on_prepare);
    }
}
static void br_uvr_del_write(void *d) {
    br_uvr *p = d;
    p->want_write = 0;
    br_uvr_set(p, p->events & ~UV_WRITABLE);
}
static void br_uvr_closed(uv_handle_t *h) {
    br_uvr *p = h->data;
    if (--p->open == 0)
        free(p);
}
static void br_uvr_cleanup(void *d) {
    br_uvr *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, br_uvr_closed);
    uv_close((uv_handle_t *)&p->check, br_uvr_closed);
    uv_close((uv_handle_t *)&p->prepare, br_uvr_closed);
}

int br_uvr_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data)
        return REDIS_ERR;
    br_uvr *p = calloc(1, sizeof *p);
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
    ac->ev.addRead = br_uvr_add_read;
    ac->ev.delRead = br_uvr_del_read;
    ac->ev.addWrite = br_uvr_add_write;
    ac->ev.delWrite = br_uvr_del_write;
    ac->ev.cleanup = br_uvr_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}
