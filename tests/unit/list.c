/* list.c — the intrusive list macros (proto/list.h) on a struct with its own field names. */
#include "list.h"

#include <criterion/criterion.h>
#include <stddef.h>

typedef struct item {
    int v;
    struct item *older, *newer, *qnext;
} item;

static void check(item *head, item *tail, const int *want, size_t n) {
    size_t i = 0;
    item *last = NULL;
    for (item *x = head; x; last = x, x = x->newer, i++) {
        cr_assert_lt(i, n);
        cr_assert_eq(x->v, want[i], "at %zu", i);
        cr_assert_eq(x->older, last);
    }
    cr_assert_eq(i, n);
    cr_assert_eq(tail, last);
}

Test(list, append_prepend_unlink) {
    item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
    item *head = NULL, *tail = NULL;
    GP_LIST_APPEND(head, tail, &it[1], older, newer);
    GP_LIST_APPEND(head, tail, &it[2], older, newer);
    GP_LIST_PREPEND(head, tail, &it[0], older, newer);
    GP_LIST_APPEND(head, tail, &it[3], older, newer);
    check(head, tail, (int[]){0, 1, 2, 3}, 4);
    GP_LIST_UNLINK(head, tail, &it[2], older, newer); /* middle */
    check(head, tail, (int[]){0, 1, 3}, 3);
    GP_LIST_UNLINK(head, tail, &it[0], older, newer); /* head */
    check(head, tail, (int[]){1, 3}, 2);
    GP_LIST_UNLINK(head, tail, &it[3], older, newer); /* tail */
    check(head, tail, (int[]){1}, 1);
    GP_LIST_UNLINK(head, tail, &it[1], older, newer); /* the last one */
    cr_assert_null(head);
    cr_assert_null(tail);
    GP_LIST_PREPEND(head, tail, &it[2], older, newer); /* into an empty list */
    check(head, tail, (int[]){2}, 1);
}

Test(list, queue_append) {
    item it[3] = {{.v = 0}, {.v = 1}, {.v = 2}};
    item *head = NULL, *tail = NULL;
    for (int i = 0; i < 3; i++)
        GP_SLIST_APPEND(head, tail, &it[i], qnext);
    int i = 0;
    for (item *x = head; x; x = x->qnext)
        cr_assert_eq(x->v, i++);
    cr_assert_eq(i, 3);
    cr_assert_eq(tail, &it[2]);
}

/* The queue's values in order, as a number (1, 2, 3 -> 123; empty -> 0), its tail checked. */
static int queue_digits(item *head, item *tail) {
    int d = 0;
    item *last = NULL;
    for (item *x = head; x; x = x->qnext)
        d = d * 10 + x->v, last = x;
    cr_assert_eq(tail, last);
    return d;
}

Test(list, queue_remove_anywhere) {
    item it[5] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}, {.v = 5}};
    item *head = NULL, *tail = NULL;
    for (int i = 0; i < 4; i++)
        GP_SLIST_APPEND(head, tail, &it[i], qnext);
    GP_SLIST_REMOVE(head, tail, &it[4], qnext); /* not in it: nothing happens */
    cr_assert_eq(queue_digits(head, tail), 1234);
    GP_SLIST_REMOVE(head, tail, &it[2], qnext); /* middle */
    cr_assert_eq(queue_digits(head, tail), 124);
    GP_SLIST_REMOVE(head, tail, &it[3], qnext); /* last: the tail moves back */
    cr_assert_eq(queue_digits(head, tail), 12);
    GP_SLIST_REMOVE(head, tail, &it[0], qnext); /* first */
    cr_assert_eq(queue_digits(head, tail), 2);
    GP_SLIST_REMOVE(head, tail, &it[1], qnext); /* the only one */
    cr_assert_null(head);
    cr_assert_null(tail);
    GP_SLIST_APPEND(head, tail, &it[4], qnext); /* usable again */
    cr_assert_eq(queue_digits(head, tail), 5);
}

Test(list, chain_remove_anywhere) {
    item it[4] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}};
    item *head = NULL;
    for (int i = 2; i >= 0; i--) /* pushed at the head by hand, as the hash buckets do */
        it[i].qnext = head, head = &it[i];
    GP_CHAIN_REMOVE(head, &it[3], qnext); /* not in it: nothing happens */
    item *tail = &it[2];
    cr_assert_eq(queue_digits(head, tail), 123);
    GP_CHAIN_REMOVE(head, &it[1], qnext); /* middle */
    cr_assert_eq(queue_digits(head, tail), 13);
    GP_CHAIN_REMOVE(head, &it[0], qnext); /* head */
    cr_assert_eq(queue_digits(head, tail), 3);
    GP_CHAIN_REMOVE(head, &it[2], qnext); /* the only one */
    cr_assert_null(head);
}
