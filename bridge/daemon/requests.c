/* requests.c — the request/reply half of the Redis contract, glue side: the core in
 * reqcore.c (the reply writer and settling table, the requests in flight on a house
 * connection: forwarding, body round robin, response chunking, deadlines) built with the
 * daemon's real ops (Redis through br_db, frames through br_conn_send, the clocks, stats and
 * metrics). Owns the one br_replies of the daemon and each live br_conn's br_reqtab (c->rq),
 * and mirrors the table's counters into the br_conn fields that the rest of the daemon reads
 * (ninflight, inflight_bytes, min_deadline, body_head). */
#include "requests.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_reply.h"
#include "../store/store_req.h"
#include "reqcore.h"

#include <stdlib.h>
#include <string.h>

/* The core's scripts (reqcore.h's br_rs_script), with their KEYS and ARGV: store_req.h,
 * store_reply.h. */
static br_script s_scripts[] = {
    [BR_RS_ACK] = {GP_LUA_REQ_ACK, ""},
    [BR_RS_ACK_UNHELD] = {GP_LUA_REQ_ACK_UNHELD, ""},
    [BR_RS_REPLY] = {GP_LUA_REPLY_ADD, ""},
    [BR_RS_REPLY_DROP] = {GP_LUA_REPLY_DROP, ""},
};

static struct {
    const br_env *env;
    br_requests_ops up;
    unsigned replies_live;
} R;

void br_requests_init(const br_env *env, const br_requests_ops *ops) {
    R.env = env;
    R.up = *ops;
}

unsigned br_req_replies_live(void) {
    return R.replies_live;
}

void br_req_load_scripts(void) {
    for (size_t i = 0; i < sizeof s_scripts / sizeof s_scripts[0]; i++)
        br_db_load_script(R.env->db, &s_scripts[i]);
}

/* --- the reply writer with the daemon's Redis, clocks and stats ------------------------- */

static int op_eval(void *ud, br_rs_script s, int nkeys, const br_args *a, br_redis_fn fn,
                   void *fnud) {
    (void)ud;
    return br_db_eval(R.env->db, &s_scripts[s], fn, fnud, nkeys, a);
}

static uint64_t op_now_ns(void *ud) {
    (void)ud;
    return uv_hrtime();
}

static uint64_t op_now_redis_ms(void *ud) {
    (void)ud;
    return br_env_now_redis(R.env);
}

static void op_fenced(void *ud, const char *house, uint64_t epoch) {
    (void)ud;
    R.up.fenced(R.up.ud, house, epoch);
}

static void op_final(void *ud, const char *house, uint64_t epoch, unsigned status, int is_error,
                     uint64_t fwd_ns) {
    (void)ud;
    br_conn *c = epoch ? R.up.find(R.up.ud, house) : NULL;
    br_stats_reply(c && c->epoch == epoch ? c : NULL, status, is_error, fwd_ns);
}

static void op_count(void *ud, br_rc_metric m, const char *label) {
    (void)ud;
    gp_metric *const metrics[] = {
        [BR_RC_REPLY_FAILURES] = R.env->metrics->reply_failures,
        [BR_RC_INVALID_REQUESTS] = R.env->metrics->invalid_requests,
        [BR_RC_FORWARDED] = R.env->metrics->forwarded,
        [BR_RC_PENDING_CLAIMED] = R.env->metrics->pending_claimed,
        [BR_RC_BAD_RESPONSES] = R.env->metrics->bad_responses,
    };
    gp_metric_inc(metrics[m], label);
}

static void op_live(void *ud, unsigned n) {
    (void)ud;
    R.replies_live = n;
}

static const br_replies_ops s_ops = {op_eval,  op_now_ns, op_now_redis_ms, op_fenced,
                                     op_final, op_count,  op_live};
static br_replies *s_replies;

/* The writer, its settings refreshed from the configuration (--recent is [SIGHUP]). Made on
 * first use; a few KiB that cannot fail to be allocated at startup in practice. */
static br_replies *replies(void) {
    br_replies_cfg cfg = {R.env->cfg->prefix, R.env->cfg->recent, R.env->cfg->reply_ttl};
    if (!s_replies) {
        s_replies = br_replies_new(&cfg, &s_ops, NULL);
        if (!s_replies)
            abort();
    } else {
        br_replies_set_cfg(s_replies, &cfg);
    }
    return s_replies;
}

