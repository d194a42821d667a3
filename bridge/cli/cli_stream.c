/* cli_stream.c — `ghostport connect` and `ghostport forward`: TCP streams through Redis as an
 * opener of the stream contract (proto/STREAMS.md), speaking only Redis. One XADD opens a
 * stream on the house's request stream, its outcome comes on the reply key, then the bytes
 * are pumped: input (stdin or an accepted socket) -> `sin`, `sout` -> output, with the
 * endpoint state machine of proto/stream.h deciding credit, acks, fin, reset and idle.
 *
 * Every stream of a process shares the same two Redis connections (a `mux`), however many
 * there are: an idle Redis client costs Redis about 23 KB of memory (25 times an idle
 * stream's two keys) and one of its maxclients. `connect` is the one-stream case of `forward`.
 *
 * - The reader thread, on its own connection, reads every open stream's `sout` and every
 *   opening stream's reply key with one `XREAD COUNT n BLOCK t STREAMS k1..kN id1..idN`. That
 *   works on a Redis Cluster too because a CLI process talks to one house, whose keys share a
 *   hash slot, and the reply keys are put in that slot: `<p>:rep:{<house>}:<sid>` (a key of
 *   the reply family, as the contract asks). A reply key in a slot of its own would need a
 *   connection of its own while the open waits (one a pending open, up to the open's
 *   timeout_ms while a house is offline) or a third reader per Redis node; the hash tag costs
 *   nothing. In the same pipeline, before the XREAD, go each stream's acks and keep-alives and
 *   the XDELs of the entries consumed (a stream's own reader sent them on its connection
 *   before): an ack never waits behind another stream's upload, and costs no round trip of
 *   its own. The reader applies each entry to its stream's gp_stream and hands the data to the
 *   output, writing at once what the output takes without waiting (send with MSG_DONTWAIT, or
 *   PIPE_BUF into a pipe that polls writable: no thread switch while the client keeps up) and
 *   queueing the rest for the stream's output thread. It never waits for an output, so a
 *   client that stops reading stalls no other stream. A stream's queue is bounded (its window,
 *   at most OUTQ_MAX): when the next entry would not fit, its `sout` is left out of the XREAD
 *   until the queue has drained to half (the house stops at the window, the entries wait in
 *   Redis as they would for any slow reader); its keep-alives still go out, and its idle
 *   clock stops meanwhile, since the house's own keep-alives are among the entries not read.
 * - The writer's connection carries the opens, the data, the resets and the reply keys' DEL,
 *   each round one pipeline of what was queued since the last, with at most ROUND_DATA_MAX
 *   data bytes, so that one stream's bulk delays another's entries by one round at most. An
 *   input thread that finds the connection free runs the round itself (no thread switch a
 *   chunk); else the writer thread runs it.
 * - Each stream has an input thread (poll on its input and its eventfd; each entry handed to
 *   the writer, which says when it is written) and an output thread (the queue into the output,
 *   waiting for POLLOUT), both leaving once the stream is over.
 * When a stream joins, a full queue drains or the output thread made an ack due, the reader's
 * blocked XREAD is cut short with CLIENT UNBLOCK of the reader's CLIENT ID, sent on the
 * writer's connection; a Redis (or an ACL) that refuses those makes the reader block at most
 * FALLBACK_BLOCK_MS instead, said once.
 * Everything read from Redis is hostile: a bad entry resets its stream with a reason. I/O
 * side. */
#include "cli_cmd.h"
#include "cli_esc.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64u << 10)      /* data bytes an entry (STREAMS.md: writers use 64 KiB) */
#define STEP_MS 500            /* longest XREAD BLOCK: how soon a signal or a deadline is seen */
#define READ_COUNT 64          /* entries an XREAD, each key */
#define READ_COUNT_S "64"      /* the same, as XREAD takes it */
#define WAIT_MARGIN_MS 2000    /* the open's outcome may come a little after timeout_ms */
#define REDIS_TIMEOUT_MS 10000 /* connect and command timeout (beside BLOCK) */
#define DEFAULT_OPEN_MS 30000  /* timeout_ms of the open */
#define MAX_STREAMS 256        /* concurrent streams of one process (forward's connections) */
#define TRIM_BATCH 64          /* our sin entries an XDEL (more: the next round) */
#define CTL_MAX READ_COUNT     /* the house's ack-only entries read, deleted by the next loop */
#define OUTQ_MAX (1u << 20)    /* bytes queued for one output before its sout is held back */
#define ROUND_DATA_MAX (256u << 10) /* data bytes a writer round: what another stream waits */
#define FALLBACK_BLOCK_MS 25        /* the reader's longest BLOCK when it cannot be woken early */
#define UNBLOCK_TRIES 50 /* CLIENT UNBLOCK before the XREAD reached Redis: again in 1 ms */
/* What one stream adds to a writer round at most (build_part): the open (20 arguments), two
 * entries (rst, data: XADD key * and at most 4 fields each), PEXPIRE, the XDELs of sin's
 * trimmed and sout's read entries (a leaving stream's last ones), DEL of the reply key. */
#define PART_ARGS (20 + 2 * (3 + 2 * 4) + 3 + (2 + TRIM_BATCH) + (2 + CTL_MAX) + 2)
#define PART_CMDS 7

/* Exit codes of connect (cli_cmd.h's, named for this command). */
enum {
    ST_DONE = CLI_OK,       /* both directions finished */
    ST_FAIL = CLI_FAIL,     /* reset (either side), Redis lost mid-stream, output closed */
    ST_REFUSED = CLI_USAGE, /* usage, Redis unreachable, the open refused (error outcome) */
    ST_NOANSWER = CLI_TIMEOUT,
};

/* SIGINT/SIGTERM/SIGHUP seen (lock-free: written by the handler, read by every thread), which
 * one first and when. */
static atomic_int g_stop, g_stop_sig;
static _Atomic uint64_t g_stop_ms;
static int g_stop_pipe[2] = {-1, -1}; /* forward: wakes the accept loop */
#define HUP_GRACE_MS 2000             /* see interrupted() */

static uint64_t mono_ms(void);

