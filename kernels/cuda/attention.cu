/* attention.cu - causal, packed, GQA attention and KV-cache attention, CUDA.
 *
 * Shapes as on the CPU (kernels/cpu/attention.c): q (B,T,H,D), k, v (B,T,KVH,D), seg (B,T),
 * out (B,T,H,D), lse (B,H,T); kv caches (S,L,KVH,D).  Key s is visible to query t iff
 * s <= t and seg[s] == seg[t] >= 0; padding queries give out = 0, lse = −inf and zero
 * gradients.  Scale 1/sqrt(D).
 *
 * A warp owns rows of work, lane l holding dimensions l, l+32, ... (D <= 32·R1_ATT_DPL):
 *  - forward: a warp per (b, h, t) walks its visible keys in order with an online softmax
 *    (running max, rescaled sum and output), so no score matrix exists;
 *  - backward: a warp per (b, h, t) computes Di = dout·out and dq = Σ_s dS_ts·k_s with
 *    dS = scale·P·(dP − Di), P recomputed from the saved lse; then a warp per
 *    (b, kv head, s) walks the queries that see key s (every head of its group, t in
 *    order) for dk = Σ dS·q and dv = Σ P·dout.  Each gradient element is summed by one
 *    lane in a fixed order: no atomics;
 *  - cached (decoding): r1_att_dec below, a block per (token, kv head, split of the
 *    positions) for every query head of the kv head's group.
 * Dot products are the butterfly warp sum of reduce.cuh.
 *
 * Tiling (training kernels): a block of R1_ATT_WARPS warps takes R1_ATT_QT consecutive
 * rows of one (b, head) (queries in the forward and dq; keys of one kv head in dk/dv),
 * R1_ATT_QPW per warp, and walks the other side in tiles of att_kt rows that the block
 * loads into shared memory once (K and V, or Q, dout, lse and Di): each row is read from
 * global memory once per block instead of once per row of work.  Every sum still runs over
 * the same keys (queries) in the same order as one row at a time would, so the tiling
 * changes no bits.  Not yet FlashAttention: f32 FMAs, not tensor-core GEMM tiles.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <stdio.h>

#define R1_ATT_DPL 8     /* dimensions per lane: head_dim up to 256 */
#define R1_ATT_WARPS 4   /* warps per block */
#define R1_ATT_THREADS (32 * R1_ATT_WARPS)

/* rows of work per warp (fewer for wide heads: registers), rows per block, and the rows of
 * a shared-memory tile (32 KiB for the two tiles of K and V, or Q and dout) */
template <int DPL> struct r1_att_shape {
    static constexpr int QPW = DPL <= 4 ? 4 : 2;
    static constexpr int QT = R1_ATT_WARPS * QPW;
    static constexpr int KT = DPL <= 4 ? 32 : 16;
    static constexpr int W = 32 * DPL; /* floats per tile row (D rounded up, zero-padded) */
};

/* rows [r0, r0 + n) of a head's slice (D values at src + r·stride) into tile (n, W),
 * zero-padded past D; every thread of the block takes part */
template <int DPL>
__device__ __forceinline__ void r1_att_tile_load(float *tile, const float *src, int64_t stride,
                                                 int r0, int n, int D)
{
    constexpr int W = r1_att_shape<DPL>::W;
    for (int i = threadIdx.x; i < n * W; i += blockDim.x) {
        int r = i / W, d = i % W;
        tile[i] = d < D ? src[(int64_t)(r0 + r) * stride + d] : 0.0f;
    }
}

/* the block's work in the forward and dq kernels: query rows [t0, tend) of (b, h), whose
 * kv head's keys and values start at kb, vb (row stride KVH·D); blocks are numbered
 * (b, h, query tile) with the tile fastest */
struct r1_att_qtile {
    int t0, tend, b, h;
    const int32_t *sg; /* seg row b */
    const float *kb, *vb;
};

__device__ __forceinline__ r1_att_qtile r1_att_qtile_of(int qt, const float *k, const float *v,
                                                        const int32_t *seg, int T, int H,
                                                        int KVH, int D)
{
    r1_att_qtile g;
    int tiles = (T + qt - 1) / qt;
    g.t0 = (int)(blockIdx.x % tiles) * qt, g.tend = min(T, g.t0 + qt);
    int64_t bh = blockIdx.x / tiles, ks = (int64_t)KVH * D;
    g.h = (int)(bh % H), g.b = (int)(bh / H);
    int kvh = g.h / (H / KVH);
    g.sg = seg + (int64_t)g.b * T;
    g.kb = k + (int64_t)g.b * T * ks + (int64_t)kvh * D;
    g.vb = v + (int64_t)g.b * T * ks + (int64_t)kvh * D;
    return g;
}

