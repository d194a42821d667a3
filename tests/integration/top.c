/* top.c — `ghostport top` and `ghostport house disable/enable`. The live view is driven in
 * tmux (a private server per test: tmux -L <unique socket>) at 80x24: the screen is read with
 * capture-pane and keys sent with send-keys, against a real bridge and house. --once/--json
 * are checked against stats written into Redis as ADMIN.md has the bridges write them (exact
 * values, rates from two snapshots), on one server and on a 3-node cluster. Every wait is a
 * bounded poll on a condition. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* --- tmux -------------------------------------------------------------------------------- */

static char g_sock[64]; /* this test's tmux server, "" when none was started */

/* tmux -L <sock> -f /dev/null args...; returns its output (malloc'd). */
#define TMUX(...) tmux_run((const char *const[]){__VA_ARGS__, NULL})
static char *tmux_run(const char *const *args) {
    const char *argv[32] = {"tmux", "-L", g_sock, "-f", "/dev/null"};
    int n = 5;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *out;
    h_capture((char *const *)argv, 10000, &out);
    return out;
}

/* Starts `ghostport --redis URL top ARGS` in a new tmux server, in an 80x24 window. A shell
 * around it writes its exit status to <test dir>/top.status (the shell survives Ctrl-C:
 * `trap : INT` lets the program take the signal, then the shell carries on), and the pane
 * stays after the end, to be looked at. */
static void tui_start(const char *redis_url, const char *args) {
    static int k;
    snprintf(g_sock, sizeof g_sock, "gp-top-%d-%d", (int)getpid(), k++);
    char cmd[3072];
    snprintf(cmd, sizeof cmd,
             "trap : INT; '%s' --redis '%s' top %s; echo $? > '%s/top.status.tmp' && "
             "mv '%s/top.status.tmp' '%s/top.status'",
             h_bin("ghostport"), redis_url, args, h_dir(), h_dir(), h_dir());
    free(TMUX("new-session", "-d", "-x", "80", "-y", "24", "-s", "top", cmd, ";", "set-option",
              "-g", "remain-on-exit", "on"));
}

static void tui_stop(void) {
    if (g_sock[0])
        free(TMUX("kill-server"));
    g_sock[0] = '\0';
}

static void top_fini(void) {
    tui_stop();
    h_fini();
}

TestSuite(top, .init = h_init, .fini = top_fini, .timeout = 150);

static char *screen(void) {
    return TMUX("capture-pane", "-p", "-t", "top");
}

/* Waits until the screen contains every needle (NULL-terminated) and none of the "!"-prefixed
 * ones; returns the screen (malloc'd) or fails the test showing the last one. */
#define WAIT_SCREEN(ms, ...) wait_screen(ms, (const char *const[]){__VA_ARGS__, NULL})
static char *wait_screen(int timeout_ms, const char *const *needles) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    char *s = NULL;
    for (;;) {
        free(s);
        s = screen();
        int ok = 1;
        for (int i = 0; needles[i] && ok; i++)
            ok = needles[i][0] == '!' ? !strstr(s, needles[i] + 1) : !!strstr(s, needles[i]);
        if (ok)
            return s;
        if (h_now_ms() > end)
            break;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* poll interval of a bounded wait */
    }
    cr_log_error("screen:\n%s", s);
    char all[512] = "";
    for (int i = 0; needles[i]; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "'%s' ", needles[i]);
    cr_assert_fail("screen did not show %s within %d ms", all, timeout_ms);
    return NULL;
}

static void keys(const char *const *k) {
    const char *argv[32] = {"send-keys", "-t", "top"};
    int n = 3;
    for (int i = 0; k[i] && n < 31; i++)
        argv[n++] = k[i];
    argv[n] = NULL;
    free(tmux_run(argv));
}
#define KEYS(...) keys((const char *const[]){__VA_ARGS__, NULL})

/* The screen line containing needle (static buffer; "" if none). */
static const char *line_with(const char *scr, const char *needle) {
    static char line[512];
    line[0] = '\0';
    const char *p = strstr(scr, needle);
    if (!p)
        return line;
    const char *b = p;
    while (b > scr && b[-1] != '\n')
        b--;
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - b) : strlen(b);
    if (n >= sizeof line)
        n = sizeof line - 1;
    memcpy(line, b, n);
    line[n] = '\0';
    return line;
}

/* Every line of the screen fits cols columns. */
static void fits(const char *scr, size_t cols) {
    for (const char *p = scr; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        cr_assert_leq(n, cols, "a line is wider than the terminal (%zu):\n%s", cols, scr);
        p = e ? e + 1 : p + n;
    }
}

/* Row number (0-based) of the first line containing needle, or -1. */
static int row_of(const char *scr, const char *needle) {
    const char *p = strstr(scr, needle);
    if (!p)
        return -1;
    int r = 0;
    for (const char *q = scr; q < p; q++)
        r += *q == '\n';
    return r;
}

