/* rkeys.h — the store's key names: every Redis key and channel name of Ghost Port is built
 * here, for the bridge daemon, its JSON API, the ghostport CLI and the tests. The layout
 * itself (types, contents) is documented once, in README.md's "Redis key layout" table, which
 * tests/unit/rkeys.c checks against gp_key_template below, row for row. The scripts and
 * parsers of each family are in the store's headers: store_house.h (registry), store_state.h
 * (live state, lease, epoch, rudp_ts), store_req.h (request stream, janitor index, recent
 * list), store_reply.h (reply keys), store_bridge.h (bridge lease, stats, janitor lock),
 * store_hist.h (request history).
 *
 * Every key starts with the configurable prefix (default "gp"). Keys of one house carry its
 * id in braces so they share one Redis Cluster slot (gp_key_house_all lists them all). */
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
/* The byte keys of TCP stream `sid` of house (proto/STREAMS.md): sin, written by the opener,
 * and sout, written by the bridge holding the house. Per stream, not per house: they are not
 * among gp_key_house_all's keys (they expire on their own: 2 x idle_ms while the stream lives,
 * 60 s once it is over). */
int gp_key_sin(char *out, const char *prefix, const char *house, const char *sid);
int gp_key_sout(char *out, const char *prefix, const char *house, const char *sid);
/* The L3 tunnel's address book (store_tun.h): pools, and which house has which index. */
int gp_key_tun(char *out, const char *prefix);
/* The request history (store_hist.h): a house's, a bridge's, and every bridge's together. */
int gp_key_hist(char *out, const char *prefix, const char *house);
int gp_key_bhist(char *out, const char *prefix, const char *bridge_id);
int gp_key_fhist(char *out, const char *prefix);
/* Pub/sub channels (no keys): a bridge's fence channel (another bridge claimed one of its
 * houses) and its heartbeat channel (its subscriber connection resubscribes every second). */
int gp_key_fence(char *out, const char *prefix, const char *bridge_id);
int gp_key_hb(char *out, const char *prefix, const char *bridge_id);

/* Every key and channel name of the layout, as a template: entry i (from 0) is written into
 * out[GP_KEY_MAX] by its builder above with the placeholders "<p>" (prefix), "h" (house: the
 * key shows "{h}"), "<bid>" (bridge), "<id>" (reply) and "<sid>" (a TCP stream), its Redis type
 * into *type ("SET", "HASH", ... or "channel"). Returns the length, or -1 past the last entry.
 * README.md's key layout table is checked against this list (tests/unit/rkeys.c). */
int gp_key_template(size_t i, char *out, const char **type);

/* The keys of house h, in the order the removal script takes them (store_house.h,
 * GP_REG_RM_NKEYS): house hash, state, epoch, recent, req, rudp_ts, deadlines, jcursor, hist.
 * 0, or -1 if one would not fit. Every key with the house's hash tag is one of these, but the
 * per-stream byte keys (gp_key_sin, gp_key_sout: "<sid>" in the template). */
#define GP_HOUSE_NKEYS 9
int gp_key_house_all(char out[GP_HOUSE_NKEYS][GP_KEY_MAX], const char *prefix, const char *house);

/* The Redis Cluster hash slot of a key: CRC16/XMODEM of the key, or of its {hash tag}. */
unsigned gp_key_slot(const char *key, size_t len);

/* The house id of a request stream key "<prefix>:{<id>}:req" (key[0..len), not terminated)
 * into out[cap]. Returns the id's length, or -1 if key is not such a key or the id does not
 * fit. The id is not validated beyond that. */
int gp_key_house_of_req(const char *key, size_t len, const char *prefix, char *out, size_t cap);

#endif
