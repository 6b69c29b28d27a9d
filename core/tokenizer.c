/* tokenizer.c - the generic tokenizer entry points (see tokenizer.h).
 *
 * They work on any implementation through its ops table: encode into a fresh
 * array, decode by concatenating pieces into a fresh NUL-terminated string.
 * Lifecycle: ops->release frees what the implementation owns (ctx);
 * r1_tokenizer_free calls it and then frees the struct itself. */
#include "core/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

void r1_tokenizer_free(struct r1_tokenizer *tok)
{
    if (!tok)
        return;
    if (tok->ops && tok->ops->release)
        tok->ops->release(tok);
    free(tok->chat_template);
    free(tok);
}

int r1_tokenizer_encode(const struct r1_tokenizer *tok, const char *text, size_t len,
                        int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (!text && len > 0)
        return r1_err_set(R1_EINVAL, "tokenizer encode: text is NULL but len is %zu", len);
    int32_t *out = NULL;
    int count = 0, cap = 0;
    int rc = tok->ops->encode(tok, text, len, &out, &count, &cap);
    if (rc < 0) {
        free(out);
        return rc;
    }
    if (!out) { /* empty text: still hand back an array the caller can free */
        out = malloc(sizeof(int32_t));
        if (!out)
            return r1_err_set(R1_ENOMEM, "tokenizer encode: out of memory");
    }
    *ids = out;
    *n = count;
    return 0;
}

int r1_tokenizer_decode(const struct r1_tokenizer *tok, const int32_t *ids, int n, char **text,
                        size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    if (n < 0 || (!ids && n > 0))
        return r1_err_set(R1_EINVAL, "tokenizer decode: bad id list (n = %d)", n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t plen;
        if (!tok->ops->piece(tok, ids[i], &plen))
            return r1_err_set(R1_EINVAL,
                              "tokenizer decode: id %d at position %d is not in the %s "
                              "vocabulary [0, %d); check that the model and tokenizer match",
                              (int)ids[i], i, tok->ops->name, tok->vocab_size);
        total += plen;
    }
    char *out = malloc(total + 1);
    if (!out)
        return r1_err_set(R1_ENOMEM, "tokenizer decode: cannot allocate %zu bytes", total + 1);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t plen;
        const char *piece = tok->ops->piece(tok, ids[i], &plen);
        memcpy(out + at, piece, plen);
        at += plen;
    }
    out[at] = '\0';
    *text = out;
    if (len)
        *len = at;
    return 0;
}

int32_t r1_tokenizer_lookup(const struct r1_tokenizer *tok, const char *text)
{
    if (!text)
        return -1;
    return tok->ops->lookup(tok, text);
}
