/* front_tls.c — the front door's HTTP server over TLS (front_tls.h): an OpenSSL session on
 * memory BIOs as proto/adapters/uv_admin.c's byte filter (gp_admin_filter), so accepting,
 * reading, writing, timers and closing are the adapter's, written once. Ciphertext read from
 * the socket goes into the session and the plaintext out of it into the core; what the core
 * writes is encrypted and written as one socket write. While the core does not read (a request
 * is being answered), decrypted input stays in the session (held) and the adapter hands it
 * over when the core reads again. The adapter takes no OpenSSL (bridge/DESIGN.md "Layers"):
 * that is why the session lives here. */
#include "front_tls.h"

#include "adapters/uv_admin.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct tsess {
    SSL *ssl;
    BIO *rbio, *wbio; /* ciphertext in, ciphertext out (owned by ssl) */
} tsess;

static void *t_open(void *ud) {
    tsess *t = calloc(1, sizeof *t);
    SSL *ssl = t ? SSL_new(ud) : NULL;
    BIO *rb = ssl ? BIO_new(BIO_s_mem()) : NULL, *wb = rb ? BIO_new(BIO_s_mem()) : NULL;
    if (!wb) {
        BIO_free(rb);
        SSL_free(ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_accept_state(ssl);
    t->ssl = ssl, t->rbio = rb, t->wbio = wb;
    return t;
}

static void t_free(void *fc) {
    tsess *t = fc;
    SSL_free(t->ssl);
    free(t);
}

static void t_done(void *ud) {
    SSL_CTX_free(ud);
}

static int t_in(void *fc, const void *buf, size_t len) {
    tsess *t = fc;
    if (BIO_write(t->rbio, buf, (int)len) != (int)len)
        return -1;
    if (SSL_is_init_finished(t->ssl))
        return 0;
    int rc = SSL_do_handshake(t->ssl);
    if (rc > 0)
        return 0;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    return -1; /* not TLS, or a failed handshake */
}

static long t_read(void *fc, char *buf, size_t cap) {
    tsess *t = fc;
    if (!SSL_is_init_finished(t->ssl))
        return 0;
    int n = SSL_read(t->ssl, buf, (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    return -1; /* close_notify, or a broken session */
}

static int t_held(void *fc) {
    tsess *t = fc;
    return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

static int t_out(void *fc, const void *buf, size_t len) {
    tsess *t = fc;
    if (!SSL_is_init_finished(t->ssl))
        return -1;
    return len && SSL_write(t->ssl, buf, (int)len) != (int)len ? -1 : 0;
}

static size_t t_pending(void *fc) {
    return BIO_ctrl_pending(((tsess *)fc)->wbio);
}

static size_t t_take(void *fc, void *buf, size_t len) {
    int got = BIO_read(((tsess *)fc)->wbio, buf, (int)len);
    return got > 0 ? (size_t)got : 0;
}

static void t_shutdown(void *fc) {
    SSL_shutdown(((tsess *)fc)->ssl); /* close_notify */
}

gp_admin *br_front_tls_new(uv_loop_t *loop, const gp_admin_cfg *cfg, const char *cert,
                           const char *key, char *err, size_t errlen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[200];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        snprintf(err, errlen, "TLS certificate %s / key %s: %s", cert, key, why);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    const gp_admin_filter f = {ctx,    t_open, t_free,    t_done, t_in,      t_read,
                               t_held, t_out,  t_pending, t_take, t_shutdown};
    gp_admin *a = gp_admin_new_filtered(loop, cfg, &f); /* frees ctx when it fails */
    if (!a)
        snprintf(err, errlen, "out of memory");
    return a;
}
