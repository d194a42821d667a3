/* cli_house.c — `ghostport house add|list|rm|disable|enable`: managing the house registry
 * in Redis (`house tun`, a house's L3 tunnel settings: cli_tun.c).
 * I/O side (blocking Redis client via registry.c, stdout). */
#include "cli_cmd.h"
#include "cli_esc.h"
#include "cli_top.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_house_add(cli_ctx *c, int argc, char **argv) {
    const char *id = NULL, *tun_addr = NULL;
    int force = 0, quiet = 0, rv = CLI_USAGE;
    json_t *labels = json_object();
    br_rc *rc = NULL;
    cli_routes rt;
    memset(&rt, 0, sizeof rt);
    if (!labels)
        return CLI_USAGE;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt_val(argc, argv, &i, "--tun-addr", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            tun_addr = v;
            continue;
        }
        if ((r = cli_opt_val(argc, argv, &i, "--tun-route", NULL, &v)) != 0) {
            if (r < 0 || cli_routes_opt(c, &rt, "--tun-route", v) != 0)
                goto done;
            continue;
        }
        r = cli_opt_val(argc, argv, &i, "--label", "-l", &v);
        if (r < 0)
            goto done;
        if (r > 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                cli_err(c, "--label wants KEY=VALUE, got '%s'", v);
                goto done;
            }
            char key[128];
            size_t kl = (size_t)(eq - v);
            if (kl >= sizeof key) {
                cli_err(c, "label key too long");
                goto done;
            }
            memcpy(key, v, kl);
            key[kl] = '\0';
            json_t *s = json_string(eq + 1);
            if (!s) {
                cli_err(c, "label value must be UTF-8: '%s'", v);
                goto done;
            }
            json_object_set_new(labels, key, s);
        } else if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0) {
            force = 1;
        } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
            quiet = 1;
        } else if (strcmp(argv[i], "--") == 0) {
            continue;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_err(c, "house add: unknown option '%s'", argv[i]);
            cli_usage(c, "house", "add");
            goto done;
        } else if (!id) {
            id = argv[i];
        } else {
            cli_err(c, "house add: unexpected argument '%s'", argv[i]);
            goto done;
        }
    }
    if (!id) {
        cli_usage(c, "house", "add");
        goto done;
    }
    if (!gp_house_id_valid(gp_str_c(id))) {
        cli_err(c, "invalid house id '%s': use 1-%d characters of A-Z a-z 0-9 _ . -", id,
                GP_MAX_HOUSE_ID);
        goto done;
    }
    gp_ip_addr ta;
    if (tun_addr && cli_tun_addr_parse(c, "--tun-addr", tun_addr, &ta) != 0)
        goto done;
    uint8_t mk[32];
    int have_mk;
    if (cli_master_key(c, mk, &have_mk) != 0)
        goto done;
    if (!(rc = cli_connect(c)))
        goto done;

    /* The L3 address first, checked before anything is written: the pools, the index it
     * means, nobody else's. (Claimed after the house is added: a race lost there is said.) */
    gp_tun_pools pools;
    uint64_t tidx = 0;
    char err[256], holder[GP_MAX_HOUSE_ID + 1];
    if (tun_addr) {
        if ((rv = cli_tun_index(c, rc, "--tun-addr", &ta, &pools, &tidx)) != 0)
            goto done;
        rv = CLI_USAGE;
        if (gp_reg_tun_holder(rc, c->prefix, tidx, holder, err, sizeof err) != 0) {
            cli_err(c, "%s", err);
            goto done;
        }
        if (holder[0] && strcmp(holder, id) != 0) {
            cli_err(c, "L3 address %s is taken by house %s", tun_addr, holder);
            rv = CLI_FAIL;
            goto done;
        }
    }

    uint8_t secret[GP_SECRET_LEN];
    randombytes_buf(secret, sizeof secret);
    char *lj = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    int r = gp_reg_add(rc, c->prefix, id, secret, have_mk ? mk : NULL, lj, cli_wall_ms(), force,
                       err, sizeof err);
    free(lj);
    if (r != 0) {
        cli_err(c, "%s", err);
        rv = r == GP_REG_EXISTS ? CLI_FAIL : CLI_USAGE;
        sodium_memzero(secret, sizeof secret);
        goto done;
    }
    char hex[GP_SECRET_HEX_LEN + 1];
    gp_secret_to_hex(secret, hex);
    sodium_memzero(secret, sizeof secret);
    /* The house is registered: its secret is printed whatever follows. A failure of its L3
     * settings is said after it (exit status 1). */
    char routes_err[300] = "", addr_err[300] = "";
    if (rt.given && gp_reg_tun_routes_set(rc, c->prefix, id, rt.r, rt.n, err, sizeof err) != 0)
        snprintf(routes_err, sizeof routes_err, "its L3 routes were not stored: %s", err);
    if (tun_addr) {
        r = gp_reg_tun_set(rc, c->prefix, id, tidx, holder, err, sizeof err);
        if (r == GP_REG_EXISTS)
            snprintf(addr_err, sizeof addr_err, "L3 address %s was taken by house %s meanwhile",
                     tun_addr, holder);
        else if (r != 0)
            snprintf(addr_err, sizeof addr_err, "its L3 address was not set: %s", err);
    }
    char addrs[2 * GP_IP_ADDR_STRLEN + 4], routes[GP_TUN_ROUTES_MAX * (GP_CIDR_STRLEN + 2)];
    if (tun_addr)
        cli_tun_pool_addrs(addrs, sizeof addrs, &pools, tidx);
    gp_cidr_list_format(rt.r, rt.n, ", ", routes, sizeof routes);
    if (quiet) {
        printf("%s\n", hex);
    } else {
        printf("house %s registered%s%s.\n"
               "secret: %s\n",
               id, force ? " (secret replaced)" : "", have_mk ? " (secret sealed at rest)" : "",
               hex);
        if (tun_addr && !addr_err[0])
            printf("L3 addresses: %s (pool index %llu)\n", addrs, (unsigned long long)tidx);
        if (rt.given && !routes_err[0])
            printf("L3 routes it may advertise: %s\n", rt.n ? routes : "none");
        /* The secret goes into a file, never onto a command line (the shell's history,
         * ps): pasted into cat, or written by `house add --quiet > FILE`. */
        printf("\nThis is the only time the secret is shown: keep it on the house's machine, in\n"
               "a file only root reads (not on a command line: shells keep history). There:\n"
               "  install -d -m 750 /etc/ghostport\n"
               "  (umask 077; cat > /etc/ghostport/house.secret)    # paste the secret, Ctrl-D\n"
               "  ghostport-house --id %s --secret-file /etc/ghostport/house.secret \\\n"
               "      --bridge wss://BRIDGE_HOST:8443/ --upstream http://127.0.0.1:8080\n"
               "(--quiet prints the secret alone, for a file: "
               "(umask 077; ghostport house add %s --quiet > %s.secret))\n",
               id, id, id);
    }
    sodium_memzero(hex, sizeof hex);
    const char *errs[2] = {routes_err, addr_err};
    for (int k = 0; k < 2; k++)
        if (errs[k][0])
            cli_err(c, "house %s is registered, but %s (see `ghostport house tun %s`)", id, errs[k],
                    id);
    if (routes_err[0] || addr_err[0]) {
        rv = CLI_FAIL;
        goto done;
    }
    rv = CLI_OK;
