/* pkg.c — the Debian packages of `make deb` (build/deb/: ghostport-bridge, ghostport-house,
 * ghostport-cli) installed and run in a throw-away root.
 *
 * The test process moves into a mount namespace of its own and mounts there an overlayfs over
 * / whose writable layer is a tmpfs, with /proc and /dev; dpkg and the programs run chrooted in
 * it. Nothing they do reaches the real system (the host's dpkg database is checked unchanged),
 * and all of it goes with the namespace when the test process ends, however it ends.
 *
 * install_run_purge: `dpkg -i` of the three .debs, without --force: their Depends (computed by
 * dpkg-shlibdeps) must be met by what is installed. Then each program's --version (the build's
 * own), its man page (man -w; the CLI's rendered), the bash completion and what it completes,
 * the units (their ExecStart the installed binary; systemd-analyze verify, which also looks up
 * their Documentation=man: pages), the ghostport group and user, /etc/ghostport and the
 * conffiles (which pass --check-config); the same after installing them again over themselves
 * (the upgrade path of the maintainer scripts); then a purge that leaves none of it behind.
 * checks_can_fail: the same checks on a root with a file removed and a unit edited report each;
 * a .deb whose Depends cannot be met is refused by dpkg -i.
 * Root only (mounts). `make test` builds the .debs first (make deb). */
#include "../harness/harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <regex.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static void pkg_fini(void);
TestSuite(pkg, .init = h_init, .fini = pkg_fini, .timeout = 120);

static const char *const PKGS[] = {"ghostport-bridge", "ghostport-house", "ghostport-cli"};
static const char *const PROGS[] = {"ghostport-bridge", "ghostport-house", "ghostport"};
#define NPKGS 3

static char g_mnt[PATH_MAX];  /* the tmpfs: upper and work layers, and the root's mount point */
static char g_root[PATH_MAX]; /* the overlay, where the commands are chrooted */

