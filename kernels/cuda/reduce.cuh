/* reduce.cuh - fixed-order warp and block reductions, launch helpers (kernels/cuda).
 *
 * Warp sums use the xor butterfly: at every level lane i adds its partner's value, and
 * a + b == b + a exactly, so all 32 lanes end with the same bits and the order of the
 * sum depends on nothing but the lane layout.  Block reductions reduce each warp, then
 * warp 0 reduces the per-warp values in lane order (missing warps count as the identity).
 * Blocks are at most 1024 threads (32 warps).
 */
#ifndef R1_CUDA_REDUCE_CUH
#define R1_CUDA_REDUCE_CUH

#include "kernels/cuda/cuda-ops.h"

#include <math.h>

#define R1_CUDA_FULL_MASK 0xffffffffu

/* R1_LAUNCH(kernel, grid, block, stream)(args...): kernel<<<grid, block, 0, stream>>>(args...).
 * Under the CUDA emulator (tests/cuda-emu, -DR1_CUDA_EMU, the kernels compiled as C++ for the
 * CPU) the same launch runs the kernel once per emulated thread. */
#ifdef R1_CUDA_EMU
#define R1_LAUNCH(kernel, grid, block, stream)                                                     \
    r1_emu_launch((grid), (block), (stream), [](auto &&...a_) { kernel(a_...); })
#else
#define R1_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

/* Returns from the calling op when an earlier failure was recorded. */
#define R1_CUDA_BEGIN(cu)                                                                          \
    do {                                                                                           \
        if ((cu)->failed)                                                                          \
            return;                                                                                \
    } while (0)

/* Records a failed launch (bad configuration, or an earlier asynchronous fault). */
#define R1_CUDA_LAUNCHED(cu, name)                                                                 \
    do {                                                                                           \
        cudaError_t e_ = cudaGetLastError();                                                       \
        if (e_ != cudaSuccess)                                                                     \
            r1_cuda_fail((cu), (name), cudaGetErrorString(e_), __FILE__, __LINE__);                \
    } while (0)

/* f to bf16 bits: round to nearest even; NaN keeps its sign and top payload and is forced
 * quiet (r1_f32_to_bf16 in core/tensor.c, bit for bit) */
__device__ __forceinline__ uint16_t r1_bf16_bits(float f)
{
    uint32_t u = __float_as_uint(f);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

template <typename T> __device__ __forceinline__ T r1_warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(R1_CUDA_FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float r1_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(R1_CUDA_FULL_MASK, v, o));
    return v;
}

/* Sum over the block; every thread gets the result.  sh: 32 elements of shared memory. */
template <typename T> __device__ T r1_block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = r1_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    T w = lane < nwarps ? sh[lane] : (T)0;
    w = r1_warp_sum(w);
    return w;
}

__device__ inline float r1_block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = r1_warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    float w = lane < nwarps ? sh[lane] : -INFINITY;
    return r1_warp_max(w);
}

/* Column sums without atomics: dst[c] += Σ_n f(n, c) for n < N, in double.  Rows are cut
 * into chunks of R1_CUDA_COL_CHUNK; one thread sums one column of one chunk in row order
 * into the workspace, then one thread per column adds the chunk sums in chunk order.
 * The split depends on N alone, so the bits do too.  F: a functor with
 * `__device__ double operator()(int64_t n, int c) const`. */
#define R1_CUDA_COL_CHUNK 64

template <class F>
__global__ void r1_colsum_partial(double *ws /* (chunks,C) */, F f, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int chunk = blockIdx.y;
    if (c >= C)
        return;
    int n0 = chunk * R1_CUDA_COL_CHUNK, n1 = min(N, n0 + R1_CUDA_COL_CHUNK);
    double acc = 0.0;
    for (int n = n0; n < n1; n++)
        acc += f(n, c);
    ws[(size_t)chunk * C + c] = acc;
}

static __global__ void r1_colsum_final(float *dst /* (C) */, const double *ws /* (chunks,C) */,
                                       int C, int chunks)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double acc = 0.0;
    for (int j = 0; j < chunks; j++)
        acc += ws[(size_t)j * C + c];
    dst[c] += (float)acc;
}

template <class F> void r1_cuda_colsum(struct r1_cuda *cu, float *dst, F f, int N, int C)
{
    if (N <= 0 || C <= 0)
        return;
    int chunks = (N + R1_CUDA_COL_CHUNK - 1) / R1_CUDA_COL_CHUNK;
    double *ws = (double *)r1_cuda_workspace(cu, (size_t)chunks * C * sizeof(double));
    if (!ws)
        return;
    /* gridDim.y is at most 65535: N up to 4M rows */
    if (chunks > 65535) {
        r1_cuda_fail(cu, "column sum", "more than 4M rows in one call", __FILE__, __LINE__);
        return;
    }
    dim3 grid((unsigned)((C + 127) / 128), (unsigned)chunks);
    R1_LAUNCH(r1_colsum_partial, grid, 128, cu->stream)(ws, f, N, C);
    R1_LAUNCH(r1_colsum_final, (unsigned)((C + 127) / 128), 128, cu->stream)(dst, ws, C, chunks);
    R1_CUDA_LAUNCHED(cu, "column sum");
}

static inline unsigned r1_cuda_blocks(int64_t n, int threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

#endif
