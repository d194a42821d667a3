/* tunbook.h — the values of the L3 tunnel's address book (proto/TUN.md, store_tun.h) as the
 * store reads and writes them: the pools recorded in <p>:tun (pool4, pool6), a house's index
 * there (h:<house>, i:<index>) and its addresses, and the routes a house may advertise (the
 * `tun_routes` field of its registry hash, GP_HOUSE_TUN_ROUTES: a comma-separated list of
 * canonical CIDR prefixes, gp_cidr_format's text), set by the operator (`ghostport house add
 * --tun-route`, `house tun --route`). For the CLI (registry.c, store_views.c), the bridge's JSON
 * API and the bridge. Pure: proto/ippkt.h does the addresses; values come from Redis, written
 * by anyone with access, and are checked. */
#ifndef GP_TUNBOOK_H
#define GP_TUNBOOK_H

#include "ippkt.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* The pools every bridge with --tun runs with, as the first of them recorded them. */
typedef struct gp_tun_pools {
    int has4, has6; /* that pool is recorded (bridges may run with one family only: '') */
    gp_cidr p4, p6;
} gp_tun_pools;

/* The values of pool4 and pool6 (NULL or nil: absent) into *p: 0; 1 when neither is recorded
 * (no bridge has started with --tun); -1 when one is not a prefix of its family (message in
 * err; *p then has no pool). */
int gp_tun_pools_parse(gp_tun_pools *p, const redisReply *v4, const redisReply *v6, char *err,
                       size_t errlen);
/* The value of an h:<house> field (or `next`) as an index: 1 with *idx, 0 when absent or not a
 * decimal number that fits 64 bits. */
int gp_tun_index_parse(const redisReply *v, uint64_t *idx);
/* Index idx's addresses: the idx-th host of each pool (gp_pool_addr); family 0 where there is
 * no such pool or it has no index idx. p NULL: none. */
void gp_tun_pool_addrs(const gp_tun_pools *p, uint64_t idx, gp_ip_addr *a4, gp_ip_addr *a6);

#define GP_TUN_ROUTES_MAX 64 /* routes a house may be allowed */

/* Adds the text s (one prefix, or several separated by commas; spaces around each ignored) to
 * r[0..*n): each parsed with gp_cidr_parse, so kept canonical, a duplicate added once. 0, or -1
 * with a message in err (gp_cidr_parse's, an empty prefix, or more than GP_TUN_ROUTES_MAX);
 * *n then says how many were added before the one at fault. */
int gp_tun_routes_add(gp_cidr *r, size_t *n, const char *s, char *err, size_t errlen);

/* The field as stored, s[0..len) (anyone with access may have written it): the prefixes that
 * parse, de-duplicated, at most max of them, into r; returns how many. *skipped (may be NULL)
 * gets how many pieces were left out (not a prefix, or past max). */
size_t gp_tun_routes_parse(const char *s, size_t len, gp_cidr *r, size_t max, size_t *skipped);

/* A prefix's claim item for GP_TUN_CLAIM_LUA, "BITS=CIDR" (BITS: '4' or '6', ':', then its len
 * bits as '0'/'1'), into out (GP_TUN_CLAIM_ITEM_MAX bytes). Returns its length. */
#define GP_TUN_CLAIM_ITEM_MAX (2 + 128 + 1 + GP_CIDR_STRLEN)
size_t gp_tun_claim_item(const gp_cidr *c, char *out);

/* Their text: gp_cidr_list_format (proto/ippkt.h), "," between two as the field stores it
 * (stored only when it fits GP_L3_LIST_MAX + 1 bytes: proto/frame.h's limit for an L3 list). */

#endif
