/* froute.c — the HTTP front door's pure parts: routes, tokens, credentials, hop-by-hop
 * headers (froute.h). Pure. */
#include "froute.h"
#include "gp.h"

#include <fnmatch.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* House ids and service names follow the protocol's one rule for names. */
static int ids_valid(const char *s, size_t len, size_t max) {
    return gp_name_ok((gp_str){(const uint8_t *)s, len}, max);
}

int fr_service_valid(const char *s, size_t len) {
    return ids_valid(s, len, FR_SERVICE_MAX);
}

static int set_ids(fr_route *r, const char *house, size_t hl, const char *svc, size_t sl) {
    if (!ids_valid(house, hl, FR_HOUSE_MAX) || (svc && !fr_service_valid(svc, sl)))
        return -1;
    memcpy(r->house, house, hl);
    r->house[hl] = '\0';
    if (svc)
        memcpy(r->service, svc, sl);
    r->service[svc ? sl : 0] = '\0';
    return 0;
}

/* Host routing: "<house>.<domain>" or "<service>.<house>.<domain>" (port and case ignored).
 * 1 routed, 0 not under the domain, -1 under it but not a valid name. */
static int route_host(const char *host, const char *domain, fr_route *r) {
    size_t hl = strcspn(host, ":"), dl = strlen(domain);
    if (host[0] == '[' || hl <= dl + 1 || host[hl - dl - 1] != '.' ||
        strncasecmp(host + hl - dl, domain, dl) != 0)
        return 0;
    size_t nl = hl - dl - 1; /* the labels before the domain */
    char names[2 * FR_HOUSE_MAX + 2];
    if (nl >= sizeof names)
        return -1;
    for (size_t i = 0; i < nl; i++) { /* DNS names are case-insensitive: house ids lower-case */
        char c = host[i];
        names[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    names[nl] = '\0';
    char *dot = memchr(names, '.', nl);
    if (!dot)
        return set_ids(r, names, nl, NULL, 0) == 0 ? 1 : -1;
    if (memchr(dot + 1, '.', nl - (size_t)(dot + 1 - names)))
        return -1; /* a house id with a dot cannot be named by Host */
    return set_ids(r, dot + 1, nl - (size_t)(dot + 1 - names), names, (size_t)(dot - names)) == 0
               ? 1
               : -1;
}

int fr_route_parse(const char *target, const char *host, const char *domain, fr_route *r,
                   const char **why) {
    memset(r, 0, sizeof *r);
    *why = "no route: use /h/<house>/<path> or /h/<house>@<service>/<path>";
    if (!target || target[0] != '/')
        return -1;
    if (domain && *domain && host && *host) {
        int rc = route_host(host, domain, r);
        if (rc < 0) {
            *why = "the Host names no valid house or service";
            return -1;
        }
        if (rc > 0) {
            r->path = target;
            return 0;
        }
    }
    if (strncmp(target, "/h/", 3) != 0)
        return -1;
    const char *name = target + 3;
    size_t nl = strcspn(name, "/?");
    const char *at = memchr(name, '@', nl);
    int rc = at ? set_ids(r, name, (size_t)(at - name), at + 1, nl - (size_t)(at + 1 - name))
                : set_ids(r, name, nl, NULL, 0);
    if (rc != 0) {
        *why = "not a valid house id or service name in the path";
        return -1;
    }
    const char *rest = name + nl;
    if (*rest == '/') {
        r->path = rest;
        return 0;
    }
    size_t ql = strlen(rest); /* "" or "?query" */
    if (!(r->owned = malloc(ql + 2))) {
        *why = "out of memory";
        return -1;
    }
    r->owned[0] = '/';
    memcpy(r->owned + 1, rest, ql + 1);
    r->path = r->owned;
    return 0;
}

void fr_route_clear(fr_route *r) {
    free(r->owned);
    r->owned = NULL;
    r->path = NULL;
}

/* --- tokens ------------------------------------------------------------------------------ */

static void hash_token(const char *tok, size_t len, uint8_t out[32]) {
    crypto_generichash(out, 32, (const unsigned char *)tok, len, NULL, 0);
}

static int fail(char *err, size_t errlen, size_t line, const char *why) {
    snprintf(err, errlen, "line %zu: %s", line, why);
    return -1;
}

/* One line (terminated copy): 0 added, 1 blank or comment, -1 error. */
static int parse_line(char *s, fr_tokens *t, char *err, size_t errlen, size_t line) {
    char *f[4];
    int n = 0;
    for (char *save = NULL, *w = strtok_r(s, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save))
        if (n < 4)
            f[n++] = w;
        else
            return fail(err, errlen, line,
                        "too many fields (want TOKEN HOUSE-GLOB [SERVICE-GLOB])");
    if (n == 0 || f[0][0] == '#')
        return 1;
    if (n < 2 || n > 3)
        return fail(err, errlen, line, "want TOKEN HOUSE-GLOB [SERVICE-GLOB]");
    if (strlen(f[0]) < 16)
        return fail(err, errlen, line, "token shorter than 16 characters");
    for (const char *p = f[0]; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return fail(err, errlen, line, "token holds a non-printable byte");
    if (strlen(f[1]) > FR_GLOB_MAX || (n == 3 && strlen(f[2]) > FR_GLOB_MAX))
        return fail(err, errlen, line, "glob longer than 128 characters");
    fr_token *v = realloc(t->v, (t->n + 1) * sizeof *v);
    if (!v)
        return fail(err, errlen, line, "out of memory");
    t->v = v;
    fr_token *k = &v[t->n++];
    hash_token(f[0], strlen(f[0]), k->hash);
    sodium_memzero(f[0], strlen(f[0]));
    snprintf(k->house_glob, sizeof k->house_glob, "%s", f[1]);
    snprintf(k->service_glob, sizeof k->service_glob, "%s", n == 3 ? f[2] : "*");
    return 0;
}

int fr_tokens_parse(const char *text, size_t len, fr_tokens *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        line++;
        const char *nl = memchr(text + i, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - (text + i)) : len - i;
        if (memchr(text + i, '\0', ll)) {
            fr_tokens_free(out);
            return fail(err, errlen, line, "NUL byte");
        }
        char *s = malloc(ll + 1);
        if (!s) {
            fr_tokens_free(out);
            return fail(err, errlen, line, "out of memory");
        }
        memcpy(s, text + i, ll);
        s[ll] = '\0';
        int rc = parse_line(s, out, err, errlen, line);
        sodium_memzero(s, ll);
        free(s);
        if (rc < 0) {
            fr_tokens_free(out);
            return -1;
        }
        i += ll + 1;
    }
    return 0;
}

void fr_tokens_free(fr_tokens *t) {
    if (t->v)
        sodium_memzero(t->v, t->n * sizeof *t->v);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

int fr_tokens_check(const fr_tokens *t, const char *token, size_t len, const char *house,
                    const char *service) {
    uint8_t h[32];
    hash_token(token, len, h);
    int known = 0, allowed = 0;
    for (size_t i = 0; i < t->n; i++) {
        int same = sodium_memcmp(h, t->v[i].hash, 32) == 0;
        known |= same;
        if (same && fnmatch(t->v[i].house_glob, house, 0) == 0 &&
            fnmatch(t->v[i].service_glob, service, 0) == 0)
            allowed = 1;
    }
    sodium_memzero(h, sizeof h);
    return allowed ? FR_AUTH_OK : known ? FR_AUTH_FORBIDDEN : FR_AUTH_UNKNOWN;
}

int fr_auth_token(const char *v, char *out, size_t cap) {
    if (!v || cap < 2)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncasecmp(v, "Bearer ", 7) == 0) {
        v += 7;
        while (*v == ' ')
            v++;
        size_t l = strcspn(v, " \t");
        if (l == 0 || l >= cap || v[l + strspn(v + l, " \t")] != '\0')
            return -1;
        memcpy(out, v, l);
        out[l] = '\0';
        return 0;
    }
    if (strncasecmp(v, "Basic ", 6) != 0)
        return -1;
    v += 6;
    while (*v == ' ')
        v++;
    size_t l = strcspn(v, " \t"), bl;
    unsigned char *bin = malloc(l + 1);
    if (!bin)
        return -1;
    int rc = -1;
    if (l > 0 &&
        sodium_base642bin(bin, l + 1, v, l, NULL, &bl, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
        !memchr(bin, '\0', bl)) {
        unsigned char *colon = memchr(bin, ':', bl);
        unsigned char *p = colon ? colon + 1 : bin;
        size_t pl = bl - (size_t)(p - bin);
        if (pl > 0 && pl < cap) {
            memcpy(out, p, pl);
            out[pl] = '\0';
            rc = 0;
        }
    }
    sodium_memzero(bin, l + 1);
    free(bin);
    return rc;
}

/* --- headers ------------------------------------------------------------------------------- */

/* name appears in the comma-separated list (case-insensitive, spaces around items). */
static int listed(const char *list, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        size_t l = strcspn(p, ",");
        size_t t = l;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == nl && nl && strncasecmp(p, name, nl) == 0)
            return 1;
        p += l;
    }
    return 0;
}

int fr_header_lists(const char *value, const char *token) {
    return value && listed(value, token);
}

int fr_hop_by_hop(const char *name, const char *connection) {
    static const char *const hop[] = {"connection",         "keep-alive", "proxy-connection",
                                      "proxy-authenticate", "te",         "trailer",
                                      "transfer-encoding",  "upgrade",    "proxy-authorization"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        if (strcasecmp(name, hop[i]) == 0)
            return 1;
    return connection && listed(connection, name);
}

static int tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int fr_header_ok(const char *name, const char *value) {
    if (!*name)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!tchar(*p))
            return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}
