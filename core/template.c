/* template.c - built-in chat templates (see template.h).
 *
 * Each built-in is one row of text pieces: a message renders as pre[role] + content +
 * post[role]; for the assistant the span runs from the content's first byte through its
 * end-of-turn marker (eot), and post follows the span. */
#include "core/template.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum { ROLE_SYSTEM = 0, ROLE_USER, ROLE_ASSISTANT, N_ROLES };

static const char *const role_names[N_ROLES] = {"system", "user", "assistant"};

#define DS_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define L3_HEADER(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"

#define R1_ZERO_PREAMBLE                                                                           \
    "A conversation between User and Assistant. The user asks a question, and the Assistant "      \
    "solves it. The assistant first thinks about the reasoning process in the mind and then "      \
    "provides the user with the answer. The reasoning process and answer are enclosed within "     \
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "         \
    "process here </think> <answer> answer here </answer>."

struct builtin {
    const char *name;
    const char *bos;          /* at the start (bos_if_messages: only when there are messages) */
    const char *pre[N_ROLES]; /* before the content */
    const char *eot;          /* assistant: end-of-turn marker inside the span ("" : none) */
    const char *post[N_ROLES];/* after the content (assistant: after the marker) */
    const char *gen;          /* generation prompt */
    bool bos_if_messages;
    bool trim;                /* content loses surrounding whitespace (Jinja's | trim) */
    /* System messages do not render in place: the last one's content follows bos (or,
     * when there is none, default_system does). */
    bool system_first;
    const char *default_system;
    bool user_dot;            /* post[user] "." is dropped after a question ending in .?! */
};

