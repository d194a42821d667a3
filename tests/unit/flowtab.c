/* Unit tests for the house's flow table (proto/flowtab.c): packets built by hand
 * (ippkt_build.h) and parsed by gp_ip_parse, sent out and answered on a virtual clock. Replies
 * to TCP, UDP, ICMP echo and other flows the house opened come in, nothing else does (another
 * port, address, echo id, protocol, a table that saw nothing); each timeout just before and at
 * its end, TCP's RST and FIN; related ICMP errors (too big built by gp_icmp_too_big, errors
 * built here, quotes cut at every length); later fragments; eviction of the least recently
 * used; the same behaviour under two hash keys; the invariants after each test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowtab.h"
#include "ippkt.h"
#include "ippkt_build.h"

static const uint8_t KEY1[GP_FLOWTAB_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t KEY2[GP_FLOWTAB_KEY_LEN] = {0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
                                                 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f};

/* The two sides: the house (its TUN address) and a host on the hub side, per family. */
typedef struct fam {
    const char *house, *hub, *hub2, *house2, *router;
    uint8_t icmp; /* ICMP's protocol number in this family */
} fam;
static const fam V4 = {"10.7.0.2", "192.168.1.10", "192.168.1.11", "10.7.0.3", "192.168.1.1", 1};
static const fam V6 = {"fd7a::2", "fd00:1::10", "fd00:1::11", "fd7a::3", "fd00:1::1", 58};
static const fam *const FAMS[] = {&V4, &V6};

/* A parsed packet and its bytes. */
typedef struct pk {
    uint8_t b[2000];
    size_t n;
    gp_ip_pkt k;
} pk;

static void parse(pk *p) {
    gp_ip_drop d = gp_ip_parse(p->b, p->n, &p->k);
    cr_assert_eq(d, GP_IPD_OK, "test packet: %s", gp_ip_drop_name(d));
}

/* From src to dst: proto around l4[0..l4n) (IPv4 with DF unless frag says otherwise). */
static pk mk(const char *src, const char *dst, uint8_t proto, const uint8_t *l4, size_t l4n,
             uint16_t frag) {
    pk p;
    spec s = {.src = src, .dst = dst, .proto = proto, .frag = frag ? frag : 0x4000};
    p.n = build(p.b, &s, l4, l4n, 1);
    parse(&p);
    return p;
}

static pk tcp_pk(const char *src, const char *dst, uint16_t sp, uint16_t dp, uint8_t flags) {
    uint8_t l4[40];
    size_t l = tcp(l4, sp, dp, flags, NULL, 0, 0);
    return mk(src, dst, 6, l4, l, 0);
}

static pk udp_pk(const char *src, const char *dst, uint16_t sp, uint16_t dp) {
    uint8_t l4[40];
    size_t l = udp(l4, sp, dp, 12);
    return mk(src, dst, 17, l4, l, 0);
}

/* An ICMP echo request or reply (type as given) of this id. */
static pk echo_pk(const fam *f, const char *src, const char *dst, uint8_t type, uint16_t id) {
    uint8_t l4[64];
    size_t l = icmp(l4, type, 0, 32);
    l4[4] = (uint8_t)(id >> 8), l4[5] = (uint8_t)id;
    return mk(src, dst, f->icmp, l4, l, 0);
}

/* An ICMP error (type, code) from src to dst quoting q[0..qn). */
static pk err_pk(const fam *f, const char *src, const char *dst, uint8_t type, uint8_t code,
                 const uint8_t *q, size_t qn) {
    uint8_t l4[1600];
    memset(l4, 0, 8);
    l4[0] = type, l4[1] = code;
    memcpy(l4 + 8, q, qn);
    return mk(src, dst, f->icmp, l4, 8 + qn, 0);
}

static int out(gp_flowtab *t, const pk *p, uint64_t now) {
    return gp_flowtab_out(t, &p->k, p->b, p->n, now);
}

static int in(gp_flowtab *t, const pk *p, uint64_t now) {
    return gp_flowtab_in(t, &p->k, p->b, p->n, now);
}

static gp_flowtab_stats stats(const gp_flowtab *t) {
    gp_flowtab_stats s;
    gp_flowtab_get_stats(t, &s);
    return s;
}

static gp_flowtab *new_table(size_t cap) {
    gp_flowtab *t = gp_flowtab_new(cap, KEY1);
    cr_assert_not_null(t);
    return t;
}

static void done(gp_flowtab *t) {
    int c = gp_flowtab_check(t);
    cr_assert_eq(c, 0, "invariant %d broken", c);
    gp_flowtab_free(t);
}

/* ---- replies ---- */

