/* attention.cu - causal, packed, GQA attention and KV-cache attention, CUDA.
 *
 * Shapes as on the CPU (kernels/cpu/attention.c): q (B,T,H,D), k, v (B,T,KVH,D), seg (B,T),
 * out (B,T,H,D), lse (B,H,T); kv caches (S,L,KVH,D).  Key s is visible to query t iff
 * s <= t and seg[s] == seg[t] >= 0; padding queries give out = 0, lse = −inf and zero
 * gradients.  Scale 1/sqrt(D).
 *
 * One warp per row of work, lane l holding dimensions l, l+32, ... (D <= 32·R1_ATT_DPL):
 *  - forward: a warp per (b, h, t) walks its visible keys in order with an online softmax
 *    (running max, rescaled sum and output), so no score matrix exists;
 *  - backward: a warp per (b, h, t) computes Di = dout·out and dq = Σ_s dS_ts·k_s with
 *    dS = scale·P·(dP − Di), P recomputed from the saved lse; then a warp per
 *    (b, kv head, s) walks the queries that see key s (every head of its group, t in
 *    order) for dk = Σ dS·q and dv = Σ P·dout.  Each gradient element is summed by one
 *    lane in a fixed order: no atomics;
 *  - cached: a warp per (token, head) over positions 0..pos[n] of its slot.
 * Dot products are the butterfly warp sum of reduce.cuh.
 *
 * This is the simple correct kernel, not yet FlashAttention's tiling (issue 9): every
 * key row is read from L2 once per query.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <stdio.h>

#define R1_ATT_DPL 8     /* dimensions per lane: head_dim up to 256 */
#define R1_ATT_WARPS 4   /* warps per block */
#define R1_ATT_THREADS (32 * R1_ATT_WARPS)

/* dot of a lane's dims with row r (D values), summed over the warp */
template <int DPL>
__device__ __forceinline__ float r1_att_dot(const float (&a)[DPL], const float *r, int lane, int D)
{
    float p = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < D)
            p = fmaf(a[i], r[d], p);
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
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)B * H * T)
        return;
    int t = (int)(w % T);
    int64_t bh = w / T;
    int h = (int)(bh % H), b = (int)(bh / H), kvh = h / (H / KVH);
    int64_t qs = (int64_t)H * D, ks = (int64_t)KVH * D;
    const int32_t *sg = seg + (int64_t)b * T;
    float *orow = out + ((int64_t)b * T + t) * qs + (int64_t)h * D;
    float *lrow = lse + ((int64_t)b * H + h) * T;
    int st = sg[t];
    float o[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++)
        o[i] = 0.0f;
    if (st < 0) {
        r1_att_store(orow, o, lane, D);
        if (lane == 0)
            lrow[t] = -INFINITY;
        return;
    }
    float qv[DPL];
    r1_att_load(qv, q + ((int64_t)b * T + t) * qs + (int64_t)h * D, lane, D);
    const float *kb = k + (int64_t)b * T * ks + (int64_t)kvh * D;
    const float *vb = v + (int64_t)b * T * ks + (int64_t)kvh * D;
    float m = -INFINITY, l = 0.0f;
    for (int s = 0; s <= t; s++) {
        if (sg[s] != st)
            continue;
        float x = r1_att_dot(qv, kb + s * ks, lane, D) * scale;
        float mn = fmaxf(m, x);
        float corr = expf(m - mn); /* 0 on the first visible key (m = −inf) */
        float e = expf(x - mn);
        l = l * corr + e;
        const float *vr = vb + s * ks;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            o[i] = o[i] * corr + (d < D ? e * vr[d] : 0.0f);
        }
        m = mn;
    }
    float inv = 1.0f / l; /* l >= 1: key t itself is visible */
#pragma unroll
    for (int i = 0; i < DPL; i++)
        o[i] *= inv;
    r1_att_store(orow, o, lane, D);
    if (lane == 0)
        lrow[t] = m + logf(l);
}

