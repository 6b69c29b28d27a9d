/* tokenizer.h - the tokenizer interface and the byte-level tokenizer.
 *
 * A tokenizer is a table of functions plus ctx.  The byte-level tokenizer maps
 * bytes to ids 0..255 and adds named special tokens after them (ids 256...):
 *   256 <|endoftext|>  257 <think>  258 </think>  259 <answer>  260 </answer>
 *   261 <|im_start|>   262 <|im_end|>  263 <|pad|>
 * Special tokens written in the text are recognised when encoding (longest match
 * first); everything else is raw bytes, so any byte string round-trips.
 *
 * The byte-level BPE tokenizer (GPT-2, Llama-3, Qwen2, SmolLM2 families; see
 * docs/tokenizer.md) is built from a struct r1_bpe_spec of plain arrays, which the
 * tokenizer.json reader (core/tokenizer-json.c) and a GGUF reader both fill.
 * All tokenizers are safe for concurrent encode calls from several threads. */
#ifndef R1_TOKENIZER_H
#define R1_TOKENIZER_H

#include <stdbool.h>
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
    /* The Jinja chat template of tokenizer_config.json (or GGUF tokenizer.chat_template),
     * owned, freed by r1_tokenizer_free; NULL when absent.  Callers may read it to tell
     * which chat format the model was trained on. */
    char *chat_template;
};

int r1_tokenizer_bytes_create(struct r1_tokenizer **out);

/* --- byte-level BPE ---------------------------------------------------------------- */

/* One pre-tokenizer step; a list of them runs in order, each on the pieces the previous
 * one made (Hugging Face pre_tokenizers.Sequence). */
enum r1_pretok_kind {
    R1_PRETOK_SPLIT,     /* regex pattern (PCRE2, UTF + UCP), behaviour Isolated: matches and
                          * the text between them become separate pieces */
    R1_PRETOK_DIGITS,    /* Digits: every \p{N} char alone (individual_digits) or runs of them */
    R1_PRETOK_BYTELEVEL, /* ByteLevel(add_prefix_space=false): splits with the GPT-2 pattern
                          * when use_regex, else nothing (the byte mapping is part of BPE) */
};

struct r1_pretok {
    enum r1_pretok_kind kind;
    const char *pattern;    /* SPLIT only */
    bool individual_digits; /* DIGITS only */
    bool use_regex;         /* BYTELEVEL only */
};

struct r1_bpe_spec {
    int n_vocab;
    const char *const *tokens; /* [n_vocab]: id = index; byte-level unicode form ("Ġthe") as in
                                * tokenizer.json's vocab and GGUF tokenizer.ggml.tokens; a
                                * special token is its literal text */
    int n_merges;
    const char *const *merges; /* [n_merges] "left right" in byte-level form, rank = index */
    const bool *special;       /* [n_vocab] or NULL: tokens matched verbatim in the text before
                                * anything else, longest first (added, special, control,
                                * user-defined tokens); their piece is their text */
    int n_pretok;
    const struct r1_pretok *pretok;
    bool nfc;           /* NFC-normalize text between special tokens before pre-tokenizing */
    bool ignore_merges; /* a pre-token that is itself a token is emitted whole (Llama-3) */
    int32_t bos_id, eos_id, pad_id; /* -1 for none */
};

/* Builds a BPE tokenizer; copies everything it keeps from spec.  R1_EFORMAT for a merge or
 * pattern that does not fit the vocabulary (message says which). */
int r1_tokenizer_bpe_create(struct r1_tokenizer **out, const struct r1_bpe_spec *spec);

/* Fills spec->pretok, n_pretok, nfc and ignore_merges for a llama.cpp tokenizer.ggml.pre name:
 * "gpt2", "default", "llama-bpe"/"llama3", "qwen2", "smollm", "deepseek-r1-qwen".  The list
 * is static.  R1_EFORMAT for another name. */
int r1_bpe_spec_set_pre(struct r1_bpe_spec *spec, const char *pre);

/* A view of a BPE tokenizer's spec (arrays owned by tok, valid while it lives); R1_EINVAL for
 * a tokenizer of another kind. */
int r1_tokenizer_bpe_spec(const struct r1_tokenizer *tok, struct r1_bpe_spec *spec);

/* Loads a Hugging Face tokenizer.json (byte-level BPE) and, when tokenizer_config_json is
 * non-NULL and the file exists, bos/eos/pad and chat_template from it.  R1_EIO for an
 * unreadable tokenizer.json, R1_EFORMAT (naming the file) for anything r1 does not read. */
int r1_tokenizer_json_load(struct r1_tokenizer **out, const char *tokenizer_json,
                           const char *tokenizer_config_json);
/* Writes dir/tokenizer.json and dir/tokenizer_config.json (atomically) for a BPE tokenizer,
 * in the form Hugging Face tokenizers/transformers load.  R1_EINVAL for another kind. */
int r1_tokenizer_json_save(const struct r1_tokenizer *tok, const char *dir);
void r1_tokenizer_free(struct r1_tokenizer *tok);

/* Encodes text to a fresh array (caller frees *ids). */
int r1_tokenizer_encode(const struct r1_tokenizer *tok, const char *text, size_t len,
                        int32_t **ids, int *n);
/* Decodes ids to a fresh NUL-terminated byte string (caller frees *text); *len may be NULL. */
int r1_tokenizer_decode(const struct r1_tokenizer *tok, const int32_t *ids, int n, char **text,
                        size_t *len);
int32_t r1_tokenizer_lookup(const struct r1_tokenizer *tok, const char *text);

#endif
