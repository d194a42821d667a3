/* fuzz_admin_http.c — libFuzzer target for the admin port's request parsing (proto/http_req.c
 * over http-parser): arbitrary bytes are fed as one connection's input, in pieces whose
 * sizes come from the first byte, request after request as the server does (pipelining).
 * Whatever completes must honour the bounds: header count, body size, NUL-terminated strings
 * and consumption that never runs past the input. Each complete request's Host goes through
 * the Host check (gp_http_host_allowed), which must not read past it. The same bytes then go
 * to the whole server without its I/O (proto/admin_http.c) through a fake glue, with routes
 * that answer at once or later: every answer must start with a status line, and the server
 * must free itself once closed. The first byte's top bit configures the server as the HTTP
 * front door does (any Host, 100 Continue) and answers late calls with streamed answers
 * (chunked, with a length, aborted). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_http.h"
#include "http_req.h"

#define MAX_BODY 4096 /* small, so that the fuzzer reaches the limit */

typedef struct fio {
    gp_admin_conn *c;
    int closed, reading;
    unsigned pending;
} fio;

static uint64_t f_now(void *ud) {
    (void)ud;
    return 0;
}
static int done;
static int in_body; /* a streamed answer's body (or its last chunk) is being written */
static void f_done(void *ud) {
    (void)ud;
    done = 1;
}
static int f_write(void *io, const void *buf, size_t len) {
    if (!in_body && (len < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0))
        __builtin_trap();
    ((fio *)io)->pending++;
    return 0;
}
static void f_try_write(void *io, const void *buf, size_t len) {
    (void)io, (void)buf, (void)len;
}
static int f_reading(void *io, int on) {
    ((fio *)io)->reading = on;
    return 0;
}
static int f_shutdown(void *io) {
    (void)io;
    return 0;
}
static void f_timer(void *io, unsigned ms) {
    (void)io, (void)ms;
}
static void f_timer_stop(void *io) {
    (void)io;
}
static void f_close(void *io) {
    ((fio *)io)->closed = 1;
}
static const gp_admin_io io = {NULL,      f_now,      f_done,  f_write,      f_try_write,
                               f_reading, f_shutdown, f_timer, f_timer_stop, f_close};

static gp_admin_call *held;
static void now_fn(gp_admin_call *c, const gp_http_request *req, void *ud) {
    (void)ud;
    gp_admin_reply(c, 200, "text/plain", NULL, req->body, req->body_len);
}
static void later_fn(gp_admin_call *c, const gp_http_request *req, void *ud) {
    (void)req, (void)ud;
    held = c;
}

/* A late answer: as JSON, or (the front door's way, proxy != 0) streamed in chunks,
 * streamed with a length, or aborted midway. */
static void answer_later(gp_admin_call *c, int proxy, unsigned turn) {
    switch (proxy ? turn % 4 : 0) {
    case 0:
        gp_admin_reply_error(c, 503, "later", "answered later");
        break;
    case 1:
        gp_admin_stream_start(c, 200, "X-A: b\r\n", -1);
        in_body = 1;
        gp_admin_stream_data(c, "abc", 3);
        gp_admin_stream_data(c, "", 0);
        gp_admin_stream_end(c);
        break;
    case 2:
        gp_admin_stream_start(c, 504, NULL, 2);
        in_body = 1;
        gp_admin_stream_data(c, "ab", 2);
        gp_admin_stream_end(c);
        break;
    default:
        gp_admin_stream_start(c, 200, NULL, -1);
        in_body = 1;
        gp_admin_stream_data(c, "abc", 3);
        gp_admin_stream_abort(c);
    }
    in_body = 0;
}

/* The bytes as one connection to the server core, in pieces of `step`; proxy: configured as
 * the front door configures it (any Host, 100 Continue, streamed answers). */
static void serve(const uint8_t *data, size_t size, size_t step, int proxy) {
    gp_admin_cfg cfg = {
        .max_body = MAX_BODY, .hosts = "dash.example", .any_host = proxy, .continue_100 = proxy};
    unsigned turn = 0;
    gp_admin *a = gp_admin_core_new(&cfg, &io);
    if (!a)
        return;
    gp_admin_route(a, "/", 1, now_fn, NULL);
    gp_admin_route(a, "/later", 1, later_fn, NULL);
    fio f = {0};
    held = NULL;
    done = 0;
    f.c = gp_admin_accepted(a, &f, "127.0.0.1", 1);
    if (!f.c) {
        gp_admin_shutdown(a);
        gp_admin_unref(a);
        return;
    }
    for (size_t off = 0; off < size && !f.closed;) {
        size_t n = size - off < step ? size - off : step;
        gp_admin_input(f.c, data + off, (long)n);
        off += n;
        while (held) { /* answered on the next turn; what was read meanwhile is kept */
            gp_admin_call *c = held;
            held = NULL;
            answer_later(c, proxy, turn++);
        }
        while (f.pending && !f.closed) {
            f.pending--;
            gp_admin_written(f.c, 0);
        }
    }
    gp_admin_shutdown(a);
    if (!f.closed)
        __builtin_trap();
    if (held) /* the client left first: the answer is dropped */
        gp_admin_reply(held, 200, NULL, NULL, NULL, 0);
    gp_admin_released(f.c);
    gp_admin_unref(a);
    if (!done)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    int proxy = data[0] >> 7;
    data++, size--;
    serve(data, size, step, proxy);
    gp_http_req *p = gp_http_req_new(MAX_BODY);
    if (!p)
        return 0;
    size_t off = 0;
    int requests = 0;
    while (off < size && requests < 64) {
        size_t n = size - off < step ? size - off : step, used = 0;
        int rc = gp_http_req_feed(p, data + off, n, &used);
        if (used > n)
            __builtin_trap();
        off += used;
        if (rc == GP_HTTP_MORE) {
            if (used != n)
                __builtin_trap();
            continue;
        }
        if (rc != GP_HTTP_DONE)
            break; /* refused: the server answers and closes */
        const gp_http_request *r = gp_http_req_get(p);
        if (!r || !r->method || !r->path || !r->query || !r->target || !r->body ||
            r->nheaders > GP_HTTP_MAX_HEADERS || r->body_len > MAX_BODY || r->path[0] == '\0')
            __builtin_trap();
        for (size_t i = 0; i < r->nheaders; i++)
            if (!r->headers[i].name || !r->headers[i].value ||
                gp_http_header_get(r, r->headers[i].name) == NULL)
                __builtin_trap();
        if (r->body[r->body_len] != '\0')
            __builtin_trap();
        const char *host = gp_http_header_get(r, "host");
        if (host && gp_http_host_allowed(host, NULL) &&
            !gp_http_host_allowed(host, "dash.example, prom.example:9090"))
            __builtin_trap(); /* more names never refuse more */
        requests++;
        if (!r->keep_alive)
            break;
        gp_http_req_next(p);
    }
    gp_http_req_free(p);
    return 0;
}
