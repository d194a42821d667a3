/* front_ws.c — WebSockets through the front door (front.c; README.md "The HTTP front door").
 *
 * `Upgrade: websocket` goes to the house's HTTP upstream as bytes: one stream of
 * proto/STREAMS.md (service `http:<service>`) is opened with an XADD on the house's request
 * stream, its outcome read from its reply key (an error is answered as any request's); then the
 * client's connection is taken over from the HTTP server (gp_admin_call_takeover), the request
 * head goes first on sin, and bytes flow both ways: the client's into sin entries below the
 * house's credit (its reading stops when out of credit), sout's to the client, acknowledged
 * once handed to it (sout is not read while the client has over FR_MAX_QUEUED queued). The
 * upstream's own 101 comes back through sout. Client EOF: our fin; the house's fin: the
 * client's write side shut; either side's rst: the connection closed. */
#include "../log.h"
#include "front.h"
#include "front_int.h"
#include "list.h"
#include "stream.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* WebSockets (an Upgrade carried over a TCP stream of proto/STREAMS.md, to the house's HTTP
 * upstream): each holds a reader connection for its sout, so at most half the pool. */
#define FR_WS_MAX (FR_MAX_READERS / 2)
#define FR_WS_CHUNK (64u << 10)   /* data bytes a sin entry (STREAMS.md: writers use 64 KiB) */
#define FR_WS_IN_MAX (256u << 10) /* client bytes held for sin: its reading stops past this */
#define FR_WS_READ_COUNT 64       /* sout entries an XREAD */
#define FR_WS_XDEL_BATCH (BR_ARGS_MAX - 2) /* ids an XDEL: what a br_args holds (else abort) */
#define FR_WS_LINGER_MS 10000 /* an ended WebSocket's queued bytes, then its connection closes */

enum { WS_OPENING, WS_OPEN };

/* A WebSocket: the client's connection (taken over from the HTTP server once the stream is
 * open) joined to a TCP stream to the house's HTTP upstream; the opener's endpoint of
 * STREAMS.md (gp_stream) decides credit, acks, fin, reset and idle. */
struct fr_ws {
    fr_ws *prev, *next; /* br_front's list */
    br_front *f;
    fr_req *rq;          /* the read chain (open outcome, then sout); NULL once it ended */
    gp_admin_conn *conn; /* the client's, once taken over; NULL once released */
    gp_stream s;
    int phase;
    char sid[33];
    char house[FR_HOUSE_MAX + 1];
    char kin[GP_KEY_MAX], kout[GP_KEY_MAX];
    /* client -> sin: bytes read, not yet written (the request head first) */
    uint8_t *ib;
    size_t ilen, icap;
    int in_eof, xadd_busy, reading;
    int client_eof; /* the client's input really ended (in_eof is also set when declined) */
    /* Until the upstream's answer begins "HTTP/1.x 101", nothing but the request head goes to
     * it: a refused upgrade (any other status) gets the head alone, then our fin, so that the
     * connection can carry no further request past the door's routing and X-Forwarded-*. */
    size_t head_left; /* bytes of the head (and body) not yet written */
    int switched;     /* 0: not known yet, 1: 101 seen, -1: declined */
    char status[12];  /* the answer's first bytes */
    size_t status_len;
    uint64_t xadd_end; /* the offset after the data XADD in flight */
    int xadd_fin;      /* it carries our fin */
    int xadd_bare;     /* it is a bare fin: never trimmed (an ack of its offset may predate it) */
    gp_stream_marks ents; /* our sin data entries not yet trimmed, oldest first */
    char last_ack_id[48]; /* our last ack-only entry: deleted when the next supersedes it */
    int paused;           /* sout not read while the client has over FR_MAX_QUEUED queued */
    int over, rst_sent, out_shut, refused, counted;
    uint64_t t0, over_at;
    uint64_t bytes_in, bytes_out;
    int refs; /* the read chain, the client's connection, each XADD in flight */
};

int fr_ws_open(const fr_ws *ws) {
    return ws->phase == WS_OPEN;
}

static void ws_noop(redisReply *r, void *ud) {
    (void)r, (void)ud;
}

void fr_ws_count(br_front *f, const char *outcome) {
    if (f->m_upgrades)
        gp_metric_inc(f->m_upgrades, outcome);
}

static void ws_unref(fr_ws *ws) {
    if (--ws->refs > 0)
        return;
    br_front *f = ws->f;
    GP_LIST_UNLINK(f->ws_head, f->ws_tail, ws, prev, next);
    f->nws--;
    free(ws->ib);
    gp_stream_marks_free(&ws->ents);
    free(ws);
    if (f->stopping && f->inflight == 0 && f->nws == 0)
        fr_front_free(f);
}

