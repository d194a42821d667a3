/* journal.c — the house's replay journal (--state-dir) with real processes: a house killed
 * with kill -9 while a call runs, or after it answered but before the bridge acknowledged,
 * comes back remembering it, so the upstream never runs the request twice; a torn or
 * unreadable journal is cut and the house serves on; two houses cannot share one journal. */
#include "../harness/world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(journal, .init = h_init, .fini = h_fini, .timeout = 120);

typedef struct world {
    int bridge_port, up_port;
    char up_url[64], state[512], journal[600];
    h_proc *redis, *bridge, *up, *house;
    char secret[65];
} world;

#define HOUSE "j1"

/* Redis, an upstream, a bridge; house HOUSE registered, not started. */
static void world_up(world *w) {
    memset(w, 0, sizeof *w);
    w->redis = h_redis_start(0);
    w->up = h_upstream_start(&w->up_port);
    snprintf(w->up_url, sizeof w->up_url, "http://127.0.0.1:%d", w->up_port);
    w->bridge = h_bridge_start(0, &w->bridge_port, NULL, 1);
    h_register(HOUSE, w->secret);
    snprintf(w->state, sizeof w->state, "%s/state", h_dir());
    snprintf(w->journal, sizeof w->journal, "%s/%s.journal", w->state, HOUSE);
}

/* Starts (or restarts) the house with the journal and waits until it has loaded it and is
 * connected to the bridge. */
static void house_up(world *w) {
    const char *extra[] = {"--state-dir", w->state, NULL};
    w->house = h_house_start(HOUSE, w->secret, w->bridge_port, w->up_url, extra);
    cr_assert(h_wait_log(w->house, "event=journal_loaded", 10000), "no journal_loaded");
    cr_assert(h_wait_log(w->house, "event=connected", 15000), "house did not connect");
}

/* XADD of frame id `id` (GET path, x-frame-id header) with its own reply key. */
static void send_get(const char *id, const char *path, const char *reply) {
    h_xadd_tagged(HOUSE, id, "GET", path, NULL, "60000", reply, (size_t)-1);
}

/* The same, then waits until the upstream is working on it. */
static void send_get_reached(const world *w, const char *id, const char *path, const char *reply) {
    send_get(id, path, reply);
    h_hits_arg a = {w->up_port, id};
    cr_assert(h_wait(h_upstream_hit, &a, 10000), "%s never reached the upstream", id);
}

static void expect_replay_unavailable(const h_reply *r) {
    h_assert_error_reply(r, 502, "replay_unavailable");
}

/* kill -9 of the house while the upstream works on a call: its memory is gone, but the
 * journal's START says the call may have run, so the redelivery after the restart is told
 * 502 replay_unavailable instead of running it a second time. */
Test(journal, house_kill9_mid_call_redelivery_is_502_not_a_rerun) {
    world w;
    world_up(&w);
    house_up(&w);
    send_get_reached(&w, "jk-1", "/slow?ms=1500", "gp:rep:jk-1");
    h_kill9(w.house);
    cr_assert_eq(h_int("EXISTS gp:rep:jk-1"), 0, "reply written before the kill");

    house_up(&w);
    cr_assert_eq(h_log_count(w.house, "tombstones=1"), 1, "the running call was not remembered");
    h_reply r;
    cr_assert(h_wait_reply("jk-1", NULL, 30000, &r), "the redelivered request got no reply");
    expect_replay_unavailable(&r);
    h_reply_free(&r);
    cr_assert_eq(h_hits(w.up_port, "jk-1"), 1, "the upstream ran the request again");
    cr_assert_eq(h_log_count(w.house, "outcome=replay_unavailable"), 1);
}

/* Answered, then the house dies before anyone could be sure the reply went through (the
 * bridge may not have acknowledged it): the producer retries with the same frame id after
 * the restart and gets the same response from the journal, without a second upstream call. */
