/* tokenize.c - `r1 tokenize`: text to token ids and back with a model's tokenizer.
 *
 *   r1 tokenize --model PATH            < text   → [id,id,...]\n  (one JSON array, one line)
 *   r1 tokenize --model PATH --decode   < [ids]  → the decoded bytes, nothing appended
 *
 * Encoding reads stdin as raw bytes (any bytes: a trailing newline is text too), recognises
 * special tokens written in the text and adds no BOS.  Decoding reads one JSON array of
 * integer ids; bad JSON (line:column), a non-integer or an id outside 0..vocab-1 (its
 * 0-based index in the array) exit 2. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "core/tokenizer.h"

/* All of f into a malloc'd buffer (NUL-terminated, *n bytes). */
static int read_all(FILE *f, char **out, size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len + 1 < cap)
            break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    if (!buf)
        return r1_err_set(R1_ENOMEM, "stdin: out of memory reading the input");
    if (ferror(f)) {
        free(buf);
        return r1_err_set(R1_EIO, "stdin: read error");
    }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return 0;
}

static int encode(const struct r1_tokenizer *tok, const char *text, size_t n)
{
    int32_t *ids = NULL;
    int n_ids = 0;
    int rc = r1_tokenizer_encode(tok, text, n, &ids, &n_ids);
    if (rc)
        return rc;
    putchar('[');
    for (int i = 0; i < n_ids; i++)
        printf(i ? ",%d" : "%d", (int)ids[i]);
    printf("]\n");
    free(ids);
    return 0;
}

static int decode(const struct r1_tokenizer *tok, const char *text, size_t n)
{
    json_error_t e;
    json_t *a = json_loadb(text, n, 0, &e);
    if (!a)
        return r1_err_set(R1_EINVAL, "stdin:%d:%d: bad JSON (%s); expected an array of token ids",
                          e.line, e.column, e.text);
    int rc = 0;
    int32_t *ids = NULL;
    size_t count = json_is_array(a) ? json_array_size(a) : 0;
    if (!json_is_array(a)) {
        rc = r1_err_set(R1_EINVAL, "stdin: expected a JSON array of token ids");
        goto out;
    }
    if (count > (size_t)INT32_MAX / 2 || !(ids = malloc((count ? count : 1) * sizeof(int32_t)))) {
        rc = r1_err_set(R1_ENOMEM, "stdin: out of memory for %zu ids", count);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(a, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        size_t len = 0;
        if (!json_is_integer(v)) {
            rc = r1_err_set(R1_EINVAL, "stdin: element %zu of the array is not an integer id", i);
            goto out;
        }
        if (id < 0 || id >= tok->vocab_size || !tok->ops->piece(tok, (int32_t)id, &len)) {
            rc = r1_err_set(R1_EINVAL, "stdin: element %zu: id %lld is out of range 0..%d", i,
                            (long long)id, tok->vocab_size - 1);
            goto out;
        }
        ids[i] = (int32_t)id;
    }
    char *out = NULL;
    size_t out_len = 0;
    if ((rc = r1_tokenizer_decode(tok, ids, (int)count, &out, &out_len)))
        goto out;
    fwrite(out, 1, out_len, stdout);
    free(out);
out:
    free(ids);
    json_decref(a);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    bool dec = false;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "model", 0, &model, "PATH", "model (.gguf or HF dir) whose tokenizer to use"},
        {R1_OPT_FLAG, "decode", 0, &dec, NULL, "read a JSON array of ids, write the text"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("tokenize", "--model PATH [--decode] < INPUT",
                          "Encodes the text on stdin to token ids, printed as one JSON array on\n"
                          "one line (special tokens written in the text are recognised; no BOS\n"
                          "is added).  With --decode, reads a JSON array of ids on stdin and\n"
                          "writes the decoded bytes (nothing appended).",
                          opts, argc, argv, pos, 0, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (!model) {
        fprintf(stderr, "r1 tokenize: needs --model PATH (see 'r1 tokenize --help')\n");
        return 2;
    }
    struct r1_tokenizer *tok = NULL;
    char *text = NULL;
    size_t n = 0;
    if (!(rc = cmd_model_open(model, NULL, NULL, &tok)) && !(rc = read_all(stdin, &text, &n)))
        rc = dec ? decode(tok, text, n) : encode(tok, text, n);
    if (!rc && fflush(stdout) != 0)
        rc = r1_err_set(R1_EIO, "stdout: write error");
    free(text);
    r1_tokenizer_free(tok);
    return rc ? cmd_fail("tokenize", rc) : 0;
}
