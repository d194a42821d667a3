/* cli_cmd.h — shared pieces of the `ghostport` command-line tool (cli_*.c): the global
 * options, the command table entry type and small helpers. I/O side (a blocking hiredis
 * client; the daemon's async code is not used here). */
#ifndef GP_CLI_CMD_H
#define GP_CLI_CMD_H

#include "../store/registry.h"
#include "../store/rkeys.h"

#include <stdint.h>

/* Exit codes (documented in --help and the README). */
enum {
    CLI_OK = 0,      /* success; for `request`: a reply with status < 400 */
    CLI_FAIL = 1,    /* the operation failed; for `request`: error reply or status >= 400 */
    CLI_USAGE = 2,   /* bad usage, or Redis unreachable / erroring */
    CLI_TIMEOUT = 3, /* `request`: no final reply before the deadline */
    /* `request` (--fail-fast, --wait-online: not sent): */
    CLI_OFFLINE = 4,  /* the house is offline */
    CLI_DISABLED = 5, /* the house is disabled */
    CLI_NO_HOUSE = 6, /* no such house (any `request`) */
};

typedef struct cli_ctx {
    const char *prog;
    const char *redis_url;           /* --redis / GP_REDIS / 127.0.0.1:6379 */
    const char *prefix;              /* --prefix / GP_PREFIX / gp */
    const char *master_hex;          /* --master-key / GP_MASTER_KEY / none */
    const char *redis_user;          /* --redis-user / GP_REDIS_USER / the URL's */
    const char *redis_password_file; /* --redis-password-file / GP_REDIS_PASSWORD_FILE */
    const char *redis_ca_file, *redis_cert_file, *redis_key_file; /* rediss:// */
    char redis_shown[320]; /* the URL with its password masked, for output */
} cli_ctx;

typedef struct cli_command {
    const char *name, *sub; /* "house","add"; sub NULL for one-word commands */
    int (*run)(cli_ctx *c, int argc, char **argv); /* argv[0] is the first argument after
                                                       the command words */
    const char *args;                              /* usage after the command words */
    const char *summary;                           /* one line */
    const char *help;                              /* options, one per line, or NULL */
} cli_command;

/* If argv[*i] is a global option (--redis, --prefix, --master-key, with " " or "="),
 * consumes it and its value and returns 1; returns -1 (message printed) if its value is
 * missing; 0 if it is not a global option. */
int cli_global_opt(cli_ctx *c, int argc, char **argv, int *i);

/* Matches argv[*i] against a long option (and optional short one) taking a value, in the
 * forms "--name value", "--name=value", "-s value", "-svalue". Returns 1 and sets *val
 * (advancing *i past a separate value), -1 if the value is missing (message printed), 0 if
 * it does not match. */
int cli_opt_val(int argc, char **argv, int *i, const char *lng, const char *shrt, const char **val);

/* Connects to the configured Redis; prints the error and returns NULL on failure (the
 * command then exits with CLI_USAGE, 2: a refused password is a Redis error too). */
br_rc *cli_connect(cli_ctx *c);
/* The configured address with its credentials (URL, --redis-user, --redis-password-file):
 * 0, or CLI_USAGE with the error printed. The caller wipes u (gp_rurl_wipe). */
int cli_redis_addr(cli_ctx *c, gp_rurl *u);

/* Parses the master key if one is configured: 0 (out set, *have = 1), 0 with *have = 0 when
 * none is configured, CLI_USAGE (message printed) if it is not 64 hex digits. */
int cli_master_key(cli_ctx *c, uint8_t out[32], int *have);

void cli_err(cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the usage of one command to stderr and returns CLI_USAGE. */
int cli_usage(cli_ctx *c, const char *name, const char *sub);

/* Commands (cli_house.c, cli_request.c, ...). */
int cli_house_add(cli_ctx *c, int argc, char **argv);
int cli_house_list(cli_ctx *c, int argc, char **argv);
int cli_house_rm(cli_ctx *c, int argc, char **argv);
int cli_house_disable(cli_ctx *c, int argc, char **argv);
int cli_house_enable(cli_ctx *c, int argc, char **argv);
int cli_house_tun(cli_ctx *c, int argc, char **argv); /* cli_tun.c */
int cli_top(cli_ctx *c, int argc, char **argv);       /* cli_top.c */
int cli_request(cli_ctx *c, int argc, char **argv);
int cli_rudp_keygen(cli_ctx *c, int argc, char **argv); /* cli_keys.c */
int cli_connect_cmd(cli_ctx *c, int argc, char **argv); /* cli_stream.c */
int cli_forward(cli_ctx *c, int argc, char **argv);     /* cli_stream.c */

/* A house's L3 tunnel settings (cli_tun.c). Routes given on the command line: canonical,
 * de-duplicated (tunbook.h). */
typedef struct cli_routes {
    gp_cidr r[GP_TUN_ROUTES_MAX];
    size_t n;
    int given; /* the option was there (even if it added nothing new) */
} cli_routes;
/* Adds the value v of option opt (one CIDR prefix, or several separated by commas). 0, or
 * CLI_USAGE with gp_cidr_parse's message (or the limits') printed. */
int cli_routes_opt(cli_ctx *c, cli_routes *rt, const char *opt, const char *v);
/* The address text s of option opt: 0, or CLI_USAGE (printed). */
int cli_tun_addr_parse(cli_ctx *c, const char *opt, const char *s, gp_ip_addr *a);
/* Address a as an index of the pools recorded in <p>:tun (read into *pools): 0 with *idx, or
 * the refusal printed and CLI_FAIL (no pools recorded yet, a is outside its family's pool,
 * a is index 0 (the bridges' own address), past 2^53 (the scripts' Lua numbers), the other
 * family's pool has no such index) or
 * CLI_USAGE (Redis). Whether another house holds the index is the caller's to check. */
int cli_tun_index(cli_ctx *c, br_rc *rc, const char *opt, const gp_ip_addr *a, gp_tun_pools *pools,
                  uint64_t *idx);
/* "100.96.0.7, fd7a:6770::7" (either may be missing: family 0; "" for none) into out[cap]. */
void cli_tun_addrs(char *out, size_t cap, const gp_ip_addr *a4, const gp_ip_addr *a6);
/* The same for index idx of the pools. */
void cli_tun_pool_addrs(char *out, size_t cap, const gp_tun_pools *pools, uint64_t idx);
/* `house list`'s TUN column: the IPv4 address (or IPv6 when only that pool), "-" none, "?"
 * unknown (may not read <p>:tun), "#<index>" without pools. out needs GP_IP_ADDR_STRLEN. */
const char *cli_tun_column(char *out, size_t cap, const gp_reg_house *h);

uint64_t cli_wall_ms(void);
/* ms since the epoch as "2026-11-23T21:30:15Z" (UTC), "-" when negative (unknown). */
void cli_fmt_utc(char *out, size_t cap, long long ms);

#endif
