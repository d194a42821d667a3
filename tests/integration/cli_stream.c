/* cli_stream.c — `ghostport connect` and `ghostport forward` against a real Redis and, in
 * the test, a minimal PEER of the stream contract (proto/STREAMS.md) playing house and
 * bridge at once: a thread with its own Redis client that reads the open entry from the
 * house's request stream, writes the outcome on the reply key, then reads `sin` and writes
 * `sout` with proto/stream.[ch] (an echo, a slow sink, a banner then fin, a reset, a
 * malformed entry). The CLI is the real binary, its stdin/stdout on pipes. */
#include "../../bridge/store/rclient.h"
#include "../harness/harness.h"
#include "stream.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(cli_stream, .init = h_init, .fini = h_fini, .timeout = 120);

#define HOUSE "farm-1"
#define PEER_DEADLINE_MS 60000
#define PEER_STREAMS 24

/* --- the peer ---------------------------------------------------------------------------- */

typedef enum {
    P_ECHO,      /* every byte back, fin after the opener's fin */
    P_SLOW_SINK, /* consumes, acks at most every 30 ms (the opener's window checked on Redis),
                    fin after the opener's fin */
    P_BANNER,    /* sends a banner and fin at once, then consumes until the opener's fin */
    P_RST,       /* resets (refused) at the first byte */
    P_MALFORMED, /* writes an entry the contract forbids at the first byte */
    P_REFUSE,    /* answers the open 403 forbidden_service */
    P_SILENT,    /* answers the open 200, then reads sin and never writes again */
    P_FLOOD,     /* sends FLOOD_N bytes (the peer's flood_n if set) of flood_byte(i) as fast as
                    the credit allows, then fin */
} peer_mode;

#define FLOOD_N (768u << 10)
static uint8_t flood_byte(uint64_t i) {
    return (uint8_t)(i * 7 + i / 251);
}

#define BANNER "SSH-2.0-ghostport-test-peer\r\n"

typedef struct peer_stream {
    struct peer *pr;
    pthread_t t;
    peer_mode mode; /* the peer's, or its per_stream one */
    char sid[GP_STREAM_ID_MAX + 1];
    char service[GP_STREAM_ID_MAX + 1];
    uint32_t window, idle_ms;
    /* results, read after the join */
    int fin_seen, done;
    char rst[GP_STREAM_REASON_MAX + 1]; /* the opener's rst reason, if any */
    char err[256];                      /* the peer's own complaint */
    uint64_t received;
    atomic_int acks_seen; /* entries from the opener with ack and nothing else */
    atomic_int at_window; /* P_FLOOD: stopped by the opener's window, bytes left to send */
    _Atomic uint64_t flood_sent, flood_acked;
    uint64_t max_unacked; /* most sin data bytes at or above our last ack, seen on Redis */
    char sha[65];         /* of the bytes received */
} peer_stream;

typedef struct peer {
    peer_mode mode;
    int want; /* opens to serve */
    /* P_MALFORMED: the entry written (pairs), default off 12x data zz */
    const char *bad[8];
    size_t bad_lens[8];
    int nbad;
    pthread_t t;
    atomic_int stop;
    int nopen;
    char from[64]; /* the request stream's last entry when started: opens after it count */
    peer_mode per_stream[PEER_STREAMS]; /* the mode of the i-th open (0, P_ECHO: mode's) */
    uint64_t flood_n;                   /* P_FLOOD's bytes, 0: FLOOD_N */
    peer_stream st[PEER_STREAMS];
    char err[256];
} peer;

static uint64_t now_ms(void) {
    return h_now_ms();
}

/* Fields of an XREAD entry as gp_stream_fields; 0 or -1. */
static int fields_of(const redisReply *en, gp_stream_field *f, size_t *n) {
    if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
        en->element[1]->type != REDIS_REPLY_ARRAY || en->element[1]->elements % 2 ||
        en->element[1]->elements / 2 > GP_STREAM_FIELDS_MAX)
        return -1;
    const redisReply *fv = en->element[1];
    *n = fv->elements / 2;
    for (size_t i = 0; i < *n; i++) {
        f[i].name = (gp_str){(const uint8_t *)fv->element[2 * i]->str, fv->element[2 * i]->len};
        f[i].value =
            (gp_str){(const uint8_t *)fv->element[2 * i + 1]->str, fv->element[2 * i + 1]->len};
    }
    return 0;
}

/* XADD key * with raw field/value pairs (n pairs). */
static int xadd_raw(struct br_rc *rc, const char *key, const char *const *fv, const size_t *lens,
                    int n) {
    const char *av[3 + 2 * GP_STREAM_FIELDS_MAX];
    size_t al[3 + 2 * GP_STREAM_FIELDS_MAX];
    av[0] = "XADD", al[0] = 4;
    av[1] = key, al[1] = strlen(key);
    av[2] = "*", al[2] = 1;
    for (int i = 0; i < 2 * n; i++) {
        av[3 + i] = fv[i];
        al[3 + i] = lens ? lens[i] : strlen(fv[i]);
    }
    redisReply *r = br_rc_cmdv(rc, 3 + 2 * n, av, al);
    int ok = r && r->type == REDIS_REPLY_STRING;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static int xadd_entry(struct br_rc *rc, const char *key, const gp_stream_entry *e) {
    gp_stream_field f[GP_STREAM_FIELDS_MAX];
    char scratch[96];
    int n = gp_stream_entry_build(e, f, scratch, sizeof scratch);
    if (n < 0)
        return -1;
    const char *fv[2 * GP_STREAM_FIELDS_MAX];
    size_t lens[2 * GP_STREAM_FIELDS_MAX];
    for (int i = 0; i < n; i++) {
        fv[2 * i] = (const char *)f[i].name.p, lens[2 * i] = f[i].name.len;
        fv[2 * i + 1] = f[i].value.len ? (const char *)f[i].value.p : "";
        lens[2 * i + 1] = f[i].value.len;
    }
    return xadd_raw(rc, key, fv, lens, n);
}

/* Bytes of sin's data at offsets >= acked, as Redis holds them now (the opener's window). */
static uint64_t sin_unacked(struct br_rc *rc, const char *kin, uint64_t acked) {
    const char *av[] = {"XRANGE", kin, "-", "+"};
    redisReply *r = br_rc_cmdv(rc, 4, av, NULL);
    uint64_t total = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        gp_stream_field f[GP_STREAM_FIELDS_MAX];
        size_t n;
        gp_stream_entry e;
        if (fields_of(r->element[i], f, &n) != 0 || gp_stream_entry_parse(&e, f, n, NULL, 0) != 0)
            continue;
        if (!e.has_off)
            continue;
        uint64_t end = e.off + e.data.len, from = e.off > acked ? e.off : acked;
        if (end > from)
            total += end - from;
    }
    if (r)
        freeReplyObject(r);
    return total;
}

