/* janitor.h — the 504s for requests to houses nobody holds (janitor.c). It reads the held
 * houses (so as to leave them alone) through the br_houses given at init. */
#ifndef BR_JANITOR_H
#define BR_JANITOR_H

#include "house.h"

#include <stdint.h>

void br_janitor_init(const br_env *env, const br_houses *houses); /* both kept */
void br_janitor_tick(uint64_t now);
void br_janitor_load_scripts(void);

#endif
