/* Unit tests for house/journal.c, the replay journal's pure part: record round trips, a
 * journal cut at every byte (the decoder stops cleanly, the valid prefix is exact), corrupt
 * checks and hostile lengths, and the replay cache a journal rebuilds (START alone ->
 * tombstone, DONE -> entry, FORGET -> nothing, expired records skipped). */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../house/house.h"
#include "../../house/journal.h"

#define WALL 1700000000000ull /* the wall clock "now" of these tests */
#define MONO 5000ull          /* the cache's clock at the same moment */
#define MIN_MS (60u * 1000u)

static hs_cache *C; /* the cache a journal rebuilds, one per test */

static void init(void) {
    cr_assert_geq(sodium_init(), 0);
    C = hs_cache_new();
    cr_assert_not_null(C);
}

static void fini(void) {
    hs_cache_free(C);
}

TestSuite(journal, .init = init, .fini = fini);

/* A growable journal image. */
typedef struct jbuf {
    uint8_t *p;
    size_t len, cap;
    size_t ends[64]; /* offset after each record */
    size_t nrec;
} jbuf;

static void jb_put(jbuf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void jb_init(jbuf *b) {
    memset(b, 0, sizeof *b);
    jb_put(b, HS_JOURNAL_MAGIC, HS_JOURNAL_MAGIC_LEN);
}

static void jb_rec(jbuf *b, const hs_jrec *r) {
    size_t n = hs_jrec_size(r);
    cr_assert_gt(n, 0);
    uint8_t *tmp = malloc(n);
    cr_assert_eq(hs_jrec_encode(r, tmp, n), (ssize_t)n);
    jb_put(b, tmp, n);
    free(tmp);
    b->ends[b->nrec++] = b->len;
}

static hs_jrec *rec(uint8_t type, const char *id, const char *path, uint64_t keep) {
    static hs_jrec r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.keep_until_ms = keep;
    r.frame_id = gp_str_c(id);
    r.method = GP_STR_LIT("GET");
    r.path = gp_str_c(path);
    return &r;
}

static const gp_header hdrs[2] = {{GP_STR_LIT("content-type"), GP_STR_LIT("text/plain")},
                                  {GP_STR_LIT("x-empty"), GP_STR_LIT("")}};

static hs_jrec *done(const char *id, const char *path, uint64_t keep, uint16_t status,
                     const char *body) {
    hs_jrec *r = rec(HS_JREC_DONE, id, path, keep);
    r->status = status;
    if (status) {
        r->headers = hdrs;
        r->nheaders = 2;
        r->body = gp_str_c(body);
    }
    return r;
}

static int str_is(gp_str s, const char *c) {
    return s.len == strlen(c) && memcmp(s.p, c, s.len) == 0;
}

static void round_trip(const hs_jrec *r) {
    size_t n = hs_jrec_size(r);
    cr_assert_gt(n, HS_JREC_OVERHEAD);
    uint8_t *buf = malloc(n), *again = malloc(n);
    cr_assert_eq(hs_jrec_encode(r, buf, n - 1), GP_ERR_BUFFER);
    cr_assert_eq(hs_jrec_encode(r, buf, n), (ssize_t)n);
    static hs_jrec d;
    cr_assert_eq(hs_jrec_decode(buf, n, &d), (ssize_t)n);
    cr_assert_eq(d.type, r->type);
    cr_assert_eq(d.keep_until_ms, r->keep_until_ms);
    cr_assert(d.frame_id.len == r->frame_id.len &&
              memcmp(d.frame_id.p, r->frame_id.p, d.frame_id.len) == 0);
    cr_assert(d.method.len == r->method.len && memcmp(d.method.p, r->method.p, d.method.len) == 0);
    cr_assert(d.path.len == r->path.len && memcmp(d.path.p, r->path.p, d.path.len) == 0);
    cr_assert_eq(d.status, r->status);
    cr_assert_eq(d.nheaders, r->nheaders);
    for (size_t i = 0; i < d.nheaders; i++) {
        cr_assert(d.headers[i].name.len == r->headers[i].name.len &&
                  memcmp(d.headers[i].name.p, r->headers[i].name.p, d.headers[i].name.len) == 0);
        cr_assert(d.headers[i].value.len == r->headers[i].value.len);
    }
    cr_assert(d.body.len == r->body.len &&
              (!d.body.len || memcmp(d.body.p, r->body.p, d.body.len) == 0));
    /* Canonical: decoding and encoding again gives the same bytes. */
    cr_assert_eq(hs_jrec_encode(&d, again, n), (ssize_t)n);
    cr_assert(memcmp(buf, again, n) == 0);
    free(buf);
    free(again);
}

Test(journal, round_trips_every_record_type) {
    round_trip(rec(HS_JREC_START, "f-1", "/slow?ms=10", WALL + 1));
    round_trip(rec(HS_JREC_FORGET, "f-1", "/slow?ms=10", 0));
    round_trip(done("f-1", "/x", WALL + 2, 200, "hello"));
    round_trip(done("f-1", "/x", WALL + 2, 204, ""));
    round_trip(done("f-1", "/x", WALL + 2, 0, NULL)); /* tombstone */
    /* A body at the limit, binary. */
    uint8_t *big = malloc(HS_JREC_MAX_BODY);
    for (size_t i = 0; i < HS_JREC_MAX_BODY; i++)
        big[i] = (uint8_t)(i * 7);
    hs_jrec *r = done("big", "/bytes", WALL, 200, "");
    r->body = (gp_str){big, HS_JREC_MAX_BODY};
    round_trip(r);
    free(big);
}

/* The format is fixed: this START was built independently (tests/fuzz/gen_seeds.py's
 * layout, Python's hashlib.blake2b(digest_size=16) for the check). */
Test(journal, known_answer_start_record) {
    static const uint8_t want[] = {0x00, 0x00, 0x00, 0x16, 0x01, 0x00, 0x00, 0x01, 0x8b,
                                   0xcf, 0xee, 0x8f, 0xc0, 0x00, 0x03, 0x66, 0x2d, 0x31,
                                   0x00, 0x03, 0x47, 0x45, 0x54, 0x00, 0x01, 0x2f, 0xc5,
                                   0x7d, 0xc3, 0x82, 0xd3, 0xe5, 0x4c, 0x99};
    uint8_t buf[64];
    hs_jrec *r = rec(HS_JREC_START, "f-1", "/", 1700000600000ull);
    cr_assert_eq(hs_jrec_encode(r, buf, sizeof buf), (ssize_t)sizeof want);
    cr_assert(memcmp(buf, want, sizeof want) == 0);
}

Test(journal, encoder_refuses_what_cannot_be_a_record) {
    uint8_t buf[256];
    hs_jrec *r = rec(HS_JREC_START, "", "/", WALL);
    cr_assert_eq(hs_jrec_size(r), 0, "empty frame id");
    cr_assert_eq(hs_jrec_encode(r, buf, sizeof buf), GP_ERR_INVALID);
    r = rec(9, "a", "/", WALL);
    cr_assert_eq(hs_jrec_encode(r, buf, sizeof buf), GP_ERR_INVALID);
    r = done("a", "/", WALL, 200, "");
    r->body = (gp_str){buf, HS_JREC_MAX_BODY + 1}; /* never read: refused by its length */
    cr_assert_eq(hs_jrec_size(r), 0, "body over the limit");
    r = done("a", "/", WALL, 0, NULL);
    r->headers = hdrs;
    r->nheaders = 1;
    cr_assert_eq(hs_jrec_size(r), 0, "a tombstone has no headers");
}

/* START, DONE, START, FORGET, DONE(tombstone) */
static void sample(jbuf *b) {
    jb_init(b);
    jb_rec(b, rec(HS_JREC_START, "a", "/a", WALL + 20 * MIN_MS));
    jb_rec(b, done("a", "/a", WALL + 20 * MIN_MS, 200, "body of a"));
    jb_rec(b, rec(HS_JREC_START, "b", "/b", WALL + 20 * MIN_MS));
    jb_rec(b, rec(HS_JREC_FORGET, "b", "/b", 0));
    jb_rec(b, done("c", "/c", WALL + 20 * MIN_MS, 0, NULL));
}

/* Cut anywhere, the decoder reads exactly the whole records before the cut and reports a
 * torn tail for the rest; the loader's valid prefix ends at the last whole record. */
Test(journal, truncated_at_every_byte_stops_cleanly) {
    jbuf b;
    sample(&b);
    static hs_jrec d;
    for (size_t cut = 0; cut <= b.len; cut++) {
        size_t whole = HS_JOURNAL_MAGIC_LEN, nrec = 0;
        for (size_t i = 0; i < b.nrec; i++)
            if (b.ends[i] <= cut)
                whole = b.ends[i], nrec = i + 1;
        size_t off = HS_JOURNAL_MAGIC_LEN, got = 0;
        ssize_t n = 0;
        while (cut > off && (n = hs_jrec_decode(b.p + off, cut - off, &d)) > 0) {
            off += (size_t)n;
            got++;
        }
        if (cut >= HS_JOURNAL_MAGIC_LEN) {
            cr_assert_eq(got, nrec, "cut %zu: %zu records, want %zu", cut, got, nrec);
            cr_assert_eq(off, whole);
            if (cut > off)
                cr_assert_eq(n, GP_ERR_TRUNCATED, "cut %zu: %zd", cut, n);
        }
        hs_jload_stats st;
        cr_assert_eq(hs_journal_load(C, b.p, cut, WALL, MONO, &st), 0);
        size_t want = cut == 0 ? 0 : cut < HS_JOURNAL_MAGIC_LEN ? 0 : whole;
        cr_assert_eq(st.good_bytes, want, "cut %zu: good %zu want %zu", cut, st.good_bytes, want);
        cr_assert_eq(st.err, cut == want ? 0 : GP_ERR_TRUNCATED, "cut %zu err %d", cut, st.err);
        cr_assert_eq(st.records, cut < HS_JOURNAL_MAGIC_LEN ? 0 : nrec);
        hs_cache_clear(C);
    }
    free(b.p);
}

/* Any single flipped bit in a record is caught: never a record with other contents. */
Test(journal, corrupt_check_is_caught) {
    jbuf b;
    jb_init(&b);
    jb_rec(&b, done("a", "/a", WALL + MIN_MS, 200, "body"));
    static hs_jrec d;
    for (size_t i = HS_JOURNAL_MAGIC_LEN; i < b.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            b.p[i] ^= (uint8_t)(1u << bit);
            ssize_t n =
                hs_jrec_decode(b.p + HS_JOURNAL_MAGIC_LEN, b.len - HS_JOURNAL_MAGIC_LEN, &d);
            cr_assert_lt(n, 0, "byte %zu bit %d accepted", i, bit);
            b.p[i] ^= (uint8_t)(1u << bit);
        }
    hs_jload_stats st;
    b.p[b.len - 1] ^= 1; /* the check itself */
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    cr_assert_eq(st.err, GP_ERR_MALFORMED);
    cr_assert_eq(st.good_bytes, HS_JOURNAL_MAGIC_LEN);
    free(b.p);
}

/* A record with a correct check but contents we never write: the length prefix and the
 * check are computed here over hand-made payloads. */
static ssize_t decode_payload(const uint8_t *payload, size_t n) {
    uint8_t *p = malloc(4 + n + 8);
    p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8),
    p[3] = (uint8_t)n;
    memcpy(p + 4, payload, n);
    uint8_t h[16];
    crypto_generichash(h, sizeof h, p, 4 + n, NULL, 0);
    memcpy(p + 4 + n, h, 8);
    static hs_jrec d;
    ssize_t rc = hs_jrec_decode(p, 4 + n + 8, &d);
    free(p);
    return rc;
}

