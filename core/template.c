/* template.c - built-in chat templates (see template.h).
 *
 * Each built-in is one row of text pieces: a message renders as pre[role] + content +
 * post[role]; for the assistant the span runs from the content's first byte through its
 * end-of-turn marker (eot), and post follows the span. */
#include "core/template.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum { ROLE_SYSTEM = 0, ROLE_USER, ROLE_ASSISTANT, N_ROLES };

static const char *const role_names[N_ROLES] = {"system", "user", "assistant"};

struct builtin {
    const char *name;
    const char *bos;          /* once, at the start */
    const char *pre[N_ROLES]; /* before the content */
    const char *eot;          /* assistant: end-of-turn marker inside the span ("" : none) */
    const char *post[N_ROLES];/* after the content (assistant: after the marker) */
    const char *gen;          /* generation prompt */
};

static const struct builtin builtins[] = {
    {"chatml",
     "",
     {"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
     "<|im_end|>",
     {"<|im_end|>\n", "<|im_end|>\n", "\n"},
     "<|im_start|>assistant\n"},
    {"deepseek-r1",
     "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
     {"", "<\xef\xbd\x9cUser\xef\xbd\x9c>", "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"},
     "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
     {"", "", ""},
     "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"},
    {"plain",
     "",
     {"System: ", "User: ", "Assistant: "},
     "",
     {"\n", "\n", "\n"},
     "Assistant: "},
};

#define N_BUILTINS ((int)(sizeof(builtins) / sizeof(builtins[0])))

const char *r1_chat_template_names(void) { return "chatml, deepseek-r1, plain"; }

/* Growable output text. */
struct buf {
    char *p;
    size_t n, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return r1_err_set(R1_ENOMEM, "chat template: out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int puts_(struct buf *b, const char *s) { return put(b, s, strlen(s)); }

static int builtin_render(const struct r1_chat_template *t, const struct r1_chat_message *msgs,
                          int n, bool add_gen, struct r1_chat_text *out)
{
    const struct builtin *bt = t->ctx;
    struct buf b = {0};
    struct r1_chat_span *spans = NULL;
    int n_spans = 0, rc = puts_(&b, bt->bos);
    for (int i = 0; !rc && i < n; i++) {
        int role = -1;
        for (int k = 0; k < N_ROLES && msgs[i].role; k++)
            if (strcmp(msgs[i].role, role_names[k]) == 0)
                role = k;
        if (role < 0) {
            rc = r1_err_set(R1_EINVAL, "message %d: role '%.40s' is not system, user or "
                            "assistant", i + 1, msgs[i].role ? msgs[i].role : "(none)");
            break;
        }
        if (!msgs[i].content && msgs[i].len > 0) {
            rc = r1_err_set(R1_EINVAL, "message %d: no content", i + 1);
            break;
        }
        if ((rc = puts_(&b, bt->pre[role])))
            break;
        size_t start = b.n;
        if ((rc = put(&b, msgs[i].content, msgs[i].len)))
            break;
        if (role == ROLE_ASSISTANT) {
            if ((rc = puts_(&b, bt->eot)))
                break;
            struct r1_chat_span *sp = realloc(spans, (size_t)(n_spans + 1) * sizeof(*sp));
            if (!sp) {
                rc = r1_err_set(R1_ENOMEM, "chat template: out of memory");
                break;
            }
            spans = sp;
            spans[n_spans++] = (struct r1_chat_span){start, b.n};
        }
        rc = puts_(&b, bt->post[role]);
    }
    if (!rc && add_gen)
        rc = puts_(&b, bt->gen);
    if (!rc && !b.p) /* nothing rendered: still a string */
        rc = put(&b, "", 0);
    if (rc) {
        free(b.p);
        free(spans);
        return rc;
    }
    *out = (struct r1_chat_text){b.p, b.n, spans, n_spans};
    return 0;
}

static const struct r1_chat_template_ops builtin_ops = {builtin_render, NULL};

int r1_chat_template_open(struct r1_chat_template **out, const char *name)
{
    *out = NULL;
    for (int i = 0; name && i < N_BUILTINS; i++) {
        if (strcmp(name, builtins[i].name) != 0)
            continue;
        struct r1_chat_template *t = calloc(1, sizeof(*t));
        if (!t)
            return r1_err_set(R1_ENOMEM, "chat template: out of memory");
        *t = (struct r1_chat_template){&builtin_ops, (void *)&builtins[i], builtins[i].name,
                                       builtins[i].eot[0] != '\0'};
        *out = t;
        return 0;
    }
    return r1_err_set(R1_EINVAL, "unknown chat template '%.60s%s'; built-in templates: %s",
                      name ? name : "(none)", name && strlen(name) > 60 ? "..." : "",
                      r1_chat_template_names());
}

void r1_chat_template_free(struct r1_chat_template *t)
{
    if (!t)
        return;
    if (t->ops && t->ops->release)
        t->ops->release(t);
    free(t);
}

int r1_chat_render(const struct r1_chat_template *t, const struct r1_chat_message *msgs, int n,
                   bool add_generation_prompt, struct r1_chat_text *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 0 || (n > 0 && !msgs))
        return r1_err_set(R1_EINVAL, "chat template: %d messages", n);
    return t->ops->render(t, msgs, n, add_generation_prompt, out);
}

void r1_chat_text_release(struct r1_chat_text *r)
{
    if (!r)
        return;
    free(r->text);
    free(r->spans);
    memset(r, 0, sizeof(*r));
}

char *r1_chat_render_prompt(const struct r1_chat_template *t, const char *user)
{
    struct r1_chat_message m = {"user", user, strlen(user)};
    struct r1_chat_text r;
    if (r1_chat_render(t, &m, 1, true, &r))
        return NULL;
    free(r.spans);
    return r.text;
}
