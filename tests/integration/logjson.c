/* logjson.c — `--log-format json` on the real daemons: a bridge and a house started with it
 * write nothing on stderr but JSON objects, one a line, that jansson (strict UTF-8, duplicate
 * keys refused) and Python's json both parse — while a producer sends them hostile bytes that
 * end up in their lines (a frame id with quotes, backslashes and a pair of its own; a reply
 * key with C0 and C1 controls, a terminal escape, U+2028 and bytes that are no UTF-8, which
 * the bridge refuses and logs), which come back as the bytes sent (U+FFFD for each byte that
 * is no UTF-8). And the
 * format follows the config file on SIGHUP, as log-level does. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(logjson, .init = h_init, .fini = h_fini, .timeout = 90);

/* A frame id the bridge forwards (printable ASCII: quotes, backslashes, a \x escape of its
 * own, a pair of its own), which the house logs quoted. */
static const char ODD_ID[] = "q\"b\\s\\x41=1\"level=error";
/* A reply key the bridge refuses, and logs: quotes, backslashes, C0 and C1 controls, a
 * terminal escape, U+2028, a forged pair, and bytes that are no UTF-8 (one U+FFFD each). */
static const char HOSTILE_KEY[] =
    "gp:rep:q\"b\\s\nn\x01\x1b[2J\xc2\x9b \xe2\x80\xa8 level=error x=\"y\xff\xc0\x80";
static const char HOSTILE_KEY_LOGGED[] = "gp:rep:q\"b\\s\nn\x01\x1b[2J\xc2\x9b \xe2\x80\xa8 "
                                         "level=error x=\"y\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";

/* Every line of p's log after the harness's own (=== ...) as JSON: each must parse as an
 * object with ts, level and event; fn sees each (may be NULL). Returns how many. */
static int each_line(const h_proc *p, void (*fn)(json_t *j, void *ud), void *ud) {
    size_t len;
    char *text = h_read_file(p->log, &len);
    cr_assert(text, "no log %s", p->log);
    int n = 0;
    for (char *l = text, *e; l < text + len; l = e + 1) {
        e = memchr(l, '\n', (size_t)(text + len - l));
        cr_assert(e, "%s: the last line has no newline: %s", p->name, l);
        if (e - l >= 4 && memcmp(l, "=== ", 4) == 0)
            continue;
        json_error_t err;
        json_t *j = json_loadb(l, (size_t)(e - l), JSON_REJECT_DUPLICATES, &err);
        cr_assert(j && json_is_object(j), "%s: not a JSON object (%s at %d): %.*s", p->name,
                  j ? "not an object" : err.text, err.position, (int)(e - l), l);
        static const char *const want[] = {"ts", "level", "event"};
        for (int i = 0; i < 3; i++)
            cr_assert(json_is_string(json_object_get(j, want[i])), "%s: no %s in %.*s", p->name,
                      want[i], (int)(e - l), l);
        if (fn)
            fn(j, ud);
        json_decref(j);
        n++;
    }
    free(text);
    return n;
}

/* Python's json.loads on every line (the file read as UTF-8, strictly). */
static void python_parses(const h_proc *p) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json, sys\n"
             "n = 0\n"
             "for l in open(sys.argv[1], encoding=\"utf-8\", errors=\"strict\"):\n"
             "    if not l.startswith(\"=== \"):\n"
             "        o = json.loads(l); assert isinstance(o, dict) and \"event\" in o, l; n += 1\n"
             "print(n)' '%s' 2>&1",
             p->log);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int rc = pclose(f);
    cr_assert_eq(rc, 0, "python3 json.loads on %s:\n%s", p->log, out);
    cr_assert_gt(atoi(out), 0, "%s", out);
}

struct find {
    const char *event, *key;
    const void *want;
    size_t wlen;
    int found;
};

static void find_value(json_t *j, void *ud) {
    struct find *f = ud;
    if (strcmp(json_string_value(json_object_get(j, "event")), f->event) != 0)
        return;
    json_t *v = json_object_get(j, f->key);
    if (json_is_string(v) && json_string_length(v) == f->wlen &&
        memcmp(json_string_value(v), f->want, f->wlen) == 0)
        f->found++;
}

