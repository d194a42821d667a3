/* house.c — owning a house in Redis while its connection is up: the fencing epoch, the
 * lease (the live state hash, renewed under the fence), the table of held houses, and
 * reading each house's request stream through the consumer group without ever blocking the
 * shared connection. I/O side.
 *
 * Fencing (README.md, "Delivery guarantees"). Every authenticated connect INCRs the house's
 * epoch; the connection that got the highest epoch owns the house. Three things keep a
 * bridge that lost the house from serving it:
 *  - every read of the stream is a script that checks the epoch first, so a stale holder
 *    can never take a new entry (the strong fence: it is what makes "two bridges never serve
 *    one house" true, whatever the timing);
 *  - the claim script PUBLISHes the new epoch to the previous holder's fence channel, so it
 *    lets go at once (the fast path: a half-open connection is dropped in one round trip);
 *  - the lease (the state hash, PEXPIRE lease-ms) is renewed every lease-ms/3 under the
 *    fence, so a lost PUBLISH costs at most a third of the lease (the slow path).
 * Acknowledgements check the fence too (requests.c), and settle their answered entry anyway.
 *
 * Wake-up (README.md, "Delivery guarantees", wake-up at scale): a multi-key blocking XREADGROUP
 * does not scale and does not work on a Cluster, so each held house's stream is read with a
 * non-blocking single-key read when (a) its keyspace notification rings (`xadd` on the stream,
 * delivered to the subscriber connection) or its subscription is confirmed, (b) a read came back
 * full or capacity freed up, or (c) the sweep passes: every SWEEP_SLOW_MS while the doorbell is
 * healthy, every SWEEP_FAST_MS while it is not (keyspace notifications refused, subscriber
 * down). (c) alone is correct; (a) removes its latency without polling 10,000 streams. */
#include "house.h"
#include "../admin/stats.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_req.h"
#include "../store/store_state.h"
#include "reqcore.h"
#include "requests.h"
#include "streams.h"

#include <stdlib.h>
#include <string.h>

#define READ_BATCH 100
#define PENDING_RESCAN_MS 30000
#define SWEEP_FAST_MS 1000
#define SWEEP_SLOW_MS 15000

void br_house_load_scripts(br_houses *h) {
    br_db_load_script(h->env->db, &h->claim);
    br_db_load_script(h->env->db, &h->refresh);
    br_db_load_script(h->env->db, &h->release);
    br_db_load_script(h->env->db, &h->read);
}

/* The houses of a connection's callbacks (they carry the br_conn): the hooks' owner. */
static br_houses *of(const br_conn *c) {
    return c->owner->hooks.ud;
}

br_conn *br_house_find(const br_houses *h, const char *house) {
    return br_htable_find(&h->table, house);
}

/* --- doorbell --------------------------------------------------------------------------- */

static void channel_of(char out[GP_KEY_MAX + 32], const br_houses *h, const br_conn *c) {
    snprintf(out, GP_KEY_MAX + 32, "__keyspace@%d__:%s", h->env->rdb, c->reqkey);
}

static void subscribe(br_houses *h, br_conn *c, int on) {
    char ch[GP_KEY_MAX + 32];
    channel_of(ch, h, c);
    br_db_subscribe(h->env->db, c->reqkey, ch, on); /* on the node that holds the stream */
}

/* "__keyspace@0__:gp:{h1}:req" -> "h1" */
static int house_of_channel(const br_houses *h, const char *chan, size_t clen,
                            char out[GP_MAX_HOUSE_ID + 1]) {
    const char *key = memchr(chan, ':', clen);
    if (!key)
        return -1;
    key++;
    return gp_key_house_of_req(key, (size_t)(chan + clen - key), h->env->cfg->prefix, out,
                               GP_MAX_HOUSE_ID + 1) < 0
               ? -1
               : 0;
}

static void fence_out(br_houses *h, br_conn *c, const char *why);

/* "disable <house>" / "remove <house>" on <p>:ctl (bridge/admin/ADMIN.md): whichever bridge holds
 * the house closes it; the others have nothing to do. */
static void on_ctl_message(br_houses *h, const char *msg, size_t mlen) {
    int disable = 0;
    br_conn *c = br_htable_ctl_target(&h->table, msg, mlen, &disable);
    if (!c)
        return;
    br_log(BR_LOG_INFO, "house_closed_by_admin", "house=%s addr=%s reason=%s", c->house, c->addr,
           disable ? "disabled" : "removed");
    br_conn_close(c, GP_GOAWAY_AUTH, disable ? GP_GOAWAY_MSG_DISABLED : "house removed");
}

