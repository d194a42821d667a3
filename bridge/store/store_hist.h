/* store_hist.h — the store's request history (README.md's key layout; bridge/admin/ADMIN.md,
 * "History"): per-minute records of requests, errors, body bytes in each direction and a
 * latency histogram, kept for 24 h per house (<p>:{h}:hist), per bridge (<p>:bhist:<bid>) and
 * for all bridges together (<p>:hist). Pure: no I/O. Here: the latency buckets and the
 * percentiles read from them, a minute's counts as a bridge gathers them, the text of a record,
 * the Lua script that adds one into Redis, and the one parser of what Redis holds, which turns
 * a hash into the series the JSON API answers with (fuzzed by tests/fuzz/fuzz_hist.c).
 *
 * The layout. Each key is a HASH of at most GP_HIST_SLOTS fields: field "<k>" = the hour
 * (hours since the Unix epoch) modulo 25, its value that hour's records:
 *
 *     <hour>;<minute> <req> <err> <to_house> <from_house>[ <b>:<n>,<b>:<n>...];<minute> ...
 *
 * <minute> is the minute of the hour (0-59), <req> the final replies written in it, <err> those
 * that were errors (status >= 500 or an `error` field), <to_house> the request body bytes sent
 * to the house, <from_house> the response body bytes it sent back (uncompressed), then the
 * latency histogram (forward -> final reply), sparse: bucket <b> (gp_hist_bucket, increasing)
 * held <n> replies. A minute appears once per hour value: a second write of the same minute
 * (the house moved to another bridge within it, a bridge flushing more often than once a
 * minute) is added into it by the script, counts and buckets alike, so records merge exactly
 * and percentiles over any range come from the merged histogram (not from averaged
 * percentiles). A field whose hour is not the one being written (the slot's hour 25 h ago) is
 * replaced whole; 25 slots for 24 h keep the oldest hour of the window out of the slot being
 * written. The key's TTL is 25 h from its last write: a house without traffic for a day has
 * no history key at all, and nothing is written for a minute without traffic.
 *
 * Why an hour a field rather than a minute a field (one hash of 1440 minutes, or one a day with
 * a TTL): past 128 fields Redis leaves its compact encoding, and 1440 small fields cost ~60
 * bytes of overhead each: a day of 30-byte records took 132 KB that way, 44 KB here (MEMORY
 * USAGE, measured); and a day's hash would carry the date in its name, which house rm and the
 * ACLs would have to know. Why histograms rather than p50/p99 per minute: a minute written by
 * two bridges, and the 5- and 10-minute points of the longer ranges, need percentiles of the
 * merged samples, which per-minute percentiles cannot give. */
#ifndef GP_STORE_HIST_H
#define GP_STORE_HIST_H

#include "buf.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define GP_HIST_SLOTS 25                     /* hour fields of a key: 24 h and the current */
#define GP_HIST_TTL_MS (25ULL * 3600 * 1000) /* from the last write */
#define GP_HIST_WINDOW_MIN (24 * 60)         /* the longest range the API answers */

/* Latency buckets, in microseconds (the layout of HdrHistogram with 3 significant bits):
 * 0-15 us one bucket each; above, 8 buckets per power of two, so a bucket is at most 1/8 of
 * its lower bound wide and a percentile read from it (interpolated inside the bucket) is
 * within 6.25 % of the true value: 0.1 ms resolution up to 1.6 ms, 1 ms up to 16 ms.
 * Latencies past 2^32 us (71 min) count in the last bucket. */
#define GP_HIST_NB 240
unsigned gp_hist_bucket(uint64_t us);
/* Bucket b's range [*lo, *hi) in us (b < GP_HIST_NB). */
void gp_hist_bucket_range(unsigned b, uint64_t *lo, uint64_t *hi);
/* The q-quantile (0 < q <= 1) in us of the histogram lat[GP_HIST_NB] holding total samples:
 * the bucket where the cumulative count reaches q * total, linearly inside it. -1 when
 * total is 0. */
double gp_hist_quantile_us(const uint64_t lat[GP_HIST_NB], uint64_t total, double q);

/* A minute's counts as a bridge gathers them, per house and for itself: the histogram sparse
 * (bins sorted by bucket), so a house with a few latencies holds a few bins. */
typedef struct gp_hist_bin {
    uint32_t b, n;
} gp_hist_bin;
typedef struct gp_hist_acc {
    uint64_t req, err, to_house, from_house;
    gp_hist_bin *bins;
    size_t nbins, cap;
} gp_hist_acc;
/* One latency more. 0, or -1 when out of memory (the sample is dropped, the rest kept). */
int gp_hist_acc_lat(gp_hist_acc *a, uint64_t us);
int gp_hist_acc_empty(const gp_hist_acc *a); /* nothing counted */
void gp_hist_acc_free(gp_hist_acc *a);       /* its bins; a is empty again */

/* A record's text without its minute: "<req> <err> <to_house> <from_house>[ <b>:<n>,...]",
 * into out[cap]. Its length, or -1 when it does not fit (GP_HIST_REC_MAX always does). */
#define GP_HIST_REC_MAX 4096
int gp_hist_rec_text(const gp_hist_acc *a, char *out, size_t cap);

