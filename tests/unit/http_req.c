/* http_req.c — the admin port's request parsing (proto/http_req.c over http-parser): whole
 * requests, every split point, pipelining, keep-alive, and the limits (body size, header
 * count, header bytes, malformed input, upgrades). */
#include "http_req.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feeds s in pieces of at most `step` bytes; returns the last result and the number of
 * bytes consumed in *used_total. */
static int feed_steps(gp_http_req *p, const char *s, size_t len, size_t step, size_t *used_total) {
    size_t off = 0;
    int rc = GP_HTTP_MORE;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used = 0;
        rc = gp_http_req_feed(p, (const uint8_t *)s + off, n, &used);
        off += used;
        if (rc != GP_HTTP_MORE)
            break;
        cr_assert_eq(used, n, "MORE must consume everything it was given");
    }
    *used_total = off;
    return rc;
}

static const char POST[] = "POST /api/houses?x=1 HTTP/1.1\r\n"
                           "Host: 127.0.0.1\r\n"
                           "Authorization: Bearer t0k\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: 13\r\n"
                           "\r\n"
                           "{\"id\":\"f-1\"}\n";

Test(http_req, whole_request_fields) {
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)POST, sizeof POST - 1, &used), GP_HTTP_DONE);
    cr_assert_eq(used, sizeof POST - 1);
    const gp_http_request *r = gp_http_req_get(p);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->path, "/api/houses");
    cr_assert_str_eq(r->query, "x=1");
    cr_assert_eq(r->nheaders, 4);
    cr_assert_str_eq(gp_http_header_get(r, "authorization"), "Bearer t0k");
    cr_assert_str_eq(gp_http_header_get(r, "content-type"), "application/json");
    cr_assert_null(gp_http_header_get(r, "cookie"));
    cr_assert_eq(r->body_len, 13);
    cr_assert(memcmp(r->body, "{\"id\":\"f-1\"}\n", 13) == 0);
    cr_assert(r->keep_alive);
    gp_http_req_free(p);
}

Test(http_req, every_split_point) {
    for (size_t step = 1; step <= sizeof POST; step++) {
        gp_http_req *p = gp_http_req_new(0);
        size_t used;
        cr_assert_eq(feed_steps(p, POST, sizeof POST - 1, step, &used), GP_HTTP_DONE, "step %zu",
                     step);
        cr_assert_eq(used, sizeof POST - 1);
        const gp_http_request *r = gp_http_req_get(p);
        cr_assert_str_eq(r->path, "/api/houses");
        cr_assert_str_eq(gp_http_header_get(r, "authorization"), "Bearer t0k", "step %zu", step);
        cr_assert_eq(r->body_len, 13);
        gp_http_req_free(p);
    }
}

Test(http_req, pipelined_requests_one_at_a_time) {
    const char two[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (size_t step = 1; step <= sizeof two; step++) {
        gp_http_req *p = gp_http_req_new(0);
        size_t off = 0, used;
        int rc = feed_steps(p, two, sizeof two - 1, step, &used);
        off += used;
        cr_assert_eq(rc, GP_HTTP_DONE, "step %zu", step);
        cr_assert_str_eq(gp_http_req_get(p)->path, "/healthz");
        cr_assert(gp_http_req_get(p)->keep_alive);
        /* Before next(): feeding is refused, nothing consumed. */
        cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)two + off, 1, &used), GP_HTTP_DONE);
        cr_assert_eq(used, 0);
        gp_http_req_next(p);
        rc = feed_steps(p, two + off, sizeof two - 1 - off, step, &used);
        cr_assert_eq(rc, GP_HTTP_DONE, "step %zu second", step);
        cr_assert_eq(off + used, sizeof two - 1);
        cr_assert_str_eq(gp_http_req_get(p)->path, "/metrics");
        cr_assert_not(gp_http_req_get(p)->keep_alive);
        gp_http_req_free(p);
    }
}

Test(http_req, chunked_body) {
    const char s[] = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    cr_assert_eq(feed_steps(p, s, sizeof s - 1, 3, &used), GP_HTTP_DONE);
    cr_assert_eq(gp_http_req_get(p)->body_len, 5);
    cr_assert_str_eq((const char *)gp_http_req_get(p)->body, "abcde");
    gp_http_req_free(p);
}

Test(http_req, http10_closes_unless_keep_alive) {
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    const char a[] = "GET / HTTP/1.0\r\n\r\n";
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)a, sizeof a - 1, &used), GP_HTTP_DONE);
    cr_assert_not(gp_http_req_get(p)->keep_alive);
    cr_assert_str_eq(gp_http_req_get(p)->path, "/");
    gp_http_req_next(p);
    const char b[] = "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)b, sizeof b - 1, &used), GP_HTTP_DONE);
    cr_assert(gp_http_req_get(p)->keep_alive);
    gp_http_req_free(p);
}

