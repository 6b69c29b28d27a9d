/* test-tensor.c - unit tests for core/tensor.c: dtypes, arenas (planned and
 * committed through a malloc-based test backend) and the bf16/f16 <-> f32
 * conversions, checked exhaustively over all 16-bit patterns and every
 * rounding tie, and against a nearest-value search on pseudo-random floats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/tensor.h"

/* --- helpers ------------------------------------------------------------------- */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static int f16_is_nan(uint16_t h)
{
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
}
static int bf16_is_nan(uint16_t h)
{
    return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu);
}

/* Independent decoding of an f16 bit pattern (finite or inf) with ldexp. */
static double f16_ref_value(uint16_t h)
{
    int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v;
    if (exp == 0x1f)
        v = INFINITY;
    else if (exp == 0)
        v = ldexp(mant, -24);
    else
        v = ldexp(1024 + mant, exp - 25);
    return (h & 0x8000u) ? -v : v;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* --- dtypes and shapes ---------------------------------------------------------- */

static void test_dtype_info(void **state)
{
    (void)state;
    assert_int_equal(r1_dtype_size(R1_F32), 4);
    assert_int_equal(r1_dtype_size(R1_BF16), 2);
    assert_int_equal(r1_dtype_size(R1_F16), 2);
    assert_int_equal(r1_dtype_size(R1_I32), 4);
    assert_int_equal(r1_dtype_size(R1_DTYPE_COUNT), 0);
    assert_string_equal(r1_dtype_name(R1_F32), "F32");
    assert_string_equal(r1_dtype_name(R1_BF16), "BF16");
    assert_string_equal(r1_dtype_name(R1_F16), "F16");
    assert_string_equal(r1_dtype_name(R1_I32), "I32");
    assert_string_equal(r1_dtype_name(R1_DTYPE_COUNT), "?");
}

static void test_numel_nbytes(void **state)
{
    (void)state;
    struct r1_tensor t = {.data = NULL, .dtype = R1_BF16, .ndim = 3, .shape = {2, 3, 5}};
    assert_int_equal(r1_tensor_numel(&t), 30);
    assert_int_equal(r1_tensor_nbytes(&t), 60);
    struct r1_tensor s = {.data = NULL, .dtype = R1_F32, .ndim = 0, .shape = {0}};
    assert_int_equal(r1_tensor_numel(&s), 1);
    assert_int_equal(r1_tensor_nbytes(&s), 4);
    struct r1_tensor z = {.data = NULL, .dtype = R1_I32, .ndim = 2, .shape = {7, 0}};
    assert_int_equal(r1_tensor_numel(&z), 0);
    assert_int_equal(r1_tensor_nbytes(&z), 0);
}

/* --- arenas ------------------------------------------------------------------------ */

struct test_be {
    int allocs, frees, fail;
    size_t last_bytes;
};

static void *tb_alloc(void *ctx, size_t bytes)
{
    struct test_be *tb = ctx;
    if (tb->fail)
        return NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) {
        memset(p, 0, n);
        tb->allocs++;
        tb->last_bytes = bytes;
    }
    return p;
}

static void tb_free(void *ctx, void *p)
{
    struct test_be *tb = ctx;
    tb->frees++;
    free(p);
}

static const struct r1_backend_ops test_ops = {.name = "test", .alloc = tb_alloc, .free = tb_free};

/* The plan used by the arena tests: a few odd sizes so that alignment matters. */
static void take_plan(struct r1_arena *a, struct r1_tensor t[4], void **raw)
{
    const int64_t s0[] = {3, 5}, s1[] = {7}, s2[] = {2, 3, 4, 5};
    t[0] = r1_arena_take(a, R1_F32, 2, s0);
    t[1] = r1_arena_take(a, R1_BF16, 1, s1);
    *raw = r1_arena_take_bytes(a, 13);
    t[2] = r1_arena_take(a, R1_I32, 0, NULL);
    t[3] = r1_arena_take(a, R1_F16, 4, s2);
}

