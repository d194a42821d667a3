/* fuzz_registry.c — libFuzzer target for what `ghostport top`, `house list` and the CLI read
 * back from Redis, through the store's pure parsers (bridge/store/store_views.c, store_state.c):
 * the house hash, the live state hash, a bridge's stats hash, the recent-requests list and
 * the L3 address book's pools and indexes, all writable by anyone with access to Redis. The input's
 * first byte picks the parser; the rest is RESP, turned into a reply by hiredis's own reader (as
 * the client would), then parsed. Whatever is parsed must keep its strings terminated within their
 * fields and free of control bytes (they are printed to terminals). */
#include <assert.h>
#include <hiredis/read.h>
#include <string.h>

#include "registry.h"

#include "resp_input.h"

static void clean(const char *s, size_t cap) {
    size_t n = strnlen(s, cap);
    assert(n < cap);
    for (size_t i = 0; i < n; i++)
        assert((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || !resp_sane_counts(data + 1, size - 1))
        return 0;
    int which = data[0] % 5;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data + 1, size - 1) != REDIS_OK) {
        redisReaderFree(rd);
        return 0;
    }
    void *reply = NULL;
    while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
        const redisReply *r = reply;
        if (which == 0 || which == 1) {
            gp_reg_house h;
            gp_reg_house_init(&h, "fuzz", 4);
            if (which == 0)
                gp_reg_house_parse(&h, r);
            else
                gp_state_parse(&h.st, r);
            clean(h.labels, sizeof h.labels);
            clean(h.st.bridge, sizeof h.st.bridge);
            clean(h.st.transport, sizeof h.st.transport);
            clean(h.st.addr, sizeof h.st.addr);
            clean(h.last_bridge, sizeof h.last_bridge);
            assert(h.ntun_routes <= GP_TUN_ROUTES_MAX);
        } else if (which == 2 && r->type == REDIS_REPLY_ARRAY) { /* as gp_reg_bstats_list */
            gp_reg_bstats b;
            memset(&b, 0, sizeof b);
            gp_reg_bstats_parse(&b, r);
            clean(b.id, sizeof b.id);
            clean(b.host, sizeof b.host);
        } else if (which == 4 && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
            /* as gp_reg_list's HMGET of <p>:tun: the pools, then each house's index */
            gp_tun_pools p;
            char err[160];
            int pv = gp_tun_pools_parse(&p, r->element[0], r->element[1], err, sizeof err);
            assert(pv != 0 || !p.has4 || p.p4.addr.family == 4);
            assert(pv != 0 || !p.has6 || p.p6.addr.family == 6);
            for (size_t i = 2; i < r->elements; i++) {
                uint64_t idx;
                gp_ip_addr a4, a6;
                if (!gp_tun_index_parse(r->element[i], &idx))
                    continue;
                gp_tun_pool_addrs(pv == 0 ? &p : NULL, idx, &a4, &a6);
                assert(!a4.family || gp_cidr_contains(&p.p4, &a4));
                assert(!a6.family || gp_cidr_contains(&p.p6, &a6));
            }
        } else if (which == 3 && r->type == REDIS_REPLY_ARRAY) { /* as gp_reg_recent */
            for (size_t i = 0; i < r->elements; i++) {
                gp_reg_recent_req q;
                if (!gp_reg_recent_parse(&q, r->element[i]))
                    continue;
                clean(q.id, sizeof q.id);
                clean(q.method, sizeof q.method);
                clean(q.path, sizeof q.path);
                clean(q.error, sizeof q.error);
            }
        }
        freeReplyObject(reply);
        reply = NULL;
    }
    redisReaderFree(rd);
    return 0;
}
