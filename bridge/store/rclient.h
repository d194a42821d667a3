/* rclient.h — a blocking Redis client that works against one server and against a Redis
 * Cluster alike, like `redis-cli -c`: a command goes to the node that held its slot last time
 * (or to the seed), and a MOVED or ASK reply sends it on to the node named there. One
 * context per node, connected on demand and dropped on error (the next command reconnects).
 * Used by the `ghostport` CLI and the tests; the daemon uses the async rdb.h. Not
 * thread-safe: one br_rc per thread. I/O side. */
#ifndef BR_RCLIENT_H
#define BR_RCLIENT_H

#include <hiredis/hiredis.h>

#include "rurl.h"

typedef struct br_rc br_rc;

/* Seed host:port (db: SELECTed on every connection; a cluster has only db 0); timeout_ms
 * for connects and commands (0: none). NULL on allocation failure. Nothing is connected
 * until the first command (or br_rc_ping). */
br_rc *br_rc_new(const char *host, int port, int db, int timeout_ms);
/* The same for a parsed address (rurl.h): its host, port, db and credentials. NULL on
 * allocation failure. */
br_rc *br_rc_new_url(const gp_rurl *u, int timeout_ms);
void br_rc_free(br_rc *rc); /* NULL ok */
/* Credentials sent by AUTH on every connection, redirections' nodes included, before SELECT:
 * user NULL or "" for the default user, pass NULL for none. Copied (wiped on free). 0 or -1
 * (no memory). */
int br_rc_set_auth(br_rc *rc, const char *user, const char *pass);
/* 1 when the last failure was Redis refusing the credentials (WRONGPASS, NOAUTH): the message
 * in br_rc_error says which and what to do. */
int br_rc_auth_failed(const br_rc *rc);
/* One connection to host:port with u's credentials, db and TLS (through the relay of
 * tlsrelay.h when u->tls): AUTH, SELECT. NULL with a message in err (*auth_failed = 1 when
 * Redis refused the credentials). For tools that pipeline on a raw context. */
redisContext *br_rc_dial(const gp_rurl *u, const char *host, int port, int timeout_ms, char *err,
                         size_t errlen, int *auth_failed);
/* Connects the seed and PINGs it: 0, or -1 with the reason in br_rc_error. */
int br_rc_ping(br_rc *rc);
/* Command timeout for what follows (e.g. longer than an XREAD BLOCK). */
void br_rc_set_timeout(br_rc *rc, int timeout_ms);
/* Sends the command (lens NULL: strlen). The reply is the caller's to free; NULL when the
 * connection failed (why: br_rc_error). The key is taken as argv[1] (argv[2] for XGROUP and
 * XINFO, argv[3] for EVAL/EVALSHA, the one after STREAMS for XREAD/XREADGROUP), only to pick
 * the first node to ask. */
redisReply *br_rc_cmdv(br_rc *rc, int argc, const char **argv, const size_t *lens);
const char *br_rc_error(const br_rc *rc);
/* Drops every connection (the server went away; the next command reconnects). */
void br_rc_reset(br_rc *rc);

/* One command of a pipeline: argv/lens as for br_rc_cmdv (borrowed for the call). */
typedef struct br_rc_cmd {
    int argc;
    const char **argv;
    const size_t *lens; /* NULL: strlen */
} br_rc_cmd;

/* Sends n commands at once and collects their replies into out[0..n) (the caller frees each
 * non-NULL one). On a cluster the commands are grouped by the node that holds their key's
 * slot, every node's batch is written before any reply is read, and commands answered with
 * MOVED are sent again (batched) to the node named there; ASK is followed one command at a
 * time. Returns 0 when every command got a reply (possibly an error reply), -1 when some did
 * not (their out[i] is NULL; why: br_rc_error). */
int br_rc_pipeline(br_rc *rc, int n, const br_rc_cmd *cmds, redisReply **out);

/* Runs a command on the node host:port itself, without following redirections (for
 * commands that concern one node of a cluster, such as SCAN). The node joins the client's
 * table (at most 16 nodes). The reply is the caller's; NULL on a connection error. */
redisReply *br_rc_cmd_node(br_rc *rc, const char *host, int port, int argc, const char **argv,
                           const size_t *lens);

/* Names every connection this client makes from now on (CLIENT SETNAME name, after AUTH and
 * SELECT): which process holds a connection shows in CLIENT LIST. Best effort: a server or ACL
 * that refuses it leaves the connections unnamed (asked once). 0, or -1 for a name over 63
 * bytes. */
int br_rc_set_name(br_rc *rc, const char *name);
/* Which connection key's commands go to now: a number that changes when that is another node
 * or a new connection (0: none yet). For CLIENT ID / CLIENT UNBLOCK, which concern one
 * connection: a blocked reader asks its id again when its route changed. */
unsigned long br_rc_route(const br_rc *rc, const char *key, size_t keylen);
/* Runs a keyless command (CLIENT ID, CLIENT UNBLOCK) on the node key's commands go to now (its
 * slot's last known node, else the seed), connecting if need be, without following
 * redirections. The reply is the caller's; NULL on a connection error (why: br_rc_error). */
redisReply *br_rc_cmd_at(br_rc *rc, const char *key, size_t keylen, int argc, const char **argv,
                         const size_t *lens);

/* The seed's host and port (as given to br_rc_new). */
const char *br_rc_seed_host(const br_rc *rc);
int br_rc_seed_port(const br_rc *rc);

#endif
