/* cli_stream.c — `ghostport connect` and `ghostport forward`: TCP streams through Redis as an
 * opener of the stream contract (proto/STREAMS.md), speaking only Redis. One XADD opens a
 * stream on the house's request stream, its outcome comes on the reply key, then the bytes
 * are pumped: input (stdin or an accepted socket) -> `sin`, `sout` -> output, with the
 * endpoint state machine of proto/stream.h deciding credit, acks, fin, reset and idle.
 *
 * Every stream of a process shares the same two Redis connections (a `mux`), however many
 * there are: an idle Redis client costs Redis about 23 KB of memory (25 times an idle
 * stream's two keys) and one of its maxclients. `connect` is the one-stream case of `forward`.
 * The mux is two files: cli_stream_reader.c, the reader thread (one XREAD for every stream's
 * `sout` and pending reply key, each stream's acks and XDELs pipelined before it; the data
 * handed to the outputs), and cli_stream_mux.c, the writer thread (opens, data, resets, a round
 * of them one pipeline) and the bookkeeping of which stream the shared threads work on. The
 * three files share cli_stream_int.h.
 *
 * This file: the commands (options, connect, forward's listener and its connections), the
 * signals, a stream's state changes (failure, reset, over), and its life from the open to its
 * end with its own two threads: an input thread (poll on its input and its eventfd; each entry
 * handed to the writer, which says when it is written) and an output thread (the queue into
 * the output, waiting for POLLOUT), both leaving once the stream is over. I/O side. */
#include "cli_cmd.h"
#include "cli_stream_int.h"

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

#define CHUNK (64u << 10)     /* data bytes an entry (STREAMS.md: writers use 64 KiB) */
#define DEFAULT_OPEN_MS 30000 /* timeout_ms of the open */
#define OUTQ_MAX (1u << 20)   /* bytes queued for one output before its sout is held back */

/* SIGINT/SIGTERM/SIGHUP seen (lock-free: written by the handler, read by every thread), which
 * one first and when. */
static atomic_int g_stop, g_stop_sig;
static _Atomic uint64_t g_stop_ms;
static int g_stop_pipe[2] = {-1, -1}; /* forward: wakes the accept loop */
#define HUP_GRACE_MS 2000             /* see cs_interrupted() */

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

/* Whether a signal asked the process to stop. */
int cs_stopping(void) {
    return g_stop;
}

static void install_signals(void) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* --- options ------------------------------------------------------------------------------ */

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

/* --- one stream --------------------------------------------------------------------------- */

