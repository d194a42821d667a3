/* cli_keys.c — `ghostport rudp-keygen`: the bridges' static X25519 key pair for rudp://. The
 * private key goes to a file (mode 0600) that every bridge of the deployment reads with
 * --rudp-key; the public key is printed for the houses' --bridge-key. I/O side (files). */
#include "cli_cmd.h"

#include "auth.h"
#include "conf.h"
#include "rudp_sess.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_rand(void *ud, uint8_t *p, size_t n) {
    (void)ud;
    randombytes_buf(p, n);
}

static void to_hex(const uint8_t k[32], char out[65]) {
    sodium_bin2hex(out, 65, k, 32);
}

/* The private key of FILE (64 hex digits, whitespace ignored). 0, or CLI_FAIL (printed). */
static int read_key(cli_ctx *c, const char *path, uint8_t priv[32]) {
    char perr[512];
    int rc = gp_read_key_file(path, GP_KEY_SPACES, priv, perr, sizeof perr);
    if (rc == GP_KEY_UNPROTECTED)
        cli_err(c, "%s", perr);
    else if (rc == GP_KEY_UNREADABLE)
        cli_err(c, "cannot read %s: %s", path, strerror(errno));
    else if (rc != 0)
        cli_err(c, "%s does not hold a key (64 hex digits)", path);
    return rc == 0 ? 0 : CLI_FAIL;
}

int cli_rudp_keygen(cli_ctx *c, int argc, char **argv) {
    const char *out = NULL, *show = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if ((r = cli_opt_val(argc, argv, &i, "--out", "-o", &out)) != 0 ||
            (r = cli_opt_val(argc, argv, &i, "--show", NULL, &show)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            continue;
        }
        if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if ((r = cli_global_opt(c, argc, argv, &i)) != 0) {
            if (r < 0)
                return CLI_USAGE;
        } else
            return cli_usage(c, "rudp-keygen", NULL);
    }
    if (!out == !show)
        return cli_usage(c, "rudp-keygen", NULL);
    uint8_t pub[32], priv[32];
    char hex[65];
    if (show) {
        if (read_key(c, show, priv) != 0)
            return CLI_FAIL;
        int rc = gp_sess_pubkey(priv, pub);
        sodium_memzero(priv, sizeof priv);
        if (rc != 0) {
            cli_err(c, "%s: not a usable private key", show);
            return CLI_FAIL;
        }
        to_hex(pub, hex);
        printf("%s\n", hex);
        return CLI_OK;
    }
    gp_sess_keypair(pub, priv, on_rand, NULL);
    int fd = open(out, O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL), 0600);
    if (fd < 0) {
        sodium_memzero(priv, sizeof priv);
        cli_err(c, "cannot create %s: %s%s", out, strerror(errno),
                errno == EEXIST ? " (--force replaces it: every bridge and house must then "
                                  "get the new keys)"
                                : "");
        return CLI_FAIL;
    }
    to_hex(priv, hex);
    sodium_memzero(priv, sizeof priv);
    hex[64] = '\n';
    ssize_t w = write(fd, hex, 65);
    sodium_memzero(hex, sizeof hex);
    if (w != 65 || fsync(fd) != 0 || close(fd) != 0) {
        cli_err(c, "cannot write %s: %s", out, strerror(errno));
        return CLI_FAIL;
    }
    to_hex(pub, hex);
    printf("%s\n", hex);
    fprintf(stderr,
            "private key written to %s: give it to every bridge (--rudp-key); the public key "
            "above goes to every house (--bridge-key)\n",
            out);
    return CLI_OK;
}