/* keys [s0, s0 + n) of the block's kv head (K, V and their segments) into shared memory,
 * after every warp is done with the previous tile */
template <int DPL>
__device__ __forceinline__ void r1_att_kv_tile(float *sk, float *sv, int32_t *ssg,
                                               const r1_att_qtile &g, int s0, int n, int KVH,
                                               int D)
{
    int64_t ks = (int64_t)KVH * D;
    __syncthreads();
    r1_att_tile_load<DPL>(sk, g.kb, ks, s0, n, D);
    r1_att_tile_load<DPL>(sv, g.vb, ks, s0, n, D);
    if ((int)threadIdx.x < n)
        ssg[threadIdx.x] = g.sg[s0 + threadIdx.x];
    __syncthreads();
}

/* an element of a cache row as f32: f32, or bf16 bits widened (exactly) */
__device__ __forceinline__ float r1_att_f(float x) { return x; }
__device__ __forceinline__ float r1_att_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* dot of a lane's dims with row r (D values, f32 or bf16), summed over the warp */
template <int DPL, class E>
__device__ __forceinline__ float r1_att_dot(const float (&a)[DPL], const E *r, int lane, int D)
{
    float p = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < D)
            p = fmaf(a[i], r1_att_f(r[d]), p);
    }
    return r1_warp_sum(p);
}

template <int DPL>
__device__ __forceinline__ void r1_att_load(float (&a)[DPL], const float *r, int lane, int D)
{
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        a[i] = d < D ? r[d] : 0.0f;
    }
}

template <int DPL>
__device__ __forceinline__ void r1_att_store(float *r, const float (&a)[DPL], int lane, int D)
{
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < D)
            r[d] = a[i];
    }
}

template <int DPL>
__global__ void r1_att_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *seg, int B, int T, int H, int KVH, int D, float scale)
{
    using S = r1_att_shape<DPL>;
    __shared__ float sk[S::KT * S::W], sv[S::KT * S::W];
    __shared__ int32_t ssg[S::KT];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const r1_att_qtile g = r1_att_qtile_of(S::QT, k, v, seg, T, H, KVH, D);
    const int t0 = g.t0, tend = g.tend, b = g.b, h = g.h;
    const int32_t *sg = g.sg;
    int64_t qs = (int64_t)H * D;
    int tq[S::QPW], st[S::QPW];
    float qv[S::QPW][DPL], o[S::QPW][DPL], m[S::QPW], l[S::QPW];
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        tq[j] = t0 + warp * S::QPW + j;
        st[j] = tq[j] < T ? sg[tq[j]] : -1;
        m[j] = -INFINITY, l[j] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            o[j][i] = 0.0f;
        if (st[j] >= 0)
            r1_att_load(qv[j], q + ((int64_t)b * T + tq[j]) * qs + (int64_t)h * D, lane, D);
    }
    for (int s0 = 0; s0 < tend; s0 += S::KT) {
        int n = min(S::KT, tend - s0);
        r1_att_kv_tile<DPL>(sk, sv, ssg, g, s0, n, KVH, D);
        for (int r = 0; r < n; r++) {
#pragma unroll
            for (int j = 0; j < S::QPW; j++) {
                if (st[j] < 0 || s0 + r > tq[j] || ssg[r] != st[j])
                    continue;
                float x = r1_att_dot(qv[j], sk + r * S::W, lane, D) * scale;
                float mn = fmaxf(m[j], x);
                float corr = expf(m[j] - mn); /* 0 on the first visible key (m = −inf) */
                float e = expf(x - mn);
                l[j] = l[j] * corr + e;
                const float *vr = sv + r * S::W;
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    int d = lane + 32 * i;
                    o[j][i] = o[j][i] * corr + (d < D ? e * vr[d] : 0.0f);
                }
                m[j] = mn;
            }
        }
    }
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        if (tq[j] >= T)
            continue;
        float *orow = out + ((int64_t)b * T + tq[j]) * qs + (int64_t)h * D;
        float *lrow = lse + ((int64_t)b * H + h) * T;
        if (st[j] < 0) { /* padding: o is 0 */
            r1_att_store(orow, o[j], lane, D);
            if (lane == 0)
                lrow[tq[j]] = -INFINITY;
            continue;
        }
        float inv = 1.0f / l[j]; /* l >= 1: key t itself is visible */
#pragma unroll
        for (int i = 0; i < DPL; i++)
            o[j][i] *= inv;
        r1_att_store(orow, o[j], lane, D);
        if (lane == 0)
            lrow[tq[j]] = m[j] + logf(l[j]);
    }
}

