/* compress.h — per-frame zstd compression with a skip heuristic (pure).
 *
 * A body chunk is compressed only when it is likely to shrink: content types that are
 * already compressed (images, video, audio, zip/gzip/zstd/…) are skipped outright, and for the
 * rest a byte-entropy estimate over a small sample decides. Even then the compressed form is
 * used only if it is actually smaller. Decompression refuses frames without a declared
 * content size and any whose size exceeds the caller's limit, so a zstd bomb costs nothing. */
#ifndef GP_COMPRESS_H
#define GP_COMPRESS_H

#include "gp.h"

#define GP_ZSTD_LEVEL 3
#define GP_ENTROPY_SAMPLE 4096   /* bytes sampled for the estimate */
#define GP_ENTROPY_SKIP_BITS 7.2 /* bits/byte above which we do not try */
#define GP_COMPRESS_MIN 256      /* smaller payloads are never worth it */

typedef struct gp_zctx gp_zctx;

gp_zctx *gp_zctx_new(int level); /* NULL on allocation failure */
void gp_zctx_free(gp_zctx *z);   /* NULL ok */

/* Shannon entropy in bits per byte of up to GP_ENTROPY_SAMPLE bytes sampled evenly across
 * p[0..len). 0 for len 0. */
double gp_entropy_estimate(const uint8_t *p, size_t len);

/* 1 if content_type (may be empty; parameters like "; charset=" ignored, case-insensitive)
 * names an already-compressed format. */
int gp_content_type_incompressible(gp_str content_type);

/* 1 if compressing p[0..len) is worth trying: len >= GP_COMPRESS_MIN, content type not
 * incompressible, entropy estimate below GP_ENTROPY_SKIP_BITS. */
int gp_compress_worthwhile(gp_str content_type, const uint8_t *p, size_t len);

size_t gp_compress_bound(size_t len);

/* Compresses src into dst[0..cap). Returns the compressed size if it is smaller than len,
 * 0 if it is not (send raw), GP_ERR_COMPRESS on zstd failure. A result that does not fit in
 * cap also counts as "not smaller" (0), so cap = len - 1 asks for strict savings only. */
ssize_t gp_compress(gp_zctx *z, const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* Decompresses one zstd frame into dst[0..cap). The frame must declare its content size,
 * and that size must be <= cap. Returns the size, or GP_ERR_COMPRESS / GP_ERR_TOO_LARGE. */
GP_WUR ssize_t gp_decompress(gp_zctx *z, const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* Size a zstd frame declares (for sizing dst before gp_decompress), or a negative error if
 * it declares none or is not a zstd frame. */
GP_WUR ssize_t gp_decompressed_size(const uint8_t *src, size_t len);

#endif