Test(journal, hostile_lengths_are_refused) {
    static hs_jrec d;
    /* The length prefix is checked before anything else, even with nothing after it. */
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(hs_jrec_decode(huge, 4, &d), GP_ERR_TOO_LARGE);
    uint32_t over = HS_JREC_MAX + 1;
    uint8_t over_b[4] = {(uint8_t)(over >> 24), (uint8_t)(over >> 16), (uint8_t)(over >> 8),
                         (uint8_t)over};
    cr_assert_eq(hs_jrec_decode(over_b, 4, &d), GP_ERR_TOO_LARGE);
    cr_assert_eq(hs_jrec_decode(huge, 3, &d), GP_ERR_TRUNCATED);

    /* type START, keep, frame id "a", method "GET", path "/" */
    uint8_t ok[] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 'a', 0, 3, 'G', 'E', 'T', 0, 1, '/'};
    cr_assert_eq(decode_payload(ok, sizeof ok), (ssize_t)(sizeof ok + HS_JREC_OVERHEAD));
    uint8_t p[64];
    memcpy(p, ok, sizeof ok);
    p[9] = 0xff; /* frame id length past the payload */
    cr_assert_eq(decode_payload(p, sizeof ok), GP_ERR_MALFORMED);
    memcpy(p, ok, sizeof ok);
    p[10] = 0; /* empty frame id ("a" then reads as method length...) */
    cr_assert_eq(decode_payload(p, sizeof ok), GP_ERR_MALFORMED);
    memcpy(p, ok, sizeof ok);
    p[0] = 7; /* unknown type */
    cr_assert_eq(decode_payload(p, sizeof ok), GP_ERR_MALFORMED);
    memcpy(p, ok, sizeof ok);
    p[11] = 0; /* a NUL byte in the frame id */
    cr_assert_eq(decode_payload(p, sizeof ok), GP_ERR_MALFORMED);
    memcpy(p, ok, sizeof ok);
    p[sizeof ok] = 0; /* a trailing byte START does not have */
    cr_assert_eq(decode_payload(p, sizeof ok + 1), GP_ERR_MALFORMED);

    /* DONE: status 200, then hostile header count / value length / body length. */
    memcpy(p, ok, sizeof ok);
    p[0] = HS_JREC_DONE;
    size_t n = sizeof ok;
    uint8_t st200[] = {0, 200};
    memcpy(p + n, st200, 2);
    uint8_t nh_many[] = {0x01, 0x00}; /* 256 headers > GP_MAX_HEADERS */
    memcpy(p + n + 2, nh_many, 2);
    cr_assert_eq(decode_payload(p, n + 4), GP_ERR_MALFORMED);
    uint8_t one_hdr[] = {0, 1, 0, 1, 'h', 0xff, 0xff, 0xff, 0xff}; /* value of 4 GiB */
    memcpy(p + n + 2, one_hdr, sizeof one_hdr);
    cr_assert_eq(decode_payload(p, n + 2 + sizeof one_hdr), GP_ERR_MALFORMED);
    uint8_t body_big[] = {0, 0, 0, 0x10, 0, 1}; /* no headers, body of 1 MiB + 1 */
    memcpy(p + n + 2, body_big, sizeof body_big);
    cr_assert_eq(decode_payload(p, n + 2 + sizeof body_big), GP_ERR_MALFORMED);
    uint8_t body_short[] = {0, 0, 0, 0, 0, 5, 'x'}; /* says 5 bytes, has 1 */
    memcpy(p + n + 2, body_short, sizeof body_short);
    cr_assert_eq(decode_payload(p, n + 2 + sizeof body_short), GP_ERR_MALFORMED);
    uint8_t body_ok[] = {0, 0, 0, 0, 0, 1, 'x'};
    memcpy(p + n + 2, body_ok, sizeof body_ok);
    cr_assert_gt(decode_payload(p, n + 2 + sizeof body_ok), 0);
    /* A tombstone (status 0) with a body is not one. */
    p[n] = 0, p[n + 1] = 0;
    cr_assert_eq(decode_payload(p, n + 2 + sizeof body_ok), GP_ERR_MALFORMED);
}