/* dq (=) and Di = dout·out (to di (B,H,T)) per query */
template <int DPL>
__global__ void r1_att_bwd_q(float *dq, float *di, const float *dout, const float *out,
                             const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *seg, int B, int T, int H, int KVH, int D, float scale)
{
    using S = r1_att_shape<DPL>;
    __shared__ float sk[S::KT * S::W], sv[S::KT * S::W];
    __shared__ int32_t ssg[S::KT];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const r1_att_qtile g = r1_att_qtile_of(S::QT, k, v, seg, T, H, KVH, D);
    const int t0 = g.t0, tend = g.tend, b = g.b, h = g.h;
    const int32_t *sg = g.sg;
    int64_t qs = (int64_t)H * D;
    int tq[S::QPW], st[S::QPW];
    float qv[S::QPW][DPL], gv[S::QPW][DPL], acc[S::QPW][DPL], dsum[S::QPW], L[S::QPW];
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        tq[j] = t0 + warp * S::QPW + j;
        st[j] = tq[j] < T ? sg[tq[j]] : -1;
        dsum[j] = 0.0f, L[j] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            acc[j][i] = 0.0f;
        if (st[j] < 0)
            continue;
        int64_t qo = ((int64_t)b * T + tq[j]) * qs + (int64_t)h * D;
        float ov[DPL];
        r1_att_load(qv[j], q + qo, lane, D);
        r1_att_load(gv[j], dout + qo, lane, D);
        r1_att_load(ov, out + qo, lane, D);
        float p = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            p = fmaf(gv[j][i], ov[i], p);
        dsum[j] = r1_warp_sum(p);
        L[j] = lse[((int64_t)b * H + h) * T + tq[j]];
    }
    for (int s0 = 0; s0 < tend; s0 += S::KT) {
        int n = min(S::KT, tend - s0);
        r1_att_kv_tile<DPL>(sk, sv, ssg, g, s0, n, KVH, D);
        for (int r = 0; r < n; r++) {
#pragma unroll
            for (int j = 0; j < S::QPW; j++) {
                if (st[j] < 0 || s0 + r > tq[j] || ssg[r] != st[j])
                    continue;
                const float *kr = sk + r * S::W;
                float p = expf(r1_att_dot(qv[j], kr, lane, D) * scale - L[j]);
                float dp = r1_att_dot(gv[j], sv + r * S::W, lane, D);
                float ds = scale * p * (dp - dsum[j]);
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    int d = lane + 32 * i;
                    if (d < D)
                        acc[j][i] = fmaf(ds, kr[d], acc[j][i]);
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        if (tq[j] >= T)
            continue;
        r1_att_store(dq + ((int64_t)b * T + tq[j]) * qs + (int64_t)h * D, acc[j], lane, D);
        if (lane == 0)
            di[((int64_t)b * H + h) * T + tq[j]] = dsum[j]; /* 0 for padding */
    }
}

/* dk, dv (=) per key */
template <int DPL>
__global__ void r1_att_bwd_kv(float *dk, float *dv, const float *di, const float *dout,
                              const float *lse, const float *q, const float *k, const float *v,
                              const int32_t *seg, int B, int T, int H, int KVH, int D, float scale)
{
    using S = r1_att_shape<DPL>;
    __shared__ float sq[S::KT * S::W], sg_[S::KT * S::W];
    __shared__ float sl[S::KT], sd[S::KT];
    __shared__ int32_t ssg[S::KT];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int tiles = (T + S::QT - 1) / S::QT;
    int s0k = (int)(blockIdx.x % tiles) * S::QT;
    int64_t bk = blockIdx.x / tiles;
    int kvh = (int)(bk % KVH), b = (int)(bk / KVH), group = H / KVH;
    int64_t qs = (int64_t)H * D, ks = (int64_t)KVH * D;
    const int32_t *sgb = seg + (int64_t)b * T;
    int sk[S::QPW], ss[S::QPW];
    float kv[S::QPW][DPL], vv[S::QPW][DPL], ak[S::QPW][DPL], av[S::QPW][DPL];
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        sk[j] = s0k + warp * S::QPW + j;
        ss[j] = sk[j] < T ? sgb[sk[j]] : -1;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            ak[j][i] = av[j][i] = 0.0f;
        if (ss[j] >= 0) {
            int64_t ko = ((int64_t)b * T + sk[j]) * ks + (int64_t)kvh * D;
            r1_att_load(kv[j], k + ko, lane, D);
            r1_att_load(vv[j], v + ko, lane, D);
        }
    }
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        const float *qb = q + (int64_t)b * T * qs + (int64_t)h * D;
        const float *gb = dout + (int64_t)b * T * qs + (int64_t)h * D;
        const float *lrow = lse + ((int64_t)b * H + h) * T;
        const float *drow = di + ((int64_t)b * H + h) * T;
        for (int t0 = s0k; t0 < T; t0 += S::KT) {
            int n = min(S::KT, T - t0);
            __syncthreads();
            r1_att_tile_load<DPL>(sq, qb, qs, t0, n, D);
            r1_att_tile_load<DPL>(sg_, gb, qs, t0, n, D);
            if ((int)threadIdx.x < n) {
                ssg[threadIdx.x] = sgb[t0 + threadIdx.x];
                sl[threadIdx.x] = lrow[t0 + threadIdx.x];
                sd[threadIdx.x] = drow[t0 + threadIdx.x];
            }
            __syncthreads();
            for (int r = 0; r < n; r++) {
#pragma unroll
                for (int j = 0; j < S::QPW; j++) {
                    if (ss[j] < 0 || t0 + r < sk[j] || ssg[r] != ss[j])
                        continue;
                    const float *qr = sq + r * S::W, *gr = sg_ + r * S::W;
                    float p = expf(r1_att_dot(kv[j], qr, lane, D) * scale - sl[r]);
                    float dp = r1_att_dot(vv[j], gr, lane, D);
                    float ds = scale * p * (dp - sd[r]);
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        int d = lane + 32 * i;
                        if (d < D) {
                            ak[j][i] = fmaf(ds, qr[d], ak[j][i]);
                            av[j][i] = fmaf(p, gr[d], av[j][i]);
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < S::QPW; j++) {
        if (sk[j] >= T)
            continue;
        int64_t ko = ((int64_t)b * T + sk[j]) * ks + (int64_t)kvh * D;
        r1_att_store(dk + ko, ak[j], lane, D);
        r1_att_store(dv + ko, av[j], lane, D);
    }
}

/* ---- decode attention over the KV cache -------------------------------------------- */

#define R1_DEC_THREADS 128 /* threads per block; also the positions of a tile, one each */
#define R1_DEC_SPLIT 256   /* positions per block (split): longer contexts use several */
#define R1_DEC_GMAX 8      /* query heads of one kv head per block */

/* splits of a context of n positions */
__device__ __host__ __forceinline__ int r1_dec_splits(int n)
{
    return (n + R1_DEC_SPLIT - 1) / R1_DEC_SPLIT;
}

/* heads of the GQA group G a block takes: chunks of at most R1_DEC_GMAX, balanced */
__device__ __host__ __forceinline__ int r1_dec_chunks(int G)
{
    return (G + R1_DEC_GMAX - 1) / R1_DEC_GMAX;
}

/* 8 elements of a cache row from d (16-byte aligned) as f32 */
__device__ __forceinline__ void r1_dec_load8(float (&f)[8], const float *p)
{
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z,
    f[7] = b.w;
}
__device__ __forceinline__ void r1_dec_load8(float (&f)[8], const uint16_t *p)
{
    uint4 u = *(const uint4 *)p;
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

/* A block per (split s = blockIdx.x, kv head and head chunk = blockIdx.y, token n0 +
 * blockIdx.z): positions [s·SPLIT, min(np, (s+1)·SPLIT)) of the token's slot, for the up
 * to R1_DEC_GMAX query heads of its chunk, which share every key and value the block
 * reads (GQA: the cache is read once per kv head, not once per query head).  Tiles of 128
 * positions, one per thread: the thread computes its position's scores for the heads
 * (q in shared memory, the key row from global, d in order), the block's online softmax
 * takes the tile's max and sum per head (warp butterflies, then the four warps in
 * order), and for P·V thread (set, col) adds its set's positions of the tile for
 * dims col (+128): a set per 128/W' threads' share of the tile, summed in set order at
 * the end.  A token whose positions fit one split writes out; else each split writes
 * (max, sum, unnormalised output) to the workspace and r1_dec_combine merges them in
 * split order.  Nothing depends on the other tokens of the call: a token's bits are
 * the same alone or in any batch. */
template <int DPL, class E, bool VEC>
__global__ void __launch_bounds__(R1_DEC_THREADS)
    r1_att_dec(float *out, const float *q, const E *kc, const E *vc, const int32_t *slot,
               const int32_t *pos, int n0, int H, int KVH, int D, int L, float scale,
               float *po /* (items, H, MS, D) */, float *pml /* (items, H, MS, 2) */, int MS)
{
    constexpr int W = 32 * DPL;                                /* padded head dim */
    constexpr int WP = W < R1_DEC_THREADS ? W : R1_DEC_THREADS; /* dim columns */
    constexpr int SETS = R1_DEC_THREADS / WP, DT = W / WP;      /* position sets, dims/thread */
    constexpr int RS = R1_DEC_THREADS / SETS;                   /* positions per set */
    static_assert(R1_DEC_THREADS == 128, "the tile's max and sum add four warps");
    __shared__ float qs[R1_DEC_GMAX * W];
    __shared__ float ps[R1_DEC_GMAX * R1_DEC_THREADS];
    __shared__ float rmax[R1_DEC_THREADS / 32][R1_DEC_GMAX];
    __shared__ float rsum[R1_DEC_THREADS / 32][R1_DEC_GMAX];
    __shared__ float cs[SETS > 1 ? (SETS - 1) * R1_DEC_GMAX * WP : 1];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nl = blockIdx.z, n = n0 + nl, sp = blockIdx.x;
    const int np = pos[n] + 1, j0 = sp * R1_DEC_SPLIT; /* np >= 1: r1_model_decode checks */
    if (j0 >= np)
        return; /* the whole block: past the token's positions */
    const int jend = min(np, j0 + R1_DEC_SPLIT), ns = r1_dec_splits(np);
    const int G = H / KVH, chunks = r1_dec_chunks(G), gc = (G + chunks - 1) / chunks;
    const int kvh = blockIdx.y / chunks, g0 = (blockIdx.y % chunks) * gc;
    const int gn = min(gc, G - g0), h0 = kvh * G + g0;
    if (gn <= 0)
        return;
    const int64_t row = (int64_t)KVH * D;
    const E *kb = kc + (int64_t)slot[n] * L * row + (int64_t)kvh * D;
    const E *vb = vc + (int64_t)slot[n] * L * row + (int64_t)kvh * D;
    for (int i = tid; i < gn * W; i += R1_DEC_THREADS) {
        int g = i / W, d = i % W;
        qs[i] = d < D ? q[((int64_t)n * H + h0 + g) * D + d] : 0.0f;
    }
    const int set = tid / WP, col = tid % WP;
    float m[R1_DEC_GMAX], l[R1_DEC_GMAX], acc[R1_DEC_GMAX][DT];
#pragma unroll
    for (int g = 0; g < R1_DEC_GMAX; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < DT; i++)
            acc[g][i] = 0.0f;
    }
    __syncthreads();
    for (int t0 = j0; t0 < jend; t0 += R1_DEC_THREADS) {
        const int j = t0 + tid, nt = min(R1_DEC_THREADS, jend - t0);
        float sc[R1_DEC_GMAX];
#pragma unroll
        for (int g = 0; g < R1_DEC_GMAX; g++)
            sc[g] = 0.0f;
        if (j < jend) {
            const E *kr = kb + (int64_t)j * row;
            if (VEC) {
                for (int d = 0; d < D; d += 8) {
                    float kf[8];
                    r1_dec_load8(kf, kr + d);
#pragma unroll
                    for (int g = 0; g < R1_DEC_GMAX; g++)
                        if (g < gn)
#pragma unroll
                            for (int e = 0; e < 8; e++)
                                sc[g] = fmaf(qs[g * W + d + e], kf[e], sc[g]);
                }
            } else {
                for (int d = 0; d < D; d++) {
                    float kf = r1_att_f(kr[d]);
#pragma unroll
                    for (int g = 0; g < R1_DEC_GMAX; g++)
                        if (g < gn)
                            sc[g] = fmaf(qs[g * W + d], kf, sc[g]);
                }
            }
        }
        float corr[R1_DEC_GMAX];
#pragma unroll
        for (int g = 0; g < R1_DEC_GMAX; g++) {
            if (g >= gn)
                break;
            float x = j < jend ? sc[g] * scale : -INFINITY;
            sc[g] = x;
            x = r1_warp_max(x);
            if (lane == 0)
                rmax[warp][g] = x;
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < R1_DEC_GMAX; g++) {
            if (g >= gn)
                break;
            float tm = fmaxf(fmaxf(rmax[0][g], rmax[1][g]), fmaxf(rmax[2][g], rmax[3][g]));
            float mn = fmaxf(m[g], tm); /* finite: the tile has a position */
            corr[g] = expf(m[g] - mn);
            m[g] = mn;
            float p = j < jend ? expf(sc[g] - mn) : 0.0f;
            ps[g * R1_DEC_THREADS + tid] = p;
            p = r1_warp_sum(p);
            if (lane == 0)
                rsum[warp][g] = p;
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < R1_DEC_GMAX; g++) {
            if (g >= gn)
                break;
            l[g] = l[g] * corr[g] + ((rsum[0][g] + rsum[1][g]) + (rsum[2][g] + rsum[3][g]));
#pragma unroll
            for (int i = 0; i < DT; i++)
                acc[g][i] *= corr[g];
        }
        const int rend = min(RS, nt - set * RS);
        for (int r = 0; r < rend; r++) {
            const int pr = set * RS + r;
            const E *vr = vb + (int64_t)(t0 + pr) * row;
#pragma unroll
            for (int i = 0; i < DT; i++) {
                int d = col + WP * i;
                float v = d < D ? r1_att_f(vr[d]) : 0.0f;
#pragma unroll
                for (int g = 0; g < R1_DEC_GMAX; g++)
                    if (g < gn)
                        acc[g][i] = fmaf(ps[g * R1_DEC_THREADS + pr], v, acc[g][i]);
            }
        }
        __syncthreads(); /* ps, rmax and rsum are rewritten by the next tile */
    }
    if (SETS > 1) { /* the sets' partial outputs, added in set order */
        if (set > 0)
#pragma unroll
            for (int g = 0; g < R1_DEC_GMAX; g++)
                if (g < gn)
                    cs[((set - 1) * R1_DEC_GMAX + g) * WP + col] = acc[g][0];
        __syncthreads();
        if (set > 0)
            return;
#pragma unroll
        for (int g = 0; g < R1_DEC_GMAX; g++)
            if (g < gn)
                for (int k = 1; k < SETS; k++)
                    acc[g][0] += cs[((k - 1) * R1_DEC_GMAX + g) * WP + col];
    }
#pragma unroll
    for (int g = 0; g < R1_DEC_GMAX; g++) {
        if (g >= gn)
            break;
        int64_t hn = (int64_t)nl * H + h0 + g;
        for (int i = 0; i < DT; i++) {
            int d = col + WP * i;
            if (d >= D)
                continue;
            if (ns == 1)
                out[((int64_t)n * H + h0 + g) * D + d] = acc[g][i] / l[g];
            else
                po[(hn * MS + sp) * D + d] = acc[g][i];
        }
        if (ns > 1 && tid == 0) {
            pml[(hn * MS + sp) * 2] = m[g];
            pml[(hn * MS + sp) * 2 + 1] = l[g];
        }
    }
}

/* out for the tokens whose positions took several splits: the splits' sums rescaled to
 * their common max and added in split order; a thread per (token, head, dim) */
__global__ void r1_dec_combine(float *out, const int32_t *pos, const float *po,
                               const float *pml, int n0, int items, int H, int D, int MS)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)items * H * D)
        return;
    int d = (int)(i % D);
    int64_t hn = i / D; /* (token - n0) · H + head */
    int n = n0 + (int)(hn / H);
    int ns = r1_dec_splits(pos[n] + 1);
    if (ns == 1)
        return; /* r1_att_dec wrote it */
    const float *ml = pml + hn * MS * 2;
    float mx = -INFINITY;
    for (int s = 0; s < ns; s++)
        mx = fmaxf(mx, ml[2 * s]);
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < ns; s++) {
        float c = expf(ml[2 * s] - mx);
        den = fmaf(c, ml[2 * s + 1], den);
        num = fmaf(c, po[(hn * MS + s) * D + d], num);
    }
    out[(int64_t)n * H * D + (hn % H) * D + d] = num / den;
}