Test(journal, answered_then_kill9_retry_replays_from_the_journal) {
    world w;
    world_up(&w);
    house_up(&w);
    send_get("jr-1", "/echo?n=1", "gp:rep:jr-1a");
    h_reply r1, r2;
    cr_assert(h_wait_reply("jr-1", "gp:rep:jr-1a", 15000, &r1));
    cr_assert_eq(r1.status, 200);
    h_kill9(w.house);

    house_up(&w);
    cr_assert_eq(h_log_count(w.house, "entries=1"), 1, "the response was not reloaded");
    send_get("jr-1", "/echo?n=1", "gp:rep:jr-1b");
    cr_assert(h_wait_reply("jr-1", "gp:rep:jr-1b", 15000, &r2));
    cr_assert_eq(r2.status, 200, "status %d error %s", r2.status, r2.error ? r2.error : "");
    cr_assert_eq(r1.body_len, r2.body_len);
    cr_assert(memcmp(r1.body, r2.body, r1.body_len) == 0, "the retry got a different body");
    const char *ct = h_reply_header(&r2, "content-type");
    cr_assert(ct && strcmp(ct, "application/json") == 0, "headers not replayed: %s", r2.headers);
    h_reply_free(&r1);
    h_reply_free(&r2);
    cr_assert_eq(h_hits(w.up_port, "jr-1"), 1, "the retried frame id ran again");
    cr_assert_eq(h_log_count(w.house, "outcome=replayed"), 1);
}

static void file_truncate_by(const char *path, off_t n) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);
    cr_assert_gt(st.st_size, n);
    cr_assert_eq(truncate(path, st.st_size - n), 0);
}

/* A crash in the middle of writing the last record leaves it torn: the house cuts it off,
 * says so, keeps what came before (here the call's START: it ran, its DONE is what was
 * lost, so a retry gets 502, not a second run) and serves new requests. The cut is made on
 * disk: the next start finds a clean journal. */
Test(journal, torn_tail_is_cut_and_the_house_serves) {
    world w;
    world_up(&w);
    house_up(&w);
    send_get("jt-a", "/echo?n=a", "gp:rep:jt-a1");
    h_reply r;
    cr_assert(h_wait_reply("jt-a", "gp:rep:jt-a1", 15000, &r));
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);
    cr_assert(WIFEXITED(h_stop(w.house)), "house did not stop on SIGTERM");
    file_truncate_by(w.journal, 5); /* into the DONE record's check */

    house_up(&w);
    cr_assert_eq(h_log_count(w.house, "event=journal_truncated"), 1, "torn tail not reported");
    cr_assert_eq(h_log_count(w.house, "reason=torn"), 1);
    cr_assert_eq(h_log_count(w.house, "tombstones=1"), 1, "the START before the tear was lost");
    send_get("jt-a", "/echo?n=a", "gp:rep:jt-a2");
    cr_assert(h_wait_reply("jt-a", "gp:rep:jt-a2", 15000, &r));
    expect_replay_unavailable(&r);
    h_reply_free(&r);
    cr_assert_eq(h_hits(w.up_port, "jt-a"), 1, "ran again");

    send_get("jt-b", "/echo?n=b", "gp:rep:jt-b");
    cr_assert(h_wait_reply("jt-b", NULL, 15000, &r), "no reply after the cut");
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);

    cr_assert(WIFEXITED(h_stop(w.house)));
    house_up(&w);
    cr_assert_eq(h_log_count(w.house, "event=journal_truncated"), 0, "the cut was not on disk");
    cr_assert_eq(h_log_count(w.house, "entries=1"), 1, "jt-b's response was not kept");
}

/* A file that is not a journal at all (garbage where the journal should be): reported,
 * replaced, and the house serves. */
Test(journal, garbage_file_is_replaced_and_the_house_serves) {
    world w;
    world_up(&w);
    cr_assert_eq(mkdir(w.state, 0700), 0);
    FILE *f = fopen(w.journal, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 1000; i++)
        fputc((i * 131) & 0xff, f);
    fclose(f);
    house_up(&w);
    cr_assert_eq(h_log_count(w.house, "event=journal_truncated"), 1);
    cr_assert_eq(h_log_count(w.house, "offset=0"), 1);
    send_get("jg-1", "/echo", "gp:rep:jg-1");
    h_reply r;
    cr_assert(h_wait_reply("jg-1", NULL, 15000, &r));
    cr_assert_eq(r.status, 200);
    h_reply_free(&r);
}

static int exited(void *ud) {
    return !h_alive(ud);
}

/* Two houses with the same id and state directory would each believe the journal is theirs:
 * the second refuses to start. So does a house whose state directory cannot be written. */
