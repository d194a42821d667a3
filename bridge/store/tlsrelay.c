/* tlsrelay.c — see tlsrelay.h. One thread, one poll loop: listening UNIX sockets (one per
 * Redis node), and per accepted connection a non-blocking TCP connect, a TLS handshake and
 * then byte shuttling both ways through two 16 KiB buffers. The connections are few (two
 * per node in the bridge, one per node in the CLI), so every wake-up simply tries every
 * connection's four transfers; what each then waits for decides its poll events. */
#include "tlsrelay.h"

#include "conf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_EP 64
#define MAX_CONN 256
#define BUF 16384
#define HANDSHAKE_MS 10000

typedef struct ep {
    char host[256];
    int port;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int lfd;
    char err[512]; /* why the last connection failed, "" when it worked */
} ep;

enum { C_CONNECT, C_HANDSHAKE, C_RELAY, C_DRAIN };

typedef struct conn {
    int cfd, sfd, ep, st;
    SSL *ssl;
    int want_r, want_w; /* what the last TLS operation waits for */
    uint64_t start_ms;
    size_t c2s_len, s2c_len;
    unsigned char c2s[BUF], s2c[BUF];
} conn;

static struct {
    pthread_mutex_t mu;
    pid_t pid; /* the process the state belongs to (a forked child starts afresh) */
    int running, stop, atexit_set;
    pthread_t th;
    int wake[2];
    char dir[80];
    ep eps[MAX_EP];
    int nep;
    SSL_CTX *ctx;
    conn *conns[MAX_CONN]; /* the relay thread's own */
    int nconn;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = {-1, -1}};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ssl_errstr(char *out, size_t cap) {
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, out, cap);
    else
        snprintf(out, cap, "%s", errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
}

/* --- configuration ------------------------------------------------------------------------ */

