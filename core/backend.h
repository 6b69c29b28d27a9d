/* backend.h - the table of ops a compute backend provides.
 *
 * A backend is a table of function pointers plus its private ctx.  The CPU
 * table (kernels/cpu) is the reference; every other backend is tested against
 * it.  Only core/backend.c (the registry) knows which backends exist.
 *
 * Conventions for every op:
 *  - pointers are backend memory (from ops->alloc), except where "host" is said;
 *  - shapes are given in a comment per argument, row-major, last dim contiguous;
 *  - gradient rule: parameter gradients (dw, dbias, dwte, dweight) are
 *    ACCUMULATED (+=) so micro-batches add up; activation gradients (din, dq,
 *    dgate, dlogits, ...) are WRITTEN (=), except that the matmuls' and RMSNorm's din
 *    is added to (+=) with din_add = 1: the bits of writing it and then ops->add, with
 *    no separate pass (a GPU's GEMM adds in its epilogue).  Residual sums use ops->add;
 *  - ops are deterministic: the same inputs give the same bits on every call
 *    (no atomics, no thread-count-dependent reductions for a fixed thread count);
 *  - entries marked OPTIONAL may be NULL; callers check.
 */
#ifndef R1_BACKEND_H
#define R1_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct r1_sampling; /* core/sample.h */

/* One range of an AdamW update (r1_backend_ops.adamw_update): n elements of the
 * parameters, their bf16 copy and their gradients from offset off (in elements from the
 * pointers given), of the two moments from moff, with weight decay wd. */
struct r1_adamw_range {
    int64_t off, moff, n;
    float wd;
};

/* The clipped policy-gradient objective of GRPO and PPO (r1_backend_ops.pg_loss): the
 * surrogate's clip range [1 - epsilon_low, 1 + epsilon_high], the k3 KL penalty's weight
 * beta and the entropy bonus's coefficient. */
struct r1_pg_cfg {
    float epsilon_low, epsilon_high, beta, entropy_coef;
};

/* Sums of pg_loss over the tokens it scored (divide by n_tokens for means). */
struct r1_pg_stats {
    double loss;      /* Σ w·ℓ */
    double n_tokens;  /* scored tokens (w != 0) */
    double kl;        /* Σ k3 (with a reference) */
    double entropy;   /* Σ H (with entropies) */
    double clip_low;  /* tokens with ρ < 1 − ε_low and A < 0 */
    double clip_high; /* tokens with ρ > 1 + ε_high and A > 0 */
};

/* The largest calls a model will make, for r1_backend_ops.reserve (core/model.c fills it in
 * r1_model_reserve and r1_kv_cache_create). */
struct r1_op_sizes {
    int64_t rows;      /* tokens in one call (B·T of training; a decode step's tokens) */
    int T;             /* training attention: positions per sequence (0: none) */
    int H, D;          /* query heads, head dim */
    int cache_len;     /* KV-cache attention: positions per slot (0: none) */
    int64_t hidden;    /* C */
    int64_t width;     /* the widest matmul input or output row but the head's: max(C, H·D, F) */
    int64_t vocab;     /* V, the head's output row */
    int64_t head_rows; /* rows of the LM head per call (its chunk) */
    int bf16;          /* 1: the matmul16 ops (training in bf16) */
    int bf16_weights;  /* 1: matmul_forward_bf16 (generation with bf16 weights) */
};

struct r1_backend_ops {
    const char *name;
    /* 1: backend memory is host memory and an op's results are there when it returns, so
     * another thread may read and write memory that later ops do not touch (the CPU
     * backend; core/dist.c sums gradient buckets in place during the backward); 0: reach
     * it only through the ops */
    int host_memory;
    /* OPTIONAL (a device backend): the queue every op is put on, in order (a CUDA backend's
     * cudaStream_t), and in *device the device's number, for a library that puts its own
     * work on this memory in order with the ops (core/dist.c's NCCL collectives) */
    void *(*queue)(void *ctx, int *device);

