/* api_body.h — the JSON API's request bodies (bridge/ADMIN.md), parsed and checked. Pure: no
 * I/O; fuzzed by tests/fuzz/fuzz_api_body.c. */
#ifndef BR_API_BODY_H
#define BR_API_BODY_H

#include "auth.h"

#include <stddef.h>

#define BR_API_MAX_LABELS 64     /* labels per house */
#define BR_API_MAX_LABEL_KEY 64  /* bytes of a label's name */
#define BR_API_MAX_LABEL_LEN 256 /* bytes of a label's value */

/* POST /api/houses: {"id": "...", "labels": {"k": "v", ...}} (labels optional, null or an
 * object of at most BR_API_MAX_LABELS strings). 0 with the id in id[] and the labels as
 * compact JSON with sorted keys in *labels (malloc'd; "{}" when none); or -1 with *why, a
 * message for the client (static). */
int br_api_parse_add(const void *body, size_t len, char id[GP_MAX_HOUSE_ID + 1], char **labels,
                     const char **why);

#endif
