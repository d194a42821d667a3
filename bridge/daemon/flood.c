/* flood.c — the house listener under a connection flood (see flood.h). I/O side.
 *
 * Every connection lws accepts is "pre-auth" until its house proves who it is. A flood of
 * idle connections costs a descriptor each and, left alone, fills the process's table: then
 * accept(2) fails, the listening socket stays readable and lws spins on it. So:
 *  - pre-auth connections are capped per source address and in total; a new one that would
 *    pass a cap sheds the OLDEST pre-auth connection (of its address, or of all) instead of
 *    being refused: a house that arrives while a flood sits idle still gets in, and a flood
 *    cannot keep its neighbours behind one address out;
 *  - each has a deadline (--auth-timeout) from its accept, whatever stage it is in;
 *  - lws's own table is sized below the process limit (tunnel.c), so its accept modulation
 *    stops accepting before the process runs out; and if accept still fails with EMFILE
 *    (descriptors used elsewhere), a spare descriptor is given up to accept and close what
 *    waits in the listen queue, and the listener is paused for a backoff.
 * Records are found by wsi (a hash) and kept in accept order, globally and per address. */
#include "flood.h"
#include "../admin/stats.h"
#include "../log.h"
#include "list.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUCKETS 4096
#define UPGRADED_GRACE_MS 5000 /* a WebSocket's deadline is br_conn's; this is a backstop */
#define MAX_LISTENERS 4
#define PAUSE_MIN_MS 50
#define PAUSE_MAX_MS 2000
#define DRAIN_MAX 1024 /* connections accepted and closed per EMFILE */

typedef struct pa_addr pa_addr;
typedef struct pa_rec {
    struct pa_rec *prev, *next;   /* every pre-auth connection, oldest first */
    struct pa_rec *aprev, *anext; /* those of the same address, oldest first */
    struct pa_rec *hnext;         /* wsi hash chain */
    pa_addr *a;
    struct lws *wsi;
    uint64_t t; /* accepted, loop ms */
    int upgraded;
} pa_rec;

struct pa_addr {
    pa_addr *hnext;
    char ip[INET6_ADDRSTRLEN + 4];
    unsigned n;
    pa_rec *head, *tail;
};

struct br_flood {
    const br_env *env;
    struct lws_context *const *lws; /* tunnel.c's, NULL until it is made */
    const int *listen_port;
    unsigned cap_total, cap_addr;
    uint64_t timeout_ms;
    pa_rec *head, *tail;
    unsigned n;
    pa_rec *by_wsi[BUCKETS];
    pa_addr *by_addr[BUCKETS];
    char
        pending[INET6_ADDRSTRLEN + 4]; /* address (IPv6: its /64) of the connection being adopted */
    int has_pending;
    /* EMFILE */
    int spare;
    uv_poll_t *lhandles[MAX_LISTENERS];
    uv_poll_cb lcbs[MAX_LISTENERS];
    int nlisteners, paused;
    unsigned pause_ms;
    uint64_t resumed_ms;
    uv_timer_t pause_timer;
    int timer_init;
};

static unsigned hash_ptr(const void *p) {
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ull;
    return (unsigned)(v >> 40) % BUCKETS;
}

static unsigned hash_str(const char *s) {
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h % BUCKETS;
}

static void gauge(br_flood *fl) {
    gp_metric_set(fl->env->metrics->preauth, NULL, fl->n);
}

br_flood *br_flood_new(const br_env *env) {
    br_flood *fl = calloc(1, sizeof *fl);
    if (!fl)
        return NULL;
    fl->env = env;
    fl->spare = -1;
    return fl;
}

void br_flood_init(br_flood *fl, struct lws_context *const *lws, const int *listen_port,
                   unsigned lws_fds) {
    const br_env *env = fl->env;
    fl->lws = lws;
    fl->listen_port = listen_port;
    const br_config *cfg = env->cfg;
    unsigned total = (unsigned)cfg->preauth_max, per = (unsigned)cfg->preauth_per_addr;
    /* At most half of lws's table: the other half stays for houses that authenticated. */
    if (total > lws_fds / 2)
        total = lws_fds / 2 ? lws_fds / 2 : 1;
    if (per > total)
        per = total;
    fl->cap_total = total;
    fl->cap_addr = per;
    fl->timeout_ms = (uint64_t)cfg->auth_timeout * 1000;
    fl->pause_ms = PAUSE_MIN_MS;
    if (fl->spare < 0)
        fl->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!fl->timer_init) {
        uv_timer_init(env->loop, &fl->pause_timer);
        fl->pause_timer.data = fl;
        fl->timer_init = 1;
    }
    gauge(fl);
}