__device__ __forceinline__ void r1_att_put(float *dst, float x) { *dst = x; }
__device__ __forceinline__ void r1_att_put(uint16_t *dst, float x) { *dst = r1_bf16_bits(x); }

/* E: the caches' element, float or uint16_t (bf16 bits, rounded to nearest even) */
template <class E>
__global__ void r1_kv_store_kernel(E *kc, E *vc, const float *k, const float *v,
                                   const int32_t *slot, const int32_t *pos, int64_t total,
                                   int64_t row, int L)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    int64_t n = i / row, r = i % row;
    int64_t at = ((int64_t)slot[n] * L + pos[n]) * row + r;
    r1_att_put(kc + at, k[i]);
    r1_att_put(vc + at, v[i]);
}

/* blocks of the tiled kernels: rows (b, head) of T rows each, R1_ATT_QT-row tiles */
static unsigned tile_blocks(int64_t rows, int T, int D)
{
    int qt = D <= 128 ? r1_att_shape<4>::QT : r1_att_shape<8>::QT;
    return (unsigned)(rows * ((T + qt - 1) / qt));
}

/* dims per lane for head_dim D: 1, 2, 4 or 8; 0 when D is too large */
static int att_dpl(int D)
{
    return D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : D <= 256 ? 8 : 0;
}

