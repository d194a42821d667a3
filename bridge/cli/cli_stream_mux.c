/* cli_stream_mux.c — the mux of `ghostport connect` and `forward` (cli_stream.c): the two Redis
 * connections every stream of the process shares, which stream the shared threads work on
 * (joining, leaving, queued for the writer, waking the reader), the writer thread and its
 * rounds, and the start and end of it all. The reader thread is cli_stream_reader.c; the three
 * files share cli_stream_int.h.
 *
 * The writer's connection carries the opens, the data, the resets and the reply keys' DEL, each
 * round one pipeline of what was queued since the last, with at most ROUND_DATA_MAX data bytes,
 * so that one stream's bulk delays another's entries by one round at most. An input thread
 * that finds the connection free runs the round itself (no thread switch a chunk); else the
 * writer thread runs it.
 * When a stream joins, a full queue drains or the output thread made an ack due, the reader's
 * blocked XREAD is cut short with CLIENT UNBLOCK of the reader's CLIENT ID, sent on the
 * writer's connection; a Redis (or an ACL) that refuses those makes the reader block at most
 * FALLBACK_BLOCK_MS instead, said once. */
#include "cli_stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUND_DATA_MAX (256u << 10) /* data bytes a writer round: what another stream waits */
#define UNBLOCK_TRIES 50 /* CLIENT UNBLOCK before the XREAD reached Redis: again in 1 ms */
/* What one stream adds to a writer round at most (build_part): the open (20 arguments), two
 * entries (rst, data: XADD key * and at most 4 fields each), PEXPIRE, the XDELs of sin's
 * trimmed and sout's read entries (a leaving stream's last ones), DEL of the reply key. */
#define PART_ARGS (20 + 2 * (3 + 2 * 4) + 3 + (2 + TRIM_BATCH) + (2 + CTL_MAX) + 2)
#define PART_CMDS 7

/* --- who works on which stream ------------------------------------------------------------ */

/* Queues p for the next writer round (m->mu held). 1 when it was not queued yet. */
static int enqueue_locked(mux *m, pump *p) {
    if (p->w_queued || p->slot < 0 || m->slot[p->slot] != p)
        return 0;
    p->w_queued = 1;
    p->w_next = NULL;
    if (m->w_tail)
        m->w_tail->w_next = p;
    else
        m->w_head = p;
    m->w_tail = p;
    return 1;
}

/* Queues p for the writer thread (m->mu held). */
static void kick_locked(mux *m, pump *p) {
    if (enqueue_locked(m, p))
        pthread_cond_signal(&m->wr_cv);
}

/* p has work for the writer (flags set under p->mu, which the caller no longer holds). */
void mux_kick(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    kick_locked(m, p);
    pthread_mutex_unlock(&m->mu);
}

/* What the reader should read changed (m->mu held): cut its blocked XREAD short. */
static void wake_locked(mux *m) {
    m->set_gen++;
    pthread_cond_signal(&m->rd_cv);
    if (m->rd_blocked && !m->no_unblock && m->rd_id >= 0) {
        m->unblock_wanted = 1;
        m->unblock_tries = 0;
        m->unblock_at = 0;
        pthread_cond_signal(&m->wr_cv);
    }
}

void mux_wake(mux *m) {
    pthread_mutex_lock(&m->mu);
    wake_locked(m);
    pthread_mutex_unlock(&m->mu);
}

/* The stream p joins the mux: -1 when MAX_STREAMS are open. */
int mux_join(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < MAX_STREAMS && m->slot[i])
        i++;
    if (i < MAX_STREAMS) {
        m->slot[i] = p;
        p->slot = i;
        kick_locked(m, p); /* its open */
        wake_locked(m);    /* its reply key */
    }
    pthread_mutex_unlock(&m->mu);
    return i < MAX_STREAMS ? 0 : -1;
}

/* The stream leaves, once the writer has written what it has for it (its rst, its last
 * trims) and nobody works on it any more (the reader holds it while its XREAD blocks: woken). */