Test(flowtab, tcp_reply_only_to_what_went_out) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        gp_flowtab *t = new_table(0);
        pk syn = tcp_pk(f->house, f->hub, 40000, 80, 0x02);
        pk synack = tcp_pk(f->hub, f->house, 80, 40000, 0x12);
        cr_assert_eq(in(t, &synack, 1), 0, "nothing went out yet");
        cr_assert_eq(out(t, &syn, 1), 1);
        cr_assert_eq(in(t, &synack, 2), 1);
        pk ack = tcp_pk(f->house, f->hub, 40000, 80, 0x10);
        cr_assert_eq(out(t, &ack, 3), 1, "refreshed");

        pk other[] = {
            tcp_pk(f->hub, f->house, 81, 40000, 0x12),     /* another hub port */
            tcp_pk(f->hub, f->house, 80, 40001, 0x12),     /* another house port */
            tcp_pk(f->hub2, f->house, 80, 40000, 0x12),    /* another hub host */
            tcp_pk(f->hub, f->house2, 80, 40000, 0x12),    /* another house address */
            tcp_pk(f->hub, f->house, 40000, 80, 0x12),     /* ports not swapped */
            udp_pk(f->hub, f->house, 80, 40000),           /* another protocol */
            tcp_pk(f->house, f->hub, 40000, 80, 0x12),     /* the outbound one itself */
            echo_pk(f, f->hub, f->house, v ? 129 : 0, 80), /* an echo reply */
        };
        for (size_t k = 0; k < sizeof other / sizeof *other; k++)
            cr_assert_eq(in(t, &other[k], 4), 0, "v%d packet %zu", v ? 6 : 4, k);
        gp_flowtab_stats s = stats(t);
        cr_assert_eq(s.flows, 1);
        cr_assert_eq(s.created, 1);
        cr_assert_eq(s.in_allowed, 1);
        cr_assert_eq(s.in_related, 0);
        done(t);
    }
}

Test(flowtab, udp_icmp_echo_and_other_protocols) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        gp_flowtab *t = new_table(64);
        uint8_t req = v ? 128 : 8, rep = v ? 129 : 0;

        pk q = udp_pk(f->house, f->hub, 5353, 53);
        cr_assert_eq(out(t, &q, 10), 1);
        pk a = udp_pk(f->hub, f->house, 53, 5353);
        cr_assert_eq(in(t, &a, 11), 1);
        pk a2 = udp_pk(f->hub, f->house, 54, 5353);
        cr_assert_eq(in(t, &a2, 11), 0);

        pk ping = echo_pk(f, f->house, f->hub, req, 0x1234);
        cr_assert_eq(out(t, &ping, 12), 1);
        pk pong = echo_pk(f, f->hub, f->house, rep, 0x1234);
        cr_assert_eq(in(t, &pong, 13), 1);
        pk pong_id = echo_pk(f, f->hub, f->house, rep, 0x1235);
        cr_assert_eq(in(t, &pong_id, 13), 0, "another echo id");
        pk pong_src = echo_pk(f, f->hub2, f->house, rep, 0x1234);
        cr_assert_eq(in(t, &pong_src, 13), 0, "from another host");
        pk ping_in = echo_pk(f, f->hub, f->house, req, 0x1234);
        cr_assert_eq(in(t, &ping_in, 13), 0, "a request is no reply");
        /* other ICMP out records nothing: an echo reply, an error, a timestamp request */
        pk rep_out = echo_pk(f, f->house, f->hub, rep, 7);
        cr_assert_eq(out(t, &rep_out, 14), 0);
        uint8_t l4[16];
        size_t l = icmp(l4, v ? 1 : 3, 3, 0);
        pk err_out = mk(f->house, f->hub, f->icmp, l4, l, 0);
        cr_assert_eq(out(t, &err_out, 14), 0);
        if (!v) {
            l = icmp(l4, 13, 0, 8);
            pk ts = mk(f->house, f->hub, 1, l4, l, 0);
            cr_assert_eq(out(t, &ts, 14), 0);
        }

        /* another protocol (GRE): the addresses alone */
        memset(l4, 0, sizeof l4);
        pk gre = mk(f->house, f->hub, 47, l4, 8, 0);
        pk gre_back = mk(f->hub, f->house, 47, l4, 8, 0);
        pk gre_other = mk(f->hub2, f->house, 47, l4, 8, 0);
        pk esp_back = mk(f->hub, f->house, 50, l4, 8, 0);
        cr_assert_eq(in(t, &gre_back, 15), 0);
        cr_assert_eq(out(t, &gre, 15), 1);
        cr_assert_eq(in(t, &gre_back, 16), 1);
        cr_assert_eq(in(t, &gre_other, 16), 0);
        cr_assert_eq(in(t, &esp_back, 16), 0);

        gp_flowtab_stats s = stats(t);
        cr_assert_eq(s.flows, 3);
        cr_assert_eq(s.in_allowed, 3);
        done(t);
    }
}

/* A packet that does not fit its parse is neither recorded nor let in. */
Test(flowtab, forged_or_stale_parse) {
    gp_flowtab *t = new_table(8);
    pk syn = tcp_pk(V4.house, V4.hub, 40000, 80, 0x02);
    pk synack = tcp_pk(V4.hub, V4.house, 80, 40000, 0x12);
    cr_assert_eq(out(t, &syn, 1), 1);
    cr_assert_eq(gp_flowtab_in(t, &synack.k, synack.b, synack.n - 1, 2), 0, "shorter buffer");
    gp_ip_pkt k = synack.k;
    k.l4_off = (uint32_t)synack.n - 7;
    cr_assert_eq(gp_flowtab_in(t, &k, synack.b, synack.n, 2), 0, "L4 past the end");
    k = synack.k;
    k.version = 6;
    cr_assert_eq(gp_flowtab_in(t, &k, synack.b, synack.n, 2), 0, "another version");
    pk v6 = tcp_pk(V6.hub, V6.house, 80, 40000, 0x12);
    cr_assert_eq(gp_flowtab_in(t, &synack.k, v6.b, v6.n, 2), 0, "another packet's parse");
    cr_assert_eq(gp_flowtab_in(t, NULL, synack.b, synack.n, 2), 0);
    cr_assert_eq(gp_flowtab_in(NULL, &synack.k, synack.b, synack.n, 2), 0);
    cr_assert_eq(gp_flowtab_out(t, &syn.k, NULL, syn.n, 2), 0);
    cr_assert_eq(in(t, &synack, 2), 1);
    done(t);
}

