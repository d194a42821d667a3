/* cli_stream_int.h — what the three files of `ghostport connect` and `forward` share (not an
 * API: only they include it; cli_cmd.h is the commands' API): cli_stream.c (the commands, a
 * stream's life and its own threads), cli_stream_mux.c (the mux: the shared connections, which
 * stream the shared threads work on, the writer) and cli_stream_reader.c (the reader). A stream
 * is a `pump`, the process's shared connections and threads its `mux`. */
#ifndef CLI_STREAM_INT_H
#define CLI_STREAM_INT_H

#include "cli_cmd.h"
#include "stream.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define STEP_MS 500            /* longest XREAD BLOCK: how soon a signal or a deadline is seen */
#define READ_COUNT 64          /* entries an XREAD, each key */
#define WAIT_MARGIN_MS 2000    /* the open's outcome may come a little after timeout_ms */
#define REDIS_TIMEOUT_MS 10000 /* connect and command timeout (beside BLOCK) */
#define MAX_STREAMS 256        /* concurrent streams of one process (forward's connections) */
#define TRIM_BATCH 64          /* our sin entries an XDEL (more: the next round) */
#define CTL_MAX READ_COUNT     /* the house's ack-only entries read, deleted by the next loop */
#define FALLBACK_BLOCK_MS 25   /* the reader's longest BLOCK when it cannot be woken early */

/* Exit codes of connect (cli_cmd.h's, named for this command). */
enum {
    ST_DONE = CLI_OK,       /* both directions finished */
    ST_FAIL = CLI_FAIL,     /* reset (either side), Redis lost mid-stream, output closed */
    ST_REFUSED = CLI_USAGE, /* usage, Redis unreachable, the open refused (error outcome) */
    ST_NOANSWER = CLI_TIMEOUT,
};

typedef struct st_conf {
    const char *house, *service;
    uint32_t window, idle_ms, timeout_ms;
    int quiet;
} st_conf;

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

static inline uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- cli_stream.c: the signals, one stream's state ---- */

int cs_stopping(void); /* SIGINT, SIGTERM or SIGHUP seen */
/* Whether a signal ends the stream now (p->mu held): after a SIGHUP, not before HUP_GRACE_MS. */
int cs_interrupted(const pump *p);
/* Records the first failure (p->mu held, or p not shared yet). */
void cs_pump_fail(pump *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Resets the stream locally (reason why) and records the failure; the caller then calls
 * cs_queue_rst. p->mu held. */
void cs_local_reset(pump *p, gp_stream_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cs_mark_over(pump *p);  /* the stream is finished: its threads leave (p->mu held) */
void cs_check_over(pump *p); /* ... when it is: reset, both directions done, or failed */
/* Our rst with reason and message for the writer, once (p->mu held; then mux_kick). */
void cs_queue_rst_reason(pump *p, const char *reason, const char *message);
/* The stream reset (if it was not) and over; our rst goes unless the house reset it. */
void cs_queue_rst(pump *p, const char *message);
/* Counts n bytes of the output queue's head as written (p->mu held). -1: the stream is reset. */
int cs_consume(pump *p, size_t n);
const char *cs_rerr(br_rc *rc, const redisReply *r); /* an error reply's text, or rc's error */

/* ---- cli_stream_mux.c: the mux and its writer ---- */

/* The two connections (checked), the house's check, the reader and writer threads. 0, or an
 * exit code with the error printed. mux_free: stops the threads (every stream has left). */
int mux_start(mux *m, cli_ctx *c, const st_conf *cf, const gp_rurl *u);
void mux_free(mux *m);
int mux_join(mux *m, pump *p);   /* -1 when MAX_STREAMS are open */
void mux_leave(mux *m, pump *p); /* once the writer wrote its last and nobody works on it */
void mux_kick(mux *m, pump *p);  /* p has work for the writer (p->mu not held) */
void mux_write(mux *m, pump *p); /* p's entry is ready: a round now, here or by the writer */
void mux_wake(mux *m);           /* what the reader should read changed: cut its XREAD short */
/* Every stream fails: Redis went away under a shared connection (what: the command). */
void mux_lost(mux *m, const char *what, const char *err);
void mux_unref_locked(mux *m, pump *p); /* the reader or writer is done with p (m->mu held) */
/* Redis will not let the reader be woken early (a line on stderr, once). */
void mux_note_no_unblock(mux *m, const char *cmd, const char *err);
/* Building a pipeline: an argument, the command of the last *ac arguments (its index), XDEL. */
void cs_put_arg(wround *r, int *ac, const char *s, size_t len);
int cs_add_cmd(wround *r, int ac);
void cs_add_xdel(wround *r, const char *key, char (*ids)[GP_STREAM_MARK_ID], size_t n);

/* ---- cli_stream_reader.c ---- */

void *cs_reader_main(void *arg); /* the reader thread (arg: the mux) */

#endif
