/* rkeys.c — builds the Redis key names documented in rkeys.h. Pure string formatting. */
#include "rkeys.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The layout, one row a key or channel, in the order of README.md's key layout table (that is
 * gp_key_template's order): the name's format (the prefix, then the house, bridge or reply id
 * where the name has one), the Redis type, and the placeholder the template shows for the id. */
enum {
    K_HOUSES,
    K_HOUSE,
    K_REQ,
    K_STATE,
    K_EPOCH,
    K_RUDP_TS,
    K_DEADLINES,
    K_JCURSOR,
    K_REPLY,
    K_BRIDGE,
    K_JANITOR,
    K_FENCE,
    K_RECENT,
    K_BSTATS,
    K_BRIDGES,
    K_CTL,
    K_HB,
    K_SIN,
    K_SOUT,
    K_TUN,
    K_HIST,
    K_BHIST,
    K_FHIST,
    K_NROWS
};
static const struct {
    const char *fmt, *type, *placeholder, *placeholder2;
} rows[K_NROWS] = {
    [K_HOUSES] = {"%s:houses", "SET", NULL},
    [K_HOUSE] = {"%s:{%s}:house", "HASH", "h"},
    [K_REQ] = {"%s:{%s}:req", "STREAM", "h"},
    [K_STATE] = {"%s:{%s}:state", "HASH", "h"},
    [K_EPOCH] = {"%s:{%s}:epoch", "STRING", "h"},
    [K_RUDP_TS] = {"%s:{%s}:rudp_ts", "STRING", "h"},
    [K_DEADLINES] = {"%s:{%s}:deadlines", "ZSET", "h"},
    [K_JCURSOR] = {"%s:{%s}:jcursor", "STRING", "h"},
    [K_REPLY] = {"%s:rep:%s", "STREAM", "<id>"},
    [K_BRIDGE] = {"%s:bridge:%s", "STRING", "<bid>"},
    [K_JANITOR] = {"%s:janitor", "STRING", NULL},
    [K_FENCE] = {"%s:fence:%s", "channel", "<bid>"},
    [K_RECENT] = {"%s:{%s}:recent", "LIST", "h"},
    [K_BSTATS] = {"%s:bstats:%s", "HASH", "<bid>"},
    [K_BRIDGES] = {"%s:bridges", "ZSET", NULL},
    [K_CTL] = {"%s:ctl", "channel", NULL},
    [K_HB] = {"%s:hb:%s", "channel", "<bid>"},
    [K_SIN] = {"%s:{%s}:sin:%s", "STREAM", "h", "<sid>"},
    [K_SOUT] = {"%s:{%s}:sout:%s", "STREAM", "h", "<sid>"},
    [K_TUN] = {"%s:tun", "HASH", NULL},
    [K_HIST] = {"%s:{%s}:hist", "HASH", "h"},
    [K_BHIST] = {"%s:bhist:%s", "HASH", "<bid>"},
    [K_FHIST] = {"%s:hist", "HASH", NULL},
};

/* Row k's name for prefix p and ids a, b (unused by the rows without them) into
 * out[GP_KEY_MAX]. */
static int key2(char *out, int k, const char *p, const char *a, const char *b) {
    int n = snprintf(out, GP_KEY_MAX, rows[k].fmt, p, a, b);
    if (n < 0 || n >= GP_KEY_MAX) {
        out[0] = '\0';
        return -1;
    }
    return n;
}

static int key(char *out, int k, const char *p, const char *a) {
    return key2(out, k, p, a, NULL);
}

/* The public builders, one a row: BUILD_P for the names of the prefix alone, BUILD_PA for those
 * that also carry an id. */
#define BUILD_P(name, k)                                                                           \
    int gp_key_##name(char *out, const char *p) {                                                  \
        return key(out, k, p, NULL);                                                               \
    }
#define BUILD_PA(name, k)                                                                          \
    int gp_key_##name(char *out, const char *p, const char *a) {                                   \
        return key(out, k, p, a);                                                                  \
    }
BUILD_P(houses, K_HOUSES)
BUILD_PA(house, K_HOUSE)
BUILD_PA(req, K_REQ)
BUILD_PA(state, K_STATE)
BUILD_PA(epoch, K_EPOCH)
BUILD_PA(rudp_ts, K_RUDP_TS)
BUILD_PA(deadlines, K_DEADLINES)
BUILD_PA(jcursor, K_JCURSOR)
BUILD_PA(reply, K_REPLY)
BUILD_PA(bridge, K_BRIDGE)
BUILD_P(janitor, K_JANITOR)
BUILD_PA(fence, K_FENCE)
BUILD_PA(recent, K_RECENT)
BUILD_PA(bstats, K_BSTATS)
BUILD_P(bridges, K_BRIDGES)
BUILD_P(ctl, K_CTL)
BUILD_PA(hb, K_HB)
BUILD_P(tun, K_TUN)
BUILD_PA(hist, K_HIST)
BUILD_PA(bhist, K_BHIST)
BUILD_P(fhist, K_FHIST)

int gp_key_sin(char *out, const char *p, const char *house, const char *sid) {
    return key2(out, K_SIN, p, house, sid);
}

int gp_key_sout(char *out, const char *p, const char *house, const char *sid) {
    return key2(out, K_SOUT, p, house, sid);
}

int gp_key_template(size_t i, char *out, const char **type) {
    if (i >= K_NROWS)
        return -1;
    *type = rows[i].type;
    return key2(out, (int)i, "<p>", rows[i].placeholder, rows[i].placeholder2);
}

int gp_key_house_all(char out[GP_HOUSE_NKEYS][GP_KEY_MAX], const char *p, const char *h) {
    static const int order[GP_HOUSE_NKEYS] = {K_HOUSE,   K_STATE,     K_EPOCH,   K_RECENT, K_REQ,
                                              K_RUDP_TS, K_DEADLINES, K_JCURSOR, K_HIST};
    int rc = 0;
    for (int i = 0; i < GP_HOUSE_NKEYS; i++)
        if (key(out[i], order[i], p, h) < 0)
            rc = -1;
    return rc;
}

int gp_key_house_of_req(const char *key, size_t len, const char *prefix, char *out, size_t cap) {
    size_t plen = strlen(prefix);
    if (len < plen + 2 + 1 + 5 || memcmp(key, prefix, plen) != 0 || key[plen] != ':' ||
        key[plen + 1] != '{' || memcmp(key + len - 5, "}:req", 5) != 0)
        return -1;
    size_t n = len - plen - 2 - 5;
    if (n >= cap)
        return -1;
    memcpy(out, key + plen + 2, n);
    out[n] = '\0';
    return (int)n;
}

static uint16_t crc16(const char *p, size_t len) {
    uint16_t crc = 0; /* CRC16/XMODEM, as the Redis Cluster specification has it */
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned gp_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return crc16(key, len) & 16383;
}
