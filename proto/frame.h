/* frame.h — the Ghost Port tunnel frame codec (pure, sans-I/O).
 *
 * One binary frame format serves both transports (wss:// and, later, rudp://). A frame is a
 * fixed 12-byte header followed by a type-specific payload:
 *
 *   0      1      2      3      4            8            12
 *   +------+------+------+------+------------+------------+---------------
 *   | ver  | type | flags| rsvd | stream u32 | length u32 | payload (length bytes)
 *   +------+------+------+------+------------+------------+---------------
 *
 * All integers are big-endian. `ver` is GP_PROTO_VERSION. `stream` identifies one request/
 * response exchange on the connection (assigned by the bridge, never 0 for request frames;
 * 0 for connection-level frames). `length` is checked against the decoder's limit before
 * anything is allocated or waited for. Strings inside payloads are u16-length-prefixed byte
 * strings, headers are a u16 count of (u16 name, u32 value) pairs. Decoders never cast a
 * struct onto wire bytes; decoded frames borrow pointers into the input buffer.
 *
 * Payloads by type (fields in order):
 *   HELLO      u8 min_ver, u8 max_ver, str house_id, 32B house_nonce
 *   CHALLENGE  32B bridge_nonce, 32B bridge_proof
 *   AUTH       32B house_proof
 *   WELCOME    str bridge_id, u32 max_frame, u32 ping_interval_ms, u32 window (initial
 *              per-stream credit in bytes), u64 epoch
 *   REQ_HEAD   str frame_id, str method, str path, str service, headers, u32 timeout_ms
 *              (remaining time at send), u64 body_len (total; GP_LEN_UNKNOWN if unknown)
 *   REQ_BODY   raw bytes (zstd if GP_FLAG_ZSTD)        -- GP_FLAG_FIN on the last piece
 *   RESP_HEAD  u16 status, headers, str error (empty = upstream reply), str message,
 *              u64 body_len (GP_LEN_UNKNOWN if unknown)
 *   RESP_BODY  raw bytes (zstd if GP_FLAG_ZSTD)        -- GP_FLAG_FIN on the last piece
 *   CANCEL     str reason
 *   PING/PONG  u64 opaque (the sender's clock; echoed unchanged in PONG)
 *   CREDIT     u32 increment (bytes the receiver may additionally accept on `stream`;
 *              stream 0 = connection-level)
 *   GOAWAY     u16 code, str message
 * TCP streams through Redis (proto/STREAMS.md; protocol 2, `stream` 0, a stream is named by
 * its contract id `sid` since it outlives any one tunnel connection):
 *   S_OPEN     str sid, str service, u32 window, u32 idle_ms, u32 timeout_ms   (bridge->house)
 *   S_OPENED   str sid, u16 status, str error, str message                      (house->bridge)
 *   S_ENTRY    str sid, u8 has (GP_SE_*), u64 off, u64 ack, u32 win, str rst, str message,
 *              then data to the end (zstd if GP_FLAG_ZSTD): one entry of the contract, from
 *              `sin` (bridge->house) or for `sout` (house->bridge)
 *   S_ATTACH   str sid, u64 rcv_next (the sin bytes the house has), u64 snd_acked (the sout
 *              bytes the opener acknowledged), u32 window (the opener's receive window),
 *              u32 idle_ms   (house->bridge, after WELCOME: a stream the house still holds,
 *              to be carried by this bridge from those offsets, with the open's terms)
 * The L3 tunnel (proto/TUN.md; protocol 3, `stream` 0; IP packets themselves ride rudp's
 * datagrams, not frames):
 *   L3_REQ     u16 mtu (largest IP packet the house's TUN device takes), str routes (the
 *              prefixes the house asks to route, comma-separated; may be empty)  (house->bridge)
 *   L3_GRANT   u16 status (200: granted), str error, str message, str addrs (the house's
 *              addresses, comma-separated, one IPv4 and/or one IPv6), str hub (the prefixes
 *              the house routes into its TUN toward the hub), str routes (those of the
 *              request the house may route), u16 mtu (the tunnel's: the house sets it on its
 *              TUN)                                                               (bridge->house)
 * WELCOME carries one more byte, u8 proto (the version the bridge speaks with this house),
 * only when the house's HELLO offered 2 or more: a house of protocol 1 gets the frame it knows.
 * A HEAD with GP_FLAG_FIN carries the whole exchange (no body frames follow).
 * Unknown flags bits must be zero; unknown types are GP_ERR_MALFORMED.
 */
#ifndef GP_FRAME_H
#define GP_FRAME_H

#include "gp.h"

