/* rope.cu - rotary position embedding (Hugging Face split-half pairing), CUDA.
 *
 * x (N,H,D) in place (or, backward in bf16 training, into the result's bf16 image); one
 * thread per pair (i, i + D/2) of one head of one token, rotated by angle(pos[n], i) from
 * the cos/sin tables (P,D/2); backward rotates by −angle.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

__global__ void r1_rope(float *x /* (N,H,D) */, uint16_t *x16 /* (N,H,D) or NULL */,
                        const int32_t *pos /* (N) */, const float *cos_t /* (P,D/2) */,
                        const float *sin_t /* (P,D/2) */, int64_t pairs, int H, int D,
                        float sign)
{
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= pairs)
        return;
    int half = D / 2;
    int64_t r = idx / half; /* (n, h) row */
    int i = (int)(idx % half);
    int64_t n = r / H;
    int64_t p = pos[n];
    float c = cos_t[p * half + i], s = sign * sin_t[p * half + i];
    float *a = x + r * D;
    float x0 = a[i], x1 = a[i + half];
    float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
    if (x16) { /* the rotated value's bf16 image; x only read */
        x16[r * D + i] = r1_bf16_bits(y0);
        x16[r * D + i + half] = r1_bf16_bits(y1);
        return;
    }
    a[i] = y0;
    a[i + half] = y1;
}

static void rope_apply(void *ctx, float *x, uint16_t *x16, const int32_t *pos,
                       const float *cos_t, const float *sin_t, int N, int H, int D, float sign)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    int64_t pairs = (int64_t)N * H * (D / 2);
    if (pairs <= 0)
        return;
    R1_LAUNCH(r1_rope, r1_cuda_blocks(pairs, 256), 256, cu->stream)(x, x16, pos, cos_t, sin_t,
                                                                     pairs, H, D, sign);
    R1_CUDA_LAUNCHED(cu, "rope");
}

extern "C" void r1_cuda_rope_forward(void *ctx, float *x, const int32_t *pos, const float *cos,
                                     const float *sin, int N, int H, int D)
{
    rope_apply(ctx, x, NULL, pos, cos, sin, N, H, D, 1.0f);
}

extern "C" void r1_cuda_rope_backward(void *ctx, float *dx, uint16_t *dx16, const int32_t *pos,
                                      const float *cos, const float *sin, int N, int H, int D)
{
    rope_apply(ctx, dx, dx16, pos, cos, sin, N, H, D, -1.0f);
}
