/* gp.c — error names and borrowed byte strings shared by the whole protocol core. Pure: no
 * I/O, no allocation. */
#include "gp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *gp_strerror(int err) {
    switch (err) {
    case GP_OK:
        return "ok";
    case GP_ERR_NOMEM:
        return "out of memory";
    case GP_ERR_TRUNCATED:
        return "truncated input";
    case GP_ERR_TOO_LARGE:
        return "length over limit";
    case GP_ERR_MALFORMED:
        return "malformed input";
    case GP_ERR_VERSION:
        return "unsupported protocol version";
    case GP_ERR_BUFFER:
        return "output buffer too small";
    case GP_ERR_AUTH:
        return "authentication failed";
    case GP_ERR_STATE:
        return "invalid state";
    case GP_ERR_COMPRESS:
        return "compression error";
    case GP_ERR_INVALID:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

gp_str gp_str_c(const char *s) {
    return s ? (gp_str){(const uint8_t *)s, strlen(s)} : (gp_str){(const uint8_t *)"", 0};
}

int gp_header_split(const char *p, size_t n, gp_str *name, gp_str *value) {
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return -1;
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *name = (gp_str){(const uint8_t *)p, (size_t)(colon - p)};
    *value = (gp_str){(const uint8_t *)v, (size_t)(end - v)};
    return 0;
}

uint64_t gp_fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

int gp_hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gp_name_ok(gp_str s, size_t max) {
    if (s.len < 1 || s.len > max)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int gp_str_eq(gp_str a, const char *c) {
    gp_str b = gp_str_c(c);
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

void gp_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void gp_free_all(void *const *ps, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(ps[i]);
}
