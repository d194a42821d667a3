/* proxy.h — a loopback TCP relay for fault tests that can go dark without closing: the
 * half-open path a house sees when a NAT forgets its mapping or a link dies silently. Bytes
 * are relayed both ways until the relay is frozen in a direction; then nothing more flows that
 * way (it is held in kernel buffers, not dropped), and a peer's close is no longer passed on,
 * so the other end keeps a connection that looks alive and carries nothing. I/O side,
 * test-only: one thread with poll(2). */
#ifndef GP_PROXY_H
#define GP_PROXY_H

typedef struct h_proxy h_proxy;

/* Listens on a free 127.0.0.1 port (written to *listen_port) and relays each accepted
 * connection to 127.0.0.1:target_port. Fails the test on error. */
h_proxy *h_proxy_start(int target_port, int *listen_port);
/* up: client -> target bytes stop; down: target -> client bytes stop. Either also stops
 * passing closes on, in both directions. */
void h_proxy_freeze(h_proxy *p, int up, int down);
/* Connections relayed so far. */
int h_proxy_accepted(h_proxy *p);
/* Stops the thread and closes every socket. NULL ok. */
void h_proxy_stop(h_proxy *p);

#endif
