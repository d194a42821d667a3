/* Unit tests for one endpoint of a stream through Redis (proto/stream.c, proto/STREAMS.md) on
 * a virtual clock: the credit window stops a writer and an ack lets it go on, a bridge change
 * replays from the last ack and yields the same bytes (no duplicate, no gap), half-close each
 * way, reset, idle timeout, and hostile input (acks beyond what was sent, offsets past the
 * largest, windows out of bounds, malformed entries) answered with a reset and a reason. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

#define WIN 8192u
#define IDLE 3000u

static gp_stream mk(uint64_t now) {
    gp_stream s;
    cr_assert_eq(gp_stream_init(&s, now, WIN, IDLE), GP_OK);
    return s;
}

/* Data at off: returns the rc and the bytes to deliver. */
static int data(gp_stream *s, uint64_t now, uint64_t off, size_t len, int fin, size_t *take) {
    size_t skip, t;
    int rc = gp_stream_on_data(s, now, off, len, fin, &skip, &t);
    if (rc == GP_OK)
        cr_assert_eq(skip + t, len);
    if (take)
        *take = t;
    return rc;
}

Test(stream, init_bounds) {
    gp_stream s;
    cr_assert_eq(gp_stream_init(&s, 0, GP_STREAM_WIN_MIN - 1, IDLE), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_init(&s, 0, GP_STREAM_WIN_MAX + 1, IDLE), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_init(&s, 0, (uint32_t)-1, IDLE), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_init(&s, 0, WIN, 0), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_init(&s, 0, WIN, GP_STREAM_IDLE_MAX + 1), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_init(&s, 0, GP_STREAM_WIN_MAX, GP_STREAM_IDLE_MIN), GP_OK);
}

Test(stream, writer_stops_at_window_and_resumes_on_ack) {
    gp_stream w = mk(0);
    cr_assert_eq(gp_stream_can_send(&w), WIN);
    cr_assert_eq(gp_stream_sent(&w, 1, 3000), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), WIN - 3000);
    cr_assert_eq(gp_stream_sent(&w, 1, WIN - 3000 + 1), GP_ERR_INVALID, "past the window");
    cr_assert_eq(gp_stream_sent(&w, 1, WIN - 3000), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), 0, "the writer stops at the window");
    cr_assert_eq(gp_stream_sent(&w, 1, 1), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_on_ack(&w, 2, 1000, 0), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), 1000, "an ack gives back what it acknowledges");
    cr_assert_eq(gp_stream_on_ack(&w, 3, 500, 0), GP_OK, "a stale ack is no error");
    cr_assert_eq(gp_stream_can_send(&w), 1000, "and changes nothing");
    cr_assert_eq(gp_stream_on_ack(&w, 4, 1000, 2 * WIN), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), 1000 + WIN, "a larger window from win");
    cr_assert_eq(gp_stream_on_ack(&w, 5, 1000, GP_STREAM_WIN_MIN), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), 1000 + WIN, "a smaller win is stale: ignored");
    cr_assert_eq(w.reset, GP_SR_NONE);
}

Test(stream, reader_refuses_data_beyond_its_window) {
    gp_stream r = mk(0);
    size_t take;
    cr_assert_eq(data(&r, 1, 0, WIN, 0, &take), GP_OK);
    cr_assert_eq(take, WIN);
    cr_assert_eq(data(&r, 1, WIN, 1, 0, NULL), GP_ERR_MALFORMED, "the writer ran ahead");
    cr_assert_eq(r.reset, GP_SR_WINDOW);
    cr_assert_str_eq(gp_stream_reason_name(r.reset), "window");

    gp_stream r2 = mk(0);
    cr_assert_eq(data(&r2, 1, 0, WIN, 0, NULL), GP_OK);
    cr_assert_eq(gp_stream_consumed(&r2, WIN + 1), GP_ERR_INVALID, "more than was delivered");
    cr_assert_eq(gp_stream_consumed(&r2, 3000), GP_OK);
    uint64_t ack;
    cr_assert_eq(gp_stream_ack_due(&r2, 2, 0, &ack), 1, "a quarter of the window consumed");
    cr_assert_eq(ack, 3000);
    gp_stream_ack_written(&r2, 2, ack);
    cr_assert_eq(data(&r2, 3, WIN, 3000, 0, &take), GP_OK, "the ack opened the window");
    cr_assert_eq(take, 3000);
    cr_assert_eq(data(&r2, 3, WIN + 3000, 1, 0, NULL), GP_ERR_MALFORMED, "window again full");
    cr_assert_eq(r2.reset, GP_SR_WINDOW);

    gp_stream r3 = mk(0);
    cr_assert_eq(gp_stream_grow_window(&r3, WIN - 1), GP_ERR_INVALID, "credit is not taken back");
    cr_assert_eq(gp_stream_grow_window(&r3, GP_STREAM_WIN_MAX + 1), GP_ERR_INVALID);
    cr_assert_eq(gp_stream_grow_window(&r3, 2 * WIN), GP_OK);
    cr_assert_eq(data(&r3, 1, 0, 2 * WIN, 0, &take), GP_OK, "the grown window at once");
    cr_assert_eq(take, 2 * WIN);
}

