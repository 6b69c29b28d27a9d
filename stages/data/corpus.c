/* corpus.c - tokenised corpora and their resumable sampler (see corpus.h). */
#include "stages/data/corpus.h"

#include "stages/data/gen.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/sha256.h"

/* Growable token buffer. */
struct tokbuf {
    int32_t *v;
    int64_t n, cap;
};

static int tokbuf_push(struct tokbuf *b, const int32_t *ids, int64_t n)
{
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        int32_t *v = realloc(b->v, (size_t)cap * sizeof(int32_t));
        if (!v)
            return r1_err_set(R1_ENOMEM, "corpus: out of memory (%lld tokens)", (long long)cap);
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, ids, (size_t)n * sizeof(int32_t));
    b->n += n;
    return 0;
}

struct builder {
    struct r1_corpus *c;
    struct tokbuf toks;
    int64_t *start;
    int32_t *plen;
    int64_t cap;
    const struct r1_tokenizer *tok;
};

/* Appends one example: text (documents) or prompt + completion (pairs). */
static int add_example(struct builder *b, const char *a, size_t alen, const char *comp,
                       size_t clen)
{
    struct r1_corpus *c = b->c;
    if (c->n_examples + 2 > b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 1024;
        int64_t *s = realloc(b->start, (size_t)cap * sizeof(int64_t));
        if (s)
            b->start = s;
        int32_t *p = realloc(b->plen, (size_t)cap * sizeof(int32_t));
        if (p)
            b->plen = p;
        if (!s || !p)
            return r1_err_set(R1_ENOMEM, "corpus: out of memory (%lld examples)", (long long)cap);
        b->cap = cap;
    }
    b->start[c->n_examples] = b->toks.n;
    int32_t *ids = NULL;
    int n = 0, rc = r1_tokenizer_encode(b->tok, a, alen, &ids, &n);
    if (!rc)
        rc = tokbuf_push(&b->toks, ids, n);
    free(ids);
    if (rc)
        return rc;
    b->plen[c->n_examples] = n;
    if (comp) {
        ids = NULL;
        rc = r1_tokenizer_encode(b->tok, comp, clen, &ids, &n);
        if (!rc)
            rc = tokbuf_push(&b->toks, ids, n);
        free(ids);
        if (rc)
            return rc;
    }
    int32_t eos = b->tok->eos_id;
    if ((rc = tokbuf_push(&b->toks, &eos, 1)))
        return rc;
    c->n_examples++;
    return 0;
}

/* Documents separated by blank lines; a document keeps its inner newlines. */
static int parse_text(struct builder *b, const char *d, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (d[i] == '\n' || d[i] == '\r')) /* blank lines */
            i++;
        size_t s = i, e = i;
        while (i < len) {
            size_t ls = i;
            while (i < len && d[i] != '\n')
                i++;
            int blank = 1;
            for (size_t k = ls; k < i; k++)
                if (d[k] != ' ' && d[k] != '\t' && d[k] != '\r')
                    blank = 0;
            if (blank)
                break;
            e = i;
            if (i < len)
                i++;
        }
        if (e > s) {
            int rc = add_example(b, d + s, e - s, NULL, 0);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int parse_jsonl(struct builder *b, const struct r1_corpus_spec *sp, char *d, size_t len)
{
    const char *tf = sp->text_field ? sp->text_field : "text";
    const char *pf = sp->prompt_field ? sp->prompt_field : "prompt";
    const char *cf = sp->completion_field ? sp->completion_field : "completion";
    int lineno = 0;
    char *p = d, *end = d + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        size_t ll = (size_t)(le - p);
        int blank = 1;
        for (size_t k = 0; k < ll; k++)
            if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r')
                blank = 0;
        if (!blank) {
            json_error_t e;
            json_t *o = json_loadb(p, ll, 0, &e);
            if (!o || !json_is_object(o)) {
                json_decref(o);
                return r1_err_set(R1_EINVAL, "%s:%d: not a JSON object (%s); each line must be "
                                  "one object", sp->path, lineno, o ? "wrong type" : e.text);
            }
            int rc;
            if (b->c->kind == R1_CORPUS_DOCUMENTS) {
                json_t *t = json_object_get(o, tf);
                if (!json_is_string(t)) {
                    json_decref(o);
                    return r1_err_set(R1_EINVAL, "%s:%d: field \"%s\" is missing or not a string",
                                      sp->path, lineno, tf);
                }
                rc = add_example(b, json_string_value(t), json_string_length(t), NULL, 0);
            } else {
                json_t *pr = json_object_get(o, pf), *co = json_object_get(o, cf);
                if (!json_is_string(pr) || !json_is_string(co)) {
                    json_decref(o);
                    return r1_err_set(R1_EINVAL, "%s:%d: fields \"%s\" and \"%s\" must both be "
                                      "strings", sp->path, lineno, pf, cf);
                }
                rc = add_example(b, json_string_value(pr), json_string_length(pr),
                                 json_string_value(co), json_string_length(co));
            }
            json_decref(o);
            if (rc)
                return rc;
        }
        p = le + 1;
    }
    return 0;
}

