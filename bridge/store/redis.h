/* redis.h — one hiredis async connection on the libuv loop that survives Redis: reconnect
 * with backoff, a watchdog, command timeouts, Lua scripts with EVALSHA/EVAL fallback.
 * I/O side.
 *
 * hiredis 0.14.1 gives none of this: its async API has no timeouts, its libuv adapter drops
 * socket errors on the floor, and freeing a context inside its own callback is unsafe. So:
 *  - commands on a normal connection complete in order, so the oldest outstanding command
 *    carries the connection's deadline; when it is older than the timeout the connection is
 *    declared dead and replaced (every outstanding callback then sees a NULL reply);
 *  - an idle connection is PINGed every second (TCP keepalive underneath);
 *  - a subscriber connection re-SUBSCRIBEs a heartbeat channel every second and is replaced
 *    when the confirmations stop;
 *  - contexts are only ever freed from our own timer callbacks, never from hiredis's;
 *  - every connection starts with a handshake (AUTH when there is a password, SELECT, PING)
 *    and is ready only once it succeeded: a refused password is told apart from an outage,
 *    and no command is ever sent on an unauthenticated connection. */
#ifndef BR_REDIS_H
#define BR_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct br_redis br_redis;

/* Completion of one command: called exactly once per accepted command. `r` is NULL when the
 * command timed out, the connection was lost, or the bridge is shutting down; it is borrowed
 * (freed by hiredis when the callback returns). */
typedef void (*br_redis_fn)(redisReply *r, void *ud);

/* Subscriber connections: every pub/sub push. kind is "message", "subscribe" or
 * "unsubscribe"; chan/msg are borrowed. */
typedef void (*br_redis_msg_fn)(br_redis *r, const char *kind, const char *chan, size_t clen,
                                const char *msg, size_t mlen);

typedef struct br_redis_cfg {
    const char *name; /* for logs: "cmd" or "sub" (borrowed, static) */
    const char *host; /* copied */
    int port, db;
    /* Credentials sent by AUTH on every (re)connection before anything else: user NULL or
     * "" for the default user; pass NULL for none (copied, wiped on free). */
    const char *user, *pass;
    int tls;                      /* rediss://: through the TLS relay (tlsrelay.h) */
    unsigned timeout_ms;          /* command timeout / subscriber silence limit */
    const char *hb_channel;       /* subscriber only: heartbeat channel (copied) */
    br_redis_msg_fn on_msg;       /* subscriber only */
    void (*on_up)(br_redis *r);   /* connected (after SELECT): (re)issue setup */
    void (*on_down)(br_redis *r); /* lost: every outstanding callback has already run */
    void *ud;                     /* for the callbacks: br_redis_ud() */
} br_redis_cfg;

/* The strings a client keeps its own copies of: host, heartbeat channel, ACL user and
 * password (wiped before it is freed). A br_redis holds one set, the cluster-aware br_db
 * (rdb.h) another for the nodes it creates. */
typedef struct br_redis_strs {
    char *host, *hb, *user, *pass;
} br_redis_strs;
/* Copies each string (NULL stays NULL). 0, or -1 with nothing held when a copy fails. */
int br_redis_strs_dup(br_redis_strs *s, const char *host, const char *hb, const char *user,
                      const char *pass);
void br_redis_strs_free(br_redis_strs *s); /* and wipes the password */

/* Creates the connection object and starts connecting (failures are retried). NULL on
 * allocation failure. */
br_redis *br_redis_new(uv_loop_t *loop, const br_redis_cfg *cfg);
/* Drops the connection (outstanding callbacks get NULL, on_down is not called) and closes
 * the timers; the memory is released once libuv has closed them. NULL ok. */
void br_redis_free(br_redis *r);
int br_redis_ready(const br_redis *r);
/* 1 when the last connection attempt was refused for its credentials (WRONGPASS, NOAUTH,
 * or a user without the right to AUTH): the operator must fix the password; retries go on
 * with backoff. 0 again once a connection is up. */
int br_redis_auth_failed(const br_redis *r);
void *br_redis_ud(const br_redis *r);

/* Argument vector builder with explicit lengths (binary-safe). Borrowed pointers must stay
 * valid until br_redis_cmd/eval returns (hiredis formats the command immediately). */
#define BR_ARGS_MAX 40
typedef struct br_args {
    int n, nnum;
    const char *v[BR_ARGS_MAX];
    size_t l[BR_ARGS_MAX];
    char num[24][24]; /* br_args_u64's digits (a state refresh has 14) */
} br_args;
void br_args_init(br_args *a);
void br_args_str(br_args *a, const char *s);
void br_args_bin(br_args *a, const void *p, size_t len);
void br_args_u64(br_args *a, uint64_t v);

/* Sends a command. 0: accepted, fn will be called exactly once. -1: not connected (or
 * hiredis refused): fn is NOT called; the caller handles the failure inline. */
int br_redis_cmd(br_redis *r, br_redis_fn fn, void *ud, const br_args *a);

/* A Lua script sent by EVALSHA, falling back to EVAL on NOSCRIPT (after a Redis restart or
 * failover the script cache is empty). The source is static; sha is learnt by SCRIPT LOAD
 * from br_redis_load_script (call it from on_up). */
typedef struct br_script {
    const char *src;
    char sha[41];
} br_script;
void br_redis_load_script(br_redis *r, br_script *s);
/* a holds KEYS then ARGV (nkeys of them keys). Same return contract as br_redis_cmd. */
int br_redis_eval(br_redis *r, br_script *s, br_redis_fn fn, void *ud, int nkeys, const br_args *a);

/* Subscriber connections only. 0 if sent, -1 if not connected. */
int br_redis_subscribe(br_redis *r, const char *channel, int subscribe);

/* Replies: helpers for the common shapes. */
int br_reply_is_error(const redisReply *r, const char *prefix); /* prefix NULL: any error */

#endif
