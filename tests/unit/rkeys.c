/* rkeys.c — the Redis key layout (bridge/store/rkeys.c): the names the builders write, what they
 * refuse, the house id read back from a stream key, Cluster slots, and README.md's key layout
 * table row for row against gp_key_template (the layout is documented once, and that
 * document is checked against the code here). */
#include "../../bridge/store/rkeys.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(rkeys, names) {
    char k[GP_KEY_MAX];
    cr_assert_eq(gp_key_house(k, "gp", "farm-1"), 17);
    cr_assert_str_eq(k, "gp:{farm-1}:house");
    gp_key_req(k, "gp", "farm-1");
    cr_assert_str_eq(k, "gp:{farm-1}:req");
    gp_key_rudp_ts(k, "x", "h");
    cr_assert_str_eq(k, "x:{h}:rudp_ts");
    gp_key_reply(k, "gp", "p1:abc");
    cr_assert_str_eq(k, "gp:rep:p1:abc");
    gp_key_fence(k, "gp", "");
    cr_assert_str_eq(k, "gp:fence:");
    gp_key_hb(k, "gp", "br-1");
    cr_assert_str_eq(k, "gp:hb:br-1");
}

Test(rkeys, too_long_is_refused) {
    char k[GP_KEY_MAX], big[GP_KEY_MAX];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(gp_key_house(k, big, "h"), -1);
    cr_assert_str_eq(k, "");
    char all[GP_HOUSE_NKEYS][GP_KEY_MAX];
    cr_assert_eq(gp_key_house_all(all, big + 11, "h"), -1, "deadlines is the longest: refused");
}

/* Every key of a house carries its hash tag, once each, and nothing else in the layout does
 * (but the byte keys of its TCP streams, one pair a stream, each with a TTL). */
Test(rkeys, house_keys_are_every_tagged_key) {
    char all[GP_HOUSE_NKEYS][GP_KEY_MAX];
    cr_assert_eq(gp_key_house_all(all, "<p>", "h"), 0);
    int tagged = 0;
    char t[GP_KEY_MAX];
    const char *type;
    for (size_t i = 0; gp_key_template(i, t, &type) >= 0; i++) {
        if (!strstr(t, "{h}") || strstr(t, "<sid>"))
            continue; /* a TCP stream's byte keys are per stream: they expire on their own */
        tagged++;
        int found = 0;
        for (int j = 0; j < GP_HOUSE_NKEYS; j++)
            found += strcmp(all[j], t) == 0;
        cr_assert_eq(found, 1, "%s is not among the house's keys (house rm would leave it)", t);
    }
    cr_assert_eq(tagged, GP_HOUSE_NKEYS);
}

Test(rkeys, house_of_req) {
    char id[64];
    const char *k = "gp:{farm-1}:req";
    cr_assert_eq(gp_key_house_of_req(k, strlen(k), "gp", id, sizeof id), 6);
    cr_assert_str_eq(id, "farm-1");
    cr_assert_eq(gp_key_house_of_req(k, strlen(k), "gq", id, sizeof id), -1);
    const char *s = "gp:{farm-1}:state";
    cr_assert_eq(gp_key_house_of_req(s, strlen(s), "gp", id, sizeof id), -1);
    cr_assert_eq(gp_key_house_of_req(k, strlen(k), "gp", id, 6), -1, "does not fit");
}

Test(rkeys, cluster_slots) {
    /* Values from the Redis Cluster specification. */
    cr_assert_eq(gp_key_slot("123456789", 9), 0x31C3 & 16383);
    cr_assert_eq(gp_key_slot("{user1000}.following", 20), gp_key_slot("user1000", 8));
    cr_assert_eq(gp_key_slot("gp:{farm-1}:req", 15), gp_key_slot("gp:{farm-1}:state", 17));
    cr_assert_eq(gp_key_slot("a{}b", 4), gp_key_slot("a{}b", 4) & 16383);
}

/* README.md's key layout table: rows "| `<p>:...`[, `...`] | TYPE | ... |". The first name
 * of every row is one template of the code with the same type, and every template has its
 * row. */
Test(rkeys, readme_layout_table_matches_the_code) {
    FILE *f = fopen("README.md", "r");
    cr_assert_not_null(f, "README.md not found (run from the repository root)");
    char line[4096];
    int seen[64] = {0};
    size_t rows = 0;
    int in_layout = 0; /* the table of section "Redis key layout" (others quote keys too) */
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0)
            in_layout = strncmp(line, "## Redis key layout", 19) == 0;
        if (!in_layout || strncmp(line, "| `<p>:", 7) != 0)
            continue;
        char *name = line + 3, *end = strchr(name, '`');
        cr_assert_not_null(end);
        *end = '\0';
        char *type = strstr(end + 1, "| ");
        cr_assert_not_null(type, "row %s has no type", name);
        type += 2;
        type[strcspn(type, " |")] = '\0';
        char t[GP_KEY_MAX];
        const char *want;
        size_t i;
        for (i = 0; gp_key_template(i, t, &want) >= 0; i++)
            if (strcmp(t, name) == 0)
                break;
        cr_assert_geq(gp_key_template(i, t, &want), 0,
                      "README.md documents %s, which the code does not build", name);
        cr_assert_str_eq(type, want, "README.md: %s is a %s, the code says %s", name, type, want);
        cr_assert_lt(i, 64);
        cr_assert_eq(seen[i]++, 0, "README.md documents %s twice", name);
        rows++;
    }
    fclose(f);
    char t[GP_KEY_MAX];
    const char *type;
    for (size_t i = 0; gp_key_template(i, t, &type) >= 0; i++)
        cr_assert(seen[i], "%s (%s) is missing from README.md's key layout table", t, type);
    cr_assert_gt(rows, 10);
}