/* Waits until ghostport top has ended and its pane is dead; returns its exit status. */
static int wait_exit(int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    char path[600];
    snprintf(path, sizeof path, "%s/top.status", h_dir());
    for (;;) {
        char *st = h_read_file(path, NULL);
        char *s = TMUX("display-message", "-p", "-t", "top", "#{pane_dead}");
        int dead = s[0] == '1';
        free(s);
        if (st && dead) {
            int v = atoi(st);
            free(st);
            return v;
        }
        free(st);
        if (h_now_ms() > end) {
            char *scr = screen();
            cr_log_error("screen:\n%s", scr);
            free(scr);
            cr_assert_fail("ghostport top did not exit within %d ms", timeout_ms);
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* The terminal is back to normal: alternate screen left, the view gone. (tmux hides the
 * cursor of a dead pane, so its flag says nothing here.) */
static void assert_terminal_restored(void) {
    char *s = TMUX("display-message", "-p", "-t", "top", "#{alternate_on}");
    cr_assert_str_eq(s, "0\n", "alternate_on after exit: %s", s);
    free(s);
    s = screen();
    cr_assert_null(strstr(s, "HOUSE"), "the view is still on the screen:\n%s", s);
    free(s);
}

/* --- helpers ------------------------------------------------------------------------------ */

#define CLI(out, err, ...) h_cli(out, NULL, err, (const char *const[]){__VA_ARGS__, NULL})

/* A command from argv strings (values may contain spaces and JSON). */
#define CMD(...) cmd_argv((const char *const[]){__VA_ARGS__, NULL})
static void cmd_argv(const char *const *a) {
    int n = 0;
    while (a[n])
        n++;
    redisReply *r = h_cmdv(n, (const char **)a, NULL);
    cr_assert(r->type != REDIS_REPLY_ERROR, "%s: %s", a[0], r->str);
    freeReplyObject(r);
}

static long long redis_now_ms(void) {
    redisReply *r = h_cmd("TIME");
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* A bridge's stats hash as ADMIN.md has bridges write it. */
static void put_bstats(const char *id, const char *host, long long pid, long long since,
                       long long ts, long long houses, long long req, long long err, long long in,
                       long long out, const char *rtt) {
    char key[128], a[10][32];
    snprintf(key, sizeof key, "gp:bstats:%s", id);
    long long v[] = {pid, since, ts, houses, req, err, in, out, 3, 1};
    for (int i = 0; i < 10; i++)
        snprintf(a[i], sizeof a[i], "%lld", v[i]);
    CMD("HSET", key, "id", id, "host", host, "pid", a[0], "since_ms", a[1], "ts_ms", a[2], "houses",
        a[3], "req_total", a[4], "err_total", a[5], "bytes_in", a[6], "bytes_out", a[7],
        "connects_total", a[8], "auth_failures_total", a[9], "redis_rtt_ms", rtt);
    CMD("PEXPIRE", key, "600000"); /* ADMIN.md says 5000: long here, the test sets the pace */
}

/* A connected house's state hash with the counters ADMIN.md adds. */
static void put_state(const char *house, const char *bridge, const char *transport, long long since,
                      long long seen, long long rtt, long long epoch, long long req, long long err,
                      long long in, long long out, const char *loss) {
    char key[128], a[8][32];
    snprintf(key, sizeof key, "gp:{%s}:state", house);
    long long v[] = {since, seen, rtt, epoch, req, err, in, out};
    for (int i = 0; i < 8; i++)
        snprintf(a[i], sizeof a[i], "%lld", v[i]);
    CMD("HSET", key, "bridge", bridge, "transport", transport, "since", a[0], "last_seen", a[1],
        "rtt_ms", a[2], "epoch", a[3], "addr", "10.0.0.7:40000", "req_total", a[4], "err_total",
        a[5], "bytes_in", a[6], "bytes_out", a[7], "loss_pct", loss);
}

/* Runs top with args and parses its JSON output. */
#define TOP_JSON(...) top_json((const char *const[]){"top", "--json", __VA_ARGS__, NULL})
static json_t *top_json(const char *const *args) {
    char *out, *err;
    int rc = h_cli(&out, NULL, &err, args);
    cr_assert_eq(rc, 0, "top --json: exit %d, stderr: %s", rc, err);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    cr_assert(json_is_object(o), "top --json printed no JSON object (%s): %s", je.text, out);
    free(out);
    free(err);
    return o;
}

static json_t *by_id(json_t *doc, const char *list, const char *id) {
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, list), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) == 0)
            return e;
    }
    cr_assert_fail("no %s '%s' in the snapshot", list, id);
    return NULL;
}

static double num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) {
        char *t = json_dumps(o, JSON_COMPACT);
        cr_log_error("in %s", t);
        free(t);
    }
    cr_assert(json_is_number(v), "%s is not a number", k);
    return json_number_value(v);
}

static int is_null(json_t *o, const char *k) {
    return json_is_null(json_object_get(o, k));
}

static void assert_near(double got, double want, const char *what) {
    cr_assert(fabs(got - want) <= 1e-6 * (fabs(want) + 1), "%s: got %.9g, want %.9g", what, got,
              want);
}

/* --- the live view --------------------------------------------------------------------- */

