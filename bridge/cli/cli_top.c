/* cli_top.c — `ghostport top`: options, taking snapshots from Redis, and the non-interactive
 * outputs (--once: plain text, --json: one JSON document; --state: rates against the
 * previous run). The live view is cli_top_tui.c; the model (rates, sorting, formats)
 * cli_top_model.c. I/O side: blocking Redis client, stdout, the state file. */
#include "cli_top.h"
#include "cli_esc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int top_fetch(br_rc *rc, const char *prefix, top_snap *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->now_ms = gp_reg_time_ms(rc);
    if (s->now_ms < 0) {
        snprintf(err, errlen, "%s", br_rc_error(rc)[0] ? br_rc_error(rc) : "redis: TIME failed");
        return GP_REG_REDIS;
    }
    gp_reg_house *hs;
    size_t nh;
    int rv = gp_reg_list(rc, prefix, &hs, &nh, err, errlen);
    if (rv != 0)
        return rv;
    gp_reg_bstats *bs;
    size_t nb;
    rv = gp_reg_bstats_list(rc, prefix, &bs, &nb, err, errlen);
    if (rv != 0) {
        free(hs);
        return rv;
    }
    s->houses = calloc(nh ? nh : 1, sizeof *s->houses);
    s->bridges = calloc(nb ? nb : 1, sizeof *s->bridges);
    if (!s->houses || !s->bridges) {
        free(hs);
        free(bs);
        top_snap_clear(s);
        snprintf(err, errlen, "out of memory");
        return GP_ERR_NOMEM;
    }
    for (size_t i = 0; i < nh; i++)
        s->houses[i] = (top_house){.h = hs[i], .r = top_rates_unknown};
    for (size_t i = 0; i < nb; i++)
        s->bridges[i] = (top_bridge){.s = bs[i], .r = top_rates_unknown};
    s->nhouses = nh;
    s->nbridges = nb;
    free(hs);
    free(bs);
    return 0;
}

/* --- JSON ------------------------------------------------------------------------------- */

static json_t *jint(long long v) {
    return v < 0 ? json_null() : json_integer(v);
}
static json_t *jreal(double v) {
    return v < 0 ? json_null() : json_real(v);
}
static json_t *jstr(const char *s) {
    return s && *s ? json_string(s) : json_null();
}

/* The rates as --json names them (bytes/s of the tunnel as bits/s: scale 8), bridges having
 * the first BRIDGE_RATES only; and the house's counters they come from, as its state hash
 * names them (README.md's key layout). --state reads both back. */
static const struct {
    const char *rate, *counter;
    double scale;
} RATES[TOP_NRATES] = {
    [TOP_R_REQ] = {"req_per_s", "req_total", 1},
    [TOP_R_ERR] = {"err_per_s", "err_total", 1},
    [TOP_R_IN] = {"bytes_in_per_s", "bytes_in", 1},
    [TOP_R_OUT] = {"bytes_out_per_s", "bytes_out", 1},
    [TOP_R_FEC] = {"fec_repaired_per_s", "fec_repaired", 1},
    [TOP_R_TUN_PKTS_IN] = {"tun_pkts_in_per_s", "tun_pkts_in", 1},
    [TOP_R_TUN_PKTS_OUT] = {"tun_pkts_out_per_s", "tun_pkts_out", 1},
    [TOP_R_TUN_BYTES_IN] = {"tun_bits_in_per_s", "tun_bytes_in", 8},
    [TOP_R_TUN_BYTES_OUT] = {"tun_bits_out_per_s", "tun_bytes_out", 8},
};
#define BRIDGE_RATES (TOP_R_OUT + 1)

static void set_rates(json_t *o, const top_rates *r, int n) {
    for (int i = 0; i < n; i++)
        json_object_set_new(o, RATES[i].rate, jreal(r->v[i] < 0 ? -1 : r->v[i] * RATES[i].scale));
}

/* A comma-separated list ("a,b", as top_tun_addr and tunbook.h write them) as a JSON array. */
static json_t *jlist(const char *s) {
    json_t *a = json_array();
    while (s && *s) {
        size_t n = strcspn(s, ",");
        if (n)
            json_array_append_new(a, json_stringn(s, n));
        s += n + (s[n] == ',');
    }
    return a;
}

