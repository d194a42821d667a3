/* streams.c — the house's TCP streams through Redis (streams.h, proto/STREAMS.md): the table
 * of streams, the contract's endpoint state machine (proto/stream.c) for offsets, credit,
 * half-close, reset and idle, the frames the tunnel hands in (S_OPEN, S_ENTRY) and those of a
 * stream produced when it pulls them, the tunnel going up and down, the records of ended
 * streams and the one timer. Each stream's connection to its service (connect, TLS, reading
 * within the window, writing, half-close) is streams_svc.c; the two share streams_int.h. I/O
 * side; no tunnel here.
 *
 * A stream (hs_tcp) lives in a hash table by sid from its S_OPEN until its record expires:
 * first with a service connection (resolving, connecting, TLS handshake, open), then as a
 * record of how it ended (dead). Service bytes wait in chunks until the opener acknowledged
 * them; the opener's bytes go to the service as they come, acknowledged once written. Output
 * is pulled: a ring of streams with something to say, one frame of each in turn; within a
 * stream, its S_OPENED first, then S_ATTACH, rst, and data/fin/ack. */
#include "streams.h"

#include "compress.h"
#include "list.h"
#include "metrics.h"
#include "stream.h"
#include "streams_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP_RECORDS_EXTRA 256u /* records kept besides 4 x max-streams */
#define TIMER_MIN_MS 5u
#define SCRATCH (HS_STREAMS_CHUNK + 64u)
#define SMALLEST 4096u /* data bytes of an entry cut to fit a transport's room */

