/* linear-bf16.c - matmuls with bf16 operands and f32 -> bf16 conversion, CPU reference.
 *
 * Two families.  matmul_forward_bf16: f32 inputs rounded to bf16 times bf16 weights, for
 * generation (below).  matmul16_forward / matmul16_backward: both operands bf16, for
 * training in bf16 (core/model.c r1_model_set_precision).  Those widen their operands to
 * f32 (exact) in whole-operand buffers and run the f32 matmuls of linear.c on them, so
 * their results are bit for bit the f32 ops' on the bf16-rounded operands: the reference
 * any bf16 GEMM with f32 accumulation (cuBLAS on tensor cores) must match up to the
 * summation order.
 *
 * Used by generation (core/kvcache.c) when the generator decodes with bf16 copies of
 * the weights: batch-1 decoding streams every weight once per token, so halving the
 * bytes nearly halves its time.  The input rows are rounded to bf16 (nearest even) into
 * a buffer first, ROW_BLOCK rows a pass, as the training forward in bf16 rounds them, so
 * a GPU can run the products on tensor cores; accumulators and outputs stay f32.
 *
 * out (M,N) = bf16(in) (M,K) · w (N,K)ᵀ + bias (N), w as bf16 bit patterns (uint16_t).
 *
 * Summation order (the contract in backend.h: independent of M and of the thread
 * count): out[m][n] = (hsum(lanes) then + in·w for the K % 8 tail k in order) + bias,
 * where lane l (0..7) sums in[m][k]·w[n][k] for k ≡ l (mod 8), k < K - K % 8, in
 * increasing k, and hsum adds the lanes in a fixed tree.  The tile shape a row falls
 * in (1..4 input rows × 1..8 weight rows) and whether w is read as bf16 or from the
 * f32 copy of its block change no bits, since bf16 -> f32 is exact.
 *
 * Paths: AVX2+FMA (chosen once per process with __builtin_cpu_supports; the build has
 * no -march) and portable C (the same lane structure with separate multiply and add,
 * so its bits differ from the FMA path's, but never with M).
 *
 * Threading: OpenMP over contiguous ranges of N rounded to BLOCK_N weight rows.  For
 * M >= MR, each task converts its block of weight rows to f32 in per-thread scratch
 * once and reuses it for every tile of input rows; for fewer rows it reads bf16
 * directly (one pass over memory, which is what batch-1 decoding is bound by).
 */
#include "kernels/cpu/cpu-ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define R1_BF16_AVX2 1
#endif

#define BLOCK_N 24 /* weight rows per task and per f32 conversion block (a multiple of 8, 4, 3) */
#define MR 4       /* input rows per tile */
#define ROW_BLOCK 256 /* input rows rounded to bf16 per pass (the size of that buffer) */
/* weight rows per tile: 8, 4, 3, 3 for 1, 2, 3, 4 input rows (8 or more independent
 * accumulators hide the FMA latency) */
#define NR_MAX 8
#define LANES 8

/* ---- portable path ------------------------------------------------------------ */

/* one output element in the documented order; w16 or w32 holds the weight row */
static float dot_portable(const float *x, const uint16_t *w16, const float *w32, int K)
{
    float acc[LANES] = {0};
    int K8 = K - K % LANES, k = 0;
    for (; k < K8; k += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += x[k + l] * (w32 ? w32[k + l] : r1_cpu_bf16_f32(w16[k + l]));
    /* fixed tree, the same as hsum8 below: (l, l+4), then (l, l+2), then (0, 1) */
    float a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
    float b0 = a0 + a2, b1 = a1 + a3;
    float r = b0 + b1;
    for (; k < K; k++)
        r += x[k] * (w32 ? w32[k] : r1_cpu_bf16_f32(w16[k]));
    return r;
}

static void tile_portable(float *out, int ldo, const float *x, int K, const uint16_t *w16,
                          const float *w32, int mr, int nr, const float *bias)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float r = dot_portable(x + (size_t)i * K, w16 ? w16 + (size_t)j * K : NULL,
                                   w32 ? w32 + (size_t)j * K : NULL, K);
            out[(size_t)i * ldo + j] = bias ? r + bias[j] : r;
        }
}