unsigned br_flood_cap_total(const br_flood *fl) {
    return fl->cap_total;
}

unsigned br_flood_cap_addr(const br_flood *fl) {
    return fl->cap_addr;
}

unsigned br_flood_preauth(const br_flood *fl) {
    return fl->n;
}

/* --- records ------------------------------------------------------------------------------ */

static pa_addr *addr_get(br_flood *fl, const char *ip, int create) {
    unsigned h = hash_str(ip);
    for (pa_addr *a = fl->by_addr[h]; a; a = a->hnext)
        if (strcmp(a->ip, ip) == 0)
            return a;
    if (!create)
        return NULL;
    pa_addr *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    snprintf(a->ip, sizeof a->ip, "%s", ip);
    a->hnext = fl->by_addr[h];
    fl->by_addr[h] = a;
    return a;
}

static void addr_put(br_flood *fl, pa_addr *a) {
    if (a->n)
        return;
    GP_CHAIN_REMOVE(fl->by_addr[hash_str(a->ip)], a, hnext);
    free(a);
}

static pa_rec *rec_find(br_flood *fl, struct lws *wsi) {
    for (pa_rec *r = fl->by_wsi[hash_ptr(wsi)]; r; r = r->hnext)
        if (r->wsi == wsi)
            return r;
    return NULL;
}

/* Unlinks and frees r: it is no longer counted. */
static void rec_drop(br_flood *fl, pa_rec *r) {
    GP_CHAIN_REMOVE(fl->by_wsi[hash_ptr(r->wsi)], r, hnext);
    GP_LIST_UNLINK(fl->head, fl->tail, r, prev, next);
    pa_addr *a = r->a;
    GP_LIST_UNLINK(a->head, a->tail, r, aprev, anext);
    a->n--;
    fl->n--;
    addr_put(fl, a);
    free(r);
    gauge(fl);
}

/* Closes a pre-auth connection (lws closes it on its next turn) and stops counting it. */
/* Closes a pre-auth connection now (its descriptor is free for the next accept) and stops
 * counting it. Never called with that wsi on the stack: from the listener's accept, or the
 * tick. */
/* What a shed connection's opaque user data points at: its close is ours, not the peer's (a
 * house shed while its CHALLENGE is out did not give up on it: tunnel.c). */
static const char shed_mark;

int br_flood_was_shed(const struct lws *wsi) {
    return wsi && lws_get_opaque_user_data(wsi) == &shed_mark;
}

static void shed(br_flood *fl, pa_rec *r, const char *reason, uint64_t now) {
    struct lws *wsi = r->wsi;
    lws_set_opaque_user_data(wsi, (void *)&shed_mark);
    gp_metric_inc(fl->env->metrics->preauth_shed, reason);
    br_logr(BR_LOG_WARN, "preauth_shed", "addr=%s reason=%s age_ms=%llu preauth=%u", r->a->ip,
            reason, (unsigned long long)(now - r->t), fl->n - 1);
    rec_drop(fl, r); /* first: closing calls br_flood_destroyed */
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

static void peer_ip(const struct sockaddr *sa, char *out, size_t cap) {
    snprintf(out, cap, "?");
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        /* IPv4 peers on a dual-stack socket: count them under their IPv4 address */
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            inet_ntop(AF_INET, a6->s6_addr + 12, out, (socklen_t)cap);
        } else {
            /* One IPv6 host usually holds a whole /64: count per /64, or the per-address
             * cap would mean nothing there. */
            struct in6_addr net = *a6;
            memset(net.s6_addr + 8, 0, 8);
            char t[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &net, t, sizeof t);
            snprintf(out, cap, "%.*s/64", (int)(cap > 4 ? cap - 4 : 0), t);
        }
    }
}

void br_flood_accepted(br_flood *fl, const struct sockaddr *sa) {
    uint64_t now = br_env_now(fl->env);
    peer_ip(sa, fl->pending, sizeof fl->pending);
    fl->has_pending = 1;
    pa_addr *a = addr_get(fl, fl->pending, 0);
    if (a && a->n >= fl->cap_addr && a->head)
        shed(fl, a->head, "per_address", now);
    if (fl->n >= fl->cap_total && fl->head)
        shed(fl, fl->head, "total", now);
}

void br_flood_adopted(br_flood *fl, struct lws *wsi) {
    if (!fl->has_pending)
        return;
    fl->has_pending = 0;
    pa_rec *r = calloc(1, sizeof *r);
    pa_addr *a = r ? addr_get(fl, fl->pending, 1) : NULL;
    if (!a) {
        free(r); /* out of memory: uncounted, the handshake deadline still applies */
        return;
    }
    r->wsi = wsi;
    r->a = a;
    r->t = br_env_now(fl->env);
    unsigned h = hash_ptr(wsi);
    r->hnext = fl->by_wsi[h];
    fl->by_wsi[h] = r;
    GP_LIST_APPEND(fl->head, fl->tail, r, prev, next);
    GP_LIST_APPEND(a->head, a->tail, r, aprev, anext);
    a->n++;
    fl->n++;
    gauge(fl);
}

