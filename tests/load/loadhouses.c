/* loadhouses.c — gp-loadhouses: N simulated houses in one process, for fault tests and
 * benchmarks of the bridge. Every house is one libwebsockets client connection (all of them in
 * one lws context on one libuv loop) that speaks to the bridge exactly as house/tunnel.c does:
 * the HELLO/CHALLENGE/AUTH/WELCOME handshake (the bridge's proof is checked), PING/PONG,
 * GOAWAY, full-jitter reconnect backoff and bridge rotation. Instead of calling an upstream it
 * answers every request itself: RESP_HEAD 200 and a B-byte body after D ms of think time.
 * Like the real house it remembers the frame ids it has executed, so a request delivered again
 * is answered from that memory (`replayed`) instead of running twice (`dup_exec`, which counts
 * second executions and must stay 0). Progress goes to stdout as key=value event lines.
 * I/O side, test-only; frames and proofs are proto/'s pure functions.
 *
 * Memory per house is a small struct plus what lws needs for a connection: frames arrive in
 * pieces of at most RX_BUFFER bytes and are decoded in place, a gp_framer exists only while a
 * frame spans pieces, and response bodies are generated chunk by chunk at write time. */
#include "../../bridge/rclient.h"
#include "../../bridge/rurl.h"
#include "../../bridge/tlsrelay.h"
#include "auth.h"
#include "conf.h"
#include "frame.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define SUBPROTOCOL "ghostport.v1"
#define RX_BUFFER (4096u + GP_FRAME_HEADER_LEN)
#define HANDSHAKE_MS 15000u /* dial + auth; the bridge allows 10 s for its part */
#define BACKOFF_BASE_MS 250u
#define BACKOFF_CAP_MS 30000u
#define STABLE_MS 60000u /* a connection up this long resets the backoff */
#define DRAIN_MS 10000u  /* GOAWAY DRAINING: longest wait for in-flight answers */
#define CLOSE_FLUSH_S 2  /* seconds lws may take to flush a close before it kills */
#define STOP_WAIT_MS 3000u
#define DEFAULT_PING_MS 5000u
#define PACE_MS 10u       /* dial pacer tick */
#define PACE_BURST_MS 50u /* dial credit saved up at most */
#define SWEEP_MS 100u     /* liveness checks of every house */
#define FD_RESERVE 64u    /* descriptors besides the houses' sockets */
#define REDIS_BATCH 1000u

/* --- configuration ----------------------------------------------------------------------- */

typedef struct lh_bridge {
    char *url;
    char host[256], hostport[300], path[400];
    int port, tls;
} lh_bridge;

typedef struct lh_config {
    int layer, bridges_layer;
    lh_bridge *bridges;
    size_t nbridges;
    char *redis, *prefix, *id_prefix, *log_level, *master_key, *ca_file;
    char *redis_user, *redis_password_file, *redis_ca_file;
    long long count, connect_rate, response_bytes, delay_ms, stats_interval, remember_ms;
    int reg, spread, no_replay, insecure, help;
} lh_config;

/* --- houses, streams, executions ---------------------------------------------------------- */

typedef struct lh_out {
    struct lh_out *next;
    size_t len;
    uint8_t buf[]; /* LWS_PRE + frame */
} lh_out;

typedef struct lh_house lh_house;
typedef struct lh_stream lh_stream;
typedef struct lh_exec lh_exec;

enum conn_state { CS_IDLE, CS_CONNECTING, CS_HELLO, CS_AUTH, CS_LIVE, CS_CLOSING };
enum backoff_kind { BK_NORMAL, BK_LONG, BK_NOW };

struct lh_house {
    struct lws *wsi;
    gp_framer *fr; /* only while a frame spans several received pieces */
    lh_out *ctl_head, *ctl_tail;
    lh_stream *streams;               /* streams of the current connection */
    lh_stream *ring_head, *ring_tail; /* streams with a frame to write, round robin */
    lh_house *dnext;                  /* dial queue */
    const char *reason;
    uint64_t dial_ms, live_ms, last_rx_ms, last_ping_ms, drain_ms;
    uint32_t idx, ping_iv, max_frame, nstreams;
    uint16_t attempt, bridge_idx;
    uint8_t state, next_backoff, draining, in_dialq, ever_live, has_wsi;
    uint8_t secret[GP_SECRET_LEN];
    uint8_t hn[GP_NONCE_LEN];
};

enum stream_phase { ST_BODY, ST_THINK, ST_JOIN, ST_SEND };

struct lh_stream {
    lh_stream *snext, *sprev; /* house's list (not while detached) */
    lh_stream *rnext;         /* house's write ring */
    lh_stream *tnext, *tprev; /* think FIFO */
    lh_stream *jnext;         /* joiners of an execution */
    lh_house *h;
    lh_exec *ex; /* ST_THINK: the execution it runs; ST_JOIN: the one it waits for */
    char *fid;
    size_t fidlen;
    uint64_t ready_ms, sent;
    uint32_t id, exec_no;
    uint8_t phase, head_sent, fin_sent, in_ring, detached;
};

enum exec_state { EX_RUNNING, EX_DONE, EX_ABORTED };

/* One frame id of one house that was executed (or is executing). Finished entries are kept
 * for --remember-ms in an age FIFO, like the real house's replay cache. */
struct lh_exec {
    lh_exec *hnext, *anext;
    lh_stream *runner, *joiners;
    uint64_t done_ms;
    uint32_t house, execs;
    uint8_t state, in_age;
    uint16_t idlen;
    char id[];
};

typedef struct lh_due {
    uint64_t at;
    uint32_t house;
} lh_due;

static struct {
    lh_config cfg;
    int log_level;
    uint8_t master_key[32];
    int has_master;
    uv_loop_t *loop;
    struct lws_context *ctx;
    lh_house *houses;
    size_t n;
    int stopping, handles_open;
    uint64_t start_ms, stop_ms;
    uv_timer_t pace, sweep, stats, think, stop;
    uv_signal_t sigint, sigterm;
    /* dialing: a FIFO paced at --connect-rate, fed by a min-heap of backoff deadlines */
    lh_house *dq_head, *dq_tail;
    double credit;
    uint64_t credit_ms;
    lh_due *heap;
    size_t nheap;
    /* executions in their think time, in deadline order (the delay is the same for all) */
    lh_stream *think_head, *think_tail;
    lh_exec **eb;
    size_t neb, nexec;
    lh_exec *age_head, *age_tail;
    /* counters */
    size_t n_live, n_connecting, n_open;
    uint64_t requests, replayed, dup_exec, reconnects, execs, answered, cancelled, disconnects,
        dial_failures, fenced, warn_suppressed;
    uint64_t warn_ms;
    int all_connected;
    gp_frame *rxf;
    uint8_t *wbuf, *body;
} G;

static uint64_t now_ms(void) {
    return uv_hrtime() / 1000000u;
}

/* --- output and log ----------------------------------------------------------------------- */

enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void lh_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lh_log(int level, const char *event, const char *fmt, ...) {
    if (level > G.log_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[1024];
    int n = snprintf(line, sizeof line, "ts=%lld.%03ld level=%s event=%s", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (fmt && n > 0 && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

/* One event line on stdout, flushed at once: a test reading our pipe sees it now. */
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* A log-safe copy of bytes from the network, for a bare value (spaces 0) or one inside
 * double quotes (spaces 1): anything else unusual becomes '?'. Rotating buffers, so one log
 * call may use a few. */
static const char *safe_text(const uint8_t *p, size_t n, int spaces) {
    static char bufs[4][96];
    static unsigned k;
    char *b = bufs[k++ % 4];
    size_t m = n < sizeof bufs[0] - 1 ? n : sizeof bufs[0] - 1;
    for (size_t i = 0; i < m; i++)
        b[i] = (p[i] > ' ' || (spaces && p[i] == ' ')) && p[i] < 0x7f && p[i] != '"' && p[i] != '\\'
                   ? (char)p[i]
                   : '?';
    b[m] = '\0';
    return m || spaces ? b : "-";
}

static const char *safe(const uint8_t *p, size_t n) {
    return safe_text(p, n, 0);
}

static const char *house_id(const lh_house *h) {
    static char bufs[4][GP_MAX_HOUSE_ID + 1];
    static unsigned k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s%u", G.cfg.id_prefix, h->idx + 1);
    return b;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void print_stats(int final) {
    size_t waiting = G.n - G.n_live - G.n_connecting;
    emit("event=stats live=%zu connecting=%zu requests=%llu replayed=%llu dup_exec=%llu "
         "reconnects=%llu rss_kb=%ld waiting=%zu execs=%llu answered=%llu cancelled=%llu "
         "disconnects=%llu dial_failures=%llu fenced=%llu uptime_ms=%llu%s",
         G.n_live, G.n_connecting, (unsigned long long)G.requests, (unsigned long long)G.replayed,
         (unsigned long long)G.dup_exec, (unsigned long long)G.reconnects, rss_kb(), waiting,
         (unsigned long long)G.execs, (unsigned long long)G.answered,
         (unsigned long long)G.cancelled, (unsigned long long)G.disconnects,
         (unsigned long long)G.dial_failures, (unsigned long long)G.fenced,
         (unsigned long long)(now_ms() - G.start_ms), final ? " final=1" : "");
}

/* --- execution memory --------------------------------------------------------------------- */

static size_t exec_bucket(uint32_t house, const char *id, size_t n, size_t nb) {
    uint64_t x = 14695981039346656037ull; /* FNV-1a */
    for (int i = 0; i < 4; i++)
        x = (x ^ ((house >> (8 * i)) & 0xffu)) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        x = (x ^ (uint8_t)id[i]) * 1099511628211ull;
    return (size_t)(x % nb);
}

static lh_exec *exec_find(uint32_t house, const char *id, size_t n) {
    for (lh_exec *e = G.eb[exec_bucket(house, id, n, G.neb)]; e; e = e->hnext)
        if (e->house == house && e->idlen == n && memcmp(e->id, id, n) == 0)
            return e;
    return NULL;
}

static void exec_grow(void) {
    size_t nb = G.neb * 2;
    lh_exec **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < G.neb; i++)
        for (lh_exec *e = G.eb[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = exec_bucket(e->house, e->id, e->idlen, nb);
            e->hnext = b[k];
            b[k] = e;
        }
    free(G.eb);
    G.eb = b;
    G.neb = nb;
}

static lh_exec *exec_new(uint32_t house, const char *id, size_t n) {
    if (G.nexec >= G.neb * 2)
        exec_grow();
    lh_exec *e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    e->house = house;
    e->idlen = (uint16_t)n;
    memcpy(e->id, id, n);
    size_t k = exec_bucket(house, id, n, G.neb);
    e->hnext = G.eb[k];
    G.eb[k] = e;
    G.nexec++;
    return e;
}

static void exec_free(lh_exec *e) {
    lh_exec **pp = &G.eb[exec_bucket(e->house, e->id, e->idlen, G.neb)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    G.nexec--;
    free(e);
}

/* The execution ended (done or aborted): its entry starts ageing. */
static void exec_settle(lh_exec *e, enum exec_state st, uint64_t now) {
    e->state = (uint8_t)st;
    e->runner = NULL;
    e->done_ms = now;
    if (e->in_age)
        return; /* ran again: it keeps its place, and is dropped a little late */
    e->in_age = 1;
    e->anext = NULL;
    if (G.age_tail)
        G.age_tail->anext = e;
    else
        G.age_head = e;
    G.age_tail = e;
}

static void exec_prune(uint64_t now) {
    while (G.age_head) {
        lh_exec *e = G.age_head;
        if (e->state != EX_RUNNING &&
            (G.cfg.remember_ms == 0 || now - e->done_ms < (uint64_t)G.cfg.remember_ms))
            return;
        G.age_head = e->anext;
        if (!G.age_head)
            G.age_tail = NULL;
        e->in_age = 0;
        if (e->state != EX_RUNNING) /* running again: back in the FIFO when it ends */
            exec_free(e);
    }
}

/* --- sending ------------------------------------------------------------------------------ */

static void want_write(lh_house *h) {
    if (h->wsi && h->state >= CS_HELLO)
        lws_callback_on_writable(h->wsi);
}

static void send_ctl(lh_house *h, const gp_frame *f) {
    size_t n = gp_frame_size(f);
    lh_out *o = malloc(sizeof *o + LWS_PRE + n);
    ssize_t w = o ? gp_frame_encode(f, o->buf + LWS_PRE, n) : GP_ERR_NOMEM;
    if (w < 0) {
        lh_log(LOG_ERROR, "frame_encode_failed", "house=%s type=%s err=%s", house_id(h),
               gp_frame_type_name(f->type), gp_strerror((int)w));
        free(o);
        return;
    }
    o->len = (size_t)w;
    o->next = NULL;
    if (h->ctl_tail)
        h->ctl_tail->next = o;
    else
        h->ctl_head = o;
    h->ctl_tail = o;
    want_write(h);
}

static void ctl_drop(lh_house *h) {
    for (lh_out *o = h->ctl_head, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    h->ctl_head = h->ctl_tail = NULL;
}

static void ring_push(lh_stream *s) {
    lh_house *h = s->h;
    if (s->in_ring)
        return;
    s->rnext = NULL;
    if (h->ring_tail)
        h->ring_tail->rnext = s;
    else
        h->ring_head = s;
    h->ring_tail = s;
    s->in_ring = 1;
    want_write(h);
}

static void ring_remove(lh_stream *s) {
    if (!s->in_ring)
        return;
    lh_house *h = s->h;
    lh_stream **pp = &h->ring_head, *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->rnext;
    }
    if (*pp) {
        *pp = s->rnext;
        if (h->ring_tail == s)
            h->ring_tail = prev;
    }
    s->rnext = NULL;
    s->in_ring = 0;
}

/* Appends a JSON string body (without quotes) of p[0..n) to out; returns the new length. */
static size_t json_escape(char *out, size_t o, size_t cap, const char *p, size_t n) {
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* Body bytes [off, off + n) of a stream's response: a small JSON object naming the house,
 * the frame id and which execution answered, padded with spaces (still valid JSON). */
static void fill_body(const lh_stream *s, uint8_t *out, uint64_t off, size_t n) {
    char js[1024];
    size_t jl = (size_t)snprintf(js, sizeof js, "{\"house\":\"%s\",\"id\":\"", house_id(s->h));
    jl = json_escape(js, jl, sizeof js - 32, s->fid, s->fidlen);
    jl += (size_t)snprintf(js + jl, sizeof js - jl, "\",\"exec\":%u}", s->exec_no);
    size_t k = 0;
    if (off < jl) {
        k = jl - (size_t)off < n ? jl - (size_t)off : n;
        memcpy(out, js + off, k);
    }
    memset(out + k, ' ', n - k);
}

static void stream_unlink(lh_stream *s) {
    if (s->detached)
        return;
    lh_house *h = s->h;
    if (s->sprev)
        s->sprev->snext = s->snext;
    else if (h->streams == s)
        h->streams = s->snext;
    if (s->snext)
        s->snext->sprev = s->sprev;
    s->snext = s->sprev = NULL;
    h->nstreams--;
    ring_remove(s);
}

static void stream_free(lh_stream *s) {
    stream_unlink(s);
    free(s->fid);
    free(s);
}

static void conn_close(lh_house *h, const char *reason, enum backoff_kind bk);

static void maybe_finish_drain(lh_house *h) {
    if (h->draining && h->state == CS_LIVE && h->nstreams == 0)
        conn_close(h, "drained", BK_NOW);
}

/* Writes the next frame of stream s. Returns 0 or -1 (write failed). */
static int write_stream_frame(lh_house *h, lh_stream *s, struct lws *wsi) {
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.stream = s->id;
    uint64_t total = (uint64_t)G.cfg.response_bytes;
    gp_header ct = {GP_STR_LIT("content-type"), GP_STR_LIT("application/json")};
    if (!s->head_sent) {
        f.type = GP_FRAME_RESP_HEAD;
        f.u.resp_head.status = 200;
        f.u.resp_head.headers = &ct;
        f.u.resp_head.nheaders = 1;
        f.u.resp_head.body_len = total;
        s->head_sent = 1;
    } else {
        size_t chunk = h->max_frame < GP_BODY_CHUNK ? h->max_frame : GP_BODY_CHUNK;
        size_t n = total - s->sent < chunk ? (size_t)(total - s->sent) : chunk;
        fill_body(s, G.body, s->sent, n);
        f.type = GP_FRAME_RESP_BODY;
        f.u.body.data = (gp_str){G.body, n};
        s->sent += n;
        if (s->sent == total) {
            f.flags = GP_FLAG_FIN;
            s->fin_sent = 1;
        }
    }
    ssize_t w = gp_frame_encode(&f, G.wbuf + LWS_PRE, GP_FRAME_HEADER_LEN + GP_BODY_CHUNK + 64);
    if (w < 0) {
        lh_log(LOG_ERROR, "frame_encode_failed", "house=%s type=%s err=%s", house_id(h),
               gp_frame_type_name(f.type), gp_strerror((int)w));
        return -1;
    }
    /* lws buffers what the socket does not take; a short count is a failure. */
    return lws_write(wsi, G.wbuf + LWS_PRE, (size_t)w, LWS_WRITE_BINARY) < (int)w ? -1 : 0;
}

static int on_writeable(lh_house *h, struct lws *wsi) {
    if (h->ctl_head) {
        lh_out *o = h->ctl_head;
        h->ctl_head = o->next;
        if (!h->ctl_head)
            h->ctl_tail = NULL;
        int w = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_BINARY);
        int short_write = w < (int)o->len;
        free(o);
        if (short_write) {
            h->reason = "write_failed";
            return -1;
        }
    } else if (h->state == CS_LIVE && h->ring_head) {
        lh_stream *s = h->ring_head;
        h->ring_head = s->rnext;
        if (!h->ring_head)
            h->ring_tail = NULL;
        s->rnext = NULL;
        s->in_ring = 0;
        if (write_stream_frame(h, s, wsi) != 0) {
            h->reason = "write_failed";
            return -1;
        }
        if (s->fin_sent) {
            G.answered++;
            stream_free(s);
            maybe_finish_drain(h);
        } else {
            ring_push(s); /* round robin: to the back of the ring */
        }
    }
    if (h->state == CS_CLOSING && !h->ctl_head) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    if (h->ctl_head || (h->state == CS_LIVE && h->ring_head))
        lws_callback_on_writable(wsi);
    return 0;
}

/* --- executing requests ------------------------------------------------------------------- */

static void go_send(lh_stream *s) {
    s->phase = ST_SEND;
    s->ex = NULL;
    ring_push(s);
}

static void think_remove(lh_stream *s) {
    if (s->tprev)
        s->tprev->tnext = s->tnext;
    else
        G.think_head = s->tnext;
    if (s->tnext)
        s->tnext->tprev = s->tprev;
    else
        G.think_tail = s->tprev;
    s->tnext = s->tprev = NULL;
}

static void dispatch(lh_stream *s);

/* The execution s was running is over: s and every stream that joined it answer. */
static void exec_finish(lh_stream *s, uint64_t now) {
    lh_exec *e = s->ex;
    exec_settle(e, EX_DONE, now);
    lh_stream *j = e->joiners;
    e->joiners = NULL;
    while (j) {
        lh_stream *next = j->jnext;
        j->jnext = NULL;
        j->exec_no = e->execs;
        G.replayed++;
        go_send(j);
        j = next;
    }
    if (s->detached) {
        /* Its connection is gone; the answer lives on in the memory for the redelivery. */
        s->ex = NULL;
        stream_free(s);
        return;
    }
    go_send(s);
}

/* The execution s was running stopped before its end (CANCEL, shutdown). Streams that
 * joined it are dispatched again: one of them runs it again (a second execution). */
static void exec_abort(lh_stream *s) {
    lh_exec *e = s->ex;
    s->ex = NULL;
    exec_settle(e, EX_ABORTED, now_ms());
    lh_stream *j = e->joiners;
    e->joiners = NULL;
    while (j) {
        lh_stream *next = j->jnext;
        j->jnext = NULL;
        j->ex = NULL;
        dispatch(j);
        j = next;
    }
}

static void joiner_remove(lh_stream *s) {
    lh_stream **pp = &s->ex->joiners;
    while (*pp && *pp != s)
        pp = &(*pp)->jnext;
    if (*pp)
        *pp = s->jnext;
    s->jnext = NULL;
    s->ex = NULL;
}

static void on_think(uv_timer_t *t) {
    (void)t;
    uint64_t now = now_ms();
    while (G.think_head && G.think_head->ready_ms <= now) {
        lh_stream *s = G.think_head;
        think_remove(s);
        exec_finish(s, now);
    }
    if (G.think_head && !G.stopping)
        uv_timer_start(&G.think, on_think, G.think_head->ready_ms - now, 0);
}

/* The request of s is complete: answer it from memory, join a running execution of the same
 * frame id, or execute it. */
static void dispatch(lh_stream *s) {
    lh_house *h = s->h;
    lh_exec *e = exec_find(h->idx, s->fid, s->fidlen);
    if (e && e->state == EX_DONE && !G.cfg.no_replay) {
        G.replayed++;
        s->exec_no = e->execs;
        lh_log(LOG_DEBUG, "replayed", "house=%s id=%s stream=%u", house_id(h),
               safe((const uint8_t *)s->fid, s->fidlen), s->id);
        go_send(s);
        return;
    }
    if (e && e->state == EX_RUNNING) {
        /* Delivered again while the first delivery still runs: wait for its answer. */
        s->phase = ST_JOIN;
        s->ex = e;
        s->jnext = e->joiners;
        e->joiners = s;
        return;
    }
    if (e) {
        G.dup_exec++;
        lh_log(G.cfg.no_replay ? LOG_DEBUG : LOG_WARN, "dup_exec",
               "house=%s id=%s stream=%u execs=%u", house_id(h),
               safe((const uint8_t *)s->fid, s->fidlen), s->id, e->execs + 1);
    } else if (!(e = exec_new(h->idx, s->fid, s->fidlen))) {
        lh_log(LOG_ERROR, "out_of_memory", "house=%s stream=%u", house_id(h), s->id);
        stream_free(s);
        return;
    }
    G.execs++;
    e->execs++;
    e->state = EX_RUNNING;
    e->runner = s;
    s->ex = e;
    s->exec_no = e->execs;
    uint64_t now = now_ms();
    if (G.cfg.delay_ms == 0) {
        exec_finish(s, now);
        return;
    }
    s->phase = ST_THINK;
    s->ready_ms = now + (uint64_t)G.cfg.delay_ms;
    s->tnext = NULL;
    s->tprev = G.think_tail;
    if (G.think_tail)
        G.think_tail->tnext = s;
    else
        G.think_head = s;
    G.think_tail = s;
    if (G.think_head == s)
        uv_timer_start(&G.think, on_think, (uint64_t)G.cfg.delay_ms, 0);
}

/* The connection of h is gone or going: nothing more is written for its streams. With
 * `detach`, executions in their think time go on (their answers land in the memory, for the
 * redelivery); without it (shutdown) they are abandoned. */
static void streams_drop(lh_house *h, int detach) {
    for (lh_stream *s = h->streams, *next; s; s = next) {
        next = s->snext;
        if (s->phase == ST_JOIN) {
            joiner_remove(s);
            stream_free(s);
        }
    }
    while (h->streams) {
        lh_stream *s = h->streams;
        if (s->phase == ST_THINK && detach) {
            stream_unlink(s);
            s->detached = 1;
            continue;
        }
        if (s->phase == ST_THINK) {
            think_remove(s);
            exec_abort(s);
        }
        stream_free(s);
    }
    h->ring_head = h->ring_tail = NULL;
}

static lh_stream *stream_find(lh_house *h, uint32_t id) {
    for (lh_stream *s = h->streams; s; s = s->snext)
        if (s->id == id)
            return s;
    return NULL;
}

/* --- connections -------------------------------------------------------------------------- */

static void set_state(lh_house *h, enum conn_state st) {
    int was_c = h->state >= CS_CONNECTING && h->state <= CS_AUTH,
        is_c = st >= CS_CONNECTING && st <= CS_AUTH;
    G.n_connecting += (size_t)is_c - (size_t)was_c;
    G.n_live += (size_t)(st == CS_LIVE) - (size_t)(h->state == CS_LIVE);
    h->state = (uint8_t)st;
}

static void heap_push(uint64_t at, uint32_t house) {
    size_t i = G.nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (G.heap[p].at <= at)
            break;
        G.heap[i] = G.heap[p];
        i = p;
    }
    G.heap[i] = (lh_due){at, house};
}

static uint32_t heap_pop(void) {
    uint32_t top = G.heap[0].house;
    lh_due last = G.heap[--G.nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= G.nheap)
            break;
        if (c + 1 < G.nheap && G.heap[c + 1].at < G.heap[c].at)
            c++;
        if (last.at <= G.heap[c].at)
            break;
        G.heap[i] = G.heap[c];
        i = c;
    }
    if (G.nheap)
        G.heap[i] = last;
    return top;
}

static void dialq_push(lh_house *h) {
    if (h->in_dialq)
        return;
    h->in_dialq = 1;
    h->dnext = NULL;
    if (G.dq_tail)
        G.dq_tail->dnext = h;
    else
        G.dq_head = h;
    G.dq_tail = h;
}

static uint64_t backoff_delay(lh_house *h) {
    enum backoff_kind bk = (enum backoff_kind)h->next_backoff;
    h->next_backoff = BK_NORMAL;
    if (bk == BK_NOW)
        return 0;
    if (bk == BK_LONG) /* the bridge refused us: hammering it will not help */
        return BACKOFF_CAP_MS / 2 + randombytes_uniform(BACKOFF_CAP_MS / 2 + 1);
    unsigned a = h->attempt < 16 ? h->attempt : 16;
    uint64_t window = (uint64_t)BACKOFF_BASE_MS << a;
    if (window > BACKOFF_CAP_MS)
        window = BACKOFF_CAP_MS;
    h->attempt++;
    return randombytes_uniform((uint32_t)window + 1); /* full jitter */
}

/* Per-house trouble (a refused dial, a dropped connection, a fence) at most once a second:
 * 10,000 houses losing their bridge must not flood stderr, but a run that never connects must
 * not look merely slow either. Every line says how many were left out since the last one. */
static void warn_limited(uint64_t now, const char *event, const lh_house *h, const char *url,
                         const char *reason) {
    if (G.warn_ms && now - G.warn_ms < 1000) {
        G.warn_suppressed++;
        return;
    }
    lh_log(LOG_WARN, event, "house=%s bridge=%s reason=\"%s\" suppressed=%llu", house_id(h), url,
           reason, (unsigned long long)G.warn_suppressed);
    G.warn_ms = now;
    G.warn_suppressed = 0;
}

/* The connection of h is over (connect error or close): clean up, plan the next dial. */
static void conn_ended(lh_house *h, struct lws *wsi, const char *why) {
    if (wsi)
        lws_set_opaque_user_data(wsi, NULL); /* its late callbacks are not ours any more */
    if (!h->has_wsi)
        return;
    h->has_wsi = 0;
    G.n_open--;
    uint64_t now = now_ms();
    int was_live = h->live_ms != 0;
    streams_drop(h, !G.stopping);
    ctl_drop(h);
    gp_framer_free(h->fr);
    h->fr = NULL;
    h->wsi = NULL;
    h->draining = 0;
    set_state(h, CS_IDLE);
    if (was_live) {
        G.disconnects++;
        if (now - h->live_ms >= STABLE_MS)
            h->attempt = 0;
    } else {
        G.dial_failures++;
    }
    const char *reason = h->reason ? h->reason : why;
    const char *url = G.cfg.bridges[h->bridge_idx].url;
    int expected = G.stopping || (h->reason && strcmp(h->reason, "drained") == 0);
    if (G.log_level >= LOG_DEBUG || expected)
        lh_log(LOG_DEBUG, was_live ? "disconnected" : "connect_failed",
               "house=%s bridge=%s reason=\"%s\" up_ms=%llu", house_id(h), url, reason,
               (unsigned long long)(was_live ? now - h->live_ms : 0));
    else
        warn_limited(now, was_live ? "disconnected" : "connect_failed", h, url, reason);
    h->live_ms = 0;
    if (G.stopping)
        return;
    h->bridge_idx = (uint16_t)((h->bridge_idx + 1u) % G.cfg.nbridges);
    uint64_t ms = backoff_delay(h);
    if (ms == 0)
        dialq_push(h);
    else
        heap_push(now + ms, h->idx);
}

/* Closes the connection; conn_ended() follows from lws. Control frames already queued (a
 * GOAWAY) go out first when the socket is open. Outside lws callbacks when still connecting. */
static void conn_close(lh_house *h, const char *reason, enum backoff_kind bk) {
    if (h->state == CS_IDLE || h->state == CS_CLOSING || !h->wsi)
        return;
    h->reason = reason;
    if (bk != BK_NORMAL)
        h->next_backoff = (uint8_t)bk;
    int open = h->state >= CS_HELLO;
    set_state(h, CS_CLOSING);
    streams_drop(h, !G.stopping);
    if (open) {
        lws_set_timeout(h->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_FLUSH_S);
        lws_callback_on_writable(h->wsi);
    } else {
        /* lws 4.1 ignores LWS_TO_KILL_ASYNC on a connecting wsi: kill it now. */
        lws_set_timeout(h->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void protocol_error(lh_house *h, const char *why, const char *detail) {
    lh_log(LOG_WARN, "protocol_error", "house=%s bridge=%s reason=%s detail=%s", house_id(h),
           G.cfg.bridges[h->bridge_idx].url, why, detail ? detail : "-");
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_GOAWAY;
    f.u.goaway.code = GP_GOAWAY_PROTOCOL;
    f.u.goaway.message = gp_str_c(why);
    send_ctl(h, &f);
    conn_close(h, why, BK_NORMAL);
}

static void dial(lh_house *h) {
    if (G.stopping || h->state != CS_IDLE)
        return;
    const lh_bridge *b = &G.cfg.bridges[h->bridge_idx];
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = G.ctx;
    i.address = b->host;
    i.port = b->port;
    i.path = b->path;
    i.host = b->hostport;
    i.origin = b->hostport;
    i.protocol = SUBPROTOCOL;
    i.local_protocol_name = SUBPROTOCOL;
    i.opaque_user_data = h;
    if (b->tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (G.cfg.insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    h->reason = NULL;
    h->dial_ms = now_ms();
    h->live_ms = 0;
    h->draining = 0;
    h->max_frame = GP_DEFAULT_MAX_FRAME;
    h->ping_iv = DEFAULT_PING_MS;
    h->wsi = NULL;
    h->has_wsi = 1;
    G.n_open++;
    set_state(h, CS_CONNECTING);
    lh_log(LOG_DEBUG, "dialing", "house=%s bridge=%s", house_id(h), b->url);
    struct lws *w = lws_client_connect_via_info(&i);
    if (h->state != CS_CONNECTING)
        return; /* lws already reported the failure through the callback */
    if (!w)
        conn_ended(h, NULL, "connect_failed");
    else
        h->wsi = w;
}

/* --- handshake and incoming frames -------------------------------------------------------- */

static void on_established(lh_house *h, struct lws *wsi) {
    h->wsi = wsi;
    set_state(h, CS_HELLO);
    h->last_rx_ms = now_ms();
    randombytes_buf(h->hn, sizeof h->hn);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_HELLO;
    f.u.hello.min_ver = GP_PROTO_VERSION;
    f.u.hello.max_ver = GP_PROTO_VERSION;
    f.u.hello.house_id = gp_str_c(house_id(h));
    f.u.hello.nonce = h->hn;
    send_ctl(h, &f);
}

static void on_challenge(lh_house *h, const gp_frame *f) {
    const char *idc = house_id(h);
    gp_str id = gp_str_c(idc);
    if (gp_auth_verify(GP_ROLE_BRIDGE, h->secret, id, h->hn, f->u.challenge.nonce,
                       f->u.challenge.proof) != 0) {
        /* The bridge does not know our secret: an impostor, or the registry differs. */
        warn_limited(now_ms(), "bridge_auth_failed", h, G.cfg.bridges[h->bridge_idx].url,
                     "the bridge does not know our secret");
        conn_close(h, "bridge_auth_failed", BK_LONG);
        return;
    }
    uint8_t proof[GP_PROOF_LEN];
    gp_auth_proof(GP_ROLE_HOUSE, h->secret, id, h->hn, f->u.challenge.nonce, proof);
    gp_frame a;
    memset(&a, 0, sizeof a);
    a.type = GP_FRAME_AUTH;
    a.u.auth.proof = proof;
    send_ctl(h, &a);
    sodium_memzero(proof, sizeof proof);
    set_state(h, CS_AUTH);
}

static void on_welcome(lh_house *h, const gp_frame *f) {
    uint64_t now = now_ms();
    set_state(h, CS_LIVE);
    h->live_ms = now;
    h->last_ping_ms = now;
    h->ping_iv = f->u.welcome.ping_interval_ms ? f->u.welcome.ping_interval_ms : DEFAULT_PING_MS;
    h->max_frame = f->u.welcome.max_frame ? f->u.welcome.max_frame : GP_DEFAULT_MAX_FRAME;
    if (h->max_frame < 1024)
        h->max_frame = 1024;
    if (h->ever_live)
        G.reconnects++;
    h->ever_live = 1;
    lh_log(LOG_DEBUG, "connected", "house=%s bridge=%s bridge_id=%s epoch=%llu", house_id(h),
           G.cfg.bridges[h->bridge_idx].url,
           safe(f->u.welcome.bridge_id.p, f->u.welcome.bridge_id.len),
           (unsigned long long)f->u.welcome.epoch);
    if (!G.all_connected && G.n_live == G.n) {
        G.all_connected = 1;
        emit("event=all_connected n=%zu ms=%llu", G.n, (unsigned long long)(now - G.start_ms));
    }
}

static void on_goaway(lh_house *h, const gp_frame *f) {
    uint16_t code = f->u.goaway.code;
    const char *msg = safe_text(f->u.goaway.message.p, f->u.goaway.message.len, 1);
    const char *url = G.cfg.bridges[h->bridge_idx].url;
    switch (code) {
    case GP_GOAWAY_DRAINING:
        lh_log(LOG_DEBUG, "goaway", "house=%s code=draining bridge=%s inflight=%u", house_id(h),
               url, h->nstreams);
        if (h->state != CS_LIVE) {
            conn_close(h, "draining", BK_NOW);
            return;
        }
        /* Finish what is in flight, then move to the next bridge at once. */
        h->draining = 1;
        h->drain_ms = now_ms();
        h->next_backoff = BK_NOW;
        maybe_finish_drain(h);
        return;
    case GP_GOAWAY_FENCED:
        /* A newer connection of this house id won. */
        G.fenced++;
        conn_close(h, "fenced", BK_NORMAL);
        return;
    case GP_GOAWAY_AUTH:
        warn_limited(now_ms(), "auth_rejected", h, url, msg);
        conn_close(h, "auth_rejected", BK_LONG);
        return;
    case GP_GOAWAY_RATE_LIMIT:
        warn_limited(now_ms(), "auth_rate_limited", h, url, msg);
        conn_close(h, "rate_limited", BK_LONG);
        return;
    default:
        lh_log(LOG_WARN, "goaway", "house=%s code=%u bridge=%s msg=\"%s\"", house_id(h), code, url,
               msg);
        conn_close(h, "goaway", BK_NORMAL);
        return;
    }
}

static void on_req_head(lh_house *h, const gp_frame *f) {
    if (f->stream == 0 || stream_find(h, f->stream)) {
        protocol_error(h, "bad_stream_id", NULL);
        return;
    }
    G.requests++;
    gp_str fid = f->u.req_head.frame_id;
    lh_stream *s = calloc(1, sizeof *s);
    char *id = malloc(fid.len + 1);
    if (!s || !id) {
        free(s);
        free(id);
        lh_log(LOG_ERROR, "out_of_memory", "house=%s stream=%u", house_id(h), f->stream);
        return; /* unanswered: the bridge times it out */
    }
    if (fid.len)
        memcpy(id, fid.p, fid.len);
    id[fid.len] = '\0';
    s->id = f->stream;
    s->h = h;
    s->fid = id;
    s->fidlen = fid.len;
    s->phase = ST_BODY;
    s->snext = h->streams;
    if (h->streams)
        h->streams->sprev = s;
    h->streams = s;
    h->nstreams++;
    if (f->flags & GP_FLAG_FIN)
        dispatch(s);
}

static void on_req_body(lh_house *h, const gp_frame *f) {
    lh_stream *s = stream_find(h, f->stream);
    if (s && s->phase == ST_BODY && (f->flags & GP_FLAG_FIN))
        dispatch(s); /* the body itself is not needed for the answer */
}

static void on_cancel(lh_house *h, const gp_frame *f) {
    lh_stream *s = stream_find(h, f->stream);
    if (!s)
        return;
    G.cancelled++;
    lh_log(LOG_DEBUG, "cancelled", "house=%s stream=%u id=%s reason=%s", house_id(h), s->id,
           safe((const uint8_t *)s->fid, s->fidlen),
           safe(f->u.cancel.reason.p, f->u.cancel.reason.len));
    if (s->phase == ST_THINK) {
        think_remove(s);
        exec_abort(s);
    } else if (s->phase == ST_JOIN) {
        joiner_remove(s);
    }
    stream_free(s);
    maybe_finish_drain(h);
}

static void on_frame(lh_house *h, const gp_frame *f) {
    h->last_rx_ms = now_ms();
    if (f->type == GP_FRAME_GOAWAY) {
        on_goaway(h, f);
        return;
    }
    if (h->state == CS_HELLO || h->state == CS_AUTH) {
        if (h->state == CS_HELLO && f->type == GP_FRAME_CHALLENGE)
            on_challenge(h, f);
        else if (h->state == CS_AUTH && f->type == GP_FRAME_WELCOME)
            on_welcome(h, f);
        else
            protocol_error(h, "unexpected_frame", gp_frame_type_name(f->type));
        return;
    }
    if (h->state != CS_LIVE)
        return;
    gp_frame r;
    switch (f->type) {
    case GP_FRAME_REQ_HEAD:
        on_req_head(h, f);
        return;
    case GP_FRAME_REQ_BODY:
        on_req_body(h, f);
        return;
    case GP_FRAME_CANCEL:
        on_cancel(h, f);
        return;
    case GP_FRAME_PING:
        memset(&r, 0, sizeof r);
        r.type = GP_FRAME_PONG;
        r.u.ping.opaque = f->u.ping.opaque;
        send_ctl(h, &r);
        return;
    case GP_FRAME_PONG:
    case GP_FRAME_CREDIT: /* reserved in v1 */
        return;
    default:
        protocol_error(h, "unexpected_frame", gp_frame_type_name(f->type));
    }
}

static int conn_open(const lh_house *h) {
    return h->state >= CS_HELLO && h->state <= CS_LIVE;
}

/* Whole frames are decoded straight from lws's buffer; only a frame that spans pieces goes
 * through a gp_framer, which is dropped again once it is empty. */
static void on_receive(lh_house *h, struct lws *wsi, const uint8_t *in, size_t len) {
    if (!conn_open(h))
        return;
    if (!lws_frame_is_binary(wsi)) {
        protocol_error(h, "text_message", NULL);
        return;
    }
    gp_frame *f = G.rxf;
    if (!h->fr) {
        while (len && conn_open(h)) {
            ssize_t n = gp_frame_decode(in, len, GP_DEFAULT_MAX_FRAME, f);
            if (n == GP_ERR_TRUNCATED)
                break;
            if (n < 0) {
                protocol_error(h, n == GP_ERR_TOO_LARGE ? "frame_too_large" : "bad_frame",
                               gp_strerror((int)n));
                return;
            }
            in += n;
            len -= (size_t)n;
            on_frame(h, f);
        }
        if (!len || !conn_open(h))
            return;
        if (!(h->fr = gp_framer_new(GP_DEFAULT_MAX_FRAME))) {
            protocol_error(h, "out_of_memory", NULL);
            return;
        }
    }
    int rc = gp_framer_feed(h->fr, in, len);
    while (rc == 0 && conn_open(h)) {
        rc = gp_framer_next(h->fr, f);
        if (rc <= 0)
            break;
        on_frame(h, f);
        rc = 0;
    }
    if (!conn_open(h))
        return;
    if (rc < 0) {
        protocol_error(h, rc == GP_ERR_TOO_LARGE ? "frame_too_large" : "bad_frame",
                       gp_strerror(rc));
    } else if (gp_framer_pending(h->fr) == 0) {
        gp_framer_free(h->fr);
        h->fr = NULL;
    }
}

/* --- lws glue ----------------------------------------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    /* Each wsi carries its house until the house is done with it (conn_ended). */
    lh_house *h = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (h)
            conn_ended(h, wsi, in ? safe_text(in, strnlen(in, 80), 1) : "connect_failed");
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (h && h->state == CS_CONNECTING)
            on_established(h, wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (h)
            on_receive(h, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return h ? on_writeable(h, wsi) : -1;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (h && !h->reason)
            h->reason = "peer_closed";
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        /* A wsi killed while still connecting gets only WSI_DESTROY. */
        if (h)
            conn_ended(h, wsi, "closed");
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {SUBPROTOCOL, callback, 0, RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    lh_log(level == LLL_ERR ? LOG_WARN : LOG_DEBUG, "lws", "msg=\"%.*s\"", (int)n, line);
}

/* --- timers: pacing, liveness, stats ------------------------------------------------------ */

static void on_pace(uv_timer_t *t) {
    (void)t;
    uint64_t now = now_ms();
    while (G.nheap && G.heap[0].at <= now)
        dialq_push(&G.houses[heap_pop()]);
    double cap = (double)G.cfg.connect_rate * PACE_BURST_MS / 1000.0;
    if (cap < 1.0)
        cap = 1.0;
    G.credit += (double)(now - G.credit_ms) * (double)G.cfg.connect_rate / 1000.0;
    G.credit_ms = now;
    if (G.credit > cap)
        G.credit = cap;
    while (G.credit >= 1.0 && G.dq_head && !G.stopping) {
        lh_house *h = G.dq_head;
        G.dq_head = h->dnext;
        if (!G.dq_head)
            G.dq_tail = NULL;
        h->in_dialq = 0;
        h->dnext = NULL;
        G.credit -= 1.0;
        dial(h);
    }
}

static void sweep_house(lh_house *h, uint64_t now) {
    switch (h->state) {
    case CS_CONNECTING:
    case CS_HELLO:
    case CS_AUTH:
        if (now - h->dial_ms > HANDSHAKE_MS)
            conn_close(h, "handshake_timeout", BK_NORMAL);
        return;
    case CS_LIVE:
        if (now - h->last_rx_ms > 3ull * h->ping_iv) {
            lh_log(LOG_DEBUG, "bridge_silent", "house=%s bridge=%s silent_ms=%llu", house_id(h),
                   G.cfg.bridges[h->bridge_idx].url, (unsigned long long)(now - h->last_rx_ms));
            conn_close(h, "ping_timeout", BK_NORMAL);
            return;
        }
        if (h->draining && now - h->drain_ms > DRAIN_MS) {
            conn_close(h, "drain_timeout", BK_NOW);
            return;
        }
        if (now - h->last_ping_ms >= h->ping_iv) {
            gp_frame f;
            memset(&f, 0, sizeof f);
            f.type = GP_FRAME_PING;
            f.u.ping.opaque = now;
            h->last_ping_ms = now;
            send_ctl(h, &f);
        }
        return;
    default:
        return;
    }
}

static void on_sweep(uv_timer_t *t) {
    (void)t;
    uint64_t now = now_ms();
    for (size_t i = 0; i < G.n; i++)
        sweep_house(&G.houses[i], now);
    exec_prune(now);
}

static void on_stats(uv_timer_t *t) {
    (void)t;
    print_stats(0);
}

/* --- shutdown ----------------------------------------------------------------------------- */

static void close_handles(void) {
    if (!G.handles_open)
        return;
    G.handles_open = 0;
    uv_close((uv_handle_t *)&G.pace, NULL);
    uv_close((uv_handle_t *)&G.sweep, NULL);
    uv_close((uv_handle_t *)&G.stats, NULL);
    uv_close((uv_handle_t *)&G.think, NULL);
    uv_close((uv_handle_t *)&G.stop, NULL);
    uv_close((uv_handle_t *)&G.sigint, NULL);
    uv_close((uv_handle_t *)&G.sigterm, NULL);
}

static void finish_stop(void) {
    uv_timer_stop(&G.stop);
    /* lws closes what is left and its own handles; it NULLs G.ctx (info.pcontext) once
     * libuv has closed them. */
    if (G.ctx)
        lws_context_destroy(G.ctx);
    close_handles();
}

static void on_stop_tick(uv_timer_t *t) {
    (void)t;
    if (G.n_open == 0 || now_ms() - G.stop_ms >= STOP_WAIT_MS)
        finish_stop();
}

/* Stops dialing and executing, closes every connection with a WebSocket close (bounded by
 * STOP_WAIT_MS), then lets lws and libuv wind down. */
static void begin_stop(const char *why) {
    if (G.stopping)
        return;
    G.stopping = 1;
    G.stop_ms = now_ms();
    lh_log(LOG_INFO, "shutdown", "reason=%s", why);
    print_stats(1);
    uv_timer_stop(&G.pace);
    uv_timer_stop(&G.sweep);
    uv_timer_stop(&G.stats);
    uv_timer_stop(&G.think);
    G.nheap = 0;
    for (lh_house *h = G.dq_head, *n; h; h = n) {
        n = h->dnext;
        h->in_dialq = 0;
        h->dnext = NULL;
    }
    G.dq_head = G.dq_tail = NULL;
    for (size_t i = 0; i < G.n; i++)
        streams_drop(&G.houses[i], 0);
    while (G.think_head) { /* detached executions */
        lh_stream *s = G.think_head;
        think_remove(s);
        exec_abort(s);
        stream_free(s);
    }
    for (size_t i = 0; i < G.n; i++)
        conn_close(&G.houses[i], "shutdown", BK_NORMAL);
    if (G.n_open == 0)
        finish_stop();
    else
        uv_timer_start(&G.stop, on_stop_tick, 20, 20);
}

static void close_stray_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    if (uv_is_closing(h))
        return;
    lh_log(LOG_WARN, "stray_handle", "type=%s active=%d", uv_handle_type_name(h->type),
           uv_is_active(h));
    uv_close(h, NULL);
}

/* Under ASan: the handles above belong to lws, which allocated them and never frees what it
 * lost. That is lws's leak, not this tool's, and is bounded by the dial failures of a run.
 * Only this tool is exempt: the daemons' logs are checked for leaks by every test. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libwebsockets.so\n";
}

static void on_signal(uv_signal_t *s, int signum) {
    (void)s;
    begin_stop(signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* --- configuration ------------------------------------------------------------------------ */

static void free_bridges(lh_config *c) {
    for (size_t i = 0; i < c->nbridges; i++)
        free(c->bridges[i].url);
    free(c->bridges);
    c->bridges = NULL;
    c->nbridges = 0;
}

/* A bridge URL, ws://host:port/path or wss://...; several may be given in one value,
 * separated by commas or spaces. Parsed once here rather than at every dial. */
static int set_bridge(void *obj, const char *value, char *err, size_t errlen) {
    lh_config *c = obj;
    if (c->bridges_layer != c->layer) {
        free_bridges(c);
        c->bridges_layer = c->layer;
    }
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, ", \t");
        if (n) {
            if (n >= 380 || (strncmp(p, "ws://", 5) != 0 && strncmp(p, "wss://", 6) != 0)) {
                snprintf(err, errlen, "bridge: \"%.*s\" must be ws://host:port/ or wss://...",
                         (int)(n < 100 ? n : 100), p);
                return GP_ERR_INVALID;
            }
            if (c->nbridges >= 1000) {
                snprintf(err, errlen, "bridge: at most 1000");
                return GP_ERR_INVALID;
            }
            lh_bridge *nb = realloc(c->bridges, (c->nbridges + 1) * sizeof *nb);
            if (!nb)
                return GP_ERR_NOMEM;
            c->bridges = nb;
            lh_bridge *b = &nb[c->nbridges];
            memset(b, 0, sizeof *b);
            if (!(b->url = strndup(p, n)))
                return GP_ERR_NOMEM;
            c->nbridges++;
            char buf[400];
            snprintf(buf, sizeof buf, "%s", b->url);
            const char *prot = NULL, *ads = NULL, *path = NULL;
            if (lws_parse_uri(buf, &prot, &ads, &b->port, &path) || !ads || !*ads ||
                strlen(ads) >= sizeof b->host || b->port < 1 || b->port > 65535) {
                snprintf(err, errlen, "bridge: cannot parse \"%s\"", b->url);
                return GP_ERR_INVALID;
            }
            b->tls = strcmp(prot, "wss") == 0;
            snprintf(b->host, sizeof b->host, "%s", ads);
            snprintf(b->hostport, sizeof b->hostport, "%s:%d", ads, b->port);
            snprintf(b->path, sizeof b->path, "/%s", path ? path : "");
        }
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

#define OFF(f) offsetof(lh_config, f)
static const gp_conf_opt opts[] = {
    {"bridge", GP_CONF_FN, 0, 0, 0, NULL, set_bridge,
     "bridge URL ws://host:port/ or wss://...; repeat for more (houses rotate on reconnect)"},
    {"redis", GP_CONF_STR, OFF(redis), 0, 0, "redis://127.0.0.1:6379/0", NULL,
     "Redis: redis://[user:password@]host:port/db, rediss://... (TLS) or host:port"},
    {"redis-user", GP_CONF_STR, OFF(redis_user), 0, 0, NULL, NULL,
     "Redis ACL user (default: the URL's)"},
    {"redis-password-file", GP_CONF_STR, OFF(redis_password_file), 0, 0, NULL, NULL,
     "file holding the Redis password (wins over the URL's)"},
    {"redis-ca-file", GP_CONF_STR, OFF(redis_ca_file), 0, 0, NULL, NULL,
     "rediss://: CA certificates for Redis (default: the system's)"},
    {"prefix", GP_CONF_STR, OFF(prefix), 0, 0, "gp", NULL, "Redis key prefix"},
    {"count", GP_CONF_INT, OFF(count), 1, 1000000, NULL, NULL, "number of houses (required)"},
    {"id-prefix", GP_CONF_STR, OFF(id_prefix), 0, 0, "lh-", NULL,
     "house ids are <id-prefix>1 .. <id-prefix>N"},
    {"register", GP_CONF_BOOL, OFF(reg), 0, 1, "0", NULL,
     "register the houses in Redis with new random secrets first (otherwise their secrets "
     "are read from Redis)"},
    {"master-key", GP_CONF_STR, OFF(master_key), 0, 0, NULL, NULL,
     "64 hex digits: the bridges' key sealing secrets at rest"},
    {"connect-rate", GP_CONF_INT, OFF(connect_rate), 1, 1000000, "500", NULL,
     "new dials per second, first connects and reconnects alike"},
    {"spread", GP_CONF_BOOL, OFF(spread), 0, 1, "0", NULL,
     "house i starts at bridge i mod the number of bridges (default: all at the first)"},
    {"response-bytes", GP_CONF_INT, OFF(response_bytes), 0, 1LL << 30, "100", NULL,
     "response body size in bytes"},
    {"delay-ms", GP_CONF_INT, OFF(delay_ms), 0, 86400000, "0", NULL,
     "think time before a request is answered"},
    {"remember-ms", GP_CONF_INT, OFF(remember_ms), 0, 1LL << 40, "600000", NULL,
     "how long executed frame ids are remembered (0: for ever)"},
    {"no-replay", GP_CONF_BOOL, OFF(no_replay), 0, 1, "0", NULL,
     "execute redelivered requests again instead of answering from memory (shows dup_exec)"},
    {"stats-interval", GP_CONF_INT, OFF(stats_interval), 0, 3600000, "1000", NULL,
     "ms between event=stats lines (0: only the final one)"},
    {"ca-file", GP_CONF_STR, OFF(ca_file), 0, 0, NULL, NULL, "CA certificate (PEM) for wss://"},
    {"insecure", GP_CONF_BOOL, OFF(insecure), 0, 1, "0", NULL,
     "do not verify bridge certificates (testing only)"},
    {"log-level", GP_CONF_STR, OFF(log_level), 0, 0, "info", NULL, "error, warn, info or debug"},
    {"help", GP_CONF_BOOL, OFF(help), 0, 1, "0", NULL, "print this help"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static void print_line(void *ud, const char *line) {
    (void)ud;
    printf("%s\n", line);
}

static void usage(void) {
    printf("usage: gp-loadhouses --bridge URL --count N [options]\n"
           "Simulates N Ghost Port houses in one process: each dials a bridge, authenticates and\n"
           "answers every request with 200 and a generated body. Events on stdout:\n"
           "event=registered, event=all_connected, event=stats (and a final one on SIGTERM).\n\n"
           "options (each also as environment variable GP_<NAME>):\n");
    gp_conf_usage(opts, print_line, NULL);
}

static int load_config(int argc, char **argv, char *err, size_t errlen) {
    lh_config *c = &G.cfg;
    if (gp_conf_defaults(opts, c, err, errlen) != 0)
        return -1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            c->help = 1;
            return 0;
        }
    c->layer = 1;
    if (gp_conf_apply_env(opts, c, getenv, err, errlen) != 0)
        return -1;
    c->layer = 2;
    int npos = 0, pos[1];
    if (gp_conf_parse_argv(opts, c, argc, argv, 1, pos, 1, &npos, err, errlen) != 0)
        return -1;
    if (npos) {
        snprintf(err, errlen, "unexpected argument \"%s\" (options start with --)", argv[pos[0]]);
        return -1;
    }
    if (c->nbridges == 0) {
        snprintf(err, errlen, "bridge: at least one is required (--bridge ws://host:port/)");
        return -1;
    }
    if (c->count <= 0) {
        snprintf(err, errlen, "count: required (--count N)");
        return -1;
    }
    G.log_level = -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(c->log_level, level_names[i]) == 0)
            G.log_level = i;
    if (G.log_level < 0) {
        snprintf(err, errlen, "log-level: \"%s\" is not error, warn, info or debug", c->log_level);
        return -1;
    }
    char idbuf[128];
    snprintf(idbuf, sizeof idbuf, "%s%lld", c->id_prefix, c->count);
    if (strlen(c->id_prefix) > 48 || !gp_house_id_valid(gp_str_c(idbuf))) {
        snprintf(err, errlen,
                 "id-prefix: \"%s\" does not make valid house ids (1-64 of "
                 "[A-Za-z0-9_.-])",
                 c->id_prefix);
        return -1;
    }
    if (c->master_key && *c->master_key) {
        if (gp_secret_from_hex(c->master_key, G.master_key) != 0) {
            snprintf(err, errlen, "master-key: must be exactly 64 hex digits");
            return -1;
        }
        G.has_master = 1;
    }
    return 0;
}

/* --- file descriptors --------------------------------------------------------------------- */

/* Each house holds one socket. Raises the soft limit to the hard one, and the hard one too
 * when that is not enough and we may (root). */
static int raise_fd_limit(size_t n, char *err, size_t errlen) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    rlim_t need = (rlim_t)n + FD_RESERVE;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        snprintf(err, errlen,
                 "--count %zu needs about %llu file descriptors but the limit is %llu (hard "
                 "%llu): raise it (ulimit -n, or run as root) or use fewer houses per process",
                 n, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max);
        return -1;
    }
    return 0;
}

/* --- Redis: registration and secrets ------------------------------------------------------ */

static redisContext *redis_connect(const char *url, char *err, size_t errlen) {
    gp_rurl u;
    int auth_failed;
    if (gp_rurl_parse(url, &u, err, errlen) != 0 ||
        gp_rurl_credentials(&u, G.cfg.redis_user, G.cfg.redis_password_file, err, errlen) != 0 ||
        (u.tls && gp_tlsrelay_config(G.cfg.redis_ca_file, NULL, NULL, err, errlen) != 0)) {
        gp_rurl_wipe(&u);
        return NULL;
    }
    redisContext *rc = br_rc_dial(&u, u.host, u.port, 5000, err, errlen, &auth_failed);
    gp_rurl_wipe(&u);
    if (rc)
        redisSetTimeout(rc, (struct timeval){30, 0});
    return rc;
}

/* Reads n pipelined replies; the first error is reported. */
static int redis_collect(redisContext *rc, size_t n, const char *what, char *err, size_t errlen) {
    int rcode = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
            snprintf(err, errlen, "redis: %s: %s", what, rc->errstr[0] ? rc->errstr : "lost");
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && rcode == 0) {
            snprintf(err, errlen, "redis: %s: %s", what, r->str);
            rcode = -1;
        }
        freeReplyObject(r);
    }
    return rcode;
}

/* Exactly what `ghostport house add` stores: HSET <p>:{id}:house secret .. labels {} created
 * <ms>, SADD <p>:houses id. Pipelined in batches. */
static int register_houses(redisContext *rc, char *err, size_t errlen) {
    char created[24], key[GP_MAX_HOUSE_ID + 64], sealed[GP_SEALED_MAX];
    char *ids[REDIS_BATCH];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(created, sizeof created, "%llu",
             (unsigned long long)tv.tv_sec * 1000ull + (unsigned long long)tv.tv_usec / 1000u);
    char skey[128];
    snprintf(skey, sizeof skey, "%s:houses", G.cfg.prefix);
    for (size_t base = 0; base < G.n; base += REDIS_BATCH) {
        size_t m = G.n - base < REDIS_BATCH ? G.n - base : REDIS_BATCH;
        const char *sargv[REDIS_BATCH + 2];
        size_t slen[REDIS_BATCH + 2];
        sargv[0] = "SADD";
        sargv[1] = skey;
        slen[0] = 4;
        slen[1] = strlen(skey);
        int rcode = 0;
        for (size_t k = 0; k < m; k++) {
            lh_house *h = &G.houses[base + k];
            randombytes_buf(h->secret, sizeof h->secret);
            ids[k] = strdup(house_id(h));
            if (!ids[k]) {
                for (size_t j = 0; j < k; j++)
                    free(ids[j]);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            if (gp_secret_seal(G.has_master ? G.master_key : NULL, gp_str_c(ids[k]), h->secret,
                               sealed) != 0) {
                rcode = -1;
                snprintf(err, errlen, "sealing a secret failed");
            }
            snprintf(key, sizeof key, "%s:{%s}:house", G.cfg.prefix, ids[k]);
            const char *argv[] = {"HSET",   key,  "secret",  sealed,
                                  "labels", "{}", "created", created};
            redisAppendCommandArgv(rc, 8, argv, NULL);
            sargv[2 + k] = ids[k];
            slen[2 + k] = strlen(ids[k]);
        }
        redisAppendCommandArgv(rc, (int)m + 2, sargv, slen);
        sodium_memzero(sealed, sizeof sealed);
        if (rcode == 0)
            rcode = redis_collect(rc, m + 1, "registering houses", err, errlen);
        for (size_t k = 0; k < m; k++)
            free(ids[k]);
        if (rcode != 0)
            return -1;
    }
    return 0;
}

/* Without --register: the houses exist already (an earlier --register run); read their
 * secrets. */
static int load_secrets(redisContext *rc, char *err, size_t errlen) {
    char key[GP_MAX_HOUSE_ID + 64];
    for (size_t base = 0; base < G.n; base += REDIS_BATCH) {
        size_t m = G.n - base < REDIS_BATCH ? G.n - base : REDIS_BATCH;
        for (size_t k = 0; k < m; k++) {
            snprintf(key, sizeof key, "%s:{%s}:house", G.cfg.prefix, house_id(&G.houses[base + k]));
            const char *argv[] = {"HGET", key, "secret"};
            redisAppendCommandArgv(rc, 3, argv, NULL);
        }
        int rcode = 0;
        for (size_t k = 0; k < m; k++) {
            lh_house *h = &G.houses[base + k];
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
                snprintf(err, errlen, "redis: reading secrets: %s",
                         rc->errstr[0] ? rc->errstr : "lost");
                return -1;
            }
            if (rcode == 0 && r->type != REDIS_REPLY_STRING) {
                snprintf(err, errlen, "house %s is not registered under prefix %s (use --register)",
                         house_id(h), G.cfg.prefix);
                rcode = -1;
            } else if (rcode == 0 &&
                       gp_secret_open(G.has_master ? G.master_key : NULL, gp_str_c(house_id(h)),
                                      (gp_str){(const uint8_t *)r->str, r->len}, h->secret) != 0) {
                snprintf(err, errlen, "house %s: its stored secret cannot be read%s", house_id(h),
                         G.has_master ? " with this master key" : " (sealed? give --master-key)");
                rcode = -1;
            }
            freeReplyObject(r);
        }
        if (rcode != 0)
            return -1;
    }
    return 0;
}

static int setup_secrets(char *err, size_t errlen) {
    redisContext *rc = redis_connect(G.cfg.redis, err, errlen);
    if (!rc)
        return -1;
    uint64_t t0 = now_ms();
    int rcode = G.cfg.reg ? register_houses(rc, err, errlen) : load_secrets(rc, err, errlen);
    redisFree(rc);
    if (rcode == 0 && G.cfg.reg)
        emit("event=registered n=%zu ms=%llu", G.n, (unsigned long long)(now_ms() - t0));
    return rcode;
}

/* --- main --------------------------------------------------------------------------------- */

static int start(char *err, size_t errlen) {
    lws_set_log_level(LLL_ERR | (G.log_level >= LOG_DEBUG ? LLL_WARN : 0), lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {G.loop};
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.pcontext = &G.ctx;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = HANDSHAKE_MS / 1000 + 5; /* our own deadline fires first */
    if (G.cfg.ca_file && *G.cfg.ca_file)
        info.client_ssl_ca_filepath = G.cfg.ca_file;
    G.ctx = lws_create_context(&info);
    if (!G.ctx) {
        snprintf(err, errlen, "lws_create_context failed");
        return -1;
    }
    for (size_t i = 0; i < G.n; i++) {
        lh_house *h = &G.houses[i];
        h->bridge_idx = (uint16_t)(G.cfg.spread ? i % G.cfg.nbridges : 0);
        dialq_push(h);
    }
    G.credit = 1.0;
    G.credit_ms = now_ms();
    uv_timer_start(&G.pace, on_pace, 0, PACE_MS);
    uv_timer_start(&G.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    if (G.cfg.stats_interval > 0)
        uv_timer_start(&G.stats, on_stats, (uint64_t)G.cfg.stats_interval,
                       (uint64_t)G.cfg.stats_interval);
    return 0;
}

static void free_all(void) {
    for (size_t i = 0; G.houses && i < G.n; i++) {
        lh_house *h = &G.houses[i];
        streams_drop(h, 0);
        ctl_drop(h);
        gp_framer_free(h->fr);
        sodium_memzero(h->secret, sizeof h->secret);
    }
    while (G.think_head) {
        lh_stream *s = G.think_head;
        think_remove(s);
        stream_free(s);
    }
    for (size_t i = 0; G.eb && i < G.neb; i++)
        for (lh_exec *e = G.eb[i], *n; e; e = n) {
            n = e->hnext;
            free(e);
        }
    free(G.eb);
    free(G.houses);
    free(G.heap);
    free(G.rxf);
    free(G.wbuf);
    free(G.body);
    gp_conf_clear(opts, &G.cfg);
    free_bridges(&G.cfg);
    sodium_memzero(G.master_key, sizeof G.master_key);
}

int main(int argc, char **argv) {
    char err[512] = "";
    int rc = 2;
    if (gp_auth_init() != 0) {
        fprintf(stderr, "gp-loadhouses: libsodium initialisation failed\n");
        return 1;
    }
    if (load_config(argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n(see --help)\n", err);
        goto out;
    }
    if (G.cfg.help) {
        usage();
        rc = 0;
        goto out;
    }
    G.n = (size_t)G.cfg.count;
    if (raise_fd_limit(G.n, err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        goto out;
    }
    rc = 1;
    G.start_ms = now_ms();
    G.houses = calloc(G.n, sizeof *G.houses);
    G.heap = calloc(G.n, sizeof *G.heap);
    G.neb = 1024;
    G.eb = calloc(G.neb, sizeof *G.eb);
    G.rxf = malloc(sizeof *G.rxf);
    G.wbuf = malloc(LWS_PRE + GP_FRAME_HEADER_LEN + GP_BODY_CHUNK + 64);
    G.body = malloc(GP_BODY_CHUNK);
    if (!G.houses || !G.heap || !G.eb || !G.rxf || !G.wbuf || !G.body) {
        fprintf(stderr, "gp-loadhouses: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < G.n; i++)
        G.houses[i].idx = (uint32_t)i;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not a death */
    if (setup_secrets(err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        goto out;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    G.loop = &loop;
    uv_timer_init(&loop, &G.pace);
    uv_timer_init(&loop, &G.sweep);
    uv_timer_init(&loop, &G.stats);
    uv_timer_init(&loop, &G.think);
    uv_timer_init(&loop, &G.stop);
    uv_signal_init(&loop, &G.sigint);
    uv_signal_init(&loop, &G.sigterm);
    uv_signal_start(&G.sigint, on_signal, SIGINT);
    uv_signal_start(&G.sigterm, on_signal, SIGTERM);
    G.handles_open = 1;
    G.start_ms = now_ms();
    if (start(err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        G.stopping = 1;
        finish_stop();
    } else {
        rc = 0;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    /* lws completes a foreign-loop context's teardown only after libuv closed its handles. */
    if (G.ctx)
        lws_context_destroy(G.ctx);
    G.ctx = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        /* lws 4.1 can lose a poll handle of a dial that failed mid-burst; say so, close it
         * and let the loop go (see __lsan_default_suppressions). */
        uv_walk(&loop, close_stray_handle, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            lh_log(LOG_WARN, "loop_not_empty", NULL);
    }
out:
    free_all();
    return rc;
}