Test(journal, a_file_that_is_not_a_journal_is_refused_whole) {
    hs_jload_stats st;
    const char *junk = "this is not a journal at all";
    cr_assert_eq(hs_journal_load(C, (const uint8_t *)junk, strlen(junk), WALL, MONO, &st), 0);
    cr_assert_eq(st.err, GP_ERR_VERSION);
    cr_assert_eq(st.good_bytes, 0);
    cr_assert_eq(hs_journal_load(C, NULL, 0, WALL, MONO, &st), 0);
    cr_assert_eq(st.err, 0, "an empty file is a new journal");
}

static const hs_centry *find(const char *id, const char *path) {
    return hs_cache_find(C, id, "GET", path, MONO);
}

/* START alone -> tombstone (it may have run); START+DONE -> the response; START+FORGET ->
 * nothing; a DONE tombstone -> tombstone. */
Test(journal, load_rebuilds_the_cache) {
    jbuf b;
    jb_init(&b);
    uint64_t keep = WALL + 20 * MIN_MS;
    jb_rec(&b, rec(HS_JREC_START, "running", "/slow", keep));
    jb_rec(&b, rec(HS_JREC_START, "answered", "/a", keep));
    jb_rec(&b, done("answered", "/a", keep, 201, "the body"));
    jb_rec(&b, rec(HS_JREC_START, "failed", "/f", keep));
    jb_rec(&b, rec(HS_JREC_FORGET, "failed", "/f", 0));
    jb_rec(&b, rec(HS_JREC_START, "big", "/big", keep));
    jb_rec(&b, done("big", "/big", keep, 0, NULL));
    hs_jload_stats st;
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    cr_assert_eq(st.err, 0);
    cr_assert_eq(st.good_bytes, b.len);
    cr_assert_eq(st.records, 7);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.tombstones, 2);

    const hs_centry *e = find("running", "/slow");
    cr_assert_not_null(e, "a call that started and never ended is remembered");
    cr_assert_eq(hs_cache_status(e), 0, "as a tombstone");
    e = find("answered", "/a");
    cr_assert_not_null(e);
    cr_assert_eq(hs_cache_status(e), 201);
    cr_assert(str_is(hs_cache_body(e), "the body"));
    size_t nh;
    const gp_header *h = hs_cache_headers(e, &nh);
    cr_assert_eq(nh, 2);
    cr_assert(str_is(h[0].name, "content-type") && str_is(h[0].value, "text/plain"));
    cr_assert(str_is(h[1].name, "x-empty") && h[1].value.len == 0);
    cr_assert_null(find("failed", "/f"), "a forgotten call runs again, as in memory");
    e = find("big", "/big");
    cr_assert_not_null(e);
    cr_assert_eq(hs_cache_status(e), 0);
    free(b.p);
}

