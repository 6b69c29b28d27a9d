/* corpus.c - tokenised corpora and their resumable sampler (see corpus.h). */
#include "stages/data/corpus.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/template.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"

/* Growable token buffer with a scored mask. */
struct tokbuf {
    int32_t *v;
    uint8_t *m;
    int64_t n, cap;
};

static int tokbuf_push(struct tokbuf *b, const int32_t *ids, int64_t n, uint8_t scored)
{
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        int32_t *v = realloc(b->v, (size_t)cap * sizeof(int32_t));
        if (v)
            b->v = v;
        uint8_t *m = realloc(b->m, (size_t)cap);
        if (m)
            b->m = m;
        if (!v || !m)
            return r1_err_set(R1_ENOMEM, "corpus: out of memory (%lld tokens)", (long long)cap);
        b->cap = cap;
    }
    memcpy(b->v + b->n, ids, (size_t)n * sizeof(int32_t));
    memset(b->m + b->n, scored, (size_t)n);
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
    const struct r1_chat_template *chat; /* pairs: NULL when none */
};

/* Encodes text[0..len) on its own and appends it. */
static int push_text(struct builder *b, const char *text, size_t len, uint8_t scored)
{
    if (len == 0)
        return 0;
    int32_t *ids = NULL;
    int n = 0, rc = r1_tokenizer_encode(b->tok, text, len, &ids, &n);
    if (!rc)
        rc = tokbuf_push(&b->toks, ids, n, scored);
    free(ids);
    return rc;
}

/* Appends one example: text[0..len) in which spans[0..n_spans) are scored.  Documents
 * (no spans): the whole text, then EOS.  Pairs: every piece tokenised on its own; EOS
 * (scored) after each span when eos_each; the text after the last span is dropped. */
static int add_example(struct builder *b, const char *text, size_t len,
                       const struct r1_chat_span *spans, int n_spans, bool eos_each)
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
    int64_t first = b->toks.n;
    b->start[c->n_examples] = first;
    int32_t eos = b->tok->eos_id;
    size_t cur = 0;
    int rc = 0;
    for (int i = 0; !rc && i < n_spans; i++) {
        rc = push_text(b, text + cur, spans[i].start - cur, 0);
        if (!rc && i == 0)
            b->plen[c->n_examples] = (int32_t)(b->toks.n - first);
        if (!rc)
            rc = push_text(b, text + spans[i].start, spans[i].end - spans[i].start, 1);
        if (!rc && eos_each)
            rc = tokbuf_push(&b->toks, &eos, 1, 1);
        cur = spans[i].end;
    }
    if (!rc && n_spans == 0) {
        rc = push_text(b, text, len, 0);
        b->plen[c->n_examples] = (int32_t)(b->toks.n - first);
        if (!rc)
            rc = tokbuf_push(&b->toks, &eos, 1, 0);
    }
    if (rc)
        return rc;
    c->n_examples++;
    return 0;
}

/* A prompt/completion pair: the prompt template, then the chat template if any. */
static int add_pair(struct builder *b, const struct r1_corpus_spec *sp, const char *prompt,
                    const char *comp, size_t clen, const char *where)
{
    char *q = NULL;
    if (sp->prompt_template && !(q = r1_prompt_template_apply(sp->prompt_template, prompt)))
        return r1_err_wrap(r1_err_code(), "%s", where);
    const char *p = q ? q : prompt;
    size_t plen = strlen(p);
    int rc;
    if (b->chat) {
        struct r1_chat_message m[2] = {{"user", p, plen}, {"assistant", comp, clen}};
        struct r1_chat_text r;
        rc = r1_chat_render(b->chat, m, 2, false, &r);
        if (!rc)
            rc = add_example(b, r.text, r.len, r.spans, r.n_spans, !b->chat->has_end_marker);
        r1_chat_text_release(&r);
    } else {
        char *t = malloc(plen + clen + 1);
        if (!t) {
            free(q);
            return r1_err_set(R1_ENOMEM, "corpus: out of memory");
        }
        memcpy(t, p, plen);
        memcpy(t + plen, comp, clen);
        struct r1_chat_span span = {plen, plen + clen};
        rc = add_example(b, t, plen + clen, &span, 1, true);
        free(t);
    }
    free(q);
    return rc;
}