void br_house_on_message(br_houses *h, const char *kind, const char *chan, size_t clen,
                         const char *msg, size_t mlen) {
    const char *fch = h->env->fence_channel;
    if (clen == strlen(fch) && memcmp(chan, fch, clen) == 0) {
        /* "<epoch> <house>": another bridge has claimed the house. */
        br_conn *c =
            strcmp(kind, "message") == 0 ? br_htable_fence_target(&h->table, msg, mlen) : NULL;
        if (c)
            fence_out(h, c, "claimed_elsewhere");
        return;
    }
    const char *ctl = h->env->ctl_channel;
    if (clen == strlen(ctl) && memcmp(chan, ctl, clen) == 0) {
        if (strcmp(kind, "message") == 0)
            on_ctl_message(h, msg, mlen);
        return;
    }
    if (h->streams && br_streams_on_message(h->streams, kind, chan, clen, msg, mlen))
        return; /* a stream's doorbell */
    char house[GP_MAX_HOUSE_ID + 1];
    if (house_of_channel(h, chan, clen, house) != 0)
        return;
    br_conn *c = br_house_find(h, house);
    if (strcmp(kind, "message") == 0) {
        /* Only new entries matter; our own XDELs ring too and must not cause reads. */
        if (c && mlen == 4 && memcmp(msg, "xadd", 4) == 0)
            br_house_read(h, c);
    } else if (strcmp(kind, "subscribe") == 0 && c) {
        /* From here on every XADD rings; one read catches what came before. */
        br_house_read(h, c);
    } else if (strcmp(kind, "unsubscribe") == 0 && c) {
        /* hiredis 0.14 forgets a channel's callback when an UNSUBSCRIBE is confirmed, even if
         * we SUBSCRIBEd again meanwhile (house reconnected): subscribe once more. */
        subscribe(h, c, 1);
    }
}

void br_house_sub_up(br_houses *h) {
    br_db_subscribe(h->env->db, NULL, h->env->fence_channel, 1);
    br_db_subscribe(h->env->db, NULL, h->env->ctl_channel, 1);
    for (br_conn *c = h->conns->all; c; c = c->all_next)
        if (c->in_table)
            subscribe(h, c, 1);
    if (h->streams)
        br_streams_sub_up(h->streams);
}

/* Keyspace notifications are on and the subscriber is connected: the sweep can be slow. */
static int doorbell_ok(const br_houses *h) {
    return br_db_doorbell_ok(h->env->db);
}

/* --- reading the stream ----------------------------------------------------------------- */

static void create_group(br_houses *h, br_conn *c);

static void on_read(redisReply *rep, void *ud) {
    br_conn *c = ud;
    br_houses *h = of(c);
    c->reading = 0;
    if (!br_conn_alive(c) || !c->in_table || !rep) {
        br_conn_unref(c);
        return;
    }
    if (br_reply_is_error(rep, "NOGROUP")) {
        /* Someone deleted the stream (or Redis lost it): recreate and start over. */
        create_group(h, c);
        br_conn_unref(c);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        br_log(BR_LOG_WARN, "read_failed", "house=%s err=%s", c->house, br_qs(rep->str));
        br_conn_unref(c);
        return;
    }
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer == -1) {
        fence_out(h, c, "epoch_moved");
        br_conn_unref(c);
        return;
    }
    size_t n = 0;
    int pending = c->reading_pending; /* what this read was, whatever was asked since */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2 &&
        rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = rep->element[0]->element[1];
        n = entries->elements;
        if (n && pending) {
            const redisReply *last = entries->element[n - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
                last->element[0]->type == REDIS_REPLY_STRING && last->element[0]->len < 48)
                memcpy(c->pcursor, last->element[0]->str, last->element[0]->len + 1);
        }
        /* Each entry by its kind: stream opens to the streams, the rest are requests. */
        for (size_t i = 0; i < n && br_conn_alive(c) && c->in_table; i++) {
            const redisReply *en = entries->element[i];
            if (h->streams && br_entry_kind(en) == BR_KIND_STREAM)
                br_streams_open(h->streams, c, en, pending);
            else
                br_req_entry(h->reqs, c, en, pending);
        }
    }
    int again = c->read_again || (n > 0 && (pending || n >= c->read_count));
    c->read_again = 0;
    if (pending && n == 0)
        c->read_pending = 0; /* pending list drained: switch to new entries */
    else if (!pending && c->read_pending)
        again = 1; /* a pending scan was asked for while this read ran */
    if ((again || (pending && n == 0)) && br_conn_alive(c))
        br_house_read(h, c);
    br_conn_unref(c);
}