/* Keep-until is wall clock in the file and the cache's clock in memory: an entry lives as
 * long after the restart as it had left; expired records are skipped. */
Test(journal, load_keeps_until_the_recorded_time_and_skips_expired) {
    jbuf b;
    jb_init(&b);
    jb_rec(&b, done("fresh", "/x", WALL + 5 * MIN_MS, 200, "x"));
    jb_rec(&b, done("stale", "/x", WALL - 1, 200, "x"));
    jb_rec(&b, done("now", "/x", WALL, 200, "x"));
    jb_rec(&b, rec(HS_JREC_START, "old-start", "/x", WALL - 1));
    jb_rec(&b, rec(HS_JREC_START, "new-start", "/x", WALL + 2 * MIN_MS));
    hs_jload_stats st;
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    cr_assert_eq(st.expired, 3);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.tombstones, 1);
    cr_assert_null(find("stale", "/x"));
    cr_assert_null(find("now", "/x"));
    cr_assert_null(find("old-start", "/x"));
    /* In time order: a lookup expires what is due. */
    cr_assert_not_null(hs_cache_find(C, "new-start", "GET", "/x", MONO + 2 * MIN_MS - 1));
    cr_assert_null(hs_cache_find(C, "new-start", "GET", "/x", MONO + 2 * MIN_MS));
    cr_assert_not_null(hs_cache_find(C, "fresh", "GET", "/x", MONO + 5 * MIN_MS - 1));
    cr_assert_null(hs_cache_find(C, "fresh", "GET", "/x", MONO + 5 * MIN_MS));
    free(b.p);
}