static int att_check(struct r1_cuda *cu, int D, int H, int KVH)
{
    if (att_dpl(D) == 0 || KVH <= 0 || H % KVH != 0) {
        char detail[96];
        snprintf(detail, sizeof(detail), "head_dim %d (at most 256) or heads %d/%d not supported",
                 D, H, KVH);
        r1_cuda_fail(cu, "attention", detail, __FILE__, __LINE__);
        return 0;
    }
    return 1;
}

#define R1_ATT_DISPATCH(D, kernel, grid, ...)                                                      \
    do {                                                                                           \
        switch (att_dpl(D)) {                                                                      \
        case 1: R1_LAUNCH(kernel<1>, grid, R1_ATT_THREADS, cu->stream)(__VA_ARGS__); break;        \
        case 2: R1_LAUNCH(kernel<2>, grid, R1_ATT_THREADS, cu->stream)(__VA_ARGS__); break;        \
        case 4: R1_LAUNCH(kernel<4>, grid, R1_ATT_THREADS, cu->stream)(__VA_ARGS__); break;        \
        default: R1_LAUNCH(kernel<8>, grid, R1_ATT_THREADS, cu->stream)(__VA_ARGS__); break;       \
        }                                                                                          \
        R1_CUDA_LAUNCHED(cu, #kernel);                                                             \
    } while (0)

extern "C" void r1_cuda_attention_forward(void *ctx, float *out, float *lse, const float *q,
                                          const float *k, const float *v, const int32_t *seg,
                                          int B, int T, int H, int KVH, int D)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0 || !att_check(cu, D, H, KVH))
        return;
    float scale = 1.0f / sqrtf((float)D);
    R1_ATT_DISPATCH(D, r1_att_fwd, tile_blocks((int64_t)B * H, T, D), out, lse, q, k, v, seg, B,
                    T, H, KVH, D, scale);
}

