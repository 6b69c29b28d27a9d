/* test-ops.c - cmocka tests of the CPU reference backend (kernels/cpu).
 *
 * For every op: forward values against a naive double-precision reference,
 * every backward against central finite differences of the scalar loss
 * L = Σ r ⊙ out (r fixed random), the += / = gradient rule, bitwise
 * determinism, AdamW against hand-computed numbers, and KV-cache attention
 * against training attention.
 *
 * Finite differences: inputs are float, eps = 1e-3 (central).  The forward is
 * float, so L carries rounding noise of about sqrt(#out) · 6e-8 · |out|; for the
 * sizes here (≤ ~4k outputs of size ~1) that is ≤ ~5e-6, i.e. ≤ ~3e-3 after
 * dividing by 2·eps, and the O(eps²) truncation term is ~1e-6.  Each check is
 * |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|) with atol
 * covering that noise; per-op values and their reason are at the call sites.
 * Sizes are odd on purpose (no multiple of the kernels' block sizes).  The
 * gradient checks use sizes below the kernels' serial thresholds (thousands of
 * tiny forwards would otherwise fork each time); test_determinism checks the
 * parallel paths bit for bit against a 1-thread backend.
 *
 * Usage: test-ops [glob] runs matching tests; R1_TEST_VERBOSE=1 prints the
 * worst err/tol ratio of each gradient check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/tensor.h"

static struct r1_backend *be; /* the backend under test (2 threads) */

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* uniform in [lo, hi) */
static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f;
}

static float *falloc(int64_t n)
{
    float *p = be->ops->alloc(be->ctx, (size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static int32_t *ialloc(int64_t n)
{
    int32_t *p = be->ops->alloc(be->ctx, (size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    assert_non_null(p);
    return p;
}

static float *frand(int64_t n, float lo, float hi)
{
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++)
        p[i] = rng_uniform(lo, hi);
    return p;
}

static float *fdup(const float *x, int64_t n)
{
    float *p = falloc(n);
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

static void ffree(void *p)
{
    be->ops->free(be->ctx, p);
}

/* img (n) is the bf16 rounding of x (n) element for element (r1_f32_to_bf16) */
static void assert_image16(const uint16_t *img, const float *x, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (img[i] != r1_f32_to_bf16(x[i]))
            fail_msg("%s[%lld]: bf16 image 0x%04x, bf16 of the f32 result %g is 0x%04x", what,
                     (long long)i, img[i], (double)x[i], r1_f32_to_bf16(x[i]));
}

static uint16_t *halloc(int64_t n)
{
    uint16_t *p = be->ops->alloc(be->ctx, (size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    assert_non_null(p);
    memset(p, 0xff, (size_t)n * sizeof(uint16_t)); /* NaN patterns: must be overwritten */
    return p;
}

static void assert_finite(const float *x, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            fail_msg("%s[%lld] = %g is not finite", what, (long long)i, (double)x[i]);
}

/* |a − b| ≤ atol + rtol·max(|a|,|b|) for all elements */
static void assert_close(const float *got, const double *want, int64_t n, double atol, double rtol,
                         const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double a = got[i], b = want[i];
        double tol = atol + rtol * fmax(fabs(a), fabs(b));
        if (!(fabs(a - b) <= tol))
            fail_msg("%s[%lld]: got %.9g want %.9g (tol %.3g)", what, (long long)i, a, b, tol);
    }
}

/* ---- finite-difference gradient checking -------------------------------------- */

/* L = Σ r1·out1 + Σ r2·out2 where forward(st) recomputes out1/out2 from the
 * current inputs.  out2 may be NULL. */
struct gradcheck {
    void (*forward)(void *st);
    void *st;
    const float *out1, *r1;
    int64_t n1;
    const float *out2, *r2;
    int64_t n2;
};

static double gc_loss(const struct gradcheck *gc)
{
    gc->forward(gc->st);
    double L = 0.0;
    for (int64_t i = 0; i < gc->n1; i++)
        L += (double)gc->r1[i] * gc->out1[i];
    for (int64_t i = 0; gc->out2 && i < gc->n2; i++)
        L += (double)gc->r2[i] * gc->out2[i];
    return L;
}

/* checks grad (n) = dL/dx against central differences, every stride-th element */
static void gc_check(const struct gradcheck *gc, const char *what, float *x, int64_t n,
                     const float *grad, int stride, double atol, double rtol)
{
    const float eps = 1e-3f;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i += stride) {
        float x0 = x[i];
        x[i] = x0 + eps;
        double lp = gc_loss(gc);
        x[i] = x0 - eps;
        double lm = gc_loss(gc);
        x[i] = x0;
        /* the actual step is (x0+eps) − (x0−eps) in float */
        double num = (lp - lm) / ((double)(x0 + eps) - (double)(x0 - eps));
        double a = grad[i];
        double err = fabs(a - num);
        double tol = atol + rtol * fmax(fabs(a), fabs(num));
        if (err / tol > worst)
            worst = err / tol;
        if (!(err <= tol))
            fail_msg("%s[%lld]: analytic %.7g numeric %.7g (err %.3g tol %.3g)", what, (long long)i,
                     a, num, err, tol);
    }
    gc->forward(gc->st); /* leave outputs consistent with the restored inputs */
    if (getenv("R1_TEST_VERBOSE"))
        print_message("%-32s worst err/tol %.3f\n", what, worst);
}

/* ---- matmul ---------------------------------------------------------------------- */

struct mm_state {
    float *out, *in, *w, *bias;
    int M, K, N;
};

static void mm_forward(void *p)
{
    struct mm_state *s = p;
    be->ops->matmul_forward(be->ctx, s->out, s->in, s->w, s->bias, NULL, s->M, s->K, s->N);
}

static void test_matmul_forward(void **state)
{
    (void)state;
    rng_seed(1);
    int M = 7, K = 13, N = 9;
    float *in = frand(M * K, -1, 1), *w = frand(N * K, -1, 1), *bias = frand(N, -1, 1);
    float *out = falloc(M * N);
    double want[7 * 9];
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        be->ops->matmul_forward(be->ctx, out, in, w, with_bias ? bias : NULL, NULL, M, K, N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = with_bias ? bias[n] : 0.0;
                for (int k = 0; k < K; k++)
                    s += (double)in[m * K + k] * w[n * K + k];
                want[m * N + n] = s;
            }
        /* float dot of 13 terms of size ≤ 1: rounding ≤ ~13 · 6e-8 · 13 */
        assert_close(out, want, M * N, 1e-5, 1e-5, "matmul out");
        /* a residual: the bits of out, then + res */
        float *res = frand(M * N, -2, 2), *out2 = falloc(M * N), *sum = falloc(M * N);
        for (int i = 0; i < M * N; i++)
            sum[i] = out[i] + res[i];
        be->ops->matmul_forward(be->ctx, out2, in, w, with_bias ? bias : NULL, res, M, K, N);
        assert_memory_equal(out2, sum, (size_t)M * N * sizeof(float));
        ffree(res), ffree(out2), ffree(sum);
    }
    ffree(in), ffree(w), ffree(bias), ffree(out);
}

/* ---- matmul with bf16 weights --------------------------------------------------- */

/* w (n) as bf16 in backend memory, rounded by the library's reference conversion */
static uint16_t *bf16_of(const float *w, int64_t n)
{
    uint16_t *p = be->ops->alloc(be->ctx, (size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = r1_f32_to_bf16(w[i]);
    return p;
}

static void test_convert_bf16(void **state)
{
    (void)state;
    rng_seed(21);
    int n = 70001; /* above the parallel threshold, odd */
    float *x = frand(n, -3, 3);
    /* exact ties (low half 0x8000) round to the even neighbour; NaN, inf, -0 pass */
    uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u,
                          0x80000000u, 0x7fc00001u, 0x00008000u, 0x00018000u};
    for (int i = 0; i < (int)(sizeof(special) / sizeof(special[0])); i++)
        memcpy(&x[i * 7], &special[i], sizeof(float));
    uint16_t *got = be->ops->alloc(be->ctx, (size_t)n * sizeof(uint16_t));
    be->ops->convert_bf16(be->ctx, got, x, n);
    assert_int_equal(got[0], 0x3f80);  /* 1.0 + half an ulp: tie to even (down) */
    assert_int_equal(got[7], 0x3f82);  /* tie to even (up) */
    assert_int_equal(got[14], 0x7f80); /* FLT_MAX rounds to inf */
    assert_true((got[42] & 0x7f80) == 0x7f80 && (got[42] & 0x7f) != 0); /* NaN stays NaN */
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof(u));
        double err = fabs((double)r1_bf16_to_f32(got[i]) - x[i]);
        /* round to nearest: a normal input moves by at most half a bf16 ulp (2^-8 relative) */
        if (fabsf(x[i]) >= 0x1p-126f && fabsf(x[i]) < 1e38f && !(err <= fabs(x[i]) * 0x1p-8))
            fail_msg("convert_bf16[%d]: %g -> %g", i, (double)x[i], (double)r1_bf16_to_f32(got[i]));
        if (got[i] != r1_f32_to_bf16(x[i]))
            fail_msg("convert_bf16[%d] (0x%08x): 0x%04x, reference 0x%04x", i, u, got[i],
                     r1_f32_to_bf16(x[i]));
    }
    ffree(x), ffree(got);
}

static void test_matmul_forward_bf16(void **state)
{
    (void)state;
    rng_seed(22);
    /* M = 1 (decode), 7 (a partial tile), 32, 258 (two passes of rounded input rows); K
     * below, at and off the 8-lane width; the last shapes are above the parallel
     * thresholds */
    const int shapes[][3] = {{1, 13, 9},     {7, 13, 9},    {32, 77, 37},  {7, 8, 5},
                             {3, 5, 1},      {4, 16, 17},   {258, 24, 19}, {1, 576, 520},
                             {32, 601, 150}, {33, 250, 330}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *in = frand((int64_t)M * K, -1, 1), *w = frand((int64_t)N * K, -1, 1);
        float *bias = frand(N, -1, 1), *out = falloc((int64_t)M * N);
        uint16_t *wb = bf16_of(w, (int64_t)N * K);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            be->ops->matmul_forward_bf16(be->ctx, out, in, wb, with_bias ? bias : NULL, NULL, M, K,
                                         N);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double sum = with_bias ? bias[n] : 0.0, sabs = fabs(sum);
                    for (int k = 0; k < K; k++) {
                        double x = r1_bf16_to_f32(r1_f32_to_bf16(in[(size_t)m * K + k]));
                        double t = x * r1_bf16_to_f32(wb[(size_t)n * K + k]);
                        sum += t;
                        sabs += fabs(t);
                    }
                    /* the reference rounds the input to bf16 and uses the same bf16
                     * weights, so only the f32 sum's rounding remains: at most
                     * (K+1) · 2^-24 · Σ|terms| (the classical bound for a sum of K+1 terms
                     * in any order) */
                    double got = out[(size_t)m * N + n];
                    double tol = 1e-7 + (K + 1) * 0x1p-24 * sabs;
                    if (!(fabs(got - sum) <= tol))
                        fail_msg("bf16 matmul M=%d K=%d N=%d bias=%d out[%d][%d]: got %.9g "
                                 "want %.9g (tol %.3g)",
                                 M, K, N, with_bias, m, n, got, sum, tol);
                }
        }
        ffree(in), ffree(w), ffree(bias), ffree(out), ffree(wb);
    }
}

/* A row's output does not depend on M (how many tokens share the step) nor on the
 * thread count: bitwise. */
static void test_matmul_bf16_rows(void **state)
{
    (void)state;
    rng_seed(23);
    int M = 32, K = 601, N = 530; /* parallel at M = 1 and 32; K % 8 = 1 */
    float *in = frand((int64_t)M * K, -1, 1), *w = frand((int64_t)N * K, -1, 1);
    float *bias = frand(N, -1, 1);
    float *all = falloc((int64_t)M * N), *part = falloc((int64_t)M * N);
    float *one_t = falloc((int64_t)M * N);
    uint16_t *wb = bf16_of(w, (int64_t)N * K);
    be->ops->matmul_forward_bf16(be->ctx, all, in, wb, bias, NULL, M, K, N);
    for (int m = 0; m < M; m++) {
        be->ops->matmul_forward_bf16(be->ctx, part, in + (size_t)m * K, wb, bias, NULL, 1, K,
                                     N);
        if (memcmp(part, all + (size_t)m * N, (size_t)N * sizeof(float)) != 0)
            fail_msg("bf16 matmul: row %d differs between M=1 and M=32", m);
    }
    for (int m0 = 0; m0 + 7 <= M; m0 += 7) { /* partial tiles at other offsets */
        be->ops->matmul_forward_bf16(be->ctx, part, in + (size_t)m0 * K, wb, bias, NULL, 7, K,
                                     N);
        if (memcmp(part, all + (size_t)m0 * N, (size_t)7 * N * sizeof(float)) != 0)
            fail_msg("bf16 matmul: rows %d..%d differ between M=7 and M=32", m0, m0 + 6);
    }
    struct r1_backend *one;
    assert_int_equal(r1_backend_cpu_create(&one, 1), 0);
    one->ops->matmul_forward_bf16(one->ctx, one_t, in, wb, bias, NULL, M, K, N);
    assert_memory_equal(one_t, all, (size_t)M * N * sizeof(float));
    /* a residual: the bits of the matmul, then + res */
    float *res = frand((int64_t)M * N, -2, 2);
    be->ops->matmul_forward_bf16(be->ctx, one_t, in, wb, bias, res, M, K, N);
    for (int64_t i = 0; i < (int64_t)M * N; i++) {
        float want = all[i] + res[i];
        if (memcmp(&one_t[i], &want, sizeof(float)) != 0)
            fail_msg("bf16 matmul with a residual [%lld]: %g, not %g", (long long)i,
                     (double)one_t[i], (double)want);
    }
    ffree(res);
    one->ops->release(one->ctx);
    free(one);
    ffree(in), ffree(w), ffree(bias), ffree(all), ffree(part), ffree(one_t), ffree(wb);
}

/* ---- matmul with both operands bf16 (training in bf16) ----------------------------- */

/* f32 images of n bf16 values */
static float *widened(const uint16_t *h, int64_t n)
{
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++)
        p[i] = r1_bf16_to_f32(h[i]);
    return p;
}

