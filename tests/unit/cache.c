/* Unit tests for house/cache.c, the replay cache: what a redelivered request finds, for how
 * long (at least until its deadline), and how the memory budget degrades entries into
 * tombstones before anything is forgotten early. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../house/house.h"

#define MIN_MS (60u * 1000u)

static hs_cache *C; /* the cache under test, one per test */

static void store(const char *id, uint16_t status, size_t body, uint64_t now, uint64_t deadline) {
    gp_header h = {GP_STR_LIT("content-type"), GP_STR_LIT("text/plain")};
    hs_centry *e = hs_cache_begin(C, id, "GET", "/x", status, &h, 1);
    cr_assert_not_null(e);
    uint8_t *b = calloc(1, body ? body : 1);
    cr_assert_eq(hs_cache_append(e, b, body), 0);
    free(b);
    hs_cache_commit(C, e, now, deadline);
}

static void init(void) {
    C = hs_cache_new();
    cr_assert_not_null(C);
}

static void fini(void) {
    hs_cache_free(C);
}

TestSuite(cache, .init = init, .fini = fini);

Test(cache, finds_by_frame_id_method_and_path) {
    store("a", 201, 10, 1000, 2000);
    const hs_centry *e = hs_cache_find(C, "a", "GET", "/x", 1001);
    cr_assert_not_null(e);
    cr_assert_eq(hs_cache_status(e), 201);
    cr_assert_eq(hs_cache_body(e).len, 10);
    size_t nh;
    const gp_header *h = hs_cache_headers(e, &nh);
    cr_assert_eq(nh, 1);
    cr_assert(h[0].name.len == 12 && memcmp(h[0].name.p, "content-type", 12) == 0);
    /* Same id, another request: a producer bug, never a replay. */
    cr_assert_null(hs_cache_find(C, "a", "POST", "/x", 1001));
    cr_assert_null(hs_cache_find(C, "a", "GET", "/y", 1001));
    cr_assert_null(hs_cache_find(C, "b", "GET", "/x", 1001));
}

Test(cache, a_second_response_replaces_the_first) {
    store("a", 200, 1, 1000, 0);
    store("a", 404, 2, 1001, 0);
    const hs_centry *e = hs_cache_find(C, "a", "GET", "/x", 1002);
    cr_assert_eq(hs_cache_status(e), 404);
    size_t n, bytes;
    uint64_t early;
    hs_cache_stats(C, &n, &bytes, &early);
    cr_assert_eq(n, 1);
}

Test(cache, kept_ten_minutes_when_the_deadline_is_sooner) {
    store("a", 200, 1, 0, 5000);
    cr_assert_not_null(hs_cache_find(C, "a", "GET", "/x", 10 * MIN_MS - 1));
    cr_assert_null(hs_cache_find(C, "a", "GET", "/x", 10 * MIN_MS));
}

/* A request with a 2-hour timeout can be delivered again for 2 hours: its response must be
 * there for as long. */
Test(cache, kept_until_a_long_deadline_passes) {
    uint64_t deadline = 120ull * MIN_MS;
    store("long", 200, 1, 0, deadline);
    cr_assert_not_null(hs_cache_find(C, "long", "GET", "/x", deadline));
    cr_assert_null(hs_cache_find(C, "long", "GET", "/x", deadline + 2 * MIN_MS));
}

/* Over the byte budget the oldest responses lose their bodies but not their identity: a
 * redelivery of them finds a tombstone (answered 502 replay_unavailable), not nothing. */
Test(cache, budget_turns_oldest_into_tombstones) {
    char id[32];
    for (int i = 0; i < 40; i++) { /* 40 x 1 MiB against a 32 MiB budget */
        snprintf(id, sizeof id, "big-%d", i);
        store(id, 200, 1u << 20, 1000 + (uint64_t)i, 0);
    }
    size_t n, bytes;
    uint64_t early;
    hs_cache_stats(C, &n, &bytes, &early);
    cr_assert_eq(n, 40, "every request is still remembered as having run");
    cr_assert_leq(bytes, 32u << 20);
    cr_assert_eq(early, 0);
    const hs_centry *old = hs_cache_find(C, "big-0", "GET", "/x", 2000);
    cr_assert_not_null(old);
    cr_assert_eq(hs_cache_status(old), 0, "the oldest became a tombstone");
    const hs_centry *recent = hs_cache_find(C, "big-39", "GET", "/x", 2000);
    cr_assert_not_null(recent);
    cr_assert_eq(hs_cache_status(recent), 200);
    cr_assert_eq(hs_cache_body(recent).len, 1u << 20);
}

/* Bodies over the per-entry limit are refused while recording. */
Test(cache, refuses_an_entry_over_one_mebibyte) {
    hs_centry *e = hs_cache_begin(C, "x", "GET", "/x", 200, NULL, 0);
    uint8_t *b = calloc(1, (1u << 20) + 1);
    cr_assert_eq(hs_cache_append(e, b, (1u << 20) + 1), -1);
    free(b);
    hs_cache_discard(e);
}

/* Past the entry cap the oldest go first, and that is counted: the one way at-most-once can
 * be lost is visible. */
Test(cache, count_cap_evicts_oldest_and_counts_it) {
    char id[32];
    for (unsigned i = 0; i < 200005; i++) {
        snprintf(id, sizeof id, "t-%u", i);
        hs_centry *t = hs_cache_begin(C, id, "GET", "/x", 0, NULL, 0);
        cr_assert_not_null(t);
        hs_cache_commit(C, t, 1000, 0);
    }
    size_t n, bytes;
    uint64_t early;
    hs_cache_stats(C, &n, &bytes, &early);
    cr_assert_eq(n, 200000);
    cr_assert_eq(early, 5);
    cr_assert_null(hs_cache_find(C, "t-0", "GET", "/x", 1000));
    cr_assert_not_null(hs_cache_find(C, "t-5", "GET", "/x", 1000));
}

/* hs_cache_set_keep: a load test's own retention, shorter or for ever. */
Test(cache, set_keep_overrides_the_retention) {
    hs_cache_set_keep(C, 1000);
    store("short", 200, 1, 0, 2 * 60 * MIN_MS);
    cr_assert_not_null(hs_cache_find(C, "short", "GET", "/x", 999));
    cr_assert_null(hs_cache_find(C, "short", "GET", "/x", 1000));
    hs_cache_set_keep(C, UINT64_MAX);
    store("ever", 200, 1, 5000, 6000);
    cr_assert_not_null(hs_cache_find(C, "ever", "GET", "/x", 1000 * 60 * MIN_MS));
}
