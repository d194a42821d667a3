/* reqcore.c — the request/reply core (reqcore.h): the reply writer and settling table
 * (br_replies: reply entries, the ack after Redis confirmed them, the house's recent list)
 * and the requests in flight on a house connection (br_reqtab: forwarding, body round robin,
 * response chunking, deadlines). No global state: the control blocks hold it, their ops
 * reach the house, Redis, the clocks and the stats.
 *
 * Order on completion: XADD the reply, and only once Redis has confirmed it, XACK+XDEL in a
 * Lua script that first checks the epoch is still ours. A crash in between gives a duplicate
 * reply, never a lost one. A reply whose write was lost (timeout, disconnect) is not
 * acknowledged: the entry stays pending and is delivered again. */
#include "reqcore.h"

#include "../log.h"
#include "../store/rkeys.h"
#include "buf.h"
#include "entry.h"
#include "list.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    size_t wbytes; /* reply entries written, not yet confirmed */
    int pressed;   /* ops.pressure(1) said, not yet taken back */
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
    const char *kind; /* the reply's `kind` field (a static string: "stream"), NULL: none */
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

size_t br_replies_wbytes(const br_replies *rs) {
    return rs->wbytes;
}

/* A house can send a response faster than Redis takes it (a fast house, Redis over TLS or far
 * away): without a bound the bridge would hold the difference, a whole response at worst. */
static void wbytes_add(br_replies *rs, size_t n) {
    rs->wbytes += n;
    if (!rs->pressed && rs->wbytes > BR_REPLY_WBYTES_HIGH) {
        rs->pressed = 1;
        if (rs->ops.pressure)
            rs->ops.pressure(rs->ud, 1);
    }
}

static void wbytes_sub(br_replies *rs, size_t n) {
    rs->wbytes -= n;
    if (rs->pressed && rs->wbytes < BR_REPLY_WBYTES_LOW) {
        rs->pressed = 0;
        if (rs->ops.pressure)
            rs->ops.pressure(rs->ud, 0);
    }
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
    GP_CHAIN_REMOVE(rp->rs->settling[settle_hash(rp->house, rp->entry_id)], rp, snext);
}

int br_replies_settling(const br_replies *rs, const char *house, const char *entry_id) {
    for (br_reply *rp = rs->settling[settle_hash(house, entry_id)]; rp; rp = rp->snext)
        if (strcmp(rp->entry_id, entry_id) == 0 && strcmp(rp->house, house) == 0)
            return 1;
    return 0;
}

unsigned br_replies_house_settling(const br_replies *rs, const char *house) {
    unsigned n = 0;
    for (unsigned b = 0; b < SETTLE_BUCKETS; b++)
        for (const br_reply *rp = rs->settling[b]; rp; rp = rp->snext)
            n += strcmp(rp->house, house) == 0;
    return n;
}

