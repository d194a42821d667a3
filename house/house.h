/* house.h — shared declarations of ghostport-house, the agent that dials a bridge and runs
 * requests against its own allowlisted upstreams. A house is an hs_house (below) handed to
 * every module; main.c owns the one of the process, its config, signals and the libuv loop.
 * tunnel.c is the connection to a bridge (handshake, streams, send scheduling, replay,
 * reconnects) over a transport of transport.h (tr_ws.c: ws/wss; tr_rudp.c: rudp);
 * upstream.c the libcurl multi handle driven by the same loop; cache.c and journal_file.c
 * the replay cache and its file; admin.c the admin port and metrics. The pure protocol
 * pieces and the runtime shared with the bridge (the one-line key=value event log,
 * proto/logger.c; the admin port's server; buffers; key files) come from proto/. */
#ifndef HOUSE_H
#define HOUSE_H

#include "auth.h"
#include "frame.h"
#include "ippkt.h"
#include "logger.h"

#include <stdint.h>
#include <string.h>
#include <uv.h>

/* --- config (main.c) ------------------------------------------------------------------- */

typedef struct hs_service {
    char *name; /* "" for none: the default upstream is kept in hs_config.upstream */
    char *url;  /* base URL without a trailing '/' */
} hs_service;

/* A TCP service (--tcp-service NAME=HOST:PORT): what a stream of proto/STREAMS.md may reach. */
typedef struct hs_tcp_service {
    char *name;
    char *host; /* an IP literal or a name (resolved at each connect) */
    char *port; /* decimal, 1-65535 */
    int tls;    /* an https:// upstream's (streams_svc.c): TLS over the connection, to host */
} hs_tcp_service;

/* Frees the strings of v[0..n) and the array v (NULL ok): the config's --tcp-service list
 * and the streams module's HTTP upstreams, both arrays of these (streams.c). */
void hs_tcp_services_free(hs_tcp_service *v, size_t n);

typedef struct hs_config {
    char *config;
    char *id;
    char *secret;
    char *secret_file;
    char *upstream;
    long long max_body;
    long long max_response;
    long long max_conns;
    char *ca_file;
    int insecure;
    /* https:// upstreams (upstream.c's requests, streams_svc.c's connections): verified against
     * this CA file (PEM; NULL or "": the system's CAs), or not at all */
    char *upstream_ca_file;
    int upstream_insecure;
    char *log_level;
    char *log_format; /* kv | json (proto/logger.h) */
    char *state_dir;  /* replay journal; NULL or "": none */
    char *bridge_key; /* rudp: the bridges' public key (hex) */
    long long rudp_jitter_ms, rudp_probe_ms;
    long long reconnect_max_ms; /* cap of the reconnect backoff */
    int state_sync;
    int help;
    int check_config;       /* --check-config: validate, say so, exit */
    long long admin_listen; /* -1: off */
    char *admin_bind;
    char *admin_host; /* names the admin port answers besides IP literals and localhost */
    /* Repeatable options. `layer` says which source (file, env, flags) is being applied, so
     * that a later source replaces a list instead of appending to it. */
    int layer;
    int bridges_layer, services_layer;
    char **bridges;
    size_t nbridges;
    hs_service *services;
    size_t nservices;
    /* TCP streams (streams.c) */
    int tcp_services_layer;
    hs_tcp_service *tcp_services;
    size_t ntcp_services;
    long long max_streams;  /* --max-streams */
    long long stream_grace; /* --stream-grace, seconds */
    /* the L3 tunnel (l3.c) */
    char *tun;
    int tun_rules_layer, tun_routes_layer;
    gp_tun_rule *tun_rules;
    size_t ntun_rules;
    gp_cidr *tun_routes;
    size_t ntun_routes;
    int tun_masquerade;
    long long tun_mtu;
} hs_config;

typedef struct hs_house hs_house;
typedef struct hs_tunnel hs_tunnel;
typedef struct hs_upstream hs_upstream;
typedef struct hs_exec hs_exec;
typedef struct hs_cache hs_cache;
typedef struct hs_journal hs_journal;
typedef struct hs_zstate hs_zstate;
struct gp_admin;

