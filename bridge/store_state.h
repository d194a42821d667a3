/* store_state.h — the store's live state of a house, <p>:{h}:state (README.md's key layout):
 * the hash the bridge holding a house keeps while it holds it (its lease: PEXPIRE), written by
 * the claim and refresh scripts of bridge/house.c. Its field names, the one struct it is read
 * into and the one parser of it, shared by the daemon's JSON API (api_body.c), the CLI's
 * `house list` / `house show` and `top` (registry.c). Pure: no I/O; fuzzed by
 * tests/fuzz/fuzz_registry.c and tests/fuzz/fuzz_api_house.c. */
#ifndef GP_STORE_STATE_H
#define GP_STORE_STATE_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* The fields (README.md). The scripts that write them name them in their Lua text. */
#define GP_STATE_BRIDGE "bridge"       /* id of the bridge holding the house */
#define GP_STATE_TRANSPORT "transport" /* ws, wss or rudp */
#define GP_STATE_SINCE "since"         /* ms of the claim */
#define GP_STATE_LAST_SEEN "last_seen" /* ms of the last sign of life */
#define GP_STATE_RTT "rtt_ms"          /* ping RTT (rudp: smoothed RTT), 0.1 ms */
#define GP_STATE_EPOCH "epoch"         /* the fencing epoch of this connection */
#define GP_STATE_ADDR "addr"           /* the house's address as the bridge saw it */
#define GP_STATE_REQ_TOTAL "req_total" /* counters of the connection, written by its bridge */
#define GP_STATE_ERR_TOTAL "err_total"
#define GP_STATE_BYTES_IN "bytes_in"
#define GP_STATE_BYTES_OUT "bytes_out"
#define GP_STATE_LOSS "loss_pct" /* rudp's loss estimate, 0 for wss */
#define GP_STATE_TS "ts_ms"      /* when the bridge wrote the counters */

/* One house's live state. Strings are NUL-terminated, control bytes replaced by '?', "..."
 * at the end when truncated; empty when absent. Numbers are -1 when absent or not numbers. */
typedef struct gp_state {
    int connected; /* the hash exists */
    char bridge[128], transport[16], addr[64];
    long long since_ms, last_seen_ms, epoch;
    double rtt_ms; /* 0.1 ms resolution */
    long long req_total, err_total, bytes_in, bytes_out, ts_ms;
    double loss_pct;
} gp_state;

void gp_state_init(gp_state *s); /* nothing known: not connected */
/* HGETALL <p>:{h}:state into s (fields it does not know are ignored; any reply is safe). */
void gp_state_parse(gp_state *s, const redisReply *r);

/* Values of Redis replies as the store reads them (anyone with access may have written
 * them): an integer / a finite number written as text, -1 when absent or not one; a string
 * copied into dst[cap] as gp_state's strings are. */
long long gp_reply_ll(const redisReply *v);
double gp_reply_num(const redisReply *v);
void gp_reply_copy(char *dst, size_t cap, const redisReply *v);

#endif