/* ---- timeouts ---- */

/* The flow's deadline is at `end`: one ms before, the sweep keeps it and a packet refreshes
 * it; at it, the sweep drops it, and so does a lookup (the packet is refused). */
static void dies_at(gp_flowtab *(*setup)(const fam *), const fam *f, const pk *probe, uint64_t end,
                    const char *what) {
    gp_flowtab *t = setup(f);
    cr_assert_eq(gp_flowtab_expire(t, end - 1, 100), 0, "%s: alive before %llu", what,
                 (unsigned long long)end);
    cr_assert_eq(stats(t).flows, 1, "%s", what);
    cr_assert_eq(gp_flowtab_expire(t, end, 100), 1, "%s: expired at %llu", what,
                 (unsigned long long)end);
    gp_flowtab_stats s = stats(t);
    cr_assert(s.flows == 0 && s.expired == 1, "%s", what);
    done(t);

    t = setup(f);
    cr_assert_eq(in(t, probe, end - 1), 1, "%s: a reply just before", what);
    done(t);
    t = setup(f);
    cr_assert_eq(in(t, probe, end), 0, "%s: no reply at the end", what);
    s = stats(t);
    cr_assert(s.flows == 0 && s.expired == 1, "%s: dropped at the lookup", what);
    done(t);
}

static const uint64_t T0 = 1000000;

enum { OUT, IN };

/* t after p went out (OUT) or came in (IN) at `at`, let through. */
static gp_flowtab *passed(gp_flowtab *t, int dir, const pk *p, uint64_t at) {
    cr_assert_eq(dir == IN ? in(t, p, at) : out(t, p, at), 1, "%s at T0+%llu",
                 dir == IN ? "in" : "out", (unsigned long long)(at - T0));
    return t;
}

/* The timeouts' TCP flow: the house's port 40000 to the hub's port 80; flags either way. */
static gp_flowtab *tcp_step(gp_flowtab *t, const fam *f, int dir, uint8_t flags, uint64_t at) {
    pk p = dir == IN ? tcp_pk(f->hub, f->house, 80, 40000, flags)
                     : tcp_pk(f->house, f->hub, 40000, 80, flags);
    return passed(t, dir, &p, at);
}

/* The timeouts' UDP flow: the house's port 5353 to the hub's port 53. */
static gp_flowtab *udp_step(gp_flowtab *t, const fam *f, int dir, uint64_t at) {
    pk p = dir == IN ? udp_pk(f->hub, f->house, 53, 5353) : udp_pk(f->house, f->hub, 5353, 53);
    return passed(t, dir, &p, at);
}

static gp_flowtab *syn_only(const fam *f) {
    return tcp_step(new_table(16), f, OUT, 0x02, T0);
}

static gp_flowtab *tcp_open(const fam *f) {
    return tcp_step(syn_only(f), f, IN, 0x12, T0 + 5);
}

static gp_flowtab *tcp_rst_in(const fam *f) {
    return tcp_step(tcp_open(f), f, IN, 0x14, T0 + 10);
}

static gp_flowtab *tcp_rst_out(const fam *f) {
    return tcp_step(tcp_open(f), f, OUT, 0x04, T0 + 10);
}

static gp_flowtab *tcp_refused(const fam *f) { /* SYN out, RST back */
    return tcp_step(syn_only(f), f, IN, 0x14, T0 + 10);
}

static gp_flowtab *tcp_fin_out(const fam *f) {
    return tcp_step(tcp_open(f), f, OUT, 0x11, T0 + 10);
}

static gp_flowtab *tcp_fin_both(const fam *f) {
    return tcp_step(tcp_fin_out(f), f, IN, 0x11, T0 + 20);
}

static gp_flowtab *tcp_fin_in_then_out(const fam *f) {
    gp_flowtab *t = tcp_step(tcp_open(f), f, IN, 0x11, T0 + 10);
    cr_assert_eq(stats(t).flows, 1);
    return tcp_step(t, f, OUT, 0x11, T0 + 20);
}

/* After a RST, the house opens the same ports again: a new flow, SYN-only timeout. */
static gp_flowtab *tcp_reopened(const fam *f) {
    gp_flowtab *t = tcp_step(tcp_rst_in(f), f, OUT, 0x02, T0 + 20);
    cr_assert_eq(stats(t).created, 1, "the same flow, afresh");
    return t;
}

static gp_flowtab *udp_sent(const fam *f) {
    return udp_step(new_table(16), f, OUT, T0);
}

static gp_flowtab *udp_answered(const fam *f) {
    return udp_step(udp_sent(f), f, IN, T0 + 7);
}

static gp_flowtab *udp_sent_again(const fam *f) { /* out refreshes, no reply: 60 s again */
    return udp_step(udp_sent(f), f, OUT, T0 + 50000);
}

static gp_flowtab *pinged(const fam *f) {
    pk ping = echo_pk(f, f->house, f->hub, f == &V6 ? 128 : 8, 99);
    return passed(new_table(16), OUT, &ping, T0);
}