/* A bridge as `top --json` shows it: its stats under the names of its stats hash. */
static json_t *bridge_json(const top_bridge *b) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(b->s.id)); /* a string even when empty */
    for (size_t i = 0; i < gp_reg_bstats_nfields; i++) {
        const gp_hash_field *f = &gp_reg_bstats_fields[i];
        const char *at = (const char *)&b->s + f->off;
        if (json_object_get(o, f->name))
            continue;
        json_object_set_new(o, f->name,
                            f->kind == GP_HF_LL    ? jint(*(const long long *)at)
                            : f->kind == GP_HF_NUM ? jreal(*(const double *)at)
                                                   : jstr(at));
    }
    set_rates(o, &b->r, BRIDGE_RATES);
    return o;
}

static json_t *house_json(const top_house *t) {
    const gp_reg_house *h = &t->h;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(h->id));
    json_error_t je;
    json_t *labels = json_loads(h->labels[0] ? h->labels : "{}", 0, &je);
    json_object_set_new(o, "labels", labels ? labels : json_object());
    json_object_set_new(o, "created_ms", jint(h->created_ms));
    json_object_set_new(o, "registered", json_boolean(h->registered));
    json_object_set_new(o, "disabled", json_boolean(h->disabled));
    json_object_set_new(o, "connected", json_boolean(h->st.connected));
    /* online / offline / disabled; while offline, since when and where it was last */
    json_object_set_new(o, "state", json_string(gp_reg_house_state(h)));
    json_object_set_new(o, "offline_since_ms", jint(gp_reg_offline_since(h)));
    json_object_set_new(o, "last_bridge", h->last_bridge[0] ? jstr(h->last_bridge) : json_null());
    int c = h->st.connected;
    json_object_set_new(o, "bridge", c ? jstr(h->st.bridge) : json_null());
    json_object_set_new(o, "transport", c ? jstr(h->st.transport) : json_null());
    json_object_set_new(o, "addr", c ? jstr(h->st.addr) : json_null());
    json_object_set_new(o, "since_ms", jint(c ? h->st.since_ms : -1));
    json_object_set_new(o, "last_seen_ms", jint(c ? h->st.last_seen_ms : -1));
    json_object_set_new(o, "epoch", jint(c ? h->st.epoch : -1));
    json_object_set_new(o, "rtt_ms", jreal(c ? h->st.rtt_ms : -1));
    json_object_set_new(o, "loss_pct", jreal(c ? h->st.loss_pct : -1));
    json_object_set_new(o, "ts_ms", jint(c ? h->st.ts_ms : -1));
    json_object_set_new(o, "req_total", jint(c ? h->st.req_total : -1));
    json_object_set_new(o, "err_total", jint(c ? h->st.err_total : -1));
    json_object_set_new(o, "bytes_in", jint(c ? h->st.bytes_in : -1));
    json_object_set_new(o, "bytes_out", jint(c ? h->st.bytes_out : -1));
    /* The L3 tunnel: its addresses (those routed now when tun_up, else the registry's), the
     * routes the registry allows it, the grant's counters (null without one). */
    char addr[2 * GP_IP_ADDR_STRLEN], routes[GP_TUN_ROUTES_MAX * GP_CIDR_STRLEN];
    int up = top_tun_addr(h, addr, sizeof addr);
    json_object_set_new(o, "tun_up", json_boolean(up));
    json_object_set_new(o, "tun_addr", jlist(addr));
    gp_cidr_list_format(h->tun_routes, h->ntun_routes, ",", routes, sizeof routes);
    json_object_set_new(o, "tun_routes", jlist(routes));
    long long cn[TOP_NRATES];
    top_house_counters(h, cn);
    for (int i = TOP_R_FEC; i < TOP_NRATES; i++)
        json_object_set_new(o, RATES[i].counter, jint(cn[i]));
    json_object_set_new(o, "tun_drops", jint(c ? h->st.tun_drops : -1));
    set_rates(o, &t->r, TOP_NRATES);
    return o;
}

