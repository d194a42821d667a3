/* store_hist.c — the request history's buckets, records and parser (store_hist.h). Pure. */
#include "store_hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- buckets ---------------------------------------------------------------------------- */

unsigned gp_hist_bucket(uint64_t us) {
    if (us < 16)
        return (unsigned)us;
    if (us > UINT32_MAX)
        us = UINT32_MAX;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* 4..31 */
    unsigned m = (unsigned)(us >> (e - 3)) & 7u;
    return 16u + (e - 4u) * 8u + m;
}

void gp_hist_bucket_range(unsigned b, uint64_t *lo, uint64_t *hi) {
    if (b < 16) {
        *lo = b;
        *hi = b + 1u;
        return;
    }
    unsigned e = 4u + (b - 16u) / 8u, m = (b - 16u) % 8u;
    *lo = (uint64_t)(8u + m) << (e - 3u);
    *hi = (uint64_t)(9u + m) << (e - 3u);
}

double gp_hist_quantile_us(const uint64_t lat[GP_HIST_NB], uint64_t total, double q) {
    if (!total)
        return -1;
    double rank = q * (double)total, cum = 0;
    unsigned last = 0;
    for (unsigned b = 0; b < GP_HIST_NB; b++) {
        if (!lat[b])
            continue;
        last = b;
        if (cum + (double)lat[b] >= rank) {
            uint64_t lo, hi;
            gp_hist_bucket_range(b, &lo, &hi);
            double f = (rank - cum) / (double)lat[b];
            return (double)lo + (double)(hi - lo) * (f < 0 ? 0 : f > 1 ? 1 : f);
        }
        cum += (double)lat[b];
    }
    /* total larger than the buckets hold (a hostile record): the highest bucket seen */
    uint64_t lo, hi;
    gp_hist_bucket_range(last, &lo, &hi);
    return (double)hi;
}

/* --- a minute's counts ------------------------------------------------------------------ */

