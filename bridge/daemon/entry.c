/* entry.c — validation of one request stream entry (README.md, "The public Redis contract")
 * into a br_entry. Pure: it reads a hiredis reply tree and allocates nothing that outlives the
 * call, so it is fuzzed on its own (tests/fuzz/fuzz_entry.c) without Redis or sockets. */
#include "entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ID_LEN 200
#define MAX_PATH_LEN 16384
#define MAX_TIMEOUT_MS 86400000ull
#define DEFAULT_TIMEOUT_MS 30000ull

static int parse_u64(gp_str s, uint64_t *out) {
    if (s.len == 0 || s.len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    *out = v;
    return 0;
}

static uint64_t entry_ms(const char *id) {
    return strtoull(id, NULL, 10);
}

static int printable(gp_str s) {
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] < 0x21 || s.p[i] == 0x7f)
            return 0;
    return 1;
}

static int is_tchar(uint8_t ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_token(gp_str s, size_t max) {
    if (s.len == 0 || s.len > max)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar(s.p[i]))
            return 0;
    return 1;
}

/* Header values, both ways (a producer's request, a house's response): no control byte but
 * HTAB, and no DEL (RFC 7230 field-value). CR/LF would inject headers; VT, FF, ESC and the
 * rest are read differently by different parsers, so nobody downstream sees them. */
static int header_value_ok(const char *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)v[i];
        if ((b < 0x20 && b != '\t') || b == 0x7f)
            return 0;
    }
    return 1;
}

/* why (NULL ok): what is wrong, naming the header (printable bytes of its name, at most 40). */
static json_t *headers_bad(json_t *h, char *why, size_t whylen, const char *k, const char *what) {
    if (why && whylen) {
        char name[41];
        size_t n = 0;
        for (; k && k[n] && n < sizeof name - 1; n++)
            name[n] = k[n] > 0x20 && k[n] < 0x7f && k[n] != '"' && k[n] != '\\' ? k[n] : '?';
        name[n] = '\0';
        if (k)
            snprintf(why, whylen, "header \"%s\": %s", name, what);
        else
            snprintf(why, whylen, "headers %s", what);
    }
    json_decref(h);
    return NULL;
}

json_t *br_headers_load(gp_str s, char *why, size_t whylen) {
    json_t *h = json_loadb((const char *)s.p, s.len, 0, NULL);
    if (!h || !json_is_object(h))
        return headers_bad(h, why, whylen, NULL, "must be a JSON object of string values");
    if (json_object_size(h) > GP_MAX_HEADERS)
        return headers_bad(h, why, whylen, NULL, "has too many entries");
    for (void *it = json_object_iter(h); it; it = json_object_iter_next(h, it)) {
        const char *k = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        if (!is_token(gp_str_c(k), 256))
            return headers_bad(h, why, whylen, k, "name is not an HTTP token (1-256 bytes)");
        if (!json_is_string(v))
            return headers_bad(h, why, whylen, k, "value is not a string");
        if (json_string_length(v) > 65535)
            return headers_bad(h, why, whylen, k, "value is longer than 65535 bytes");
        if (!header_value_ok(json_string_value(v), json_string_length(v)))
            return headers_bad(h, why, whylen, k, "value holds a control character other than tab");
    }
    return h;
}

static void bad(br_entry *o, const char *msg) {
    if (o->status)
        return; /* keep the first problem */
    o->status = 400;
    o->error = "bad_request";
    o->message = msg;
}