void mux_leave(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    if (p->slot >= 0) {
        p->leaving = 1;
        kick_locked(m, p);
        wake_locked(m);
        while (p->w_queued || p->refs > 0)
            pthread_cond_wait(&m->ref_cv, &m->mu);
        m->slot[p->slot] = NULL;
        p->slot = -1;
    }
    pthread_mutex_unlock(&m->mu);
}

void mux_unref_locked(mux *m, pump *p) {
    if (--p->refs == 0)
        pthread_cond_broadcast(&m->ref_cv);
}

/* Every stream fails: Redis went away under one of the shared connections (what: the command).
 * Each gets the message and an rst for the writer (written if Redis is back by then). */
void mux_lost(mux *m, const char *what, const char *err) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MAX_STREAMS; i++) {
        pump *p = m->slot[i];
        if (!p)
            continue;
        pthread_mutex_lock(&p->mu);
        if (!p->over) {
            if (p->ph == PH_OPENING) {
                cs_pump_fail(p, ST_REFUSED, "%s failed: %s", what, err);
                cs_queue_rst_reason(p, "closed", "the opener lost Redis while opening");
                p->w_delrep = 1;
            } else {
                cs_local_reset(p, GP_SR_LOCAL, "%s failed: %s (Redis connection lost)", what, err);
                cs_queue_rst(p, "the opener lost Redis");
            }
            cs_mark_over(p);
            kick_locked(m, p);
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&m->mu);
}

/* A line on stderr, once per process, when Redis will not let the reader be woken early. */
void mux_note_no_unblock(mux *m, const char *cmd, const char *err) {
    pthread_mutex_lock(&m->mu);
    int first = !m->no_unblock;
    m->no_unblock = 1;
    m->unblock_wanted = 0;
    pthread_mutex_unlock(&m->mu);
    if (first && !m->cf->quiet)
        cli_err(m->c,
                "note: Redis refused %s (%s): the streams' shared reader now looks for new "
                "entries every %d ms (a new stream may wait that long for its first bytes); "
                "grant this user +client|id +client|unblock",
                cmd, err, FALLBACK_BLOCK_MS);
}

/* --- the writer --------------------------------------------------------------------------- */

void cs_put_arg(wround *r, int *ac, const char *s, size_t len) {
    r->av[r->na + *ac] = s;
    r->al[r->na + *ac] = len;
    (*ac)++;
}

int cs_add_cmd(wround *r, int ac) {
    r->cmds[r->n] = (br_rc_cmd){.argc = ac, .argv = r->av + r->na, .lens = r->al + r->na};
    r->out[r->n] = NULL;
    r->na += ac;
    return r->n++;
}

/* XADD key * fields of e; the command's index, or -1 for an entry the codec refuses. */
static int add_xadd(wround *r, const char *key, const gp_stream_entry *e, gp_stream_field *f,
                    char *scratch) {
    int n = gp_stream_entry_build(e, f, scratch, 96);
    if (n < 0)
        return -1;
    int ac = 0;
    cs_put_arg(r, &ac, "XADD", 4);
    cs_put_arg(r, &ac, key, strlen(key));
    cs_put_arg(r, &ac, "*", 1);
    for (int i = 0; i < n; i++) {
        cs_put_arg(r, &ac, (const char *)f[i].name.p, f[i].name.len);
        cs_put_arg(r, &ac, f[i].value.len ? (const char *)f[i].value.p : "", f[i].value.len);
    }
    return cs_add_cmd(r, ac);
}

/* XDEL key ids[0..n). */
void cs_add_xdel(wround *r, const char *key, char (*ids)[GP_STREAM_MARK_ID], size_t n) {
    int ac = 0;
    cs_put_arg(r, &ac, "XDEL", 4);
    cs_put_arg(r, &ac, key, strlen(key));
    for (size_t i = 0; i < n; i++)
        cs_put_arg(r, &ac, ids[i], strlen(ids[i]));
    cs_add_cmd(r, ac);
}