static void *peer_stream_main(void *arg) {
    peer_stream *ps = arg;
    peer *pr = ps->pr;
    struct br_rc *rc = h_redis_client(h_redis_port(), 10000);
    char kin[300], kout[300];
    snprintf(kin, sizeof kin, "gp:{%s}:sin:%s", HOUSE, ps->sid);
    snprintf(kout, sizeof kout, "gp:{%s}:sout:%s", HOUSE, ps->sid);
    gp_stream s;
    if (gp_stream_init(&s, now_ms(), ps->window, ps->idle_ms) != 0) {
        snprintf(ps->err, sizeof ps->err, "bad window/idle in the open");
        br_rc_free(rc);
        return NULL;
    }
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    uint8_t *pending = malloc(ps->window); /* echo: received, not yet sent back (< window) */
    size_t npending = 0;
    char last[64] = "0-0";
    uint64_t deadline = now_ms() + PEER_DEADLINE_MS, last_slow_ack = 0;
    uint64_t flood_n = pr->flood_n ? pr->flood_n : FLOOD_N;

    if (ps->mode == P_BANNER) {
        gp_stream_entry e = {
            .has_off = 1, .off = 0, .fin = 1, .data = {(const uint8_t *)BANNER, sizeof BANNER - 1}};
        if (gp_stream_sent(&s, now_ms(), sizeof BANNER - 1) != 0 || gp_stream_close(&s) != 0)
            snprintf(ps->err, sizeof ps->err, "banner: state");
        gp_stream_fin_written(&s, now_ms());
        if (xadd_entry(rc, kout, &e) != 0)
            snprintf(ps->err, sizeof ps->err, "banner: XADD failed");
    }
    while (!ps->err[0] && !atomic_load(&pr->stop) && now_ms() < deadline) {
        while (ps->mode == P_FLOOD && s.snd_next < flood_n && gp_stream_can_send(&s) > 0) {
            uint8_t chunk[65536];
            uint64_t cs = gp_stream_can_send(&s), left = flood_n - s.snd_next;
            size_t n = (size_t)(cs < left ? cs : left);
            if (n > sizeof chunk)
                n = sizeof chunk;
            for (size_t i = 0; i < n; i++)
                chunk[i] = flood_byte(s.snd_next + i);
            gp_stream_entry e = {.has_off = 1, .off = s.snd_next, .data = {chunk, n}};
            e.fin = s.snd_next + n == flood_n;
            if (gp_stream_sent(&s, now_ms(), n) != 0 || (e.fin && gp_stream_close(&s) != 0) ||
                xadd_entry(rc, kout, &e) != 0) {
                snprintf(ps->err, sizeof ps->err, "flood: XADD sout failed");
                break;
            }
            if (e.fin)
                gp_stream_fin_written(&s, now_ms());
        }
        if (ps->mode == P_FLOOD) {
            atomic_store(&ps->at_window, s.snd_next < flood_n && gp_stream_can_send(&s) == 0);
            atomic_store(&ps->flood_sent, s.snd_next);
            atomic_store(&ps->flood_acked, s.snd_acked);
        }
        const char *xv[] = {"XREAD", "COUNT", "64", "BLOCK", "30", "STREAMS", kin, last};
        redisReply *r = br_rc_cmdv(rc, 8, xv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(ps->err, sizeof ps->err, "XREAD sin: %s", r ? r->str : br_rc_error(rc));
            if (r)
                freeReplyObject(r);
            break;
        }
        size_t got = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *ents = r->element[0]->element[1];
            for (size_t i = 0; i < ents->elements && !ps->err[0]; i++, got++) {
                const redisReply *en = ents->element[i];
                snprintf(last, sizeof last, "%s", en->element[0]->str);
                gp_stream_field f[GP_STREAM_FIELDS_MAX];
                size_t n;
                gp_stream_entry e;
                char perr[128];
                if (fields_of(en, f, &n) != 0 ||
                    gp_stream_entry_parse(&e, f, n, perr, sizeof perr) != 0) {
                    snprintf(ps->err, sizeof ps->err, "malformed sin entry: %s", perr);
                    break;
                }
                if (e.has_ack && !e.has_off && !e.rst[0])
                    atomic_fetch_add(&ps->acks_seen, 1);
                size_t skip, take;
                int rv = gp_stream_apply(&s, now_ms(), &e, &skip, &take);
                if (s.reset == GP_SR_PEER) {
                    snprintf(ps->rst, sizeof ps->rst, "%s", s.rst_reason);
                    break;
                }
                if (rv != 0) {
                    snprintf(ps->err, sizeof ps->err, "sin entry refused: %s",
                             gp_stream_reason_name(s.reset));
                    break;
                }
                if (take == 0)
                    continue;
                const uint8_t *d = e.data.p + skip;
                crypto_hash_sha256_update(&hs, d, take);
                ps->received += take;
                if (ps->mode == P_ECHO) {
                    memcpy(pending + npending, d, take); /* bounded by the window */
                    npending += take;
                } else if (gp_stream_consumed(&s, take) != 0) {
                    snprintf(ps->err, sizeof ps->err, "consumed");
                }
                if (ps->mode == P_RST) {
                    gp_stream_entry x = {.rst = "refused",
                                         .message = GP_STR_LIT("connection reset by the service")};
                    xadd_entry(rc, kout, &x);
                    snprintf(ps->rst, sizeof ps->rst, "(we reset)");
                    break;
                }
                if (ps->mode == P_MALFORMED) {
                    const char *fv[] = {"off", "12x", "data", "zz"};
                    if (pr->nbad)
                        xadd_raw(rc, kout, pr->bad, pr->bad_lens, pr->nbad);
                    else
                        xadd_raw(rc, kout, fv, NULL, 2);
                    ps->mode = P_ECHO; /* then wait for the opener's rst */
                }
            }
        }
        freeReplyObject(r);
        if (ps->err[0] || ps->rst[0])
            break;
        uint64_t now = now_ms();
        if (s.rcv_fin && s.rcv_next == s.rcv_fin_off)
            ps->fin_seen = 1;
        if (ps->mode == P_SILENT)
            continue; /* until stopped: no ack, no keep-alive */
        if (ps->mode == P_SLOW_SINK) {
            uint64_t u = sin_unacked(rc, kin, s.rcv_acked);
            if (u > ps->max_unacked)
                ps->max_unacked = u;
        }
        /* echo: send back what the credit allows; those bytes are then consumed */
        while (ps->mode == P_ECHO && npending > 0 && gp_stream_can_send(&s) > 0) {
            uint64_t cs = gp_stream_can_send(&s);
            size_t n = npending < cs ? npending : (size_t)cs;
            if (n > 65536)
                n = 65536;
            gp_stream_entry e = {.has_off = 1, .off = s.snd_next, .data = {pending, n}};
            if (gp_stream_sent(&s, now, n) != 0 || xadd_entry(rc, kout, &e) != 0 ||
                gp_stream_consumed(&s, n) != 0) {
                snprintf(ps->err, sizeof ps->err, "echo: XADD sout failed");
                break;
            }
            memmove(pending, pending + n, npending - n);
            npending -= n;
        }
        if ((ps->mode == P_ECHO || ps->mode == P_SLOW_SINK) && ps->fin_seen && npending == 0 &&
            !s.snd_fin) {
            gp_stream_entry e = {.has_off = 1, .off = s.snd_next, .fin = 1};
            if (gp_stream_close(&s) == 0) {
                gp_stream_fin_written(&s, now);
                xadd_entry(rc, kout, &e);
            }
        }
        uint64_t ack;
        int slow = ps->mode == P_SLOW_SINK;
        if (slow && now - last_slow_ack < 30 && !ps->fin_seen)
            continue;
        if (gp_stream_ack_due(&s, now, slow || got < 64, &ack)) {
            gp_stream_entry e = {.has_ack = 1, .ack = ack};
            if (xadd_entry(rc, kout, &e) != 0) {
                snprintf(ps->err, sizeof ps->err, "ack: XADD sout failed");
                break;
            }
            gp_stream_ack_written(&s, now, ack);
            last_slow_ack = now;
        }
        if (gp_stream_done(&s)) {
            ps->done = 1;
            break;
        }
        if (gp_stream_tick(&s, now)) {
            snprintf(ps->err, sizeof ps->err, "idle");
            break;
        }
    }
    if (!ps->done && !ps->err[0] && !ps->rst[0])
        snprintf(ps->err, sizeof ps->err, "stopped before the stream was over");
    if (ps->err[0]) { /* as a house would: the opener learns it at once */
        gp_stream_entry x = {.message = {(const uint8_t *)"test peer gave up", 17}};
        snprintf(x.rst, sizeof x.rst, "%s",
                 s.reset != GP_SR_NONE && s.reset != GP_SR_PEER ? gp_stream_reason_name(s.reset)
                                                                : "closed");
        xadd_entry(rc, kout, &x);
    }
    uint8_t d[32];
    crypto_hash_sha256_final(&hs, d);
    for (int i = 0; i < 32; i++)
        snprintf(ps->sha + 2 * i, 3, "%02x", d[i]);
    free(pending);
    br_rc_free(rc);
    return NULL;
}

