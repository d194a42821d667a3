/* rudp_sess.h — the session layer of rudp:// (pure, sans-I/O): the handshake between a house
 * and a bridge, the protection of every datagram (ChaCha20-Poly1305, replay window, key
 * ratchet), header masking and padding. It never opens a socket, reads a clock or prints: the
 * caller passes the time (now_ns, monotonic; wall_ms, wall clock) and randomness (a callback;
 * production passes a wrapper of randombytes_buf, tests a seeded generator).
 *
 * The wire format and the reasons behind each field are in proto/RUDP.md ("Handshake and
 * packet protection"). In short:
 *   house  -> INIT    ephemeral key, house id (hidden), timestamp; mac1 proves knowledge of the
 *                     bridge's public key, mac2 carries a cookie when the bridge asked for one
 *   bridge -> COOKIE  (only under load) a stateless cookie bound to the sender's address
 *   bridge -> RESP    ephemeral key and the connection id, under keys that need the bridge's
 *                     static private key, both ephemerals and the house's secret
 *   both   -> DATA    AEAD-protected payloads, masked header, padded to a randomised size
 * The reliability engine (rudp_rel) sits on top: it hands gp_sess_seal plaintext payloads of at
 * most gp_sess_max_payload(mtu) bytes and gets back what gp_sess_open decrypted.
 *
 * Use, house side:
 *   s = gp_sess_client_new(...); send gp_sess_client_hello(s, ...);
 *   at gp_sess_expiry(s): gp_sess_client_hello again (a retransmit of the same initiation);
 *   feed every datagram from the bridge to gp_sess_open: GP_SESS_RX_COOKIE -> hello now;
 *   GP_SESS_RX_ESTABLISHED -> send data at once (an empty gp_sess_seal is a keepalive): the
 *   bridge may not send before it has seen the house's first datagram (key confirmation).
 *   hello returning GP_ERR_STATE while not established: the initiation is too old to
 *   retransmit; free the session and start a new one.
 * Use, bridge side (one gp_sess_server per listening socket, or shared by several):
 *   switch (gp_sess_server_classify(srv, dg, len, addr, alen, under_load, now, &s)):
 *   GP_SESS_DATA   -> gp_sess_open(s, ...)
 *   GP_SESS_COOKIE -> send gp_sess_server_cookie_reply(...)
 *   GP_SESS_INIT   -> gp_sess_server_parse(...): GP_SESS_HS_RETRANSMIT -> send
 *                     gp_sess_server_resend(s); GP_SESS_HS_NEW -> look the psk up (Redis,
 *                     asynchronously) by gp_sess_hs_house_id(hs), then gp_sess_server_respond
 *   GP_SESS_DROP   -> nothing; never answer
 *
 * Errors: every function returning int or ssize_t returns a negative GP_ERR_* on failure. For
 * gp_sess_open and the server's parse/respond, every negative return means "drop this datagram,
 * nothing changed"; the reason is counted in the stats (never logged here). */
#ifndef GP_RUDP_SESS_H
#define GP_RUDP_SESS_H

#include "gp.h"

#define GP_SESS_KEY_LEN 32         /* X25519 keys, house secrets */
#define GP_SESS_MTU_DEFAULT 1200   /* largest datagram sent unless configured */
#define GP_SESS_MTU_MIN 256        /* smaller MTUs are refused (GP_ERR_INVALID) */
#define GP_SESS_DGRAM_MAX 65507    /* largest UDP payload; longer input is dropped */
#define GP_SESS_OVERHEAD 30        /* house->bridge: 13 header + 1 padding marker + 16 tag */
#define GP_SESS_OVERHEAD_S2C 22    /* bridge->house: 5 header + 1 + 16 */
#define GP_SESS_REPLAY_WINDOW 2048 /* packets: older or already seen ones are dropped */

/* Randomness: fill p[0..n) with cryptographically secure random bytes. */
typedef void (*gp_sess_rand_fn)(void *ud, uint8_t *p, size_t n);

/* Settings of a session. Zero fields take the default shown. Copied by the constructors. */
typedef struct gp_sess_conf {
    size_t mtu;                 /* largest datagram sent; 0: 1200; GP_SESS_MTU_MIN..DGRAM_MAX */
    uint64_t rekey_packets;     /* new send key after this many datagrams; 0: 1 << 20 */
    uint64_t rekey_ns;          /* ... or this long with one key; 0: 120 s */
    uint64_t old_key_ns;        /* a replaced receive key still opens late datagrams; 0: 10 s */
    uint64_t hello_rto_ns;      /* house: first initiation retransmit after; 0: 1 s (x1.5, <=3 s) */
    uint64_t hello_lifetime_ns; /* house: one initiation is retransmitted this long; 0: 15 s */
    int no_padding;             /* 1: datagrams only as long as needed (measurements) */
} gp_sess_conf;

