/* test-sample.c - core/sample: greedy, filters, probabilities and draws.
 *
 * The fast paths in sample.c (heap top-k, candidate-limited top-p, unsorted draw)
 * are checked against a plain reference written here: full sort best first
 * (logit descending, id ascending), then temperature, top-k, top-p, min-p in that
 * order.  Draws use core/rng with fixed seeds, so every statistical check is
 * deterministic; bounds are still the 0.999 chi-square quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/sample.h"

/* ---- reference ---- */

static const float *ref_x;

static int ref_cmp(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (ref_x[a] != ref_x[b])
        return ref_x[a] > ref_x[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

/* Reference: kept ids best first in order[0..*n), normalised probs in p (V).
 * Weights are computed as in sample.c (float exp relative to the max). */
static void ref_probs(const float *x, int V, const struct r1_sampling *s, float *p, int32_t *order,
                      int *n_out)
{
    ref_x = x;
    for (int i = 0; i < V; i++)
        order[i] = i;
    qsort(order, (size_t)V, sizeof(int32_t), ref_cmp);
    float m = x[order[0]];
    float inv_t = (float)(1.0 / s->temperature);
    float *w = malloc(sizeof(float) * (size_t)V);
    for (int i = 0; i < V; i++)
        w[i] = expf((x[i] - m) * inv_t);
    int n = V;
    if (s->top_k > 0 && s->top_k < n)
        n = s->top_k;
    if (s->top_p < 1) {
        double total = 0, acc = 0;
        for (int j = 0; j < n; j++)
            total += w[order[j]];
        for (int j = 0; j < n; j++) {
            acc += w[order[j]];
            if (acc >= s->top_p * total) {
                n = j + 1;
                break;
            }
        }
    }
    if (s->min_p > 0) {
        int j = 1;
        while (j < n && w[order[j]] >= s->min_p * w[order[0]])
            j++;
        n = j;
    }
    double sum = 0;
    for (int j = 0; j < n; j++)
        sum += w[order[j]];
    for (int i = 0; i < V; i++)
        p[i] = 0;
    for (int j = 0; j < n; j++)
        p[order[j]] = (float)(w[order[j]] / sum);
    *n_out = n;
    free(w);
}

/* Reference draw in best-first order (what sample.c does whenever top-k or top-p is on). */
static int32_t ref_draw(const int32_t *order, int n, const float *p, float u)
{
    double sum = 0, acc = 0;
    for (int j = 0; j < n; j++)
        sum += p[order[j]];
    int32_t last = order[0];
    for (int j = 0; j < n; j++) {
        if (p[order[j]] <= 0)
            continue;
        last = order[j];
        acc += p[order[j]];
        if (acc > u * sum)
            return order[j];
    }
    return last;
}

/* Logits with ties (quantised), a few masked tokens, spread over about 12 nats. */
static void make_logits(float *x, int V, uint64_t seed, int with_ties)
{
    struct r1_rng r = r1_rng_make(seed, R1_STREAM_USER);
    for (int i = 0; i < V; i++) {
        float z = 2.5f * r1_rng_normal(&r);
        x[i] = with_ties ? roundf(z * 8.0f) / 8.0f : z;
    }
    for (int i = 7; i < V; i += 97)
        x[i] = -INFINITY;
}

static double chi2(const long *count, const double *expect, int k)
{
    double s = 0;
    for (int i = 0; i < k; i++)
        s += (count[i] - expect[i]) * (count[i] - expect[i]) / expect[i];
    return s;
}

/* ---- tests ---- */

static void test_check(void **state)
{
    (void)state;
    struct r1_sampling ok = {1.0f, 0, 1.0f, 0.0f};
    assert_int_equal(r1_sampling_check(&ok), 0);
    struct r1_sampling greedy = {0.0f, 50, 0.9f, 0.1f};
    assert_int_equal(r1_sampling_check(&greedy), 0);

    struct {
        struct r1_sampling s;
        const char *field;
    } bad[] = {
        {{-0.1f, 0, 1.0f, 0.0f}, "temperature"}, {{INFINITY, 0, 1.0f, 0.0f}, "temperature"},
        {{NAN, 0, 1.0f, 0.0f}, "temperature"},   {{1.0f, -1, 1.0f, 0.0f}, "top_k"},
        {{1.0f, 0, 0.0f, 0.0f}, "top_p"},        {{1.0f, 0, 1.5f, 0.0f}, "top_p"},
        {{1.0f, 0, NAN, 0.0f}, "top_p"},         {{1.0f, 0, 1.0f, -0.1f}, "min_p"},
        {{1.0f, 0, 1.0f, 1.0f}, "min_p"},        {{1.0f, 0, 1.0f, NAN}, "min_p"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r1_err_clear();
        assert_int_equal(r1_sampling_check(&bad[i].s), R1_EINVAL);
        assert_non_null(strstr(r1_err_last(), bad[i].field));
    }
    assert_int_equal(r1_sampling_check(NULL), R1_EINVAL);

    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, 0), R1_EINVAL);
    assert_null(scr.prob);
    r1_sample_scratch_release(&scr); /* releasing a failed init is safe */
}

static void test_greedy(void **state)
{
    (void)state;
    enum { V = 1000 };
    float x[V], p[V];
    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
    make_logits(x, V, 1, 0);
    x[123] = 20.0f;
    x[456] = 20.0f; /* tie: the lower id wins */
    x[789] = 19.0f;
    struct r1_sampling g = {0.0f, 0, 1.0f, 0.0f};
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)x[i] - 20.0);
    float lp;
    for (float u = 0; u < 1; u += 0.125f) {
        assert_int_equal(r1_sample_token(x, V, &g, u, &lp, &scr), 123);
        assert_true(fabs(lp - (-log(sum))) < 1e-6);
    }
    /* Filters do not matter when greedy; NULL logprob is fine. */
    struct r1_sampling g2 = {0.0f, 3, 0.5f, 0.2f};
    assert_int_equal(r1_sample_token(x, V, &g2, 0.9f, NULL, &scr), 123);
    r1_sample_probs(x, V, &g, p, &scr);
    for (int i = 0; i < V; i++)
        assert_true(p[i] == (i == 123 ? 1.0f : 0.0f));

    /* All equal -> id 0; all -inf but one -> that one at any temperature. */
    float flat[V];
    for (int i = 0; i < V; i++)
        flat[i] = 0.5f;
    assert_int_equal(r1_sample_token(flat, V, &g, 0.3f, &lp, &scr), 0);
    assert_true(fabs(lp - (-log((double)V))) < 1e-5);
    for (int i = 0; i < V; i++)
        flat[i] = -INFINITY;
    flat[777] = -3.0f;
    struct r1_sampling t1 = {1.0f, 0, 0.9f, 0.0f};
    for (float u = 0; u < 1; u += 0.25f) {
        assert_int_equal(r1_sample_token(flat, V, &t1, u, &lp, &scr), 777);
        assert_true(lp == 0.0f);
    }
    /* No finite logit at all: the greedy choice, logprob NaN. */
    flat[777] = -INFINITY;
    assert_int_equal(r1_sample_token(flat, V, &t1, 0.5f, &lp, &scr), 0);
    assert_true(isnan(lp));
    r1_sample_scratch_release(&scr);
}