/* XADD kin * fields, then PEXPIRE kin 2 x idle (the key of an abandoned stream expires). */
static int ws_xadd(fr_ws *ws, const gp_stream_entry *e, br_redis_fn fn, void *ud) {
    gp_stream_field fl[GP_STREAM_FIELDS_MAX];
    char scratch[96];
    int n = gp_stream_entry_build(e, fl, scratch, sizeof scratch);
    if (n < 0)
        return -1;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XADD");
    br_args_str(&a, ws->kin);
    br_args_str(&a, "*");
    for (int i = 0; i < n; i++) {
        br_args_bin(&a, fl[i].name.p, fl[i].name.len);
        br_args_bin(&a, fl[i].value.len ? (const void *)fl[i].value.p : "", fl[i].value.len);
    }
    if (br_db_cmd(ws->f->cfg.db, fn, ud, &a) != 0)
        return -1;
    br_args_init(&a);
    br_args_str(&a, "PEXPIRE");
    br_args_str(&a, ws->kin);
    br_args_u64(&a, 2ull * (ws->phase == WS_OPEN ? ws->s.idle_ms : GP_STREAM_IDLE_DEFAULT));
    (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
    return 0;
}

static void ws_end(fr_ws *ws);

/* Our rst on sin (once; not after the house's own), with a printable message. */
static void ws_send_rst(fr_ws *ws, const char *reason, const char *message) {
    if (ws->rst_sent || ws->s.reset == GP_SR_PEER)
        return;
    ws->rst_sent = 1;
    gp_stream_entry e = {0};
    snprintf(e.rst, sizeof e.rst, "%s", reason);
    char msg[GP_STREAM_MESSAGE_MAX + 1];
    e.message = (gp_str){(const uint8_t *)msg, gp_stream_printable(msg, sizeof msg, message)};
    if (ws_xadd(ws, &e, ws_noop, NULL) != 0)
        return;
    br_args a; /* over: the key stays a minute for late readers (STREAMS.md), then goes */
    br_args_init(&a);
    br_args_str(&a, "PEXPIRE");
    br_args_str(&a, ws->kin);
    br_args_str(&a, "60000");
    (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
}

/* Resets the stream (reason: a token of STREAMS.md) and closes the client's connection. */
static void ws_reset(fr_ws *ws, gp_stream_reason why, const char *reason, const char *message) {
    if (ws->over)
        return;
    br_logr(BR_LOG_WARN, "http_websocket_reset", "house=%s sid=%s reason=%s message=%s", ws->house,
            ws->sid, reason, br_qs(message));
    if (ws->s.reset == GP_SR_NONE)
        gp_stream_reset(&ws->s, why);
    ws_send_rst(ws, reason, message);
    if (ws->conn)
        gp_admin_raw_close(ws->conn);
    ws_end(ws);
}

static void ws_close_now(void *ud) {
    fr_ws *ws = ud;
    if (ws->conn)
        gp_admin_raw_close(ws->conn);
}

/* Over: nothing more is read or written; the client's connection closes once its queued
 * bytes are out (at most FR_WS_LINGER_MS: the sweep). */
static void ws_end(fr_ws *ws) {
    if (ws->over)
        return;
    ws->over = 1;
    ws->over_at = uv_now(ws->f->cfg.loop);
    if (ws->counted) {
        ws->counted = 0;
        ws->f->nws_open--;
        if (ws->f->m_ws)
            gp_metric_set(ws->f->m_ws, NULL, ws->f->nws_open);
    }
    if (ws->phase == WS_OPEN)
        br_log(BR_LOG_INFO, "http_websocket_closed",
               "house=%s sid=%s bytes_in=%llu bytes_out=%llu ms=%llu reset=%s", ws->house, ws->sid,
               (unsigned long long)ws->bytes_in, (unsigned long long)ws->bytes_out,
               (unsigned long long)(ws->over_at - ws->t0),
               ws->s.reset == GP_SR_NONE   ? "none"
               : ws->s.reset == GP_SR_PEER ? ws->s.rst_reason
                                           : gp_stream_reason_name(ws->s.reset));
    if (!ws->conn)
        return;
    if (ws->out_shut && !ws->client_eof && ws->s.reset == GP_SR_NONE) {
        /* A clean end while the client still sends (a declined upgrade): what it sends is read
         * and dropped until its EOF or FR_WS_LINGER_MS (the sweep), as the HTTP server lingers:
         * closing with unread bytes would reset the connection and could lose our last bytes. */
        ws->reading = 1;
        gp_admin_raw_reading(ws->conn, 1);
        return;
    }
    if (gp_admin_raw_queued(ws->conn) == 0 ||
        gp_admin_raw_on_drain(ws->conn, 0, ws_close_now, ws) != 0)
        gp_admin_raw_close(ws->conn);
}

/* The read chain ended (status: the answer it gave, when it answered). Before the stream was
 * open: an rst on sin, so that an open delivered late closes at once (or is refused 409). */
void fr_ws_chain_over(fr_ws *ws, int status) {
    ws->rq = NULL;
    if (ws->phase == WS_OPENING && !ws->refused) {
        fr_ws_count(ws->f, status == 504 ? "timeout" : status == 503 ? "unavailable" : "gone");
        ws_send_rst(ws, status == 504 ? "timeout" : "closed",
                    "the front door gave up the open of this WebSocket");
    } else if (ws->phase == WS_OPEN && !ws->over) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door stopped reading this stream");
    }
    ws_end(ws);
    ws_unref(ws);
}

static void ws_kick(fr_ws *ws);

static void ws_reading(fr_ws *ws) {
    int on = ws->conn && !ws->over && !ws->in_eof && ws->ilen < FR_WS_IN_MAX / 2;
    int off = ws->ilen >= FR_WS_IN_MAX;
    if (ws->conn && on && !ws->reading) {
        ws->reading = 1;
        gp_admin_raw_reading(ws->conn, 1); /* may deliver held bytes at once */
    } else if (ws->conn && off && ws->reading) {
        ws->reading = 0;
        gp_admin_raw_reading(ws->conn, 0);
    }
}

/* A data (or fin) XADD on sin was answered. */
static void ws_on_sin(redisReply *r, void *ud) {
    fr_ws *ws = ud;
    ws->xadd_busy = 0;
    if (!ws->over && (!r || r->type != REDIS_REPLY_STRING || r->len >= 48)) {
        br_logr(BR_LOG_WARN, "http_websocket_xadd_failed", "house=%s sid=%s error=%s", ws->house,
                ws->sid,
                r && r->type == REDIS_REPLY_ERROR ? br_q(r->str, r->len) : "\"no answer\"");
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door lost Redis");
    } else if (!ws->over) {
        if (ws->xadd_fin)
            gp_stream_fin_written(&ws->s, uv_now(ws->f->cfg.loop));
        if (ws->xadd_bare) { /* it stays until the keys expire */
            ws_reading(ws);
            ws_kick(ws);
            ws_unref(ws);
            return;
        }
        if (gp_stream_marks_push(&ws->ents, r->str, r->len, ws->xadd_end, 0) != GP_OK) {
            ws_reset(ws, GP_SR_LOCAL, "closed", "out of memory");
            ws_unref(ws);
            return;
        }
        ws_reading(ws);
        ws_kick(ws);
    }
    ws_unref(ws);
}

/* Writes what the client sent, below the house's credit, one entry at a time; the fin once
 * the client's input ended and everything before it is written. */
static void ws_kick(fr_ws *ws) {
    if (ws->over || ws->xadd_busy || ws->phase != WS_OPEN || ws->s.reset != GP_SR_NONE)
        return;
    uint64_t now = uv_now(ws->f->cfg.loop), credit = gp_stream_can_send(&ws->s);
    size_t n = ws->ilen;
    if (ws->switched == 0 && n > ws->head_left)
        n = ws->head_left; /* the rest waits for the 101 */
    if (n > credit)
        n = (size_t)credit;
    if (n > FR_WS_CHUNK)
        n = FR_WS_CHUNK;
    int closing = ws->in_eof && n == ws->ilen && !ws->s.snd_fin;
    if (n == 0 && !closing && !gp_stream_fin_due(&ws->s))
        return;
    gp_stream_entry e = {.has_off = 1, .off = ws->s.snd_next, .data = {ws->ib, n}};
    if (n && gp_stream_sent(&ws->s, now, n) != 0)
        return;
    if (closing && gp_stream_close(&ws->s) != 0)
        return;
    e.fin = gp_stream_fin_due(&ws->s);
    ws->xadd_end = ws->s.snd_next;
    ws->xadd_fin = e.fin;
    ws->xadd_bare = n == 0;
    if (ws_xadd(ws, &e, ws_on_sin, ws) != 0) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door could not write to Redis");
        return;
    }
    ws->refs++;
    ws->xadd_busy = 1;
    ws->bytes_in += n;
    ws->head_left -= n < ws->head_left ? n : ws->head_left;
    memmove(ws->ib, ws->ib + n, ws->ilen - n);
    ws->ilen -= n;
    ws_reading(ws);
}

