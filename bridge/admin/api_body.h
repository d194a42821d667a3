/* api_body.h — the JSON API's bodies (bridge/admin/ADMIN.md): requests parsed and checked, houses
 * read from their Redis hashes and written as JSON. Pure: no I/O; fuzzed by
 * tests/fuzz/fuzz_api_body.c and tests/fuzz/fuzz_api_house.c. */
#ifndef BR_API_BODY_H
#define BR_API_BODY_H

#include "../store/store_state.h"
#include "../store/tunbook.h"
#include "auth.h"
#include "buf.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

#define BR_API_MAX_LABELS 64     /* labels per house */
#define BR_API_MAX_LABEL_KEY 64  /* bytes of a label's name */
#define BR_API_MAX_LABEL_LEN 256 /* bytes of a label's value */

/* POST /api/houses: {"id": "...", "labels": {"k": "v", ...}} (labels optional, null or an
 * object of at most BR_API_MAX_LABELS strings). 0 with the id in id[] and the labels as
 * compact JSON with sorted keys in *labels (malloc'd; "{}" when none); or -1 with *why, a
 * message for the client (static). */
int br_api_parse_add(const void *body, size_t len, char id[GP_MAX_HOUSE_ID + 1], char **labels,
                     const char **why);

/* One house as the API shows it (bridge/admin/ADMIN.md), from its two hashes; written as JSON text
 * directly (at 10,000 houses a jansson object per house was most of an overview's cost). */
typedef struct br_house_view {
    char id[GP_MAX_HOUSE_ID + 1];
    int registered, disabled;
    char *labels;      /* compact JSON object; NULL: {} */
    double created_ms; /* NAN: null */
    gp_state st;       /* the live state (store_state.h): -1 and "" are null */
    /* When a bridge last heard from it, and which (the house hash's last_seen, last_bridge:
     * store_house.h); NAN and "": none recorded. */
    double last_seen_ms;
    char last_bridge[128];
    char *tun_routes; /* the L3 routes it may advertise, canonical, comma-separated; NULL: none */
    /* Its L3 index (<p>:tun, store_tun.h): tun_has 1 known, 0 none, -1 unknown (not read: the
     * bridge's Redis user may not); its addresses in each pool (family 0: none). */
    int tun_has;
    uint64_t tun_index;
    gp_ip_addr tun4, tun6;
} br_house_view;

/* A growing JSON text (proto/buf.h). */
typedef gp_buf br_sbuf;

void br_house_view_init(br_house_view *h, const char *id); /* nothing known yet */
void br_house_view_clear(br_house_view *h);                /* frees its strings */
/* HGETALL <p>:{h}:house (registered, labels, created, disabled, last_seen, last_bridge) /
 * <p>:{h}:state (the one parser of the live state, gp_state_parse) into h; anything else in them is
 * ignored. */
void br_house_view_parse_house(br_house_view *h, const redisReply *r);
void br_house_view_parse_state(br_house_view *h, const redisReply *r);
/* The reply of HMGET <p>:tun pool4 pool6 h:<id>... for houses h[0..n) (in that order): their
 * L3 indexes and addresses. Any other reply (an error, a short array) leaves them unknown. */
void br_house_view_parse_tun(br_house_view *h, size_t n, const redisReply *r);
/* h's fields as JSON, every one of ADMIN.md (null until known), without the braces. Strings
 * Redis held are escaped, control and non-ASCII bytes written as '?'. */
void br_house_view_json(br_sbuf *b, const br_house_view *h);

/* Appends to b (b->oom once memory ran out: the text is then incomplete). */
#define br_sb_put(b, s, n) ((void)gp_buf_add((b), (s), (n)))
#define br_sb_puts(b, s) ((void)gp_buf_puts((b), (s)))

/* A number Redis holds as text; NAN when it is not one. */
double br_redis_num(const redisReply *v);

#endif
