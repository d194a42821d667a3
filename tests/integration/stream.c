/* stream.c — TCP streams through Redis, the bridge's side (proto/STREAMS.md,
 * bridge/daemon/streams.c) against a real Redis and a real bridge. The house is a fake one
 * here, speaking the tunnel's frames on a raw WebSocket (the harness's client), so that every
 * frame the bridge sends can be looked at and every frame a hostile house could send can be
 * sent: opens refused (a protocol-1 house, bad fields, reply keys, existing keys, timeouts,
 * unknown kinds), the relay both ways with acks trimming each key, resets, and a takeover by a
 * second bridge (S_ATTACH). The end-to-end run with the real house is at the end. */
#include "stream.h"
#include "../../bridge/store/rkeys.h"
#include "../harness/sframe.h"
#include "../harness/tcpsvc.h"
#include "../harness/world.h"
#include "auth.h"
#include "compress.h"
#include "frame.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite(stream, .init = h_init, .fini = h_fini, .timeout = 120);

/* --- a fake house on a raw WebSocket ------------------------------------------------------ */

typedef struct fake {
    int fd;
    gp_framer *fr;
    uint64_t epoch;
    int proto;       /* what WELCOME named (1: nothing) */
    char secret[65]; /* its registered secret (fake_world) */
} fake;

/* Connects house id (registered: secret_hex) to the bridge on port, offering protocols
 * 1..max_proto; fails the test unless WELCOME comes and the house is held. */
static void fake_up(fake *h, int port, const char *id, const char *secret_hex, int max_proto) {
    uint8_t secret[32];
    cr_assert_eq(sodium_hex2bin(secret, sizeof secret, secret_hex, 64, NULL, NULL, NULL), 0);
    char why[128];
    h->fd = h_ws_connect(port, why, sizeof why);
    cr_assert_geq(h->fd, 0, "ws connect: %s", why);
    h->fr = gp_framer_new(GP_DEFAULT_MAX_FRAME);
    uint8_t hn[32], bn[32], proof[32];
    randombytes_buf(hn, sizeof hn);
    gp_frame f, in;
    gp_frame_init(&f, GP_FRAME_HELLO, 0, 0);
    f.u.hello.min_ver = 1;
    f.u.hello.max_ver = (uint8_t)max_proto;
    f.u.hello.house_id = gp_str_c(id);
    f.u.hello.nonce = hn;
    cr_assert_eq(h_ws_send_frame(h->fd, &f), 0);
    cr_assert_eq(h_ws_next_frame(h->fd, h->fr, &in, 5000), 1);
    cr_assert_eq(in.type, GP_FRAME_CHALLENGE);
    memcpy(bn, in.u.challenge.nonce, 32);
    gp_auth_proof(GP_ROLE_HOUSE, secret, gp_str_c(id), hn, bn, proof);
    gp_frame_init(&f, GP_FRAME_AUTH, 0, 0);
    f.u.auth.proof = proof;
    cr_assert_eq(h_ws_send_frame(h->fd, &f), 0);
    cr_assert_eq(h_ws_next_frame(h->fd, h->fr, &in, 5000), 1);
    cr_assert_eq(in.type, GP_FRAME_WELCOME, "got %s", gp_frame_type_name(in.type));
    h->epoch = in.u.welcome.epoch;
    h->proto = in.u.welcome.proto ? in.u.welcome.proto : 1;
    cr_assert(h_wait_connected(id, 10000), "%s not held", id);
}

static void fake_down(fake *h) {
    close(h->fd);
    gp_framer_free(h->fr);
    h->fd = -1;
    h->fr = NULL;
}

/* Redis, the upstream and a bridge (bridge_extra may be NULL), house id registered (its
 * secret into h->secret) and fake house h connected to the bridge offering protocols
 * 1..proto. */
static void fake_world(h_world *w, const char *const *bridge_extra, fake *h, const char *id,
                       int proto) {
    h_world_up(w, NULL, bridge_extra, NULL);
    h_register(id, h->secret);
    fake_up(h, w->bridge_port, id, h->secret, proto);
}

/* The next frame that is not a PING (answered) into *f: 1, or 0 after timeout_ms. */
static int fake_next(fake *h, gp_frame *f, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = h_now_ms();
        if (now >= end)
            return 0;
        int rc = h_ws_next_frame(h->fd, h->fr, f, (int)(end - now));
        if (rc != 1)
            return 0;
        if (f->type == GP_FRAME_PING) {
            gp_frame p;
            gp_frame_pong(&p, f);
            h_ws_send_frame(h->fd, &p);
            continue;
        }
        return 1;
    }
}

/* The next frame of type `type` (others skipped), failing the test after 10 s. */
static void fake_expect(fake *h, gp_frame *f, int type) {
    for (;;) {
        cr_assert(fake_next(h, f, 10000), "no %s from the bridge", gp_frame_type_name(type));
        if (f->type == type)
            return;
    }
}

static void fake_opened(fake *h, const char *sid, unsigned status, const char *error,
                        const char *message) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_OPENED, 0, 0);
    f.u.s_opened.sid = gp_str_c(sid);
    f.u.s_opened.status = (uint16_t)status;
    f.u.s_opened.error = gp_str_c(error);
    f.u.s_opened.message = gp_str_c(message);
    cr_assert_eq(h_ws_send_frame(h->fd, &f), 0);
}

/* S_ENTRY from the house: has (GP_SE_*), off, ack, data (NULL: none), rst (NULL: none). */
static void fake_entry(fake *h, const char *sid, uint8_t has, uint64_t off, uint64_t ack,
                       const char *data, const char *rst) {
    gp_frame f;
    h_s_entry(&f, sid, has, off, ack, gp_str_c(data), rst);
    cr_assert_eq(h_ws_send_frame(h->fd, &f), 0);
}

static void fake_attach(fake *h, const char *sid, uint64_t rcv_next, uint64_t snd_acked,
                        uint32_t window) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_S_ATTACH, 0, 0);
    f.u.s_attach.sid = gp_str_c(sid);
    f.u.s_attach.rcv_next = rcv_next;
    f.u.s_attach.snd_acked = snd_acked;
    f.u.s_attach.window = window;
    f.u.s_attach.idle_ms = 300000;
    cr_assert_eq(h_ws_send_frame(h->fd, &f), 0);
}

/* --- the opener's side, in Redis ---------------------------------------------------------- */

