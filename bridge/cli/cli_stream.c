/* cli_stream.c — `ghostport connect` and `ghostport forward`: TCP streams through Redis as an
 * opener of the stream contract (proto/STREAMS.md), speaking only Redis. One XADD opens the
 * stream on the house's request stream, its outcome is awaited on the reply key, then the
 * bytes are pumped: input (stdin or an accepted socket) -> `sin`, `sout` -> output, with the
 * endpoint state machine of proto/stream.h deciding credit, acks, fin, reset and idle.
 *
 * Two threads a stream, each with its own blocking Redis connection (rclient.h is one client
 * a thread): the writer reads the input (poll on it and a wake-up pipe: no polling steps on
 * the interactive path) and XADDs data entries below acked + window, waiting on a condition
 * variable for credit; the reader XREADs `sout` (BLOCK, at most STEP_MS so that it notices a
 * local reset or a signal), writes the bytes out (waiting for POLLOUT, so that a user who
 * stops reading still gets keep-alives sent), acknowledges them, trims our `sin` entries
 * below the house's ack and keeps the stream alive. Both share the gp_stream under a mutex.
 * Everything read from Redis is hostile: a bad entry resets the stream with a reason. I/O
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64u << 10)      /* data bytes an entry (STREAMS.md: writers use 64 KiB) */
#define STEP_MS 500            /* longest XREAD BLOCK: how soon a local stop is noticed */
#define READ_COUNT 64          /* entries an XREAD */
#define READ_COUNT_S "64"      /* the same, as XREAD takes it */
#define WAIT_MARGIN_MS 2000    /* the open's outcome may come a little after timeout_ms */
#define REDIS_TIMEOUT_MS 10000 /* connect and command timeout (beside BLOCK) */
#define DEFAULT_OPEN_MS 30000  /* timeout_ms of the open */
#define MAX_FORWARD_CONNS 256  /* concurrent streams of one `forward` */
#define XDEL_BATCH 128         /* ids an XDEL */

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

typedef struct pump {
    cli_ctx *c;
    const st_conf *cf;
    const gp_rurl *addr;
    char sid[33];
    char kreq[GP_KEY_MAX], kin[GP_KEY_MAX], kout[GP_KEY_MAX], krep[GP_KEY_MAX];
    int in_fd, out_fd, is_sock;
    int out_sock;   /* out_fd is a socket (send with MSG_DONTWAIT); else writes of PIPE_BUF */
    br_rc *rr, *rw; /* the reader's and the writer's Redis connections */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    gp_stream s;
    int stop;             /* the reader is finishing: the writer leaves */
    int writer_done;      /* the writer left (EOF written, or a failure) */
    int out_closed;       /* our output got the peer's fin (closed / shut for writing) */
    char why[512];        /* the first failure, printed once */
    int exit_code;        /* with why */
    int rst_sent;         /* our rst entry was written */
    gp_stream_marks ents; /* data entries on sin not yet trimmed, in order */
    char last_ack_id[48]; /* our previous ack-only entry (deleted when the next is written) */
    char read_ctl[READ_COUNT][48]; /* the house's ack-only sout entries just read (reader) */
    size_t nread_ctl;
    int wake[2]; /* reader -> writer: stop polling the input */
} pump;

