/* cli_top.h — `ghostport top`: the model behind the live view, pure (no Redis, no terminal,
 * no clock: times are passed in). A snapshot is what Redis holds at one instant: every
 * registered house with its live state and counters, every bridge's stats hash (ADMIN.md).
 * Rates are deltas of those totals between snapshots. Also the column layout, sorting,
 * filtering, history and the number formats shared by the curses view (cli_top_tui.c) and
 * the plain text / JSON output (cli_top.c). */
#ifndef GP_CLI_TOP_H
#define GP_CLI_TOP_H

#include "../store/registry.h"
#include "cli_cmd.h"

#include <stddef.h>

/* The counters rates are taken of, as indexes into top_rates.v: a house's requests, errors,
 * body bytes from it and to it; its rudp session's FEC repairs; its L3 tunnel's packets and
 * bytes in (from the house into the hub) and out (to the house). Bridges publish the first
 * four only (their other rates stay unknown). */
enum {
    TOP_R_REQ,
    TOP_R_ERR,
    TOP_R_IN,
    TOP_R_OUT,
    TOP_R_FEC,
    TOP_R_TUN_PKTS_IN,
    TOP_R_TUN_PKTS_OUT,
    TOP_R_TUN_BYTES_IN,
    TOP_R_TUN_BYTES_OUT,
    TOP_NRATES
};

/* Rates per second (bytes/s for the byte counters); -1 when unknown (first sample,
 * reconnection, counters absent). By name or by index. */
typedef union top_rates {
    struct {
        double req, err, in, out, fec, tun_pkts_in, tun_pkts_out, tun_bytes_in, tun_bytes_out;
    };
    double v[TOP_NRATES];
} top_rates;
extern const top_rates top_rates_unknown; /* every rate -1 */

/* A house's counters as top_rates indexes them (-1: absent; all -1 while offline). */
void top_house_counters(const gp_reg_house *h, long long c[TOP_NRATES]);

typedef struct top_bridge {
    gp_reg_bstats s;
    top_rates r;
} top_bridge;

typedef struct top_house {
    gp_reg_house h;
    top_rates r;
} top_house;

/* One sample. Arrays are sorted by id (as the registry returns them) and owned by the
 * snapshot (top_snap_clear). */
typedef struct top_snap {
    long long now_ms; /* Redis's clock when sampled */
    top_bridge *bridges;
    size_t nbridges;
    top_house *houses;
    size_t nhouses;
} top_snap;

void top_snap_clear(top_snap *s); /* frees the arrays, zeroes *s */

/* Fills the rates of cur from the previous snapshots prev[0..nprev) (oldest first; NULL
 * entries skipped). A record's rates are its counters' growth since the oldest earlier
 * sample of the same bridge run (pid, since_ms) or house connection (epoch, since_ms) whose
 * counters are no larger, over the time between them: the record's own ts_ms when it has
 * one (bridges stamp their stats), else the snapshots' now_ms. When no earlier sample is
 * older in that time (the bridge has not published since), the newest previous rates are
 * kept. Offline houses and counters the bridge does not publish stay unknown.
 * Counters that start from zero together are taken together, each group on its own: the
 * connection's (requests, errors, bytes), its rudp session's FEC repairs, its L3 grant's
 * (packets and bytes; a house asking again on the same connection is granted afresh). A
 * group whose counters went down has no earlier sample: it keeps its newest rates. */
void top_compute_rates(top_snap *cur, const top_snap *const *prev, size_t nprev);

/* The house's L3 addresses, comma-separated, into out[cap] ("" none; cap >= 2 *
 * GP_IP_ADDR_STRLEN): those its bridge routes to it now (the live state's tun_addr) while it
 * holds a grant, else those the registry gives it (gp_reg_house's tun4, tun6). Returns 1 for
 * the former (the tunnel is up), else 0. */
int top_tun_addr(const gp_reg_house *h, char *out, size_t cap);
/* 1 when some house of s has an L3 address (top_tun_addr): the tunnel's columns are shown. */
int top_has_tun(const top_snap *s);

/* When the house entered its state (ms): online, when a bridge took it (its live state's
 * since); else when it went offline (the last time a bridge heard from it, its hash's
 * last_seen); -1 unknown. And when a bridge last heard from it, online or not. */
long long top_state_since(const gp_reg_house *h);
long long top_last_seen(const gp_reg_house *h);
/* online / offline / disabled counts of s (disabled wins, as gp_house_state says). */
void top_count_states(const top_snap *s, size_t *online, size_t *offline, size_t *disabled);

/* Sortable columns of the houses table, in the order `s` cycles through them. */
enum {
    TOP_COL_ID,
    TOP_COL_BRIDGE,
    TOP_COL_TRANSPORT,
    TOP_COL_SINCE,
    TOP_COL_SEEN,
    TOP_COL_RTT,
    TOP_COL_LOSS,
    TOP_COL_REQ,
    TOP_COL_ERR,
    TOP_COL_STATE, /* online, offline, disabled (`disabled` too, as --sort's name) */
    /* The L3 tunnel's (shown when top_has_tun): address, packets/s and bits/s (in + out),
     * FEC repairs/s. */
    TOP_COL_TUN,
    TOP_COL_TUN_PPS,
    TOP_COL_TUN_BPS,
    TOP_COL_FEC,
    TOP_NCOLS
};
#define TOP_COL_TUN_FIRST TOP_COL_TUN
extern const char *const top_col_names[TOP_NCOLS]; /* "id", "bridge", ... (for --sort) */
/* The column named (case-insensitive; also "req/s" etc.), or -1. */
int top_col_by_name(const char *name);

