/* tunnel_int.h — what tunnel.c (the connection: handshake, send scheduler, liveness,
 * reconnect) and exchange.c (the request exchanges the bridge opens on it: receiving,
 * dispatch, replay and joining of redelivered requests) share. Private to those two files:
 * the rest of the house sees only house.h. */
#ifndef HS_TUNNEL_INT_H
#define HS_TUNNEL_INT_H

#include "house.h"
#include "streams.h"
#include "transport.h"

#define NBUCKETS 256u

struct hs_stream {
    hs_tunnel *t;
    uint32_t id;
    hs_stream *hnext; /* hash chain */
    hs_stream *rnext; /* ready ring: streams with queued frames */
    int in_ring;
    hs_out *qh, *qt;
    hs_request req;
    uint64_t declared_len; /* REQ_HEAD body_len */
    size_t body_cap;
    int dispatched; /* request complete and handed to upstream.c (or answered) */
    int resp_fin;   /* the last response frame is queued */
    hs_xfer *up;
    uint64_t start_ms;
    uint64_t start_ns; /* uv_hrtime, for the duration histogram */
    uint16_t status;
    const char *error; /* static string for the log line */
    uint64_t resp_bytes;
    int replay;     /* answered from the cache */
    hs_centry *rec; /* the response being recorded for the cache */
    /* A stream whose connection dropped while its upstream call ran is detached: the call
     * goes on (no frame is sent) so that its response lands in the replay cache, and the
     * redelivered request is answered from there instead of running twice. */
    int detached;
    int rec_dropped;   /* the response outgrew what the cache keeps */
    hs_stream *dnext;  /* t->detached list */
    hs_stream *joined; /* this (new) stream waits for that detached call's response */
};

enum conn_state { CS_IDLE, CS_CONNECTING, CS_HELLO, CS_AUTH, CS_LIVE, CS_CLOSING };

/* What the next reconnect delay looks like. */
/* BK_DISABLED: refused as disabled (GP_GOAWAY_MSG_DISABLED): a short fixed wait, so that the
 * house is back within seconds of being enabled (it cannot hear that itself). */
enum backoff_kind { BK_NORMAL, BK_LONG, BK_NOW, BK_DISABLED };

struct early;

struct hs_tunnel {
    hs_house *h;
    hs_transport_up up; /* our callbacks, given to both transports */
    hs_transport *ws, *rudp;
    hs_transport *tr; /* the current connection's, NULL between connections */
    enum conn_state state;
    gp_framer *fr;
    hs_zstate *zs; /* its own compression state, with its first compressed body */
    uint8_t hn[GP_NONCE_LEN];
    size_t bridge_idx;
    const char *url;
    uint64_t dial_ms, live_ms, last_rx_ms, last_ping_ms, drain_ms;
    uint64_t rtt_us; /* the last PING's round trip on this connection, 0: none yet */
    uint32_t ping_iv, max_frame;
    uint64_t epoch;
    unsigned attempt;
    enum backoff_kind next_backoff;
    char reason[400];
    /* The failed dial's own line (transport.h, on_cause; a refused handshake): in place of
     * connect_failed, event fail_event at fail_level with fix= fail_fix. fail_logged: the
     * failure has had its line already (a GOAWAY's): connect_failed goes to debug. */
    char fail_event[40];
    char fail_fix[600];
    int fail_level, fail_logged;
    int draining;
    int switch_to; /* the next dial goes to this bridge index (-1: the next one) */
    uint64_t probe_iv;
    int probe_idx; /* the preferred rudp:// bridge being probed while on wss (-1: none) */
    uv_timer_t retry, tick, probe;
    int timers;          /* initialised, not yet closed */
    int gated;           /* waiting at the owner's dial gate (hs_hooks.dial_gate) */
    hs_stream **buckets; /* NBUCKETS chains, with the first stream: an idle house has none */
    size_t nstreams;
    hs_stream *ring_head, *ring_tail;
    hs_out *ctl_head, *ctl_tail;
    size_t q_bytes;
    int congested;
    uint64_t requests;   /* served on this connection */
    size_t aborted;      /* streams detached/aborted ahead of conn_ended, for its log line */
    hs_stream *detached; /* streams whose upstream call outlived their connection */
    struct early *early, **early_tail; /* frames ahead of WELCOME (HS_TR_UNORDERED) */
    size_t early_bytes;
    int proto;           /* negotiated in WELCOME (1 when it names none) */
    int no_rudp_hello;   /* a rudp bridge refused our protocol offer: no HELLO over rudp */
    hs_streams *streams; /* TCP streams (streams.c), from hs_tunnel_start */
    struct hs_l3 *l3;    /* the L3 tunnel (l3.c), with --tun; else NULL */
    hs_stream tcp_lane;  /* their place in the ring: never in the table, never freed */
};

/* tunnel.c */
void hs_tn_event(hs_tunnel *t, enum hs_event ev, const char *reason, uint64_t ms);
hs_stream *hs_tn_stream_find(hs_tunnel *t, uint32_t id);
/* Unlinks and frees; the caller has dealt with s->up. */
void hs_tn_stream_free(hs_stream *s);
/* Frees s once the upstream has let go and its last frame is queued and written. */
void hs_tn_stream_maybe_done(hs_stream *s);
/* s's upstream call goes on without a connection (its response is remembered). */
void hs_tn_stream_detach(hs_stream *s);
void hs_tn_send_error_head(hs_stream *s, uint16_t status, const char *error, const char *message);
void hs_tn_protocol_error(hs_tunnel *t, const char *why, const char *detail);
void hs_tn_maybe_finish_drain(hs_tunnel *t);

/* exchange.c */
void hs_ex_on_req_head(hs_tunnel *t, const gp_frame *f);
void hs_ex_on_req_body(hs_tunnel *t, const gp_frame *f);
void hs_ex_on_cancel(hs_tunnel *t, const gp_frame *f);
void hs_ex_request_clear(hs_request *r);
/* The request's log line and metrics, with its outcome. */
void hs_ex_log_request(const hs_stream *s, const char *outcome);
/* The detached call d has ended: answer the streams that joined it. */
void hs_ex_resolve_joined(hs_stream *d);

#endif
