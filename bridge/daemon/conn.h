/* conn.h — a house connection, whatever carries it (conn.c): its lifetime, its queue of
 * encoded frames, closing with a GOAWAY, and the frames every live connection answers itself
 * (PING/PONG, GOAWAY). Everything else goes up through br_conn_hooks, installed by whoever
 * holds the houses (house.c): conn.c calls no module above it by name.
 *
 * Lifetimes: a br_conn is created by its transport (tunnel.c on accept, udp.c once a session
 * is confirmed) and lives until the transport is gone AND every Redis callback that
 * references it has run (refcount). Its requests (reqcore.h's br_req, in its br_reqtab) die
 * with it; Redis callbacks never point at a br_req (they get a br_reply). */
#ifndef BR_CONN_H
#define BR_CONN_H

#include "env.h"
#include "frame.h"
#include "gp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct br_req br_req;
typedef struct br_conn br_conn;
typedef struct br_conns br_conns;

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

/* What carries a connection (the transport's ops). The transport creates the br_conn
 * (br_conn_new), hands it every frame it decodes, and calls br_conn_closed once it is gone. */
typedef struct br_transport {
    const char *name;          /* "ws", "wss", "rudp": logs and the house's live state */
    void (*kick)(br_conn *c);  /* frames were queued (c->q_head) or bodies wait: send them */
    void (*close)(br_conn *c); /* the conn is CLOSING: flush what is queued, briefly, then end */
    /* Link measurements into *out (NULL: the transport has none, all zero). */
    void (*stats)(const br_conn *c, br_link_stats *out);
    void *ctx; /* the transport's own context (br_tunnel, br_udp): how its callbacks find it */
    /* Stop (1) or resume (0) reading c's bytes (reply backpressure, house.c); NULL: the
     * transport cannot (rudp: its own window bounds what arrives). */
    void (*rx_pause)(br_conn *c, int pause);
    /* Transports with an unreliable lane (rudp; NULL for ws): sends one datagram (the L3
     * tunnel's IP packet) or drops it (0, or a GP_ERR_*); the largest it takes (0: none now);
     * raises the largest datagram on the wire (gp_rudp_set_mtu). */
    int (*send_dgram)(br_conn *c, const uint8_t *p, size_t n);
    size_t (*dgram_max)(const br_conn *c);
    int (*set_mtu)(br_conn *c, size_t mtu);
} br_transport;

/* What a connection reports upward (house.c installs them; any may be NULL). */
typedef struct br_conn_hooks {
    void *ud;
    /* A frame of a live connection that conn.c does not answer itself (responses). */
    void (*on_frame)(void *ud, br_conn *c, const gp_frame *f);
    /* The connection is closing or its transport is gone: let go of the house, drop its
     * requests (their entries stay pending). Called once or more; must be idempotent. */
    void (*on_closed)(void *ud, br_conn *c);
    /* The last reference is going: free what hangs off the connection (its request table). */
    void (*on_free)(void *ud, br_conn *c);
    /* A datagram of a live connection (the L3 tunnel's IP packet); p lent for the call. */
    void (*on_dgram)(void *ud, br_conn *c, const uint8_t *p, size_t n);
} br_conn_hooks;

/* Every connection of the daemon, and the settings the connection layer reads. */
struct br_conns {
    const br_env *env;
    br_conn *all;
    uint64_t serial; /* of the last connection made (logs; main.c trims the heap by it) */
    br_conn_hooks hooks;
    int paused; /* reading paused (reply backpressure, house.c): new connections start so */
};

struct br_conn {
    br_conns *owner;
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
    int disabled;  /* the registry says `disabled`: refused once the proof checked out */
    uint8_t proto; /* negotiated in HELLO: GP_PROTO_STREAMS and up carry TCP streams */
    uint64_t accepted_ms;

    /* live */
    uint64_t epoch;
    char *reqkey, *statekey, *epochkey, *housekey, *recentkey; /* in one block (keys) */
    char *keys;
    /* The requests in flight (reqcore.h's table, made by requests.c), and its counters as
     * the rest of the daemon reads them (requests.c keeps them up to date). */
    struct br_reqtab *rq;
    unsigned ninflight;
    size_t inflight_bytes;  /* request body bytes held here (not yet sent to the house) */
    br_req *body_head;      /* non-NULL: request body bytes still to send */
    uint64_t min_deadline;  /* earliest deadline among reqs (Redis ms), 0: none */
    unsigned nstreams;      /* TCP streams relayed for it (streams.c keeps it up to date) */
    struct br_l3_house *l3; /* its L3 tunnel once granted (l3.c), else NULL */
    int reading, reading_pending, read_again, read_pending, read_capped;
    unsigned read_count; /* COUNT of the read in flight */
    char pcursor[48];    /* reading the pending list: last id seen */
    uint64_t last_rx_ms, last_ping_ms, last_pending_scan_ms, since_ms;
    uint64_t last_renew_ms, next_sweep_ms;
    uint64_t last_mark_ms; /* last_seen last written into the house hash (house.c) */
    uint64_t ping_iv;      /* ms, as told in WELCOME (a reload changes it for new connections) */
    uint64_t rtt_us;       /* last PING's round trip, 0: none yet */
    /* live stats of this connection (the state hash, bridge/admin/ADMIN.md): final replies,
     * those that are errors, body bytes from the house (in) and to it (out) */
    uint64_t st_req, st_err, st_bytes_in, st_bytes_out;
    int st_dirty; /* changed since the state hash was last written */
};

/* NULL: no memory. */
br_conn *br_conn_new(br_conns *cs, const br_transport *tp, void *tpd, const char *addr);
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
/* SIGTERM: GOAWAY DRAINING and close to every house busy() says may go now. */
typedef int (*br_conn_busy_fn)(void *ud, const br_conn *c);
void br_conn_drain_all(br_conns *cs, br_conn_busy_fn busy, void *ud);
void br_conn_close_all(br_conns *cs);            /* closes every connection (GOAWAY DRAINING) */
unsigned br_conn_count_open(const br_conns *cs); /* connections not closing */
/* Handshake deadlines, pings, silent houses (every second, at loop ms `now`). */
void br_conn_tick(br_conns *cs, uint64_t now);

#endif
