/* attention16.cu - training attention with bf16 tensor-core products (FlashAttention-style),
 * CUDA: attention16_forward / attention16_backward of core/backend.h, what precision bf16
 * trains with.
 *
 * Shapes and visibility as attention.cu: q (B,T,H,D), k, v (B,T,KVH,D), seg (B,T),
 * out (B,T,H,D), lse (B,H,T); key s is visible to query t iff s <= t and
 * seg[s] == seg[t] >= 0; padding queries give out = 0, lse = −inf, zero gradients.
 *
 * Every product is a 16×16×16 WMMA (bf16 operands, f32 accumulation).  Operands are staged
 * in shared memory as bf16 (rounded from the f32 activations on the way in, the head
 * dimension zero-padded to DP, a multiple of 16 from {16, 32, 64, 128, 256}), a warp owns
 * 16 rows of its block's tile, and accumulators stay in fragments.  The element layout of a
 * fragment is unspecified, so nothing here reads one but through the layout-free
 * operations, except the forward's rescale, which learns each accumulator element's row
 * from a fragment loaded from a matrix whose element (r, c) is r (fragments of one type
 * share a layout).  Scores go through shared memory for the softmax, where lane 2r + h of
 * a warp owns half h of the columns of row r.
 *  - forward: a block per (b, h, BR-query tile) walks the key tiles from the first key any
 *    of its queries sees (the start of the earliest document among them) to its last query
 *    with an online softmax: S = Q·Kᵀ, running max m, P = exp(S·scale − m) rounded to bf16,
 *    l += Σ of the unrounded P, O = O·exp(m_old − m) + P·V; out = O / l, lse = m + log l.
 *  - backward, two kernels and no atomics: a block per query tile computes Di = dout·out
 *    (f32 of the bf16 dout, kept for the second kernel) and dq = Σ_s bf16(dS)·K with dS = scale·P·(dP − Di),
 *    P = exp(S·scale − lse) recomputed, dP = dout·Vᵀ; then a block per (b, kv head, key
 *    tile) walks every head of its group and the query tiles from its first key to the
 *    last query that sees one:
 *    dv = Σ bf16(P)ᵀ·dout, dk = Σ bf16(dS)ᵀ·Q.  Each gradient element is one accumulator
 *    summed in a fixed order, so results do not depend on scheduling.
 * The CPU reference (kernels/cpu/attention.c) rounds at the same places; the two differ in
 * summation order, expf and the running maximum the forward's probabilities are rounded
 * under (the CPU's is the row's final maximum).  Tile sizes keep a block's static shared
 * memory under 48 KiB; they are not tuned on a GPU.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <cuda_bf16.h>
#include <mma.h>
#include <stdio.h>

using namespace nvcuda;

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> r1_a16_fa;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> r1_a16_fbr;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> r1_a16_fbc;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> r1_a16_acc;

/* Tiles per padded head dim DP: warps (16 rows each) and the other side's tile rows, for
 * the forward (F), dq (Q) and dk/dv (K) kernels */
template <int DP> struct r1_a16_shape {
    static constexpr int FW = DP <= 128 ? 4 : 2, FBC = DP <= 128 ? 32 : 16;
    static constexpr int QW = DP <= 64 ? 4 : DP <= 128 ? 2 : 1, QBC = DP <= 128 ? 32 : 16;
    static constexpr int KW = DP <= 64 ? 4 : DP <= 128 ? 2 : 1;
    static constexpr int KBQ = DP <= 64 ? 16 : DP <= 128 ? 32 : 16;
};

__device__ __forceinline__ const __nv_bfloat16 *r1_a16_bf(const uint16_t *p)
{
    return (const __nv_bfloat16 *)p;
}

/* rows [r0, r0 + rows) of a head's slice (D values at src + r·stride) as bf16 into
 * tile (rows, DP); rows past n (the slice's end) and columns past D are zeros.  Every
 * thread of the block takes part. */
template <int DP>
__device__ __forceinline__ void r1_a16_stage(uint16_t *tile, const float *src, int64_t stride,
                                             int r0, int n, int rows, int D)
{
    for (int i = threadIdx.x; i < rows * DP; i += blockDim.x) {
        int r = i / DP, d = i % DP;
        tile[i] = r < n && d < D ? r1_bf16_bits(src[(int64_t)(r0 + r) * stride + d]) : 0;
    }
}