Test(logjson, daemons_write_json_that_parses) {
    h_redis_start(0);
    int up, bport;
    h_upstream_start(&up);
    const char *json[] = {"--log-format", "json", NULL};
    /* (not h_bridge_start's wait: it looks for key=value lines) */
    h_proc *b = h_bridge_start(0, &bport, json, 0);
    cr_assert(h_wait_log(b, "\"event\":\"redis_ready\"", 10000), "bridge: no redis_ready line");
    cr_assert(h_wait_port(bport, 10000));
    char sec[65], url[64];
    h_register("farm-1", sec);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", up);
    h_proc *house = h_house_start("farm-1", sec, bport, url, json);
    cr_assert(h_wait_connected("farm-1", 15000), "house did not connect");

    /* A good request; one with an odd frame id, forwarded; one with a hostile reply key,
     * refused. */
    h_request("farm-1", "ok-1", "GET", "/echo?x=1", NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply("ok-1", NULL, 10000, &r) && r.status == 200);
    h_reply_free(&r);
    h_request("farm-1", ODD_ID, "GET", "/echo", NULL, NULL, 0, 10000);
    cr_assert(h_wait_reply(ODD_ID, NULL, 10000, &r) && r.status == 200, "the odd id: no 200");
    h_reply_free(&r);
    h_field bad[] = {{"id", "bad-reply", (size_t)-1},
                     {"method", "GET", (size_t)-1},
                     {"path", "/echo", (size_t)-1},
                     {"reply", HOSTILE_KEY, (size_t)-1}};
    h_xadd("farm-1", bad, 4);
    cr_assert(h_wait_log(b, "\"reason\":\"reply_key\"", 10000), "no bad_request line");

    /* Every line of both parses; the values are the bytes sent. */
    int nb = each_line(b, NULL, NULL), nh = each_line(house, NULL, NULL);
    cr_assert_gt(nb, 5, "bridge lines: %d", nb);
    cr_assert_gt(nh, 3, "house lines: %d", nh);
    struct find fh = {"request", "id", ODD_ID, sizeof ODD_ID - 1, 0};
    each_line(house, find_value, &fh);
    cr_assert_eq(fh.found, 1, "the house's request line does not hold the odd id as sent");
    struct find fb = {"request_forwarded", "id", ODD_ID, sizeof ODD_ID - 1, 0};
    each_line(b, find_value, &fb);
    cr_assert_eq(fb.found, 1, "the bridge's request_forwarded line does not hold the odd id");
    struct find fk = {"bad_request", "key", HOSTILE_KEY_LOGGED, sizeof HOSTILE_KEY_LOGGED - 1, 0};
    each_line(b, find_value, &fk);
    cr_assert_eq(fk.found, 1, "the refused reply key is not in the bad_request line as sent");
    /* Numbers where the format wrote one: the house's status and bytes. */
    cr_assert(h_log_count(house, "\"status\":200,"), "no numeric status in the house's log");
    python_parses(b);
    python_parses(house);
}

/* --log-format is reloaded on SIGHUP as log-level is: kv -> json -> kv, each daemon. */
Test(logjson, format_follows_sighup) {
    h_redis_start(0);
    int up;
    h_upstream_start(&up);
    char conf[4096], hconf[4096];
    snprintf(conf, sizeof conf, "%s/bridge.conf", h_dir());
    snprintf(hconf, sizeof hconf, "%s/house.conf", h_dir());
    h_write_file(conf, "log-format = kv\n", 0600);
    const char *extra[] = {"--config", conf, NULL};
    int bport;
    h_proc *b = h_bridge_start(0, &bport, extra, 1);
    cr_assert(h_wait_log(b, "event=bridge_started", 10000));
    char sec[65], hbuf[1024];
    h_register("hup-1", sec);
    snprintf(hbuf, sizeof hbuf,
             "id = hup-1\nsecret = %s\nbridge = ws://127.0.0.1:%d/\nupstream = "
             "http://127.0.0.1:%d\nlog-format = kv\n",
             sec, bport, up);
    h_write_file(hconf, hbuf, 0600);
    char hbin[4096];
    snprintf(hbin, sizeof hbin, "%s", h_bin("ghostport-house"));
    const char *hargv[] = {hbin, "--config", hconf, NULL};
    h_proc *house = h_spawn("house-hup-1", (char *const *)hargv);
    cr_assert(h_wait_connected("hup-1", 15000));

    h_write_file(conf, "log-format = json\n", 0600);
    kill(b->pid, SIGHUP);
    cr_assert(h_wait_log(b, "\"event\":\"config_reloaded\",\"bridge\":", 5000),
              "bridge: no JSON config_reloaded line");
    cr_assert(h_log_count(b, "\"changed\":\"log-format\""));
    snprintf(hbuf, sizeof hbuf,
             "id = hup-1\nsecret = %s\nbridge = ws://127.0.0.1:%d/\nupstream = "
             "http://127.0.0.1:%d\nlog-format = json\n",
             sec, bport, up);
    h_write_file(hconf, hbuf, 0600);
    kill(house->pid, SIGHUP);
    cr_assert(h_wait_log(house, "\"event\":\"config_reloaded\"", 5000),
              "house: no JSON config_reloaded line");
    h_request("hup-1", "after-json", "GET", "/echo", NULL, NULL, 0, 10000);
    h_reply r;
    cr_assert(h_wait_reply("after-json", NULL, 10000, &r) && r.status == 200);
    h_reply_free(&r);
    cr_assert(h_wait_log(house, "\"event\":\"request\"", 5000), "house: no JSON request line");

    /* A value it does not know: refused, the format kept. */
    h_write_file(conf, "log-format = xml\n", 0600);
    kill(b->pid, SIGHUP);
    cr_assert(h_wait_log(b, "\"event\":\"config_reload_failed\"", 5000));
    cr_assert(h_log_count(b, "log-format: xml is not kv or json"));

    h_write_file(conf, "log-format = kv\n", 0600);
    kill(b->pid, SIGHUP);
    cr_assert(h_wait_log(b, "event=config_reloaded bridge=", 5000), "bridge: not back to kv");
    cr_assert(h_alive(b) && h_alive(house));
}
