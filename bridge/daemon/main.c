/* main.c — ghostport-bridge: configuration, startup, the periodic tick and an orderly
 * shutdown. One libuv loop hosts everything: libwebsockets (foreign loop), two hiredis
 * connections (commands, and a subscriber for the keyspace doorbell) and our timers.
 * I/O side. */
#include "../admin/admin.h"
#include "../admin/stats.h"
#include "../front/front.h"
#include "../log.h"
#include "../store/rkeys.h"
#include "../store/rurl.h"
#include "../store/tlsrelay.h"
#include "adapters/uv_signals.h"
#include "conf.h"
#include "conn.h"
#include "flood.h"
#include "house.h"
#include "janitor.h"
#include "requests.h"
#include "rudp_sess.h"
#include "streams.h"
#include "tlsfiles.h"
#include "tunnel.h"
#include "udp.h"
#include "version.h"

#include <errno.h>
#include <libwebsockets.h>
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

#define TICK_MS 100 /* deadline resolution */
#define SLOW_TICK_MS 1000
#define TIME_REFRESH_MS 10000
#define LEASE_MS 5000
#define SHUTDOWN_GRACE_MS 2000

/* The daemon's one top-level object (Redis keeps `server`): only this file names it. The
 * modules below get what they need at init: env (what they share), their own contexts
 * (conns, houses), or a narrow view (the admin port's). */
typedef struct br_bridge {
    br_config cfg;
    br_env env; /* loop, cfg, db, keys, clocks as the modules see them */
    br_conns conns;
    br_houses houses;
    char host_pid[128];
    char fence_channel[GP_KEY_MAX]; /* <prefix>:fence:<bridge id>: other bridges' claims of ours */
    char ctl_channel[GP_KEY_MAX];   /* <prefix>:ctl: disable/remove a house (ADMIN.md) */
    char rhost[256];
    int rport, rdb;
    gp_rurl rurl; /* the parsed --redis with its credentials (password wiped at exit) */
    struct lws_context *lws;
    int listen_port;
    char rudp_pub[65]; /* the rudp public key of --rudp-key (hex), "" when rudp is off */
    uint8_t server_key[32];
    uint8_t master_key[32];
    int has_master;
    uv_timer_t tick;
    gp_uv_signals signals;  /* SIGINT, SIGTERM: drain; SIGHUP: reload */
    struct gp_admin *admin; /* the admin port, NULL when off */
    int admin_port;         /* its port once listening */
    br_admin_token token;   /* the admin token (hash), reloaded on SIGHUP */
    br_metrics metrics;     /* the metrics' handles (admin/stats.c makes them) */
    /* The modules' contexts, made by wire() in this order and freed in reverse at exit. */
    br_stats *stats;     /* metrics registry, live stats in Redis */
    br_requests *reqs;   /* request/reply core: reply writer, settling table, its scripts */
    br_streams *streams; /* TCP streams through Redis (streams.h) */
    br_janitor *janitor; /* 504s for houses nobody holds */
    br_flood *flood;     /* pre-auth caps of the house listener */
    br_tunnel *tunnel;   /* ws/wss listener */
    br_udp *udp;         /* rudp listener and sessions */
    br_admin *adm;       /* admin port and its JSON API */
    br_front *front;     /* the HTTP front door, NULL when off */
    br_l3 *l3;           /* the L3 tunnel (--tun), NULL when off */
} br_bridge;

static br_bridge g_br;

static uint64_t g_last_slow, g_last_time;
static uv_timer_t g_grace;
static int g_drained;
static int g_argc;
static char **g_argv;

/* --- configuration ---------------------------------------------------------------------- */

