/* test-rng.c - core/rng: Philox4x32-10 known answers, state save/restore,
 * stream independence and distribution sanity.
 *
 * Every statistical check uses a fixed seed, so the test is deterministic and
 * cannot flake; the bounds are still set as if it were random (about 5 sigma
 * or the 0.999 chi-square quantile), so a correct generator passes with margin
 * and a wrong one (bias, wrong lane order, modulo bias) does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/rng.h"

/* Known-answer vectors for philox4x32 10 from Random123 tests/kat_vectors
 * (github.com/DEShawResearch/random123).  Columns there: ctr[4] key[2] -> out[4]. */
static const struct {
    uint32_t ctr[4], key[2], out[4];
} kat[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static uint64_t join64(uint32_t lo, uint32_t hi) { return (uint64_t)lo | ((uint64_t)hi << 32); }

static void test_kat(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(kat) / sizeof(kat[0]); v++) {
        uint64_t block = join64(kat[v].ctr[0], kat[v].ctr[1]);
        uint64_t stream = join64(kat[v].ctr[2], kat[v].ctr[3]);
        uint64_t seed = join64(kat[v].key[0], kat[v].key[1]);
        uint32_t out[4];
        r1_philox4x32(out, seed, stream, block);
        for (int i = 0; i < 4; i++)
            assert_int_equal(out[i], kat[v].out[i]);

        /* The same words through the stateful interface: lane counter % 4 of block counter / 4
         * (the 64-bit counter reaches blocks below 2^62 only). */
        if (block >= (1ull << 62))
            continue;
        struct r1_rng r = r1_rng_make(seed, stream);
        r.counter = block * 4;
        for (int i = 0; i < 4; i++)
            assert_int_equal(r1_rng_u32(&r), kat[v].out[i]);
        assert_true(r.counter == block * 4 + 4);
    }
}

static void test_counter_layout(void **state)
{
    (void)state;
    struct r1_rng r = r1_rng_make(42, R1_STREAM_DATA);
    for (uint64_t blk = 0; blk < 8; blk++) {
        uint32_t out[4];
        r1_philox4x32(out, 42, R1_STREAM_DATA, blk);
        for (int lane = 0; lane < 4; lane++)
            assert_int_equal(r1_rng_u32(&r), out[lane]);
    }
    assert_true(r.counter == 32);

    /* u64 = first output (low) | second output (high), also across a block boundary. */
    for (uint64_t start = 0; start < 8; start++) {
        struct r1_rng a = r1_rng_make(7, 9), b = r1_rng_make(7, 9);
        a.counter = b.counter = start;
        uint32_t lo = r1_rng_u32(&b), hi = r1_rng_u32(&b);
        assert_true(r1_rng_u64(&a) == join64(lo, hi));
        assert_true(a.counter == b.counter);
    }

    /* uniform is (u32 >> 8) * 2^-24; uniform_double is (u64 >> 11) * 2^-53. */
    struct r1_rng a = r1_rng_make(5, 6), b = r1_rng_make(5, 6);
    for (int i = 0; i < 100; i++) {
        assert_true(r1_rng_uniform(&a) == (float)(r1_rng_u32(&b) >> 8) * 0x1.0p-24f);
        assert_true(r1_rng_uniform_double(&a) == (double)(r1_rng_u64(&b) >> 11) * 0x1.0p-53);
    }
    assert_true(a.counter == b.counter);
}

static void test_save_restore(void **state)
{
    (void)state;
    struct r1_rng r = r1_rng_make(0x123456789abcdefull, R1_STREAM_SAMPLE + 3);
    for (int i = 0; i < 1001; i++) /* odd: leave the counter mid-block */
        r1_rng_u32(&r);
    struct r1_rng saved = r; /* the whole state is three integers */
    float n1[64], n2[64];
    uint64_t b1[64], b2[64];
    for (int i = 0; i < 64; i++) {
        n1[i] = r1_rng_normal(&r);
        b1[i] = r1_rng_below(&r, 1000 + (uint64_t)i);
    }
    for (int i = 0; i < 64; i++) {
        n2[i] = r1_rng_normal(&saved);
        b2[i] = r1_rng_below(&saved, 1000 + (uint64_t)i);
    }
    assert_memory_equal(n1, n2, sizeof(n1));
    assert_memory_equal(b1, b2, sizeof(b1));
    assert_true(r.counter == saved.counter);

    /* Restoring from the three numbers alone gives the same continuation. */
    struct r1_rng again = r1_rng_make(r.seed, r.stream);
    again.counter = r.counter;
    for (int i = 0; i < 16; i++)
        assert_int_equal(r1_rng_u32(&again), r1_rng_u32(&r));
}

