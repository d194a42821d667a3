/* cache.c — recent responses by frame id, so that a request the bridge delivers again (it
 * crashed after we answered but before it acknowledged, or the connection dropped in between)
 * gets the remembered response instead of running twice (DESIGN.md, delivery guarantees).
 * Only complete upstream replies are kept, each at most CACHE_ENTRY_MAX body bytes, for
 * CACHE_TTL_MS, within a CACHE_TOTAL_MAX byte budget (least recently stored goes first).
 * Pure bookkeeping; the caller passes the time. */
#include "house.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_ENTRY_MAX (1u << 20)
#define CACHE_TOTAL_MAX (32u << 20)
#define CACHE_TTL_MS (10u * 60u * 1000u)
#define CACHE_BUCKETS 1024u

struct hs_centry {
    hs_centry *hnext;         /* hash chain */
    hs_centry *older, *newer; /* age list */
    char *frame_id, *method, *path;
    uint16_t status;
    gp_header *headers;
    size_t nheaders;
    uint8_t *body;
    size_t len, cap;
    size_t bytes; /* accounted size */
    uint64_t stored_ms;
    int in_table;
};

static struct {
    hs_centry *buckets[CACHE_BUCKETS];
    hs_centry *oldest, *newest;
    size_t bytes;
} C;

static unsigned hash(const char *s) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void entry_free(hs_centry *e) {
    if (!e)
        return;
    free(e->frame_id);
    free(e->method);
    free(e->path);
    free(e->headers); /* names and values live in the same block */
    free(e->body);
    free(e);
}

static void unlink_entry(hs_centry *e) {
    hs_centry **pp = &C.buckets[hash(e->frame_id)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        C.oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        C.newest = e->older;
    C.bytes -= e->bytes;
    e->in_table = 0;
}

static void expire(uint64_t now) {
    while (C.oldest && (now - C.oldest->stored_ms > CACHE_TTL_MS || C.bytes > CACHE_TOTAL_MAX)) {
        hs_centry *e = C.oldest;
        unlink_entry(e);
        entry_free(e);
    }
}

hs_centry *hs_cache_begin(const char *frame_id, const char *method, const char *path,
                          uint16_t status, const gp_header *h, size_t nh) {
    if (!frame_id || !*frame_id)
        return NULL;
    hs_centry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    size_t hb = 0;
    for (size_t i = 0; i < nh; i++)
        hb += h[i].name.len + h[i].value.len;
    e->frame_id = strdup(frame_id);
    e->method = strdup(method);
    e->path = strdup(path);
    e->headers = malloc(nh * sizeof *e->headers + hb + 1);
    if (!e->frame_id || !e->method || !e->path || !e->headers) {
        entry_free(e);
        return NULL;
    }
    uint8_t *p = (uint8_t *)(e->headers + nh);
    for (size_t i = 0; i < nh; i++) {
        memcpy(p, h[i].name.p, h[i].name.len);
        e->headers[i].name = (gp_str){p, h[i].name.len};
        p += h[i].name.len;
        memcpy(p, h[i].value.p, h[i].value.len);
        e->headers[i].value = (gp_str){p, h[i].value.len};
        p += h[i].value.len;
    }
    e->nheaders = nh;
    e->status = status;
    e->bytes =
        sizeof *e + strlen(frame_id) + strlen(method) + strlen(path) + hb + nh * sizeof *e->headers;
    return e;
}

int hs_cache_append(hs_centry *e, const uint8_t *p, size_t len) {
    if (e->len + len > CACHE_ENTRY_MAX)
        return -1;
    if (e->len + len > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4096;
        while (cap < e->len + len)
            cap *= 2;
        uint8_t *b = realloc(e->body, cap);
        if (!b)
            return -1;
        e->body = b;
        e->cap = cap;
    }
    if (len)
        memcpy(e->body + e->len, p, len);
    e->len += len;
    return 0;
}

void hs_cache_discard(hs_centry *e) {
    entry_free(e);
}

void hs_cache_commit(hs_centry *e, uint64_t now) {
    for (hs_centry *o = C.buckets[hash(e->frame_id)], *n; o; o = n) {
        n = o->hnext;
        if (strcmp(o->frame_id, e->frame_id) == 0) {
            unlink_entry(o);
            entry_free(o);
        }
    }
    e->bytes += e->len;
    e->stored_ms = now;
    unsigned b = hash(e->frame_id);
    e->hnext = C.buckets[b];
    C.buckets[b] = e;
    e->older = C.newest;
    e->newer = NULL;
    if (C.newest)
        C.newest->newer = e;
    else
        C.oldest = e;
    C.newest = e;
    C.bytes += e->bytes;
    e->in_table = 1;
    expire(now);
}

const hs_centry *hs_cache_find(const char *frame_id, const char *method, const char *path,
                               uint64_t now) {
    expire(now);
    if (!frame_id || !*frame_id)
        return NULL;
    for (hs_centry *e = C.buckets[hash(frame_id)]; e; e = e->hnext)
        if (strcmp(e->frame_id, frame_id) == 0)
            /* The same id for another request is a producer bug: run it, do not replay. */
            return strcmp(e->method, method) == 0 && strcmp(e->path, path) == 0 ? e : NULL;
    return NULL;
}

uint16_t hs_cache_status(const hs_centry *e) {
    return e->status;
}
const gp_header *hs_cache_headers(const hs_centry *e, size_t *n) {
    *n = e->nheaders;
    return e->headers;
}
gp_str hs_cache_body(const hs_centry *e) {
    return (gp_str){e->body, e->len};
}

void hs_cache_clear(void) {
    while (C.oldest) {
        hs_centry *e = C.oldest;
        unlink_entry(e);
        entry_free(e);
    }
}
