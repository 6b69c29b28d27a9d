/* cuda-ops.h - internal interface of the CUDA backend (kernels/cuda).
 *
 * Every r1_cuda_* op implements the core/backend.h entry of the same name and follows its
 * contract: shapes, += for parameter gradients and = for activation gradients, and the
 * same bits on every call.  No kernel uses atomics: every sum is taken by one thread, or
 * by a warp or block in a fixed tree (reduce.cuh), over a split of the work that depends
 * on the shapes alone, never on the GPU or on timing.  GEMMs run on cuBLASLt (gemm.cu)
 * with r1's own workspace and, for each shape, the algorithm its heuristic picks (a model
 * of the GPU, not a timing): bitwise reproducible on one GPU model and toolkit (cuBLAS's
 * documented guarantee; f32 compute, no TF32).
 *
 * ctx is always a struct r1_cuda.  All work is queued on ctx->stream; upload and download
 * return when the copy is done (the host buffer may be reused at once).
 *
 * Errors: the ops return void, so the first CUDA or cuBLASLt failure is recorded in ctx
 * (r1_cuda_fail) and every later op does nothing; downloads then fill the host buffer
 * with NaN bytes.  r1_cuda_check (the ops table's `check`) reports it as R1_EIO through
 * r1_err_set, naming the call, the file and line and the device.
 */
#ifndef R1_CUDA_OPS_H
#define R1_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <cublasLt.h>
#include <cuda_runtime.h>
extern "C" {
#endif

/* ranges sumsq splits its input into (pointwise.cu); the backend's pinned buffer holds as
 * many partial sums */
#define R1_CUDA_SUMSQ_PARTS 1024

#ifdef __cplusplus
/* The cuBLASLt entry points r1 uses, from libcublasLt opened with dlopen when the backend
 * is created: linking it would make every r1 process (CPU runs, `r1 --help`) map several
 * hundred MB and spend tens of ms in its start-up. */
struct r1_cublaslt {
    void *lib;
    decltype(&cublasLtCreate) create;
    decltype(&cublasLtDestroy) destroy;
    decltype(&cublasLtMatmulDescCreate) desc_create;
    decltype(&cublasLtMatmulDescDestroy) desc_destroy;
    decltype(&cublasLtMatmulDescSetAttribute) desc_set;
    decltype(&cublasLtMatrixLayoutCreate) layout_create;
    decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
    decltype(&cublasLtMatmulPreferenceCreate) pref_create;
    decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy;
    decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set;
    decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic;
    decltype(&cublasLtMatmul) matmul;
    decltype(&cublasLtGetStatusString) status_string;
};

struct r1_gemm_plan; /* gemm.cu */

struct r1_cuda {
    int device;
    char device_name[256];
    int sm_count;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    struct r1_cublaslt lb;
    cublasLtMatmulPreference_t lt_pref;
    void *gemm_ws;     /* cuBLASLt's workspace, allocated with the backend (graphs replay it) */
    size_t gemm_ws_bytes;
    struct r1_gemm_plan *plans; /* gemm.cu's cache of descriptors and algorithms by shape */
    int n_plans;
    void *ws;          /* workspace (r1_cuda_workspace), grown on demand, never shrunk */
    size_t ws_bytes;
    /* workspaces replaced while graphs lived: a graph replays the pointers it recorded, so
     * an old workspace stays allocated until the last graph is freed */
    void **ws_old;
    int n_ws_old;
    int graphs;        /* graphs instantiated and not yet freed */
    double *host_parts; /* pinned host buffer for sumsq's partial sums */
    int failed;        /* an error was met: ops are skipped from then on */
    int capturing;     /* between graph_begin and graph_end: the stream captures */
    char err[320];     /* its message */
};

/* Records the first failure (later ones are ignored); what names the call. */
void r1_cuda_fail(struct r1_cuda *cu, const char *what, const char *detail, const char *file,
                  int line);
/* Device workspace of at least bytes (synchronises and reallocates when it must grow);
 * NULL after recording a failure. */
void *r1_cuda_workspace(struct r1_cuda *cu, size_t bytes);
#endif

/* backend-cuda.cu */
int r1_cuda_check(void *ctx);

#ifdef __cplusplus
/* gemm.cu: column-major D (m,n) = op(A) (m,k) · op(B) (k,n) + beta·C [+ bias (m) in every
 * column; then ldd == m], on cuBLASLt: A and B of type ab (CUDA_R_32F or CUDA_R_16BF), C
 * (NULL: D itself, else another matrix of D's layout) and D f32, f32 compute and scale (no
 * TF32).  k > 0; beta is 0 or 1; what names the call. */
void r1_cuda_gemm(struct r1_cuda *cu, bool ta, bool tb, int m, int n, int k, const void *A,
                  int lda, const void *B, int ldb, cudaDataType ab, float beta, const float *C,
                  float *D, int ldd, const float *bias, const char *what);
/* The matmul ops' GEMMs on operands of type ab (backend.h matmul_forward / _backward):
 * out (M,N) = in (M,K) · w (N,K)ᵀ + bias + res (any K >= 0; bias, res may be NULL; res
 * added in the epilogue, beta 1); din (M,K) = dout · w [=, or += with
 * din_add: beta 1, the sum added in the epilogue] and dw (N,K) += doutᵀ · in, each skipped
 * when NULL (the bias gradient is the caller's). */
void r1_cuda_linear(struct r1_cuda *cu, float *out, const void *in, const void *w,
                    cudaDataType ab, const float *bias, const float *res, int M, int K, int N,
                    const char *what);
void r1_cuda_linear_backward(struct r1_cuda *cu, float *din, int din_add, float *dw,
                             const void *dout, const void *in, const void *w, cudaDataType ab,
                             int M, int K, int N, const char *what_din, const char *what_dw);
/* frees the plans (backend release) */
void r1_cuda_gemm_release(struct r1_cuda *cu);
#endif

/* linear.cu */
void r1_cuda_matmul_forward(void *ctx, float *out, const float *in, const float *w,
                            const float *bias, const float *res, int M, int K, int N);
void r1_cuda_matmul_backward(void *ctx, float *din, int din_add, float *dw, float *dbias,
                             const float *dout, const float *in, const float *w, int M, int K,
                             int N);
void r1_cuda_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                               int N, int C);
void r1_cuda_embedding_backward(void *ctx, float *dwte, const float *dout, const int32_t *tokens,
                                int N, int C);