static json_t *recent_json(const gp_reg_recent_req *q, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:o, s:s, s:s, s:s, s:o, s:o, s:s}", "ts_ms", jint(q[i].ts_ms), "id",
                         q[i].id, "method", q[i].method, "path", q[i].path, "status",
                         q[i].status < 0 ? json_null() : json_integer(q[i].status), "ms",
                         jint(q[i].ms), "error", q[i].error));
    return a;
}

/* The document --json prints (and --state saves, with every house, idx NULL). */
static json_t *snap_json(const top_snap *s, long long interval_ms, const size_t *idx, size_t n,
                         const gp_reg_recent_req *recent, size_t nrecent) {
    json_t *o = json_object(), *bs = json_array(), *hs = json_array();
    json_object_set_new(o, "now_ms", json_integer(s->now_ms));
    json_object_set_new(o, "interval_ms", jint(interval_ms));
    for (size_t i = 0; i < s->nbridges; i++)
        json_array_append_new(bs, bridge_json(&s->bridges[i]));
    for (size_t i = 0; i < (idx ? n : s->nhouses); i++) {
        json_t *h = house_json(&s->houses[idx ? idx[i] : i]);
        if (recent)
            json_object_set_new(h, "recent", recent_json(recent, nrecent));
        json_array_append_new(hs, h);
    }
    json_object_set_new(o, "bridges", bs);
    json_object_set_new(o, "houses", hs);
    return o;
}

static long long jget_ll(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}
static double jget_d(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1;
}
static void jget_s(char *out, size_t cap, const json_t *o, const char *k) {
    const char *v = json_string_value(json_object_get(o, k));
    snprintf(out, cap, "%s", v ? v : "");
}
static void jget_rates(top_rates *r, const json_t *o, int n) {
    *r = top_rates_unknown;
    for (int i = 0; i < n; i++) {
        double v = jget_d(o, RATES[i].rate);
        r->v[i] = v < 0 ? -1 : v / RATES[i].scale;
    }
}

static int cmp_b(const void *a, const void *b) {
    return strcmp(((const top_bridge *)a)->s.id, ((const top_bridge *)b)->s.id);
}
static int cmp_h(const void *a, const void *b) {
    return strcmp(((const top_house *)a)->h.id, ((const top_house *)b)->h.id);
}

/* Reads a snapshot saved by --state (what rates need: ids, runs, counters, stamps). 0, or -1
 * if the file is missing or not such a document. */
static int state_load(const char *path, top_snap *s) {
    memset(s, 0, sizeof *s);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    const json_t *bs = json_object_get(o, "bridges"), *hs = json_object_get(o, "houses");
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, "now_ms")) ||
        !json_is_array(bs) || !json_is_array(hs)) {
        json_decref(o);
        return -1;
    }
    s->now_ms = json_integer_value(json_object_get(o, "now_ms"));
    s->bridges = calloc(json_array_size(bs) + 1, sizeof *s->bridges);
    s->houses = calloc(json_array_size(hs) + 1, sizeof *s->houses);
    if (!s->bridges || !s->houses) {
        json_decref(o);
        top_snap_clear(s);
        return -1;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(bs, i, e) {
        top_bridge *b = &s->bridges[s->nbridges++];
        jget_s(b->s.id, sizeof b->s.id, e, "id");
        b->s.pid = jget_ll(e, "pid");
        b->s.since_ms = jget_ll(e, "since_ms");
        b->s.ts_ms = jget_ll(e, "ts_ms");
        b->s.req_total = jget_ll(e, "req_total");
        b->s.err_total = jget_ll(e, "err_total");
        b->s.bytes_in = jget_ll(e, "bytes_in");
        b->s.bytes_out = jget_ll(e, "bytes_out");
        jget_rates(&b->r, e, BRIDGE_RATES);
    }
    json_array_foreach(hs, i, e) {
        top_house *h = &s->houses[s->nhouses++];
        jget_s(h->h.id, sizeof h->h.id, e, "id");
        jget_s(h->h.st.bridge, sizeof h->h.st.bridge, e, "bridge");
        h->h.st.connected = json_is_true(json_object_get(e, "connected"));
        h->h.st.epoch = jget_ll(e, "epoch");
        h->h.st.since_ms = jget_ll(e, "since_ms");
        h->h.st.ts_ms = jget_ll(e, "ts_ms");
        long long *cn[TOP_NRATES] = {
            [TOP_R_REQ] = &h->h.st.req_total,
            [TOP_R_ERR] = &h->h.st.err_total,
            [TOP_R_IN] = &h->h.st.bytes_in,
            [TOP_R_OUT] = &h->h.st.bytes_out,
            [TOP_R_FEC] = &h->h.st.fec_repaired,
            [TOP_R_TUN_PKTS_IN] = &h->h.st.tun_pkts_in,
            [TOP_R_TUN_PKTS_OUT] = &h->h.st.tun_pkts_out,
            [TOP_R_TUN_BYTES_IN] = &h->h.st.tun_bytes_in,
            [TOP_R_TUN_BYTES_OUT] = &h->h.st.tun_bytes_out,
        };
        for (int k = 0; k < TOP_NRATES; k++)
            *cn[k] = jget_ll(e, RATES[k].counter);
        jget_rates(&h->r, e, TOP_NRATES);
    }
    json_decref(o);
    qsort(s->bridges, s->nbridges, sizeof *s->bridges, cmp_b);
    qsort(s->houses, s->nhouses, sizeof *s->houses, cmp_h);
    return 0;
}

