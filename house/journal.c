/* journal.c — the replay journal's pure part (see journal.h for the format): encoding and
 * decoding records in memory, the set of open calls, and rebuilding the replay cache from a
 * journal's bytes. No file, no clock, no logging; the file side is journal_file.c.
 *
 * Decoding follows the frame codec: (p, end, &out) helpers that return NULL on overrun, the
 * length prefix checked against HS_JREC_MAX before anything else, the check verified before
 * a field is looked at, nothing allocated from a length that was not checked first, and the
 * decoded record borrowing from the input. */
#include "journal.h"

#include "bytes.h"
#include "list.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* --- encoding --------------------------------------------------------------------------- */

static uint8_t *put_bytes(uint8_t *p, const uint8_t *src, size_t n) {
    if (n)
        memcpy(p, src, n);
    return p + n;
}

static uint8_t *put_str(uint8_t *p, gp_str s) {
    return put_bytes(gp_be_put(p, s.len, 2), s.p, s.len);
}

static void check_of(const uint8_t *p, size_t n, uint8_t out[HS_JREC_CHECK_LEN]) {
    uint8_t h[crypto_generichash_BYTES_MIN];
    crypto_generichash(h, sizeof h, p, n, NULL, 0);
    memcpy(out, h, HS_JREC_CHECK_LEN);
}

/* Payload size, or 0 when r cannot be encoded. */
static size_t payload_size(const hs_jrec *r) {
    if (r->type < HS_JREC_START || r->type > HS_JREC_FORGET)
        return 0;
    if (r->frame_id.len == 0 || r->frame_id.len > 0xffff || r->method.len > 0xffff ||
        r->path.len > 0xffff)
        return 0;
    size_t n = 1 + 8 + 6 + r->frame_id.len + r->method.len + r->path.len;
    if (r->type == HS_JREC_DONE) {
        if (r->nheaders > GP_MAX_HEADERS || r->body.len > HS_JREC_MAX_BODY)
            return 0;
        if (r->status == 0 && (r->nheaders || r->body.len))
            return 0;
        n += 2 + 2 + 4 + r->body.len;
        for (size_t i = 0; i < r->nheaders; i++) {
            if (r->headers[i].name.len > 0xffff || r->headers[i].value.len > HS_JREC_MAX)
                return 0;
            n += 2 + r->headers[i].name.len + 4 + r->headers[i].value.len;
            if (n > HS_JREC_MAX)
                return 0;
        }
    }
    return n > HS_JREC_MAX ? 0 : n;
}

size_t hs_jrec_size(const hs_jrec *r) {
    size_t n = payload_size(r);
    return n ? n + HS_JREC_OVERHEAD : 0;
}

ssize_t hs_jrec_encode(const hs_jrec *r, uint8_t *buf, size_t cap) {
    size_t n = payload_size(r);
    if (n == 0)
        return GP_ERR_INVALID;
    if (cap < n + HS_JREC_OVERHEAD)
        return GP_ERR_BUFFER;
    uint8_t *p = gp_be_put(buf, n, 4);
    *p++ = r->type;
    p = gp_be_put(p, r->keep_until_ms, 8);
    p = put_str(p, r->frame_id);
    p = put_str(p, r->method);
    p = put_str(p, r->path);
    if (r->type == HS_JREC_DONE) {
        p = gp_be_put(p, r->status, 2);
        p = gp_be_put(p, r->nheaders, 2);
        for (size_t i = 0; i < r->nheaders; i++) {
            p = put_str(p, r->headers[i].name);
            p = put_bytes(gp_be_put(p, r->headers[i].value.len, 4), r->headers[i].value.p,
                          r->headers[i].value.len);
        }
        p = put_bytes(gp_be_put(p, r->body.len, 4), r->body.p, r->body.len);
    }
    check_of(buf, 4 + n, p);
    return (ssize_t)(n + HS_JREC_OVERHEAD);
}

/* --- decoding --------------------------------------------------------------------------- */

static const uint8_t *get_bytes(const uint8_t *p, const uint8_t *end, uint64_t n, gp_str *out) {
    if (!p || (uint64_t)(end - p) < n)
        return NULL;
    *out = (gp_str){p, (size_t)n};
    return p + n;
}

/* A u16-length string without NUL bytes (they would not survive the cache's C strings). */
static const uint8_t *get_str(const uint8_t *p, const uint8_t *end, gp_str *s) {
    uint64_t n = 0;
    p = gp_be_get(p, end, 2, &n);
    p = get_bytes(p, end, n, s);
    if (p && s->len && memchr(s->p, 0, s->len))
        return NULL;
    return p;
}

