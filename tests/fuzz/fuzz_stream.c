/* fuzz_stream.c — libFuzzer target for a stream endpoint and its entry codec (proto/stream.c,
 * proto/STREAMS.md). Input: a sequence of ops, each one byte then its operands: entries as
 * field lists (parsed, built back and parsed again, then applied to the endpoint), open
 * entries, and raw events (data at an offset, acks with windows, consumption, writes,
 * half-close, resume, clock ticks, resets, window growth), offsets either raw or near the
 * endpoint's own. Properties: the codec round-trips whatever it accepts and names what it refuses;
 * the endpoint's invariants hold after every op (acked <= next <= high, consumed <= delivered,
 * nothing delivered past the window or the fin, no credit after a reset or a fin, every byte
 * of an accepted data event either skipped or delivered). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

typedef struct in {
    const uint8_t *p;
    size_t n;
} in;

static uint8_t u8(in *d) {
    if (!d->n)
        return 0;
    d->n--;
    return *d->p++;
}

static uint64_t uN(in *d, int bytes) {
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)u8(d) << (8 * i);
    return x;
}

/* An offset: raw 64 bits, or a small step around `near`. */
static uint64_t offset(in *d, uint64_t near) {
    uint8_t mode = u8(d);
    if (mode & 1)
        return uN(d, 8);
    int16_t step = (int16_t)uN(d, 2);
    return near + (uint64_t)(int64_t)step;
}

static gp_str bytes(in *d, size_t len) {
    if (len > d->n)
        len = d->n;
    gp_str s = {d->p, len};
    d->p += len, d->n -= len;
    return s;
}

static size_t fields(in *d, gp_stream_field *f, size_t max) {
    size_t k = u8(d) % (max + 1);
    for (size_t i = 0; i < k; i++) {
        f[i].name = bytes(d, u8(d) % 12);
        f[i].value = bytes(d, (size_t)uN(d, 2));
    }
    return k;
}

static void check(const gp_stream *s) {
    if (s->snd_acked > s->snd_next || s->snd_next > s->snd_high || s->snd_high > GP_STREAM_OFF_MAX)
        __builtin_trap();
    if (s->rcv_acked > s->rcv_consumed || s->rcv_consumed > s->rcv_next)
        __builtin_trap();
    if (s->rcv_next > s->rcv_acked + s->rcv_win || s->rcv_next > GP_STREAM_OFF_MAX)
        __builtin_trap(); /* delivered past the window */
    if (s->rcv_fin && s->rcv_next > s->rcv_fin_off)
        __builtin_trap();
    uint64_t c = gp_stream_can_send(s);
    if ((s->reset != GP_SR_NONE && c) || (s->snd_fin && s->snd_next + c > s->snd_fin_off))
        __builtin_trap(); /* no credit after a reset, no byte past our fin */
    if (c && s->snd_next + c > s->snd_acked + s->snd_win)
        __builtin_trap();
    if (s->snd_win < GP_STREAM_WIN_MIN || s->snd_win > GP_STREAM_WIN_MAX)
        __builtin_trap();
}

