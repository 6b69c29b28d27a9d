/* test-cuda.c - parity of the CUDA backend (kernels/cuda) with the CPU reference.
 *
 * Every op of struct r1_backend_ops runs on identical random host inputs on both
 * backends (memory only through ops->alloc/upload/download, one code path for both)
 * and each output is compared by normalised MSE
 *     nmse = Σ (gpu − cpu)² / max(Σ cpu², 1e-30)
 * against the threshold of its op in tols[] below, which records the reason.
 * Non-finite reference values (lse = −inf on padding) must be matched exactly; exact
 * ops (copies, bf16 rounding, one IEEE add or multiply) must match bit for bit.
 * Shapes include M = 1 rows, odd sizes that are no multiple of 32 and T = 1.
 *
 * Gradient rule (core/backend.h): parameter gradients (dw, dbias, dwte, rmsnorm dw)
 * are pre-filled with the same random values on both sides, so a backend that writes
 * instead of adding fails; activation gradients and forward outputs are pre-filled
 * with NaN, so one that leaves an element unwritten (or adds into it) fails.  Backward
 * ops get the CPU's forward results (out, lse, rstd, entropy) on both sides, so each
 * op is compared on its own inputs.
 *
 * Also: bitwise determinism of GPU ops run twice; whole-model parity (forward logp and
 * entropy, the gradients of one cross-entropy step per tensor, the loss curve of 5
 * AdamW steps, KV-cache decode logits in f32 and bf16, greedy generation tokens, and the
 * real SmolLM2-135M's greedy tokens where its GGUF has been downloaded).
 *
 * Built twice: test-cuda against the real backend, and test-cuda-emu against the CUDA
 * emulator (tests/cuda-emu: the same kernels compiled for the CPU), which runs in CI.
 * Without a CUDA backend (not compiled in, or no device) the test prints
 * "test-cuda: skipped: <reason>" to stderr and exits 77 (exits 1 with R1_REQUIRE_GPU=1, which
 * GPU runs set so that a machine where the backend cannot start is not a silent skip).
 * R1_TEST_CUDA_AS_CPU=1 puts a second CPU backend (1 thread) where CUDA would be: a
 * self-check of this harness (every nmse is ~0 and the test passes).
 * R1_TEST_VERBOSE=1 prints every comparison and, at the end, the worst nmse of each op.
 * Usage: test-cuda [glob] runs the matching tests.
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
#include <unistd.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/modelfile.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/sample.h"
#include "core/tensor.h"
#include "core/tokenizer.h"

/* ---- thresholds -------------------------------------------------------------------- */

/* f32 rounding is 2^-24 ≈ 6e-8 relative, so an element computed by a different but
 * sound f32 algorithm differs by ~1e-7 relative (nmse ~1e-14), a long dot product in
 * another order by ~sqrt(K)·6e-8 (nmse ~1e-12 at K = 1000).  The thresholds leave
 * ~100x room above that and stay far below a real bug (a wrong index or a missing
 * term gives nmse ≥ 1e-4) and below TF32 (10-bit mantissa, nmse ~1e-7), which the f32
 * contract does not allow.  Checked once against an independent implementation: every
 * op redone in double precision (naive loops, another summation order) stays 100x to
 * 10000x under its threshold here (worst: rope 2.4e-15, attention_backward 1.9e-13). */
enum tol_id {
    TOL_MATMUL,
    TOL_MATMUL_BWD,
    TOL_MATMUL_BF16,
    TOL_MATMUL16,
    TOL_EMBED_BWD,
    TOL_RMSNORM,
    TOL_RMSNORM_BWD,
    TOL_ROPE,
    TOL_ATT,
    TOL_ATT_BWD,
    TOL_ATT_CACHED,
    TOL_ATT16,
    TOL_ATT16_TILE,
    TOL_ATT16_BWD,
    TOL_SWIGLU,
    TOL_SUMSQ,
    TOL_LOGPROBS,
    TOL_LOGPROBS_BWD,
    TOL_PG_LOSS,
    TOL_ADAMW,
    TOL_MODEL_FWD,
    TOL_MODEL_GRAD,
    TOL_MODEL_DECODE,
    TOL_MODEL16_FWD,
    TOL_MODEL16_GRAD,
    TOL_COUNT
};

struct tol {
    const char *op;
    double nmse;
    const char *why;
};

static const struct tol tols[TOL_COUNT] = {
    [TOL_MATMUL] = {"matmul_forward", 1e-10,
                    "f32 dots of K <= 1000 summed in another order (tiles, FMA): ~1e-12"},
    [TOL_MATMUL_BWD] = {"matmul_backward", 1e-10,
                        "din/dw are f32 GEMMs like forward; dbias sums M rows in another order"},
    [TOL_MATMUL_BF16] = {"matmul_forward_bf16", 1e-10,
                         "same bf16 weights and bf16-rounded inputs on both sides, only the "
                         "f32 sum order differs (tensor-core MMAs vs AVX2 lanes)"},
    [TOL_MATMUL16] = {"matmul16_forward/backward", 1e-10,
                      "bf16 operands (exact in f32) on both sides; only the f32 sum order "
                      "differs (tensor-core tiles vs SGEMM)"},
    [TOL_EMBED_BWD] = {"embedding_backward", 1e-12,
                       "each dwte element adds a few dout values, the order may differ"},
    [TOL_RMSNORM] = {"rmsnorm_forward", 1e-11,
                     "mean of C squares in another order, then rsqrt (CUDA's is 2 ulp)"},
    [TOL_RMSNORM_BWD] = {"rmsnorm_backward", 1e-10,
                         "a C-term dot per row for din, an N-term sum per column for dw"},
    [TOL_ROPE] = {"rope", 1e-12, "two products and a sum per element; FMA contraction only"},
    [TOL_ATT] = {"attention_forward", 1e-10,
                 "scores, online vs two-pass softmax and P·V in other orders, expf ulps"},
    [TOL_ATT_BWD] = {"attention_backward", 1e-9,
                     "recomputed softmax, then sums over T queries and the GQA group"},
    [TOL_ATT_CACHED] = {"attention_cached", 1e-10, "as attention_forward, over the cache"},
    [TOL_ATT16] = {"attention16_forward", 1e-5,
                   "bf16 probabilities rounded under another running maximum (the CPU's is "
                   "the row's final one): 3.1e-7 under the emulator; unrounded would be ~1e-6"},
    [TOL_ATT16_TILE] = {"attention16_forward, T <= 16", 1e-8,
                        "one key tile: both sides round the same exp(x - max) but where a "
                        "score ulp flips a rounding (a flip ~3e-10 here); unrounded ~1e-6"},
    [TOL_ATT16_BWD] = {"attention16_backward", 1e-8,
                       "bf16 P and dS from the same lse: a score ulp flips a rounding (2^-8 "
                       "relative) in one of T terms; 2.6e-15 under the emulator (no flips)"},
    [TOL_SWIGLU] = {"swiglu", 1e-11, "expf differs by a few ulp (CUDA expf 2 ulp, __expf more)"},
    [TOL_SUMSQ] = {"sumsq", 1e-14,
                   "double sums in another order (~1e-13 rel); squares may be formed in f32"},
    [TOL_LOGPROBS] = {"logprobs_forward", 1e-10,
                      "a V-term exp sum (V up to 49152) in another order, ulp of lse ~ 1e-5"},
    [TOL_LOGPROBS_BWD] = {"logprobs_backward", 1e-10,
                          "p = exp(z − lse) per element, expf ulps, entropy term products"},
    [TOL_PG_LOSS] = {"pg_loss", 1e-14,
                     "double arithmetic, exp within an ulp; sums in another order"},
    [TOL_ADAMW] = {"adamw_update", 1e-10,
                   "an ulp or two per element of m, v (FMA, pow); n = 1 has no averaging"},
    [TOL_MODEL_FWD] = {"model forward", 1e-9,
                       "3 layers of the ops above chained, rounding grows ~10x per stage"},
    [TOL_MODEL_GRAD] = {"model gradients", 1e-7,
                        "per tensor, the whole backward chain; denominators floored at 1e-6 "
                        "of the arena's Σg² (k_proj.bias has analytic gradient 0)"},
    [TOL_MODEL_DECODE] = {"model decode", 1e-9, "as model forward, through the KV cache"},
    /* In bf16 a ~1e-7 difference before a rounding flips it by a bf16 ulp (2^-8), and the
     * flips compound: two backends' bf16 runs differ by about as much as bf16 differs from
     * f32.  The whole-model bf16 checks therefore catch gross errors only (a wrong operand
     * or term is O(1)); test_matmul16 checks the bf16 GEMMs themselves at 1e-10. */
    [TOL_MODEL16_FWD] = {"model forward, precision bf16", 1e-5,
                         "rounding flips: 1.4e-7 under the CUDA emulator (cuBLAS in double); "
                         "bf16 against f32 is 1.7e-6"},
    [TOL_MODEL16_GRAD] = {"model gradients, precision bf16", 1e-3,
                          "rounding flips through the backward, floored as in f32: 6.5e-5 "
                          "under the emulator (k_proj.bias); bf16 against f32 is 3.8e-4"},
};

/* Whole-model training: per-step relative difference of the cross-entropy loss and of
 * the gradient norm over 5 AdamW steps.  Adam divides by sqrt(v), so an element whose
 * gradient is pure rounding noise moves by ±lr on either side; such elements (biases of
 * k_proj) do not change the loss, and the rest moves by relative ~1e-6. */
#define TRAIN_LOSS_RTOL 1e-4
/* Greedy generation needs the reference's top-2 logit gap to stay above what the two
 * backends may differ by (decode nmse 1e-9 → ~1e-4 on logits of size ~3). */
#define GREEDY_MIN_MARGIN 1e-3

/* ---- backends and paired buffers --------------------------------------------------- */

enum { REF = 0, DUT = 1 };        /* CPU reference, device under test */
static struct r1_backend *bes[2]; /* [REF] CPU (2 threads), [DUT] CUDA */
#define OPS(s) (bes[s]->ops)
#define CTX(s) (bes[s]->ctx)
/* skips the calling test when the backend under test lacks what (an OPTIONAL op) */
#define SKIP_WITHOUT(have, what)                                                                  \
    do {                                                                                           \
        if (!(have)) {                                                                             \
            print_message("backend %s has no %s (optional): skipped\n", OPS(DUT)->name, what);    \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static const char *side_name(int s)
{
    return s == REF ? "reference (cpu)" : "backend under test";
}

static double worst_ratio[TOL_COUNT], worst_nmse[TOL_COUNT];
static char worst_where[TOL_COUNT][200];
static int verbose;

/* one buffer on each backend, same size; p[REF], p[DUT] are backend memory */
struct pbuf {
    void *p[2];
    size_t bytes;
};

static struct pbuf pb_alloc(size_t bytes)
{
    struct pbuf b = {{NULL, NULL}, bytes};
    for (int s = 0; s < 2; s++) {
        b.p[s] = OPS(s)->alloc(CTX(s), bytes ? bytes : 1);
        if (!b.p[s])
            fail_msg("%s: alloc of %zu bytes failed", side_name(s), bytes);
    }
    return b;
}

static void pb_upload(struct pbuf *b, const void *host)
{
    for (int s = 0; s < 2; s++)
        OPS(s)->upload(CTX(s), b->p[s], host, b->bytes);
}

static void pb_download(const struct pbuf *b, int s, void *host)
{
    OPS(s)->download(CTX(s), host, b->p[s], b->bytes);
}

static struct pbuf pb_host(const void *host, size_t bytes)
{
    struct pbuf b = pb_alloc(bytes);
    pb_upload(&b, host);
    return b;
}

static void pb_free(struct pbuf *b)
{
    for (int s = 0; s < 2; s++)
        if (b->p[s])
            OPS(s)->free(CTX(s), b->p[s]);
    b->p[0] = b->p[1] = NULL;
}

/* copies the reference side's contents over the DUT side (backward inputs) */
static void pb_share_ref(struct pbuf *b)
{
    void *h = malloc(b->bytes ? b->bytes : 1);
    pb_download(b, REF, h);
    OPS(DUT)->upload(CTX(DUT), b->p[DUT], h, b->bytes);
    free(h);
}

static float *fp(const struct pbuf *b, int s)
{
    return b->p[s];
}
static int32_t *ip(const struct pbuf *b, int s)
{
    return b->p[s];
}
static uint16_t *hp(const struct pbuf *b, int s)
{
    return b->p[s];
}

/* ---- host data ---------------------------------------------------------------------- */

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

/* uniform in [lo, hi), multiples of (hi − lo)·2^-24: never subnormal */
static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f;
}

static float *host_rand(int64_t n, float lo, float hi)
{
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = rng_uniform(lo, hi);
    return h;
}

static struct pbuf pb_rand(int64_t n, float lo, float hi)
{
    float *h = host_rand(n, lo, hi);
    struct pbuf b = pb_host(h, (size_t)n * sizeof(float));
    free(h);
    return b;
}

static void pb_set_nan(struct pbuf *b)
{
    int64_t n = (int64_t)(b->bytes / sizeof(float));
    float *h = malloc(b->bytes ? b->bytes : 1);
    for (int64_t i = 0; i < n; i++)
        h[i] = NAN;
    pb_upload(b, h);
    free(h);
}

/* n floats of NaN on both sides: an output that must be overwritten */
static struct pbuf pb_nan(int64_t n)
{
    struct pbuf b = pb_alloc((size_t)n * sizeof(float));
    pb_set_nan(&b);
    return b;
}

static struct pbuf pb_i32(const int32_t *h, int64_t n)
{
    return pb_host(h, (size_t)n * sizeof(int32_t));
}

/* ---- comparisons ------------------------------------------------------------------- */

static void record(enum tol_id t, double nmse, const char *what)
{
    double ratio = tols[t].nmse > 0 ? nmse / tols[t].nmse : (nmse > 0 ? INFINITY : 0);
    if (ratio >= worst_ratio[t]) {
        worst_ratio[t] = ratio;
        worst_nmse[t] = nmse;
        snprintf(worst_where[t], sizeof(worst_where[t]), "%s", what);
    }
    if (verbose)
        print_message("  %-64s nmse %.3g (max %.0e)\n", what, nmse, tols[t].nmse);
}

/* gpu vs cpu (n) on the host */
static void check_host(const float *gpu, const float *cpu, int64_t n, enum tol_id t,
                       const char *what)
{
    double num = 0, den = 0, worst = -1;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = gpu[i], b = cpu[i];
        if (!isfinite(b)) {
            if (!(isnan(b) ? isnan(a) : a == b))
                fail_msg("%s[%lld]: gpu %g where the reference has %g", what, (long long)i, a, b);
            continue;
        }
        if (!isfinite(a))
            fail_msg("%s[%lld]: gpu %g where the reference has %.9g", what, (long long)i, a, b);
        double d = (a - b) * (a - b);
        num += d;
        den += b * b;
        if (d > worst)
            worst = d, wi = i;
    }
    double nmse = num / fmax(den, 1e-30);
    record(t, nmse, what);
    if (!(nmse <= tols[t].nmse))
        fail_msg("%s: nmse %.3g > %.0e (%s: %s); worst [%lld]: gpu %.9g, cpu %.9g", what, nmse,
                 tols[t].nmse, tols[t].op, tols[t].why, (long long)wi, (double)gpu[wi],
                 (double)cpu[wi]);
}

static void check_f32(const struct pbuf *b, int64_t n, enum tol_id t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* the n floats of b, DUT against REF */
static void check_f32(const struct pbuf *b, int64_t n, enum tol_id t, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    float *hc = malloc(b->bytes ? b->bytes : 1), *hg = malloc(b->bytes ? b->bytes : 1);
    pb_download(b, REF, hc);
    pb_download(b, DUT, hg);
    check_host(hg, hc, n, t, what);
    free(hc), free(hg);
}

static void check_bits(const struct pbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* exact ops: every byte of b equal on both sides */
static void check_bits(const struct pbuf *b, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    unsigned char *hc = malloc(b->bytes ? b->bytes : 1), *hg = malloc(b->bytes ? b->bytes : 1);
    pb_download(b, REF, hc);
    pb_download(b, DUT, hg);
    for (size_t i = 0; i < b->bytes; i++)
        if (hc[i] != hg[i])
            fail_msg("%s: byte %zu differs (gpu 0x%02x, cpu 0x%02x); the op is exact", what, i,
                     hg[i], hc[i]);
    if (verbose)
        print_message("  %-64s bitwise equal\n", what);
    free(hc), free(hg);
}

/* an op's bf16 output (n elements of img, both sides) is, bit for bit, the bf16 rounding
 * of its f32 output f (the same side's), as convert_bf16 would make it; with again (not
 * NULL), a second call's image on each side, the same bits (out NULL there) */
static void check_image16(const struct pbuf *img, const struct pbuf *f, const struct pbuf *again,
                          int64_t n, const char *what)
{
    uint16_t *h16 = malloc((size_t)(n > 0 ? n : 1) * 2), *h2 = malloc((size_t)(n > 0 ? n : 1) * 2);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int s = 0; s < 2; s++) {
        OPS(s)->download(CTX(s), h16, img->p[s], (size_t)n * 2);
        OPS(s)->download(CTX(s), h, f->p[s], (size_t)n * sizeof(float));
        if (again)
            OPS(s)->download(CTX(s), h2, again->p[s], (size_t)n * 2);
        for (int64_t i = 0; i < n; i++) {
            if (h16[i] != r1_f32_to_bf16(h[i]))
                fail_msg("%s (%s): bf16 image[%lld] = 0x%04x, bf16 of the f32 result %g is "
                         "0x%04x", what, side_name(s), (long long)i, h16[i], (double)h[i],
                         r1_f32_to_bf16(h[i]));
            if (again && h2[i] != h16[i])
                fail_msg("%s (%s): the image alone [%lld] = 0x%04x, with the f32 result 0x%04x",
                         what, side_name(s), (long long)i, h2[i], h16[i]);
        }
    }
    if (verbose)
        print_message("  %-64s bf16 image exact\n", what);
    free(h16), free(h2), free(h);
}

static struct pbuf pb_nan16(int64_t n)
{
    struct pbuf b = pb_alloc((size_t)n * 2);
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++)
        h[i] = 0x7fc1;
    pb_upload(&b, h);
    free(h);
    return b;
}

