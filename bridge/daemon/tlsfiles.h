/* tlsfiles.h — the bridge's certificate and key files, loaded and checked before use (at start
 * and by --check-config), so that a swapped pair, a key that is not the certificate's, or a
 * key others can read stops the start with a message naming the file and what to do, instead
 * of a listener that fails later with OpenSSL's codes (or houses that cannot verify it).
 * Used by main.c for --tls-cert/--tls-key and --http-cert/--http-key. I/O side (reads files). */
#ifndef BR_TLSFILES_H
#define BR_TLSFILES_H

#include <stddef.h>

/* A server certificate (PEM, with its chain) and its private key, given by the options named
 * cert_opt and key_opt ("tls-cert", "tls-key"): both parse, the key is the certificate's
 * (X509_check_private_key), and then the key file is not readable by others (as a secret
 * file: gp_conf_secret_file_ok). 0, or -1 with the message in err. A certificate that expired or
 * is not valid yet is no error: *warn says so ("" when fine; at least 256 bytes). */
int br_tls_pair_check(const char *cert_opt, const char *cert, const char *key_opt, const char *key,
                      char *warn, size_t warnlen, char *err, size_t errlen);

#endif