/* the segment ids of rows [r0, r0 + rows) (pad for rows at or past T) */
__device__ __forceinline__ void r1_a16_seg(int32_t *dst, const int32_t *sg, int r0, int rows,
                                           int T, int32_t pad)
{
    for (int i = threadIdx.x; i < rows; i += blockDim.x)
        dst[i] = r0 + i < T ? sg[r0 + i] : pad;
}

/* The first (FIRST) or last position in [from, to) whose segment id is one of ids (n ids, −1
 * for none), or −1 when none is: the key tiles a query tile needs start at the first, the
 * query tiles a key tile is seen by end at the last (packed documents see only their own).
 * Every thread of the block takes part and gets the result; sh: 32 ints of shared memory. */
template <bool FIRST>
__device__ int r1_a16_reach(const int32_t *sg, const int32_t *ids, int n, int from, int to,
                            int *sh)
{
    int found = -1;
    for (int i = threadIdx.x; i < to - from && found < 0; i += blockDim.x) {
        int p = FIRST ? from + i : to - 1 - i;
        int32_t id = sg[p];
        for (int j = 0; j < n && id >= 0; j++)
            if (ids[j] == id) {
                found = p;
                break;
            }
    }
    /* the block's min (FIRST) or max over the threads that found one */
    int v = found < 0 ? (FIRST ? 0x7fffffff : -1) : found;
    for (int o = 16; o > 0; o >>= 1) {
        int w = __shfl_xor_sync(R1_CUDA_FULL_MASK, v, o);
        v = FIRST ? min(v, w) : max(v, w);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads(); /* sh may still be read by an earlier call */
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    v = FIRST ? 0x7fffffff : -1;
    for (int i = 0; i < nw; i++)
        v = FIRST ? min(v, sh[i]) : max(v, sh[i]);
    return v == 0x7fffffff ? -1 : v;
}

/* acc (16,16) += A (16, 16·NK) · B; A bf16 row-major at a (ldm lda); B (16·NK, 16) bf16 at b,
 * row-major (ldm ldb) or, with BT, the transpose of a row-major (16, 16·NK) at b */
template <int NK, bool BT>
__device__ __forceinline__ void r1_a16_mma(r1_a16_acc &acc, const uint16_t *a, int lda,
                                           const uint16_t *b, int ldb)
{
#pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        r1_a16_fa fa;
        wmma::load_matrix_sync(fa, r1_a16_bf(a + kk * 16), lda);
        if (BT) {
            r1_a16_fbc fb;
            wmma::load_matrix_sync(fb, r1_a16_bf(b + kk * 16), ldb);
            wmma::mma_sync(acc, fa, fb, acc);
        } else {
            r1_a16_fbr fb;
            wmma::load_matrix_sync(fb, r1_a16_bf(b + (int64_t)kk * 16 * ldb), ldb);
            wmma::mma_sync(acc, fa, fb, acc);
        }
    }
}

/* the warp's (16, 16·NJ) block of A·Bᵀ into f32 at c (ldm ldc): A (16, DP) and B (16·NJ, DP)
 * bf16 row-major, ldm DP */
template <int DP, int NJ>
__device__ __forceinline__ void r1_a16_abt(float *c, int ldc, const uint16_t *a, const uint16_t *b)
{
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        r1_a16_acc acc;
        wmma::fill_fragment(acc, 0.0f);
        r1_a16_mma<DP / 16, true>(acc, a, DP, b + j * 16 * DP, DP);
        wmma::store_matrix_sync(c + j * 16, acc, ldc, wmma::mem_row_major);
    }
}

/* the warp's accumulators acc[NF] (16 rows, 16·NF columns) to global rows: row r of the
 * warp (its lanes 2r, 2r+1, each 8 of a fragment's 16 columns) goes to dst + r·stride when
 * valid, times mul, columns below D only.  st: (16,16) f32 staging of the warp. */
