/* norm.c - RMSNorm forward/backward, CPU reference.
 *
 * out = in · rstd · w with rstd = 1/sqrt(mean(in²) + eps) per row (saved for
 * backward).  Row sums are taken in double over 8 fixed lanes (vectorisable,
 * order fixed).  din (=) is parallel over rows; dw (+=) is parallel over
 * channel blocks, each channel summed over rows in order, in double.
 */
#include "kernels/cpu/cpu-ops.h"

#include <math.h>

#define R1_CPU_CHAN_BLOCK 64

/* Σ a[i]·b[i] in double over 8 interleaved lanes, combined in a fixed order */
static double dot_f64(const float *restrict a, const float *restrict b, int n)
{
    double lane[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] += (double)a[i + j] * (double)b[i + j];
    for (; i < n; i++)
        lane[i & 7] += (double)a[i] * (double)b[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

void r1_cpu_rmsnorm_forward(void *ctx, float *out /* (N,C) or NULL */,
                            uint16_t *out16 /* (N,C) or NULL */, float *rstd /* (N) */,
                            const float *in /* (N,C) */, const float *w /* (C) */, int N, int C,
                            float eps)
{
    struct r1_cpu *cpu = ctx;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * C >= R1_CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *restrict x = in + (size_t)n * C;
        double ms = C > 0 ? dot_f64(x, x, C) / C : 0.0;
        float r = (float)(1.0 / sqrt(ms + (double)eps));
        rstd[n] = r;
        if (out) {
            float *restrict o = out + (size_t)n * C;
            for (int c = 0; c < C; c++)
                o[c] = x[c] * r * w[c];
        }
        if (out16) {
            uint16_t *restrict o16 = out16 + (size_t)n * C;
            for (int c = 0; c < C; c++)
                o16[c] = r1_cpu_f32_bf16(x[c] * r * w[c]);
        }
    }
}

void r1_cpu_rmsnorm_backward(void *ctx, float *din /* (N,C) */, int din_add,
                             uint16_t *din16 /* (N,C) or NULL */, float *dw /* (C) */,
                             const float *dout /* (N,C) */,
                             const float *in /* (N,C) */,
                             const float *w /* (C) */, const float *rstd /* (N) */, int N, int C)
{
    struct r1_cpu *cpu = ctx;
    if (din) {
        /* y = x·r, dy = dout·w:  din = r · (dy − y · mean(dy·y)) */
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * C >= R1_CPU_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *restrict x = in + (size_t)n * C;
            const float *restrict g = dout + (size_t)n * C;
            float *restrict dx = din + (size_t)n * C;
            float r = rstd[n];
            double lane[8] = {0};
            int c = 0;
            for (; c + 8 <= C; c += 8)
                for (int j = 0; j < 8; j++)
                    lane[j] += (double)g[c + j] * w[c + j] * x[c + j];
            for (; c < C; c++)
                lane[c & 7] += (double)g[c] * w[c] * x[c];
            double s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                       ((lane[4] + lane[5]) + (lane[6] + lane[7]));
            /* mean(dy·y) = r · Σ(g·w·x) / C, folded with the y = x·r factor */
            float k = C > 0 ? (float)(s * (double)r * (double)r / C) : 0.0f;
            if (din_add) /* the bits of writing it, then ops->add */
                for (c = 0; c < C; c++) {
                    float d = r * (g[c] * w[c] - x[c] * k);
                    dx[c] = dx[c] + d;
                }
            else
                for (c = 0; c < C; c++)
                    dx[c] = r * (g[c] * w[c] - x[c] * k);
            if (din16) {
                uint16_t *restrict d16 = din16 + (size_t)n * C;
                for (c = 0; c < C; c++)
                    d16[c] = r1_cpu_f32_bf16(dx[c]);
            }
        }
    }
    if (dw) {
        int nblocks = (C + R1_CPU_CHAN_BLOCK - 1) / R1_CPU_CHAN_BLOCK;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * C >= R1_CPU_PAR_MIN)
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * R1_CPU_CHAN_BLOCK;
            int cn = C - c0 < R1_CPU_CHAN_BLOCK ? C - c0 : R1_CPU_CHAN_BLOCK;
            double acc[R1_CPU_CHAN_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *restrict x = in + (size_t)n * C + c0;
                const float *restrict g = dout + (size_t)n * C + c0;
                double r = rstd[n];
                for (int j = 0; j < cn; j++)
                    acc[j] += (double)g[j] * x[j] * r;
            }
            for (int j = 0; j < cn; j++)
                dw[c0 + j] += (float)acc[j];
        }
    }
}