/* Settings of the bridge side. Zero fields take the default shown. Copied. */
typedef struct gp_sess_server_conf {
    gp_sess_conf sess;             /* for the sessions the server creates */
    size_t replay_slots;           /* houses whose last timestamp is remembered; 0: 16384 */
    size_t amp_slots;              /* addresses with an amplification budget; 0: 4096 */
    size_t max_pending;            /* parsed initiations awaiting their psk; 0: 1024 */
    uint64_t retransmit_window_ns; /* an initiation seen again this soon is a retransmit (the
                                    * response is sent again); later, a replay; 0: 20 s. Keep it
                                    * above the houses' hello_lifetime_ns. */
    uint64_t max_skew_ms;          /* reject initiations whose timestamp is further than this
                                    * from wall_ms; 0: no check (houses with bad clocks work) */
    uint64_t cookie_rotate_ns;     /* cookie secret lifetime; 0: 120 s */
} gp_sess_server_conf;

typedef struct gp_sess gp_sess;               /* one session, house or bridge side */
typedef struct gp_sess_server gp_sess_server; /* bridge-wide: static key, cookies, tables */
typedef struct gp_sess_hs gp_sess_hs;         /* a parsed initiation awaiting the house's psk */

/* Counters of one session. */
typedef struct gp_sess_counters {
    uint64_t tx_datagrams, tx_bytes; /* data datagrams sealed, their bytes on the wire */
    uint64_t tx_payload;             /* payload bytes sealed */
    uint64_t tx_padding;             /* bytes added by padding (beyond the fixed overhead) */
    uint64_t tx_hellos;              /* house: initiations sent */
    uint64_t rx_datagrams, rx_bytes; /* data datagrams opened */
    uint64_t rx_payload;
    uint64_t drop_short;         /* shorter than any datagram, or longer than GP_SESS_DGRAM_MAX */
    uint64_t drop_type;          /* header does not unmask to a datagram this side accepts */
    uint64_t drop_foreign;       /* another session's connection id */
    uint64_t drop_auth;          /* AEAD/MAC failed: tampered, truncated, foreign, forged */
    uint64_t drop_replay;        /* packet number already seen or older than the window */
    uint64_t drop_old_key;       /* key epoch no longer available (too late) */
    uint64_t drop_handshake;     /* house: a duplicate response/cookie after establishment */
    uint64_t rekey_tx, rekey_rx; /* key epochs started (send) / followed (receive) */
} gp_sess_counters;

/* Counters of the bridge side (datagrams that never reached a session). */
typedef struct gp_sess_server_counters {
    uint64_t rx_datagrams;     /* classified */
    uint64_t drop_short;       /* too short/long to be anything */
    uint64_t drop_type;        /* header unmasks to no known kind */
    uint64_t drop_unknown_cid; /* data for a connection id no live session has */
    uint64_t drop_mac1;        /* initiation without a valid mac1: silence, no DH */
    uint64_t cookie_needed;    /* under load, initiation without a valid mac2 */
    uint64_t cookies_sent;
    uint64_t dh;                  /* X25519 operations done for initiations */
    uint64_t drop_init_auth;      /* house id part does not decrypt */
    uint64_t drop_init_malformed; /* decrypted house id invalid */
    uint64_t drop_pending;        /* max_pending initiations already await their psk */
    uint64_t drop_unknown_house;  /* respond without a psk (no such house) */
    uint64_t drop_psk;            /* timestamp does not decrypt: wrong secret */
    uint64_t drop_replay;         /* old timestamp, or initiation seen after the window */
    uint64_t drop_skew;           /* timestamp too far from the bridge's clock */
    uint64_t drop_amp;            /* reply withheld: 3x amplification budget spent */
    uint64_t retransmits;         /* responses sent again for a retransmitted initiation */
    uint64_t handshakes;          /* sessions created */
} gp_sess_server_counters;

/* ---- keys ------------------------------------------------------------------------------ */

/* Generates the bridges' static X25519 key pair from `rnd`. */
void gp_sess_keypair(uint8_t pub[GP_SESS_KEY_LEN], uint8_t priv[GP_SESS_KEY_LEN],
                     gp_sess_rand_fn rnd, void *ud);