/* ---- AVX2 + FMA path -------------------------------------------------------------- */
#ifdef R1_BF16_AVX2
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

AVX2_INLINE __m256 load_w(const uint16_t *w16, const float *w32, int k)
{
    if (w32)
        return _mm256_loadu_ps(w32 + k);
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w16 + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_INLINE float hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l, l+4 */
    __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));                                 /* l, l+2 */
    __m128 c = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));                             /* 0, 1 */
    return _mm_cvtss_f32(c);
}

/* mr (1..MR) input rows × nr (1..NR_MAX) weight rows (weight row j at w16/w32 + j·K);
 * the constant arguments of each call below let the compiler keep the mr·nr
 * accumulators in registers */
AVX2_INLINE void tile_avx2_n(float *out, int ldo, const float *x, int K, const uint16_t *w16,
                             const float *w32, const int mr, const int nr, const float *bias)
{
    __m256 acc[MR][NR_MAX];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();
    int K8 = K - K % LANES, k = 0;
    /* bf16 rows stream from memory once per token at batch 1: fetch the lines of the
     * next nr rows as fast as this tile consumes its own (nr·16 bytes per step) */
    const char *pf = w16 ? (const char *)(w16 + (size_t)nr * K) : NULL;
    for (; k < K8; k += LANES) {
        if (pf) {
            for (int b = 0; b < nr * 16; b += 64)
                _mm_prefetch(pf + (size_t)k * nr * 2 + b, _MM_HINT_T0);
        }
        __m256 w[NR_MAX];
        for (int j = 0; j < nr; j++)
            w[j] = load_w(w16 ? w16 + (size_t)j * K : NULL, w32 ? w32 + (size_t)j * K : NULL, k);
        for (int i = 0; i < mr; i++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)i * K + k);
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, w[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float r = hsum8(acc[i][j]);
            const float *xi = x + (size_t)i * K;
            for (int t = k; t < K; t++) {
                size_t at = (size_t)j * K + t;
                r = fmaf(xi[t], w32 ? w32[at] : r1_cpu_bf16_f32(w16[at]), r);
            }
            out[(size_t)i * ldo + j] = bias ? r + bias[j] : r;
        }
}

#define TILE_CASE(MRV, NRV)                                                                        \
    case MRV * 16 + NRV:                                                                           \
        tile_avx2_n(out, ldo, x, K, w16, w32, MRV, NRV, bias);                                     \
        return;
/* clang-format off */
#define TILE_CASES                                                                                 \
    TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3) TILE_CASE(1, 4)                                \
    TILE_CASE(1, 5) TILE_CASE(1, 6) TILE_CASE(1, 7) TILE_CASE(1, 8)                                \
    TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3) TILE_CASE(2, 4)                                \
    TILE_CASE(3, 1) TILE_CASE(3, 2) TILE_CASE(3, 3)                                                \
    TILE_CASE(4, 1) TILE_CASE(4, 2) TILE_CASE(4, 3)
/* clang-format on */

/* separate bodies for the bf16 and f32 weight sources keep the branch out of the k loop */
static AVX2 void tile_avx2_16(float *out, int ldo, const float *x, int K, const uint16_t *w16,
                              int mr, int nr, const float *bias)
{
    const float *w32 = NULL;
    switch (mr * 16 + nr) {
        TILE_CASES
    default:
        tile_portable(out, ldo, x, K, w16, w32, mr, nr, bias); /* not reached */
    }
}

static AVX2 void tile_avx2_32(float *out, int ldo, const float *x, int K, const float *w32, int mr,
                              int nr, const float *bias)
{
    const uint16_t *w16 = NULL;
    switch (mr * 16 + nr) {
        TILE_CASES
    default:
        tile_portable(out, ldo, x, K, w16, w32, mr, nr, bias); /* not reached */
    }
}
#undef TILE_CASE
#undef TILE_CASES

