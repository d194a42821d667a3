/* tls.c — the house's TLS client on memory BIOs (tls.h). The settings are curl's defaults for
 * an https:// URL, which the house's HTTP requests to its upstreams get: the peer's chain
 * verified, its name (or IP address) checked against the certificate, SNI for names only;
 * and nothing older than TLS 1.2. */
#include "tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

SSL_CTX *hs_tls_ctx_new(const char *ca_file, char *err, size_t errlen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot make a client context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                 : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        char e[160];
        ERR_error_string_n(ERR_get_error(), e, sizeof e);
        ERR_clear_error();
        snprintf(err, errlen, "TLS: cannot load %s: %s",
                 ca_file && *ca_file ? ca_file : "the system's CA certificates", e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* An IP literal (what a URL's host is when it is not a name): checked against the
 * certificate's IP addresses, and never sent as SNI (RFC 6066 allows names only). */
static int host_is_ip(const char *host) {
    return strchr(host, ':') || strspn(host, "0123456789.") == strlen(host);
}

int hs_tls_start(hs_tls *t, SSL_CTX *ctx, const char *host, int verify, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio), BIO_free(t->wbio);
        SSL_free(t->ssl);
        memset(t, 0, sizeof *t);
        ERR_clear_error();
        snprintf(err, errlen, "out_of_memory");
        return -1;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    int ip = host_is_ip(host), ok = 1;
    if (!ip)
        ok = SSL_set_tlsext_host_name(t->ssl, host) == 1;
    if (!verify)
        SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
    else if (ok && ip)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    else if (ok)
        ok = SSL_set1_host(t->ssl, host) == 1;
    if (!ok) { /* a host the certificate could not be checked against: never unchecked */
        ERR_clear_error();
        snprintf(err, errlen,
                 "TLS: \"%.100s\" is not a host name or IP address to check a "
                 "certificate against",
                 host);
        hs_tls_free(t);
        return -1;
    }
    return 0;
}

void hs_tls_free(hs_tls *t) {
    SSL_free(t->ssl); /* and its BIOs */
    memset(t, 0, sizeof *t);
}

int hs_tls_feed(hs_tls *t, const void *p, size_t n) {
    while (n) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        if (BIO_write(t->rbio, p, k) != k)
            return -1;
        p = (const char *)p + k, n -= (size_t)k;
    }
    return 0;
}

int hs_tls_handshake(hs_tls *t) {
    ERR_clear_error(); /* what SSL_get_error and hs_tls_why read is ours */
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(t->ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

int hs_tls_read(hs_tls *t, void *p, size_t cap) {
    ERR_clear_error();
    int k = SSL_read(t->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);
    if (k > 0)
        return k;
    switch (SSL_get_error(t->ssl, k)) {
    case SSL_ERROR_WANT_READ:
        return HS_TLS_WANT;
    case SSL_ERROR_ZERO_RETURN:
        return HS_TLS_EOF;
    default:
        return HS_TLS_FAIL;
    }
}

int hs_tls_buffered(const hs_tls *t) {
    return SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->rbio) > 0;
}

int hs_tls_write(hs_tls *t, const void *p, size_t n) {
    ERR_clear_error();
    while (n) {
        int k = SSL_write(t->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (k <= 0) /* memory BIOs take everything: this is a broken session */
            return -1;
        p = (const char *)p + k, n -= (size_t)k;
    }
    return 0;
}

int hs_tls_close(hs_tls *t) {
    ERR_clear_error();
    /* 0: ours is sent, the peer's not seen yet (it may still send); 1: both. */
    return SSL_shutdown(t->ssl) >= 0 ? 0 : -1;
}

size_t hs_tls_pending(const hs_tls *t) {
    return t->wbio ? BIO_ctrl_pending(t->wbio) : 0;
}

size_t hs_tls_pull(hs_tls *t, void *p, size_t cap) {
    int n = BIO_read(t->wbio, p, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

void hs_tls_why(const hs_tls *t, const char *peer, const char *hint, char *why, size_t n) {
    /* OpenSSL records a failed verification even when told not to act on it */
    long v = t->ssl && (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER)
                 ? SSL_get_verify_result(t->ssl)
                 : X509_V_OK;
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    const char *what =
        t->ssl && SSL_is_init_finished(t->ssl) ? "TLS failed" : "TLS handshake failed";
    char es[160];
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (e && !r) {
        ERR_error_string_n(e, es, sizeof es);
        r = es;
    }
    if (v != X509_V_OK)
        snprintf(why, n, "TLS: the %s's certificate is not trusted: %s (%s)", peer,
                 X509_verify_cert_error_string(v), hint);
    else if (r)
        snprintf(why, n, "%s: %s", what, r);
    else
        snprintf(why, n, "%s: the connection closed", what);
}
