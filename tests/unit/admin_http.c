/* admin_http.c — the admin port's server without its I/O (proto/admin_http.c), fed bytes
 * through a fake glue: what it answers, when it stops and resumes reading, which timer it
 * asks for, whom it sheds over the caps, and its JSON errors (as jansson writes them). */
#include "admin_http.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* One connection as the fake glue holds it. */
typedef struct fconn {
    gp_admin_conn *c;
    char out[16384];
    size_t outlen;
    unsigned pending; /* writes not yet reported done */
    int reading, shut, closed, timer_on;
    unsigned timer_ms;
} fconn;

static uint64_t clock_ms;
static int done_called;

static uint64_t f_now(void *ud) {
    (void)ud;
    return clock_ms;
}
static void f_done(void *ud) {
    (void)ud;
    done_called++;
}
static void f_try_write(void *io, const void *buf, size_t len) {
    fconn *f = io;
    cr_assert_lt(f->outlen + len, sizeof f->out);
    memcpy(f->out + f->outlen, buf, len);
    f->outlen += len;
    f->out[f->outlen] = '\0';
}
static int f_write(void *io, const void *buf, size_t len) {
    f_try_write(io, buf, len);
    ((fconn *)io)->pending++;
    return 0;
}
static int f_reading(void *io, int on) {
    ((fconn *)io)->reading = on;
    return 0;
}
static int f_shutdown(void *io) {
    ((fconn *)io)->shut = 1;
    return 0;
}
static void f_timer(void *io, unsigned ms) {
    ((fconn *)io)->timer_on = 1;
    ((fconn *)io)->timer_ms = ms;
}
static void f_timer_stop(void *io) {
    ((fconn *)io)->timer_on = 0;
}
static void f_close(void *io) {
    ((fconn *)io)->closed = 1;
}

static const gp_admin_io fio = {NULL,      f_now,      f_done,  f_write,      f_try_write,
                                f_reading, f_shutdown, f_timer, f_timer_stop, f_close};

static gp_admin_call *held;
static void later(gp_admin_call *call, const gp_http_request *req, void *ud) {
    (void)req, (void)ud;
    held = call;
}

/* A server on the fake glue; its /slow handler (`later`) answers later: it holds the call in
 * `held`. */
static gp_admin *server(const gp_admin_cfg *cfg) {
    clock_ms = 1000;
    done_called = 0;
    gp_admin_cfg def = {0};
    gp_admin *a = gp_admin_core_new(cfg ? cfg : &def, &fio);
    cr_assert_not_null(a);
    gp_admin_route(a, "/slow", 0, later, NULL);
    return a;
}

static void feed(fconn *f, const char *s) {
    gp_admin_input(f->c, s, (long)strlen(s));
}

/* The writes complete (the glue reports them), as the loop would on its next turn. */
static void flush(fconn *f) {
    while (f->pending) {
        f->pending--;
        gp_admin_written(f->c, 0);
    }
}

/* The server is closed and every connection released (the n in fs here, after their last
 * writes; any others before): it frees itself (done once). */
static void teardown(gp_admin *a, fconn **fs, size_t n) {
    gp_admin_shutdown(a);
    for (size_t i = 0; i < n; i++) {
        flush(fs[i]);
        cr_assert(fs[i]->closed);
        gp_admin_released(fs[i]->c);
    }
    cr_assert_eq(done_called, 0);
    gp_admin_unref(a);
    cr_assert_eq(done_called, 1);
}

/* teardown with one connection, f. */
static void teardown_one(gp_admin *a, fconn *f) {
    teardown(a, &f, 1);
}

static int ready_yes(const char **why) {
    (void)why;
    return 1;
}
static char *metrics_text(size_t *len) {
    *len = 6;
    return strdup("x 1\n\n\n");
}
static const gp_admin_probes probes = {ready_yes, metrics_text};

