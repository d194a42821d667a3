/* frame.c — the tunnel frame codec and the streaming reassembler (pure, sans-I/O).
 *
 * Encoding walks each frame's layout once through a writer that can also just count, so the
 * size computation, the limit checks and the bytes written can never disagree. Decoding
 * walks the payload with (p, end) cursor helpers that return NULL on overrun and pass NULL
 * through, so a field chain is checked once at its end; a payload must be consumed exactly.
 * Nothing here trusts a length before comparing it with a limit. */
#include "frame.h"

#include "auth.h" /* GP_MAX_HOUSE_ID */
#include "buf.h"
#include "bytes.h"

#include <stdlib.h>
#include <string.h>

/* ---- encoding ---------------------------------------------------------------------- */

/* Output cursor. p NULL: count only. err records the first unrepresentable field. */
typedef struct wbuf {
    uint8_t *p;
    size_t n;
    int err;
} wbuf;

static void set_err(wbuf *w, int err) {
    if (!w->err) /* the first problem is the one worth reporting */
        w->err = err;
}

static void put_be(wbuf *w, uint64_t v, int nbytes) {
    if (w->p)
        gp_be_put(w->p + w->n, v, nbytes);
    w->n += (size_t)nbytes;
}

static void put_bytes(wbuf *w, const uint8_t *src, size_t len) {
    if (!src && len) {
        set_err(w, GP_ERR_INVALID);
        return;
    }
    if (w->p && len)
        memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put_str(wbuf *w, gp_str s) {
    if (s.len > UINT16_MAX)
        set_err(w, GP_ERR_TOO_LARGE);
    put_be(w, s.len, 2);
    put_bytes(w, s.p, s.len);
}

static void put_headers(wbuf *w, const gp_header *h, size_t n) {
    if (n > GP_MAX_HEADERS || (n && !h)) {
        set_err(w, n > GP_MAX_HEADERS ? GP_ERR_TOO_LARGE : GP_ERR_INVALID);
        return;
    }
    put_be(w, n, 2);
    for (size_t i = 0; i < n; i++) {
        put_str(w, h[i].name);
        if (h[i].value.len > UINT32_MAX)
            set_err(w, GP_ERR_TOO_LARGE);
        put_be(w, h[i].value.len, 4);
        put_bytes(w, h[i].value.p, h[i].value.len);
    }
}

/* The one description of every payload layout (see frame.h). */
static void put_payload(wbuf *w, const gp_frame *f) {
    switch (f->type) {
    case GP_FRAME_HELLO:
        put_be(w, f->u.hello.min_ver, 1);
        put_be(w, f->u.hello.max_ver, 1);
        put_str(w, f->u.hello.house_id);
        put_bytes(w, f->u.hello.nonce, GP_NONCE_LEN);
        break;
    case GP_FRAME_CHALLENGE:
        put_bytes(w, f->u.challenge.nonce, GP_NONCE_LEN);
        put_bytes(w, f->u.challenge.proof, GP_PROOF_LEN);
        break;
    case GP_FRAME_AUTH:
        put_bytes(w, f->u.auth.proof, GP_PROOF_LEN);
        break;
    case GP_FRAME_WELCOME:
        put_str(w, f->u.welcome.bridge_id);
        put_be(w, f->u.welcome.max_frame, 4);
        put_be(w, f->u.welcome.ping_interval_ms, 4);
        put_be(w, f->u.welcome.window, 4);
        put_be(w, f->u.welcome.epoch, 8);
        if (f->u.welcome.proto)
            put_be(w, f->u.welcome.proto, 1);
        break;
    case GP_FRAME_REQ_HEAD:
        put_str(w, f->u.req_head.frame_id);
        put_str(w, f->u.req_head.method);
        put_str(w, f->u.req_head.path);
        put_str(w, f->u.req_head.service);
        put_headers(w, f->u.req_head.headers, f->u.req_head.nheaders);
        put_be(w, f->u.req_head.timeout_ms, 4);
        put_be(w, f->u.req_head.body_len, 8);
        break;
    case GP_FRAME_RESP_HEAD:
        put_be(w, f->u.resp_head.status, 2);
        put_headers(w, f->u.resp_head.headers, f->u.resp_head.nheaders);
        put_str(w, f->u.resp_head.error);
        put_str(w, f->u.resp_head.message);
        put_be(w, f->u.resp_head.body_len, 8);
        break;
    case GP_FRAME_REQ_BODY:
    case GP_FRAME_RESP_BODY:
        put_bytes(w, f->u.body.data.p, f->u.body.data.len);
        break;
    case GP_FRAME_CANCEL:
        put_str(w, f->u.cancel.reason);
        break;
    case GP_FRAME_PING:
    case GP_FRAME_PONG:
        put_be(w, f->u.ping.opaque, 8);
        break;
    case GP_FRAME_CREDIT:
        put_be(w, f->u.credit.increment, 4);
        break;
    case GP_FRAME_GOAWAY:
        put_be(w, f->u.goaway.code, 2);
        put_str(w, f->u.goaway.message);
        break;
    case GP_FRAME_S_OPEN:
        put_str(w, f->u.s_open.sid);
        put_str(w, f->u.s_open.service);
        put_be(w, f->u.s_open.window, 4);
        put_be(w, f->u.s_open.idle_ms, 4);
        put_be(w, f->u.s_open.timeout_ms, 4);
        break;
    case GP_FRAME_S_OPENED:
        put_str(w, f->u.s_opened.sid);
        put_be(w, f->u.s_opened.status, 2);
        put_str(w, f->u.s_opened.error);
        put_str(w, f->u.s_opened.message);
        break;
    case GP_FRAME_S_ENTRY:
        if (f->u.s_entry.has & ~GP_SE_MASK)
            set_err(w, GP_ERR_INVALID);
        put_str(w, f->u.s_entry.sid);
        put_be(w, f->u.s_entry.has, 1);
        put_be(w, f->u.s_entry.off, 8);
        put_be(w, f->u.s_entry.ack, 8);
        put_be(w, f->u.s_entry.win, 4);
        put_str(w, f->u.s_entry.rst);
        put_str(w, f->u.s_entry.message);
        put_bytes(w, f->u.s_entry.data.p, f->u.s_entry.data.len);
        break;
    case GP_FRAME_S_ATTACH:
        put_str(w, f->u.s_attach.sid);
        put_be(w, f->u.s_attach.rcv_next, 8);
        put_be(w, f->u.s_attach.snd_acked, 8);
        put_be(w, f->u.s_attach.window, 4);
        put_be(w, f->u.s_attach.idle_ms, 4);
        break;
    case GP_FRAME_L3_REQ:
        put_be(w, f->u.l3_req.mtu, 2);
        put_str(w, f->u.l3_req.routes);
        break;
    case GP_FRAME_L3_GRANT:
        put_be(w, f->u.l3_grant.status, 2);
        put_str(w, f->u.l3_grant.error);
        put_str(w, f->u.l3_grant.message);
        put_str(w, f->u.l3_grant.addrs);
        put_str(w, f->u.l3_grant.hub);
        put_str(w, f->u.l3_grant.routes);
        put_be(w, f->u.l3_grant.mtu, 2);
        break;
    }
}

/* A stream id (STREAMS.md): 1..GP_MAX_SID bytes; its alphabet is the stream codec's check. */
#define GP_MAX_SID 64
static int sid_ok(gp_str sid) {
    return sid.len >= 1 && sid.len <= GP_MAX_SID;
}

/* HELLO is the only frame read before the peer is known: bound its id here already. */
static int house_id_len_ok(size_t len) {
    return len >= 1 && len <= GP_MAX_HOUSE_ID;
}

static int is_body(uint8_t type) {
    return type == GP_FRAME_REQ_BODY || type == GP_FRAME_RESP_BODY || type == GP_FRAME_S_ENTRY;
}

/* Compression only ever applies to body bytes; anywhere else the flag is a peer's bug. */
static int flags_ok(uint8_t type, uint8_t flags) {
    return !(flags & ~GP_FLAG_MASK) && (!(flags & GP_FLAG_ZSTD) || is_body(type));
}

size_t gp_frame_size(const gp_frame *f) {
    wbuf w = {0};
    put_payload(&w, f);
    return GP_FRAME_HEADER_LEN + w.n;
}

ssize_t gp_frame_encode(const gp_frame *f, uint8_t *buf, size_t cap) {
    if (f->type == 0 || f->type > GP_FRAME_TYPE_MAX || !flags_ok(f->type, f->flags))
        return GP_ERR_INVALID;
    if (f->type == GP_FRAME_HELLO && !house_id_len_ok(f->u.hello.house_id.len))
        return GP_ERR_INVALID;
    wbuf w = {0};
    put_payload(&w, f);
    if (w.err)
        return w.err;
    if (w.n > UINT32_MAX)
        return GP_ERR_TOO_LARGE;
    if (cap < GP_FRAME_HEADER_LEN + w.n)
        return GP_ERR_BUFFER;
    size_t plen = w.n;
    w = (wbuf){.p = buf};
    put_be(&w, GP_PROTO_VERSION, 1);
    put_be(&w, f->type, 1);
    put_be(&w, f->flags, 1);
    put_be(&w, 0, 1);
    put_be(&w, f->stream, 4);
    put_be(&w, plen, 4);
    put_payload(&w, f);
    return (ssize_t)w.n;
}

/* ---- decoding ---------------------------------------------------------------------- */

/* Cursor helpers: return the advanced cursor, or NULL on overrun; a NULL cursor stays NULL. */
static const uint8_t *get_u8(const uint8_t *p, const uint8_t *end, uint8_t *v) {
    uint64_t x = 0;
    p = gp_be_get(p, end, 1, &x);
    *v = (uint8_t)x;
    return p;
}

static const uint8_t *get_u16(const uint8_t *p, const uint8_t *end, uint16_t *v) {
    uint64_t x = 0;
    p = gp_be_get(p, end, 2, &x);
    *v = (uint16_t)x;
    return p;
}

static const uint8_t *get_u32(const uint8_t *p, const uint8_t *end, uint32_t *v) {
    uint64_t x = 0;
    p = gp_be_get(p, end, 4, &x);
    *v = (uint32_t)x;
    return p;
}

static const uint8_t *get_u64(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    return gp_be_get(p, end, 8, v);
}

static const uint8_t *get_bytes(const uint8_t *p, const uint8_t *end, size_t n,
                                const uint8_t **out) {
    if (!p || (size_t)(end - p) < n)
        return NULL;
    *out = p;
    return p + n;
}

static const uint8_t *get_str(const uint8_t *p, const uint8_t *end, gp_str *s) {
    uint16_t n = 0;
    p = get_u16(p, end, &n);
    s->len = n;
    return get_bytes(p, end, n, &s->p);
}

/* A count over GP_MAX_HEADERS cannot come from a conforming encoder: malformed. */
static const uint8_t *get_headers(const uint8_t *p, const uint8_t *end, size_t *n, gp_header *h) {
    uint16_t count = 0;
    p = get_u16(p, end, &count);
    if (count > GP_MAX_HEADERS)
        return NULL;
    for (size_t i = 0; p && i < count; i++) {
        uint32_t vlen = 0;
        p = get_str(p, end, &h[i].name);
        p = get_u32(p, end, &vlen);
        h[i].value.len = vlen;
        p = get_bytes(p, end, vlen, &h[i].value.p);
    }
    *n = count;
    return p;
}

ssize_t gp_frame_decode(const uint8_t *p, size_t len, uint32_t max_payload, gp_frame *out) {
    if (len < GP_FRAME_HEADER_LEN)
        return GP_ERR_TRUNCATED;
    if (p[0] != GP_PROTO_VERSION)
        return GP_ERR_VERSION;
    uint8_t type = p[1], flags = p[2];
    if (type == 0 || type > GP_FRAME_TYPE_MAX || !flags_ok(type, flags) || p[3] != 0)
        return GP_ERR_MALFORMED;
    uint32_t stream = 0, plen = 0;
    get_u32(p + 4, p + 12, &stream);
    get_u32(p + 8, p + 12, &plen);
    /* Judge the length before waiting for the payload: a hostile peer must not make us
     * buffer (or wait for) more than the limit. */
    if (plen > max_payload)
        return GP_ERR_TOO_LARGE;
    if (len - GP_FRAME_HEADER_LEN < plen)
        return GP_ERR_TRUNCATED;

    const uint8_t *q = p + GP_FRAME_HEADER_LEN, *end = q + plen;
    memset(&out->u, 0, sizeof out->u);
    out->type = type;
    out->flags = flags;
    out->stream = stream;
    switch (type) {
    case GP_FRAME_HELLO:
        q = get_u8(q, end, &out->u.hello.min_ver);
        q = get_u8(q, end, &out->u.hello.max_ver);
        q = get_str(q, end, &out->u.hello.house_id);
        q = get_bytes(q, end, GP_NONCE_LEN, &out->u.hello.nonce);
        if (!house_id_len_ok(out->u.hello.house_id.len))
            q = NULL;
        break;
    case GP_FRAME_CHALLENGE:
        q = get_bytes(q, end, GP_NONCE_LEN, &out->u.challenge.nonce);
        q = get_bytes(q, end, GP_PROOF_LEN, &out->u.challenge.proof);
        break;
    case GP_FRAME_AUTH:
        q = get_bytes(q, end, GP_PROOF_LEN, &out->u.auth.proof);
        break;
    case GP_FRAME_WELCOME:
        q = get_str(q, end, &out->u.welcome.bridge_id);
        q = get_u32(q, end, &out->u.welcome.max_frame);
        q = get_u32(q, end, &out->u.welcome.ping_interval_ms);
        q = get_u32(q, end, &out->u.welcome.window);
        q = get_u64(q, end, &out->u.welcome.epoch);
        if (q && q < end) { /* protocol 2 or later says so in one more byte */
            q = get_u8(q, end, &out->u.welcome.proto);
            if (out->u.welcome.proto < GP_PROTO_MIN)
                q = NULL;
        }
        break;
    case GP_FRAME_REQ_HEAD:
        out->u.req_head.headers = out->hbuf;
        q = get_str(q, end, &out->u.req_head.frame_id);
        q = get_str(q, end, &out->u.req_head.method);
        q = get_str(q, end, &out->u.req_head.path);
        q = get_str(q, end, &out->u.req_head.service);
        q = get_headers(q, end, &out->u.req_head.nheaders, out->hbuf);
        q = get_u32(q, end, &out->u.req_head.timeout_ms);
        q = get_u64(q, end, &out->u.req_head.body_len);
        break;
    case GP_FRAME_RESP_HEAD:
        out->u.resp_head.headers = out->hbuf;
        q = get_u16(q, end, &out->u.resp_head.status);
        q = get_headers(q, end, &out->u.resp_head.nheaders, out->hbuf);
        q = get_str(q, end, &out->u.resp_head.error);
        q = get_str(q, end, &out->u.resp_head.message);
        q = get_u64(q, end, &out->u.resp_head.body_len);
        break;
    case GP_FRAME_REQ_BODY:
    case GP_FRAME_RESP_BODY:
        out->u.body.data = (gp_str){q, plen};
        q = end;
        break;
    case GP_FRAME_CANCEL:
        q = get_str(q, end, &out->u.cancel.reason);
        break;
    case GP_FRAME_PING:
    case GP_FRAME_PONG:
        q = get_u64(q, end, &out->u.ping.opaque);
        break;
    case GP_FRAME_CREDIT:
        q = get_u32(q, end, &out->u.credit.increment);
        break;
    case GP_FRAME_GOAWAY:
        q = get_u16(q, end, &out->u.goaway.code);
        q = get_str(q, end, &out->u.goaway.message);
        break;
    case GP_FRAME_S_OPEN:
        q = get_str(q, end, &out->u.s_open.sid);
        q = get_str(q, end, &out->u.s_open.service);
        q = get_u32(q, end, &out->u.s_open.window);
        q = get_u32(q, end, &out->u.s_open.idle_ms);
        q = get_u32(q, end, &out->u.s_open.timeout_ms);
        if (q && !sid_ok(out->u.s_open.sid))
            q = NULL;
        break;
    case GP_FRAME_S_OPENED:
        q = get_str(q, end, &out->u.s_opened.sid);
        q = get_u16(q, end, &out->u.s_opened.status);
        q = get_str(q, end, &out->u.s_opened.error);
        q = get_str(q, end, &out->u.s_opened.message);
        if (q && !sid_ok(out->u.s_opened.sid))
            q = NULL;
        break;
    case GP_FRAME_S_ENTRY:
        q = get_str(q, end, &out->u.s_entry.sid);
        q = get_u8(q, end, &out->u.s_entry.has);
        q = get_u64(q, end, &out->u.s_entry.off);
        q = get_u64(q, end, &out->u.s_entry.ack);
        q = get_u32(q, end, &out->u.s_entry.win);
        q = get_str(q, end, &out->u.s_entry.rst);
        q = get_str(q, end, &out->u.s_entry.message);
        if (q) {
            out->u.s_entry.data = (gp_str){q, (size_t)(end - q)};
            if (!sid_ok(out->u.s_entry.sid) || (out->u.s_entry.has & ~GP_SE_MASK))
                q = NULL;
            else
                q = end;
        }
        break;
    case GP_FRAME_S_ATTACH:
        q = get_str(q, end, &out->u.s_attach.sid);
        q = get_u64(q, end, &out->u.s_attach.rcv_next);
        q = get_u64(q, end, &out->u.s_attach.snd_acked);
        q = get_u32(q, end, &out->u.s_attach.window);
        q = get_u32(q, end, &out->u.s_attach.idle_ms);
        if (q && !sid_ok(out->u.s_attach.sid))
            q = NULL;
        break;
    case GP_FRAME_L3_REQ:
        q = get_u16(q, end, &out->u.l3_req.mtu);
        q = get_str(q, end, &out->u.l3_req.routes);
        if (q && out->u.l3_req.routes.len > GP_L3_LIST_MAX)
            q = NULL;
        break;
    case GP_FRAME_L3_GRANT:
        q = get_u16(q, end, &out->u.l3_grant.status);
        q = get_str(q, end, &out->u.l3_grant.error);
        q = get_str(q, end, &out->u.l3_grant.message);
        q = get_str(q, end, &out->u.l3_grant.addrs);
        q = get_str(q, end, &out->u.l3_grant.hub);
        q = get_str(q, end, &out->u.l3_grant.routes);
        q = get_u16(q, end, &out->u.l3_grant.mtu);
        if (q && (out->u.l3_grant.addrs.len > GP_L3_LIST_MAX ||
                  out->u.l3_grant.hub.len > GP_L3_LIST_MAX ||
                  out->u.l3_grant.routes.len > GP_L3_LIST_MAX))
            q = NULL;
        break;
    }
    /* NULL (overrun) and trailing bytes are both malformed: the payload is exact. */
    if (q != end)
        return GP_ERR_MALFORMED;
    return (ssize_t)(GP_FRAME_HEADER_LEN + plen);
}

/* ---- streaming reassembly ---------------------------------------------------------- */

/* Buffer kept between frames; a larger one is given back once empty. Most frames on an idle
 * connection are PINGs and PONGs: a bridge holding 10,000 houses should not keep 64 KiB for
 * each because of one large response long ago. */
#define FRAMER_KEEP 4096u
#define FRAMER_FIRST 1024u

struct gp_framer {
    uint8_t *buf;
    size_t cap;
    size_t start, end; /* unconsumed bytes are buf[start..end) */
    uint32_t max_payload;
    int err; /* sticky */
};

gp_framer *gp_framer_new(uint32_t max_payload) {
    gp_framer *fr = calloc(1, sizeof *fr);
    if (fr)
        fr->max_payload = max_payload;
    return fr;
}

void gp_framer_free(gp_framer *fr) {
    if (!fr)
        return;
    free(fr->buf);
    free(fr);
}

int gp_framer_feed(gp_framer *fr, const uint8_t *p, size_t len) {
    if (fr->err)
        return fr->err;
    if (len == 0)
        return 0;
    if (fr->start == fr->end && fr->cap > FRAMER_KEEP && len <= FRAMER_KEEP) {
        /* A large frame has been through: an idle connection should not keep its buffer
         * (a bridge holds thousands of them). */
        free(fr->buf);
        fr->buf = NULL;
        fr->cap = fr->start = fr->end = 0;
    }
    if (len > fr->cap - fr->end) {
        /* Frames handed out so far are no longer borrowed once we are fed: compact. */
        size_t pending = fr->end - fr->start;
        if (fr->start)
            memmove(fr->buf, fr->buf + fr->start, pending);
        fr->start = 0;
        fr->end = pending;
        if (len > SIZE_MAX / 2 - pending ||
            gp_grow(&fr->buf, &fr->cap, pending + len, FRAMER_FIRST, 1) != 0)
            return fr->err = GP_ERR_NOMEM; /* the stream lost bytes: nothing can follow */
    }
    memcpy(fr->buf + fr->end, p, len);
    fr->end += len;
    return 0;
}

int gp_framer_next(gp_framer *fr, gp_frame *out) {
    if (fr->err)
        return fr->err;
    if (fr->start == fr->end)
        return 0;
    ssize_t n = gp_frame_decode(fr->buf + fr->start, fr->end - fr->start, fr->max_payload, out);
    if (n == GP_ERR_TRUNCATED)
        return 0;
    if (n < 0)
        return fr->err = (int)n;
    fr->start += (size_t)n;
    if (fr->start == fr->end) /* the bytes stay in place for the frame just returned */
        fr->start = fr->end = 0;
    return 1;
}

size_t gp_framer_pending(const gp_framer *fr) {
    return fr->end - fr->start;
}

const char *gp_frame_type_name(uint8_t type) {
    static const char *const names[] = {
        [GP_FRAME_HELLO] = "HELLO",         [GP_FRAME_CHALLENGE] = "CHALLENGE",
        [GP_FRAME_AUTH] = "AUTH",           [GP_FRAME_WELCOME] = "WELCOME",
        [GP_FRAME_REQ_HEAD] = "REQ_HEAD",   [GP_FRAME_REQ_BODY] = "REQ_BODY",
        [GP_FRAME_RESP_HEAD] = "RESP_HEAD", [GP_FRAME_RESP_BODY] = "RESP_BODY",
        [GP_FRAME_CANCEL] = "CANCEL",       [GP_FRAME_PING] = "PING",
        [GP_FRAME_PONG] = "PONG",           [GP_FRAME_CREDIT] = "CREDIT",
        [GP_FRAME_GOAWAY] = "GOAWAY",       [GP_FRAME_S_OPEN] = "S_OPEN",
        [GP_FRAME_S_OPENED] = "S_OPENED",   [GP_FRAME_S_ENTRY] = "S_ENTRY",
        [GP_FRAME_S_ATTACH] = "S_ATTACH",   [GP_FRAME_L3_REQ] = "L3_REQ",
        [GP_FRAME_L3_GRANT] = "L3_GRANT",
    };
    return type >= 1 && type <= GP_FRAME_TYPE_MAX ? names[type] : "UNKNOWN";
}

void gp_frame_init(gp_frame *f, uint8_t type, uint32_t stream, uint8_t flags) {
    memset(f, 0, sizeof *f);
    f->type = type;
    f->stream = stream;
    f->flags = flags;
}

void gp_frame_ping(gp_frame *out, uint64_t opaque) {
    gp_frame_init(out, GP_FRAME_PING, 0, 0);
    out->u.ping.opaque = opaque;
}

void gp_frame_pong(gp_frame *out, const gp_frame *ping) {
    gp_frame_ping(out, ping->u.ping.opaque);
    out->type = GP_FRAME_PONG;
}

int gp_frame_pong_rtt(const gp_frame *pong, uint64_t now_us, uint64_t *rtt_us) {
    if (pong->u.ping.opaque > now_us)
        return 0;
    *rtt_us = now_us - pong->u.ping.opaque;
    return 1;
}
