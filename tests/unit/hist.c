/* hist.c — the request history's pure parts (bridge/store/store_hist.c): latency buckets and
 * their bounds, percentiles read from a histogram against the exact ones of known samples, a
 * minute's counts and their record text, and the parser of what Redis holds: records in and
 * out of a range, several records of one minute adding up, hostile values skipped and counted,
 * the JSON written. */
#include "../../bridge/store/store_hist.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(hist, buckets_cover_every_latency_once) {
    /* Exact below 16 us; then each bucket's range holds the values mapped to it, and the
     * ranges follow each other without gap or overlap. */
    for (uint64_t us = 0; us < 16; us++)
        cr_assert_eq(gp_hist_bucket(us), us);
    uint64_t prev_hi = 0;
    for (unsigned b = 0; b < GP_HIST_NB; b++) {
        uint64_t lo, hi;
        gp_hist_bucket_range(b, &lo, &hi);
        cr_assert_eq(lo, prev_hi, "bucket %u starts at %llu, the last ended at %llu", b,
                     (unsigned long long)lo, (unsigned long long)prev_hi);
        cr_assert_gt(hi, lo);
        cr_assert_eq(gp_hist_bucket(lo), b, "%llu", (unsigned long long)lo);
        cr_assert_eq(gp_hist_bucket(hi - 1), b, "%llu", (unsigned long long)hi - 1);
        if (b >= 16) /* at most 1/8 of its lower bound wide: <= 6.25 % from the middle */
            cr_assert_leq((hi - lo) * 8, lo, "bucket %u: [%llu, %llu)", b, (unsigned long long)lo,
                          (unsigned long long)hi);
        prev_hi = hi;
    }
    cr_assert_eq(prev_hi, 1ULL << 32);
    cr_assert_eq(gp_hist_bucket(UINT64_MAX), GP_HIST_NB - 1, "past 2^32 us: the last bucket");
    cr_assert_eq(gp_hist_bucket(350), gp_hist_bucket(352) - 1, "350 us and 352 us apart");
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sample of rank ceil(q n) (1-based) of sorted v[n]. */
static double exact(const uint64_t *v, size_t n, double q) {
    size_t k = (size_t)ceil(q * (double)n);
    return (double)v[k ? k - 1 : 0];
}

Test(hist, quantiles_within_the_bucket_error) {
    uint64_t lat[GP_HIST_NB] = {0};
    cr_assert_eq(gp_hist_quantile_us(lat, 0, 0.5), -1, "no samples: none");
    /* Sub-millisecond to seconds, log-uniform, with a slow tail: p50 and p99 within 6.25 %. */
    enum { N = 20000 };
    uint64_t *v = malloc(N * sizeof *v);
    srand(7);
    for (size_t i = 0; i < N; i++) {
        double e = (double)rand() / RAND_MAX * 4; /* 10^2 .. 10^6 us */
        v[i] = (uint64_t)pow(10, 2 + e);
        if (i % 50 == 0)
            v[i] *= 10; /* 2 % ten times slower */
        lat[gp_hist_bucket(v[i])]++;
    }
    qsort(v, N, sizeof *v, cmp_u64);
    for (double q = 0.05; q < 1; q += 0.01) {
        double want = exact(v, N, q), got = gp_hist_quantile_us(lat, N, q);
        cr_assert_leq(fabs(got - want) / want, 0.0625 + 1e-9, "q %.2f: %.1f us, exact %.1f us", q,
                      got, want);
    }
    free(v);

    /* One latency: 0.35 ms reads as 0.35 ms within the bucket's width (0.352-0.384 ms). */
    memset(lat, 0, sizeof lat);
    lat[gp_hist_bucket(350)] = 1;
    double p = gp_hist_quantile_us(lat, 1, 0.99);
    cr_assert(p >= 320 && p <= 352, "%f", p);
    /* Tens of microseconds apart are told apart: 80 us and 95 us. */
    memset(lat, 0, sizeof lat);
    lat[gp_hist_bucket(80)] = 99;
    lat[gp_hist_bucket(950)] = 1;
    cr_assert_lt(gp_hist_quantile_us(lat, 100, 0.5), 90);
    cr_assert_gt(gp_hist_quantile_us(lat, 100, 1.0), 900);
    /* A total larger than the buckets hold (a hostile record): the highest bucket, no crash. */
    cr_assert_gt(gp_hist_quantile_us(lat, 1000, 0.99), 900);
}

