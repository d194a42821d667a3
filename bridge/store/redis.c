/* redis.c — hiredis async connections that survive Redis restarts (see redis.h for the
 * hiredis 0.14 pitfalls this works around). I/O side: sockets via hiredis + its libuv
 * adapter, timers via libuv. */
#include "redis.h"

#include "../log.h"
#include "list.h"
#include "tlsrelay.h"
#include "uvredis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define WATCHDOG_MS 1000

typedef struct br_cmd {
    struct br_cmd *prev, *next;
    br_redis *r;
    br_redis_fn fn;
    void *ud;
    uint64_t sent_ms;
} br_cmd;

struct br_redis {
    uv_loop_t *loop;
    br_redis_cfg cfg;
    br_redis_strs s; /* host, heartbeat channel, user, password */
    redisAsyncContext *ac;
    int ready;  /* connected, handshake (AUTH, SELECT, PING) done */
    int hs_err; /* the handshake of the current connection failed */
    int auth_failed, auth_logged, tls_logged;
    int closing; /* br_redis_free called */
    int nclosed; /* timer handles closed so far */
    int quiet;   /* failure already logged since the last success */
    uint64_t started_ms, last_rx_ms;
    unsigned backoff_ms;
    br_cmd *head, *tail; /* outstanding commands, oldest first */
    uv_timer_t retry, watchdog;
};

static uint64_t now_ms(br_redis *r) {
    return uv_now(r->loop);
}

static void start_connect(br_redis *r);
static void on_retry(uv_timer_t *t) {
    start_connect(t->data);
}

/* --- argument vectors ---------------------------------------------------------------- */

void br_args_init(br_args *a) {
    a->n = a->nnum = 0;
}

void br_args_bin(br_args *a, const void *p, size_t len) {
    if (a->n >= BR_ARGS_MAX)
        abort(); /* a programming error: argument counts are static */
    a->v[a->n] = p ? (const char *)p : "";
    a->l[a->n++] = p ? len : 0;
}

void br_args_str(br_args *a, const char *s) {
    br_args_bin(a, s, s ? strlen(s) : 0);
}

void br_args_u64(br_args *a, uint64_t v) {
    if (a->nnum >= (int)(sizeof a->num / sizeof a->num[0]))
        abort(); /* a programming error: a command with more numbers than num holds */
    char *b = a->num[a->nnum++];
    int n = snprintf(b, 24, "%llu", (unsigned long long)v);
    br_args_bin(a, b, (size_t)n);
}

