/* admin_http.c — the admin port's HTTP/1.1 server without its I/O (see admin_http.h). Pure:
 * the glue (proto/adapters/uv_admin.c, both daemons') reads and writes the sockets and runs
 * the timers this file asks for; requests come out of http_req.c.
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

#include "list.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32
#define LINGER_MS 2000 /* reading what a refused client still sends, then close */
#define LINGER_BYTES (4u << 20)

typedef struct route {
    const char *path;
    size_t len;
    int prefix;
    gp_admin_fn fn;
    void *ud;
} route;

typedef struct gp_admin_conn conn;

struct gp_admin {
    gp_admin_io io;
    gp_admin_cfg cfg;
    char bind[64];
    char hosts[512];
    int closing;
    route routes[MAX_ROUTES];
    size_t nroutes;
    conn *conns, *conns_tail;
    unsigned nconns;
    unsigned handles; /* references: the glue's (its listener) and each unreleased conn's */
};

struct gp_admin_conn {
    conn *prev, *next;
    gp_admin *a;
    void *io; /* the glue's handle */
    int closing, close_after, in_process;
    int linger, lingering; /* refused mid-request: drain before closing / draining now */
    size_t lingered;
    unsigned writes; /* writes in flight */
    /* Their lengths, oldest first (a ring: they complete in order), and their sum. */
    size_t *wlen, queued;
    unsigned wcap, whead;
    /* gp_admin_call_on_drain's: called once queued <= drain_below, or when released. */
    void (*drain_fn)(void *ud);
    void *drain_ud;
    size_t drain_below;
    gp_http_req *parser;
    char addr[80];
    char ip[48];     /* an IPv6 address in text (INET6_ADDRSTRLEN) */
    uint64_t since;  /* accepted, loop ms: the oldest is shed first */
    int deadline_on; /* the request deadline runs (from accept, or the request's first byte) */
    int continued;   /* 100 Continue sent for the request being read */
    uint8_t *pend;   /* input read past a request whose answer is pending */
    size_t pend_len;
    gp_admin_call *call;
    /* Taken over (gp_admin_call_takeover): bytes go to raw.data; raw_eof once input ended. */
    int raw, raw_eof, raw_reading, raw_shut;
    gp_admin_raw_cb rawcb;
};

struct gp_admin_call {
    conn *c; /* NULL once the connection is gone */
    int keep_alive, head;
    int chunked; /* a streamed answer in chunked transfer coding (gp_admin_stream_start) */
};