static void on_signal(int sig) {
    if (!g_stop) {
        g_stop_sig = sig;
        g_stop_ms = mono_ms(); /* clock_gettime: async-signal-safe */
    }
    g_stop = 1;
    if (g_stop_pipe[1] >= 0) {
        int e = errno;
        ssize_t w = write(g_stop_pipe[1], "x", 1);
        (void)w;
        errno = e;
    }
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- options ---------------------------------------------------------------------------- */

typedef struct st_conf {
    const char *house, *service;
    uint32_t window, idle_ms, timeout_ms;
    int quiet;
} st_conf;

static int parse_ms(cli_ctx *c, const char *opt, const char *v, unsigned long lo, unsigned long hi,
                    uint32_t *out) {
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (v[0] == '-' || e == v || *e || errno || x < lo || x > hi) {
        cli_err(c, "%s wants a number from %lu to %lu", opt, lo, hi);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

/* Parses the options shared by connect and forward; positionals into pos[0..want). */
static int parse_args(cli_ctx *c, const char *cmd, int argc, char **argv, int want,
                      const char **pos, st_conf *cf) {
    int npos = 0, dashdash = 0;
    *cf = (st_conf){.window = GP_STREAM_WIN_DEFAULT,
                    .idle_ms = GP_STREAM_IDLE_DEFAULT,
                    .timeout_ms = DEFAULT_OPEN_MS};
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r;
        if (dashdash || argv[i][0] != '-' || !argv[i][1]) {
            if (npos >= want) {
                cli_err(c, "%s: unexpected argument '%s'", cmd, argv[i]);
                return cli_usage(c, cmd, NULL);
            }
            pos[npos++] = argv[i];
            continue;
        }
        if (strcmp(argv[i], "--") == 0) {
            dashdash = 1;
        } else if ((r = cli_opt_val(argc, argv, &i, "--window", NULL, &v)) != 0) {
            if (r < 0 || parse_ms(c, "--window (bytes)", v, GP_STREAM_WIN_MIN, GP_STREAM_WIN_MAX,
                                  &cf->window) != 0)
                return CLI_USAGE;
        } else if ((r = cli_opt_val(argc, argv, &i, "--idle", NULL, &v)) != 0) {
            if (r < 0 || parse_ms(c, "--idle (ms)", v, GP_STREAM_IDLE_MIN, GP_STREAM_IDLE_MAX,
                                  &cf->idle_ms) != 0)
                return CLI_USAGE;
        } else if ((r = cli_opt_val(argc, argv, &i, "--timeout", NULL, &v)) != 0) {
            if (r < 0 || parse_ms(c, "--timeout (ms)", v, 1, 86400000ul, &cf->timeout_ms) != 0)
                return CLI_USAGE;
        } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
            cf->quiet = 1;
        } else {
            cli_err(c, "%s: unknown option '%s'", cmd, argv[i]);
            return cli_usage(c, cmd, NULL);
        }
    }
    if (npos != want)
        return cli_usage(c, cmd, NULL);
    cf->house = pos[want - 2];
    cf->service = pos[want - 1];
    if (!gp_house_id_valid(gp_str_c(cf->house))) {
        cli_err(c, "invalid house id '%s'", cf->house);
        return CLI_USAGE;
    }
    if (!gp_stream_service_ok(gp_str_c(cf->service))) {
        cli_err(c, "invalid service name '%s' (1-64 of A-Z a-z 0-9 . _ -, or http:NAME)",
                cf->service);
        return CLI_USAGE;
    }
    if (!*c->prefix || strlen(c->prefix) > 64) {
        cli_err(c, "--prefix must be 1-64 characters");
        return CLI_USAGE;
    }
    return 0;
}

/* --- one stream ------------------------------------------------------------------------- */

typedef struct mux mux;

/* Bytes of one sout entry waiting for the output. */
typedef struct oq_chunk {
    struct oq_chunk *next;
    size_t len, done; /* done: written already */
    uint8_t b[];
} oq_chunk;

enum { PH_OPENING, PH_OPEN };                                              /* pump.ph */
enum { WD_NONE, WD_PENDING, WD_INFLIGHT, WD_DONE, WD_DROPPED, WD_FAILED }; /* w_data_state */

/* What the writer builds for one stream in a round lives here until Redis has answered it
 * (the writer's round only). */
typedef struct wscratch {
    gp_stream_field f[2][GP_STREAM_FIELDS_MAX];
    char num[2][96];
    gp_stream_entry rst;
    char msg[GP_STREAM_MESSAGE_MAX + 1];
    char ttl[24], win[16], idle[16], tmo[16];
    char trim[TRIM_BATCH][GP_STREAM_MARK_ID];
    char ctl[CTL_MAX][GP_STREAM_MARK_ID];
} wscratch;

/* The same for the reader's upkeep of one stream (its ack, its XDELs), sent before its XREAD. */
typedef struct rscratch {
    char ack[24], ttl[24];
    char prev_ack[GP_STREAM_MARK_ID];
    char trim[TRIM_BATCH][GP_STREAM_MARK_ID];
    char ctl[CTL_MAX][GP_STREAM_MARK_ID];
} rscratch;

typedef struct pump {
    mux *m;
    char sid[33];
    char kin[GP_KEY_MAX], kout[GP_KEY_MAX], krep[GP_KEY_MAX];
    int in_fd, out_fd, is_sock;
    int out_sock; /* out_fd is a socket (send with MSG_DONTWAIT); else writes of PIPE_BUF */
    int out_fast; /* a socket or a pipe: the reader may write to it while it takes bytes */
    int evfd;     /* readable once the stream is over: wakes the input's and output's polls */

    /* under m->mu */
    int slot;            /* in m->slot, or -1 */
    int refs;            /* the reader or the writer works on it: it stays */
    int leaving;         /* mux_leave waits: the reader looks at it no more */
    int w_queued;        /* in the writer's list */
    struct pump *w_next; /* the writer's list */

    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* for the input thread: the open's outcome, credit, written, over */
    pthread_cond_t out_cv; /* for the output thread: bytes queued, the peer's fin, over */
    gp_stream s;
    int ph;
    int over;                            /* finished (reset, done or failed): its threads leave */
    uint64_t open_deadline;              /* PH_OPENING: no outcome by then is no answer */
    char why[512];                       /* the first failure, printed once */
    int exit_code;                       /* with why */
    int rst_sent;                        /* our rst is decided (w_rst) or written */
    gp_stream_marks ents;                /* data entries on sin not yet trimmed, in order */
    char last_ack_id[GP_STREAM_MARK_ID]; /* our ack-only entry, deleted when the next is written */
    char last[48], rlast[48];            /* read positions on sout and the reply key (reader) */
    int caught_up;                       /* the last XREAD read sout to its end */
    int held;                            /* the output queue was full: sout left out of the XREAD */
    oq_chunk *oq_head, *oq_tail;
    size_t oq_bytes, oq_cap; /* queued for the output, and its bound */
    int out_closed;          /* our output got the peer's fin (closed / shut for writing) */
    int out_busy;            /* the output thread writes the queue's head (without mu) */
    int ack_woken;           /* the output thread woke the reader for an ack */
    /* work for the writer */
    int w_open, w_rst, w_delrep;
    char rst_reason[GP_STREAM_REASON_MAX + 1], rst_msg[GP_STREAM_MESSAGE_MAX + 1];
    const gp_stream_entry *w_data; /* the input's entry (its bytes are the input thread's) */
    int w_data_state;
    char ctl[CTL_MAX][GP_STREAM_MARK_ID]; /* the house's ack-only sout entries read */
    size_t nctl;
    wscratch wx;
    rscratch rx;
} pump;

/* One pipeline: commands whose arguments are in av/al. */
typedef struct wround {
    br_rc_cmd *cmds;
    redisReply **out;
    const char **av;
    size_t *al;
    int n, na;
} wround;

/* One stream's share of a round: which commands are whose (-1: none). */
typedef struct wpart {
    pump *p;
    int i_open, i_rst, i_data;
    int more; /* work left for the next round */
} wpart;

/* The connections and threads all streams share. */
struct mux {
    cli_ctx *c;
    const st_conf *cf;
    br_rc *rr, *rw; /* the reader's and the writer's Redis connections */
    char kreq[GP_KEY_MAX];

    pthread_mutex_t mu;
    pthread_cond_t rd_cv;  /* the reader, while it has no key to read: a stream joined */
    pthread_cond_t wr_cv;  /* the writer: work queued, or a wake-up to send */
    pthread_cond_t ref_cv; /* a stream's references dropped (leaving waits for it) */
    pump *slot[MAX_STREAMS];
    pump *w_head, *w_tail; /* streams with work for the writer, oldest first */
    /* Waking the reader: set_gen counts the changes of what it should read; rd_gen is the
     * one its XREAD in flight (rd_blocked) was built from. */
    uint64_t set_gen, rd_gen;
    int rd_blocked;
    long long rd_id;     /* its CLIENT ID, -1 unknown */
    int unblock_wanted;  /* the writer sends CLIENT UNBLOCK rd_id */
    int unblock_tries;   /* sent too early (not blocked yet): again after 1 ms */
    uint64_t unblock_at; /* when */
    int no_unblock;      /* refused: the reader blocks FALLBACK_BLOCK_MS at most */
    int wbusy;           /* a thread is using the writer's connection (run_round, UNBLOCK) */
    int stop, wstop;     /* the reader, the writer end (after every stream left) */
    pthread_t rd_t, wr_t;
    int threads; /* started */
    wround wr;   /* the writer's arrays, for rounds of wcap streams */
    wpart *parts;
    size_t wcap;
};

static void pump_fail(pump *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the first failure (p->mu held, or p not shared yet). */
static void pump_fail(pump *p, int code, const char *fmt, ...) {
    if (p->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    p->exit_code = code;
}

static const char *rerr(br_rc *rc, const redisReply *r) {
    if (r && r->type == REDIS_REPLY_ERROR)
        return r->str;
    return br_rc_error(rc);
}

/* Resets the stream locally (reason why) and records the failure; the caller then calls
 * queue_rst. p->mu held. */
static void local_reset(pump *p, gp_stream_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void local_reset(pump *p, gp_stream_reason why, const char *fmt, ...) {
    gp_stream_reset(&p->s, why);
    if (!p->why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->why, sizeof p->why, fmt, ap);
        va_end(ap);
        p->exit_code = ST_FAIL;
    }
}

/* The stream is finished: its threads leave (p->mu held). */
static void mark_over(pump *p) {
    if (p->over)
        return;
    p->over = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->out_cv);
    uint64_t one = 1;
    ssize_t w = write(p->evfd, &one, sizeof one);
    (void)w;
}

/* Marks it over when it is: reset, both directions finished, or failed (p->mu held). */
static void check_over(pump *p) {
    if (p->s.reset != GP_SR_NONE || p->why[0] || (p->ph == PH_OPEN && gp_stream_done(&p->s)))
        mark_over(p);
}

/* Our rst entry with reason (a token of STREAMS.md) and a message, for the writer, once
 * (p->mu held; then mux_kick). */
static void queue_rst_reason(pump *p, const char *reason, const char *message) {
    if (p->rst_sent)
        return;
    p->rst_sent = 1;
    p->w_rst = 1;
    snprintf(p->rst_reason, sizeof p->rst_reason, "%s", reason);
    gp_stream_printable(p->rst_msg, sizeof p->rst_msg, message);
}

/* The stream is reset (if it was not) and over; our rst with its reason goes to the house,
 * once, unless the house reset it. p->mu held; then mux_kick. */
static void queue_rst(pump *p, const char *message) {
    if (p->s.reset == GP_SR_NONE)
        gp_stream_reset(&p->s, GP_SR_LOCAL);
    if (p->s.reset != GP_SR_PEER)
        queue_rst_reason(p, gp_stream_reason_name(p->s.reset), message);
    mark_over(p);
}

/* Whether a signal ends the stream now (p->mu held). ssh hangs up its ProxyCommand (SIGHUP) as
 * it exits, about when it closes our stdin: after a SIGHUP the stream gets HUP_GRACE_MS to end
 * cleanly (our fin from stdin's EOF, the service's fin usually on its way) before the reset. */
static int interrupted(const pump *p) {
    if (!g_stop || p->s.reset != GP_SR_NONE)
        return g_stop;
    return !(g_stop_sig == SIGHUP && mono_ms() - g_stop_ms < HUP_GRACE_MS);
}

/* --- the mux: who works on which stream ----------------------------------------------------- */

/* Queues p for the next writer round (m->mu held). 1 when it was not queued yet. */
static int enqueue_locked(mux *m, pump *p) {
    if (p->w_queued || p->slot < 0 || m->slot[p->slot] != p)
        return 0;
    p->w_queued = 1;
    p->w_next = NULL;
    if (m->w_tail)
        m->w_tail->w_next = p;
    else
        m->w_head = p;
    m->w_tail = p;
    return 1;
}

/* Queues p for the writer thread (m->mu held). */
static void kick_locked(mux *m, pump *p) {
    if (enqueue_locked(m, p))
        pthread_cond_signal(&m->wr_cv);
}

/* p has work for the writer (flags set under p->mu, which the caller no longer holds). */
static void mux_kick(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    kick_locked(m, p);
    pthread_mutex_unlock(&m->mu);
}

/* What the reader should read changed (m->mu held): cut its blocked XREAD short. */
static void wake_locked(mux *m) {
    m->set_gen++;
    pthread_cond_signal(&m->rd_cv);
    if (m->rd_blocked && !m->no_unblock && m->rd_id >= 0) {
        m->unblock_wanted = 1;
        m->unblock_tries = 0;
        m->unblock_at = 0;
        pthread_cond_signal(&m->wr_cv);
    }
}

static void mux_wake(mux *m) {
    pthread_mutex_lock(&m->mu);
    wake_locked(m);
    pthread_mutex_unlock(&m->mu);
}

/* The stream p joins the mux: -1 when MAX_STREAMS are open. */
static int mux_join(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < MAX_STREAMS && m->slot[i])
        i++;
    if (i < MAX_STREAMS) {
        m->slot[i] = p;
        p->slot = i;
        kick_locked(m, p); /* its open */
        wake_locked(m);    /* its reply key */
    }
    pthread_mutex_unlock(&m->mu);
    return i < MAX_STREAMS ? 0 : -1;
}

/* The stream leaves, once the writer has written what it has for it (its rst, its last
 * trims) and nobody works on it any more (the reader holds it while its XREAD blocks: woken). */
static void mux_leave(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    if (p->slot >= 0) {
        p->leaving = 1;
        kick_locked(m, p);
        wake_locked(m);
        while (p->w_queued || p->refs > 0)
            pthread_cond_wait(&m->ref_cv, &m->mu);
        m->slot[p->slot] = NULL;
        p->slot = -1;
    }
    pthread_mutex_unlock(&m->mu);
}

static void unref_locked(mux *m, pump *p) {
    if (--p->refs == 0)
        pthread_cond_broadcast(&m->ref_cv);
}

/* Every stream fails: Redis went away under one of the shared connections (what: the command).
 * Each gets the message and an rst for the writer (written if Redis is back by then). */
static void mux_lost(mux *m, const char *what, const char *err) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MAX_STREAMS; i++) {
        pump *p = m->slot[i];
        if (!p)
            continue;
        pthread_mutex_lock(&p->mu);
        if (!p->over) {
            if (p->ph == PH_OPENING) {
                pump_fail(p, ST_REFUSED, "%s failed: %s", what, err);
                queue_rst_reason(p, "closed", "the opener lost Redis while opening");
                p->w_delrep = 1;
            } else {
                local_reset(p, GP_SR_LOCAL, "%s failed: %s (Redis connection lost)", what, err);
                queue_rst(p, "the opener lost Redis");
            }
            mark_over(p);
            kick_locked(m, p);
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&m->mu);
}

