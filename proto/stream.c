/* stream.c — one endpoint of a TCP stream through Redis (proto/STREAMS.md). Pure: offsets,
 * credit and timers as numbers; the caller does the I/O. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static const char *const reason_names[] = {
    [GP_SR_NONE] = "none",       [GP_SR_MALFORMED] = "malformed", [GP_SR_GAP] = "gap",
    [GP_SR_WINDOW] = "window",   [GP_SR_BAD_ACK] = "bad_ack",     [GP_SR_IDLE] = "idle",
    [GP_SR_PEER] = "peer_reset", [GP_SR_LOCAL] = "closed",
};

const char *gp_stream_reason_name(gp_stream_reason r) {
    if ((unsigned)r >= sizeof reason_names / sizeof *reason_names)
        return "unknown";
    return reason_names[r];
}

int gp_stream_init(gp_stream *s, uint64_t now_ms, uint32_t window, uint32_t idle_ms) {
    if (window < GP_STREAM_WIN_MIN || window > GP_STREAM_WIN_MAX || idle_ms < GP_STREAM_IDLE_MIN ||
        idle_ms > GP_STREAM_IDLE_MAX)
        return GP_ERR_INVALID;
    memset(s, 0, sizeof *s);
    s->snd_win = s->rcv_win = window;
    s->idle_ms = idle_ms;
    s->last_rx_ms = s->last_ack_ms = now_ms;
    return GP_OK;
}

/* A reset is final: the first reason stays. */
static int fail(gp_stream *s, gp_stream_reason why) {
    if (s->reset == GP_SR_NONE)
        s->reset = why;
    return GP_ERR_MALFORMED;
}

/* --- receiving -------------------------------------------------------------------------- */

/* The fin of an entry ending at `end`: consistent with what we know of the peer's end. */
static int check_fin(const gp_stream *s, uint64_t end, int fin) {
    if (s->rcv_fin && (end > s->rcv_fin_off || (fin && end != s->rcv_fin_off)))
        return -1; /* bytes after the fin, or a second fin elsewhere */
    if (fin && !s->rcv_fin && end < s->rcv_next)
        return -1; /* a fin before bytes already delivered */
    return 0;
}

int gp_stream_on_data(gp_stream *s, uint64_t now_ms, uint64_t off, size_t len, int fin,
                      size_t *skip, size_t *take) {
    *skip = *take = 0;
    if (s->reset != GP_SR_NONE)
        return GP_ERR_STATE;
    if (off > GP_STREAM_OFF_MAX || (uint64_t)len > GP_STREAM_OFF_MAX - off)
        return fail(s, GP_SR_MALFORMED);
    uint64_t end = off + len;
    if (off > s->rcv_next)
        return fail(s, GP_SR_GAP);
    if (end > s->rcv_acked + s->rcv_win)
        return fail(s, GP_SR_WINDOW);
    if (check_fin(s, end, fin) < 0)
        return fail(s, GP_SR_MALFORMED);
    s->last_rx_ms = now_ms;
    if (end > s->rcv_next) {
        *skip = (size_t)(s->rcv_next - off);
        *take = (size_t)(end - s->rcv_next);
        s->rcv_next = end;
    } else {
        *skip = len; /* wholly a replay */
    }
    if (fin && !s->rcv_fin) {
        s->rcv_fin = 1;
        s->rcv_fin_off = end;
    }
    return GP_OK;
}

int gp_stream_consumed(gp_stream *s, uint64_t n) {
    if (n > s->rcv_next - s->rcv_consumed)
        return GP_ERR_INVALID;
    s->rcv_consumed += n;
    return GP_OK;
}

int gp_stream_ack_due(const gp_stream *s, uint64_t now_ms, int flush, uint64_t *ack) {
    *ack = s->rcv_consumed;
    if (s->reset != GP_SR_NONE)
        return 0;
    uint64_t fresh = s->rcv_consumed - s->rcv_acked;
    if (fresh >= s->rcv_win / 4 && fresh > 0)
        return 1;
    if (s->rcv_fin && s->rcv_consumed == s->rcv_fin_off && fresh > 0)
        return 1;
    if (flush && fresh > 0)
        return 1;
    return now_ms >= s->last_ack_ms && now_ms - s->last_ack_ms >= s->idle_ms / 3; /* keep-alive */
}

