/* config.h — the bridge daemon's options as parsed (main.c's option table fills it from the
 * command line, the config file and GP_* variables; SIGHUP reloads part of it in place). */
#ifndef BR_CONFIG_H
#define BR_CONFIG_H

typedef struct br_config {
    char *config, *redis, *prefix, *bind, *tls_cert, *tls_key, *bridge_id, *master_key, *log_level,
        *log_format;
    long long listen, max_body, reply_chunk, reply_ttl, max_inflight, max_inflight_bytes,
        ping_interval, auth_burst, auth_per_min, auth_addr_burst, auth_addr_per_min, redis_timeout,
        lease_ms, drain_timeout, rudp_listen, rudp_jitter_ms;
    char *rudp_key;
    int allow_ws;
    int check_config; /* --check-config: validate, say so, exit */
    /* the admin port (bridge/admin/ADMIN.md) */
    long long admin_listen, recent;
    long long history_flush_ms; /* the request history (admin/hist.h): 0 off */
    char *admin_bind, *admin_token, *admin_token_file, *admin_host;
    /* connections that have not authenticated yet (bridge/daemon/flood.c) */
    long long preauth_max, preauth_per_addr, auth_timeout;
    /* Redis credentials and TLS beside --redis (bridge/store/rurl.h, bridge/store/tlsrelay.h) */
    char *redis_user, *redis_password_file, *redis_ca_file, *redis_cert_file, *redis_key_file;
    /* the HTTP front door (bridge/front/) */
    long long http_listen, http_timeout_ms;
    char *http_bind, *http_token_file, *http_domain, *http_cert, *http_key;
    int http_insecure, http_public, http_tls;
    /* the L3 tunnel (bridge/daemon/l3.h, proto/TUN.md) */
    char *tun, *tun_pool;
    long long tun_mtu;
} br_config;

#endif
