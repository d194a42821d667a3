/* rclient.c — see rclient.h. */
#include "rclient.h"

#include "rkeys.h"
#include "tlsrelay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NODES 16
#define MAX_HOPS 5

typedef struct rnode {
    char host[256];
    int port;
    redisContext *c;      /* NULL: not connected (yet, or since an error) */
    unsigned long serial; /* of the connection c (br_rc_route) */
} rnode;

struct br_rc {
    int timeout_ms;
    gp_rurl u; /* seed address, db, credentials, TLS */
    int auth_failed;
    rnode nodes[MAX_NODES]; /* nodes[0] is the seed */
    int n;
    uint8_t slot_node[16384]; /* 0: unknown, ask the seed (or the seed itself) */
    char err[768];
    unsigned long serials;  /* connections made so far */
    char name[64];          /* CLIENT SETNAME on each connection ("": none) */
    int name_refused;       /* the server refused it once: not asked again */
    unsigned long answered; /* replies read so far (none: a hang-up is at the first command) */
};

br_rc *br_rc_new(const char *host, int port, int db, int timeout_ms) {
    gp_rurl u;
    memset(&u, 0, sizeof u);
    snprintf(u.host, sizeof u.host, "%s", host);
    u.port = port;
    u.db = db;
    return br_rc_new_url(&u, timeout_ms);
}