/* The CPU's contract: matmul16_forward / matmul16_backward are bit for bit the f32 ops on
 * the widened operands (the bf16 products are exact in f32), and the forward is within the
 * f32 sum's rounding of a double reference. */
static void test_matmul16(void **state)
{
    (void)state;
    rng_seed(24);
    /* M = 1, 2 (the sgemv path), odd small shapes, and shapes above the parallel
     * thresholds */
    const int shapes[][3] = {{1, 13, 9}, {2, 7, 5}, {7, 13, 9}, {3, 1, 4}, {33, 250, 330},
                             {64, 96, 160}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        int64_t mk = (int64_t)M * K, nk = (int64_t)N * K, mn = (int64_t)M * N;
        float *in = frand(mk, -1, 1), *w = frand(nk, -1, 1), *dout = frand(mn, -1, 1);
        float *bias = frand(N, -1, 1);
        uint16_t *in16 = bf16_of(in, mk), *w16 = bf16_of(w, nk), *d16 = bf16_of(dout, mn);
        float *in32 = widened(in16, mk), *w32 = widened(w16, nk), *d32 = widened(d16, mn);
        float *got = falloc(mn), *want = falloc(mn);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *b = with_bias ? bias : NULL;
            be->ops->matmul16_forward(be->ctx, got, in16, w16, b, NULL, M, K, N);
            be->ops->matmul_forward(be->ctx, want, in32, w32, b, NULL, M, K, N);
            if (memcmp(got, want, (size_t)mn * sizeof(float)) != 0)
                fail_msg("matmul16 forward M=%d K=%d N=%d bias=%d: not the f32 matmul of the "
                         "widened operands", M, K, N, with_bias);
            /* a residual (dout's values): the bits of the product, then + res */
            float *with_res = falloc(mn);
            be->ops->matmul16_forward(be->ctx, with_res, in16, w16, b, dout, M, K, N);
            for (int64_t i = 0; i < mn; i++) {
                float sum = want[i] + dout[i];
                if (memcmp(&with_res[i], &sum, sizeof(float)) != 0)
                    fail_msg("matmul16 forward M=%d K=%d N=%d with a residual [%lld]: %g, not "
                             "%g", M, K, N, (long long)i, (double)with_res[i], (double)sum);
            }
            ffree(with_res);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double sum = b ? b[n] : 0.0, sabs = fabs(sum);
                    for (int k = 0; k < K; k++) {
                        double t = (double)in32[(size_t)m * K + k] * w32[(size_t)n * K + k];
                        sum += t;
                        sabs += fabs(t);
                    }
                    double tol = 1e-7 + (K + 1) * 0x1p-24 * sabs; /* f32 sum, any order */
                    if (!(fabs(got[(size_t)m * N + n] - sum) <= tol))
                        fail_msg("matmul16 M=%d K=%d N=%d out[%d][%d]: got %.9g want %.9g", M,
                                 K, N, m, n, (double)got[(size_t)m * N + n], sum);
                }
        }
        /* backward: din written, dw and dbias added to what they hold */
        float *din = falloc(mk), *dw = frand(nk, -1, 1), *db = frand(N, -1, 1);
        float *din_r = falloc(mk), *dw_r = fdup(dw, nk), *db_r = fdup(db, N);
        for (int64_t i = 0; i < mk; i++)
            din[i] = 7.0f; /* overwritten, not added to */
        be->ops->matmul16_backward(be->ctx, din, 0, dw, db, d16, in16, w16, M, K, N);
        be->ops->matmul_backward(be->ctx, din_r, 0, dw_r, db_r, d32, in32, w32, M, K, N);
        assert_memory_equal(din, din_r, (size_t)mk * sizeof(float));
        assert_memory_equal(dw, dw_r, (size_t)nk * sizeof(float));
        assert_memory_equal(db, db_r, (size_t)N * sizeof(float));
        /* each of them alone */
        float *dw2 = fdup(dw, nk);
        be->ops->matmul16_backward(be->ctx, NULL, 0, dw2, NULL, d16, in16, w16, M, K, N);
        be->ops->matmul_backward(be->ctx, NULL, 0, dw_r, NULL, d32, in32, w32, M, K, N);
        assert_memory_equal(dw2, dw_r, (size_t)nk * sizeof(float));
        be->ops->matmul16_backward(be->ctx, din, 0, NULL, NULL, d16, in16, w16, M, K, N);
        assert_memory_equal(din, din_r, (size_t)mk * sizeof(float));
        /* din_add: din + (the written din), bit for bit */
        for (int64_t i = 0; i < mk; i++)
            din[i] = 0.25f * (float)(i % 9) - 1.0f;
        for (int64_t i = 0; i < mk; i++)
            din_r[i] = din[i] + din_r[i];
        be->ops->matmul16_backward(be->ctx, din, 1, NULL, NULL, d16, in16, w16, M, K, N);
        assert_memory_equal(din, din_r, (size_t)mk * sizeof(float));
        ffree(in), ffree(w), ffree(dout), ffree(bias), ffree(in16), ffree(w16), ffree(d16);
        ffree(in32), ffree(w32), ffree(d32), ffree(got), ffree(want), ffree(din), ffree(dw);
        ffree(db), ffree(din_r), ffree(dw_r), ffree(db_r), ffree(dw2);
    }
}