#define OFF(f) offsetof(br_config, f)
static const gp_conf_opt opts[] = {
    {"config", GP_CONF_STR, OFF(config), 0, 0, NULL, NULL,
     "read options from FILE (name = value lines)"},
    {"redis", GP_CONF_STR, OFF(redis), 0, 0, "127.0.0.1:6379", NULL,
     "Redis: redis://[user:password@]host:port/db, rediss://... (TLS) or host:port"},
    {"redis-user", GP_CONF_STR, OFF(redis_user), 0, 0, NULL, NULL,
     "Redis ACL user to AUTH as (default: the URL's, else the default user)"},
    {"redis-password-file", GP_CONF_STR, OFF(redis_password_file), 0, 0, NULL, NULL,
     "file holding the Redis password, one line (wins over a password in the URL)"},
    {"redis-ca-file", GP_CONF_STR, OFF(redis_ca_file), 0, 0, NULL, NULL,
     "rediss://: CA certificates (PEM) Redis's certificate must chain to (default: the "
     "system's)"},
    {"redis-cert-file", GP_CONF_STR, OFF(redis_cert_file), 0, 0, NULL, NULL,
     "rediss://: client certificate (PEM), for Redis's tls-auth-clients"},
    {"redis-key-file", GP_CONF_STR, OFF(redis_key_file), 0, 0, NULL, NULL,
     "rediss://: the client certificate's private key (PEM)"},
    {"prefix", GP_CONF_STR, OFF(prefix), 0, 0, GP_DEFAULT_PREFIX, NULL, "Redis key prefix"},
    {"listen", GP_CONF_INT, OFF(listen), 0, 65535, "8443", NULL,
     "port houses connect to (0: any free port, logged in event=listening)"},
    {"bind", GP_CONF_STR, OFF(bind), 0, 0, "0.0.0.0", NULL, "address to listen on"},
    {"tls-cert", GP_CONF_STR, OFF(tls_cert), 0, 0, NULL, NULL, "TLS certificate (PEM) for wss://"},
    {"tls-key", GP_CONF_STR, OFF(tls_key), 0, 0, NULL, NULL, "TLS private key (PEM)"},
    {"allow-ws", GP_CONF_BOOL, OFF(allow_ws), 0, 1, "0", NULL,
     "allow plain ws:// without TLS (testing only)"},
    {"bridge-id", GP_CONF_STR, OFF(bridge_id), 0, 0, NULL, NULL,
     "this bridge's id (default hostname-pid)"},
    {"max-body", GP_CONF_INT, OFF(max_body), 0, 1LL << 30, "8388608", NULL,
     "largest request body in bytes (larger: 413)"},
    {"reply-chunk", GP_CONF_INT, OFF(reply_chunk), 1024, 64LL << 20, "1048576", NULL,
     "reply bodies larger than this are split into several entries"},
    {"reply-ttl", GP_CONF_INT, OFF(reply_ttl), 1, 30LL * 86400, "300", NULL,
     "seconds a reply stream is kept"},
    {"max-inflight", GP_CONF_INT, OFF(max_inflight), 1, 100000, "256", NULL,
     "requests in flight per house (more wait in Redis) [SIGHUP]"},
    {"max-inflight-bytes", GP_CONF_INT, OFF(max_inflight_bytes), 1024, 1LL << 40, "67108864", NULL,
     "request body bytes held per house before reading stops (more wait in Redis) [SIGHUP]"},
    {"lease-ms", GP_CONF_INT, OFF(lease_ms), 1000, 600000, "15000", NULL,
     "a held house's lease (its live state), renewed every third of it under the fence"},
    {"rudp-listen", GP_CONF_INT, OFF(rudp_listen), -1, 65535, "-1", NULL,
     "UDP port for rudp:// houses (-1: off; 0: any free port, logged)"},
    {"rudp-key", GP_CONF_STR, OFF(rudp_key), 0, 0, NULL, NULL,
     "file with the bridges' rudp private key, 64 hex digits (ghostport rudp-keygen)"},
    {"rudp-jitter-ms", GP_CONF_INT, OFF(rudp_jitter_ms), 0, 15, "0", NULL,
     "hold each rudp datagram 0..N ms before it leaves (hides timing; RTT unaffected)"},
    {"tun", GP_CONF_STR, OFF(tun), 0, 0, NULL, NULL,
     "TUN device for the L3 tunnel (proto/TUN.md), e.g. gp0: houses that ask get an address "
     "from --tun-pool and a route through it (rudp:// houses; needs CAP_NET_ADMIN)"},
    {"tun-pool", GP_CONF_STR, OFF(tun_pool), 0, 0, NULL, NULL,
     "CIDR[,CIDR]: the L3 tunnel's address pools, one IPv4 and/or one IPv6, the same on every "
     "bridge (the first host of each is the bridges' own address)"},
    {"tun-mtu", GP_CONF_INT, OFF(tun_mtu), 576, BR_L3_MTU_MAX, "1280", NULL,
     "the L3 tunnel's largest IP packet (a house may ask for less; IPv6 needs 1280)"},
    {"drain-timeout", GP_CONF_INT, OFF(drain_timeout), 0, 3600000, "15000", NULL,
     "on SIGTERM, ms to wait for in-flight requests before closing (houses move at once)"},
    {"ping-interval", GP_CONF_INT, OFF(ping_interval), 100, 600000, "5000", NULL,
     "ms between PINGs; a house silent for 3x this is dropped [SIGHUP: new connections]"},
    {"master-key", GP_CONF_STR, OFF(master_key), 0, 0, NULL, NULL,
     "64 hex digits: key that seals house secrets at rest"},
    {"log-level", GP_CONF_STR, OFF(log_level), 0, 0, "info", NULL,
     "error, warn, info or debug [SIGHUP]"},
    {"log-format", GP_CONF_STR, OFF(log_format), 0, 0, "kv", NULL, GP_LOG_FORMAT_HELP},
    {"auth-burst", GP_CONF_INT, OFF(auth_burst), 1, 1000000, "10", NULL,
     "failed auth attempts allowed back to back per address and house id [SIGHUP]"},
    {"auth-per-min", GP_CONF_INT, OFF(auth_per_min), 1, 1000000, "6", NULL,
     "failed auth attempts refilled per minute per address and house id [SIGHUP]"},
    {"auth-addr-burst", GP_CONF_INT, OFF(auth_addr_burst), 1, 1000000, "100", NULL,
     "failed auth attempts allowed back to back per address, whatever the house ids (one "
     "address may front many houses: a NAT) [SIGHUP]"},
    {"auth-addr-per-min", GP_CONF_INT, OFF(auth_addr_per_min), 1, 1000000, "60", NULL,
     "failed auth attempts refilled per minute per address, whatever the house ids [SIGHUP]"},
    {"preauth-max", GP_CONF_INT, OFF(preauth_max), 1, 1000000, "4096", NULL,
     "connections not authenticated yet, in all (at most half the descriptors lws may use); "
     "past it the oldest is closed"},
    {"preauth-per-addr", GP_CONF_INT, OFF(preauth_per_addr), 1, 1000000, "256", NULL,
     "connections not authenticated yet per source address (IPv6: per /64; houses behind one "
     "NAT share it); past it that address's oldest is closed"},
    {"auth-timeout", GP_CONF_INT, OFF(auth_timeout), 1, 600, "10", NULL,
     "seconds from accept for a house to authenticate before it is closed"},
    {"redis-timeout", GP_CONF_INT, OFF(redis_timeout), 100, 600000, "5000", NULL,
     "ms before a Redis command or connect is considered lost"},
    {"admin-listen", GP_CONF_INT, OFF(admin_listen), -1, 65535, "-1", NULL,
     "admin port: /healthz, /readyz, /metrics, the dashboard and its JSON API (-1: off; 0: any "
     "free port, logged in event=listening transport=admin)"},
    {"admin-bind", GP_CONF_STR, OFF(admin_bind), 0, 0, "127.0.0.1", NULL,
     "address of the admin port (plain HTTP: keep it on localhost or a management network)"},
    {"admin-host", GP_CONF_STR, OFF(admin_host), 0, 0, NULL, NULL,
     "Host names the admin port answers, comma-separated, besides IP addresses and localhost "
     "(others get 421: no DNS rebinding); add the names a browser or Prometheus uses"},
    {"admin-token", GP_CONF_STR, OFF(admin_token), 0, 0, NULL, NULL,
     "bearer token for the JSON API (prefer admin-token-file; none: the API answers 403 "
     "admin_disabled) [SIGHUP]"},
    {"admin-token-file", GP_CONF_STR, OFF(admin_token_file), 0, 0, NULL, NULL,
     "file holding the admin token (wins over admin-token) [SIGHUP]"},
    {"recent", GP_CONF_INT, OFF(recent), 0, 10000, "50", NULL,
     "recent requests kept per house for the dashboard (<prefix>:{h}:recent; 0: none) [SIGHUP]"},
    {"history-flush-ms", GP_CONF_INT, OFF(history_flush_ms), 0, 60000, "60000", NULL,
     "the request history (per minute, 24 h, per house and bridge: <prefix>:{h}:hist): ms "
     "between writes of what was counted (one script per house with traffic); 0: no history"},
    {"http-listen", GP_CONF_INT, OFF(http_listen), -1, 65535, "-1", NULL,
     "HTTP front door: curl a house's upstream at /h/<house>/<path> (-1: off; 0: any free port, "
     "logged in event=listening transport=http)"},
    {"http-bind", GP_CONF_STR, OFF(http_bind), 0, 0, "127.0.0.1", NULL,
     "address of the front door (plain HTTP: loopback only, unless http-insecure)"},
    {"http-tls", GP_CONF_BOOL, OFF(http_tls), 0, 1, "0", NULL,
     "HTTPS on the front door, with http-cert/http-key, else the bridge's tls-cert/tls-key"},
    {"http-cert", GP_CONF_STR, OFF(http_cert), 0, 0, NULL, NULL,
     "the front door's own TLS certificate (PEM; implies http-tls)"},
    {"http-key", GP_CONF_STR, OFF(http_key), 0, 0, NULL, NULL,
     "the front door's own TLS private key (PEM)"},
    {"http-insecure", GP_CONF_BOOL, OFF(http_insecure), 0, 1, "0", NULL,
     "allow plain HTTP on a non-loopback http-bind (behind a TLS proxy)"},
    {"http-token-file", GP_CONF_STR, OFF(http_token_file), 0, 0, NULL, NULL,
     "front door tokens, lines TOKEN HOUSE-GLOB [SERVICE-GLOB] (mode 0600; Bearer or Basic) "
     "[SIGHUP: read again; a new name needs a restart]"},
    {"http-public", GP_CONF_BOOL, OFF(http_public), 0, 1, "0", NULL,
     "front door open to anyone who reaches it (instead of http-token-file)"},
    {"http-domain", GP_CONF_STR, OFF(http_domain), 0, 0, NULL, NULL,
     "route Host <house>.DOMAIN and <service>.<house>.DOMAIN to the whole path"},
    {"http-timeout-ms", GP_CONF_INT, OFF(http_timeout_ms), 1, 86400000, "30000", NULL,
     "front door requests' timeout_ms when they send no X-Gp-Timeout-Ms"},
    {"check-config", GP_CONF_BOOL, OFF(check_config), 0, 1, "0", NULL,
     "check the configuration (file, environment, flags, the files they name) and exit: 0 when "
     "it is valid"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

/* What SIGHUP may change in a running bridge (the options marked [SIGHUP]); the others are
 * read once at start. */
static const char *const reloadable[] = {"log-level",
                                         "log-format",
                                         "auth-burst",
                                         "auth-per-min",
                                         "auth-addr-burst",
                                         "auth-addr-per-min",
                                         "max-inflight",
                                         "max-inflight-bytes",
                                         "ping-interval",
                                         "admin-token",
                                         "admin-token-file",
                                         "recent",
                                         NULL};

/* Failed-auth budgets from the options, the house listeners' (ws, rudp) and the front door's
 * alike. The per-address defaults are ten times the per-house ones: a NAT or CGNAT address may
 * front many houses, and a few of them failing (a secret being rotated) must not lock the
 * others out, while one address still cannot have more than about one proof a second checked
 * whatever ids it tries. */
static gp_authlimit_conf br_authlimit_conf(const br_config *c) {
    return (gp_authlimit_conf){(unsigned)c->auth_burst, (unsigned)c->auth_per_min,
                               (unsigned)c->auth_addr_burst, (unsigned)c->auth_addr_per_min, 4096};
}

static gp_authlimit *br_authlimit_new(const br_config *c) {
    gp_authlimit_conf ac = br_authlimit_conf(c);
    return gp_authlimit_new(&ac);
}

static void print_line(void *ud, const char *line) {
    (void)ud;
    printf("%s\n", line);
}

static void usage(void) {
    printf("usage: ghostport-bridge [options]\n"
           "       ghostport-bridge --version\n"
           "Accepts houses over wss:// and serves the requests producers add to Redis.\n\n");
    fputs(GP_CONF_USAGE_DAEMON, stdout);
    gp_conf_usage(opts, print_line, NULL);
}

static int br_read_key_file(const char *path, uint8_t out[32]) {
    if (!path || !*path) {
        br_log(BR_LOG_ERROR, "rudp_key_missing",
               "fix=\"--rudp-listen needs --rudp-key FILE: the bridges' private key (make it once "
               "with ghostport rudp-keygen --out FILE and give every bridge the same)\"");
        return -1;
    }
    char perr[512];
    int rc = gp_read_key_file(path, GP_KEY_SPACES, out, perr, sizeof perr);
    if (rc == GP_KEY_UNPROTECTED)
        br_log(BR_LOG_ERROR, "rudp_key_unprotected", "file=%s err=%s", br_qs(path), br_qs(perr));
    else if (rc == GP_KEY_UNREADABLE)
        br_log(BR_LOG_ERROR, "rudp_key_unreadable", "file=%s err=%s fix=%s", br_qs(path),
               br_qs(strerror(errno)),
               br_qs("give --rudp-key the file ghostport rudp-keygen --out wrote, readable by "
                     "the bridge's user"));
    else if (rc != 0)
        br_log(BR_LOG_ERROR, "rudp_key_invalid", "file=%s want=\"64 hex digits\" fix=%s",
               br_qs(path),
               br_qs("the file holds the private key alone, 64 hex digits on one line, as "
                     "ghostport rudp-keygen --out writes it"));
    return rc == 0 ? 0 : -1;
}

static int valid_bridge_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
            return 0;
    return 1;
}

/* Defaults < config file < environment < flags into cfg (zeroed by the caller). 0, or -1
 * with a message in err. */
static int load_layers(br_config *cfg, int argc, char **argv, char *err, size_t errlen) {
    if (gp_conf_defaults(opts, cfg, err, errlen) != 0)
        return -1;
    /* The file comes first in precedence order, so find its name before the rest. */
    const char *path = gp_conf_file_arg(argc, argv, getenv("GP_CONFIG"));
    if (path && *path) {
        int rc = gp_conf_load_file(opts, cfg, path, (size_t)64 << 20, err, errlen);
        if (rc == GP_CONF_EREAD)
            snprintf(err, errlen, "cannot read config %s: %s", path, strerror(errno));
        if (rc != 0)
            return -1;
        /* A config file that holds the master key or the admin token is a secret file. */
        if (((cfg->master_key && *cfg->master_key) || (cfg->admin_token && *cfg->admin_token)) &&
            gp_conf_secret_file_ok(path, err, errlen) != 0)
            return -1;
    }
    int npos = 0, pos[4];
    if (gp_conf_apply_env(opts, cfg, getenv, err, errlen) != 0 ||
        gp_conf_parse_argv(opts, cfg, argc, argv, 1, pos, 4, &npos, err, errlen) != 0)
        return -1;
    if (npos) {
        snprintf(err, errlen, "unexpected argument %s", argv[pos[0]]);
        return -1;
    }
    if (br_log_level_parse(cfg->log_level) < 0) {
        snprintf(err, errlen, "log-level: %s is not one of error, warn, info, debug",
                 cfg->log_level);
        return -1;
    }
    if (gp_log_format_parse(cfg->log_format) < 0) {
        snprintf(err, errlen, "log-format: %s is not kv or json", cfg->log_format);
        return -1;
    }
    return 0;
}

static int configure(int argc, char **argv) {
    br_config *cfg = &g_br.cfg;
    char err[1024] = "";
    if (load_layers(cfg, argc, argv, err, sizeof err) != 0)
        goto bad;
    int level = br_log_level_parse(cfg->log_level);
    if (br_admin_load_token(cfg, g_br.token.hash, &g_br.token.has, err, sizeof err) != 0)
        goto bad;
    if (gp_rurl_parse(cfg->redis, &g_br.rurl, err, sizeof err) != 0 ||
        gp_rurl_credentials(&g_br.rurl, cfg->redis_user, cfg->redis_password_file, err,
                            sizeof err) != 0)
        goto bad;
    /* rediss://: the certificates are loaded and checked now, so that a wrong file stops the
     * start (and --check-config) instead of every connection. */
    if (g_br.rurl.tls && gp_tlsrelay_config(cfg->redis_ca_file, cfg->redis_cert_file,
                                            cfg->redis_key_file, err, sizeof err) != 0)
        goto bad;
    snprintf(g_br.rhost, sizeof g_br.rhost, "%s", g_br.rurl.host);
    g_br.rport = g_br.rurl.port;
    g_br.rdb = g_br.rurl.db;
    if (!cfg->prefix[0] || strlen(cfg->prefix) > 64 || strpbrk(cfg->prefix, "{} ")) {
        snprintf(err, sizeof err, "prefix: 1-64 characters without braces or spaces");
        goto bad;
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p))
            *p = '-';
    snprintf(g_br.host_pid, sizeof g_br.host_pid, "%ld@%s", (long)getpid(), host);
    if (!cfg->bridge_id || !cfg->bridge_id[0]) {
        free(cfg->bridge_id);
        char id[96];
        snprintf(id, sizeof id, "%.50s-%ld", host, (long)getpid());
        cfg->bridge_id = strdup(id);
        if (!cfg->bridge_id)
            return -1;
    }
    if (!valid_bridge_id(cfg->bridge_id)) {
        snprintf(err, sizeof err, "bridge-id: 1-64 of [A-Za-z0-9_.-]");
        goto bad;
    }
    int has_cert = cfg->tls_cert && *cfg->tls_cert, has_key = cfg->tls_key && *cfg->tls_key;
    if (has_cert != has_key) {
        snprintf(err, sizeof err, "--tls-cert and --tls-key go together");
        goto bad;
    }
    if (!has_cert && !cfg->allow_ws) {
        snprintf(err, sizeof err,
                 "refusing to start without TLS: give --tls-cert and --tls-key for wss://, "
                 "or --allow-ws to accept plain ws:// (testing only)");
        goto bad;
    }
    /* Loaded and matched now (--check-config too): a swapped pair or a key that is not the
     * certificate's stops the start here, named, rather than in lws's listener. */
    char tls_warn[512] = "";
    if (has_cert && br_tls_pair_check("tls-cert", cfg->tls_cert, "tls-key", cfg->tls_key, tls_warn,
                                      sizeof tls_warn, err, sizeof err) != 0)
        goto bad;
    if (cfg->master_key && *cfg->master_key) {
        if (gp_secret_from_hex(cfg->master_key, g_br.master_key) != 0) {
            snprintf(err, sizeof err, "master-key: want 64 hex digits");
            goto bad;
        }
        g_br.has_master = 1;
        sodium_memzero(cfg->master_key, strlen(cfg->master_key));
    }
    char fence[GP_KEY_MAX];
    gp_key_fence(fence, cfg->prefix, cfg->bridge_id);
    snprintf(g_br.fence_channel, sizeof g_br.fence_channel, "%s", fence);
    gp_key_ctl(g_br.ctl_channel, cfg->prefix); /* the prefix is checked above: it fits */
    br_log_init(level, cfg->bridge_id);
    gp_log_set_format(gp_log_format_parse(cfg->log_format));
    if (tls_warn[0]) {
        if (cfg->check_config)
            fprintf(stderr, "ghostport-bridge: warning: %s\n", tls_warn);
        else
            br_log(BR_LOG_WARN, "tls_cert_not_valid", "option=tls-cert err=%s", br_qs(tls_warn));
    }
    return 0;
bad:
    fprintf(stderr, "ghostport-bridge: %s\n", err);
    return -1;
}