static void ws_on_data(void *ud, const void *p, size_t len) {
    fr_ws *ws = ud;
    if (ws->over || ws->switched < 0)
        return; /* declined: the client's bytes go nowhere */
    if (ws->ilen + len > ws->icap) {
        size_t cap = ws->ilen + len + FR_WS_CHUNK;
        uint8_t *b = realloc(ws->ib, cap);
        if (!b) {
            ws_reset(ws, GP_SR_LOCAL, "closed", "out of memory");
            return;
        }
        ws->ib = b, ws->icap = cap;
    }
    memcpy(ws->ib + ws->ilen, p, len);
    ws->ilen += len;
    ws_kick(ws);
    ws_reading(ws);
}

static void ws_on_eof(void *ud) {
    fr_ws *ws = ud;
    ws->client_eof = 1;
    if (ws->over) { /* lingering: the client is done too */
        if (ws->conn && gp_admin_raw_queued(ws->conn) == 0)
            gp_admin_raw_close(ws->conn);
        else if (ws->conn && gp_admin_raw_on_drain(ws->conn, 0, ws_close_now, ws) != 0)
            gp_admin_raw_close(ws->conn);
        return;
    }
    ws->in_eof = 1;
    ws->reading = 0;
    ws_kick(ws);
}

static void ws_on_closed(void *ud) {
    fr_ws *ws = ud;
    ws->conn = NULL;
    if (!ws->over)
        ws_reset(ws, GP_SR_LOCAL, "closed", "the client's connection closed");
    ws_unref(ws);
}

