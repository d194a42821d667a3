/* cli_top_model.c — the model of `ghostport top` (see cli_top.h): rates from snapshots,
 * sorting, filtering, column layout, history, sparklines, number formats. Pure: no I/O, no
 * clock; the curses and text front ends (cli_top_tui.c, cli_top.c) feed it snapshots. */
#include "cli_top.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void top_snap_clear(top_snap *s) {
    free(s->bridges);
    free(s->houses);
    memset(s, 0, sizeof *s);
}

/* --- rates ------------------------------------------------------------------------------ */

static int cmp_bridge_id(const void *key, const void *e) {
    return strcmp(key, ((const top_bridge *)e)->s.id);
}
static int cmp_house_id(const void *key, const void *e) {
    return strcmp(key, ((const top_house *)e)->h.id);
}

static const top_bridge *find_bridge(const top_snap *s, const char *id) {
    return s->nbridges ? bsearch(id, s->bridges, s->nbridges, sizeof *s->bridges, cmp_bridge_id)
                       : NULL;
}
static const top_house *find_house(const top_snap *s, const char *id) {
    return s->nhouses ? bsearch(id, s->houses, s->nhouses, sizeof *s->houses, cmp_house_id) : NULL;
}

const top_rates top_rates_unknown = {.v = {-1, -1, -1, -1, -1, -1, -1, -1, -1}};
_Static_assert(TOP_NRATES == 9, "top_rates_unknown names every rate");

/* Counters that start from zero together (top_compute_rates): [lo, hi) of top_rates.v. */
static const struct {
    int lo, hi;
} GROUPS[] = {
    {TOP_R_REQ, TOP_R_OUT + 1},                   /* the connection's, written by its bridge */
    {TOP_R_FEC, TOP_R_FEC + 1},                   /* its rudp session's */
    {TOP_R_TUN_PKTS_IN, TOP_R_TUN_BYTES_OUT + 1}, /* its L3 grant's */
};
#define NGROUPS (sizeof GROUPS / sizeof GROUPS[0])

/* The rates of counters [lo, hi) from c (now) and p (before), dt_ms apart, into r. 0, or -1
 * if some counter went down (not the same run after all; r untouched). A counter unknown on
 * either side gives -1 for it. */
static int rates_of(top_rates *r, int lo, int hi, const long long c[TOP_NRATES],
                    const long long p[TOP_NRATES], long long dt_ms) {
    double out[TOP_NRATES];
    for (int i = lo; i < hi; i++) {
        if (c[i] < 0 || p[i] < 0) {
            out[i] = -1;
            continue;
        }
        if (c[i] < p[i])
            return -1;
        out[i] = (double)(c[i] - p[i]) * 1000.0 / (double)dt_ms;
    }
    for (int i = lo; i < hi; i++)
        r->v[i] = out[i];
    return 0;
}

static void bridge_counters(const gp_reg_bstats *s, long long c[TOP_NRATES]) {
    for (int i = 0; i < TOP_NRATES; i++)
        c[i] = -1;
    c[TOP_R_REQ] = s->req_total, c[TOP_R_ERR] = s->err_total;
    c[TOP_R_IN] = s->bytes_in, c[TOP_R_OUT] = s->bytes_out;
}

void top_house_counters(const gp_reg_house *h, long long c[TOP_NRATES]) {
    const gp_state *st = &h->st;
    const long long v[TOP_NRATES] = {
        [TOP_R_REQ] = st->req_total,
        [TOP_R_ERR] = st->err_total,
        [TOP_R_IN] = st->bytes_in,
        [TOP_R_OUT] = st->bytes_out,
        [TOP_R_FEC] = st->fec_repaired,
        [TOP_R_TUN_PKTS_IN] = st->tun_pkts_in,
        [TOP_R_TUN_PKTS_OUT] = st->tun_pkts_out,
        [TOP_R_TUN_BYTES_IN] = st->tun_bytes_in,
        [TOP_R_TUN_BYTES_OUT] = st->tun_bytes_out,
    };
    for (int i = 0; i < TOP_NRATES; i++)
        c[i] = st->connected ? v[i] : -1;
}

