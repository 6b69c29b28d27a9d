/* logprobs.c - token log-probabilities, entropy and their gradient, CPU.
 *
 * Per row n of logits (N,V), with m = max(z):
 *   s = Σ e^(z−m),  lse = m + log s,  logp = z[t] − lse (0 when t < 0),
 *   H = −Σ p log p = log s − Σ e^(z−m)·(z−m) / s     (one stable pass).
 * Backward (dlogits written, =, in f32 or as its bf16 image):
 *   dz_j = scale·(dlogp·(1[j=t] − p_j) + dentropy·(−p_j·(log p_j + H))).
 * Sums are in double over 8 fixed lanes; rows are independent and parallel.
 * Logits of −inf (masked tokens) give p = 0 and contribute nothing (no NaN).
 */
#include "kernels/cpu/cpu-ops.h"

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
