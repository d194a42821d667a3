/* wsframe.c — WebSocket client framing and handshake check (wsframe.h). Pure. */
#include "wsframe.h"
#include "gp.h"

#include <stdio.h>
#include <string.h>

size_t gp_ws_client_header(uint8_t *h, unsigned opcode, uint64_t n, const uint8_t mask[4]) {
    size_t k = 0;
    h[k++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (n < 126) {
        h[k++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        h[k++] = 0x80 | 126;
        h[k++] = (uint8_t)(n >> 8);
        h[k++] = (uint8_t)n;
    } else {
        h[k++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[k++] = (uint8_t)(n >> (8 * i));
    }
    memcpy(h + k, mask, 4);
    return k + 4;
}

void gp_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4]) {
    uint8_t m[8] = {mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]};
    uint64_t m8, v;
    memcpy(&m8, m, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* eight bytes a step: the mask repeats every four */
        memcpy(&v, p + i, 8);
        v ^= m8;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= mask[i & 3];
}

void gp_ws_rx_init(gp_ws_rx *rx) {
    memset(rx, 0, sizeof *rx);
}

static int is_control(unsigned op) {
    return op >= GP_WS_CLOSE;
}

/* The first two bytes of a header: what the frame may be. NULL, or why not. */
static const char *check_start(const gp_ws_rx *rx, uint8_t b0, uint8_t b1) {
    unsigned op = b0 & 0x0f, fin = b0 >> 7, len7 = b1 & 0x7f;
    if (b0 & 0x70)
        return "a frame with reserved bits set (no extension was agreed)";
    if (b1 & 0x80)
        return "a masked frame from the server";
    switch (op) {
    case GP_WS_CLOSE:
    case GP_WS_PING:
    case GP_WS_PONG:
        if (!fin)
            return "a fragmented control frame";
        if (len7 > GP_WS_CTL_MAX)
            return "a control frame over 125 bytes";
        return NULL;
    case GP_WS_CONT:
        return rx->in_message ? NULL : "a continuation frame outside a message";
    case GP_WS_TEXT:
    case GP_WS_BINARY:
        return rx->in_message ? "a new message inside a fragmented one" : NULL;
    default:
        return "a frame of an unknown opcode";
    }
}

/* The current frame's payload is all there: a control frame goes up now. */
static int frame_done(gp_ws_rx *rx, const gp_ws_rx_cb *cb) {
    rx->in_payload = 0;
    if (!is_control(rx->opcode))
        return 0;
    return cb->on_control(cb->ud, rx->opcode, rx->ctl, rx->ctl_len);
}

/* The header is complete (rx->hlen bytes): the frame's state. NULL, or why it is refused. */
static const char *start_frame(gp_ws_rx *rx) {
    unsigned len7 = rx->hdr[1] & 0x7f;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)rx->hdr[2] << 8 | rx->hdr[3];
    } else if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | rx->hdr[i];
        if (len >> 63)
            return "a frame length over 2^63";
    }
    rx->opcode = rx->hdr[0] & 0x0f;
    rx->fin = rx->hdr[0] >> 7;
    rx->left = len;
    rx->ctl_len = 0;
    rx->hlen = 0;
    rx->in_payload = 1;
    if (!is_control(rx->opcode)) {
        if (rx->opcode != GP_WS_CONT)
            rx->msg_opcode = rx->opcode;
        rx->in_message = !rx->fin;
    }
    return NULL;
}

int gp_ws_rx_feed(gp_ws_rx *rx, const uint8_t *p, size_t n, const gp_ws_rx_cb *cb,
                  const char **why) {
    *why = NULL;
    while (n) {
        if (!rx->in_payload) {
            if (rx->hlen < 2) {
                rx->hdr[rx->hlen++] = *p++, n--;
                if (rx->hlen < 2)
                    continue;
                if ((*why = check_start(rx, rx->hdr[0], rx->hdr[1])) != NULL)
                    return GP_WS_PROTOCOL_ERROR;
            }
            unsigned len7 = rx->hdr[1] & 0x7f;
            size_t need = 2u + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u);
            while (rx->hlen < need && n)
                rx->hdr[rx->hlen++] = *p++, n--;
            if (rx->hlen < need)
                break;
            if ((*why = start_frame(rx)) != NULL)
                return GP_WS_PROTOCOL_ERROR;
            if (rx->left == 0) {
                int rc = frame_done(rx, cb);
                if (rc)
                    return rc;
            }
            continue;
        }
        size_t take = rx->left < n ? (size_t)rx->left : n;
        const uint8_t *chunk = p;
        p += take, n -= take;
        rx->left -= take;
        int rc = 0;
        if (is_control(rx->opcode)) {
            memcpy(rx->ctl + rx->ctl_len, chunk, take); /* at most 125 in all: checked */
            rx->ctl_len = (uint8_t)(rx->ctl_len + take);
        } else {
            rc = cb->on_data(cb->ud, rx->msg_opcode, chunk, take);
        }
        if (!rc && rx->left == 0)
            rc = frame_done(rx, cb);
        if (rc)
            return rc;
    }
    return 0;
}

