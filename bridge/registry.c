/* registry.c — the house registry in Redis for the `ghostport` CLI, over hiredis's blocking
 * API. I/O side. Every command goes through br_rc_cmdv with explicit lengths, so ids,
 * labels and sealed secrets are passed as bytes, never through a format string. */
#include "registry.h"

#include "rkeys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Runs one command given as NUL-terminated strings (NULL-terminated list). The reply is
 * the caller's; NULL on a connection error (message in err), and an error reply is turned
 * into NULL too. */
static redisReply *cmd(br_rc *rc, char *err, size_t errlen, const char *first, ...) {
    const char *argv[16];
    size_t lens[16];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 16; a = va_arg(ap, const char *)) {
        argv[argc] = a;
        lens[argc] = strlen(a);
        argc++;
    }
    va_end(ap);
    redisReply *r = br_rc_cmdv(rc, argc, argv, lens);
    if (!r) {
        seterr(err, errlen, "redis: %s", br_rc_error(rc));
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        seterr(err, errlen, "redis: %s: %.*s", first, (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int gp_reg_parse_url(const char *url, char *host, size_t hostcap, int *port, int *db) {
    *port = 6379;
    *db = 0;
    if (!url || !*url)
        return GP_ERR_INVALID;
    const char *s = url;
    if (strncmp(s, "redis://", 8) == 0)
        s += 8;
    else if (strstr(s, "://"))
        return GP_ERR_INVALID; /* rediss:// (TLS) is not supported by hiredis 0.14 */
    /* Credentials are not supported: hiredis 0.14 has no AUTH of its own and we do not
     * want passwords on command lines. */
    if (strchr(s, '@'))
        return GP_ERR_INVALID;
    const char *end = s + strcspn(s, "/");
    const char *colon = NULL;
    const char *hs = s, *he;
    if (*s == '[') { /* [ipv6]:port */
        const char *rb = memchr(s, ']', (size_t)(end - s));
        if (!rb)
            return GP_ERR_INVALID;
        hs = s + 1;
        he = rb;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return GP_ERR_INVALID;
            colon = rb + 1;
        }
    } else {
        colon = memchr(s, ':', (size_t)(end - s));
        he = colon ? colon : end;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl + 1 > hostcap)
        return GP_ERR_INVALID;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (colon) {
        char *pe;
        errno = 0;
        long p = strtol(colon + 1, &pe, 10);
        if (pe != end || pe == colon + 1 || p < 1 || p > 65535 || errno)
            return GP_ERR_INVALID;
        *port = (int)p;
    }
    if (*end == '/' && end[1]) {
        char *pe;
        errno = 0;
        long d = strtol(end + 1, &pe, 10);
        if (*pe || pe == end + 1 || d < 0 || d > 100000 || errno)
            return GP_ERR_INVALID;
        *db = (int)d;
    }
    return 0;
}

br_rc *gp_reg_connect(const char *url, unsigned timeout_ms, char *err, size_t errlen) {
    char host[256];
    int port, db;
    if (gp_reg_parse_url(url, host, sizeof host, &port, &db) != 0) {
        seterr(err, errlen, "invalid Redis address '%s' (want redis://host:port/db or host:port)",
               url);
        return NULL;
    }
    br_rc *rc = br_rc_new(host, port, db, (int)timeout_ms);
    if (!rc) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (br_rc_ping(rc) != 0) {
        seterr(err, errlen, "%s", br_rc_error(rc));
        br_rc_free(rc);
        return NULL;
    }
    return rc;
}

int gp_reg_master_key(const char *hex, uint8_t out[32]) {
    /* Same format as a secret: exactly 64 hex digits. */
    return gp_secret_from_hex(hex, out) == 0 ? 0 : GP_ERR_INVALID;
}

/* KEYS[1] house hash. ARGV: secret, labels, created, force. One key, so it runs on a
 * Cluster too; the set of ids is updated separately (another slot). */
static const char *ADD_LUA =
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  if ARGV[4] ~= '1' then return 0 end\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'labels', ARGV[2], 'created', ARGV[3])\n"
    "return 1\n";

int gp_reg_add(br_rc *rc, const char *prefix, const char *id, const uint8_t secret[GP_SECRET_LEN],
               const uint8_t *master_key, const char *labels_json, uint64_t created_ms, int force,
               char *err, size_t errlen) {
    if (!gp_house_id_valid(gp_str_c(id))) {
        seterr(err, errlen, "invalid house id '%s': use 1-%d characters of A-Z a-z 0-9 _ . -", id,
               GP_MAX_HOUSE_ID);
        return GP_ERR_INVALID;
    }
    char khouse[GP_KEY_MAX], khouses[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_houses(khouses, prefix) < 0) {
        seterr(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    char sealed[GP_SEALED_MAX];
    int rv = gp_secret_seal(master_key, gp_str_c(id), secret, sealed);
    if (rv != 0) {
        seterr(err, errlen, "sealing the secret failed: %s", gp_strerror(rv));
        return rv;
    }
    char created[24];
    snprintf(created, sizeof created, "%llu", (unsigned long long)created_ms);
    redisReply *r = cmd(rc, err, errlen, "EVAL", ADD_LUA, "1", khouse, sealed,
                        labels_json ? labels_json : "{}", created, force ? "1" : "0", NULL);
    if (!r)
        return GP_REG_REDIS;
    long long ok = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (ok == 0) {
        seterr(err, errlen, "house '%s' already exists (use --force to replace its secret)", id);
        return GP_REG_EXISTS;
    }
    r = cmd(rc, err, errlen, "SADD", khouses, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    freeReplyObject(r);
    return 0;
}

int gp_reg_rm(br_rc *rc, const char *prefix, const char *id, int purge, long long *stream_len,
              char *err, size_t errlen) {
    char khouse[GP_KEY_MAX], khouses[GP_KEY_MAX], kstate[GP_KEY_MAX], kepoch[GP_KEY_MAX],
        kreq[GP_KEY_MAX];
    if (!gp_house_id_valid(gp_str_c(id))) {
        seterr(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_houses(khouses, prefix) < 0 ||
        gp_key_state(kstate, prefix, id) < 0 || gp_key_epoch(kepoch, prefix, id) < 0 ||
        gp_key_req(kreq, prefix, id) < 0) {
        seterr(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    redisReply *r = cmd(rc, err, errlen, "XLEN", kreq, NULL);
    if (!r)
        return GP_REG_REDIS;
    long long xlen = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (stream_len)
        *stream_len = xlen;

    /* One DEL per key: the keys share the house's slot, but the set does not. */
    long long removed = 0;
    const char *keys[] = {khouse, kstate, kepoch, purge ? kreq : NULL};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && keys[i]; i++) {
        r = cmd(rc, err, errlen, "DEL", keys[i], NULL);
        if (!r)
            return GP_REG_REDIS;
        if (i == 0 && r->type == REDIS_REPLY_INTEGER)
            removed += r->integer;
        freeReplyObject(r);
    }
    r = cmd(rc, err, errlen, "SREM", khouses, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type == REDIS_REPLY_INTEGER)
        removed += r->integer;
    freeReplyObject(r);
    if (!removed) {
        seterr(err, errlen, "no house '%s'", id);
        return GP_REG_NOT_FOUND;
    }
    return 0;
}

int gp_reg_secret(br_rc *rc, const char *prefix, const char *id, const uint8_t *master_key,
                  uint8_t out[GP_SECRET_LEN], char *err, size_t errlen) {
    char khouse[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0)
        return GP_ERR_INVALID;
    redisReply *r = cmd(rc, err, errlen, "HGET", khouse, "secret", NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        seterr(err, errlen, "no house '%s'", id);
        return GP_REG_NOT_FOUND;
    }
    int rv =
        gp_secret_open(master_key, gp_str_c(id), (gp_str){(const uint8_t *)r->str, r->len}, out);
    freeReplyObject(r);
    if (rv != 0)
        seterr(err, errlen, "cannot read the secret of '%s': %s", id,
               rv == GP_ERR_AUTH ? "sealed with another master key (or none given)"
                                 : "stored value is not a secret");
    return rv;
}

static long long to_ll(const redisReply *v) {
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 20)
        return -1;
    char buf[24];
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char *e;
    long long x = strtoll(buf, &e, 10);
    return *e ? -1 : x;
}

static void copy_str(char *dst, size_t cap, const redisReply *v) {
    size_t n = v->len < cap - 1 ? v->len : cap - 1;
    memcpy(dst, v->str, n);
    dst[n] = '\0';
    /* Values come from Redis, written by anyone: keep control bytes off the terminal. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = '?';
    if (v->len > cap - 1 && cap > 4)
        memcpy(dst + cap - 4, "...", 4);
}

int gp_reg_get(br_rc *rc, const char *prefix, const char *id, gp_reg_house *h, char *err,
               size_t errlen) {
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%s", id);
    h->created_ms = h->since_ms = h->last_seen_ms = h->rtt_ms = h->epoch = -1;
    char khouse[GP_KEY_MAX], kstate[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_state(kstate, prefix, id) < 0)
        return GP_ERR_INVALID;
    redisReply *r = cmd(rc, err, errlen, "HGETALL", khouse, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        h->registered = 1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "labels") == 0)
                copy_str(h->labels, sizeof h->labels, v);
            else if (strcmp(k->str, "created") == 0)
                h->created_ms = to_ll(v);
        }
    }
    freeReplyObject(r);
    r = cmd(rc, err, errlen, "HGETALL", kstate, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        h->connected = 1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "bridge") == 0)
                copy_str(h->bridge, sizeof h->bridge, v);
            else if (strcmp(k->str, "transport") == 0)
                copy_str(h->transport, sizeof h->transport, v);
            else if (strcmp(k->str, "addr") == 0)
                copy_str(h->addr, sizeof h->addr, v);
            else if (strcmp(k->str, "since") == 0)
                h->since_ms = to_ll(v);
            else if (strcmp(k->str, "last_seen") == 0)
                h->last_seen_ms = to_ll(v);
            else if (strcmp(k->str, "rtt_ms") == 0)
                h->rtt_ms = to_ll(v);
            else if (strcmp(k->str, "epoch") == 0)
                h->epoch = to_ll(v);
        }
    }
    freeReplyObject(r);
    return 0;
}

static int cmp_house(const void *a, const void *b) {
    return strcmp(((const gp_reg_house *)a)->id, ((const gp_reg_house *)b)->id);
}

int gp_reg_list(br_rc *rc, const char *prefix, gp_reg_house **out, size_t *n, char *err,
                size_t errlen) {
    *out = NULL;
    *n = 0;
    char khouses[GP_KEY_MAX];
    if (gp_key_houses(khouses, prefix) < 0)
        return GP_ERR_INVALID;
    redisReply *r = cmd(rc, err, errlen, "SMEMBERS", khouses, NULL);
    if (!r)
        return GP_REG_REDIS;
    gp_reg_house *hs = calloc(r->elements ? r->elements : 1, sizeof *hs);
    if (!hs) {
        freeReplyObject(r);
        return GP_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING ||
            !gp_house_id_valid((gp_str){(const uint8_t *)m->str, m->len}))
            continue; /* not written by us: skip rather than print junk */
        int rv = gp_reg_get(rc, prefix, m->str, &hs[k], err, errlen);
        if (rv != 0) {
            freeReplyObject(r);
            free(hs);
            return rv;
        }
        k++;
    }
    freeReplyObject(r);
    qsort(hs, k, sizeof *hs, cmp_house);
    *out = hs;
    *n = k;
    return 0;
}

long long gp_reg_time_ms(br_rc *rc) {
    const char *argv[] = {"TIME"};
    redisReply *r = br_rc_cmdv(rc, 1, argv, NULL);
    long long ms = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    if (r)
        freeReplyObject(r);
    return ms;
}
