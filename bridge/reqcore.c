/* reqcore.c — the reply writer and the settling table of the request/reply core (reqcore.h):
 * reply entries, the ack after Redis confirmed them, the house's recent list. No global
 * state: a br_replies holds the table, its ops reach Redis, the clocks and the stats.
 *
 * Order on completion: XADD the reply, and only once Redis has confirmed it, XACK+XDEL in a
 * Lua script that first checks the epoch is still ours. A crash in between gives a duplicate
 * reply, never a lost one. A reply whose write was lost (timeout, disconnect) is not
 * acknowledged: the entry stays pending and is delivered again. */
#include "reqcore.h"

#include "entry.h"
#include "log.h"
#include "rkeys.h"

#include <stdlib.h>
#include <string.h>

#define REPLY_MAXLEN "1000"

/* Replies written or being written whose entry is not yet acknowledged, by (house, entry id):
 * the entry is still in the pending list meanwhile, and a pending rescan must not deliver it
 * again (the producer would get the same reply twice without any crash). */
#define SETTLE_BUCKETS 1024u

struct br_replies {
    br_replies_cfg cfg;
    br_replies_ops ops;
    void *ud;
    unsigned live;
    br_reply *settling[SETTLE_BUCKETS];
};

struct br_reply {
    br_replies *rs;
    struct br_reply *snext; /* settling table */
    int refs, lost, failed, final_sent;
    unsigned outstanding;
    char house[GP_MAX_HOUSE_ID + 1];
    char reqkey[GP_KEY_MAX], fencekey[GP_KEY_MAX]; /* epoch key, or state key (janitor) */
    char *holder;                                  /* NULL: ack under `epoch` */
    uint64_t epoch;
    char entry_id[48];
    char *key; /* NULL: no reply wanted */
    size_t keylen;
    char *frame_id, *headers, *error, *message;
    unsigned status;
    /* for the metrics and the house's recent requests */
    char *method, *path;
    uint64_t fwd_ns, done_ns; /* now_ns: forwarded (0: never), final reply issued */
    uint64_t done_redis_ms;   /* Redis clock ms of the final reply */
};

br_replies *br_replies_new(const br_replies_cfg *cfg, const br_replies_ops *ops, void *ud) {
    br_replies *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->cfg = *cfg;
    rs->ops = *ops;
    rs->ud = ud;
    return rs;
}

void br_replies_free(br_replies *rs) {
    free(rs);
}

void br_replies_set_cfg(br_replies *rs, const br_replies_cfg *cfg) {
    rs->cfg = *cfg;
}

unsigned br_replies_live(const br_replies *rs) {
    return rs->live;
}

static void live_add(br_replies *rs, int d) {
    rs->live = (unsigned)((int)rs->live + d);
    if (rs->ops.live)
        rs->ops.live(rs->ud, rs->live);
}

static unsigned settle_hash(const char *house, const char *entry_id) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *p = house; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (const char *p = entry_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % SETTLE_BUCKETS;
}

static void settle_remove(br_reply *rp) {
    br_reply **pp = &rp->rs->settling[settle_hash(rp->house, rp->entry_id)];
    while (*pp && *pp != rp)
        pp = &(*pp)->snext;
    if (*pp)
        *pp = rp->snext;
}

int br_replies_settling(const br_replies *rs, const char *house, const char *entry_id) {
    for (br_reply *rp = rs->settling[settle_hash(house, entry_id)]; rp; rp = rp->snext)
        if (strcmp(rp->entry_id, entry_id) == 0 && strcmp(rp->house, house) == 0)
            return 1;
    return 0;
}

void br_reply_unref(br_reply *rp) {
    if (!rp || --rp->refs > 0)
        return;
    settle_remove(rp);
    live_add(rp->rs, -1);
    free(rp->holder);
    free(rp->key);
    free(rp->frame_id);
    free(rp->headers);
    free(rp->error);
    free(rp->message);
    free(rp->method);
    free(rp->path);
    free(rp);
}

