/* conf.h — table-driven configuration (pure). Each option is described once (name, type,
 * bounds, default, help) and can then be set from a config file's "name = value" lines,
 * from an environment variable (GP_<NAME> upper-cased, '-' and '.' -> '_'), and from a
 * command-line flag --name=value or --name value. Precedence: defaults < file < env < flags.
 * Parsing never touches the file system: the caller reads the file and passes its text,
 * and passes an environment lookup function, so all of this can be fuzzed. */
#ifndef GP_CONF_H
#define GP_CONF_H

#include "buf.h"
#include "gp.h"

enum gp_conf_type {
    GP_CONF_STR,  /* char * (heap copy owned by the object; freed by gp_conf_clear) */
    GP_CONF_INT,  /* long long, checked against [min, max] */
    GP_CONF_BOOL, /* int: 1/0, true/false, yes/no, on/off; a bare flag means 1 */
    GP_CONF_FN,   /* custom: fn(obj, value, err, errlen) -> 0 or GP_ERR_INVALID; may repeat */
};

typedef struct gp_conf_opt {
    const char *name; /* "max-body", "upstream", "service" ... */
    enum gp_conf_type type;
    size_t offset; /* offsetof(struct, field) for STR/INT/BOOL */
    long long min, max;
    const char *def; /* default as text, or NULL */
    int (*fn)(void *obj, const char *value, char *err, size_t errlen);
    const char *help;
} gp_conf_opt;

/* Table ends with an entry whose name is NULL. */

/* Applies every default. 0 or GP_ERR_INVALID (a bad default: a bug) / GP_ERR_NOMEM.
 * obj must start zeroed: a STR field is freed when a later source replaces it. */
int gp_conf_defaults(const gp_conf_opt *t, void *obj, char *err, size_t errlen);

/* Sets one option by name. Unknown name or bad value: GP_ERR_INVALID with a message such as
 * "max-body: 0 is below the minimum 1" in err. */
int gp_conf_set(const gp_conf_opt *t, void *obj, const char *name, const char *value, char *err,
                size_t errlen);

/* Parses config text: one "name = value" per line; blank lines and '#' comments skipped;
 * value may be "double-quoted". Errors name the line number. */
int gp_conf_parse_text(const gp_conf_opt *t, void *obj, const char *text, size_t len, char *err,
                       size_t errlen);

/* Applies GP_<NAME> variables found by getenv_fn (pass getenv; a test passes its own).
 * An empty variable counts as unset. */
int gp_conf_apply_env(const gp_conf_opt *t, void *obj, char *(*getenv_fn)(const char *), char *err,
                      size_t errlen);

/* Parses argv[first..argc): --name=value, --name value, --flag (BOOL). Positional arguments
 * (not starting with "--") are left: their indexes are written to positional[] (up to
 * maxpos), their count to *npos. "--" ends option parsing. */
int gp_conf_parse_argv(const gp_conf_opt *t, void *obj, int argc, char **argv, int first,
                       int *positional, int maxpos, int *npos, char *err, size_t errlen);

/* Frees STR fields. */
void gp_conf_clear(const gp_conf_opt *t, void *obj);

/* Files that hold a secret (a house secret, the rudp private key, the admin token, a config
 * file that sets a secret) are refused as ssh refuses a private key: when the file belongs to
 * the user reading it and its group or others have any permission on it. A file someone else
 * owns was handed to us on purpose (root:ghostport 0640 in the deploy files, a container
 * platform's secret mounted root-owned 0444), so it is not second-guessed. The decision
 * (pure) and the check of a path (stat, following links): 0, or -1 with a message that names
 * the file, its mode and the fix (chmod 600) in err. A path that cannot be stat'ed is left to
 * the caller's open (0). */
int gp_conf_secret_mode_ok(const char *path, unsigned mode, unsigned owner, unsigned self,
                           char *err, size_t errlen);
int gp_conf_secret_file_ok(const char *path, char *err, size_t errlen);

/* The whole file at path, at most max bytes, NUL-terminated (malloc'd; *len its length; wipe
 * a secret's text before freeing it). NULL with "<path>: <reason>" in err (may be NULL) and
 * errno kept from the failing call (EFBIG: over max). The one file reader of both daemons. */
