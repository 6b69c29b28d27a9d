/* sample.cu - next-token sampling on the GPU (the backend op `sample`).
 *
 * The pipeline of core/sample.c (temperature, top-k, top-p, min-p, then one draw with the
 * host's uniform u), one block per row of logits, so a decode step downloads a token and a
 * log-probability per sequence instead of its V logits.  What is the same as on the host:
 *  - the weights: w_i = exp((x_i − max) / T) by the same polynomial (r1_smp_exp_neg below
 *    is core/sample.c's exp_neg with every operation rounded on its own, no FMA
 *    contraction), so every w_i has the host's bits;
 *  - the order "best first": larger logit first, lower id on equal logits, NaN last, as
 *    the 64-bit key ord(logit) << 32 | ~id (larger key = better; −0 counts as +0);
 *  - the rules: top-k keeps the k best; top-p the shortest best-first prefix of the kept
 *    whose mass reaches top_p of theirs (>=); min-p the kept with w >= min_p; the draw
 *    takes the first token whose running sum passes u·Σkept (>), walking ids in id order
 *    when neither top-k nor top-p is on and best first otherwise; when rounding leaves the
 *    sum short of the target, the last token with positive weight; greedy is the argmax
 *    (lowest id on ties) with the log-softmax of the raw logits.
 * What differs: sums are taken in double in another order (block trees instead of the
 * host's running sums), so where u lands within rounding (~1e-16 relative) of the
 * boundary between two tokens the choice can differ, and log-probabilities agree to
 * float rounding.
 *
 * How (no atomics, no sort, nothing allocated; every thread of a block runs the same
 * path, the branches depend on block-wide results only):
 *  - a best-first position (the k-th best for top-k, top-p's cut, the draw) is found by
 *    radix selection on the 64-bit key, 4 bits a pass: each thread sums the weights (or
 *    counts) of its elements in 16 buckets of the next digit, the block adds them up in a
 *    fixed tree, every thread walks the buckets best first to the one the running sum
 *    crosses in, and the next pass looks inside it.  It stops when that bucket holds one
 *    element (usually after 4-6 passes);
 *  - the id-order draw cuts the row into one contiguous chunk per thread, sums each chunk,
 *    scans the chunk sums in order, and the thread whose chunk the target falls in walks
 *    it.
 * Weights are recomputed in every pass rather than stored: a pass reads the row (L1/L2)
 * and spends ~20 flops per element, no workspace of (N, V).
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include "core/sample.h"

#include <float.h>
#include <math.h>

#define R1_SMP_THREADS 512
#define R1_SMP_WARPS (R1_SMP_THREADS / 32)

typedef unsigned long long r1_u64;

struct r1_smp_args {
    float inv_t;   /* 1 / temperature, as core/sample.c rounds it */
    float min_p;   /* 0: off */
    float top_p;   /* >= 1: off */
    int top_k;     /* 0: off (also when >= V) */
    int greedy;
};

struct r1_smp_shared {
    double hs[R1_SMP_WARPS][16];
    int hc[R1_SMP_WARPS][16];
    double s[16];
    int c[16];
    double d[32];
    r1_u64 k[32];
    double chunk[R1_SMP_THREADS + 1]; /* id-order draw: chunk sums, then their prefix sums */
    int pick;
};

/* core/sample.c's exp_neg, each operation rounded to float on its own */
__device__ __forceinline__ float r1_smp_exp_neg(float x)
{
    float xc = x < -87.0f ? -87.0f : x;
    float k = __fsub_rn(__fadd_rn(__fmul_rn(xc, 1.44269504088896341f), 12582912.0f), 12582912.0f);
    float r = __fsub_rn(xc, __fmul_rn(k, 0.693359375f));
    r = __fsub_rn(r, __fmul_rn(k, -2.12194440e-4f));
    float p = 1.9875691500e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999507e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.3334519073e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665795894e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665459e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 5.0000001201e-1f);
    float y = __fadd_rn(__fadd_rn(__fmul_rn(p, __fmul_rn(r, r)), r), 1.0f);
    y = __fmul_rn(y, __uint_as_float((unsigned)((int)k + 127) << 23));
    return x < -87.0f ? 0.0f : y;
}

