/* Unit tests for the frame codec and the streaming framer (proto/frame.c): every kind round
 * trips, every encoding survives being split at every byte boundary, and hostile input gets
 * the documented error without reading past the payload. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX GP_DEFAULT_MAX_FRAME

static const uint8_t nonce_a[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t nonce_b[32] = {[0] = 0xff, [15] = 0x80, [31] = 0x01};
static const uint8_t body_bytes[] = {0, 1, 2, 0xff, 0xfe, '\n', 0};
static gp_header hdrs[] = {
    {GP_STR_LIT("content-type"), GP_STR_LIT("application/json")},
    {GP_STR_LIT("x-empty"), GP_STR_LIT("")},
    {GP_STR_LIT(""), GP_STR_LIT("value with empty name")},
};

/* One frame of every type, with every field set to something recognisable. */
static size_t samples(gp_frame *f) {
    size_t n = 0;
    memset(f, 0, 24 * sizeof *f);
    f[n].type = GP_FRAME_HELLO;
    f[n].u.hello.min_ver = 1;
    f[n].u.hello.max_ver = 2;
    f[n].u.hello.house_id = GP_STR_LIT("house-1.a_b");
    f[n++].u.hello.nonce = nonce_a;
    f[n].type = GP_FRAME_CHALLENGE;
    f[n].u.challenge.nonce = nonce_a;
    f[n++].u.challenge.proof = nonce_b;
    f[n].type = GP_FRAME_AUTH;
    f[n++].u.auth.proof = nonce_b;
    f[n].type = GP_FRAME_WELCOME;
    f[n].u.welcome.bridge_id = GP_STR_LIT("bridge-7");
    f[n].u.welcome.max_frame = 1048576;
    f[n].u.welcome.ping_interval_ms = 5000;
    f[n].u.welcome.window = 0xdeadbeef;
    f[n++].u.welcome.epoch = 0x0102030405060708ull;
    f[n].type = GP_FRAME_REQ_HEAD;
    f[n].stream = 0x01020304;
    f[n].flags = GP_FLAG_FIN;
    f[n].u.req_head.frame_id = GP_STR_LIT("7f3c-uuid");
    f[n].u.req_head.method = GP_STR_LIT("POST");
    f[n].u.req_head.path = GP_STR_LIT("/status?x=1");
    f[n].u.req_head.service = GP_STR_LIT("");
    f[n].u.req_head.headers = hdrs;
    f[n].u.req_head.nheaders = 3;
    f[n].u.req_head.timeout_ms = 30000;
    f[n++].u.req_head.body_len = GP_LEN_UNKNOWN;
    f[n].type = GP_FRAME_REQ_BODY;
    f[n].stream = 1;
    f[n].flags = GP_FLAG_ZSTD;
    f[n++].u.body.data = (gp_str){body_bytes, sizeof body_bytes};
    f[n].type = GP_FRAME_RESP_HEAD;
    f[n].stream = 2;
    f[n].u.resp_head.status = 504;
    f[n].u.resp_head.headers = hdrs;
    f[n].u.resp_head.nheaders = 2;
    f[n].u.resp_head.error = GP_STR_LIT("timeout");
    f[n].u.resp_head.message = GP_STR_LIT("upstream slower than 5000 ms");
    f[n++].u.resp_head.body_len = 12345;
    f[n].type = GP_FRAME_RESP_BODY;
    f[n].stream = 2;
    f[n++].flags = GP_FLAG_FIN; /* empty body with FIN */
    f[n].type = GP_FRAME_CANCEL;
    f[n].stream = 9;
    f[n++].u.cancel.reason = GP_STR_LIT("deadline");
    f[n].type = GP_FRAME_PING;
    f[n++].u.ping.opaque = 0xfedcba9876543210ull;
    f[n].type = GP_FRAME_PONG;
    f[n++].u.ping.opaque = 1;
    f[n].type = GP_FRAME_CREDIT;
    f[n].stream = 3;
    f[n++].u.credit.increment = 65536;
    f[n].type = GP_FRAME_GOAWAY;
    f[n].u.goaway.code = GP_GOAWAY_DRAINING;
    f[n++].u.goaway.message = GP_STR_LIT("draining");
    f[n].type = GP_FRAME_S_OPEN;
    f[n].u.s_open.sid = GP_STR_LIT("9b1e-sid");
    f[n].u.s_open.service = GP_STR_LIT("ssh");
    f[n].u.s_open.window = 1u << 20;
    f[n].u.s_open.idle_ms = 300000;
    f[n++].u.s_open.timeout_ms = 10000;
    f[n].type = GP_FRAME_S_OPENED;
    f[n].u.s_opened.sid = GP_STR_LIT("9b1e-sid");
    f[n].u.s_opened.status = 502;
    f[n].u.s_opened.error = GP_STR_LIT("upstream_unreachable");
    f[n++].u.s_opened.message = GP_STR_LIT("connect 127.0.0.1:22: refused");
    f[n].type = GP_FRAME_S_ENTRY;
    f[n].flags = GP_FLAG_ZSTD;
    f[n].u.s_entry.sid = GP_STR_LIT("9b1e-sid");
    f[n].u.s_entry.has = GP_SE_OFF | GP_SE_ACK | GP_SE_WIN | GP_SE_FIN;
    f[n].u.s_entry.off = (1ull << 53) - 1;
    f[n].u.s_entry.ack = 0x0102030405ull;
    f[n].u.s_entry.win = 65536;
    f[n].u.s_entry.rst = GP_STR_LIT("");
    f[n].u.s_entry.message = GP_STR_LIT("");
    f[n++].u.s_entry.data = (gp_str){body_bytes, sizeof body_bytes};
    f[n].type = GP_FRAME_S_ATTACH;
    f[n].u.s_attach.sid = GP_STR_LIT("9b1e-sid");
    f[n].u.s_attach.rcv_next = 12345;
    f[n].u.s_attach.snd_acked = 0xffffffffffull;
    f[n].u.s_attach.window = 262144;
    f[n++].u.s_attach.idle_ms = 300000;
    f[n].type = GP_FRAME_L3_REQ;
    f[n].u.l3_req.mtu = 1280;
    f[n++].u.l3_req.routes = GP_STR_LIT("192.168.1.0/24,fd00:1::/64");
    f[n].type = GP_FRAME_L3_GRANT;
    f[n].u.l3_grant.status = 200;
    f[n].u.l3_grant.error = GP_STR_LIT("");
    f[n].u.l3_grant.message = GP_STR_LIT("route 10.0.0.0/8 not allowed for this house");
    f[n].u.l3_grant.addrs = GP_STR_LIT("100.96.0.7,fd7a:6770::7");
    f[n].u.l3_grant.hub = GP_STR_LIT("100.96.0.0/16,fd7a:6770::/64");
    f[n].u.l3_grant.routes = GP_STR_LIT("192.168.1.0/24");
    f[n++].u.l3_grant.mtu = 1280;
    return n;
}

