/* fuzz_logjson.c — libFuzzer target for the JSON log line (proto/logjson.c, --log-format
 * json): any bytes as key=value text must come out as one JSON object that jansson parses
 * (strict UTF-8, duplicate keys refused), within the room given, without a raw control byte;
 * and any bytes logged as a quoted value (the bridge's br_q, the house's hs_q) must come back
 * as themselves when they are valid UTF-8. Byte 0 picks the room and how numbers are told,
 * byte 1 which bytes count as a numeric conversion's; the rest is the text. */
#include "logger.h"

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Valid UTF-8 (RFC 3629), written apart from logjson.c's decoder so that the two check each
 * other. */
static int utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return 0;
        if (k > 1)
            c &= 0x3f >> (k - 1);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min[k] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static json_t *parse(const char *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        assert((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
    assert(utf8_valid((const uint8_t *)out, n));
    json_error_t e;
    json_t *j = json_loadb(out, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    assert(j && json_is_object(j));
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    size_t cap = 64 + (size_t)data[0] * 16;
    int numbers = data[0] % 3;
    const char *kv = (const char *)data + 2;
    size_t len = size - 2;
    unsigned char *num = malloc(len + 1);
    char *out = malloc(cap);
    assert(num && out);
    for (size_t i = 0; i < len; i++)
        num[i] = (data[1] >> (i & 7)) & 1;
    size_t n = gp_log_kv_json(out, cap, kv, len, data[1] & 0x80 ? num : NULL, numbers);
    assert(n < cap && out[n] == '\0');
    json_decref(parse(out, n));

    /* The text as one value, quoted both ways: back as itself (when nothing was cut). */
    char q[GP_LOG_QCAP + 4], line[GP_LOG_QCAP + 8];
    const char *styles[2] = {gp_log_quote(q, kv, len), NULL};
    for (int s = 0; s < 2; s++) {
        const char *v = s == 0 ? styles[0] : gp_log_value(q, kv, len);
        size_t vl = strlen(v);
        int cut = vl >= 4 && memcmp(v + vl - (v[vl - 1] == '"' ? 4 : 3), "...", 3) == 0;
        memcpy(line, "v=", 2);
        memcpy(line + 2, v, vl);
        char js[4096];
        size_t jn = gp_log_kv_json(js, sizeof js, line, vl + 2, NULL, 0);
        json_t *j = parse(js, jn);
        json_t *got = json_object_get(j, "v");
        assert(json_is_string(got));
        if (!cut && len && utf8_valid(data + 2, len))
            assert(json_string_length(got) == len && memcmp(json_string_value(got), kv, len) == 0);
        json_decref(j);
    }
    free(num);
    free(out);
    return 0;
}
