/* fuzz_admin_http.c — libFuzzer target for the admin port's request parsing (proto/http_req.c
 * over http-parser): arbitrary bytes are fed as one connection's input, in pieces whose
 * sizes come from the first byte, request after request as the server does (pipelining).
 * Whatever completes must honour the bounds: header count, body size, NUL-terminated strings
 * and consumption that never runs past the input. Each complete request's Host goes through
 * the Host check (gp_http_host_allowed), which must not read past it. */
#include <stdint.h>
#include <string.h>

#include "http_req.h"

#define MAX_BODY 4096 /* small, so that the fuzzer reaches the limit */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    data++, size--;
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