void br_reply_unref(br_reply *rp) {
    if (!rp || --rp->refs > 0)
        return;
    settle_remove(rp);
    live_add(rp->rs, -1);
    if (rp->rs->ops.settled)
        rp->rs->ops.settled(rp->rs->ud, rp->house);
    GP_FREE_ALL(rp->holder, rp->key, rp->frame_id, rp->headers, rp->error, rp->message, rp->method,
                rp->path, rp);
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

/* The entry of the house's recent list: {"ts_ms","id","method","path","status","ms","us","error"}
 * (bridge/admin/ADMIN.md). NULL when there is none to keep (no status: an entry that vanished). */
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
    /* the same in microseconds: a sub-millisecond reply is not "0 ms" on the dashboard */
    json_object_set_new(
        o, "us", json_integer(rp->fwd_ns ? (json_int_t)((rp->done_ns - rp->fwd_ns) / 1000) : 0));
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

/* One reply entry on its way to Redis: its size counts against BR_REPLY_WBYTES_HIGH. */
typedef struct reply_write {
    br_reply *rp;
    size_t bytes;
} reply_write;

static void on_xadd(redisReply *rep, void *ud) {
    reply_write *w = ud;
    br_reply *rp = w->rp;
    wbytes_sub(rp->rs, w->bytes);
    free(w);
    rp->outstanding--;
    if (!rep) {
        rp->lost = 1;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        /* A permanent refusal (the key holds something else, …): retrying cannot help, so the
         * entry is still acknowledged below, loudly. */
        int wrong_type = br_reply_is_error(rep, "WRONGTYPE");
        rp->failed = 1;
        if (rp->rs->ops.count)
            rp->rs->ops.count(rp->rs->ud, BR_RC_REPLY_FAILURES,
                              wrong_type ? "wrong_type" : "error");
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
    if (!rp->kind) { /* a stream open's outcome has neither (proto/STREAMS.md) */
        br_args_str(&a, "headers");
        br_args_str(&a, rp->headers ? rp->headers : "{}");
        br_args_str(&a, "body");
        br_args_bin(&a, body, len);
    }
    br_args_str(&a, "final");
    br_args_str(&a, final ? "1" : "0");
    if (rp->kind) {
        br_args_str(&a, "kind");
        br_args_str(&a, rp->kind);
    }
    if (rp->error) {
        br_args_str(&a, "error");
        br_args_str(&a, rp->error);
        br_args_str(&a, "message");
        br_args_str(&a, rp->message ? rp->message : "");
    }
    reply_write *w = malloc(sizeof *w);
    if (!w) { /* as a write Redis lost: not acknowledged, delivered again */
        rp->lost = 1;
        if (final && rp->outstanding == 0)
            reply_done(rp);
        return;
    }
    *w = (reply_write){rp, len + rp->keylen};
    rp->refs++;
    rp->outstanding++;
    wbytes_add(rs, w->bytes);
    if (rs->ops.eval(rs->ud, BR_RS_REPLY, 1, &a, on_xadd, w) != 0)
        on_xadd(NULL, w);
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

static void count(br_replies *rs, br_rc_metric m, const char *label) {
    if (rs->ops.count)
        rs->ops.count(rs->ud, m, label);
}

/* The invalid-request counter's reason for an error reply of ours (NULL: not one). */
static const char *invalid_reason(const char *error) {
    if (strcmp(error, "bad_request") == 0)
        return "request";
    if (strcmp(error, "too_large") == 0)
        return "too_large";
    return NULL;
}

void br_replies_error(br_replies *rs, const char *house, const char *reqkey, const char *fencekey,
                      uint64_t epoch, const char *holder, const br_entry *en, int status,
                      const char *error, const char *message) {
    /* Checked here, where both the holding bridge and the janitor answer: a refused reply
     * key gets nothing written, only the settling of the entry and its recent line. */
    char key[BR_REPLY_KEY_MAX + 1];
    const char *why;
    int klen = br_entry_reply_key(en, rs->cfg.prefix, key, &why);
    if (klen < 0) {
        status = 400;
        error = "bad_reply";
        message = why;
        count(rs, BR_RC_INVALID_REQUESTS, "reply_key");
        br_log(BR_LOG_WARN, "bad_request", "reason=reply_key house=%s entry=%s id=%s key=%s msg=%s",
               house, en->entry_id, br_q((const char *)en->id.p, en->id.len),
               br_q((const char *)en->reply.p, en->reply.len), br_qs(why));
    } else if (error && invalid_reason(error)) {
        count(rs, BR_RC_INVALID_REQUESTS, invalid_reason(error));
    }
    br_reply *rp = br_reply_new(rs, house, reqkey, en->entry_id, en->id, klen > 0 ? key : NULL,
                                fencekey, epoch, holder);
    if (error)
        br_log(BR_LOG_INFO, "request_error", "house=%s entry=%s id=%s status=%d error=%s msg=%s",
               house, en->entry_id, br_q((const char *)en->id.p, en->id.len), status, error,
               br_qs(message));
    if (!rp)
        return; /* out of memory: the entry stays pending and comes back */
    rp->kind = en->reply_kind;
    br_reply_meta(rp, en->reply_kind ? gp_str_c(en->reply_kind) : en->method, en->path, 0);
    br_reply_set(rp, (unsigned)status, "{}", gp_str_c(error ? error : ""),
                 gp_str_c(message ? message : ""));
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
}

/* --- requests in flight on one house connection ------------------------------------------ */

struct br_req {
    br_req *next, *prev; /* t->reqs */
    br_req *bnext;       /* body queue */
    uint32_t stream;
    char entry_id[48];
    char *frame_id, *reply_key; /* reply_key NULL: no reply wanted */
    char *method, *path;        /* for the house's recent requests (path truncated) */
    uint64_t fwd_ns;            /* now_ns when forwarded */
    char *content_type;
    uint64_t deadline; /* Redis ms */
    uint8_t *body;
    size_t body_len, body_off;
    int in_body_queue;
    /* response */
    int got_head;
    unsigned status;
    char *headers_json, *error, *message;
    uint8_t *rbuf;
    size_t rlen, rcap;
    br_reply *out; /* reply being streamed to Redis (NULL until the first entry) */
};

struct br_reqtab {
    br_replies *rs;
    br_reqtab_ops ops;
    void *ud;
    char house[GP_MAX_HOUSE_ID + 1], reqkey[GP_KEY_MAX], epochkey[GP_KEY_MAX];
    uint64_t epoch;
    long long max_body;
    size_t reply_chunk;
    gp_zctx *zc;
    uint32_t next_stream;
    br_req *reqs; /* in flight, newest first */
    unsigned ninflight;
    size_t inflight_bytes;         /* request body bytes held here (not yet sent to the house) */
    br_req *body_head, *body_tail; /* requests with body bytes still to send, round robin */
    uint64_t min_deadline;         /* earliest deadline among reqs (Redis ms), 0: none */
};

br_reqtab *br_reqtab_new(br_replies *rs, const br_reqtab_cfg *cfg, const br_reqtab_ops *ops,
                         void *ud) {
    br_reqtab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->rs = rs;
    t->ops = *ops;
    t->ud = ud;
    snprintf(t->house, sizeof t->house, "%s", cfg->house);
    snprintf(t->reqkey, sizeof t->reqkey, "%s", cfg->reqkey);
    snprintf(t->epochkey, sizeof t->epochkey, "%s", cfg->epochkey);
    t->epoch = cfg->epoch;
    t->max_body = cfg->max_body;
    t->reply_chunk = cfg->reply_chunk;
    t->zc = cfg->zc;
    return t;
}

unsigned br_reqtab_count(const br_reqtab *t) {
    return t->ninflight;
}

size_t br_reqtab_bytes(const br_reqtab *t) {
    return t->inflight_bytes;
}

uint64_t br_reqtab_min_deadline(const br_reqtab *t) {
    return t->min_deadline;
}

br_req *br_reqtab_body_head(const br_reqtab *t) {
    return t->body_head;
}

long long br_reqtab_room(const br_reqtab *t, long long max_inflight, long long max_bytes) {
    long long cap = max_inflight - (long long)(t ? t->ninflight : 0);
    if (cap <= 0 || (long long)(t ? t->inflight_bytes : 0) >= max_bytes)
        return 0;
    return cap;
}

int br_reqtab_in_flight(const br_reqtab *t, const char *entry_id) {
    for (const br_req *r = t->reqs; r; r = r->next)
        if (strcmp(r->entry_id, entry_id) == 0)
            return 1;
    return br_replies_settling(t->rs, t->house, entry_id);
}

static br_req *find(br_reqtab *t, uint32_t stream) {
    for (br_req *r = t->reqs; r; r = r->next)
        if (r->stream == stream)
            return r;
    return NULL;
}

static void body_unlink(br_reqtab *t, br_req *r) {
    if (!r->in_body_queue)
        return;
    GP_SLIST_REMOVE(t->body_head, t->body_tail, r, bnext);
    r->bnext = NULL;
    r->in_body_queue = 0;
}

static void body_push(br_reqtab *t, br_req *r) {
    r->in_body_queue = 1;
    GP_SLIST_APPEND(t->body_head, t->body_tail, r, bnext);
}

static void req_free_fields(br_req *r) {
    GP_FREE_ALL(r->frame_id, r->reply_key, r->method, r->path, r->content_type, r->body,
                r->headers_json, r->error, r->message, r->rbuf, r);
}

static void req_free(br_reqtab *t, br_req *r) {
    body_unlink(t, r);
    if (r->body)
        t->inflight_bytes -= r->body_len;
    GP_LIST_REMOVE(t->reqs, r, prev, next);
    t->ninflight--;
    /* Abandoned mid-stream (house gone): the partial reply is dropped, the entry stays
     * pending and the redelivery writes the whole reply again. */
    br_reply_abandon(r->out);
    req_free_fields(r);
}

/* The request left: the owner may read again or finish draining (and may empty the table). */
static void req_done(br_reqtab *t, br_req *r) {
    req_free(t, r);
    if (t->ops.room)
        t->ops.room(t->ud);
}

void br_reqtab_free_all(br_reqtab *t) {
    if (!t)
        return;
    while (t->reqs)
        req_free(t, t->reqs);
    t->min_deadline = 0;
}

void *br_reqtab_owner(const br_reqtab *t) {
    return t->rs->ud;
}

void br_reqtab_free(br_reqtab *t) {
    if (!t)
        return;
    br_reqtab_free_all(t);
    free(t);
}

/* key: the checked reply key, or NULL (no reply wanted). */
static void forward(br_reqtab *t, const br_entry *en, const char *key, uint64_t now) {
    br_req *r = calloc(1, sizeof *r);
    json_t *h = en->headers.len ? br_headers_load(en->headers, NULL, 0) : NULL;
    gp_header hs[GP_MAX_HEADERS];
    size_t nh = 0;
    if (!r)
        goto fail;
    r->stream = ++t->next_stream;
    snprintf(r->entry_id, sizeof r->entry_id, "%s", en->entry_id);
    r->frame_id = dupn(en->id.p, en->id.len);
    r->reply_key = key ? strdup(key) : NULL;
    r->deadline = en->deadline;
    r->body_len = en->body.len;
    r->method = dupn(en->method.p, en->method.len);
    r->path = dup_clip(en->path, RECENT_PATH_MAX);
    if (r->body_len)
        r->body = malloc(r->body_len);
    if (!r->frame_id || (key && !r->reply_key) || (r->body_len && !r->body) || !r->method ||
        !r->path)
        goto fail;
    if (r->body_len)
        memcpy(r->body, en->body.p, r->body_len);
    for (void *it = h ? json_object_iter(h) : NULL; it; it = json_object_iter_next(h, it)) {
        const char *k = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        hs[nh].name = gp_str_c(k);
        hs[nh].value = (gp_str){(const uint8_t *)json_string_value(v), json_string_length(v)};
        if (!r->content_type && strcasecmp(k, "content-type") == 0)
            r->content_type = strdup(json_string_value(v));
        nh++;
    }

    gp_frame f;
    gp_frame_init(&f, GP_FRAME_REQ_HEAD, r->stream, r->body_len ? 0 : GP_FLAG_FIN);
    f.u.req_head.frame_id = en->id;
    f.u.req_head.method = en->method;
    f.u.req_head.path = en->path;
    f.u.req_head.service = en->service;
    f.u.req_head.nheaders = nh;
    f.u.req_head.headers = hs;
    uint64_t left = en->deadline - now;
    f.u.req_head.timeout_ms = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
    f.u.req_head.body_len = r->body_len;
    if (gp_frame_size(&f) > GP_FRAME_HEADER_LEN + GP_DEFAULT_MAX_FRAME) {
        /* The house would have to drop the whole connection for it: refuse this one. */
        json_decref(h);
        req_free_fields(r);
        br_replies_error(t->rs, t->house, t->reqkey, t->epochkey, t->epoch, NULL, en, 400,
                         "bad_request", "method, path and headers exceed the 1 MiB frame limit");
        return;
    }

    GP_LIST_PUSH(t->reqs, r, prev, next);
    t->ninflight++;
    t->inflight_bytes += r->body_len;
    if (!t->min_deadline || r->deadline < t->min_deadline)
        t->min_deadline = r->deadline;
    r->fwd_ns = t->rs->ops.now_ns(t->rs->ud);
    int sent = t->ops.send(t->ud, &f); /* encodes (copies) the headers that h owns */
    json_decref(h);
    if (sent != 0)
        return; /* the conn is closing; its requests were freed */
    count(t->rs, BR_RC_FORWARDED, NULL);
    if (r->body_len)
        body_push(t, r);
    br_log(BR_LOG_DEBUG, "request_forwarded", "house=%s entry=%s id=%s stream=%u method=%s",
           t->house, r->entry_id, br_qs(r->frame_id), r->stream,
           br_q((const char *)en->method.p, en->method.len));
    return;
fail:
    json_decref(h);
    if (r)
        req_free_fields(r);
    br_log(BR_LOG_ERROR, "out_of_memory", "house=%s entry=%s", t->house, en->entry_id);
}

void br_reqtab_entry(br_reqtab *t, const redisReply *e, int pending, uint64_t now) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
        return;
    if (pending && br_reqtab_in_flight(t, e->element[0]->str))
        return; /* already being served on this connection */
    br_entry en;
    br_entry_parse(e, t->max_body, &en);
    if (en.status < 0) {
        /* Trimmed by MAXLEN while pending: nothing to answer, just settle the PEL. */
        br_log(BR_LOG_WARN, "entry_gone", "house=%s entry=%s", t->house, en.entry_id);
        br_reply *rp = br_reply_new(t->rs, t->house, t->reqkey, en.entry_id, gp_str_c(en.entry_id),
                                    NULL, t->epochkey, t->epoch, NULL);
        if (rp) {
            br_reply_entry(rp, NULL, 0, 1);
            br_reply_unref(rp);
        }
        return;
    }
    char key[BR_REPLY_KEY_MAX + 1];
    const char *why;
    int klen = br_entry_reply_key(&en, t->rs->cfg.prefix, key, &why);
    if (en.status || klen < 0) { /* a refused reply key: br_replies_error writes nothing */
        br_replies_error(t->rs, t->house, t->reqkey, t->epochkey, t->epoch, NULL, &en,
                         en.status ? en.status : 400, en.status ? en.error : "bad_reply",
                         en.status ? en.message : why);
        return;
    }
    if (en.reply_kind) { /* a stream open: streams.c's (house.c routes it there) */
        br_replies_error(t->rs, t->house, t->reqkey, t->epochkey, t->epoch, NULL, &en, 501,
                         "unsupported", "this bridge carries no TCP streams");
        return;
    }
    if (en.deadline <= now) {
        br_replies_error(t->rs, t->house, t->reqkey, t->epochkey, t->epoch, NULL, &en, 504,
                         "timeout", "deadline passed before the request was forwarded");
        return;
    }
    if (pending) /* delivered before, never acknowledged: delivered again */
        count(t->rs, BR_RC_PENDING_CLAIMED, NULL);
    forward(t, &en, klen > 0 ? key : NULL, now);
}

/* --- request bodies out ------------------------------------------------------------------ */

int br_reqtab_next_body(br_reqtab *t, gp_frame *f, uint8_t *scratch, size_t cap, uint8_t **spent) {
    br_req *r = t->body_head;
    *spent = NULL;
    if (!r)
        return 0;
    t->body_head = r->bnext;
    if (!t->body_head)
        t->body_tail = NULL;
    r->in_body_queue = 0;
    r->bnext = NULL;

    size_t n = r->body_len - r->body_off;
    if (n > GP_BODY_CHUNK)
        n = GP_BODY_CHUNK;
    const uint8_t *data = r->body + r->body_off;
    memset(f, 0, sizeof *f);
    f->type = GP_FRAME_REQ_BODY;
    f->stream = r->stream;
    f->u.body.data = (gp_str){data, n};
    if (gp_compress_worthwhile(gp_str_c(r->content_type), data, n)) {
        ssize_t z = gp_compress(t->zc, data, n, scratch, cap);
        if (z > 0) {
            f->flags |= GP_FLAG_ZSTD;
            f->u.body.data = (gp_str){scratch, (size_t)z};
            if (t->ops.compressed)
                t->ops.compressed(t->ud, n, (size_t)z);
        }
    }
    if (t->ops.bytes)
        t->ops.bytes(t->ud, 0, n);
    r->body_off += n;
    if (r->body_off == r->body_len) {
        f->flags |= GP_FLAG_FIN;
        *spent = r->body; /* no longer needed once this frame is encoded */
        r->body = NULL;
        t->inflight_bytes -= r->body_len;
        if (t->ops.room)
            t->ops.room(t->ud);
    } else {
        body_push(t, r); /* round robin: a big body never holds up a small one */
    }
    return 1;
}

/* --- responses in ------------------------------------------------------------------------ */

static char *headers_to_json(const gp_header *h, size_t n) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        /* Names are lower-cased (as HTTP/2 does, RFC 9113 §8.2.1): producers look headers up
         * by one spelling, and "Set-Cookie"/"set-cookie" repeats merge like any other. */
        char lname[256];
        gp_str nm = h[i].name;
        if (nm.len > sizeof lname)
            continue; /* the house never sends such a name; drop rather than truncate */
        for (size_t j = 0; j < nm.len; j++)
            lname[j] = (char)tolower(nm.p[j]);
        json_t *name = br_json_bytes((gp_str){(const uint8_t *)lname, nm.len});
        json_t *val = br_json_bytes(h[i].value);
        if (!name || !val) {
            json_decref(name);
            json_decref(val);
            continue;
        }
        const char *k = json_string_value(name);
        size_t klen = json_string_length(name);
        json_t *old = json_object_getn(o, k, klen);
        if (old) {
            /* Repeated header: RFC 9110 §5.3 allows joining the values with ", ". */
            size_t a = json_string_length(old), b = json_string_length(val);
            char *joined = malloc(a + b + 2);
            if (joined) {
                memcpy(joined, json_string_value(old), a);
                memcpy(joined + a, ", ", 2);
                memcpy(joined + a + 2, json_string_value(val), b);
                json_object_setn_new(o, k, klen, json_stringn(joined, a + b + 2));
                free(joined);
            }
            json_decref(val);
        } else {
            json_object_setn_new(o, k, klen, val);
        }
        json_decref(name);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static br_reply *req_reply(br_reqtab *t, br_req *r) {
    if (!r->out) {
        r->out = br_reply_new(t->rs, t->house, t->reqkey, r->entry_id, gp_str_c(r->frame_id),
                              r->reply_key, t->epochkey, t->epoch, NULL);
        if (r->out) {
            br_reply_meta(r->out, gp_str_c(r->method), gp_str_c(r->path), r->fwd_ns);
            br_reply_set(r->out, r->status, r->headers_json, gp_str_c(r->error),
                         gp_str_c(r->message));
        }
    }
    return r->out;
}

static void finish(br_reqtab *t, br_req *r) {
    br_reply *rp = req_reply(t, r);
    if (rp)
        br_reply_entry(rp, r->rbuf, r->rlen, 1);
    br_log(BR_LOG_DEBUG, "request_done", "house=%s entry=%s id=%s status=%u", t->house, r->entry_id,
           br_qs(r->frame_id), r->status);
    req_done(t, r);
}

static int rbuf_reserve(br_req *r, size_t more) {
    return gp_grow(&r->rbuf, &r->rcap, r->rlen + more, 65536, 1);
}

/* A house's response head with a status no HTTP response has (0, 65535, ...): the producer
 * gets a 502 bad_response instead, and the house a CANCEL for the body it may still send. */
static void bad_status(br_reqtab *t, br_req *r, unsigned status, int fin) {
    count(t->rs, BR_RC_BAD_RESPONSES, "status");
    br_log(BR_LOG_WARN, "bad_response", "reason=status house=%s entry=%s id=%s status=%u", t->house,
           r->entry_id, br_qs(r->frame_id), status);
    if (!fin) {
        gp_frame cf;
        gp_frame_init(&cf, GP_FRAME_CANCEL, r->stream, 0);
        cf.u.cancel.reason = GP_STR_LIT("bad_response");
        if (t->ops.send(t->ud, &cf) != 0)
            return; /* the conn is closing; its requests were freed */
    }
    char msg[80];
    snprintf(msg, sizeof msg, "the house answered with status %u, not 100..599", status);
    r->status = 502;
    r->error = strdup("bad_response");
    r->message = strdup(msg);
    r->rlen = 0;
    finish(t, r);
}

/* The headers of a house's response that may reach a reply: names that are HTTP tokens,
 * values without control bytes (br_resp_header_check). A malformed one is dropped, logged
 * and counted, and the rest of the response stands: a house forwards what its upstream sent,
 * and one sloppy header should not cost the producer the answer, while dropping it is
 * enough to keep CR/LF or escape sequences from anyone who copies headers onward. Returns
 * the JSON object of the reply's `headers`. */
static char *checked_headers(br_reqtab *t, const br_req *r, const gp_header *h, size_t n) {
    gp_header ok[GP_MAX_HEADERS];
    size_t nok = 0, dropped = 0;
    const char *first = NULL;
    gp_str first_name = {0};
    for (size_t i = 0; i < n && i < GP_MAX_HEADERS; i++) {
        const char *why = br_resp_header_check(h[i].name, h[i].value);
        if (!why) {
            ok[nok++] = h[i];
            continue;
        }
        count(t->rs, BR_RC_BAD_RESPONSES, why);
        if (!dropped++)
            first = why, first_name = h[i].name;
    }
    if (dropped)
        br_log(BR_LOG_WARN, "bad_response", "reason=%s house=%s entry=%s id=%s name=%s dropped=%zu",
               first, t->house, r->entry_id, br_qs(r->frame_id),
               br_q((const char *)first_name.p, first_name.len), dropped);
    return headers_to_json(ok, nok);
}

static void bytes_in(br_reqtab *t, size_t n) {
    if (t->ops.bytes)
        t->ops.bytes(t->ud, 1, n);
}

void br_reqtab_frame(br_reqtab *t, const gp_frame *f) {
    br_req *r = find(t, f->stream);
    if (!r) {
        /* Cancelled or timed out here already; the house may not have seen CANCEL yet. */
        br_log(BR_LOG_DEBUG, "stray_frame", "house=%s stream=%u type=%s", t->house, f->stream,
               gp_frame_type_name(f->type));
        return;
    }
    if (f->type == GP_FRAME_RESP_HEAD) {
        if (r->got_head) {
            t->ops.protocol_error(t->ud, "duplicate_resp_head", f->stream);
            return;
        }
        r->got_head = 1;
        if (!br_resp_status_ok(f->u.resp_head.status)) {
            bad_status(t, r, f->u.resp_head.status, f->flags & GP_FLAG_FIN);
            return;
        }
        r->status = f->u.resp_head.status;
        r->headers_json = checked_headers(t, r, f->u.resp_head.headers, f->u.resp_head.nheaders);
        if (f->u.resp_head.error.len)
            r->error = dupn(f->u.resp_head.error.p, f->u.resp_head.error.len);
        if (f->u.resp_head.message.len)
            r->message = dupn(f->u.resp_head.message.p, f->u.resp_head.message.len);
        if (f->flags & GP_FLAG_FIN)
            finish(t, r);
        return;
    }
    if (!r->got_head) {
        t->ops.protocol_error(t->ud, "resp_body_before_head", f->stream);
        return;
    }
    gp_str d = f->u.body.data;
    if (f->flags & GP_FLAG_ZSTD) {
        ssize_t n = gp_decompressed_size(d.p, d.len);
        if (n < 0 || (size_t)n > GP_DEFAULT_MAX_FRAME || rbuf_reserve(r, (size_t)n) != 0) {
            t->ops.protocol_error(t->ud, "bad_compressed_body", f->stream);
            return;
        }
        ssize_t m = gp_decompress(t->zc, d.p, d.len, r->rbuf + r->rlen, (size_t)n);
        if (m < 0) {
            t->ops.protocol_error(t->ud, "bad_compressed_body", f->stream);
            return;
        }
        r->rlen += (size_t)m;
        if (t->ops.compressed)
            t->ops.compressed(t->ud, (size_t)m, d.len);
        bytes_in(t, (size_t)m);
    } else if (d.len) {
        if (rbuf_reserve(r, d.len) != 0) {
            t->ops.protocol_error(t->ud, "out_of_memory", f->stream);
            return;
        }
        memcpy(r->rbuf + r->rlen, d.p, d.len);
        r->rlen += d.len;
        bytes_in(t, d.len);
    }
    /* Stream big responses to Redis as they come instead of holding them whole. */
    size_t chunk = t->reply_chunk;
    if (r->rlen >= chunk && !(f->flags & GP_FLAG_FIN)) {
        br_reply *rp = r->reply_key ? req_reply(t, r) : NULL;
        size_t off = 0;
        while (r->rlen - off >= chunk) {
            if (rp)
                br_reply_entry(rp, r->rbuf + off, chunk, 0);
            off += chunk;
        }
        memmove(r->rbuf, r->rbuf + off, r->rlen - off);
        r->rlen -= off;
    }
    if (f->flags & GP_FLAG_FIN) {
        /* The tail may still exceed one chunk: write all but the last piece as final 0. */
        br_reply *rp = r->reply_key ? req_reply(t, r) : NULL;
        size_t off = 0;
        while (rp && r->rlen - off > chunk) {
            br_reply_entry(rp, r->rbuf + off, chunk, 0);
            off += chunk;
        }
        memmove(r->rbuf, r->rbuf + off, r->rlen - off);
        r->rlen -= off;
        finish(t, r);
    }
}

void br_reqtab_deadlines(br_reqtab *t, uint64_t now) {
    uint64_t min = 0;
    for (br_req *r = t->reqs, *next; r; r = next) {
        next = r->next;
        if (r->deadline > now) {
            if (!min || r->deadline < min)
                min = r->deadline;
            continue;
        }
        br_log(BR_LOG_INFO, "request_timeout", "house=%s entry=%s id=%s stream=%u", t->house,
               r->entry_id, br_qs(r->frame_id), r->stream);
        gp_frame f;
        gp_frame_init(&f, GP_FRAME_CANCEL, r->stream, 0);
        f.u.cancel.reason = GP_STR_LIT("deadline");
        t->ops.send(t->ud, &f);
        if (!t->reqs)
            return; /* the send failed and closed the conn, freeing every request */
        br_reply *rp = req_reply(t, r);
        if (rp) {
            br_reply_set(rp, 504, "{}", GP_STR_LIT("timeout"),
                         GP_STR_LIT("the house did not answer before the deadline"));
            br_reply_entry(rp, NULL, 0, 1);
        }
        req_done(t, r);
    }
    t->min_deadline = min;
}
