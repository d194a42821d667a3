/* fuzz_entry.c — libFuzzer target for the bridge's request-entry validation: arbitrary bytes
 * are parsed as RESP by hiredis's own reader (what the bridge receives from Redis), and every
 * reply tree that comes out is handed to br_entry_parse, as XREADGROUP/XRANGE entries are.
 * The input is also tried directly as a `headers` JSON field, as a house's response header
 * (name | value split at its first byte's value), and as a recent-list field to cut. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <string.h>

#include "entry.h"

static void check(const br_entry *en) {
    /* Invariants the bridge relies on: a status of 0 means every required field is there. */
    if (en->status == 0 && (en->method.len == 0 || en->path.len == 0 || en->path.p[0] != '/'))
        __builtin_trap();
    if (en->status > 0 && (!en->error || !en->message))
        __builtin_trap();
    if (en->status < 0)
        return;
    /* A reply key that passes is one of the family, bounded, without control bytes; a
     * refused one says why and leaves nothing behind. */
    char key[BR_REPLY_KEY_MAX + 1];
    const char *why;
    int n = br_entry_reply_key(en, "gp", key, &why);
    if (n > 0) {
        if (why || (size_t)n != strlen(key) || n > BR_REPLY_KEY_MAX || n <= 7 ||
            memcmp(key, "gp:rep:", 7) != 0)
            __builtin_trap();
        for (int i = 0; i < n; i++)
            if ((uint8_t)key[i] < 0x20 || key[i] == 0x7f)
                __builtin_trap();
    } else if ((n < 0 && (!why || key[0])) || (n == 0 && (why || en->has_reply))) {
        __builtin_trap();
    }
}

/* A house's response header: a name that passes is a token, a value without controls. */
static void check_header(const uint8_t *data, size_t size) {
    size_t cut = size ? data[0] % (size + 1) : 0;
    gp_str name = {data, cut}, value = {data + cut, size - cut};
    const char *why = br_resp_header_check(name, value);
    if (!why) {
        if (name.len == 0 || name.len > 256)
            __builtin_trap();
        for (size_t i = 0; i < name.len; i++)
            if (name.p[i] <= 0x20 || name.p[i] >= 0x7f || name.p[i] == ':')
                __builtin_trap();
        for (size_t i = 0; i < value.len; i++)
            if ((value.p[i] < 0x20 && value.p[i] != '\t') || value.p[i] == 0x7f)
                __builtin_trap();
    }
    /* Cutting never overruns, and never splits a UTF-8 sequence. */
    size_t max = 4 + (size ? data[size - 1] % 64 : 0);
    size_t n = br_clip_len((const char *)data, size, max);
    if (n > size || (n < size && (n + 3 > max || (n && (data[n] & 0xc0) == 0x80))))
        __builtin_trap();
}

static void parse_tree(const redisReply *r) {
    br_entry en;
    br_entry_parse(r, 1024, &en);
    check(&en);
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_ARRAY) {
                br_entry_parse(r->element[i], 1024, &en);
                check(&en);
            }
}

/* hiredis 0.14's reader has no cap on aggregate sizes (newer versions have maxelements): a
 * "*600000000" header makes it allocate gigabytes. Redis, the only peer of that reader, never
 * sends such a thing, and the target here is our parser, so inputs announcing huge aggregates
 * or bulks are skipped (conservatively: any '*' or '$' followed by a large number). */
static int announces_huge(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '*' && p[i] != '$')
            continue;
        uint64_t v = 0;
        for (size_t j = i + 1; j < n && p[j] >= '0' && p[j] <= '9' && v < 1000000; j++)
            v = v * 10 + (p[j] - '0');
        if (v >= 100000)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_decref(br_headers_load((gp_str){data, size}, NULL, 0));
    check_header(data, size);
    if (announces_huge(data, size))
        return 0;

    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *reply;
        while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
            parse_tree(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