static int same_str(gp_str a, gp_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Parse; when accepted, build and parse again: the same entry. Returns 1 if accepted. */
static int entry(in *d, gp_stream_entry *e) {
    gp_stream_field f[GP_STREAM_FIELDS_MAX + 4];
    size_t n = fields(d, f, GP_STREAM_FIELDS_MAX + 4);
    char err[128] = "";
    if (gp_stream_entry_parse(e, f, n, err, sizeof err) != GP_OK) {
        if (!err[0])
            __builtin_trap(); /* a refusal names its reason */
        return 0;
    }
    gp_stream_field g[GP_STREAM_FIELDS_MAX];
    char scratch[96];
    int m = gp_stream_entry_build(e, g, scratch, sizeof scratch);
    if (m < 0)
        __builtin_trap();
    gp_stream_entry e2;
    if (gp_stream_entry_parse(&e2, g, (size_t)m, err, sizeof err) != GP_OK)
        __builtin_trap();
    if (e2.has_off != e->has_off || e2.off != e->off || e2.fin != e->fin ||
        e2.has_ack != e->has_ack || e2.ack != e->ack || e2.has_win != e->has_win ||
        e2.win != e->win || strcmp(e2.rst, e->rst) || !same_str(e2.data, e->data) ||
        !same_str(e2.message, e->message))
        __builtin_trap();
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    in d = {data, size};
    uint64_t now = 0;
    gp_stream s;
    uint32_t win = GP_STREAM_WIN_MIN + (uint32_t)(uN(&d, 2) << 4);
    if (gp_stream_init(&s, now, win, GP_STREAM_IDLE_MIN) != GP_OK)
        __builtin_trap();
    while (d.n) {
        uint8_t op = u8(&d);
        size_t skip = 0, take = 0;
        uint64_t x;
        switch (op % 13) {
        case 0: {
            gp_stream_entry e;
            if (entry(&d, &e) && gp_stream_apply(&s, now, &e, &skip, &take) == GP_OK &&
                skip + take != (e.has_off ? e.data.len : 0))
                __builtin_trap();
            break;
        }
        case 1: {
            gp_stream_field f[GP_STREAM_FIELDS_MAX + 4];
            size_t n = fields(&d, f, GP_STREAM_FIELDS_MAX + 4);
            gp_stream_open o;
            char err[128] = "";
            if (gp_stream_open_parse(&o, f, n, err, sizeof err) != GP_OK) {
                if (!err[0])
                    __builtin_trap();
            } else if (o.id.len == 0 || o.id.len > GP_STREAM_ID_MAX ||
                       o.window < GP_STREAM_WIN_MIN || o.window > GP_STREAM_WIN_MAX ||
                       o.idle_ms < GP_STREAM_IDLE_MIN) {
                __builtin_trap();
            }
            break;
        }
        case 2: {
            uint64_t off = offset(&d, s.rcv_next);
            size_t len = (size_t)uN(&d, 2) << (u8(&d) % 8);
            int fin = u8(&d) & 1;
            if (gp_stream_on_data(&s, now, off, len, fin, &skip, &take) == GP_OK &&
                skip + take != len)
                __builtin_trap();
            break;
        }
        case 3: {
            uint64_t ack = offset(&d, s.snd_next);
            uint32_t w = (uint32_t)uN(&d, 4);
            (void)gp_stream_on_ack(&s, now, ack, w);
            break;
        }
        case 4:
            (void)gp_stream_consumed(&s, uN(&d, 3));
            break;
        case 5: {
            uint64_t credit = gp_stream_can_send(&s);
            x = uN(&d, 3);
            if ((gp_stream_sent(&s, now, x) == GP_OK) != (x <= credit))
                __builtin_trap(); /* a write goes through exactly when the credit allows it */
            break;
        }
        case 6:
            if (gp_stream_close(&s) == GP_OK && (u8(&d) & 1))
                gp_stream_fin_written(&s, now);
            break;
        case 7:
            if (gp_stream_resume(&s) != s.snd_acked)
                __builtin_trap();
            break;
        case 8:
            now += uN(&d, 2);
            (void)gp_stream_tick(&s, now);
            break;
        case 9:
            gp_stream_reset(&s, (gp_stream_reason)(u8(&d) % (GP_SR_LOCAL + 1)));
            break;
        case 10: {
            uint64_t ack;
            if (gp_stream_ack_due(&s, now, u8(&d) & 1, &ack)) {
                if (ack != s.rcv_consumed)
                    __builtin_trap();
                gp_stream_ack_written(&s, now, ack);
            }
            break;
        }
        case 11:
            gp_stream_fin_written(&s, now);
            break;
        case 12: {
            uint32_t before = s.rcv_win, w = (uint32_t)uN(&d, 4);
            if ((gp_stream_grow_window(&s, w) == GP_OK) != (w >= before && w <= GP_STREAM_WIN_MAX))
                __builtin_trap();
            break;
        }
        }
        check(&s);
        (void)gp_stream_done(&s);
        (void)gp_stream_next_timer(&s);
        (void)gp_stream_reason_name(s.reset);
    }
    return 0;
}