static SSL_CTX *make_ctx(const char *ca, const char *cert, const char *key, char *err,
                         size_t errlen) {
    char why[256];
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca && *ca ? SSL_CTX_load_verify_locations(c, ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(c) != 1) {
        ssl_errstr(why, sizeof why);
        if (ca && *ca && strstr(why, "no certificate"))
            snprintf(err, errlen,
                     "TLS: --redis-ca-file %s holds no certificate (a private key?): give it the "
                     "certificate (PEM) of the CA that signed Redis's",
                     ca);
        else
            snprintf(err, errlen, "TLS: cannot load the CA certificates%s%s: %s",
                     ca && *ca ? " from " : " of the system", ca && *ca ? ca : "", why);
        goto fail;
    }
    if ((cert && *cert) != (key && *key)) {
        snprintf(err, errlen, "TLS: --redis-cert-file and --redis-key-file go together");
        goto fail;
    }
    if (key && *key && gp_conf_secret_file_ok(key, why, sizeof why) != 0) {
        snprintf(err, errlen, "TLS: --redis-key-file %s", why);
        goto fail;
    }
    if (cert && *cert &&
        (SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(c) != 1)) {
        ssl_errstr(why, sizeof why);
        snprintf(err, errlen,
                 "TLS: client certificate %s / key %s: %s: --redis-cert-file takes the "
                 "certificate (PEM), --redis-key-file the key it was made with",
                 cert, key, why);
        goto fail;
    }
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

int gp_tlsrelay_config(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                       size_t errlen) {
    SSL_CTX *c = make_ctx(ca_file, cert_file, key_file, err, errlen);
    if (!c)
        return -1;
    pthread_mutex_lock(&g.mu);
    SSL_CTX *old = g.ctx;
    g.ctx = c;
    pthread_mutex_unlock(&g.mu);
    SSL_CTX_free(old); /* sessions hold their own reference */
    return 0;
}

static void set_err(int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(int e, const char *fmt, ...) {
    pthread_mutex_lock(&g.mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.eps[e].err, sizeof g.eps[e].err, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&g.mu);
}

/* --- connections -------------------------------------------------------------------------- */

static void conn_free(conn *c) {
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->sfd >= 0)
        close(c->sfd);
    close(c->cfd);
    free(c);
}

static int is_ip(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The TCP connection is up: a TLS session that checks the node's name or address. */
static int start_tls(conn *c) {
    ep *e = &g.eps[c->ep];
    pthread_mutex_lock(&g.mu);
    c->ssl = SSL_new(g.ctx);
    pthread_mutex_unlock(&g.mu);
    if (!c->ssl || SSL_set_fd(c->ssl, c->sfd) != 1)
        return -1;
    if (is_ip(e->host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), e->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, e->host);
        SSL_set1_host(c->ssl, e->host);
    }
    c->st = C_HANDSHAKE;
    return 0;
}

static void accept_one(int ei, int lfd) {
    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    /* The directory is private already; the uid check is the second lock. */
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 || cr.uid != getuid() ||
        g.nconn >= MAX_CONN) {
        close(cfd);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(cfd);
        return;
    }
    c->cfd = cfd, c->sfd = -1, c->ep = ei, c->start_ms = now_ms();
    ep *e = &g.eps[ei];
    char port[8];
    snprintf(port, sizeof port, "%d", e->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    /* Blocking, in the relay thread: Redis nodes are addresses or names a resolver knows. */
    int rc = getaddrinfo(e->host, port, &hints, &ai);
    if (rc != 0) {
        set_err(ei, "cannot resolve %s: %s", e->host, gai_strerror(rc));
        conn_free(c);
        return;
    }
    c->sfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->sfd < 0 || (connect(c->sfd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        set_err(ei, "connect: %s", strerror(errno));
        freeaddrinfo(ai);
        conn_free(c);
        return;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(c->sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->sfd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    c->st = C_CONNECT;
    g.conns[g.nconn++] = c;
}

/* A TLS operation did not complete: 0 if it waits for the socket, -1 if the session is over. */
static int ssl_wait(conn *c, int rv) {
    switch (SSL_get_error(c->ssl, rv)) {
    case SSL_ERROR_WANT_READ:
        c->want_r = 1;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->want_w = 1;
        return 0;
    default:
        return -1;
    }
}

/* Said of a server that is not speaking TLS on the port (a plain Redis): what to do. */
#define NOT_TLS_FIX "use redis:// for a port without TLS, rediss:// only for the server's tls-port"

static void handshake_failed(conn *c, int rv) {
    char why[400];
    long vr = SSL_get_verify_result(c->ssl);
    int e = SSL_get_error(c->ssl, rv);
    unsigned long le = ERR_peek_error();
    int reason = le ? ERR_GET_REASON(le) : 0;
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        snprintf(why, sizeof why,
                 "certificate verify failed: %s: dial Redis by a name its certificate holds, "
                 "or give it a certificate for %s",
                 X509_verify_cert_error_string(vr), g.eps[c->ep].host);
    else if (vr == X509_V_ERR_CERT_HAS_EXPIRED || vr == X509_V_ERR_CERT_NOT_YET_VALID)
        snprintf(why, sizeof why,
                 "certificate verify failed: %s: renew Redis's certificate (or set this "
                 "machine's clock right)",
                 X509_verify_cert_error_string(vr));
    else if (vr != X509_V_OK)
        snprintf(why, sizeof why,
                 "certificate verify failed: %s: give --redis-ca-file (env GP_REDIS_CA_FILE) the "
                 "certificate of the CA that signed Redis's",
                 X509_verify_cert_error_string(vr));
    else if (e == SSL_ERROR_SYSCALL && !le)
        snprintf(why, sizeof why,
                 "the server closed the connection during the handshake: is it a TLS "
                 "port? " NOT_TLS_FIX);
    else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
             reason == SSL_R_HTTP_REQUEST || reason == SSL_R_UNKNOWN_PROTOCOL) {
        ERR_clear_error();
        snprintf(why, sizeof why, "the server answered in plain text, not TLS: " NOT_TLS_FIX);
    } else
        ssl_errstr(why, sizeof why);
    set_err(c->ep, "%s", why);
}

/* A session that ends with a TLS error after its handshake: with TLS 1.3 the server checks a
 * client certificate only then (tls-auth-clients), and says so with an alert. Kept as the
 * node's last error; a clean close is not one. */
static void session_error(conn *c, int rv) {
    if (SSL_get_error(c->ssl, rv) != SSL_ERROR_SSL)
        return;
    char why[200];
    ssl_errstr(why, sizeof why);
    set_err(c->ep, "%s", why);
}

/* Moves what it can. 0: keep the connection, -1: close it. */
static int step(conn *c, short srev) {
    c->want_r = c->want_w = 0;
    if (c->st == C_CONNECT) {
        if (!(srev & (POLLOUT | POLLERR | POLLHUP)))
            return 0;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            set_err(c->ep, "connect: %s", strerror(err));
            return -1;
        }
        if (start_tls(c) != 0) {
            set_err(c->ep, "TLS: cannot create a session");
            return -1;
        }
        /* What a client that gives up first hears: a plain Redis answers a ClientHello with
         * nothing at all (it waits for the end of a line). Replaced by the outcome. */
        set_err(c->ep, "the server did not answer the TLS handshake: a port without TLS answers "
                       "none; " NOT_TLS_FIX);
    }
    if (c->st == C_HANDSHAKE) {
        ERR_clear_error();
        int rv = SSL_connect(c->ssl);
        if (rv != 1) {
            if (ssl_wait(c, rv) == 0)
                return 0;
            handshake_failed(c, rv);
            return -1;
        }
        c->st = C_RELAY;
        set_err(c->ep, "%s", "");
    }
    if (c->st == C_RELAY) {
        if (c->c2s_len < BUF) {
            ssize_t n = read(c->cfd, c->c2s + c->c2s_len, BUF - c->c2s_len);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return -1; /* the client is gone */
            if (n > 0)
                c->c2s_len += (size_t)n;
        }
        while (c->c2s_len) {
            ERR_clear_error();
            int n = SSL_write(c->ssl, c->c2s, (int)c->c2s_len);
            if (n <= 0) {
                if (ssl_wait(c, n) != 0) {
                    session_error(c, n);
                    return -1;
                }
                break;
            }
            memmove(c->c2s, c->c2s + n, c->c2s_len - (size_t)n);
            c->c2s_len -= (size_t)n;
        }
        while (c->s2c_len < BUF) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, c->s2c + c->s2c_len, (int)(BUF - c->s2c_len));
            if (n <= 0) {
                if (ssl_wait(c, n) != 0) {
                    session_error(c, n);
                    c->st = C_DRAIN; /* the server closed: hand over what it said */
                }
                break;
            }
            c->s2c_len += (size_t)n;
        }
    }
    if (c->s2c_len) {
        ssize_t n = send(c->cfd, c->s2c, c->s2c_len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0) {
            memmove(c->s2c, c->s2c + n, c->s2c_len - (size_t)n);
            c->s2c_len -= (size_t)n;
        }
    }
    return c->st == C_DRAIN && !c->s2c_len ? -1 : 0;
}

