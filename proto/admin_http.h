/* admin_http.h — the admin port of both daemons: a small HTTP/1.1 server (keep-alive, one
 * request at a time per connection, bounded request size and header count, idle and request
 * timeouts, a cap on concurrent connections) with routes the daemon registers. Pure: this is
 * the server without its I/O (bytes in, parsed request, route, response bytes out, limits,
 * keep-alive, timers asked for), driven through gp_admin_io by a thin glue that owns the
 * sockets and timers: proto/adapters/uv_admin.[ch] on a libuv loop (both daemons), or a
 * test feeding bytes. The parsing is http_req.h's.
 *
 * A handler answers with gp_admin_reply, exactly once, either before it returns or later
 * (after Redis answered, say). If the client went away meanwhile the reply is dropped; the
 * call itself stays valid until answered, so a handler never needs to know. */
#ifndef GP_ADMIN_HTTP_H
#define GP_ADMIN_HTTP_H

#include "http_req.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gp_admin gp_admin;
typedef struct gp_admin_call gp_admin_call;
typedef struct gp_admin_conn gp_admin_conn;

/* A request for a registered route. req is borrowed until the reply. */
typedef void (*gp_admin_fn)(gp_admin_call *call, const gp_http_request *req, void *ud);

/* Log sink (the daemon's): level 0 error .. 3 debug; kv holds `key=value` pairs. */
typedef void (*gp_admin_log_fn)(int level, const char *event, const char *kv);

typedef struct gp_admin_cfg {
    const char *bind; /* address (copied); NULL: 127.0.0.1 */
    int port;         /* 0: any free port */
    /* Concurrent connections (0: 64) and per client address (0: 16). A new connection past
     * either cap closes the oldest connection (of all, or of that address) that has no
     * request being answered; when there is none it is answered 503. */
    unsigned max_conns, max_per_addr;
    unsigned idle_ms;    /* keep-alive connection without a request (0: 15 s) */
    unsigned request_ms; /* a whole request, from accept or from its first byte (0: 5 s) */
    /* Host names answered besides IP literals and localhost (comma-separated, copied; NULL:
     * none). A request naming another Host gets 421: DNS rebinding cannot reach the port. */
    const char *hosts;
    /* Answer whatever Host a request names (a proxy that routes on it: bridge/front/);
     * hosts is then not used. */
    int any_host;
    /* Answer `Expect: 100-continue` with `100 Continue` once the headers passed the size
     * checks (a proxy taking uploads: clients otherwise wait a second before the body). */
    int continue_100;
    size_t max_body;     /* 0: GP_HTTP_MAX_BODY */
    gp_admin_log_fn log; /* may be NULL */
} gp_admin_cfg;

/* What the server asks of its I/O glue. `io` is the glue's handle of one connection (the one
 * it passed to gp_admin_accepted). Every call is made from the loop's thread. */
typedef struct gp_admin_io {
    void *ud;                  /* the glue's, passed to now and done */
    uint64_t (*now)(void *ud); /* the loop's clock, ms (a connection's age: the oldest is shed) */
    void (*done)(void *ud);    /* the server is freed (after gp_admin_close and every release) */
    /* Queue a copy of buf; its completion is reported by gp_admin_written. 0, or <0: failed. */
    int (*write)(void *io, const void *buf, size_t len);
    void (*try_write)(void *io, const void *buf, size_t len); /* now, best effort, no report */
    int (*reading)(void *io, int on);     /* start (1) or stop (0) delivering input. 0 or <0 */
    int (*shutdown)(void *io);            /* shut the write side once queued writes are out */
    void (*timer)(void *io, unsigned ms); /* (re)arm the one timer: gp_admin_timeout when due */
    void (*timer_stop)(void *io);
    /* Close the connection; when the glue no longer touches it, it calls gp_admin_released. */
    void (*close)(void *io);
} gp_admin_io;

