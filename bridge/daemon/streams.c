/* streams.c — TCP streams through Redis, the relay between a house's tunnel and the byte keys
 * of each stream (streams.h; the contract: proto/STREAMS.md). I/O side.
 *
 * Opening. An entry `kind stream` on a held house's request stream is checked with the
 * contract's codec (gp_stream_open_parse) and the reply key rules of requests; a house of
 * protocol 1 is refused (501), so are opens past BR_STREAMS_MAX (503) or past their deadline
 * (504), and a sid whose byte keys exist already (409, the one refusal that writes no `rst`:
 * the keys are someone's live stream). Then S_OPEN goes to the house; its S_OPENED (or the
 * deadline) becomes the outcome entry on the reply key, written and the open entry
 * acknowledged by the request core (br_reply_error, `kind stream`), exactly as a request's
 * reply. A refused open also writes `rst` on sout.
 *
 * Relaying. sin → house: each open stream's sin key is read (non-blocking XREAD on the
 * command connection, from the last entry forwarded) when its keyspace doorbell rings (`xadd`
 * on the key, as house.c's request streams: no blocking connection a stream), and by a sweep
 * (fast while the doorbell is down); every entry is checked with gp_stream_entry_parse and
 * forwarded as S_ENTRY; a malformed one resets the stream. Reading pauses while the house's
 * send queue is over QUEUE_MAX. House → sout: every S_ENTRY is checked with the same codec
 * (gp_stream_entry_build refuses what the parser would) and appended to sout by one script
 * that checks the house's epoch first (store_stream.h), sets sout's TTL to 2 × idle_ms, and
 * deletes what the reader acknowledged: sout entries wholly below the opener's `ack` (read
 * from sin), sin entries wholly below the house's `ack`. An `rst` either way, or both fins
 * delivered and acknowledged, ends the stream: both keys' TTL becomes 60 s.
 *
 * Failover. A house that connects names the streams it still holds (S_ATTACH): they are read
 * from the start of sin (only unacknowledged entries remain) and what sout holds is scanned
 * (its entries' ids and offsets: to trim them, and to skip what the house sends again). A
 * closed or fenced connection drops its streams here; their bytes stay in Redis. */
#include "streams.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_stream.h"
#include "compress.h"
#include "list.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096
#define READ_COUNT 16        /* sin entries a read */
#define QUEUE_MAX (4u << 20) /* pause reading sin while the house's queue holds more */
#define SWEEP_FAST_MS 250    /* read every open stream this often while no doorbell */
#define SWEEP_SLOW_MS 15000  /* ... and this often while it rings (house.c's pace) */
#define TRIM_PER_CALL 8      /* entry ids deleted per direction in one write */
#define MARKS_MAX 65536      /* entries remembered per direction (more: left to the TTL) */
#define END_TTL_MS 60000     /* store_stream.h's, once a stream is over */
#define ATTACH_TTL_MS 600000 /* sout's TTL after a takeover whose S_ATTACH had no valid terms */
#define STRAY_LOG_EVERY 100

enum { ST_CHECKING, ST_OPENING, ST_LIVE, ST_GONE };

typedef struct br_stream {
    br_streams *s;
    struct br_stream *prev, *next; /* every stream */
    struct br_stream *hnext;       /* bucket by sin key */
    br_conn *c;                    /* referenced while not GONE */
    int refs, state;
    char house[GP_MAX_HOUSE_ID + 1];
    uint64_t epoch;
    char sid[GP_STREAM_ID_MAX + 1];
    char sin[GP_KEY_MAX], sout[GP_KEY_MAX];
    /* the open: its entry, reply key (raw field), deadline (Redis ms) and parameters */
    char entry_id[48];
    char *reply;
    size_t reply_len;
    int has_reply;
    uint64_t deadline;
    uint32_t window, idle_ms, timeout_ms;
    char service[GP_STREAM_ID_MAX + 1];
    /* relaying */
    uint64_t ttl_ms; /* sout's TTL while it lives: 2 x idle_ms */
    int terms_known; /* window and idle_ms from the open or S_ATTACH (else guessed) */
    char sin_last[48];
    int reading, read_again, paused, subscribed;
    uint64_t next_sweep;
    uint64_t last_active; /* loop ms of the last entry either way (forgotten after ttl_ms) */
    uint64_t sin_high;    /* end of the sin bytes forwarded */
    uint64_t sout_high;   /* end of the bytes sout holds (sout_known) */
    int sout_known;
    uint64_t opener_ack, house_ack;
    uint64_t snd_win; /* the opener's receive window: the house writes below opener_ack + it */
    int sin_fin, sout_fin;
    uint64_t sin_fin_end, sout_fin_end;
    gp_stream_marks out, in; /* sout entries to trim by the opener's ack, sin by the house's */
    char ack_id[48]; /* sout's newest entry with only the house's ack: the next supersedes it */
} br_stream;

struct br_streams {
    const br_env *env;
    br_requests *reqs;
    br_streams_ops up;
    br_script write, scan;
    br_stream *all;
    unsigned n, nlive;
    uint64_t strays;
    gp_metric *m_open, *m_bytes, *m_resets, *m_stray;
    br_stream *bucket[BUCKETS];
};

/* --- table ------------------------------------------------------------------------------ */

static unsigned hash(const char *k) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h % BUCKETS;
}

static br_stream *by_key(const br_streams *s, const char *sin) {
    for (br_stream *st = s->bucket[hash(sin)]; st; st = st->hnext)
        if (strcmp(st->sin, sin) == 0)
            return st;
    return NULL;
}

/* c's stream `sid` (a gp_str, not terminated), or NULL. */
static br_stream *find(const br_streams *s, const br_conn *c, gp_str sid) {
    if (sid.len == 0 || sid.len > GP_STREAM_ID_MAX)
        return NULL;
    char id[GP_STREAM_ID_MAX + 1], k[GP_KEY_MAX];
    memcpy(id, sid.p, sid.len);
    id[sid.len] = '\0';
    if (gp_key_sin(k, s->env->cfg->prefix, c->house, id) < 0)
        return NULL;
    br_stream *st = by_key(s, k);
    return st && st->c == c ? st : NULL;
}

static void st_unref(br_stream *st) {
    if (--st->refs > 0)
        return;
    gp_stream_marks_free(&st->out);
    gp_stream_marks_free(&st->in);
    free(st->reply);
    free(st);
}