/* Start times are written from clocks that can disagree by a few ms from one write to the
 * next (a bridge's estimate of Redis's clock, the claim script's and the renewal's): within
 * a second is the same start. A restart that keeps the pid (pid 1 in a container) within a
 * second also starts its counters again, which rates_of catches. */
static int near(long long a, long long b) {
    return a - b < 1000 && b - a < 1000;
}
static int same_bridge_run(const gp_reg_bstats *a, const gp_reg_bstats *b) {
    return a->pid == b->pid && near(a->since_ms, b->since_ms);
}
/* The epoch is the fencing counter, new at every connection: it names the connection. */
static int same_connection(const gp_reg_house *a, const gp_reg_house *b) {
    return a->st.connected && b->st.connected && a->st.epoch == b->st.epoch &&
           near(a->st.since_ms, b->st.since_ms) && strcmp(a->st.bridge, b->st.bridge) == 0;
}

/* The same bridge run, or house connection, as `row` in an earlier snapshot s: 1 with its
 * counters, stamp and rates, or 0 when s has none. */
typedef int (*earlier_fn)(const top_snap *s, const void *row, long long p[TOP_NRATES],
                          long long *ts, const top_rates **r);

static int bridge_earlier(const top_snap *s, const void *row, long long p[TOP_NRATES],
                          long long *ts, const top_rates **r) {
    const top_bridge *b = row, *o = find_bridge(s, b->s.id);
    if (!o || !same_bridge_run(&b->s, &o->s))
        return 0;
    bridge_counters(&o->s, p);
    *ts = o->s.ts_ms;
    *r = &o->r;
    return 1;
}

static int house_earlier(const top_snap *s, const void *row, long long p[TOP_NRATES], long long *ts,
                         const top_rates **r) {
    const top_house *h = row, *o = find_house(s, h->h.id);
    if (!o || !same_connection(&h->h, &o->h))
        return 0;
    top_house_counters(&o->h, p);
    *ts = o->h.st.ts_ms;
    *r = &o->r;
    return 1;
}

/* The rates of `row` (counters c, stamped t) into *out, group by group: from the oldest
 * earlier sample of the same run whose counters of the group are no larger; failing that, the
 * newest sample's rates (nothing newer than it: the row has not been published since);
 * failing that, unknown. */
static void row_rates(top_rates *out, const void *row, const long long c[TOP_NRATES], long long t,
                      const top_snap *const *prev, size_t nprev, const top_snap *newest,
                      earlier_fn earlier) {
    long long p[TOP_NRATES], pt;
    const top_rates *pr;
    *out = top_rates_unknown;
    for (size_t g = 0; g < NGROUPS; g++) {
        int lo = GROUPS[g].lo, hi = GROUPS[g].hi, done = 0;
        for (size_t j = 0; j < nprev && !done; j++) {
            if (!prev[j] || !earlier(prev[j], row, p, &pt, &pr))
                continue;
            long long dt = t - (pt > 0 ? pt : prev[j]->now_ms);
            done = dt > 0 && rates_of(out, lo, hi, c, p, dt) == 0;
        }
        if (!done && newest && earlier(newest, row, p, &pt, &pr))
            for (int i = lo; i < hi; i++)
                out->v[i] = pr->v[i];
    }
}

void top_compute_rates(top_snap *cur, const top_snap *const *prev, size_t nprev) {
    const top_snap *newest = NULL;
    for (size_t j = 0; j < nprev; j++)
        if (prev[j])
            newest = prev[j];
    for (size_t i = 0; i < cur->nbridges; i++) {
        top_bridge *b = &cur->bridges[i];
        long long c[TOP_NRATES];
        bridge_counters(&b->s, c);
        long long t = b->s.ts_ms > 0 ? b->s.ts_ms : cur->now_ms;
        row_rates(&b->r, b, c, t, prev, nprev, newest, bridge_earlier);
    }
    for (size_t i = 0; i < cur->nhouses; i++) {
        top_house *h = &cur->houses[i];
        long long c[TOP_NRATES];
        top_house_counters(&h->h, c);
        long long t = h->h.st.ts_ms > 0 ? h->h.st.ts_ms : cur->now_ms;
        h->r = top_rates_unknown;
        if (h->h.st.connected)
            row_rates(&h->r, h, c, t, prev, nprev, newest, house_earlier);
    }
}