/* Fills idx[0..) with the indexes of s's houses whose id contains filter
 * (case-insensitive; NULL or "" matches all), ordered by column col ascending (reverse:
 * descending); unknown values ("-") last either way, ties by id. Returns the count. */
size_t top_view(const top_snap *s, const char *filter, int col, int reverse, size_t *idx);

/* Column layout: fit columns into width. Each column has a minimum and maximum width (equal
 * for fixed ones) and a drop rank (0: never dropped; higher ranks go first when even the
 * minimum widths do not fit). Space left over is shared among the growable columns in
 * proportion to their (max - min). Columns are separated by one space. out_w[i] = 0: dropped.
 * Returns the total width used. */
typedef struct top_col_spec {
    const char *title;
    int minw, maxw, drop, right;
} top_col_spec;
int top_layout(const top_col_spec *spec, int n, int width, int *out_w);

/* Per-house history for the sparklines: the last TOP_HIST samples of req/s, RTT (ms) and
 * the L3 tunnel's packets/s (in + out), oldest first; -1 for no value. */
#define TOP_HIST 60
typedef struct top_hist {
    char id[GP_MAX_HOUSE_ID + 1];
    float req[TOP_HIST], rtt[TOP_HIST], tun_pps[TOP_HIST];
    int n; /* samples held (<= TOP_HIST) */
} top_hist;

/* Appends cur's sample to every house's history; *hist (malloc'd, sorted by id, freed with
 * free()) is rebuilt to hold exactly cur's houses. Returns 0 or -1 (out of memory: *hist
 * untouched). */
int top_hist_push(top_hist **hist, size_t *n, const top_snap *cur);
/* The history of house id, or NULL. */
const top_hist *top_hist_find(const top_hist *hist, size_t n, const char *id);

/* A sparkline of the last `width` of v[0..n) (oldest first) into out (NUL-terminated; up to
 * width*3+1 bytes with utf8): one glyph per sample scaled to the largest, " " for no value.
 * utf8: the eighths blocks U+2581..U+2588, else ASCII "_.-=+*#@". Returns the largest value
 * (0 if none). */
double top_sparkline(const float *v, int n, int width, int utf8, char *out, size_t cap);

/* Number formats, each into out[cap]; "-" for unknown (negative) values. */
void top_fmt_rate(char *out, size_t cap, double per_s);  /* "0", "3.2", "41", "1.2k" */
void top_fmt_bytes(char *out, size_t cap, double bytes); /* "0", "512", "1.2K", "3.4M" */
/* A rate of bytes/s as bits/s, SI prefixes: "0", "800", "8.1k", "12M", "1.2G". */
void top_fmt_bits(char *out, size_t cap, double bytes_per_s);
/* Two rates as "in/out" ("1.2k/0.9k", "-/-"): top_fmt_rate's, or top_fmt_bits's (bits). */
void top_fmt_inout(char *out, size_t cap, double in, double out_, int bits);
void top_fmt_ms(char *out, size_t cap, double ms);   /* "0.4ms", "41ms", "1.2s" */
void top_fmt_pct(char *out, size_t cap, double pct); /* "3.1%" */
/* Age of timestamp ts at now: "0.4s", "12s", "3m04s", "2h05m", "3d04h". */
void top_fmt_age(char *out, size_t cap, long long now_ms, long long ts_ms);
/* Copies s into out[cap] cut to `width` bytes (>= 1), marking a cut with '~' in the last
 * place. */
void top_fit(char *out, size_t cap, const char *s, int width);

/* --- I/O side (cli_top.c, cli_top_tui.c) ---------------------------------------------- */

/* Options of `ghostport top`. */
typedef struct top_opts {
    int once, json;  /* plain text / JSON snapshot instead of the live view */
    int interval_ms; /* refresh period; for once/json the gap between the two samples (0: one) */
    int sort_col, reverse;
    const char *filter; /* id substring, or NULL */
    const char *house;  /* once/json: only this house, with its recent requests; live view:
                           start on its detail page */
    const char *state;  /* once/json: rates against the snapshot saved there, then saved */
} top_opts;

/* Takes one snapshot: Redis's clock, the registry with every house's hashes (pipelined),
 * every bridge's stats (SCAN on every node). Rates are left unknown. 0, or GP_REG_REDIS /
 * GP_ERR_NOMEM with a message in err (s is then empty). */
int top_fetch(br_rc *rc, const char *prefix, top_snap *s, char *err, size_t errlen);

/* The live view (curses) until q or a signal. Returns the exit code. */
int top_tui_run(cli_ctx *c, const top_opts *o);

#endif
