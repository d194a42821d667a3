/* Unit tests for proto/compress.c: the skip heuristic, and decompression that refuses
 * anything it was not asked to hold. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "compress.h"

/* A deterministic pseudo-random generator (xorshift), so failures reproduce. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed) {
    uint64_t x = seed | 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 32);
    }
}

static size_t fill_text(uint8_t *p, size_t len) {
    static const char line[] =
        "{\"id\":\"7f3c\",\"status\":\"ok\",\"items\":[1,2,3],\"note\":\"hello\"}\n";
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)line[i % (sizeof line - 1)];
    return len;
}

Test(compress, text_compresses_and_round_trips) {
    size_t len = 20000;
    uint8_t *src = malloc(len), *dst = malloc(gp_compress_bound(len)), *out = malloc(len);
    fill_text(src, len);
    gp_zctx *z = gp_zctx_new(GP_ZSTD_LEVEL);
    cr_assert_not_null(z);
    cr_assert(gp_compress_worthwhile(GP_STR_LIT("application/json; charset=utf-8"), src, len));
    ssize_t n = gp_compress(z, src, len, dst, gp_compress_bound(len));
    cr_assert_gt(n, 0);
    cr_assert_lt(n, (ssize_t)len / 10);
    cr_assert_eq(gp_decompressed_size(dst, (size_t)n), (ssize_t)len);
    cr_assert_eq(gp_decompress(z, dst, (size_t)n, out, len), (ssize_t)len);
    cr_assert(memcmp(out, src, len) == 0);
    /* The context is reusable. */
    cr_assert_eq(gp_compress(z, src, len, dst, gp_compress_bound(len)), n);
    gp_zctx_free(z);
    gp_zctx_free(NULL);
    free(src);
    free(dst);
    free(out);
}

Test(compress, random_bytes_skipped_by_entropy) {
    size_t len = 65536;
    uint8_t *src = malloc(len), *dst = malloc(gp_compress_bound(len));
    fill_random(src, len, 42);
    cr_assert_gt(gp_entropy_estimate(src, len), GP_ENTROPY_SKIP_BITS);
    cr_assert(!gp_compress_worthwhile(GP_STR_LIT("application/octet-stream"), src, len));
    /* Had we tried anyway, zstd would not have shrunk it: gp_compress says "send raw". */
    gp_zctx *z = gp_zctx_new(GP_ZSTD_LEVEL);
    cr_assert_eq(gp_compress(z, src, len, dst, gp_compress_bound(len)), 0);
    /* ... also when the cap is below the bound. */
    cr_assert_eq(gp_compress(z, src, len, dst, len - 1), 0);
    gp_zctx_free(z);
    free(src);
    free(dst);
}

Test(compress, entropy_estimates) {
    uint8_t buf[8192] = {0};
    cr_assert_float_eq(gp_entropy_estimate(buf, 0), 0.0, 1e-9);
    memset(buf, 'a', sizeof buf);
    cr_assert_float_eq(gp_entropy_estimate(buf, sizeof buf), 0.0, 1e-9);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i & 1 ? 'a' : 'b');
    cr_assert_float_eq(gp_entropy_estimate(buf, 4096), 1.0, 1e-9);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    cr_assert_float_eq(gp_entropy_estimate(buf, 4096), 8.0, 1e-9);
    /* The sample spans the whole input, not just its start. */
    memset(buf, ' ', 1024);
    fill_random(buf + 1024, sizeof buf - 1024, 7);
    cr_assert_gt(gp_entropy_estimate(buf, sizeof buf), 6.0);
}

Test(compress, incompressible_content_types) {
    const char *skip[] = {"image/jpeg",
                          "IMAGE/PNG",
                          "image/webp; q=1",
                          "video/mp4",
                          "audio/ogg",
                          "application/zip",
                          "application/gzip",
                          "application/x-gzip",
                          "application/zstd",
                          "application/x-7z-compressed",
                          "application/x-rar-compressed",
                          "application/x-bzip2",
                          "application/x-xz",
                          "font/woff2",
                          "application/pdf",
                          "  image/gif  ; charset=binary"};
    const char *keep[] = {"",
                          "text/html",
                          "application/json",
                          "image/svg+xml",
                          "Image/BMP",
                          "image/svg+xml; charset=utf-8",
                          "application/octet-stream",
                          "image/",
                          "imagery/jpeg",
                          "application/zipper",
                          "text/plain; x=image/png"};
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        cr_assert(gp_content_type_incompressible(gp_str_c(skip[i])), "%s", skip[i]);
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        cr_assert(!gp_content_type_incompressible(gp_str_c(keep[i])), "%s", keep[i]);
    cr_assert(!gp_content_type_incompressible((gp_str){NULL, 0}));
}

