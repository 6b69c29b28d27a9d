/* adamw.cu - AdamW update over ranges of flat arrays (every tensor of a model), CUDA.
 *
 * The CPU formula element for element (core/backend.h): bias corrections computed once
 * on the host in double and rounded to float, per-element math in float, decoupled weight
 * decay on the parameter before the update; the bf16 working copy (param16, a model
 * training in bf16) written in the same pass.  The ranges go to the kernel in batches of
 * R1_ADAMW_BATCH, by value (a few hundred tensors: a handful of launches, not one per
 * tensor); a thread takes one element of the batch's ranges laid end to end and finds its
 * range by bisection over their running starts.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include "core/backend.h"

#define R1_ADAMW_BATCH 48

/* ranges [start[i], start[i + 1]) of the batch's element index: elements off[i].. of the
 * parameters and moff[i].. of the moments; ~1.4 KB, under the 4 KB of kernel parameters */
struct r1_adamw_batch {
    int64_t start[R1_ADAMW_BATCH + 1];
    int64_t off[R1_ADAMW_BATCH], moff[R1_ADAMW_BATCH];
    float wd[R1_ADAMW_BATCH];
    int n;
};
static_assert(sizeof(struct r1_adamw_batch) <= 4096, "a kernel takes 4 KB of parameters");

__global__ void r1_adamw(struct r1_adamw_batch b, float *param, uint16_t *param16,
                         const float *grad, float *m, float *v, float lr, float beta1,
                         float beta2, float eps, float grad_scale, float bc1, float bc2)
{
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= b.start[b.n])
        return;
    int lo = 0, hi = b.n - 1; /* the last range starting at or before e */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b.start[mid] <= e)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t k = e - b.start[lo], i = b.off[lo] + k, j = b.moff[lo] + k;
    float wd = b.wd[lo];
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[j] + (1.0f - beta1) * g;
    float vi = beta2 * v[j] + (1.0f - beta2) * g * g;
    m[j] = mi;
    v[j] = vi;
    float mhat = mi / bc1;
    float vhat = vi / bc2;
    float p = param[i];
    p = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
    param[i] = p;
    if (param16)
        param16[i] = r1_bf16_bits(p);
}

extern "C" void r1_cuda_adamw_update(void *ctx, float *param, uint16_t *param16,
                                     const float *grad, float *m, float *v,
                                     const struct r1_adamw_range *r, int n_ranges, float lr,
                                     float beta1, float beta2, float eps, float grad_scale,
                                     int64_t step)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    struct r1_adamw_batch b;
    b.n = 0;
    b.start[0] = 0;
    for (int k = 0; k <= n_ranges; k++) {
        if (b.n == R1_ADAMW_BATCH || (k == n_ranges && b.n > 0)) {
            R1_LAUNCH(r1_adamw, r1_cuda_blocks(b.start[b.n], 256), 256, cu->stream)(
                b, param, param16, grad, m, v, lr, beta1, beta2, eps, grad_scale, bc1, bc2);
            R1_CUDA_LAUNCHED(cu, "adamw");
            b.n = 0;
        }
        if (k == n_ranges)
            break;
        if (r[k].n <= 0)
            continue;
        b.off[b.n] = r[k].off;
        b.moff[b.n] = r[k].moff;
        b.wd[b.n] = r[k].wd;
        b.start[b.n + 1] = b.start[b.n] + r[k].n;
        b.n++;
    }
}
