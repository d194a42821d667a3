/* cli_tun.c — a house's L3 tunnel settings (proto/TUN.md, bridge/store/store_tun.h): `ghostport
 * house tun`, and what `house add`, `list` and `rm` share of it: routes from the command line,
 * an address turned into a pool index (with the refusals an operator reads), addresses printed.
 * I/O side (blocking Redis client via registry.c, stdout). */
#include "cli_cmd.h"
#include "cli_esc.h"
#include "frame.h"

#include <stdio.h>
#include <string.h>

int cli_routes_opt(cli_ctx *c, cli_routes *rt, const char *opt, const char *v) {
    char err[256], text[GP_L3_LIST_MAX + 1];
    rt->given = 1;
    if (gp_tun_routes_add(rt->r, &rt->n, v, err, sizeof err) != 0) {
        cli_err(c, "%s: %s", opt, err);
        return CLI_USAGE;
    }
    if (gp_cidr_list_format(rt->r, rt->n, ",", text, sizeof text) < 0) {
        cli_err(c, "%s: the routes take more than %u bytes as text", opt, GP_L3_LIST_MAX);
        return CLI_USAGE;
    }
    return 0;
}

int cli_tun_addr_parse(cli_ctx *c, const char *opt, const char *s, gp_ip_addr *a) {
    if (gp_ip_addr_parse(s, strlen(s), a) != 0) {
        cli_err(c, "%s: '%s' is not an IPv4 or IPv6 address", opt, s);
        return CLI_USAGE;
    }
    return 0;
}

#define GP_TUN_INDEX_EXACT (1ULL << 53) /* the largest index a Lua number holds exactly */

/* The pool of family f, NULL when the bridges run without one. */
static const gp_cidr *pool_of(const gp_tun_pools *p, int f) {
    return f == 4 ? (p->has4 ? &p->p4 : NULL) : (p->has6 ? &p->p6 : NULL);
}

int cli_tun_index(cli_ctx *c, br_rc *rc, const char *opt, const gp_ip_addr *a, gp_tun_pools *pools,
                  uint64_t *idx) {
    char err[256], at[GP_IP_ADDR_STRLEN], pt[GP_CIDR_STRLEN], ot[GP_CIDR_STRLEN];
    int r = gp_reg_tun_pools_get(rc, c->prefix, pools, err, sizeof err);
    if (r == GP_REG_NOT_FOUND) {
        cli_err(c,
                "no bridge has started with --tun yet, so the pools are unknown; start one "
                "first, or leave %s out: the house gets an address from the pool when it first "
                "asks",
                opt);
        return CLI_FAIL;
    }
    if (r != 0) {
        cli_err(c, "%s", err);
        return r == GP_ERR_INVALID ? CLI_FAIL : CLI_USAGE;
    }
    gp_ip_addr_format(a, at);
    int other_f = a->family == 4 ? 6 : 4;
    const gp_cidr *pool = pool_of(pools, a->family), *other = pool_of(pools, other_f);
    if (!pool) {
        cli_err(c, "%s: %s is an IPv%d address, and the bridges have no IPv%d pool (%s%s)", opt, at,
                a->family, a->family, other ? "only " : "none at all",
                other ? gp_cidr_format(other, ot) : "");
        return CLI_FAIL;
    }
    gp_cidr_format(pool, pt);
    if (gp_pool_index(pool, a, idx) != 0) {
        if (gp_cidr_contains(pool, a))
            cli_err(c, "%s: %s is in the IPv%d pool %s, but is not one of its host addresses", opt,
                    at, a->family, pt);
        else
            cli_err(c, "%s: %s is outside the IPv%d pool %s", opt, at, a->family, pt);
        return CLI_FAIL;
    }
    if (*idx == 0) {
        cli_err(c, "%s: %s is the bridges' own address in the pool %s (index 0), never a house's",
                opt, at, pt);
        return CLI_FAIL;
    }
    if (*idx > GP_TUN_INDEX_EXACT) {
        /* The address book's scripts hold an index as a Lua number (GP_TUN_ALLOC_LUA returns
         * tonumber of it): past 2^53 it would come back as another index, another address. */
        cli_err(c,
                "%s: %s is index %llu of the pool %s: past 2^53, which the address book's "
                "scripts cannot count exactly; choose an address nearer the pool's start",
                opt, at, (unsigned long long)*idx, pt);
        return CLI_FAIL;
    }
    if (other && *idx >= gp_pool_size(other)) {
        cli_err(c,
                "%s: %s is index %llu of the pool %s, and the IPv%d pool %s has no index %llu "
                "(a house has the same index in both pools)",
                opt, at, (unsigned long long)*idx, pt, other_f, gp_cidr_format(other, ot),
                (unsigned long long)*idx);
        return CLI_FAIL;
    }
    return 0;
}