static void str_eq(gp_str a, gp_str b, const char *what) {
    cr_assert_eq(a.len, b.len, "%s", what);
    if (a.len)
        cr_assert(memcmp(a.p, b.p, a.len) == 0, "%s", what);
}

static void headers_eq(const gp_header *a, size_t na, const gp_header *b, size_t nb) {
    cr_assert_eq(na, nb, "header count");
    for (size_t i = 0; i < na; i++) {
        str_eq(a[i].name, b[i].name, "header name");
        str_eq(a[i].value, b[i].value, "header value");
    }
}

/* frame_eq names each field once: a's and b's are compared and a failure says which. */
#define EQ(m) cr_assert_eq(a->u.m, b->u.m, "%s", #m)
#define STR(m) str_eq(a->u.m, b->u.m, #m)
#define MEM(m, len) cr_assert(memcmp(a->u.m, b->u.m, len) == 0, "%s", #m)
#define HEADERS(m) headers_eq(a->u.m.headers, a->u.m.nheaders, b->u.m.headers, b->u.m.nheaders)

static void frame_eq(const gp_frame *a, const gp_frame *b) {
    cr_assert_eq(a->type, b->type);
    cr_assert_eq(a->flags, b->flags);
    cr_assert_eq(a->stream, b->stream);
    switch (a->type) {
    case GP_FRAME_HELLO:
        EQ(hello.min_ver);
        EQ(hello.max_ver);
        STR(hello.house_id);
        MEM(hello.nonce, GP_NONCE_LEN);
        break;
    case GP_FRAME_CHALLENGE:
        MEM(challenge.nonce, GP_NONCE_LEN);
        MEM(challenge.proof, GP_PROOF_LEN);
        break;
    case GP_FRAME_AUTH:
        MEM(auth.proof, GP_PROOF_LEN);
        break;
    case GP_FRAME_WELCOME:
        STR(welcome.bridge_id);
        EQ(welcome.max_frame);
        EQ(welcome.ping_interval_ms);
        EQ(welcome.window);
        EQ(welcome.epoch);
        break;
    case GP_FRAME_REQ_HEAD:
        STR(req_head.frame_id);
        STR(req_head.method);
        STR(req_head.path);
        STR(req_head.service);
        HEADERS(req_head);
        EQ(req_head.timeout_ms);
        EQ(req_head.body_len);
        break;
    case GP_FRAME_RESP_HEAD:
        EQ(resp_head.status);
        HEADERS(resp_head);
        STR(resp_head.error);
        STR(resp_head.message);
        EQ(resp_head.body_len);
        break;
    case GP_FRAME_REQ_BODY:
    case GP_FRAME_RESP_BODY:
        STR(body.data);
        break;
    case GP_FRAME_CANCEL:
        STR(cancel.reason);
        break;
    case GP_FRAME_PING:
    case GP_FRAME_PONG:
        EQ(ping.opaque);
        break;
    case GP_FRAME_CREDIT:
        EQ(credit.increment);
        break;
    case GP_FRAME_GOAWAY:
        EQ(goaway.code);
        STR(goaway.message);
        break;
    case GP_FRAME_S_OPEN:
        STR(s_open.sid);
        STR(s_open.service);
        EQ(s_open.window);
        EQ(s_open.idle_ms);
        EQ(s_open.timeout_ms);
        break;
    case GP_FRAME_S_OPENED:
        STR(s_opened.sid);
        EQ(s_opened.status);
        STR(s_opened.error);
        STR(s_opened.message);
        break;
    case GP_FRAME_S_ENTRY:
        STR(s_entry.sid);
        EQ(s_entry.has);
        EQ(s_entry.off);
        EQ(s_entry.ack);
        EQ(s_entry.win);
        STR(s_entry.rst);
        STR(s_entry.message);
        STR(s_entry.data);
        break;
    case GP_FRAME_S_ATTACH:
        STR(s_attach.sid);
        EQ(s_attach.rcv_next);
        EQ(s_attach.snd_acked);
        EQ(s_attach.window);
        EQ(s_attach.idle_ms);
        break;
    case GP_FRAME_L3_REQ:
        EQ(l3_req.mtu);
        STR(l3_req.routes);
        break;
    case GP_FRAME_L3_GRANT:
        EQ(l3_grant.status);
        STR(l3_grant.error);
        STR(l3_grant.message);
        STR(l3_grant.addrs);
        STR(l3_grant.hub);
        STR(l3_grant.routes);
        EQ(l3_grant.mtu);
        break;
    default:
        cr_assert_fail("unexpected type %d", a->type);
    }
}

