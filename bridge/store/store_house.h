/* store_house.h — the store's house registry family: the set of ids <p>:houses and each
 * house's hash <p>:{h}:house (README.md's key layout; key names in rkeys.h, the CLI's reads
 * in registry.c / store_views.c). The Lua scripts that change the registry, shared by the
 * CLI's blocking registry code (registry.c) and the bridge's JSON API (api.c, async), so that
 * both change Redis in exactly the same way. Text only: each side sends it with its own
 * client.
 *
 * Every script touches the keys of one house only (one Cluster slot); the set of ids
 * (<p>:houses, another slot) is updated by a separate SADD/SREM. */
#ifndef GP_STORE_HOUSE_H
#define GP_STORE_HOUSE_H

/* The fields of a house's hash (README.md's key layout). The scripts below name them in
 * their Lua text. */
#define GP_HOUSE_SECRET "secret"     /* sealed (enc1:...) or 64 hex digits, see proto/auth.h */
#define GP_HOUSE_LABELS "labels"     /* a JSON object */
#define GP_HOUSE_CREATED "created"   /* ms */
#define GP_HOUSE_DISABLED "disabled" /* "1" while disabled */
/* When a bridge last heard from the house (ms, Redis's clock) and which bridge that was,
 * written by the bridges (store_state.h: the claim, a lease renewal at most every third of the
 * lease, the release): the house's "offline since" once its live state is gone. Kept here
 * and not in the state hash, which expires with its lease when a bridge dies. */
#define GP_HOUSE_LAST_SEEN "last_seen"
#define GP_HOUSE_LAST_BRIDGE "last_bridge"
/* and tun_routes: store_tun.h (GP_HOUSE_TUN_ROUTES) */

/* KEYS[1] house hash. ARGV: secret (sealed or hex), labels (JSON), created (ms), force
 * ('1'/'0'). 0 when the house exists and force is not set, else 1. Replacing the secret
 * keeps a house disabled: rotating a compromised house's secret must not let it back in. It
 * keeps the L3 routes the house may advertise too (tun_routes, store_tun.h), as its L3 address
 * is kept (<p>:tun is not touched): a new secret is not a new house. So is when and where it
 * was last seen (last_seen, last_bridge). */
#define GP_REG_ADD_LUA                                                                             \
    "local keep = {}\n"                                                                            \
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"                                                 \
    "  if ARGV[4] ~= '1' then return 0 end\n"                                                      \
    "  for _, f in ipairs({'disabled', 'tun_routes', 'last_seen', 'last_bridge'}) do\n"            \
    "    local v = redis.call('HGET', KEYS[1], f)\n"                                               \
    "    if v then keep[#keep + 1] = f keep[#keep + 1] = v end\n"                                  \
    "  end\n"                                                                                      \
    "  redis.call('DEL', KEYS[1])\n"                                                               \
    "end\n"                                                                                        \
    "redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'labels', ARGV[2], 'created', ARGV[3])\n"      \
    "if #keep > 0 then redis.call('HSET', KEYS[1], unpack(keep)) end\n"                            \
    "return 1\n"

/* KEYS[1] house hash. ARGV: '1' disable / '0' enable, the ctl channel (<p>:ctl), house id.
 * 0 when the house is not registered, else 1. Disabling also tells the bridges: the one
 * holding the house closes it (PUBLISH from a script reaches every node of a Cluster). */
#define GP_REG_DISABLE_LUA                                                                         \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"                                    \
    "if ARGV[1] == '1' then\n"                                                                     \
    "  redis.call('HSET', KEYS[1], 'disabled', '1')\n"                                             \
    "  redis.call('PUBLISH', ARGV[2], 'disable ' .. ARGV[3])\n"                                    \
    "else\n"                                                                                       \
    "  redis.call('HDEL', KEYS[1], 'disabled')\n"                                                  \
    "end\n"                                                                                        \
    "return 1\n"

/* KEYS (GP_REG_RM_NKEYS): house hash, state, epoch, recent, req, rudp_ts, deadlines,
 * jcursor. ARGV: purge ('1': the request stream too), the ctl channel, house id. Returns {1
 * if the house hash existed, the stream's length before any purge}. The bridge holding the
 * house is told to let it go ("remove <id>"). The janitor's index of the stream (deadlines,
 * jcursor) goes with the stream: while the stream stays its requests still get their 504.
 * The house's last key, its request history (store_hist.h), is deleted after it by a DEL of
 * its own: Redis checks a script's keys against the user's ACL before it runs, and a user
 * whose ACL predates the history would be refused the whole removal; refused that DEL, the
 * history is left to its TTL (25 h), and no bridge writes it again (its script wants the
 * house hash). */
#define GP_REG_RM_NKEYS 8 /* the first GP_REG_RM_NKEYS of gp_key_house_all (rkeys.h) */
#define GP_REG_RM_LUA                                                                              \
    "local existed = redis.call('EXISTS', KEYS[1])\n"                                              \
    "local ok, n = pcall(redis.call, 'XLEN', KEYS[5])\n"                                           \
    "if not ok then n = 0 end\n"                                                                   \
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])\n"                             \
    "if ARGV[1] == '1' then redis.call('DEL', KEYS[5], KEYS[7], KEYS[8]) end\n"                    \
    "redis.call('PUBLISH', ARGV[2], 'remove ' .. ARGV[3])\n"                                       \
    "return {existed, n}\n"

#endif
