/* househost.c — gp-househost: N real houses in one process. Each is an hs_house running
 * house/'s own code (tunnel core, ws/wss and rudp transports, libcurl upstream, replay cache),
 * all on one libuv loop and one set of TLS client settings, so what it shows on the wire is
 * what ghostport-house does. It is the proof that the house's state lives in its hs_house
 * (no module keeps one of its own) and the base for gp-loadhouses to run the house's code
 * instead of its own copy (tests/load/README.md says what that still needs).
 *
 *   gp-househost --bridge URL [--bridge URL...] (--upstream URL | --response-bytes B
 *                [--delay-ms D]) [--log-level L] [--log-format kv|json] ID=SECRET...
 *
 * SECRET is the house's 64 hex digits. Every house uses the same bridges and default
 * upstream; the other options take ghostport-house's defaults. With --response-bytes no
 * upstream is called: the executor of inproc.c (hs_exec, house/house.h), which gp-loadhouses
 * uses too, answers every request with 200, application/json and B bytes
 * ({"house":..,"id":..,"exec":1} padded with spaces) after D ms; the tunnel, its replay cache
 * included, is the house's. The log is ghostport-house's (one stream for all houses: its
 * lines say house=). SIGTERM/SIGINT: every house stops as
 * ghostport-house does, then exit 0. I/O side, test-only. */
#include "../../house/house.h"
#include "adapters/uv_signals.h"
#include "inproc.h"

#include <curl/curl.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BRIDGES 16

static struct {
    uv_loop_t loop;
    struct hs_ws_shared *ctx; /* shared by every house's ws transport */
    hs_zstate *zs;            /* and one compression state */
    hs_house **houses;
    size_t n;
    char *bridges[MAX_BRIDGES];
    size_t nbridges;
    const char *upstream, *log_level, *log_format;
    long long response_bytes, delay_ms; /* response_bytes -1: call --upstream */
    gp_uv_signals signals;              /* SIGINT, SIGTERM: stop */
    int stopping;
} G;

static void usage(void) {
    fprintf(stderr, "usage: gp-househost --bridge URL [--bridge URL...] (--upstream URL | "
                    "--response-bytes B [--delay-ms D]) [--log-level L] [--log-format kv|json] "
                    "ID=SECRET...\n");
}

static void house_free(hs_house *h) {
    if (!h)
        return;
    lt_house_close(h);
    free(h);
}

/* One house with ghostport-house's defaults; NULL with a message on stderr. */
static hs_house *house_new(const char *spec) {
    const char *eq = strchr(spec, '=');
    hs_house *h = calloc(1, sizeof *h);
    if (!h || !eq)
        goto bad;
    hs_config *c = &h->cfg;
    c->id = strndup(spec, (size_t)(eq - spec));
    if (!c->id || !gp_house_id_valid(gp_str_c(c->id)) || gp_secret_from_hex(eq + 1, h->secret))
        goto bad;
    c->upstream = (char *)G.upstream;
    c->bridges = G.bridges;
    c->nbridges = G.nbridges;
    char err[256] = "";
    int opened = lt_house_open(h, &G.loop, G.ctx, G.zs, err, sizeof err) == 0;
    if (G.response_bytes >= 0) {
        h->exec = &lt_inproc_exec;
        h->exec_ud = h;
    } else {
        h->exec = &hs_upstream_exec;
        h->exec_ud = h->upstream = opened ? hs_upstream_new(h) : NULL;
    }
    h->tunnel = opened && h->exec_ud ? hs_tunnel_new(h) : NULL;
    if (!h->tunnel) {
        fprintf(stderr, "gp-househost: out of memory\n");
        house_free(h);
        return NULL;
    }
    return h;
bad:
    fprintf(stderr, "gp-househost: \"%s\" is not ID=SECRET (64 hex digits)\n", spec);
    house_free(h);
    return NULL;
}

/* As ghostport-house on SIGTERM, for every house; then the shared context goes, which
 * closes the connections still open. */