/* --- SIGHUP: reloading what is safe ------------------------------------------------------ */

/* Whether option o differs between two configs (the master key is wiped once read; a
 * default bridge id is computed). */
static int opt_differs(const gp_conf_opt *o, const void *cur, const void *next) {
    const br_config *b = next;
    if (strcmp(o->name, "config") == 0 || strcmp(o->name, "master-key") == 0 ||
        (strcmp(o->name, "bridge-id") == 0 && !(b->bridge_id && *b->bridge_id)))
        return 0;
    return gp_conf_differs(o, cur, next);
}
#define append gp_conf_list_append /* the shared list helper, under its old name here */

/* Reads the configuration again as at start (file, environment, the same flags) and applies
 * the options marked [SIGHUP]; a file that does not parse changes nothing. */
static void reload(void) {
    br_config next;
    memset(&next, 0, sizeof next);
    char err[1024] = "";
    uint8_t token[32];
    int has_token = 0;
    if (load_layers(&next, g_argc, g_argv, err, sizeof err) != 0 ||
        br_admin_load_token(&next, token, &has_token, err, sizeof err) != 0) {
        br_log(BR_LOG_WARN, "config_reload_failed", "err=%s kept=old", br_qs(err));
        gp_conf_clear(opts, &next);
        return;
    }
    char changed[512] = "", restart[512] = "";
    br_config *cur = &g_br.cfg;
    gp_conf_reload(opts, cur, &next, reloadable, opt_differs, changed, sizeof changed, restart,
                   sizeof restart);
    gp_conf_clear(opts, &next);
    br_log_init(br_log_level_parse(cur->log_level), cur->bridge_id);
    gp_log_set_format(gp_log_format_parse(cur->log_format));
    if (strstr(changed, "auth-")) {
        /* New limiters with the new rates: counts of failures so far start over. */
        gp_authlimit *ws = br_authlimit_new(cur), *ru = br_authlimit_new(cur);
        if (ws && ru) {
            gp_authlimit_free(g_br.env.auth_ws);
            gp_authlimit_free(g_br.env.auth_rudp);
            g_br.env.auth_ws = ws;
            g_br.env.auth_rudp = ru;
        } else {
            gp_authlimit_free(ws);
            gp_authlimit_free(ru);
        }
    }
    /* The token file is read again even when its name did not change: rotating the token
     * is writing the file and sending SIGHUP. */
    if (has_token != g_br.token.has || sodium_memcmp(token, g_br.token.hash, sizeof token) != 0) {
        if (!strstr(changed, "admin-token"))
            append(changed, sizeof changed, "admin-token");
        memcpy(g_br.token.hash, token, sizeof token);
        g_br.token.has = has_token;
    }
    sodium_memzero(token, sizeof token);
    /* The front door's token file, read again as the admin token's. */
    if (br_front_reload_tokens(g_br.front, err, sizeof err) != 0)
        br_log(BR_LOG_WARN, "config_reload_failed", "option=http-token-file err=%s kept=old",
               br_qs(err));
    /* More room per house: read what was waiting. */
    for (br_conn *c = g_br.conns.all; c; c = c->all_next)
        if (c->in_table && c->read_capped)
            br_house_read(&g_br.houses, c);
    br_log(BR_LOG_INFO, "config_reloaded", "changed=%s%s%s", changed[0] ? changed : "none",
           restart[0] ? " restart_needed=" : "", restart);
}