template <int NF>
__device__ __forceinline__ void r1_a16_store(float *dst, uint16_t *dst16, int64_t off,
                                             int64_t stride, bool valid, float mul,
                                             r1_a16_acc (&acc)[NF], float *st, int ldst, int D)
{
    int lane = threadIdx.x & 31, r = lane >> 1, c0 = (lane & 1) * 8;
#pragma unroll
    for (int f = 0; f < NF; f++) {
        __syncwarp();
        wmma::store_matrix_sync(st, acc[f], ldst, wmma::mem_row_major);
        __syncwarp();
        for (int c = c0; c < c0 + 8; c++) {
            int d = f * 16 + c;
            if (valid && d < D) {
                float x = st[r * ldst + c] * mul;
                dst[off + (int64_t)r * stride + d] = x;
                if (dst16) /* the bf16 image a matmul reads next */
                    dst16[off + (int64_t)r * stride + d] = r1_bf16_bits(x);
            }
        }
    }
}

/* A block's place in the forward and dq kernels: query rows [t0, tend) of (b, h), blocks
 * numbered (b, h, query tile of br rows) with the tile fastest; hoff: (b, 0, h, 0) of
 * q/out/dout, kb, vb: keys and values of h's kv head; sg: seg row b */
struct r1_a16_qtile {
    int t0, tend, b, h;
    int64_t qs, ks, hoff;
    const int32_t *sg;
    const float *kb, *vb;
};

__device__ __forceinline__ r1_a16_qtile r1_a16_qtile_of(int br, const float *k, const float *v,
                                                        const int32_t *seg, int T, int H,
                                                        int KVH, int D)
{
    r1_a16_qtile g;
    int tiles = (T + br - 1) / br;
    g.t0 = (int)(blockIdx.x % tiles) * br, g.tend = min(T, g.t0 + br);
    int64_t bh = blockIdx.x / tiles;
    g.h = (int)(bh % H), g.b = (int)(bh / H);
    int kvh = g.h / (H / KVH);
    g.qs = (int64_t)H * D, g.ks = (int64_t)KVH * D;
    g.hoff = (int64_t)g.b * T * g.qs + (int64_t)g.h * D;
    g.sg = seg + (int64_t)g.b * T;
    g.kb = k + (int64_t)g.b * T * g.ks + (int64_t)kvh * D;
    g.vb = v + (int64_t)g.b * T * g.ks + (int64_t)kvh * D;
    return g;
}

