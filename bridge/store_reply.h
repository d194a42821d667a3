/* store_reply.h — the store's reply family: <p>:rep:<id> streams (the public contract, see
 * README.md), each its own slot, named by the request's `reply` field within this family only
 * (br_reply_key_check, bridge/entry.c). The scripts bridge/requests.c writes them with, as
 * Lua text. */
#ifndef GP_STORE_REPLY_H
#define GP_STORE_REPLY_H

/* One entry of a reply stream. KEYS: the reply key (its own slot: a script of its own, routed
 * by it). ARGV: MAXLEN, TTL ms, then the entry's fields and values. The key is one of the
 * reply family (br_reply_key_check), but a producer may still have put something else there:
 * XADD then fails with WRONGTYPE without writing anything, and the error ends the script
 * before PEXPIRE, so the TTL is set only on a stream that just took the entry. */
#define GP_LUA_REPLY_ADD                                                                           \
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], "                              \
    "'*', unpack(ARGV, 3))\n"                                                                      \
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"                                                    \
    "return id\n"

/* A partial reply dropped (its house went away mid-stream). KEYS: the reply key. Only a
 * stream is ours to delete. */
#define GP_LUA_REPLY_DROP                                                                          \
    "if redis.call('TYPE', KEYS[1])['ok'] == 'stream' then\n"                                      \
    "  return redis.call('DEL', KEYS[1])\n"                                                        \
    "end\n"                                                                                        \
    "return 0\n"

#endif