/* A line on stderr, once per process, when Redis will not let the reader be woken early. */
static void note_no_unblock(mux *m, const char *cmd, const char *err) {
    pthread_mutex_lock(&m->mu);
    int first = !m->no_unblock;
    m->no_unblock = 1;
    m->unblock_wanted = 0;
    pthread_mutex_unlock(&m->mu);
    if (first && !m->cf->quiet)
        cli_err(m->c,
                "note: Redis refused %s (%s): the streams' shared reader now looks for new "
                "entries every %d ms (a new stream may wait that long for its first bytes); "
                "grant this user +client|id +client|unblock",
                cmd, err, FALLBACK_BLOCK_MS);
}

/* --- the writer ------------------------------------------------------------------------------ */

static void put_arg(wround *r, int *ac, const char *s, size_t len) {
    r->av[r->na + *ac] = s;
    r->al[r->na + *ac] = len;
    (*ac)++;
}

static int add_cmd(wround *r, int ac) {
    r->cmds[r->n] = (br_rc_cmd){.argc = ac, .argv = r->av + r->na, .lens = r->al + r->na};
    r->out[r->n] = NULL;
    r->na += ac;
    return r->n++;
}

/* XADD key * fields of e; the command's index, or -1 for an entry the codec refuses. */
static int add_xadd(wround *r, const char *key, const gp_stream_entry *e, gp_stream_field *f,
                    char *scratch) {
    int n = gp_stream_entry_build(e, f, scratch, 96);
    if (n < 0)
        return -1;
    int ac = 0;
    put_arg(r, &ac, "XADD", 4);
    put_arg(r, &ac, key, strlen(key));
    put_arg(r, &ac, "*", 1);
    for (int i = 0; i < n; i++) {
        put_arg(r, &ac, (const char *)f[i].name.p, f[i].name.len);
        put_arg(r, &ac, f[i].value.len ? (const char *)f[i].value.p : "", f[i].value.len);
    }
    return add_cmd(r, ac);
}

/* XDEL key ids[0..n). */
static void add_xdel(wround *r, const char *key, char (*ids)[GP_STREAM_MARK_ID], size_t n) {
    int ac = 0;
    put_arg(r, &ac, "XDEL", 4);
    put_arg(r, &ac, key, strlen(key));
    for (size_t i = 0; i < n; i++)
        put_arg(r, &ac, ids[i], strlen(ids[i]));
    add_cmd(r, ac);
}

/* Adds p's work to the round (p->mu held): at most PART_CMDS commands, PART_ARGS arguments.
 * *data: data bytes in the round so far. */
static void build_part(mux *m, wround *r, wpart *wp, size_t *data) {
    pump *p = wp->p;
    wscratch *x = &p->wx;
    const st_conf *cf = m->cf;
    int sin_written = 0, ac;
    if (p->w_open) {
        p->w_open = 0;
        snprintf(x->win, sizeof x->win, "%u", cf->window);
        snprintf(x->idle, sizeof x->idle, "%u", cf->idle_ms);
        snprintf(x->tmo, sizeof x->tmo, "%u", cf->timeout_ms);
        const char *av[] = {"XADD",    m->kreq,      "MAXLEN", "~",     "10000",
                            "*",       "kind",       "stream", "id",    p->sid,
                            "service", cf->service,  "window", x->win,  "idle_ms",
                            x->idle,   "timeout_ms", x->tmo,   "reply", p->krep};
        ac = 0;
        for (size_t i = 0; i < sizeof av / sizeof av[0]; i++)
            put_arg(r, &ac, av[i], strlen(av[i]));
        wp->i_open = add_cmd(r, ac);
    }
    if (p->w_rst) {
        p->w_rst = 0;
        x->rst = (gp_stream_entry){0};
        snprintf(x->rst.rst, sizeof x->rst.rst, "%s", p->rst_reason);
        memcpy(x->msg, p->rst_msg, sizeof x->msg);
        x->rst.message = (gp_str){(const uint8_t *)x->msg, strlen(x->msg)};
        wp->i_rst = add_xadd(r, p->kin, &x->rst, x->f[0], x->num[0]);
        sin_written |= wp->i_rst >= 0;
    }
    if (p->w_data_state == WD_PENDING) {
        size_t len = p->w_data->data.len;
        if (p->s.reset != GP_SR_NONE) {
            p->w_data_state = WD_DROPPED; /* the stream is over: nothing more goes */
            pthread_cond_broadcast(&p->cv);
        } else if (*data > 0 && *data + len > ROUND_DATA_MAX) {
            wp->more = 1; /* the next round: the streams queued behind it go first */
        } else {
            wp->i_data = add_xadd(r, p->kin, p->w_data, x->f[1], x->num[1]);
            p->w_data_state = wp->i_data >= 0 ? WD_INFLIGHT : WD_FAILED;
            if (wp->i_data < 0) {
                local_reset(p, GP_SR_LOCAL, "internal error: cannot build a stream entry");
                queue_rst(p, "the opener failed");
                pthread_cond_broadcast(&p->cv);
            }
            *data += len;
            sin_written |= wp->i_data >= 0;
        }
    }
    if (sin_written) { /* the key lives 2 x idle from its last write (STREAMS.md, expiry) */
        snprintf(x->ttl, sizeof x->ttl, "%llu", 2ull * cf->idle_ms);
        ac = 0;
        put_arg(r, &ac, "PEXPIRE", 7);
        put_arg(r, &ac, p->kin, strlen(p->kin));
        put_arg(r, &ac, x->ttl, strlen(x->ttl));
        add_cmd(r, ac);
    }
    /* Our entries the house's ack covers leave Redis (the reader's upkeep does it while the
     * stream is read; this, for the last ones when it leaves). */
    size_t ntrim = gp_stream_marks_take(&p->ents, p->s.snd_acked, x->trim, TRIM_BATCH);
    if (ntrim)
        add_xdel(r, p->kin, x->trim, ntrim);
    wp->more |= gp_stream_marks_due(&p->ents, p->s.snd_acked);
    /* ... and so do the house's ack-only entries we read: an idle stream's sout holds none. */
    if (p->nctl) {
        memcpy(x->ctl, p->ctl, p->nctl * sizeof p->ctl[0]);
        add_xdel(r, p->kout, x->ctl, p->nctl);
        p->nctl = 0;
    }
    if (p->w_delrep) {
        p->w_delrep = 0;
        ac = 0;
        put_arg(r, &ac, "DEL", 3);
        put_arg(r, &ac, p->krep, strlen(p->krep));
        add_cmd(r, ac);
    }
}

/* Takes Redis's answers for p's commands (p->mu held). */
static void finish_part(mux *m, wround *r, wpart *wp) {
    pump *p = wp->p;
    redisReply *o;
    if (wp->i_open >= 0 && (o = r->out[wp->i_open]) && o->type != REDIS_REPLY_STRING) {
        pump_fail(p, ST_REFUSED, "XADD %s failed: %s", m->kreq, rerr(m->rw, o));
        mark_over(p);
    }
    if (wp->i_data >= 0) {
        o = r->out[wp->i_data];
        if (o && o->type == REDIS_REPLY_STRING) {
            const gp_stream_entry *e = p->w_data;
            /* A bare fin is never trimmed (STREAMS.md, limits): no mark. */
            if (e->data.len > 0 &&
                gp_stream_marks_push(&p->ents, o->str, o->len, e->off + e->data.len, 0) != 0) {
                /* out of memory: the entry stays until the key expires */
            }
            p->w_data_state = WD_DONE;
        } else {
            p->w_data_state = WD_FAILED;
            if (o) { /* a lost connection is mux_lost's */
                local_reset(p, GP_SR_LOCAL, "XADD %s failed: %s", p->kin, rerr(m->rw, o));
                queue_rst(p, "the opener stopped");
            }
        }
        pthread_cond_broadcast(&p->cv);
    }
    check_over(p);
    if (p->w_rst || p->w_data_state == WD_PENDING)
        wp->more = 1; /* asked for while this round was on its way */
}

/* Sends CLIENT UNBLOCK for the reader's blocked XREAD (m->mu held, released meanwhile; by the
 * thread that set m->wbusy). */
static void send_unblock(mux *m) {
    char id[24];
    snprintf(id, sizeof id, "%lld", m->rd_id);
    pthread_mutex_unlock(&m->mu);
    const char *av[] = {"CLIENT", "UNBLOCK", id};
    redisReply *r = br_rc_cmd_at(m->rw, m->kreq, strlen(m->kreq), 3, av, NULL);
    int early = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    if (r && r->type == REDIS_REPLY_ERROR)
        note_no_unblock(m, "CLIENT UNBLOCK", r->str);
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&m->mu);
    if (early && ++m->unblock_tries < UNBLOCK_TRIES)
        m->unblock_at = mono_ms() + 1; /* sent before the XREAD reached Redis: again soon */
    else
        m->unblock_wanted = 0; /* done, or the reader's BLOCK ends by itself (STEP_MS) */
}

/* Room in the writer's arrays for rounds of n streams (kept if that fails). */
static int wround_grow(mux *m, size_t n) {
    wround *r = &m->wr;
    wpart *p2 = realloc(m->parts, n * sizeof *m->parts);
    if (p2)
        m->parts = p2;
    br_rc_cmd *c2 = realloc(r->cmds, n * PART_CMDS * sizeof *r->cmds);
    if (c2)
        r->cmds = c2;
    redisReply **o2 = realloc(r->out, n * PART_CMDS * sizeof *r->out);
    if (o2)
        r->out = o2;
    const char **a2 = realloc(r->av, n * PART_ARGS * sizeof *r->av);
    if (a2)
        r->av = a2;
    size_t *l2 = realloc(r->al, n * PART_ARGS * sizeof *r->al);
    if (l2)
        r->al = l2;
    if (!p2 || !c2 || !o2 || !a2 || !l2)
        return -1;
    m->wcap = n;
    return 0;
}