extern "C" void r1_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv,
                                           const float *dout, const float *out, const float *lse,
                                           const float *q, const float *k, const float *v,
                                           const int32_t *seg, int B, int T, int H, int KVH,
                                           int D)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0 || !att_check(cu, D, H, KVH))
        return;
    float *di = (float *)r1_cuda_workspace(cu, (size_t)B * H * T * sizeof(float));
    if (!di)
        return;
    float scale = 1.0f / sqrtf((float)D);
    R1_ATT_DISPATCH(D, r1_att_bwd_q, tile_blocks((int64_t)B * H, T, D), dq, di, dout, out, lse, q,
                    k, v, seg, B, T, H, KVH, D, scale);
    R1_ATT_DISPATCH(D, r1_att_bwd_kv, tile_blocks((int64_t)B * KVH, T, D), dk, dv, di, dout, lse,
                    q, k, v, seg, B, T, H, KVH, D, scale);
}

template <class E>
static void kv_store(struct r1_cuda *cu, E *kc, E *vc, const float *k, const float *v,
                     const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L)
{
    R1_CUDA_BEGIN(cu);
    int64_t row = (int64_t)KVH * D, total = (int64_t)N * row;
    if (total <= 0)
        return;
    R1_LAUNCH(r1_kv_store_kernel<E>, r1_cuda_blocks(total, 256), 256, cu->stream)(
        kc, vc, k, v, slot, pos, total, row, L);
    R1_CUDA_LAUNCHED(cu, "kv store");
}