static void test_arena_plan_commit(void **state)
{
    (void)state;
    struct test_be tb = {0};
    struct r1_backend be = {.ops = &test_ops, .ctx = &tb};
    struct r1_arena a = {0};
    struct r1_tensor t[4];
    void *raw;

    take_plan(&a, t, &raw);
    for (int i = 0; i < 4; i++)
        assert_null(t[i].data);
    assert_null(raw);
    /* 60 -> 64 + 14 -> 128 + 13 -> 192 + 4 -> 256 + 240 */
    assert_int_equal(a.used, 496);
    assert_int_equal(t[0].ndim, 2);
    assert_int_equal(t[0].shape[1], 5);
    assert_int_equal(t[2].ndim, 0);

    size_t planned = a.used;
    assert_int_equal(r1_arena_commit(&a, &be), R1_OK);
    assert_int_equal(tb.allocs, 1);
    assert_true(a.cap >= planned);
    assert_int_equal(a.cap % R1_ARENA_ALIGN, 0);
    assert_int_equal(a.used, 0);
    assert_ptr_equal(a.be, &be);

    take_plan(&a, t, &raw);
    assert_int_equal(a.used, planned);
    for (int i = 0; i < 4; i++) {
        assert_non_null(t[i].data);
        assert_int_equal((uintptr_t)t[i].data % R1_ARENA_ALIGN, 0);
        /* zeroed memory */
        const unsigned char *p = t[i].data;
        for (size_t k = 0; k < r1_tensor_nbytes(&t[i]); k++)
            assert_int_equal(p[k], 0);
    }
    assert_non_null(raw);
    assert_int_equal((uintptr_t)raw % R1_ARENA_ALIGN, 0);
    /* views are in take order and do not overlap */
    char *prev_end = (char *)t[0].data + r1_tensor_nbytes(&t[0]);
    assert_true((char *)t[1].data >= prev_end);
    assert_true((char *)raw >= (char *)t[1].data + r1_tensor_nbytes(&t[1]));
    assert_true((char *)t[2].data >= (char *)raw + 13);
    assert_true((char *)t[3].data >= (char *)t[2].data + 4);
    assert_true((char *)t[3].data + r1_tensor_nbytes(&t[3]) <= a.base + a.cap);
    memset(t[3].data, 0xab, r1_tensor_nbytes(&t[3])); /* writable to the last byte */

    /* past the plan: NULL and used unchanged */
    size_t used = a.used;
    const int64_t big[] = {1000};
    struct r1_tensor over = r1_arena_take(&a, R1_F32, 1, big);
    assert_null(over.data);
    assert_null(r1_arena_take_bytes(&a, a.cap));
    assert_int_equal(a.used, used);

    /* a second commit is a sequencing error */
    assert_int_equal(r1_arena_commit(&a, &be), R1_ESTATE);
    assert_int_equal(tb.allocs, 1);

    r1_arena_release(&a);
    assert_int_equal(tb.frees, 1);
    assert_null(a.base);
    assert_int_equal(a.used, 0);
    assert_int_equal(a.cap, 0);
    r1_arena_release(&a); /* idempotent */
    assert_int_equal(tb.frees, 1);
}