static gp_flowtab *gre_sent(const fam *f) {
    uint8_t l4[8] = {0};
    pk gre = mk(f->house, f->hub, 47, l4, 8, 0);
    return passed(new_table(16), OUT, &gre, T0);
}

Test(flowtab, timeouts) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        pk tcp_back = tcp_pk(f->hub, f->house, 80, 40000, 0x10);
        pk udp_back = udp_pk(f->hub, f->house, 53, 5353);
        pk pong = echo_pk(f, f->hub, f->house, v ? 129 : 0, 99);
        uint8_t l4[8] = {0};
        pk gre_back = mk(f->hub, f->house, 47, l4, 8, 0);

        dies_at(syn_only, f, &tcp_back, T0 + 60000, "tcp syn only");
        dies_at(tcp_open, f, &tcp_back, T0 + 5 + 3600000, "tcp answered");
        dies_at(tcp_rst_in, f, &tcp_back, T0 + 10 + 30000, "tcp rst in");
        dies_at(tcp_rst_out, f, &tcp_back, T0 + 10 + 30000, "tcp rst out");
        dies_at(tcp_refused, f, &tcp_back, T0 + 10 + 30000, "tcp refused");
        dies_at(tcp_fin_out, f, &tcp_back, T0 + 10 + 3600000, "tcp fin one way");
        dies_at(tcp_fin_both, f, &tcp_back, T0 + 20 + 30000, "tcp fin both ways");
        dies_at(tcp_fin_in_then_out, f, &tcp_back, T0 + 20 + 30000, "tcp fin in, then out");
        dies_at(tcp_reopened, f, &tcp_back, T0 + 20 + 60000, "tcp reopened");
        dies_at(udp_sent, f, &udp_back, T0 + 60000, "udp no reply");
        dies_at(udp_answered, f, &udp_back, T0 + 7 + 180000, "udp answered");
        dies_at(udp_sent_again, f, &udp_back, T0 + 50000 + 60000, "udp sent again");
        dies_at(pinged, f, &pong, T0 + 30000, "icmp echo");
        dies_at(gre_sent, f, &gre_back, T0 + 60000, "other protocol");
    }
}

Test(flowtab, rst_opens_nothing) {
    gp_flowtab *t = new_table(16);
    pk rst = tcp_pk(V4.house, V4.hub, 40000, 80, 0x04);
    cr_assert_eq(out(t, &rst, 1), 0);
    pk rst_ack = tcp_pk(V4.house, V4.hub, 40000, 80, 0x14);
    cr_assert_eq(out(t, &rst_ack, 1), 0);
    cr_assert_eq(stats(t).flows, 0);
    pk back = tcp_pk(V4.hub, V4.house, 80, 40000, 0x10);
    cr_assert_eq(in(t, &back, 2), 0);
    /* an outbound SYN-ACK (a connection the hub opened, let in by a rule) is recorded */
    pk synack = tcp_pk(V4.house, V4.hub, 22, 50000, 0x12);
    cr_assert_eq(out(t, &synack, 3), 1);
    pk ack = tcp_pk(V4.hub, V4.house, 50000, 22, 0x10);
    cr_assert_eq(in(t, &ack, 4), 1);
    done(t);
}

/* A timeout is from the last packet either way; the time passed in may repeat. */
Test(flowtab, refreshed_by_traffic) {
    gp_flowtab *t = udp_answered(&V4);
    pk q = udp_pk(V4.house, V4.hub, 5353, 53), a = udp_pk(V4.hub, V4.house, 53, 5353);
    uint64_t now = T0 + 7;
    for (int k = 0; k < 20; k++) {
        now += 179999;
        cr_assert_eq(k % 2 ? out(t, &q, now) : in(t, &a, now), 1, "step %d", k);
        cr_assert_eq(gp_flowtab_check(t), 0);
    }
    cr_assert_eq(in(t, &a, now), 1, "the same ms again");
    cr_assert_eq(gp_flowtab_expire(t, now + 180000, 10), 1);
    done(t);
}

/* The clock stands still past GP_FLOWTAB_TIME_MAX: no deadline overflows. */
Test(flowtab, clock_at_its_end) {
    gp_flowtab *t = new_table(4);
    pk q = udp_pk(V4.house, V4.hub, 5353, 53), a = udp_pk(V4.hub, V4.house, 53, 5353);
    uint64_t end = GP_FLOWTAB_TIME_MAX;
    cr_assert_eq(out(t, &q, end - 59999), 1);
    cr_assert_eq(in(t, &a, end), 1, "one ms before its deadline");
    cr_assert_eq(out(t, &q, UINT64_MAX), 1);
    cr_assert_eq(in(t, &a, UINT64_MAX), 1, "UINT64_MAX is GP_FLOWTAB_TIME_MAX");
    cr_assert_eq(gp_flowtab_expire(t, UINT64_MAX, 4), 0);
    done(t);
}

/* ---- related ICMP errors ---- */

/* The house's 1400-byte TCP ACK from sport to the hub's port 443 (in *big) and the router's
 * frag needed / packet too big for it. */
static pk too_big(const fam *f, uint16_t sport, pk *big) {
    uint8_t l4[1600];
    size_t l = tcp(l4, sport, 443, 0x10, NULL, 0, 1400);
    *big = mk(f->house, f->hub, 6, l4, l, 0);
    gp_ip_addr router = A(f->router);
    pk tb;
    cr_assert_eq(gp_icmp_too_big(big->b, big->n, &big->k, &router, 1280, tb.b, sizeof tb.b, &tb.n),
                 GP_TB_BUILT);
    parse(&tb);
    return tb;
}