/* --- the L3 tunnel ---------------------------------------------------------------------- */

int top_tun_addr(const gp_reg_house *h, char *out, size_t cap) {
    if (!cap)
        return 0;
    out[0] = '\0';
    if (h->st.connected && h->st.tun_addr[0]) {
        /* Written by anyone with access to Redis: what an address list cannot hold is '?'. */
        snprintf(out, cap, "%s", h->st.tun_addr);
        for (char *p = out; *p; p++)
            if (!strchr("0123456789abcdefABCDEF.:,", *p))
                *p = '?';
        return 1;
    }
    const gp_ip_addr *as[2] = {&h->tun4, &h->tun6};
    for (int i = 0; i < 2 && h->tun_has == 1; i++)
        if (as[i]->family) {
            char t[GP_IP_ADDR_STRLEN];
            size_t l = strlen(out);
            snprintf(out + l, cap - l, "%s%s", l ? "," : "", gp_ip_addr_format(as[i], t));
        }
    return 0;
}

int top_has_tun(const top_snap *s) {
    for (size_t i = 0; i < s->nhouses; i++) {
        char a[2 * GP_IP_ADDR_STRLEN];
        top_tun_addr(&s->houses[i].h, a, sizeof a);
        if (a[0])
            return 1;
    }
    return 0;
}

/* --- columns, sorting, filtering -------------------------------------------------------- */

long long top_state_since(const gp_reg_house *h) {
    return h->st.connected ? h->st.since_ms : h->last_seen_ms; /* as gp_reg_offline_since */
}

long long top_last_seen(const gp_reg_house *h) {
    return h->st.connected ? h->st.last_seen_ms : h->last_seen_ms;
}

void top_count_states(const top_snap *s, size_t *online, size_t *offline, size_t *disabled) {
    *online = *offline = *disabled = 0;
    for (size_t i = 0; i < s->nhouses; i++) {
        const gp_reg_house *h = &s->houses[i].h;
        if (h->disabled)
            (*disabled)++;
        else if (h->st.connected)
            (*online)++;
        else
            (*offline)++;
    }
}

const char *const top_col_names[TOP_NCOLS] = {"id",  "bridge",  "transport", "since", "seen",
                                              "rtt", "loss",    "req",       "err",   "state",
                                              "tun", "tun_pps", "tun_bps",   "fec"};

int top_col_by_name(const char *name) {
    static const struct {
        const char *alias;
        int col;
    } aliases[] = {
        {"req/s", TOP_COL_REQ},      {"err/s", TOP_COL_ERR},      {"errors", TOP_COL_ERR},
        {"last_seen", TOP_COL_SEEN}, {"last-seen", TOP_COL_SEEN}, {"connected", TOP_COL_SINCE},
        {"pps", TOP_COL_TUN_PPS},    {"pkt/s", TOP_COL_TUN_PPS},  {"bps", TOP_COL_TUN_BPS},
        {"bit/s", TOP_COL_TUN_BPS},  {"fec/s", TOP_COL_FEC},      {"tun_addr", TOP_COL_TUN},
        {"disabled", TOP_COL_STATE}};
    for (int i = 0; i < TOP_NCOLS; i++)
        if (strcasecmp(name, top_col_names[i]) == 0)
            return i;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].col;
    return -1;
}

/* The sum of two rates, -1 when both are unknown. */
static double both(double a, double b) {
    return a < 0 && b < 0 ? -1 : (a > 0 ? a : 0) + (b > 0 ? b : 0);
}

/* The first of the house's L3 addresses (top_tun_addr) as a key that sorts as addresses do:
 * its family and bytes in hex, into key[34]; 0 when it has none. */