/* One round: every stream queued now, in their order, in one pipeline on the writer's
 * connection. m->mu held (released meanwhile) by the thread that set m->wbusy: the writer
 * thread, or an input thread that found the connection free (its entry then goes without
 * a handoff between threads: a bulk upload's chunks and a keystroke's latency). */
static void run_round(mux *m) {
    size_t np = 0;
    for (pump *p = m->w_head; p; p = p->w_next)
        np++;
    if (np > m->wcap) /* room for them all, else as many as there is room for */
        wround_grow(m, np);
    if (np > m->wcap)
        np = m->wcap;
    wround r = m->wr;
    wpart *parts = m->parts;
    for (size_t i = 0; i < np; i++) {
        pump *p = m->w_head;
        m->w_head = p->w_next;
        if (!m->w_head)
            m->w_tail = NULL;
        p->w_queued = 0;
        p->refs++;
        parts[i] = (wpart){.p = p, .i_open = -1, .i_rst = -1, .i_data = -1};
    }
    pthread_mutex_unlock(&m->mu);

    r.n = r.na = 0;
    size_t data = 0;
    for (size_t i = 0; i < np; i++) {
        pthread_mutex_lock(&parts[i].p->mu);
        build_part(m, &r, &parts[i], &data);
        pthread_mutex_unlock(&parts[i].p->mu);
    }
    int lost = 0;
    if (r.n > 0) {
        br_rc_set_timeout(m->rw, REDIS_TIMEOUT_MS);
        br_rc_pipeline(m->rw, r.n, r.cmds, r.out);
        for (int k = 0; k < r.n; k++)
            lost |= r.out[k] == NULL; /* no answer: the connection failed */
    }
    char err[256] = "";
    if (lost)
        snprintf(err, sizeof err, "%s", br_rc_error(m->rw));
    for (size_t i = 0; i < np; i++) {
        pthread_mutex_lock(&parts[i].p->mu);
        finish_part(m, &r, &parts[i]);
        pthread_mutex_unlock(&parts[i].p->mu);
    }
    for (int k = 0; k < r.n; k++)
        if (r.out[k])
            freeReplyObject(r.out[k]);
    if (lost)
        mux_lost(m, "XADD", err);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < np; i++) {
        if (parts[i].more)
            kick_locked(m, parts[i].p);
        unref_locked(m, parts[i].p);
    }
}

/* Whether a CLIENT UNBLOCK is to be sent now (m->mu held). */
static int unblock_due(mux *m) {
    if (m->unblock_wanted && !(m->rd_blocked && m->rd_gen != m->set_gen && m->rd_id >= 0))
        m->unblock_wanted = 0; /* the reader saw the change by itself */
    return m->unblock_wanted && mono_ms() >= m->unblock_at;
}

static void *writer_main(void *arg) {
    mux *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        int unblock = unblock_due(m);
        if (!m->wbusy && (unblock || m->w_head)) {
            m->wbusy = 1;
            if (unblock)
                send_unblock(m);
            else
                run_round(m);
            m->wbusy = 0;
            continue;
        }
        if (m->wstop && !m->w_head && !m->wbusy)
            break;
        if (m->unblock_wanted) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&m->wr_cv, &m->mu, &ts);
        } else {
            pthread_cond_wait(&m->wr_cv, &m->mu);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* p's entry is ready for the writer (w_data pending): this thread writes the round itself when
 * the writer's connection is free, else the writer thread will. */
static void mux_write(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    if (m->wbusy) {
        kick_locked(m, p);
    } else {
        enqueue_locked(m, p);
        m->wbusy = 1;
        run_round(m);
        if (unblock_due(m)) /* while a bulk upload keeps the connection busy */
            send_unblock(m);
        m->wbusy = 0;
        if (m->w_head || m->unblock_wanted) /* queued meanwhile: the writer thread's */
            pthread_cond_signal(&m->wr_cv);
    }
    pthread_mutex_unlock(&m->mu);
}

/* --- the reader ------------------------------------------------------------------------------ */

/* Field/value array of an XREAD entry -> fields. -1 when its shape is not that. */
static int entry_fields(const redisReply *e, gp_stream_field *f, size_t *n, const char **id) {
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
        return -1;
    *id = e->element[0]->str;
    const redisReply *fv = e->element[1];
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0 ||
        fv->elements / 2 > GP_STREAM_FIELDS_MAX)
        return -2;
    for (size_t i = 0; i < fv->elements; i++)
        if (fv->element[i]->type != REDIS_REPLY_STRING)
            return -2;
    *n = fv->elements / 2;
    for (size_t i = 0; i < *n; i++) {
        f[i].name = (gp_str){(const uint8_t *)fv->element[2 * i]->str, fv->element[2 * i]->len};
        f[i].value =
            (gp_str){(const uint8_t *)fv->element[2 * i + 1]->str, fv->element[2 * i + 1]->len};
    }
    return 0;
}

/* Entries read on an opening stream's reply key: its outcome (p->mu held). */
static void take_outcome(pump *p, const redisReply *ents) {
    const st_conf *cf = p->m->cf;
    for (size_t i = 0; i < ents->elements && p->ph == PH_OPENING && !p->over; i++) {
        const redisReply *en = ents->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING ||
            en->element[1]->type != REDIS_REPLY_ARRAY || en->element[0]->len >= sizeof p->rlast)
            continue;
        memcpy(p->rlast, en->element[0]->str, en->element[0]->len + 1);
        const redisReply *fv = en->element[1];
        const redisReply *vid = NULL, *vst = NULL, *vfin = NULL, *verr = NULL, *vmsg = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            const redisReply *kk = fv->element[k], *vv = fv->element[k + 1];
            if (kk->type != REDIS_REPLY_STRING || vv->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(kk->str, "id") == 0)
                vid = vv;
            else if (strcmp(kk->str, "status") == 0)
                vst = vv;
            else if (strcmp(kk->str, "final") == 0)
                vfin = vv;
            else if (strcmp(kk->str, "error") == 0)
                verr = vv;
            else if (strcmp(kk->str, "message") == 0)
                vmsg = vv;
        }
        if (vid && (vid->len != strlen(p->sid) || memcmp(vid->str, p->sid, vid->len) != 0))
            continue; /* someone else's entry on our key */
        char *e = NULL, error[64] = "", message[300] = "";
        long st = vst ? strtol(vst->str, &e, 10) : 0;
        int status = vst && e && !*e && st >= 100 && st <= 599 ? (int)st : 0;
        if (verr)
            cli_esc(error, sizeof error, verr->str, verr->len);
        if (vmsg)
            cli_esc(message, sizeof message, vmsg->str, vmsg->len);
        int final = vfin && strcmp(vfin->str, "1") == 0;
        if (!final && status != 200)
            continue; /* an outcome is one entry; take a 200 as it is */
        p->w_delrep = 1;
        if (status == 200 && !error[0]) {
            p->ph = PH_OPEN;
            snprintf(p->last, sizeof p->last, "0-0");
            pthread_cond_broadcast(&p->cv);
        } else {
            pump_fail(p, ST_REFUSED, "open of %s on house %s refused: %d %s%s%s", cf->service,
                      cf->house, status, error[0] ? error : "error", message[0] ? ": " : "",
                      message);
            mark_over(p);
        }
    }
}

/* Counts n bytes of the queue's head as written to the output (p->mu held). -1: more than
 * was delivered (an internal error: the stream is reset). */
static int consume(pump *p, size_t n) {
    if (gp_stream_consumed(&p->s, (uint64_t)n) != 0) {
        local_reset(p, GP_SR_LOCAL, "internal error: consumed more than delivered");
        queue_rst(p, "the opener failed");
        return -1;
    }
    oq_chunk *c = p->oq_head;
    c->done += n;
    p->oq_bytes -= n;
    if (c->done == c->len) {
        p->oq_head = c->next;
        if (!p->oq_head)
            p->oq_tail = NULL;
        free(c);
    }
    return 0;
}

/* Writes to the output what it takes at once, without waiting: a socket with MSG_DONTWAIT, a
 * pipe (connect's stdout) PIPE_BUF at a time while it polls writable (a write of PIPE_BUF into
 * a pipe with room does not block). Bytes written, 0 when none (an error is left to the output
 * thread to find again and report). */
