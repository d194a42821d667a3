/* conn.c — a house connection, whatever carries it (WebSocket in tunnel.c, rudp in udp.c):
 * its lifetime (refcounted: Redis callbacks may outlive the transport), the queue of encoded
 * frames waiting for the transport, closing with a GOAWAY, and the frames of a live
 * connection (PING/PONG and GOAWAY here; responses go up). What concerns the house (its
 * requests, letting go of it) goes up through the hooks its holder installed (conn.h), so
 * this file calls no module above it. I/O side; the transports only move bytes. */
#include "conn.h"
#include "../log.h"
#include "list.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUE_BYTES (16u << 20)

br_conn *br_conn_new(br_conns *cs, const br_transport *tp, void *tpd, const char *addr) {
    br_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->owner = cs;
    c->tp = tp;
    c->tpd = tpd;
    c->refs = 1;
    c->state = BR_CS_HELLO;
    c->serial = ++cs->serial;
    c->accepted_ms = c->last_rx_ms = br_env_now(cs->env);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    GP_LIST_PUSH(cs->all, c, all_prev, all_next);
    br_log(BR_LOG_DEBUG, "conn_open", "conn=%llu addr=%s transport=%s",
           (unsigned long long)c->serial, c->addr, tp->name);
    if (cs->paused && tp->rx_pause && tpd)
        tp->rx_pause(c, 1);
    return c;
}

void br_conn_ref(br_conn *c) {
    c->refs++;
}

