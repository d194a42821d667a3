/* http_req.c — collecting http-parser's callbacks into one bounded request at a time (see
 * http_req.h). Pure: memory only.
 *
 * http-parser reports the target, header names and values in pieces (a piece ends where a
 * feed ends), so each is grown as it comes. It stops at the end of a message because
 * on_message_complete pauses it: the bytes after that belong to the next request and are
 * left to the caller. Header bytes are bounded by http-parser itself (HTTP_MAX_HEADER_SIZE,
 * 80 KiB: HPE_HEADER_OVERFLOW), the header count and the body here. */
#include "http_req.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct gp_http_req {
    http_parser hp;
    http_parser_settings cb;
    size_t max_body;
    gp_http_request r;
    size_t tlen, nlen, vlen; /* lengths of the target, current header name and value */
    int in_value;            /* the last header callback was a value */
    int state;               /* GP_HTTP_MORE, DONE or an error (sticky) */
    int started;
    int headers_done; /* the current request's headers are complete */
};

static int grow(char **s, size_t *len, const char *p, size_t n) {
    char *t = realloc(*s, *len + n + 1);
    if (!t)
        return -1;
    memcpy(t + *len, p, n);
    *len += n;
    t[*len] = '\0';
    *s = t;
    return 0;
}

static int fail(gp_http_req *q, int err) {
    if (q->state == GP_HTTP_MORE)
        q->state = err;
    return -1;
}

static int on_begin(http_parser *hp) {
    gp_http_req *q = hp->data;
    q->started = 1;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n) {
    gp_http_req *q = hp->data;
    return grow(&q->r.target, &q->tlen, at, n) == 0 ? 0 : fail(q, GP_HTTP_ENOMEM);
}

static int on_field(http_parser *hp, const char *at, size_t n) {
    gp_http_req *q = hp->data;
    if (q->in_value || q->r.nheaders == 0) {
        /* A new header begins. */
        if (q->r.nheaders >= GP_HTTP_MAX_HEADERS)
            return fail(q, GP_HTTP_EHEADERS);
        q->r.nheaders++;
        q->in_value = 0;
        q->nlen = q->vlen = 0;
    }
    gp_http_header *h = &q->r.headers[q->r.nheaders - 1];
    return grow(&h->name, &q->nlen, at, n) == 0 ? 0 : fail(q, GP_HTTP_ENOMEM);
}

static int on_value(http_parser *hp, const char *at, size_t n) {
    gp_http_req *q = hp->data;
    if (q->r.nheaders == 0)
        return fail(q, GP_HTTP_EBAD); /* http-parser never does this; be safe anyway */
    q->in_value = 1;
    gp_http_header *h = &q->r.headers[q->r.nheaders - 1];
    return grow(&h->value, &q->vlen, at, n) == 0 ? 0 : fail(q, GP_HTTP_ENOMEM);
}

