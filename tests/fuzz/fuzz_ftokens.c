/* fuzz_ftokens.c — libFuzzer target for the front door's token file parser
 * (bridge/front/froute.c, --http-token-file): any bytes as the file; parsed or refused with a
 * line number, never a token in the message; what parses is then checked against a token
 * and house taken from the input. */
#include "../../bridge/front/froute.h"

#include <assert.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (sodium_init() < 0)
        return 0;
    fr_tokens t;
    char err[128] = "";
    if (fr_tokens_parse((const char *)data, size, &t, err, sizeof err) != 0) {
        assert(strncmp(err, "line ", 5) == 0);
        assert(t.n == 0);
        return 0;
    }
    for (size_t i = 0; i < t.n; i++)
        assert(t.v[i].house_glob[0] && t.v[i].service_glob[0]);
    char house[32] = "", tok[48] = "";
    size_t n = size < 31 ? size : 31;
    memcpy(house, data, n);
    house[strnlen(house, n)] = '\0';
    memcpy(tok, data + size - (size < 47 ? size : 47), size < 47 ? size : 47);
    int rc = fr_tokens_check(&t, tok, strnlen(tok, sizeof tok - 1), house, "");
    assert(rc == FR_AUTH_OK || rc == FR_AUTH_UNKNOWN || rc == FR_AUTH_FORBIDDEN);
    fr_tokens_free(&t);
    return 0;
}
