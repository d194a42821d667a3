/* loadhouses.c — gp-loadhouses: N houses in one process, for fault tests and benchmarks of
 * the bridge. Every house is a real house: an hs_house (house/house.h) with house/'s own
 * tunnel, ws transport, replay cache and reconnect policy, all of them on one libuv loop, in
 * one set of TLS client settings (hs_ws_shared) and with one compression state.
 * Instead of calling an upstream, the executor of inproc.c (hs_exec) answers every request:
 * 200, application/json and a B-byte body after D ms of think time. The house remembers what
 * ran (its replay cache), so a request delivered again is answered from there (`replayed`)
 * instead of running twice; this tool counts executions per frame id (`execs`, and
 * `dup_exec` for second ones, which must stay 0). The house's hooks (hs_hooks) feed the
 * counters and stdout lines, and its dial gate lets every dial (first connects and
 * reconnects) through one pacer at --connect-rate. The houses' log lines go through a sink
 * that rate-limits per-house trouble. Progress goes to stdout as key=value event lines.
 * I/O side, test-only. */
#include "../../bridge/store/rclient.h"
#include "../../bridge/store/rurl.h"
#include "../../bridge/store/tlsrelay.h"
#include "../../house/house.h"
#include "../harness/tool.h"
#include "adapters/uv_signals.h"
#include "auth.h"
#include "conf.h"
#include "frame.h"
#include "inproc.h"
#include "list.h"
#include "logger.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define PACE_MS 10u       /* dial pacer tick */
#define PACE_BURST_MS 50u /* dial credit saved up at most */
#define SWEEP_MS 1000u    /* ageing of the execution memory */
#define FD_RESERVE 64u    /* descriptors besides the houses' sockets */
#define REDIS_BATCH 1000u

/* --- configuration ----------------------------------------------------------------------- */

typedef struct lh_bridge {
    char *url;
    char host[256], hostport[300], path[400];
    int port, tls;
} lh_bridge;

typedef struct lh_config {
    int layer, bridges_layer;
    lh_bridge *bridges;
    size_t nbridges;
    char *redis, *prefix, *id_prefix, *log_level, *log_format, *master_key, *ca_file;
    char *redis_user, *redis_password_file, *redis_ca_file;
    long long count, connect_rate, response_bytes, delay_ms, stats_interval, remember_ms;
    int reg, spread, no_replay, insecure, help;
} lh_config;

/* --- houses and executions ---------------------------------------------------------------- */

enum lh_state { LH_WAITING, LH_CONNECTING, LH_LIVE };

typedef struct lh_house {
    hs_house h;             /* first: the hooks are handed &h */
    struct lh_house *dnext; /* dial queue */
    uint32_t idx;
    uint8_t state, in_dialq, ever_live;
} lh_house;

enum exec_state { EX_RUNNING, EX_DONE, EX_ABORTED };

/* One frame id of one house that was executed (or is executing), kept for --remember-ms in
 * an age FIFO: what tells a second execution (dup_exec) from a first. */
typedef struct lh_exec {
    struct lh_exec *hnext, *anext;
    uint64_t done_ms;
    uint32_t house, execs, running;
    uint8_t state, in_age;
    uint16_t idlen;
    char id[];
} lh_exec;

static struct {
    lh_config cfg;
    int log_level;
    uint8_t master_key[32];
    int has_master;
    uv_loop_t *loop;
    struct hs_ws_shared *ctx;
    hs_zstate *zs;
    char **urls;
    lh_house *houses;
    size_t n;
    int stopping, handles_open;
    uint64_t start_ms;
    uv_timer_t pace, sweep, stats;
    gp_uv_signals signals; /* SIGINT, SIGTERM: stop */
    /* dialing: the houses the gate holds, let through at --connect-rate */
    lh_house *dq_head, *dq_tail;
    double credit;
    uint64_t credit_ms;
    lh_exec **eb;
    size_t neb, nexec;
    lh_exec *age_head, *age_tail;
    /* counters */
    size_t n_live, n_connecting;
    uint64_t requests, replayed, dup_exec, reconnects, execs, answered, cancelled, disconnects,
        dial_failures, fenced, warn_suppressed;
    uint64_t warn_ms;
    int all_connected;
} G;

static uint64_t now_ms(void) {
    return uv_hrtime() / 1000000u;
}

/* --- output and log ----------------------------------------------------------------------- */

/* The tool's own lines, formatted and written as the daemons' (proto/logger.h), but not
 * through the process logger: that one's sink is house_log below, which thins out what the
 * in-process houses say. */