static void gauge(br_streams *s) {
    gp_metric_set(s->m_open, NULL, s->nlive);
}

static void channel_of(char out[GP_KEY_MAX + 32], const br_streams *s, const br_stream *st) {
    snprintf(out, GP_KEY_MAX + 32, "__keyspace@%d__:%s", s->env->rdb, st->sin);
}

static void subscribe(br_stream *st, int on) {
    char ch[GP_KEY_MAX + 32];
    channel_of(ch, st->s, st);
    br_db_subscribe(st->s->env->db, st->sin, ch, on); /* on the node that holds the key */
    st->subscribed = on;
}

/* A new stream of c (the sid checked: its keys fit), in the table. NULL: out of memory. */
static br_stream *st_new(br_streams *s, br_conn *c, const char *sid) {
    br_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    const char *p = s->env->cfg->prefix;
    if (gp_key_sin(st->sin, p, c->house, sid) < 0 || gp_key_sout(st->sout, p, c->house, sid) < 0) {
        free(st);
        return NULL;
    }
    st->s = s;
    st->refs = 1; /* the table's */
    st->c = c;
    br_conn_ref(c);
    snprintf(st->house, sizeof st->house, "%s", c->house);
    st->epoch = c->epoch;
    snprintf(st->sid, sizeof st->sid, "%s", sid);
    strcpy(st->sin_last, "0-0");
    st->ttl_ms = ATTACH_TTL_MS;
    st->snd_win = GP_STREAM_WIN_MAX; /* the open's, once known */
    st->last_active = br_env_now(s->env);
    c->nstreams++;
    unsigned b = hash(st->sin);
    st->hnext = s->bucket[b];
    s->bucket[b] = st;
    GP_LIST_PUSH(s->all, st, prev, next);
    s->n++;
    return st;
}

/* Out of the table: no more frames, reads or writes for it; callbacks in flight see GONE. */
static void st_drop(br_stream *st) {
    if (st->state == ST_GONE)
        return;
    br_streams *s = st->s;
    if (st->subscribed)
        subscribe(st, 0);
    if (st->state == ST_LIVE) {
        s->nlive--;
        gauge(s);
    }
    st->state = ST_GONE;
    GP_CHAIN_REMOVE(s->bucket[hash(st->sin)], st, hnext);
    GP_LIST_REMOVE(s->all, st, prev, next);
    s->n--;
    br_conn *c = st->c;
    st->c = NULL;
    c->nstreams--;
    br_conn_unref(c);
    st_unref(st);
}

/* A mark of one direction; one not kept (past MARKS_MAX, out of memory) leaves its entry to the
 * key's TTL. */
static void push_mark(gp_stream_marks *m, const char *id, size_t idlen, uint64_t end) {
    (void)gp_stream_marks_push(m, id, idlen, end, MARKS_MAX);
}

/* --- writing sout (fenced) --------------------------------------------------------------- */

typedef struct st_write_ctx {
    br_stream *st; /* referenced */
    int has_off, fin;
    int ack_only; /* only `ack`: deleted once a newer one is written (acks are cumulative) */
    uint64_t end;
} st_write_ctx;

static void st_trim(br_stream *st);
static void rst_entry(gp_stream_entry *e, const char *reason, const char *message);
static void count_reset(br_streams *s, const char *house, const char *sid, const char *reason,
                        const char *by, const char *message);
static void send_entry(br_conn *c, const char *sid, const gp_stream_entry *e);

static void on_write(redisReply *rep, void *ud) {
    st_write_ctx *w = ud;
    br_stream *st = w->st;
    br_streams *s = st->s;
    if (!rep) {
        /* Lost (Redis timed out or the connection was replaced): whether it was written is
         * unknown. Bytes must not go missing in sout, and only the house still has them: its
         * connection is closed, it reconnects, names the stream (S_ATTACH) and sends again
         * from the opener's ack; the scan of sout then skips only what is there. */
        br_log(BR_LOG_WARN, "stream_write_lost", "house=%s sid=%s", st->house, st->sid);
        if (w->has_off && st->state == ST_LIVE && br_conn_alive(st->c))
            br_conn_close(st->c, GP_GOAWAY_DRAINING, "a stream write was lost: reconnect");
    } else if (rep->type == REDIS_REPLY_ERROR) {
        br_log(BR_LOG_WARN, "stream_write_failed", "house=%s sid=%s err=%s", st->house, st->sid,
               br_qs(rep->str));
        if (st->state == ST_LIVE && br_conn_alive(st->c)) {
            /* sout is not ours to write (WRONGTYPE: someone put another type there): the
             * stream cannot go on; the house learns it, the opener sees no more bytes. */
            gp_stream_entry e;
            rst_entry(&e, "closed", "the bridge cannot write sout");
            count_reset(s, st->house, st->sid, "closed", "bridge", "sout write failed");
            send_entry(st->c, st->sid, &e);
            st_drop(st);
        }
    } else if (rep->type == REDIS_REPLY_INTEGER && rep->integer == -1) {
        if (s->up.fenced)
            s->up.fenced(s->up.ud, st->house, st->epoch);
    } else if (rep->type == REDIS_REPLY_STRING && w->has_off && !w->fin && st->state == ST_LIVE) {
        /* Not a bare fin: an ack equal to its offset does not say the fin was read (it stays
         * until both keys expire, 60 s after the end); a fin with data is read with it. */
        push_mark(&st->out, rep->str, rep->len, w->end);
        if (gp_stream_marks_due(&st->out, st->opener_ack))
            st_trim(st);
    } else if (rep->type == REDIS_REPLY_STRING && w->ack_only && st->state == ST_LIVE &&
               rep->len < sizeof st->ack_id) {
        /* The previous ack-only entry is superseded: trimmed with the next write (an upload
         * would otherwise leave one on sout every quarter window until the stream ends). */
        if (st->ack_id[0])
            push_mark(&st->out, st->ack_id, strlen(st->ack_id), 0);
        memcpy(st->ack_id, rep->str, rep->len);
        st->ack_id[rep->len] = '\0';
    }
    st_unref(st);
    free(w);
}

/* One write of st's: e (NULL: none) appended to sout, what the acks allow deleted, and with
 * end both keys' TTL set to 60 s. The keys and fence are st's, or c's for a refused open
 * (st NULL: sin, sout given). */
