/* rudp.h — one rudp:// connection (pure, sans-I/O): an established session (rudp_sess.h)
 * carrying the reliability engine (rudp_rel.h), with per-message zstd and send jitter. The
 * host owns the socket and the clock:
 *
 *     gp_rudp_input(r, datagram, len, now, &flags)            for each datagram received
 *     while ((n = gp_rudp_recv(r, &lane, &msg)) > 0)          deliver messages (tunnel frames)
 *     gp_rudp_send(r, lane, frame, len)                        while gp_rudp_send_space() allows
 *     while ((n = gp_rudp_output(r, buf, cap, now)) > 0)     put buf on the wire
 *     wake up at gp_rudp_expiry(r)
 *
 * Handshakes stay with gp_sess (house: client_new/hello until GP_SESS_RX_ESTABLISHED; bridge:
 * classify/parse/respond): a gp_rudp is made from a session once it has keys, and takes it
 * over. On the bridge side nothing is sent before the house's first datagram confirmed the
 * session (gp_sess_confirmed): output returns 0 until then.
 *
 * Messages: the first byte of each says how the rest is coded (0 raw, 1 zstd). A message is
 * compressed when gp_compress_worthwhile says so and the result is smaller — a tunnel body
 * chunk the house or bridge already compressed has high entropy and is left alone. */
#ifndef GP_RUDP_H
#define GP_RUDP_H

#include "rudp_rel.h"
#include "rudp_sess.h"

#define GP_RUDP_JITTER_MAX_MS 15
/* The largest datagram gp_rudp_set_mtu allows: its payload is at most what every engine
 * accepts (GP_REL_DEFAULT_RX_PAYLOAD), whichever side sends it. Hosts size their send buffers
 * for it. */
#define GP_RUDP_MTU_MAX (GP_REL_DEFAULT_RX_PAYLOAD + GP_SESS_OVERHEAD_S2C)
/* What a datagram of n bytes needs on the wire beyond n: the coding byte, the engine's packet,
 * the session's (bridge: 1 on the bridge's side, 0 on the house's). gp_rudp_set_mtu(r, n +
 * this) makes gp_rudp_dgram_max at least n. */
#define GP_RUDP_DGRAM_OVERHEAD(bridge)                                                             \
    (1u + GP_REL_DGRAM_OVERHEAD + ((bridge) ? GP_SESS_OVERHEAD_S2C : GP_SESS_OVERHEAD))

typedef struct gp_rudp gp_rudp;

typedef struct gp_rudp_conf {
    unsigned jitter_ms; /* each datagram is held 0..jitter_ms (<= 15) before it leaves */
    int compress;       /* zstd per message when worthwhile (default 1) */
    gp_rel_config rel;  /* its max_payload is set from the session's payload limit */
} gp_rudp_conf;

/* Defaults: no jitter, compression on, gp_rel_config_init with max_message sized for a tunnel
 * frame (1 MiB payload + header) plus the coding byte. */
void gp_rudp_conf_init(gp_rudp_conf *conf);

/* Takes over `s` (established; freed with the connection, also when this fails). conf NULL:
 * the defaults. rnd/ud: randomness for the jitter. NULL on a bad conf or out of memory. */
gp_rudp *gp_rudp_new(gp_sess *s, const gp_rudp_conf *conf, gp_sess_rand_fn rnd, void *ud,
                     uint64_t now_ns);
void gp_rudp_free(gp_rudp *r); /* NULL ok */
gp_sess *gp_rudp_sess(const gp_rudp *r);

/* Queues msg[0..len) (copied, maybe compressed) on `lane`: 0, or gp_rel_send's errors
 * (GP_ERR_BUFFER: the send buffer is full, retry when gp_rudp_send_space() allows). msg may
 * be what gp_rudp_recv lent. */
int gp_rudp_send(gp_rudp *r, uint32_t lane, const uint8_t *msg, size_t len);
size_t gp_rudp_send_space(const gp_rudp *r);