/* Fast paths against the reference: same kept set, same probabilities, and (whenever
 * a top-k or top-p filter is on) the same token for the same u. */
static void test_against_reference(void **state)
{
    (void)state;
    const int sizes[] = {1, 2, 17, 1000, 49152};
    const struct r1_sampling settings[] = {
        {1.0f, 0, 1.0f, 0.0f},    {0.7f, 0, 1.0f, 0.0f},   {1.0f, 50, 1.0f, 0.0f},
        {1.0f, 1, 1.0f, 0.0f},    {1.3f, 0, 0.9f, 0.0f},   {1.0f, 0, 0.5f, 0.0f},
        {0.6f, 0, 0.999f, 0.0f},  {1.0f, 40, 0.8f, 0.0f},  {1.0f, 0, 1.0f, 0.05f},
        {0.8f, 20, 0.95f, 0.02f}, {1.0f, 0, 0.9f, 0.1f},   {1.0f, 100000, 1.0f, 0.0f},
        {2.0f, 0, 1e-6f, 0.0f},   {1e-3f, 0, 0.9f, 0.0f},  {1e-30f, 5, 1.0f, 0.0f},
    };
    const int ns = (int)(sizeof(settings) / sizeof(settings[0]));
    struct r1_rng r = r1_rng_make(11, R1_STREAM_USER + 1);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        int V = sizes[si];
        float *x = malloc(sizeof(float) * (size_t)V), *p = malloc(sizeof(float) * (size_t)V),
              *q = malloc(sizeof(float) * (size_t)V);
        int32_t *order = malloc(sizeof(int32_t) * (size_t)V);
        struct r1_sample_scratch scr;
        assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
        for (int ties = 0; ties < 2; ties++) {
            make_logits(x, V, 100 + (uint64_t)V + (uint64_t)ties, ties);
            if (V == 1)
                x[0] = 0.25f;
            for (int k = 0; k < ns; k++) {
                const struct r1_sampling *s = &settings[k];
                int n;
                ref_probs(x, V, s, q, order, &n);
                r1_sample_probs(x, V, s, p, &scr);
                for (int i = 0; i < V; i++) {
                    assert_true((p[i] > 0) == (q[i] > 0));
                    assert_true(fabsf(p[i] - q[i]) <= 1e-6f + 1e-5f * q[i]);
                }
                int sorted_draw = (s->top_k > 0 && s->top_k < V) || s->top_p < 1;
                for (int t = 0; t < 50; t++) {
                    float u = t == 0 ? 0.0f : t == 1 ? 0x1.fffffep-1f : r1_rng_uniform(&r);
                    float lp;
                    int32_t tok = r1_sample_token(x, V, s, u, &lp, &scr);
                    assert_true(tok >= 0 && tok < V);
                    assert_true(q[tok] > 0);
                    assert_true(fabs(lp - log(p[tok])) < 1e-5);
                    if (sorted_draw)
                        assert_int_equal(tok, ref_draw(order, n, q, u));
                }
            }
        }
        r1_sample_scratch_release(&scr);
        free(x);
        free(p);
        free(q);
        free(order);
    }
}