static void write_raw(br_streams *s, br_conn *c, br_stream *st, const char *sin, const char *sout,
                      uint64_t ttl_ms, const gp_stream_entry *e, int end) {
    gp_stream_field fld[GP_STREAM_FIELDS_MAX];
    char scratch[128];
    int nf = 0;
    if (e && (nf = gp_stream_entry_build(e, fld, scratch, sizeof scratch)) < 0) {
        br_log(BR_LOG_ERROR, "stream_entry_refused", "house=%s sid=%s", c->house,
               st ? st->sid : "-");
        return;
    }
    char out[TRIM_PER_CALL][GP_STREAM_MARK_ID], in[TRIM_PER_CALL][GP_STREAM_MARK_ID];
    size_t nout = 0, nin = 0;
    if (st) {
        nout = gp_stream_marks_take(&st->out, st->opener_ack, out, TRIM_PER_CALL);
        nin = gp_stream_marks_take(&st->in, st->house_ack, in, TRIM_PER_CALL);
    }
    br_args a;
    br_args_init(&a);
    br_args_str(&a, c->epochkey);
    br_args_str(&a, sout);
    br_args_str(&a, sin);
    br_args_u64(&a, c->epoch);
    br_args_u64(&a, ttl_ms);
    br_args_str(&a, end ? "1" : "0");
    br_args_u64(&a, (uint64_t)nout);
    br_args_u64(&a, (uint64_t)nin);
    for (size_t i = 0; i < nout; i++)
        br_args_str(&a, out[i]);
    for (size_t i = 0; i < nin; i++)
        br_args_str(&a, in[i]);
    for (int i = 0; i < nf; i++) {
        br_args_bin(&a, fld[i].name.p, fld[i].name.len);
        br_args_bin(&a, fld[i].value.p, fld[i].value.len);
    }
    st_write_ctx *w = NULL;
    if (st && (w = malloc(sizeof *w))) {
        *w = (st_write_ctx){.st = st,
                            .has_off = e && e->has_off,
                            .fin = e && e->fin && e->data.len == 0,
                            .ack_only = e && e->has_ack && !e->has_off && !e->has_win && !e->rst[0],
                            .end = e && e->has_off ? e->off + e->data.len : 0};
        st->refs++;
    }
    if (br_db_eval(s->env->db, &s->write, w ? on_write : NULL, w, 3, &a) != 0 && w) {
        st_unref(st);
        free(w);
    }
}

static void st_write(br_stream *st, const gp_stream_entry *e, int end) {
    write_raw(st->s, st->c, st, st->sin, st->sout, st->ttl_ms, e, end);
}

/* Deletes what the acks allow, without appending (no-op when nothing is due). */
static void st_trim(br_stream *st) {
    if (st->state != ST_LIVE)
        return;
    while (gp_stream_marks_due(&st->out, st->opener_ack) ||
           gp_stream_marks_due(&st->in, st->house_ack))
        st_write(st, NULL, 0);
}

/* --- to the house -------------------------------------------------------------------------- */

static void send_entry_flags(br_conn *c, const char *sid, const gp_stream_entry *e, uint8_t flags) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_ENTRY, 0, flags);
    f.u.s_entry.sid = gp_str_c(sid);
    f.u.s_entry.has = (uint8_t)((e->has_off ? GP_SE_OFF : 0) | (e->has_ack ? GP_SE_ACK : 0) |
                                (e->has_win ? GP_SE_WIN : 0) | (e->fin ? GP_SE_FIN : 0));
    f.u.s_entry.off = e->off;
    f.u.s_entry.ack = e->ack;
    f.u.s_entry.win = e->win;
    f.u.s_entry.rst = gp_str_c(e->rst);
    f.u.s_entry.message = e->message;
    f.u.s_entry.data = e->data;
    br_conn_send(c, &f);
}

static void send_entry(br_conn *c, const char *sid, const gp_stream_entry *e) {
    send_entry_flags(c, sid, e, 0);
}

/* An sin entry to the house, its data compressed when that pays (as request bodies are:
 * proto/compress.h; the house inflates GP_FLAG_ZSTD). */
static void send_data(br_stream *st, const gp_stream_entry *e) {
    const br_env *env = st->s->env;
    if (!env->zc || !gp_compress_worthwhile(GP_STR_LIT(""), e->data.p, e->data.len)) {
        send_entry(st->c, st->sid, e);
        return;
    }
    uint8_t *z = malloc(e->data.len);
    ssize_t zn = z ? gp_compress(env->zc, e->data.p, e->data.len, z, e->data.len - 1) : 0;
    if (zn <= 0) {
        free(z);
        send_entry(st->c, st->sid, e);
        return;
    }
    gp_stream_entry c = *e;
    c.data = (gp_str){z, (size_t)zn};
    send_entry_flags(st->c, st->sid, &c, GP_FLAG_ZSTD);
    free(z);
}

static void rst_entry(gp_stream_entry *e, const char *reason, const char *message) {
    memset(e, 0, sizeof *e);
    snprintf(e->rst, sizeof e->rst, "%s", reason);
    size_t n = message ? strlen(message) : 0;
    e->message =
        (gp_str){(const uint8_t *)message, n > GP_STREAM_MESSAGE_MAX ? GP_STREAM_MESSAGE_MAX : n};
}

static void count_reset(br_streams *s, const char *house, const char *sid, const char *reason,
                        const char *by, const char *message) {
    gp_metric_inc(s->m_resets, reason);
    br_log(BR_LOG_INFO, "stream_reset", "house=%s sid=%s reason=%s by=%s msg=%s", house, sid,
           reason, by, br_qs(message ? message : ""));
}

/* The bridge resets st: `rst reason` on sout (both keys then expire in 60 s), to the house too
 * (to_house), a log line and a metric; st is dropped. */
static void st_reset(br_stream *st, const char *reason, const char *message, int to_house) {
    gp_stream_entry e;
    rst_entry(&e, reason, message);
    count_reset(st->s, st->house, st->sid, reason, "bridge", message);
    st_write(st, &e, 1);
    if (to_house && st->c && br_conn_alive(st->c))
        send_entry(st->c, st->sid, &e);
    st_drop(st);
}

