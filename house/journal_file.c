/* journal_file.c — the replay journal's file side (I/O): DIR/<id>.journal, opened and locked
 * at start-up and read back into the replay cache; START, DONE and FORGET records appended as
 * calls start and end (journal.h has the format and the pure codec); compaction when the file
 * has grown well past what the cache can hold.
 *
 * Durability: records go out with pwrite(2), so they are in the page cache when the call
 * runs and survive a crash of the process (kill -9, OOM killer). With --state-sync each START
 * is also fdatasync'ed before its call runs, so they survive a power loss too. A write that
 * fails or comes up short is cut back (ftruncate to the last whole record): a torn record in
 * the middle would hide every record after it at the next start-up. When a START cannot be
 * written the call does not run (hs_journal_start fails): a restart could not know it ran.
 *
 * Compaction rewrites the file from the live cache and the calls still running into
 * <id>.journal.tmp, fsyncs it, renames it over the journal and fsyncs the directory, all on
 * the loop: the cache's byte budget bounds it. The lock moves with the file: the new file is
 * locked before the rename, so a second house with the same id finds one or the other locked. */
#include "buf.h"
#include "house.h"
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COMPACT_MIN (64ull << 20) /* compaction threshold: this or 4x the cache's budget */
#define WBUF_CAP (1u << 20)       /* compaction's write buffer */