/* XADD of an open entry `kind stream id sid service svc` plus extra name/value pairs (NULL
 * ended); returns the entry id. */
static const char *open_stream(const char *house, const char *sid, const char *svc,
                               const char *const *extra) {
    h_field f[24] = {{"kind", "stream", (size_t)-1}, {"id", sid, (size_t)-1}};
    size_t n = 2;
    if (svc)
        f[n++] = (h_field){"service", svc, (size_t)-1};
    for (int i = 0; extra && extra[i] && extra[i + 1] && n < 24; i += 2)
        f[n++] = (h_field){extra[i], extra[i + 1], (size_t)-1};
    return h_xadd(house, f, n);
}

/* The outcome of sid's open on key (NULL: gp:rep:<sid>) within 15 s; fails without one. */
static void outcome(const char *sid, const char *key, h_reply *r) {
    cr_assert(h_wait_reply(sid, key, 15000, r), "no outcome for %s", sid);
}

/* The outcome of sid's open on key (NULL: gp:rep:<sid>) is the error reply status/error, its
 * message naming `says`. */
static void outcome_refused(const char *sid, const char *key, int status, const char *error,
                            const char *says) {
    h_reply r;
    outcome(sid, key, &r);
    h_assert_error_reply(&r, status, error);
    cr_assert(r.message && strstr(r.message, says), "message: %s", r.message);
    h_reply_free(&r);
}

/* The outcome of sid's open (on gp:rep:<sid>) is a 200. */
static void outcome_ok(const char *sid) {
    h_reply r;
    outcome(sid, NULL, &r);
    cr_assert_eq(r.status, 200, "status %d error %s msg %s", r.status, r.error ? r.error : "-",
                 r.message ? r.message : "-");
    h_reply_free(&r);
}

/* How many times the first entry on gp:rep:<sid> (the outcome) says `kind stream` (-1: there
 * is no entry). */
static int outcome_kind_stream(const char *sid) {
    redisReply *x = h_cmd("XRANGE gp:rep:%s - +", sid);
    int kind = -1;
    if (x->type == REDIS_REPLY_ARRAY && x->elements > 0) {
        const redisReply *fv = x->element[0]->element[1];
        kind = 0;
        for (size_t j = 0; j + 1 < fv->elements; j += 2)
            kind +=
                !strcmp(fv->element[j]->str, "kind") && !strcmp(fv->element[j + 1]->str, "stream");
    }
    freeReplyObject(x);
    return kind;
}

static void sin_key(char *k, const char *house, const char *sid) {
    snprintf(k, 256, "gp:{%s}:sin:%s", house, sid);
}
static void sout_key(char *k, const char *house, const char *sid) {
    snprintf(k, 256, "gp:{%s}:sout:%s", house, sid);
}

/* XADD to sin of house's stream sid: name/value pairs (NULL ended). */
static void sin_add(const char *house, const char *sid, const char *const *nv) {
    char k[256];
    sin_key(k, house, sid);
    const char *argv[40] = {"XADD", k, "*"};
    int n = 3;
    for (int i = 0; nv[i] && n < 38; i++)
        argv[n++] = nv[i];
    redisReply *r = h_cmdv(n, argv, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "XADD sin: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "?");
    freeReplyObject(r);
}

static long long xlen(const char *key) {
    redisReply *r = h_cmd("XLEN %s", key);
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static long long pttl(const char *key) {
    redisReply *r = h_cmd("PTTL %s", key);
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    return n;
}

/* Field `name` of sout's entry i (0: oldest) as a malloc'd string, NULL when absent. */
static char *sout_field(const char *house, const char *sid, size_t i, const char *name) {
    char k[256];
    sout_key(k, house, sid);
    redisReply *r = h_cmd("XRANGE %s - +", k);
    char *out = NULL;
    if (r->type == REDIS_REPLY_ARRAY && i < r->elements) {
        const redisReply *fv = r->element[i]->element[1];
        for (size_t j = 0; j + 1 < fv->elements; j += 2)
            if (strcmp(fv->element[j]->str, name) == 0)
                out = strndup(fv->element[j + 1]->str, fv->element[j + 1]->len);
    }
    freeReplyObject(r);
    return out;
}

/* sout's first entry of house's stream sid is an rst `want`. */
static void expect_sout_rst(const char *house, const char *sid, const char *want) {
    char *rst = sout_field(house, sid, 0, "rst");
    cr_assert(rst && strcmp(rst, want) == 0, "sout rst %s", rst ? rst : "(none)");
    free(rst);
}

/* A stream key that should come to hold an entry `rst <reason>`. */
typedef struct key_rst {
    const char *key, *reason;
} key_rst;
static int has_rst(void *ud) {
    const key_rst *k = ud;
    redisReply *r = h_cmd("XRANGE %s - +", k->key);
    int found = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && !found; i++) {
        const redisReply *kv = r->element[i]->element[1];
        for (size_t j = 0; j + 1 < kv->elements; j += 2)
            found |= strcmp(kv->element[j]->str, "rst") == 0 &&
                     strcmp(kv->element[j + 1]->str, k->reason) == 0;
    }
    freeReplyObject(r);
    return found;
}

typedef struct key_len {
    const char *key;
    long long want;
} key_len;
static int has_len(void *ud) {
    const key_len *k = ud;
    return xlen(k->key) == k->want;
}
/* The stream `key` holds `want` entries within 10 s: 1, or 0. */
static int wait_len(const char *key, long long want) {
    key_len k = {key, want};
    return h_wait(has_len, &k, 10000);
}

/* --- refusals ----------------------------------------------------------------------------- */

/* A house that offered only protocol 1 cannot carry streams: 501 unsupported naming its
 * protocol, an rst on sout, the open entry acknowledged, and the house keeps its connection. */
Test(stream, protocol_1_house_is_refused_clearly) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "old-1", 1);
    cr_assert_eq(h.proto, 1);
    open_stream("old-1", "s-old", "ssh", NULL);
    h_reply r;
    outcome("s-old", NULL, &r);
    h_assert_error_reply(&r, 501, "unsupported");
    cr_assert(r.message && strstr(r.message, "protocol 1") &&
                  strstr(r.message, "upgrade the house"),
              "message: %s", r.message ? r.message : "-");
    h_reply_free(&r);
    expect_sout_rst("old-1", "s-old", "unsupported");
    char k[256];
    sout_key(k, "old-1", "s-old");
    long long t = pttl(k);
    cr_assert(t > 0 && t <= 60000, "sout TTL %lld", t);
    cr_assert(h_wait(h_no_pending, "old-1", 5000), "open entry not acknowledged");
    /* No S_* frame reached the protocol-1 house, and it is still held. */
    gp_frame f;
    cr_assert_not(fake_next(&h, &f, 300) && f.type >= GP_FRAME_S_OPEN, "an S_* frame was sent");
    cr_assert(h_wait_connected("old-1", 1000));
    cr_assert_eq(h_log_count(w.bridge, "event=stream_open"), 1);
    fake_down(&h);
}