/* Reads the house's request stream; answers each stream open as its mode says. */
static void *peer_main(void *arg) {
    peer *pr = arg;
    struct br_rc *rc = h_redis_client(h_redis_port(), 10000);
    char kreq[300], last[64];
    snprintf(kreq, sizeof kreq, "gp:{%s}:req", HOUSE);
    snprintf(last, sizeof last, "%s", pr->from);
    uint64_t deadline = now_ms() + PEER_DEADLINE_MS;
    while (pr->nopen < pr->want && !atomic_load(&pr->stop) && now_ms() < deadline) {
        const char *xv[] = {"XREAD", "COUNT", "16", "BLOCK", "50", "STREAMS", kreq, last};
        redisReply *r = br_rc_cmdv(rc, 8, xv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(pr->err, sizeof pr->err, "XREAD req failed");
            if (r)
                freeReplyObject(r);
            break;
        }
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                           i < r->element[0]->element[1]->elements && pr->nopen < pr->want;
             i++) {
            const redisReply *en = r->element[0]->element[1]->element[i];
            snprintf(last, sizeof last, "%s", en->element[0]->str);
            gp_stream_field f[GP_STREAM_FIELDS_MAX];
            size_t n;
            gp_stream_open o;
            char perr[128];
            if (fields_of(en, f, &n) != 0 || gp_stream_open_parse(&o, f, n, perr, sizeof perr)) {
                snprintf(pr->err, sizeof pr->err, "bad open entry: %s", perr);
                continue;
            }
            peer_stream *ps = &pr->st[pr->nopen];
            ps->pr = pr;
            ps->mode = pr->per_stream[pr->nopen] ? pr->per_stream[pr->nopen] : pr->mode;
            pr->nopen++;
            snprintf(ps->sid, sizeof ps->sid, "%.*s", (int)o.id.len, (const char *)o.id.p);
            snprintf(ps->service, sizeof ps->service, "%.*s", (int)o.service.len,
                     (const char *)o.service.p);
            ps->window = o.window;
            ps->idle_ms = o.idle_ms;
            char reply[300];
            if (o.has_reply)
                snprintf(reply, sizeof reply, "%.*s", (int)o.reply.len, (const char *)o.reply.p);
            else
                snprintf(reply, sizeof reply, "gp:rep:%s", ps->sid);
            if (ps->mode == P_REFUSE) {
                const char *fv[] = {
                    "id",      ps->sid,
                    "status",  "403",
                    "final",   "1",
                    "kind",    "stream",
                    "error",   "forbidden_service",
                    "message", "service nope is not one of the house's tcp services"};
                xadd_raw(rc, reply, fv, NULL, 6);
                char kout[300];
                snprintf(kout, sizeof kout, "gp:{%s}:sout:%s", HOUSE, ps->sid);
                gp_stream_entry x = {.rst = "forbidden_service"};
                xadd_entry(rc, kout, &x);
                snprintf(ps->rst, sizeof ps->rst, "(refused)");
                continue;
            }
            const char *fv[] = {"id", ps->sid, "status", "200", "final", "1", "kind", "stream"};
            xadd_raw(rc, reply, fv, NULL, 4);
            pthread_create(&ps->t, NULL, peer_stream_main, ps);
        }
        freeReplyObject(r);
    }
    for (int i = 0; i < pr->nopen; i++)
        if (pr->st[i].mode != P_REFUSE)
            pthread_join(pr->st[i].t, NULL);
    br_rc_free(rc);
    return NULL;
}

/* A peer serving `want` opens in `mode`, but the first one in `first`; P_FLOOD sends flood_n
 * bytes (0: FLOOD_N). */
static void peer_start_first(peer *pr, peer_mode mode, peer_mode first, int want,
                             uint64_t flood_n) {
    memset(pr, 0, sizeof *pr);
    pr->mode = mode;
    pr->per_stream[0] = first;
    pr->flood_n = flood_n;
    pr->want = want;
    snprintf(pr->from, sizeof pr->from, "0-0");
    redisReply *x = h_cmd("XREVRANGE gp:{%s}:req + - COUNT 1", HOUSE);
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 1)
        snprintf(pr->from, sizeof pr->from, "%s", x->element[0]->element[0]->str);
    freeReplyObject(x);
    cr_assert_eq(pthread_create(&pr->t, NULL, peer_main, pr), 0);
}

static void peer_start(peer *pr, peer_mode mode, int want) {
    peer_start_first(pr, mode, mode, want, 0);
}

/* Joins the peer (it ends by itself once its streams are over, bounded by its deadline). */
static void peer_join(peer *pr) {
    pthread_join(pr->t, NULL);
    cr_assert_eq(pr->err[0], '\0', "peer: %s", pr->err);
}

/* --- the CLI on pipes -------------------------------------------------------------------- */

typedef struct cli_run {
    pid_t pid;
    int in, out; /* our ends: its stdin, its stdout */
    char errpath[600];
    int code; /* exit code once reaped, or -1 */
} cli_run;

