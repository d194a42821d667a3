/* fuzz_rkeys.c — libFuzzer target for the key names the bridge reads back from Redis: keyspace
 * channels and SCAN results are parsed into house ids with gp_key_house_of_req. Input: a
 * prefix, a NUL byte, then the key. Whatever parses must build the very same key again. */
#include <stdint.h>
#include <string.h>

#include "rkeys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || nul - data > 64)
        return 0;
    char prefix[65];
    memcpy(prefix, data, (size_t)(nul - data));
    prefix[nul - data] = '\0';
    const char *key = (const char *)nul + 1;
    size_t klen = size - (size_t)(nul - data) - 1;
    char id[65];
    int n = gp_key_house_of_req(key, klen, prefix, id, sizeof id);
    if (n < 0)
        return 0;
    if ((size_t)n >= sizeof id || strlen(id) > (size_t)n)
        __builtin_trap();
    if (memchr(id, 0, (size_t)n))
        return 0; /* a NUL inside: not a string key the bridge could have built */
    char again[GP_KEY_MAX];
    int m = gp_key_req(again, prefix, id);
    if (m >= 0 && ((size_t)m != klen || memcmp(again, key, klen) != 0))
        __builtin_trap();
    return 0;
}
