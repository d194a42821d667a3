/* load.h — a steady load generator and an exactly-once checker for fault tests. Several
 * producer threads XADD requests (the public contract) at an even total rate to round-robin
 * houses, each with its own hiredis connection and its own reply stream read by a reader
 * thread; every reply entry is matched to its request by frame id. At the end the checker
 * says, request by request, whether each got exactly one final reply (lost, duplicated), the
 * status classes and the latency of the first final reply, and (asking tests/upstream.py)
 * whether the upstream ever ran a request twice. I/O side, test-only.
 *
 * Survives Redis restarts: a producer whose XADD fails on the connection reconnects with a
 * bounded backoff and re-sends the same request (same frame id) until Redis acknowledges it;
 * a reader reconnects and continues from the last entry id it saw. Only the thread that owns
 * a hiredis context uses it; the table of requests is shared under one mutex.
 *
 * Typical use:
 *     const char *houses[] = {"h1", "h2"};
 *     h_load *l = h_load_start(&(h_load_cfg){.houses = houses, .nhouses = 2});
 *     h_load_run_for(l, 2000);
 *     h_load_mark(l, 1); ...fault... h_load_mark(l, 0);
 *     h_load_run_for(l, 3000);
 *     h_load_stop(l);
 *     h_load_settle(l, 5000);
 *     h_load_check_upstream(l, upstream_port);
 *     h_load_report(l, "bridge_kill");
 *     h_load_result res = h_load_result_get(l);
 *     h_load_free(l);
 * The Redis port is the harness's (h_redis_port()) at h_load_start time; restart Redis on
 * the same port. None of these functions fails the test: the caller asserts on the result. */
#ifndef GP_LOAD_H
#define GP_LOAD_H

#include <stddef.h>

typedef struct h_load h_load;

typedef struct h_load_cfg {
    int producers;             /* threads, each with its own hiredis connection (default 4) */
    int rate;                  /* total requests per second across producers (default 100) */
    const char *const *houses; /* round-robin target houses (copied) */
    size_t nhouses;
    const char *path;    /* default "/echo" (copied) */
    unsigned timeout_ms; /* request timeout_ms field (default 10000) */
    const char *prefix;  /* key prefix, default "gp" (copied) */
} h_load_cfg;

/* Connects to 127.0.0.1:h_redis_port() and starts the producer and reader threads; the
 * first requests go out at once. cfg is borrowed for the call only (strings are copied);
 * zero fields take their defaults. Returns NULL (with a line on stderr) if cfg has no house
 * or a thread cannot be started. Unreachable Redis is not an error: the threads retry. */
h_load *h_load_start(const h_load_cfg *cfg);

/* Lets the load run for ms milliseconds (the load's duration, not a synchronisation). */
void h_load_run_for(h_load *l, int ms);

/* 1: the fault window begins now; 0: it ends. Requests whose first XADD attempt falls in
 * the window count towards p99_fault_ms. */
void h_load_mark(h_load *l, int fault_on);

/* Stops sending new requests (a request being re-sent after a Redis failure is still
 * re-sent until acknowledged). Readers keep collecting replies until h_load_free. */
void h_load_stop(h_load *l);

/* Stops sending (h_load_stop) and waits until every sent request has a final reply, or
 * until the deadline of each unanswered one has passed by grace_ms: its deadline is
 * timeout_ms after Redis acknowledged it (after its first attempt if it never was).
 * Returns 1 if all answered, 0 otherwise. */
int h_load_settle(h_load *l, int grace_ms);

typedef struct h_load_result {
    long sent, answered, lost, dup_replies, s2xx, s4xx, s5xx, s504;
    double p50_ms, p99_ms, p99_fault_ms, max_ms; /* first final reply latency; _fault: requests
                                                    sent during the fault window */
    long upstream_dup; /* frame ids the upstream saw more than once (-1 if not asked) */
    long resent;       /* XADD attempts repeated after a Redis failure */
    long stray;        /* reply entries whose id is not one of this load's requests */
} h_load_result;

/* A snapshot of the counts (lost = sent - answered at the time of the call). Latencies are
 * nearest-rank percentiles over answered requests, 0 when there are none. */
h_load_result h_load_result_get(h_load *l);

/* Asks tests/upstream.py on port (GET /hits, a JSON object frame-id -> count) how many of
 * this load's frame ids it saw more than once; stores it in the result (stays -1, with a
 * line on stderr, when the upstream cannot be asked). Returns that number. */
long h_load_check_upstream(h_load *l, int upstream_port);

/* Prints one line "fault=<name> requests=.. lost=.. dup_replies=.. 5xx=.. p50_ms=..
 * p99_ms=.. p99_fault_ms=.. upstream_dup=.." to stdout (flushed) and appends it to
 * $BUILD/fault-results.txt (BUILD default "build"). */
void h_load_report(h_load *l, const char *name);

/* Stops everything, joins every thread, closes the connections and frees l. NULL: nothing. */
void h_load_free(h_load *l);

#endif
