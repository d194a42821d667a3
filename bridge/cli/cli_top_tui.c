/* cli_top_tui.c — the live view of `ghostport top` (curses): a bridges pane and a houses
 * table refreshed from Redis every interval, sortable and filterable, with a per-house page
 * (sparklines of req/s and RTT, recent requests). I/O side: the terminal and the blocking
 * Redis client; all numbers come from the model (cli_top_model.c).
 *
 * It is meant for servers reached over ssh: plain curses (no mouse, no colours needed),
 * ASCII unless the locale is UTF-8, everything fits 80x24 (columns are dropped or cut when
 * narrower), KEY_RESIZE redraws. Redis being away is a status line, not an exit: the last
 * data stays on screen and every refresh tries again. q, Ctrl-C, SIGTERM and SIGHUP end it
 * with the terminal restored (endwin on every path). */
#include "cli_top.h"

#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSNAPS 3    /* snapshots kept for rates: the current one and two before */
#define NRECENT 200 /* recent requests fetched for the detail page at most */

typedef struct tui {
    cli_ctx *c;
    const top_opts *o;
    br_rc *rc;
    char redis_host[300];
    /* snaps[0] is the newest; older ones feed the rates. */
    top_snap snaps[NSNAPS];
    int nsnaps;
    top_hist *hist;
    size_t nhist;
    size_t *idx; /* the view: indexes into snaps[0].houses */
    size_t nview;
    int sort_col, reverse;
    char filter[GP_MAX_HOUSE_ID + 1];
    int editing; /* the filter prompt is open */
    char filter_before[GP_MAX_HOUSE_ID + 1];
    char sel[GP_MAX_HOUSE_ID + 1]; /* the selected house, kept across refreshes and sorts */
    size_t cur, scroll;            /* cursor and first shown row of the view */
    int detail;
    gp_reg_recent_req *recent;
    size_t nrecent;
    char recent_of[GP_MAX_HOUSE_ID + 1];
    char err[256]; /* the last refresh's failure, "" when it worked */
    long long ok_mono;
    int have_data, utf8, colors;
    int tun; /* some house has an L3 address: the tunnel's columns are shown */
} tui;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- data ------------------------------------------------------------------------------- */

static void rebuild_view(tui *t) {
    const top_snap *s = &t->snaps[0];
    size_t *idx = realloc(t->idx, (s->nhouses ? s->nhouses : 1) * sizeof *idx);
    if (!idx) {
        t->nview = 0; /* the old view indexes a snapshot that is gone */
        return;
    }
    t->idx = idx;
    t->nview = top_view(s, t->filter, t->sort_col, t->reverse, t->idx);
    /* Keep the cursor on the same house when it is still in the view. */
    size_t k = 0;
    while (k < t->nview && strcmp(s->houses[t->idx[k]].h.id, t->sel) != 0)
        k++;
    if (k < t->nview)
        t->cur = k;
    else if (t->cur >= t->nview)
        t->cur = t->nview ? t->nview - 1 : 0;
    /* A house's page stays on that house, even once it is gone (it says so). */
    if (t->nview && (k < t->nview || !t->detail))
        snprintf(t->sel, sizeof t->sel, "%s", s->houses[t->idx[t->cur]].h.id);
}

static const top_house *selected(const tui *t) {
    if (!t->nview || t->cur >= t->nview)
        return NULL;
    const top_house *h = &t->snaps[0].houses[t->idx[t->cur]];
    return strcmp(h->h.id, t->sel) == 0 ? h : NULL;
}

static void fetch_recent(tui *t) {
    free(t->recent);
    t->recent = NULL;
    t->nrecent = 0;
    t->recent_of[0] = '\0';
    if (!t->detail || !t->sel[0])
        return;
    char err[256];
    if (gp_reg_recent(t->rc, t->c->prefix, t->sel, NRECENT, &t->recent, &t->nrecent, err,
                      sizeof err) == 0)
        snprintf(t->recent_of, sizeof t->recent_of, "%s", t->sel);
    else
        snprintf(t->err, sizeof t->err, "%s", err);
}

static void refresh_data(tui *t) {
    top_snap s;
    char err[256];
    int rv = top_fetch(t->rc, t->c->prefix, &s, err, sizeof err);
    if (rv != 0 && t->have_data && !t->err[0]) {
        /* Connections are dropped on error and made again on the next command: one more
         * try at once hides a Redis restart between two refreshes. */
        rv = top_fetch(t->rc, t->c->prefix, &s, err, sizeof err);
    }
    if (rv != 0) {
        snprintf(t->err, sizeof t->err, "%s", err);
        return;
    }
    t->err[0] = '\0';
    const top_snap *prev[NSNAPS];
    size_t np = 0;
    for (int i = t->nsnaps - 1; i >= 0; i--) /* oldest first */
        prev[np++] = &t->snaps[i];
    top_compute_rates(&s, prev, np);
    top_hist_push(&t->hist, &t->nhist, &s);
    if (t->nsnaps == NSNAPS)
        top_snap_clear(&t->snaps[NSNAPS - 1]);
    else
        t->nsnaps++;
    memmove(&t->snaps[1], &t->snaps[0], (NSNAPS - 1) * sizeof t->snaps[0]);
    t->snaps[0] = s;
    t->have_data = 1;
    t->tun = top_has_tun(&t->snaps[0]);
    t->ok_mono = mono_ms();
    rebuild_view(t);
    fetch_recent(t);
}