Test(http_req, declared_body_over_limit_refused_before_reading) {
    gp_http_req *p = gp_http_req_new(100);
    const char s[] = "POST /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
    size_t used;
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)s, sizeof s - 1, &used), GP_HTTP_ETOO_LARGE);
    cr_assert_null(gp_http_req_get(p));
    /* Sticky until next(). */
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)"x", 1, &used), GP_HTTP_ETOO_LARGE);
    gp_http_req_next(p);
    const char ok[] = "POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)ok, sizeof ok - 1, &used), GP_HTTP_MORE);
    gp_http_req_free(p);
}

Test(http_req, chunked_body_over_limit) {
    gp_http_req *p = gp_http_req_new(4);
    const char s[] =
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n";
    size_t used;
    cr_assert_eq(feed_steps(p, s, sizeof s - 1, 1, &used), GP_HTTP_ETOO_LARGE);
    gp_http_req_free(p);
}

Test(http_req, too_many_headers) {
    char s[8192];
    int n = snprintf(s, sizeof s, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= GP_HTTP_MAX_HEADERS; i++)
        n += snprintf(s + n, sizeof s - (size_t)n, "X-H%d: v\r\n", i);
    n += snprintf(s + n, sizeof s - (size_t)n, "\r\n");
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)s, (size_t)n, &used), GP_HTTP_EHEADERS);
    gp_http_req_free(p);
}

Test(http_req, header_bytes_overflow) {
    size_t n = 200 * 1024;
    char *s = malloc(n);
    memset(s, 'a', n);
    memcpy(s, "GET / HTTP/1.1\r\nX-Big: ", 23);
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    int rc = feed_steps(p, s, n, 4096, &used);
    cr_assert_eq(rc, GP_HTTP_EHEADERS, "rc %d", rc);
    gp_http_req_free(p);
    free(s);
}

Test(http_req, malformed_and_upgrade_refused) {
    const char *bad[] = {"NOT HTTP\r\n\r\n", "GET / HTTP/9.x\r\n\r\n", "GET\r\n\r\n",
                         "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                         "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: "
                         "Upgrade\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gp_http_req *p = gp_http_req_new(0);
        size_t used;
        int rc = gp_http_req_feed(p, (const uint8_t *)bad[i], strlen(bad[i]), &used);
        /* An upgrade request parses (it is HTTP) but must not be kept alive. */
        if (rc == GP_HTTP_DONE)
            cr_assert_not(gp_http_req_get(p)->keep_alive, "case %zu", i);
        else
            cr_assert_eq(rc, GP_HTTP_EBAD, "case %zu: rc %d", i, rc);
        gp_http_req_free(p);
    }
}

Test(http_req, absolute_form_target) {
    const char s[] = "GET http://example/metrics?a=b HTTP/1.1\r\n\r\n";
    gp_http_req *p = gp_http_req_new(0);
    size_t used;
    cr_assert_eq(gp_http_req_feed(p, (const uint8_t *)s, sizeof s - 1, &used), GP_HTTP_DONE);
    cr_assert_str_eq(gp_http_req_get(p)->path, "/metrics");
    cr_assert_str_eq(gp_http_req_get(p)->query, "a=b");
    gp_http_req_free(p);
}

/* DNS rebinding: only IP literals, localhost and configured names pass. */
Test(http_req, host_allowed) {
    const char *names = "dash.example, prom.example:9090 ,x";
    const char *ok[] = {"",
                        "127.0.0.1",
                        "127.0.0.1:8080",
                        "10.0.0.7:9090",
                        "[::1]",
                        "[::1]:9090",
                        "[fe80::1]",
                        "localhost",
                        "LOCALHOST",
                        "localhost:80",
                        "dash.example",
                        "Dash.Example:1",
                        "prom.example",
                        "x",
                        "x:1"};
    const char *bad[] = {"evil.example",
                         "127.0.0.1.evil.example",
                         "localhost.evil",
                         "dash.example.evil",
                         "[::1",
                         "[::1]x",
                         "[not-ip]",
                         ":80",
                         "prom.example:90x",
                         "xx",
                         "1.2.3.4.5"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_assert(gp_http_host_allowed(ok[i], names), "refused %s", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(gp_http_host_allowed(bad[i], names), "allowed %s", bad[i]);
    cr_assert_not(gp_http_host_allowed("dash.example", NULL));
    cr_assert(gp_http_host_allowed("localhost", NULL));
}