static int have_avx2(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
static int have_avx2(void)
{
    return 0;
}
#endif

/* out (mr,nr) block at out, input rows x (mr,K), weight rows w16 (bf16) or w32 (f32) */
static void tile(int avx2, float *out, int ldo, const float *x, int K, const uint16_t *w16,
                 const float *w32, int mr, int nr, const float *bias)
{
#ifdef R1_BF16_AVX2
    if (avx2) {
        if (w32)
            tile_avx2_32(out, ldo, x, K, w32, mr, nr, bias);
        else
            tile_avx2_16(out, ldo, x, K, w16, mr, nr, bias);
        return;
    }
#endif
    (void)avx2;
    tile_portable(out, ldo, x, K, w16, w32, mr, nr, bias);
}

/* Rows [n0, n1) of the output for all M input rows; buf is BLOCK_N·K floats or NULL. */
static void rows_task(int avx2, float *out, const float *in, const uint16_t *w, const float *bias,
                      int M, int K, int N, int n0, int n1, float *buf)
{
    for (int b = n0; b < n1; b += BLOCK_N) {
        int nb = n1 - b < BLOCK_N ? n1 - b : BLOCK_N;
        const uint16_t *wb = w + (size_t)b * K;
        if (buf)
            for (size_t i = 0; i < (size_t)nb * K; i++)
                buf[i] = r1_cpu_bf16_f32(wb[i]);
        for (int m = 0; m < M; m += MR) {
            int mr = M - m < MR ? M - m : MR;
            int nr_max = mr == 1 ? 8 : mr == 2 ? 4 : 3;
            for (int j = 0; j < nb; j += nr_max) {
                int nr = nb - j < nr_max ? nb - j : nr_max;
                tile(avx2, out + (size_t)m * N + b + j, N, in + (size_t)m * K, K,
                     buf ? NULL : wb + (size_t)j * K, buf ? buf + (size_t)j * K : NULL, mr, nr,
                     bias ? bias + b + j : NULL);
            }
        }
    }
}

size_t r1_cpu_matmul_bf16_scratch(int64_t K)
{
    return (size_t)BLOCK_N * (size_t)K;
}

size_t r1_cpu_matmul_bf16_rows(int64_t M, int64_t K)
{
    return (size_t)(M < ROW_BLOCK ? M : ROW_BLOCK) * (size_t)K;
}

void r1_cpu_matmul_forward_bf16(void *ctx, float *out /* (M,N) */, const float *in /* (M,K) */,
                                const uint16_t *w /* (N,K) bf16 */,
                                const float *bias /* (N) or NULL */,
                                const float *res /* (M,N) or NULL */, int M, int K, int N)
{
    struct r1_cpu *cpu = ctx;
    if (M <= 0 || N <= 0)
        return;
    int avx2 = have_avx2();
    int T = (int64_t)N * K >= R1_CPU_PAR_MIN * 8 || (int64_t)M * N * K >= R1_CPU_PAR_MIN * 64
                ? cpu->threads
                : 1;
    size_t cap = r1_cpu_matmul_bf16_rows(M, K > 0 ? K : 0);
    float *scratch = NULL, *x16 = r1_cpu_wide(cpu, 0, cap ? cap : 1);
    if (!x16 ||
        (M >= MR && K > 0 && !(scratch = r1_cpu_scratch(cpu, r1_cpu_matmul_bf16_scratch(K))))) {
        r1_cpu_poison(out, (int64_t)M * N);
        return;
    }
    int nblocks = (N + BLOCK_N - 1) / BLOCK_N;
    for (int m0 = 0; m0 < M; m0 += ROW_BLOCK) { /* rows are independent: blocks change no bits */
        int mb = M - m0 < ROW_BLOCK ? M - m0 : ROW_BLOCK;
        const float *src = in + (size_t)m0 * K;
        int64_t n_in = (int64_t)mb * K;
#pragma omp parallel num_threads(T)
        {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n_in; i++)
                x16[i] = r1_cpu_round_bf16(src[i]);
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int per = (nblocks + nt - 1) / nt;
            int b0 = t * per * BLOCK_N, b1 = (t + 1) * per * BLOCK_N;
            if (b1 > N)
                b1 = N;
            if (b0 < b1)
                rows_task(avx2, out + (size_t)m0 * N, x16, w, bias, mb, K, N, b0, b1,
                          scratch ? scratch + (size_t)t * cpu->scratch_stride : NULL);
        }
    }
    if (res) /* the residual: the bits of the matmul, then ops->add */
        r1_cpu_add(ctx, out, out, res, (int64_t)M * N);
}

