/* attention.c - causal, packed, GQA attention and KV-cache attention, CPU.
 *
 * Shapes: q (B,T,H,D), k, v (B,T,KVH,D), seg (B,T), out (B,T,H,D),
 * lse (B,H,T).  Query head h reads kv head h / (H/KVH).  Key s is visible to
 * query t iff s <= t and seg[s] == seg[t] >= 0.  Scores are scale·q·k with
 * scale = 1/sqrt(D).  Padding rows (seg < 0) give out = 0, lse = −inf and
 * zero gradients.
 *
 * Work: forward is parallel over (b, h); backward over (b, kv head), each task
 * running the query heads of its group one after the other, so dk/dv of a kv
 * head are summed by one thread in a fixed order.  Queries go in blocks of
 * R1_ATT_QB; a block's scores against its visible key span live in a
 * (QB, T) tile of per-thread scratch, with Kᵀ (and Vᵀ) of the kv head
 * (D, T): memory is O(T·(QB + D)) per thread, never (T,T) per head.  Backward
 * recomputes the scores with the same routine and the same blocks as forward
 * (bit-identical) and turns them into probabilities with the saved lse.
 *
 * attention16_forward / attention16_backward (training in bf16): the same work with q, k, v
 * (and dout) rounded to bf16 where they enter a product, and the probabilities rounded to
 * bf16 before P·V (forward: exp(x − max) unnormalised, the row scaled by 1/Σ after the
 * product, Σ over the unrounded values, as a tiled GPU kernel does) and P and dS before the
 * dv, dq and dk products (backward).  Sums stay f32; Di = dout·out takes the rounded dout
 * (what dP = dout·Vᵀ sees, so that Σ_s P·dP = Di holds up to the probabilities' rounding).
 * The rounded copies live in the same per-thread scratch.
 *
 * Cache: kc, vc (S,L,KVH,D), f32 or (kv_store16 / attention_cached16) bf16; token n of
 * attention_cached reads positions 0..pos[n] of slot[n].  Parallel over (n, h).
 */
#include "core/err.h"
#include "kernels/cpu/cpu-ops.h"

#include <math.h>
#include <string.h>

#include <omp.h>

#define R1_ATT_QB 32 /* queries per block */

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Key span [*ks, *ke) that the queries [t0, t1) of one row can see; returns 0
 * when every query of the block is padding.  ks is the first key whose segment
 * id is that of some query in the block (segments need not be contiguous). */
static int block_span(const int32_t *sg /* (T) */, int t0, int t1, int *ks, int *ke)
{
    int32_t ids[R1_ATT_QB];
    int nid = 0, last = -1;
    for (int t = t0; t < t1; t++) {
        if (sg[t] < 0)
            continue;
        last = t;
        int seen = 0;
        for (int i = 0; i < nid; i++)
            seen |= ids[i] == sg[t];
        if (!seen)
            ids[nid++] = sg[t];
    }
    if (last < 0)
        return 0;
    int first = last;
    for (int s = 0; s < last && first == last; s++) {
        if (sg[s] < 0)
            continue;
        for (int i = 0; i < nid; i++)
            if (ids[i] == sg[s]) {
                first = s;
                break;
            }
    }
    *ks = first;
    *ke = last + 1;
    return 1;
}

/* dst (D, ld) = src rows (n, stride) transposed: dst[d*ld + s] = src[s*stride + d],
 * rounded to bf16 when bf16 is set */
static void transpose_rows(float *restrict dst, ptrdiff_t ld, const float *restrict src,
                           ptrdiff_t stride, int n, int D, int bf16)
{
    for (int s = 0; s < n; s++) {
        const float *row = src + s * stride;
        for (int d = 0; d < D; d++)
            dst[d * ld + s] = bf16 ? r1_cpu_round_bf16(row[d]) : row[d];
    }
}

/* dst (n, D) = src rows (n, stride) rounded to bf16 */
static void round_rows(float *restrict dst, const float *restrict src, ptrdiff_t stride, int n,
                       int D)
{
    for (int s = 0; s < n; s++)
        for (int d = 0; d < D; d++)
            dst[(size_t)s * D + d] = r1_cpu_round_bf16(src[s * stride + d]);
}