int gp_hist_acc_lat(gp_hist_acc *a, uint64_t us) {
    uint32_t b = gp_hist_bucket(us);
    size_t lo = 0, hi = a->nbins;
    while (lo < hi) { /* the first bin with bucket >= b */
        size_t mid = (lo + hi) / 2;
        if (a->bins[mid].b < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < a->nbins && a->bins[lo].b == b) {
        if (a->bins[lo].n < UINT32_MAX)
            a->bins[lo].n++;
        return 0;
    }
    if (gp_grow(&a->bins, &a->cap, a->nbins + 1, 4, sizeof *a->bins) != 0)
        return -1;
    memmove(&a->bins[lo + 1], &a->bins[lo], (a->nbins - lo) * sizeof *a->bins);
    a->bins[lo] = (gp_hist_bin){b, 1};
    a->nbins++;
    return 0;
}

int gp_hist_acc_empty(const gp_hist_acc *a) {
    return !a->req && !a->err && !a->to_house && !a->from_house && !a->nbins;
}

void gp_hist_acc_free(gp_hist_acc *a) {
    free(a->bins);
    memset(a, 0, sizeof *a);
}

int gp_hist_rec_text(const gp_hist_acc *a, char *out, size_t cap) {
    int n = snprintf(out, cap, "%llu %llu %llu %llu", (unsigned long long)a->req,
                     (unsigned long long)a->err, (unsigned long long)a->to_house,
                     (unsigned long long)a->from_house);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    size_t o = (size_t)n;
    for (size_t i = 0; i < a->nbins; i++) {
        n = snprintf(out + o, cap - o, "%c%u:%u", i ? ',' : ' ', a->bins[i].b, a->bins[i].n);
        if (n < 0 || (size_t)n >= cap - o)
            return -1;
        o += (size_t)n;
    }
    return (int)o;
}

/* --- reading ---------------------------------------------------------------------------- */

int gp_hist_range(const char *name, unsigned *minutes, unsigned *step) {
    static const struct {
        const char *name;
        unsigned minutes, step;
    } r[] = {{"1h", 60, 1}, {"6h", 360, 5}, {"24h", GP_HIST_WINDOW_MIN, 10}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (strcmp(name, r[i].name) == 0) {
            *minutes = r[i].minutes;
            *step = r[i].step;
            return 0;
        }
    return -1;
}

int gp_hist_series_init(gp_hist_series *s, int64_t now_min, unsigned minutes, unsigned step) {
    memset(s, 0, sizeof *s);
    if (!step || !minutes || minutes % step || minutes > GP_HIST_WINDOW_MIN || now_min < 0)
        return -1;
    s->step = step;
    s->npoints = minutes / step;
    s->start_min = (now_min / step + 1) * step - minutes;
    s->points = calloc(s->npoints, sizeof *s->points);
    return s->points ? 0 : -1;
}

void gp_hist_series_free(gp_hist_series *s) {
    free(s->points);
    memset(s, 0, sizeof *s);
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* A decimal number of at most 19 digits at *p (p < end), then one of `stops` or the end:
 * 0 with *v and *p past the digits, or -1. */
static int num(const char **p, const char *end, uint64_t *v) {
    const char *q = *p;
    uint64_t x = 0;
    int n = 0;
    while (q < end && *q >= '0' && *q <= '9' && n < 20) {
        x = x * 10 + (uint64_t)(*q - '0');
        q++;
        n++;
    }
    if (n == 0 || n > 19)
        return -1;
    *p = q;
    *v = x;
    return 0;
}

/* A record's parts, checked whole before anything of it is counted. */
typedef struct rec {
    uint64_t minute, c[4];
    gp_hist_bin bins[GP_HIST_NB];
    size_t nbins;
} rec;

/* "<minute> <req> <err> <to> <from>[ <b>:<n>,...]" in [p, end). 0, or -1. */
static int parse_rec(const char *p, const char *end, rec *r) {
    if (num(&p, end, &r->minute) != 0 || r->minute > 59)
        return -1;
    for (int i = 0; i < 4; i++)
        if (p >= end || *p++ != ' ' || num(&p, end, &r->c[i]) != 0)
            return -1;
    r->nbins = 0;
    if (p == end)
        return 0;
    if (*p++ != ' ')
        return -1;
    for (;;) {
        uint64_t b, n;
        if (num(&p, end, &b) != 0 || b >= GP_HIST_NB || p >= end || *p++ != ':' ||
            num(&p, end, &n) != 0 || n > UINT32_MAX)
            return -1;
        if (r->nbins && b <= r->bins[r->nbins - 1].b)
            return -1; /* increasing, so at most GP_HIST_NB of them */
        r->bins[r->nbins++] = (gp_hist_bin){(uint32_t)b, (uint32_t)n};
        if (p == end)
            return 0;
        if (*p++ != ',')
            return -1;
    }
}

static void point_add(gp_hist_point *pt, const rec *r) {
    pt->req = sat_add(pt->req, r->c[0]);
    pt->err = sat_add(pt->err, r->c[1]);
    pt->to_house = sat_add(pt->to_house, r->c[2]);
    pt->from_house = sat_add(pt->from_house, r->c[3]);
    for (size_t i = 0; i < r->nbins; i++) {
        pt->lat[r->bins[i].b] = sat_add(pt->lat[r->bins[i].b], r->bins[i].n);
        pt->nlat = sat_add(pt->nlat, r->bins[i].n);
    }
}

void gp_hist_series_add_value(gp_hist_series *s, const char *v, size_t len) {
    const char *p = v, *end = v + len;
    uint64_t hour;
    /* An hour past what a 64-bit minute count holds is no hour of ours. */
    if (num(&p, end, &hour) != 0 || hour >= (uint64_t)INT64_MAX / 60 || p >= end || *p++ != ';') {
        s->skipped++;
        return;
    }
    int64_t first = (int64_t)hour * 60;
    int64_t range_end = s->start_min + (int64_t)s->npoints * s->step;
    int in_range = first + 59 >= s->start_min && first < range_end;
    rec *r = in_range ? malloc(sizeof *r) : NULL;
    if (in_range && !r) {
        s->skipped++;
        return;
    }
    while (in_range && p < end) {
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (!e)
            e = end;
        if (parse_rec(p, e, r) != 0) {
            s->skipped++;
        } else {
            int64_t m = first + (int64_t)r->minute;
            if (m >= s->start_min && m < range_end) {
                point_add(&s->points[(m - s->start_min) / s->step], r);
                point_add(&s->total, r);
            }
        }
        p = e < end ? e + 1 : end;
    }
    free(r);
}

void gp_hist_series_add_reply(gp_hist_series *s, const redisReply *r) {
    if (!r)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        s->skipped++;
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *v = r->element[i + 1];
        if (v->type == REDIS_REPLY_STRING)
            gp_hist_series_add_value(s, v->str, v->len);
        else
            s->skipped++;
    }
}

/* A latency in ms with µs resolution, or null. */
static void put_ms(gp_buf *b, const char *name, double us) {
    if (us < 0)
        gp_buf_printf(b, "\"%s\":null", name);
    else
        gp_buf_printf(b, "\"%s\":%.3f", name, us / 1000.0);
}

/* A count as JSON: at most 2^53 - 1, what a JavaScript number (and jansson) holds exactly;
 * only a hostile record gets near it. */
static unsigned long long js(uint64_t v) {
    return v > 9007199254740991ULL ? 9007199254740991ULL : (unsigned long long)v;
}

static void point_json(gp_buf *b, const gp_hist_point *pt) {
    gp_buf_printf(b,
                  "\"requests\":%llu,\"errors\":%llu,\"bytes_to_house\":%llu,"
                  "\"bytes_from_house\":%llu,\"latency_samples\":%llu,",
                  js(pt->req), js(pt->err), js(pt->to_house), js(pt->from_house), js(pt->nlat));
    put_ms(b, "p50_ms", gp_hist_quantile_us(pt->lat, pt->nlat, 0.50));
    gp_buf_puts(b, ",");
    put_ms(b, "p99_ms", gp_hist_quantile_us(pt->lat, pt->nlat, 0.99));
}

void gp_hist_series_json(gp_buf *b, const gp_hist_series *s) {
    gp_buf_printf(b, "\"from_ms\":%lld,\"to_ms\":%lld,\"step_s\":%u,\"points\":[",
                  (long long)s->start_min * 60000,
                  (long long)(s->start_min + (int64_t)s->npoints * s->step) * 60000, s->step * 60);
    for (unsigned i = 0; i < s->npoints; i++) {
        gp_buf_printf(b, "%s{\"t_ms\":%lld,", i ? "," : "",
                      (long long)(s->start_min + (int64_t)i * s->step) * 60000);
        point_json(b, &s->points[i]);
        gp_buf_puts(b, "}");
    }
    gp_buf_puts(b, "],\"total\":{");
    point_json(b, &s->total);
    double pct = s->total.req ? 100.0 * (double)s->total.err / (double)s->total.req : 0;
    if (pct > 100)
        pct = 100; /* a hostile record: more errors than replies */
    gp_buf_printf(b, ",\"error_pct\":%.2f},\"skipped\":%llu", pct, js(s->skipped));
}