/* The metrics of bridge/admin/ADMIN.md for the house (gp_house_*), admin.c. */
struct gp_metric;
typedef struct hs_metrics {
    struct gp_metrics *reg;
    struct gp_metric *connected, *connects, *requests, *duration, *upstream_errors, *bytes,
        *cache_entries, *cache_bytes, *rtt, *rudp_loss, *rudp_retx, *rudp_fec;
    /* TCP streams (streams.c): open now, opens by outcome, bytes by direction, resets by
     * reason */
    struct gp_metric *streams_open, *streams_opened, *stream_bytes, *stream_resets;
    /* The L3 tunnel (l3.c): granted now, packets and bytes by direction, drops by reason */
    struct gp_metric *tun_up, *tun_packets, *tun_bytes, *tun_drops;
} hs_metrics;

/* What a house's tunnel tells whoever runs it (hs_house.hooks; optional, NULL for none): the
 * moments of its connection, for counters beyond the log (tests/load), and a dial gate so
 * that the houses of a process can share one dial pacer. */
enum hs_event {
    HS_EV_DIALING,      /* a dial to `bridge` is under way (connecting, handshake next) */
    HS_EV_LIVE,         /* WELCOME received: connected to `bridge` */
    HS_EV_DISCONNECTED, /* a live connection ended (`reason`) */
    HS_EV_DIAL_FAILED,  /* a dial ended before WELCOME (`reason`) */
    HS_EV_FENCED,       /* GOAWAY FENCED: another connection with this id won */
    HS_EV_WAITING,      /* the next dial comes after a backoff of `ms` (or through the gate) */
    /* A request's moments (`reason`: its frame id): */
    HS_EV_REQUEST,   /* a REQ_HEAD arrived (a delivery, redeliveries included) */
    HS_EV_REPLAYED,  /* it had run (or is running): answered from the replay cache (or joined) */
    HS_EV_ANSWERED,  /* its response is written completely */
    HS_EV_CANCELLED, /* a CANCEL dropped its stream */
};

typedef struct hs_hooks {
    /* Optional. Called from the loop; must not stop or free the house. */
    void (*on_event)(void *ud, hs_house *h, enum hs_event ev, const char *bridge,
                     const char *reason, uint64_t ms);
    /* Optional dial gate: when set, every dial (the first and each reconnect, once its backoff
     * is over) waits for the owner, who calls hs_tunnel_dial(h->tunnel) when the house may
     * dial (not after hs_tunnel_stop). */
    void (*dial_gate)(void *ud, hs_house *h);
} hs_hooks;

/* One house: what every module of it is given (constructor style: hs_tunnel_new(h), ...).
 * Nothing below main.c keeps a house of its own, so one process can run many of them on one
 * loop (tests/load). Modules reach each other only through these pointers. */
struct hs_house {
    uv_loop_t *loop;
    hs_config cfg;
    uint8_t secret[GP_SECRET_LEN];
    uint8_t bridge_key[32]; /* rudp: the bridges' static public key */
    int stopping;
    hs_metrics m; /* reg NULL: no metrics are kept (every gp_metric_* call is then a no-op) */
    struct gp_admin *admin;
    hs_cache *cache;     /* replay cache (cache.c) */
    hs_journal *journal; /* its mirror on disk (journal_file.c) */
    /* What runs the requests: the tunnel calls exec only (ghostport-house: hs_upstream_exec
     * with its upstream as exec_ud; a load tool may answer in-process instead). */
    const hs_exec *exec;
    void *exec_ud;
    hs_upstream *upstream; /* NULL when exec is not upstream.c's */
    hs_tunnel *tunnel;
    /* TLS client settings shared by the houses of a process (hs_ws_shared_new; its owner frees
     * them after the houses); NULL: the house's ws transport makes its own. */
    struct hs_ws_shared *ws_shared;
    /* Compression state shared by the houses of a process (hs_zstate_new; its owner frees it
     * after them); NULL: the tunnel makes its own with its first compressed body. */
    hs_zstate *zs;
    const hs_hooks *hooks; /* NULL: none */
    void *hooks_ud;
    size_t first_bridge; /* the index of cfg.bridges the first dial goes to (mod nbridges) */
    /* Every delivery runs, even of a frame id that ran before: no replay cache lookup, no
     * joining of a running call, nothing recorded. Breaks at-most-once: for load tests that
     * show what the replay cache prevents. */
    int no_replay;
};

static inline uint64_t hs_now_ms(void) { /* monotonic */
    return uv_hrtime() / 1000000u;
}

/* --- log: the shared logger (proto/logger.h) under the house's names --------------------- */