static size_t write_some(pump *p, const uint8_t *b, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w;
        if (p->out_sock) {
            w = send(p->out_fd, b + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            struct pollfd pf = {.fd = p->out_fd, .events = POLLOUT};
            if (poll(&pf, 1, 0) != 1 || pf.revents != POLLOUT)
                break;
            w = write(p->out_fd, b + done, n - done < PIPE_BUF ? n - done : PIPE_BUF);
        }
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return done;
}

/* The reader writes the queue out as far as the output takes it at once (no thread switch
 * while the client keeps up); the rest is the output thread's. p->mu held. */
static void write_now(pump *p) {
    while (p->out_fast && p->oq_head && !p->out_busy && !p->over) {
        oq_chunk *c = p->oq_head;
        size_t w = write_some(p, c->b + c->done, c->len - c->done);
        if (w == 0 || consume(p, w) != 0)
            break;
    }
}

/* Entries read on an open stream's sout (p->mu held). Returns how many were taken: the rest
 * waits in Redis (the output queue is full, or the stream is over). */
static size_t take_entries(pump *p, const redisReply *ents) {
    size_t i = 0;
    int credit = 0, out = 0; /* whom to wake: each wake-up is a thread switch */
    for (; i < ents->elements && !p->over; i++) {
        const redisReply *ent = ents->element[i];
        gp_stream_field f[GP_STREAM_FIELDS_MAX];
        size_t nf = 0;
        const char *id = NULL;
        char err[160];
        gp_stream_entry e;
        int shape = entry_fields(ent, f, &nf, &id);
        int perr = shape == 0 ? gp_stream_entry_parse(&e, f, nf, err, sizeof err) : 0;
        if (shape != 0 || perr != 0) {
            if (shape == -1)
                snprintf(err, sizeof err, "an entry of unexpected shape");
            else if (shape == -2)
                snprintf(err, sizeof err, "fields of unexpected shape or too many");
            local_reset(p, GP_SR_MALFORMED, "malformed entry from the house on %s: %s", p->kout,
                        err);
            queue_rst(p, err);
            break;
        }
        if (e.data.len > 0 && p->oq_bytes > 0 && p->oq_bytes + e.data.len > p->oq_cap) {
            p->held = 1; /* read again once the output has drained */
            break;
        }
        size_t skip = 0, take = 0;
        uint64_t now = mono_ms();
        int rc = gp_stream_apply(&p->s, now, &e, &skip, &take);
        if (p->s.reset == GP_SR_PEER) {
            char *em = cli_esc_dup((const char *)e.message.p, e.message.len);
            pump_fail(p, ST_FAIL, "stream reset by the house: %s%s%s", p->s.rst_reason,
                      em && *em ? ": " : "", em ? em : "");
            free(em);
            mark_over(p);
            break;
        }
        if (rc != 0) {
            gp_stream_reason why = p->s.reset;
            local_reset(p, why, "bad entry from the house on %s: %s (entry %s)", p->kout,
                        gp_stream_reason_name(why), id);
            char m[96];
            snprintf(m, sizeof m, "the opener refused entry %s: %s", id,
                     gp_stream_reason_name(why));
            queue_rst(p, m);
            break;
        }
        if (take > 0 && p->out_fast && !p->oq_head && !p->out_busy) {
            /* Nothing queued: straight from Redis's answer to the output, as far as it goes. */
            size_t w = write_some(p, e.data.p + skip, take);
            if (w > 0 && gp_stream_consumed(&p->s, (uint64_t)w) != 0) {
                local_reset(p, GP_SR_LOCAL, "internal error: consumed more than delivered");
                queue_rst(p, "the opener failed");
                break;
            }
            skip += w;
            take -= w;
        }
        if (take > 0) {
            oq_chunk *c = malloc(sizeof *c + take);
            if (!c) {
                local_reset(p, GP_SR_LOCAL, "out of memory");
                queue_rst(p, "the opener ran out of memory");
                break;
            }
            c->next = NULL;
            c->len = take;
            c->done = 0;
            memcpy(c->b, e.data.p + skip, take);
            if (p->oq_tail)
                p->oq_tail->next = c;
            else
                p->oq_head = c;
            p->oq_tail = c;
            p->oq_bytes += take;
        }
        credit |= e.has_ack || e.has_win;
        out |= take > 0 || e.fin;
        if (!e.has_off && p->nctl < CTL_MAX) /* read, it can go (STREAMS.md) */
            memcpy(p->ctl[p->nctl++], id, strlen(id) + 1);
        snprintf(p->last, sizeof p->last, "%s", id);
    }
    if (credit)
        pthread_cond_signal(&p->cv);
    if (out)
        pthread_cond_signal(&p->out_cv);
    return i;
}

/* What one stream puts in the reader's pipeline at most (upkeep): XADD key * ack N, PEXPIRE,
 * the XDEL of the ack it supersedes, the XDELs of sin's trimmed and sout's read entries. */
#define UPKEEP_ARGS (5 + 3 + 3 + (2 + TRIM_BATCH) + (2 + CTL_MAX))
#define UPKEEP_CMDS 5

/* One stream as the reader sees it in one loop: a reference (taken before the pipeline,
 * dropped after its answers), the key it reads (if any) and its upkeep's ack command. */
typedef struct rkey {
    pump *p;
    int read, reply; /* a key in the XREAD; the reply key (else sout) */
    char key[GP_KEY_MAX], id[48];
    int got;   /* it came back with entries */
    int i_ack; /* the ack's XADD in the pipeline, or -1 */
} rkey;

/* The reader's share of p's upkeep, pipelined before its XREAD on its own connection (as a
 * stream's reader did alone before; the writer's connection stays for the data, so acks never
 * wait behind a bulk upload): the ack when one is due (every quarter window, at the peer's
 * fin, caught up with sout and the output, the keep-alive), with PEXPIRE and the XDEL of the
 * ack entry it supersedes; our sin entries the house acknowledged; the house's ack-only sout
 * entries read. p->mu held. */
static void upkeep(mux *m, wround *r, rkey *k, uint64_t now) {
    pump *p = k->p;
    rscratch *x = &p->rx;
    int ac;
    uint64_t ack;
    k->i_ack = -1;
    if (p->ph == PH_OPEN && gp_stream_ack_due(&p->s, now, p->caught_up && !p->oq_head, &ack)) {
        snprintf(x->ack, sizeof x->ack, "%llu", (unsigned long long)ack);
        snprintf(x->ttl, sizeof x->ttl, "%llu", 2ull * m->cf->idle_ms);
        ac = 0;
        put_arg(r, &ac, "XADD", 4);
        put_arg(r, &ac, p->kin, strlen(p->kin));
        put_arg(r, &ac, "*", 1);
        put_arg(r, &ac, "ack", 3);
        put_arg(r, &ac, x->ack, strlen(x->ack));
        k->i_ack = add_cmd(r, ac);
        /* Marked written now: the answer comes with the XREAD's. A failure fails the stream. */
        gp_stream_ack_written(&p->s, now, ack);
        p->ack_woken = 0;
        ac = 0;
        put_arg(r, &ac, "PEXPIRE", 7);
        put_arg(r, &ac, p->kin, strlen(p->kin));
        put_arg(r, &ac, x->ttl, strlen(x->ttl));
        add_cmd(r, ac);
        if (p->last_ack_id[0]) { /* superseded by the new one */
            memcpy(x->prev_ack, p->last_ack_id, sizeof x->prev_ack);
            p->last_ack_id[0] = '\0';
            add_xdel(r, p->kin, &x->prev_ack, 1);
        }
    }
    size_t ntrim = gp_stream_marks_take(&p->ents, p->s.snd_acked, x->trim, TRIM_BATCH);
    if (ntrim)
        add_xdel(r, p->kin, x->trim, ntrim);
    if (p->nctl) { /* an idle stream's sout holds nothing */
        memcpy(x->ctl, p->ctl, p->nctl * sizeof p->ctl[0]);
        add_xdel(r, p->kout, x->ctl, p->nctl);
        p->nctl = 0;
    }
}

/* Before an XREAD: k's stream's deadlines, signals and upkeep, and which key of it to read
 * (k->read). *next: the earliest time it needs the reader again. */
static void service(mux *m, wround *r, rkey *k, uint64_t now, uint64_t *next) {
    pump *p = k->p;
    int kick = 0;
    k->read = 0;
    k->got = 0;
    k->i_ack = -1;
    pthread_mutex_lock(&p->mu);
    if (p->over) {
        /* nothing: it is leaving */
    } else if (p->ph == PH_OPENING) {
        const st_conf *cf = m->cf;
        if (g_stop) {
            /* Should the house open it after all (its bridge delivers the open late), the rst
             * already waiting on sin closes it at once rather than after idle_ms. */
            pump_fail(p, ST_FAIL, "interrupted while opening");
            queue_rst_reason(p, "closed", "the opener was interrupted while opening");
            p->w_delrep = 1;
            mark_over(p);
            kick = 1;
        } else if (now >= p->open_deadline) {
            pump_fail(p, ST_NOANSWER,
                      "no answer to the open of %s on house %s within %u ms (is the house "
                      "connected? see `ghostport house list`)",
                      cf->service, cf->house, cf->timeout_ms + WAIT_MARGIN_MS);
            queue_rst_reason(p, "timeout",
                             "the opener gave up waiting for the outcome of the open");
            p->w_delrep = 1;
            mark_over(p);
            kick = 1;
        } else {
            snprintf(k->key, sizeof k->key, "%s", p->krep);
            snprintf(k->id, sizeof k->id, "%s", p->rlast);
            k->reply = 1;
            k->read = 1;
            if (p->open_deadline < *next)
                *next = p->open_deadline;
        }
    } else if (interrupted(p)) {
        local_reset(p, GP_SR_LOCAL, "interrupted");
        queue_rst(p, "the opener was interrupted");
        kick = 1;
    } else {
        upkeep(m, r, k, now);
        /* Held, its idle clock stops (took()): only its keep-alives are due. */
        uint64_t t = p->held ? p->s.last_ack_ms + p->s.idle_ms / 3 : gp_stream_next_timer(&p->s);
        if (t < *next)
            *next = t;
        if (!p->held) {
            snprintf(k->key, sizeof k->key, "%s", p->kout);
            snprintf(k->id, sizeof k->id, "%s", p->last);
            k->reply = 0;
            k->read = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* After the pipeline: Redis's answer to k's ack (o; NULL: the connection is lost, which is
 * mux_lost's). */
static void acked(mux *m, rkey *k, const redisReply *o) {
    pump *p = k->p;
    int kick = 0;
    pthread_mutex_lock(&p->mu);
    if (o && o->type == REDIS_REPLY_STRING) {
        if (o->len < sizeof p->last_ack_id)
            memcpy(p->last_ack_id, o->str, o->len + 1);
        check_over(p); /* our last ack may have finished it */
    } else if (o && !p->over) {
        local_reset(p, GP_SR_LOCAL, "XADD %s failed: %s", p->kin, rerr(m->rr, o));
        queue_rst(p, "the opener stopped");
        kick = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* After the XREAD: what k's key gave (ents NULL: nothing). */
static void took(mux *m, rkey *k, const redisReply *ents) {
    pump *p = k->p;
    int kick = 0;
    pthread_mutex_lock(&p->mu);
    if (p->over || (k->reply != (p->ph == PH_OPENING))) {
        /* over meanwhile, or opened by an earlier read */
    } else if (k->reply) {
        if (ents)
            take_outcome(p, ents);
    } else {
        size_t n = ents ? take_entries(p, ents) : 0;
        uint64_t now = mono_ms();
        p->caught_up = n < READ_COUNT && !p->held && !p->over;
        /* The idle clock only when sout had nothing new, and not while it is held: the
         * house's keep-alives may be among the entries not read. */
        if (!p->over && n == 0 && !p->held && gp_stream_tick(&p->s, now)) {
            local_reset(p, GP_SR_IDLE, "nothing from the house for %u ms: stream timed out",
                        m->cf->idle_ms);
            queue_rst(p, "no entry from the house within idle_ms");
        }
        write_now(p);
        if (p->held && p->oq_bytes <= p->oq_cap / 2)
            p->held = 0; /* drained right here: read again in the next loop */
        if (p->oq_head || (p->s.rcv_fin && !p->out_closed))
            pthread_cond_signal(&p->out_cv);
        check_over(p);
    }
    kick = p->w_rst || p->w_delrep;
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* A read of k's key failed (why): its stream fails. */
static void fail_read(mux *m, rkey *k, const char *why) {
    pump *p = k->p;
    pthread_mutex_lock(&p->mu);
    if (!p->over) {
        if (p->ph == PH_OPENING) {
            pump_fail(p, ST_REFUSED, "XREAD %s failed: %s", k->key, why);
            queue_rst_reason(p, "closed", "the opener could not read the outcome of the open");
            p->w_delrep = 1;
            mark_over(p);
        } else {
            local_reset(p, GP_SR_LOCAL, "XREAD %s failed: %s", k->key, why);
            queue_rst(p, "the opener could not read sout");
        }
    }
    pthread_mutex_unlock(&p->mu);
    mux_kick(m, p);
}

/* The reader's XREAD was refused (an error reply, not a lost connection): because of which
 * key? Each is read alone (no BLOCK, one entry, not taken); those refused fail their stream,
 * or, when none is, every stream read fails with err. */
static void read_refused(mux *m, rkey *ks, int n, const char *err) {
    int blamed = 0, nread = 0;
    for (int i = 0; i < n; i++)
        nread += ks[i].read;
    for (int i = 0; i < n && nread > 1; i++) {
        if (!ks[i].read)
            continue;
        const char *xv[] = {"XREAD", "COUNT", "1", "STREAMS", ks[i].key, ks[i].id};
        redisReply *r = br_rc_cmdv(m->rr, 6, xv, NULL);
        if (r && r->type == REDIS_REPLY_ERROR) {
            fail_read(m, &ks[i], r->str);
            blamed = 1;
        }
        if (r)
            freeReplyObject(r);
    }
    for (int i = 0; i < n && !blamed; i++)
        if (ks[i].read)
            fail_read(m, &ks[i], err);
}

/* The reader's CLIENT ID, asked again when its connection to the house's node changed (a
 * reconnection, a MOVED); the writer sends CLIENT UNBLOCK to it. */
static void learn_id(mux *m, unsigned long *route) {
    unsigned long now_route = br_rc_route(m->rr, m->kreq, strlen(m->kreq));
    pthread_mutex_lock(&m->mu);
    int skip = m->no_unblock || (now_route == *route && m->rd_id >= 0);
    pthread_mutex_unlock(&m->mu);
    if (skip || now_route == 0)
        return;
    const char *av[] = {"CLIENT", "ID"};
    redisReply *r = br_rc_cmd_at(m->rr, m->kreq, strlen(m->kreq), 2, av, NULL);
    long long id = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r && r->type == REDIS_REPLY_ERROR)
        note_no_unblock(m, "CLIENT ID", r->str);
    if (r)
        freeReplyObject(r);
    *route = br_rc_route(m->rr, m->kreq, strlen(m->kreq));
    pthread_mutex_lock(&m->mu);
    m->rd_id = id;
    pthread_mutex_unlock(&m->mu);
}

/* Room in the reader's arrays for n streams' upkeep and an XREAD of n keys. */
static int rround_grow(wround *r, size_t *cap, size_t n) {
    size_t ncmd = n * UPKEEP_CMDS + 1, narg = n * UPKEEP_ARGS + 6 + 2 * n;
    br_rc_cmd *c2 = realloc(r->cmds, ncmd * sizeof *r->cmds);
    if (c2)
        r->cmds = c2;
    redisReply **o2 = realloc(r->out, ncmd * sizeof *r->out);
    if (o2)
        r->out = o2;
    const char **a2 = realloc(r->av, narg * sizeof *r->av);
    if (a2)
        r->av = a2;
    size_t *l2 = realloc(r->al, narg * sizeof *r->al);
    if (l2)
        r->al = l2;
    if (!c2 || !o2 || !a2 || !l2)
        return -1;
    *cap = n;
    return 0;
}

static void *reader_main(void *arg) {
    mux *m = arg;
    rkey *ks = calloc(MAX_STREAMS, sizeof *ks);
    wround r = {0};
    size_t cap = 0;
    if (!ks || rround_grow(&r, &cap, 1) != 0) {
        mux_lost(m, "the reader", "out of memory");
        free(ks);
        ks = NULL;
    }
    unsigned long route = 0;
    while (ks) {
        /* The streams of this loop, each with a reference until its answers are taken. */
        pthread_mutex_lock(&m->mu);
        if (m->stop) {
            pthread_mutex_unlock(&m->mu);
            break;
        }
        uint64_t gen = m->set_gen;
        int n = 0;
        for (int i = 0; i < MAX_STREAMS; i++)
            if (m->slot[i] && !m->slot[i]->leaving)
                n++;
        if ((size_t)n > cap)
            rround_grow(&r, &cap, (size_t)n);
        n = 0;
        for (int i = 0; i < MAX_STREAMS && (size_t)n < cap; i++)
            if (m->slot[i] && !m->slot[i]->leaving) {
                ks[n++].p = m->slot[i];
                m->slot[i]->refs++;
            }
        pthread_mutex_unlock(&m->mu);
        uint64_t now = mono_ms(), next = now + STEP_MS;
        int nread = 0;
        r.n = r.na = 0;
        for (int i = 0; i < n; i++) {
            service(m, &r, &ks[i], now, &next);
            nread += ks[i].read;
        }
        int nup = r.n;
        uint64_t block = next > now ? next - now : 1;
        if (block > STEP_MS)
            block = STEP_MS;
        pthread_mutex_lock(&m->mu);
        if (m->no_unblock || m->rd_id < 0) /* it cannot be woken early: wake by itself */
            block = block > FALLBACK_BLOCK_MS ? FALLBACK_BLOCK_MS : block;
        /* Something changed since the list was made: read at once, then make it again. */
        int blocking = m->set_gen == gen;
        if (nread == 0 && nup == 0) { /* nothing to do: wait for a stream, a deadline, a signal */
            for (int i = 0; i < n; i++)
                unref_locked(m, ks[i].p);
            if (blocking && !m->stop) {
                uint64_t wait = next > now ? next - now : 1;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)((wait < STEP_MS ? wait : STEP_MS) / 1000);
                ts.tv_nsec += (long)((wait < STEP_MS ? wait : STEP_MS) % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&m->rd_cv, &m->mu, &ts);
            }
            pthread_mutex_unlock(&m->mu);
            continue;
        }
        if (nread && blocking) {
            m->rd_gen = gen;
            m->rd_blocked = 1;
        }
        pthread_mutex_unlock(&m->mu);

        int ix = -1; /* the XREAD, last in the pipeline */
        char bs[24];
        if (nread) {
            int ac = 0;
            put_arg(&r, &ac, "XREAD", 5);
            put_arg(&r, &ac, "COUNT", 5);
            put_arg(&r, &ac, READ_COUNT_S, strlen(READ_COUNT_S));
            if (blocking) {
                snprintf(bs, sizeof bs, "%llu", (unsigned long long)block);
                put_arg(&r, &ac, "BLOCK", 5);
                put_arg(&r, &ac, bs, strlen(bs));
            }
            put_arg(&r, &ac, "STREAMS", 7);
            for (int i = 0; i < n; i++)
                if (ks[i].read)
                    put_arg(&r, &ac, ks[i].key, strlen(ks[i].key));
            for (int i = 0; i < n; i++)
                if (ks[i].read)
                    put_arg(&r, &ac, ks[i].id, strlen(ks[i].id));
            ix = add_cmd(&r, ac);
        }
        br_rc_set_timeout(m->rr, (int)block + REDIS_TIMEOUT_MS);
        br_rc_pipeline(m->rr, r.n, r.cmds, r.out);
        pthread_mutex_lock(&m->mu);
        m->rd_blocked = 0;
        pthread_mutex_unlock(&m->mu);

        int lost = 0;
        for (int k = 0; k < r.n; k++)
            lost |= r.out[k] == NULL;
        for (int i = 0; i < n; i++)
            if (ks[i].i_ack >= 0)
                acked(m, &ks[i], r.out[ks[i].i_ack]);
        const redisReply *x = ix >= 0 ? r.out[ix] : NULL;
        if (x && x->type == REDIS_REPLY_ERROR) {
            /* (UNBLOCKED: someone's CLIENT UNBLOCK ... ERROR, no fault of a key: read again) */
            if (strncmp(x->str, "UNBLOCKED", 9) != 0)
                read_refused(m, ks, n, x->str);
        } else if (x) {
            if (x->type == REDIS_REPLY_ARRAY) {
                int hint = 0;
                for (size_t j = 0; j < x->elements; j++) {
                    const redisReply *kv = x->element[j];
                    if (kv->type != REDIS_REPLY_ARRAY || kv->elements != 2 ||
                        kv->element[0]->type != REDIS_REPLY_STRING ||
                        kv->element[1]->type != REDIS_REPLY_ARRAY)
                        continue;
                    int i = -1; /* keys come back in the order asked: look from the last */
                    for (int t = 0; t < n && i < 0; t++) {
                        int c = (hint + t) % n;
                        if (ks[c].read && strcmp(ks[c].key, kv->element[0]->str) == 0)
                            i = c;
                    }
                    if (i < 0)
                        continue;
                    hint = i + 1;
                    ks[i].got = 1;
                    took(m, &ks[i], kv->element[1]);
                }
            }
            for (int i = 0; i < n; i++)
                if (ks[i].read && !ks[i].got)
                    took(m, &ks[i], NULL);
        }
        char err[300] = "";
        if (lost)
            snprintf(err, sizeof err, "%s", br_rc_error(m->rr));
        for (int k = 0; k < r.n; k++)
            if (r.out[k])
                freeReplyObject(r.out[k]);
        if (lost)
            mux_lost(m, nread ? "XREAD" : "XADD", err);
        else if (x)
            learn_id(m, &route);
        pthread_mutex_lock(&m->mu);
        for (int i = 0; i < n; i++)
            unref_locked(m, ks[i].p);
        pthread_mutex_unlock(&m->mu);
    }
    free(ks);
    free(r.cmds);
    free(r.out);
    free(r.av);
    free(r.al);
    return NULL;
}

/* --- a stream's own threads ------------------------------------------------------------------ */

/* Closes stdout (its reader sees EOF) and puts /dev/null in its place, so that no socket
 * opened later takes descriptor 1. */
static void release_out(int fd) {
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, fd) < 0)
        close(fd);
    if (nul >= 0 && nul != fd)
        close(nul);
}

/* The output thread: the queue -> the output, each byte consumed (acknowledgeable) once
 * written. It may wait for the output as long as its user likes: the reader goes on for the
 * other streams, and sends this one's keep-alives. */
static void *output_main(void *arg) {
    pump *p = arg;
    mux *m = p->m;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int failed = p->s.reset != GP_SR_NONE || p->why[0];
        if (!failed && !p->out_closed && p->s.rcv_fin && p->s.rcv_consumed == p->s.rcv_fin_off) {
            p->out_closed = 1;
            pthread_mutex_unlock(&p->mu);
            if (p->is_sock)
                shutdown(p->out_fd, SHUT_WR);
            else
                release_out(p->out_fd); /* the user's reader sees EOF */
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->over && (failed || !p->oq_head))
            break;
        if (!p->oq_head) {
            pthread_cond_wait(&p->out_cv, &p->mu);
            continue;
        }
        oq_chunk *c = p->oq_head;
        const uint8_t *b = c->b + c->done;
        size_t n = c->len - c->done;
        p->out_busy = 1; /* the head is ours until written: the reader leaves it alone */
        pthread_mutex_unlock(&p->mu);

        struct pollfd pf[2] = {{.fd = p->out_fd, .events = POLLOUT},
                               {.fd = p->evfd, .events = POLLIN}};
        int pr = poll(pf, 2, STEP_MS);
        ssize_t w = -1;
        int e = EAGAIN;
        if (pr < 0 && errno != EINTR) {
            e = errno;
        } else if (pr > 0 && !pf[1].revents) {
            size_t chunk = p->out_sock || n < PIPE_BUF ? n : PIPE_BUF;
            w = p->out_sock ? send(p->out_fd, b, chunk, MSG_DONTWAIT | MSG_NOSIGNAL)
                            : write(p->out_fd, b, chunk);
            e = w < 0 ? errno : 0;
        }
        pthread_mutex_lock(&p->mu);
        p->out_busy = 0;
        if (w < 0) {
            if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK)
                continue; /* not writable yet, or over (the loop's first test) */
            if (!p->over) {
                local_reset(p, GP_SR_LOCAL, "writing %s: %s",
                            p->is_sock ? "to the connection" : "stdout", strerror(e));
                queue_rst(p, "the opener's output closed");
                pthread_mutex_unlock(&p->mu);
                mux_kick(m, p);
                pthread_mutex_lock(&p->mu);
            }
            break;
        }
        if (consume(p, (size_t)w) != 0) {
            pthread_mutex_unlock(&p->mu);
            mux_kick(m, p);
            pthread_mutex_lock(&p->mu);
            break;
        }
        uint64_t ack;
        int wake = 0, flush = !p->oq_head && p->caught_up;
        /* The reader writes acks (upkeep): wake it for one now due (credit for the house). */
        if (!p->ack_woken && gp_stream_ack_due(&p->s, mono_ms(), flush, &ack))
            wake = p->ack_woken = 1;
        if (p->held && p->oq_bytes <= p->oq_cap / 2) {
            p->held = 0; /* room again: sout back in the reader's XREAD */
            wake = 1;
        }
        if (wake) {
            pthread_mutex_unlock(&p->mu);
            mux_wake(m);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* The input: in_fd -> entries on sin, below the credit, each handed to the writer. */
static void input_loop(pump *p) {
    mux *m = p->m;
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        pthread_mutex_lock(&p->mu);
        local_reset(p, GP_SR_LOCAL, "out of memory");
        queue_rst(p, "the opener ran out of memory");
        pthread_mutex_unlock(&p->mu);
        mux_kick(m, p);
        return;
    }
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->over && gp_stream_can_send(&p->s) == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->over) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        uint64_t credit = gp_stream_can_send(&p->s);
        pthread_mutex_unlock(&p->mu);
        size_t want = credit < CHUNK ? (size_t)credit : CHUNK;

        struct pollfd pf[2] = {{.fd = p->in_fd, .events = POLLIN},
                               {.fd = p->evfd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "poll: %s", strerror(errno));
            queue_rst(p, "the opener failed");
            pthread_mutex_unlock(&p->mu);
            mux_kick(m, p);
            break;
        }
        if (pf[1].revents)
            break; /* over */
        ssize_t n = read(p->in_fd, buf, want);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            int e = errno;
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "reading %s: %s", p->is_sock ? "the connection" : "stdin",
                        strerror(e));
            queue_rst(p, "the opener's input failed");
            pthread_mutex_unlock(&p->mu);
            mux_kick(m, p);
            break;
        }
        uint64_t now = mono_ms();
        gp_stream_entry e = {.has_off = 1};
        pthread_mutex_lock(&p->mu);
        e.off = p->s.snd_next;
        int bad = 0;
        if (n == 0) {
            /* EOF: half-close. Marked written before the XADD, as bytes are marked sent
             * before theirs: the house may answer before XADD returns. */
            bad = gp_stream_close(&p->s) != 0;
            if (!bad)
                gp_stream_fin_written(&p->s, now);
            e.fin = 1;
        } else {
            bad = gp_stream_sent(&p->s, now, (uint64_t)n) != 0;
            e.data = (gp_str){buf, (size_t)n};
        }
        if (bad || p->over) {
            pthread_mutex_unlock(&p->mu);
            break; /* reset meanwhile */
        }
        p->w_data = &e;
        p->w_data_state = WD_PENDING;
        pthread_mutex_unlock(&p->mu);
        mux_write(m, p);
        /* The writer reads buf until it says so, whatever happens to the stream meanwhile. */
        pthread_mutex_lock(&p->mu);
        while (p->w_data_state == WD_PENDING || p->w_data_state == WD_INFLIGHT)
            pthread_cond_wait(&p->cv, &p->mu);
        int st = p->w_data_state;
        p->w_data_state = WD_NONE;
        p->w_data = NULL;
        pthread_mutex_unlock(&p->mu);
        if (st != WD_DONE || n == 0)
            break;
    }
    free(buf);
}