int br_reply_is_error(const redisReply *r, const char *prefix) {
    if (!r || r->type != REDIS_REPLY_ERROR)
        return 0;
    return !prefix || strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* --- connection lifecycle ------------------------------------------------------------ */

static void schedule_retry(br_redis *r) {
    if (r->closing)
        return;
    /* Full jitter keeps a fleet of bridges from reconnecting in lockstep after a restart. */
    unsigned delay = r->backoff_ms / 2 + (unsigned)(rand() % (int)(r->backoff_ms / 2 + 1));
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    uv_timer_start(&r->retry, on_retry, delay, 0);
}

/* A reason of the TLS relay that is about reaching the node, not about TLS. */
static int tcp_reason(const char *why) {
    return strstr(why, "connect:") == why || strstr(why, "cannot resolve") == why;
}

/* Forget the context (hiredis frees it, or we are about to). */
static void conn_lost(br_redis *r, const char *why) {
    if (!r->ac)
        return;
    r->ac->data = NULL;
    r->ac = NULL;
    r->ready = 0;
    char tls_why[256] = "";
    if (r->cfg.tls && !r->closing)
        gp_tlsrelay_last_error(r->s.host, r->cfg.port, tls_why, sizeof tls_why);
    /* Through the relay, a refused TCP connect only shows as a closed UNIX socket: the
     * relay's reason is the real one. */
    if (tcp_reason(tls_why)) {
        why = tls_why;
    } else if (tls_why[0]) {
        /* The relay refused the server (certificate, handshake): an error, never a fallback
         * to plain text. Once per outage. */
        br_log(r->tls_logged ? BR_LOG_DEBUG : BR_LOG_ERROR, "redis_tls_failed",
               "conn=%s addr=%s:%d err=%s action=retrying", r->cfg.name, r->s.host, r->cfg.port,
               br_qs(tls_why));
        r->tls_logged = r->quiet = 1;
    }
    /* One warning per outage, not one per retry. */
    if (!r->closing)
        br_log(r->quiet ? BR_LOG_DEBUG : BR_LOG_WARN, "redis_down", "conn=%s addr=%s:%d reason=%s",
               r->cfg.name, r->s.host, r->cfg.port, br_qs(why));
    r->quiet = 1;
    schedule_retry(r);
}

/* Tears the context down from a timer callback (never from inside hiredis). Outstanding
 * callbacks run with NULL; on_down runs afterwards so it sees a quiet connection. */
static void kill_conn(br_redis *r, const char *why) {
    redisAsyncContext *ac = r->ac;
    int was_ready = r->ready;
    conn_lost(r, why);
    if (ac)
        redisAsyncFree(ac);
    if (was_ready && !r->closing && r->cfg.on_down)
        r->cfg.on_down(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    br_redis *r = ac->data;
    (void)status;
    if (!r || r->ac != ac)
        return; /* we dropped it ourselves */
    int was_ready = r->ready;
    conn_lost(r, ac->errstr[0] ? ac->errstr : "connection closed");
    if (was_ready && !r->closing && r->cfg.on_down)
        r->cfg.on_down(r);
}

/* The handshake's replies, in order: AUTH (if any), SELECT (if any), PING. A refusal ends the
 * connection (hiredis disconnects once the pipelined replies are in) and the retry timer
 * takes over with its backoff. */
static void hs_fail(br_redis *r, redisAsyncContext *ac, const redisReply *rep, const char *what) {
    if (r->hs_err)
        return;
    r->hs_err = 1;
    const char *msg = rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply";
    int auth = strncmp(msg, "WRONGPASS", 9) == 0 || strncmp(msg, "NOAUTH", 6) == 0 ||
               strncmp(msg, "NOPERM", 6) == 0 || strstr(msg, "invalid password") ||
               strstr(msg, "without any password configured") || strcmp(what, "AUTH") == 0;
    if (auth) {
        r->auth_failed = 1;
        /* One error line per outage: the retries go on quietly (debug). */
        const char *hint =
            strncmp(msg, "NOAUTH", 6) == 0
                ? "Redis requires a password: give --redis-password-file FILE (or "
                  "redis://user:password@host in --redis)"
            : strncmp(msg, "NOPERM", 6) == 0
                ? "the ACL user may not run a command every connection needs (AUTH, SELECT, "
                  "PING): grant them in the server's ACL"
                : "Redis refused the user or password: check --redis-user, "
                  "--redis-password-file and the URL's credentials against the server's "
                  "requirepass or ACL";
        br_log(r->auth_logged ? BR_LOG_DEBUG : BR_LOG_ERROR, "redis_auth_failed",
               "conn=%s addr=%s:%d user=%s err=%s hint=%s action=retrying", r->cfg.name, r->s.host,
               r->cfg.port, br_qs(r->s.user ? r->s.user : "default"), br_qs(msg), br_qs(hint));
        r->auth_logged = 1;
    } else {
        br_log(BR_LOG_ERROR, "redis_setup_failed", "conn=%s addr=%s:%d cmd=%s err=%s", r->cfg.name,
               r->s.host, r->cfg.port, what, br_qs(msg));
    }
    r->quiet = 1; /* the reason is logged: no redis_down warning on top */
    redisAsyncDisconnect(ac);
}

static void on_hs(redisAsyncContext *ac, void *reply, void *priv) {
    br_redis *r = ac->data;
    redisReply *rep = reply;
    const char *what = priv;
    if (!r || r->ac != ac || !rep)
        return; /* context being dropped */
    if (strcmp(what, "PING") != 0) {
        if (rep->type != REDIS_REPLY_STATUS)
            hs_fail(r, ac, rep, what);
        return;
    }
    if (rep->type != REDIS_REPLY_STATUS) {
        hs_fail(r, ac, rep, what);
        return;
    }
    if (r->hs_err)
        return;
    r->ready = 1;
    r->quiet = 0;
    r->auth_failed = r->auth_logged = r->tls_logged = 0;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->last_rx_ms = now_ms(r);
    br_log(BR_LOG_INFO, "redis_up", "conn=%s addr=%s:%d db=%d auth=%s tls=%d", r->cfg.name,
           r->s.host, r->cfg.port, r->cfg.db,
           r->s.pass ? (r->s.user ? "user" : "password") : "none", r->cfg.tls);
    if (r->cfg.on_up)
        r->cfg.on_up(r);
}

static void on_connect(const redisAsyncContext *cac, int status) {
    br_redis *r = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (!r || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback returns. */
        conn_lost(r, ac->errstr);
        return;
    }
    if (!r->cfg.tls) /* a UNIX socket to the relay has no keepalive; the relay's TCP does */
        redisEnableKeepAlive(&ac->c);
    r->hs_err = 0;
    r->last_rx_ms = now_ms(r);
    /* Pipelined: one round trip. Arguments go by vector, so a password is never formatted. */
    if (r->s.pass) {
        const char *argv[3] = {"AUTH", r->s.user ? r->s.user : r->s.pass, r->s.pass};
        size_t lens[3] = {4, strlen(argv[1]), strlen(r->s.pass)};
        redisAsyncCommandArgv(ac, on_hs, "AUTH", r->s.user ? 3 : 2, argv, lens);
    }
    if (r->cfg.db && !r->s.hb) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->cfg.db);
        redisAsyncCommand(ac, on_hs, "SELECT", "SELECT %s", db);
    }
    redisAsyncCommand(ac, on_hs, "PING", "PING");
}