extern "C" void r1_cuda_kv_store(void *ctx, float *kc, float *vc, const float *k, const float *v,
                                 const int32_t *slot, const int32_t *pos, int N, int KVH, int D,
                                 int L)
{
    kv_store((struct r1_cuda *)ctx, kc, vc, k, v, slot, pos, N, KVH, D, L);
}

extern "C" void r1_cuda_kv_store16(void *ctx, uint16_t *kc, uint16_t *vc, const float *k,
                                   const float *v, const int32_t *slot, const int32_t *pos, int N,
                                   int KVH, int D, int L)
{
    kv_store((struct r1_cuda *)ctx, kc, vc, k, v, slot, pos, N, KVH, D, L);
}

/* the workspace of one decode launch: tokens per launch, and the bytes (0: one split) */
#define R1_DEC_WS_CAP ((size_t)64 << 20)
static int dec_items(int N, int H, int D, int L, size_t *bytes)
{
    int MS = r1_dec_splits(L);
    int items = N < 65535 ? N : 65535; /* gridDim.z */
    size_t per = (size_t)H * MS * ((size_t)D + 2) * sizeof(float);
    if (MS > 1 && (size_t)items * per > R1_DEC_WS_CAP)
        items = (int)(R1_DEC_WS_CAP / per) > 1 ? (int)(R1_DEC_WS_CAP / per) : 1;
    *bytes = MS > 1 ? (size_t)items * per : 0;
    return items;
}

