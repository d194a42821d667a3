/* fuzz_froute.c — libFuzzer target for the HTTP front door's parsers of network input
 * (bridge/front/froute.c): the request target and Host (routing), the Authorization header,
 * and the hop-by-hop and header checks. The input is split at NULs into target, Host, domain
 * and an Authorization value. What routes must name a valid house (and service) and a path
 * starting with '/'; a credential is NUL-free and fits. */
#include "../../bridge/front/froute.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int valid_id(const char *s, int empty_ok) {
    size_t n = strlen(s);
    if (n == 0)
        return empty_ok;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
            return 0;
    return n <= 64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 4);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    memset(buf + size, 0, 4);
    const char *part[4];
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        part[i] = buf + off;
        off += strlen(buf + off) + 1;
        if (off > size + 3)
            off = size + 3;
    }
    fr_route r;
    const char *why = NULL;
    if (fr_route_parse(part[0], *part[1] ? part[1] : NULL, part[2], &r, &why) == 0) {
        assert(valid_id(r.house, 0) && valid_id(r.service, 1));
        assert(r.path && r.path[0] == '/');
    } else {
        assert(why && *why);
    }
    fr_route_clear(&r);
    char tok[64];
    if (fr_auth_token(part[3], tok, sizeof tok) == 0)
        assert(strlen(tok) > 0 && strlen(tok) < sizeof tok);
    (void)fr_hop_by_hop(part[0], part[1]);
    (void)fr_header_ok(part[0], part[1]);
    (void)fr_header_lists(part[1], part[2]);
    free(buf);
    return 0;
}
