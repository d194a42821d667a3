/* tls.c — the house's TLS client on memory BIOs (tls.h). The settings are curl's defaults for
 * an https:// URL, which the house's HTTP requests to its upstreams get: the peer's chain
 * verified, its name (or IP address) checked against the certificate, SNI for names only;
 * and nothing older than TLS 1.2. */
#include "tls.h"

#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (e && !r && ERR_SYSTEM_ERROR(e)) /* errno, packed: OpenSSL has no text for it */
        r = strerror(ERR_GET_REASON(e));
    else if (e && !r) {
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

/* --- why a certificate was refused, and what to do ------------------------------------------ */

/* The names a certificate is for: its subjectAltName's DNS and IP entries, else its CN. */
static void cert_names(X509 *x, char *out, size_t n) {
    size_t len = 0;
    out[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && len + 1 < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char one[INET6_ADDRSTRLEN + 8] = "";
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            snprintf(one, sizeof one, "%.*s",
                     ASN1_STRING_length(s) > 60 ? 60 : ASN1_STRING_length(s),
                     (const char *)ASN1_STRING_get0_data(s));
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *s = g->d.iPAddress;
            int l = ASN1_STRING_length(s);
            if (l == 4 || l == 16)
                inet_ntop(l == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), one, sizeof one);
        }
        if (one[0]) {
            int k = snprintf(out + len, n - len, "%s%s", len ? ", " : "", one);
            len = k < 0 || (size_t)k >= n - len ? n - 1 : len + (size_t)k;
        }
    }
    GENERAL_NAMES_free(gens);
    if (!out[0]) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)n);
        if (!out[0])
            snprintf(out, n, "no name");
    }
}

static void cert_time(const ASN1_TIME *t, char *out, size_t n) {
    BIO *b = BIO_new(BIO_s_mem());
    int k = b && ASN1_TIME_print(b, t) ? BIO_read(b, out, (int)n - 1) : 0;
    out[k > 0 ? k : 0] = '\0';
    if (k <= 0)
        snprintf(out, n, "?");
    BIO_free(b);
}

int hs_tls_verify_failure(const hs_tls *t, const hs_tls_peer *p, char *why, size_t wn, char *fix,
                          size_t fn) {
    if (!t->ssl || !(SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER))
        return 0;
    long v = SSL_get_verify_result(t->ssl);
    if (v == X509_V_OK)
        return 0;
    /* The chain the peer sent (the leaf first, client side) is kept though it was refused. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(t->ssl);
    X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    const char *ca = p->ca_file && *p->ca_file ? p->ca_file : NULL;
    char what[160] = "?";
    snprintf(why, wn, "the %s's certificate is not trusted: %s", p->peer,
             X509_verify_cert_error_string(v));
    switch (v) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        if (leaf)
            cert_names(leaf, what, sizeof what);
        snprintf(fix, fn,
                 "the certificate is for %s, not %s: dial one of its names, or give the %s a "
                 "certificate for %s",
                 what, p->host, p->peer, p->host);
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (leaf)
            cert_time(X509_get0_notAfter(leaf), what, sizeof what);
        snprintf(fix, fn,
                 "renew the %s's certificate (it expired %s), or set this machine's clock right "
                 "if it is wrong",
                 p->peer, what);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (leaf)
            cert_time(X509_get0_notBefore(leaf), what, sizeof what);
        snprintf(fix, fn, "the certificate is valid from %s: check this machine's clock", what);
        break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        if (ca)
            snprintf(fix, fn,
                     "the certificate is self-signed and %s %s is not it: give %s the %s's own "
                     "certificate file (its --tls-cert)",
                     p->ca_opt, ca, p->ca_opt, p->peer);
        else
            snprintf(fix, fn,
                     "the certificate is self-signed: give %s the %s's certificate file (its "
                     "--tls-cert) to trust it",
                     p->ca_opt, p->peer);
        break;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        if (leaf)
            X509_NAME_oneline(X509_get_issuer_name(leaf), what, sizeof what);
        if (ca)
            snprintf(fix, fn,
                     "%s %s does not hold the CA that signed the %s's certificate (issuer %s): "
                     "give %s that CA's certificate",
                     p->ca_opt, ca, p->peer, what, p->ca_opt);
        else
            snprintf(fix, fn,
                     "give %s the certificate of the CA that signed the %s's (issuer %s): "
                     "without it only the system's CAs are trusted",
                     p->ca_opt, p->peer, what);
        break;
    default:
        snprintf(fix, fn,
                 "look at the %s's certificate chain: openssl s_client -connect %s:%d -showcerts",
                 p->peer, p->host, p->port);
    }
    ERR_clear_error();
    return 1;
}

static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* an encrypted key is not decrypted: it is only counted */
}

int hs_tls_ca_file_check(const char *option, const char *path, const char *peer, char *err,
                         size_t errlen) {
    BIO *b = BIO_new_file(path, "r");
    if (!b) {
        int e = errno;
        ERR_clear_error();
        snprintf(err, errlen, "%s: cannot read %s: %s", option, path, strerror(e));
        return -1;
    }
    STACK_OF(X509_INFO) *inf = PEM_X509_INFO_read_bio(b, NULL, no_password, NULL);
    BIO_free(b);
    int certs = 0, keys = 0;
    for (int i = 0; inf && i < sk_X509_INFO_num(inf); i++) {
        const X509_INFO *x = sk_X509_INFO_value(inf, i);
        certs += x->x509 != NULL;
        keys += x->x_pkey != NULL || x->enc_data != NULL;
    }
    sk_X509_INFO_pop_free(inf, X509_INFO_free);
    ERR_clear_error();
    if (!certs) {
        /* A bare PEM private key is not an X509_INFO entry in every OpenSSL: look for it. */
        size_t len = 0;
        char *text = gp_read_file(path, 1 << 20, &len, NULL, 0);
        if (text && strstr(text, "PRIVATE KEY-----"))
            keys = 1;
        free(text);
        snprintf(err, errlen,
                 "%s: %s holds %s: give the certificate (PEM) of the CA that signed the %s's "
                 "certificate, or for a self-signed %s that certificate itself (its --tls-cert "
                 "file)",
                 option, path,
                 keys ? "a private key, not a certificate (never hand out a key)"
                      : "no certificate (PEM, -----BEGIN CERTIFICATE-----)",
                 peer, peer);
        return -1;
    }
    char cerr[300];
    SSL_CTX *ctx = hs_tls_ctx_new(path, cerr, sizeof cerr);
    if (!ctx) {
        snprintf(err, errlen, "%s: %s", option, cerr);
        return -1;
    }
    SSL_CTX_free(ctx);
    return 0;
}