/* The frame format (the header's `ver` byte): unchanged since the first house. */
#define GP_PROTO_VERSION 1
/* What HELLO negotiates: the protocol spoken on top of that format. 1: requests; 2: adds
 * TCP streams (S_* frames). A bridge or house only sends S_* frames once both speak 2. */
#define GP_PROTO_MIN 1
#define GP_PROTO_MAX 3
#define GP_PROTO_STREAMS 2
#define GP_PROTO_L3 3 /* adds the L3 tunnel (L3_* frames, and IP packets as rudp datagrams) */
#define GP_L3_LIST_MAX 4096u /* bytes of a comma-separated list in an L3 frame */
#define GP_FRAME_HEADER_LEN 12
#define GP_NONCE_LEN 32
#define GP_PROOF_LEN 32
#define GP_MAX_HEADERS 128            /* header pairs per HEAD frame */
#define GP_DEFAULT_MAX_FRAME 1048576u /* default payload limit (1 MiB) */
#define GP_BODY_CHUNK 65536u /* body bytes per BODY frame: big bodies never hold up small ones */
#define GP_LEN_UNKNOWN UINT64_MAX

enum gp_frame_type {
    GP_FRAME_HELLO = 1,
    GP_FRAME_CHALLENGE = 2,
    GP_FRAME_AUTH = 3,
    GP_FRAME_WELCOME = 4,
    GP_FRAME_REQ_HEAD = 5,
    GP_FRAME_REQ_BODY = 6,
    GP_FRAME_RESP_HEAD = 7,
    GP_FRAME_RESP_BODY = 8,
    GP_FRAME_CANCEL = 9,
    GP_FRAME_PING = 10,
    GP_FRAME_PONG = 11,
    GP_FRAME_CREDIT = 12,
    GP_FRAME_GOAWAY = 13,
    GP_FRAME_S_OPEN = 14,
    GP_FRAME_S_OPENED = 15,
    GP_FRAME_S_ENTRY = 16,
    GP_FRAME_S_ATTACH = 17,
    GP_FRAME_L3_REQ = 18,
    GP_FRAME_L3_GRANT = 19,
    GP_FRAME_TYPE_MAX = 19,
};

/* S_ENTRY `has` bits: which of the entry's fields are present (as gp_stream_entry's has_*). */
enum {
    GP_SE_OFF = 0x01,
    GP_SE_ACK = 0x02,
    GP_SE_WIN = 0x04,
    GP_SE_FIN = 0x08,
    GP_SE_MASK = 0x0f,
};

enum {
    GP_FLAG_FIN = 0x01,  /* last frame of this direction of the stream */
    GP_FLAG_ZSTD = 0x02, /* BODY payload is one zstd frame (see compress.h) */
    GP_FLAG_MASK = 0x03,
};

/* GOAWAY codes */
enum {
    GP_GOAWAY_DRAINING = 1,   /* bridge shutting down: reconnect elsewhere */
    GP_GOAWAY_FENCED = 2,     /* another connection of this house took over */
    GP_GOAWAY_AUTH = 3,       /* authentication failed (same answer for unknown id/bad proof) */
    GP_GOAWAY_PROTOCOL = 4,   /* peer sent an invalid frame */
    GP_GOAWAY_RATE_LIMIT = 5, /* too many failed attempts from this address */
};
/* The message of GOAWAY(AUTH) to a house that proved its secret but is disabled (PROTOCOL.md,
 * Goaway): the house then tries again after a short fixed delay, not its long one, so that an
 * enabled house is back within seconds. */
#define GP_GOAWAY_MSG_DISABLED "house disabled"

typedef struct gp_header {
    gp_str name;
    gp_str value;
} gp_header;