static void lh_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lh_log(int level, const char *event, const char *fmt, ...) {
    if (level > G.log_level)
        return;
    char line[GP_LOG_JSON_LINE];
    va_list ap;
    va_start(ap, fmt);
    size_t n = gp_log_vline(line, level, event, NULL, NULL, fmt, ap);
    va_end(ap);
    gp_log_emit(line, n);
}

/* One event line on stdout, flushed at once: a test reading our pipe sees it now. */
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static const char *house_id(const lh_house *h) {
    static char bufs[4][GP_MAX_HOUSE_ID + 1];
    static unsigned k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s%u", G.cfg.id_prefix, h->idx + 1);
    return b;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void print_stats(int final) {
    size_t waiting = G.n - G.n_live - G.n_connecting;
    emit("event=stats live=%zu connecting=%zu requests=%llu replayed=%llu dup_exec=%llu "
         "reconnects=%llu rss_kb=%ld waiting=%zu execs=%llu answered=%llu cancelled=%llu "
         "disconnects=%llu dial_failures=%llu fenced=%llu uptime_ms=%llu%s",
         G.n_live, G.n_connecting, (unsigned long long)G.requests, (unsigned long long)G.replayed,
         (unsigned long long)G.dup_exec, (unsigned long long)G.reconnects, rss_kb(), waiting,
         (unsigned long long)G.execs, (unsigned long long)G.answered,
         (unsigned long long)G.cancelled, (unsigned long long)G.disconnects,
         (unsigned long long)G.dial_failures, (unsigned long long)G.fenced,
         (unsigned long long)(now_ms() - G.start_ms), final ? " final=1" : "");
}

/* --- the houses' log: per-house trouble at most once a second ----------------------------- */

/* A house logs every connect and request at info, and trouble (a refused dial, a dropped
 * connection, a fence) at warn or error. 10,000 houses losing their bridge must not flood
 * stderr, but a run that never connects must not look merely slow either: trouble goes out
 * at most once a second, each line saying how many were left out since the last one. With
 * --log-level debug every line goes out. */
static void house_log(int level, const char *event, const char *kv) {
    if (G.log_level >= GP_LOG_DEBUG) {
        lh_log(level, event, "%s", kv);
        return;
    }
    if (level > HS_LOG_WARN || (G.stopping && level == HS_LOG_WARN))
        return; /* every house says goodbye at shutdown: not trouble */
    uint64_t now = now_ms();
    if (G.warn_ms && now - G.warn_ms < 1000) {
        G.warn_suppressed++;
        return;
    }
    lh_log(level, event, "%s suppressed=%llu", kv, (unsigned long long)G.warn_suppressed);
    G.warn_ms = now;
    G.warn_suppressed = 0;
}

/* --- execution memory --------------------------------------------------------------------- */

static size_t exec_bucket(uint32_t house, const char *id, size_t n, size_t nb) {
    uint64_t x = 14695981039346656037ull; /* FNV-1a */
    for (int i = 0; i < 4; i++)
        x = (x ^ ((house >> (8 * i)) & 0xffu)) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        x = (x ^ (uint8_t)id[i]) * 1099511628211ull;
    return (size_t)(x % nb);
}

static lh_exec *exec_find(uint32_t house, const char *id, size_t n) {
    for (lh_exec *e = G.eb[exec_bucket(house, id, n, G.neb)]; e; e = e->hnext)
        if (e->house == house && e->idlen == n && memcmp(e->id, id, n) == 0)
            return e;
    return NULL;
}

static void exec_grow(void) {
    size_t nb = G.neb * 2;
    lh_exec **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < G.neb; i++)
        for (lh_exec *e = G.eb[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = exec_bucket(e->house, e->id, e->idlen, nb);
            e->hnext = b[k];
            b[k] = e;
        }
    free(G.eb);
    G.eb = b;
    G.neb = nb;
}

static lh_exec *exec_new(uint32_t house, const char *id, size_t n) {
    if (G.nexec >= G.neb * 2)
        exec_grow();
    lh_exec *e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    e->house = house;
    e->idlen = (uint16_t)n;
    memcpy(e->id, id, n);
    size_t k = exec_bucket(house, id, n, G.neb);
    e->hnext = G.eb[k];
    G.eb[k] = e;
    G.nexec++;
    return e;
}

static void exec_free(lh_exec *e) {
    lh_exec **pp = &G.eb[exec_bucket(e->house, e->id, e->idlen, G.neb)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    G.nexec--;
    free(e);
}

/* An execution ended (done or aborted): once none of its frame id runs, its entry starts
 * ageing. */
static void exec_settle(lh_exec *e, enum exec_state st, uint64_t now) {
    e->running--;
    e->state = (uint8_t)(e->running ? EX_RUNNING : st);
    e->done_ms = now;
    if (e->in_age)
        return; /* ran again: it keeps its place, and is dropped a little late */
    e->in_age = 1;
    GP_SLIST_APPEND(G.age_head, G.age_tail, e, anext);
}

static void exec_prune(uint64_t now) {
    while (G.age_head) {
        lh_exec *e = G.age_head;
        if (e->state != EX_RUNNING &&
            (G.cfg.remember_ms == 0 || now - e->done_ms < (uint64_t)G.cfg.remember_ms))
            return;
        GP_SLIST_SHIFT(G.age_head, G.age_tail, anext);
        e->in_age = 0;
        if (e->state != EX_RUNNING) /* running again: back in the FIFO when it ends */
            exec_free(e);
    }
}

/* --- the executions (tests/load/inproc.h answers them) ------------------------------------ */

/* An execution: counted and remembered; a second one of a frame id is a dup_exec. */
static unsigned exec_start(hs_house *h, hs_stream *s, void **tok) {
    lh_house *lh = (lh_house *)h;
    const hs_request *r = hs_stream_request(s);
    size_t n = strlen(r->frame_id);
    lh_exec *e = exec_find(lh->idx, r->frame_id, n);
    if (e) {
        G.dup_exec++;
        lh_log(G.cfg.no_replay ? GP_LOG_DEBUG : GP_LOG_WARN, "dup_exec", "house=%s id=%s execs=%u",
               lh->h.cfg.id, hs_qs(r->frame_id), e->execs + 1);
    }
    if (!e && !(e = exec_new(lh->idx, r->frame_id, n)))
        return 0;
    G.execs++;
    e->execs++;
    e->running++;
    e->state = EX_RUNNING;
    *tok = e;
    return e->execs;
}

/* Answered, or stopped before its end (CANCEL, shutdown: a redelivery runs it again). */
static void exec_end(void *tok, int aborted) {
    exec_settle(tok, aborted ? EX_ABORTED : EX_DONE, now_ms());
}

static const lt_exec_hooks exec_hooks = {exec_start, exec_end};

/* --- the houses' events (hs_hooks) and the dial pacer ------------------------------------- */

static void set_state(lh_house *lh, enum lh_state st) {
    G.n_connecting += (size_t)(st == LH_CONNECTING) - (size_t)(lh->state == LH_CONNECTING);
    G.n_live += (size_t)(st == LH_LIVE) - (size_t)(lh->state == LH_LIVE);
    lh->state = (uint8_t)st;
}

static void on_event(void *ud, hs_house *h, enum hs_event ev, const char *bridge,
                     const char *reason, uint64_t ms) {
    (void)ud, (void)bridge, (void)reason, (void)ms;
    lh_house *lh = (lh_house *)h;
    switch (ev) {
    case HS_EV_DIALING:
        set_state(lh, LH_CONNECTING);
        return;
    case HS_EV_LIVE:
        set_state(lh, LH_LIVE);
        if (lh->ever_live)
            G.reconnects++;
        lh->ever_live = 1;
        if (!G.all_connected && G.n_live == G.n) {
            G.all_connected = 1;
            emit("event=all_connected n=%zu ms=%llu", G.n,
                 (unsigned long long)(now_ms() - G.start_ms));
        }
        return;
    case HS_EV_DISCONNECTED:
        set_state(lh, LH_WAITING);
        if (!G.stopping)
            G.disconnects++;
        return;
    case HS_EV_DIAL_FAILED:
        set_state(lh, LH_WAITING);
        if (!G.stopping)
            G.dial_failures++;
        return;
    case HS_EV_FENCED:
        G.fenced++;
        return;
    case HS_EV_WAITING:
        return;
    case HS_EV_REQUEST:
        G.requests++;
        return;
    case HS_EV_REPLAYED:
        G.replayed++;
        return;
    case HS_EV_ANSWERED:
        G.answered++;
        return;
    case HS_EV_CANCELLED:
        G.cancelled++;
        return;
    }
}

/* The house's dial gate: it waits in the queue until the pacer lets it through. */
static void dial_gate(void *ud, hs_house *h) {
    (void)ud;
    lh_house *lh = (lh_house *)h;
    if (lh->in_dialq || G.stopping)
        return;
    lh->in_dialq = 1;
    GP_SLIST_APPEND(G.dq_head, G.dq_tail, lh, dnext);
}

static const hs_hooks hooks = {on_event, dial_gate};

static void on_pace(uv_timer_t *t) {
    (void)t;
    uint64_t now = now_ms();
    double cap = (double)G.cfg.connect_rate * PACE_BURST_MS / 1000.0;
    if (cap < 1.0)
        cap = 1.0;
    G.credit += (double)(now - G.credit_ms) * (double)G.cfg.connect_rate / 1000.0;
    G.credit_ms = now;
    if (G.credit > cap)
        G.credit = cap;
    while (G.credit >= 1.0 && G.dq_head && !G.stopping) {
        lh_house *lh = G.dq_head;
        GP_SLIST_SHIFT(G.dq_head, G.dq_tail, dnext);
        lh->in_dialq = 0;
        lh->dnext = NULL;
        G.credit -= 1.0;
        hs_tunnel_dial(lh->h.tunnel);
    }
}

static void on_sweep(uv_timer_t *t) {
    (void)t;
    exec_prune(now_ms());
}

static void on_stats(uv_timer_t *t) {
    (void)t;
    print_stats(0);
}

/* --- shutdown ----------------------------------------------------------------------------- */

static void close_handles(void) {
    if (!G.handles_open)
        return;
    G.handles_open = 0;
    uv_close((uv_handle_t *)&G.pace, NULL);
    uv_close((uv_handle_t *)&G.sweep, NULL);
    uv_close((uv_handle_t *)&G.stats, NULL);
    lt_inproc_close();
    gp_uv_signals_close(&G.signals);
}

/* Stops dialing and executing and every house as ghostport-house stops (its connection
 * closed with a WebSocket close), and libuv winds down. */
static void begin_stop(const char *why) {
    if (G.stopping)
        return;
    G.stopping = 1;
    lh_log(GP_LOG_INFO, "shutdown", "reason=%s", why);
    print_stats(1);
    for (lh_house *lh = G.dq_head, *n; lh; lh = n) {
        n = lh->dnext;
        lh->in_dialq = 0;
        lh->dnext = NULL;
    }
    G.dq_head = G.dq_tail = NULL;
    for (size_t i = 0; i < G.n; i++) {
        hs_house *h = &G.houses[i].h;
        h->stopping = 1;
        if (h->tunnel)
            hs_tunnel_stop(h->tunnel);
    }
    close_handles();
}

static void close_stray_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    if (uv_is_closing(h))
        return;
    lh_log(GP_LOG_WARN, "stray_handle", "type=%s active=%d", uv_handle_type_name(h->type),
           uv_is_active(h));
    uv_close(h, NULL);
}

/* Under ASan: the handles above belong to lws, which allocated them and never frees what it
 * lost. That is lws's leak, not this tool's, and is bounded by the dial failures of a run.
 * Only this tool is exempt: the daemons' logs are checked for leaks by every test. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libwebsockets.so\n";
}

static void on_signal(void *ud, int signum) {
    (void)ud;
    begin_stop(signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* --- configuration ------------------------------------------------------------------------ */

static void free_bridges(lh_config *c) {
    for (size_t i = 0; i < c->nbridges; i++)
        free(c->bridges[i].url);
    free(c->bridges);
    c->bridges = NULL;
    c->nbridges = 0;
}

/* A bridge URL, ws://host:port/path or wss://...; several may be given in one value,
 * separated by commas or spaces. Parsed once here rather than at every dial. */
static int set_bridge(void *obj, const char *value, char *err, size_t errlen) {
    lh_config *c = obj;
    if (c->bridges_layer != c->layer) {
        free_bridges(c);
        c->bridges_layer = c->layer;
    }
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, ", \t");
        if (n) {
            if (n >= 380 || (strncmp(p, "ws://", 5) != 0 && strncmp(p, "wss://", 6) != 0)) {
                snprintf(err, errlen, "bridge: \"%.*s\" must be ws://host:port/ or wss://...",
                         (int)(n < 100 ? n : 100), p);
                return GP_ERR_INVALID;
            }
            if (c->nbridges >= 1000) {
                snprintf(err, errlen, "bridge: at most 1000");
                return GP_ERR_INVALID;
            }
            lh_bridge *nb = realloc(c->bridges, (c->nbridges + 1) * sizeof *nb);
            if (!nb)
                return GP_ERR_NOMEM;
            c->bridges = nb;
            lh_bridge *b = &nb[c->nbridges];
            memset(b, 0, sizeof *b);
            if (!(b->url = strndup(p, n)))
                return GP_ERR_NOMEM;
            c->nbridges++;
            char buf[400];
            snprintf(buf, sizeof buf, "%s", b->url);
            const char *prot = NULL, *ads = NULL, *path = NULL;
            if (lws_parse_uri(buf, &prot, &ads, &b->port, &path) || !ads || !*ads ||
                strlen(ads) >= sizeof b->host || b->port < 1 || b->port > 65535) {
                snprintf(err, errlen, "bridge: cannot parse \"%s\"", b->url);
                return GP_ERR_INVALID;
            }
            b->tls = strcmp(prot, "wss") == 0;
            snprintf(b->host, sizeof b->host, "%s", ads);
            snprintf(b->hostport, sizeof b->hostport, "%s:%d", ads, b->port);
            snprintf(b->path, sizeof b->path, "/%s", path ? path : "");
        }
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

#define OFF(f) offsetof(lh_config, f)
static const gp_conf_opt opts[] = {
    {"bridge", GP_CONF_FN, 0, 0, 0, NULL, set_bridge,
     "bridge URL ws://host:port/ or wss://...; repeat for more (houses rotate on reconnect)"},
    {"redis", GP_CONF_STR, OFF(redis), 0, 0, "redis://127.0.0.1:6379/0", NULL,
     "Redis: redis://[user:password@]host:port/db, rediss://... (TLS) or host:port"},
    {"redis-user", GP_CONF_STR, OFF(redis_user), 0, 0, NULL, NULL,
     "Redis ACL user (default: the URL's)"},
    {"redis-password-file", GP_CONF_STR, OFF(redis_password_file), 0, 0, NULL, NULL,
     "file holding the Redis password (wins over the URL's)"},
    {"redis-ca-file", GP_CONF_STR, OFF(redis_ca_file), 0, 0, NULL, NULL,
     "rediss://: CA certificates for Redis (default: the system's)"},
    {"prefix", GP_CONF_STR, OFF(prefix), 0, 0, "gp", NULL, "Redis key prefix"},
    {"count", GP_CONF_INT, OFF(count), 1, 1000000, NULL, NULL, "number of houses (required)"},
    {"id-prefix", GP_CONF_STR, OFF(id_prefix), 0, 0, "lh-", NULL,
     "house ids are <id-prefix>1 .. <id-prefix>N"},
    {"register", GP_CONF_BOOL, OFF(reg), 0, 1, "0", NULL,
     "register the houses in Redis with new random secrets first (otherwise their secrets "
     "are read from Redis)"},
    {"master-key", GP_CONF_STR, OFF(master_key), 0, 0, NULL, NULL,
     "64 hex digits: the bridges' key sealing secrets at rest"},
    {"connect-rate", GP_CONF_INT, OFF(connect_rate), 1, 1000000, "500", NULL,
     "new dials per second, first connects and reconnects alike"},
    {"spread", GP_CONF_BOOL, OFF(spread), 0, 1, "0", NULL,
     "house i starts at bridge i mod the number of bridges (default: all at the first)"},
    {"response-bytes", GP_CONF_INT, OFF(response_bytes), 0, 1LL << 30, "100", NULL,
     "response body size in bytes"},
    {"delay-ms", GP_CONF_INT, OFF(delay_ms), 0, 86400000, "0", NULL,
     "think time before a request is answered"},
    {"remember-ms", GP_CONF_INT, OFF(remember_ms), 0, 1LL << 40, "600000", NULL,
     "how long executed frame ids are remembered (0: for ever)"},
    {"no-replay", GP_CONF_BOOL, OFF(no_replay), 0, 1, "0", NULL,
     "execute redelivered requests again instead of answering from memory (shows dup_exec)"},
    {"stats-interval", GP_CONF_INT, OFF(stats_interval), 0, 3600000, "1000", NULL,
     "ms between event=stats lines (0: only the final one)"},
    {"ca-file", GP_CONF_STR, OFF(ca_file), 0, 0, NULL, NULL, "CA certificate (PEM) for wss://"},
    {"insecure", GP_CONF_BOOL, OFF(insecure), 0, 1, "0", NULL,
     "do not verify bridge certificates (testing only)"},
    {"log-level", GP_CONF_STR, OFF(log_level), 0, 0, "info", NULL, "error, warn, info or debug"},
    {"log-format", GP_CONF_STR, OFF(log_format), 0, 0, "kv", NULL,
     "kv or json: the log lines on stderr (the event lines on stdout stay key=value)"},
    {"help", GP_CONF_BOOL, OFF(help), 0, 1, "0", NULL, "print this help"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static void usage(void) {
    static const char text[] =
        "usage: gp-loadhouses --bridge URL --count N [options]\n"
        "Simulates N Ghost Port houses in one process: each dials a bridge, authenticates and\n"
        "answers every request with 200 and a generated body. Events on stdout:\n"
        "event=registered, event=all_connected, event=stats (and a final one on SIGTERM).\n";
    tool_usage(text, opts, tool_print_line);
}

static int load_config(int argc, char **argv, char *err, size_t errlen) {
    lh_config *c = &G.cfg;
    if (tool_conf_load(opts, c, &c->help, &c->layer, argc, argv, err, errlen) != 0 || c->help)
        return c->help ? 0 : -1;
    if (c->nbridges == 0) {
        snprintf(err, errlen, "bridge: at least one is required (--bridge ws://host:port/)");
        return -1;
    }
    if (c->count <= 0) {
        snprintf(err, errlen, "count: required (--count N)");
        return -1;
    }
    if ((G.log_level = tool_log_level(c->log_level, err, errlen)) < 0)
        return -1;
    if (gp_log_format_parse(c->log_format) < 0) {
        snprintf(err, errlen, "log-format: \"%s\" is not kv or json", c->log_format);
        return -1;
    }
    gp_log_set_format(gp_log_format_parse(c->log_format));
    char idbuf[128];
    snprintf(idbuf, sizeof idbuf, "%s%lld", c->id_prefix, c->count);
    if (strlen(c->id_prefix) > 48 || !gp_house_id_valid(gp_str_c(idbuf))) {
        snprintf(err, errlen,
                 "id-prefix: \"%s\" does not make valid house ids (1-64 of "
                 "[A-Za-z0-9_.-])",
                 c->id_prefix);
        return -1;
    }
    if (c->master_key && *c->master_key) {
        if (gp_secret_from_hex(c->master_key, G.master_key) != 0) {
            snprintf(err, errlen, "master-key: must be exactly 64 hex digits");
            return -1;
        }
        G.has_master = 1;
    }
    return 0;
}

/* --- file descriptors --------------------------------------------------------------------- */

/* Each house holds one socket. Raises the soft limit to the hard one, and the hard one too
 * when that is not enough and we may (root). */
static int raise_fd_limit(size_t n, char *err, size_t errlen) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    rlim_t need = (rlim_t)n + FD_RESERVE;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        snprintf(err, errlen,
                 "--count %zu needs about %llu file descriptors but the limit is %llu (hard "
                 "%llu): raise it (ulimit -n, or run as root) or use fewer houses per process",
                 n, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max);
        return -1;
    }
    return 0;
}

/* --- Redis: registration and secrets ------------------------------------------------------ */

static redisContext *redis_connect(const char *url, char *err, size_t errlen) {
    gp_rurl u;
    int auth_failed;
    if (gp_rurl_parse(url, &u, err, errlen) != 0 ||
        gp_rurl_credentials(&u, G.cfg.redis_user, G.cfg.redis_password_file, err, errlen) != 0 ||
        (u.tls && gp_tlsrelay_config(G.cfg.redis_ca_file, NULL, NULL, err, errlen) != 0)) {
        gp_rurl_wipe(&u);
        return NULL;
    }
    redisContext *rc = br_rc_dial(&u, u.host, u.port, 5000, err, errlen, &auth_failed);
    gp_rurl_wipe(&u);
    if (rc)
        redisSetTimeout(rc, (struct timeval){30, 0});
    return rc;
}

/* Reads n pipelined replies; the first error is reported. */
static int redis_collect(redisContext *rc, size_t n, const char *what, char *err, size_t errlen) {
    int rcode = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
            snprintf(err, errlen, "redis: %s: %s", what, rc->errstr[0] ? rc->errstr : "lost");
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && rcode == 0) {
            snprintf(err, errlen, "redis: %s: %s", what, r->str);
            rcode = -1;
        }
        freeReplyObject(r);
    }
    return rcode;
}