/* Records the first failure (p->mu held, or p not shared yet). */
void cs_pump_fail(pump *p, int code, const char *fmt, ...) {
    if (p->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    p->exit_code = code;
}

const char *cs_rerr(br_rc *rc, const redisReply *r) {
    if (r && r->type == REDIS_REPLY_ERROR)
        return r->str;
    return br_rc_error(rc);
}

/* Resets the stream locally (reason why) and records the failure; the caller then calls
 * cs_queue_rst. p->mu held. */
void cs_local_reset(pump *p, gp_stream_reason why, const char *fmt, ...) {
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
void cs_mark_over(pump *p) {
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
void cs_check_over(pump *p) {
    if (p->s.reset != GP_SR_NONE || p->why[0] || (p->ph == PH_OPEN && gp_stream_done(&p->s)))
        cs_mark_over(p);
}

/* Our rst entry with reason (a token of STREAMS.md) and a message, for the writer, once
 * (p->mu held; then mux_kick). */
void cs_queue_rst_reason(pump *p, const char *reason, const char *message) {
    if (p->rst_sent)
        return;
    p->rst_sent = 1;
    p->w_rst = 1;
    snprintf(p->rst_reason, sizeof p->rst_reason, "%s", reason);
    gp_stream_printable(p->rst_msg, sizeof p->rst_msg, message);
}

/* The stream is reset (if it was not) and over; our rst with its reason goes to the house,
 * once, unless the house reset it. p->mu held; then mux_kick. */
void cs_queue_rst(pump *p, const char *message) {
    if (p->s.reset == GP_SR_NONE)
        gp_stream_reset(&p->s, GP_SR_LOCAL);
    if (p->s.reset != GP_SR_PEER)
        cs_queue_rst_reason(p, gp_stream_reason_name(p->s.reset), message);
    cs_mark_over(p);
}

/* Whether a signal ends the stream now (p->mu held). ssh hangs up its ProxyCommand (SIGHUP) as
 * it exits, about when it closes our stdin: after a SIGHUP the stream gets HUP_GRACE_MS to end
 * cleanly (our fin from stdin's EOF, the service's fin usually on its way) before the reset. */
int cs_interrupted(const pump *p) {
    if (!g_stop || p->s.reset != GP_SR_NONE)
        return g_stop;
    return !(g_stop_sig == SIGHUP && mono_ms() - g_stop_ms < HUP_GRACE_MS);
}

/* --- a stream's own threads --------------------------------------------------------------- */

/* Closes stdout (its reader sees EOF) and puts /dev/null in its place, so that no socket
 * opened later takes descriptor 1. */
static void release_out(int fd) {
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, fd) < 0)
        close(fd);
    if (nul >= 0 && nul != fd)
        close(nul);
}

/* Counts n bytes of the queue's head as written to the output (p->mu held). -1: more than
 * was delivered (an internal error: the stream is reset). */
int cs_consume(pump *p, size_t n) {
    if (gp_stream_consumed(&p->s, (uint64_t)n) != 0) {
        cs_local_reset(p, GP_SR_LOCAL, "internal error: consumed more than delivered");
        cs_queue_rst(p, "the opener failed");
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
                cs_local_reset(p, GP_SR_LOCAL, "writing %s: %s",
                               p->is_sock ? "to the connection" : "stdout", strerror(e));
                cs_queue_rst(p, "the opener's output closed");
                pthread_mutex_unlock(&p->mu);
                mux_kick(m, p);
                pthread_mutex_lock(&p->mu);
            }
            break;
        }
        if (cs_consume(p, (size_t)w) != 0) {
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
        cs_local_reset(p, GP_SR_LOCAL, "out of memory");
        cs_queue_rst(p, "the opener ran out of memory");
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
            cs_local_reset(p, GP_SR_LOCAL, "poll: %s", strerror(errno));
            cs_queue_rst(p, "the opener failed");
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
            cs_local_reset(p, GP_SR_LOCAL, "reading %s: %s",
                           p->is_sock ? "the connection" : "stdin", strerror(e));
            cs_queue_rst(p, "the opener's input failed");
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
        cs_pump_fail(p, ST_REFUSED, "key too long");
        return ST_REFUSED;
    }
    if (gp_stream_init(&p->s, mono_ms(), cf->window, cf->idle_ms) != 0) {
        cs_pump_fail(p, ST_FAIL, "bad window or idle");
        return ST_FAIL;
    }
    p->ph = PH_OPENING;
    p->open_deadline = mono_ms() + cf->timeout_ms + WAIT_MARGIN_MS;
    snprintf(p->rlast, sizeof p->rlast, "0-0");
    p->oq_cap = cf->window < OUTQ_MAX ? cf->window : OUTQ_MAX;
    p->w_open = 1;
    if (mux_join(m, p) != 0) {
        cs_pump_fail(p, ST_FAIL, "too many streams (at most %d)", MAX_STREAMS);
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
            cs_local_reset(p, GP_SR_LOCAL, "cannot start a thread");
            cs_queue_rst(p, "the opener failed");
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
            cs_queue_rst(p, "the opener stopped");
            cs_pump_fail(p, ST_FAIL, "stream ended: %s", gp_stream_reason_name(p->s.reset));
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

/* --- connect ------------------------------------------------------------------------------ */

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

/* --- forward ------------------------------------------------------------------------------ */

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