/* --- drawing ---------------------------------------------------------------------------- */

enum { C_ERR = 1, C_OK, C_WARN };

/* Writes s at (y, x), at most w columns (ASCII-safe cut). */
static void put(int y, int x, int w, const char *s) {
    if (w <= 0 || y < 0 || y >= LINES || x >= COLS)
        return;
    if (x + w > COLS)
        w = COLS - x;
    char buf[1024];
    top_fit(buf, sizeof buf, s, w);
    mvaddstr(y, x, buf);
}

/* A cell of width w, right-aligned when asked. */
static void cell(int y, int x, int w, const char *s, int right) {
    if (w <= 0)
        return;
    char buf[256];
    top_fit(buf, sizeof buf, s, w);
    int pad = right ? w - (int)strlen(buf) : 0;
    put(y, x + (pad > 0 ? pad : 0), w, buf);
}

/* Clears a line and fills it with attr (for bars). */
static void bar(int y, attr_t attr) {
    if (y < 0 || y >= LINES)
        return;
    attron(attr);
    mvhline(y, 0, ' ', COLS);
    attroff(attr);
}

static void draw_title(tui *t, const char *what) {
    bar(0, A_REVERSE);
    attron(A_REVERSE | A_BOLD);
    char s[512], clock[16] = "";
    if (t->have_data) {
        time_t now = (time_t)(t->snaps[0].now_ms / 1000);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(clock, sizeof clock, "%H:%M:%SZ", &tm);
    }
    snprintf(s, sizeof s, " ghostport top  %s%sredis %s  prefix %s", what, *what ? "  " : "",
             t->redis_host, t->c->prefix);
    int cw = (int)strlen(clock);
    put(0, 0, COLS - cw - 2, s);
    if (cw + 1 < COLS)
        put(0, COLS - cw - 1, cw, clock);
    attroff(A_REVERSE | A_BOLD);
}

/* Line 1: the Redis problem when there is one, else a summary. */
static void draw_status(tui *t) {
    char s[512];
    if (t->err[0]) {
        /* What matters first, for a narrow terminal: the problem, then its details. */
        if (t->have_data)
            snprintf(s, sizeof s, "REDIS UNREACHABLE, retrying (data %llds old): %s",
                     (mono_ms() - t->ok_mono) / 1000, t->err);
        else
            snprintf(s, sizeof s, "REDIS UNREACHABLE, retrying: %s", t->err);
        attr_t a = A_BOLD | (t->colors ? COLOR_PAIR(C_ERR) : A_REVERSE);
        attron(a);
        put(1, 0, COLS, s);
        attroff(a);
        return;
    }
    const top_snap *sn = &t->snaps[0];
    size_t on, off, dis;
    double req = 0, er = 0;
    int rknown = 0;
    top_count_states(sn, &on, &off, &dis);
    for (size_t i = 0; i < sn->nbridges; i++)
        if (sn->bridges[i].r.req >= 0) {
            req += sn->bridges[i].r.req;
            er += sn->bridges[i].r.err > 0 ? sn->bridges[i].r.err : 0;
            rknown = 1;
        }
    char rq[16], re[16];
    top_fmt_rate(rq, sizeof rq, rknown ? req : -1);
    top_fmt_rate(re, sizeof re, rknown ? er : -1);
    /* Offline and disabled counts only when there are some: the line is narrow. */
    char offs[32] = "", diss[32] = "";
    if (off)
        snprintf(offs, sizeof offs, ", %zu offline", off);
    if (dis)
        snprintf(diss, sizeof diss, ", %zu disabled", dis);
    int n = snprintf(s, sizeof s, "%zu bridges  %zu houses: %zu online%s%s  req/s %s  err/s %s",
                     sn->nbridges, sn->nhouses, on, offs, diss, rq, re);
    if (t->tun) { /* the tunnel over every house: those up, packets/s and bits/s in/out */
        size_t up = 0;
        double r[4] = {-1, -1, -1, -1};
        for (size_t i = 0; i < sn->nhouses; i++) {
            char a[2 * GP_IP_ADDR_STRLEN];
            const top_rates *hr = &sn->houses[i].r;
            up += top_tun_addr(&sn->houses[i].h, a, sizeof a);
            for (int k = 0; k < 4; k++)
                if (hr->v[TOP_R_TUN_PKTS_IN + k] >= 0)
                    r[k] = (r[k] > 0 ? r[k] : 0) + hr->v[TOP_R_TUN_PKTS_IN + k];
        }
        char pps[32], bps[32];
        top_fmt_inout(pps, sizeof pps, r[0], r[1], 0);
        top_fmt_inout(bps, sizeof bps, r[2], r[3], 1);
        snprintf(s + n, sizeof s - (size_t)n, "  tun %zu up: %s pkt/s %s bit/s", up, pps, bps);
    }
    if (!t->have_data)
        snprintf(s, sizeof s, "connecting to Redis...");
    put(1, 0, COLS, s);
}

