/* requests.c — the request/reply half of the Redis contract: stream entries are validated
 * and turned into REQ_HEAD/REQ_BODY frames; RESP_HEAD/RESP_BODY frames are streamed into
 * reply entries; every entry ends with exactly one final reply, then an acknowledgement
 * under the house's fencing epoch. I/O side (Redis + the tunnel), parsing is local.
 *
 * The reply writer and the settling table (reply entries, the ack only after Redis
 * confirmed them, the recent list) are the core in reqcore.c, without globals; this file
 * builds it with the daemon's Redis, clocks and stats (replies()). The in-flight table,
 * body round robin, response chunking and deadlines are still here, on their br_conn. */
#include "bridge.h"
#include "reqcore.h"
#include "store_reply.h"
#include "store_req.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The core's scripts (reqcore.h's br_rs_script), with their KEYS and ARGV: store_req.h,
 * store_reply.h. */
static br_script s_scripts[] = {
    [BR_RS_ACK] = {GP_LUA_REQ_ACK, ""},
    [BR_RS_ACK_UNHELD] = {GP_LUA_REQ_ACK_UNHELD, ""},
    [BR_RS_REPLY] = {GP_LUA_REPLY_ADD, ""},
    [BR_RS_REPLY_DROP] = {GP_LUA_REPLY_DROP, ""},
};

void br_req_load_scripts(void) {
    for (size_t i = 0; i < sizeof s_scripts / sizeof s_scripts[0]; i++)
        br_db_load_script(g_br.db, &s_scripts[i]);
}

/* --- the reply writer (reqcore.c) with the daemon's Redis, clocks and stats -------------- */

static int op_eval(void *ud, br_rs_script s, int nkeys, const br_args *a, br_redis_fn fn,
                   void *fnud) {
    (void)ud;
    return br_db_eval(g_br.db, &s_scripts[s], fn, fnud, nkeys, a);
}

static uint64_t op_now_ns(void *ud) {
    (void)ud;
    return uv_hrtime();
}

static uint64_t op_now_redis_ms(void *ud) {
    (void)ud;
    return br_now_redis();
}

static void op_fenced(void *ud, const char *house, uint64_t epoch) {
    (void)ud;
    br_house_fenced(house, epoch);
}

static void op_final(void *ud, const char *house, uint64_t epoch, unsigned status, int is_error,
                     uint64_t fwd_ns) {
    (void)ud;
    br_stats_reply(house, epoch, status, is_error, fwd_ns);
}

static void op_reply_failed(void *ud, const char *reason) {
    (void)ud;
    gp_metric_inc(g_bm.reply_failures, reason);
}

static void op_live(void *ud, unsigned n) {
    (void)ud;
    g_br.replies_live = n;
}

static const br_replies_ops s_ops = {op_eval,  op_now_ns,       op_now_redis_ms, op_fenced,
                                     op_final, op_reply_failed, op_live};
static br_replies *s_replies;

/* The writer, its settings refreshed from the configuration (--recent is [SIGHUP]). Made on
 * first use; a few KiB that cannot fail to be allocated at startup in practice. */
static br_replies *replies(void) {
    br_replies_cfg cfg = {g_br.cfg.prefix, g_br.cfg.recent, g_br.cfg.reply_ttl};
    if (!s_replies) {
        s_replies = br_replies_new(&cfg, &s_ops, NULL);
        if (!s_replies)
            abort();
    } else {
        br_replies_set_cfg(s_replies, &cfg);
    }
    return s_replies;
}

/* c: the holding connection (ack under its epoch), or NULL with holder set (janitor). key:
 * the reply key, checked (br_entry_reply_key), or NULL: no reply is written. */