enum {
    HS_LOG_ERROR = GP_LOG_ERROR,
    HS_LOG_WARN = GP_LOG_WARN,
    HS_LOG_INFO = GP_LOG_INFO,
    HS_LOG_DEBUG = GP_LOG_DEBUG
};

/* Parses "error|warn|info|debug". Returns the level or -1. */
#define hs_log_parse_level gp_log_level_parse
#define hs_log_set_level gp_log_set_level
#define hs_log_enabled gp_log_enabled
/* Where the lines go instead of stderr (NULL: stderr again): the event and its key=value
 * pairs, for a process that runs many houses and rate-limits or counts their lines. Called
 * only for enabled levels. */
typedef gp_log_sink hs_log_sink;
#define hs_log_set_sink gp_log_set_sink
/* One line to stderr: "ts=... level=... event=<event> <fmt...>". */
#define hs_log gp_log
/* A log-safe rendering of p[0..len): bare if it is plain, else double-quoted with escapes.
 * Returns one of a few rotating static buffers: use within one hs_log call. */
#define hs_q gp_qv
static inline const char *hs_qs(const char *s) { /* NULL -> "" */
    return gp_qv(s ? s : "", s ? strlen(s) : 0);
}

/* --- streams: one request/response exchange (tunnel.c) ---------------------------------- */

typedef struct hs_stream hs_stream;
typedef struct hs_xfer hs_xfer;

/* What the upstream side needs to run a request. Every pointer is owned by the stream and
 * lives as long as it. */
typedef struct hs_request {
    char *frame_id, *method, *path, *service;
    const char *base_url; /* borrowed from the config */
    gp_header *headers;   /* copies, NUL-terminated in memory */
    size_t nheaders;
    uint32_t timeout_ms;
    uint8_t *body;
    size_t body_len;
} hs_request;

const hs_request *hs_stream_request(const hs_stream *s);

/* Response side, called by upstream.c. Frames are encoded and queued at once; they go out
 * round-robin with other streams. `body_len` is GP_LEN_UNKNOWN when unknown. */
void hs_stream_head(hs_stream *s, uint16_t status, const gp_header *h, size_t nh, const char *error,
                    const char *message, uint64_t body_len, int fin);
/* len <= GP_BODY_CHUNK. content_type picks whether zstd is worth trying. */
void hs_stream_body(hs_stream *s, gp_str content_type, const uint8_t *p, size_t len, int fin);
/* The transfer is over: upstream.c forgets the stream, the tunnel frees it once its queued
 * frames are written. `outcome` names the result for the request log line. */
void hs_stream_upstream_done(hs_stream *s, const char *outcome);

/* 1 while queued outgoing bytes are above the high-water mark: upstream.c pauses reads. */
int hs_tunnel_congested(const hs_tunnel *t);

/* --- tunnel (tunnel.c; its transports: transport.h) ------------------------------------ */

hs_tunnel *hs_tunnel_new(hs_house *h);  /* NULL: out of memory */
int hs_tunnel_start(hs_tunnel *t);      /* creates the transports and dials; 0 or -1 */
int hs_tunnel_live(const hs_tunnel *t); /* 1 while connected to a bridge (WELCOME received) */
/* The dial gate (hs_hooks.dial_gate) lets the house dial now; nothing when it is not waiting
 * at the gate (already dialing, connected, or stopping). */
void hs_tunnel_dial(hs_tunnel *t);
/* The connection's round trip (the transport's own estimate when it has one, else the last
 * PING's; 0: none, not connected), loss (0..1) and the transports' retransmits and FEC
 * repairs since start. */
void hs_tunnel_link(const hs_tunnel *t, double *rtt_ms, double *loss, uint64_t *retransmits,
                    uint64_t *fec_repaired);
/* The L3 tunnel (l3.h), NULL without --tun. */
struct hs_l3 *hs_tunnel_l3(const hs_tunnel *t);
void hs_tunnel_stop(hs_tunnel *t);  /* closes the connection, stops timers and transports */
void hs_tunnel_final(hs_tunnel *t); /* after the loop has run dry: what is left goes */
void hs_tunnel_free(hs_tunnel *t);  /* after the loop has run dry again; NULL ok */

/* --- compression state (zstate.c) ------------------------------------------------------- */