static void stop_all(void) {
    if (G.stopping)
        return;
    G.stopping = 1;
    for (size_t i = 0; i < G.n; i++) {
        hs_house *h = G.houses[i];
        h->stopping = 1;
        if (h->tunnel)
            hs_tunnel_stop(h->tunnel);
        hs_upstream_stop(h->upstream);
    }
    lt_inproc_close();
    gp_uv_signals_close(&G.signals);
}

static void on_signal(void *ud, int signum) {
    (void)ud;
    hs_log(HS_LOG_INFO, "shutdown", "signal=%s houses=%zu", signum == SIGINT ? "SIGINT" : "SIGTERM",
           G.n);
    stop_all();
}

static int parse_args(int argc, char **argv) {
    G.log_level = "info";
    G.log_format = "kv";
    G.response_bytes = -1;
    G.houses = calloc((size_t)argc, sizeof *G.houses);
    if (!G.houses)
        return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--bridge") == 0 && has_value && G.nbridges < MAX_BRIDGES)
            G.bridges[G.nbridges++] = argv[++i];
        else if (strcmp(a, "--upstream") == 0 && has_value)
            G.upstream = argv[++i];
        else if (strcmp(a, "--log-level") == 0 && has_value)
            G.log_level = argv[++i];
        else if (strcmp(a, "--log-format") == 0 && has_value)
            G.log_format = argv[++i];
        else if (strcmp(a, "--response-bytes") == 0 && has_value)
            G.response_bytes = strtoll(argv[++i], NULL, 10);
        else if (strcmp(a, "--delay-ms") == 0 && has_value)
            G.delay_ms = strtoll(argv[++i], NULL, 10);
        else if (strncmp(a, "--", 2) == 0)
            return -1;
        else
            G.n++;
    }
    int exec_ok = (G.upstream != NULL) != (G.response_bytes >= 0) &&
                  G.response_bytes <= (1LL << 30) && G.delay_ms >= 0;
    return G.nbridges && exec_ok && G.n && hs_log_parse_level(G.log_level) >= 0 &&
                   gp_log_format_parse(G.log_format) >= 0
               ? 0
               : -1;
}

int main(int argc, char **argv) {
    if (gp_auth_init() != 0 || parse_args(argc, argv) != 0) {
        usage();
        return 2;
    }
    hs_log_set_level(hs_log_parse_level(G.log_level));
    gp_log_set_format(gp_log_format_parse(G.log_format));
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    uv_loop_init(&G.loop);
    G.ctx = hs_ws_shared_new(NULL);
    G.zs = hs_zstate_new();
    /* --response-bytes: the tool's executor answers (tests/load/inproc.h) */
    int rc = G.ctx && G.zs &&
                     lt_inproc_init(&G.loop, G.response_bytes >= 0 ? (uint64_t)G.response_bytes : 0,
                                    (uint64_t)G.delay_ms, NULL) == 0
                 ? 0
                 : 1;
    size_t made = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            i++;
            continue;
        }
        if (!(G.houses[made] = house_new(argv[i])))
            rc = 2;
        else
            made++;
    }
    G.n = made;
    gp_uv_signals_start(&G.signals, &G.loop, on_signal, NULL, NULL);
    hs_log(HS_LOG_INFO, "starting", "houses=%zu bridges=%zu upstream=%s", G.n, G.nbridges,
           hs_qs(G.upstream));
    for (size_t i = 0; i < G.n && rc == 0; i++)
        if (hs_tunnel_start(G.houses[i]->tunnel) != 0)
            rc = 1;
    if (rc != 0)
        stop_all();
    uv_run(&G.loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < G.n; i++)
        hs_tunnel_final(G.houses[i]->tunnel);
    uv_run(&G.loop, UV_RUN_DEFAULT);
    hs_ws_shared_free(G.ctx);
    for (size_t i = 0; i < G.n; i++)
        house_free(G.houses[i]);
    free(G.houses);
    lt_inproc_free();
    hs_zstate_free(G.zs);
    if (uv_loop_close(&G.loop) != 0)
        hs_log(HS_LOG_WARN, "loop_not_empty", NULL);
    curl_global_cleanup();
    hs_log(HS_LOG_INFO, "stopped", NULL);
    return rc;
}
