/* htable.c — the table of held houses and the decisions on it (see htable.h). Pure. */
#include "htable.h"
#include "list.h"

#include <stdlib.h>
#include <string.h>

static size_t hash(const char *s) {
    return (size_t)gp_fnv1a(s);
}

static int grow(br_htable *t) {
    size_t n = t->size ? t->size * 2 : 1024;
    br_conn **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->size; i++) {
        for (br_conn *c = t->b[i], *next; c; c = next) {
            next = c->hnext;
            size_t k = hash(c->house) & (n - 1);
            c->hnext = b[k];
            b[k] = c;
        }
    }
    free(t->b);
    t->b = b;
    t->size = n;
    return 0;
}

br_conn *br_htable_find(const br_htable *t, const char *house) {
    if (!t->size)
        return NULL;
    for (br_conn *c = t->b[hash(house) & (t->size - 1)]; c; c = c->hnext)
        if (strcmp(c->house, house) == 0)
            return c;
    return NULL;
}

int br_htable_insert(br_htable *t, br_conn *c) {
    if (t->n + 1 > t->size && grow(t) != 0)
        return -1;
    size_t k = hash(c->house) & (t->size - 1);
    c->hnext = t->b[k];
    t->b[k] = c;
    c->in_table = 1;
    t->n++;
    return 0;
}

void br_htable_remove(br_htable *t, br_conn *c) {
    if (!c->in_table)
        return;
    GP_CHAIN_REMOVE(t->b[hash(c->house) & (t->size - 1)], c, hnext);
    c->hnext = NULL;
    c->in_table = 0;
    t->n--;
}

void br_htable_free(br_htable *t) {
    free(t->b);
    t->b = NULL;
    t->size = 0;
}

/* "<word> <house>", a message on one of our channels, into buf: the house, or NULL when the
 * message is not of that shape. */
static const char *split_house(const char *msg, size_t mlen, char *buf, size_t cap) {
    if (mlen >= cap)
        return NULL;
    memcpy(buf, msg, mlen);
    buf[mlen] = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp)
        return NULL;
    *sp = '\0';
    return sp + 1;
}

br_conn *br_htable_fence_target(const br_htable *t, const char *msg, size_t mlen) {
    char buf[GP_MAX_HOUSE_ID + 32];
    const char *house = split_house(msg, mlen, buf, sizeof buf);
    br_conn *c = house ? br_htable_find(t, house) : NULL;
    return c && c->epoch < strtoull(buf, NULL, 10) ? c : NULL;
}

br_conn *br_htable_ctl_target(const br_htable *t, const char *msg, size_t mlen, int *disable) {
    char buf[GP_MAX_HOUSE_ID + 16];
    const char *house = split_house(msg, mlen, buf, sizeof buf);
    *disable = house && strcmp(buf, "disable") == 0;
    int remove = house && strcmp(buf, "remove") == 0;
    return *disable || remove ? br_htable_find(t, house) : NULL;
}