static void check_tiny(const struct pbuf *b, int64_t n, double bound, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* an output that is 0 analytically: |DUT| <= bound everywhere */
static void check_tiny(const struct pbuf *b, int64_t n, double bound, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    float *h = malloc(b->bytes ? b->bytes : 1);
    pb_download(b, DUT, h);
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(h[i]) <= bound))
            fail_msg("%s[%lld] = %g; it is 0 analytically (bound %g)", what, (long long)i,
                     (double)h[i], bound);
    if (verbose)
        print_message("  %-64s |x| <= %g\n", what, bound);
    free(h);
}

/* DUT-only: two device buffers hold the same bytes (determinism) */
static void check_same_run(const void *a, const void *b, size_t bytes, const char *what)
{
    unsigned char *ha = malloc(bytes ? bytes : 1), *hb = malloc(bytes ? bytes : 1);
    OPS(DUT)->download(CTX(DUT), ha, a, bytes);
    OPS(DUT)->download(CTX(DUT), hb, b, bytes);
    if (memcmp(ha, hb, bytes) != 0)
        fail_msg("%s: two runs on the same inputs differ (ops must be deterministic)", what);
    free(ha), free(hb);
}

/* ---- memory ------------------------------------------------------------------------ */

static void test_memory(void **state)
{
    (void)state;
    const struct r1_backend_ops *o = OPS(DUT);
    void *c = CTX(DUT);
    assert_non_null(o->name);
    enum { NB = 1003 };
    unsigned char host[NB], back[NB];
    unsigned char *p = o->alloc(c, NB), *q = o->alloc(c, NB);
    assert_non_null(p), assert_non_null(q);
    assert_true(((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0);
    o->download(c, back, p, NB);
    for (int i = 0; i < NB; i++)
        if (back[i] != 0)
            fail_msg("alloc: byte %d is 0x%02x, not zeroed", i, back[i]);
    for (int i = 0; i < NB; i++)
        host[i] = (unsigned char)(i * 7 + 3);
    o->upload(c, p, host, NB);
    o->copy(c, q, p, NB);
    if (o->sync)
        o->sync(c);
    o->download(c, back, q, NB);
    assert_memory_equal(host, back, NB);
    o->copy(c, q + 5, p, 17); /* unaligned sub-ranges */
    o->download(c, back, q, NB);
    assert_memory_equal(back + 5, host, 17);
    o->zero(c, q + 1, NB - 2);
    o->download(c, back, q, NB);
    assert_int_equal(back[0], host[0]);
    assert_int_equal(back[NB - 1], host[NB - 1]);
    for (int i = 1; i < NB - 1; i++)
        assert_int_equal(back[i], 0);
    o->free(c, p);
    o->free(c, q);
}

/* ---- linear ------------------------------------------------------------------------ */

/* {M, K, N}: M = 1 (decode), tiny, odd, above tile sizes, a wide LM-head-like N */
static const int mm_shapes[][3] = {{1, 64, 64},   {1, 13, 9},     {7, 13, 9},      {3, 5, 1},
                                   {37, 96, 200}, {33, 1000, 65}, {130, 576, 257}, {2, 576, 4099}};
#define N_MM_SHAPES ((int)(sizeof(mm_shapes) / sizeof(mm_shapes[0])))

static void test_matmul_forward(void **state)
{
    (void)state;
    rng_seed(101);
    for (int si = 0; si < N_MM_SHAPES; si++) {
        int M = mm_shapes[si][0], K = mm_shapes[si][1], N = mm_shapes[si][2];
        struct pbuf in = pb_rand((int64_t)M * K, -1, 1), w = pb_rand((int64_t)N * K, -1, 1);
        struct pbuf bias = pb_rand(N, -1, 1), out = pb_nan((int64_t)M * N);
        struct pbuf res = pb_rand((int64_t)M * N, -2, 2);
        for (int v = 0; v < 4; v++) { /* bias, residual */
            int wb = v & 1, wr = v >> 1;
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul_forward(CTX(s), fp(&out, s), fp(&in, s), fp(&w, s),
                                       wb ? fp(&bias, s) : NULL, wr ? fp(&res, s) : NULL, M, K,
                                       N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL,
                      "matmul_forward M=%d K=%d N=%d bias=%d res=%d", M, K, N, wb, wr);
        }
        pb_free(&in), pb_free(&w), pb_free(&bias), pb_free(&out), pb_free(&res);
    }
}

/* every combination of din / dw / dbias present or NULL; dw, dbias pre-filled (+=),
 * din NaN (=) or pre-filled (din_add, +=); dout, in and w are f32 or, with bf16 set, bf16
 * (matmul16_backward) */
static void matmul_backward_masks(int bf16, const struct pbuf *dout, const struct pbuf *in,
                                  const struct pbuf *w, int M, int K, int N, enum tol_id t)
{
    const char *op = bf16 ? "matmul16_backward" : "matmul_backward";
    struct pbuf din = pb_alloc((size_t)M * K * sizeof(float));
    struct pbuf dw = pb_alloc((size_t)N * K * sizeof(float));
    struct pbuf db = pb_alloc((size_t)N * sizeof(float));
    float *dw0 = host_rand((int64_t)N * K, -1, 1), *db0 = host_rand(N, -1, 1);
    float *din0 = host_rand((int64_t)M * K, -1, 1);
    for (int mask = 0; mask < 16; mask++) {
        int add = mask >> 3;
        if (add && !(mask & 1))
            continue;
        if (add)
            pb_upload(&din, din0);
        else
            pb_set_nan(&din);
        pb_upload(&dw, dw0);
        pb_upload(&db, db0);
        for (int s = 0; s < 2; s++) {
            float *pdin = mask & 1 ? fp(&din, s) : NULL, *pdw = mask & 2 ? fp(&dw, s) : NULL;
            float *pdb = mask & 4 ? fp(&db, s) : NULL;
            if (bf16)
                OPS(s)->matmul16_backward(CTX(s), pdin, add, pdw, pdb, hp(dout, s), hp(in, s),
                                          hp(w, s), M, K, N);
            else
                OPS(s)->matmul_backward(CTX(s), pdin, add, pdw, pdb, fp(dout, s), fp(in, s),
                                        fp(w, s), M, K, N);
        }
        if (mask & 1)
            check_f32(&din, (int64_t)M * K, t, "%s din (%s) M=%d K=%d N=%d mask=%d", op,
                      add ? "+=" : "=", M, K, N, mask);
        if (mask & 2)
            check_f32(&dw, (int64_t)N * K, t, "%s dw (+=) M=%d K=%d N=%d mask=%d", op, M, K, N,
                      mask);
        if (mask & 4)
            check_f32(&db, N, t, "%s dbias (+=) M=%d K=%d N=%d mask=%d", op, M, K, N, mask);
    }
    free(dw0), free(db0), free(din0);
    pb_free(&din), pb_free(&dw), pb_free(&db);
}

static void test_matmul_backward(void **state)
{
    (void)state;
    rng_seed(102);
    for (int si = 0; si < N_MM_SHAPES; si++) {
        int M = mm_shapes[si][0], K = mm_shapes[si][1], N = mm_shapes[si][2];
        struct pbuf in = pb_rand((int64_t)M * K, -1, 1), w = pb_rand((int64_t)N * K, -1, 1);
        struct pbuf dout = pb_rand((int64_t)M * N, -1, 1);
        matmul_backward_masks(0, &dout, &in, &w, M, K, N, TOL_MATMUL_BWD);
        pb_free(&in), pb_free(&w), pb_free(&dout);
    }
}

static int have_bf16(void)
{
    return OPS(REF)->matmul_forward_bf16 && OPS(DUT)->matmul_forward_bf16 &&
           OPS(REF)->convert_bf16 && OPS(DUT)->convert_bf16;
}

/* the bf16 ops are OPTIONAL: a backend without them skips these tests */
static void test_convert_bf16(void **state)
{
    (void)state;
    SKIP_WITHOUT(have_bf16(), "bf16 ops");
    rng_seed(103);
    const int64_t sizes[] = {1, 7, 70001};
    /* ties to even both ways, FLT_MAX → inf, ±inf, −0, NaNs, subnormal ties */
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x7f800000u,
                                0xff800000u, 0x80000000u, 0x7fc00001u, 0xffa00000u,
                                0x00008000u, 0x00018000u, 0x807fffffu, 0x3f7fffffu};
    const int n_special = (int)(sizeof(special) / sizeof(special[0]));
    for (int si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        float *x = host_rand(n, -3, 3);
        for (int i = 0; i < n_special && i * 7 < n; i++)
            memcpy(&x[i * 7], &special[i], sizeof(float));
        struct pbuf src = pb_host(x, (size_t)n * sizeof(float));
        struct pbuf dst = pb_alloc((size_t)n * sizeof(uint16_t));
        uint16_t *junk = malloc((size_t)n * sizeof(uint16_t)), *hc = malloc((size_t)n * 2),
                 *hg = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++)
            junk[i] = 0xdead;
        pb_upload(&dst, junk);
        for (int s = 0; s < 2; s++)
            OPS(s)->convert_bf16(CTX(s), hp(&dst, s), fp(&src, s), n);
        pb_download(&dst, REF, hc);
        pb_download(&dst, DUT, hg);
        /* rounding is exact: bit for bit, except that a NaN need only stay NaN (the
         * contract fixes no payload) */
        for (int64_t i = 0; i < n; i++) {
            if (isnan(x[i])) {
                if ((hg[i] & 0x7f80) != 0x7f80 || (hg[i] & 0x7f) == 0)
                    fail_msg("convert_bf16 n=%lld [%lld]: NaN became 0x%04x", (long long)n,
                             (long long)i, hg[i]);
                continue;
            }
            if (hg[i] != hc[i]) {
                uint32_t u;
                memcpy(&u, &x[i], sizeof(u));
                fail_msg("convert_bf16 n=%lld [%lld] (0x%08x): gpu 0x%04x, cpu 0x%04x",
                         (long long)n, (long long)i, u, hg[i], hc[i]);
            }
        }
        if (verbose)
            print_message("  convert_bf16 n=%-52lld bitwise equal\n", (long long)n);
        free(x), free(junk), free(hc), free(hg);
        pb_free(&src), pb_free(&dst);
    }
}

/* against the CPU bf16 op on the same bf16 weights and bf16-rounded inputs; and on the
 * DUT a row's output does not depend on M (bitwise), as the contract requires */
static void test_matmul_forward_bf16(void **state)
{
    (void)state;
    SKIP_WITHOUT(have_bf16(), "bf16 ops");
    rng_seed(104);
    /* M picks the CUDA tile (16, 32 or 64 rows; a row alone is always the 16-row one), K
     * % 8 its loads; K, M and N off the 16-wide steps */
    const int shapes[][3] = {{1, 13, 9},     {7, 13, 9},     {32, 77, 37},  {3, 5, 1},
                             {20, 40, 50},   {1, 576, 520},  {33, 250, 330}, {2, 576, 4099},
                             {100, 64, 70},  {70, 33, 45}};
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *wh = host_rand((int64_t)N * K, -1, 1);
        uint16_t *w16 = malloc((size_t)N * K * sizeof(uint16_t));
        for (int64_t i = 0; i < (int64_t)N * K; i++)
            w16[i] = r1_f32_to_bf16(wh[i]);
        struct pbuf w = pb_host(w16, (size_t)N * K * sizeof(uint16_t));
        struct pbuf in = pb_rand((int64_t)M * K, -1, 1), bias = pb_rand(N, -1, 1);
        struct pbuf out = pb_nan((int64_t)M * N), row = pb_nan(N);
        struct pbuf res = pb_rand((int64_t)M * N, -2, 2);
        for (int v = 3; v >= 0; v--) { /* bias, residual; the last without either */
            int wb = v & 1, wr = v >> 1;
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul_forward_bf16(CTX(s), fp(&out, s), fp(&in, s), hp(&w, s),
                                            wb ? fp(&bias, s) : NULL, wr ? fp(&res, s) : NULL,
                                            M, K, N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL_BF16,
                      "matmul_forward_bf16 M=%d K=%d N=%d bias=%d res=%d", M, K, N, wb, wr);
        }
        pb_free(&res);
        for (int m = 0; m < M; m += (M > 4 ? M / 3 : 1)) {
            OPS(DUT)->matmul_forward_bf16(CTX(DUT), fp(&row, DUT), fp(&in, DUT) + (size_t)m * K,
                                          hp(&w, DUT), NULL, NULL, 1, K, N);
            check_same_run(fp(&row, DUT), fp(&out, DUT) + (size_t)m * N, (size_t)N * sizeof(float),
                           "matmul_forward_bf16: one row alone vs in a batch");
        }
        free(wh), free(w16);
        pb_free(&w), pb_free(&in), pb_free(&bias), pb_free(&out), pb_free(&row);
    }
}

static int have_matmul16(void)
{
    return OPS(REF)->matmul16_forward && OPS(DUT)->matmul16_forward &&
           OPS(REF)->matmul16_backward && OPS(DUT)->matmul16_backward;
}

static struct pbuf pb_rand16(int64_t n)
{
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++)
        h[i] = r1_f32_to_bf16(rng_uniform(-1, 1));
    struct pbuf b = pb_host(h, (size_t)n * sizeof(uint16_t));
    free(h);
    return b;
}

/* both operands bf16 (training in bf16): forward with and without bias, and the backward
 * with every combination of din / dw / dbias, under the f32 ops' += / = rules */
static void test_matmul16(void **state)
{
    (void)state;
    SKIP_WITHOUT(have_matmul16(), "matmul16 ops");
    rng_seed(105);
    for (int si = 0; si < N_MM_SHAPES; si++) {
        int M = mm_shapes[si][0], K = mm_shapes[si][1], N = mm_shapes[si][2];
        struct pbuf in = pb_rand16((int64_t)M * K), w = pb_rand16((int64_t)N * K);
        struct pbuf dout = pb_rand16((int64_t)M * N), bias = pb_rand(N, -1, 1);
        struct pbuf out = pb_nan((int64_t)M * N), res = pb_rand((int64_t)M * N, -2, 2);
        for (int v = 0; v < 4; v++) { /* bias, residual */
            int wb = v & 1, wr = v >> 1;
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul16_forward(CTX(s), fp(&out, s), hp(&in, s), hp(&w, s),
                                         wb ? fp(&bias, s) : NULL, wr ? fp(&res, s) : NULL, M,
                                         K, N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL16,
                      "matmul16_forward M=%d K=%d N=%d bias=%d res=%d", M, K, N, wb, wr);
        }
        matmul_backward_masks(1, &dout, &in, &w, M, K, N, TOL_MATMUL16);
        pb_free(&in), pb_free(&w), pb_free(&dout), pb_free(&bias), pb_free(&out), pb_free(&res);
    }
}

/* The bias outside the GEMM: where cuBLASLt has no algorithm with the bias epilogue for a
 * shape, the CUDA backend fills the bias into the output and runs the GEMM with beta 1.
 * The emulator's cuBLASLt has none under R1_EMU_LT_NO_BIAS=1 (a real one ignores the
 * variable, and the fused path is checked again).  A fresh backend, so no plan made
 * before is reused; K = 0 (no products: the bias alone, or zeros) too. */
