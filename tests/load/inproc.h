/* inproc.h — what the two many-houses tools share (gp-loadhouses, tests/load/loadhouses.c, and
 * gp-househost, tests/load/househost.c): ghostport-house's defaults for a house's limits, and
 * an in-process executor (hs_exec, house/house.h) that answers every request instead of an
 * upstream: 200, application/json and B bytes ({"house":..,"id":..,"exec":N} padded with
 * spaces, still valid JSON) after D ms of think time, from the loop (never from inside start:
 * the tunnel holds the transfer once start has returned it). One executor per process; a
 * tool that counts executions does so through lt_exec_hooks. I/O side, test-only. */
#ifndef GP_LT_INPROC_H
#define GP_LT_INPROC_H
#include "../../house/house.h"

/* ghostport-house's defaults for what the tools leave unset: body and response limits,
 * connections, reconnect and rudp probe intervals, no admin port. */
void lt_house_defaults(hs_config *c);

/* The parts of a house both tools make alike, on h (zeroed, cfg.id set): its loop, TLS
 * client settings and zstd state, ghostport-house's defaults (lt_house_defaults), and its memory of
 * calls: a response cache and a journal without a state directory. The caller then sets the
 * executor and makes the tunnel. 0, or -1 with a message in err. */
int lt_house_open(hs_house *h, uv_loop_t *loop, struct hs_ws_shared *ws, hs_zstate *zs, char *err,
                  size_t errlen);
/* Frees what a tool's house holds (tunnel, upstream, journal, cache; each may be NULL) and its
 * id, and wipes its secret; h itself stays. */
void lt_house_close(hs_house *h);

/* A tool's view of the executions (either may be NULL): start is told of an execution of s
 * by house h and returns its number for the body's "exec" (1: a first run), or 0 when the
 * house cannot run it (then answered 503 unavailable); *tok is handed to end when it ends
 * (aborted: a CANCEL or shutdown before its end). Without start every execution is number 1. */
typedef struct lt_exec_hooks {
    unsigned (*start)(hs_house *h, hs_stream *s, void **tok);
    void (*end)(void *tok, int aborted);
} lt_exec_hooks;

/* Sets the executor up on loop: answers of response_bytes bytes after delay_ms. 0, or -1 when
 * out of memory. */
int lt_inproc_init(uv_loop_t *loop, uint64_t response_bytes, uint64_t delay_ms,
                   const lt_exec_hooks *hooks);
/* The executor; its exec_ud is the hs_house it serves. */
extern const hs_exec lt_inproc_exec;
/* No more answers: closes the think timer (uv_close). */
void lt_inproc_close(void);
/* Frees what is still queued (after the loop ended) and the body buffer. */
void lt_inproc_free(void);
#endif