done:
    json_decref(labels);
    if (rc)
        br_rc_free(rc);
    return rv;
}

static void fmt_age(char *out, size_t cap, long long now, long long ms) {
    if (ms < 0 || now < 0) {
        snprintf(out, cap, "-");
        return;
    }
    long long d = now - ms;
    if (d < 0)
        d = 0;
    if (d < 10000)
        snprintf(out, cap, "%.1fs ago", (double)d / 1000.0);
    else if (d < 3600000)
        snprintf(out, cap, "%llds ago", d / 1000);
    else
        snprintf(out, cap, "%lldh ago", d / 3600000);
}

int cli_house_list(cli_ctx *c, int argc, char **argv) {
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "--") != 0) {
            cli_err(c, "house list: unexpected argument '%s'", argv[i]);
            return cli_usage(c, "house", "list");
        }
    }
    br_rc *rc = cli_connect(c);
    if (!rc)
        return CLI_USAGE;
    gp_reg_house *hs;
    size_t n;
    char err[256];
    int r = gp_reg_list(rc, c->prefix, &hs, &n, err, sizeof err);
    long long now = gp_reg_time_ms(rc);
    br_rc_free(rc);
    if (r != 0) {
        cli_err(c, "%s", err);
        return CLI_USAGE;
    }
    /* The TUN column is as wide as its widest address (an IPv6 one may take 39). */
    int tunw = 3;
    for (size_t i = 0; i < n; i++) {
        char t[GP_IP_ADDR_STRLEN];
        int w = (int)strlen(cli_tun_column(t, sizeof t, &hs[i]));
        tunw = w > tunw ? w : tunw;
    }
    if (!as_json)
        printf("%-20s %-9s %-20s %-9s %-21s %-10s %-7s %-21s %-*s %s\n", "ID", "STATE", "BRIDGE",
               "TRANSPORT", "SINCE", "LAST_SEEN", "RTT", "CREATED", tunw, "TUN", "LABELS");
    for (size_t i = 0; i < n; i++) {
        const gp_reg_house *h = &hs[i];
        if (as_json) {
            json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:I}", "id", h->id, "registered",
                                  h->registered, "connected", h->st.connected, "disabled",
                                  h->disabled, "created", (json_int_t)h->created_ms);
            json_error_t je;
            json_t *labels = json_loads(h->labels[0] ? h->labels : "{}", 0, &je);
            json_object_set_new(o, "labels", labels ? labels : json_object());
            /* online / offline / disabled; while offline, since when (null: unknown) */
            json_object_set_new(o, "state", json_string(gp_reg_house_state(h)));
            long long off = gp_reg_offline_since(h);
            json_object_set_new(o, "offline_since_ms",
                                h->st.connected || off < 0 ? json_null() : json_integer(off));
            json_object_set_new(o, "last_bridge",
                                h->last_bridge[0] ? json_string(h->last_bridge) : json_null());
            if (h->st.connected) {
                json_object_set_new(o, "bridge", json_string(h->st.bridge));
                json_object_set_new(o, "transport", json_string(h->st.transport));
                json_object_set_new(o, "addr", json_string(h->st.addr));
                json_object_set_new(o, "since", json_integer(h->st.since_ms));
                json_object_set_new(o, "last_seen", json_integer(h->st.last_seen_ms));
                json_object_set_new(o, "rtt_ms", json_real(h->st.rtt_ms));
                json_object_set_new(o, "epoch", json_integer(h->st.epoch));
            }
            json_t *ta = json_array(), *tr = json_array();
            const gp_ip_addr *as[2] = {&h->tun4, &h->tun6};
            for (int k = 0; k < 2; k++)
                if (as[k]->family) {
                    char t[GP_IP_ADDR_STRLEN];
                    json_array_append_new(ta, json_string(gp_ip_addr_format(as[k], t)));
                }
            for (size_t k = 0; k < h->ntun_routes; k++) {
                char t[GP_CIDR_STRLEN];
                json_array_append_new(tr, json_string(gp_cidr_format(&h->tun_routes[k], t)));
            }
            json_object_set_new(o, "tun_addr", ta);
            json_object_set_new(o, "tun_routes", tr);
            /* ASCII only: a C1 control in a label (valid JSON as raw UTF-8) as \u009d. */
            char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(o);
            continue;
        }
        char since[32], seen[32], created[32], rtt[32];
        cli_fmt_utc(created, sizeof created, h->created_ms);
        snprintf(rtt, sizeof rtt, "-");
        if (h->st.connected) {
            cli_fmt_utc(since, sizeof since, h->st.since_ms);
            fmt_age(seen, sizeof seen, now, h->st.last_seen_ms);
            if (h->st.rtt_ms >= 0)
                top_fmt_ms(rtt, sizeof rtt, h->st.rtt_ms);
        } else {
            /* Offline since the last time a bridge heard from it ("-": none recorded). */
            cli_fmt_utc(since, sizeof since, gp_reg_offline_since(h));
            fmt_age(seen, sizeof seen, now, h->last_seen_ms);
        }
        /* Disabled wins: a house still connected is about to be closed by its bridge. */
        const char *state = gp_reg_house_state(h);
        /* What bridges and `house add` wrote, printed with control characters escaped. The
         * bridge of an offline house: the one that held it last, in parentheses. */
        char bridge[4 * sizeof h->st.bridge + 2], transport[4 * sizeof h->st.transport];
        if (h->st.connected)
            cli_esc_str(bridge, sizeof bridge, h->st.bridge);
        else if (h->last_bridge[0]) {
            char lb[4 * sizeof h->last_bridge];
            snprintf(bridge, sizeof bridge, "(%s)", cli_esc_str(lb, sizeof lb, h->last_bridge));
        } else
            snprintf(bridge, sizeof bridge, "-");
        char *labels = cli_esc_dup(h->labels, strlen(h->labels));
        char tun[GP_IP_ADDR_STRLEN];
        printf("%-20s %-9s %-20s %-9s %-21s %-10s %-7s %-21s %-*s %s\n", h->id, state, bridge,
               h->st.connected && h->st.transport[0]
                   ? cli_esc_str(transport, sizeof transport, h->st.transport)
                   : "-",
               since, seen, rtt, h->registered ? created : "(missing)", tunw,
               cli_tun_column(tun, sizeof tun, h),
               labels && h->labels[0] && strcmp(h->labels, "{}") != 0 ? labels : "-");
        free(labels);
    }
    free(hs);
    return CLI_OK;
}