/* Drop ranks: the higher, the sooner a column goes when the terminal is narrow. */
static const top_col_spec BCOLS[] = {
    {"BRIDGE", 6, 20, 0, 0}, {"HOST", 4, 18, 3, 0}, {"HOUSES", 6, 6, 0, 1}, {"REQ/s", 6, 7, 0, 1},
    {"ERR/s", 6, 6, 6, 1},   {"IN/s", 6, 7, 5, 1},  {"OUT/s", 6, 7, 4, 1},  {"REDIS", 6, 7, 2, 1},
};
#define NBCOLS (int)(sizeof BCOLS / sizeof BCOLS[0])

/* The bridges pane from row y, at most maxrows rows with its header. Returns rows used. */
static int draw_bridges(tui *t, int y, int maxrows) {
    const top_snap *s = &t->snaps[0];
    int w[NBCOLS];
    top_layout(BCOLS, NBCOLS, COLS, w);
    attron(A_BOLD);
    for (int i = 0, x = 0; i < NBCOLS; i++) {
        cell(y, x, w[i], BCOLS[i].title, BCOLS[i].right);
        x += w[i] ? w[i] + 1 : 0;
    }
    attroff(A_BOLD);
    if (!s->nbridges) {
        put(y + 1, 0, COLS,
            t->have_data ? "  (no bridge has published its stats in the last 5 s)" : "");
        return 2;
    }
    int rows = (int)s->nbridges;
    int more = 0;
    if (rows > maxrows - 1) {
        rows = maxrows - 2 > 0 ? maxrows - 2 : 0;
        more = (int)s->nbridges - rows;
    }
    for (int r = 0; r < rows; r++) {
        const top_bridge *b = &s->bridges[r];
        char v[NBCOLS][132];
        snprintf(v[0], sizeof v[0], "%s", b->s.id);
        snprintf(v[1], sizeof v[1], "%s", b->s.host[0] ? b->s.host : "-");
        snprintf(v[2], sizeof v[2], b->s.houses < 0 ? "-" : "%lld", b->s.houses);
        top_fmt_rate(v[3], sizeof v[3], b->r.req);
        top_fmt_rate(v[4], sizeof v[4], b->r.err);
        top_fmt_bytes(v[5], sizeof v[5], b->r.in);
        top_fmt_bytes(v[6], sizeof v[6], b->r.out);
        top_fmt_ms(v[7], sizeof v[7], b->s.redis_rtt_ms);
        for (int i = 0, x = 0; i < NBCOLS; i++) {
            cell(y + 1 + r, x, w[i], v[i], BCOLS[i].right);
            x += w[i] ? w[i] + 1 : 0;
        }
    }
    if (more) {
        char m[64];
        snprintf(m, sizeof m, "  ... %d more bridge%s", more, more > 1 ? "s" : "");
        put(y + 1 + rows, 0, COLS, m);
        rows++;
    }
    return rows + 1;
}

/* The L3 tunnel's columns come last, shown while some house has an address (top_has_tun):
 * packets/s and bits/s as "in/out" (in: from the house into the hub). On a narrow terminal
 * FEC/s goes first, then the bits, the address and the packets among the others. */
static const top_col_spec HCOLS[TOP_NCOLS] = {
    [TOP_COL_ID] = {"HOUSE", 8, 28, 0, 0},
    [TOP_COL_BRIDGE] = {"BRIDGE", 6, 18, 3, 0},
    [TOP_COL_TRANSPORT] = {"TRANS", 5, 5, 5, 0},
    [TOP_COL_SINCE] = {"SINCE", 6, 7, 8, 1},
    [TOP_COL_SEEN] = {"SEEN", 5, 6, 7, 1},
    [TOP_COL_RTT] = {"RTT", 6, 6, 2, 1},
    [TOP_COL_LOSS] = {"LOSS", 5, 5, 9, 1},
    [TOP_COL_REQ] = {"REQ/s", 6, 7, 1, 1},
    [TOP_COL_ERR] = {"ERR/s", 6, 6, 6, 1},
    [TOP_COL_STATE] = {"STATE", 7, 8, 4, 0},
    [TOP_COL_TUN] = {"TUN", 12, 15, 5, 0},
    [TOP_COL_TUN_PPS] = {"PKT/s i/o", 10, 11, 2, 1},
    [TOP_COL_TUN_BPS] = {"BIT/s i/o", 10, 10, 6, 1},
    [TOP_COL_FEC] = {"FEC/s", 5, 6, 10, 1},
};