#undef EQ
#undef STR
#undef MEM
#undef HEADERS

static size_t encode(const gp_frame *f, uint8_t *buf, size_t cap) {
    ssize_t n = gp_frame_encode(f, buf, cap);
    cr_assert_gt(n, 0, "encode %s: %s", gp_frame_type_name(f->type), gp_strerror((int)n));
    return (size_t)n;
}

/* A raw frame header, for hand-built hostile input. */
static void hdr(uint8_t *b, uint8_t ver, uint8_t type, uint8_t flags, uint32_t stream,
                uint32_t len) {
    b[0] = ver;
    b[1] = type;
    b[2] = flags;
    b[3] = 0;
    for (int i = 0; i < 4; i++) {
        b[4 + i] = (uint8_t)(stream >> (24 - 8 * i));
        b[8 + i] = (uint8_t)(len >> (24 - 8 * i));
    }
}

Test(frame, every_kind_round_trips) {
    gp_frame f[24], g;
    size_t n = samples(f);
    cr_assert_eq(n, GP_FRAME_TYPE_MAX);
    uint8_t buf[1024];
    for (size_t i = 0; i < n; i++) {
        size_t len = encode(&f[i], buf, sizeof buf);
        cr_assert_eq(len, gp_frame_size(&f[i]));
        cr_assert_eq(buf[0], GP_PROTO_VERSION);
        cr_assert_eq(buf[1], f[i].type);
        cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), (ssize_t)len);
        frame_eq(&f[i], &g);
    }
}

/* WELCOME says the protocol only to a house that offered 2: a protocol-1 house decodes the
 * frame it always knew (no trailing byte), and a new house reads such a frame as protocol 1. */
Test(frame, welcome_proto_byte_only_when_set) {
    gp_frame f, g;
    gp_frame_init(&f, GP_FRAME_WELCOME, 0, 0);
    f.u.welcome.bridge_id = GP_STR_LIT("b");
    uint8_t buf[128];
    size_t n1 = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n1, MAX, &g), (ssize_t)n1);
    cr_assert_eq(g.u.welcome.proto, 0, "absent: protocol 1");
    f.u.welcome.proto = GP_PROTO_STREAMS;
    size_t n2 = encode(&f, buf, sizeof buf);
    cr_assert_eq(n2, n1 + 1);
    cr_assert_eq(gp_frame_decode(buf, n2, MAX, &g), (ssize_t)n2);
    cr_assert_eq(g.u.welcome.proto, GP_PROTO_STREAMS);
    buf[n2 - 1] = 0; /* protocol 0 does not exist */
    cr_assert_eq(gp_frame_decode(buf, n2, MAX, &g), GP_ERR_MALFORMED);
}