static void start_connect(br_redis *r) {
    if (r->closing || r->ac)
        return;
    redisAsyncContext *ac;
    if (r->cfg.tls) {
        char path[128], err[256];
        if (gp_tlsrelay_path(r->s.host, r->cfg.port, path, sizeof path, err, sizeof err) != 0) {
            br_log(BR_LOG_ERROR, "redis_tls_failed", "conn=%s addr=%s:%d err=%s", r->cfg.name,
                   r->s.host, r->cfg.port, br_qs(err));
            schedule_retry(r);
            return;
        }
        ac = redisAsyncConnectUnix(path);
    } else {
        ac = redisAsyncConnect(r->s.host, r->cfg.port);
    }
    if (!ac) {
        schedule_retry(r);
        return;
    }
    if (ac->err) {
        br_log(BR_LOG_DEBUG, "redis_connect_failed", "conn=%s err=%s", r->cfg.name,
               br_qs(ac->errstr));
        redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    if (br_uvr_attach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->started_ms = now_ms(r);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

/* --- commands -------------------------------------------------------------------------- */

static void cmd_cb(redisAsyncContext *ac, void *reply, void *priv) {
    br_cmd *c = priv;
    br_redis *r = c->r;
    (void)ac;
    if (reply)
        r->last_rx_ms = now_ms(r);
    GP_LIST_UNLINK(r->head, r->tail, c, prev, next);
    if (c->fn)
        c->fn(reply, c->ud);
    free(c);
}

int br_redis_cmd(br_redis *r, br_redis_fn fn, void *ud, const br_args *a) {
    if (!r || !r->ready || !r->ac || r->closing)
        return -1;
    br_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->r = r, c->fn = fn, c->ud = ud, c->sent_ms = now_ms(r);
    /* hiredis 0.14 lacks the inner const; it does not modify argv. */
    if (redisAsyncCommandArgv(r->ac, cmd_cb, c, a->n, (const char **)a->v, a->l) != REDIS_OK) {
        free(c);
        return -1;
    }
    GP_LIST_APPEND(r->head, r->tail, c, prev, next);
    return 0;
}

/* --- scripts --------------------------------------------------------------------------- */

static void on_script_load(redisReply *rep, void *ud) {
    br_script *s = ud;
    if (rep && rep->type == REDIS_REPLY_STRING && rep->len == 40)
        memcpy(s->sha, rep->str, 41);
    else if (rep)
        br_log(BR_LOG_WARN, "redis_script_load_failed", "err=%s",
               br_qs(rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply"));
}

void br_redis_load_script(br_redis *r, br_script *s) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "SCRIPT");
    br_args_str(&a, "LOAD");
    br_args_str(&a, s->src);
    br_redis_cmd(r, on_script_load, s, &a);
}

/* An EVALSHA in flight keeps a copy of its arguments so it can be resent as EVAL. */
typedef struct br_eval {
    br_redis *r;
    br_script *s;
    br_redis_fn fn;
    void *ud;
    int nkeys, n;
    size_t *lens;
    char **vals;
} br_eval;

static void eval_free(br_eval *e) {
    for (int i = 0; i < e->n; i++)
        free(e->vals[i]);
    free(e->vals);
    free(e->lens);
    free(e);
}

static int eval_send(br_eval *e, int by_sha);

static void on_eval(redisReply *rep, void *ud) {
    br_eval *e = ud;
    if (br_reply_is_error(rep, "NOSCRIPT")) {
        e->s->sha[0] = '\0';
        if (eval_send(e, 0) == 0)
            return;
        rep = NULL;
    }
    if (e->fn)
        e->fn(rep, e->ud);
    eval_free(e);
}

static int eval_send(br_eval *e, int by_sha) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, by_sha ? "EVALSHA" : "EVAL");
    br_args_str(&a, by_sha ? e->s->sha : e->s->src);
    br_args_u64(&a, (uint64_t)e->nkeys);
    for (int i = 0; i < e->n; i++)
        br_args_bin(&a, e->vals[i], e->lens[i]);
    return br_redis_cmd(e->r, on_eval, e, &a);
}

int br_redis_eval(br_redis *r, br_script *s, br_redis_fn fn, void *ud, int nkeys,
                  const br_args *a) {
    if (!br_redis_ready(r) || a->n > BR_ARGS_MAX - 3)
        return -1;
    br_eval *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->r = r, e->s = s, e->fn = fn, e->ud = ud, e->nkeys = nkeys;
    e->lens = calloc((size_t)a->n + 1, sizeof *e->lens);
    e->vals = calloc((size_t)a->n + 1, sizeof *e->vals);
    if (!e->lens || !e->vals)
        goto fail;
    for (int i = 0; i < a->n; i++) {
        e->vals[i] = malloc(a->l[i] + 1);
        if (!e->vals[i])
            goto fail;
        e->n = i + 1;
        memcpy(e->vals[i], a->v[i], a->l[i]);
        e->lens[i] = a->l[i];
    }
    if (eval_send(e, s->sha[0] != '\0') == 0)
        return 0;
fail:
    eval_free(e);
    return -1;
}

/* --- pub/sub --------------------------------------------------------------------------- */

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv) {
    br_redis *r = ac->data;
    redisReply *rep = reply;
    (void)priv;
    if (!r || !rep)
        return; /* context being freed */
    r->last_rx_ms = now_ms(r);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *chan = rep->element[1], *msg = rep->element[2];
    if (r->s.hb && chan->len == strlen(r->s.hb) && memcmp(chan->str, r->s.hb, chan->len) == 0)
        return;
    if (r->cfg.on_msg)
        r->cfg.on_msg(r, rep->element[0]->str, chan->str, chan->len,
                      msg->type == REDIS_REPLY_STRING ? msg->str : "",
                      msg->type == REDIS_REPLY_STRING ? msg->len : 0);
}