/* The byte stream through a simulated Redis key: writer w puts entries on `key`, a carrier
 * (the bridge) moves them to reader r, r consumes and its acks go back. A bridge change loses
 * (some of the times) the entries not read yet, as if the old carrier held them in transit,
 * and replays the key from an entry at or before the reader's ack; the writer resumes at its
 * acknowledged offset. The bytes r delivers must be exactly the source. */
#define SRC_LEN 200000
#define MAXE 4096
typedef struct sim {
    uint8_t src[SRC_LEN], dst[SRC_LEN];
    size_t dst_len;
    struct {
        uint64_t off;
        size_t len;
        int fin;
    } key[MAXE];
    size_t nkey, cursor; /* entries on the key; the next one the carrier reads */
    size_t dropped;      /* bytes delivered again and dropped by the reader */
    gp_stream w, r;
    uint64_t now;
} sim;

static void sim_write(sim *s, size_t chunk) {
    uint64_t n = gp_stream_can_send(&s->w);
    if (n > chunk)
        n = chunk;
    if (s->w.snd_next + n > SRC_LEN)
        n = SRC_LEN - s->w.snd_next;
    int fin = s->w.snd_next + n == SRC_LEN && !s->w.snd_fin_written;
    if (n == 0 && !fin)
        return;
    cr_assert_lt(s->nkey, MAXE);
    s->key[s->nkey].off = s->w.snd_next;
    s->key[s->nkey].len = (size_t)n;
    s->key[s->nkey].fin = fin;
    s->nkey++;
    cr_assert_eq(gp_stream_sent(&s->w, s->now, n), GP_OK);
    if (fin) {
        if (!s->w.snd_fin)
            cr_assert_eq(gp_stream_close(&s->w), GP_OK);
        gp_stream_fin_written(&s->w, s->now);
    }
}

static void sim_read(sim *s, size_t max_entries) {
    for (size_t i = 0; i < max_entries && s->cursor < s->nkey; i++, s->cursor++) {
        size_t skip, take;
        uint64_t off = s->key[s->cursor].off;
        cr_assert_eq(gp_stream_on_data(&s->r, s->now, off, s->key[s->cursor].len,
                                       s->key[s->cursor].fin, &skip, &take),
                     GP_OK, "entry %zu off %llu reset %d", s->cursor, (unsigned long long)off,
                     s->r.reset);
        if (take)
            cr_assert_eq(off + skip, s->dst_len, "delivery continues exactly where it stopped");
        else
            cr_assert_leq(off + skip, s->dst_len, "a replay wholly below what was delivered");
        s->dropped += skip;
        memcpy(s->dst + s->dst_len, s->src + off + skip, take);
        s->dst_len += take;
        cr_assert_eq(gp_stream_consumed(&s->r, take), GP_OK);
    }
    uint64_t ack;
    if (gp_stream_ack_due(&s->r, s->now, 0, &ack)) {
        gp_stream_ack_written(&s->r, s->now, ack);
        cr_assert_eq(gp_stream_on_ack(&s->w, s->now, ack, 0), GP_OK);
    }
}

