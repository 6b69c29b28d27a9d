/* prompts.c - prompt sets from JSONL files or generators, and prompt templates (see
 * prompts.h).
 *
 * Templates: "{prompt}" stands for the question (every occurrence).  A '.' right after
 * "{prompt}" is dropped when the question already ends in '.', '?' or '!' (the R1-Zero
 * text has "User: {prompt}. Assistant:").  The named template "r1-zero" gets one "\n"
 * after its final "Assistant:", so a completion starts with "<think>" on a fresh line;
 * "none" and literal templates get nothing appended.
 *
 * JSONL: one object per line, blank lines skipped, line numbers count every line.  The
 * answer field may be a string or a number (kept as its decimal text); absent or null
 * is "".  Generated sets use the generator's "prompt" and "answer" fields. */
#include "stages/data/prompts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/sha256.h"
#include "core/template.h"

#define R1_ZERO_TEMPLATE                                                                           \
    "A conversation between User and Assistant. The user asks a question, and the Assistant "      \
    "solves it. The assistant first thinks about the reasoning process in the mind and then "      \
    "provides the user with the answer. The reasoning process and answer are enclosed within "     \
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "         \
    "process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"

const char *r1_prompt_template_find(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "none") == 0)
        return "{prompt}";
    if (strcmp(name, "r1-zero") == 0)
        return R1_ZERO_TEMPLATE;
    return NULL;
}

char *r1_prompt_template_apply(const char *template_, const char *question)
{
    static const char key[] = "{prompt}";
    const size_t klen = sizeof(key) - 1;
    if (!template_)
        template_ = "none";
    const char *text = r1_prompt_template_find(template_);
    int newline = text && strcmp(template_, "r1-zero") == 0;
    if (!text) {
        if (!strstr(template_, key)) {
            r1_err_set(R1_EINVAL,
                       "template '%.60s%s' is neither a named template (none, r1-zero) "
                       "nor text containing {prompt}",
                       template_, strlen(template_) > 60 ? "..." : "");
            return NULL;
        }
        text = template_;
    }
    size_t ql = strlen(question), n_keys = 0;
    for (const char *s = strstr(text, key); s; s = strstr(s + klen, key))
        n_keys++;
    char *out = malloc(strlen(text) + n_keys * ql + 2);
    if (!out) {
        r1_err_set(R1_ENOMEM, "template: out of memory");
        return NULL;
    }
    int ends_stop = ql > 0 && strchr(".?!", question[ql - 1]);
    char *o = out;
    for (const char *s = text; *s;) {
        if (strncmp(s, key, klen) == 0) {
            memcpy(o, question, ql);
            o += ql;
            s += klen;
            if (*s == '.' && ends_stop)
                s++;
        } else {
            *o++ = *s++;
        }
    }
    if (newline)
        *o++ = '\n';
    *o = '\0';
    return out;
}

/* ---- prompt sets -------------------------------------------------------------------- */

struct builder {
    struct r1_prompt_set *s;
    int64_t cap;
    const struct r1_prompt_spec *spec;
    const struct r1_tokenizer *tok;
    const struct r1_chat_template *chat; /* NULL: none */
};

/* The answer field's text: a string as is, a number in decimal, absent or null "". */
static int answer_text(const json_t *a, char **out)
{
    char buf[64];
    const char *t = "";
    if (json_is_string(a)) {
        t = json_string_value(a);
    } else if (json_is_integer(a)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(a));
        t = buf;
    } else if (json_is_real(a)) {
        double v = json_real_value(a);
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, sizeof(buf), "%.17g", v);
        t = buf;
    } else if (a && !json_is_null(a))
        return -1;
    *out = strdup(t);
    return 0;
}