/* Exactly what `ghostport house add` stores: HSET <p>:{id}:house secret .. labels {} created
 * <ms>, SADD <p>:houses id. Pipelined in batches. */
static int register_houses(redisContext *rc, char *err, size_t errlen) {
    char created[24], key[GP_MAX_HOUSE_ID + 64], sealed[GP_SEALED_MAX];
    char *ids[REDIS_BATCH];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(created, sizeof created, "%llu",
             (unsigned long long)tv.tv_sec * 1000ull + (unsigned long long)tv.tv_usec / 1000u);
    char skey[128];
    snprintf(skey, sizeof skey, "%s:houses", G.cfg.prefix);
    for (size_t base = 0; base < G.n; base += REDIS_BATCH) {
        size_t m = G.n - base < REDIS_BATCH ? G.n - base : REDIS_BATCH;
        const char *sargv[REDIS_BATCH + 2];
        size_t slen[REDIS_BATCH + 2];
        sargv[0] = "SADD";
        sargv[1] = skey;
        slen[0] = 4;
        slen[1] = strlen(skey);
        int rcode = 0;
        for (size_t k = 0; k < m; k++) {
            lh_house *h = &G.houses[base + k];
            randombytes_buf(h->h.secret, sizeof h->h.secret);
            ids[k] = strdup(house_id(h));
            if (!ids[k]) {
                for (size_t j = 0; j < k; j++)
                    free(ids[j]);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            if (gp_secret_seal(G.has_master ? G.master_key : NULL, gp_str_c(ids[k]), h->h.secret,
                               sealed) != 0) {
                rcode = -1;
                snprintf(err, errlen, "sealing a secret failed");
            }
            snprintf(key, sizeof key, "%s:{%s}:house", G.cfg.prefix, ids[k]);
            const char *argv[] = {"HSET",   key,  "secret",  sealed,
                                  "labels", "{}", "created", created};
            redisAppendCommandArgv(rc, 8, argv, NULL);
            sargv[2 + k] = ids[k];
            slen[2 + k] = strlen(ids[k]);
        }
        redisAppendCommandArgv(rc, (int)m + 2, sargv, slen);
        sodium_memzero(sealed, sizeof sealed);
        if (rcode == 0)
            rcode = redis_collect(rc, m + 1, "registering houses", err, errlen);
        for (size_t k = 0; k < m; k++)
            free(ids[k]);
        if (rcode != 0)
            return -1;
    }
    return 0;
}

/* Without --register: the houses exist already (an earlier --register run); read their
 * secrets. */
static int load_secrets(redisContext *rc, char *err, size_t errlen) {
    char key[GP_MAX_HOUSE_ID + 64];
    for (size_t base = 0; base < G.n; base += REDIS_BATCH) {
        size_t m = G.n - base < REDIS_BATCH ? G.n - base : REDIS_BATCH;
        for (size_t k = 0; k < m; k++) {
            snprintf(key, sizeof key, "%s:{%s}:house", G.cfg.prefix, house_id(&G.houses[base + k]));
            const char *argv[] = {"HGET", key, "secret"};
            redisAppendCommandArgv(rc, 3, argv, NULL);
        }
        int rcode = 0;
        for (size_t k = 0; k < m; k++) {
            lh_house *h = &G.houses[base + k];
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
                snprintf(err, errlen, "redis: reading secrets: %s",
                         rc->errstr[0] ? rc->errstr : "lost");
                return -1;
            }
            if (rcode == 0 && r->type != REDIS_REPLY_STRING) {
                snprintf(err, errlen, "house %s is not registered under prefix %s (use --register)",
                         house_id(h), G.cfg.prefix);
                rcode = -1;
            } else if (rcode == 0 &&
                       gp_secret_open(G.has_master ? G.master_key : NULL, gp_str_c(house_id(h)),
                                      (gp_str){(const uint8_t *)r->str, r->len},
                                      h->h.secret) != 0) {
                snprintf(err, errlen, "house %s: its stored secret cannot be read%s", house_id(h),
                         G.has_master ? " with this master key" : " (sealed? give --master-key)");
                rcode = -1;
            }
            freeReplyObject(r);
        }
        if (rcode != 0)
            return -1;
    }
    return 0;
}