hs_zstate *hs_zstate_new(void);    /* for hs_house.zs; NULL: out of memory */
void hs_zstate_free(hs_zstate *z); /* NULL ok */
/* shared, or else *own (made when NULL), with its zstd context and, with compress, its output
 * buffer; NULL when out of memory. */
hs_zstate *hs_zstate_ready(hs_zstate *shared, hs_zstate **own, int compress);
struct gp_zctx *hs_zstate_zctx(const hs_zstate *z);
uint8_t *hs_zstate_buf(const hs_zstate *z, size_t *cap); /* the output buffer and its size */

/* TLS client settings (the CA file's certificates, or the system's) for hs_house.ws_shared
 * (tr_ws.c); NULL (logged) on failure. A ws connection holds no receive buffer of its own,
 * so many mostly idle houses in one process cost little. */
struct hs_ws_shared;
struct hs_ws_shared *hs_ws_shared_new(const char *ca_file);
void hs_ws_shared_free(struct hs_ws_shared *s); /* NULL ok */

/* --- admin port and metrics (admin.c) --------------------------------------------------- */

int hs_admin_init(hs_house *h); /* the metrics; 0 or -1 (out of memory) */
/* Listens on --admin-listen unless -1; 0 or -1. The server's own log lines go to log (the
 * daemon's: they name the house). */
int hs_admin_start(hs_house *h, void (*log)(int level, const char *event, const char *kv));
void hs_admin_stop(hs_house *h);  /* closes the port (from the loop) */
void hs_admin_final(hs_house *h); /* after the loop: frees the metrics */
/* A request's log line was written: counts it (outcome's first word), its duration since
 * start_ns (uv_hrtime), body bytes from the bridge and to it. */
void hs_metrics_request(hs_house *h, const char *outcome, uint64_t start_ns, size_t from_bridge,
                        uint64_t to_bridge);

/* --- running requests ------------------------------------------------------------------ */

/* The executor interface; every function gets exec_ud. check: as soon as a request's head is
 * known, may it run (see hs_upstream_check)? start: run it, answering through
 * hs_stream_head/body and finally hs_stream_upstream_done; NULL after answering an error
 * itself. abort: stop a running call without calling back (CANCEL, disconnect). resume:
 * queued bytes went below the low-water mark (hs_tunnel_congested went 0). */
struct hs_exec {
    int (*check)(void *ud, hs_request *r, uint16_t *status, const char **error,
                 const char **message);
    hs_xfer *(*start)(void *ud, hs_stream *s);
    void (*abort)(void *ud, hs_xfer *x);
    void (*resume)(void *ud);
};

/* --- upstream (upstream.c) -------------------------------------------------------------- */

extern const hs_exec hs_upstream_exec; /* upstream.c as the executor; exec_ud: hs_upstream */

hs_upstream *hs_upstream_new(hs_house *h); /* NULL: out of memory */
void hs_upstream_stop(hs_upstream *u); /* aborts transfers and closes handles; the loop ends it */
void hs_upstream_free(hs_upstream *u); /* after the loop has run dry */

/* Checks a request as soon as its head is known: method and path usable (400 bad_request),
 * service configured (403 forbidden_upstream). Sets r->base_url and returns 0, or fills
 * status/error/message (static or long-lived strings) and returns -1. */
int hs_upstream_check(hs_upstream *u, hs_request *r, uint16_t *status, const char **error,
                      const char **message);
/* Starts the request of `s` (hs_stream_request). On success returns the transfer, which
 * later calls hs_stream_head/body and finally hs_stream_upstream_done. On failure returns
 * NULL after answering the stream with an error head itself. */
hs_xfer *hs_upstream_start(hs_upstream *u, hs_stream *s);
/* Aborts a transfer without calling back into the stream (CANCEL, disconnect). */
void hs_upstream_abort(hs_xfer *x);
/* Queued bytes went below the low-water mark: unpause transfers (from a loop callback). */
void hs_upstream_resume(hs_upstream *u);

/* --- replay cache (cache.c) ------------------------------------------------------------ */

typedef struct hs_centry hs_centry;

hs_cache *hs_cache_new(void);    /* one house's cache; NULL: out of memory */
void hs_cache_free(hs_cache *c); /* NULL ok */
/* Every entry committed from now on is kept keep_ms (UINT64_MAX: for ever), whatever its
 * request's deadline; 0: as asked (hs_cache_retention). A knob for load tests that trade the
 * retention promise for memory, or keep everything. */