/* Writes the whole snapshot to path, atomically (temporary file, then rename). */
static int state_save(cli_ctx *c, const char *path, const top_snap *s) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        cli_err(c, "--state: path too long");
        return -1;
    }
    json_t *o = snap_json(s, -1, NULL, 0, NULL, 0);
    int rv = json_dump_file(o, tmp, JSON_COMPACT | JSON_REAL_PRECISION(17)) == 0 &&
                     rename(tmp, path) == 0
                 ? 0
                 : -1;
    json_decref(o);
    if (rv != 0) {
        cli_err(c, "--state: cannot write %s: %s", path, strerror(errno));
        remove(tmp);
    }
    return rv;
}

/* --- plain text ------------------------------------------------------------------------- */

static void print_bridges(const top_snap *s) {
    int wid = 6, whost = 4;
    for (size_t i = 0; i < s->nbridges; i++) {
        int l = (int)cli_esc(NULL, 0, s->bridges[i].s.id, strlen(s->bridges[i].s.id)),
            m = (int)cli_esc(NULL, 0, s->bridges[i].s.host, strlen(s->bridges[i].s.host));
        wid = l > wid ? l : wid;
        whost = m > whost ? m : whost;
    }
    printf("BRIDGES %zu\n", s->nbridges);
    if (!s->nbridges) {
        printf("  (no bridge has published its stats in the last 5 s)\n");
        return;
    }
    printf("%-*s %-*s %8s %7s %6s %7s %7s %7s %7s %9s\n", wid, "ID", whost, "HOST", "PID", "UP",
           "HOUSES", "REQ/s", "ERR/s", "IN/s", "OUT/s", "REDIS_RTT");
    for (size_t i = 0; i < s->nbridges; i++) {
        const top_bridge *b = &s->bridges[i];
        char up[16], req[16], er[16], in[16], out[16], rtt[16], houses[24], pid[24];
        char id[4 * sizeof b->s.id], host[4 * sizeof b->s.host]; /* escaped */
        top_fmt_age(up, sizeof up, s->now_ms, b->s.since_ms);
        top_fmt_rate(req, sizeof req, b->r.req);
        top_fmt_rate(er, sizeof er, b->r.err);
        top_fmt_bytes(in, sizeof in, b->r.in);
        top_fmt_bytes(out, sizeof out, b->r.out);
        top_fmt_ms(rtt, sizeof rtt, b->s.redis_rtt_ms);
        snprintf(houses, sizeof houses, b->s.houses < 0 ? "-" : "%lld", b->s.houses);
        snprintf(pid, sizeof pid, b->s.pid < 0 ? "-" : "%lld", b->s.pid);
        printf("%-*s %-*s %8s %7s %6s %7s %7s %7s %7s %9s\n", wid,
               cli_esc_str(id, sizeof id, b->s.id), whost,
               b->s.host[0] ? cli_esc_str(host, sizeof host, b->s.host) : "-", pid, up, houses, req,
               er, in, out, rtt);
    }
}

