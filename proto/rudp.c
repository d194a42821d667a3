/* rudp.c — a rudp:// connection: the session (rudp_sess) around the reliability engine
 * (rudp_rel), with per-message zstd and send jitter (see rudp.h). Pure: the caller brings
 * the datagrams, the time and the randomness. */
#include "rudp.h"

#include "buf.h"
#include "compress.h"
#include "frame.h"

#include <stdlib.h>
#include <string.h>

/* The first byte of every message says how the rest is coded. */
#define CODE_RAW 0
#define CODE_ZSTD 1
#define MAX_MSG (GP_DEFAULT_MAX_FRAME + GP_FRAME_HEADER_LEN + 1)
#define DBUF 2048                /* decrypted datagrams up to this size need no allocation */
#define RBUF_KEEP 65536u         /* a larger decode buffer is given back after use */
#define DGRAM_DECODED_MAX 65535u /* an IP packet's largest size */

/* A datagram held back by the send jitter until `at`. */
typedef struct held {
    struct held *next;
    uint64_t at;
    size_t len;
    uint8_t b[];
} held;

struct gp_rudp {
    gp_sess *s;
    gp_rel *rel;
    gp_zctx *z;
    gp_rudp_conf conf;
    gp_sess_rand_fn rnd;
    void *ud;
    uint8_t *pkt;       /* a payload between the engine and the session (max payload) */
    uint8_t dbuf[DBUF]; /* a decrypted datagram on its way to the engine */
    uint8_t *rbuf;      /* the decompressed message lent by recv */
    size_t rcap;
    uint64_t msgs_compressed, bytes_before, bytes_after;
    uint8_t *dgbuf; /* a decompressed datagram lent by recv_dgram (DGRAM_DECODED_MAX) */
    uint64_t dgrams_compressed, dgram_bytes_before, dgram_bytes_after, dgrams_malformed;
    int must_confirm; /* house: the bridge may send only after our first datagram */
    held *held;       /* sealed datagrams waiting out their jitter, in no particular order */
};

void gp_rudp_conf_init(gp_rudp_conf *conf) {
    memset(conf, 0, sizeof *conf);
    conf->compress = 1;
    gp_rel_config_init(&conf->rel);
    conf->rel.max_message = MAX_MSG;
}

gp_rudp *gp_rudp_new(gp_sess *s, const gp_rudp_conf *conf, gp_sess_rand_fn rnd, void *ud,
                     uint64_t now_ns) {
    gp_rudp *r = calloc(1, sizeof *r);
    if (!r || !s || !gp_sess_established(s))
        goto fail;
    r->s = s;
    r->must_confirm = !gp_sess_is_bridge(s);
    r->rnd = rnd;
    r->ud = ud;
    if (conf)
        r->conf = *conf;
    else
        gp_rudp_conf_init(&r->conf);
    if (r->conf.jitter_ms > GP_RUDP_JITTER_MAX_MS)
        goto fail;
    /* The engine's packets must fit the session's datagrams whatever the padding. */
    r->conf.rel.max_payload = gp_sess_payload_limit(s);
    if (r->conf.rel.max_message < MAX_MSG)
        r->conf.rel.max_message = MAX_MSG;
    if (r->conf.rel.send_buffer < r->conf.rel.max_message)
        r->conf.rel.send_buffer = r->conf.rel.max_message;
    if (r->conf.rel.recv_buffer < r->conf.rel.max_message)
        r->conf.rel.recv_buffer = 2 * r->conf.rel.send_buffer + r->conf.rel.max_message;
    r->rel = gp_rel_new(&r->conf.rel, now_ns);
    r->z = gp_zctx_new(GP_ZSTD_LEVEL);
    r->pkt = malloc(r->conf.rel.max_payload);
    if (!r->rel || !r->z || !r->pkt)
        goto fail;
    return r;
fail:
    if (r) {
        r->s = NULL; /* freed below, whoever got this far */
        gp_rudp_free(r);
    }
    gp_sess_free(s);
    return NULL;
}