Test(top, tui_shows_connected_house_sort_filter_detail_quit) {
    h_redis_start(0);
    int up_port, bport;
    h_upstream_start(&up_port);
    char up_url[64], sec[65], sec2[65];
    snprintf(up_url, sizeof up_url, "http://127.0.0.1:%d", up_port);
    h_register("farm-1", sec);
    h_register("zeta-9", sec2); /* registered, never connected */
    h_bridge_start(0, &bport, (const char *const[]){"--bridge-id", "br-top", NULL}, 1);
    h_house_start("farm-1", sec, bport, up_url, NULL);
    cr_assert(h_wait_connected("farm-1", 15000), "farm-1 did not connect");
    redisReply *r = h_cmd("HGET gp:{farm-1}:state transport");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    char transport[16];
    snprintf(transport, sizeof transport, "%s", r->str);
    freeReplyObject(r);
    /* One request through, and one recent entry of our own (ADMIN.md's format), so the
     * detail page has something to show whether or not this bridge records them. */
    h_request("farm-1", "tui-1", "GET", "/echo?from=top", NULL, NULL, 0, 10000);
    h_reply rep;
    cr_assert(h_wait_reply("tui-1", NULL, 15000, &rep) && rep.status == 200);
    h_reply_free(&rep);
    char recent[256];
    snprintf(recent, sizeof recent,
             "{\"ts_ms\":%lld,\"id\":\"syn-1\",\"method\":\"PUT\",\"path\":\"/synthetic-recent\","
             "\"status\":201,\"ms\":17,\"error\":\"\"}",
             redis_now_ms());
    CMD("LPUSH", "gp:{farm-1}:recent", recent);

    tui_start(h_redis_url(), "--interval 300");
    char *s = WAIT_SCREEN(10000, "farm-1", "zeta-9", "br-top", "HOUSE^");
    const char *row = line_with(s, "farm-1 ");
    cr_assert(strstr(row, "br-top") && strstr(row, transport),
              "farm-1's row lacks its bridge or transport (%s): '%s'", transport, row);
    cr_assert(strstr(line_with(s, "zeta-9"), " - "), "an offline house shows '-'");
    cr_assert_lt(row_of(s, "farm-1 "), row_of(s, "zeta-9"), "sorted by id:\n%s", s);
    /* Everything fits 80 columns. */
    fits(s, 80);
    free(s);

    /* r: reverse (id descending). */
    KEYS("r");
    s = WAIT_SCREEN(5000, "HOUSEv", "sort:id(desc)");
    cr_assert_gt(row_of(s, "farm-1 "), row_of(s, "zeta-9"), "reversed:\n%s", s);
    free(s);
    /* s: next column (bridge); the offline house (no bridge) stays last either way. */
    KEYS("r", "s");
    s = WAIT_SCREEN(5000, "BRIDGE^", "sort:bridge", "!sort:id");
    cr_assert_lt(row_of(s, "farm-1 "), row_of(s, "zeta-9"), "by bridge:\n%s", s);
    free(s);
    KEYS("S"); /* back to id */
    free(WAIT_SCREEN(5000, "HOUSE^", "sort:id"));

    /* /: filter by id substring; Esc cancels an edit, Enter keeps it. */
    KEYS("/", "z", "e", "t");
    free(WAIT_SCREEN(5000, "filter: zet", "zeta-9", "!farm-1"));
    KEYS("Enter");
    free(WAIT_SCREEN(5000, "filter:zet", "zeta-9", "!farm-1", "1/1"));
    KEYS("/", "x", "Escape");
    free(WAIT_SCREEN(5000, "filter:zet", "zeta-9", "!filter:zetx"));
    KEYS("/", "C-u", "Enter");
    free(WAIT_SCREEN(5000, "farm-1", "zeta-9", "!filter:"));

    /* Enter: the selected house's page (the cursor starts on the first row, farm-1). */
    KEYS("Home", "Enter");
    s = WAIT_SCREEN(10000, "house farm-1", "br-top", "RECENT REQUESTS", "/synthetic-recent",
                    "req/s", "rtt");
    row = line_with(s, "/synthetic-recent");
    cr_assert(strstr(row, "PUT") && strstr(row, "201") && strstr(row, "17ms"),
              "recent request row: '%s'", row);
    cr_assert(strstr(s, transport), "transport missing on the page:\n%s", s);
    free(s);
    /* Down: the next house's page; Esc: back to the table. */
    KEYS("Down");
    free(WAIT_SCREEN(5000, "house zeta-9", "offline"));
    KEYS("Escape");
    free(WAIT_SCREEN(5000, "HOUSE^", "farm-1", "zeta-9", "!RECENT"));

    /* A smaller terminal: columns go, the rows and the footer stay. */
    free(TMUX("resize-window", "-t", "top", "-x", "60", "-y", "16"));
    s = WAIT_SCREEN(5000, "farm-1", "zeta-9", "q quit", "!LOSS");
    fits(s, 60);
    cr_assert(strstr(line_with(s, "farm-1 "), "br-top"), "narrow row: %s", s);
    free(s);
    free(TMUX("resize-window", "-t", "top", "-x", "80", "-y", "24"));
    free(WAIT_SCREEN(5000, "LOSS", "farm-1"));

    /* q: exits 0 with the terminal as it was. */
    KEYS("q");
    cr_assert_eq(wait_exit(5000), 0);
    assert_terminal_restored();
}

Test(top, tui_waits_for_redis_and_ctrl_c_exits) {
    int port = h_free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    tui_start(url, "--interval 200");
    free(WAIT_SCREEN(10000, "REDIS UNREACHABLE", "retrying", "cannot connect to Redis"));
    /* Redis comes: the view recovers by itself. */
    h_redis_start(port);
    char sec[65];
    h_register("late-1", sec);
    free(WAIT_SCREEN(10000, "late-1", "!UNREACHABLE", "1 houses: 0 online, 1 offline"));
    /* Redis goes away again: the data stays, with the line saying how old it is. */
    h_stop_all();
    free(WAIT_SCREEN(10000, "REDIS UNREACHABLE, retrying (data", "late-1"));
    KEYS("C-c");
    cr_assert_eq(wait_exit(5000), 0);
    assert_terminal_restored();
}

/* --- snapshots ------------------------------------------------------------------------- */