template <int DP>
__global__ void r1_att16_fwd(float *out, uint16_t *out16, float *lse, const float *q,
                             const float *k, const float *v, const int32_t *seg, int B, int T,
                             int H, int KVH, int D, float scale)
{
    using S = r1_a16_shape<DP>;
    constexpr int W = S::FW, BR = 16 * W, BC = S::FBC, NF = DP / 16, HALF = BC / 2;
    __shared__ __align__(32) uint16_t sq[BR * DP];
    __shared__ __align__(32) uint16_t sk[BC * DP];
    __shared__ __align__(32) uint16_t sv[BC * DP];
    __shared__ __align__(32) uint16_t sp[BR * BC];
    __shared__ __align__(32) float ss[BR * BC];
    __shared__ __align__(32) float srow[256];
    __shared__ float salpha[BR];
    __shared__ int32_t ssg[BC], sqsg[BR];
    __shared__ int sred[32];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
    const r1_a16_qtile g = r1_a16_qtile_of(BR, k, v, seg, T, H, KVH, D);
    const int t0 = g.t0, tend = g.tend, b = g.b, h = g.h;
    const int64_t qs = g.qs, ks = g.ks;
    const int32_t *sg = g.sg;
    r1_a16_stage<DP>(sq, q + g.hoff, qs, t0, tend - t0, BR, D);
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        srow[i] = (float)(i / 16);
    r1_a16_seg(sqsg, sg, t0, BR, T, -1);
    __syncthreads();
    int first = r1_a16_reach<true>(sg, sqsg, BR, 0, tend, sred);
    r1_a16_acc rowf, o[NF]; /* rowf.x[i]: the row of element i of an accumulator */
    wmma::load_matrix_sync(rowf, srow, 16, wmma::mem_row_major);
#pragma unroll
    for (int f = 0; f < NF; f++)
        wmma::fill_fragment(o[f], 0.0f);
    const uint16_t *sqw = sq + warp * 16 * DP;
    float *ssw = ss + warp * 16 * BC;
    uint16_t *spw = sp + warp * 16 * BC;
    int t = t0 + warp * 16 + r; /* the query of this lane's row */
    int32_t st = t < T ? sg[t] : -1;
    float m = -INFINITY, l = 0.0f;

    for (int s0 = first < 0 ? tend : first / BC * BC; s0 < tend; s0 += BC) {
        __syncthreads(); /* every warp is done with the previous tile */
        r1_a16_stage<DP>(sk, g.kb, ks, s0, min(BC, T - s0), BC, D);
        r1_a16_stage<DP>(sv, g.vb, ks, s0, min(BC, T - s0), BC, D);
        r1_a16_seg(ssg, sg, s0, BC, T, -2);
        __syncthreads();
        r1_a16_abt<DP, BC / 16>(ssw, BC, sqw, sk);
        __syncwarp();
        float x[HALF], tmax = -INFINITY;
#pragma unroll
        for (int c = 0; c < HALF; c++) {
            int col = half * HALF + c, s = s0 + col;
            bool vis = st >= 0 && s <= t && ssg[col] == st;
            x[c] = vis ? __fmul_rn(ssw[r * BC + col], scale) : -INFINITY;
            tmax = fmaxf(tmax, x[c]);
        }
        tmax = fmaxf(tmax, __shfl_xor_sync(R1_CUDA_FULL_MASK, tmax, 1));
        float mn = fmaxf(m, tmax), sum = 0.0f;
        float alpha = mn == -INFINITY ? 1.0f : expf(m - mn); /* m = −inf: 0 */
#pragma unroll
        for (int c = 0; c < HALF; c++) {
            float e = x[c] == -INFINITY ? 0.0f : expf(x[c] - mn);
            sum += e;
            spw[r * BC + half * HALF + c] = r1_bf16_bits(e);
        }
        sum += __shfl_xor_sync(R1_CUDA_FULL_MASK, sum, 1);
        l = l * alpha + sum;
        m = mn;
        if (half == 0)
            salpha[warp * 16 + r] = alpha;
        __syncwarp();
#pragma unroll
        for (int f = 0; f < NF; f++)
            for (int i = 0; i < o[f].num_elements; i++)
                o[f].x[i] *= salpha[warp * 16 + (int)rowf.x[i]];
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            r1_a16_fa fp;
            wmma::load_matrix_sync(fp, r1_a16_bf(spw + kk * 16), BC);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                r1_a16_fbr fv;
                wmma::load_matrix_sync(fv, r1_a16_bf(sv + kk * 16 * DP + f * 16), DP);
                wmma::mma_sync(o[f], fp, fv, o[f]);
            }
        }
    }
    int64_t row0 = (int64_t)b * T + t0 + warp * 16;
    r1_a16_store<NF>(out, out16, row0 * qs + (int64_t)h * D, qs, t < T,
                     st >= 0 ? 1.0f / l : 0.0f, o, ssw, BC, D);
    if (half == 0 && t < T)
        lse[((int64_t)b * H + h) * T + t] = st >= 0 ? m + logf(l) : -INFINITY;
}

