/* bridge.h — shared state of the ghostport-bridge daemon: configuration, house connections,
 * in-flight requests, and the functions the daemon's files call on each other. I/O side.
 *
 * Files: main.c (config, startup, periodic tick, shutdown), tunnel.c (libwebsockets, frame
 * I/O, handshake), house.c (owning a house in Redis: claim/release, fencing, reading its
 * stream, the keyspace doorbell), requests.c (glue of the request/reply core reqcore.c:
 * stream entries -> frames, frames -> reply entries, deadlines, acknowledgement), janitor.c (504s
 * for houses nobody holds), redis.c (connections), log.c; admin.c (the admin port: health, metrics,
 * the dashboard) with api.c (its JSON API), stats.c (metrics and the live stats bridges keep in
 * Redis).
 *
 * Lifetimes: a br_conn is created by lws on accept and lives until lws closes it AND every
 * Redis callback that references it has run (refcount). Its requests (reqcore.h's br_req, in
 * its br_reqtab) die with it; Redis callbacks never point at a br_req (they get a br_reply). */
#ifndef BR_BRIDGE_H
#define BR_BRIDGE_H

#include "../log.h"
#include "../store/rdb.h"
#include "../store/rkeys.h"
#include "../store/rurl.h"
#include "auth.h"
#include "compress.h"
#include "entry.h"
#include "frame.h"
#include "gp.h"
#include "metrics.h"

#include <stdint.h>
#include <uv.h>

struct lws;
struct lws_context;

typedef struct br_config {
    char *config, *redis, *prefix, *bind, *tls_cert, *tls_key, *bridge_id, *master_key, *log_level;
    long long listen, max_body, reply_chunk, reply_ttl, max_inflight, max_inflight_bytes,
        ping_interval, auth_burst, auth_per_min, auth_addr_burst, auth_addr_per_min, redis_timeout,
        lease_ms, drain_timeout, rudp_listen, rudp_jitter_ms;
    char *rudp_key;
    int allow_ws;
    int check_config; /* --check-config: validate, say so, exit */
    /* the admin port (bridge/admin/ADMIN.md) */
    long long admin_listen, recent;
    char *admin_bind, *admin_token, *admin_token_file, *admin_host;
    /* connections that have not authenticated yet (bridge/daemon/flood.c) */
    long long preauth_max, preauth_per_addr, auth_timeout;
    /* Redis credentials and TLS beside --redis (bridge/store/rurl.h, bridge/store/tlsrelay.h) */
    char *redis_user, *redis_password_file, *redis_ca_file, *redis_cert_file, *redis_key_file;
} br_config;

typedef struct br_req br_req;
typedef struct br_conn br_conn;

enum br_conn_state {
    BR_CS_HELLO,      /* waiting for HELLO */
    BR_CS_LOOKUP,     /* HGET secret in flight */
    BR_CS_CHALLENGED, /* CHALLENGE sent, waiting for AUTH */
    BR_CS_CLAIMING,   /* proof ok, epoch INCR in flight */
    BR_CS_LIVE,       /* WELCOME sent, serving requests */
    BR_CS_CLOSING,    /* flushing a GOAWAY / being torn down: ignore input */
};

/* An encoded frame waiting for the transport. */
#define BR_OUT_PRE 16 /* headroom the WebSocket writer needs (LWS_PRE) */
typedef struct br_out {
    struct br_out *next;
    size_t len;
    uint32_t lane;       /* the frame's stream: rudp orders frames per lane */
    unsigned char buf[]; /* BR_OUT_PRE bytes of headroom, then the frame */
} br_out;

/* What a transport measures of its link (rudp; wss leaves it zeroed). */
typedef struct br_link_stats {
    double rtt_ms; /* smoothed round-trip time, 0: unknown */
    double loss;   /* fraction of packets lost, 0..1 (the worse direction) */
    uint64_t retransmits, fec_repaired;
} br_link_stats;

/* What carries a connection. The transport creates the br_conn (br_conn_new), hands it every
 * frame it decodes, and calls br_conn_closed once it is gone. */
