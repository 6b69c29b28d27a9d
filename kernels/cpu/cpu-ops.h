/* cpu-ops.h - internal interface of the CPU reference backend (kernels/cpu).
 *
 * Every r1_cpu_* op below implements the entry of the same name in
 * core/backend.h and follows its contract (shapes, += for parameter grads,
 * = for activation grads, deterministic).  ctx is always a struct r1_cpu.
 *
 * Threading: ops use OpenMP with exactly cpu->threads threads.  Work is split
 * so that every float sum is computed by one thread in a fixed order, so the
 * bits do not depend on scheduling.  OpenBLAS is only called outside OpenMP
 * parallel regions (it has its own thread pool, sized in r1_backend_cpu_create).
 *
 * Scratch: ops that need per-thread workspace take it from cpu->scratch, which
 * grows (outside parallel regions) to the largest request ever made and is
 * then reused, so the training step loop does not allocate once warm.  A ctx
 * is used by one host thread at a time (like a stream on a GPU).
 */
#ifndef R1_CPU_OPS_H
#define R1_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Problems with less work than this (elements touched, or multiply-adds for
 * attention / R1_CPU_PAR_MIN_ATT) run on the calling thread: a parallel region
 * costs microseconds, and milliseconds when the cores are oversubscribed. */
#define R1_CPU_PAR_MIN 32768
#define R1_CPU_PAR_MIN_ATT (1 << 19)

#define R1_CPU_WIDE_SLOTS 4
#define R1_CPU_WIDE_ACC 3 /* the slot of a matmul backward's din product with din_add */

struct r1_cpu {
    int threads;           /* OpenMP team size of every op */
    float *scratch;        /* threads * scratch_stride floats, 64-byte aligned */
    size_t scratch_stride; /* floats per thread, a multiple of 16 */
    /* whole-operand buffers (r1_cpu_wide): the f32 images of bf16 matmul operands (slots
     * 0-2), a din product to be added (R1_CPU_WIDE_ACC) */
    float *wide[R1_CPU_WIDE_SLOTS];
    size_t wide_cap[R1_CPU_WIDE_SLOTS]; /* floats */
};

/* Returns per-thread scratch of at least floats_per_thread floats (thread i
 * uses base + i * cpu->scratch_stride), or NULL after recording R1_ENOMEM.
 * Call outside parallel regions only. */
float *r1_cpu_scratch(struct r1_cpu *cpu, size_t floats_per_thread);

/* Returns buffer number slot (< R1_CPU_WIDE_SLOTS) of at least floats floats, shared by
 * the threads (grown like the scratch, never shrunk), or NULL after recording R1_ENOMEM.
 * Call outside parallel regions only. */
float *r1_cpu_wide(struct r1_cpu *cpu, int slot, size_t floats);

/* Fills n floats with NaN: what an op leaves in its outputs when it could not
 * get scratch memory (the ops return void; NaN is caught by the loss checks). */
void r1_cpu_poison(float *x, int64_t n);

/* bf16 bit patterns (the top half of an f32) to f32, exactly */
static inline float r1_cpu_bf16_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* r1_f32_to_bf16 (core/tensor.c) inlined, branch-free so loops vectorize: round to nearest
 * even; NaN keeps its sign and top payload and is forced quiet */
static inline uint16_t r1_cpu_f32_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* f rounded to the nearest bf16, as an f32 */
static inline float r1_cpu_round_bf16(float f)
{
    return r1_cpu_bf16_f32(r1_cpu_f32_bf16(f));
}

/* Single-threaded small GEMM used inside parallel regions (attention):
 * C (M,N) = [C +] A (M,K) · B (K,N) with A(i,k) = A[i*ars + k*acs],
 * B(k,j) = B[k*ldb + j], C(i,j) = C[i*ldc + j].  Each C element is summed
 * over k in increasing order, whatever the blocking, so results are exact
 * functions of the inputs. */
void r1_cpu_gemm(int M, int N, int K, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *B,
                 ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate);

/* linear.c */
void r1_cpu_matmul_forward(void *ctx, float *out, const float *in, const float *w,
                           const float *bias, const float *res, int M, int K, int N);
void r1_cpu_matmul_backward(void *ctx, float *din, int din_add, float *dw, float *dbias,
                            const float *dout, const float *in, const float *w, int M, int K,
                            int N);
void r1_cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte, int N,
                              int C);
void r1_cpu_embedding_backward(void *ctx, float *dwte, const float *dout, const int32_t *tokens,
                               int N, int C);

/* linear-bf16.c */
/* floats of per-thread scratch matmul_forward_bf16 needs for inputs of K columns */
size_t r1_cpu_matmul_bf16_scratch(int64_t K);
/* floats of the r1_cpu_wide slot 0 buffer it rounds M input rows of K columns into */
size_t r1_cpu_matmul_bf16_rows(int64_t M, int64_t K);
void r1_cpu_matmul_forward_bf16(void *ctx, float *out, const float *in, const uint16_t *w,
                                const float *bias, const float *res, int M, int K, int N);
