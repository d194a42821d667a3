/* harness.c — see harness.h. Test-only I/O: fork/exec of real processes, a blocking hiredis
 * client, plain sockets for the raw WebSocket client. Nothing here sleeps to synchronise:
 * every wait polls a condition with a bound. */
#include "harness.h"
#include "../../bridge/store/rclient.h"
#include "../../bridge/store/tlsrelay.h"
#include "netns.h"

#include "auth.h"
#include "frame.h"
#include "wsframe.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64

/* Weak: the harness also links into programs without Criterion (benchmarks). */
extern const struct criterion_test *const criterion_current_test __attribute__((weak));

static char g_dir[PATH_MAX];
static char g_bindir[PATH_MAX];
static char g_upstream[PATH_MAX];
static h_proc g_procs[MAX_PROCS];
static int g_nprocs;
static int g_redis_port;
static char g_redis_url[1024];
static br_rc *g_rc; /* the harness's own client: one server or a cluster */

/* The harness's own errors end the test as a crash (abort), with every process stopped. */
#define fail(...) h_fatal("harness", -1, __VA_ARGS__)
static int write_all(int fd, const void *p, size_t n);
static char *drain_fd(int fd, size_t *len);

void h_fatal(const char *who, int exit_code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", who);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    h_stop_all();
    if (exit_code < 0)
        abort();
    exit(exit_code);
}

/* snprintf without -Wformat-truncation noise: every path here is far below PATH_MAX. */
static void sfmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sfmt(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

uint64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *env_or(const char *n, const char *d) {
    const char *v = getenv(n);
    return v && *v ? v : d;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path) {
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void mkdir_p(const char *path) {
    char tmp[PATH_MAX];
    sfmt(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    mkdir(tmp, 0755);
}

static void abspath(char *out, size_t cap, const char *p) {
    if (p[0] == '/') {
        sfmt(out, cap, "%s", p);
        return;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        fail("getcwd: %s", strerror(errno));
    sfmt(out, cap, "%s/%s", cwd, p);
}

/* <GP_IT_DIR or $BUILD/it-logs>/<suite>.<test> */
static void test_dir(char *out, size_t cap, const char *category, const char *name) {
    char base[PATH_MAX], rel[PATH_MAX];
    const char *build = env_or("BUILD", "build");
    sfmt(rel, sizeof rel, "%s/it-logs", build);
    abspath(base, sizeof base, env_or("GP_IT_DIR", rel));
    sfmt(out, cap, "%s/%s.%s", base, category, name);
}

void h_init(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0 || gp_auth_init() != 0)
        fail("libsodium init failed");
    const struct criterion_test *t = &criterion_current_test ? criterion_current_test : NULL;
    char d[PATH_MAX];
    if (t)
        test_dir(d, sizeof d, t->category, t->name);
    else
        test_dir(d, sizeof d, "run", "pid");
    sfmt(g_dir, sizeof g_dir, "%s", d);
    rm_rf(g_dir);
    mkdir_p(g_dir);
    char rel[PATH_MAX];
    sfmt(rel, sizeof rel, "%s/bin", env_or("BUILD", "build"));
    abspath(g_bindir, sizeof g_bindir, env_or("GP_BIN_DIR", rel));
    abspath(g_upstream, sizeof g_upstream, env_or("GP_UPSTREAM", "tests/upstream.py"));
    g_nprocs = 0;
    g_redis_port = 0;
    g_redis_url[0] = '\0';
}

/* Sanitizer reports in any process log fail the test (under `make asan` the daemons run
 * instrumented; a report there is a bug even when the behaviour looked right). */
static const char *const SAN_MARKS[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:", NULL};

void h_fini(void) {
    h_stop_all();
    h_netns_cleanup();
    for (int i = 0; i < g_nprocs; i++) {
        for (int k = 0; SAN_MARKS[k]; k++) {
            if (h_log_count_all(&g_procs[i], SAN_MARKS[k]) > 0) {
                fprintf(stderr, "harness: '%s' in %s\n", SAN_MARKS[k], g_procs[i].log);
                br_rc_free(g_rc);
                g_rc = NULL;
                abort();
            }
        }
    }
    br_rc_free(g_rc);
    g_rc = NULL;
}

const char *h_dir(void) {
    return g_dir;
}

const char *h_bin(const char *name) {
    static char path[PATH_MAX + 64];
    sfmt(path, sizeof path, "%s/%s", g_bindir, name);
    return path;
}

/* --- logs on failure (runs in Criterion's runner process) ---------------------------------- */

static void dump_tail(const char *path, int lines) {
    size_t len;
    char *s = h_read_file(path, &len);
    if (!s)
        return;
    size_t start = len;
    int n = 0;
    while (start > 0) {
        if (s[start - 1] == '\n' && ++n > lines)
            break;
        start--;
    }
    fprintf(stderr, "---- %s (last %d lines) ----\n", path, lines);
    fwrite(s + start, 1, len - start, stderr);
    if (len && s[len - 1] != '\n')
        fputc('\n', stderr);
    free(s);
}

static void after_test(struct criterion_test_stats *st) {
    if (!st || !st->test)
        return;
    char d[PATH_MAX];
    test_dir(d, sizeof d, st->test->category, st->test->name);
    struct stat sb;
    if (stat(d, &sb) != 0)
        return;
    if (st->test_status == CR_STATUS_PASSED && !getenv("GP_IT_KEEP")) {
        rm_rf(d);
        return;
    }
    if (st->test_status == CR_STATUS_PASSED)
        return;
    DIR *dir = opendir(d);
    if (!dir)
        return;
    struct dirent *e;
    fprintf(stderr, "==== %s::%s failed; logs in %s ====\n", st->test->category, st->test->name, d);
    while ((e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".log") == 0) {
            char p[PATH_MAX + 256];
            sfmt(p, sizeof p, "%s/%s", d, e->d_name);
            dump_tail(p, 40);
        }
    }
    closedir(dir);
}

ReportHook(POST_FINI)(struct criterion_test_stats *st) {
    after_test(st);
}

/* --- ports and processes ------------------------------------------------------------------- */

int h_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        fail("bind 127.0.0.1:0: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

h_proc *h_spawn(const char *name, char *const argv[]) {
    if (g_nprocs >= MAX_PROCS)
        fail("too many processes");
    h_proc *p = &g_procs[g_nprocs++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    sfmt(p->log, sizeof p->log, "%s/%s.log", g_dir, name);
    int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fail("open %s: %s", p->log, strerror(errno));
    char line[4096];
    int n = snprintf(line, sizeof line, "=== harness: start");
    for (int i = 0; argv[i] && n < (int)sizeof line - 2; i++) {
        /* Passwords stay out of logs, ours included: Redis URLs masked, -a/--requirepass
         * values hidden (the tests grep these logs for leaks). */
        char shown[1024];
        int secret = i > 0 && (!strcmp(argv[i - 1], "--requirepass") ||
                               !strcmp(argv[i - 1], "--masterauth") || !strcmp(argv[i - 1], "-a"));
        if (secret)
            snprintf(shown, sizeof shown, "***");
        else if (strstr(argv[i], "redis://") || strstr(argv[i], "rediss://"))
            gp_rurl_redact(argv[i], shown, sizeof shown);
        else
            snprintf(shown, sizeof shown, "%s", argv[i]);
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", shown);
    }
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(fd, line, (size_t)n) < 0)
        fail("write %s", p->log);
    p->log_off = file_size(p->log);
    /* Into the namespace the test chose for it (netns.h), if any. */
    pid_t pid = h_fork_exec(argv, -1, fd, fd, h_netns_spawn_target());
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    close(fd);
    p->pid = pid;
    return p;
}

pid_t h_fork_exec(char *const argv[], int in, int out, int err, const char *ns) {
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Never outlive the test, even when it crashes before its teardown. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (in < 0)
        in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (ns) {
        char nsp[128];
        snprintf(nsp, sizeof nsp, "/run/netns/%s", ns);
        int nfd = open(nsp, O_RDONLY);
        if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0) {
            dprintf(2, "harness: setns %s: %s\n", ns, strerror(errno));
            _exit(127);
        }
    }
    /* Criterion's pipes must not stay open in our children. */
    for (int i = 3; i < 1024; i++)
        close(i);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int h_capture(char *const argv[], int timeout_ms, char **out) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = h_fork_exec(argv, -1, pfd[1], pfd[1], NULL);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return -1;
    }
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int st = -1, done = 0;
    while (!done) {
        ssize_t r = buf ? read(pfd[0], buf + len, cap - 1 - len) : -1;
        if (r > 0) {
            len += (size_t)r;
            if (len + 1 == cap) {
                char *nb = realloc(buf, cap * 2);
                if (nb)
                    buf = nb, cap *= 2;
            }
            continue;
        }
        int ws;
        pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) {
            while (buf && (r = read(pfd[0], buf + len, cap - 1 - len)) > 0)
                len += (size_t)r;
            st = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
            done = 1;
        } else if (h_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            done = 1;
        } else {
            usleep(2000);
        }
    }
    close(pfd[0]);
    if (buf)
        buf[len] = '\0';
    if (out)
        *out = buf;
    else
        free(buf);
    return st;
}

int h_alive(h_proc *p) {
    if (!p || p->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        p->status = st;
        p->pid = 0;
        return 0;
    }
    return 1;
}

static int reap_within(h_proc *p, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    do {
        if (!h_alive(p))
            return 1;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    } while (h_now_ms() < end);
    return !h_alive(p);
}

int h_stop(h_proc *p) {
    if (!h_alive(p))
        return p ? -1 : -1;
    kill(p->pid, SIGTERM);
    if (!reap_within(p, 5000)) {
        fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for 5 s: SIGKILL\n", p->name,
                (int)p->pid);
        kill(p->pid, SIGKILL);
        int st;
        waitpid(p->pid, &st, 0);
        p->status = st;
        p->pid = 0;
    }
    return p->status;
}