Test(stream, idempotent_resume_after_bridge_change) {
    sim *s = calloc(1, sizeof *s);
    for (size_t i = 0; i < SRC_LEN; i++)
        s->src[i] = (uint8_t)(i * 131 + (i >> 8));
    s->w = mk(0), s->r = mk(0);
    int changes = 0;
    for (int round = 0; s->dst_len < SRC_LEN || !gp_stream_done(&s->r); round++) {
        cr_assert_lt(round, 100000);
        s->now += 1;
        sim_write(s, 700 + (size_t)(round % 5) * 300);
        sim_read(s, (size_t)(round % 2)); /* slower than the writer: a backlog */
        if (round % 23 == 22) {
            /* Bridge change: the new carrier reads the key again from an entry at or before
             * the reader's acknowledged offset (what stays in Redis), and the writer resends
             * everything not yet acknowledged. */
            changes++;
            if (round % 3 == 1)
                s->nkey = s->cursor; /* what the old carrier held in transit is lost */
            size_t c = s->cursor;
            while (c > 0 && s->key[c - 1].off + s->key[c - 1].len > s->r.rcv_acked)
                c--;
            if (c > 0 && round % 2)
                c--; /* an older entry too: a replay wholly below what was delivered */
            s->cursor = c;
            uint64_t ack; /* the takeover learns what the reader consumed */
            if (gp_stream_ack_due(&s->r, s->now, 1, &ack)) {
                gp_stream_ack_written(&s->r, s->now, ack);
                cr_assert_eq(gp_stream_on_ack(&s->w, s->now, ack, 0), GP_OK);
            }
            uint64_t from = gp_stream_resume(&s->w);
            cr_assert_eq(from, s->w.snd_acked);
        }
        uint64_t ack;
        if (s->r.rcv_fin && s->dst_len == SRC_LEN && gp_stream_ack_due(&s->r, s->now, 1, &ack)) {
            gp_stream_ack_written(&s->r, s->now, ack);
            cr_assert_eq(gp_stream_on_ack(&s->w, s->now, ack, 0), GP_OK);
        }
        /* The other direction closes at once, so that done() is about the first one. */
        if (!s->r.snd_fin) {
            cr_assert_eq(gp_stream_close(&s->r), GP_OK);
            gp_stream_fin_written(&s->r, s->now);
        }
    }
    cr_assert_gt(changes, 10);
    cr_assert_gt(s->dropped, 0, "the replays did deliver bytes again");
    cr_assert_eq(s->dst_len, SRC_LEN);
    cr_assert_eq(memcmp(s->dst, s->src, SRC_LEN), 0, "same bytes, no duplicate, no gap");
    cr_assert_eq(s->r.rcv_fin_off, SRC_LEN);
    cr_assert_eq(s->w.snd_acked, SRC_LEN);
    free(s);
}

Test(stream, replay_is_dropped_and_overlap_delivers_only_the_new_part) {
    gp_stream r = mk(0);
    size_t skip, take;
    cr_assert_eq(gp_stream_on_data(&r, 1, 0, 100, 0, &skip, &take), GP_OK);
    cr_assert_eq(gp_stream_on_data(&r, 2, 0, 100, 0, &skip, &take), GP_OK);
    cr_assert_eq(skip, 100);
    cr_assert_eq(take, 0, "a replay delivers nothing");
    cr_assert_eq(gp_stream_on_data(&r, 3, 50, 100, 0, &skip, &take), GP_OK);
    cr_assert_eq(skip, 50);
    cr_assert_eq(take, 50, "an overlap delivers its new part");
    cr_assert_eq(r.rcv_next, 150);
    cr_assert_eq(gp_stream_on_data(&r, 4, 151, 1, 0, &skip, &take), GP_ERR_MALFORMED);
    cr_assert_eq(r.reset, GP_SR_GAP, "a gap is refused: one writer appends in order");
    cr_assert_eq(gp_stream_on_data(&r, 5, 150, 1, 0, &skip, &take), GP_ERR_STATE,
                 "nothing after a reset");
}

Test(stream, half_close_writer_side) {
    gp_stream a = mk(0), b = mk(0);
    size_t take;
    cr_assert_eq(gp_stream_sent(&a, 1, 10), GP_OK);
    cr_assert_eq(gp_stream_close(&a), GP_OK);
    cr_assert_eq(gp_stream_close(&a), GP_ERR_STATE);
    cr_assert_eq(gp_stream_can_send(&a), 0, "nothing after our fin");
    cr_assert(gp_stream_fin_due(&a));
    gp_stream_fin_written(&a, 1);
    cr_assert_not(gp_stream_fin_due(&a));
    cr_assert_eq(data(&b, 2, 0, 10, 1, &take), GP_OK);
    cr_assert(b.rcv_fin);
    cr_assert_eq(b.rcv_fin_off, 10);
    cr_assert_eq(data(&b, 2, 0, 10, 1, &take), GP_OK, "the same fin again: a replay");
    cr_assert_eq(take, 0);
    /* b's direction to a is still open. */
    cr_assert_eq(gp_stream_can_send(&b), WIN);
    cr_assert_eq(gp_stream_sent(&b, 3, 20), GP_OK);
    cr_assert_eq(data(&a, 3, 0, 20, 0, &take), GP_OK);
    cr_assert_eq(take, 20);
    cr_assert_not(gp_stream_done(&a));
    cr_assert_not(gp_stream_done(&b));
    /* b consumes a's 10 bytes and its fin: an ack is due at once. */
    cr_assert_eq(gp_stream_consumed(&b, 10), GP_OK);
    uint64_t ack;
    cr_assert_eq(gp_stream_ack_due(&b, 4, 0, &ack), 1);
    cr_assert_eq(ack, 10);
    gp_stream_ack_written(&b, 4, ack);
    cr_assert_eq(gp_stream_on_ack(&a, 4, ack, 0), GP_OK);
    /* b closes too; a gets everything. */
    cr_assert_eq(gp_stream_close(&b), GP_OK);
    gp_stream_fin_written(&b, 5);
    cr_assert_eq(data(&a, 5, 20, 0, 1, &take), GP_OK, "a bare fin");
    cr_assert_eq(gp_stream_consumed(&a, 20), GP_OK);
    cr_assert_eq(gp_stream_ack_due(&a, 6, 0, &ack), 1);
    gp_stream_ack_written(&a, 6, ack);
    cr_assert_eq(gp_stream_on_ack(&b, 6, ack, 0), GP_OK);
    cr_assert(gp_stream_done(&a));
    cr_assert(gp_stream_done(&b));
}

