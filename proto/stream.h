/* stream.h — one endpoint of a TCP stream through Redis (proto/STREAMS.md): the credit
 * window, offsets, half-close, reset and idle timeout as a state machine, and the codec of a
 * stream entry's fields. Pure: no socket, no Redis, no clock; the caller feeds what it read
 * and the time, and asks what it may write. Every input is hostile until checked here. */
#ifndef GP_STREAM_H
#define GP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "gp.h"

#define GP_STREAM_OFF_MAX ((1ULL << 53) - 1) /* offsets stay exact in any client's numbers */
#define GP_STREAM_WIN_MIN 4096u
#define GP_STREAM_WIN_MAX (64u << 20)
#define GP_STREAM_WIN_DEFAULT (1u << 20)
#define GP_STREAM_IDLE_MIN 1000u
#define GP_STREAM_IDLE_MAX 86400000u
#define GP_STREAM_IDLE_DEFAULT 300000u
#define GP_STREAM_DATA_MAX (256u << 10)
#define GP_STREAM_ID_MAX 64
#define GP_STREAM_REASON_MAX 32
#define GP_STREAM_MESSAGE_MAX 256
#define GP_STREAM_FIELDS_MAX 32

/* Why a stream ended (or must be reset): the `rst` reasons of STREAMS.md. */
typedef enum gp_stream_reason {
    GP_SR_NONE = 0,
    GP_SR_MALFORMED,
    GP_SR_GAP,
    GP_SR_WINDOW,
    GP_SR_BAD_ACK,
    GP_SR_IDLE,
    GP_SR_PEER, /* the peer sent rst: its reason is in rst_reason */
    GP_SR_LOCAL /* this side reset (gp_stream_reset) */
} gp_stream_reason;
const char *gp_stream_reason_name(gp_stream_reason r); /* "malformed", "gap", …; never NULL */

/* One endpoint: what it sends (snd_*) and what it receives (rcv_*). Offsets are byte counts
 * from the start of each direction. Read the fields; change them only through the calls. */
typedef struct gp_stream {
    /* sending: bytes below snd_acked the peer has consumed; [snd_acked, snd_next) were written
     * and wait for its ack; the peer lets us have snd_acked + snd_win in flight. snd_high is
     * the most ever written (above snd_next after a resume: an ack up to it is no error). */
    uint64_t snd_acked, snd_next, snd_high;
    uint32_t snd_win;
    int snd_fin;          /* we half-closed: no byte at or after snd_fin_off */
    uint64_t snd_fin_off; /* valid with snd_fin */
    int snd_fin_written;  /* the entry carrying our fin was written */
    /* receiving: bytes below rcv_next were delivered to us; below rcv_consumed the
     * application has used them (what we acknowledge); rcv_acked is the last ack we wrote. */
    uint64_t rcv_next, rcv_consumed, rcv_acked;
    uint32_t rcv_win;
    int rcv_fin; /* the peer half-closed at rcv_fin_off */
    uint64_t rcv_fin_off;
    /* the whole stream */
    gp_stream_reason reset;                    /* GP_SR_NONE while alive */
    char rst_reason[GP_STREAM_REASON_MAX + 1]; /* the peer's reason, with GP_SR_PEER */
    uint32_t idle_ms;
    uint64_t last_rx_ms;  /* the last entry read from the peer (idle timeout) */
    uint64_t last_ack_ms; /* the last ack written (keep-alive) */
} gp_stream;

/* A fresh stream at `now_ms`: both windows `window` (the open entry's), idle timeout `idle_ms`
 * (both already checked: GP_ERR_INVALID outside their bounds). */
int gp_stream_init(gp_stream *s, uint64_t now_ms, uint32_t window, uint32_t idle_ms) GP_WUR;

/* --- receiving -------------------------------------------------------------------------- */

/* Data [off, off+len) arrived, with `fin` when the writer half-closed after it. Sets *skip to
 * the bytes at its start already delivered (drop them: a replay after a failover) and *take
 * to the bytes after those to deliver now (skip + take == len unless an error). Errors reset
 * the stream and return GP_ERR_MALFORMED with s->reset saying why: a gap (off > rcv_next),
 * data beyond the window (past rcv_consumed + rcv_win), an offset past GP_STREAM_OFF_MAX,
 * data past the peer's fin or a second fin at another offset. After a reset: GP_ERR_STATE. */
