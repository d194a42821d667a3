/* hist.c — the request history a bridge writes (hist.h): a table of the houses with traffic in
 * the current minute and their counts (store_hist.h's gp_hist_acc), closed each minute (and each
 * flush period) into a queue, which the tick sends as one script a house, batched. The counts
 * are taken on the Redis clock's minute, so bridges agree on what a minute is. I/O side. */
#include "hist.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/store_hist.h"
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_MS 60000ULL

/* One house's counts of one minute (house[0] == '\0': the bridge's own). */
typedef struct entry {
    struct entry *next; /* its table chain, then the queue */
    uint64_t minute;    /* minutes since the epoch, Redis clock */
    gp_hist_acc acc;
    char house[GP_MAX_HOUSE_ID + 1];
} entry;

struct br_hist {
    const br_env *env;
    br_script add;
    uint64_t minute;        /* of the counts in the table, 0: none yet */
    uint64_t closed_ms;     /* loop ms the table was last closed */
    entry **tab;            /* chains by house */
    size_t nb, n;           /* buckets (a power of two), entries */
    entry *bridge;          /* the bridge's counts of the minute, NULL: none */
    entry *q_head, *q_tail; /* closed, to send */
    uint64_t lost;          /* records Redis did not take (logged, rate-limited) */
};

br_hist *br_hist_new(const br_env *env) {
    br_hist *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->env = env;
    h->add = (br_script){GP_HIST_ADD_LUA, ""};
    h->nb = 64;
    h->tab = calloc(h->nb, sizeof *h->tab);
    if (!h->tab) {
        free(h);
        return NULL;
    }
    return h;
}

static void entry_free(entry *e) {
    gp_hist_acc_free(&e->acc);
    free(e);
}

void br_hist_free(br_hist *h) {
    if (!h)
        return;
    for (size_t i = 0; i < h->nb; i++)
        for (entry *e = h->tab[i], *nx; e; e = nx) {
            nx = e->next;
            entry_free(e);
        }
    for (entry *e = h->q_head, *nx; e; e = nx) {
        nx = e->next;
        entry_free(e);
    }
    if (h->bridge)
        entry_free(h->bridge);
    free(h->tab);
    free(h);
}

void br_hist_load_scripts(br_hist *h) {
    br_db_load_script(h->env->db, &h->add);
}

static int on(const br_hist *h) {
    return h->env->cfg->history_flush_ms > 0 && h->env->time_ok;
}

static uint64_t now_minute(const br_hist *h) {
    return br_env_now_redis(h->env) / MIN_MS;
}

static size_t hash(const char *s) {
    return (size_t)gp_fnv1a(s);
}

static void enqueue(br_hist *h, entry *e) {
    e->next = NULL;
    if (h->q_tail)
        h->q_tail->next = e;
    else
        h->q_head = e;
    h->q_tail = e;
}

/* The table's counts (and the bridge's) into the queue: a new minute starts from nothing. */
static void close_minute(br_hist *h) {
    for (size_t i = 0; i < h->nb; i++) {
        for (entry *e = h->tab[i], *nx; e; e = nx) {
            nx = e->next;
            enqueue(h, e);
        }
        h->tab[i] = NULL;
    }
    h->n = 0;
    if (h->bridge)
        enqueue(h, h->bridge);
    h->bridge = NULL;
    h->closed_ms = br_env_now(h->env);
}

static entry *entry_new(const char *house, uint64_t minute) {
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->minute = minute;
    snprintf(e->house, sizeof e->house, "%s", house);
    return e;
}

static void grow(br_hist *h) {
    size_t nb = h->nb * 2;
    entry **t = calloc(nb, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < h->nb; i++)
        for (entry *e = h->tab[i], *nx; e; e = nx) {
            nx = e->next;
            size_t k = hash(e->house) & (nb - 1);
            e->next = t[k];
            t[k] = e;
        }
    free(h->tab);
    h->tab = t;
    h->nb = nb;
}

/* The current minute's counts of house and of the bridge (either NULL: out of memory), after
 * closing the last minute's when the minute changed. */
static void find(br_hist *h, const char *house, entry **he, entry **be) {
    *he = *be = NULL;
    uint64_t m = now_minute(h);
    if (m != h->minute) {
        close_minute(h);
        h->minute = m;
    }
    if (!h->bridge)
        h->bridge = entry_new("", m);
    *be = h->bridge;
    if (!house || !*house || strlen(house) > GP_MAX_HOUSE_ID)
        return;
    size_t k = hash(house) & (h->nb - 1);
    for (entry *e = h->tab[k]; e; e = e->next)
        if (strcmp(e->house, house) == 0) {
            *he = e;
            return;
        }
    entry *e = entry_new(house, m);
    if (!e)
        return;
    e->next = h->tab[k];
    h->tab[k] = e;
    *he = e;
    if (++h->n > h->nb)
        grow(h);
}