static void test_streams_differ(void **state)
{
    (void)state;
    uint64_t streams[] = {R1_STREAM_INIT, R1_STREAM_INIT + 1, R1_STREAM_DATA, R1_STREAM_SAMPLE,
                          R1_STREAM_SAMPLE + 1, R1_STREAM_USER};
    enum { NS = sizeof(streams) / sizeof(streams[0]), N = 64 };
    uint32_t seq[NS + 1][N];
    for (int s = 0; s < NS; s++) {
        struct r1_rng r = r1_rng_make(1234, streams[s]);
        for (int i = 0; i < N; i++)
            seq[s][i] = r1_rng_u32(&r);
    }
    struct r1_rng r = r1_rng_make(1235, streams[0]); /* another seed, same stream */
    for (int i = 0; i < N; i++)
        seq[NS][i] = r1_rng_u32(&r);
    for (int s = 0; s <= NS; s++)
        for (int t = s + 1; t <= NS; t++) {
            int same = 0;
            for (int i = 0; i < N; i++)
                same += seq[s][i] == seq[t][i];
            assert_true(same <= 1); /* 64 independent 32-bit words: a match is ~1e-8 */
        }
}

static void test_uniform_moments(void **state)
{
    (void)state;
    enum { N = 1000000 };
    struct r1_rng r = r1_rng_make(2024, R1_STREAM_USER);
    double sum = 0, sum2 = 0, dsum = 0;
    float lo = 1, hi = 0;
    for (int i = 0; i < N; i++) {
        float u = r1_rng_uniform(&r);
        double d = r1_rng_uniform_double(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        assert_true(d >= 0.0 && d < 1.0);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
        sum2 += (double)u * u;
        dsum += d;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    /* sd of the mean is 0.2887/sqrt(N) = 2.9e-4; sd of the variance estimate ~ 7.5e-5. */
    assert_true(fabs(mean - 0.5) < 1.5e-3);
    assert_true(fabs(var - 1.0 / 12.0) < 5e-4);
    assert_true(fabs(dsum / N - 0.5) < 1.5e-3);
    assert_true(lo < 1e-4f && hi > 1.0f - 1e-4f);
}

static void test_normal_moments(void **state)
{
    (void)state;
    enum { N = 1000000 };
    struct r1_rng r = r1_rng_make(99, R1_STREAM_INIT + 7);
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    int beyond2 = 0;
    for (int i = 0; i < N; i++) {
        double z = r1_rng_normal(&r);
        assert_true(isfinite(z) && fabs(z) < 6.0);
        s1 += z;
        s2 += z * z;
        s3 += z * z * z;
        s4 += z * z * z * z;
        beyond2 += fabs(z) > 2.0;
    }
    assert_true(r.counter == 2ull * N); /* exactly two 32-bit outputs per normal */
    double mean = s1 / N, var = s2 / N - mean * mean;
    /* sd: mean 1e-3, variance 1.4e-3, skewness 2.4e-3, kurtosis 4.9e-3 (N = 1e6). */
    assert_true(fabs(mean) < 5e-3);
    assert_true(fabs(var - 1.0) < 7e-3);
    assert_true(fabs(s3 / N) < 1.2e-2);
    assert_true(fabs(s4 / N - 3.0) < 3e-2);
    /* P(|z| > 2) = 0.0455; sd of the count is ~208. */
    assert_true(fabs(beyond2 - 0.0455 * N) < 1100);
}

static void test_normal_at_matches_sequential(void **state)
{
    (void)state;
    uint64_t seeds[] = {0, 1, 0xdeadbeefcafef00dull};
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        struct r1_rng r = r1_rng_make(seeds[s], R1_STREAM_INIT + s);
        for (uint64_t i = 0; i < 1000; i++) {
            float seq = r1_rng_normal(&r);
            float direct = r1_rng_normal_at(seeds[s], R1_STREAM_INIT + s, i);
            assert_memory_equal(&seq, &direct, sizeof(float));
        }
        /* Random access far into the stream. */
        uint64_t far = 123456789;
        struct r1_rng j = r1_rng_make(seeds[s], R1_STREAM_INIT + s);
        j.counter = 2 * far;
        float a = r1_rng_normal(&j), b = r1_rng_normal_at(seeds[s], R1_STREAM_INIT + s, far);
        assert_memory_equal(&a, &b, sizeof(float));
    }
    /* A normal drawn from an odd counter straddles two blocks and still uses 2 outputs. */
    struct r1_rng r = r1_rng_make(3, 4);
    r.counter = 3;
    float z = r1_rng_normal(&r);
    assert_true(isfinite(z));
    assert_true(r.counter == 5);
}

/* Chi-square statistic of counts against equal expectation. */
static double chi2_uniform(const long *count, int k, long total)
{
    double e = (double)total / k, x = 0;
    for (int i = 0; i < k; i++)
        x += (count[i] - e) * (count[i] - e) / e;
    return x;
}

static void test_below(void **state)
{
    (void)state;
    struct r1_rng r = r1_rng_make(77, R1_STREAM_USER + 1);
    uint64_t ns[] = {1, 2, 3, 7, 1000, 0x7fffffffull, 0xffffffffull, 0x100000000ull,
                     0x100000001ull, 0x8000000000000001ull, UINT64_MAX};
    for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++)
        for (int i = 0; i < 2000; i++)
            assert_true(r1_rng_below(&r, ns[t]) < ns[t]);

    /* n = 7, 70000 draws: dof 6, chi-square 0.999 quantile 22.458. */
    long c7[7] = {0};
    for (int i = 0; i < 70000; i++)
        c7[r1_rng_below(&r, 7)]++;
    assert_true(chi2_uniform(c7, 7, 70000) < 22.458);

    /* n = 10, 100000 draws: dof 9, quantile 27.877. */
    long c10[10] = {0};
    for (int i = 0; i < 100000; i++)
        c10[r1_rng_below(&r, 10)]++;
    assert_true(chi2_uniform(c10, 10, 100000) < 27.877);

    /* n = 3 * 2^62 (64-bit path): thirds by value, 60000 draws, dof 2, quantile 13.816.
     * A plain u64 % n would put half the mass in the first third. */
    uint64_t n = 3ull << 62;
    long c3[3] = {0};
    for (int i = 0; i < 60000; i++)
        c3[r1_rng_below(&r, n) / (1ull << 62)]++;
    assert_true(chi2_uniform(c3, 3, 60000) < 13.816);

    /* n = 3 * 2^30 (32-bit path): same idea, a u32 % n would be biased towards the first third. */
    uint64_t m = 3ull << 30;
    long d3[3] = {0};
    for (int i = 0; i < 60000; i++)
        d3[r1_rng_below(&r, m) / (1ull << 30)]++;
    assert_true(chi2_uniform(d3, 3, 60000) < 13.816);
}