typedef struct br_transport {
    const char *name;          /* "ws", "wss", "rudp": logs and the house's live state */
    void (*kick)(br_conn *c);  /* frames were queued (c->q_head) or bodies wait: send them */
    void (*close)(br_conn *c); /* the conn is CLOSING: flush what is queued, briefly, then end */
    /* Link measurements into *out (NULL: the transport has none, all zero). */
    void (*stats)(const br_conn *c, br_link_stats *out);
} br_transport;

struct br_conn {
    const br_transport *tp;
    void *tpd; /* the transport's own (lws wsi, rudp peer); NULL once it is gone */
    int refs;
    enum br_conn_state state;
    uint64_t serial; /* for logs */
    char addr[64];
    int goaway_sent;
    gp_framer *fr;
    size_t msg_bytes; /* bytes of the WebSocket message being received */
    br_out *q_head, *q_tail;
    size_t q_bytes;
    br_conn *all_prev, *all_next; /* every conn */
    br_conn *hnext;               /* house table chain (LIVE and in the table) */
    int in_table;

    /* handshake */
    char house[GP_MAX_HOUSE_ID + 1];
    uint8_t hn[GP_NONCE_LEN], bn[GP_NONCE_LEN], secret[GP_SECRET_LEN];
    int secret_known;
    int disabled; /* the registry says `disabled`: refused once the proof checked out */
    uint64_t accepted_ms;

    /* live */
    uint64_t epoch;
    char *reqkey, *statekey, *epochkey, *housekey, *recentkey; /* in one block (keys) */
    char *keys;
    /* The requests in flight (reqcore.h's table, made by requests.c), and its counters as
     * the rest of the daemon reads them (requests.c keeps them up to date). */
    struct br_reqtab *rq;
    unsigned ninflight;
    size_t inflight_bytes; /* request body bytes held here (not yet sent to the house) */
    br_req *body_head;     /* non-NULL: request body bytes still to send */
    uint64_t min_deadline; /* earliest deadline among reqs (Redis ms), 0: none */
    int reading, reading_pending, read_again, read_pending, read_capped;
    unsigned read_count; /* COUNT of the read in flight */
    char pcursor[48];    /* reading the pending list: last id seen */
    uint64_t last_rx_ms, last_ping_ms, last_pending_scan_ms, since_ms;
    uint64_t last_renew_ms, next_sweep_ms;
    uint64_t ping_iv; /* ms, as told in WELCOME (a reload changes it for new connections) */
    uint64_t rtt_us;  /* last PING's round trip, 0: none yet */
    /* live stats of this connection (the state hash, bridge/admin/ADMIN.md): final replies, those
     * that are errors, body bytes from the house (in) and to it (out) */
    uint64_t st_req, st_err, st_bytes_in, st_bytes_out;
    int st_dirty; /* changed since the state hash was last written */
};

typedef struct br_bridge {
    uv_loop_t *loop;
    br_config cfg;
    char host_pid[128];
    char fence_channel[GP_KEY_MAX]; /* <prefix>:fence:<bridge id>: other bridges' claims of ours */
    char ctl_channel[GP_KEY_MAX];   /* <prefix>:ctl: disable/remove a house (ADMIN.md) */
    char rhost[256];
    int rport, rdb;
    gp_rurl rurl; /* the parsed --redis with its credentials (password wiped at exit) */
    br_db *db;    /* Redis: one server or a cluster (rdb.h) */
    struct lws_context *lws;
    int listen_port;
    gp_authlimit *auth_ws;   /* failed-auth budgets of ws/wss houses */
    gp_authlimit *auth_rudp; /* those of rudp houses (never shared: proto/RUDP.md) */
    gp_zctx *zc;
    uint8_t server_key[32];
    uint8_t master_key[32];
    int has_master;
    int64_t time_offset; /* Redis ms - loop ms */
    int time_ok;
    uint64_t conn_serial;
    br_conn *all;
    unsigned nlive;
    unsigned replies_live; /* br_reply objects: reply writes and acks not yet settled */
    br_conn **table;
    size_t table_size;
    int stopping;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm, sighup;
    uint64_t started_ms;          /* loop ms at start */
    struct gp_admin *admin;       /* the admin port, NULL when off */
    int admin_port;               /* its port once listening */
    uint8_t admin_token_hash[32]; /* BLAKE2b of the admin token (compared in constant time) */
    int has_admin_token;
    double redis_rtt_ms; /* last PING round trip, -1: none yet */
} br_bridge;