void cli_tun_addrs(char *out, size_t cap, const gp_ip_addr *a4, const gp_ip_addr *a6) {
    char t4[GP_IP_ADDR_STRLEN] = "", t6[GP_IP_ADDR_STRLEN] = "";
    if (a4->family)
        gp_ip_addr_format(a4, t4);
    if (a6->family)
        gp_ip_addr_format(a6, t6);
    snprintf(out, cap, "%s%s%s", t4, t4[0] && t6[0] ? ", " : "", t6);
}

void cli_tun_pool_addrs(char *out, size_t cap, const gp_tun_pools *pools, uint64_t idx) {
    gp_ip_addr a4, a6;
    gp_tun_pool_addrs(pools, idx, &a4, &a6);
    cli_tun_addrs(out, cap, &a4, &a6);
}

const char *cli_tun_column(char *out, size_t cap, const gp_reg_house *h) {
    if (h->tun_has < 0)
        snprintf(out, cap, "?");
    else if (!h->tun_has)
        snprintf(out, cap, "-");
    else if (h->tun4.family)
        gp_ip_addr_format(&h->tun4, out);
    else if (h->tun6.family)
        gp_ip_addr_format(&h->tun6, out);
    else
        snprintf(out, cap, "#%llu", (unsigned long long)h->tun_index);
    return out;
}

/* The house's L3 settings, as `house tun ID` prints them. */
static void print_settings(cli_ctx *c, const gp_reg_house *h) {
    char addrs[2 * GP_IP_ADDR_STRLEN + 4], kt[GP_KEY_MAX];
    char routes[GP_TUN_ROUTES_MAX * (GP_CIDR_STRLEN + 2)];
    printf("house %s, L3 tunnel:\n", h->id);
    cli_tun_addrs(addrs, sizeof addrs, &h->tun4, &h->tun6);
    if (h->tun_has < 0) {
        gp_key_tun(kt, c->prefix);
        printf("  address: unknown (this Redis user may not read %s)\n", kt);
    } else if (!h->tun_has)
        printf("  address: none yet (it gets one from the pools when it first asks)\n");
    else if (addrs[0])
        printf("  address: %s (pool index %llu)\n", addrs, (unsigned long long)h->tun_index);
    else
        printf("  address: pool index %llu (no pools recorded: no bridge has run with --tun)\n",
               (unsigned long long)h->tun_index);
    gp_cidr_list_format(h->tun_routes, h->ntun_routes, ", ", routes, sizeof routes);
    printf("  routes:  %s\n", h->ntun_routes ? routes : "none (it may advertise no subnet)");
}

