/* grpo-loss.h - the GRPO objective on the host: group-relative advantages and the
 * per-token clipped surrogate with a k3 KL penalty and an entropy bonus, with the
 * aggregation rules of GRPO, BNPO, Dr. GRPO and DAPO.
 *
 * Per token t of completion i (to minimise):
 *   ρ   = exp(logp − old_logp)
 *   ℓ   = −min(ρ·A_i, clip(ρ, 1−ε_low, 1+ε_high)·A_i) + β·k3 − c·H
 *   k3  = exp(ref − logp) − (ref − logp) − 1      (≥ 0, unbiased for KL(π‖π_ref))
 * and the loss is Σ_t w_t·ℓ_t with the aggregation weight w_t of the token's sequence
 * (r1_grpo_seq_weight).  The gradient with respect to logp is
 *   ∂ℓ/∂logp = −ρ·A (when the unclipped term is the minimum, else 0) + β·(1 − exp(ref − logp))
 * and with respect to the entropy −c.  Everything here is plain host arithmetic in
 * double, so it is the same on every backend. */
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

struct r1_grpo_loss_cfg {
    float epsilon_low, epsilon_high, beta, entropy_coef;
};

/* N token slots of a micro-batch. */
struct r1_grpo_tokens {
    int64_t N;
    const float *logp;     /* (N) under the current policy */
    const float *old_logp; /* (N) under the policy that generated; NULL: logp (ρ = 1) */
    const float *ref_logp; /* (N) under the reference; NULL when beta = 0 */
    const float *entropy;  /* (N); NULL when entropy_coef = 0 */
    const float *adv;      /* (N) the token's sequence advantage */
    const float *weight;   /* (N) aggregation weight; 0 = not scored */
};

/* Statistics over scored tokens (sums; divide by n_tokens). */
struct r1_grpo_stats {
    double loss;      /* Σ w·ℓ */
    double n_tokens;  /* scored tokens */
    double kl;        /* Σ k3 */
    double entropy;   /* Σ H (when given) */
    double clip_low;  /* tokens with ρ < 1−ε_low and A < 0 */
    double clip_high; /* tokens with ρ > 1+ε_high and A > 0 */
};

/* Adds this micro-batch to st and writes dlogp (N) = w·∂ℓ/∂logp and dentropy (N) =
 * w·(−c) (dentropy may be NULL when entropy_coef = 0).  Unscored slots get 0. */
void r1_grpo_token_loss(const struct r1_grpo_loss_cfg *cfg, const struct r1_grpo_tokens *t,
                        float *dlogp, float *dentropy, struct r1_grpo_stats *st);

/* DAPO's soft overlong penalty of a completion of len tokens with limit max_len and a
 * buffer of `buffer` tokens: 0 up to max_len − buffer, then falling linearly to
 * −penalty at max_len.  0 when buffer is 0. */
double r1_grpo_overlong_penalty(int64_t len, int64_t max_len, int64_t buffer, double penalty);

#endif
