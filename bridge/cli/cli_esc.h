/* cli_esc.h — what the `ghostport` CLI prints of text that others wrote (a house's reply
 * headers and error message, labels, bridge ids, recent requests): terminal control
 * characters escaped, so a hostile house or producer cannot retitle the terminal (OSC),
 * move the cursor, or forge lines (CR/LF). Pure. */
#ifndef GP_CLI_ESC_H
#define GP_CLI_ESC_H

#include <stddef.h>

/* Escapes s[0..len) into out[cap] (NUL-terminated when cap > 0): C0 controls and DEL as
 * \n, \r, \t or \xHH; C1 controls encoded as UTF-8 (U+0080..U+009F, bytes C2 80..C2 9F) as
 * \u0080..\u009f; every byte that is not part of valid UTF-8 (raw 0x80..0x9F among them,
 * which an 8-bit terminal takes as C1) as \xHH. Valid UTF-8 text and backslashes are kept
 * as they are. Cuts only between characters or escapes. Returns the length the whole
 * escaped text needs (without the NUL), as snprintf does. */
size_t cli_esc(char *out, size_t cap, const char *s, size_t len);

/* The same into a malloc'd string (NULL when out of memory). */
char *cli_esc_dup(const char *s, size_t len);

/* NUL-terminated s escaped into out[cap]; returns out (for printf arguments). */
const char *cli_esc_str(char *out, size_t cap, const char *s);

#endif