/* The generator's examples as JSONL text (documents are their text_field). */
static int generate(const struct r1_corpus_spec *sp, char **data, size_t *len)
{
    struct r1_datagen *g = NULL;
    int rc = r1_datagen_parse(&g, sp->generator);
    if (rc)
        return rc;
    FILE *f = open_memstream(data, len);
    if (!f) {
        r1_datagen_free(g);
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    }
    rc = r1_datagen_write(g, sp->gen_seed, R1_SPLIT_TRAIN, sp->gen_n, f);
    r1_datagen_free(g);
    if (fclose(f) != 0 && !rc)
        rc = r1_err_set(R1_ENOMEM, "corpus: out of memory");
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

int r1_corpus_load(struct r1_corpus **out, const struct r1_corpus_spec *sp,
                   const struct r1_tokenizer *tok)
{
    if (tok->eos_id < 0)
        return r1_err_set(R1_EINVAL, "%s: the tokenizer has no end-of-text token to separate "
                          "examples", sp->path);
    if (sp->kind == R1_CORPUS_PAIRS && sp->format != R1_CORPUS_JSONL)
        return r1_err_set(R1_EINVAL, "%s: prompt/completion pairs are read from JSONL; set the "
                          "format to jsonl", sp->path);
    char *data = NULL;
    size_t len = 0;
    int rc = sp->generator ? generate(sp, &data, &len) : r1_file_read(sp->path, &data, &len);
    if (rc == R1_EIO) /* a data file named in a recipe: bad input */
        return r1_err_wrap(R1_EINVAL, "data file");
    if (rc)
        return rc;
    struct r1_corpus *c = calloc(1, sizeof(*c));
    struct builder b = {c, {0}, NULL, NULL, 0, tok};
    if (!c) {
        free(data);
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    }
    c->kind = sp->kind;
    rc = r1_sha256_bytes(c->sha256, data, len);
    if (!rc)
        rc = sp->format == R1_CORPUS_TEXT ? parse_text(&b, data, len) : parse_jsonl(&b, sp, data, len);
    free(data);
    if (!rc && c->n_examples == 0)
        rc = r1_err_set(R1_EINVAL, "%s: no examples in the file", sp->path);
    if (!rc) {
        b.start[c->n_examples] = b.toks.n;
        c->tokens = b.toks.v;
        c->n_tokens = b.toks.n;
        c->start = b.start;
        c->prompt_len = b.plen;
        b.toks.v = NULL;
        b.start = NULL;
        b.plen = NULL;
        if (c->kind == R1_CORPUS_DOCUMENTS) {
            c->doc = malloc((size_t)c->n_tokens * sizeof(int32_t));
            if (!c->doc)
                rc = r1_err_set(R1_ENOMEM, "corpus: out of memory");
            for (int64_t e = 0; !rc && e < c->n_examples; e++)
                for (int64_t t = c->start[e]; t < c->start[e + 1]; t++)
                    c->doc[t] = (int32_t)e;
        }
    }
    free(b.toks.v);
    free(b.start);
    free(b.plen);
    if (rc) {
        r1_corpus_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void r1_corpus_free(struct r1_corpus *c)
{
    if (!c)
        return;
    free(c->tokens);
    free(c->start);
    free(c->prompt_len);
    free(c->doc);
    free(c);
}

int64_t r1_corpus_rows(const struct r1_corpus *c, int T)
{
    if (c->kind == R1_CORPUS_PAIRS)
        return c->n_examples;
    return T > 0 && c->n_tokens > T ? (c->n_tokens - 1) / T : 0;
}

static void shuffle_epoch(struct r1_sampler *s)
{
    for (int64_t i = 0; i < s->n_rows; i++)
        s->order[i] = i;
    struct r1_rng r = r1_rng_make(s->seed, R1_STREAM_DATA + (uint64_t)s->epoch);
    r1_rng_shuffle(&r, s->order, s->n_rows);
}

int r1_sampler_init(struct r1_sampler *s, const struct r1_corpus *c, int T, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->c = c;
    s->T = T;
    s->seed = seed;
    s->n_rows = r1_corpus_rows(c, T);
    if (s->n_rows <= 0)
        return r1_err_set(R1_EINVAL, "corpus: %lld tokens is fewer than seq_len + 1 = %d; use "
                          "more data or a shorter seq_len", (long long)c->n_tokens, T + 1);
    s->order = malloc((size_t)s->n_rows * sizeof(int64_t));
    if (!s->order)
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    shuffle_epoch(s);
    return 0;
}

int r1_sampler_seek(struct r1_sampler *s, int64_t epoch, int64_t cursor)
{
    if (epoch < 0 || cursor < 0 || cursor > s->n_rows)
        return r1_err_set(R1_EINVAL, "corpus: data position (epoch %lld, row %lld) does not fit "
                          "a corpus of %lld rows; the data changed since the checkpoint",
                          (long long)epoch, (long long)cursor, (long long)s->n_rows);
    s->epoch = epoch;
    s->cursor = cursor;
    shuffle_epoch(s);
    return 0;
}

void r1_sampler_release(struct r1_sampler *s)
{
    free(s->order);
    s->order = NULL;
}

int64_t r1_sampler_next(struct r1_sampler *s, int B, int32_t *tokens, int32_t *pos, int32_t *seg,
                        int32_t *targets, float *weights)
{
    const struct r1_corpus *c = s->c;
    int T = s->T;
    int64_t scored = 0;
    for (int b = 0; b < B; b++) {
        if (s->cursor == s->n_rows) {
            s->epoch++;
            s->cursor = 0;
            shuffle_epoch(s);
        }
        int64_t row = s->order[s->cursor++];
        int32_t *tk = tokens + (size_t)b * T, *ps = pos + (size_t)b * T;
        int32_t *sg = seg + (size_t)b * T, *tg = targets + (size_t)b * T;
        float *w = weights + (size_t)b * T;
        if (c->kind == R1_CORPUS_DOCUMENTS) {
            int64_t o = row * T;
            int32_t p = 0;
            for (int t = 0; t < T; t++) {
                int64_t i = o + t;
                p = (t > 0 && c->doc[i] == c->doc[i - 1]) ? p + 1 : 0;
                tk[t] = c->tokens[i];
                ps[t] = p;
                sg[t] = c->doc[i] - c->doc[o];
                tg[t] = c->doc[i + 1] == c->doc[i] ? c->tokens[i + 1] : -1;
            }
        } else {
            const int32_t *e = c->tokens + c->start[row];
            int64_t len = c->start[row + 1] - c->start[row];
            int64_t L = len < T + 1 ? len : T + 1; /* tokens used, inputs are L-1 */
            int32_t pl = c->prompt_len[row];
            for (int t = 0; t < T; t++) {
                if (t < L - 1) {
                    tk[t] = e[t];
                    ps[t] = t;
                    sg[t] = 0;
                    tg[t] = t + 1 >= pl ? e[t + 1] : -1;
                } else {
                    tk[t] = 0;
                    ps[t] = 0;
                    sg[t] = -1;
                    tg[t] = -1;
                }
            }
        }
        for (int t = 0; t < T; t++) {
            w[t] = tg[t] >= 0 ? 1.0f : 0.0f;
            scored += tg[t] >= 0;
        }
    }
    return scored;
}