/* Filters never let an excluded token through, over many draws. */
static void test_filters_exclude(void **state)
{
    (void)state;
    enum { V = 200, N = 20000 };
    float x[V], q[V];
    int32_t order[V];
    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
    make_logits(x, V, 5, 0);
    const struct r1_sampling settings[] = {
        {1.0f, 5, 1.0f, 0.0f},   /* top-k */
        {1.0f, 0, 0.6f, 0.0f},   /* top-p */
        {1.0f, 0, 1.0f, 0.2f},   /* min-p */
        {1.5f, 30, 0.7f, 0.05f}, /* all three */
    };
    struct r1_rng r = r1_rng_make(21, R1_STREAM_SAMPLE);
    for (size_t k = 0; k < sizeof(settings) / sizeof(settings[0]); k++) {
        int n;
        ref_probs(x, V, &settings[k], q, order, &n);
        assert_true(n > 1 && n < V);
        int allowed[V] = {0};
        for (int j = 0; j < n; j++)
            allowed[order[j]] = 1;
        if (settings[k].top_k == 5) /* exactly the 5 largest logits */
            for (int i = 0; i < V; i++) {
                int larger = 0;
                for (int j = 0; j < V; j++)
                    larger += x[j] > x[i];
                assert_int_equal(allowed[i], larger < 5);
            }
        int hit[V] = {0};
        for (int t = 0; t < N; t++) {
            int32_t tok = r1_sample_token(x, V, &settings[k], r1_rng_uniform(&r), NULL, &scr);
            assert_true(allowed[tok]);
            hit[tok] = 1;
        }
        for (int j = 0; j < n; j++) /* every kept token with p > 1% shows up */
            if (q[order[j]] > 0.01f)
                assert_true(hit[order[j]]);
    }
    r1_sample_scratch_release(&scr);
}