    /* --- memory ------------------------------------------------------------ */
    void *(*alloc)(void *ctx, size_t bytes); /* 64-byte aligned, zeroed; NULL on failure */
    void (*free)(void *ctx, void *p);
    void (*upload)(void *ctx, void *dst, const void *host_src, size_t bytes);
    void (*download)(void *ctx, void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    void (*zero)(void *ctx, void *p, size_t bytes);
    void (*sync)(void *ctx); /* OPTIONAL: waits for queued work */
    /* OPTIONAL: 0, or the first failure the backend met (a device fault, a failed launch)
     * recorded with r1_err_set and returned as its R1_E* code.  The ops return void; a
     * backend that fails skips every later op and downloads NaN, and says so here.
     * Callers check after a download (r1_backend_check). */
    int (*check)(void *ctx);
    void (*release)(void *ctx); /* frees ctx itself */
    /* OPTIONAL: allocates now the scratch memory (workspace) the ops need for calls up to
     * *s, so that none is allocated during a run, and sets *held to the bytes of scratch
     * the backend then holds (the largest of all requests; all zero sizes only report it).
     * 0, or R1_ENOMEM with r1_err_set.  Without it, or for larger calls, ops grow scratch
     * on first use. */
    int (*reserve)(void *ctx, const struct r1_op_sizes *s, size_t *held);

    /* --- linear ------------------------------------------------------------ */
    /* out (M,N) = in (M,K) · w (N,K)ᵀ + bias (N), then + res (M,N) (a residual stream: the
     * bits of that matmul then ops->add; a GPU adds it in the GEMM's epilogue); bias and
     * res may be NULL, res does not alias out */
    void (*matmul_forward)(void *ctx, float *out, const float *in, const float *w,
                           const float *bias, const float *res, int M, int K, int N);
    /* din (M,K) = dout (M,N) · w (N,K)     [= (din_add 0) or += (1); skipped when NULL]
     * dw (N,K) += doutᵀ · in (M,K)          [+=, skipped when dw is NULL]
     * dbias (N) += Σ_m dout                  [+=, skipped when dbias is NULL] */
    void (*matmul_backward)(void *ctx, float *din, int din_add, float *dw, float *dbias,
                            const float *dout, const float *in, const float *w, int M, int K,
                            int N);
    /* OPTIONAL (generation in bf16, core/kvcache.c):
     * out (M,N) = bf16(in) (M,K) · w (N,K)ᵀ + bias (N), sums in f32, with w in bf16 (uint16_t
     * bit patterns, the top half of an f32) and in rounded to bf16 (nearest even) as read,
     * as the training forward in bf16 rounds it (products are exact in f32, so backends
     * differ only in summation order; a GPU may use tensor cores); bias may be NULL.
     * Each out element is a function of its input row, its w row and bias alone: the
     * summation order does not depend on M, so a sequence's logits do not depend on how
     * many other tokens share the step.  Then + res (M,N) when not NULL, as matmul_forward
     * adds it (the residual stream; res does not alias out). */
    void (*matmul_forward_bf16)(void *ctx, float *out, const float *in, const uint16_t *w,
                                const float *bias, const float *res, int M, int K, int N);
    /* OPTIONAL: dst (n) = bf16(src (n)), round to nearest even (NaN stays NaN) */
    void (*convert_bf16)(void *ctx, uint16_t *dst, const float *src, int64_t n);
    /* OPTIONAL (training in bf16, core/model.c r1_model_set_precision): the matmul with
     * both operands in bf16 and f32 results, sums in f32 (bf16 products are exact in f32,
     * so only the summation order differs between backends):
     * out (M,N) = in (M,K) · w (N,K)ᵀ + bias (N) [=], then + res as matmul_forward adds it;
     * bias, res f32, may be NULL */
    void (*matmul16_forward)(void *ctx, float *out, const uint16_t *in, const uint16_t *w,
                             const float *bias, const float *res, int M, int K, int N);
    /* its backward, dout in bf16 too:
     * din (M,K) = dout (M,N) · w (N,K)     [= or += as din_add says; skipped when NULL]
     * dw (N,K) += doutᵀ · in (M,K)          [+=, f32, skipped when dw is NULL]
     * dbias (N) += Σ_m dout                  [+=, f32, skipped when dbias is NULL] */
    void (*matmul16_backward)(void *ctx, float *din, int din_add, float *dw, float *dbias,
                              const uint16_t *dout, const uint16_t *in, const uint16_t *w, int M,
                              int K, int N);

    /* --- embedding --------------------------------------------------------- */
    /* out (N,C) = wte (V,C)[tokens (N)] */
    void (*embedding_forward)(void *ctx, float *out, const int32_t *tokens, const float *wte,
                              int N, int C);
    /* dwte (V,C) += scatter of dout (N,C) by tokens (N) */
    void (*embedding_backward)(void *ctx, float *dwte, const float *dout, const int32_t *tokens,
                               int N, int C);

    /* --- RMSNorm ----------------------------------------------------------- */
    /* out (N,C) = in · rstd · w (C), rstd (N) = 1/sqrt(mean(in²) + eps) saved for backward;
     * out16 (N,C), when not NULL, gets bf16(out) (convert_bf16's rounding) for the bf16
     * matmuls that read it next; out may be NULL when out16 is not */
    void (*rmsnorm_forward)(void *ctx, float *out, uint16_t *out16, float *rstd, const float *in,
                            const float *w, int N, int C, float eps);
    /* din (N,C) = ...  [= (din_add 0) or += (1)];  dw (C) += ...  [+=]; din16 (N,C), when
     * not NULL, gets bf16 of the resulting din (convert_bf16's rounding): the output
     * gradient a bf16 matmul backward reads next */
    void (*rmsnorm_backward)(void *ctx, float *din, int din_add, uint16_t *din16, float *dw,
                             const float *dout, const float *in, const float *w,
                             const float *rstd, int N, int C);

    /* --- RoPE (Hugging Face split-half pairing: i pairs with i + D/2) ------- */
    /* x (N,H,D) rotated in place by the angle of pos (N); cos, sin (P,D/2) tables
     * with P > max(pos): angle(p, i) = p · theta^(-2i/D) */
    void (*rope_forward)(void *ctx, float *x, const int32_t *pos, const float *cos,
                         const float *sin, int N, int H, int D);
    /* dx (N,H,D) rotated in place by the negative angle (the transpose); with dx16 (not
     * NULL) the rotated dx goes there as its bf16 image (convert_bf16's rounding), for the
     * bf16 matmul backward that reads it, and dx is only read */
    void (*rope_backward)(void *ctx, float *dx, uint16_t *dx16, const int32_t *pos,
                          const float *cos, const float *sin, int N, int H, int D);

    /* --- attention (training / scoring) ------------------------------------- */
    /* q (B,T,H,D), k, v (B,T,KVH,D), seg (B,T).  Query t attends key s of the same
     * row when s <= t and seg[s] == seg[t] >= 0 (packing: one segment id per
     * document; padding: seg < 0, whose output is 0).  H % KVH == 0 (GQA: query
     * head h reads kv head h / (H/KVH)).  Scale 1/sqrt(D).
     * out (B,T,H,D); lse (B,H,T) = log Σ exp(scores) saved for backward (-INF for padding). */
    void (*attention_forward)(void *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                              int D);
    /* dq (B,T,H,D), dk, dv (B,T,KVH,D)  [=] from dout (B,T,H,D); scores are recomputed */
    void (*attention_backward)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *out, const float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                               int D);