/* linear-bf16.cu */
void r1_cuda_matmul_forward_bf16(void *ctx, float *out, const float *in, const uint16_t *w,
                                 const float *bias, const float *res, int M, int K, int N);
void r1_cuda_convert_bf16(void *ctx, uint16_t *dst, const float *src, int64_t n);
void r1_cuda_matmul16_forward(void *ctx, float *out, const uint16_t *in, const uint16_t *w,
                              const float *bias, const float *res, int M, int K, int N);
void r1_cuda_matmul16_backward(void *ctx, float *din, int din_add, float *dw, float *dbias,
                               const uint16_t *dout, const uint16_t *in, const uint16_t *w, int M,
                               int K, int N);

/* norm.cu */
void r1_cuda_rmsnorm_forward(void *ctx, float *out, uint16_t *out16, float *rstd,
                             const float *in, const float *w, int N, int C, float eps);
void r1_cuda_rmsnorm_backward(void *ctx, float *din, int din_add, uint16_t *din16, float *dw,
                              const float *dout, const float *in, const float *w,
                              const float *rstd, int N, int C);

/* rope.cu */
void r1_cuda_rope_forward(void *ctx, float *x, const int32_t *pos, const float *cos,
                          const float *sin, int N, int H, int D);
void r1_cuda_rope_backward(void *ctx, float *dx, uint16_t *dx16, const int32_t *pos,
                           const float *cos, const float *sin, int N, int H, int D);

