/* harness.h — integration-test harness: real redis-server, ghostport-bridge, ghostport-house
 * and the Python upstream, each started on a free loopback port in a per-test directory and
 * stopped by PID; bounded waits on conditions (never sleeps as synchronisation); a blocking
 * hiredis client; request/reply helpers speaking the public Redis contract; a raw WebSocket
 * client for hostile-peer tests. I/O side, test-only.
 *
 * Use from a Criterion test:
 *     TestSuite(e2e, .init = h_init, .fini = h_fini, .timeout = 90);
 * Each test gets <BUILD>/it-logs/<suite>.<test>/ with one log per process. When a test fails
 * the tails of its logs are printed and the directory kept; when it passes it is removed.
 *
 * Environment: BUILD (default "build"), GP_BIN_DIR (default $BUILD/bin), GP_UPSTREAM
 * (default tests/upstream.py), GP_IT_DIR (default $BUILD/it-logs), GP_REDIS_SERVER (default
 * redis-server on PATH). Paths are relative to the working directory (the repository root
 * when run by `make test`). */
#ifndef GP_HARNESS_H
#define GP_HARNESS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* --- life cycle ------------------------------------------------------------------------- */
void h_init(void);       /* per-test directory; call as the suite's .init */
void h_fini(void);       /* stops every started process, closes Redis; the suite's .fini */
const char *h_dir(void); /* this test's directory (absolute) */
const char *h_bin(const char *name); /* path of a binary in GP_BIN_DIR (static buffer) */
uint64_t h_now_ms(void);             /* monotonic */

/* A free TCP port on 127.0.0.1 (bind to port 0, read it back, close). */
int h_free_port(void);

/* --- processes -------------------------------------------------------------------------- */
typedef struct h_proc {
    pid_t pid;     /* 0 once reaped */
    char name[32]; /* log file: <dir>/<name>.log (appended to on restart) */
    char log[512];
    long log_off; /* log size when this incarnation started: log waits look after it */
    int status;   /* wait status once reaped */
} h_proc;

/* Starts argv (argv[0] a path) with stdout+stderr appended to <dir>/<name>.log and
 * PR_SET_PDEATHSIG so it never outlives the test. Fails the test if fork/exec fails. */
h_proc *h_spawn(const char *name, char *const argv[]);
/* Forks and runs argv (argv[0] a path, or a name looked up on PATH) with stdin, stdout and
 * stderr on in (-1: /dev/null), out and err: the child never outlives this process
 * (PR_SET_PDEATHSIG), enters the network namespace /run/netns/<ns> first when ns is not NULL,
 * keeps no other descriptor and takes SIGPIPE's default action. The child's pid, or -1 (errno)
 * when fork failed. h_spawn's children and the benchmarks' tasks start through it. */
pid_t h_fork_exec(char *const argv[], int in, int out, int err, const char *ns);
/* Runs argv (no shell; argv[0] a path or a name on PATH) to its end through h_fork_exec,
 * killed after timeout_ms; stdout and stderr together into *out (malloc'd; out NULL: dropped).
 * The exit status, or -1 (could not start, ended by a signal, or timed out). */
int h_capture(char *const argv[], int timeout_ms, char **out);
/* 1 if still running (reaps it otherwise). */
int h_alive(h_proc *p);
/* "<who>: <message>" on stderr, every process started here stopped, then abort() (exit_code
 * < 0: a test's crash) or exit(exit_code) (a benchmark's failure). */