extern br_bridge g_br;

/* main.c */
uint64_t br_now(void);       /* loop monotonic ms */
uint64_t br_now_redis(void); /* Redis clock ms (offset from TIME) */
/* 1 when Redis answers and the house listener is up; else 0 with *why ("redis_unavailable",
 * "draining", "listener_down"). */
int br_ready(const char **why);

/* conn.c */
br_conn *br_conn_new(const br_transport *tp, void *tpd, const char *addr); /* NULL: no memory */
void br_conn_ref(br_conn *c);
void br_conn_unref(br_conn *c);
int br_conn_alive(const br_conn *c); /* not closed, not closing */
/* Encodes and queues a frame. 0, or -1 (encode/alloc failure: the conn is being closed). */
int br_conn_send(br_conn *c, const gp_frame *f);
br_out *br_conn_pop(br_conn *c); /* the next queued frame for the transport, or NULL */
void br_conn_goaway(br_conn *c, int code, const char *msg);
void br_conn_close(br_conn *c, int goaway_code, const char *msg);
/* The transport is gone: tear down, log (why: NULL for a normal close), drop our ref. */
void br_conn_closed(br_conn *c, const char *why);
void br_conn_protocol_error(br_conn *c, const char *why, const char *detail);
void br_conn_frame(br_conn *c, const gp_frame *f); /* a frame of a LIVE connection */
void br_conn_drain_all(void);                      /* SIGTERM: GOAWAY DRAINING to every house */
void br_conn_close_all(void);                      /* closes every connection (GOAWAY DRAINING) */
unsigned br_conn_count_open(void);                 /* connections not closing */
void br_conn_tick(uint64_t now);                   /* handshake deadlines, pings, silent houses */

/* tunnel.c */
int br_tunnel_start(void);

/* house.c */
void br_house_claim(br_conn *c);                 /* proof ok: take ownership */
void br_house_teardown(br_conn *c, int release); /* conn gone/fenced: drop local state */
br_conn *br_house_find(const char *house);
void br_house_read(br_conn *c);   /* read as much of its stream as capacity allows */
void br_house_tick(uint64_t now); /* sweep: pings, liveness, reads */
void br_house_state_update(br_conn *c);
void br_house_redis_up(void); /* cmd connection (re)established */
void br_house_sub_up(void);   /* subscriber (re)established */
/* Every pub/sub message of the subscriber: keyspace doorbells and our fence channel. */
void br_house_on_message(const char *kind, const char *chan, size_t clen, const char *msg,
                         size_t mlen);
void br_house_fenced(const char *house, uint64_t epoch); /* an ack found a newer epoch */
void br_house_table_free(void);
void br_house_load_scripts(void);

/* requests.c */
void br_req_entries(br_conn *c, const redisReply *entries, int pending);
void br_req_frame(br_conn *c, const gp_frame *f);
void br_req_free_all(br_conn *c);  /* every request dropped, entries left pending */
void br_req_conn_free(br_conn *c); /* the connection's table, once it is freed */
void br_req_deadlines(br_conn *c, uint64_t now_redis);
int br_req_in_flight(const br_conn *c, const char *entry_id);
/* 1 while a reply to (house, entry) is being written or acknowledged by this bridge. */
int br_reply_settling(const char *house, const char *entry_id);
/* Next body frame of the round-robin queue into *f (data borrowed / in scratch). 1 if a
 * frame was produced, 0 if the queue is empty. When it was the body's last chunk, *spent
 * receives the body buffer, which the caller frees once the frame is encoded. */
int br_req_next_body(br_conn *c, gp_frame *f, uint8_t *scratch, size_t cap, uint8_t **spent);
void br_req_load_scripts(void);

/* A parsed stream entry (borrowed pointers into the redisReply). */
/* Writes an error reply (final) for entry `en` and then acks it. holder: NULL = acked under
 * our epoch for `c`; otherwise the janitor path (ack only if the state still names `holder`,
 * "" for none). Takes no ownership. */
