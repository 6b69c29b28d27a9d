/* adamw.c - AdamW update over ranges of flat arrays (every tensor of a model), CPU reference.
 *
 * Exactly the formula of core/backend.h, with decoupled weight decay on the
 * parameter value before the update:
 *   g = grad · grad_scale
 *   m = b1 m + (1−b1) g;   v = b2 v + (1−b2) g²
 *   param −= lr · ( (m / bc1) / (sqrt(v / bc2) + eps) + wd · param )
 * The bias corrections bc1 = 1 − b1^step, bc2 = 1 − b2^step are computed once
 * in double (b^step loses digits in float for large steps) and rounded to
 * float; the per-element math is float.  A model training in bf16 passes param16, its
 * bf16 working copy, written in the same pass.  Each element's result depends on that
 * element alone, so the ranges and the threads split the work in any way.
 */
#include "kernels/cpu/cpu-ops.h"

#include "core/backend.h"

#include <math.h>

void r1_cpu_adamw_update(void *ctx, float *param, uint16_t *param16 /* or NULL */,
                         const float *grad, float *m, float *v,
                         const struct r1_adamw_range *r /* (n_ranges) */, int n_ranges,
                         float lr, float beta1, float beta2, float eps, float grad_scale,
                         int64_t step)
{
    struct r1_cpu *cpu = ctx;
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    for (int k = 0; k < n_ranges; k++) {
        int64_t n = r[k].n;
        float wd = r[k].wd;
        float *restrict p = param + r[k].off;
        uint16_t *restrict p16 = param16 ? param16 + r[k].off : NULL;
        const float *restrict gr = grad + r[k].off;
        float *restrict mm = m + r[k].moff;
        float *restrict vv = v + r[k].moff;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float g = gr[i] * grad_scale;
            float mi = beta1 * mm[i] + (1.0f - beta1) * g;
            float vi = beta2 * vv[i] + (1.0f - beta2) * g * g;
            mm[i] = mi;
            vv[i] = vi;
            float mhat = mi / bc1;
            float vhat = vi / bc2;
            p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
            if (p16)
                p16[i] = r1_cpu_f32_bf16(p[i]);
        }
    }
}