static void test_matmul_backward(void **state)
{
    (void)state;
    rng_seed(2);
    int M = 7, K = 13, N = 9;
    struct mm_state s = {
        falloc(M * N), frand(M * K, -1, 1), frand(N * K, -1, 1), frand(N, -1, 1), M, K, N};
    float *r = frand(M * N, -1, 1);
    float *din = falloc(M * K), *dw = falloc(N * K), *dbias = falloc(N);
    be->ops->matmul_backward(be->ctx, din, 0, dw, dbias, r, s.in, s.w, M, K, N);
    struct gradcheck gc = {mm_forward, &s, s.out, r, M * N, NULL, NULL, 0};
    /* L is linear in each input, so only rounding noise: outputs are ~1, 63 of
     * them, noise ≤ 1e-6 in L → ≤ 5e-4 in the quotient */
    gc_check(&gc, "matmul din", s.in, M * K, din, 1, 2e-3, 1e-3);
    gc_check(&gc, "matmul dw", s.w, N * K, dw, 1, 2e-3, 1e-3);
    gc_check(&gc, "matmul dbias", s.bias, N, dbias, 1, 2e-3, 1e-3);

    /* += for dw/dbias, = for din: a second call doubles dw, dbias only */
    float *din1 = fdup(din, M * K), *dw1 = fdup(dw, N * K), *db1 = fdup(dbias, N);
    be->ops->matmul_backward(be->ctx, din, 0, dw, dbias, r, s.in, s.w, M, K, N);
    assert_memory_equal(din, din1, (size_t)M * K * sizeof(float));
    for (int i = 0; i < N * K; i++)
        assert_float_equal(dw[i], 2.0f * dw1[i], 1e-6f * (1.0f + fabsf(dw1[i])));
    for (int i = 0; i < N; i++)
        assert_float_equal(dbias[i], 2.0f * db1[i], 1e-6f * (1.0f + fabsf(db1[i])));

    /* NULL outputs are skipped; the others are unaffected */
    float *dw2 = falloc(N * K);
    be->ops->matmul_backward(be->ctx, NULL, 0, dw2, NULL, r, s.in, s.w, M, K, N);
    assert_memory_equal(dw2, dw1, (size_t)N * K * sizeof(float));

    /* din_add: din + (the written din), bit for bit, whatever din held */
    float *acc = frand(M * K, -1, 1), *want = falloc(M * K);
    for (int i = 0; i < M * K; i++)
        want[i] = acc[i] + din1[i];
    be->ops->matmul_backward(be->ctx, acc, 1, NULL, NULL, r, s.in, s.w, M, K, N);
    assert_memory_equal(acc, want, (size_t)M * K * sizeof(float));
    ffree(acc), ffree(want);
    ffree(s.out), ffree(s.in), ffree(s.w), ffree(s.bias), ffree(r);
    ffree(din), ffree(dw), ffree(dbias), ffree(din1), ffree(dw1), ffree(db1), ffree(dw2);
}

/* ---- embedding ------------------------------------------------------------------- */

struct emb_state {
    float *out, *wte;
    int32_t *tok;
    int N, C;
};

static void emb_forward(void *p)
{
    struct emb_state *s = p;
    be->ops->embedding_forward(be->ctx, s->out, s->tok, s->wte, s->N, s->C);
}

static void test_embedding(void **state)
{
    (void)state;
    rng_seed(3);
    int V = 5, N = 9, C = 70; /* C > one 64-channel block */
    struct emb_state s = {falloc(N * C), frand(V * C, -1, 1), ialloc(N), N, C};
    const int32_t toks[9] = {3, 1, 3, 0, 3, 1, 4, 0, 3}; /* repeats; token 2 unused */
    memcpy(s.tok, toks, sizeof(toks));
    emb_forward(&s);
    for (int n = 0; n < N; n++)
        assert_memory_equal(s.out + n * C, s.wte + toks[n] * C, (size_t)C * sizeof(float));

    float *r = frand(N * C, -1, 1), *dwte = falloc(V * C);
    be->ops->embedding_backward(be->ctx, dwte, r, s.tok, N, C);
    /* exact scatter reference (each row sums ≤ 4 values; float vs double rounding) */
    double *want = calloc((size_t)V * C, sizeof(double));
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            want[toks[n] * C + c] += r[n * C + c];
    assert_close(dwte, want, V * C, 1e-6, 1e-6, "dwte");
    struct gradcheck gc = {emb_forward, &s, s.out, r, N * C, NULL, NULL, 0};
    /* linear op, 630 outputs: noise only */
    gc_check(&gc, "embedding dwte", s.wte, V * C, dwte, 1, 2e-3, 1e-3);

    float *d1 = fdup(dwte, V * C);
    be->ops->embedding_backward(be->ctx, dwte, r, s.tok, N, C);
    for (int i = 0; i < V * C; i++)
        assert_float_equal(dwte[i], 2.0f * d1[i], 1e-6f * (1.0f + fabsf(d1[i])));
    free(want);
    ffree(s.out), ffree(s.wte), ffree(s.tok), ffree(r), ffree(dwte), ffree(d1);
}

/* ---- rmsnorm --------------------------------------------------------------------- */

struct rms_state {
    float *out, *rstd, *in, *w;
    int N, C;
    float eps;
};

static void rms_forward(void *p)
{
    struct rms_state *s = p;
    be->ops->rmsnorm_forward(be->ctx, s->out, NULL, s->rstd, s->in, s->w, s->N, s->C, s->eps);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    rng_seed(4);
    int N = 6, C = 75;
    struct rms_state s = {falloc(N * C), falloc(N), frand(N * C, -2, 2), frand(C, 0.5f, 1.5f), N, C,
                          1e-5f};
    rms_forward(&s);
    double *want = malloc(sizeof(double) * N * C), wr[6];
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)s.in[n * C + c] * s.in[n * C + c];
        wr[n] = 1.0 / sqrt(ss / C + s.eps);
        for (int c = 0; c < C; c++)
            want[n * C + c] = s.in[n * C + c] * wr[n] * s.w[c];
    }
    /* rstd from a double sum (rounded once), out = 2 float products */
    assert_close(s.rstd, wr, N, 0, 2e-7, "rstd");
    assert_close(s.out, want, N * C, 1e-6, 5e-7, "rmsnorm out");

    float *r = frand(N * C, -1, 1), *din = falloc(N * C), *dw = falloc(C);
    be->ops->rmsnorm_backward(be->ctx, din, 0, NULL, dw, r, s.in, s.w, s.rstd, N, C);
    struct gradcheck gc = {rms_forward, &s, s.out, r, N * C, NULL, NULL, 0};
    /* nonlinear in din but smooth (|x| ~ 1, rstd ~ 1): truncation ~eps² ~1e-6;
     * 450 outputs of size ~2: noise ≤ 2e-6 in L → ≤ 1e-3 */
    gc_check(&gc, "rmsnorm din", s.in, N * C, din, 1, 3e-3, 2e-3);
    gc_check(&gc, "rmsnorm dw", s.w, C, dw, 1, 3e-3, 2e-3);

    float *din1 = fdup(din, N * C), *dw1 = fdup(dw, C);
    be->ops->rmsnorm_backward(be->ctx, din, 0, NULL, dw, r, s.in, s.w, s.rstd, N, C);
    assert_memory_equal(din, din1, (size_t)N * C * sizeof(float));
    for (int i = 0; i < C; i++)
        assert_float_equal(dw[i], 2.0f * dw1[i], 1e-6f * (1.0f + fabsf(dw1[i])));
    /* din_add: din + (the written din), bit for bit */
    float *acc = frand(N * C, -1, 1), *sum = falloc(N * C);
    for (int i = 0; i < N * C; i++)
        sum[i] = acc[i] + din1[i];
    be->ops->rmsnorm_backward(be->ctx, acc, 1, NULL, NULL, r, s.in, s.w, s.rstd, N, C);
    assert_memory_equal(acc, sum, (size_t)N * C * sizeof(float));
    ffree(acc), ffree(sum);
    free(want);
    ffree(s.out), ffree(s.rstd), ffree(s.in), ffree(s.w), ffree(r), ffree(din), ffree(dw);
    ffree(din1), ffree(dw1);
}

/* ---- rope ------------------------------------------------------------------------ */

/* cos/sin tables (P, D/2): angle(p, i) = p · theta^(−2i/D) */
static void rope_tables(float *cs, float *sn, int P, int D, double theta)
{
    for (int p = 0; p < P; p++)
        for (int i = 0; i < D / 2; i++) {
            double a = p * pow(theta, -2.0 * i / D);
            cs[p * (D / 2) + i] = (float)cos(a);
            sn[p * (D / 2) + i] = (float)sin(a);
        }
}

struct rope_state {
    float *out, *x, *cs, *sn;
    int32_t *pos;
    int N, H, D;
};

static void rope_fwd_copy(void *p)
{
    struct rope_state *s = p;
    memcpy(s->out, s->x, sizeof(float) * s->N * s->H * s->D);
    be->ops->rope_forward(be->ctx, s->out, s->pos, s->cs, s->sn, s->N, s->H, s->D);
}

static void test_rope(void **state)
{
    (void)state;
    rng_seed(5);
    int N = 5, H = 3, D = 10, P = 40, half = D / 2;
    struct rope_state s = {falloc(N * H * D),
                           frand(N * H * D, -1, 1),
                           falloc(P * half),
                           falloc(P * half),
                           ialloc(N),
                           N,
                           H,
                           D};
    const int32_t pos[5] = {0, 7, 39, 3, 7};
    memcpy(s.pos, pos, sizeof(pos));
    rope_tables(s.cs, s.sn, P, D, 10000.0);
    rope_fwd_copy(&s);

    /* reference: rotate pair (i, i + D/2) by the exact angle, in double */
    double *want = malloc(sizeof(double) * N * H * D);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                double a = pos[n] * pow(10000.0, -2.0 * i / D);
                const float *x = s.x + (n * H + h) * D;
                want[(n * H + h) * D + i] = x[i] * cos(a) - x[i + half] * sin(a);
                want[(n * H + h) * D + i + half] = x[i + half] * cos(a) + x[i] * sin(a);
            }
    /* tables are float-rounded (≤ 6e-8) and two float products */
    assert_close(s.out, want, N * H * D, 3e-7, 3e-7, "rope out");

    /* backward rotates by −angle: backward(forward(x)) == x */
    float *y = fdup(s.out, N * H * D);
    be->ops->rope_backward(be->ctx, y, NULL, s.pos, s.cs, s.sn, N, H, D);
    double *xd = malloc(sizeof(double) * N * H * D);
    for (int i = 0; i < N * H * D; i++)
        xd[i] = s.x[i];
    /* cos²+sin² of float tables is 1 within ~1e-7 */
    assert_close(y, xd, N * H * D, 5e-7, 5e-7, "rope inverse");

    float *r = frand(N * H * D, -1, 1), *dx = fdup(r, N * H * D), *dx2 = fdup(r, N * H * D);
    uint16_t *dx16 = halloc(N * H * D);
    be->ops->rope_backward(be->ctx, dx, NULL, s.pos, s.cs, s.sn, N, H, D);
    /* with an image: the rotated gradient's bf16 rounding, its f32 input left as it was */
    be->ops->rope_backward(be->ctx, dx2, dx16, s.pos, s.cs, s.sn, N, H, D);
    assert_memory_equal(dx2, r, sizeof(float) * N * H * D);
    assert_image16(dx16, dx, N * H * D, "rope_backward dx16");
    ffree(dx2), ffree(dx16);
    struct gradcheck gc = {rope_fwd_copy, &s, s.out, r, N * H * D, NULL, NULL, 0};
    /* linear op, 150 outputs: noise only */
    gc_check(&gc, "rope dx", s.x, N * H * D, dx, 1, 2e-3, 1e-3);
    free(want), free(xd);
    ffree(s.out), ffree(s.x), ffree(s.cs), ffree(s.sn), ffree(s.pos), ffree(y), ffree(r), ffree(dx);
}