/* Whether column i is part of the table now. */
static int col_shown(const tui *t, int i) {
    return i < TOP_COL_TUN_FIRST || t->tun;
}

/* The houses table's widths (0: not shown) for this terminal. */
static void house_layout(const tui *t, int w[TOP_NCOLS]) {
    top_col_spec sp[TOP_NCOLS];
    int map[TOP_NCOLS], cw[TOP_NCOLS], n = 0;
    for (int i = 0; i < TOP_NCOLS; i++) {
        w[i] = 0;
        if (col_shown(t, i)) {
            sp[n] = HCOLS[i];
            map[n++] = i;
        }
    }
    top_layout(sp, n, COLS, cw);
    for (int k = 0; k < n; k++)
        w[map[k]] = cw[k];
}

#define CELL 132
static void house_cells(const tui *t, const top_house *h, char v[TOP_NCOLS][CELL]) {
    const gp_reg_house *g = &h->h;
    long long now = t->snaps[0].now_ms;
    for (int i = 0; i < TOP_NCOLS; i++)
        snprintf(v[i], CELL, "-");
    snprintf(v[TOP_COL_ID], CELL, "%s", g->id);
    /* SINCE: in its state since (online: taken by a bridge; offline: last heard from); an
     * offline house's bridge: the one that held it last, in parentheses. */
    top_fmt_age(v[TOP_COL_SINCE], CELL, now, top_state_since(g));
    top_fmt_age(v[TOP_COL_SEEN], CELL, now, top_last_seen(g));
    if (g->st.connected) {
        if (g->st.bridge[0])
            snprintf(v[TOP_COL_BRIDGE], CELL, "%s", g->st.bridge);
        if (g->st.transport[0])
            snprintf(v[TOP_COL_TRANSPORT], CELL, "%s", g->st.transport);
        top_fmt_ms(v[TOP_COL_RTT], CELL, g->st.rtt_ms);
        top_fmt_pct(v[TOP_COL_LOSS], CELL, g->st.loss_pct);
    } else if (g->last_bridge[0]) {
        snprintf(v[TOP_COL_BRIDGE], CELL, "(%.*s)", CELL - 3, g->last_bridge);
    }
    top_fmt_rate(v[TOP_COL_REQ], CELL, h->r.req);
    top_fmt_rate(v[TOP_COL_ERR], CELL, h->r.err);
    snprintf(v[TOP_COL_STATE], CELL, "%s", gp_reg_house_state(g));
    char a[2 * GP_IP_ADDR_STRLEN];
    top_tun_addr(g, a, sizeof a);
    a[strcspn(a, ",")] = '\0'; /* the first: IPv4 when the pools have both */
    if (a[0])
        snprintf(v[TOP_COL_TUN], CELL, "%s", a);
    top_fmt_inout(v[TOP_COL_TUN_PPS], CELL, h->r.tun_pkts_in, h->r.tun_pkts_out, 0);
    top_fmt_inout(v[TOP_COL_TUN_BPS], CELL, h->r.tun_bytes_in, h->r.tun_bytes_out, 1);
    top_fmt_rate(v[TOP_COL_FEC], CELL, h->r.fec);
}

