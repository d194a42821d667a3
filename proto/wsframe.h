/* wsframe.h — the client side of WebSocket framing (RFC 6455) and of its opening handshake,
 * for the house's ws:// and wss:// transport (house/tr_ws.c). Pure: no socket, no clock, no
 * randomness (the caller gives masks and keys).
 *
 * Why not libwebsockets' own client: its 4.1 parser takes every received byte through a state
 * machine call (lws_ws_client_rx_sm), which was 80% of the house's CPU while a TCP stream
 * uploads (perf, `make bench BENCH=streams`). Here a frame's header is parsed once and its
 * payload handed up in place, whatever its length. libwebsockets still dials, does TLS and
 * moves the bytes (a raw connection); the bridge's side is unchanged.
 *
 * Also the bridge URLs a house dials (ws://, wss://, rudp://), parsed here once.
 *
 * What a server may send is checked: no reserved bits (we offer no extension), no mask, known
 * opcodes, control frames whole and at most 125 bytes, continuations only inside a message, a
 * 64-bit length below 2^63. Anything else is a protocol error with a reason. */
#ifndef GP_WSFRAME_H
#define GP_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#define GP_WS_HDR_MAX 14u    /* a client frame's header: 2 + 8 (length) + 4 (mask) */
#define GP_WS_CTL_MAX 125u   /* a control frame's payload */
#define GP_WS_HEAD_MAX 8192u /* the server's answer to the upgrade, headers included */

enum {
    GP_WS_CONT = 0x0,
    GP_WS_TEXT = 0x1,
    GP_WS_BINARY = 0x2,
    GP_WS_CLOSE = 0x8,
    GP_WS_PING = 0x9,
    GP_WS_PONG = 0xa,
};

/* The header of one unfragmented client frame (FIN set) of n payload bytes, masked with mask,
 * written to h (GP_WS_HDR_MAX bytes of room). Returns its length (6, 8 or 14). */
size_t gp_ws_client_header(uint8_t *h, unsigned opcode, uint64_t n, const uint8_t mask[4]);

/* XORs p[0..n) with mask, the payload's first byte with mask[0] (masking and unmasking). */
void gp_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4]);

/* The receiving side's state; zero it (or gp_ws_rx_init) before the first byte. */
typedef struct gp_ws_rx {
    uint8_t hdr[10]; /* the current header, while it is incomplete */
    uint8_t hlen;    /* bytes of it held */
    uint8_t opcode;  /* the current frame's */
    uint8_t fin;
    uint8_t in_payload; /* the header is done: left bytes of payload follow */
    uint8_t in_message; /* a fragmented data message is under way (its first frame lacked FIN) */
    uint8_t msg_opcode; /* that message's opcode: text or binary */
    uint64_t left;      /* payload bytes of the current frame still to come */
    uint8_t ctl[GP_WS_CTL_MAX];
    uint8_t ctl_len;
} gp_ws_rx;

typedef struct gp_ws_rx_cb {
    void *ud;
    /* Payload bytes of a data message (opcode: GP_WS_TEXT or GP_WS_BINARY, also for its
     * continuations), in place: valid during the call. Never called with n 0. */
    int (*on_data)(void *ud, unsigned opcode, const uint8_t *p, size_t n);
    /* A whole control frame (close, ping or pong) and its payload. */
    int (*on_control)(void *ud, unsigned opcode, const uint8_t *p, size_t n);
} gp_ws_rx_cb;

#define GP_WS_PROTOCOL_ERROR (-1)

void gp_ws_rx_init(gp_ws_rx *rx);
/* Takes n bytes received from the server, calling cb as frames complete. Returns 0; a
 * callback's nonzero return (the rest of p is not read); or GP_WS_PROTOCOL_ERROR with *why a
 * static sentence (the connection cannot go on: close it with status 1002). */
int gp_ws_rx_feed(gp_ws_rx *rx, const uint8_t *p, size_t n, const gp_ws_rx_cb *cb,
                  const char **why);

/* Where the answer to the upgrade ends: the offset just past its blank line in p[0..n), 0
 * while it is not complete. */
size_t gp_ws_head_end(const uint8_t *p, size_t n);

/* Checks the server's answer to the upgrade, head[0..n) up to and including the blank line:
 * status 101, `Upgrade: websocket`, `Connection: upgrade`, `Sec-WebSocket-Accept` equal to
 * accept (the base64 SHA-1 of the key sent and RFC 6455's GUID: the caller computes it) and,
 * when protocol is not NULL, `Sec-WebSocket-Protocol` equal to it. 0, or -1 with why: for a
 * status other than 101 it names the status and its reason phrase (e.g. "the server answered
 * HTTP 403 Forbidden, not an upgrade to WebSocket"), and *status gets it (0 when the answer is
 * not HTTP). */
int gp_ws_handshake_check(const char *head, size_t n, const char *accept, const char *protocol,
                          int *status, char *why, size_t why_len);

/* A bridge URL: ws://HOST[:PORT][/PATH], wss://… or rudp://…, HOST a name, an IPv4 address
 * or an IPv6 one in brackets; PORT 1–65535, default 443 for wss, else 80; PATH from its '/',
 * default "/" (rudp ignores it). No user info, no spaces or control bytes. */
typedef struct gp_ws_url {
    int tls;
    int rudp;
    int port;
    int ipv6;       /* host is an IPv6 literal (given in brackets) */
    char host[256]; /* without brackets */
    char path[512];
} gp_ws_url;
int gp_ws_url_parse(const char *url, gp_ws_url *u); /* 0, or -1 when it is not such a URL */

#endif