/* ---- attention ------------------------------------------------------------------- */

struct att_state {
    float *out, *lse, *q, *k, *v;
    int32_t *seg;
    int B, T, H, KVH, D;
};

static void att_forward(void *p)
{
    struct att_state *s = p;
    be->ops->attention_forward(be->ctx, s->out, s->lse, s->q, s->k, s->v, s->seg, s->B, s->T, s->H,
                               s->KVH, s->D);
}

static struct att_state att_make(int B, int T, int H, int KVH, int D, const int32_t *seg)
{
    struct att_state s = {falloc((int64_t)B * T * H * D),
                          falloc((int64_t)B * H * T),
                          frand((int64_t)B * T * H * D, -1, 1),
                          frand((int64_t)B * T * KVH * D, -1, 1),
                          frand((int64_t)B * T * KVH * D, -1, 1),
                          ialloc((int64_t)B * T),
                          B,
                          T,
                          H,
                          KVH,
                          D};
    memcpy(s.seg, seg, sizeof(int32_t) * B * T);
    return s;
}

static void att_free(struct att_state *s)
{
    ffree(s->out), ffree(s->lse), ffree(s->q), ffree(s->k), ffree(s->v), ffree(s->seg);
}

/* naive double softmax(QKᵀ/sqrt(D) + mask)V; out (B,T,H,D), lse (B,H,T) */
static void att_reference(const struct att_state *s, double *out, double *lse)
{
    int B = s->B, T = s->T, H = s->H, KVH = s->KVH, D = s->D;
    double *w = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                int kvh = h / (H / KVH);
                int32_t st = s->seg[b * T + t];
                double *o = out + (((size_t)b * T + t) * H + h) * D;
                for (int d = 0; d < D; d++)
                    o[d] = 0.0;
                if (st < 0) {
                    lse[((size_t)b * H + h) * T + t] = -INFINITY;
                    continue;
                }
                double m = -INFINITY;
                for (int u = 0; u <= t; u++) {
                    w[u] = -INFINITY;
                    if (s->seg[b * T + u] != st)
                        continue;
                    double x = 0;
                    for (int d = 0; d < D; d++)
                        x += (double)s->q[(((size_t)b * T + t) * H + h) * D + d] *
                             s->k[(((size_t)b * T + u) * KVH + kvh) * D + d];
                    w[u] = x / sqrt((double)D);
                    m = fmax(m, w[u]);
                }
                double z = 0;
                for (int u = 0; u <= t; u++)
                    z += exp(w[u] - m);
                for (int u = 0; u <= t; u++) {
                    double p = exp(w[u] - m) / z;
                    for (int d = 0; d < D; d++)
                        o[d] += p * s->v[(((size_t)b * T + u) * KVH + kvh) * D + d];
                }
                lse[((size_t)b * H + h) * T + t] = m + log(z);
            }
    free(w);
}

/* row 0: two packed documents then padding; row 1: padding in the middle, a
 * document split around it (same id, non-contiguous), and a third document */
static void att_segments(int32_t *seg, int T)
{
    for (int t = 0; t < T; t++) {
        seg[t] = t < T / 2 - 3 ? 0 : (t < T - 5 ? 1 : -1);
        seg[T + t] = t < 3 ? 2 : (t < 6 ? -1 : (t < 10 ? 2 : (t < T - 2 ? 7 : -1)));
    }
}

static void check_att_forward(int T)
{
    int B = 2, H = 4, KVH = 2, D = 8;
    int32_t *seg = malloc(sizeof(int32_t) * B * T);
    att_segments(seg, T);
    struct att_state s = att_make(B, T, H, KVH, D, seg);
    att_forward(&s);
    double *want = malloc(sizeof(double) * B * T * H * D), *wl = malloc(sizeof(double) * B * H * T);
    att_reference(&s, want, wl);
    assert_finite(s.out, (int64_t)B * T * H * D, "attention out");
    /* scores are float dots of 8 terms, softmax in float: errors ~1e-6 on
     * outputs that are convex combinations of values in [−1, 1] */
    assert_close(s.out, want, (int64_t)B * T * H * D, 2e-6, 2e-6, "attention out");
    for (int i = 0; i < B * H * T; i++) {
        if (isinf(wl[i])) {
            assert_true(isinf(s.lse[i]) && s.lse[i] < 0);
            continue;
        }
        /* lse ~ log(T) ≤ 5 in float */
        assert_float_equal(s.lse[i], wl[i], 2e-6);
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            if (seg[b * T + t] < 0)
                for (int i = 0; i < H * D; i++)
                    assert_true(s.out[((size_t)b * T + t) * H * D + i] == 0.0f);
    att_free(&s);
    free(seg), free(want), free(wl);
}

static void test_attention_forward(void **state)
{
    (void)state;
    rng_seed(6);
    check_att_forward(19);  /* one query block */
    check_att_forward(75);  /* three blocks; segments cross block edges */
    check_att_forward(130); /* large enough to run in parallel */
}

/* padding rows get zero dq; padding keys get zero dk, dv */
static void assert_padding_grads(const float *dq, const float *dk, const float *dv,
                                 const int32_t *seg, int B, int T, int H, int KVH, int D)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            if (seg[b * T + t] >= 0)
                continue;
            for (int i = 0; i < H * D; i++)
                assert_true(dq[((size_t)b * T + t) * H * D + i] == 0.0f);
            for (int i = 0; i < KVH * D; i++)
                assert_true(dk[((size_t)b * T + t) * KVH * D + i] == 0.0f &&
                            dv[((size_t)b * T + t) * KVH * D + i] == 0.0f);
        }
}

static void test_attention_backward(void **state)
{
    (void)state;
    rng_seed(7);
    int B = 2, T = 37, H = 4, KVH = 2, D = 8; /* T spans two query blocks */
    int32_t seg[2 * 37];
    att_segments(seg, T);
    struct att_state s = att_make(B, T, H, KVH, D, seg);
    att_forward(&s);
    int64_t nq = (int64_t)B * T * H * D, nk = (int64_t)B * T * KVH * D;
    float *r = frand(nq, -1, 1);
    float *dq = falloc(nq), *dk = falloc(nk), *dv = falloc(nk);
    be->ops->attention_backward(be->ctx, dq, dk, dv, r, s.out, s.lse, s.q, s.k, s.v, s.seg, B, T, H,
                                KVH, D);
    assert_finite(dq, nq, "dq"), assert_finite(dk, nk, "dk"), assert_finite(dv, nk, "dv");
    struct gradcheck gc = {att_forward, &s, s.out, r, nq, NULL, NULL, 0};
    /* 2368 outputs of size ≤ 1: noise ≤ ~3e-6 in L → ≤ ~1.5e-3; softmax is
     * smooth at this scale (|scores| ≤ 3), truncation ~1e-6 */
    gc_check(&gc, "attention dq", s.q, nq, dq, 1, 4e-3, 5e-3);
    gc_check(&gc, "attention dk", s.k, nk, dk, 1, 4e-3, 5e-3);
    gc_check(&gc, "attention dv", s.v, nk, dv, 1, 4e-3, 5e-3);

    assert_padding_grads(dq, dk, dv, seg, B, T, H, KVH, D);

    /* all three are activation grads (=): a second call gives the same bits */
    float *dq1 = fdup(dq, nq), *dk1 = fdup(dk, nk), *dv1 = fdup(dv, nk);
    be->ops->attention_backward(be->ctx, dq, dk, dv, r, s.out, s.lse, s.q, s.k, s.v, s.seg, B, T, H,
                                KVH, D);
    assert_memory_equal(dq, dq1, (size_t)nq * sizeof(float));
    assert_memory_equal(dk, dk1, (size_t)nk * sizeof(float));
    assert_memory_equal(dv, dv1, (size_t)nk * sizeof(float));
    att_free(&s);
    ffree(r), ffree(dq), ffree(dk), ffree(dv), ffree(dq1), ffree(dk1), ffree(dv1);
}

/* x (n) rounded to bf16 in place */
static void round_bf16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = r1_bf16_to_f32(r1_f32_to_bf16(x[i]));
}

/* ‖got − want‖ / ‖want‖ */
static double rel_err(const float *got, const float *want, int64_t n)
{
    double e = 0, w = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    return sqrt(e / w);
}

static int64_t count_differ(const float *a, const float *b, int64_t n)
{
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        c += a[i] != b[i];
    return c;
}

/* attention16 (the bf16-product attention of training in bf16): its inputs enter rounded
 * (the same bits as from pre-rounded inputs), its lse is the f32 op's on the rounded inputs
 * bit for bit (same scores, same f32 sums), and the probability and dS roundings move the
 * results off the f32 op's by what bf16 allows, no more and not zero. */