/* The public key of a private key. 0, or GP_ERR_INVALID. */
int gp_sess_pubkey(const uint8_t priv[GP_SESS_KEY_LEN], uint8_t pub[GP_SESS_KEY_LEN]);

/* Largest payload gp_sess_seal accepts in a datagram of at most `mtu` bytes, in either
 * direction (mtu - GP_SESS_OVERHEAD): 1170 for the default 1200. 0 if mtu < GP_SESS_MTU_MIN. */
size_t gp_sess_max_payload(size_t mtu);

/* ---- house side ------------------------------------------------------------------------ */

/* A new handshake towards the bridges whose static public key is `bridge_pub`. house_id
 * (1..64 of [A-Za-z0-9_.-]) is copied; the secret is only mixed into the initiation, never
 * kept. wall_ms is the house's wall clock in ms: it becomes the initiation's timestamp and
 * must be larger than that of any earlier initiation of this house (the bridge refuses older or
 * equal ones as replays; a house starting two handshakes in the same ms must bump it). conf may
 * be NULL (defaults). Returns NULL on a bad argument (invalid id, conf or bridge key) or out of
 * memory. */
gp_sess *gp_sess_client_new(const gp_sess_conf *conf, const uint8_t bridge_pub[GP_SESS_KEY_LEN],
                            gp_str house_id, const uint8_t secret[GP_SESS_KEY_LEN],
                            gp_sess_rand_fn rnd, void *ud, uint64_t now_ns, uint64_t wall_ms);

/* Writes the initiation datagram into out (cap >= the MTU always suffices; at least 170).
 * Every call sends the same handshake (same ephemeral key and timestamp, so the bridge can
 * answer a retransmit with the same response) in a fresh disguise (new padding and mask), with
 * mac2 when a cookie less than 110 s old was received. Returns its size;
 * GP_ERR_STATE once established or when the initiation is older than hello_lifetime_ns (start
 * a new session); GP_ERR_BUFFER if cap < 170. */
ssize_t gp_sess_client_hello(gp_sess *s, uint8_t *out, size_t cap, uint64_t now_ns);

/* ---- bridge side ----------------------------------------------------------------------- */

/* A bridge-side handshake endpoint holding the static private key (copied, wiped on free).
 * conf may be NULL. NULL on a bad conf or out of memory. */
gp_sess_server *gp_sess_server_new(const gp_sess_server_conf *conf,
                                   const uint8_t priv[GP_SESS_KEY_LEN], gp_sess_rand_fn rnd,
                                   void *ud, uint64_t now_ns);
/* Frees the server. Sessions and pending handshakes it created stay valid (they are detached:
 * no more retransmitted responses), but should be freed first. NULL ok. */
void gp_sess_server_free(gp_sess_server *srv);

enum gp_sess_kind {
    GP_SESS_DROP = 0,   /* not for us or invalid: send nothing, ever (counted) */
    GP_SESS_DATA = 1,   /* a live session's connection id: *sess set; call gp_sess_open */
    GP_SESS_INIT = 2,   /* a handshake initiation with a valid mac1 (and mac2 if under load) */
    GP_SESS_COOKIE = 3, /* under load, an initiation without a valid mac2: answer with
                           gp_sess_server_cookie_reply, keep no state */
};

/* Sorts an incoming datagram without any public-key operation and without trusting the
 * address: data is found by its connection id (unmasked with a key derived from the static
 * public key), initiations are checked for mac1 (and, when under_load, for a mac2 made with a
 * cookie for `addr`). addr/addrlen: the sender's address as the caller represents it (any
 * bytes; borrowed), used only for cookies and the amplification budget (an INIT with a valid
 * mac1 credits len bytes to it). Returns one of enum gp_sess_kind; *sess (borrowed) is set
 * for GP_SESS_DATA, NULL otherwise. */
int gp_sess_server_classify(gp_sess_server *srv, const uint8_t *dg, size_t len, const void *addr,
                            size_t addrlen, int under_load, uint64_t now_ns, gp_sess **sess);

enum { GP_SESS_HS_NEW = 1, GP_SESS_HS_RETRANSMIT = 2 };

/* Opens an initiation (one X25519: DH(static, ephemeral)) and decrypts the house id.
 * Returns GP_SESS_HS_NEW with *hs handed over to the caller: look up the psk for
 * gp_sess_hs_house_id(*hs), then call gp_sess_server_respond (or gp_sess_hs_free).
 * Returns GP_SESS_HS_RETRANSMIT with *sess (borrowed) when this is a copy of an initiation
 * already answered, inside the retransmit window and not yet confirmed: send
 * gp_sess_server_resend(*sess). Errors (drop the datagram): GP_ERR_AUTH (not a valid
 * initiation, or seen after the retransmit window: a replay), GP_ERR_MALFORMED (invalid house
 * id), GP_ERR_TOO_LARGE (max_pending initiations await their psk: the house will retransmit). */
