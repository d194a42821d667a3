/* admin_http.c — the admin port's HTTP/1.1 server on a libuv loop (see admin_http.h). I/O
 * side: TCP, timers and writes; requests come out of http_req.c.
 *
 * One request at a time per connection: while a handler has not answered, the connection
 * stops reading, and bytes already read that belong to the next request (pipelining) wait
 * in a copy. So a connection holds at most one request and one read buffer of input, and a
 * slow or hostile client costs a bounded amount of memory: max_conns of those. Timers: a new
 * connection must deliver a whole request within request_ms of its accept; a keep-alive one
 * without a request closes after idle_ms, and once a request starts it must be whole within
 * request_ms (a slow drip of bytes does not keep it alive).
 *
 * Slowloris: a client may hold at most max_per_addr connections and all clients max_conns.
 * A new connection past a cap closes the OLDEST connection (of that address, or of all) that
 * has no request being answered, so held-open half requests cannot lock out /metrics,
 * /readyz or the dashboard; only when every connection is busy is the newcomer refused.
 *
 * DNS rebinding: a page of some web site whose name later resolves to this address would be
 * same-origin with the admin port. Such a request names that site in Host, so requests are
 * answered only for IP literals, localhost and the names configured (421 otherwise).
 *
 * A request refused before it was read whole (413, 400) is answered and the connection then
 * lingers: its write side is shut and what the client still sends is read and dropped for a
 * while. Closing at once would reset the connection while the client is still sending its
 * body, and a reset can discard the answer before the client reads it. */
#include "admin_http.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32
#define READ_BUF 16384
#define LINGER_MS 2000 /* reading what a refused client still sends, then close */
#define LINGER_BYTES (4u << 20)

typedef struct route {
    const char *path;
    size_t len;
    int prefix;
    gp_admin_fn fn;
    void *ud;
} route;

typedef struct conn conn;

struct gp_admin {
    uv_loop_t *loop;
    gp_admin_cfg cfg;
    char bind[64];
    char hosts[512];
    uv_tcp_t listener;
    int listener_open, closing;
    route routes[MAX_ROUTES];
    size_t nroutes;
    conn *conns;
    unsigned nconns;
    unsigned handles; /* handles not yet closed by libuv: the listener's and conns' */
};

struct conn {
    conn *prev, *next;
    gp_admin *a;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int nclosed; /* of tcp and timer */
    int closing, close_after, in_process;
    int linger, lingering; /* refused mid-request: drain before closing / draining now */
    size_t lingered;
    uv_shutdown_t shut;
    unsigned writes; /* uv_write requests in flight */
    gp_http_req *parser;
    char addr[80];
    char ip[INET6_ADDRSTRLEN];
    uint64_t since;  /* accepted, loop ms: the oldest is shed first */
    int deadline_on; /* the request deadline runs (from accept, or the request's first byte) */
    uint8_t *pend;   /* input read past a request whose answer is pending */
    size_t pend_len;
    gp_admin_call *call;
};

struct gp_admin_call {
    conn *c; /* NULL once the connection is gone */
    int keep_alive, head;
};

typedef struct wreq {
    uv_write_t w;
    conn *c;
    size_t len;
    char buf[];
} wreq;

