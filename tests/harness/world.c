/* world.c — see world.h. */
#include "world.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

void h_world_up(h_world *w, const char *id, const char *const *bridge_extra,
                const char *const *house_extra) {
    memset(w, 0, sizeof *w);
    w->redis = h_redis_start(0);
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    w->bridge = h_bridge_start(0, &w->bridge_port, bridge_extra, 1);
    if (id)
        w->house = h_house_up(w, id, w->secret, house_extra);
}

void h_world_wss_up(h_world *w, const char *id, const char *const *bridge_extra, char *cert,
                    char *key) {
    memset(w, 0, sizeof *w);
    w->redis = h_redis_start(0);
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    cr_assert(h_self_signed("rsa:2048", cert, 700, key, 700), "openssl failed (see openssl.log)");
    const char *bx[32] = {"--tls-cert", cert, "--tls-key", key};
    int n = 4;
    for (int i = 0; bridge_extra && bridge_extra[i] && n < 31; i++)
        bx[n++] = bridge_extra[i];
    w->bridge = h_bridge_start(0, &w->bridge_port, bx, 1);
    char url[64];
    snprintf(url, sizeof url, "wss://localhost:%d/", w->bridge_port);
    h_register(id, w->secret);
    const char *hx[] = {"--ca-file", cert, NULL};
    w->house = h_house_start_url(id, w->secret, url, w->up_url, hx);
    cr_assert(h_wait_connected(id, 15000), "house %s did not connect over wss", id);
}

h_proc *h_rudp_bridge_start(int *port, char url[64], char pub[65]) {
    char keyf[600], udp[16];
    snprintf(keyf, sizeof keyf, "%s", h_path("rudp.key"));
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_cli(&out, NULL, &err, (const char *const[]){"rudp-keygen", "--out", keyf, NULL}),
                 0, "rudp-keygen: %s", err);
    snprintf(pub, 65, "%.64s", out);
    free(out), free(err);
    int uport = h_free_port();
    snprintf(udp, sizeof udp, "%d", uport);
    snprintf(url, 64, "rudp://127.0.0.1:%d", uport);
    const char *bx[] = {"--bridge-id", "b1", "--rudp-listen", udp, "--rudp-key", keyf, NULL};
    h_proc *b = h_bridge_start(0, port, bx, 1);
    cr_assert(h_wait_log(b, "transport=rudp", 5000), "bridge not listening on UDP");
    return b;
}

h_proc *h_house_up(const h_world *w, const char *id, char secret[65], const char *const *extra) {
    h_register(id, secret);
    h_proc *h = h_house_start(id, secret, w->bridge_port, w->up_url, extra);
    cr_assert(h_wait_connected(id, 15000), "house %s did not connect within 15 s", id);
    return h;
}

int h_hits(int port, const char *id) {
    char path[128], *body = NULL;
    snprintf(path, sizeof path, "/hits?id=%s", id);
    int st = h_http_get(port, path, &body);
    int n = st == 200 ? (int)h_json_int(body, "hits") : -1;
    free(body);
    return n;
}

int h_upstream_hit(void *ud) {
    const h_hits_arg *a = ud;
    return h_hits(a->port, a->id) >= 1;
}

int h_xpending(const char *house) {
    redisReply *r = h_cmd("XPENDING gp:{%s}:req gp", house);
    int n = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        n = (int)r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

int h_no_pending(void *house) {
    return h_xpending(house) == 0;
}

const char *h_xadd_req(const char *house, const h_req *r) {
    const char *names[] = {"id",      "method", "path",       "service",
                           "headers", "body",   "timeout_ms", "reply"};
    const char *vals[] = {r->id,      r->method, r->path,       r->service,
                          r->headers, r->body,   r->timeout_ms, r->reply};
    h_field f[8];
    size_t n = 0;
    for (size_t i = 0; i < 8; i++)
        if (vals[i])
            f[n++] = (h_field){names[i], vals[i], (size_t)-1};
    if (r->reply && r->reply_len)
        f[n - 1].len = r->reply_len;
    return h_xadd(house, f, n);
}

const char *h_xadd_tagged(const char *house, const char *id, const char *method, const char *path,
                          const char *body, const char *timeout_ms, const char *reply,
                          size_t rlen) {
    char hdr[160];
    snprintf(hdr, sizeof hdr, "{\"x-frame-id\":\"%s\"}", id);
    return h_xadd_req(house, &(h_req){.id = id,
                                      .method = method,
                                      .path = path,
                                      .headers = hdr,
                                      .body = body,
                                      .timeout_ms = timeout_ms,
                                      .reply = reply,
                                      .reply_len = rlen == (size_t)-1 ? 0 : rlen});
}

const char *h_xadd_get(const char *house, const char *id, const char *path, const char *reply) {
    return h_xadd_req(house, &(h_req){.id = id, .method = "GET", .path = path, .reply = reply});
}

void h_assert_serves(const char *house, const char *frame_id) {
    h_assert_get_ok(house, frame_id, "/echo?ok=1");
}

void h_assert_get_ok(const char *house, const char *frame_id, const char *path) {
    h_request(house, frame_id, "GET", path, NULL, NULL, 0, 15000);
    h_reply r;
    cr_assert(h_wait_reply(frame_id, NULL, 20000, &r), "%s: no reply from house %s", frame_id,
              house);
    cr_assert_eq(r.status, 200, "%s: status %d error %s", frame_id, r.status,
                 r.error ? r.error : "-");
    h_reply_free(&r);
}

h_load_result h_load_finish(h_load *l, const char *name, int upstream_port) {
    int settled = h_load_settle(l, 5000);
    if (upstream_port)
        h_load_check_upstream(l, upstream_port);
    h_load_report(l, name);
    h_load_result r = h_load_result_get(l);
    h_load_free(l);
    cr_assert(settled, "%s: %ld of %ld requests got no final reply", name, r.lost, r.sent);
    if (upstream_port)
        cr_assert_eq(r.upstream_dup, 0, "%s: the upstream ran %ld frame ids twice", name,
                     r.upstream_dup);
    return r;
}

void h_assert_error_reply(const h_reply *r, int status, const char *error) {
    cr_assert_eq(r->status, status, "status %d, want %d (error %s message %s)", r->status, status,
                 r->error ? r->error : "-", r->message ? r->message : "-");
    cr_assert(r->error && strcmp(r->error, error) == 0, "error '%s', want '%s'",
              r->error ? r->error : "(none)", error);
}

char *h_path(const char *name) {
    static char paths[8][600];
    static int n;
    char *p = paths[n++ % 8];
    snprintf(p, 600, "%s/%s", h_dir(), name);
    return p;
}

void h_write_file(const char *path, const char *text, int mode) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, (mode_t)mode), 0, "chmod %s: %s", path, strerror(errno));
}

int h_self_signed(const char *newkey, char *cert, size_t certlen, char *key, size_t keylen) {
    char cmd[8192];
    snprintf(cert, certlen, "%s/bridge.crt", h_dir());
    snprintf(key, keylen, "%s/bridge.key", h_dir());
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey %s -nodes -days 365 -keyout '%s' -out '%s' "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             ">'%s/openssl.log' 2>&1",
             newkey, key, cert, h_dir());
    return system(cmd) == 0;
}

void h_raise_nofile(unsigned long n) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < n && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < n ? rl.rlim_max : n;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