static void make_sid(char out[33]) {
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* One stream over in_fd/out_fd, from the open to its end, on m's connections. Returns the exit
 * code; the failure, if any, in p->why. */
static int run_stream(mux *m, pump *p) {
    const st_conf *cf = m->cf;
    const char *prefix = m->c->prefix;
    char rid[GP_KEY_MAX];
    make_sid(p->sid);
    /* The reply key in the house's slot, beside sin and sout: read by the same XREAD. */
    snprintf(rid, sizeof rid, "{%s}:%s", cf->house, p->sid);
    if (gp_key_reply(p->krep, prefix, rid) < 0 ||
        snprintf(p->kin, sizeof p->kin, "%s:{%s}:sin:%s", prefix, cf->house, p->sid) >=
            (int)sizeof p->kin ||
        snprintf(p->kout, sizeof p->kout, "%s:{%s}:sout:%s", prefix, cf->house, p->sid) >=
            (int)sizeof p->kout) {
        pump_fail(p, ST_REFUSED, "key too long");
        return ST_REFUSED;
    }
    if (gp_stream_init(&p->s, mono_ms(), cf->window, cf->idle_ms) != 0) {
        pump_fail(p, ST_FAIL, "bad window or idle");
        return ST_FAIL;
    }
    p->ph = PH_OPENING;
    p->open_deadline = mono_ms() + cf->timeout_ms + WAIT_MARGIN_MS;
    snprintf(p->rlast, sizeof p->rlast, "0-0");
    p->oq_cap = cf->window < OUTQ_MAX ? cf->window : OUTQ_MAX;
    p->w_open = 1;
    if (mux_join(m, p) != 0) {
        pump_fail(p, ST_FAIL, "too many streams (at most %d)", MAX_STREAMS);
        return ST_FAIL;
    }
    pthread_mutex_lock(&p->mu);
    while (p->ph == PH_OPENING && !p->over)
        pthread_cond_wait(&p->cv, &p->mu);
    int opened = !p->over;
    pthread_mutex_unlock(&p->mu);
    pthread_t ot;
    int out_thread = 0;
    if (opened) {
        out_thread = pthread_create(&ot, NULL, output_main, p) == 0;
        if (!out_thread) {
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "cannot start a thread");
            queue_rst(p, "the opener failed");
            pthread_mutex_unlock(&p->mu);
            mux_kick(m, p);
        } else {
            input_loop(p);
        }
    }
    pthread_mutex_lock(&p->mu);
    while (!p->over)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (out_thread)
        pthread_join(ot, NULL);
    pthread_mutex_lock(&p->mu);
    int rv = ST_DONE;
    if (p->ph == PH_OPENING || p->why[0] || !gp_stream_done(&p->s)) {
        if (p->ph == PH_OPEN) {
            /* A failure of ours after the house had nothing to say: tell the house too. */
            queue_rst(p, "the opener stopped");
            pump_fail(p, ST_FAIL, "stream ended: %s", gp_stream_reason_name(p->s.reset));
        }
        rv = p->exit_code ? p->exit_code : ST_FAIL;
    }
    pthread_mutex_unlock(&p->mu);
    mux_leave(m, p); /* once its rst and last trims are written */
    return rv;
}