static void test_matmul_bias_unfused(void **state)
{
    (void)state;
    static const int shapes[][3] = {{1, 64, 64}, {7, 13, 9}, {130, 576, 257}, {5, 0, 33}};
    struct r1_backend *dut = bes[DUT];
    setenv("R1_EMU_LT_NO_BIAS", "1", 1);
    if (r1_backend_create(&bes[DUT], R1_BACKEND_CUDA, 0)) {
        bes[DUT] = dut;
        unsetenv("R1_EMU_LT_NO_BIAS");
        fail_msg("a second CUDA backend: %s", r1_err_last());
    }
    rng_seed(103);
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        struct pbuf in = pb_rand((int64_t)M * K, -1, 1), w = pb_rand((int64_t)N * K, -1, 1);
        struct pbuf in16 = pb_rand16((int64_t)M * K), w16 = pb_rand16((int64_t)N * K);
        struct pbuf bias = pb_rand(N, -1, 1), out = pb_nan((int64_t)M * N);
        struct pbuf res = pb_rand((int64_t)M * N, -2, 2);
        for (int v = 0; v < 4; v++) { /* bias, residual (added after the GEMM there) */
            int wb = v & 1, wr = v >> 1;
            const float *b[2] = {wb ? fp(&bias, REF) : NULL, wb ? fp(&bias, DUT) : NULL};
            const float *r[2] = {wr ? fp(&res, REF) : NULL, wr ? fp(&res, DUT) : NULL};
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul_forward(CTX(s), fp(&out, s), fp(&in, s), fp(&w, s), b[s], r[s], M,
                                       K, N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL,
                      "matmul_forward, bias unfused, M=%d K=%d N=%d bias=%d res=%d", M, K, N, wb,
                      wr);
            if (!have_matmul16())
                continue;
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul16_forward(CTX(s), fp(&out, s), hp(&in16, s), hp(&w16, s), b[s],
                                         r[s], M, K, N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL16,
                      "matmul16_forward, bias unfused, M=%d K=%d N=%d bias=%d res=%d", M, K, N,
                      wb, wr);
        }
        pb_free(&in), pb_free(&w), pb_free(&in16), pb_free(&w16), pb_free(&bias), pb_free(&out);
        pb_free(&res);
    }
    r1_backend_free(bes[DUT]);
    bes[DUT] = dut;
    unsetenv("R1_EMU_LT_NO_BIAS");
}

/* More shapes than the CUDA backend's GEMM plan cache holds (gemm.cu: 256 slots, emptied
 * at 192): every M from 1 to 400, twice (the second round meets plans made again after
 * the cache emptied), with and without bias, each against the CPU. */
static void test_matmul_plan_cache(void **state)
{
    (void)state;
    enum { MMAX = 400, K = 24, N = 40 };
    rng_seed(107);
    struct pbuf in = pb_rand((int64_t)MMAX * K, -1, 1), w = pb_rand((int64_t)N * K, -1, 1);
    struct pbuf bias = pb_rand(N, -1, 1), out = pb_nan((int64_t)MMAX * N);
    for (int round = 0; round < 2; round++)
        for (int M = 1; M <= MMAX; M++) {
            int wb = (M + round) % 2;
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++)
                OPS(s)->matmul_forward(CTX(s), fp(&out, s), fp(&in, s), fp(&w, s),
                                       wb ? fp(&bias, s) : NULL, NULL, M, K, N);
            check_f32(&out, (int64_t)M * N, TOL_MATMUL, "matmul_forward round %d M=%d bias=%d",
                      round, M, wb);
        }
    pb_free(&in), pb_free(&w), pb_free(&bias), pb_free(&out);
}

/* ---- embedding ----------------------------------------------------------------------- */

static void test_embedding(void **state)
{
    (void)state;
    rng_seed(105);
    /* {V, N, C, distinct tokens used}: few distinct ids force repeated scatter rows */
    const int shapes[][4] = {
        {5, 9, 70, 4}, {264, 1, 64, 264}, {1000, 200, 96, 50}, {4099, 37, 576, 4099}, {7, 3, 1, 2}};
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int V = shapes[si][0], N = shapes[si][1], C = shapes[si][2], used = shapes[si][3];
        int32_t *tok = malloc((size_t)N * sizeof(int32_t));
        for (int n = 0; n < N; n++)
            tok[n] = (int32_t)(rng_u32() % (uint32_t)used);
        tok[0] = V - 1 < used ? V - 1 : tok[0]; /* the last row of wte */
        struct pbuf t = pb_i32(tok, N), wte = pb_rand((int64_t)V * C, -1, 1);
        struct pbuf out = pb_nan((int64_t)N * C), dout = pb_rand((int64_t)N * C, -1, 1);
        struct pbuf dwte = pb_rand((int64_t)V * C, -1, 1); /* += */
        for (int s = 0; s < 2; s++) {
            OPS(s)->embedding_forward(CTX(s), fp(&out, s), ip(&t, s), fp(&wte, s), N, C);
            OPS(s)->embedding_backward(CTX(s), fp(&dwte, s), fp(&dout, s), ip(&t, s), N, C);
        }
        check_bits(&out, "embedding_forward V=%d N=%d C=%d", V, N, C);
        check_f32(&dwte, (int64_t)V * C, TOL_EMBED_BWD,
                  "embedding_backward dwte (+=) V=%d N=%d C=%d", V, N, C);
        free(tok);
        pb_free(&t), pb_free(&wte), pb_free(&out), pb_free(&dout), pb_free(&dwte);
    }
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

static void test_rmsnorm(void **state)
{
    (void)state;
    rng_seed(106);
    const struct {
        int N, C;
        float eps;
    } shapes[] = {
        {1, 64, 1e-5f}, {7, 75, 1e-5f}, {3, 3, 1e-5f}, {37, 576, 1e-6f}, {130, 1000, 1e-5f}};
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int N = shapes[si].N, C = shapes[si].C;
        struct pbuf in = pb_rand((int64_t)N * C, -2, 2), w = pb_rand(C, 0.5f, 1.5f);
        struct pbuf out = pb_nan((int64_t)N * C), rstd = pb_nan(N);
        struct pbuf o16 = pb_nan16((int64_t)N * C), o16b = pb_nan16((int64_t)N * C);
        for (int s = 0; s < 2; s++) {
            OPS(s)->rmsnorm_forward(CTX(s), fp(&out, s), hp(&o16, s), fp(&rstd, s), fp(&in, s),
                                    fp(&w, s), N, C, shapes[si].eps);
            OPS(s)->rmsnorm_forward(CTX(s), NULL, hp(&o16b, s), fp(&rstd, s), fp(&in, s),
                                    fp(&w, s), N, C, shapes[si].eps);
        }
        check_f32(&out, (int64_t)N * C, TOL_RMSNORM, "rmsnorm_forward out N=%d C=%d", N, C);
        check_f32(&rstd, N, TOL_RMSNORM, "rmsnorm_forward rstd N=%d C=%d", N, C);
        check_image16(&o16, &out, &o16b, (int64_t)N * C, "rmsnorm_forward out16");
        pb_free(&o16), pb_free(&o16b);
        pb_share_ref(&rstd);
        struct pbuf dout = pb_rand((int64_t)N * C, -1, 1), din = pb_nan((int64_t)N * C);
        struct pbuf dw = pb_rand(C, -1, 1); /* += */
        for (int s = 0; s < 2; s++)
            OPS(s)->rmsnorm_backward(CTX(s), fp(&din, s), 0, NULL, fp(&dw, s), fp(&dout, s),
                                     fp(&in, s), fp(&w, s), fp(&rstd, s), N, C);
        check_f32(&din, (int64_t)N * C, TOL_RMSNORM_BWD, "rmsnorm_backward din N=%d C=%d", N, C);
        check_f32(&dw, C, TOL_RMSNORM_BWD, "rmsnorm_backward dw (+=) N=%d C=%d", N, C);
        struct pbuf dacc = pb_rand((int64_t)N * C, -1, 1); /* din_add: +=, and its image */
        struct pbuf d16 = pb_nan16((int64_t)N * C);
        for (int s = 0; s < 2; s++)
            OPS(s)->rmsnorm_backward(CTX(s), fp(&dacc, s), 1, hp(&d16, s), NULL, fp(&dout, s),
                                     fp(&in, s), fp(&w, s), fp(&rstd, s), N, C);
        check_f32(&dacc, (int64_t)N * C, TOL_RMSNORM_BWD, "rmsnorm_backward din (+=) N=%d C=%d",
                  N, C);
        check_image16(&d16, &dacc, NULL, (int64_t)N * C, "rmsnorm_backward din16 (+=)");
        pb_free(&d16);
        pb_free(&in), pb_free(&w), pb_free(&out), pb_free(&rstd), pb_free(&dout), pb_free(&din),
            pb_free(&dw), pb_free(&dacc);
    }
}

/* ---- rope ------------------------------------------------------------------------------ */

/* cos/sin (P, D/2) host tables: angle(p, i) = p · theta^(−2i/D) */
static void rope_tables(float *cs, float *sn, int P, int D, double theta)
{
    for (int p = 0; p < P; p++)
        for (int i = 0; i < D / 2; i++) {
            double a = p * pow(theta, -2.0 * i / D);
            cs[p * (D / 2) + i] = (float)cos(a);
            sn[p * (D / 2) + i] = (float)sin(a);
        }
}

static void test_rope(void **state)
{
    (void)state;
    rng_seed(107);
    const int shapes[][3] = {{1, 3, 16}, {5, 3, 10}, {37, 4, 64}, {200, 2, 32}, {64, 6, 128}};
    const int P = 512;
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int N = shapes[si][0], H = shapes[si][1], D = shapes[si][2];
        int64_t n = (int64_t)N * H * D;
        float *cs = malloc(sizeof(float) * P * (D / 2)), *sn = malloc(sizeof(float) * P * (D / 2));
        rope_tables(cs, sn, P, D, si % 2 ? 1e6 : 1e4);
        int32_t *pos = malloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) /* unsorted, repeated, 0 and P − 1 */
            pos[i] = i == 0 ? P - 1 : (i == 1 ? 0 : (int32_t)(rng_u32() % P));
        struct pbuf c = pb_host(cs, sizeof(float) * P * (D / 2));
        struct pbuf sb = pb_host(sn, sizeof(float) * P * (D / 2)), ps = pb_i32(pos, N);
        struct pbuf x = pb_rand(n, -1, 1), dx = pb_rand(n, -1, 1), dx16 = pb_nan16(n);
        for (int s = 0; s < 2; s++) /* the image from the same input first, then in place */
            OPS(s)->rope_backward(CTX(s), fp(&dx, s), hp(&dx16, s), ip(&ps, s), fp(&c, s),
                                  fp(&sb, s), N, H, D);
        for (int s = 0; s < 2; s++) {
            OPS(s)->rope_forward(CTX(s), fp(&x, s), ip(&ps, s), fp(&c, s), fp(&sb, s), N, H, D);
            OPS(s)->rope_backward(CTX(s), fp(&dx, s), NULL, ip(&ps, s), fp(&c, s), fp(&sb, s),
                                  N, H, D);
        }
        check_f32(&x, n, TOL_ROPE, "rope_forward N=%d H=%d D=%d", N, H, D);
        check_f32(&dx, n, TOL_ROPE, "rope_backward N=%d H=%d D=%d", N, H, D);
        check_image16(&dx16, &dx, NULL, n, "rope_backward dx16");
        pb_free(&dx16);
        free(cs), free(sn), free(pos);
        pb_free(&c), pb_free(&sb), pb_free(&ps), pb_free(&x), pb_free(&dx);
    }
}

/* ---- attention ----------------------------------------------------------------------- */

/* seg (T) of one row.  Pattern 0 packs three documents and ends in padding; 1 has
 * padding inside and at the end and a document split around the inner padding (same
 * id, not contiguous); 2 is all padding; 3 is one document. */
static void seg_row(int32_t *seg, int T, int pattern)
{
    for (int t = 0; t < T; t++) {
        switch (pattern) {
        case 0:
            seg[t] = t < T / 3 ? 0 : (t < 2 * T / 3 ? 1 : (t < T - 3 ? 2 : -1));
            break;
        case 1:
            seg[t] = t < 3 ? 2 : (t < 6 ? -1 : (t < 10 ? 2 : (t < T - 2 ? 7 : -1)));
            break;
        case 2:
            seg[t] = -1;
            break;
        default:
            seg[t] = 0;
        }
    }
}

struct att_shape {
    int B, T, H, KVH, D;
    int pattern[3]; /* per row */
};

static const struct att_shape att_shapes[] = {
    {2, 37, 4, 2, 64, {0, 1}},    /* GQA H = 2·KVH, D = 64, odd T */
    {3, 75, 2, 2, 32, {1, 2, 0}}, /* H = KVH, D = 32, an all-padding row */
    {1, 1, 2, 1, 32, {3}},        /* T = 1 */
    {2, 130, 8, 4, 16, {0, 3}},   /* D = 16 (the tiny preset), several query blocks */
    {1, 200, 4, 2, 64, {1}},      /* long row */
    {2, 33, 6, 2, 32, {3, 0}},    /* GQA group of 3 */
};
#define N_ATT_SHAPES ((int)(sizeof(att_shapes) / sizeof(att_shapes[0])))

struct att_bufs {
    struct pbuf q, k, v, seg, out, lse;
    int32_t *hseg;
};

static struct att_bufs att_make(const struct att_shape *a)
{
    struct att_bufs r;
    int64_t nq = (int64_t)a->B * a->T * a->H * a->D, nk = (int64_t)a->B * a->T * a->KVH * a->D;
    r.hseg = malloc(sizeof(int32_t) * a->B * a->T);
    for (int b = 0; b < a->B; b++)
        seg_row(r.hseg + (size_t)b * a->T, a->T, a->pattern[b]);
    r.q = pb_rand(nq, -1.5f, 1.5f);
    r.k = pb_rand(nk, -1.5f, 1.5f);
    r.v = pb_rand(nk, -1, 1);
    r.seg = pb_i32(r.hseg, (int64_t)a->B * a->T);
    r.out = pb_nan(nq);
    r.lse = pb_nan((int64_t)a->B * a->H * a->T);
    return r;
}

static void att_free(struct att_bufs *r)
{
    pb_free(&r->q), pb_free(&r->k), pb_free(&r->v), pb_free(&r->seg), pb_free(&r->out),
        pb_free(&r->lse);
    free(r->hseg);
}

static void att_run_forward(const struct att_shape *a, struct att_bufs *r, int s)
{
    OPS(s)->attention_forward(CTX(s), fp(&r->out, s), fp(&r->lse, s), fp(&r->q, s), fp(&r->k, s),
                              fp(&r->v, s), ip(&r->seg, s), a->B, a->T, a->H, a->KVH, a->D);
}

/* padding queries: out = 0 and lse = −inf on side s */
static void check_att_padding(const struct att_shape *a, const struct att_bufs *r, int s)
{
    int64_t nq = (int64_t)a->B * a->T * a->H * a->D;
    float *out = malloc(sizeof(float) * nq), *lse = malloc(sizeof(float) * a->B * a->H * a->T);
    pb_download(&r->out, s, out);
    pb_download(&r->lse, s, lse);
    for (int b = 0; b < a->B; b++)
        for (int t = 0; t < a->T; t++) {
            if (r->hseg[b * a->T + t] >= 0)
                continue;
            for (int i = 0; i < a->H * a->D; i++)
                if (out[((size_t)b * a->T + t) * a->H * a->D + i] != 0.0f)
                    fail_msg("%s attention_forward: padding b=%d t=%d out[%d] = %g, not 0",
                             side_name(s), b, t, i,
                             (double)out[((size_t)b * a->T + t) * a->H * a->D + i]);
            for (int h = 0; h < a->H; h++) {
                float l = lse[((size_t)b * a->H + h) * a->T + t];
                if (!(isinf(l) && l < 0))
                    fail_msg("%s attention_forward: padding b=%d h=%d t=%d lse = %g, not -inf",
                             side_name(s), b, h, t, (double)l);
            }
        }
    free(out), free(lse);
}

static void test_attention_forward(void **state)
{
    (void)state;
    rng_seed(108);
    for (int si = 0; si < N_ATT_SHAPES; si++) {
        const struct att_shape *a = &att_shapes[si];
        struct att_bufs r = att_make(a);
        for (int s = 0; s < 2; s++)
            att_run_forward(a, &r, s);
        check_att_padding(a, &r, REF);
        check_att_padding(a, &r, DUT);
        check_f32(&r.out, (int64_t)a->B * a->T * a->H * a->D, TOL_ATT,
                  "attention_forward out B=%d T=%d H=%d KVH=%d D=%d", a->B, a->T, a->H, a->KVH,
                  a->D);
        check_f32(&r.lse, (int64_t)a->B * a->H * a->T, TOL_ATT,
                  "attention_forward lse B=%d T=%d H=%d KVH=%d D=%d", a->B, a->T, a->H, a->KVH,
                  a->D);
        att_free(&r);
    }
}

