/* prompts.h - prompt sets for generating stages (grpo, rejection sampling, eval):
 * prompts with their reference answers and metadata, templated and tokenised.
 *
 * Sources: a JSONL file (prompt and answer field names configurable; the whole object
 * is kept as metadata for the rewards) or a generator spec (stages/data/gen.h) with a
 * size, seed and split.  A prompt template turns the question into the text the model
 * sees: a named template (r1_prompt_template_find) or literal text in which "{prompt}"
 * stands for the question; a chat template, when given, then wraps that text as a user
 * turn and opens the assistant's.  The set remembers a sha256 of its source (the file's bytes,
 * or of "generator spec/seed/split/n" text) for the ledger. */
#ifndef R1_STAGES_PROMPTS_H
#define R1_STAGES_PROMPTS_H

#include <jansson.h>
#include <stdint.h>

#include "core/tokenizer.h"
#include "stages/data/gen.h"

struct r1_prompt {
    char *question; /* the bare prompt field */
    char *text;     /* the templated prompt (in its chat turn when a chat template is set) */
    char *answer;   /* the reference answer ("" when absent) */
    json_t *meta;   /* the whole example object (owned reference) */
    int32_t *tokens;
    int n_tokens;
};

struct r1_prompt_set {
    struct r1_prompt *items;
    int64_t n;
    int max_tokens; /* longest tokenised prompt */
    char sha256[65];
};

struct r1_prompt_spec {
    const char *path;      /* JSONL file, or NULL when generator is set */
    const char *generator; /* generator spec */
    int64_t gen_n;         /* examples to generate */
    uint64_t gen_seed;
    enum r1_split split;
    const char *prompt_field, *answer_field; /* default "prompt", "answer" */
    const char *template_; /* NULL or "none": the question as is */
    int max_prompt_tokens; /* > 0: a longer prompt is an error naming file and line */
    /* A built-in chat template name (core/template.h): the templated prompt becomes one
     * user turn followed by the generation prompt.  NULL: the templated prompt as is. */
    const char *chat_template;
    const char *chat_jinja; /* the model's Jinja template (r1_chat_template_open_model), or NULL */
};

/* Errors name the file and line (R1_EINVAL): missing field, bad JSON, empty set. */
int r1_prompt_set_load(struct r1_prompt_set **out, const struct r1_prompt_spec *spec,
                       const struct r1_tokenizer *tok);
void r1_prompt_set_free(struct r1_prompt_set *s);

/* Named templates: "none" ("{prompt}") and "r1-zero" (the DeepSeek-R1-Zero prompt: "A
 * conversation between User and Assistant. ... User: {prompt}. Assistant:").  NULL when
 * unknown. */
const char *r1_prompt_template_find(const char *name);
/* Applies template (a name or literal text containing "{prompt}") to question; a
 * malloc'd string, or NULL with R1_EINVAL set when the text has no "{prompt}". */
char *r1_prompt_template_apply(const char *template_, const char *question);

/* The judge's prompt (issue 11: a model reads a question, its reference answer and a
 * prediction, and its next token is the verdict).  The default template: */
#define R1_JUDGE_TEMPLATE                                                                        \
    "Question: {question}\nReference answer: {reference}\nPrediction: {prediction}\n"           \
    "Is the prediction correct? Verdict: "
/* template_ (NULL: R1_JUDGE_TEMPLATE) with every {question}, {reference} and {prediction}
 * replaced; a malloc'd string, or NULL after recording R1_EINVAL (a template without
 * {prediction}) or R1_ENOMEM. */
char *r1_judge_prompt(const char *template_, const char *question, const char *reference,
                      const char *prediction);

#endif
