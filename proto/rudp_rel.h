/* rudp_rel.h — the reliability engine of rudp:// (pure, sans-I/O).
 *
 * gp_rel turns an unreliable, unordered datagram service into ordered lanes of messages. It
 * sees only PLAINTEXT packet payloads: the session layer (rudp_sess.*) encrypts, pads and
 * authenticates whole datagrams around what gp_rel_output() produces and hands what it
 * decrypted to gp_rel_input(). Like KCP, ngtcp2 and picoquic it has no socket, no
 * clock, no global state and never prints: the caller feeds packets and the time
 * (nanoseconds on any monotonic clock), pulls packets to send, and asks when to call again.
 *
 *     loop: gp_rel_input(r, pkt, len, now)                 for each datagram received
 *           while ((n = gp_rel_recv(r, &lane, &msg)) > 0)   deliver messages
 *           while ((n = gp_rel_output(r, buf, cap, now, now + jitter)) > 0)  send buf[0..n)
 *           sleep until gp_rel_expiry(r) or the next datagram
 *
 * Messages: each gp_rel_send() is one message (a tunnel frame: a REQ_HEAD, a 64 KiB body
 * chunk, ...), delivered whole, exactly once. A message belongs to a lane (any uint32):
 * messages of one lane are delivered in the order they were sent, lanes are independent —
 * a packet lost from one lane never delays another. Lanes cost the receiver nothing: use one
 * per request/response exchange if you like.
 *
 * Loss recovery: selective acks with ranges, packet and time thresholds, a probe timeout
 * with capped backoff, adaptive forward error correction, and a congestion controller that
 * does not read random loss as congestion (see proto/RUDP.md, "Reliability"). The ACK ranges
 * (rudp_ack.*), FEC (rudp_fec.*), congestion control (rudp_cc.*, swappable through
 * gp_rel_config.cc) and reassembly (rudp_reasm.*) are files of their own; RUDP.md's
 * "Code map" says which owns what.
 *
 * Threading: a gp_rel is not thread-safe; one owner calls everything. */
#ifndef GP_RUDP_REL_H
#define GP_RUDP_REL_H

#include "gp.h"

#define GP_REL_DEFAULT_MAX_PAYLOAD 1140u /* 1200-byte datagram minus session overhead */
#define GP_REL_MIN_PAYLOAD 256u
#define GP_REL_MAX_PAYLOAD 65000u
/* What an engine accepts by default, whatever it sends: the UDP payload of a 1500-byte IPv4
 * packet. A peer may send up to this (gp_rel_set_max_payload) without asking first. */
#define GP_REL_DEFAULT_RX_PAYLOAD 1472u
/* What a packet carrying one datagram adds to it: packet header, FEC room, DGRAM frame header
 * (gp_rel_dgram_max is max_payload less this). */
#define GP_REL_DGRAM_OVERHEAD 32u
#define GP_REL_DEFAULT_MAX_MESSAGE (1048576u + 64u)
#define GP_REL_DEFAULT_SEND_BUFFER (8u << 20)
#define GP_REL_DEFAULT_KEEPALIVE_NS 20000000000ull /* 20 s: under common NAT UDP timeouts */
#define GP_REL_DEFAULT_DEAD_NS 30000000000ull      /* 30 s of silence despite probes */
#define GP_REL_MAX_ACK_DELAY_NS 10000000ull        /* the receiver acks within 10 ms */
#define GP_REL_MAX_JITTER_NS 16000000ull           /* send_at - now the caller may use */
#define GP_REL_PTO_CAP_NS 2000000000ull            /* probe backoff never exceeds 2 s ... */
/* ... unless the un-backed-off PTO itself is longer (then backoff stops at that). */

typedef struct gp_rel gp_rel;