/* Both fins delivered and acknowledged: over, the keys expire in 60 s. */
static int st_done(br_stream *st) {
    if (!(st->sin_fin && st->house_ack >= st->sin_fin_end && st->sout_fin &&
          st->opener_ack >= st->sout_fin_end))
        return 0;
    br_log(BR_LOG_INFO, "stream_closed", "house=%s sid=%s in=%llu out=%llu", st->house, st->sid,
           (unsigned long long)st->sin_fin_end, (unsigned long long)st->sout_fin_end);
    st_write(st, NULL, 1);
    st_drop(st);
    return 1;
}

/* --- reading sin ---------------------------------------------------------------------------- */

static void st_read(br_stream *st);

/* Fields of a hiredis entry's field list into f[] (at most GP_STREAM_FIELDS_MAX + 1: one more
 * than allowed is enough for the parser to refuse). -1: a field that is not a string. */
static int fields_of(const redisReply *fv, gp_stream_field *f) {
    size_t n = 0;
    for (size_t i = 0; i + 1 < fv->elements && n <= GP_STREAM_FIELDS_MAX; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        f[n++] =
            (gp_stream_field){{(const uint8_t *)k->str, k->len}, {(const uint8_t *)v->str, v->len}};
    }
    return (int)n;
}

/* One sin entry: forwarded to the house, or the stream reset. 0: go on, -1: st is over. */
static int sin_entry(br_stream *st, const redisReply *en) {
    br_streams *s = st->s;
    if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
        en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= 48)
        return 0;
    const redisReply *id = en->element[0];
    memcpy(st->sin_last, id->str, id->len + 1);
    st->last_active = br_env_now(s->env);
    if (en->element[1]->type != REDIS_REPLY_ARRAY)
        return 0; /* deleted meanwhile */
    gp_stream_field f[GP_STREAM_FIELDS_MAX + 1];
    gp_stream_entry e;
    char err[160], msg[GP_STREAM_MESSAGE_MAX + 1];
    int n = fields_of(en->element[1], f);
    if (n < 0 || gp_stream_entry_parse(&e, f, (size_t)n, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "sin entry %s: %s", id->str,
                 n < 0 ? "a field is not a string" : err);
        st_reset(st, "malformed", msg, 1);
        return -1;
    }
    if (e.has_off) {
        uint64_t end = e.off + e.data.len;
        if (end > st->sin_high)
            st->sin_high = end;
        if (e.fin) {
            st->sin_fin = 1;
            st->sin_fin_end = end;
        }
        gp_metric_add(s->m_bytes, "in", (double)e.data.len);
    }
    if (!e.fin || e.data.len) /* a bare fin stays: the house's ack of its offset may predate it */
        push_mark(&st->in, id->str, id->len, e.has_off ? e.off + e.data.len : st->sin_high);
    if (e.has_ack && e.ack > st->opener_ack)
        st->opener_ack = e.ack;
    if (e.has_win && e.win > st->snd_win)
        st->snd_win = e.win;
    send_data(st, &e);
    if (st->state != ST_LIVE)
        return -1; /* the send closed the connection: its streams are gone */
    if (e.rst[0]) {
        char m[GP_STREAM_MESSAGE_MAX + 1];
        snprintf(m, sizeof m, "%.*s", (int)e.message.len, (const char *)e.message.p);
        count_reset(s, st->house, st->sid, e.rst, "opener", m);
        st_write(st, NULL, 1);
        st_drop(st);
        return -1;
    }
    return 0;
}

static void on_read(redisReply *rep, void *ud) {
    br_stream *st = ud;
    st->reading = 0;
    if (st->state != ST_LIVE || !rep || !br_conn_alive(st->c)) {
        st_unref(st);
        return;
    }
    size_t n = 0;
    if (rep->type == REDIS_REPLY_ERROR) {
        br_log(BR_LOG_WARN, "stream_read_failed", "house=%s sid=%s err=%s", st->house, st->sid,
               br_qs(rep->str));
        if (br_reply_is_error(rep, "WRONGTYPE"))
            st_reset(st, "malformed", "sin is not a stream", 1);
        st_unref(st);
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2 &&
        rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = rep->element[0]->element[1];
        n = entries->elements;
        for (size_t i = 0; i < n; i++)
            if (sin_entry(st, entries->element[i]) != 0) {
                st_unref(st);
                return;
            }
    }
    st_trim(st);
    if (st->state == ST_LIVE && !st_done(st) && (st->read_again || n >= READ_COUNT))
        st_read(st);
    st_unref(st);
}

static void st_read(br_stream *st) {
    br_streams *s = st->s;
    if (st->state != ST_LIVE || !br_conn_alive(st->c))
        return;
    if (st->reading) {
        st->read_again = 1;
        return;
    }
    if (st->c->q_bytes > QUEUE_MAX) { /* the house does not keep up: its bytes wait in Redis */
        st->paused = 1;
        return;
    }
    st->paused = 0;
    st->read_again = 0;
    st->next_sweep =
        br_env_now(s->env) + (br_db_doorbell_ok(s->env->db) ? SWEEP_SLOW_MS : SWEEP_FAST_MS);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XREAD");
    br_args_str(&a, "COUNT");
    br_args_u64(&a, READ_COUNT);
    br_args_str(&a, "STREAMS");
    br_args_str(&a, st->sin);
    br_args_str(&a, st->sin_last);
    st->refs++;
    st->reading = 1;
    if (br_db_cmd(s->env->db, on_read, st, &a) != 0) {
        st->reading = 0;
        st_unref(st);
    }
}

/* Relaying starts: the doorbell, then a first read. */
static void st_live(br_stream *st) {
    br_streams *s = st->s;
    st->state = ST_LIVE;
    s->nlive++;
    gauge(s);
    subscribe(st, 1);
    st_read(st);
}

/* --- opening -------------------------------------------------------------------------------- */

/* The outcome of an open on its reply key, then the open entry acknowledged (the request
 * core's reply writer: as a request's reply). error NULL: 200. */
static void outcome(br_streams *s, br_conn *c, const char *entry_id, gp_str sid, gp_str reply,
                    int has_reply, int status, const char *error, const char *message) {
    br_entry en = {.entry_id = entry_id,
                   .id = sid,
                   .reply = reply,
                   .has_reply = has_reply,
                   .reply_kind = "stream"};
    br_reply_error(s->reqs, c, c->house, c->reqkey, &en, status, error, message, NULL);
}

