/* main.c — ghostport-house: configuration (proto/conf.h table: file < env < flags), checks
 * that fail fast with exit status 2, signals, and the one libuv loop that hosts both the
 * WebSocket to the bridge (tunnel.c) and the upstream HTTP calls (upstream.c). I/O side. */
#include "adapters/uv_signals.h"
#include "conf.h"
#include "house.h"
#include "l3.h"
#include "tls.h"
#include "version.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The process's one top-level object: its house (every module gets it through its
 * constructor) and the command line, read again on SIGHUP. */
static struct {
    hs_house h;
    int argc;
    char **argv;
} g_hs;

static gp_uv_signals g_signals; /* SIGINT, SIGTERM: stop; SIGHUP: reload */

/* --- repeatable options ------------------------------------------------------------------ */

static int starts_with(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

static void free_bridges(hs_config *c) {
    for (size_t i = 0; i < c->nbridges; i++)
        free(c->bridges[i]);
    free(c->bridges);
    c->bridges = NULL;
    c->nbridges = 0;
}

static void free_services(hs_config *c) {
    for (size_t i = 0; i < c->nservices; i++) {
        free(c->services[i].name);
        free(c->services[i].url);
    }
    free(c->services);
    c->services = NULL;
    c->nservices = 0;
}

/* Base URLs are joined with the request path: keep them without a trailing '/'. */
static char *base_url_dup(const char *v, size_t n) {
    while (n > 0 && v[n - 1] == '/')
        n--;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, v, n);
        s[n] = '\0';
    }
    return s;
}

static int check_http_url(const char *v, size_t n, char *err, size_t errlen, const char *what) {
    const char *p = v;
    if (starts_with(p, "http://"))
        p += 7;
    else if (starts_with(p, "https://"))
        p += 8;
    else {
        snprintf(err, errlen, "%s: \"%.*s\" must start with http:// or https://", what, (int)n, v);
        return GP_ERR_INVALID;
    }
    size_t host = 0;
    while (p + host < v + n && p[host] != '/')
        host++;
    if (host == 0) {
        snprintf(err, errlen, "%s: \"%.*s\" has no host", what, (int)n, v);
        return GP_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= ' ' || v[i] == '?' || v[i] == '#') {
            snprintf(err, errlen,
                     "%s: \"%.*s\" must be a plain base URL (no spaces, query or "
                     "fragment)",
                     what, (int)n, v);
            return GP_ERR_INVALID;
        }
    return 0;
}

/* A list option (--bridge, --service): a value may hold several entries, separated by commas
 * or spaces (handy in GP_BRIDGE), each given to add; a later layer (file < environment < flags)
 * replaces the list (clear), a repeat within one layer adds to it. 0, or add's error. */
static int set_list(hs_config *c, int *list_layer, void (*clear)(hs_config *c), const char *value,
                    int (*add)(hs_config *c, const char *p, size_t n, char *err, size_t errlen),
                    char *err, size_t errlen) {
    if (*list_layer != c->layer) {
        clear(c);
        *list_layer = c->layer;
    }
    for (const char *p = value; *p; p += strspn(p, ", \t")) {
        size_t n = strcspn(p, ", \t");
        int rc = n ? add(c, p, n, err, errlen) : 0;
        if (rc != 0)
            return rc;
        p += n;
    }
    return 0;
}

static int add_bridge(hs_config *c, const char *p, size_t n, char *err, size_t errlen) {
    if (!starts_with(p, "ws://") && !starts_with(p, "wss://") && !starts_with(p, "rudp://")) {
        snprintf(err, errlen, "bridge: \"%.*s\" must start with wss://, rudp:// (or ws://)", (int)n,
                 p);
        return GP_ERR_INVALID;
    }
    if (n >= 400) {
        snprintf(err, errlen, "bridge: URL too long");
        return GP_ERR_INVALID;
    }
    char **b = realloc(c->bridges, (c->nbridges + 1) * sizeof *b);
    if (!b)
        return GP_ERR_NOMEM;
    c->bridges = b;
    if (!(b[c->nbridges] = strndup(p, n)))
        return GP_ERR_NOMEM;
    c->nbridges++;
    return 0;
}

static int set_bridge(void *obj, const char *value, char *err, size_t errlen) {
    hs_config *c = obj;
    return set_list(c, &c->bridges_layer, free_bridges, value, add_bridge, err, errlen);
}