static pump *pump_new(mux *m, int in_fd, int out_fd, int is_sock) {
    pump *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->m = m;
    p->slot = -1;
    p->in_fd = in_fd;
    p->out_fd = out_fd;
    p->is_sock = is_sock;
    struct stat st;
    int fst = fstat(out_fd, &st) == 0;
    p->out_sock = is_sock || (fst && S_ISSOCK(st.st_mode));
    p->out_fast = p->out_sock || (fst && S_ISFIFO(st.st_mode));
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->evfd < 0) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->out_cv, NULL);
    return p;
}

static void pump_free(pump *p) {
    if (!p)
        return;
    close(p->evfd);
    gp_stream_marks_free(&p->ents);
    for (oq_chunk *c = p->oq_head, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->out_cv);
    free(p);
}

/* --- the process's connections ------------------------------------------------------------- */

/* A note when the house is not registered or offline; an error only when it is unknown.
 * A user whose ACL may not read the registry (a producer) skips the check. */
static int check_house(cli_ctx *c, br_rc *rc, const st_conf *cf) {
    char err[512];
    gp_reg_house h;
    int rv = 0;
    if (gp_reg_get(rc, c->prefix, cf->house, &h, err, sizeof err) != 0) {
        if (!strstr(err, "NOPERM")) {
            cli_err(c, "%s", err);
            rv = CLI_USAGE;
        }
    } else if (!h.registered) {
        cli_err(c, "no house '%s' is registered under prefix '%s' (see ghostport house list)",
                cf->house, c->prefix);
        rv = CLI_USAGE;
    } else if (!h.st.connected && !cf->quiet) {
        fprintf(stderr,
                "%s: note: house %s is offline; the open waits until a bridge picks it up or "
                "its %u ms deadline passes\n",
                c->prog, cf->house, cf->timeout_ms);
    }
    return rv;
}

