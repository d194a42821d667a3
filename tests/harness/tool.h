/* tool.h — the configuration steps the test tools share (gp-loadhouses, gp-relay): their
 * options are a gp_conf table (proto/conf.h) read as the daemons read theirs — defaults, then
 * GP_<NAME> environment variables, then the command line — with a usage text, a log level by
 * name, and the start of main that goes with them. Header-only (each tool is its own program
 * and links no harness); test tools only. */
#ifndef GP_TEST_TOOL_H
#define GP_TEST_TOOL_H
#include "conf.h"
#include "logger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options' help lines as gp_conf_usage writes them, one a line. */
static inline void tool_print_line(void *ud, const char *line) {
    (void)ud;
    printf("%s\n", line);
}

/* The usage text, then "options (each also as environment variable GP_<NAME>):" and every
 * option's help through line (tool_print_line, or a tool's own filter). */
static inline void tool_usage(const char *text, const gp_conf_opt *opts,
                              void (*line)(void *ud, const char *line)) {
    printf("%s\noptions (each also as environment variable GP_<NAME>):\n", text);
    gp_conf_usage(opts, line, NULL);
}

/* Reads cfg as opts say: defaults; with --help or -h anywhere only *help = 1; else the
 * environment, then argv (no positional arguments). *layer, when not NULL, is 1 while the
 * environment is read and 2 for argv (options that add up by layer). 0, or -1 with a message
 * in err. */
static inline int tool_conf_load(const gp_conf_opt *opts, void *cfg, int *help, int *layer,
                                 int argc, char **argv, char *err, size_t errlen) {
    if (gp_conf_defaults(opts, cfg, err, errlen) != 0)
        return -1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = 1;
            return 0;
        }
    if (layer)
        *layer = 1;
    if (gp_conf_apply_env(opts, cfg, getenv, err, errlen) != 0)
        return -1;
    if (layer)
        *layer = 2;
    int npos = 0, pos[1];
    if (gp_conf_parse_argv(opts, cfg, argc, argv, 1, pos, 1, &npos, err, errlen) != 0)
        return -1;
    if (npos) {
        snprintf(err, errlen, "unexpected argument \"%s\" (options start with --)", argv[pos[0]]);
        return -1;
    }
    return 0;
}

/* The level named (proto/logger.h's: error 0, warn 1, info 2, debug 3), or -1 with a message
 * in err. */
static inline int tool_log_level(const char *name, char *err, size_t errlen) {
    int level = gp_log_level_parse(name);
    if (level < 0)
        snprintf(err, errlen, "log-level: \"%s\" is not error, warn, info or debug", name);
    return level;
}

/* The start of a tool's main: load(argc, argv, err) and, when it asked for help, usage().
 * -1 to go on; else the exit code: 2 for a bad configuration (said on stderr as "<name>:
 * <why>"), 0 once the help is printed. */
static inline int tool_configure(const char *name, int argc, char **argv,
                                 int (*load)(int argc, char **argv, char *err, size_t errlen),
                                 const int *help, void (*usage)(void)) {
    char err[512] = "";
    if (load(argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n(see --help)\n", name, err);
        return 2;
    }
    if (*help) {
        usage();
        return 0;
    }
    return -1;
}
#endif