/* Every refusal before the house is asked: each field named, reply keys checked as requests'
 * are, ids of existing keys, unknown kinds; nothing reaches the house, nobody else is
 * disturbed. */
Test(stream, bad_opens_are_answered_and_acknowledged) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "bad-1", 2);
    cr_assert_eq(h.proto, 2);
    h_reply r;

    open_stream("bad-1", "s-nosvc", NULL, NULL);
    outcome_refused("s-nosvc", NULL, 400, "bad_request", "service");

    const char *badwin[] = {"window", "12", NULL};
    open_stream("bad-1", "s-win", "ssh", badwin);
    outcome_refused("s-win", NULL, 400, "bad_request", "window");
    expect_sout_rst("bad-1", "s-win", "bad_request");

    const char *badidle[] = {"idle_ms", "5", "reply", "gp:rep:mine:idle", NULL};
    open_stream("bad-1", "s-idle", "ssh", badidle);
    outcome_refused("s-idle", "gp:rep:mine:idle", 400, "bad_request", "idle_ms");

    /* A bad sid: 400 on the default reply key of that id; no byte key named. */
    open_stream("bad-1", "bad/sid", "ssh", NULL);
    outcome_refused("bad/sid", NULL, 400, "bad_request", "id");

    /* A reply key outside the family: nothing written there; the entry is still settled. */
    const char *badreply[] = {"reply", "gp:{bad-1}:house", NULL};
    open_stream("bad-1", "s-reply", "ssh", badreply);
    cr_assert(h_wait(h_no_pending, "bad-1", 10000), "entries left pending");
    redisReply *x = h_cmd("HLEN gp:{bad-1}:house");
    cr_assert_eq(x->type, REDIS_REPLY_INTEGER);
    freeReplyObject(x);
    x = h_cmd("TYPE gp:{bad-1}:house");
    cr_assert_str_eq(x->str, "hash", "the registry hash was written to");
    freeReplyObject(x);

    /* An unknown kind is a 400 naming `kind`, as bad requests get; `kind` twice is a 400 too,
     * whichever comes last. */
    struct {
        const char *id;
        h_field f[4];
    } bad_kind[] = {
        {"s-kind",
         {{"kind", "udp", (size_t)-1},
          {"id", "s-kind", (size_t)-1},
          {"method", "GET", (size_t)-1},
          {"path", "/", (size_t)-1}}},
        {"s-kind2",
         {{"kind", "http", (size_t)-1},
          {"kind", "stream", (size_t)-1},
          {"id", "s-kind2", (size_t)-1},
          {"service", "ssh", (size_t)-1}}},
    };
    for (size_t i = 0; i < sizeof bad_kind / sizeof bad_kind[0]; i++) {
        h_xadd("bad-1", bad_kind[i].f, 4);
        outcome_refused(bad_kind[i].id, NULL, 400, "bad_request", "kind");
    }

    /* Byte keys that exist already: 409, and no rst written into someone's live stream. */
    char k[256];
    sin_key(k, "bad-1", "s-old");
    x = h_cmd("XADD %s * off 0 data x", k);
    freeReplyObject(x);
    open_stream("bad-1", "s-old", "ssh", NULL);
    outcome("s-old", NULL, &r);
    h_assert_error_reply(&r, 409, "stream_exists");
    h_reply_free(&r);
    sout_key(k, "bad-1", "s-old");
    cr_assert_eq(xlen(k), 0, "rst written on an existing stream's sout");

    cr_assert(h_wait(h_no_pending, "bad-1", 10000), "entries left pending");
    gp_frame f;
    while (fake_next(&h, &f, 300))
        cr_assert(f.type != GP_FRAME_S_OPEN, "a refused open reached the house");
    cr_assert(h_wait_connected("bad-1", 1000));
    fake_down(&h);
}

/* S_OPEN carries the open's fields; a house that does not answer within timeout_ms gets the
 * open reset, the opener a 504; a house's refusal is the opener's outcome. */
Test(stream, house_outcomes_and_timeout) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "oc-1", 2);
    gp_frame f;
    h_reply r;

    const char *t[] = {"timeout_ms", "1500", "window", "65536", "idle_ms", "20000", NULL};
    open_stream("oc-1", "s-slow", "ssh", t);
    fake_expect(&h, &f, GP_FRAME_S_OPEN);
    cr_assert(gp_str_eq(f.u.s_open.sid, "s-slow"));
    cr_assert(gp_str_eq(f.u.s_open.service, "ssh"));
    cr_assert_eq(f.u.s_open.window, 65536);
    cr_assert_eq(f.u.s_open.idle_ms, 20000);
    cr_assert(f.u.s_open.timeout_ms > 0 && f.u.s_open.timeout_ms <= 1500);
    outcome("s-slow", NULL, &r);
    h_assert_error_reply(&r, 504, "timeout");
    h_reply_free(&r);
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-slow"));
    cr_assert(gp_str_eq(f.u.s_entry.rst, "timeout"));
    /* The late answer names a stream the bridge no longer has: ignored. */
    fake_opened(&h, "s-slow", 200, "", "");

    open_stream("oc-1", "s-forbidden", "mail", NULL);
    fake_expect(&h, &f, GP_FRAME_S_OPEN);
    fake_opened(&h, "s-forbidden", 403, "forbidden_service", "no service mail here");
    outcome("s-forbidden", NULL, &r);
    h_assert_error_reply(&r, 403, "forbidden_service");
    cr_assert(r.message && strcmp(r.message, "no service mail here") == 0);
    h_reply_free(&r);
    expect_sout_rst("oc-1", "s-forbidden", "forbidden_service");
    cr_assert(h_wait(h_no_pending, "oc-1", 10000), "entries left pending");
    fake_down(&h);
}

