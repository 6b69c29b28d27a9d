/* reward_model.h - the reward_model stage: a preference (Bradley-Terry) reward model,
 * and the scorer later stages (align) use to read it.
 *
 * A reward model is the policy's decoder with a score head (core/model.h, num_labels
 * 1): one scalar per text, read at the text's last token.  Training data are pairs
 * (prompt, chosen, rejected); the loss of a batch of n pairs is
 *     L = (1/n) Σ_i -log σ(r_c,i - r_r,i - margin).
 *
 * Encoding (r1_rm_encode, shared by training, evaluation and the scorer): the prompt
 * text (the template applied when one is set), then the response, then EOS when the
 * model has one; the score is read at the last token.  A text longer than max_len loses
 * tokens from its front (prompt first) so the end of the response always stays.
 *
 * Batches: one update takes batch_size pairs, micro_batch_size pairs per
 * forward/backward; the chosen and rejected text of a pair sit in adjacent rows of one
 * micro-batch, right-padded (segment -1) to the longest row of that micro-batch.  The
 * pair order is a Philox permutation per epoch (stream R1_STREAM_DATA + epoch), so the
 * data position is (epoch, cursor).  Everything that affects the next step (weights,
 * AdamW state, step, data position) saves and loads: a resumed run is bit-identical
 * on the CPU. */
#ifndef R1_STAGES_REWARD_MODEL_H
#define R1_STAGES_REWARD_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dist.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/tokenizer.h"
#include "stages/stage.h"

/* ---- the loss --------------------------------------------------------------------- */

/* Bradley-Terry loss of n pairs: returns Σ_i -log σ(rc[i] - rr[i] - margin) / denom
 * (denom = n gives the mean) and writes its gradients drc[i] = -σ(-(Δ_i - margin)) /
 * denom and drr[i] = -drc[i] (drc, drr may be NULL).  Stable for any finite Δ: -log σ(x)
 * = max(-x, 0) + log1p(exp(-|x|)). */
double r1_rm_bt_loss(int n, const float *rc, const float *rr, float margin, double denom,
                     float *drc, float *drr);
/* Pointwise (safety) loss of n labelled texts: the binary cross-entropy of σ(score) as
 * P(safe), Σ_i softplus(-(2y_i - 1)·s_i) / denom with y_i = 1 for safe, 0 for unsafe, and
 * its gradient ds[i] = (σ(s_i) - y_i) / denom (ds may be NULL).  Stable for any finite s. */
double r1_rm_bce_loss(int n, const float *s, const int8_t *y, double denom, float *ds);
/* Area under the ROC curve of scores s against labels y (1 positive), ties counted half:
 * the chance a random positive outscores a random negative; 0.5 without both classes. */
double r1_rm_auc(int64_t n, const float *s, const int8_t *y);

/* ---- encoding --------------------------------------------------------------------- */

/* The tokens of one (prompt, response) as the reward model reads them into a fresh
 * array *ids (caller frees) of *n <= max_len tokens; score at (*n - 1).  template_: a
 * named template, text with {prompt}, or NULL (the prompt as is); eos < 0: none.
 * R1_EINVAL for a bad template or max_len < 1. */
int r1_rm_encode(const struct r1_tokenizer *tok, const char *template_, const char *prompt,
                 const char *response, int32_t eos, int max_len, int32_t **ids, int *n);
/* Rows r < rows of a (rows, T) batch from texts ids[r] of lengths len[r] >= 1:
 * right-padded with pad (segment -1, position 0); last[r] = len[r] - 1.  Returns T,
 * the longest length.  tokens, pos, seg (rows·T) and last (rows) are the caller's. */
int r1_rm_fill_rows(int rows, const int32_t *const *ids, const int *len, int32_t pad,
                    int32_t *tokens, int32_t *pos, int32_t *seg, int32_t *last);

/* ---- the scorer (align and tests) --------------------------------------------------- */

struct r1_rm_scorer;

/* m: a score-head model (borrowed; the scorer reserves its activations), tok: its
 * tokenizer (borrowed), template_: prompt template or NULL (copied), max_len: tokens per
 * scored text.  R1_EINVAL when m has no score head or max_len exceeds its max_seq_len. */
