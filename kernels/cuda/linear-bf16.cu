/* linear-bf16.cu - matmuls with bf16 operands and f32 -> bf16 conversion, CUDA.
 *
 * Training in bf16 (matmul16_forward / matmul16_backward): both operands bf16, f32 results,
 * one cuBLASLt GEMM each (gemm.cu: CUDA_R_16BF in, CUDA_R_32F out, CUBLAS_COMPUTE_32F:
 * tensor cores, f32 accumulation, the bias in the epilogue), laid out as linear.cu's;
 * dbias by reduce.cuh's column sum over the bf16 gradient.  The CPU reference widens the
 * same operands to f32 and runs SGEMM, so the two differ only in summation order.
 *
 * Generation's matmul (core/kvcache.c): out (M,N) = bf16(in) (M,K) · w (N,K)ᵀ + bias (N),
 * w as bf16 bit patterns, in f32 rounded to bf16 as it is staged, on tensor cores (WMMA
 * 16×16×16, f32 accumulators).  The contract asks that an output element not depend on
 * M, which cuBLAS does not promise (its kernel, split-K included, follows the shape), so
 * this is r1's own GEMM with one arithmetic for every shape: the K dimension is cut in
 * 16-wide steps, warp w of a block's four accumulates steps w, w+4, w+8, ... in order
 * (one chain of MMAs per output element; an MMA's result for an element depends on its
 * row of A, column of B and accumulator only), and the four partial sums are added
 * ((w0 + w1) + w2) + w3 before the bias.  Every warp covers the block's whole output tile,
 * 16·FM input rows × 16·FN weight rows, which may then follow M without changing a bit:
 * 16×16 for decoding a few sequences (many blocks to stream the weights with), 64×32 for
 * hundreds.  Operands reach the tensor cores through a per-warp staging tile in shared
 * memory, 16-byte loads when K is a multiple of 8 and the rows are aligned.  Not tuned
 * on a GPU: no multi-stage pipeline (cp.async) or swizzled layouts yet.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

#define R1_G16_WARPS 4 /* warps per block, each a quarter of the K steps */
#define R1_G16_LD 24   /* bf16 row stride of a staging tile: 16 + 8 (rows 16-byte aligned) */

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> r1_g16_fa;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> r1_g16_fb;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> r1_g16_acc;

__device__ __forceinline__ uint32_t r1_g16_pair(float lo, float hi)
{
    return (uint32_t)r1_bf16_bits(lo) | (uint32_t)r1_bf16_bits(hi) << 16;
}

/* step k0's operands into the warp's staging tiles: a (16·FM, 16) = bf16(in rows m0..),
 * b (16·FN, 16) = w rows n0.. (b read as the column-major K×N operand); zeros past M, N
 * and K */
template <int FM, int FN, bool VEC>
__device__ __forceinline__ void r1_g16_stage(uint16_t *a, uint16_t *b, const float *in,
                                             const uint16_t *w, int m0, int n0, int k0, int M,
                                             int K, int N, int lane)
{
    if (VEC) { /* K % 8 == 0: a group of 4 (in) or 8 (w) columns is all in or all out */
        for (int e = lane; e < 64 * FM; e += 32) {
            int r = e >> 2, c = (e & 3) * 4, m = m0 + r, k = k0 + c;
            uint2 v = make_uint2(0, 0);
            if (m < M && k < K) {
                float4 x = *(const float4 *)(in + (int64_t)m * K + k);
                v = make_uint2(r1_g16_pair(x.x, x.y), r1_g16_pair(x.z, x.w));
            }
            *(uint2 *)(a + r * R1_G16_LD + c) = v;
        }
        for (int e = lane; e < 32 * FN; e += 32) {
            int r = e >> 1, c = (e & 1) * 8, n = n0 + r, k = k0 + c;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (n < N && k < K)
                v = *(const uint4 *)(w + (int64_t)n * K + k);
            *(uint4 *)(b + r * R1_G16_LD + c) = v;
        }
    } else {
        for (int e = lane; e < 256 * FM; e += 32) {
            int r = e >> 4, c = e & 15, m = m0 + r, k = k0 + c;
            a[r * R1_G16_LD + c] = m < M && k < K ? r1_bf16_bits(in[(int64_t)m * K + k]) : 0;
        }
        for (int e = lane; e < 256 * FN; e += 32) {
            int r = e >> 4, c = e & 15, n = n0 + r, k = k0 + c;
            b[r * R1_G16_LD + c] = n < N && k < K ? w[(int64_t)n * K + k] : 0;
        }
    }
}