static void test_attention16(void **state)
{
    (void)state;
    rng_seed(11);
    int B = 2, T = 75, H = 4, KVH = 2, D = 8; /* three query blocks */
    int32_t seg[2 * 75];
    att_segments(seg, T);
    struct att_state s = att_make(B, T, H, KVH, D, seg), r = att_make(B, T, H, KVH, D, seg);
    int64_t nq = (int64_t)B * T * H * D, nk = (int64_t)B * T * KVH * D, nl = (int64_t)B * H * T;
    for (int64_t i = 0; i < nq; i++)
        s.q[i] *= 2.0f; /* scores up to ±2.8: softmaxes far from flat */
    memcpy(r.q, s.q, sizeof(float) * nq), round_bf16(r.q, nq);
    memcpy(r.k, s.k, sizeof(float) * nk), round_bf16(r.k, nk);
    memcpy(r.v, s.v, sizeof(float) * nk), round_bf16(r.v, nk);
    const struct r1_backend_ops *o = be->ops;
    uint16_t *out16 = halloc(nq), *dv16 = halloc(nk);
    o->attention16_forward(be->ctx, s.out, NULL, s.lse, s.q, s.k, s.v, seg, B, T, H, KVH, D);
    o->attention16_forward(be->ctx, r.out, out16, r.lse, r.q, r.k, r.v, seg, B, T, H, KVH, D);
    assert_memory_equal(s.out, r.out, sizeof(float) * nq);
    assert_image16(out16, r.out, nq, "attention16_forward out16");
    assert_memory_equal(s.lse, r.lse, sizeof(float) * nl);
    float *out32 = falloc(nq), *lse32 = falloc(nl);
    o->attention_forward(be->ctx, out32, lse32, r.q, r.k, r.v, seg, B, T, H, KVH, D);
    assert_memory_equal(s.lse, lse32, sizeof(float) * nl);
    /* out = Σ bf16(p)·v / Σ p, p ≤ 1 rounded by ≤ 2^-9 relative, |v| ≤ 1: |Δ| ≤ 2^-9 */
    double *want = malloc(sizeof(double) * nq);
    for (int64_t i = 0; i < nq; i++)
        want[i] = out32[i];
    assert_close(s.out, want, nq, 1.0 / 512, 0, "attention16 out vs f32 on rounded inputs");
    assert_true(count_differ(s.out, out32, nq) > nq / 4); /* the probabilities are rounded */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            if (seg[b * T + t] < 0)
                for (int i = 0; i < H * D; i++)
                    assert_true(s.out[((size_t)b * T + t) * H * D + i] == 0.0f);

    float *g = frand(nq, -1, 1), *gr = fdup(g, nq);
    round_bf16(gr, nq);
    float *dq = falloc(nq), *dk = falloc(nk), *dv = falloc(nk);
    float *dq1 = falloc(nq), *dk1 = falloc(nk), *dv1 = falloc(nk);
    o->attention16_backward(be->ctx, dq, dk, dv, NULL, g, s.out, s.lse, s.q, s.k, s.v, seg, B, T,
                            H, KVH, D);
    o->attention16_backward(be->ctx, dq1, dk1, dv1, dv16, gr, s.out, s.lse, r.q, r.k, r.v, seg, B,
                            T, H, KVH, D);
    assert_image16(dv16, dv1, nk, "attention16_backward dv16");
    ffree(out16), ffree(dv16);
    /* dout enters rounded everywhere, Di = bf16(dout)·out included */
    assert_memory_equal(dq, dq1, sizeof(float) * nq);
    assert_memory_equal(dk, dk1, sizeof(float) * nk);
    assert_memory_equal(dv, dv1, sizeof(float) * nk);
    float *dq2 = falloc(nq);
    o->attention16_backward(be->ctx, dq2, dk1, dv1, NULL, gr, s.out, s.lse, r.q, r.k, r.v, seg, B,
                            T, H, KVH, D);
    assert_memory_equal(dq1, dq2, sizeof(float) * nq); /* deterministic, = not += */
    o->attention_backward(be->ctx, dq1, dk1, dv1, gr, s.out, s.lse, r.q, r.k, r.v, seg, B, T, H,
                          KVH, D);
    /* P and dS rounded (2^-9 relative each) before sums of up to 75 terms: ~1e-3 relative;
     * 5e-3 leaves room, and a missing rounding or a wrong product is ≫ 1e-2 */
    double eq = rel_err(dq, dq1, nq), ek = rel_err(dk, dk1, nk), ev = rel_err(dv, dv1, nk);
    print_message("attention16 backward vs f32 on rounded inputs: dq %.2e dk %.2e dv %.2e\n", eq,
                  ek, ev);
    assert_true(eq < 5e-3 && ek < 5e-3 && ev < 5e-3);
    assert_true(eq > 0 && ek > 0 && ev > 0);
    assert_padding_grads(dq, dk, dv, seg, B, T, H, KVH, D);
    free(want);
    att_free(&s), att_free(&r);
    ffree(out32), ffree(lse32), ffree(g), ffree(gr), ffree(dq), ffree(dk), ffree(dv), ffree(dq1),
        ffree(dk1), ffree(dv1), ffree(dq2);
}

/* writes the k/v of sequences into a cache and checks that attention_cached
 * at every position equals attention_forward over the whole sequence */
static void test_attention_cached(void **state)
{
    (void)state;
    rng_seed(8);
    int B = 2, T = 21, H = 4, KVH = 2, D = 8, S = 3, L = 24;
    int32_t seg[2 * 21] = {0};
    struct att_state s = att_make(B, T, H, KVH, D, seg);
    att_forward(&s);
    float *kc = falloc((int64_t)S * L * KVH * D), *vc = falloc((int64_t)S * L * KVH * D);
    /* sequence b goes to slot 2b, stored one token at a time in interleaved order */
    int N = B * T;
    int32_t *slot = ialloc(N), *pos = ialloc(N);
    float *qn = falloc((int64_t)N * H * D), *out = falloc((int64_t)N * H * D);
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            int n = t * B + b;
            slot[n] = 2 * b;
            pos[n] = t;
            be->ops->kv_store(be->ctx, kc, vc, s.k + ((size_t)b * T + t) * KVH * D,
                              s.v + ((size_t)b * T + t) * KVH * D, slot + n, pos + n, 1, KVH, D, L);
            memcpy(qn + (size_t)n * H * D, s.q + ((size_t)b * T + t) * H * D,
                   sizeof(float) * H * D);
        }
    be->ops->attention_cached(be->ctx, out, qn, kc, vc, slot, pos, N, H, KVH, D, L);
    /* the two paths sum the q·k dot and the softmax in different orders
     * (8-lane dot vs k-ordered tile GEMM), so they agree to a few float ulps
     * of values ≤ 1, not bitwise: 2e-6 absolute */
    double *want = malloc(sizeof(double) * N * H * D);
    for (int n = 0; n < N; n++) {
        int b = n % B, t = n / B;
        for (int i = 0; i < H * D; i++)
            want[(size_t)n * H * D + i] = s.out[((size_t)b * T + t) * H * D + i];
    }
    assert_close(out, want, (int64_t)N * H * D, 2e-6, 2e-6, "cached vs training attention");

    /* a batched kv_store of all tokens gives the same cache */
    float *kc2 = falloc((int64_t)S * L * KVH * D), *vc2 = falloc((int64_t)S * L * KVH * D);
    float *kn = falloc((int64_t)N * KVH * D), *vn = falloc((int64_t)N * KVH * D);
    for (int n = 0; n < N; n++) {
        int b = n % B, t = n / B;
        memcpy(kn + (size_t)n * KVH * D, s.k + ((size_t)b * T + t) * KVH * D,
               sizeof(float) * KVH * D);
        memcpy(vn + (size_t)n * KVH * D, s.v + ((size_t)b * T + t) * KVH * D,
               sizeof(float) * KVH * D);
    }
    be->ops->kv_store(be->ctx, kc2, vc2, kn, vn, slot, pos, N, KVH, D, L);
    assert_memory_equal(kc, kc2, sizeof(float) * S * L * KVH * D);
    assert_memory_equal(vc, vc2, sizeof(float) * S * L * KVH * D);

    /* a bf16 cache: kv_store16 stores bf16(k), bf16(v) where kv_store stores k, v, and
     * attention_cached16 gives attention_cached's bits on the cache widened to f32 */
    int64_t nc = (int64_t)S * L * KVH * D;
    uint16_t *kc16 = be->ops->alloc(be->ctx, sizeof(uint16_t) * nc);
    uint16_t *vc16 = be->ops->alloc(be->ctx, sizeof(uint16_t) * nc);
    assert_non_null(kc16), assert_non_null(vc16);
    be->ops->kv_store16(be->ctx, kc16, vc16, kn, vn, slot, pos, N, KVH, D, L);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < KVH * D; i++) {
            size_t at = ((size_t)slot[n] * L + pos[n]) * KVH * D + i;
            assert_int_equal(kc16[at], r1_f32_to_bf16(kn[(size_t)n * KVH * D + i]));
            assert_int_equal(vc16[at], r1_f32_to_bf16(vn[(size_t)n * KVH * D + i]));
        }
    for (int64_t i = 0; i < nc; i++) {
        kc2[i] = r1_bf16_to_f32(kc16[i]);
        vc2[i] = r1_bf16_to_f32(vc16[i]);
    }
    float *out16 = falloc((int64_t)N * H * D), *out32 = fdup(out, (int64_t)N * H * D);
    be->ops->attention_cached(be->ctx, out, qn, kc2, vc2, slot, pos, N, H, KVH, D, L);
    be->ops->attention_cached16(be->ctx, out16, qn, kc16, vc16, slot, pos, N, H, KVH, D, L);
    assert_memory_equal(out, out16, sizeof(float) * N * H * D);
    assert_true(count_differ(out16, out32, (int64_t)N * H * D) > 0); /* k, v were rounded */
    ffree(kc16), ffree(vc16), ffree(out16), ffree(out32);
    free(want);
    att_free(&s);
    ffree(kc), ffree(vc), ffree(slot), ffree(pos), ffree(qn), ffree(out), ffree(kc2), ffree(vc2),
        ffree(kn), ffree(vn);
}