static char *dupn(const void *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

br_reply *br_reply_new(br_replies *rs, const char *house, const char *reqkey, const char *entry_id,
                       gp_str frame_id, const char *key, const char *fencekey, uint64_t epoch,
                       const char *holder) {
    br_reply *rp = calloc(1, sizeof *rp);
    if (!rp)
        return NULL;
    rp->rs = rs;
    rp->refs = 1;
    live_add(rs, 1);
    snprintf(rp->house, sizeof rp->house, "%s", house);
    snprintf(rp->reqkey, sizeof rp->reqkey, "%s", reqkey);
    snprintf(rp->entry_id, sizeof rp->entry_id, "%s", entry_id);
    snprintf(rp->fencekey, sizeof rp->fencekey, "%s", fencekey);
    unsigned b = settle_hash(rp->house, rp->entry_id);
    rp->snext = rs->settling[b];
    rs->settling[b] = rp;
    if (holder)
        rp->holder = strdup(holder);
    else
        rp->epoch = epoch;
    rp->frame_id = dupn(frame_id.p, frame_id.len);
    if (key) {
        rp->keylen = strlen(key);
        rp->key = dupn(key, rp->keylen);
    }
    if (!rp->frame_id || (key && !rp->key) || (holder && !rp->holder)) {
        br_reply_unref(rp);
        return NULL;
    }
    return rp;
}

/* At most this much of a path goes into the recent list (it is for people to read). */
#define RECENT_PATH_MAX 200
#define RECENT_METHOD_MAX 40

/* The first max + 1 bytes of s: enough for recent_json to see that it must cut. */
static char *dup_clip(gp_str s, size_t max) {
    return dupn(s.p, s.len <= max ? s.len : max + 1);
}

void br_reply_meta(br_reply *rp, gp_str method, gp_str path, uint64_t fwd_ns) {
    free(rp->method);
    free(rp->path);
    rp->method = dup_clip(method, RECENT_METHOD_MAX);
    rp->path = dup_clip(path, RECENT_PATH_MAX);
    rp->fwd_ns = fwd_ns;
}

void br_reply_set(br_reply *rp, unsigned status, const char *headers, gp_str error,
                  gp_str message) {
    rp->status = status;
    free(rp->headers);
    free(rp->error);
    free(rp->message);
    rp->headers = strdup(headers ? headers : "{}");
    rp->error = error.len ? dupn(error.p, error.len) : NULL;
    rp->message = message.len ? dupn(message.p, message.len) : NULL;
}

static void on_ack(redisReply *rep, void *ud) {
    br_reply *rp = ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
        if (!rp->holder && rp->rs->ops.fenced)
            rp->rs->ops.fenced(rp->rs->ud, rp->house, rp->epoch);
        br_log(BR_LOG_INFO, "ack_refused", "house=%s entry=%s reason=%s", rp->house, rp->entry_id,
               rp->holder ? "house_now_held" : "fenced");
    } else if (!rep || rep->type == REDIS_REPLY_ERROR) {
        br_log(BR_LOG_WARN, "ack_failed", "house=%s entry=%s err=%s", rp->house, rp->entry_id,
               br_qs(rep ? rep->str : "redis unavailable"));
    }
    br_reply_unref(rp);
}

json_t *br_json_bytes(gp_str s) {
    json_t *j = json_stringn((const char *)s.p, s.len);
    if (j)
        return j;
    char *t = dupn(s.p, s.len);
    if (!t)
        return NULL;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)t[i] >= 0x80 || t[i] == '\0')
            t[i] = '?';
    j = json_stringn(t, s.len);
    free(t);
    return j;
}

/* Each text field of a recent entry is cut to at most this many bytes (marker included):
 * an invalid request may carry a 1 MiB method, a house a 64 KiB error, and the list is kept
 * a week and sent on every dashboard poll. A whole entry stays under 1 KiB. */
#define RECENT_ID_MAX 200
#define RECENT_ERROR_MAX 80

/* s (NULL: "") as a JSON string of at most max bytes, cut with BR_CLIP_MARK. */
static json_t *jstr(const char *s, size_t max) {
    if (!s)
        return json_string("");
    size_t len = strlen(s), n = br_clip_len(s, len, max);
    if (n == len)
        return br_json_bytes((gp_str){(const uint8_t *)s, len});
    char buf[256];
    n = n < sizeof buf - 4 ? n : sizeof buf - 4;
    memcpy(buf, s, n);
    memcpy(buf + n, BR_CLIP_MARK, 3);
    return br_json_bytes((gp_str){(const uint8_t *)buf, n + 3});
}

/* The entry of the house's recent list: {"ts_ms","id","method","path","status","ms","error"}
 * (bridge/ADMIN.md). NULL when there is none to keep (no status: an entry that vanished). */