/* XDEL key ids[0..n), FR_WS_XDEL_BATCH ids a command (best effort: what stays expires with
 * the key). */
static void ws_xdel(fr_ws *ws, const char *key, const char *const *ids, size_t n) {
    for (size_t i = 0; i < n;) {
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "XDEL");
        br_args_str(&a, key);
        for (size_t k = 0; k < FR_WS_XDEL_BATCH && i < n; k++)
            br_args_str(&a, ids[i++]);
        (void)br_db_cmd(ws->f->cfg.db, ws_noop, NULL, &a);
    }
}

/* Our ack-only entry was written: the one before it is superseded. */
static void ws_on_ack(redisReply *r, void *ud) {
    fr_ws *ws = ud;
    if (r && r->type == REDIS_REPLY_STRING && r->len < sizeof ws->last_ack_id) {
        if (ws->last_ack_id[0])
            ws_xdel(ws, ws->kin, (const char *const[]){ws->last_ack_id}, 1);
        memcpy(ws->last_ack_id, r->str, r->len);
        ws->last_ack_id[r->len] = '\0';
    } else if (!ws->over) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door lost Redis");
    }
    ws_unref(ws);
}

static void ws_write_ack(fr_ws *ws, int flush) {
    uint64_t now = uv_now(ws->f->cfg.loop), ack = 0;
    if (ws->over || !gp_stream_ack_due(&ws->s, now, flush, &ack))
        return;
    gp_stream_entry e = {.has_ack = 1, .ack = ack};
    if (ws_xadd(ws, &e, ws_on_ack, ws) != 0) {
        ws_reset(ws, GP_SR_LOCAL, "closed", "the front door could not write to Redis");
        return;
    }
    ws->refs++;
    gp_stream_ack_written(&ws->s, now, ack);
}

/* Deletes our sin entries the house acknowledged wholly. */
static void ws_trim(fr_ws *ws) {
    char ids[FR_WS_XDEL_BATCH][GP_STREAM_MARK_ID];
    const char *p[FR_WS_XDEL_BATCH];
    size_t n;
    while ((n = gp_stream_marks_take(&ws->ents, ws->s.snd_acked, ids, FR_WS_XDEL_BATCH)) > 0) {
        for (size_t k = 0; k < n; k++)
            p[k] = ids[k];
        ws_xdel(ws, ws->kin, p, n);
    }
}

static void ws_switched(fr_ws *ws, const uint8_t *p, size_t n);

/* One sout entry; *control: it holds only `ack`/`win` (read, it can go: STREAMS.md). 0 on, 1
 * the stream is over. */