static int tun_key(const gp_reg_house *g, char key[34]) {
    char a[2 * GP_IP_ADDR_STRLEN];
    top_tun_addr(g, a, sizeof a);
    gp_ip_addr ip;
    if (!a[0] || gp_ip_addr_parse(a, strcspn(a, ","), &ip) != 0)
        return 0;
    key[0] = ip.family == 6 ? '6' : '4';
    for (int i = 0; i < 16; i++)
        snprintf(key + 1 + 2 * i, 3, "%02x", ip.a[i]);
    return 1;
}

/* The sort key of house h in column col: a number (*num) or a string (return value, maybe
 * in buf); *known = 0 for "-". */
static const char *sort_key(const top_house *h, int col, double *num, int *known, char buf[34]) {
    const gp_reg_house *g = &h->h;
    *known = 1;
    *num = 0;
    switch (col) {
    case TOP_COL_TUN:
        *known = tun_key(g, buf);
        return buf;
    case TOP_COL_TUN_PPS:
        *num = both(h->r.tun_pkts_in, h->r.tun_pkts_out);
        *known = *num >= 0;
        return NULL;
    case TOP_COL_TUN_BPS:
        *num = both(h->r.tun_bytes_in, h->r.tun_bytes_out);
        *known = *num >= 0;
        return NULL;
    case TOP_COL_FEC:
        *known = h->r.fec >= 0;
        *num = h->r.fec;
        return NULL;
    case TOP_COL_ID:
        return g->id;
    case TOP_COL_BRIDGE:
        *known = g->st.connected && g->st.bridge[0];
        return g->st.bridge;
    case TOP_COL_TRANSPORT:
        *known = g->st.connected && g->st.transport[0];
        return g->st.transport;
    case TOP_COL_SINCE: /* shown as an age: ascending = most recent change of state first */
        *num = -(double)top_state_since(g);
        *known = *num <= 0;
        return NULL;
    case TOP_COL_SEEN:
        *num = -(double)top_last_seen(g);
        *known = *num <= 0;
        return NULL;
    case TOP_COL_RTT:
        *known = g->st.connected && g->st.rtt_ms >= 0;
        *num = g->st.rtt_ms;
        return NULL;
    case TOP_COL_LOSS:
        *known = g->st.connected && g->st.loss_pct >= 0;
        *num = g->st.loss_pct;
        return NULL;
    case TOP_COL_REQ:
        *known = h->r.req >= 0;
        *num = h->r.req;
        return NULL;
    case TOP_COL_ERR:
        *known = h->r.err >= 0;
        *num = h->r.err;
        return NULL;
    default: /* TOP_COL_STATE: online, offline, disabled */
        *num = g->disabled ? 2 : g->st.connected ? 0 : 1;
        return NULL;
    }
}

typedef struct view_ctx {
    const top_snap *s;
    int col, reverse;
} view_ctx;

static int cmp_view(const void *a, const void *b, void *ud) {
    const view_ctx *v = ud;
    const top_house *x = &v->s->houses[*(const size_t *)a];
    const top_house *y = &v->s->houses[*(const size_t *)b];
    double nx, ny;
    int kx, ky;
    char bx[34], by[34];
    const char *sx = sort_key(x, v->col, &nx, &kx, bx);
    const char *sy = sort_key(y, v->col, &ny, &ky, by);
    int c = 0;
    if (kx != ky)
        return kx ? -1 : 1; /* unknown last, in either direction */
    if (kx) {
        if (sx)
            c = strcmp(sx, sy);
        else
            c = nx < ny ? -1 : nx > ny;
        if (v->reverse)
            c = -c;
    }
    return c ? c : strcmp(x->h.id, y->h.id);
}

size_t top_view(const top_snap *s, const char *filter, int col, int reverse, size_t *idx) {
    size_t n = 0;
    for (size_t i = 0; i < s->nhouses; i++)
        if (!filter || !*filter || strcasestr(s->houses[i].h.id, filter))
            idx[n++] = i;
    view_ctx v = {s, col < 0 || col >= TOP_NCOLS ? TOP_COL_ID : col, reverse};
    qsort_r(idx, n, sizeof *idx, cmp_view, &v);
    return n;
}

