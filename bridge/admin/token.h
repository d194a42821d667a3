/* token.h — the admin token (token.c): read from the configuration, kept only as a hash,
 * compared in constant time, wrong ones rate-limited per client address. main.c owns the
 * one br_admin_token (SIGHUP reloads it); admin.c and api.c are given a pointer to it. */
#ifndef BR_TOKEN_H
#define BR_TOKEN_H

#include "../daemon/config.h"

#include <stddef.h>
#include <stdint.h>

struct gp_ratelimit;

typedef struct br_admin_token {
    uint8_t hash[32];        /* BLAKE2b-256 of the token */
    int has;                 /* 0: none configured (the API answers 403 admin_disabled) */
    struct gp_ratelimit *rl; /* wrong tokens by client address, made on first use */
} br_admin_token;

/* Reads cfg's admin token (admin-token-file wins over admin-token) into hash (BLAKE2b-256)
 * and *has (0: none configured). 0, or -1 with a message in err (file unreadable, empty). */
int br_admin_load_token(const br_config *cfg, uint8_t hash[32], int *has, char *err, size_t errlen);
/* A bearer token from client addr ("ip:port") at loop ms `now`, with wrong ones rate-limited
 * per address: 0 right, 403 wrong, 429 too many wrong ones lately (retry after *retry_s s). */
int br_admin_token_check(br_admin_token *t, const char *addr, const char *token, size_t len,
                         uint64_t now, unsigned *retry_s);
/* Constant-time check of a bearer token against the configured one. */
int br_admin_token_ok(const br_admin_token *t, const char *token, size_t len);
void br_admin_token_free(br_admin_token *t); /* the rate limiter (the hash stays) */

#endif
