/* rope.c - rotary position embedding (Hugging Face split-half pairing), CPU.
 *
 * x (N,H,D): element i < D/2 pairs with i + D/2 and both rotate by
 * angle(pos[n], i), read from cos/sin tables (P,D/2):
 *   x'[i]       = x[i] cos − x[i+D/2] sin
 *   x'[i+D/2]   = x[i+D/2] cos + x[i] sin
 * Backward applies the transpose (the rotation by −angle).  In place, or (backward in
 * bf16 training) into the result's bf16 image.
 */
#include "kernels/cpu/cpu-ops.h"

static void rope_apply(int threads, float *x, uint16_t *x16, const int32_t *pos,
                       const float *cos, const float *sin, int N, int H, int D, float sign)
{
    int half = D / 2;
    int64_t rows = (int64_t)N * H;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * D >= R1_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / H;
        const float *restrict c = cos + (size_t)pos[n] * half;
        const float *restrict s = sin + (size_t)pos[n] * half;
        float *restrict a = x + (size_t)r * D;
        float *restrict b = a + half;
        if (x16) { /* the rotated row's bf16 image; x only read */
            uint16_t *restrict a16 = x16 + (size_t)r * D, *restrict b16 = a16 + half;
            for (int i = 0; i < half; i++) {
                float si = sign * s[i];
                float x0 = a[i], x1 = b[i];
                a16[i] = r1_cpu_f32_bf16(x0 * c[i] - x1 * si);
                b16[i] = r1_cpu_f32_bf16(x1 * c[i] + x0 * si);
            }
            continue;
        }
        for (int i = 0; i < half; i++) {
            float si = sign * s[i];
            float x0 = a[i], x1 = b[i];
            a[i] = x0 * c[i] - x1 * si;
            b[i] = x1 * c[i] + x0 * si;
        }
    }
}

void r1_cpu_rope_forward(void *ctx, float *x /* (N,H,D) */, const int32_t *pos /* (N) */,
                         const float *cos /* (P,D/2) */, const float *sin /* (P,D/2) */, int N,
                         int H, int D)
{
    struct r1_cpu *cpu = ctx;
    rope_apply(cpu->threads, x, NULL, pos, cos, sin, N, H, D, 1.0f);
}

void r1_cpu_rope_backward(void *ctx, float *dx /* (N,H,D) */, uint16_t *dx16 /* or NULL */,
                          const int32_t *pos /* (N) */, const float *cos /* (P,D/2) */,
                          const float *sin /* (P,D/2) */, int N, int H, int D)
{
    struct r1_cpu *cpu = ctx;
    rope_apply(cpu->threads, dx, dx16, pos, cos, sin, N, H, D, -1.0f);
}
