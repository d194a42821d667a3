/* rc.c — see rc.h. */
#include "rc.h"

#include "../../bridge/rkeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NODES 16
#define MAX_HOPS 5

struct h_rc {
    int timeout_ms, seed;
    int port[MAX_NODES];
    redisContext *c[MAX_NODES];
    int n;
    unsigned short slot_port[16384]; /* 0: unknown, ask the seed */
    char err[256];
};

h_rc *h_rc_new(int port, int timeout_ms) {
    h_rc *rc = calloc(1, sizeof *rc);
    if (rc) {
        rc->seed = port;
        rc->timeout_ms = timeout_ms;
    }
    return rc;
}

void h_rc_reset(h_rc *rc) {
    for (int i = 0; i < rc->n; i++)
        if (rc->c[i])
            redisFree(rc->c[i]);
    rc->n = 0;
}

void h_rc_free(h_rc *rc) {
    if (!rc)
        return;
    h_rc_reset(rc);
    free(rc);
}

static struct timeval tv_of(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

void h_rc_set_timeout(h_rc *rc, int timeout_ms) {
    rc->timeout_ms = timeout_ms;
    for (int i = 0; i < rc->n; i++)
        if (rc->c[i])
            redisSetTimeout(rc->c[i], tv_of(timeout_ms));
}

const char *h_rc_error(const h_rc *rc) {
    return rc->err;
}

static redisContext *ctx(h_rc *rc, int port) {
    int i = 0;
    while (i < rc->n && rc->port[i] != port)
        i++;
    if (i == rc->n) {
        if (rc->n == MAX_NODES)
            return NULL;
        rc->port[rc->n] = port;
        rc->c[rc->n++] = NULL;
    }
    if (!rc->c[i]) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv_of(rc->timeout_ms));
        if (!c || c->err) {
            snprintf(rc->err, sizeof rc->err, "connect 127.0.0.1:%d: %s", port,
                     c ? c->errstr : "out of memory");
            if (c)
                redisFree(c);
            return NULL;
        }
        redisSetTimeout(c, tv_of(rc->timeout_ms));
        rc->c[i] = c;
    }
    return rc->c[i];
}

static void drop(h_rc *rc, int port) {
    for (int i = 0; i < rc->n; i++)
        if (rc->port[i] == port && rc->c[i]) {
            snprintf(rc->err, sizeof rc->err, "127.0.0.1:%d: %s", port, rc->c[i]->errstr);
            redisFree(rc->c[i]);
            rc->c[i] = NULL;
        }
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
    static const char *const keyless[] = {"PING", "TIME",     "CONFIG", "INFO", "CLUSTER", "KEYS",
                                          "SCAN", "FLUSHALL", "DBSIZE", "EVAL", NULL};
    for (int i = 0; keyless[i]; i++)
        if (!strcasecmp(argv[0], keyless[i]))
            return -1;
    return 1;
}

redisReply *h_rc_cmdv(h_rc *rc, int argc, const char **argv, const size_t *lens) {
    int k = key_arg(argc, argv);
    unsigned slot = k < 0 ? 0 : gp_key_slot(argv[k], lens ? lens[k] : strlen(argv[k]));
    int port = k >= 0 && rc->slot_port[slot] ? rc->slot_port[slot] : rc->seed, asking = 0;
    for (int hop = 0; hop <= MAX_HOPS; hop++) {
        redisContext *c = ctx(rc, port);
        if (!c)
            return NULL;
        if (asking) {
            redisReply *a = redisCommand(c, "ASKING");
            if (a)
                freeReplyObject(a);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        if (!r) {
            drop(rc, port);
            return NULL;
        }
        int moved = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6);
        asking = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "ASK ", 4);
        if (!moved && !asking) {
            if (k >= 0)
                rc->slot_port[slot] = (unsigned short)port;
            return r;
        }
        const char *colon = strrchr(r->str, ':');
        int to = colon ? atoi(colon + 1) : 0;
        freeReplyObject(r);
        if (to <= 0 || to > 65535) {
            snprintf(rc->err, sizeof rc->err, "unreadable redirection");
            return NULL;
        }
        port = to;
    }
    snprintf(rc->err, sizeof rc->err, "too many redirections");
    return NULL;
}