int top_layout(const top_col_spec *spec, int n, int width, int *out_w) {
    int on[32];
    if (n > 32)
        n = 32;
    for (int i = 0; i < n; i++)
        on[i] = 1;
    for (;;) {
        int need = -1;
        for (int i = 0; i < n; i++)
            if (on[i])
                need += spec[i].minw + 1;
        if (need <= width)
            break;
        int worst = -1; /* the highest drop rank still shown */
        for (int i = 0; i < n; i++)
            if (on[i] && spec[i].drop && (worst < 0 || spec[i].drop > spec[worst].drop))
                worst = i;
        if (worst < 0)
            break; /* nothing left to drop: the caller clips */
        on[worst] = 0;
    }
    int used = -1, grow = 0;
    for (int i = 0; i < n; i++) {
        out_w[i] = on[i] ? spec[i].minw : 0;
        if (on[i]) {
            used += spec[i].minw + 1;
            grow += spec[i].maxw - spec[i].minw;
        }
    }
    int spare = width - used;
    if (spare > 0 && grow > 0) {
        int given = 0;
        for (int i = 0; i < n; i++) {
            if (!on[i] || spec[i].maxw <= spec[i].minw)
                continue;
            int g = (int)((long)spare * (spec[i].maxw - spec[i].minw) / grow);
            if (g > spec[i].maxw - spec[i].minw)
                g = spec[i].maxw - spec[i].minw;
            out_w[i] += g;
            given += g;
        }
        /* Rounding leftovers, one column at a time. */
        for (int i = 0; i < n && given < spare; i++)
            if (on[i] && out_w[i] < spec[i].maxw) {
                out_w[i]++;
                given++;
            }
        used += given;
    }
    return used < 0 ? 0 : used;
}

/* --- history ---------------------------------------------------------------------------- */

static int cmp_hist_id(const void *key, const void *e) {
    return strcmp(key, ((const top_hist *)e)->id);
}

const top_hist *top_hist_find(const top_hist *hist, size_t n, const char *id) {
    return n ? bsearch(id, hist, n, sizeof *hist, cmp_hist_id) : NULL;
}

int top_hist_push(top_hist **hist, size_t *n, const top_snap *cur) {
    top_hist *nh = calloc(cur->nhouses ? cur->nhouses : 1, sizeof *nh);
    if (!nh)
        return -1;
    for (size_t i = 0; i < cur->nhouses; i++) {
        const top_house *h = &cur->houses[i];
        const top_hist *old = top_hist_find(*hist, *n, h->h.id);
        top_hist *e = &nh[i];
        if (old)
            *e = *old;
        else
            snprintf(e->id, sizeof e->id, "%s", h->h.id);
        if (e->n == TOP_HIST) {
            memmove(e->req, e->req + 1, (TOP_HIST - 1) * sizeof e->req[0]);
            memmove(e->rtt, e->rtt + 1, (TOP_HIST - 1) * sizeof e->rtt[0]);
            memmove(e->tun_pps, e->tun_pps + 1, (TOP_HIST - 1) * sizeof e->tun_pps[0]);
            e->n--;
        }
        e->req[e->n] = (float)h->r.req;
        e->rtt[e->n] = h->h.st.connected && h->h.st.rtt_ms >= 0 ? (float)h->h.st.rtt_ms : -1.0f;
        e->tun_pps[e->n] = (float)both(h->r.tun_pkts_in, h->r.tun_pkts_out);
        e->n++;
    }
    free(*hist);
    *hist = nh;
    *n = cur->nhouses;
    return 0;
}

double top_sparkline(const float *v, int n, int width, int utf8, char *out, size_t cap) {
    static const char *const blocks[8] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                          "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii[8] = {'_', '.', '-', '=', '+', '*', '#', '@'};
    if (width < 0)
        width = 0;
    int first = n > width ? n - width : 0;
    double max = 0;
    for (int i = first; i < n; i++)
        if (v[i] > max)
            max = v[i];
    size_t o = 0;
    for (int i = first; i < n; i++) {
        char g[4] = " ";
        if (v[i] >= 0) {
            int k = max > 0 ? (int)(v[i] / max * 7.0 + 0.5) : 0;
            k = k < 0 ? 0 : k > 7 ? 7 : k;
            if (utf8)
                memcpy(g, blocks[k], 4);
            else
                g[0] = ascii[k], g[1] = '\0';
        }
        size_t gl = strlen(g);
        if (o + gl + 1 > cap)
            break;
        memcpy(out + o, g, gl);
        o += gl;
    }
    if (cap)
        out[o < cap ? o : cap - 1] = '\0';
    return max;
}