static void test_arena_edge_cases(void **state)
{
    (void)state;
    struct test_be tb = {0};
    struct r1_backend be = {.ops = &test_ops, .ctx = &tb};

    /* an empty plan still commits to a real (small) block */
    struct r1_arena e = {0};
    assert_int_equal(r1_arena_commit(&e, &be), R1_OK);
    assert_non_null(e.base);
    void *p = r1_arena_take_bytes(&e, 0);
    assert_non_null(p);
    r1_arena_release(&e);

    /* allocation failure */
    struct r1_arena f = {0};
    assert_null(r1_arena_take_bytes(&f, 1000));
    tb.fail = 1;
    r1_err_clear();
    assert_int_equal(r1_arena_commit(&f, &be), R1_ENOMEM);
    assert_non_null(strstr(r1_err_last(), "1024 bytes"));
    assert_null(f.base);
    tb.fail = 0;

    /* no backend */
    assert_int_equal(r1_arena_commit(&f, NULL), R1_EINVAL);

    /* bad views are programming errors: data NULL, nothing reserved */
    struct r1_arena g = {0};
    const int64_t neg[] = {-1};
    struct r1_tensor t = r1_arena_take(&g, R1_F32, 1, neg);
    assert_null(t.data);
    assert_int_equal(g.used, 0);
    t = r1_arena_take(&g, R1_F32, 5, neg);
    assert_null(t.data);
    assert_int_equal(g.used, 0);
    const int64_t huge[] = {INT64_MAX, INT64_MAX};
    t = r1_arena_take(&g, R1_F32, 2, huge);
    assert_null(t.data);
    assert_int_equal(g.used, 0);

    /* bytes of 1 then a view: the view starts at the next 64-byte boundary */
    assert_null(r1_arena_take_bytes(&g, 1));
    const int64_t s[] = {1};
    r1_arena_take(&g, R1_F32, 1, s);
    assert_int_equal(g.used, 68);
    assert_int_equal(r1_arena_commit(&g, &be), R1_OK);
    assert_int_equal(tb.last_bytes, 128);
    char *b = r1_arena_take_bytes(&g, 1);
    t = r1_arena_take(&g, R1_F32, 1, s);
    assert_ptr_equal(t.data, b + 64);
    r1_arena_release(&g);
    assert_int_equal(tb.allocs, tb.frees);
}

/* --- f16 ------------------------------------------------------------------------------ */

static void test_f16_all_patterns(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 0x10000u; i++) {
        uint16_t h = (uint16_t)i;
        float f = r1_f16_to_f32(h);
        uint16_t back = r1_f32_to_f16(f);
        if (f16_is_nan(h)) {
            assert_true(isnan(f));
            assert_int_equal(!!signbit(f), !!(h & 0x8000u));
            assert_true(f16_is_nan(back));
            assert_int_equal(back & 0x8000u, h & 0x8000u);
            assert_true(back & 0x200u);                  /* quiet */
            assert_int_equal(back | 0x200u, h | 0x200u); /* payload kept */
            continue;
        }
        assert_true((double)f == f16_ref_value(h));
        assert_int_equal(back, h);
    }
}

/* Every midpoint between adjacent f16 values is a tie (exact in f32): it must go
 * to the even neighbour, and one f32 ulp either side to the nearer one. */
static void test_f16_rounding_ties(void **state)
{
    (void)state;
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
        for (uint32_t h = 0; h < 0x7bffu; h++) {
            uint16_t lo = (uint16_t)(sign | h), hi = (uint16_t)(sign | (h + 1));
            double mid_d = (f16_ref_value(lo) + f16_ref_value(hi)) / 2;
            float mid = (float)mid_d;
            assert_true((double)mid == mid_d);
            uint16_t even = (h & 1u) ? hi : lo;
            assert_int_equal(r1_f32_to_f16(mid), even);
            float toward_lo = nextafterf(mid, sign ? 1.0f : -1.0f);
            float toward_hi = nextafterf(mid, sign ? -INFINITY : INFINITY);
            assert_int_equal(r1_f32_to_f16(toward_lo), lo);
            assert_int_equal(r1_f32_to_f16(toward_hi), hi);
        }
    }
    /* the smallest subnormal tie: 2^-25 goes to zero, just above it to 2^-24 */
    assert_int_equal(r1_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);
    assert_int_equal(r1_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    assert_int_equal(r1_f32_to_f16(-ldexpf(1.0f, -26)), 0x8000);
    assert_int_equal(r1_f32_to_f16(ldexpf(1.0f, -140)), 0x0000);
    assert_int_equal(r1_f32_to_f16(float_of(1)), 0x0000); /* f32 subnormal */
    /* 1.5 * 2^-24 ties to 2^-23 (even), 2.5 * 2^-24 ties to 2 * 2^-24 */
    assert_int_equal(r1_f32_to_f16(1.5f * ldexpf(1.0f, -24)), 0x0002);
    assert_int_equal(r1_f32_to_f16(2.5f * ldexpf(1.0f, -24)), 0x0002);
    /* largest subnormal rounding up into the smallest normal */
    assert_int_equal(r1_f32_to_f16(nextafterf(ldexpf(1.0f, -14), 0.0f)), 0x0400);
}

