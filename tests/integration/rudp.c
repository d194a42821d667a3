/* rudp:// end to end (issue 4): a real house and bridge over UDP — directly, through the
 * impairment relay at 30% loss and 200 ms RTT, across NAT rebinding, and with UDP blocked
 * (the house falls back to wss, and comes back to rudp when UDP works again). Every request
 * is checked with the same exactly-once checker as the fault suite. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/load.h"
#include "../harness/world.h"

typedef struct world {
    h_proc *redis, *up, *bridge, *house, *relay;
    int up_port, ws_port, udp_port, relay_port;
    char up_url[64], secret[65], pub[65], key_file[600], udp_port_s[16];
} world;

/* Redis, the upstream, the rudp key pair, a bridge listening on ws and rudp. */
static void world_up(world *w, const char *const *bridge_extra) {
    memset(w, 0, sizeof *w);
    w->redis = h_redis_start(0);
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    snprintf(w->key_file, sizeof w->key_file, "%s/rudp.key", h_dir());
    char *out = NULL, *err = NULL;
    cr_assert_eq(
        h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", w->key_file, NULL}),
        0, "rudp-keygen: %s", err);
    snprintf(w->pub, sizeof w->pub, "%.64s", out);
    free(out), free(err);
    w->udp_port = h_free_port();
    snprintf(w->udp_port_s, sizeof w->udp_port_s, "%d", w->udp_port);
    const char *extra[16] = {"--bridge-id", "b1",         "--rudp-listen",
                             w->udp_port_s, "--rudp-key", w->key_file};
    int n = 6;
    for (int i = 0; bridge_extra && bridge_extra[i] && n < 15; i++)
        extra[n++] = bridge_extra[i];
    extra[n] = NULL;
    w->bridge = h_bridge_start(0, &w->ws_port, extra, 1);
    cr_assert(h_wait_log(w->bridge, "transport=rudp", 5000), "bridge not listening on UDP");
    h_register("h1", w->secret);
}

/* The relay in front of the bridge's UDP port, with impairments. */
static void relay_up(world *w, const char *const *impair) {
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", w->udp_port);
    const char *argv[32] = {h_bin("gp-relay"), "--listen", "127.0.0.1:0", "--target", target};
    char bin[600];
    snprintf(bin, sizeof bin, "%s", argv[0]);
    argv[0] = bin;
    int n = 5;
    for (int i = 0; impair && impair[i] && n < 31; i++)
        argv[n++] = impair[i];
    argv[n] = NULL;
    w->relay = h_spawn("relay", (char *const *)argv);
    cr_assert(h_wait_log(w->relay, "event=listening", 5000), "relay did not start");
    size_t len;
    char *log = h_read_file(w->relay->log, &len);
    char *p = log ? strstr(log, "event=listening") : NULL;
    p = p ? strstr(p, "port=") : NULL;
    w->relay_port = p ? atoi(p + 5) : 0;
    free(log);
    cr_assert_gt(w->relay_port, 0);
}

/* The house, dialing rudp:// to `port` first, then the extra URLs. */
static void house_up(world *w, int port, const char *const *more) {
    char url[64];
    snprintf(url, sizeof url, "rudp://127.0.0.1:%d", port);
    const char *extra[16] = {"--bridge-key", w->pub};
    int n = 2;
    for (int i = 0; more && more[i] && n < 15; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    w->house = h_house_start_url("h1", w->secret, url, w->up_url, extra);
}

static int transport_is(const char *t) {
    redisReply *r = h_cmd("HGET gp:{h1}:state transport");
    int ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, t) == 0;
    freeReplyObject(r);
    return ok;
}

static int on_rudp(void *ud) {
    (void)ud;
    return transport_is("rudp");
}

static int on_ws(void *ud) {
    (void)ud;
    return transport_is("ws");
}

static h_load_result load(const char *name, const char *path, int rate, int ms, int upstream) {
    static const char *const houses[] = {"h1"};
    h_load_cfg cfg = {.producers = 2, .rate = rate, .houses = houses, .nhouses = 1, .path = path};
    h_load *l = h_load_start(&cfg);
    cr_assert_not_null(l);
    h_load_mark(l, 1);
    h_load_run_for(l, ms);
    h_load_mark(l, 0);
    h_load_result r = h_load_finish(l, name, upstream);
    cr_assert_eq(r.s2xx, r.sent, "%s: %ld of %ld answered 2xx", name, r.s2xx, r.sent);
    return r;
}

