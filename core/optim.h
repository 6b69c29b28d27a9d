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

#include "core/dist.h"
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
    int64_t zero; /* 1: ZeRO-1 under a job of several ranks (r1_optim_join); 0: off */
    /* MiB of gradients per allreduce under a job of several ranks, summed while the backward
     * goes on (r1_grad_sync); 0: one sum after the backward */
    float grad_bucket_mb;
};

struct r1_optim {
    struct r1_optim_config cfg;
    struct r1_model *m; /* borrowed */
    struct r1_arena state;
    float *mom, *var;   /* (n_params) each, laid out like the model's gradients; sharded:
                         * (shard_hi - shard_lo) each, for that range of the gradient arena */
    int64_t step;       /* updates done */
    double last_grad_norm;
    float last_lr;
    struct r1_grad_sync *sync; /* r1_optim_join: the gradient sums over the ranks */
    /* ZeRO-1 (r1_optim_join): rank r of dist keeps the moments of floats [lo, hi) of the
     * gradient arena, updates those parameters, then every rank's range is gathered */
    struct r1_dist *dist;
    int64_t shard_lo, shard_hi;
    int64_t *shard_los, *shard_his; /* (world) every rank's range */
    char shard_file[64];
    struct r1_adamw_range *ranges; /* (model tensors) r1_optim_step's, for one adamw call */
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

/* Joins the optimizer to the job d (NULL or a world of one: nothing changes).  The
 * gradients are then summed over the ranks by r1_optim_sum_grads, in buckets of
 * cfg.grad_bucket_mb that overlap the last backward of each update (r1_grad_sync).
 * With cfg.zero 1, ZeRO-1: the state is cut to this rank's even share of the gradient
 * arena's floats, every step updates only those parameters and then gathers every rank's
 * share (r1_dist_gather_ranges), so all ranks end with the same parameters.  Call before
 * the first step. */
int r1_optim_join(struct r1_optim *o, struct r1_dist *d);
/* An update's micro-batches on this rank: call r1_optim_last_backward before the model's
 * backward of the last one (its gradient sums may then start during that backward), and
 * r1_optim_sum_grads after the loop on every rank, also on one that failed or had no
 * micro-batch, before r1_dist_agree and r1_optim_step.  0 or the sum's failure. */
void r1_optim_last_backward(struct r1_optim *o);
int r1_optim_sum_grads(struct r1_optim *o);
/* The file a sharded optimizer of rank > 0 saves and loads (next to the checkpoint's
 * optimizer.safetensors, which holds rank 0's shard), e.g.
 * "optimizer-rank1-of-4.safetensors"; NULL for rank 0 and unsharded optimizers. */
const char *r1_optim_shard_file(const struct r1_optim *o);
/* That name for rank of world (rank 0 too, for messages). */
void r1_optim_shard_name(char *buf, size_t cap, int rank, int world);

/* Saves step and moments to a safetensors file (tensors "exp_avg.<param>",
 * "exp_avg_sq.<param>", metadata "step"); load checks names and shapes.  A sharded
 * optimizer saves its shard (tensors "exp_avg", "exp_avg_sq" over its range; metadata
 * "shard": "lo hi rank world"), and load at rank > 0 reads r1_optim_shard_file from the
 * directory of path; a shard of another range or world size is an error naming both. */
int r1_optim_save(const struct r1_optim *o, const char *path);
int r1_optim_load(struct r1_optim *o, const char *path);

#endif