static void logf_(gp_admin *a, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void logf_(gp_admin *a, int level, const char *event, const char *fmt, ...) {
    if (!a->cfg.log)
        return;
    char kv[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kv, sizeof kv, fmt, ap);
    va_end(ap);
    a->cfg.log(level, event, kv);
}

const char *gp_admin_status_text(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* --- connections ------------------------------------------------------------------------ */

static void maybe_free_admin(gp_admin *a) {
    if (a->closing && a->handles == 0)
        free(a);
}

static void on_conn_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    if (++c->nclosed < 2)
        return;
    gp_admin *a = c->a;
    gp_http_req_free(c->parser);
    free(c->pend);
    free(c);
    a->handles--;
    maybe_free_admin(a);
}

static void conn_close(conn *c) {
    if (c->closing)
        return;
    c->closing = 1;
    gp_admin *a = c->a;
    if (c->call) {
        c->call->c = NULL; /* its answer, whenever it comes, is dropped */
        c->call = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t) {
    conn *c = t->data;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    if (c->call)
        return; /* a handler is working on it: its answer re-arms the timer */
    logf_(c->a, 3, "admin_http_timeout", "addr=%s partial=%d", c->addr,
          gp_http_req_started(c->parser));
    conn_close(c);
}

static void arm_idle(conn *c) {
    c->deadline_on = 0;
    uv_timer_start(&c->timer, on_timer, c->a->cfg.idle_ms, 0);
}

static void arm_request(conn *c) {
    c->deadline_on = 1;
    uv_timer_start(&c->timer, on_timer, c->a->cfg.request_ms, 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req, (void)status; /* the linger timer or the client's EOF ends it */
}

static void start_linger(conn *c) {
    c->lingering = 1;
    uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_written(uv_write_t *w, int status) {
    wreq *r = (wreq *)w;
    conn *c = r->c;
    free(r);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0)
        conn_close(c);
    else if (c->close_after && c->writes == 0 && !c->lingering)
        c->linger ? start_linger(c) : conn_close(c);
}

static void send_raw(conn *c, char *head, size_t hlen, const void *body, size_t blen) {
    wreq *r = malloc(sizeof *r + hlen + blen);
    if (!r) {
        conn_close(c);
        return;
    }
    memcpy(r->buf, head, hlen);
    if (blen)
        memcpy(r->buf + hlen, body, blen);
    r->c = c;
    r->len = hlen + blen;
    uv_buf_t b = uv_buf_init(r->buf, (unsigned)r->len);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(r);
        conn_close(c);
        return;
    }
    c->writes++;
}

static void respond(conn *c, int status, const char *ctype, const char *extra, const void *body,
                    size_t len, int keep_alive, int head) {
    char h[2048];
    /* Nothing here is meant to be framed or to run as a page, unless the handler (the
     * dashboard) sends its own policy. */
    int own_csp = extra && strstr(extra, "Content-Security-Policy:");
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n%s"
                     "Connection: %s\r\n%s\r\n",
                     status, gp_admin_status_text(status), ctype ? ctype : "text/plain", len,
                     own_csp ? ""
                             : "Content-Security-Policy: default-src 'none'; "
                               "frame-ancestors 'none'\r\n",
                     keep_alive ? "keep-alive" : "close", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof h) {
        conn_close(c);
        return;
    }
    if (!keep_alive)
        c->close_after = 1;
    send_raw(c, h, (size_t)n, body, head ? 0 : len);
}

static char *error_json(const char *code, const char *message, size_t *len) {
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", message ? message : "");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    *len = s ? strlen(s) : 0;
    return s;
}

/* A request the server itself refuses (malformed, too large): answered, then closed. */
static void refuse(conn *c, int status, const char *code, const char *message) {
    size_t len;
    char *body = error_json(code, message, &len);
    logf_(c->a, 3, "admin_http_refused", "addr=%s status=%d error=%s", c->addr, status, code);
    c->linger = 1;
    respond(c, status, "application/json", NULL, body ? body : "", len, 0, 0);
    free(body);
}

static const route *match(const gp_admin *a, const char *path) {
    const route *best = NULL;
    size_t plen = strlen(path);
    for (size_t i = 0; i < a->nroutes; i++) {
        const route *r = &a->routes[i];
        int ok = r->prefix ? plen >= r->len && memcmp(path, r->path, r->len) == 0
                           : plen == r->len && memcmp(path, r->path, r->len) == 0;
        if (ok && (!best || r->len > best->len || (r->len == best->len && !r->prefix)))
            best = r;
    }
    return best;
}

static void dispatch(conn *c, const gp_http_request *req) {
    gp_admin_call *call = calloc(1, sizeof *call);
    if (!call) {
        refuse(c, 503, "unavailable", "out of memory");
        return;
    }
    call->c = c;
    call->keep_alive = req->keep_alive;
    call->head = strcmp(req->method, "HEAD") == 0;
    c->call = call;
    uv_timer_stop(&c->timer);
    const char *host = gp_http_header_get(req, "host");
    if (host && !gp_http_host_allowed(host, c->a->hosts)) {
        char shown[65];
        size_t k = 0;
        for (const char *p = host; *p && k < sizeof shown - 1; p++)
            shown[k++] = (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : '?';
        shown[k] = '\0';
        logf_(c->a, 1, "admin_http_misdirected", "addr=%s host=\"%s\"", c->addr, shown);
        gp_admin_reply_error(call, 421, "misdirected_request",
                             "this admin port does not answer for that Host name; add it with "
                             "--admin-host");
        return;
    }
    const route *r = match(c->a, req->path);
    if (!r) {
        gp_admin_reply_error(call, 404, "not_found", "no such path");
        return;
    }
    r->fn(call, req, r->ud);
}

/* Parses and answers what data holds, request after request, until a handler answers
 * later (the rest is kept in c->pend) or the data is used up. */
static void process(conn *c, const uint8_t *data, size_t len) {
    c->in_process = 1;
    while (!c->closing && !c->close_after && !c->call && len > 0) {
        if (!gp_http_req_started(c->parser) && !c->deadline_on)
            arm_request(c);
        size_t used = 0;
        int rc = gp_http_req_feed(c->parser, data, len, &used);
        data += used;
        len -= used;
        if (rc == GP_HTTP_MORE)
            break;
        if (rc == GP_HTTP_DONE) {
            dispatch(c, gp_http_req_get(c->parser));
            continue; /* answered already: next request; else the loop ends */
        }
        switch (rc) {
        case GP_HTTP_ETOO_LARGE:
            refuse(c, 413, "too_large", "request body over the admin port's limit");
            break;
        case GP_HTTP_EHEADERS:
            refuse(c, 431, "bad_request", "too many or too large headers");
            break;
        case GP_HTTP_ENOMEM:
            refuse(c, 503, "unavailable", "out of memory");
            break;
        default:
            refuse(c, 400, "bad_request", "malformed HTTP request");
        }
    }
    c->in_process = 0;
    if (c->closing || c->close_after || !c->call || len == 0)
        return;
    /* A handler answers later: keep the rest of the input and stop reading meanwhile. */
    uint8_t *p = malloc(len);
    if (!p) {
        conn_close(c);
        return;
    }
    memcpy(p, data, len);
    free(c->pend);
    c->pend = p;
    c->pend_len = len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h, (void)suggested;
    b->base = malloc(READ_BUF);
    b->len = b->base ? READ_BUF : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    conn *c = s->data;
    if (c->lingering) {
        free(b->base);
        if (n < 0 || (c->lingered += (size_t)n) > LINGER_BYTES)
            conn_close(c);
        return;
    }
    if (n < 0) {
        free(b->base);
        conn_close(c);
        return;
    }
    if (n > 0 && !c->closing)
        process(c, (const uint8_t *)b->base, (size_t)n);
    free(b->base);
    if (!c->closing && (c->call || c->close_after))
        uv_read_stop((uv_stream_t *)&c->tcp);
}

/* A late answer came: go on with what was read meanwhile, then read again. */
static void resume(conn *c) {
    if (c->pend) {
        uint8_t *p = c->pend;
        size_t n = c->pend_len;
        c->pend = NULL;
        c->pend_len = 0;
        process(c, p, n);
        free(p);
    }
    if (!c->closing && !c->call && !c->close_after)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_reject_closed(uv_handle_t *h) {
    free(h);
}

static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                           "Content-Length: 61\r\nConnection: close\r\n\r\n"
                           "{\"error\":\"unavailable\",\"message\":\"too many admin connections\"}";

/* No request is being answered on it: closing it costs its client nothing but a retry. */
static int sheddable(const conn *c) {
    return !c->closing && !c->call && !c->close_after && !c->lingering && c->writes == 0;
}

/* The oldest sheddable connection (of address ip, or of all when ip is NULL), not `except`. */
static conn *oldest(gp_admin *a, const char *ip, const conn *except, unsigned *count) {
    conn *best = NULL;
    unsigned n = 0;
    for (conn *c = a->conns; c; c = c->next) {
        if (c == except || c->closing || (ip && strcmp(c->ip, ip) != 0))
            continue;
        n++;
        if (sheddable(c) && (!best || c->since <= best->since))
            best = c;
    }
    if (count)
        *count = n;
    return best;
}

/* Makes room for c under the caps: 0, or -1 when every connection in the way is busy. */
static int admit(gp_admin *a, conn *c) {
    unsigned same = 0;
    conn *v = oldest(a, c->ip, c, &same);
    if (same >= a->cfg.max_per_addr) {
        if (!v)
            return -1;
        logf_(a, 3, "admin_http_shed", "addr=%s reason=per_address conns=%u", v->addr, same);
        conn_close(v);
    }
    if (a->nconns - 1 >= a->cfg.max_conns) {
        v = oldest(a, NULL, c, NULL);
        if (!v)
            return -1;
        logf_(a, 3, "admin_http_shed", "addr=%s reason=total conns=%u", v->addr, a->nconns - 1);
        conn_close(v);
    }
    return 0;
}

static void on_connection(uv_stream_t *srv, int status) {
    gp_admin *a = srv->data;
    if (status < 0 || a->closing)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c || !(c->parser = gp_http_req_new(a->cfg.max_body))) {
        free(c);
        /* Take it off the queue, or libuv calls again at once. */
        uv_tcp_t *t = malloc(sizeof *t);
        if (t && uv_tcp_init(a->loop, t) == 0) {
            (void)uv_accept(srv, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, on_reject_closed);
        } else {
            free(t);
        }
        return;
    }
    c->a = a;
    uv_tcp_init(a->loop, &c->tcp);
    uv_timer_init(a->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->since = uv_now(a->loop);
    a->handles++;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->nconns++;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int slen = sizeof ss;
    char ip[INET6_ADDRSTRLEN + 8] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    snprintf(c->addr, sizeof c->addr, "%s:%d", ip, port);
    if (admit(a, c) != 0) {
        uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        logf_(a, 1, "admin_http_busy", "addr=%s conns=%u max=%u per_addr_max=%u", c->addr,
              a->nconns - 1, a->cfg.max_conns, a->cfg.max_per_addr);
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    arm_request(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* --- public ----------------------------------------------------------------------------- */

gp_admin *gp_admin_new(uv_loop_t *loop, const gp_admin_cfg *cfg) {
    gp_admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = loop;
    a->cfg = *cfg;
    snprintf(a->bind, sizeof a->bind, "%s", cfg->bind && *cfg->bind ? cfg->bind : "127.0.0.1");
    a->cfg.bind = a->bind;
    snprintf(a->hosts, sizeof a->hosts, "%s", cfg->hosts ? cfg->hosts : "");
    a->cfg.hosts = a->hosts;
    if (!a->cfg.max_conns)
        a->cfg.max_conns = 64;
    if (!a->cfg.max_per_addr)
        a->cfg.max_per_addr = 16;
    if (!a->cfg.idle_ms)
        a->cfg.idle_ms = 15000;
    if (!a->cfg.request_ms)
        a->cfg.request_ms = 5000;
    if (!a->cfg.max_body)
        a->cfg.max_body = GP_HTTP_MAX_BODY;
    return a;
}

int gp_admin_route(gp_admin *a, const char *path, int prefix, gp_admin_fn fn, void *ud) {
    if (a->nroutes >= MAX_ROUTES)
        return -1;
    a->routes[a->nroutes++] = (route){path, strlen(path), prefix, fn, ud};
    return 0;
}

static void on_listener_closed(uv_handle_t *h) {
    gp_admin *a = h->data;
    a->handles--;
    maybe_free_admin(a);
}

int gp_admin_listen(gp_admin *a) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(a->bind, a->cfg.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(a->bind, a->cfg.port, (struct sockaddr_in6 *)&ss) != 0) {
        logf_(a, 0, "listen_failed", "transport=admin bind=%s err=bad_address", a->bind);
        return UV_EINVAL;
    }
    uv_tcp_init(a->loop, &a->listener);
    a->listener.data = a;
    a->listener_open = 1;
    a->handles++;
    int rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, 128, on_connection);
    if (rc != 0) {
        logf_(a, 0, "listen_failed", "transport=admin bind=%s port=%d err=%s", a->bind, a->cfg.port,
              uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage got;
    int glen = sizeof got;
    uv_tcp_getsockname(&a->listener, (struct sockaddr *)&got, &glen);
    int port = got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&got)->sin_port);
    return port;
}

void gp_admin_close(gp_admin *a) {
    if (!a || a->closing)
        return;
    a->closing = 1;
    while (a->conns)
        conn_close(a->conns);
    if (a->listener_open) {
        a->listener_open = 0;
        uv_close((uv_handle_t *)&a->listener, on_listener_closed);
    }
    maybe_free_admin(a);
}

unsigned gp_admin_conns(const gp_admin *a) {
    return a ? a->nconns : 0;
}

const char *gp_admin_call_addr(const gp_admin_call *call) {
    return call->c ? call->c->addr : "";
}

void gp_admin_reply(gp_admin_call *call, int status, const char *content_type,
                    const char *extra_headers, const void *body, size_t len) {
    conn *c = call->c;
    int keep_alive = call->keep_alive, head = call->head;
    free(call);
    if (!c || c->closing)
        return;
    c->call = NULL;
    respond(c, status, content_type, extra_headers, body, len, keep_alive, head);
    gp_http_req_next(c->parser);
    if (c->closing || c->close_after)
        return;
    arm_idle(c);
    if (!c->in_process)
        resume(c); /* answered later: pick up where reading stopped */
}

void gp_admin_reply_error(gp_admin_call *call, int status, const char *code, const char *message) {
    size_t len;
    char *body = error_json(code, message, &len);
    gp_admin_reply(call, status, "application/json", NULL, body ? body : "", len);
    free(body);
}

/* --- the probes both daemons serve ---------------------------------------------------------- */

int gp_admin_get_only(gp_admin_call *c, const gp_http_request *req) {
    if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
        return 1;
    static const char body[] = "{\"error\":\"method_not_allowed\",\"message\":\"use GET\"}";
    gp_admin_reply(c, 405, "application/json", "Allow: GET, HEAD\r\n", body, sizeof body - 1);
    return 0;
}

static void on_healthz(gp_admin_call *c, const gp_http_request *req, void *ud) {
    (void)ud;
    if (gp_admin_get_only(c, req))
        gp_admin_reply(c, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
}

static void on_readyz(gp_admin_call *c, const gp_http_request *req, void *ud) {
    const gp_admin_probes *p = ud;
    if (!gp_admin_get_only(c, req))
        return;
    const char *why = "not_ready";
    if (p->ready(&why)) {
        gp_admin_reply(c, 200, "text/plain; charset=utf-8", NULL, "ready\n", 6);
        return;
    }
    char body[128];
    int n = snprintf(body, sizeof body, "{\"ready\":false,\"reason\":\"%s\"}", why);
    gp_admin_reply(c, 503, "application/json", NULL, body, (size_t)n);
}

static void on_metrics(gp_admin_call *c, const gp_http_request *req, void *ud) {
    const gp_admin_probes *p = ud;
    if (!gp_admin_get_only(c, req))
        return;
    size_t len;
    char *text = p->metrics(&len);
    if (!text) {
        gp_admin_reply_error(c, 503, "unavailable", "out of memory");
        return;
    }
    gp_admin_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
}

int gp_admin_route_probes(gp_admin *a, const gp_admin_probes *p) {
    void *ud = (void *)p;
    return gp_admin_route(a, "/healthz", 0, on_healthz, NULL) != 0 ||
                   gp_admin_route(a, "/readyz", 0, on_readyz, ud) != 0 ||
                   gp_admin_route(a, "/metrics", 0, on_metrics, ud) != 0
               ? -1
               : 0;
}