static void on_sighup(void *ud) {
    (void)ud;
    reload();
}

/* --- time ------------------------------------------------------------------------------- */

static uint64_t br_now(void) {
    return uv_now(g_br.env.loop);
}

/* Deadlines are entry-id time + timeout_ms, both on Redis's clock; we keep an offset from
 * TIME so that no clock sync between machines matters. */
static uint64_t br_now_redis(void) {
    return (uint64_t)((int64_t)br_now() + g_br.env.time_offset);
}

static void on_time(redisReply *rep, void *ud) {
    (void)ud;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    uint64_t ms = strtoull(rep->element[0]->str, NULL, 10) * 1000 +
                  strtoull(rep->element[1]->str, NULL, 10) / 1000;
    g_br.env.time_offset = (int64_t)ms - (int64_t)br_now();
    g_br.env.time_ok = 1;
}

static void refresh_time(void) {
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "TIME");
    br_db_cmd(g_br.env.db, on_time, NULL, &a);
    g_last_time = br_now();
}

/* --- Redis connections ------------------------------------------------------------------ */

static void refresh_lease(void) {
    char key[GP_KEY_MAX];
    gp_key_bridge(key, g_br.cfg.prefix, g_br.cfg.bridge_id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "SET");
    br_args_str(&a, key);
    br_args_str(&a, g_br.host_pid);
    br_args_str(&a, "PX");
    br_args_u64(&a, LEASE_MS);
    br_db_cmd(g_br.env.db, NULL, NULL, &a);
}

