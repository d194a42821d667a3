/* store_state.c — the one parser of a house's live state hash (store_state.h). */
#include "store_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

long long gp_reply_ll(const redisReply *v) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 20)
        return -1;
    char buf[24];
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char *e;
    long long x = strtoll(buf, &e, 10);
    return *e ? -1 : x;
}

double gp_reply_num(const redisReply *v) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 30)
        return -1;
    char buf[32];
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char *e;
    double x = strtod(buf, &e);
    return *e || !isfinite(x) ? -1 : x;
}

void gp_reply_copy(char *dst, size_t cap, const redisReply *v) {
    size_t n = v->len < cap - 1 ? v->len : cap - 1;
    memcpy(dst, v->str, n);
    dst[n] = '\0';
    /* Values come from Redis, written by anyone: keep control bytes off the terminal. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = '?';
    if (v->len > cap - 1 && cap > 4)
        memcpy(dst + cap - 4, "...", 4);
}

void gp_state_init(gp_state *s) {
    memset(s, 0, sizeof *s);
    s->since_ms = s->last_seen_ms = s->epoch = -1;
    s->req_total = s->err_total = s->bytes_in = s->bytes_out = s->ts_ms = -1;
    s->rtt_ms = s->loss_pct = -1;
}

static int is(const redisReply *k, const char *name) {
    return k->len == strlen(name) && memcmp(k->str, name, k->len) == 0;
}

void gp_state_parse(gp_state *s, const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    s->connected = 1;
    static const struct {
        const char *field;
        size_t off;
    } lls[] = {{GP_STATE_SINCE, offsetof(gp_state, since_ms)},
               {GP_STATE_LAST_SEEN, offsetof(gp_state, last_seen_ms)},
               {GP_STATE_EPOCH, offsetof(gp_state, epoch)},
               {GP_STATE_REQ_TOTAL, offsetof(gp_state, req_total)},
               {GP_STATE_ERR_TOTAL, offsetof(gp_state, err_total)},
               {GP_STATE_BYTES_IN, offsetof(gp_state, bytes_in)},
               {GP_STATE_BYTES_OUT, offsetof(gp_state, bytes_out)},
               {GP_STATE_TS, offsetof(gp_state, ts_ms)}};
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (is(k, GP_STATE_BRIDGE))
            gp_reply_copy(s->bridge, sizeof s->bridge, v);
        else if (is(k, GP_STATE_TRANSPORT))
            gp_reply_copy(s->transport, sizeof s->transport, v);
        else if (is(k, GP_STATE_ADDR))
            gp_reply_copy(s->addr, sizeof s->addr, v);
        else if (is(k, GP_STATE_RTT))
            s->rtt_ms = gp_reply_num(v);
        else if (is(k, GP_STATE_LOSS))
            s->loss_pct = gp_reply_num(v);
        else
            for (size_t j = 0; j < sizeof lls / sizeof lls[0]; j++)
                if (is(k, lls[j].field))
                    *(long long *)((char *)s + lls[j].off) = gp_reply_ll(v);
    }
}
