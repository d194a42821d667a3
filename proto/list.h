/* list.h — intrusive doubly-linked lists, as the request, call and cache queues of the
 * protocol core, the house and the store's Redis client keep them. The element carries its two
 * links, named by the caller (prev/next, older/newer); the owner keeps the ends. Macros, so
 * that one definition serves every element type (as BSD's <sys/queue.h> does); each argument
 * is an lvalue without side effects, and may be evaluated more than once.
 *
 * Four shapes: a list with both ends (first, last), appended at the last end; a list with a
 * head only, pushed at the head (removing takes the element's own links, so it is O(1) from
 * anywhere in either); a singly linked queue (GP_SLIST), appended at its last end and taken
 * from its first (or, walking, from anywhere); and a chain (GP_CHAIN: a hash bucket's, one
 * link, pushed at the head by hand), left by walking. */
#ifndef GP_LIST_H
#define GP_LIST_H

#include <stddef.h>

/* Both ends: e becomes the last element. */
#define GP_LIST_APPEND(first, last, e, prev, next)                                                 \
    do {                                                                                           \
        (e)->prev = (last);                                                                        \
        GP_SLIST_APPEND(first, last, e, next);                                                     \
    } while (0)

/* Both ends: e becomes the first element (appending to the list read backwards). */
#define GP_LIST_PREPEND(first, last, e, prev, next) GP_LIST_APPEND(last, first, e, next, prev)

/* Head only: e becomes the first element. */
#define GP_LIST_PUSH(head, e, prev, next)                                                          \
    do {                                                                                           \
        (e)->prev = NULL;                                                                          \
        (e)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (e);                                                                    \
        (head) = (e);                                                                              \
    } while (0)

/* Head only: e (in the list) leaves it; its own links are left as they were. */
#define GP_LIST_REMOVE(head, e, prev, next)                                                        \
    do {                                                                                           \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e)->prev;                                                           \
    } while (0)

/* Both ends: e (in the list) leaves it; its own links are left as they were. */
#define GP_LIST_UNLINK(first, last, e, prev, next)                                                 \
    do {                                                                                           \
        if (!(e)->next)                                                                            \
            (last) = (e)->prev;                                                                    \
        GP_LIST_REMOVE(first, e, prev, next);                                                      \
    } while (0)

/* Singly linked queues (first, last; one link, `next`): e joins at the last end. */
#define GP_SLIST_APPEND(first, last, e, next)                                                      \
    do {                                                                                           \
        (e)->next = NULL;                                                                          \
        if (last)                                                                                  \
            (last)->next = (e);                                                                    \
        else                                                                                       \
            (first) = (e);                                                                         \
        (last) = (e);                                                                              \
    } while (0)

/* Singly linked queues: the first element (there is one) leaves; its own link is left. */
#define GP_SLIST_SHIFT(first, last, next)                                                          \
    do {                                                                                           \
        (first) = (first)->next;                                                                   \
        if (!(first))                                                                              \
            (last) = NULL;                                                                         \
    } while (0)

/* Singly linked queues: e leaves from wherever it stands (a walk from the first end: O(n));
 * nothing happens when e is not in the queue. Its own link is left as it was. */
#define GP_SLIST_REMOVE(first, last, e, next)                                                      \
    do {                                                                                           \
        __typeof__(e) *gp_pp_ = &(first), gp_prev_ = NULL;                                         \
        while (*gp_pp_ && *gp_pp_ != (e)) {                                                        \
            gp_prev_ = *gp_pp_;                                                                    \
            gp_pp_ = &(*gp_pp_)->next;                                                             \
        }                                                                                          \
        if (*gp_pp_) {                                                                             \
            *gp_pp_ = (e)->next;                                                                   \
            if ((last) == (e))                                                                     \
                (last) = gp_prev_;                                                                 \
        }                                                                                          \
    } while (0)

/* Chains (a hash bucket: a head and one link): e leaves from wherever it stands (a walk from
 * the head: O(n)); nothing happens when e is not in the chain. Its own link is left as it was. */
#define GP_CHAIN_REMOVE(head, e, next)                                                             \
    do {                                                                                           \
        __typeof__(e) *gp_pp_ = &(head);                                                           \
        while (*gp_pp_ && *gp_pp_ != (e))                                                          \
            gp_pp_ = &(*gp_pp_)->next;                                                             \
        if (*gp_pp_)                                                                               \
            *gp_pp_ = (e)->next;                                                                   \
    } while (0)

#endif