void gp_rudp_free(gp_rudp *r) {
    if (!r)
        return;
    gp_sess_free(r->s);
    gp_rel_free(r->rel);
    gp_zctx_free(r->z);
    free(r->pkt);
    free(r->rbuf);
    free(r->dgbuf);
    while (r->held) {
        held *h = r->held;
        r->held = h->next;
        free(h);
    }
    free(r);
}

gp_sess *gp_rudp_sess(const gp_rudp *r) {
    return r->s;
}

int gp_rudp_send(gp_rudp *r, uint32_t lane, const uint8_t *msg, size_t len) {
    static const uint8_t raw = CODE_RAW, zstd = CODE_ZSTD;
    if (len + 1 > MAX_MSG)
        return GP_ERR_TOO_LARGE;
    if (r->conf.compress && gp_compress_worthwhile((gp_str){NULL, 0}, msg, len)) {
        /* Only worth it if smaller: the engine copies the message, so the buffer is brief. */
        uint8_t *z = malloc(len);
        ssize_t zn = z ? gp_compress(r->z, msg, len, z, len - 1) : 0;
        int rc = zn > 0 ? gp_rel_send2(r->rel, lane, &zstd, 1, z, (size_t)zn) : 1;
        free(z);
        if (rc <= 0) {
            if (rc == 0) {
                r->msgs_compressed++;
                r->bytes_before += len;
                r->bytes_after += (size_t)zn;
            }
            return rc;
        }
    }
    return gp_rel_send2(r->rel, lane, &raw, 1, msg, len);
}

size_t gp_rudp_dgram_max(const gp_rudp *r) {
    return gp_rel_dgram_max(r->rel) - 1;
}

int gp_rudp_send_dgram(gp_rudp *r, const uint8_t *p, size_t len, uint64_t now_ns) {
    uint8_t b[GP_REL_MAX_PAYLOAD];
    if (len == 0)
        return GP_ERR_INVALID;
    if (len > gp_rudp_dgram_max(r))
        return GP_ERR_TOO_LARGE;
    /* Per datagram, on the stack: an IP packet is at most a packet's payload. */
    if (r->conf.compress && gp_compress_worthwhile((gp_str){NULL, 0}, p, len)) {
        ssize_t zn = gp_compress(r->z, p, len, b + 1, len - 1);
        if (zn > 0) {
            b[0] = CODE_ZSTD;
            int rc = gp_rel_send_dgram(r->rel, b, (size_t)zn + 1, now_ns);
            if (rc == 0) {
                r->dgrams_compressed++;
                r->dgram_bytes_before += len;
                r->dgram_bytes_after += (size_t)zn;
            }
            return rc;
        }
    }
    b[0] = CODE_RAW;
    memcpy(b + 1, p, len);
    return gp_rel_send_dgram(r->rel, b, len + 1, now_ns);
}

ssize_t gp_rudp_recv_dgram(gp_rudp *r, const uint8_t **p) {
    const uint8_t *m;
    ssize_t n = gp_rel_recv_dgram(r->rel, &m);
    if (n <= 0)
        return n;
    if (n >= 2 && m[0] == CODE_RAW) {
        *p = m + 1;
        return n - 1;
    }
    ssize_t size = n >= 2 && m[0] == CODE_ZSTD ? gp_decompressed_size(m + 1, (size_t)n - 1) : -1;
    if (size <= 0 || (size_t)size > DGRAM_DECODED_MAX ||
        (!r->dgbuf && !(r->dgbuf = malloc(DGRAM_DECODED_MAX)))) {
        r->dgrams_malformed++;
        return GP_ERR_MALFORMED;
    }
    ssize_t d = gp_decompress(r->z, m + 1, (size_t)n - 1, r->dgbuf, DGRAM_DECODED_MAX);
    if (d <= 0) {
        r->dgrams_malformed++;
        return GP_ERR_MALFORMED;
    }
    *p = r->dgbuf;
    return d;
}