static br_reply *reply_new(const br_conn *c, const char *house, const char *reqkey,
                           const char *entry_id, gp_str frame_id, const char *key,
                           const char *holder) {
    char fencekey[GP_KEY_MAX];
    if (c)
        snprintf(fencekey, sizeof fencekey, "%s", c->epochkey);
    else
        gp_key_state(fencekey, g_br.cfg.prefix, house);
    return br_reply_new(replies(), house, reqkey, entry_id, frame_id, key, fencekey,
                        c ? c->epoch : 0, c ? NULL : (holder ? holder : ""));
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

/* At most this much of a path goes into the recent list (it is for people to read). */
#define RECENT_PATH_MAX 200

/* The first max + 1 bytes of s: enough for the recent line (reqcore.c) to see that it must cut. */
static char *dup_clip(gp_str s, size_t max) {
    return dupn(s.p, s.len <= max ? s.len : max + 1);
}

/* The invalid-request counter's reason for an error reply of ours (NULL: not one). */
static const char *invalid_reason(const char *error) {
    if (strcmp(error, "bad_request") == 0)
        return "request";
    if (strcmp(error, "too_large") == 0)
        return "too_large";
    return NULL;
}

void br_reply_error(br_conn *c, const char *house, const char *reqkey, const br_entry *en,
                    int status, const char *error, const char *message, const char *holder) {
    /* Checked here, where both the holding bridge and the janitor answer: a refused reply
     * key gets nothing written, only the settling of the entry and its recent line. */
    char key[BR_REPLY_KEY_MAX + 1];
    const char *why;
    int klen = br_entry_reply_key(en, g_br.cfg.prefix, key, &why);
    if (klen < 0) {
        status = 400;
        error = "bad_reply";
        message = why;
        gp_metric_inc(g_bm.invalid_requests, "reply_key");
        br_log(BR_LOG_WARN, "bad_request", "reason=reply_key house=%s entry=%s id=%s key=%s msg=%s",
               house, en->entry_id, br_q((const char *)en->id.p, en->id.len),
               br_q((const char *)en->reply.p, en->reply.len), br_qs(why));
    } else if (invalid_reason(error)) {
        gp_metric_inc(g_bm.invalid_requests, invalid_reason(error));
    }
    br_reply *rp = reply_new(holder ? NULL : c, house, reqkey, en->entry_id, en->id,
                             klen > 0 ? key : NULL, holder);
    br_log(BR_LOG_INFO, "request_error", "house=%s entry=%s id=%s status=%d error=%s msg=%s", house,
           en->entry_id, br_q((const char *)en->id.p, en->id.len), status, error, br_qs(message));
    if (!rp)
        return; /* out of memory: the entry stays pending and comes back */
    br_reply_meta(rp, en->method, en->path, 0);
    br_reply_set(rp, (unsigned)status, "{}", gp_str_c(error), gp_str_c(message));
    br_reply_entry(rp, NULL, 0, 1);
    br_reply_unref(rp);
}

int br_reply_settling(const char *house, const char *entry_id) {
    return br_replies_settling(replies(), house, entry_id);
}

/* --- requests in flight ----------------------------------------------------------------- */

int br_req_in_flight(const br_conn *c, const char *entry_id) {
    for (const br_req *r = c->reqs; r; r = r->next)
        if (strcmp(r->entry_id, entry_id) == 0)
            return 1;
    return br_replies_settling(replies(), c->house, entry_id);
}

static br_req *find(br_conn *c, uint32_t stream) {
    for (br_req *r = c->reqs; r; r = r->next)
        if (r->stream == stream)
            return r;
    return NULL;
}

static void body_unlink(br_conn *c, br_req *r) {
    if (!r->in_body_queue)
        return;
    br_req **pp = &c->body_head, *prev = NULL;
    while (*pp && *pp != r)
        prev = *pp, pp = &(*pp)->bnext;
    if (*pp)
        *pp = r->bnext;
    if (c->body_tail == r)
        c->body_tail = prev;
    r->bnext = NULL;
    r->in_body_queue = 0;
}

static void body_push(br_conn *c, br_req *r) {
    r->bnext = NULL;
    r->in_body_queue = 1;
    if (c->body_tail)
        c->body_tail->bnext = r;
    else
        c->body_head = r;
    c->body_tail = r;
}

static void req_free(br_conn *c, br_req *r) {
    body_unlink(c, r);
    if (r->body)
        c->inflight_bytes -= r->body_len;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->ninflight--;
    /* Abandoned mid-stream (house gone): the core drops the partial reply, the entry stays
     * pending and the redelivery writes the whole reply again. */
    br_reply_abandon(r->out);
    free(r->frame_id);
    free(r->reply_key);
    free(r->method);
    free(r->path);
    free(r->content_type);
    free(r->body);
    free(r->headers_json);
    free(r->error);
    free(r->message);
    free(r->rbuf);
    free(r);
}

static void req_done(br_conn *c, br_req *r) {
    req_free(c, r);
    if (g_br.stopping && c->ninflight == 0)
        br_conn_close(c, 0, NULL); /* draining: its last request is answered */
    else if (c->read_capped)
        br_house_read(c);
}

void br_req_free_all(br_conn *c) {
    while (c->reqs)
        req_free(c, c->reqs);
    c->min_deadline = 0;
}

/* key: the checked reply key, or NULL (no reply wanted). */
static void forward(br_conn *c, const br_entry *en, const char *key, uint64_t now) {
    br_req *r = calloc(1, sizeof *r);
    json_t *h = en->headers.len ? br_headers_load(en->headers, NULL, 0) : NULL;
    gp_header hs[GP_MAX_HEADERS];
    size_t nh = 0;
    if (!r)
        goto fail;
    r->conn = c;
    r->stream = ++c->next_stream;
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
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_REQ_HEAD;
    f.stream = r->stream;
    f.flags = r->body_len ? 0 : GP_FLAG_FIN;
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
        free(r->frame_id);
        free(r->reply_key);
        free(r->method);
        free(r->path);
        free(r->body);
        free(r->content_type);
        free(r);
        br_reply_error(c, c->house, c->reqkey, en, 400, "bad_request",
                       "method, path and headers exceed the 1 MiB frame limit", NULL);
        return;
    }

    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->ninflight++;
    c->inflight_bytes += r->body_len;
    if (!c->min_deadline || r->deadline < c->min_deadline)
        c->min_deadline = r->deadline;
    r->fwd_ns = uv_hrtime();
    int sent = br_conn_send(c, &f); /* encodes (copies) the headers that h owns */
    json_decref(h);
    if (sent != 0)
        return; /* the conn is closing; its requests were freed */
    gp_metric_inc(g_bm.forwarded, NULL);
    if (r->body_len)
        body_push(c, r);
    br_log(BR_LOG_DEBUG, "request_forwarded", "house=%s entry=%s id=%s stream=%u method=%s",
           c->house, r->entry_id, br_qs(r->frame_id), r->stream,
           br_q((const char *)en->method.p, en->method.len));
    return;
fail:
    json_decref(h);
    if (r) {
        free(r->frame_id);
        free(r->reply_key);
        free(r->method);
        free(r->path);
        free(r->body);
        free(r->content_type);
        free(r);
    }
    br_log(BR_LOG_ERROR, "out_of_memory", "house=%s entry=%s", c->house, en->entry_id);
}

