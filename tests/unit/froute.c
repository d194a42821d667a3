/* froute.c — the HTTP front door's pure parts (bridge/front/froute.c): routes by path and by
 * Host, the token file and its check, the Authorization header, hop-by-hop headers. */
#include "../../bridge/front/froute.h"

#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

static void route_ok(const char *target, const char *host, const char *domain, const char *house,
                     const char *service, const char *path) {
    fr_route r;
    const char *why = NULL;
    cr_assert_eq(fr_route_parse(target, host, domain, &r, &why), 0, "%s: %s", target, why);
    cr_assert_str_eq(r.house, house, "%s", target);
    cr_assert_str_eq(r.service, service, "%s", target);
    cr_assert_str_eq(r.path, path, "%s", target);
    fr_route_clear(&r);
}

static void route_404(const char *target, const char *host, const char *domain) {
    fr_route r;
    const char *why = NULL;
    cr_assert_eq(fr_route_parse(target, host, domain, &r, &why), -1, "%s routed", target);
    cr_assert(why && *why);
    fr_route_clear(&r);
}

Test(froute, paths) {
    route_ok("/h/farm-1/status", NULL, NULL, "farm-1", "", "/status");
    route_ok("/h/farm-1/a/b?x=1&y", NULL, NULL, "farm-1", "", "/a/b?x=1&y");
    route_ok("/h/farm-1", NULL, NULL, "farm-1", "", "/");
    route_ok("/h/farm-1?q=2", NULL, NULL, "farm-1", "", "/?q=2");
    route_ok("/h/farm-1/", NULL, NULL, "farm-1", "", "/");
    route_ok("/h/farm-1@web/x", NULL, NULL, "farm-1", "web", "/x");
    route_ok("/h/F.a_r-m@w.e_b-1", NULL, NULL, "F.a_r-m", "w.e_b-1", "/");
    /* without a domain, Host does not route */
    route_ok("/h/a/x", "b.example.org", NULL, "a", "", "/x");
    const char *bad[] = {"",           "x",        "/",          "/h",        "/h/",
                         "/h//x",      "/h/a b/x", "/h/a%20b/x", "/h/@web/x", "/h/a@/x",
                         "/h/a@b@c/x", "/hx/a/x",  "/H/a/x",     "/h/a!/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        route_404(bad[i], NULL, NULL);
    char longid[80];
    memset(longid, 'a', sizeof longid);
    memcpy(longid, "/h/", 3);
    longid[sizeof longid - 1] = '\0';
    route_404(longid, NULL, NULL);
}

Test(froute, hosts) {
    route_ok("/status?x", "farm-1.gp.example", "gp.example", "farm-1", "", "/status?x");
    route_ok("/", "web.farm-1.gp.example:8443", "gp.example", "farm-1", "web", "/");
    route_ok("/x", "WEB.Farm-1.GP.Example", "gp.example", "farm-1", "web", "/x");
    /* a Host outside the domain: the path routes */
    route_ok("/h/a/x", "other.org", "gp.example", "a", "", "/x");
    route_ok("/h/a/x", "gp.example", "gp.example", "a", "", "/x");
    route_ok("/h/a/x", "[::1]:80", "gp.example", "a", "", "/x");
    route_404("/x", "other.org", "gp.example");
    route_404("/x", "a.b.c.gp.example", "gp.example");
    route_404("/x", ".gp.example", "gp.example");
    route_404("/x", "a..gp.example", "gp.example");
    route_404("/x", "a_b!.gp.example", "gp.example");
    route_404("/x", "xgp.example", "gp.example");
}

static const char *const FILE_TEXT = "# tokens\n"
                                     "\n"
                                     "tok-farm-0123456789 farm-*\n"
                                     "  tok-web-01234567890\tshop-? web*  \r\n"
                                     "tok-all-0123456789012 *\n";

Test(froute, tokens_parse_and_check) {
    fr_tokens t;
    char err[128];
    cr_assert_eq(fr_tokens_parse(FILE_TEXT, strlen(FILE_TEXT), &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(t.n, 3);
#define CHECK(tok, h, s) fr_tokens_check(&t, tok, strlen(tok), h, s)
    cr_assert_eq(CHECK("tok-farm-0123456789", "farm-1", ""), FR_AUTH_OK);
    cr_assert_eq(CHECK("tok-farm-0123456789", "farm-1", "web"), FR_AUTH_OK);
    cr_assert_eq(CHECK("tok-farm-0123456789", "shop-1", ""), FR_AUTH_FORBIDDEN);
    cr_assert_eq(CHECK("tok-web-01234567890", "shop-1", "webapp"), FR_AUTH_OK);
    cr_assert_eq(CHECK("tok-web-01234567890", "shop-1", ""), FR_AUTH_FORBIDDEN);
    cr_assert_eq(CHECK("tok-web-01234567890", "shop-12", "web"), FR_AUTH_FORBIDDEN);
    cr_assert_eq(CHECK("tok-all-0123456789012", "anything", "x"), FR_AUTH_OK);
    cr_assert_eq(CHECK("tok-farm-012345678", "farm-1", ""), FR_AUTH_UNKNOWN);
    cr_assert_eq(CHECK("", "farm-1", ""), FR_AUTH_UNKNOWN);
#undef CHECK
    fr_tokens_free(&t);
    cr_assert_eq(t.n, 0);
}

Test(froute, token_file_errors_name_the_line_not_the_token) {
    const char *bad[] = {"tok-farm-0123456789\n", "short farm\n", "tok-farm-0123456789 a b c\n",
                         "# ok\ntok-farm-0123456789\n",
                         "tok-farm-\x01"
                         "0123456789 farm\n"};
    const char *lines[] = {"line 1", "line 1", "line 1", "line 2", "line 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fr_tokens t;
        char err[128] = "";
        cr_assert_eq(fr_tokens_parse(bad[i], strlen(bad[i]), &t, err, sizeof err), -1, "%zu", i);
        cr_assert(strstr(err, lines[i]), "%s", err);
        cr_assert_null(strstr(err, "tok-farm"), "the token leaked into: %s", err);
        cr_assert_eq(t.n, 0);
    }
    fr_tokens t;
    char err[64];
    cr_assert_eq(fr_tokens_parse("a\0b", 3, &t, err, sizeof err), -1);
    cr_assert_eq(fr_tokens_parse("", 0, &t, err, sizeof err), 0);
    cr_assert_eq(t.n, 0);
}

Test(froute, authorization) {
    cr_assert_eq(sodium_init() >= 0, 1);
    char out[64];
    cr_assert_eq(fr_auth_token("Bearer abc", out, sizeof out), 0);
    cr_assert_str_eq(out, "abc");
    cr_assert_eq(fr_auth_token("bearer   abc  ", out, sizeof out), 0);
    cr_assert_str_eq(out, "abc");
    cr_assert_eq(fr_auth_token("Basic bWU6c2VjcmV0", out, sizeof out), 0); /* me:secret */
    cr_assert_str_eq(out, "secret");
    cr_assert_eq(fr_auth_token("Basic c2VjcmV0", out, sizeof out), 0); /* secret */
    cr_assert_str_eq(out, "secret");
    cr_assert_eq(fr_auth_token("Basic bWU6Og==", out, sizeof out), 0); /* me:: */
    cr_assert_str_eq(out, ":");
    const char *bad[] = {"",          "Bearer",     "Bearer ",  "Bearer a b", "Basic",
                         "Basic !!!", "Basic bWU6", "Digest x", "Token abc",  "Basic AGE6Yg=="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(fr_auth_token(bad[i], out, sizeof out), -1, "%s", bad[i]);
    cr_assert_eq(fr_auth_token(NULL, out, sizeof out), -1);
    char small[4];
    cr_assert_eq(fr_auth_token("Bearer abcd", small, sizeof small), -1);
}

Test(froute, hop_by_hop_and_header_checks) {
    const char *hop[] = {"Connection", "keep-alive",          "TE",      "Transfer-Encoding",
                         "upgrade",    "proxy-authorization", "trailer", "proxy-connection"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        cr_assert(fr_hop_by_hop(hop[i], NULL), "%s", hop[i]);
    cr_assert(!fr_hop_by_hop("content-type", NULL));
    cr_assert(!fr_hop_by_hop("authorization", NULL));
    cr_assert(fr_hop_by_hop("x-secret", "close, X-Secret ,foo"));
    cr_assert(fr_hop_by_hop("foo", "close, X-Secret ,foo"));
    cr_assert(!fr_hop_by_hop("x-secre", "close, X-Secret ,foo"));
    cr_assert(fr_header_ok("x-a", "b\tc"));
    cr_assert(!fr_header_ok("x a", "b"));
    cr_assert(!fr_header_ok("", "b"));
    cr_assert(!fr_header_ok("x-a", "b\r\nset-cookie: y"));
    cr_assert(!fr_header_ok("x-a", "\x1b[2J"));
}

/* Connection and Upgrade values are comma-separated token lists: the WebSocket upgrade needs
 * `upgrade` in Connection and `websocket` in Upgrade, whatever the case, spaces or company. */
Test(froute, header_lists) {
    cr_assert(fr_header_lists("Upgrade", "upgrade"));
    cr_assert(fr_header_lists("keep-alive, Upgrade", "upgrade"));
    cr_assert(fr_header_lists("keep-alive ,upgrade ", "UPGRADE"));
    cr_assert(fr_header_lists("websocket", "websocket"));
    cr_assert_not(fr_header_lists("upgrades", "upgrade"), "a longer token is another token");
    cr_assert_not(fr_header_lists("x-upgrade", "upgrade"));
    cr_assert_not(fr_header_lists("", "upgrade"));
    cr_assert_not(fr_header_lists(NULL, "upgrade"));
    cr_assert_not(fr_header_lists("keep-alive", "upgrade"));
}