#define logf_ gp_admin_logf
void gp_admin_logf(const gp_admin *a, int level, const char *event, const char *fmt, ...) {
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
    case 308:
        return "Permanent Redirect";
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
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

/* --- connections ------------------------------------------------------------------------ */

static void maybe_free_admin(gp_admin *a) {
    if (!a->closing || a->handles != 0)
        return;
    if (a->io.done)
        a->io.done(a->io.ud);
    free(a);
}

/* Calls the drain callback once (it may close c, not free it). */
static void drained(conn *c) {
    void (*fn)(void *) = c->drain_fn;
    c->drain_fn = NULL;
    if (fn)
        fn(c->drain_ud);
}

void gp_admin_released(conn *c) {
    gp_admin *a = c->a;
    drained(c); /* a waiting writer learns the connection is gone */
    if (c->raw && c->rawcb.closed)
        c->rawcb.closed(c->rawcb.ud);
    free(c->wlen);
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
    GP_LIST_UNLINK(a->conns, a->conns_tail, c, prev, next);
    a->nconns--;
    a->io.timer_stop(c->io);
    a->io.close(c->io);
}

void gp_admin_timeout(conn *c) {
    if (c->closing || c->raw)
        return; /* a taken-over connection has no timer of the server's */
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
    c->a->io.timer(c->io, c->a->cfg.idle_ms);
}

static void arm_request(conn *c) {
    c->deadline_on = 1;
    c->a->io.timer(c->io, c->a->cfg.request_ms);
}

static void start_linger(conn *c) {
    c->lingering = 1;
    c->a->io.timer(c->io, LINGER_MS); /* it, or the client's EOF, ends the linger */
    if (c->a->io.shutdown(c->io) != 0 || c->a->io.reading(c->io, 1) != 0)
        conn_close(c);
}

/* Counts a write of len bytes in flight: 0, or -1 (out of memory). */
static int wlen_push(conn *c, size_t len) {
    if (c->writes == c->wcap) {
        unsigned cap = c->wcap ? c->wcap * 2 : 8;
        size_t *v = malloc(cap * sizeof *v);
        if (!v)
            return -1;
        for (unsigned i = 0; i < c->writes; i++)
            v[i] = c->wlen[(c->whead + i) % c->wcap];
        free(c->wlen);
        c->wlen = v, c->wcap = cap, c->whead = 0;
    }
    c->wlen[(c->whead + c->writes) % c->wcap] = len;
    c->writes++;
    c->queued += len;
    return 0;
}

void gp_admin_written(conn *c, int status) {
    if (c->writes > 0) {
        c->queued -= c->wlen[c->whead];
        c->whead = (c->whead + 1) % c->wcap;
        c->writes--;
    }
    if (c->closing)
        return;
    if (status < 0)
        conn_close(c);
    else if (c->close_after && c->writes == 0 && !c->lingering)
        c->linger ? start_linger(c) : conn_close(c);
    else if (c->drain_fn && c->queued <= c->drain_below)
        drained(c);
}

size_t gp_admin_call_queued(const gp_admin_call *call) {
    return call->c ? call->c->queued : 0;
}

int gp_admin_call_on_drain(gp_admin_call *call, size_t below, void (*fn)(void *ud), void *ud) {
    conn *c = call->c;
    if (!c || c->closing)
        return -1;
    c->drain_fn = fn, c->drain_ud = ud, c->drain_below = below;
    return 0;
}

static void send_raw(conn *c, char *head, size_t hlen, const void *body, size_t blen) {
    char *buf = malloc(hlen + blen + 1);
    if (!buf || wlen_push(c, hlen + blen) != 0) {
        free(buf);
        conn_close(c);
        return;
    }
    memcpy(buf, head, hlen);
    if (blen)
        memcpy(buf + hlen, body, blen);
    int rc = c->a->io.write(c->io, buf, hlen + blen);
    free(buf);
    if (rc != 0) { /* not in flight after all: the newest length goes */
        c->writes--;
        c->queued -= hlen + blen;
        conn_close(c);
    }
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

/* Well-formed UTF-8 (what a JSON string may hold). */
static int utf8_ok(const unsigned char *s) {
    while (*s) {
        unsigned c = *s, n = c < 0x80             ? 0
                             : (c & 0xe0) == 0xc0 ? 1
                             : (c & 0xf0) == 0xe0 ? 2
                             : (c & 0xf8) == 0xf0 ? 3
                                                  : 9;
        if (n == 9 || (n == 1 && c < 0xc2) || (n == 3 && c > 0xf4))
            return 0;
        unsigned cp = n ? c & (0x3f >> n) : c;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        s += n + 1;
    }
    return 1;
}

/* s as a JSON string, escaped as jansson writes it (the answers stay byte for byte). */
static size_t json_str(char *out, const char *s) {
    size_t k = 0;
    out[k++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = *p == '"'    ? "\\\""
                        : *p == '\\' ? "\\\\"
                        : *p == '\b' ? "\\b"
                        : *p == '\f' ? "\\f"
                        : *p == '\n' ? "\\n"
                        : *p == '\r' ? "\\r"
                        : *p == '\t' ? "\\t"
                                     : NULL;
        if (e) {
            memcpy(out + k, e, 2);
            k += 2;
        } else if (*p < 0x20) {
            k += (size_t)sprintf(out + k, "\\u%04X", *p);
        } else {
            out[k++] = (char)*p;
        }
    }
    out[k++] = '"';
    return k;
}

char *gp_admin_error_json(const char *code, const char *message, size_t *len) {
    message = message ? message : "";
    *len = 0;
    if (!utf8_ok((const unsigned char *)code) || !utf8_ok((const unsigned char *)message))
        return NULL;
    char *s = malloc(32 + 6 * (strlen(code) + strlen(message)));
    if (!s)
        return NULL;
    size_t k = 0;
    memcpy(s + k, "{\"error\":", 9);
    k += 9;
    k += json_str(s + k, code);
    memcpy(s + k, ",\"message\":", 11);
    k += 11;
    k += json_str(s + k, message);
    s[k++] = '}';
    s[k] = '\0';
    *len = k;
    return s;
}

/* A request the server itself refuses (malformed, too large): answered, then closed. */
static void refuse(conn *c, int status, const char *code, const char *message) {
    size_t len;
    char *body = gp_admin_error_json(code, message, &len);
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
    c->a->io.timer_stop(c->io);
    const char *host = gp_http_header_get(req, "host");
    if (host && !c->a->cfg.any_host && !gp_http_host_allowed(host, c->a->hosts)) {
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
    while (!c->closing && !c->close_after && !c->call && !c->raw && len > 0) {
        if (!gp_http_req_started(c->parser) && !c->deadline_on)
            arm_request(c);
        size_t used = 0;
        int rc = gp_http_req_feed(c->parser, data, len, &used);
        data += used;
        len -= used;
        if (rc == GP_HTTP_MORE) {
            if (c->a->cfg.continue_100 && !c->continued &&
                gp_http_req_expects_continue(c->parser)) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->continued = 1;
                send_raw(c, (char *)cont, sizeof cont - 1, NULL, 0);
            }
            break;
        }
        c->continued = 0;
        if (rc == GP_HTTP_DONE) {
            dispatch(c, gp_http_req_get(c->parser));
            continue; /* answered already: next request; else the loop ends */
        }
        switch (rc) {
        case GP_HTTP_ETOO_LARGE:
            refuse(c, 413, "too_large", "request body over this port's limit");
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
    if (c->closing || c->close_after || (!c->call && !c->raw) || len == 0)
        return;
    if (c->raw && c->raw_reading) { /* taken over, and reading, from inside the handler */
        if (c->rawcb.data)
            c->rawcb.data(c->rawcb.ud, data, len);
        return;
    }
    /* A handler answers later (or took the connection over): keep the rest of the input
     * and stop reading meanwhile. */
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

void gp_admin_input(conn *c, const void *data, long n) {
    if (c->closing)
        return;
    if (c->lingering) {
        if (n < 0 || (c->lingered += (size_t)n) > LINGER_BYTES)
            conn_close(c);
        return;
    }
    if (c->raw) {
        if (c->raw_eof)
            return;
        if (n < 0) {
            c->raw_eof = 1;
            if (c->rawcb.eof)
                c->rawcb.eof(c->rawcb.ud);
        } else if (n > 0 && c->rawcb.data) {
            c->rawcb.data(c->rawcb.ud, data, (size_t)n);
        }
        return;
    }
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n > 0)
        process(c, data, (size_t)n);
    if (!c->closing && !c->raw && (c->call || c->close_after))
        c->a->io.reading(c->io, 0);
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
        c->a->io.reading(c->io, 1);
}

static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                           "Content-Length: 61\r\nConnection: close\r\n\r\n"
                           "{\"error\":\"unavailable\",\"message\":\"too many admin connections\"}";

/* No request is being answered on it: closing it costs its client nothing but a retry. */
static int sheddable(const conn *c) {
    return !c->closing && !c->call && !c->raw && !c->close_after && !c->lingering && c->writes == 0;
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

gp_admin_conn *gp_admin_accepted(gp_admin *a, void *io, const char *ip, int port) {
    if (a->closing)
        return NULL;
    conn *c = calloc(1, sizeof *c);
    if (!c || !(c->parser = gp_http_req_new(a->cfg.max_body))) {
        free(c);
        return NULL;
    }
    c->a = a;
    c->io = io;
    c->since = a->io.now(a->io.ud);
    a->handles++;
    GP_LIST_PREPEND(a->conns, a->conns_tail, c, prev, next); /* newest first */
    a->nconns++;
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    snprintf(c->addr, sizeof c->addr, "%s:%d", ip, port);
    if (admit(a, c) != 0) {
        a->io.try_write(io, busy, sizeof busy - 1);
        logf_(a, 1, "admin_http_busy", "addr=%s conns=%u max=%u per_addr_max=%u", c->addr,
              a->nconns - 1, a->cfg.max_conns, a->cfg.max_per_addr);
        conn_close(c);
        return c;
    }
    arm_request(c);
    a->io.reading(io, 1);
    return c;
}

/* --- public ----------------------------------------------------------------------------- */

gp_admin *gp_admin_core_new(const gp_admin_cfg *cfg, const gp_admin_io *io) {
    gp_admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->io = *io;
    a->handles = 1; /* the glue's */
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

const gp_admin_cfg *gp_admin_config(const gp_admin *a) {
    return &a->cfg;
}

void *gp_admin_io_ud(const gp_admin *a) {
    return a->io.ud;
}

int gp_admin_route(gp_admin *a, const char *path, int prefix, gp_admin_fn fn, void *ud) {
    if (a->nroutes >= MAX_ROUTES)
        return -1;
    a->routes[a->nroutes++] = (route){path, strlen(path), prefix, fn, ud};
    return 0;
}

int gp_admin_shutdown(gp_admin *a) {
    if (a->closing)
        return -1;
    a->closing = 1;
    while (a->conns)
        conn_close(a->conns);
    return 0;
}

void gp_admin_unref(gp_admin *a) {
    a->handles--;
    maybe_free_admin(a);
}

unsigned gp_admin_conns(const gp_admin *a) {
    return a ? a->nconns : 0;
}

const char *gp_admin_call_addr(const gp_admin_call *call) {
    return call->c ? call->c->addr : "";
}

/* The call is answered (its bytes queued): on to the next request of the connection. */
static void call_done(conn *c) {
    gp_http_req_next(c->parser);
    if (c->closing || c->close_after)
        return;
    arm_idle(c);
    if (!c->in_process)
        resume(c); /* answered later: pick up where reading stopped */
}

/* The handler is done with the call: it is freed (its framing stays in *was) and its
 * connection, returned, no longer points at it; NULL when the connection is gone or closing,
 * with nothing left to send. */
static conn *call_finish(gp_admin_call *call, gp_admin_call *was) {
    *was = *call;
    free(call);
    conn *c = was->c;
    if (!c || c->closing)
        return NULL;
    c->call = NULL;
    return c;
}

void gp_admin_reply(gp_admin_call *call, int status, const char *content_type,
                    const char *extra_headers, const void *body, size_t len) {
    gp_admin_call was;
    conn *c = call_finish(call, &was);
    if (!c)
        return;
    respond(c, status, content_type, extra_headers, body, len, was.keep_alive, was.head);
    call_done(c);
}

int gp_admin_call_gone(const gp_admin_call *call) {
    return !call->c || call->c->closing;
}

const char *gp_admin_call_ip(const gp_admin_call *call) {
    return call->c ? call->c->ip : "";
}

void gp_admin_stream_start(gp_admin_call *call, int status, const char *headers, long long len) {
    conn *c = call->c;
    if (!c || c->closing)
        return;
    call->chunked = len < 0 && !call->head;
    size_t cap = (headers ? strlen(headers) : 0) + 256;
    char *h = malloc(cap);
    if (!h) {
        conn_close(c);
        return;
    }
    char framing[64];
    if (len >= 0)
        snprintf(framing, sizeof framing, "Content-Length: %lld\r\n", len);
    else
        snprintf(framing, sizeof framing, "%s", call->head ? "" : "Transfer-Encoding: chunked\r\n");
    int n = snprintf(h, cap, "HTTP/1.1 %d %s\r\n%s%sConnection: %s\r\n\r\n", status,
                     gp_admin_status_text(status), headers ? headers : "", framing,
                     call->keep_alive ? "keep-alive" : "close");
    if (n > 0 && (size_t)n < cap)
        send_raw(c, h, (size_t)n, NULL, 0);
    else
        conn_close(c);
    free(h);
}

void gp_admin_stream_data(gp_admin_call *call, const void *p, size_t len) {
    conn *c = call->c;
    if (!c || c->closing || call->head || len == 0)
        return;
    if (!call->chunked) {
        char none = 0;
        send_raw(c, &none, 0, p, len);
        return;
    }
    char head[24];
    int n = snprintf(head, sizeof head, "%zx\r\n", len);
    char *buf = malloc((size_t)n + len + 2);
    if (!buf) {
        conn_close(c);
        return;
    }
    memcpy(buf, head, (size_t)n);
    memcpy(buf + n, p, len);
    memcpy(buf + (size_t)n + len, "\r\n", 2);
    send_raw(c, buf, (size_t)n + len + 2, NULL, 0);
    free(buf);
}

void gp_admin_stream_abort(gp_admin_call *call) {
    gp_admin_call was;
    conn *c = call_finish(call, &was);
    if (c)
        conn_close(c);
}

void gp_admin_stream_end(gp_admin_call *call) {
    gp_admin_call was;
    conn *c = call_finish(call, &was);
    if (!c)
        return;
    if (!was.keep_alive)
        c->close_after = 1;
    if (was.chunked) {
        char end[] = "0\r\n\r\n";
        send_raw(c, end, sizeof end - 1, NULL, 0);
    } else if (!was.keep_alive && c->writes == 0) {
        conn_close(c);
    }
    if (c->closing)
        return;
    call_done(c);
}

/* --- taken-over connections ---------------------------------------------------------- */

gp_admin_conn *gp_admin_call_takeover(gp_admin_call *call, const gp_admin_raw_cb *cb) {
    gp_admin_call was;
    conn *c = call_finish(call, &was);
    if (!c)
        return NULL;
    gp_http_req_next(c->parser); /* the request is over; the parser is not used again */
    c->raw = 1;
    c->rawcb = *cb;
    c->deadline_on = 0;
    c->a->io.timer_stop(c->io);
    c->a->io.reading(c->io, 0);
    return c;
}

int gp_admin_raw_write(conn *c, const void *p, size_t len) {
    if (!c->raw || c->closing || c->raw_shut)
        return -1;
    if (len == 0)
        return 0;
    char none = 0;
    send_raw(c, &none, 0, p, len);
    return c->closing ? -1 : 0;
}

size_t gp_admin_raw_queued(const conn *c) {
    return c->closing ? 0 : c->queued;
}

int gp_admin_raw_on_drain(conn *c, size_t below, void (*fn)(void *ud), void *ud) {
    if (!c->raw || c->closing)
        return -1;
    c->drain_fn = fn, c->drain_ud = ud, c->drain_below = below;
    return 0;
}

void gp_admin_raw_reading(conn *c, int on) {
    if (!c->raw || c->closing || c->raw_eof || c->raw_reading == on)
        return;
    c->raw_reading = on;
    if (on && c->pend) { /* what came after the request head, read already */
        uint8_t *p = c->pend;
        size_t n = c->pend_len;
        c->pend = NULL;
        c->pend_len = 0;
        if (c->rawcb.data)
            c->rawcb.data(c->rawcb.ud, p, n);
        free(p);
        if (c->closing || !c->raw_reading)
            return;
    }
    if (c->a->io.reading(c->io, on) != 0 && on)
        conn_close(c);
}

void gp_admin_raw_shutdown(conn *c) {
    if (!c->raw || c->closing || c->raw_shut)
        return;
    c->raw_shut = 1;
    if (c->a->io.shutdown(c->io) != 0)
        conn_close(c);
}

void gp_admin_raw_close(conn *c) {
    if (c->raw)
        conn_close(c);
}

void gp_admin_reply_error(gp_admin_call *call, int status, const char *code, const char *message) {
    size_t len;
    char *body = gp_admin_error_json(code, message, &len);
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