/* --- the thread --------------------------------------------------------------------------- */

static void *run(void *arg) {
    (void)arg;
    static struct pollfd pfd[1 + MAX_EP + 2 * MAX_CONN];
    int lidx[MAX_EP];
    for (;;) {
        int n = 0, timeout = 1000;
        pfd[n++] = (struct pollfd){.fd = g.wake[0], .events = POLLIN};
        pthread_mutex_lock(&g.mu);
        int nep = g.nep;
        for (int i = 0; i < nep; i++) {
            lidx[i] = n;
            pfd[n++] = (struct pollfd){.fd = g.eps[i].lfd, .events = POLLIN};
        }
        pthread_mutex_unlock(&g.mu);
        int first_conn = n;
        for (int i = 0; i < g.nconn; i++) {
            conn *c = g.conns[i];
            short ce = 0, se = 0;
            if (c->st == C_CONNECT)
                se = POLLOUT;
            if (c->st == C_RELAY && c->c2s_len < BUF)
                ce |= POLLIN;
            if (c->s2c_len)
                ce |= POLLOUT;
            if (c->want_r || (c->st == C_RELAY && c->s2c_len < BUF))
                se |= POLLIN;
            if (c->want_w)
                se |= POLLOUT;
            if (c->st == C_RELAY && c->s2c_len < BUF && SSL_pending(c->ssl) > 0)
                timeout = 0; /* decrypted bytes wait inside OpenSSL: no poll will say so */
            pfd[n++] = (struct pollfd){.fd = c->cfd, .events = ce};
            pfd[n++] = (struct pollfd){.fd = c->sfd, .events = se};
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            continue;
        if (pfd[0].revents) {
            char b[64];
            while (read(g.wake[0], b, sizeof b) > 0) {
            }
        }
        pthread_mutex_lock(&g.mu);
        int stop = g.stop;
        pthread_mutex_unlock(&g.mu);
        if (stop)
            break;
        int had = g.nconn, k = 0;
        uint64_t now = now_ms();
        for (int i = 0; i < had; i++) {
            conn *c = g.conns[i];
            int dead = step(c, pfd[first_conn + 2 * i + 1].revents);
            if (!dead && c->st < C_RELAY && now - c->start_ms > HANDSHAKE_MS) {
                set_err(
                    c->ep,
                    "no TLS handshake within %d s: a port without TLS answers none; " NOT_TLS_FIX,
                    HANDSHAKE_MS / 1000);
                dead = -1;
            }
            if (dead)
                conn_free(c);
            else
                g.conns[k++] = c;
        }
        g.nconn = k;
        for (int i = 0; i < nep; i++)
            if (pfd[lidx[i]].revents & POLLIN)
                accept_one(i, pfd[lidx[i]].fd);
    }
    for (int i = 0; i < g.nconn; i++)
        conn_free(g.conns[i]);
    g.nconn = 0;
    return NULL;
}

/* Directories left by relays that died without cleaning up (kill -9): ours (same uid), with
 * a pid file naming a process that is gone. Only their sockets and pid file are removed. */
static void sweep_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "gp-redis-tls-", 13) != 0)
            continue;
        char dir[512], f[600];
        snprintf(dir, sizeof dir, "%s/%s", base, e->d_name);
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
            continue;
        snprintf(f, sizeof f, "%s/pid", dir);
        FILE *pf = fopen(f, "r");
        long pid = 0;
        if (!pf)
            continue;
        if (fscanf(pf, "%ld", &pid) != 1)
            pid = 0;
        fclose(pf);
        if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        DIR *sd = opendir(dir);
        struct dirent *se;
        while (sd && (se = readdir(sd))) {
            size_t l = strlen(se->d_name);
            if (l > 5 && strcmp(se->d_name + l - 5, ".sock") == 0) {
                snprintf(f, sizeof f, "%s/%s", dir, se->d_name);
                unlink(f);
            }
        }
        if (sd)
            closedir(sd);
        snprintf(f, sizeof f, "%s/pid", dir);
        unlink(f);
        rmdir(dir);
    }
    closedir(d);
}

