/* zstate.c — the house's compression state: a zstd context and, to compress, an output
 * buffer (64 KiB), each made with the first body that needs it (most houses of a load test
 * never compress). The houses of a process may share one (hs_house.zs): a body is compressed
 * and copied into its frame at once (tunnel.c), so nothing stays in it between calls. */
#include "compress.h"
#include "house.h"

#include <stdlib.h>

struct hs_zstate {
    gp_zctx *zc;
    uint8_t *zbuf;
    size_t zcap;
};

hs_zstate *hs_zstate_new(void) {
    return calloc(1, sizeof(hs_zstate));
}

void hs_zstate_free(hs_zstate *z) {
    if (!z)
        return;
    gp_zctx_free(z->zc);
    free(z->zbuf);
    free(z);
}

hs_zstate *hs_zstate_ready(hs_zstate *shared, hs_zstate **own, int compress) {
    hs_zstate *z = shared ? shared : *own;
    if (!z && !(z = *own = hs_zstate_new()))
        return NULL;
    if (!z->zc && !(z->zc = gp_zctx_new(GP_ZSTD_LEVEL)))
        return NULL;
    if (compress && !z->zbuf) {
        size_t cap = gp_compress_bound(GP_BODY_CHUNK);
        if (!(z->zbuf = malloc(cap)))
            return NULL;
        z->zcap = cap;
    }
    return z;
}

gp_zctx *hs_zstate_zctx(const hs_zstate *z) {
    return z->zc;
}

uint8_t *hs_zstate_buf(const hs_zstate *z, size_t *cap) {
    *cap = z->zcap;
    return z->zbuf;
}