static int valid_service_name(const char *p, size_t n) {
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("_.-", p[i]))
            return 0;
    return 1;
}

static int add_service(hs_config *c, const char *p, size_t n, char *err, size_t errlen) {
    const char *eq = memchr(p, '=', n);
    if (!eq || !valid_service_name(p, (size_t)(eq - p))) {
        snprintf(err, errlen, "service: \"%.*s\" must be NAME=URL, NAME of 1-64 [A-Za-z0-9_.-]",
                 (int)n, p);
        return GP_ERR_INVALID;
    }
    size_t nl = (size_t)(eq - p), ul = n - nl - 1;
    if (check_http_url(eq + 1, ul, err, errlen, "service") != 0)
        return GP_ERR_INVALID;
    for (size_t i = 0; i < c->nservices; i++)
        if (strlen(c->services[i].name) == nl && memcmp(c->services[i].name, p, nl) == 0) {
            snprintf(err, errlen, "service: \"%.*s\" given twice", (int)nl, p);
            return GP_ERR_INVALID;
        }
    hs_service *s = realloc(c->services, (c->nservices + 1) * sizeof *s);
    if (!s)
        return GP_ERR_NOMEM;
    c->services = s;
    s[c->nservices].name = strndup(p, nl);
    s[c->nservices].url = base_url_dup(eq + 1, ul);
    c->nservices++;
    if (!s[c->nservices - 1].name || !s[c->nservices - 1].url)
        return GP_ERR_NOMEM;
    return 0;
}

static int set_service(void *obj, const char *value, char *err, size_t errlen) {
    hs_config *c = obj;
    return set_list(c, &c->services_layer, free_services, value, add_service, err, errlen);
}

static void free_tcp_services(hs_config *c) {
    hs_tcp_services_free(c->tcp_services, c->ntcp_services);
    c->tcp_services = NULL;
    c->ntcp_services = 0;
}

