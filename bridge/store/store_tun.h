/* store_tun.h — the store's L3 tunnel family (proto/TUN.md): which house has which address.
 * One hash, <p>:tun (README.md's key layout; its name in rkeys.h), whose fields are:
 *   pool4, pool6   the address pools every bridge with --tun runs with (CIDR text; the first
 *                  bridge writes them, the others must agree: a house's address is the same
 *                  whichever bridge holds it, which is what lets its TCP connections survive
 *                  a move);
 *   next           where the next allocation starts looking;
 *   i:<index>      the house holding pool index <index> (its addresses are the index-th
 *                  host of each pool: proto/ippkt.h, gp_pool_addr; index 0 is the bridges'
 *                  own address on the hub side, never a house's);
 *   h:<house>      that house's index;
 *   r:<house>      the routes the house may advertise, claimed (GP_TUN_CLAIM_LUA): no two
 *                  houses may be allowed overlapping routes, so two bridges holding them
 *                  can never both route one subnet to two houses.
 * One key, so every script below runs on a Redis Cluster as on one server. The routes a house
 * may advertise are a field of its own hash (GP_HOUSE_TUN_ROUTES), removed with it; their
 * claim here is what keeps houses apart.
 * Text only: the CLI (registry.c) and the bridge send these scripts with their own clients. */
#ifndef GP_STORE_TUN_H
#define GP_STORE_TUN_H

#define GP_HOUSE_TUN_ROUTES "tun_routes" /* field of <p>:{h}:house: comma-separated CIDRs */

/* KEYS[1] <p>:tun. ARGV: pool4, pool6 ('' when the bridge runs without one). Records the pools
 * when none are, else checks them: returns 'ok', or the recorded pools as "pool4 pool6" when
 * they differ (the bridge refuses to start: two pools would give a house two addresses). */
#define GP_TUN_POOLS_LUA                                                                           \
    "local p4 = redis.call('HGET', KEYS[1], 'pool4')\n"                                            \
    "local p6 = redis.call('HGET', KEYS[1], 'pool6')\n"                                            \
    "if not p4 and not p6 then\n"                                                                  \
    "  redis.call('HSET', KEYS[1], 'pool4', ARGV[1], 'pool6', ARGV[2])\n"                          \
    "  return 'ok'\n"                                                                              \
    "end\n"                                                                                        \
    "if (p4 or '') == ARGV[1] and (p6 or '') == ARGV[2] then return 'ok' end\n"                    \
    "return (p4 or '') .. ' ' .. (p6 or '')\n"

/* KEYS[1] <p>:tun. ARGV: house id, the largest index the pools hold. The house's index: the one
 * it has, else the first free one from `next` on (wrapping to 1 past the largest), claimed.
 * -1 when 256 indexes in a row are taken (a full pool, or nearly). */
#define GP_TUN_ALLOC_LUA                                                                           \
    "local have = redis.call('HGET', KEYS[1], 'h:' .. ARGV[1])\n"                                  \
    "if have then return tonumber(have) end\n"                                                     \
    "local max = tonumber(ARGV[2])\n"                                                              \
    "if not max or max < 1 then return -1 end\n"                                                   \
    "local i = tonumber(redis.call('HGET', KEYS[1], 'next') or '1') or 1\n"                        \
    "for k = 1, 256 do\n"                                                                          \
    "  if i < 1 or i > max then i = 1 end\n"                                                       \
    "  if redis.call('HSETNX', KEYS[1], 'i:' .. i, ARGV[1]) == 1 then\n"                           \
    "    redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], i, 'next', i + 1)\n"                         \
    "    return i\n"                                                                               \
    "  end\n"                                                                                      \
    "  i = i + 1\n"                                                                                \
    "end\n"                                                                                        \
    "return -1\n"

/* KEYS[1] <p>:tun. ARGV: house id, index ('0': none: the house gets one when it next asks).
 * Gives the house that index, freeing the one it had: '' on success, else the id of the house
 * holding it (nothing changed). */
#define GP_TUN_SET_LUA                                                                             \
    "if ARGV[2] ~= '0' then\n"                                                                     \
    "  local who = redis.call('HGET', KEYS[1], 'i:' .. ARGV[2])\n"                                 \
    "  if who and who ~= ARGV[1] then return who end\n"                                            \
    "end\n"                                                                                        \
    "local old = redis.call('HGET', KEYS[1], 'h:' .. ARGV[1])\n"                                   \
    "if old then redis.call('HDEL', KEYS[1], 'i:' .. old, 'h:' .. ARGV[1]) end\n"                  \
    "if ARGV[2] ~= '0' then\n"                                                                     \
    "  redis.call('HSET', KEYS[1], 'i:' .. ARGV[2], ARGV[1], 'h:' .. ARGV[1], ARGV[2])\n"          \
    "end\n"                                                                                        \
    "return ''\n"

/* KEYS[1] <p>:tun. ARGV: house id, its routes as "BITS=CIDR" items joined by ',' (BITS: the
 * family, ':', then the prefix's bits as '0'/'1', so that two prefixes overlap exactly when
 * one's BITS starts with the other's: gp_cidr_bits), '' for none. Claims them for the house
 * (r:<house>) unless one overlaps a route another house has claimed: then nothing changes and
 * the answer is {that house, its route, the 1-based position of ours}; else {}. O(fields):
 * an operator's command, not a hot path. */
#define GP_TUN_CLAIM_LUA                                                                           \
    "local mine = {}\n"                                                                            \
    "for it in string.gmatch(ARGV[2], '[^,]+') do\n"                                               \
    "  local b = string.match(it, '^([^=]*)=')\n"                                                  \
    "  if b then mine[#mine + 1] = b end\n"                                                        \
    "end\n"                                                                                        \
    "if #mine == 0 then redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1]) return {} end\n"              \
    "local all = redis.call('HGETALL', KEYS[1])\n"                                                 \
    "for i = 1, #all, 2 do\n"                                                                      \
    "  local f = all[i]\n"                                                                         \
    "  if string.sub(f, 1, 2) == 'r:' and string.sub(f, 3) ~= ARGV[1] then\n"                      \
    "    for it in string.gmatch(all[i + 1], '[^,]+') do\n"                                        \
    "      local b, c = string.match(it, '^([^=]*)=(.*)$')\n"                                      \
    "      if b then\n"                                                                            \
    "        for k, m in ipairs(mine) do\n"                                                        \
    "          local n = math.min(#b, #m)\n"                                                       \
    "          if string.sub(b, 1, n) == string.sub(m, 1, n) then\n"                               \
    "            return {string.sub(f, 3), c, k}\n"                                                \
    "          end\n"                                                                              \
    "        end\n"                                                                                \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2])\n"                                      \
    "return {}\n"

/* KEYS[1] <p>:tun. ARGV: house id. A removed house's entries: its index (and so its
 * addresses) and its routes' claim. */
#define GP_TUN_FORGET_LUA                                                                          \
    "local old = redis.call('HGET', KEYS[1], 'h:' .. ARGV[1])\n"                                   \
    "if old then redis.call('HDEL', KEYS[1], 'i:' .. old, 'h:' .. ARGV[1]) end\n"                  \
    "redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])\n"                                               \
    "return ''\n"

/* KEYS[1] house hash. ARGV: routes (comma-separated CIDRs, '' for none). 0 when the house is
 * not registered (nothing written), else 1. */
#define GP_TUN_ROUTES_LUA                                                                          \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"                                    \
    "if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'tun_routes')\n"                            \
    "else redis.call('HSET', KEYS[1], 'tun_routes', ARGV[1]) end\n"                                \
    "return 1\n"

#endif