/* The BRIDGE cell of house h: the bridge holding it, or offline "(the one that held it last)",
 * escaped, into out[cap]. */
static const char *bridge_cell(char *out, size_t cap, const gp_reg_house *h) {
    char e[4 * sizeof h->last_bridge];
    if (h->st.connected && h->st.bridge[0])
        return cli_esc_str(out, cap, h->st.bridge);
    if (!h->st.connected && h->last_bridge[0])
        snprintf(out, cap, "(%s)", cli_esc_str(e, sizeof e, h->last_bridge));
    else
        snprintf(out, cap, "-");
    return out;
}

static void print_houses(const top_snap *s, const size_t *idx, size_t n) {
    size_t on, off, dis;
    int wid = 2, wbr = 6, wtun = 3;
    int tun = top_has_tun(s);
    top_count_states(s, &on, &off, &dis);
    for (size_t i = 0; i < n; i++) {
        const gp_reg_house *h = &s->houses[idx[i]].h;
        char a[2 * GP_IP_ADDR_STRLEN], b[4 * sizeof h->last_bridge + 4];
        int l = (int)strlen(h->id), m = (int)strlen(bridge_cell(b, sizeof b, h));
        top_tun_addr(h, a, sizeof a);
        int k = (int)strcspn(a, ",");
        wid = l > wid ? l : wid;
        wbr = m > wbr ? m : wbr;
        wtun = k > wtun ? k : wtun;
    }
    printf("HOUSES %zu (%zu online, %zu offline, %zu disabled)", s->nhouses, on, off, dis);
    if (n != s->nhouses)
        printf(", %zu shown", n);
    printf("\n%-*s %-*s %-9s %7s %9s %7s %6s %7s %7s %s", wid, "ID", wbr, "BRIDGE", "TRANSPORT",
           "SINCE", "LAST_SEEN", "RTT", "LOSS", "REQ/s", "ERR/s", "STATE");
    /* The L3 tunnel's columns: its (first) address, packets/s and bits/s in/out, FEC/s. */
    if (tun)
        printf(" %-*s %13s %13s %6s", wtun, "TUN", "TUN_PKT/s_I/O", "TUN_BIT/s_I/O", "FEC/s");
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        const top_house *t = &s->houses[idx[i]];
        const gp_reg_house *h = &t->h;
        char since[16] = "-", seen[16] = "-", rtt[16] = "-", loss[16] = "-", req[16], er[16];
        char br[4 * sizeof h->last_bridge + 4], tr[4 * sizeof h->st.transport]; /* escaped */
        /* SINCE: in its state since (online: taken by a bridge; offline: last heard from). */
        top_fmt_age(since, sizeof since, s->now_ms, top_state_since(h));
        top_fmt_age(seen, sizeof seen, s->now_ms, top_last_seen(h));
        if (h->st.connected) {
            top_fmt_ms(rtt, sizeof rtt, h->st.rtt_ms);
            top_fmt_pct(loss, sizeof loss, h->st.loss_pct);
        }
        top_fmt_rate(req, sizeof req, t->r.req);
        top_fmt_rate(er, sizeof er, t->r.err);
        printf("%-*s %-*s %-9s %7s %9s %7s %6s %7s %7s %-*s", wid, h->id, wbr,
               bridge_cell(br, sizeof br, h),
               h->st.connected && h->st.transport[0] ? cli_esc_str(tr, sizeof tr, h->st.transport)
                                                     : "-",
               since, seen, rtt, loss, req, er, tun ? 8 : 0, gp_reg_house_state(h));
        if (tun) {
            char a[2 * GP_IP_ADDR_STRLEN], pps[32], bps[32], fec[16];
            top_tun_addr(h, a, sizeof a);
            a[strcspn(a, ",")] = '\0';
            top_fmt_inout(pps, sizeof pps, t->r.tun_pkts_in, t->r.tun_pkts_out, 0);
            top_fmt_inout(bps, sizeof bps, t->r.tun_bytes_in, t->r.tun_bytes_out, 1);
            top_fmt_rate(fec, sizeof fec, t->r.fec);
            printf(" %-*s %13s %13s %6s", wtun, a[0] ? a : "-", pps, bps, fec);
        }
        printf("\n");
    }
}

