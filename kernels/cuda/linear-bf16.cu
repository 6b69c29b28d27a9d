/* linear-bf16.cu - matmuls with bf16 operands and f32 -> bf16 conversion, CUDA.
 *
 * Training in bf16 (matmul16_forward / matmul16_backward): both operands bf16, f32 results,
 * one cublasGemmEx each (CUDA_R_16BF in, CUDA_R_32F out, CUBLAS_COMPUTE_32F: tensor cores,
 * f32 accumulation), laid out as linear.cu's SGEMMs; dbias by reduce.cuh's column sum over
 * the bf16 gradient.  The CPU reference widens the same operands to f32 and runs SGEMM,
 * so the two differ only in summation order.
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
        R1_LAUNCH(r1_matmul_bf16<true>, grid, 32 * R1_BF16_WARPS, cu->stream)(out, in, w, bias, M,
                                                                               K, N);
    else
        R1_LAUNCH(r1_matmul_bf16<false>, grid, 32 * R1_BF16_WARPS, cu->stream)(out, in, w, bias,
                                                                                M, K, N);
    R1_CUDA_LAUNCHED(cu, "bf16 matmul");
}

__global__ void r1_convert_bf16_kernel(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = r1_bf16_bits(src[i]);
}

extern "C" void r1_cuda_convert_bf16(void *ctx, uint16_t *dst, const float *src, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (n <= 0)
        return;
    R1_LAUNCH(r1_convert_bf16_kernel, r1_cuda_blocks(n, 256), 256, cu->stream)(dst, src, n);
    R1_CUDA_LAUNCHED(cu, "bf16 convert");
}

/* ---- both operands bf16 (training) --------------------------------------------- */

static void gemm16_fail(struct r1_cuda *cu, cublasStatus_t st, const char *what)
{
    if (st != CUBLAS_STATUS_SUCCESS)
        r1_cuda_fail(cu, what, cu->cb.status_string(st), __FILE__, __LINE__);
}

/* column-major C (m,n) = op(A) · op(B) + beta C: A, B bf16, C f32, f32 accumulation */
static void gemm16(struct r1_cuda *cu, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                   int k, const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                   float *C, int ldc, const char *what)
{
    const float one = 1.0f;
    gemm16_fail(cu, cu->cb.gemm_ex(cu->blas, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B,
                                   CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                what);
}

extern "C" void r1_cuda_matmul16_forward(void *ctx, float *out /* (M,N) */,
                                         const uint16_t *in /* (M,K) */,
                                         const uint16_t *w /* (N,K) */,
                                         const float *bias /* (N) or NULL */, int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (M <= 0 || N <= 0)
        return;
    float beta = r1_cuda_matmul_prologue(cu, out, bias, M, K, N);
    if (beta < 0)
        return;
    /* outᵀ (N,M) = w (N,K) · inᵀ (K,M), as linear.cu's SGEMM */
    gemm16(cu, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, K, in, K, beta, out, N,
           "cublasGemmEx (bf16 matmul forward)");
}

struct r1_col_bf16 {
    const uint16_t *x; /* (N,C) */
    int C;
    __device__ double operator()(int64_t n, int c) const
    {
        return (double)__uint_as_float((uint32_t)x[n * C + c] << 16);
    }
};

extern "C" void r1_cuda_matmul16_backward(void *ctx, float *din /* (M,K) or NULL */,
                                          float *dw /* (N,K) or NULL */,
                                          float *dbias /* (N) or NULL */,
                                          const uint16_t *dout /* (M,N) */,
                                          const uint16_t *in /* (M,K) */,
                                          const uint16_t *w /* (N,K) */, int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (din && M > 0 && K > 0) {
        if (N > 0) /* dinᵀ (K,M) = wᵀ (K,N) · doutᵀ (N,M) */
            gemm16(cu, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, w, K, dout, N, 0.0f, din, K,
                   "cublasGemmEx (bf16 matmul backward, din)");
        else if (cudaMemsetAsync(din, 0, (size_t)M * K * sizeof(float), cu->stream) != cudaSuccess)
            r1_cuda_fail(cu, "cudaMemsetAsync", cudaGetErrorString(cudaGetLastError()), __FILE__,
                         __LINE__);
    }
    if (dw && M > 0 && N > 0 && K > 0) /* dwᵀ (K,N) += inᵀ (K,M) · dout (M,N) */
        gemm16(cu, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, in, K, dout, N, 1.0f, dw, K,
               "cublasGemmEx (bf16 matmul backward, dw)");
    if (dbias && M > 0 && N > 0)
        r1_cuda_colsum(cu, dbias, r1_col_bf16{dout, N}, M, N);
}