/* One house's journal. */
struct hs_journal {
    hs_cache *cache; /* what it mirrors */
    int fd;          /* -1: no journal */
    int sync;
    char *dir, *path, *tmp;
    uint64_t off;        /* end of the last whole record */
    uint64_t threshold;  /* compaction when the file grows beyond this */
    uint64_t compact_at; /* the size at which compaction is tried next */
    uint8_t *buf;        /* one encoded record */
    size_t cap;
    hs_jset *running; /* STARTs written whose DONE or FORGET is not: kept by compaction */
};

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The cache's keep-until (monotonic, hs_now_ms) as wall clock, which survives a reboot. */
static uint64_t to_wall(uint64_t keep_mono, uint64_t now_mono, uint64_t now_wall) {
    return keep_mono > now_mono ? now_wall + (keep_mono - now_mono) : now_wall;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Encodes r into j->buf. Returns its size, GP_ERR_INVALID (cannot be a record) or
 * GP_ERR_NOMEM. */
static ssize_t encode(hs_journal *j, const hs_jrec *r) {
    size_t n = hs_jrec_size(r);
    if (n == 0)
        return GP_ERR_INVALID;
    if (gp_grow(&j->buf, &j->cap, n, n, 1) != 0)
        return GP_ERR_NOMEM;
    return hs_jrec_encode(r, j->buf, j->cap);
}

/* Appends r at j->off. 0, or -1 (logged) with the file cut back to its last whole record. */
static int append(hs_journal *j, const hs_jrec *r) {
    ssize_t n = encode(j, r);
    if (n < 0) {
        hs_log(HS_LOG_ERROR, "journal_write_failed", "id=%s error=%s",
               hs_q(r->frame_id.p, r->frame_id.len), gp_strerror((int)n));
        return -1;
    }
    if (write_all(j->fd, j->buf, (size_t)n, j->off) != 0) {
        int e = errno;
        int cut = ftruncate(j->fd, (off_t)j->off);
        hs_log(HS_LOG_ERROR, "journal_write_failed", "path=%s id=%s error=%s cut_back=%s",
               hs_qs(j->path), hs_q(r->frame_id.p, r->frame_id.len), hs_qs(strerror(e)),
               cut == 0 ? "yes" : "failed");
        return -1;
    }
    j->off += (uint64_t)n;
    return 0;
}

static void rec_head(hs_jrec *r, uint8_t type, const char *frame_id, const char *method,
                     const char *path, uint64_t keep_wall) {
    memset(r, 0, offsetof(hs_jrec, hbuf));
    r->type = type;
    r->keep_until_ms = keep_wall;
    r->frame_id = gp_str_c(frame_id);
    r->method = gp_str_c(method);
    r->path = gp_str_c(path);
}

/* A DONE record for cache entry e; a tombstone when its response cannot be a record. */
static void rec_done(hs_jrec *r, const hs_centry *e, uint64_t keep_wall) {
    rec_head(r, HS_JREC_DONE, hs_cache_frame_id(e), hs_cache_method(e), hs_cache_path(e),
             keep_wall);
    r->status = hs_cache_status(e);
    if (r->status) {
        r->headers = hs_cache_headers(e, &r->nheaders);
        r->body = hs_cache_body(e);
    }
    if (hs_jrec_size(r) == 0) {
        r->status = 0;
        r->nheaders = 0;
        r->body = (gp_str){NULL, 0};
    }
}

/* --- compaction ------------------------------------------------------------------------- */

typedef struct cwriter {
    hs_journal *j;
    int fd;
    uint64_t off; /* bytes written to fd */
    uint8_t *wb;
    size_t wlen;
    int err; /* errno of the first failure */
    uint64_t now_mono, now_wall;
    size_t records;
} cwriter;

static void cw_flush(cwriter *w) {
    if (!w->err && w->wlen && write_all(w->fd, w->wb, w->wlen, w->off) != 0)
        w->err = errno ? errno : EIO;
    w->off += w->wlen;
    w->wlen = 0;
}

static void cw_put(cwriter *w, const uint8_t *p, size_t n) {
    if (w->wlen + n > WBUF_CAP)
        cw_flush(w);
    if (n > WBUF_CAP) {
        if (!w->err && write_all(w->fd, p, n, w->off) != 0)
            w->err = errno ? errno : EIO;
        w->off += n;
        return;
    }
    memcpy(w->wb + w->wlen, p, n);
    w->wlen += n;
}

static void cw_rec(cwriter *w, const hs_jrec *r) {
    hs_journal *j = w->j;
    ssize_t n = encode(j, r);
    if (n < 0) {
        if (!w->err)
            w->err = ENOMEM;
        return;
    }
    cw_put(w, j->buf, (size_t)n);
    w->records++;
}

static void compact_entry(void *ud, const hs_centry *e) {
    cwriter *w = ud;
    if (hs_cache_kept_until(e) <= w->now_mono)
        return;
    hs_jrec *r = malloc(sizeof *r);
    if (!r) {
        w->err = ENOMEM;
        return;
    }
    rec_done(r, e, to_wall(hs_cache_kept_until(e), w->now_mono, w->now_wall));
    cw_rec(w, r);
    free(r);
}

static void compact_running(void *ud, gp_str frame_id, gp_str method, gp_str path,
                            uint64_t keep_wall) {
    cwriter *w = ud;
    hs_jrec r;
    memset(&r, 0, offsetof(hs_jrec, hbuf));
    r.type = HS_JREC_START;
    r.keep_until_ms = keep_wall;
    r.frame_id = frame_id;
    r.method = method;
    r.path = path;
    cw_rec(w, &r);
}

static void compact(hs_journal *j) {
    uint64_t t0 = hs_now_ms(), before = j->off;
    cwriter w = {.j = j, .fd = -1, .now_mono = t0, .now_wall = wall_ms()};
    const char *step = "open";
    hs_jset_prune(j->running, w.now_wall);
    w.wb = malloc(WBUF_CAP);
    w.fd = open(j->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (!w.wb || w.fd < 0) {
        w.err = !w.wb ? ENOMEM : errno;
        goto fail;
    }
    step = "lock";
    if (flock(w.fd, LOCK_EX | LOCK_NB) != 0) {
        w.err = errno;
        goto fail;
    }
    step = "write";
    cw_put(&w, (const uint8_t *)HS_JOURNAL_MAGIC, HS_JOURNAL_MAGIC_LEN);
    hs_cache_each(j->cache, compact_entry, &w);
    hs_jset_each(j->running, compact_running, &w);
    cw_flush(&w);
    if (w.err)
        goto fail;
    step = "fsync";
    if (fsync(w.fd) != 0) {
        w.err = errno;
        goto fail;
    }
    step = "rename";
    if (rename(j->tmp, j->path) != 0) {
        w.err = errno;
        goto fail;
    }
    /* From here the new file is the journal: a failure to sync the directory only weakens
     * durability until the next sync, so it is logged and the new file kept. */
    int dir_synced = fsync_dir(j->dir) == 0;
    close(j->fd); /* releases the old file's lock; the new one is already locked */
    j->fd = w.fd;
    j->off = w.off;
    j->compact_at = j->off * 2 > j->threshold ? j->off * 2 : j->threshold;
    free(w.wb);
    hs_log(HS_LOG_INFO, "journal_compacted",
           "path=%s bytes_before=%llu bytes=%llu records=%zu dir_synced=%s ms=%llu", hs_qs(j->path),
           (unsigned long long)before, (unsigned long long)j->off, w.records,
           dir_synced ? "yes" : "no", (unsigned long long)(hs_now_ms() - t0));
    return;
fail:
    if (w.fd >= 0) {
        close(w.fd);
        unlink(j->tmp);
    }
    free(w.wb);
    j->compact_at = j->off + j->threshold / 4; /* try again later, not on every record */
    hs_log(HS_LOG_ERROR, "journal_compact_failed", "path=%s step=%s error=%s ms=%llu",
           hs_qs(j->tmp), step, hs_qs(strerror(w.err)), (unsigned long long)(hs_now_ms() - t0));
}

static void maybe_compact(hs_journal *j) {
    if (j->fd >= 0 && j->off >= j->compact_at)
        compact(j);
}

/* --- opening ---------------------------------------------------------------------------- */

/* mkdir -p with mode 0700 for what it creates. */
static int mkdir_p(const char *dir) {
    char *p = strdup(dir);
    if (!p)
        return -1;
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = c;
        if (!c)
            break;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static char *path_of(const char *dir, const char *id, const char *suffix) {
    size_t n = strlen(dir) + strlen(id) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", dir, id, suffix);
    return p;
}

static const char *why(int err) {
    switch (err) {
    case GP_ERR_TRUNCATED:
        return "torn";
    case GP_ERR_VERSION:
        return "not_a_journal";
    case GP_ERR_TOO_LARGE:
        return "bad_length";
    default:
        return "corrupt";
    }
}

hs_journal *hs_journal_open(hs_cache *c, const char *dir, const char *id, int sync, char *err,
                            size_t errlen) {
    hs_journal *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "state-dir: out of memory");
        return NULL;
    }
    j->cache = c;
    j->fd = -1;
    if (!dir || !*dir)
        return j;
    uint64_t t0 = hs_now_ms();
    int fd = -1;
    uint8_t *map = NULL;
    struct stat st;
    if (mkdir_p(dir) != 0) {
        snprintf(err, errlen, "state-dir: cannot create %s: %s", dir, strerror(errno));
        free(j);
        return NULL;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "state-dir: %s is not writable: %s", dir, strerror(errno));
        free(j);
        return NULL;
    }
    j->sync = sync;
    j->dir = strdup(dir);
    j->path = path_of(dir, id, ".journal");
    j->tmp = path_of(dir, id, ".journal.tmp");
    j->running = hs_jset_new();
    if (!j->dir || !j->path || !j->tmp || !j->running) {
        snprintf(err, errlen, "state-dir: out of memory");
        goto fail;
    }
    fd = open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "state-dir: cannot open %s: %s", j->path, strerror(errno));
        goto fail;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "state-dir: %s: %s", j->path,
                 errno == EWOULDBLOCK ? "in use by another ghostport-house with the same id"
                                      : strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "state-dir: %s: %s", j->path, strerror(errno));
        goto fail;
    }
    size_t size = (size_t)st.st_size;
    if (size) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            snprintf(err, errlen, "state-dir: cannot read %s: %s", j->path, strerror(errno));
            goto fail;
        }
    }
    hs_jload_stats ls;
    int rc = hs_journal_load(c, map, size, wall_ms(), hs_now_ms(), &ls);
    if (map)
        munmap(map, size);
    if (rc != 0) {
        snprintf(err, errlen, "state-dir: %s: out of memory rebuilding the replay cache", j->path);
        goto fail;
    }
    if (ls.err)
        hs_log(HS_LOG_WARN, "journal_truncated", "path=%s offset=%zu size=%zu reason=%s",
               hs_qs(j->path), ls.good_bytes, size, why(ls.err));
    j->off = ls.good_bytes;
    if (j->off < size && ftruncate(fd, (off_t)j->off) != 0) {
        snprintf(err, errlen, "state-dir: cannot truncate %s: %s", j->path, strerror(errno));
        goto fail;
    }
    if (j->off == 0) {
        /* A new (or unusable) file: the magic, made durable with its directory entry. */
        if (write_all(fd, (const uint8_t *)HS_JOURNAL_MAGIC, HS_JOURNAL_MAGIC_LEN, 0) != 0 ||
            fsync(fd) != 0 || fsync_dir(dir) != 0) {
            snprintf(err, errlen, "state-dir: cannot write %s: %s", j->path, strerror(errno));
            goto fail;
        }
        j->off = HS_JOURNAL_MAGIC_LEN;
    }
    j->fd = fd;
    j->threshold = 4ull * hs_cache_budget(j->cache);
    if (j->threshold < COMPACT_MIN)
        j->threshold = COMPACT_MIN;
    j->compact_at = j->threshold;
    hs_log(HS_LOG_INFO, "journal_loaded",
           "path=%s entries=%zu tombstones=%zu records=%zu expired=%zu bytes=%llu sync=%s ms=%llu",
           hs_qs(j->path), ls.entries, ls.tombstones, ls.records, ls.expired,
           (unsigned long long)j->off, sync ? "yes" : "no", (unsigned long long)(hs_now_ms() - t0));
    maybe_compact(j);
    return j;