static void st_outcome(br_stream *st, int status, const char *error, const char *message) {
    outcome(st->s, st->c, st->entry_id, gp_str_c(st->sid),
            (gp_str){(const uint8_t *)st->reply, st->reply_len}, st->has_reply, status, error,
            message);
}

/* A sid of the contract's alphabet (so its keys can be named). */
static int sid_ok(gp_str id) {
    return gp_name_ok(id, GP_STREAM_ID_MAX);
}

/* A refused open without a stream: the outcome, and `rst <reason>` on sout when the sid names
 * one (rst_reason NULL: none, a 409). */
static void refuse(br_streams *s, br_conn *c, const char *entry_id, gp_str sid, gp_str reply,
                   int has_reply, int status, const char *error, const char *message,
                   const char *rst_reason) {
    gp_metric_inc(s->m_resets, error);
    br_log(BR_LOG_INFO, "stream_open", "house=%s sid=%s outcome=refused status=%d error=%s msg=%s",
           c->house, br_q((const char *)sid.p, sid.len), status, error, br_qs(message));
    outcome(s, c, entry_id, sid, reply, has_reply, status, error, message);
    char id[GP_STREAM_ID_MAX + 1], sin[GP_KEY_MAX], sout[GP_KEY_MAX];
    if (!rst_reason || !sid_ok(sid))
        return;
    memcpy(id, sid.p, sid.len);
    id[sid.len] = '\0';
    const char *p = s->env->cfg->prefix;
    if (gp_key_sin(sin, p, c->house, id) < 0 || gp_key_sout(sout, p, c->house, id) < 0)
        return;
    gp_stream_entry e;
    rst_entry(&e, rst_reason, message);
    write_raw(s, c, NULL, sin, sout, END_TTL_MS, &e, 1);
}

/* A refused open of a stream in the table: outcome, rst on sout, dropped. */
static void st_refuse(br_stream *st, int status, const char *error, const char *message,
                      const char *rst_reason, int to_house) {
    br_streams *s = st->s;
    gp_metric_inc(s->m_resets, rst_reason ? rst_reason : error);
    br_log(BR_LOG_INFO, "stream_open", "house=%s sid=%s outcome=refused status=%d error=%s msg=%s",
           st->house, st->sid, status, error, br_qs(message));
    st_outcome(st, status, error, message);
    if (rst_reason) {
        gp_stream_entry e;
        rst_entry(&e, rst_reason, message);
        write_raw(s, st->c, NULL, st->sin, st->sout, END_TTL_MS, &e, 1);
        if (to_house && br_conn_alive(st->c))
            send_entry(st->c, st->sid, &e);
    }
    st_drop(st);
}

static void send_open(br_stream *st) {
    br_streams *s = st->s;
    uint64_t now = br_env_now_redis(s->env);
    st->state = ST_OPENING;
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPEN, 0, 0);
    f.u.s_open.sid = gp_str_c(st->sid);
    f.u.s_open.service = gp_str_c(st->service);
    f.u.s_open.window = st->window;
    f.u.s_open.idle_ms = st->idle_ms;
    uint64_t left = st->deadline > now ? st->deadline - now : 1; /* clocks differ by a few ms */
    f.u.s_open.timeout_ms = (uint32_t)(left < st->timeout_ms ? left : st->timeout_ms);
    br_conn_send(st->c, &f);
}

static void on_exists(redisReply *rep, void *ud) {
    br_stream *st = ud;
    if (st->state != ST_CHECKING || !br_conn_alive(st->c)) {
        st_unref(st);
        return;
    }
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        /* Not answered now: the entry stays pending and comes back with the next scan. */
        br_log(BR_LOG_WARN, "stream_open_deferred", "house=%s sid=%s err=%s", st->house, st->sid,
               br_qs(rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "redis unavailable"));
        st_drop(st);
    } else if (rep->integer > 0) {
        st_refuse(st, 409, "stream_exists",
                  "the byte keys of this stream id exist already (stream ids are not reused)", NULL,
                  0);
    } else {
        send_open(st);
    }
    st_unref(st);
}