/* A chat: [{role, content}, ...] rendered with the chat template, assistant turns scored. */
static int add_chat(struct builder *b, const json_t *msgs, const char *mf, const char *where)
{
    if (!b->chat)
        return r1_err_set(R1_EINVAL, "%s: '%s' is a chat and needs a chat template; set "
                          "model.chat_template (%s)", where, mf, r1_chat_template_names());
    size_t n = json_is_array(msgs) ? json_array_size(msgs) : 0;
    if (n == 0 || n > (1u << 20))
        return r1_err_set(R1_EINVAL, "%s: '%s' must be a list of {role, content}", where, mf);
    struct r1_chat_message *m = calloc(n, sizeof(*m));
    if (!m)
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const json_t *o = json_array_get(msgs, i);
        const json_t *role = json_object_get(o, "role"), *content = json_object_get(o, "content");
        if (!json_is_object(o) || !json_is_string(role) || !json_is_string(content))
            rc = r1_err_set(R1_EINVAL, "%s: '%s' must be a list of {role, content} (item %zu "
                            "is not)", where, mf, i + 1);
        else
            m[i] = (struct r1_chat_message){json_string_value(role), json_string_value(content),
                                            json_string_length(content)};
    }
    struct r1_chat_text r = {0};
    if (!rc && (rc = r1_chat_render(b->chat, m, (int)n, false, &r)))
        rc = r1_err_wrap(rc, "%s: '%s'", where, mf);
    if (!rc && r.n_spans == 0)
        rc = r1_err_set(R1_EINVAL, "%s: '%s' has no assistant turn to learn from", where, mf);
    if (!rc)
        rc = add_example(b, r.text, r.len, r.spans, r.n_spans, !b->chat->has_end_marker);
    r1_chat_text_release(&r);
    free(m);
    return rc;
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
            int rc = add_example(b, d + s, e - s, NULL, 0, false);
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
    const char *mf = sp->messages_field ? sp->messages_field : "messages";
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
            char where[4200];
            if (sp->generator)
                snprintf(where, sizeof(where), "generator '%.200s' example %d", sp->generator,
                         lineno - 1);
            else
                snprintf(where, sizeof(where), "%s:%d", sp->path, lineno);
            json_error_t e;
            json_t *o = json_loadb(p, ll, 0, &e);
            if (!o || !json_is_object(o)) {
                json_decref(o);
                return r1_err_set(R1_EINVAL, "%s: not a JSON object (%s); each line must be "
                                  "one object", where, o ? "wrong type" : e.text);
            }
            int rc;
            if (b->c->kind == R1_CORPUS_DOCUMENTS) {
                json_t *t = json_object_get(o, tf);
                if (!json_is_string(t)) {
                    json_decref(o);
                    return r1_err_set(R1_EINVAL, "%s: field \"%s\" is missing or not a string",
                                      where, tf);
                }
                rc = add_example(b, json_string_value(t), json_string_length(t), NULL, 0, false);
            } else if (json_object_get(o, mf)) {
                rc = add_chat(b, json_object_get(o, mf), mf, where);
            } else {
                json_t *pr = json_object_get(o, pf), *co = json_object_get(o, cf);
                if (!json_is_string(pr) || !json_is_string(co)) {
                    bool no_demo = sp->generator && json_is_string(pr);
                    json_decref(o);
                    if (no_demo)
                        return r1_err_set(R1_EINVAL, "%s: no \"%s\"; sft on a generator needs "
                                          "worked completions: add demo=1 to the spec", where, cf);
                    return r1_err_set(R1_EINVAL, "%s: fields \"%s\" and \"%s\" must both be "
                                      "strings (or \"%s\" a chat)", where, pf, cf, mf);
                }
                rc = add_pair(b, sp, json_string_value(pr), json_string_value(co),
                              json_string_length(co), where);
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
    struct builder b = {c, {0}, NULL, NULL, 0, tok, NULL};
    if (!c) {
        free(data);
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    }
    c->kind = sp->kind;
    c->pack = sp->kind == R1_CORPUS_PAIRS && sp->pack;
    struct r1_chat_template *chat = NULL;
    if (sp->kind == R1_CORPUS_PAIRS && sp->chat_template) {
        rc = r1_chat_template_open_model(&chat, sp->chat_template, sp->chat_jinja);
        if (rc)
            rc = r1_err_wrap(rc, "%s", sp->path);
        b.chat = chat;
    }
    if (!rc)
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
        if (c->kind == R1_CORPUS_PAIRS) {
            c->scored = b.toks.m;
            b.toks.m = NULL;
        }
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
    r1_chat_template_free(chat);
    free(b.toks.v);
    free(b.toks.m);
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
    free(c->scored);
    free(c);
}

int64_t r1_corpus_rows(const struct r1_corpus *c, int T)
{
    if (c->kind == R1_CORPUS_PAIRS)
        return c->n_examples;
    return T > 0 && c->n_tokens > T ? (c->n_tokens - 1) / T : 0;
}

/* Input positions example e takes in a packed row: its tokens less the last one (only a
 * target), at most T (a longer example is truncated). */
static int footprint(const struct r1_corpus *c, int64_t e, int T)
{
    int64_t len = c->start[e + 1] - c->start[e];
    return (int)((len < T + 1 ? len : T + 1) - 1);
}

/* Packed rows of one epoch's order: greedy in order, a row ends when the next example
 * does not fit.  Must match r1_sampler_next's fill. */
static int64_t count_packed(const struct r1_corpus *c, int T, const int64_t *order, int64_t n)
{
    int64_t rows = 0, i = 0;
    while (i < n) {
        int used = 0;
        while (i < n) {
            int f = footprint(c, order[i], T);
            if (used > 0 && used + f > T)
                break;
            used += f;
            i++;
        }
        rows++;
    }
    return rows;
}

