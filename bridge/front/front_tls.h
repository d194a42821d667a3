/* front_tls.h — the front door's HTTP server over TLS: proto/adapters/uv_admin.c's server with
 * an OpenSSL session as its byte filter (the core sees plaintext, the socket ciphertext). The
 * session lives here because the adapters take no OpenSSL (bridge/DESIGN.md "Layers"). The
 * server listens and closes as any other (gp_admin_listen, gp_admin_close). */
#ifndef BR_FRONT_TLS_H
#define BR_FRONT_TLS_H

#include "admin_http.h"

#include <stddef.h>
#include <uv.h>

/* Loads cert (PEM chain) and key: the server, not listening yet; NULL with the reason in err. */
gp_admin *br_front_tls_new(uv_loop_t *loop, const gp_admin_cfg *cfg, const char *cert,
                           const char *key, char *err, size_t errlen);

#endif