void br_house_read(br_houses *h, br_conn *c) {
    const br_env *e = h->env;
    if (!br_conn_alive(c) || c->state != BR_CS_LIVE || !c->in_table || e->stopping)
        return;
    if (c->reading) {
        c->read_again = 1; /* the bell rang during a read: read once more after it */
        return;
    }
    /* Backpressure: a house that does not keep up leaves its backlog in Redis (bounded by
     * the producers' MAXLEN), never in our memory. */
    long long cap = br_reqtab_room(c->rq, e->cfg->max_inflight, e->cfg->max_inflight_bytes);
    if (cap <= 0) {
        c->read_capped = 1;
        return;
    }
    c->read_capped = 0;
    c->next_sweep_ms = br_env_now(e) + (doorbell_ok(h) ? SWEEP_SLOW_MS : SWEEP_FAST_MS);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, c->epochkey);
    br_args_str(&a, c->reqkey);
    br_args_u64(&a, c->epoch);
    br_args_str(&a, GP_GROUP);
    br_args_str(&a, GP_CONSUMER);
    c->read_count = (unsigned)(cap < READ_BATCH ? cap : READ_BATCH);
    br_args_u64(&a, c->read_count);
    br_args_str(&a, c->read_pending ? c->pcursor : ">");
    br_conn_ref(c);
    c->reading = 1;
    c->reading_pending = c->read_pending;
    if (br_db_eval(e->db, &h->read, on_read, c, 2, &a) != 0) {
        c->reading = 0;
        br_conn_unref(c);
    }
}

static void on_group(redisReply *rep, void *ud) {
    br_conn *c = ud;
    if (br_conn_alive(c) && c->in_table && rep) {
        if (rep->type == REDIS_REPLY_ERROR && !br_reply_is_error(rep, "BUSYGROUP"))
            br_log(BR_LOG_WARN, "group_create_failed", "house=%s err=%s", c->house,
                   br_qs(rep->str));
        /* Pending entries first: they were delivered to this house before (by any bridge)
         * and never acknowledged. */
        c->read_pending = 1;
        strcpy(c->pcursor, "0");
        c->last_pending_scan_ms = br_env_now(of(c)->env);
        br_house_read(of(c), c);
    }
    br_conn_unref(c);
}

static void create_group(br_houses *h, br_conn *c) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "XGROUP");
    br_args_str(&a, "CREATE");
    br_args_str(&a, c->reqkey);
    br_args_str(&a, GP_GROUP);
    br_args_str(&a, "0");
    br_args_str(&a, "MKSTREAM");
    br_conn_ref(c);
    if (br_db_cmd(h->env->db, on_group, c, &a) != 0)
        br_conn_unref(c);
}

/* --- claim / release / fencing ---------------------------------------------------------- */

static void fence_out(br_houses *h, br_conn *c, const char *why) {
    gp_metric_inc(h->env->metrics->fenced, NULL);
    br_log(BR_LOG_WARN, "house_fenced", "house=%s epoch=%llu addr=%s reason=%s", c->house,
           (unsigned long long)c->epoch, c->addr, why);
    br_house_teardown(h, c, 0);
    br_conn_close(c, GP_GOAWAY_FENCED, "another connection of this house took over");
}

void br_house_fenced(br_houses *h, const char *house, uint64_t epoch) {
    br_conn *c = br_house_find(h, house);
    if (c && c->epoch == epoch)
        fence_out(h, c, "epoch_moved");
}

/* When c last heard from its house, on Redis's clock. */
static uint64_t last_seen_redis(const br_env *e, const br_conn *c) {
    return br_env_now_redis(e) - (br_env_now(e) - c->last_rx_ms);
}

/* Clears c's state if it is still c's, recording in the house hash when the house was last
 * seen (its "offline since": store_state.h). */
static void release(br_houses *h, const br_conn *c, uint64_t epoch) {
    const br_env *e = h->env;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, c->epochkey);
    br_args_str(&a, c->statekey);
    br_args_str(&a, c->housekey);
    br_args_u64(&a, epoch);
    br_args_u64(&a, last_seen_redis(e, c));
    br_args_str(&a, e->cfg->bridge_id);
    br_db_eval(e->db, &h->release, NULL, NULL, 3, &a);
}

