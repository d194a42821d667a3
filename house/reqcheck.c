/* reqcheck.c — request checks before an upstream call (see reqcheck.h). Pure. */
#include "reqcheck.h"

#include <string.h>

/* '.' or its percent-encoding at p[0..n): the bytes it takes, else 0. */
static size_t dot_at(const char *p, size_t n) {
    if (n >= 1 && p[0] == '.')
        return 1;
    if (n >= 3 && p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E'))
        return 3;
    return 0;
}

/* 1 for ".", 2 for "..", in any spelling of their dots; 0 for any other segment. */
static int dot_segment(const char *s, size_t n) {
    size_t a = dot_at(s, n);
    if (!a)
        return 0;
    if (a == n)
        return 1;
    size_t b = dot_at(s + a, n - a);
    return b && a + b == n ? 2 : 0;
}

/* %XX at p (2 bytes after '%' available) naming byte `c`, hex in either case. */
static int pct_is(const char *p, unsigned char c) {
    static const char hex[] = "0123456789abcdef";
    char hi = hex[c >> 4], lo = hex[c & 15];
    return (p[1] | 0x20) == hi && (p[2] | 0x20) == lo;
}

int hs_path_clean(const char *path, size_t len, char *out, size_t cap, const char **why) {
    if (len == 0 || path[0] != '/') {
        *why = "path must start with '/'";
        return -1;
    }
    if (cap < len + 1) {
        *why = "path too long";
        return -1;
    }
    size_t plen = 0; /* the path part: up to the query or fragment */
    while (plen < len && path[plen] != '?' && path[plen] != '#')
        plen++;
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '\\' ||
            (path[i] == '%' && i + 2 < plen &&
             (pct_is(path + i, '/') || pct_is(path + i, '\\') || pct_is(path + i, 0)))) {
            *why = "path holds a backslash or an encoded '/', '\\' or NUL (%2f, %5c, %00)";
            return -1;
        }
    }
    size_t o = 0;
    for (size_t s = 1;;) {
        size_t e = s;
        while (e < plen && path[e] != '/')
            e++;
        const char *seg = path + s;
        size_t n = e - s;
        int last = e >= plen;
        int d = dot_segment(seg, n);
        const char *semi = memchr(seg, ';', n);
        if (!d && semi && dot_segment(seg, (size_t)(semi - seg))) {
            *why = "path holds a dot segment with ';' parameters";
            return -1;
        }
        if (d == 2) {
            if (o == 0) {
                *why = "path leaves the service's base path ('..' above its start)";
                return -1;
            }
            while (out[--o] != '/') /* out[0] is '/' whenever o > 0 */
                ;
        }
        if (d && last)
            out[o++] = '/';
        if (!d) {
            out[o++] = '/';
            memcpy(out + o, seg, n);
            o += n;
        }
        if (last)
            break;
        s = e + 1;
    }
    memcpy(out + o, path + plen, len - plen);
    o += len - plen;
    out[o] = '\0';
    return (int)o;
}

static int is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int hs_header_name_ok(const char *name, size_t len) {
    if (len == 0 || len > 256)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)name[i]))
            return 0;
    return 1;
}

int hs_header_value_ok(const char *value, size_t len) {
    if (len > 65535)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

char *hs_printable(const char *s, size_t len, char *out, size_t out_cap) {
    if (out_cap == 0)
        return out;
    size_t n = 0;
    int cut = len > out_cap - 1;
    size_t keep = cut ? (out_cap > 4 ? out_cap - 4 : 0) : len;
    for (; n < keep; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (cut)
        for (size_t k = 0; k < 3 && n < out_cap - 1; k++)
            out[n++] = '.';
    out[n] = '\0';
    return out;
}