static int start(char *err, size_t errlen) {
    if (g.running)
        return 0;
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (!base || !*base || access(base, W_OK) != 0)
        base = getenv("TMPDIR");
    if (!base || !*base || access(base, W_OK) != 0)
        base = "/tmp";
    if (snprintf(g.dir, sizeof g.dir, "%s/gp-redis-tls-XXXXXX", base) >= (int)sizeof g.dir - 16 ||
        !mkdtemp(g.dir)) { /* mkdtemp makes it 0700 */
        snprintf(err, errlen, "TLS relay: cannot create a private directory in %s: %s", base,
                 strerror(errno));
        return -1;
    }
    sweep_stale(base);
    char pidf[sizeof g.dir + 8];
    snprintf(pidf, sizeof pidf, "%s/pid", g.dir);
    FILE *pf = fopen(pidf, "w");
    if (pf) {
        fprintf(pf, "%ld\n", (long)getpid());
        fclose(pf);
    }
    if (pipe2(g.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "TLS relay: pipe: %s", strerror(errno));
        rmdir(g.dir);
        return -1;
    }
    if (!g.ctx && !(g.ctx = make_ctx(NULL, NULL, NULL, err, errlen)))
        return -1;
    /* Signals stay with the program's own threads; SIGPIPE here becomes EPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g.stop = 0;
    int rc = pthread_create(&g.th, NULL, run, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "TLS relay: cannot start its thread: %s", strerror(rc));
        return -1;
    }
    g.running = 1;
    if (!g.atexit_set) {
        g.atexit_set = 1;
        atexit(gp_tlsrelay_stop);
    }
    return 0;
}

int gp_tlsrelay_path(const char *host, int port, char *path, size_t cap, char *err, size_t errlen) {
    pthread_mutex_lock(&g.mu);
    if (g.pid != getpid()) {
        /* A fork: the thread and its sockets belong to the parent. */
        g.pid = getpid();
        g.running = 0;
        g.nep = 0;
        g.nconn = 0;
    }
    int rv = -1;
    for (int i = 0; i < g.nep; i++)
        if (g.eps[i].port == port && strcmp(g.eps[i].host, host) == 0) {
            snprintf(path, cap, "%s", g.eps[i].path);
            rv = 0;
            goto out;
        }
    /* start() loads the system's CA store the first time (under the lock: once). */
    if (start(err, errlen) != 0)
        goto out;
    if (g.nep >= MAX_EP || strlen(host) >= sizeof g.eps[0].host) {
        snprintf(err, errlen, "TLS relay: too many Redis nodes");
        goto out;
    }
    ep *e = &g.eps[g.nep];
    memset(e, 0, sizeof *e);
    snprintf(e->host, sizeof e->host, "%s", host);
    e->port = port;
    snprintf(e->path, sizeof e->path, "%s/%d.sock", g.dir, g.nep);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", e->path);
    e->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (e->lfd < 0 || bind(e->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(e->lfd, 64) != 0) {
        snprintf(err, errlen, "TLS relay: socket %s: %s", e->path, strerror(errno));
        if (e->lfd >= 0)
            close(e->lfd);
        goto out;
    }
    g.nep++;
    snprintf(path, cap, "%s", e->path);
    rv = 0;
    if (write(g.wake[1], "", 1) < 0) {
        /* the pipe is full: the thread is awake anyway */
    }
out:
    pthread_mutex_unlock(&g.mu);
    return rv;
}

