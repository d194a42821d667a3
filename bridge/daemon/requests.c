/* requests.c — the request/reply half of the Redis contract, glue side: the core in
 * reqcore.c (the reply writer and settling table, the requests in flight on a house
 * connection: forwarding, body round robin, response chunking, deadlines) built with the
 * daemon's real ops (Redis through br_db, frames through br_conn_send, the clocks, stats and
 * metrics). A context (br_requests, made by main.c): owns its br_replies and each live br_conn's
 * br_reqtab (c->rq), and mirrors the table's counters into the br_conn fields that the rest of the
 * daemon reads (ninflight, inflight_bytes, min_deadline, body_head). */
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
 * store_reply.h. The texts; each context keeps its own SHAs (br_script). */
static const char *const script_text[BR_RS_COUNT] = {
    [BR_RS_ACK] = GP_LUA_REQ_ACK,
    [BR_RS_ACK_UNHELD] = GP_LUA_REQ_ACK_UNHELD,
    [BR_RS_REPLY] = GP_LUA_REPLY_ADD,
    [BR_RS_REPLY_DROP] = GP_LUA_REPLY_DROP,
};

struct br_requests {
    const br_env *env;
    br_stats *stats;
    br_requests_ops up;
    br_replies *replies; /* the reply writer and settling table of this context */
    unsigned replies_live;
    br_script scripts[BR_RS_COUNT];
};

static const br_replies_ops s_ops;

static br_replies_cfg replies_cfg(const br_requests *r) {
    return (br_replies_cfg){r->env->cfg->prefix, r->env->cfg->recent, r->env->cfg->reply_ttl};
}

br_requests *br_requests_new(const br_env *env, br_stats *stats) {
    br_requests *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->env = env;
    r->stats = stats;
    for (int i = 0; i < BR_RS_COUNT; i++)
        r->scripts[i] = (br_script){script_text[i], ""};
    br_replies_cfg cfg = replies_cfg(r);
    r->replies = br_replies_new(&cfg, &s_ops, r);
    if (!r->replies) {
        free(r);
        return NULL;
    }
    return r;
}

void br_requests_set_ops(br_requests *r, const br_requests_ops *ops) {
    r->up = *ops;
}

void br_requests_free(br_requests *r) {
    if (!r)
        return;
    br_replies_free(r->replies);
    free(r);
}

unsigned br_req_replies_live(const br_requests *r) {
    return r->replies_live;
}

void br_req_load_scripts(br_requests *r) {
    for (size_t i = 0; i < BR_RS_COUNT; i++)
        br_db_load_script(r->env->db, &r->scripts[i]);
}

/* --- the reply writer with the daemon's Redis, clocks and stats ------------------------- */

static int op_eval(void *ud, br_rs_script s, int nkeys, const br_args *a, br_redis_fn fn,
                   void *fnud) {
    br_requests *r = ud;
    return br_db_eval(r->env->db, &r->scripts[s], fn, fnud, nkeys, a);
}

static uint64_t op_now_ns(void *ud) {
    (void)ud;
    return uv_hrtime();
}

static uint64_t op_now_redis_ms(void *ud) {
    const br_requests *r = ud;
    return br_env_now_redis(r->env);
}

static void op_fenced(void *ud, const char *house, uint64_t epoch) {
    br_requests *r = ud;
    r->up.fenced(r->up.ud, house, epoch);
}

static void op_final(void *ud, const char *house, uint64_t epoch, unsigned status, int is_error,
                     uint64_t fwd_ns) {
    br_requests *r = ud;
    br_conn *c = epoch ? r->up.find(r->up.ud, house) : NULL;
    br_stats_reply(r->stats, c && c->epoch == epoch ? c : NULL, house, status, is_error, fwd_ns);
}

static void op_count(void *ud, br_rc_metric m, const char *label) {
    const br_requests *r = ud;
    gp_metric *const metrics[] = {
        [BR_RC_REPLY_FAILURES] = r->env->metrics->reply_failures,
        [BR_RC_INVALID_REQUESTS] = r->env->metrics->invalid_requests,
        [BR_RC_FORWARDED] = r->env->metrics->forwarded,
        [BR_RC_PENDING_CLAIMED] = r->env->metrics->pending_claimed,
        [BR_RC_BAD_RESPONSES] = r->env->metrics->bad_responses,
    };
    gp_metric_inc(metrics[m], label);
}

static void op_live(void *ud, unsigned n) {
    br_requests *r = ud;
    r->replies_live = n;
}

/* Draining: c may go once nothing of its house is in flight here and none of its replies is
 * still being written or acknowledged. Were it let go before its last acknowledgement, it
 * would be claimed elsewhere first, the ack fenced, and the entry delivered again: a second
 * reply for the producer (seen when houses reconnect within a few ms). */
int br_req_drain_busy(const br_requests *r, const br_conn *c) {
    return c->ninflight > 0 || br_replies_house_settling(r->replies, c->house) > 0;
}

static void drain_done(br_requests *r, br_conn *c) {
    if (r->env->stopping && c && c->state != BR_CS_CLOSING && !br_req_drain_busy(r, c))
        br_conn_close(c, GP_GOAWAY_DRAINING, "bridge shutting down");
}

static void op_settled(void *ud, const char *house) {
    br_requests *r = ud;
    if (r->env->stopping)
        drain_done(r, r->up.find(r->up.ud, house));
}

