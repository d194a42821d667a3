/* cli_main.c — `ghostport`, the command-line tool for people: global options, the command
 * table and dispatch, help. I/O side (blocking Redis client, stdout/stderr). Each command
 * lives in its own file and is one row of `commands` below, so adding one means adding a
 * row. */
#include "../store/tlsrelay.h"
#include "cli_cmd.h"
#include "conf.h"
#include "version.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_REDIS "127.0.0.1:6379"

static int cmd_help(cli_ctx *c, int argc, char **argv);
static int cmd_version(cli_ctx *c, int argc, char **argv);

static const cli_command commands[] = {
    {"house", "add", cli_house_add,
     "ID [--label KEY=VALUE]... [--force] [--quiet] [--tun-addr ADDR] [--tun-route CIDR]...",
     "register a house: create its secret, store it in Redis, print it once",
     "  --label KEY=VALUE  attach a label (repeatable); stored as a JSON object\n"
     "  --force            replace the secret of an existing house (its L3 address and\n"
     "                     routes are kept unless given)\n"
     "  -q, --quiet        print only the secret (64 hex digits)\n"
     "  --tun-addr ADDR    the house's fixed L3 tunnel address: an IPv4 or IPv6 host of the\n"
     "                     pools the bridges record (--tun); it has the same index in the\n"
     "                     other family's pool, whose address follows. Refused when no bridge\n"
     "                     has recorded its pools yet, outside them, the bridges' own address\n"
     "                     (index 0), or another house's. Without it the house gets an\n"
     "                     address from the pools when it first asks.\n"
     "  --tun-route CIDR   a subnet the house may route through the L3 tunnel (repeatable,\n"
     "                     or comma-separated; at most 64); stored canonical; refused when\n"
     "                     it overlaps a subnet another house may route\n"
     "exit status: 0 done, 1 the house exists or its L3 address is refused (or, the secret\n"
     "shown, its L3 settings could not be stored), 2 usage or Redis error\n"},
    {"house", "list", cli_house_list, "[--json]",
     "list registered houses with their state (online, offline since when, disabled)",
     "  --json             one JSON object per line instead of a table (state, offline_since_ms,\n"
     "                     last_bridge; tun_addr: the L3 addresses, tun_routes: the subnets it\n"
     "                     may route)\n"
     "STATE: online (a bridge holds it), offline, or disabled (whether connected or not).\n"
     "BRIDGE: the bridge holding it, or (the one that held it last) when offline. SINCE: when\n"
     "it came online, or went offline (the last time a bridge heard from it; - never).\n"
     "LAST_SEEN: how long ago a bridge last heard from it.\n"
     "TUN: the house's L3 address (IPv4, or IPv6 when the bridges have only that pool),\n"
     "- none yet, ? this Redis user may not read <prefix>:tun\n"},
    {"house", "rm", cli_house_rm, "ID [--purge]",
     "remove a house: its registry entry, live state, epoch, recent list, rudp stamp",
     "  --purge            also delete its request stream, the janitor's index of it and\n"
     "                     its TCP streams' keys (SCAN)\n"
     "                     (pending requests are lost; without it the stream is kept and\n"
     "                     its length reported)\n"
     "  Its L3 address and its routes' claim are freed: removal is removal, and a house added\n"
     "  again under the same id gets an address afresh (--tun-addr gives it the old one back,\n"
     "  if still free).\n"},
    {"house", "tun", cli_house_tun,
     "ID [--addr ADDR | --addr auto] [--route CIDR]... [--no-routes]",
     "show or change a house's L3 tunnel address and the subnets it may route",
     "  --addr ADDR        a fixed address (as house add --tun-addr); its old one is freed\n"
     "  --addr auto        free its fixed address: it gets one from the pools when it next asks\n"
     "  --route CIDR       a subnet it may route (repeatable, or comma-separated): the given\n"
     "                     routes replace its list; one that overlaps a subnet another house\n"
     "                     may route is refused (a subnet goes to one house)\n"
     "  --no-routes        it may route no subnet\n"
     "  Without options it prints the house's L3 settings. A connected house keeps its current\n"
     "  address and routes until it reconnects.\n"
     "exit status: 0 done, 1 no such house or the address or a route refused, 2 usage or\n"
     "Redis error\n"},
    {"house", "disable", cli_house_disable, "ID",
     "refuse a house: a bridge holding it closes it, and it cannot connect again",
     "  Sets disabled=1 in its registry hash and publishes \"disable ID\" on <prefix>:ctl.\n"
     "  Its requests wait in Redis until their deadline (504), as for an offline house.\n"
     "exit status: 0 done, 1 no such house, 2 usage or Redis error\n"},
    {"house", "enable", cli_house_enable, "ID",
     "let a disabled house connect again (at its next attempt)",
     "  A house refused as disabled tries again every 2-3 s (ghostport-house), so it is back\n"
     "  within a few seconds.\n"
     "exit status: 0 done, 1 no such house, 2 usage or Redis error\n"},
    {"top", NULL, cli_top, "[--once | --json] [options]",
     "live view of bridges and houses (rates, RTT, recent requests) read from Redis",
     "  --once              print one snapshot as plain text and exit (no terminal needed)\n"
     "  --json              print one snapshot as JSON and exit\n"
     "  -n, --interval MS   refresh period (default 1000); with --once/--json the time\n"
     "                      between the two samples rates come from (0: one sample, no rates)\n"
     "      --state FILE    with --once/--json: rates since the previous run that used FILE\n"
     "                      (no wait), then the snapshot is saved there (for cron, scripts)\n"
     "  -s, --sort COLUMN   id bridge transport since seen rtt loss req err state,\n"
     "                      and the L3 tunnel's: tun (address) tun_pps tun_bps (in + out) fec\n"
     "  -r, --reverse       sort descending\n"
     "  -f, --filter TEXT   only houses whose id contains TEXT (case-insensitive)\n"
     "      --house ID      that house's page: its stats and recent requests\n"
     "keys: Up/Down/PgUp/PgDn/Home/End (or j k g G) move, Enter opens the house's page\n"
     "(sparklines of req/s, RTT and tunnel packets/s, recent requests), Esc goes back, s/S\n"
     "next/previous sort column, r reverses, / filters by id (Enter keeps, Esc cancels), q or\n"
     "Ctrl-C quits.\n"
     "While some house has an L3 address the houses table shows the tunnel's columns: TUN\n"
     "(address), PKT/s and BIT/s as in/out (in: from the house into the hub), FEC/s (packets\n"
     "rebuilt by FEC); a house's page adds its addresses, routes, packets, bytes and drops.\n"
     "Rates are deltas of the totals bridges publish every second. When Redis cannot be\n"
     "reached the view says so and keeps retrying; --once/--json exit with status 2.\n"},
    {"request", NULL, cli_request,
     "ID METHOD PATH [-H 'Name: value']... [-d DATA | --data-binary @FILE] [options]",
     "send one HTTP request to a house through Redis and print the reply like curl -i",
     "  -H, --header 'Name: value'  request header (repeatable)\n"
     "  -d, --data DATA             request body (DATA, or @FILE for a file's bytes)\n"
     "      --data-binary @FILE     request body from FILE (@- reads stdin)\n"
     "      --service NAME          the house's named upstream (default: its default)\n"
     "      --timeout MS            deadline in ms (default 30000)\n"
     "      --id ID                 frame id (default: a random UUID)\n"
     "      --body-only             print only the body bytes\n"
     "      --fail-fast             send nothing unless the house is online: exit at once,\n"
     "                              saying why (offline since when, disabled)\n"
     "      --wait-online MS        wait up to MS for the house to be online (read every\n"
     "                              100 ms; a disabled house too, as it may be enabled),\n"
     "                              then send; if it is not, exit as --fail-fast does\n"
     "  Without either the request is sent whatever the house's state: it waits in the\n"
     "  house's stream until a bridge takes it or its deadline passes (a note on stderr).\n"
     "exit status: 0 status < 400, 1 error reply or status >= 400, 2 usage or Redis error,\n"
     "3 no reply before the deadline, 4 the house is offline and 5 disabled (--fail-fast,\n"
     "--wait-online: nothing sent), 6 no such house (nothing sent)\n"},
    {"connect", NULL, cli_connect_cmd, "HOUSE SERVICE [options]",
     "a TCP stream to a house's service on stdin/stdout (for ssh -o ProxyCommand)",
     "  for ssh: ssh -o ProxyCommand='ghostport connect %h ssh' farm-1\n"
     "      --window BYTES     credit window of each direction, 4096-67108864 (default 1048576)\n"
     "      --idle MS          idle timeout, 1000-86400000 (default 300000); keep-alives every\n"
     "                         third of it\n"
     "      --timeout MS       deadline to open (house and service connected; default 30000)\n"
     "  -q, --quiet            no note when the house is offline\n"
     "stdin EOF half-closes the stream; the house's end closes stdout; the command ends when\n"
     "both directions are finished (or at a reset: the reason on stderr).\n"
     "exit status: 0 both directions finished, 1 reset or lost Redis mid-stream, 2 usage,\n"
     "Redis error or the open refused (status, error and message on stderr), 3 no answer to\n"
     "the open before the deadline\n"},
    {"forward", NULL, cli_forward, "[ADDR:]PORT HOUSE SERVICE [options]",
     "listen locally; each connection a TCP stream to a house's service",
     "  PORT 0 takes a free port; the address listened on is printed on stdout.\n"
     "  ADDR defaults to 127.0.0.1; [::1]:PORT for IPv6.\n"
     "  --window, --idle, --timeout as for connect (each connection is its own stream);\n"
     "  -q, --quiet: no offline note, no line per closed connection.\n"
     "  A refused open or a reset closes that connection with a reset (reason on stderr);\n"
     "  SIGINT/SIGTERM close the listener and reset the open streams.\n"
     "exit status: 0 stopped by a signal, 2 usage, Redis error or cannot listen\n"},
    {"rudp-keygen", NULL, cli_rudp_keygen, "--out FILE [--force] | --show FILE",
     "make the bridges' rudp:// key pair: private key to FILE, public key printed",
     "  -o, --out FILE     write the private key there (mode 0600): every bridge's --rudp-key\n"
     "                     (the public key printed goes to every house's --bridge-key)\n"
     "      --force        replace FILE if it exists\n"
     "      --show FILE    print the public key of an existing private key file\n"},
    {"help", NULL, cmd_help, "[COMMAND]", "show help", NULL},
    {"version", NULL, cmd_version, "", "print the version (also: ghostport --version)", NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

void cli_err(cli_ctx *c, const char *fmt, ...) {
    fprintf(stderr, "%s: ", c->prog);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_fmt_utc(char *out, size_t cap, long long ms) {
    if (ms < 0) {
        snprintf(out, cap, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

uint64_t cli_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cli_opt_val(int argc, char **argv, int *i, const char *lng, const char *shrt,
                const char **val) {
    const char *a = argv[*i];
    size_t ll = strlen(lng);
    if (strcmp(a, lng) == 0 || (shrt && strcmp(a, shrt) == 0)) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "ghostport: %s needs a value\n", a);
            return -1;
        }
        *val = argv[++*i];
        return 1;
    }
    if (strncmp(a, lng, ll) == 0 && a[ll] == '=') {
        *val = a + ll + 1;
        return 1;
    }
    if (shrt && strncmp(a, shrt, 2) == 0 && a[2]) {
        *val = a + 2;
        return 1;
    }
    return 0;
}

int cli_global_opt(cli_ctx *c, int argc, char **argv, int *i) {
    /* Every global option takes a value, kept (borrowed from argv) in its cli_ctx field. */
    static const struct {
        const char *name;
        size_t off;
    } opts[] = {{"--redis", offsetof(cli_ctx, redis_url)},
                {"--redis-user", offsetof(cli_ctx, redis_user)},
                {"--redis-password-file", offsetof(cli_ctx, redis_password_file)},
                {"--redis-ca-file", offsetof(cli_ctx, redis_ca_file)},
                {"--redis-cert-file", offsetof(cli_ctx, redis_cert_file)},
                {"--redis-key-file", offsetof(cli_ctx, redis_key_file)},
                {"--prefix", offsetof(cli_ctx, prefix)},
                {"--master-key", offsetof(cli_ctx, master_hex)}};
    const char *v;
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        int r = cli_opt_val(argc, argv, i, opts[k].name, NULL, &v);
        if (r != 0) {
            if (r > 0)
                *(const char **)((char *)c + opts[k].off) = v;
            return r;
        }
    }
    return 0;
}

int cli_redis_addr(cli_ctx *c, gp_rurl *u) {
    char err[512];
    gp_rurl_redact(c->redis_url, c->redis_shown, sizeof c->redis_shown);
    if (gp_rurl_parse(c->redis_url, u, err, sizeof err) != 0 ||
        gp_rurl_credentials(u, c->redis_user, c->redis_password_file, err, sizeof err) != 0 ||
        (u->tls && gp_tlsrelay_config(c->redis_ca_file, c->redis_cert_file, c->redis_key_file, err,
                                      sizeof err) != 0)) {
        gp_rurl_wipe(u);
        cli_err(c, "%s", err);
        return CLI_USAGE;
    }
    return 0;
}

br_rc *cli_connect(cli_ctx *c) {
    char err[512];
    if (!*c->prefix || strlen(c->prefix) > 64) {
        cli_err(c, "--prefix must be 1-64 characters");
        return NULL;
    }
    gp_rurl u;
    if (cli_redis_addr(c, &u) != 0)
        return NULL;
    br_rc *rc = gp_reg_connect(&u, 5000, err, sizeof err, NULL);
    gp_rurl_wipe(&u);
    if (!rc)
        cli_err(c, "%s", err);
    return rc;
}

int cli_master_key(cli_ctx *c, uint8_t out[32], int *have) {
    *have = 0;
    if (!c->master_hex || !*c->master_hex)
        return 0;
    if (gp_reg_master_key(c->master_hex, out) != 0) {
        cli_err(c, "--master-key / GP_MASTER_KEY must be exactly 64 hex digits");
        return CLI_USAGE;
    }
    *have = 1;
    return 0;
}

static void print_globals(FILE *f) {
    fprintf(f, "global options (anywhere on the line):\n"
               "  --redis URL         redis://[user:password@]host:port/db, rediss://... (TLS)\n"
               "                      or host:port (env GP_REDIS, default " DEFAULT_REDIS ")\n"
               "  --redis-user USER   Redis ACL user (env GP_REDIS_USER; default: the URL's)\n"
               "  --redis-password-file FILE\n"
               "                      Redis password, first line of FILE (env\n"
               "                      GP_REDIS_PASSWORD_FILE; wins over the URL's)\n"
               "  --redis-ca-file FILE  rediss://: CA certificates Redis's must chain to\n"
               "                      (env GP_REDIS_CA_FILE; default: the system's)\n"
               "  --redis-cert-file FILE, --redis-key-file FILE\n"
               "                      rediss://: client certificate and key (env\n"
               "                      GP_REDIS_CERT_FILE, GP_REDIS_KEY_FILE)\n"
               "  --prefix P          key prefix (env GP_PREFIX, default gp)\n"
               "  --master-key HEX    64 hex digits; house secrets are sealed with it in Redis\n"
               "                      (env GP_MASTER_KEY; must match the bridges' key)\n");
}

static void print_command(FILE *f, const cli_command *k, int full) {
    char words[32];
    snprintf(words, sizeof words, "%s%s%s", k->name, k->sub ? " " : "", k->sub ? k->sub : "");
    if (full) {
        fprintf(f, "usage: ghostport %s%s%s\n  %s\n", words, *k->args ? " " : "", k->args,
                k->summary);
        if (k->help)
            fprintf(f, "%s", k->help);
    } else {
        fprintf(f, "  %-14s %s\n", words, k->summary);
    }
}

static void print_help(FILE *f) {
    fprintf(f, "ghostport — reach HTTP services behind NAT through Redis\n\n"
               "usage: ghostport [global options] COMMAND [arguments]\n"
               "       ghostport --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        print_command(f, &commands[i], 0);
    fputc('\n', f);
    print_globals(f);
    fprintf(f, "\nRun `ghostport help COMMAND` (e.g. `ghostport help request`) for its options.\n");
}

int cli_usage(cli_ctx *c, const char *name, const char *sub) {
    (void)c;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const cli_command *k = &commands[i];
        if (strcmp(k->name, name) == 0 && (!sub || (k->sub && strcmp(k->sub, sub) == 0)))
            print_command(stderr, k, 1);
    }
    return CLI_USAGE;
}

static int cmd_help(cli_ctx *c, int argc, char **argv) {
    (void)c;
    if (argc == 0) {
        print_help(stdout);
        return CLI_OK;
    }
    int found = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const cli_command *k = &commands[i];
        if (strcmp(k->name, argv[0]) == 0 &&
            (argc < 2 || (k->sub && strcmp(k->sub, argv[1]) == 0))) {
            print_command(stdout, k, 1);
            found = 1;
        }
    }
    if (!found) {
        fprintf(stderr, "ghostport: no command '%s'\n", argv[0]);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int cmd_version(cli_ctx *c, int argc, char **argv) {
    (void)argv;
    if (argc > 0)
        return cli_usage(c, "version", NULL);
    gp_conf_print_version(c->prog, gp_version);
    return CLI_OK;
}

static const char *env_or(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}

int main(int argc, char **argv) {
    cli_ctx c = {
        .prog = "ghostport",
        .redis_url = env_or("GP_REDIS", DEFAULT_REDIS),
        .prefix = env_or("GP_PREFIX", "gp"),
        .master_hex = env_or("GP_MASTER_KEY", NULL),
        .redis_user = env_or("GP_REDIS_USER", NULL),
        .redis_password_file = env_or("GP_REDIS_PASSWORD_FILE", NULL),
        .redis_ca_file = env_or("GP_REDIS_CA_FILE", NULL),
        .redis_cert_file = env_or("GP_REDIS_CERT_FILE", NULL),
        .redis_key_file = env_or("GP_REDIS_KEY_FILE", NULL),
    };
    if (gp_auth_init() != 0) {
        cli_err(&c, "libsodium initialisation failed");
        return CLI_USAGE;
    }
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(stdout);
            return CLI_OK;
        }
        if (strcmp(argv[i], "--version") == 0)
            return cmd_version(&c, 0, NULL);
        int r = cli_global_opt(&c, argc, argv, &i);
        if (r < 0)
            return CLI_USAGE;
        if (r == 0)
            break;
    }
    if (i >= argc) {
        print_help(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[i];
    const char *sub = i + 1 < argc ? argv[i + 1] : NULL;
    int has_subs = 0;
    for (size_t k = 0; k < NCOMMANDS; k++) {
        const cli_command *cmd = &commands[k];
        if (strcmp(cmd->name, name) != 0)
            continue;
        if (cmd->sub) {
            has_subs = 1;
            if (!sub || strcmp(cmd->sub, sub) != 0)
                continue;
        }
        int first = i + (cmd->sub ? 2 : 1);
        /* Pull global options and --help out of the command's arguments. */
        char **rest = calloc((size_t)(argc - first) + 1, sizeof *rest);
        if (!rest)
            return CLI_USAGE;
        int n = 0;
        int dashdash = 0;
        for (int j = first; j < argc; j++) {
            if (!dashdash && strcmp(argv[j], "--") == 0) {
                dashdash = 1;
                rest[n++] = argv[j];
                continue;
            }
            if (!dashdash && (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0)) {
                print_command(stdout, cmd, 1);
                free(rest);
                return CLI_OK;
            }
            int r = dashdash ? 0 : cli_global_opt(&c, argc, argv, &j);
            if (r < 0) {
                free(rest);
                return CLI_USAGE;
            }
            if (r == 0)
                rest[n++] = argv[j];
        }
        int rv = cmd->run(&c, n, rest);
        free(rest);
        return rv;
    }
    if (has_subs) {
        fprintf(stderr, "ghostport: %s needs a subcommand:\n", name);
        for (size_t k = 0; k < NCOMMANDS; k++)
            if (strcmp(commands[k].name, name) == 0)
                print_command(stderr, &commands[k], 0);
    } else {
        fprintf(stderr, "ghostport: unknown command '%s' (see ghostport --help)\n", name);
    }
    return CLI_USAGE;
}
