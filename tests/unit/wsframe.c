/* Unit tests for the house's WebSocket client framing (proto/wsframe.c): headers of every
 * length class, masking at any alignment, the receiving side fed whole or one byte at a time
 * (payload handed up in place, fragmented messages, control frames between fragments), every
 * refusal of what a server may not send, the upgrade answer's checks (RFC 6455's own example
 * key) and the bridge URL. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gp.h"
#include "wsframe.h"

/* What the receiving side handed up. */
typedef struct got {
    uint8_t data[1 << 17];
    size_t n;
    unsigned data_op;
    int ndata;
    unsigned ctl_op[8];
    uint8_t ctl[8][GP_WS_CTL_MAX];
    size_t ctl_len[8];
    int nctl;
    int stop_at_ctl; /* on_control returns 7 for the control frame of this number (1-based) */
} got;

static int on_data(void *ud, unsigned op, const uint8_t *p, size_t n) {
    got *g = ud;
    cr_assert(n > 0, "on_data with no bytes");
    cr_assert(g->n + n <= sizeof g->data);
    memcpy(g->data + g->n, p, n);
    g->n += n;
    g->data_op = op;
    g->ndata++;
    return 0;
}

static int on_control(void *ud, unsigned op, const uint8_t *p, size_t n) {
    got *g = ud;
    cr_assert(g->nctl < 8);
    g->ctl_op[g->nctl] = op;
    memcpy(g->ctl[g->nctl], p, n);
    g->ctl_len[g->nctl] = n;
    g->nctl++;
    return g->stop_at_ctl == g->nctl ? 7 : 0;
}

