/* tlsrelay.h — TLS to Redis (rediss://) for a hiredis that has none (Debian bookworm ships
 * hiredis 0.14.1, built without hiredis_ssl). I/O side.
 *
 * An in-process relay: one thread with its own poll loop, so that it serves the bridge's
 * libuv loop and the blocking CLI alike. For each Redis node (host:port) it listens on a
 * UNIX socket in a private directory (mode 0700, created with mkdtemp: no other local user
 * can reach it, and the relay also checks the peer's uid), and hiredis connects there with
 * redisConnectUnix / redisAsyncConnectUnix. Each accepted connection gets its own TCP
 * connection and TLS session to the node: TLS 1.2 or newer, the certificate verified against
 * the system's CA store or --redis-ca-file, the name (or IP address) checked, SNI sent, and
 * a client certificate presented when one is configured (Redis's tls-auth-clients). A
 * failed verification closes the client's connection: never a fallback to plain text. The
 * reason is kept per node for gp_tlsrelay_last_error, so that callers can say why.
 *
 * Endpoints are made lazily, so a Redis Cluster's MOVED/ASK naming another node simply gets
 * another socket. Thread-safe; after a fork the child starts afresh (a new thread and
 * directory on first use). */
#ifndef GP_TLSRELAY_H
#define GP_TLSRELAY_H

#include <stddef.h>

/* Optional, before the first endpoint: CA file (NULL: the system's store), client
 * certificate and key (both or neither). Loads and checks them now. 0, or -1 with a message
 * in err. Called again, it replaces the configuration for new connections. */
int gp_tlsrelay_config(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                       size_t errlen);

/* The UNIX socket path that reaches host:port over TLS (the relay thread starts on first
 * use). 0, or -1 with a message in err. */
int gp_tlsrelay_path(const char *host, int port, char *path, size_t cap, char *err, size_t errlen);

/* Why the last TLS connection to host:port failed ("" when the last one succeeded or there
 * was none): "certificate verify failed: ...", "connect: ...", ... */
void gp_tlsrelay_last_error(const char *host, int port, char *out, size_t cap);

/* Stops the thread, closes every connection, removes the sockets and the directory (also
 * registered with atexit). */
void gp_tlsrelay_stop(void);

#endif