Test(journal, a_second_house_on_the_same_journal_refuses_to_start) {
    world w;
    world_up(&w);
    house_up(&w);
    const char *extra[] = {"--state-dir", w.state, NULL};
    h_proc *second = h_house_start(HOUSE, w.secret, w.bridge_port, w.up_url, extra);
    cr_assert(h_wait(exited, second, 10000), "the second house kept running");
    cr_assert(WIFEXITED(second->status) && WEXITSTATUS(second->status) == 2, "status %d",
              second->status);
    cr_assert(h_log_count_all(second, "in use by another ghostport-house"),
              "no clear error in the log");
    cr_assert(h_alive(w.house), "the first house died");

    char file[600];
    snprintf(file, sizeof file, "%s/not-a-dir", h_dir());
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    const char *bad[] = {"--state-dir", file, NULL};
    h_proc *third = h_house_start("j3", w.secret, w.bridge_port, w.up_url, bad);
    cr_assert(h_wait(exited, third, 10000), "a house with an unusable state-dir kept running");
    cr_assert(WIFEXITED(third->status) && WEXITSTATUS(third->status) == 2);
    cr_assert(h_log_count_all(third, "state-dir:"), "no clear error in the log");
}

/* The journal grows by every response; past 4x the cache's budget (128 MiB) it is rewritten
 * from what the cache holds plus the calls still running. After that rewrite and a kill -9:
 * a call that was running throughout (only its START in the old file) still counts as run,
 * recent responses replay, and ones the cache had already turned into tombstones get 502. */
Test(journal, compaction_keeps_running_calls_and_the_cache, .timeout = 240) {
    world w;
    world_up(&w);
    house_up(&w);
    send_get_reached(&w, "jc-slow", "/slow?ms=60000", "gp:rep:jc-slow");

    /* 1,000,000-byte responses (under the cache's 1 MiB entry limit), 16 at a time. */
    char id[32], reply[48];
    int n = 0;
    while (n < 200 && h_log_count(w.house, "event=journal_compacted") == 0) {
        for (int i = n; i < n + 16; i++) {
            snprintf(id, sizeof id, "jc-%d", i);
            snprintf(reply, sizeof reply, "gp:rep:%s", id);
            send_get(id, "/bytes/1000000", reply);
        }
        for (int i = n; i < n + 16; i++) {
            snprintf(id, sizeof id, "jc-%d", i);
            h_reply r;
            cr_assert(h_wait_reply(id, NULL, 30000, &r), "%s: no reply", id);
            cr_assert_eq(r.status, 200);
            cr_assert_eq(r.body_len, 1000000);
            h_reply_free(&r);
            freeReplyObject(h_cmd("DEL gp:rep:%s", id));
        }
        n += 16;
    }
    cr_assert(h_wait_log(w.house, "event=journal_compacted", 10000), "no compaction after %d MB",
              n);
    struct stat st;
    cr_assert_eq(stat(w.journal, &st), 0);
    cr_assert_lt(st.st_size, 64 << 20, "compacted journal of %lld bytes", (long long)st.st_size);
    h_kill9(w.house);

    house_up(&w);
    h_reply r;
    cr_assert(h_wait_reply("jc-slow", NULL, 30000, &r), "the slow call got no reply");
    expect_replay_unavailable(&r);
    h_reply_free(&r);
    snprintf(id, sizeof id, "jc-%d", n - 1);
    snprintf(reply, sizeof reply, "gp:rep:%s-again", id);
    send_get(id, "/bytes/1000000", reply);
    cr_assert(h_wait_reply(id, reply, 30000, &r));
    cr_assert_eq(r.status, 200, "the newest response was not kept: %d", r.status);
    cr_assert_eq(r.body_len, 1000000);
    h_reply_free(&r);
    send_get("jc-0", "/bytes/1000000", "gp:rep:jc-0-again");
    cr_assert(h_wait_reply("jc-0", "gp:rep:jc-0-again", 30000, &r));
    expect_replay_unavailable(&r); /* over the cache's budget: a tombstone */
    h_reply_free(&r);
    cr_assert_eq(h_hits(w.up_port, "jc-slow"), 1);
    cr_assert_eq(h_hits(w.up_port, "jc-0"), 1);
    cr_assert_eq(h_hits(w.up_port, id), 1);
}