static void make_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    struct r1_rng r = r1_rng_make(seed, R1_STREAM_DATA + (uint64_t)epoch);
    r1_rng_shuffle(&r, order, n);
}

static void shuffle_epoch(struct r1_sampler *s)
{
    make_order(s->order, s->n_items, s->seed, s->epoch);
    s->n_rows = s->c->pack ? count_packed(s->c, s->T, s->order, s->n_items) : s->n_items;
}

int r1_sampler_init(struct r1_sampler *s, const struct r1_corpus *c, int T, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->c = c;
    s->T = T;
    s->seed = seed;
    s->n_items = r1_corpus_rows(c, T);
    if (s->n_items <= 0)
        return r1_err_set(R1_EINVAL, "corpus: %lld tokens is fewer than seq_len + 1 = %d; use "
                          "more data or a shorter seq_len", (long long)c->n_tokens, T + 1);
    s->order = malloc((size_t)s->n_items * sizeof(int64_t));
    if (!s->order)
        return r1_err_set(R1_ENOMEM, "corpus: out of memory");
    shuffle_epoch(s);
    return 0;
}

int r1_sampler_seek(struct r1_sampler *s, int64_t epoch, int64_t cursor)
{
    if (epoch < 0 || cursor < 0 || cursor > s->n_items)
        return r1_err_set(R1_EINVAL, "corpus: data position (epoch %lld, item %lld) does not fit "
                          "a corpus of %lld items; the data changed since the checkpoint",
                          (long long)epoch, (long long)cursor, (long long)s->n_items);
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

int64_t r1_sampler_rows(const struct r1_sampler *s, int64_t epochs)
{
    if (!s->c->pack)
        return epochs * s->n_items;
    int64_t *order = malloc((size_t)s->n_items * sizeof(int64_t)), rows = 0;
    if (!order) /* an estimate is better than nothing: one example per row */
        return epochs * s->n_items;
    for (int64_t e = 0; e < epochs; e++) {
        make_order(order, s->n_items, s->seed, e);
        rows += count_packed(s->c, s->T, order, s->n_items);
    }
    free(order);
    return rows;
}

/* Example e's first `take` input positions at tk[0..take) (its own segment sg, positions
 * from 0); targets only where the next token is scored. */
static void place_example(const struct r1_corpus *c, int64_t e, int take, int32_t sgid,
                          int32_t *tk, int32_t *ps, int32_t *sg, int32_t *tg)
{
    const int32_t *x = c->tokens + c->start[e];
    const uint8_t *sc = c->scored + c->start[e];
    for (int t = 0; t < take; t++) {
        tk[t] = x[t];
        ps[t] = t;
        sg[t] = sgid;
        tg[t] = sc[t + 1] ? x[t + 1] : -1;
    }
}

int64_t r1_sampler_next(struct r1_sampler *s, int B, int32_t *tokens, int32_t *pos, int32_t *seg,
                        int32_t *targets, float *weights)
{
    const struct r1_corpus *c = s->c;
    int T = s->T;
    int64_t scored = 0;
    for (int b = 0; b < B; b++) {
        if (s->cursor == s->n_items) {
            s->epoch++;
            s->cursor = 0;
            shuffle_epoch(s);
        }
        int32_t *tk = tokens + (size_t)b * T, *ps = pos + (size_t)b * T;
        int32_t *sg = seg + (size_t)b * T, *tg = targets + (size_t)b * T;
        float *w = weights + (size_t)b * T;
        int used = 0;
        if (c->kind == R1_CORPUS_DOCUMENTS) {
            int64_t o = s->order[s->cursor++] * T;
            int32_t p = 0;
            for (int t = 0; t < T; t++) {
                int64_t i = o + t;
                p = (t > 0 && c->doc[i] == c->doc[i - 1]) ? p + 1 : 0;
                tk[t] = c->tokens[i];
                ps[t] = p;
                sg[t] = c->doc[i] - c->doc[o];
                tg[t] = c->doc[i + 1] == c->doc[i] ? c->tokens[i + 1] : -1;
            }
            used = T;
        } else if (!c->pack) {
            int64_t e = s->order[s->cursor++];
            used = footprint(c, e, T);
            place_example(c, e, used, 0, tk, ps, sg, tg);
        } else { /* the same greedy fill as count_packed */
            int32_t n_seg = 0;
            while (s->cursor < s->n_items) {
                int64_t e = s->order[s->cursor];
                int f = footprint(c, e, T);
                if (used > 0 && used + f > T)
                    break;
                place_example(c, e, f, n_seg, tk + used, ps + used, sg + used, tg + used);
                n_seg += f > 0;
                used += f;
                s->cursor++;
            }
        }
        for (int t = used; t < T; t++) { /* padding */
            tk[t] = 0;
            ps[t] = 0;
            sg[t] = -1;
            tg[t] = -1;
        }
        for (int t = 0; t < T; t++) {
            w[t] = tg[t] >= 0 ? 1.0f : 0.0f;
            scored += tg[t] >= 0;
        }
    }
    return scored;
}