/* a block per output tile: rows m0 = 16·FM·blockIdx.x.., columns n0 = 16·FN·blockIdx.y.. */
template <int FM, int FN, bool VEC>
__global__ void __launch_bounds__(32 * R1_G16_WARPS)
    r1_gen16(float *out /* (M,N) */, const float *in /* (M,K) */, const uint16_t *w /* (N,K) */,
             const float *bias /* (N) */, const float *res /* (M,N) */, int M, int K, int N)
{
    __shared__ __align__(32) uint16_t sa[R1_G16_WARPS][16 * FM * R1_G16_LD];
    __shared__ __align__(32) uint16_t sb[R1_G16_WARPS][16 * FN * R1_G16_LD];
    __shared__ __align__(32) float sc[16 * FM * 16 * FN];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ldc = 16 * FN;
    const int m0 = blockIdx.x * 16 * FM, n0 = blockIdx.y * 16 * FN;
    uint16_t *a = sa[warp], *b = sb[warp];
    r1_g16_acc acc[FM][FN];
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);
    int steps = (K + 15) / 16;
    for (int s = warp; s < steps; s += R1_G16_WARPS) {
        r1_g16_stage<FM, FN, VEC>(a, b, in, w, m0, n0, s * 16, M, K, N, lane);
        __syncwarp();
        r1_g16_fb fb[FN];
#pragma unroll
        for (int j = 0; j < FN; j++)
            wmma::load_matrix_sync(fb[j], (const __nv_bfloat16 *)(b + j * 16 * R1_G16_LD),
                                   R1_G16_LD);
#pragma unroll
        for (int i = 0; i < FM; i++) {
            r1_g16_fa fa;
            wmma::load_matrix_sync(fa, (const __nv_bfloat16 *)(a + i * 16 * R1_G16_LD),
                                   R1_G16_LD);
#pragma unroll
            for (int j = 0; j < FN; j++)
                wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
        }
        __syncwarp(); /* the tiles are restaged next step */
    }
    /* the warps' partial sums, added in warp order (fragments of one type share a layout,
     * so their elements add pairwise) */
    for (int v = 0; v < R1_G16_WARPS; v++) {
        if (warp == v) {
#pragma unroll
            for (int i = 0; i < FM; i++)
#pragma unroll
                for (int j = 0; j < FN; j++) {
                    float *c = sc + 16 * i * ldc + 16 * j;
                    if (v > 0) {
                        r1_g16_acc t;
                        wmma::load_matrix_sync(t, c, ldc, wmma::mem_row_major);
                        for (int e = 0; e < t.num_elements; e++)
                            acc[i][j].x[e] = t.x[e] + acc[i][j].x[e];
                    }
                    wmma::store_matrix_sync(c, acc[i][j], ldc, wmma::mem_row_major);
                }
        }
        __syncthreads();
    }
    for (int e = threadIdx.x; e < 256 * FM * FN; e += blockDim.x) {
        int r = e / ldc, c = e % ldc, m = m0 + r, n = n0 + c;
        if (m < M && n < N) {
            float x = bias ? sc[e] + bias[n] : sc[e];
            out[(int64_t)m * N + n] = res ? x + res[(int64_t)m * N + n] : x; /* then + res */
        }
    }
}

template <int FM, int FN>
static void gen16(struct r1_cuda *cu, float *out, const float *in, const uint16_t *w,
                  const float *bias, const float *res, int M, int K, int N, bool vec)
{
    dim3 grid((unsigned)((M + 16 * FM - 1) / (16 * FM)),
              (unsigned)((N + 16 * FN - 1) / (16 * FN)));
    if (grid.y > 65535) {
        r1_cuda_fail(cu, "bf16 matmul", "more than 65535 weight-row tiles in one call", __FILE__,
                     __LINE__);
        return;
    }
    if (vec)
        R1_LAUNCH((r1_gen16<FM, FN, true>), grid, 32 * R1_G16_WARPS, cu->stream)(out, in, w, bias,
                                                                                  res, M, K, N);
    else
        R1_LAUNCH((r1_gen16<FM, FN, false>), grid, 32 * R1_G16_WARPS, cu->stream)(
            out, in, w, bias, res, M, K, N);
}

extern "C" void r1_cuda_matmul_forward_bf16(void *ctx, float *out, const float *in,
                                            const uint16_t *w, const float *bias,
                                            const float *res, int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (M <= 0 || N <= 0)
        return;
    bool vec = K % 8 == 0 && ((uintptr_t)w & 15) == 0 && ((uintptr_t)in & 15) == 0;
    if (M <= 16) /* the tile follows M; the arithmetic does not (see the top) */
        gen16<1, 1>(cu, out, in, w, bias, res, M, K, N, vec);
    else if (M <= 32)
        gen16<2, 2>(cu, out, in, w, bias, res, M, K, N, vec);
    else
        gen16<4, 2>(cu, out, in, w, bias, res, M, K, N, vec);
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

extern "C" void r1_cuda_matmul16_forward(void *ctx, float *out /* (M,N) */,
                                         const uint16_t *in /* (M,K) */,
                                         const uint16_t *w /* (N,K) */,
                                         const float *bias /* (N) or NULL */,
                                         const float *res /* (M,N) or NULL */, int M, int K,
                                         int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    r1_cuda_linear(cu, out, in, w, CUDA_R_16BF, bias, res, M, K, N,
                   "cuBLASLt (bf16 matmul forward)");
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
                                          int din_add, float *dw /* (N,K) or NULL */,
                                          float *dbias /* (N) or NULL */,
                                          const uint16_t *dout /* (M,N) */,
                                          const uint16_t *in /* (M,K) */,
                                          const uint16_t *w /* (N,K) */, int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    r1_cuda_linear_backward(cu, din, din_add, dw, dout, in, w, CUDA_R_16BF, M, K, N,
                            "cuBLASLt (bf16 matmul backward, din)",
                            "cuBLASLt (bf16 matmul backward, dw)");
    if (dbias && M > 0 && N > 0)
        r1_cuda_colsum(cu, dbias, r1_col_bf16{dout, N}, M, N);
}