void br_house_welcome(br_houses *h, br_conn *c) {
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_WELCOME, 0, 0);
    f.u.welcome.bridge_id = gp_str_c(h->env->cfg->bridge_id);
    f.u.welcome.max_frame = GP_DEFAULT_MAX_FRAME;
    f.u.welcome.ping_interval_ms = (uint32_t)c->ping_iv;
    f.u.welcome.window = 0;
    f.u.welcome.epoch = c->epoch;
    if (c->proto >= GP_PROTO_STREAMS) /* a protocol-1 house gets the WELCOME it knows */
        f.u.welcome.proto = c->proto;
    br_conn_send(c, &f);
}

static void on_claimed(redisReply *rep, void *ud) {
    br_conn *c = ud;
    br_houses *h = of(c);
    const br_env *e = h->env;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        if (br_conn_alive(c)) {
            br_log(BR_LOG_WARN, "claim_failed", "house=%s addr=%s err=%s", c->house, c->addr,
                   br_qs(rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "redis unavailable"));
            br_conn_close(c, GP_GOAWAY_DRAINING, "registry unavailable, retry later");
        }
        br_conn_unref(c);
        return;
    }
    if (rep->integer == -1) {
        /* Disabled between the secret lookup and now: refused as at authentication. */
        if (br_conn_alive(c)) {
            br_logr(BR_LOG_INFO, "auth_refused", "house=%s addr=%s transport=%s reason=disabled",
                    c->house, c->addr, c->tp->name);
            br_conn_close(c, GP_GOAWAY_AUTH, GP_GOAWAY_MSG_DISABLED);
        }
        br_conn_unref(c);
        return;
    }
    uint64_t epoch = (uint64_t)rep->integer;
    if (!br_conn_alive(c) || c->state != BR_CS_CLAIMING) {
        /* Gone while claiming: don't leave a state that names us. */
        release(h, c, epoch);
        br_conn_unref(c);
        return;
    }
    c->epoch = epoch;
    br_conn *old = br_house_find(h, c->house);
    if (old) /* same house again on this bridge: the newer connection wins */
        fence_out(h, old, "newer_connection");
    if (br_htable_insert(&h->table, c) != 0) {
        br_conn_close(c, GP_GOAWAY_DRAINING, "out of memory");
        br_conn_unref(c);
        return;
    }
    c->state = BR_CS_LIVE;
    gp_metric_inc(e->metrics->connections, c->tp->name);
    c->since_ms = br_env_now_redis(e);
    c->last_ping_ms = c->last_renew_ms = c->last_mark_ms = br_env_now(e); /* the claim marked */
    c->next_sweep_ms = br_env_now(e) + SWEEP_FAST_MS;
    br_log(BR_LOG_INFO, "house_connected", "house=%s addr=%s epoch=%llu transport=%s", c->house,
           c->addr, (unsigned long long)epoch, c->tp->name);

    c->ping_iv = (uint64_t)e->cfg->ping_interval;
    br_house_welcome(h, c);
    subscribe(h, c, 1);
    create_group(h, c);
    br_conn_unref(c);
}

/* The house's keys, each sized to fit (a bridge holds thousands of houses). */
#define NKEYS 5
static int keys_init(const br_env *e, br_conn *c) {
    const char *p = e->cfg->prefix;
    char k[NKEYS][GP_KEY_MAX];
    int n[NKEYS] = {gp_key_req(k[0], p, c->house), gp_key_state(k[1], p, c->house),
                    gp_key_epoch(k[2], p, c->house), gp_key_house(k[3], p, c->house),
                    gp_key_recent(k[4], p, c->house)};
    size_t total = 0;
    for (int i = 0; i < NKEYS; i++) {
        if (n[i] < 0)
            return -1;
        total += (size_t)n[i] + 1;
    }
    if (!(c->keys = malloc(total)))
        return -1;
    char *o = c->keys,
         **dst[NKEYS] = {&c->reqkey, &c->statekey, &c->epochkey, &c->housekey, &c->recentkey};
    for (int i = 0; i < NKEYS; i++) {
        memcpy(o, k[i], (size_t)n[i] + 1);
        *dst[i] = o;
        o += n[i] + 1;
    }
    return 0;
}