void br_flood_upgraded(br_flood *fl, struct lws *wsi) {
    pa_rec *r = rec_find(fl, wsi);
    if (r)
        r->upgraded = 1;
}

void br_flood_authed(br_flood *fl, struct lws *wsi) {
    pa_rec *r = rec_find(fl, wsi);
    if (r)
        rec_drop(fl, r);
}

void br_flood_destroyed(br_flood *fl, struct lws *wsi) {
    pa_rec *r = rec_find(fl, wsi);
    if (r)
        rec_drop(fl, r);
}

void br_flood_tick(br_flood *fl, uint64_t now) {
    for (pa_rec *r = fl->head, *n; r; r = n) {
        n = r->next;
        if (now - r->t < fl->timeout_ms)
            break; /* oldest first: the rest are younger */
        if (!r->upgraded || now - r->t >= fl->timeout_ms + UPGRADED_GRACE_MS)
            shed(fl, r, "deadline", now);
    }
}

/* --- EMFILE --------------------------------------------------------------------------------- */

static void find_listener(uv_handle_t *h, void *ud) {
    br_flood *fl = ud;
    uv_os_fd_t fd;
    int acc = 0;
    socklen_t len = sizeof acc;
    if (h->type != UV_POLL || fl->nlisteners >= MAX_LISTENERS || uv_fileno(h, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc)
        return;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (port != *fl->listen_port)
        return;
    fl->lhandles[fl->nlisteners] = (uv_poll_t *)h;
    fl->lcbs[fl->nlisteners++] = ((uv_poll_t *)h)->poll_cb;
}

/* Accepts and closes what waits on the listening sockets, with the spare descriptor's slot. */
static int drain(br_flood *fl) {
    int n = 0;
    if (fl->spare >= 0) {
        close(fl->spare);
        fl->spare = -1;
    }
    for (int i = 0; i < fl->nlisteners; i++) {
        uv_os_fd_t lfd;
        if (uv_fileno((uv_handle_t *)fl->lhandles[i], &lfd) != 0)
            continue;
        while (n < DRAIN_MAX) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0)
                break;
            close(fd);
            n++;
        }
    }
    fl->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return n;
}

static void on_resume(uv_timer_t *t) {
    br_flood *fl = t->data;
    fl->paused = 0;
    fl->resumed_ms = br_env_now(fl->env);
    for (int i = 0; i < fl->nlisteners; i++)
        if (fl->lcbs[i] && !uv_is_closing((uv_handle_t *)fl->lhandles[i]))
            uv_poll_start(fl->lhandles[i], UV_READABLE, fl->lcbs[i]);
}

void br_flood_emfile(br_flood *fl) {
    if (!fl->lws || !*fl->lws || !fl->timer_init)
        return;
    if (!fl->nlisteners)
        uv_walk(fl->env->loop, find_listener, fl);
    int dropped = drain(fl);
    if (fl->paused)
        return;
    uint64_t now = br_env_now(fl->env);
    /* Again soon after the last pause: back off further. */
    fl->pause_ms = now - fl->resumed_ms < 2 * (uint64_t)fl->pause_ms
                       ? (fl->pause_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : fl->pause_ms * 2)
                       : PAUSE_MIN_MS;
    fl->paused = 1;
    for (int i = 0; i < fl->nlisteners; i++)
        uv_poll_stop(fl->lhandles[i]);
    uv_timer_start(&fl->pause_timer, on_resume, fl->pause_ms, 0);
    gp_metric_inc(fl->env->metrics->accept_pauses, NULL);
    br_logr(BR_LOG_WARN, "accept_paused",
            "err=EMFILE pause_ms=%u dropped=%d preauth=%u hint=\"raise LimitNOFILE\"", fl->pause_ms,
            dropped, fl->n);
}

void br_flood_stop(br_flood *fl) {
    while (fl->head)
        rec_drop(fl, fl->head);
    if (fl->spare >= 0)
        close(fl->spare);
    fl->spare = -1;
    if (fl->timer_init) {
        uv_timer_stop(&fl->pause_timer);
        uv_close((uv_handle_t *)&fl->pause_timer, NULL);
        fl->timer_init = 0;
    }
    fl->nlisteners = 0;
}

void br_flood_free(br_flood *fl) {
    if (!fl)
        return;
    br_flood_stop(fl);
    free(fl);
}