/* dq (=) and Di = dout·out (to di (B,H,T)) per query */
template <int DPL>
__global__ void r1_att_bwd_q(float *dq, float *di, const float *dout, const float *out,
                             const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *seg, int B, int T, int H, int KVH, int D, float scale)
{
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)B * H * T)
        return;
    int t = (int)(w % T);
    int64_t bh = w / T;
    int h = (int)(bh % H), b = (int)(bh / H), kvh = h / (H / KVH);
    int64_t qs = (int64_t)H * D, ks = (int64_t)KVH * D;
    const int32_t *sg = seg + (int64_t)b * T;
    int64_t qo = ((int64_t)b * T + t) * qs + (int64_t)h * D;
    int64_t lo = ((int64_t)b * H + h) * T + t;
    int st = sg[t];
    float acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++)
        acc[i] = 0.0f;
    if (st < 0) {
        r1_att_store(dq + qo, acc, lane, D);
        if (lane == 0)
            di[lo] = 0.0f;
        return;
    }
    float qv[DPL], gv[DPL], ov[DPL];
    r1_att_load(qv, q + qo, lane, D);
    r1_att_load(gv, dout + qo, lane, D);
    r1_att_load(ov, out + qo, lane, D);
    float dsum = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++)
        dsum = fmaf(gv[i], ov[i], dsum);
    dsum = r1_warp_sum(dsum);
    if (lane == 0)
        di[lo] = dsum;
    float L = lse[lo];
    const float *kb = k + (int64_t)b * T * ks + (int64_t)kvh * D;
    const float *vb = v + (int64_t)b * T * ks + (int64_t)kvh * D;
    for (int s = 0; s <= t; s++) {
        if (sg[s] != st)
            continue;
        const float *kr = kb + s * ks;
        float p = expf(r1_att_dot(qv, kr, lane, D) * scale - L);
        float dp = r1_att_dot(gv, vb + s * ks, lane, D);
        float ds = scale * p * (dp - dsum);
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < D)
                acc[i] = fmaf(ds, kr[d], acc[i]);
        }
    }
    r1_att_store(dq + qo, acc, lane, D);
}

/* dk, dv (=) per key */
template <int DPL>
__global__ void r1_att_bwd_kv(float *dk, float *dv, const float *di, const float *dout,
                              const float *lse, const float *q, const float *k, const float *v,
                              const int32_t *seg, int B, int T, int H, int KVH, int D, float scale)
{
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)B * KVH * T)
        return;
    int s = (int)(w % T);
    int64_t bk = w / T;
    int kvh = (int)(bk % KVH), b = (int)(bk / KVH), group = H / KVH;
    int64_t qs = (int64_t)H * D, ks = (int64_t)KVH * D;
    const int32_t *sg = seg + (int64_t)b * T;
    int64_t ko = ((int64_t)b * T + s) * ks + (int64_t)kvh * D;
    float ak[DPL], av[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++)
        ak[i] = av[i] = 0.0f;
    int ss = sg[s];
    if (ss >= 0) {
        float kv[DPL], vv[DPL];
        r1_att_load(kv, k + ko, lane, D);
        r1_att_load(vv, v + ko, lane, D);
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            const float *lrow = lse + ((int64_t)b * H + h) * T;
            const float *drow = di + ((int64_t)b * H + h) * T;
            for (int t = s; t < T; t++) {
                if (sg[t] != ss)
                    continue;
                int64_t qo = ((int64_t)b * T + t) * qs + (int64_t)h * D;
                const float *qr = q + qo, *gr = dout + qo;
                float p = expf(r1_att_dot(kv, qr, lane, D) * scale - lrow[t]);
                float dp = r1_att_dot(vv, gr, lane, D);
                float ds = scale * p * (dp - drow[t]);
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    int d = lane + 32 * i;
                    if (d < D) {
                        ak[i] = fmaf(ds, qr[d], ak[i]);
                        av[i] = fmaf(p, gr[d], av[i]);
                    }
                }
            }
        }
    }
    r1_att_store(dk + ko, ak, lane, D);
    r1_att_store(dv + ko, av, lane, D);
}

