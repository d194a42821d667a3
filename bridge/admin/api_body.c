/* api_body.c — the JSON API's bodies: request bodies parsed with jansson and checked against
 * the registry's limits; houses read from their hashes and written as JSON text directly. Pure
 * (see api_body.h). */
#include "api_body.h"
#include "../store/store_house.h"
#include "../store/store_tun.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int br_api_parse_add(const void *body, size_t len, char id[GP_MAX_HOUSE_ID + 1], char **labels,
                     const char **why) {
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    *labels = NULL;
    if (!json_is_object(j)) {
        *why = j ? "the body must be a JSON object" : "malformed JSON";
        goto out;
    }
    json_t *jid = json_object_get(j, "id");
    const char *s = json_string_value(jid);
    /* json_string_length: an id with a NUL inside is not the id it would print as. */
    if (!s || strlen(s) != json_string_length(jid) || !gp_house_id_valid(gp_str_c(s))) {
        *why = "bad id: 1-64 of [A-Za-z0-9_.-]";
        goto out;
    }
    snprintf(id, GP_MAX_HOUSE_ID + 1, "%s", s);
    json_t *l = json_object_get(j, "labels");
    if (l && !json_is_null(l)) {
        const char *k;
        json_t *v;
        int ok = json_is_object(l) && json_object_size(l) <= BR_API_MAX_LABELS;
        json_object_foreach(l, k, v) {
            ok = ok && json_is_string(v) && strlen(k) > 0 && strlen(k) <= BR_API_MAX_LABEL_KEY &&
                 json_string_length(v) <= BR_API_MAX_LABEL_LEN;
        }
        if (!ok) {
            *why = "bad labels: an object of at most 64 strings";
            goto out;
        }
        *labels = json_dumps(l, JSON_COMPACT | JSON_SORT_KEYS);
    } else {
        *labels = strdup("{}");
    }
    rc = *labels ? 0 : -1;
    if (rc)
        *why = "out of memory";
out:
    json_decref(j);
    return rc;
}

void br_house_view_init(br_house_view *h, const char *id) {
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%s", id);
    h->created_ms = h->last_seen_ms = NAN;
    gp_state_init(&h->st);
}

void br_house_view_clear(br_house_view *h) {
    free(h->labels);
    free(h->tun_routes);
}

/* A number Redis holds as text, NAN when it is not one. */
double br_redis_num(const redisReply *v) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 30)
        return NAN;
    char buf[32];
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char *e;
    double d = strtod(buf, &e);
    return *e == '\0' && isfinite(d) ? d : NAN;
}

/* HGETALL <p>:{h}:house into h. */
void br_house_view_parse_house(br_house_view *h, const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    h->registered = 1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        if (gp_reply_is(k, GP_HOUSE_LABELS)) {
            if (v->len == 2 && memcmp(v->str, "{}", 2) == 0)
                continue; /* most houses: no parse */
            json_t *l = json_loadb(v->str, v->len, 0, NULL);
            free(h->labels);
            h->labels = json_is_object(l) ? json_dumps(l, JSON_COMPACT) : NULL;
            json_decref(l);
        } else if (gp_reply_is(k, GP_HOUSE_CREATED)) {
            h->created_ms = br_redis_num(v);
        } else if (gp_reply_is(k, GP_HOUSE_DISABLED)) {
            h->disabled = v->len == 1 && v->str[0] == '1';
        } else if (gp_reply_is(k, GP_HOUSE_LAST_SEEN)) {
            h->last_seen_ms = br_redis_num(v);
        } else if (gp_reply_is(k, GP_HOUSE_LAST_BRIDGE)) {
            gp_reply_copy(h->last_bridge, sizeof h->last_bridge, v);
        } else if (gp_reply_is(k, GP_HOUSE_TUN_ROUTES)) {
            /* What parses, canonical: the text is written into JSON as it is. */
            gp_cidr rt[GP_TUN_ROUTES_MAX];
            size_t n = gp_tun_routes_parse(v->str, v->len, rt, GP_TUN_ROUTES_MAX, NULL);
            size_t cap = (size_t)GP_TUN_ROUTES_MAX * GP_CIDR_STRLEN;
            char *t = n ? malloc(cap) : NULL;
            free(h->tun_routes);
            h->tun_routes = NULL;
            if (t && gp_cidr_list_format(rt, n, ",", t, cap) > 0) {
                h->tun_routes = t;
                t = NULL;
            }
            free(t);
        }
    }
}

void br_house_view_parse_tun(br_house_view *h, size_t n, const redisReply *r) {
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 + n;
    gp_tun_pools pools;
    char err[8];
    int pv = ok ? gp_tun_pools_parse(&pools, r->element[0], r->element[1], err, sizeof err) : -1;
    for (size_t i = 0; i < n; i++) {
        h[i].tun_has = ok ? gp_tun_index_parse(r->element[2 + i], &h[i].tun_index) : -1;
        gp_tun_pool_addrs(pv == 0 && h[i].tun_has == 1 ? &pools : NULL, h[i].tun_index, &h[i].tun4,
                          &h[i].tun6);
    }
}

/* HGETALL <p>:{h}:state into h (the live state: connected while it exists). */
void br_house_view_parse_state(br_house_view *h, const redisReply *r) {
    gp_state_parse(&h->st, r);
}