/* --- relaying ------------------------------------------------------------------------------ */

/* Opens sid on fake house h (service ssh) and checks the 200 outcome. */
static void open_ok(fake *h, const char *house, const char *sid, const char *const *extra) {
    gp_frame f;
    open_stream(house, sid, "ssh", extra);
    fake_expect(h, &f, GP_FRAME_S_OPEN);
    cr_assert(gp_str_eq(f.u.s_open.sid, sid));
    fake_opened(h, sid, 200, "", "");
    h_reply r;
    outcome(sid, NULL, &r);
    cr_assert_eq(r.status, 200, "status %d error %s", r.status, r.error ? r.error : "-");
    cr_assert_null(r.error);
    h_reply_free(&r);
    /* The outcome entry says what it is. */
    char k[256];
    snprintf(k, sizeof k, "gp:rep:%s", sid);
    cr_assert_eq(xlen(k), 1);
    cr_assert_eq(outcome_kind_stream(sid), 1, "no `kind stream` in the outcome");
}

/* Both directions through the bridge; each side's ack trims the other's key; the keys' TTL is
 * 2 x idle_ms; a malformed sin entry resets the stream (rst malformed naming the field) and
 * nobody else: another stream of the same house goes on. */
Test(stream, relay_both_ways_acks_trim_and_malformed_resets) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "rl-1", 2);
    const char *idle[] = {"idle_ms", "30000", NULL};
    open_ok(&h, "rl-1", "s-a", idle);
    open_ok(&h, "rl-1", "s-b", NULL);
    cr_assert(h_wait(h_no_pending, "rl-1", 10000), "open entries left pending");
    char ink[256], outk[256];
    sin_key(ink, "rl-1", "s-a");
    sout_key(outk, "rl-1", "s-a");

    /* opener -> house */
    const char *d1[] = {"off", "0", "data", "hello", NULL};
    sin_add("rl-1", "s-a", d1);
    gp_frame f;
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-a"));
    cr_assert_eq(f.u.s_entry.has & GP_SE_OFF, GP_SE_OFF);
    cr_assert_eq(f.u.s_entry.off, 0);
    cr_assert(gp_str_eq(f.u.s_entry.data, "hello"));

    /* house -> opener, with the house's ack of "hello": sin's entry goes */
    fake_entry(&h, "s-a", GP_SE_OFF | GP_SE_ACK, 0, 5, "world", NULL);
    cr_assert(wait_len(outk, 1), "sout has %lld entries", xlen(outk));
    char *data = sout_field("rl-1", "s-a", 0, "data"), *ack = sout_field("rl-1", "s-a", 0, "ack");
    cr_assert(data && strcmp(data, "world") == 0 && ack && strcmp(ack, "5") == 0);
    free(data);
    free(ack);
    cr_assert(wait_len(ink, 0), "sin not trimmed below the house's ack");
    long long t = pttl(outk);
    cr_assert(t > 50000 && t <= 60000, "sout TTL %lld, want 2 x idle_ms", t);

    /* The opener's ack trims sout. */
    const char *a1[] = {"ack", "5", NULL};
    sin_add("rl-1", "s-a", a1);
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert_eq(f.u.s_entry.has, GP_SE_ACK);
    cr_assert_eq(f.u.s_entry.ack, 5);
    cr_assert(wait_len(outk, 0), "sout not trimmed below the opener's ack");

    /* A frame naming no stream is ignored. */
    fake_entry(&h, "s-nobody", GP_SE_OFF, 0, 0, "zzz", NULL);

    /* A malformed sin entry: rst malformed to both sides, the message naming the field. */
    const char *bad[] = {"off", "five", "data", "x", NULL};
    sin_add("rl-1", "s-a", bad);
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-a"));
    cr_assert(gp_str_eq(f.u.s_entry.rst, "malformed"), "rst %.*s", (int)f.u.s_entry.rst.len,
              (const char *)f.u.s_entry.rst.p);
    cr_assert(wait_len(outk, 1));
    char *rst = sout_field("rl-1", "s-a", 0, "rst"), *msg = sout_field("rl-1", "s-a", 0, "message");
    cr_assert(rst && strcmp(rst, "malformed") == 0);
    cr_assert(msg && strstr(msg, "off"), "message %s", msg ? msg : "-");
    free(rst);
    free(msg);
    t = pttl(outk);
    cr_assert(t > 0 && t <= 60000, "sout TTL %lld after the reset", t);
    cr_assert(h_log_count(w.bridge, "event=stream_reset") >= 1);

    /* s-b is undisturbed. */
    const char *d2[] = {"off", "0", "data", "still here", NULL};
    sin_add("rl-1", "s-b", d2);
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-b"));
    cr_assert(gp_str_eq(f.u.s_entry.data, "still here"));

    /* A malformed entry from the house (data beyond a reset's rules: rst with data) resets
     * s-b only. */
    fake_entry(&h, "s-b", GP_SE_OFF, 0, 0, "x", "closed");
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-b"));
    cr_assert(gp_str_eq(f.u.s_entry.rst, "malformed"));
    char outb[256];
    sout_key(outb, "rl-1", "s-b");
    cr_assert(wait_len(outb, 1));
    expect_sout_rst("rl-1", "s-b", "malformed");
    cr_assert(h_wait_connected("rl-1", 1000), "the house lost its connection");

    /* The metrics. */
    char *body = NULL;
    (void)body;
    fake_down(&h);
}

/* Both keys expire within 60 s. */
static int both_expire_soon(void *ud) {
    const char *const *k = ud;
    long long a = pttl(k[0]), b = pttl(k[1]);
    return a > 0 && a <= 60000 && b > 0 && b <= 60000;
}

/* Both fins delivered and acknowledged: the stream is over, both keys expire in 60 s. */
Test(stream, clean_close_expires_both_keys) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "fin-1", 2);
    open_ok(&h, "fin-1", "s-f", NULL);
    const char *d[] = {"off", "0", "data", "abc", "fin", "1", NULL};
    sin_add("fin-1", "s-f", d);
    gp_frame f;
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert_eq(f.u.s_entry.has & GP_SE_FIN, GP_SE_FIN);
    fake_entry(&h, "s-f", GP_SE_OFF | GP_SE_FIN | GP_SE_ACK, 0, 3, "xyz", NULL);
    const char *a[] = {"ack", "3", NULL};
    sin_add("fin-1", "s-f", a);
    cr_assert(h_wait_log(w.bridge, "event=stream_closed", 10000), "stream not closed");
    char ink[256], outk[256];
    sin_key(ink, "fin-1", "s-f");
    sout_key(outk, "fin-1", "s-f");
    /* The closing write is on its way when the line is logged. */
    const char *keys[2] = {ink, outk};
    cr_assert(h_wait(both_expire_soon, keys, 5000), "TTLs %lld %lld", pttl(ink), pttl(outk));
    fake_down(&h);
}