static int ws_take(fr_ws *ws, const redisReply *fv, int *control) {
    gp_stream_field fl[GP_STREAM_FIELDS_MAX];
    char err[160];
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0 ||
        fv->elements / 2 > GP_STREAM_FIELDS_MAX) {
        ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout entry of unexpected shape");
        return 1;
    }
    size_t nf = fv->elements / 2;
    for (size_t i = 0; i < fv->elements; i++)
        if (fv->element[i]->type != REDIS_REPLY_STRING) {
            ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout field that is not a string");
            return 1;
        }
    for (size_t i = 0; i < nf; i++) {
        fl[i].name = (gp_str){(const uint8_t *)fv->element[2 * i]->str, fv->element[2 * i]->len};
        fl[i].value =
            (gp_str){(const uint8_t *)fv->element[2 * i + 1]->str, fv->element[2 * i + 1]->len};
    }
    gp_stream_entry e;
    if (gp_stream_entry_parse(&e, fl, nf, err, sizeof err) != 0) {
        ws_reset(ws, GP_SR_MALFORMED, "malformed", err);
        return 1;
    }
    *control = !e.has_off && !e.rst[0];
    size_t skip = 0, take = 0;
    int rc = gp_stream_apply(&ws->s, uv_now(ws->f->cfg.loop), &e, &skip, &take);
    if (ws->s.reset == GP_SR_PEER) {
        char m[GP_STREAM_MESSAGE_MAX + 1];
        snprintf(m, sizeof m, "%.*s", (int)e.message.len, (const char *)e.message.p);
        br_log(BR_LOG_INFO, "http_websocket_reset", "house=%s sid=%s by=house reason=%s message=%s",
               ws->house, ws->sid, ws->s.rst_reason, br_qs(m));
        if (ws->conn)
            gp_admin_raw_close(ws->conn);
        ws_end(ws);
        return 1;
    }
    if (rc != 0) {
        const char *why = gp_stream_reason_name(ws->s.reset);
        ws_reset(ws, ws->s.reset, why, "the front door refused an entry of sout");
        return 1;
    }
    if (take && ws->switched == 0)
        ws_switched(ws, e.data.p + skip, take);
    if (take) {
        if (ws->conn)
            (void)gp_admin_raw_write(ws->conn, e.data.p + skip, take);
        ws->bytes_out += take;
        if (gp_stream_consumed(&ws->s, take) != 0) { /* handed to the client: queued for it */
            ws_reset(ws, GP_SR_LOCAL, "closed", "internal error: consumed past delivered");
            return 1;
        }
    }
    return 0;
}

/* The first bytes of the upstream's answer: a 101 (the upgrade), or anything else (declined:
 * the client's input is dropped and our fin follows the head). */
static void ws_switched(fr_ws *ws, const uint8_t *p, size_t n) {
    size_t k = sizeof ws->status - ws->status_len;
    if (k > n)
        k = n;
    memcpy(ws->status + ws->status_len, p, k);
    ws->status_len += k;
    if (ws->status_len < sizeof ws->status)
        return;
    const char *st = ws->status;
    if (memcmp(st, "HTTP/1.", 7) == 0 && st[8] == ' ' && memcmp(st + 9, "101", 3) == 0) {
        ws->switched = 1;
        return;
    }
    ws->switched = -1;
    fr_ws_count(ws->f, "declined");
    char shown[sizeof ws->status + 1];
    for (size_t i = 0; i < sizeof ws->status; i++)
        shown[i] = st[i] >= 0x20 && st[i] < 0x7f ? st[i] : '?';
    shown[sizeof ws->status] = '\0';
    br_log(BR_LOG_INFO, "http_websocket_declined", "house=%s sid=%s answer=%s", ws->house, ws->sid,
           br_qs(shown));
    ws->ilen = 0;
    ws->head_left = 0;
    ws->in_eof = 1;
    if (ws->conn && ws->reading)
        gp_admin_raw_reading(ws->conn, 0);
    ws->reading = 0;
}

static void ws_on_drained(void *ud) {
    fr_ws *ws = ud;
    if (!ws->paused)
        return;
    ws->paused = 0;
    if (ws->rq)
        fr_issue_read(ws->rq);
}

/* After a batch of `got` sout entries: the house's fin, trim, credit, ack, idle, the end. */
static void ws_after(fr_ws *ws, size_t got) {
    uint64_t now = uv_now(ws->f->cfg.loop);
    if (!ws->out_shut && ws->s.rcv_fin && ws->s.rcv_consumed == ws->s.rcv_fin_off) {
        ws->out_shut = 1;
        if (ws->conn)
            gp_admin_raw_shutdown(ws->conn);
    }
    ws_trim(ws);
    ws_kick(ws);
    ws_write_ack(ws, got < FR_WS_READ_COUNT);
    if (ws->over)
        return;
    if (got == 0 && gp_stream_tick(&ws->s, now)) {
        ws_reset(ws, GP_SR_IDLE, "idle", "nothing from the house within idle_ms");
        return;
    }
    if (gp_stream_done(&ws->s))
        ws_end(ws); /* both fins delivered and acknowledged */
}