    /* OPTIONAL (training in bf16, core/model.c): attention_forward / attention_backward with
     * bf16 products, as a tensor-core kernel computes them: q, k, v and dout enter every
     * product rounded to bf16, and so do the probabilities (forward: exp(score − running
     * max), before P·V; the row is divided by the f32 sum of the unrounded values after)
     * and P and dS = scale·P·(dP − Di) before the dv, dq and dk products (backward).  Sums,
     * lse and Di = bf16(dout)·out are f32.  Backends agree up to summation order, exp and (in the
     * forward) the running maximum the probabilities are rounded under.  out16 and dv16,
     * when not NULL, get the bf16 images of out and dv (convert_bf16's rounding): the inputs
     * of the output projection's matmul and of the value projection's backward. */
    void (*attention16_forward)(void *ctx, float *out, uint16_t *out16, float *lse,
                                const float *q, const float *k, const float *v,
                                const int32_t *seg, int B, int T, int H, int KVH, int D);
    void (*attention16_backward)(void *ctx, float *dq, float *dk, float *dv, uint16_t *dv16,
                                 const float *dout, const float *out, const float *lse,
                                 const float *q, const float *k, const float *v,
                                 const int32_t *seg, int B, int T, int H, int KVH, int D);

    /* --- attention over a KV cache (generation) ------------------------------ */
    /* kc, vc (S,L,KVH,D) caches; k, v (N,KVH,D) new keys/values stored at
     * (slot[n], pos[n]) */
    void (*kv_store)(void *ctx, float *kc, float *vc, const float *k, const float *v,
                     const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
    /* q (N,H,D): token n attends cache positions 0..pos[n] of slot[n].  out (N,H,D) */
    void (*attention_cached)(void *ctx, float *out, const float *q, const float *kc,
                             const float *vc, const int32_t *slot, const int32_t *pos, int N,
                             int H, int KVH, int D, int L);
    /* OPTIONAL (a bf16 KV cache: generation by a model in precision bf16, core/kvcache.c):
     * the two above over caches of bf16 bit patterns, (S,L,KVH,D) uint16_t.  kv_store16
     * rounds the new keys and values to bf16 (nearest even) as it stores them;
     * attention_cached16 gives what attention_cached gives on the caches widened to f32
     * (bit for bit on the CPU), at half the memory and half the bytes read per step. */
    void (*kv_store16)(void *ctx, uint16_t *kc, uint16_t *vc, const float *k, const float *v,
                       const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
    void (*attention_cached16)(void *ctx, float *out, const float *q, const uint16_t *kc,
                               const uint16_t *vc, const int32_t *slot, const int32_t *pos, int N,
                               int H, int KVH, int D, int L);

    /* --- pointwise ------------------------------------------------------------ */
    /* out (n) = silu(gate) · up; out16 (n), when not NULL, gets bf16(out) (as convert_bf16
     * rounds); out may be NULL when out16 is not */
    void (*swiglu_forward)(void *ctx, float *out, uint16_t *out16, const float *gate,
                           const float *up, int64_t n);
    /* dgate, dup (n)  [=]; dgate16, dup16 (n), when not NULL, get their bf16 images (as
     * convert_bf16 rounds); dgate and dup may be NULL when the images are not */
    void (*swiglu_backward)(void *ctx, float *dgate, float *dup, uint16_t *dgate16,
                            uint16_t *dup16, const float *dout, const float *gate,
                            const float *up, int64_t n);
    /* out (n) = a + b (out may alias a or b) */
    void (*add)(void *ctx, float *out, const float *a, const float *b, int64_t n);
    /* x (n) *= s */
    void (*scale)(void *ctx, float *x, float s, int64_t n);
    /* *host_out = Σ x² accumulated in double, in a fixed order */
    void (*sumsq)(void *ctx, double *host_out, const float *x, int64_t n);

    /* --- token log-probabilities (the loss heads) ------------------------------ */
    /* per row n of logits (N,V): lse (N) = log Σ exp, logp (N) = logits[t] - lse
     * for t = targets[n] (0 when t < 0), entropy (N) = -Σ p log p.
     * entropy may be NULL. */
    void (*logprobs_forward)(void *ctx, float *logp, float *entropy, float *lse,
                             const float *logits, const int32_t *targets, int N, int V);
    /* dlogits (N,V) [=] = scale·(dlogp[n]·(onehot(t) - p) + dentropy[n]·(-p·(log p + H)))
     * (the bracket rounded to f32, then multiplied by scale: the logits' own scale, as in
     * d(s·z)/dz); dentropy (and entropy) may be NULL; rows with t < 0 get only the entropy
     * term.  Exactly one of dlogits (f32) and dlogits16 (bf16(dlogits), convert_bf16's
     * rounding, for a bf16 matmul backward) is not NULL. */
    void (*logprobs_backward)(void *ctx, float *dlogits, uint16_t *dlogits16,
                              const float *logits, const float *lse, const float *entropy,
                              const int32_t *targets, const float *dlogp, const float *dentropy,
                              float scale, int N, int V);

    /* Policy-gradient token loss, per token n with w[n] != 0, in double (to minimise):
     *   ρ = exp(logp − old) (1 when old is NULL), ρc = clip(ρ, 1 − ε_low, 1 + ε_high),
     *   ℓ = −min(ρ·A, ρc·A) + β·k3 − c·H,  k3 = exp(ref − logp) − (ref − logp) − 1,
     *   dlogp = w·(−ρ·A when ρ·A <= ρc·A, else 0; + β·(1 − exp(ref − logp))),
     *   dentropy = −w·c
     * (cfg host: ε_low, ε_high, β, c; the β terms only with ref, H only with entropy;
     * dentropy may be NULL); tokens with w = 0 get dlogp = dentropy = 0 and add nothing.
     * *stats (one struct in backend memory) += the sums over the call's tokens: in token
     * order, one after another, on the CPU; in a fixed order of the backend's elsewhere.
     * All arrays (N). */
    void (*pg_loss)(void *ctx, float *dlogp, float *dentropy, struct r1_pg_stats *stats,
                    const float *logp, const float *old, const float *ref,
                    const float *entropy, const float *adv, const float *w,
                    const struct r1_pg_cfg *cfg, int N);

    /* --- optimizer ---------------------------------------------------------------- */
    /* AdamW over the n_ranges ranges r (host memory; ranges do not overlap), all in one
     * call (every tensor of a model: a GPU launches a kernel per batch of ranges, not per
     * tensor), step >= 1 (bias correction), g = grad · grad_scale, per element:
     * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;
     * param -= lr · (m/(1-b1^step) / (sqrt(v/(1-b2^step)) + eps) + wd · param)
     * with the range's wd; elements outside the ranges are not touched.  param16, when not
     * NULL, gets bf16 of the updated param (convert_bf16's rounding): the bf16 working copy
     * of a model training in bf16, kept current in the same pass */
    void (*adamw_update)(void *ctx, float *param, uint16_t *param16, const float *grad,
                         float *m, float *v, const struct r1_adamw_range *r, int n_ranges,
                         float lr, float beta1, float beta2, float eps, float grad_scale,
                         int64_t step);

    /* --- sampling (generation) ---------------------------------------------------- */
    /* OPTIONAL (a device backend, so that a decode step downloads a token per sequence
     * instead of its logits; without it core/generate.c samples on the host): for each row
     * n of logits (N,ld), tokens[n] = the token r1_sample_token (core/sample.h) draws from
     * its first V entries (V <= ld) with the uniform u[n] under *s (host memory) and
     * logprobs[n] its log-probability as that function returns it; tokens, logprobs, u (N).  The weights have the host's bits but
     * their sums are taken in another order, so a token can differ from the host's only
     * where u lies within rounding (~1e-16 relative) of the boundary between two tokens,
     * and logprobs agree to float rounding. */
    void (*sample)(void *ctx, int32_t *tokens, float *logprobs, const float *logits,
                   int64_t ld, const float *u, int N, int V, const struct r1_sampling *s);

    /* --- graphs (generation) --------------------------------------------------------- */
    /* OPTIONAL, all four or none (a device backend whose ops cost more to launch than to run
     * at decode sizes: CUDA graphs).  The ops called between graph_begin and graph_end are
     * recorded instead of run (none of them may be alloc, free, upload, download, sync or
     * sumsq: what touches the host); graph_end returns the recording, or NULL after a
     * failure (check reports it); graph_launch runs the recorded ops again, in order, on
     * the memory they were given and its contents at the time; graph_free releases it. */
    void (*graph_begin)(void *ctx);
    void *(*graph_end)(void *ctx);
    void (*graph_launch)(void *ctx, void *graph);
    void (*graph_free)(void *ctx, void *graph);
};

struct r1_backend {
    const struct r1_backend_ops *ops;
    void *ctx;
    size_t arena_bytes; /* bytes of the arenas committed on it and not released (tensor.c):
                         * parameters, gradients, optimizer state, activations, KV caches */
};

enum r1_backend_kind { R1_BACKEND_AUTO = 0, R1_BACKEND_CPU, R1_BACKEND_CUDA };

/* 0, or the backend's recorded failure (ops->check); cheap, call after downloads. */
static inline int r1_backend_check(const struct r1_backend *be)
{
    return be->ops->check ? be->ops->check(be->ctx) : 0;
}

/* Creates a backend (registry in core/backend.c).  AUTO picks CUDA when built
 * with it and a device is present, else CPU.  threads <= 0: OpenMP default. */
int r1_backend_create(struct r1_backend **out, enum r1_backend_kind kind, int threads);
/* The same on GPU number device (modulo the visible count; one GPU per process of a job:
 * its local rank).  The CPU backend ignores it. */
int r1_backend_create_on(struct r1_backend **out, enum r1_backend_kind kind, int threads,
                         int device);
void r1_backend_free(struct r1_backend *be);
/* The device a backend computes on: "cpu", or the GPU's name (e.g. "NVIDIA H200"). */
const char *r1_backend_device(const struct r1_backend *be);
/* Names of compiled-in backends and build facts, for `r1 --version`. */
const char *r1_backend_build_info(void);

/* Constructors the registry calls (one per backend). */
int r1_backend_cpu_create(struct r1_backend **out, int threads);
/* kernels/cuda, compiled in with -Dcuda (R1_CUDA): R1_EIO when no GPU is usable. */
int r1_backend_cuda_create(struct r1_backend **out, int threads, int device);
int r1_backend_cuda_available(void);
const char *r1_backend_cuda_device(const struct r1_backend *be);

#endif
