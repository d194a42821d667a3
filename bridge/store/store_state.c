/* store_state.c — the one parser of a house's live state hash (store_state.h). */
#include "store_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* v's bytes as a C string in buf[cap] (v a non-empty string shorter than cap), or NULL. */
static const char *reply_text(const redisReply *v, char *buf, size_t cap) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len >= cap)
        return NULL;
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    return buf;
}

long long gp_reply_ll(const redisReply *v) {
    char buf[21], *e;
    if (!reply_text(v, buf, sizeof buf))
        return -1;
    long long x = strtoll(buf, &e, 10);
    return *e ? -1 : x;
}

double gp_reply_num(const redisReply *v) {
    char buf[31], *e;
    if (!reply_text(v, buf, sizeof buf))
        return -1;
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
    s->fec_repaired = s->tun_pkts_in = s->tun_pkts_out = s->tun_bytes_in = s->tun_bytes_out =
        s->tun_drops = -1;
}

const char *gp_house_state(int disabled, const gp_state *st) {
    return disabled ? GP_HOUSE_DISABLED_STATE : st->connected ? GP_HOUSE_ONLINE : GP_HOUSE_OFFLINE;
}

int gp_reply_is(const redisReply *k, const char *name) {
    return k->type == REDIS_REPLY_STRING && k->len == strlen(name) &&
           memcmp(k->str, name, k->len) == 0;
}

static void read_field(void *dst, const gp_hash_field *f, const redisReply *v) {
    char *at = (char *)dst + f->off;
    if (f->kind == GP_HF_LL)
        *(long long *)at = gp_reply_ll(v);
    else if (f->kind == GP_HF_NUM)
        *(double *)at = gp_reply_num(v);
    else
        gp_reply_copy(at, f->cap, v);
}

void gp_hash_parse(void *dst, const gp_hash_field *fields, size_t n, const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        for (size_t j = 0; j < n; j++)
            if (gp_reply_is(k, fields[j].name)) {
                read_field(dst, &fields[j], v);
                break;
            }
    }
}

void gp_state_parse(gp_state *s, const redisReply *r) {
    static const gp_hash_field fields[] = {
        GP_HF_STR_OF(gp_state, GP_STATE_BRIDGE, bridge),
        GP_HF_STR_OF(gp_state, GP_STATE_TRANSPORT, transport),
        GP_HF_STR_OF(gp_state, GP_STATE_ADDR, addr),
        GP_HF_NUM_OF(gp_state, GP_STATE_RTT, rtt_ms),
        GP_HF_NUM_OF(gp_state, GP_STATE_LOSS, loss_pct),
        GP_HF_LL_OF(gp_state, GP_STATE_SINCE, since_ms),
        GP_HF_LL_OF(gp_state, GP_STATE_LAST_SEEN, last_seen_ms),
        GP_HF_LL_OF(gp_state, GP_STATE_EPOCH, epoch),
        GP_HF_LL_OF(gp_state, GP_STATE_REQ_TOTAL, req_total),
        GP_HF_LL_OF(gp_state, GP_STATE_ERR_TOTAL, err_total),
        GP_HF_LL_OF(gp_state, GP_STATE_BYTES_IN, bytes_in),
        GP_HF_LL_OF(gp_state, GP_STATE_BYTES_OUT, bytes_out),
        GP_HF_LL_OF(gp_state, GP_STATE_TS, ts_ms),
        GP_HF_LL_OF(gp_state, GP_STATE_FEC, fec_repaired),
        GP_HF_STR_OF(gp_state, GP_STATE_TUN_ADDR, tun_addr),
        GP_HF_LL_OF(gp_state, GP_STATE_TUN_PKTS_IN, tun_pkts_in),
        GP_HF_LL_OF(gp_state, GP_STATE_TUN_PKTS_OUT, tun_pkts_out),
        GP_HF_LL_OF(gp_state, GP_STATE_TUN_BYTES_IN, tun_bytes_in),
        GP_HF_LL_OF(gp_state, GP_STATE_TUN_BYTES_OUT, tun_bytes_out),
        GP_HF_LL_OF(gp_state, GP_STATE_TUN_DROPS, tun_drops),
    };
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    s->connected = 1;
    gp_hash_parse(s, fields, sizeof fields / sizeof fields[0], r);
}