/* attention.cu */
void r1_cuda_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                               int D);
void r1_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                const float *out, const float *lse, const float *q,
                                const float *k, const float *v, const int32_t *seg, int B, int T,
                                int H, int KVH, int D);

/* attention16.cu */
void r1_cuda_attention16_forward(void *ctx, float *out, uint16_t *out16, float *lse,
                                 const float *q, const float *k, const float *v,
                                 const int32_t *seg, int B, int T, int H, int KVH, int D);
void r1_cuda_attention16_backward(void *ctx, float *dq, float *dk, float *dv, uint16_t *dv16,
                                  const float *dout, const float *out, const float *lse,
                                  const float *q, const float *k, const float *v,
                                  const int32_t *seg, int B, int T, int H, int KVH, int D);

/* attention.cu (KV cache) */
void r1_cuda_kv_store(void *ctx, float *kc, float *vc, const float *k, const float *v,
                      const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
void r1_cuda_attention_cached(void *ctx, float *out, const float *q, const float *kc,
                              const float *vc, const int32_t *slot, const int32_t *pos, int N,
                              int H, int KVH, int D, int L);
void r1_cuda_kv_store16(void *ctx, uint16_t *kc, uint16_t *vc, const float *k, const float *v,
                        const int32_t *slot, const int32_t *pos, int N, int KVH, int D, int L);
void r1_cuda_attention_cached16(void *ctx, float *out, const float *q, const uint16_t *kc,
                                const uint16_t *vc, const int32_t *slot, const int32_t *pos,
                                int N, int H, int KVH, int D, int L);
/* workspace bytes attention_cached needs for N tokens (0: caches of one split) */
size_t r1_cuda_decode_workspace(int N, int H, int D, int L);

/* pointwise.cu */
void r1_cuda_swiglu_forward(void *ctx, float *out, uint16_t *out16, const float *gate,
                            const float *up, int64_t n);
void r1_cuda_swiglu_backward(void *ctx, float *dgate, float *dup, uint16_t *dgate16,
                             uint16_t *dup16, const float *dout, const float *gate,
                             const float *up, int64_t n);
void r1_cuda_add(void *ctx, float *out, const float *a, const float *b, int64_t n);
void r1_cuda_scale(void *ctx, float *x, float s, int64_t n);
void r1_cuda_sumsq(void *ctx, double *host_out, const float *x, int64_t n);

/* logprobs.cu */
void r1_cuda_logprobs_forward(void *ctx, float *logp, float *entropy, float *lse,
                              const float *logits, const int32_t *targets, int N, int V);
void r1_cuda_logprobs_backward(void *ctx, float *dlogits, uint16_t *dlogits16,
                               const float *logits, const float *lse, const float *entropy,
                               const int32_t *targets, const float *dlogp, const float *dentropy,
                               float scale, int N, int V);
struct r1_pg_stats; /* core/backend.h */
struct r1_pg_cfg;
void r1_cuda_pg_loss(void *ctx, float *dlogp, float *dentropy, struct r1_pg_stats *st,
                     const float *logp, const float *old, const float *ref,
                     const float *entropy, const float *adv, const float *weight,
                     const struct r1_pg_cfg *cfg, int N);

/* adamw.cu */
struct r1_adamw_range; /* core/backend.h */
void r1_cuda_adamw_update(void *ctx, float *param, uint16_t *param16, const float *grad,
                          float *m, float *v, const struct r1_adamw_range *r, int n_ranges,
                          float lr, float beta1, float beta2, float eps, float grad_scale,
                          int64_t step);

/* sample.cu */
struct r1_sampling;
void r1_cuda_sample(void *ctx, int32_t *tokens, float *logprobs, const float *logits,
                    int64_t ld, const float *u, int N, int V, const struct r1_sampling *s);

#ifdef __cplusplus
}
#endif

#endif
