/* transport.h — the house's transport interface: how the tunnel core (tunnel.c: handshake,
 * streams, send scheduling, replay, reconnect) reaches a bridge without knowing over what.
 * A transport carries the frames of proto/PROTOCOL.md; it owns its sockets, timers and the
 * bytes on the wire, never a frame's meaning. Two implementations: tr_ws.c (ws:// and wss://:
 * TCP on libuv, OpenSSL, its own WebSocket framing) and tr_rudp.c (rudp://, proto/RUDP.md). The
 * split is that of hiredis's `ac->ev` hooks or KCP's `output`: ops down, callbacks up, the core
 * stays pure of I/O.
 *
 * Sending is pulled, not pushed: `send` only says "frames are waiting"; the transport then
 * takes them one at a time with up->pull when it can write (ws: while the socket holds under
 * 256 KiB; rudp: while its engine has room), so the core's round-robin decides the order and
 * memory stays bounded by the core's queue. */
#ifndef HS_TRANSPORT_H
#define HS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct hs_house;
struct hs_stream;

/* One encoded frame waiting to go out, with HS_OUT_PRE bytes of headroom before it (what
 * libwebsockets needs in front of a write). */
#define HS_OUT_PRE 16u
typedef struct hs_out {
    struct hs_out *next;
    struct hs_stream *s; /* its stream, NULL for a control frame */
    uint32_t lane;       /* its stream id, 0 for control: rudp's lane */
    size_t len;
    uint8_t buf[]; /* HS_OUT_PRE + frame */
} hs_out;

typedef struct hs_transport hs_transport;

/* Callbacks up, installed by the core. Each names the transport that calls: the core ignores
 * one that is not its current connection (a late event of an older one). */
typedef struct hs_transport_up {
    void *ud;
    /* The transport is about to connect (the URL parsed): the core starts its handshake
     * clock. Returns 0, or -1 when the core has given up on this dial already. */
    int (*on_dialing)(void *ud, hs_transport *t, int tls);
    /* The connection is open. The core's HELLO goes first, unless the transport has
     * authenticated both ends itself (HS_TR_AUTHENTICATES): then the bridge's WELCOME comes. */
    void (*on_open)(void *ud, hs_transport *t);
    void (*on_bytes)(void *ud, hs_transport *t, const uint8_t *p, size_t n); /* a byte stream */
    void (*on_frame)(void *ud, hs_transport *t, const uint8_t *m, size_t n); /* one frame */
    void (*on_heard)(void *ud, hs_transport *t); /* a packet of the connection arrived */
    /* The peer broke the protocol below the frames (a text message): GOAWAY and close. */
    void (*on_error)(void *ud, hs_transport *t, const char *why);
    /* Why the connection is ending, for the disconnect log line; replace: even when the
     * core already has a reason. */
    void (*on_reason)(void *ud, hs_transport *t, const char *why, int replace);
    void (*on_closed)(void *ud, hs_transport *t, const char *why); /* the connection is over */
    /* Optional, before on_closed (or dial's -1): the dial failed for a cause the transport
     * recognised (the name is unknown, nothing listens, TLS on one side only, a certificate
     * not trusted), in place of the generic connect_failed line: its event (e.g.
     * "bridge_refused"), level (HS_LOG_WARN, HS_LOG_ERROR) and what to do (the line's fix=).
     * The reason is why, as on_closed gives it. */
    void (*on_cause)(void *ud, hs_transport *t, int level, const char *event, const char *fix);
    /* The next frame to write if it is at most max bytes (else NULL), and whether there is
     * any now. `sent` hands a pulled frame back (it frees it): ok once it is written, 0 when
     * it could not be (the connection is failing). o NULL, ok 1: a chance to write found
     * nothing (queued bytes may have gone below the low-water mark meanwhile). */
    hs_out *(*pull)(void *ud, hs_transport *t, size_t max);
    int (*pending)(void *ud, hs_transport *t);
    void (*sent)(void *ud, hs_transport *t, hs_out *o, int ok);
    /* A probe (a handshake alone, HS_TR_PROBES) came back: 1 the path works. */
    void (*on_probe)(void *ud, hs_transport *t, int ok);
    /* A datagram (the L3 tunnel's IP packet, proto/TUN.md) arrived; p lent for the call. */
    void (*on_dgram)(void *ud, hs_transport *t, const uint8_t *p, size_t n);
} hs_transport_up;

enum {
    HS_TR_AUTHENTICATES = 1, /* its own handshake authenticates both ends: no HELLO/AUTH */
    HS_TR_UNORDERED = 2,     /* frames may overtake each other (independent lanes) */
};

#define HS_TR_BAD_URL (-2) /* dial: the URL does not parse */

typedef struct hs_transport_ops {
    unsigned flags; /* HS_TR_* */
    /* Starts a connection to url. 0: under way (on_open or on_closed follow); -1: failed at
     * once (a failure reported through on_closed meanwhile counts too); HS_TR_BAD_URL. */
    int (*dial)(hs_transport *t, const char *url);
    void (*send)(hs_transport *t);  /* frames are waiting: pull them (from the loop) */
    void (*close)(hs_transport *t); /* flushes what the core still gives, then on_closed */
    /* Optional: the connection is presumed dead (the bridge silent for three pings, or a
     * handshake past its deadline): it ends now, saying and awaiting nothing, then on_closed.
     * NULL: close. A goodbye could only delay the move to the next bridge, and where it still
     * got through it would spare the old bridge its fencing, which is then what is tested. */
    void (*drop)(hs_transport *t);
    /* Shutdown, the connection live: what is queued (a GOAWAY) goes out now. NULL when the
     * transport's own close handshake says goodbye (ws). */
    void (*flush_now)(hs_transport *t);
    /* Shutdown from the loop: everything goes. Called again once the loop has run dry (then
     * nothing is left to do for ws and rudp). */
    void (*stop)(hs_transport *t);
    void (*free)(hs_transport *t); /* after the loop has run dry again */
    /* Optional: a handshake alone towards url, to learn whether the path works again while
     * the house is connected over another transport (on_probe follows). 0 or -1. */
    int (*probe)(hs_transport *t, const char *url);
    /* Optional: the link's own figures (0 and the totals when there is no session):
     * smoothed RTT, loss (0..1), retransmits and FEC repairs since start. */
    void (*metrics)(hs_transport *t, double *rtt_ms, double *loss, uint64_t *retx, uint64_t *fec);
    void (*log_stats)(hs_transport *t); /* optional: a debug line of link figures */
    /* Optional, transports with an unreliable lane (rudp): sends one datagram now or drops it
     * (0, or a GP_ERR_*: too large, queue full, no session); the largest it takes (0: none
     * now); raises the largest datagram on the wire (gp_rudp_set_mtu). */
    int (*send_dgram)(hs_transport *t, const uint8_t *p, size_t n);
    size_t (*dgram_max)(hs_transport *t);
    int (*set_mtu)(hs_transport *t, size_t mtu);
    const char *(*label)(hs_transport *t); /* for the connects metric: ws, wss, rudp */
} hs_transport_ops;

struct hs_transport {
    const hs_transport_ops *ops;
    const hs_transport_up *up;
};

/* The two implementations; NULL when out of memory. */
hs_transport *hs_tr_ws_new(struct hs_house *h, const hs_transport_up *up);
hs_transport *hs_tr_rudp_new(struct hs_house *h, const hs_transport_up *up);

#endif