void br_req_entries(br_conn *c, const redisReply *entries, int pending) {
    uint64_t now = br_now_redis();
    for (size_t i = 0; i < entries->elements && br_conn_alive(c) && c->in_table; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
            continue;
        if (pending && br_req_in_flight(c, e->element[0]->str))
            continue; /* already being served on this connection */
        br_entry en;
        br_entry_parse(e, g_br.cfg.max_body, &en);
        if (en.status < 0) {
            /* Trimmed by MAXLEN while pending: nothing to answer, just settle the PEL. */
            br_log(BR_LOG_WARN, "entry_gone", "house=%s entry=%s", c->house, en.entry_id);
            br_reply *rp =
                reply_new(c, c->house, c->reqkey, en.entry_id, gp_str_c(en.entry_id), NULL, NULL);
            if (rp) {
                br_reply_entry(rp, NULL, 0, 1);
                br_reply_unref(rp);
            }
            continue;
        }
        char key[BR_REPLY_KEY_MAX + 1];
        const char *why;
        int klen = br_entry_reply_key(&en, g_br.cfg.prefix, key, &why);
        if (en.status || klen < 0) { /* a refused reply key: br_reply_error writes nothing */
            br_reply_error(c, c->house, c->reqkey, &en, en.status ? en.status : 400,
                           en.status ? en.error : "bad_reply", en.status ? en.message : why, NULL);
            continue;
        }
        if (en.deadline <= now) {
            br_reply_error(c, c->house, c->reqkey, &en, 504, "timeout",
                           "deadline passed before the request was forwarded", NULL);
            continue;
        }
        if (pending) /* delivered before, never acknowledged: delivered again */
            gp_metric_inc(g_bm.pending_claimed, NULL);
        forward(c, &en, klen > 0 ? key : NULL, now);
    }
}

/* --- request bodies out ------------------------------------------------------------------ */