TestSuite(rudp, .init = h_init, .fini = h_fini, .timeout = 180);

/* Straight over UDP, with the full 15 ms of send jitter on both sides: small and large
 * requests and responses; the live state says rudp. */
Test(rudp, serves_requests_directly) {
    world w;
    const char *jitter[] = {"--rudp-jitter-ms", "15", NULL};
    world_up(&w, jitter);
    house_up(&w, w.udp_port, jitter);
    cr_assert(h_wait(on_rudp, NULL, 15000), "house not connected over rudp");
    h_request("h1", "small", "GET", "/echo?x=1", NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply("small", NULL, 10000, &r));
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);
    uint8_t *body = h_prandom(300000, "up");
    h_request("h1", "big-up", "POST", "/echo", NULL, body, 300000, 20000);
    cr_assert(h_wait_reply("big-up", NULL, 20000, &r));
    cr_assert_eq(r.status, 200);
    char sha[65];
    h_sha256_hex(body, 300000, sha);
    cr_assert_str_eq(h_json_str((char *)r.body, "body_sha256"), sha);
    h_reply_free(&r);
    free(body);
    h_request("h1", "big-down", "GET", "/bytes/3000000?seed=d", NULL, NULL, 0, 30000);
    cr_assert(h_wait_reply("big-down", NULL, 30000, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 3000000);
    uint8_t *want = h_prandom(3000000, "d");
    cr_assert(memcmp(r.body, want, r.body_len) == 0, "3 MB response corrupted");
    free(want);
    h_reply_free(&r);
    load("rudp_direct", "/echo", 100, 3000, w.up_port);
}

/* The bad link: 30% loss each way and 200 ms RTT (relay, seeded). A batch of 300-byte
 * requests with 16 KiB responses: every one answered. */
Test(rudp, thirty_percent_loss_200ms_rtt) {
    world w;
    const char *admin[] = {"--admin-listen", "0", NULL};
    world_up(&w, admin);
    const char *bad[] = {"--loss", "0.3", "--delay", "100", "--seed", "7", NULL};
    relay_up(&w, bad);
    house_up(&w, w.relay_port, admin);
    cr_assert(h_wait(on_rudp, NULL, 30000), "house not connected over rudp through the relay");
    h_load_result r = load("rudp_loss30_rtt200", "/bytes/16384", 20, 10000, w.up_port);
    printf("rudp at 30%% loss, 200 ms RTT: %ld requests, p50 %.0f ms, p99 %.0f ms\n", r.sent,
           r.p50_ms, r.p99_ms);
    fflush(stdout);

    /* What the link did, as both sides' metrics tell it: the relay's 200 ms RTT, loss near its
     * 30%, and repairs. */
    const char *side[] = {"bridge", "house"};
    h_proc *proc[] = {w.bridge, w.house};
    static const char *const key[2][4] = {
        {"gp_bridge_rtt_seconds{transport=\"rudp\"}", "gp_bridge_rudp_loss_ratio",
         "gp_bridge_rudp_retransmits_total", "gp_bridge_rudp_fec_repaired_total"},
        {"gp_house_rtt_seconds", "gp_house_rudp_loss_ratio", "gp_house_rudp_retransmits_total",
         "gp_house_rudp_fec_repaired_total"}};
    for (int i = 0; i < 2; i++) {
        char *m = h_scrape(h_admin_port(proc[i]));
        cr_assert_not_null(m, "%s: no metrics from its admin port", side[i]);
        const char *const *k = key[i];
        double rtt = h_metric(m, k[0]), loss = h_metric(m, k[1]);
        double retx = h_metric(m, k[2]), fec = h_metric(m, k[3]);
        printf("%s metrics: rtt %.3f s, loss %.3f, retransmits %.0f, fec repaired %.0f\n", side[i],
               rtt, loss, retx, fec);
        cr_assert(rtt >= 0.19 && rtt < 1.0, "%s: %s = %g, the link's RTT is 0.2 s", side[i], k[0],
                  rtt);
        cr_assert(loss > 0.1 && loss < 0.5, "%s: %s = %g, the link loses 30%%", side[i], k[1],
                  loss);
        cr_assert(retx + fec > 0, "%s: no retransmit and no FEC repair at 30%% loss", side[i]);
        free(m);
    }
    fflush(stdout);
}