/* ---- swiglu ---------------------------------------------------------------------- */

struct swiglu_state {
    float *out, *gate, *up;
    int64_t n;
};

static void swiglu_fwd(void *p)
{
    struct swiglu_state *s = p;
    be->ops->swiglu_forward(be->ctx, s->out, NULL, s->gate, s->up, s->n);
}

static void test_swiglu(void **state)
{
    (void)state;
    rng_seed(9);
    int64_t n = 203;
    struct swiglu_state s = {falloc(n), frand(n, -4, 4), frand(n, -2, 2), n};
    s.gate[0] = -90.0f; /* exp overflow side: silu → −0, no NaN */
    s.gate[1] = 90.0f;
    swiglu_fwd(&s);
    double want[203];
    for (int64_t i = 0; i < n; i++) {
        double g = s.gate[i];
        want[i] = g / (1.0 + exp(-g)) * s.up[i];
    }
    /* expf and a float divide: a few ulps */
    assert_close(s.out, want, n, 1e-6, 1e-6, "swiglu out");
    float *r = frand(n, -1, 1), *dg = falloc(n), *du = falloc(n);
    be->ops->swiglu_backward(be->ctx, dg, du, NULL, NULL, r, s.gate, s.up, n);
    assert_finite(dg, n, "dgate");
    struct gradcheck gc = {swiglu_fwd, &s, s.out, r, n, NULL, NULL, 0};
    /* smooth; outputs up to ~8 so noise ≤ 1e-5 in L → ≤ 5e-3; truncation
     * eps²·|silu'''| ≤ 1e-6 */
    gc_check(&gc, "swiglu dgate", s.gate, n, dg, 1, 5e-3, 2e-3);
    gc_check(&gc, "swiglu dup", s.up, n, du, 1, 5e-3, 2e-3);
    ffree(s.out), ffree(s.gate), ffree(s.up), ffree(r), ffree(dg), ffree(du);
}

/* ---- add, scale, sumsq ------------------------------------------------------------- */

static void test_add_scale_sumsq(void **state)
{
    (void)state;
    rng_seed(10);
    int64_t n = 100003;
    float *a = frand(n, -1, 1), *b = frand(n, -1, 1), *o = falloc(n), *a0 = fdup(a, n);
    be->ops->add(be->ctx, o, a, b, n);
    for (int64_t i = 0; i < n; i++)
        assert_true(o[i] == a[i] + b[i]);
    be->ops->add(be->ctx, a, a, b, n); /* out aliases a */
    assert_memory_equal(a, o, (size_t)n * sizeof(float));
    be->ops->scale(be->ctx, a, 0.5f, n);
    for (int64_t i = 0; i < n; i++)
        assert_true(a[i] == o[i] * 0.5f);

    double got, got2, want = 0;
    be->ops->sumsq(be->ctx, &got, a0, n);
    for (int64_t i = 0; i < n; i++)
        want += (double)a0[i] * a0[i];
    /* double sums of 1e5 terms in two orders differ by ~1e-16 · n relative */
    assert_true(fabs(got - want) <= 1e-12 * want);
    be->ops->sumsq(be->ctx, &got2, a0, n);
    assert_memory_equal(&got, &got2, sizeof(double));
    be->ops->sumsq(be->ctx, &got, a0, 5); /* fewer elements than ranges */
    want = 0;
    for (int i = 0; i < 5; i++)
        want += (double)a0[i] * a0[i];
    assert_true(fabs(got - want) <= 1e-15 * want);
    ffree(a), ffree(b), ffree(o), ffree(a0);
}

/* ---- logprobs ------------------------------------------------------------------------ */

struct lp_state {
    float *logp, *ent, *lse, *logits;
    int32_t *tgt;
    int N, V;
};

static void lp_forward(void *p)
{
    struct lp_state *s = p;
    be->ops->logprobs_forward(be->ctx, s->logp, s->ent, s->lse, s->logits, s->tgt, s->N, s->V);
}

static void test_logprobs(void **state)
{
    (void)state;
    rng_seed(11);
    int N = 5, V = 37;
    struct lp_state s = {falloc(N), falloc(N), falloc(N), frand(N * V, -3, 3), ialloc(N), N, V};
    const int32_t tgt[5] = {4, -1, 36, 0, 17};
    memcpy(s.tgt, tgt, sizeof(tgt));
    for (int j = 0; j < V; j++) /* a row with a large offset: must not overflow */
        s.logits[3 * V + j] += 1000.0f;
    lp_forward(&s);
    double wlp[5], went[5], wlse[5];
    for (int n = 0; n < N; n++) {
        const float *z = s.logits + n * V;
        double m = -INFINITY, sum = 0, h = 0;
        for (int j = 0; j < V; j++)
            m = fmax(m, z[j]);
        for (int j = 0; j < V; j++)
            sum += exp(z[j] - m);
        wlse[n] = m + log(sum);
        for (int j = 0; j < V; j++) {
            double lp = z[j] - wlse[n];
            h -= exp(lp) * lp;
        }
        went[n] = h;
        wlp[n] = tgt[n] >= 0 ? z[tgt[n]] - wlse[n] : 0.0;
    }
    /* float results of double-accumulated sums; lse ~1000 on row 3 → 1e-4 abs */
    assert_close(s.lse, wlse, N, 1e-6, 2e-7, "lse");
    assert_close(s.logp, wlp, N, 1e-4, 1e-6, "logp");
    assert_close(s.ent, went, N, 1e-6, 1e-6, "entropy");
    assert_true(s.logp[1] == 0.0f);

    /* entropy NULL leaves logp and lse the same */
    float *lp1 = fdup(s.logp, N), *ls1 = fdup(s.lse, N);
    be->ops->logprobs_forward(be->ctx, s.logp, NULL, s.lse, s.logits, s.tgt, N, V);
    assert_memory_equal(s.logp, lp1, N * sizeof(float));
    assert_memory_equal(s.lse, ls1, N * sizeof(float));
    lp_forward(&s);

    float *r1 = frand(N, -1, 1), *r2 = frand(N, -1, 1), *dz = falloc(N * V);
    be->ops->logprobs_backward(be->ctx, dz, NULL,
                               s.logits, s.lse, s.ent, s.tgt, r1, r2, 1.0f, N, V);
    struct gradcheck gc = {lp_forward, &s, s.logp, r1, N, s.ent, r2, N};
    /* logits ~3 (one row at ~1000): logp is formed in double and the entropy
     * from max-subtracted sums, so L has noise ~1e-6 → ≤ 5e-4 in the quotient;
     * truncation eps²·|f'''| ~1e-6.  On the offset row the float lse (ulp
     * 6e-5) gives the analytic p a relative error ≤ ~1e-4, inside rtol. */
    for (int n = 0; n < N; n++)
        gc_check(&gc, "logprobs dlogits", s.logits + n * V, V, dz + n * V, 1, 2e-3, 2e-3);

    /* the row with target −1 gets only the entropy term: Σ_j dz = 0 there, and
     * dz = dentropy · (−p (log p + H)) */
    for (int j = 0; j < V; j++) {
        double lp = s.logits[V + j] - wlse[1];
        double want = r2[1] * (-exp(lp) * (lp + went[1]));
        assert_float_equal(dz[V + j], want, 1e-6);
    }

    /* entropy NULL in backward (recomputed) and dentropy NULL */
    float *dz2 = falloc(N * V), *dz3 = falloc(N * V);
    be->ops->logprobs_backward(be->ctx, dz2, NULL,
                               s.logits, s.lse, NULL, s.tgt, r1, r2, 1.0f, N, V);
    assert_memory_equal(dz2, dz, sizeof(float) * N * V); /* recomputed as forward does */
    be->ops->logprobs_backward(be->ctx, dz3, NULL,
                               s.logits, s.lse, s.ent, s.tgt, r1, NULL, 1.0f, N, V);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < V; j++) {
            double p = exp(s.logits[n * V + j] - wlse[n]);
            double want = tgt[n] >= 0 ? r1[n] * ((j == tgt[n]) - p) : 0.0;
            /* on row 3 the float lse (~1000, ulp 6e-5) gives p a relative
             * error up to ~6e-5; elsewhere a few float ulps */
            assert_float_equal(dz3[n * V + j], want, 1e-6 + 1e-4 * fabs(want));
        }
    /* = rule */
    float *dz1 = fdup(dz, N * V);
    be->ops->logprobs_backward(be->ctx, dz, NULL,
                               s.logits, s.lse, s.ent, s.tgt, r1, r2, 1.0f, N, V);
    assert_memory_equal(dz, dz1, sizeof(float) * N * V);
    ffree(s.logp), ffree(s.ent), ffree(s.lse), ffree(s.logits), ffree(s.tgt), ffree(lp1),
        ffree(ls1), ffree(r1), ffree(r2), ffree(dz), ffree(dz2), ffree(dz3), ffree(dz1);
}

/* ---- adamw ----------------------------------------------------------------------------- */