int br_req_next_body(br_conn *c, gp_frame *f, uint8_t *scratch, size_t cap, uint8_t **spent) {
    br_req *r = c->body_head;
    *spent = NULL;
    if (!r)
        return 0;
    c->body_head = r->bnext;
    if (!c->body_head)
        c->body_tail = NULL;
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
        ssize_t z = gp_compress(g_br.zc, data, n, scratch, cap);
        if (z > 0) {
            f->flags |= GP_FLAG_ZSTD;
            f->u.body.data = (gp_str){scratch, (size_t)z};
            br_stats_compressed(n, (size_t)z);
        }
    }
    br_stats_bytes(c, 0, n);
    r->body_off += n;
    if (r->body_off == r->body_len) {
        f->flags |= GP_FLAG_FIN;
        *spent = r->body; /* no longer needed once this frame is encoded */
        r->body = NULL;
        c->inflight_bytes -= r->body_len;
        if (c->read_capped)
            br_house_read(c);
    } else {
        body_push(c, r); /* round robin: a big body never holds up a small one */
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

static br_reply *req_reply(br_conn *c, br_req *r) {
    if (!r->out) {
        r->out = reply_new(c, c->house, c->reqkey, r->entry_id, gp_str_c(r->frame_id), r->reply_key,
                           NULL);
        if (r->out) {
            br_reply_meta(r->out, gp_str_c(r->method), gp_str_c(r->path), r->fwd_ns);
            br_reply_set(r->out, r->status, r->headers_json, gp_str_c(r->error),
                         gp_str_c(r->message));
        }
    }
    return r->out;
}

static void finish(br_conn *c, br_req *r) {
    br_reply *rp = req_reply(c, r);
    if (rp)
        br_reply_entry(rp, r->rbuf, r->rlen, 1);
    br_log(BR_LOG_DEBUG, "request_done", "house=%s entry=%s id=%s status=%u", c->house, r->entry_id,
           br_qs(r->frame_id), r->status);
    req_done(c, r);
}

static int rbuf_reserve(br_req *r, size_t more) {
    if (r->rlen + more <= r->rcap)
        return 0;
    size_t cap = r->rcap ? r->rcap * 2 : 65536;
    while (cap < r->rlen + more)
        cap *= 2;
    uint8_t *p = realloc(r->rbuf, cap);
    if (!p)
        return -1;
    r->rbuf = p;
    r->rcap = cap;
    return 0;
}

static void resp_error(br_conn *c, const char *why, uint32_t stream) {
    br_log(BR_LOG_WARN, "protocol_error", "house=%s addr=%s reason=%s stream=%u", c->house, c->addr,
           why, stream);
    br_conn_close(c, GP_GOAWAY_PROTOCOL, why);
}

/* A house's response head with a status no HTTP response has (0, 65535, ...): the producer
 * gets a 502 bad_response instead, and the house a CANCEL for the body it may still send. */
static void bad_status(br_conn *c, br_req *r, unsigned status, int fin) {
    gp_metric_inc(g_bm.bad_responses, "status");
    br_log(BR_LOG_WARN, "bad_response", "reason=status house=%s entry=%s id=%s status=%u", c->house,
           r->entry_id, br_qs(r->frame_id), status);
    if (!fin) {
        gp_frame cf;
        memset(&cf, 0, sizeof cf);
        cf.type = GP_FRAME_CANCEL;
        cf.stream = r->stream;
        cf.u.cancel.reason = GP_STR_LIT("bad_response");
        if (br_conn_send(c, &cf) != 0)
            return; /* the conn is closing; its requests were freed */
    }
    char msg[80];
    snprintf(msg, sizeof msg, "the house answered with status %u, not 100..599", status);
    r->status = 502;
    r->error = strdup("bad_response");
    r->message = strdup(msg);
    r->rlen = 0;
    finish(c, r);
}

/* The headers of a house's response that may reach a reply: names that are HTTP tokens,
 * values without control bytes (br_resp_header_check). A malformed one is dropped, logged
 * and counted, and the rest of the response stands: a house forwards what its upstream sent,
 * and one sloppy header should not cost the producer the answer, while dropping it is
 * enough to keep CR/LF or escape sequences from anyone who copies headers onward. Returns
 * the JSON object of the reply's `headers`. */
static char *checked_headers(br_conn *c, const br_req *r, const gp_header *h, size_t n) {
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
        gp_metric_inc(g_bm.bad_responses, why);
        if (!dropped++)
            first = why, first_name = h[i].name;
    }
    if (dropped)
        br_log(BR_LOG_WARN, "bad_response", "reason=%s house=%s entry=%s id=%s name=%s dropped=%zu",
               first, c->house, r->entry_id, br_qs(r->frame_id),
               br_q((const char *)first_name.p, first_name.len), dropped);
    return headers_to_json(ok, nok);
}