static void round_in_place(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = r1_cpu_round_bf16(x[i]);
}

size_t r1_cpu_attention_scratch(int T, int D)
{
    size_t ld = round16((size_t)T), kt_size = (size_t)D * ld, tile = (size_t)R1_ATT_QB * ld;
    size_t rows = round16((size_t)T * D), block = round16((size_t)R1_ATT_QB * D);
    /* the bf16 backward's (the others need less): Kᵀ, Vᵀ, P, dS, then the rounded K rows
     * and the rounded q and dout of a query block */
    return 2 * kt_size + 2 * tile + rows + 2 * block;
}

static void forward(struct r1_cpu *cpu, float *out /* (B,T,H,D) */, float *lse /* (B,H,T) */,
                    const float *q /* (B,T,H,D) */, const float *k /* (B,T,KVH,D) */,
                    const float *v /* (B,T,KVH,D) */, const int32_t *seg /* (B,T) */, int B,
                    int T, int H, int KVH, int D, int bf16)
{
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0)
        return;
    size_t ld = round16((size_t)T);
    size_t kt_size = (size_t)D * ld, tile = (size_t)R1_ATT_QB * ld;
    size_t rows_size = round16((size_t)T * D), block = round16((size_t)R1_ATT_QB * D);
    float *scratch = r1_cpu_scratch(cpu, kt_size + tile + (bf16 ? rows_size + block : 0));
    if (!scratch) {
        r1_cpu_poison(out, (int64_t)B * T * H * D);
        r1_cpu_poison(lse, (int64_t)B * H * T);
        return;
    }
    const int group = H / KVH;
    const float scale = 1.0f / sqrtf((float)D);
    const ptrdiff_t qs = (ptrdiff_t)H * D, ks_ = (ptrdiff_t)KVH * D;
    const int tasks = B * H;
    const int64_t work = (int64_t)tasks * T * T * D;

#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(dynamic, 1) if (work >= R1_CPU_PAR_MIN_ATT)
    for (int task = 0; task < tasks; task++) {
        float *kt = scratch + (size_t)omp_get_thread_num() * cpu->scratch_stride;
        float *S = kt + kt_size;
        float *vr = S + tile, *qr = vr + rows_size; /* bf16: rounded V rows, q block */
        int b = task / H, h = task % H, kvh = h / group;
        const int32_t *sg = seg + (size_t)b * T;
        const float *kb = k + (size_t)b * T * ks_ + (size_t)kvh * D;
        const float *vb = v + (size_t)b * T * ks_ + (size_t)kvh * D;
        const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
        float *ob = out + (size_t)b * T * qs + (size_t)h * D;
        float *lb = lse + ((size_t)b * H + h) * T;
        ptrdiff_t vs = ks_, qrs = qs;
        transpose_rows(kt, (ptrdiff_t)ld, kb, ks_, T, D, bf16);
        if (bf16) {
            round_rows(vr, vb, ks_, T, D);
            vb = vr, vs = D;
        }

        for (int t0 = 0; t0 < T; t0 += R1_ATT_QB) {
            int t1 = t0 + R1_ATT_QB < T ? t0 + R1_ATT_QB : T, rows = t1 - t0;
            int s0, s1;
            if (!block_span(sg, t0, t1, &s0, &s1)) {
                for (int t = t0; t < t1; t++) {
                    memset(ob + t * qs, 0, (size_t)D * sizeof(float));
                    lb[t] = -INFINITY;
                }
                continue;
            }
            int span = s1 - s0;
            const float *qt = qb + t0 * qs;
            if (bf16) {
                round_rows(qr, qt, qs, rows, D);
                qt = qr, qrs = D;
            }
            float inv_row[R1_ATT_QB];
            r1_cpu_gemm(rows, span, D, qt, qrs, 1, kt + s0, (ptrdiff_t)ld, S, (ptrdiff_t)ld, 0);
            for (int i = 0; i < rows; i++) {
                int t = t0 + i;
                float *restrict p = S + i * ld;
                if (sg[t] < 0) {
                    memset(p, 0, (size_t)span * sizeof(float));
                    lb[t] = -INFINITY;
                    continue;
                }
                float m = -INFINITY;
                for (int j = 0; j < span; j++) {
                    int s = s0 + j;
                    float x = (s <= t && sg[s] == sg[t]) ? p[j] * scale : -INFINITY;
                    p[j] = x;
                    m = x > m ? x : m;
                }
                float lane[8] = {0};
                for (int j = 0; j < span; j++) {
                    float e = expf(p[j] - m); /* masked: exp(−inf) = 0 */
                    p[j] = e;
                    lane[j & 7] += e;
                }
                float sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                            ((lane[4] + lane[5]) + (lane[6] + lane[7]));
                float inv = 1.0f / sum;
                if (bf16) /* unnormalised, scaled after the product */
                    round_in_place(p, span);
                else
                    for (int j = 0; j < span; j++)
                        p[j] *= inv;
                inv_row[i] = inv;
                lb[t] = m + logf(sum);
            }
            r1_cpu_gemm(rows, D, span, S, (ptrdiff_t)ld, 1, vb + s0 * vs, vs, ob + t0 * qs, qs, 0);
            for (int i = 0; i < rows; i++) {
                float *o = ob + (t0 + i) * qs;
                if (sg[t0 + i] < 0)
                    memset(o, 0, (size_t)D * sizeof(float));
                else if (bf16)
                    for (int d = 0; d < D; d++)
                        o[d] *= inv_row[i];
            }
        }
    }
}