/* A keep-until far in the future (a clock that was wrong, or a hostile file) is capped. */
Test(journal, load_caps_a_far_future_keep_until) {
    jbuf b;
    jb_init(&b);
    jb_rec(&b, done("far", "/x", UINT64_MAX, 200, "x"));
    hs_jload_stats st;
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    cr_assert_not_null(hs_cache_find(C, "far", "GET", "/x", MONO + 24ull * 3600 * 1000));
    cr_assert_null(hs_cache_find(C, "far", "GET", "/x", MONO + 26ull * 3600 * 1000));
    free(b.p);
}

/* Reading stops at the first bad record: what follows it is not believed, even if it looks
 * whole. */
Test(journal, load_stops_at_the_first_bad_record) {
    jbuf b;
    jb_init(&b);
    jb_rec(&b, done("before", "/x", WALL + MIN_MS, 200, "x"));
    size_t bad = b.len;
    jb_rec(&b, done("corrupt", "/x", WALL + MIN_MS, 200, "x"));
    jb_rec(&b, done("after", "/x", WALL + MIN_MS, 200, "x"));
    b.p[bad + 6] ^= 0x40;
    hs_jload_stats st;
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    cr_assert_eq(st.err, GP_ERR_MALFORMED);
    cr_assert_eq(st.good_bytes, bad);
    cr_assert_not_null(find("before", "/x"));
    cr_assert_null(find("corrupt", "/x"));
    cr_assert_null(find("after", "/x"));
    free(b.p);
}

