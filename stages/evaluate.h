/* evaluate.h - held-out accuracy by sampling: shared by every stage that can be
 * measured on prompts with reference answers (sft, rejection_sft, grpo, align).
 *
 * r1_eval_generate samples `samples` completions of every prompt of a set with the
 * model (fixed seed and RNG streams, so two evaluations differ only by the model),
 * scores them with a reward list and an accuracy reward, and appends
 *   eval/accuracy        share of completions whose accuracy reward is >= 1 (pass@1)
 *   eval/reward          mean weighted reward sum (only when rewards are given)
 *   eval/completion_len  mean completion tokens
 *   eval/samples         completions scored
 * to a metrics record.  It changes nothing in the model but its activation
 * reservation and allocates its own KV cache for the call.
 *
 * r1_eval_run (r1 eval) samples the same way and reports per item: each sample's reward
 * (the weighted sum of the listed rewards), whether it passes (reward >= threshold; 1.0
 * with the accuracy reward means correct), its extracted answer, the item's pass rate and
 * its majority answer; pass@1 is the mean pass rate over items, maj@n the share of items
 * whose majority answer equals the reference (r1_answers_equal). */
#ifndef R1_STAGES_EVALUATE_H
#define R1_STAGES_EVALUATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/generate.h"
#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"
#include "stages/data/prompts.h"
#include "stages/stage.h"

struct r1_judge;

struct r1_eval_spec {
    const struct r1_prompt_set *set;
    int samples;             /* completions per prompt (>= 1) */
    float temperature, top_p;
    int max_completion_len;
    uint64_t seed;
    const struct r1_reward_cfg *rewards; /* may be NULL (n_rewards 0) */
    int n_rewards;
    const char *accuracy_reward; /* NULL: "accuracy"; its cfg is taken from rewards when listed */
    enum r1_dtype weights;   /* generation weights, struct r1_gen_config.weights (R1_F32) */
    /* NULL or world 1: one process.  Else rank r samples the prompts p ≡ r (mod world)
     * (r1_eval_complete leaves the other completions' text NULL) and r1_eval_generate sums
     * the ranks' counts, so every rank gets the whole set's numbers. */
    struct r1_dist *dist;
    /* r1_eval_run: the judge of a judge reward in rewards (NULL: none; the judge reward
     * then counts 0) */
    struct r1_judge *judge;
    int slots; /* sequences generated together (0: 64) */
};

/* The held-out prompts of the stage env names: data.eval_path, else data.generator's
 * eval split of data.eval_size examples drawn with seed, read with the stage's prompt and
 * answer fields, prompt template and the recipe's chat template; prompts longer than
 * limit tokens (> 0) are an error.  *out is NULL when the stage has none. */
int r1_eval_prompts_load(struct r1_prompt_set **out, const struct r1_stage_env *env,
                         uint64_t seed, int limit);

int r1_eval_generate(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *spec, struct r1_stage_metrics *out);

/* One completion: the text (stop token removed), tokens generated (stop included). */
struct r1_eval_completion {
    char *text;
    int tokens;
    enum r1_finish finish;
};

/* spec->samples completions of every prompt of spec->set, sample k of item i at
 * out[i * samples + k]: seed spec->seed, RNG stream i * samples + k, stop at the model's
 * EOS, at most max_completion_len tokens.  Free with r1_eval_completions_free. */
int r1_eval_complete(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *spec, struct r1_eval_completion **out);
void r1_eval_completions_free(struct r1_eval_completion *c, int64_t n);

struct r1_eval_sample {
    char *completion;
    char *answer; /* extracted final answer (r1_extract_answer); NULL when there is none */
    double reward;
    bool pass; /* reward >= threshold */
    int tokens;
    enum r1_finish finish;
};

struct r1_eval_item {
    struct r1_eval_sample *samples; /* n of them */
    double pass_rate;               /* share of samples that pass */
    int majority;                   /* the sample whose answer won the vote; -1: no answers */
    bool correct;                   /* the majority answer equals the reference */
};

struct r1_eval_report {
    struct r1_eval_item *items; /* one per prompt of the set, in order */
    int64_t n_items;
    int n; /* samples per item */
    double pass_at_1, maj_at_n;
};

/* The vote among n answers (NULL or "" abstains): answers equal under r1_answers_equal
 * form one group; returns the index of the first answer of the largest group, the group
 * whose first answer comes earliest on a tie; -1 when every answer abstains. */
int r1_eval_majority(const char *const *answers, int n);

/* Samples spec->set as r1_eval_complete, scores every sample with spec->rewards (checked
 * with r1_reward_check_list: R1_EINVAL for an unknown name), extracts answers per from,
 * and fills *out (free with r1_eval_report_free). */
int r1_eval_run(struct r1_eval_report **out, struct r1_model *m, const struct r1_tokenizer *tok,
                const struct r1_eval_spec *spec, double threshold, enum r1_answer_from from);
void r1_eval_report_free(struct r1_eval_report *r);

#endif
