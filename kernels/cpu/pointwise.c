/* pointwise.c - elementwise ops on flat arrays (n): swiglu, add, scale, sumsq.
 *
 * All loops are contiguous and parallel over index ranges; none reduces
 * across threads except sumsq, which splits the array into a fixed number of
 * ranges (independent of the thread count), sums each in double, and adds
 * the range sums in index order.
 */
#include "kernels/cpu/cpu-ops.h"

#include <math.h>

/* number of ranges sumsq splits its input into (fixed so the result does not
 * depend on the thread count) */
#define R1_CPU_SUMSQ_PARTS 256

void r1_cpu_swiglu_forward(void *ctx, float *out /* (n) or NULL */,
                           uint16_t *out16 /* (n) or NULL */, const float *gate /* (n) */,
                           const float *up /* (n) */, int64_t n)
{
    struct r1_cpu *cpu = ctx;
    float *restrict o = out;
    uint16_t *restrict o16 = out16;
    const float *restrict g = gate;
    const float *restrict u = up;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float y = g[i] * sig * u[i];
        if (o)
            o[i] = y;
        if (o16)
            o16[i] = r1_cpu_f32_bf16(y);
    }
}

void r1_cpu_swiglu_backward(void *ctx, float *dgate /* (n) or NULL */, float *dup /* (n) or NULL */,
                            uint16_t *dgate16 /* (n) or NULL */, uint16_t *dup16 /* (n) or NULL */,
                            const float *dout /* (n) */, const float *gate /* (n) */,
                            const float *up /* (n) */, int64_t n)
{
    struct r1_cpu *cpu = ctx;
    float *restrict dg = dgate;
    float *restrict du = dup;
    uint16_t *restrict dg16 = dgate16;
    uint16_t *restrict du16 = dup16;
    const float *restrict d = dout;
    const float *restrict g = gate;
    const float *restrict u = up;
    /* silu(g) = g·σ(g);  silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float a = d[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
        float b = d[i] * g[i] * sig;
        if (dg)
            dg[i] = a, du[i] = b;
        if (dg16)
            dg16[i] = r1_cpu_f32_bf16(a), du16[i] = r1_cpu_f32_bf16(b);
    }
}

void r1_cpu_add(void *ctx, float *out /* (n) */, const float *a /* (n) */, const float *b /* (n) */,
                int64_t n)
{
    struct r1_cpu *cpu = ctx;
    /* out may alias a or b: no restrict; each element is read before written */
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void r1_cpu_scale(void *ctx, float *x /* (n) */, float s, int64_t n)
{
    struct r1_cpu *cpu = ctx;
    float *restrict p = x;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        p[i] *= s;
}

void r1_cpu_sumsq(void *ctx, double *host_out, const float *x /* (n) */, int64_t n)
{
    struct r1_cpu *cpu = ctx;
    double part[R1_CPU_SUMSQ_PARTS];
    int64_t len = (n + R1_CPU_SUMSQ_PARTS - 1) / R1_CPU_SUMSQ_PARTS;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int p = 0; p < R1_CPU_SUMSQ_PARTS; p++) {
        int64_t i0 = (int64_t)p * len, i1 = i0 + len;
        if (i1 > n)
            i1 = n;
        double lane[8] = {0};
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
            for (int j = 0; j < 8; j++)
                lane[j] += (double)x[i + j] * (double)x[i + j];
        for (; i < i1; i++)
            lane[0] += (double)x[i] * (double)x[i];
        part[p] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                  ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
    double s = 0.0;
    for (int p = 0; p < R1_CPU_SUMSQ_PARTS; p++)
        s += part[p];
    *host_out = s;
}
