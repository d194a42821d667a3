/* front_tls.h — the front door's HTTP server over TLS: proto/admin_http.h's sans-I/O core
 * driven by a libuv glue that runs OpenSSL between the socket and the core (memory BIOs: the
 * core sees plaintext, the socket ciphertext). The plain glue is proto/adapters/uv_admin.c;
 * this one lives here because the adapters take no OpenSSL (bridge/DESIGN.md "Layers").
 * I/O side. */
#ifndef BR_FRONT_TLS_H
#define BR_FRONT_TLS_H

#include "admin_http.h"

#include <stddef.h>
#include <uv.h>

/* Loads cert (PEM chain) and key: the server, not listening yet; NULL with the reason in err. */
gp_admin *br_front_tls_new(uv_loop_t *loop, const gp_admin_cfg *cfg, const char *cert,
                           const char *key, char *err, size_t errlen);
/* As gp_admin_listen and gp_admin_close (uv_admin.h), for a server made by br_front_tls_new. */
int br_front_tls_listen(gp_admin *a);
void br_front_tls_close(gp_admin *a);

#endif