template <int DP>
__global__ void r1_att16_bwd_q(float *dq, float *di, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const int32_t *seg, int B, int T, int H, int KVH, int D,
                               float scale)
{
    using S = r1_a16_shape<DP>;
    constexpr int W = S::QW, BR = 16 * W, BC = S::QBC, NF = DP / 16, HALF = BC / 2;
    __shared__ __align__(32) uint16_t sq[BR * DP];
    __shared__ __align__(32) uint16_t sg16[BR * DP];
    __shared__ __align__(32) uint16_t sk[BC * DP];
    __shared__ __align__(32) uint16_t sv[BC * DP];
    __shared__ __align__(32) uint16_t sds[BR * BC];
    __shared__ __align__(32) float ss[BR * BC];
    __shared__ __align__(32) float sdp[BR * BC];
    __shared__ int32_t ssg[BC], sqsg[BR];
    __shared__ int sred[32];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
    const r1_a16_qtile g = r1_a16_qtile_of(BR, k, v, seg, T, H, KVH, D);
    const int t0 = g.t0, tend = g.tend, b = g.b, h = g.h;
    const int64_t qs = g.qs, ks = g.ks, hoff = g.hoff;
    const int32_t *sg = g.sg;
    r1_a16_stage<DP>(sq, q + hoff, qs, t0, tend - t0, BR, D);
    r1_a16_stage<DP>(sg16, dout + hoff, qs, t0, tend - t0, BR, D);
    r1_a16_seg(sqsg, sg, t0, BR, T, -1);
    __syncthreads();
    int first = r1_a16_reach<true>(sg, sqsg, BR, 0, tend, sred);
    int t = t0 + warp * 16 + r;
    int32_t st = t < T ? sg[t] : -1;
    /* Di of this lane's row in f32 from the bf16 dout (what dP sees) and the f32 out: dims
     * ≡ half (mod 2), then the pair */
    float dsum = 0.0f, lt = 0.0f;
    if (t < T) {
        const float *g = dout + hoff + (int64_t)t * qs, *o = out + hoff + (int64_t)t * qs;
        for (int d = half; d < D; d += 2)
            dsum = fmaf(__uint_as_float((uint32_t)r1_bf16_bits(g[d]) << 16), o[d], dsum);
        lt = lse[((int64_t)b * H + h) * T + t];
    }
    float dit = dsum + __shfl_xor_sync(R1_CUDA_FULL_MASK, dsum, 1);
    if (half == 0 && t < T)
        di[((int64_t)b * H + h) * T + t] = dit;
    r1_a16_acc acc[NF];
#pragma unroll
    for (int f = 0; f < NF; f++)
        wmma::fill_fragment(acc[f], 0.0f);
    const uint16_t *sqw = sq + warp * 16 * DP, *sgw = sg16 + warp * 16 * DP;
    float *ssw = ss + warp * 16 * BC, *sdpw = sdp + warp * 16 * BC;
    uint16_t *sdsw = sds + warp * 16 * BC;

    for (int s0 = first < 0 ? tend : first / BC * BC; s0 < tend; s0 += BC) {
        __syncthreads();
        r1_a16_stage<DP>(sk, g.kb, ks, s0, min(BC, T - s0), BC, D);
        r1_a16_stage<DP>(sv, g.vb, ks, s0, min(BC, T - s0), BC, D);
        r1_a16_seg(ssg, sg, s0, BC, T, -2);
        __syncthreads();
        r1_a16_abt<DP, BC / 16>(ssw, BC, sqw, sk);  /* S = Q·Kᵀ */
        r1_a16_abt<DP, BC / 16>(sdpw, BC, sgw, sv); /* dP = dout·Vᵀ */
        __syncwarp();
#pragma unroll
        for (int c = 0; c < HALF; c++) {
            int col = half * HALF + c, s = s0 + col;
            bool vis = st >= 0 && s <= t && ssg[col] == st;
            float p = vis ? expf(__fmul_rn(ssw[r * BC + col], scale) - lt) : 0.0f;
            float ds = vis ? scale * p * (sdpw[r * BC + col] - dit) : 0.0f;
            sdsw[r * BC + col] = r1_bf16_bits(ds);
        }
        __syncwarp();
#pragma unroll
        for (int f = 0; f < NF; f++) /* dq += dS·K */
            r1_a16_mma<BC / 16, false>(acc[f], sdsw, BC, sk + f * 16, DP);
    }
    int64_t row0 = (int64_t)b * T + t0 + warp * 16;
    r1_a16_store<NF>(dq, nullptr, row0 * qs + (int64_t)h * D, qs, t < T, st >= 0 ? 1.0f : 0.0f,
                     acc, ssw, BC, D);
}