br_rc *br_rc_new_url(const gp_rurl *u, int timeout_ms) {
    br_rc *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->u = *u;
    snprintf(rc->nodes[0].host, sizeof rc->nodes[0].host, "%s", u->host);
    rc->nodes[0].port = u->port;
    rc->n = 1;
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

void br_rc_free(br_rc *rc) {
    if (!rc)
        return;
    br_rc_reset(rc);
    gp_rurl_wipe(&rc->u);
    free(rc);
}

int br_rc_set_auth(br_rc *rc, const char *user, const char *pass) {
    if ((user && strlen(user) >= sizeof rc->u.user) || (pass && strlen(pass) >= sizeof rc->u.pass))
        return -1;
    snprintf(rc->u.user, sizeof rc->u.user, "%s", user ? user : "");
    gp_rurl_wipe(&rc->u);
    rc->u.has_pass = pass != NULL;
    if (pass)
        snprintf(rc->u.pass, sizeof rc->u.pass, "%s", pass);
    return 0;
}

int br_rc_auth_failed(const br_rc *rc) {
    return rc->auth_failed;
}

/* Redis's refusal of a first command when it is about credentials: the message for people.
 * 0 when it is not. */
static int auth_error(char *err, size_t errlen, const char *where, const char *msg) {
    int noauth = strncmp(msg, "NOAUTH", 6) == 0;
    if (!noauth && strncmp(msg, "WRONGPASS", 9) != 0 && strncmp(msg, "NOPERM", 6) != 0 &&
        !strstr(msg, "invalid password") && !strstr(msg, "without any password configured"))
        return 0;
    int noperm = strncmp(msg, "NOPERM", 6) == 0;
    snprintf(err, errlen, "Redis at %s %s (%s): %s", where,
             noauth   ? "requires a password"
             : noperm ? "refused a command to this user"
                      : "refused the credentials",
             msg,
             noauth   ? "give --redis-password-file FILE (env GP_REDIS_PASSWORD_FILE) or "
                        "redis://user:password@host in --redis"
             : noperm ? "grant the user what it needs in the server's ACL"
                      : "check --redis-user, --redis-password-file and the URL's user and "
                        "password against the server's requirepass or ACL");
    return 1;
}

/* What to do when a connection to Redis cannot be made, by hiredis's reason. */
static const char *connect_fix(const char *why) {
    if (strstr(why, "refused"))
        return "nothing listens there: check the host and port in --redis (env GP_REDIS) and "
               "that redis-server runs; a Redis with TLS only listens on its tls-port "
               "(rediss://)";
    if (strstr(why, "not known") || strstr(why, "No address") || strstr(why, "resolution") ||
        strstr(why, "nodename"))
        return "check the host name in --redis (env GP_REDIS; a typo?) and that DNS knows it "
               "(getent hosts NAME)";
    if (strstr(why, "timed out") || strstr(why, "unreachable") || strstr(why, "No route"))
        return "check the address in --redis (env GP_REDIS) and that no firewall drops the "
               "port on the way";
    return "check --redis (env GP_REDIS): redis://[user:password@]host:port/db";
}

/* A plain connection that Redis ended at the first command, without a word: what a TLS port
 * does to a client that speaks no TLS. */
static int hung_up(const redisContext *c) {
    return c->err == REDIS_ERR_EOF || (c->err == REDIS_ERR_IO && strstr(c->errstr, "reset"));
}

static void tls_port_err(char *err, size_t errlen, const char *where, const char *why) {
    snprintf(err, errlen,
             "Redis at %.200s hung up at the first command (%.100s): is it a TLS port? Use "
             "rediss://%.200s (with --redis-ca-file, env GP_REDIS_CA_FILE, for a private CA)",
             where, why, where);
}

/* The TLS relay's reason (tlsrelay.h) for a failed connection: a TCP one is said as a plain
 * connection's, with what to do. */
static void tls_err(char *err, size_t errlen, const char *where, const char *why) {
    int tcp = !strncmp(why, "connect: ", 9) || !strncmp(why, "cannot resolve", 14);
    snprintf(err, errlen, "TLS to Redis at %.200s failed: %.500s%s%s", where, why, tcp ? ": " : "",
             tcp ? connect_fix(why) : "");
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

/* A first command of the handshake: 0 when Redis said OK, else -1 with err set (*auth_failed
 * when the refusal is about credentials). */
static int hs_cmd(redisContext *c, int argc, const char **argv, const size_t *lens,
                  const char *where, char *err, size_t errlen, int *auth_failed) {
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok && r && r->type == REDIS_REPLY_ERROR) {
        if (auth_error(err, errlen, where, r->str) || strcmp(argv[0], "AUTH") == 0) {
            *auth_failed = 1; /* any refusal of AUTH is about the credentials */
            if (strcmp(argv[0], "AUTH") == 0 && !strstr(err, r->str))
                snprintf(err, errlen, "Redis at %s refused AUTH: %s", where, r->str);
        } else {
            snprintf(err, errlen, "%s at %s: %s", argv[0], where, r->str);
        }
    } else if (!ok) {
        snprintf(err, errlen, "%s at %s: %s", argv[0], where,
                 c->errstr[0] ? c->errstr : "unexpected reply");
    }
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

redisContext *br_rc_dial(const gp_rurl *u, const char *host, int port, int timeout_ms, char *err,
                         size_t errlen, int *auth_failed) {
    char where[300];
    gp_rurl_hostport(host, port, where, sizeof where);
    *auth_failed = 0;
    redisContext *c;
    if (u->tls) {
        char path[256];
        if (gp_tlsrelay_path(host, port, path, sizeof path, err, errlen) != 0)
            return NULL;
        c = timeout_ms ? redisConnectUnixWithTimeout(path, tv_of(timeout_ms))
                       : redisConnectUnix(path);
    } else {
        c = timeout_ms ? redisConnectWithTimeout(host, port, tv_of(timeout_ms))
                       : redisConnect(host, port);
    }
    if (!c || c->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s: %s: %s", where,
                 c ? c->errstr : "out of memory", c ? connect_fix(c->errstr) : "try again");
        if (c)
            redisFree(c);
        return NULL;
    }
    if (timeout_ms)
        redisSetTimeout(c, tv_of(timeout_ms));
    /* Arguments by vector: the password is never formatted into a command string. */
    int rv = 0;
    if (u->has_pass) {
        const char *argv[3] = {"AUTH", u->user[0] ? u->user : u->pass, u->pass};
        size_t lens[3] = {4, strlen(argv[1]), strlen(u->pass)};
        rv = hs_cmd(c, u->user[0] ? 3 : 2, argv, lens, where, err, errlen, auth_failed);
    }
    if (rv == 0 && u->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        rv = hs_cmd(c, 2, argv, NULL, where, err, errlen, auth_failed);
    }
    if (rv != 0 && u->tls) {
        /* The relay closed the connection: say why (certificate, handshake). */
        char why[512];
        gp_tlsrelay_last_error(host, port, why, sizeof why);
        if (why[0])
            tls_err(err, errlen, where, why);
    } else if (rv != 0 && hung_up(c)) {
        tls_port_err(err, errlen, where, c->errstr);
    }
    if (rv != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static redisContext *ctx(br_rc *rc, int i) {
    rnode *nd = &rc->nodes[i];
    if (nd->c)
        return nd->c;
    nd->c = br_rc_dial(&rc->u, nd->host, nd->port, rc->timeout_ms, rc->err, sizeof rc->err,
                       &rc->auth_failed);
    if (!nd->c)
        return NULL;
    nd->serial = ++rc->serials;
    if (rc->name[0] && !rc->name_refused) {
        const char *argv[] = {"CLIENT", "SETNAME", rc->name};
        redisReply *r = redisCommandArgv(nd->c, 3, argv, NULL);
        if (r && r->type == REDIS_REPLY_ERROR)
            rc->name_refused = 1; /* an ACL without client|setname: unnamed, still working */
        if (r)
            freeReplyObject(r);
    }
    return nd->c;
}

int br_rc_set_name(br_rc *rc, const char *name) {
    if (strlen(name) >= sizeof rc->name)
        return -1;
    snprintf(rc->name, sizeof rc->name, "%s", name);
    return 0;
}

static void drop(br_rc *rc, int i) {
    rnode *nd = &rc->nodes[i];
    if (!nd->c)
        return;
    char why[512] = "";
    if (rc->u.tls) /* the relay closed the connection: say why */
        gp_tlsrelay_last_error(nd->host, nd->port, why, sizeof why);
    char where[300];
    gp_rurl_hostport(nd->host, nd->port, where, sizeof where);
    if (why[0])
        tls_err(rc->err, sizeof rc->err, where, why);
    else if (!rc->u.tls && !rc->answered && hung_up(nd->c)) {
        tls_port_err(rc->err, sizeof rc->err, where, nd->c->errstr);
    } else
        snprintf(rc->err, sizeof rc->err, "%s:%d: %s", nd->host, nd->port,
                 nd->c->errstr[0] ? nd->c->errstr : "connection lost");
    redisFree(nd->c);
    nd->c = NULL;
}

/* One command on node i as it is (no redirection followed): its reply, or NULL when the node
 * cannot be reached or is lost on the way (then dropped, the reason in rc->err). */
static redisReply *node_cmd(br_rc *rc, int i, int argc, const char **argv, const size_t *lens) {
    redisContext *c = ctx(rc, i);
    if (!c)
        return NULL;
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r)
        drop(rc, i);
    else
        rc->answered++;
    return r;
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
        rc->answered++;
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
    gp_rurl_hostport(rc->nodes[0].host, rc->nodes[0].port, where, sizeof where);
    if (r && !ok && r->type == REDIS_REPLY_ERROR &&
        auth_error(rc->err, sizeof rc->err, where, r->str))
        rc->auth_failed = 1;
    else if (r && !ok)
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
    return node_cmd(rc, i, argc, argv, lens);
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
                rc->answered++;
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

unsigned long br_rc_route(const br_rc *rc, const char *key, size_t keylen) {
    const rnode *nd = &rc->nodes[rc->slot_node[gp_key_slot(key, keylen)]];
    return nd->c ? nd->serial : 0;
}

redisReply *br_rc_cmd_at(br_rc *rc, const char *key, size_t keylen, int argc, const char **argv,
                         const size_t *lens) {
    return node_cmd(rc, rc->slot_node[gp_key_slot(key, keylen)], argc, argv, lens);
}
