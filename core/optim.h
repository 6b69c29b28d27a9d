/* optim.h - AdamW, global-norm clipping and learning-rate schedules.
 *
 * One optimizer per model: first and second moments are one backend allocation
 * (an arena laid out like the gradients).  r1_optim_step() is one update:
 *   norm = ||g||₂ over all parameters; scale = min(1, max_grad_norm / (norm + 1e-6));
 *   AdamW on every tensor (weight decay only where r1_param.decay);
 *   gradients zeroed; step += 1.
 * Gradient accumulation: call the model's backward several times (grads add up,
 * each micro-batch's loss normalised by the whole batch's denominator), then step.
 * The state (step, m, v) saves and restores exactly (r1_optim_save/load). */
#ifndef R1_OPTIM_H
#define R1_OPTIM_H

#include <stdint.h>

#include "core/model.h"

enum r1_lr_schedule {
    R1_LR_CONSTANT = 0, /* lr, after an optional linear warm-up */
    R1_LR_COSINE,       /* warm-up, then cosine from lr to min_lr at total_steps */
    R1_LR_LINEAR,       /* warm-up, then linear from lr to min_lr at total_steps */
};

struct r1_optim_config {
    float lr, min_lr;
    float beta1, beta2, eps;
    float weight_decay;
    float max_grad_norm; /* <= 0: no clipping */
    enum r1_lr_schedule schedule;
    int64_t warmup_steps, total_steps;
};

struct r1_optim {
    struct r1_optim_config cfg;
    struct r1_model *m; /* borrowed */
    struct r1_arena state;
    float *mom, *var;   /* (n_params) each, laid out like the model's gradients */
    int64_t step;       /* updates done */
    double last_grad_norm;
    float last_lr;
};

/* Defaults: lr 3e-4, betas 0.9/0.95, eps 1e-8, wd 0.1, clip 1.0, constant. */
void r1_optim_config_default(struct r1_optim_config *c);
int r1_optim_config_check(const struct r1_optim_config *c);
/* Learning rate for update number step (0-based). */
float r1_optim_lr(const struct r1_optim_config *c, int64_t step);
const char *r1_lr_schedule_name(enum r1_lr_schedule s);
int r1_lr_schedule_parse(enum r1_lr_schedule *out, const char *name);

int r1_optim_create(struct r1_optim **out, struct r1_model *m, const struct r1_optim_config *c);
void r1_optim_free(struct r1_optim *o);
/* One update; R1_ENUMERIC (parameters untouched) when the gradient norm is not finite. */
int r1_optim_step(struct r1_optim *o);
/* Global L2 norm of the model's gradients (deterministic). */
double r1_optim_grad_norm(const struct r1_optim *o);

/* Saves step and moments to a safetensors file (tensors "exp_avg.<param>",
 * "exp_avg_sq.<param>", metadata "step"); load checks names and shapes. */
int r1_optim_save(const struct r1_optim *o, const char *path);
int r1_optim_load(struct r1_optim *o, const char *path);

#endif