void gp_stream_ack_written(gp_stream *s, uint64_t now_ms, uint64_t ack) {
    if (ack > s->rcv_acked && ack <= s->rcv_consumed)
        s->rcv_acked = ack;
    s->last_ack_ms = now_ms;
}

int gp_stream_grow_window(gp_stream *s, uint32_t win) {
    if (win < s->rcv_win || win > GP_STREAM_WIN_MAX)
        return GP_ERR_INVALID;
    s->rcv_win = win;
    return GP_OK;
}

/* --- sending ---------------------------------------------------------------------------- */

int gp_stream_on_ack(gp_stream *s, uint64_t now_ms, uint64_t ack, uint32_t win) {
    if (s->reset != GP_SR_NONE)
        return GP_ERR_STATE;
    if (ack > s->snd_high)
        return fail(s, GP_SR_BAD_ACK);
    if (win && (win < GP_STREAM_WIN_MIN || win > GP_STREAM_WIN_MAX))
        return fail(s, GP_SR_MALFORMED);
    s->last_rx_ms = now_ms;
    if (win > s->snd_win)
        s->snd_win = win; /* a smaller one is stale: credit once given is not taken back */
    if (ack > s->snd_acked)
        s->snd_acked = ack;
    if (s->snd_next < s->snd_acked)
        s->snd_next = s->snd_acked; /* after a resume: the peer already has these */
    return GP_OK;
}

uint64_t gp_stream_can_send(const gp_stream *s) {
    if (s->reset != GP_SR_NONE)
        return 0;
    uint64_t limit = s->snd_acked + s->snd_win;
    if (limit > GP_STREAM_OFF_MAX)
        limit = GP_STREAM_OFF_MAX;
    if (s->snd_fin && limit > s->snd_fin_off)
        limit = s->snd_fin_off; /* after a resume: the bytes up to our fin, written again */
    return limit > s->snd_next ? limit - s->snd_next : 0;
}

int gp_stream_sent(gp_stream *s, uint64_t now_ms, uint64_t n) {
    (void)now_ms;
    if (n > gp_stream_can_send(s))
        return GP_ERR_INVALID;
    s->snd_next += n;
    if (s->snd_next > s->snd_high)
        s->snd_high = s->snd_next;
    return GP_OK;
}

int gp_stream_close(gp_stream *s) {
    if (s->reset != GP_SR_NONE || s->snd_fin)
        return GP_ERR_STATE;
    s->snd_fin = 1;
    s->snd_fin_off = s->snd_high; /* after a resume, the bytes still to write again count */
    return GP_OK;
}

int gp_stream_fin_due(const gp_stream *s) {
    return s->reset == GP_SR_NONE && s->snd_fin && !s->snd_fin_written;
}

void gp_stream_fin_written(gp_stream *s, uint64_t now_ms) {
    (void)now_ms;
    if (s->snd_fin)
        s->snd_fin_written = 1;
}

uint64_t gp_stream_resume(gp_stream *s) {
    s->snd_next = s->snd_acked;
    s->snd_fin_written = 0;
    return s->snd_next;
}

/* --- the whole stream ------------------------------------------------------------------- */

void gp_stream_on_rst(gp_stream *s, uint64_t now_ms, const char *reason) {
    s->last_rx_ms = now_ms;
    if (s->reset != GP_SR_NONE)
        return;
    s->reset = GP_SR_PEER;
    snprintf(s->rst_reason, sizeof s->rst_reason, "%s", reason ? reason : "");
}

void gp_stream_reset(gp_stream *s, gp_stream_reason why) {
    if (s->reset == GP_SR_NONE)
        s->reset = why == GP_SR_NONE ? GP_SR_LOCAL : why;
}

int gp_stream_tick(gp_stream *s, uint64_t now_ms) {
    if (s->reset != GP_SR_NONE || gp_stream_done(s))
        return 0;
    if (now_ms < s->last_rx_ms || now_ms - s->last_rx_ms < s->idle_ms)
        return 0; /* a clock before the last entry (the caller's clocks differ) is no timeout */
    s->reset = GP_SR_IDLE;
    return 1;
}

uint64_t gp_stream_next_timer(const gp_stream *s) {
    uint64_t idle = s->last_rx_ms + s->idle_ms, keep = s->last_ack_ms + s->idle_ms / 3;
    return idle < keep ? idle : keep;
}