static char *dupn(const char *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int on_headers_complete(http_parser *hp) {
    gp_http_req *q = hp->data;
    gp_http_request *r = &q->r;
    for (size_t i = 0; i < r->nheaders; i++) {
        gp_http_header *h = &r->headers[i];
        if (!h->name || !(h->value = h->value ? h->value : calloc(1, 1)))
            return fail(q, h->name ? GP_HTTP_ENOMEM : GP_HTTP_EBAD);
        for (char *c = h->name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    if (!r->target)
        return fail(q, GP_HTTP_EBAD);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->target, q->tlen, hp->method == HTTP_CONNECT, &u) != 0)
        return fail(q, GP_HTTP_EBAD);
    if (u.field_set & (1 << UF_PATH))
        r->path = dupn(r->target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        r->path = dupn("/", 1);
    if (u.field_set & (1 << UF_QUERY))
        r->query = dupn(r->target + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        r->query = dupn("", 0);
    if (!r->path || !r->query)
        return fail(q, GP_HTTP_ENOMEM);
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > q->max_body)
        return fail(q, GP_HTTP_ETOO_LARGE); /* refuse before reading any of it */
    r->method = http_method_str((enum http_method)hp->method);
    r->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
    r->http_minor = hp->http_minor;
    q->headers_done = 1;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n) {
    gp_http_req *q = hp->data;
    gp_http_request *r = &q->r;
    if (n > q->max_body - r->body_len)
        return fail(q, GP_HTTP_ETOO_LARGE);
    uint8_t *b = realloc(r->body, r->body_len + n + 1);
    if (!b)
        return fail(q, GP_HTTP_ENOMEM);
    memcpy(b + r->body_len, at, n);
    r->body_len += n;
    b[r->body_len] = '\0';
    r->body = b;
    return 0;
}

static int on_complete(http_parser *hp) {
    gp_http_req *q = hp->data;
    if (!q->r.body && !(q->r.body = calloc(1, 1)))
        return fail(q, GP_HTTP_ENOMEM);
    q->state = GP_HTTP_DONE;
    http_parser_pause(hp, 1); /* one request at a time: the rest is the next one's */
    return 0;
}

static void clear(gp_http_req *q) {
    gp_http_request *r = &q->r;
    free(r->target);
    free(r->path);
    free(r->query);
    free(r->body);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    memset(r, 0, sizeof *r);
    q->tlen = q->nlen = q->vlen = 0;
    q->in_value = 0;
    q->started = 0;
    q->headers_done = 0;
    q->state = GP_HTTP_MORE;
}

int gp_http_req_expects_continue(const gp_http_req *q) {
    const char *e =
        q->headers_done && q->state == GP_HTTP_MORE ? gp_http_header_get(&q->r, "expect") : NULL;
    return e && strcasecmp(e, "100-continue") == 0;
}

gp_http_req *gp_http_req_new(size_t max_body) {
    gp_http_req *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->max_body = max_body ? max_body : GP_HTTP_MAX_BODY;
    http_parser_settings_init(&q->cb);
    q->cb.on_message_begin = on_begin;
    q->cb.on_url = on_url;
    q->cb.on_header_field = on_field;
    q->cb.on_header_value = on_value;
    q->cb.on_headers_complete = on_headers_complete;
    q->cb.on_body = on_body;
    q->cb.on_message_complete = on_complete;
    http_parser_init(&q->hp, HTTP_REQUEST);
    q->hp.data = q;
    return q;
}

void gp_http_req_free(gp_http_req *q) {
    if (!q)
        return;
    clear(q);
    free(q);
}

int gp_http_req_feed(gp_http_req *q, const uint8_t *data, size_t len, size_t *used) {
    *used = 0;
    if (q->state != GP_HTTP_MORE || len == 0)
        return q->state;
    q->started = 1;
    size_t n = http_parser_execute(&q->hp, &q->cb, (const char *)data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&q->hp);
    *used = n > len ? len : n;
    if (q->state == GP_HTTP_DONE) {
        /* Paused at the end of the message: n covers exactly that message. */
        return GP_HTTP_DONE;
    }
    if (q->state != GP_HTTP_MORE)
        return q->state; /* our own refusal, from a callback */
    if (e == HPE_HEADER_OVERFLOW)
        return q->state = GP_HTTP_EHEADERS;
    if (e != HPE_OK || n != len || q->hp.upgrade)
        /* A parse error; or an Upgrade/CONNECT, which http-parser leaves to its caller:
         * the admin port speaks nothing but HTTP/1.1, so it is refused too. */
        return q->state = GP_HTTP_EBAD;
    return GP_HTTP_MORE;
}

const gp_http_request *gp_http_req_get(const gp_http_req *q) {
    return q->state == GP_HTTP_DONE ? &q->r : NULL;
}

void gp_http_req_next(gp_http_req *q) {
    clear(q);
    /* A fresh parser per request: a paused or failed one keeps its state otherwise. */
    http_parser_init(&q->hp, HTTP_REQUEST);
    q->hp.data = q;
}

int gp_http_req_started(const gp_http_req *q) {
    return q->started;
}

const char *gp_http_header_get(const gp_http_request *r, const char *name) {
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* --- Host names ---------------------------------------------------------------------------- */

int gp_http_host_allowed(const char *host, const char *names) {
    char name[256];
    size_t n = strlen(host);
    if (n == 0)
        return 1;
    if (host[0] == '[') { /* [IPv6 literal] or [IPv6 literal]:port */
        const char *e = strchr(host, ']');
        struct in6_addr a6;
        if (!e || (size_t)(e - host - 1) >= sizeof name ||
            (e[1] && (e[1] != ':' || strspn(e + 2, "0123456789") != strlen(e + 2))))
            return 0;
        memcpy(name, host + 1, (size_t)(e - host - 1));
        name[e - host - 1] = '\0';
        return inet_pton(AF_INET6, name, &a6) == 1;
    }
    const char *colon = strrchr(host, ':');
    if (colon && strspn(colon + 1, "0123456789") == strlen(colon + 1))
        n = (size_t)(colon - host);
    if (n == 0 || n >= sizeof name)
        return 0;
    memcpy(name, host, n);
    name[n] = '\0';
    struct in_addr ia;
    if (inet_pton(AF_INET, name, &ia) == 1 || strcasecmp(name, "localhost") == 0)
        return 1;
    for (const char *p = names ? names : ""; *p;) {
        const char *e = p + strcspn(p, ",");
        const char *q = p;
        while (q < e && *q == ' ')
            q++;
        const char *pc = memchr(q, ':', (size_t)(e - q));
        size_t l = (size_t)((pc ? pc : e) - q);
        while (l && q[l - 1] == ' ')
            l--;
        if (l == n && strncasecmp(q, name, n) == 0)
            return 1;
        p = *e ? e + 1 : e;
    }
    return 0;
}