/* Adds p's work to the round (p->mu held): at most PART_CMDS commands, PART_ARGS arguments.
 * *data: data bytes in the round so far. */
static void build_part(mux *m, wround *r, wpart *wp, size_t *data) {
    pump *p = wp->p;
    wscratch *x = &p->wx;
    const st_conf *cf = m->cf;
    int sin_written = 0, ac;
    if (p->w_open) {
        p->w_open = 0;
        snprintf(x->win, sizeof x->win, "%u", cf->window);
        snprintf(x->idle, sizeof x->idle, "%u", cf->idle_ms);
        snprintf(x->tmo, sizeof x->tmo, "%u", cf->timeout_ms);
        const char *av[] = {"XADD",    m->kreq,      "MAXLEN", "~",     "10000",
                            "*",       "kind",       "stream", "id",    p->sid,
                            "service", cf->service,  "window", x->win,  "idle_ms",
                            x->idle,   "timeout_ms", x->tmo,   "reply", p->krep};
        ac = 0;
        for (size_t i = 0; i < sizeof av / sizeof av[0]; i++)
            cs_put_arg(r, &ac, av[i], strlen(av[i]));
        wp->i_open = cs_add_cmd(r, ac);
    }
    if (p->w_rst) {
        p->w_rst = 0;
        x->rst = (gp_stream_entry){0};
        snprintf(x->rst.rst, sizeof x->rst.rst, "%s", p->rst_reason);
        memcpy(x->msg, p->rst_msg, sizeof x->msg);
        x->rst.message = (gp_str){(const uint8_t *)x->msg, strlen(x->msg)};
        wp->i_rst = add_xadd(r, p->kin, &x->rst, x->f[0], x->num[0]);
        sin_written |= wp->i_rst >= 0;
    }
    if (p->w_data_state == WD_PENDING) {
        size_t len = p->w_data->data.len;
        if (p->s.reset != GP_SR_NONE) {
            p->w_data_state = WD_DROPPED; /* the stream is over: nothing more goes */
            pthread_cond_broadcast(&p->cv);
        } else if (*data > 0 && *data + len > ROUND_DATA_MAX) {
            wp->more = 1; /* the next round: the streams queued behind it go first */
        } else {
            wp->i_data = add_xadd(r, p->kin, p->w_data, x->f[1], x->num[1]);
            p->w_data_state = wp->i_data >= 0 ? WD_INFLIGHT : WD_FAILED;
            if (wp->i_data < 0) {
                cs_local_reset(p, GP_SR_LOCAL, "internal error: cannot build a stream entry");
                cs_queue_rst(p, "the opener failed");
                pthread_cond_broadcast(&p->cv);
            }
            *data += len;
            sin_written |= wp->i_data >= 0;
        }
    }
    if (sin_written) { /* the key lives 2 x idle from its last write (STREAMS.md, expiry) */
        snprintf(x->ttl, sizeof x->ttl, "%llu", 2ull * cf->idle_ms);
        ac = 0;
        cs_put_arg(r, &ac, "PEXPIRE", 7);
        cs_put_arg(r, &ac, p->kin, strlen(p->kin));
        cs_put_arg(r, &ac, x->ttl, strlen(x->ttl));
        cs_add_cmd(r, ac);
    }
    /* Our entries the house's ack covers leave Redis (the reader's upkeep does it while the
     * stream is read; this, for the last ones when it leaves). */
    size_t ntrim = gp_stream_marks_take(&p->ents, p->s.snd_acked, x->trim, TRIM_BATCH);
    if (ntrim)
        cs_add_xdel(r, p->kin, x->trim, ntrim);
    wp->more |= gp_stream_marks_due(&p->ents, p->s.snd_acked);
    /* ... and so do the house's ack-only entries we read: an idle stream's sout holds none. */
    if (p->nctl) {
        memcpy(x->ctl, p->ctl, p->nctl * sizeof p->ctl[0]);
        cs_add_xdel(r, p->kout, x->ctl, p->nctl);
        p->nctl = 0;
    }
    if (p->w_delrep) {
        p->w_delrep = 0;
        ac = 0;
        cs_put_arg(r, &ac, "DEL", 3);
        cs_put_arg(r, &ac, p->krep, strlen(p->krep));
        cs_add_cmd(r, ac);
    }
}