/* larger = better: the float's order, −0 as +0, NaN below −inf */
__device__ __forceinline__ r1_u64 r1_smp_key(float x, int i)
{
    unsigned b = x == 0.0f ? 0u : __float_as_uint(x);
    unsigned o = x != x ? 0u : (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((r1_u64)o << 32) | (r1_u64)(~(unsigned)i);
}

__device__ __forceinline__ int r1_smp_id(r1_u64 key)
{
    return (int)~(unsigned)(key & 0xffffffffu);
}

/* the row and which of its tokens are kept: key >= kmin and w >= bar (bar 0: every w) */
struct r1_smp_row {
    const float *x;
    int V;
    float m, inv_t, bar;
    r1_u64 kmin;

    __device__ float weight(float xi) const
    {
        return r1_smp_exp_neg(__fmul_rn(__fsub_rn(xi, m), inv_t));
    }
    /* token i kept and its key under mask equal to prefix: its key and weight */
    __device__ bool elem(int i, r1_u64 mask, r1_u64 prefix, r1_u64 *key, float *w) const
    {
        float xi = x[i];
        r1_u64 k = r1_smp_key(xi, i);
        if (k < kmin || (k & mask) != prefix)
            return false;
        float wi = weight(xi);
        if (wi < bar)
            return false;
        *key = k;
        *w = wi;
        return true;
    }
};

struct r1_smp_max {
    __device__ r1_u64 operator()(r1_u64 a, r1_u64 b) const { return a > b ? a : b; }
};
struct r1_smp_min {
    __device__ r1_u64 operator()(r1_u64 a, r1_u64 b) const { return a < b ? a : b; }
};

/* op over the block, every thread gets the result (warps in order at the second level) */
template <class Op> __device__ r1_u64 r1_smp_reduce(r1_u64 v, r1_u64 *sh, Op op)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(R1_CUDA_FULL_MASK, v, o));
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    r1_u64 r = sh[0];
    for (int i = 1; i < nwarps; i++)
        r = op(r, sh[i]);
    return r;
}

/* Σ w over the kept tokens, in double */
__device__ double r1_smp_sum(const r1_smp_row &r, r1_smp_shared *sh)
{
    double s = 0.0;
    r1_u64 key;
    float w;
    for (int i = threadIdx.x; i < r.V; i += blockDim.x)
        if (r.elem(i, 0, 0, &key, &w))
            s += (double)w;
    return r1_block_sum(s, sh->d);
}

/* Walking the kept tokens best first and summing their weights (weighted) or counting
 * them, the key of the first whose running sum reaches target (inclusive: >=) or passes
 * it (>); 0 (no token's key) when the total falls short of it. */