char *gp_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* Appends what is left to read on fd (up to its end) to out: 0, or -1 with errno (EFBIG once
 * out holds more than max bytes, ENOMEM, or read's); out keeps what was read (wipe a
 * secret's). gp_read_file's reader, for a caller that opened the file itself (or stdin). */
int gp_read_fd(int fd, size_t max, gp_buf *out);

/* The config layer of both daemons (defaults < file < environment < flags): the file named
 * by the last --config FILE or --config=FILE in argv[1..] (up to "--"), else env (GP_CONFIG;
 * may be NULL). NULL or "": none. */
const char *gp_conf_file_arg(int argc, char **argv, const char *env);
/* 1 when --help or -h stands in argv[1..] before any "--": both daemons answer it before they
 * read their configuration, whatever else the command line holds. */
int gp_conf_help_arg(int argc, char **argv);
/* Reads the config file at path (at most max bytes) and parses it into obj
 * (gp_conf_parse_text); the text is wiped after. 0; -1 with the parse error in err; or
 * GP_CONF_EREAD when it cannot be read (err "<path>: <reason>", errno kept). */
enum { GP_CONF_EREAD = -2 };
int gp_conf_load_file(const gp_conf_opt *t, void *obj, const char *path, size_t max, char *err,
                      size_t errlen);

/* SIGHUP in both daemons: the configuration read again (next, as at start) is compared with
 * the running one (cur) option by option with differs (which also says 0 for options that
 * cannot be compared: secrets wiped once read, computed defaults; gp_conf_differs is the
 * plain comparison). An option that differs and is named in reloadable (NULL-terminated) is
 * applied (a STR is swapped, so the old value is freed with next; an INT copied) and its
 * name appended to changed; one that differs and is not, to restart (comma-separated). */
int gp_conf_differs(const gp_conf_opt *o, const void *cur, const void *next);
void gp_conf_reload(const gp_conf_opt *t, void *cur, void *next, const char *const *reloadable,
                    int (*differs)(const gp_conf_opt *o, const void *cur, const void *next),
                    char *changed, size_t ccap, char *restart, size_t rcap);
/* Appends name to a comma-separated list (cut at cap). */
void gp_conf_list_append(char *list, size_t cap, const char *name);

/* A key file (a house secret, the bridges' rudp private key): 64 hex digits, whitespace
 * around them ignored (with GP_KEY_SPACES anywhere), the file checked as a secret file
 * (gp_conf_secret_file_ok) before it is read. 0 with the key in out, or one of the errors
 * below with a message in err (errno kept for GP_KEY_UNREADABLE). */
enum { GP_KEY_SPACES = 1 };
enum { GP_KEY_UNPROTECTED = -1, GP_KEY_UNREADABLE = -2, GP_KEY_INVALID = -3 };
int gp_read_key_file(const char *path, int flags, unsigned char out[32], char *err, size_t errlen);

/* --version, for both daemons and the CLI: gp_conf_print_version writes "<prog> <version>"
 * on stdout (version: the build's gp_version, "0.1.0 (git abc1234)", version.h);
 * gp_conf_version does so and returns 1 when argv[1..] holds --version before any "--" (the
 * daemons take it anywhere on the line, as --help), else returns 0. */
void gp_conf_print_version(const char *prog, const char *version);
int gp_conf_version(int argc, char **argv, const char *prog, const char *version);

/* Writes "  --name VALUE   help (env GP_NAME, default X)" lines for --help. */
void gp_conf_usage(const gp_conf_opt *t, void (*out)(void *ud, const char *line), void *ud);
/* What a daemon's --help says of its options before gp_conf_usage's lines: where they come
 * from (the layers above) and what SIGHUP applies again (gp_conf_reload). */
#define GP_CONF_USAGE_DAEMON                                                                       \
    "options (each also as environment variable GP_<NAME> and config file line;\n"                 \
    "those marked [SIGHUP] are applied again from the file, environment and flags on\n"            \
    "SIGHUP, the others need a restart):\n"

#endif