Test(top, once_and_json_with_rates_from_two_snapshots) {
    h_redis_start(0);
    char sec[65];
    h_register("farm-1", sec);
    h_register("farm-2", sec);
    h_register("pump-3", sec);
    CMD("HSET", "gp:{pump-3}:house", "disabled", "1");
    CMD("HSET", "gp:{farm-1}:house", "labels", "{\"site\":\"north\"}");
    long long now = redis_now_ms();
    put_bstats("b1", "hub-1", 101, now - 86400000, now, 1, 1000, 5, 100000, 2000000, "0.4");
    put_bstats("b2", "hub-2", 202, now - 3600000, now, 1, 50, 0, 900, 800, "1.5");
    put_state("farm-1", "b1", "rudp", now - 3700000, now - 400, 41, 7, 100, 2, 1000, 50000, "3.1");
    put_state("farm-2", "b2", "wss", now - 60000, now - 1000, 12, 3, 10, 0, 100, 5000, "0");
    char state[600];
    snprintf(state, sizeof state, "%s/top-state.json", h_dir());

    /* First run: everything but rates. */
    json_t *d = TOP_JSON("--state", state);
    cr_assert(is_null(d, "interval_ms"));
    cr_assert_eq(json_array_size(json_object_get(d, "bridges")), 2);
    cr_assert_eq(json_array_size(json_object_get(d, "houses")), 3);
    json_t *b = by_id(d, "bridges", "b1");
    cr_assert_str_eq(json_string_value(json_object_get(b, "host")), "hub-1");
    assert_near(num(b, "pid"), 101, "pid");
    assert_near(num(b, "houses"), 1, "houses");
    assert_near(num(b, "req_total"), 1000, "req_total");
    assert_near(num(b, "redis_rtt_ms"), 0.4, "redis_rtt_ms");
    cr_assert(is_null(b, "req_per_s"), "no rate from one snapshot");
    json_t *h = by_id(d, "houses", "farm-1");
    cr_assert(json_is_true(json_object_get(h, "connected")));
    cr_assert(json_is_false(json_object_get(h, "disabled")));
    cr_assert_str_eq(json_string_value(json_object_get(h, "bridge")), "b1");
    cr_assert_str_eq(json_string_value(json_object_get(h, "transport")), "rudp");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(h, "labels"), "site")),
                     "north");
    assert_near(num(h, "rtt_ms"), 41, "rtt_ms");
    assert_near(num(h, "loss_pct"), 3.1, "loss_pct");
    assert_near(num(h, "since_ms"), (double)(now - 3700000), "since_ms");
    cr_assert(is_null(h, "req_per_s"));
    h = by_id(d, "houses", "pump-3");
    cr_assert(json_is_true(json_object_get(h, "disabled")));
    cr_assert(json_is_false(json_object_get(h, "connected")));
    cr_assert(is_null(h, "bridge") && is_null(h, "rtt_ms") && is_null(h, "req_per_s"));
    json_decref(d);

    /* The totals move: b1 publishes 2 s later; b2 restarted (new pid, counters from 0);
     * farm-1 served 30 more requests (3 errors); farm-2 reconnected (new epoch). */
    put_bstats("b1", "hub-1", 101, now - 86400000, now + 2000, 1, 1500, 9, 102048, 2004096, "0.5");
    put_bstats("b2", "hub-2", 203, now + 1500, now + 2000, 1, 3, 0, 90, 80, "1.5");
    /* (its start written 1 ms off, as a bridge's renewal may: the same connection) */
    put_state("farm-1", "b1", "rudp", now - 3700000 + 1, now, 41, 7, 130, 5, 1600, 53000, "3.1");
    put_state("farm-2", "b2", "wss", now + 1500, now + 1500, 12, 4, 2, 0, 10, 50, "0");
    d = TOP_JSON("--state", state);
    double iv = num(d, "interval_ms");
    cr_assert_gt(iv, 0, "interval_ms %.0f", iv);
    b = by_id(d, "bridges", "b1");
    /* Bridges stamp their stats: rates over their own clock (ts_ms 2000 ms apart). */
    assert_near(num(b, "req_per_s"), 250, "b1 req/s");
    assert_near(num(b, "err_per_s"), 2, "b1 err/s");
    assert_near(num(b, "bytes_in_per_s"), 1024, "b1 in/s");
    assert_near(num(b, "bytes_out_per_s"), 2048, "b1 out/s");
    cr_assert(is_null(by_id(d, "bridges", "b2"), "req_per_s"), "a restarted bridge has no rate");
    h = by_id(d, "houses", "farm-1");
    /* House counters carry no stamp: rates over the time between the two snapshots. */
    assert_near(num(h, "req_per_s"), 30 * 1000.0 / iv, "farm-1 req/s");
    assert_near(num(h, "err_per_s"), 3 * 1000.0 / iv, "farm-1 err/s");
    assert_near(num(h, "bytes_in_per_s"), 600 * 1000.0 / iv, "farm-1 in/s");
    assert_near(num(h, "bytes_out_per_s"), 3000 * 1000.0 / iv, "farm-1 out/s");
    cr_assert(is_null(by_id(d, "houses", "farm-2"), "req_per_s"),
              "a reconnected house has no rate");
    json_decref(d);

    /* Nothing moves: b1 has not published again, so its last rates stand; farm-1 idles. */
    d = TOP_JSON("--state", state);
    assert_near(num(by_id(d, "bridges", "b1"), "req_per_s"), 250, "b1 req/s held");
    assert_near(num(by_id(d, "houses", "farm-1"), "req_per_s"), 0, "farm-1 idle");
    json_decref(d);

    /* The same as text. */
    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0"), 0, "%s", err);
    cr_assert(strstr(out, "BRIDGES 2") && strstr(out, "HOUSES 3 (2 online, 0 offline, 1 disabled)"),
              "%s", out);
    const char *l = line_with(out, "b1 ");
    cr_assert(strstr(l, "hub-1") && strstr(l, "0.5ms"), "b1 line: '%s'", l);
    l = line_with(out, "farm-1 ");
    cr_assert(strstr(l, "b1") && strstr(l, "rudp") && strstr(l, "41ms") && strstr(l, "3.1%") &&
                  strstr(l, " online"),
              "farm-1 line: '%s'", l);
    l = line_with(out, "pump-3 ");
    cr_assert(strstr(l, " disabled"), "pump-3 line: '%s'", l);
    cr_assert(!strstr(out, "TUN"), "no house has an L3 address, no tunnel columns:\n%s", out);
    free(out), free(err);
    /* Two samples 200 ms apart: rates, and the header says over what. */
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "200"), 0, "%s", err);
    cr_assert(strstr(out, "rates over "), "%s", out);
    free(out), free(err);

    /* Sorting and filtering. */
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0", "--sort", "rtt", "-r"), 0);
    cr_assert_lt(row_of(out, "farm-1 "), row_of(out, "farm-2 "), "rtt descending:\n%s", out);
    cr_assert_lt(row_of(out, "farm-2 "), row_of(out, "pump-3 "), "unknown last:\n%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0", "--filter", "FARM"), 0);
    cr_assert(strstr(out, "farm-1") && strstr(out, "farm-2") && !strstr(out, "pump-3"), "%s", out);
    cr_assert(strstr(out, "2 shown"), "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--sort", "nope"), 2);
    cr_assert(strstr(err, "--sort"), "%s", err);
    free(out), free(err);

    /* One house with its recent requests (newest first). */
    char e1[256], e2[256];
    snprintf(e1, sizeof e1,
             "{\"ts_ms\":%lld,\"id\":\"r1\",\"method\":\"GET\",\"path\":\"/status\","
             "\"status\":200,\"ms\":12,\"error\":\"\"}",
             now);
    snprintf(e2, sizeof e2,
             "{\"ts_ms\":%lld,\"id\":\"r2\",\"method\":\"POST\",\"path\":\"/slow\","
             "\"status\":504,\"ms\":5000,\"error\":\"timeout\"}",
             now + 1);
    CMD("LPUSH", "gp:{farm-1}:recent", e1, "not json", e2);
    d = TOP_JSON("--interval", "0", "--house", "farm-1");
    cr_assert_eq(json_array_size(json_object_get(d, "houses")), 1);
    json_t *rec = json_object_get(by_id(d, "houses", "farm-1"), "recent");
    cr_assert_eq(json_array_size(rec), 2, "the entry that is not JSON is skipped");
    json_t *q = json_array_get(rec, 0);
    cr_assert_str_eq(json_string_value(json_object_get(q, "path")), "/slow");
    cr_assert_str_eq(json_string_value(json_object_get(q, "error")), "timeout");
    assert_near(num(q, "status"), 504, "status");
    assert_near(num(q, "ms"), 5000, "ms");
    json_decref(d);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0", "--house", "farm-1"), 0);
    l = line_with(out, "/status");
    cr_assert(strstr(l, "GET") && strstr(l, "200") && strstr(l, "12"), "recent line: '%s'", l);
    cr_assert(strstr(out, "house farm-1  online"), "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--json", "--house", "nope"), 1);
    cr_assert(strstr(err, "no house 'nope'"), "%s", err);
    free(out), free(err);
}

