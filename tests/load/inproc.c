/* inproc.c — see inproc.h. */
#include "inproc.h"
#include "list.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An execution in its think time (one FIFO: the delay is the same for all). */
typedef struct lt_job {
    struct lt_job *next, *prev;
    hs_house *h;
    hs_stream *s;
    void *tok;
    unsigned exec_no;
    uint64_t due;
} lt_job;

static struct {
    uv_loop_t *loop;
    uv_timer_t think;
    uint64_t response_bytes, delay_ms;
    const lt_exec_hooks *hooks;
    lt_job *head, *tail;
    uint8_t *body; /* one chunk of an answer */
    int closed;
} X;

void lt_house_defaults(hs_config *c) {
    c->max_body = 8388608;
    c->max_response = 67108864;
    c->max_conns = 64;
    c->reconnect_max_ms = 30000;
    c->rudp_probe_ms = 30000;
    c->admin_listen = -1;
}

int lt_house_open(hs_house *h, uv_loop_t *loop, struct hs_ws_shared *ws, hs_zstate *zs, char *err,
                  size_t errlen) {
    h->loop = loop;
    h->ws_shared = ws;
    h->zs = zs;
    lt_house_defaults(&h->cfg);
    h->cache = hs_cache_new();
    h->journal = h->cache ? hs_journal_open(h->cache, NULL, h->cfg.id, 0, err, errlen) : NULL;
    if (!h->cache && errlen)
        snprintf(err, errlen, "out of memory");
    return h->journal ? 0 : -1;
}

void lt_house_close(hs_house *h) {
    hs_tunnel_free(h->tunnel);
    hs_upstream_free(h->upstream);
    hs_journal_close(h->journal);
    hs_cache_free(h->cache);
    free(h->cfg.id);
    sodium_memzero(h->secret, sizeof h->secret);
}

/* Appends a JSON string body (without quotes) of p[0..n) to out; returns the new length. */
static size_t json_escape(char *out, size_t o, size_t cap, const char *p, size_t n) {
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* Body bytes [off, off + n) of an answer: a small JSON object naming the house, the frame id
 * and which execution answered, padded with spaces. */
static void fill_body(const lt_job *j, const char *fid, uint8_t *out, uint64_t off, size_t n) {
    char js[1024];
    size_t jl = (size_t)snprintf(js, sizeof js, "{\"house\":\"%s\",\"id\":\"", j->h->cfg.id);
    jl = json_escape(js, jl, sizeof js - 32, fid, strlen(fid));
    jl += (size_t)snprintf(js + jl, sizeof js - jl, "\",\"exec\":%u}", j->exec_no);
    size_t k = 0;
    if (off < jl) {
        k = jl - (size_t)off < n ? jl - (size_t)off : n;
        memcpy(out, js + off, k);
    }
    memset(out + k, ' ', n - k);
}

/* Queued whole: the tunnel sends its frames round-robin with the other streams. */
static void answer(lt_job *j) {
    const hs_request *r = hs_stream_request(j->s);
    uint64_t total = X.response_bytes;
    gp_header ct = {GP_STR_LIT("content-type"), GP_STR_LIT("application/json")};
    hs_stream_head(j->s, 200, &ct, 1, "", "", total, total == 0);
    for (uint64_t off = 0; off < total;) {
        size_t k = total - off < GP_BODY_CHUNK ? (size_t)(total - off) : GP_BODY_CHUNK;
        fill_body(j, r->frame_id, X.body, off, k);
        hs_stream_body(j->s, ct.value, X.body, k, off + k == total);
        off += k;
    }
    if (X.hooks && X.hooks->end)
        X.hooks->end(j->tok, 0);
    hs_stream_upstream_done(j->s, "ok");
}

static void on_think(uv_timer_t *t) {
    (void)t;
    uint64_t now = hs_now_ms();
    while (X.head && X.head->due <= now) {
        lt_job *j = X.head;
        GP_LIST_UNLINK(X.head, X.tail, j, prev, next);
        answer(j);
        free(j);
    }
    if (X.head && !X.closed)
        uv_timer_start(&X.think, on_think, X.head->due - now, 0);
}

static int x_check(void *ud, hs_request *r, uint16_t *status, const char **error,
                   const char **message) {
    (void)ud, (void)status, (void)error, (void)message;
    r->base_url = "in-process";
    return 0;
}

static hs_xfer *x_start(void *ud, hs_stream *s) {
    hs_house *h = ud;
    lt_job *j = calloc(1, sizeof *j);
    unsigned no = j ? 1 : 0;
    if (j && X.hooks && X.hooks->start)
        no = X.hooks->start(h, s, &j->tok);
    if (!no) {
        free(j);
        hs_stream_head(s, 503, NULL, 0, "unavailable", "house out of memory", 0, 1);
        return NULL;
    }
    j->h = h;
    j->s = s;
    j->exec_no = no;
    j->due = hs_now_ms() + X.delay_ms;
    GP_LIST_APPEND(X.head, X.tail, j, prev, next);
    if (X.head == j)
        uv_timer_start(&X.think, on_think, X.delay_ms, 0);
    return (hs_xfer *)j;
}

static void x_abort(void *ud, hs_xfer *x) {
    (void)ud;
    lt_job *j = (lt_job *)x;
    GP_LIST_UNLINK(X.head, X.tail, j, prev, next);
    if (X.hooks && X.hooks->end)
        X.hooks->end(j->tok, 1);
    free(j);
}

static void x_resume(void *ud) {
    (void)ud; /* answers are queued whole: nothing waits for room */
}

const hs_exec lt_inproc_exec = {x_check, x_start, x_abort, x_resume};

int lt_inproc_init(uv_loop_t *loop, uint64_t response_bytes, uint64_t delay_ms,
                   const lt_exec_hooks *hooks) {
    X.loop = loop;
    X.response_bytes = response_bytes;
    X.delay_ms = delay_ms;
    X.hooks = hooks;
    X.body = malloc(GP_BODY_CHUNK);
    if (!X.body)
        return -1;
    uv_timer_init(loop, &X.think);
    return 0;
}

void lt_inproc_close(void) {
    if (X.closed || !X.loop)
        return;
    X.closed = 1;
    uv_close((uv_handle_t *)&X.think, NULL);
}

void lt_inproc_free(void) {
    while (X.head) {
        lt_job *j = X.head;
        GP_LIST_UNLINK(X.head, X.tail, j, prev, next);
        free(j);
    }
    free(X.body);
    X.body = NULL;
}