static void test_attention_backward(void **state)
{
    (void)state;
    rng_seed(109);
    for (int si = 0; si < N_ATT_SHAPES; si++) {
        const struct att_shape *a = &att_shapes[si];
        int64_t nq = (int64_t)a->B * a->T * a->H * a->D, nk = (int64_t)a->B * a->T * a->KVH * a->D;
        struct att_bufs r = att_make(a);
        att_run_forward(a, &r, REF);
        pb_share_ref(&r.out);
        pb_share_ref(&r.lse);
        struct pbuf dout = pb_rand(nq, -1, 1), dq = pb_nan(nq), dk = pb_nan(nk), dv = pb_nan(nk);
        for (int s = 0; s < 2; s++)
            OPS(s)->attention_backward(CTX(s), fp(&dq, s), fp(&dk, s), fp(&dv, s), fp(&dout, s),
                                       fp(&r.out, s), fp(&r.lse, s), fp(&r.q, s), fp(&r.k, s),
                                       fp(&r.v, s), ip(&r.seg, s), a->B, a->T, a->H, a->KVH, a->D);
        const char *names[3] = {"dq", "dk", "dv"};
        struct pbuf *g[3] = {&dq, &dk, &dv};
        /* T = 1: each query sees only itself, p = 1, so dq = dk = 0 analytically and
         * both sides hold rounding noise, which nmse cannot compare: bounded instead */
        for (int i = 0; i < 2 && a->T == 1; i++)
            check_tiny(g[i], i ? nk : nq, 1e-5, "attention_backward T=1 %s", names[i]);
        for (int i = a->T == 1 ? 2 : 0; i < 3; i++)
            check_f32(g[i], i ? nk : nq, TOL_ATT_BWD,
                      "attention_backward %s B=%d T=%d H=%d KVH=%d D=%d", names[i], a->B, a->T,
                      a->H, a->KVH, a->D);
        att_free(&r);
        pb_free(&dout), pb_free(&dq), pb_free(&dk), pb_free(&dv);
    }
}

static int have_attention16(void)
{
    return OPS(REF)->attention16_forward && OPS(DUT)->attention16_forward &&
           OPS(REF)->attention16_backward && OPS(DUT)->attention16_backward;
}

/* the shapes of the f32 tests and head dims the tensor-core kernels pad (24 → 32, 80 → 128)
 * or take at their largest tiles (128, 256) */
static const struct att_shape att16_extra[] = {
    {2, 16, 4, 2, 64, {0, 1}}, /* T <= 16: one key tile (TOL_ATT16_TILE) */
    {1, 13, 2, 1, 24, {1}},
    {1, 16, 2, 1, 256, {3}},
    {2, 45, 4, 2, 24, {0, 1}},
    {1, 70, 2, 1, 80, {1}},
    {1, 66, 4, 2, 128, {0}},
    {1, 35, 2, 1, 256, {3}},
};
#define N_ATT16_SHAPES (N_ATT_SHAPES + (int)(sizeof(att16_extra) / sizeof(att16_extra[0])))

static const struct att_shape *att16_shape(int i)
{
    return i < N_ATT_SHAPES ? &att_shapes[i] : &att16_extra[i - N_ATT_SHAPES];
}

/* attention16 (bf16 products: training in precision bf16) forward, then its backward from
 * the reference's out and lse */
static void test_attention16(void **state)
{
    (void)state;
    SKIP_WITHOUT(have_attention16(), "attention16 ops");
    rng_seed(111);
    for (int si = 0; si < N_ATT16_SHAPES; si++) {
        const struct att_shape *a = att16_shape(si);
        int64_t nq = (int64_t)a->B * a->T * a->H * a->D, nk = (int64_t)a->B * a->T * a->KVH * a->D;
        struct att_bufs r = att_make(a);
        struct pbuf out16 = pb_nan16(nq), dv16 = pb_nan16(nk);
        for (int s = 0; s < 2; s++)
            OPS(s)->attention16_forward(CTX(s), fp(&r.out, s), hp(&out16, s), fp(&r.lse, s),
                                        fp(&r.q, s), fp(&r.k, s), fp(&r.v, s), ip(&r.seg, s),
                                        a->B, a->T, a->H, a->KVH, a->D);
        check_image16(&out16, &r.out, NULL, nq, "attention16_forward out16");
        check_att_padding(a, &r, REF);
        check_att_padding(a, &r, DUT);
        check_f32(&r.out, nq, a->T <= 16 ? TOL_ATT16_TILE : TOL_ATT16,
                  "attention16_forward out B=%d T=%d H=%d KVH=%d D=%d", a->B, a->T, a->H, a->KVH,
                  a->D);
        check_f32(&r.lse, (int64_t)a->B * a->H * a->T, TOL_ATT16,
                  "attention16_forward lse B=%d T=%d H=%d KVH=%d D=%d", a->B, a->T, a->H, a->KVH,
                  a->D);
        pb_share_ref(&r.out);
        pb_share_ref(&r.lse);
        struct pbuf dout = pb_rand(nq, -1, 1), dq = pb_nan(nq), dk = pb_nan(nk), dv = pb_nan(nk);
        for (int s = 0; s < 2; s++)
            OPS(s)->attention16_backward(CTX(s), fp(&dq, s), fp(&dk, s), fp(&dv, s),
                                         hp(&dv16, s), fp(&dout, s), fp(&r.out, s),
                                         fp(&r.lse, s), fp(&r.q, s), fp(&r.k, s), fp(&r.v, s),
                                         ip(&r.seg, s), a->B, a->T, a->H, a->KVH, a->D);
        check_image16(&dv16, &dv, NULL, nk, "attention16_backward dv16");
        pb_free(&out16), pb_free(&dv16);
        const char *names[3] = {"dq", "dk", "dv"};
        struct pbuf *g[3] = {&dq, &dk, &dv};
        for (int i = 0; i < 2 && a->T == 1; i++) /* T = 1: dq = dk = 0 (test_attention_backward) */
            check_tiny(g[i], i ? nk : nq, 1e-5, "attention16_backward T=1 %s", names[i]);
        for (int i = a->T == 1 ? 2 : 0; i < 3; i++)
            check_f32(g[i], i ? nk : nq, TOL_ATT16_BWD,
                      "attention16_backward %s B=%d T=%d H=%d KVH=%d D=%d", names[i], a->B, a->T,
                      a->H, a->KVH, a->D);
        att_free(&r);
        pb_free(&dout), pb_free(&dq), pb_free(&dk), pb_free(&dv);
    }
}

/* Steps of a KV cache of S slots × L positions, pre-filled with finite garbage (a
 * backend that reads past pos[n] or into another slot gets other numbers): a prefill
 * of two slots, a mixed step (decodes at different positions, a new slot, two tokens
 * of one slot whose first 30 positions were already there), and one decode (N = 1).
 * Each step stores its keys (the whole cache must match bit for bit) and attends. */
static void test_attention_cached(void **state)
{
    (void)state;
    rng_seed(110);
    const int shapes[][3] = {{4, 2, 64}, {4, 4, 32}, {6, 2, 16}, {8, 1, 32}};
    const int S = 4, L = 48;
    int32_t slot1[18], pos1[18];
    for (int n = 0; n < 18; n++) { /* slot 2 positions 0..12 and slot 0 positions 0..4, mixed */
        slot1[n] = n % 3 == 2 && n / 3 < 5 ? 0 : 2;
        pos1[n] = 0;
    }
    int c0 = 0, c2 = 0;
    for (int n = 0; n < 18; n++)
        pos1[n] = slot1[n] == 0 ? c0++ : c2++;
    const int32_t slot2[5] = {0, 2, 3, 1, 1}, pos2[5] = {c0, c2, 0, 30, 31};
    const int32_t slot3[1] = {3}, pos3[1] = {1};
    const int32_t *slots[3] = {slot1, slot2, slot3}, *poss[3] = {pos1, pos2, pos3};
    const int Ns[3] = {18, 5, 1};
    int have16 = OPS(REF)->kv_store16 && OPS(DUT)->kv_store16 && OPS(REF)->attention_cached16 &&
                 OPS(DUT)->attention_cached16;
    if (!have16)
        print_message("backend %s has no bf16 KV cache ops (optional): those skipped\n",
                      OPS(DUT)->name);
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int H = shapes[si][0], KVH = shapes[si][1], D = shapes[si][2];
        int64_t ncache = (int64_t)S * L * KVH * D;
        struct pbuf kc = pb_rand(ncache, -3, 3), vc = pb_rand(ncache, -3, 3);
        /* the bf16 caches: the same garbage, as bf16 bits */
        uint16_t *g16 = malloc(sizeof(uint16_t) * ncache);
        float *gk = malloc(sizeof(float) * ncache), *gv = malloc(sizeof(float) * ncache);
        pb_download(&kc, REF, gk);
        pb_download(&vc, REF, gv);
        for (int64_t i = 0; i < ncache; i++)
            g16[i] = r1_f32_to_bf16(gk[i]);
        struct pbuf kc16 = pb_host(g16, sizeof(uint16_t) * ncache);
        for (int64_t i = 0; i < ncache; i++)
            g16[i] = r1_f32_to_bf16(gv[i]);
        struct pbuf vc16 = pb_host(g16, sizeof(uint16_t) * ncache);
        free(g16), free(gk), free(gv);
        for (int st = 0; st < 3; st++) {
            int N = Ns[st];
            struct pbuf sl = pb_i32(slots[st], N), ps = pb_i32(poss[st], N);
            struct pbuf k = pb_rand((int64_t)N * KVH * D, -1.5f, 1.5f);
            struct pbuf v = pb_rand((int64_t)N * KVH * D, -1, 1);
            struct pbuf q = pb_rand((int64_t)N * H * D, -1.5f, 1.5f),
                        out = pb_nan((int64_t)N * H * D);
            for (int s = 0; s < 2; s++) {
                OPS(s)->kv_store(CTX(s), fp(&kc, s), fp(&vc, s), fp(&k, s), fp(&v, s), ip(&sl, s),
                                 ip(&ps, s), N, KVH, D, L);
                OPS(s)->attention_cached(CTX(s), fp(&out, s), fp(&q, s), fp(&kc, s), fp(&vc, s),
                                         ip(&sl, s), ip(&ps, s), N, H, KVH, D, L);
            }
            check_bits(&kc, "kv_store k cache step %d H=%d KVH=%d D=%d", st, H, KVH, D);
            check_bits(&vc, "kv_store v cache step %d H=%d KVH=%d D=%d", st, H, KVH, D);
            check_f32(&out, (int64_t)N * H * D, TOL_ATT_CACHED,
                      "attention_cached step %d N=%d H=%d KVH=%d D=%d", st, N, H, KVH, D);
            for (int s = 0; s < 2 && have16; s++) {
                OPS(s)->kv_store16(CTX(s), hp(&kc16, s), hp(&vc16, s), fp(&k, s), fp(&v, s),
                                   ip(&sl, s), ip(&ps, s), N, KVH, D, L);
                OPS(s)->attention_cached16(CTX(s), fp(&out, s), fp(&q, s), hp(&kc16, s),
                                           hp(&vc16, s), ip(&sl, s), ip(&ps, s), N, H, KVH, D, L);
            }
            if (have16) {
                check_bits(&kc16, "kv_store16 k cache step %d H=%d KVH=%d D=%d", st, H, KVH, D);
                check_bits(&vc16, "kv_store16 v cache step %d H=%d KVH=%d D=%d", st, H, KVH, D);
                check_f32(&out, (int64_t)N * H * D, TOL_ATT_CACHED,
                          "attention_cached16 step %d N=%d H=%d KVH=%d D=%d", st, N, H, KVH, D);
            }
            pb_free(&sl), pb_free(&ps), pb_free(&k), pb_free(&v), pb_free(&q), pb_free(&out);
        }
        pb_free(&kc), pb_free(&vc), pb_free(&kc16), pb_free(&vc16);
    }
}

/* Decoding over long caches: tokens whose positions take one split, several splits and
 * partial tiles (np = 1, 131, 256, 512, 600 against the CUDA kernel's 128-position tiles
 * and 256-position splits), GQA groups of 1 to 18 query heads (more than one block's 8),
 * head dims with and without 16-byte loads and up to 256; f32 and bf16 caches of finite
 * garbage.  Against the CPU op, and on the DUT each token alone gives its bits in the
 * batch (a token's attention must not depend on the other tokens of the step). */
static void test_attention_decode_long(void **state)
{
    (void)state;
    rng_seed(112);
    const int shapes[][3] = {{14, 2, 64}, {18, 1, 36}, {4, 2, 256}, {3, 3, 128}, {2, 1, 20}};
    const int S = 3, L = 600, N = 6;
    const int32_t slot[6] = {0, 1, 2, 2, 0, 1}, pos[6] = {599, 255, 0, 130, 511, 599};
    int have16 = OPS(REF)->attention_cached16 && OPS(DUT)->attention_cached16;
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int H = shapes[si][0], KVH = shapes[si][1], D = shapes[si][2];
        int64_t ncache = (int64_t)S * L * KVH * D, nq = (int64_t)N * H * D;
        struct pbuf kc = pb_rand(ncache, -2, 2), vc = pb_rand(ncache, -2, 2);
        uint16_t *k16 = malloc(sizeof(uint16_t) * ncache), *v16 = malloc(sizeof(uint16_t) * ncache);
        float *gk = malloc(sizeof(float) * ncache), *gv = malloc(sizeof(float) * ncache);
        pb_download(&kc, REF, gk);
        pb_download(&vc, REF, gv);
        for (int64_t i = 0; i < ncache; i++)
            k16[i] = r1_f32_to_bf16(gk[i]), v16[i] = r1_f32_to_bf16(gv[i]);
        struct pbuf kc16 = pb_host(k16, sizeof(uint16_t) * ncache);
        struct pbuf vc16 = pb_host(v16, sizeof(uint16_t) * ncache);
        free(k16), free(v16), free(gk), free(gv);
        struct pbuf sl = pb_i32(slot, N), ps = pb_i32(pos, N);
        struct pbuf q = pb_rand(nq, -1.5f, 1.5f), out = pb_nan(nq), one = pb_nan((int64_t)H * D);
        for (int e = 0; e < 1 + have16; e++) {
            pb_set_nan(&out);
            for (int s = 0; s < 2; s++) {
                if (e)
                    OPS(s)->attention_cached16(CTX(s), fp(&out, s), fp(&q, s), hp(&kc16, s),
                                               hp(&vc16, s), ip(&sl, s), ip(&ps, s), N, H, KVH,
                                               D, L);
                else
                    OPS(s)->attention_cached(CTX(s), fp(&out, s), fp(&q, s), fp(&kc, s),
                                             fp(&vc, s), ip(&sl, s), ip(&ps, s), N, H, KVH, D, L);
            }
            check_f32(&out, nq, TOL_ATT_CACHED, "attention_cached%s long N=%d H=%d KVH=%d D=%d",
                      e ? "16" : "", N, H, KVH, D);
            for (int n = 0; n < N; n++) {
                const float *qn = fp(&q, DUT) + (size_t)n * H * D;
                if (e)
                    OPS(DUT)->attention_cached16(CTX(DUT), fp(&one, DUT), qn, hp(&kc16, DUT),
                                                 hp(&vc16, DUT), ip(&sl, DUT) + n,
                                                 ip(&ps, DUT) + n, 1, H, KVH, D, L);
                else
                    OPS(DUT)->attention_cached(CTX(DUT), fp(&one, DUT), qn, fp(&kc, DUT),
                                               fp(&vc, DUT), ip(&sl, DUT) + n, ip(&ps, DUT) + n,
                                               1, H, KVH, D, L);
                check_same_run(fp(&one, DUT), fp(&out, DUT) + (size_t)n * H * D,
                               (size_t)H * D * sizeof(float),
                               "attention_cached: a token alone vs in a batch");
            }
        }
        pb_free(&sl), pb_free(&ps), pb_free(&q), pb_free(&out), pb_free(&one);
        pb_free(&kc), pb_free(&vc), pb_free(&kc16), pb_free(&vc16);
    }
}

/* ---- pointwise ----------------------------------------------------------------------- */

static const int64_t pw_sizes[] = {1, 31, 203, 100003};
#define N_PW_SIZES ((int)(sizeof(pw_sizes) / sizeof(pw_sizes[0])))