static void op_pressure(void *ud, int on) {
    br_requests *r = ud;
    /* debug: a large response at full speed turns it on and off every few milliseconds */
    br_log(BR_LOG_DEBUG, "reply_backpressure", "on=%d bytes=%zu", on,
           br_replies_wbytes(r->replies));
    if (r->up.pressure)
        r->up.pressure(r->up.ud, on);
}

static const br_replies_ops s_ops = {op_eval,  op_now_ns, op_now_redis_ms, op_fenced,  op_final,
                                     op_count, op_live,   op_settled,      op_pressure};

/* The writer, its settings refreshed from the configuration (--recent is [SIGHUP]). */
static br_replies *replies(br_requests *r) {
    br_replies_cfg cfg = replies_cfg(r);
    br_replies_set_cfg(r->replies, &cfg);
    return r->replies;
}

void br_reply_error(br_requests *r, br_conn *c, const char *house, const char *reqkey,
                    const br_entry *en, int status, const char *error, const char *message,
                    const char *holder) {
    char fencekey[GP_KEY_MAX];
    if (holder || !c)
        gp_key_state(fencekey, r->env->cfg->prefix, house);
    else
        snprintf(fencekey, sizeof fencekey, "%s", c->epochkey);
    br_replies_error(replies(r), house, reqkey, fencekey, holder || !c ? 0 : c->epoch,
                     holder || !c ? (holder ? holder : "") : NULL, en, status, error, message);
}

int br_reply_settling(br_requests *r, const char *house, const char *entry_id) {
    return br_replies_settling(replies(r), house, entry_id);
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

/* The context a connection's table was made by (the one its replies go through). */
static br_requests *of(const br_conn *c) {
    return br_reqtab_owner(c->rq);
}

static void op_room(void *ud) {
    br_conn *c = ud;
    br_requests *r = of(c);
    mirror(c);
    if (r->env->stopping)
        drain_done(r, c); /* its last request answered: and settled? */
    else if (c->read_capped)
        r->up.read_more(r->up.ud, c);
}

static void op_bytes(void *ud, int in, size_t n) {
    br_conn *c = ud;
    br_stats_bytes(of(c)->stats, c, in, n);
}

static void op_compressed(void *ud, size_t raw, size_t z) {
    br_stats_compressed(of(ud)->stats, raw, z);
}

static const br_reqtab_ops s_tab_ops = {op_send, op_protocol_error, op_room, op_bytes,
                                        op_compressed};

/* The connection's table, made when it first reads entries (it is live then: its keys and
 * epoch are known). NULL when out of memory. */
static br_reqtab *table(br_requests *r, br_conn *c) {
    if (!c->rq) {
        br_reqtab_cfg cfg = {c->house,
                             c->reqkey,
                             c->epochkey,
                             c->epoch,
                             r->env->cfg->max_body,
                             (size_t)r->env->cfg->reply_chunk,
                             r->env->zc};
        c->rq = br_reqtab_new(replies(r), &cfg, &s_tab_ops, c);
    }
    return c->rq;
}

int br_req_in_flight(br_requests *r, const br_conn *c, const char *entry_id) {
    return c->rq ? br_reqtab_in_flight(c->rq, entry_id)
                 : br_replies_settling(replies(r), c->house, entry_id);
}

void br_req_free_all(br_requests *r, br_conn *c) {
    (void)r;
    br_reqtab_free_all(c->rq);
    mirror(c);
}

void br_req_conn_free(br_requests *r, br_conn *c) {
    (void)r;
    br_reqtab_free(c->rq);
    c->rq = NULL;
}

void br_req_entry(br_requests *r, br_conn *c, const redisReply *e, int pending) {
    br_reqtab *t = table(r, c);
    if (!t) {
        br_log(BR_LOG_ERROR, "out_of_memory", "house=%s", c->house);
        return; /* the entry stays in Redis and comes back */
    }
    replies(r); /* --recent as configured now */
    br_reqtab_entry(t, e, pending, br_env_now_redis(r->env));
    mirror(c);
}

void br_req_entries(br_requests *r, br_conn *c, const redisReply *entries, int pending) {
    uint64_t now = br_env_now_redis(r->env);
    br_reqtab *t = table(r, c);
    if (!t) {
        br_log(BR_LOG_ERROR, "out_of_memory", "house=%s", c->house);
        return; /* the entries stay in Redis and come back */
    }
    replies(r); /* --recent as configured now */
    for (size_t i = 0; i < entries->elements && br_conn_alive(c) && c->in_table; i++) {
        br_reqtab_entry(t, entries->element[i], pending, now);
        mirror(c);
    }
}

int br_req_next_body(br_requests *r, br_conn *c, gp_frame *f, uint8_t *scratch, size_t cap,
                     uint8_t **spent) {
    (void)r;
    *spent = NULL;
    if (!c->rq)
        return 0;
    int n = br_reqtab_next_body(c->rq, f, scratch, cap, spent);
    mirror(c);
    return n;
}

void br_req_frame(br_requests *r, br_conn *c, const gp_frame *f) {
    if (!c->rq) { /* nothing was ever forwarded on this connection */
        br_log(BR_LOG_DEBUG, "stray_frame", "house=%s stream=%u type=%s", c->house, f->stream,
               gp_frame_type_name(f->type));
        return;
    }
    replies(r);
    br_reqtab_frame(c->rq, f);
    mirror(c);
}

void br_req_deadlines(br_requests *r, br_conn *c, uint64_t now) {
    if (!c->rq)
        return;
    replies(r);
    br_reqtab_deadlines(c->rq, now);
    mirror(c);
}