/* Stream frames name their stream: an empty or over-long sid, or unknown `has` bits, are
 * malformed, never handed to the endpoint. */
Test(frame, stream_frames_check_sid_and_bits) {
    gp_frame f, g;
    uint8_t buf[256];
    gp_frame_init(&f, GP_FRAME_S_ENTRY, 0, 0);
    f.u.s_entry.sid = GP_STR_LIT("s");
    f.u.s_entry.has = GP_SE_ACK;
    size_t n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, MAX, &g), (ssize_t)n);
    cr_assert_eq(g.u.s_entry.data.len, 0);
    buf[GP_FRAME_HEADER_LEN + 3] = 0x10; /* the has byte after "s" */
    cr_assert_eq(gp_frame_decode(buf, n, MAX, &g), GP_ERR_MALFORMED);
    f.u.s_entry.has = 0x10;
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_INVALID);
    f.u.s_entry.has = 0;
    f.u.s_entry.sid = GP_STR_LIT("");
    n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, MAX, &g), GP_ERR_MALFORMED);
    char big[65];
    memset(big, 'a', sizeof big);
    gp_frame_init(&f, GP_FRAME_S_ATTACH, 0, 0);
    f.u.s_attach.sid = (gp_str){(const uint8_t *)big, sizeof big};
    n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, MAX, &g), GP_ERR_MALFORMED);
    f.u.s_attach.sid = (gp_str){(const uint8_t *)big, 64};
    n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, MAX, &g), (ssize_t)n);
}

Test(frame, header_is_big_endian) {
    gp_frame f = {.type = GP_FRAME_PING, .flags = GP_FLAG_FIN, .stream = 0x0a0b0c0d};
    f.u.ping.opaque = 0x1122334455667788ull;
    uint8_t buf[64];
    cr_assert_eq(encode(&f, buf, sizeof buf), 20);
    const uint8_t want[] = {1, 10, 1,    0,    0x0a, 0x0b, 0x0c, 0x0d, 0,    0,
                            0, 8,  0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    cr_assert(memcmp(buf, want, sizeof want) == 0);
}

Test(frame, every_prefix_is_truncated) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[1024];
    for (size_t i = 0; i < n; i++) {
        size_t len = encode(&f[i], buf, sizeof buf);
        for (size_t k = 0; k < len; k++)
            cr_assert_eq(gp_frame_decode(buf, k, MAX, &g), GP_ERR_TRUNCATED, "%s at %zu",
                         gp_frame_type_name(f[i].type), k);
    }
}

Test(frame, decode_consumes_one_frame_of_several) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[4096];
    size_t len = encode(&f[4], buf, sizeof buf);
    size_t len2 = encode(&f[9], buf + len, sizeof buf - len);
    cr_assert_eq(gp_frame_decode(buf, len + len2, MAX, &g), (ssize_t)len);
    frame_eq(&f[4], &g);
    (void)n;
}

Test(frame, framer_split_at_every_byte_boundary) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[1024];
    for (size_t i = 0; i < n; i++) {
        size_t len = encode(&f[i], buf, sizeof buf);
        for (size_t k = 0; k <= len; k++) {
            gp_framer *fr = gp_framer_new(MAX);
            cr_assert_not_null(fr);
            cr_assert_eq(gp_framer_feed(fr, buf, k), 0);
            if (k < len) {
                cr_assert_eq(gp_framer_next(fr, &g), 0, "%s split at %zu",
                             gp_frame_type_name(f[i].type), k);
                cr_assert_eq(gp_framer_pending(fr), k);
                cr_assert_eq(gp_framer_feed(fr, buf + k, len - k), 0);
            }
            cr_assert_eq(gp_framer_next(fr, &g), 1);
            frame_eq(&f[i], &g);
            cr_assert_eq(gp_framer_pending(fr), 0);
            cr_assert_eq(gp_framer_next(fr, &g), 0);
            gp_framer_free(fr);
        }
    }
}

Test(frame, framer_one_byte_at_a_time) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[8192];
    size_t len = 0;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < n; i++)
            len += encode(&f[i], buf + len, sizeof buf - len);
    gp_framer *fr = gp_framer_new(MAX);
    size_t got = 0;
    for (size_t k = 0; k < len; k++) {
        cr_assert_eq(gp_framer_feed(fr, buf + k, 1), 0);
        int rc;
        while ((rc = gp_framer_next(fr, &g)) == 1)
            frame_eq(&f[got++ % n], &g);
        cr_assert_eq(rc, 0);
    }
    cr_assert_eq(got, 3 * n);
    cr_assert_eq(gp_framer_pending(fr), 0);
    gp_framer_free(fr);
}