/* Adds one minute's record into a history hash.
 * KEYS[1]: the hash; KEYS[2] (houses only): the house's registry hash, which must exist (a
 * house removed meanwhile gets no history back). ARGV: field (slot), hour, minute of the
 * hour, the record's text (gp_hist_rec_text), TTL ms. Returns 1 written, 0 not (no house).
 * What Redis held is untrusted here too: a count that is not a whole number >= 0 adds as 0. */
#define GP_HIST_ADD_LUA                                                                            \
    "if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end\n"                      \
    "local head = ARGV[2] .. ';'\n"                                                                \
    "local rec = ARGV[3] .. ' ' .. ARGV[4]\n"                                                      \
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"                                             \
    "if (not v) or string.sub(v, 1, #head) ~= head then\n"                                         \
    "  v = head .. rec\n"                                                                          \
    "else\n"                                                                                       \
    "  local s = string.find(v, ';' .. ARGV[3] .. ' ', 1, true)\n"                                 \
    "  if not s then\n"                                                                            \
    "    v = v .. ';' .. rec\n"                                                                    \
    "  else\n"                                                                                     \
    "    local e = string.find(v, ';', s + 1, true)\n"                                             \
    "    local a, b = {}, {}\n"                                                                    \
    "    for w in string.gmatch(string.sub(v, s + 1, e and e - 1 or #v), '%S+') do\n"              \
    "      a[#a + 1] = w end\n"                                                                    \
    "    for w in string.gmatch(rec, '%S+') do b[#b + 1] = w end\n"                                \
    "    local function c(x)\n"                                                                    \
    "      local n = tonumber(x)\n"                                                                \
    "      if n and n >= 0 and n == math.floor(n) then return n end\n"                             \
    "      return 0\n"                                                                             \
    "    end\n"                                                                                    \
    "    local out = {ARGV[3]}\n"                                                                  \
    "    for i = 2, 5 do out[i] = string.format('%.0f', c(a[i]) + c(b[i])) end\n"                  \
    "    local h, ks = {}, {}\n"                                                                   \
    "    for _, x in ipairs({a[6] or '', b[6] or ''}) do\n"                                        \
    "      for k, n in string.gmatch(x, '(%d+):(%d+)') do\n"                                       \
    "        k = tonumber(k)\n"                                                                    \
    "        if not h[k] then h[k] = 0; ks[#ks + 1] = k end\n"                                     \
    "        h[k] = h[k] + tonumber(n)\n"                                                          \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "    table.sort(ks)\n"                                                                         \
    "    local hs = {}\n"                                                                          \
    "    for i, k in ipairs(ks) do hs[i] = string.format('%.0f:%.0f', k, h[k]) end\n"              \
    "    if #hs > 0 then out[6] = table.concat(hs, ',') end\n"                                     \
    "    v = string.sub(v, 1, s) .. table.concat(out, ' ') .. (e and string.sub(v, e) or '')\n"    \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "redis.call('HSET', KEYS[1], ARGV[1], v)\n"                                                    \
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"                                                    \
    "return 1\n"

/* --- reading ---------------------------------------------------------------------------- */

/* A range read back: npoints points of step minutes each, the last one holding `now`'s minute
 * (a point's minutes: [start + i*step, start + (i+1)*step)), and their sum. Every Redis value
 * is untrusted: what does not parse (a field that is not "<hour>;...", a record with a bad
 * number, a minute past 59, buckets out of range or not increasing, counts past 2^32) is
 * skipped and counted in `skipped`, never trusted; counts add up saturating. */
typedef struct gp_hist_point {
    uint64_t req, err, to_house, from_house;
    uint64_t nlat; /* samples in lat */
    uint64_t lat[GP_HIST_NB];
} gp_hist_point;
typedef struct gp_hist_series {
    int64_t start_min;      /* minutes since the epoch of point 0's first minute */
    unsigned step, npoints; /* minutes a point; points */
    gp_hist_point *points;  /* [npoints] */
    gp_hist_point total;
    uint64_t skipped; /* fields and records that did not parse */
} gp_hist_series;

/* The ranges the API knows ("1h", "6h", "24h"): their minutes and step. 0, or -1. */
int gp_hist_range(const char *name, unsigned *minutes, unsigned *step);
/* An empty series for `minutes` (a multiple of step, at most GP_HIST_WINDOW_MIN) ending with
 * now_min. 0, or -1 (bad range, out of memory). */
int gp_hist_series_init(gp_hist_series *s, int64_t now_min, unsigned minutes, unsigned step);
void gp_hist_series_free(gp_hist_series *s);
/* One hash field's value (an hour) into s: its records in s's range are added, the rest
 * ignored. */
void gp_hist_series_add_value(gp_hist_series *s, const char *v, size_t len);
/* A reply of HGETALL on a history hash into s (any other reply: nothing, an error reply
 * counts as skipped). */
void gp_hist_series_add_reply(gp_hist_series *s, const redisReply *r);
/* s as the JSON members of bridge/admin/ADMIN.md's history answer, without the braces:
 * "from_ms", "to_ms", "step_s", "points":[...], "total":{...}, "skipped". */
void gp_hist_series_json(gp_buf *b, const gp_hist_series *s);

#endif
