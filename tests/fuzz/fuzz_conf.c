/* libFuzzer target for the config parser (proto/conf.c): arbitrary text through
 * gp_conf_parse_text on a small table with every option type, and the same bytes split at
 * NULs as an argv. Oracle: no crash, no leak, an error message on every failure. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

typedef struct cfg {
    char *name;
    long long port;
    int flag;
    size_t nfn;
} cfg;

static int count_fn(void *obj, const char *value, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    ((cfg *)obj)->nfn++;
    return value[0] == '!' ? GP_ERR_INVALID : 0;
}

static const gp_conf_opt opts[] = {
    {"name", GP_CONF_STR, offsetof(cfg, name), 0, 0, "x", NULL, NULL},
    {"port", GP_CONF_INT, offsetof(cfg, port), -5, 1LL << 40, "1", NULL, NULL},
    {"flag", GP_CONF_BOOL, offsetof(cfg, flag), 0, 1, "0", NULL, NULL},
    {"fn", GP_CONF_FN, 0, 0, 0, NULL, count_fn, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static void check(int ok) {
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cfg c = {0};
    char err[128] = "";
    check(gp_conf_defaults(opts, &c, err, sizeof err) == 0);
    int rc = gp_conf_parse_text(opts, &c, (const char *)data, size, err, sizeof err);
    check(rc == 0 || (rc < 0 && err[0]));
    check(c.port >= -5 && c.port <= 1LL << 40 && (c.flag == 0 || c.flag == 1) && c.name);

    /* The same bytes as NUL-separated argv (copied: argv strings must be terminated). */
    char *buf = malloc(size + 1), *argv[64];
    if (!buf)
        goto out;
    memcpy(buf, data, size);
    buf[size] = '\0';
    int argc = 0;
    for (char *s = buf; argc < 64 && s <= buf + size; s += strlen(s) + 1)
        argv[argc++] = s;
    int pos[4], npos = 0;
    err[0] = '\0';
    rc = gp_conf_parse_argv(opts, &c, argc, argv, 0, pos, 4, &npos, err, sizeof err);
    check(rc == 0 || (rc < 0 && err[0]));
    if (rc == 0)
        for (int i = 0; i < npos; i++)
            check(pos[i] >= 0 && pos[i] < argc);
    free(buf);
out:
    gp_conf_clear(opts, &c);
    return 0;
}