static void cli_start(cli_run *r, const char *const *args) {
    const char *argv[40] = {h_bin("ghostport"), "--redis", h_redis_url()};
    int n = 3;
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    static int seq;
    snprintf(r->errpath, sizeof r->errpath, "%s/connect%d.err", h_dir(), seq++);
    int pin[2], pout[2];
    cr_assert(pipe(pin) == 0 && pipe(pout) == 0);
    int e = open(r->errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(e, 0, "open %s: %s", r->errpath, strerror(errno));
    pid_t pid = h_fork_exec((char *const *)argv, pin[0], pout[1], e, NULL);
    cr_assert(pid >= 0);
    close(e);
    close(pin[0]);
    close(pout[1]);
    r->pid = pid;
    r->in = pin[1];
    r->out = pout[0];
    r->code = -1;
}

/* Waits for its exit, at most timeout_ms (then SIGKILL): the exit code, or -1 on timeout. */
static int cli_wait(cli_run *r, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int st;
    for (;;) {
        pid_t w = waitpid(r->pid, &st, WNOHANG);
        if (w == r->pid) {
            r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return r->code;
        }
        if (h_now_ms() > end) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            return -1;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int cli_running(cli_run *r) {
    int st;
    return waitpid(r->pid, &st, WNOHANG) == 0;
}

static char *cli_stderr(cli_run *r) {
    char *s = h_read_file(r->errpath, NULL);
    return s ? s : strdup("");
}

static void cli_close(cli_run *r) {
    if (r->in >= 0)
        close(r->in);
    if (r->out >= 0)
        close(r->out);
    r->in = r->out = -1;
}

/* Writes a buffer into an fd (a thread, while the test reads the other end), then closes it. */
typedef struct feeder {
    pthread_t t;
    int fd, is_sock;
    const uint8_t *p;
    size_t len;
    int failed;
} feeder;

static void *feed_main(void *arg) {
    feeder *f = arg;
    size_t off = 0;
    while (off < f->len) {
        size_t n = f->len - off < 4096 * 7 ? f->len - off : 4096 * 7; /* odd-sized writes */
        ssize_t w =
            f->is_sock ? send(f->fd, f->p + off, n, MSG_NOSIGNAL) : write(f->fd, f->p + off, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            f->failed = 1;
            break;
        }
        off += (size_t)w;
    }
    if (f->is_sock)
        shutdown(f->fd, SHUT_WR);
    else
        close(f->fd);
    return NULL;
}

/* Reads fd until EOF, at most timeout_ms: a malloc'd buffer and its length (-1: timeout). */
static uint8_t *read_all(int fd, size_t cap, long *len, int timeout_ms) {
    uint8_t *b = malloc(cap ? cap : 1);
    size_t n = 0;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    *len = -1;
    for (;;) {
        uint64_t now = h_now_ms();
        if (now >= end)
            return b;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, (int)(end - now));
        if (pr <= 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            b = realloc(b, cap);
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    *len = (long)n;
    return b;
}

static uint8_t *random_bytes(size_t n) {
    uint8_t *b = malloc(n);
    randombytes_buf(b, n);
    return b;
}

static void sha_hex(const uint8_t *p, size_t n, char out[65]) {
    h_sha256_hex(p, n, out);
}

/* Data bytes left on a stream's sin (the opener trims what the house acknowledged). */
static long sin_data_left(const char *sid) {
    char kin[300];
    snprintf(kin, sizeof kin, "gp:{%s}:sin:%s", HOUSE, sid);
    struct br_rc *rc = h_redis_client(h_redis_port(), 5000);
    long v = (long)sin_unacked(rc, kin, 0);
    br_rc_free(rc);
    return v;
}

/* Feeds n bytes of data to r's stdin (a thread) while reading its stdout until EOF (60 s at
 * most, room for cap bytes to begin with): *back and *got as read_all's; then waits for its exit
 * (20 s at most), r->in closed by the feeder. Returns the exit code (-1: timeout). */
static int cli_pump(cli_run *r, const uint8_t *data, size_t n, size_t cap, uint8_t **back,
                    long *got) {
    feeder f = {.fd = r->in, .p = data, .len = n};
    pthread_create(&f.t, NULL, feed_main, &f);
    *back = read_all(r->out, cap, got, 60000);
    int code = cli_wait(r, 20000);
    pthread_join(f.t, NULL); /* the CLI is gone by now: the feeder's writes fail */
    r->in = -1;
    return code;
}

/* Waits for r's exit (timeout_ms at most) and fails the test unless its code is `want`; returns
 * its stderr (malloc'd). what: a prefix of the failure's message ("" for none). */
static char *cli_expect_exit(cli_run *r, int timeout_ms, int want, const char *what) {
    int code = cli_wait(r, timeout_ms);
    char *err = cli_stderr(r);
    cr_assert_eq(code, want, "%sexit %d; stderr: %s", what, code, err);
    return err;
}

/* Closes r's stdin and fails the test unless the CLI then exits 0 within timeout_ms and the
 * peer's stream is done; the peer is joined and r closed. */
static void connect_ends_at_eof(cli_run *r, peer *pr, int timeout_ms) {
    close(r->in);
    r->in = -1;
    free(cli_expect_exit(r, timeout_ms, 0, ""));
    peer_join(pr);
    cr_assert(pr->st[0].done, "peer: %s", pr->st[0].err);
    cli_close(r);
}

/* `ghostport forward spec HOUSE ssh [extra...]`, failing the test unless it says it listens
 * on port. */
static h_proc *forward_start_with(const char *spec, int port, const char *const *extra) {
    const char *argv[24] = {
        h_bin("ghostport"), "--redis", h_redis_url(), "forward", spec, HOUSE, "ssh"};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 23; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    h_proc *fw = h_spawn("forward", (char *const *)argv);
    char line[64];
    snprintf(line, sizeof line, "listening on 127.0.0.1:%d", port);
    cr_assert(h_wait_log(fw, line, 10000), "no '%s' line", line);
    return fw;
}

static h_proc *forward_start(const char *spec, int port) {
    return forward_start_with(spec, port, NULL);
}
/* ghostport forward on a free port of 127.0.0.1 (its number in *port), listening. */
static h_proc *forward_local(int *port, const char *const *extra) {
    *port = h_free_port();
    char spec[32];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", *port);
    return forward_start_with(spec, *port, extra);
}

/* Stops a peer that would wait on (a stream the CLI reset, or a silent one) and joins it. */
static void peer_stop(peer *pr) {
    atomic_store(&pr->stop, 1);
    pthread_join(pr->t, NULL);
}

static void setup(void) {
    char secret[65];
    signal(SIGPIPE, SIG_IGN); /* a CLI that died must fail a write, not the test */
    h_redis_start(0);
    h_register(HOUSE, secret);
}

/* setup(), a peer of `mode` serving one open, and the CLI started with args. */
static void connect_start(peer *pr, peer_mode mode, cli_run *r, const char *const *args) {
    setup();
    peer_start(pr, mode, 1);
    cli_start(r, args);
}

/* connect_start with `connect HOUSE ssh -q`. */
static void connect_ssh(peer *pr, peer_mode mode, cli_run *r) {
    connect_start(pr, mode, r, (const char *const[]){"connect", HOUSE, "ssh", "-q", NULL});
}

/* connect_ssh to a peer of `mode` that resets the stream once a byte comes: the CLI exits 1;
 * its stderr. */
static char *reset_after_a_byte(peer *pr, peer_mode mode, cli_run *r) {
    connect_ssh(pr, mode, r);
    cr_assert_eq(write(r->in, "x", 1), 1);
    return cli_expect_exit(r, 20000, 1, "");
}

/* setup(), an echo peer serving nopen opens, and ghostport forward on a free port (*port). */
static h_proc *forward_to_echo(peer *pr, int nopen, int *port) {
    setup();
    peer_start(pr, P_ECHO, nopen);
    return forward_local(port, NULL);
}

/* --- tests ------------------------------------------------------------------------------ */

Test(cli_stream, connect_round_trips_5mib_through_an_echo) {
    peer pr;
    cli_run r;
    connect_ssh(&pr, P_ECHO, &r);
    size_t n = 5u << 20;
    uint8_t *data = random_bytes(n), *back;
    long got;
    int code = cli_pump(&r, data, n, n, &back, &got);
    char *err = cli_stderr(&r);
    cr_assert_eq(got, (long)n, "got %ld of %zu bytes back; stderr: %s", got, n, err);
    char a[65], b[65];
    sha_hex(data, n, a);
    sha_hex(back, n, b);
    cr_assert_str_eq(a, b, "the bytes came back different");
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    peer_join(&pr);
    cr_assert_eq(pr.nopen, 1);
    peer_stream *ps = &pr.st[0];
    cr_assert_eq(ps->err[0], '\0', "peer stream: %s", ps->err);
    cr_assert(ps->done && ps->fin_seen, "stream not over cleanly at the peer");
    cr_assert_str_eq(ps->service, "ssh");
    cr_assert_eq(strlen(ps->sid), 32, "sid %s", ps->sid);
    cr_assert_eq(sin_data_left(ps->sid), 0, "acknowledged sin entries were not trimmed");
    /* sin expires on its own (2 x idle_ms from the last write). */
    long long ttl = h_int("PTTL gp:{%s}:sin:%s", HOUSE, ps->sid);
    cr_assert(ttl > 0 && ttl <= 600000, "sin's TTL: %lld", ttl);
    /* The reply key of the open (in the house's slot) is deleted once read. */
    cr_assert_eq(h_int("EXISTS gp:rep:{%s}:%s", HOUSE, ps->sid), 0);
    free(err), free(data), free(back);
    cli_close(&r);
}

Test(cli_stream, connect_respects_the_window_of_a_slow_reader) {
    peer pr;
    cli_run r;
    connect_start(&pr, P_SLOW_SINK, &r,
                  (const char *const[]){"connect", HOUSE, "ssh", "--window", "65536", "-q", NULL});
    size_t n = 1u << 20;
    uint8_t *data = random_bytes(n), *back;
    long got;
    int code = cli_pump(&r, data, n, 0, &back, &got); /* nothing, then EOF at the sink's fin */
    char *err = cli_stderr(&r);
    cr_assert_eq(got, 0, "stdout: %ld bytes; stderr: %s", got, err);
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    peer_join(&pr);
    peer_stream *ps = &pr.st[0];
    cr_assert_eq(ps->err[0], '\0', "peer stream: %s", ps->err);
    cr_assert_eq(ps->window, 65536, "the open's window: %u", ps->window);
    cr_assert_eq(ps->received, n);
    char a[65];
    sha_hex(data, n, a);
    cr_assert_str_eq(ps->sha, a, "the sink got other bytes");
    cr_assert(ps->max_unacked > 0, "the window check never saw a byte");
    cr_assert_leq(ps->max_unacked, 65536, "sin held %llu unacknowledged bytes (window 65536)",
                  (unsigned long long)ps->max_unacked);
    cr_assert_eq(sin_data_left(ps->sid), 0, "acknowledged sin entries were not trimmed");
    free(err), free(data), free(back);
    cli_close(&r);
}

Test(cli_stream, stdin_eof_is_a_fin_and_the_peers_fin_ends_stdout) {
    peer pr;
    cli_run r;
    connect_ssh(&pr, P_BANNER, &r);
    /* The house half-closes at once: stdout gives the banner, then EOF; the CLI stays until
     * its own side is finished. */
    long got;
    uint8_t *out = read_all(r.out, 0, &got, 20000);
    cr_assert_eq(got, (long)sizeof BANNER - 1, "stdout %ld bytes", got);
    cr_assert_eq(memcmp(out, BANNER, sizeof BANNER - 1), 0);
    cr_assert(cli_running(&r), "the CLI ended before its stdin did");
    const char bye[] = "bye\n";
    cr_assert_eq(write(r.in, bye, 4), 4);
    connect_ends_at_eof(&r, &pr, 20000);
    peer_stream *ps = &pr.st[0];
    cr_assert_eq(ps->err[0], '\0', "peer stream: %s", ps->err);
    cr_assert(ps->fin_seen && ps->done, "the peer did not see the fin");
    cr_assert_eq(ps->received, 4);
    free(out);
}

Test(cli_stream, a_reset_by_the_house_exits_1_with_the_reason) {
    peer pr;
    cli_run r;
    char *err = reset_after_a_byte(&pr, P_RST, &r);
    cr_assert(strstr(err, "reset by the house") && strstr(err, "refused") &&
                  strstr(err, "connection reset by the service"),
              "stderr: %s", err);
    cr_assert(!strchr(err, '\n') || strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s",
              err);
    peer_join(&pr);
    free(err);
    cli_close(&r);
}

Test(cli_stream, a_malformed_entry_resets_the_stream) {
    peer pr;
    cli_run r;
    char *err = reset_after_a_byte(&pr, P_MALFORMED, &r);
    cr_assert(strstr(err, "malformed") && strstr(err, "off"), "stderr: %s", err);
    peer_join(&pr);
    /* ... and the house is told: rst malformed on sin, naming the field. */
    cr_assert_str_eq(pr.st[0].rst, "malformed", "peer saw: rst '%s' err '%s'", pr.st[0].rst,
                     pr.st[0].err);
    free(err);
    cli_close(&r);
}

Test(cli_stream, hostile_entries_reset_the_stream_with_their_reason) {
    setup();
    static char big[5000];
    memset(big, 'y', sizeof big);
    static const struct {
        const char *fv[6];
        size_t lens[6];
        int n;
        const char *reason, *says;
    } cases[] = {
        {{"off", "100", "data", "x"}, {3, 3, 4, 1}, 2, "gap", "gap"},
        {{"ack", "999999"}, {3, 6}, 1, "bad_ack", "bad_ack"},
        {{"off", "0", "data", big}, {3, 1, 4, sizeof big}, 2, "window", "window"},
        {{"rst", "Not-A-Token"}, {3, 11}, 1, "malformed", "bad rst"},
        {{"foo", "bar"}, {3, 3}, 1, "malformed", "no off, ack, win or rst"},
        {{"ack", "1", "ack", "1"}, {3, 1, 3, 1}, 2, "malformed", "ack repeated"},
        {{"off", "0", "fin", "yes"}, {3, 1, 3, 3}, 2, "malformed", "bad fin"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        peer pr;
        peer_start(&pr, P_MALFORMED, 1);
        for (int i = 0; i < 2 * cases[k].n; i++)
            pr.bad[i] = cases[k].fv[i], pr.bad_lens[i] = cases[k].lens[i];
        pr.nbad = cases[k].n;
        cli_run r;
        cli_start(&r,
                  (const char *const[]){"connect", HOUSE, "ssh", "--window", "4096", "-q", NULL});
        cr_assert_eq(write(r.in, "x", 1), 1);
        char what[32];
        snprintf(what, sizeof what, "case %zu: ", k);
        char *err = cli_expect_exit(&r, 20000, 1, what);
        cr_assert(strstr(err, cases[k].says), "case %zu: stderr: %s", k, err);
        cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "case %zu: not one line: %s", k, err);
        peer_join(&pr);
        cr_assert_str_eq(pr.st[0].rst, cases[k].reason, "case %zu: the house saw rst '%s' (%s)", k,
                         pr.st[0].rst, pr.st[0].err);
        free(err);
        cli_close(&r);
    }
}

Test(cli_stream, a_refused_open_exits_2_with_status_error_and_message) {
    peer pr;
    cli_run r;
    connect_start(&pr, P_REFUSE, &r, (const char *const[]){"connect", HOUSE, "nope", "-q", NULL});
    char *err = cli_expect_exit(&r, 20000, 2, "");
    cr_assert(strstr(err, "403") && strstr(err, "forbidden_service") &&
                  strstr(err, "not one of the house's tcp services") && strstr(err, "nope"),
              "stderr: %s", err);
    peer_join(&pr);
    free(err);
    cli_close(&r);
}

Test(cli_stream, no_answer_to_the_open_exits_3) {
    setup();
    cli_run r;
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "--timeout", "200", "-q", NULL});
    char *err = cli_expect_exit(&r, 20000, 3, "");
    cr_assert(strstr(err, "no answer"), "stderr: %s", err);
    /* The open entry as the contract has it. */
    redisReply *x = h_cmd("XRANGE gp:{%s}:req - +", HOUSE);
    cr_assert_eq(x->elements, 1);
    const redisReply *fv = x->element[0]->element[1];
    const char *want[] = {"kind", "stream", "service", "ssh", "timeout_ms", "200"};
    for (size_t k = 0; k < 6; k += 2) {
        int found = 0;
        for (size_t i = 0; i + 1 < fv->elements; i += 2)
            found |= !strcmp(fv->element[i]->str, want[k]) &&
                     !strcmp(fv->element[i + 1]->str, want[k + 1]);
        cr_assert(found, "open entry lacks %s %s", want[k], want[k + 1]);
    }
    /* Its reply key is in the house's slot: the CLI's one XREAD reads it with the streams. */
    int reply_ok = 0;
    for (size_t i = 0; i + 1 < fv->elements; i += 2)
        reply_ok |= !strcmp(fv->element[i]->str, "reply") &&
                    !strncmp(fv->element[i + 1]->str,
                             "gp:rep:{" HOUSE "}:", sizeof "gp:rep:{" HOUSE "}:" - 1);
    cr_assert(reply_ok, "the open's reply key is not gp:rep:{%s}:<sid>", HOUSE);
    freeReplyObject(x);
    /* ... and an rst timeout waits on sin, should the house open it late. */
    x = h_cmd("KEYS gp:{%s}:sin:*", HOUSE);
    cr_assert_eq(x->elements, 1);
    redisReply *y = h_cmd("XRANGE %s - +", x->element[0]->str);
    cr_assert_eq(y->elements, 1);
    const redisReply *rf = y->element[0]->element[1];
    cr_assert(rf->elements >= 2 && !strcmp(rf->element[0]->str, "rst") &&
                  !strcmp(rf->element[1]->str, "timeout"),
              "sin's entry is not rst timeout");
    freeReplyObject(y);
    freeReplyObject(x);
    /* Usage errors: exit 2. */
    cli_close(&r);
    cli_start(&r, (const char *const[]){"connect", HOUSE, NULL});
    cr_assert_eq(cli_wait(&r, 10000), 2);
    cli_close(&r);
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "--window", "12", NULL});
    cr_assert_eq(cli_wait(&r, 10000), 2);
    cli_close(&r);
    cli_start(&r, (const char *const[]){"connect", "nobody", "ssh", NULL});
    cr_assert_eq(cli_wait(&r, 10000), 2, "an unregistered house");
    cli_close(&r);
    free(err);
}

