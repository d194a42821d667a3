/* token.c — the admin token (see token.h): read once at start and on SIGHUP, kept as a hash,
 * checked in constant time. I/O side (it reads the token file). */
#include "token.h"
#include "auth.h"
#include "conf.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MIN 16 /* bytes: a guessable token would open the whole deployment */
#define TOKEN_MAX 4096

static void token_hash(const char *t, size_t n, uint8_t out[32]) {
    crypto_generichash(out, 32, (const unsigned char *)t, n, NULL, 0);
}

int br_admin_load_token(const br_config *cfg, uint8_t hash[32], int *has, char *err,
                        size_t errlen) {
    *has = 0;
    memset(hash, 0, 32);
    if (cfg->admin_token_file && *cfg->admin_token_file) {
        char perr[400];
        if (gp_conf_secret_file_ok(cfg->admin_token_file, perr, sizeof perr) != 0) {
            snprintf(err, errlen, "admin-token-file: %s", perr);
            return -1;
        }
        /* Past TOKEN_MAX bytes it cannot hold a token: said as for one of the wrong size. */
        size_t len = 0;
        char *buf = gp_read_file(cfg->admin_token_file, TOKEN_MAX, &len, perr, sizeof perr);
        if (!buf && errno != EFBIG) {
            snprintf(err, errlen, "admin-token-file: %s", perr);
            return -1;
        }
        /* One line; surrounding whitespace (a trailing newline) is not part of it. */
        size_t a = 0, n = len;
        while (a < n && strchr(" \t\r\n", buf[a]))
            a++;
        while (n > a && strchr(" \t\r\n", buf[n - 1]))
            n--;
        if (!buf || n - a < TOKEN_MIN || n - a > TOKEN_MAX - 1) {
            if (buf) {
                sodium_memzero(buf, len);
                free(buf);
            }
            snprintf(err, errlen,
                     "admin-token-file: %s must hold one token of %d-%d bytes (make one with "
                     "openssl rand -hex 32)",
                     cfg->admin_token_file, TOKEN_MIN, TOKEN_MAX - 1);
            return -1;
        }
        token_hash(buf + a, n - a, hash);
        sodium_memzero(buf, len);
        free(buf);
        *has = 1;
        return 0;
    }
    if (cfg->admin_token && *cfg->admin_token) {
        if (strlen(cfg->admin_token) < TOKEN_MIN || strlen(cfg->admin_token) > TOKEN_MAX - 1) {
            snprintf(err, errlen, "admin-token: %d-%d bytes (make one with openssl rand -hex 32)",
                     TOKEN_MIN, TOKEN_MAX - 1);
            return -1;
        }
        token_hash(cfg->admin_token, strlen(cfg->admin_token), hash);
        *has = 1;
    }
    return 0;
}

/* Wrong tokens per client address: TOKEN_BURST back to back, then one every
 * TOKEN_RETRY_S seconds; past that the API answers 429 without looking at the token. */
#define TOKEN_BURST 10
#define TOKEN_RETRY_S 10

int br_admin_token_check(br_admin_token *t, const char *addr, const char *token, size_t len,
                         uint64_t now, unsigned *retry_s) {
    if (!t->rl && !(t->rl = gp_ratelimit_new(TOKEN_BURST, 60 / TOKEN_RETRY_S, 4096)))
        return 403;
    /* "ip:port": the port changes with every connection, the address does not */
    const char *colon = strrchr(addr, ':');
    gp_str key = {(const uint8_t *)addr, colon ? (size_t)(colon - addr) : strlen(addr)};
    *retry_s = TOKEN_RETRY_S;
    if (!gp_ratelimit_allow(t->rl, key, now))
        return 429;
    if (br_admin_token_ok(t, token, len))
        return 0;
    gp_ratelimit_fail(t->rl, key, now);
    return 403;
}

int br_admin_token_ok(const br_admin_token *t, const char *token, size_t len) {
    if (!t->has)
        return 0;
    uint8_t h[32];
    token_hash(token, len, h);
    /* Hashes of equal length: the comparison's time says nothing about the token. */
    int ok = sodium_memcmp(h, t->hash, sizeof h) == 0;
    sodium_memzero(h, sizeof h);
    return ok;
}

void br_admin_token_free(br_admin_token *t) {
    gp_ratelimit_free(t->rl);
    t->rl = NULL;
}
