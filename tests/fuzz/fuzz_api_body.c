/* fuzz_api_body.c — libFuzzer target for the JSON API's request bodies (bridge/admin/api_body.c):
 * arbitrary bytes as the body of POST /api/houses. What is accepted must be a valid house id
 * and labels that are a JSON object of at most BR_API_MAX_LABELS short strings; what is
 * refused must say why. */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char id[GP_MAX_HOUSE_ID + 1];
    char *labels = NULL;
    const char *why = NULL;
    if (br_api_parse_add(data, size, id, &labels, &why) != 0) {
        assert(why && *why && !labels);
        return 0;
    }
    assert(gp_house_id_valid(gp_str_c(id)));
    json_t *l = json_loads(labels, 0, NULL);
    assert(json_is_object(l) && json_object_size(l) <= BR_API_MAX_LABELS);
    const char *k;
    json_t *v;
    json_object_foreach(l, k, v) {
        assert(json_is_string(v) && json_string_length(v) <= BR_API_MAX_LABEL_LEN);
        assert(*k && strlen(k) <= BR_API_MAX_LABEL_KEY);
    }
    json_decref(l);
    free(labels);
    return 0;
}