int gp_stream_on_data(gp_stream *s, uint64_t now_ms, uint64_t off, size_t len, int fin,
                      size_t *skip, size_t *take) GP_WUR;

/* The application has used n more delivered bytes (written them to the service's socket or
 * handed them to its user): they may be acknowledged. GP_ERR_INVALID past rcv_next. */
int gp_stream_consumed(gp_stream *s, uint64_t n) GP_WUR;

/* Whether to write an ack now, and which offset (*ack): after a quarter of the window was
 * consumed since the last one, when all of the peer's bytes up to its fin are consumed, at
 * least every idle_ms/3 (keep-alive, also when nothing changed), or whenever `flush` is set
 * and something is unacknowledged. 0: nothing due. */
int gp_stream_ack_due(const gp_stream *s, uint64_t now_ms, int flush, uint64_t *ack);
/* The ack `ack` was written (from gp_stream_ack_due). */
void gp_stream_ack_written(gp_stream *s, uint64_t now_ms, uint64_t ack);

/* Grows our receive window to `win` (the caller then writes an entry with `win`): at once,
 * since the peer can only have used less. GP_ERR_INVALID for a smaller one or over the max. */
int gp_stream_grow_window(gp_stream *s, uint32_t win) GP_WUR;

/* --- sending ---------------------------------------------------------------------------- */

/* The peer acknowledged up to `ack`, and (win != 0) grew its window to `win`. An ack below the
 * one we have, or a smaller win, is stale (a replayed older entry) and ignored; an ack beyond
 * what was ever written resets (GP_SR_BAD_ACK) and returns GP_ERR_MALFORMED; a win outside
 * the bounds resets as malformed. */
int gp_stream_on_ack(gp_stream *s, uint64_t now_ms, uint64_t ack, uint32_t win) GP_WUR;

/* How many bytes may be written now: the credit left, never past our fin (after a resume,
 * the bytes up to it are written again), 0 after a reset. */
uint64_t gp_stream_can_send(const gp_stream *s);

/* n bytes were written at snd_next. GP_ERR_INVALID if that is more than gp_stream_can_send. */
int gp_stream_sent(gp_stream *s, uint64_t now_ms, uint64_t n) GP_WUR;

/* Half-close: no more bytes after snd_next. The fin goes on the next data entry written
 * (gp_stream_fin_due says when a bare one is needed). GP_ERR_STATE if already closed. */
int gp_stream_close(gp_stream *s) GP_WUR;
/* 1 while our fin is decided and its entry not yet written; gp_stream_fin_written marks it. */
int gp_stream_fin_due(const gp_stream *s);
void gp_stream_fin_written(gp_stream *s, uint64_t now_ms);

/* Failover: a new carrier takes over; everything not acknowledged may be lost in transit, so
 * writing starts again at snd_acked (the caller still holds those bytes) and our fin, if any,
 * is written again. Returns the offset to write from. Receiving needs nothing: replays below
 * rcv_next are dropped by gp_stream_on_data. */
uint64_t gp_stream_resume(gp_stream *s);

/* --- the whole stream ------------------------------------------------------------------- */

/* The peer reset the stream with `reason` (already checked by the codec). */
void gp_stream_on_rst(gp_stream *s, uint64_t now_ms, const char *reason);
/* This side resets (the service went away, the user gave up). */
void gp_stream_reset(gp_stream *s, gp_stream_reason why);

/* The clock: resets with GP_SR_IDLE (and returns 1) once nothing was read from the peer for
 * idle_ms (our own writes do not count: a side whose peer vanished must not keep itself
 * alive with its keep-alives). */
int gp_stream_tick(gp_stream *s, uint64_t now_ms);
/* When tick next has something to do (an idle reset or a keep-alive ack), in ms. */
uint64_t gp_stream_next_timer(const gp_stream *s);

/* 1 when over: reset, or both fins delivered and every byte both ways acknowledged. */
int gp_stream_done(const gp_stream *s);

/* --- entries ---------------------------------------------------------------------------- */

/* One entry of a byte key (sin/sout), parsed. `data` and `message` borrow the input. */
typedef struct gp_stream_entry {
    int has_off, has_ack, has_win, fin;
    uint64_t off, ack;
    uint32_t win;
    gp_str data;
    char rst[GP_STREAM_REASON_MAX + 1]; /* "" unless a reset */
    gp_str message;
} gp_stream_entry;