static void test_swiglu(void **state)
{
    (void)state;
    rng_seed(111);
    for (int si = 0; si < N_PW_SIZES; si++) {
        int64_t n = pw_sizes[si];
        float *g = host_rand(n, -6, 6);
        if (n > 2)
            g[0] = -90.0f, g[1] = 90.0f; /* exp overflow on either side */
        struct pbuf gate = pb_host(g, (size_t)n * sizeof(float)), up = pb_rand(n, -2, 2);
        struct pbuf out = pb_nan(n), dout = pb_rand(n, -1, 1), dg = pb_nan(n), du = pb_nan(n);
        struct pbuf o16 = pb_nan16(n), o16b = pb_nan16(n);
        struct pbuf g16 = pb_nan16(n), u16 = pb_nan16(n), g16b = pb_nan16(n), u16b = pb_nan16(n);
        for (int s = 0; s < 2; s++) {
            OPS(s)->swiglu_forward(CTX(s), fp(&out, s), hp(&o16, s), fp(&gate, s), fp(&up, s), n);
            OPS(s)->swiglu_forward(CTX(s), NULL, hp(&o16b, s), fp(&gate, s), fp(&up, s), n);
            OPS(s)->swiglu_backward(CTX(s), fp(&dg, s), fp(&du, s), hp(&g16, s), hp(&u16, s),
                                    fp(&dout, s), fp(&gate, s), fp(&up, s), n);
            OPS(s)->swiglu_backward(CTX(s), NULL, NULL, hp(&g16b, s), hp(&u16b, s),
                                    fp(&dout, s), fp(&gate, s), fp(&up, s), n);
        }
        check_image16(&g16, &dg, &g16b, n, "swiglu_backward dgate16");
        check_image16(&u16, &du, &u16b, n, "swiglu_backward dup16");
        pb_free(&g16), pb_free(&u16), pb_free(&g16b), pb_free(&u16b);
        check_f32(&out, n, TOL_SWIGLU, "swiglu_forward n=%lld", (long long)n);
        check_image16(&o16, &out, &o16b, n, "swiglu_forward out16");
        pb_free(&o16), pb_free(&o16b);
        check_f32(&dg, n, TOL_SWIGLU, "swiglu_backward dgate n=%lld", (long long)n);
        check_f32(&du, n, TOL_SWIGLU, "swiglu_backward dup n=%lld", (long long)n);
        free(g);
        pb_free(&gate), pb_free(&up), pb_free(&out), pb_free(&dout), pb_free(&dg), pb_free(&du);
    }
}

/* one IEEE add / multiply per element on inputs that are never subnormal: exact */
static void test_add_scale(void **state)
{
    (void)state;
    rng_seed(112);
    for (int si = 0; si < N_PW_SIZES; si++) {
        int64_t n = pw_sizes[si];
        struct pbuf a = pb_rand(n, -1, 1), b = pb_rand(n, -1, 1), out = pb_nan(n);
        for (int s = 0; s < 2; s++)
            OPS(s)->add(CTX(s), fp(&out, s), fp(&a, s), fp(&b, s), n);
        check_bits(&out, "add n=%lld", (long long)n);
        for (int s = 0; s < 2; s++) /* out aliases a, then b */
            OPS(s)->add(CTX(s), fp(&a, s), fp(&a, s), fp(&b, s), n);
        check_bits(&a, "add n=%lld out == a", (long long)n);
        for (int s = 0; s < 2; s++)
            OPS(s)->add(CTX(s), fp(&b, s), fp(&a, s), fp(&b, s), n);
        check_bits(&b, "add n=%lld out == b", (long long)n);
        for (int s = 0; s < 2; s++) {
            OPS(s)->scale(CTX(s), fp(&out, s), 0.37f, n);
            OPS(s)->scale(CTX(s), fp(&a, s), -2.0f, n);
        }
        check_bits(&out, "scale n=%lld s=0.37", (long long)n);
        check_bits(&a, "scale n=%lld s=-2", (long long)n);
        pb_free(&a), pb_free(&b), pb_free(&out);
    }
}

static void test_sumsq(void **state)
{
    (void)state;
    rng_seed(113);
    const int64_t sizes[] = {1, 5, 100003, (1 << 20) + 7};
    for (int si = 0; si < 4; si++) {
        int64_t n = sizes[si];
        struct pbuf x = pb_rand(n, -2, 2);
        double got[2];
        for (int s = 0; s < 2; s++)
            OPS(s)->sumsq(CTX(s), &got[s], fp(&x, s), n);
        double nmse =
            (got[DUT] - got[REF]) * (got[DUT] - got[REF]) / fmax(got[REF] * got[REF], 1e-30);
        char what[80];
        snprintf(what, sizeof(what), "sumsq n=%lld", (long long)n);
        record(TOL_SUMSQ, nmse, what);
        if (!(nmse <= tols[TOL_SUMSQ].nmse))
            fail_msg("%s: gpu %.17g, cpu %.17g, nmse %.3g > %.0e (%s)", what, got[DUT], got[REF],
                     nmse, tols[TOL_SUMSQ].nmse, tols[TOL_SUMSQ].why);
        pb_free(&x);
    }
}

/* ---- logprobs ---------------------------------------------------------------------------- */

static void test_logprobs(void **state)
{
    (void)state;
    rng_seed(114);
    const int shapes[][2] = {{5, 37}, {1, 49152}, {7, 49152}, {3, 263}, {37, 1001}, {1, 2}};
    for (int si = 0; si < (int)(sizeof(shapes) / sizeof(shapes[0])); si++) {
        int N = shapes[si][0], V = shapes[si][1];
        float *z = host_rand((int64_t)N * V, -3, 3);
        if (N > 2)
            for (int j = 0; j < V; j++) /* exp overflows without the max subtracted */
                z[2 * (size_t)V + j] += 100.0f;
        int32_t *tgt = malloc(sizeof(int32_t) * N);
        for (int n = 0; n < N; n++)
            tgt[n] = n % 4 == 1 ? -1 : (int32_t)(rng_u32() % (uint32_t)V);
        tgt[0] = 0;
        if (N > 3)
            tgt[N - 1] = V - 1;
        if (N > 10) /* masked tokens (−inf) in a scored and an unscored row */
            for (int j = 3; j < V; j += 7) {
                z[4 * (size_t)V + j] = j == tgt[4] ? z[4 * (size_t)V + j] : -INFINITY;
                z[5 * (size_t)V + j] = -INFINITY;
            }
        struct pbuf logits = pb_host(z, sizeof(float) * N * V), t = pb_i32(tgt, N);
        struct pbuf logp = pb_nan(N), ent = pb_nan(N), lse = pb_nan(N);
        for (int with_ent = 0; with_ent < 2; with_ent++) {
            pb_set_nan(&logp), pb_set_nan(&lse), pb_set_nan(&ent);
            for (int s = 0; s < 2; s++)
                OPS(s)->logprobs_forward(CTX(s), fp(&logp, s), with_ent ? fp(&ent, s) : NULL,
                                         fp(&lse, s), fp(&logits, s), ip(&t, s), N, V);
            check_f32(&logp, N, TOL_LOGPROBS, "logprobs_forward logp N=%d V=%d entropy=%d", N, V,
                      with_ent);
            check_f32(&lse, N, TOL_LOGPROBS, "logprobs_forward lse N=%d V=%d entropy=%d", N, V,
                      with_ent);
            if (with_ent)
                check_f32(&ent, N, TOL_LOGPROBS, "logprobs_forward entropy N=%d V=%d", N, V);
            float *lp = malloc(sizeof(float) * N);
            pb_download(&logp, DUT, lp);
            for (int n = 0; n < N; n++)
                if (tgt[n] < 0 && lp[n] != 0.0f)
                    fail_msg("logprobs_forward N=%d V=%d: row %d has target -1 but logp %g", N, V,
                             n, (double)lp[n]);
            free(lp);
        }
        /* backward on the reference's lse and entropy; every entropy/dentropy
         * combination (NULL entropy with dentropy: recomputed) */
        pb_share_ref(&lse);
        pb_share_ref(&ent);
        struct pbuf dlogp = pb_rand(N, -1, 1), dent = pb_rand(N, -1, 1);
        struct pbuf dz = pb_nan((int64_t)N * V), dz16 = pb_nan16((int64_t)N * V);
        for (int combo = 0; combo < 6; combo++) {
            /* 4, 5: a scale (the logits' own, 1/temperature), f32 and the bf16 image */
            int use_ent = combo & 1, use_dent = combo & 2 || combo >= 4;
            float scale = combo >= 4 ? 1.0f / 0.7f : 1.0f;
            pb_set_nan(&dz);
            for (int s = 0; s < 2; s++)
                OPS(s)->logprobs_backward(CTX(s), fp(&dz, s), NULL, fp(&logits, s), fp(&lse, s),
                                          use_ent ? fp(&ent, s) : NULL, ip(&t, s), fp(&dlogp, s),
                                          use_dent ? fp(&dent, s) : NULL, scale, N, V);
            check_f32(&dz, (int64_t)N * V, TOL_LOGPROBS_BWD,
                      "logprobs_backward N=%d V=%d entropy=%d dentropy=%d scale=%g", N, V,
                      use_ent, use_dent ? 1 : 0, (double)scale);
            if (combo < 4)
                continue;
            for (int s = 0; s < 2; s++)
                OPS(s)->logprobs_backward(CTX(s), NULL, hp(&dz16, s), fp(&logits, s),
                                          fp(&lse, s), use_ent ? fp(&ent, s) : NULL, ip(&t, s),
                                          fp(&dlogp, s), fp(&dent, s), scale, N, V);
            check_image16(&dz16, &dz, NULL, (int64_t)N * V, "logprobs_backward dlogits16");
        }
        pb_free(&dz16);
        free(z), free(tgt);
        pb_free(&logits), pb_free(&t), pb_free(&logp), pb_free(&ent), pb_free(&lse),
            pb_free(&dlogp), pb_free(&dent), pb_free(&dz);
    }
}

/* The policy-gradient token loss: dlogp, dentropy and the six sums (added to a struct in
 * backend memory) at token counts below, at and above one block, with and without old and
 * reference log-probs, entropies, their gradient, KL and entropy coefficients; weights of 0
 * (unscored) give exactly 0 and count nothing; the counts equal the CPU's exactly. */
static void test_pg_loss(void **state)
{
    (void)state;
    rng_seed(115);
    const int sizes[] = {1, 5, 256, 1000, 3001};
    for (int si = 0; si < 5; si++) {
        int N = sizes[si];
        float *lp = host_rand(N, -4, 0), *old = host_rand(N, -0.6f, 0.6f);
        float *ref = host_rand(N, -0.4f, 0.4f), *w = host_rand(N, 0, 0.01f);
        for (int i = 0; i < N; i++) {
            old[i] += lp[i];
            ref[i] += lp[i];
            if (i % 7 == 2)
                w[i] = 0.0f;
        }
        struct pbuf logp = pb_host(lp, sizeof(float) * N), o = pb_host(old, sizeof(float) * N);
        struct pbuf r = pb_host(ref, sizeof(float) * N), wt = pb_host(w, sizeof(float) * N);
        struct pbuf ent = pb_rand(N, 0, 5), adv = pb_rand(N, -2, 2);
        struct pbuf d = pb_nan(N), de = pb_nan(N);
        for (int v = 0; v < 8; v++) {
            int use_old = v & 1, use_ref = v >> 1 & 1, use_ent = v >> 2 & 1;
            struct r1_pg_cfg cfg = {0.2f, 0.28f, use_ref ? 0.04f : 0.0f,
                                    use_ent ? 0.01f : 0.0f};
            const struct r1_pg_stats st0 = {-0.5, 10, 0.125, 3, 1, 2};
            struct pbuf st = pb_host(&st0, sizeof(st0));
            pb_set_nan(&d), pb_set_nan(&de);
            for (int s = 0; s < 2; s++)
                OPS(s)->pg_loss(CTX(s), fp(&d, s), use_ent ? fp(&de, s) : NULL, st.p[s],
                                fp(&logp, s), use_old ? fp(&o, s) : NULL,
                                use_ref ? fp(&r, s) : NULL, use_ent ? fp(&ent, s) : NULL,
                                fp(&adv, s), fp(&wt, s), &cfg, N);
            check_f32(&d, N, TOL_PG_LOSS, "pg_loss dlogp N=%d variant %d", N, v);
            if (use_ent)
                check_f32(&de, N, TOL_PG_LOSS, "pg_loss dentropy N=%d variant %d", N, v);
            float *hd = malloc(sizeof(float) * N);
            pb_download(&d, DUT, hd);
            for (int i = 0; i < N; i++)
                if (w[i] == 0.0f && hd[i] != 0.0f)
                    fail_msg("pg_loss N=%d: token %d has weight 0 but dlogp %g", N, i,
                             (double)hd[i]);
            free(hd);
            struct r1_pg_stats got[2];
            for (int s = 0; s < 2; s++)
                pb_download(&st, s, &got[s]);
            const double *g = (const double *)&got[DUT], *c = (const double *)&got[REF];
            for (int k = 0; k < 6; k++) {
                double e = (g[k] - c[k]) * (g[k] - c[k]) / fmax(c[k] * c[k], 1e-30);
                char what[80];
                snprintf(what, sizeof(what), "pg_loss sum %d N=%d variant %d", k, N, v);
                record(TOL_PG_LOSS, e, what);
                bool count = k == 1 || k == 4 || k == 5; /* n_tokens, clip_low, clip_high */
                if (count ? g[k] != c[k] : !(e <= tols[TOL_PG_LOSS].nmse))
                    fail_msg("%s: gpu %.17g, cpu %.17g (%s)", what, g[k], c[k],
                             tols[TOL_PG_LOSS].why);
            }
            if (use_old && N >= 256 && !(got[REF].clip_low > 1 && got[REF].clip_high > 2))
                fail_msg("pg_loss N=%d: the test's ratios clip no token", N);
            pb_free(&st);
        }
        free(lp), free(old), free(ref), free(w);
        pb_free(&logp), pb_free(&o), pb_free(&r), pb_free(&wt), pb_free(&ent), pb_free(&adv),
            pb_free(&d), pb_free(&de);
    }
}

/* ---- adamw ------------------------------------------------------------------------------ */

static void test_adamw(void **state)
{
    (void)state;
    rng_seed(115);
    const int64_t sizes[] = {1, 1001, 100003};
    /* {step, lr, weight decay, grad scale}: successive updates, then a late step */
    const struct {
        int64_t step;
        float lr, wd, gs;
    } steps[] = {{1, 1e-3f, 0.1f, 1.0f},
                 {2, 1e-3f, 0.1f, 0.5f},
                 {3, 3e-4f, 0.0f, 0.25f},
                 {1000, 1e-2f, 0.01f, 1.0f}};
    for (int si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        struct pbuf p = pb_rand(n, -1, 1), m = pb_alloc((size_t)n * 4), v = pb_alloc((size_t)n * 4);
        float *zero = calloc((size_t)n, sizeof(float));
        pb_upload(&m, zero), pb_upload(&v, zero);
        for (int k = 0; k < 4; k++) {
            struct pbuf g = pb_rand(n, -1, 1), p16 = pb_nan16(n);
            const struct r1_adamw_range all = {0, 0, n, steps[k].wd};
            for (int s = 0; s < 2; s++) /* odd updates write the bf16 copy too */
                OPS(s)->adamw_update(CTX(s), fp(&p, s), k & 1 ? hp(&p16, s) : NULL, fp(&g, s),
                                     fp(&m, s), fp(&v, s), &all, 1, steps[k].lr, 0.9f, 0.95f,
                                     1e-8f, steps[k].gs, steps[k].step);
            if (k & 1)
                check_image16(&p16, &p, NULL, n, "adamw_update param16");
            pb_free(&p16);
            check_f32(&p, n, TOL_ADAMW, "adamw_update param n=%lld step %lld", (long long)n,
                      (long long)steps[k].step);
            check_f32(&m, n, TOL_ADAMW, "adamw_update m n=%lld step %lld", (long long)n,
                      (long long)steps[k].step);
            check_f32(&v, n, TOL_ADAMW, "adamw_update v n=%lld step %lld", (long long)n,
                      (long long)steps[k].step);
            /* the next update starts from identical state */
            pb_share_ref(&p), pb_share_ref(&m), pb_share_ref(&v);
            pb_free(&g);
        }
        free(zero);
        pb_free(&p), pb_free(&m), pb_free(&v);
    }
}

/* Every tensor of a model in one call: 130 ranges (several of the GPU's batches of ranges)
 * of 0 to ~3000 elements with gaps between them, the moments at another offset (as a
 * ZeRO-1 shard has them), each range's own weight decay, the bf16 copy written: the CPU's
 * results, and the gaps (NaN-filled) left as they were. */