void h_kill9(h_proc *p) {
    if (!h_alive(p))
        return;
    kill(p->pid, SIGKILL);
    int st;
    waitpid(p->pid, &st, 0);
    p->status = st;
    p->pid = 0;
}

void h_stop_all(void) {
    /* Newest first: houses before bridges before Redis. */
    for (int i = g_nprocs - 1; i >= 0; i--)
        if (g_procs[i].pid > 0)
            kill(g_procs[i].pid, SIGTERM);
    for (int i = g_nprocs - 1; i >= 0; i--)
        if (g_procs[i].pid > 0)
            h_stop(&g_procs[i]);
}

/* --- conditions ---------------------------------------------------------------------------- */

int h_wait(int (*pred)(void *), void *ud, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (pred(ud))
            return 1;
        if (h_now_ms() >= end)
            return 0;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int port_open(void *ud) {
    int port = *(int *)ud;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int h_wait_port(int port, int timeout_ms) {
    return h_wait(port_open, &port, timeout_ms);
}

char *h_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 8192, n = 0;
    char *s = malloc(cap + 1);
    size_t r;
    while (s && (r = fread(s + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *t = realloc(s, cap * 2 + 1);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t;
            cap *= 2;
        }
    }
    fclose(f);
    if (!s)
        return NULL;
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static int count_from(const h_proc *p, const char *needle, long off) {
    size_t len;
    char *s = h_read_file(p->log, &len);
    if (!s)
        return 0;
    int n = 0;
    size_t nl = strlen(needle);
    if (off < 0 || (size_t)off > len)
        off = 0;
    for (const char *q = s + off; (q = memmem(q, len - (size_t)(q - s), needle, nl)); q += nl)
        n++;
    free(s);
    return n;
}

int h_log_count(const h_proc *p, const char *needle) {
    return count_from(p, needle, p->log_off);
}

int h_log_count_all(const h_proc *p, const char *needle) {
    return count_from(p, needle, 0);
}

struct logw {
    const h_proc *p;
    const char *needle;
    int n;
};

static int log_has(void *ud) {
    struct logw *w = ud;
    return h_log_count(w->p, w->needle) >= w->n;
}

int h_wait_log_n(const h_proc *p, const char *needle, int n, int timeout_ms) {
    struct logw w = {p, needle, n};
    return h_wait(log_has, &w, timeout_ms);
}

int h_wait_log(const h_proc *p, const char *needle, int timeout_ms) {
    return h_wait_log_n(p, needle, 1, timeout_ms);
}

/* --- Redis --------------------------------------------------------------------------------- */

/* GP_TEST_REDIS (harness.h): how Redis is started and reached. Parsed once per process. */
static struct {
    int parsed, auth, tls, mtls;
    char acl[PATH_MAX];         /* acl=FILE: ACL SETUSER lines loaded after start */
    char user[128], upass[256]; /* user=NAME: the programs' user and its password */
    char pass[80];              /* requirepass: the default user's (the harness's own) */
    char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16]; /* made per test */
} g_mode;

static void mode_parse(void) {
    if (g_mode.parsed)
        return;
    g_mode.parsed = 1;
    const char *v = getenv("GP_TEST_REDIS");
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", v ? v : "");
    for (char *save = NULL, *w = strtok_r(buf, "+,", &save); w; w = strtok_r(NULL, "+,", &save)) {
        if (!strcmp(w, "plain"))
            continue;
        else if (!strcmp(w, "auth"))
            g_mode.auth = 1;
        else if (!strcmp(w, "tls"))
            g_mode.tls = 1;
        else if (!strcmp(w, "mtls"))
            g_mode.tls = g_mode.mtls = 1;
        else if (!strncmp(w, "acl=", 4))
            abspath(g_mode.acl, sizeof g_mode.acl, w + 4), g_mode.auth = 1;
        else if (!strncmp(w, "user=", 5))
            snprintf(g_mode.user, sizeof g_mode.user, "%s", w + 5), g_mode.auth = 1;
        else
            fail("GP_TEST_REDIS: unknown word '%s' (want auth, tls, mtls, acl=FILE, user=NAME, "
                 "joined "
                 "by '+')",
                 w);
    }
    if (g_mode.auth) {
        /* '@' and '/' in it: every program must percent-decode the URL's password. */
        uint8_t r[12];
        char hex[25];
        randombytes_buf(r, sizeof r);
        sodium_bin2hex(hex, sizeof hex, r, sizeof r);
        snprintf(g_mode.pass, sizeof g_mode.pass, "gp@t/%s", hex);
    }
}

void h_redis_mode_set(const char *spec) {
    memset(&g_mode, 0, sizeof g_mode);
    setenv("GP_TEST_REDIS", spec, 1);
    mode_parse();
}

const char *h_redis_mode(void) {
    mode_parse();
    static char m[64];
    snprintf(m, sizeof m, "%s%s%s%s", g_mode.auth ? "auth" : "plain",
             g_mode.mtls  ? "+mtls"
             : g_mode.tls ? "+tls"
                          : "",
             g_mode.acl[0] ? "+acl" : "", g_mode.user[0] ? "+user" : "");
    return m;
}

const char *h_redis_password(void) {
    mode_parse();
    return g_mode.auth ? g_mode.pass : NULL;
}

/* Certificates for a TLS Redis, made with openssl in the test directory: a CA and a
 * server certificate for 127.0.0.1, ::1 and localhost. The CA goes to every program through
 * GP_REDIS_CA_FILE (the bridge's and the CLI's --redis-ca-file). */
static void make_certs(void) {
    if (g_mode.ca[0] && access(g_mode.ca, R_OK) == 0)
        return;
    char cmd[PATH_MAX + 1024];
    sfmt(g_mode.ca, sizeof g_mode.ca, "%s/redis-ca.pem", g_dir);
    sfmt(g_mode.cert, sizeof g_mode.cert, "%s/redis-cert.pem", g_dir);
    sfmt(g_mode.key, sizeof g_mode.key, "%s/redis-key.pem", g_dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && (openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout redis-ca.key -out redis-ca.pem -days 2 -subj /CN=gp-test-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
             "redis-key.pem -out redis.csr -subj /CN=localhost && "
             "printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\\n' >redis.ext && "
             "openssl x509 -req -in redis.csr -CA redis-ca.pem -CAkey redis-ca.key "
             "-CAcreateserial -out redis-cert.pem -days 2 -extfile redis.ext) >openssl.log 2>&1",
             g_dir);
    if (system(cmd) != 0)
        fail("openssl could not make the test certificates (see %s/openssl.log)", g_dir);
    char err[512];
    /* mtls: Redis wants a client certificate; the server's own (signed by the same CA, no
     * extended key usage) serves as the programs' and the harness's. */
    if (gp_tlsrelay_config(g_mode.ca, g_mode.mtls ? g_mode.cert : NULL,
                           g_mode.mtls ? g_mode.key : NULL, err, sizeof err) != 0)
        fail("%s", err);
    setenv("GP_REDIS_CA_FILE", g_mode.ca, 1);
    if (g_mode.mtls) {
        setenv("GP_REDIS_CERT_FILE", g_mode.cert, 1);
        setenv("GP_REDIS_KEY_FILE", g_mode.key, 1);
    }
}

/* The harness's own address of a node: the default user (all rights), TLS as configured. */
static void admin_url(gp_rurl *u, int port) {
    memset(u, 0, sizeof *u);
    snprintf(u->host, sizeof u->host, "127.0.0.1");
    u->port = port;
    u->tls = g_mode.tls;
    if (g_mode.auth) {
        u->has_pass = 1;
        snprintf(u->pass, sizeof u->pass, "%s", g_mode.pass);
    }
}

struct br_rc *h_redis_client(int port, int timeout_ms) {
    mode_parse();
    gp_rurl u;
    admin_url(&u, port);
    return br_rc_new_url(&u, timeout_ms);
}

redisContext *h_redis_connect(int port, int timeout_ms, char *err, size_t errlen) {
    mode_parse();
    gp_rurl u;
    int af;
    admin_url(&u, port);
    return br_rc_dial(&u, "127.0.0.1", port, timeout_ms, err, errlen, &af);
}

static void pct(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 4 < cap; s++)
        o += (size_t)(isalnum((unsigned char)*s) || strchr("-._~", *s)
                          ? snprintf(out + o, cap - o, "%c", *s)
                          : snprintf(out + o, cap - o, "%%%02X", (unsigned char)*s));
    out[o] = '\0';
}

/* What the programs get: redis[s]://[user:password@]127.0.0.1:PORT/0. */
static void set_url(int port) {
    char cred[1200] = "", epw[600];
    if (g_mode.user[0]) {
        char eu[400];
        pct(g_mode.user, eu, sizeof eu);
        pct(g_mode.upass, epw, sizeof epw);
        snprintf(cred, sizeof cred, "%s:%s@", eu, epw);
    } else if (g_mode.auth) {
        pct(g_mode.pass, epw, sizeof epw);
        snprintf(cred, sizeof cred, ":%s@", epw);
    }
    snprintf(g_redis_url, sizeof g_redis_url, "%s://%s127.0.0.1:%d/0",
             g_mode.tls ? "rediss" : "redis", cred, port);
}

/* acl=FILE: every "user NAME rules..." line (Redis's ACL file format; # comments) becomes
 * ACL SETUSER NAME rules... on the node; user=NAME takes its password from the first
 * ">password" rule of its line. */
static void load_acl(int port) {
    if (!g_mode.acl[0])
        return;
    FILE *f = fopen(g_mode.acl, "r");
    if (!f)
        fail("GP_TEST_REDIS acl=%s: %s", g_mode.acl, strerror(errno));
    char err[512];
    redisContext *c = h_redis_connect(port, 5000, err, sizeof err);
    if (!c)
        fail("acl: %s", err);
    char line[4096];
    int found = !g_mode.user[0];
    while (fgets(line, sizeof line, f)) {
        const char *argv[128] = {"ACL", "SETUSER"};
        int n = 2;
        char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
        if (!w || w[0] == '#' || strcmp(w, "user") != 0)
            continue;
        for (w = strtok_r(NULL, " \t\r\n", &save); w && n < 127;
             w = strtok_r(NULL, " \t\r\n", &save))
            argv[n++] = w;
        /* The harness itself is the default user: a file that turns it off (as the shipped
         * deploy/redis-users.acl does) would lock the suites out of their own Redis. */
        if (n < 3 || !strcmp(argv[2], "default"))
            continue;
        if (g_mode.user[0] && !strcmp(argv[2], g_mode.user)) {
            found = 1;
            for (int i = 3; i < n; i++)
                if (argv[i][0] == '>' && !g_mode.upass[0])
                    snprintf(g_mode.upass, sizeof g_mode.upass, "%s", argv[i] + 1);
        }
        redisReply *r = redisCommandArgv(c, n, argv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR)
            fail("acl: ACL SETUSER %s: %s", argv[2], r ? r->str : c->errstr);
        freeReplyObject(r);
    }
    fclose(f);
    redisFree(c);
    if (!found)
        fail("GP_TEST_REDIS: user=%s is not in %s", g_mode.user, g_mode.acl);
}

static int redis_pong(void *ud) {
    int port = *(int *)ud;
    char err[512];
    redisContext *c = h_redis_connect(port, 200, err, sizeof err);
    int ok = 0;
    if (c) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
        redisFree(c);
    }
    return ok;
}

static const char *g_aclfile; /* --aclfile for the next redis_start (h_redis_start_acl) */

/* redis-server on a loopback port with its files in the test directory. aof: every write
 * is appended and fsync'd before Redis acknowledges it, so a kill -9 loses nothing that was
 * acknowledged and a restart with the same --dir reloads it. cluster: a cluster node, with
 * its own directory (nodes.conf, AOF) and log. */
static h_proc *redis_start(int port, int aof, int cluster) {
    /* A cluster node also needs a bus port; Redis would take port + 10000 unless told. */
    for (int tries = 0; !port || (cluster && port > 55000 && tries < 200); tries++)
        port = h_free_port();
    char ports[16], bus[16], dir[PATH_MAX + 32], name[32];
    snprintf(bus, sizeof bus, "%d", h_free_port());
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(dir, sizeof dir, "%s", g_dir);
    snprintf(name, sizeof name, "redis");
    if (cluster) {
        sfmt(dir, sizeof dir, "%s/redis-%d", g_dir, port);
        mkdir(dir, 0755);
        snprintf(name, sizeof name, "redis-%d", port);
    }
    mode_parse();
    if (g_mode.tls)
        make_certs();
    const char *argv[48] = {env_or("GP_REDIS_SERVER", "redis-server"),
                            "--port",
                            g_mode.tls ? "0" : ports,
                            "--bind",
                            "127.0.0.1",
                            "--save",
                            "",
                            "--dir",
                            dir,
                            "--daemonize",
                            "no",
                            "--protected-mode",
                            "yes",
                            "--appendonly",
                            aof ? "yes" : "no"};
    int n = 15;
    if (aof) {
        argv[n++] = "--appendfsync";
        argv[n++] = "always";
    }
    if (g_mode.auth) {
        argv[n++] = "--requirepass";
        argv[n++] = g_mode.pass;
        argv[n++] = "--masterauth"; /* replicas, and the cluster's own links */
        argv[n++] = g_mode.pass;
    }
    if (g_mode.tls) {
        const char *t[] = {"--tls-port",         ports,
                           "--tls-cert-file",    g_mode.cert,
                           "--tls-key-file",     g_mode.key,
                           "--tls-ca-cert-file", g_mode.ca,
                           "--tls-auth-clients", g_mode.mtls ? "yes" : "no",
                           "--tls-replication",  "yes"};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            argv[n++] = t[i];
        if (cluster) {
            argv[n++] = "--tls-cluster";
            argv[n++] = "yes";
        }
    }
    if (cluster) {
        argv[n++] = "--cluster-enabled";
        argv[n++] = "yes";
        argv[n++] = "--cluster-node-timeout";
        argv[n++] = "3000";
        argv[n++] = "--cluster-port";
        argv[n++] = bus;
    }
    if (g_aclfile) {
        argv[n++] = "--aclfile";
        argv[n++] = g_aclfile;
    }
    argv[n] = NULL;
    h_proc *p = h_spawn(name, (char *const *)argv);
    if (!h_wait(redis_pong, &port, 10000))
        fail("redis-server on port %d did not answer PING within 10 s (see %s)", port, p->log);
    load_acl(port);
    if (!cluster || !g_redis_port) {
        g_redis_port = port;
        set_url(port);
        br_rc_free(g_rc);
        g_rc = NULL;
    }
    return p;
}

static int cluster_ok(void *ud) {
    const int *ports = ud;
    for (int i = 0; ports[i]; i++) {
        char err[512];
        redisContext *c = h_redis_connect(ports[i], 1000, err, sizeof err);
        redisReply *r = c ? redisCommand(c, "CLUSTER INFO") : NULL;
        int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
        if (!ok)
            return 0;
    }
    return 1;
}

void h_redis_cluster_start(int n, int aof, h_proc **out) {
    int ports[9] = {0};
    if (n < 1 || n > 8)
        fail("cluster of %d nodes", n);
    g_redis_port = 0;
    for (int i = 0; i < n; i++) {
        out[i] = redis_start(0, aof, 1);
        ports[i] = atoi(strrchr(out[i]->name, '-') + 1); /* named redis-PORT */
    }
    const char *argv[40] = {"redis-cli", "--cluster", "create"};
    char addrs[8][32];
    int k = 3;
    if (g_mode.auth) {
        argv[k++] = "-a";
        argv[k++] = g_mode.pass;
        argv[k++] = "--no-auth-warning";
    }
    if (g_mode.tls) {
        argv[k++] = "--tls";
        argv[k++] = "--cacert";
        argv[k++] = g_mode.ca;
    }
    for (int i = 0; i < n; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", ports[i]);
        argv[k++] = addrs[i];
    }
    argv[k++] = "--cluster-replicas";
    argv[k++] = "0";
    argv[k++] = "--cluster-yes";
    argv[k] = NULL;
    h_proc *cli = h_spawn("cluster-create", (char *const *)argv);
    uint64_t end = h_now_ms() + 20000;
    while (h_alive(cli) && h_now_ms() < end) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (h_alive(cli) || !WIFEXITED(cli->status) || WEXITSTATUS(cli->status) != 0)
        fail("redis-cli --cluster create failed (see %s)", cli->log);
    if (!h_wait(cluster_ok, ports, 20000))
        fail("the cluster did not reach cluster_state:ok within 20 s");
}

h_proc *h_redis_start(int port) {
    return redis_start(port, 0, 0);
}

h_proc *h_redis_start_aof(int port) {
    return redis_start(port, 1, 0);
}

h_proc *h_redis_start_acl(int port, const char *aclfile) {
    g_aclfile = aclfile;
    h_proc *p = redis_start(port, 0, 0);
    g_aclfile = NULL;
    return p;
}

int h_redis_port(void) {
    return g_redis_port;
}

const char *h_redis_url(void) {
    return g_redis_url;
}

br_rc *h_redis(void) {
    if (!g_rc) {
        gp_rurl u;
        admin_url(&u, g_redis_port);
        if (!(g_rc = br_rc_new_url(&u, 5000)))
            fail("out of memory");
    }
    return g_rc;
}

/* A command as hiredis formats it (RESP: *N then $len args), sent through br_rc. */
static redisReply *cmd_resp(const char *resp, long len) {
    const char *argv[64];
    size_t lens[64];
    int argc = 0;
    const char *p = resp, *end = resp + len;
    long n = *p == '*' ? strtol(p + 1, NULL, 10) : 0;
    p = strchr(p, '\n') + 1;
    for (long i = 0; i < n && i < 64 && p < end; i++) {
        size_t l = strtoul(p + 1, NULL, 10);
        p = strchr(p, '\n') + 1;
        argv[argc] = p;
        lens[argc++] = l;
        p += l + 2;
    }
    return br_rc_cmdv(h_redis(), argc, argv, lens);
}

static redisReply *vcmd(const char *fmt, va_list ap) {
    char *resp = NULL;
    int len = redisvFormatCommand(&resp, fmt, ap);
    if (len < 0)
        fail("cannot format redis command '%s'", fmt);
    redisReply *r = cmd_resp(resp, len);
    redisFreeCommand(resp);
    return r;
}

/* vcmd, failing the test on a NULL reply. */
static redisReply *vcmd_or_fail(const char *fmt, va_list ap) {
    redisReply *r = vcmd(fmt, ap);
    if (!r)
        fail("redis command '%s' failed: %s", fmt, br_rc_error(h_redis()));
    return r;
}

redisReply *h_cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd_or_fail(fmt, ap);
    va_end(ap);
    return r;
}