/* Takes Redis's answers for p's commands (p->mu held). */
static void finish_part(mux *m, wround *r, wpart *wp) {
    pump *p = wp->p;
    redisReply *o;
    if (wp->i_open >= 0 && (o = r->out[wp->i_open]) && o->type != REDIS_REPLY_STRING) {
        cs_pump_fail(p, ST_REFUSED, "XADD %s failed: %s", m->kreq, cs_rerr(m->rw, o));
        cs_mark_over(p);
    }
    if (wp->i_data >= 0) {
        o = r->out[wp->i_data];
        if (o && o->type == REDIS_REPLY_STRING) {
            const gp_stream_entry *e = p->w_data;
            /* A bare fin is never trimmed (STREAMS.md, limits): no mark. */
            if (e->data.len > 0 &&
                gp_stream_marks_push(&p->ents, o->str, o->len, e->off + e->data.len, 0) != 0) {
                /* out of memory: the entry stays until the key expires */
            }
            p->w_data_state = WD_DONE;
        } else {
            p->w_data_state = WD_FAILED;
            if (o) { /* a lost connection is mux_lost's */
                cs_local_reset(p, GP_SR_LOCAL, "XADD %s failed: %s", p->kin, cs_rerr(m->rw, o));
                cs_queue_rst(p, "the opener stopped");
            }
        }
        pthread_cond_broadcast(&p->cv);
    }
    cs_check_over(p);
    if (p->w_rst || p->w_data_state == WD_PENDING)
        wp->more = 1; /* asked for while this round was on its way */
}

/* Sends CLIENT UNBLOCK for the reader's blocked XREAD (m->mu held, released meanwhile; by the
 * thread that set m->wbusy). */
static void send_unblock(mux *m) {
    char id[24];
    snprintf(id, sizeof id, "%lld", m->rd_id);
    pthread_mutex_unlock(&m->mu);
    const char *av[] = {"CLIENT", "UNBLOCK", id};
    redisReply *r = br_rc_cmd_at(m->rw, m->kreq, strlen(m->kreq), 3, av, NULL);
    int early = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    if (r && r->type == REDIS_REPLY_ERROR)
        mux_note_no_unblock(m, "CLIENT UNBLOCK", r->str);
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&m->mu);
    if (early && ++m->unblock_tries < UNBLOCK_TRIES)
        m->unblock_at = mono_ms() + 1; /* sent before the XREAD reached Redis: again soon */
    else
        m->unblock_wanted = 0; /* done, or the reader's BLOCK ends by itself (STEP_MS) */
}

/* Room in the writer's arrays for rounds of n streams (kept if that fails). */
static int wround_grow(mux *m, size_t n) {
    wround *r = &m->wr;
    wpart *p2 = realloc(m->parts, n * sizeof *m->parts);
    if (p2)
        m->parts = p2;
    br_rc_cmd *c2 = realloc(r->cmds, n * PART_CMDS * sizeof *r->cmds);
    if (c2)
        r->cmds = c2;
    redisReply **o2 = realloc(r->out, n * PART_CMDS * sizeof *r->out);
    if (o2)
        r->out = o2;
    const char **a2 = realloc(r->av, n * PART_ARGS * sizeof *r->av);
    if (a2)
        r->av = a2;
    size_t *l2 = realloc(r->al, n * PART_ARGS * sizeof *r->al);
    if (l2)
        r->al = l2;
    if (!p2 || !c2 || !o2 || !a2 || !l2)
        return -1;
    m->wcap = n;
    return 0;
}

