/* uvredis.h — a hiredis 0.14 async <-> libuv adapter, in place of
 * <hiredis/adapters/libuv.h>, whose syscalls per command showed in the bridge's profile
 * (tests/bench/README.md):
 *  1. hiredis asks for reads again after every read and every write, and for writes on every
 *     command; the stock adapter answers each with uv_poll_start, and libuv's uv_poll_start
 *     always stops the poll first (epoll_ctl DEL, then ADD on the next iteration): two
 *     syscalls each time. This one touches the uv_poll only when the watched events change.
 *  2. Commands are written from a uv_check (end of the loop iteration: what I/O callbacks
 *     queued) or a uv_prepare (before blocking: what timers queued), all of an iteration in
 *     one write, instead of waiting a loop turn for POLLOUT; POLLOUT only when the socket is
 *     full.
 * Like the stock adapter it does not report poll errors: redis.c's watchdog asks the socket.
 * I/O side. */
#ifndef BR_UVREDIS_H
#define BR_UVREDIS_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop (replaces redisLibuvAttach): REDIS_OK or REDIS_ERR. The adapter frees
 * itself when hiredis frees ac. */
int br_uvr_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