/* One TCP client of the forward listener: sends its bytes, half-closes, reads all back. */
typedef struct fclient {
    pthread_t t;
    int port;
    size_t n;
    uint8_t *data, *back;
    long got;
} fclient;

static void *fclient_main(void *arg) {
    fclient *c = arg;
    int fd = h_dial(c->port);
    c->got = -2;
    if (fd < 0)
        return NULL;
    feeder f = {.fd = fd, .is_sock = 1, .p = c->data, .len = c->n};
    pthread_create(&f.t, NULL, feed_main, &f);
    c->back = read_all(fd, c->n, &c->got, 60000);
    shutdown(fd, SHUT_RDWR); /* a feeder stuck on a listener that stopped reading */
    pthread_join(f.t, NULL);
    close(fd);
    return NULL;
}

Test(cli_stream, forward_gives_each_connection_its_own_stream) {
    peer pr;
    int port;
    h_proc *fw = forward_to_echo(&pr, 2, &port);
    fclient c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = (fclient){.port = port, .n = (size_t)(300000 + 77777 * i)};
        c[i].data = random_bytes(c[i].n);
        pthread_create(&c[i].t, NULL, fclient_main, &c[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(c[i].t, NULL);
        cr_assert_eq(c[i].got, (long)c[i].n, "client %d got %ld of %zu bytes", i, c[i].got, c[i].n);
        cr_assert_eq(memcmp(c[i].data, c[i].back, c[i].n), 0, "client %d: other bytes", i);
    }
    peer_join(&pr);
    cr_assert_eq(pr.nopen, 2);
    cr_assert_str_neq(pr.st[0].sid, pr.st[1].sid);
    for (int i = 0; i < 2; i++)
        cr_assert(pr.st[i].done && !pr.st[i].err[0], "stream %d: %s", i, pr.st[i].err);
    cr_assert(h_wait_log_n(fw, "closed", 2, 10000), "no close lines");
    cr_assert(h_alive(fw), "the listener ended with its connections");
    int st = h_stop(fw);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: wait status %d", st);
    for (int i = 0; i < 2; i++)
        free(c[i].data), free(c[i].back);
}

/* For h_wait: the peer's first stream has seen at least 4 keep-alive acks. */
static int four_keepalives(void *ud) {
    peer *pr = ud;
    return pr->nopen > 0 && atomic_load(&pr->st[0].acks_seen) >= 4;
}

Test(cli_stream, keepalives_hold_a_quiet_stream_and_a_silent_house_times_out) {
    setup();
    /* Quiet both ways with --idle 1000: the CLI acks every third of it, the peer too, and
     * nobody times out. */
    peer pr;
    peer_start(&pr, P_ECHO, 1);
    cli_run r;
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "--idle", "1000", "-q", NULL});
    cr_assert(h_wait(four_keepalives, &pr, 10000), "fewer than 4 keep-alives from the CLI");
    cr_assert(cli_running(&r), "the CLI ended on a quiet stream");
    connect_ends_at_eof(&r, &pr, 10000);

    /* A house that never writes again: the CLI resets with idle after --idle. */
    peer_start(&pr, P_SILENT, 1);
    uint64_t t0 = h_now_ms();
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "--idle", "1000", "-q", NULL});
    char *err = cli_expect_exit(&r, 15000, 1, "");
    uint64_t took = h_now_ms() - t0;
    cr_assert(strstr(err, "1000 ms") && strstr(err, "timed out"), "stderr: %s", err);
    cr_assert(took >= 1000 && took < 8000, "idle reset after %llu ms", (unsigned long long)took);
    peer_stop(&pr);
    cr_assert_str_eq(pr.st[0].rst, "idle", "the house was not told: '%s'", pr.st[0].rst);
    free(err);
    cli_close(&r);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(cli_stream, interactive_keystrokes_come_back_without_polling_delays) {
    peer pr;
    cli_run r;
    connect_ssh(&pr, P_ECHO, &r);
    enum { N = 25 };
    uint64_t rtt[N];
    for (int i = 0; i < N; i++) {
        char ch = (char)('a' + i), back = 0;
        uint64_t t0 = h_now_ms();
        cr_assert_eq(write(r.in, &ch, 1), 1);
        struct pollfd pf = {.fd = r.out, .events = POLLIN};
        cr_assert_eq(poll(&pf, 1, 10000), 1, "keystroke %d did not come back", i);
        cr_assert_eq(read(r.out, &back, 1), 1);
        cr_assert_eq(back, ch);
        rtt[i] = h_now_ms() - t0;
    }
    qsort(rtt, N, sizeof rtt[0], cmp_u64);
    /* A 100 ms polling step anywhere on the path would show in the median. */
    cr_assert_lt(rtt[N / 2], 50, "median keystroke round trip %llu ms",
                 (unsigned long long)rtt[N / 2]);
    close(r.in);
    r.in = -1;
    long got;
    free(read_all(r.out, 0, &got, 10000));
    int code = cli_wait(&r, 10000);
    cr_assert_eq(code, 0);
    peer_join(&pr);
    cli_close(&r);
}