/* Draw frequencies against independently computed (double) softmax probabilities. */
static void test_chi_square(void **state)
{
    (void)state;
    enum { V = 16, N = 20000 };
    float x[V];
    for (int i = 0; i < V; i++)
        x[i] = 0.2f * (float)((i * 7) % V); /* a permutation of 0, 0.2, ..., 3.0 */
    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
    const float temps[] = {1.0f, 0.7f};
    for (int ti = 0; ti < 2; ti++) {
        struct r1_sampling s = {temps[ti], 0, 1.0f, 0.0f};
        double e[V], z = 0;
        for (int i = 0; i < V; i++)
            z += e[i] = exp(x[i] / (double)temps[ti]);
        for (int i = 0; i < V; i++)
            e[i] = N * e[i] / z; /* smallest: 20000 * 0.0026 = 52 at T = 0.7 */
        long c[V] = {0};
        struct r1_rng r = r1_rng_make(31 + (uint64_t)ti, R1_STREAM_SAMPLE);
        for (int t = 0; t < N; t++)
            c[r1_sample_token(x, V, &s, r1_rng_uniform(&r), NULL, &scr)]++;
        /* dof 15, chi-square 0.999 quantile 37.697. */
        assert_true(chi2(c, e, V) < 37.697);
    }

    /* Filtered (sorted-walk) path: top-k 10, top-p 0.95 at T = 0.8, against the
     * reference probabilities over the kept tokens.  dof = kept - 1. */
    struct r1_sampling s = {0.8f, 10, 0.95f, 0.0f};
    float q[V];
    int32_t order[V];
    int n;
    ref_probs(x, V, &s, q, order, &n);
    assert_true(n >= 5 && n <= 10);
    long c[V] = {0};
    double e[V];
    struct r1_rng r = r1_rng_make(41, R1_STREAM_SAMPLE);
    for (int t = 0; t < N; t++)
        c[r1_sample_token(x, V, &s, r1_rng_uniform(&r), NULL, &scr)]++;
    long ck[V];
    for (int j = 0; j < n; j++) {
        ck[j] = c[order[j]];
        e[j] = (double)N * q[order[j]];
    }
    /* 0.999 quantiles for dof 4..9. */
    const double q999[] = {18.467, 20.515, 22.458, 24.322, 26.124, 27.877};
    assert_true(chi2(ck, e, n) < q999[n - 5]);
    r1_sample_scratch_release(&scr);
}

/* Boundaries that are exact in floating point: top-p stops at the first prefix whose
 * mass reaches top_p (>=), min-p keeps tokens whose weight equals min_p * max (>=). */
