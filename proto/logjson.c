/* logjson.c — the JSON form of a log line (logger.h, --log-format json): the call's format
 * run through a small printf that remembers which bytes a numeric conversion wrote, the
 * key=value text it makes parsed back into pairs, and each pair written as a JSON member.
 * The values come from the network (house ids, paths, peers' error messages): whatever their
 * bytes, the line is one valid JSON object. Pure. */
#include "logger.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* --- the line being built ---------------------------------------------------------------- */

/* Members are written while they fit in cap - RESERVE, so that ",\"cut_NN\":true}\n" always
 * fits after the last one. */
#define RESERVE 24
#define MAX_KEYS 128
#define KEY_MAX 64 /* longer keys are cut (at a character) */

typedef struct jb {
    char *p;
    size_t n, lim; /* text so far; members end before lim */
    int cut;       /* a member did not fit: no more are written */
    int members;   /* written so far (the first has no comma) */
    size_t nkeys;  /* the names written (where in p, how long), for new_key; "cut" has a slot */
    size_t koff[MAX_KEYS + 1], klen[MAX_KEYS + 1];
} jb;

static int put(jb *b, const char *s, size_t n) {
    if (b->n + n > b->lim)
        return 0;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 1;
}

/* One UTF-8 sequence at s[0..len): its length (1-4) and code point, or 0 when s[0] starts no
 * valid sequence (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned c = s[0];
    size_t k;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        k = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        k = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        k = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (k > len)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return k;
}

/* s[0..len) as the inside of a JSON string, one character (or escape) at a time while it
 * fits before lim - 1 (room for the closing quote). 1 when all of it was written. */
static int put_str_body(jb *b, const unsigned char *s, size_t len) {
    size_t save = b->lim;
    b->lim = save - 1;
    int ok = 1;
    for (size_t i = 0; i < len && ok;) {
        uint32_t cp;
        size_t k = utf8_seq(s + i, len - i, &cp);
        char esc[8];
        if (k == 0) {
            /* One U+FFFD per byte that is not UTF-8, written as UTF-8 as a valid one would
             * be: each character has one spelling, so distinct names stay distinct. */
            ok = put(b, "\xef\xbf\xbd", 3);
            k = 1;
        } else if (cp == '"' || cp == '\\') {
            esc[0] = '\\', esc[1] = (char)cp;
            ok = put(b, esc, 2);
        } else if (cp == '\n' || cp == '\r' || cp == '\t') {
            esc[0] = '\\', esc[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
            ok = put(b, esc, 2);
        } else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
                   cp == 0x2029) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            ok = put(b, esc, 6);
        } else {
            ok = put(b, (const char *)s + i, k);
        }
        if (ok)
            i += k;
    }
    b->lim = save;
    return ok;
}

/* A JSON number as RFC 8259 has it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int is_json_number(const unsigned char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    if (s[i] == '0')
        i++;
    else
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i == n;
}

/* A number most parsers read as written: an integer within int64 (one beyond, a u64 near its
 * top, is refused by jansson and rounded by JavaScript), anything else a finite double
 * without overflow or underflow ("1e999" is a JSON number, but not one a parser can hold).
 * Those that are not are written as strings. */
static int number_fits(const unsigned char *s, size_t n) {
    char buf[64];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    if (!memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n))
        (void)strtoll(buf, NULL, 10);
    else
        (void)strtod(buf, NULL);
    return errno != ERANGE;
}

/* The name of a member, opening quote written: k[0..kl) cut to KEY_MAX bytes (not inside a
 * UTF-8 sequence), control characters as '_', escaped, then "_2", "_3"… until no earlier member's
 * name is spelled the same (one spelling per character: no two names equal once decoded either),
 * and the closing quote. 0 when it does not fit, or when the table of names already holds `limit`.
 */
static int new_key(jb *b, const unsigned char *k, size_t kl, size_t limit) {
    if (b->nkeys >= limit)
        return 0;
    if (kl > KEY_MAX) {
        kl = KEY_MAX;
        while (kl > KEY_MAX - 3 && (k[kl] & 0xc0) == 0x80)
            kl--;
    }
    /* No control characters in names: NUL would stop many parsers (jansson, C strings) */
    unsigned char name[KEY_MAX];
    for (size_t i = 0; i < kl; i++)
        name[i] = k[i] < 0x20 || k[i] == 0x7f ? '_' : k[i];
    size_t off = b->n;
    if (!put_str_body(b, name, kl))
        return 0;
    size_t base = b->n - off;
    for (unsigned suffix = 2;; suffix++) {
        size_t n = b->n - off, i = 0;
        while (i < b->nkeys && !(b->klen[i] == n && memcmp(b->p + b->koff[i], b->p + off, n) == 0))
            i++;
        if (i == b->nkeys)
            break;
        char sfx[16];
        int sl = snprintf(sfx, sizeof sfx, "_%u", suffix);
        b->n = off + base;
        if (!put(b, sfx, (size_t)sl))
            return 0;
    }
    b->koff[b->nkeys] = off;
    b->klen[b->nkeys] = b->n - off;
    if (!put(b, "\"", 1))
        return 0;
    b->nkeys++;
    return 1;
}

