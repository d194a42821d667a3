/* store_stream.h — the store's TCP stream family (proto/STREAMS.md): the byte keys
 * <p>:{h}:sin:<sid> (written by the opener) and <p>:{h}:sout:<sid> (written by the bridge that
 * holds the house), both in the house's slot (rkeys.h: gp_key_sin, gp_key_sout). The scripts
 * bridge/daemon/streams.c relays with, as Lua text. */
#ifndef GP_STORE_STREAM_H
#define GP_STORE_STREAM_H

/* The one write of a bridge on a stream, fenced by the house's epoch (as the request stream's
 * read, store_req.h: a missing epoch key, a Redis that lost it, does not fence).
 * KEYS: epoch, sout, sin. ARGV: epoch, TTL ms of sout while the stream lives, '1' when the
 * stream is over (both keys' TTL 60 s), nout, nin, then nout sout entry ids to delete (wholly
 * below the opener's ack), nin sin entry ids to delete (wholly below the house's ack), then the
 * fields of one entry to append to sout (none: only the deletions and the TTLs).
 * Returns -1 when the house has a newer epoch (nothing written), else the new entry's id, or 0
 * without one. A key that is not a stream (a producer's mistake) fails the script with
 * WRONGTYPE. */
#define GP_LUA_STREAM_WRITE                                                                        \
    "local e = redis.call('GET', KEYS[1])\n"                                                       \
    "if e ~= ARGV[1] and e ~= false then return -1 end\n"                                          \
    "local nout, nin = tonumber(ARGV[4]), tonumber(ARGV[5])\n"                                     \
    "if nout > 0 then redis.call('XDEL', KEYS[2], unpack(ARGV, 6, 5 + nout)) end\n"                \
    "if nin > 0 then\n"                                                                            \
    "  local t = redis.call('TYPE', KEYS[3])['ok']\n"                                              \
    "  if t == 'stream' then\n"                                                                    \
    "    redis.call('XDEL', KEYS[3], unpack(ARGV, 6 + nout, 5 + nout + nin))\n"                    \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local id = 0\n"                                                                               \
    "if #ARGV > 5 + nout + nin then\n"                                                             \
    "  id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6 + nout + nin))\n"                      \
    "end\n"                                                                                        \
    "if ARGV[3] == '1' then\n"                                                                     \
    "  redis.call('PEXPIRE', KEYS[2], 60000)\n"                                                    \
    "  redis.call('PEXPIRE', KEYS[3], 60000)\n"                                                    \
    "else\n"                                                                                       \
    "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"                                                  \
    "end\n"                                                                                        \
    "return id\n"

/* A stream taken over (S_ATTACH): what sout holds, to trim it below the opener's acks and to
 * skip what the house sends again. KEYS: sout, sin. Returns {TTL ms to keep giving sout (the
 * larger of both keys' PTTL and 600000: the open's idle_ms is not known here), {{id, off,
 * data length}, ...} of sout's entries with data or fin (at most 4096, oldest first)}; off is
 * '' for an entry without one. A key that is not a stream reads as empty. */
#define GP_LUA_STREAM_SCAN                                                                         \
    "local ttl = 600000\n"                                                                         \
    "for i = 1, 2 do\n"                                                                            \
    "  local t = redis.call('PTTL', KEYS[i])\n"                                                    \
    "  if t > ttl then ttl = t end\n"                                                              \
    "end\n"                                                                                        \
    "local out = {}\n"                                                                             \
    "if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return {ttl, out} end\n"                \
    "for _, en in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 4096)) do\n"             \
    "  local off, len, f = '', 0, en[2]\n"                                                         \
    "  for i = 1, #f - 1, 2 do\n"                                                                  \
    "    if f[i] == 'off' then off = f[i + 1] elseif f[i] == 'data' then len = #f[i + 1] end\n"    \
    "  end\n"                                                                                      \
    "  if off ~= '' then out[#out + 1] = {en[1], off, len} end\n"                                  \
    "end\n"                                                                                        \
    "return {ttl, out}\n"

#endif