void r1_cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                              int D)
{
    forward(ctx, out, lse, q, k, v, seg, B, T, H, KVH, D, 0);
}

void r1_cpu_attention16_forward(void *ctx, float *out, uint16_t *out16, float *lse,
                                const float *q, const float *k, const float *v,
                                const int32_t *seg, int B, int T, int H, int KVH, int D)
{
    forward(ctx, out, lse, q, k, v, seg, B, T, H, KVH, D, 1);
    if (out16 && B > 0 && T > 0 && H > 0 && D > 0) /* the reference: a pass after */
        r1_cpu_convert_bf16(ctx, out16, out, (int64_t)B * T * H * D);
}

static void backward(struct r1_cpu *cpu, float *dq /* (B,T,H,D) */, float *dk /* (B,T,KVH,D) */,
                     float *dv /* (B,T,KVH,D) */, const float *dout /* (B,T,H,D) */,
                     const float *out /* (B,T,H,D) */, const float *lse /* (B,H,T) */,
                     const float *q /* (B,T,H,D) */, const float *k /* (B,T,KVH,D) */,
                     const float *v /* (B,T,KVH,D) */, const int32_t *seg /* (B,T) */, int B,
                     int T, int H, int KVH, int D, int bf16)
{
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0)
        return;
    size_t ld = round16((size_t)T);
    size_t kt_size = (size_t)D * ld;
    size_t tile = (size_t)R1_ATT_QB * ld;
    size_t rows_size = round16((size_t)T * D), block = round16((size_t)R1_ATT_QB * D);
    float *scratch =
        r1_cpu_scratch(cpu, 2 * kt_size + 2 * tile + (bf16 ? rows_size + 2 * block : 0));
    if (!scratch) {
        r1_cpu_poison(dq, (int64_t)B * T * H * D);
        r1_cpu_poison(dk, (int64_t)B * T * KVH * D);
        r1_cpu_poison(dv, (int64_t)B * T * KVH * D);
        return;
    }
    const int group = H / KVH;
    const float scale = 1.0f / sqrtf((float)D);
    const ptrdiff_t qs = (ptrdiff_t)H * D, ks_ = (ptrdiff_t)KVH * D;
    const int tasks = B * KVH;
    const int64_t work = (int64_t)B * H * T * T * D;