fail:
    if (fd >= 0)
        close(fd);
    hs_journal_close(j);
    hs_cache_clear(c);
    return NULL;
}

void hs_journal_close(hs_journal *j) {
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    hs_jset_free(j->running);
    GP_FREE_ALL(j->dir, j->path, j->tmp, j->buf, j);
}

/* --- the hooks -------------------------------------------------------------------------- */

int hs_journal_start(hs_journal *j, const hs_request *r, uint64_t start_ms) {
    if (j->fd < 0)
        return 0;
    uint64_t now = hs_now_ms(), wall = wall_ms();
    uint64_t keep = to_wall(hs_cache_retention(now, start_ms + r->timeout_ms), now, wall);
    hs_jrec rec;
    rec_head(&rec, HS_JREC_START, r->frame_id, r->method, r->path, keep);
    if (hs_jset_add(j->running, rec.frame_id, rec.method, rec.path, keep) != 0) {
        hs_log(HS_LOG_ERROR, "journal_write_failed", "id=%s error=out_of_memory",
               hs_qs(r->frame_id));
        return -1;
    }
    if (append(j, &rec) != 0) {
        hs_jset_remove(j->running, rec.frame_id, rec.method, rec.path);
        return -1;
    }
    if (j->sync && fdatasync(j->fd) != 0) {
        /* Written but maybe not durable: the call does not run, and says so (FORGET). */
        hs_log(HS_LOG_ERROR, "journal_sync_failed", "path=%s id=%s error=%s", hs_qs(j->path),
               hs_qs(r->frame_id), hs_qs(strerror(errno)));
        hs_journal_forget(j, r);
        return -1;
    }
    return 0;
}

void hs_journal_commit(hs_journal *j, hs_centry *e, uint64_t now_ms, uint64_t deadline_ms) {
    uint64_t keep = hs_cache_retention(now_ms, deadline_ms);
    if (j->fd >= 0) {
        hs_jrec *rec = malloc(sizeof *rec);
        if (rec) {
            rec_done(rec, e, to_wall(keep, now_ms, wall_ms()));
            hs_jset_remove(j->running, rec->frame_id, rec->method, rec->path);
            /* A failure leaves the START: after a restart the call counts as having run. */
            append(j, rec);
            free(rec);
        }
    }
    hs_cache_commit_until(j->cache, e, now_ms, keep);
    maybe_compact(j);
}

void hs_journal_forget(hs_journal *j, const hs_request *r) {
    if (j->fd < 0)
        return;
    hs_jrec rec;
    rec_head(&rec, HS_JREC_FORGET, r->frame_id, r->method, r->path, 0);
    if (!hs_jset_remove(j->running, rec.frame_id, rec.method, rec.path))
        return; /* no START of it was written */
    append(j, &rec);
    maybe_compact(j);
}
