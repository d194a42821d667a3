/* fuzz_api_house.c — libFuzzer target for the JSON API's view of a house (bridge/admin/api_body.c):
 * its house and state hashes and its L3 index (the HMGET of <p>:tun: an array of odd length) as
 * Redis might hold them (anyone with access can write there), as RESP through hiredis's own
 * reader, parsed, then written as JSON. The first byte picks which hash each reply fills.
 * Whatever Redis held, the text must be one valid JSON object with the house's id. */
#include <assert.h>
#include <hiredis/read.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api_body.h"
#include "resp_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || !resp_sane_counts(data + 1, size - 1))
        return 0;
    unsigned pick = data[0];
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    br_house_view h;
    br_house_view_init(&h, "fuzz-1");
    if (redisReaderFeed(rd, (const char *)data + 1, size - 1) == REDIS_OK) {
        void *reply = NULL;
        for (int n = 0; redisReaderGetReply(rd, &reply) == REDIS_OK && reply; n++) {
            const redisReply *r = reply;
            if (pick >> (n % 8) & 1)
                br_house_view_parse_state(&h, reply);
            else if (r->type == REDIS_REPLY_ARRAY && r->elements % 2) /* pools and an index */
                br_house_view_parse_tun(&h, 1, reply);
            else
                br_house_view_parse_house(&h, reply);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(rd);
    br_sbuf b = {0};
    br_sb_puts(&b, "{");
    br_house_view_json(&b, &h);
    br_sb_puts(&b, "}");
    if (!b.oom) {
        json_error_t je;
        json_t *o = json_loads(b.p, 0, &je);
        assert(json_is_object(o));
        assert(strcmp(json_string_value(json_object_get(o, "id")), "fuzz-1") == 0);
        json_decref(o);
    }
    free(b.p);
    br_house_view_clear(&h);
    return 0;
}