redisReply *h_cmdv(int argc, const char **argv, const size_t *lens) {
    redisReply *r = br_rc_cmdv(h_redis(), argc, argv, lens);
    if (!r)
        fail("redis command %s failed: %s", argv[0], br_rc_error(h_redis()));
    return r;
}

long long h_int(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd_or_fail(fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

int h_stream_keys(const char *house, long long *entries, long long *bytes) {
    int found = 0;
    *entries = *bytes = 0;
    for (int dir = 0; dir < 2; dir++) {
        redisReply *r = h_cmd("KEYS gp:{%s}:%s:*", house, dir ? "sout" : "sin");
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            found++;
            *entries += h_int("XLEN %s", r->element[i]->str);
            *bytes += h_int("MEMORY USAGE %s SAMPLES 0", r->element[i]->str);
        }
        freeReplyObject(r);
    }
    return found;
}

static int house_state(const char *house) {
    char key[256];
    snprintf(key, sizeof key, "gp:{%s}:state", house);
    const char *argv[] = {"HGET", key, "bridge"};
    /* NULL while Redis restarts in this test: br_rc reconnects next time. */
    redisReply *r = br_rc_cmdv(h_redis(), 3, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_STRING && r->len > 0;
    if (r)
        freeReplyObject(r);
    return ok;
}

static int connected_p(void *ud) {
    return g_redis_port && house_state(ud);
}

static int offline_p(void *ud) {
    return !house_state(ud);
}

int h_wait_connected(const char *house, int timeout_ms) {
    return h_wait(connected_p, (void *)house, timeout_ms);
}

int h_wait_offline(const char *house, int timeout_ms) {
    return h_wait(offline_p, (void *)house, timeout_ms);
}

/* --- Ghost Port processes ------------------------------------------------------------------ */

/* The bridge's Redis is ready (the line /readyz turns 200 with), or refused for a reason that
 * retries will not change soon, or not there at all (a test that starts a bridge before its
 * Redis, or with Redis down, sees one of the last two at once and is not held up). */
static int redis_settled(void *ud) {
    const h_proc *p = ud;
    return h_log_count(p, "event=redis_ready") || h_log_count(p, "event=redis_auth_failed") ||
           h_log_count(p, "event=redis_tls_failed") || h_log_count(p, "event=redis_down") ||
           h_log_count(p, "event=redis_connect_failed");
}

h_proc *h_bridge_start(int port, int *out_port, const char *const *extra, int wait) {
    if (!port)
        port = h_free_port();
    if (out_port)
        *out_port = port;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    const char *argv[64] = {h_bin("ghostport-bridge"),
                            "--allow-ws",
                            "--bind",
                            "127.0.0.1",
                            "--listen",
                            NULL,
                            "--redis",
                            g_redis_url,
                            "--log-level",
                            "debug"};
    int n = 10;
    if (!g_redis_url[0]) { /* Redis not started yet: the caller passes --redis in extra */
        argv[6] = "--log-level";
        argv[7] = "debug";
        n = 8;
    }
    /* argv only has to live until h_spawn's exec; h_bin's buffer is reused, so copy it. */
    char bin[PATH_MAX + 64];
    snprintf(bin, sizeof bin, "%s", argv[0]);
    argv[0] = bin;
    argv[5] = ports;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* bridge.log for the first bridge of a test, bridge2.log ... for the others; a restart
     * on the same port appends to the same log. */
    static int seen[8], nseen;
    int k = 0;
    while (k < nseen && seen[k] != port)
        k++;
    if (k == nseen && nseen < 8)
        seen[nseen++] = port;
    char name[32];
    snprintf(name, sizeof name, k ? "bridge%d" : "bridge", k + 1);
    h_proc *p = h_spawn(name, (char *const *)argv);
    if (wait && !h_wait_port(port, 10000))
        fail("bridge did not accept connections on %d within 10 s (see %s)", port, p->log);
    /* The port opens before the bridge's first Redis connection is up (a few round trips
     * more with a password or TLS, and a scheduling race even in plain mode): a test's first
     * request could meet 503 redis_unavailable. Wait (softly: a test may start a bridge whose
     * Redis is down or slow on purpose) until its Redis is settled, in every mode. */
    if (wait && g_redis_url[0])
        h_wait(redis_settled, p, 5000);
    return p;
}

h_proc *h_house_start(const char *id, const char *secret_hex, int bridge_port,
                      const char *upstream_url, const char *const *extra) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", bridge_port);
    return h_house_start_url(id, secret_hex, url, upstream_url, extra);
}

h_proc *h_house_start_url(const char *id, const char *secret_hex, const char *url,
                          const char *upstream_url, const char *const *extra) {
    char bin[PATH_MAX + 64];
    snprintf(bin, sizeof bin, "%s", h_bin("ghostport-house"));
    const char *argv[64] = {bin, "--id",       id,           "--secret",    secret_hex, "--bridge",
                            url, "--upstream", upstream_url, "--log-level", "debug"};
    int n = 11;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char name[48];
    snprintf(name, sizeof name, "house-%s", id);
    return h_spawn(name, (char *const *)argv);
}

h_proc *h_loadhouses_start(const char *bridge_url, int count, const char *const *extra) {
    char bin[PATH_MAX + 64], n_text[16];
    snprintf(bin, sizeof bin, "%s", h_bin("gp-loadhouses"));
    snprintf(n_text, sizeof n_text, "%d", count);
    const char *argv[32] = {bin,           "--bridge", bridge_url, "--redis",
                            h_redis_url(), "--count",  n_text,     "--register"};
    int n = 8;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return h_spawn("loadhouses", (char *const *)argv);
}

struct upw {
    h_proc *p;
    int port;
};

static int upstream_ready(void *ud) {
    struct upw *w = ud;
    size_t len;
    char *s = h_read_file(w->p->log, &len);
    if (!s)
        return 0;
    const char *q = len > (size_t)w->p->log_off ? strstr(s + w->p->log_off, "listening ") : NULL;
    if (q)
        w->port = atoi(q + 10);
    free(s);
    return w->port > 0;
}

h_proc *h_upstream_start(int *out_port) {
    char *argv[] = {"python3", "-u", g_upstream, "--port", "0", NULL};
    static int nu;
    char name[32];
    if (nu++)
        snprintf(name, sizeof name, "upstream%d", nu);
    else
        snprintf(name, sizeof name, "upstream");
    struct upw w = {h_spawn(name, argv), 0};
    if (!h_wait(upstream_ready, &w, 10000))
        fail("upstream did not print 'listening' within 10 s (see %s)", w.p->log);
    if (!h_wait_port(w.port, 5000))
        fail("upstream port %d not accepting", w.port);
    if (out_port)
        *out_port = w.port;
    return w.p;
}

void h_register(const char *house, char secret_hex[65]) {
    uint8_t secret[32];
    randombytes_buf(secret, sizeof secret);
    gp_secret_to_hex(secret, secret_hex);
    redisReply *r = h_cmd("HSET gp:{%s}:house secret %s labels {} created %llu", house, secret_hex,
                          (unsigned long long)time(NULL) * 1000ull);
    freeReplyObject(r);
    r = h_cmd("SADD gp:houses %s", house);
    freeReplyObject(r);
}

static char *drain_fd(int fd, size_t *len) {
    size_t cap = 4096, n = 0;
    char *s = malloc(cap + 1);
    ssize_t r;
    while (s && (r = read(fd, s + n, cap - n)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n += (size_t)r;
        if (n == cap) {
            char *t = realloc(s, cap * 2 + 1);
            if (!t)
                break;
            s = t;
            cap *= 2;
        }
    }
    if (s)
        s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    char *s = fd >= 0 ? drain_fd(fd, len) : strdup("");
    if (fd >= 0)
        close(fd);
    return s;
}

int h_run(const char *const *argv, int timeout_ms, char **out, size_t *out_len, char **err) {
    return h_run_in(argv, "/dev/null", timeout_ms, out, out_len, err);
}

int h_run_in(const char *const *argv, const char *in, int timeout_ms, char **out, size_t *out_len,
             char **err) {
    char outp[PATH_MAX + 32], errp[PATH_MAX + 32];
    static int nrun;
    sfmt(outp, sizeof outp, "%s/run%d.out", g_dir, nrun);
    sfmt(errp, sizeof errp, "%s/run%d.err", g_dir, nrun++);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = err ? open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644) : o;
        int fi = open(in, O_RDONLY);
        if (o < 0 || e < 0 || fi < 0)
            _exit(126);
        dup2(fi, 0);
        dup2(o, 1);
        dup2(e, 2);
        for (int i = 3; i < 1024; i++)
            close(i);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (out)
        *out = slurp(outp, out_len);
    if (err)
        *err = slurp(errp, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int h_cli(char **out, size_t *out_len, char **err, const char *const *args) {
    const char *argv[64] = {h_bin("ghostport"), "--redis", g_redis_url};
    int n = 3;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    /* Its own stderr file even when the caller does not want it: stdout stays clean. */
    char *e = NULL;
    int rc = h_run(argv, 120000, out, out_len, &e);
    if (err)
        *err = e;
    else
        free(e);
    return rc;
}

/* --- requests ------------------------------------------------------------------------------ */

const char *h_xadd(const char *house, const h_field *f, size_t n) {
    static char id[64];
    const char *argv[80];
    size_t lens[80];
    char key[300];
    snprintf(key, sizeof key, "gp:{%s}:req", house);
    int c = 0;
    argv[c] = "XADD", lens[c++] = 4;
    argv[c] = key, lens[c++] = strlen(key);
    argv[c] = "MAXLEN", lens[c++] = 6;
    argv[c] = "~", lens[c++] = 1;
    argv[c] = "10000", lens[c++] = 5;
    argv[c] = "*", lens[c++] = 1;
    for (size_t i = 0; i < n && c < 78; i++) {
        argv[c] = f[i].name, lens[c++] = strlen(f[i].name);
        argv[c] = f[i].val ? f[i].val : "";
        lens[c++] = f[i].len == (size_t)-1 ? strlen(f[i].val ? f[i].val : "") : f[i].len;
    }
    redisReply *r = h_cmdv(c, argv, lens);
    if (r->type != REDIS_REPLY_STRING)
        fail("XADD %s: %s", key, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    snprintf(id, sizeof id, "%s", r->str);
    freeReplyObject(r);
    return id;
}

const char *h_request(const char *house, const char *frame_id, const char *method, const char *path,
                      const char *headers, const void *body, size_t blen, unsigned timeout_ms) {
    char reply[256], tmo[16];
    snprintf(reply, sizeof reply, "gp:rep:%s", frame_id);
    snprintf(tmo, sizeof tmo, "%u", timeout_ms);
    h_field f[8];
    size_t n = 0;
    f[n++] = (h_field){"id", frame_id, (size_t)-1};
    f[n++] = (h_field){"method", method, (size_t)-1};
    f[n++] = (h_field){"path", path, (size_t)-1};
    if (headers)
        f[n++] = (h_field){"headers", headers, (size_t)-1};
    if (body)
        f[n++] = (h_field){"body", body, blen};
    if (timeout_ms)
        f[n++] = (h_field){"timeout_ms", tmo, (size_t)-1};
    f[n++] = (h_field){"reply", reply, (size_t)-1};
    return h_xadd(house, f, n);
}

static const redisReply *fv_get(const redisReply *fv, const char *name) {
    if (!fv || fv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2)
        if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, name) == 0)
            return fv->element[i + 1];
    return NULL;
}

static char *dupn(const redisReply *v) {
    if (!v || v->type != REDIS_REPLY_STRING)
        return NULL;
    char *s = malloc(v->len + 1);
    memcpy(s, v->str, v->len);
    s[v->len] = '\0';
    return s;
}

int h_wait_reply(const char *frame_id, const char *key, int timeout_ms, h_reply *r) {
    memset(r, 0, sizeof *r);
    char k[300];
    if (!key) {
        snprintf(k, sizeof k, "gp:rep:%s", frame_id);
        key = k;
    }
    char last[64] = "0-0";
    size_t cap = 0;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (!r->final) {
        uint64_t now = h_now_ms();
        if (now >= end)
            break;
        char block[24];
        snprintf(block, sizeof block, "%llu", (unsigned long long)(end - now));
        br_rc_set_timeout(h_redis(), (int)(end - now) + 5000);
        const char *argv[] = {"XREAD", "COUNT", "1000", "BLOCK", block, "STREAMS", key, last};
        redisReply *x = br_rc_cmdv(h_redis(), 8, argv, NULL);
        br_rc_set_timeout(h_redis(), 5000);
        if (!x) {
            /* Redis restarted under us: br_rc reconnects; keep waiting. */
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 1) {
            const redisReply *entries = x->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *e = entries->element[i];
                snprintf(last, sizeof last, "%s", e->element[0]->str);
                const redisReply *fv = e->element[1];
                if (r->final) {
                    r->extra++;
                    continue;
                }
                r->entries++;
                if (r->entries == 1) {
                    const redisReply *s = fv_get(fv, "status");
                    r->status = s ? atoi(s->str) : -1;
                    r->headers = dupn(fv_get(fv, "headers"));
                    r->error = dupn(fv_get(fv, "error"));
                    r->message = dupn(fv_get(fv, "message"));
                }
                const redisReply *b = fv_get(fv, "body");
                size_t bl = b && b->type == REDIS_REPLY_STRING ? b->len : 0;
                if (r->body_len + bl + 1 > cap) {
                    cap = (r->body_len + bl + 1) * 2;
                    r->body = realloc(r->body, cap);
                }
                if (bl)
                    memcpy(r->body + r->body_len, b->str, bl);
                r->body_len += bl;
                r->body[r->body_len] = '\0';
                const redisReply *f = fv_get(fv, "final");
                if (f && f->type == REDIS_REPLY_STRING && strcmp(f->str, "1") == 0)
                    r->final = 1;
            }
        }
        freeReplyObject(x);
    }
    if (!r->body) {
        r->body = calloc(1, 1);
    }
    return r->final;
}

void h_reply_free(h_reply *r) {
    free(r->headers);
    free(r->error);
    free(r->message);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *h_reply_header(const h_reply *r, const char *name) {
    static char out[1024];
    if (!r->headers)
        return NULL;
    json_error_t je;
    json_t *o = json_loads(r->headers, 0, &je);
    const char *res = NULL;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (strcasecmp(k, name) == 0 && json_is_string(v)) {
            snprintf(out, sizeof out, "%s", json_string_value(v));
            res = out;
            break;
        }
    }
    json_decref(o);
    return res;
}

int h_http_get(int port, const char *path, char **body) {
    return h_http(port, "GET", path, NULL, NULL, 0, body, NULL);
}

int h_tcp_connect(const char *addr, int port, int timeout_ms) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    if (getaddrinfo(addr, ports, &hints, &ai) != 0)
        fail("not an IP address: %s", addr);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&pf, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
        err != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int h_http(int port, const char *method, const char *path, const char *hdrs, const void *body,
           size_t blen, char **resp_body, char **headers) {
    if (resp_body)
        *resp_body = NULL;
    if (headers)
        *headers = NULL;
    int fd = h_dial(port);
    if (fd < 0)
        return -1;
    struct timeval tv = {10, 0}; /* bounded: a server that never answers fails the call */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char head[4096];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                     hdrs ? hdrs : "", "Connection: close\r\n");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    /* The server may answer (413) and close before reading a large body: not an error. */
    if (write_all(fd, head, (size_t)n) != 0 ||
        (body && blen && write_all(fd, body, blen) != 0 && errno != EPIPE && errno != ECONNRESET)) {
        close(fd);
        return -1;
    }
    size_t len;
    char *resp = drain_fd(fd, &len);
    close(fd);
    if (!resp)
        return -1;
    int status = -1;
    if (strncmp(resp, "HTTP/1.", 7) == 0)
        status = atoi(resp + 9);
    char *b = strstr(resp, "\r\n\r\n");
    if (resp_body)
        *resp_body = strdup(b ? b + 4 : "");
    if (headers) {
        if (b)
            *b = '\0';
        *headers = strdup(resp);
    }
    free(resp);
    return status;
}