/* A node's command connection came up (at start, after a Redis restart, or a new node of
 * a cluster): scripts, clock, our lease, and every held house re-asserted under its fence. */
static void node_up(br_db *db, int node) {
    br_stats_node_up(g_br.stats, node);
    refresh_time();
    br_house_load_scripts(&g_br.houses);
    br_req_load_scripts(g_br.reqs);
    br_streams_load_scripts(g_br.streams);
    br_janitor_load_scripts(g_br.janitor);
    br_udp_load_scripts(g_br.udp);
    br_admin_load_scripts(g_br.adm);
    refresh_lease();
    br_house_redis_up(&g_br.houses);
    br_l3_redis_up(g_br.l3);
    if (br_db_ready(db)) /* every node up and routed: /readyz turns 200 with this line */
        br_log(BR_LOG_INFO, "redis_ready", "nodes=%d", br_db_nodes(db));
}

static int br_ready(const char **why) {
    if (g_br.env.stopping)
        *why = "draining";
    else if (!g_br.lws)
        *why = "listener_down";
    else if (!br_db_ready(g_br.env.db))
        *why = br_db_auth_failed(g_br.env.db) ? "redis_auth_failed" : "redis_unavailable";
    else
        return 1;
    return 0;
}

static void node_down(br_db *db, int node) {
    (void)db;
    br_log(BR_LOG_WARN, "redis_unavailable", "node=%d held=%u action=retrying", node,
           g_br.houses.table.n);
}

static void sub_up(br_db *db, int node) {
    (void)db, (void)node;
    br_house_sub_up(&g_br.houses);
}

static void map_changed(br_db *db) {
    (void)db;
    br_house_sub_up(&g_br.houses);
}

static void on_msg(const char *kind, const char *chan, size_t clen, const char *msg, size_t mlen) {
    br_house_on_message(&g_br.houses, kind, chan, clen, msg, mlen);
}

/* --- shutdown --------------------------------------------------------------------------- *
 *
 * SIGTERM drains (a rolling restart loses nothing and answers no 5xx):
 *  1. draining: no more reads from Redis; every house gets GOAWAY DRAINING and moves to
 *     another bridge once its in-flight requests are answered here and their replies
 *     acknowledged (a house with none is closed at once; requests.c, br_req_drain_busy). New
 *     requests wait in Redis meanwhile, for the other bridge.
 *  2. when no house is left, or after --drain-timeout: the houses still here are closed
 *     (their requests stay pending and are delivered again where they reconnect), our lease
 *     is deleted, and we wait until every reply write and acknowledgement has settled;
 *  3. closing: the connections and the loop are torn down.
 * A second signal skips to 2. */

static int g_shutting, g_barrier_done;
static uint64_t g_drain_start;

static void on_closed_handle(uv_handle_t *h) {
    (void)h;
}

