/* tlsfiles.c — see tlsfiles.h. */
#include "tlsfiles.h"

#include "conf.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PEM_MAX (1u << 20) /* a certificate chain or a key is far smaller */

static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* the daemon asks nobody for a passphrase */
}

/* What a PEM file holds, by its armour lines, for the messages. */
static void pem_kinds(const char *text, int *certs, int *keys, int *encrypted) {
    *certs = strstr(text, "-----BEGIN CERTIFICATE-----") != NULL;
    *keys = strstr(text, "PRIVATE KEY-----") != NULL;
    *encrypted = strstr(text, "ENCRYPTED") != NULL;
}

static void ssl_reason(char *out, size_t n) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, n, "%s", r ? r : "not PEM");
    ERR_clear_error();
}

static void asn1_time(const ASN1_TIME *t, char *out, size_t n) {
    BIO *b = BIO_new(BIO_s_mem());
    int k = b && ASN1_TIME_print(b, t) ? BIO_read(b, out, (int)n - 1) : 0;
    out[k > 0 ? k : 0] = '\0';
    BIO_free(b);
}

int br_tls_pair_check(const char *cert_opt, const char *cert, const char *key_opt, const char *key,
                      char *warn, size_t warnlen, char *err, size_t errlen) {
    warn[0] = '\0';
    char why[400];
    int rc = -1, certs, keys, enc;
    size_t clen = 0, klen = 0;
    char *ctext = gp_read_file(cert, PEM_MAX, &clen, why, sizeof why);
    if (!ctext) {
        snprintf(err, errlen, "%s: cannot read %s: give --%s the certificate's path", cert_opt, why,
                 cert_opt);
        return -1;
    }
    char *ktext = gp_read_file(key, PEM_MAX, &klen, why, sizeof why);
    if (!ktext) {
        snprintf(err, errlen, "%s: cannot read %s: give --%s the key's path", key_opt, why,
                 key_opt);
        free(ctext);
        return -1;
    }
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    BIO *cb = BIO_new_mem_buf(ctext, (int)clen), *kb = BIO_new_mem_buf(ktext, (int)klen);
    if (!cb || !kb) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    x = PEM_read_bio_X509(cb, NULL, no_password, NULL);
    if (!x) {
        pem_kinds(ctext, &certs, &keys, &enc);
        ssl_reason(why, sizeof why);
        if (keys)
            snprintf(err, errlen,
                     "%s: %s holds a private key, not a certificate: are --%s and --%s swapped? "
                     "--%s takes the certificate (-----BEGIN CERTIFICATE-----), --%s its key",
                     cert_opt, cert, cert_opt, key_opt, cert_opt, key_opt);
        else
            snprintf(err, errlen,
                     "%s: %s holds no PEM certificate (%s): give the certificate file, "
                     "-----BEGIN CERTIFICATE----- (convert a DER one with openssl x509 -inform "
                     "der -in FILE -out FILE.pem)",
                     cert_opt, cert, why);
        goto out;
    }
    pk = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
    if (!pk) {
        pem_kinds(ktext, &certs, &keys, &enc);
        ssl_reason(why, sizeof why);
        if (keys && enc)
            snprintf(err, errlen,
                     "%s: %s is encrypted and the bridge asks for no passphrase: store it "
                     "decrypted, mode 0600 (openssl pkey -in %s -out NEW.key)",
                     key_opt, key, key);
        else if (certs && !keys)
            snprintf(err, errlen,
                     "%s: %s holds a certificate, not a private key: are --%s and --%s swapped? "
                     "--%s takes the key (-----BEGIN PRIVATE KEY-----)",
                     key_opt, key, cert_opt, key_opt, key_opt);
        else
            snprintf(err, errlen,
                     "%s: %s holds no PEM private key (%s): give the key the certificate was "
                     "made with",
                     key_opt, key, why);
        goto out;
    }
    if (X509_check_private_key(x, pk) != 1) {
        ERR_clear_error();
        snprintf(err, errlen,
                 "%s: %s is not the key of the certificate in %s: give the key it was made with "
                 "(these two print the same: openssl x509 -noout -pubkey -in %s; openssl pkey "
                 "-pubout -in %s)",
                 key_opt, key, cert, cert, key);
        goto out;
    }
    /* Last: a swapped pair is said as such, not as a certificate readable by all. */
    if (gp_conf_secret_file_ok(key, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", key_opt, why);
        goto out;
    }
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        asn1_time(X509_get0_notAfter(x), when, sizeof when);
        snprintf(warn, warnlen,
                 "%s: the certificate in %s expired %s: houses will refuse it; renew it", cert_opt,
                 cert, when);
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        asn1_time(X509_get0_notBefore(x), when, sizeof when);
        snprintf(warn, warnlen,
                 "%s: the certificate in %s is valid only from %s: check this machine's clock",
                 cert_opt, cert, when);
    }
    rc = 0;
out:
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
    sodium_memzero(ktext, klen);
    free(ktext);
    free(ctext);
    ERR_clear_error();
    return rc;
}