/* NAME=HOST:PORT, HOST an IPv4 address, a name, or an IPv6 address in brackets. */
static int add_tcp_service(hs_config *c, const char *p, size_t n, char *err, size_t errlen) {
    const char *eq = memchr(p, '=', n);
    if (!eq || !valid_service_name(p, (size_t)(eq - p))) {
        snprintf(err, errlen,
                 "tcp-service: \"%.*s\" must be NAME=HOST:PORT, NAME of 1-64 [A-Za-z0-9_.-]",
                 (int)n, p);
        return GP_ERR_INVALID;
    }
    size_t nl = (size_t)(eq - p);
    const char *a = eq + 1, *end = p + n, *colon = NULL;
    for (const char *q = end; q > a; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    const char *h = a, *he = colon;
    if (colon && h < he && *h == '[') { /* [v6]:port */
        if (he[-1] != ']') {
            colon = NULL;
        } else {
            h++;
            he--;
        }
    }
    long port = 0;
    int ok =
        colon && he > h && (size_t)(he - h) < 256 && end - colon - 1 >= 1 && end - colon - 1 <= 5;
    for (const char *q = colon ? colon + 1 : end; ok && q < end; q++)
        ok = *q >= '0' && *q <= '9', port = port * 10 + (*q - '0');
    for (const char *q = h; ok && q < he; q++)
        ok = (unsigned char)*q > ' ' && *q != '/' && *q != '[' && *q != ']' &&
             (*q != ':' || a[0] == '[');
    if (!ok || port < 1 || port > 65535) {
        snprintf(err, errlen, "tcp-service: \"%.*s\" must be NAME=HOST:PORT (port 1-65535)", (int)n,
                 p);
        return GP_ERR_INVALID;
    }
    for (size_t i = 0; i < c->ntcp_services; i++)
        if (strlen(c->tcp_services[i].name) == nl && memcmp(c->tcp_services[i].name, p, nl) == 0) {
            snprintf(err, errlen, "tcp-service: \"%.*s\" given twice", (int)nl, p);
            return GP_ERR_INVALID;
        }
    hs_tcp_service *s = realloc(c->tcp_services, (c->ntcp_services + 1) * sizeof *s);
    if (!s)
        return GP_ERR_NOMEM;
    c->tcp_services = s;
    hs_tcp_service *t = &s[c->ntcp_services++];
    t->name = strndup(p, nl);
    t->host = strndup(h, (size_t)(he - h));
    t->port = strndup(colon + 1, (size_t)(end - colon - 1));
    if (!t->name || !t->host || !t->port)
        return GP_ERR_NOMEM;
    return 0;
}

/* --- the L3 tunnel's lists ---------------------------------------------------------------- */

static void free_tun_rules(hs_config *c) {
    free(c->tun_rules);
    c->tun_rules = NULL;
    c->ntun_rules = 0;
}

static void free_tun_routes(hs_config *c) {
    free(c->tun_routes);
    c->tun_routes = NULL;
    c->ntun_routes = 0;
}

/* One --tun-allow rule (proto/ippkt.h: PROTO[:PORT[-PORT]][@PREFIX]). */
static int add_tun_rule(hs_config *c, const char *p, size_t n, char *err, size_t errlen) {
    char one[GP_TUN_RULE_STRLEN + 16];
    if (n >= sizeof one) {
        snprintf(err, errlen, "tun-allow: \"%.*s\" is too long", (int)n, p);
        return GP_ERR_INVALID;
    }
    memcpy(one, p, n);
    one[n] = '\0';
    gp_tun_rule r;
    char why[200];
    if (gp_tun_rule_parse(one, &r, why, sizeof why) != 0) {
        snprintf(err, errlen, "tun-allow: %s", why);
        return GP_ERR_INVALID;
    }
    gp_tun_rule *v = realloc(c->tun_rules, (c->ntun_rules + 1) * sizeof *v);
    if (!v)
        return GP_ERR_NOMEM;
    c->tun_rules = v;
    v[c->ntun_rules++] = r;
    return 0;
}

/* One --tun-route (a CIDR the house asks to route; the registry must allow it). */
static int add_tun_route(hs_config *c, const char *p, size_t n, char *err, size_t errlen) {
    char one[GP_CIDR_STRLEN + 16];
    if (n >= sizeof one) {
        snprintf(err, errlen, "tun-route: \"%.*s\" is too long", (int)n, p);
        return GP_ERR_INVALID;
    }
    memcpy(one, p, n);
    one[n] = '\0';
    gp_cidr r;
    char why[200];
    if (gp_cidr_parse(one, &r, why, sizeof why) != 0) {
        snprintf(err, errlen, "tun-route: %s", why);
        return GP_ERR_INVALID;
    }
    gp_cidr *v = realloc(c->tun_routes, (c->ntun_routes + 1) * sizeof *v);
    if (!v)
        return GP_ERR_NOMEM;
    c->tun_routes = v;
    v[c->ntun_routes++] = r;
    return 0;
}

static int set_tun_allow(void *obj, const char *value, char *err, size_t errlen) {
    hs_config *c = obj;
    return set_list(c, &c->tun_rules_layer, free_tun_rules, value, add_tun_rule, err, errlen);
}

static int set_tun_route(void *obj, const char *value, char *err, size_t errlen) {
    hs_config *c = obj;
    return set_list(c, &c->tun_routes_layer, free_tun_routes, value, add_tun_route, err, errlen);
}

static int set_tcp_service(void *obj, const char *value, char *err, size_t errlen) {
    hs_config *c = obj;
    return set_list(c, &c->tcp_services_layer, free_tcp_services, value, add_tcp_service, err,
                    errlen);
}

#define OFF(f) offsetof(hs_config, f)
static const gp_conf_opt opts[] = {
    {"config", GP_CONF_STR, OFF(config), 0, 0, NULL, NULL,
     "read options from FILE (name = value lines)"},
    {"id", GP_CONF_STR, OFF(id), 0, 0, NULL, NULL, "this house's id (1-64 of [A-Za-z0-9_.-])"},
    {"secret", GP_CONF_STR, OFF(secret), 0, 0, NULL, NULL,
     "the house secret: 64 hex digits (prefer secret-file or GP_SECRET)"},
    {"secret-file", GP_CONF_STR, OFF(secret_file), 0, 0, NULL, NULL,
     "file holding the secret (64 hex digits)"},
    {"bridge", GP_CONF_FN, 0, 0, 0, NULL, set_bridge,
     "bridge URL, wss://host:port/ (ws:// only if the bridge allows it); repeat for fallbacks"},
    {"upstream", GP_CONF_STR, OFF(upstream), 0, 0, NULL, NULL,
     "default upstream base URL, e.g. http://127.0.0.1:8080 (requests without a service)"},
    {"service", GP_CONF_FN, 0, 0, 0, NULL, set_service,
     "named upstream NAME=URL; repeat for more. Nothing else is ever reachable: a request's "
     "path is normalised under the base URL's path and refused (400) if its dot segments "
     "(.., %2e%2e) would leave it or it holds \\, %2f or %5c"},
    {"tcp-service", GP_CONF_FN, 0, 0, 0, NULL, set_tcp_service,
     "TCP service NAME=HOST:PORT a stream through Redis may reach (proto/STREAMS.md: ssh, "
     "databases, WebSockets); repeat for more. Nothing else is reachable: an opener names a "
     "service, never an address"},
    {"tun", GP_CONF_STR, OFF(tun), 0, 0, NULL, NULL,
     "TUN device for the L3 tunnel (proto/TUN.md; rudp:// bridges with --tun), e.g. gp0: the "
     "house gets an address from the bridges and routes to the hub through it (needs "
     "CAP_NET_ADMIN)"},
    {"tun-allow", GP_CONF_FN, 0, 0, 0, NULL, set_tun_allow,
     "what the hub side may reach through the tunnel: PROTO[:PORT[-PORT]][@PREFIX], PROTO tcp, "
     "udp, icmp (echo requests) or any (e.g. tcp:22, icmp, udp:53@192.168.1.0/24); repeat for "
     "more. Nothing else gets in, but the replies to what the house itself opened"},
    {"tun-route", GP_CONF_FN, 0, 0, 0, NULL, set_tun_route,
     "a subnet behind the house to route through the tunnel (CIDR; the registry must allow "
     "it: ghostport house tun ID --route); repeat for more"},
    {"tun-masquerade", GP_CONF_BOOL, OFF(tun_masquerade), 0, 1, "0", NULL,
     "packets from the tunnel to the house's networks leave with the house's address (nftables "
     "masquerade, IP forwarding on): the hub reaches a LAN that has no route back"},
    {"tun-mtu", GP_CONF_INT, OFF(tun_mtu), 576, HS_L3_MTU_MAX, "1280", NULL,
     "the tunnel's largest IP packet the house asks for (IPv6 needs 1280)"},
    {"max-streams", GP_CONF_INT, OFF(max_streams), 1, 100000, "256", NULL,
     "TCP streams open at once (more: 503 unavailable)"},
    {"stream-grace", GP_CONF_INT, OFF(stream_grace), 1, 86400, "30", NULL,
     "seconds a stream's service connection is kept while the house has no bridge (the next "
     "bridge resumes it); then it is reset"},
    {"max-body", GP_CONF_INT, OFF(max_body), 0, 1LL << 32, "8388608", NULL,
     "largest request body in bytes (larger: 413 too_large) [SIGHUP]"},
    {"max-response", GP_CONF_INT, OFF(max_response), 0, 1LL << 40, "67108864", NULL,
     "largest upstream response body in bytes (larger: 413 too_large) [SIGHUP]"},
    {"max-conns", GP_CONF_INT, OFF(max_conns), 1, 10000, "64", NULL,
     "upstream connections per host; more requests queue"},
    {"ca-file", GP_CONF_STR, OFF(ca_file), 0, 0, NULL, NULL,
     "CA certificate (PEM) to verify the bridge with, for a private CA"},
    {"insecure", GP_CONF_BOOL, OFF(insecure), 0, 1, "0", NULL,
     "do not verify the bridge's TLS certificate (testing only)"},
    {"upstream-ca-file", GP_CONF_STR, OFF(upstream_ca_file), 0, 0, NULL, NULL,
     "CA certificate (PEM) to verify https:// upstreams with, for a private or self-signed "
     "one: their HTTP requests and WebSockets (default: the system's CAs)"},
    {"upstream-insecure", GP_CONF_BOOL, OFF(upstream_insecure), 0, 1, "0", NULL,
     "do not verify the TLS certificates of https:// upstreams (testing only)"},
    {"log-level", GP_CONF_STR, OFF(log_level), 0, 0, "info", NULL,
     "error, warn, info or debug [SIGHUP]"},
    {"log-format", GP_CONF_STR, OFF(log_format), 0, 0, "kv", NULL, GP_LOG_FORMAT_HELP},
    {"state-dir", GP_CONF_STR, OFF(state_dir), 0, 0, NULL, NULL,
     "directory for DIR/<id>.journal, which remembers calls and responses across restarts of "
     "the house (kill -9, OOM, reboot) so that none runs twice; empty (default): no journal, "
     "responses are remembered in memory only"},
    {"state-sync", GP_CONF_BOOL, OFF(state_sync), 0, 1, "0", NULL,
     "fdatasync the journal before each upstream call: at-most-once survives a power loss too, "
     "at the cost of one disk sync per request (without it: a crash of the house, not of the "
     "machine)"},
    {"bridge-key", GP_CONF_STR, OFF(bridge_key), 0, 0, NULL, NULL,
     "the bridges' rudp public key, 64 hex digits (ghostport rudp-keygen); needed for rudp://"},
    {"rudp-jitter-ms", GP_CONF_INT, OFF(rudp_jitter_ms), 0, 15, "0", NULL,
     "hold each rudp datagram 0..N ms before it leaves (hides timing; RTT unaffected)"},
    {"rudp-probe-ms", GP_CONF_INT, OFF(rudp_probe_ms), 100, 3600000, "30000", NULL,
     "on wss while a rudp:// bridge comes first: try UDP again this often (doubling to 5 min)"},
    {"reconnect-max-ms", GP_CONF_INT, OFF(reconnect_max_ms), 1000, 3600000, "30000", NULL,
     "longest wait before dialing again (exponential backoff from 250 ms with full jitter; "
     "after a refusal, such as a wrong secret, between half of it and all of it; refused as "
     "disabled, 2-3 s, so that it is back soon after it is enabled) [SIGHUP]"},
    {"admin-listen", GP_CONF_INT, OFF(admin_listen), -1, 65535, "-1", NULL,
     "admin port: /healthz, /readyz, /metrics (-1: off; 0: any free port, logged in "
     "event=listening transport=admin)"},
    {"admin-bind", GP_CONF_STR, OFF(admin_bind), 0, 0, "127.0.0.1", NULL,
     "address of the admin port (plain HTTP: keep it on localhost)"},
    {"admin-host", GP_CONF_STR, OFF(admin_host), 0, 0, NULL, NULL,
     "Host names the admin port answers, comma-separated, besides IP addresses and localhost "
     "(others get 421: no DNS rebinding); add the names Prometheus scrapes by"},
    {"check-config", GP_CONF_BOOL, OFF(check_config), 0, 1, "0", NULL,
     "check the configuration (file, environment, flags, the files they name) and exit: 0 when "
     "it is valid"},
    {"help", GP_CONF_BOOL, OFF(help), 0, 1, "0", NULL, "print this help"},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

/* What SIGHUP may change in a running house (marked [SIGHUP] in --help). */
static const char *const reloadable[] = {"log-level",    "log-format",       "max-body",
                                         "max-response", "reconnect-max-ms", NULL};

static void print_line(void *ud, const char *line) {
    (void)ud;
    printf("%s\n", line);
}

static void usage(void) {
    printf("usage: ghostport-house [options]\n"
           "       ghostport-house --version\n"
           "Dials a Ghost Port bridge and answers its requests from the configured upstreams.\n\n");
    fputs(GP_CONF_USAGE_DAEMON, stdout);
    gp_conf_usage(opts, print_line, NULL);
}

/* Defaults < config file < environment < flags. The file's name itself may come from a flag
 * or GP_CONFIG, so it is looked up first. */
static int load_config(hs_config *c, int argc, char **argv, char *err, size_t errlen) {
    if (gp_conf_defaults(opts, c, err, errlen) != 0)
        return -1;
    const char *file = gp_conf_file_arg(argc, argv, getenv("GP_CONFIG"));
    if (gp_conf_help_arg(argc, argv)) {
        c->help = 1;
        return 0;
    }
    if (file && *file) {
        c->layer = 1;
        if (gp_conf_load_file(opts, c, file, 1 << 20, err, errlen) != 0)
            return -1;
        /* A config file that holds the secret itself is a secret file. */
        if (c->secret && *c->secret && gp_conf_secret_file_ok(file, err, errlen) != 0)
            return -1;
    }
    c->layer = 2;
    if (gp_conf_apply_env(opts, c, getenv, err, errlen) != 0)
        return -1;
    c->layer = 3;
    int npos = 0, pos[1];
    if (gp_conf_parse_argv(opts, c, argc, argv, 1, pos, 1, &npos, err, errlen) != 0)
        return -1;
    if (npos) {
        snprintf(err, errlen, "unexpected argument \"%s\" (options start with --)", argv[pos[0]]);
        return -1;
    }
    return 0;
}

static int validate_config(char *err, size_t errlen) {
    hs_config *c = &g_hs.h.cfg;
    if (!c->id || !*c->id) {
        snprintf(err, errlen, "id: required (--id, GP_ID)");
        return -1;
    }
    if (!gp_house_id_valid(gp_str_c(c->id))) {
        snprintf(err, errlen, "id: \"%s\" is not 1-64 of [A-Za-z0-9_.-]", c->id);
        return -1;
    }
    int has_secret = c->secret && *c->secret, has_file = c->secret_file && *c->secret_file;
    if (has_secret && has_file) {
        snprintf(err, errlen, "secret and secret-file are both set: give one");
        return -1;
    }
    if (!has_secret && !has_file) {
        snprintf(err, errlen, "secret: required (--secret-file FILE, GP_SECRET or --secret)");
        return -1;
    }
    if (has_file) {
        char ferr[256];
        int rc = gp_read_key_file(c->secret_file, 0, g_hs.h.secret, ferr, sizeof ferr);
        if (rc == GP_KEY_INVALID) {
            snprintf(err, errlen,
                     "secret-file: %s must hold the house's secret alone, 64 hex digits on one "
                     "line: put there what ghostport house add %s printed (or re-issue it with "
                     "ghostport house add %s --force)",
                     c->secret_file, c->id, c->id);
            return -1;
        }
        if (rc != 0) {
            snprintf(err, errlen, "secret-file: %s", ferr);
            return -1;
        }
    } else if (strlen(c->secret) != GP_SECRET_HEX_LEN ||
               gp_secret_from_hex(c->secret, g_hs.h.secret) != 0) {
        snprintf(err, errlen,
                 "secret: must be exactly 64 hex digits (got %zu characters): what ghostport "
                 "house add %s printed (or re-issue it with ghostport house add %s --force)",
                 strlen(c->secret), c->id, c->id);
        return -1;
    }
    if (c->secret)
        sodium_memzero(c->secret, strlen(c->secret));
    if (c->nbridges == 0) {
        snprintf(err, errlen, "bridge: at least one is required (--bridge wss://host:port/)");
        return -1;
    }
    int rudp = 0;
    for (size_t i = 0; i < c->nbridges; i++)
        rudp |= starts_with(c->bridges[i], "rudp://");
    if (rudp && (!c->bridge_key || gp_secret_from_hex(c->bridge_key, g_hs.h.bridge_key) != 0)) {
        snprintf(err, errlen,
                 "bridge-key: rudp:// needs the bridges' public key, 64 hex digits (ghostport "
                 "rudp-keygen --show KEYFILE prints it from the bridges' key file)");
        return -1;
    }
    if (c->upstream && *c->upstream) {
        if (check_http_url(c->upstream, strlen(c->upstream), err, errlen, "upstream") != 0)
            return -1;
        char *b = base_url_dup(c->upstream, strlen(c->upstream));
        if (!b)
            return -1;
        free(c->upstream);
        c->upstream = b;
    } else if (c->nservices == 0 && c->ntcp_services == 0) {
        snprintf(err, errlen,
                 "upstream: give --upstream URL, at least one --service NAME=URL or "
                 "--tcp-service NAME=HOST:PORT");
        return -1;
    }
    int lvl = hs_log_parse_level(c->log_level);
    if (lvl < 0) {
        snprintf(err, errlen, "log-level: \"%s\" is not error, warn, info or debug", c->log_level);
        return -1;
    }
    hs_log_set_level(lvl);
    if (gp_log_format_parse(c->log_format) < 0) {
        snprintf(err, errlen, "log-format: \"%s\" is not kv or json", c->log_format);
        return -1;
    }
    /* Loaded now, so that a file that is no CA certificate (a private key, a typo) stops the
     * start and --check-config instead of failing every dial. */
    if (c->ca_file && *c->ca_file &&
        hs_tls_ca_file_check("ca-file", c->ca_file, "bridge", err, errlen) != 0)
        return -1;
    if (c->upstream_ca_file && *c->upstream_ca_file) {
        /* Loaded once here, so that a file that is no PEM stops the start instead of failing
         * every https:// request and stream later. */
        char terr[400];
        SSL_CTX *ctx = hs_tls_ctx_new(c->upstream_ca_file, terr, sizeof terr);
        if (!ctx) {
            snprintf(err, errlen, "upstream-ca-file: %s", terr);
            return -1;
        }
        SSL_CTX_free(ctx);
    }
    return 0;
}

static void free_config(hs_config *c) {
    gp_conf_clear(opts, c);
    free_bridges(c);
    free_services(c);
    free_tcp_services(c);
    free_tun_rules(c);
    free_tun_routes(c);
}

static void clear_config(void) {
    free_config(&g_hs.h.cfg);
    sodium_memzero(g_hs.h.secret, sizeof g_hs.h.secret);
}

/* --- SIGHUP ------------------------------------------------------------------------------ */

/* Whether option o differs (the secret is wiped once read: not comparable; upstream is kept
 * without its trailing '/'). */
static int opt_differs(const gp_conf_opt *o, const void *cur, const void *next) {
    if (!strcmp(o->name, "config") || !strcmp(o->name, "secret") || !strcmp(o->name, "help"))
        return 0;
    if (strcmp(o->name, "upstream") != 0)
        return gp_conf_differs(o, cur, next);
    const char *sa = ((const hs_config *)cur)->upstream, *sb = ((const hs_config *)next)->upstream;
    size_t la = sa ? strlen(sa) : 0, lb = sb ? strlen(sb) : 0;
    while (lb && sb[lb - 1] == '/')
        lb--;
    return la != lb || (la && memcmp(sa, sb, la) != 0);
}

static int lists_differ(const hs_config *a, const hs_config *b) {
    if (a->nbridges != b->nbridges || a->nservices != b->nservices ||
        a->ntcp_services != b->ntcp_services)
        return 1;
    for (size_t i = 0; i < a->ntcp_services; i++)
        if (strcmp(a->tcp_services[i].name, b->tcp_services[i].name) != 0 ||
            strcmp(a->tcp_services[i].host, b->tcp_services[i].host) != 0 ||
            strcmp(a->tcp_services[i].port, b->tcp_services[i].port) != 0)
            return 1;
    for (size_t i = 0; i < a->nbridges; i++)
        if (strcmp(a->bridges[i], b->bridges[i]) != 0)
            return 1;
    for (size_t i = 0; i < a->nservices; i++)
        if (strcmp(a->services[i].name, b->services[i].name) != 0 ||
            strcmp(a->services[i].url, b->services[i].url) != 0)
            return 1;
    return 0;
}

/* Reads the configuration again as at start and applies what is safe in a running house
 * (the [SIGHUP] options); a file that does not parse changes nothing. */
static void reload(void) {
    hs_config next;
    memset(&next, 0, sizeof next);
    char err[512] = "";
    if (load_config(&next, g_hs.argc, g_hs.argv, err, sizeof err) != 0 ||
        hs_log_parse_level(next.log_level) < 0) {
        if (!err[0])
            snprintf(err, sizeof err, "log-level: \"%s\" is not error, warn, info or debug",
                     next.log_level);
        hs_log(HS_LOG_WARN, "config_reload_failed", "house=%s err=%s kept=old", g_hs.h.cfg.id,
               hs_qs(err));
        free_config(&next);
        return;
    }
    char changed[256] = "", restart[512] = "";
    hs_config *cur = &g_hs.h.cfg;
    gp_conf_reload(opts, cur, &next, reloadable, opt_differs, changed, sizeof changed, restart,
                   sizeof restart);
    if (lists_differ(cur, &next))
        gp_conf_list_append(restart, sizeof restart, "bridge/service/tcp-service");
    free_config(&next);
    hs_log_set_level(hs_log_parse_level(cur->log_level));
    gp_log_set_format(gp_log_format_parse(cur->log_format));
    hs_log(HS_LOG_INFO, "config_reloaded", "house=%s changed=%s%s%s", cur->id,
           changed[0] ? changed : "none", restart[0] ? " restart_needed=" : "", restart);
}

static void on_sighup(void *ud) {
    (void)ud;
    reload();
}

/* --- signals and shutdown ---------------------------------------------------------------- */

static void stop_house(hs_house *h) {
    if (h->tunnel)
        hs_tunnel_stop(h->tunnel);
    hs_upstream_stop(h->upstream);
    hs_admin_stop(h);
}

static void admin_log(int level, const char *event, const char *kv) {
    hs_log(level, event, "house=%s %s", g_hs.h.cfg.id, kv);
}

static void on_signal(void *ud, int signum) {
    (void)ud;
    if (g_hs.h.stopping)
        return;
    g_hs.h.stopping = 1;
    hs_log(HS_LOG_INFO, "shutdown", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_house(&g_hs.h);
    gp_uv_signals_close(&g_signals);
}

int main(int argc, char **argv) {
    char err[512] = "";
    int rc = 2;
    if (gp_conf_version(argc, argv, "ghostport-house", gp_version))
        return 0;
    if (gp_auth_init() != 0) {
        fprintf(stderr, "ghostport-house: libsodium initialisation failed\n");
        return 1;
    }
    g_hs.argc = argc;
    g_hs.argv = argv;
    if (load_config(&g_hs.h.cfg, argc, argv, err, sizeof err) != 0 ||
        (!g_hs.h.cfg.help && validate_config(err, sizeof err) != 0)) {
        fprintf(stderr, "ghostport-house: %s\n(see --help)\n", err);
        goto out_conf;
    }
    gp_log_set_format(gp_log_format_parse(g_hs.h.cfg.log_format));
    if (g_hs.h.cfg.help) {
        usage();
        rc = 0;
        goto out_conf;
    }
    if (g_hs.h.cfg.check_config) {
        printf("ghostport-house: configuration ok\n");
        rc = 0;
        goto out_conf;
    }
    hs_house *h = &g_hs.h;
    /* Before dialing: a redelivery must find what the journal remembers. */
    h->cache = hs_cache_new();
    if (!h->cache)
        snprintf(err, sizeof err, "out of memory");
    else
        h->journal = hs_journal_open(h->cache, h->cfg.state_dir, h->cfg.id, h->cfg.state_sync, err,
                                     sizeof err);
    if (!h->journal) {
        fprintf(stderr, "ghostport-house: %s\n", err);
        goto out_conf;
    }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ghostport-house: curl_global_init failed\n");
        rc = 1;
        goto out_conf;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    g_hs.h.loop = &loop;
    gp_uv_signals_start(&g_signals, &loop, on_signal, on_sighup, NULL);

    hs_log(HS_LOG_INFO, "starting",
           "house=%s bridges=%zu upstream=%s services=%zu tcp_services=%zu", g_hs.h.cfg.id,
           g_hs.h.cfg.nbridges, hs_qs(g_hs.h.cfg.upstream), g_hs.h.cfg.nservices,
           g_hs.h.cfg.ntcp_services);
    if (g_hs.h.cfg.upstream_insecure)
        hs_log(HS_LOG_WARN, "upstream_tls_insecure",
               "note=\"https:// upstreams' certificates are not verified: testing only\"");
    rc = 1;
    h->exec = &hs_upstream_exec;
    if (hs_admin_init(h) != 0 || !(h->exec_ud = h->upstream = hs_upstream_new(h)) ||
        !(h->tunnel = hs_tunnel_new(h)) || hs_tunnel_start(h->tunnel) != 0 ||
        hs_admin_start(h, admin_log) != 0) {
        h->stopping = 1;
        stop_house(h);
        gp_uv_signals_close(&g_signals);
    } else {
        rc = 0;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    /* What is left once libuv has closed the handles (hs_tunnel_final), then a last turn. */
    if (h->tunnel)
        hs_tunnel_final(h->tunnel);
    hs_upstream_stop(h->upstream);
    uv_run(&loop, UV_RUN_DEFAULT);
    hs_tunnel_free(h->tunnel);
    hs_upstream_free(h->upstream);
    h->tunnel = NULL;
    h->upstream = NULL;
    hs_admin_final(h);
    if (uv_loop_close(&loop) != 0)
        hs_log(HS_LOG_WARN, "loop_not_empty", NULL);
    curl_global_cleanup();
    hs_log(HS_LOG_INFO, "stopped", NULL);
out_conf:
    hs_journal_close(g_hs.h.journal);
    hs_cache_free(g_hs.h.cache);
    clear_config();
    return rc;
}