/* For h_wait: the peer's first stream is stopped by the window with bytes left to send. */
static int first_at_window(void *ud) {
    peer *pr = ud;
    return pr->nopen > 0 && atomic_load(&pr->st[0].at_window);
}

typedef struct acks_after {
    peer *pr;
    int from;
} acks_after;

/* For h_wait: 4 keep-alives from the CLI since `from` were counted. */
static int four_more_acks(void *ud) {
    acks_after *a = ud;
    return atomic_load(&a->pr->st[0].acks_seen) >= a->from + 4;
}

/* The house floods `flood` bytes through --window `window`; the test does not read stdout for
 * a while: the house stops at the window, and the CLI goes on sending keep-alives (else the
 * house would reset it as idle after 1000 ms). Then everything arrives. */
static void stop_reading_case(const char *window, uint64_t flood) {
    peer pr;
    peer_start_first(&pr, P_FLOOD, P_FLOOD, 1, flood);
    cli_run r;
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "--idle", "1000", "--window",
                                        window, "-q", NULL});
    cr_assert(h_wait(first_at_window, &pr, 15000), "window %s: the house never stopped", window);
    acks_after a = {&pr, atomic_load(&pr.st[0].acks_seen)};
    cr_assert(h_wait(four_more_acks, &a, 15000), "window %s: keep-alives stopped", window);
    cr_assert(cli_running(&r), "the CLI ended while its stdout was full");
    long got;
    uint8_t *out = read_all(r.out, flood, &got, 30000);
    cr_assert_eq(got, (long)flood, "stdout: %ld of %llu bytes; peer: %s; stderr: %s", got,
                 (unsigned long long)flood, pr.st[0].err, cli_stderr(&r));
    for (size_t i = 0; i < flood; i++)
        cr_assert_eq(out[i], flood_byte(i), "byte %zu differs", i);
    free(out);
    connect_ends_at_eof(&r, &pr, 10000);
}

