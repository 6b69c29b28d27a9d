/* logprobs.cu - token log-probabilities, entropy and their gradient, CUDA.
 *
 * One block per row of logits (N,V), the CPU's one-pass formulas:
 *   m = max z,  s = Σ e^(z−m),  sx = Σ e^(z−m)·(z−m)  (double, fixed block tree),
 *   lse = m + log s,  logp = z[t] − lse (0 when t < 0),  H = log s − sx/s;
 *   dz_j = scale·(dlogp·(1[j=t] − p_j) + dentropy·(−p_j·(log p_j + H)))   (written, =),
 * in f32 or as its bf16 image (the input of a bf16 matmul backward).
 * Logits of −inf give p = 0 and contribute nothing.  Only one chunk of rows of logits
 * exists at a time (core/model.c), so V-wide rows are read from global memory in passes.
 * The policy-gradient token loss (pg_loss) is here too: the objective a GRPO step
 * evaluates on each chunk's log-probs, between the head's forward and backward.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include "core/backend.h"

#define R1_LP_THREADS 512

/* m, s, sx of row z; every thread gets them */
__device__ void r1_row_stats(const float *z, int V, float *m_out, double *s_out, double *sx_out)
{
    __shared__ float shf[32];
    __shared__ double shd[32];
    float m = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        m = fmaxf(m, z[j]);
    m = r1_block_max(m, shf);
    double s = 0.0, sx = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float d = z[j] - m;
        float e = expf(d);
        s += e;
        sx += e > 0.0f ? (double)e * d : 0.0;
    }
    s = r1_block_sum(s, shd);
    sx = r1_block_sum(sx, shd);
    *m_out = m;
    *s_out = s;
    *sx_out = sx;
}

__global__ void r1_logprobs_fwd(float *logp, float *entropy, float *lse, const float *logits,
                                const int32_t *targets, int V)
{
    int64_t n = blockIdx.x;
    const float *z = logits + n * V;
    float m;
    double s, sx;
    r1_row_stats(z, V, &m, &s, &sx);
    if (threadIdx.x == 0) {
        double l = (double)m + log(s);
        lse[n] = (float)l;
        int t = targets[n];
        logp[n] = t >= 0 ? (float)((double)z[t] - l) : 0.0f;
        if (entropy)
            entropy[n] = (float)(log(s) - sx / s);
    }
}

extern "C" void r1_cuda_logprobs_forward(void *ctx, float *logp, float *entropy, float *lse,
                                         const float *logits, const int32_t *targets, int N,
                                         int V)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || V <= 0)
        return;
    R1_LAUNCH(r1_logprobs_fwd, (unsigned)N, R1_LP_THREADS, cu->stream)(logp, entropy, lse, logits,
                                                                   targets, V);
    R1_CUDA_LAUNCHED(cu, "logprobs forward");
}

__global__ void r1_logprobs_bwd(float *dlogits, uint16_t *dlogits16, const float *logits,
                                const float *lse, const float *entropy, const int32_t *targets,
                                const float *dlogp, const float *dentropy, float scale, int V)
{
    int64_t n = blockIdx.x;
    const float *z = logits + n * V;
    float l = lse[n];
    int t = targets[n];
    float gl = (dlogp && t >= 0) ? dlogp[n] : 0.0f;
    float ge = dentropy ? dentropy[n] : 0.0f;
    float h = 0.0f;
    if (ge != 0.0f) { /* uniform across the block: one row */
        if (entropy) {
            h = entropy[n];
        } else {
            float m;
            double s, sx;
            r1_row_stats(z, V, &m, &s, &sx);
            h = (float)(log(s) - sx / s);
        }
    }
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float lp = z[j] - l;
        float p = expf(lp);
        float te = p > 0.0f ? -p * (lp + h) : 0.0f;
        float d = -gl * p + ge * te;
        if (j == t)
            d += gl;
        d *= scale;
        if (dlogits)
            dlogits[n * V + j] = d;
        else
            dlogits16[n * V + j] = r1_bf16_bits(d);
    }
}

extern "C" void r1_cuda_logprobs_backward(void *ctx, float *dlogits, uint16_t *dlogits16,
                                          const float *logits, const float *lse,
                                          const float *entropy, const int32_t *targets,
                                          const float *dlogp, const float *dentropy, float scale,
                                          int N, int V)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || V <= 0)
        return;
    R1_LAUNCH(r1_logprobs_bwd, (unsigned)N, R1_LP_THREADS, cu->stream)(
        dlogits, dlogits16, logits, lse, entropy, targets, dlogp, dentropy, scale, V);
    R1_CUDA_LAUNCHED(cu, "logprobs backward");
}

/* The policy-gradient token loss: one block, each thread a strided share of the tokens in
 * double (the CPU's arithmetic), the six sums reduced over the block in its fixed tree
 * and added to *st by thread 0.  A call is one chunk of the LM head's rows (a few hundred
 * tokens): one block is enough, and the order of the sums depends on N alone. */
#define R1_PG_THREADS 256

__global__ void r1_pg_loss_kernel(float *dlogp, float *dentropy, struct r1_pg_stats *st,
                                  const float *logp, const float *old, const float *ref,
                                  const float *entropy, const float *adv, const float *weight,
                                  struct r1_pg_cfg cfg, int N)
{
    __shared__ double sh[32];
    const double lo = 1.0 - cfg.epsilon_low, hi = 1.0 + cfg.epsilon_high;
    const double beta = cfg.beta, c = cfg.entropy_coef;
    double sum[6] = {0, 0, 0, 0, 0, 0}; /* the fields of struct r1_pg_stats, in order */
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
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
        double g = un <= cl ? -rho * A : 0.0;
        if (beta != 0.0 && ref) {
            double d = ref[i] - lp, e = exp(d);
            double k3 = e - d - 1.0;
            loss += beta * k3;
            g += beta * (1.0 - e);
            sum[2] += k3;
        }
        if (entropy) {
            loss -= c * entropy[i];
            sum[3] += entropy[i];
        }
        dlogp[i] = (float)(w * g);
        if (dentropy)
            dentropy[i] = (float)(-w * c);
        sum[0] += w * loss;
        sum[1] += 1.0;
        sum[4] += rho < lo && A < 0;
        sum[5] += rho > hi && A > 0;
    }
    for (int k = 0; k < 6; k++)
        sum[k] = r1_block_sum(sum[k], sh);
    if (threadIdx.x == 0) {
        st->loss += sum[0];
        st->n_tokens += sum[1];
        st->kl += sum[2];
        st->entropy += sum[3];
        st->clip_low += sum[4];
        st->clip_high += sum[5];
    }
}

extern "C" void r1_cuda_pg_loss(void *ctx, float *dlogp, float *dentropy, struct r1_pg_stats *st,
                                const float *logp, const float *old, const float *ref,
                                const float *entropy, const float *adv, const float *weight,
                                const struct r1_pg_cfg *cfg, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0)
        return;
    R1_LAUNCH(r1_pg_loss_kernel, 1, R1_PG_THREADS, cu->stream)(
        dlogp, dentropy, st, logp, old, ref, entropy, adv, weight, *cfg, N);
    R1_CUDA_LAUNCHED(cu, "policy-gradient loss");
}