void br_entry_parse(const redisReply *e, long long max_body, br_entry *o) {
    memset(o, 0, sizeof *o);
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        o->status = -1; /* not an entry at all: nothing to answer or acknowledge */
        return;
    }
    o->entry_id = e->element[0]->str;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->has_reply = 1;
    const redisReply *fv = e->element[1];
    if (fv->type != REDIS_REPLY_ARRAY) {
        o->status = -1; /* deleted or trimmed while pending */
        return;
    }
    int have_method = 0, have_path = 0, have_id = 0, have_timeout = 0, kinds = 0;
    gp_str timeout = {0};
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        gp_str ks = {(const uint8_t *)k->str, k->len}, vs = {(const uint8_t *)v->str, v->len};
        if (gp_str_eq(ks, "id"))
            o->id = vs, have_id = 1;
        else if (gp_str_eq(ks, "method"))
            o->method = vs, have_method = 1;
        else if (gp_str_eq(ks, "path"))
            o->path = vs, have_path = 1;
        else if (gp_str_eq(ks, "headers"))
            o->headers = vs;
        else if (gp_str_eq(ks, "body"))
            o->body = vs;
        else if (gp_str_eq(ks, "service"))
            o->service = vs;
        else if (gp_str_eq(ks, "timeout_ms"))
            timeout = vs, have_timeout = 1;
        else if (gp_str_eq(ks, "reply"))
            o->reply = vs, o->has_reply = vs.len > 0;
        else if (gp_str_eq(ks, "kind"))
            kinds++, o->kind = vs;
    }
    /* The kind of entry first: a stream open is routed before this (br_entry_kind), anything
     * but a request here is a producer's mistake, and the message should say so. */
    int stream = kinds == 1 && gp_str_eq(o->kind, "stream");
    if (kinds > 1)
        bad(o, "kind given twice");
    else if (o->kind.p && !stream && !gp_str_eq(o->kind, "http"))
        bad(o, "kind must be http (a request, also when absent) or stream (a TCP stream open)");
    if (stream)
        o->reply_kind = "stream"; /* the janitor's 504 to an open nobody carried */
    if (!have_id || o->id.len == 0 || o->id.len > MAX_ID_LEN || !printable(o->id)) {
        if (have_id)
            bad(o, "id must be 1-200 printable characters");
        o->id = gp_str_c(o->entry_id);
    }
    /* The reply key is checked against the prefix by br_entry_reply_key (the bridge's). */
    if (have_timeout && (parse_u64(timeout, &o->timeout_ms) != 0 || o->timeout_ms == 0 ||
                         o->timeout_ms > MAX_TIMEOUT_MS)) {
        bad(o, "timeout_ms must be an integer from 1 to 86400000");
        o->timeout_ms = DEFAULT_TIMEOUT_MS;
    }
    o->deadline = entry_ms(o->entry_id) + o->timeout_ms;
    if (stream)
        return; /* its fields are bridge/daemon/streams.c's to check (proto/stream.h) */
    if (!have_method)
        bad(o, "missing required field: method");
    else if (!is_token(o->method, 32))
        bad(o, "method must be an HTTP token");
    if (!have_path)
        bad(o, "missing required field: path");
    else if (o->path.len == 0 || o->path.p[0] != '/' || o->path.len > MAX_PATH_LEN ||
             !printable(o->path))
        bad(o, "path must start with / and hold no spaces or control characters");
    if (o->service.len > 255 || !printable(o->service))
        bad(o, "service must be a printable name of at most 255 bytes");
    if (o->headers.len && !o->status) { /* msgbuf: nobody's message yet */
        json_t *h = br_headers_load(o->headers, o->msgbuf, sizeof o->msgbuf);
        if (!h)
            bad(o, o->msgbuf);
        json_decref(h);
    }
    if (!o->status && o->body.len > (size_t)max_body) {
        o->status = 413;
        o->error = "too_large";
        snprintf(o->msgbuf, sizeof o->msgbuf, "body of %zu bytes exceeds the maximum of %lld",
                 o->body.len, max_body);
        o->message = o->msgbuf;
    }
}

int br_entry_kind(const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return BR_KIND_HTTP; /* not an entry, or deleted: the request path settles it */
    const redisReply *fv = e->element[1];
    int kind = BR_KIND_HTTP, n = 0;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 4 ||
            memcmp(k->str, "kind", 4) != 0)
            continue;
        n++;
        if (v->len == 6 && memcmp(v->str, "stream", 6) == 0)
            kind = BR_KIND_STREAM;
        else
            kind = v->len == 4 && memcmp(v->str, "http", 4) == 0 ? BR_KIND_HTTP : BR_KIND_OTHER;
    }
    return n > 1 ? BR_KIND_OTHER : kind; /* twice: br_entry_parse's 400 */
}

/* --- reply keys --------------------------------------------------------------------------- */

const char *br_reply_key_check(const char *key, size_t len, const char *prefix) {
    size_t plen = strlen(prefix);
    if (len < plen + 5 || memcmp(key, prefix, plen) != 0 || memcmp(key + plen, ":rep:", 5) != 0)
        return "reply must be a key of the reply family <prefix>:rep:...";
    if (len == plen + 5)
        return "reply must name a key after <prefix>:rep:";
    if (len > BR_REPLY_KEY_MAX)
        return "reply key longer than 256 bytes";
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)key[i] < 0x20 || key[i] == 0x7f)
            return "reply key holds a control byte";
    return NULL;
}

int br_entry_reply_key(const br_entry *en, const char *prefix, char *out, const char **why) {
    *why = NULL;
    out[0] = '\0';
    size_t len;
    if (en->reply.len) {
        if (en->reply.len > BR_REPLY_KEY_MAX) {
            *why = "reply key longer than 256 bytes";
            return -1;
        }
        memcpy(out, en->reply.p, en->reply.len);
        len = en->reply.len;
    } else if (en->has_reply) {
        /* The default <prefix>:rep:<id>; the id is printable, but may make it too long. */
        int n = snprintf(out, BR_REPLY_KEY_MAX + 1, "%s:rep:%.*s", prefix, (int)en->id.len,
                         (const char *)en->id.p);
        if (n < 0 || n > BR_REPLY_KEY_MAX) {
            out[0] = '\0';
            *why = "the default reply key <prefix>:rep:<id> is longer than 256 bytes";
            return -1;
        }
        len = (size_t)n;
    } else {
        return 0; /* reply="": no reply wanted */
    }
    out[len] = '\0';
    *why = br_reply_key_check(out, len, prefix);
    if (*why) {
        out[0] = '\0';
        return -1;
    }
    return (int)len;
}

/* --- a house's response ------------------------------------------------------------------- */

int br_resp_status_ok(unsigned status) {
    return status >= 100 && status <= 599;
}

const char *br_resp_header_check(gp_str name, gp_str value) {
    if (!is_token(name, 256))
        return "header_name";
    if (!header_value_ok((const char *)value.p, value.len))
        return "header_value";
    return NULL;
}

size_t br_clip_len(const char *s, size_t len, size_t max) {
    if (len <= max)
        return len;
    size_t n = max - 3; /* room for the marker */
    while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80)
        n--; /* s[n] would start the cut: never split a UTF-8 sequence */
    return n;
}