__device__ r1_u64 r1_smp_select(const r1_smp_row &r, double target, int inclusive, int weighted,
                                r1_smp_shared *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    r1_u64 prefix = 0, mask = 0;
    double acc = 0.0; /* the weight of the kept tokens better than the prefix's */
    int shift = 60;
    for (;; shift -= 4) {
        double hs[16];
        int hc[16];
#pragma unroll
        for (int b = 0; b < 16; b++)
            hs[b] = 0.0, hc[b] = 0;
        r1_u64 key;
        float w;
        for (int i = threadIdx.x; i < r.V; i += blockDim.x) {
            if (!r.elem(i, mask, prefix, &key, &w))
                continue;
            int d = (int)(key >> shift) & 15;
            hs[d] += weighted ? (double)w : 1.0;
            hc[d]++;
        }
#pragma unroll
        for (int b = 0; b < 16; b++) {
            hs[b] = r1_warp_sum(hs[b]);
            hc[b] = r1_warp_sum(hc[b]);
        }
        __syncthreads(); /* the previous pass's sums are read */
        if (lane == 0)
            for (int b = 0; b < 16; b++)
                sh->hs[warp][b] = hs[b], sh->hc[warp][b] = hc[b];
        __syncthreads();
        if (threadIdx.x < 16) {
            double s = 0.0;
            int c = 0;
            for (int j = 0; j < nwarps; j++)
                s += sh->hs[j][threadIdx.x], c += sh->hc[j][threadIdx.x];
            sh->s[threadIdx.x] = s;
            sh->c[threadIdx.x] = c;
        }
        __syncthreads();
        /* every thread walks the same sums: the same choice */
        int pick = -1, last = -1;
        double a = acc, a_last = acc;
        for (int b = 15; b >= 0; b--) {
            if (sh->c[b] == 0)
                continue;
            double reach = a + sh->s[b];
            last = b, a_last = a;
            if (inclusive ? reach >= target : reach > target) {
                pick = b;
                break;
            }
            a = reach;
        }
        if (pick < 0) {
            if (shift == 60 || last < 0)
                return 0; /* the total never gets there */
            /* the bucket's sum crossed, the sums of its parts in another order do not:
             * the crossing is at its end, its worst token */
            pick = last, a = a_last;
        }
        acc = a;
        prefix |= (r1_u64)pick << shift;
        mask |= (r1_u64)15 << shift;
        if (shift == 0)
            return prefix;
        if (sh->c[pick] == 1)
            break;
    }
    /* one kept token has this prefix: its key */
    r1_u64 best = 0, key;
    float w;
    for (int i = threadIdx.x; i < r.V; i += blockDim.x)
        if (r.elem(i, mask, prefix, &key, &w))
            best = key;
    return r1_smp_reduce(best, sh->k, r1_smp_max());
}

/* The draw over every id in id order (no top-k, no top-p): the first id whose running
 * sum of w (0 below bar) passes u·Σ; *sum gets Σ. */
__device__ int r1_smp_draw_ids(const r1_smp_row &r, float u, double *sum, r1_smp_shared *sh)
{
    int t = threadIdx.x, nt = blockDim.x, per = (r.V + nt - 1) / nt;
    int i0 = min(r.V, t * per), i1 = min(r.V, i0 + per);
    double s = 0.0;
    int last = -1;
    for (int i = i0; i < i1; i++) {
        float w = r.weight(r.x[i]);
        if (w >= r.bar && w > 0.0f)
            s += (double)w, last = i;
    }
    sh->chunk[t] = s;
    if (t == 0)
        sh->pick = -1;
    __syncthreads();
    if (t == 0) { /* exclusive prefix sums, in chunk order */
        double acc = 0.0;
        for (int j = 0; j < nt; j++) {
            double cj = sh->chunk[j];
            sh->chunk[j] = acc;
            acc += cj;
        }
        sh->chunk[nt] = acc;
    }
    __syncthreads();
    double before = sh->chunk[t], total = sh->chunk[nt];
    double target = (double)u * total;
    if (before <= target && before + s > target) { /* one thread: the target is in its chunk */
        double run = 0.0;
        for (int i = i0; i < i1; i++) {
            float w = r.weight(r.x[i]);
            if (!(w >= r.bar && w > 0.0f))
                continue;
            run += (double)w; /* the chunk's sum in its order: crosses by the chunk's end */
            if (before + run > target) {
                sh->pick = i;
                break;
            }
        }
    }
    __syncthreads();
    *sum = total;
    int pick = sh->pick;
    if (pick >= 0)
        return pick;
    /* u·Σ >= Σ by rounding: the last id with positive weight */
    return (int)r1_smp_reduce((r1_u64)(last + 1), sh->k, r1_smp_max()) - 1;
}