Test(flowtab, too_big_for_our_packet) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        gp_flowtab *t = new_table(16);
        pk big, tb = too_big(f, 40000, &big);
        cr_assert_eq(in(t, &tb, 1), 0, "quoting a packet that never went out");
        cr_assert_eq(out(t, &big, 2), 1);
        cr_assert_eq(in(t, &tb, 3), 1, "frag needed / packet too big");
        gp_flowtab_stats s = stats(t);
        cr_assert(s.in_related == 1 && s.in_allowed == 0);

        /* quoting another flow of the same hosts: not related */
        pk big2, tb2 = too_big(f, 40001, &big2);
        cr_assert_eq(in(t, &tb2, 3), 0);

        /* an error does not keep a flow alive: the ACK-only flow is SYN-less and unanswered */
        cr_assert_eq(in(t, &tb, 2 + 59999), 1);
        cr_assert_eq(in(t, &tb, 2 + 60000), 0, "expired");
        cr_assert_eq(stats(t).expired, 1);
        done(t);
    }
}

/* The IP header and the L4 header's first 8 bytes (the house's packet) quoted in full, in
 * part, or cut anywhere: related only with all of them, and no read past the quote. */
Test(flowtab, quote_cut_at_every_length) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        gp_flowtab *t = new_table(16);
        uint8_t l4[64];
        size_t l = udp(l4, 33434, 33435, 24);
        pk probe = mk(f->house, f->hub, 17, l4, l, 0);
        cr_assert_eq(out(t, &probe, 1), 1);
        size_t need = probe.k.l4_off + 8;
        uint8_t te = v ? 3 : 11; /* time exceeded */
        for (size_t qn = 0; qn <= probe.n; qn++) {
            pk e = err_pk(f, f->router, f->house, te, 0, probe.b, qn);
            /* the quote in a buffer of its own size: ASan sees a read past it */
            uint8_t *copy = malloc(e.n);
            memcpy(copy, e.b, e.n);
            int r = gp_flowtab_in(t, &e.k, copy, e.n, 2);
            free(copy);
            cr_assert_eq(r, qn >= need, "v%d, quote of %zu bytes", v ? 6 : 4, qn);
        }
        done(t);
    }
}

Test(flowtab, related_errors_of_each_kind) {
    for (int v = 0; v < 2; v++) {
        const fam *f = FAMS[v];
        gp_flowtab *t = new_table(16);
        pk udpq = udp_pk(f->house, f->hub, 5000, 53);
        pk ping = echo_pk(f, f->house, f->hub, v ? 128 : 8, 0x4242);
        pk syn = tcp_pk(f->house, f->hub, 40000, 22, 0x02);
        uint8_t gre_l4[8] = {0};
        pk gre = mk(f->house, f->hub, 47, gre_l4, 8, 0);
        cr_assert_eq(out(t, &udpq, 1), 1);
        cr_assert_eq(out(t, &ping, 1), 1);
        cr_assert_eq(out(t, &syn, 1), 1);
        cr_assert_eq(out(t, &gre, 1), 1);

        /* each error type, from the hub host or a router */
        const uint8_t t4[][2] = {{3, 3}, {3, 4}, {3, 1}, {11, 0}, {12, 0}};
        const uint8_t t6[][2] = {{1, 4}, {1, 0}, {2, 0}, {3, 0}, {4, 0}};
        for (int k = 0; k < 5; k++) {
            const uint8_t *ty = v ? t6[k] : t4[k];
            pk e = err_pk(f, f->router, f->house, ty[0], ty[1], udpq.b, udpq.n);
            cr_assert_eq(in(t, &e, 2), 1, "type %u code %u", ty[0], ty[1]);
            e = err_pk(f, f->hub, f->house, ty[0], ty[1], syn.b, 28 + (v ? 20 : 0));
            cr_assert_eq(in(t, &e, 2), 1, "type %u about the TCP flow", ty[0]);
        }
        uint8_t unreach = v ? 1 : 3;
        pk e = err_pk(f, f->router, f->house, unreach, 0, ping.b, ping.n);
        cr_assert_eq(in(t, &e, 2), 1, "about our echo request");
        e = err_pk(f, f->router, f->house, unreach, 0, gre.b, gre.k.l4_off);
        cr_assert_eq(in(t, &e, 2), 1, "another protocol: the IP header is enough");
        e = err_pk(f, f->router, f->house, unreach, 0, gre.b, gre.k.l4_off - 1);
        cr_assert_eq(in(t, &e, 2), 0, "but all of it");

        /* not related */
        pk pong = echo_pk(f, f->house, f->hub, v ? 129 : 0, 0x4242);
        e = err_pk(f, f->router, f->house, unreach, 0, pong.b, pong.n);
        cr_assert_eq(in(t, &e, 2), 0, "about an echo reply");
        pk ping2 = echo_pk(f, f->house, f->hub, v ? 128 : 8, 0x4243);
        e = err_pk(f, f->router, f->house, unreach, 0, ping2.b, ping2.n);
        cr_assert_eq(in(t, &e, 2), 0, "about another echo id");
        e = err_pk(f, f->router, f->house2, unreach, 0, udpq.b, udpq.n);
        cr_assert_eq(in(t, &e, 2), 0, "to an address that did not send the packet");
        pk in_udp = udp_pk(f->hub, f->house, 53, 5000);
        e = err_pk(f, f->router, f->house, unreach, 0, in_udp.b, in_udp.n);
        cr_assert_eq(in(t, &e, 2), 0, "quoting the reply direction");
        if (!v) {
            e = err_pk(f, f->router, f->house, 5, 1, udpq.b, udpq.n);
            cr_assert_eq(in(t, &e, 2), 0, "a redirect");
            e = err_pk(f, f->router, f->house, 4, 0, udpq.b, udpq.n);
            cr_assert_eq(in(t, &e, 2), 0, "a source quench");
        } else {
            e = err_pk(f, f->router, f->house, 5, 0, udpq.b, udpq.n);
            cr_assert_eq(in(t, &e, 2), 0, "an unassigned error type");
        }
        /* a quote of the other IP version, or not IP */
        pk other = udp_pk(v ? V4.house : V6.house, v ? V4.hub : V6.hub, 5000, 53);
        e = err_pk(f, f->router, f->house, unreach, 0, other.b, other.n);
        cr_assert_eq(in(t, &e, 2), 0, "another version");
        uint8_t junk[64];
        memset(junk, 0xff, sizeof junk);
        e = err_pk(f, f->router, f->house, unreach, 0, junk, sizeof junk);
        cr_assert_eq(in(t, &e, 2), 0);
        /* a quote whose IPv4 header length runs past it, or is below 20 */
        if (!v) {
            uint8_t q[64];
            memcpy(q, udpq.b, udpq.n);
            q[0] = 0x4f;
            e = err_pk(f, f->router, f->house, 3, 3, q, 40);
            cr_assert_eq(in(t, &e, 2), 0);
            q[0] = 0x44;
            e = err_pk(f, f->router, f->house, 3, 3, q, 40);
            cr_assert_eq(in(t, &e, 2), 0);
        }
        /* the error as a first fragment: an error is never fragmented */
        uint8_t l4[200];
        memset(l4, 0, 8);
        l4[0] = unreach;
        memcpy(l4 + 8, udpq.b, udpq.n);
        if (!v) {
            pk ef = mk(f->router, f->house, 1, l4, 8 + udpq.n, 0x2000);
            cr_assert(ef.k.flags & GP_IPF_FIRST_FRAG);
            cr_assert_eq(in(t, &ef, 2), 0, "a fragmented error");
        }
        gp_flowtab_stats s = stats(t);
        cr_assert_eq(s.in_related, 12);
        cr_assert_eq(s.in_allowed, 0);
        cr_assert_eq(s.flows, 4, "errors change nothing");
        done(t);
    }
}

