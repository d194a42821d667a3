/* cache.c — recent responses by frame id, so that a request the bridge delivers again (it
 * crashed after we answered but before it acknowledged, or the connection dropped in between)
 * gets the remembered response instead of running twice (README.md, "Delivery guarantees").
 *
 * What is kept, and for how long: complete upstream replies of at most CACHE_ENTRY_MAX body
 * bytes, each at least until the later of CACHE_TTL_MS after it was stored and its request's
 * deadline (plus CACHE_SLACK_MS) — a request is never delivered after its deadline, so that is
 * as long as a redelivery can come. (Expiry walks each list from its oldest end, so an entry
 * behind a long-lived one may stay longer; the budget bounds that.) All of it fits a
 * CACHE_TOTAL_MAX byte budget and CACHE_MAX_ENTRIES entries. When the budget is short, the oldest
 * responses give up their bodies first and become tombstones ("this ran, its response is not kept":
 * a redelivery is answered 502 replay_unavailable, never run twice); only past the budget in
 * tombstones alone does an entry go before its time (counted in hs_cache_stats, the one way
 * at-most-once can be lost). Pure bookkeeping; the caller passes the time. With --state-dir
 * the journal (journal.h) mirrors every commit on disk and rebuilds this cache at start-up
 * (hs_cache_commit_until, with each entry's own keep-until); compaction reads it back
 * (hs_cache_each). */
#include "buf.h"
#include "house.h"
#include "journal.h"
#include "list.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_ENTRY_MAX (1u << 20)
#define CACHE_TOTAL_MAX (32u << 20)
#define CACHE_MAX_ENTRIES 200000u
#define CACHE_TTL_MS (10u * 60u * 1000u)
#define CACHE_SLACK_MS 60000u
#define CACHE_BUCKETS 65536u /* 200,000 entries: short chains */

_Static_assert(CACHE_ENTRY_MAX <= HS_JREC_MAX_BODY,
               "every cacheable response fits a journal record");

typedef struct hs_clist {
    hs_centry *oldest, *newest;
} hs_clist;

struct hs_centry {
    hs_centry *hnext;         /* hash chain */
    hs_centry *older, *newer; /* its age list: c->full or c->tombs */
    char *frame_id, *method, *path;
    uint16_t status; /* 0: tombstone */
    gp_header *headers;
    size_t nheaders;
    uint8_t *body;
    size_t len, cap;
    size_t bytes; /* accounted size */
    uint64_t keep_until_ms;
    int in_table;
};

/* One house's cache. */
struct hs_cache {
    hs_centry **buckets;  /* CACHE_BUCKETS, from the first commit: an idle house costs little */
    hs_clist full, tombs; /* each oldest first */
    size_t bytes, count;
    uint64_t evicted_early;
    uint64_t keep_ms; /* hs_cache_set_keep; 0: the retention the caller asks */
};

static unsigned hash(const char *s) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void entry_free(hs_centry *e) {
    if (!e)
        return;
    /* headers: names and values live in the same block */
    GP_FREE_ALL(e->frame_id, e->method, e->path, e->headers, e->body, e);
}

static hs_clist *list_of(hs_cache *c, hs_centry *e) {
    return e->status ? &c->full : &c->tombs;
}

static void list_remove(hs_clist *l, hs_centry *e) {
    GP_LIST_UNLINK(l->oldest, l->newest, e, older, newer);
    e->older = e->newer = NULL;
}

static void list_append(hs_clist *l, hs_centry *e) {
    GP_LIST_APPEND(l->oldest, l->newest, e, older, newer);
}

static void unlink_entry(hs_cache *c, hs_centry *e) {
    GP_CHAIN_REMOVE(c->buckets[hash(e->frame_id)], e, hnext);
    list_remove(list_of(c, e), e);
    c->bytes -= e->bytes;
    c->count--;
    e->in_table = 0;
}

static size_t base_bytes(const hs_centry *e) {
    return sizeof *e + strlen(e->frame_id) + strlen(e->method) + strlen(e->path);
}

/* Keeps the entry's identity, drops what it answered with. */
static void make_tombstone(hs_cache *c, hs_centry *e) {
    list_remove(&c->full, e);
    free(e->headers);
    free(e->body);
    e->headers = NULL;
    e->body = NULL;
    e->nheaders = e->len = e->cap = 0;
    e->status = 0;
    c->bytes -= e->bytes;
    e->bytes = base_bytes(e);
    c->bytes += e->bytes;
    list_append(&c->tombs, e);
}

static void drop_expired(hs_cache *c, hs_clist *l, uint64_t now) {
    while (l->oldest && now >= l->oldest->keep_until_ms) {
        hs_centry *e = l->oldest;
        unlink_entry(c, e);
        entry_free(e);
    }
}

static void expire(hs_cache *c, uint64_t now) {
    drop_expired(c, &c->full, now);
    drop_expired(c, &c->tombs, now);
    while (c->bytes > CACHE_TOTAL_MAX && c->full.oldest)
        make_tombstone(c, c->full.oldest);
    while ((c->bytes > CACHE_TOTAL_MAX || c->count > CACHE_MAX_ENTRIES) && c->tombs.oldest) {
        hs_centry *e = c->tombs.oldest;
        unlink_entry(c, e);
        entry_free(e);
        c->evicted_early++;
    }
}