#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(dynamic, 1) if (work >= R1_CPU_PAR_MIN_ATT)
    for (int task = 0; task < tasks; task++) {
        float *kt = scratch + (size_t)omp_get_thread_num() * cpu->scratch_stride;
        float *vt = kt + kt_size;
        float *P = vt + kt_size; /* (QB, ld) probabilities */
        float *dS = P + tile;    /* (QB, ld) dP, then scale·P·(dP − Di) */
        /* bf16: the rounded K rows, q block and dout block */
        float *kr = dS + tile, *qr = kr + rows_size, *gr = qr + block;
        int b = task / KVH, kvh = task % KVH;
        const int32_t *sg = seg + (size_t)b * T;
        const float *kb = k + (size_t)b * T * ks_ + (size_t)kvh * D;
        const float *vb = v + (size_t)b * T * ks_ + (size_t)kvh * D;
        float *dkb = dk + (size_t)b * T * ks_ + (size_t)kvh * D;
        float *dvb = dv + (size_t)b * T * ks_ + (size_t)kvh * D;
        transpose_rows(kt, (ptrdiff_t)ld, kb, ks_, T, D, bf16);
        transpose_rows(vt, (ptrdiff_t)ld, vb, ks_, T, D, bf16);
        ptrdiff_t krs = ks_, qrs = qs;
        if (bf16) {
            round_rows(kr, kb, ks_, T, D);
            kb = kr, krs = D, qrs = D;
        }
        for (int s = 0; s < T; s++) {
            memset(dkb + s * ks_, 0, (size_t)D * sizeof(float));
            memset(dvb + s * ks_, 0, (size_t)D * sizeof(float));
        }

        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
            const float *ob = out + (size_t)b * T * qs + (size_t)h * D;
            const float *gb = dout + (size_t)b * T * qs + (size_t)h * D;
            float *dqb = dq + (size_t)b * T * qs + (size_t)h * D;
            const float *lb = lse + ((size_t)b * H + h) * T;

            for (int t0 = 0; t0 < T; t0 += R1_ATT_QB) {
                int t1 = t0 + R1_ATT_QB < T ? t0 + R1_ATT_QB : T, rows = t1 - t0;
                int s0, s1;
                if (!block_span(sg, t0, t1, &s0, &s1)) {
                    for (int t = t0; t < t1; t++)
                        memset(dqb + t * qs, 0, (size_t)D * sizeof(float));
                    continue;
                }
                int span = s1 - s0;
                const float *qt = qb + t0 * qs, *gt = gb + t0 * qs;
                if (bf16) {
                    round_rows(qr, qt, qs, rows, D);
                    round_rows(gr, gt, qs, rows, D);
                    qt = qr, gt = gr;
                }
                /* the same score tile as forward, bit for bit */
                r1_cpu_gemm(rows, span, D, qt, qrs, 1, kt + s0, (ptrdiff_t)ld, P, (ptrdiff_t)ld,
                            0);
                r1_cpu_gemm(rows, span, D, gt, qrs, 1, vt + s0, (ptrdiff_t)ld, dS, (ptrdiff_t)ld,
                            0);
                for (int i = 0; i < rows; i++) {
                    int t = t0 + i;
                    float *restrict p = P + i * ld;
                    float *restrict ds = dS + i * ld;
                    if (sg[t] < 0) {
                        memset(p, 0, (size_t)span * sizeof(float));
                        memset(ds, 0, (size_t)span * sizeof(float));
                        continue;
                    }
                    const float *restrict o = ob + t * qs;
                    const float *restrict g = gt + (ptrdiff_t)i * qrs; /* rounded in bf16 */
                    float lane[8] = {0};
                    int d = 0;
                    for (; d + 8 <= D; d += 8)
                        for (int j = 0; j < 8; j++)
                            lane[j] += g[d + j] * o[d + j];
                    for (; d < D; d++)
                        lane[d & 7] += g[d] * o[d];
                    float di = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                               ((lane[4] + lane[5]) + (lane[6] + lane[7]));
                    float l = lb[t];
                    for (int j = 0; j < span; j++) {
                        int s = s0 + j;
                        int vis = s <= t && sg[s] == sg[t];
                        float pj = vis ? expf(p[j] * scale - l) : 0.0f;
                        p[j] = pj;
                        ds[j] = vis ? scale * pj * (ds[j] - di) : 0.0f;
                    }
                    if (bf16) {
                        round_in_place(p, span);
                        round_in_place(ds, span);
                    }
                }
                /* dq = dS·K  [=] */
                r1_cpu_gemm(rows, D, span, dS, (ptrdiff_t)ld, 1, kb + s0 * krs, krs,
                            dqb + t0 * qs, qs, 0);
                for (int t = t0; t < t1; t++)
                    if (sg[t] < 0)
                        memset(dqb + t * qs, 0, (size_t)D * sizeof(float));
                /* dk += dSᵀ·Q, dv += Pᵀ·dO over the block's visible keys */
                r1_cpu_gemm(span, D, rows, dS, 1, (ptrdiff_t)ld, qt, qrs, dkb + s0 * ks_, ks_,
                            1);
                r1_cpu_gemm(span, D, rows, P, 1, (ptrdiff_t)ld, gt, qrs, dvb + s0 * ks_, ks_, 1);
            }
        }
    }
}