/* `house <sub> [--purge] ID` (purge NULL: the subcommand takes no option): the house id,
 * checked, and a connection to Redis. NULL, with the exit code in *rv, when the arguments are
 * wrong or Redis cannot be reached. */
static br_rc *house_id_connect(cli_ctx *c, const char *sub, int argc, char **argv, const char **idp,
                               int *purge, int *rv) {
    const char *id = NULL;
    *rv = CLI_USAGE;
    for (int i = 0; i < argc; i++) {
        if (purge && strcmp(argv[i], "--purge") == 0)
            *purge = 1;
        else if (strcmp(argv[i], "--") == 0)
            continue;
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_err(c, "house %s: unknown option '%s'", sub, argv[i]);
            *rv = cli_usage(c, "house", sub);
            return NULL;
        } else if (!id)
            id = argv[i];
        else {
            cli_err(c, "house %s: unexpected argument '%s'", sub, argv[i]);
            return NULL;
        }
    }
    if (!id) {
        *rv = cli_usage(c, "house", sub);
        return NULL;
    }
    if (!gp_house_id_valid(gp_str_c(id))) {
        cli_err(c, "invalid house id '%s'", id);
        return NULL;
    }
    *idp = id;
    return cli_connect(c);
}

int cli_house_rm(cli_ctx *c, int argc, char **argv) {
    const char *id = NULL;
    int purge = 0, rv;
    br_rc *rc = house_id_connect(c, "rm", argc, argv, &id, &purge, &rv);
    if (!rc)
        return rv;
    gp_reg_house h;
    char err[256], addrs[2 * GP_IP_ADDR_STRLEN + 4] = "";
    int connected = gp_reg_get(rc, c->prefix, id, &h, err, sizeof err) == 0 && h.st.connected;
    cli_tun_addrs(addrs, sizeof addrs, &h.tun4, &h.tun6);
    long long xlen = 0;
    int tun_freed = 0;
    uint64_t tun_index = 0;
    int r = gp_reg_rm(rc, c->prefix, id, purge, &xlen, &tun_freed, &tun_index, err, sizeof err);
    long long nstream = 0;
    if (r == 0 && purge && gp_reg_rm_streams(rc, c->prefix, id, &nstream, err, sizeof err) != 0) {
        br_rc_free(rc);
        cli_err(c,
                "house %s removed, but its TCP streams' keys were not: %s (they expire on "
                "their own)",
                id, err);
        return CLI_FAIL;
    }
    br_rc_free(rc);
    if (r == GP_REG_NOT_FOUND) {
        cli_err(c, "%s", err);
        return CLI_FAIL;
    }
    if (r != 0) {
        cli_err(c, "%s", err);
        return CLI_USAGE;
    }
    char kreq[GP_KEY_MAX];
    gp_key_req(kreq, c->prefix, id);
    printf("house %s removed (registry entry, live state, epoch).\n", id);
    if (purge)
        printf("request stream %s deleted (%lld entries), and %lld keys of TCP streams.\n", kreq,
               xlen, nstream);
    else if (xlen > 0)
        printf("request stream %s kept: %lld entries, not served while the house is not "
               "registered (`ghostport house rm %s --purge` deletes it).\n",
               kreq, xlen, id);
    else
        printf("request stream %s kept (empty; --purge deletes it with its consumer group).\n",
               kreq);
    if (tun_freed) {
        /* What it was when read above (a bridge may have given it one since: the index says). */
        if (h.tun_has == 1 && h.tun_index == tun_index && addrs[0])
            printf("L3 address %s freed (pool index %llu): another house may get it.\n", addrs,
                   (unsigned long long)tun_index);
        else
            printf("L3 address of pool index %llu freed: another house may get it.\n",
                   (unsigned long long)tun_index);
    }
    if (connected)
        printf("note: the house is connected to bridge %s; it stays connected until it "
               "reconnects, and is then refused.\n",
               h.st.bridge);
    return CLI_OK;
}

static int set_disabled(cli_ctx *c, int argc, char **argv, int disabled) {
    const char *id = NULL;
    int rv;
    br_rc *rc = house_id_connect(c, disabled ? "disable" : "enable", argc, argv, &id, NULL, &rv);
    if (!rc)
        return rv;
    char err[256];
    int r = gp_reg_set_disabled(rc, c->prefix, id, disabled, err, sizeof err);
    br_rc_free(rc);
    if (r != 0) {
        cli_err(c, "%s", err);
        return r == GP_REG_NOT_FOUND ? CLI_FAIL : CLI_USAGE;
    }
    if (disabled)
        printf("house %s disabled: a bridge holding it closes it, and it is refused until "
               "`ghostport house enable %s`.\n",
               id, id);
    else
        printf("house %s enabled: it is let in at its next connection attempt.\n", id);
    return CLI_OK;
}

int cli_house_disable(cli_ctx *c, int argc, char **argv) {
    return set_disabled(c, argc, argv, 1);
}

int cli_house_enable(cli_ctx *c, int argc, char **argv) {
    return set_disabled(c, argc, argv, 0);
}