/* Phase 3: everything that could still be said to Redis has been said. */
static void drained(void) {
    if (g_drained)
        return;
    g_drained = 1;
    br_log(BR_LOG_INFO, "shutdown", "phase=closing replies_unsettled=%u",
           br_req_replies_live(g_br.reqs));
    uv_timer_stop(&g_grace);
    uv_close((uv_handle_t *)&g_grace, on_closed_handle);
    uv_close((uv_handle_t *)&g_br.tick, on_closed_handle);
    gp_uv_signals_close(&g_br.signals);
    br_admin_stop(g_br.adm);
    br_front_stop(g_br.front);
    g_br.front = NULL;
    br_flood_stop(g_br.flood);
    /* From inside the loop: lws closes its handles, and finishes destroying the context
     * (NULLing g_br.lws through info.pcontext) once libuv has closed them. */
    if (g_br.lws)
        lws_context_destroy(g_br.lws);
    br_udp_stop(g_br.udp);
    br_l3_stop(g_br.l3);
    br_db_free(g_br.env.db);
    g_br.env.db = NULL;
}

/* Runs from a timer, never from the hiredis callback itself: drained() frees the very
 * context that would be calling us. */
static void on_grace(uv_timer_t *t) {
    (void)t;
    if (!g_barrier_done || br_req_replies_live(g_br.reqs))
        br_log(BR_LOG_WARN, "shutdown", "phase=grace_expired replies_unsettled=%u",
               br_req_replies_live(g_br.reqs));
    drained();
}

static void on_barrier(redisReply *rep, void *ud) {
    (void)rep, (void)ud;
    g_barrier_done = 1; /* the tick moves on to drained() once the replies have settled */
}

/* Replies arrive in order: when this PING returns, the writes sent before it are done. */
static void barrier(void) {
    g_barrier_done = 0;
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "PING");
    if (br_db_cmd(g_br.env.db, on_barrier, NULL, &a) != 0)
        on_barrier(NULL, NULL);
}

/* Phase 2. */
static void shut_down(const char *why) {
    if (g_shutting)
        return;
    g_shutting = 1;
    unsigned left = br_conn_count_open(&g_br.conns);
    br_log(left ? BR_LOG_WARN : BR_LOG_INFO, "shutdown", "phase=settling reason=%s houses_left=%u",
           why, left);
    br_conn_close_all(&g_br.conns);
    char key[GP_KEY_MAX];
    gp_key_bridge(key, g_br.cfg.prefix, g_br.cfg.bridge_id);
    br_args a;
    br_args_init(&a);
    br_args_str(&a, "DEL");
    br_args_str(&a, key);
    br_db_cmd(g_br.env.db, NULL, NULL, &a);
    /* The request history counted so far (admin/hist.h), before the barrier. */
    br_stats_history_flush(g_br.stats);
    uv_timer_start(&g_grace, on_grace, SHUTDOWN_GRACE_MS, 0);
    barrier();
}

static int drain_busy(void *ud, const br_conn *c) {
    return br_req_drain_busy(ud, c);
}

static void on_signal(void *ud, int signum) {
    (void)ud;
    if (g_br.env.stopping) {
        shut_down("second_signal");
        return;
    }
    g_br.env.stopping = 1;
    g_drain_start = br_now();
    br_log(BR_LOG_INFO, "shutdown", "phase=draining signal=%d held=%u timeout_ms=%lld", signum,
           g_br.houses.table.n, g_br.cfg.drain_timeout);
    br_conn_drain_all(&g_br.conns, drain_busy, g_br.reqs);
}

/* --- tick ------------------------------------------------------------------------------- */

/* After a burst of connects or disconnects (a restart of the fleet, TLS handshakes needing
 * ~19 KB each at once) glibc keeps the freed heap: 1,000 wss houses held 64 MB for 24 MB in
 * use. Hand it back now and then, when connections came and went. */
static void trim_heap(uint64_t now) {
#ifdef __GLIBC__
    static uint64_t last_ms, last_serial;
    if (now - last_ms < 30000 || g_br.conns.serial - last_serial < 256)
        return;
    last_ms = now;
    last_serial = g_br.conns.serial;
    malloc_trim(0);
#else
    (void)now;
#endif
}

static void on_tick(uv_timer_t *t) {
    (void)t;
    uint64_t now = br_now();
    if (g_br.env.time_ok) {
        uint64_t nr = br_now_redis();
        for (br_conn *c = g_br.conns.all; c; c = c->all_next)
            if (c->in_table && c->min_deadline && c->min_deadline <= nr)
                br_req_deadlines(g_br.reqs, c, nr);
    }
    if (g_br.env.stopping && !g_shutting &&
        (br_conn_count_open(&g_br.conns) == 0 ||
         now - g_drain_start >= (uint64_t)g_br.cfg.drain_timeout))
        shut_down(br_conn_count_open(&g_br.conns) ? "drain_timeout" : "drained");
    if (g_shutting) {
        if (g_barrier_done && br_req_replies_live(g_br.reqs) == 0) {
            /* Replies settled since the flush are in the history too: once more, awaited. */
            if (br_stats_history_pending(g_br.stats) && br_stats_history_flush(g_br.stats))
                barrier();
            else
                uv_timer_start(&g_grace, on_grace, 0, 0);
        }
        return;
    }
    if (br_db_ready(g_br.env.db))
        br_house_tick(&g_br.houses, now);
    if (now - g_last_slow < SLOW_TICK_MS)
        return;
    g_last_slow = now;
    br_conn_tick(&g_br.conns, now);
    br_flood_tick(g_br.flood, now); /* after the GOAWAYs above: WebSockets get theirs first */
    trim_heap(now);
    if (!br_db_ready(g_br.env.db))
        return;
    if (now - g_last_time >= TIME_REFRESH_MS)
        refresh_time();
    refresh_lease();
    br_janitor_tick(g_br.janitor, now);
    br_stats_tick(g_br.stats, now);
}

/* --- wiring ----------------------------------------------------------------------------- */

static void state_update(void *ud, br_conn *c) {
    br_house_state_update(ud, c);
}

static void link_metrics(void *ud, double *rtt, double *loss, uint64_t *retx, uint64_t *fec) {
    br_udp_metrics(((br_bridge *)ud)->udp, rtt, loss, retx, fec);
}

static void tun_metrics(void *ud, br_stats_tun *out) {
    br_l3_totals t;
    br_l3_totals_get(((br_bridge *)ud)->l3, &t);
    *out = (br_stats_tun){.houses = t.houses,
                          .pkts_in = t.pkts_in,
                          .pkts_out = t.pkts_out,
                          .bytes_in = t.bytes_in,
                          .bytes_out = t.bytes_out,
                          .nreasons = BR_L3_DROP_REASONS};
    _Static_assert(BR_L3_DROP_REASONS <= BR_STATS_TUN_REASONS, "room for every reason");
    br_l3_totals_drops(&t, out->reason, out->drops);
}