static void test_adamw(void **state)
{
    (void)state;
    /* one element, lr 0.1, b1 0.9, b2 0.999, eps 1e-8, wd 0.01, grad_scale 2:
     * step 1, grad 0.5 → g = 1:  m = 0.1, v = 0.001, m̂ = 0.1/0.1 = 1,
     *   v̂ = 0.001/0.001 = 1, p = 1 − 0.1·(1/(1+1e-8) + 0.01·1) = 0.899
     * step 2, grad −0.25 → g = −0.5:  m = 0.09 − 0.05 = 0.04,
     *   v = 0.000999 + 0.00025 = 0.001249, m̂ = 0.04/0.19 = 0.2105263,
     *   v̂ = 0.001249/0.001999 = 0.6248124, sqrt = 0.7904507,
     *   p = 0.899 − 0.1·(0.2105263/0.7904507 + 0.01·0.899) = 0.8714673
     * (checked in double).  m and v see the float hyperparameters: 0.9f =
     * 0.899999976 and 0.999f = 0.999000013, so 1 − b1 = 0.100000024 and
     * 1 − b2 = 0.000999987; hence m1 = 0.100000024, v1 = 0.000999987125,
     * m2 = 0.9f·m1 − 0.5·(1 − 0.9f) = 0.0400000066, v2 = v1·(0.999f + 0.25)
     * = 0.0012489839.  p is insensitive to that (the bias corrections use the
     * same b), so it is checked against the decimal derivation to 3e-7. */
    float *p = falloc(3), *g = falloc(3), *m = falloc(3), *v = falloc(3);
    p[0] = 1.0f, p[1] = 1.0f, p[2] = -2.0f;
    g[0] = 0.5f, g[1] = 0.0f, g[2] = 0.5f;
    const struct r1_adamw_range all = {0, 0, 3, 0.01f};
    be->ops->adamw_update(be->ctx, p, NULL, g, m, v, &all, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 2.0f, 1);
    assert_float_equal(m[0], 0.100000024f, 1e-8);
    assert_float_equal(v[0], 0.000999987125f, 1e-11);
    assert_float_equal(p[0], 0.899f, 2e-7);
    /* zero grad: only weight decay, p = 1 − 0.1·0.01 */
    assert_float_equal(p[1], 0.999f, 2e-7);
    g[0] = -0.25f;
    be->ops->adamw_update(be->ctx, p, NULL, g, m, v, &all, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 2.0f, 2);
    assert_float_equal(m[0], 0.0400000066f, 1e-9);
    assert_float_equal(v[0], 0.0012489839f, 1e-11);
    assert_float_equal(p[0], 0.8714673f, 3e-7);
    ffree(p), ffree(g), ffree(m), ffree(v);
}

/* Several ranges in one call (every tensor of a model: gaps between them, the moments at
 * another offset as a ZeRO-1 shard has them, each range's own weight decay): each range
 * bit for bit its own one-range call, and nothing outside the ranges written. */
static void test_adamw_ranges(void **state)
{
    (void)state;
    rng_seed(37);
    enum { NP = 4000, NM = 3000, NR = 9 };
    const struct r1_adamw_range r[NR] = {
        {0, 0, 576, 0.0f},        {600, 600, 1, 0.1f},      {640, 640, 700, 0.1f},
        {1344, 1344, 0, 0.1f},    {1344, 1344, 64, 0.0f},   {1500, 1500, 999, 0.05f},
        {2560, 2560, 100, 0.1f},  {2700, 2700, 300, 0.0f},  {3100, 10, 500, 0.1f}};
    float *p[2], *m[2], *v[2];
    uint16_t *p16[2];
    float *g = frand(NP, -1, 1), *p0 = frand(NP, -1, 1);
    for (int k = 0; k < 2; k++) {
        p[k] = fdup(p0, NP), m[k] = falloc(NM), v[k] = falloc(NM), p16[k] = halloc(NP);
        for (int i = 0; i < NM; i++)
            m[k][i] = 0.01f * (float)(i % 13), v[k][i] = 0.001f * (float)(i % 7);
    }
    float *pold = fdup(p0, NP), *mold = fdup(m[0], NM);
    for (int64_t step = 1; step <= 3; step++) {
        be->ops->adamw_update(be->ctx, p[0], p16[0], g, m[0], v[0], r, NR, 1e-2f, 0.9f, 0.95f,
                              1e-8f, 0.5f, step);
        for (int i = 0; i < NR; i++)
            be->ops->adamw_update(be->ctx, p[1], p16[1], g, m[1], v[1], &r[i], 1, 1e-2f, 0.9f,
                                  0.95f, 1e-8f, 0.5f, step);
    }
    assert_memory_equal(p[0], p[1], NP * sizeof(float));
    assert_memory_equal(m[0], m[1], NM * sizeof(float));
    assert_memory_equal(v[0], v[1], NM * sizeof(float));
    assert_memory_equal(p16[0], p16[1], NP * sizeof(uint16_t));
    for (int i = 0; i < NP; i++) { /* outside every range: untouched */
        int in = 0;
        for (int k = 0; k < NR; k++)
            in |= i >= r[k].off && i < r[k].off + r[k].n;
        if (!in && (p[0][i] != pold[i] || p16[0][i] != 0xffff))
            fail_msg("adamw_update wrote element %d, outside its ranges", i);
        if (in && p[0][i] == pold[i])
            fail_msg("adamw_update left element %d of a range unchanged", i);
    }
    for (int i = 0; i < NM; i++) {
        int in = 0;
        for (int k = 0; k < NR; k++)
            in |= i >= r[k].moff && i < r[k].moff + r[k].n;
        if (!in && m[0][i] != mold[i])
            fail_msg("adamw_update wrote moment %d, outside its ranges", i);
    }
    for (int k = 0; k < 2; k++)
        ffree(p[k]), ffree(m[k]), ffree(v[k]), ffree(p16[k]);
    ffree(g), ffree(p0), ffree(pold), ffree(mold);
}

/* ---- bf16 images ------------------------------------------------------------------------ */

/* The ops that feed a bf16 matmul write its operand's bf16 image themselves (rmsnorm and
 * its backward, SwiGLU and its backward, the loss head's backward; AdamW the weights' copy): the
 * rounding of the f32 result they would write, alone or next to it, and the f32 results
 * unchanged by it.  The loss head's scale multiplies the rounded bracket (the logits'
 * scale, d(s·z)/dz = s). */
static void test_bf16_images(void **state)
{
    (void)state;
    rng_seed(31);
    int N = 5, C = 77, V = 91;
    int64_t n = (int64_t)N * C;
    float *x = frand(n, -3, 3), *w = frand(C, 0.5f, 1.5f), *u = frand(n, -2, 2);
    float *out = falloc(n), *out2 = falloc(n), *rstd = falloc(N), *rstd2 = falloc(N);
    uint16_t *img = halloc(n), *img2 = halloc(n);
    be->ops->rmsnorm_forward(be->ctx, out, NULL, rstd, x, w, N, C, 1e-5f);
    be->ops->rmsnorm_forward(be->ctx, out2, img, rstd2, x, w, N, C, 1e-5f);
    be->ops->rmsnorm_forward(be->ctx, NULL, img2, rstd2, x, w, N, C, 1e-5f);
    assert_memory_equal(out, out2, (size_t)n * sizeof(float));
    assert_memory_equal(rstd, rstd2, (size_t)N * sizeof(float));
    assert_image16(img, out, n, "rmsnorm_forward out16");
    assert_memory_equal(img, img2, (size_t)n * sizeof(uint16_t));

    x[0] = -90.0f, x[1] = 90.0f; /* silu's exp overflowing on either side */
    memset(img, 0xff, (size_t)n * 2), memset(img2, 0xff, (size_t)n * 2);
    be->ops->swiglu_forward(be->ctx, out, NULL, x, u, n);
    be->ops->swiglu_forward(be->ctx, out2, img, x, u, n);
    be->ops->swiglu_forward(be->ctx, NULL, img2, x, u, n);
    assert_memory_equal(out, out2, (size_t)n * sizeof(float));
    assert_image16(img, out, n, "swiglu_forward out16");
    assert_memory_equal(img, img2, (size_t)n * sizeof(uint16_t));
    /* its backward: the images of dgate and dup, with or without them in f32 */
    float *dy = frand(n, -1, 1), *dg = falloc(n), *du = falloc(n), *dg2 = falloc(n);
    float *du2 = falloc(n);
    uint16_t *ig = halloc(n), *iu = halloc(n), *ig2 = halloc(n), *iu2 = halloc(n);
    be->ops->swiglu_backward(be->ctx, dg, du, NULL, NULL, dy, x, u, n);
    be->ops->swiglu_backward(be->ctx, dg2, du2, ig, iu, dy, x, u, n);
    be->ops->swiglu_backward(be->ctx, NULL, NULL, ig2, iu2, dy, x, u, n);
    assert_memory_equal(dg, dg2, (size_t)n * sizeof(float));
    assert_memory_equal(du, du2, (size_t)n * sizeof(float));
    assert_image16(ig, dg, n, "swiglu_backward dgate16");
    assert_image16(iu, du, n, "swiglu_backward dup16");
    assert_memory_equal(ig, ig2, (size_t)n * sizeof(uint16_t));
    assert_memory_equal(iu, iu2, (size_t)n * sizeof(uint16_t));

    /* RMSNorm's backward: the image of din as written and as added to (din_add), the f32
     * din the same with or without it */
    float *rd = frand(n, -1, 1), *rd2 = fdup(rd, n);
    memset(img, 0xff, (size_t)n * 2);
    for (int add = 0; add < 2; add++) {
        be->ops->rmsnorm_backward(be->ctx, rd, add, NULL, NULL, dy, x, w, rstd, N, C);
        be->ops->rmsnorm_backward(be->ctx, rd2, add, img, NULL, dy, x, w, rstd, N, C);
        assert_memory_equal(rd, rd2, (size_t)n * sizeof(float));
        assert_image16(img, rd, n, add ? "rmsnorm_backward din16 (+=)" : "rmsnorm_backward din16");
    }
    ffree(rd), ffree(rd2);
    ffree(dy), ffree(dg), ffree(du), ffree(dg2), ffree(du2), ffree(ig), ffree(iu), ffree(ig2);
    ffree(iu2);

    /* loss head: logits ~N·V, targets with a -1 row, both gradient terms */
    float *z = frand((int64_t)N * V, -4, 4), *lp = falloc(N), *ent = falloc(N), *lse = falloc(N);
    int32_t *t = ialloc(N);
    for (int i = 0; i < N; i++)
        t[i] = i == 2 ? -1 : (i * 37) % V;
    float *dlp = frand(N, -1, 1), *dent = frand(N, -1, 1);
    float *d1 = falloc((int64_t)N * V), *ds = falloc((int64_t)N * V);
    uint16_t *d16 = halloc((int64_t)N * V);
    const float s = 1.0f / 0.7f;
    be->ops->logprobs_forward(be->ctx, lp, ent, lse, z, t, N, V);
    be->ops->logprobs_backward(be->ctx, d1, NULL, z, lse, ent, t, dlp, dent, 1.0f, N, V);
    be->ops->logprobs_backward(be->ctx, ds, NULL, z, lse, ent, t, dlp, dent, s, N, V);
    be->ops->logprobs_backward(be->ctx, NULL, d16, z, lse, ent, t, dlp, dent, s, N, V);
    for (int64_t i = 0; i < (int64_t)N * V; i++) {
        float want = d1[i] * s;
        if (memcmp(&ds[i], &want, sizeof(float)) != 0)
            fail_msg("logprobs_backward scale %g [%lld]: %g, not %g = %g·scale", (double)s,
                     (long long)i, (double)ds[i], (double)want, (double)d1[i]);
    }
    assert_image16(d16, ds, (int64_t)N * V, "logprobs_backward dlogits16");

    /* AdamW: the same update with and without the copy, the copy the new weights' rounding */
    float *p1 = frand(n, -1, 1), *p2 = fdup(p1, n), *g = frand(n, -1, 1);
    float *m1 = falloc(n), *v1 = falloc(n), *m2 = falloc(n), *v2 = falloc(n);
    memset(m1, 0, (size_t)n * 4), memset(v1, 0, (size_t)n * 4);
    memset(m2, 0, (size_t)n * 4), memset(v2, 0, (size_t)n * 4);
    const struct r1_adamw_range all = {0, 0, n, 0.1f};
    for (int64_t step = 1; step <= 2; step++) {
        memset(img, 0xff, (size_t)n * 2);
        be->ops->adamw_update(be->ctx, p1, NULL, g, m1, v1, &all, 1, 1e-2f, 0.9f, 0.95f, 1e-8f,
                              0.5f, step);
        be->ops->adamw_update(be->ctx, p2, img, g, m2, v2, &all, 1, 1e-2f, 0.9f, 0.95f, 1e-8f,
                              0.5f, step);
        assert_memory_equal(p1, p2, (size_t)n * 4);
        assert_memory_equal(m1, m2, (size_t)n * 4);
        assert_memory_equal(v1, v2, (size_t)n * 4);
        assert_image16(img, p2, n, "adamw_update param16");
    }
    ffree(x), ffree(w), ffree(u), ffree(out), ffree(out2), ffree(rstd), ffree(rstd2);
    ffree(img), ffree(img2), ffree(z), ffree(lp), ffree(ent), ffree(lse), ffree(t), ffree(dlp);
    ffree(dent), ffree(d1), ffree(ds), ffree(d16), ffree(p1), ffree(p2), ffree(g), ffree(m1);
    ffree(v1), ffree(m2), ffree(v2);
}

