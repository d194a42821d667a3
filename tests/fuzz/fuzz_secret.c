/* libFuzzer target for secrets at rest (proto/auth.c): arbitrary stored strings through
 * gp_secret_open with and without a master key, and a seal/open round trip of a secret and
 * house id taken from the input. Oracle: only the documented errors, and what opens under
 * one house id never opens under another. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"

static const uint8_t master[32] = {0x6d, 0x61, 0x73, 0x74, 0x65, 0x72};

static void check(int ok) {
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int inited;
    if (!inited) {
        check(gp_auth_init() == 0);
        inited = 1;
    }
    uint8_t out[GP_SECRET_LEN];
    gp_str stored = {data, size}, id = GP_STR_LIT("fuzz-house");
    int a = gp_secret_open(master, id, stored, out);
    int b = gp_secret_open(NULL, id, stored, out);
    check(a == 0 || a == GP_ERR_AUTH || a == GP_ERR_INVALID);
    check(b == 0 || b == GP_ERR_AUTH || b == GP_ERR_INVALID);
    if (a == 0 && b != 0) /* opened sealed: must not open for another house */
        check(gp_secret_open(master, GP_STR_LIT("other-house"), stored, out) == GP_ERR_AUTH);

    if (size >= GP_SECRET_LEN) {
        char sealed[GP_SEALED_MAX];
        uint8_t back[GP_SECRET_LEN];
        gp_str hid = {data + GP_SECRET_LEN, size - GP_SECRET_LEN > GP_MAX_HOUSE_ID
                                                ? GP_MAX_HOUSE_ID
                                                : size - GP_SECRET_LEN};
        check(gp_secret_seal(master, hid, data, sealed) == 0);
        check(strlen(sealed) < GP_SEALED_MAX);
        check(gp_secret_open(master, hid, gp_str_c(sealed), back) == 0);
        check(memcmp(back, data, GP_SECRET_LEN) == 0);
        check(gp_secret_seal(NULL, hid, data, sealed) == 0);
        check(gp_secret_open(NULL, hid, gp_str_c(sealed), back) == 0);
        check(memcmp(back, data, GP_SECRET_LEN) == 0);
    }
    return 0;
}