/* The L3 tunnel's figures as a bridge writes them into a house's state (ADMIN.md, README's
 * key layout), and a stamp ts_ms (the store reads one: GP_STATE_TS), which top's rates go by
 * rather than its own clock: exact rates, and held while the stamp does not move. */
static void put_tun(const char *house, long long ts, long long pkts_in, long long pkts_out,
                    long long bytes_in, long long bytes_out, long long drops, long long fec) {
    char key[128], a[7][32];
    snprintf(key, sizeof key, "gp:{%s}:state", house);
    long long v[] = {ts, pkts_in, pkts_out, bytes_in, bytes_out, drops, fec};
    for (int i = 0; i < 7; i++)
        snprintf(a[i], sizeof a[i], "%lld", v[i]);
    CMD("HSET", key, "ts_ms", a[0], "tun_addr", "100.96.0.7,fd7a:6770::7", "tun_pkts_in", a[1],
        "tun_pkts_out", a[2], "tun_bytes_in", a[3], "tun_bytes_out", a[4], "tun_drops", a[5],
        "fec_repaired", a[6]);
}

static const char *jstr_at(json_t *o, const char *k, size_t i) {
    const char *v = json_string_value(json_array_get(json_object_get(o, k), i));
    return v ? v : "(none)";
}

/* The L3 tunnel per house: address (routed now, or the registry's), routes, packets/s and
 * bits/s each way, drops and FEC repairs, in --json, --once, a house's page and the live view
 * (whose TUN columns appear with the first address); a reconnection starts the rates over. */