/* ---- determinism ------------------------------------------------------------------------ */

/* runs every op twice on the same inputs and compares the bits; the non-BLAS
 * ops also against a 1-thread backend (they do not depend on the thread
 * count), which also checks the parallel paths against the serial ones the
 * gradient checks ran */
static void test_determinism(void **state)
{
    (void)state;
    rng_seed(12);
    /* sizes above the kernels' serial thresholds, so the 2-thread runs fork */
    int B = 2, T = 70, H = 4, KVH = 2, D = 16, C = 260, V = 250, N = B * T;
    int32_t seg[2 * 70];
    att_segments(seg, T);
    struct att_state s = att_make(B, T, H, KVH, D, seg);
    int64_t nq = (int64_t)B * T * H * D, nk = (int64_t)B * T * KVH * D;
    float *x = frand((int64_t)N * C, -1, 1), *w = frand((int64_t)C * C, -1, 1);
    float *bias = frand(C, -1, 1), *nw = frand(C, 0.5f, 1.5f);
    float *logits = frand((int64_t)N * V, -3, 3);
    int32_t *tok = ialloc(N), *pos = ialloc(N);
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(rng_u32() % V), pos[i] = i % T;
    float *cs = falloc(T * D / 2), *sn = falloc(T * D / 2);
    rope_tables(cs, sn, T, D, 10000.0);
    float *r = frand(nq, -1, 1), *rl = frand(N, -1, 1);

    struct r1_backend *one;
    assert_int_equal(r1_backend_cpu_create(&one, 1), 0);
    struct r1_backend *bes[3] = {be, be, one};
    float *res[3][16];
    double ss[3];
    for (int run = 0; run < 3; run++) {
        const struct r1_backend_ops *o = bes[run]->ops;
        void *c = bes[run]->ctx;
        float **R = res[run];
        R[0] = falloc(nq), R[1] = falloc(B * H * T);
        o->attention_forward(c, R[0], R[1], s.q, s.k, s.v, s.seg, B, T, H, KVH, D);
        R[2] = falloc(nq), R[3] = falloc(nk), R[4] = falloc(nk);
        o->attention_backward(c, R[2], R[3], R[4], r, R[0], R[1], s.q, s.k, s.v, s.seg, B, T, H,
                              KVH, D);
        R[5] = falloc((int64_t)N * C), R[6] = falloc(N);
        o->rmsnorm_forward(c, R[5], NULL, R[6], x, nw, N, C, 1e-5f);
        R[7] = falloc((int64_t)N * C), R[8] = falloc(C);
        o->rmsnorm_backward(c, R[7], 0, NULL, R[8], x, x, nw, R[6], N, C);
        R[9] = falloc((int64_t)V * C);
        o->embedding_backward(c, R[9], x, tok, N, C);
        R[10] = falloc(C);
        o->matmul_backward(c, NULL, 0, NULL, R[10], x, x, w, N, C, C);
        R[11] = falloc(N), R[12] = falloc(N), R[13] = falloc(N);
        o->logprobs_forward(c, R[11], R[12], R[13], logits, tok, N, V);
        R[14] = falloc((int64_t)N * V);
        o->logprobs_backward(c, R[14], NULL, logits, R[13], R[12], tok, rl, rl, 1.0f, N, V);
        R[15] = fdup(s.q, nq);
        o->rope_forward(c, R[15], pos, cs, sn, N, H, D);
        o->sumsq(c, &ss[run], x, (int64_t)N * C);
    }
    size_t sizes[16] = {nq, B * H * T, nq, nk, nk, N * C, N,     N * C,
                        C,  V * C,     C,  N,  N,  N,     N * V, nq};
    for (int run = 1; run < 3; run++) {
        for (int i = 0; i < 16; i++)
            if (memcmp(res[0][i], res[run][i], sizes[i] * sizeof(float)) != 0)
                fail_msg("result %d differs between run 0 and run %d", i, run);
        assert_memory_equal(&ss[0], &ss[run], sizeof(double));
    }
    /* matmul (OpenBLAS) and the memory-bound pointwise ops: twice on `be` */
    float *m1 = falloc((int64_t)N * C), *m2 = falloc((int64_t)N * C);
    be->ops->matmul_forward(be->ctx, m1, x, w, bias, NULL, N, C, C);
    be->ops->matmul_forward(be->ctx, m2, x, w, bias, NULL, N, C, C);
    assert_memory_equal(m1, m2, sizeof(float) * N * C);
    float *dw1 = falloc((int64_t)C * C), *dw2 = falloc((int64_t)C * C);
    be->ops->matmul_backward(be->ctx, m1, 0, dw1, NULL, x, x, w, N, C, C);
    be->ops->matmul_backward(be->ctx, m2, 0, dw2, NULL, x, x, w, N, C, C);
    assert_memory_equal(m1, m2, sizeof(float) * N * C);
    assert_memory_equal(dw1, dw2, sizeof(float) * C * C);
    be->ops->swiglu_forward(be->ctx, m1, NULL, x, x, (int64_t)N * C);
    be->ops->swiglu_forward(be->ctx, m2, NULL, x, x, (int64_t)N * C);
    assert_memory_equal(m1, m2, sizeof(float) * N * C);
    be->ops->swiglu_backward(be->ctx, m1, dw1, NULL, NULL, x, x, x,
                             (int64_t)N * C < C * C ? N * C : C * C);
    be->ops->swiglu_backward(be->ctx, m2, dw2, NULL, NULL, x, x, x,
                             (int64_t)N * C < C * C ? N * C : C * C);
    assert_memory_equal(m1, m2, sizeof(float) * N * C);
    assert_memory_equal(dw1, dw2, sizeof(float) * C * C);

    for (int run = 0; run < 3; run++)
        for (int i = 0; i < 16; i++)
            ffree(res[run][i]);
    one->ops->release(one->ctx);
    free(one);
    att_free(&s);
    ffree(x), ffree(w), ffree(bias), ffree(nw), ffree(logits), ffree(tok), ffree(pos), ffree(cs),
        ffree(sn), ffree(r), ffree(rl), ffree(m1), ffree(m2), ffree(dw1), ffree(dw2);
}

/* ---- memory ops -------------------------------------------------------------------------- */

static void test_memory(void **state)
{
    (void)state;
    unsigned char *p = be->ops->alloc(be->ctx, 1000);
    assert_non_null(p);
    assert_true(((uintptr_t)p & 63) == 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(p[i], 0);
    unsigned char host[1000], back[1000];
    for (int i = 0; i < 1000; i++)
        host[i] = (unsigned char)(i * 7);
    be->ops->upload(be->ctx, p, host, 1000);
    unsigned char *q = be->ops->alloc(be->ctx, 1000);
    be->ops->copy(be->ctx, q, p, 1000);
    be->ops->download(be->ctx, back, q, 1000);
    assert_memory_equal(host, back, 1000);
    be->ops->zero(be->ctx, q, 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(q[i], 0);
    assert_non_null(be->ops->name);
    be->ops->free(be->ctx, p);
    be->ops->free(be->ctx, q);
}

/* ---- main -------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    return r1_backend_cpu_create(&be, 2) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    be->ops->release(be->ctx);
    free(be);
    return 0;
}

/* test-ops [pattern]: runs the tests whose name matches the glob pattern */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_matmul_forward),
        cmocka_unit_test(test_matmul_backward),
        cmocka_unit_test(test_convert_bf16),
        cmocka_unit_test(test_matmul_forward_bf16),
        cmocka_unit_test(test_matmul_bf16_rows),
        cmocka_unit_test(test_matmul16),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_forward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_attention16),
        cmocka_unit_test(test_attention_cached),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_add_scale_sumsq),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adamw_ranges),
        cmocka_unit_test(test_bf16_images),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
