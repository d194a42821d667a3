/* froute.h — the HTTP front door's pure parts (bridge/front/, README.md "The HTTP front
 * door"): which house and service a request names (its path or its Host), the token file and
 * its check, the Authorization header, and which headers do not cross a proxy. Pure: no
 * socket, no loop, no Redis; front.c does the I/O, tests/unit/froute.c and the fuzz targets
 * tests/fuzz/fuzz_froute.c, fuzz_ftokens.c feed it. */
#ifndef BR_FROUTE_H
#define BR_FROUTE_H

#include <stddef.h>
#include <stdint.h>

#define FR_HOUSE_MAX 64   /* a house id (proto/auth.h GP_MAX_HOUSE_ID) */
#define FR_SERVICE_MAX 64 /* a service name */
#define FR_GLOB_MAX 128

/* Where a request goes: the house, its named upstream ("" = the default one) and the path
 * (with query) to ask it for, starting with '/'. */
typedef struct fr_route {
    char house[FR_HOUSE_MAX + 1];
    char service[FR_SERVICE_MAX + 1];
    const char *path; /* into the target given, or `owned` */
    char *owned;      /* "/" + query when the target names only the house (fr_route_clear) */
} fr_route;

/* Routes a request target (as sent: path and query) and its Host header (NULL: none) when
 * the front door serves under domain (NULL or "": no Host routing):
 *   Host <house>.<domain> or <service>.<house>.<domain>: the whole target;
 *   else /h/<house>/<rest> or /h/<house>@<service>/<rest>: "/<rest>".
 * 0, or -1 with a reason for a 404 in *why (static). */
int fr_route_parse(const char *target, const char *host, const char *domain, fr_route *out,
                   const char **why);
void fr_route_clear(fr_route *r);

/* A service name: 1..FR_SERVICE_MAX of [A-Za-z0-9._-]. */
int fr_service_valid(const char *s, size_t len);

/* The token file: one `TOKEN HOUSE-GLOB [SERVICE-GLOB]` a line (fnmatch globs; the service
 * glob defaults to `*`, which also matches the default upstream), blank lines and `#`
 * comments ignored. Tokens are kept as BLAKE2b hashes only. */
typedef struct fr_token {
    uint8_t hash[32];
    char house_glob[FR_GLOB_MAX + 1];
    char service_glob[FR_GLOB_MAX + 1];
} fr_token;
typedef struct fr_tokens {
    fr_token *v;
    size_t n;
} fr_tokens;

/* Parses text (len bytes, need not be terminated). 0, or -1 with "line N: reason" in err
 * (the token itself never appears in it). out is empty on failure. */
int fr_tokens_parse(const char *text, size_t len, fr_tokens *out, char *err, size_t errlen);
void fr_tokens_free(fr_tokens *t); /* wipes the hashes */

enum { FR_AUTH_OK = 0, FR_AUTH_UNKNOWN = -401, FR_AUTH_FORBIDDEN = -403 };
/* Whether token (len bytes) may reach house/service ("" = default upstream): every line is
 * compared, in constant time on the hashes, whatever matched before. */
int fr_tokens_check(const fr_tokens *t, const char *token, size_t len, const char *house,
                    const char *service);

/* The credential of an Authorization header value: `Bearer TOKEN`, or `Basic base64(user:
 * TOKEN)` (the password; a value without ':' is the token itself). 0 with it in out (NUL-
 * terminated), or -1 (absent, malformed, or longer than cap - 1). */
int fr_auth_token(const char *authorization, char *out, size_t cap);

/* 1 for a header that is the connection's, not the message's (RFC 9110 7.6.1: connection,
 * keep-alive, proxy-connection, proxy-authenticate, proxy-authorization, te, trailer,
 * transfer-encoding, upgrade, and every name the Connection value lists), compared without
 * case. connection may be NULL. */
int fr_hop_by_hop(const char *name, const char *connection);

/* 1 when a comma-separated header value (Connection, Upgrade) lists token, compared without
 * case. value may be NULL. */
int fr_header_lists(const char *value, const char *token);

/* A header fit to be written in a response: name an HTTP token, value without control bytes
 * other than tab. */
int fr_header_ok(const char *name, const char *value);

#endif
