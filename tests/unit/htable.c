/* htable.c — the bridge's table of held houses (bridge/daemon/htable.c): one live connection
 * per house id through growth and removal, and the decisions taken on it when another
 * bridge claims a house (fence channel) or an admin disables or removes one (<p>:ctl). Until
 * now only whole-system tests (it_fault, it_admin) reached this code. */
#include "../../bridge/daemon/htable.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static br_conn *mk(const char *house, uint64_t epoch) {
    br_conn *c = calloc(1, sizeof *c);
    cr_assert(c);
    snprintf(c->house, sizeof c->house, "%s", house);
    c->epoch = epoch;
    return c;
}

Test(htable, insert_find_remove) {
    br_htable t = {0};
    cr_expect_null(br_htable_find(&t, "h1"), "an empty table finds nothing");
    br_conn *a = mk("h1", 1), *b = mk("h2", 1);
    cr_assert_eq(br_htable_insert(&t, a), 0);
    cr_assert_eq(br_htable_insert(&t, b), 0);
    cr_expect_eq(t.n, 2);
    cr_expect(a->in_table && b->in_table);
    cr_expect_eq(br_htable_find(&t, "h1"), a);
    cr_expect_eq(br_htable_find(&t, "h2"), b);
    cr_expect_null(br_htable_find(&t, "h3"));
    br_htable_remove(&t, a);
    cr_expect_eq(t.n, 1);
    cr_expect_not(a->in_table);
    cr_expect_null(br_htable_find(&t, "h1"));
    cr_expect_eq(br_htable_find(&t, "h2"), b);
    br_htable_remove(&t, a); /* twice: nothing happens */
    cr_expect_eq(t.n, 1);
    br_htable_free(&t);
    free(a);
    free(b);
}

/* Thousands of houses: the table grows past its first size and every house stays findable,
 * also after every other one left (chains are unlinked in the middle, not only at the head). */
Test(htable, grows_and_keeps_every_house) {
    enum { N = 5000 };
    br_htable t = {0};
    br_conn **cs = calloc(N, sizeof *cs);
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "house-%d", i);
        cs[i] = mk(id, (uint64_t)i + 1);
        cr_assert_eq(br_htable_insert(&t, cs[i]), 0);
    }
    cr_expect_eq(t.n, N);
    cr_expect_geq(t.size, (size_t)N, "the table grew with the houses");
    for (int i = 0; i < N; i += 2)
        br_htable_remove(&t, cs[i]);
    cr_expect_eq(t.n, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "house-%d", i);
        if (i % 2)
            cr_expect_eq(br_htable_find(&t, id), cs[i], "%s is held", id);
        else
            cr_expect_null(br_htable_find(&t, id), "%s left", id);
    }
    br_htable_free(&t);
    cr_expect_eq(t.size, 0);
    for (int i = 0; i < N; i++)
        free(cs[i]);
    free(cs);
}

/* "<epoch> <house>" from another bridge's claim: only an older holder lets go. */
Test(htable, fence_message_drops_only_an_older_holder) {
    br_htable t = {0};
    br_conn *c = mk("h1", 7);
    cr_assert_eq(br_htable_insert(&t, c), 0);
    const char *newer = "8 h1", *same = "7 h1", *older = "6 h1";
    cr_expect_eq(br_htable_fence_target(&t, newer, strlen(newer)), c);
    cr_expect_null(br_htable_fence_target(&t, same, strlen(same)), "our own claim's epoch");
    cr_expect_null(br_htable_fence_target(&t, older, strlen(older)));
    const char *other = "99 h2", *shape = "99", *empty = "";
    cr_expect_null(br_htable_fence_target(&t, other, strlen(other)), "a house not held");
    cr_expect_null(br_htable_fence_target(&t, shape, strlen(shape)), "no house in it");
    cr_expect_null(br_htable_fence_target(&t, empty, 0));
    /* Not NUL-terminated where it ends: only mlen bytes count. */
    const char *longer = "8 h1x";
    cr_expect_eq(br_htable_fence_target(&t, longer, 4), c);
    cr_expect_null(br_htable_fence_target(&t, longer, 5), "h1x is not held");
    char big[GP_MAX_HOUSE_ID + 64];
    memset(big, 'a', sizeof big);
    big[0] = '9';
    big[1] = ' ';
    cr_expect_null(br_htable_fence_target(&t, big, sizeof big), "oversized: ignored");
    br_htable_free(&t);
    free(c);
}

/* "disable <house>" / "remove <house>" on <p>:ctl: whoever holds the house closes it. */
Test(htable, ctl_message_names_the_held_house) {
    br_htable t = {0};
    br_conn *c = mk("h1", 3);
    cr_assert_eq(br_htable_insert(&t, c), 0);
    int disable = -1;
    const char *d = "disable h1", *r = "remove h1", *e = "enable h1";
    cr_expect_eq(br_htable_ctl_target(&t, d, strlen(d), &disable), c);
    cr_expect_eq(disable, 1);
    cr_expect_eq(br_htable_ctl_target(&t, r, strlen(r), &disable), c);
    cr_expect_eq(disable, 0);
    cr_expect_null(br_htable_ctl_target(&t, e, strlen(e), &disable), "not a ctl word");
    const char *other = "remove h2", *bare = "remove";
    cr_expect_null(br_htable_ctl_target(&t, other, strlen(other), &disable));
    cr_expect_null(br_htable_ctl_target(&t, bare, strlen(bare), &disable));
    br_htable_free(&t);
    free(c);
}