Test(stream, resume_after_fin_writes_the_rest_again) {
    gp_stream w = mk(0);
    cr_assert_eq(gp_stream_sent(&w, 1, 1000), GP_OK);
    cr_assert_eq(gp_stream_close(&w), GP_OK);
    gp_stream_fin_written(&w, 1);
    cr_assert_eq(gp_stream_can_send(&w), 0);
    cr_assert_eq(gp_stream_on_ack(&w, 2, 400, 0), GP_OK);
    cr_assert_eq(gp_stream_resume(&w), 400);
    cr_assert_eq(gp_stream_can_send(&w), 600, "the unacknowledged bytes up to the fin");
    cr_assert(gp_stream_fin_due(&w), "and the fin again");
    cr_assert_eq(gp_stream_sent(&w, 3, 601), GP_ERR_INVALID, "never past the fin");
    cr_assert_eq(gp_stream_sent(&w, 3, 600), GP_OK);
    cr_assert_eq(gp_stream_can_send(&w), 0);
}

Test(stream, fin_rules) {
    gp_stream r = mk(0);
    cr_assert_eq(data(&r, 1, 0, 10, 1, NULL), GP_OK);
    cr_assert_eq(data(&r, 1, 10, 1, 0, NULL), GP_ERR_MALFORMED, "bytes after the fin");
    cr_assert_eq(r.reset, GP_SR_MALFORMED);
    gp_stream r2 = mk(0);
    cr_assert_eq(data(&r2, 1, 0, 10, 1, NULL), GP_OK);
    cr_assert_eq(data(&r2, 1, 0, 5, 1, NULL), GP_ERR_MALFORMED, "a second fin elsewhere");
    gp_stream r3 = mk(0);
    cr_assert_eq(data(&r3, 1, 0, 10, 0, NULL), GP_OK);
    cr_assert_eq(data(&r3, 1, 0, 5, 1, NULL), GP_ERR_MALFORMED, "a fin before delivered bytes");
}

Test(stream, reset_both_ways) {
    gp_stream a = mk(0);
    gp_stream_on_rst(&a, 1, "refused");
    cr_assert_eq(a.reset, GP_SR_PEER);
    cr_assert_str_eq(a.rst_reason, "refused");
    cr_assert(gp_stream_done(&a));
    cr_assert_eq(gp_stream_can_send(&a), 0);
    cr_assert_eq(gp_stream_on_ack(&a, 2, 0, 0), GP_ERR_STATE);
    uint64_t ack;
    cr_assert_eq(gp_stream_ack_due(&a, 100000, 1, &ack), 0, "no ack after a reset");
    gp_stream b = mk(0);
    gp_stream_reset(&b, GP_SR_NONE);
    cr_assert_eq(b.reset, GP_SR_LOCAL);
    gp_stream_reset(&b, GP_SR_IDLE);
    cr_assert_eq(b.reset, GP_SR_LOCAL, "the first reason stays");
    cr_assert(gp_stream_done(&b));
}

Test(stream, idle_timeout_on_a_virtual_clock) {
    gp_stream s = mk(1000);
    cr_assert_eq(gp_stream_next_timer(&s), 1000 + IDLE / 3, "a keep-alive first");
    cr_assert_eq(gp_stream_tick(&s, 1000 + IDLE - 1), 0);
    uint64_t ack;
    cr_assert_eq(gp_stream_ack_due(&s, 1000 + IDLE / 3, 0, &ack), 1, "keep-alive ack");
    gp_stream_ack_written(&s, 1000 + IDLE / 3, ack);
    cr_assert_eq(gp_stream_tick(&s, 1000 + IDLE), 1,
                 "our own keep-alives do not keep a stream alive whose peer is gone");
    cr_assert_eq(s.reset, GP_SR_IDLE);
    cr_assert_str_eq(gp_stream_reason_name(s.reset), "idle");

    gp_stream b = mk(5000);
    cr_assert_eq(gp_stream_tick(&b, 10), 0, "a clock before the last entry is no timeout");
    cr_assert_eq(gp_stream_ack_due(&b, 10, 0, &ack), 0);

    gp_stream t = mk(0);
    for (uint64_t now = 0; now < 10 * IDLE; now += IDLE / 2) {
        cr_assert_eq(gp_stream_on_ack(&t, now, 0, 0), GP_OK, "the peer's keep-alive");
        cr_assert_eq(gp_stream_tick(&t, now + IDLE / 2), 0);
    }
    cr_assert_eq(t.reset, GP_SR_NONE);
}

