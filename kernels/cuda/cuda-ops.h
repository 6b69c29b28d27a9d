/* cuda-ops.h - internal interface of the CUDA backend (kernels/cuda).
 *
 * Every r1_cuda_* op implements the core/backend.h entry of the same name and follows its
 * contract: shapes, += for parameter gradients and = for activation gradients, and the
 * same bits on every call.  No kernel uses atomics: every sum is taken by one thread, or
 * by a warp or block in a fixed tree (reduce.cuh), over a split of the work that depends
 * on the shapes alone, never on the GPU or on timing.  cuBLAS GEMMs are bitwise
 * reproducible on one GPU model and toolkit (its documented guarantee, default math mode:
 * no TF32, one stream).
 *
 * ctx is always a struct r1_cuda.  All work is queued on ctx->stream; upload and download
 * return when the copy is done (the host buffer may be reused at once).
 *
 * Errors: the ops return void, so the first CUDA or cuBLAS failure is recorded in ctx
 * (r1_cuda_fail) and every later op does nothing; downloads then fill the host buffer
 * with NaN bytes.  r1_cuda_check (the ops table's `check`) reports it as R1_EIO through
 * r1_err_set, naming the call, the file and line and the device.
 */
#ifndef R1_CUDA_OPS_H
#define R1_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <cublas_v2.h>
#include <cuda_runtime.h>
extern "C" {
#endif

/* ranges sumsq splits its input into (pointwise.cu); the backend's pinned buffer holds as
 * many partial sums */
#define R1_CUDA_SUMSQ_PARTS 1024

#ifdef __cplusplus
/* The cuBLAS entry points r1 uses, from libcublas opened with dlopen when the backend is
 * created: linking it would make every r1 process (CPU runs, `r1 --help`) map ~200 MB and
 * spend ~50 ms in its start-up. */
struct r1_cublas {
    void *lib;
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetPointerMode_v2) set_pointer_mode;
    decltype(&cublasSgemm_v2) sgemm;
    /* the library's cublasGemmEx (the header overloads the name for C++) */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                              int, const void *, const void *, cudaDataType, int, const void *,
                              cudaDataType, int, const void *, void *, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) status_string;
};

struct r1_cuda {
    int device;
    char device_name[256];
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t blas;
    struct r1_cublas cb;
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

/* linear.cu */
void r1_cuda_matmul_forward(void *ctx, float *out, const float *in, const float *w,
                            const float *bias, int M, int K, int N);
void r1_cuda_matmul_backward(void *ctx, float *din, float *dw, float *dbias, const float *dout,
                             const float *in, const float *w, int M, int K, int N);
void r1_cuda_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                               int N, int C);
void r1_cuda_embedding_backward(void *ctx, float *dwte, const float *dout, const int32_t *tokens,
                                int N, int C);

/* linear-bf16.cu */
void r1_cuda_matmul_forward_bf16(void *ctx, float *out, const float *in, const uint16_t *w,
                                 const float *bias, int M, int K, int N);
void r1_cuda_convert_bf16(void *ctx, uint16_t *dst, const float *src, int64_t n);
void r1_cuda_matmul16_forward(void *ctx, float *out, const uint16_t *in, const uint16_t *w,
                              const float *bias, int M, int K, int N);
void r1_cuda_matmul16_backward(void *ctx, float *din, float *dw, float *dbias,
                               const uint16_t *dout, const uint16_t *in, const uint16_t *w, int M,
                               int K, int N);

/* norm.cu */
void r1_cuda_rmsnorm_forward(void *ctx, float *out, float *rstd, const float *in, const float *w,
                             int N, int C, float eps);
void r1_cuda_rmsnorm_backward(void *ctx, float *din, float *dw, const float *dout,
                              const float *in, const float *w, const float *rstd, int N, int C);

/* rope.cu */
void r1_cuda_rope_forward(void *ctx, float *x, const int32_t *pos, const float *cos,
                          const float *sin, int N, int H, int D);
void r1_cuda_rope_backward(void *ctx, float *dx, const int32_t *pos, const float *cos,
                           const float *sin, int N, int H, int D);

/* attention.cu */
void r1_cuda_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, const int32_t *seg, int B, int T, int H, int KVH,
                               int D);
void r1_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                const float *out, const float *lse, const float *q,
                                const float *k, const float *v, const int32_t *seg, int B, int T,
                                int H, int KVH, int D);

/* attention16.cu */
void r1_cuda_attention16_forward(void *ctx, float *out, float *lse, const float *q,
                                 const float *k, const float *v, const int32_t *seg, int B, int T,
                                 int H, int KVH, int D);
void r1_cuda_attention16_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                  const float *out, const float *lse, const float *q,
                                  const float *k, const float *v, const int32_t *seg, int B,
                                  int T, int H, int KVH, int D);

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
void r1_cuda_swiglu_forward(void *ctx, float *out, const float *gate, const float *up, int64_t n);
void r1_cuda_swiglu_backward(void *ctx, float *dgate, float *dup, const float *dout,
                             const float *gate, const float *up, int64_t n);
void r1_cuda_add(void *ctx, float *out, const float *a, const float *b, int64_t n);
void r1_cuda_scale(void *ctx, float *x, float s, int64_t n);
void r1_cuda_sumsq(void *ctx, double *host_out, const float *x, int64_t n);

/* logprobs.cu */
void r1_cuda_logprobs_forward(void *ctx, float *logp, float *entropy, float *lse,
                              const float *logits, const int32_t *targets, int N, int V);
void r1_cuda_logprobs_backward(void *ctx, float *dlogits, const float *logits, const float *lse,
                               const float *entropy, const int32_t *targets, const float *dlogp,
                               const float *dentropy, int N, int V);

/* adamw.cu */
void r1_cuda_adamw_update(void *ctx, float *param, const float *grad, float *m, float *v,
                          int64_t n, float lr, float beta1, float beta2, float eps,
                          float weight_decay, float grad_scale, int64_t step);

/* sample.cu */
struct r1_sampling;
void r1_cuda_sample(void *ctx, int32_t *tokens, float *logprobs, const float *logits,
                    int64_t ld, const float *u, int N, int V, const struct r1_sampling *s);

#ifdef __cplusplus
}
#endif

#endif
