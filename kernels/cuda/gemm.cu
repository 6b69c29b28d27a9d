/* gemm.cu - every cuBLAS GEMM of the CUDA backend, on cuBLASLt.
 *
 * Why cuBLASLt and not cublasSgemm / cublasGemmEx: it takes r1's own workspace (allocated
 * with the backend, shown in the memory plan, the same memory in every graph replay,
 * where cuBLAS would allocate its own per stream and per capture), it fuses the bias into
 * the GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS: no fill of the output before it), and the
 * algorithm is chosen once per shape and kept.
 *
 * A plan is the descriptors of one shape (operations, m, n, k, leading dimensions, operand
 * type, bias or not, and the alignment of each pointer, which the heuristic may rely on)
 * with the algorithm cublasLtMatmulAlgoGetHeuristic ranks first for it.  The heuristic is
 * a model of the GPU, not a timing, so a shape gets the same algorithm in every run on the
 * same GPU model and toolkit, and with it the same bits; the cache only saves the host the
 * descriptor set-up and the query.  It holds R1_GEMM_PLANS shapes (a run has a few dozen
 * per batch shape); when it fills up it is emptied and refilled.
 *
 * Where cuBLASLt has no algorithm with the bias epilogue for a shape, the plan is made
 * without it and the bias is filled into the output before a GEMM with beta 1, as the
 * cuBLAS path did (same result up to rounding; one more pass over the output).
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <stdlib.h>
#include <string.h>

#define R1_GEMM_PLANS 256 /* cached shapes (a power of two) */

struct r1_gemm_key {
    int32_t ta, tb, m, n, k, lda, ldb, ldd, ab, bias;
    int32_t align[5]; /* A, B, D, bias, C: the largest power of two <= 256 dividing the
                       * address */
};

struct r1_gemm_plan {
    struct r1_gemm_key key;
    int used;
    int fused; /* the bias is the epilogue's; else a fill before the GEMM, beta 1 */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    size_t ws;
};

/* out (M,N) = bias (N) in every row (before a beta = 1 GEMM, or a matmul with K = 0) */
static __global__ void r1_bias_fill(float *out /* (M,N) */, const float *bias /* (N) */,
                                    int64_t total, int N)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        out[i] = bias[i % N];
}

/* out (M,N) = bias in every row, on the stream */
static void bias_fill(struct r1_cuda *cu, float *out, const float *bias, int64_t M, int N)
{
    int64_t total = M * N;
    R1_LAUNCH(r1_bias_fill, r1_cuda_blocks(total, 256), 256, cu->stream)(out, bias, total, N);
    R1_CUDA_LAUNCHED(cu, "bias fill");
}

static int32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t low = a & (~a + 1); /* lowest set bit; 0 for NULL */
    return low == 0 || low >= 256 ? 256 : (int32_t)low;
}

static uint32_t key_hash(const struct r1_gemm_key *k)
{
    const unsigned char *b = (const unsigned char *)k;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static void plan_free(struct r1_cuda *cu, struct r1_gemm_plan *p)
{
    if (p->desc)
        cu->lb.desc_destroy(p->desc);
    if (p->la)
        cu->lb.layout_destroy(p->la);
    if (p->lb)
        cu->lb.layout_destroy(p->lb);
    if (p->ld)
        cu->lb.layout_destroy(p->ld);
    memset(p, 0, sizeof(*p));
}

extern "C" void r1_cuda_gemm_release(struct r1_cuda *cu)
{
    if (!cu->plans)
        return;
    for (int i = 0; i < R1_GEMM_PLANS; i++)
        if (cu->plans[i].used)
            plan_free(cu, &cu->plans[i]);
    free(cu->plans);
    cu->plans = NULL;
    cu->n_plans = 0;
}

static bool lt_fail(struct r1_cuda *cu, cublasStatus_t st, const char *what, int line)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return false;
    r1_cuda_fail(cu, what, cu->lb.status_string(st), __FILE__, line);
    return true;
}

/* The first-ranked algorithm for p's descriptors under the preference of its key, or false
 * (status in *st) when cuBLASLt has none. */
static bool plan_algo(struct r1_cuda *cu, struct r1_gemm_plan *p, cublasStatus_t *st)
{
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof(res));
    *st = cu->lb.heuristic(cu->lt, p->desc, p->la, p->lb, p->ld, p->ld, cu->lt_pref, 1, &res,
                           &found);
    if (*st == CUBLAS_STATUS_SUCCESS && (found < 1 || res.state != CUBLAS_STATUS_SUCCESS))
        *st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (*st != CUBLAS_STATUS_SUCCESS)
        return false;
    p->algo = res.algo;
    p->ws = res.workspaceSize;
    return true;
}