/* --- takeover ------------------------------------------------------------------------------- */

/* A bridge is killed mid-stream; the house connects to another and names its stream
 * (S_ATTACH): the new bridge reads sin from the start (only what the house has not
 * acknowledged is there), skips what sout already holds when the house sends it again, and
 * trims by the acks it learns. */
Test(stream, takeover_by_attach) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "tk-1", 2);
    open_ok(&h, "tk-1", "s-t", NULL);
    char ink[256], outk[256];
    sin_key(ink, "tk-1", "s-t");
    sout_key(outk, "tk-1", "s-t");
    const char *d1[] = {"off", "0", "data", "aaaa", NULL};
    const char *d2[] = {"off", "4", "data", "bbbb", NULL};
    sin_add("tk-1", "s-t", d1);
    sin_add("tk-1", "s-t", d2);
    gp_frame f;
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert_eq(f.u.s_entry.off, 4);
    /* The house consumed the first 4 bytes only, and sent 6 of its own. */
    fake_entry(&h, "s-t", GP_SE_OFF | GP_SE_ACK, 0, 4, "xxxyyy", NULL);
    cr_assert(wait_len(outk, 1));
    cr_assert(wait_len(ink, 1), "sin holds %lld entries", xlen(ink));

    h_kill9(w.bridge);
    fake_down(&h);
    int port2 = 0;
    h_proc *b2 = h_bridge_start(0, &port2, NULL, 1);
    fake_up(&h, port2, "tk-1", h.secret, 2);
    fake_attach(&h, "s-t", 8, 0, 4096); /* the open's window as the house holds it */
    /* sin again from its first entry still there: bytes 4..8 */
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(gp_str_eq(f.u.s_entry.sid, "s-t"));
    cr_assert_eq(f.u.s_entry.off, 4);
    cr_assert(gp_str_eq(f.u.s_entry.data, "bbbb"));
    /* The house sends its bytes again from the opener's ack (0) and two more: only the new
     * ones are appended. */
    fake_entry(&h, "s-t", GP_SE_OFF, 0, 0, "xxxyyyzz", NULL);
    cr_assert(wait_len(outk, 2), "sout holds %lld entries", xlen(outk));
    char *off = sout_field("tk-1", "s-t", 1, "off"), *data = sout_field("tk-1", "s-t", 1, "data");
    cr_assert(off && strcmp(off, "6") == 0 && data && strcmp(data, "zz") == 0, "off %s data %s",
              off ? off : "-", data ? data : "-");
    free(off);
    free(data);
    /* The opener acknowledges all 8: both of sout's entries go. */
    const char *a[] = {"ack", "8", NULL};
    sin_add("tk-1", "s-t", a);
    cr_assert(wait_len(outk, 0), "sout holds %lld entries", xlen(outk));
    cr_assert_eq(h_log_count(b2, "event=stream_attach"), 1);
    /* The window came with S_ATTACH: past the opener's ack (8) + 4096 the house ran ahead. */
    char big[4098];
    memset(big, 'w', 4097);
    big[4097] = '\0';
    fake_entry(&h, "s-t", GP_SE_OFF, 8, 0, big, NULL);
    key_rst rw = {outk, "window"};
    cr_assert(h_wait(has_rst, &rw, 10000), "no rst window past the attached window");
    fake_down(&h);
}

typedef struct sout_has {
    const char *house, *sid, *want;
} sout_has;
static int sout_holds(void *ud);

/* --- end to end: the real house, a TCP echo service, a bridge killed mid-stream -------------- */

/* The real house id (registered here) with a TCP echo service (h_echo) as service `echo`,
 * connected to the bridge on bport (and to bridge2, a ws:// URL, too when not NULL), its
 * upstream up_url; fails the test unless it connects within 15 s. */
static h_proc *echo_house(const char *id, int bport, const char *up_url, const char *bridge2) {
    h_echo echo;
    cr_assert_eq(h_echo_start(&echo), 0, "echo: %s", strerror(errno));
    char svc[64], secret[65];
    snprintf(svc, sizeof svc, "echo=127.0.0.1:%d", echo.port);
    h_register(id, secret);
    const char *extra[] = {"--tcp-service", svc, bridge2 ? "--bridge" : NULL, bridge2, NULL};
    h_proc *house = h_house_start(id, secret, bport, up_url, extra);
    cr_assert(h_wait_connected(id, 15000), "%s did not connect", id);
    return house;
}

/* The opener of the contract, in the test: sends `data` (n bytes) on sin within the house's
 * credit, reads sout into `got` (offsets: duplicates dropped, a gap fails), acknowledges what
 * it read, trims its own sin entries below the house's ack, sends fin at the end and waits
 * for the echo's fin. After `kill_at` bytes came back it calls kill_fn once. */
typedef struct opener {
    const char *house, *sid;
    const uint8_t *data;
    size_t n, window, kill_at;
    void (*kill_fn)(void *);
    void *kill_ud;
    uint8_t *got;
    uint64_t rcv_next, snd_next, snd_acked;
    int fin_sent, fin_got, killed;
    char last[64];
} opener;

