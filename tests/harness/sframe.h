/* sframe.h — the stream frames (proto/STREAMS.md) the tests build, whichever side they play:
 * header-only, so that unit tests (which do not link the harness) take it too. */
#ifndef GP_TEST_SFRAME_H
#define GP_TEST_SFRAME_H
#include "frame.h"

/* An S_ENTRY of stream sid: has (GP_SE_*), off, ack, data, and rst (NULL: none). */
static inline void h_s_entry(gp_frame *f, const char *sid, uint8_t has, uint64_t off, uint64_t ack,
                             gp_str data, const char *rst) {
    gp_frame_init(f, GP_FRAME_S_ENTRY, 0, 0);
    f->u.s_entry.sid = gp_str_c(sid);
    f->u.s_entry.has = has;
    f->u.s_entry.off = off;
    f->u.s_entry.ack = ack;
    f->u.s_entry.data = data;
    f->u.s_entry.rst = gp_str_c(rst);
}

#endif