Test(frame, framer_many_frames_in_one_feed) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[8192];
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += encode(&f[i], buf + len, sizeof buf - len);
    gp_framer *fr = gp_framer_new(MAX);
    /* All but the last byte: every frame but the last comes out. */
    cr_assert_eq(gp_framer_feed(fr, buf, len - 1), 0);
    for (size_t i = 0; i + 1 < n; i++) {
        cr_assert_eq(gp_framer_next(fr, &g), 1);
        frame_eq(&f[i], &g);
    }
    cr_assert_eq(gp_framer_next(fr, &g), 0);
    cr_assert_eq(gp_framer_feed(fr, buf + len - 1, 1), 0);
    cr_assert_eq(gp_framer_next(fr, &g), 1);
    frame_eq(&f[n - 1], &g);
    gp_framer_free(fr);
}

Test(frame, framer_large_body_grows_buffer) {
    size_t blen = GP_BODY_CHUNK;
    uint8_t *body = malloc(blen), *buf = malloc(blen + 64);
    for (size_t i = 0; i < blen; i++)
        body[i] = (uint8_t)(i * 7);
    gp_frame f = {.type = GP_FRAME_RESP_BODY, .stream = 5, .flags = GP_FLAG_FIN}, g;
    f.u.body.data = (gp_str){body, blen};
    size_t len = encode(&f, buf, blen + 64);
    gp_framer *fr = gp_framer_new(MAX);
    for (size_t off = 0; off < len; off += 1000) {
        cr_assert_eq(gp_framer_next(fr, &g), 0);
        cr_assert_eq(gp_framer_feed(fr, buf + off, len - off < 1000 ? len - off : 1000), 0);
    }
    cr_assert_eq(gp_framer_next(fr, &g), 1);
    frame_eq(&f, &g);
    gp_framer_free(fr);
    free(body);
    free(buf);
}

Test(frame, length_over_limit_fails_before_payload) {
    uint8_t b[GP_FRAME_HEADER_LEN];
    gp_frame g;
    hdr(b, 1, GP_FRAME_REQ_BODY, 0, 1, 1001);
    cr_assert_eq(gp_frame_decode(b, sizeof b, 1000, &g), GP_ERR_TOO_LARGE);
    hdr(b, 1, GP_FRAME_REQ_BODY, 0, 1, UINT32_MAX);
    cr_assert_eq(gp_frame_decode(b, sizeof b, MAX, &g), GP_ERR_TOO_LARGE);
    /* Exactly at the limit is fine (and waits for its payload). */
    hdr(b, 1, GP_FRAME_REQ_BODY, 0, 1, 1000);
    cr_assert_eq(gp_frame_decode(b, sizeof b, 1000, &g), GP_ERR_TRUNCATED);

    gp_framer *fr = gp_framer_new(1000);
    hdr(b, 1, GP_FRAME_REQ_BODY, 0, 1, 1001);
    cr_assert_eq(gp_framer_feed(fr, b, sizeof b), 0);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_TOO_LARGE);
    gp_framer_free(fr);
}

Test(frame, string_overrunning_payload_is_malformed) {
    uint8_t b[64];
    gp_frame g;
    /* CANCEL: str of declared length 10, but only 3 bytes in a 5-byte payload. */
    hdr(b, 1, GP_FRAME_CANCEL, 0, 1, 5);
    memcpy(b + 12,
           "\x00\x0a"
           "abc",
           5);
    cr_assert_eq(gp_frame_decode(b, 12 + 5, MAX, &g), GP_ERR_MALFORMED);
    /* A length prefix cut in half. */
    hdr(b, 1, GP_FRAME_CANCEL, 0, 1, 1);
    b[12] = 0;
    cr_assert_eq(gp_frame_decode(b, 12 + 1, MAX, &g), GP_ERR_MALFORMED);
    /* A fixed field missing: AUTH with a 31-byte proof. */
    hdr(b, 1, GP_FRAME_AUTH, 0, 0, 31);
    memset(b + 12, 0, 31);
    cr_assert_eq(gp_frame_decode(b, 12 + 31, MAX, &g), GP_ERR_MALFORMED);
}

