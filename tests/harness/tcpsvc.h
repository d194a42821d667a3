/* tcpsvc.h — TCP services the tests put behind a house's `--tcp-service`, in the test process. */
#ifndef GP_TEST_TCPSVC_H
#define GP_TEST_TCPSVC_H

/* A TCP echo service on a free loopback port: a thread a connection, every byte echoed until
 * EOF (or a failed write), then a half-close back. It runs until the process ends. */
typedef struct h_echo {
    int lfd, port;
} h_echo;

/* Starts e listening (backlog 256): 0, or -1 when it could not (errno). */
int h_echo_start(h_echo *e);

#endif