static void out_free_all(br_conn *c) {
    for (br_out *o = c->q_head, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    c->q_head = c->q_tail = NULL;
    c->q_bytes = 0;
}

void br_conn_unref(br_conn *c) {
    if (!c || --c->refs > 0)
        return;
    out_free_all(c);
    const br_conn_hooks *h = &c->owner->hooks;
    if (h->on_free)
        h->on_free(h->ud, c);
    gp_framer_free(c->fr);
    free(c->keys);
    sodium_memzero(c->secret, sizeof c->secret);
    free(c);
}

int br_conn_alive(const br_conn *c) {
    return c && c->tpd && c->state != BR_CS_CLOSING;
}

br_out *br_conn_pop(br_conn *c) {
    br_out *o = c->q_head;
    if (!o)
        return NULL;
    c->q_head = o->next;
    if (!c->q_head)
        c->q_tail = NULL;
    c->q_bytes -= o->len;
    return o;
}

int br_conn_send(br_conn *c, const gp_frame *f) {
    if (!c->tpd || c->state == BR_CS_CLOSING)
        return -1;
    size_t n = gp_frame_size(f);
    br_out *o = malloc(sizeof *o + BR_OUT_PRE + n);
    if (!o)
        goto fail;
    ssize_t w = gp_frame_encode(f, o->buf + BR_OUT_PRE, n);
    if (w < 0) {
        br_log(BR_LOG_ERROR, "frame_encode_failed", "house=%s type=%s err=%s", c->house,
               gp_frame_type_name(f->type), gp_strerror((int)w));
        free(o);
        goto fail;
    }
    o->len = (size_t)w;
    o->lane = f->stream;
    GP_SLIST_APPEND(c->q_head, c->q_tail, o, next);
    c->q_bytes += o->len;
    if (c->q_bytes > MAX_QUEUE_BYTES) {
        br_log(BR_LOG_WARN, "send_queue_overflow", "house=%s addr=%s bytes=%zu", c->house, c->addr,
               c->q_bytes);
        br_conn_close(c, 0, NULL);
        return -1;
    }
    c->tp->kick(c);
    return 0;
fail:
    br_conn_close(c, GP_GOAWAY_PROTOCOL, "internal error");
    return -1;
}

void br_conn_goaway(br_conn *c, int code, const char *msg) {
    c->goaway_sent = 1;
    gp_frame f;
    gp_frame_init(&f, GP_FRAME_GOAWAY, 0, 0);
    f.u.goaway.code = (uint16_t)code;
    f.u.goaway.message = gp_str_c(msg);
    br_conn_send(c, &f);
}

/* The holder lets go of the house and drops the requests (house.c: teardown, requests). */
static void up_closed(br_conn *c) {
    const br_conn_hooks *h = &c->owner->hooks;
    if (h->on_closed)
        h->on_closed(h->ud, c);
}

void br_conn_close(br_conn *c, int goaway_code, const char *msg) {
    if (!c->tpd || c->state == BR_CS_CLOSING)
        return;
    if (goaway_code && !c->goaway_sent)
        br_conn_goaway(c, goaway_code, msg);
    up_closed(c);
    c->state = BR_CS_CLOSING;
    c->tp->close(c);
}

void br_conn_closed(br_conn *c, const char *why) {
    up_closed(c);
    br_log(why           ? BR_LOG_WARN
           : c->house[0] ? BR_LOG_INFO
                         : BR_LOG_DEBUG,
           "conn_closed", "conn=%llu addr=%s house=%s transport=%s%s%s",
           (unsigned long long)c->serial, c->addr, c->house[0] ? c->house : "-", c->tp->name,
           why ? " reason=" : "", why ? why : "");
    c->state = BR_CS_CLOSING;
    c->tpd = NULL;
    GP_LIST_REMOVE(c->owner->all, c, all_prev, all_next);
    out_free_all(c);
    br_conn_unref(c);
}

void br_conn_protocol_error(br_conn *c, const char *why, const char *detail) {
    br_logr(BR_LOG_WARN, "protocol_error", "house=%s addr=%s conn=%llu reason=%s detail=%s",
            c->house[0] ? c->house : "-", c->addr, (unsigned long long)c->serial, why,
            br_qs(detail));
    br_conn_close(c, GP_GOAWAY_PROTOCOL, why);
}

void br_conn_frame(br_conn *c, const gp_frame *f) {
    gp_frame r;
    switch (f->type) {
    case GP_FRAME_PING:
        gp_frame_pong(&r, f);
        br_conn_send(c, &r);
        return;
    case GP_FRAME_PONG: {
        /* Our PINGs carry the monotonic clock in µs: a loopback or LAN RTT is well under a
         * millisecond. An opaque from the future is not ours. */
        gp_frame_pong_rtt(f, uv_hrtime() / 1000, &c->rtt_us);
        return;
    }
    case GP_FRAME_RESP_HEAD:
    case GP_FRAME_RESP_BODY: {
        const br_conn_hooks *h = &c->owner->hooks;
        if (h->on_frame)
            h->on_frame(h->ud, c, f);
        return;
    }
    case GP_FRAME_L3_REQ:
    case GP_FRAME_S_OPENED:
    case GP_FRAME_S_ENTRY:
    case GP_FRAME_S_ATTACH: {
        /* TCP streams (proto/STREAMS.md): only from a house that negotiated protocol 2; the
         * L3 tunnel (proto/TUN.md): protocol 3. */
        if (c->proto < (f->type == GP_FRAME_L3_REQ ? GP_PROTO_L3 : GP_PROTO_STREAMS)) {
            br_conn_protocol_error(c, "unexpected_frame", gp_frame_type_name(f->type));
            return;
        }
        const br_conn_hooks *h = &c->owner->hooks;
        if (h->on_frame)
            h->on_frame(h->ud, c, f);
        return;
    }
    case GP_FRAME_CREDIT: /* reserved in v1 */
    case GP_FRAME_CANCEL:
        return;
    case GP_FRAME_GOAWAY:
        br_log(BR_LOG_INFO, "house_goaway", "house=%s code=%u msg=%s", c->house, f->u.goaway.code,
               br_q((const char *)f->u.goaway.message.p, f->u.goaway.message.len));
        br_conn_close(c, 0, NULL);
        return;
    default:
        br_conn_protocol_error(c, "unexpected_frame", gp_frame_type_name(f->type));
    }
}

/* GOAWAY DRAINING (and close) to every house not busy: one busy (requests in flight, replies
 * settling: requests.c) hears nothing yet, gets no new requests, and is closed the same way
 * once it is not (a house told earlier would move as soon as its last answer left it, before
 * the bridge acknowledged it). */
void br_conn_drain_all(br_conns *cs, br_conn_busy_fn busy, void *ud) {
    for (br_conn *c = cs->all, *n; c; c = n) {
        n = c->all_next;
        if (!(c->state == BR_CS_LIVE && busy(ud, c)))
            br_conn_close(c, GP_GOAWAY_DRAINING, "bridge shutting down");
    }
}

void br_conn_close_all(br_conns *cs) {
    for (br_conn *c = cs->all; c; c = c->all_next)
        br_conn_close(c, GP_GOAWAY_DRAINING, "bridge shutting down");
}

unsigned br_conn_count_open(const br_conns *cs) {
    unsigned n = 0;
    for (const br_conn *c = cs->all; c; c = c->all_next)
        n += c->state != BR_CS_CLOSING;
    return n;
}

void br_conn_tick(br_conns *cs, uint64_t now) {
    const br_config *cfg = cs->env->cfg;
    for (br_conn *c = cs->all, *n; c; c = n) {
        n = c->all_next;
        uint64_t iv = c->ping_iv ? c->ping_iv : (uint64_t)cfg->ping_interval;
        if (c->state == BR_CS_CLOSING)
            continue;
        if (c->state != BR_CS_LIVE) {
            if (now - c->accepted_ms > (uint64_t)cfg->auth_timeout * 1000) {
                br_logr(BR_LOG_WARN, "handshake_timeout", "addr=%s house=%s", c->addr,
                        c->house[0] ? c->house : "-");
                br_conn_close(c, GP_GOAWAY_PROTOCOL, "handshake timeout");
            }
            continue;
        }
        if (now - c->last_rx_ms > 3 * iv) {
            br_log(BR_LOG_WARN, "house_timeout", "house=%s addr=%s silent_ms=%llu", c->house,
                   c->addr, (unsigned long long)(now - c->last_rx_ms));
            br_conn_close(c, 0, NULL);
            continue;
        }
        if (now - c->last_ping_ms >= iv) {
            gp_frame f;
            gp_frame_ping(&f, uv_hrtime() / 1000);
            c->last_ping_ms = now;
            br_conn_send(c, &f);
        }
    }
}