__global__ void r1_sample_rows(int32_t *tokens, float *logprobs, const float *logits,
                               int64_t ld, const float *u, int V, r1_smp_args a)
{
    __shared__ r1_smp_shared sh;
    int row = blockIdx.x;
    r1_smp_row r;
    r.x = logits + (int64_t)row * ld;
    r.V = V;
    r.inv_t = a.inv_t;
    r.bar = 0.0f;
    r.kmin = 0;

    r1_u64 best = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        r1_u64 k = r1_smp_key(r.x[i], i);
        best = k > best ? k : best;
    }
    best = r1_smp_reduce(best, sh.k, r1_smp_max());
    int b = r1_smp_id(best);
    float m = r.x[b];
    if (!(m > -INFINITY)) /* every logit −inf or NaN: the host's argmax says token 0 */
        b = 0, m = -INFINITY;
    r.m = m;

    if (a.greedy || !isfinite(m)) {
        double s = 0.0;
        if (isfinite(m)) {
            r.inv_t = 1.0f;
            s = r1_smp_sum(r, &sh);
        }
        if (threadIdx.x == 0) {
            tokens[row] = b;
            logprobs[row] = isfinite(m) ? (float)-log(s) : NAN;
        }
        return;
    }

    float ur = u[row];
    int pick;
    double sum;
    if (a.top_k == 0 && !(a.top_p < 1.0f)) {
        r.bar = a.min_p;
        pick = r1_smp_draw_ids(r, ur, &sum, &sh);
    } else {
        if (a.top_k > 0) /* the k-th best token is the first whose count passes k - 1 */
            r.kmin = r1_smp_select(r, (double)(a.top_k - 1), 0, 0, &sh);
        if (a.top_p < 1.0f) {
            double want = (double)a.top_p * r1_smp_sum(r, &sh);
            r1_u64 cut = r1_smp_select(r, want, 1, 1, &sh);
            if (cut) /* else (rounding) every kept token stays */
                r.kmin = cut;
        }
        r.bar = a.min_p; /* min-p last: the kept tokens with w >= min_p (a best-first prefix) */
        sum = r1_smp_sum(r, &sh);
        r1_u64 k = r1_smp_select(r, (double)ur * sum, 0, 1, &sh);
        if (!k) { /* u·Σ >= Σ by rounding: the worst kept token with positive weight */
            r1_u64 worst = ~(r1_u64)0, key;
            float w;
            for (int i = threadIdx.x; i < V; i += blockDim.x)
                if (r.elem(i, 0, 0, &key, &w) && w > 0.0f && key < worst)
                    worst = key;
            k = r1_smp_reduce(worst, sh.k, r1_smp_min());
        }
        pick = k == ~(r1_u64)0 ? -1 : r1_smp_id(k);
    }
    if (pick < 0) /* no kept token has positive weight (NaN logits): the argmax */
        pick = b;
    if (threadIdx.x == 0) {
        float w = r.weight(r.x[pick]);
        tokens[row] = pick;
        logprobs[row] = (float)(log((double)w) - log(sum));
    }
}

extern "C" void r1_cuda_sample(void *ctx, int32_t *tokens, float *logprobs, const float *logits,
                               int64_t ld, const float *u, int N, int V,
                               const struct r1_sampling *s)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || V <= 0)
        return;
    r1_smp_args a;
    double inv = s->temperature > 0 ? 1.0 / (double)s->temperature : 0.0;
    a.inv_t = inv > FLT_MAX ? FLT_MAX : (float)inv; /* core/sample.c's inv_temperature */
    a.greedy = !(s->temperature > 0);
    a.top_k = s->top_k > 0 && s->top_k < V ? s->top_k : 0;
    a.top_p = s->top_p;
    a.min_p = s->min_p > 0 ? s->min_p : 0.0f;
    R1_LAUNCH(r1_sample_rows, (unsigned)N, R1_SMP_THREADS, cu->stream)(tokens, logprobs, logits,
                                                                     ld, u, V, a);
    R1_CUDA_LAUNCHED(cu, "sample");
}
