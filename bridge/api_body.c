/* api_body.c — the JSON API's request bodies: parsed with jansson, checked against the
 * registry's limits. Pure (see api_body.h). */
#include "api_body.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int br_api_parse_add(const void *body, size_t len, char id[GP_MAX_HOUSE_ID + 1], char **labels,
                     const char **why) {
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    *labels = NULL;
    if (!json_is_object(j)) {
        *why = j ? "the body must be a JSON object" : "malformed JSON";
        goto out;
    }
    json_t *jid = json_object_get(j, "id");
    const char *s = json_string_value(jid);
    /* json_string_length: an id with a NUL inside is not the id it would print as. */
    if (!s || strlen(s) != json_string_length(jid) || !gp_house_id_valid(gp_str_c(s))) {
        *why = "bad id: 1-64 of [A-Za-z0-9_.-]";
        goto out;
    }
    snprintf(id, GP_MAX_HOUSE_ID + 1, "%s", s);
    json_t *l = json_object_get(j, "labels");
    if (l && !json_is_null(l)) {
        const char *k;
        json_t *v;
        int ok = json_is_object(l) && json_object_size(l) <= BR_API_MAX_LABELS;
        json_object_foreach(l, k, v) {
            ok = ok && json_is_string(v) && strlen(k) > 0 && strlen(k) <= BR_API_MAX_LABEL_KEY &&
                 json_string_length(v) <= BR_API_MAX_LABEL_LEN;
        }
        if (!ok) {
            *why = "bad labels: an object of at most 64 strings";
            goto out;
        }
        *labels = json_dumps(l, JSON_COMPACT | JSON_SORT_KEYS);
    } else {
        *labels = strdup("{}");
    }
    rc = *labels ? 0 : -1;
    if (rc)
        *why = "out of memory";
out:
    json_decref(j);
    return rc;
}