void r1_cpu_convert_bf16(void *ctx, uint16_t *dst, const float *src, int64_t n);
void r1_cpu_matmul16_forward(void *ctx, float *out, const uint16_t *in, const uint16_t *w,
                             const float *bias, const float *res, int M, int K, int N);
void r1_cpu_matmul16_backward(void *ctx, float *din, int din_add, float *dw, float *dbias,
                              const uint16_t *dout, const uint16_t *in, const uint16_t *w, int M,
                              int K, int N);

/* norm.c */
void r1_cpu_rmsnorm_forward(void *ctx, float *out, uint16_t *out16, float *rstd, const float *in,
                            const float *w, int N, int C, float eps);
void r1_cpu_rmsnorm_backward(void *ctx, float *din, int din_add, uint16_t *din16, float *dw,
                             const float *dout, const float *in, const float *w,
                             const float *rstd, int N, int C);

/* rope.c */
void r1_cpu_rope_forward(void *ctx, float *x, const int32_t *pos, const float *cos,
                         const float *sin, int N, int H, int D);
void r1_cpu_rope_backward(void *ctx, float *dx, uint16_t *dx16, const int32_t *pos,
                          const float *cos, const float *sin, int N, int H, int D);

/* attention.c */
/* floats of per-thread scratch the training attention ops need for T positions, head dim D */
size_t r1_cpu_attention_scratch(int T, int D);
void r1_cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                              int D);
void r1_cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *out, const float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                               int D);
void r1_cpu_attention16_forward(void *ctx, float *out, uint16_t *out16, float *lse,
                                const float *q, const float *k, const float *v,
                                const int32_t *seg, int B, int T, int H, int KVH, int D);
void r1_cpu_attention16_backward(void *ctx, float *dq, float *dk, float *dv, uint16_t *dv16,
                                 const float *dout, const float *out, const float *lse,
                                 const float *q, const float *k, const float *v,
                                 const int32_t *seg, int B, int T, int H, int KVH, int D);
void r1_cpu_kv_store(void *ctx, float *kc, float *vc, const float *k, const float *v,
                     const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
void r1_cpu_attention_cached(void *ctx, float *out, const float *q, const float *kc,
                             const float *vc, const int32_t *slot, const int32_t *pos, int N, int H,
                             int KVH, int D, int L);
void r1_cpu_kv_store16(void *ctx, uint16_t *kc, uint16_t *vc, const float *k, const float *v,
                       const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
/* floats of per-thread scratch attention_cached(16) needs for L positions, head dim D */
size_t r1_cpu_attention_cached_scratch(int L, int D);
void r1_cpu_attention_cached16(void *ctx, float *out, const float *q, const uint16_t *kc,
                               const uint16_t *vc, const int32_t *slot, const int32_t *pos, int N,
                               int H, int KVH, int D, int L);

/* pointwise.c */
void r1_cpu_swiglu_forward(void *ctx, float *out, uint16_t *out16, const float *gate,
                           const float *up, int64_t n);
void r1_cpu_swiglu_backward(void *ctx, float *dgate, float *dup, uint16_t *dgate16,
                            uint16_t *dup16, const float *dout, const float *gate,
                            const float *up, int64_t n);
void r1_cpu_add(void *ctx, float *out, const float *a, const float *b, int64_t n);
void r1_cpu_scale(void *ctx, float *x, float s, int64_t n);
void r1_cpu_sumsq(void *ctx, double *host_out, const float *x, int64_t n);

/* logprobs.c */
void r1_cpu_logprobs_forward(void *ctx, float *logp, float *entropy, float *lse,
                             const float *logits, const int32_t *targets, int N, int V);
void r1_cpu_logprobs_backward(void *ctx, float *dlogits, uint16_t *dlogits16, const float *logits,
                              const float *lse, const float *entropy, const int32_t *targets,
                              const float *dlogp, const float *dentropy, float scale, int N,
                              int V);
struct r1_pg_stats; /* core/backend.h */
struct r1_pg_cfg;
void r1_cpu_pg_loss(void *ctx, float *dlogp, float *dentropy, struct r1_pg_stats *st,
                    const float *logp, const float *old, const float *ref, const float *entropy,
                    const float *adv, const float *weight, const struct r1_pg_cfg *cfg, int N);

/* adamw.c */
struct r1_adamw_range; /* core/backend.h */
void r1_cpu_adamw_update(void *ctx, float *param, uint16_t *param16, const float *grad, float *m,
                         float *v, const struct r1_adamw_range *r, int n_ranges, float lr,
                         float beta1, float beta2, float eps, float grad_scale, int64_t step);

#endif
