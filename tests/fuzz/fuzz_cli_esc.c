/* fuzz_cli_esc.c — libFuzzer target for the CLI's escaping of what others wrote
 * (bridge/cli/cli_esc.c): any bytes in, and what comes out must be safe to print to a terminal
 * (valid UTF-8 without C0, DEL or C1 controls), as long as announced, and a cut output a
 * prefix of the whole. The first input byte picks the size of the cut buffer. */
#include "../../bridge/cli/cli_esc.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Valid UTF-8 (RFC 3629) without control characters; written apart from cli_esc.c's own
 * decoder so that the two check each other. */
static void terminal_safe(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        assert(k && i + k <= n);
        if (k > 1)
            c &= 0x3f >> (k - 1);
        for (size_t j = 1; j < k; j++) {
            assert((s[i + j] & 0xc0) == 0x80);
            c = c << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        assert(c >= min[k] && c <= 0x10ffff && !(c >= 0xd800 && c <= 0xdfff));
        assert(c >= 0x20 && c != 0x7f && !(c >= 0x80 && c <= 0x9f));
        i += k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t cap = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    size_t need = cli_esc(NULL, 0, in, len);
    char *all = cli_esc_dup(in, len);
    assert(all && strlen(all) == need && need >= len);
    terminal_safe((const uint8_t *)all, need);
    char *cut = malloc(cap + 1);
    assert(cut);
    assert(cli_esc(cut, cap, in, len) == need);
    if (cap) {
        size_t m = strlen(cut);
        assert(m < cap && memcmp(cut, all, m) == 0);
        terminal_safe((const uint8_t *)cut, m);
    }
    free(cut);
    free(all);
    return 0;
}
