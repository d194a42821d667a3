/* world.h — the system most integration tests start, and the checks they share: Redis, the
 * upstream (tests/upstream.py), a bridge and houses, connected; how often the upstream ran a
 * frame id; what is still pending; a house that still serves. Built on harness.h; it fails the
 * test with Criterion's asserts, so the benchmarks (no Criterion) link the harness without it. */
#ifndef GP_WORLD_H
#define GP_WORLD_H
#include "harness.h"
#include "load.h"

typedef struct h_world {
    int bridge_port, up_port;
    char up_url[64]; /* http://127.0.0.1:<up_port> */
    h_proc *redis, *bridge, *up, *house;
    char secret[65]; /* house's, when h_world_up started one */
} h_world;

/* Zeroes w; starts Redis, the upstream and a bridge (extra args, may be NULL); with id not NULL
 * also registers house id and starts it (house_extra may be NULL), and fails the test unless
 * it connects within 15 s. */
void h_world_up(h_world *w, const char *id, const char *const *bridge_extra,
                const char *const *house_extra);
/* As h_world_up, the bridge serving wss:// with a fresh self-signed certificate for localhost
 * (h_self_signed: paths into cert and key, 700 bytes each; bridge_extra follows --tls-cert and
 * --tls-key), and house id (not NULL) connected over wss trusting it (--ca-file cert). */
void h_world_wss_up(h_world *w, const char *id, const char *const *bridge_extra, char *cert,
                    char *key);
/* Registers house id (secret into secret[65]), starts it against w's bridge and upstream and
 * fails the test unless it connects within 15 s. */
h_proc *h_house_up(const h_world *w, const char *id, char secret[65], const char *const *extra);

/* A bridge b1 that also listens for rudp:// houses on a free UDP port with a key of its own
 * (`ghostport rudp-keygen`, rudp.key in the test directory): fails the test unless the key is
 * made and the bridge says transport=rudp within 5 s. Its TCP port into *port, the houses'
 * URL (rudp://127.0.0.1:<udp>) into url and the key's public half (64 hex) into pub. */
h_proc *h_rudp_bridge_start(int *port, char url[64], char pub[65]);

/* Upstream calls that carried x-frame-id: id (tests/upstream.py counts them), or -1 when the
 * upstream did not answer 200. */
int h_hits(int port, const char *id);
/* For h_wait: the upstream at port has seen frame id `id` at least once. */
typedef struct h_hits_arg {
    int port;
    const char *id;
} h_hits_arg;
int h_upstream_hit(void *hits_arg);

/* Entries of house's request stream delivered and not yet acknowledged (XPENDING), -1 on an
 * unexpected reply; h_no_pending(house) for h_wait. */
int h_xpending(const char *house);
int h_no_pending(void *house);

/* One request of the public contract: each field that is not NULL is sent, in this order;
 * reply_len is the reply's length when it is binary (0: strlen). */
typedef struct h_req {
    const char *id, *method, *path, *service, *headers, *body, *timeout_ms, *reply;
    size_t reply_len;
} h_req;
/* XADD of r to house's stream; returns the entry id (static buffer). */
const char *h_xadd_req(const char *house, const h_req *r);

/* XADD of one request tagged with an x-frame-id: id header (so that the upstream counts it,
 * h_hits): fields id, method, path, headers, then body and timeout_ms when not NULL, and reply
 * (rlen bytes, (size_t)-1: strlen). Returns the entry id (static buffer). */
const char *h_xadd_tagged(const char *house, const char *id, const char *method, const char *path,
                          const char *body, const char *timeout_ms, const char *reply, size_t rlen);

/* XADD of a GET of path as frame id `id`, answered on reply (no other fields). */
const char *h_xadd_get(const char *house, const char *id, const char *path, const char *reply);

/* GET path as frame_id to house gets a 200 within 20 s. */
void h_assert_get_ok(const char *house, const char *frame_id, const char *path);
/* The same for /echo?ok=1: nobody was disturbed. */
void h_assert_serves(const char *house, const char *frame_id);

/* Ends a load (tests/harness/load.h) and checks it request by request: settled within 5 s of
 * the last deadline (every request got its final reply), and with upstream_port, the upstream
 * ran no frame id twice; the report is printed under name. Fails the test otherwise; frees l
 * and returns the figures. */
h_load_result h_load_finish(h_load *l, const char *name, int upstream_port);

/* The reply is an error reply: status and error as given. */
void h_assert_error_reply(const h_reply *r, int status, const char *error);

/* <test directory>/name, in one of 8 static buffers used in turn. */
char *h_path(const char *name);
/* Writes text to path and sets its mode (0600 for a secret: the daemons refuse one others can
 * read); fails the test if it cannot. */
void h_write_file(const char *path, const char *text, int mode);

/* A self-signed certificate for localhost and 127.0.0.1 (openssl req -newkey <newkey>, e.g.
 * "rsa:2048" or "ec -pkeyopt ec_paramgen_curve:P-256") as bridge.crt / bridge.key in the test
 * directory, their paths in cert and key; openssl's output in openssl.log. 1, or 0 if openssl
 * failed. */
int h_self_signed(const char *newkey, char *cert, size_t certlen, char *key, size_t keylen);

/* Raises this process's soft descriptor limit to at least n where the hard limit allows (a
 * test that holds many sockets itself). */
void h_raise_nofile(unsigned long n);
#endif
