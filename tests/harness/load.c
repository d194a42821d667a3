/* load.c — see load.h. Test-only I/O: blocking hiredis clients, one per thread (a hiredis
 * context is not thread-safe, so no context is ever shared), POSIX threads, the monotonic
 * clock. The only shared state is the request table, under one mutex, plus a few atomic
 * flags.
 *
 * A request's index in the table is part of its frame id ("<tag>-<index>", the tag unique to
 * this process and load), so matching a reply to its request is a parse and a bounds check,
 * not a search: tens of thousands of requests cost nothing to match. */
#include "load.h"
#include "../../bridge/store/rclient.h"

#include "harness.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PRODUCERS 64
#define BACKOFF_MIN_MS 20
#define BACKOFF_MAX_MS 500
#define CMD_TIMEOUT_MS 2000 /* > READ_BLOCK_MS: a blocked XREAD is not a dead connection */
#define READ_BLOCK_MS "500"
#define STEP_MS 50         /* longest sleep between looks at the stop/quit flags */
#define MAX_BEHIND_MS 1000 /* a producer further behind its schedule drops the missed slots */

typedef struct ld_req {
    uint64_t sent_ms;  /* first XADD attempt: the latency clock starts here */
    uint64_t acked_ms; /* Redis acknowledged the XADD (0: not yet) */
    uint64_t first_ms; /* first final reply */
    int status;        /* of the first final reply */
    uint32_t finals;   /* final entries seen for this frame id; > 1: duplicates */
    uint32_t chunks;   /* non-final entries before the first final */
    uint8_t fault;     /* first attempt inside the fault window */
} ld_req;

typedef struct ld_worker {
    h_load *l;
    int k;
    char reply_key[128];
    pthread_t producer, reader;
    int has_producer, has_reader;
    atomic_int producing; /* 1 until the producer leaves its send loop */
} ld_worker;

struct h_load {
    int nprod, rate, port;
    unsigned timeout_ms;
    char **houses;
    size_t nhouses;
    char *path, *prefix;
    char tag[48]; /* frame ids are "<tag>-<index>" */
    atomic_int stop, quit, fault;
    pthread_mutex_t mu; /* guards everything below */
    ld_req *reqs;
    size_t n, cap;
    long resent, stray, upstream_dup;
    ld_worker w[]; /* nprod workers */
};

static atomic_int g_loads; /* per process: unique tags and reply keys */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void) {
    return now_ns() / 1000000ull;
}

static void sleep_abs_ns(uint64_t t) {
    struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* Sleeps until monotonic time t (ns), looking at *flag every STEP_MS. 1: reached t, 0: the
 * flag was raised first. */
static int sleep_until(const atomic_int *flag, uint64_t t) {
    for (;;) {
        if (atomic_load(flag))
            return 0;
        uint64_t now = now_ns();
        if (now >= t)
            return 1;
        uint64_t step = (uint64_t)STEP_MS * 1000000ull;
        sleep_abs_ns(t - now > step ? now + step : t);
    }
}

/* Bounded exponential backoff; 0 when quitting. */
static int backoff(h_load *l, unsigned *ms) {
    int ok = sleep_until(&l->quit, now_ns() + (uint64_t)*ms * 1000000ull);
    *ms = *ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *ms * 2;
    return ok;
}

/* Error replies worth re-sending: the server is loading its AOF or is otherwise busy. */
static int transient_error(const char *s) {
    static const char *const t[] = {"LOADING",    "BUSY",        "TRYAGAIN",
                                    "MASTERDOWN", "CLUSTERDOWN", NULL};
    for (int i = 0; t[i]; i++)
        if (strncmp(s, t[i], strlen(t[i])) == 0)
            return 1;
    return 0;
}

/* --- the request table --------------------------------------------------------------------- */

/* A new request, sent now. Returns its index, or (size_t)-1 when out of memory. */
static size_t table_add(h_load *l) {
    uint64_t t = now_ms();
    pthread_mutex_lock(&l->mu);
    size_t i = (size_t)-1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        ld_req *r = realloc(l->reqs, cap * sizeof *r);
        if (!r)
            goto out;
        l->reqs = r;
        l->cap = cap;
    }
    i = l->n++;
    l->reqs[i] = (ld_req){.sent_ms = t, .fault = (uint8_t)(atomic_load(&l->fault) != 0)};
out:
    pthread_mutex_unlock(&l->mu);
    return i;
}

