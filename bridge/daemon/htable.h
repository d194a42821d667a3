/* htable.h — the table of houses held by this bridge (htable.c): one LIVE connection per
 * house id, and the pure decisions taken on it when a message arrives on one of the bridge's
 * channels (another bridge claimed a house; an admin disabled or removed one). No I/O: house.c
 * acts on what these return. */
#ifndef BR_HTABLE_H
#define BR_HTABLE_H

#include "conn.h"

#include <stddef.h>

typedef struct br_htable {
    br_conn **b; /* buckets (a power of two), chained through br_conn.hnext */
    size_t size; /* buckets, 0: none yet */
    unsigned n;  /* connections in the table (houses held) */
} br_htable;

br_conn *br_htable_find(const br_htable *t, const char *house);
/* Adds c (c->house set, not yet in a table; c->in_table becomes 1). 0, or -1 out of memory. */
int br_htable_insert(br_htable *t, br_conn *c);
void br_htable_remove(br_htable *t, br_conn *c); /* no-op when c is not in the table */
void br_htable_free(br_htable *t);               /* the buckets, not the connections */

/* "<epoch> <house>" on our fence channel: the held connection that must let go (its epoch is
 * older than the claim's), or NULL. */
br_conn *br_htable_fence_target(const br_htable *t, const char *msg, size_t mlen);
/* "disable <house>" / "remove <house>" on <p>:ctl: the held connection to close, or NULL;
 * *disable tells which of the two. */
br_conn *br_htable_ctl_target(const br_htable *t, const char *msg, size_t mlen, int *disable);

#endif
