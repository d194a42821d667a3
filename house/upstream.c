/* upstream.c — runs the bridge's requests against the house's own upstreams with libcurl's
 * multi interface, driven by the same libuv loop as the tunnel (CURLMOPT_SOCKETFUNCTION with
 * uv_poll, CURLMOPT_TIMERFUNCTION with a uv_timer, as libcurl's multi-interface example for libuv
 * does). I/O side.
 *
 * Security: the URL is always a configured base URL plus the request's path, which must start
 * with '/', so the authority comes from the config and never from the request; the path is
 * normalised first and refused if its dot segments (plain or percent-encoded) would climb
 * out of the base path (reqcheck.c), and curl is told to send it as it is then, so what the
 * upstream sees is what was checked; header names must be tokens and values free of control
 * bytes (an upstream may read "Transfer-Encoding :" or a VT differently from the house);
 * redirects are not followed, only http/https are allowed, proxies from the environment are
 * ignored.
 *
 * A response is streamed as it arrives: RESP_HEAD once the final status and headers are in,
 * then RESP_BODY chunks of GP_BODY_CHUNK, the last with FIN. When a transfer fails after its
 * head went out the status can no longer change: the stream is then closed with an empty
 * RESP_BODY FIN (the body is short) and event=response_truncated is logged. */
#include "buf.h"
#include "compress.h"
#include "house.h"
#include "list.h"
#include "metrics.h"
#include "reqcheck.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESP_HEADER_BYTES (256u << 10)
#define MAX_PATH_LEN 16384u
#define MAX_METHOD_LEN 32u

struct hs_xfer {
    hs_upstream *u;
    CURL *e;
    hs_stream *s;
    hs_xfer *prev, *next; /* all live transfers */
    struct curl_slist *hl;
    char *url;
    char err[CURL_ERROR_SIZE];
    int is_head; /* HEAD request: the response has no body whatever it says */
    /* Headers of the current response (reset by each status line, so 1xx ones vanish). */
    char *hraw;
    size_t hlen, hcap;
    struct {
        uint32_t no, nl, vo, vl;
    } hidx[GP_MAX_HEADERS];
    size_t nh;
    char ctype[128];
    int head_sent, head_deferred;
    uint64_t body_len; /* as announced in RESP_HEAD */
    uint8_t *chunk;    /* body bytes not yet framed (< GP_BODY_CHUNK) */
    size_t clen;
    uint64_t total;
    int paused, too_large;
};

typedef struct sock_ctx sock_ctx;

/* One house's upstream side. */
struct hs_upstream {
    hs_house *h;
    CURLM *multi;
    uv_timer_t timer;  /* curl's timeout */
    uv_timer_t resume; /* unpauses transfers outside any transport or curl callback */
    int handles;       /* initialised, not yet closed */
    hs_xfer *all;
    size_t npaused;
    sock_ctx *socks; /* every poll handle we opened, so that shutdown can close those curl
                        never removed */
    char msg[160];   /* hs_upstream_check's message, valid until its next call */
};

struct sock_ctx {
    hs_upstream *u;
    uv_poll_t poll;
    curl_socket_t fd;
    int events; /* what the poll watches now (-1: not started) */
    struct sock_ctx *prev, *next;
};

static void free_sock(uv_handle_t *h) {
    free(h->data);
}

static void sock_close(sock_ctx *c) {
    GP_LIST_REMOVE(c->u->socks, c, prev, next);
    /* uv_close drops the fd from the loop now, before curl may reuse the number. */
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, free_sock);
}

/* --- curl <-> libuv --------------------------------------------------------------------- */

static void check_done(hs_upstream *u);

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_ctx *c = p->data;
    hs_upstream *u = c->u;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(u->multi, c->fd, flags, &running);
    check_done(u);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp) {
    (void)e;
    hs_upstream *u = ud;
    sock_ctx *c = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            sock_close(c);
            curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return -1;
        if (uv_poll_init_socket(u->h->loop, &c->poll, fd) != 0) {
            hs_log(HS_LOG_ERROR, "uv_poll_failed", "fd=%d", (int)fd);
            free(c);
            return -1;
        }
        c->u = u;
        c->fd = fd;
        c->events = -1;
        c->poll.data = c;
        GP_LIST_PUSH(u->socks, c, prev, next);
        curl_multi_assign(u->multi, fd, c);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    /* curl repeats itself; libuv's uv_poll_start always re-registers (epoll DEL + ADD). */
    if (ev != c->events) {
        uv_poll_start(&c->poll, ev, on_poll);
        c->events = ev;
    }
    return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
    hs_upstream *u = t->data;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(u);
}