/* A JSON string of what Redis held: '"' and '\\' escaped, control and non-ASCII bytes as '?'
 * (ids, bridge ids and transports are ASCII; anything else was not written by us). */
static void sb_str(br_sbuf *b, const char *s) {
    if (!s) {
        br_sb_puts(b, "null");
        return;
    }
    br_sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            br_sb_put(b, e, 2);
        } else {
            char o = c < 0x20 || c >= 0x7f ? '?' : (char)c;
            br_sb_put(b, &o, 1);
        }
    }
    br_sb_put(b, "\"", 1);
}

static void sb_num(br_sbuf *b, double d) {
    char t[40];
    if (isnan(d))
        snprintf(t, sizeof t, "null");
    else if (d == floor(d) && fabs(d) < 9e15)
        snprintf(t, sizeof t, "%lld", (long long)d);
    else
        snprintf(t, sizeof t, "%.9g", d);
    br_sb_puts(b, t);
}

/* The house's fields, every one of bridge/admin/ADMIN.md (null until known), without the braces. */
void br_house_view_json(br_sbuf *b, const br_house_view *h) {
    const gp_state *st = &h->st;
    const struct {
        const char *key;
        double v;
    } nums[] = {{",\"since_ms\":", (double)st->since_ms},
                {",\"last_seen_ms\":", (double)st->last_seen_ms},
                {",\"rtt_ms\":", st->rtt_ms},
                {",\"loss_pct\":", st->loss_pct},
                {",\"req_total\":", (double)st->req_total},
                {",\"err_total\":", (double)st->err_total},
                {",\"bytes_in\":", (double)st->bytes_in},
                {",\"bytes_out\":", (double)st->bytes_out}};
    br_sb_puts(b, "\"id\":");
    sb_str(b, h->id);
    br_sb_puts(b, ",\"labels\":");
    br_sb_puts(b, h->labels ? h->labels : "{}");
    br_sb_puts(b, ",\"created_ms\":");
    sb_num(b, h->created_ms);
    br_sb_puts(b, h->disabled ? ",\"disabled\":true" : ",\"disabled\":false");
    br_sb_puts(b, st->connected ? ",\"connected\":true" : ",\"connected\":false");
    /* online / offline / disabled (store_state.h); while offline, since when and on which
     * bridge it was last (null: none recorded). */
    br_sb_puts(b, ",\"state\":");
    sb_str(b, gp_house_state(h->disabled, st));
    br_sb_puts(b, ",\"offline_since_ms\":");
    sb_num(b, st->connected ? NAN : h->last_seen_ms);
    br_sb_puts(b, ",\"last_bridge\":");
    sb_str(b, h->last_bridge[0] ? h->last_bridge : NULL);
    br_sb_puts(b, ",\"bridge\":");
    sb_str(b, st->connected && st->bridge[0] ? st->bridge : NULL);
    br_sb_puts(b, ",\"transport\":");
    sb_str(b, st->connected && st->transport[0] ? st->transport : NULL);
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        br_sb_puts(b, nums[i].key);
        sb_num(b, nums[i].v == -1 ? NAN : nums[i].v); /* -1: absent */
    }
    /* The L3 tunnel: index (null: none or unknown), addresses, routes (canonical prefixes, as
     * parsed: no character to escape). */
    char t[GP_IP_ADDR_STRLEN + 4];
    if (h->tun_has == 1)
        snprintf(t, sizeof t, "%llu", (unsigned long long)h->tun_index);
    br_sb_puts(b, ",\"tun_index\":");
    br_sb_puts(b, h->tun_has == 1 ? t : "null");
    br_sb_puts(b, ",\"tun_addr\":[");
    const gp_ip_addr *as[2] = {&h->tun4, &h->tun6};
    for (int i = 0, k = 0; i < 2; i++)
        if (as[i]->family) {
            br_sb_puts(b, k++ ? ",\"" : "\"");
            br_sb_puts(b, gp_ip_addr_format(as[i], t));
            br_sb_puts(b, "\"");
        }
    br_sb_puts(b, "],\"tun_routes\":[");
    for (const char *p = h->tun_routes; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        br_sb_puts(b, p == h->tun_routes ? "\"" : ",\"");
        br_sb_put(b, p, n);
        br_sb_puts(b, "\"");
        p = e ? e + 1 : p + n;
    }
    br_sb_puts(b, "]");
    /* Its live state's: the grant (tun_up: its bridge routes the addresses to it now), the
     * grant's counters (null without one) and the rudp session's FEC repairs. */
    br_sb_puts(b, st->connected && st->tun_addr[0] ? ",\"tun_up\":true" : ",\"tun_up\":false");
    const struct {
        const char *key;
        long long v;
    } tun[] = {{",\"tun_pkts_in\":", st->tun_pkts_in},   {",\"tun_pkts_out\":", st->tun_pkts_out},
               {",\"tun_bytes_in\":", st->tun_bytes_in}, {",\"tun_bytes_out\":", st->tun_bytes_out},
               {",\"tun_drops\":", st->tun_drops},       {",\"fec_repaired\":", st->fec_repaired}};
    for (size_t i = 0; i < sizeof tun / sizeof tun[0]; i++) {
        br_sb_puts(b, tun[i].key);
        sb_num(b, tun[i].v < 0 ? NAN : (double)tun[i].v); /* -1: absent */
    }
}
