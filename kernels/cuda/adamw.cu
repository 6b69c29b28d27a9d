/* adamw.cu - AdamW update on a flat parameter array (n), CUDA.
 *
 * The CPU formula element for element (core/backend.h): bias corrections computed once
 * on the host in double and rounded to float, per-element math in float, decoupled weight
 * decay on the parameter before the update; the bf16 working copy (param16, a model
 * training in bf16) written in the same pass.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

__global__ void r1_adamw(float *param, uint16_t *param16, const float *grad, float *m, float *v,
                         int64_t n, float lr, float beta1, float beta2, float eps, float wd,
                         float grad_scale, float bc1, float bc2)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1;
    float vhat = vi / bc2;
    float p = param[i];
    p = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
    param[i] = p;
    if (param16)
        param16[i] = r1_bf16_bits(p);
}

extern "C" void r1_cuda_adamw_update(void *ctx, float *param, uint16_t *param16,
                                     const float *grad, float *m, float *v, int64_t n, float lr,
                                     float beta1, float beta2, float eps, float weight_decay,
                                     float grad_scale, int64_t step)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (n <= 0)
        return;
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    R1_LAUNCH(r1_adamw, r1_cuda_blocks(n, 256), 256, cu->stream)(param, param16, grad, m, v, n, lr,
                                                             beta1, beta2, eps, weight_decay,
                                                             grad_scale, bc1, bc2);
    R1_CUDA_LAUNCHED(cu, "adamw");
}
