/* rurl.c — see rurl.h. Pure parsing, plus the one file read of gp_rurl_credentials. */
#include "rurl.h"

#include "conf.h"
#include "gp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASS_FILE_MAX 65536 /* bytes read of a password file at the most */

/* Length of the scheme prefix ("redis://" 8, "rediss://" 9, none 0); -1 for another scheme. */
static int scheme_len(const char *s, int *tls) {
    *tls = 0;
    if (strncmp(s, "redis://", 8) == 0)
        return 8;
    if (strncmp(s, "rediss://", 9) == 0) {
        *tls = 1;
        return 9;
    }
    return strstr(s, "://") ? -1 : 0;
}

/* The user information of s (after the scheme): [s, at) where at is the last '@' before the
 * path, or NULL when there is none. */
static const char *userinfo_end(const char *s) {
    const char *end = s + strcspn(s, "/");
    const char *at = NULL;
    for (const char *p = s; p < end; p++)
        if (*p == '@')
            at = p;
    return at;
}

void gp_rurl_redact(const char *url, char *out, size_t cap) {
    if (!cap)
        return;
    if (!url) {
        snprintf(out, cap, "(none)");
        return;
    }
    int tls;
    int sl = scheme_len(url, &tls);
    const char *s = url + (sl > 0 ? sl : 0);
    const char *at = userinfo_end(s);
    if (!at) {
        snprintf(out, cap, "%s", url);
        return;
    }
    const char *colon = memchr(s, ':', (size_t)(at - s));
    /* "user:pw@" keeps the user; "pw@" is all password. */
    const char *keep_end = colon ? colon + 1 : s;
    snprintf(out, cap, "%.*s***%s", (int)(keep_end - url), url, at);
}

void gp_rurl_hostport(const char *host, int port, char *out, size_t cap) {
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* Percent-decodes [s, s+n) into out[cap]. 0, or -1 (bad escape, %00, a control byte, or too
 * long). */
static int pct_decode(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int a = gp_hexval(s[i + 1]), b = gp_hexval(s[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            c = (unsigned char)(a * 16 + b);
            if (c == 0)
                return -1;
            i += 2;
        } else if (c < 0x20 || c == 0x7f) {
            return -1;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int host_char(char c, int v6) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return v6 ? (c == ':' || c == '.') : (c == '.' || c == '-' || c == '_');
}

static int parse_uint(const char *s, size_t n, long max, long *out) {
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int gp_rurl_parse(const char *url, gp_rurl *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    char shown[320];
    gp_rurl_redact(url, shown, sizeof shown);
    if (!url || !*url) {
        gp_errf(err, errlen, "empty Redis address");
        return -1;
    }
    int sl = scheme_len(url, &u->tls);
    if (sl < 0) {
        gp_errf(err, errlen, "Redis address '%s': the scheme must be redis:// or rediss://", shown);
        return -1;
    }
    const char *s = url + sl;
    const char *at = userinfo_end(s);
    if (at) {
        if (!sl) {
            gp_errf(err, errlen,
                    "Redis address '%s': credentials need the redis:// or rediss:// form", shown);
            return -1;
        }
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *pw = colon ? colon + 1 : s;
        if (colon && pct_decode(s, (size_t)(colon - s), u->user, sizeof u->user) != 0) {
            gp_errf(err, errlen, "Redis address '%s': the user name is not valid", shown);
            return -1;
        }
        if (pct_decode(pw, (size_t)(at - pw), u->pass, sizeof u->pass) != 0) {
            gp_rurl_wipe(u);
            gp_errf(err, errlen,
                    "Redis address '%s': the password is not valid (percent-encode '@', ':', "
                    "'/' and '%%'; at most %d bytes)",
                    shown, GP_RURL_PASS_MAX - 1);
            return -1;
        }
        u->has_pass = 1;
        s = at + 1;
    }
    const char *end = s + strcspn(s, "/");
    const char *hs = s, *he, *port = NULL;
    int v6 = 0;
    if (*s == '[') {
        const char *rb = memchr(s, ']', (size_t)(end - s));
        if (!rb)
            goto bad_host;
        hs = s + 1, he = rb, v6 = 1;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                goto bad_host;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(s, ':', (size_t)(end - s));
        he = colon ? colon : end;
        port = colon ? colon + 1 : NULL;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof u->host)
        goto bad_host;
    for (const char *p = hs; p < he; p++)
        if (!host_char(*p, v6))
            goto bad_host;
    memcpy(u->host, hs, (size_t)(he - hs));
    long v;
    if (port) {
        if (parse_uint(port, (size_t)(end - port), 65535, &v) != 0 || v < 1) {
            gp_rurl_wipe(u);
            gp_errf(err, errlen, "Redis address '%s': the port must be 1-65535", shown);
            return -1;
        }
        u->port = (int)v;
    }
    if (*end == '/' && end[1]) {
        if (parse_uint(end + 1, strlen(end + 1), 100000, &v) != 0) {
            gp_rurl_wipe(u);
            gp_errf(err, errlen, "Redis address '%s': the database must be a number (/0)", shown);
            return -1;
        }
        u->db = (int)v;
    }
    return 0;
bad_host:
    gp_rurl_wipe(u);
    gp_errf(err, errlen,
            "Redis address '%s' is not valid (want redis://[user:password@]host:port/db, "
            "rediss://... for TLS, or host:port)",
            shown);
    return -1;
}

void gp_rurl_wipe(gp_rurl *u) {
    explicit_bzero(u->pass, sizeof u->pass);
}

int gp_rurl_credentials(gp_rurl *u, const char *user, const char *password_file, char *err,
                        size_t errlen) {
    if (user && *user) {
        if (strlen(user) >= sizeof u->user) {
            gp_errf(err, errlen, "redis-user: at most %d bytes", GP_RURL_USER_MAX - 1);
            return -1;
        }
        snprintf(u->user, sizeof u->user, "%s", user);
    }
    if (!password_file || !*password_file)
        return 0;
    /* A password others can read is refused, as every secret file (gp_conf_secret_file_ok). */
    char rerr[300];
    if (gp_conf_secret_file_ok(password_file, rerr, sizeof rerr) != 0) {
        gp_errf(err, errlen, "redis-password-file: %s", rerr);
        return -1;
    }
    /* A file past PASS_FILE_MAX bytes is no password file: said as for a wrong line. */
    size_t n = 0;
    char *buf = gp_read_file(password_file, PASS_FILE_MAX, &n, rerr, sizeof rerr);
    if (!buf && errno != EFBIG) {
        gp_errf(err, errlen, "cannot read the Redis password file %s", rerr);
        return -1;
    }
    /* The first line, without its end: files are written with echo and editors. */
    size_t len = buf ? strcspn(buf, "\r\n") : 0;
    int ok = len > 0 && len < GP_RURL_PASS_MAX && memchr(buf, '\0', len) == NULL;
    if (ok) {
        memcpy(u->pass, buf, len);
        u->pass[len] = '\0';
        u->has_pass = 1;
    }
    if (buf) {
        explicit_bzero(buf, n);
        free(buf);
    }
    if (!ok) {
        gp_errf(err, errlen,
                "Redis password file %s: want one line of 1-%d bytes, the password alone (as "
                "the server's requirepass or the user's ACL has it)",
                password_file, GP_RURL_PASS_MAX - 1);
        return -1;
    }
    return 0;
}
