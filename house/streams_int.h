/* streams_int.h — what the two files of the house's TCP streams share: streams.c (the table
 * of streams, their endpoint state and records, the frames in and out, the clock) and
 * streams_svc.c (a stream's service connection: connect, TLS, read, write, half-close,
 * close). Private to those two files: the rest of the house sees only streams.h. */
#ifndef HS_STREAMS_INT_H
#define HS_STREAMS_INT_H

#include "stream.h"
#include "streams.h"
#include "tls.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NBUCKETS 64u

/* Service bytes not yet acknowledged by the opener. */
typedef struct chunk {
    struct chunk *next;
    uint64_t off; /* offset of b[0] in the service->opener direction */
    size_t len, cap;
    uint8_t b[];
} chunk;

enum tstate { TS_RESOLVING, TS_CONNECTING, TS_TLS /* handshake */, TS_OPEN, TS_DEAD };

typedef struct hs_tcp hs_tcp;
struct hs_tcp {
    hs_streams *st;
    hs_tcp *hnext;         /* hash chain */
    hs_tcp *onext;         /* output ring */
    hs_tcp *dprev, *dnext; /* records, oldest first */
    int in_out, in_dead;
    char sid[GP_STREAM_ID_MAX + 1]; /* as received (1-64 bytes; may be refused) */
    size_t sidlen;
    char service[GP_STREAM_ID_MAX + 1];
    const hs_tcp_service *svc;
    uint32_t lane;
    enum tstate state;
    gp_stream g;
    uint64_t deadline_ms;   /* connect deadline */
    uint32_t timeout_ms;    /* the open's */
    uint64_t dead_until_ms; /* record expiry */
    uint64_t keep_ms;
    /* the outcome of the open (S_OPENED), 0 while connecting */
    uint16_t status;
    const char *error; /* static */
    char message[GP_STREAM_MESSAGE_MAX + 1];
    int opened_due, attach_due, rst_due, ack_force, rst_by_house, ever_open;
    int final_ack_due; /* a cleanly ended stream: our last ack again (it may have been lost) */
    char rst[GP_STREAM_REASON_MAX + 1];
    char rst_msg[GP_STREAM_MESSAGE_MAX + 1];
    /* the service connection */
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    uv_shutdown_t sreq;
    int tcp_init, tcp_closing, pending; /* pending: the handle and requests not called back */
    int reading, svc_eof, shut_done, resolving;
    hs_tls tls;   /* an https:// upstream's session (none: plain) */
    int sock_eof; /* TLS: the socket's EOF came (svc_eof once the session has given all) */
    /* service -> opener: bytes [g.snd_acked, read_end) in chunks */
    chunk *ch, *ct;
    uint64_t read_end;
    size_t chunk_bytes; /* allocated */
    /* opener -> service: writes in flight */
    size_t wbytes;
    uint64_t from_service, to_service;
};

struct hs_streams {
    uv_loop_t *loop;
    hs_streams_conf conf;
    hs_tcp *buckets[NBUCKETS];
    hs_tcp *out_head, *out_tail;
    hs_tcp *dead_head, *dead_tail;
    size_t nlive, nrec;
    int up, proto, stopping;
    uint64_t down_ms; /* when the tunnel went down (grace), valid while !up */
    uv_timer_t timer;
    int timer_open;
    uint64_t armed_at; /* 0: not armed */
    hs_zstate *zs_own;
    uint8_t *scratch; /* a pulled frame's data (SCRATCH bytes, with the first; a house of a load
                         test with thousands in a process never makes it) */
    char sid_out[GP_STREAM_ID_MAX + 1];
    char msg_out[GP_STREAM_MESSAGE_MAX + 1];
    char err_out[40];
    char rst_out[GP_STREAM_REASON_MAX + 1];
    /* The HTTP upstreams as services "http:<name>". */
    hs_tcp_service *http;
    size_t nhttp;
    /* https:// upstreams: the TLS context and the buffer their ciphertext is read into, both
     * made with the first such stream (most houses have none) */
    SSL_CTX *tls_ctx;
    uint8_t *tls_rd;
};

static inline uint64_t hs_st_now_ms(const hs_streams *st) {
    return uv_now(st->loop);
}

/* ---- streams.c: the stream's state, records, frames ---- */

/* Something is due at `when` (ms, uv_now's clock): the module's timer fires no later. */
void hs_st_arm(hs_streams *st, uint64_t when);
/* The stream may have a frame to say: into the output ring (and the tunnel woken). */
void hs_st_want_out(hs_tcp *s);
void hs_st_count_bytes(hs_streams *st, const char *dir, size_t n);
/* The outcome of the open (S_OPENED), logged and counted. */
void hs_st_set_outcome(hs_tcp *s, uint16_t status, const char *error, const char *message);
/* The stream has no service connection any more: it becomes a record (reset: the service
 * sees a reset). */
void hs_st_go_dead(hs_tcp *s, int reset);
/* The house ends the stream with an rst to the opener. */
void hs_st_house_reset(hs_tcp *s, const char *reason, const char *message);
/* Ends the stream if both directions ended cleanly. */
void hs_st_check_done(hs_tcp *s);
/* Frees a record once expired and nothing of the loop refers to it: 1 if it went. */
int hs_st_maybe_free(hs_tcp *s, uint64_t now);

/* ---- streams_svc.c: the service connection ---- */

/* Resolves and connects to s->svc (then TLS for an https:// upstream); the open succeeds or
 * fails (hs_svc_fail_open) when that ends. */
void hs_svc_connect(hs_tcp *s);
/* The open fails: 502 upstream_unreachable, "connect to host:port (service): what" (err: a
 * libuv error, what NULL: its text). */
void hs_svc_fail_open(hs_tcp *s, const char *what, int err);
/* Ends the connection: a resolve under way is canceled, the socket closed (reset: with
 * SO_LINGER 0, so the service sees a reset). */
void hs_svc_close(hs_tcp *s, int reset);
/* Reads the service only while its bytes fit the opener's window. */
void hs_svc_update_reading(hs_tcp *s);
/* The opener acknowledged up to g.snd_acked: those bytes go. */
void hs_svc_drop_acked(hs_tcp *s);
/* The opener's fin, once every byte of it is written: our half-close. */
void hs_svc_maybe_shutdown(hs_tcp *s);
/* n of the opener's bytes to the service. 0, or -1 with why (the stream is to be reset). */
int hs_svc_deliver(hs_tcp *s, const uint8_t *p, size_t n, char *why, size_t whylen);

#endif