void r1_cpu_convert_bf16(void *ctx, uint16_t *dst /* (n) */, const float *src /* (n) */, int64_t n)
{
    struct r1_cpu *cpu = ctx;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = r1_cpu_f32_bf16(src[i]);
}

/* ---- both operands bf16 (training) --------------------------------------------- */

static void widen(const struct r1_cpu *cpu, float *dst, const uint16_t *src, int64_t n)
{
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (n >= R1_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = r1_cpu_bf16_f32(src[i]);
}

void r1_cpu_matmul16_forward(void *ctx, float *out /* (M,N) */, const uint16_t *in /* (M,K) */,
                             const uint16_t *w /* (N,K) */, const float *bias /* (N) or NULL */,
                             const float *res /* (M,N) or NULL */, int M, int K, int N)
{
    struct r1_cpu *cpu = ctx;
    if (M <= 0 || N <= 0)
        return;
    size_t mk = (size_t)M * (K > 0 ? K : 0), nk = (size_t)N * (K > 0 ? K : 0);
    float *in32 = r1_cpu_wide(cpu, 0, mk ? mk : 1), *w32 = r1_cpu_wide(cpu, 1, nk ? nk : 1);
    if (!in32 || !w32) {
        r1_cpu_poison(out, (int64_t)M * N);
        return;
    }
    widen(cpu, in32, in, (int64_t)mk);
    widen(cpu, w32, w, (int64_t)nk);
    r1_cpu_matmul_forward(ctx, out, in32, w32, bias, res, M, K, N);
}

void r1_cpu_matmul16_backward(void *ctx, float *din /* (M,K) or NULL */, int din_add,
                              float *dw /* (N,K) or NULL */, float *dbias /* (N) or NULL */,
                              const uint16_t *dout /* (M,N) */, const uint16_t *in /* (M,K) */,
                              const uint16_t *w /* (N,K) */, int M, int K, int N)
{
    struct r1_cpu *cpu = ctx;
    if (M <= 0)
        return;
    size_t mn = (size_t)M * (N > 0 ? N : 0), mk = (size_t)M * (K > 0 ? K : 0);
    size_t nk = (size_t)(N > 0 ? N : 0) * (K > 0 ? K : 0);
    float *d32 = r1_cpu_wide(cpu, 2, mn ? mn : 1);
    float *in32 = dw ? r1_cpu_wide(cpu, 0, mk ? mk : 1) : NULL;
    float *w32 = din ? r1_cpu_wide(cpu, 1, nk ? nk : 1) : NULL;
    if (!d32 || (dw && !in32) || (din && !w32)) {
        if (din)
            r1_cpu_poison(din, (int64_t)mk);
        if (dw)
            r1_cpu_poison(dw, (int64_t)nk);
        if (dbias)
            r1_cpu_poison(dbias, N);
        return;
    }
    widen(cpu, d32, dout, (int64_t)mn);
    if (in32)
        widen(cpu, in32, in, (int64_t)mk);
    if (w32)
        widen(cpu, w32, w, (int64_t)nk);
    r1_cpu_matmul_backward(ctx, din, din_add, dw, dbias, d32, in32, w32, M, K, N);
}