static uint32_t fnv(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static hs_tcp *find(hs_streams *st, gp_str sid) {
    if (sid.len == 0 || sid.len > GP_STREAM_ID_MAX)
        return NULL;
    for (hs_tcp *s = st->buckets[fnv((const char *)sid.p, sid.len) % NBUCKETS]; s; s = s->hnext)
        if (s->sidlen == sid.len && memcmp(s->sid, sid.p, sid.len) == 0)
            return s;
    return NULL;
}

static const char *qsid(const hs_tcp *s) {
    return hs_q(s->sid, s->sidlen);
}

/* --- timer -------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Something is due at `when` (ms, uv_now's clock): the timer fires no later. */
void hs_st_arm(hs_streams *st, uint64_t when) {
    if (!st->timer_open || st->stopping)
        return;
    if (st->armed_at && st->armed_at <= when)
        return;
    uint64_t now = hs_st_now_ms(st);
    uint64_t delay = when > now ? when - now : 0;
    if (delay < TIMER_MIN_MS)
        delay = TIMER_MIN_MS;
    st->armed_at = now + delay;
    uv_timer_start(&st->timer, on_timer, delay, 0);
}

/* --- output ------------------------------------------------------------------------------- */

/* Every byte the opener sent us is in the service's socket: acknowledge now (STREAMS.md: a
 * reader that caught up with the key acks, so that the writer can trim). */
static int caught_up(const gp_stream *g) {
    return g->rcv_consumed == g->rcv_next;
}

/* Whether the stream has a frame to say now. */
static int out_due(const hs_tcp *s, uint64_t now) {
    if (s->opened_due || s->rst_due || s->final_ack_due)
        return 1;
    if (s->state != TS_OPEN)
        return 0;
    if (s->attach_due || s->ack_force)
        return 1;
    const gp_stream *g = &s->g;
    if (s->read_end > g->snd_next && gp_stream_can_send(g) > 0)
        return 1;
    if (gp_stream_fin_due(g) && g->snd_next == g->snd_fin_off)
        return 1;
    if (!g->snd_fin && s->svc_eof && g->snd_next == s->read_end)
        return 1;
    uint64_t ack;
    return gp_stream_ack_due(g, now, caught_up(g), &ack);
}

void hs_st_want_out(hs_tcp *s) {
    hs_streams *st = s->st;
    if (s->in_out || st->stopping || !out_due(s, hs_st_now_ms(st)))
        return;
    GP_SLIST_APPEND(st->out_head, st->out_tail, s, onext);
    s->in_out = 1;
    if (st->up && st->conf.wake)
        st->conf.wake(st->conf.ud);
}

/* --- metrics and log ---------------------------------------------------------------------- */

static hs_metrics *M(hs_streams *st) {
    return st->conf.m;
}

static void gauge(hs_streams *st) {
    if (M(st))
        gp_metric_set(M(st)->streams_open, NULL, (double)st->nlive);
}

static void count_open(hs_streams *st, const char *outcome) {
    if (M(st))
        gp_metric_inc(M(st)->streams_opened, outcome);
}

static void count_reset(hs_streams *st, const char *reason) {
    if (M(st))
        gp_metric_inc(M(st)->stream_resets, reason);
}

void hs_st_count_bytes(hs_streams *st, const char *dir, size_t n) {
    if (M(st))
        gp_metric_add(M(st)->stream_bytes, dir, (double)n);
}

/* --- the end of a stream ------------------------------------------------------------------ */

static void free_chunks(hs_tcp *s) {
    for (chunk *c = s->ch, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    s->ch = s->ct = NULL;
    s->chunk_bytes = 0;
}

static void unlink_free(hs_tcp *s) {
    hs_streams *st = s->st;
    GP_CHAIN_REMOVE(st->buckets[fnv(s->sid, s->sidlen) % NBUCKETS], s, hnext);
    if (s->in_out)
        GP_SLIST_REMOVE(st->out_head, st->out_tail, s, onext);
    if (s->in_dead) {
        GP_LIST_UNLINK(st->dead_head, st->dead_tail, s, dprev, dnext);
        st->nrec--;
    }
    free_chunks(s);
    hs_tls_free(&s->tls);
    free(s);
}

/* A record goes once expired and nothing of the loop refers to it any more. */
int hs_st_maybe_free(hs_tcp *s, uint64_t now) {
    if (s->state != TS_DEAD || s->pending || s->opened_due || s->rst_due || s->final_ack_due)
        return 0;
    if (!s->st->stopping && now < s->dead_until_ms)
        return 0;
    unlink_free(s);
    return 1;
}

/* Most records kept: the oldest that nothing refers to go first. */
static void trim_records(hs_streams *st) {
    size_t cap = 4u * st->conf.max_streams + KEEP_RECORDS_EXTRA;
    for (hs_tcp *s = st->dead_head, *n; s && st->nrec > cap; s = n) {
        n = s->dnext;
        if (!s->pending && !s->opened_due && !s->rst_due && !s->final_ack_due)
            unlink_free(s);
    }
}

/* The stream has no service connection any more (or never had one): it becomes a record. */
void hs_st_go_dead(hs_tcp *s, int reset) {
    hs_streams *st = s->st;
    if (s->state == TS_DEAD)
        return;
    hs_svc_close(s, reset);
    hs_tls_free(&s->tls); /* nothing reads or writes through it any more */
    st->nlive--;
    gauge(st);
    s->state = TS_DEAD;
    s->attach_due = s->ack_force = 0;
    free_chunks(s);
    uint64_t now = hs_st_now_ms(st);
    s->dead_until_ms = now + s->keep_ms;
    GP_LIST_APPEND(st->dead_head, st->dead_tail, s, dprev, dnext);
    s->in_dead = 1;
    st->nrec++;
    hs_st_arm(st,
              s->dead_until_ms); /* trimmed when the next stream opens (not while walking them) */
}

/* The house ends the stream with an rst to the opener (reason of STREAMS.md). */
void hs_st_house_reset(hs_tcp *s, const char *reason, const char *message) {
    if (s->state == TS_DEAD)
        return;
    gp_stream_reset(&s->g, GP_SR_LOCAL);
    snprintf(s->rst, sizeof s->rst, "%s", reason);
    gp_stream_printable(s->rst_msg, sizeof s->rst_msg, message); /* the codec's rule */
    s->rst_due = s->rst_by_house = 1;
    hs_log(HS_LOG_INFO, "stream_reset",
           "sid=%s service=%s reason=%s by=house message=%s from_service=%llu to_service=%llu",
           qsid(s), hs_qs(s->service), reason, hs_qs(s->rst_msg),
           (unsigned long long)s->from_service, (unsigned long long)s->to_service);
    count_reset(s->st, reason);
    hs_st_go_dead(s, 1);
    hs_st_want_out(s);
}

/* The opener reset the stream: the service sees a reset too; nothing goes back. */
static void peer_reset(hs_tcp *s, const char *reason) {
    hs_log(HS_LOG_INFO, "stream_reset",
           "sid=%s service=%s reason=%s by=opener from_service=%llu to_service=%llu", qsid(s),
           hs_qs(s->service), hs_qs(reason), (unsigned long long)s->from_service,
           (unsigned long long)s->to_service);
    count_reset(s->st, "peer");
    hs_st_go_dead(s, 1);
}

/* Both directions ended cleanly (fins delivered and acknowledged both ways). */
void hs_st_check_done(hs_tcp *s) {
    if (s->state != TS_OPEN || s->g.reset != GP_SR_NONE || !gp_stream_done(&s->g) || s->wbytes)
        return;
    hs_log(HS_LOG_INFO, "stream_close",
           "sid=%s service=%s reason=fin from_service=%llu to_service=%llu", qsid(s),
           hs_qs(s->service), (unsigned long long)s->from_service,
           (unsigned long long)s->to_service);
    hs_st_go_dead(s, 0);
}

/* --- the open ----------------------------------------------------------------------------- */

void hs_st_set_outcome(hs_tcp *s, uint16_t status, const char *error, const char *message) {
    s->status = status;
    s->error = error;
    snprintf(s->message, sizeof s->message, "%s", message ? message : "");
    s->opened_due = 1;
    count_open(s->st, status == 200 ? "ok" : error);
    hs_log(status == 200 ? HS_LOG_INFO : HS_LOG_WARN, "stream_open",
           "sid=%s service=%s status=%u reason=%s message=%s", qsid(s), hs_qs(s->service), status,
           status == 200 ? "ok" : error, hs_qs(s->message));
}

static const hs_tcp_service *service_find(const hs_streams *st, gp_str name) {
    for (size_t i = 0; i < st->nhttp; i++)
        if (gp_str_eq(name, st->http[i].name))
            return &st->http[i];
    for (size_t i = 0; i < st->conf.nservices; i++)
        if (gp_str_eq(name, st->conf.services[i].name))
            return &st->conf.services[i];
    return NULL;
}

static void on_open(hs_streams *st, const gp_frame *f) {
    const __typeof__(f->u.s_open) *o = &f->u.s_open;
    hs_tcp *s = find(st, o->sid);
    if (s && s->state == TS_DEAD && !s->status && !s->pending && !s->in_out) {
        unlink_free(s); /* dropped before it had an outcome: a new attempt */
        s = NULL;
    }
    if (s) {
        /* Delivered again (a failover): the outcome it had, or will have once connected. */
        hs_log(HS_LOG_INFO, "stream_open_again", "sid=%s service=%s status=%u", qsid(s),
               hs_qs(s->service), s->status);
        if (s->status) {
            s->opened_due = 1;
            if (s->state == TS_DEAD && s->rst_by_house && s->ever_open)
                s->rst_due = 1; /* its end, again */
            hs_st_want_out(s);
        }
        return;
    }
    if (o->sid.len == 0 || o->sid.len > GP_STREAM_ID_MAX)
        return; /* the decoder refuses these already */
    trim_records(st);
    s = calloc(1, sizeof *s);
    if (!s) {
        hs_log(HS_LOG_ERROR, "out_of_memory", "what=stream");
        return;
    }
    uint64_t now = hs_st_now_ms(st);
    s->st = st;
    memcpy(s->sid, o->sid.p, o->sid.len);
    s->sidlen = o->sid.len;
    s->lane = 0x80000000u | (fnv(s->sid, s->sidlen) & 0x7fffffffu);
    size_t sl = o->service.len < GP_STREAM_ID_MAX ? o->service.len : GP_STREAM_ID_MAX;
    if (sl)
        memcpy(s->service, o->service.p, sl);
    uint32_t idle = o->idle_ms;
    uint64_t keep = st->conf.keep_closed_ms;
    if (!keep)
        keep = 2ull * idle > HS_STREAMS_KEEP_MIN_MS ? 2ull * idle : HS_STREAMS_KEEP_MIN_MS;
    s->keep_ms = keep;
    hs_tcp **b = &st->buckets[fnv(s->sid, s->sidlen) % NBUCKETS];
    s->hnext = *b;
    *b = s;
    st->nlive++; /* hs_st_go_dead counts it out again */
    s->state = TS_RESOLVING;
    char m[160];
    const char *bad = NULL;
    if (!gp_name_ok(o->sid, GP_STREAM_ID_MAX))
        bad = "sid: 1-64 of [A-Za-z0-9._-]";
    else if (!gp_stream_service_ok(o->service))
        bad = "service: 1-64 of [A-Za-z0-9._-], or http:<name>";
    else if (o->window < GP_STREAM_WIN_MIN || o->window > GP_STREAM_WIN_MAX)
        snprintf(m, sizeof m, "window: %u is outside %u-%u", o->window, GP_STREAM_WIN_MIN,
                 GP_STREAM_WIN_MAX),
            bad = m;
    else if (o->idle_ms < GP_STREAM_IDLE_MIN || o->idle_ms > GP_STREAM_IDLE_MAX)
        snprintf(m, sizeof m, "idle_ms: %u is outside %u-%u", o->idle_ms, GP_STREAM_IDLE_MIN,
                 GP_STREAM_IDLE_MAX),
            bad = m;
    if (bad) {
        hs_st_set_outcome(s, 400, "bad_request", bad);
        hs_st_go_dead(s, 0);
        hs_st_want_out(s);
        return;
    }
    s->svc = service_find(st, o->service);
    int http = strncmp(s->service, "http:", 5) == 0;
    if (!s->svc) {
        if (!http)
            snprintf(m, sizeof m, "service \"%s\" is not one of this house's --tcp-service names",
                     s->service);
        else if (s->service[5])
            snprintf(m, sizeof m, "this house has no HTTP upstream named \"%s\" (--service)",
                     s->service + 5);
        else
            snprintf(m, sizeof m, "this house has no default HTTP upstream (--upstream)");
        hs_st_set_outcome(s, 403, "forbidden_service", m);
        hs_st_go_dead(s, 0);
        hs_st_want_out(s);
        return;
    }
    if (st->nlive > st->conf.max_streams) {
        snprintf(m, sizeof m, "the house is at its --max-streams %u", st->conf.max_streams);
        hs_st_set_outcome(s, 503, "unavailable", m);
        hs_st_go_dead(s, 0);
        hs_st_want_out(s);
        return;
    }
    if (gp_stream_init(&s->g, now, o->window, o->idle_ms) != 0) { /* checked above */
        hs_st_set_outcome(s, 400, "bad_request", "window or idle_ms out of bounds");
        hs_st_go_dead(s, 0);
        hs_st_want_out(s);
        return;
    }
    uint32_t timeout = o->timeout_ms ? o->timeout_ms : 30000u;
    if (timeout > GP_STREAM_IDLE_MAX)
        timeout = GP_STREAM_IDLE_MAX;
    s->timeout_ms = timeout;
    s->deadline_ms = now + timeout;
    hs_st_arm(st, s->deadline_ms);
    hs_st_arm(st, gp_stream_next_timer(&s->g));
    gauge(st);
    hs_svc_connect(s);
}

/* --- the opener's entries ----------------------------------------------------------------- */

static void on_entry(hs_streams *st, const gp_frame *f) {
    const __typeof__(f->u.s_entry) *x = &f->u.s_entry;
    hs_tcp *s = find(st, x->sid);
    if (!s || s->state == TS_DEAD || s->status != 200) {
        /* Not (or no longer) ours: an entry of a stream that ended, or before its open. */
        hs_log(HS_LOG_DEBUG, "stream_entry_ignored", "sid=%s state=%s", hs_q(x->sid.p, x->sid.len),
               s ? "ended_or_refused" : "unknown");
        if (s && s->state != TS_DEAD && !s->status && x->rst.len) /* an rst while connecting */
            peer_reset(s, "peer");
        return;
    }
    char err[96] = "";
    gp_stream_entry e;
    memset(&e, 0, sizeof e);
    e.has_off = !!(x->has & GP_SE_OFF);
    e.has_ack = !!(x->has & GP_SE_ACK);
    e.has_win = !!(x->has & GP_SE_WIN);
    e.fin = !!(x->has & GP_SE_FIN);
    e.off = x->off;
    e.ack = x->ack;
    e.win = x->win;
    e.message = x->message;
    e.data = x->data;
    uint8_t *plain = NULL;
    if (x->rst.len > GP_STREAM_REASON_MAX) {
        snprintf(err, sizeof err, "bad rst");
    } else if (x->rst.len) {
        memcpy(e.rst, x->rst.p, x->rst.len);
        e.rst[x->rst.len] = '\0';
        if (memchr(x->rst.p, '\0', x->rst.len))
            snprintf(err, sizeof err, "bad rst");
    }
    if (!err[0] && (f->flags & GP_FLAG_ZSTD)) {
        ssize_t dn = gp_decompressed_size(x->data.p, x->data.len);
        if (dn < 0 || (size_t)dn > GP_STREAM_DATA_MAX) {
            snprintf(err, sizeof err, "bad compressed data");
        } else if (!(plain = malloc(dn ? (size_t)dn : 1))) {
            hs_st_house_reset(s, "closed", "house out of memory");
            return;
        } else {
            hs_zstate *z = hs_zstate_ready(st->conf.zs, &st->zs_own, 0);
            ssize_t m =
                z ? gp_decompress(hs_zstate_zctx(z), x->data.p, x->data.len, plain, (size_t)dn)
                  : GP_ERR_NOMEM;
            if (m < 0)
                snprintf(err, sizeof err, "bad compressed data");
            else
                e.data = (gp_str){plain, (size_t)m};
        }
    }
    if (!err[0]) {
        gp_stream_field fl[GP_STREAM_FIELDS_MAX];
        char scratch[96];
        if (gp_stream_entry_build(&e, fl, scratch, sizeof scratch) < 0)
            snprintf(err, sizeof err, "entry fields break STREAMS.md's rules");
    }
    if (err[0]) {
        free(plain);
        gp_stream_reset(&s->g, GP_SR_MALFORMED);
        hs_st_house_reset(s, "malformed", err);
        return;
    }
    if (e.rst[0]) {
        free(plain);
        gp_stream_on_rst(&s->g, hs_st_now_ms(st), e.rst);
        peer_reset(s, e.rst);
        return;
    }
    size_t skip = 0, take = 0;
    int rc = gp_stream_apply(&s->g, hs_st_now_ms(st), &e, &skip, &take);
    if (rc < 0) {
        free(plain);
        const char *why = gp_stream_reason_name(s->g.reset);
        char m[160];
        snprintf(m, sizeof m, "entry at off %llu len %zu ack %llu: %s", (unsigned long long)e.off,
                 e.data.len, (unsigned long long)e.ack, why);
        hs_st_house_reset(s, why, m);
        return;
    }
    if (take) {
        char m[GP_STREAM_MESSAGE_MAX];
        if (hs_svc_deliver(s, e.data.p + skip, take, m, sizeof m) != 0) {
            free(plain);
            hs_st_house_reset(s, "refused", m);
            return;
        }
    }
    free(plain);
    if (e.has_ack || e.has_win) {
        hs_svc_drop_acked(s);
        hs_svc_update_reading(s);
    }
    hs_svc_maybe_shutdown(s);
    hs_st_want_out(s);
    hs_st_check_done(s);
}

/* --- pulling frames ----------------------------------------------------------------------- */

/* S_ENTRY header bytes besides sid, rst, message and data. */
#define ENTRY_FIXED (GP_FRAME_HEADER_LEN + 2u + 1u + 8u + 8u + 4u + 2u + 2u)

/* The control frame *f of a stream, owed while *due: 1 and no longer owed when it fits max,
 * else -1 (it stays owed until there is room). */
static int control_out(const gp_frame *f, size_t max, int *due) {
    if (gp_frame_size(f) > max)
        return -1;
    *due = 0;
    return 1;
}

/* One frame of s into *f: 1, 0 nothing due, -1 does not fit max. */
static int produce(hs_streams *st, hs_tcp *s, size_t max, gp_frame *f) {
    uint64_t now = hs_st_now_ms(st);
    memcpy(st->sid_out, s->sid, s->sidlen);
    gp_str sid = {(const uint8_t *)st->sid_out, s->sidlen};
    if (s->opened_due) {
        gp_frame_init(f, GP_FRAME_S_OPENED, 0, 0);
        f->u.s_opened.sid = sid;
        f->u.s_opened.status = s->status;
        snprintf(st->err_out, sizeof st->err_out, "%s", s->error ? s->error : "");
        snprintf(st->msg_out, sizeof st->msg_out, "%s", s->message);
        f->u.s_opened.error = gp_str_c(st->err_out);
        f->u.s_opened.message = gp_str_c(st->msg_out);
        return control_out(f, max, &s->opened_due);
    }
    if (s->attach_due && s->state == TS_OPEN) {
        gp_frame_init(f, GP_FRAME_S_ATTACH, 0, 0);
        f->u.s_attach.sid = sid;
        f->u.s_attach.rcv_next = s->g.rcv_next;
        f->u.s_attach.snd_acked = s->g.snd_acked;
        f->u.s_attach.window = s->g.snd_win; /* the opener's, grown by its `win` if it did */
        f->u.s_attach.idle_ms = s->g.idle_ms;
        return control_out(f, max, &s->attach_due);
    }
    if (s->rst_due) {
        gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
        f->u.s_entry.sid = sid;
        snprintf(st->rst_out, sizeof st->rst_out, "%s", s->rst);
        f->u.s_entry.rst = gp_str_c(st->rst_out);
        snprintf(st->msg_out, sizeof st->msg_out, "%s", s->rst_msg);
        f->u.s_entry.message = gp_str_c(st->msg_out);
        return control_out(f, max, &s->rst_due);
    }
    if (s->final_ack_due) {
        gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
        f->u.s_entry.sid = sid;
        f->u.s_entry.has = GP_SE_ACK;
        f->u.s_entry.ack = s->g.rcv_consumed;
        return control_out(f, max, &s->final_ack_due);
    }
    if (s->state != TS_OPEN)
        return 0;
    gp_stream *g = &s->g;
    uint64_t ack;
    int ackd = gp_stream_ack_due(g, now, caught_up(g), &ack) || s->ack_force;
    ack = g->rcv_consumed;
    /* data: from the chunk holding snd_next, within the credit */
    size_t n = 0;
    const uint8_t *p = NULL;
    uint64_t credit = gp_stream_can_send(g);
    if (s->read_end > g->snd_next && credit > 0) {
        chunk *c = s->ch;
        while (c && c->off + c->len <= g->snd_next)
            c = c->next;
        if (c && c->off <= g->snd_next) {
            uint64_t in = c->off + c->len - g->snd_next;
            n = (size_t)(in < credit ? in : credit);
            if (n > HS_STREAMS_CHUNK)
                n = HS_STREAMS_CHUNK;
            size_t fixed = ENTRY_FIXED + s->sidlen;
            /* a smaller entry when the transport has less room, but no crumbs: below
             * SMALLEST (or the bytes there are) it waits for room */
            size_t least = n < SMALLEST ? n : SMALLEST;
            if (max < fixed + least)
                return -1;
            if (n > max - fixed)
                n = max - fixed;
            p = c->b + (g->snd_next - c->off);
        }
    }
    /* fin: on the entry that writes our last byte, or alone */
    int fin = 0;
    if (g->snd_fin) {
        fin = gp_stream_fin_due(g) && g->snd_next + n == g->snd_fin_off;
    } else if (s->svc_eof && g->snd_next + n == s->read_end) {
        fin = 1;
    }
    if (!n && !fin && !ackd)
        return 0;
    if ((n || fin) && g->rcv_consumed > g->rcv_acked)
        ackd = 1; /* an ack rides along for free */
    gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
    f->u.s_entry.sid = sid;
    if (n || fin) {
        f->u.s_entry.has |= GP_SE_OFF;
        f->u.s_entry.off = g->snd_next;
    }
    if (fin)
        f->u.s_entry.has |= GP_SE_FIN;
    if (ackd) {
        f->u.s_entry.has |= GP_SE_ACK;
        f->u.s_entry.ack = ack;
    }
    if (n && !st->scratch && !(st->scratch = malloc(SCRATCH)))
        return 0; /* out of memory: the bytes stay, tried again with the next pull */
    if (n) {
        memcpy(st->scratch, p, n);
        f->u.s_entry.data = (gp_str){st->scratch, n};
        hs_zstate *z = gp_compress_worthwhile(GP_STR_LIT(""), st->scratch, n)
                           ? hs_zstate_ready(st->conf.zs, &st->zs_own, 1)
                           : NULL;
        if (z) {
            size_t cap;
            uint8_t *zbuf = hs_zstate_buf(z, &cap);
            ssize_t zn = gp_compress(hs_zstate_zctx(z), st->scratch, n, zbuf, cap);
            if (zn > 0) {
                f->flags |= GP_FLAG_ZSTD;
                f->u.s_entry.data = (gp_str){zbuf, (size_t)zn};
            }
        }
    }
    if (gp_frame_size(f) > max)
        return -1;
    if (n && gp_stream_sent(g, now, n) != 0)
        return 0; /* cannot be: n is within the credit */
    if (fin) {
        if (!g->snd_fin && gp_stream_close(g) != 0)
            return 0;
        gp_stream_fin_written(g, now);
    }
    if (ackd) {
        gp_stream_ack_written(g, now, ack);
        s->ack_force = 0;
    }
    return 1;
}

int hs_streams_pull(hs_streams *st, size_t max, gp_frame *f, uint32_t *lane) {
    if (!st->up || st->stopping)
        return 0;
    while (st->out_head) {
        hs_tcp *s = st->out_head;
        int r = produce(st, s, max, f);
        if (r < 0)
            return 0; /* waits at the head for a bigger chance */
        GP_SLIST_SHIFT(st->out_head, st->out_tail, onext);
        s->in_out = 0;
        s->onext = NULL;
        if (r == 0) {
            hs_st_maybe_free(s, hs_st_now_ms(st));
            continue;
        }
        *lane = s->lane;
        hs_st_want_out(s); /* to the back of the ring if it has more to say */
        hs_st_check_done(s);
        if (!s->in_out && s->state == TS_DEAD)
            hs_st_maybe_free(s, hs_st_now_ms(st));
        return 1;
    }
    return 0;
}

int hs_streams_pending(const hs_streams *st) {
    return st->up && !st->stopping && st->out_head != NULL;
}

/* --- the tunnel --------------------------------------------------------------------------- */

static void each(hs_streams *st, void (*fn)(hs_tcp *s, void *ud), void *ud) {
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (hs_tcp *s = st->buckets[b], *n; s; s = n) {
            n = s->hnext;
            fn(s, ud);
        }
}

static void attach_one(hs_tcp *s, void *ud) {
    (void)ud;
    if (s->state == TS_OPEN) {
        s->attach_due = 1;
        s->ack_force = 1;
        (void)gp_stream_resume(&s->g);
        hs_svc_update_reading(s);
    } else if (s->state == TS_DEAD && s->rst_by_house && s->ever_open) {
        s->rst_due = 1; /* it may have been lost with the last connection */
    } else if (s->state == TS_DEAD && s->ever_open && s->g.reset == GP_SR_NONE) {
        s->final_ack_due = 1; /* ended cleanly: our ack of the opener's fin, again */
    }
    hs_st_want_out(s);
}

void hs_streams_tunnel_up(hs_streams *st, int proto) {
    if (st->stopping)
        return;
    st->proto = proto;
    st->up = proto >= GP_PROTO_STREAMS;
    if (!st->up)
        return;
    hs_log(HS_LOG_INFO, "streams_attach", "open=%zu records=%zu", st->nlive, st->nrec);
    each(st, attach_one, NULL);
    if (st->out_head && st->conf.wake)
        st->conf.wake(st->conf.ud);
    hs_st_arm(st, hs_st_now_ms(st));
}

void hs_streams_tunnel_down(hs_streams *st) {
    if (!st->up && st->down_ms)
        return;
    st->up = 0;
    st->down_ms = hs_st_now_ms(st);
    if (st->nlive)
        hs_st_arm(st, st->down_ms + st->conf.grace_ms);
}

void hs_streams_on_frame(hs_streams *st, const gp_frame *f) {
    if (st->stopping)
        return;
    if (f->type == GP_FRAME_S_OPEN)
        on_open(st, f);
    else if (f->type == GP_FRAME_S_ENTRY)
        on_entry(st, f);
}

/* --- the clock ---------------------------------------------------------------------------- */

typedef struct scan {
    uint64_t now, next;
} scan;

static void next_at(scan *sc, uint64_t t) {
    if (t < sc->next)
        sc->next = t;
}

static void tick_one(hs_tcp *s, void *ud) {
    scan *sc = ud;
    hs_streams *st = s->st;
    uint64_t now = sc->now;
    if (s->state == TS_RESOLVING || s->state == TS_CONNECTING || s->state == TS_TLS) {
        if (now >= s->deadline_ms) {
            char m[64];
            snprintf(m, sizeof m, "%stimed out after %u ms",
                     s->state == TS_TLS ? "TLS handshake " : "", s->timeout_ms);
            hs_svc_fail_open(s, m, 0);
            return;
        }
        next_at(sc, s->deadline_ms);
    }
    if (s->state != TS_DEAD && !st->up) {
        uint64_t end = st->down_ms + st->conf.grace_ms;
        if (now >= end) {
            char m[96];
            snprintf(m, sizeof m, "the house had no bridge for %llu ms",
                     (unsigned long long)(now - st->down_ms));
            if (s->state == TS_OPEN) {
                hs_st_house_reset(s, "grace", m);
            } else {
                /* no outcome given yet: the open is delivered again to the next bridge */
                hs_st_go_dead(s, 1);
                s->dead_until_ms = now; /* nothing to remember */
            }
            return;
        }
        next_at(sc, end);
    }
    if (s->state == TS_OPEN) {
        if (gp_stream_tick(&s->g, now)) {
            char m[64];
            snprintf(m, sizeof m, "nothing from the opener for %u ms", s->g.idle_ms);
            hs_st_house_reset(s, "idle", m);
            return;
        }
        next_at(sc, s->g.last_rx_ms + s->g.idle_ms);
        if (st->up) {
            hs_st_want_out(s); /* a keep-alive ack may be due */
            uint64_t ka = s->g.last_ack_ms + s->g.idle_ms / 3;
            next_at(sc, ka > now ? ka : now + s->g.idle_ms / 3);
        }
    }
    if (s->state == TS_DEAD) {
        if (hs_st_maybe_free(s, now))
            return;
        next_at(sc, s->dead_until_ms > now ? s->dead_until_ms : now + 1000);
    }
}

static void on_timer(uv_timer_t *t) {
    hs_streams *st = t->data;
    st->armed_at = 0;
    scan sc = {.now = hs_st_now_ms(st), .next = UINT64_MAX};
    each(st, tick_one, &sc);
    if (sc.next != UINT64_MAX)
        hs_st_arm(st, sc.next);
}

/* --- life --------------------------------------------------------------------------------- */

void hs_tcp_services_free(hs_tcp_service *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        GP_FREE_ALL(v[i].name, v[i].host, v[i].port);
    free(v);
}

static void http_free(hs_streams *st) {
    hs_tcp_services_free(st->http, st->nhttp);
    st->http = NULL;
    st->nhttp = 0;
}

/* One HTTP upstream as a service: "http:<name>" at the URL's host and port (80 without
 * one; https://: 443, and TLS to that host). 0, or -1 out of memory. A URL of another shape
 * (the config checks them) is left out: the open is then refused 403. */
static int http_add(hs_streams *st, const char *name, const char *url) {
    hs_tcp_service *v = &st->http[st->nhttp];
    memset(v, 0, sizeof *v);
    size_t nl = strlen(name);
    if (nl + 5 > GP_STREAM_ID_MAX || !(v->name = malloc(nl + 6)))
        return nl + 5 > GP_STREAM_ID_MAX ? 0 : -1;
    memcpy(v->name, "http:", 5);
    memcpy(v->name + 5, name, nl + 1);
    v->tls = strncmp(url, "https://", 8) == 0;
    const char *h = v->tls ? url + 8 : strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
    size_t hl = h ? strcspn(h, "/?#") : 0;
    const char *at = h ? memchr(h, '@', hl) : NULL;
    if (at) {
        hl -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    const char *port = v->tls ? "443" : "80";
    size_t pl = strlen(port);
    size_t hostl = hl;
    const char *host = h;
    if (h && hl && h[0] == '[') { /* [v6]:port */
        const char *e = memchr(h, ']', hl);
        if (!e) {
            free(v->name);
            return 0;
        }
        host = h + 1;
        hostl = (size_t)(e - host);
        if ((size_t)(e + 1 - h) < hl && e[1] == ':')
            port = e + 2, pl = hl - (size_t)(e + 2 - h);
    } else if (h) {
        const char *c = memchr(h, ':', hl);
        if (c) {
            hostl = (size_t)(c - h);
            port = c + 1, pl = hl - hostl - 1;
        }
    }
    int pok = pl > 0 && pl <= 5;
    for (size_t i = 0; pok && i < pl; i++)
        pok = port[i] >= '0' && port[i] <= '9';
    if (!h || hostl == 0 || !pok || atoi(port) < 1 || atoi(port) > 65535) {
        free(v->name);
        return 0;
    }
    v->host = strndup(host, hostl);
    v->port = strndup(port, pl);
    if (!v->host || !v->port) {
        free(v->name);
        free(v->host);
        free(v->port);
        return -1;
    }
    st->nhttp++;
    return 0;
}

static int http_init(hs_streams *st) {
    size_t n = st->conf.nhttp + 1;
    if (!(st->http = calloc(n, sizeof *st->http)))
        return -1;
    for (size_t i = 0; i < st->conf.nhttp; i++)
        if (st->conf.http[i].name && *st->conf.http[i].name && st->conf.http[i].url &&
            http_add(st, st->conf.http[i].name, st->conf.http[i].url) != 0)
            return -1;
    if (st->conf.http_default && *st->conf.http_default &&
        http_add(st, "", st->conf.http_default) != 0)
        return -1;
    return 0;
}

hs_streams *hs_streams_new(uv_loop_t *loop, const hs_streams_conf *conf) {
    hs_streams *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->conf = *conf;
    if (http_init(st) != 0) {
        http_free(st);
        free(st);
        return NULL;
    }
    st->loop = loop;
    st->conf = *conf;
    if (!st->conf.max_streams)
        st->conf.max_streams = HS_STREAMS_MAX_DEFAULT;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    st->timer_open = 1;
    gauge(st);
    if (M(st)) {
        gp_metric_add(M(st)->streams_opened, "ok", 0);
        gp_metric_add(M(st)->stream_bytes, "from_service", 0);
        gp_metric_add(M(st)->stream_bytes, "to_service", 0);
    }
    return st;
}

size_t hs_streams_open_count(const hs_streams *st) {
    return st->nlive;
}

size_t hs_streams_record_count(const hs_streams *st) {
    return st->nrec;
}

static void stop_one(hs_tcp *s, void *ud) {
    (void)ud;
    s->opened_due = s->rst_due = s->final_ack_due = 0;
    if (s->state != TS_DEAD) {
        hs_log(HS_LOG_INFO, "stream_close", "sid=%s service=%s reason=shutdown", qsid(s),
               hs_qs(s->service));
        hs_st_go_dead(s, 1);
    }
}

void hs_streams_stop(hs_streams *st) {
    if (!st || st->stopping)
        return;
    st->stopping = 1;
    st->up = 0;
    each(st, stop_one, NULL);
    if (st->timer_open) {
        uv_close((uv_handle_t *)&st->timer, NULL);
        st->timer_open = 0;
    }
}

void hs_streams_free(hs_streams *st) {
    if (!st)
        return;
    for (unsigned b = 0; b < NBUCKETS; b++)
        while (st->buckets[b])
            unlink_free(st->buckets[b]);
    hs_zstate_free(st->zs_own);
    free(st->scratch);
    http_free(st);
    SSL_CTX_free(st->tls_ctx);
    free(st->tls_rd);
    free(st);
}