template <int DPL>
__global__ void r1_att_cached(float *out, const float *q, const float *kc, const float *vc,
                              const int32_t *slot, const int32_t *pos, int N, int H, int KVH,
                              int D, int L, float scale)
{
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)N * H)
        return;
    int n = (int)(w / H), h = (int)(w % H), kvh = h / (H / KVH);
    int64_t row = (int64_t)KVH * D;
    int np = pos[n] + 1; /* >= 1: r1_model_decode checks positions */
    const float *kb = kc + (int64_t)slot[n] * L * row + (int64_t)kvh * D;
    const float *vb = vc + (int64_t)slot[n] * L * row + (int64_t)kvh * D;
    float qv[DPL], o[DPL];
    r1_att_load(qv, q + ((int64_t)n * H + h) * D, lane, D);
#pragma unroll
    for (int i = 0; i < DPL; i++)
        o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < np; j++) {
        float x = r1_att_dot(qv, kb + j * row, lane, D) * scale;
        float mn = fmaxf(m, x);
        float corr = expf(m - mn);
        float e = expf(x - mn);
        l = l * corr + e;
        const float *vr = vb + j * row;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            o[i] = o[i] * corr + (d < D ? e * vr[d] : 0.0f);
        }
        m = mn;
    }
    float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < DPL; i++)
        o[i] *= inv;
    r1_att_store(out + ((int64_t)n * H + h) * D, o, lane, D);
}

__global__ void r1_kv_store_kernel(float *kc, float *vc, const float *k, const float *v,
                                   const int32_t *slot, const int32_t *pos, int64_t total,
                                   int64_t row, int L)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    int64_t n = i / row, r = i % row;
    int64_t at = ((int64_t)slot[n] * L + pos[n]) * row + r;
    kc[at] = k[i];
    vc[at] = v[i];
}

/* blocks for one warp per item */
static unsigned warp_blocks(int64_t items)
{
    return (unsigned)((items + R1_ATT_WARPS - 1) / R1_ATT_WARPS);
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
    R1_ATT_DISPATCH(D, r1_att_fwd, warp_blocks((int64_t)B * H * T), out, lse, q, k, v, seg, B, T,
                    H, KVH, D, scale);
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
    R1_ATT_DISPATCH(D, r1_att_bwd_q, warp_blocks((int64_t)B * H * T), dq, di, dout, out, lse, q, k,
                    v, seg, B, T, H, KVH, D, scale);
    R1_ATT_DISPATCH(D, r1_att_bwd_kv, warp_blocks((int64_t)B * KVH * T), dk, dv, di, dout, lse, q,
                    k, v, seg, B, T, H, KVH, D, scale);
}

extern "C" void r1_cuda_kv_store(void *ctx, float *kc, float *vc, const float *k, const float *v,
                                 const int32_t *slot, const int32_t *pos, int N, int KVH, int D,
                                 int L)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    int64_t row = (int64_t)KVH * D, total = (int64_t)N * row;
    if (total <= 0)
        return;
    R1_LAUNCH(r1_kv_store_kernel, r1_cuda_blocks(total, 256), 256, cu->stream)(
        kc, vc, k, v, slot, pos, total, row, L);
    R1_CUDA_LAUNCHED(cu, "kv store");
}

extern "C" void r1_cuda_attention_cached(void *ctx, float *out, const float *q, const float *kc,
                                         const float *vc, const int32_t *slot,
                                         const int32_t *pos, int N, int H, int KVH, int D, int L)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (N <= 0 || H <= 0 || D <= 0 || L <= 0 || !att_check(cu, D, H, KVH))
        return;
    float scale = 1.0f / sqrtf((float)D);
    R1_ATT_DISPATCH(D, r1_att_cached, warp_blocks((int64_t)N * H), out, q, kc, vc, slot, pos, N, H,
                    KVH, D, L, scale);
}