/* Creates the server (the glue listens). io is copied. NULL: out of memory. */
gp_admin *gp_admin_core_new(const gp_admin_cfg *cfg, const gp_admin_io *io);
/* The configuration with its defaults filled in (bind, port for the glue's listener). */
const gp_admin_cfg *gp_admin_config(const gp_admin *a);
void *gp_admin_io_ud(const gp_admin *a);
/* Logs through cfg.log (a no-op without one). */
void gp_admin_logf(const gp_admin *a, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The glue's events. A connection accepted from ip:port (io: the glue's handle of it): the
 * server's side of it, which may already be closing (over the caps: answered 503), or NULL
 * when out of memory (the glue closes it on its own). */
gp_admin_conn *gp_admin_accepted(gp_admin *a, void *io, const char *ip, int port);
/* n bytes read (n < 0: end of input or an error). */
void gp_admin_input(gp_admin_conn *c, const void *data, long n);
void gp_admin_written(gp_admin_conn *c, int status); /* status < 0: the write failed */
void gp_admin_timeout(gp_admin_conn *c);
/* The glue closed it (after io->close): the server forgets the connection. */
void gp_admin_released(gp_admin_conn *c);
/* Closes every connection and marks the server closing; the glue's own reference (its
 * listener) ends with gp_admin_unref, and the server is freed once the connections are
 * released as well. */
int gp_admin_shutdown(gp_admin *a); /* 0, or -1 when closing already */
void gp_admin_unref(gp_admin *a);

/* The server on a libuv loop (gp_admin_new, gp_admin_listen, gp_admin_close) is the
 * adapter's, proto/adapters/uv_admin.h, outside this sans-I/O core and its library. */

/* Routes `path` (exact), or every path starting with it when prefix is set, to fn. The
 * longest match wins; an unmatched path is answered 404 by the server. path is borrowed
 * (a literal). 0, or -1 when the table is full (32 routes). */
int gp_admin_route(gp_admin *a, const char *path, int prefix, gp_admin_fn fn, void *ud);

/* {"error":code,"message":message} as jansson would write it (malloc'd, *len its length), or
 * NULL when out of memory or either string is not UTF-8. */
char *gp_admin_error_json(const char *code, const char *message, size_t *len);

/* Connections open now (for tests and metrics). */
unsigned gp_admin_conns(const gp_admin *a);

/* Peer address "ip:port" of the call's connection (borrowed; "" once it is gone). */
const char *gp_admin_call_addr(const gp_admin_call *c);

/* Answers the call: status, content type, extra header lines (each "Name: value\r\n", or
 * NULL), body copied. After this the call (and the request) is gone. */
void gp_admin_reply(gp_admin_call *c, int status, const char *content_type,
                    const char *extra_headers, const void *body, size_t len);
/* An error as JSON: {"error":"<code>","message":"<message>"} (both escaped). */
void gp_admin_reply_error(gp_admin_call *c, int status, const char *code, const char *message);

/* A streamed answer (a proxy's, bridge/front/): the status line, the handler's header lines
 * as given (each "Name: value\r\n"; none of gp_admin_reply's defaults are added), then
 * Content-Length: len when len >= 0, else Transfer-Encoding: chunked, and Connection. Then
 * gp_admin_stream_data any number of times (each a chunk when chunked; with len >= 0 the
 * caller sends exactly len bytes) and gp_admin_stream_end once, which ends the call as
 * gp_admin_reply does. HEAD: no body is sent. What comes after the client left is dropped. */
void gp_admin_stream_start(gp_admin_call *c, int status, const char *headers, long long len);
void gp_admin_stream_data(gp_admin_call *c, const void *p, size_t len);
void gp_admin_stream_end(gp_admin_call *c);
/* Ends the call by closing the connection: a streamed answer that cannot be completed must
 * not look complete (no last chunk is sent). */