typedef struct gp_rel_config {
    size_t max_payload;         /* largest payload gp_rel_output produces */
    size_t max_payload_rx;      /* largest accepted; 0: max(max_payload, 1472) */
    size_t max_message;         /* largest message sent or accepted */
    size_t send_buffer;         /* bytes held for sending/retransmission before "full" */
    size_t recv_buffer;         /* bytes of partial/undelivered messages the receiver holds */
    uint64_t idle_keepalive_ns; /* send something when nothing was sent for this long */
    uint64_t dead_after_ns;     /* dead after this long without any packet from the peer */
    int fec;                    /* 0 off, 1 adaptive (redundancy follows the measured loss) */
    uint64_t seed;              /* randomness (congestion control's probing phase) */
    /* Congestion controller (rudp_cc.h); NULL: gp_cc_bbr. Not on the wire: each peer may
     * run its own. */
    const struct gp_cc_ops *cc;
    /* Datagrams (gp_rel_send_dgram): bytes waiting to be sent, and how long one may wait,
     * before new ones are dropped (a router's queue: the TCP inside an L3 tunnel must see
     * loss, not an ever longer queue); bytes received and not yet taken. */
    size_t dgram_queue;
    uint64_t dgram_max_wait_ns;
    size_t dgram_rx_queue;
} gp_rel_config;

/* Fills *cfg with the defaults: max_payload 1140, max_message 1 MiB + 64, send_buffer 8 MiB,
 * recv_buffer 2 x send_buffer + max_message, keepalive 20 s, dead after 30 s, fec 1, seed 0,
 * cc NULL (BBR-like), dgram_queue 256 KiB, dgram_max_wait 150 ms (about what the TCP inside needs
 * to keep a 200 ms path busy through its backoff), dgram_rx_queue 256 KiB. Callers start from this
 * and change what they need. */
void gp_rel_config_init(gp_rel_config *cfg);

/* 0 if cfg is usable, GP_ERR_INVALID otherwise: max_payload outside
 * [GP_REL_MIN_PAYLOAD, GP_REL_MAX_PAYLOAD], max_message 0 or over 1 GiB, send_buffer or
 * recv_buffer smaller than max_message, keepalive 0, dead_after not above keepalive, fec not
 * 0/1. */
int gp_rel_config_check(const gp_rel_config *cfg);

/* Creates an engine for one established session at time now_ns (the peer counts as heard
 * from at now_ns). cfg is copied; NULL means the defaults. Returns NULL if the config fails
 * gp_rel_config_check() or on allocation failure. Both peers should use the same
 * max_message; each peer's send_buffer should not exceed the other's recv_buffer. */
gp_rel *gp_rel_new(const gp_rel_config *cfg, uint64_t now_ns);

/* Frees the engine and everything it holds, including any message gp_rel_recv lent.
 * NULL ok. */
void gp_rel_free(gp_rel *r);

/* Queues msg[0..len) (copied) as one message on `lane`. Returns:
 *   0                  queued;
 *   GP_ERR_INVALID     len is 0 (an empty message could not be told from "none" by recv);
 *   GP_ERR_TOO_LARGE   len > max_message: split it (the tunnel chunks bodies anyway);
 *   GP_ERR_BUFFER      the send buffer is full (send_buffer bytes, or 4096 messages, between
 *                      the oldest message not yet fully acknowledged and the newest): keep
 *                      calling gp_rel_output/gp_rel_input and retry; gp_rel_send_space()
 *                      says when it fits. A message is accepted whatever its size when the
 *                      buffer is empty;
 *   GP_ERR_STATE       the peer was declared dead;
 *   GP_ERR_NOMEM. */
int gp_rel_send(gp_rel *r, uint32_t lane, const uint8_t *msg, size_t len);

/* The same for a message in two pieces, msg[0..len1) then more[0..len2) (either may be
 * empty; their total may not), copied into one message: a header need not be glued on first. */
int gp_rel_send2(gp_rel *r, uint32_t lane, const uint8_t *msg, size_t len1, const uint8_t *more,
                 size_t len2);

/* Bytes gp_rel_send would accept now (0 when full). */
size_t gp_rel_send_space(const gp_rel *r);

