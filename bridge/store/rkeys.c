/* rkeys.c — builds the Redis key names documented in rkeys.h. Pure string formatting. */
#include "rkeys.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int fmt(char *out, int n) {
    if (n < 0 || n >= GP_KEY_MAX) {
        out[0] = '\0';
        return -1;
    }
    return n;
}

int gp_key_houses(char *out, const char *p) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:houses", p));
}
int gp_key_house(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:house", p, h));
}
int gp_key_req(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:req", p, h));
}
int gp_key_state(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:state", p, h));
}
int gp_key_epoch(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:epoch", p, h));
}
int gp_key_reply(char *out, const char *p, const char *id) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:rep:%s", p, id));
}
int gp_key_bridge(char *out, const char *p, const char *b) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:bridge:%s", p, b));
}
int gp_key_janitor(char *out, const char *p) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:janitor", p));
}
int gp_key_recent(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:recent", p, h));
}
int gp_key_rudp_ts(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:rudp_ts", p, h));
}
int gp_key_deadlines(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:deadlines", p, h));
}
int gp_key_jcursor(char *out, const char *p, const char *h) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:{%s}:jcursor", p, h));
}
int gp_key_ctl(char *out, const char *p) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:ctl", p));
}
int gp_key_bstats(char *out, const char *p, const char *b) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:bstats:%s", p, b));
}
int gp_key_bridges(char *out, const char *p) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:bridges", p));
}

int gp_key_fence(char *out, const char *p, const char *b) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:fence:%s", p, b));
}
int gp_key_hb(char *out, const char *p, const char *b) {
    return fmt(out, snprintf(out, GP_KEY_MAX, "%s:hb:%s", p, b));
}

int gp_key_template(size_t i, char *out, const char **type) {
    const char *p = "<p>", *h = "h", *b = "<bid>";
    switch (i) {
    case 0:
        return *type = "SET", gp_key_houses(out, p);
    case 1:
        return *type = "HASH", gp_key_house(out, p, h);
    case 2:
        return *type = "STREAM", gp_key_req(out, p, h);
    case 3:
        return *type = "HASH", gp_key_state(out, p, h);
    case 4:
        return *type = "STRING", gp_key_epoch(out, p, h);
    case 5:
        return *type = "STRING", gp_key_rudp_ts(out, p, h);
    case 6:
        return *type = "ZSET", gp_key_deadlines(out, p, h);
    case 7:
        return *type = "STRING", gp_key_jcursor(out, p, h);
    case 8:
        return *type = "STREAM", gp_key_reply(out, p, "<id>");
    case 9:
        return *type = "STRING", gp_key_bridge(out, p, b);
    case 10:
        return *type = "STRING", gp_key_janitor(out, p);
    case 11:
        return *type = "channel", gp_key_fence(out, p, b);
    case 12:
        return *type = "LIST", gp_key_recent(out, p, h);
    case 13:
        return *type = "HASH", gp_key_bstats(out, p, b);
    case 14:
        return *type = "ZSET", gp_key_bridges(out, p);
    case 15:
        return *type = "channel", gp_key_ctl(out, p);
    case 16:
        return *type = "channel", gp_key_hb(out, p, b);
    default:
        return -1;
    }
}

int gp_key_house_all(char out[GP_HOUSE_NKEYS][GP_KEY_MAX], const char *p, const char *h) {
    int n[GP_HOUSE_NKEYS] = {gp_key_house(out[0], p, h),     gp_key_state(out[1], p, h),
                             gp_key_epoch(out[2], p, h),     gp_key_recent(out[3], p, h),
                             gp_key_req(out[4], p, h),       gp_key_rudp_ts(out[5], p, h),
                             gp_key_deadlines(out[6], p, h), gp_key_jcursor(out[7], p, h)};
    for (int i = 0; i < GP_HOUSE_NKEYS; i++)
        if (n[i] < 0)
            return -1;
    return 0;
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
