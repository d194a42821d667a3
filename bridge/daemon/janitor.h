/* janitor.h — the 504s for requests to houses nobody holds (janitor.c). It reads the held
 * houses (so as to leave them alone) through the br_houses it is made with, and answers through
 * the request core (br_requests). A context: main.c makes it and passes it to every call. */
#ifndef BR_JANITOR_H
#define BR_JANITOR_H

#include "house.h"

#include <stdint.h>

typedef struct br_janitor br_janitor;

/* NULL: out of memory. env, houses and reqs are kept (they outlive it). */
br_janitor *br_janitor_new(const br_env *env, const br_houses *houses, br_requests *reqs);
void br_janitor_free(br_janitor *j); /* after the loop: no command of it is outstanding */
void br_janitor_tick(br_janitor *j, uint64_t now);
void br_janitor_load_scripts(br_janitor *j);

#endif