static void pump_fail(pump *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the first failure (mutex held or not: callers hold it). */
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

/* XADD key * fields..., then PEXPIRE key 2 * idle (one round trip). The new entry's id into
 * id_out (may be NULL). 0, or -1 with the failure recorded. */
static int xadd_entry(pump *p, br_rc *rc, const gp_stream_entry *e, char *id_out, size_t idcap) {
    gp_stream_field f[GP_STREAM_FIELDS_MAX];
    char scratch[96];
    int n = gp_stream_entry_build(e, f, scratch, sizeof scratch);
    if (n < 0) {
        pthread_mutex_lock(&p->mu);
        pump_fail(p, ST_FAIL, "internal error: cannot build a stream entry");
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    const char *av[3 + 2 * GP_STREAM_FIELDS_MAX];
    size_t al[3 + 2 * GP_STREAM_FIELDS_MAX];
    int ac = 0;
    av[ac] = "XADD", al[ac++] = 4;
    av[ac] = p->kin, al[ac++] = strlen(p->kin);
    av[ac] = "*", al[ac++] = 1;
    for (int i = 0; i < n; i++) {
        av[ac] = (const char *)f[i].name.p, al[ac++] = f[i].name.len;
        av[ac] = f[i].value.len ? (const char *)f[i].value.p : "", al[ac++] = f[i].value.len;
    }
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", 2ull * p->cf->idle_ms);
    const char *ev[] = {"PEXPIRE", p->kin, ttl};
    br_rc_cmd cmds[2] = {{.argc = ac, .argv = av, .lens = al}, {.argc = 3, .argv = ev}};
    redisReply *out[2] = {0};
    int rv = br_rc_pipeline(rc, 2, cmds, out);
    int ok = rv == 0 && out[0] && out[0]->type == REDIS_REPLY_STRING;
    if (ok && id_out)
        snprintf(id_out, idcap, "%s", out[0]->str);
    if (!ok) {
        pthread_mutex_lock(&p->mu);
        pump_fail(p, ST_FAIL, "XADD %s failed: %s", p->kin, rerr(rc, out[0]));
        pthread_mutex_unlock(&p->mu);
    }
    for (int i = 0; i < 2; i++)
        if (out[i])
            freeReplyObject(out[i]);
    return ok ? 0 : -1;
}

/* XDEL key ids... (best effort: what is not deleted expires with the key). */
static void xdel(br_rc *rc, const char *key, char (*ids)[48], size_t n) {
    if (n == 0)
        return;
    const char *av[2 + XDEL_BATCH];
    av[0] = "XDEL";
    av[1] = key;
    for (size_t i = 0; i < n; i++)
        av[2 + i] = ids[i];
    redisReply *r = br_rc_cmdv(rc, (int)(2 + n), av, NULL);
    if (r)
        freeReplyObject(r);
}

static void rst_entry(pump *p, br_rc *rc, const char *reason, const char *message);

/* Writes our rst (the stream's reset reason) once, with a message. */
static void send_rst(pump *p, br_rc *rc, const char *message) {
    pthread_mutex_lock(&p->mu);
    if (p->rst_sent || p->s.reset == GP_SR_PEER) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->rst_sent = 1;
    gp_stream_reason why = p->s.reset == GP_SR_NONE ? GP_SR_LOCAL : p->s.reset;
    gp_stream_reset(&p->s, why);
    pthread_mutex_unlock(&p->mu);
    rst_entry(p, rc, gp_stream_reason_name(why), message);
}

/* Writes an rst entry with reason (a token of STREAMS.md) and a message on sin. */
static void rst_entry(pump *p, br_rc *rc, const char *reason, const char *message) {
    gp_stream_entry e = {0};
    snprintf(e.rst, sizeof e.rst, "%s", reason);
    char msg[GP_STREAM_MESSAGE_MAX + 1];
    e.message = (gp_str){(const uint8_t *)msg, gp_stream_printable(msg, sizeof msg, message)};
    (void)xadd_entry(p, rc, &e, NULL, 0);
}

/* Resets the stream locally (reason why) and records the failure; the caller then calls
 * send_rst. Mutex held. */
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

static void wake_writer(pump *p) {
    pthread_cond_broadcast(&p->cv);
    ssize_t w = write(p->wake[1], "x", 1);
    (void)w;
}

static int write_ack(pump *p, int flush);

/* Whether a signal ends the stream now (p->mu held). ssh hangs up its ProxyCommand (SIGHUP) as
 * it exits, about when it closes our stdin: after a SIGHUP the stream gets HUP_GRACE_MS to end
 * cleanly (our fin from stdin's EOF, the service's fin usually on its way) before the reset. */
static int interrupted(const pump *p) {
    if (!g_stop || p->s.reset != GP_SR_NONE)
        return g_stop;
    return !(g_stop_sig == SIGHUP && mono_ms() - g_stop_ms < HUP_GRACE_MS);
}

/* Hands n delivered bytes to the output, each byte consumed (acknowledgeable) as it goes.
 * Never blocks for long: while the output is full it keeps the stream alive (keep-alive
 * acks), so a user who stops reading for a while only stops the house at the window. 0, or
 * -1 with errno (EINTR: interrupted by a signal). */
static int write_out(pump *p, const uint8_t *b, size_t n) {
    while (n > 0) {
        pthread_mutex_lock(&p->mu);
        int stop = interrupted(p);
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            errno = EINTR;
            return -1;
        }
        uint64_t now = mono_ms();
        pthread_mutex_lock(&p->mu);
        uint64_t t = p->s.last_ack_ms + p->s.idle_ms / 3;
        pthread_mutex_unlock(&p->mu);
        uint64_t wait = t > now ? t - now : 0;
        if (wait > STEP_MS)
            wait = STEP_MS;
        struct pollfd pf = {.fd = p->out_fd, .events = POLLOUT};
        int pr = poll(&pf, 1, (int)wait);
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr <= 0) {
            if (write_ack(p, 0) != 0) /* a keep-alive when due */
                return -1;
            continue;
        }
        size_t chunk = p->out_sock || n < PIPE_BUF ? n : PIPE_BUF;
        ssize_t w = p->out_sock ? send(p->out_fd, b, chunk, MSG_DONTWAIT | MSG_NOSIGNAL)
                                : write(p->out_fd, b, chunk);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -1;
        }
        pthread_mutex_lock(&p->mu);
        int bad = gp_stream_consumed(&p->s, (uint64_t)w) != 0;
        pthread_mutex_unlock(&p->mu);
        if (bad) {
            errno = EINVAL;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The writer: input -> sin. */
static void *writer_main(void *arg) {
    pump *p = arg;
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        pthread_mutex_lock(&p->mu);
        local_reset(p, GP_SR_LOCAL, "out of memory");
        p->writer_done = 1;
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->s.reset == GP_SR_NONE && gp_stream_can_send(&p->s) == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop || p->s.reset != GP_SR_NONE) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        uint64_t credit = gp_stream_can_send(&p->s);
        pthread_mutex_unlock(&p->mu);
        size_t want = credit < CHUNK ? (size_t)credit : CHUNK;

        struct pollfd pf[2] = {{.fd = p->in_fd, .events = POLLIN},
                               {.fd = p->wake[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "poll: %s", strerror(errno));
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (pf[1].revents)
            break; /* the reader is finishing */
        ssize_t n = read(p->in_fd, buf, want);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            int e = errno;
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "reading %s: %s", p->is_sock ? "the connection" : "stdin",
                        strerror(e));
            pthread_mutex_unlock(&p->mu);
            send_rst(p, p->rw, "the opener's input failed");
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
        pthread_mutex_unlock(&p->mu);
        if (bad)
            break; /* reset meanwhile */
        char id[48];
        if (xadd_entry(p, p->rw, &e, id, sizeof id) != 0)
            break;
        if (n == 0)
            break;
        pthread_mutex_lock(&p->mu);
        int pushed = gp_stream_marks_push(&p->ents, id, strlen(id), e.off + (uint64_t)n, 0);
        pthread_mutex_unlock(&p->mu);
        (void)pushed; /* out of memory: the entry stays until the key expires */
    }
    free(buf);
    pthread_mutex_lock(&p->mu);
    p->writer_done = 1;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

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

/* Applies one sout entry; data goes to the output. 0 on, 1 the stream is reset (recorded). */
static int take_entry(pump *p, const redisReply *ent) {
    gp_stream_field f[GP_STREAM_FIELDS_MAX];
    size_t nf = 0;
    const char *id = NULL;
    char err[160];
    gp_stream_entry e;
    int shape = entry_fields(ent, f, &nf, &id);
    int perr = shape == 0 ? gp_stream_entry_parse(&e, f, nf, err, sizeof err) : 0;
    uint64_t now = mono_ms();
    pthread_mutex_lock(&p->mu);
    if (shape != 0 || perr != 0) {
        if (shape == -1)
            snprintf(err, sizeof err, "an entry of unexpected shape");
        else if (shape == -2)
            snprintf(err, sizeof err, "fields of unexpected shape or too many");
        local_reset(p, GP_SR_MALFORMED, "malformed entry from the house on %s: %s", p->kout, err);
        pthread_mutex_unlock(&p->mu);
        send_rst(p, p->rr, err);
        return 1;
    }
    size_t skip = 0, take = 0;
    int rc = gp_stream_apply(&p->s, now, &e, &skip, &take);
    if (p->s.reset == GP_SR_PEER) {
        char *em = cli_esc_dup((const char *)e.message.p, e.message.len);
        pump_fail(p, ST_FAIL, "stream reset by the house: %s%s%s", p->s.rst_reason,
                  em && *em ? ": " : "", em ? em : "");
        free(em);
        pthread_mutex_unlock(&p->mu);
        return 1;
    }
    if (rc != 0) {
        gp_stream_reason r = p->s.reset;
        local_reset(p, r, "bad entry from the house on %s: %s (entry %s)", p->kout,
                    gp_stream_reason_name(r), id);
        pthread_mutex_unlock(&p->mu);
        char m[96];
        snprintf(m, sizeof m, "the opener refused entry %s: %s", id, gp_stream_reason_name(r));
        send_rst(p, p->rr, m);
        return 1;
    }
    if (e.has_ack || e.has_win)
        pthread_cond_broadcast(&p->cv); /* credit */
    pthread_mutex_unlock(&p->mu);
    if (!e.has_off && p->nread_ctl < READ_COUNT) /* read, it can go (STREAMS.md) */
        memcpy(p->read_ctl[p->nread_ctl++], id, strlen(id) + 1);
    if (take > 0 && write_out(p, e.data.p + skip, take) != 0) {
        int en = errno;
        pthread_mutex_lock(&p->mu);
        if (en == EINTR && g_stop)
            local_reset(p, GP_SR_LOCAL, "interrupted");
        else
            local_reset(p, GP_SR_LOCAL, "writing %s: %s",
                        p->is_sock ? "to the connection" : "stdout", strerror(en));
        pthread_mutex_unlock(&p->mu);
        send_rst(p, p->rr,
                 en == EINTR ? "the opener was interrupted" : "the opener's output closed");
        return 1;
    }
    return 0;
}

/* Writes an ack when gp_stream_ack_due says so (flush: we caught up with sout); deletes our
 * previous ack-only entry, which the new one supersedes. Reader thread only. 0, or -1 when
 * the XADD failed (recorded). */
static int write_ack(pump *p, int flush) {
    uint64_t now = mono_ms(), ack = 0;
    pthread_mutex_lock(&p->mu);
    int due = p->s.reset == GP_SR_NONE && gp_stream_ack_due(&p->s, now, flush, &ack);
    pthread_mutex_unlock(&p->mu);
    if (!due)
        return 0;
    gp_stream_entry e = {.has_ack = 1, .ack = ack};
    char id[48];
    if (xadd_entry(p, p->rr, &e, id, sizeof id) != 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    gp_stream_ack_written(&p->s, now, ack);
    char prev[1][48];
    memcpy(prev[0], p->last_ack_id, sizeof prev[0]);
    snprintf(p->last_ack_id, sizeof p->last_ack_id, "%s", id);
    pthread_mutex_unlock(&p->mu);
    if (prev[0][0])
        xdel(p->rr, p->kin, prev, 1); /* superseded by the new one */
    return 0;
}

/* Closes stdout (its reader sees EOF) and puts /dev/null in its place, so that no socket
 * opened later takes descriptor 1. */
static void release_out(int fd) {
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, fd) < 0)
        close(fd);
    if (nul >= 0 && nul != fd)
        close(nul);
}

/* After a batch of `got` entries: close the output at the peer's fin, trim, ack, tick. 0 on,
 * 1 over. */
static int housekeeping(pump *p, size_t got) {
    int caught_up = got < READ_COUNT;
    uint64_t now = mono_ms();
    char ids[XDEL_BATCH][GP_STREAM_MARK_ID];
    pthread_mutex_lock(&p->mu);
    int close_out = !p->out_closed && p->s.rcv_fin && p->s.rcv_consumed == p->s.rcv_fin_off;
    if (close_out)
        p->out_closed = 1;
    pthread_mutex_unlock(&p->mu);
    if (close_out) {
        if (p->is_sock)
            shutdown(p->out_fd, SHUT_WR);
        else
            release_out(p->out_fd); /* the user's reader sees EOF */
    }
    for (;;) { /* every entry the house's ack covers, XDEL_BATCH a command */
        pthread_mutex_lock(&p->mu);
        size_t ntrim = gp_stream_marks_take(&p->ents, p->s.snd_acked, ids, XDEL_BATCH);
        pthread_mutex_unlock(&p->mu);
        if (ntrim == 0)
            break;
        xdel(p->rr, p->kin, ids, ntrim);
    }
    xdel(p->rr, p->kout, p->read_ctl, p->nread_ctl); /* an idle stream's sout holds nothing */
    p->nread_ctl = 0;
    if (write_ack(p, caught_up) != 0)
        return 1;
    /* The idle clock only when sout had nothing new: after a long write to a full output,
     * the house's keep-alives may be waiting on sout unread. */
    pthread_mutex_lock(&p->mu);
    int idle = got == 0 && gp_stream_tick(&p->s, now);
    if (idle)
        local_reset(p, GP_SR_IDLE, "nothing from the house for %u ms: stream timed out",
                    p->cf->idle_ms);
    int over = p->s.reset != GP_SR_NONE || gp_stream_done(&p->s) || p->why[0];
    pthread_mutex_unlock(&p->mu);
    if (idle)
        send_rst(p, p->rr, "no entry from the house within idle_ms");
    return over;
}

/* The reader: sout -> output, until the stream is over. */
static void reader_loop(pump *p) {
    char last[48] = "0-0";
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = interrupted(p);
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "interrupted");
            pthread_mutex_unlock(&p->mu);
            send_rst(p, p->rr, "the opener was interrupted");
            return;
        }
        uint64_t now = mono_ms();
        pthread_mutex_lock(&p->mu);
        uint64_t t = gp_stream_next_timer(&p->s);
        pthread_mutex_unlock(&p->mu);
        uint64_t block = t > now ? t - now : 1;
        if (block > STEP_MS)
            block = STEP_MS;
        char bs[24];
        snprintf(bs, sizeof bs, "%llu", (unsigned long long)block);
        br_rc_set_timeout(p->rr, (int)block + REDIS_TIMEOUT_MS);
        const char *xv[] = {"XREAD", "COUNT", READ_COUNT_S, "BLOCK", bs, "STREAMS", p->kout, last};
        redisReply *r = br_rc_cmdv(p->rr, 8, xv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            pthread_mutex_lock(&p->mu);
            local_reset(p, GP_SR_LOCAL, "XREAD %s failed: %s", p->kout, rerr(p->rr, r));
            pthread_mutex_unlock(&p->mu);
            if (r)
                freeReplyObject(r);
            send_rst(p, p->rr, "the opener lost Redis");
            return;
        }
        size_t got = 0;
        int over = 0;
        if (r->type == REDIS_REPLY_ARRAY) {
            const redisReply *ents = NULL;
            if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
                r->element[0]->elements == 2 &&
                r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
                ents = r->element[0]->element[1];
            if (!ents) {
                pthread_mutex_lock(&p->mu);
                local_reset(p, GP_SR_LOCAL, "XREAD %s: unexpected reply", p->kout);
                pthread_mutex_unlock(&p->mu);
                over = 1;
            }
            for (size_t i = 0; ents && i < ents->elements && !over; i++) {
                const redisReply *en = ents->element[i];
                if (en->type == REDIS_REPLY_ARRAY && en->elements >= 1 &&
                    en->element[0]->type == REDIS_REPLY_STRING && en->element[0]->len < sizeof last)
                    snprintf(last, sizeof last, "%s", en->element[0]->str);
                got++;
                over = take_entry(p, en);
            }
        }
        freeReplyObject(r);
        if (over)
            return;
        if (housekeeping(p, got))
            return;
    }
}

