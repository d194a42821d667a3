/* cli_esc.c — escaping of terminal control characters in what the CLI prints (cli_esc.h). */
#include "cli_esc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if it is not one (stray
 * continuation byte, overlong form, surrogate, above U+10FFFF, truncated). */
static size_t utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t k;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return k;
}

size_t cli_esc(char *out, size_t cap, const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0, i = 0;
    int room = cap > 0; /* still writing: nothing has been cut yet */
    while (i < len) {
        char tmp[8];
        const char *piece = tmp;
        size_t plen, adv = utf8_len(p + i, len - i);
        uint8_t c = p[i];
        if (adv == 1 && c >= 0x20 && c != 0x7f) {
            tmp[0] = (char)c, plen = 1;
        } else if (adv == 1) {
            plen = c == '\n'   ? (size_t)snprintf(tmp, sizeof tmp, "\\n")
                   : c == '\r' ? (size_t)snprintf(tmp, sizeof tmp, "\\r")
                   : c == '\t' ? (size_t)snprintf(tmp, sizeof tmp, "\\t")
                               : (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
        } else if (adv == 2 && c == 0xc2 && p[i + 1] <= 0x9f) {
            plen = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", p[i + 1]);
        } else if (adv == 0) {
            plen = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
            adv = 1;
        } else {
            piece = s + i, plen = adv;
        }
        if (room && o + plen < cap)
            memcpy(out + o, piece, plen);
        else if (room) {
            out[o] = '\0';
            room = 0;
        }
        o += plen;
        i += adv;
    }
    if (room)
        out[o] = '\0';
    return o;
}

char *cli_esc_dup(const char *s, size_t len) {
    size_t need = cli_esc(NULL, 0, s, len);
    char *out = malloc(need + 1);
    if (out)
        cli_esc(out, need + 1, s, len);
    return out;
}

const char *cli_esc_str(char *out, size_t cap, const char *s) {
    cli_esc(out, cap, s, strlen(s));
    return out;
}
