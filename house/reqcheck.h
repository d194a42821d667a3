/* reqcheck.h — what the house checks in a request before it calls an upstream (pure: no I/O,
 * no globals; unit-tested in tests/unit/reqcheck.c, fuzzed by tests/fuzz/fuzz_reqcheck.c).
 *
 * The house is the trust boundary of its upstreams: a producer (through Redis and a bridge)
 * chooses the path and headers, and the upstream must see exactly what the house checked. */
#ifndef GP_HOUSE_REQCHECK_H
#define GP_HOUSE_REQCHECK_H

#include <stddef.h>

/* Normalises a request target ("/path?query", starting with '/') for joining to a service's
 * base URL: RFC 3986 remove_dot_segments on the path part, where a segment counts as a dot
 * segment after %2e/%2E are read as '.' (".%2e", "%2E%2e", …). Refused (-1, *why set):
 *   - a ".." that would climb above the start: the result would leave the base path;
 *   - '\' and %5c, %2f, %00 anywhere in the path part: servers that read them as '/' (or
 *     end the string there) would resolve dot segments the house never saw;
 *   - a dot segment followed by ';' ("..;/", "."): some servers drop ";params" first.
 * The query and fragment ('?' or '#' onwards) are kept as they are. On success writes the
 * NUL-terminated result (never longer than the input) into out[cap] and returns its length;
 * cap >= len + 1 always suffices. */
int hs_path_clean(const char *path, size_t len, char *out, size_t cap, const char **why);

/* 1 if `name` is an HTTP field name (an RFC 7230 token, 1..256 bytes), else 0. */
int hs_header_name_ok(const char *name, size_t len);
/* 1 if `value` holds no control byte but HTAB (no C0, no DEL; bytes >= 0x80 are fine), at
 * most 65535 bytes, else 0. */
int hs_header_value_ok(const char *value, size_t len);

/* Copies at most out_cap-1 bytes of s into out for a message, with every byte outside
 * printable ASCII replaced by '?' (and "..." when cut). Returns out. */
char *hs_printable(const char *s, size_t len, char *out, size_t out_cap);

#endif