/* "key":value, after a comma unless it is the first — the value a JSON number when `number`,
 * else a string. A member that does not fit is cut: a key whole or not at all, a string at a
 * character; then b->cut. */
static void member(jb *b, const unsigned char *k, size_t kl, const unsigned char *v, size_t vl,
                   int number) {
    if (b->cut)
        return;
    size_t start = b->n;
    if ((b->members && !put(b, ",", 1)) || !put(b, "\"", 1) || !new_key(b, k, kl, MAX_KEYS) ||
        !put(b, ":", 1)) {
        b->n = start;
        b->cut = 1;
        return;
    }
    b->members++;
    if (number && put(b, (const char *)v, vl))
        return;
    /* a string (or a number too long to fit: as much of it as fits, as a string) */
    if (!put(b, "\"", 1)) {
        b->n = start;
        b->members--;
        b->nkeys--;
        b->cut = 1;
        return;
    }
    if (!put_str_body(b, v, vl))
        b->cut = 1;
    b->lim += 1; /* the closing quote always has its byte */
    put(b, "\"", 1);
    b->lim -= 1;
}

/* --- key=value text back into pairs ------------------------------------------------------ */

static int hexval(int c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Does a pair start at kv[i]: a key (no space, quote or '=') then '='? Its key's end, or 0. */
static size_t pair_at(const char *kv, size_t len, size_t i) {
    size_t j = i;
    while (j < len && kv[j] != '=' && kv[j] != ' ' && kv[j] != '"')
        j++;
    return j > i && j < len && kv[j] == '=' ? j : 0;
}

/* One value from kv[*ip..): quoted ("…" with \" \\ \xNN) or bare up to a space, followed by
 * any text that is no pair (it belongs to this value: an unquoted message). Decoded into
 * v[vcap]; *number when it may be written as a JSON number. Advances *ip. */
static size_t value_at(const char *kv, size_t len, size_t *ip, const unsigned char *num,
                       int numbers, unsigned char *v, size_t vcap, int *number) {
    size_t i = *ip, vn = 0;
    int quoted = 0, more = 0, all_num = 1;
    for (;;) {
        if (i < len && kv[i] == '"') {
            quoted = 1;
            for (i++; i < len && kv[i] != '"'; i++) {
                int c = (unsigned char)kv[i];
                if (c == '\\' && i + 1 < len && (kv[i + 1] == '"' || kv[i + 1] == '\\')) {
                    c = (unsigned char)kv[++i];
                } else if (c == '\\' && i + 3 < len && kv[i + 1] == 'x' && hexval(kv[i + 2]) >= 0 &&
                           hexval(kv[i + 3]) >= 0) {
                    c = hexval(kv[i + 2]) << 4 | hexval(kv[i + 3]);
                    i += 3;
                }
                if (vn < vcap)
                    v[vn++] = (unsigned char)c;
            }
            if (i < len)
                i++; /* the closing quote */
        } else {
            for (; i < len && kv[i] != ' '; i++) {
                if (!num || !num[i])
                    all_num = 0;
                if (vn < vcap)
                    v[vn++] = (unsigned char)kv[i];
            }
        }
        if (i < len && kv[i] != ' ')
            more = 1; /* text glued to a closing quote: one value */
        else {
            size_t j = i;
            while (j < len && kv[j] == ' ')
                j++;
            if (j >= len || pair_at(kv, len, j))
                break;
            more = 1; /* words that are no pair: still this value */
            for (; i < j; i++)
                if (vn < vcap)
                    v[vn++] = ' ';
        }
    }
    *ip = i;
    int whole = !quoted && !more && vn > 0 && is_json_number(v, vn) && number_fits(v, vn);
    *number = whole && ((num && all_num) || numbers == 2);
    return vn;
}

/* Every pair of kv[0..len) as members. numbers: 0 all strings, 1 the values num marks as a
 * numeric conversion's, 2 every bare value that is a JSON number. */
static void pairs(jb *b, const char *kv, size_t len, const unsigned char *num, int numbers) {
    static const unsigned char msg[] = "msg";
    unsigned char v[GP_LOG_JSON_LINE];
    size_t i = 0;
    while (i < len && !b->cut) {
        while (i < len && kv[i] == ' ')
            i++;
        if (i >= len)
            break;
        size_t ke = pair_at(kv, len, i);
        const unsigned char *k = msg;
        size_t kl = 3;
        if (ke) {
            k = (const unsigned char *)kv + i;
            kl = ke - i;
            i = ke + 1;
        }
        int number;
        size_t vn = value_at(kv, len, &i, numbers ? num : NULL, numbers, v, sizeof v, &number);
        member(b, k, kl, v, vn, number);
    }
}

/* --- a printf that marks what numeric conversions wrote ------------------------------------ */

/* fmt with ap into out[cap] (NUL-terminated), num[i] = 1 for each byte a %d %i %u %f %e %g
 * (any size) wrote. A conversion it does not know (%ls, %n, …) makes it start over with
 * vsnprintf and mark nothing (ap2: a copy of ap from the start). Returns the length. */
static size_t kv_printf(char *out, unsigned char *num, size_t cap, const char *fmt, va_list ap,
                        va_list ap2) {
    int err = errno; /* for %m */
    size_t n = 0;
    memset(num, 0, cap);
    out[0] = '\0';
    for (const char *f = fmt; *f;) {
        if (*f != '%' || f[1] == '%') {
            if (n + 1 < cap)
                out[n++] = *f;
            f += *f == '%' ? 2 : 1;
            continue;
        }
        /* %[flags][width][.precision][length]conversion, '*' resolved into digits */
        char spec[48];
        size_t sl = 0;
        spec[sl++] = '%';
        const char *p = f + 1;
        while (*p && strchr("-+ #0'", *p) && sl < 16)
            spec[sl++] = *p++;
        if (*p == '*') {
            sl += (size_t)snprintf(spec + sl, 12, "%d", va_arg(ap, int));
            p++;
        } else {
            while (*p >= '0' && *p <= '9' && sl < 24)
                spec[sl++] = *p++;
        }
        if (*p == '.') {
            p++;
            if (*p == '*') {
                int prec = va_arg(ap, int);
                if (prec >= 0)
                    sl += (size_t)snprintf(spec + sl, 13, ".%d", prec);
                p++;
            } else {
                spec[sl++] = '.';
                while (*p >= '0' && *p <= '9' && sl < 36)
                    spec[sl++] = *p++;
            }
        }
        int len = 0; /* 1 h, 2 hh, 3 l, 4 ll, 5 z, 6 j, 7 t, 8 L */
        if (p[0] == 'h')
            len = p[1] == 'h' ? 2 : 1;
        else if (p[0] == 'l')
            len = p[1] == 'l' ? 4 : 3;
        else if (p[0] == 'z')
            len = 5;
        else if (p[0] == 'j')
            len = 6;
        else if (p[0] == 't')
            len = 7;
        else if (p[0] == 'L')
            len = 8;
        p += len == 2 || len == 4 ? 2 : len ? 1 : 0;
        char conv = *p;
        if (!conv || (len == 3 && (conv == 's' || conv == 'c')) ||
            (len == 8 && !strchr("fFeEgGaA", conv)) || conv == 'n' || sl > 40)
            goto fallback;
        int w = 0, numeric = 0;
        char *dst = out + n;
        size_t room = cap - n;
        switch (conv) {
        case 'd':
        case 'i': {
            long long x = len == 3   ? va_arg(ap, long)
                          : len == 4 ? va_arg(ap, long long)
                          : len == 5 ? (long long)va_arg(ap, ssize_t)
                          : len == 6 ? (long long)va_arg(ap, intmax_t)
                          : len == 7 ? (long long)va_arg(ap, ptrdiff_t)
                                     : va_arg(ap, int);
            if (len == 1)
                x = (short)x;
            else if (len == 2)
                x = (signed char)x;
            memcpy(spec + sl, "lld", 4);
            w = snprintf(dst, room, spec, x);
            numeric = 1;
            break;
        }
        case 'u':
        case 'o':
        case 'x':
        case 'X': {
            unsigned long long x = len == 3   ? va_arg(ap, unsigned long)
                                   : len == 4 ? va_arg(ap, unsigned long long)
                                   : len == 5 ? (unsigned long long)va_arg(ap, size_t)
                                   : len == 6 ? (unsigned long long)va_arg(ap, uintmax_t)
                                   : len == 7 ? (unsigned long long)va_arg(ap, ptrdiff_t)
                                              : va_arg(ap, unsigned);
            if (len == 1)
                x = (unsigned short)x;
            else if (len == 2)
                x = (unsigned char)x;
            spec[sl] = 'l', spec[sl + 1] = 'l', spec[sl + 2] = conv, spec[sl + 3] = '\0';
            w = snprintf(dst, room, spec, x);
            numeric = conv == 'u';
            break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            if (len == 8) {
                spec[sl] = 'L', spec[sl + 1] = conv, spec[sl + 2] = '\0';
                w = snprintf(dst, room, spec, va_arg(ap, long double));
            } else {
                spec[sl] = conv, spec[sl + 1] = '\0';
                w = snprintf(dst, room, spec, va_arg(ap, double));
            }
            numeric = conv != 'a' && conv != 'A';
            break;
        case 'c':
            spec[sl] = 'c', spec[sl + 1] = '\0';
            w = snprintf(dst, room, spec, va_arg(ap, int));
            break;
        case 's':
            spec[sl] = 's', spec[sl + 1] = '\0';
            w = snprintf(dst, room, spec, va_arg(ap, const char *));
            break;
        case 'p':
            spec[sl] = 'p', spec[sl + 1] = '\0';
            w = snprintf(dst, room, spec, va_arg(ap, void *));
            break;
        case 'm':
            w = snprintf(dst, room, "%s", strerror(err));
            break;
        default:
            goto fallback;
        }
        if (w < 0)
            w = 0;
        size_t wrote = (size_t)w < room ? (size_t)w : room - 1;
        if (numeric)
            memset(num + n, 1, wrote);
        n += wrote;
        f = p + 1;
    }
    out[n] = '\0';
    return n;
fallback:
    memset(num, 0, cap);
    int m = vsnprintf(out, cap, fmt, ap2);
    return m < 0 ? 0 : (size_t)m < cap ? (size_t)m : cap - 1;
}

/* --- the line ---------------------------------------------------------------------------- */

/* out[0..cap) gets "{"; members go before cap - RESERVE. */
static void jb_start(jb *b, char *out, size_t cap) {
    memset(b, 0, sizeof *b);
    b->p = out;
    b->lim = cap - RESERVE;
    put(b, "{", 1);
}

/* "cut":true when something was left out, then "}" (the caller adds the newline). */
static size_t jb_close(jb *b) {
    b->lim += RESERVE - 2;
    if (b->cut) {
        if (b->members)
            put(b, ",", 1);
        put(b, "\"", 1);
        new_key(b, (const unsigned char *)"cut", 3, MAX_KEYS + 1);
        put(b, ":true", 5);
    }
    put(b, "}", 1);
    return b->n;
}

size_t gp_log_kv_json(char *out, size_t cap, const char *kv, size_t len, const unsigned char *num,
                      int numbers) {
    jb b;
    jb_start(&b, out, cap);
    pairs(&b, kv, len, num, numbers);
    size_t n = jb_close(&b);
    out[n] = '\0';
    return n;
}

size_t gp_log_vformat_json(char *line, int level, const char *event, const char *fixed,
                           const char *tail, const char *fmt, va_list ap) {
    const size_t cap = GP_LOG_JSON_LINE;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char kv[GP_LOG_LINE];
    unsigned char num[GP_LOG_LINE];
    size_t kn = 0;
    if (fmt && *fmt) {
        va_list ap2;
        va_copy(ap2, ap);
        kn = kv_printf(kv, num, sizeof kv, fmt, ap, ap2);
        va_end(ap2);
    }
    jb b;
    jb_start(&b, line, cap - 1);
    char head[64];
    int hn =
        snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    const char *lv = gp_log_level_name(level);
    member(&b, (const unsigned char *)"ts", 2, (const unsigned char *)head, (size_t)hn, 0);
    member(&b, (const unsigned char *)"level", 5, (const unsigned char *)lv, strlen(lv), 0);
    member(&b, (const unsigned char *)"event", 5, (const unsigned char *)(event ? event : ""),
           event ? strlen(event) : 0, 0);
    if (fixed)
        pairs(&b, fixed, strlen(fixed), NULL, 0);
    pairs(&b, kv, kn, num, 1);
    if (kn + 1 >= sizeof kv)
        b.cut = 1; /* the pairs were cut before they got here */
    if (tail)
        pairs(&b, tail, strlen(tail), NULL, 2);
    size_t n = jb_close(&b);
    line[n++] = '\n';
    return n;
}