/* A server frame (unmasked) into out; returns its length. */
static size_t server_frame(uint8_t *out, int fin, unsigned op, const uint8_t *p, size_t n) {
    size_t k = 0;
    out[k++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        out[k++] = (uint8_t)n;
    } else if (n <= 0xffff) {
        out[k++] = 126, out[k++] = (uint8_t)(n >> 8), out[k++] = (uint8_t)n;
    } else {
        out[k++] = 127;
        for (int i = 7; i >= 0; i--)
            out[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (n)
        memcpy(out + k, p, n);
    return k + n;
}

/* Feeds buf whole (step 0) or step bytes at a time; the last return code. */
static int feed(gp_ws_rx *rx, got *g, const uint8_t *buf, size_t n, size_t step, const char **why) {
    gp_ws_rx_cb cb = {.ud = g, .on_data = on_data, .on_control = on_control};
    if (!step)
        return gp_ws_rx_feed(rx, buf, n, &cb, why);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += step)
        rc = gp_ws_rx_feed(rx, buf + i, n - i < step ? n - i : step, &cb, why);
    return rc;
}

Test(wsframe, client_header_of_each_length_class) {
    const uint8_t mask[4] = {1, 2, 3, 4};
    uint8_t h[GP_WS_HDR_MAX];
    cr_assert_eq(gp_ws_client_header(h, GP_WS_BINARY, 125, mask), 6);
    cr_assert(h[0] == 0x82 && h[1] == (0x80 | 125) && memcmp(h + 2, mask, 4) == 0);
    cr_assert_eq(gp_ws_client_header(h, GP_WS_BINARY, 126, mask), 8);
    cr_assert(h[1] == (0x80 | 126) && h[2] == 0 && h[3] == 126);
    cr_assert_eq(gp_ws_client_header(h, GP_WS_CLOSE, 65535, mask), 8);
    cr_assert(h[0] == 0x88 && h[2] == 0xff && h[3] == 0xff);
    cr_assert_eq(gp_ws_client_header(h, GP_WS_BINARY, 65536, mask), 14);
    cr_assert(h[1] == (0x80 | 127) && h[7] == 1 && h[8] == 0 && h[9] == 0);
    cr_assert(memcmp(h + 10, mask, 4) == 0);
}

Test(wsframe, masking_is_its_own_inverse_at_any_length) {
    const uint8_t mask[4] = {0xa5, 0x3c, 0x0f, 0xf0};
    uint8_t p[37], orig[37];
    for (size_t i = 0; i < sizeof p; i++)
        orig[i] = (uint8_t)(i * 7 + 1);
    for (size_t n = 0; n <= sizeof p; n++) {
        memcpy(p, orig, sizeof p);
        gp_ws_mask(p, n, mask);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(p[i], orig[i] ^ mask[i & 3], "byte %zu of %zu", i, n);
        cr_assert(memcmp(p + n, orig + n, sizeof p - n) == 0, "masked past n");
        gp_ws_mask(p, n, mask);
        cr_assert(memcmp(p, orig, sizeof p) == 0);
    }
}

Test(wsframe, frames_whole_or_byte_by_byte) {
    static uint8_t big[70000], buf[80000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31);
    size_t n = 0;
    n += server_frame(buf + n, 1, GP_WS_BINARY, big, 100);
    n += server_frame(buf + n, 1, GP_WS_PING, (const uint8_t *)"hi", 2);
    n += server_frame(buf + n, 1, GP_WS_BINARY, big + 100, 300);
    n += server_frame(buf + n, 1, GP_WS_BINARY, big + 400, sizeof big - 400);
    n += server_frame(buf + n, 1, GP_WS_PONG, NULL, 0);
    for (size_t step = 0; step <= 7; step += 7) {
        for (size_t s = step ? 1 : 0; s <= step; s += step ? 6 : 1) {
            got *g = calloc(1, sizeof *g);
            gp_ws_rx rx;
            gp_ws_rx_init(&rx);
            const char *why = NULL;
            cr_assert_eq(feed(&rx, g, buf, n, s, &why), 0, "step %zu: %s", s, why ? why : "");
            cr_assert_eq(g->n, sizeof big, "step %zu: %zu bytes", s, g->n);
            cr_assert(memcmp(g->data, big, sizeof big) == 0);
            cr_assert_eq(g->data_op, GP_WS_BINARY);
            cr_assert_eq(g->nctl, 2);
            cr_assert(g->ctl_op[0] == GP_WS_PING && g->ctl_len[0] == 2 &&
                      memcmp(g->ctl[0], "hi", 2) == 0);
            cr_assert(g->ctl_op[1] == GP_WS_PONG && g->ctl_len[1] == 0);
            if (!s)
                cr_assert_eq(g->ndata, 3, "whole: each data frame handed up in one piece");
            free(g);
        }
    }
}

Test(wsframe, a_fragmented_message_with_a_ping_inside) {
    uint8_t buf[256];
    size_t n = 0;
    n += server_frame(buf + n, 0, GP_WS_TEXT, (const uint8_t *)"hel", 3);
    n += server_frame(buf + n, 1, GP_WS_PING, (const uint8_t *)"p", 1);
    n += server_frame(buf + n, 0, GP_WS_CONT, NULL, 0);
    n += server_frame(buf + n, 1, GP_WS_CONT, (const uint8_t *)"lo", 2);
    n += server_frame(buf + n, 1, GP_WS_BINARY, (const uint8_t *)"!", 1);
    got *g = calloc(1, sizeof *g);
    gp_ws_rx rx;
    gp_ws_rx_init(&rx);
    const char *why;
    cr_assert_eq(feed(&rx, g, buf, n, 0, &why), 0, "%s", why ? why : "");
    cr_assert_eq(g->n, 6);
    cr_assert(memcmp(g->data, "hello!", 6) == 0);
    cr_assert_eq(g->data_op, GP_WS_BINARY);
    cr_assert_eq(g->nctl, 1);
    free(g);
}

Test(wsframe, a_callbacks_stop_is_returned_at_once) {
    uint8_t buf[64];
    size_t n = server_frame(buf, 1, GP_WS_CLOSE, (const uint8_t *)"\x03\xe8", 2);
    n += server_frame(buf + n, 1, GP_WS_BINARY, (const uint8_t *)"after", 5);
    got *g = calloc(1, sizeof *g);
    g->stop_at_ctl = 1;
    gp_ws_rx rx;
    gp_ws_rx_init(&rx);
    const char *why;
    cr_assert_eq(feed(&rx, g, buf, n, 0, &why), 7);
    cr_assert_eq(g->n, 0, "bytes after the stop were read");
    cr_assert(g->ctl_len[0] == 2 && g->ctl[0][0] == 3 && g->ctl[0][1] == 0xe8);
    free(g);
}

Test(wsframe, what_a_server_may_not_send) {
    struct {
        uint8_t b[12];
        size_t n;
        const char *needle;
    } bad[] = {
        {{0xc2, 0x00}, 2, "reserved"},                        /* RSV1: no extension agreed */
        {{0x82, 0x81, 1, 2, 3, 4, 0}, 7, "masked"},           /* servers never mask */
        {{0x83, 0x00}, 2, "unknown opcode"},                  /* opcode 3 */
        {{0x8b, 0x00}, 2, "unknown opcode"},                  /* opcode 11 */
        {{0x09, 0x00}, 2, "fragmented control"},              /* ping without FIN */
        {{0x89, 126, 0, 126}, 4, "over 125"},                 /* a long ping */
        {{0x80, 0x00}, 2, "continuation frame outside"},      /* nothing to continue */
        {{0x02, 0x00, 0x82, 0x00}, 4, "inside a fragmented"}, /* a new message mid-message */
        {{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, "2^63"}, /* the top bit of the length */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        for (size_t step = 0; step <= 1; step++) {
            got *g = calloc(1, sizeof *g);
            gp_ws_rx rx;
            gp_ws_rx_init(&rx);
            const char *why = NULL;
            cr_assert_eq(feed(&rx, g, bad[i].b, bad[i].n, step, &why), GP_WS_PROTOCOL_ERROR,
                         "case %zu accepted", i);
            cr_assert(why && strstr(why, bad[i].needle), "case %zu: %s", i, why ? why : "");
            free(g);
        }
}

/* RFC 6455, 1.3: key dGhlIHNhbXBsZSBub25jZQ== is answered s3pPLMBiTxaQ9kYGzzhZRbK+xOo=. */
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int check(const char *head, int *status, char *why) {
    return gp_ws_handshake_check(head, strlen(head), ACCEPT, "ghostport.v1", status, why, 200);
}

Test(wsframe, the_answer_to_the_upgrade) {
    int st;
    char why[200];
    cr_assert_eq(check("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                       "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n"
                       "Sec-WebSocket-Protocol: ghostport.v1\r\n\r\n",
                       &st, why),
                 0, "%s", why);
    cr_assert_eq(st, 101);
    cr_assert_eq(check("HTTP/1.1 403 Forbidden\r\n\r\n", &st, why), -1);
    cr_assert_eq(st, 403);
    cr_assert(strstr(why, "HTTP 403 Forbidden, not an upgrade"), "%s", why);
    cr_assert_eq(check("HTTP/1.1 404 \x01\x7f\r\n\r\n", &st, why), -1);
    cr_assert(strstr(why, "HTTP 404 ??"), "a reason phrase printed raw: %s", why);
    cr_assert_eq(check("SSH-2.0-OpenSSH\r\n\r\n", &st, why), -1);
    cr_assert(st == 0 && strstr(why, "did not answer in HTTP"), "%s", why);
    cr_assert_eq(check("HTTP/1.1 101 x\r\nConnection: upgrade\r\nSec-WebSocket-Accept: " ACCEPT
                       "\r\nSec-WebSocket-Protocol: ghostport.v1\r\n\r\n",
                       &st, why),
                 -1);
    cr_assert(strstr(why, "Upgrade: websocket"), "%s", why);
    cr_assert_eq(check("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " ACCEPT
                       "\r\nSec-WebSocket-Protocol: ghostport.v1\r\n\r\n",
                       &st, why),
                 -1);
    cr_assert(strstr(why, "Connection: upgrade"), "%s", why);
    cr_assert_eq(check("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n"
                       "Sec-WebSocket-Protocol: ghostport.v1\r\n\r\n",
                       &st, why),
                 -1);
    cr_assert(strstr(why, "does not match the key"), "%s", why);
    cr_assert_eq(check("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                       "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                       &st, why),
                 -1);
    cr_assert(strstr(why, "subprotocol ghostport.v1"), "%s", why);
    const char ok[] = "HTTP/1.1 101 x\r\n\r\n\x82\x01z";
    cr_assert_eq(gp_ws_head_end((const uint8_t *)ok, sizeof ok - 1), sizeof ok - 4);
    cr_assert_eq(gp_ws_head_end((const uint8_t *)ok, 17), 0, "a head without its blank line");
}

Test(wsframe, bridge_urls) {
    gp_ws_url u;
    cr_assert_eq(gp_ws_url_parse("wss://hub.example.com/", &u), 0);
    cr_assert(u.tls && u.port == 443 && !u.ipv6 && strcmp(u.host, "hub.example.com") == 0 &&
              strcmp(u.path, "/") == 0);
    cr_assert_eq(gp_ws_url_parse("ws://127.0.0.1:8080", &u), 0);
    cr_assert(!u.tls && u.port == 8080 && strcmp(u.host, "127.0.0.1") == 0 &&
              strcmp(u.path, "/") == 0);
    cr_assert_eq(gp_ws_url_parse("wss://[::1]:8443/gp/x?y", &u), 0);
    cr_assert(u.ipv6 && u.port == 8443 && strcmp(u.host, "::1") == 0 &&
              strcmp(u.path, "/gp/x?y") == 0);
    cr_assert_eq(gp_ws_url_parse("rudp://10.0.0.1:4433", &u), 0);
    cr_assert(u.rudp && !u.tls && u.port == 4433 && strcmp(u.host, "10.0.0.1") == 0);
    const char *bad[] = {"http://h/",      "wss://",       "wss://:443/", "wss://h:0/",
                         "wss://h:65536/", "wss://h:44x/", "wss://[::1/", "wss://u@h/",
                         "wss://h /",      "udp://h:1",    "wss://h:/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(gp_ws_url_parse(bad[i], &u), -1, "%s accepted", bad[i]);
}

/* proto/gp.c's header line split, which the upgrade answer and the house's upstream share. */
Test(wsframe, header_lines_split_at_the_first_colon) {
    gp_str n, v;
    const char *l = "Sec-WebSocket-Accept: \t a:b \t";
    cr_assert_eq(gp_header_split(l, strlen(l), &n, &v), 0);
    cr_assert(n.len == 20 && memcmp(n.p, "Sec-WebSocket-Accept", 20) == 0);
    cr_assert(v.len == 3 && memcmp(v.p, "a:b", 3) == 0, "value '%.*s'", (int)v.len, v.p);
    cr_assert_eq(gp_header_split("X:", 2, &n, &v), 0);
    cr_assert(n.len == 1 && v.len == 0);
    cr_assert_eq(gp_header_split(": v", 3, &n, &v), -1, "a header without a name");
    cr_assert_eq(gp_header_split("no colon", 8, &n, &v), -1);
}
