/* rc.h — a blocking Redis client for tests that works against one server and against a
 * Redis Cluster alike, like `redis-cli -c`: a command goes to the node that held its slot
 * last time (or to the seed), and a MOVED or ASK reply sends it on to the node named there.
 * One context per node, connected on demand and dropped on error (the next command
 * reconnects). Not thread-safe: one h_rc per thread. I/O side, test-only. */
#ifndef GP_RC_H
#define GP_RC_H

#include <hiredis/hiredis.h>

typedef struct h_rc h_rc;

/* Seed 127.0.0.1:port; timeout_ms for connects and commands. NULL on allocation failure. */
h_rc *h_rc_new(int port, int timeout_ms);
void h_rc_free(h_rc *rc); /* NULL ok */
/* Command timeout for what follows (e.g. longer than an XREAD BLOCK). */
void h_rc_set_timeout(h_rc *rc, int timeout_ms);
/* Sends the command (lens NULL: strlen). The reply is the caller's to free; NULL when the
 * connection failed (why: h_rc_error). The key is taken as argv[1] (argv[2] for XGROUP and
 * XINFO, the one after STREAMS for XREAD/XREADGROUP), only to pick the first node to ask. */
redisReply *h_rc_cmdv(h_rc *rc, int argc, const char **argv, const size_t *lens);
const char *h_rc_error(const h_rc *rc);
/* Drops every connection (the server went away; the next command reconnects). */
void h_rc_reset(h_rc *rc);

#endif
