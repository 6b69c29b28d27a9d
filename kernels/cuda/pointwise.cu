/* pointwise.cu - elementwise ops on flat arrays (n): swiglu, add, scale, sumsq; CUDA.
 *
 * The CPU formulas, one thread per element (expf, not the fast-math intrinsic).  sumsq
 * splits x into R1_CUDA_SUMSQ_PARTS contiguous ranges (a number fixed by the code, not the
 * GPU), sums each in double in one block's fixed tree, and adds the range sums on the
 * host in index order.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

__global__ void r1_swiglu_fwd(float *out, uint16_t *out16, const float *gate, const float *up,
                              int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float g = gate[i];
    float sig = 1.0f / (1.0f + expf(-g));
    float y = g * sig * up[i];
    if (out)
        out[i] = y;
    if (out16)
        out16[i] = r1_bf16_bits(y);
}

__global__ void r1_swiglu_bwd(float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16,
                              const float *dout, const float *gate, const float *up, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float g = gate[i], u = up[i], d = dout[i];
    float sig = 1.0f / (1.0f + expf(-g));
    float a = d * u * sig * (1.0f + g * (1.0f - sig)), b = d * g * sig;
    if (dgate)
        dgate[i] = a, dup[i] = b;
    if (dgate16)
        dgate16[i] = r1_bf16_bits(a), dup16[i] = r1_bf16_bits(b);
}

__global__ void r1_add_kernel(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = a[i] + b[i];
}

__global__ void r1_scale_kernel(float *x, float s, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}

__global__ void r1_sumsq_parts(double *part /* (parts) */, const float *x, int64_t n, int64_t len)
{
    __shared__ double sh[32];
    int64_t i0 = (int64_t)blockIdx.x * len, i1 = min(n, i0 + len);
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x)
        s += (double)x[i] * (double)x[i];
    s = r1_block_sum(s, sh);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

#define R1_POINTWISE(cu, kernel, n, ...)                                                           \
    do {                                                                                           \
        R1_CUDA_BEGIN(cu);                                                                         \
        if ((n) <= 0)                                                                              \
            return;                                                                                \
        R1_LAUNCH(kernel, r1_cuda_blocks((n), 256), 256, (cu)->stream)(__VA_ARGS__);               \
        R1_CUDA_LAUNCHED(cu, #kernel);                                                             \
    } while (0)

extern "C" void r1_cuda_swiglu_forward(void *ctx, float *out, uint16_t *out16, const float *gate,
                                       const float *up, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_POINTWISE(cu, r1_swiglu_fwd, n, out, out16, gate, up, n);
}

extern "C" void r1_cuda_swiglu_backward(void *ctx, float *dgate, float *dup, uint16_t *dgate16,
                                        uint16_t *dup16, const float *dout, const float *gate,
                                        const float *up, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_POINTWISE(cu, r1_swiglu_bwd, n, dgate, dup, dgate16, dup16, dout, gate, up, n);
}

extern "C" void r1_cuda_add(void *ctx, float *out, const float *a, const float *b, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_POINTWISE(cu, r1_add_kernel, n, out, a, b, n);
}

extern "C" void r1_cuda_scale(void *ctx, float *x, float s, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_POINTWISE(cu, r1_scale_kernel, n, x, s, n);
}

extern "C" void r1_cuda_sumsq(void *ctx, double *host_out, const float *x, int64_t n)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    *host_out = 0.0;
    if (cu->failed) {
        *host_out = NAN;
        return;
    }
    if (n <= 0)
        return;
    int64_t len = (n + R1_CUDA_SUMSQ_PARTS - 1) / R1_CUDA_SUMSQ_PARTS;
    int parts = (int)((n + len - 1) / len);
    double *part = (double *)r1_cuda_workspace(cu, R1_CUDA_SUMSQ_PARTS * sizeof(double));
    if (!part) {
        *host_out = NAN;
        return;
    }
    R1_LAUNCH(r1_sumsq_parts, (unsigned)parts, 256, cu->stream)(part, x, n, len);
    R1_CUDA_LAUNCHED(cu, "sumsq");
    if (!cu->failed &&
        cudaMemcpyAsync(cu->host_parts, part, (size_t)parts * sizeof(double),
                        cudaMemcpyDeviceToHost, cu->stream) == cudaSuccess &&
        cudaStreamSynchronize(cu->stream) == cudaSuccess) {
        double s = 0.0;
        for (int p = 0; p < parts; p++)
            s += cu->host_parts[p];
        *host_out = s;
        return;
    }
    r1_cuda_fail(cu, "sumsq", cudaGetErrorString(cudaGetLastError()), __FILE__, __LINE__);
    *host_out = NAN;
}