void h_fatal(const char *who, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* SIGTERM, wait up to 5 s, then SIGKILL. Returns the wait status (or -1 if not running). */
int h_stop(h_proc *p);
void h_kill9(h_proc *p); /* SIGKILL and reap */
void h_stop_all(void);

/* --- conditions ------------------------------------------------------------------------- */
/* Polls pred(ud) every 10 ms until it returns non-zero or timeout_ms passes. 1 / 0. */
int h_wait(int (*pred)(void *ud), void *ud, int timeout_ms);
int h_wait_port(int port, int timeout_ms);            /* a TCP connect to 127.0.0.1:port works */
int h_log_count(const h_proc *p, const char *needle); /* occurrences since log_off */
int h_log_count_all(const h_proc *p, const char *needle); /* in the whole log file */
int h_wait_log(const h_proc *p, const char *needle, int timeout_ms);
int h_wait_log_n(const h_proc *p, const char *needle, int n, int timeout_ms);
int h_wait_connected(const char *house, int timeout_ms); /* its state hash names a bridge */
int h_wait_offline(const char *house, int timeout_ms);   /* no state hash */
/* Reads a whole file into a NUL-terminated malloc'd buffer (NULL if unreadable). */
char *h_read_file(const char *path, size_t *len);

/* --- Redis ------------------------------------------------------------------------------ */
/* Starts redis-server on `port` (0: a free one), waits until it answers PING. */
h_proc *h_redis_start(int port);
/* The same with --appendonly yes --appendfsync always (files in the test directory): after
 * h_kill9, h_redis_start_aof on the same port comes back with everything Redis acknowledged.
 * Waits for PING, which Redis answers only once the AOF is loaded. */
h_proc *h_redis_start_aof(int port);
/* The same as h_redis_start with --aclfile PATH (Redis's ACL users; the harness's own client
 * and its PING use the `default` user, so the file must leave it on, without a password). */
h_proc *h_redis_start_acl(int port, const char *aclfile);
/* A Redis Cluster of n masters (no replicas) on free ports, created with `redis-cli --cluster
 * create`; waits until every node says cluster_state:ok. out[0..n) get the processes (logs
 * redis-PORT.log); h_redis_port()/h_redis_url() name the first node, which serves as the seed
 * for the bridge and the harness's own client (which follows MOVED, see bridge/store/rclient.h). */
void h_redis_cluster_start(int n, int aof, h_proc **out);
int h_redis_port(void);
/* "redis://127.0.0.1:PORT/0"; with GP_TEST_REDIS (below) "rediss://", credentials. */
const char *h_redis_url(void);
/* GP_TEST_REDIS: how every Redis of the suites is started and reached, words joined by '+':
 *   auth        requirepass with a random password (it has '@' and '/': the URL carries it
 *               percent-encoded, and every program must decode it)
 *   tls         TLS only (port 0, tls-port; tls-cluster for a cluster), with a CA and a
 *               certificate made by openssl in the test directory; the CA reaches every
 *               program as GP_REDIS_CA_FILE, and the harness's own client uses the TLS relay
 *   mtls        tls, and Redis wants a client certificate (tls-auth-clients yes): every
 *               program gets one through GP_REDIS_CERT_FILE / GP_REDIS_KEY_FILE
 *   acl=FILE    after start, each "user NAME rules..." line of FILE (Redis's ACL file
 *               format) is loaded with ACL SETUSER (implies auth)
 *   user=NAME   the programs log in as NAME (its password: the line's first ">password"
 *               rule); the harness's own client stays the default user with all rights
 * e.g. GP_TEST_REDIS=auth+tls, or auth+acl=deploy/redis-users.acl+user=gp-bridge. Unset or
 * "plain": no password, no TLS. */
const char *h_redis_mode(void); /* "plain", "auth+tls", ... for messages */
/* Sets the mode for this test (before its first h_redis_start), whatever the environment. */
void h_redis_mode_set(const char *spec);
const char *h_redis_password(void); /* the default user's password, NULL without auth */
/* A raw connection to the node on port as the harness (AUTH, TLS as the mode says): for
 * tests that need their own context (subscribers, pipelines). NULL with a message in err. */
redisContext *h_redis_connect(int port, int timeout_ms, char *err, size_t errlen);
/* A new client of its own (rclient.h) for the node on port, as the harness: for threads.
 * NULL on allocation failure. */
struct br_rc *h_redis_client(int port, int timeout_ms);
/* The harness's own client (one server or a cluster, see bridge/store/rclient.h; reconnects if the
 * server was restarted). */
struct br_rc *h_redis(void);
/* redisCommand on h_redis(); NULL reply fails the test. Caller frees. */
redisReply *h_cmd(const char *fmt, ...);
/* Binary-safe argv command; NULL reply fails the test. Caller frees. */
redisReply *h_cmdv(int argc, const char **argv, const size_t *lens);
long long h_int(const char *fmt, ...); /* integer reply, or -1 for nil/other */
/* The byte keys of house's TCP streams (gp:{house}:sin:* and :sout:*, proto/STREAMS.md): how
 * many there are, the entries they hold and their MEMORY USAGE in bytes. One server only. */
int h_stream_keys(const char *house, long long *entries, long long *bytes);

/* --- Ghost Port processes --------------------------------------------------------------- */
/* Starts the bridge with --allow-ws --bind 127.0.0.1 --listen PORT --redis URL, plus extra
 * (NULL-terminated, may be NULL). port 0: a free one; *out_port gets it. Waits until it
 * accepts connections unless wait is 0. */
h_proc *h_bridge_start(int port, int *out_port, const char *const *extra, int wait);
/* Starts a house: id, secret (hex), bridge ws URL for port, default upstream URL, extra
 * args. Returns without waiting (use h_wait_connected). */
h_proc *h_house_start(const char *id, const char *secret_hex, int bridge_port,
                      const char *upstream_url, const char *const *extra);
/* The same with a full bridge URL (wss://...). */
h_proc *h_house_start_url(const char *id, const char *secret_hex, const char *bridge_url,
                          const char *upstream_url, const char *const *extra);
/* Starts gp-loadhouses: `count` houses lh-1..lh-<count>, registered, dialing bridge_url, with
 * extra args. Returns without waiting (its log says event=all_connected). */
h_proc *h_loadhouses_start(const char *bridge_url, int count, const char *const *extra);
/* Starts tests/upstream.py on a free port; waits for its "listening" line. */
h_proc *h_upstream_start(int *out_port);
/* Registers a house directly in Redis (secret stored as hex, no master key); writes the
 * secret's hex into secret_hex[65]. */
void h_register(const char *house, char secret_hex[65]);
/* Runs argv (argv[0] a path) to its end, killed after timeout_ms; stdout into a malloc'd *out
 * (out NULL: dropped), stderr into *err, or with stdout when err is NULL. Returns the exit
 * code, or 128 + the signal that ended it (a timeout: 137). */
int h_run(const char *const *argv, int timeout_ms, char **out, size_t *out_len, char **err);
/* h_run with stdin from the file at path in (h_run: /dev/null). */
int h_run_in(const char *const *argv, const char *in, int timeout_ms, char **out, size_t *out_len,
             char **err);
/* Runs the ghostport CLI with argv (NULL-terminated, without argv[0]) and the harness's
 * Redis; captures stdout (and stderr) into malloc'd buffers. Returns the exit code. */
int h_cli(char **out, size_t *out_len, char **err, const char *const *args);

/* --- requests (the public contract) ----------------------------------------------------- */
typedef struct h_field {
    const char *name;
    const void *val;
    size_t len; /* (size_t)-1: strlen(val) */
} h_field;
/* XADD <p>:{house}:req MAXLEN ~ 10000 * f... ; returns the entry id (static buffer). */
const char *h_xadd(const char *house, const h_field *f, size_t n);
/* A usual request: id frame_id, method, path, headers (JSON or NULL), body (may be NULL),
 * timeout_ms (0: field omitted), reply gp:rep:<frame_id>. Returns the entry id. */
const char *h_request(const char *house, const char *frame_id, const char *method, const char *path,
                      const char *headers, const void *body, size_t blen, unsigned timeout_ms);

typedef struct h_reply {
    int final; /* 1 when the final entry arrived */
    int status;
    char *headers; /* JSON text from the first entry */
    char *error;   /* NULL for upstream replies */
    char *message;
    uint8_t *body; /* all entries' bodies concatenated (NUL-terminated for convenience) */
    size_t body_len;
    int entries;
    int extra; /* entries after the final one (duplicates) seen while reading */
} h_reply;
/* XREAD BLOCK loop on key (default gp:rep:<frame_id> when key is NULL) until final 1 or
 * timeout_ms. Returns 1 if a final reply arrived, else 0 (r holds what came). */
int h_wait_reply(const char *frame_id, const char *key, int timeout_ms, h_reply *r);
void h_reply_free(h_reply *r);
/* Value of header `name` (case-insensitive) in the reply's headers JSON (static buffer). */
const char *h_reply_header(const h_reply *r, const char *name);

/* GET path from 127.0.0.1:port (h_http below, no headers, no body). Returns the status and
 * the body in a malloc'd *body (may be NULL), or -1. */
int h_http_get(int port, const char *path, char **body);
/* A TCP connection to 127.0.0.1:port (blocking), or -1. */
int h_dial(int port);
/* A TCP connection to addr (IPv4 or IPv6, as text):port within timeout_ms: the socket (left
 * non-blocking), or -1 (refused, or nothing answered in time: a SYN dropped on the way). */
int h_tcp_connect(const char *addr, int port, int timeout_ms);
/* One HTTP/1.1 request to 127.0.0.1:port (Connection: close): method, path, extra header
 * lines (each "Name: value\r\n", or NULL), a body (Content-Length is sent when body is not
 * NULL). Returns the status and the response body in a malloc'd *body (may be NULL), or -1
 * (connection failed, or no answer within 10 s). The response headers go to *headers when
 * it is not NULL (malloc'd). */
int h_http(int port, const char *method, const char *path, const char *hdrs, const void *body,
           size_t blen, char **resp_body, char **headers);

/* --- admin port --------------------------------------------------------------------------- */
/* The admin port a daemon started with --admin-listen 0 logged within 10 s, or 0. */
int h_admin_port(const h_proc *p);
/* The port a daemon logged listening on (event=listening transport=<transport> port=N) within
 * 10 s, or 0: "admin", "http" (the bridge's front door). */
int h_listen_port(const h_proc *p, const char *transport);
/* GET /metrics: the text (malloc'd) when the answer is 200 in the Prometheus text format,
 * else NULL. */
char *h_scrape(int port);
/* The value of one sample ("name{labels}" exactly as rendered), or -1 when absent. */
double h_metric(const char *text, const char *key);

/* --- data helpers ----------------------------------------------------------------------- */
void h_sha256_hex(const void *p, size_t len, char out[65]);
/* The upstream's /bytes/N?seed=S content: sha256("S:0") | sha256("S:1") | ... */
uint8_t *h_prandom(size_t n, const char *seed);
/* A field of a JSON object text as string/integer (static buffer / -1). */
const char *h_json_str(const char *json, const char *key);
long long h_json_int(const char *json, const char *key);

/* --- raw WebSocket client (for hostile peers) ------------------------------------------- */
/* Connects and upgrades with Sec-WebSocket-Protocol ghostport.v1. Returns the fd, or -1 if
 * the connection or the upgrade failed (status line in *why when given). */
int h_ws_connect(int port, char *why, size_t whylen);
/* Sends one WebSocket frame (masked, as a client must): opcode 2 binary, 1 text, 8 close. */
int h_ws_send(int fd, int opcode, const void *p, size_t len, int fin);
/* Sends raw bytes (for truncated / malformed WebSocket framing). */
int h_ws_send_raw(int fd, const void *p, size_t len);
/* Sends one Ghost Port frame as a binary message. */
int h_ws_send_frame(int fd, const void *gp_frame_ptr);
/* Receives the next binary message's payload into a malloc'd buffer. Returns its length,
 * -1 on close/EOF (the peer closed: *closed set), -2 on timeout. Control frames are handled
 * (close returns -1; ping/pong skipped). */
long h_ws_recv(int fd, uint8_t **out, int timeout_ms, int *closed);
/* Waits until the peer closes (close frame or EOF), discarding data. 1 closed, 0 timeout. */
int h_ws_wait_closed(int fd, int timeout_ms);

/* The next Ghost Port frame from fd through the framer fr (a frame may span messages): 1 with
 * *f set; or, on close or timeout, -100; the framer's error (< 0) for a bad frame. */
struct gp_framer;
struct gp_frame;
int h_ws_next_frame(int fd, struct gp_framer *fr, struct gp_frame *f, int timeout_ms);
/* Runs the auth handshake as house `id` with `secret` (raw 32 bytes) on a connected fd.
 * Returns the type of the first frame after AUTH (GP_FRAME_WELCOME / GP_FRAME_GOAWAY), with
 * the GOAWAY code in *code and message in msg; or -1 if the connection closed / timed out
 * before (then *stage says where: 0 after HELLO, 1 after AUTH). When the CHALLENGE is a
 * GOAWAY (rate limited), returns GP_FRAME_GOAWAY with *stage = 0. */
int h_ws_auth(int fd, const char *id, const uint8_t secret[32], int *code, char *msg, size_t msglen,
              int *stage);

#endif