static int same_routes(const gp_reg_house *h, const gp_cidr *r, size_t n) {
    if (h->ntun_routes != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (h->tun_routes[i].len != r[i].len || !gp_ip_addr_eq(&h->tun_routes[i].addr, &r[i].addr))
            return 0;
    return 1;
}

int cli_house_tun(cli_ctx *c, int argc, char **argv) {
    const char *id = NULL, *addr = NULL;
    cli_routes rt;
    memset(&rt, 0, sizeof rt);
    int no_routes = 0, rv = CLI_USAGE;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt_val(argc, argv, &i, "--addr", NULL, &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            addr = v;
        } else if ((r = cli_opt_val(argc, argv, &i, "--route", NULL, &v)) != 0) {
            if (r < 0 || cli_routes_opt(c, &rt, "--route", v) != 0)
                return CLI_USAGE;
        } else if (strcmp(argv[i], "--no-routes") == 0) {
            no_routes = 1;
        } else if (strcmp(argv[i], "--") == 0) {
            continue;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_err(c, "house tun: unknown option '%s'", argv[i]);
            return cli_usage(c, "house", "tun");
        } else if (!id) {
            id = argv[i];
        } else {
            cli_err(c, "house tun: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!id)
        return cli_usage(c, "house", "tun");
    if (rt.given && no_routes) {
        cli_err(c, "house tun: --route and --no-routes exclude each other");
        return CLI_USAGE;
    }
    if (!gp_house_id_valid(gp_str_c(id))) {
        cli_err(c, "invalid house id '%s'", id);
        return CLI_USAGE;
    }
    int is_auto = addr && strcmp(addr, "auto") == 0;
    gp_ip_addr a;
    if (addr && !is_auto && cli_tun_addr_parse(c, "--addr", addr, &a) != 0)
        return CLI_USAGE;
    br_rc *rc = cli_connect(c);
    if (!rc)
        return CLI_USAGE;
    char err[256], holder[GP_MAX_HOUSE_ID + 1], was[2 * GP_IP_ADDR_STRLEN + 4];
    gp_reg_house h;
    if (gp_reg_get(rc, c->prefix, id, &h, err, sizeof err) != 0) {
        cli_err(c, "%s", err);
        goto done;
    }
    if (!h.registered) {
        cli_err(c, "no house '%s'", id);
        rv = CLI_FAIL;
        goto done;
    }
    cli_tun_addrs(was, sizeof was, &h.tun4, &h.tun6);
    int addr_changed = 0, routes_changed = 0;
    if (addr) {
        gp_tun_pools pools;
        uint64_t idx = 0;
        if (!is_auto && (rv = cli_tun_index(c, rc, "--addr", &a, &pools, &idx)) != 0)
            goto done;
        int r = gp_reg_tun_set(rc, c->prefix, id, idx, holder, err, sizeof err);
        if (r == GP_REG_EXISTS) {
            cli_err(c, "L3 address %s is taken by house %s", addr, holder);
            rv = CLI_FAIL;
            goto done;
        }
        if (r != 0) {
            cli_err(c, "%s", err);
            rv = CLI_USAGE;
            goto done;
        }
        addr_changed = is_auto ? h.tun_has == 1 : !(h.tun_has == 1 && h.tun_index == idx);
        if (is_auto)
            printf("house %s: %s; it gets an address from the pools when it next asks.\n", id,
                   h.tun_has == 1 ? "its L3 address is freed" : "it had no L3 address");
    }
    if (rt.given || no_routes) {
        size_t n = no_routes ? 0 : rt.n;
        int r = gp_reg_tun_routes_set(rc, c->prefix, id, rt.r, n, err, sizeof err);
        if (r != 0) {
            cli_err(c, "%s", err);
            rv = r == GP_REG_NOT_FOUND || r == GP_REG_EXISTS ? CLI_FAIL : CLI_USAGE;
            goto done;
        }
        routes_changed = !same_routes(&h, rt.r, n);
    }
    int connected = h.st.connected;
    char bridge[sizeof h.st.bridge];
    snprintf(bridge, sizeof bridge, "%s", h.st.bridge);
    if ((addr || rt.given || no_routes) &&
        gp_reg_get(rc, c->prefix, id, &h, err, sizeof err) != 0) {
        cli_err(c, "%s", err);
        goto done;
    }
    print_settings(c, &h);
    if (connected && (addr_changed || routes_changed)) {
        char eb[4 * sizeof bridge];
        printf("note: the house is connected to bridge %s: it keeps its current L3 address and "
               "routes until it reconnects.\n",
               cli_esc_str(eb, sizeof eb, bridge));
        if (addr_changed && was[0])
            printf("note: its previous address (%s) is free meanwhile: a house that asks for one "
                   "now may get it.\n",
                   was);
    }
    rv = CLI_OK;
done:
    br_rc_free(rc);
    return rv;
}
