/* rclient.c — see rclient.h. */
#include "rclient.h"

#include "rkeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NODES 16
#define MAX_HOPS 5

typedef struct rnode {
    char host[256];
    int port;
    redisContext *c; /* NULL: not connected (yet, or since an error) */
} rnode;

struct br_rc {
    int timeout_ms, db;
    char *user, *pass; /* AUTH (NULL: none) */
    int auth_failed;
    rnode nodes[MAX_NODES]; /* nodes[0] is the seed */
    int n;
    uint8_t slot_node[16384]; /* 0: unknown, ask the seed (or the seed itself) */
    char err[768];
};

br_rc *br_rc_new(const char *host, int port, int db, int timeout_ms) {
    br_rc *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    snprintf(rc->nodes[0].host, sizeof rc->nodes[0].host, "%s", host);
    rc->nodes[0].port = port;
    rc->n = 1;
    rc->db = db;
    rc->timeout_ms = timeout_ms;
    return rc;
}

void br_rc_reset(br_rc *rc) {
    for (int i = 0; i < rc->n; i++)
        if (rc->nodes[i].c) {
            redisFree(rc->nodes[i].c);
            rc->nodes[i].c = NULL;
        }
}

static void free_creds(br_rc *rc) {
    if (rc->pass)
        explicit_bzero(rc->pass, strlen(rc->pass));
    free(rc->user);
    free(rc->pass);
    rc->user = rc->pass = NULL;
}

void br_rc_free(br_rc *rc) {
    if (!rc)
        return;
    br_rc_reset(rc);
    free_creds(rc);
    free(rc);
}

int br_rc_set_auth(br_rc *rc, const char *user, const char *pass) {
    free_creds(rc);
    rc->user = user && *user ? strdup(user) : NULL;
    rc->pass = pass ? strdup(pass) : NULL;
    if ((user && *user && !rc->user) || (pass && !rc->pass)) {
        free_creds(rc);
        return -1;
    }
    return 0;
}

br_rc *br_rc_new_url(const gp_rurl *u, int timeout_ms) {
    br_rc *rc = br_rc_new(u->host, u->port, u->db, timeout_ms);
    if (rc && br_rc_set_auth(rc, u->user, u->has_pass ? u->pass : NULL) != 0) {
        br_rc_free(rc);
        return NULL;
    }
    return rc;
}

int br_rc_auth_failed(const br_rc *rc) {
    return rc->auth_failed;
}

/* Redis's answer to a first command is about credentials: the message for people. */
static int auth_error(br_rc *rc, const char *where, const char *msg) {
    int noauth = strncmp(msg, "NOAUTH", 6) == 0;
    if (!noauth && strncmp(msg, "WRONGPASS", 9) != 0 && strncmp(msg, "NOPERM", 6) != 0 &&
        !strstr(msg, "invalid password") && !strstr(msg, "without any password configured"))
        return 0;
    rc->auth_failed = 1;
    snprintf(rc->err, sizeof rc->err, "Redis at %s %s (%s): %s", where,
             noauth ? "requires a password" : "refused the credentials", msg,
             noauth ? "give --redis-password-file FILE (env GP_REDIS_PASSWORD_FILE) or "
                      "redis://user:password@host in --redis"
                    : "check --redis-user, --redis-password-file and the URL's user and "
                      "password against the server's requirepass or ACL");
    return 1;
}

