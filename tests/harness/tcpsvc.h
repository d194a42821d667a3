/* tcpsvc.h — TCP services the tests put behind a house's `--tcp-service`, in the test process. */
#ifndef GP_TEST_TCPSVC_H
#define GP_TEST_TCPSVC_H

/* A TCP service on a free loopback port (backlog 512): every connection accepted gets
 * TCP_NODELAY and a detached thread of its own (256 KiB of stack) running conn with the fd
 * (as intptr_t); conn closes it. It runs until the process ends. Returns the port, or -1 when
 * it could not start (errno). */
int h_tcpsvc_start(void *(*conn)(void *fd));

/* A TCP echo service on a free loopback port: a thread a connection, every byte echoed until
 * EOF (or a failed write), then a half-close back. It runs until the process ends. */
typedef struct h_echo {
    int port;
} h_echo;

/* Starts e listening: 0, or -1 when it could not (errno). */
int h_echo_start(h_echo *e);

#endif