Test(compress, jpeg_and_small_payloads_skipped) {
    uint8_t text[4096];
    fill_text(text, sizeof text);
    cr_assert(gp_compress_worthwhile(GP_STR_LIT("text/plain"), text, sizeof text));
    cr_assert(!gp_compress_worthwhile(GP_STR_LIT("image/jpeg"), text, sizeof text));
    cr_assert(!gp_compress_worthwhile(GP_STR_LIT("text/plain"), text, GP_COMPRESS_MIN - 1));
    cr_assert(gp_compress_worthwhile(GP_STR_LIT("text/plain"), text, GP_COMPRESS_MIN));
}

Test(compress, decompress_refuses_over_cap) {
    size_t len = 10000;
    uint8_t *src = calloc(1, len), dst[256], out[9999];
    gp_zctx *z = gp_zctx_new(GP_ZSTD_LEVEL);
    ssize_t n = gp_compress(z, src, len, dst, sizeof dst);
    cr_assert_gt(n, 0); /* 10000 zeros: a zstd bomb in miniature */
    cr_assert_eq(gp_decompress(z, dst, (size_t)n, out, sizeof out), GP_ERR_TOO_LARGE);
    gp_zctx_free(z);
    free(src);
}

Test(compress, decompress_refuses_garbage_and_unknown_size) {
    gp_zctx *z = gp_zctx_new(GP_ZSTD_LEVEL);
    uint8_t out[4096], junk[64];
    memset(junk, 0x5a, sizeof junk);
    cr_assert_eq(gp_decompress(z, junk, sizeof junk, out, sizeof out), GP_ERR_COMPRESS);
    cr_assert_eq(gp_decompressed_size(junk, sizeof junk), GP_ERR_COMPRESS);
    cr_assert_eq(gp_decompress(z, junk, 0, out, sizeof out), GP_ERR_COMPRESS);

    /* A valid frame that does not declare its content size is refused. */
    uint8_t text[2048], frame[4096];
    fill_text(text, sizeof text);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    cr_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)));
    size_t m = ZSTD_compress2(c, frame, sizeof frame, text, sizeof text);
    cr_assert(!ZSTD_isError(m));
    ZSTD_freeCCtx(c);
    cr_assert_eq(ZSTD_decompress(out, sizeof out, frame, m), sizeof text); /* valid ... */
    cr_assert_eq(gp_decompressed_size(frame, m), GP_ERR_COMPRESS);         /* ... but refused */
    cr_assert_eq(gp_decompress(z, frame, m, out, sizeof out), GP_ERR_COMPRESS);

    /* A valid frame that is cut short, corrupted, or followed by a second frame. */
    ssize_t n = gp_compress(z, text, sizeof text, frame, sizeof frame);
    cr_assert_gt(n, 0);
    cr_assert_eq(gp_decompress(z, frame, (size_t)n - 1, out, sizeof out), GP_ERR_COMPRESS);
    memcpy(frame + n, frame, (size_t)n);
    cr_assert_eq(gp_decompress(z, frame, 2 * (size_t)n, out, sizeof out), GP_ERR_COMPRESS);
    frame[n / 2] ^= 0xff;
    ssize_t r = gp_decompress(z, frame, (size_t)n, out, sizeof out);
    cr_assert(r == GP_ERR_COMPRESS || (r == (ssize_t)sizeof text), "got %zd", r);
    gp_zctx_free(z);
}

Test(compress, empty_input) {
    gp_zctx *z = gp_zctx_new(GP_ZSTD_LEVEL);
    uint8_t dst[64], out[1];
    cr_assert_eq(gp_compress(z, (const uint8_t *)"", 0, dst, sizeof dst), 0); /* not smaller */
    size_t n = ZSTD_compress(dst, sizeof dst, "", 0, 3);
    cr_assert(!ZSTD_isError(n));
    cr_assert_eq(gp_decompress(z, dst, n, out, 0), 0);
    gp_zctx_free(z);
}