static void test_adamw_ranges(void **state)
{
    (void)state;
    rng_seed(116);
    enum { NR = 130 };
    struct r1_adamw_range r[NR];
    int64_t at = 0;
    for (int i = 0; i < NR; i++) {
        int64_t n = i % 17 == 5 ? 0 : (int64_t)(rng_u32() % 3000) + (i % 3 == 0);
        at += (int64_t)(rng_u32() % 40); /* a gap */
        r[i] = (struct r1_adamw_range){at, at - 7, n, i % 4 == 1 ? 0.0f : 0.1f};
        at += n;
    }
    int64_t np = at + 16, nm = np;
    float *h = malloc((size_t)np * sizeof(float));
    for (int64_t i = 0; i < np; i++)
        h[i] = NAN;
    for (int i = 0; i < NR; i++)
        for (int64_t k = 0; k < r[i].n; k++)
            h[r[i].off + k] = rng_uniform(-1, 1);
    struct pbuf p = pb_host(h, (size_t)np * 4), g = pb_rand(np, -1, 1), p16 = pb_nan16(np);
    struct pbuf m = pb_alloc((size_t)nm * 4), v = pb_alloc((size_t)nm * 4);
    float *mv = malloc((size_t)nm * sizeof(float));
    for (int64_t i = 0; i < nm; i++)
        mv[i] = NAN;
    for (int i = 0; i < NR; i++)
        for (int64_t k = 0; k < r[i].n; k++)
            mv[r[i].moff + k] = 0.0f;
    pb_upload(&m, mv), pb_upload(&v, mv);
    for (int64_t step = 1; step <= 2; step++) {
        for (int s = 0; s < 2; s++)
            OPS(s)->adamw_update(CTX(s), fp(&p, s), hp(&p16, s), fp(&g, s), fp(&m, s),
                                 fp(&v, s), r, NR, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.5f, step);
        float *hp32 = malloc((size_t)np * 4), *hm = malloc((size_t)nm * 4);
        float *cp = malloc((size_t)np * 4), *cm = malloc((size_t)nm * 4);
        pb_download(&p, DUT, hp32), pb_download(&m, DUT, hm);
        pb_download(&p, REF, cp), pb_download(&m, REF, cm);
        /* the gaps: NaN on both sides, never written */
        for (int64_t i = 0; i < np; i++)
            if (isnan(h[i]) != isnan(hp32[i]))
                fail_msg("adamw_update ranges: parameter %lld is %g, inside a range %d",
                         (long long)i, (double)hp32[i], !isnan(h[i]));
        for (int64_t i = 0; i < nm; i++)
            if (isnan(mv[i]) != isnan(hm[i]))
                fail_msg("adamw_update ranges: moment %lld is %g", (long long)i, (double)hm[i]);
        /* inside: the CPU's results (NaN where the CPU's gaps are) */
        char what[80];
        snprintf(what, sizeof(what), "adamw_update ranges param step %lld", (long long)step);
        check_host(hp32, cp, np, TOL_ADAMW, what);
        snprintf(what, sizeof(what), "adamw_update ranges m step %lld", (long long)step);
        check_host(hm, cm, nm, TOL_ADAMW, what);
        free(hp32), free(hm), free(cp), free(cm);
        pb_share_ref(&p), pb_share_ref(&m), pb_share_ref(&v);
    }
    uint16_t *h16 = malloc((size_t)np * 2);
    pb_download(&p16, DUT, h16);
    for (int64_t i = 0; i < np; i++)
        if (isnan(h[i]) && h16[i] != 0x7fc1)
            fail_msg("adamw_update ranges: the bf16 copy of gap element %lld was written",
                     (long long)i);
    free(h16), free(h), free(mv);
    pb_free(&p), pb_free(&g), pb_free(&p16), pb_free(&m), pb_free(&v);
}

/* ---- determinism ---------------------------------------------------------------------- */

/* DUT-only buffers */
static void *dut_host(const void *host, size_t bytes)
{
    void *p = OPS(DUT)->alloc(CTX(DUT), bytes ? bytes : 1);
    assert_non_null(p);
    OPS(DUT)->upload(CTX(DUT), p, host, bytes);
    return p;
}

static float *dut_rand(int64_t n, float lo, float hi)
{
    float *h = host_rand(n, lo, hi);
    float *p = dut_host(h, (size_t)n * sizeof(float));
    free(h);
    return p;
}

static void dut_free(void *p)
{
    OPS(DUT)->free(CTX(DUT), p);
}

/* the reductions most likely to use atomics or split-K, twice on the same inputs */
static void test_determinism(void **state)
{
    (void)state;
    rng_seed(116);
    const struct r1_backend_ops *o = OPS(DUT);
    void *c = CTX(DUT);
    int M = 130, K = 576, N = 257;
    float *in = dut_rand((int64_t)M * K, -1, 1), *w = dut_rand((int64_t)N * K, -1, 1);
    float *bias = dut_rand(N, -1, 1), *dout = dut_rand((int64_t)M * N, -1, 1);
    float *dw0 = host_rand((int64_t)N * K, -1, 1), *db0 = host_rand(N, -1, 1);
    float *r[2][4];
    for (int run = 0; run < 2; run++) {
        r[run][0] = dut_rand((int64_t)M * N, 0, 0);
        o->matmul_forward(c, r[run][0], in, w, bias, NULL, M, K, N);
        r[run][1] = dut_rand((int64_t)M * K, 0, 0);
        r[run][2] = dut_host(dw0, sizeof(float) * N * K);
        r[run][3] = dut_host(db0, sizeof(float) * N);
        o->matmul_backward(c, r[run][1], 0, r[run][2], r[run][3], dout, in, w, M, K, N);
    }
    const char *mm_names[4] = {"matmul_forward", "matmul_backward din", "matmul_backward dw",
                               "matmul_backward dbias"};
    size_t mm_bytes[4] = {sizeof(float) * M * N, sizeof(float) * M * K, sizeof(float) * N * K,
                          sizeof(float) * N};
    for (int i = 0; i < 4; i++) {
        check_same_run(r[0][i], r[1][i], mm_bytes[i], mm_names[i]);
        dut_free(r[0][i]), dut_free(r[1][i]);
    }

    /* attention forward and backward */
    const struct att_shape a = {2, 130, 8, 4, 64, {0, 1}};
    int64_t nq = (int64_t)a.B * a.T * a.H * a.D, nk = (int64_t)a.B * a.T * a.KVH * a.D;
    int32_t seg[2 * 130];
    seg_row(seg, a.T, 0), seg_row(seg + a.T, a.T, 1);
    float *q = dut_rand(nq, -1.5f, 1.5f), *k = dut_rand(nk, -1.5f, 1.5f), *v = dut_rand(nk, -1, 1);
    float *dq_o = dut_rand(nq, -1, 1);
    int32_t *sg = dut_host(seg, sizeof(seg));
    float *ar[2][5];
    for (int run = 0; run < 2; run++) {
        ar[run][0] = dut_rand(nq, 0, 0), ar[run][1] = dut_rand((int64_t)a.B * a.H * a.T, 0, 0);
        o->attention_forward(c, ar[run][0], ar[run][1], q, k, v, sg, a.B, a.T, a.H, a.KVH, a.D);
        ar[run][2] = dut_rand(nq, 0, 0), ar[run][3] = dut_rand(nk, 0, 0);
        ar[run][4] = dut_rand(nk, 0, 0);
        o->attention_backward(c, ar[run][2], ar[run][3], ar[run][4], dq_o, ar[run][0], ar[run][1],
                              q, k, v, sg, a.B, a.T, a.H, a.KVH, a.D);
    }
    const char *att_names[5] = {"attention out", "attention lse", "attention dq", "attention dk",
                                "attention dv"};
    size_t att_bytes[5] = {sizeof(float) * nq, sizeof(float) * a.B * a.H * a.T, sizeof(float) * nq,
                           sizeof(float) * nk, sizeof(float) * nk};
    for (int i = 0; i < 5; i++) {
        check_same_run(ar[0][i], ar[1][i], att_bytes[i], att_names[i]);
        dut_free(ar[0][i]), dut_free(ar[1][i]);
    }

    /* scatter-add with heavy repeats, rmsnorm dw, logprobs over a large vocabulary */
    int V = 49152, NT = 7, C = 576, NE = 200;
    int32_t tok[200];
    for (int i = 0; i < NE; i++)
        tok[i] = (int32_t)(rng_u32() % 13);
    int32_t *tk = dut_host(tok, sizeof(tok));
    float *edout = dut_rand((int64_t)NE * C, -1, 1), *x = dut_rand((int64_t)NE * C, -2, 2);
    float *nw = dut_rand(C, 0.5f, 1.5f), *logits = dut_rand((int64_t)NT * V, -3, 3);
    float *dl = dut_rand(NT, -1, 1);
    float *er[2][7];
    double ss[2];
    for (int run = 0; run < 2; run++) {
        er[run][0] = dut_rand((int64_t)13 * C, 0, 0);
        o->embedding_backward(c, er[run][0], edout, tk, NE, C);
        er[run][1] = dut_rand((int64_t)NE * C, 0, 0), er[run][2] = dut_rand(NE, 0, 0);
        o->rmsnorm_forward(c, er[run][1], NULL, er[run][2], x, nw, NE, C, 1e-5f);
        er[run][3] = dut_rand(C, 0, 0);
        o->rmsnorm_backward(c, er[run][1], 0, NULL, er[run][3], edout, x, nw, er[run][2], NE,
                            C);
        er[run][4] = dut_rand(NT, 0, 0), er[run][5] = dut_rand(NT, 0, 0);
        float *lse = dut_rand(NT, 0, 0);
        o->logprobs_forward(c, er[run][4], er[run][5], lse, logits, tk, NT, V);
        er[run][6] = dut_rand((int64_t)NT * V, 0, 0);
        o->logprobs_backward(c, er[run][6], NULL, logits, lse, er[run][5], tk, dl, dl, 1.0f, NT,
                             V);
        dut_free(lse);
        o->sumsq(c, &ss[run], x, (int64_t)NE * C);
    }
    const char *e_names[7] = {"embedding_backward", "rmsnorm din",   "rmsnorm rstd",
                              "rmsnorm dw",         "logprobs logp", "logprobs entropy",
                              "logprobs dlogits"};
    size_t e_bytes[7] = {sizeof(float) * 13 * C, sizeof(float) * NE * C, sizeof(float) * NE,
                         sizeof(float) * C,      sizeof(float) * NT,     sizeof(float) * NT,
                         sizeof(float) * NT * V};
    for (int i = 0; i < 7; i++) {
        check_same_run(er[0][i], er[1][i], e_bytes[i], e_names[i]);
        dut_free(er[0][i]), dut_free(er[1][i]);
    }
    if (memcmp(&ss[0], &ss[1], sizeof(double)) != 0)
        fail_msg("sumsq: two runs give %.17g and %.17g", ss[0], ss[1]);
    free(dw0), free(db0);
    dut_free(in), dut_free(w), dut_free(bias), dut_free(dout), dut_free(q), dut_free(k),
        dut_free(v), dut_free(dq_o), dut_free(sg), dut_free(tk), dut_free(edout), dut_free(x),
        dut_free(nw), dut_free(logits), dut_free(dl);
}

/* ---- sampling ------------------------------------------------------------------------ */

/* Row r of a (rows, V) test matrix: the shapes of logits that exercise the paths */
static void sample_row(float *x, int V, int r)
{
    for (int i = 0; i < V; i++) {
        float v = rng_uniform(-8, 8);
        switch (r % 6) {
        case 0: /* distinct */
            x[i] = v;
            break;
        case 1: /* ties: halves, and −0 against +0 */
            x[i] = rintf(v) * 0.5f;
            if (x[i] == 0.0f && (i & 1))
                x[i] = -0.0f;
            break;
        case 2: /* masked: a few finite tokens among −inf */
            x[i] = i % 97 == 5 ? v : -INFINITY;
            break;
        case 3: /* flat: every token ties with the best, +0 and −0 alternating */
            x[i] = i & 1 ? -0.0f : 0.0f;
            break;
        case 4: /* one token far ahead */
            x[i] = i == V / 3 ? 30.0f : v * 0.25f;
            break;
        default: /* a spread wide enough that exp underflows for most */
            x[i] = v * 16.0f;
        }
    }
    if (r % 6 == 2 && V < 6)
        x[0] = 0.5f; /* at least one finite */
}

/* the op sample against r1_sample_token on the host: the same token (the weights have the
 * same bits; only the order of sums differs) and the log-probability to float rounding */
static void test_sample(void **state)
{
    (void)state;
    SKIP_WITHOUT(OPS(DUT)->sample, "sample op");
    rng_seed(121);
    const int vs[] = {1, 2, 7, 300, 4099, 12289};
    const struct r1_sampling set[] = {
        {0.0f, 0, 1.0f, 0.0f},      {1.0f, 0, 1.0f, 0.0f},     {0.7f, 0, 1.0f, 0.05f},
        {1.0f, 1, 1.0f, 0.0f},      {0.8f, 5, 1.0f, 0.0f},     {1.0f, 0, 0.9f, 0.0f},
        {1.0f, 0, 0.3f, 0.1f},      {0.6f, 40, 0.95f, 0.02f},  {1e-30f, 0, 0.5f, 0.0f},
        {2.5f, 3, 0.999f, 0.0f},    {1.0f, 299, 1.0f, 0.0f},   {1.3f, 4098, 0.97f, 0.0f},
    };
    const int R = 8, NS = (int)(sizeof(set) / sizeof(set[0]));
    for (int vi = 0; vi < (int)(sizeof(vs) / sizeof(vs[0])); vi++) {
        int V = vs[vi];
        struct r1_sample_scratch scr;
        assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
        float *x = malloc(sizeof(float) * (size_t)R * V), u[8], lp[8];
        int32_t tok[8];
        for (int r = 0; r < R; r++)
            sample_row(x + (size_t)r * V, V, r);
        float *dx = dut_host(x, sizeof(float) * (size_t)R * V), *du = dut_rand(R, 0, 0);
        float *dlp = dut_rand(R, 0, 0);
        int32_t *dtok = (int32_t *)dut_rand(R, 0, 0);
        for (int si = 0; si < NS; si++) {
            /* every other setting draws among the first W < V ids of each row only */
            int W = si % 2 && V > 40 ? V - 37 : V;
            for (int r = 0; r < R; r++) /* the ends of [0, 1) too */
                u[r] = r == 6 ? 0.0f : r == 7 ? 0x1.fffffep-1f : rng_uniform(0, 1);
            OPS(DUT)->upload(CTX(DUT), du, u, sizeof(u));
            OPS(DUT)->sample(CTX(DUT), dtok, dlp, dx, V, du, R, W, &set[si]);
            OPS(DUT)->download(CTX(DUT), tok, dtok, sizeof(tok));
            OPS(DUT)->download(CTX(DUT), lp, dlp, sizeof(lp));
            assert_int_equal(r1_backend_check(bes[DUT]), 0);
            for (int r = 0; r < R; r++) {
                float want_lp;
                int32_t want = r1_sample_token(x + (size_t)r * V, W, &set[si], u[r], &want_lp,
                                               &scr);
                const struct r1_sampling *c = &set[si];
                if (tok[r] != want || !(fabsf(lp[r] - want_lp) <= 1e-5f * fmaxf(1, -want_lp)))
                    fail_msg("sample %d of V=%d, row %d (T=%g top_k=%d top_p=%g min_p=%g, "
                             "u=%.9g): token %d logprob %.9g, host %d %.9g", W, V, r,
                             (double)c->temperature, c->top_k, (double)c->top_p,
                             (double)c->min_p, (double)u[r], tok[r], (double)lp[r], want,
                             (double)want_lp);
            }
        }
        dut_free(dx), dut_free(du), dut_free(dlp), dut_free(dtok);
        free(x);
        r1_sample_scratch_release(&scr);
    }
}

/* ---- whole model --------------------------------------------------------------------- */

/* Every feature on: GQA with a group of 3, QKV bias, untied head, 3 layers, sizes that
 * are no multiple of 32 where the model allows it (V, F). */
static struct r1_model_config parity_config(void)
{
    struct r1_model_config c;
    r1_model_config_preset(&c, "tiny");
    c.arch = R1_ARCH_QWEN2;
    c.vocab_size = 301;
    c.hidden_size = 96;
    c.n_layers = 3;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 32;
    c.ffn_size = 200;
    c.max_seq_len = 64;
    c.rms_eps = 1e-6f;
    c.qkv_bias = true;
    c.tie_embeddings = false;
    c.eos_id = -1;
    c.pad_id = -1;
    return c;
}

/* Same weights on both models: matrices and biases Normal(0, std), norms 1 + 0.1·N(0,1);
 * std 0.1 makes attention far from uniform and the logits far from flat. */
static void set_weights(struct r1_model *m[2], uint64_t seed, float std)
{
    for (int k = 0; k < m[REF]->n_tensors; k++) {
        const struct r1_param *p = &m[REF]->tensors[k];
        int64_t n = r1_tensor_numel(&p->w);
        float *h = malloc(sizeof(float) * n);
        int norm = strstr(p->name, "norm") != NULL;
        for (int64_t i = 0; i < n; i++) {
            float z = r1_rng_normal_at(seed, R1_STREAM_INIT + (uint64_t)k, (uint64_t)i);
            h[i] = norm ? 1.0f + 0.1f * z : std * z;
        }
        for (int s = 0; s < 2; s++)
            r1_model_upload_param(m[s], k, h);
        free(h);
    }
}

static void models_create(struct r1_model *m[2], const struct r1_model_config *cfg)
{
    for (int s = 0; s < 2; s++)
        if (r1_model_create(&m[s], cfg, bes[s]))
            fail_msg("r1_model_create on %s: %s", side_name(s), r1_err_last());
}

/* B = 3, T = 37: row 0 packs three documents, row 1 is a document then padding, row 2
 * has padding between two documents; some targets are −1 */
#define MB 3
#define MT 37
struct mbatch {
    int32_t tok[MB * MT], pos[MB * MT], seg[MB * MT], tgt[MB * MT];
    float w[MB * MT];
    double denom;
};