/* The open's outcome, on its reply key: 200, or an error answered as the request's. */
static void ws_on_outcome(fr_req *rq, redisReply *r) {
    fr_ws *ws = rq->ws;
    br_front *f = rq->f;
    const redisReply *es = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        es = r->element[0]->element[1];
    for (size_t i = 0; es && i < es->elements; i++) {
        const redisReply *en = es->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= sizeof rq->last)
            continue;
        snprintf(rq->last, sizeof rq->last, "%s", en->element[0]->str);
        fr_entry e;
        fr_entry_fields(en->element[1], &e);
        if (!e.status && !e.error)
            continue;
        int status = e.status ? atoi(e.status->str) : 502;
        if (status < 100 || status > 599)
            status = 502;
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "DEL");
        br_args_str(&a, rq->key);
        (void)br_db_cmd(f->cfg.db, ws_noop, NULL, &a);
        if (e.error || status != 200) {
            char code[64], msg[512];
            snprintf(code, sizeof code, "%.*s", e.error ? (int)e.error->len : 0,
                     e.error ? e.error->str : "");
            snprintf(msg, sizeof msg, "%.*s", e.message ? (int)e.message->len : 0,
                     e.message ? e.message->str : "");
            ws->refused = 1;
            fr_ws_count(f, "refused");
            rq->status = status;
            if (rq->call)
                fr_error_reply(f, rq->call, status, code[0] ? code : "bad_gateway", msg, NULL);
            rq->call = NULL;
            fr_req_done(rq);
            return;
        }
        /* open: the connection is the stream's from now on */
        ws->phase = WS_OPEN;
        uint64_t now = uv_now(f->cfg.loop);
        if (gp_stream_init(&ws->s, now, GP_STREAM_WIN_DEFAULT, GP_STREAM_IDLE_DEFAULT) != 0)
            ws->over = 1; /* cannot happen: the defaults are in bounds */
        rq->status = 101;
        fr_ws_count(f, "opened");
        fr_count(f, 101);
        ws->counted = 1;
        f->nws_open++;
        if (f->m_ws)
            gp_metric_set(f->m_ws, NULL, f->nws_open);
        br_log(BR_LOG_INFO, "http_websocket_open", "house=%s sid=%s addr=%s", ws->house, ws->sid,
               br_qs(rq->call ? gp_admin_call_ip(rq->call) : ""));
        const gp_admin_raw_cb cb = {ws_on_data, ws_on_eof, ws_on_closed, ws};
        gp_admin_conn *c = rq->call ? gp_admin_call_takeover(rq->call, &cb) : NULL;
        rq->call = NULL;
        if (!c) {
            ws_reset(ws, GP_SR_LOCAL, "closed", "the client left before the stream opened");
            fr_req_done(rq);
            return;
        }
        ws->conn = c;
        ws->refs++;
        snprintf(rq->key, sizeof rq->key, "%s", ws->kout);
        snprintf(rq->last, sizeof rq->last, "0-0");
        rq->count = FR_WS_READ_COUNT;
        ws_kick(ws); /* the request head */
        ws_reading(ws);
        if (br_db_key_node(f->cfg.db, rq->key) != rq->rd->node) {
            fr_requeue(rq); /* sout lives on another node: a reader of that one */
            fr_pump(f);
        } else {
            fr_issue_read(rq);
        }
        return;
    }
    fr_issue_read(rq); /* nothing yet: read on (fr_issue_read answers 504 past the deadline) */
}

void fr_ws_on_read(fr_req *rq, redisReply *r) {
    fr_ws *ws = rq->ws;
    if (ws->phase == WS_OPENING) {
        ws_on_outcome(rq, r);
        return;
    }
    size_t got = 0;
    const redisReply *es = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        es = r->element[0]->element[1];
    else if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_ARRAY)
        ws_reset(ws, GP_SR_LOCAL, "closed", "unexpected XREAD reply");
    /* The house's ack-only entries we read: deleted, so that an idle stream's sout holds none. */
    const char *ctl[FR_WS_READ_COUNT];
    size_t nctl = 0;
    for (size_t i = 0; es && i < es->elements && !ws->over; i++) {
        const redisReply *en = es->element[i];
        got++;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len >= sizeof rq->last) {
            ws_reset(ws, GP_SR_MALFORMED, "malformed", "a sout entry of unexpected shape");
            break;
        }
        snprintf(rq->last, sizeof rq->last, "%s", en->element[0]->str);
        int control = 0;
        if (ws_take(ws, en->element[1], &control) == 0 && control && nctl < FR_WS_READ_COUNT)
            ctl[nctl++] = en->element[0]->str;
    }
    ws_xdel(ws, ws->kout, ctl, nctl);
    if (!ws->over)
        ws_after(ws, got);
    if (ws->over) {
        fr_req_done(rq);
        return;
    }
    if (ws->conn && gp_admin_raw_queued(ws->conn) > FR_MAX_QUEUED &&
        gp_admin_raw_on_drain(ws->conn, FR_MAX_QUEUED / 2, ws_on_drained, ws) == 0) {
        ws->paused = 1; /* sout waits in Redis, bounded there by the window */
        if (rq->f->m_paused)
            gp_metric_inc(rq->f->m_paused, NULL);
        return;
    }
    fr_issue_read(rq);
}