Test(top, the_l3_tunnel_per_house_in_json_text_and_the_live_view) {
    h_redis_start(0);
    char sec[65];
    h_register("farm-1", sec); /* connected, granted */
    h_register("farm-2", sec); /* connected over wss: no tunnel */
    h_register("farm-3", sec); /* offline, with an address and a route in the registry */
    CMD("HSET", "gp:tun", "pool4", "100.96.0.0/24", "pool6", "fd7a:6770::/64", "h:farm-3", "9",
        "i:9", "farm-3", "h:farm-1", "6", "i:6", "farm-1");
    CMD("HSET", "gp:{farm-3}:house", "tun_routes", "10.1.2.0/24,fd00::/64");
    long long now = redis_now_ms();
    put_state("farm-1", "b1", "rudp", now - 60000, now, 41, 7, 10, 0, 100, 1000, "2.5");
    put_tun("farm-1", now, 1000, 500, 100000, 50000, 3, 7);
    put_state("farm-2", "b1", "wss", now - 60000, now, 12, 3, 10, 0, 100, 1000, "0");
    char state[600];
    snprintf(state, sizeof state, "%s/top-state.json", h_dir());

    json_t *d = TOP_JSON("--state", state);
    json_t *h = by_id(d, "houses", "farm-1");
    cr_assert(json_is_true(json_object_get(h, "tun_up")));
    cr_assert_eq(json_array_size(json_object_get(h, "tun_addr")), 2);
    cr_assert_str_eq(jstr_at(h, "tun_addr", 0), "100.96.0.7");
    cr_assert_str_eq(jstr_at(h, "tun_addr", 1), "fd7a:6770::7");
    assert_near(num(h, "tun_pkts_in"), 1000, "tun_pkts_in");
    assert_near(num(h, "tun_bytes_out"), 50000, "tun_bytes_out");
    assert_near(num(h, "tun_drops"), 3, "tun_drops");
    assert_near(num(h, "fec_repaired"), 7, "fec_repaired");
    assert_near(num(h, "loss_pct"), 2.5, "loss_pct");
    cr_assert(is_null(h, "tun_pkts_in_per_s") && is_null(h, "tun_bits_out_per_s"),
              "no rate from one snapshot");
    h = by_id(d, "houses", "farm-2");
    cr_assert(json_is_false(json_object_get(h, "tun_up")));
    cr_assert_eq(json_array_size(json_object_get(h, "tun_addr")), 0);
    cr_assert(is_null(h, "tun_pkts_in") && is_null(h, "tun_drops"), "no tunnel, no counters");
    h = by_id(d, "houses", "farm-3");
    cr_assert(json_is_false(json_object_get(h, "tun_up")));
    cr_assert_str_eq(jstr_at(h, "tun_addr", 0), "100.96.0.10", "the registry's address");
    cr_assert_str_eq(jstr_at(h, "tun_addr", 1), "fd7a:6770::a");
    cr_assert_str_eq(jstr_at(h, "tun_routes", 0), "10.1.2.0/24");
    cr_assert_str_eq(jstr_at(h, "tun_routes", 1), "fd00::/64");
    json_decref(d);

    /* One second of the bridge's clock later: 2000 packets in, 1000 out, 2 and 1 Mbit. */
    put_tun("farm-1", now + 1000, 3000, 1500, 350000, 175000, 5, 11);
    d = TOP_JSON("--state", state);
    h = by_id(d, "houses", "farm-1");
    assert_near(num(h, "tun_pkts_in_per_s"), 2000, "tun_pkts_in_per_s");
    assert_near(num(h, "tun_pkts_out_per_s"), 1000, "tun_pkts_out_per_s");
    assert_near(num(h, "tun_bits_in_per_s"), 2e6, "tun_bits_in_per_s");
    assert_near(num(h, "tun_bits_out_per_s"), 1e6, "tun_bits_out_per_s");
    assert_near(num(h, "fec_repaired_per_s"), 4, "fec_repaired_per_s");
    assert_near(num(h, "tun_drops"), 5, "tun_drops");
    cr_assert(is_null(by_id(d, "houses", "farm-2"), "tun_pkts_in_per_s"));
    json_decref(d);

    /* Plain text: the tunnel's columns, sorted by packets/s; the house's page. */
    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--state", state, "--sort", "pps", "-r"), 0, "%s",
                 err);
    cr_assert(strstr(out, "TUN_PKT/s_I/O") && strstr(out, "TUN_BIT/s_I/O"), "%s", out);
    const char *l = line_with(out, "farm-1 ");
    cr_assert(strstr(l, "100.96.0.7 ") && strstr(l, "2000/1000") && strstr(l, "2.0M/1.0M"),
              "farm-1 line: '%s'", l);
    cr_assert(strstr(line_with(out, "farm-3 "), "100.96.0.10"), "%s", out);
    cr_assert_lt(row_of(out, "farm-1 "), row_of(out, "farm-2 "), "by pps, unknown last:\n%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--state", state, "--house", "farm-1"), 0);
    cr_assert(strstr(out, "tun 100.96.0.7,fd7a:6770::7 (up)"), "%s", out);
    cr_assert(strstr(out, "tun in 2000 pkt/s 2.0M bit/s  out 1000 pkt/s 1.0M bit/s"), "%s", out);
    cr_assert(strstr(out, "3000 packets in, 1500 out, 350000 bytes in, 175000 out, 5 dropped"),
              "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "top", "--once", "--interval", "0", "--house", "farm-3"), 0);
    cr_assert(strstr(out, "tun 100.96.0.10,fd7a:6770::a (not granted now)  routes 10.1.2.0/24, "
                          "fd00::/64"),
              "%s", out);
    free(out), free(err);

    /* The live view: the TUN columns fit 80 columns, the rates hold while the bridge has not
     * written again (its stamp has not moved). */
    tui_start(h_redis_url(), "--interval 300");
    char *scr = WAIT_SCREEN(10000, "farm-1", "TUN", "PKT/s i/o", "100.96.0.10", "tun 1 up");
    fits(scr, 80);
    free(scr);
    put_tun("farm-1", now + 2000, 5000, 2500, 600000, 300000, 5, 11);
    scr = WAIT_SCREEN(10000, "2000/1000", "2.0M/1.0M");
    l = line_with(scr, "farm-1 ");
    cr_assert(strstr(l, "100.96.0.7") && strstr(l, "2000/1000") && strstr(l, "2.0M/1.0M"),
              "farm-1's row: '%s'", l);
    free(scr);
    free(TMUX("resize-window", "-t", "top", "-x", "120", "-y", "30"));
    free(WAIT_SCREEN(5000, "FEC/s", "LOSS", "2000/1000"));
    /* Its page: addresses, routes, rates, totals. */
    KEYS("Home", "Enter");
    free(WAIT_SCREEN(10000, "house farm-1", "tun 100.96.0.7,fd7a:6770::7 (up)",
                     "tun in 2000 pkt/s 2.0M bit/s  out 1000 pkt/s 1.0M bit/s", "5000 pkts in",
                     "5 dropped", "tun pkt"));
    KEYS("q");
    cr_assert_eq(wait_exit(5000), 0);

    /* A new connection (another epoch): the tunnel's rates start over, its totals show. */
    put_state("farm-1", "b1", "rudp", now + 2500, now + 2500, 41, 8, 0, 0, 0, 0, "0");
    put_tun("farm-1", now + 3000, 10, 10, 1000, 1000, 0, 0);
    d = TOP_JSON("--state", state);
    h = by_id(d, "houses", "farm-1");
    cr_assert(is_null(h, "tun_pkts_in_per_s") && is_null(h, "tun_bits_out_per_s") &&
                  is_null(h, "req_per_s"),
              "rates across a reconnection");
    assert_near(num(h, "tun_pkts_in"), 10, "tun_pkts_in");
    json_decref(d);
}

Test(top, once_fails_clearly_when_redis_is_unreachable) {
    char url[64], *out, *err;
    snprintf(url, sizeof url, "127.0.0.1:%d", h_free_port());
    cr_assert_eq(CLI(&out, &err, "--redis", url, "top", "--once"), 2);
    cr_assert(strstr(err, "cannot connect to Redis") && strstr(err, url), "stderr: %s", err);
    cr_assert_eq(out[0], '\0', "nothing on stdout: %s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "--redis", url, "top", "--json"), 2);
    cr_assert(strstr(err, "cannot connect to Redis"), "stderr: %s", err);
    free(out), free(err);
}

Test(top, json_on_a_cluster_reads_every_node) {
    h_proc *nodes[3];
    h_redis_cluster_start(3, 0, nodes);
    long long now = redis_now_ms();
    char id[32], host[32], sec[65];
    /* Enough bridges that their keys land on every master. */
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "b%d", i);
        snprintf(host, sizeof host, "hub-%d", i);
        put_bstats(id, host, 100 + i, now - 1000, now, 1, i, 0, 0, 0, "0.3");
        snprintf(id, sizeof id, "h%d", i);
        h_register(id, sec);
        put_state(id, "b0", "wss", now - 1000, now, 5, 1, i, 0, 0, 0, "0");
    }
    json_t *d = TOP_JSON("--interval", "0");
    cr_assert_eq(json_array_size(json_object_get(d, "bridges")), 12, "a node's bridges missing");
    cr_assert_eq(json_array_size(json_object_get(d, "houses")), 12);
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "b%d", i);
        assert_near(num(by_id(d, "bridges", id), "req_total"), i, id);
        snprintf(id, sizeof id, "h%d", i);
        assert_near(num(by_id(d, "houses", id), "req_total"), i, id);
    }
    json_decref(d);
    char *out, *err;
    cr_assert_eq(CLI(&out, &err, "house", "disable", "h3"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0, "%s", err);
    cr_assert(strstr(line_with(out, "h3 "), "disabled"), "%s", out);
    free(out), free(err);
}