static void opener_run(opener *o, int timeout_ms) {
    char ink[256], outk[256];
    sin_key(ink, o->house, o->sid);
    sout_key(outk, o->house, o->sid);
    strcpy(o->last, "0-0");
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms, acked_sent = 0;
    while (!(o->fin_got && o->rcv_next == o->n)) {
        cr_assert(h_now_ms() < end, "stream stalled: sent %llu acked %llu got %llu",
                  (unsigned long long)o->snd_next, (unsigned long long)o->snd_acked,
                  (unsigned long long)o->rcv_next);
        /* write within the credit */
        while (o->snd_next < o->n && o->snd_next < o->snd_acked + o->window) {
            size_t k = o->n - o->snd_next;
            uint64_t credit = o->snd_acked + o->window - o->snd_next;
            if (k > 65536)
                k = 65536;
            if (k > credit)
                k = (size_t)credit;
            char off[24];
            snprintf(off, sizeof off, "%llu", (unsigned long long)o->snd_next);
            const char *argv[] = {
                "XADD", ink, "*", "off", off, "data", (const char *)o->data + o->snd_next};
            size_t lens[] = {4, strlen(ink), 1, 3, strlen(off), 4, k};
            redisReply *r = h_cmdv(7, argv, lens);
            cr_assert_eq(r->type, REDIS_REPLY_STRING);
            freeReplyObject(r);
            o->snd_next += k;
        }
        if (o->snd_next == o->n && !o->fin_sent) {
            char off[24];
            snprintf(off, sizeof off, "%llu", (unsigned long long)o->n);
            const char *f[] = {"off", off, "fin", "1", NULL};
            sin_add(o->house, o->sid, f);
            o->fin_sent = 1;
        }
        /* read what came back */
        redisReply *r = h_cmd("XREAD COUNT 64 BLOCK 100 STREAMS %s %s", outk, o->last);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *en = r->element[0]->element[1];
            for (size_t i = 0; i < en->elements; i++) {
                snprintf(o->last, sizeof o->last, "%s", en->element[i]->element[0]->str);
                const redisReply *fv = en->element[i]->element[1];
                uint64_t off = 0;
                int has_off = 0, fin = 0;
                const redisReply *data = NULL;
                for (size_t j = 0; j + 1 < fv->elements; j += 2) {
                    const char *k = fv->element[j]->str;
                    const redisReply *v = fv->element[j + 1];
                    if (!strcmp(k, "off"))
                        off = strtoull(v->str, NULL, 10), has_off = 1;
                    else if (!strcmp(k, "data"))
                        data = v;
                    else if (!strcmp(k, "fin"))
                        fin = 1;
                    else if (!strcmp(k, "ack") && strtoull(v->str, NULL, 10) > o->snd_acked)
                        o->snd_acked = strtoull(v->str, NULL, 10);
                    else if (!strcmp(k, "rst"))
                        cr_assert_fail("stream reset: %s", v->str);
                }
                if (!has_off)
                    continue;
                size_t len = data ? data->len : 0;
                cr_assert_leq(off, o->rcv_next, "gap: entry at %llu, expected %llu",
                              (unsigned long long)off, (unsigned long long)o->rcv_next);
                if (off + len > o->rcv_next) {
                    size_t skip = (size_t)(o->rcv_next - off);
                    cr_assert_leq(off + len, o->n, "more bytes than were sent");
                    memcpy(o->got + o->rcv_next, data->str + skip, len - skip);
                    o->rcv_next = off + len;
                }
                if (fin)
                    o->fin_got = 1;
            }
        }
        freeReplyObject(r);
        if (o->rcv_next > acked_sent) {
            char a[24];
            snprintf(a, sizeof a, "%llu", (unsigned long long)o->rcv_next);
            const char *f[] = {"ack", a, NULL};
            sin_add(o->house, o->sid, f);
            acked_sent = o->rcv_next;
        }
        if (!o->killed && o->kill_fn && o->rcv_next >= o->kill_at) {
            o->killed = 1;
            o->kill_fn(o->kill_ud);
        }
    }
}

typedef struct two_bridges {
    h_proc *b[2];
    int killed; /* which one */
} two_bridges;

static void kill_holder(void *ud) {
    two_bridges *t = ud;
    int i = h_log_count_all(t->b[0], "event=house_connected") > 0 ? 0 : 1;
    t->killed = i;
    h_kill9(t->b[i]);
}

/* 3 MiB through a 256 KiB window to a TCP echo service on the real house, the bridge holding
 * it SIGKILLed after 1 MiB came back: the house moves to the other bridge, names its stream
 * (S_ATTACH) and the bytes complete intact, in order, each once. */
Test(stream, real_house_echo_survives_a_bridge_kill) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    int port2 = 0;
    two_bridges tb = {.b = {w.bridge, h_bridge_start(0, &port2, NULL, 1)}};
    char b2[64];
    snprintf(b2, sizeof b2, "ws://127.0.0.1:%d/", port2);
    h_proc *house = echo_house("e2e-s", w.bridge_port, w.up_url, b2);

    const char *win[] = {"window", "262144", "idle_ms", "60000", NULL};
    open_stream("e2e-s", "s-echo", "echo", win);
    outcome_ok("s-echo");

    size_t n = 3u << 20;
    uint8_t *data = h_prandom(n, "stream-e2e");
    opener o = {.house = "e2e-s",
                .sid = "s-echo",
                .data = data,
                .n = n,
                .window = 262144,
                .kill_at = 1u << 20,
                .kill_fn = kill_holder,
                .kill_ud = &tb,
                .got = malloc(n)};
    opener_run(&o, 90000);
    cr_assert(o.killed, "no bridge was killed");
    char hs[65], hg[65];
    h_sha256_hex(data, n, hs);
    h_sha256_hex(o.got, n, hg);
    cr_assert_str_eq(hg, hs, "the bytes came back changed");
    h_proc *alive = tb.b[1 - tb.killed];
    cr_assert(h_wait_log(alive, "event=stream_attach", 5000), "the new bridge never attached");
    cr_assert(h_wait_log(alive, "event=stream_closed", 15000), "the stream did not close cleanly");
    cr_assert_eq(h_log_count_all(house, "event=stream_reset"), 0);
    /* Every byte was acknowledged both ways: neither key holds data any more. */
    sout_has none = {"e2e-s", "s-echo", ""};
    cr_assert(h_wait(sout_holds, &none, 5000), "sout still holds acknowledged bytes");
    free(data);
    free(o.got);
}

/* The sout `data` bytes of house's stream sid concatenated (malloc'd, *n its length). */
static char *sout_bytes(const char *house, const char *sid, size_t *n) {
    char k[256];
    sout_key(k, house, sid);
    redisReply *r = h_cmd("XRANGE %s - +", k);
    char *out = calloc(1, 1);
    *n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *fv = r->element[i]->element[1];
        for (size_t j = 0; j + 1 < fv->elements; j += 2)
            if (strcmp(fv->element[j]->str, "data") == 0) {
                out = realloc(out, *n + fv->element[j + 1]->len + 1);
                memcpy(out + *n, fv->element[j + 1]->str, fv->element[j + 1]->len);
                *n += fv->element[j + 1]->len;
                out[*n] = '\0';
            }
    }
    freeReplyObject(r);
    return out;
}