int gp_stream_done(const gp_stream *s) {
    if (s->reset != GP_SR_NONE)
        return 1;
    int sent_all = s->snd_fin && s->snd_fin_written && s->snd_acked == s->snd_fin_off;
    int got_all = s->rcv_fin && s->rcv_next == s->rcv_fin_off &&
                  s->rcv_consumed == s->rcv_fin_off && s->rcv_acked == s->rcv_fin_off;
    return sent_all && got_all;
}

/* --- entries ---------------------------------------------------------------------------- */

/* A decimal without sign or leading zeros, at most max. */
static int parse_u64(gp_str v, uint64_t max, uint64_t *out) {
    if (v.len == 0 || v.len > 20 || (v.len > 1 && v.p[0] == '0'))
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (x > (max - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int parse_u32_in(gp_str v, uint32_t lo, uint32_t hi, uint32_t *out) {
    uint64_t x;
    if (parse_u64(v, hi, &x) < 0 || x < lo)
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static int reason_ok(gp_str v) {
    if (v.len == 0 || v.len > GP_STREAM_REASON_MAX)
        return 0;
    for (size_t i = 0; i < v.len; i++)
        if (!((v.p[i] >= 'a' && v.p[i] <= 'z') || v.p[i] == '_'))
            return 0;
    return 1;
}

static int printable(gp_str v, size_t max) {
    if (v.len > max)
        return 0;
    for (size_t i = 0; i < v.len; i++)
        if (v.p[i] < 0x20 || v.p[i] > 0x7e)
            return 0;
    return 1;
}

static int id_ok(gp_str v) {
    return gp_name_ok(v, GP_STREAM_ID_MAX);
}

int gp_stream_service_ok(gp_str v) {
    if (v.len > GP_STREAM_ID_MAX)
        return 0;
    if (v.len >= 5 && memcmp(v.p, "http:", 5) == 0) { /* an HTTP upstream of the house */
        if (v.len == 5)
            return 1; /* its default one */
        return id_ok((gp_str){v.p + 5, v.len - 5});
    }
    return id_ok(v);
}

/* Field names of a byte entry, bit i of `seen`. */
static const char *const entry_names[] = {"off", "data", "fin", "ack", "win", "rst", "message"};
enum { F_OFF, F_DATA, F_FIN, F_ACK, F_WIN, F_RST, F_MESSAGE, F_N };

static int field_index(gp_str name, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (gp_str_eq(name, names[i]))
            return i;
    return -1;
}

/* The walk both parsers make over an entry's fields: each one named in names[0..count) goes to
 * set(obj, i, value) once, bit i of *seen marking it; other names are skipped (room to grow).
 * Too many fields, a repeated one or one set refuses is GP_ERR_MALFORMED, said in err. */
static int read_fields(const gp_stream_field *f, size_t n, const char *const *names, int count,
                       int (*set)(void *obj, int i, gp_str v), void *obj, unsigned *seen, char *err,
                       size_t errlen) {
    if (n > GP_STREAM_FIELDS_MAX) {
        gp_errf(err, errlen, "more than %d fields", GP_STREAM_FIELDS_MAX);
        return GP_ERR_MALFORMED;
    }
    *seen = 0;
    for (size_t k = 0; k < n; k++) {
        int i = field_index(f[k].name, names, count);
        if (i < 0)
            continue;
        if (*seen & (1u << i)) {
            gp_errf(err, errlen, "field %s repeated", names[i]);
            return GP_ERR_MALFORMED;
        }
        *seen |= 1u << i;
        if (set(obj, i, f[k].value) < 0) {
            gp_errf(err, errlen, "bad %s", names[i]);
            return GP_ERR_MALFORMED;
        }
    }
    return GP_OK;
}

/* The rules between fields, shared by the parser and the builder. */
static const char *entry_rules(const gp_stream_entry *e, int has_data, int has_message) {
    int has_rst = e->rst[0] != '\0';
    if ((has_data || e->fin) && !e->has_off)
        return has_data ? "data without off" : "fin without off";
    if (has_rst && (e->has_off || e->has_win))
        return "rst with data, fin or win";
    if (has_message && !has_rst)
        return "message without rst";
    if (!e->has_off && !e->has_ack && !e->has_win && !has_rst)
        return "no off, ack, win or rst";
    if (e->has_off && (e->off > GP_STREAM_OFF_MAX || e->data.len > GP_STREAM_DATA_MAX ||
                       e->data.len > GP_STREAM_OFF_MAX - e->off))
        return "off+data past the largest offset";
    return NULL;
}

static int entry_field(void *obj, int i, gp_str v) {
    gp_stream_entry *e = obj;
    switch (i) {
    case F_OFF:
        e->has_off = 1;
        return parse_u64(v, GP_STREAM_OFF_MAX, &e->off);
    case F_DATA:
        e->data = v;
        return v.len <= GP_STREAM_DATA_MAX ? 0 : -1;
    case F_FIN:
        e->fin = 1;
        return gp_str_eq(v, "1") ? 0 : -1;
    case F_ACK:
        e->has_ack = 1;
        return parse_u64(v, GP_STREAM_OFF_MAX, &e->ack);
    case F_WIN:
        e->has_win = 1;
        return parse_u32_in(v, GP_STREAM_WIN_MIN, GP_STREAM_WIN_MAX, &e->win);
    case F_RST:
        if (!reason_ok(v))
            return -1;
        memcpy(e->rst, v.p, v.len);
        e->rst[v.len] = '\0';
        return 0;
    case F_MESSAGE:
        e->message = v;
        return printable(v, GP_STREAM_MESSAGE_MAX) ? 0 : -1;
    }
    return -1;
}

int gp_stream_entry_parse(gp_stream_entry *e, const gp_stream_field *f, size_t n, char *err,
                          size_t errlen) {
    memset(e, 0, sizeof *e);
    unsigned seen;
    int rc = read_fields(f, n, entry_names, F_N, entry_field, e, &seen, err, errlen);
    if (rc != GP_OK)
        return rc;
    const char *why = entry_rules(e, !!(seen & (1u << F_DATA)), !!(seen & (1u << F_MESSAGE)));
    if (why) {
        gp_errf(err, errlen, "%s", why);
        return GP_ERR_MALFORMED;
    }
    return GP_OK;
}

/* Formats x into the scratch space at *sp; sets *bad when it does not fit. */
static gp_str put_num(char **sp, char *end, uint64_t x, int *bad) {
    int w = snprintf(*sp, (size_t)(end - *sp), "%llu", (unsigned long long)x);
    if (w < 0 || w >= end - *sp) {
        *bad = 1;
        return GP_STR_LIT("");
    }
    gp_str r = {(const uint8_t *)*sp, (size_t)w};
    *sp += w + 1;
    return r;
}

int gp_stream_entry_build(const gp_stream_entry *e, gp_stream_field *out, char *scratch,
                          size_t scratch_len) {
    gp_str rst = gp_str_c(e->rst);
    if (entry_rules(e, e->data.len > 0, e->message.len > 0) ||
        (e->has_win && (e->win < GP_STREAM_WIN_MIN || e->win > GP_STREAM_WIN_MAX)) ||
        (e->has_ack && e->ack > GP_STREAM_OFF_MAX) || (rst.len && !reason_ok(rst)) ||
        !printable(e->message, GP_STREAM_MESSAGE_MAX))
        return GP_ERR_INVALID;
    char *sp = scratch, *end = scratch + scratch_len;
    int n = 0, bad = 0;
    if (e->has_off) {
        out[n++] = (gp_stream_field){GP_STR_LIT("off"), put_num(&sp, end, e->off, &bad)};
        out[n++] = (gp_stream_field){GP_STR_LIT("data"), e->data};
        if (e->fin)
            out[n++] = (gp_stream_field){GP_STR_LIT("fin"), GP_STR_LIT("1")};
    }
    if (e->has_ack)
        out[n++] = (gp_stream_field){GP_STR_LIT("ack"), put_num(&sp, end, e->ack, &bad)};
    if (e->has_win)
        out[n++] = (gp_stream_field){GP_STR_LIT("win"), put_num(&sp, end, e->win, &bad)};
    if (rst.len) {
        out[n++] = (gp_stream_field){GP_STR_LIT("rst"), rst};
        if (e->message.len)
            out[n++] = (gp_stream_field){GP_STR_LIT("message"), e->message};
    }
    return bad ? GP_ERR_BUFFER : n; /* GP_ERR_BUFFER: scratch too small for a number */
}

int gp_stream_apply(gp_stream *s, uint64_t now_ms, const gp_stream_entry *e, size_t *skip,
                    size_t *take) {
    *skip = *take = 0;
    if (s->reset != GP_SR_NONE)
        return GP_ERR_STATE;
    if (e->rst[0]) {
        gp_stream_on_rst(s, now_ms, e->rst);
        return GP_OK;
    }
    if (e->has_ack || e->has_win) {
        int rc = gp_stream_on_ack(s, now_ms, e->has_ack ? e->ack : s->snd_acked,
                                  e->has_win ? e->win : 0);
        if (rc < 0)
            return rc;
    }
    if (e->has_off)
        return gp_stream_on_data(s, now_ms, e->off, e->data.len, e->fin, skip, take);
    return GP_OK;
}

/* Field names of an open entry. */
static const char *const open_names[] = {"kind",    "id",         "service", "window",
                                         "idle_ms", "timeout_ms", "reply"};
enum { O_KIND, O_ID, O_SERVICE, O_WINDOW, O_IDLE, O_TIMEOUT, O_REPLY, O_N };

static int open_field(void *obj, int i, gp_str v) {
    gp_stream_open *o = obj;
    switch (i) {
    case O_KIND:
        return gp_str_eq(v, "stream") ? 0 : -1;
    case O_ID:
        o->id = v;
        return id_ok(v) ? 0 : -1;
    case O_SERVICE:
        o->service = v;
        return gp_stream_service_ok(v) ? 0 : -1;
    case O_WINDOW:
        return parse_u32_in(v, GP_STREAM_WIN_MIN, GP_STREAM_WIN_MAX, &o->window);
    case O_IDLE:
        return parse_u32_in(v, GP_STREAM_IDLE_MIN, GP_STREAM_IDLE_MAX, &o->idle_ms);
    case O_TIMEOUT:
        return parse_u32_in(v, 1, 86400000u, &o->timeout_ms);
    case O_REPLY:
        o->reply = v;
        o->has_reply = 1;
        return v.len <= 256 ? 0 : -1;
    }
    return -1;
}

int gp_stream_open_parse(gp_stream_open *o, const gp_stream_field *f, size_t n, char *err,
                         size_t errlen) {
    memset(o, 0, sizeof *o);
    o->window = GP_STREAM_WIN_DEFAULT;
    o->idle_ms = GP_STREAM_IDLE_DEFAULT;
    o->timeout_ms = 30000;
    unsigned seen;
    int rc = read_fields(f, n, open_names, O_N, open_field, o, &seen, err, errlen);
    if (rc != GP_OK)
        return rc;
    for (int i = O_KIND; i <= O_SERVICE; i++)
        if (!(seen & (1u << i))) {
            gp_errf(err, errlen, "missing %s", open_names[i]);
            return GP_ERR_MALFORMED;
        }
    return GP_OK;
}

size_t gp_stream_printable(char *out, size_t cap, const char *msg) {
    size_t max = cap - 1 < GP_STREAM_MESSAGE_MAX ? cap - 1 : GP_STREAM_MESSAGE_MAX, n = 0;
    for (; msg && msg[n] && n < max; n++)
        out[n] = msg[n] >= 0x20 && msg[n] <= 0x7e ? msg[n] : '?';
    out[n] = '\0';
    return n;
}

int gp_stream_marks_push(gp_stream_marks *m, const char *id, size_t idlen, uint64_t end,
                         size_t max) {
    if (idlen >= GP_STREAM_MARK_ID)
        return GP_OK;
    if (max && m->n >= max) {
        m->head++;
        m->n--;
    }
    if (m->head + m->n == m->cap && m->head > 0) { /* room at the front: move down */
        memmove(m->v, m->v + m->head, m->n * sizeof *m->v);
        m->head = 0;
    }
    if (gp_grow(&m->v, &m->cap, m->head + m->n + 1, 16, sizeof *m->v) != 0)
        return GP_ERR_NOMEM;
    gp_stream_mark *k = &m->v[m->head + m->n++];
    memcpy(k->id, id, idlen);
    k->id[idlen] = '\0';
    k->end = end;
    return GP_OK;
}

int gp_stream_marks_due(const gp_stream_marks *m, uint64_t below) {
    return m->n && m->v[m->head].end <= below;
}

size_t gp_stream_marks_take(gp_stream_marks *m, uint64_t below, char ids[][GP_STREAM_MARK_ID],
                            size_t max) {
    size_t k = 0;
    while (k < max && gp_stream_marks_due(m, below)) {
        memcpy(ids[k++], m->v[m->head].id, GP_STREAM_MARK_ID);
        m->head++;
        m->n--;
    }
    if (m->n == 0)
        m->head = 0;
    return k;
}

void gp_stream_marks_free(gp_stream_marks *m) {
    free(m->v);
    *m = (gp_stream_marks){0};
}