Test(stream, hostile_acks_and_offsets) {
    gp_stream w = mk(0);
    cr_assert_eq(gp_stream_sent(&w, 1, 100), GP_OK);
    cr_assert_eq(gp_stream_on_ack(&w, 1, 101, 0), GP_ERR_MALFORMED, "ack beyond sent");
    cr_assert_eq(w.reset, GP_SR_BAD_ACK);

    gp_stream w2 = mk(0);
    cr_assert_eq(gp_stream_on_ack(&w2, 1, 0, GP_STREAM_WIN_MAX + 1), GP_ERR_MALFORMED);
    gp_stream w3 = mk(0);
    cr_assert_eq(gp_stream_on_ack(&w3, 1, 0, 1), GP_ERR_MALFORMED, "a window below the minimum");
    gp_stream w4 = mk(0);
    cr_assert_eq(gp_stream_on_ack(&w4, 1, UINT64_MAX, 0), GP_ERR_MALFORMED);

    /* After a resume, an ack up to what was ever written is legitimate. */
    gp_stream w5 = mk(0);
    cr_assert_eq(gp_stream_sent(&w5, 1, 1000), GP_OK);
    cr_assert_eq(gp_stream_resume(&w5), 0);
    cr_assert_eq(gp_stream_on_ack(&w5, 2, 800, 0), GP_OK);
    cr_assert_eq(w5.snd_next, 800, "the peer already has those: not written again");

    gp_stream r = mk(0);
    cr_assert_eq(data(&r, 1, GP_STREAM_OFF_MAX, 1, 0, NULL), GP_ERR_MALFORMED);
    cr_assert_eq(r.reset, GP_SR_MALFORMED, "offset overflow");
    gp_stream r2 = mk(0);
    cr_assert_eq(data(&r2, 1, UINT64_MAX, 2, 0, NULL), GP_ERR_MALFORMED);
    gp_stream r3 = mk(0);
    cr_assert_eq(data(&r3, 1, 0, SIZE_MAX, 0, NULL), GP_ERR_MALFORMED);
}

/* --- entries ---------------------------------------------------------------------------- */

#define F(n, v) ((gp_stream_field){GP_STR_LIT(n), GP_STR_LIT(v)})

static int parse(gp_stream_entry *e, const gp_stream_field *f, size_t n, char *err) {
    return gp_stream_entry_parse(e, f, n, err, 128);
}

Test(stream_entry, good_entries) {
    gp_stream_entry e;
    char err[128];
    gp_stream_field f1[] = {F("off", "4096"), F("data", "hello"), F("ack", "17"),
                            F("x-future", "ignored")};
    cr_assert_eq(parse(&e, f1, 4, err), GP_OK, "%s", err);
    cr_assert(e.has_off && e.off == 4096 && e.data.len == 5 && e.has_ack && e.ack == 17);
    cr_assert_not(e.fin);
    gp_stream_field f2[] = {F("off", "0"), F("fin", "1")};
    cr_assert_eq(parse(&e, f2, 2, err), GP_OK, "%s", err);
    cr_assert(e.fin && e.data.len == 0);
    gp_stream_field f3[] = {F("rst", "refused"), F("message", "connection refused"), F("ack", "3")};
    cr_assert_eq(parse(&e, f3, 3, err), GP_OK, "%s", err);
    cr_assert_str_eq(e.rst, "refused");
    gp_stream_field f4[] = {F("win", "65536")};
    cr_assert_eq(parse(&e, f4, 1, err), GP_OK, "%s", err);
    cr_assert_eq(e.win, 65536);
    gp_stream_field f5[] = {F("off", "9007199254740991"), F("data", "")};
    cr_assert_eq(parse(&e, f5, 2, err), GP_OK, "2^53-1 is the largest offset: %s", err);
}