/* An rst's `message` made writable: msg (NULL: empty) copied into out[cap], each byte outside
 * printable ASCII replaced by '?', cut at cap - 1 and at GP_STREAM_MESSAGE_MAX. Returns its
 * length (out is NUL-terminated; cap >= 1). */
size_t gp_stream_printable(char *out, size_t cap, const char *msg);

/* A field of an entry: name/value as Redis returns them. */
typedef struct gp_stream_field {
    gp_str name, value;
} gp_stream_field;

/* Parses n fields into *e. GP_ERR_MALFORMED with a message naming the field in err[errlen]
 * for anything STREAMS.md does not allow (a bad number, a repeated field, data without off,
 * data over GP_STREAM_DATA_MAX, an offset past GP_STREAM_OFF_MAX, rst with data, …). */
int gp_stream_entry_parse(gp_stream_entry *e, const gp_stream_field *f, size_t n, char *err,
                          size_t errlen) GP_WUR;

/* Builds the fields of *e into out[GP_STREAM_FIELDS_MAX]; numbers are formatted into
 * scratch[scratch_len] (96 bytes suffice). Returns the number of fields, or GP_ERR_INVALID
 * for an entry the parser would refuse. */
int gp_stream_entry_build(const gp_stream_entry *e, gp_stream_field *out, char *scratch,
                          size_t scratch_len) GP_WUR;

/* Feeds a parsed entry read from the other side's key into s: data/fin, ack/win, rst.
 * *skip and *take as gp_stream_on_data (0 without data). Returns what the calls returned. */
int gp_stream_apply(gp_stream *s, uint64_t now_ms, const gp_stream_entry *e, size_t *skip,
                    size_t *take) GP_WUR;

/* The open entry on the house's request stream (kind stream). Borrowed strings. */
typedef struct gp_stream_open {
    gp_str id, service, reply;
    int has_reply;
    uint32_t window, idle_ms, timeout_ms;
} gp_stream_open;

/* A `service` of an open entry: a --tcp-service name (1-64 of A-Z a-z 0-9 . _ -), or
 * `http:` and an HTTP upstream's name of the house (`http:` alone: its default upstream),
 * at most 64 bytes in all. 1 when fine. */
int gp_stream_service_ok(gp_str v);

/* Parses an open entry's fields; GP_ERR_MALFORMED with the field named in err. The reply key's
 * family is the caller's to check (the bridge's key rules). */
int gp_stream_open_parse(gp_stream_open *o, const gp_stream_field *f, size_t n, char *err,
                         size_t errlen) GP_WUR;

/* --- a writer's marks --------------------------------------------------------------------- */

/* The entries a writer put on its byte key and has yet to delete, oldest first: each one's id
 * and the offset its bytes end at. The writer deletes those wholly below the reader's ack
 * (STREAMS.md); the bridge, the CLI and the front door all keep this queue. Zeroed: empty. */
#define GP_STREAM_MARK_ID 48 /* an entry id ("ms-seq", at most 41 bytes) and its NUL */

typedef struct gp_stream_mark {
    char id[GP_STREAM_MARK_ID];
    uint64_t end;
} gp_stream_mark;

typedef struct gp_stream_marks {
    gp_stream_mark *v;
    size_t head, n, cap; /* v[head .. head + n) */
} gp_stream_marks;

/* Appends the entry id[0..idlen) ending at `end`. With max (0: no bound) marks kept already,
 * the oldest is forgotten first; a forgotten entry, like one whose id does not fit, is left to
 * the key's TTL. GP_ERR_NOMEM when it could not be kept, else GP_OK. */
int gp_stream_marks_push(gp_stream_marks *m, const char *id, size_t idlen, uint64_t end,
                         size_t max);
/* 1 when the oldest mark ends at or below `below` (its entry can go). */
int gp_stream_marks_due(const gp_stream_marks *m, uint64_t below);
/* Takes up to max of the oldest marks ending at or below `below`, their ids copied into ids;
 * returns how many. */
size_t gp_stream_marks_take(gp_stream_marks *m, uint64_t below, char ids[][GP_STREAM_MARK_ID],
                            size_t max);
void gp_stream_marks_free(gp_stream_marks *m); /* empty again */

#endif
