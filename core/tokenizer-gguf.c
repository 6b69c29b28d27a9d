/* tokenizer-gguf.c - the tokenizer a GGUF file carries (tokenizer.ggml.*).
 *
 * tokenizer.ggml.model "gpt2" is byte-level BPE: tokens, merges ("left right", rank =
 * index), token_type (3 control and 4 user-defined tokens are matched verbatim before
 * BPE, as llama.cpp does), bos/eos/padding ids, and tokenizer.ggml.pre naming the
 * pre-tokenizer (r1_bpe_spec_set_pre).  tokenizer.chat_template is kept on the
 * tokenizer.  Other tokenizer models (llama's SentencePiece "llama", "bert", ...) are
 * R1_EFORMAT naming the file. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/gguf.h"
#include "core/tokenizer.h"

enum { GGUF_TOKEN_CONTROL = 3, GGUF_TOKEN_USER_DEFINED = 4 };

/* The id under key, -1 when absent or outside the vocabulary. */
static int opt_id(const struct r1_gguf *g, const char *key, int n_vocab, int32_t *out)
{
    int rc = r1_gguf_get_token_id(g, key, out);
    if (!rc && *out >= n_vocab)
        *out = -1;
    return rc;
}

int r1_tokenizer_gguf_load(struct r1_tokenizer **out, const struct r1_gguf *g)
{
    *out = NULL;
    const char *model = NULL, *pre = "default", *tmpl = NULL;
    const char *const *tokens = NULL, *const *merges = NULL;
    uint64_t n_tokens = 0, n_merges = 0, n_types = 0;
    int32_t *types = NULL;
    bool *special = NULL;
    int rc;

    if ((rc = r1_gguf_get_str(g, "tokenizer.ggml.model", &model)))
        return r1_err_wrap(rc, "%s: no tokenizer (tokenizer.ggml.model)", g->path);
    if (strcmp(model, "gpt2") != 0)
        return r1_err_set(R1_EFORMAT,
                          "%s: tokenizer.ggml.model is \"%s\"; r1 reads byte-level BPE (\"gpt2\") "
                          "tokenizers only — use a model with a tokenizer.json BPE tokenizer",
                          g->path, model);
    if (r1_gguf_has(g, "tokenizer.ggml.pre") &&
        (rc = r1_gguf_get_str(g, "tokenizer.ggml.pre", &pre)))
        return rc;
    if ((rc = r1_gguf_get_strs(g, "tokenizer.ggml.tokens", &tokens, &n_tokens)) ||
        (r1_gguf_has(g, "tokenizer.ggml.merges") &&
         (rc = r1_gguf_get_strs(g, "tokenizer.ggml.merges", &merges, &n_merges))))
        goto out;
    if (n_tokens == 0 || n_tokens > INT32_MAX || n_merges > INT32_MAX) {
        rc = r1_err_set(R1_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", g->path,
                        (unsigned long long)n_tokens);
        goto out;
    }
    special = calloc(n_tokens, sizeof(bool));
    if (!special) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory for the tokenizer", g->path);
        goto out;
    }
    if (r1_gguf_has(g, "tokenizer.ggml.token_type")) {
        if ((rc = r1_gguf_get_i32s(g, "tokenizer.ggml.token_type", &types, &n_types)))
            goto out;
        if (n_types != n_tokens) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                            g->path, (unsigned long long)n_types, (unsigned long long)n_tokens);
            goto out;
        }
        for (uint64_t i = 0; i < n_tokens; i++)
            special[i] = types[i] == GGUF_TOKEN_CONTROL || types[i] == GGUF_TOKEN_USER_DEFINED;
    }
    int nv = (int)n_tokens;
    struct r1_bpe_spec spec = {
        .n_vocab = nv,
        .tokens = tokens,
        .n_merges = (int)n_merges,
        .merges = merges,
        .special = special,
    };
    if ((rc = opt_id(g, "tokenizer.ggml.bos_token_id", nv, &spec.bos_id)) ||
        (rc = opt_id(g, "tokenizer.ggml.eos_token_id", nv, &spec.eos_id)) ||
        (rc = opt_id(g, "tokenizer.ggml.padding_token_id", nv, &spec.pad_id)))
        goto out;
    if ((rc = r1_bpe_spec_set_pre(&spec, pre))) {
        r1_err_wrap(rc, "%s: tokenizer.ggml.pre", g->path);
        goto out;
    }
    if ((rc = r1_tokenizer_bpe_create(out, &spec))) {
        r1_err_wrap(rc, "%s", g->path);
        goto out;
    }
    if (r1_gguf_has(g, "tokenizer.chat_template") &&
        !r1_gguf_get_str(g, "tokenizer.chat_template", &tmpl) &&
        !((*out)->chat_template = strdup(tmpl))) {
        r1_tokenizer_free(*out);
        *out = NULL;
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory for the chat template", g->path);
    }
out:
    free(types);
    free(special);
    return rc;
}
