/* resp_input.h — for the fuzz targets that feed RESP to hiredis's reader. hiredis 0.14's
 * reader allocates an array's element vector before reading it (it has no maxelements yet): a
 * header "*777777772" is an out-of-memory in hiredis, not in the parsers under test, and a
 * Redis server does not send it. Inputs whose counts exceed their own size are skipped. */
#ifndef GP_FUZZ_RESP_INPUT_H
#define GP_FUZZ_RESP_INPUT_H

#include <stddef.h>
#include <stdint.h>

static inline int resp_sane_counts(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '*' && p[i] != '$')
            continue;
        unsigned long long v = 0;
        for (size_t j = i + 1; j < n && p[j] >= '0' && p[j] <= '9' && v <= n; j++)
            v = v * 10 + (p[j] - '0');
        if (v > n)
            return 0;
    }
    return 1;
}

#endif