/* --- disable / enable ------------------------------------------------------------------ */

/* `house list` shows farm-1 as `word`, and its --json says `json`. */
static void farm1_listed_as(const char *word, const char *json) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(CLI(&out, &err, "house", "list"), 0);
    cr_assert(strstr(line_with(out, "farm-1"), word), "%s", out);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "list", "--json"), 0);
    cr_assert(strstr(out, json), "%s", out);
    free(out), free(err);
}

Test(top, house_disable_enable_sets_the_flag_and_tells_the_bridges) {
    h_redis_start(0);
    char sec[65], *out, *err;
    h_register("farm-1", sec);
    /* Listen on the control channel as a bridge does. */
    char cerr[256];
    redisContext *sub = h_redis_connect(h_redis_port(), 5000, cerr, sizeof cerr);
    cr_assert(sub, "%s", cerr);
    struct timeval tv = {5, 0};
    redisSetTimeout(sub, tv);
    redisReply *r = redisCommand(sub, "SUBSCRIBE gp:ctl");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    cr_assert_eq(CLI(&out, &err, "house", "disable", "farm-1"), 0, "%s", err);
    cr_assert(strstr(out, "farm-1 disabled"), "%s", out);
    free(out), free(err);
    r = h_cmd("HGET gp:{farm-1}:house disabled");
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0, "disabled field");
    freeReplyObject(r);
    void *v = NULL;
    cr_assert_eq(redisGetReply(sub, &v), REDIS_OK, "no message on gp:ctl within 5 s");
    r = v;
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    cr_assert_str_eq(r->element[0]->str, "message");
    cr_assert_str_eq(r->element[1]->str, "gp:ctl");
    cr_assert_str_eq(r->element[2]->str, "disable farm-1");
    freeReplyObject(r);

    farm1_listed_as("disabled", "\"disabled\":true");
    json_t *d = TOP_JSON("--interval", "0");
    cr_assert(json_is_true(json_object_get(by_id(d, "houses", "farm-1"), "disabled")));
    json_decref(d);
    /* Replacing the secret keeps the house disabled. */
    cr_assert_eq(CLI(&out, &err, "house", "add", "farm-1", "--force", "-q"), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:{farm-1}:house disabled"), 1, "add --force enabled it");

    cr_assert_eq(CLI(&out, &err, "house", "enable", "farm-1"), 0, "%s", err);
    cr_assert(strstr(out, "farm-1 enabled"), "%s", out);
    free(out), free(err);
    cr_assert_eq(h_int("HEXISTS gp:{farm-1}:house disabled"), 0);
    farm1_listed_as("offline", "\"disabled\":false");

    /* No such house: nothing written, nothing published; bad usage. */
    cr_assert_eq(CLI(&out, &err, "house", "disable", "nope"), 1);
    cr_assert(strstr(err, "no house 'nope'"), "%s", err);
    free(out), free(err);
    cr_assert_eq(h_int("EXISTS gp:{nope}:house"), 0, "disable created a hash");
    cr_assert_eq(CLI(&out, &err, "house", "enable", "nope"), 1);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "disable", "bad id"), 2);
    free(out), free(err);
    cr_assert_eq(CLI(&out, &err, "house", "disable"), 2);
    cr_assert(strstr(err, "usage: ghostport house disable"), "%s", err);
    free(out), free(err);
    /* The next message on the channel is the one for farm-2: none was sent for "nope" (nor
     * for the enable). */
    h_register("farm-2", sec);
    cr_assert_eq(CLI(&out, &err, "house", "disable", "farm-2"), 0, "%s", err);
    free(out), free(err);
    v = NULL;
    cr_assert_eq(redisGetReply(sub, &v), REDIS_OK);
    r = v;
    cr_assert_str_eq(r->element[2]->str, "disable farm-2");
    freeReplyObject(r);
    redisFree(sub);
}

Test(top, bridges_from_the_index_when_there_is_one) {
    h_redis_start(0);
    long long now = redis_now_ms();
    put_bstats("b1", "hub-1", 1, now - 1000, now, 0, 0, 0, 0, 0, "0.2");
    put_bstats("old", "hub-0", 2, now - 1000, now, 0, 0, 0, 0, 0, "0.2");
    /* No index (bridges that predate it): every stats hash is found by SCAN. */
    json_t *d = TOP_JSON("--interval", "0");
    cr_assert_eq(json_array_size(json_object_get(d, "bridges")), 2);
    json_decref(d);
    /* With the index: the bridges listed there; one whose stats expired is left out. */
    CMD("ZADD", "gp:bridges", "1", "b1", "2", "gone");
    d = TOP_JSON("--interval", "0");
    json_t *bs = json_object_get(d, "bridges");
    cr_assert_eq(json_array_size(bs), 1, "bridges: %zu", json_array_size(bs));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(bs, 0), "id")), "b1");
    json_decref(d);
}
/* --- with the stats real bridges publish ------------------------------------------------ */

