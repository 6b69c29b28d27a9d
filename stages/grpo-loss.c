/* grpo-loss.c - advantages, token losses and aggregation weights (see grpo-loss.h). */
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

void r1_grpo_token_loss(const struct r1_grpo_loss_cfg *cfg, const struct r1_grpo_tokens *t,
                        float *dlogp, float *dentropy, struct r1_grpo_stats *st)
{
    const double lo = 1.0 - cfg->epsilon_low, hi = 1.0 + cfg->epsilon_high;
    const double beta = cfg->beta, c = cfg->entropy_coef;
    for (int64_t i = 0; i < t->N; i++) {
        double w = t->weight[i];
        if (w == 0.0) {
            dlogp[i] = 0.0f;
            if (dentropy)
                dentropy[i] = 0.0f;
            continue;
        }
        double lp = t->logp[i], A = t->adv[i];
        double rho = t->old_logp ? exp(lp - t->old_logp[i]) : 1.0;
        double rc = rho < lo ? lo : rho > hi ? hi : rho;
        double un = rho * A, cl = rc * A;
        double loss = -(un <= cl ? un : cl);
        double g = un <= cl ? -rho * A : 0.0; /* the clipped term is constant in logp */
        if (beta != 0.0 && t->ref_logp) {
            double d = t->ref_logp[i] - lp, e = exp(d);
            double k3 = e - d - 1.0;
            loss += beta * k3;
            g += beta * (1.0 - e);
            st->kl += k3;
        }
        if (t->entropy) {
            loss -= c * t->entropy[i];
            st->entropy += t->entropy[i];
        }
        dlogp[i] = (float)(w * g);
        if (dentropy)
            dentropy[i] = (float)(-w * c);
        st->loss += w * loss;
        st->n_tokens += 1;
        st->clip_low += rho < lo && A < 0;
        st->clip_high += rho > hi && A > 0;
    }
}

double r1_grpo_overlong_penalty(int64_t len, int64_t max_len, int64_t buffer, double penalty)
{
    if (buffer <= 0 || len <= max_len - buffer)
        return 0.0;
    if (len > max_len)
        len = max_len;
    return -penalty * (double)(len - (max_len - buffer)) / (double)buffer;
}