static void draw_houses(tui *t, int y, int rows) {
    int w[TOP_NCOLS];
    house_layout(t, w);
    bar(y, A_REVERSE);
    attron(A_REVERSE);
    for (int i = 0, x = 0; i < TOP_NCOLS; i++) {
        if (!w[i])
            continue;
        char title[24];
        snprintf(title, sizeof title, "%s%s", HCOLS[i].title,
                 i == t->sort_col ? (t->reverse ? "v" : "^") : "");
        if (i == t->sort_col)
            attron(A_BOLD);
        cell(y, x, w[i], title, HCOLS[i].right);
        if (i == t->sort_col)
            attroff(A_BOLD);
        x += w[i] + 1;
    }
    attroff(A_REVERSE);
    rows--;
    y++;
    if (rows <= 0)
        return;
    if (!t->nview) {
        put(y, 0, COLS,
            !t->have_data         ? "  (waiting for Redis)"
            : t->snaps[0].nhouses ? "  (no house matches the filter)"
                                  : "  (no house registered)");
        return;
    }
    /* Scroll so that the cursor stays visible. */
    if (t->cur < t->scroll)
        t->scroll = t->cur;
    if (t->cur >= t->scroll + (size_t)rows)
        t->scroll = t->cur - (size_t)rows + 1;
    if (t->scroll + (size_t)rows > t->nview)
        t->scroll = t->nview > (size_t)rows ? t->nview - (size_t)rows : 0;
    for (int r = 0; r < rows && t->scroll + (size_t)r < t->nview; r++) {
        size_t k = t->scroll + (size_t)r;
        const top_house *h = &t->snaps[0].houses[t->idx[k]];
        char v[TOP_NCOLS][CELL];
        house_cells(t, h, v);
        attr_t a = k == t->cur ? A_REVERSE : h->h.st.connected ? A_NORMAL : A_DIM;
        if (k == t->cur)
            bar(y + r, A_REVERSE);
        attron(a);
        for (int i = 0, x = 0; i < TOP_NCOLS; i++) {
            if (!w[i])
                continue;
            attr_t ca = 0;
            if (t->colors && k != t->cur) {
                if (i == TOP_COL_STATE && h->h.disabled)
                    ca = COLOR_PAIR(C_WARN) | A_BOLD;
                else if (i == TOP_COL_ERR && h->r.err > 0)
                    ca = COLOR_PAIR(C_ERR);
            }
            attron(ca);
            cell(y + r, x, w[i], v[i], HCOLS[i].right);
            attroff(ca);
            x += w[i] + 1;
        }
        attroff(a);
    }
}

static void draw_footer(tui *t) {
    int y = LINES - 1;
    char s[512];
    if (t->editing) {
        snprintf(s, sizeof s, "filter: %s", t->filter);
        bar(y, A_NORMAL);
        put(y, 0, COLS, s);
        put(y, COLS > 58 ? COLS - 38 : COLS, 38, "Enter: keep  Esc: cancel");
        move(y, 8 + (int)strlen(t->filter) < COLS ? 8 + (int)strlen(t->filter) : COLS - 1);
        return;
    }
    char pos[32] = "";
    if (t->nview)
        snprintf(pos, sizeof pos, " %zu/%zu", t->cur + 1, t->nview);
    if (t->detail)
        snprintf(s, sizeof s, "q quit  Esc back  Up/Down: previous/next house%s", pos);
    else
        snprintf(s, sizeof s, "q quit  Enter detail  s/S sort:%s%s  r rev  / filter%s%s%s",
                 top_col_names[t->sort_col], t->reverse ? "(desc)" : "", t->filter[0] ? ":" : "",
                 t->filter, pos);
    bar(y, A_REVERSE);
    attron(A_REVERSE);
    put(y, 0, COLS, s);
    attroff(A_REVERSE);
}

static void draw_table(tui *t) {
    draw_title(t, "");
    draw_status(t);
    int body = LINES - 3; /* title, status, footer */
    /* The bridges pane takes at most a third of the body (at least header + one row). */
    int brows = body / 3 > 2 ? body / 3 : 2;
    int used = draw_bridges(t, 2, brows);
    draw_houses(t, 2 + used, body - used);
}

/* One sparkline row at y: label (8 columns), the last n samples in sw columns, then "max "
 * and their peak as fmt writes it (11 columns). */
static void spark_row(const tui *t, int y, const char *label, const float *v, int n, int sw,
                      void (*fmt)(char *out, size_t cap, double x)) {
    char line[TOP_HIST * 3 + 1], peak[32], s[48];
    double mx = top_sparkline(v, n, sw, t->utf8, line, sizeof line);
    put(y, 0, 8, label);
    /* Newest sample at the right edge; glyphs do not go through top_fit (ASCII only). */
    mvaddstr(y, 8 + sw - (n < sw ? n : sw), line);
    fmt(peak, sizeof peak, mx);
    snprintf(s, sizeof s, "max %s", peak);
    put(y, 8 + sw + 1, 11, s);
}