static struct timeval tv_of(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

void br_rc_set_timeout(br_rc *rc, int timeout_ms) {
    rc->timeout_ms = timeout_ms;
    for (int i = 0; i < rc->n; i++)
        if (rc->nodes[i].c)
            redisSetTimeout(rc->nodes[i].c, tv_of(timeout_ms));
}

const char *br_rc_error(const br_rc *rc) {
    return rc->err;
}

/* The node host:port (found or added). -1 when the table is full. */
static int node_index(br_rc *rc, const char *host, int port) {
    for (int i = 0; i < rc->n; i++)
        if (rc->nodes[i].port == port && strcmp(rc->nodes[i].host, host) == 0)
            return i;
    if (rc->n == MAX_NODES || strlen(host) >= sizeof rc->nodes[0].host)
        return -1;
    rnode *nd = &rc->nodes[rc->n];
    snprintf(nd->host, sizeof nd->host, "%s", host);
    nd->port = port;
    nd->c = NULL;
    return rc->n++;
}

static redisContext *ctx(br_rc *rc, int i) {
    rnode *nd = &rc->nodes[i];
    if (nd->c)
        return nd->c;
    redisContext *c = rc->timeout_ms
                          ? redisConnectWithTimeout(nd->host, nd->port, tv_of(rc->timeout_ms))
                          : redisConnect(nd->host, nd->port);
    if (!c || c->err) {
        snprintf(rc->err, sizeof rc->err, "cannot connect to Redis at %s:%d: %s", nd->host,
                 nd->port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    if (rc->timeout_ms)
        redisSetTimeout(c, tv_of(rc->timeout_ms));
    char where[300];
    snprintf(where, sizeof where, strchr(nd->host, ':') ? "[%s]:%d" : "%s:%d", nd->host, nd->port);
    if (rc->pass) {
        /* By vector: the password is never formatted into a command string. */
        const char *argv[3] = {"AUTH", rc->user ? rc->user : rc->pass, rc->pass};
        size_t lens[3] = {4, strlen(argv[1]), strlen(rc->pass)};
        redisReply *r = redisCommandArgv(c, rc->user ? 3 : 2, argv, lens);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r && r->type == REDIS_REPLY_ERROR && !auth_error(rc, where, r->str)) {
            rc->auth_failed = 1; /* any refusal of AUTH is about the credentials */
            snprintf(rc->err, sizeof rc->err, "Redis at %s refused AUTH: %s", where, r->str);
        } else if (!ok && !(r && r->type == REDIS_REPLY_ERROR)) {
            snprintf(rc->err, sizeof rc->err, "AUTH at %s: %s", where,
                     c->errstr[0] ? c->errstr : "unexpected reply");
        }
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    if (rc->db) {
        redisReply *r = redisCommand(c, "SELECT %d", rc->db);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (!ok && !(r && r->type == REDIS_REPLY_ERROR && auth_error(rc, where, r->str)))
            snprintf(rc->err, sizeof rc->err, "SELECT %d: %s", rc->db,
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "failed");
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    rc->auth_failed = 0;
    return nd->c = c;
}

static void drop(br_rc *rc, int i) {
    rnode *nd = &rc->nodes[i];
    if (!nd->c)
        return;
    snprintf(rc->err, sizeof rc->err, "%s:%d: %s", nd->host, nd->port,
             nd->c->errstr[0] ? nd->c->errstr : "connection lost");
    redisFree(nd->c);
    nd->c = NULL;
}

static int key_arg(int argc, const char **argv) {
    if (argc < 2)
        return -1;
    if (!strcasecmp(argv[0], "XREAD") || !strcasecmp(argv[0], "XREADGROUP")) {
        for (int i = 1; i + 1 < argc; i++)
            if (!strcasecmp(argv[i], "STREAMS"))
                return i + 1;
        return -1;
    }
    if (!strcasecmp(argv[0], "XGROUP") || !strcasecmp(argv[0], "XINFO"))
        return argc > 2 ? 2 : -1;
    if (!strcasecmp(argv[0], "EVAL") || !strcasecmp(argv[0], "EVALSHA"))
        return argc > 3 && strcmp(argv[2], "0") != 0 ? 3 : -1;
    static const char *const keyless[] = {"PING", "TIME",   "CONFIG", "INFO",   "CLUSTER",  "KEYS",
                                          "SCAN", "DBSIZE", "SELECT", "SCRIPT", "FLUSHALL", NULL};
    for (int i = 0; keyless[i]; i++)
        if (!strcasecmp(argv[0], keyless[i]))
            return -1;
    return 1;
}

/* "MOVED 3999 10.0.0.2:6381", "ASK 3999 :6381" (empty host: the node that answered). */
static int redirect_node(br_rc *rc, int from, const char *err) {
    const char *sp = strchr(err, ' '), *addr = sp ? strchr(sp + 1, ' ') : NULL;
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    int port = colon ? atoi(colon + 1) : 0;
    size_t hl = colon ? (size_t)(colon - addr - 1) : 0;
    if (port <= 0 || port > 65535 || hl >= 256)
        return -1;
    char host[256];
    memcpy(host, addr + 1, hl);
    host[hl] = '\0';
    return node_index(rc, hl ? host : rc->nodes[from].host, port);
}

redisReply *br_rc_cmdv(br_rc *rc, int argc, const char **argv, const size_t *lens) {
    int k = key_arg(argc, argv);
    unsigned slot = k < 0 ? 0 : gp_key_slot(argv[k], lens ? lens[k] : strlen(argv[k]));
    int i = k >= 0 ? rc->slot_node[slot] : 0, asking = 0;
    for (int hop = 0; hop <= MAX_HOPS; hop++) {
        redisContext *c = ctx(rc, i);
        if (!c)
            return NULL;
        if (asking) {
            redisReply *a = redisCommand(c, "ASKING");
            if (a)
                freeReplyObject(a);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        if (!r) {
            drop(rc, i);
            return NULL;
        }
        int moved = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6);
        asking = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "ASK ", 4);
        if (!moved && !asking) {
            if (k >= 0)
                rc->slot_node[slot] = (uint8_t)i;
            return r;
        }
        int to = redirect_node(rc, i, r->str);
        freeReplyObject(r);
        if (to < 0) {
            snprintf(rc->err, sizeof rc->err, "unreadable cluster redirection");
            return NULL;
        }
        i = to;
    }
    snprintf(rc->err, sizeof rc->err, "too many cluster redirections");
    return NULL;
}

int br_rc_ping(br_rc *rc) {
    const char *argv[] = {"PING"};
    redisReply *r = br_rc_cmdv(rc, 1, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    char where[300];
    snprintf(where, sizeof where, strchr(rc->nodes[0].host, ':') ? "[%s]:%d" : "%s:%d",
             rc->nodes[0].host, rc->nodes[0].port);
    if (r && !ok && !(r->type == REDIS_REPLY_ERROR && auth_error(rc, where, r->str)))
        snprintf(rc->err, sizeof rc->err, "PING: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

const char *br_rc_seed_host(const br_rc *rc) {
    return rc->nodes[0].host;
}

int br_rc_seed_port(const br_rc *rc) {
    return rc->nodes[0].port;
}

redisReply *br_rc_cmd_node(br_rc *rc, const char *host, int port, int argc, const char **argv,
                           const size_t *lens) {
    int i = node_index(rc, host, port);
    if (i < 0) {
        snprintf(rc->err, sizeof rc->err, "too many cluster nodes");
        return NULL;
    }
    redisContext *c = ctx(rc, i);
    if (!c)
        return NULL;
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r)
        drop(rc, i);
    return r;
}

int br_rc_pipeline(br_rc *rc, int n, const br_rc_cmd *cmds, redisReply **out) {
    if (n <= 0)
        return 0;
    int *node = malloc((size_t)n * sizeof *node);
    unsigned *slot = malloc((size_t)n * sizeof *slot);
    if (!node || !slot) {
        free(node);
        free(slot);
        snprintf(rc->err, sizeof rc->err, "out of memory");
        return -1;
    }
    int pending = 0, failed = 0;
    for (int k = 0; k < n; k++) {
        out[k] = NULL;
        int a = key_arg(cmds[k].argc, cmds[k].argv);
        slot[k] = a < 0 ? 16384
                        : gp_key_slot(cmds[k].argv[a],
                                      cmds[k].lens ? cmds[k].lens[a] : strlen(cmds[k].argv[a]));
        node[k] = slot[k] < 16384 ? rc->slot_node[slot[k]] : 0;
        pending++;
    }
    /* Each round writes every pending command to its node, then reads the replies node by
     * node in the order written. A MOVED reply points the slot at its new node and leaves
     * the command pending for the next round. */
    for (int round = 0; pending && round <= MAX_HOPS; round++) {
        for (int i = 0; i < rc->n; i++) {
            int any = 0;
            for (int k = 0; k < n && !any; k++)
                any = !out[k] && node[k] == i;
            if (!any)
                continue;
            redisContext *c = ctx(rc, i);
            int ok = c != NULL;
            for (int k = 0; ok && k < n; k++)
                if (!out[k] && node[k] == i &&
                    redisAppendCommandArgv(c, cmds[k].argc, cmds[k].argv, cmds[k].lens) != REDIS_OK)
                    ok = 0;
            for (int k = 0; ok && k < n; k++) {
                if (out[k] || node[k] != i)
                    continue;
                void *v = NULL;
                if (redisGetReply(c, &v) != REDIS_OK || !v) {
                    ok = 0;
                    break;
                }
                redisReply *r = v;
                if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6)) {
                    int to = redirect_node(rc, i, r->str);
                    freeReplyObject(r);
                    if (to < 0) {
                        snprintf(rc->err, sizeof rc->err, "unreadable cluster redirection");
                        node[k] = -1; /* give up on this one */
                        failed++;
                        pending--;
                        continue;
                    }
                    if (slot[k] < 16384)
                        rc->slot_node[slot[k]] = (uint8_t)to;
                    node[k] = to;
                    continue;
                }
                if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "ASK ", 4)) {
                    /* A slot in migration: rare, so one command at a time. */
                    freeReplyObject(r);
                    node[k] = -1;
                    pending--;
                    out[k] = br_rc_cmdv(rc, cmds[k].argc, cmds[k].argv, cmds[k].lens);
                    if (!out[k])
                        failed++;
                    continue;
                }
                out[k] = r;
                node[k] = -1;
                pending--;
            }
            if (!ok) {
                /* The node failed mid-batch: its connection is in an unknown state. What
                 * it did not answer stays unanswered. */
                if (c)
                    drop(rc, i);
                for (int k = 0; k < n; k++)
                    if (!out[k] && node[k] == i) {
                        node[k] = -1;
                        pending--;
                        failed++;
                    }
            }
        }
    }
    if (pending) {
        snprintf(rc->err, sizeof rc->err, "too many cluster redirections");
        failed += pending;
    }
    free(node);
    free(slot);
    return failed ? -1 : 0;
}