void br_streams_open(br_streams *s, br_conn *c, const redisReply *e, int pending) {
    const br_env *env = s->env;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48 ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return; /* house.c routes only such entries here */
    const char *entry_id = e->element[0]->str;
    if (pending) {
        if (br_reply_settling(s->reqs, c->house, entry_id))
            return; /* its outcome is being written */
        for (br_stream *st = s->all; st; st = st->next)
            if (st->c == c && st->state != ST_LIVE && strcmp(st->entry_id, entry_id) == 0)
                return; /* being opened here (once open, its outcome is written again) */
    }
    /* The raw id and reply fields: the outcome goes where the request core would send it. */
    const redisReply *fv = e->element[1];
    gp_str rid = gp_str_c(entry_id), reply = {0};
    int has_reply = 1;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        gp_str vs = {(const uint8_t *)v->str, v->len};
        if (k->len == 2 && memcmp(k->str, "id", 2) == 0 && v->len > 0 && v->len <= 200)
            rid = vs;
        else if (k->len == 5 && memcmp(k->str, "reply", 5) == 0)
            reply = vs, has_reply = v->len > 0;
    }
    gp_stream_field f[GP_STREAM_FIELDS_MAX + 1];
    gp_stream_open o;
    char err[160];
    int n = fields_of(fv, f);
    if (n < 0 || gp_stream_open_parse(&o, f, (size_t)n, err, sizeof err) != 0) {
        refuse(s, c, entry_id, rid, reply, has_reply, 400, "bad_request",
               n < 0 ? "a field is not a string" : err, "bad_request");
        return;
    }
    /* The reply key, as a request's (refused: a 400 bad_reply in the recent list only). */
    br_entry en = {.entry_id = entry_id, .id = o.id, .reply = reply, .has_reply = has_reply};
    char key[BR_REPLY_KEY_MAX + 1];
    const char *why;
    if (br_entry_reply_key(&en, env->cfg->prefix, key, &why) < 0) {
        refuse(s, c, entry_id, o.id, reply, has_reply, 400, "bad_reply", why, "bad_reply");
        return;
    }
    char msg[160];
    if (c->proto < GP_PROTO_STREAMS) {
        snprintf(msg, sizeof msg,
                 "house %s speaks protocol %u; TCP streams need protocol %d: upgrade the house",
                 c->house, c->proto ? c->proto : 1, GP_PROTO_STREAMS);
        refuse(s, c, entry_id, o.id, reply, has_reply, 501, "unsupported", msg, "unsupported");
        return;
    }
    br_stream *st = find(s, c, o.id);
    if (st) {
        if (st->state == ST_LIVE) /* attached (the house holds it): the same outcome again */
            outcome(s, c, entry_id, o.id, reply, has_reply, 200, NULL, NULL);
        else
            refuse(s, c, entry_id, o.id, reply, has_reply, 409, "stream_exists",
                   "a stream of this id is being opened", NULL);
        return;
    }
    uint64_t now = br_env_now_redis(env);
    uint64_t deadline = strtoull(entry_id, NULL, 10) + o.timeout_ms;
    if (deadline <= now) {
        refuse(s, c, entry_id, o.id, reply, has_reply, 504, "timeout",
               "deadline passed before the stream was opened", "timeout");
        return;
    }
    if (s->n >= BR_STREAMS_MAX || c->nstreams >= BR_STREAMS_PER_HOUSE) {
        snprintf(msg, sizeof msg, "this bridge relays its maximum of %d streams (%d a house)",
                 BR_STREAMS_MAX, BR_STREAMS_PER_HOUSE);
        refuse(s, c, entry_id, o.id, reply, has_reply, 503, "unavailable", msg, "unavailable");
        return;
    }
    char sid[GP_STREAM_ID_MAX + 1];
    memcpy(sid, o.id.p, o.id.len);
    sid[o.id.len] = '\0';
    st = st_new(s, c, sid);
    if (!st) {
        br_log(BR_LOG_ERROR, "out_of_memory", "house=%s sid=%s", c->house, sid);
        return; /* the entry stays pending and comes back */
    }
    snprintf(st->entry_id, sizeof st->entry_id, "%s", entry_id);
    if (reply.len && !(st->reply = malloc(reply.len))) {
        st_drop(st);
        return;
    }
    if (reply.len)
        memcpy(st->reply, reply.p, reply.len);
    st->reply_len = reply.len;
    st->has_reply = has_reply;
    st->deadline = deadline;
    st->window = o.window;
    st->snd_win = o.window;
    st->idle_ms = o.idle_ms;
    st->timeout_ms = o.timeout_ms;
    st->ttl_ms = 2ull * o.idle_ms;
    st->terms_known = 1;
    snprintf(st->service, sizeof st->service, "%.*s", (int)o.service.len,
             (const char *)o.service.p);
    st->sout_known = 1; /* a new stream: sout holds nothing */
    if (pending) {
        /* Delivered before: a bridge may have opened it and written its keys; the house knows
         * the sid and answers the same outcome. */
        send_open(st);
        return;
    }
    st->state = ST_CHECKING;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "EXISTS");
    br_args_str(&a, st->sin);
    br_args_str(&a, st->sout);
    st->refs++;
    if (br_db_cmd(env->db, on_exists, st, &a) != 0) {
        st_unref(st);
        st_drop(st);
    }
}

/* --- frames from the house ------------------------------------------------------------------ */

static void stray(br_streams *s, br_conn *c, const gp_frame *f, const char *why) {
    gp_metric_inc(s->m_stray, why);
    if (s->strays++ % STRAY_LOG_EVERY == 0)
        br_log(BR_LOG_INFO, "stream_stray_frame", "house=%s type=%s reason=%s count=%llu", c->house,
               gp_frame_type_name(f->type), why, (unsigned long long)s->strays);
}

/* An error token of the house's for the outcome: [a-z_], 1-32 bytes, else upstream_error. */
static void token_of(gp_str t, char out[GP_STREAM_REASON_MAX + 1]) {
    int ok = t.len > 0 && t.len <= GP_STREAM_REASON_MAX;
    for (size_t i = 0; ok && i < t.len; i++)
        ok = (t.p[i] >= 'a' && t.p[i] <= 'z') || t.p[i] == '_';
    if (ok) {
        memcpy(out, t.p, t.len);
        out[t.len] = '\0';
    } else {
        strcpy(out, "upstream_error");
    }
}

