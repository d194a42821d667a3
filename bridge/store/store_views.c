/* store_views.c — the pure parsers of what the CLI and `top` read back from Redis besides the
 * live state (store_state.c): a house's registry hash, a bridge's stats hash and the entries
 * of a house's recent list (registry.h). No I/O: registry.c does the reading; fuzzed by
 * tests/fuzz/fuzz_registry.c. */
#include "registry.h"
#include "store_bridge.h"

#include <jansson.h>
#include <string.h>

void gp_reg_house_init(gp_reg_house *h, const char *id, size_t idlen) {
    memset(h, 0, sizeof *h);
    if (idlen > GP_MAX_HOUSE_ID)
        idlen = GP_MAX_HOUSE_ID;
    memcpy(h->id, id, idlen);
    h->id[idlen] = '\0';
    h->created_ms = -1;
    h->last_seen_ms = -1;
    gp_state_init(&h->st);
}

const char *gp_reg_house_state(const gp_reg_house *h) {
    return gp_house_state(h->disabled, &h->st);
}

long long gp_reg_offline_since(const gp_reg_house *h) {
    return h->st.connected ? -1 : h->last_seen_ms;
}

/* The HMGET reply of HOUSE_FIELDS, see registry.h. */
void gp_reg_house_parse(gp_reg_house *h, const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != GP_REG_NHOUSE_FIELDS)
        return;
    for (size_t i = 0; i < GP_REG_NHOUSE_FIELDS; i++)
        h->registered |= r->element[i]->type == REDIS_REPLY_STRING;
    const redisReply *labels = r->element[0], *created = r->element[1], *dis = r->element[2];
    const redisReply *routes = r->element[3], *seen = r->element[4], *lb = r->element[5];
    if (labels->type == REDIS_REPLY_STRING)
        gp_reply_copy(h->labels, sizeof h->labels, labels);
    if (created->type == REDIS_REPLY_STRING)
        h->created_ms = gp_reply_ll(created);
    h->disabled = dis->type == REDIS_REPLY_STRING && dis->len == 1 && dis->str[0] == '1';
    h->ntun_routes =
        routes->type == REDIS_REPLY_STRING
            ? gp_tun_routes_parse(routes->str, routes->len, h->tun_routes, GP_TUN_ROUTES_MAX, NULL)
            : 0;
    h->last_seen_ms = gp_reply_ll(seen);
    if (lb->type == REDIS_REPLY_STRING)
        gp_reply_copy(h->last_bridge, sizeof h->last_bridge, lb);
}

const gp_hash_field gp_reg_bstats_fields[] = {
    GP_HF_STR_OF(gp_reg_bstats, GP_BSTATS_ID, id),
    GP_HF_STR_OF(gp_reg_bstats, GP_BSTATS_HOST, host),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_PID, pid),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_SINCE, since_ms),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_TS, ts_ms),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_HOUSES, houses),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_REQ_TOTAL, req_total),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_ERR_TOTAL, err_total),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_BYTES_IN, bytes_in),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_BYTES_OUT, bytes_out),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_CONNECTS, connects_total),
    GP_HF_LL_OF(gp_reg_bstats, GP_BSTATS_AUTH_FAILURES, auth_failures_total),
    GP_HF_NUM_OF(gp_reg_bstats, GP_BSTATS_REDIS_RTT, redis_rtt_ms),
};
const size_t gp_reg_bstats_nfields = sizeof gp_reg_bstats_fields / sizeof gp_reg_bstats_fields[0];

void gp_reg_bstats_parse(gp_reg_bstats *b, const redisReply *r) {
    gp_hash_parse(b, gp_reg_bstats_fields, gp_reg_bstats_nfields, r);
}

static void jstr_copy(char *dst, size_t cap, const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    redisReply v = {
        .type = REDIS_REPLY_STRING, .str = (char *)(s ? s : ""), .len = s ? strlen(s) : 0};
    gp_reply_copy(dst, cap, &v);
}

static long long json_ll(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    return -1;
}

/* One entry of <p>:{h}:recent (JSON written by the bridge's ack script) into *q: 1, or 0 when
 * it is not one (skipped: the list is anyone's to write). */
int gp_reg_recent_parse(gp_reg_recent_req *q, const redisReply *e) {
    if (e->type != REDIS_REPLY_STRING)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(e->str, e->len, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    memset(q, 0, sizeof *q);
    q->ts_ms = json_ll(o, "ts_ms");
    q->status = (int)json_ll(o, "status");
    q->ms = json_ll(o, "ms");
    jstr_copy(q->id, sizeof q->id, o, "id");
    jstr_copy(q->method, sizeof q->method, o, "method");
    jstr_copy(q->path, sizeof q->path, o, "path");
    jstr_copy(q->error, sizeof q->error, o, "error");
    json_decref(o);
    return 1;
}