/* Quotes of IPv6 packets with extension headers: walked, bounded. */
Test(flowtab, v6_quote_extension_headers) {
    gp_flowtab *t = new_table(16);
    uint8_t ext[64], l4[64];
    size_t e = ext_opts(ext, 17, 2); /* destination options, 16 bytes */
    size_t l = udp(l4, 7000, 4789, 8);
    spec s = {.src = V6.house, .dst = V6.hub, .proto = 17, .ext = ext, .ext_n = e, .ext_nh = 60};
    pk p;
    p.n = build(p.b, &s, l4, l, 1);
    parse(&p);
    cr_assert_eq(p.k.l4_off, 56);
    cr_assert_eq(out(t, &p, 1), 1);
    for (size_t qn = 40; qn <= p.n; qn++) {
        pk er = err_pk(&V6, V6.router, V6.house, 2, 0, p.b, qn);
        cr_assert_eq(in(t, &er, 2), qn >= 64, "quote of %zu bytes", qn);
    }
    /* a first fragment quoted: ports are there */
    size_t n = 0;
    n += ext_frag(ext, 17, 0, 1, 77);
    spec sf = {.src = V6.house, .dst = V6.hub, .proto = 17, .ext = ext, .ext_n = n, .ext_nh = 44};
    l = udp(l4, 7000, 4789, 40);
    pk ff;
    ff.n = build(ff.b, &sf, l4, 24, 0);
    parse(&ff);
    pk er = err_pk(&V6, V6.router, V6.house, 2, 0, ff.b, ff.n);
    cr_assert_eq(in(t, &er, 2), 1, "a first fragment quoted");
    /* a later fragment quoted: no ports */
    ext_frag(ext, 17, 16, 0, 77);
    ff.n = build(ff.b, &sf, l4, 24, 0);
    parse(&ff);
    er = err_pk(&V6, V6.router, V6.house, 2, 0, ff.b, ff.n);
    cr_assert_eq(in(t, &er, 2), 0, "a later fragment quoted");
    /* more than GP_IP_EXT_MAX extension headers */
    uint8_t q[200];
    memcpy(q, p.b, 40);
    q[6] = 60;
    size_t qn = 40;
    for (int k = 0; k <= GP_IP_EXT_MAX; k++)
        qn += ext_opts(q + qn, k == GP_IP_EXT_MAX ? 17 : 60, 1);
    memcpy(q + qn, p.b + 56, 8);
    qn += 8;
    er = err_pk(&V6, V6.router, V6.house, 2, 0, q, qn);
    cr_assert_eq(in(t, &er, 2), 0, "too many extension headers");
    /* an extension header longer than the quote */
    memcpy(q, p.b, p.n);
    q[41] = 20;
    er = err_pk(&V6, V6.router, V6.house, 2, 0, q, p.n);
    cr_assert_eq(in(t, &er, 2), 0);
    cr_assert_eq(stats(t).in_related, (p.n - 64 + 1) + 1);
    done(t);
}