/* --- formats ---------------------------------------------------------------------------- */

void top_fmt_rate(char *out, size_t cap, double r) {
    if (r < 0)
        snprintf(out, cap, "-");
    else if (r == 0)
        snprintf(out, cap, "0");
    else if (r < 100)
        snprintf(out, cap, "%.1f", r);
    else if (r < 10000)
        snprintf(out, cap, "%.0f", r);
    else if (r < 1e6)
        snprintf(out, cap, "%.1fk", r / 1e3);
    else
        snprintf(out, cap, "%.1fM", r / 1e6);
}

/* v with a unit prefix: as it is below 1000, else divided by base until it is, with one
 * decimal below 10 (999.6 would print as "1000" with the prefix before: the next one takes it). */
static void fmt_prefixed(char *out, size_t cap, double v, double base, const char *units) {
    if (v < 0) {
        snprintf(out, cap, "-");
        return;
    }
    if (v < 999.5) {
        snprintf(out, cap, "%.0f", v);
        return;
    }
    int u = -1;
    while (v >= 999.5 && u < 4) {
        v /= base;
        u++;
    }
    snprintf(out, cap, v < 9.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

void top_fmt_bytes(char *out, size_t cap, double b) {
    fmt_prefixed(out, cap, b, 1024, "KMGTP");
}

void top_fmt_bits(char *out, size_t cap, double bytes_per_s) {
    fmt_prefixed(out, cap, bytes_per_s < 0 ? -1 : bytes_per_s * 8, 1000, "kMGTP");
}

void top_fmt_inout(char *out, size_t cap, double in, double out_, int bits) {
    char a[16], b[16];
    if (bits) {
        top_fmt_bits(a, sizeof a, in);
        top_fmt_bits(b, sizeof b, out_);
    } else {
        top_fmt_rate(a, sizeof a, in);
        top_fmt_rate(b, sizeof b, out_);
    }
    snprintf(out, cap, "%s/%s", a, b);
}

void top_fmt_ms(char *out, size_t cap, double ms) {
    if (ms < 0)
        snprintf(out, cap, "-");
    else if (ms < 10 && ms != (long long)ms)
        snprintf(out, cap, "%.1fms", ms);
    else if (ms < 1000)
        snprintf(out, cap, "%.0fms", ms);
    else
        snprintf(out, cap, "%.1fs", ms / 1000);
}

void top_fmt_pct(char *out, size_t cap, double p) {
    if (p < 0)
        snprintf(out, cap, "-");
    else if (p < 10)
        snprintf(out, cap, "%.1f%%", p);
    else
        snprintf(out, cap, "%.0f%%", p);
}

void top_fmt_age(char *out, size_t cap, long long now, long long ts) {
    if (ts < 0 || now < 0) {
        snprintf(out, cap, "-");
        return;
    }
    long long d = now > ts ? now - ts : 0, s = d / 1000;
    if (d < 10000)
        snprintf(out, cap, "%.1fs", (double)d / 1000);
    else if (s < 60)
        snprintf(out, cap, "%llds", s);
    else if (s < 3600)
        snprintf(out, cap, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else
        snprintf(out, cap, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

void top_fit(char *out, size_t cap, const char *s, int width) {
    if (!cap)
        return;
    size_t w = width < 1 ? 1 : (size_t)width;
    if (w > cap - 1)
        w = cap - 1;
    size_t n = strlen(s);
    size_t k = n < w ? n : w;
    for (size_t i = 0; i < k; i++) {
        unsigned char ch = (unsigned char)s[i];
        /* One byte, one column: anything else would break the alignment. */
        out[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    if (n > w)
        out[w - 1] = '~';
    out[k] = '\0';
}