static int setup_secrets(char *err, size_t errlen) {
    redisContext *rc = redis_connect(G.cfg.redis, err, errlen);
    if (!rc)
        return -1;
    uint64_t t0 = now_ms();
    int rcode = G.cfg.reg ? register_houses(rc, err, errlen) : load_secrets(rc, err, errlen);
    redisFree(rc);
    if (rcode == 0 && G.cfg.reg)
        emit("event=registered n=%zu ms=%llu", G.n, (unsigned long long)(now_ms() - t0));
    return rcode;
}

/* --- main --------------------------------------------------------------------------------- */

/* House i as ghostport-house's defaults make it, with this tool's executor and hooks. */
static int house_init(lh_house *lh, char *err, size_t errlen) {
    hs_house *h = &lh->h;
    hs_config *c = &h->cfg;
    h->hooks = &hooks;
    h->first_bridge = G.cfg.spread ? lh->idx : 0;
    h->no_replay = G.cfg.no_replay;
    h->exec = &lt_inproc_exec;
    h->exec_ud = lh;
    c->id = strdup(house_id(lh));
    c->bridges = G.urls;
    c->nbridges = G.cfg.nbridges;
    if (!c->id) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (lt_house_open(h, G.loop, G.ctx, G.zs, err, errlen) != 0)
        return -1;
    c->ca_file = G.cfg.ca_file;
    c->insecure = G.cfg.insecure;
    hs_cache_set_keep(h->cache, G.cfg.remember_ms ? (uint64_t)G.cfg.remember_ms : UINT64_MAX);
    h->tunnel = hs_tunnel_new(h);
    if (!h->tunnel) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int start(char *err, size_t errlen) {
    G.ctx = hs_ws_shared_new(G.cfg.ca_file);
    G.zs = hs_zstate_new();
    G.urls = calloc(G.cfg.nbridges, sizeof *G.urls);
    if (!G.ctx || !G.zs || !G.urls) {
        snprintf(err, errlen, "%s",
                 G.ctx ? "out of memory" : "the TLS client settings failed (see the log)");
        return -1;
    }
    for (size_t i = 0; i < G.cfg.nbridges; i++)
        G.urls[i] = G.cfg.bridges[i].url;
    for (size_t i = 0; i < G.n; i++)
        if (house_init(&G.houses[i], err, errlen) != 0)
            return -1;
    G.credit = 1.0;
    G.credit_ms = now_ms();
    /* Every house's first dial waits at the gate; the pacer lets them through in order. */
    for (size_t i = 0; i < G.n; i++)
        if (hs_tunnel_start(G.houses[i].h.tunnel) != 0) {
            snprintf(err, errlen, "house %s could not start", G.houses[i].h.cfg.id);
            return -1;
        }
    uv_timer_start(&G.pace, on_pace, 0, PACE_MS);
    uv_timer_start(&G.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    if (G.cfg.stats_interval > 0)
        uv_timer_start(&G.stats, on_stats, (uint64_t)G.cfg.stats_interval,
                       (uint64_t)G.cfg.stats_interval);
    return 0;
}

static void free_all(void) {
    for (size_t i = 0; G.houses && i < G.n; i++)
        lt_house_close(&G.houses[i].h);
    lt_inproc_free();
    for (size_t i = 0; G.eb && i < G.neb; i++)
        for (lh_exec *e = G.eb[i], *n; e; e = n) {
            n = e->hnext;
            free(e);
        }
    free(G.eb);
    free(G.houses);
    free(G.urls);
    hs_zstate_free(G.zs);
    hs_ws_shared_free(G.ctx);
    gp_conf_clear(opts, &G.cfg);
    free_bridges(&G.cfg);
    sodium_memzero(G.master_key, sizeof G.master_key);
}

int main(int argc, char **argv) {
    char err[512] = "";
    if (gp_auth_init() != 0) {
        fprintf(stderr, "gp-loadhouses: libsodium initialisation failed\n");
        return 1;
    }
    int rc = tool_configure("gp-loadhouses", argc, argv, load_config, &G.cfg.help, usage);
    if (rc >= 0)
        goto out;
    rc = 2;
    G.n = (size_t)G.cfg.count;
    if (raise_fd_limit(G.n, err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        goto out;
    }
    rc = 1;
    G.start_ms = now_ms();
    G.houses = calloc(G.n, sizeof *G.houses);
    G.neb = 1024;
    G.eb = calloc(G.neb, sizeof *G.eb);
    if (!G.houses || !G.eb) {
        fprintf(stderr, "gp-loadhouses: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < G.n; i++)
        G.houses[i].idx = (uint32_t)i;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not a death */
    if (setup_secrets(err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        goto out;
    }
    /* The houses log through house_log: warn and error, or everything at debug. */
    hs_log_set_level(G.log_level >= GP_LOG_DEBUG ? HS_LOG_DEBUG : HS_LOG_WARN);
    hs_log_set_sink(house_log);
    uv_loop_t loop;
    uv_loop_init(&loop);
    G.loop = &loop;
    if (lt_inproc_init(&loop, (uint64_t)G.cfg.response_bytes, (uint64_t)G.cfg.delay_ms,
                       &exec_hooks) != 0) {
        fprintf(stderr, "gp-loadhouses: out of memory\n");
        goto out;
    }
    uv_timer_init(&loop, &G.pace);
    uv_timer_init(&loop, &G.sweep);
    uv_timer_init(&loop, &G.stats);
    gp_uv_signals_start(&G.signals, &loop, on_signal, NULL, NULL);
    G.handles_open = 1;
    G.start_ms = now_ms();
    if (start(err, sizeof err) != 0) {
        fprintf(stderr, "gp-loadhouses: %s\n", err);
        begin_stop("start_failed");
        rc = 1;
    } else {
        rc = 0;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < G.n; i++)
        if (G.houses[i].h.tunnel)
            hs_tunnel_final(G.houses[i].h.tunnel);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        /* lws 4.1 can lose a poll handle of a dial that failed mid-burst; say so, close it
         * and let the loop go (see __lsan_default_suppressions). */
        uv_walk(&loop, close_stray_handle, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            lh_log(GP_LOG_WARN, "loop_not_empty", NULL);
    }
out:
    free_all();
    return rc;
}