/* XADDs the open entry and waits for its outcome on the reply key. 0 open; else an exit
 * code with the failure recorded. */
static int open_stream(pump *p) {
    const st_conf *cf = p->cf;
    char win[16], idle[16], tmo[16];
    snprintf(win, sizeof win, "%u", cf->window);
    snprintf(idle, sizeof idle, "%u", cf->idle_ms);
    snprintf(tmo, sizeof tmo, "%u", cf->timeout_ms);
    const char *av[] = {"XADD",    p->kreq, "MAXLEN",     "~",       "10000",     "*",      "kind",
                        "stream",  "id",    p->sid,       "service", cf->service, "window", win,
                        "idle_ms", idle,    "timeout_ms", tmo,       "reply",     p->krep};
    redisReply *r = br_rc_cmdv(p->rr, (int)(sizeof av / sizeof av[0]), av, NULL);
    if (!r || r->type != REDIS_REPLY_STRING) {
        pump_fail(p, ST_REFUSED, "XADD %s failed: %s", p->kreq, rerr(p->rr, r));
        if (r)
            freeReplyObject(r);
        return ST_REFUSED;
    }
    freeReplyObject(r);

    uint64_t deadline = mono_ms() + cf->timeout_ms + WAIT_MARGIN_MS;
    char last[48] = "0-0";
    int status = 0, final = 0;
    char error[64] = "", message[300] = "";
    while (!final) {
        uint64_t now = mono_ms();
        if (now >= deadline || g_stop)
            break;
        uint64_t left = deadline - now;
        if (left > STEP_MS)
            left = STEP_MS;
        char bs[24];
        snprintf(bs, sizeof bs, "%llu", (unsigned long long)left);
        br_rc_set_timeout(p->rr, (int)left + REDIS_TIMEOUT_MS);
        const char *xv[] = {"XREAD", "COUNT", "16", "BLOCK", bs, "STREAMS", p->krep, last};
        r = br_rc_cmdv(p->rr, 8, xv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            pump_fail(p, ST_REFUSED, "XREAD %s failed: %s", p->krep, rerr(p->rr, r));
            if (r)
                freeReplyObject(r);
            return ST_REFUSED;
        }
        const redisReply *ents = NULL;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
            r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
            ents = r->element[0]->element[1];
        for (size_t i = 0; ents && i < ents->elements && !final; i++) {
            const redisReply *en = ents->element[i];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
                en->element[0]->type != REDIS_REPLY_STRING ||
                en->element[1]->type != REDIS_REPLY_ARRAY || en->element[0]->len >= sizeof last)
                continue;
            snprintf(last, sizeof last, "%s", en->element[0]->str);
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
            char *e = NULL;
            long st = vst ? strtol(vst->str, &e, 10) : 0;
            status = vst && e && !*e && st >= 100 && st <= 599 ? (int)st : 0;
            if (verr)
                cli_esc(error, sizeof error, verr->str, verr->len);
            if (vmsg)
                cli_esc(message, sizeof message, vmsg->str, vmsg->len);
            final = vfin && strcmp(vfin->str, "1") == 0;
            if (!final && status == 200)
                final = 1; /* an outcome is one entry; take a 200 as it is */
        }
        freeReplyObject(r);
    }
    const char *dv[] = {"DEL", p->krep};
    r = br_rc_cmdv(p->rr, 2, dv, NULL);
    if (r)
        freeReplyObject(r);
    if (!final) {
        /* Should the house open it after all (its bridge delivers the open late), the rst
         * already waiting on sin closes it at once rather than after idle_ms. */
        if (g_stop) {
            pump_fail(p, ST_FAIL, "interrupted while opening");
            rst_entry(p, p->rr, "closed", "the opener was interrupted while opening");
            return ST_FAIL;
        }
        pump_fail(p, ST_NOANSWER,
                  "no answer to the open of %s on house %s within %u ms (is the house "
                  "connected? see `ghostport house list`)",
                  p->cf->service, p->cf->house, p->cf->timeout_ms + WAIT_MARGIN_MS);
        rst_entry(p, p->rr, "timeout", "the opener gave up waiting for the outcome of the open");
        return ST_NOANSWER;
    }
    if (status == 200 && !error[0])
        return 0;
    pump_fail(p, ST_REFUSED, "open of %s on house %s refused: %d %s%s%s", cf->service, cf->house,
              status, error[0] ? error : "error", message[0] ? ": " : "", message);
    return ST_REFUSED;
}