ssize_t hs_jrec_decode(const uint8_t *p, size_t len, hs_jrec *out) {
    const uint8_t *end = p + len;
    uint64_t n;
    if (!gp_be_get(p, end, 4, &n))
        return GP_ERR_TRUNCATED;
    if (n > HS_JREC_MAX)
        return GP_ERR_TOO_LARGE;
    if (len < 4 + n + HS_JREC_CHECK_LEN)
        return GP_ERR_TRUNCATED;
    uint8_t check[HS_JREC_CHECK_LEN];
    check_of(p, 4 + n, check);
    if (sodium_memcmp(check, p + 4 + n, HS_JREC_CHECK_LEN) != 0)
        return GP_ERR_MALFORMED;
    const uint8_t *q = p + 4, *pend = q + n;
    uint64_t type = 0, keep = 0, v = 0;
    memset(out, 0, offsetof(hs_jrec, hbuf));
    q = gp_be_get(q, pend, 1, &type);
    q = gp_be_get(q, pend, 8, &keep);
    q = get_str(q, pend, &out->frame_id);
    q = get_str(q, pend, &out->method);
    q = get_str(q, pend, &out->path);
    if (!q || out->frame_id.len == 0 || type < HS_JREC_START || type > HS_JREC_FORGET)
        return GP_ERR_MALFORMED;
    out->type = (uint8_t)type;
    out->keep_until_ms = keep;
    out->headers = out->hbuf;
    if (type == HS_JREC_DONE) {
        uint64_t status = 0, nh = 0;
        q = gp_be_get(q, pend, 2, &status);
        q = gp_be_get(q, pend, 2, &nh);
        if (!q || nh > GP_MAX_HEADERS || (status == 0 && nh))
            return GP_ERR_MALFORMED;
        out->status = (uint16_t)status;
        for (size_t i = 0; i < nh; i++) {
            q = get_str(q, pend, &out->hbuf[i].name);
            q = gp_be_get(q, pend, 4, &v);
            q = get_bytes(q, pend, v, &out->hbuf[i].value);
            if (!q)
                return GP_ERR_MALFORMED;
        }
        out->nheaders = (size_t)nh;
        q = gp_be_get(q, pend, 4, &v);
        if (!q || v > HS_JREC_MAX_BODY || (status == 0 && v))
            return GP_ERR_MALFORMED;
        q = get_bytes(q, pend, v, &out->body);
    }
    if (q != pend) /* overrun, or bytes the type does not have: not a record we wrote */
        return GP_ERR_MALFORMED;
    return (ssize_t)(4 + n + HS_JREC_CHECK_LEN);
}

/* --- the set of open calls -------------------------------------------------------------- */

#define JSET_BUCKETS 1024u

typedef struct jcall {
    struct jcall *hnext;       /* hash chain */
    struct jcall *prev, *next; /* insertion order */
    uint64_t keep_until_ms;
    gp_str frame_id, method, path; /* in key[] */
    uint8_t key[];
} jcall;

struct hs_jset {
    jcall *buckets[JSET_BUCKETS];
    jcall *oldest, *newest;
    size_t count;
};

static unsigned jhash(gp_str s) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < s.len; i++)
        h = (h ^ s.p[i]) * 16777619u;
    return h % JSET_BUCKETS;
}