/* Changes the largest payload gp_rel_output produces (a path that carries larger datagrams:
 * the L3 tunnel's IP packets need ~1340 bytes). Above the payload the engine was created with
 * (the base), the size is used at once and checked by path MTU probing (rudp_pmtu.h): a path
 * that does not carry it lowers what the engine sends to what it does carry (datagrams above
 * it are then refused, GP_ERR_TOO_LARGE), probed again later. Message chunks never exceed the
 * base. An FEC block being built keeps its size (the change applies once it is sent). The
 * peer must accept it: every engine accepts GP_REL_DEFAULT_RX_PAYLOAD unless configured
 * lower. 0, or GP_ERR_INVALID outside [GP_REL_MIN_PAYLOAD, GP_REL_MAX_PAYLOAD]. Callers'
 * output buffers must then hold the new size (gp_rel_max_payload: probes are that large). */
int gp_rel_set_max_payload(gp_rel *r, size_t max_payload);
size_t gp_rel_max_payload(const gp_rel *r);
/* The largest payload the engine sends now, probes aside: max_payload, or less while path MTU
 * probing (rudp_pmtu.h) has not found the path to carry it. */
size_t gp_rel_payload_now(const gp_rel *r);

/* Datagrams: the unreliable lane (an L3 tunnel's IP packets). Each datagram travels whole in
 * one packet: never retransmitted, never waiting for another; protected by the same FEC as
 * messages (aiming at a lower failure rate, since nothing repairs what it misses), counted by
 * congestion control, and sent in turn with the message lanes — a quantum of datagrams, then
 * a lane's quantum — so that bulk datagrams never starve requests, nor requests datagrams.
 * A datagram waits at most dgram_max_wait_ns and dgram_queue bytes wait at most; beyond,
 * datagrams are dropped (counted), as a router would.
 * Queues p[0..len) (copied) at now_ns (its wait counts from then: the engine's own clock is
 * that of its last call, which may be long ago on an idle session). Returns 0, or:
 *   GP_ERR_INVALID     len is 0;
 *   GP_ERR_TOO_LARGE   len > gp_rel_dgram_max(r);
 *   GP_ERR_BUFFER      the queue is full: dropped (counted in dgrams_dropped);
 *   GP_ERR_STATE       the peer was declared dead;
 *   GP_ERR_NOMEM. */
int gp_rel_send_dgram(gp_rel *r, const uint8_t *p, size_t len, uint64_t now_ns);
/* The largest datagram: what one packet of max_payload carries with its headers. */
size_t gp_rel_dgram_max(const gp_rel *r);
/* Takes the next received datagram: returns its length (> 0) and sets *p, lent until the next
 * gp_rel_recv_dgram or gp_rel_free. 0 when none. Datagrams may come out of order (a packet
 * rebuilt by FEC comes after those behind it) but never twice. */
ssize_t gp_rel_recv_dgram(gp_rel *r, const uint8_t **p);

/* Feeds one packet payload p[0..len) received from the peer (borrowed: copied as needed).
 * Returns 0 when the packet was taken (duplicates and packets the receive buffer has no
 * room for are also 0: dropped, counted in the stats, and recovered by the peer's
 * retransmission), or:
 *   GP_ERR_MALFORMED   the payload is not a valid packet (truncated field, unknown frame,
 *                      inconsistent fragment, an ACK of a packet number never sent, ...):
 *                      dropped whole, counted; nothing of it was applied. One bad packet
 *                      is not a reason to close the session (the session layer has
 *                      authenticated it, so it is a bug or an attack: log it);
 *   GP_ERR_TOO_LARGE   the peer sent a message over our max_message: dropped, counted; the
 *                      peers disagree on max_message, close the session;
 *   GP_ERR_STATE       the peer was already declared dead (ignored);
 *   GP_ERR_NOMEM. */
int gp_rel_input(gp_rel *r, const uint8_t *p, size_t len, uint64_t now_ns);

/* Writes the next packet payload to send into buf[0..cap). send_at_ns (>= now_ns; smaller
 * values count as now_ns) is when the caller will really put it on the wire — it may hold a
 * packet back 0–15 ms for obfuscation: round-trip samples are measured from send_at_ns, so
 * the jitter never inflates the RTT estimate. Call repeatedly until it returns 0.
 * Returns the payload length, 0 if nothing is due now (pacing, congestion window, nothing
 * to send: call again at gp_rel_expiry() or after gp_rel_input/gp_rel_send), or:
 *   GP_ERR_BUFFER      cap < max_payload;
 *   GP_ERR_STATE       the peer is dead (now, or from before): close the session. */