/* Datagrams (an L3 tunnel's IP packets: rudp_rel.h, gp_rel_send_dgram): unreliable, whole,
 * coded as messages are (a first byte: raw, or zstd when gp_compress_worthwhile says so and
 * the result is smaller — an encrypted or compressed payload is left alone). Returns 0, or
 * gp_rel_send_dgram's errors (GP_ERR_TOO_LARGE beyond gp_rudp_dgram_max; GP_ERR_BUFFER: the
 * queue is full and the datagram dropped). */
int gp_rudp_send_dgram(gp_rudp *r, const uint8_t *p, size_t len, uint64_t now_ns);
size_t gp_rudp_dgram_max(const gp_rudp *r);
/* The next datagram received (decoded): its length, *p lent until the next call of this
 * function on r; 0 when none; GP_ERR_MALFORMED for one that does not decode (skipped and
 * counted in dgrams_malformed: call again). */
ssize_t gp_rudp_recv_dgram(gp_rudp *r, const uint8_t **p);

/* Feeds one datagram from the peer. Returns 0 (taken; *flags: GP_SESS_RX_* bits, e.g.
 * NEWEST: the caller may move the peer's address to this datagram's source), or a negative
 * error: the datagram was dropped and counted (not a reason to close). */
int gp_rudp_input(gp_rudp *r, const uint8_t *dg, size_t len, uint64_t now_ns, unsigned *flags);

/* The next delivered message (decoded): its length, *lane, *msg lent until the next call on
 * r; 0 when none; GP_ERR_MALFORMED for a message that does not decode (skipped: call again). */
ssize_t gp_rudp_recv(gp_rudp *r, uint32_t *lane, const uint8_t **msg);

/* The next datagram to send now, into out[0..cap) (cap >= the session's MTU): put it on the
 * wire. With jitter, datagrams are sealed at once and held back until their time (round-trip
 * samples are taken from when they leave); gp_rudp_expiry says when the next one is due.
 * 0 when nothing is due; GP_ERR_STATE once the peer is dead (close). */
ssize_t gp_rudp_output(gp_rudp *r, uint8_t *out, size_t cap, uint64_t now_ns);
/* Every datagram due now, each through send(ud, out, len) as gp_rudp_output gives it (out:
 * the caller's buffer, as there). 0, or -1 when the connection is dead (an engine error, or
 * the peer silent: gp_rudp_dead); the caller then closes it. The glue of both daemons. */
int gp_rudp_flush(gp_rudp *r, uint8_t *out, size_t cap, uint64_t now_ns,
                  void (*send)(void *ud, const uint8_t *b, size_t len), void *ud);

/* When to call gp_rudp_output next (engine timers, held datagrams); UINT64_MAX: nothing. */
uint64_t gp_rudp_expiry(const gp_rudp *r);
/* A timer's delay in ms for an expiry in ns (gp_rudp_expiry, gp_sess_expiry): rounded up, 0
 * when already due, 60 s when nothing is (UINT64_MAX). The bridge and the house arm their
 * timers with it. */
uint64_t gp_rudp_timer_ms(uint64_t expiry_ns, uint64_t now_ns);
int gp_rudp_dead(const gp_rudp *r);
/* Raises the largest datagram this side sends (session and engine together; the L3 tunnel
 * raises it so that one IP packet of its MTU fits one datagram; the peer accepts up to
 * GP_REL_DEFAULT_RX_PAYLOAD plus the session's overhead). 0, GP_ERR_INVALID (smaller than
 * now, or past the limits) or GP_ERR_NOMEM. Output buffers must then hold mtu bytes. */
int gp_rudp_set_mtu(gp_rudp *r, size_t mtu);

typedef struct gp_rudp_stats {
    gp_rel_stats rel;
    gp_sess_counters sess;
    uint64_t msgs_compressed, bytes_before, bytes_after; /* zstd on the way out */
    uint64_t dgrams_compressed, dgram_bytes_before, dgram_bytes_after, dgrams_malformed;
} gp_rudp_stats;
void gp_rudp_stats_get(const gp_rudp *r, gp_rudp_stats *out);

#endif