Test(admin_http, probe_answered_with_keep_alive_then_idle_timer) {
    gp_admin *a = server(NULL);
    gp_admin_route_probes(a, &probes);
    fconn f = {0};
    f.c = gp_admin_accepted(a, &f, "127.0.0.1", 5555);
    cr_assert_not_null(f.c);
    cr_assert(f.reading);
    cr_assert(f.timer_on && f.timer_ms == 5000, "the request deadline runs from accept");
    feed(&f, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n");
    cr_assert(strstr(f.out, "HTTP/1.1 200 OK\r\n") == f.out, "%s", f.out);
    cr_assert(strstr(f.out, "Connection: keep-alive\r\n"), "%s", f.out);
    cr_assert(strstr(f.out, "X-Frame-Options: DENY\r\n"), "%s", f.out);
    cr_assert(strstr(f.out, "\r\n\r\nok\n"), "%s", f.out);
    cr_assert(f.timer_on && f.timer_ms == 15000, "idle timer after the answer");
    cr_assert_eq(gp_admin_conns(a), 1);
    flush(&f);
    cr_assert(!f.closed);
    gp_admin_timeout(f.c); /* idle: closed */
    cr_assert(f.closed);
    cr_assert_eq(gp_admin_conns(a), 0);
    gp_admin_released(f.c);
    teardown(a, NULL, 0);
}

/* f connects from ip:port and sends req, whose handler (`later`) holds the call in `held`. */
static void ask_later(gp_admin *a, fconn *f, const char *ip, int port, const char *req) {
    f->c = gp_admin_accepted(a, f, ip, port);
    held = NULL;
    feed(f, req);
    cr_assert_not_null(held);
}

Test(admin_http, pipelined_request_waits_for_a_late_answer) {
    gp_admin *a = server(NULL);
    gp_admin_route_probes(a, &probes);
    fconn f = {0};
    ask_later(a, &f, "::1", 7, "GET /slow HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n");
    cr_assert_eq(f.outlen, 0);
    cr_assert(!f.reading, "reading stops while a handler has not answered");
    cr_assert_str_eq(gp_admin_call_addr(held), "::1:7");
    gp_admin_reply(held, 200, "text/plain", NULL, "late", 4);
    cr_assert(strstr(f.out, "\r\n\r\nlate"), "%s", f.out);
    /* the kept input is the next request: answered 404 from the pipeline */
    cr_assert(strstr(f.out, "HTTP/1.1 404 Not Found\r\n"), "%s", f.out);
    cr_assert(strstr(f.out, "{\"error\":\"not_found\",\"message\":\"no such path\"}"), "%s", f.out);
    cr_assert(f.reading, "reading resumes");
    teardown_one(a, &f);
}

Test(admin_http, answer_after_the_client_left_is_dropped) {
    gp_admin *a = server(NULL);
    fconn f = {0};
    ask_later(a, &f, "127.0.0.1", 9, "GET /slow HTTP/1.1\r\n\r\n");
    gp_admin_input(f.c, NULL, -1); /* EOF */
    cr_assert(f.closed);
    cr_assert_str_eq(gp_admin_call_addr(held), "");
    gp_admin_reply(held, 200, "text/plain", NULL, "x", 1);
    cr_assert_eq(f.outlen, 0);
    gp_admin_released(f.c);
    teardown(a, NULL, 0);
}

Test(admin_http, foreign_host_is_misdirected_and_bad_input_refused_then_lingers) {
    gp_admin *a = server(NULL);
    gp_admin_route_probes(a, &probes);
    fconn f = {0}, g = {0};
    f.c = gp_admin_accepted(a, &f, "127.0.0.1", 1);
    feed(&f, "GET /healthz HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n");
    cr_assert(strstr(f.out, "HTTP/1.1 421 Misdirected Request\r\n") == f.out, "%s", f.out);
    cr_assert(strstr(f.out, "\"error\":\"misdirected_request\""), "%s", f.out);
    g.c = gp_admin_accepted(a, &g, "127.0.0.1", 2);
    feed(&g, "NOT HTTP AT ALL\r\n\r\n");
    cr_assert(strstr(g.out, "HTTP/1.1 400 Bad Request\r\n") == g.out, "%s", g.out);
    cr_assert(strstr(g.out, "Connection: close\r\n"), "%s", g.out);
    cr_assert(!g.shut && !g.closed, "lingering waits for the answer to be written");
    flush(&g);
    cr_assert(g.shut && !g.closed && g.reading, "write side shut, input still drained");
    cr_assert_eq(g.timer_ms, 2000);
    feed(&g, "more bytes the client still sends");
    cr_assert(!g.closed);
    gp_admin_timeout(g.c);
    cr_assert(g.closed);
    gp_admin_released(g.c);
    teardown_one(a, &f);
}

Test(admin_http, caps_shed_the_oldest_idle_or_refuse_when_all_busy) {
    gp_admin_cfg cfg = {.max_conns = 2, .max_per_addr = 1};
    gp_admin *a = server(&cfg);
    fconn x = {0}, y = {0}, z = {0}, w = {0};
    x.c = gp_admin_accepted(a, &x, "10.0.0.1", 1);
    clock_ms++;
    y.c = gp_admin_accepted(a, &y, "10.0.0.1", 2); /* same address: x (idle) is shed */
    cr_assert(x.closed && !y.closed);
    gp_admin_released(x.c);
    held = NULL;
    feed(&y, "GET /slow HTTP/1.1\r\n\r\n"); /* y is busy now */
    clock_ms++;
    z.c = gp_admin_accepted(a, &z, "10.0.0.1", 3); /* the only other one is busy: 503 */
    cr_assert(z.closed && !y.closed);
    cr_assert(strstr(z.out, "HTTP/1.1 503 Service Unavailable\r\n"), "%s", z.out);
    cr_assert(strstr(z.out, "too many admin connections"), "%s", z.out);
    gp_admin_released(z.c);
    w.c = gp_admin_accepted(a, &w, "10.0.0.2", 4); /* another address, under the total */
    cr_assert(!w.closed);
    cr_assert_eq(gp_admin_conns(a), 2);
    gp_admin_reply(held, 204, NULL, NULL, NULL, 0);
    fconn *fs[] = {&y, &w};
    teardown(a, fs, 2);
}

/* The JSON errors are byte for byte what jansson wrote before the server left libuv. */
Test(admin_http, error_json_as_jansson_writes_it) {
    static const char *cases[] = {"plain", "quote\" back\\ slash/", "ctl\x01\x1f\x7f\b\f\n\r\t",
                                  "utf8 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", ""};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *o = json_pack("{s:s, s:s}", "error", "code", "message", cases[i]);
        char *want = json_dumps(o, JSON_COMPACT);
        size_t len;
        char *got = gp_admin_error_json("code", cases[i], &len);
        cr_assert_str_eq(got, want);
        cr_assert_eq(len, strlen(want));
        free(got);
        free(want);
        json_decref(o);
    }
    static const char *bad[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    size_t len;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_null(json_pack("{s:s}", "m", bad[i]));
        cr_assert_null(gp_admin_error_json("code", bad[i], &len), "case %zu", i);
    }
}

