/* conf.c — table-driven configuration: defaults, "name = value" text, GP_* environment
 * variables and --flags all go through one setter (pure: the caller reads files and passes
 * an environment lookup, so every entry point can be fuzzed; the one exception,
 * gp_conf_secret_file_ok, stats a path).
 *
 * Internally every error is written into a local buffer that is always valid, then copied
 * out with the context that the caller would need (a line number, a variable name); callers
 * may pass err NULL. */
#include "conf.h"

#include "auth.h"
#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERRMAX 256

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return GP_ERR_INVALID;
}

static const gp_conf_opt *find(const gp_conf_opt *t, const char *name, size_t len) {
    for (; t->name; t++)
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* Decimal with an optional k/m/g suffix (1024-based); all of `s` must be used. */
static int parse_int(const char *s, long long *out) {
    const char *p = s;
    int neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    long long v = 0;
    for (; isdigit((unsigned char)*p); p++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
            return -1;
    int shift = 0;
    switch (*p) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    }
    if (shift)
        p++;
    if (*p || __builtin_mul_overflow(v, 1LL << shift, &v))
        return -1;
    *out = neg ? -v : v;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* Sets one option; `e` is always a writable ERRMAX buffer. */
static int set_opt(const gp_conf_opt *o, void *obj, const char *value, char *e) {
    char *field = (char *)obj + o->offset;
    switch (o->type) {
    case GP_CONF_STR: {
        char *copy = strdup(value);
        if (!copy) {
            snprintf(e, ERRMAX, "%s: out of memory", o->name);
            return GP_ERR_NOMEM;
        }
        char **slot = (char **)(void *)field;
        free(*slot); /* a later source replaces an earlier one */
        *slot = copy;
        return 0;
    }
    case GP_CONF_INT: {
        long long v;
        if (parse_int(value, &v) != 0)
            return fail(e, ERRMAX, "%s: \"%s\" is not an integer", o->name, value);
        if (v < o->min)
            return fail(e, ERRMAX, "%s: %s is below the minimum %lld", o->name, value, o->min);
        if (v > o->max)
            return fail(e, ERRMAX, "%s: %s is above the maximum %lld", o->name, value, o->max);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case GP_CONF_BOOL: {
        int v;
        if (parse_bool(value, &v) != 0)
            return fail(e, ERRMAX, "%s: \"%s\" is not a boolean (1/0, true/false, yes/no, on/off)",
                        o->name, value);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case GP_CONF_FN: {
        e[0] = '\0';
        int rc = o->fn(obj, value, e, ERRMAX);
        if (rc != 0 && !e[0])
            snprintf(e, ERRMAX, "%s: invalid value \"%s\"", o->name, value);
        return rc;
    }
    }
    return fail(e, ERRMAX, "%s: unknown option type", o->name);
}

/* Copies a failure message out, with `ctx` (may be "") in front. */
static int report(int rc, char *err, size_t errlen, const char *ctx, const char *e) {
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "%s%s", ctx, e);
    return rc;
}

int gp_conf_defaults(const gp_conf_opt *t, void *obj, char *err, size_t errlen) {
    char e[ERRMAX];
    for (; t->name; t++) {
        if (!t->def)
            continue;
        int rc = set_opt(t, obj, t->def, e);
        if (rc != 0)
            return report(rc, err, errlen, "default of ", e);
    }
    return 0;
}

int gp_conf_set(const gp_conf_opt *t, void *obj, const char *name, const char *value, char *err,
                size_t errlen) {
    const gp_conf_opt *o = find(t, name, strlen(name));
    if (!o)
        return fail(err, errlen, "unknown option \"%s\"", name);
    char e[ERRMAX];
    return report(set_opt(o, obj, value, e), err, errlen, "", e);
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

/* One "name = value" line, already stripped of its newline. Writes the error into e. */
static int parse_line(const gp_conf_opt *t, void *obj, const char *s, size_t len, char *e) {
    const char *end = s + len;
    while (s < end && is_space(*s))
        s++;
    if (s == end || *s == '#')
        return 0;
    if (memchr(s, '\0', (size_t)(end - s)))
        return fail(e, ERRMAX, "NUL byte in line");
    const char *eq = memchr(s, '=', (size_t)(end - s));
    const char *ne = eq ? eq : s;
    while (ne > s && is_space(ne[-1]))
        ne--;
    if (!eq || ne == s)
        return fail(e, ERRMAX, "expected \"name = value\"");
    const gp_conf_opt *o = find(t, s, (size_t)(ne - s));
    if (!o)
        return fail(e, ERRMAX, "unknown option \"%.*s\"", (int)(ne - s), s);

    const char *v = eq + 1;
    while (v < end && is_space(*v))
        v++;
    char *value = malloc((size_t)(end - v) + 1);
    if (!value)
        return snprintf(e, ERRMAX, "out of memory"), GP_ERR_NOMEM;
    size_t n = 0;
    int rc = 0;
    if (v < end && *v == '"') {
        /* Quoted: \" and \\ are escapes; after the closing quote only a comment may follow. */
        for (v++; v < end && *v != '"'; v++) {
            if (*v == '\\' && v + 1 < end && (v[1] == '"' || v[1] == '\\'))
                v++;
            value[n++] = *v;
        }
        if (v == end)
            rc = fail(e, ERRMAX, "%s: unterminated quoted value", o->name);
        else
            for (v++; v < end && is_space(*v); v++)
                ;
        if (rc == 0 && v < end && *v != '#')
            rc = fail(e, ERRMAX, "%s: unexpected text after the closing quote", o->name);
    } else {
        /* Unquoted: a '#' at its start or after a blank starts a comment; trailing blanks are
         * dropped. */
        for (; v < end && !(*v == '#' && (n == 0 || is_space(value[n - 1]))); v++)
            value[n++] = *v;
        while (n > 0 && is_space(value[n - 1]))
            n--;
    }
    value[n] = '\0';
    if (rc == 0)
        rc = set_opt(o, obj, value, e);
    free(value);
    return rc;
}

int gp_conf_parse_text(const gp_conf_opt *t, void *obj, const char *text, size_t len, char *err,
                       size_t errlen) {
    if (len == 0)
        return 0;
    char e[ERRMAX];
    const char *p = text, *end = text + len;
    for (unsigned line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        int rc = parse_line(t, obj, p, (size_t)(le - p), e);
        if (rc != 0) {
            char ctx[32];
            snprintf(ctx, sizeof ctx, "line %u: ", line);
            return report(rc, err, errlen, ctx, e);
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

/* GP_<NAME>: upper-cased, '-' and '.' become '_'. */
static int env_name(const char *name, char *out, size_t cap) {
    int n = snprintf(out, cap, "GP_%s", name);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    for (char *c = out + 3; *c; c++)
        *c = *c == '-' || *c == '.' ? '_' : (char)toupper((unsigned char)*c);
    return 0;
}

int gp_conf_apply_env(const gp_conf_opt *t, void *obj, char *(*getenv_fn)(const char *), char *err,
                      size_t errlen) {
    char e[ERRMAX], var[128];
    for (; t->name; t++) {
        if (env_name(t->name, var, sizeof var) != 0)
            return fail(err, errlen, "%s: option name too long for an environment variable",
                        t->name);
        const char *v = getenv_fn(var);
        if (!v || !*v) /* empty counts as unset, as compose files often leave them */
            continue;
        int rc = set_opt(t, obj, v, e);
        if (rc != 0) {
            char ctx[sizeof var + 16];
            snprintf(ctx, sizeof ctx, "environment %s: ", var);
            return report(rc, err, errlen, ctx, e);
        }
    }
    return 0;
}

int gp_conf_parse_argv(const gp_conf_opt *t, void *obj, int argc, char **argv, int first,
                       int *positional, int maxpos, int *npos, char *err, size_t errlen) {
    char e[ERRMAX];
    int np = 0, opts_done = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = 1;
            continue;
        }
        if (opts_done || strncmp(a, "--", 2) != 0) {
            if (np >= maxpos)
                return fail(err, errlen, "unexpected argument \"%s\"", a);
            positional[np++] = i;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const gp_conf_opt *o = find(t, name, nlen);
        if (!o)
            return fail(err, errlen, "unknown option --%.*s", (int)nlen, name);
        const char *value = eq ? eq + 1 : NULL;
        if (!value && o->type == GP_CONF_BOOL)
            value = "1";
        else if (!value && ++i < argc)
            value = argv[i];
        else if (!value)
            return fail(err, errlen, "--%s needs a value", o->name);
        int rc = set_opt(o, obj, value, e);
        if (rc != 0)
            return report(rc, err, errlen, "", e);
    }
    if (npos)
        *npos = np;
    return 0;
}

void gp_conf_clear(const gp_conf_opt *t, void *obj) {
    for (; t->name; t++) {
        if (t->type != GP_CONF_STR)
            continue;
        char **slot = (char **)(void *)((char *)obj + t->offset);
        free(*slot);
        *slot = NULL;
    }
}

void gp_conf_usage(const gp_conf_opt *t, void (*out)(void *ud, const char *line), void *ud) {
    static const char *const metavar[] = {[GP_CONF_STR] = " VALUE",
                                          [GP_CONF_INT] = " N",
                                          [GP_CONF_BOOL] = "",
                                          [GP_CONF_FN] = " VALUE"};
    char line[512], flag[96], var[128];
    for (; t->name; t++) {
        snprintf(flag, sizeof flag, "--%s%s", t->name, metavar[t->type]);
        if (env_name(t->name, var, sizeof var) != 0)
            var[0] = '\0';
        snprintf(line, sizeof line, "  %-24s %s (env %s%s%s%s)", flag, t->help ? t->help : "", var,
                 t->def ? ", default " : "", t->def ? t->def : "",
                 t->type == GP_CONF_FN ? ", repeatable" : "");
        out(ud, line);
    }
}

void gp_conf_print_version(const char *prog, const char *version) {
    printf("%s %s\n", prog, version);
}

int gp_conf_version(int argc, char **argv, const char *prog, const char *version) {
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--version") == 0) {
            gp_conf_print_version(prog, version);
            return 1;
        }
    return 0;
}

/* ---- files that hold secrets ------------------------------------------------------------- */

int gp_conf_secret_mode_ok(const char *path, unsigned mode, unsigned owner, unsigned self,
                           char *err, size_t errlen) {
    if (owner != self || !(mode & 077u))
        return 0;
    char e[ERRMAX * 4];
    snprintf(e, sizeof e,
             "%s: permissions 0%03o let %s read or change this secret: fix with chmod 600", path,
             mode & 0777u, mode & 007u ? "others" : "the group");
    if (err && errlen)
        snprintf(err, errlen, "%s", e);
    return -1;
}

int gp_conf_secret_file_ok(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return 0;
    return gp_conf_secret_mode_ok(path, (unsigned)st.st_mode, (unsigned)st.st_uid,
                                  (unsigned)geteuid(), err, errlen);
}

/* ---- reading files ------------------------------------------------------------------------ */

int gp_read_fd(int fd, size_t max, gp_buf *out) {
    for (;;) {
        if (gp_buf_reserve(out, 4096) != 0) {
            errno = ENOMEM;
            return -1;
        }
        ssize_t n = read(fd, out->p + out->len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        out->len += (size_t)n;
        out->p[out->len] = '\0';
        if (out->len > max) {
            errno = EFBIG;
            return -1;
        }
        if (n == 0)
            return 0;
    }
}

char *gp_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        errno = e;
        return NULL;
    }
    gp_buf b = {0};
    int rc = gp_read_fd(fd, max, &b), e = errno;
    close(fd);
    if (rc != 0) {
        if (b.p)
            sodium_memzero(b.p, b.cap);
        gp_buf_free(&b);
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path,
                     e == EFBIG    ? "file too large"
                     : e == ENOMEM ? "out of memory"
                                   : "read error");
        errno = e;
        return NULL;
    }
    return gp_buf_take(&b, len);
}

int gp_read_key_file(const char *path, int flags, unsigned char out[32], char *err, size_t errlen) {
    if (gp_conf_secret_file_ok(path, err, errlen) != 0)
        return GP_KEY_UNPROTECTED;
    size_t len = 0;
    char *text = gp_read_file(path, 65536, &len, err, errlen);
    if (!text)
        return GP_KEY_UNREADABLE;
    char hex[GP_SECRET_HEX_LEN + 1];
    size_t a = 0, z = len, n = 0;
    while (a < z && isspace((unsigned char)text[a]))
        a++;
    while (z > a && isspace((unsigned char)text[z - 1]))
        z--;
    int bad = 0;
    for (size_t i = a; i < z && !bad; i++) {
        if ((flags & GP_KEY_SPACES) && isspace((unsigned char)text[i]))
            continue;
        if (n == GP_SECRET_HEX_LEN)
            bad = 1;
        else
            hex[n++] = text[i];
    }
    hex[n] = '\0';
    sodium_memzero(text, len);
    free(text);
    int rc = !bad && n == GP_SECRET_HEX_LEN ? gp_secret_from_hex(hex, out) : -1;
    sodium_memzero(hex, sizeof hex);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s must hold exactly 64 hex digits", path);
        return GP_KEY_INVALID;
    }
    return 0;
}

const char *gp_conf_file_arg(int argc, char **argv, const char *env) {
    const char *path = env;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path;
}

int gp_conf_help_arg(int argc, char **argv) {
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

int gp_conf_load_file(const gp_conf_opt *t, void *obj, const char *path, size_t max, char *err,
                      size_t errlen) {
    size_t len = 0;
    char *text = gp_read_file(path, max, &len, err, errlen);
    if (!text)
        return GP_CONF_EREAD;
    int rc = gp_conf_parse_text(t, obj, text, len, err, errlen);
    sodium_memzero(text, len);
    free(text);
    return rc != 0 ? -1 : 0;
}

/* ---- SIGHUP ------------------------------------------------------------------------------ */

int gp_conf_differs(const gp_conf_opt *o, const void *cur, const void *next) {
    const char *pa = (const char *)cur + o->offset, *pb = (const char *)next + o->offset;
    switch (o->type) {
    case GP_CONF_STR: {
        const char *sa = *(char *const *)(const void *)pa, *sb = *(char *const *)(const void *)pb;
        return strcmp(sa ? sa : "", sb ? sb : "") != 0;
    }
    case GP_CONF_INT:
        return *(const long long *)(const void *)pa != *(const long long *)(const void *)pb;
    case GP_CONF_BOOL:
        return *(const int *)(const void *)pa != *(const int *)(const void *)pb;
    default:
        return 0;
    }
}

void gp_conf_list_append(char *list, size_t cap, const char *name) {
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%s", n ? "," : "", name);
}

static int named(const char *const *names, const char *name) {
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

void gp_conf_reload(const gp_conf_opt *t, void *cur, void *next, const char *const *reloadable,
                    int (*differs)(const gp_conf_opt *o, const void *cur, const void *next),
                    char *changed, size_t ccap, char *restart, size_t rcap) {
    for (const gp_conf_opt *o = t; o->name; o++) {
        if (!differs(o, cur, next))
            continue;
        if (!named(reloadable, o->name)) {
            gp_conf_list_append(restart, rcap, o->name);
            continue;
        }
        gp_conf_list_append(changed, ccap, o->name);
        char *dst = (char *)cur + o->offset, *src = (char *)next + o->offset;
        if (o->type == GP_CONF_STR) {
            char *tmp = *(char **)(void *)dst;
            *(char **)(void *)dst = *(char **)(void *)src;
            *(char **)(void *)src = tmp; /* the old value is freed with next */
        } else if (o->type == GP_CONF_INT) {
            *(long long *)(void *)dst = *(long long *)(void *)src;
        }
    }
}
