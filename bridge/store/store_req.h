/* store_req.h — the store's request family (README.md's key layout): a house's request stream
 * <p>:{h}:req (the public contract) with its consumer group GP_GROUP and one consumer
 * GP_CONSUMER (rkeys.h), the janitor's index of it (<p>:{h}:deadlines, <p>:{h}:jcursor) and
 * the house's recent list (<p>:{h}:recent, kept by the acknowledgement). The scripts that read
 * and settle its entries, as Lua text: bridge/daemon/house.c (fenced read),
 * bridge/daemon/requests.c (acknowledgements), bridge/daemon/janitor.c (index). Each touches the
 * keys of one house only (one Cluster slot). */
#ifndef GP_STORE_REQ_H
#define GP_STORE_REQ_H

/* KEYS: epoch, req. ARGV: epoch, group, consumer, count, start id. The fenced read: -1 when
 * the house has a newer epoch (nothing is read), else XREADGROUP's reply (nil: no entries;
 * a NOGROUP error is returned as such). */
#define GP_LUA_REQ_FENCED_READ                                                                     \
    "local e = redis.call('GET', KEYS[1])\n"                                                       \
    "if e ~= ARGV[1] and e ~= false then return -1 end\n"                                          \
    "return redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],\n"              \
    "  'STREAMS', KEYS[2], ARGV[5])\n"

/* The front door's XADD of a request (or a stream's open) on a house's request stream, only
 * when the house is registered: an HTTP client, who may name any house, must not make Redis
 * keys for ids no one registered (a producer on the contract can: its ACL says where). KEYS:
 * house, req. ARGV: the entry's fields. Returns the entry's id, or 0 when the house is not
 * registered (nothing written). */
#define GP_LUA_REQ_ADD_REGISTERED                                                                  \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"                                    \
    "return redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', unpack(ARGV))\n"

/* The house's recent requests (bridge/admin/ADMIN.md) are kept by the acknowledgement: same slot,
 * no extra round trip. ARGV[4] is the entry's JSON line, ARGV[5] how many to keep (0: none).
 * The list expires a week after the house's last request, so request streams of ids that
 * were never registered (a producer's typo, answered 504 by the janitor) leave nothing. */
#define GP_LUA_RECENT                                                                              \
    "local keep = tonumber(ARGV[5])\n"                                                             \
    "if keep > 0 then\n"                                                                           \
    "  redis.call('LPUSH', KEYS[3], ARGV[4])\n"                                                    \
    "  redis.call('LTRIM', KEYS[3], 0, keep - 1)\n"                                                \
    "  redis.call('PEXPIRE', KEYS[3], 604800000)\n"                                                \
    "end\n"

/* KEYS: epoch, req, recent. ARGV: epoch, group, entry id, recent JSON, recent count.
 * Acknowledges the entry, whose reply Redis has confirmed, and checks the fence: 0 when the
 * house is someone else's now (the caller lets it go). The entry is settled either way: its
 * reply exists, so leaving it pending could only make the new owner deliver it again and the
 * producer get a second reply — which is what happened when a draining bridge's last answers
 * were acknowledged just after its house had connected elsewhere. Fencing keeps a stale
 * bridge from taking requests (the fenced read); it has nothing to protect in an entry that is
 * already answered. */
#define GP_LUA_REQ_ACK                                                                             \
    "local ok = redis.call('GET', KEYS[1]) == ARGV[1]\n"                                           \
    "pcall(redis.call, 'XACK', KEYS[2], ARGV[2], ARGV[3])\n"                                       \
    "redis.call('XDEL', KEYS[2], ARGV[3])\n" GP_LUA_RECENT "return ok and 1 or 0\n"

/* Janitor variant. KEYS: state, req, recent. ARGV: expected holder ('' = nobody), group,
 * entry id, recent JSON, recent count. The group may not exist (the house never connected),
 * hence pcall. */
#define GP_LUA_REQ_ACK_UNHELD                                                                      \
    "local b = redis.call('HGET', KEYS[1], 'bridge')\n"                                            \
    "if b == false then b = '' end\n"                                                              \
    "if b ~= ARGV[1] then return 0 end\n"                                                          \
    "pcall(redis.call, 'XACK', KEYS[2], ARGV[2], ARGV[3])\n"                                       \
    "redis.call('XDEL', KEYS[2], ARGV[3])\n" GP_LUA_RECENT "return 1\n"

/* KEYS: req, deadlines, cursor. ARGV: now (Redis ms), new entries to index at most, due
 * entries to return at most, default timeout ms, largest timeout ms, '1' to look for due
 * entries even when more new ones remain, the index's TTL ms. Indexes the entries after the cursor
 * (deadline = the entry id's ms + its timeout_ms) and moves the cursor past them; returns {number
 * indexed, due entries that still exist} — the due ones only once the index has caught up
 * (or when told), so that one visit looks them up once. Due members whose entry is gone are
 * removed; twice the limit of them are looked at, so that last visit's answers, gone now,
 * never starve the next due ones. */
#define GP_LUA_REQ_JANITOR_DUE                                                                     \
    "local cur = redis.call('GET', KEYS[3])\n"                                                     \
    "if not (cur and string.match(cur, '^%d+%-%d+$')) then cur = '0-0' end\n"                      \
    "local new = redis.call('XRANGE', KEYS[1], '(' .. cur, '+', 'COUNT', ARGV[2])\n"               \
    "local def, max = tonumber(ARGV[4]), tonumber(ARGV[5])\n"                                      \
    "for _, e in ipairs(new) do\n"                                                                 \
    "  local t, f = nil, e[2]\n"                                                                   \
    "  for i = 1, #f - 1, 2 do if f[i] == 'timeout_ms' then t = f[i + 1] end end\n"                \
    "  local n = t and #t <= 19 and string.match(t, '^%d+$') and tonumber(t) or nil\n"             \
    "  if not n or n < 1 or n > max then n = def end\n"                                            \
    "  local ms = tonumber(string.match(e[1], '^(%d+)')) or 0\n"                                   \
    "  redis.call('ZADD', KEYS[2], ms + n, e[1])\n"                                                \
    "end\n"                                                                                        \
    "if #new > 0 then\n"                                                                           \
    "  redis.call('SET', KEYS[3], new[#new][1], 'PX', ARGV[7])\n"                                  \
    "  redis.call('PEXPIRE', KEYS[2], ARGV[7])\n"                                                  \
    "end\n"                                                                                        \
    "local lim = tonumber(ARGV[3])\n"                                                              \
    "if #new >= tonumber(ARGV[2]) and ARGV[6] ~= '1' then return {#new, {}} end\n"                 \
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 2 * lim)\n"     \
    "local out = {}\n"                                                                             \
    "for _, id in ipairs(due) do\n"                                                                \
    "  local e = redis.call('XRANGE', KEYS[1], id, id)\n"                                          \
    "  if #e == 0 then redis.call('ZREM', KEYS[2], id)\n"                                          \
    "  elseif #out < lim then out[#out + 1] = e[1] end\n"                                          \
    "end\n"                                                                                        \
    "return {#new, out}\n"

#endif
