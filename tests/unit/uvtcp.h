/* uvtcp.h — loopback TCP on a libuv loop, for the unit tests that run a service in the test
 * process (house_streams.c, tunnel.c). Header only; test-only. */
#ifndef GP_TEST_UVTCP_H
#define GP_TEST_UVTCP_H
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <uv.h>

/* Initialises tcp on loop and binds it to 127.0.0.1 on a free port (fails the test if it
 * cannot); returns the port. */
static inline int uvt_bind_loopback(uv_loop_t *loop, uv_tcp_t *tcp) {
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, tcp);
    cr_assert_eq(uv_tcp_bind(tcp, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    cr_assert_eq(uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

#endif