static int on_timer(CURLM *m, long ms, void *ud) {
    (void)m;
    hs_upstream *u = ud;
    if (!u->handles)
        return 0;
    if (ms < 0)
        uv_timer_stop(&u->timer);
    else /* 0 too goes through the loop: socket_action must not recurse from here */
        uv_timer_start(&u->timer, on_curl_timeout, (uint64_t)ms, 0);
    return 0;
}

/* --- request checks --------------------------------------------------------------------- */

static int is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int token_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Headers that describe one hop, not the message; curl sets its own where needed. */
static int hop_by_hop(const char *n, size_t len) {
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "transfer-encoding",
                                        "te",
                                        "trailer",
                                        "upgrade",
                                        "host",
                                        "content-length",
                                        "expect",
                                        "proxy-authorization",
                                        "proxy-authenticate"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == len && strncasecmp(n, names[i], len) == 0)
            return 1;
    return 0;
}

int hs_upstream_check(hs_upstream *u, hs_request *r, uint16_t *status, const char **error,
                      const char **message) {
    char *msg = u->msg;
    *status = 400;
    *error = "bad_request";
    if (!token_ok(r->method, MAX_METHOD_LEN)) {
        *message = "method must be an HTTP token";
        return -1;
    }
    size_t pl = strlen(r->path);
    if (pl == 0 || r->path[0] != '/') {
        *message = "path must start with '/'";
        return -1;
    }
    if (pl > MAX_PATH_LEN) {
        *message = "path too long";
        return -1;
    }
    for (size_t i = 0; i < pl; i++)
        if ((unsigned char)r->path[i] <= ' ' || (unsigned char)r->path[i] == 0x7f) {
            *message = "path contains spaces or control characters (percent-encode them)";
            return -1;
        }
    char *clean = malloc(pl + 1);
    const char *why = NULL;
    int cl = clean ? hs_path_clean(r->path, pl, clean, pl + 1, &why) : -1;
    free(clean);
    if (cl < 0) {
        *message = why ? why : "house out of memory";
        return -1;
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        const gp_header *h = &r->headers[i];
        int name_ok = hs_header_name_ok((const char *)h->name.p, h->name.len);
        if (!name_ok || !hs_header_value_ok((const char *)h->value.p, h->value.len)) {
            char shown[72];
            hs_printable((const char *)h->name.p, h->name.len, shown, sizeof shown);
            snprintf(msg, sizeof u->msg, "header \"%s\": %s", shown,
                     !name_ok ? "name must be an HTTP token (no spaces, no ':')"
                              : "value holds a control character (only HTAB is allowed)");
            *message = msg;
            return -1;
        }
    }
    *status = 403;
    *error = "forbidden_upstream";
    const hs_config *c = &u->h->cfg;
    if (!r->service[0]) {
        if (!c->upstream || !*c->upstream) {
            *message = "this house has no default upstream; name a service";
            return -1;
        }
        r->base_url = c->upstream;
        return 0;
    }
    for (size_t i = 0; i < c->nservices; i++)
        if (strcmp(c->services[i].name, r->service) == 0) {
            r->base_url = c->services[i].url;
            return 0;
        }
    snprintf(msg, sizeof u->msg, "service %s is not configured on this house", hs_qs(r->service));
    *message = msg;
    return -1;
}

/* --- response streaming ----------------------------------------------------------------- */

static gp_str ctype_of(const hs_xfer *x) {
    return gp_str_c(x->ctype);
}

static void send_head(hs_xfer *x, int fin) {
    gp_header h[GP_MAX_HEADERS];
    for (size_t i = 0; i < x->nh; i++) {
        h[i].name = (gp_str){(const uint8_t *)x->hraw + x->hidx[i].no, x->hidx[i].nl};
        h[i].value = (gp_str){(const uint8_t *)x->hraw + x->hidx[i].vo, x->hidx[i].vl};
    }
    long code = 0;
    curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code);
    hs_stream_head(x->s, (uint16_t)code, h, x->nh, "", "", fin ? 0 : x->body_len, fin);
    x->head_sent = 1;
}

