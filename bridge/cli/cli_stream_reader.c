/* cli_stream_reader.c — the reader of `ghostport connect` and `forward` (cli_stream.c): the
 * thread that reads every stream of the process on one Redis connection, each stream's upkeep
 * pipelined before its XREAD. It shares cli_stream_int.h with cli_stream.c (the commands, a
 * stream's life and its own threads) and cli_stream_mux.c (the mux and its writer).
 *
 * The reader thread, on its own connection, reads every open stream's `sout` and every opening
 * stream's reply key with one `XREAD COUNT n BLOCK t STREAMS k1..kN id1..idN`. That works on
 * a Redis Cluster too because a CLI process talks to one house, whose keys share a hash slot,
 * and the reply keys are put in that slot: `<p>:rep:{<house>}:<sid>` (a key of the reply
 * family, as the contract asks). A reply key in a slot of its own would need a connection of
 * its own while the open waits (one a pending open, up to the open's timeout_ms while a house
 * is offline) or a third reader per Redis node; the hash tag costs nothing. In the same
 * pipeline, before the XREAD, go each stream's acks and keep-alives and the XDELs of the
 * entries consumed (a stream's own reader sent them on its connection before): an ack never
 * waits behind another stream's upload, and costs no round trip of its own. The reader applies
 * each entry to its stream's gp_stream and hands the data to the output, writing at once what
 * the output takes without waiting (send with MSG_DONTWAIT, or PIPE_BUF into a pipe that polls
 * writable: no thread switch while the client keeps up) and queueing the rest for the stream's
 * output thread. It never waits for an output, so a client that stops reading stalls no other
 * stream. A stream's queue is bounded (its window, at most OUTQ_MAX): when the next entry would
 * not fit, its `sout` is left out of the XREAD until the queue has drained to half (the house
 * stops at the window, the entries wait in Redis as they would for any slow reader); its
 * keep-alives still go out, and its idle clock stops meanwhile, since the house's own
 * keep-alives are among the entries not read. Before each XREAD it also looks at every
 * stream's deadlines: the open's outcome, idle, a signal.
 * Everything read from Redis is hostile: a bad entry resets its stream with a reason. */
#include "cli_esc.h"
#include "cli_stream_int.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_COUNT_S "64" /* READ_COUNT, as XREAD takes it */
_Static_assert(READ_COUNT == 64, "READ_COUNT_S spells READ_COUNT");

/* --- the reader --------------------------------------------------------------------------- */

/* Field/value array of an XREAD entry -> fields. -1 when its shape is not that. */
static int entry_fields(const redisReply *e, gp_stream_field *f, size_t *n, const char **id) {
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
        return -1;
    *id = e->element[0]->str;
    const redisReply *fv = e->element[1];
    if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0 ||
        fv->elements / 2 > GP_STREAM_FIELDS_MAX)
        return -2;
    for (size_t i = 0; i < fv->elements; i++)
        if (fv->element[i]->type != REDIS_REPLY_STRING)
            return -2;
    *n = fv->elements / 2;
    for (size_t i = 0; i < *n; i++) {
        f[i].name = (gp_str){(const uint8_t *)fv->element[2 * i]->str, fv->element[2 * i]->len};
        f[i].value =
            (gp_str){(const uint8_t *)fv->element[2 * i + 1]->str, fv->element[2 * i + 1]->len};
    }
    return 0;
}