template <int DP>
__global__ void r1_att16_bwd_kv(float *dk, float *dv, uint16_t *dv16, const float *di,
                                const float *dout, const float *lse, const float *q,
                                const float *k, const float *v, const int32_t *seg, int B, int T,
                                int H, int KVH, int D, float scale)
{
    using S = r1_a16_shape<DP>;
    constexpr int W = S::KW, BK = 16 * W, BQ = S::KBQ, NF = DP / 16, HALF = BQ / 2;
    __shared__ __align__(32) uint16_t sk[BK * DP];
    __shared__ __align__(32) uint16_t sv[BK * DP];
    __shared__ __align__(32) uint16_t sq[BQ * DP];
    __shared__ __align__(32) uint16_t sg16[BQ * DP];
    __shared__ __align__(32) uint16_t sp[BK * BQ];
    __shared__ __align__(32) uint16_t sds[BK * BQ];
    __shared__ __align__(32) float ss[BK * BQ];
    __shared__ __align__(32) float sdp[BK * BQ];
    __shared__ float slse[BQ], sdi[BQ];
    __shared__ int32_t sqsg[BQ], sksg[BK];
    __shared__ int sred[32];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
    int tiles = (T + BK - 1) / BK, s0 = (int)(blockIdx.x % tiles) * BK, send = min(T, s0 + BK);
    int64_t bkv = blockIdx.x / tiles, qs = (int64_t)H * D, ks = (int64_t)KVH * D;
    int kvh = (int)(bkv % KVH), b = (int)(bkv / KVH), group = H / KVH;
    const int32_t *sg = seg + (int64_t)b * T;
    int64_t koff = (int64_t)b * T * ks + (int64_t)kvh * D;
    r1_a16_stage<DP>(sk, k + koff, ks, s0, send - s0, BK, D);
    r1_a16_stage<DP>(sv, v + koff, ks, s0, send - s0, BK, D);
    r1_a16_seg(sksg, sg, s0, BK, T, -1);
    __syncthreads();
    int last = r1_a16_reach<false>(sg, sksg, BK, s0, T, sred); /* the last query to see one */
    int s = s0 + warp * 16 + r; /* the key of this lane's row */
    int32_t ssk = s < T ? sg[s] : -2;
    r1_a16_acc dka[NF], dva[NF];
#pragma unroll
    for (int f = 0; f < NF; f++) {
        wmma::fill_fragment(dka[f], 0.0f);
        wmma::fill_fragment(dva[f], 0.0f);
    }
    const uint16_t *skw = sk + warp * 16 * DP, *svw = sv + warp * 16 * DP;
    float *ssw = ss + warp * 16 * BQ, *sdpw = sdp + warp * 16 * BQ;
    uint16_t *spw = sp + warp * 16 * BQ, *sdsw = sds + warp * 16 * BQ;

    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        int64_t hoff = (int64_t)b * T * qs + (int64_t)h * D, loff = ((int64_t)b * H + h) * T;
        for (int t0 = s0 / BQ * BQ; t0 <= last; t0 += BQ) {
            int n = min(BQ, T - t0);
            __syncthreads();
            r1_a16_stage<DP>(sq, q + hoff, qs, t0, n, BQ, D);
            r1_a16_stage<DP>(sg16, dout + hoff, qs, t0, n, BQ, D);
            r1_a16_seg(sqsg, sg, t0, BQ, T, -1);
            for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
                slse[i] = i < n ? lse[loff + t0 + i] : 0.0f;
                sdi[i] = i < n ? di[loff + t0 + i] : 0.0f;
            }
            __syncthreads();
            r1_a16_abt<DP, BQ / 16>(ssw, BQ, skw, sq);   /* Sᵀ = K·Qᵀ */
            r1_a16_abt<DP, BQ / 16>(sdpw, BQ, svw, sg16); /* dPᵀ = V·doutᵀ */
            __syncwarp();
#pragma unroll
            for (int c = 0; c < HALF; c++) {
                int col = half * HALF + c, t = t0 + col;
                bool vis = sqsg[col] >= 0 && s <= t && ssk == sqsg[col];
                float p = vis ? expf(__fmul_rn(ssw[r * BQ + col], scale) - slse[col]) : 0.0f;
                float ds = vis ? scale * p * (sdpw[r * BQ + col] - sdi[col]) : 0.0f;
                spw[r * BQ + col] = r1_bf16_bits(p);
                sdsw[r * BQ + col] = r1_bf16_bits(ds);
            }
            __syncwarp();
#pragma unroll
            for (int f = 0; f < NF; f++) {
                r1_a16_mma<BQ / 16, false>(dva[f], spw, BQ, sg16 + f * 16, DP); /* Pᵀ·dout */
                r1_a16_mma<BQ / 16, false>(dka[f], sdsw, BQ, sq + f * 16, DP);  /* dSᵀ·Q */
            }
        }
    }
    int64_t row0 = (int64_t)b * T + s0 + warp * 16;
    r1_a16_store<NF>(dk, nullptr, row0 * ks + (int64_t)kvh * D, ks, s < T, 1.0f, dka, ssw, BQ, D);
    r1_a16_store<NF>(dv, dv16, row0 * ks + (int64_t)kvh * D, ks, s < T, 1.0f, dva, ssw, BQ, D);
}