void br_req_frame(br_conn *c, const gp_frame *f) {
    br_req *r = find(c, f->stream);
    if (!r) {
        /* Cancelled or timed out here already; the house may not have seen CANCEL yet. */
        br_log(BR_LOG_DEBUG, "stray_frame", "house=%s stream=%u type=%s", c->house, f->stream,
               gp_frame_type_name(f->type));
        return;
    }
    if (f->type == GP_FRAME_RESP_HEAD) {
        if (r->got_head) {
            resp_error(c, "duplicate_resp_head", f->stream);
            return;
        }
        r->got_head = 1;
        if (!br_resp_status_ok(f->u.resp_head.status)) {
            bad_status(c, r, f->u.resp_head.status, f->flags & GP_FLAG_FIN);
            return;
        }
        r->status = f->u.resp_head.status;
        r->headers_json = checked_headers(c, r, f->u.resp_head.headers, f->u.resp_head.nheaders);
        if (f->u.resp_head.error.len)
            r->error = dupn(f->u.resp_head.error.p, f->u.resp_head.error.len);
        if (f->u.resp_head.message.len)
            r->message = dupn(f->u.resp_head.message.p, f->u.resp_head.message.len);
        if (f->flags & GP_FLAG_FIN)
            finish(c, r);
        return;
    }
    if (!r->got_head) {
        resp_error(c, "resp_body_before_head", f->stream);
        return;
    }
    gp_str d = f->u.body.data;
    if (f->flags & GP_FLAG_ZSTD) {
        ssize_t n = gp_decompressed_size(d.p, d.len);
        if (n < 0 || (size_t)n > GP_DEFAULT_MAX_FRAME || rbuf_reserve(r, (size_t)n) != 0) {
            resp_error(c, "bad_compressed_body", f->stream);
            return;
        }
        ssize_t m = gp_decompress(g_br.zc, d.p, d.len, r->rbuf + r->rlen, (size_t)n);
        if (m < 0) {
            resp_error(c, "bad_compressed_body", f->stream);
            return;
        }
        r->rlen += (size_t)m;
        br_stats_compressed((size_t)m, d.len);
        br_stats_bytes(c, 1, (size_t)m);
    } else if (d.len) {
        if (rbuf_reserve(r, d.len) != 0) {
            resp_error(c, "out_of_memory", f->stream);
            return;
        }
        memcpy(r->rbuf + r->rlen, d.p, d.len);
        r->rlen += d.len;
        br_stats_bytes(c, 1, d.len);
    }
    /* Stream big responses to Redis as they come instead of holding them whole. */
    size_t chunk = (size_t)g_br.cfg.reply_chunk;
    if (r->rlen >= chunk && !(f->flags & GP_FLAG_FIN)) {
        br_reply *rp = r->reply_key ? req_reply(c, r) : NULL;
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
        br_reply *rp = r->reply_key ? req_reply(c, r) : NULL;
        size_t off = 0;
        while (rp && r->rlen - off > chunk) {
            br_reply_entry(rp, r->rbuf + off, chunk, 0);
            off += chunk;
        }
        memmove(r->rbuf, r->rbuf + off, r->rlen - off);
        r->rlen -= off;
        finish(c, r);
    }
}

void br_req_deadlines(br_conn *c, uint64_t now) {
    uint64_t min = 0;
    for (br_req *r = c->reqs, *next; r; r = next) {
        next = r->next;
        if (r->deadline > now) {
            if (!min || r->deadline < min)
                min = r->deadline;
            continue;
        }
        br_log(BR_LOG_INFO, "request_timeout", "house=%s entry=%s id=%s stream=%u", c->house,
               r->entry_id, br_qs(r->frame_id), r->stream);
        gp_frame f;
        memset(&f, 0, sizeof f);
        f.type = GP_FRAME_CANCEL;
        f.stream = r->stream;
        f.u.cancel.reason = GP_STR_LIT("deadline");
        br_conn_send(c, &f);
        if (!c->reqs)
            return; /* the send failed and closed the conn, freeing every request */
        br_reply *rp = req_reply(c, r);
        if (rp) {
            br_reply_set(rp, 504, "{}", GP_STR_LIT("timeout"),
                         GP_STR_LIT("the house did not answer before the deadline"));
            br_reply_entry(rp, NULL, 0, 1);
        }
        req_done(c, r);
    }
    c->min_deadline = min;
}