typedef struct gp_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t stream;
    union {
        struct {
            uint8_t min_ver, max_ver;
            gp_str house_id;
            const uint8_t *nonce;
        } hello;
        struct {
            const uint8_t *nonce;
            const uint8_t *proof;
        } challenge;
        struct {
            const uint8_t *proof;
        } auth;
        struct {
            gp_str bridge_id;
            uint32_t max_frame, ping_interval_ms, window;
            uint64_t epoch;
            uint8_t proto; /* 0: absent, a protocol-1 WELCOME (encode 0 to leave it out) */
        } welcome;
        struct {
            gp_str frame_id, method, path, service;
            size_t nheaders;
            gp_header *headers; /* encode: caller's array; decode: points into gp_frame.hbuf */
            uint32_t timeout_ms;
            uint64_t body_len;
        } req_head;
        struct {
            uint16_t status;
            size_t nheaders;
            gp_header *headers;
            gp_str error, message;
            uint64_t body_len;
        } resp_head;
        struct {
            gp_str data;
        } body; /* REQ_BODY and RESP_BODY: payload as on the wire */
        struct {
            gp_str reason;
        } cancel;
        struct {
            uint64_t opaque;
        } ping; /* PING and PONG */
        struct {
            uint32_t increment;
        } credit;
        struct {
            uint16_t code;
            gp_str message;
        } goaway;
        struct {
            gp_str sid, service;
            uint32_t window, idle_ms, timeout_ms;
        } s_open;
        struct {
            gp_str sid;
            uint16_t status;
            gp_str error, message;
        } s_opened;
        struct {
            gp_str sid;
            uint8_t has; /* GP_SE_* */
            uint64_t off, ack;
            uint32_t win;
            gp_str rst, message, data;
        } s_entry;
        struct {
            gp_str sid;
            uint64_t rcv_next, snd_acked;
            uint32_t window, idle_ms;
        } s_attach;
        struct {
            uint16_t mtu;
            gp_str routes;
        } l3_req;
        struct {
            uint16_t status;
            gp_str error, message, addrs, hub, routes;
            uint16_t mtu;
        } l3_grant;
    } u;
    gp_header hbuf[GP_MAX_HEADERS]; /* storage the decoder fills for HEAD frames */
} gp_frame;

/* Bytes gp_frame_encode() will write for `f` (header included). */
size_t gp_frame_size(const gp_frame *f);

/* Encodes `f` into buf[0..cap). Returns bytes written, GP_ERR_BUFFER if cap is too small,
 * GP_ERR_TOO_LARGE if a field cannot be represented (string over 65535, > GP_MAX_HEADERS
 * headers, payload over UINT32_MAX), GP_ERR_INVALID for an unknown type or flag. */
ssize_t gp_frame_encode(const gp_frame *f, uint8_t *buf, size_t cap);

/* Decodes one complete frame from p[0..len). `max_payload` bounds the header's length field.
 * On success returns the bytes consumed (header + payload) and fills *out, whose gp_str
 * members borrow from p. Returns GP_ERR_TRUNCATED when p holds less than a whole frame (the
 * header alone is enough to know whether the length is acceptable: an oversize length is
 * GP_ERR_TOO_LARGE even before its payload arrives), GP_ERR_VERSION, GP_ERR_MALFORMED
 * (unknown type/flags, a field overrunning the payload, trailing bytes in the payload). */
ssize_t gp_frame_decode(const uint8_t *p, size_t len, uint32_t max_payload, gp_frame *out);

/* Streaming reassembly: feed arbitrary byte slices (a WebSocket message, a fragment, or a
 * byte at a time), take whole frames out. Errors are sticky (as hiredis's reader): once
 * gp_framer_next() fails, every later call fails with the same code; close the connection. */
typedef struct gp_framer gp_framer;

/* max_payload: per-frame payload limit. Returns NULL on allocation failure. */
gp_framer *gp_framer_new(uint32_t max_payload);
void gp_framer_free(gp_framer *fr); /* NULL ok */

/* Copies p[0..len) in. Returns 0, GP_ERR_NOMEM, or the sticky error. */
int gp_framer_feed(gp_framer *fr, const uint8_t *p, size_t len);

/* Returns 1 and fills *out with the next whole frame (borrowing from the framer's buffer
 * until the next feed/next call), 0 if more bytes are needed, or a negative error. */
int gp_framer_next(gp_framer *fr, gp_frame *out);

/* Bytes buffered but not yet returned as frames. */
size_t gp_framer_pending(const gp_framer *fr);

const char *gp_frame_type_name(uint8_t type);

/* *f emptied and made a frame of `type` on `stream` with `flags`: every payload field zero,
 * for the caller to fill. */
void gp_frame_init(gp_frame *f, uint8_t type, uint32_t stream, uint8_t flags);

/* Keepalive, as both ends do it. A PING carrying opaque (our monotonic clock in µs) into
 * *out; the PONG answering a PING (its opaque echoed) into *out. */
void gp_frame_ping(gp_frame *out, uint64_t opaque);
void gp_frame_pong(gp_frame *out, const gp_frame *ping);
/* The round trip a PONG reports when our PING's opaque was our monotonic clock in µs: 1 with
 * *rtt_us = now_us - opaque, or 0 (nothing written) when the opaque is from the future, so
 * not ours. */
int gp_frame_pong_rtt(const gp_frame *pong, uint64_t now_us, uint64_t *rtt_us);

#endif