void br_reply_error(br_conn *c, const char *house, const char *reqkey, const br_entry *en,
                    int status, const char *error, const char *message, const char *holder);

/* udp.c: the rudp:// transport */
int br_udp_start(void); /* 0 (also when rudp is off), -1: cannot listen or read the key */
void br_udp_load_scripts(void);
void br_udp_stop(void);  /* drops every session and closes the socket (from the loop) */
void br_udp_final(void); /* after the loop: frees the session server */

/* main.c: 64 hex digits (whitespace around them ignored) from a file into out. 0 or -1
 * (logged). */
int br_read_key_file(const char *path, uint8_t out[32]);

/* udp.c: what the rudp sessions measured, for the metrics: mean smoothed RTT and loss
 * over live sessions (0 when none), retransmits and FEC repairs since start. */
void br_udp_metrics(double *rtt_ms_mean, double *loss_mean, uint64_t *retransmits,
                    uint64_t *fec_repaired);

/* janitor.c */
void br_janitor_tick(uint64_t now);
void br_janitor_load_scripts(void);

/* stats.c: the metrics of bridge/admin/ADMIN.md and the live stats kept in Redis. */
typedef struct br_metrics {
    gp_metrics *reg;
    gp_metric *houses, *connections, *disconnects, *auth_failures, *requests, *forwarded, *duration,
        *bytes, *compressed, *rtt, *rudp_loss, *rudp_retx, *rudp_fec, *redis_rtt, *redis_reconnects,
        *pending_claimed, *fenced, *janitor_timeouts, *admin_conns, *preauth, *preauth_shed,
        *accept_pauses, *log_suppressed;
    gp_metric *invalid_requests, *reply_failures, *bad_responses; /* requests.c */
} br_metrics;
extern br_metrics g_bm;
int br_stats_init(void); /* 0, or -1 out of memory */
void br_stats_free(void);
/* Every second: Redis PING (RTT), <p>:bstats:<bid>, and the state hash of each house that
 * had traffic since the last pass. */
void br_stats_tick(uint64_t now);
/* The metrics page (malloc'd, Prometheus text); NULL: out of memory. */
char *br_stats_render(size_t *len);
/* A final reply was written for house `house` (epoch: its connection's, 0 for the janitor):
 * counts it in the metrics and in that connection's live stats. */
void br_stats_reply(const char *house, uint64_t epoch, unsigned status, int is_error,
                    uint64_t fwd_ns); /* fwd_ns: uv_hrtime() when forwarded, 0: never */
/* Body bytes moved for connection c (NULL: none), direction 0 to the house, 1 from it. */
void br_stats_bytes(br_conn *c, int from_house, size_t n);
/* A body chunk compressed (before -> after bytes). */
void br_stats_compressed(size_t before, size_t after);
/* Redis (re)connected a node: the metrics count reconnects. */
void br_stats_node_up(int node);

/* admin.c: the admin port (bridge/admin/ADMIN.md). */
int br_admin_start(void); /* 0 (also when off), -1: cannot listen */
void br_admin_stop(void);
/* Reads cfg's admin token (admin-token-file wins over admin-token) into hash (BLAKE2b-256)
 * and *has (0: none configured). 0, or -1 with a message in err (file unreadable, empty). */
int br_admin_load_token(const br_config *cfg, uint8_t hash[32], int *has, char *err, size_t errlen);
/* A bearer token from client addr ("ip:port"), with wrong ones rate-limited per address:
 * 0 right, 403 wrong, 429 too many wrong ones lately (retry after *retry_s seconds). */
int br_admin_token_check(const char *addr, const char *token, size_t len, unsigned *retry_s);
/* Constant-time check of a bearer token against the configured one. */
int br_admin_token_ok(const char *token, size_t len);
struct gp_admin_call;
struct gp_http_request;
/* api.c: the JSON API under /api/ (token auth, Redis). */
void br_api_handle(struct gp_admin_call *call, const struct gp_http_request *req, void *ud);
void br_api_load_scripts(void);
void br_api_free(void); /* the stored overview (at exit) */
/* house.c: the ctl channel (<p>:ctl): "disable <house>" / "remove <house>". */
void br_house_ctl(const char *msg, size_t mlen);

#endif