static void count_reply(gp_hist_acc *a, int is_error, uint64_t latency_us) {
    a->req++;
    a->err += is_error != 0;
    if (latency_us != BR_HIST_NO_LATENCY)
        gp_hist_acc_lat(a, latency_us); /* out of memory: one sample fewer */
}

void br_hist_reply(br_hist *h, const char *house, int is_error, uint64_t latency_us) {
    if (!on(h))
        return;
    entry *he, *be;
    find(h, house, &he, &be);
    if (he)
        count_reply(&he->acc, is_error, latency_us);
    if (be)
        count_reply(&be->acc, is_error, latency_us);
}

void br_hist_bytes(br_hist *h, const char *house, int from_house, size_t n) {
    if (!on(h) || !n)
        return;
    entry *he, *be;
    find(h, house, &he, &be);
    for (int i = 0; i < 2; i++) {
        entry *e = i ? be : he;
        if (!e)
            continue;
        if (from_house)
            e->acc.from_house += n;
        else
            e->acc.to_house += n;
    }
}

/* --- sending ---------------------------------------------------------------------------- */

static void on_added(redisReply *r, void *ud) {
    br_hist *h = ud;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        h->lost++;
        br_logr(BR_LOG_WARN, "history_not_written", "lost=%llu err=%s", (unsigned long long)h->lost,
                br_qs(r ? r->str : "no reply"));
    }
}

/* One script adding e's record into key (and, for a house, under its registry hash). 0, or
 * -1 when Redis is not there. */
static int send_one(br_hist *h, const entry *e, const char *key, const char *house_key,
                    const char *text) {
    uint64_t hour = e->minute / 60;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, key);
    if (house_key)
        br_args_str(&a, house_key);
    br_args_u64(&a, hour % GP_HIST_SLOTS);
    br_args_u64(&a, hour);
    br_args_u64(&a, e->minute % 60);
    br_args_str(&a, text);
    br_args_u64(&a, GP_HIST_TTL_MS);
    return br_db_eval(h->env->db, &h->add, on_added, h, house_key ? 2 : 1, &a);
}

/* e's record(s): a house's, or the bridge's into its own key and the one of all bridges.
 * Returns the scripts sent, or -1 when Redis is not there (e is kept for later). */
static int send_entry(br_hist *h, const entry *e) {
    const char *p = h->env->cfg->prefix;
    char text[GP_HIST_REC_MAX], k1[GP_KEY_MAX], k2[GP_KEY_MAX];
    if (gp_hist_acc_empty(&e->acc) || gp_hist_rec_text(&e->acc, text, sizeof text) < 0)
        return 0;
    if (e->house[0]) {
        if (gp_key_hist(k1, p, e->house) < 0 || gp_key_house(k2, p, e->house) < 0)
            return 0;
        return send_one(h, e, k1, k2, text) == 0 ? 1 : -1;
    }
    if (gp_key_bhist(k1, p, h->env->cfg->bridge_id) < 0 || gp_key_fhist(k2, p) < 0)
        return 0;
    if (send_one(h, e, k1, NULL, text) != 0)
        return -1;
    return send_one(h, e, k2, NULL, text) == 0 ? 2 : 1;
}

/* Up to max entries of the queue; the scripts sent. */
static size_t send_queue(br_hist *h, size_t max) {
    size_t sent = 0;
    while (h->q_head && max--) {
        entry *e = h->q_head;
        int n = send_entry(h, e);
        if (n < 0)
            break; /* Redis is away: the rest waits for the next tick */
        sent += (size_t)n;
        h->q_head = e->next;
        if (!h->q_head)
            h->q_tail = NULL;
        entry_free(e);
    }
    return sent;
}

void br_hist_tick(br_hist *h) {
    if (!on(h))
        return;
    uint64_t m = now_minute(h);
    uint64_t period = (uint64_t)h->env->cfg->history_flush_ms;
    if (m != h->minute || (period < MIN_MS && br_env_now(h->env) - h->closed_ms >= period)) {
        close_minute(h);
        h->minute = m;
    }
    if (br_db_ready(h->env->db))
        send_queue(h, BR_HIST_BATCH);
}

size_t br_hist_flush(br_hist *h) {
    if (!on(h))
        return 0;
    close_minute(h);
    return send_queue(h, SIZE_MAX);
}

int br_hist_pending(const br_hist *h) {
    return h->q_head || h->n || (h->bridge && !gp_hist_acc_empty(&h->bridge->acc));
}
