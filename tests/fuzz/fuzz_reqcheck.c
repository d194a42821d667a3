/* fuzz_reqcheck.c — libFuzzer target for the house's path normalisation (house/reqcheck.c).
 * Input: a base path (a service URL's path: empty or "/seg/seg", no dots or escapes), a NUL
 * byte, then a request path. Property: either the path is refused, or the base joined with
 * the result still lies under the base when read by the most permissive server this file can
 * imagine: one that decodes %2e, reads '\', %2f and %5c as '/', drops ";params" from a
 * segment and resolves dot segments (clamping at the root). Also: the result is never longer
 * than the input, starts with '/', and is a fixed point (cleaning it again changes nothing). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reqcheck.h"

#define MAXSEG 4096

/* Splits the path part of p (up to '?' or '#') as that permissive server would, resolving
 * dot segments; segments are [start, len) pairs into the decoded copy `d`. */
static size_t server_segments(const char *p, size_t n, char *d, size_t *st, size_t *ln) {
    size_t dn = 0;
    for (size_t i = 0; i < n && p[i] != '?' && p[i] != '#'; i++) {
        if (p[i] == '%' && i + 2 < n && p[i + 1] == '2' && (p[i + 2] | 0x20) == 'e') {
            d[dn++] = '.', i += 2;
        } else if (p[i] == '%' && i + 2 < n &&
                   ((p[i + 1] == '2' && (p[i + 2] | 0x20) == 'f') ||
                    (p[i + 1] == '5' && (p[i + 2] | 0x20) == 'c'))) {
            d[dn++] = '/', i += 2;
        } else {
            d[dn++] = p[i] == '\\' ? '/' : p[i];
        }
    }
    size_t ns = 0;
    for (size_t s = 0; s <= dn;) {
        size_t e = s;
        while (e < dn && d[e] != '/')
            e++;
        size_t len = e - s;
        const char *semi = memchr(d + s, ';', len);
        size_t head = semi ? (size_t)(semi - (d + s)) : len;
        if (s == 0 && len == 0) {
            /* the leading '/' */
        } else if (head == 1 && d[s] == '.') {
        } else if (head == 2 && d[s] == '.' && d[s + 1] == '.') {
            if (ns)
                ns--;
        } else if (ns < MAXSEG) {
            st[ns] = s, ln[ns] = head, ns++;
        }
        s = e + 1;
    }
    return ns;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || nul - data > 128)
        return 0;
    size_t bl = (size_t)(nul - data);
    const char *base = (const char *)data;
    if (bl && base[0] != '/')
        return 0;
    for (size_t i = 0; i < bl; i++)
        if (strchr(".%\\?#;", base[i]) || base[i] == 0 || (base[i] == '/' && i + 1 == bl) ||
            (base[i] == '/' && i + 1 < bl && base[i + 1] == '/'))
            return 0; /* a configured base: plain segments, no trailing '/' */
    const char *path = (const char *)nul + 1;
    size_t pl = size - bl - 1;
    char *out = malloc(pl + 1);
    const char *why = NULL;
    int n = hs_path_clean(path, pl, out, pl + 1, &why);
    if (n < 0) {
        if (!why)
            __builtin_trap();
        free(out);
        return 0;
    }
    if ((size_t)n > pl || out[0] != '/' || out[n] != '\0')
        __builtin_trap();
    char *again = malloc((size_t)n + 1);
    if (hs_path_clean(out, (size_t)n, again, (size_t)n + 1, &why) != n || memcmp(again, out, n))
        __builtin_trap();
    free(again);
    /* The URL the house would send: base + result. */
    size_t jl = bl + (size_t)n;
    char *joined = malloc(jl + 1), *d1 = malloc(jl + 1), *d2 = malloc(bl + 1);
    memcpy(joined, base, bl);
    memcpy(joined + bl, out, (size_t)n + 1);
    static size_t st1[MAXSEG], ln1[MAXSEG], st2[MAXSEG], ln2[MAXSEG];
    size_t n1 = server_segments(joined, jl, d1, st1, ln1);
    size_t n2 = bl ? server_segments(base, bl, d2, st2, ln2) : 0;
    if (n1 < n2)
        __builtin_trap(); /* climbed out of the base */
    for (size_t i = 0; i < n2; i++)
        if (ln1[i] != ln2[i] || memcmp(d1 + st1[i], d2 + st2[i], ln1[i]) != 0)
            __builtin_trap(); /* left the base for a sibling */
    free(joined), free(d1), free(d2), free(out);
    return 0;
}