/* A proxy's streamed answer (bridge/front/): its own headers, chunks, the last chunk, then the
 * pipelined next request; a Host the admin port would refuse passes with any_host. */
Test(admin_http, streamed_answer_chunked_then_next_request) {
    gp_admin_cfg cfg = {.any_host = 1};
    gp_admin *a = server(&cfg);
    gp_admin_route_probes(a, &probes);
    fconn f = {0};
    ask_later(
        a, &f, "10.0.0.1", 9,
        "GET /slow HTTP/1.1\r\nHost: farm-1.example.org\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    cr_assert_str_eq(gp_admin_call_ip(held), "10.0.0.1");
    cr_assert(!gp_admin_call_gone(held));
    gp_admin_stream_start(held, 504, "X-Up: 1\r\n", -1);
    gp_admin_stream_data(held, "hello ", 6);
    gp_admin_stream_data(held, "world", 5);
    cr_assert(!strstr(f.out, "healthz") && !strstr(f.out, "\r\nok\n"), "nothing of the next yet");
    gp_admin_stream_end(held);
    const char *want = "HTTP/1.1 504 Gateway Timeout\r\nX-Up: 1\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: keep-alive\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
                       "HTTP/1.1 200 OK\r\n";
    cr_assert(strncmp(f.out, want, strlen(want)) == 0, "%s", f.out);
    cr_assert(!strstr(f.out, "X-Frame-Options: DENY\r\nConnection: keep-alive\r\n\r\n6"),
              "no admin defaults on a streamed answer");
    teardown_one(a, &f);
}

/* With a length: the bytes as they are; Connection: close ends the connection after them;
 * an aborted stream closes at once, without a last chunk. */
Test(admin_http, streamed_answer_with_length_and_abort) {
    gp_admin *a = server(NULL);
    fconn f = {0};
    ask_later(a, &f, "127.0.0.1", 9, "GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n");
    gp_admin_stream_start(held, 200, NULL, 3);
    gp_admin_stream_data(held, "abc", 3);
    gp_admin_stream_end(held);
    cr_assert(strstr(f.out, "Content-Length: 3\r\nConnection: close\r\n\r\nabc"), "%s", f.out);
    flush(&f);
    cr_assert(f.closed || f.shut, "closed after the answer");
    gp_admin_released(f.c);

    fconn g = {0};
    ask_later(a, &g, "127.0.0.1", 10, "GET /slow HTTP/1.1\r\n\r\n");
    gp_admin_stream_start(held, 200, NULL, -1);
    gp_admin_stream_data(held, "part", 4);
    gp_admin_stream_abort(held);
    cr_assert(g.closed);
    cr_assert_null(strstr(g.out, "0\r\n\r\n"), "an aborted stream must not look complete");
    gp_admin_released(g.c);
    teardown(a, NULL, 0);
}

static int drains;
static void on_drain(void *ud) {
    (void)ud;
    drains++;
}

/* What a streamed answer has queued and not yet written (a slow client), and the drain
 * callback: once the queue falls to its mark, and once more when a connection closes with a
 * waiter (at its release, when the call is gone). */
Test(admin_http, queued_bytes_and_drain) {
    gp_admin *a = server(NULL);
    fconn f = {0};
    ask_later(a, &f, "127.0.0.1", 9, "GET /slow HTTP/1.1\r\n\r\n");
    gp_admin_stream_start(held, 200, NULL, -1);
    size_t head = gp_admin_call_queued(held);
    cr_assert_gt(head, 0);
    gp_admin_stream_data(held, "0123456789", 10);
    cr_assert_eq(gp_admin_call_queued(held), head + 15, "10 bytes as a chunk: a\\r\\n...\\r\\n");
    drains = 0;
    cr_assert_eq(gp_admin_call_on_drain(held, 0, on_drain, NULL), 0);
    f.pending--;
    gp_admin_written(f.c, 0); /* the head is out, the chunk is not */
    cr_assert_eq(gp_admin_call_queued(held), 15);
    cr_assert_eq(drains, 0, "not drained to the mark yet");
    f.pending--;
    gp_admin_written(f.c, 0);
    cr_assert_eq(gp_admin_call_queued(held), 0);
    cr_assert_eq(drains, 1);
    flush(&f);
    cr_assert_eq(drains, 1, "once");

    gp_admin_stream_data(held, "more", 4);
    cr_assert_eq(gp_admin_call_on_drain(held, 0, on_drain, NULL), 0);
    gp_admin_stream_abort(held); /* the connection closes with a waiter */
    cr_assert_eq(drains, 1, "not from inside the close");
    flush(&f);
    cr_assert_eq(drains, 1);
    gp_admin_released(f.c);
    cr_assert_eq(drains, 2, "the waiter learns at the release");
    teardown(a, NULL, 0);
}

static const gp_http_request *last_req;
static void take(gp_admin_call *call, const gp_http_request *req, void *ud) {
    (void)ud;
    last_req = req;
    gp_admin_reply(call, 200, "text/plain", NULL, req->body, req->body_len);
}

/* Expect: 100-continue is answered 100 Continue once the headers are in (with continue_100,
 * as the front door sets it), then the body and the answer follow; without the flag (the
 * admin port) nothing changes: no interim answer. */
Test(admin_http, expect_100_continue_when_asked_for) {
    for (int on = 0; on <= 1; on++) {
        gp_admin_cfg cfg = {.continue_100 = on};
        gp_admin *a = server(&cfg);
        gp_admin_route(a, "/up", 0, take, NULL);
        fconn f = {0};
        f.c = gp_admin_accepted(a, &f, "127.0.0.1", 9);
        feed(&f, "POST /up HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n");
        if (on)
            cr_assert_str_eq(f.out, "HTTP/1.1 100 Continue\r\n\r\n");
        else
            cr_assert_eq(f.outlen, 0, "%s", f.out);
        feed(&f, "ab");
        cr_assert(on ? f.outlen == 25 : f.outlen == 0, "100 Continue once: %s", f.out);
        feed(&f, "cd");
        cr_assert(strstr(f.out, "HTTP/1.1 200 OK\r\n"), "%s", f.out);
        cr_assert(strstr(f.out, "\r\n\r\nabcd"), "%s", f.out);
        /* the next request without Expect gets no interim answer */
        size_t before = f.outlen;
        feed(&f, "POST /up HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
        cr_assert_eq(f.outlen, before);
        feed(&f, "x");
        cr_assert(!strstr(f.out + before, "100 Continue"), "%s", f.out + before);
        teardown_one(a, &f);
    }
}

/* A taken-over connection (an Upgrade): the bytes after the request head come first once the
 * handler reads, then every byte as it arrives; the handler writes raw bytes (no framing),
 * half-closes, sees the client's EOF, is never timed out or shed, and learns the release. */
static char raw_in[256];
static size_t raw_len;
static int raw_eofs, raw_closes;
static void r_data(void *ud, const void *p, size_t len) {
    (void)ud;
    cr_assert_lt(raw_len + len, sizeof raw_in);
    memcpy(raw_in + raw_len, p, len);
    raw_len += len;
}
static void r_eof(void *ud) {
    (void)ud;
    raw_eofs++;
}
static void r_closed(void *ud) {
    (void)ud;
    raw_closes++;
}

Test(admin_http, takeover_hands_the_raw_connection_over) {
    gp_admin_cfg cfg = {.max_conns = 1, .max_per_addr = 1};
    gp_admin *a = server(&cfg);
    fconn f = {0};
    raw_len = 0, raw_eofs = raw_closes = 0;
    f.c = gp_admin_accepted(a, &f, "127.0.0.1", 9);
    feed(&f, "GET /slow HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
             "early bytes");
    cr_assert_not_null(held);
    cr_assert(!f.reading, "no reading while the handler decides");
    const gp_admin_raw_cb cb = {r_data, r_eof, r_closed, NULL};
    gp_admin_conn *c = gp_admin_call_takeover(held, &cb);
    held = NULL;
    cr_assert_eq(c, f.c);
    cr_assert(!f.timer_on, "no timer of the server's");
    cr_assert(!f.reading);
    cr_assert_eq(raw_len, 0, "nothing before the handler reads");
    gp_admin_raw_reading(c, 1);
    cr_assert(f.reading);
    cr_assert_eq(raw_len, 11);
    cr_assert(memcmp(raw_in, "early bytes", 11) == 0);
    feed(&f, "GET /not-a-request\r\n"); /* raw bytes, not parsed */
    cr_assert_eq(raw_len, 31);
    cr_assert_eq(f.outlen, 0, "nothing answered: %s", f.out);
    cr_assert_eq(gp_admin_raw_write(c, "\x81\x02hi", 4), 0);
    cr_assert_eq(f.outlen, 4);
    cr_assert(memcmp(f.out, "\x81\x02hi", 4) == 0, "raw, unframed");
    cr_assert_eq(gp_admin_raw_queued(c), 4);
    drains = 0;
    cr_assert_eq(gp_admin_raw_on_drain(c, 0, on_drain, NULL), 0);
    flush(&f);
    cr_assert_eq(drains, 1);
    cr_assert_eq(gp_admin_raw_queued(c), 0);
    gp_admin_raw_reading(c, 0);
    cr_assert(!f.reading);
    gp_admin_timeout(c); /* a stray timer: ignored */
    cr_assert(!f.closed);
    fconn g = {0}; /* over the caps: the taken-over connection is busy, not shed */
    g.c = gp_admin_accepted(a, &g, "127.0.0.1", 10);
    cr_assert(g.closed && !f.closed);
    cr_assert(strstr(g.out, "503"), "%s", g.out);
    gp_admin_released(g.c);
    gp_admin_input(c, NULL, -1); /* the client's EOF */
    cr_assert_eq(raw_eofs, 1);
    gp_admin_input(c, NULL, -1);
    cr_assert_eq(raw_eofs, 1, "once");
    gp_admin_raw_shutdown(c);
    cr_assert(f.shut && !f.closed);
    cr_assert_eq(gp_admin_raw_write(c, "x", 1), -1, "nothing after the half-close");
    gp_admin_raw_close(c);
    cr_assert(f.closed);
    cr_assert_eq(raw_closes, 0);
    gp_admin_released(c);
    cr_assert_eq(raw_closes, 1);
    teardown(a, NULL, 0);
}

/* A takeover after the client left returns NULL; a held call is freed all the same. */
Test(admin_http, takeover_after_the_client_left) {
    gp_admin *a = server(NULL);
    fconn f = {0};
    raw_closes = 0;
    f.c = gp_admin_accepted(a, &f, "127.0.0.1", 9);
    feed(&f, "GET /slow HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    gp_admin_input(f.c, NULL, -1);
    cr_assert(f.closed);
    const gp_admin_raw_cb cb = {r_data, r_eof, r_closed, NULL};
    cr_assert_null(gp_admin_call_takeover(held, &cb));
    held = NULL;
    gp_admin_released(f.c);
    cr_assert_eq(raw_closes, 0);
    teardown(a, NULL, 0);
}
