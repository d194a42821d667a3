/* fuzz_rurl.c — libFuzzer target for the Redis address parser (bridge/store/rurl.c): addresses come
 * from flags, environment and config files. Whatever parses must survive a round trip through
 * its percent-encoded form, and the redaction must find every password the parser finds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rurl.h"

static void enc(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 4 < cap; s++)
        o += (size_t)snprintf(out + o, cap - o, "%%%02X", (unsigned char)*s);
    out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 2048)
        return 0;
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    gp_rurl u;
    char err[512];
    char red[4096];
    gp_rurl_redact(url, red, sizeof red);
    if (gp_rurl_parse(url, &u, err, sizeof err) == 0) {
        if (!u.host[0] || u.port < 1 || u.port > 65535 || u.db < 0)
            __builtin_trap();
        if (u.has_pass && !strstr(red, "***"))
            __builtin_trap(); /* a password the redaction did not find */
        char eu[GP_RURL_USER_MAX * 3 + 1], ep[GP_RURL_PASS_MAX * 3 + 1], again[4096];
        enc(u.user, eu, sizeof eu);
        enc(u.pass, ep, sizeof ep);
        snprintf(again, sizeof again, "%s://%s%s%s%s%s%s%s:%d/%d", u.tls ? "rediss" : "redis", eu,
                 u.has_pass ? ":" : "", u.has_pass ? ep : "", u.has_pass ? "@" : "",
                 strchr(u.host, ':') ? "[" : "", u.host, strchr(u.host, ':') ? "]" : "", u.port,
                 u.db);
        gp_rurl v;
        if (u.user[0] && !u.has_pass) /* a user alone has no form of its own */
            goto out;
        if (gp_rurl_parse(again, &v, err, sizeof err) != 0 || strcmp(v.host, u.host) ||
            strcmp(v.user, u.user) || strcmp(v.pass, u.pass) || v.port != u.port || v.db != u.db ||
            v.tls != u.tls || v.has_pass != u.has_pass)
            __builtin_trap();
    }
out:
    free(url);
    return 0;
}