void br_house_claim(br_houses *h, br_conn *c) {
    const br_env *e = h->env;
    const char *p = e->cfg->prefix;
    if (keys_init(e, c) != 0) {
        br_conn_close(c, GP_GOAWAY_DRAINING, "out of memory");
        return;
    }
    br_args a;
    br_args_init(&a);
    br_args_str(&a, c->epochkey);
    br_args_str(&a, c->statekey);
    br_args_str(&a, c->housekey);
    br_args_str(&a, e->cfg->bridge_id);
    br_args_str(&a, c->tp->name);
    br_args_u64(&a, br_env_now_redis(e));
    br_args_str(&a, c->addr);
    br_args_u64(&a, (uint64_t)e->cfg->lease_ms);
    char fpre[GP_KEY_MAX + 16];
    gp_key_fence(fpre, p, ""); /* the script appends the old holder's id */
    br_args_str(&a, fpre);
    br_args_str(&a, c->house);
    br_conn_ref(c);
    if (br_db_eval(e->db, &h->claim, on_claimed, c, 3, &a) != 0)
        on_claimed(NULL, c);
}

void br_house_teardown(br_houses *h, br_conn *c, int do_release) {
    if (!c->in_table)
        return;
    gp_metric_inc(h->env->metrics->disconnects, c->tp->name);
    br_htable_remove(&h->table, c);
    subscribe(h, c, 0);
    br_req_free_all(h->reqs, c);
    if (h->streams)
        br_streams_conn_gone(h->streams, c);
    if (do_release) {
        release(h, c, c->epoch);
        br_log(BR_LOG_INFO, "house_disconnected", "house=%s addr=%s epoch=%llu", c->house, c->addr,
               (unsigned long long)c->epoch);
    }
}

static void on_refreshed(redisReply *rep, void *ud) {
    br_conn *c = ud;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 && br_conn_alive(c) &&
        c->in_table)
        fence_out(of(c), c, "epoch_moved");
    br_conn_unref(c);
}

void br_house_state_update(br_houses *h, br_conn *c) {
    const br_env *e = h->env;
    if (!c->in_table)
        return;
    br_link_stats ls;
    memset(&ls, 0, sizeof ls);
    if (c->tp->stats)
        c->tp->stats(c, &ls);
    /* rudp measures the path itself (smoothed, every packet); PINGs are all wss has. */
    char rtt[32], loss[32]; /* ms to the microsecond: a LAN's RTT is not "0" (0: none yet) */
    if (ls.rtt_ms > 0)
        snprintf(rtt, sizeof rtt, "%.3f", ls.rtt_ms);
    else
        snprintf(rtt, sizeof rtt, "%.3f", (double)c->rtt_us / 1000);
    snprintf(loss, sizeof loss, "%.2f", ls.loss * 100);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, c->epochkey);
    br_args_str(&a, c->statekey);
    br_args_str(&a, c->housekey);
    br_args_u64(&a, c->epoch);
    br_args_str(&a, e->cfg->bridge_id);
    br_args_str(&a, c->tp->name);
    br_args_u64(&a, c->since_ms);
    br_args_u64(&a, last_seen_redis(e, c));
    br_args_str(&a, rtt);
    br_args_str(&a, c->addr);
    br_args_u64(&a, (uint64_t)e->cfg->lease_ms);
    br_args_u64(&a, c->st_req);
    br_args_u64(&a, c->st_err);
    br_args_u64(&a, c->st_bytes_in);
    br_args_u64(&a, c->st_bytes_out);
    br_args_str(&a, loss);
    br_args_u64(&a, ls.fec_repaired);
    br_l3_figures l3f;
    br_l3_figures_of(c, &l3f);
    br_args_str(&a, l3f.addr);
    br_args_u64(&a, l3f.pkts_in);
    br_args_u64(&a, l3f.pkts_out);
    br_args_u64(&a, l3f.bytes_in);
    br_args_u64(&a, l3f.bytes_out);
    br_args_u64(&a, l3f.drops);
    br_args_u64(&a, br_env_now_redis(e));
    /* The house hash's last_seen rides along at most once a third of the lease: counters are
     * written every second while they move, and 100,000 houses would make that 100,000 more
     * writes a second for nothing. */
    uint64_t now = br_env_now(e);
    int mark = now - c->last_mark_ms >= (uint64_t)e->cfg->lease_ms / 3;
    br_args_str(&a, mark ? "1" : "0");
    if (mark)
        c->last_mark_ms = now;
    c->st_dirty = 0;
    c->last_renew_ms = now;
    br_conn_ref(c);
    if (br_db_eval(e->db, &h->refresh, on_refreshed, c, 3, &a) != 0)
        br_conn_unref(c);
}

/* Redis came back (maybe restarted, maybe empty): re-assert ownership, make sure every
 * group exists, and re-read each house's pending list. */