Test(frame, header_count_overrun_is_malformed) {
    gp_frame f = {.type = GP_FRAME_RESP_HEAD, .stream = 1}, g;
    f.u.resp_head.status = 200;
    f.u.resp_head.headers = hdrs;
    f.u.resp_head.nheaders = 1;
    uint8_t buf[256];
    size_t len = encode(&f, buf, sizeof buf);
    cr_assert_eq(buf[14], 0);
    cr_assert_eq(buf[15], 1); /* header count after the u16 status */
    buf[15] = 2;              /* claims one more header than there is */
    cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), GP_ERR_MALFORMED);
    /* More than GP_MAX_HEADERS is refused whatever the payload holds. */
    buf[14] = (GP_MAX_HEADERS + 1) >> 8;
    buf[15] = (GP_MAX_HEADERS + 1) & 0xff;
    cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), GP_ERR_MALFORMED);
    /* A header value's u32 length beyond the payload. */
    len = encode(&f, buf, sizeof buf);
    size_t vlen_at = 12 + 2 + 2 + 2 + hdrs[0].name.len;
    buf[vlen_at] = 0x7f;
    cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), GP_ERR_MALFORMED);
}

Test(frame, max_headers_round_trip) {
    static gp_header many[GP_MAX_HEADERS];
    for (size_t i = 0; i < GP_MAX_HEADERS; i++)
        many[i] = (gp_header){GP_STR_LIT("n"), GP_STR_LIT("v")};
    gp_frame f = {.type = GP_FRAME_REQ_HEAD, .stream = 1}, g;
    f.u.req_head.method = GP_STR_LIT("GET");
    f.u.req_head.headers = many;
    f.u.req_head.nheaders = GP_MAX_HEADERS;
    uint8_t buf[4096];
    size_t len = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), (ssize_t)len);
    frame_eq(&f, &g);
    cr_assert_eq(g.u.req_head.headers, g.hbuf);
    f.u.req_head.nheaders = GP_MAX_HEADERS + 1;
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_TOO_LARGE);
}

Test(frame, trailing_bytes_are_malformed) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[1024];
    for (size_t i = 0; i < n; i++) {
        if (f[i].type == GP_FRAME_REQ_BODY || f[i].type == GP_FRAME_RESP_BODY ||
            f[i].type == GP_FRAME_S_ENTRY)
            continue; /* bytes run to the end of a body or entry: nothing can trail them */
        size_t len = encode(&f[i], buf, sizeof buf);
        buf[len] = 0;
        buf[11]++; /* payload length one larger, low byte never 0xff here */
        cr_assert_eq(gp_frame_decode(buf, len + 1, MAX, &g), GP_ERR_MALFORMED, "%s",
                     gp_frame_type_name(f[i].type));
    }
}

Test(frame, bad_version_type_flags_reserved) {
    uint8_t b[64] = {0};
    gp_frame g;
    hdr(b, 2, GP_FRAME_PING, 0, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_VERSION);
    hdr(b, 0, GP_FRAME_PING, 0, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_VERSION);
    hdr(b, 1, 0, 0, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_TYPE_MAX + 1, 0, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_PING, 0x04, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_PING, 0x80, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_PING, 0, 0, 8);
    b[3] = 1;
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_PING, 0, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), 20);
}

Test(frame, zstd_flag_only_on_bodies) {
    uint8_t b[64] = {0};
    gp_frame g;
    hdr(b, 1, GP_FRAME_PING, GP_FLAG_ZSTD, 0, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), GP_ERR_MALFORMED);
    hdr(b, 1, GP_FRAME_REQ_BODY, GP_FLAG_ZSTD | GP_FLAG_FIN, 1, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), 20);
    hdr(b, 1, GP_FRAME_RESP_BODY, GP_FLAG_ZSTD, 1, 8);
    cr_assert_eq(gp_frame_decode(b, 20, MAX, &g), 20);

    gp_frame f = {.type = GP_FRAME_PING, .flags = GP_FLAG_ZSTD};
    cr_assert_eq(gp_frame_encode(&f, b, sizeof b), GP_ERR_INVALID);
    f.flags = 0x10;
    cr_assert_eq(gp_frame_encode(&f, b, sizeof b), GP_ERR_INVALID);
}

