/* house.h — owning houses in Redis while their connections are up (house.c): claim and
 * release under the fencing epoch, the lease, the keyspace doorbell, reading each held
 * house's stream. The br_houses context is made by main.c and passed to every call; it
 * installs itself as the connections' hooks (conn.h) and as the requests' ops
 * (requests.h), so neither calls it by name. */
#ifndef BR_HOUSE_H
#define BR_HOUSE_H

#include "conn.h"
#include "htable.h"
#include "l3.h"
#include "requests.h"
#include "streams.h"

#include <stddef.h>
#include <stdint.h>

typedef struct br_houses {
    const br_env *env;
    br_conns *conns;
    br_requests *reqs;   /* the request core its connections' entries and frames go to */
    br_streams *streams; /* TCP streams: `kind stream` entries, S_* frames (NULL: none) */
    br_l3 *l3;           /* the L3 tunnel (--tun): L3_REQ, datagrams (NULL: none) */
    br_htable table;     /* held houses; table.n is how many */
    /* The scripts it runs (texts and SHAs: store_state.h, store_req.h) */
    br_script claim, refresh, release, read;
} br_houses;

/* Sets h up over env, conns, reqs and streams (all kept; streams may be NULL), and installs
 * conns' hooks, reqs' ops and streams' ops. */
void br_houses_init(br_houses *h, const br_env *env, br_conns *conns, br_requests *reqs,
                    br_streams *streams);
void br_houses_free(br_houses *h); /* the table (at exit) */
void br_house_load_scripts(br_houses *h);
br_conn *br_house_find(const br_houses *h, const char *house);
void br_house_claim(br_houses *h, br_conn *c); /* proof ok: take ownership */
/* WELCOME to a claimed house (its epoch, ping interval and protocol); over rudp sent again
 * when the house's protocol offer arrives after the first (udp.c). */
void br_house_welcome(br_houses *h, br_conn *c);
void br_house_teardown(br_houses *h, br_conn *c, int release); /* conn gone/fenced */
void br_house_read(br_houses *h, br_conn *c);   /* read as much of its stream as capacity allows */
void br_house_tick(br_houses *h, uint64_t now); /* sweep: renewals, pending rescans, reads */
void br_house_state_update(br_houses *h, br_conn *c);
void br_house_redis_up(br_houses *h); /* cmd connection (re)established */
void br_house_sub_up(br_houses *h);   /* subscriber (re)established */
/* Every pub/sub message of the subscriber: keyspace doorbells, our fence channel, <p>:ctl. */
void br_house_on_message(br_houses *h, const char *kind, const char *chan, size_t clen,
                         const char *msg, size_t mlen);
void br_house_fenced(br_houses *h, const char *house, uint64_t epoch); /* newer epoch seen */

#endif