static void on_opened(br_streams *s, br_conn *c, const gp_frame *f) {
    br_stream *st = find(s, c, f->u.s_opened.sid);
    if (!st || st->state != ST_OPENING) {
        stray(s, c, f, "unknown_sid");
        return;
    }
    unsigned status = f->u.s_opened.status;
    if (status == 200) {
        br_log(BR_LOG_INFO, "stream_open", "house=%s sid=%s outcome=opened service=%s", st->house,
               st->sid, st->service);
        st_outcome(st, 200, NULL, NULL);
        st_live(st);
        return;
    }
    char error[GP_STREAM_REASON_MAX + 1], message[GP_STREAM_MESSAGE_MAX + 1];
    token_of(f->u.s_opened.error, error);
    size_t n = 0;
    for (size_t i = 0; i < f->u.s_opened.message.len && n < GP_STREAM_MESSAGE_MAX; i++) {
        uint8_t ch = f->u.s_opened.message.p[i];
        message[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    message[n] = '\0';
    if (status < 400 || status > 599) { /* not an outcome of the contract */
        snprintf(message, sizeof message, "the house answered the open with status %u", status);
        status = 502;
        strcpy(error, "upstream_error");
    }
    const char *reason = strcmp(error, "upstream_unreachable") == 0 ? "refused" : error;
    st_refuse(st, (int)status, error, message, reason, 0);
}

/* S_ENTRY's fields as an entry of the contract (data decompressed into *zbuf when ZSTD). */
static int entry_of(br_streams *s, const gp_frame *f, gp_stream_entry *e, uint8_t **zbuf) {
    memset(e, 0, sizeof *e);
    *zbuf = NULL;
    uint8_t has = f->u.s_entry.has;
    if (has & ~GP_SE_MASK || f->u.s_entry.rst.len > GP_STREAM_REASON_MAX)
        return -1;
    e->has_off = !!(has & GP_SE_OFF);
    e->has_ack = !!(has & GP_SE_ACK);
    e->has_win = !!(has & GP_SE_WIN);
    e->fin = !!(has & GP_SE_FIN);
    e->off = e->has_off ? f->u.s_entry.off : 0;
    e->ack = e->has_ack ? f->u.s_entry.ack : 0;
    e->win = e->has_win ? f->u.s_entry.win : 0;
    memcpy(e->rst, f->u.s_entry.rst.p, f->u.s_entry.rst.len);
    e->rst[f->u.s_entry.rst.len] = '\0';
    if (memchr(e->rst, '\0', f->u.s_entry.rst.len))
        return -1;
    e->message = f->u.s_entry.message;
    e->data = f->u.s_entry.data;
    if (f->flags & GP_FLAG_ZSTD) {
        if (!(*zbuf = malloc(GP_STREAM_DATA_MAX)))
            return -1;
        ssize_t z = gp_decompress(s->env->zc, e->data.p, e->data.len, *zbuf, GP_STREAM_DATA_MAX);
        if (z < 0)
            return -1;
        e->data = (gp_str){*zbuf, (size_t)z};
    }
    gp_stream_field fld[GP_STREAM_FIELDS_MAX];
    char scratch[128];
    return gp_stream_entry_build(e, fld, scratch, sizeof scratch) < 0 ? -1 : 0;
}

static void on_entry(br_streams *s, br_conn *c, const gp_frame *f) {
    br_stream *st = find(s, c, f->u.s_entry.sid);
    if (!st || st->state != ST_LIVE) {
        stray(s, c, f, "unknown_sid");
        return;
    }
    gp_stream_entry e;
    uint8_t *zbuf;
    st->last_active = br_env_now(s->env);
    if (entry_of(s, f, &e, &zbuf) != 0) {
        free(zbuf);
        st_reset(st, "malformed", "the house sent a malformed entry", 1);
        return;
    }
    if (e.has_off && e.off + e.data.len > st->opener_ack + st->snd_win) {
        /* The house ran past the opener's credit: Redis would hold more than the window. */
        free(zbuf);
        st_reset(st, "window", "the house wrote beyond the opener's window", 1);
        return;
    }
    if (e.has_off) {
        uint64_t end = e.off + e.data.len;
        gp_metric_add(s->m_bytes, "out", (double)e.data.len);
        if (e.fin) {
            st->sout_fin = 1;
            st->sout_fin_end = end;
        }
        if (st->sout_known && e.off < st->sout_high) {
            /* Sent again after a takeover: sout holds these bytes already (the opener would
             * drop them anyway: offsets). */
            uint64_t skip = st->sout_high - e.off;
            if (skip > e.data.len)
                skip = e.data.len;
            e.off += skip;
            e.data.p += skip;
            e.data.len -= skip;
            if (e.data.len == 0 && !e.fin)
                e.has_off = 0; /* nothing new: only its ack/win, if any */
        }
        if (end > st->sout_high)
            st->sout_high = end;
    }
    if (e.has_ack && e.ack > st->house_ack)
        st->house_ack = e.ack;
    if (e.has_off || e.has_ack || e.has_win || e.rst[0])
        st_write(st, &e, e.rst[0] != 0);
    free(zbuf);
    if (e.rst[0]) {
        char m[GP_STREAM_MESSAGE_MAX + 1];
        snprintf(m, sizeof m, "%.*s", (int)e.message.len, (const char *)e.message.p);
        count_reset(s, st->house, st->sid, e.rst, "house", m);
        st_drop(st);
        return;
    }
    st_done(st);
}

static void on_scan(redisReply *rep, void *ud) {
    br_stream *st = ud;
    if (st->state == ST_LIVE && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_ARRAY) {
        if (rep->element[0]->integer > 0 && !st->terms_known)
            st->ttl_ms = (uint64_t)rep->element[0]->integer;
        const redisReply *v = rep->element[1];
        gp_stream_marks old = st->out; /* written by us since the scan was sent: after these */
        st->out = (gp_stream_marks){0};
        /* What sout holds without a hole, from the opener's ack: a write lost in the middle
         * (stream_write_lost) is sent again by the house and written again. */
        uint64_t high = st->opener_ack;
        int hole = 0;
        for (size_t i = 0; i < v->elements; i++) {
            const redisReply *m = v->element[i];
            if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
                m->element[0]->type != REDIS_REPLY_STRING ||
                m->element[1]->type != REDIS_REPLY_STRING ||
                m->element[2]->type != REDIS_REPLY_INTEGER)
                continue;
            uint64_t off = strtoull(m->element[1]->str, NULL, 10),
                     end = off + (uint64_t)m->element[2]->integer;
            if (off > high)
                hole = 1;
            else if (!hole && end > high)
                high = end;
            push_mark(&st->out, m->element[0]->str, m->element[0]->len, end);
        }
        for (size_t i = 0; i < old.n; i++)
            push_mark(&st->out, old.v[old.head + i].id, strlen(old.v[old.head + i].id),
                      old.v[old.head + i].end);
        gp_stream_marks_free(&old);
        if (high > st->sout_high)
            st->sout_high = high;
        st->sout_known = 1;
        st_trim(st);
    }
    st_unref(st);
}

static void on_attach(br_streams *s, br_conn *c, const gp_frame *f) {
    gp_str sid = f->u.s_attach.sid;
    br_stream *st = find(s, c, sid);
    if (st) {
        if (st->state == ST_OPENING || st->state == ST_CHECKING) {
            /* Its open entry came first; the house holds the stream: it is open. */
            st_outcome(st, 200, NULL, NULL);
            st_live(st);
        }
        return;
    }
    if (!sid_ok(sid)) {
        stray(s, c, f, "bad_sid");
        return;
    }
    char id[GP_STREAM_ID_MAX + 1];
    memcpy(id, sid.p, sid.len);
    id[sid.len] = '\0';
    if (s->n >= BR_STREAMS_MAX || c->nstreams >= BR_STREAMS_PER_HOUSE || !(st = st_new(s, c, id))) {
        gp_stream_entry e;
        rst_entry(&e, "unavailable", "the bridge relays its maximum of streams");
        count_reset(s, c->house, id, "unavailable", "bridge", "at BR_STREAMS_MAX");
        send_entry(c, id, &e);
        return;
    }
    st->opener_ack = f->u.s_attach.snd_acked;
    uint32_t win = f->u.s_attach.window, idle = f->u.s_attach.idle_ms;
    if (win >= GP_STREAM_WIN_MIN && win <= GP_STREAM_WIN_MAX && idle >= GP_STREAM_IDLE_MIN &&
        idle <= GP_STREAM_IDLE_MAX) { /* the open's terms, as the house holds them */
        st->window = st->snd_win = win;
        st->idle_ms = idle;
        st->ttl_ms = 2ull * idle;
        st->terms_known = 1;
    }
    br_log(BR_LOG_INFO, "stream_attach", "house=%s sid=%s rcv_next=%llu snd_acked=%llu", c->house,
           id, (unsigned long long)f->u.s_attach.rcv_next,
           (unsigned long long)f->u.s_attach.snd_acked);
    st_live(st);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, st->sout);
    br_args_str(&a, st->sin);
    st->refs++;
    if (br_db_eval(s->env->db, &s->scan, on_scan, st, 2, &a) != 0)
        st_unref(st);
}