/* ---- fragments ---- */

Test(flowtab, later_fragments) {
    /* v4: a UDP datagram of 1000 bytes, the house's first fragment out, the hub's answer in
     * two pieces */
    gp_flowtab *t = new_table(16);
    uint8_t l4[1100];
    udp(l4, 5000, 7, 992);
    pk first = mk(V4.house, V4.hub, 17, l4, 504, 0x2000);
    pk later_out = mk(V4.house, V4.hub, 17, l4 + 504, 496, 504 / 8);
    cr_assert_eq(out(t, &later_out, 1), 0, "no flow from a later fragment");
    cr_assert_eq(stats(t).flows, 0);
    pk ans_first = mk(V4.hub, V4.house, 17, l4, 504, 0x2000);
    ans_first.b[20] = 0, ans_first.b[21] = 7, ans_first.b[22] = 0x13, ans_first.b[23] = 0x88;
    /* ports swapped by hand: the header checksum is not over them */
    parse(&ans_first);
    pk ans_later = mk(V4.hub, V4.house, 17, l4 + 504, 496, 504 / 8);
    cr_assert_eq(in(t, &ans_later, 1), 0, "no flow yet");
    cr_assert_eq(out(t, &first, 2), 1, "a first fragment has its ports");
    cr_assert_eq(in(t, &ans_first, 3), 1);
    cr_assert_eq(in(t, &ans_later, 3), 1);
    pk other_host = mk(V4.hub2, V4.house, 17, l4 + 504, 496, 504 / 8);
    cr_assert_eq(in(t, &other_host, 3), 0);
    pk other_proto = mk(V4.hub, V4.house, 6, l4 + 504, 496, 504 / 8);
    cr_assert_eq(in(t, &other_proto, 3), 0);
    gp_flowtab_stats s = stats(t);
    cr_assert(s.in_allowed == 2 && s.in_frag == 1);
    /* the pair lives as long as its longest-lived flow did */
    cr_assert_eq(in(t, &ans_later, 3 + 180000 - 1), 1);
    cr_assert_eq(in(t, &ans_later, 3 + 180000), 0);
    done(t);

    /* v6: an ICMP echo reply too big for one packet */
    t = new_table(16);
    pk ping = echo_pk(&V6, V6.house, V6.hub, 128, 5);
    cr_assert_eq(out(t, &ping, 1), 1);
    uint8_t ext[8];
    size_t e = ext_frag(ext, 58, 1232, 0, 0xabcd);
    spec s6 = {.src = V6.hub, .dst = V6.house, .proto = 58, .ext = ext, .ext_n = e, .ext_nh = 44};
    pk p6;
    memset(l4, 0x5a, 300);
    p6.n = build(p6.b, &s6, l4, 300, 0);
    parse(&p6);
    cr_assert_eq(in(t, &p6, 2), 1);
    /* its protocol is the fragment header's next header: destination options match nothing */
    ext_frag(ext, 60, 1232, 0, 0xabcd);
    p6.n = build(p6.b, &s6, l4, 300, 0);
    parse(&p6);
    cr_assert_eq(in(t, &p6, 2), 0);
    done(t);
}

/* ---- bounds ---- */

static pk flow_n(int k, int back) { /* UDP flow k: the house's port 10000 + k */
    return back ? udp_pk(V4.hub, V4.house, 53, (uint16_t)(10000 + k))
                : udp_pk(V4.house, V4.hub, (uint16_t)(10000 + k), 53);
}

Test(flowtab, eviction_least_recently_used) {
    gp_flowtab *t = new_table(4);
    cr_assert_eq(gp_flowtab_capacity(t), 4);
    for (int k = 0; k < 4; k++) {
        pk p = flow_n(k, 0);
        cr_assert_eq(out(t, &p, 100 + (uint64_t)k), 1);
    }
    /* flow 0 answered (another class: UDP replied), flow 1 sent again: 2 is the oldest now */
    pk a0 = flow_n(0, 1), o1 = flow_n(1, 0);
    cr_assert_eq(in(t, &a0, 200), 1);
    cr_assert_eq(out(t, &o1, 201), 1);
    pk p4 = flow_n(4, 0);
    cr_assert_eq(out(t, &p4, 202), 1);
    gp_flowtab_stats s = stats(t);
    cr_assert(s.flows == 4 && s.created == 5 && s.evicted == 1 && s.expired == 0);
    for (int k = 0; k <= 4; k++) {
        pk b = flow_n(k, 1);
        cr_assert_eq(in(t, &b, 203 + (uint64_t)k), k != 2, "flow %d", k);
    }
    done(t);

    /* a TCP flow older than them all goes first, whatever its class */
    t = new_table(3);
    pk syn = tcp_pk(V4.house, V4.hub, 40000, 80, 0x02);
    pk synack = tcp_pk(V4.hub, V4.house, 80, 40000, 0x12);
    cr_assert_eq(out(t, &syn, 1), 1);
    cr_assert_eq(in(t, &synack, 2), 1);
    for (int k = 0; k < 3; k++) {
        pk p = flow_n(k, 0);
        cr_assert_eq(out(t, &p, 10 + (uint64_t)k), 1);
    }
    cr_assert_eq(in(t, &synack, 20), 0, "the TCP flow was the least recently used");
    cr_assert_eq(stats(t).evicted, 1);
    /* full, one flow expired: it makes room, nothing live is evicted */
    pk ping = echo_pk(&V4, V4.house, V4.hub, 8, 1);
    cr_assert_eq(out(t, &ping, 30), 1); /* evicts flow 0 */
    cr_assert_eq(stats(t).evicted, 2);
    pk p1 = flow_n(1, 0), p2 = flow_n(2, 0);
    cr_assert_eq(out(t, &p1, 30000), 1);
    cr_assert_eq(out(t, &p2, 30000), 1);
    pk p9 = flow_n(9, 0);
    cr_assert_eq(out(t, &p9, 30 + 30000), 1, "the echo flow expired: its slot");
    s = stats(t);
    cr_assert(s.evicted == 2 && s.expired == 1 && s.flows == 3, "%llu %llu",
              (unsigned long long)s.evicted, (unsigned long long)s.expired);
    done(t);
}

