/* tokenizer-bytes.c - the byte-level tokenizer (see tokenizer.h).
 *
 * Ids 0..255 are the bytes themselves; ids 256..263 are the special tokens in the
 * order listed in tokenizer.h.  Encoding scans left to right: where a special
 * token's text starts, the longest such match is emitted as one id, otherwise the
 * byte is.  Any byte string (NUL, invalid UTF-8) round-trips; a string that only
 * looks like the start of a special ("<thin") stays bytes.  eos = <|endoftext|>,
 * pad = <|pad|>, no bos.  ctx holds the 256 one-byte pieces. */
#include "core/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define BYTES_N 256

static const char *const special_text[] = {
    "<|endoftext|>", "<think>",      "</think>", "<answer>",
    "</answer>",     "<|im_start|>", "<|im_end|>", "<|pad|>",
};
#define SPECIAL_N ((int)(sizeof(special_text) / sizeof(special_text[0])))

/* Ids 0..255 consumed by at most len ids: one pass, capacity grown once. */
static int bytes_encode(const struct r1_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                        int *n, int *cap)
{
    (void)tok;
    if (len > (size_t)(INT_MAX - *n))
        return r1_err_set(R1_EINVAL, "byte tokenizer: text of %zu bytes is too long to encode "
                                     "(at most %d tokens per array)",
                          len, INT_MAX);
    int need = *n + (int)len;
    if (need > *cap) {
        int32_t *grown = realloc(*ids, sizeof(int32_t) * (size_t)(need > 0 ? need : 1));
        if (!grown)
            return r1_err_set(R1_ENOMEM, "byte tokenizer: cannot grow the id array to %d", need);
        *ids = grown;
        *cap = need;
    }
    int32_t *out = *ids;
    int count = *n;
    size_t i = 0;
    while (i < len) {
        int best = -1;
        size_t best_len = 0;
        if (text[i] == '<') { /* every special starts with '<' */
            for (int s = 0; s < SPECIAL_N; s++) {
                size_t sl = strlen(special_text[s]);
                if (sl > best_len && sl <= len - i && memcmp(text + i, special_text[s], sl) == 0) {
                    best = s;
                    best_len = sl;
                }
            }
        }
        if (best >= 0) {
            out[count++] = BYTES_N + best;
            i += best_len;
        } else {
            out[count++] = (unsigned char)text[i];
            i++;
        }
    }
    *n = count;
    return 0;
}

static const char *bytes_piece(const struct r1_tokenizer *tok, int32_t id, size_t *len)
{
    if (id >= 0 && id < BYTES_N) {
        *len = 1;
        return (const char *)tok->ctx + id;
    }
    if (id >= BYTES_N && id < BYTES_N + SPECIAL_N) {
        *len = strlen(special_text[id - BYTES_N]);
        return special_text[id - BYTES_N];
    }
    *len = 0;
    return NULL;
}

static int32_t bytes_lookup(const struct r1_tokenizer *tok, const char *text)
{
    (void)tok;
    if (text[0] != '\0' && text[1] == '\0')
        return (unsigned char)text[0];
    for (int s = 0; s < SPECIAL_N; s++)
        if (strcmp(text, special_text[s]) == 0)
            return BYTES_N + s;
    return -1;
}

static void bytes_release(struct r1_tokenizer *tok)
{
    free(tok->ctx);
    tok->ctx = NULL;
}

static const struct r1_tokenizer_ops bytes_ops = {
    .name = "bytes",
    .encode = bytes_encode,
    .piece = bytes_piece,
    .lookup = bytes_lookup,
    .release = bytes_release,
};

int r1_tokenizer_bytes_create(struct r1_tokenizer **out)
{
    *out = NULL;
    struct r1_tokenizer *tok = calloc(1, sizeof(*tok));
    unsigned char *pieces = malloc(BYTES_N);
    if (!tok || !pieces) {
        free(tok);
        free(pieces);
        return r1_err_set(R1_ENOMEM, "byte tokenizer: out of memory");
    }
    for (int i = 0; i < BYTES_N; i++)
        pieces[i] = (unsigned char)i;
    tok->ops = &bytes_ops;
    tok->ctx = pieces;
    tok->vocab_size = BYTES_N + SPECIAL_N;
    tok->bos_id = -1;
    tok->eos_id = BYTES_N + 0; /* <|endoftext|> */
    tok->pad_id = BYTES_N + 7; /* <|pad|> */
    *out = tok;
    return 0;
}
