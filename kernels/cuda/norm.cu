/* norm.cu - RMSNorm forward/backward, CUDA.
 *
 * One block per row for the forward and for din: Σ in² (and Σ dout·w·in) in double, in
 * the fixed block tree of reduce.cuh, with the CPU's formulas:
 *   rstd = 1/sqrt(mean(in²) + eps),  out = in · rstd · w (and/or its bf16 image),
 *   din = rstd · (dout·w − in · rstd² · Σ(dout·w·in) / C).
 * dw (+=) is the chunked column sum of dout · in · rstd (reduce.cuh), in double.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#define R1_NORM_THREADS 256

__global__ void r1_rmsnorm_fwd(float *out /* (N,C) or NULL */, uint16_t *out16 /* or NULL */,
                               float *rstd /* (N) */, const float *in /* (N,C) */,
                               const float *w /* (C) */, int C, float eps)
{
    __shared__ double sh[32];
    int64_t n = blockIdx.x;
    const float *x = in + n * C;
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += (double)x[c] * (double)x[c];
    s = r1_block_sum(s, sh);
    float r = (float)(1.0 / sqrt(s / C + (double)eps));
    if (threadIdx.x == 0)
        rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float y = x[c] * r * w[c];
        if (out)
            out[n * C + c] = y;
        if (out16)
            out16[n * C + c] = r1_bf16_bits(y);
    }
}

extern "C" void r1_cuda_rmsnorm_forward(void *ctx, float *out, uint16_t *out16, float *rstd,
                                        const float *in, const float *w, int N, int C, float eps)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || C <= 0)
        return;
    R1_LAUNCH(r1_rmsnorm_fwd, (unsigned)N, R1_NORM_THREADS, cu->stream)(out, out16, rstd, in, w,
                                                                    C, eps);
    R1_CUDA_LAUNCHED(cu, "rmsnorm forward");
}

__global__ void r1_rmsnorm_bwd_din(float *din /* (N,C) */, int din_add, uint16_t *din16,
                                   const float *dout /* (N,C) */, const float *in /* (N,C) */,
                                   const float *w /* (C) */, const float *rstd /* (N) */, int C)
{
    __shared__ double sh[32];
    int64_t n = blockIdx.x;
    const float *x = in + n * C, *g = dout + n * C;
    float *dx = din + n * C;
    float r = rstd[n];
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += (double)g[c] * w[c] * x[c];
    s = r1_block_sum(s, sh);
    float k = (float)(s * (double)r * (double)r / C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float d = r * (g[c] * w[c] - x[c] * k);
        d = din_add ? __fadd_rn(dx[c], d) : d; /* no contraction into the product */
        dx[c] = d;
        if (din16)
            din16[n * C + c] = r1_bf16_bits(d);
    }
}

struct r1_col_norm {
    const float *dout, *in, *rstd;
    int C;
    __device__ double operator()(int64_t n, int c) const
    {
        return (double)dout[n * C + c] * in[n * C + c] * (double)rstd[n];
    }
};

extern "C" void r1_cuda_rmsnorm_backward(void *ctx, float *din, int din_add, uint16_t *din16,
                                         float *dw, const float *dout, const float *in,
                                         const float *w, const float *rstd, int N, int C)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || C <= 0)
        return;
    if (din) {
        R1_LAUNCH(r1_rmsnorm_bwd_din, (unsigned)N, R1_NORM_THREADS, cu->stream)(
            din, din_add, din16, dout, in, w, rstd, C);
        R1_CUDA_LAUNCHED(cu, "rmsnorm backward");
    }
    if (dw)
        r1_cuda_colsum(cu, dw, r1_col_norm{dout, in, rstd, C}, N, C);
}
