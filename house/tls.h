/* tls.h — the house's TLS client, OpenSSL on memory BIOs: the connection to a bridge
 * (tr_ws.c, wss://) and the stream connections to https:// upstreams (streams_svc.c) run it over
 * their own libuv sockets. No I/O here: the owner of a socket feeds what it reads
 * (hs_tls_feed), takes the plaintext out (hs_tls_read), puts its plaintext in (hs_tls_write)
 * and writes what hs_tls_pull hands it to the socket, in that order, after each of those.
 * Memory BIOs take every byte they are given, so nothing here ever waits for the socket; the
 * owner bounds what it feeds. */
#ifndef HS_TLS_H
#define HS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* A client context: TLS 1.2 or newer, peers verified against the certificates of ca_file
 * (PEM) or, NULL or "", the system's; an idle session keeps no buffers
 * (SSL_MODE_RELEASE_BUFFERS). NULL with err filled ("TLS: cannot load ..."). */
SSL_CTX *hs_tls_ctx_new(const char *ca_file, char *err, size_t errlen);

/* One client session. Zeroed: none (hs_tls_free and hs_tls_active are fine on it). */
typedef struct hs_tls {
    SSL *ssl; /* owns both BIOs */
    BIO *rbio, *wbio;
} hs_tls;

/* Starts a session of ctx for host: a name is sent as SNI and must be one of the
 * certificate's names, an IP address (v4 dotted, or v6 without brackets) one of its IP
 * addresses; verify 0: any certificate is taken (--insecure). 0, or -1 with err filled
 * ("out_of_memory", or why host cannot be checked). */
int hs_tls_start(hs_tls *t, SSL_CTX *ctx, const char *host, int verify, char *err, size_t errlen);
void hs_tls_free(hs_tls *t); /* and zeroes it */

static inline int hs_tls_active(const hs_tls *t) {
    return t->ssl != NULL;
}

/* n bytes read from the socket. 0, or -1 out of memory. */
int hs_tls_feed(hs_tls *t, const void *p, size_t n);

/* The handshake, as far as the bytes fed allow: 1 complete (now or before), 0 waiting for
 * the peer, -1 failed (hs_tls_why). Its messages are to be pulled either way. */
int hs_tls_handshake(hs_tls *t);

#define HS_TLS_WANT 0  /* hs_tls_read: every byte fed is taken, more are needed */
#define HS_TLS_FAIL -1 /* the session is broken (hs_tls_why) */
#define HS_TLS_EOF -2  /* the peer's close_notify: it sends nothing more */
/* Plaintext, up to cap bytes into p: their number, or one of the above. */
int hs_tls_read(hs_tls *t, void *p, size_t cap);
/* 1 while the session holds bytes fed but not yet read out as plaintext (a partial record,
 * or plaintext that did not fit the last hs_tls_read). */
int hs_tls_buffered(const hs_tls *t);

/* All n bytes of plaintext in, encrypted for the socket: 0, or -1 (hs_tls_why). */
int hs_tls_write(hs_tls *t, const void *p, size_t n);
/* Our close_notify (we send nothing more; the peer may). 0, or -1 (hs_tls_why). */
int hs_tls_close(hs_tls *t);

/* Bytes for the socket: how many wait, and up to cap of them into p (their number). */
size_t hs_tls_pending(const hs_tls *t);
size_t hs_tls_pull(hs_tls *t, void *p, size_t cap);

/* Why the session failed, in words that say what to do: peer names whose certificate it was
 * ("bridge", "upstream"), hint how to trust it ("--ca-file names the CA that signed it").
 * Takes the thread's OpenSSL error queue. */
void hs_tls_why(const hs_tls *t, const char *peer, const char *hint, char *why, size_t n);

/* Where a peer's certificate is checked from, for the words of hs_tls_verify_failure: the peer
 * ("bridge", "upstream"), host and port as dialed, and the option that names the CAs trusted
 * ("--ca-file") with its value (NULL or "": the system's CAs). */
typedef struct hs_tls_peer {
    const char *peer, *host;
    int port;
    const char *ca_opt, *ca_file;
} hs_tls_peer;

/* After a failed handshake: 1 when what failed is the peer's certificate, with OpenSSL's
 * reason in words into why ("the bridge's certificate is not trusted: certificate has
 * expired") and what to do about that reason into fix; 0 when the certificate was not what
 * failed (nothing written). */
int hs_tls_verify_failure(const hs_tls *t, const hs_tls_peer *p, char *why, size_t wn, char *fix,
                          size_t fn);

/* 0 when the file (option's value, e.g. "ca-file") holds at least one PEM certificate that
 * OpenSSL takes as a CA to trust; else -1 with what is wrong and what to do in err ("FILE
 * holds a private key, not a certificate: ..."), peer ("bridge") the one whose certificate
 * it is to check. */
int hs_tls_ca_file_check(const char *option, const char *path, const char *peer, char *err,
                         size_t errlen);

#endif
