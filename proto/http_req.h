/* http_req.h — HTTP/1.1 requests out of a byte stream, for the admin port of both daemons.
 * Pure: fed bytes, hands out one complete request at a time; the parsing itself is
 * http-parser's (Debian libhttp-parser), this file only collects what it reports and bounds
 * it (request size, header count). No sockets, no loop: admin_http.c (the server) feeds it,
 * the libuv adapter (proto/adapters/uv_admin.c) does the I/O, and
 * tests/fuzz/fuzz_admin_http.c feeds it arbitrary bytes.
 *
 * Use: feed bytes until GP_HTTP_DONE, read gp_http_req_get(), answer it, then
 * gp_http_req_next() and feed the bytes the last call did not consume (pipelining). Errors
 * are sticky until gp_http_req_next(); the connection should be answered and closed. */
#ifndef GP_HTTP_REQ_H
#define GP_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#define GP_HTTP_MAX_BODY (1u << 20) /* request bodies up to 1 MiB */
#define GP_HTTP_MAX_HEADERS 64

enum {
    GP_HTTP_MORE = 0,          /* need more bytes */
    GP_HTTP_DONE = 1,          /* a request is complete */
    GP_HTTP_EBAD = -400,       /* malformed request (answer 400, close) */
    GP_HTTP_ETOO_LARGE = -413, /* body over the limit (413, close) */
    GP_HTTP_EHEADERS = -431,   /* too many headers or header bytes (431, close) */
    GP_HTTP_ENOMEM = -503,     /* out of memory (503, close) */
};

typedef struct gp_http_header {
    char *name; /* lower-cased, NUL-terminated */
    char *value;
} gp_http_header;

/* One request. Every string is NUL-terminated and owned by the parser (valid until
 * gp_http_req_next or gp_http_req_free). The body is NUL-terminated too (not counted). */
typedef struct gp_http_request {
    const char *method; /* "GET", "POST", ... (static) */
    char *target;       /* the request target as sent */
    char *path;         /* its path ("/" when absent), still percent-encoded */
    char *query;        /* its query without '?', "" when none */
    gp_http_header headers[GP_HTTP_MAX_HEADERS];
    size_t nheaders;
    uint8_t *body;
    size_t body_len;
    int keep_alive; /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
    int http_minor;
} gp_http_request;

typedef struct gp_http_req gp_http_req;

/* max_body: largest body accepted (0: GP_HTTP_MAX_BODY). NULL: out of memory. */
gp_http_req *gp_http_req_new(size_t max_body);
void gp_http_req_free(gp_http_req *p); /* NULL ok */

/* Feeds len bytes. *used receives how many were consumed: all of them unless a request
 * completed within them (the rest belong to the next request). Returns GP_HTTP_MORE,
 * GP_HTTP_DONE or a negative GP_HTTP_E*. After DONE or an error, further feeding returns
 * the same result and consumes nothing until gp_http_req_next. */
int gp_http_req_feed(gp_http_req *p, const uint8_t *data, size_t len, size_t *used);

/* The complete request (after GP_HTTP_DONE), else NULL. */
const gp_http_request *gp_http_req_get(const gp_http_req *p);

/* Forgets the request (or error) and gets ready for the next one on the same connection. */
void gp_http_req_next(gp_http_req *p);

/* 1 once any byte of the current request has been fed (a request is under way). */
int gp_http_req_started(const gp_http_req *p);

/* 1 while the current request's headers are complete, its body is still to come and it
 * asked for `Expect: 100-continue` (the server may then say `100 Continue`). */
int gp_http_req_expects_continue(const gp_http_req *p);

/* The value of header `name` (lower case), or NULL. The first one if repeated. */
const char *gp_http_header_get(const gp_http_request *r, const char *name);

/* Whether a Host header value (name or name:port) is one the admin port answers: an IPv4
 * literal, a bracketed IPv6 literal, "localhost" or one of `names` (comma-separated, spaces
 * around them ignored, each may carry a :port which is ignored; case-insensitive). An empty
 * value passes (browsers always send one). names may be NULL. */
int gp_http_host_allowed(const char *host, const char *names);

#endif