Test(stream_entry, malformed_entries) {
    const struct {
        gp_stream_field f[3];
        size_t n;
        const char *why;
    } bad[] = {
        {{F("data", "x")}, 1, "data without off"},
        {{F("fin", "1")}, 1, "fin without off"},
        {{F("off", "1"), F("fin", "yes")}, 2, "bad fin"},
        {{F("off", "-1")}, 1, "bad off"},
        {{F("off", "01")}, 1, "bad off"},
        {{F("off", "")}, 1, "bad off"},
        {{F("off", "1x")}, 1, "bad off"},
        {{F("off", "9007199254740992")}, 1, "bad off"},
        {{F("off", "99999999999999999999999")}, 1, "bad off"},
        {{F("ack", "18446744073709551616")}, 1, "bad ack"},
        {{F("win", "4095")}, 1, "bad win"},
        {{F("win", "67108865")}, 1, "bad win"},
        {{F("win", "0")}, 1, "bad win"},
        {{F("off", "1"), F("off", "1")}, 2, "field off repeated"},
        {{F("rst", "Bad Reason")}, 1, "bad rst"},
        {{F("rst", "")}, 1, "bad rst"},
        {{F("rst", "idle"), F("off", "0")}, 2, "rst with data, fin or win"},
        {{F("rst", "idle"), F("message", "a\nb")}, 2, "bad message"},
        {{F("message", "hi"), F("ack", "1")}, 2, "message without rst"},
        {{F("x-future", "1")}, 1, "no off, ack, win or rst"},
        {{F("off", "9007199254740991"), F("data", "ab")}, 2, "off+data past the largest offset"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gp_stream_entry e;
        char err[128] = "";
        cr_assert_eq(parse(&e, bad[i].f, bad[i].n, err), GP_ERR_MALFORMED, "case %zu", i);
        cr_assert_str_eq(err, bad[i].why, "case %zu", i);
    }
    /* Too many fields, and data over the limit. */
    gp_stream_field many[GP_STREAM_FIELDS_MAX + 1];
    for (size_t i = 0; i < GP_STREAM_FIELDS_MAX + 1; i++)
        many[i] = F("pad", "x");
    gp_stream_entry e;
    char err[128];
    cr_assert_eq(parse(&e, many, GP_STREAM_FIELDS_MAX + 1, err), GP_ERR_MALFORMED);
    uint8_t *big = calloc(1, GP_STREAM_DATA_MAX + 1);
    gp_stream_field f[] = {F("off", "0"), {GP_STR_LIT("data"), {big, GP_STREAM_DATA_MAX + 1}}};
    cr_assert_eq(parse(&e, f, 2, err), GP_ERR_MALFORMED);
    cr_assert_str_eq(err, "bad data");
    free(big);
}

Test(stream_entry, build_round_trips) {
    gp_stream_entry in = {.has_off = 1,
                          .off = 123456789,
                          .data = GP_STR_LIT("bytes\0with nul"),
                          .fin = 1,
                          .has_ack = 1,
                          .ack = 42,
                          .has_win = 1,
                          .win = 8192};
    gp_stream_field f[GP_STREAM_FIELDS_MAX];
    char scratch[96], err[128];
    int n = gp_stream_entry_build(&in, f, scratch, sizeof scratch);
    cr_assert_eq(n, 5);
    gp_stream_entry out;
    cr_assert_eq(parse(&out, f, (size_t)n, err), GP_OK, "%s", err);
    cr_assert(out.has_off && out.off == in.off && out.fin && out.ack == 42 && out.win == 8192);
    cr_assert_eq(out.data.len, in.data.len);
    cr_assert_eq(memcmp(out.data.p, in.data.p, in.data.len), 0);

    gp_stream_entry rst = {.has_ack = 1, .ack = 7, .message = GP_STR_LIT("no such service")};
    strcpy(rst.rst, "forbidden_service");
    n = gp_stream_entry_build(&rst, f, scratch, sizeof scratch);
    cr_assert_eq(n, 3);
    cr_assert_eq(parse(&out, f, (size_t)n, err), GP_OK, "%s", err);
    cr_assert_str_eq(out.rst, "forbidden_service");

    cr_assert_eq(gp_stream_entry_build(&in, f, scratch, 4), GP_ERR_BUFFER);
    gp_stream_entry bad = {.data = GP_STR_LIT("x")};
    cr_assert_eq(gp_stream_entry_build(&bad, f, scratch, sizeof scratch), GP_ERR_INVALID);
    gp_stream_entry badwin = {.has_win = 1, .win = 1};
    cr_assert_eq(gp_stream_entry_build(&badwin, f, scratch, sizeof scratch), GP_ERR_INVALID);
}

Test(stream_entry, apply_feeds_the_state_machine) {
    gp_stream s = mk(0);
    cr_assert_eq(gp_stream_sent(&s, 0, 100), GP_OK);
    gp_stream_entry e;
    char err[128];
    gp_stream_field f[] = {F("off", "0"), F("data", "abc"), F("ack", "60"), F("win", "8192")};
    cr_assert_eq(parse(&e, f, 4, err), GP_OK, "%s", err);
    size_t skip, take;
    cr_assert_eq(gp_stream_apply(&s, 1, &e, &skip, &take), GP_OK);
    cr_assert_eq(take, 3);
    cr_assert_eq(s.snd_acked, 60);
    cr_assert_eq(s.snd_win, 8192);
    gp_stream_field g[] = {F("ack", "101")};
    cr_assert_eq(parse(&e, g, 1, err), GP_OK, "%s", err);
    cr_assert_eq(gp_stream_apply(&s, 2, &e, &skip, &take), GP_ERR_MALFORMED);
    cr_assert_str_eq(gp_stream_reason_name(s.reset), "bad_ack");
    gp_stream t = mk(0);
    gp_stream_field h[] = {F("rst", "grace"), F("message", "house lost its bridge")};
    cr_assert_eq(parse(&e, h, 2, err), GP_OK, "%s", err);
    cr_assert_eq(gp_stream_apply(&t, 3, &e, &skip, &take), GP_OK);
    cr_assert_str_eq(t.rst_reason, "grace");
}

Test(stream_open, parse) {
    gp_stream_open o;
    char err[128];
    gp_stream_field f[] = {F("kind", "stream"),      F("id", "9b1e-4c.x_y"),
                           F("service", "ssh"),      F("window", "65536"),
                           F("idle_ms", "60000"),    F("timeout_ms", "5000"),
                           F("reply", "gp:rep:9b1e")};
    cr_assert_eq(gp_stream_open_parse(&o, f, 7, err, sizeof err), GP_OK, "%s", err);
    cr_assert(gp_str_eq(o.id, "9b1e-4c.x_y") && gp_str_eq(o.service, "ssh"));
    cr_assert(o.window == 65536 && o.idle_ms == 60000 && o.timeout_ms == 5000 && o.has_reply);
    cr_assert_eq(gp_stream_open_parse(&o, f, 3, err, sizeof err), GP_OK, "%s", err);
    cr_assert_eq(o.window, GP_STREAM_WIN_DEFAULT, "defaults");
    cr_assert_eq(o.idle_ms, GP_STREAM_IDLE_DEFAULT);
    cr_assert_eq(o.timeout_ms, 30000);
    cr_assert_not(o.has_reply);

    const struct {
        gp_stream_field f[4];
        size_t n;
        const char *why;
    } bad[] = {
        {{F("id", "a"), F("service", "s")}, 2, "missing kind"},
        {{F("kind", "http"), F("id", "a"), F("service", "s")}, 3, "bad kind"},
        {{F("kind", "stream"), F("service", "s")}, 2, "missing id"},
        {{F("kind", "stream"), F("id", "a")}, 2, "missing service"},
        {{F("kind", "stream"), F("id", "a b"), F("service", "s")}, 3, "bad id"},
        {{F("kind", "stream"), F("id", "a:{h}"), F("service", "s")}, 3, "bad id"},
        {{F("kind", "stream"), F("id", ""), F("service", "s")}, 3, "bad id"},
        {{F("kind", "stream"), F("id", "a"), F("service", "../etc")}, 3, "bad service"},
        {{F("kind", "stream"), F("id", "a"), F("service", "s"), F("window", "1")}, 4, "bad window"},
        {{F("kind", "stream"), F("id", "a"), F("service", "s"), F("idle_ms", "999")},
         4,
         "bad idle_ms"},
        {{F("kind", "stream"), F("id", "a"), F("service", "s"), F("timeout_ms", "0")},
         4,
         "bad timeout_ms"},
        {{F("kind", "stream"), F("id", "a"), F("id", "b"), F("service", "s")},
         4,
         "field id repeated"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char e2[128] = "";
        cr_assert_eq(gp_stream_open_parse(&o, bad[i].f, bad[i].n, e2, sizeof e2), GP_ERR_MALFORMED,
                     "case %zu", i);
        cr_assert_str_eq(e2, bad[i].why, "case %zu", i);
    }
    char longid[GP_STREAM_ID_MAX + 2];
    /* `http:<name>`: an HTTP upstream of the house (a WebSocket through the front door);
     * `http:` alone its default one; nothing else takes a ':' */
    const char *svc_ok[] = {"http:", "http:alt", "http:a.b_c-9", "ssh"};
    for (size_t i = 0; i < sizeof svc_ok / sizeof *svc_ok; i++) {
        gp_stream_field h[] = {
            F("kind", "stream"), F("id", "a"), {GP_STR_LIT("service"), gp_str_c(svc_ok[i])}};
        cr_assert_eq(gp_stream_open_parse(&o, h, 3, err, sizeof err), GP_OK, "%s", svc_ok[i]);
        cr_assert(gp_str_eq(o.service, svc_ok[i]));
    }
    char longsvc[80];
    snprintf(longsvc, sizeof longsvc, "http:%060d", 0); /* 65 bytes */
    const char *svc_bad[] = {"http:a:b", "https:x", "tcp:x", "http:../x", ":x", "http::", longsvc};
    for (size_t i = 0; i < sizeof svc_bad / sizeof *svc_bad; i++) {
        gp_stream_field h[] = {
            F("kind", "stream"), F("id", "a"), {GP_STR_LIT("service"), gp_str_c(svc_bad[i])}};
        cr_assert_eq(gp_stream_open_parse(&o, h, 3, err, sizeof err), GP_ERR_MALFORMED, "%s",
                     svc_bad[i]);
        cr_assert_str_eq(err, "bad service");
    }
    cr_assert(gp_stream_service_ok(gp_str_c("http:")));
    cr_assert_not(gp_stream_service_ok(gp_str_c("")));
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    gp_stream_field g[] = {
        F("kind", "stream"), {GP_STR_LIT("id"), gp_str_c(longid)}, F("service", "s")};
    cr_assert_eq(gp_stream_open_parse(&o, g, 3, err, sizeof err), GP_ERR_MALFORMED);
}

/* An rst's message as the codec takes it: printable, at most GP_STREAM_MESSAGE_MAX bytes. */
Test(stream, printable_messages) {
    char out[GP_STREAM_MESSAGE_MAX + 8];
    cr_assert_eq(gp_stream_printable(out, sizeof out, "conn\nrefused\x01\xff"), 14);
    cr_assert_str_eq(out, "conn?refused??");
    cr_assert_eq(gp_stream_printable(out, sizeof out, NULL), 0);
    cr_assert_str_eq(out, "");
    char big[600];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(gp_stream_printable(out, sizeof out, big), GP_STREAM_MESSAGE_MAX);
    cr_assert_eq(gp_stream_printable(out, 5, big), 4);
    cr_assert_str_eq(out, "mmmm");
    gp_stream_field f[] = {{GP_STR_LIT("rst"), GP_STR_LIT("closed")},
                           {GP_STR_LIT("message"), {(const uint8_t *)out, 4}}};
    gp_stream_entry e;
    char err[128];
    cr_assert_eq(gp_stream_entry_parse(&e, f, 2, err, sizeof err), 0, "%s", err);
}

/* A writer's marks: taken oldest first and only wholly below the ack, in batches; kept in order
 * across growth and the move down after takes; a bound forgets the oldest; an id that cannot
 * be an entry id is not kept. */
Test(stream, writer_marks) {
    gp_stream_marks m = {0};
    char ids[4][GP_STREAM_MARK_ID], id[32];
    for (unsigned i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "%u-0", i);
        cr_assert_eq(gp_stream_marks_push(&m, id, strlen(id), 100 * (i + 1), 0), GP_OK);
    }
    cr_assert_not(gp_stream_marks_due(&m, 99));
    cr_assert_eq(gp_stream_marks_take(&m, 99, ids, 4), 0);
    cr_assert(gp_stream_marks_due(&m, 100));
    cr_assert_eq(gp_stream_marks_take(&m, 350, ids, 4), 3);
    cr_assert_str_eq(ids[0], "0-0");
    cr_assert_str_eq(ids[2], "2-0");
    cr_assert_eq(gp_stream_marks_take(&m, 4000, ids, 4), 4); /* a batch at most */
    cr_assert_str_eq(ids[3], "6-0");
    for (unsigned i = 40; i < 70; i++) { /* fills the room the takes left, then grows */
        snprintf(id, sizeof id, "%u-0", i);
        cr_assert_eq(gp_stream_marks_push(&m, id, strlen(id), 100 * (i + 1), 0), GP_OK);
    }
    for (unsigned want = 7; want < 70; want++) {
        cr_assert_eq(gp_stream_marks_take(&m, UINT64_MAX, ids, 1), 1);
        snprintf(id, sizeof id, "%u-0", want);
        cr_assert_str_eq(ids[0], id);
    }
    cr_assert_not(gp_stream_marks_due(&m, UINT64_MAX));

    for (unsigned i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "%u-1", i);
        cr_assert_eq(gp_stream_marks_push(&m, id, strlen(id), i, 3), GP_OK);
    }
    char longid[GP_STREAM_MARK_ID + 1];
    memset(longid, '7', sizeof longid);
    cr_assert_eq(gp_stream_marks_push(&m, longid, sizeof longid, 9, 3), GP_OK);
    cr_assert_eq(gp_stream_marks_take(&m, UINT64_MAX, ids, 4), 3);
    cr_assert_str_eq(ids[0], "2-1");
    cr_assert_str_eq(ids[2], "4-1");
    gp_stream_marks_free(&m);
    cr_assert_eq(m.v, NULL);
    cr_assert_eq(m.n, 0);
}