extern "C" size_t r1_cuda_decode_workspace(int N, int H, int D, int L)
{
    size_t bytes = 0;
    if (N > 0 && H > 0 && D > 0 && L > 0)
        dec_items(N, H, D, L, &bytes);
    return bytes;
}

template <int DPL, class E, bool VEC>
static void dec_launch(struct r1_cuda *cu, float *out, const float *q, const E *kc, const E *vc,
                       const int32_t *slot, const int32_t *pos, int n0, int items, int H,
                       int KVH, int D, int L, float *po, float *pml, int MS)
{
    dim3 grid((unsigned)MS, (unsigned)(KVH * r1_dec_chunks(H / KVH)), (unsigned)items);
    float scale = 1.0f / sqrtf((float)D);
    R1_LAUNCH((r1_att_dec<DPL, E, VEC>), grid, R1_DEC_THREADS, cu->stream)(
        out, q, kc, vc, slot, pos, n0, H, KVH, D, L, scale, po, pml, MS);
}

template <int DPL, class E>
static void dec_launch(struct r1_cuda *cu, bool vec, float *out, const float *q, const E *kc,
                       const E *vc, const int32_t *slot, const int32_t *pos, int n0, int items,
                       int H, int KVH, int D, int L, float *po, float *pml, int MS)
{
    if (vec)
        dec_launch<DPL, E, true>(cu, out, q, kc, vc, slot, pos, n0, items, H, KVH, D, L, po, pml,
                                 MS);
    else
        dec_launch<DPL, E, false>(cu, out, q, kc, vc, slot, pos, n0, items, H, KVH, D, L, po,
                                  pml, MS);
}

template <class E>
static void attention_cached(struct r1_cuda *cu, float *out, const float *q, const E *kc,
                             const E *vc, const int32_t *slot, const int32_t *pos, int N, int H,
                             int KVH, int D, int L)
{
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || H <= 0 || D <= 0 || L <= 0 || !att_check(cu, D, H, KVH))
        return;
    size_t bytes;
    int items = dec_items(N, H, D, L, &bytes), MS = r1_dec_splits(L);
    if (KVH * r1_dec_chunks(H / KVH) > 65535) {
        r1_cuda_fail(cu, "r1_att_dec", "more than 65535 kv heads", __FILE__, __LINE__);
        return;
    }
    float *po = NULL, *pml = NULL;
    if (bytes) {
        if (!(po = (float *)r1_cuda_workspace(cu, bytes)))
            return;
        pml = po + (size_t)items * H * MS * D;
    }
    bool vec = D % 8 == 0 && ((uintptr_t)kc & 15) == 0 && ((uintptr_t)vc & 15) == 0;
    for (int n0 = 0; n0 < N; n0 += items) {
        int it = N - n0 < items ? N - n0 : items;
        switch (att_dpl(D)) {
        case 1: dec_launch<1, E>(cu, vec, out, q, kc, vc, slot, pos, n0, it, H, KVH, D, L, po,
                                 pml, MS); break;
        case 2: dec_launch<2, E>(cu, vec, out, q, kc, vc, slot, pos, n0, it, H, KVH, D, L, po,
                                 pml, MS); break;
        case 4: dec_launch<4, E>(cu, vec, out, q, kc, vc, slot, pos, n0, it, H, KVH, D, L, po,
                                 pml, MS); break;
        default: dec_launch<8, E>(cu, vec, out, q, kc, vc, slot, pos, n0, it, H, KVH, D, L, po,
                                  pml, MS); break;
        }
        if (MS > 1)
            R1_LAUNCH(r1_dec_combine, r1_cuda_blocks((int64_t)it * H * D, 256), 256,
                      cu->stream)(out, pos, po, pml, n0, it, H, D, MS);
    }
    R1_CUDA_LAUNCHED(cu, "r1_att_dec");
}

extern "C" void r1_cuda_attention_cached(void *ctx, float *out, const float *q, const float *kc,
                                         const float *vc, const int32_t *slot,
                                         const int32_t *pos, int N, int H, int KVH, int D, int L)
{
    attention_cached((struct r1_cuda *)ctx, out, q, kc, vc, slot, pos, N, H, KVH, D, L);
}

extern "C" void r1_cuda_attention_cached16(void *ctx, float *out, const float *q,
                                           const uint16_t *kc, const uint16_t *vc,
                                           const int32_t *slot, const int32_t *pos, int N, int H,
                                           int KVH, int D, int L)
{
    attention_cached((struct r1_cuda *)ctx, out, q, kc, vc, slot, pos, N, H, KVH, D, L);
}
