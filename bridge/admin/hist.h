/* hist.h — the request history a bridge writes (hist.c; the layout: bridge/store/store_hist.h,
 * bridge/admin/ADMIN.md "History"): every final reply and body byte is counted in memory, per
 * house and for the bridge, in the current minute; no Redis command per request. Once a minute
 * (or every --history-flush-ms) each house that had traffic gets one script that adds its
 * record into <p>:{h}:hist, and the bridge one for <p>:bhist:<bid> and one for <p>:hist; a
 * minute without traffic costs nothing. I/O side (Redis). */
#ifndef BR_HIST_H
#define BR_HIST_H

#include "../daemon/env.h"

#include <stddef.h>
#include <stdint.h>

typedef struct br_hist br_hist;

/* A context over env (kept). NULL: out of memory. */
br_hist *br_hist_new(const br_env *env);
void br_hist_free(br_hist *h); /* what was not written is lost (NULL ok) */
void br_hist_load_scripts(br_hist *h);

/* A final reply of `house`: an error or not, its latency in us (BR_HIST_NO_LATENCY: none, a
 * reply the bridge wrote without forwarding, such as the janitor's 504). */
#define BR_HIST_NO_LATENCY UINT64_MAX
void br_hist_reply(br_hist *h, const char *house, int is_error, uint64_t latency_us);
/* Body bytes of house's requests sent to it (from_house 0) or of its responses (1). */
void br_hist_bytes(br_hist *h, const char *house, int from_house, size_t n);

/* Every second: a new minute (or the flush period past) closes the counts gathered so far,
 * and the closed ones are sent, at most BR_HIST_BATCH houses a call. */
#define BR_HIST_BATCH 5000
void br_hist_tick(br_hist *h);
/* Closes and sends everything now (the shutdown). Returns how many scripts were sent. */
size_t br_hist_flush(br_hist *h);
/* 1 while some counts are not sent yet. */
int br_hist_pending(const br_hist *h);

#endif
