/* utf8.h - strict UTF-8 decoding (no overlongs, surrogates or values past U+10FFFF)
 * and a cleaner that makes any byte string valid UTF-8 (for JSON output of model text). */
#ifndef R1_UTF8_H
#define R1_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s (n bytes available) into *cp; returns its length in
 * bytes (1-4), or 0 when the bytes there are not valid UTF-8. */
size_t r1_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* A malloc'd NUL-terminated copy of s[0..n) in which every invalid byte is replaced by
 * U+FFFD; NULL when out of memory. */
char *r1_utf8_clean(const char *s, size_t n);

#endif
