/* tunroutes.h — the routes a house may advertise through the L3 tunnel (proto/TUN.md): the
 * `tun_routes` field of its registry hash (store_tun.h, GP_HOUSE_TUN_ROUTES), a comma-separated
 * list of canonical CIDR prefixes (gp_cidr_format's text), set by the operator (`ghostport house
 * add --tun-route`, `house tun --route`). Parsed and written here for the CLI (registry.c,
 * store_views.c), the bridge's JSON API and the bridge. Pure: proto/ippkt.h does the prefixes. */
#ifndef GP_TUNROUTES_H
#define GP_TUNROUTES_H

#include "ippkt.h"

#include <stddef.h>

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

/* r[0..n) as the field's text ("10.1.2.0/24,fd00::/64"; "" for none) into out[cap]: its
 * length, or -1 when it does not fit (cap is at most GP_L3_LIST_MAX + 1: proto/frame.h's limit
 * for the list a bridge sends). sep is put between two prefixes ("," for the field, ", " for
 * people). */
int gp_tun_routes_format(const gp_cidr *r, size_t n, const char *sep, char *out, size_t cap);

#endif