void hs_cache_set_keep(hs_cache *c, uint64_t keep_ms);

/* Starts recording a response (copies everything). NULL when not cacheable or out of memory.
 * Status 0 with no headers makes a tombstone: "this request ran, its response is not kept". */
hs_centry *hs_cache_begin(hs_cache *c, const char *frame_id, const char *method, const char *path,
                          uint16_t status, const gp_header *h, size_t nh);
/* Appends body bytes; -1 when the entry would exceed its limit (discard it then). */
int hs_cache_append(hs_centry *e, const uint8_t *p, size_t len);
/* Hands e over to the cache, to be kept at least until deadline_ms (the request's deadline,
 * on the same clock as now_ms) and at least 10 minutes: until hs_cache_retention(). 0, or -1
 * when the cache could not take it (out of memory: e is freed, counted as evicted early). */
int hs_cache_commit(hs_cache *c, hs_centry *e, uint64_t now_ms, uint64_t deadline_ms);
/* The keep-until hs_cache_commit gives: the later of now_ms + 10 min and deadline_ms + 60 s. */
uint64_t hs_cache_retention(uint64_t now_ms, uint64_t deadline_ms);
/* hs_cache_commit with an absolute keep-until (on now_ms's clock): a journal's entries. */
int hs_cache_commit_until(hs_cache *c, hs_centry *e, uint64_t now_ms, uint64_t keep_until_ms);
void hs_cache_discard(hs_centry *e); /* NULL ok; an entry not committed */
/* The remembered response for this frame id (same method and path), or NULL. Borrowed until
 * the next cache call. */
const hs_centry *hs_cache_find(hs_cache *c, const char *frame_id, const char *method,
                               const char *path, uint64_t now_ms);
uint16_t hs_cache_status(const hs_centry *e);
const gp_header *hs_cache_headers(const hs_centry *e, size_t *n);
gp_str hs_cache_body(const hs_centry *e);
/* The identity and keep-until of an entry (committed or not); borrowed from it. */
const char *hs_cache_frame_id(const hs_centry *e);
const char *hs_cache_method(const hs_centry *e);
const char *hs_cache_path(const hs_centry *e);
uint64_t hs_cache_kept_until(const hs_centry *e);
/* Calls fn for every entry, tombstones first, each kind oldest first. fn must not call the
 * cache's other functions (they may expire entries). Expired entries may still be seen. */
void hs_cache_each(hs_cache *c, void (*fn)(void *ud, const hs_centry *e), void *ud);
size_t hs_cache_budget(hs_cache *c); /* bytes all entries may take together */
void hs_cache_clear(hs_cache *c);
/* Entries, accounted bytes, and entries dropped before their time for want of room. */
void hs_cache_stats(hs_cache *c, size_t *entries, size_t *bytes, uint64_t *evicted_early);

/* --- replay journal (journal_file.c; the pure codec is journal.h) ----------------------- */

/* With --state-dir the replay cache is mirrored to DIR/<id>.journal so that at-most-once
 * holds across restarts of the house. Without it every function below does nothing but what
 * it says about the cache. */

/* Opens (creates: DIR mode 0700, the file 0600) and locks DIR/<id>.journal, rebuilds the
 * cache from it and cuts a torn or corrupt tail. dir NULL or "" disables the journal. sync:
 * fdatasync each START before its call runs (--state-sync). Returns the journal of cache c,
 * or NULL with a message in err (unwritable directory, another house holding the lock, out
 * of memory): the house must not start then. Logs event=journal_loaded (and journal_truncated). */
hs_journal *hs_journal_open(hs_cache *c, const char *dir, const char *id, int sync, char *err,
                            size_t errlen);
void hs_journal_close(hs_journal *j); /* at exit; releases the lock; NULL ok */
/* The call of r is about to run on the upstream (started at start_ms, monotonic): a START
 * record. Returns 0, or -1 when it could not be written: do not run the call then (a restart
 * could not know that it ran). */
int hs_journal_start(hs_journal *j, const hs_request *r, uint64_t start_ms);
/* hs_cache_commit, after writing e's response (or its tombstone) as a DONE record. */
void hs_journal_commit(hs_journal *j, hs_centry *e, uint64_t now_ms, uint64_t deadline_ms);
/* The call of r ended with nothing to remember (FORGET): as in memory, a delivery of it
 * again runs it. */
void hs_journal_forget(hs_journal *j, const hs_request *r);

#endif
