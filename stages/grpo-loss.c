/* grpo-loss.c - advantages, aggregation weights, the overlong penalty (see grpo-loss.h). */
#include "stages/grpo-loss.h"

#include <math.h>

#define STD_EPS 1e-4

static double mean_std(const float *r, int n, double *std)
{
    double mu = 0, var = 0;
    for (int i = 0; i < n; i++)
        mu += r[i];
    mu /= n;
    for (int i = 0; i < n; i++)
        var += (r[i] - mu) * (r[i] - mu);
    *std = sqrt(var / n);
    return mu;
}

static int all_equal(const float *r, int n)
{
    for (int i = 1; i < n; i++)
        if (r[i] != r[0])
            return 0;
    return 1;
}

void r1_grpo_advantages(const float *r, int n_groups, int G, enum r1_grpo_scale scale,
                        float *adv, float *group_std)
{
    double batch_std = 0;
    if (scale == R1_GRPO_SCALE_BATCH)
        mean_std(r, n_groups * G, &batch_std);
    for (int g = 0; g < n_groups; g++) {
        const float *rg = r + (size_t)g * G;
        float *ag = adv + (size_t)g * G;
        double sd, mu = mean_std(rg, G, &sd);
        if (group_std)
            group_std[g] = (float)sd;
        if (all_equal(rg, G)) { /* exactly 0, whatever rounding says of the mean */
            for (int i = 0; i < G; i++)
                ag[i] = 0.0f;
            continue;
        }
        double div = scale == R1_GRPO_SCALE_GROUP ? sd + STD_EPS
                     : scale == R1_GRPO_SCALE_BATCH ? batch_std + STD_EPS
                                                    : 1.0;
        for (int i = 0; i < G; i++)
            ag[i] = (float)((rg[i] - mu) / div);
    }
}

double r1_grpo_seq_weight(enum r1_grpo_loss type, const struct r1_grpo_norm *n)
{
    double den = 0;
    switch (type) {
    case R1_GRPO_LOSS_GRPO:
        den = (double)n->seq_tokens * (double)n->mb_seqs;
        break;
    case R1_GRPO_LOSS_BNPO:
        den = (double)n->micro_tokens * (double)n->n_micro;
        break;
    case R1_GRPO_LOSS_DR_GRPO:
        den = (double)n->mb_seqs * (double)n->max_len;
        break;
    case R1_GRPO_LOSS_DAPO:
        den = (double)n->batch_tokens;
        break;
    }
    return den > 0 ? 1.0 / den : 0.0;
}

double r1_grpo_overlong_penalty(int64_t len, int64_t max_len, int64_t buffer, double penalty)
{
    if (buffer <= 0 || len <= max_len - buffer)
        return 0.0;
    if (len > max_len)
        len = max_len;
    return -penalty * (double)(len - (max_len - buffer)) / (double)buffer;
}