/* The same frame id answered twice (the second delivery ran after the first was
 * forgotten): the later response wins, as in memory. */
Test(journal, later_done_replaces_earlier) {
    jbuf b;
    jb_init(&b);
    jb_rec(&b, done("a", "/x", WALL + MIN_MS, 200, "first"));
    jb_rec(&b, done("a", "/x", WALL + MIN_MS, 500, "second"));
    hs_jload_stats st;
    cr_assert_eq(hs_journal_load(C, b.p, b.len, WALL, MONO, &st), 0);
    const hs_centry *e = find("a", "/x");
    cr_assert_eq(hs_cache_status(e), 500);
    cr_assert(str_is(hs_cache_body(e), "second"));
    cr_assert_eq(st.entries, 1);
    free(b.p);
}

static void collect(void *ud, gp_str id, gp_str m, gp_str p, uint64_t keep) {
    (void)m, (void)p;
    char *out = ud;
    snprintf(out + strlen(out), 64, "%.*s:%llu ", (int)id.len, (const char *)id.p,
             (unsigned long long)keep);
}

Test(journal, set_of_open_calls) {
    hs_jset *s = hs_jset_new();
    cr_assert_not_null(s);
    gp_str g = GP_STR_LIT("GET"), x = GP_STR_LIT("/x");
    cr_assert_eq(hs_jset_add(s, GP_STR_LIT("a"), g, x, 10), 0);
    cr_assert_eq(hs_jset_add(s, GP_STR_LIT("b"), g, x, 20), 0);
    cr_assert_eq(hs_jset_add(s, GP_STR_LIT("a"), g, x, 30), 0);
    cr_assert_eq(hs_jset_remove(s, GP_STR_LIT("a"), GP_STR_LIT("POST"), x), 0, "other method");
    cr_assert_eq(hs_jset_remove(s, GP_STR_LIT("a"), g, x), 1);
    char out[256] = "";
    hs_jset_each(s, collect, out);
    cr_assert_str_eq(out, "b:20 a:30 ", "the oldest went first: %s", out);
    hs_jset_prune(s, 20);
    cr_assert_eq(hs_jset_count(s), 1);
    hs_jset_free(s);
    hs_jset_free(NULL);
}