void gp_admin_stream_abort(gp_admin_call *c);
/* 1 once the call's connection is gone (its answer would be dropped). */
int gp_admin_call_gone(const gp_admin_call *c);
/* Bytes handed to the call's connection and not yet written out (0 once it is gone): a proxy
 * streaming an answer stops fetching more while a slow client has many queued. */
size_t gp_admin_call_queued(const gp_admin_call *c);
/* fn(ud) once, when the connection's queued bytes fall to `below` or less, or, if it closes
 * first, when it is released (from the glue's close: the call is gone then). Replaces an
 * earlier one. -1 (fn not called): the connection is gone already. */
int gp_admin_call_on_drain(gp_admin_call *c, size_t below, void (*fn)(void *ud), void *ud);
/* The client's address without the port ("" once it is gone). */
const char *gp_admin_call_ip(const gp_admin_call *c);

/* --- taking a connection over (an Upgrade: a WebSocket through bridge/front/) ---------------
 *
 * A handler may take the call's connection over instead of answering: from then on the
 * connection's bytes are the handler's, both ways, and the server only passes them on (no
 * parsing, no timers, no keep-alive; the connection is never shed). The call ends with it.
 * Bytes the client sent after the request head (read already) come first, at the first
 * gp_admin_raw_reading(c, 1). Reading is off after the takeover until the handler turns it on.
 * Every call below is a no-op (or -1) once the connection is closing; `closed` comes once,
 * when the glue released it, and the handle is invalid after it. */
typedef struct gp_admin_raw_cb {
    void (*data)(void *ud, const void *p, size_t len); /* bytes from the client */
    void (*eof)(void *ud);    /* the client's input ended (EOF or an error): no more data */
    void (*closed)(void *ud); /* released: the last call; c is gone */
    void *ud;
} gp_admin_raw_cb;

/* Takes the call's connection over (cb copied). Returns its handle, or NULL when the
 * connection is gone already (the call is freed either way; cb->closed is not called then).
 * Only for a call not answered yet, and not from inside a raw callback. */
gp_admin_conn *gp_admin_call_takeover(gp_admin_call *call, const gp_admin_raw_cb *cb);
/* Queues a copy of len bytes for the client. 0, or -1 (closing, or out of memory: closed). */
int gp_admin_raw_write(gp_admin_conn *c, const void *p, size_t len);
/* Bytes handed over and not yet written out (0 once closing). */
size_t gp_admin_raw_queued(const gp_admin_conn *c);
/* As gp_admin_call_on_drain, for a taken-over connection. */
int gp_admin_raw_on_drain(gp_admin_conn *c, size_t below, void (*fn)(void *ud), void *ud);
/* Starts (1) or stops (0) delivering the client's bytes. Starting may deliver held bytes at
 * once, before it returns. */
void gp_admin_raw_reading(gp_admin_conn *c, int on);
/* Half-close: the write side is shut once the queued bytes are out (reading goes on). */
void gp_admin_raw_shutdown(gp_admin_conn *c);
/* Closes the connection (queued bytes not yet written may be lost); `closed` follows. */
void gp_admin_raw_close(gp_admin_conn *c);

/* The reason phrase of a status ("OK", "Not Found", ...). */
const char *gp_admin_status_text(int status);

/* GET or HEAD: 1; anything else is answered 405 (JSON, with Allow) and 0 returned. */
int gp_admin_get_only(gp_admin_call *c, const gp_http_request *req);

/* The routes both daemons serve alike (GET/HEAD): /healthz, 200 "ok" while the loop runs;
 * /readyz, 200 "ready" when ready(&why) says so, else 503 {"ready":false,"reason":why};
 * /metrics, the Prometheus text metrics(&len) renders (malloc'd; NULL: 503). p is borrowed
 * for the server's lifetime (a static). 0, or -1 when the route table is full. */
typedef struct gp_admin_probes {
    int (*ready)(const char **why);
    char *(*metrics)(size_t *len);
} gp_admin_probes;
int gp_admin_route_probes(gp_admin *a, const gp_admin_probes *p);

#endif