/* Called at the blank line that ends a final (non-1xx) response's headers. */
static int headers_complete(hs_xfer *x, long code) {
    curl_off_t cl = -1;
    curl_easy_getinfo(x->e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (x->is_head || code == 204 || code == 304)
        x->body_len = 0;
    else
        x->body_len = cl >= 0 ? (uint64_t)cl : GP_LEN_UNKNOWN;
    if (x->body_len != GP_LEN_UNKNOWN && x->body_len > (uint64_t)x->u->h->cfg.max_response) {
        x->too_large = 1;
        return -1;
    }
    if (x->body_len == 0)
        x->head_deferred = 1; /* goes out with FIN when the transfer completes */
    else
        send_head(x, 0);
    return 0;
}

static size_t on_header(char *b, size_t size, size_t nmemb, void *ud) {
    hs_xfer *x = ud;
    size_t len = size * nmemb, n = len;
    if (len >= 5 && memcmp(b, "HTTP/", 5) == 0) {
        x->nh = 0;
        x->hlen = 0;
        x->ctype[0] = '\0';
        return len;
    }
    while (n && (b[n - 1] == '\n' || b[n - 1] == '\r'))
        n--;
    if (n == 0) {
        long code = 0;
        curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200)
            return len; /* interim response: the real one follows */
        if (x->head_sent || x->head_deferred)
            return len; /* trailers */
        return headers_complete(x, code) == 0 ? len : 0;
    }
    if (x->head_sent || x->head_deferred || b[0] == ' ' || b[0] == '\t')
        return len; /* trailers, or obsolete line folding: dropped */
    gp_str hn, hv;
    if (gp_header_split(b, n, &hn, &hv) != 0)
        return len;
    size_t nl = hn.len, vl = hv.len;
    const char *v = (const char *)hv.p;
    if (hop_by_hop(b, nl) && !(nl == 14 && strncasecmp(b, "content-length", 14) == 0))
        return len;
    if (nl == 12 && strncasecmp(b, "content-type", 12) == 0)
        snprintf(x->ctype, sizeof x->ctype, "%.*s", (int)vl, v);
    if (x->nh >= GP_MAX_HEADERS || x->hlen + nl + vl > MAX_RESP_HEADER_BYTES)
        return len;
    if (gp_grow(&x->hraw, &x->hcap, x->hlen + nl + vl, 2048, 1) != 0)
        return len;
    x->hidx[x->nh].no = (uint32_t)x->hlen;
    x->hidx[x->nh].nl = (uint32_t)nl;
    memcpy(x->hraw + x->hlen, b, nl);
    x->hlen += nl;
    x->hidx[x->nh].vo = (uint32_t)x->hlen;
    x->hidx[x->nh].vl = (uint32_t)vl;
    memcpy(x->hraw + x->hlen, v, vl);
    x->hlen += vl;
    x->nh++;
    return len;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
    hs_xfer *x = ud;
    size_t len = size * nmemb;
    if (hs_tunnel_congested(x->u->h->tunnel)) {
        /* curl keeps the bytes and hands them over again once unpaused. */
        if (!x->paused) {
            x->paused = 1;
            x->u->npaused++;
        }
        return CURL_WRITEFUNC_PAUSE;
    }
    if (x->total + len > (uint64_t)x->u->h->cfg.max_response) {
        x->too_large = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (!x->head_sent) {
        /* The head was deferred (announced length 0) but bytes arrived anyway. */
        x->head_deferred = 0;
        x->body_len = GP_LEN_UNKNOWN;
        send_head(x, 0);
    }
    if (!x->chunk && !(x->chunk = malloc(GP_BODY_CHUNK)))
        return 0;
    x->total += len;
    size_t off = 0;
    while (off < len) {
        /* A full chunk is held back until more arrives, so that the last one carries FIN. */
        if (x->clen == GP_BODY_CHUNK) {
            hs_stream_body(x->s, ctype_of(x), x->chunk, x->clen, 0);
            x->clen = 0;
        }
        size_t n = GP_BODY_CHUNK - x->clen;
        if (n > len - off)
            n = len - off;
        memcpy(x->chunk + x->clen, p + off, n);
        x->clen += n;
        off += n;
    }
    return len;
}

/* --- transfers -------------------------------------------------------------------------- */

static void xfer_free(hs_xfer *x) {
    GP_LIST_REMOVE(x->u->all, x, prev, next);
    if (x->paused)
        x->u->npaused--;
    if (x->e) {
        curl_multi_remove_handle(x->u->multi, x->e);
        curl_easy_cleanup(x->e);
    }
    curl_slist_free_all(x->hl);
    GP_FREE_ALL(x->url, x->hraw, x->chunk, x);
}

static void answer_error(hs_xfer *x, uint16_t status, const char *error, const char *message) {
    hs_stream_head(x->s, status, NULL, 0, error, message, 0, 1);
}

static void finish(hs_xfer *x, CURLcode rc) {
    hs_stream *s = x->s;
    const char *outcome = "ok";
    if (rc != CURLE_OK)
        gp_metric_inc(x->u->h->m.upstream_errors, NULL);
    char msg[CURL_ERROR_SIZE + 64];
    const char *detail = x->err[0] ? x->err : curl_easy_strerror(rc);
    if (rc == CURLE_OK) {
        if (!x->head_sent) {
            send_head(x, x->clen == 0);
            if (x->clen)
                hs_stream_body(s, ctype_of(x), x->chunk, x->clen, 1);
        } else {
            hs_stream_body(s, ctype_of(x), x->chunk, x->clen, 1);
        }
    } else if (x->head_sent) {
        /* Too late to change the status: end the stream short and say so in the log. */
        outcome = x->too_large                     ? "truncated_too_large"
                  : rc == CURLE_OPERATION_TIMEDOUT ? "truncated_timeout"
                                                   : "truncated_upstream_error";
        hs_log(HS_LOG_WARN, "response_truncated", "id=%s reason=%s bytes=%llu detail=%s",
               hs_qs(hs_stream_request(s)->frame_id), outcome, (unsigned long long)x->total,
               hs_qs(detail));
        hs_stream_body(s, ctype_of(x), x->chunk, x->too_large ? 0 : x->clen, 1);
    } else if (x->too_large) {
        snprintf(msg, sizeof msg, "upstream response exceeds max-response %lld bytes",
                 x->u->h->cfg.max_response);
        answer_error(x, 413, "too_large", msg);
        outcome = "too_large";
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "upstream did not answer within %u ms",
                 hs_stream_request(s)->timeout_ms);
        answer_error(x, 504, "timeout", msg);
        outcome = "timeout";
    } else if (rc == CURLE_URL_MALFORMAT) {
        snprintf(msg, sizeof msg, "unusable path: %s", detail);
        answer_error(x, 400, "bad_request", msg);
        outcome = "bad_request";
    } else {
        snprintf(msg, sizeof msg, "upstream unreachable: %s", detail);
        answer_error(x, 502, "upstream_unreachable", msg);
        outcome = "upstream_unreachable";
    }
    xfer_free(x);
    hs_stream_upstream_done(s, outcome);
}