int h_listen_port(const h_proc *p, const char *transport) {
    char what[64];
    snprintf(what, sizeof what, "transport=%s port=", transport);
    if (!h_wait_log(p, what, 10000))
        return 0;
    char *s = h_read_file(p->log, NULL);
    const char *q = s ? strstr(s + p->log_off, what) : NULL;
    int port = q ? atoi(q + strlen(what)) : 0;
    free(s);
    return port > 0 ? port : 0;
}

int h_admin_port(const h_proc *p) {
    return h_listen_port(p, "admin");
}

char *h_scrape(int port) {
    char *body = NULL, *hdrs = NULL;
    int st = h_http(port, "GET", "/metrics", NULL, NULL, 0, &body, &hdrs);
    int ok = st == 200 && hdrs && strstr(hdrs, "Content-Type: text/plain; version=0.0.4") && body;
    free(hdrs);
    if (!ok) {
        fprintf(stderr, "harness: GET /metrics on port %d: status %d\n", port, st);
        free(body);
        return NULL;
    }
    return body;
}

double h_metric(const char *text, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtod(p + kl + 1, NULL);
    return -1;
}

/* --- data helpers -------------------------------------------------------------------------- */

void h_sha256_hex(const void *p, size_t len, char out[65]) {
    uint8_t d[32];
    crypto_hash_sha256(d, p, len);
    sodium_bin2hex(out, 65, d, 32);
}

