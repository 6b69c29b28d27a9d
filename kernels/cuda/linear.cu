/* linear.cu - matmul (f32 GEMMs on cuBLASLt, gemm.cu) and token embedding, CUDA.
 *
 * f32 in, f32 out, f32 compute (no TF32): the reference precision of the CPU backend; the
 * bias is the GEMM's epilogue.
 *
 * dbias and the embedding gradient are reductions over tokens, taken without atomics:
 * dbias by the chunked column sum of reduce.cuh; dwte by blocks that walk the tokens in
 * order, each adding only the rows it owns, so a repeated token's rows add up in token
 * order (as on the CPU); blocks own the token ids of one class mod R1_EMB_GROUPS.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#define R1_EMB_GROUPS 64 /* token-id classes (t mod 64) of the embedding backward's blocks */

extern "C" void r1_cuda_matmul_forward(void *ctx, float *out /* (M,N) */,
                                       const float *in /* (M,K) */, const float *w /* (N,K) */,
                                       const float *bias /* (N) or NULL */,
                                       const float *res /* (M,N) or NULL */, int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    r1_cuda_linear(cu, out, in, w, CUDA_R_32F, bias, res, M, K, N, "cuBLASLt (matmul forward)");
}

struct r1_col_plain {
    const float *x; /* (N,C) */
    int C;
    __device__ double operator()(int64_t n, int c) const { return (double)x[n * C + c]; }
};

extern "C" void r1_cuda_matmul_backward(void *ctx, float *din /* (M,K) or NULL */, int din_add,
                                        float *dw /* (N,K) or NULL */,
                                        float *dbias /* (N) or NULL */,
                                        const float *dout /* (M,N) */,
                                        const float *in /* (M,K) */, const float *w /* (N,K) */,
                                        int M, int K, int N)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    r1_cuda_linear_backward(cu, din, din_add, dw, dout, in, w, CUDA_R_32F, M, K, N,
                            "cuBLASLt (matmul backward, din)", "cuBLASLt (matmul backward, dw)");
    if (dbias && M > 0 && N > 0)
        r1_cuda_colsum(cu, dbias, r1_col_plain{dout, N}, M, N);
}

__global__ void r1_embedding_fwd(float *out /* (N,C) */, const int32_t *tokens /* (N) */,
                                 const float *wte /* (V,C) */, int64_t total, int C)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    int64_t n = i / C;
    int c = (int)(i % C);
    out[i] = wte[(int64_t)tokens[n] * C + c];
}

extern "C" void r1_cuda_embedding_forward(void *ctx, float *out, const int32_t *tokens,
                                          const float *wte, int N, int C)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    int64_t total = (int64_t)N * C;
    if (total <= 0)
        return;
    R1_LAUNCH(r1_embedding_fwd, r1_cuda_blocks(total, 256), 256, cu->stream)(out, tokens, wte,
                                                                              total, C);
    R1_CUDA_LAUNCHED(cu, "embedding forward");
}

/* block (x: a tile of 128 channels, y: the token ids t with t % R1_EMB_GROUPS == y) walks the
 * tokens 0..N-1 in order and adds the rows it owns: each (t, c) has one owner thread, and a
 * repeated token adds up in token order.  No vocabulary size is needed. */
__global__ void r1_embedding_bwd(float *dwte /* (V,C) */, const float *dout /* (N,C) */,
                                 const int32_t *tokens /* (N) */, int N, int C)
{
    __shared__ int32_t tile[256];
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int group = blockIdx.y;
    for (int n0 = 0; n0 < N; n0 += 256) {
        int cnt = min(256, N - n0);
        __syncthreads();
        for (int j = threadIdx.x; j < cnt; j += blockDim.x)
            tile[j] = tokens[n0 + j];
        __syncthreads();
        if (c >= C)
            continue;
        for (int j = 0; j < cnt; j++) {
            int t = tile[j];
            if (t % R1_EMB_GROUPS == group)
                dwte[(int64_t)t * C + c] += dout[(int64_t)(n0 + j) * C + c];
        }
    }
}

extern "C" void r1_cuda_embedding_backward(void *ctx, float *dwte /* (V,C) */,
                                           const float *dout /* (N,C) */,
                                           const int32_t *tokens /* (N) */, int N, int C)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || C <= 0)
        return;
    dim3 grid((unsigned)((C + 127) / 128), R1_EMB_GROUPS);
    R1_LAUNCH(r1_embedding_bwd, grid, 128, cu->stream)(dwte, dout, tokens, N, C);
    R1_CUDA_LAUNCHED(cu, "embedding backward");
}
