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
 * reservation and allocates its own KV cache for the call. */
#ifndef R1_STAGES_EVALUATE_H
#define R1_STAGES_EVALUATE_H

#include <stdint.h>

#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"
#include "stages/data/prompts.h"
#include "stages/stage.h"

struct r1_eval_spec {
    const struct r1_prompt_set *set;
    int samples;             /* completions per prompt (>= 1) */
    float temperature, top_p;
    int max_completion_len;
    uint64_t seed;
    const struct r1_reward_cfg *rewards; /* may be NULL (n_rewards 0) */
    int n_rewards;
    const char *accuracy_reward; /* NULL: "accuracy"; its cfg is taken from rewards when listed */
};

/* The held-out prompts of the stage env names: data.eval_path, else data.generator's
 * eval split of data.eval_size examples drawn with seed, read with the stage's prompt and
 * answer fields, prompt template and the recipe's chat template; prompts longer than
 * limit tokens (> 0) are an error.  *out is NULL when the stage has none. */
int r1_eval_prompts_load(struct r1_prompt_set **out, const struct r1_stage_env *env,
                         uint64_t seed, int limit);

int r1_eval_generate(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *spec, struct r1_stage_metrics *out);

#endif
