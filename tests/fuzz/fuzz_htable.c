/* fuzz_htable.c — the messages of the bridge's pub/sub channels (bridge/daemon/htable.c):
 * "<epoch> <house>" on its fence channel and "disable|remove <house>" on <p>:ctl, any bytes
 * of any length, against a table holding a few houses. Nothing may be read past the
 * message, and a target is always a held house that the message names (as a C string: a
 * NUL ends the name, as it always has). */
#include "../../bridge/daemon/htable.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static br_htable T;
static br_conn C[3];

static void setup(void) {
    static const char *const ids[3] = {"h1", "house-2", NULL};
    for (int i = 0; i < 3; i++) {
        if (ids[i])
            strcpy(C[i].house, ids[i]);
        else
            memset(C[i].house, 'x', GP_MAX_HOUSE_ID); /* the longest id */
        C[i].epoch = 5;
        assert(br_htable_insert(&T, &C[i]) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!T.n)
        setup();
    if (size < 1)
        return 0;
    /* An exact-size heap copy: ASan sees any read past the message. */
    size_t n = size - 1;
    char *msg = malloc(n ? n : 1);
    if (!msg)
        return 0;
    memcpy(msg, data + 1, n);
    br_conn *c;
    if (data[0] & 1) {
        int disable = -1;
        c = br_htable_ctl_target(&T, msg, n, &disable);
        assert(disable == 0 || disable == 1);
    } else {
        c = br_htable_fence_target(&T, msg, n);
    }
    if (c) {
        size_t hl = strlen(c->house);
        assert(br_htable_find(&T, c->house) == c);
        /* The message names it: after its first space, up to its end or a NUL (C strings). */
        const char *sp = memchr(msg, ' ', n);
        assert(sp);
        size_t at = (size_t)(sp + 1 - msg);
        assert(n - at >= hl && memcmp(msg + at, c->house, hl) == 0);
        assert(n - at == hl || msg[at + hl] == '\0');
    }
    free(msg);
    assert(T.n == 3);
    return 0;
}
