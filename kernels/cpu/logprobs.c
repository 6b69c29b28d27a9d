/* logprobs.c - token log-probabilities, entropy and their gradient, CPU.
 *
 * Per row n of logits (N,V), with m = max(z):
 *   s = Σ e^(z−m),  lse = m + log s,  logp = z[t] − lse (0 when t < 0),
 *   H = −Σ p log p = log s − Σ e^(z−m)·(z−m) / s     (one stable pass).
 * Backward (dlogits written, =, in f32 or as its bf16 image):
 *   dz_j = scale·(dlogp·(1[j=t] − p_j) + dentropy·(−p_j·(log p_j + H))).
 * Sums are in double over 8 fixed lanes; rows are independent and parallel.
 * Logits of −inf (masked tokens) give p = 0 and contribute nothing (no NaN).
 * The policy-gradient token loss (GRPO's clipped surrogate, k3 KL, entropy bonus) is a
 * sequential pass in double over the tokens, its sums in token order.
 */
#include "kernels/cpu/cpu-ops.h"

#include "core/backend.h"

#include <math.h>

static float row_max(const float *restrict z, int V)
{
    float m = -INFINITY;
    for (int j = 0; j < V; j++)
        m = z[j] > m ? z[j] : m;
    return m;
}

/* s = Σ e^(z−m) and sx = Σ e^(z−m)·(z−m), both in double */
static void row_sums(const float *restrict z, int V, float m, double *s_out, double *sx_out)
{
    double s[8] = {0}, sx[8] = {0};
    int j = 0;
    for (; j + 8 <= V; j += 8)
        for (int l = 0; l < 8; l++) {
            float d = z[j + l] - m;
            float e = expf(d);
            s[l] += e;
            sx[l] += e > 0.0f ? (double)e * d : 0.0;
        }
    for (; j < V; j++) {
        float d = z[j] - m;
        float e = expf(d);
        s[0] += e;
        sx[0] += e > 0.0f ? (double)e * d : 0.0;
    }
    *s_out = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    *sx_out = ((sx[0] + sx[1]) + (sx[2] + sx[3])) + ((sx[4] + sx[5]) + (sx[6] + sx[7]));
}

void r1_cpu_logprobs_forward(void *ctx, float *logp /* (N) */, float *entropy /* (N) or NULL */,
                             float *lse /* (N) */, const float *logits /* (N,V) */,
                             const int32_t *targets /* (N) */, int N, int V)
{
    struct r1_cpu *cpu = ctx;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * V >= R1_CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float m = row_max(z, V);
        double s, sx;
        row_sums(z, V, m, &s, &sx);
        double l = (double)m + log(s);
        lse[n] = (float)l;
        int t = targets[n];
        logp[n] = t >= 0 ? (float)((double)z[t] - l) : 0.0f;
        if (entropy)
            entropy[n] = (float)(log(s) - sx / s);
    }
}

void r1_cpu_logprobs_backward(void *ctx, float *dlogits /* (N,V) or NULL */,
                              uint16_t *dlogits16 /* (N,V) or NULL */,
                              const float *logits /* (N,V) */, const float *lse /* (N) */,
                              const float *entropy /* (N) or NULL */,
                              const int32_t *targets /* (N) */, const float *dlogp /* (N) */,
                              const float *dentropy /* (N) or NULL */, float scale, int N, int V)
{
    struct r1_cpu *cpu = ctx;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * V >= R1_CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *restrict z = logits + (size_t)n * V;
        float l = lse[n];
        int t = targets[n];
        float gl = (dlogp && t >= 0) ? dlogp[n] : 0.0f;
        float ge = dentropy ? dentropy[n] : 0.0f;
        float h = 0.0f;
        if (ge != 0.0f) {
            if (entropy) {
                h = entropy[n];
            } else {
                /* the caller kept no entropy: recompute it as forward does */
                double s, sx;
                row_sums(z, V, row_max(z, V), &s, &sx);
                h = (float)(log(s) - sx / s);
            }
        }
        float *restrict dz = dlogits ? dlogits + (size_t)n * V : NULL;
        uint16_t *restrict dz16 = dlogits16 ? dlogits16 + (size_t)n * V : NULL;
        for (int j = 0; j < V; j++) {
            float lp = z[j] - l;
            float p = expf(lp);
            float te = p > 0.0f ? -p * (lp + h) : 0.0f;
            float d = -gl * p + ge * te;
            if (j == t)
                d += gl;
            d *= scale;
            if (dz)
                dz[j] = d;
            else
                dz16[j] = r1_cpu_f32_bf16(d);
        }
    }
}

void r1_cpu_pg_loss(void *ctx, float *dlogp /* (N) */, float *dentropy /* (N) or NULL */,
                    struct r1_pg_stats *st, const float *logp /* (N) */,
                    const float *old /* (N) or NULL */, const float *ref /* (N) or NULL */,
                    const float *entropy /* (N) or NULL */, const float *adv /* (N) */,
                    const float *weight /* (N) */, const struct r1_pg_cfg *cfg, int N)
{
    (void)ctx;
    const double lo = 1.0 - cfg->epsilon_low, hi = 1.0 + cfg->epsilon_high;
    const double beta = cfg->beta, c = cfg->entropy_coef;
    for (int i = 0; i < N; i++) {
        double w = weight[i];
        if (w == 0.0) {
            dlogp[i] = 0.0f;
            if (dentropy)
                dentropy[i] = 0.0f;
            continue;
        }
        double lp = logp[i], A = adv[i];
        double rho = old ? exp(lp - old[i]) : 1.0;
        double rc = rho < lo ? lo : rho > hi ? hi : rho;
        double un = rho * A, cl = rc * A;
        double loss = -(un <= cl ? un : cl);
        double g = un <= cl ? -rho * A : 0.0; /* the clipped term is constant in logp */
        if (beta != 0.0 && ref) {
            double d = ref[i] - lp, e = exp(d);
            double k3 = e - d - 1.0;
            loss += beta * k3;
            g += beta * (1.0 - e);
            st->kl += k3;
        }
        if (entropy) {
            loss -= c * entropy[i];
            st->entropy += entropy[i];
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