static int sout_holds(void *ud) {
    const sout_has *a = ud;
    size_t n;
    char *b = sout_bytes(a->house, a->sid, &n);
    int ok = strcmp(b, a->want) == 0;
    free(b);
    return ok;
}

/* A metric's value in /metrics of the admin port (-1: absent). */
static double metric(int aport, const char *line_start) {
    char *body = NULL;
    cr_assert_eq(h_http_get(aport, "/metrics", &body), 200);
    char needle[160];
    snprintf(needle, sizeof needle, "\n%s", line_start); /* a sample, not its # HELP */
    const char *p = body ? strstr(body, needle) : NULL;
    double v = p ? atof(p + strlen(needle)) : -1;
    free(body);
    return v;
}

typedef struct metric_is {
    int aport;
    const char *line;
    double want;
} metric_is;
static int metric_reaches(void *ud) {
    const metric_is *m = ud;
    return metric(m->aport, m->line) == m->want;
}
/* The metric reaches want within 5 s (the rendered page may be a second old). */
static void wait_metric(int aport, const char *line, double want) {
    metric_is m = {aport, line, want};
    cr_assert(h_wait(metric_reaches, &m, 5000), "%s is %g, want %g", line, metric(aport, line),
              want);
}

/* A bridge that lost the house (its epoch moved on) writes nothing more to sout: the write
 * script checks the epoch first, and the bridge lets the house go. The metrics follow. */
Test(stream, fenced_bridge_writes_nothing) {
    h_world w;
    const char *extra[] = {"--admin-listen", "0", NULL};
    fake h;
    fake_world(&w, extra, &h, "fen-1", 2);
    int aport = h_admin_port(w.bridge);
    cr_assert(aport > 0);
    open_ok(&h, "fen-1", "s-fen", NULL);
    wait_metric(aport, "gp_bridge_streams_open ", 1);
    fake_entry(&h, "s-fen", GP_SE_OFF, 0, 0, "before", NULL);
    sout_has b = {"fen-1", "s-fen", "before"};
    cr_assert(h_wait(sout_holds, &b, 10000));
    wait_metric(aport, "gp_bridge_stream_bytes_total{dir=\"out\"} ", 6);

    redisReply *x = h_cmd("INCR gp:{fen-1}:epoch");
    freeReplyObject(x);
    fake_entry(&h, "s-fen", GP_SE_OFF, 6, 0, "after", NULL);
    gp_frame f;
    fake_expect(&h, &f, GP_FRAME_GOAWAY);
    cr_assert_eq(f.u.goaway.code, GP_GOAWAY_FENCED);
    size_t n;
    char *all = sout_bytes("fen-1", "s-fen", &n);
    cr_assert_str_eq(all, "before", "a fenced bridge wrote to sout");
    free(all);
    cr_assert(h_wait_log(w.bridge, "event=house_fenced", 5000));
    wait_metric(aport, "gp_bridge_streams_open ", 0);
    fake_down(&h);
}

/* With the real house: a service it does not allow is a 403 (and an rst on sout); bytes go
 * through to the echo service and back; a malformed sin entry resets the stream at both ends,
 * the house closing the service connection. */
Test(stream, real_house_refuses_unknown_services_and_resets_on_malformed_entries) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    h_proc *house = echo_house("rh-1", w.bridge_port, w.up_url, NULL);
    h_reply r;

    open_stream("rh-1", "s-nope", "nope", NULL);
    outcome("s-nope", NULL, &r);
    h_assert_error_reply(&r, 403, "forbidden_service");
    h_reply_free(&r);
    expect_sout_rst("rh-1", "s-nope", "forbidden_service");

    open_stream("rh-1", "s-e", "echo", NULL);
    outcome_ok("s-e");
    const char *d[] = {"off", "0", "data", "ping", NULL};
    sin_add("rh-1", "s-e", d);
    sout_has b = {"rh-1", "s-e", "ping"};
    cr_assert(h_wait(sout_holds, &b, 10000), "no echo");

    const char *bad[] = {"off", "4", "data", "x", "fin", "yes", NULL};
    sin_add("rh-1", "s-e", bad);
    char outk[256];
    sout_key(outk, "rh-1", "s-e");
    key_rst rm = {outk, "malformed"};
    cr_assert(h_wait(has_rst, &rm, 10000), "no rst malformed on sout");
    cr_assert(h_wait_log(house, "sid=s-e", 10000));
    cr_assert(h_wait_log(w.bridge, "event=stream_reset", 5000));
    cr_assert(h_wait_connected("rh-1", 1000), "the house lost its connection");
}

/* On a Redis Cluster: the house's keys on a node that is not the seed (its doorbell, scripts
 * and reads all go there), 512 KiB through the echo service and back. */
Test(stream, cluster_echo) {
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    int up_port;
    h_upstream_start(&up_port);
    char up_url[64];
    snprintf(up_url, sizeof up_url, "http://127.0.0.1:%d", up_port);
    int bport = 0;
    h_proc *b = h_bridge_start(0, &bport, NULL, 1);
    char id[32] = "";
    for (int i = 0; i < 1000 && !id[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "gp:{cl-%d}:req", i);
        if (gp_key_slot(k, strlen(k)) >= 10923)
            snprintf(id, sizeof id, "cl-%d", i);
    }
    cr_assert(id[0]);
    echo_house(id, bport, up_url, NULL);
    open_stream(id, "s-cl", "echo", NULL);
    outcome_ok("s-cl");
    size_t n = 512u << 10;
    uint8_t *data = h_prandom(n, "stream-cluster");
    opener o = {
        .house = id, .sid = "s-cl", .data = data, .n = n, .window = 1u << 20, .got = malloc(n)};
    opener_run(&o, 60000);
    cr_assert_eq(memcmp(o.got, data, n), 0, "the bytes came back changed");
    cr_assert(h_wait_log(b, "event=stream_closed", 15000), "the stream did not close cleanly");
    free(data);
    free(o.got);
}

/* An open for a house nobody holds is answered by the janitor once its deadline passed, as a
 * request is: 504 timeout, with `kind stream`. */
