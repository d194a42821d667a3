/* journal.h — the house's replay journal, pure part: the record codec, a set of open calls,
 * and the rebuild of the replay cache (cache.c) from a journal's bytes. No file, no clock, no
 * logging: the caller passes bytes and both clocks. The file side (open, lock, append, sync,
 * compaction) is journal_file.c, declared in house.h.
 *
 * Why: the replay cache lives in memory, so a house killed while a call ran (or after it
 * answered, before the bridge acknowledged) would run that request again after a restart.
 * The journal records each call's start and end so a restarted house remembers it.
 *
 * File layout: the 8-byte magic HS_JOURNAL_MAGIC, then records back to back. A record is
 *
 *   u32 n | payload (n bytes, n <= HS_JREC_MAX) | 8-byte check
 *
 * (integers big-endian). The check is the first 8 bytes of BLAKE2b-128 (libsodium's
 * crypto_generichash; 16 bytes is its shortest output) over the length and the payload, so a
 * torn or corrupt tail is detected and reading stops there. The payload:
 *
 *   u8 type, u64 keep_until_ms (wall clock: ms since the Unix epoch; 0 in FORGET),
 *   str frame_id (not empty), str method, str path          -- str: u16 length + bytes, no NUL
 *   DONE only: u16 status (0: tombstone, then no headers and no body), u16 nheaders
 *     (<= GP_MAX_HEADERS), nheaders x (str name, u32 length + value), u32 length + body
 *     (<= HS_JREC_MAX_BODY)
 *
 * START: the call is about to run on the upstream. DONE: its response (or a tombstone: it
 * ran, its response is not kept). FORGET: it ended with nothing to remember (unreachable,
 * timeout, cancelled: what the in-memory cache does not keep either). */
#ifndef HS_JOURNAL_H
#define HS_JOURNAL_H

#include "house.h"

#define HS_JOURNAL_MAGIC "GPHJRNL1"
#define HS_JOURNAL_MAGIC_LEN 8
#define HS_JREC_MAX_BODY (1u << 20) /* the cache's per-entry limit */
#define HS_JREC_MAX (2u << 20)      /* payload limit: the body plus generous headers */
#define HS_JREC_CHECK_LEN 8
#define HS_JREC_OVERHEAD (4u + HS_JREC_CHECK_LEN) /* length prefix + check */

enum hs_jrec_type { HS_JREC_START = 1, HS_JREC_DONE = 2, HS_JREC_FORGET = 3 };

typedef struct hs_jrec {
    uint8_t type;
    uint64_t keep_until_ms; /* wall clock */
    gp_str frame_id, method, path;
    uint16_t status; /* DONE: 0 for a tombstone */
    size_t nheaders;
    const gp_header *headers; /* encode: the caller's array; decode: points into hbuf */
    gp_str body;
    gp_header hbuf[GP_MAX_HEADERS];
} hs_jrec;

/* Encoded size of r (prefix, payload and check), or 0 when r cannot be encoded (a string
 * over 65535 bytes, too many headers, a body over HS_JREC_MAX_BODY, a payload over
 * HS_JREC_MAX, an unknown type). */
size_t hs_jrec_size(const hs_jrec *r);

/* Encodes r into buf[0..cap). Returns the bytes written, GP_ERR_INVALID when r cannot be
 * encoded (see hs_jrec_size; the caller may write a tombstone instead), GP_ERR_BUFFER when
 * cap is too small. */
ssize_t hs_jrec_encode(const hs_jrec *r, uint8_t *buf, size_t cap);

/* Decodes the record at p[0..len). Returns the bytes it takes; the members of *out borrow
 * from p. GP_ERR_TRUNCATED when p holds less than a whole record (a torn tail when p ends
 * the file), GP_ERR_TOO_LARGE when its length prefix is over HS_JREC_MAX (before anything
 * else is read), GP_ERR_MALFORMED for a wrong check, an unknown type or a field that does
 * not fit. Any error means the journal ends before p. */
ssize_t hs_jrec_decode(const uint8_t *p, size_t len, hs_jrec *out) GP_WUR;

/* --- a set of calls by (frame id, method, path), in insertion order ------------------- */

/* The calls that started and have not ended: the rebuild's open STARTs, the file side's
 * running calls (rewritten by compaction). */
typedef struct hs_jset hs_jset;

hs_jset *hs_jset_new(void); /* NULL when out of memory */
void hs_jset_free(hs_jset *s);
/* Adds a call (the strings are copied). 0 or GP_ERR_NOMEM. */
int hs_jset_add(hs_jset *s, gp_str frame_id, gp_str method, gp_str path, uint64_t keep_until_ms);
/* Removes the oldest call with this identity. 1 if there was one, else 0. */
int hs_jset_remove(hs_jset *s, gp_str frame_id, gp_str method, gp_str path);
/* Removes calls whose keep-until is at or before now_ms. */
void hs_jset_prune(hs_jset *s, uint64_t now_ms);
size_t hs_jset_count(const hs_jset *s);
/* Calls fn for each call, oldest first; fn must not change the set. */
void hs_jset_each(const hs_jset *s,
                  void (*fn)(void *ud, gp_str frame_id, gp_str method, gp_str path,
                             uint64_t keep_until_ms),
                  void *ud);

/* --- rebuilding the cache ------------------------------------------------------------- */

typedef struct hs_jload_stats {
    size_t records;    /* whole records read */
    size_t entries;    /* full responses in the cache afterwards */
    size_t tombstones; /* tombstones in the cache afterwards */
    size_t expired;    /* records skipped: their keep-until had passed */
    size_t good_bytes; /* length of the valid prefix (magic included; 0 if the magic is bad) */
    int err;           /* 0, or why the rest was refused (hs_jrec_decode's error; GP_ERR_VERSION
                          for a wrong magic) */
} hs_jload_stats;

/* Rebuilds the replay cache c from a journal's bytes p[0..len), which start with the magic:
 * DONE -> a full entry or a tombstone; START with no later DONE or FORGET -> a tombstone (it
 * may have run: never run it again); FORGET -> nothing. Records whose keep-until is at or
 * before now_wall_ms are skipped; the others are kept until their keep-until, converted to
 * the cache's clock (now_mono_ms). Reading stops at the first bad record: st->good_bytes and
 * st->err say where and why (the caller cuts the file there). Returns 0, or GP_ERR_NOMEM when
 * the cache could not take an entry (the caller must not run requests then: at-most-once
 * could not be kept). An empty p (a new file) is fine: good_bytes 0, err 0. */
int hs_journal_load(hs_cache *c, const uint8_t *p, size_t len, uint64_t now_wall_ms,
                    uint64_t now_mono_ms, hs_jload_stats *st) GP_WUR;

#endif