/* The index in frame id s (len bytes) if it is one of ours, else (size_t)-1. Caller holds
 * the mutex. */
static size_t parse_fid(const h_load *l, const char *s, size_t len) {
    size_t tl = strlen(l->tag);
    if (len <= tl + 1 || memcmp(s, l->tag, tl) != 0 || s[tl] != '-')
        return (size_t)-1;
    size_t v = 0;
    for (size_t i = tl + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (SIZE_MAX - 9) / 10)
            return (size_t)-1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    return v < l->n ? v : (size_t)-1;
}

static const redisReply *fv_get(const redisReply *fv, const char *name) {
    if (!fv || fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return fv->element[i + 1]->type == REDIS_REPLY_STRING ? fv->element[i + 1] : NULL;
    }
    return NULL;
}

/* One XREAD reply: [[key, [[entry id, [field, value, ...]], ...]]]. Records each entry
 * against its request and moves *last past it. */
static void take_replies(h_load *l, const redisReply *r, char *last, size_t lastcap) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return;
    const redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    const redisReply *entries = s->element[1];
    uint64_t t = now_ms();
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(last, lastcap, "%s", e->element[0]->str);
        const redisReply *fv = e->element[1];
        const redisReply *id = fv_get(fv, "id");
        size_t k = id ? parse_fid(l, id->str, id->len) : (size_t)-1;
        if (k == (size_t)-1) {
            l->stray++;
            continue;
        }
        ld_req *q = &l->reqs[k];
        const redisReply *fin = fv_get(fv, "final");
        if (fin && strcmp(fin->str, "1") == 0) {
            if (q->finals++ == 0) {
                const redisReply *st = fv_get(fv, "status");
                q->status = st ? atoi(st->str) : -1;
                q->first_ms = t;
            }
        } else if (!q->finals) {
            q->chunks++;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

/* --- threads ------------------------------------------------------------------------------- */

/* XADDs request i until Redis acknowledges it, reconnecting (*cp) as needed; gives up only
 * when quitting or when Redis rejects the request outright (then it stays unanswered and is
 * counted lost). */
static void send_request(h_load *l, ld_worker *w, br_rc *c, size_t i) {
    char fid[96], key[320], hdr[160], tmo[16];
    snprintf(fid, sizeof fid, "%s-%zu", l->tag, i);
    snprintf(key, sizeof key, "%s:{%s}:req", l->prefix, l->houses[i % l->nhouses]);
    snprintf(hdr, sizeof hdr, "{\"x-frame-id\":\"%s\"}", fid);
    snprintf(tmo, sizeof tmo, "%u", l->timeout_ms);
    const char *argv[] = {"XADD",    key, "MAXLEN",     "~",   "10000", "*",
                          "id",      fid, "method",     "GET", "path",  l->path,
                          "headers", hdr, "timeout_ms", tmo,   "reply", w->reply_key};
    int argc = (int)(sizeof argv / sizeof argv[0]);
    unsigned bo = BACKOFF_MIN_MS;
    int issued = 0, failures = 0;
    char why[256];
    while (!atomic_load(&l->quit)) {
        {
            redisReply *r = br_rc_cmdv(c, argc, argv, NULL);
            if (issued++) {
                pthread_mutex_lock(&l->mu);
                l->resent++;
                pthread_mutex_unlock(&l->mu);
            }
            if (r && r->type == REDIS_REPLY_STRING) {
                freeReplyObject(r);
                pthread_mutex_lock(&l->mu);
                l->reqs[i].acked_ms = now_ms();
                pthread_mutex_unlock(&l->mu);
                if (failures)
                    fprintf(stderr, "load: producer %d: XADD %s acknowledged after %d failures\n",
                            w->k, fid, failures);
                return;
            }
            if (r && r->type == REDIS_REPLY_ERROR && !transient_error(r->str)) {
                fprintf(stderr, "load: producer %d: XADD %s rejected: %s\n", w->k, fid, r->str);
                freeReplyObject(r);
                return;
            }
            if (r) {
                snprintf(why, sizeof why, "%s",
                         r->type == REDIS_REPLY_ERROR ? r->str : "odd reply");
                freeReplyObject(r);
            } else {
                snprintf(why, sizeof why, "XADD: %s", br_rc_error(c));
            }
        }
        if (failures++ == 0)
            fprintf(stderr, "load: producer %d: XADD %s failed (%s); retrying\n", w->k, fid, why);
        if (!backoff(l, &bo))
            return;
    }
}

/* Sends on an absolute schedule: producer k's n-th request is due at start + offset_k +
 * n * period, whatever each send took, so the rate does not drift. */
static void *producer_main(void *arg) {
    ld_worker *w = arg;
    h_load *l = w->l;
    br_rc *c = h_redis_client(l->port, CMD_TIMEOUT_MS);
    uint64_t period = (uint64_t)l->nprod * 1000000000ull / (uint64_t)l->rate;
    uint64_t next = now_ns() + period * (uint64_t)w->k / (uint64_t)l->nprod;
    while (sleep_until(&l->stop, next)) {
        size_t i = table_add(l);
        if (i == (size_t)-1) {
            fprintf(stderr, "load: producer %d: out of memory\n", w->k);
            break;
        }
        send_request(l, w, c, i);
        next += period;
        uint64_t t = now_ns();
        if (t > next + (uint64_t)MAX_BEHIND_MS * 1000000ull)
            next = t; /* a long outage: resume the pace instead of bursting the backlog */
    }
    br_rc_free(c);
    atomic_store(&w->producing, 0);
    return NULL;
}

/* XREAD BLOCK on this worker's reply stream from the last id seen, until quit. */
static void *reader_main(void *arg) {
    ld_worker *w = arg;
    h_load *l = w->l;
    br_rc *c = h_redis_client(l->port, CMD_TIMEOUT_MS);
    char last[64] = "0-0", why[256];
    unsigned bo = BACKOFF_MIN_MS;
    int down = 0;
    while (!atomic_load(&l->quit)) {
        {
            const char *argv[] = {"XREAD",       "COUNT",   "1000",       "BLOCK",
                                  READ_BLOCK_MS, "STREAMS", w->reply_key, last};
            redisReply *r = br_rc_cmdv(c, 8, argv, NULL);
            if (r && r->type != REDIS_REPLY_ERROR) {
                take_replies(l, r, last, sizeof last);
                freeReplyObject(r);
                if (down)
                    fprintf(stderr, "load: reader %d: reading again from %s\n", w->k, last);
                down = 0;
                bo = BACKOFF_MIN_MS;
                continue;
            }
            if (r) {
                snprintf(why, sizeof why, "%s", r->str);
                freeReplyObject(r);
            } else {
                snprintf(why, sizeof why, "XREAD: %s", br_rc_error(c));
            }
        }
        if (!down++)
            fprintf(stderr, "load: reader %d: %s; retrying from %s\n", w->k, why, last);
        backoff(l, &bo);
    }
    br_rc_free(c);
    return NULL;
}

/* --- API ----------------------------------------------------------------------------------- */

static char *dup_or(const char *s, const char *d) {
    return strdup(s && *s ? s : d);
}

h_load *h_load_start(const h_load_cfg *cfg) {
    if (!cfg || !cfg->houses || cfg->nhouses == 0) {
        fprintf(stderr, "load: no house to send to\n");
        return NULL;
    }
    int np = cfg->producers > 0 ? cfg->producers : 4;
    if (np > MAX_PRODUCERS)
        np = MAX_PRODUCERS;
    h_load *l = calloc(1, sizeof *l + (size_t)np * sizeof(ld_worker));
    if (!l)
        return NULL;
    l->nprod = np;
    l->rate = cfg->rate > 0 ? cfg->rate : 100;
    l->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
    l->port = h_redis_port();
    l->path = dup_or(cfg->path, "/echo");
    l->prefix = dup_or(cfg->prefix, "gp");
    l->houses = calloc(cfg->nhouses, sizeof *l->houses);
    l->upstream_dup = -1;
    pthread_mutex_init(&l->mu, NULL);
    if (!l->path || !l->prefix || !l->houses)
        goto fail;
    l->nhouses = cfg->nhouses;
    for (size_t i = 0; i < cfg->nhouses; i++)
        if (!(l->houses[i] = strdup(cfg->houses[i])))
            goto fail;
    int n = atomic_fetch_add(&g_loads, 1) + 1;
    snprintf(l->tag, sizeof l->tag, "ld%dx%d", (int)getpid(), n);
    for (int k = 0; k < np; k++) {
        ld_worker *w = &l->w[k];
        w->l = l;
        w->k = k;
        snprintf(w->reply_key, sizeof w->reply_key, "%s:rep:load:%d:%d-%d", l->prefix,
                 (int)getpid(), n, k);
        atomic_init(&w->producing, 1);
    }
    for (int k = 0; k < np; k++) {
        ld_worker *w = &l->w[k];
        if (pthread_create(&w->reader, NULL, reader_main, w) != 0)
            goto fail;
        w->has_reader = 1;
        if (pthread_create(&w->producer, NULL, producer_main, w) != 0)
            goto fail;
        w->has_producer = 1;
    }
    return l;
fail:
    fprintf(stderr, "load: cannot start (out of memory or threads)\n");
    h_load_free(l);
    return NULL;
}

void h_load_run_for(h_load *l, int ms) {
    (void)l;
    if (ms > 0)
        sleep_abs_ns(now_ns() + (uint64_t)ms * 1000000ull);
}

void h_load_mark(h_load *l, int fault_on) {
    atomic_store(&l->fault, fault_on != 0);
}

void h_load_stop(h_load *l) {
    atomic_store(&l->stop, 1);
}

int h_load_settle(h_load *l, int grace_ms) {
    h_load_stop(l);
    for (;;) {
        int producing = 0;
        for (int k = 0; k < l->nprod; k++)
            producing |= atomic_load(&l->w[k].producing);
        uint64_t t = now_ms();
        size_t open = 0, overdue = 0;
        pthread_mutex_lock(&l->mu);
        for (size_t i = 0; i < l->n; i++) {
            const ld_req *q = &l->reqs[i];
            if (q->finals)
                continue;
            open++;
            uint64_t base = q->acked_ms ? q->acked_ms : q->sent_ms;
            if (t >= base + l->timeout_ms + (uint64_t)(grace_ms > 0 ? grace_ms : 0))
                overdue++;
        }
        pthread_mutex_unlock(&l->mu);
        /* A producer still in its loop either is about to leave it or is re-sending a request
         * (then that request is open): neither case can make this wait unbounded. */
        if (!open && !producing)
            return 1;
        if (open && open == overdue)
            return 0;
        sleep_abs_ns(now_ns() + 10 * 1000000ull);
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values (0 when n is 0). */
static double pct(const uint32_t *v, size_t n, double p) {
    if (!n)
        return 0;
    size_t r = (size_t)(p * (double)n + 0.999999);
    if (r < 1)
        r = 1;
    return v[(r > n ? n : r) - 1];
}

h_load_result h_load_result_get(h_load *l) {
    h_load_result res = {0};
    pthread_mutex_lock(&l->mu);
    size_t n = l->n;
    uint32_t *lat = malloc((n ? n : 1) * sizeof *lat);
    uint32_t *latf = malloc((n ? n : 1) * sizeof *latf);
    size_t na = 0, nf = 0;
    for (size_t i = 0; i < n && lat && latf; i++) {
        const ld_req *q = &l->reqs[i];
        if (!q->finals)
            continue;
        res.answered++;
        res.dup_replies += (long)q->finals - 1;
        if (q->status >= 200 && q->status < 300)
            res.s2xx++;
        else if (q->status >= 400 && q->status < 500)
            res.s4xx++;
        else if (q->status >= 500 && q->status < 600)
            res.s5xx++;
        if (q->status == 504)
            res.s504++;
        uint32_t ms = q->first_ms > q->sent_ms ? (uint32_t)(q->first_ms - q->sent_ms) : 0;
        lat[na++] = ms;
        if (q->fault)
            latf[nf++] = ms;
    }
    res.sent = (long)n;
    res.lost = res.sent - res.answered;
    res.upstream_dup = l->upstream_dup;
    res.resent = l->resent;
    res.stray = l->stray;
    pthread_mutex_unlock(&l->mu);
    if (lat && latf) {
        qsort(lat, na, sizeof *lat, cmp_u32);
        qsort(latf, nf, sizeof *latf, cmp_u32);
        res.p50_ms = pct(lat, na, 0.50);
        res.p99_ms = pct(lat, na, 0.99);
        res.max_ms = na ? lat[na - 1] : 0;
        res.p99_fault_ms = pct(latf, nf, 0.99);
    } else {
        fprintf(stderr, "load: out of memory computing latencies\n");
    }
    free(lat);
    free(latf);
    return res;
}

long h_load_check_upstream(h_load *l, int upstream_port) {
    char *body = NULL;
    int st = h_http_get(upstream_port, "/hits", &body);
    json_error_t je;
    json_t *o = st == 200 && body ? json_loads(body, 0, &je) : NULL;
    free(body);
    if (!json_is_object(o)) {
        fprintf(stderr, "load: GET /hits on upstream port %d: status %d, no JSON object\n",
                upstream_port, st);
        json_decref(o);
        return -1;
    }
    size_t tl = strlen(l->tag);
    long dup = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (strncmp(k, l->tag, tl) == 0 && k[tl] == '-' && json_is_integer(v) &&
            json_integer_value(v) > 1) {
            if (dup < 10)
                fprintf(stderr, "load: upstream ran %s %" JSON_INTEGER_FORMAT " times\n", k,
                        json_integer_value(v));
            dup++;
        }
    }
    json_decref(o);
    pthread_mutex_lock(&l->mu);
    l->upstream_dup = dup;
    pthread_mutex_unlock(&l->mu);
    return dup;
}

void h_load_report(h_load *l, const char *name) {
    h_load_result r = h_load_result_get(l);
    char line[512];
    int n = snprintf(line, sizeof line,
                     "fault=%s requests=%ld lost=%ld dup_replies=%ld 5xx=%ld p50_ms=%.0f "
                     "p99_ms=%.0f p99_fault_ms=%.0f upstream_dup=%ld\n",
                     name ? name : "unnamed", r.sent, r.lost, r.dup_replies, r.s5xx, r.p50_ms,
                     r.p99_ms, r.p99_fault_ms, r.upstream_dup);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1, line[n - 1] = '\n';
    fputs(line, stdout);
    fflush(stdout);
    const char *build = getenv("BUILD");
    char path[4096];
    snprintf(path, sizeof path, "%s/fault-results.txt", build && *build ? build : "build");
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    /* One write(2) of the whole line: concurrent test processes never interleave. */
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        fprintf(stderr, "load: cannot append to %s\n", path);
    if (fd >= 0)
        close(fd);
}

void h_load_free(h_load *l) {
    if (!l)
        return;
    atomic_store(&l->stop, 1);
    atomic_store(&l->quit, 1);
    for (int k = 0; k < l->nprod; k++) {
        if (l->w[k].has_producer)
            pthread_join(l->w[k].producer, NULL);
        if (l->w[k].has_reader)
            pthread_join(l->w[k].reader, NULL);
    }
    pthread_mutex_destroy(&l->mu);
    for (size_t i = 0; l->houses && i < l->nhouses; i++)
        free(l->houses[i]);
    free(l->houses);
    free(l->path);
    free(l->prefix);
    free(l->reqs);
    free(l);
}