static void draw_detail(tui *t) {
    const top_house *th = selected(t);
    char title[128];
    snprintf(title, sizeof title, "house %s", th ? th->h.id : t->sel);
    draw_title(t, title);
    draw_status(t);
    if (!th) {
        put(3, 0, COLS, t->have_data ? "  (no such house registered)" : "");
        return;
    }
    const gp_reg_house *h = &th->h;
    long long now = t->snaps[0].now_ms;
    char s[1024], a[32], b[32], c[32], d[32];
    int y = 2;
    const char *hs = gp_reg_house_state(h);
    if (h->st.connected)
        snprintf(s, sizeof s, "%s%s  bridge %s  transport %s  addr %s", hs,
                 h->disabled ? " (still connected)" : "", h->st.bridge[0] ? h->st.bridge : "-",
                 h->st.transport[0] ? h->st.transport : "-", h->st.addr[0] ? h->st.addr : "-");
    else
        snprintf(s, sizeof s, "%s%s  last held by bridge %s", hs, h->disabled ? " (offline)" : "",
                 h->last_bridge[0] ? h->last_bridge : "-");
    attron(A_BOLD);
    put(y++, 0, COLS, s);
    attroff(A_BOLD);
    top_fmt_age(a, sizeof a, now, top_state_since(h));
    top_fmt_age(b, sizeof b, now, top_last_seen(h));
    top_fmt_ms(c, sizeof c, h->st.connected ? h->st.rtt_ms : -1);
    top_fmt_pct(d, sizeof d, h->st.connected ? h->st.loss_pct : -1);
    snprintf(s, sizeof s, "%s for %s  last seen %s ago  rtt %s  loss %s",
             h->st.connected ? "connected" : "offline", a, b, c, d);
    put(y++, 0, COLS, s);
    top_fmt_rate(a, sizeof a, th->r.req);
    top_fmt_rate(b, sizeof b, th->r.err);
    top_fmt_bytes(c, sizeof c, th->r.in);
    top_fmt_bytes(d, sizeof d, th->r.out);
    int n = snprintf(s, sizeof s, "req/s %s  err/s %s  in %s/s  out %s/s", a, b, c, d);
    if (h->st.connected && h->st.req_total >= 0)
        snprintf(s + n, sizeof s - (size_t)n, "  totals %lld req, %lld err", h->st.req_total,
                 h->st.err_total);
    put(y++, 0, COLS, s);
    /* The L3 tunnel: addresses and routes, rates, totals (when the house has any of it). */
    char ta[2 * GP_IP_ADDR_STRLEN];
    int up = top_tun_addr(h, ta, sizeof ta);
    int has_tun = ta[0] || h->ntun_routes || (h->st.connected && h->st.tun_pkts_in >= 0);
    if (has_tun) {
        char routes[GP_TUN_ROUTES_MAX * (GP_CIDR_STRLEN + 2)];
        gp_cidr_list_format(h->tun_routes, h->ntun_routes, ", ", routes, sizeof routes);
        char l[sizeof routes + 128];
        snprintf(l, sizeof l, "tun %s%s  routes %s", ta[0] ? ta : "-",
                 up      ? " (up)"
                 : ta[0] ? " (not granted now)"
                         : "",
                 h->ntun_routes ? routes : "-");
        put(y++, 0, COLS, l);
        char e[32];
        top_fmt_rate(a, sizeof a, th->r.tun_pkts_in);
        top_fmt_bits(b, sizeof b, th->r.tun_bytes_in);
        top_fmt_rate(c, sizeof c, th->r.tun_pkts_out);
        top_fmt_bits(d, sizeof d, th->r.tun_bytes_out);
        top_fmt_rate(e, sizeof e, th->r.fec);
        snprintf(s, sizeof s, "tun in %s pkt/s %s bit/s  out %s pkt/s %s bit/s  fec %s/s", a, b, c,
                 d, e);
        put(y++, 0, COLS, s);
        const gp_state *st = &h->st;
        if (st->connected && st->tun_pkts_in >= 0) {
            top_fmt_bytes(a, sizeof a, (double)st->tun_bytes_in);
            top_fmt_bytes(b, sizeof b, (double)st->tun_bytes_out);
            snprintf(s, sizeof s,
                     "tun totals %lld pkts in (%sB), %lld out (%sB), %lld dropped  "
                     "fec repaired %lld",
                     st->tun_pkts_in, a, st->tun_pkts_out, b, st->tun_drops,
                     st->fec_repaired < 0 ? 0 : st->fec_repaired);
            put(y++, 0, COLS, s);
        }
    }
    snprintf(s, sizeof s, "labels %s", h->labels[0] ? h->labels : "{}");
    put(y++, 0, COLS, s);
    y++;
    /* Sparklines: label (8), the line, the peak. */
    const top_hist *hi = top_hist_find(t->hist, t->nhist, h->id);
    int sw = COLS - 8 - 12;
    if (sw > TOP_HIST)
        sw = TOP_HIST;
    if (sw > 4 && hi) {
        spark_row(t, y++, "req/s", hi->req, hi->n, sw, top_fmt_rate);
        spark_row(t, y++, "rtt", hi->rtt, hi->n, sw, top_fmt_ms);
        if (has_tun) /* the tunnel's packets/s, in + out */
            spark_row(t, y++, "tun pkt", hi->tun_pps, hi->n, sw, top_fmt_rate);
        y++;
    }
    /* Recent requests fill the rest. */
    int rows = LINES - 1 - y;
    if (rows < 3)
        return;
    static const top_col_spec RCOLS[] = {
        {"TIME", 8, 8, 3, 0}, {"METHOD", 6, 7, 0, 0}, {"STATUS", 6, 6, 0, 1},
        {"MS", 6, 7, 1, 1},   {"PATH", 8, 200, 0, 0}, {"ERROR", 8, 16, 2, 0},
    };
    enum { NR = sizeof RCOLS / sizeof RCOLS[0] };
    int w[NR];
    top_layout(RCOLS, NR, COLS, w);
    int have = t->nrecent && strcmp(t->recent_of, h->id) == 0;
    snprintf(s, sizeof s, "RECENT REQUESTS (%zu, newest first)", have ? t->nrecent : 0);
    attron(A_BOLD);
    put(y++, 0, COLS, s);
    attroff(A_BOLD);
    bar(y, A_REVERSE);
    attron(A_REVERSE);
    for (int i = 0, x = 0; i < NR; i++) {
        if (!w[i])
            continue;
        cell(y, x, w[i], RCOLS[i].title, RCOLS[i].right);
        x += w[i] + 1;
    }
    attroff(A_REVERSE);
    y++;
    rows -= 2;
    if (!have) {
        put(y, 0, COLS, "  (no recent requests recorded for this house)");
        return;
    }
    for (int r = 0; r < rows && (size_t)r < t->nrecent; r++) {
        const gp_reg_recent_req *q = &t->recent[r];
        char v[NR][260];
        time_t ts = (time_t)(q->ts_ms / 1000);
        struct tm tm;
        gmtime_r(&ts, &tm);
        if (q->ts_ms >= 0)
            strftime(v[0], sizeof v[0], "%H:%M:%S", &tm);
        else
            snprintf(v[0], sizeof v[0], "-");
        snprintf(v[1], sizeof v[1], "%s", q->method[0] ? q->method : "-");
        snprintf(v[2], sizeof v[2], q->status < 0 ? "-" : "%d", q->status);
        top_fmt_ms(v[3], sizeof v[3], (double)q->ms);
        snprintf(v[4], sizeof v[4], "%s", q->path[0] ? q->path : "-");
        snprintf(v[5], sizeof v[5], "%s", q->error);
        attr_t ra = t->colors && (q->status >= 500 || q->error[0]) ? COLOR_PAIR(C_ERR) : 0;
        attron(ra);
        for (int i = 0, x = 0; i < NR; i++) {
            if (!w[i])
                continue;
            cell(y + r, x, w[i], v[i], RCOLS[i].right);
            x += w[i] + 1;
        }
        attroff(ra);
    }
}