/* The house's L3 tunnel, for its page: addresses, routes, rates, totals. */
static void print_house_tun(const top_house *t) {
    const gp_reg_house *h = &t->h;
    char addr[2 * GP_IP_ADDR_STRLEN], routes[GP_TUN_ROUTES_MAX * (GP_CIDR_STRLEN + 2)];
    char pi[16], po[16], bi[16], bo[16], fec[16];
    int up = top_tun_addr(h, addr, sizeof addr);
    gp_cidr_list_format(h->tun_routes, h->ntun_routes, ", ", routes, sizeof routes);
    printf("tun %s%s  routes %s\n", addr[0] ? addr : "-",
           up        ? " (up)"
           : addr[0] ? " (not granted now)"
                     : "",
           h->ntun_routes ? routes : "-");
    top_fmt_rate(pi, sizeof pi, t->r.tun_pkts_in);
    top_fmt_rate(po, sizeof po, t->r.tun_pkts_out);
    top_fmt_bits(bi, sizeof bi, t->r.tun_bytes_in);
    top_fmt_bits(bo, sizeof bo, t->r.tun_bytes_out);
    top_fmt_rate(fec, sizeof fec, t->r.fec);
    printf("tun in %s pkt/s %s bit/s  out %s pkt/s %s bit/s  fec repairs %s/s", pi, bi, po, bo,
           fec);
    const gp_state *st = &h->st;
    if (st->connected && st->tun_pkts_in >= 0)
        printf("  (totals: %lld packets in, %lld out, %lld bytes in, %lld out, %lld dropped)",
               st->tun_pkts_in, st->tun_pkts_out, st->tun_bytes_in, st->tun_bytes_out,
               st->tun_drops);
    if (st->connected && st->fec_repaired >= 0)
        printf("  (%lld repaired by FEC)", st->fec_repaired);
    printf("\n");
}