/* Entries read on an opening stream's reply key: its outcome (p->mu held). */
static void take_outcome(pump *p, const redisReply *ents) {
    const st_conf *cf = p->m->cf;
    for (size_t i = 0; i < ents->elements && p->ph == PH_OPENING && !p->over; i++) {
        const redisReply *en = ents->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING ||
            en->element[1]->type != REDIS_REPLY_ARRAY || en->element[0]->len >= sizeof p->rlast)
            continue;
        memcpy(p->rlast, en->element[0]->str, en->element[0]->len + 1);
        const redisReply *fv = en->element[1];
        const redisReply *vid = NULL, *vst = NULL, *vfin = NULL, *verr = NULL, *vmsg = NULL;
        for (size_t k = 0; k + 1 < fv->elements; k += 2) {
            const redisReply *kk = fv->element[k], *vv = fv->element[k + 1];
            if (kk->type != REDIS_REPLY_STRING || vv->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(kk->str, "id") == 0)
                vid = vv;
            else if (strcmp(kk->str, "status") == 0)
                vst = vv;
            else if (strcmp(kk->str, "final") == 0)
                vfin = vv;
            else if (strcmp(kk->str, "error") == 0)
                verr = vv;
            else if (strcmp(kk->str, "message") == 0)
                vmsg = vv;
        }
        if (vid && (vid->len != strlen(p->sid) || memcmp(vid->str, p->sid, vid->len) != 0))
            continue; /* someone else's entry on our key */
        char *e = NULL, error[64] = "", message[300] = "";
        long st = vst ? strtol(vst->str, &e, 10) : 0;
        int status = vst && e && !*e && st >= 100 && st <= 599 ? (int)st : 0;
        if (verr)
            cli_esc(error, sizeof error, verr->str, verr->len);
        if (vmsg)
            cli_esc(message, sizeof message, vmsg->str, vmsg->len);
        int final = vfin && strcmp(vfin->str, "1") == 0;
        if (!final && status != 200)
            continue; /* an outcome is one entry; take a 200 as it is */
        p->w_delrep = 1;
        if (status == 200 && !error[0]) {
            p->ph = PH_OPEN;
            snprintf(p->last, sizeof p->last, "0-0");
            pthread_cond_broadcast(&p->cv);
        } else {
            cs_pump_fail(p, ST_REFUSED, "open of %s on house %s refused: %d %s%s%s", cf->service,
                         cf->house, status, error[0] ? error : "error", message[0] ? ": " : "",
                         message);
            cs_mark_over(p);
        }
    }
}

/* Writes to the output what it takes at once, without waiting: a socket with MSG_DONTWAIT, a
 * pipe (connect's stdout) PIPE_BUF at a time while it polls writable (a write of PIPE_BUF into
 * a pipe with room does not block). Bytes written, 0 when none (an error is left to the output
 * thread to find again and report). */