/* Adds one example object (the set takes a reference); where names it in errors. */
static int add_prompt(struct builder *b, json_t *o, const char *pf, const char *af,
                      const char *where)
{
    struct r1_prompt_set *s = b->s;
    json_t *q = json_object_get(o, pf);
    if (!json_is_string(q))
        return r1_err_set(R1_EINVAL, "%s: field \"%s\" is missing or not a string%s", where, pf,
                          strcmp(pf, "prompt") == 0 ? "" : " (data.prompt_field)");
    if (s->n == b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 256;
        struct r1_prompt *items = realloc(s->items, (size_t)cap * sizeof(*items));
        if (!items)
            return r1_err_set(R1_ENOMEM, "prompts: out of memory (%lld prompts)", (long long)cap);
        s->items = items;
        b->cap = cap;
    }
    struct r1_prompt *p = &s->items[s->n];
    memset(p, 0, sizeof(*p));
    s->n++; /* counted now so that free releases what is set below */
    p->meta = json_incref(o);
    p->question = strdup(json_string_value(q));
    if (!p->question)
        return r1_err_set(R1_ENOMEM, "prompts: out of memory");
    if (answer_text(json_object_get(o, af), &p->answer))
        return r1_err_set(R1_EINVAL, "%s: field \"%s\" must be a string or a number", where, af);
    if (!p->answer)
        return r1_err_set(R1_ENOMEM, "prompts: out of memory");
    p->text = r1_prompt_template_apply(b->spec->template_, p->question);
    if (!p->text)
        return r1_err_wrap(r1_err_code(), "%s", where);
    if (b->chat) {
        char *turn = r1_chat_render_prompt(b->chat, p->text);
        if (!turn)
            return r1_err_wrap(r1_err_code(), "%s", where);
        free(p->text);
        p->text = turn;
    }
    int rc = r1_tokenizer_encode(b->tok, p->text, strlen(p->text), &p->tokens, &p->n_tokens);
    if (rc)
        return r1_err_wrap(rc, "%s", where);
    int lim = b->spec->max_prompt_tokens;
    if (lim > 0 && p->n_tokens > lim)
        return r1_err_set(R1_EINVAL,
                          "%s: the prompt is %d tokens with its template, over the "
                          "limit of %d; shorten it, or make room for prompts (a longer context "
                          "or a smaller grpo.max_completion_len)",
                          where, p->n_tokens, lim);
    if (p->n_tokens > s->max_tokens)
        s->max_tokens = p->n_tokens;
    return 0;
}

static int load_jsonl(struct builder *b, const char *path, const char *d, size_t len)
{
    const char *pf = b->spec->prompt_field ? b->spec->prompt_field : "prompt";
    const char *af = b->spec->answer_field ? b->spec->answer_field : "answer";
    int lineno = 0;
    const char *p = d, *end = d + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        lineno++;
        int blank = 1;
        for (size_t k = 0; k < ll && blank; k++)
            blank = p[k] == ' ' || p[k] == '\t' || p[k] == '\r';
        if (!blank) {
            char where[4200];
            snprintf(where, sizeof(where), "%s:%d", path, lineno);
            json_error_t e;
            json_t *o = json_loadb(p, ll, 0, &e);
            if (!o || !json_is_object(o)) {
                json_decref(o);
                return r1_err_set(R1_EINVAL,
                                  "%s: not a JSON object (%s); each line must be one "
                                  "object",
                                  where, o ? "wrong type" : e.text);
            }
            int rc = add_prompt(b, o, pf, af, where);
            json_decref(o);
            if (rc)
                return rc;
        }
        p = le + 1;
    }
    return 0;
}

static int load_generator(struct builder *b)
{
    const struct r1_prompt_spec *sp = b->spec;
    if (sp->gen_n <= 0)
        return r1_err_set(R1_EINVAL, "generator '%s': %lld examples asked for; use a size >= 1",
                          sp->generator, (long long)sp->gen_n);
    struct r1_datagen *g = NULL;
    int rc = r1_datagen_parse(&g, sp->generator);
    if (rc)
        return rc;
    for (int64_t i = 0; !rc && i < sp->gen_n; i++) {
        json_t *o = NULL;
        char where[256];
        snprintf(where, sizeof(where), "generator '%.120s' %s example %lld", sp->generator,
                 r1_split_name(sp->split), (long long)i);
        rc = r1_datagen_example(g, sp->gen_seed, sp->split, i, &o);
        if (!rc)
            rc = add_prompt(b, o, "prompt", "answer", where);
        json_decref(o);
    }
    r1_datagen_free(g);
    if (rc)
        return rc;
    char src[1024];
    int k =
        snprintf(src, sizeof(src), "generator:%s;seed=%llu;split=%s;n=%lld", sp->generator,
                 (unsigned long long)sp->gen_seed, r1_split_name(sp->split), (long long)sp->gen_n);
    if (k < 0 || (size_t)k >= sizeof(src))
        return r1_err_set(R1_EINVAL, "generator spec '%.60s...' is too long", sp->generator);
    return r1_sha256_bytes(b->s->sha256, src, (size_t)k);
}