GP_WUR int gp_sess_server_parse(gp_sess_server *srv, const uint8_t *dg, size_t len, uint64_t now_ns,
                                gp_sess_hs **hs, gp_sess **sess);

/* The decrypted house id of a parsed initiation (borrowed from hs). */
gp_str gp_sess_hs_house_id(const gp_sess_hs *hs);
/* Abandons a parsed initiation (e.g. the psk lookup failed). NULL ok. */
void gp_sess_hs_free(gp_sess_hs *hs);

/* Finishes the handshake with the house's psk (borrowed; NULL: no such house — same silence as
 * a wrong psk). Always consumes hs. floor_ts: the largest timestamp already accepted for this
 * house elsewhere (e.g. by other bridges, kept in Redis beside the psk), 0 if unknown: the
 * initiation's timestamp must be larger than it and than the one this server remembers.
 * wall_ms: the bridge's wall clock (for max_skew_ms). On success writes the response datagram
 * into out (cap >= the MTU always suffices; at least 73) for `addr` and returns its size, or 0
 * when the amplification budget of addr forbids sending it (the house will retransmit); *sess
 * is the new session (handed over; registered under its connection id until freed), or NULL
 * when the initiation was a duplicate of one already answered (out then holds that session's
 * response again). Errors (send nothing): GP_ERR_AUTH (unknown house, wrong psk, replayed or
 * skewed timestamp), GP_ERR_BUFFER, GP_ERR_NOMEM, GP_ERR_STATE (server freed). */
GP_WUR ssize_t gp_sess_server_respond(gp_sess_server *srv, gp_sess_hs *hs, const uint8_t *psk,
                                      uint64_t floor_ts, const void *addr, size_t addrlen,
                                      uint64_t now_ns, uint64_t wall_ms, uint8_t *out, size_t cap,
                                      gp_sess **sess);

/* The response of a bridge-side session again (fresh padding and mask, same content), for a
 * retransmitted initiation from addr. Returns its size, 0 if the amplification budget of addr
 * forbids it; GP_ERR_STATE if s is not an unconfirmed bridge-side session of a live server;
 * GP_ERR_BUFFER if cap < 73. */
ssize_t gp_sess_server_resend(gp_sess_server *srv, gp_sess *s, const void *addr, size_t addrlen,
                              uint64_t now_ns, uint8_t *out, size_t cap);

/* 1 if dg is an initiation with a valid mac1 and a mac2 made with a cookie for addr (current
 * or previous cookie secret): its sender has shown that it receives at addr. Credits nothing
 * (classify did); 0 otherwise. */
int gp_sess_server_init_proven(gp_sess_server *srv, const uint8_t *dg, size_t len, const void *addr,
                               size_t addrlen, uint64_t now_ns);

/* A cookie reply to the initiation dg (which classify called GP_SESS_COOKIE), for addr. No
 * state is kept. Returns its size (never more than len), 0 when the budget forbids it;
 * GP_ERR_AUTH if dg is not an initiation with a valid mac1; GP_ERR_BUFFER if cap < 57. */
ssize_t gp_sess_server_cookie_reply(gp_sess_server *srv, const uint8_t *dg, size_t len,
                                    const void *addr, size_t addrlen, uint64_t now_ns, uint8_t *out,
                                    size_t cap);

/* Amplification budget of unverified addresses (bounded table, oldest evicted): the server
 * never sends an address more than 3x the bytes it received from it until the address is
 * validated. The handshake functions above apply it themselves; the caller uses these for
 * anything else it sends to an unverified address (e.g. data after a house's address changed,
 * until the house acknowledges data sent there). credit: len bytes were received from addr.
 * allow: 1 and records n bytes as sent if validated or within 3x, else 0. validate: addr proved
 * it receives what is sent to it (a datagram from it opened in a confirmed session). */
void gp_sess_server_amp_credit(gp_sess_server *srv, const void *addr, size_t addrlen, size_t n);
int gp_sess_server_amp_allow(gp_sess_server *srv, const void *addr, size_t addrlen, size_t n);
void gp_sess_server_amp_validate(gp_sess_server *srv, const void *addr, size_t addrlen);

