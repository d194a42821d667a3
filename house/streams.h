/* streams.h — the house's TCP streams through Redis (proto/STREAMS.md): a table of streams
 * keyed by the contract's stream id (sid), each one endpoint (proto/stream.h's gp_stream)
 * joined to a TCP connection to an allowlisted service (--tcp-service). Sans-tunnel: the
 * tunnel hands it the S_OPEN / S_ENTRY frames the bridge sent, tells it when a connection
 * to a bridge is up (with the negotiated protocol) or down, and pulls the frames it has to
 * say when it can write (house/transport.h's pull model: the module keeps every byte until
 * the opener acknowledged it, so nothing waits in a queue of the tunnel and a slow tunnel
 * only stops the reading of the service sockets).
 *
 * What a stream keeps: the service's bytes not yet acknowledged by the opener (at most its
 * window, for the resend after a bridge change: reading of the service stops there), and
 * the opener's bytes being written into the service socket (at most its window too: the
 * opener may not send more before the house's ack). A stream whose bridge went away keeps its
 * service connection for `grace_ms`; the next bridge gets S_ATTACH {sid, rcv_next, snd_acked}
 * and the bytes again from snd_acked. A finished stream leaves a small record (its sid and
 * the outcome of its open) for keep_closed_ms, so that an S_OPEN delivered again after a
 * failover is answered with the outcome it had, never with a second connect.
 *
 * Choices the contract leaves to the house:
 * - An S_OPEN of a sid the house knows (live, or a record) is answered with the outcome it
 *   had (200, 400, 403, 502, 503), never with a second connect, and never 409 (stream_exists
 *   is the bridge's answer, from the keys in Redis). Still connecting: the one S_OPENED comes
 *   when the connect ends. A stream the house reset gets its rst again after the S_OPENED.
 * - S_ENTRY for a sid the house does not know, that was refused, that ended, or that has no
 *   200 yet is ignored (a debug line): the bridge relays `sin` once it has the S_OPENED 200.
 * - Every frame of a stream goes on one rudp lane (0x80000000 | a hash of its sid), so the
 *   S_OPENED, data, fin and rst of a stream keep their order on rudp too.
 * - The house acknowledges `sin` bytes once they are in the service socket: when a quarter of
 *   the window was consumed, when everything delivered is consumed (caught up), at a fin,
 *   and every idle_ms / 3 (keep-alive); an ack rides along on every data entry.
 * - On a new connection (protocol 2): S_ATTACH for every open stream, an ack of `sin` at once,
 *   the bytes again from the opener's ack (and the fin); an rst the house sent for a stream
 *   it reset is sent again (it may have been lost), and a cleanly ended stream's last ack.
 *
 * One module per house, no file-scope state; one uv_timer for every stream. */
#ifndef HS_STREAMS_H
#define HS_STREAMS_H

#include "house.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HS_STREAMS_MAX_DEFAULT 256u
#define HS_STREAMS_GRACE_DEFAULT_MS 30000u
#define HS_STREAMS_KEEP_MIN_MS 60000u /* records of finished streams: max(this, 2 x idle) */
#define HS_STREAMS_CHUNK 65536u       /* data bytes per S_ENTRY the house writes */

typedef struct hs_streams hs_streams;

typedef struct hs_streams_conf {
    const hs_tcp_service *services; /* borrowed: lives as long as the module */
    size_t nservices;
    uint32_t max_streams;    /* open streams at once (more: 503); 0: the default */
    uint64_t grace_ms;       /* service connections kept while no bridge carries them */
    uint64_t keep_closed_ms; /* 0: max(HS_STREAMS_KEEP_MIN_MS, 2 x the stream's idle_ms) */
    /* HTTP upstreams (borrowed, as services): an open of `http:<name>` connects to the host
     * and port of --service <name>=URL, `http:` to those of --upstream (http_default, NULL:
     * none). An https:// one runs TLS over that connection, and the stream carries the
     * plaintext: the open succeeds once the handshake did, its certificate verified as curl
     * verifies the house's requests to it: against tls_ca_file's CAs (PEM; NULL or "": the
     * system's), the URL's host checked; tls_insecure: not verified at all. */
    const hs_service *http;
    size_t nhttp;
    const char *http_default;
    const char *tls_ca_file; /* borrowed */
    int tls_insecure;
    hs_metrics *m; /* NULL: none (a registry-less hs_metrics is fine too) */
    hs_zstate *zs; /* compression state shared by the houses of a process, or NULL */
    /* Frames are due (hs_streams_pending went 1): the tunnel pulls them when it can write.
     * Called from inside hs_streams_* calls and loop callbacks: it must not call back into
     * the module synchronously (the tunnel only marks itself writable). */
    void (*wake)(void *ud);
    void *ud;
} hs_streams_conf;

/* NULL: out of memory. The timer is initialised on loop at once. */
hs_streams *hs_streams_new(uv_loop_t *loop, const hs_streams_conf *conf);

/* A frame the bridge sent: S_OPEN or S_ENTRY (anything else is ignored: the tunnel decides
 * what is a protocol error). Every field is checked; a bad one answers that stream only
 * (S_OPENED 400, or an rst for an entry), never the others. */
void hs_streams_on_frame(hs_streams *st, const gp_frame *f);

/* A connection to a bridge is live and speaks `proto` (GP_PROTO_STREAMS and up: frames may
 * flow; every open stream is announced with S_ATTACH and resumes from the opener's last
 * ack). Below GP_PROTO_STREAMS nothing is sent: the streams wait as with no tunnel. */
void hs_streams_tunnel_up(hs_streams *st, int proto);
/* The connection is gone: the grace of every open stream starts. */
void hs_streams_tunnel_down(hs_streams *st);

/* 1 while a frame is waiting to be pulled (tunnel up with streams). */
int hs_streams_pending(const hs_streams *st);
/* The next frame, if one is due and encodes into at most `max` bytes (header included):
 * returns 1 with *f filled (its strings borrow from st until the next call) and *lane the
 * stream's rudp lane (every frame of a stream on the same one); 0 when none fits now. The
 * frame counts as written: one lost with its connection is resent after the next
 * hs_streams_tunnel_up (bytes from the opener's ack; S_OPEN is delivered again anyway). */
int hs_streams_pull(hs_streams *st, size_t max, gp_frame *f, uint32_t *lane);

/* Streams with a service connection (connecting or open), and records kept of ended ones. */
size_t hs_streams_open_count(const hs_streams *st);
size_t hs_streams_record_count(const hs_streams *st);

/* Shutdown: closes every service connection (no frame is sent any more) and the timer;
 * the loop completes it. */
void hs_streams_stop(hs_streams *st);
void hs_streams_free(hs_streams *st); /* after hs_streams_stop and the loop ran dry; NULL ok */

#endif