static void make_batch(struct mbatch *b, int V)
{
    static const int docs[MB][4][2] = {/* {start, length} per document, seg id = index */
                                       {{0, 12}, {12, 15}, {27, 10}, {0, 0}},
                                       {{0, 30}, {0, 0}, {0, 0}, {0, 0}},
                                       {{0, 5}, {9, 20}, {0, 0}, {0, 0}}};
    b->denom = 0;
    for (int r = 0; r < MB; r++) {
        for (int t = 0; t < MT; t++) {
            int i = r * MT + t;
            b->tok[i] = 0, b->pos[i] = 0, b->seg[i] = -1, b->tgt[i] = -1, b->w[i] = 0;
        }
        for (int d = 0; d < 4 && docs[r][d][1] > 0; d++)
            for (int j = 0; j < docs[r][d][1]; j++) {
                int i = r * MT + docs[r][d][0] + j;
                b->tok[i] = (int32_t)(rng_u32() % (uint32_t)V);
                b->pos[i] = j;
                b->seg[i] = d + 10 * r;
            }
        for (int t = 0; t < MT; t++) { /* the next token of the same document */
            int i = r * MT + t;
            if (b->seg[i] >= 0 && t + 1 < MT && b->seg[i + 1] == b->seg[i] && rng_u32() % 8)
                b->tgt[i] = b->tok[i + 1];
            if (b->tgt[i] >= 0)
                b->w[i] = 1.0f, b->denom += 1.0;
        }
    }
}

static void download_grads(const struct r1_model *m, float *host)
{
    m->be->ops->download(m->be->ctx, host, m->grad_mem, m->grads.cap);
}

/* per tensor: Σ(g − r)² / max(Σ r², 1e-6 · Σ_arena r²) against tolerance t */
static void check_grads(struct r1_model *m[2], enum tol_id t, const char *when)
{
    size_t nf = m[REF]->grads.cap / sizeof(float);
    float *g[2];
    for (int s = 0; s < 2; s++) {
        g[s] = malloc(m[s]->grads.cap);
        download_grads(m[s], g[s]);
    }
    double arena = 0;
    for (size_t i = 0; i < nf; i++)
        arena += (double)g[REF][i] * g[REF][i];
    if (!(arena > 0))
        fail_msg("%s: the reference gradient is zero; the test batch scores nothing", when);
    for (int k = 0; k < m[REF]->n_tensors; k++) {
        const struct r1_param *p = &m[REF]->tensors[k];
        size_t off = (size_t)((float *)p->g.data - m[REF]->grad_mem);
        int64_t n = r1_tensor_numel(&p->g);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) {
            double a = g[DUT][off + i], b = g[REF][off + i];
            if (!isfinite(a))
                fail_msg("%s: gradient of %s [%lld] is %g", when, p->name, (long long)i, a);
            num += (a - b) * (a - b);
            den += b * b;
        }
        double nmse = num / fmax(den, 1e-6 * arena);
        char what[200];
        snprintf(what, sizeof(what), "%s %s", when, p->name);
        record(t, nmse, what);
        if (!(nmse <= tols[t].nmse))
            fail_msg("%s: nmse %.3g > %.0e (%s)", what, nmse, tols[t].nmse, tols[t].why);
    }
    free(g[0]), free(g[1]);
}

/* How bf16 differs from f32 on the CPU for this model (R1_TEST_VERBOSE=1 only): the scale
 * the bf16 tolerances are read against. */
static void print_bf16_scale(struct r1_model *ref, const struct r1_batch *b, struct mbatch *mb)
{
    float lp32[MB * MT], lp16[MB * MT];
    float *g32 = malloc(ref->grads.cap), *g16 = malloc(ref->grads.cap);
    double l32, l16;
    assert_int_equal(r1_model_set_precision(ref, R1_F32), 0);
    assert_int_equal(r1_model_reserve(ref, MB, MT), 0);
    r1_model_zero_grad(ref);
    assert_int_equal(r1_model_forward(ref, b, lp32, NULL), 0);
    assert_int_equal(r1_model_ce_step(ref, b, mb->w, mb->denom, &l32), 0);
    download_grads(ref, g32);
    assert_int_equal(r1_model_set_precision(ref, R1_BF16), 0);
    assert_int_equal(r1_model_reserve(ref, MB, MT), 0);
    r1_model_zero_grad(ref);
    assert_int_equal(r1_model_forward(ref, b, lp16, NULL), 0);
    assert_int_equal(r1_model_ce_step(ref, b, mb->w, mb->denom, &l16), 0);
    download_grads(ref, g16);
    double num = 0, den = 0, worst = 0;
    for (int i = 0; i < MB * MT; i++) {
        num += ((double)lp16[i] - lp32[i]) * ((double)lp16[i] - lp32[i]);
        den += (double)lp32[i] * lp32[i];
    }
    for (int k = 0; k < ref->n_tensors; k++) {
        const struct r1_param *p = &ref->tensors[k];
        size_t off = (size_t)((float *)p->g.data - ref->grad_mem);
        double gn = 0, gd = 0;
        for (int64_t i = 0; i < r1_tensor_numel(&p->g); i++) {
            gn += ((double)g16[off + i] - g32[off + i]) * ((double)g16[off + i] - g32[off + i]);
            gd += (double)g32[off + i] * g32[off + i];
        }
        worst = fmax(worst, gn / fmax(gd, 1e-30));
    }
    print_message("  scale: cpu bf16 against cpu f32: logp nmse %.3g, loss %.9g vs %.9g, worst "
                  "gradient nmse %.3g\n", num / den, l16, l32, worst);
    free(g32), free(g16);
    r1_model_zero_grad(ref);
}

/* Whole-model parity in one precision: forward logp/entropy, one cross-entropy step's
 * gradients, determinism of both on the DUT, then the loss curve (and in f32 the gradient
 * norms) of 5 AdamW steps.  bf16 (r1_model_set_precision) takes its own tolerances
 * (TOL_MODEL16_FWD: rounding flips). */
#define TRAIN16_LOSS_RTOL 1e-3 /* see TOL_MODEL16_FWD; bf16 against f32: 8.7e-5 at step 0 */
static void model_parity(enum r1_dtype prec, uint64_t seed)
{
    int bf16 = prec == R1_BF16;
    enum tol_id tfwd = bf16 ? TOL_MODEL16_FWD : TOL_MODEL_FWD;
    enum tol_id tgrad = bf16 ? TOL_MODEL16_GRAD : TOL_MODEL_GRAD;
    double loss_rtol = bf16 ? TRAIN16_LOSS_RTOL : TRAIN_LOSS_RTOL;
    const char *pn = bf16 ? " (bf16)" : "";
    rng_seed(seed);
    struct r1_model_config cfg = parity_config();
    struct r1_model *m[2];
    models_create(m, &cfg);
    set_weights(m, bf16 ? 23 : 21, 0.1f);
    struct mbatch mb;
    make_batch(&mb, cfg.vocab_size);
    struct r1_batch b = {MB, MT, mb.tok, mb.pos, mb.seg, mb.tgt};
    if (bf16 && verbose)
        print_bf16_scale(m[REF], &b, &mb);
    float logp[2][MB * MT], ent[2][MB * MT], again[MB * MT];
    char what[96];
    for (int s = 0; s < 2; s++) {
        if (r1_model_set_precision(m[s], prec))
            fail_msg("r1_model_set_precision on %s: %s", side_name(s), r1_err_last());
        assert_int_equal(r1_model_reserve(m[s], MB, MT), 0);
        if (r1_model_forward(m[s], &b, logp[s], ent[s]))
            fail_msg("r1_model_forward%s on %s: %s", pn, side_name(s), r1_err_last());
    }
    snprintf(what, sizeof(what), "model forward logp%s", pn);
    check_host(logp[DUT], logp[REF], MB * MT, tfwd, what);
    snprintf(what, sizeof(what), "model forward entropy%s", pn);
    check_host(ent[DUT], ent[REF], MB * MT, tfwd, what);
    assert_int_equal(r1_model_forward(m[DUT], &b, again, ent[DUT]), 0);
    if (memcmp(again, logp[DUT], sizeof(again)) != 0)
        fail_msg("model forward%s: two runs on %s differ", pn, OPS(DUT)->name);

    /* one cross-entropy step from zero gradients, then the same again (bitwise) */
    double loss[2];
    for (int s = 0; s < 2; s++) {
        r1_model_zero_grad(m[s]);
        if (r1_model_ce_step(m[s], &b, mb.w, mb.denom, &loss[s]))
            fail_msg("r1_model_ce_step%s on %s: %s", pn, side_name(s), r1_err_last());
    }
    if (!(fabs(loss[DUT] - loss[REF]) <= loss_rtol * fabs(loss[REF])))
        fail_msg("ce_step loss%s: gpu %.9g, cpu %.9g", pn, loss[DUT], loss[REF]);
    snprintf(what, sizeof(what), "ce_step grad%s", pn);
    check_grads(m, tgrad, what);
    float *g1 = malloc(m[DUT]->grads.cap), *g2 = malloc(m[DUT]->grads.cap);
    download_grads(m[DUT], g1);
    r1_model_zero_grad(m[DUT]);
    assert_int_equal(r1_model_ce_step(m[DUT], &b, mb.w, mb.denom, &loss[DUT]), 0);
    download_grads(m[DUT], g2);
    if (memcmp(g1, g2, m[DUT]->grads.cap) != 0)
        fail_msg("ce_step%s: two runs on %s give different gradients", pn, OPS(DUT)->name);
    free(g1), free(g2);

    /* one policy-gradient step (clipped ratios, KL, entropy bonus) from zero gradients */
    static float old[MB * MT], ref[MB * MT], adv[MB * MT];
    for (int i = 0; i < MB * MT; i++) {
        old[i] = logp[REF][i] + rng_uniform(-0.5f, 0.5f);
        ref[i] = logp[REF][i] + rng_uniform(-0.1f, 0.1f);
        adv[i] = rng_uniform(0.2f, 1); /* one sign: the loss a sum without cancellation */
    }
    struct r1_pg_cfg pc = {0.2f, 0.28f, 0.04f, 0.01f};
    struct r1_pg_tokens pt = {old, ref, adv, mb.w};
    struct r1_pg_stats pst[2];
    memset(pst, 0, sizeof(pst));
    for (int s = 0; s < 2; s++) {
        r1_model_zero_grad(m[s]);
        if (r1_model_pg_step(m[s], &b, &pc, &pt, &pst[s]))
            fail_msg("r1_model_pg_step%s on %s: %s", pn, side_name(s), r1_err_last());
    }
    if (!(fabs(pst[DUT].loss - pst[REF].loss) <= loss_rtol * fabs(pst[REF].loss)) ||
        pst[DUT].n_tokens != pst[REF].n_tokens || !(pst[REF].clip_low + pst[REF].clip_high > 0))
        fail_msg("pg_step%s: loss gpu %.9g cpu %.9g, tokens %g %g, clipped %g %g", pn,
                 pst[DUT].loss, pst[REF].loss, pst[DUT].n_tokens, pst[REF].n_tokens,
                 pst[REF].clip_low, pst[REF].clip_high);
    snprintf(what, sizeof(what), "pg_step grad%s", pn);
    check_grads(m, tgrad, what);

    /* 5 AdamW steps (clipping and weight decay on) */
    struct r1_optim_config oc;
    r1_optim_config_default(&oc);
    oc.lr = 1e-3f;
    struct r1_optim *o[2];
    double curve[2][5], norm[2][5];
    for (int s = 0; s < 2; s++) {
        r1_model_zero_grad(m[s]);
        assert_int_equal(r1_optim_create(&o[s], m[s], &oc), 0);
        for (int step = 0; step < 5; step++) {
            if (r1_model_ce_step(m[s], &b, mb.w, mb.denom, &curve[s][step]) || r1_optim_step(o[s]))
                fail_msg("training step %d%s on %s: %s", step, pn, side_name(s), r1_err_last());
            norm[s][step] = o[s]->last_grad_norm;
        }
    }
    for (int step = 0; step < 5; step++) {
        if (verbose)
            print_message("  train step %d%s: loss gpu %.9g cpu %.9g, grad norm gpu %.9g cpu "
                          "%.9g\n", step, pn, curve[DUT][step], curve[REF][step], norm[DUT][step],
                          norm[REF][step]);
        if (!(fabs(curve[DUT][step] - curve[REF][step]) <= loss_rtol * fabs(curve[REF][step])))
            fail_msg("training step %d%s: loss gpu %.9g, cpu %.9g (relative tolerance %g)", step,
                     pn, curve[DUT][step], curve[REF][step], loss_rtol);
        if (!bf16 && !(fabs(norm[DUT][step] - norm[REF][step]) <= loss_rtol * norm[REF][step]))
            fail_msg("training step %d: grad norm gpu %.9g, cpu %.9g", step, norm[DUT][step],
                     norm[REF][step]);
    }
    if (!(curve[REF][4] < curve[REF][0]))
        fail_msg("the reference loss%s did not decrease (%g -> %g): the harness trains nothing",
                 pn, curve[REF][0], curve[REF][4]);
    for (int s = 0; s < 2; s++) {
        r1_optim_free(o[s]);
        r1_model_free(m[s]);
    }
}

static void test_model(void **state)
{
    (void)state;
    model_parity(R1_F32, 117);
}

static void test_model_bf16(void **state)
{
    (void)state;
    SKIP_WITHOUT(have_matmul16(), "matmul16 ops");
    model_parity(R1_BF16, 119);
}

/* KV-cache decode logits: a mixed prefill of two slots, then decodes at three slots,
 * with the model's f32 weights and (when both backends have the bf16 ops) bf16 copies */
/* r1_kv_cache_sample after a decode that left its logits on the backend (logits NULL) draws
 * what r1_sample_token draws from the same logits (host logits (n, V)); it refuses more rows
 * than the decode left */
static void decode_sample(struct r1_model *m, struct r1_kv_cache *c, const float *logits, int n,
                          const int32_t *tok, const int32_t *slot, const int32_t *pos)
{
    int V = m->cfg.vocab_size;
    int32_t idx[3] = {0, 1, 2}, got[3];
    float u[3] = {0.25f, 0.5f, 0.875f}, lp[3];
    assert_true(n <= 3);
    const struct r1_sampling sm = {0.9f, 50, 0.95f, 0.0f};
    struct r1_sample_scratch scr;
    assert_int_equal(r1_sample_scratch_init(&scr, V), 0);
    /* the same tokens at the same places again: the same keys, values and logits */
    if (r1_model_decode(m, c, n, tok, slot, pos, n, idx, NULL) ||
        r1_kv_cache_sample(c, &sm, n, V, u, got, lp))
        fail_msg("decode and sample on the backend: %s", r1_err_last());
    for (int i = 0; i < n; i++) {
        float want_lp;
        int32_t want = r1_sample_token(logits + (size_t)i * V, V, &sm, u[i], &want_lp, &scr);
        if (got[i] != want || !(fabsf(lp[i] - want_lp) <= 1e-5f * fmaxf(1, -want_lp)))
            fail_msg("decode row %d sampled on the backend: token %d logprob %g, from its "
                     "logits on the host %d %g", i, got[i], (double)lp[i], want,
                     (double)want_lp);
    }
    assert_int_equal(r1_kv_cache_sample(c, &sm, n + 1, V, u, got, lp), R1_EINVAL);
    assert_int_equal(r1_kv_cache_sample(c, &sm, n, V + 1, u, got, lp), R1_EINVAL);
    r1_sample_scratch_release(&scr);
}

static void test_model_decode(void **state)
{
    (void)state;
    rng_seed(118);
    struct r1_model_config cfg = parity_config();
    struct r1_model *m[2];
    models_create(m, &cfg);
    set_weights(m, 22, 0.1f);
    int V = cfg.vocab_size;
    int32_t tok1[15], slot1[15], pos1[15], idx1[15];
    for (int n = 0; n < 15; n++) {
        tok1[n] = (int32_t)(rng_u32() % (uint32_t)V);
        slot1[n] = n < 10 ? 1 : 0;
        pos1[n] = n < 10 ? n : n - 10;
        idx1[n] = n;
    }
    const int32_t tok2[3] = {5, 300, 0}, slot2[3] = {0, 1, 2}, pos2[3] = {5, 10, 0};
    const int32_t idx2[3] = {0, 1, 2};
    float *lg[2];
    for (int dt = 0; dt < 2; dt++) {
        if (dt == 1 && !have_bf16()) {
            print_message("no bf16 ops on both backends: bf16 decode not compared\n");
            break;
        }
        for (int s = 0; s < 2; s++) {
            struct r1_kv_cache *c = NULL;
            lg[s] = malloc(sizeof(float) * 18 * V);
            if (r1_kv_cache_create(&c, m[s], 3, 32, 16) ||
                r1_kv_cache_set_weights(c, m[s], dt ? R1_BF16 : R1_F32) ||
                r1_model_decode(m[s], c, 15, tok1, slot1, pos1, 15, idx1, lg[s]) ||
                r1_model_decode(m[s], c, 3, tok2, slot2, pos2, 3, idx2, lg[s] + 15 * (size_t)V))
                fail_msg("decode on %s: %s", side_name(s), r1_err_last());
            if (s == DUT && OPS(DUT)->sample) /* the step's logits, sampled where they are */
                decode_sample(m[s], c, lg[s] + 15 * (size_t)V, 3, tok2, slot2, pos2);
            r1_kv_cache_free(c);
        }
        check_host(lg[DUT], lg[REF], 18 * (int64_t)V, TOL_MODEL_DECODE,
                   dt ? "model decode logits (bf16 weights)" : "model decode logits (f32 weights)");
        free(lg[0]), free(lg[1]);
    }
    r1_model_free(m[0]), r1_model_free(m[1]);
}