size_t gp_rudp_send_space(const gp_rudp *r) {
    size_t n = gp_rel_send_space(r->rel);
    return n > 1 ? n - 1 : 0;
}

int gp_rudp_input(gp_rudp *r, const uint8_t *dg, size_t len, uint64_t now_ns, unsigned *flags) {
    unsigned f = 0;
    uint8_t *out = len <= DBUF ? r->dbuf : malloc(len); /* a peer with a larger MTU */
    if (!out)
        return GP_ERR_NOMEM;
    ssize_t n = gp_sess_open(r->s, dg, len, out, len <= DBUF ? DBUF : len, now_ns, &f);
    int rc = (int)(n < 0 ? n : 0);
    /* An empty payload is a handshake datagram or the session's keepalive. */
    if (n > 0 && (f & GP_SESS_RX_DATA)) {
        rc = gp_rel_input(r->rel, out, (size_t)n, now_ns);
        if (rc == GP_ERR_STATE)
            rc = 0;
    }
    if (out != r->dbuf)
        free(out);
    if (flags)
        *flags = f;
    return rc;
}

ssize_t gp_rudp_recv(gp_rudp *r, uint32_t *lane, const uint8_t **msg) {
    if (r->rcap > RBUF_KEEP) { /* what it lent last time is no longer borrowed */
        free(r->rbuf);
        r->rbuf = NULL;
        r->rcap = 0;
    }
    const uint8_t *m;
    ssize_t n = gp_rel_recv(r->rel, lane, &m);
    if (n <= 0)
        return n;
    if (m[0] == CODE_RAW) {
        *msg = m + 1;
        return n - 1;
    }
    if (m[0] != CODE_ZSTD)
        return GP_ERR_MALFORMED;
    m++, n--;
    ssize_t size = gp_decompressed_size(m, (size_t)n);
    if (size <= 0 || (size_t)size > MAX_MSG)
        return GP_ERR_MALFORMED;
    if (gp_grow(&r->rbuf, &r->rcap, (size_t)size, (size_t)size, 1) != 0)
        return GP_ERR_NOMEM;
    ssize_t d = gp_decompress(r->z, m, (size_t)n, r->rbuf, r->rcap);
    if (d < 0)
        return GP_ERR_MALFORMED;
    *msg = r->rbuf;
    return d;
}

/* A held datagram whose time has come, into out. */
static ssize_t take_due(gp_rudp *r, uint8_t *out, size_t cap, uint64_t now_ns) {
    for (held **hp = &r->held; *hp; hp = &(*hp)->next) {
        held *h = *hp;
        if (h->at > now_ns)
            continue;
        if (h->len > cap)
            return GP_ERR_BUFFER;
        *hp = h->next;
        memcpy(out, h->b, h->len);
        ssize_t n = (ssize_t)h->len;
        free(h);
        return n;
    }
    return 0;
}

