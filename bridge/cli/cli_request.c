/* cli_request.c — `ghostport request`: one request through the public Redis contract, exactly
 * as any producer would send it (one XADD), then a blocking XREAD loop on the reply stream
 * until its final entry, printed the way `curl -i` prints a response. I/O side. */
#include "buf.h"
#include "cli_cmd.h"
#include "cli_esc.h"
#include "cli_top.h"
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000
#define MAX_TIMEOUT_MS 86400000
#define WAIT_MARGIN_MS 2000 /* the bridge answers 504 at the deadline; allow for its clock */
#define MAX_BODY_FILE (1024u * 1024u * 1024u)
#define ONLINE_POLL_MS 100 /* --wait-online: how often the house's state is read */

typedef gp_buf buf; /* proto/buf.h */
#define buf_add gp_buf_add

static int read_file(cli_ctx *c, const char *path, buf *out) {
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_err(c, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    int rv = gp_read_fd(fd, MAX_BODY_FILE, out);
    if (rv != 0 && (errno == EFBIG || errno == ENOMEM))
        cli_err(c, "%s: too large", path);
    else if (rv != 0)
        cli_err(c, "reading %s: %s", path, strerror(errno));
    if (fd != STDIN_FILENO)
        close(fd);
    return rv;
}

/* "Name: value" -> headers[name] (lower-cased); repeated names are joined with ", ". */
static int add_header(cli_ctx *c, json_t *h, const char *line) {
    const char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        cli_err(c, "-H wants 'Name: value', got '%s'", line);
        return -1;
    }
    char name[256];
    size_t nl = (size_t)(colon - line);
    while (nl && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
        nl--;
    if (nl == 0 || nl >= sizeof name) {
        cli_err(c, "bad header name in '%s'", line);
        return -1;
    }
    for (size_t i = 0; i < nl; i++) {
        char ch = line[i];
        if (ch <= ' ' || ch == 0x7f) {
            cli_err(c, "bad header name in '%s'", line);
            return -1;
        }
        name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    name[nl] = '\0';
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    json_t *old = json_object_get(h, name);
    if (old) {
        size_t need = strlen(json_string_value(old)) + strlen(v) + 3;
        char *joined = malloc(need);
        if (!joined)
            return -1;
        snprintf(joined, need, "%s, %s", json_string_value(old), v);
        json_t *s = json_string(joined);
        free(joined);
        if (!s)
            goto bad_utf8;
        json_object_set_new(h, name, s);
    } else {
        json_t *s = json_string(v);
        if (!s)
            goto bad_utf8;
        json_object_set_new(h, name, s);
    }
    return 0;
bad_utf8:
    cli_err(c, "header value must be UTF-8: '%s'", line);
    return -1;
}

static void make_uuid(char out[37]) {
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static const char *reason(int s) {
    static const struct {
        int s;
        const char *r;
    } t[] = {{100, "Continue"},
             {101, "Switching Protocols"},
             {200, "OK"},
             {201, "Created"},
             {202, "Accepted"},
             {204, "No Content"},
             {206, "Partial Content"},
             {301, "Moved Permanently"},
             {302, "Found"},
             {303, "See Other"},
             {304, "Not Modified"},
             {307, "Temporary Redirect"},
             {308, "Permanent Redirect"},
             {400, "Bad Request"},
             {401, "Unauthorized"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {409, "Conflict"},
             {413, "Content Too Large"},
             {415, "Unsupported Media Type"},
             {418, "I'm a teapot"},
             {422, "Unprocessable Content"},
             {429, "Too Many Requests"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].s == s)
            return t[i].r;
    return "";
}

/* Field value of a stream entry's field/value array, or NULL. */
static const redisReply *field(const redisReply *fv, const char *name) {
    if (!fv || fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 &&
            fv->element[i + 1]->type == REDIS_REPLY_STRING)
            return fv->element[i + 1];
    }
    return NULL;
}

typedef struct reply_state {
    int have_head, final;
    int status;
    char *headers; /* JSON text of the first entry */
    char *error, *message;
    buf body;
} reply_state;

static char *dup_str(const redisReply *v) {
    if (!v)
        return NULL;
    char *s = malloc(v->len + 1);
    if (s) {
        memcpy(s, v->str, v->len);
        s[v->len] = '\0';
    }
    return s;
}

/* Consumes one reply entry. Entries for another frame id (a producer reusing the key) are
 * skipped; so is anything after the final entry (a duplicate reply after a bridge crash). */
static int take_entry(reply_state *st, const char *frame_id, const redisReply *fv) {
    if (st->final)
        return 0;
    const redisReply *id = field(fv, "id");
    if (id && strcmp(id->str, frame_id) != 0)
        return 0;
    if (!st->have_head) {
        const redisReply *s = field(fv, "status");
        st->status = s ? atoi(s->str) : 0;
        st->headers = dup_str(field(fv, "headers"));
        st->error = dup_str(field(fv, "error"));
        st->message = dup_str(field(fv, "message"));
        st->have_head = 1;
    }
    const redisReply *b = field(fv, "body");
    if (b && buf_add(&st->body, b->str, b->len) != 0)
        return -1;
    const redisReply *f = field(fv, "final");
    if (f && strcmp(f->str, "1") == 0)
        st->final = 1;
    return 0;
}

/* "name: value" with control characters escaped: a CR/LF in a house's header value must not
 * print a line of its own (a forged header), nor an escape sequence reach the terminal. */
static void print_header(const char *k, const char *v) {
    char *ek = cli_esc_dup(k, strlen(k)), *ev = cli_esc_dup(v, strlen(v));
    if (ek && ev)
        printf("%s: %s\r\n", ek, ev);
    free(ek);
    free(ev);
}

static void print_headers(const char *json) {
    json_error_t je;
    json_t *h = json ? json_loads(json, JSON_DECODE_ANY, &je) : NULL;
    if (!json_is_object(h)) {
        json_decref(h);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) {
        if (json_is_string(v)) {
            print_header(k, json_string_value(v));
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (json_is_string(e))
                    print_header(k, json_string_value(e));
            }
        }
    }
    json_decref(h);
}

/* Why house h is not online, on stderr in one line ("house farm-1 is disabled (...)"), and
 * the exit status that says so. now: Redis's clock (ms; -1 unknown). */
static int not_online(cli_ctx *c, const gp_reg_house *h, long long now) {
    if (h->disabled) {
        cli_err(c, "house %s is disabled (ghostport house enable %s)", h->id, h->id);
        return CLI_DISABLED;
    }
    long long since = gp_reg_offline_since(h);
    if (since < 0) {
        cli_err(c, "house %s is offline (no bridge has held it yet)", h->id);
        return CLI_OFFLINE;
    }
    char t[32], age[32], lb[4 * sizeof h->last_bridge];
    cli_fmt_utc(t, sizeof t, since);
    top_fmt_age(age, sizeof age, now, since);
    cli_err(c, "house %s is offline since %s (%s ago; last held by bridge %s)", h->id, t, age,
            h->last_bridge[0] ? cli_esc_str(lb, sizeof lb, h->last_bridge) : "?");
    return CLI_OFFLINE;
}

/* Reads the house (hash and live state, one round trip) into *h: 0; CLI_USAGE (Redis: said)
 * or CLI_NO_HOUSE (not registered: said). */
static int peek_house(cli_ctx *c, br_rc *rc, const char *house, gp_reg_house *h) {
    char err[256];
    if (gp_reg_peek(rc, c->prefix, house, h, err, sizeof err) != 0) {
        cli_err(c, "%s", err);
        return CLI_USAGE;
    }
    if (!h->registered) {
        cli_err(c, "no house %s (none is registered under prefix '%s': see ghostport house list)",
                house, c->prefix);
        return CLI_NO_HOUSE;
    }
    return 0;
}

/* --fail-fast (wait_ms 0) and --wait-online: reads the house (hash and live state, one round
 * trip) until it is online, polling every ONLINE_POLL_MS for at most wait_ms (bridges publish
 * nothing a CLI may hear when they take a house: keyspace events are for streams only, `Kt`).
 * A disabled house is waited for too (it may be enabled meanwhile); no house at all is not.
 * 0 online, else the exit status with the reason printed. */
static int wait_online(cli_ctx *c, br_rc *rc, const char *house, long long wait_ms) {
    uint64_t end = cli_wall_ms() + (uint64_t)wait_ms;
    for (;;) {
        gp_reg_house h;
        int rv = peek_house(c, rc, house, &h);
        if (rv != 0)
            return rv;
        if (h.st.connected && !h.disabled)
            return 0;
        uint64_t now = cli_wall_ms();
        if (now >= end)
            return not_online(c, &h, gp_reg_time_ms(rc));
        uint64_t left = end - now, nap = left < ONLINE_POLL_MS ? left : ONLINE_POLL_MS;
        struct timespec ts = {(time_t)(nap / 1000), (long)(nap % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

int cli_request(cli_ctx *c, int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0, rv = CLI_USAGE, body_only = 0, dashdash = 0;
    const char *service = NULL, *frame_id = NULL;
    long long timeout_ms = DEFAULT_TIMEOUT_MS;
    long long wait_ms = -1; /* --fail-fast 0, --wait-online MS; -1: send whatever the state */
    json_t *headers = json_object();
    buf body = {0};
    int have_body = 0;
    br_rc *rc = NULL;
    reply_state st = {0};
    char *hjson = NULL;
    char uuid[37];
    if (!headers)
        return CLI_USAGE;

    for (int i = 0; i < argc; i++) {
        const char *v;
        int r;
        if (dashdash || argv[i][0] != '-' || !argv[i][1]) {
            if (npos >= 3) {
                cli_err(c, "request: unexpected argument '%s'", argv[i]);
                goto done;
            }
            pos[npos++] = argv[i];
            continue;
        }
        if (strcmp(argv[i], "--") == 0) {
            dashdash = 1;
            continue;
        }
        if ((r = cli_opt_val(argc, argv, &i, "--header", "-H", &v)) != 0) {
            if (r < 0 || add_header(c, headers, v) != 0)
                goto done;
        } else if ((r = cli_opt_val(argc, argv, &i, "--data", "-d", &v)) != 0 ||
                   (r = cli_opt_val(argc, argv, &i, "--data-binary", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            if (have_body) {
                cli_err(c, "request: only one body (-d / --data-binary) allowed");
                goto done;
            }
            have_body = 1;
            if (v[0] == '@') {
                if (read_file(c, v + 1, &body) != 0)
                    goto done;
            } else if (buf_add(&body, v, strlen(v)) != 0) {
                goto done;
            }
        } else if ((r = cli_opt_val(argc, argv, &i, "--service", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            service = v;
        } else if ((r = cli_opt_val(argc, argv, &i, "--id", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            frame_id = v;
        } else if ((r = cli_opt_val(argc, argv, &i, "--timeout", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            char *e;
            errno = 0;
            timeout_ms = strtoll(v, &e, 10);
            if (*e || e == v || errno || timeout_ms < 1 || timeout_ms > MAX_TIMEOUT_MS) {
                cli_err(c, "--timeout wants milliseconds from 1 to %d", MAX_TIMEOUT_MS);
                goto done;
            }
        } else if ((r = cli_opt_val(argc, argv, &i, "--wait-online", NULL, &v)) != 0) {
            if (r < 0)
                goto done;
            char *e;
            errno = 0;
            wait_ms = strtoll(v, &e, 10);
            if (*e || e == v || errno || wait_ms < 0 || wait_ms > MAX_TIMEOUT_MS) {
                cli_err(c, "--wait-online wants milliseconds from 0 to %d", MAX_TIMEOUT_MS);
                goto done;
            }
        } else if (strcmp(argv[i], "--fail-fast") == 0) {
            wait_ms = 0;
        } else if (strcmp(argv[i], "--body-only") == 0) {
            body_only = 1;
        } else {
            cli_err(c, "request: unknown option '%s'", argv[i]);
            cli_usage(c, "request", NULL);
            goto done;
        }
    }
    if (npos != 3) {
        cli_usage(c, "request", NULL);
        goto done;
    }
    const char *house = pos[0], *method = pos[1], *path = pos[2];
    if (!gp_house_id_valid(gp_str_c(house))) {
        cli_err(c, "invalid house id '%s'", house);
        goto done;
    }
    if (path[0] != '/') {
        cli_err(c, "PATH must start with / (got '%s')", path);
        goto done;
    }
    if (!frame_id) {
        make_uuid(uuid);
        frame_id = uuid;
    }
    if (!(rc = cli_connect(c)))
        goto done;

    if (wait_ms >= 0) {
        int w = wait_online(c, rc, house, wait_ms);
        if (w != 0) {
            rv = w;
            goto done;
        }
    } else {
        gp_reg_house h;
        int p = peek_house(c, rc, house, &h);
        if (p != 0) {
            rv = p;
            goto done;
        }
        if (!h.st.connected || h.disabled)
            fprintf(stderr,
                    "%s: note: house %s is %s; the request waits in its stream until a bridge "
                    "picks it up or its %lld ms deadline passes (--fail-fast: do not send)\n",
                    c->prog, house, gp_reg_house_state(&h), timeout_ms);
    }

    char kreq[GP_KEY_MAX], krep[GP_KEY_MAX], tmo[24];
    if (gp_key_req(kreq, c->prefix, house) < 0 || gp_key_reply(krep, c->prefix, frame_id) < 0) {
        cli_err(c, "key too long");
        goto done;
    }
    snprintf(tmo, sizeof tmo, "%lld", timeout_ms);
    hjson = json_dumps(headers, JSON_COMPACT);
    if (!hjson)
        goto done;

    /* The request: one XADD, binary-safe (argv with explicit lengths). */
    const char *av[24];
    size_t al[24];
    int ac = 0;
#define ARG(s, n) (av[ac] = (s), al[ac] = (n), ac++)
#define ARGS(s) ARG((s), strlen(s))
    ARGS("XADD");
    ARGS(kreq);
    ARGS("MAXLEN");
    ARGS("~");
    ARGS("10000");
    ARGS("*");
    ARGS("id");
    ARGS(frame_id);
    ARGS("method");
    ARGS(method);
    ARGS("path");
    ARGS(path);
    ARGS("headers");
    ARGS(hjson);
    ARGS("body");
    ARG(body.p ? (const char *)body.p : "", body.len);
    ARGS("timeout_ms");
    ARGS(tmo);
    ARGS("reply");
    ARGS(krep);
    if (service) {
        ARGS("service");
        ARGS(service);
    }
#undef ARG
#undef ARGS
    redisReply *r = br_rc_cmdv(rc, ac, av, al);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        cli_err(c, "XADD %s failed: %s", kreq, r ? r->str : br_rc_error(rc));
        if (r)
            freeReplyObject(r);
        goto done;
    }
    freeReplyObject(r);

    /* Wait for the final entry, bounded by the deadline plus a margin. */
    uint64_t deadline = cli_wall_ms() + (uint64_t)timeout_ms + WAIT_MARGIN_MS;
    char last[64] = "0-0";
    while (!st.final) {
        uint64_t now = cli_wall_ms();
        if (now >= deadline)
            break;
        uint64_t left = deadline - now;
        char block[24];
        snprintf(block, sizeof block, "%llu", (unsigned long long)left);
        br_rc_set_timeout(rc, (int)left + 5000);
        const char *xv[] = {"XREAD", "COUNT", "100", "BLOCK", block, "STREAMS", krep, last};
        r = br_rc_cmdv(rc, 8, xv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            cli_err(c, "XREAD %s failed: %s", krep, r ? r->str : br_rc_error(rc));
            if (r)
                freeReplyObject(r);
            goto done;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            const redisReply *entries = r->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *e = entries->element[i];
                snprintf(last, sizeof last, "%s", e->element[0]->str);
                if (take_entry(&st, frame_id, e->element[1]) != 0) {
                    cli_err(c, "out of memory");
                    freeReplyObject(r);
                    goto done;
                }
            }
        }
        freeReplyObject(r);
    }
    if (!st.final) {
        cli_err(c,
                "no reply for %s within %lld ms (is house %s connected? see `ghostport house "
                "list`)",
                frame_id, timeout_ms + WAIT_MARGIN_MS, house);
        rv = CLI_TIMEOUT;
        goto done;
    }
    /* The reply is ours alone: remove it now rather than leave it to its TTL. */
    const char *dv[] = {"DEL", krep};
    r = br_rc_cmdv(rc, 2, dv, NULL);
    if (r)
        freeReplyObject(r);

    if (!body_only) {
        printf("HTTP/1.1 %d %s\r\n", st.status, reason(st.status));
        if (!st.error || !*st.error)
            print_headers(st.headers);
        printf("\r\n");
    }
    if (st.error && *st.error) {
        fflush(stdout);
        char *ee = cli_esc_dup(st.error, strlen(st.error));
        char *em = st.message ? cli_esc_dup(st.message, strlen(st.message)) : NULL;
        cli_err(c, "%d %s: %s", st.status, ee ? ee : "?", em ? em : "");
        free(ee);
        free(em);
        rv = CLI_FAIL;
        goto done;
    }
    if (st.body.len && fwrite(st.body.p, 1, st.body.len, stdout) != st.body.len) {
        cli_err(c, "writing the body: %s", strerror(errno));
        rv = CLI_FAIL;
        goto done;
    }
    fflush(stdout);
    rv = st.status > 0 && st.status < 400 ? CLI_OK : CLI_FAIL;
done:
    json_decref(headers);
    free(hjson);
    free(body.p);
    free(st.headers);
    free(st.error);
    free(st.message);
    free(st.body.p);
    if (rc)
        br_rc_free(rc);
    return rv;
}