/* Decode-only steps replayed from recorded graphs give the bits of the same steps run op by
 * op: step sizes that change (a graph per size, each replayed at new positions), mixed
 * prefill steps between them, both weight precisions. */
static void test_decode_graph(void **state)
{
    (void)state;
    SKIP_WITHOUT(OPS(DUT)->graph_begin, "graph ops");
    rng_seed(122);
    struct r1_model_config cfg = parity_config();
    cfg.max_seq_len = 320;
    struct r1_model *m[2];
    models_create(m, &cfg);
    set_weights(m, 23, 0.1f);
    int V = cfg.vocab_size;
    /* {slots in the step (0..n-1), tokens per slot}: 3 is a prefill, 1 a decode; slot 0
     * is prefilled to 272 positions first, so its decodes take two of the decode
     * attention's 256-position splits (the workspace and the merge, inside the graphs) */
    const int steps[][2] = {{1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16},
                            {1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16}, {1, 16},
                            {1, 16}, {1, 16}, {1, 16}, {4, 3},  {4, 1},  {4, 1},  {3, 1},
                            {4, 2},  {4, 1},  {3, 1},  {1, 1}};
    for (int dt = 0; dt < 2; dt++) {
        if (dt == 1 && !have_bf16())
            break;
        struct r1_kv_cache *c[2] = {NULL, NULL}; /* [0] op by op, [1] graphs */
        for (int k = 0; k < 2; k++)
            if (r1_kv_cache_create(&c[k], m[DUT], 4, 320, 16) ||
                r1_kv_cache_set_weights(c[k], m[DUT], dt ? R1_BF16 : R1_F32) ||
                r1_kv_cache_set_graphs(c[k], k))
                fail_msg("kv cache: %s", r1_err_last());
        int len[4] = {0};
        float *lg[2] = {malloc(sizeof(float) * 16 * V), malloc(sizeof(float) * 16 * V)};
        for (int st = 0; st < (int)(sizeof(steps) / sizeof(steps[0])); st++) {
            int32_t tok[16], slot[16], pos[16], idx[16];
            int N = 0, n_out = 0;
            for (int s = 0; s < steps[st][0]; s++) {
                for (int t = 0; t < steps[st][1]; t++) {
                    tok[N] = (int32_t)(rng_u32() % (uint32_t)V);
                    slot[N] = s, pos[N] = len[s]++;
                    N++;
                }
                idx[n_out++] = N - 1; /* the last token of each slot */
            }
            for (int k = 0; k < 2; k++)
                if (r1_model_decode(m[DUT], c[k], N, tok, slot, pos, n_out, idx, lg[k]))
                    fail_msg("decode step %d: %s", st, r1_err_last());
            if (memcmp(lg[0], lg[1], sizeof(float) * (size_t)n_out * V) != 0)
                fail_msg("decode step %d (%d tokens, %s weights): the graph's logits differ from "
                         "the ops'", st, N, dt ? "bf16" : "f32");
        }
        assert_non_null(c[1]->graphs[dt][4]); /* the decodes did go through graphs */
        assert_non_null(c[1]->graphs[dt][3]);
        assert_null(c[0]->graphs[dt][4]);
        free(lg[0]), free(lg[1]);
        r1_kv_cache_free(c[0]), r1_kv_cache_free(c[1]);
    }
    r1_model_free(m[0]), r1_model_free(m[1]);
}

/* Greedy generation on the tiny preset (f32 weights), 4 prompts through 2 slots with
 * chunked prefill (continuous batching): the same tokens on both backends.  The
 * reference's top-2 logit gap along its greedy paths is checked first, so that equal
 * tokens are a fair demand (a near tie could flip on any rounding). */
static void test_generate(void **state)
{
    (void)state;
    struct r1_model_config cfg;
    r1_model_config_preset(&cfg, "tiny");
    struct r1_model *m[2];
    models_create(m, &cfg);
    /* std 0.3, seed 4: peaked, input-dependent paths whose smallest top-2 gap is 0.016 */
    set_weights(m, 4, 0.3f);
    struct r1_tokenizer *tok = NULL;
    assert_int_equal(r1_tokenizer_bytes_create(&tok), 0);
    const char *prompts[4] = {"12+30=", "hello world, ", "a", "<think>2+3"};
    enum { NEW = 24 };
    int32_t out[2][4][NEW];
    float lp[2][4][NEW];
    int n[2][4];
    int32_t *ids[4];
    int len[4];
    struct r1_gen_request rq[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r1_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), &ids[i], &len[i]),
                         0);
        rq[i] = (struct r1_gen_request){ids[i], len[i], (uint64_t)i};
    }
    struct r1_gen_config gc = {{0.0f, 0, 1.0f, 0.0f}, NEW, 1, NULL, 0, NULL, 0, R1_F32};
    for (int s = 0; s < 2; s++) {
        struct r1_generator *g = NULL;
        struct r1_gen_result rs[4];
        for (int i = 0; i < 4; i++)
            rs[i] = (struct r1_gen_result){out[s][i], lp[s][i], 0, 0};
        if (r1_generator_create(&g, m[s], tok, 2, 48, 5) ||
            r1_generate(g, &gc, rq, 4, rs, NULL, NULL))
            fail_msg("generate on %s: %s", side_name(s), r1_err_last());
        for (int i = 0; i < 4; i++)
            n[s][i] = rs[i].n;
        r1_generator_free(g);
    }

    /* the reference's margins along its own greedy paths (full forward, no cache) */
    int V = cfg.vocab_size;
    assert_int_equal(r1_model_reserve(m[REF], 1, 48), 0);
    float *logits = malloc(sizeof(float) * V);
    double min_margin = INFINITY;
    for (int i = 0; i < 4; i++) {
        int32_t seq[48], pos[48], seg[48], tgt[48];
        memcpy(seq, ids[i], sizeof(int32_t) * len[i]);
        memcpy(seq + len[i], out[REF][i], sizeof(int32_t) * n[REF][i]);
        for (int t = 0; t < n[REF][i]; t++) {
            int L = len[i] + t;
            for (int j = 0; j < L; j++)
                pos[j] = j, seg[j] = 0, tgt[j] = -1;
            struct r1_batch b = {1, L, seq, pos, seg, tgt};
            int32_t row = L - 1;
            assert_int_equal(r1_model_logits(m[REF], &b, &row, 1, logits), 0);
            int best = 0;
            for (int v = 1; v < V; v++)
                best = logits[v] > logits[best] ? v : best;
            double second = -INFINITY;
            for (int v = 0; v < V; v++)
                if (v != best)
                    second = fmax(second, logits[v]);
            assert_int_equal(out[REF][i][t], best);
            min_margin = fmin(min_margin, logits[best] - second);
        }
    }
    free(logits);
    if (verbose)
        print_message("  greedy: smallest top-2 logit gap of the reference %.4g\n", min_margin);
    if (!(min_margin >= GREEDY_MIN_MARGIN))
        fail_msg("the test model's greedy paths have a near tie (gap %g < %g): change its "
                 "weights (set_weights seed or std)",
                 min_margin, GREEDY_MIN_MARGIN);
    for (int i = 0; i < 4; i++) {
        if (n[DUT][i] != n[REF][i])
            fail_msg("prompt %d: %d tokens on the gpu, %d on the cpu", i, n[DUT][i], n[REF][i]);
        for (int t = 0; t < n[REF][i]; t++)
            if (out[DUT][i][t] != out[REF][i][t])
                fail_msg("prompt %d ('%s') token %d: gpu %d, cpu %d", i, prompts[i], t,
                         out[DUT][i][t], out[REF][i][t]);
        free(ids[i]);
    }
    r1_tokenizer_free(tok);
    r1_model_free(m[0]), r1_model_free(m[1]);
}

/* ---- main ---------------------------------------------------------------------------- */

static void print_summary(void)
{
    fprintf(stderr, "test-cuda: worst nmse per op (%s against %s)\n", OPS(DUT)->name,
            OPS(REF)->name);
    for (int t = 0; t < TOL_COUNT; t++)
        if (worst_where[t][0])
            fprintf(stderr, "  %-20s %9.3g of max %.0e at %s\n", tols[t].op, worst_nmse[t],
                    tols[t].nmse, worst_where[t]);
}

/* The real SmolLM2-135M-Instruct (the GGUF of tools/fetch-model smollm2, found as
 * test-gguf-smollm2 finds it; the test is skipped without it): greedy generation on the
 * GPU gives the CPU's tokens, with f32 and with bf16 generation weights (f32 only on the
 * emulator), three prompts of 20 new tokens.  The backends sum in other orders, so a
 * token may differ where the model's two best were all but tied: a divergence is
 * accepted only where the two sides' chosen tokens had log-probs within tie_tol (then
 * the rest of that sequence is not compared; none is expected and any is printed);
 * elsewhere the log-probs agree within lp_tol. */
static void test_generate_smollm2(void **state)
{
    (void)state;
    char path[4096];
    const char *cache = getenv("R1_CACHE"), *home = getenv("HOME");
    if (cache && *cache)
        snprintf(path, sizeof(path), "%s/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
    else
        snprintf(path, sizeof(path), "%s/.cache/r1/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                 home ? home : "");
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test_generate_smollm2: skipped: %s is missing (tools/fetch-model "
                "smollm2)\n", path);
        skip();
    }
    struct r1_model *m[2] = {NULL, NULL};
    struct r1_tokenizer *tok[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++)
        if (r1_model_open(&m[s], &tok[s], bes[s], path))
            fail_msg("%s on %s: %s", path, side_name(s), r1_err_last());
    static const char *prompts[3] = {"The capital of France is",
                                     "def add(a, b):\n    return",
                                     "Question: what is 12 + 30?\nAnswer:"};
    enum { NP = 3, NEW = 20, MAXLEN = 64 };
    int32_t *ids[NP];
    int len[NP];
    struct r1_gen_request rq[NP];
    for (int i = 0; i < NP; i++) {
        assert_int_equal(r1_tokenizer_encode(tok[REF], prompts[i], strlen(prompts[i]), &ids[i],
                                             &len[i]),
                         0);
        assert_true(len[i] + NEW <= MAXLEN);
        rq[i] = (struct r1_gen_request){ids[i], len[i], (uint64_t)i};
    }
#ifdef R1_TEST_CUDA_EMU
    int n_weights = 1; /* bf16 weights take the emulator ~3.5 min (its WMMA); f32 ~12 s */
#else
    int n_weights = 2;
#endif
    for (int wi = 0; wi < n_weights; wi++) {
        enum r1_dtype wt = wi ? R1_BF16 : R1_F32;
        /* f32: log-probs within 7.6e-6 on the emulator.  bf16: both sides round the same
         * operands, but an input that lands on the other side of a bf16 rounding boundary
         * moves by 2^-8 relative, and such flips compound over 30 layers and the tokens
         * before (on the emulator, 0.04 apart after 16 tokens of prompt 1) */
        double lp_tol = wi ? 0.15 : 1e-3, tie_tol = wi ? 0.15 : 1e-3;
        int32_t out[2][NP][NEW];
        float lp[2][NP][NEW];
        int n[2][NP];
        struct r1_gen_config gc = {{0.0f, 0, 1.0f, 0.0f}, NEW, 1, NULL, 0, NULL, 0, wt};
        for (int s = 0; s < 2; s++) {
            struct r1_generator *g = NULL;
            struct r1_gen_result rs[NP];
            for (int i = 0; i < NP; i++)
                rs[i] = (struct r1_gen_result){out[s][i], lp[s][i], 0, 0};
            if (r1_generator_create(&g, m[s], tok[REF], NP, MAXLEN, 32) ||
                r1_generate(g, &gc, rq, NP, rs, NULL, NULL))
                fail_msg("SmolLM2 generate on %s: %s", side_name(s), r1_err_last());
            for (int i = 0; i < NP; i++)
                n[s][i] = rs[i].n;
            r1_generator_free(g);
        }
        double worst = 0;
        for (int i = 0; i < NP; i++) {
            int t = 0, diverged = 0;
            for (; t < n[REF][i] && t < n[DUT][i]; t++) {
                double d = fabs((double)lp[REF][i][t] - lp[DUT][i][t]);
                if (out[REF][i][t] != out[DUT][i][t]) {
                    fprintf(stderr, "test_generate_smollm2: %s weights, prompt %d: token %d is "
                            "%d on the cpu (log-prob %.6f), %d on the gpu (%.6f)\n",
                            wi ? "bf16" : "f32", i, t, out[REF][i][t], lp[REF][i][t],
                            out[DUT][i][t], lp[DUT][i][t]);
                    if (d > tie_tol)
                        fail_msg("SmolLM2 greedy, %s weights, prompt %d: the gpu's token %d "
                                 "is no near tie (log-probs %.6f vs %.6f)", wi ? "bf16" : "f32",
                                 i, t, lp[REF][i][t], lp[DUT][i][t]);
                    diverged = 1;
                    break;
                }
                if (!(d <= lp_tol))
                    fail_msg("SmolLM2 greedy, %s weights, prompt %d, token %d: log-prob %.6f "
                             "on the gpu vs %.6f on the cpu", wi ? "bf16" : "f32", i, t,
                             lp[DUT][i][t], lp[REF][i][t]);
                worst = fmax(worst, d);
            }
            if (!diverged && n[REF][i] != n[DUT][i])
                fail_msg("SmolLM2 greedy, %s weights, prompt %d: %d tokens on the cpu, %d on "
                         "the gpu", wi ? "bf16" : "f32", i, n[REF][i], n[DUT][i]);
        }
        if (verbose)
            fprintf(stderr, "  SmolLM2 greedy, %s weights: %d+%d+%d tokens, log-probs within "
                    "%.3g\n", wi ? "bf16" : "f32", n[REF][0], n[REF][1], n[REF][2], worst);
    }
    for (int i = 0; i < NP; i++)
        free(ids[i]);
    for (int s = 0; s < 2; s++) {
        r1_model_free(m[s]);
        r1_tokenizer_free(tok[s]);
    }
}

/* test-cuda [pattern]: runs the tests whose name matches the glob pattern */
int main(int argc, char **argv)
{
    const char *as_cpu = getenv("R1_TEST_CUDA_AS_CPU");
    const char *vb = getenv("R1_TEST_VERBOSE");
    verbose = vb && *vb && strcmp(vb, "0") != 0;
    if (as_cpu && *as_cpu && strcmp(as_cpu, "0") != 0) {
        if (r1_backend_cpu_create(&bes[DUT], 1)) {
            fprintf(stderr, "test-cuda: %s\n", r1_err_last());
            return 1;
        }
    } else if (r1_backend_create(&bes[DUT], R1_BACKEND_CUDA, 0)) {
        const char *why = r1_err_last();
        const char *req = getenv("R1_REQUIRE_GPU"); /* a GPU run: no backend is a failure */
        int required = req && *req && strcmp(req, "0") != 0;
        fprintf(stderr, "test-cuda: %s: %s\n", required ? "FAILED (R1_REQUIRE_GPU)" : "skipped",
                why && *why ? why : "the CUDA backend could not be created");
        return required ? 1 : 77;
    }
    if (r1_backend_cpu_create(&bes[REF], 2)) {
        fprintf(stderr, "test-cuda: %s\n", r1_err_last());
        r1_backend_free(bes[DUT]);
        return 1;
    }
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_matmul_forward),
        cmocka_unit_test(test_matmul_backward),
        cmocka_unit_test(test_convert_bf16),
        cmocka_unit_test(test_matmul_forward_bf16),
        cmocka_unit_test(test_matmul16),
        cmocka_unit_test(test_matmul_bias_unfused),
        cmocka_unit_test(test_matmul_plan_cache),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_forward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_attention16),
        cmocka_unit_test(test_attention_cached),
        cmocka_unit_test(test_attention_decode_long),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_add_scale),
        cmocka_unit_test(test_sumsq),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_pg_loss),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adamw_ranges),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_model_bf16),
        cmocka_unit_test(test_model_decode),
        cmocka_unit_test(test_decode_graph),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_generate_smollm2),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (verbose)
        print_summary();
    r1_backend_free(bes[REF]);
    r1_backend_free(bes[DUT]);
    return rc;
}