static void check_done(hs_upstream *u) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        hs_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = m->data.result;
        if (x)
            finish(x, rc); /* invalidates m */
    }
}

static int add_header(hs_xfer *x, const char *line) {
    struct curl_slist *l = curl_slist_append(x->hl, line);
    if (!l)
        return -1;
    x->hl = l;
    return 0;
}

static int build(hs_xfer *x, const hs_request *r) {
    size_t bl = strlen(r->base_url), pl = strlen(r->path);
    const char *why;
    if (!(x->url = malloc(bl + pl + 1)) ||
        hs_path_clean(r->path, pl, x->url + bl, pl + 1, &why) < 0) /* checked before: no fail */
        return -1;
    memcpy(x->url, r->base_url, bl);
    CURL *e = x->e;
    int ok = 1;
#define SET(opt, val) ok &= curl_easy_setopt(e, opt, val) == CURLE_OK
    SET(CURLOPT_URL, x->url);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_ERRORBUFFER, x->err);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOPROXY, "*");
    SET(CURLOPT_PATH_AS_IS, 1L); /* already normalised: no second reading of its dots */
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    /* 0 would mean "no limit" to curl; the bridge sends 0 only for an expired deadline. */
    SET(CURLOPT_TIMEOUT_MS, (long)(r->timeout_ms ? r->timeout_ms : 1));
    SET(CURLOPT_CUSTOMREQUEST, r->method);
    /* https:// upstreams: curl's verification (the system's CAs, the host name checked), as
     * for the streams to them (streams.c), unless the house says otherwise. */
    const hs_config *c = &x->u->h->cfg;
    if (c->upstream_ca_file && *c->upstream_ca_file) {
        SET(CURLOPT_CAINFO, c->upstream_ca_file);
        SET(CURLOPT_CAPATH, (char *)NULL); /* that file only, not the system's directory too */
    }
    if (c->upstream_insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    x->is_head = strcmp(r->method, "HEAD") == 0;
    int has_ctype = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = (const char *)r->headers[i].name.p;
        const char *v = (const char *)r->headers[i].value.p;
        if (hop_by_hop(n, strlen(n)))
            continue;
        if (strcasecmp(n, "content-type") == 0)
            has_ctype = 1;
        char line[8192 + 300];
        char *dyn = NULL, *lp = line;
        size_t need = strlen(n) + strlen(v) + 3;
        if (need > sizeof line && !(lp = dyn = malloc(need)))
            return -1;
        /* "Name;" is curl's way to send a header with an empty value. */
        if (*v)
            snprintf(lp, need, "%s: %s", n, v);
        else
            snprintf(lp, need, "%s;", n);
        int rc = add_header(x, lp);
        free(dyn);
        if (rc != 0)
            return -1;
    }
    /* No "Expect: 100-continue" round trip to a local service. */
    if (add_header(x, "Expect:") != 0)
        return -1;
    if (x->is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (r->body_len || !strcmp(r->method, "POST") || !strcmp(r->method, "PUT") ||
               !strcmp(r->method, "PATCH")) {
        /* Do not let curl invent a form content type the producer never sent. */
        if (!has_ctype && add_header(x, "Content-Type:") != 0)
            return -1;
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_POSTFIELDS, r->body_len ? (const char *)r->body : "");
    }
    SET(CURLOPT_HTTPHEADER, x->hl);