/* The next XREAD of sout, blocking until the stream's next timer (keep-alive ack, idle). */
int fr_ws_issue_read(fr_req *rq) {
    br_front *f = rq->f;
    fr_ws *ws = rq->ws;
    if (ws->over || f->stopping) {
        fr_req_done(rq);
        return 0;
    }
    if (ws->paused)
        return 0;
    uint64_t now = uv_now(f->cfg.loop), t = gp_stream_next_timer(&ws->s);
    return fr_xread(rq, FR_WS_READ_COUNT, t > now ? t - now : 1);
}

/* The sweep's part: a WebSocket paused for a client that does not read still times out
 * (idle: the house is not heard meanwhile), and an ended one's connection closes after
 * FR_WS_LINGER_MS even if its client never takes what is queued. */
void fr_ws_sweep(br_front *f, uint64_t now) {
    for (fr_ws *ws = f->ws_head, *next; ws; ws = next) {
        next = ws->next;
        if (ws->over && ws->conn && now - ws->over_at >= FR_WS_LINGER_MS)
            gp_admin_raw_close(ws->conn);
        else if (!ws->over && ws->paused && gp_stream_tick(&ws->s, now))
            ws_reset(ws, GP_SR_IDLE, "idle", "the client did not read within idle_ms");
    }
}

/* 1 for a WebSocket handshake: Upgrade lists websocket, Connection lists upgrade. */
int fr_is_websocket(const gp_http_request *req) {
    return fr_header_lists(gp_http_header_get(req, "upgrade"), "websocket") &&
           fr_header_lists(gp_http_header_get(req, "connection"), "upgrade");
}

static int put(char **b, size_t *n, size_t *cap, const char *p, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t c = (*n + len + 1) * 2;
        char *q = realloc(*b, c);
        if (!q)
            return -1;
        *b = q, *cap = c;
    }
    memcpy(*b + *n, p, len);
    *n += len;
    (*b)[*n] = '\0';
    return 0;
}

static int puts3(char **b, size_t *n, size_t *cap, const char *x, const char *y, const char *z) {
    return put(b, n, cap, x, strlen(x)) || put(b, n, cap, y, strlen(y)) ||
           put(b, n, cap, z, strlen(z));
}

/* The request head the upstream gets (then the body, if any): the method, the routed path,
 * the headers but hop-by-hop ones (Upgrade and Connection written again), the front door's
 * own (Authorization when it checked a token, X-Gp-Timeout-Ms, Expect) and earlier
 * X-Forwarded-*, with X-Forwarded-For/-Proto/-Host added. malloc'd, *len its length. */