/* the padded head dim: 16, 32, 64, 128 or 256; 0 past 256 */
static int a16_dp(int D)
{
    return D <= 16 ? 16 : D <= 32 ? 32 : D <= 64 ? 64 : D <= 128 ? 128 : D <= 256 ? 256 : 0;
}

static int a16_check(struct r1_cuda *cu, int D, int H, int KVH)
{
    if (a16_dp(D) == 0 || KVH <= 0 || H % KVH != 0) {
        char detail[96];
        snprintf(detail, sizeof(detail), "head_dim %d (at most 256) or heads %d/%d not supported",
                 D, H, KVH);
        r1_cuda_fail(cu, "attention16", detail, __FILE__, __LINE__);
        return 0;
    }
    return 1;
}

/* kernel<DP> over rows (b, head) of T rows in tiles of 16·WARPS rows, WARPS·32 threads */
#define R1_A16_CASE(DP_, kernel, WARPS, rows, T, ...)                                              \
    case DP_: {                                                                                    \
        constexpr int w_ = r1_a16_shape<DP_>::WARPS;                                               \
        unsigned grid_ = (unsigned)((rows) * (((T) + 16 * w_ - 1) / (16 * w_)));                   \
        R1_LAUNCH(kernel<DP_>, grid_, 32 * w_, cu->stream)(__VA_ARGS__);                           \
        break;                                                                                     \
    }
#define R1_A16_DISPATCH(D, kernel, WARPS, rows, T, ...)                                            \
    do {                                                                                           \
        switch (a16_dp(D)) {                                                                       \
            R1_A16_CASE(16, kernel, WARPS, rows, T, __VA_ARGS__)                                   \
            R1_A16_CASE(32, kernel, WARPS, rows, T, __VA_ARGS__)                                   \
            R1_A16_CASE(64, kernel, WARPS, rows, T, __VA_ARGS__)                                   \
            R1_A16_CASE(128, kernel, WARPS, rows, T, __VA_ARGS__)                                  \
            R1_A16_CASE(256, kernel, WARPS, rows, T, __VA_ARGS__)                                  \
        }                                                                                          \
        R1_CUDA_LAUNCHED(cu, #kernel);                                                             \
    } while (0)

extern "C" void r1_cuda_attention16_forward(void *ctx, float *out, uint16_t *out16, float *lse,
                                            const float *q, const float *k, const float *v,
                                            const int32_t *seg, int B, int T, int H, int KVH,
                                            int D)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0 || !a16_check(cu, D, H, KVH))
        return;
    float scale = 1.0f / sqrtf((float)D);
    R1_A16_DISPATCH(D, r1_att16_fwd, FW, (int64_t)B * H, T, out, out16, lse, q, k, v, seg, B, T, H,
                    KVH, D, scale);
}

extern "C" void r1_cuda_attention16_backward(void *ctx, float *dq, float *dk, float *dv,
                                             uint16_t *dv16, const float *dout, const float *out,
                                             const float *lse, const float *q, const float *k,
                                             const float *v, const int32_t *seg, int B, int T,
                                             int H, int KVH, int D)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0 || !a16_check(cu, D, H, KVH))
        return;
    float *di = (float *)r1_cuda_workspace(cu, (size_t)B * H * T * sizeof(float));
    if (!di)
        return;
    float scale = 1.0f / sqrtf((float)D);
    R1_A16_DISPATCH(D, r1_att16_bwd_q, QW, (int64_t)B * H, T, dq, di, dout, out, lse, q, k, v, seg,
                    B, T, H, KVH, D, scale);
    R1_A16_DISPATCH(D, r1_att16_bwd_kv, KW, (int64_t)B * KVH, T, dk, dv, dv16, di, dout, lse, q,
                    k, v, seg, B, T, H, KVH, D, scale);
}