static void print_house_detail(const top_snap *s, const top_house *t, const gp_reg_recent_req *q,
                               size_t nq) {
    const gp_reg_house *h = &t->h;
    char a[32], b[32], c2[32], d[32];
    /* Everything others wrote is printed with control characters escaped. */
    char br[4 * sizeof h->st.bridge], tr[4 * sizeof h->st.transport], addr[4 * sizeof h->st.addr];
    char labels[4 * sizeof h->labels];
    printf("house %s  %s%s\n", h->id, gp_reg_house_state(h),
           h->disabled ? (h->st.connected ? " (still connected)" : " (offline)") : "");
    if (!h->st.connected) {
        long long off = gp_reg_offline_since(h);
        cli_fmt_utc(a, sizeof a, off);
        top_fmt_age(b, sizeof b, s->now_ms, off);
        if (off >= 0)
            printf("offline since %s (%s ago)  last held by bridge %s\n", a, b,
                   h->last_bridge[0] ? cli_esc_str(br, sizeof br, h->last_bridge) : "-");
        else
            printf("offline: no bridge has held it yet\n");
    }
    if (h->st.connected) {
        cli_fmt_utc(a, sizeof a, h->st.since_ms);
        top_fmt_age(b, sizeof b, s->now_ms, h->st.since_ms);
        printf("bridge %s  transport %s  addr %s  since %s (%s)\n",
               h->st.bridge[0] ? cli_esc_str(br, sizeof br, h->st.bridge) : "-",
               h->st.transport[0] ? cli_esc_str(tr, sizeof tr, h->st.transport) : "-",
               h->st.addr[0] ? cli_esc_str(addr, sizeof addr, h->st.addr) : "-", a, b);
        top_fmt_age(a, sizeof a, s->now_ms, h->st.last_seen_ms);
        top_fmt_ms(b, sizeof b, h->st.rtt_ms);
        top_fmt_pct(c2, sizeof c2, h->st.loss_pct);
        printf("last seen %s ago  rtt %s  loss %s  epoch %lld\n", a, b, c2, h->st.epoch);
    }
    top_fmt_rate(a, sizeof a, t->r.req);
    top_fmt_rate(b, sizeof b, t->r.err);
    top_fmt_bytes(c2, sizeof c2, t->r.in);
    top_fmt_bytes(d, sizeof d, t->r.out);
    printf("req/s %s  err/s %s  in %s/s  out %s/s", a, b, c2, d);
    if (h->st.connected && h->st.req_total >= 0)
        printf("  (totals: %lld requests, %lld errors, %lld bytes in, %lld out)", h->st.req_total,
               h->st.err_total, h->st.bytes_in, h->st.bytes_out);
    printf("\n");
    char ta[2 * GP_IP_ADDR_STRLEN];
    top_tun_addr(h, ta, sizeof ta);
    if (ta[0] || h->ntun_routes || (h->st.connected && h->st.tun_pkts_in >= 0))
        print_house_tun(t);
    cli_fmt_utc(a, sizeof a, h->created_ms);
    printf("labels %s  created %s\n\n",
           h->labels[0] ? cli_esc_str(labels, sizeof labels, h->labels) : "{}", a);
    printf("RECENT REQUESTS %zu\n", nq);
    if (!nq)
        return;
    printf("%-20s %-7s %6s %7s %-32s %s\n", "TIME", "METHOD", "STATUS", "MS", "PATH", "ERROR");
    for (size_t i = 0; i < nq; i++) {
        char st[16], ms[16], m[4 * sizeof q[i].method], p[4 * sizeof q[i].path],
            e[4 * sizeof q[i].error];
        cli_fmt_utc(a, sizeof a, q[i].ts_ms);
        snprintf(st, sizeof st, q[i].status < 0 ? "-" : "%d", q[i].status);
        snprintf(ms, sizeof ms, q[i].ms < 0 ? "-" : "%lld", q[i].ms);
        printf("%-20s %-7s %6s %7s %-32s %s\n", a,
               q[i].method[0] ? cli_esc_str(m, sizeof m, q[i].method) : "-", st, ms,
               q[i].path[0] ? cli_esc_str(p, sizeof p, q[i].path) : "-",
               q[i].error[0] ? cli_esc_str(e, sizeof e, q[i].error) : "-");
    }
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* --once / --json. */
static int top_once(cli_ctx *c, const top_opts *o) {
    br_rc *rc = cli_connect(c);
    if (!rc)
        return CLI_USAGE;
    char err[256];
    top_snap prev = {0}, cur = {0};
    int have_prev = 0, rv = CLI_USAGE;
    if (o->state) {
        have_prev = state_load(o->state, &prev) == 0;
    } else if (o->interval_ms > 0) {
        if (top_fetch(rc, c->prefix, &prev, err, sizeof err) != 0) {
            cli_err(c, "%s", err);
            goto done;
        }
        have_prev = 1;
        sleep_ms(o->interval_ms);
    }
    if (top_fetch(rc, c->prefix, &cur, err, sizeof err) != 0) {
        cli_err(c, "%s", err);
        goto done;
    }
    const top_snap *pv = &prev;
    if (have_prev)
        top_compute_rates(&cur, &pv, 1);
    long long interval = have_prev ? cur.now_ms - prev.now_ms : -1;

    size_t *idx = calloc(cur.nhouses ? cur.nhouses : 1, sizeof *idx);
    if (!idx)
        goto done;
    size_t n = top_view(&cur, o->filter, o->sort_col, o->reverse, idx);
    gp_reg_recent_req *recent = NULL;
    size_t nrecent = 0;
    if (o->house) {
        size_t k = 0;
        while (k < n && strcmp(cur.houses[idx[k]].h.id, o->house) != 0)
            k++;
        if (k == n) {
            cli_err(c, "no house '%s'", o->house);
            free(idx);
            rv = CLI_FAIL;
            goto done;
        }
        idx[0] = idx[k];
        n = 1;
        if (gp_reg_recent(rc, c->prefix, o->house, 50, &recent, &nrecent, err, sizeof err) != 0) {
            cli_err(c, "%s", err);
            free(idx);
            goto done;
        }
    }
    if (o->json) {
        json_t *doc = snap_json(&cur, interval, idx, n, o->house ? recent : NULL, nrecent);
        /* ASCII only: C1 controls (valid JSON as raw UTF-8) come out as \u0080..\u009f. */
        char *txt = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(12));
        if (txt)
            printf("%s\n", txt);
        free(txt);
        json_decref(doc);
    } else {
        char when[32], iv[48] = "";
        cli_fmt_utc(when, sizeof when, cur.now_ms);
        if (interval >= 1000)
            snprintf(iv, sizeof iv, "  rates over %.1f s", (double)interval / 1000);
        else if (interval >= 0)
            snprintf(iv, sizeof iv, "  rates over %lld ms", interval);
        else if (o->state)
            snprintf(iv, sizeof iv, "  (first sample: no rates yet)");
        printf("ghostport top  %s  redis %s  prefix %s%s\n\n", when, c->redis_shown, c->prefix, iv);
        if (o->house) {
            print_house_detail(&cur, &cur.houses[idx[0]], recent, nrecent);
        } else {
            print_bridges(&cur);
            printf("\n");
            print_houses(&cur, idx, n);
        }
    }
    free(recent);
    free(idx);
    rv = CLI_OK;
    if (o->state && state_save(c, o->state, &cur) != 0)
        rv = CLI_FAIL;
done:
    top_snap_clear(&prev);
    top_snap_clear(&cur);
    br_rc_free(rc);
    return rv;
}