static long long hget_ll(const char *key, const char *field) {
    const char *argv[] = {"HGET", key, field};
    redisReply *r = h_cmdv(3, argv, NULL);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

static int counted(void *ud) {
    long long want = *(long long *)ud;
    return hget_ll("gp:bstats:br-e2e", "req_total") >= want &&
           hget_ll("gp:{farm-1}:state", "req_total") >= want &&
           hget_ll("gp:{farm-1}:state", "err_total") >= 1;
}

static int bstats_newer(void *ud) {
    return hget_ll("gp:bstats:br-e2e", "ts_ms") > *(long long *)ud;
}

Test(top, live_stats_of_a_real_bridge_and_disable_closes_the_house) {
    h_redis_start(0);
    int up_port, bport;
    h_upstream_start(&up_port);
    char up_url[64], sec[65], *out, *err;
    snprintf(up_url, sizeof up_url, "http://127.0.0.1:%d", up_port);
    h_register("farm-1", sec);
    h_proc *bridge =
        h_bridge_start(0, &bport, (const char *const[]){"--bridge-id", "br-e2e", NULL}, 1);
    h_proc *house = h_house_start("farm-1", sec, bport, up_url, NULL);
    cr_assert(h_wait_connected("farm-1", 15000), "farm-1 did not connect");
    char state[600];
    snprintf(state, sizeof state, "%s/top-state.json", h_dir());
    long long ts = 0;
    cr_assert(h_wait(bstats_newer, &ts, 5000), "the bridge published no stats within 5 s");
    json_decref(TOP_JSON("--state", state));

    /* Five good requests and one the house refuses (an unknown service: an error reply). */
    for (int i = 0; i < 5; i++) {
        char id[32], path[64];
        snprintf(id, sizeof id, "e2e-%d", i);
        snprintf(path, sizeof path, "/echo?n=%d", i);
        h_request("farm-1", id, "GET", path, NULL, NULL, 0, 10000);
        h_reply r;
        cr_assert(h_wait_reply(id, NULL, 15000, &r) && r.status == 200, "request %d", i);
        h_reply_free(&r);
    }
    h_xadd_req("farm-1", &(h_req){.id = "e2e-bad",
                                  .method = "GET",
                                  .path = "/x",
                                  .service = "nope",
                                  .reply = "gp:rep:e2e-bad"});
    h_reply r;
    cr_assert(h_wait_reply("e2e-bad", NULL, 15000, &r) && r.status == 403);
    h_reply_free(&r);
    long long want = 6;
    cr_assert(h_wait(counted, &want, 10000),
              "the bridge did not publish the counters within 10 s (bridge %lld, house %lld)",
              hget_ll("gp:bstats:br-e2e", "req_total"), hget_ll("gp:{farm-1}:state", "req_total"));
    /* One more publication after that, so that the totals moved between our two samples
     * and by the bridge's own clock. */
    ts = hget_ll("gp:bstats:br-e2e", "ts_ms");
    cr_assert(h_wait(bstats_newer, &ts, 5000), "no new stats within 5 s");

    json_t *d = TOP_JSON("--state", state);
    json_t *b = by_id(d, "bridges", "br-e2e");
    assert_near(num(b, "pid"), bridge->pid, "bridge pid");
    assert_near(num(b, "houses"), 1, "houses held");
    cr_assert_geq(num(b, "req_total"), 6);
    cr_assert_geq(num(b, "err_total"), 1);
    cr_assert_gt(num(b, "bytes_in"), 0);
    cr_assert_geq(num(b, "connects_total"), 1);
    cr_assert_geq(num(b, "redis_rtt_ms"), 0);
    cr_assert(json_string_value(json_object_get(b, "host")), "host");
    cr_assert_gt(num(b, "req_per_s"), 0, "the bridge's req/s");
    json_t *h = by_id(d, "houses", "farm-1");
    cr_assert_str_eq(json_string_value(json_object_get(h, "bridge")), "br-e2e");
    cr_assert_geq(num(h, "req_total"), 6);
    cr_assert_geq(num(h, "err_total"), 1);
    cr_assert_geq(num(h, "loss_pct"), 0);
    cr_assert_gt(num(h, "req_per_s"), 0, "the house's req/s");
    json_decref(d);

    /* Its recent requests, newest first: the refused one on top. */
    d = TOP_JSON("--interval", "0", "--house", "farm-1");
    json_t *rec = json_object_get(by_id(d, "houses", "farm-1"), "recent");
    cr_assert_geq(json_array_size(rec), 6, "recent: %zu", json_array_size(rec));
    json_t *q = json_array_get(rec, 0);
    cr_assert_str_eq(json_string_value(json_object_get(q, "id")), "e2e-bad");
    cr_assert_str_eq(json_string_value(json_object_get(q, "error")), "forbidden_upstream");
    assert_near(num(q, "status"), 403, "status");
    q = json_array_get(rec, 1);
    cr_assert_str_eq(json_string_value(json_object_get(q, "method")), "GET");
    cr_assert(strstr(json_string_value(json_object_get(q, "path")), "/echo"), "path");
    assert_near(num(q, "status"), 200, "status");
    cr_assert_geq(num(q, "ms"), 0);
    json_decref(d);

    /* Disabled: its bridge closes it at once, and it is refused when it comes back. */
    cr_assert_eq(CLI(&out, &err, "house", "disable", "farm-1"), 0, "%s", err);
    free(out), free(err);
    cr_assert(h_wait_offline("farm-1", 10000), "the disabled house is still connected");
    cr_assert(h_wait_log(house, "house disabled", 10000), "the house was not told why");
    d = TOP_JSON("--interval", "0");
    h = by_id(d, "houses", "farm-1");
    cr_assert(json_is_true(json_object_get(h, "disabled")));
    cr_assert(json_is_false(json_object_get(h, "connected")));
    json_decref(d);
    /* Enabled: a restarted house (no waiting out its back-off) gets in again. */
    cr_assert_eq(CLI(&out, &err, "house", "enable", "farm-1"), 0, "%s", err);
    free(out), free(err);
    h_stop(house);
    h_house_start("farm-1", sec, bport, up_url, NULL);
    cr_assert(h_wait_connected("farm-1", 15000), "the enabled house did not get back in");
}