static char *render_metrics(size_t *len) {
    return br_stats_render(g_br.stats, len);
}

static void add_listener(br_listeners *o, const char *kind, const char *scheme, const char *bind,
                         int port, const char *key) {
    if (port <= 0 || o->n >= BR_MAX_LISTENERS)
        return;
    br_listener *l = &o->l[o->n++];
    l->kind = kind;
    l->scheme = scheme;
    snprintf(l->bind, sizeof l->bind, "%s", bind && *bind ? bind : "0.0.0.0");
    l->port = port;
    snprintf(l->key, sizeof l->key, "%s", key ? key : "");
}

/* The admin API's GET /api/listeners: the dashboard's "add a house" hint is made from it. */
static void listeners(br_listeners *out) {
    const br_config *c = &g_br.cfg;
    memset(out, 0, sizeof *out);
    add_listener(out, "house", c->tls_cert && *c->tls_cert ? "wss" : "ws", c->bind,
                 g_br.lws ? g_br.listen_port : 0, NULL);
    add_listener(out, "house", "rudp", c->bind, br_udp_port(g_br.udp), g_br.rudp_pub);
    int https = c->http_tls || (c->http_cert && *c->http_cert);
    add_listener(out, "http", https ? "https" : "http", c->http_bind,
                 g_br.front ? br_front_port(g_br.front) : 0, NULL);
}

/* The env the modules share, and their contexts over it (once configured, loop made).
 * 0, or -1: out of memory. */
static int wire(void) {
    br_env *e = &g_br.env;
    e->cfg = &g_br.cfg;
    e->master_key = g_br.has_master ? g_br.master_key : NULL;
    e->server_key = g_br.server_key;
    e->rdb = g_br.rdb;
    e->fence_channel = g_br.fence_channel;
    e->ctl_channel = g_br.ctl_channel;
    e->metrics = &g_br.metrics;
    g_br.conns.env = e;
    br_stats_src src = {.env = e,
                        .metrics = &g_br.metrics,
                        .conns = &g_br.conns,
                        .nlive = &g_br.houses.table.n,
                        .admin = &g_br.admin,
                        .ud = &g_br.houses,
                        .state_update = state_update,
                        .link_ud = &g_br,
                        .link_metrics = link_metrics,
                        .tun_metrics = tun_metrics};
    if (!(g_br.stats = br_stats_new(&src)) || !(g_br.reqs = br_requests_new(e, g_br.stats)) ||
        !(g_br.streams = br_streams_new(e, g_br.reqs)))
        return -1;
    br_houses_init(&g_br.houses, e, &g_br.conns, g_br.reqs, g_br.streams);
    br_admin_view av = {e, &g_br.token, br_ready, render_metrics, listeners};
    g_br.janitor = br_janitor_new(e, &g_br.houses, g_br.reqs);
    g_br.flood = br_flood_new(e);
    g_br.tunnel =
        g_br.flood ? br_tunnel_new(e, &g_br.conns, &g_br.houses, g_br.reqs, g_br.flood) : NULL;
    g_br.udp = br_udp_new(e, &g_br.conns, &g_br.houses, g_br.reqs);
    g_br.adm = br_admin_new(&av);
    return g_br.janitor && g_br.tunnel && g_br.udp && g_br.adm ? 0 : -1;
}

/* rudp, when on, with the key of --rudp-key. */
static int start_udp(void) {
    uint8_t key[32] = {0};
    int rc = g_br.cfg.rudp_listen >= 0 && br_read_key_file(g_br.cfg.rudp_key, key) != 0
                 ? -1
                 : br_udp_start(g_br.udp, key);
    uint8_t pub[GP_SESS_KEY_LEN];
    if (rc == 0 && g_br.cfg.rudp_listen >= 0 && gp_sess_pubkey(key, pub) == 0)
        sodium_bin2hex(g_br.rudp_pub, sizeof g_br.rudp_pub, pub, sizeof pub);
    sodium_memzero(key, sizeof key);
    return rc;
}

/* The front door's configuration from the bridge's options: 0, or -1 with the reason. */
static int front_cfg(br_front_cfg *fc, char *err, size_t errlen) {
    const br_config *c = &g_br.cfg;
    *fc = (br_front_cfg){.loop = g_br.env.loop,
                         .db = g_br.env.db,
                         .prefix = c->prefix,
                         .redis_timeout_ms = (unsigned)c->redis_timeout,
                         .bind = c->http_bind,
                         .port = (int)c->http_listen,
                         .insecure = c->http_insecure,
                         .public_ = c->http_public,
                         .token_file = c->http_token_file,
                         .domain = c->http_domain,
                         .timeout_ms = c->http_timeout_ms,
                         .max_body = c->max_body,
                         .reg = g_br.metrics.reg,
                         .auth_limit = br_authlimit_conf(c)};
    int own = c->http_cert && *c->http_cert;
    if (own || c->http_tls) {
        fc->cert = own ? c->http_cert : c->tls_cert;
        fc->key = own ? c->http_key : c->tls_key;
        if (!(fc->cert && *fc->cert && fc->key && *fc->key)) {
            snprintf(err, errlen,
                     "--http-tls needs --http-cert and --http-key, or the bridge's "
                     "--tls-cert and --tls-key");
            return -1;
        }
        /* Its own pair, checked as the bridge's was (configure). */
        char warn[512];
        if (own && br_tls_pair_check("http-cert", fc->cert, "http-key", fc->key, warn, sizeof warn,
                                     err, errlen) != 0)
            return -1;
        if (own && warn[0])
            br_log(BR_LOG_WARN, "tls_cert_not_valid", "option=http-cert err=%s", br_qs(warn));
    }
    return 0;
}

/* The L3 tunnel, when --tun is given (l3.h); with check, only its options. */
static int start_l3(int check) {
    const br_config *c = &g_br.cfg;
    if (!c->tun || !*c->tun)
        return 0;
    br_l3_conf lc = {.dev = c->tun, .mtu = (unsigned)c->tun_mtu};
    char err[512];
    if (br_l3_pools_parse(&lc, c->tun_pool, err, sizeof err) == 0 &&
        (check || (g_br.l3 = br_l3_new(&g_br.env, &lc, err, sizeof err)) != NULL)) {
        g_br.houses.l3 = g_br.l3;
        return 0;
    }
    br_log(BR_LOG_ERROR, "bad_config", "option=tun reason=%s", br_qs(err));
    fprintf(stderr, "ghostport-bridge: %s\n", err);
    return -1;
}