/* A full default table: many flows, each found, the bound held. */
Test(flowtab, default_capacity_full) {
    gp_flowtab *t = new_table(0);
    cr_assert_eq(gp_flowtab_capacity(t), GP_FLOWTAB_DEFAULT_CAPACITY);
    const int N = GP_FLOWTAB_DEFAULT_CAPACITY + 1000;
    for (int k = 0; k < N; k++) {
        char hub[32];
        snprintf(hub, sizeof hub, "100.64.%d.%d", k / 250, k % 250 + 1);
        pk p = udp_pk(V4.house, hub, (uint16_t)(1024 + k % 50000), 443);
        cr_assert_eq(out(t, &p, (uint64_t)k), 1);
    }
    gp_flowtab_stats s = stats(t);
    cr_assert_eq(s.flows, GP_FLOWTAB_DEFAULT_CAPACITY);
    cr_assert_eq(s.evicted, 1000);
    for (int k = 0; k < N; k += 97) {
        char hub[32];
        snprintf(hub, sizeof hub, "100.64.%d.%d", k / 250, k % 250 + 1);
        pk b = udp_pk(hub, V4.house, 443, (uint16_t)(1024 + k % 50000));
        cr_assert_eq(in(t, &b, (uint64_t)N), k >= 1000, "flow %d", k);
    }
    cr_assert_eq(gp_flowtab_expire(t, (uint64_t)N + 60000, 100), 100, "the budget holds");
    cr_assert_eq(stats(t).flows, GP_FLOWTAB_DEFAULT_CAPACITY - 100);
    done(t);
}

Test(flowtab, new_refuses) {
    cr_assert_null(gp_flowtab_new(16, NULL));
    cr_assert_null(gp_flowtab_new((size_t)GP_FLOWTAB_MAX_CAPACITY + 1, KEY1));
    gp_flowtab *t = gp_flowtab_new(1, KEY1);
    cr_assert_not_null(t);
    pk a = flow_n(0, 0), b = flow_n(1, 0);
    cr_assert_eq(out(t, &a, 1), 1);
    cr_assert_eq(out(t, &b, 2), 1);
    cr_assert_eq(stats(t).evicted, 1);
    done(t);
    gp_flowtab_free(NULL);
}

/* The hash key changes where flows sit, never what the table decides. */
Test(flowtab, same_behaviour_under_two_keys) {
    gp_flowtab *t1 = gp_flowtab_new(32, KEY1), *t2 = gp_flowtab_new(32, KEY2);
    cr_assert(t1 && t2);
    uint64_t now = 0;
    uint32_t x = 12345;
    for (int k = 0; k < 4000; k++) {
        x = x * 1103515245u + 12345u;
        int port = (int)(x >> 16) % 48, dir = (x >> 8) & 1, proto = (x >> 9) % 3;
        const fam *f = FAMS[(x >> 12) & 1];
        now += (x >> 4) % 3000;
        pk p;
        if (proto == 0)
            p = dir ? tcp_pk(f->hub, f->house, 80, (uint16_t)(40000 + port), 0x10)
                    : tcp_pk(f->house, f->hub, (uint16_t)(40000 + port), 80, 0x02);
        else if (proto == 1)
            p = dir ? udp_pk(f->hub, f->house, 53, (uint16_t)(5000 + port))
                    : udp_pk(f->house, f->hub, (uint16_t)(5000 + port), 53);
        else
            p = echo_pk(f, dir ? f->hub : f->house, dir ? f->house : f->hub,
                        (uint8_t)(f == &V6 ? (dir ? 129 : 128) : (dir ? 0 : 8)), (uint16_t)port);
        int r1 = dir ? in(t1, &p, now) : out(t1, &p, now);
        int r2 = dir ? in(t2, &p, now) : out(t2, &p, now);
        cr_assert_eq(r1, r2, "step %d", k);
        if (k % 500 == 0)
            cr_assert_eq(gp_flowtab_expire(t1, now, 3), gp_flowtab_expire(t2, now, 3));
    }
    gp_flowtab_stats s1 = stats(t1), s2 = stats(t2);
    cr_assert(memcmp(&s1, &s2, sizeof s1) == 0);
    cr_assert(s1.evicted > 0 && s1.expired > 0 && s1.in_allowed > 0, "the run went through it");
    done(t1);
    done(t2);
}
