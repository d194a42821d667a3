/* fuzz_wsframe.c — libFuzzer target for the house's WebSocket client side (proto/wsframe.c):
 * what a bridge (or whoever answers in its place) sends. The input's first byte picks a chunk
 * size; the rest is fed to the receiving side in chunks of it, and also checked as an answer
 * to the upgrade and parsed as a bridge URL. Properties: data is never handed up empty or past
 * the input, control payloads stay within 125 bytes, a refusal always says why, and feeding
 * whole or in chunks gives the same bytes up to the first refusal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

typedef struct sink {
    size_t bytes, ctl;
    uint64_t sum;
} sink;

static int on_data(void *ud, unsigned op, const uint8_t *p, size_t n) {
    sink *s = ud;
    if (n == 0 || (op != GP_WS_TEXT && op != GP_WS_BINARY))
        abort();
    for (size_t i = 0; i < n; i++)
        s->sum = s->sum * 31 + p[i];
    s->bytes += n;
    return 0;
}

static int on_control(void *ud, unsigned op, const uint8_t *p, size_t n) {
    sink *s = ud;
    (void)p;
    if (n > GP_WS_CTL_MAX || op < GP_WS_CLOSE || op > GP_WS_PONG)
        abort();
    s->ctl++;
    return 0;
}

static int run(const uint8_t *p, size_t n, size_t chunk, sink *s) {
    gp_ws_rx rx;
    gp_ws_rx_init(&rx);
    gp_ws_rx_cb cb = {.ud = s, .on_data = on_data, .on_control = on_control};
    for (size_t i = 0; i < n; i += chunk) {
        const char *why = NULL;
        int rc = gp_ws_rx_feed(&rx, p + i, n - i < chunk ? n - i : chunk, &cb, &why);
        if (rc == GP_WS_PROTOCOL_ERROR && !why)
            abort();
        if (rc)
            return rc;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    sink whole = {0, 0, 0}, parts = {0, 0, 0};
    int a = run(p, n, n ? n : 1, &whole), b = run(p, n, chunk, &parts);
    if (a != b || whole.bytes > n)
        abort();
    if (a == 0 && (whole.bytes != parts.bytes || whole.sum != parts.sum || whole.ctl != parts.ctl))
        abort();

    int status;
    char why[200];
    if (gp_ws_handshake_check((const char *)p, n, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "ghostport.v1",
                              &status, why, sizeof why) != 0 &&
        (!why[0] || strlen(why) >= sizeof why))
        abort();
    (void)gp_ws_head_end(p, n);
    char url[600];
    size_t ul = n < sizeof url - 1 ? n : sizeof url - 1;
    memcpy(url, p, ul);
    url[ul] = '\0';
    gp_ws_url u;
    if (gp_ws_url_parse(url, &u) == 0 &&
        (u.port < 1 || u.port > 65535 || !u.host[0] || u.path[0] != '/'))
        abort();
    return 0;
}