/* One round: every stream queued now, in their order, in one pipeline on the writer's
 * connection. m->mu held (released meanwhile) by the thread that set m->wbusy: the writer
 * thread, or an input thread that found the connection free (its entry then goes without
 * a handoff between threads: a bulk upload's chunks and a keystroke's latency). */
static void run_round(mux *m) {
    size_t np = 0;
    for (pump *p = m->w_head; p; p = p->w_next)
        np++;
    if (np > m->wcap) /* room for them all, else as many as there is room for */
        wround_grow(m, np);
    if (np > m->wcap)
        np = m->wcap;
    wround r = m->wr;
    wpart *parts = m->parts;
    for (size_t i = 0; i < np; i++) {
        pump *p = m->w_head;
        m->w_head = p->w_next;
        if (!m->w_head)
            m->w_tail = NULL;
        p->w_queued = 0;
        p->refs++;
        parts[i] = (wpart){.p = p, .i_open = -1, .i_rst = -1, .i_data = -1};
    }
    pthread_mutex_unlock(&m->mu);

    r.n = r.na = 0;
    size_t data = 0;
    for (size_t i = 0; i < np; i++) {
        pthread_mutex_lock(&parts[i].p->mu);
        build_part(m, &r, &parts[i], &data);
        pthread_mutex_unlock(&parts[i].p->mu);
    }
    int lost = 0;
    if (r.n > 0) {
        br_rc_set_timeout(m->rw, REDIS_TIMEOUT_MS);
        br_rc_pipeline(m->rw, r.n, r.cmds, r.out);
        for (int k = 0; k < r.n; k++)
            lost |= r.out[k] == NULL; /* no answer: the connection failed */
    }
    char err[256] = "";
    if (lost)
        snprintf(err, sizeof err, "%s", br_rc_error(m->rw));
    for (size_t i = 0; i < np; i++) {
        pthread_mutex_lock(&parts[i].p->mu);
        finish_part(m, &r, &parts[i]);
        pthread_mutex_unlock(&parts[i].p->mu);
    }
    for (int k = 0; k < r.n; k++)
        if (r.out[k])
            freeReplyObject(r.out[k]);
    if (lost)
        mux_lost(m, "XADD", err);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < np; i++) {
        if (parts[i].more)
            kick_locked(m, parts[i].p);
        mux_unref_locked(m, parts[i].p);
    }
}

/* Whether a CLIENT UNBLOCK is to be sent now (m->mu held). */
static int unblock_due(mux *m) {
    if (m->unblock_wanted && !(m->rd_blocked && m->rd_gen != m->set_gen && m->rd_id >= 0))
        m->unblock_wanted = 0; /* the reader saw the change by itself */
    return m->unblock_wanted && mono_ms() >= m->unblock_at;
}