static void draw(tui *t) {
    erase();
    if (LINES < 8 || COLS < 30) {
        put(0, 0, COLS, "ghostport top: terminal too small (q quits)");
    } else {
        if (t->detail)
            draw_detail(t);
        else
            draw_table(t);
        draw_footer(t);
    }
    curs_set(t->editing ? 1 : 0);
    refresh();
}

/* --- keys ------------------------------------------------------------------------------- */

static void move_cursor(tui *t, long delta) {
    if (!t->nview)
        return;
    long c = (long)t->cur + delta;
    if (c < 0)
        c = 0;
    if (c >= (long)t->nview)
        c = (long)t->nview - 1;
    t->cur = (size_t)c;
    snprintf(t->sel, sizeof t->sel, "%s", t->snaps[0].houses[t->idx[t->cur]].h.id);
}

static int page_rows(void) {
    return LINES / 2 > 1 ? LINES / 2 : 1;
}

/* Returns 1 to quit. */
static int on_key(tui *t, int ch) {
    if (t->editing) {
        size_t l = strlen(t->filter);
        if (ch == 27) { /* Esc: back to the filter before */
            snprintf(t->filter, sizeof t->filter, "%s", t->filter_before);
            t->editing = 0;
        } else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
            t->editing = 0;
        } else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
            if (l)
                t->filter[l - 1] = '\0';
        } else if (ch == 21) { /* Ctrl-U */
            t->filter[0] = '\0';
        } else if (ch > 32 && ch < 127 && l + 1 < sizeof t->filter) {
            t->filter[l] = (char)ch;
            t->filter[l + 1] = '\0';
        }
        rebuild_view(t); /* the filter applies as you type */
        return 0;
    }
    switch (ch) {
    case 'q':
    case 'Q':
        return 1;
    case KEY_UP:
    case 'k':
        move_cursor(t, -1);
        break;
    case KEY_DOWN:
    case 'j':
        move_cursor(t, 1);
        break;
    case KEY_PPAGE:
        move_cursor(t, -page_rows());
        break;
    case KEY_NPAGE:
    case ' ':
        move_cursor(t, page_rows());
        break;
    case KEY_HOME:
    case 'g':
        move_cursor(t, -(long)t->nview);
        break;
    case KEY_END:
    case 'G':
        move_cursor(t, (long)t->nview);
        break;
    case '\n':
    case '\r':
    case KEY_ENTER:
    case KEY_RIGHT:
    case 'l':
        if (selected(t) && !t->detail) {
            t->detail = 1;
            fetch_recent(t);
        }
        break;
    case 12: /* Ctrl-L: a garbled terminal (ssh, another program wrote on it) */
        clearok(curscr, TRUE);
        break;
    case 27:
    case KEY_LEFT:
    case KEY_BACKSPACE:
    case 127:
    case 'h':
        t->detail = 0;
        break;
    case 's':
    case '>':
    case 'S':
    case '<':
        if (!t->detail) { /* the next (previous) column shown */
            int step = ch == 's' || ch == '>' ? 1 : TOP_NCOLS - 1;
            do
                t->sort_col = (t->sort_col + step) % TOP_NCOLS;
            while (!col_shown(t, t->sort_col));
            rebuild_view(t);
        }
        break;
    case 'r':
    case 'R':
        if (!t->detail) {
            t->reverse = !t->reverse;
            rebuild_view(t);
        }
        break;
    case '/':
        if (!t->detail) {
            snprintf(t->filter_before, sizeof t->filter_before, "%s", t->filter);
            t->editing = 1;
        }
        break;
    default:
        break;
    }
    if (t->detail && (ch == KEY_UP || ch == KEY_DOWN || ch == 'j' || ch == 'k'))
        fetch_recent(t); /* another house's page */
    return 0;
}