/* The HTTP front door, when --http-listen is given (bridge/front/front.h); with check, only
 * its checks (--check-config: options and token file, nothing listens). */
static int start_front(int check) {
    if (g_br.cfg.http_listen < 0)
        return 0;
    br_front_cfg fc;
    char err[512];
    if (front_cfg(&fc, err, sizeof err) == 0 &&
        (check ? br_front_check(&fc, err, sizeof err) == 0
               : (g_br.front = br_front_start(&fc, err, sizeof err)) != NULL))
        return 0;
    br_log(BR_LOG_ERROR, "bad_config", "option=http-listen reason=%s", br_qs(err));
    fprintf(stderr, "ghostport-bridge: %s\n", err);
    return -1;
}

int main(int argc, char **argv) {
    if (gp_conf_version(argc, argv, "ghostport-bridge", gp_version))
        return 0;
    if (gp_conf_help_arg(argc, argv)) {
        usage();
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    /* One descriptor per held house: the usual soft limit of 1024 would cap a bridge far
     * below the thousands it is built for. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (gp_auth_init() != 0 || sodium_init() < 0) {
        fprintf(stderr, "ghostport-bridge: libsodium init failed\n");
        return 1;
    }
    int rc = 1;
    g_argc = argc;
    g_argv = argv;
    if (configure(argc, argv) != 0)
        goto out_conf;
    if (g_br.cfg.check_config) {
        uint8_t k[32];
        int bad = g_br.cfg.rudp_listen >= 0 && br_read_key_file(g_br.cfg.rudp_key, k) != 0;
        sodium_memzero(k, sizeof k);
        if (bad || start_front(1) != 0 || start_l3(1) != 0)
            goto out_conf; /* logged */
        printf("ghostport-bridge: configuration ok\n");
        rc = 0;
        goto out_conf;
    }
    unsigned seed;
    randombytes_buf(&seed, sizeof seed);
    srand(seed);
    /* The decoy-secret key is per process: nothing to store, nothing to leak. */
    randombytes_buf(g_br.server_key, sizeof g_br.server_key);

    static uv_loop_t loop;
    g_br.env.loop = &loop;
    uv_loop_init(&loop);
    g_br.env.auth_ws = br_authlimit_new(&g_br.cfg);
    g_br.env.auth_rudp = br_authlimit_new(&g_br.cfg);
    g_br.env.zc = gp_zctx_new(GP_ZSTD_LEVEL);
    g_br.env.started_ms = uv_now(&loop);
    if (!g_br.env.auth_ws || !g_br.env.auth_rudp || !g_br.env.zc || wire() != 0) {
        fprintf(stderr, "ghostport-bridge: out of memory\n");
        goto out;
    }

    char hb[GP_KEY_MAX + 16];
    gp_key_hb(hb, g_br.cfg.prefix, g_br.cfg.bridge_id);
    br_db_cfg dbc = {.host = g_br.rhost,
                     .port = g_br.rport,
                     .db = g_br.rdb,
                     .user = g_br.rurl.user[0] ? g_br.rurl.user : NULL,
                     .pass = g_br.rurl.has_pass ? g_br.rurl.pass : NULL,
                     .tls = g_br.rurl.tls,
                     .timeout_ms = (unsigned)g_br.cfg.redis_timeout,
                     .hb_channel = hb,
                     .on_node_up = node_up,
                     .on_node_down = node_down,
                     .on_sub_up = sub_up,
                     .on_msg = on_msg,
                     .on_map_changed = map_changed};
    g_br.env.db = br_db_new(&loop, &dbc);
    if (!g_br.env.db) {
        fprintf(stderr, "ghostport-bridge: out of memory\n");
        goto out;
    }
    if (br_tunnel_start(g_br.tunnel, &g_br.lws, &g_br.listen_port) != 0 || start_udp() != 0 ||
        br_admin_start(g_br.adm, &g_br.admin, &g_br.admin_port) != 0 || start_front(0) != 0 ||
        start_l3(0) != 0)
        goto out_loop;

    uv_timer_init(&loop, &g_br.tick);
    uv_timer_start(&g_br.tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(&loop, &g_grace);
    gp_uv_signals_start(&g_br.signals, &loop, on_signal, on_sighup, NULL);
    struct rlimit fds = {0, 0};
    getrlimit(RLIMIT_NOFILE, &fds);
    br_log(BR_LOG_INFO, "bridge_started",
           "redis=%s:%d db=%d prefix=%s max_inflight=%lld lease_ms=%lld max_fds=%llu", g_br.rhost,
           g_br.rport, g_br.rdb, g_br.cfg.prefix, g_br.cfg.max_inflight, g_br.cfg.lease_ms,
           (unsigned long long)fds.rlim_cur);

    uv_run(&loop, UV_RUN_DEFAULT);
    rc = 0;
    goto out;
out_loop:
    br_l3_stop(g_br.l3);
    br_admin_stop(g_br.adm);
    br_front_stop(g_br.front);
    g_br.front = NULL;
    br_flood_stop(g_br.flood);
    br_udp_stop(g_br.udp);
    br_db_free(g_br.env.db);
    g_br.env.db = NULL;
out:
    /* lws finishes its own teardown only once its handles are closed; a second destroy
     * after the loop has stopped is the documented way to complete it. */
    if (g_br.lws)
        lws_context_destroy(g_br.lws);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (g_br.env.loop && uv_loop_close(&loop) != 0)
        br_log(BR_LOG_WARN, "loop_not_empty", NULL);
    br_tunnel_free(g_br.tunnel);
    br_l3_free(g_br.l3); /* after every connection: each gave its routes back */
    br_flood_free(g_br.flood);
    br_udp_free(g_br.udp);
    br_janitor_free(g_br.janitor);
    br_admin_free(g_br.adm);
    br_houses_free(&g_br.houses);
    br_streams_free(g_br.streams);
    br_requests_free(g_br.reqs);
    gp_authlimit_free(g_br.env.auth_ws);
    gp_authlimit_free(g_br.env.auth_rudp);
    gp_zctx_free(g_br.env.zc);
    br_stats_free(g_br.stats);
    br_log(BR_LOG_INFO, "bridge_stopped", NULL);
    gp_tlsrelay_stop();
out_conf:
    sodium_memzero(g_br.master_key, sizeof g_br.master_key);
    gp_rurl_wipe(&g_br.rurl);
    gp_conf_clear(opts, &g_br.cfg);
    return rc;
}
