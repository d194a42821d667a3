/* front.h — the bridge's HTTP front door (README.md "The HTTP front door"): curl a house's
 * upstream at /h/<house>/<path>. Each HTTP request becomes one request of the public Redis
 * contract (one XADD to the house's stream, the reply read back from its reply key), so the
 * bridge is just another producer and every delivery guarantee holds. I/O side; the pure
 * parts are froute.[ch]. An object: everything it holds is in br_front, passed to each call. */
#ifndef BR_FRONT_H
#define BR_FRONT_H

#include "../store/rdb.h"
#include "auth.h"
#include "metrics.h"

#include <stddef.h>
#include <uv.h>

typedef struct br_front br_front;

typedef struct br_front_cfg {
    uv_loop_t *loop;
    /* The bridge's Redis: the XADD, and the reply readers' own connections (br_db_connect: a
     * blocking XREAD never stalls a command connection) to the node of each reply key. */
    br_db *db;
    const char *prefix; /* key prefix */
    unsigned redis_timeout_ms;
    const char *bind;       /* NULL: 127.0.0.1 */
    int port;               /* 0: any free port */
    int insecure;           /* plain HTTP on a non-loopback address was asked for */
    const char *cert, *key; /* TLS (front_tls.h) when both are set (PEM files) */
    int public_;            /* no token needed */
    const char *token_file;
    const char *domain; /* Host routing under it (NULL/"": off) */
    long long timeout_ms, max_body;
    gp_metrics *reg;              /* where its metrics go (NULL: none) */
    gp_authlimit_conf auth_limit; /* failed token attempts per address */
} br_front_cfg;

/* Checks the configuration (TLS, loopback or --http-insecure; a token file or --http-public;
 * the token file read), listens, and logs event=listening transport=http. NULL with the reason in
 * err (also logged by the caller). */
br_front *br_front_start(const br_front_cfg *cfg, char *err, size_t errlen);
int br_front_port(const br_front *f);
/* The checks of br_front_start without listening (--check-config): the options, and the token
 * file read and parsed. 0, or -1 with the reason in err. */
int br_front_check(const br_front_cfg *cfg, char *err, size_t errlen);
/* Reads the token file again (SIGHUP: rotating tokens is rewriting the file): the new tokens
 * replace the old ones, or, when it cannot be read or parsed, the old ones stay and -1 comes
 * back with the reason in err. 0 also without a token file. NULL ok. */
int br_front_reload_tokens(br_front *f, char *err, size_t errlen);
/* Stops listening; requests under way are answered 503 and the object freed once the last
 * of them is. NULL ok. */
void br_front_stop(br_front *f);

/* 1 when addr (text) is a loopback address: 127.0.0.0/8, ::1, localhost. */
int br_front_loopback(const char *addr);

#endif