/* --- the loop --------------------------------------------------------------------------- */

int top_tui_run(cli_ctx *c, const top_opts *o) {
    gp_rurl u;
    if (cli_redis_addr(c, &u) != 0)
        return CLI_USAGE;
    tui t = {.c = c, .o = o, .sort_col = o->sort_col, .reverse = o->reverse};
    gp_rurl_hostport(u.host, u.port, t.redis_host, sizeof t.redis_host);
    if (o->filter)
        snprintf(t.filter, sizeof t.filter, "%s", o->filter);
    if (o->house) {
        snprintf(t.sel, sizeof t.sel, "%s", o->house);
        t.detail = 1;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        gp_rurl_wipe(&u);
        cli_err(c, "top needs a terminal; use --once or --json for plain output");
        return CLI_USAGE;
    }
    /* A short timeout: the view should not freeze for long on a Redis that went silent. */
    t.rc = br_rc_new_url(&u, 1500);
    gp_rurl_wipe(&u);
    if (!t.rc) {
        cli_err(c, "out of memory");
        return CLI_USAGE;
    }

    /* Before initscr: curses installs its own SIGINT/SIGTERM handlers only where none is set,
     * and we want ours (a flag; endwin runs on the way out). SIGWINCH stays curses's. */
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a Redis connection closing under a write */

    setlocale(LC_ALL, "");
    t.utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    if (!newterm(NULL, stdout, stdin)) {
        cli_err(c, "cannot use this terminal (TERM=%s)", getenv("TERM") ? getenv("TERM") : "unset");
        br_rc_free(t.rc);
        return CLI_USAGE;
    }
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    /* Esc alone vs. the start of an arrow key's sequence: 100 ms leaves room for ssh. */
    set_escdelay(100);
    curs_set(0);
    if (has_colors()) {
        start_color();
        use_default_colors();
        init_pair(C_ERR, COLOR_RED, -1);
        init_pair(C_OK, COLOR_GREEN, -1);
        init_pair(C_WARN, COLOR_YELLOW, -1);
        t.colors = 1;
    }

    long long next = 0;
    int dirty = 1;
    while (!g_stop) {
        long long now = mono_ms();
        if (now >= next) {
            refresh_data(&t);
            next = mono_ms() + o->interval_ms;
            dirty = 1;
        }
        if (dirty)
            draw(&t);
        dirty = 0;
        long long wait = next - mono_ms();
        timeout(wait < 0 ? 0 : wait > 250 ? 250 : (int)wait);
        int ch = getch();
        if (ch == ERR) {
            /* Redraw once a second while Redis is away: the age of the data moves. */
            dirty = t.err[0] != 0 && now / 1000 != mono_ms() / 1000;
            continue;
        }
        dirty = 1;
        if (ch == KEY_RESIZE)
            continue; /* curses has the new LINES/COLS; draw() lays out again */
        if (on_key(&t, ch))
            break;
    }
    endwin();
    for (int i = 0; i < t.nsnaps; i++)
        top_snap_clear(&t.snaps[i]);
    free(t.hist);
    free(t.idx);
    free(t.recent);
    br_rc_free(t.rc);
    return CLI_OK;
}