void br_house_redis_up(br_houses *h) {
    for (br_conn *c = h->conns->all; c; c = c->all_next) {
        if (!c->in_table)
            continue;
        c->read_again = 0;
        br_house_state_update(h, c);
        create_group(h, c);
    }
}

/* Called every 100 ms: lease renewals and sweeps fall due one house at a time, so their
 * Redis traffic is spread evenly instead of arriving in bursts. */
void br_house_tick(br_houses *h, uint64_t now) {
    uint64_t renew = (uint64_t)h->env->cfg->lease_ms / 3;
    for (br_conn *c = h->conns->all; c; c = c->all_next) {
        if (!c->in_table)
            continue;
        if (now - c->last_renew_ms >= renew)
            br_house_state_update(h, c);
        if (c->reading)
            continue;
        if (now - c->last_pending_scan_ms >= PENDING_RESCAN_MS) {
            /* Entries whose reply write was lost (Redis timeout) are still pending. */
            c->last_pending_scan_ms = now;
            c->read_pending = 1;
            strcpy(c->pcursor, "0");
            c->next_sweep_ms = now;
        }
        /* Doorbell gone quiet (subscriber reconnecting): don't wait out a slow sweep. */
        if (!doorbell_ok(h) && c->next_sweep_ms > now + SWEEP_FAST_MS)
            c->next_sweep_ms = now + SWEEP_FAST_MS;
        if (now >= c->next_sweep_ms)
            br_house_read(h, c);
    }
    if (h->streams)
        br_streams_tick(h->streams, now);
}

/* --- the hooks of the connections and the ops of the requests ------------------------- */

static void hook_frame(void *ud, br_conn *c, const gp_frame *f) {
    br_houses *h = ud;
    if (f->type == GP_FRAME_L3_REQ) { /* conn.c checked the protocol */
        br_l3_request(h->l3, c, f);
        return;
    }
    if (f->type == GP_FRAME_S_OPENED || f->type == GP_FRAME_S_ENTRY ||
        f->type == GP_FRAME_S_ATTACH) {
        if (h->streams)
            br_streams_frame(h->streams, c, f);
        return;
    }
    br_req_frame(h->reqs, c, f);
}

static void hook_closed(void *ud, br_conn *c) {
    br_houses *h = ud;
    if (c->in_table)
        br_house_teardown(h, c, 1);
    br_req_free_all(h->reqs, c);
    if (h->streams)
        br_streams_conn_gone(h->streams, c);
    br_l3_conn_gone(h->l3, c);
}

static void hook_dgram(void *ud, br_conn *c, const uint8_t *p, size_t n) {
    br_houses *h = ud;
    br_l3_dgram(h->l3, c, p, n);
}

static void hook_free(void *ud, br_conn *c) {
    br_houses *h = ud;
    br_req_conn_free(h->reqs, c);
}

static void op_fenced(void *ud, const char *house, uint64_t epoch) {
    br_house_fenced(ud, house, epoch);
}

static br_conn *op_find(void *ud, const char *house) {
    return br_house_find(ud, house);
}

static void op_read_more(void *ud, br_conn *c) {
    br_house_read(ud, c);
}

/* Every connection's reading stops (or goes on): one Redis serves them all. */
static void op_pressure(void *ud, int on) {
    br_houses *h = ud;
    h->conns->paused = on;
    for (br_conn *c = h->conns->all; c; c = c->all_next)
        if (c->tp->rx_pause)
            c->tp->rx_pause(c, on);
}

void br_houses_init(br_houses *h, const br_env *env, br_conns *conns, br_requests *reqs,
                    br_streams *streams) {
    *h = (br_houses){.env = env,
                     .conns = conns,
                     .reqs = reqs,
                     .streams = streams,
                     .claim = {GP_LUA_STATE_CLAIM, ""},
                     .refresh = {GP_LUA_STATE_REFRESH, ""},
                     .release = {GP_LUA_STATE_RELEASE, ""},
                     .read = {GP_LUA_REQ_FENCED_READ, ""}};
    conns->hooks = (br_conn_hooks){h, hook_frame, hook_closed, hook_free, hook_dgram};
    br_requests_set_ops(reqs, &(br_requests_ops){h, op_fenced, op_find, op_read_more, op_pressure});
    if (streams)
        br_streams_set_ops(streams, &(br_streams_ops){.ud = h, .fenced = op_fenced});
}

void br_houses_free(br_houses *h) {
    br_htable_free(&h->table);
}