static size_t write_some(pump *p, const uint8_t *b, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w;
        if (p->out_sock) {
            w = send(p->out_fd, b + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            struct pollfd pf = {.fd = p->out_fd, .events = POLLOUT};
            if (poll(&pf, 1, 0) != 1 || pf.revents != POLLOUT)
                break;
            w = write(p->out_fd, b + done, n - done < PIPE_BUF ? n - done : PIPE_BUF);
        }
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return done;
}

/* The reader writes the queue out as far as the output takes it at once (no thread switch
 * while the client keeps up); the rest is the output thread's. p->mu held. */
static void write_now(pump *p) {
    while (p->out_fast && p->oq_head && !p->out_busy && !p->over) {
        oq_chunk *c = p->oq_head;
        size_t w = write_some(p, c->b + c->done, c->len - c->done);
        if (w == 0 || cs_consume(p, w) != 0)
            break;
    }
}

/* Entries read on an open stream's sout (p->mu held). Returns how many were taken: the rest
 * waits in Redis (the output queue is full, or the stream is over). */
static size_t take_entries(pump *p, const redisReply *ents) {
    size_t i = 0;
    int credit = 0, out = 0; /* whom to wake: each wake-up is a thread switch */
    for (; i < ents->elements && !p->over; i++) {
        const redisReply *ent = ents->element[i];
        gp_stream_field f[GP_STREAM_FIELDS_MAX];
        size_t nf = 0;
        const char *id = NULL;
        char err[160];
        gp_stream_entry e;
        int shape = entry_fields(ent, f, &nf, &id);
        int perr = shape == 0 ? gp_stream_entry_parse(&e, f, nf, err, sizeof err) : 0;
        if (shape != 0 || perr != 0) {
            if (shape == -1)
                snprintf(err, sizeof err, "an entry of unexpected shape");
            else if (shape == -2)
                snprintf(err, sizeof err, "fields of unexpected shape or too many");
            cs_local_reset(p, GP_SR_MALFORMED, "malformed entry from the house on %s: %s", p->kout,
                           err);
            cs_queue_rst(p, err);
            break;
        }
        if (e.data.len > 0 && p->oq_bytes > 0 && p->oq_bytes + e.data.len > p->oq_cap) {
            p->held = 1; /* read again once the output has drained */
            break;
        }
        size_t skip = 0, take = 0;
        uint64_t now = mono_ms();
        int rc = gp_stream_apply(&p->s, now, &e, &skip, &take);
        if (p->s.reset == GP_SR_PEER) {
            char *em = cli_esc_dup((const char *)e.message.p, e.message.len);
            cs_pump_fail(p, ST_FAIL, "stream reset by the house: %s%s%s", p->s.rst_reason,
                         em && *em ? ": " : "", em ? em : "");
            free(em);
            cs_mark_over(p);
            break;
        }
        if (rc != 0) {
            gp_stream_reason why = p->s.reset;
            cs_local_reset(p, why, "bad entry from the house on %s: %s (entry %s)", p->kout,
                           gp_stream_reason_name(why), id);
            char m[96];
            snprintf(m, sizeof m, "the opener refused entry %s: %s", id,
                     gp_stream_reason_name(why));
            cs_queue_rst(p, m);
            break;
        }
        if (take > 0 && p->out_fast && !p->oq_head && !p->out_busy) {
            /* Nothing queued: straight from Redis's answer to the output, as far as it goes. */
            size_t w = write_some(p, e.data.p + skip, take);
            if (w > 0 && gp_stream_consumed(&p->s, (uint64_t)w) != 0) {
                cs_local_reset(p, GP_SR_LOCAL, "internal error: consumed more than delivered");
                cs_queue_rst(p, "the opener failed");
                break;
            }
            skip += w;
            take -= w;
        }
        if (take > 0) {
            oq_chunk *c = malloc(sizeof *c + take);
            if (!c) {
                cs_local_reset(p, GP_SR_LOCAL, "out of memory");
                cs_queue_rst(p, "the opener ran out of memory");
                break;
            }
            c->next = NULL;
            c->len = take;
            c->done = 0;
            memcpy(c->b, e.data.p + skip, take);
            if (p->oq_tail)
                p->oq_tail->next = c;
            else
                p->oq_head = c;
            p->oq_tail = c;
            p->oq_bytes += take;
        }
        credit |= e.has_ack || e.has_win;
        out |= take > 0 || e.fin;
        if (!e.has_off && p->nctl < CTL_MAX) /* read, it can go (STREAMS.md) */
            memcpy(p->ctl[p->nctl++], id, strlen(id) + 1);
        snprintf(p->last, sizeof p->last, "%s", id);
    }
    if (credit)
        pthread_cond_signal(&p->cv);
    if (out)
        pthread_cond_signal(&p->out_cv);
    return i;
}

/* What one stream puts in the reader's pipeline at most (upkeep): XADD key * ack N, PEXPIRE,
 * the XDEL of the ack it supersedes, the XDELs of sin's trimmed and sout's read entries. */
#define UPKEEP_ARGS (5 + 3 + 3 + (2 + TRIM_BATCH) + (2 + CTL_MAX))
#define UPKEEP_CMDS 5

/* One stream as the reader sees it in one loop: a reference (taken before the pipeline,
 * dropped after its answers), the key it reads (if any) and its upkeep's ack command. */
typedef struct rkey {
    pump *p;
    int read, reply; /* a key in the XREAD; the reply key (else sout) */
    char key[GP_KEY_MAX], id[48];
    int got;   /* it came back with entries */
    int i_ack; /* the ack's XADD in the pipeline, or -1 */
} rkey;

/* The reader's share of p's upkeep, pipelined before its XREAD on its own connection (as a
 * stream's reader did alone before; the writer's connection stays for the data, so acks never
 * wait behind a bulk upload): the ack when one is due (every quarter window, at the peer's
 * fin, caught up with sout and the output, the keep-alive), with PEXPIRE and the XDEL of the
 * ack entry it supersedes; our sin entries the house acknowledged; the house's ack-only sout
 * entries read. p->mu held. */
static void upkeep(mux *m, wround *r, rkey *k, uint64_t now) {
    pump *p = k->p;
    rscratch *x = &p->rx;
    int ac;
    uint64_t ack;
    k->i_ack = -1;
    if (p->ph == PH_OPEN && gp_stream_ack_due(&p->s, now, p->caught_up && !p->oq_head, &ack)) {
        snprintf(x->ack, sizeof x->ack, "%llu", (unsigned long long)ack);
        snprintf(x->ttl, sizeof x->ttl, "%llu", 2ull * m->cf->idle_ms);
        ac = 0;
        cs_put_arg(r, &ac, "XADD", 4);
        cs_put_arg(r, &ac, p->kin, strlen(p->kin));
        cs_put_arg(r, &ac, "*", 1);
        cs_put_arg(r, &ac, "ack", 3);
        cs_put_arg(r, &ac, x->ack, strlen(x->ack));
        k->i_ack = cs_add_cmd(r, ac);
        /* Marked written now: the answer comes with the XREAD's. A failure fails the stream. */
        gp_stream_ack_written(&p->s, now, ack);
        p->ack_woken = 0;
        ac = 0;
        cs_put_arg(r, &ac, "PEXPIRE", 7);
        cs_put_arg(r, &ac, p->kin, strlen(p->kin));
        cs_put_arg(r, &ac, x->ttl, strlen(x->ttl));
        cs_add_cmd(r, ac);
        if (p->last_ack_id[0]) { /* superseded by the new one */
            memcpy(x->prev_ack, p->last_ack_id, sizeof x->prev_ack);
            p->last_ack_id[0] = '\0';
            cs_add_xdel(r, p->kin, &x->prev_ack, 1);
        }
    }
    size_t ntrim = gp_stream_marks_take(&p->ents, p->s.snd_acked, x->trim, TRIM_BATCH);
    if (ntrim)
        cs_add_xdel(r, p->kin, x->trim, ntrim);
    if (p->nctl) { /* an idle stream's sout holds nothing */
        memcpy(x->ctl, p->ctl, p->nctl * sizeof p->ctl[0]);
        cs_add_xdel(r, p->kout, x->ctl, p->nctl);
        p->nctl = 0;
    }
}

/* Before an XREAD: k's stream's deadlines, signals and upkeep, and which key of it to read
 * (k->read). *next: the earliest time it needs the reader again. */
static void service(mux *m, wround *r, rkey *k, uint64_t now, uint64_t *next) {
    pump *p = k->p;
    int kick = 0;
    k->read = 0;
    k->got = 0;
    k->i_ack = -1;
    pthread_mutex_lock(&p->mu);
    if (p->over) {
        /* nothing: it is leaving */
    } else if (p->ph == PH_OPENING) {
        const st_conf *cf = m->cf;
        if (cs_stopping()) {
            /* Should the house open it after all (its bridge delivers the open late), the rst
             * already waiting on sin closes it at once rather than after idle_ms. */
            cs_pump_fail(p, ST_FAIL, "interrupted while opening");
            cs_queue_rst_reason(p, "closed", "the opener was interrupted while opening");
            p->w_delrep = 1;
            cs_mark_over(p);
            kick = 1;
        } else if (now >= p->open_deadline) {
            cs_pump_fail(p, ST_NOANSWER,
                         "no answer to the open of %s on house %s within %u ms (is the house "
                         "connected? see `ghostport house list`)",
                         cf->service, cf->house, cf->timeout_ms + WAIT_MARGIN_MS);
            cs_queue_rst_reason(p, "timeout",
                                "the opener gave up waiting for the outcome of the open");
            p->w_delrep = 1;
            cs_mark_over(p);
            kick = 1;
        } else {
            snprintf(k->key, sizeof k->key, "%s", p->krep);
            snprintf(k->id, sizeof k->id, "%s", p->rlast);
            k->reply = 1;
            k->read = 1;
            if (p->open_deadline < *next)
                *next = p->open_deadline;
        }
    } else if (cs_interrupted(p)) {
        cs_local_reset(p, GP_SR_LOCAL, "interrupted");
        cs_queue_rst(p, "the opener was interrupted");
        kick = 1;
    } else {
        upkeep(m, r, k, now);
        /* Held, its idle clock stops (took()): only its keep-alives are due. */
        uint64_t t = p->held ? p->s.last_ack_ms + p->s.idle_ms / 3 : gp_stream_next_timer(&p->s);
        if (t < *next)
            *next = t;
        if (!p->held) {
            snprintf(k->key, sizeof k->key, "%s", p->kout);
            snprintf(k->id, sizeof k->id, "%s", p->last);
            k->reply = 0;
            k->read = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* After the pipeline: Redis's answer to k's ack (o; NULL: the connection is lost, which is
 * mux_lost's). */
static void acked(mux *m, rkey *k, const redisReply *o) {
    pump *p = k->p;
    int kick = 0;
    pthread_mutex_lock(&p->mu);
    if (o && o->type == REDIS_REPLY_STRING) {
        if (o->len < sizeof p->last_ack_id)
            memcpy(p->last_ack_id, o->str, o->len + 1);
        cs_check_over(p); /* our last ack may have finished it */
    } else if (o && !p->over) {
        cs_local_reset(p, GP_SR_LOCAL, "XADD %s failed: %s", p->kin, cs_rerr(m->rr, o));
        cs_queue_rst(p, "the opener stopped");
        kick = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* After the XREAD: what k's key gave (ents NULL: nothing). */
static void took(mux *m, rkey *k, const redisReply *ents) {
    pump *p = k->p;
    int kick = 0;
    pthread_mutex_lock(&p->mu);
    if (p->over || (k->reply != (p->ph == PH_OPENING))) {
        /* over meanwhile, or opened by an earlier read */
    } else if (k->reply) {
        if (ents)
            take_outcome(p, ents);
    } else {
        size_t n = ents ? take_entries(p, ents) : 0;
        uint64_t now = mono_ms();
        p->caught_up = n < READ_COUNT && !p->held && !p->over;
        /* The idle clock only when sout had nothing new, and not while it is held: the
         * house's keep-alives may be among the entries not read. */
        if (!p->over && n == 0 && !p->held && gp_stream_tick(&p->s, now)) {
            cs_local_reset(p, GP_SR_IDLE, "nothing from the house for %u ms: stream timed out",
                           m->cf->idle_ms);
            cs_queue_rst(p, "no entry from the house within idle_ms");
        }
        write_now(p);
        if (p->held && p->oq_bytes <= p->oq_cap / 2)
            p->held = 0; /* drained right here: read again in the next loop */
        if (p->oq_head || (p->s.rcv_fin && !p->out_closed))
            pthread_cond_signal(&p->out_cv);
        cs_check_over(p);
    }
    kick = p->w_rst || p->w_delrep;
    pthread_mutex_unlock(&p->mu);
    if (kick)
        mux_kick(m, p);
}

/* A read of k's key failed (why): its stream fails. */
static void fail_read(mux *m, rkey *k, const char *why) {
    pump *p = k->p;
    pthread_mutex_lock(&p->mu);
    if (!p->over) {
        if (p->ph == PH_OPENING) {
            cs_pump_fail(p, ST_REFUSED, "XREAD %s failed: %s", k->key, why);
            cs_queue_rst_reason(p, "closed", "the opener could not read the outcome of the open");
            p->w_delrep = 1;
            cs_mark_over(p);
        } else {
            cs_local_reset(p, GP_SR_LOCAL, "XREAD %s failed: %s", k->key, why);
            cs_queue_rst(p, "the opener could not read sout");
        }
    }
    pthread_mutex_unlock(&p->mu);
    mux_kick(m, p);
}

/* The reader's XREAD was refused (an error reply, not a lost connection): because of which
 * key? Each is read alone (no BLOCK, one entry, not taken); those refused fail their stream,
 * or, when none is, every stream read fails with err. */
static void read_refused(mux *m, rkey *ks, int n, const char *err) {
    int blamed = 0, nread = 0;
    for (int i = 0; i < n; i++)
        nread += ks[i].read;
    for (int i = 0; i < n && nread > 1; i++) {
        if (!ks[i].read)
            continue;
        const char *xv[] = {"XREAD", "COUNT", "1", "STREAMS", ks[i].key, ks[i].id};
        redisReply *r = br_rc_cmdv(m->rr, 6, xv, NULL);
        if (r && r->type == REDIS_REPLY_ERROR) {
            fail_read(m, &ks[i], r->str);
            blamed = 1;
        }
        if (r)
            freeReplyObject(r);
    }
    for (int i = 0; i < n && !blamed; i++)
        if (ks[i].read)
            fail_read(m, &ks[i], err);
}

/* The reader's CLIENT ID, asked again when its connection to the house's node changed (a
 * reconnection, a MOVED); the writer sends CLIENT UNBLOCK to it. */
static void learn_id(mux *m, unsigned long *route) {
    unsigned long now_route = br_rc_route(m->rr, m->kreq, strlen(m->kreq));
    pthread_mutex_lock(&m->mu);
    int skip = m->no_unblock || (now_route == *route && m->rd_id >= 0);
    pthread_mutex_unlock(&m->mu);
    if (skip || now_route == 0)
        return;
    const char *av[] = {"CLIENT", "ID"};
    redisReply *r = br_rc_cmd_at(m->rr, m->kreq, strlen(m->kreq), 2, av, NULL);
    long long id = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r && r->type == REDIS_REPLY_ERROR)
        mux_note_no_unblock(m, "CLIENT ID", r->str);
    if (r)
        freeReplyObject(r);
    *route = br_rc_route(m->rr, m->kreq, strlen(m->kreq));
    pthread_mutex_lock(&m->mu);
    m->rd_id = id;
    pthread_mutex_unlock(&m->mu);
}

/* Room in the reader's arrays for n streams' upkeep and an XREAD of n keys. */
static int rround_grow(wround *r, size_t *cap, size_t n) {
    size_t ncmd = n * UPKEEP_CMDS + 1, narg = n * UPKEEP_ARGS + 6 + 2 * n;
    br_rc_cmd *c2 = realloc(r->cmds, ncmd * sizeof *r->cmds);
    if (c2)
        r->cmds = c2;
    redisReply **o2 = realloc(r->out, ncmd * sizeof *r->out);
    if (o2)
        r->out = o2;
    const char **a2 = realloc(r->av, narg * sizeof *r->av);
    if (a2)
        r->av = a2;
    size_t *l2 = realloc(r->al, narg * sizeof *r->al);
    if (l2)
        r->al = l2;
    if (!c2 || !o2 || !a2 || !l2)
        return -1;
    *cap = n;
    return 0;
}

void *cs_reader_main(void *arg) {
    mux *m = arg;
    rkey *ks = calloc(MAX_STREAMS, sizeof *ks);
    wround r = {0};
    size_t cap = 0;
    if (!ks || rround_grow(&r, &cap, 1) != 0) {
        mux_lost(m, "the reader", "out of memory");
        free(ks);
        ks = NULL;
    }
    unsigned long route = 0;
    while (ks) {
        /* The streams of this loop, each with a reference until its answers are taken. */
        pthread_mutex_lock(&m->mu);
        if (m->stop) {
            pthread_mutex_unlock(&m->mu);
            break;
        }
        uint64_t gen = m->set_gen;
        int n = 0;
        for (int i = 0; i < MAX_STREAMS; i++)
            if (m->slot[i] && !m->slot[i]->leaving)
                n++;
        if ((size_t)n > cap)
            rround_grow(&r, &cap, (size_t)n);
        n = 0;
        for (int i = 0; i < MAX_STREAMS && (size_t)n < cap; i++)
            if (m->slot[i] && !m->slot[i]->leaving) {
                ks[n++].p = m->slot[i];
                m->slot[i]->refs++;
            }
        pthread_mutex_unlock(&m->mu);
        uint64_t now = mono_ms(), next = now + STEP_MS;
        int nread = 0;
        r.n = r.na = 0;
        for (int i = 0; i < n; i++) {
            service(m, &r, &ks[i], now, &next);
            nread += ks[i].read;
        }
        int nup = r.n;
        uint64_t block = next > now ? next - now : 1;
        if (block > STEP_MS)
            block = STEP_MS;
        pthread_mutex_lock(&m->mu);
        if (m->no_unblock || m->rd_id < 0) /* it cannot be woken early: wake by itself */
            block = block > FALLBACK_BLOCK_MS ? FALLBACK_BLOCK_MS : block;
        /* Something changed since the list was made: read at once, then make it again. */
        int blocking = m->set_gen == gen;
        if (nread == 0 && nup == 0) { /* nothing to do: wait for a stream, a deadline, a signal */
            for (int i = 0; i < n; i++)
                mux_unref_locked(m, ks[i].p);
            if (blocking && !m->stop) {
                uint64_t wait = next > now ? next - now : 1;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)((wait < STEP_MS ? wait : STEP_MS) / 1000);
                ts.tv_nsec += (long)((wait < STEP_MS ? wait : STEP_MS) % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&m->rd_cv, &m->mu, &ts);
            }
            pthread_mutex_unlock(&m->mu);
            continue;
        }
        if (nread && blocking) {
            m->rd_gen = gen;
            m->rd_blocked = 1;
        }
        pthread_mutex_unlock(&m->mu);

        int ix = -1; /* the XREAD, last in the pipeline */
        char bs[24];
        if (nread) {
            int ac = 0;
            cs_put_arg(&r, &ac, "XREAD", 5);
            cs_put_arg(&r, &ac, "COUNT", 5);
            cs_put_arg(&r, &ac, READ_COUNT_S, strlen(READ_COUNT_S));
            if (blocking) {
                snprintf(bs, sizeof bs, "%llu", (unsigned long long)block);
                cs_put_arg(&r, &ac, "BLOCK", 5);
                cs_put_arg(&r, &ac, bs, strlen(bs));
            }
            cs_put_arg(&r, &ac, "STREAMS", 7);
            for (int i = 0; i < n; i++)
                if (ks[i].read)
                    cs_put_arg(&r, &ac, ks[i].key, strlen(ks[i].key));
            for (int i = 0; i < n; i++)
                if (ks[i].read)
                    cs_put_arg(&r, &ac, ks[i].id, strlen(ks[i].id));
            ix = cs_add_cmd(&r, ac);
        }
        br_rc_set_timeout(m->rr, (int)block + REDIS_TIMEOUT_MS);
        br_rc_pipeline(m->rr, r.n, r.cmds, r.out);
        pthread_mutex_lock(&m->mu);
        m->rd_blocked = 0;
        pthread_mutex_unlock(&m->mu);

        int lost = 0;
        for (int k = 0; k < r.n; k++)
            lost |= r.out[k] == NULL;
        for (int i = 0; i < n; i++)
            if (ks[i].i_ack >= 0)
                acked(m, &ks[i], r.out[ks[i].i_ack]);
        const redisReply *x = ix >= 0 ? r.out[ix] : NULL;
        if (x && x->type == REDIS_REPLY_ERROR) {
            /* (UNBLOCKED: someone's CLIENT UNBLOCK ... ERROR, no fault of a key: read again) */
            if (strncmp(x->str, "UNBLOCKED", 9) != 0)
                read_refused(m, ks, n, x->str);
        } else if (x) {
            if (x->type == REDIS_REPLY_ARRAY) {
                int hint = 0;
                for (size_t j = 0; j < x->elements; j++) {
                    const redisReply *kv = x->element[j];
                    if (kv->type != REDIS_REPLY_ARRAY || kv->elements != 2 ||
                        kv->element[0]->type != REDIS_REPLY_STRING ||
                        kv->element[1]->type != REDIS_REPLY_ARRAY)
                        continue;
                    int i = -1; /* keys come back in the order asked: look from the last */
                    for (int t = 0; t < n && i < 0; t++) {
                        int c = (hint + t) % n;
                        if (ks[c].read && strcmp(ks[c].key, kv->element[0]->str) == 0)
                            i = c;
                    }
                    if (i < 0)
                        continue;
                    hint = i + 1;
                    ks[i].got = 1;
                    took(m, &ks[i], kv->element[1]);
                }
            }
            for (int i = 0; i < n; i++)
                if (ks[i].read && !ks[i].got)
                    took(m, &ks[i], NULL);
        }
        char err[300] = "";
        if (lost)
            snprintf(err, sizeof err, "%s", br_rc_error(m->rr));
        for (int k = 0; k < r.n; k++)
            if (r.out[k])
                freeReplyObject(r.out[k]);
        if (lost)
            mux_lost(m, nread ? "XREAD" : "XADD", err);
        else if (x)
            learn_id(m, &route);
        pthread_mutex_lock(&m->mu);
        for (int i = 0; i < n; i++)
            mux_unref_locked(m, ks[i].p);
        pthread_mutex_unlock(&m->mu);
    }
    free(ks);
    free(r.cmds);
    free(r.out);
    free(r.av);
    free(r.al);
    return NULL;
}