void br_reply_error(br_conn *c, const char *house, const char *reqkey, const br_entry *en,
                    int status, const char *error, const char *message, const char *holder) {
    char fencekey[GP_KEY_MAX];
    if (holder || !c)
        gp_key_state(fencekey, R.env->cfg->prefix, house);
    else
        snprintf(fencekey, sizeof fencekey, "%s", c->epochkey);
    br_replies_error(replies(), house, reqkey, fencekey, holder || !c ? 0 : c->epoch,
                     holder || !c ? (holder ? holder : "") : NULL, en, status, error, message);
}

int br_reply_settling(const char *house, const char *entry_id) {
    return br_replies_settling(replies(), house, entry_id);
}

/* --- a connection's requests with the daemon's tunnel ----------------------------------- */

/* The table's counters where the rest of the daemon reads them. */
static void mirror(br_conn *c) {
    br_reqtab *t = c->rq;
    c->ninflight = t ? br_reqtab_count(t) : 0;
    c->inflight_bytes = t ? br_reqtab_bytes(t) : 0;
    c->min_deadline = t ? br_reqtab_min_deadline(t) : 0;
    c->body_head = t ? br_reqtab_body_head(t) : NULL;
}

static int op_send(void *ud, const gp_frame *f) {
    return br_conn_send(ud, f);
}

static void op_protocol_error(void *ud, const char *why, uint32_t stream) {
    br_conn *c = ud;
    br_log(BR_LOG_WARN, "protocol_error", "house=%s addr=%s reason=%s stream=%u", c->house, c->addr,
           why, stream);
    br_conn_close(c, GP_GOAWAY_PROTOCOL, why);
}

static void op_room(void *ud) {
    br_conn *c = ud;
    mirror(c);
    if (R.env->stopping && c->ninflight == 0)
        br_conn_close(c, 0, NULL); /* draining: its last request is answered */
    else if (c->read_capped)
        R.up.read_more(R.up.ud, c);
}

static void op_bytes(void *ud, int in, size_t n) {
    br_stats_bytes(ud, in, n);
}

static void op_compressed(void *ud, size_t raw, size_t z) {
    (void)ud;
    br_stats_compressed(raw, z);
}

static const br_reqtab_ops s_tab_ops = {op_send, op_protocol_error, op_room, op_bytes,
                                        op_compressed};

/* The connection's table, made when it first reads entries (it is live then: its keys and
 * epoch are known). NULL when out of memory. */
static br_reqtab *table(br_conn *c) {
    if (!c->rq) {
        br_reqtab_cfg cfg = {c->house,
                             c->reqkey,
                             c->epochkey,
                             c->epoch,
                             R.env->cfg->max_body,
                             (size_t)R.env->cfg->reply_chunk,
                             R.env->zc};
        c->rq = br_reqtab_new(replies(), &cfg, &s_tab_ops, c);
    }
    return c->rq;
}

int br_req_in_flight(const br_conn *c, const char *entry_id) {
    return c->rq ? br_reqtab_in_flight(c->rq, entry_id)
                 : br_replies_settling(replies(), c->house, entry_id);
}

void br_req_free_all(br_conn *c) {
    br_reqtab_free_all(c->rq);
    mirror(c);
}

void br_req_conn_free(br_conn *c) {
    br_reqtab_free(c->rq);
    c->rq = NULL;
}

void br_req_entries(br_conn *c, const redisReply *entries, int pending) {
    uint64_t now = br_env_now_redis(R.env);
    br_reqtab *t = table(c);
    if (!t) {
        br_log(BR_LOG_ERROR, "out_of_memory", "house=%s", c->house);
        return; /* the entries stay in Redis and come back */
    }
    replies(); /* --recent as configured now */
    for (size_t i = 0; i < entries->elements && br_conn_alive(c) && c->in_table; i++) {
        br_reqtab_entry(t, entries->element[i], pending, now);
        mirror(c);
    }
}

int br_req_next_body(br_conn *c, gp_frame *f, uint8_t *scratch, size_t cap, uint8_t **spent) {
    *spent = NULL;
    if (!c->rq)
        return 0;
    int n = br_reqtab_next_body(c->rq, f, scratch, cap, spent);
    mirror(c);
    return n;
}

void br_req_frame(br_conn *c, const gp_frame *f) {
    if (!c->rq) { /* nothing was ever forwarded on this connection */
        br_log(BR_LOG_DEBUG, "stray_frame", "house=%s stream=%u type=%s", c->house, f->stream,
               gp_frame_type_name(f->type));
        return;
    }
    replies();
    br_reqtab_frame(c->rq, f);
    mirror(c);
}

void br_req_deadlines(br_conn *c, uint64_t now) {
    if (!c->rq)
        return;
    replies();
    br_reqtab_deadlines(c->rq, now);
    mirror(c);
}
