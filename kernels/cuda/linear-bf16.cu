/* linear-bf16.cu - matmul with bf16 weights and f32 -> bf16 conversion, CUDA.
 *
 * Generation's matmul (core/kvcache.c): out (M,N) = in (M,K) · w (N,K)ᵀ + bias (N), w as bf16
 * bit patterns, f32 activations and accumulation.  Decoding is bound by reading the
 * weights, so one warp owns one weight row and reads it once for up to R1_BF16_MR input
 * rows.  The contract asks that an output element not depend on M: lane l sums the
 * products of k ≡ l (mod 32) in increasing k (8 at a time along a 16-byte load when K is a
 * multiple of 8 and the rows are aligned, else one at a time), the warp adds the 32 lanes
 * in the butterfly of reduce.cuh, then the bias is added.  Which path runs depends on K
 * and the pointers, never on M.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#define R1_BF16_MR 4    /* input rows per warp */
#define R1_BF16_WARPS 8 /* weight rows per block */

__device__ __forceinline__ float r1_bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float r1_bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

template <bool VEC>
__global__ void r1_matmul_bf16(float *out /* (M,N) */, const float *in /* (M,K) */,
                               const uint16_t *w /* (N,K) */, const float *bias /* (N) */, int M,
                               int K, int N)
{
    int lane = threadIdx.x & 31;
    int n = blockIdx.x * R1_BF16_WARPS + (threadIdx.x >> 5);
    int m0 = blockIdx.y * R1_BF16_MR;
    if (n >= N)
        return;
    int mr = min(R1_BF16_MR, M - m0);
    const uint16_t *wr = w + (int64_t)n * K;
    float acc[R1_BF16_MR] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (VEC) {
        /* lane l reads weights [8j, 8j+8) for j ≡ l (mod 32): its k ≡ l (mod 32) order is
         * kept per element position, so each lane's partial sums are one fixed order */
        const uint4 *w4 = (const uint4 *)wr;
        int K8 = K / 8;
        for (int j = lane; j < K8; j += 32) {
            uint4 q = w4[j];
            float wf[8] = {r1_bf16_lo(q.x), r1_bf16_hi(q.x), r1_bf16_lo(q.y), r1_bf16_hi(q.y),
                           r1_bf16_lo(q.z), r1_bf16_hi(q.z), r1_bf16_lo(q.w), r1_bf16_hi(q.w)};
            for (int i = 0; i < R1_BF16_MR; i++) {
                if (i >= mr)
                    break;
                const float4 *x4 = (const float4 *)(in + (int64_t)(m0 + i) * K) + 2 * j;
                float4 a = x4[0], b = x4[1];
                float s = acc[i];
                s = fmaf(a.x, wf[0], s);
                s = fmaf(a.y, wf[1], s);
                s = fmaf(a.z, wf[2], s);
                s = fmaf(a.w, wf[3], s);
                s = fmaf(b.x, wf[4], s);
                s = fmaf(b.y, wf[5], s);
                s = fmaf(b.z, wf[6], s);
                s = fmaf(b.w, wf[7], s);
                acc[i] = s;
            }
        }
    } else {
        for (int k = lane; k < K; k += 32) {
            float wk = __uint_as_float((uint32_t)wr[k] << 16);
            for (int i = 0; i < R1_BF16_MR; i++) {
                if (i >= mr)
                    break;
                acc[i] = fmaf(in[(int64_t)(m0 + i) * K + k], wk, acc[i]);
            }
        }
    }
    for (int i = 0; i < R1_BF16_MR; i++) {
        float s = r1_warp_sum(acc[i]);
        if (i < mr && lane == 0)
            out[(int64_t)(m0 + i) * N + n] = bias ? s + bias[n] : s;
    }
}

extern "C" void r1_cuda_matmul_forward_bf16(void *ctx, float *out, const float *in,
                                            const uint16_t *w, const float *bias, int M, int K,
                                            int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (M <= 0 || N <= 0)
        return;
    if ((M + R1_BF16_MR - 1) / R1_BF16_MR > 65535) {
        r1_cuda_fail(cu, "bf16 matmul", "more than 262140 input rows in one call", __FILE__,
                     __LINE__);
        return;
    }
    dim3 grid((unsigned)((N + R1_BF16_WARPS - 1) / R1_BF16_WARPS),
              (unsigned)((M + R1_BF16_MR - 1) / R1_BF16_MR));
    bool vec = K % 8 == 0 && ((uintptr_t)w & 15) == 0 && ((uintptr_t)in & 15) == 0;
    if (vec)
        r1_matmul_bf16<true><<<grid, 32 * R1_BF16_WARPS, 0, cu->stream>>>(out, in, w, bias, M, K,
                                                                           N);
    else
        r1_matmul_bf16<false><<<grid, 32 * R1_BF16_WARPS, 0, cu->stream>>>(out, in, w, bias, M,
                                                                            K, N);
    R1_CUDA_LAUNCHED(cu, "bf16 matmul");
}

/* round to nearest even; NaN keeps its sign and top payload and is forced quiet
 * (r1_f32_to_bf16 in core/tensor.c, bit for bit) */
__global__ void r1_convert_bf16_kernel(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    uint32_t u = __float_as_uint(src[i]);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

extern "C" void r1_cuda_convert_bf16(void *ctx, uint16_t *dst, const float *src, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (n <= 0)
        return;
    r1_convert_bf16_kernel<<<r1_cuda_blocks(n, 256), 256, 0, cu->stream>>>(dst, src, n);
    R1_CUDA_LAUNCHED(cu, "bf16 convert");
}