/* NAT rebinding: the relay moves the house's traffic to a new source port every second and
 * stops delivering to the old one (as a NAT would). The session follows the house at its next
 * datagram; a house that only listens shows itself at its next PING at the latest (every
 * second here: a mobile deployment would pick a short --ping-interval for the same reason). */
Test(rudp, survives_nat_rebinding) {
    world w;
    const char *fast[] = {"--ping-interval", "1000", NULL};
    world_up(&w, fast);
    const char *nat[] = {"--rebind-every", "1000", "--rebind-drop", NULL};
    relay_up(&w, nat);
    house_up(&w, w.relay_port, NULL);
    cr_assert(h_wait(on_rudp, NULL, 15000), "house not connected over rudp");
    load("rudp_nat_rebind", "/echo", 50, 5000, w.up_port);
    cr_assert_geq(h_log_count(w.bridge, "event=rudp_rebind"), 2, "the bridge saw no rebinding");
    cr_assert_eq(h_log_count(w.house, "event=disconnected"), 0, "the session did not survive");
}

/* UDP blocked: the house falls back to wss and serves there; once UDP gets through again its
 * probe sees it and the house moves back to rudp, without losing a request. */
Test(rudp, falls_back_to_wss_and_back) {
    world w;
    world_up(&w, NULL);
    relay_up(&w, NULL);
    kill(w.relay->pid, SIGUSR1); /* drop everything */
    cr_assert(h_wait_log(w.relay, "event=drop_all on=1", 5000));
    char ws[64];
    snprintf(ws, sizeof ws, "ws://127.0.0.1:%d/", w.ws_port);
    const char *more[] = {"--bridge", ws, "--rudp-probe-ms", "500", NULL};
    house_up(&w, w.relay_port, more);
    cr_assert(h_wait(on_ws, NULL, 30000), "house did not fall back to wss");
    load("rudp_fallback_wss", "/echo", 50, 2000, w.up_port);
    kill(w.relay->pid, SIGUSR2); /* UDP works again */
    cr_assert(h_wait(on_rudp, NULL, 30000), "house did not move back to rudp");
    cr_assert_geq(h_log_count(w.house, "event=rudp_available"), 1);
    load("rudp_back_from_wss", "/echo", 50, 2000, w.up_port);
}

/* Only someone with the house's secret gets a session: a wrong secret (or an unknown house)
 * gets silence, and the attempt is logged and counted against the address. */
Test(rudp, wrong_secret_gets_silence) {
    world w;
    world_up(&w, NULL);
    strcpy(w.secret, "0000000000000000000000000000000000000000000000000000000000000001");
    house_up(&w, w.udp_port, NULL);
    cr_assert(h_wait_log(w.bridge, "event=auth_failed", 15000), "no auth failure logged");
    cr_assert(h_wait_log(w.house, "event=bridge_no_answer", 15000), "the house heard back");
    cr_assert_eq(h_int("EXISTS gp:{h1}:state"), 0, "a house with a wrong secret got in");
}

/* A TCP stream over rudp (protocol 2, offered by the HELLO in the house's first datagram),
 * through the relay at 30% loss and 200 ms RTT: `ghostport connect` speaks HTTP by hand to
 * the house's upstream as a TCP service and gets 256 KiB back intact. */
Test(rudp, tcp_stream_at_thirty_percent_loss) {
    world w;
    world_up(&w, NULL);
    const char *bad[] = {"--loss", "0.3", "--delay", "100", "--seed", "11", NULL};
    relay_up(&w, bad);
    char svc[64];
    snprintf(svc, sizeof svc, "web=127.0.0.1:%d", w.up_port);
    house_up(&w, w.relay_port, (const char *const[]){"--tcp-service", svc, NULL});
    cr_assert(h_wait(on_rudp, NULL, 30000), "house not connected over rudp through the relay");
    enum { N = 262144 };
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "printf 'GET /bytes/%d?seed=s HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' | '%s' --redis '%s' "
             "connect h1 web --timeout 30000",
             N, h_bin("ghostport"), h_redis_url());
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL, *err = NULL;
    size_t len = 0;
    int rc = h_run(argv, 120000, &out, &len, &err);
    cr_assert_eq(rc, 0, "connect over rudp: rc %d, stderr: %s", rc, err);
    cr_assert(len > N && strncmp(out, "HTTP/1.1 200", 12) == 0, "%zu bytes: %.80s", len, out);
    uint8_t *want = h_prandom(N, "s");
    cr_assert(memcmp(out + len - N, want, N) == 0, "the body came back corrupted");
    free(want), free(out), free(err);
}