void br_streams_frame(br_streams *s, br_conn *c, const gp_frame *f) {
    if (!br_conn_alive(c) || c->state != BR_CS_LIVE || !c->in_table)
        return;
    switch (f->type) {
    case GP_FRAME_S_OPENED:
        on_opened(s, c, f);
        break;
    case GP_FRAME_S_ENTRY:
        on_entry(s, c, f);
        break;
    case GP_FRAME_S_ATTACH:
        on_attach(s, c, f);
        break;
    default:
        break;
    }
}

/* --- the rest ------------------------------------------------------------------------------- */

void br_streams_conn_gone(br_streams *s, br_conn *c) {
    br_stream *st = s->all;
    while (st) {
        br_stream *next = st->next;
        if (st->c == c)
            st_drop(st);
        st = next;
    }
}

int br_streams_on_message(br_streams *s, const char *kind, const char *chan, size_t clen,
                          const char *msg, size_t mlen) {
    /* "__keyspace@0__:gp:{h1}:sin:<sid>" */
    const char *key = memchr(chan, ':', clen);
    if (!key || clen < 11 || memcmp(chan, "__keyspace@", 11) != 0)
        return 0;
    key++;
    size_t klen = (size_t)(chan + clen - key);
    if (klen >= GP_KEY_MAX)
        return 0;
    char k[GP_KEY_MAX];
    memcpy(k, key, klen);
    k[klen] = '\0';
    if (!strstr(k, "}:sin:"))
        return 0;
    br_stream *st = by_key(s, k);
    if (!st || st->state != ST_LIVE)
        return 1;
    if (strcmp(kind, "message") == 0) {
        if (mlen == 4 && memcmp(msg, "xadd", 4) == 0)
            st_read(st);
    } else if (strcmp(kind, "subscribe") == 0) {
        st_read(st); /* from here on every XADD rings; one read catches what came before */
    } else if (strcmp(kind, "unsubscribe") == 0 && st->subscribed) {
        subscribe(st, 1); /* hiredis 0.14 forgets a channel on UNSUBSCRIBE: see house.c */
    }
    return 1;
}

void br_streams_sub_up(br_streams *s) {
    for (br_stream *st = s->all; st; st = st->next)
        if (st->state == ST_LIVE)
            subscribe(st, 1);
}

void br_streams_tick(br_streams *s, uint64_t now) {
    uint64_t now_redis = br_env_now_redis(s->env);
    br_stream *st = s->all;
    while (st) {
        br_stream *next = st->next;
        if (st->state == ST_OPENING && now_redis >= st->deadline) {
            st_refuse(st, 504, "timeout", "the house did not open the stream within timeout_ms",
                      "timeout", 1);
        } else if (st->state == ST_LIVE && now - st->last_active > st->ttl_ms) {
            /* Nothing either way for as long as its keys live: both sides are gone (their
             * resets were lost). Forgotten here; Redis expires the keys. */
            br_log(BR_LOG_INFO, "stream_forgotten", "house=%s sid=%s idle_ms=%llu", st->house,
                   st->sid, (unsigned long long)(now - st->last_active));
            st_drop(st);
        } else if (st->state == ST_LIVE) {
            if (st->paused && st->c->q_bytes <= QUEUE_MAX / 2)
                st_read(st);
            else if (now >= st->next_sweep)
                st_read(st);
        }
        st = next;
    }
}

unsigned br_streams_count(const br_streams *s) {
    return s->n;
}

void br_streams_load_scripts(br_streams *s) {
    br_db_load_script(s->env->db, &s->write);
    br_db_load_script(s->env->db, &s->scan);
}

br_streams *br_streams_new(const br_env *env, br_requests *reqs) {
    br_streams *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->env = env;
    s->reqs = reqs;
    s->write = (br_script){GP_LUA_STREAM_WRITE, ""};
    s->scan = (br_script){GP_LUA_STREAM_SCAN, ""};
    gp_metrics *reg = env->metrics ? env->metrics->reg : NULL;
    if (reg) {
        s->m_open = gp_metrics_gauge(reg, "gp_bridge_streams_open",
                                     "TCP streams relayed now (open, proto/STREAMS.md).", NULL);
        s->m_bytes = gp_metrics_counter(reg, "gp_bridge_stream_bytes_total",
                                        "TCP stream bytes relayed: in (sin, to houses), out (from "
                                        "houses, to sout).",
                                        "dir");
        s->m_resets = gp_metrics_counter(reg, "gp_bridge_stream_resets_total",
                                         "TCP streams reset or refused, by reason.", "reason");
        s->m_stray = gp_metrics_counter(reg, "gp_bridge_stream_stray_frames_total",
                                        "Stream frames from houses naming no stream relayed here.",
                                        "reason");
        gp_metric_add(s->m_bytes, "in", 0);
        gp_metric_add(s->m_bytes, "out", 0);
    }
    return s;
}

void br_streams_set_ops(br_streams *s, const br_streams_ops *ops) {
    s->up = *ops;
}

void br_streams_free(br_streams *s) {
    if (!s)
        return;
    /* At exit, after the loop: Redis and the connections are gone, only memory is left. */
    for (br_stream *st = s->all, *next; st; st = next) {
        next = st->next;
        gp_stream_marks_free(&st->out);
        gp_stream_marks_free(&st->in);
        free(st->reply);
        free(st);
    }
    free(s);
}