size_t gp_ws_head_end(const uint8_t *p, size_t n) {
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* --- the answer to the upgrade ------------------------------------------------------------ */

static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int ieq(const char *a, size_t n, const char *b) {
    if (strlen(b) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* value[0..n) holds token as one of its comma-separated items (case-insensitive). */
static int has_token(const char *v, size_t n, const char *token) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && ieq(v + s, e - s, token))
            return 1;
    }
    return 0;
}

/* A reason phrase (or any peer text) fit for a log line: printable ASCII, at most 64 bytes. */
static void printable(char *out, size_t cap, const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap && k < 64; i++)
        out[k++] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    out[k] = '\0';
}

int gp_ws_handshake_check(const char *head, size_t n, const char *accept, const char *protocol,
                          int *status, char *why, size_t why_len) {
    *status = 0;
    const char *end = head + n, *nl = memchr(head, '\n', n);
    if (n < 12 || !nl || (memcmp(head, "HTTP/1.1 ", 9) != 0 && memcmp(head, "HTTP/1.0 ", 9) != 0) ||
        head[9] < '1' || head[9] > '5' || head[10] < '0' || head[10] > '9' || head[11] < '0' ||
        head[11] > '9') {
        snprintf(why, why_len, "the server did not answer in HTTP (is it a Ghost Port bridge?)");
        return -1;
    }
    *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (*status != 101) {
        const char *r = head + 12;
        while (r < nl && *r == ' ')
            r++;
        char phrase[80];
        printable(phrase, sizeof phrase, r, (size_t)(nl - r) - (nl > r && nl[-1] == '\r'));
        snprintf(why, why_len, "the server answered HTTP %d%s%s, not an upgrade to WebSocket",
                 *status, *phrase ? " " : "", phrase);
        return -1;
    }
    int upgrade = 0, connection = 0, accepted = 0, agreed = protocol == NULL;
    for (const char *l = nl + 1; l < end;) {
        const char *e = memchr(l, '\n', (size_t)(end - l));
        if (!e)
            e = end;
        size_t len = (size_t)(e - l) - (e > l && e[-1] == '\r');
        gp_str hn, hv;
        if (gp_header_split(l, len, &hn, &hv) == 0) {
            size_t nlen = hn.len, vlen = hv.len;
            const char *v = (const char *)hv.p;
            if (ieq(l, nlen, "upgrade"))
                upgrade = ieq(v, vlen, "websocket");
            else if (ieq(l, nlen, "connection"))
                connection = has_token(v, vlen, "upgrade");
            else if (ieq(l, nlen, "sec-websocket-accept"))
                accepted = vlen == strlen(accept) && memcmp(v, accept, vlen) == 0;
            else if (protocol && ieq(l, nlen, "sec-websocket-protocol"))
                agreed = vlen == strlen(protocol) && memcmp(v, protocol, vlen) == 0;
        }
        l = e + 1;
    }
    if (!upgrade)
        snprintf(why, why_len, "the server's 101 lacks \"Upgrade: websocket\"");
    else if (!connection)
        snprintf(why, why_len, "the server's 101 lacks \"Connection: upgrade\"");
    else if (!accepted)
        snprintf(why, why_len, "the server's Sec-WebSocket-Accept does not match the key sent");
    else if (!agreed)
        snprintf(why, why_len, "the server did not agree to subprotocol %s", protocol);
    else
        return 0;
    return -1;
}

int gp_ws_url_parse(const char *url, gp_ws_url *u) {
    memset(u, 0, sizeof *u);
    const char *p;
    if (strncmp(url, "wss://", 6) == 0)
        u->tls = 1, p = url + 6;
    else if (strncmp(url, "ws://", 5) == 0)
        p = url + 5;
    else if (strncmp(url, "rudp://", 7) == 0)
        u->rudp = 1, p = url + 7;
    else
        return -1;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return -1;
    const char *h = p, *he;
    if (*p == '[') {
        h = p + 1;
        if (!(he = strchr(h, ']')))
            return -1;
        p = he + 1;
        u->ipv6 = 1;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= sizeof u->host || memchr(h, '@', hl))
        return -1;
    memcpy(u->host, h, hl);
    u->port = u->tls ? 443 : 80;
    if (*p == ':') {
        long port = 0;
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
            port = port * 10 + (*p - '0');
        if (!digits || port < 1 || port > 65535)
            return -1;
        u->port = (int)port;
    }
    if (*p && *p != '/')
        return -1;
    int n = snprintf(u->path, sizeof u->path, "%s", *p ? p : "/");
    return n > 0 && (size_t)n < sizeof u->path ? 0 : -1;
}