static void *writer_main(void *arg) {
    mux *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        int unblock = unblock_due(m);
        if (!m->wbusy && (unblock || m->w_head)) {
            m->wbusy = 1;
            if (unblock)
                send_unblock(m);
            else
                run_round(m);
            m->wbusy = 0;
            continue;
        }
        if (m->wstop && !m->w_head && !m->wbusy)
            break;
        if (m->unblock_wanted) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&m->wr_cv, &m->mu, &ts);
        } else {
            pthread_cond_wait(&m->wr_cv, &m->mu);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* p's entry is ready for the writer (w_data pending): this thread writes the round itself when
 * the writer's connection is free, else the writer thread will. */
void mux_write(mux *m, pump *p) {
    pthread_mutex_lock(&m->mu);
    if (m->wbusy) {
        kick_locked(m, p);
    } else {
        enqueue_locked(m, p);
        m->wbusy = 1;
        run_round(m);
        if (unblock_due(m)) /* while a bulk upload keeps the connection busy */
            send_unblock(m);
        m->wbusy = 0;
        if (m->w_head || m->unblock_wanted) /* queued meanwhile: the writer thread's */
            pthread_cond_signal(&m->wr_cv);
    }
    pthread_mutex_unlock(&m->mu);
}

/* --- the process's connections ------------------------------------------------------------ */

/* A note when the house is not registered or offline; an error only when it is unknown.
 * A user whose ACL may not read the registry (a producer) skips the check. */
static int check_house(cli_ctx *c, br_rc *rc, const st_conf *cf) {
    char err[512];
    gp_reg_house h;
    int rv = 0;
    if (gp_reg_get(rc, c->prefix, cf->house, &h, err, sizeof err) != 0) {
        if (!strstr(err, "NOPERM")) {
            cli_err(c, "%s", err);
            rv = CLI_USAGE;
        }
    } else if (!h.registered) {
        cli_err(c, "no house '%s' is registered under prefix '%s' (see ghostport house list)",
                cf->house, c->prefix);
        rv = CLI_USAGE;
    } else if (!h.st.connected && !cf->quiet) {
        fprintf(stderr,
                "%s: note: house %s is offline; the open waits until a bridge picks it up or "
                "its %u ms deadline passes\n",
                c->prog, cf->house, cf->timeout_ms);
    }
    return rv;
}

/* A connection named after this process and its role, connected (PING). NULL with the
 * error printed. */
static br_rc *dial(cli_ctx *c, const gp_rurl *u, const char *role) {
    br_rc *rc = br_rc_new_url(u, REDIS_TIMEOUT_MS);
    if (!rc) {
        cli_err(c, "out of memory");
        return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "ghostport-cli:%ld:%s", (long)getpid(), role);
    br_rc_set_name(rc, name);
    if (br_rc_ping(rc) != 0) {
        cli_err(c, "%s", br_rc_error(rc));
        br_rc_free(rc);
        return NULL;
    }
    return rc;
}

/* The two connections (checked), the house's check, the reader and writer threads. 0, or an
 * exit code with the error printed. */
int mux_start(mux *m, cli_ctx *c, const st_conf *cf, const gp_rurl *u) {
    memset(m, 0, sizeof *m);
    m->c = c;
    m->cf = cf;
    m->rd_id = -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->rd_cv, NULL);
    pthread_cond_init(&m->wr_cv, NULL);
    pthread_cond_init(&m->ref_cv, NULL);
    if (gp_key_req(m->kreq, c->prefix, cf->house) < 0) {
        cli_err(c, "key too long");
        mux_free(m);
        return CLI_USAGE;
    }
    if (wround_grow(m, 1) != 0) {
        cli_err(c, "out of memory");
        mux_free(m);
        return CLI_FAIL;
    }
    int rv = 0;
    if (!(m->rw = dial(c, u, "writer")) || (rv = check_house(c, m->rw, cf)) != 0 ||
        !(m->rr = dial(c, u, "reader"))) {
        mux_free(m);
        return m->rw && rv != 0 ? rv : CLI_USAGE;
    }
    if (pthread_create(&m->wr_t, NULL, writer_main, m) != 0) {
        cli_err(c, "cannot start a thread");
        mux_free(m);
        return CLI_FAIL;
    }
    m->threads = 1;
    if (pthread_create(&m->rd_t, NULL, cs_reader_main, m) != 0) {
        cli_err(c, "cannot start a thread");
        mux_free(m);
        return CLI_FAIL;
    }
    m->threads = 2;
    return 0;
}

/* Stops the threads (every stream has left) and closes the connections. */
void mux_free(mux *m) {
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    wake_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (m->threads > 1)
        pthread_join(m->rd_t, NULL);
    pthread_mutex_lock(&m->mu);
    m->wstop = 1;
    pthread_cond_signal(&m->wr_cv);
    pthread_mutex_unlock(&m->mu);
    if (m->threads > 0)
        pthread_join(m->wr_t, NULL);
    br_rc_free(m->rr);
    br_rc_free(m->rw);
    free(m->parts);
    free(m->wr.cmds);
    free(m->wr.out);
    free(m->wr.av);
    free(m->wr.al);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->rd_cv);
    pthread_cond_destroy(&m->wr_cv);
    pthread_cond_destroy(&m->ref_cv);
}
