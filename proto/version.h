/* version.h — the build's version, "0.1.0 (git abc1234)": VERSION in the Makefile, then
 * `git describe --always --dirty` at build time ("unknown" outside a git checkout, e.g. from
 * a tarball). Defined in the generated $(BUILD)/gen/version.c, which is rewritten only when
 * the text changes and linked into the three programs only: a new commit relinks them, not
 * the libraries or the tests. Printed by --version (gp_conf_print_version, conf.h). */
#ifndef GP_VERSION_H
#define GP_VERSION_H

extern const char gp_version[];

#endif
