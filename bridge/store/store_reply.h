/* store_reply.h — the store's reply family: <p>:rep:<id> streams (the public contract, see
 * README.md), each its own slot, named by the request's `reply` field within this family only
 * (br_reply_key_check, bridge/daemon/entry.c). The scripts bridge/daemon/requests.c writes them
 * with, as Lua text. */
#ifndef GP_STORE_REPLY_H
#define GP_STORE_REPLY_H

/* One entry of a reply stream. KEYS: the reply key (its own slot: a script of its own, routed
 * by it). ARGV: MAXLEN, TTL ms, then the entry's fields and values. The key is one of the
 * reply family (br_reply_key_check), but a producer may still have put something else there:
 * XADD then fails with WRONGTYPE without writing anything, and the error ends the script.
 * A stream that exists without a TTL is its producer's own (a long-lived inbox, or one made
 * by XGROUP CREATE … MKSTREAM): the entry is appended, but the stream is neither trimmed nor
 * given a TTL, so a request naming someone else's inbox cannot make it shrink or expire. A
 * stream the bridge created (no key before, or a TTL already: an earlier entry's) is trimmed
 * and its TTL set or pushed later (GT: never shortened). */
#define GP_LUA_REPLY_ADD                                                                           \
    "local ttl = redis.call('PTTL', KEYS[1])\n"                                                    \
    "if ttl == -1 then\n"                                                                          \
    "  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))\n"                                 \
    "end\n"                                                                                        \
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))\n"       \
    "if ttl == -2 then\n"                                                                          \
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                                                  \
    "else\n"                                                                                       \
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')\n"                                            \
    "end\n"                                                                                        \
    "return id\n"

/* A partial reply dropped (its house went away mid-stream). KEYS: the reply key. Only a
 * stream the bridge created (it has a TTL) is ours to delete; a producer's own keeps the
 * partial entries (the redelivery writes the whole reply after them). */
#define GP_LUA_REPLY_DROP                                                                          \
    "if redis.call('TYPE', KEYS[1])['ok'] == 'stream' and "                                        \
    "redis.call('PTTL', KEYS[1]) >= 0 then\n"                                                      \
    "  return redis.call('DEL', KEYS[1])\n"                                                        \
    "end\n"                                                                                        \
    "return 0\n"

#endif
