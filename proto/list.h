/* list.h — the intrusive linked lists of the tree, as macros over any struct and any field
 * names (in the manner of the BSD queue macros). Pure: no allocation.
 *
 * A doubly linked list is a head and a tail pointer; each element has a prev and a next
 * field (named by the caller: prev/next, older/newer, aprev/anext...). A queue is the same
 * with next only. */
#ifndef GP_LIST_H
#define GP_LIST_H

/* A queue (next only): appends e at the tail. */
#define GP_Q_APPEND(head, tail, e, next)                                                           \
    do {                                                                                           \
        (e)->next = NULL;                                                                          \
        if (tail)                                                                                  \
            (tail)->next = (e);                                                                    \
        else                                                                                       \
            (head) = (e);                                                                          \
        (tail) = (e);                                                                              \
    } while (0)

/* Appends e at the tail. */
#define GP_DL_APPEND(head, tail, e, prev, next)                                                    \
    do {                                                                                           \
        (e)->prev = (tail);                                                                        \
        GP_Q_APPEND(head, tail, e, next);                                                          \
    } while (0)

/* Inserts e before the head: appending to the list read backwards. */
#define GP_DL_PREPEND(head, tail, e, prev, next) GP_DL_APPEND(tail, head, e, next, prev)

/* Takes e out (its own prev and next are left as they were). */
#define GP_DL_UNLINK(head, tail, e, prev, next)                                                    \
    do {                                                                                           \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e)->prev;                                                           \
        else                                                                                       \
            (tail) = (e)->prev;                                                                    \
    } while (0)

#endif