uint8_t *h_prandom(size_t n, const char *seed) {
    uint8_t *out = malloc(n ? n : 1);
    size_t off = 0;
    for (unsigned long ctr = 0; off < n; ctr++) {
        char in[128];
        int l = snprintf(in, sizeof in, "%s:%lu", seed, ctr);
        uint8_t d[32];
        crypto_hash_sha256(d, (const uint8_t *)in, (size_t)l);
        size_t k = n - off < 32 ? n - off : 32;
        memcpy(out + off, d, k);
        off += k;
    }
    return out;
}

const char *h_json_str(const char *json, const char *key) {
    static char out[4096];
    json_error_t je;
    json_t *o = json ? json_loads(json, 0, &je) : NULL;
    json_t *v = json_object_get(o, key);
    const char *res = NULL;
    if (json_is_string(v)) {
        snprintf(out, sizeof out, "%s", json_string_value(v));
        res = out;
    }
    json_decref(o);
    return res;
}

long long h_json_int(const char *json, const char *key) {
    json_error_t je;
    json_t *o = json ? json_loads(json, 0, &je) : NULL;
    json_t *v = json_object_get(o, key);
    long long res = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(o);
    return res;
}

/* --- raw WebSocket client ------------------------------------------------------------------ */

static int wait_fd(int fd, short ev, int timeout_ms) {
    struct pollfd p = {fd, ev, 0};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN && wait_fd(fd, POLLOUT, 5000))
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly n bytes before the deadline. 0 ok, -1 closed/error, -2 timeout. */
static int read_exact(int fd, uint8_t *p, size_t n, uint64_t end) {
    while (n) {
        uint64_t now = h_now_ms();
        if (now >= end)
            return -2;
        if (!wait_fd(fd, POLLIN, (int)(end - now)))
            return -2;
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int h_ws_connect(int port, char *why, size_t whylen) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (why)
            snprintf(why, whylen, "connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t key[16];
    randombytes_buf(key, sizeof key);
    char k64[32];
    sodium_bin2base64(k64, sizeof k64, key, sizeof key, sodium_base64_VARIANT_ORIGINAL);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ghostport.v1\r\n\r\n",
                     port, k64);
    if (write_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    /* Read the response head byte by byte so no frame bytes are swallowed. */
    char head[2048];
    size_t hl = 0;
    uint64_t end = h_now_ms() + 5000;
    while (hl < sizeof head - 1) {
        if (read_exact(fd, (uint8_t *)head + hl, 1, end) != 0)
            break;
        hl++;
        if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[hl] = '\0';
    if (why) {
        size_t l = strcspn(head, "\r\n");
        snprintf(why, whylen, "%.*s", (int)l, head);
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_ws_send(int fd, int opcode, const void *p, size_t len, int fin) {
    uint8_t mask[4];
    randombytes_buf(mask, 4);
    uint8_t *buf = malloc(GP_WS_HDR_MAX + len + 1);
    size_t hl = gp_ws_client_header(buf, (unsigned)opcode, len, mask);
    if (!fin)
        buf[0] &= 0x7f; /* a fragment: more follows */
    if (len)
        memcpy(buf + hl, p, len);
    gp_ws_mask(buf + hl, len, mask);
    int rv = write_all(fd, buf, hl + len);
    free(buf);
    return rv;
}

int h_ws_send_raw(int fd, const void *p, size_t len) {
    return write_all(fd, p, len);
}

int h_ws_send_frame(int fd, const void *fp) {
    const gp_frame *f = fp;
    size_t n = gp_frame_size(f);
    uint8_t *b = malloc(n);
    ssize_t w = gp_frame_encode(f, b, n);
    int rv = w < 0 ? -1 : h_ws_send(fd, 2, b, (size_t)w, 1);
    free(b);
    return rv;
}

long h_ws_recv(int fd, uint8_t **out, int timeout_ms, int *closed) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    uint8_t *msg = NULL;
    size_t mlen = 0;
    int r;
    if (closed)
        *closed = 0;
    for (;;) {
        uint8_t h2[2];
        r = read_exact(fd, h2, 2, end);
        if (r != 0)
            goto out_err;
        int op = h2[0] & 0x0f, fin = h2[0] >> 7;
        uint64_t len = h2[1] & 0x7f;
        if (len == 126) {
            uint8_t e[2];
            if ((r = read_exact(fd, e, 2, end)) != 0)
                goto out_err;
            len = (uint64_t)e[0] << 8 | e[1];
        } else if (len == 127) {
            uint8_t e[8];
            if ((r = read_exact(fd, e, 8, end)) != 0)
                goto out_err;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | e[i];
        }
        if (h2[1] & 0x80) { /* a server never masks; skip the key anyway */
            uint8_t m[4];
            if ((r = read_exact(fd, m, 4, end)) != 0)
                goto out_err;
        }
        if (len > (64u << 20)) {
            r = -1;
            goto out_err;
        }
        uint8_t *pl = malloc(len + 1);
        if ((r = read_exact(fd, pl, len, end)) != 0) {
            free(pl);
            goto out_err;
        }
        if (op == 8) { /* close */
            free(pl);
            r = -1;
            goto out_err;
        }
        if (op == 9 || op == 10) { /* ping/pong: ignore (answering is not needed here) */
            free(pl);
            continue;
        }
        msg = realloc(msg, mlen + len + 1);
        memcpy(msg + mlen, pl, len);
        mlen += len;
        free(pl);
        if (fin) {
            *out = msg;
            return (long)mlen;
        }
    }
out_err:
    free(msg);
    if (r == -1 && closed)
        *closed = 1;
    return r == -2 ? -2 : -1;
}

int h_ws_wait_closed(int fd, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = h_now_ms();
        if (now >= end)
            return 0;
        uint8_t *m = NULL;
        int closed = 0;
        long r = h_ws_recv(fd, &m, (int)(end - now), &closed);
        free(m);
        if (r == -1)
            return 1;
        if (r == -2)
            return 0;
    }
}

int h_ws_next_frame(int fd, gp_framer *fr, gp_frame *f, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int r = gp_framer_next(fr, f);
        if (r != 0)
            return r;
        uint64_t now = h_now_ms();
        if (now >= end)
            return -100;
        uint8_t *m = NULL;
        int closed;
        long n = h_ws_recv(fd, &m, (int)(end - now), &closed);
        if (n < 0)
            return -100;
        int fe = gp_framer_feed(fr, m, (size_t)n);
        free(m);
        if (fe != 0)
            return fe;
    }
}

int h_ws_auth(int fd, const char *id, const uint8_t secret[32], int *code, char *msg, size_t msglen,
              int *stage) {
    uint8_t hn[32];
    randombytes_buf(hn, sizeof hn);
    gp_frame f;
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_HELLO;
    f.u.hello.min_ver = 1;
    f.u.hello.max_ver = 1;
    f.u.hello.house_id = gp_str_c(id);
    f.u.hello.nonce = hn;
    *code = 0;
    if (msg && msglen)
        msg[0] = '\0';
    *stage = 0;
    if (h_ws_send_frame(fd, &f) != 0)
        return -1;
    gp_framer *fr = gp_framer_new(GP_DEFAULT_MAX_FRAME);
    gp_frame in;
    int rv = -1;
    if (h_ws_next_frame(fd, fr, &in, 5000) != 1)
        goto done;
    if (in.type == GP_FRAME_GOAWAY) {
        *code = in.u.goaway.code;
        if (msg)
            snprintf(msg, msglen, "%.*s", (int)in.u.goaway.message.len,
                     (const char *)in.u.goaway.message.p);
        rv = GP_FRAME_GOAWAY;
        goto done;
    }
    if (in.type != GP_FRAME_CHALLENGE)
        goto done;
    uint8_t bn[32];
    memcpy(bn, in.u.challenge.nonce, 32);
    memset(&f, 0, sizeof f);
    f.type = GP_FRAME_AUTH;
    uint8_t proof[32];
    gp_auth_proof(GP_ROLE_HOUSE, secret, gp_str_c(id), hn, bn, proof);
    f.u.auth.proof = proof;
    *stage = 1;
    if (h_ws_send_frame(fd, &f) != 0)
        goto done;
    if (h_ws_next_frame(fd, fr, &in, 5000) != 1)
        goto done;
    rv = in.type;
    if (in.type == GP_FRAME_GOAWAY) {
        *code = in.u.goaway.code;
        if (msg)
            snprintf(msg, msglen, "%.*s", (int)in.u.goaway.message.len,
                     (const char *)in.u.goaway.message.p);
    }
done:
    gp_framer_free(fr);
    return rv;
}
