/* admin_http.h — the admin port of both daemons: a small HTTP/1.1 server on the daemon's
 * libuv loop (keep-alive, one request at a time per connection, bounded request size and
 * header count, idle and request timeouts, a cap on concurrent connections) with routes the
 * daemon registers. I/O side: sockets and timers here; the parsing is http_req.h's (pure).
 *
 * A handler answers with gp_admin_reply, exactly once, either before it returns or later
 * (after Redis answered, say). If the client went away meanwhile the reply is dropped; the
 * call itself stays valid until answered, so a handler never needs to know. */
#ifndef GP_ADMIN_HTTP_H
#define GP_ADMIN_HTTP_H

#include "http_req.h"

#include <stddef.h>
#include <uv.h>

typedef struct gp_admin gp_admin;
typedef struct gp_admin_call gp_admin_call;

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
    size_t max_body;     /* 0: GP_HTTP_MAX_BODY */
    gp_admin_log_fn log; /* may be NULL */
} gp_admin_cfg;

/* Creates the server (not listening yet). NULL: out of memory. */
gp_admin *gp_admin_new(uv_loop_t *loop, const gp_admin_cfg *cfg);

/* Routes `path` (exact), or every path starting with it when prefix is set, to fn. The
 * longest match wins; an unmatched path is answered 404 by the server. path is borrowed
 * (a literal). 0, or -1 when the table is full (32 routes). */
int gp_admin_route(gp_admin *a, const char *path, int prefix, gp_admin_fn fn, void *ud);

/* Starts listening. Returns the port (the real one when cfg->port was 0), or a negative
 * libuv error (logged). */
int gp_admin_listen(gp_admin *a);

/* Closes the listener and every connection; memory is released as libuv closes handles
 * and pending calls are answered (their replies are dropped). NULL ok. */
void gp_admin_close(gp_admin *a);

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