int r1_prompt_set_load(struct r1_prompt_set **out, const struct r1_prompt_spec *spec,
                       const struct r1_tokenizer *tok)
{
    *out = NULL;
    if (!spec->path && !spec->generator)
        return r1_err_set(R1_EINVAL, "prompts: no source; set data.path or data.generator");
    struct r1_prompt_set *s = calloc(1, sizeof(*s));
    if (!s)
        return r1_err_set(R1_ENOMEM, "prompts: out of memory");
    struct r1_chat_template *chat = NULL;
    int rc = spec->chat_template
                 ? r1_chat_template_open_model(&chat, spec->chat_template, spec->chat_jinja)
                 : 0;
    struct builder b = {s, 0, spec, tok, chat};
    if (rc) {
        /* nothing loaded */
    } else if (spec->path) {
        char *data = NULL;
        size_t len = 0;
        rc = r1_file_read(spec->path, &data, &len);
        if (rc == R1_EIO) /* a prompt file named in a recipe or on the command line */
            rc = r1_err_wrap(R1_EINVAL, "prompt file");
        if (!rc)
            rc = r1_sha256_bytes(s->sha256, data, len);
        if (!rc)
            rc = load_jsonl(&b, spec->path, data, len);
        free(data);
        if (!rc && s->n == 0)
            rc = r1_err_set(R1_EINVAL,
                            "%s: no prompts in the file; each line must be a JSON "
                            "object with a \"%s\" field",
                            spec->path, spec->prompt_field ? spec->prompt_field : "prompt");
    } else {
        rc = load_generator(&b);
    }
    r1_chat_template_free(chat);
    if (rc) {
        r1_prompt_set_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void r1_prompt_set_free(struct r1_prompt_set *s)
{
    if (!s)
        return;
    for (int64_t i = 0; i < s->n; i++) {
        struct r1_prompt *p = &s->items[i];
        free(p->question);
        free(p->text);
        free(p->answer);
        json_decref(p->meta);
        free(p->tokens);
    }
    free(s->items);
    free(s);
}

char *r1_judge_prompt(const char *template_, const char *question, const char *reference,
                      const char *prediction)
{
    static const char *const keys[3] = {"{question}", "{reference}", "{prediction}"};
    const char *vals[3] = {question ? question : "", reference ? reference : "",
                           prediction ? prediction : ""};
    if (!template_)
        template_ = R1_JUDGE_TEMPLATE;
    if (!strstr(template_, keys[2])) {
        r1_err_set(R1_EINVAL, "judge template '%.60s%s' has no {prediction}; it needs "
                   "{prediction} (and usually {question} and {reference})",
                   template_, strlen(template_) > 60 ? "..." : "");
        return NULL;
    }
    size_t cap = strlen(template_) + 1;
    for (const char *t = template_; *t; t++)
        for (int k = 0; k < 3; k++)
            if (strncmp(t, keys[k], strlen(keys[k])) == 0)
                cap += strlen(vals[k]);
    char *out = malloc(cap), *o = out;
    if (!out) {
        r1_err_set(R1_ENOMEM, "judge: out of memory");
        return NULL;
    }
    for (const char *t = template_; *t;) {
        int hit = -1;
        for (int k = 0; k < 3 && hit < 0; k++)
            if (strncmp(t, keys[k], strlen(keys[k])) == 0)
                hit = k;
        if (hit < 0) {
            *o++ = *t++;
            continue;
        }
        size_t n = strlen(vals[hit]);
        memcpy(o, vals[hit], n);
        o += n;
        t += strlen(keys[hit]);
    }
    *o = '\0';
    return out;
}