ssize_t gp_rudp_output(gp_rudp *r, uint8_t *out, size_t cap, uint64_t now_ns) {
    /* A bridge-side session may not seal before the house's first datagram: the engine must
     * not hand out a packet (and count it sent) that could not leave. */
    if (!gp_sess_confirmed(r->s))
        return 0;
    if (r->must_confirm) {
        /* The house speaks first, at once: an empty datagram confirms the session to the
         * bridge, which is silent until then (its replies could not be told from a replay). */
        ssize_t w = gp_sess_seal(r->s, r->pkt, 0, out, cap, now_ns);
        if (w > 0)
            r->must_confirm = 0;
        return w;
    }
    for (;;) {
        ssize_t due = take_due(r, out, cap, now_ns);
        if (due != 0)
            return due;
        uint64_t at = now_ns;
        if (r->conf.jitter_ms && r->rnd) {
            uint32_t j;
            r->rnd(r->ud, (uint8_t *)&j, sizeof j);
            at += (uint64_t)(j % (r->conf.jitter_ms * 1000u + 1)) * 1000u;
        }
        /* The engine dates the packet `at`: its round-trip samples never include the jitter. */
        ssize_t n = gp_rel_output(r->rel, r->pkt, r->conf.rel.max_payload, now_ns, at);
        if (n <= 0)
            return n;
        /* Padding never takes a datagram past what the engine trusts the path with now (a
         * path MTU probe, larger, goes at its own size): the session's ladder of sizes reaches
         * its MTU, which the L3 tunnel raised, and a padded packet over a narrower path would
         * vanish there, as would a probe padded past the size it tests. */
        size_t over = gp_sess_is_bridge(r->s) ? GP_SESS_OVERHEAD_S2C : GP_SESS_OVERHEAD;
        size_t trusted = gp_rel_payload_now(r->rel);
        size_t lim = over + ((size_t)n > trusted ? (size_t)n : trusted);
        ssize_t w = gp_sess_seal(r->s, r->pkt, (size_t)n, out, lim < cap ? lim : cap, now_ns);
        if (w <= 0 || at <= now_ns)
            return w;
        held *h = malloc(sizeof *h + (size_t)w);
        if (!h)
            return w; /* send it now rather than lose it */
        h->at = at;
        h->len = (size_t)w;
        memcpy(h->b, out, (size_t)w);
        h->next = r->held;
        r->held = h;
    }
}

uint64_t gp_rudp_expiry(const gp_rudp *r) {
    if (r->must_confirm)
        return 0; /* now */
    uint64_t e = gp_sess_confirmed(r->s) ? gp_rel_expiry(r->rel) : gp_sess_expiry(r->s);
    for (const held *h = r->held; h; h = h->next)
        if (h->at < e)
            e = h->at;
    return e;
}

int gp_rudp_flush(gp_rudp *r, uint8_t *out, size_t cap, uint64_t now_ns,
                  void (*send)(void *ud, const uint8_t *b, size_t len), void *ud) {
    ssize_t n;
    while ((n = gp_rudp_output(r, out, cap, now_ns)) > 0)
        send(ud, out, (size_t)n);
    return n < 0 || gp_rudp_dead(r) ? -1 : 0;
}

uint64_t gp_rudp_timer_ms(uint64_t expiry_ns, uint64_t now_ns) {
    if (expiry_ns == UINT64_MAX)
        return 60000;
    return expiry_ns <= now_ns ? 0 : (expiry_ns - now_ns + 999999) / 1000000;
}

int gp_rudp_set_mtu(gp_rudp *r, size_t mtu) {
    size_t over = gp_sess_is_bridge(r->s) ? GP_SESS_OVERHEAD_S2C : GP_SESS_OVERHEAD;
    if (mtu > GP_RUDP_MTU_MAX || mtu < over + r->conf.rel.max_payload)
        return GP_ERR_INVALID;
    size_t n = mtu - over;
    uint8_t *pkt = realloc(r->pkt, n);
    if (!pkt)
        return GP_ERR_NOMEM;
    r->pkt = pkt;
    /* The session first: it must take what the engine may send from now on (the engine
     * switches once its FEC block is out; until then it sends the smaller size). */
    if (gp_sess_set_mtu(r->s, mtu) != 0 || gp_rel_set_max_payload(r->rel, n) != 0)
        return GP_ERR_INVALID;
    r->conf.rel.max_payload = n;
    return 0;
}

int gp_rudp_dead(const gp_rudp *r) {
    return gp_rel_dead(r->rel);
}

void gp_rudp_stats_get(const gp_rudp *r, gp_rudp_stats *out) {
    memset(out, 0, sizeof *out);
    gp_rel_get_stats(r->rel, &out->rel);
    gp_sess_stats(r->s, &out->sess);
    out->msgs_compressed = r->msgs_compressed;
    out->bytes_before = r->bytes_before;
    out->bytes_after = r->bytes_after;
    out->dgrams_compressed = r->dgrams_compressed;
    out->dgram_bytes_before = r->dgram_bytes_before;
    out->dgram_bytes_after = r->dgram_bytes_after;
    out->dgrams_malformed = r->dgrams_malformed;
}