void gp_sess_server_stats(const gp_sess_server *srv, gp_sess_server_counters *out);

/* ---- both sides ------------------------------------------------------------------------ */

/* Seals one payload (borrowed; len <= gp_sess_payload_limit(s)) into a datagram in out (must
 * not overlap payload; cap >= the MTU always suffices), padded to a size drawn from the
 * session's distribution. An empty payload is a valid keepalive. Returns the datagram size;
 * GP_ERR_STATE if not established, if this is a bridge-side session not yet confirmed by the
 * house's first datagram, or once 2^62 datagrams were sent (handshake again);
 * GP_ERR_TOO_LARGE if len is over the limit; GP_ERR_BUFFER if cap < len + overhead. */
ssize_t gp_sess_seal(gp_sess *s, const uint8_t *payload, size_t len, uint8_t *out, size_t cap,
                     uint64_t now_ns);

/* Result flags of gp_sess_open. */
#define GP_SESS_RX_DATA 1u /* a data datagram: its payload (maybe empty) is in out */
#define GP_SESS_RX_NEWEST                                                                          \
    2u /* highest packet number yet: the caller may move the peer's                                \
          address to this datagram's source (NAT rebinding) */
#define GP_SESS_RX_CONFIRMED                                                                       \
    4u                            /* bridge: first datagram of the house in this session: the      \
                                     session may send now; retire the house's older sessions */
#define GP_SESS_RX_ESTABLISHED 8u /* house: the response was accepted; send data now */
#define GP_SESS_RX_COOKIE 16u     /* house: a cookie arrived; call gp_sess_client_hello now */
#define GP_SESS_RX_REKEY 32u      /* the peer moved to a new key epoch */

/* Opens one datagram received for this session (house side: every datagram from the bridge,
 * including handshake responses and cookie replies). Writes the payload into out (must not
 * overlap dg; cap >= len always suffices) and returns its length (0 for keepalives and
 * handshake datagrams); *flags (may be NULL) gets GP_SESS_RX_* bits. Errors, all "drop the
 * datagram, the session is unchanged", each counted in the stats: GP_ERR_TRUNCATED (too
 * short), GP_ERR_AUTH (tampered, truncated, foreign, forged, replayed, unknown key),
 * GP_ERR_STATE (not expected now: a duplicate handshake reply), GP_ERR_BUFFER (cap too small,
 * not counted), GP_ERR_INVALID (NULL s or dg). */
GP_WUR ssize_t gp_sess_open(gp_sess *s, const uint8_t *dg, size_t len, uint8_t *out, size_t cap,
                            uint64_t now_ns, unsigned *flags);

/* When the caller must act next. House, while handshaking: the next initiation retransmit
 * (call gp_sess_client_hello). Bridge, until the house's first datagram: the end of the
 * retransmit window; a session still unconfirmed then never will be (the house gave up or the
 * initiation was replayed from elsewhere): free it. UINT64_MAX otherwise (data timers belong to
 * the reliability layer). */
uint64_t gp_sess_expiry(const gp_sess *s);

int gp_sess_established(const gp_sess *s); /* keys derived (house: response accepted) */
int gp_sess_confirmed(const gp_sess *s);   /* may seal (bridge: the house's data was seen) */
int gp_sess_is_bridge(const gp_sess *s);
uint64_t gp_sess_cid(const gp_sess *s);         /* connection id; 0 before established */
gp_str gp_sess_house_id(const gp_sess *s);      /* borrowed from s */
uint64_t gp_sess_timestamp(const gp_sess *s);   /* the initiation's timestamp (wall ms) */
size_t gp_sess_payload_limit(const gp_sess *s); /* largest payload gp_sess_seal takes */
/* Changes the largest datagram this side sends (the peer accepts any size up to
 * GP_SESS_DGRAM_MAX): a new ladder of padded sizes up to it. 0, or GP_ERR_INVALID outside
 * [GP_SESS_MTU_MIN, GP_SESS_DGRAM_MAX]. */
int gp_sess_set_mtu(gp_sess *s, size_t mtu);
void gp_sess_stats(const gp_sess *s, gp_sess_counters *out);

/* Frees a session, wiping its keys; a bridge-side one leaves the server's index. NULL ok. */
void gp_sess_free(gp_sess *s);

/* The full packet number nearest to largest+1 whose low 28 bits (the part on the wire) are
 * trunc (RFC 9000 A.3); `any`: whether any packet was received yet. Exposed for tests. */
uint64_t gp_sess_pn_expand(uint64_t largest, int any, uint32_t trunc);

#endif
