/* httpd_tool.c — a tiny HTTP/1.1 upstream for the benchmarks (tests/bench/README.md): one
 * libuv thread, keep-alive and pipelining, answers every request with 200 and N bytes of
 * fixed pseudo-random content (GET /bytes/<n>: n bytes). tests/upstream.py is far too slow to
 * stand behind a house that is being benchmarked; this one costs a few µs a request.
 * Test-only I/O.
 *
 *   httpd_tool --port P [--size N]     (port 0: a free one; both print the port once ready) */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define PATTERN_LEN (1u << 20)
#define MAX_HEAD (64u << 10)
#define MAX_SIZE (1ull << 30)

static uint8_t g_pattern[PATTERN_LEN];
static uint64_t g_size = 100;
static uv_loop_t *g_loop;

typedef struct conn {
    uv_tcp_t tcp;
    char *buf;
    size_t len, cap;
    uint64_t skip;   /* request body bytes still to drop */
    int close_after; /* close once the queued answers are written */
    int closing;
    unsigned writes; /* answers queued, not yet written */
} conn;

typedef struct wreq {
    uv_write_t req;
    conn *c;
    uv_buf_t small[4]; /* head + body slices for answers up to 3 MiB; larger use `many` */
    uv_buf_t *many;
    char head[256];
} wreq;

static void on_closed(uv_handle_t *h) {
    conn *c = h->data;
    free(c->buf);
    free(c);
}

static void conn_close(conn *c) {
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    conn *c = w->c;
    free(w->many);
    free(w);
    c->writes--;
    if (status < 0 || (c->close_after && c->writes == 0))
        conn_close(c);
}

static void write_raw(conn *c, const char *s) {
    wreq *w = calloc(1, sizeof *w);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    snprintf(w->head, sizeof w->head, "%s", s);
    w->small[0] = uv_buf_init(w->head, (unsigned)strlen(w->head));
    c->writes++;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, w->small, 1, on_written) != 0) {
        c->writes--;
        free(w);
        conn_close(c);
    }
}

static void answer(conn *c, int status, uint64_t n, int head_only) {
    wreq *w = calloc(1, sizeof *w);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : "Not Implemented";
    int hl = snprintf(w->head, sizeof w->head,
                      "HTTP/1.1 %d %s\r\ncontent-type: application/octet-stream\r\n"
                      "content-length: %" PRIu64 "\r\n%s\r\n",
                      status, reason, n, c->close_after ? "connection: close\r\n" : "");
    uint64_t nslices = head_only || !n ? 0 : (n + PATTERN_LEN - 1) / PATTERN_LEN;
    uv_buf_t *b = w->small;
    if (nslices + 1 > sizeof w->small / sizeof w->small[0]) {
        b = w->many = calloc((size_t)nslices + 1, sizeof *b);
        if (!b) {
            free(w);
            conn_close(c);
            return;
        }
    }
    b[0] = uv_buf_init(w->head, (unsigned)hl);
    uint64_t left = head_only ? 0 : n;
    for (uint64_t i = 0; i < nslices; i++) {
        unsigned k = left > PATTERN_LEN ? PATTERN_LEN : (unsigned)left;
        b[i + 1] = uv_buf_init((char *)g_pattern, k);
        left -= k;
    }
    c->writes++;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, b, (unsigned)nslices + 1, on_written) != 0) {
        c->writes--;
        free(w->many);
        free(w);
        conn_close(c);
    }
}

/* Value of header `name` in the head [p, end) (lines after the request line), or NULL;
 * *vlen gets its length (surrounding blanks trimmed). */
static const char *header(const char *p, const char *end, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* Handles every complete request in c->buf. */
static void process(conn *c) {
    size_t off = 0;
    while (!c->closing && !c->close_after) {
        if (c->skip) {
            size_t k = c->len - off < c->skip ? c->len - off : (size_t)c->skip;
            off += k;
            c->skip -= k;
            if (c->skip)
                break;
        }
        char *s = c->buf + off;
        size_t avail = c->len - off;
        char *eoh = avail >= 4 ? memmem(s, avail, "\r\n\r\n", 4) : NULL;
        if (!eoh) {
            if (avail > MAX_HEAD)
                conn_close(c);
            break;
        }
        char *eol = memchr(s, '\n', (size_t)(eoh - s) + 2);
        const char *sp1 = memchr(s, ' ', (size_t)(eol - s));
        const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
        size_t hlen = (size_t)(eoh + 4 - s);
        if (!sp1 || !sp2) {
            c->close_after = 1;
            answer(c, 400, 0, 0);
            break;
        }
        int head_only = sp1 - s == 4 && memcmp(s, "HEAD", 4) == 0;
        int http10 = memmem(sp2, (size_t)(eol - sp2), "HTTP/1.0", 8) != NULL;
        size_t vl;
        const char *v = header(eol + 1, eoh + 2, "connection", &vl);
        if (http10 ? !(v && vl == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                   : (v && vl == 5 && strncasecmp(v, "close", 5) == 0))
            c->close_after = 1;
        if (header(eol + 1, eoh + 2, "transfer-encoding", &vl)) {
            c->close_after = 1;
            answer(c, 501, 0, 0);
            break;
        }
        uint64_t clen = 0;
        if ((v = header(eol + 1, eoh + 2, "content-length", &vl)))
            clen = strtoull(v, NULL, 10);
        v = header(eol + 1, eoh + 2, "expect", &vl);
        if (v && vl == 12 && strncasecmp(v, "100-continue", 12) == 0 && clen && avail - hlen < clen)
            write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n");
        uint64_t n = g_size;
        const char *path = sp1 + 1;
        if ((size_t)(sp2 - path) > 7 && memcmp(path, "/bytes/", 7) == 0) {
            n = strtoull(path + 7, NULL, 10);
            if (n > MAX_SIZE)
                n = MAX_SIZE;
        }
        off += hlen;
        c->skip = clen;
        answer(c, 200, n, head_only);
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *out) {
    conn *c = h->data;
    if (c->cap - c->len < 16384) {
        size_t cap = c->cap ? c->cap * 2 : 32768;
        char *b = realloc(c->buf, cap);
        if (!b) {
            *out = uv_buf_init(NULL, 0);
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    (void)want;
    *out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    process(c);
}

static void on_conn(uv_stream_t *srv, int status) {
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(g_loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *s, int sig) {
    (void)s, (void)sig;
    exit(0);
}

int main(int argc, char **argv) {
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            g_size = strtoull(argv[++i], NULL, 10);
        else
            port = -2;
    }
    if (port < 0 || port > 65535 || g_size > MAX_SIZE) {
        fprintf(stderr, "usage: httpd_tool --port P [--size N]\n");
        return 2;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        g_pattern[i] = (uint8_t)(x >> 32);
    }
    g_loop = uv_default_loop();
    uv_tcp_t srv;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(g_loop, &srv);
    int rc = uv_tcp_bind(&srv, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv, 1024, on_conn);
    if (rc != 0) {
        fprintf(stderr, "httpd_tool: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_in got;
    int gl = sizeof got;
    uv_tcp_getsockname(&srv, (struct sockaddr *)&got, &gl);
    uv_signal_t s1, s2;
    uv_signal_init(g_loop, &s1);
    uv_signal_init(g_loop, &s2);
    uv_signal_start(&s1, on_signal, SIGTERM);
    uv_signal_start(&s2, on_signal, SIGINT);
    printf("httpd_tool listening port=%d size=%" PRIu64 "\n", ntohs(got.sin_port), g_size);
    fflush(stdout);
    return uv_run(g_loop, UV_RUN_DEFAULT);
}
