/* align.h - what the align stage (DeepSeek-R1 stage 4) adds to GRPO: general prompts
 * and a preference reward model.
 *
 * An align stage is a grpo stage (stages/grpo.c) whose prompt set holds the reasoning
 * prompts of data.* followed by the general prompts of align.general_* (their reference
 * answers blanked: only the reward model judges them).  Every completion gets the rule
 * rewards of grpo.rewards; a completion of a general prompt also gets rm_weight × the
 * reward model's score, from step rm_start_step on.  With rm_scope summary (the paper's
 * helpfulness setting) the reward model reads only the text after the last </think>
 * (the whole completion when there is none); with full it reads all of it.
 * With align.safety_model (a pointwise reward model) every completion, reasoning or
 * general, also gets safety_weight × σ(score) of its whole text, thinking included, from
 * the first step (the paper's safety reward). */
#ifndef R1_STAGES_ALIGN_H
#define R1_STAGES_ALIGN_H

#include <stdint.h>

#include "core/generate.h"
#include "stages/data/prompts.h"
#include "stages/stage.h"

struct r1_align;

/* Loads the reward model (env->open_model) and the general prompts, appending them to
 * *train (grown in place; its sha256 becomes that of both sources).  limit: the longest
 * prompt allowed in tokens. */
int r1_align_create(struct r1_align **out, const struct r1_stage_env *env,
                    struct r1_prompt_set *train, int limit);
void r1_align_free(struct r1_align *a);

/* Adds the reward model's part to rew (n) for completions res (n) of prompts
 * set->items[prompt_of[i]] at update step `step` (0-based, the step being taken). */
int r1_align_score(struct r1_align *a, int64_t step, const struct r1_prompt_set *set,
                   const int64_t *prompt_of, const struct r1_gen_result *res, int n, float *rew);

/* Numbers of the last r1_align_score calls since the previous call of this one:
 * mean reward-model score, the share of completions that were of general prompts, and the
 * mean P(safe) of the safety model (-1 without one). */
void r1_align_take_stats(struct r1_align *a, double *rm_mean, double *general_frac,
                         double *safety_mean);

/* The general prompts' source for the ledger (n 0 or 1). */
const struct r1_data_hash *r1_align_data(const struct r1_align *a, int *n);

#endif