/* Fills p for key k (bias: the pointer the heuristic sees); false after recording a failure. */
static bool plan_make(struct r1_cuda *cu, struct r1_gemm_plan *p, const struct r1_gemm_key *k,
                      const float *bias, const char *what)
{
    const struct r1_cublaslt *lb = &cu->lb;
    cudaDataType ab = (cudaDataType)k->ab;
    int32_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint64_t ws = cu->gemm_ws_bytes;
    uint32_t al[4] = {(uint32_t)k->align[0], (uint32_t)k->align[1], (uint32_t)k->align[4],
                      (uint32_t)k->align[2]};
    memset(p, 0, sizeof(*p));
    p->key = *k;
    p->used = 1;
    if (lt_fail(cu, lb->desc_create(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                "cublasLtMatmulDescCreate", __LINE__) ||
        lt_fail(cu, lb->desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
                "cublasLtMatmulDescSetAttribute", __LINE__) ||
        lt_fail(cu, lb->desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
                "cublasLtMatmulDescSetAttribute", __LINE__) ||
        /* stored A is (m,k), or (k,m) transposed; B (k,n) or (n,k) */
        lt_fail(cu, lb->layout_create(&p->la, ab, k->ta ? k->k : k->m, k->ta ? k->m : k->k,
                                      k->lda),
                "cublasLtMatrixLayoutCreate", __LINE__) ||
        lt_fail(cu, lb->layout_create(&p->lb, ab, k->tb ? k->n : k->k, k->tb ? k->k : k->n,
                                      k->ldb),
                "cublasLtMatrixLayoutCreate", __LINE__) ||
        lt_fail(cu, lb->layout_create(&p->ld, CUDA_R_32F, k->m, k->n, k->ldd),
                "cublasLtMatrixLayoutCreate", __LINE__) ||
        lt_fail(cu, lb->pref_set(cu->lt_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                 sizeof(ws)),
                "cublasLtMatmulPreferenceSetAttribute", __LINE__))
        return false;
    static const cublasLtMatmulPreferenceAttributes_t pal[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        if (lt_fail(cu, lb->pref_set(cu->lt_pref, pal[i], &al[i], sizeof(al[i])),
                    "cublasLtMatmulPreferenceSetAttribute", __LINE__))
            return false;
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (k->bias) {
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        if (lt_fail(cu, lb->desc_set(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
                    "cublasLtMatmulDescSetAttribute", __LINE__) ||
            lt_fail(cu, lb->desc_set(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                     sizeof(bias)),
                    "cublasLtMatmulDescSetAttribute", __LINE__))
            return false;
        if (plan_algo(cu, p, &st)) {
            p->fused = 1;
            return true;
        }
        epi = CUBLASLT_EPILOGUE_DEFAULT; /* no fused bias for this shape: fill, then beta 1 */
        if (lt_fail(cu, lb->desc_set(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
                    "cublasLtMatmulDescSetAttribute", __LINE__))
            return false;
    }
    if (plan_algo(cu, p, &st))
        return true;
    char detail[192];
    snprintf(detail, sizeof(detail), "no cuBLASLt algorithm for m=%d n=%d k=%d (%s): %s", k->m,
             k->n, k->k, ab == CUDA_R_16BF ? "bf16" : "f32", lb->status_string(st));
    r1_cuda_fail(cu, what, detail, __FILE__, __LINE__);
    return false;
}

/* The plan for k, made if needed; NULL after recording a failure. */
static struct r1_gemm_plan *plan_get(struct r1_cuda *cu, const struct r1_gemm_key *k,
                                     const float *bias, const char *what)
{
    if (!cu->plans) {
        cu->plans = (struct r1_gemm_plan *)calloc(R1_GEMM_PLANS, sizeof(*cu->plans));
        if (!cu->plans) {
            r1_cuda_fail(cu, what, "out of host memory for GEMM plans", __FILE__, __LINE__);
            return NULL;
        }
    }
    uint32_t i = key_hash(k) & (R1_GEMM_PLANS - 1);
    for (;; i = (i + 1) & (R1_GEMM_PLANS - 1)) {
        struct r1_gemm_plan *p = &cu->plans[i];
        if (!p->used)
            break;
        if (!memcmp(&p->key, k, sizeof(*k)))
            return p;
    }
    if (cu->n_plans >= R1_GEMM_PLANS * 3 / 4) { /* full: start again */
        for (int j = 0; j < R1_GEMM_PLANS; j++)
            if (cu->plans[j].used)
                plan_free(cu, &cu->plans[j]);
        cu->n_plans = 0;
        i = key_hash(k) & (R1_GEMM_PLANS - 1);
    }
    struct r1_gemm_plan *p = &cu->plans[i];
    cu->n_plans++;
    if (!plan_make(cu, p, k, bias, what))
        return NULL; /* left used: freed with the cache */
    return p;
}

extern "C" void r1_cuda_gemm(struct r1_cuda *cu, bool ta, bool tb, int m, int n, int k,
                             const void *A, int lda, const void *B, int ldb, cudaDataType ab,
                             float beta, const float *C, float *D, int ldd, const float *bias,
                             const char *what)
{
    if (cu->failed)
        return;
    struct r1_gemm_key key;
    memset(&key, 0, sizeof(key));
    key.ta = ta;
    key.tb = tb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.ab = (int32_t)ab;
    key.bias = bias != NULL;
    key.align[0] = align_of(A);
    key.align[1] = align_of(B);
    key.align[2] = align_of(D);
    key.align[3] = bias ? align_of(bias) : 0;
    key.align[4] = align_of(C ? C : D);
    struct r1_gemm_plan *p = plan_get(cu, &key, bias, what);
    if (!p)
        return;
    const float *add = NULL; /* C added after the GEMM (an unfused bias took D's place) */
    if (bias && p->fused) {
        if (lt_fail(cu, cu->lb.desc_set(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                        sizeof(bias)),
                    "cublasLtMatmulDescSetAttribute", __LINE__))
            return;
    } else if (bias) {
        if (C && C != D && beta != 0.0f)
            add = C;
        bias_fill(cu, D, bias, n, m); /* D is n rows of m (ldd == m) */
        beta = 1.0f;
        C = D;
    }
    const float one = 1.0f;
    lt_fail(cu, cu->lb.matmul(cu->lt, p->desc, &one, A, p->la, B, p->lb, &beta, C ? C : D,
                              p->ld, D, p->ld, &p->algo, p->ws ? cu->gemm_ws : NULL, p->ws,
                              cu->stream),
            what, __LINE__);
    if (add)
        r1_cuda_add(cu, D, D, add, (int64_t)m * n);
}

extern "C" void r1_cuda_linear(struct r1_cuda *cu, float *out, const void *in, const void *w,
                               cudaDataType ab, const float *bias, const float *res, int M,
                               int K, int N, const char *what)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* no products: out = bias in every row, or 0 */
        if (bias) {
            bias_fill(cu, out, bias, M, N);
        } else if (cudaMemsetAsync(out, 0, (size_t)M * N * sizeof(float), cu->stream) !=
                   cudaSuccess) {
            r1_cuda_fail(cu, "cudaMemsetAsync", cudaGetErrorString(cudaGetLastError()),
                         __FILE__, __LINE__);
        }
        if (res)
            r1_cuda_add(cu, out, out, res, (int64_t)M * N);
        return;
    }
    /* row-major out (M,N) = in (M,K) · w (N,K)ᵀ is the column-major outᵀ (N,M) = w (N,K) ·
     * inᵀ (K,M) on the same pointers: A = w transposed (stored (K,N) column-major), B = in */
    r1_cuda_gemm(cu, true, false, N, M, K, w, K, in, K, ab, res ? 1.0f : 0.0f, res, out, N, bias,
                 what);
}

extern "C" void r1_cuda_linear_backward(struct r1_cuda *cu, float *din, int din_add, float *dw,
                                        const void *dout, const void *in, const void *w,
                                        cudaDataType ab, int M, int K, int N, const char *what_din,
                                        const char *what_dw)
{
    if (din && M > 0 && K > 0) {
        /* dinᵀ (K,M) = wᵀ (K,N) · doutᵀ (N,M), added with beta 1: the f32 accumulator plus
         * din rounded once, as writing it then ops->add rounds */
        if (N > 0)
            r1_cuda_gemm(cu, false, false, K, M, N, w, K, dout, N, ab, din_add ? 1.0f : 0.0f,
                         NULL, din, K, NULL, what_din);
        else if (!din_add && cudaMemsetAsync(din, 0, (size_t)M * K * sizeof(float),
                                             cu->stream) != cudaSuccess)
            r1_cuda_fail(cu, "cudaMemsetAsync", cudaGetErrorString(cudaGetLastError()), __FILE__,
                         __LINE__);
    }
    if (dw && M > 0 && N > 0 && K > 0) /* dwᵀ (K,N) += inᵀ (K,M) · dout (M,N) */
        r1_cuda_gemm(cu, false, true, K, N, M, in, K, dout, N, ab, 1.0f, NULL, dw, K, NULL,
                     what_dw);
}
