/* web_assets.c — the dashboard files compiled into the bridge (scripts/embed-web.py):
 * br_web_asset() returns each file of bridge/admin/web/ byte for byte with its content type, and
 * NULL for anything else. Run from the repository root (as `make test` does). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint8_t *br_web_asset(const char *path, size_t *len, const char **content_type);

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (run from the repository root)", path);
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void same_as_file(const char *name, const char *type) {
    char path[256];
    snprintf(path, sizeof path, "bridge/admin/web/%s", name);
    size_t flen, len = 0;
    uint8_t *want = slurp(path, &flen);
    const char *ct = NULL;
    const uint8_t *got = br_web_asset(name, &len, &ct);
    cr_assert(got, "%s not embedded", name);
    cr_assert_eq(len, flen, "%s: %zu bytes embedded, %zu in the file", name, len, flen);
    cr_assert(memcmp(got, want, len) == 0, "%s differs from the file", name);
    cr_assert_eq(got[len], 0, "%s: no NUL after the data", name);
    cr_assert_str_eq(ct, type);
    free(want);
}

Test(web_assets, every_file_byte_for_byte) {
    same_as_file("index.html", "text/html; charset=utf-8");
    same_as_file("app.js", "text/javascript; charset=utf-8");
    same_as_file("app.css", "text/css; charset=utf-8");
}

Test(web_assets, unknown_paths_are_null) {
    size_t len = 12345;
    const char *ct = "untouched";
    const char *bad[] = {"",           "/index.html", "index.htm", "../Makefile",
                         "web/app.js", "INDEX.HTML",  "app.js/",   "app.js ",
                         "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_null(br_web_asset(bad[i], &len, &ct), "'%s' found", bad[i]);
    cr_assert_null(br_web_asset(NULL, &len, &ct));
    cr_assert_eq(len, 12345);
    cr_assert_str_eq(ct, "untouched");
    /* len and content_type may be NULL */
    cr_assert_not_null(br_web_asset("index.html", NULL, NULL));
}