static const char *build_dir(void) {
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

/* The .deb of a package in $BUILD/deb/ (static buffer), or NULL. */
static const char *deb_path(const char *pkg) {
    static char path[PATH_MAX];
    char pat[PATH_MAX];
    snprintf(pat, sizeof pat, "%s/deb/%s_*.deb", build_dir(), pkg);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return NULL;
    int one = g.gl_pathc == 1;
    if (one)
        snprintf(path, sizeof path, "%s", g.gl_pathv[0]);
    globfree(&g);
    return one ? path : NULL;
}

/* Runs argv on the host: its exit code, stdout and stderr into *out (malloc'd). */
static int host_run(char **out, const char *const *argv) {
    return h_run(argv, 60000, out, NULL, NULL);
}

/* Runs `sh -c CMD` chrooted in the root, with a plain environment: its exit code, stdout and
 * stderr into *out (malloc'd; NULL: dropped). */
__attribute__((format(printf, 2, 3))) static int in_root(char **out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    const char *argv[] = {"/usr/bin/env",
                          "-i",
                          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "LC_ALL=C.UTF-8",
                          "HOME=/root",
                          "DEBIAN_FRONTEND=noninteractive",
                          "/usr/sbin/chroot",
                          g_root,
                          "/bin/sh",
                          "-c",
                          cmd,
                          NULL};
    char *o = NULL;
    int rc = h_run(argv, 60000, &o, NULL, NULL);
    if (out)
        *out = o ? o : strdup("");
    else
        free(o);
    return rc;
}

static void mkdir_in(const char *base, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", base, name);
    cr_assert(mkdir(out, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", out, strerror(errno));
}

/* The throw-away root: a mount namespace, a tmpfs, an overlay of / on it, /proc and /dev, and
 * the .debs in its /tmp/debs. */
static void root_setup(void) {
    if (geteuid() != 0)
        cr_skip_test("the packages are installed in a mount namespace of the test's: root only");
    for (int i = 0; i < NPKGS; i++)
        cr_assert(deb_path(PKGS[i]), "no single %s/deb/%s_*.deb: run make deb", build_dir(),
                  PKGS[i]);
    cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
    /* Nothing mounted from here on propagates back to the host's namespace. */
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "make / private: %s",
                 strerror(errno));
    char upper[PATH_MAX], work[PATH_MAX], opts[3 * PATH_MAX + 64], p[PATH_MAX + 64];
    mkdir_in(h_dir(), "pkgroot", g_mnt, sizeof g_mnt);
    cr_assert_eq(mount("gp-pkg", g_mnt, "tmpfs", 0, "mode=0755"), 0, "tmpfs on %s: %s", g_mnt,
                 strerror(errno));
    mkdir_in(g_mnt, "upper", upper, sizeof upper);
    mkdir_in(g_mnt, "work", work, sizeof work);
    mkdir_in(g_mnt, "root", g_root, sizeof g_root);
    snprintf(opts, sizeof opts, "lowerdir=/,upperdir=%s,workdir=%s", upper, work);
    cr_assert_eq(mount("overlay", g_root, "overlay", 0, opts), 0, "overlayfs over / at %s: %s",
                 g_root, strerror(errno));
    snprintf(p, sizeof p, "%s/proc", g_root);
    cr_assert_eq(mount("proc", p, "proc", 0, NULL), 0, "proc: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/dev", g_root);
    cr_assert_eq(mount("/dev", p, NULL, MS_BIND | MS_REC, NULL), 0, "/dev: %s", strerror(errno));
    /* man-db's trigger would index every man page of the system: not in this root. */
    snprintf(p, sizeof p, "%s/var/lib/man-db/auto-update", g_root);
    unlink(p);
    char debs[PATH_MAX];
    mkdir_in(g_root, "tmp/debs", debs, sizeof debs);
    for (int i = 0; i < NPKGS; i++) {
        const char *cp[] = {"/bin/cp", deb_path(PKGS[i]), debs, NULL};
        cr_assert_eq(host_run(NULL, cp), 0, "cp %s %s", deb_path(PKGS[i]), debs);
    }
}

/* Everything under the tmpfs goes with it; the namespace would take it all anyway when the
 * test process exits. */
static void root_teardown(void) {
    if (!g_mnt[0])
        return;
    if (umount2(g_mnt, MNT_DETACH) != 0)
        fprintf(stderr, "pkg: umount %s: %s\n", g_mnt, strerror(errno));
    rmdir(g_mnt);
    g_mnt[0] = g_root[0] = '\0';
}

static void pkg_fini(void) {
    root_teardown();
    h_fini();
}

/* --- the checks: each problem a line in p ------------------------------------------------ */

typedef struct problems {
    char text[16384];
    int n;
} problems;

__attribute__((format(printf, 2, 3))) static void problem(problems *p, const char *fmt, ...) {
    size_t len = strlen(p->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text + len, sizeof p->text - len, fmt, ap);
    va_end(ap);
    len = strlen(p->text);
    if (len + 1 < sizeof p->text)
        strcat(p->text, "\n");
    p->n++;
}

/* `cmd` in the root must exit 0 and print exactly want (want NULL: anything). */
__attribute__((format(printf, 3, 4))) static void expect_out(problems *p, const char *want,
                                                             const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out;
    int rc = in_root(&out, "%s", cmd);
    if (rc != 0)
        problem(p, "`%s` exited %d: %s", cmd, rc, out);
    else if (want && strcmp(out, want) != 0)
        problem(p, "`%s` printed \"%s\", want \"%s\"", cmd, out, want);
    free(out);
}

static int matches(const char *s, const char *re) {
    regex_t r;
    cr_assert_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0, "regex %s", re);
    int ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* What `ghostport-house --config FILE --check-config` needs besides the example file, whose
 * options are all commented out (as tests/integration/deploy.py gives them). */
static const char *check_flags(const char *role) {
    return strcmp(role, "bridge") == 0
               ? "--allow-ws"
               : "--id h1 --secret "
                 "abababababababababababababababababababababababababababababababab "
                 "--bridge ws://127.0.0.1:1/ --upstream http://127.0.0.1:1";
}

static void check_installed(problems *p) {
    char want[512], *out;
    for (int i = 0; i < NPKGS; i++) {
        const char *prog = PROGS[i];
        /* --version: the build's own (its version and commit), as "<prog> X.Y.Z (git ...)". */
        const char *argv[] = {h_bin(prog), "--version", NULL};
        char *built = NULL;
        if (host_run(&built, argv) != 0 || !built)
            problem(p, "%s --version fails on the host", h_bin(prog));
        else if (!matches(built, "^ghostport(-bridge|-house)? [0-9]+\\.[0-9]+\\.[0-9]+ \\(git "
                                 "[^ )]+\\)\n$"))
            problem(p, "%s --version printed \"%s\"", prog, built);
        expect_out(p, built, "%s --version", prog);
        if (strcmp(prog, "ghostport") == 0)
            expect_out(p, built, "ghostport version");
        free(built);
        snprintf(want, sizeof want, "/usr/bin/%s\n", prog);
        expect_out(p, want, "command -v %s", prog);
        snprintf(want, sizeof want, "/usr/share/man/man1/%s.1.gz\n", prog);
        expect_out(p, want, "man -w %s", prog);
    }
    /* The CLI's page has its commands' own help. */
    if (in_root(&out, "MANWIDTH=100 man -P cat ghostport") != 0 || !strstr(out, "COMMANDS") ||
        !strstr(out, "ghostport house add"))
        problem(p, "man ghostport: no COMMANDS section with ghostport house add:\n%.2000s", out);
    free(out);

    /* The completion, loaded as bash-completion would, completes from the installed CLI. */
    static const char COMPLETE[] =
        "bash -c 'source /usr/share/bash-completion/completions/ghostport && "
        "complete -p ghostport >/dev/null && "
        "COMP_WORDS=(ghostport %s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
        "_ghostport; echo \"${COMPREPLY[*]}\"'";
    expect_out(p, "", "test -f /usr/share/bash-completion/completions/ghostport");
    expect_out(p, "add list rm tun disable enable\n", COMPLETE, "house \"\"");
    expect_out(p, "--data --data-binary\n", COMPLETE, "request h1 GET / --d");

    for (int i = 0; i < 2; i++) {
        const char *role = i == 0 ? "bridge" : "house";
        snprintf(want, sizeof want, "/usr/bin/ghostport-%s --config /etc/ghostport/%s.conf\n", role,
                 role);
        expect_out(p, want, "sed -n 's/^ExecStart=//p' /lib/systemd/system/ghostport-%s.service",
                   role);
        expect_out(p, "root:ghostport 750\nroot:ghostport 640\n",
                   "stat -c '%%U:%%G %%a' /etc/ghostport /etc/ghostport/%s.conf", role);
        if (in_root(&out, "dpkg-query -W -f='${Conffiles}' ghostport-%s", role) != 0 ||
            !strstr(out, "/etc/ghostport/") || !strstr(out, role))
            problem(p, "ghostport-%s: no conffile /etc/ghostport/%s.conf: %s", role, role, out);
        free(out);
        snprintf(want, sizeof want, "ghostport-%s: configuration ok\n", role);
        expect_out(p, want, "ghostport-%s --config /etc/ghostport/%s.conf --check-config %s", role,
                   role, check_flags(role));
    }
    /* The units as installed: ExecStart's binary there, the man pages of Documentation=. */
    expect_out(p, "",
               "systemd-analyze verify /lib/systemd/system/ghostport-bridge.service "
               "/lib/systemd/system/ghostport-house.service 2>&1");
    expect_out(p, NULL, "getent group ghostport && getent passwd ghostport");
    expect_out(p, "install ok installed\ninstall ok installed\ninstall ok installed\n",
               "dpkg-query -W -f='${Status}\\n' ghostport-bridge ghostport-house ghostport-cli");
}

/* The files of the three packages, none of which may be left after a purge. */
static const char PURGED[] =
    "for f in /usr/bin/ghostport /usr/bin/ghostport-bridge /usr/bin/ghostport-house "
    "/usr/share/man/man1/ghostport.1.gz /usr/share/man/man1/ghostport-house.1.gz "
    "/usr/share/man/man1/ghostport-bridge.1.gz /usr/share/bash-completion/completions/ghostport "
    "/lib/systemd/system/ghostport-bridge.service /lib/systemd/system/ghostport-house.service "
    "/usr/share/doc/ghostport-bridge /usr/share/doc/ghostport-house /usr/share/doc/ghostport-cli "
    "/etc/ghostport; do [ ! -e $f ] || echo $f; done";

static int install_all(char **out) {
    return in_root(out, "dpkg -i /tmp/debs/*.deb");
}

Test(pkg, install_run_purge) {
    char *before = h_read_file("/var/lib/dpkg/status", NULL);
    cr_assert(before, "no /var/lib/dpkg/status: not a Debian system");
    /* The house's Depends and what its binary loads, for the record (the issue wants it small). */
    const char *dq[] = {"/usr/bin/dpkg-deb", "-f", deb_path("ghostport-house"), "Depends", NULL};
    const char *ldd[] = {"/usr/bin/ldd", h_bin("ghostport-house"), NULL};
    char *deps = NULL, *libs = NULL;
    if (deb_path("ghostport-house")) {
        cr_assert_eq(host_run(&deps, dq), 0, "dpkg-deb -f: %s", deps);
        cr_assert(strstr(deps, "libc6 (>=") && strstr(deps, "libcurl4") && strstr(deps, "adduser"),
                  "ghostport-house Depends, not from dpkg-shlibdeps? %s", deps);
        int n = 1, nlib = 0;
        for (const char *c = deps; *c; c++)
            n += *c == ',';
        if (host_run(&libs, ldd) == 0)
            for (const char *c = libs; *c; c++)
                nlib += *c == '\n';
        fprintf(stderr, "pkg: ghostport-house Depends (%d): %s", n, deps);
        fprintf(stderr, "pkg: ldd %s: %d lines\n", h_bin("ghostport-house"), nlib);
        free(deps);
        free(libs);
    }

    root_setup();
    char *out;
    int rc = install_all(&out);
    cr_assert_eq(rc, 0, "dpkg -i of the three .debs (no --force) exited %d:\n%s", rc, out);
    free(out);
    problems p = {"", 0};
    check_installed(&p);
    cr_assert_eq(p.n, 0, "%d problems with the installed packages:\n%s", p.n, p.text);

    /* Installed again over themselves (the maintainer scripts' upgrade path), all still holds. */
    rc = install_all(&out);
    cr_assert_eq(rc, 0, "dpkg -i over the installed packages exited %d:\n%s", rc, out);
    free(out);
    check_installed(&p);
    cr_assert_eq(p.n, 0, "%d problems after installing again:\n%s", p.n, p.text);

    rc = in_root(&out, "dpkg --purge ghostport-bridge ghostport-house ghostport-cli");
    cr_assert_eq(rc, 0, "dpkg --purge exited %d:\n%s", rc, out);
    free(out);
    cr_assert_eq(in_root(&out, "%s", PURGED), 0);
    cr_assert_str_empty(out, "left after the purge:\n%s", out);
    free(out);
    root_teardown();

    char *after = h_read_file("/var/lib/dpkg/status", NULL);
    cr_assert(after && strcmp(before, after) == 0,
              "the host's dpkg database changed: the install was not contained");
    free(before);
    free(after);
}

Test(pkg, checks_can_fail) {
    root_setup();
    char *out;
    cr_assert_eq(install_all(&out), 0, "dpkg -i: %s", out);
    free(out);
    cr_assert_eq(in_root(NULL, "rm /usr/share/bash-completion/completions/ghostport "
                               "/usr/share/man/man1/ghostport-house.1.gz && "
                               "sed -i 's|^ExecStart=/usr/bin/|ExecStart=/opt/bin/|' "
                               "/lib/systemd/system/ghostport-bridge.service"),
                 0);
    problems p = {"", 0};
    check_installed(&p);
    cr_assert(strstr(p.text, "man -w ghostport-house"), "a missing man page passed:\n%s", p.text);
    cr_assert(strstr(p.text, "completions/ghostport"), "a missing completion passed:\n%s", p.text);
    cr_assert(strstr(p.text, "/opt/bin/ghostport-bridge"), "a wrong ExecStart passed:\n%s", p.text);

    /* A .deb whose Depends nothing installed meets: dpkg -i refuses it (and says why). */
    const char *cli = strrchr(deb_path("ghostport-cli"), '/') + 1;
    int rc = in_root(&out,
                     "set -e; dpkg --purge ghostport-cli; d=$(mktemp -d); "
                     "dpkg-deb -R /tmp/debs/%s $d/x; "
                     "sed -i 's/^Depends: .*/&, ghostport-no-such-package/' $d/x/DEBIAN/control; "
                     "dpkg-deb --root-owner-group -b $d/x $d/unmet.deb >/dev/null; "
                     "dpkg -i $d/unmet.deb",
                     cli);
    cr_assert(rc != 0 && strstr(out, "ghostport-no-such-package"),
              "dpkg -i took a .deb with an unmet Depends (rc=%d):\n%s", rc, out);
    free(out);
}
