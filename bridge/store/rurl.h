/* rurl.h — the one parser of Redis addresses, shared by the bridge, the `ghostport` CLI (and
 * its `top`), the test harness and the load/bench tools. Pure: no I/O except
 * gp_rurl_password_file, which reads one file.
 *
 * Accepted forms (as redis-cli -u and the client libraries read them):
 *   redis://[user[:password]@]host[:port][/db]    plain TCP
 *   rediss://[user[:password]@]host[:port][/db]   TLS (bridge/store/tlsrelay.h)
 *   host[:port]                                   plain TCP, db 0
 * host is a name, an IPv4 address or an IPv6 address in brackets ([::1]:6379). Port 6379 and
 * db 0 by default. In the user information, "x@" alone is a password (the `default` user,
 * Redis's requirepass), "user:x@" a user and its password (Redis 6 ACLs), and both may be
 * percent-encoded (%40 for '@', %3A for ':', %2F for '/'). The password is a secret: it is
 * never part of an error message, and gp_rurl_redact gives the URL as logs may show it. */
#ifndef GP_RURL_H
#define GP_RURL_H

#include <stddef.h>

#define GP_RURL_HOST_MAX 256
#define GP_RURL_USER_MAX 256
#define GP_RURL_PASS_MAX 512

typedef struct gp_rurl {
    char host[GP_RURL_HOST_MAX]; /* without brackets */
    int port, db;
    int tls;                     /* rediss:// */
    char user[GP_RURL_USER_MAX]; /* "" : the default user */
    char pass[GP_RURL_PASS_MAX];
    int has_pass; /* AUTH is sent (pass may legitimately be empty only with has_pass 0) */
} gp_rurl;

/* Parses url into *u (zeroed first). 0, or -1 with a message in err that quotes the
 * redacted URL, never the password. */
int gp_rurl_parse(const char *url, gp_rurl *u, char *err, size_t errlen);

/* The URL with its password replaced by "***" (whatever the URL's validity), for logs and
 * error messages. out gets at most cap bytes, NUL-terminated. */
void gp_rurl_redact(const char *url, char *out, size_t cap);

/* "host:port" or "[v6]:port" into out (for logs). */
void gp_rurl_hostport(const char *host, int port, char *out, size_t cap);

/* Credentials given beside the URL: user (NULL or "": keep the URL's) replaces the URL's
 * user; the first line of password_file (NULL or "": none) replaces the URL's password. The
 * file must not be empty. 0, or -1 with a message in err (naming the file, never its
 * contents). I/O: reads the file. */
int gp_rurl_credentials(gp_rurl *u, const char *user, const char *password_file, char *err,
                        size_t errlen);

/* Zeroes the password (explicit_bzero: not optimised away). */
void gp_rurl_wipe(gp_rurl *u);

#endif