Test(cli_stream, a_user_who_stops_reading_stops_the_house_at_the_window_not_the_stream) {
    setup();
    /* A window the CLI's output queue takes whole ... */
    stop_reading_case("262144", FLOOD_N);
    /* ... and one larger than the queue's bound (1 MiB): the rest waits in Redis, sout left
     * out of the shared XREAD until stdout has drained the queue. */
    stop_reading_case("4194304", 6u << 20);
}

Test(cli_stream, sigterm_resets_open_streams_of_connect_and_forward) {
    /* connect: SIGTERM mid-stream -> rst closed to the house, exit 1 with the reason. */
    peer pr;
    cli_run r;
    connect_ssh(&pr, P_ECHO, &r);
    cr_assert_eq(write(r.in, "ping", 4), 4);
    char buf[4];
    struct pollfd pf = {.fd = r.out, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1);
    cr_assert_eq(read(r.out, buf, 4), 4);
    kill(r.pid, SIGTERM);
    char *err = cli_expect_exit(&r, 10000, 1, "");
    cr_assert(strstr(err, "interrupted"), "stderr: %s", err);
    peer_join(&pr);
    cr_assert_str_eq(pr.st[0].rst, "closed", "the house was not told: '%s' %s", pr.st[0].rst,
                     pr.st[0].err);
    free(err);
    cli_close(&r);

    /* forward: SIGTERM with a connection open -> its stream reset, the client's connection
     * ends, the listener exits 0. */
    peer_start(&pr, P_ECHO, 1);
    int port = h_free_port();
    char spec[32];
    snprintf(spec, sizeof spec, "%d", port); /* the default address: 127.0.0.1 */
    h_proc *fw = forward_start(spec, port);
    int fd = h_dial(port);
    cr_assert(fd >= 0);
    cr_assert_eq(send(fd, "ping", 4, MSG_NOSIGNAL), 4);
    pf = (struct pollfd){.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1);
    cr_assert_eq(recv(fd, buf, 4, 0), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    int st = h_stop(fw);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: wait status %d", st);
    pf = (struct pollfd){.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 10000), 1, "the client's connection stayed open");
    cr_assert(recv(fd, buf, 4, 0) <= 0, "data after the stop");
    close(fd);
    peer_stop(&pr);
    cr_assert_eq(pr.nopen, 1);
    cr_assert_str_eq(pr.st[0].rst, "closed", "the house was not told: '%s' %s", pr.st[0].rst,
                     pr.st[0].err);
}

Test(cli_stream, connect_on_a_redis_cluster) {
    /* The request stream, sin and sout share the house's slot; the reply key has its own:
     * every command goes to its node (MOVED followed), none is cross-slot. */
    signal(SIGPIPE, SIG_IGN);
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    char secret[65];
    h_register(HOUSE, secret);
    peer pr;
    peer_start(&pr, P_ECHO, 1);
    cli_run r;
    cli_start(&r, (const char *const[]){"connect", HOUSE, "ssh", "-q", NULL});
    size_t n = 300000;
    uint8_t *data = random_bytes(n), *back;
    long got;
    int code = cli_pump(&r, data, n, n, &back, &got);
    char *err = cli_stderr(&r);
    cr_assert_eq(got, (long)n, "got %ld of %zu; stderr: %s", got, n, err);
    cr_assert_eq(memcmp(data, back, n), 0);
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    peer_join(&pr);
    cr_assert(pr.st[0].done, "peer: %s", pr.st[0].err);
    free(err), free(data), free(back);
    cli_close(&r);
}

/* --- shared connections ------------------------------------------------------------------ */

/* Redis connections the CLI process pid named (CLIENT SETNAME ghostport-cli:<pid>:<role>),
 * and into *all every client of the server. */
static int cli_conns(pid_t pid, int *all) {
    char want[64];
    snprintf(want, sizeof want, "name=ghostport-cli:%ld:", (long)pid);
    redisReply *r = h_cmd("CLIENT LIST");
    cr_assert(r->type == REDIS_REPLY_STRING, "CLIENT LIST");
    int n = 0, lines = 0;
    for (const char *q = r->str; (q = strstr(q, want)); q++)
        n++;
    for (const char *q = r->str; (q = strchr(q, '\n')); q++)
        lines++;
    freeReplyObject(r);
    if (all)
        *all = lines;
    return n;
}

/* One echo round trip of n bytes on fd (10 s at most); 0, or -1. */
static int echo_n(int fd, size_t n, uint8_t tag) {
    uint8_t out[4096], back[4096];
    if (n > sizeof out)
        return -1;
    memset(out, tag, n);
    if (send(fd, out, n, MSG_NOSIGNAL) != (ssize_t)n)
        return -1;
    for (size_t got = 0; got < n;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 10000) != 1)
            return -1;
        ssize_t k = recv(fd, back + got, n - got, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return memcmp(out, back, n) == 0 ? 0 : -1;
}