hs_cache *hs_cache_new(void) {
    return calloc(1, sizeof(hs_cache));
}

void hs_cache_set_keep(hs_cache *c, uint64_t keep_ms) {
    c->keep_ms = keep_ms;
}

void hs_cache_free(hs_cache *c) {
    if (!c)
        return;
    hs_cache_clear(c);
    free(c->buckets);
    free(c);
}

hs_centry *hs_cache_begin(hs_cache *c, const char *frame_id, const char *method, const char *path,
                          uint16_t status, const gp_header *h, size_t nh) {
    (void)c; /* an entry joins its cache at commit */
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
    e->bytes = base_bytes(e) + hb + nh * sizeof *e->headers;
    return e;
}

int hs_cache_append(hs_centry *e, const uint8_t *p, size_t len) {
    if (e->len + len > CACHE_ENTRY_MAX)
        return -1;
    if (gp_grow(&e->body, &e->cap, e->len + len, 4096, 1) != 0)
        return -1;
    if (len)
        memcpy(e->body + e->len, p, len);
    e->len += len;
    return 0;
}

void hs_cache_discard(hs_centry *e) {
    entry_free(e);
}

uint64_t hs_cache_retention(uint64_t now, uint64_t deadline_ms) {
    uint64_t keep = now + CACHE_TTL_MS;
    return deadline_ms + CACHE_SLACK_MS > keep ? deadline_ms + CACHE_SLACK_MS : keep;
}

int hs_cache_commit(hs_cache *c, hs_centry *e, uint64_t now, uint64_t deadline_ms) {
    return hs_cache_commit_until(c, e, now, hs_cache_retention(now, deadline_ms));
}

int hs_cache_commit_until(hs_cache *c, hs_centry *e, uint64_t now, uint64_t keep_until_ms) {
    if (c->keep_ms)
        keep_until_ms = c->keep_ms > UINT64_MAX - now ? UINT64_MAX : now + c->keep_ms;
    if (!c->buckets && !(c->buckets = calloc(CACHE_BUCKETS, sizeof *c->buckets))) {
        entry_free(e);
        c->evicted_early++; /* not kept: counted as the one way at-most-once is lost */
        return -1;
    }
    for (hs_centry *o = c->buckets[hash(e->frame_id)], *n; o; o = n) {
        n = o->hnext;
        if (strcmp(o->frame_id, e->frame_id) == 0) {
            unlink_entry(c, o);
            entry_free(o);
        }
    }
    /* The budget counts what is kept: give back the spare room of the recording buffer (it
     * starts at 4 KiB; a 100-byte response kept 4 KiB each, 40x over the budget). */
    if (e->cap > e->len) {
        uint8_t *b = e->len ? realloc(e->body, e->len) : NULL;
        if (!e->len)
            free(e->body);
        if (b || !e->len) {
            e->body = b;
            e->cap = e->len;
        }
    }
    e->bytes += e->len;
    e->keep_until_ms = keep_until_ms;
    unsigned b = hash(e->frame_id);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    list_append(list_of(c, e), e);
    c->bytes += e->bytes;
    c->count++;
    e->in_table = 1;
    expire(c, now);
    return 0;
}

const hs_centry *hs_cache_find(hs_cache *c, const char *frame_id, const char *method,
                               const char *path, uint64_t now) {
    expire(c, now);
    if (!frame_id || !*frame_id || !c->buckets)
        return NULL;
    for (hs_centry *e = c->buckets[hash(frame_id)]; e; e = e->hnext)
        if (strcmp(e->frame_id, frame_id) == 0)
            /* The same id for another request is a producer bug: run it, do not replay. */
            return strcmp(e->method, method) == 0 && strcmp(e->path, path) == 0 ? e : NULL;
    return NULL;
}

const char *hs_cache_frame_id(const hs_centry *e) {
    return e->frame_id;
}
const char *hs_cache_method(const hs_centry *e) {
    return e->method;
}
const char *hs_cache_path(const hs_centry *e) {
    return e->path;
}
uint64_t hs_cache_kept_until(const hs_centry *e) {
    return e->keep_until_ms;
}
size_t hs_cache_budget(hs_cache *c) {
    (void)c;
    return CACHE_TOTAL_MAX;
}

void hs_cache_each(hs_cache *c, void (*fn)(void *ud, const hs_centry *e), void *ud) {
    for (const hs_centry *e = c->tombs.oldest; e; e = e->newer)
        fn(ud, e);
    for (const hs_centry *e = c->full.oldest; e; e = e->newer)
        fn(ud, e);
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

void hs_cache_stats(hs_cache *c, size_t *entries, size_t *bytes, uint64_t *evicted_early) {
    *entries = c->count;
    *bytes = c->bytes;
    *evicted_early = c->evicted_early;
}

void hs_cache_clear(hs_cache *c) {
    hs_clist *lists[2] = {&c->full, &c->tombs};
    for (int i = 0; i < 2; i++)
        while (lists[i]->oldest) {
            hs_centry *e = lists[i]->oldest;
            unlink_entry(c, e);
            entry_free(e);
        }
}
