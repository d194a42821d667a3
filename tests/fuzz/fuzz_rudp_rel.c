/* libFuzzer target for the rudp:// reliability engine (proto/rudp_rel.c).
 *
 * Each input runs against a freshly established pair (hub A, house B) that has already
 * exchanged messages over a clean simulated link, so B has packets in flight, ack ranges,
 * partial reassembly state and a measured RTT. The input is a sequence of records
 *   u8 op, u16 len (little-endian), then for ops 0/1/3 len bytes:
 *   op & 3 == 0, 1: a packet payload fed to B (plaintext, as the session layer would);
 *   op & 3 == 2:    advance B's clock by (len % 4096) ms (timers, probes, keepalives, dead);
 *   op & 3 == 3:    B sends the len bytes as a message on lane op >> 2, or as a datagram
 *                   when op >> 2 is 63.
 * After each record B's output and deliveries are drained. Oracles: sanitizers, and that
 * every return code is one the header documents, output never exceeds max_payload and
 * delivered messages never exceed max_message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/rudp_sim.h"

static void check(int ok) {
    if (!ok)
        abort();
}

static int setup_got;
static void setup_msg(sim *s, int ep, uint32_t lane, const uint8_t *m, size_t len) {
    (void)s;
    (void)ep;
    (void)lane;
    (void)m;
    (void)len;
    setup_got++;
}
static int setup_done(sim *s) {
    (void)s;
    return setup_got == 6;
}

/* The pair: A sent B a 5000-byte message (several chunks) and two small ones on two lanes,
 * B answered each; then A queued one more message that is not yet sent (the seed generator
 * captures A's next packets, which B will accept as new). */
static void establish(sim *s) {
    static uint8_t body[5000];
    gp_rel_config c;
    gp_rel_config_init(&c);
    sim_init(s, 1, &c, &c);
    sim_link l;
    memset(&l, 0, sizeof l);
    l.delay_ns = 50 * SIM_MS;
    sim_link_both(s, &l);
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7);
    setup_got = 0;
    s->on_msg = setup_msg;
    check(gp_rel_send(s->ep[0], 1, body, sizeof body) == 0);
    check(gp_rel_send(s->ep[0], 2, body, 100) == 0);
    check(gp_rel_send(s->ep[0], 1, body, 30) == 0);
    check(gp_rel_send(s->ep[1], 1, body, 2000) == 0);
    check(gp_rel_send(s->ep[1], 2, body, 10) == 0);
    check(gp_rel_send(s->ep[1], 3, body, 10) == 0);
    check(sim_run(s, s->now + 10 * SIM_SEC, setup_done));
    sim_run(s, s->now + 100 * SIM_MS, NULL); /* let the last acks land */
}

#ifndef RUDP_REL_SEEDGEN
static void drain(gp_rel *b, uint64_t now) {
    static uint8_t out[GP_REL_DEFAULT_MAX_PAYLOAD];
    for (int i = 0; i < 10000; i++) {
        ssize_t n = gp_rel_output(b, out, sizeof out, now, now);
        check(n <= (ssize_t)sizeof out);
        check(n >= 0 || n == GP_ERR_STATE);
        if (n <= 0)
            break;
    }
    uint32_t lane;
    const uint8_t *m;
    ssize_t n;
    while ((n = gp_rel_recv(b, &lane, &m)) > 0)
        check((size_t)n <= GP_REL_DEFAULT_MAX_MESSAGE && m != NULL);
    check(n == 0);
    while ((n = gp_rel_recv_dgram(b, &m)) > 0)
        check((size_t)n <= GP_REL_DEFAULT_MAX_PAYLOAD && m != NULL);
    check(n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sim s;
    establish(&s);
    gp_rel *b = s.ep[1];
    uint64_t now = s.now;
    while (size >= 3) {
        uint8_t op = data[0];
        size_t len = (size_t)data[1] | (size_t)data[2] << 8;
        data += 3;
        size -= 3;
        if ((op & 3) == 2) {
            now += (uint64_t)(len % 4096) * SIM_MS;
        } else {
            if (len > size)
                len = size;
            if (op == 0xff) {
                int rc = gp_rel_send_dgram(b, data, len, now);
                check(rc == 0 || rc == GP_ERR_BUFFER || rc == GP_ERR_STATE ||
                      (rc == GP_ERR_INVALID && len == 0) ||
                      (rc == GP_ERR_TOO_LARGE && len > gp_rel_dgram_max(b)));
            } else if ((op & 3) == 3) {
                int rc = gp_rel_send(b, op >> 2, data, len);
                check(rc == 0 || rc == GP_ERR_BUFFER || rc == GP_ERR_STATE ||
                      (rc == GP_ERR_INVALID && len == 0));
            } else {
                int rc = gp_rel_input(b, data, len, now);
                check(rc == 0 || rc == GP_ERR_MALFORMED || rc == GP_ERR_TOO_LARGE ||
                      rc == GP_ERR_STATE);
            }
            data += len;
            size -= len;
        }
        drain(b, now);
        uint64_t e = gp_rel_expiry(b);
        check(e == UINT64_MAX || !gp_rel_dead(b));
    }
    gp_rel_stats st;
    gp_rel_get_stats(b, &st);
    check(st.loss_rate_rx >= 0 && st.loss_rate_rx <= 1);
    sim_free(&s);
    return 0;
}
#else
/* Seed generator (not part of the fuzzer): cc -DRUDP_REL_SEEDGEN ... && ./a.out DIR */
static void put_rec(FILE *f, uint8_t op, const uint8_t *p, size_t len) {
    uint8_t h[3] = {op, (uint8_t)len, (uint8_t)(len >> 8)};
    fwrite(h, 1, 3, f);
    if (p)
        fwrite(p, 1, len, f);
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    sim s;
    establish(&s);
    static uint8_t body[3000], out[3][GP_REL_DEFAULT_MAX_PAYLOAD];
    size_t n[3] = {0, 0, 0};
    /* A packet with a datagram (an IPv4 header), then two of a message. */
    static const uint8_t ip[] = {0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2};
    check(gp_rel_send_dgram(s.ep[0], ip, sizeof ip, s.now) == 0);
    ssize_t kd = gp_rel_output(s.ep[0], out[2], sizeof out[2], s.now, s.now);
    check(kd > 0);
    n[2] = (size_t)kd;
    check(gp_rel_send(s.ep[0], 2, body, sizeof body) == 0);
    for (int i = 0; i < 2; i++) {
        ssize_t k = gp_rel_output(s.ep[0], out[i], sizeof out[i], s.now, s.now);
        check(k > 0);
        n[i] = (size_t)k;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/next_data", argv[1]);
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    put_rec(f, 0, out[0], n[0]);
    fclose(f);
    snprintf(path, sizeof path, "%s/data_time_send", argv[1]);
    f = fopen(path, "wb");
    check(f != NULL);
    put_rec(f, 0, out[0], n[0]);
    put_rec(f, 2, NULL, 300);
    put_rec(f, 0, out[1], n[1]);
    put_rec(f, 3 | 4 << 2, body, 1500);
    put_rec(f, 0xff, ip, sizeof ip);
    put_rec(f, 2, NULL, 3000);
    fclose(f);
    snprintf(path, sizeof path, "%s/datagram", argv[1]);
    f = fopen(path, "wb");
    check(f != NULL);
    put_rec(f, 0, out[2], n[2]);
    put_rec(f, 0xff, ip, sizeof ip);
    fclose(f);
    sim_free(&s);
    return 0;
}
#endif