int r1_rm_scorer_create(struct r1_rm_scorer **out, struct r1_model *m,
                        const struct r1_tokenizer *tok, const char *template_, int max_len);
/* scores[i] of (prompts[i], responses[i]), i < n; micro-batches of R1_RM_SCORER_ROWS
 * texts; deterministic (a text's score does not depend on the others beyond the f32
 * rounding of the batch shape). */
int r1_rm_scorer_score(struct r1_rm_scorer *s, int n, const char *const *prompts,
                       const char *const *responses, float *scores);
void r1_rm_scorer_free(struct r1_rm_scorer *s);

#define R1_RM_SCORER_ROWS 8

/* ---- the trainer ------------------------------------------------------------------- */

struct r1_rm_data_spec {
    const char *path;      /* JSONL file, or NULL when generator is set */
    const char *generator; /* a prefs spec, or safety for pointwise (stages/data/gen.h) */
    int64_t gen_n;         /* generated pairs */
    uint64_t gen_seed;
    int split; /* enum r1_split of the generated pairs */
    const char *prompt_field, *chosen_field, *rejected_field; /* JSONL field names */
    /* pointwise: (prompt, response, label) items; label "safe"/"unsafe", true/false or
     * 1/0 (safe = 1) */
    bool pointwise;
    const char *response_field, *label_field;
};

struct r1_rm_config {
    bool pointwise; /* labelled texts and r1_rm_bce_loss instead of pairs (train.pointwise) */
    int64_t steps;  /* updates; 0: derived from epochs */
    int64_t epochs; /* used when steps is 0: ceil(epochs · pairs / batch_size) updates */
    int batch_size, micro_batch_size; /* in pairs */
    int seq_len;                      /* tokens per encoded text (max_len of r1_rm_encode) */
    uint64_t seed;                    /* data order */
    float margin;
    const char *template_;
    struct r1_optim_config optim;
    struct r1_rm_data_spec train;
    struct r1_rm_data_spec eval; /* path and generator NULL: no held-out pairs */
    /* data parallel (NULL or world 1: one process): rank r scores micro-batches r, r + world,
     * ... of every batch; losses, counts and gradients are summed before the update */
    struct r1_dist *dist;
};

struct r1_rm_metrics {
    int64_t step;
    double loss, accuracy, margin; /* over the batch's pairs */
    double grad_norm;
    float lr;
    int64_t epoch;
};

struct r1_rm_stage;

/* m: a score-head model (borrowed), trained in place; tok borrowed. */
int r1_rm_stage_create(struct r1_rm_stage **out, struct r1_model *m, const struct r1_tokenizer *tok,
                       const struct r1_rm_config *cfg);
void r1_rm_stage_free(struct r1_rm_stage *s);
int r1_rm_stage_step(struct r1_rm_stage *s, struct r1_rm_metrics *out);
int64_t r1_rm_stage_steps_done(const struct r1_rm_stage *s);
int64_t r1_rm_stage_steps_total(const struct r1_rm_stage *s);
const char *r1_rm_stage_data_sha256(const struct r1_rm_stage *s);
/* Held-out pairwise accuracy, mean loss and mean margin; *n_pairs 0 when there are no
 * held-out pairs.  Changes no state. */
int r1_rm_stage_evaluate(struct r1_rm_stage *s, double *accuracy, double *loss, double *margin,
                         int64_t *n_pairs);
/* Pointwise: held-out accuracy (score > 0 means safe), mean loss and ROC AUC; *n_items 0
 * when there are no held-out items (or the stage is pairwise). */
int r1_rm_stage_evaluate_pointwise(struct r1_rm_stage *s, double *accuracy, double *loss,
                                   double *auc, int64_t *n_items);
/* dir/ gets config.json + model.safetensors (a *ForSequenceClassification directory),
 * optimizer.safetensors and trainer_state.json; load restores all of it. */
int r1_rm_stage_save(const struct r1_rm_stage *s, const char *dir);
int r1_rm_stage_load(struct r1_rm_stage *s, const char *dir);

/* The stage table row (stages/stage.c). */
extern const struct r1_stage_ops r1_reward_model_stage_ops;

#endif