/* A connection named after this process and its role, connected (PING). NULL with the
 * error printed. */
static br_rc *dial(cli_ctx *c, const gp_rurl *u, const char *role) {
    br_rc *rc = br_rc_new_url(u, REDIS_TIMEOUT_MS);
    if (!rc) {
        cli_err(c, "out of memory");
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "ghostport-cli:%ld:%s", (long)getpid(), role);
    br_rc_set_name(rc, name);
    if (br_rc_ping(rc) != 0) {
        cli_err(c, "%s", br_rc_error(rc));
        br_rc_free(rc);
        return NULL;
    }
    return rc;
}

static void mux_free(mux *m);

/* The two connections (checked), the house's check, the reader and writer threads. 0, or an
 * exit code with the error printed. */
static int mux_start(mux *m, cli_ctx *c, const st_conf *cf, const gp_rurl *u) {
    memset(m, 0, sizeof *m);
    m->c = c;
    m->cf = cf;
    m->rd_id = -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->rd_cv, NULL);
    pthread_cond_init(&m->wr_cv, NULL);
    pthread_cond_init(&m->ref_cv, NULL);
    if (gp_key_req(m->kreq, c->prefix, cf->house) < 0) {
        cli_err(c, "key too long");
        mux_free(m);
        return CLI_USAGE;
    }
    if (wround_grow(m, 1) != 0) {
        cli_err(c, "out of memory");
        mux_free(m);
        return CLI_FAIL;
    }
    int rv = 0;
    if (!(m->rw = dial(c, u, "writer")) || (rv = check_house(c, m->rw, cf)) != 0 ||
        !(m->rr = dial(c, u, "reader"))) {
        mux_free(m);
        return m->rw && rv != 0 ? rv : CLI_USAGE;
    }
    if (pthread_create(&m->wr_t, NULL, writer_main, m) != 0) {
        cli_err(c, "cannot start a thread");
        mux_free(m);
        return CLI_FAIL;
    }
    m->threads = 1;
    if (pthread_create(&m->rd_t, NULL, reader_main, m) != 0) {
        cli_err(c, "cannot start a thread");
        mux_free(m);
        return CLI_FAIL;
    }
    m->threads = 2;
    return 0;
}

/* Stops the threads (every stream has left) and closes the connections. */
static void mux_free(mux *m) {
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    wake_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (m->threads > 1)
        pthread_join(m->rd_t, NULL);
    pthread_mutex_lock(&m->mu);
    m->wstop = 1;
    pthread_cond_signal(&m->wr_cv);
    pthread_mutex_unlock(&m->mu);
    if (m->threads > 0)
        pthread_join(m->wr_t, NULL);
    br_rc_free(m->rr);
    br_rc_free(m->rw);
    free(m->parts);
    free(m->wr.cmds);
    free(m->wr.out);
    free(m->wr.av);
    free(m->wr.al);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->rd_cv);
    pthread_cond_destroy(&m->wr_cv);
    pthread_cond_destroy(&m->ref_cv);
}

static void install_signals(void) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* --- connect ---------------------------------------------------------------------------- */

/* What connect and forward do first: their arguments, the Redis address, the connections and
 * the house's check. */
static int prepare(cli_ctx *c, const char *cmd, int argc, char **argv, int want, const char **pos,
                   st_conf *cf, gp_rurl *u, mux *m) {
    int rv = parse_args(c, cmd, argc, argv, want, pos, cf);
    if (rv != 0)
        return rv;
    if (cli_redis_addr(c, u) != 0)
        return CLI_USAGE;
    if ((rv = mux_start(m, c, cf, u)) != 0)
        gp_rurl_wipe(u);
    return rv;
}

int cli_connect_cmd(cli_ctx *c, int argc, char **argv) {
    const char *pos[2];
    st_conf cf;
    gp_rurl u;
    mux m;
    int rv = prepare(c, "connect", argc, argv, 2, pos, &cf, &u, &m);
    if (rv != 0)
        return rv;
    install_signals();
    pump *p = pump_new(&m, STDIN_FILENO, STDOUT_FILENO, 0);
    if (!p) {
        cli_err(c, "eventfd: %s", strerror(errno));
        rv = CLI_FAIL;
    } else {
        rv = run_stream(&m, p);
        if (rv != 0 && p->why[0])
            cli_err(c, "%s", p->why);
    }
    pump_free(p);
    mux_free(&m);
    gp_rurl_wipe(&u);
    return rv;
}

/* --- forward ---------------------------------------------------------------------------- */

typedef struct fwd {
    cli_ctx *c;
    const st_conf *cf;
    mux *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active;
} fwd;

typedef struct fwd_conn {
    fwd *f;
    int fd;
    char peer[80];
} fwd_conn;

static void *conn_main(void *arg) {
    fwd_conn *fc = arg;
    fwd *f = fc->f;
    pump *p = pump_new(f->m, fc->fd, fc->fd, 1);
    if (p) {
        int rv = run_stream(f->m, p);
        if (rv != 0) {
            /* A reset: the client sees one too. */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fc->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            flockfile(stderr); /* one line, whatever the other streams print */
            cli_err(f->c, "%s: stream %s: %s", fc->peer, p->sid, p->why[0] ? p->why : "failed");
            funlockfile(stderr);
        } else if (!f->cf->quiet) {
            fprintf(stderr, "%s: %s: stream %s closed\n", f->c->prog, fc->peer, p->sid);
        }
        pump_free(p);
    } else {
        cli_err(f->c, "%s: %s; connection closed", fc->peer, strerror(errno));
    }
    close(fc->fd);
    free(fc);
    pthread_mutex_lock(&f->mu);
    f->active--;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* "[ADDR:]PORT" ("[::1]:8022" for IPv6) -> a listening socket; its address into shown. */
static int listen_on(cli_ctx *c, const char *spec, char *shown, size_t cap) {
    char host[256] = "127.0.0.1";
    const char *port = spec;
    const char *colon = strrchr(spec, ':');
    if (colon) {
        size_t hl = (size_t)(colon - spec);
        const char *h = spec;
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (hl == 0 || hl >= sizeof host) {
            cli_err(c, "forward: bad address in '%s'", spec);
            return -1;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        port = colon + 1;
    }
    char *e;
    long pn = strtol(port, &e, 10);
    if (!*port || *e || pn < 0 || pn > 65535) {
        cli_err(c, "forward: bad port in '%s' (want [ADDR:]PORT)", spec);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        cli_err(c, "forward: %s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0)
            break;
        cli_err(c, "forward: cannot listen on %s: %s", spec, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char hb[INET6_ADDRSTRLEN] = "?";
    int bound = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, hb, sizeof hb);
            bound = ntohs(s4->sin_port);
            snprintf(shown, cap, "%s:%d", hb, bound);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, hb, sizeof hb);
            bound = ntohs(s6->sin6_port);
            snprintf(shown, cap, "[%s]:%d", hb, bound);
        }
    }
    return fd;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t cap) {
    char hb[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, hb, sizeof hb);
        snprintf(out, cap, "%s:%d", hb, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, hb, sizeof hb);
        snprintf(out, cap, "[%s]:%d", hb, ntohs(s6->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}

int cli_forward(cli_ctx *c, int argc, char **argv) {
    const char *pos[3];
    st_conf cf;
    gp_rurl u;
    mux m;
    int rv = prepare(c, "forward", argc, argv, 3, pos, &cf, &u, &m);
    if (rv != 0)
        return rv;
    char shown[128] = "?";
    int lfd = listen_on(c, pos[0], shown, sizeof shown);
    if (lfd < 0) {
        mux_free(&m);
        gp_rurl_wipe(&u);
        return CLI_USAGE;
    }
    if (pipe2(g_stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        cli_err(c, "pipe: %s", strerror(errno));
        close(lfd);
        mux_free(&m);
        gp_rurl_wipe(&u);
        return CLI_FAIL;
    }
    install_signals();
    printf("listening on %s -> house %s service %s\n", shown, cf.house, cf.service);
    fflush(stdout);

    fwd f = {.c = c, .cf = &cf, .m = &m};
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    while (!g_stop) {
        struct pollfd pf[2] = {{.fd = lfd, .events = POLLIN},
                               {.fd = g_stop_pipe[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            cli_err(c, "poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents || g_stop)
            break;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                cli_err(c, "accept: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fwd_conn *fc = calloc(1, sizeof *fc);
        pthread_mutex_lock(&f.mu);
        int full = f.active >= MAX_STREAMS;
        pthread_mutex_unlock(&f.mu);
        if (!fc || full) {
            cli_err(c, "forward: %s; connection refused",
                    fc ? "too many connections" : "out of memory");
            free(fc);
            close(fd);
            continue;
        }
        fc->f = &f;
        fc->fd = fd;
        peer_name(&ss, fc->peer, sizeof fc->peer);
        pthread_mutex_lock(&f.mu);
        f.active++;
        pthread_mutex_unlock(&f.mu);
        pthread_t t;
        if (pthread_create(&t, &at, conn_main, fc) != 0) {
            cli_err(c, "forward: cannot start a thread; connection refused");
            close(fd);
            free(fc);
            pthread_mutex_lock(&f.mu);
            f.active--;
            pthread_mutex_unlock(&f.mu);
        }
    }
    close(lfd);
    /* The reader resets every stream within STEP_MS of the stop; wait for them (bounded). */
    g_stop = 1;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5 + REDIS_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&f.mu);
    while (f.active > 0)
        if (pthread_cond_timedwait(&f.cv, &f.mu, &until) != 0)
            break;
    int left = f.active;
    pthread_mutex_unlock(&f.mu);
    pthread_attr_destroy(&at);
    if (left > 0) {
        cli_err(c, "forward: %d stream(s) did not stop in time", left);
        _exit(CLI_FAIL); /* threads still use f, m and u */
    }
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
    mux_free(&m);
    gp_rurl_wipe(&u);
    return CLI_OK;
}
