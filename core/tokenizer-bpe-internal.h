/* tokenizer-bpe-internal.h - pieces the BPE tokenizer shares between its files: the GPT-2
 * byte <-> unicode mapping, NFC, and the compiled pre-tokenizer list (tokenizer-pretok.c).
 * Not for use outside core/tokenizer-*.c. */
#ifndef R1_TOKENIZER_BPE_INTERNAL_H
#define R1_TOKENIZER_BPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/tokenizer.h"

/* GPT-2's byte-level alphabet: byte b is written as code point cp[b] (printable bytes as
 * themselves, the others from U+0100 up).  R1_BPE_CP_MAX bounds the code points used. */
#define R1_BPE_CP_MAX 324
void r1_bpe_byte_to_cp(uint32_t cp[256]);

/* *out: the NFC form of s[0..n) (malloc'd, *out_len set), or NULL when s is already NFC
 * for sure (pure ASCII) or is not valid UTF-8 (then s is used as it is). */
int r1_bpe_nfc(const char *s, size_t n, char **out, size_t *out_len);

/* A compiled pre-tokenizer list; immutable after compile, so shared by concurrent encodes. */
struct r1_pretok_list;

/* R1_EFORMAT naming the step and PCRE2's message for a pattern that does not compile. */
int r1_pretok_compile(struct r1_pretok_list **out, const struct r1_pretok *steps, int n);
void r1_pretok_free(struct r1_pretok_list *pl);

/* Calls fn(arg, piece, piece_len) for each non-empty piece of text[0..len), in order;
 * stops at and returns fn's first non-zero result. */
int r1_pretok_split(const struct r1_pretok_list *pl, const char *text, size_t len,
                    int (*fn)(void *arg, const char *piece, size_t len), void *arg);

#endif
