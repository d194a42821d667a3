/* compress.c — per-frame zstd with a cheap "will it shrink?" guess (pure: the caller owns all
 * buffers; zstd contexts are reused across frames to avoid per-frame allocation).
 *
 * Decompression is one-shot into the caller's buffer and only for a single frame that
 * declares its content size within the caller's cap, so a hostile peer cannot make us
 * allocate or write more than we agreed to. */
#include "compress.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>
#include <zstd_errors.h>

struct gp_zctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
    int level;
};

gp_zctx *gp_zctx_new(int level) {
    gp_zctx *z = calloc(1, sizeof *z);
    if (!z)
        goto fail;
    z->level = level;
    z->c = ZSTD_createCCtx();
    z->d = ZSTD_createDCtx();
    if (!z->c || !z->d)
        goto fail;
    return z;
fail:
    gp_zctx_free(z);
    return NULL;
}

void gp_zctx_free(gp_zctx *z) {
    if (!z)
        return;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

double gp_entropy_estimate(const uint8_t *p, size_t len) {
    if (len == 0)
        return 0;
    /* Evenly spaced single bytes rather than a prefix: a body often starts with a text
     * header (or padding) that says nothing about the rest. */
    size_t n = len < GP_ENTROPY_SAMPLE ? len : GP_ENTROPY_SAMPLE;
    size_t stride = len / n;
    unsigned count[256] = {0};
    for (size_t i = 0; i < n; i++)
        count[p[i * stride]]++;
    double h = 0;
    for (int b = 0; b < 256; b++) {
        if (count[b]) {
            double q = (double)count[b] / (double)n;
            h -= q * log2(q);
        }
    }
    return h;
}

int gp_content_type_incompressible(gp_str content_type) {
    /* Formats that carry their own compression. SVG and BMP are images but plain text or
     * raw pixels; octet-stream says nothing, so the entropy estimate decides for it. */
    static const char *const prefixes[] = {"image/", "video/", "audio/"};
    static const char *const exceptions[] = {"image/svg+xml", "image/bmp"};
    static const char *const exact[] = {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/zstd",
        "application/x-zstd",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/x-bzip2",
        "application/x-xz",
        "application/pdf",
        "font/woff",
        "font/woff2",
    };
    if (!content_type.p) /* an absent header */
        return 0;
    const char *s = (const char *)content_type.p, *e = s + content_type.len;
    const char *semi = memchr(s, ';', content_type.len);
    if (semi)
        e = semi;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - s);
    for (size_t i = 0; i < sizeof exceptions / sizeof *exceptions; i++)
        if (n == strlen(exceptions[i]) && strncasecmp(s, exceptions[i], n) == 0)
            return 0;
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (n == strlen(exact[i]) && strncasecmp(s, exact[i], n) == 0)
            return 1;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (n > strlen(prefixes[i]) && strncasecmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

int gp_compress_worthwhile(gp_str content_type, const uint8_t *p, size_t len) {
    return len >= GP_COMPRESS_MIN && !gp_content_type_incompressible(content_type) &&
           gp_entropy_estimate(p, len) < GP_ENTROPY_SKIP_BITS;
}

size_t gp_compress_bound(size_t len) {
    return ZSTD_compressBound(len);
}

ssize_t gp_compress(gp_zctx *z, const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    /* ZSTD_compressCCtx writes the content size into the frame header, which
     * gp_decompress requires. */
    size_t r = ZSTD_compressCCtx(z->c, dst, cap, src, len, z->level);
    if (ZSTD_isError(r))
        /* Not fitting in the caller's cap means it did not shrink enough: send raw. */
        return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : GP_ERR_COMPRESS;
    return r < len ? (ssize_t)r : 0;
}

ssize_t gp_decompressed_size(const uint8_t *src, size_t len) {
    unsigned long long n = ZSTD_getFrameContentSize(src, len);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN)
        return GP_ERR_COMPRESS;
    return n > SSIZE_MAX ? GP_ERR_TOO_LARGE : (ssize_t)n;
}

ssize_t gp_decompress(gp_zctx *z, const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    ssize_t want = gp_decompressed_size(src, len);
    if (want < 0)
        return want;
    if ((size_t)want > cap)
        return GP_ERR_TOO_LARGE;
    /* Exactly one frame: ZSTD_decompressDCtx would also decode frames concatenated after
     * it, whose sizes the header check above never saw. */
    if (ZSTD_findFrameCompressedSize(src, len) != len)
        return GP_ERR_COMPRESS;
    size_t r = ZSTD_decompressDCtx(z->d, dst, cap, src, len);
    if (ZSTD_isError(r) || r != (size_t)want)
        return GP_ERR_COMPRESS;
    return (ssize_t)r;
}