void r1_cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *out, const float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                               int D)
{
    backward(ctx, dq, dk, dv, dout, out, lse, q, k, v, seg, B, T, H, KVH, D, 0);
}

void r1_cpu_attention16_backward(void *ctx, float *dq, float *dk, float *dv, uint16_t *dv16,
                                 const float *dout, const float *out, const float *lse,
                                 const float *q, const float *k, const float *v,
                                 const int32_t *seg, int B, int T, int H, int KVH, int D)
{
    backward(ctx, dq, dk, dv, dout, out, lse, q, k, v, seg, B, T, H, KVH, D, 1);
    if (dv16 && B > 0 && T > 0 && KVH > 0 && D > 0)
        r1_cpu_convert_bf16(ctx, dv16, dv, (int64_t)B * T * KVH * D);
}

void r1_cpu_kv_store(void *ctx, float *kc /* (S,L,KVH,D) */, float *vc /* (S,L,KVH,D) */,
                     const float *k /* (N,KVH,D) */, const float *v /* (N,KVH,D) */,
                     const int32_t *slot /* (N) */, const int32_t *pos /* (N) */, int N, int KVH,
                     int D, int L)
{
    (void)ctx;
    size_t row = (size_t)KVH * D;
    for (int n = 0; n < N; n++) {
        size_t at = ((size_t)slot[n] * L + (size_t)pos[n]) * row;
        memcpy(kc + at, k + (size_t)n * row, row * sizeof(float));
        memcpy(vc + at, v + (size_t)n * row, row * sizeof(float));
    }
}

void r1_cpu_kv_store16(void *ctx, uint16_t *kc /* (S,L,KVH,D) */, uint16_t *vc /* (S,L,KVH,D) */,
                       const float *k /* (N,KVH,D) */, const float *v /* (N,KVH,D) */,
                       const int32_t *slot /* (N) */, const int32_t *pos /* (N) */, int N,
                       int KVH, int D, int L)
{
    (void)ctx;
    size_t row = (size_t)KVH * D;
    for (int n = 0; n < N; n++) {
        size_t at = ((size_t)slot[n] * L + (size_t)pos[n]) * row;
        for (size_t i = 0; i < row; i++) {
            kc[at + i] = r1_cpu_f32_bf16(k[(size_t)n * row + i]);
            vc[at + i] = r1_cpu_f32_bf16(v[(size_t)n * row + i]);
        }
    }
}

size_t r1_cpu_attention_cached_scratch(int L, int D)
{
    return round16((size_t)L) + 2 * round16((size_t)D); /* scores, then a widened k and v row */
}

/* f32 row of the cache: row (f32, kc16 NULL) itself, or bf16 row16 widened into buf */
static const float *cache_row(const float *row, const uint16_t *row16, float *buf, int D)
{
    if (!row16)
        return row;
    for (int d = 0; d < D; d++)
        buf[d] = r1_cpu_bf16_f32(row16[d]);
    return buf;
}

