/* fuzz_journal.c — libFuzzer target for the house's replay journal (house/journal.c): the
 * record decoder and the rebuild of the replay cache (house/cache.c) from a journal.
 *
 * Input: byte 0 selects the mode. Even: the rest is a journal's bytes after the magic, as
 * they are on disk (torn tails, bad checks, hostile lengths). Odd: the rest is a sequence of
 * (u16 length, payload) chunks, each sealed here into a record with a correct length prefix
 * and check, so that the fuzzer reaches the payload parser behind the check.
 * Oracles: a decoded record re-encodes to exactly its bytes (the encoding is canonical); the
 * loader's valid prefix and record count are exactly those of decoding record by record; the
 * cache never holds more entries than the journal has records. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"

#define NOW_WALL (1ull << 40) /* keep-until values on either side of it occur */
#define NOW_MONO 1000u

static void check(int ok) {
    if (!ok)
        abort();
}

/* Seals chunks into records: u32 length, payload, the first 8 bytes of BLAKE2b-128. */
static uint8_t *seal(const uint8_t *p, size_t n, size_t *out_len) {
    uint8_t *out = malloc(HS_JOURNAL_MAGIC_LEN + n / 2 * (4 + 8) + n + 12);
    size_t o = HS_JOURNAL_MAGIC_LEN;
    memcpy(out, HS_JOURNAL_MAGIC, HS_JOURNAL_MAGIC_LEN);
    while (n >= 2) {
        size_t len = (size_t)p[0] << 8 | p[1];
        p += 2, n -= 2;
        if (len > n)
            len = n;
        uint8_t *r = out + o;
        r[0] = (uint8_t)(len >> 24), r[1] = (uint8_t)(len >> 16), r[2] = (uint8_t)(len >> 8);
        r[3] = (uint8_t)len;
        memcpy(r + 4, p, len);
        uint8_t h[crypto_generichash_BYTES_MIN];
        crypto_generichash(h, sizeof h, r, 4 + len, NULL, 0);
        memcpy(r + 4 + len, h, 8);
        o += 4 + len + 8;
        p += len, n -= len;
    }
    *out_len = o;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    static hs_cache *C; /* one for the run, cleared after each input */
    if (!init) {
        check(sodium_init() >= 0);
        check((C = hs_cache_new()) != NULL);
        init = 1;
    }
    if (size < 1)
        return 0;
    size_t len;
    uint8_t *j;
    if (data[0] & 1) {
        j = seal(data + 1, size - 1, &len);
    } else {
        len = HS_JOURNAL_MAGIC_LEN + size - 1;
        j = malloc(len);
        memcpy(j, HS_JOURNAL_MAGIC, HS_JOURNAL_MAGIC_LEN);
        memcpy(j + HS_JOURNAL_MAGIC_LEN, data + 1, size - 1);
    }

    /* Record by record, each one canonical. */
    static hs_jrec r;
    static uint8_t again[HS_JREC_MAX + HS_JREC_OVERHEAD];
    size_t off = HS_JOURNAL_MAGIC_LEN, records = 0;
    int err = 0;
    while (off < len) {
        ssize_t n = hs_jrec_decode(j + off, len - off, &r);
        if (n < 0) {
            check(n == GP_ERR_TRUNCATED || n == GP_ERR_TOO_LARGE || n == GP_ERR_MALFORMED);
            err = (int)n;
            break;
        }
        check((size_t)n <= len - off && hs_jrec_size(&r) == (size_t)n);
        check(hs_jrec_encode(&r, again, sizeof again) == n);
        check(memcmp(again, j + off, (size_t)n) == 0);
        off += (size_t)n;
        records++;
    }

    /* The loader agrees, and leaves the cache consistent. */
    hs_jload_stats st;
    int rc = hs_journal_load(C, j, len, NOW_WALL, NOW_MONO, &st);
    check(rc == 0 || rc == GP_ERR_NOMEM);
    if (rc == 0) {
        check(st.good_bytes == off && st.records == records && st.err == err);
        check(st.entries + st.tombstones <= records);
        size_t entries, bytes;
        uint64_t early;
        hs_cache_stats(C, &entries, &bytes, &early);
        check(entries == st.entries + st.tombstones);
    }
    hs_cache_clear(C);
    free(j);
    return 0;
}