Test(hist, a_minutes_counts_and_their_text) {
    gp_hist_acc a = {0};
    char t[GP_HIST_REC_MAX];
    cr_assert(gp_hist_acc_empty(&a));
    cr_assert_eq(gp_hist_rec_text(&a, t, sizeof t), 7);
    cr_assert_str_eq(t, "0 0 0 0");
    a.req = 5, a.err = 1, a.to_house = 100, a.from_house = 65536;
    uint64_t us[] = {400, 3, 400, 100000, 3, 401};
    for (size_t i = 0; i < sizeof us / sizeof *us; i++)
        cr_assert_eq(gp_hist_acc_lat(&a, us[i]), 0);
    cr_assert(!gp_hist_acc_empty(&a));
    char want[128];
    snprintf(want, sizeof want, "5 1 100 65536 3:2,%u:3,%u:1", gp_hist_bucket(400),
             gp_hist_bucket(100000));
    cr_assert_eq(gp_hist_rec_text(&a, t, sizeof t), (int)strlen(want));
    cr_assert_str_eq(t, want, "bins sorted by bucket, 400 and 401 us in one");
    cr_assert_eq(gp_hist_rec_text(&a, t, 10), -1, "does not fit");
    /* Every bucket at once: the longest record fits GP_HIST_REC_MAX. */
    a.req = a.err = a.to_house = a.from_house = UINT64_MAX;
    for (unsigned b = 0; b < GP_HIST_NB; b++) {
        uint64_t lo, hi;
        gp_hist_bucket_range(b, &lo, &hi);
        gp_hist_acc_lat(&a, lo);
    }
    cr_assert_eq(a.nbins, GP_HIST_NB);
    for (size_t i = 0; i < a.nbins; i++)
        a.bins[i].n = UINT32_MAX;
    cr_assert_gt(gp_hist_rec_text(&a, t, sizeof t), 0);
    gp_hist_acc_free(&a);
    cr_assert(gp_hist_acc_empty(&a));
}

/* Minute m of hour h (minutes since the epoch). */
#define MIN(h, m) ((int64_t)(h)*60 + (m))

Test(hist, ranges) {
    unsigned m, s;
    cr_assert_eq(gp_hist_range("1h", &m, &s), 0);
    cr_assert(m == 60 && s == 1);
    cr_assert_eq(gp_hist_range("24h", &m, &s), 0);
    cr_assert(m == 1440 && s == 10);
    cr_assert_eq(gp_hist_range("6h", &m, &s), 0);
    cr_assert(m == 360 && s == 5);
    cr_assert_eq(gp_hist_range("2h", &m, &s), -1);
    cr_assert_eq(gp_hist_range("", &m, &s), -1);
    cr_assert_eq(gp_hist_range("1h ", &m, &s), -1);
}

Test(hist, series_from_redis_values) {
    gp_hist_series s;
    int64_t now = MIN(480000, 30); /* 30 minutes into hour 480000 */
    cr_assert_eq(gp_hist_series_init(&s, now, 60, 1), 0);
    cr_assert_eq(s.npoints, 60);
    cr_assert_eq(s.start_min, now - 59, "the last point holds now");
    char v[1024];
    unsigned b = gp_hist_bucket(1000);
    /* This hour: minutes 0 and 30, and minute 10 written twice (two bridges). */
    snprintf(v, sizeof v, "480000;0 10 1 500 600 %u:10;10 3 0 1 2;30 2 2 0 0;10 4 1 1 2 %u:4", b,
             b + 8);
    gp_hist_series_add_value(&s, v, strlen(v));
    /* The hour before: minute 31 is in the last 60, minute 30 is not. */
    snprintf(v, sizeof v, "479999;30 100 0 0 0;31 7 0 0 0");
    gp_hist_series_add_value(&s, v, strlen(v));
    /* Yesterday's value in the same slot, and an hour still to come: ignored, not bad. */
    snprintf(v, sizeof v, "479976;5 1000 0 0 0");
    gp_hist_series_add_value(&s, v, strlen(v));
    snprintf(v, sizeof v, "480001;5 1000 0 0 0");
    gp_hist_series_add_value(&s, v, strlen(v));
    cr_assert_eq(s.skipped, 0);
    cr_assert_eq(s.points[0].req, 7, "minute 31 of the hour before");
    cr_assert_eq(s.points[29].req, 10, "minute 0");
    cr_assert_eq(s.points[29].to_house, 500);
    cr_assert_eq(s.points[29].from_house, 600);
    cr_assert_eq(s.points[39].req, 7, "minute 10, both records");
    cr_assert_eq(s.points[39].err, 1);
    cr_assert_eq(s.points[39].nlat, 4);
    cr_assert_eq(s.points[59].req, 2);
    cr_assert_eq(s.points[59].err, 2);
    cr_assert_eq(s.total.req, 26);
    cr_assert_eq(s.total.err, 4);
    cr_assert_eq(s.total.nlat, 14);
    cr_assert_eq(s.total.lat[b], 10);
    gp_hist_series_free(&s);

    /* 24 h in steps of 10 minutes: a point adds its ten minutes. */
    cr_assert_eq(gp_hist_series_init(&s, now, 1440, 10), 0);
    cr_assert_eq(s.npoints, 144);
    cr_assert_eq(s.start_min, MIN(480000, 40) - 1440);
    snprintf(v, sizeof v, "480000;30 1 0 0 0;31 2 0 0 0;39 4 0 0 0;29 8 0 0 0");
    gp_hist_series_add_value(&s, v, strlen(v));
    cr_assert_eq(s.points[143].req, 7);
    cr_assert_eq(s.points[142].req, 8);
    gp_hist_series_free(&s);
}