typedef struct echoer {
    pthread_t t;
    int *fds, n;
    atomic_int stop, failed;
    atomic_long trips;
} echoer;

/* Round trips of 4 KiB on each of its connections in turn, until stopped. */
static void *echoer_main(void *arg) {
    echoer *e = arg;
    for (uint8_t k = 0; !atomic_load(&e->stop); k++)
        for (int i = 0; i < e->n && !atomic_load(&e->stop); i++) {
            if (echo_n(e->fds[i], 4096, k) != 0) {
                atomic_store(&e->failed, 1);
                return NULL;
            }
            atomic_fetch_add(&e->trips, 1);
        }
    return NULL;
}

#define NSHARE 20

/* `forward` with NSHARE connections open at once, half of them busy with round trips, the
 * other half idle: its streams share its two Redis connections (reader and writer); the
 * server sees no other connection of it (its clients grow by the test house's connections
 * only, one a stream). */
Test(cli_stream, forward_streams_share_two_redis_connections) {
    peer pr;
    int port;
    h_proc *fw = forward_to_echo(&pr, NSHARE, &port);
    int all0, all1;
    cr_assert_eq(cli_conns(fw->pid, &all0), 2, "forward's connections before any stream");
    int fds[NSHARE];
    for (int i = 0; i < NSHARE; i++) {
        fds[i] = h_dial(port);
        cr_assert(fds[i] >= 0);
        cr_assert_eq(echo_n(fds[i], 100, (uint8_t)i), 0, "connection %d: no echo", i);
    }
    echoer e = {.fds = fds, .n = NSHARE / 2};
    pthread_create(&e.t, NULL, echoer_main, &e);
    for (int k = 0; k < 5; k++) { /* while the busy half runs */
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        int named = cli_conns(fw->pid, &all1);
        cr_assert_eq(named, 2, "forward holds %d named Redis connections for %d streams", named,
                     NSHARE);
        cr_assert_leq(all1 - all0, NSHARE, "Redis has %d more clients with %d streams open",
                      all1 - all0, NSHARE);
    }
    atomic_store(&e.stop, 1);
    pthread_join(e.t, NULL);
    cr_assert(!atomic_load(&e.failed), "a round trip failed");
    cr_assert_gt(atomic_load(&e.trips), NSHARE / 2, "the busy connections hardly moved");
    for (int i = 0; i < NSHARE; i++) { /* every stream still works, the idle ones too */
        cr_assert_eq(echo_n(fds[i], 10, 'z'), 0, "connection %d after the others' traffic", i);
        shutdown(fds[i], SHUT_WR);
    }
    for (int i = 0; i < NSHARE; i++) {
        long got;
        free(read_all(fds[i], 0, &got, 10000));
        cr_assert_eq(got, 0, "connection %d: no clean end (%ld)", i, got);
        close(fds[i]);
    }
    peer_join(&pr);
    for (int i = 0; i < NSHARE; i++)
        cr_assert(pr.st[i].done && !pr.st[i].err[0], "stream %d: %s", i, pr.st[i].err);
    cr_assert(h_wait_log_n(fw, "closed", NSHARE, 10000), "no close lines");
    cr_assert_eq(cli_conns(fw->pid, NULL), 2, "forward's connections after its streams");
    int st = h_stop(fw);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: wait status %d", st);
}

/* A forwarded connection whose client stops reading stalls its own stream only: the house
 * floods it up to its window and waits, and meanwhile another connection's echoes come back
 * (each within a bounded wait, not a timing) while the first is still held at the window;
 * then the first gets every byte. */
Test(cli_stream, a_stalled_reader_does_not_stall_another_connection) {
    setup();
    peer pr;
    /* More than the kernel's socket buffers take (they grow to 4 MiB on loopback). */
    uint64_t flood = 12u << 20;
    peer_start_first(&pr, P_ECHO, P_FLOOD, 2, flood);
    int port;
    h_proc *fw = forward_local(&port, (const char *const[]){"--window", "65536", NULL});
    /* A small receive buffer: the kernel holds little of the flood for the stalled client. */
    int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;
    setsockopt(a, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(a, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert(h_wait(first_at_window, &pr, 15000),
              "the house never reached the window: %llu bytes sent, %llu acknowledged",
              (unsigned long long)atomic_load(&pr.st[0].flood_sent),
              (unsigned long long)atomic_load(&pr.st[0].flood_acked));
    int b = h_dial(port);
    cr_assert(b >= 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(echo_n(b, 1000, (uint8_t)i), 0, "echo %d on the second connection", i);
    cr_assert(atomic_load(&pr.st[0].at_window), "the first stream was not held any more");
    long got;
    uint8_t *out = read_all(a, flood, &got, 30000);
    cr_assert_eq(got, (long)flood, "the stalled connection got %ld of %llu bytes", got,
                 (unsigned long long)flood);
    for (size_t i = 0; i < flood; i++)
        cr_assert_eq(out[i], flood_byte(i), "byte %zu differs", i);
    free(out);
    close(a);
    shutdown(b, SHUT_WR);
    free(read_all(b, 0, &got, 10000));
    close(b);
    peer_join(&pr);
    cr_assert(pr.st[1].done, "echo stream: %s", pr.st[1].err);
    cr_assert(h_alive(fw), "forward died");
}

/* A Redis user without CLIENT (no CLIENT ID, UNBLOCK, SETNAME): the streams still work, the
 * reader polls instead of being woken, and stderr says so once. */
Test(cli_stream, streams_work_for_a_user_without_client_commands) {
    char acl[PATH_MAX], mode[PATH_MAX + 128];
    snprintf(acl, sizeof acl, "%s/noclient.acl", h_dir());
    FILE *f = fopen(acl, "w");
    cr_assert(f);
    fputs("user noclient on >pw-noclient ~* &* +@all -client\n", f);
    fclose(f);
    const char *env = getenv("GP_TEST_REDIS");
    snprintf(mode, sizeof mode, "%s%sacl=%s+user=noclient", env && *env ? env : "",
             env && *env ? "+" : "", acl);
    h_redis_mode_set(mode);
    peer pr;
    int port;
    h_proc *fw = forward_to_echo(&pr, 3, &port);
    int fds[3];
    for (int i = 0; i < 3; i++) { /* one after the other: each a new stream to wake for */
        fds[i] = h_dial(port);
        cr_assert(fds[i] >= 0);
        for (int k = 0; k < 5; k++)
            cr_assert_eq(echo_n(fds[i], 200, (uint8_t)k), 0, "connection %d, echo %d", i, k);
    }
    for (int i = 0; i < 3; i++) {
        shutdown(fds[i], SHUT_WR);
        long got;
        free(read_all(fds[i], 0, &got, 10000));
        close(fds[i]);
    }
    peer_join(&pr);
    cr_assert(h_wait_log_n(fw, "closed", 3, 10000), "no close lines");
    cr_assert_eq(h_log_count(fw, "refused CLIENT"), 1, "want one note (see %s)", fw->log);
    cr_assert_eq(cli_conns(fw->pid, NULL), 0, "named although SETNAME is refused");
    int st = h_stop(fw);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forward: wait status %d", st);
}
