/* buf.h — the one growable buffer of the tree. Pure: memory only.
 *
 * gp_buf builds bytes or text: appends double its room as needed, the content is always
 * followed by a NUL (so text can be used as a C string), and a failed allocation sets oom
 * and drops that append and every later one (so a builder checks once, at the end).
 * gp_grow is the same growth for an array a struct already holds as pointer + capacity. */
#ifndef GP_BUF_H
#define GP_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct gp_buf {
    char *p; /* NULL until the first append; then NUL-terminated at len */
    size_t len, cap;
    int oom; /* an append failed: the content is incomplete */
} gp_buf;

/* Room for n more bytes (and the NUL). 0, or -1 (and oom) when out of memory. */
int gp_buf_reserve(gp_buf *b, size_t n);
int gp_buf_add(gp_buf *b, const void *data, size_t n); /* 0 or -1 */
int gp_buf_puts(gp_buf *b, const char *s);
int gp_buf_printf(gp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gp_buf_vprintf(gp_buf *b, const char *fmt, va_list ap);
/* Hands the bytes over (malloc'd, NUL-terminated; *len their length, len may be NULL) and
 * empties b. NULL when oom (b is freed) or nothing was ever added and allocation fails. */
char *gp_buf_take(gp_buf *b, size_t *len);
void gp_buf_free(gp_buf *b); /* back to empty; NULL ok */

/* Makes *pp (a pointer to an array of esz-byte elements with *cap of them) hold at least
 * need elements: the room doubles from max(*cap, first). 0, or -1 when out of memory or
 * the size overflows (*pp and *cap unchanged). pp is the address of any object pointer. */
int gp_grow(void *pp, size_t *cap, size_t need, size_t first, size_t esz);

#endif