static char *recent_json(const br_reply *rp) {
    if (!rp->status || rp->rs->cfg.recent <= 0)
        return NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "ts_ms", json_integer((json_int_t)rp->done_redis_ms));
    json_object_set_new(o, "id", jstr(rp->frame_id, RECENT_ID_MAX));
    json_object_set_new(o, "method", jstr(rp->method, RECENT_METHOD_MAX));
    json_object_set_new(o, "path", jstr(rp->path, RECENT_PATH_MAX));
    json_object_set_new(o, "status", json_integer(rp->status));
    json_object_set_new(
        o, "ms", json_integer(rp->fwd_ns ? (json_int_t)((rp->done_ns - rp->fwd_ns) / 1000000) : 0));
    json_object_set_new(o, "error", jstr(rp->error, RECENT_ERROR_MAX));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void reply_ack(br_reply *rp) {
    br_replies *rs = rp->rs;
    char recent[GP_KEY_MAX];
    gp_key_recent(recent, rs->cfg.prefix, rp->house);
    char *line = recent_json(rp);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, rp->fencekey);
    br_args_str(&a, rp->reqkey);
    br_args_str(&a, recent);
    if (rp->holder)
        br_args_str(&a, rp->holder);
    else
        br_args_u64(&a, rp->epoch);
    br_args_str(&a, GP_GROUP);
    br_args_str(&a, rp->entry_id);
    br_args_str(&a, line ? line : "");
    br_args_u64(&a, line ? (uint64_t)rs->cfg.recent : 0);
    rp->refs++;
    if (rs->ops.eval(rs->ud, rp->holder ? BR_RS_ACK_UNHELD : BR_RS_ACK, 3, &a, on_ack, rp) != 0)
        br_reply_unref(rp);
    free(line);
}

static void reply_done(br_reply *rp) {
    if (rp->lost) {
        /* Not acknowledged: the entry stays pending and is delivered again. */
        br_log(BR_LOG_WARN, "reply_lost", "house=%s entry=%s id=%s", rp->house, rp->entry_id,
               br_qs(rp->frame_id));
        return;
    }
    reply_ack(rp);
}

static void on_xadd(redisReply *rep, void *ud) {
    br_reply *rp = ud;
    rp->outstanding--;
    if (!rep) {
        rp->lost = 1;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        /* A permanent refusal (the key holds something else, …): retrying cannot help, so the
         * entry is still acknowledged below, loudly. */
        int wrong_type = br_reply_is_error(rep, "WRONGTYPE");
        rp->failed = 1;
        if (rp->rs->ops.reply_failed)
            rp->rs->ops.reply_failed(rp->rs->ud, wrong_type ? "wrong_type" : "error");
        br_log(BR_LOG_ERROR, "reply_failed", "house=%s entry=%s id=%s key=%s reason=%s err=%s",
               rp->house, rp->entry_id, br_qs(rp->frame_id), br_q(rp->key, rp->keylen),
               wrong_type ? "wrong_type" : "error", br_qs(rep->str));
    }
    if (rp->final_sent && rp->outstanding == 0)
        reply_done(rp);
    br_reply_unref(rp);
}

void br_reply_entry(br_reply *rp, const uint8_t *body, size_t len, int final) {
    br_replies *rs = rp->rs;
    if (final && !rp->final_sent) {
        rp->done_ns = rs->ops.now_ns(rs->ud);
        rp->done_redis_ms = rs->ops.now_redis_ms(rs->ud);
        if (rp->status && rs->ops.final) /* 0: an entry that vanished, no reply */
            rs->ops.final(rs->ud, rp->house, rp->holder ? 0 : rp->epoch, rp->status,
                          rp->error != NULL, rp->fwd_ns);
    }
    if (final)
        rp->final_sent = 1;
    if (!rp->key) {
        if (final && rp->outstanding == 0)
            reply_done(rp);
        return;
    }
    char status[8];
    snprintf(status, sizeof status, "%u", rp->status);
    br_args a;
    br_args_init(&a);
    br_args_bin(&a, rp->key, rp->keylen);
    br_args_str(&a, REPLY_MAXLEN);
    br_args_u64(&a, (uint64_t)rs->cfg.reply_ttl * 1000);
    br_args_str(&a, "id");
    br_args_str(&a, rp->frame_id);
    br_args_str(&a, "status");
    br_args_str(&a, status);
    br_args_str(&a, "headers");
    br_args_str(&a, rp->headers ? rp->headers : "{}");
    br_args_str(&a, "body");
    br_args_bin(&a, body, len);
    br_args_str(&a, "final");
    br_args_str(&a, final ? "1" : "0");
    if (rp->error) {
        br_args_str(&a, "error");
        br_args_str(&a, rp->error);
        br_args_str(&a, "message");
        br_args_str(&a, rp->message ? rp->message : "");
    }
    rp->refs++;
    rp->outstanding++;
    if (rs->ops.eval(rs->ud, BR_RS_REPLY, 1, &a, on_xadd, rp) != 0)
        on_xadd(NULL, rp);
}

void br_reply_abandon(br_reply *rp) {
    if (!rp)
        return;
    if (!rp->final_sent && rp->key) {
        br_args a;
        br_args_init(&a);
        br_args_bin(&a, rp->key, rp->keylen);
        rp->rs->ops.eval(rp->rs->ud, BR_RS_REPLY_DROP, 1, &a, NULL, NULL);
    }
    br_reply_unref(rp);
}