Test(stream, janitor_answers_opens_nobody_carries) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    char secret[65];
    h_register("off-1", secret);
    const char *t[] = {"timeout_ms", "1000", NULL};
    open_stream("off-1", "s-off", "ssh", t);
    h_reply r;
    cr_assert(h_wait_reply("s-off", NULL, 30000, &r), "no outcome");
    h_assert_error_reply(&r, 504, "timeout");
    h_reply_free(&r);
    cr_assert_eq(outcome_kind_stream("s-off"), 1, "the janitor's answer does not say kind stream");
}

/* --- the whole system: ghostport connect, the bridge, the real house ------------------------ */

/* `ghostport connect` (the CLI's opener) with a file on stdin and one on stdout: 2 MiB (half
 * of it compressible, which the bridge sends to the house as zstd) to the echo service
 * through this bridge and the real house, and back intact; exit status 0. */
Test(stream, ghostport_connect_through_the_bridge) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    echo_house("cli-1", w.bridge_port, w.up_url, NULL);

    size_t n = 2u << 20;
    uint8_t *data = h_prandom(n, "stream-cli");
    for (size_t i = n / 2; i < n; i++) /* the second half compressible: sent as zstd */
        data[i] = (uint8_t) "lorem ipsum dolor sit amet, "[i % 28];
    char in[600];
    snprintf(in, sizeof in, "%s", h_path("connect.in"));
    FILE *f = fopen(in, "wb");
    cr_assert(f && fwrite(data, 1, n, f) == n);
    fclose(f);
    const char *argv[] = {h_bin("ghostport"), "--redis", h_redis_url(), "connect", "cli-1", "echo",
                          "--window",         "262144",  "-q",          NULL};
    char *o = NULL, *e = NULL;
    size_t olen = 0;
    int rc = h_run_in(argv, in, 60000, &o, &olen, &e);
    cr_assert_eq(rc, 0, "exit status %d (137: did not finish): %s", rc, e ? e : "");
    free(e);
    cr_assert_eq(olen, n, "%zu bytes came back of %zu", olen, n);
    cr_assert_eq(memcmp(o, data, n), 0, "the bytes came back changed");
    cr_assert(h_wait_log(w.bridge, "event=stream_closed", 10000));
    free(o);
    free(data);
}

/* For h_wait: house's two byte keys (its only stream's) exist, hold no entry and cost under
 * 2 KiB (a stream key with one entry: over 4 KiB), and the clock is past not_before. Polled:
 * a keep-alive written between one key's XLEN and its MEMORY USAGE is no idle moment. What
 * they hold and cost is left in the struct for the message. */
typedef struct idle_keys {
    const char *house;
    uint64_t not_before;
    int found;
    long long entries, bytes;
} idle_keys;

static int stream_keys_empty(void *ud) {
    idle_keys *k = ud;
    k->found = h_stream_keys(k->house, &k->entries, &k->bytes);
    return h_now_ms() >= k->not_before && k->found == 2 && k->entries == 0 && k->bytes < 2048;
}

static void echo_through(int fd, const char *msg) {
    size_t n = strlen(msg);
    char back[64] = "";
    cr_assert(n < sizeof back && send(fd, msg, n, 0) == (ssize_t)n, "send");
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, back + got, n - got, 0);
        cr_assert(r > 0, "recv: %zd after %zu of %zu bytes of the echo", r, got, n);
        got += (size_t)r;
    }
    cr_assert_str_eq(back, msg);
}

/* An open stream with nothing to say holds no entry in Redis: each side deletes the ack-only
 * entries it read (STREAMS.md, "Credit window"), the bridge sin's, `ghostport forward` sout's,
 * also across keep-alives (every 500 ms each way at --idle 1500). Its two keys then cost under
 * 2 KiB (a stream key with one entry: over 4 KiB). */
Test(stream, an_idle_stream_holds_no_entry_in_redis) {
    h_world w;
    h_world_up(&w, NULL, NULL, NULL);
    echo_house("idle-1", w.bridge_port, w.up_url, NULL);
    int port = h_free_port();
    char spec[32];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("ghostport"), "--redis", h_redis_url(), "forward", spec,
                          "idle-1",           "echo",    "--idle",      "1500",    NULL};
    h_proc *fw = h_spawn("forward", (char *const *)argv);
    char line[64]; /* not h_wait_port: its connection would be a stream of its own */
    snprintf(line, sizeof line, "listening on 127.0.0.1:%d", port);
    cr_assert(h_wait_log(fw, line, 10000), "ghostport forward did not listen (see %s)", fw->log);
    int fd = h_dial(port);
    cr_assert(fd >= 0);
    echo_through(fd, "hello, idle stream");
    idle_keys k = {.house = "idle-1"};
    cr_assert(h_wait(stream_keys_empty, &k, 10000),
              "%d byte keys, %lld entries left in them (%lld bytes; goal: none, 2 KiB)", k.found,
              k.entries, k.bytes);
    k.not_before = h_now_ms() + 2000; /* four keep-alives each way later */
    cr_assert(h_wait(stream_keys_empty, &k, 10000),
              "after keep-alives: %d byte keys, %lld entries left in them (%lld bytes)", k.found,
              k.entries, k.bytes);
    echo_through(fd, "still open");
    close(fd);
    cr_assert(h_wait_log(w.bridge, "event=stream_closed", 10000));
    h_stop(fw);
}

/* Compressible sin bytes go to the house as zstd (GP_FLAG_ZSTD), and come out the same. */
Test(stream, compressible_bytes_go_compressed) {
    h_world w;
    fake h;
    fake_world(&w, NULL, &h, "z-1", 2);
    open_ok(&h, "z-1", "s-z", NULL);
    size_t n = 65536;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = "the quick brown fox jumps over the lazy dog "[i % 44];
    text[n] = '\0';
    const char *d[] = {"off", "0", "data", text, NULL};
    sin_add("z-1", "s-z", d);
    gp_frame f;
    fake_expect(&h, &f, GP_FRAME_S_ENTRY);
    cr_assert(f.flags & GP_FLAG_ZSTD, "not compressed");
    cr_assert_lt(f.u.s_entry.data.len, n / 4);
    gp_zctx *z = gp_zctx_new(1);
    uint8_t *plain = malloc(n);
    ssize_t got = gp_decompress(z, f.u.s_entry.data.p, f.u.s_entry.data.len, plain, n);
    cr_assert_eq(got, (ssize_t)n);
    cr_assert_eq(memcmp(plain, text, n), 0);
    gp_zctx_free(z);
    free(plain);
    free(text);
    fake_down(&h);
}