Test(frame, hello_house_id_length) {
    gp_frame f[24], g;
    samples(f);
    uint8_t buf[256], id[65];
    memset(id, 'a', sizeof id);
    f[0].u.hello.house_id = (gp_str){id, 64};
    size_t len = encode(&f[0], buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, len, MAX, &g), (ssize_t)len);
    f[0].u.hello.house_id = (gp_str){id, 65};
    cr_assert_eq(gp_frame_encode(&f[0], buf, sizeof buf), GP_ERR_INVALID);
    f[0].u.hello.house_id = (gp_str){id, 0};
    cr_assert_eq(gp_frame_encode(&f[0], buf, sizeof buf), GP_ERR_INVALID);

    /* Hand-built: empty and 65-byte ids on the wire. */
    hdr(buf, 1, GP_FRAME_HELLO, 0, 0, 2 + 2 + 32);
    memset(buf + 12, 0, 36);
    buf[12] = buf[13] = 1;
    cr_assert_eq(gp_frame_decode(buf, 12 + 36, MAX, &g), GP_ERR_MALFORMED);
    hdr(buf, 1, GP_FRAME_HELLO, 0, 0, 2 + 2 + 65 + 32);
    buf[14] = 0;
    buf[15] = 65;
    memset(buf + 16, 'a', 65);
    memset(buf + 16 + 65, 0, 32);
    cr_assert_eq(gp_frame_decode(buf, 12 + 101, MAX, &g), GP_ERR_MALFORMED);
}

Test(frame, errors_are_sticky) {
    gp_frame f[24], g;
    samples(f);
    uint8_t good[256], bad[GP_FRAME_HEADER_LEN];
    size_t len = encode(&f[9], good, sizeof good);
    hdr(bad, 9, GP_FRAME_PING, 0, 0, 8);
    gp_framer *fr = gp_framer_new(MAX);
    cr_assert_eq(gp_framer_feed(fr, bad, sizeof bad), 0);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_VERSION);
    cr_assert_eq(gp_framer_feed(fr, good, len), GP_ERR_VERSION);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_VERSION);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_VERSION);
    gp_framer_free(fr);

    /* A bad frame after a good one: the good one comes out first. */
    fr = gp_framer_new(MAX);
    cr_assert_eq(gp_framer_feed(fr, good, len), 0);
    hdr(bad, 1, 99, 0, 0, 0);
    cr_assert_eq(gp_framer_feed(fr, bad, sizeof bad), 0);
    cr_assert_eq(gp_framer_next(fr, &g), 1);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_MALFORMED);
    cr_assert_eq(gp_framer_next(fr, &g), GP_ERR_MALFORMED);
    gp_framer_free(fr);
    gp_framer_free(NULL);
}

Test(frame, encode_buffer_too_small) {
    gp_frame f[24];
    size_t n = samples(f);
    uint8_t buf[1024];
    for (size_t i = 0; i < n; i++) {
        size_t len = gp_frame_size(&f[i]);
        for (size_t cap = 0; cap < len; cap++)
            cr_assert_eq(gp_frame_encode(&f[i], buf, cap), GP_ERR_BUFFER);
        cr_assert_eq(gp_frame_encode(&f[i], buf, len), (ssize_t)len);
    }
}

Test(frame, encode_unrepresentable) {
    static uint8_t big[70000];
    uint8_t buf[256];
    gp_frame f = {.type = GP_FRAME_CANCEL, .stream = 1};
    f.u.cancel.reason = (gp_str){big, 65536};
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_TOO_LARGE);
    f.u.cancel.reason = (gp_str){big, 65535};
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_BUFFER);
    f.type = 0;
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_INVALID);
    f.type = GP_FRAME_TYPE_MAX + 1;
    cr_assert_eq(gp_frame_encode(&f, buf, sizeof buf), GP_ERR_INVALID);
    gp_frame a = {.type = GP_FRAME_AUTH}; /* proof pointer missing */
    cr_assert_eq(gp_frame_encode(&a, buf, sizeof buf), GP_ERR_INVALID);
    gp_frame h = {.type = GP_FRAME_RESP_HEAD, .stream = 1};
    h.u.resp_head.nheaders = 1; /* headers pointer missing */
    cr_assert_eq(gp_frame_encode(&h, buf, sizeof buf), GP_ERR_INVALID);
}

/* Every single-byte corruption of every sample either fails cleanly or decodes to a frame
 * that re-encodes to exactly the corrupted bytes. */
Test(frame, corrupted_bytes_fail_cleanly_or_round_trip) {
    gp_frame f[24], g;
    size_t n = samples(f);
    uint8_t buf[1024], again[1024];
    for (size_t i = 0; i < n; i++) {
        size_t len = encode(&f[i], buf, sizeof buf);
        for (size_t k = 0; k < len; k++) {
            uint8_t saved = buf[k];
            for (int v = 0; v < 256; v += 17) {
                buf[k] = (uint8_t)(saved ^ (v | 1));
                ssize_t r = gp_frame_decode(buf, len, MAX, &g);
                if (r > 0) {
                    cr_assert_eq(gp_frame_encode(&g, again, sizeof again), r);
                    cr_assert(memcmp(again, buf, (size_t)r) == 0);
                } else {
                    cr_assert(r == GP_ERR_TRUNCATED || r == GP_ERR_MALFORMED ||
                              r == GP_ERR_VERSION || r == GP_ERR_TOO_LARGE);
                }
            }
            buf[k] = saved;
        }
    }
}