#undef SET
    return ok ? 0 : -1;
}

/* The multi handle comes with the first request, not with the house: a process running many
 * mostly idle houses (tests/load) should not keep one each. NULL when out of memory. */
static CURLM *multi_of(hs_upstream *u) {
    if (u->multi || !u->handles)
        return u->multi;
    if (!(u->multi = curl_multi_init()))
        return NULL;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)u->h->cfg.max_conns);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, (long)u->h->cfg.max_conns);
    return u->multi;
}

hs_xfer *hs_upstream_start(hs_upstream *u, hs_stream *s) {
    const hs_request *r = hs_stream_request(s);
    hs_xfer *x = multi_of(u) ? calloc(1, sizeof *x) : NULL;
    if (!x) {
        hs_stream_head(s, 503, NULL, 0, "unavailable", "house out of memory", 0, 1);
        return NULL;
    }
    x->u = u;
    x->s = s;
    GP_LIST_PUSH(u->all, x, prev, next);
    x->e = curl_easy_init();
    if (!x->e || build(x, r) != 0 || curl_multi_add_handle(u->multi, x->e) != CURLM_OK) {
        if (x->e) {
            curl_easy_cleanup(x->e);
            x->e = NULL;
        }
        xfer_free(x);
        hs_stream_head(s, 502, NULL, 0, "upstream_unreachable", "could not set up the request", 0,
                       1);
        return NULL;
    }
    return x;
}

void hs_upstream_abort(hs_xfer *x) {
    if (x)
        xfer_free(x);
}

static void on_resume(uv_timer_t *t) {
    hs_upstream *u = t->data;
    /* Unpausing may deliver data that pauses a transfer again; that is fine. */
    for (hs_xfer *x = u->all, *n; x && !hs_tunnel_congested(u->h->tunnel); x = n) {
        n = x->next;
        if (x->paused) {
            x->paused = 0;
            u->npaused--;
            curl_easy_pause(x->e, CURLPAUSE_CONT);
        }
    }
}

void hs_upstream_resume(hs_upstream *u) {
    if (u->handles && u->npaused)
        uv_timer_start(&u->resume, on_resume, 0, 0);
}

hs_upstream *hs_upstream_new(hs_house *h) {
    hs_upstream *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->h = h;
    uv_timer_init(h->loop, &u->timer);
    uv_timer_init(h->loop, &u->resume);
    u->timer.data = u->resume.data = u;
    u->handles = 1;
    return u;
}

void hs_upstream_stop(hs_upstream *u) {
    if (!u)
        return;
    while (u->all)
        xfer_free(u->all);
    if (u->multi) {
        /* Cleanup closes cached connections, telling on_socket to close their polls. */
        curl_multi_cleanup(u->multi);
        u->multi = NULL;
    }
    while (u->socks)
        sock_close(u->socks);
    if (u->handles) {
        u->handles = 0;
        uv_close((uv_handle_t *)&u->timer, NULL);
        uv_close((uv_handle_t *)&u->resume, NULL);
    }
}

void hs_upstream_free(hs_upstream *u) {
    hs_upstream_stop(u);
    free(u);
}

/* --- as the house's executor ------------------------------------------------------------ */

static int exec_check(void *ud, hs_request *r, uint16_t *status, const char **error,
                      const char **message) {
    return hs_upstream_check(ud, r, status, error, message);
}

static hs_xfer *exec_start(void *ud, hs_stream *s) {
    return hs_upstream_start(ud, s);
}

static void exec_abort(void *ud, hs_xfer *x) {
    (void)ud;
    hs_upstream_abort(x);
}

static void exec_resume(void *ud) {
    hs_upstream_resume(ud);
}

const hs_exec hs_upstream_exec = {exec_check, exec_start, exec_abort, exec_resume};