ssize_t gp_rel_output(gp_rel *r, uint8_t *buf, size_t cap, uint64_t now_ns, uint64_t send_at_ns);

/* Takes the next delivered message: returns its length (> 0), sets *lane and *msg. *msg is
 * lent until the next gp_rel_* call on r. Returns 0 when none is ready. */
ssize_t gp_rel_recv(gp_rel *r, uint32_t *lane, const uint8_t **msg);

/* Time (ns) at which gp_rel_output must be called next even if no packet arrives — an ack
 * to send, a loss or probe timer, pacing, a keepalive, the dead deadline. UINT64_MAX when
 * nothing is scheduled (only once dead). May be <= now: call gp_rel_output now. */
uint64_t gp_rel_expiry(const gp_rel *r);

/* 1 once dead_after_ns passed without any packet from the peer (keepalives and probes kept
 * going meanwhile), else 0. Sticky. */
int gp_rel_dead(const gp_rel *r);

typedef struct gp_rel_stats {
    uint64_t srtt_ns, rttvar_ns, min_rtt_ns, latest_rtt_ns;
    double loss_rate_tx;   /* fraction of our packets the peer reports missing (its view) */
    double loss_rate_rx;   /* fraction of the peer's packets we found missing (our view) */
    double loss_rate_det;  /* fraction of our in-flight packets we declared lost */
    uint64_t cwnd_bytes;   /* congestion window */
    uint64_t inflight;     /* bytes sent and neither acked nor declared lost */
    uint64_t pacing_bps;   /* pacing rate, bits per second */
    uint64_t btlbw_bps;    /* bottleneck bandwidth estimate, bits per second */
    int cc_state;          /* 0 startup, 1 drain, 2 probe-bw */
    uint64_t pkts_sent;    /* packets produced by gp_rel_output */
    uint64_t pkts_recv;    /* packets accepted by gp_rel_input (not counting dups, bad) */
    uint64_t pkts_lost;    /* our packets declared lost */
    uint64_t retransmits;  /* message fragments sent again after a loss */
    uint64_t probes;       /* probe timeouts fired */
    uint64_t fec_sent;     /* repair packets sent */
    uint64_t fec_bytes;    /* bytes of those */
    uint64_t fec_repaired; /* peer packets we rebuilt from repair packets */
    uint64_t bytes_sent;   /* payload bytes produced (repairs included) */
    uint64_t bytes_recv;   /* payload bytes accepted */
    uint64_t bytes_acked;  /* of bytes_sent, acknowledged by the peer */
    uint64_t msgs_sent, msgs_delivered;
    uint64_t keepalives;                    /* PING-only packets sent (idle keepalive / liveness) */
    uint64_t malformed;                     /* packets rejected by gp_rel_input */
    uint64_t duplicates;                    /* packets already seen (or too old to tell) */
    uint64_t dropped_full;                  /* packets dropped for lack of receive buffer */
    uint64_t dgrams_sent, dgram_bytes_sent; /* datagrams put in packets (once each) */
    uint64_t dgrams_recv, dgram_bytes_recv; /* datagrams received (FEC rebuilt included) */
    uint64_t dgrams_lost;       /* sent in packets declared lost (the peer did not rebuild) */
    uint64_t dgrams_dropped;    /* never sent: queue full or waited too long */
    uint64_t dgrams_dropped_rx; /* received but the receive queue was full */
    /* Path MTU (rudp_pmtu.h): the payload the path is trusted with now, probes sent and lost,
     * times the trusted size fell (a probe of it lost again and again: a narrower path). */
    size_t path_payload;
    uint64_t pmtu_probes, pmtu_probes_lost, pmtu_lowered;
} gp_rel_stats;

/* Fills *out with the current counters and estimates. */
void gp_rel_get_stats(const gp_rel *r, gp_rel_stats *out);

#endif