static void test_f16_overflow_specials(void **state)
{
    (void)state;
    assert_int_equal(r1_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(r1_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(r1_f32_to_f16(65520.0f), 0x7c00); /* tie: 0x7bff is odd -> inf */
    assert_int_equal(r1_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(r1_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(r1_f32_to_f16(-3.4e38f), 0xfc00);
    assert_int_equal(r1_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(r1_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(r1_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(r1_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(r1_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(r1_f32_to_f16(-2.0f), 0xc000);
    assert_true(f16_is_nan(r1_f32_to_f16(NAN)));
    assert_true(f16_is_nan(r1_f32_to_f16(float_of(0x7f800001u)))); /* sNaN, low payload */
    assert_true(f16_is_nan(r1_f32_to_f16(float_of(0xff800001u))));
    assert_true(r1_f32_to_f16(float_of(0xff800001u)) & 0x8000u);
    assert_true(isinf(r1_f16_to_f32(0x7c00)) && r1_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(r1_f16_to_f32(0xfc00)) && r1_f16_to_f32(0xfc00) < 0);
    assert_true(r1_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(r1_f16_to_f32(0x03ff) == 1023 * ldexpf(1.0f, -24));
    assert_true(signbit(r1_f16_to_f32(0x8000)));
}

/* Pseudo-random f32 over the whole f16 range: the result must be a nearest f16
 * value (ties to even), found by comparing with both neighbours in double. */
static void test_f16_nearest_random(void **state)
{
    (void)state;
    for (int it = 0; it < 2000000; it++) {
        /* exponents 2^-30 .. 2^16, random mantissa and sign */
        uint32_t e = 97 + rng_u32() % 47;
        uint32_t u = (rng_u32() & 0x80000000u) | e << 23 | (rng_u32() & 0x7fffffu);
        float x = float_of(u);
        uint16_t r = r1_f32_to_f16(x);
        uint16_t mag = r & 0x7fffu;
        assert_int_equal(r & 0x8000u, (u >> 16) & 0x8000u);
        double ax = fabs((double)x);
        if (mag == 0x7c00u) {
            assert_true(ax >= 65520.0);
            continue;
        }
        double d = fabs(f16_ref_value(mag) - ax);
        if (mag > 0) {
            double dl = fabs(f16_ref_value((uint16_t)(mag - 1)) - ax);
            assert_true(d < dl || (d == dl && !(mag & 1u)));
        }
        double du =
            mag + 1u < 0x7c00u ? fabs(f16_ref_value((uint16_t)(mag + 1)) - ax) : fabs(65536.0 - ax);
        assert_true(d < du || (d == du && !(mag & 1u)));
    }
}

/* --- bf16 -------------------------------------------------------------------------------- */

static void test_bf16_all_patterns(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 0x10000u; i++) {
        uint16_t h = (uint16_t)i;
        float f = r1_bf16_to_f32(h);
        assert_int_equal(bits_of(f), (uint32_t)h << 16);
        uint16_t back = r1_f32_to_bf16(f);
        if (bf16_is_nan(h)) {
            assert_true(isnan(f));
            assert_true(bf16_is_nan(back));
            assert_int_equal(back & 0x8000u, h & 0x8000u);
            continue;
        }
        assert_int_equal(back, h);
    }
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    /* ties to even */
    assert_int_equal(r1_f32_to_bf16(float_of(0x3f808000u)), 0x3f80); /* lower is even */
    assert_int_equal(r1_f32_to_bf16(float_of(0x3f818000u)), 0x3f82); /* lower is odd */
    assert_int_equal(r1_f32_to_bf16(float_of(0xbf818000u)), 0xbf82);
    assert_int_equal(r1_f32_to_bf16(float_of(0x3f808001u)), 0x3f81); /* above the tie */
    assert_int_equal(r1_f32_to_bf16(float_of(0x3f807fffu)), 0x3f80); /* below the tie */
    assert_int_equal(r1_f32_to_bf16(float_of(0x3f80ffffu)), 0x3f81);
    assert_int_equal(r1_f32_to_bf16(float_of(0x3fffffffu)), 0x4000); /* carry into exponent */
    /* subnormals round the same way */
    assert_int_equal(r1_f32_to_bf16(float_of(0x00008000u)), 0x0000);
    assert_int_equal(r1_f32_to_bf16(float_of(0x00018000u)), 0x0002);
    /* overflow: FLT_MAX rounds up to inf, the largest bf16 stays */
    assert_int_equal(r1_f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80);
    assert_int_equal(r1_f32_to_bf16(float_of(0xff7fffffu)), 0xff80);
    assert_int_equal(r1_f32_to_bf16(float_of(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(r1_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(r1_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(r1_f32_to_bf16(-0.0f), 0x8000);
    /* NaN stays NaN, even the payloads that plain rounding would turn into inf */
    assert_true(bf16_is_nan(r1_f32_to_bf16(NAN)));
    assert_true(bf16_is_nan(r1_f32_to_bf16(float_of(0x7f800001u))));
    assert_true(bf16_is_nan(r1_f32_to_bf16(float_of(0x7fffffffu))));
    assert_true(bf16_is_nan(r1_f32_to_bf16(float_of(0xff800001u))));
    assert_true(r1_f32_to_bf16(float_of(0xff800001u)) & 0x8000u);

    /* random: the nearest bf16, ties to even */
    for (int it = 0; it < 2000000; it++) {
        uint32_t u = rng_u32();
        if ((u & 0x7f800000u) == 0x7f800000u)
            continue;
        uint16_t r = r1_f32_to_bf16(float_of(u));
        uint32_t lo = u & 0xffff0000u, rem = u & 0xffffu;
        uint16_t expect = (uint16_t)(lo >> 16);
        if (rem > 0x8000u || (rem == 0x8000u && (expect & 1u)))
            expect++;
        assert_int_equal(r, expect);
    }
}

/* --- bulk ----------------------------------------------------------------------------------- */

static void test_bulk_convert(void **state)
{
    (void)state;
    enum { N = 1000 };
    float src[N], back[N];
    uint16_t h[N];
    int32_t iv[N];
    for (int i = 0; i < N; i++)
        src[i] = (float)(i - N / 2) * 0.37f + ldexpf(1.0f, -20) * (float)i;
    src[0] = NAN;
    src[1] = INFINITY;
    src[2] = 1e6f;

    r1_convert_from_f32(h, R1_F16, src, N);
    r1_convert_to_f32(back, h, R1_F16, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h[i], r1_f32_to_f16(src[i]));
        if (i)
            assert_true(back[i] == r1_f16_to_f32(h[i]));
    }
    assert_true(isnan(back[0]));

    r1_convert_from_f32(h, R1_BF16, src, N);
    r1_convert_to_f32(back, h, R1_BF16, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h[i], r1_f32_to_bf16(src[i]));
        assert_int_equal(bits_of(back[i]), (uint32_t)h[i] << 16);
    }

    r1_convert_from_f32(back, R1_F32, src, N);
    assert_memory_equal(back, src, sizeof(src));
    r1_convert_to_f32(back, back, R1_F32, N); /* in place is a no-op */
    assert_memory_equal(back, src, sizeof(src));

    /* I32 by value: round to nearest even, saturate, NaN -> 0 */
    const float fi[] = {0.5f, 1.5f, -2.5f, 3.7f, 3e9f, -3e9f, NAN, -7.0f};
    const int32_t want[] = {0, 2, -2, 4, INT32_MAX, INT32_MIN, 0, -7};
    r1_convert_from_f32(iv, R1_I32, fi, 8);
    assert_memory_equal(iv, want, sizeof(want));
    r1_convert_to_f32(back, iv, R1_I32, 8);
    assert_true(back[1] == 2.0f && back[7] == -7.0f && back[4] == 2147483648.0f);

    /* n = 0 touches nothing */
    r1_convert_to_f32(NULL, NULL, R1_BF16, 0);
    r1_convert_from_f32(NULL, R1_F16, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_info),
        cmocka_unit_test(test_numel_nbytes),
        cmocka_unit_test(test_arena_plan_commit),
        cmocka_unit_test(test_arena_edge_cases),
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_f16_rounding_ties),
        cmocka_unit_test(test_f16_overflow_specials),
        cmocka_unit_test(test_f16_nearest_random),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_bulk_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
