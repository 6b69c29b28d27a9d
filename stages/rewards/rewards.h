/* rewards.h - rule-based rewards: small named functions from (prompt, completion,
 * reference answer, metadata) to a float, registered in one table (rewards.c).
 * Recipes name them in stages[].grpo.rewards with weights and per-reward options
 * (struct r1_reward_cfg in core/recipe.h).  docs/rewards.md lists them with their ranges.
 *
 * Every function is total: any input (empty, huge, malformed, adversarial) yields a
 * finite number in its documented range, in time linear in the input size, without
 * allocation failures turning into crashes (a failed allocation scores 0).  A NULL cfg
 * means the recipe defaults (answer auto, language en, ngram 3, max_penalty -1).
 *
 * Tags are the exact ASCII strings <think>, </think>, <answer>, </answer> (look-alikes
 * such as fullwidth ＜ or Cyrillic letters are plain text).  "The thinking" is the text
 * from a <think> to the next </think> (or to the end when unclosed); an <answer> block
 * opens outside the thinking and runs to the next </answer>.  Only the completion is
 * scored: the prompt matters only through r1_reward_effective_completion. */
#ifndef R1_STAGES_REWARDS_H
#define R1_STAGES_REWARDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/recipe.h"

struct r1_reward_input {
    const char *prompt;     /* the prompt as the model saw it (template applied); may be "" */
    const char *completion; /* the generated text, stop token removed; may be "" */
    const char *answer;     /* the reference answer; NULL or "" when the example has none */
    const json_t *meta;     /* the example's JSON object (countdown: "numbers", "target"); may be NULL */
    int completion_tokens;  /* length of the completion in tokens */
    int max_completion_tokens; /* the generation limit (length shaping) */
    /* P(yes) of the judge for this completion (stages/judge.h), filled in by the stage
     * (rejection_sft, grpo, align, r1 eval) when its list has a judge reward; NAN
     * otherwise, and the judge reward then counts 0 */
    double judge;
};

typedef double (*r1_reward_fn)(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);

struct r1_reward_def {
    const char *name;
    r1_reward_fn fn;
    const char *help; /* one line: what it pays and its range */
};

/* The table, and a lookup by name (NULL when unknown). */
const struct r1_reward_def *r1_reward_table(int *n);
const struct r1_reward_def *r1_reward_find(const char *name);

/* Checks a recipe's reward list (key names it in messages, e.g. "grpo.rewards"): every
 * name in the table, every language code known.  R1_EINVAL with "key[i]: ..." naming the
 * known rewards. */
int r1_reward_check_list(const struct r1_reward_cfg *cfgs, int n, const char *key);
/* The list's judge entry (name "judge"), or NULL. */
const struct r1_reward_cfg *r1_reward_find_judge(const struct r1_reward_cfg *cfgs, int n);

/* Σ weight·reward over cfgs (n of them, each found by name in the table; an unknown
 * name or a non-finite value counts 0); each (n) gets the unweighted values when not
 * NULL. */
double r1_reward_total(const struct r1_reward_cfg *cfgs, int n, const struct r1_reward_input *in,
                       float *each);

/* The completion as the rewards see it: when the prompt ends with "<think>" followed only
 * by whitespace (a template that pre-fills the opening tag), "<think>" + that whitespace +
 * completion (so a prompt ending "<think>\n" gives "<think>\n" + completion, the text the
 * model continued); else the completion.  NULL prompt or completion reads as "".
 * Returns a malloc'd string or NULL on allocation failure. */
char *r1_reward_effective_completion(const struct r1_reward_input *in);

/* The final answer of a completion per `from`, ignoring everything inside
 * <think>…</think>, surrounding whitespace trimmed; copies at most cap-1 bytes into out
 * (cap > strlen(completion) never truncates).  Returns true when found (possibly "").
 * \boxed{…} balances nested braces (\{ and \} are not braces); "last" is the box that
 * closes last. */
bool r1_extract_answer(const char *completion, enum r1_answer_from from, char *out, size_t cap);

/* Mathematical equality of two answer strings: integers, decimals, fractions, negative
 * numbers, thousands separators, simple LaTeX (\frac{a}{b}, \dfrac, \tfrac, $…$,
 * \left( … ), spaces); "1/2" == "0.5" == "\frac{1}{2}".  Non-numeric answers compare
 * as normalised strings (case, surrounding space and a trailing period ignored).
 * Numbers compare as exact rationals ("1/3" != "0.333"); U+2212 (−) is a minus sign;
 * other look-alikes (fullwidth digits) are not digits.  An empty answer (after
 * normalisation) or NULL equals nothing. */
bool r1_answers_equal(const char *a, const char *b);

/* True when `code` is a language the `language` reward knows ("en", "zh", "ja", ...;
 * a region suffix such as "zh-CN" or "pt_BR" is allowed).  For recipe validation. */
bool r1_reward_language_known(const char *code);

/* ---- the rewards, also callable directly (the table points at them) ---- */

double r1_reward_accuracy(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_format(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_format_soft(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_tag_count(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_language(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_countdown(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_length_cosine(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
double r1_reward_repetition(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);
/* Runs the last fenced code block (python or c) on meta.tests in a sandbox (code.c,
 * sandbox.h): seconds per call, not linear time; at most 30 s of runs per completion. */
double r1_reward_code(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg);

/* ---- text structure, shared by the reward files (scan.c) ---- */

enum r1_reward_tag {
    R1_TAG_THINK = 0,  /* <think> */
    R1_TAG_THINK_END,  /* </think> */
    R1_TAG_ANSWER,     /* <answer> */
    R1_TAG_ANSWER_END, /* </answer> */
    R1_TAG_N
};

/* Occurrences of each tag anywhere in s[0, n) (count[R1_TAG_N]) and the offset of the
 * first one (first[R1_TAG_N], SIZE_MAX when absent). */
void r1_reward_count_tags(const char *s, size_t n, int count[R1_TAG_N], size_t first[R1_TAG_N]);

enum r1_reward_seg_kind {
    R1_SEG_TEXT = 0,    /* outside the thinking and outside answer blocks */
    R1_SEG_THINK,       /* the content of a think block (unclosed: to the end) */
    R1_SEG_ANSWER,      /* the content of a closed answer block */
    R1_SEG_ANSWER_OPEN, /* an unclosed <answer>: the rest of the text */
};

struct r1_reward_seg {
    enum r1_reward_seg_kind kind;
    size_t begin, end; /* content, [begin, end) in bytes; tags are not part of any segment */
};

/* Walks s[0, n) segment by segment: *pos starts at 0; returns false at the end.  A whole
 * walk is linear in n. */
bool r1_reward_next_seg(const char *s, size_t n, size_t *pos, struct r1_reward_seg *seg);

#endif