static const struct builtin builtins[] = {
    {"chatml",
     "",
     {"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
     "<|im_end|>",
     {"<|im_end|>\n", "<|im_end|>\n", "\n"},
     "<|im_start|>assistant\n",
     false, false, false, NULL, false},
    {"deepseek-r1",
     DS_BOS,
     {"", DS_USER, DS_ASSISTANT},
     DS_EOS,
     {"", "", ""},
     DS_ASSISTANT "<think>\n",
     false, false, true, NULL, false},
    {"llama3",
     "<|begin_of_text|>",
     {L3_HEADER("system"), L3_HEADER("user"), L3_HEADER("assistant")},
     "<|eot_id|>",
     {"<|eot_id|>", "<|eot_id|>", ""},
     L3_HEADER("assistant"),
     true, true, false, NULL, false},
    {"plain",
     "",
     {"System: ", "User: ", "Assistant: "},
     "",
     {"\n", "\n", "\n"},
     "Assistant: ",
     false, false, false, NULL, false},
    {"r1-zero",
     "",
     {"", " User: ", " Assistant:\n"},
     "",
     {"", ".", ""},
     " Assistant:\n",
     false, false, true, R1_ZERO_PREAMBLE, true},
};

#define N_BUILTINS ((int)(sizeof(builtins) / sizeof(builtins[0])))

const char *r1_chat_template_names(void) { return "chatml, deepseek-r1, llama3, plain, r1-zero"; }

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

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The role index of m, or -1. */
static int role_of(const struct r1_chat_message *m)
{
    for (int k = 0; k < N_ROLES && m->role; k++)
        if (strcmp(m->role, role_names[k]) == 0)
            return k;
    return -1;
}

/* Checks every message's role and content before anything renders. */
static int check_messages(const struct r1_chat_message *msgs, int n)
{
    for (int i = 0; i < n; i++) {
        if (role_of(&msgs[i]) < 0)
            return r1_err_set(R1_EINVAL, "message %d: role '%.40s' is not system, user or "
                              "assistant", i + 1, msgs[i].role ? msgs[i].role : "(none)");
        if (!msgs[i].content && msgs[i].len > 0)
            return r1_err_set(R1_EINVAL, "message %d: no content", i + 1);
    }
    return 0;
}

/* Puts content (trimmed when the template trims). */
static int put_content(struct buf *b, const struct builtin *bt, const struct r1_chat_message *m)
{
    const char *s = m->content;
    size_t n = m->len;
    if (bt->trim) {
        while (n > 0 && is_space(*s)) {
            s++;
            n--;
        }
        while (n > 0 && is_space(s[n - 1]))
            n--;
    }
    return put(b, s, n);
}

static int builtin_render(const struct r1_chat_template *t, const struct r1_chat_message *msgs,
                          int n, bool add_gen, struct r1_chat_text *out)
{
    const struct builtin *bt = t->ctx;
    int rc = check_messages(msgs, n);
    if (rc)
        return rc;
    struct buf b = {0};
    struct r1_chat_span *spans = NULL;
    int n_spans = 0;
    if (n > 0 || !bt->bos_if_messages)
        rc = puts_(&b, bt->bos);
    if (!rc && bt->system_first) {
        const struct r1_chat_message *sys = NULL;
        for (int i = 0; i < n; i++)
            if (role_of(&msgs[i]) == ROLE_SYSTEM)
                sys = &msgs[i];
        if (sys)
            rc = put_content(&b, bt, sys);
        else if (bt->default_system)
            rc = puts_(&b, bt->default_system);
    } else if (!rc && bt->default_system && n > 0 && role_of(&msgs[0]) != ROLE_SYSTEM) {
        /* the model's template opens a conversation without a system message with its own */
        if (!(rc = puts_(&b, bt->pre[ROLE_SYSTEM])) && !(rc = puts_(&b, bt->default_system)))
            rc = puts_(&b, bt->post[ROLE_SYSTEM]);
    }
    for (int i = 0; !rc && i < n; i++) {
        int role = role_of(&msgs[i]);
        if (role == ROLE_SYSTEM && bt->system_first)
            continue;
        if ((rc = puts_(&b, bt->pre[role])))
            break;
        size_t start = b.n;
        if ((rc = put_content(&b, bt, &msgs[i])))
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
        const char *post = bt->post[role];
        if (role == ROLE_USER && bt->user_dot && b.n > start && strchr(".?!", b.p[b.n - 1]))
            post = "";
        rc = puts_(&b, post);
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

/* A built-in row with a model's default system message: ctx owns a copy of the row and
 * the message. */
struct owned_builtin {
    struct builtin row;
    char *default_system;
};

static void owned_release(struct r1_chat_template *t)
{
    struct owned_builtin *o = t->ctx;
    free(o->default_system);
    free(o);
}

static const struct r1_chat_template_ops owned_ops = {builtin_render, owned_release};

char *r1_chat_template_default_system(const char *jinja)
{
    static const char open[] = "<|im_start|>system";
    for (const char *p = jinja ? strstr(jinja, open) : NULL; p; p = strstr(p + 1, open)) {
        const char *s = p + sizeof(open) - 1;
        if (*s == '\n')
            s++;
        else if (s[0] == '\\' && s[1] == 'n') /* an escape inside a Jinja string literal */
            s += 2;
        else
            continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e || e == s)
            continue;
        size_t n = (size_t)(e - s);
        bool literal = true;
        for (size_t i = 0; i < n && literal; i++)
            literal = !strchr("{}'\"\\+", s[i]);
        if (literal)
            return strndup(s, n);
    }
    return NULL;
}

int r1_chat_template_open_model(struct r1_chat_template **out, const char *name,
                                const char *model_jinja)
{
    int rc = r1_chat_template_open(out, name);
    const char *detected = r1_chat_template_detect(model_jinja);
    if (rc || !detected || strcmp(detected, name) != 0 || strcmp(name, "chatml") != 0)
        return rc;
    char *sys = r1_chat_template_default_system(model_jinja);
    if (!sys)
        return 0;
    struct owned_builtin *o = calloc(1, sizeof(*o));
    if (!o) {
        free(sys);
        r1_chat_template_free(*out);
        *out = NULL;
        return r1_err_set(R1_ENOMEM, "chat template: out of memory");
    }
    o->row = *(const struct builtin *)(*out)->ctx;
    o->default_system = sys;
    o->row.default_system = sys;
    (*out)->ops = &owned_ops;
    (*out)->ctx = o;
    return 0;
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

const char *r1_chat_template_detect(const char *jinja)
{
    if (!jinja)
        return NULL;
    /* most specific first: a DeepSeek template may be built on a Qwen or Llama base */
    if (strstr(jinja, DS_ASSISTANT))
        return "deepseek-r1";
    if (strstr(jinja, "<|start_header_id|>"))
        return "llama3";
    if (strstr(jinja, "<|im_start|>"))
        return "chatml";
    if (strstr(jinja, "A conversation between User and Assistant"))
        return "r1-zero";
    return NULL;
}

int r1_chat_template_resolve(const char *setting, const char *model_jinja, const char **name)
{
    *name = NULL;
    if (setting && strcmp(setting, "none") == 0)
        return 0;
    if (!setting || strcmp(setting, "auto") == 0) {
        if (!model_jinja || !model_jinja[0])
            return 0;
        if (!(*name = r1_chat_template_detect(model_jinja)))
            return r1_err_set(R1_EINVAL, "the model's chat template is not one r1 recognises; "
                              "name one (%s) or none", r1_chat_template_names());
        return 0;
    }
    for (int i = 0; i < N_BUILTINS; i++)
        if (strcmp(setting, builtins[i].name) == 0) {
            *name = builtins[i].name;
            return 0;
        }
    return r1_err_set(R1_EINVAL, "unknown chat template '%.60s%s'; built-in templates: %s, or "
                      "auto or none", setting, strlen(setting) > 60 ? "..." : "",
                      r1_chat_template_names());
}