static void test_shuffle(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t a[N], b[N];
    for (int i = 0; i < N; i++)
        a[i] = b[i] = i;
    struct r1_rng r1 = r1_rng_make(5, R1_STREAM_DATA), r2 = r1_rng_make(5, R1_STREAM_DATA);
    r1_rng_shuffle(&r1, a, N);
    r1_rng_shuffle(&r2, b, N);
    assert_memory_equal(a, b, sizeof(a)); /* deterministic */
    int seen[N] = {0}, fixed = 0;
    for (int i = 0; i < N; i++) {
        assert_true(a[i] >= 0 && a[i] < N);
        seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_true(fixed < 10); /* expected 1 fixed point */

    /* All 6 orders of 3 elements equally likely: 60000 shuffles, dof 5, quantile 20.515. */
    long perm[6] = {0};
    struct r1_rng r = r1_rng_make(6, R1_STREAM_DATA);
    for (int t = 0; t < 60000; t++) {
        int64_t p[3] = {0, 1, 2};
        r1_rng_shuffle(&r, p, 3);
        perm[p[0] * 2 + (p[1] > p[2])]++;
    }
    assert_true(chi2_uniform(perm, 6, 60000) < 20.515);

    /* Empty and single-element shuffles are no-ops and consume nothing. */
    int64_t one = 42;
    uint64_t before = r.counter;
    r1_rng_shuffle(&r, &one, 1);
    r1_rng_shuffle(&r, NULL, 0);
    assert_true(one == 42 && r.counter == before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kat),
        cmocka_unit_test(test_counter_layout),
        cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_streams_differ),
        cmocka_unit_test(test_uniform_moments),
        cmocka_unit_test(test_normal_moments),
        cmocka_unit_test(test_normal_at_matches_sequential),
        cmocka_unit_test(test_below),
        cmocka_unit_test(test_shuffle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