static int str_eq(gp_str a, gp_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

hs_jset *hs_jset_new(void) {
    return calloc(1, sizeof(hs_jset));
}

static void jset_unlink(hs_jset *s, jcall *c) {
    GP_CHAIN_REMOVE(s->buckets[jhash(c->frame_id)], c, hnext);
    GP_LIST_UNLINK(s->oldest, s->newest, c, prev, next);
    s->count--;
    free(c);
}

void hs_jset_free(hs_jset *s) {
    if (!s)
        return;
    while (s->oldest)
        jset_unlink(s, s->oldest);
    free(s);
}

int hs_jset_add(hs_jset *s, gp_str frame_id, gp_str method, gp_str path, uint64_t keep_until_ms) {
    jcall *c = malloc(sizeof *c + frame_id.len + method.len + path.len + 1);
    if (!c)
        return GP_ERR_NOMEM;
    uint8_t *k = c->key;
    c->frame_id = (gp_str){k, frame_id.len};
    k = put_bytes(k, frame_id.p, frame_id.len);
    c->method = (gp_str){k, method.len};
    k = put_bytes(k, method.p, method.len);
    c->path = (gp_str){k, path.len};
    put_bytes(k, path.p, path.len);
    c->keep_until_ms = keep_until_ms;
    unsigned b = jhash(frame_id);
    c->hnext = s->buckets[b];
    s->buckets[b] = c;
    GP_LIST_APPEND(s->oldest, s->newest, c, prev, next);
    s->count++;
    return 0;
}

int hs_jset_remove(hs_jset *s, gp_str frame_id, gp_str method, gp_str path) {
    /* Chains are newest first: the last match is the oldest. */
    jcall *found = NULL;
    for (jcall *c = s->buckets[jhash(frame_id)]; c; c = c->hnext)
        if (str_eq(c->frame_id, frame_id) && str_eq(c->method, method) && str_eq(c->path, path))
            found = c;
    if (!found)
        return 0;
    jset_unlink(s, found);
    return 1;
}

void hs_jset_prune(hs_jset *s, uint64_t now_ms) {
    for (jcall *c = s->oldest, *n; c; c = n) {
        n = c->next;
        if (c->keep_until_ms <= now_ms)
            jset_unlink(s, c);
    }
}

size_t hs_jset_count(const hs_jset *s) {
    return s->count;
}

void hs_jset_each(const hs_jset *s,
                  void (*fn)(void *ud, gp_str frame_id, gp_str method, gp_str path,
                             uint64_t keep_until_ms),
                  void *ud) {
    for (const jcall *c = s->oldest; c; c = c->next)
        fn(ud, c->frame_id, c->method, c->path, c->keep_until_ms);
}

/* --- rebuilding the cache --------------------------------------------------------------- */

/* Longest keep-until a record can have: the longest timeout_ms (24 h) plus the cache's slack,
 * rounded up. */
#define KEEP_MAX_MS (25ull * 3600u * 1000u)

typedef struct jload {
    hs_cache *cache;
    uint64_t now_wall, now_mono;
    int oom;
} jload;

static char *cstr(gp_str s) {
    char *p = malloc(s.len + 1);
    if (p) {
        put_bytes((uint8_t *)p, s.p, s.len);
        p[s.len] = '\0';
    }
    return p;
}

/* Puts a response (status 0: a tombstone) into the cache, kept until keep_wall. */
static void insert(jload *l, gp_str frame_id, gp_str method, gp_str path, uint64_t keep_wall,
                   uint16_t status, const gp_header *h, size_t nh, gp_str body) {
    char *id = cstr(frame_id), *m = cstr(method), *pa = cstr(path);
    hs_centry *e = id && m && pa ? hs_cache_begin(l->cache, id, m, pa, status, h, nh) : NULL;
    free(id);
    free(m);
    free(pa);
    if (!e || hs_cache_append(e, body.p, body.len) != 0) {
        hs_cache_discard(e);
        l->oom = 1;
        return;
    }
    /* Nothing is kept longer than the longest deadline allows: a clock that was far ahead
     * when the record was written (or a hostile value) cannot pin an entry for ever. */
    uint64_t left = keep_wall - l->now_wall;
    if (hs_cache_commit_until(l->cache, e, l->now_mono,
                              l->now_mono + (left < KEEP_MAX_MS ? left : KEEP_MAX_MS)) != 0)
        l->oom = 1;
}

static void insert_tombstone(void *ud, gp_str frame_id, gp_str method, gp_str path,
                             uint64_t keep_wall) {
    jload *l = ud;
    if (keep_wall > l->now_wall)
        insert(l, frame_id, method, path, keep_wall, 0, NULL, 0, (gp_str){NULL, 0});
}

static void count_entry(void *ud, const hs_centry *e) {
    hs_jload_stats *st = ud;
    if (hs_cache_status(e))
        st->entries++;
    else
        st->tombstones++;
}

int hs_journal_load(hs_cache *c, const uint8_t *p, size_t len, uint64_t now_wall_ms,
                    uint64_t now_mono_ms, hs_jload_stats *st) {
    memset(st, 0, sizeof *st);
    if (len == 0)
        return 0;
    size_t m = len < HS_JOURNAL_MAGIC_LEN ? len : HS_JOURNAL_MAGIC_LEN;
    if (memcmp(p, HS_JOURNAL_MAGIC, m) != 0) {
        st->err = GP_ERR_VERSION;
        return 0;
    }
    if (len < HS_JOURNAL_MAGIC_LEN) {
        st->err = GP_ERR_TRUNCATED; /* a new file's magic, torn */
        return 0;
    }
    hs_jset *open = hs_jset_new();
    hs_jrec *r = malloc(sizeof *r);
    if (!open || !r) {
        hs_jset_free(open);
        free(r);
        return GP_ERR_NOMEM;
    }
    jload l = {c, now_wall_ms, now_mono_ms, 0};
    size_t off = HS_JOURNAL_MAGIC_LEN;
    while (off < len && !l.oom) {
        ssize_t n = hs_jrec_decode(p + off, len - off, r);
        if (n < 0) {
            st->err = (int)n;
            break;
        }
        off += (size_t)n;
        st->records++;
        int live = r->keep_until_ms > now_wall_ms;
        if (r->type == HS_JREC_START) {
            /* Tracked even when expired: its DONE or FORGET still has to find it. */
            if (hs_jset_add(open, r->frame_id, r->method, r->path, r->keep_until_ms) != 0)
                l.oom = 1;
            continue;
        }
        hs_jset_remove(open, r->frame_id, r->method, r->path);
        if (r->type == HS_JREC_FORGET)
            continue;
        if (!live)
            st->expired++;
        else
            insert(&l, r->frame_id, r->method, r->path, r->keep_until_ms, r->status, r->headers,
                   r->nheaders, r->body);
    }
    st->good_bytes = off;
    /* A START that never ended may have run: remember it as having run. */
    if (!l.oom) {
        size_t before = hs_jset_count(open);
        hs_jset_prune(open, now_wall_ms);
        st->expired += before - hs_jset_count(open);
        hs_jset_each(open, insert_tombstone, &l);
    }
    hs_jset_free(open);
    free(r);
    hs_cache_each(c, count_entry, st);
    return l.oom ? GP_ERR_NOMEM : 0;
}
