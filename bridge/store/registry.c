/* registry.c — the house registry in Redis for the `ghostport` CLI, over hiredis's blocking
 * API. I/O side. Every command goes through br_rc_cmdv with explicit lengths, so ids,
 * labels and sealed secrets are passed as bytes, never through a format string. */
#include "registry.h"

#include "buf.h"
#include "frame.h"
#include "gp.h"

#include "rkeys.h"
#include "store_house.h"
#include "store_tun.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

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
        gp_errf(err, errlen, "redis: %s", br_rc_error(rc));
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        gp_errf(err, errlen, "redis: %s: %.*s", first, (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* The answer of a script on one house's hash that returns 0 when the house is not registered
 * (nothing written), 1 when done: 0, GP_REG_NOT_FOUND or GP_REG_REDIS (r NULL: cmd said why).
 * Frees r. */
static int house_script_done(redisReply *r, const char *id, char *err, size_t errlen) {
    if (!r)
        return GP_REG_REDIS;
    long long ok = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (ok != 1) {
        gp_errf(err, errlen, "no house '%s'", id);
        return GP_REG_NOT_FOUND;
    }
    return 0;
}

br_rc *gp_reg_connect(const gp_rurl *u, unsigned timeout_ms, char *err, size_t errlen,
                      int *auth_failed) {
    if (auth_failed)
        *auth_failed = 0;
    br_rc *rc = br_rc_new_url(u, (int)timeout_ms);
    if (!rc) {
        gp_errf(err, errlen, "out of memory");
        return NULL;
    }
    if (br_rc_ping(rc) != 0) {
        gp_errf(err, errlen, "%s", br_rc_error(rc));
        if (auth_failed)
            *auth_failed = br_rc_auth_failed(rc);
        br_rc_free(rc);
        return NULL;
    }
    return rc;
}

int gp_reg_master_key(const char *hex, uint8_t out[32]) {
    /* Same format as a secret: exactly 64 hex digits. */
    return gp_secret_from_hex(hex, out) == 0 ? 0 : GP_ERR_INVALID;
}

/* KEYS[1] house hash. ARGV: secret, labels, created, force (store_house.h: the bridge's JSON API
 * adds houses with the same script). One key, so it runs on a Cluster too; the set of ids is
 * updated separately (another slot). */
static const char *ADD_LUA = GP_REG_ADD_LUA;

int gp_reg_add(br_rc *rc, const char *prefix, const char *id, const uint8_t secret[GP_SECRET_LEN],
               const uint8_t *master_key, const char *labels_json, uint64_t created_ms, int force,
               char *err, size_t errlen) {
    if (!gp_house_id_valid(gp_str_c(id))) {
        gp_errf(err, errlen, "invalid house id '%s': use 1-%d characters of A-Z a-z 0-9 _ . -", id,
                GP_MAX_HOUSE_ID);
        return GP_ERR_INVALID;
    }
    char khouse[GP_KEY_MAX], khouses[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_houses(khouses, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    char sealed[GP_SEALED_MAX];
    int rv = gp_secret_seal(master_key, gp_str_c(id), secret, sealed);
    if (rv != 0) {
        gp_errf(err, errlen, "sealing the secret failed: %s", gp_strerror(rv));
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
        gp_errf(err, errlen, "house '%s' already exists (use --force to replace its secret)", id);
        return GP_REG_EXISTS;
    }
    r = cmd(rc, err, errlen, "SADD", khouses, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    freeReplyObject(r);
    return 0;
}

/* "h:<id>", the field of <p>:tun holding house id's index, into out[GP_MAX_HOUSE_ID + 3]. */
static void tun_field_h(char *out, const char *id) {
    snprintf(out, GP_MAX_HOUSE_ID + 3, "h:%s", id);
}

/* House id's index: 1 (in *idx), 0 none, or GP_REG_REDIS. */
static int tun_index_of(br_rc *rc, const char *ktun, const char *id, uint64_t *idx, char *err,
                        size_t errlen) {
    char f[GP_MAX_HOUSE_ID + 3];
    tun_field_h(f, id);
    redisReply *r = cmd(rc, err, errlen, "HGET", ktun, f, NULL);
    if (!r)
        return GP_REG_REDIS;
    int has = gp_tun_index_parse(r, idx);
    freeReplyObject(r);
    return has;
}

int gp_reg_rm(br_rc *rc, const char *prefix, const char *id, int purge, long long *stream_len,
              int *tun_freed, uint64_t *tun_index, char *err, size_t errlen) {
    char k[GP_HOUSE_NKEYS][GP_KEY_MAX], khouses[GP_KEY_MAX], kctl[GP_KEY_MAX], ktun[GP_KEY_MAX];
    if (tun_freed)
        *tun_freed = 0;
    if (!gp_house_id_valid(gp_str_c(id))) {
        gp_errf(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    if (gp_key_house_all(k, prefix, id) < 0 || gp_key_houses(khouses, prefix) < 0 ||
        gp_key_ctl(kctl, prefix) < 0 || gp_key_tun(ktun, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    /* Its L3 index first, read only: a user that may not touch <p>:tun is refused here, before
     * anything is removed. */
    uint64_t idx = 0;
    int had = tun_index_of(rc, ktun, id, &idx, err, errlen);
    if (had < 0)
        return had;
    /* Every key of the house (one slot) in one script, shared with the bridge's JSON API
     * (store_house.h): the bridge holding the house is told to let it go. The set is another
     * slot. */
    char nkeys[8];
    snprintf(nkeys, sizeof nkeys, "%d", GP_REG_RM_NKEYS);
    redisReply *r = cmd(rc, err, errlen, "EVAL", GP_REG_RM_LUA, nkeys, k[0], k[1], k[2], k[3], k[4],
                        k[5], k[6], k[7], purge ? "1" : "0", kctl, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    long long removed = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        removed = r->element[0]->integer;
        if (stream_len)
            *stream_len = r->element[1]->integer;
    }
    freeReplyObject(r);
    /* Its request history (store_house.h: apart, an older ACL may refuse it; then it expires). */
    char herr[256];
    r = cmd(rc, herr, sizeof herr, "DEL", k[GP_REG_RM_NKEYS], NULL);
    freeReplyObject(r);
    r = cmd(rc, err, errlen, "SREM", khouses, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type == REDIS_REPLY_INTEGER)
        removed += r->integer;
    freeReplyObject(r);
    /* Then its L3 index and its routes' claim (another slot), freed whether or not the index
     * was read above: a bridge may have given it one meanwhile. */
    r = cmd(rc, err, errlen, "EVAL", GP_TUN_FORGET_LUA, "1", ktun, id, NULL);
    if (!r)
        return GP_REG_REDIS;
    freeReplyObject(r);
    if (had) {
        removed++;
        if (tun_freed)
            *tun_freed = 1;
        if (tun_index)
            *tun_index = idx;
    }
    if (!removed) {
        gp_errf(err, errlen, "no house '%s'", id);
        return GP_REG_NOT_FOUND;
    }
    return 0;
}

int gp_reg_secret(br_rc *rc, const char *prefix, const char *id, const uint8_t *master_key,
                  uint8_t out[GP_SECRET_LEN], char *err, size_t errlen) {
    char khouse[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0)
        return GP_ERR_INVALID;
    redisReply *r = cmd(rc, err, errlen, "HGET", khouse, GP_HOUSE_SECRET, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        gp_errf(err, errlen, "no house '%s'", id);
        return GP_REG_NOT_FOUND;
    }
    int rv =
        gp_secret_open(master_key, gp_str_c(id), (gp_str){(const uint8_t *)r->str, r->len}, out);
    freeReplyObject(r);
    if (rv != 0)
        gp_errf(err, errlen, "cannot read the secret of '%s': %s", id,
                rv == GP_ERR_AUTH ? "sealed with another master key (or none given)"
                                  : "stored value is not a secret");
    return rv;
}

/* The fields of the house hash that are shown, by name: never the secret, which a listing has
 * no use for (HGETALL would carry it to every `house list` and `top`). Every house written by
 * Ghost Port has `created` and `labels`. */
#define HOUSE_FIELDS GP_REG_HOUSE_FIELDS

/* The reply of HMGET <p>:tun pool4 pool6 h:<id>... for houses hs[0..n): their indexes and
 * addresses. A NOPERM refusal leaves them unknown (tun_has -1): `house list`, `top` and
 * `request` keep working for a Redis user whose ACL predates <p>:tun. 0 or GP_REG_REDIS. */
static int tun_parse(gp_reg_house *hs, size_t n, const redisReply *r, char *err, size_t errlen) {
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0) {
        for (size_t i = 0; i < n; i++)
            hs[i].tun_has = -1;
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 + n) {
        gp_errf(err, errlen, "redis: HMGET of the L3 address book: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return GP_REG_REDIS;
    }
    gp_tun_pools pools;
    char why[8];
    int pv = gp_tun_pools_parse(&pools, r->element[0], r->element[1], why, sizeof why);
    for (size_t i = 0; i < n; i++) {
        hs[i].tun_has = gp_tun_index_parse(r->element[2 + i], &hs[i].tun_index);
        gp_tun_pool_addrs(pv == 0 && hs[i].tun_has == 1 ? &pools : NULL, hs[i].tun_index,
                          &hs[i].tun4, &hs[i].tun6);
    }
    return 0;
}

static int pipeline(br_rc *rc, int n, const br_rc_cmd *cmds, redisReply **out, int lenient_last,
                    char *err, size_t errlen);

int gp_reg_peek(br_rc *rc, const char *prefix, const char *id, gp_reg_house *h, char *err,
                size_t errlen) {
    gp_reg_house_init(h, id, strlen(id));
    char khouse[GP_KEY_MAX], kstate[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_state(kstate, prefix, id) < 0)
        return GP_ERR_INVALID;
    const char *hm[2 + GP_REG_NHOUSE_FIELDS] = {"HMGET", khouse, HOUSE_FIELDS};
    const char *hg[] = {"HGETALL", kstate};
    br_rc_cmd cmds[2] = {{2 + GP_REG_NHOUSE_FIELDS, hm, NULL}, {2, hg, NULL}};
    redisReply *rep[2] = {NULL, NULL};
    if (pipeline(rc, 2, cmds, rep, 0, err, errlen) != 0)
        return GP_REG_REDIS;
    gp_reg_house_parse(h, rep[0]);
    gp_state_parse(&h->st, rep[1]);
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    return 0;
}

int gp_reg_get(br_rc *rc, const char *prefix, const char *id, gp_reg_house *h, char *err,
               size_t errlen) {
    int rv = gp_reg_peek(rc, prefix, id, h, err, errlen);
    if (rv != 0)
        return rv;
    char ktun[GP_KEY_MAX], f[GP_MAX_HOUSE_ID + 3];
    if (gp_key_tun(ktun, prefix) < 0)
        return GP_ERR_INVALID;
    tun_field_h(f, id);
    const char *argv[] = {"HMGET", ktun, "pool4", "pool6", f};
    redisReply *r = br_rc_cmdv(rc, 5, argv, NULL);
    if (!r) {
        gp_errf(err, errlen, "redis: %s", br_rc_error(rc));
        return GP_REG_REDIS;
    }
    rv = tun_parse(h, 1, r, err, errlen);
    freeReplyObject(r);
    return rv;
}

static int cmp_house(const void *a, const void *b) {
    return strcmp(((const gp_reg_house *)a)->id, ((const gp_reg_house *)b)->id);
}

/* Runs cmds as one pipeline; on failure frees what came back and sets err. An error reply
 * fails it, but a NOPERM one to the last command when lenient_last is set (its reader copes). */
static int pipeline(br_rc *rc, int n, const br_rc_cmd *cmds, redisReply **out, int lenient_last,
                    char *err, size_t errlen) {
    if (br_rc_pipeline(rc, n, cmds, out) == 0) {
        for (int i = 0; i < n; i++)
            if (out[i]->type == REDIS_REPLY_ERROR &&
                !(lenient_last && i == n - 1 && strncmp(out[i]->str, "NOPERM", 6) == 0)) {
                gp_errf(err, errlen, "redis: %s: %.*s", cmds[i].argv[0], (int)out[i]->len,
                        out[i]->str);
                goto fail;
            }
        return 0;
    }
    gp_errf(err, errlen, "redis: %s", br_rc_error(rc));
fail:
    for (int i = 0; i < n; i++)
        if (out[i]) {
            freeReplyObject(out[i]);
            out[i] = NULL;
        }
    return GP_REG_REDIS;
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
    size_t m = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    gp_reg_house *hs = calloc(m ? m : 1, sizeof *hs);
    /* Two commands per house, all in one pipeline: HMGET of the house hash's shown fields
     * (keys[2k]), HGETALL of its state (keys[2k+1]); then one for all: HMGET <p>:tun pool4
     * pool6 h:<id>... (tkey, tfields). */
    enum { HARGS = 2 + GP_REG_NHOUSE_FIELDS, SARGS = 2, ARGS = HARGS + SARGS };
    static const char *const fields[GP_REG_NHOUSE_FIELDS] = {HOUSE_FIELDS};
    char(*keys)[GP_KEY_MAX] = calloc(m ? 2 * m : 1, GP_KEY_MAX);
    char(*tfields)[GP_MAX_HOUSE_ID + 3] = calloc(m ? m : 1, GP_MAX_HOUSE_ID + 3);
    const char **argv = calloc(ARGS * m + 4 + m, sizeof *argv);
    br_rc_cmd *cmds = calloc(2 * m + 1, sizeof *cmds);
    redisReply **rep = calloc(2 * m + 1, sizeof *rep);
    char tkey[GP_KEY_MAX];
    int rv = GP_ERR_NOMEM;
    if (!hs || !keys || !tfields || !argv || !cmds || !rep)
        goto done;
    if (gp_key_tun(tkey, prefix) < 0) {
        rv = GP_ERR_INVALID;
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING ||
            !gp_house_id_valid((gp_str){(const uint8_t *)e->str, e->len}))
            continue; /* not written by us: skip rather than print junk */
        gp_reg_house_init(&hs[k], e->str, e->len);
        if (gp_key_house(keys[2 * k], prefix, hs[k].id) < 0 ||
            gp_key_state(keys[2 * k + 1], prefix, hs[k].id) < 0) {
            rv = GP_ERR_INVALID;
            goto done;
        }
        const char **a = &argv[ARGS * k];
        a[0] = "HMGET";
        a[1] = keys[2 * k];
        for (int j = 0; j < GP_REG_NHOUSE_FIELDS; j++)
            a[2 + j] = fields[j];
        a[HARGS] = "HGETALL";
        a[HARGS + 1] = keys[2 * k + 1];
        cmds[2 * k] = (br_rc_cmd){HARGS, a, NULL};
        cmds[2 * k + 1] = (br_rc_cmd){SARGS, a + HARGS, NULL};
        tun_field_h(tfields[k], hs[k].id);
        k++;
    }
    const char **t = &argv[ARGS * k];
    t[0] = "HMGET";
    t[1] = tkey;
    t[2] = "pool4";
    t[3] = "pool6";
    for (size_t i = 0; i < k; i++)
        t[4 + i] = tfields[i];
    cmds[2 * k] = (br_rc_cmd){(int)(4 + k), t, NULL};
    rv = pipeline(rc, (int)(2 * k + 1), cmds, rep, 1, err, errlen);
    if (rv != 0)
        goto done;
    for (size_t i = 0; i < k; i++) {
        gp_reg_house_parse(&hs[i], rep[2 * i]);
        gp_state_parse(&hs[i].st, rep[2 * i + 1]);
        freeReplyObject(rep[2 * i]);
        freeReplyObject(rep[2 * i + 1]);
    }
    rv = tun_parse(hs, k, rep[2 * k], err, errlen);
    freeReplyObject(rep[2 * k]);
    if (rv != 0)
        goto done;
    qsort(hs, k, sizeof *hs, cmp_house);
    *out = hs;
    *n = k;
    hs = NULL;
done:
    freeReplyObject(r);
    free(hs);
    free(keys);
    free(tfields);
    free(argv);
    free(cmds);
    free(rep);
    return rv;
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

/* KEYS[1] house hash. ARGV: "1" disable / "0" enable, the ctl channel, the id. 0 when the
 * house is not registered (a disabled flag must not create a hash without a secret). The
 * flag is set before the PUBLISH, in the same script: a bridge that hears the message, or a
 * house that reconnects meanwhile, finds it (ADMIN.md: the holder closes the house, the
 * others refuse it). The bridge's JSON API runs the same script (store_house.h). */
static const char *DISABLE_LUA = GP_REG_DISABLE_LUA;

int gp_reg_set_disabled(br_rc *rc, const char *prefix, const char *id, int disabled, char *err,
                        size_t errlen) {
    if (!gp_house_id_valid(gp_str_c(id))) {
        gp_errf(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    char khouse[GP_KEY_MAX], kctl[GP_KEY_MAX];
    if (gp_key_house(khouse, prefix, id) < 0 || gp_key_ctl(kctl, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    redisReply *r = cmd(rc, err, errlen, "EVAL", DISABLE_LUA, "1", khouse, disabled ? "1" : "0",
                        kctl, id, NULL);
    return house_script_done(r, id, err, errlen);
}

/* --- the L3 tunnel's address book ------------------------------------------------------- */

int gp_reg_tun_pools_get(br_rc *rc, const char *prefix, gp_tun_pools *out, char *err,
                         size_t errlen) {
    memset(out, 0, sizeof *out);
    char ktun[GP_KEY_MAX];
    if (gp_key_tun(ktun, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    redisReply *r = cmd(rc, err, errlen, "HMGET", ktun, "pool4", "pool6", NULL);
    if (!r)
        return GP_REG_REDIS;
    int rv = GP_REG_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        gp_errf(err, errlen, "redis: HMGET %s: unexpected reply", ktun);
    else {
        rv = gp_tun_pools_parse(out, r->element[0], r->element[1], err, errlen);
        rv = rv < 0 ? GP_ERR_INVALID : rv > 0 ? GP_REG_NOT_FOUND : 0;
        if (rv == GP_REG_NOT_FOUND)
            gp_errf(err, errlen, "no L3 address pools are recorded in %s", ktun);
    }
    freeReplyObject(r);
    return rv;
}

int gp_reg_tun_holder(br_rc *rc, const char *prefix, uint64_t idx, char *holder, char *err,
                      size_t errlen) {
    holder[0] = '\0';
    char ktun[GP_KEY_MAX], f[32];
    if (gp_key_tun(ktun, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    snprintf(f, sizeof f, "i:%llu", (unsigned long long)idx);
    redisReply *r = cmd(rc, err, errlen, "HGET", ktun, f, NULL);
    if (!r)
        return GP_REG_REDIS;
    if (r->type == REDIS_REPLY_STRING)
        gp_reply_copy(holder, GP_MAX_HOUSE_ID + 1, r);
    freeReplyObject(r);
    return 0;
}

int gp_reg_tun_set(br_rc *rc, const char *prefix, const char *id, uint64_t idx, char *holder,
                   char *err, size_t errlen) {
    if (holder)
        holder[0] = '\0';
    if (!gp_house_id_valid(gp_str_c(id))) {
        gp_errf(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    char ktun[GP_KEY_MAX], n[24];
    if (gp_key_tun(ktun, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    snprintf(n, sizeof n, "%llu", (unsigned long long)idx);
    redisReply *r = cmd(rc, err, errlen, "EVAL", GP_TUN_SET_LUA, "1", ktun, id, n, NULL);
    if (!r)
        return GP_REG_REDIS;
    int rv = 0;
    if (r->type != REDIS_REPLY_STRING) {
        gp_errf(err, errlen, "redis: the L3 index script gave an unexpected reply");
        rv = GP_REG_REDIS;
    } else if (r->len > 0) {
        char who[GP_MAX_HOUSE_ID + 1];
        gp_reply_copy(who, sizeof who, r);
        if (holder)
            memcpy(holder, who, sizeof who);
        gp_errf(err, errlen, "pool index %s is house %s's", n, who);
        rv = GP_REG_EXISTS;
    }
    freeReplyObject(r);
    return rv;
}

/* Claims routes[0..n) for house id in <p>:tun (GP_TUN_CLAIM_LUA; n 0 releases its claim).
 * 0; GP_REG_EXISTS when one overlaps another house's (named in err); GP_REG_REDIS. */
static int tun_claim(br_rc *rc, const char *ktun, const char *id, const gp_cidr *routes, size_t n,
                     char *err, size_t errlen) {
    char *items = malloc(n * (GP_TUN_CLAIM_ITEM_MAX + 1) + 1);
    if (!items) {
        gp_errf(err, errlen, "out of memory");
        return GP_ERR_NOMEM;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            items[o++] = ',';
        o += gp_tun_claim_item(&routes[i], items + o);
    }
    items[o] = '\0';
    redisReply *r = cmd(rc, err, errlen, "EVAL", GP_TUN_CLAIM_LUA, "1", ktun, id, items, NULL);
    free(items);
    if (!r)
        return GP_REG_REDIS;
    int rv = 0;
    if (r->type != REDIS_REPLY_ARRAY) {
        gp_errf(err, errlen, "redis: claiming the routes: unexpected reply");
        rv = GP_REG_REDIS;
    } else if (r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               r->element[2]->type == REDIS_REPLY_INTEGER && r->element[2]->integer >= 1 &&
               (size_t)r->element[2]->integer <= n) {
        char mine[GP_CIDR_STRLEN];
        gp_cidr_format(&routes[r->element[2]->integer - 1], mine);
        gp_errf(err, errlen,
                "route %s overlaps %s, which house %s may route: a subnet goes to one house "
                "(change that house's first: ghostport house tun %s --route ... or --no-routes)",
                mine, r->element[1]->str, r->element[0]->str, r->element[0]->str);
        rv = GP_REG_EXISTS;
    } else if (r->elements != 0) {
        gp_errf(err, errlen, "redis: claiming the routes: unexpected reply");
        rv = GP_REG_REDIS;
    }
    freeReplyObject(r);
    return rv;
}

int gp_reg_tun_routes_set(br_rc *rc, const char *prefix, const char *id, const gp_cidr *routes,
                          size_t n, char *err, size_t errlen) {
    if (!gp_house_id_valid(gp_str_c(id))) {
        gp_errf(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    char khouse[GP_KEY_MAX], text[GP_L3_LIST_MAX + 1];
    if (gp_key_house(khouse, prefix, id) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    if (n > GP_TUN_ROUTES_MAX || gp_cidr_list_format(routes, n, ",", text, sizeof text) < 0) {
        gp_errf(err, errlen, "too many routes: at most %d, %u bytes of text", GP_TUN_ROUTES_MAX,
                GP_L3_LIST_MAX);
        return GP_ERR_INVALID;
    }
    char ktun[GP_KEY_MAX];
    if (gp_key_tun(ktun, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    /* The claim first (<p>:tun, another slot): a route that overlaps another house's is refused
     * before the house's own list changes. */
    int rv = tun_claim(rc, ktun, id, routes, n, err, errlen);
    if (rv != 0)
        return rv;
    redisReply *r = cmd(rc, err, errlen, "EVAL", GP_TUN_ROUTES_LUA, "1", khouse, text, NULL);
    rv = house_script_done(r, id, err, errlen);
    if (rv == GP_REG_NOT_FOUND) /* no such house: no claim for it either */
        tun_claim(rc, ktun, id, NULL, 0, NULL, 0);
    return rv;
}

/* The glob pattern matching key names that start with prefix literally. */
static int glob_prefix(char *out, size_t cap, const char *prefix, const char *rest) {
    size_t o = 0;
    for (const char *p = prefix; *p; p++) {
        if (strchr("*?[]\\", *p)) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = '\\';
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = *p;
    }
    int n = snprintf(out + o, cap - o, "%s", rest);
    return n < 0 || (size_t)n >= cap - o ? -1 : 0;
}

/* SCAN one node to the end, appending matching keys to *keys. */
static int scan_node(br_rc *rc, const char *host, int port, const char *pattern, char ***keys,
                     size_t *n, size_t *cap, char *err, size_t errlen) {
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *r = br_rc_cmd_node(rc, host, port, 6, argv, NULL);
        if (!r) {
            gp_errf(err, errlen, "redis: %s", br_rc_error(rc));
            return GP_REG_REDIS;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
            r->element[0]->len >= sizeof cursor) {
            gp_errf(err, errlen, "redis: SCAN on %s:%d: %s", host, port,
                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return GP_REG_REDIS;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        const redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++) {
            if (ks->element[i]->type != REDIS_REPLY_STRING)
                continue;
            if (gp_grow(keys, cap, *n + 1, 64, sizeof **keys) != 0) {
                freeReplyObject(r);
                return GP_ERR_NOMEM;
            }
            if (!((*keys)[*n] = strndup(ks->element[i]->str, ks->element[i]->len))) {
                freeReplyObject(r);
                return GP_ERR_NOMEM;
            }
            (*n)++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int gp_reg_scan(br_rc *rc, const char *pattern, char ***keys, size_t *n, char *err, size_t errlen) {
    *keys = NULL;
    *n = 0;
    size_t cap = 0;
    /* A Redis Cluster's keys are spread over its masters and SCAN sees one node's: ask
     * CLUSTER SLOTS for the masters (the first node of each slot range) and scan each. On a
     * single server the command fails ("cluster support disabled"): scan the seed. */
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r = br_rc_cmdv(rc, 2, argv, NULL);
    if (!r) {
        gp_errf(err, errlen, "redis: %s", br_rc_error(rc));
        return GP_REG_REDIS;
    }
    int rv = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        rv = scan_node(rc, br_rc_seed_host(rc), br_rc_seed_port(rc), pattern, keys, n, &cap, err,
                       errlen);
    } else {
        char seen[16][300];
        int nseen = 0;
        for (size_t i = 0; rv == 0 && i < r->elements; i++) {
            const redisReply *range = r->element[i];
            if (range->type != REDIS_REPLY_ARRAY || range->elements < 3)
                continue;
            const redisReply *m = range->element[2];
            if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
                m->element[0]->type != REDIS_REPLY_STRING ||
                m->element[1]->type != REDIS_REPLY_INTEGER || m->element[0]->len > 255)
                continue;
            /* An empty or "?" address means "the node you asked" (cluster-announce unset). */
            const char *host = m->element[0]->len && strcmp(m->element[0]->str, "?") != 0
                                   ? m->element[0]->str
                                   : br_rc_seed_host(rc);
            int port = (int)m->element[1]->integer;
            char id[300];
            snprintf(id, sizeof id, "%s:%d", host, port);
            int dup = 0;
            for (int j = 0; j < nseen && !dup; j++)
                dup = strcmp(seen[j], id) == 0;
            if (dup)
                continue;
            if (nseen == 16) {
                gp_errf(err, errlen, "redis: more than 16 cluster masters");
                rv = GP_REG_REDIS;
                break;
            }
            snprintf(seen[nseen++], sizeof seen[0], "%s", id);
            rv = scan_node(rc, host, port, pattern, keys, n, &cap, err, errlen);
        }
    }
    freeReplyObject(r);
    if (rv != 0) {
        gp_reg_keys_free(*keys, *n);
        *keys = NULL;
        *n = 0;
    }
    return rv;
}

int gp_reg_rm_streams(br_rc *rc, const char *prefix, const char *id, long long *deleted, char *err,
                      size_t errlen) {
    *deleted = 0;
    if (!gp_house_id_valid(gp_str_c(id))) { /* an id has no glob characters */
        gp_errf(err, errlen, "invalid house id '%s'", id);
        return GP_ERR_INVALID;
    }
    static const char *const kinds[] = {"sin", "sout"};
    for (size_t k = 0; k < 2; k++) {
        char rest[GP_KEY_MAX], pattern[2 * GP_KEY_MAX];
        snprintf(rest, sizeof rest, ":{%s}:%s:*", id, kinds[k]);
        if (glob_prefix(pattern, sizeof pattern, prefix, rest) != 0) {
            gp_errf(err, errlen, "prefix too long");
            return GP_ERR_INVALID;
        }
        char **keys;
        size_t n;
        int rv = gp_reg_scan(rc, pattern, &keys, &n, err, errlen);
        if (rv != 0)
            return rv;
        /* One slot (the house's hash tag): UNLINK takes them in batches. */
        enum { BATCH = 128 };
        for (size_t i = 0; rv == 0 && i < n; i += BATCH) {
            const char *argv[BATCH + 1] = {"UNLINK"};
            size_t m = n - i < BATCH ? n - i : BATCH;
            for (size_t j = 0; j < m; j++)
                argv[1 + j] = keys[i + j];
            redisReply *r = br_rc_cmdv(rc, (int)m + 1, argv, NULL);
            if (!r || r->type != REDIS_REPLY_INTEGER) {
                gp_errf(err, errlen, "redis: UNLINK: %s",
                        !r                             ? br_rc_error(rc)
                        : r->type == REDIS_REPLY_ERROR ? r->str
                                                       : "unexpected reply");
                rv = GP_REG_REDIS;
            } else {
                *deleted += r->integer;
            }
            if (r)
                freeReplyObject(r);
        }
        gp_reg_keys_free(keys, n);
        if (rv != 0)
            return rv;
    }
    return 0;
}

void gp_reg_keys_free(char **keys, size_t n) {
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}

/* The stats keys of the bridges listed in the <p>:bridges index (a ZSET of bridge ids scored
 * by the time of their last stats, kept by the bridges themselves): no SCAN, whose cost grows
 * with the whole keyspace. Empty when there is no index (bridges that predate it). */
static int bridges_index(br_rc *rc, const char *prefix, char ***keys, size_t *n, char *err,
                         size_t errlen) {
    *keys = NULL;
    *n = 0;
    char kidx[GP_KEY_MAX];
    if (gp_key_bridges(kidx, prefix) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    redisReply *r = cmd(rc, err, errlen, "ZRANGE", kidx, "0", "-1", NULL);
    if (!r)
        return GP_REG_REDIS;
    size_t m = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    char **k = calloc(m ? m : 1, sizeof *k);
    if (!k) {
        freeReplyObject(r);
        return GP_ERR_NOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        const redisReply *e = r->element[i];
        char key[GP_KEY_MAX];
        if (e->type != REDIS_REPLY_STRING || memchr(e->str, '\0', e->len) ||
            gp_key_bstats(key, prefix, e->str) < 0)
            continue;
        if (!(k[*n] = strdup(key))) {
            freeReplyObject(r);
            gp_reg_keys_free(k, *n);
            *n = 0;
            return GP_ERR_NOMEM;
        }
        (*n)++;
    }
    freeReplyObject(r);
    *keys = k;
    return 0;
}

static int cmp_bstats(const void *a, const void *b) {
    return strcmp(((const gp_reg_bstats *)a)->id, ((const gp_reg_bstats *)b)->id);
}

int gp_reg_bstats_list(br_rc *rc, const char *prefix, gp_reg_bstats **out, size_t *n, char *err,
                       size_t errlen) {
    *out = NULL;
    *n = 0;
    char pattern[2 * GP_KEY_MAX];
    if (glob_prefix(pattern, sizeof pattern, prefix, ":bstats:*") != 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    char **keys;
    size_t nk;
    int rv = bridges_index(rc, prefix, &keys, &nk, err, errlen);
    if (rv == 0 && nk == 0) {
        gp_reg_keys_free(keys, nk);
        rv = gp_reg_scan(rc, pattern, &keys, &nk, err, errlen);
        /* The scan is for bridges older than the index. A Redis user without SCAN (the ACL
         * users of deploy/redis-users.acl: it reveals every key's name) sees none of those:
         * no bridge is publishing, which is what the empty index says. */
        if (rv == GP_REG_REDIS && strstr(err, "NOPERM")) {
            rv = 0;
            keys = NULL;
            nk = 0;
            err[0] = '\0';
        }
    }
    if (rv != 0)
        return rv;
    gp_reg_bstats *bs = calloc(nk ? nk : 1, sizeof *bs);
    const char **argv = calloc(nk ? 2 * nk : 1, sizeof *argv);
    br_rc_cmd *cmds = calloc(nk ? nk : 1, sizeof *cmds);
    redisReply **rep = calloc(nk ? nk : 1, sizeof *rep);
    rv = GP_ERR_NOMEM;
    if (!bs || !argv || !cmds || !rep)
        goto done;
    for (size_t i = 0; i < nk; i++) {
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = keys[i];
        cmds[i] = (br_rc_cmd){2, &argv[2 * i], NULL};
    }
    rv = pipeline(rc, (int)nk, cmds, rep, 0, err, errlen);
    if (rv != 0)
        goto done;
    size_t k = 0, plen = strlen(prefix) + strlen(":bstats:");
    for (size_t i = 0; i < nk; i++) {
        /* Empty: expired between SCAN and HGETALL (the bridge stopped publishing). */
        if (rep[i]->type == REDIS_REPLY_ARRAY && rep[i]->elements >= 2) {
            gp_reg_bstats *b = &bs[k++];
            b->pid = b->since_ms = b->ts_ms = b->houses = b->req_total = b->err_total = -1;
            b->bytes_in = b->bytes_out = b->connects_total = b->auth_failures_total = -1;
            b->redis_rtt_ms = -1;
            gp_reg_bstats_parse(b, rep[i]);
            if (!b->id[0]) { /* the key names it too */
                redisReply v = {.type = REDIS_REPLY_STRING,
                                .str = keys[i] + plen,
                                .len = strlen(keys[i] + plen)};
                gp_reply_copy(b->id, sizeof b->id, &v);
            }
        }
        freeReplyObject(rep[i]);
    }
    qsort(bs, k, sizeof *bs, cmp_bstats);
    *out = bs;
    *n = k;
    bs = NULL;
done:
    gp_reg_keys_free(keys, nk);
    free(bs);
    free(argv);
    free(cmds);
    free(rep);
    return rv;
}

int gp_reg_recent(br_rc *rc, const char *prefix, const char *id, size_t max,
                  gp_reg_recent_req **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    char krecent[GP_KEY_MAX], stop[24];
    if (gp_key_recent(krecent, prefix, id) < 0) {
        gp_errf(err, errlen, "prefix too long");
        return GP_ERR_INVALID;
    }
    if (max == 0)
        return 0;
    snprintf(stop, sizeof stop, "%zu", max - 1);
    redisReply *r = cmd(rc, err, errlen, "LRANGE", krecent, "0", stop, NULL);
    if (!r)
        return GP_REG_REDIS;
    size_t m = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    gp_reg_recent_req *rs = calloc(m ? m : 1, sizeof *rs);
    if (!rs) {
        freeReplyObject(r);
        return GP_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        k += gp_reg_recent_parse(&rs[k], r->element[i]);
    freeReplyObject(r);
    *out = rs;
    *n = k;
    return 0;
}