Test(hist, hostile_values_are_skipped_and_counted) {
    gp_hist_series s;
    int64_t now = MIN(480000, 59);
    cr_assert_eq(gp_hist_series_init(&s, now, 60, 1), 0);
    const char *bad[] = {
        "",                               /* no hour */
        "x;1 1 1 1 1",                    /* not a number */
        "480000",                         /* no ';' */
        "99999999999999999999;1 1 1 1 1", /* 20 digits */
        "153722867280912930;1 1 1 1 1",   /* minutes past int64 */
        "-480000;1 1 1 1 1",              /* negative */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        gp_hist_series_add_value(&s, bad[i], strlen(bad[i]));
    cr_assert_eq(s.skipped, sizeof bad / sizeof *bad);
    s.skipped = 0;
    /* One good record among bad ones: it alone counts; each bad one is counted. */
    const char *v = "480000;60 1 0 0 0;1 1 0 0;2 1 0 0 0 x;3 1 0 0 0 5:1,5:1;4 1 0 0 0 240:1;"
                    "5 1 0 0 0 4:4294967296;6 -1 0 0 0;7 1 0 0 0 ;8  1 0 0 0;;"
                    "9 1 0 0 0 3:1,2:1;10 9999999999999999999 0 0 0;11 2 1 30 40 7:2;"
                    "12 9999999999999999999 0 0 0";
    gp_hist_series_add_value(&s, v, strlen(v));
    cr_assert_eq(s.skipped, 11, "skipped %llu", (unsigned long long)s.skipped);
    cr_assert_eq(s.total.req, 18446744073709551615ULL, "a huge count saturates");
    cr_assert_eq(s.points[11].req, 2);
    cr_assert_eq(s.points[11].lat[7], 2);
    /* The JSON stays valid, whatever was there. */
    gp_buf b = {0};
    gp_buf_puts(&b, "{");
    gp_hist_series_json(&b, &s);
    gp_buf_puts(&b, "}");
    json_error_t je;
    json_t *o = json_loads(b.p, 0, &je);
    cr_assert(json_is_object(o), "%s: %s", je.text, b.p);
    cr_assert_eq(json_integer_value(json_object_get(o, "skipped")), 11);
    cr_assert_eq(json_array_size(json_object_get(o, "points")), 60);
    json_t *t = json_object_get(o, "total");
    cr_assert(json_is_number(json_object_get(t, "p50_ms")));
    cr_assert_leq(json_number_value(json_object_get(t, "error_pct")), 100);
    json_t *p0 = json_array_get(json_object_get(o, "points"), 0);
    cr_assert(json_is_null(json_object_get(p0, "p50_ms")), "no samples: null");
    cr_assert_eq(json_integer_value(json_object_get(p0, "t_ms")), MIN(480000, 0) * 60000);
    json_decref(o);
    gp_buf_free(&b);
    gp_hist_series_free(&s);
}

Test(hist, series_from_a_reply) {
    gp_hist_series s;
    cr_assert_eq(gp_hist_series_init(&s, MIN(480000, 5), 60, 1), 0);
    redisReply v1 = {.type = REDIS_REPLY_STRING, .str = "480000;5 3 1 0 0", .len = 16};
    redisReply k1 = {.type = REDIS_REPLY_STRING, .str = "0", .len = 1};
    redisReply n = {.type = REDIS_REPLY_INTEGER, .integer = 5};
    redisReply *el[] = {&k1, &v1, &k1, &n, &k1};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 5, .element = el};
    gp_hist_series_add_reply(&s, &arr);
    cr_assert_eq(s.total.req, 3);
    cr_assert_eq(s.skipped, 1, "the integer value; the odd element left alone");
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "NOPERM", .len = 6};
    gp_hist_series_add_reply(&s, &err);
    gp_hist_series_add_reply(&s, NULL);
    cr_assert_eq(s.skipped, 2);
    gp_hist_series_free(&s);
    cr_assert_eq(gp_hist_series_init(&s, 100, 1441, 1), -1, "past 24 h");
    cr_assert_eq(gp_hist_series_init(&s, 100, 65, 10), -1, "not a multiple of the step");
}