Test(frame, names) {
    cr_assert_str_eq(gp_frame_type_name(GP_FRAME_HELLO), "HELLO");
    cr_assert_str_eq(gp_frame_type_name(GP_FRAME_GOAWAY), "GOAWAY");
    cr_assert_str_eq(gp_frame_type_name(0), "UNKNOWN");
    cr_assert_str_eq(gp_frame_type_name(200), "UNKNOWN");
    for (int e = 0; e >= GP_ERR_INVALID; e--)
        cr_assert_str_neq(gp_strerror(e), "unknown error");
    cr_assert_str_eq(gp_strerror(-1000), "unknown error");
    cr_assert(gp_str_eq(GP_STR_LIT("abc"), "abc"));
    cr_assert(!gp_str_eq(GP_STR_LIT("abc"), "abcd"));
    cr_assert(gp_str_eq(gp_str_c(NULL), ""));
    cr_assert(gp_str_eq((gp_str){NULL, 0}, NULL));
}

/* Keepalive: the PONG echoes the PING's opaque; a PONG's opaque from the future gives no RTT. */
Test(frame, pong_answers_ping) {
    gp_frame ping, pong;
    gp_frame_ping(&ping, 1000);
    cr_assert_eq(ping.type, GP_FRAME_PING);
    ping.stream = 7;
    gp_frame_pong(&pong, &ping);
    cr_assert_eq(pong.type, GP_FRAME_PONG);
    cr_assert_eq(pong.stream, 0);
    cr_assert_eq(pong.u.ping.opaque, 1000);
    uint64_t rtt = 42;
    cr_assert_eq(gp_frame_pong_rtt(&pong, 1250, &rtt), 1);
    cr_assert_eq(rtt, 250);
    cr_assert_eq(gp_frame_pong_rtt(&pong, 999, &rtt), 0);
    cr_assert_eq(rtt, 250, "nothing written for an opaque from the future");
}

/* A frame made by gp_frame_init encodes as its type, stream and flags with zero fields. */
Test(frame, init_gives_an_empty_frame) {
    gp_frame f, g;
    memset(&f, 0xab, sizeof f);
    gp_frame_init(&f, GP_FRAME_RESP_BODY, 9, GP_FLAG_FIN);
    cr_assert_eq(f.type, GP_FRAME_RESP_BODY);
    cr_assert_eq(f.stream, 9);
    cr_assert_eq(f.flags, GP_FLAG_FIN);
    cr_assert_eq(f.u.body.data.len, 0);
    uint8_t buf[64];
    ssize_t n = gp_frame_encode(&f, buf, sizeof buf);
    cr_assert_eq(n, GP_FRAME_HEADER_LEN);
    cr_assert_eq(gp_frame_decode(buf, (size_t)n, 1024, &g), n);
    cr_assert_eq(g.stream, 9);
    cr_assert_eq(g.flags, GP_FLAG_FIN);
}

/* The errf writer: formats into err, and takes no err at all. */
Test(frame, errf) {
    char err[8];
    gp_errf(err, sizeof err, "%s=%d", "abc", 12345);
    cr_assert_str_eq(err, "abc=123");
    gp_errf(NULL, 0, "%s", "dropped");
    gp_errf(err, 0, "%s", "dropped");
    cr_assert_str_eq(err, "abc=123");
}

/* An L3 frame's lists are bounded (GP_L3_LIST_MAX): a longer one is malformed, whatever the
 * frame limit allows. */
Test(frame, l3_lists_over_their_bound_are_malformed) {
    static uint8_t big[GP_L3_LIST_MAX + 1], buf[2 * GP_L3_LIST_MAX];
    memset(big, '1', sizeof big);
    gp_frame f, g;
    gp_frame_init(&f, GP_FRAME_L3_REQ, 0, 0);
    f.u.l3_req.mtu = 1280;
    f.u.l3_req.routes = (gp_str){big, sizeof big - 1};
    size_t n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, GP_DEFAULT_MAX_FRAME, &g), (ssize_t)n);
    f.u.l3_req.routes.len++;
    n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, GP_DEFAULT_MAX_FRAME, &g), GP_ERR_MALFORMED);
    gp_frame_init(&f, GP_FRAME_L3_GRANT, 0, 0);
    f.u.l3_grant.hub = (gp_str){big, sizeof big};
    n = encode(&f, buf, sizeof buf);
    cr_assert_eq(gp_frame_decode(buf, n, GP_DEFAULT_MAX_FRAME, &g), GP_ERR_MALFORMED);
}