void gp_tlsrelay_last_error(const char *host, int port, char *out, size_t cap) {
    out[0] = '\0';
    pthread_mutex_lock(&g.mu);
    if (g.pid == getpid())
        for (int i = 0; i < g.nep; i++)
            if (g.eps[i].port == port && strcmp(g.eps[i].host, host) == 0)
                snprintf(out, cap, "%s", g.eps[i].err);
    pthread_mutex_unlock(&g.mu);
}

void gp_tlsrelay_stop(void) {
    pthread_mutex_lock(&g.mu);
    if (!g.running || g.pid != getpid()) {
        pthread_mutex_unlock(&g.mu);
        return;
    }
    g.stop = 1;
    if (write(g.wake[1], "", 1) < 0) {
        /* full: awake anyway */
    }
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.th, NULL);
    pthread_mutex_lock(&g.mu);
    for (int i = 0; i < g.nep; i++) {
        close(g.eps[i].lfd);
        unlink(g.eps[i].path);
    }
    g.nep = 0;
    char pidf[sizeof g.dir + 8];
    snprintf(pidf, sizeof pidf, "%s/pid", g.dir);
    unlink(pidf);
    rmdir(g.dir);
    close(g.wake[0]);
    close(g.wake[1]);
    g.wake[0] = g.wake[1] = -1;
    g.running = 0;
    pthread_mutex_unlock(&g.mu);
}