static int parse_int(cli_ctx *c, const char *opt, const char *v, long lo, long hi, int *out) {
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (*e || e == v || errno || x < lo || x > hi) {
        cli_err(c, "%s wants a number from %ld to %ld, got '%s'", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int cli_top(cli_ctx *c, int argc, char **argv) {
    top_opts o = {.interval_ms = 1000, .sort_col = TOP_COL_ID};
    int interval_set = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt_val(argc, argv, &i, "--interval", "-n", &v)) != 0) {
            if (r < 0 || parse_int(c, "--interval", v, 0, 3600000, &o.interval_ms) != 0)
                return CLI_USAGE;
            interval_set = 1;
        } else if ((r = cli_opt_val(argc, argv, &i, "--sort", "-s", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if ((o.sort_col = top_col_by_name(v)) < 0) {
                cli_err(c,
                        "--sort: no column '%s' (id bridge transport since seen rtt loss req "
                        "err state tun tun_pps tun_bps fec)",
                        v);
                return CLI_USAGE;
            }
        } else if ((r = cli_opt_val(argc, argv, &i, "--filter", "-f", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            o.filter = v;
        } else if ((r = cli_opt_val(argc, argv, &i, "--house", NULL, &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (!gp_house_id_valid(gp_str_c(v))) {
                cli_err(c, "invalid house id '%s'", v);
                return CLI_USAGE;
            }
            o.house = v;
        } else if ((r = cli_opt_val(argc, argv, &i, "--state", NULL, &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            o.state = v;
        } else if (strcmp(argv[i], "--once") == 0 || strcmp(argv[i], "-1") == 0) {
            o.once = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            o.json = 1;
        } else if (strcmp(argv[i], "--reverse") == 0 || strcmp(argv[i], "-r") == 0) {
            o.reverse = 1;
        } else if (strcmp(argv[i], "--") == 0) {
            continue;
        } else {
            cli_err(c, "top: unexpected argument '%s'", argv[i]);
            return cli_usage(c, "top", NULL);
        }
    }
    if (!*c->prefix || strlen(c->prefix) > 64) {
        cli_err(c, "--prefix must be 1-64 characters");
        return CLI_USAGE;
    }
    if (o.once || o.json)
        return top_once(c, &o);
    if (o.state) {
        cli_err(c, "--state goes with --once or --json");
        return CLI_USAGE;
    }
    if (interval_set && o.interval_ms < 100) {
        cli_err(c, "--interval: the live view refreshes at most every 100 ms");
        return CLI_USAGE;
    }
    return top_tui_run(c, &o);
}