static void make_sid(char out[33]) {
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static br_rc *dial(pump *p) {
    char err[512];
    br_rc *rc = gp_reg_connect(p->addr, REDIS_TIMEOUT_MS, err, sizeof err, NULL);
    if (!rc)
        pump_fail(p, ST_REFUSED, "%s", err);
    return rc;
}

/* One stream over in_fd/out_fd, from the open to its end. Returns the exit code; the failure,
 * if any, in p->why. */
static int run_stream(pump *p) {
    make_sid(p->sid);
    const st_conf *cf = p->cf;
    if (gp_key_req(p->kreq, p->c->prefix, cf->house) < 0 ||
        gp_key_reply(p->krep, p->c->prefix, p->sid) < 0 ||
        snprintf(p->kin, sizeof p->kin, "%s:{%s}:sin:%s", p->c->prefix, cf->house, p->sid) >=
            (int)sizeof p->kin ||
        snprintf(p->kout, sizeof p->kout, "%s:{%s}:sout:%s", p->c->prefix, cf->house, p->sid) >=
            (int)sizeof p->kout) {
        pump_fail(p, ST_REFUSED, "key too long");
        return ST_REFUSED;
    }
    if (!(p->rr = dial(p)))
        return ST_REFUSED;
    int rv = open_stream(p);
    if (rv != 0)
        return rv;
    if (!(p->rw = dial(p))) {
        rst_entry(p, p->rr, "closed", "the opener could not make its second Redis connection");
        return ST_FAIL;
    }
    if (gp_stream_init(&p->s, mono_ms(), cf->window, cf->idle_ms) != 0) {
        pump_fail(p, ST_FAIL, "bad window or idle");
        return ST_FAIL;
    }
    pthread_t wt;
    if (pthread_create(&wt, NULL, writer_main, p) != 0) {
        pump_fail(p, ST_FAIL, "cannot start a thread");
        send_rst(p, p->rr, "the opener failed");
        return ST_FAIL;
    }
    reader_loop(p);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    wake_writer(p);
    pthread_join(wt, NULL);
    pthread_mutex_lock(&p->mu);
    int done = gp_stream_done(&p->s) && !p->why[0]; /* the writer's last XADD included */
    pthread_mutex_unlock(&p->mu);
    if (!done) {
        /* A failure of the writer after the reader stopped: tell the house too. */
        send_rst(p, p->rr, "the opener stopped");
        pthread_mutex_lock(&p->mu);
        pump_fail(p, ST_FAIL, "stream ended: %s", gp_stream_reason_name(p->s.reset));
        pthread_mutex_unlock(&p->mu);
        return p->exit_code ? p->exit_code : ST_FAIL;
    }
    return ST_DONE;
}

static int pump_init(pump *p, cli_ctx *c, const st_conf *cf, const gp_rurl *u, int in_fd,
                     int out_fd, int is_sock) {
    memset(p, 0, sizeof *p);
    p->c = c;
    p->cf = cf;
    p->addr = u;
    p->in_fd = in_fd;
    p->out_fd = out_fd;
    p->is_sock = is_sock;
    struct stat st;
    p->out_sock = is_sock || (fstat(out_fd, &st) == 0 && S_ISSOCK(st.st_mode));
    if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return 0;
}

static void pump_free(pump *p) {
    br_rc_free(p->rr);
    br_rc_free(p->rw);
    close(p->wake[0]);
    close(p->wake[1]);
    gp_stream_marks_free(&p->ents);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

static void install_signals(void) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A note when the house is not registered or offline; an error only when it is unknown.
 * A user whose ACL may not read the registry (a producer) skips the check. */
static int check_house(cli_ctx *c, const gp_rurl *u, const st_conf *cf) {
    char err[512];
    br_rc *rc = gp_reg_connect(u, REDIS_TIMEOUT_MS, err, sizeof err, NULL);
    if (!rc) {
        cli_err(c, "%s", err);
        return CLI_USAGE;
    }
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
    br_rc_free(rc);
    return rv;
}

/* --- connect ---------------------------------------------------------------------------- */

/* What connect and forward do first: their arguments, the Redis address, the house's check. */
static int prepare(cli_ctx *c, const char *cmd, int argc, char **argv, int want, const char **pos,
                   st_conf *cf, gp_rurl *u) {
    int rv = parse_args(c, cmd, argc, argv, want, pos, cf);
    if (rv != 0)
        return rv;
    if (cli_redis_addr(c, u) != 0)
        return CLI_USAGE;
    if ((rv = check_house(c, u, cf)) != 0)
        gp_rurl_wipe(u);
    return rv;
}

int cli_connect_cmd(cli_ctx *c, int argc, char **argv) {
    const char *pos[2];
    st_conf cf;
    gp_rurl u;
    int rv = prepare(c, "connect", argc, argv, 2, pos, &cf, &u);
    if (rv != 0)
        return rv;
    install_signals();
    pump p;
    if (pump_init(&p, c, &cf, &u, STDIN_FILENO, STDOUT_FILENO, 0) != 0) {
        gp_rurl_wipe(&u);
        cli_err(c, "pipe: %s", strerror(errno));
        return CLI_FAIL;
    }
    rv = run_stream(&p);
    if (rv != 0 && p.why[0])
        cli_err(c, "%s", p.why);
    pump_free(&p);
    gp_rurl_wipe(&u);
    return rv;
}

/* --- forward ---------------------------------------------------------------------------- */

typedef struct fwd {
    cli_ctx *c;
    const st_conf *cf;
    const gp_rurl *u;
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
    pump p;
    if (pump_init(&p, f->c, f->cf, f->u, fc->fd, fc->fd, 1) == 0) {
        int rv = run_stream(&p);
        if (rv != 0) {
            /* A reset: the client sees one too. */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fc->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            flockfile(stderr); /* one line, whatever the other streams print */
            cli_err(f->c, "%s: stream %s: %s", fc->peer, p.sid, p.why[0] ? p.why : "failed");
            funlockfile(stderr);
        } else if (!f->cf->quiet) {
            fprintf(stderr, "%s: %s: stream %s closed\n", f->c->prog, fc->peer, p.sid);
        }
        pump_free(&p);
    } else {
        cli_err(f->c, "%s: pipe: %s; connection closed", fc->peer, strerror(errno));
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
    int rv = prepare(c, "forward", argc, argv, 3, pos, &cf, &u);
    if (rv != 0)
        return rv;
    char shown[128] = "?";
    int lfd = listen_on(c, pos[0], shown, sizeof shown);
    if (lfd < 0) {
        gp_rurl_wipe(&u);
        return CLI_USAGE;
    }
    if (pipe2(g_stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        cli_err(c, "pipe: %s", strerror(errno));
        close(lfd);
        gp_rurl_wipe(&u);
        return CLI_FAIL;
    }
    install_signals();
    printf("listening on %s -> house %s service %s\n", shown, cf.house, cf.service);
    fflush(stdout);

    fwd f = {.c = c, .cf = &cf, .u = &u};
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
        int full = f.active >= MAX_FORWARD_CONNS;
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
    /* Every stream notices the stop within STEP_MS and resets; wait for them (bounded). */
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
        _exit(CLI_FAIL); /* threads still use f and u */
    }
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
    gp_rurl_wipe(&u);
    return CLI_OK;
}
