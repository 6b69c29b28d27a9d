/* grpo-loss.h - the GRPO objective's host side: group-relative advantages, the aggregation
 * weights of GRPO, BNPO, Dr. GRPO and DAPO, and DAPO's overlong penalty.
 *
 * The per-token loss itself (to minimise, per token t of completion i)
 *   ℓ = −min(ρ·A_i, clip(ρ, 1−ε_low, 1+ε_high)·A_i) + β·k3 − c·H,  ρ = exp(logp − old_logp),
 *   k3 = exp(ref − logp) − (ref − logp) − 1      (≥ 0, unbiased for KL(π‖π_ref))
 * summed as Σ_t w_t·ℓ_t with the aggregation weight w_t of the token's sequence
 * (r1_grpo_seq_weight), is the backend op pg_loss (core/backend.h): the model evaluates it
 * on each chunk of log-probs as the LM head makes them (r1_model_pg_step). */
#ifndef R1_STAGES_GRPO_LOSS_H
#define R1_STAGES_GRPO_LOSS_H

#include <stdint.h>

#include "core/recipe.h"

/* Advantages of n_groups groups of G rewards each (r and adv: (n_groups·G)):
 * A = r − mean(group), divided by std(group) + 1e-4 (GROUP), by the std of the whole
 * batch + 1e-4 (BATCH) or not at all (NONE).  std is the population std.  A group whose
 * rewards are all equal gets A = 0 exactly.  group_std (n_groups, may be NULL) receives
 * each group's std. */
void r1_grpo_advantages(const float *r, int n_groups, int G, enum r1_grpo_scale scale,
                        float *adv, float *group_std);

/* Counts that fix the aggregation weight of one sequence's tokens. */
struct r1_grpo_norm {
    int64_t seq_tokens;   /* scored tokens of this sequence */
    int64_t mb_seqs;      /* sequences in the optimizer update (minibatch) */
    int64_t micro_tokens; /* scored tokens of this micro-batch (BNPO) */
    int64_t n_micro;      /* micro-batches in the minibatch (BNPO) */
    int64_t batch_tokens; /* scored tokens of the whole generation batch (DAPO) */
    int64_t max_len;      /* max_completion_len (Dr. GRPO) */
};

/* w_t of every token of the sequence: GRPO 1/(seq_tokens·mb_seqs) (mean per sequence,
 * then over sequences); BNPO 1/(micro_tokens·n_micro) (token mean over the micro-batch,
 * micro-batches averaged); DR_GRPO 1/(mb_seqs·max_len); DAPO 1/batch_tokens.  0 when the
 * count it divides by is 0. */
double r1_grpo_seq_weight(enum r1_grpo_loss type, const struct r1_grpo_norm *n);

/* DAPO's soft overlong penalty of a completion of len tokens with limit max_len and a
 * buffer of `buffer` tokens: 0 up to max_len − buffer, then falling linearly to
 * −penalty at max_len.  0 when buffer is 0. */
double r1_grpo_overlong_penalty(int64_t len, int64_t max_len, int64_t buffer, double penalty);

#endif
