/* buf.c — the growable buffer (see buf.h). Pure: memory only. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gp_grow(void *pp, size_t *cap, size_t need, size_t first, size_t esz) {
    if (need <= *cap)
        return 0;
    size_t n = *cap > first ? *cap : first ? first : 1;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return -1;
        n *= 2;
    }
    if (esz && n > SIZE_MAX / esz)
        return -1;
    void *old;
    memcpy(&old, pp, sizeof old);
    void *p = realloc(old, n * esz);
    if (!p)
        return -1;
    memcpy(pp, &p, sizeof p);
    *cap = n;
    return 0;
}

int gp_buf_reserve(gp_buf *b, size_t n) {
    if (b->oom)
        return -1;
    if (n > SIZE_MAX - b->len - 1 || gp_grow(&b->p, &b->cap, b->len + n + 1, 64, 1) != 0) {
        b->oom = 1;
        return -1;
    }
    return 0;
}

int gp_buf_add(gp_buf *b, const void *data, size_t n) {
    if (gp_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int gp_buf_puts(gp_buf *b, const char *s) {
    return gp_buf_add(b, s, strlen(s));
}

int gp_buf_vprintf(gp_buf *b, const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0 || gp_buf_reserve(b, (size_t)n) != 0) {
        b->oom = 1;
        return -1;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int gp_buf_printf(gp_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = gp_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *gp_buf_take(gp_buf *b, size_t *len) {
    if (!b->oom && !b->p)
        gp_buf_add(b, "", 0);
    if (b->oom) {
        gp_buf_free(b);
        return NULL;
    }
    char *p = b->p;
    if (len)
        *len = b->len;
    *b = (gp_buf){0};
    return p;
}

void gp_buf_free(gp_buf *b) {
    if (!b)
        return;
    free(b->p);
    *b = (gp_buf){0};
}
