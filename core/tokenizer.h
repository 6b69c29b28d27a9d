/* tokenizer.h - the tokenizer interface and the byte-level tokenizer.
 *
 * A tokenizer is a table of functions plus ctx.  The byte-level tokenizer maps
 * bytes to ids 0..255 and adds named special tokens after them (ids 256...):
 *   256 <|endoftext|>  257 <think>  258 </think>  259 <answer>  260 </answer>
 *   261 <|im_start|>   262 <|im_end|>  263 <|pad|>
 * Special tokens written in the text are recognised when encoding (longest match
 * first); everything else is raw bytes, so any byte string round-trips.
 * The BPE tokenizer (tokenizer.json) lands behind the same interface. */
#ifndef R1_TOKENIZER_H
#define R1_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct r1_tokenizer;

struct r1_tokenizer_ops {
    const char *name;
    /* Appends the ids of text[0..len) to *ids (realloc'ed, caller frees), *n updated. */
    int (*encode)(const struct r1_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                  int *n, int *cap);
    /* The bytes of one token (not NUL-terminated), *len set; NULL for a bad id. */
    const char *(*piece)(const struct r1_tokenizer *tok, int32_t id, size_t *len);
    /* Id of a token by its exact text, -1 when absent. */
    int32_t (*lookup)(const struct r1_tokenizer *tok, const char *text);
    void (*release)(struct r1_tokenizer *tok);
};

struct r1_tokenizer {
    const struct r1_tokenizer_ops *ops;
    void *ctx;
    int vocab_size;
    int32_t bos_id, eos_id, pad_id; /* -1 when the tokenizer has none */
};

int r1_tokenizer_bytes_create(struct r1_tokenizer **out);
void r1_tokenizer_free(struct r1_tokenizer *tok);

/* Encodes text to a fresh array (caller frees *ids). */
int r1_tokenizer_encode(const struct r1_tokenizer *tok, const char *text, size_t len,
                        int32_t **ids, int *n);
/* Decodes ids to a fresh NUL-terminated byte string (caller frees *text); *len may be NULL. */
int r1_tokenizer_decode(const struct r1_tokenizer *tok, const int32_t *ids, int n, char **text,
                        size_t *len);
int32_t r1_tokenizer_lookup(const struct r1_tokenizer *tok, const char *text);

#endif