int br_redis_subscribe(br_redis *r, const char *channel, int subscribe) {
    if (!r || !r->ready || !r->ac)
        return -1;
    const char *argv[2] = {subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE", channel};
    size_t lens[2] = {strlen(argv[0]), strlen(channel)};
    return redisAsyncCommandArgv(r->ac, sub_cb, NULL, 2, argv, lens) == REDIS_OK ? 0 : -1;
}

/* --- watchdog -------------------------------------------------------------------------- */

static void on_ping(redisReply *rep, void *ud) {
    (void)rep, (void)ud;
}

static void watchdog(uv_timer_t *t) {
    br_redis *r = t->data;
    uint64_t now = now_ms(r);
    if (!r->ac)
        return;
    /* The libuv adapter ignores poll errors, so a refused connect or a reset socket would
     * go unnoticed: ask the socket itself. */
    int err = 0;
    socklen_t elen = sizeof err;
    if (r->ac->c.fd >= 0 && getsockopt(r->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
        err != 0) {
        kill_conn(r, strerror(err));
        return;
    }
    if (!r->ready) {
        /* A connect to a black-holed address would otherwise hang until the kernel gives up. */
        if (now - r->started_ms > r->cfg.timeout_ms)
            kill_conn(r, "connect timeout");
        return;
    }
    if (r->s.hb) {
        if (now - r->last_rx_ms > r->cfg.timeout_ms) {
            kill_conn(r, "subscriber heartbeat lost");
            return;
        }
        /* Re-subscribing an already subscribed channel is answered with a confirmation:
         * a PING that works in subscribed mode on RESP2. */
        br_redis_subscribe(r, r->s.hb, 1);
        return;
    }
    if (r->head && now - r->head->sent_ms > r->cfg.timeout_ms) {
        kill_conn(r, "command timeout");
        return;
    }
    if (!r->head && now - r->last_rx_ms >= WATCHDOG_MS) {
        br_args a;
        br_args_init(&a);
        br_args_str(&a, "PING");
        br_redis_cmd(r, on_ping, NULL, &a);
    }
}

/* --- object ---------------------------------------------------------------------------- */

static char *dup_or_null(const char *s, int *failed) {
    char *c = s ? strdup(s) : NULL;
    *failed |= s && !c;
    return c;
}

int br_redis_strs_dup(br_redis_strs *s, const char *host, const char *hb, const char *user,
                      const char *pass) {
    int failed = 0;
    s->host = dup_or_null(host, &failed);
    s->hb = dup_or_null(hb, &failed);
    s->user = dup_or_null(user, &failed);
    s->pass = dup_or_null(pass, &failed);
    if (failed)
        br_redis_strs_free(s);
    return failed ? -1 : 0;
}

void br_redis_strs_free(br_redis_strs *s) {
    if (s->pass)
        explicit_bzero(s->pass, strlen(s->pass));
    free(s->host);
    free(s->hb);
    free(s->user);
    free(s->pass);
    *s = (br_redis_strs){0};
}

br_redis *br_redis_new(uv_loop_t *loop, const br_redis_cfg *cfg) {
    br_redis *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->cfg = *cfg;
    r->cfg.user = r->cfg.pass = NULL; /* ours are the copies below */
    if (br_redis_strs_dup(&r->s, cfg->host, cfg->hb_channel,
                          cfg->user && *cfg->user ? cfg->user : NULL, cfg->pass) != 0) {
        free(r);
        return NULL;
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &r->retry);
    uv_timer_init(loop, &r->watchdog);
    r->retry.data = r->watchdog.data = r;
    uv_timer_start(&r->watchdog, watchdog, WATCHDOG_MS, WATCHDOG_MS);
    start_connect(r);
    return r;
}

void *br_redis_ud(const br_redis *r) {
    return r->cfg.ud;
}

int br_redis_auth_failed(const br_redis *r) {
    return r && r->auth_failed;
}

int br_redis_ready(const br_redis *r) {
    return r && r->ready && r->ac && !r->closing;
}

static void on_timer_closed(uv_handle_t *h) {
    br_redis *r = h->data;
    if (++r->nclosed == 2) {
        br_redis_strs_free(&r->s);
        free(r);
    }
}

void br_redis_free(br_redis *r) {
    if (!r)
        return;
    r->closing = 1;
    kill_conn(r, "shutdown");
    uv_close((uv_handle_t *)&r->retry, on_timer_closed);
    uv_close((uv_handle_t *)&r->watchdog, on_timer_closed);
}