static char *ws_head(const br_front *f, const gp_http_request *req, const fr_route *rt,
                     const char *ip, size_t *len) {
    char *b = NULL;
    size_t n = 0, cap = 0;
    const char *conn = gp_http_header_get(req, "connection");
    int bad = puts3(&b, &n, &cap, req->method, " ", rt->path) ||
              puts3(&b, &n, &cap, " HTTP/1.1\r\n", "", "");
    for (size_t i = 0; !bad && i < req->nheaders; i++) {
        const char *nm = req->headers[i].name, *v = req->headers[i].value;
        if (fr_hop_by_hop(nm, conn) || strcmp(nm, "x-gp-timeout-ms") == 0 ||
            strcmp(nm, "expect") == 0 || (!f->cfg.public_ && strcmp(nm, "authorization") == 0) ||
            strncmp(nm, "x-forwarded-", 12) == 0 || !fr_header_ok(nm, v))
            continue;
        bad = puts3(&b, &n, &cap, nm, ": ", v) || puts3(&b, &n, &cap, "\r\n", "", "");
    }
    const char *up = gp_http_header_get(req, "upgrade");
    const char *xff = gp_http_header_get(req, "x-forwarded-for");
    const char *host = gp_http_header_get(req, "host");
    if (!bad)
        bad = puts3(&b, &n, &cap, "connection: Upgrade\r\nupgrade: ",
                    fr_header_ok("upgrade", up) ? up : "websocket", "\r\n") ||
              puts3(&b, &n, &cap,
                    "x-forwarded-for: ", xff && fr_header_ok("x-forwarded-for", xff) ? xff : "",
                    xff && fr_header_ok("x-forwarded-for", xff) ? ", " : "") ||
              puts3(&b, &n, &cap, ip, "\r\nx-forwarded-proto: ", f->tls ? "https" : "http") ||
              puts3(&b, &n, &cap, "\r\n", "", "");
    if (!bad && host && fr_header_ok("host", host))
        bad = puts3(&b, &n, &cap, "x-forwarded-host: ", host, "\r\n");
    if (!bad)
        bad = puts3(&b, &n, &cap, "\r\n", "", "");
    if (!bad && req->body_len)
        bad = put(&b, &n, &cap, (const char *)req->body, req->body_len);
    if (bad) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

/* The open entry of the stream, on the house's request stream. */
static int ws_submit(br_front *f, fr_req *rq, const fr_route *rt, long long timeout) {
    fr_ws *ws = rq->ws;
    char svc[FR_SERVICE_MAX + 8];
    if (gp_key_reply(rq->key, f->prefix, ws->sid) < 0 ||
        gp_key_sin(ws->kin, f->prefix, rt->house, ws->sid) < 0 ||
        gp_key_sout(ws->kout, f->prefix, rt->house, ws->sid) < 0)
        return -1;
    snprintf(svc, sizeof svc, "http:%s", rt->service);
    br_args a;
    br_args_init(&a);
    char keys[2][GP_KEY_MAX];
    if (fr_add_args(f, rt->house, keys, &a) != 0)
        return -1;
    const char *fixed[] = {"kind", "stream", "id", ws->sid, "service", svc, "reply", rq->key};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        br_args_str(&a, fixed[i]);
    br_args_str(&a, "window");
    br_args_u64(&a, GP_STREAM_WIN_DEFAULT);
    br_args_str(&a, "idle_ms");
    br_args_u64(&a, GP_STREAM_IDLE_DEFAULT);
    br_args_str(&a, "timeout_ms");
    br_args_u64(&a, (uint64_t)timeout);
    return fr_add(f, rq, &a);
}

/* An Upgrade request that passed the route and token checks. */
void fr_ws_start(br_front *f, gp_admin_call *call, const gp_http_request *req, const fr_route *rt,
                 long long timeout) {
    if (f->nws >= FR_WS_MAX) {
        fr_ws_count(f, "unavailable");
        fr_error_reply(f, call, 503, "unavailable", "too many WebSockets through this front door",
                       NULL);
        return;
    }
    size_t hlen = 0;
    char *head = ws_head(f, req, rt, gp_admin_call_ip(call), &hlen);
    fr_req *rq = head ? calloc(1, sizeof *rq) : NULL;
    fr_ws *ws = rq ? calloc(1, sizeof *ws) : NULL;
    if (!ws) {
        free(head);
        free(rq);
        fr_ws_count(f, "unavailable");
        fr_error_reply(f, call, 503, "unavailable", "out of memory", NULL);
        return;
    }
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(ws->sid, sizeof ws->sid, rnd, sizeof rnd);
    ws->f = f;
    ws->rq = rq;
    ws->refs = 1; /* the read chain's */
    ws->ib = (uint8_t *)head;
    ws->ilen = ws->icap = ws->head_left = hlen;
    ws->t0 = uv_now(f->cfg.loop);
    snprintf(ws->house, sizeof ws->house, "%s", rt->house);
    GP_LIST_APPEND(f->ws_head, f->ws_tail, ws, prev, next);
    f->nws++;
    rq->f = f;
    rq->call = call;
    rq->ws = ws;
    rq->refs = 2;
    rq->t0 = ws->t0;
    rq->wait_until = rq->t0 + (uint64_t)timeout + FR_WAIT_GRACE_MS;
    snprintf(rq->last, sizeof rq->last, "0-0");
    snprintf(rq->house, sizeof rq->house, "%s", rt->house);
    f->inflight++;
    if (f->m_inflight)
        gp_metric_set(f->m_inflight, NULL, f->inflight);
    if (ws_submit(f, rq, rt, timeout) != 0) {
        rq->call = NULL;
        rq->ws = NULL;
        ws->rq = NULL;
        ws->refused = 1; /* nothing was written: nothing to reset */
        f->inflight--;
        free(rq);
        fr_ws_count(f, "unavailable");
        fr_error_reply(f, call, 503, "unavailable", "Redis is not connected", NULL);
        ws_unref(ws);
        return;
    }
    fr_enqueue(rq);
}
