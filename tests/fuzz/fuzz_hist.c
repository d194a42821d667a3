/* fuzz_hist.c — libFuzzer target for the request history's parser (bridge/store/store_hist.c):
 * what a history hash holds, as Redis might hold it (anyone with access can write there), read
 * back into a series and written as the JSON API's answer. Byte 0: its low bit picks RESP
 * (the HGETALL reply, through hiredis's own reader) or one raw hash value; the next bits the
 * range (1 h, 6 h, 24 h). Whatever was there, no crash, and the text is one valid JSON object
 * with as many points as the range has. */
#include <assert.h>
#include <hiredis/read.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "resp_input.h"
#include "store_hist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    static const char *const ranges[] = {"1h", "6h", "24h", "1h"};
    unsigned minutes, step;
    gp_hist_range(ranges[(data[0] >> 1) & 3], &minutes, &step);
    gp_hist_series s;
    /* now: minute 30 of hour 480000 (the seeds' hours) */
    if (gp_hist_series_init(&s, 480000LL * 60 + 30, minutes, step) != 0)
        return 0;
    if (data[0] & 1) {
        gp_hist_series_add_value(&s, (const char *)data + 1, size - 1);
    } else if (resp_sane_counts(data + 1, size - 1)) {
        redisReader *rd = redisReaderCreate();
        if (rd && redisReaderFeed(rd, (const char *)data + 1, size - 1) == REDIS_OK) {
            void *reply = NULL;
            while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
                gp_hist_series_add_reply(&s, reply);
                freeReplyObject(reply);
                reply = NULL;
            }
        }
        redisReaderFree(rd);
    }
    gp_buf b = {0};
    gp_buf_puts(&b, "{");
    gp_hist_series_json(&b, &s);
    gp_buf_puts(&b, "}");
    if (!b.oom) {
        json_error_t je;
        json_t *o = json_loads(b.p, 0, &je);
        assert(json_is_object(o));
        assert(json_array_size(json_object_get(o, "points")) == minutes / step);
        json_decref(o);
    }
    gp_buf_free(&b);
    gp_hist_series_free(&s);
    return 0;
}