/* attention_cached over f32 caches (kc, vc) or bf16 ones (kc16, vc16; kc, vc NULL): the
 * same loops on the same f32 values, so a bf16 cache gives the bits of its widened copy */
static void cached(struct r1_cpu *cpu, float *out /* (N,H,D) */, const float *q /* (N,H,D) */,
                   const float *kc, const float *vc, const uint16_t *kc16, const uint16_t *vc16,
                   const int32_t *slot /* (N) */, const int32_t *pos /* (N) */, int N, int H,
                   int KVH, int D, int L)
{
    if (N <= 0 || H <= 0 || D <= 0 || L <= 0)
        return;
    float *scratch = r1_cpu_scratch(cpu, r1_cpu_attention_cached_scratch(L, D));
    if (!scratch) {
        r1_cpu_poison(out, (int64_t)N * H * D);
        return;
    }
    const int group = H / KVH;
    const float scale = 1.0f / sqrtf((float)D);
    const ptrdiff_t row = (ptrdiff_t)KVH * D;
    const int tasks = N * H;
    const int64_t work = (int64_t)tasks * L * D;

#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(dynamic, 4) if (work >= R1_CPU_PAR_MIN_ATT)
    for (int task = 0; task < tasks; task++) {
        float *restrict p = scratch + (size_t)omp_get_thread_num() * cpu->scratch_stride;
        float *kbuf = p + round16((size_t)L), *vbuf = kbuf + round16((size_t)D);
        int n = task / H, h = task % H, kvh = h / group;
        int np = pos[n] + 1;
        const float *restrict qv = q + ((size_t)n * H + h) * D;
        size_t base = (size_t)slot[n] * L * row + (size_t)kvh * D;
        const float *kbase = kc ? kc + base : NULL, *vbase = vc ? vc + base : NULL;
        const uint16_t *kbase16 = kc16 ? kc16 + base : NULL, *vbase16 = vc16 ? vc16 + base : NULL;
        float *restrict o = out + ((size_t)n * H + h) * D;
        float m = -INFINITY;
        for (int j = 0; j < np; j++) {
            const float *restrict kj = cache_row(kbase ? kbase + j * row : NULL,
                                                 kbase16 ? kbase16 + j * row : NULL, kbuf, D);
            float lane[8] = {0};
            int d = 0;
            for (; d + 8 <= D; d += 8)
                for (int l = 0; l < 8; l++)
                    lane[l] += qv[d + l] * kj[d + l];
            for (; d < D; d++)
                lane[d & 7] += qv[d] * kj[d];
            float x = (((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                       ((lane[4] + lane[5]) + (lane[6] + lane[7]))) *
                      scale;
            p[j] = x;
            m = x > m ? x : m;
        }
        float lane[8] = {0};
        for (int j = 0; j < np; j++) {
            float e = expf(p[j] - m);
            p[j] = e;
            lane[j & 7] += e;
        }
        float inv = 1.0f / (((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                            ((lane[4] + lane[5]) + (lane[6] + lane[7])));
        for (int d = 0; d < D; d++)
            o[d] = 0.0f;
        for (int j = 0; j < np; j++) {
            const float *restrict vj = cache_row(vbase ? vbase + j * row : NULL,
                                                 vbase16 ? vbase16 + j * row : NULL, vbuf, D);
            float w = p[j] * inv;
            for (int d = 0; d < D; d++)
                o[d] += w * vj[d];
        }
    }
}

void r1_cpu_attention_cached(void *ctx, float *out, const float *q, const float *kc,
                             const float *vc, const int32_t *slot, const int32_t *pos, int N, int H,
                             int KVH, int D, int L)
{
    cached(ctx, out, q, kc, vc, NULL, NULL, slot, pos, N, H, KVH, D, L);
}

void r1_cpu_attention_cached16(void *ctx, float *out, const float *q, const uint16_t *kc,
                               const uint16_t *vc, const int32_t *slot, const int32_t *pos, int N,
                               int H, int KVH, int D, int L)
{
    cached(ctx, out, q, NULL, NULL, kc, vc, slot, pos, N, H, KVH, D, L);
}
