/* rkeys.h — the Redis key layout, shared by the bridge daemon and the ghostport CLI.
 *
 * Every key starts with the configurable prefix (default "gp"). Keys of one house carry its
 * id in braces so they share one Redis Cluster slot.
 *
 *   <p>:houses            SET   ids of registered houses (for `ghostport house list`)
 *   <p>:{h}:house         HASH  secret (sealed or hex, see proto/auth.h), labels (JSON), created
 * (ms) <p>:{h}:req           STREAM requests (public contract); consumer group GP_GROUP
 *   <p>:{h}:state         HASH  bridge, transport, since (ms), last_seen (ms), rtt_ms, epoch, addr
 *   <p>:{h}:epoch         STRING fencing epoch, INCR on every authenticated connect
 *   <p>:rep:<id>          STREAM reply (public contract), with a TTL; a request's `reply` may
 *                         name any key of this family, <p>:rep:<anything> (br_reply_key_check)
 *   <p>:bridge:<bid>      STRING lease of a running bridge (value: pid@host, PX ttl)
 *   <p>:janitor           STRING lock (PX): the bridge answering expired requests of unheld houses
 *   <p>:{h}:deadlines     ZSET  the janitor's index of the request stream: entry id by deadline
 *   <p>:{h}:jcursor       STRING the last entry id the janitor has indexed
 *   <p>:{h}:rudp_ts       STRING time of the last accepted rudp:// initiation (bridge/udp.c)
 * The live views (bridge/ADMIN.md):
 *   <p>:{h}:recent        LIST  the house's last requests, newest first (JSON objects)
 *   <p>:ctl               channel "disable <h>" / "remove <h>": the bridge holding h closes it
 *   <p>:bstats:<bid>      HASH  a running bridge's stats, written every second (PEXPIRE 5 s)
 *   <p>:bridges           ZSET  bridge ids scored by the ms of their last stats: which
 *                               <p>:bstats:<bid> to read without a SCAN
 *   <p>:fence:<bid>       channel "<epoch> <house>": another bridge claimed one of bid's houses
 *   <p>:hb:<bid>          channel nothing published: the subscriber's heartbeat
 * README.md's key layout table documents the same list (checked by tests/unit/rkeys.c).
 */
#ifndef GP_RKEYS_H
#define GP_RKEYS_H

#include <stddef.h>

#define GP_DEFAULT_PREFIX "gp"
#define GP_GROUP "gp"       /* consumer group on every request stream */
#define GP_CONSUMER "house" /* the one consumer: pending entries follow the house, not a bridge */
#define GP_KEY_MAX 256

/* Each writes a NUL-terminated key into out[GP_KEY_MAX]; returns its length, or -1 if it
 * would not fit. */
int gp_key_houses(char *out, const char *prefix);
int gp_key_house(char *out, const char *prefix, const char *house);
int gp_key_req(char *out, const char *prefix, const char *house);
int gp_key_state(char *out, const char *prefix, const char *house);
int gp_key_epoch(char *out, const char *prefix, const char *house);
int gp_key_reply(char *out, const char *prefix, const char *frame_id);
int gp_key_bridge(char *out, const char *prefix, const char *bridge_id);
int gp_key_janitor(char *out, const char *prefix);
int gp_key_recent(char *out, const char *prefix, const char *house);
int gp_key_rudp_ts(char *out, const char *prefix, const char *house);
int gp_key_deadlines(char *out, const char *prefix, const char *house);
int gp_key_jcursor(char *out, const char *prefix, const char *house);
int gp_key_ctl(char *out, const char *prefix);
int gp_key_bstats(char *out, const char *prefix, const char *bridge_id);
int gp_key_bridges(char *out, const char *prefix);
/* Pub/sub channels (no keys): a bridge's fence channel (another bridge claimed one of its
 * houses) and its heartbeat channel (its subscriber connection resubscribes every second). */
int gp_key_fence(char *out, const char *prefix, const char *bridge_id);
int gp_key_hb(char *out, const char *prefix, const char *bridge_id);

/* Every key and channel name of the layout, as a template: entry i (from 0) is written into
 * out[GP_KEY_MAX] by its builder above with the placeholders "<p>" (prefix), "h" (house: the
 * key shows "{h}"), "<bid>" (bridge) and "<id>" (reply), its Redis type into *type ("SET",
 * "HASH", ... or "channel"). Returns the length, or -1 past the last entry. README.md's key
 * layout table is checked against this list (tests/unit/rkeys.c). */
int gp_key_template(size_t i, char *out, const char **type);

/* The keys of house h, in the order the removal script takes them (store_house.h,
 * GP_REG_RM_NKEYS): house hash, state, epoch, recent, req, rudp_ts, deadlines, jcursor.
 * 0, or -1 if one would not fit. Every key with the house's hash tag is one of these. */
#define GP_HOUSE_NKEYS 8
int gp_key_house_all(char out[GP_HOUSE_NKEYS][GP_KEY_MAX], const char *prefix, const char *house);

/* The Redis Cluster hash slot of a key: CRC16/XMODEM of the key, or of its {hash tag}. */
unsigned gp_key_slot(const char *key, size_t len);

/* The house id of a request stream key "<prefix>:{<id>}:req" (key[0..len), not terminated)
 * into out[cap]. Returns the id's length, or -1 if key is not such a key or the id does not
 * fit. The id is not validated beyond that. */
int gp_key_house_of_req(const char *key, size_t len, const char *prefix, char *out, size_t cap);

#endif