static void test_exact_boundaries(void **state)
{
    (void)state;
    enum { V = 8 };
    float x[V] = {1, 1, 1, 1, 1, 1, 1, 1}, p[V];
    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
    /* Eight weights of 1: top_p 0.25 is reached exactly by the first two. */
    struct r1_sampling s = {1.0f, 0, 0.25f, 0.0f};
    r1_sample_probs(x, V, &s, p, &scr);
    int kept = 0;
    for (int i = 0; i < V; i++)
        kept += p[i] > 0;
    assert_int_equal(kept, 2);
    assert_true(p[0] == 0.5f && p[1] == 0.5f); /* ties by id: the two lowest ids */

    /* The same on 64 equal weights (the selection path partitions above 16 tokens):
     * top_p = j/64 keeps exactly j tokens, ids 0..j-1; with the nucleus at all 64,
     * u = j/64 lands exactly on a running sum and must pick id j (first sum > target). */
    enum { W = 64 };
    float flat[W], pw[W];
    for (int i = 0; i < W; i++)
        flat[i] = 0.75f;
    struct r1_sample_scratch sw;
    assert_int_equal(r1_sample_scratch_init(&sw, W), 0);
    for (int j = 1; j < W; j++) {
        struct r1_sampling sp = {1.0f, 0, (float)j / W, 0.0f};
        r1_sample_probs(flat, W, &sp, pw, &sw);
        for (int i = 0; i < W; i++)
            assert_true((pw[i] > 0) == (i < j));
        struct r1_sampling all = {1.0f, 0, 0.99f, 0.0f};
        assert_int_equal(r1_sample_token(flat, W, &all, (float)j / W, NULL, &sw), j);
        struct r1_sampling topk = {1.0f, W / 2, 1.0f, 0.0f}; /* sorted walk, same rule */
        if (j < W / 2)
            assert_int_equal(r1_sample_token(flat, W, &topk, (float)j / (W / 2), NULL, &sw), j);
    }
    r1_sample_scratch_release(&sw);

    /* min_p exactly equal to a token's relative weight keeps it (id-order and sorted paths). */
    float y[V] = {0, -1, -1, -5, -6, -7, -8, -9};
    struct r1_sampling mp = {1.0f, 0, 1.0f, expf(-1.0f)};
    struct r1_sampling mpk = {1.0f, 6, 1.0f, expf(-1.0f)};
    for (int t = 0; t < 2; t++) {
        r1_sample_probs(y, V, t ? &mpk : &mp, p, &scr);
        kept = 0;
        for (int i = 0; i < V; i++)
            kept += p[i] > 0;
        assert_int_equal(kept, 3);
    }
    r1_sample_scratch_release(&scr);
}

static void test_same_u_same_token(void **state)
{
    (void)state;
    enum { V = 5000 };
    float x[V];
    make_logits(x, V, 9, 1);
    struct r1_sample_scratch a, b;
    assert_int_equal(r1_sample_scratch_init(&a, V), 0);
    assert_int_equal(r1_sample_scratch_init(&b, V), 0);
    const struct r1_sampling settings[] = {
        {1.0f, 0, 1.0f, 0.0f}, {1.0f, 50, 1.0f, 0.0f}, {0.9f, 0, 0.9f, 0.0f}, {1.0f, 0, 1.0f, 0.1f}};
    struct r1_rng r = r1_rng_make(3, R1_STREAM_SAMPLE);
    for (size_t k = 0; k < sizeof(settings) / sizeof(settings[0]); k++)
        for (int t = 0; t < 200; t++) {
            float u = r1_rng_uniform(&r), la, lb;
            int32_t ta = r1_sample_token(x, V, &settings[k], u, &la, &a);
            r1_sample_token(x, V, &settings[0], 0.5f, NULL, &b); /* dirty the other scratch */
            int32_t tb = r1_sample_token(x, V, &settings[k], u, &lb, &b);
            assert_int_equal(ta, tb);
            assert_true(la == lb);
        }
    /* u past the end (1.0) still gives a kept token. */
    for (size_t k = 0; k < sizeof(settings) / sizeof(settings[0]); k++) {
        int32_t t = r1_sample_token(x, V, &settings[k], 1.0f, NULL, &a);
        assert_true(t >= 0 && t < V && x[t] > -INFINITY);
    }
    r1_sample_scratch_release(&a);
    r1_sample_scratch_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_filters_exclude),
        cmocka_unit_test(test_chi_square),
        cmocka_unit_test(test_exact_boundaries),
        cmocka_unit_test(test_same_u_same_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
