/* cublaslt-emu.cc - the cuBLASLt entry points r1 opens (kernels/cuda/cuda-ops.h struct
 * r1_cublaslt), on the CPU, for the CUDA emulator: built as libcublaslt-emu.so and named by
 * R1_CUBLASLT.
 *
 * Column-major D = alpha·op(A)·op(B) + beta·C [+ bias] with each element summed in double
 * over k in order (an exact-enough stand-in: the parity tests compare against the CPU
 * backend's SGEMM within the f32 tolerances); bf16 operands are widened to f32 first, as
 * tensor cores take them.  A matmul on a stream that captures a graph is recorded in it
 * (r1_emu_enqueue), as cuBLASLt's kernels are.
 *
 * It is strict where a real cuBLASLt would misbehave or refuse, so that the backend's use
 * of the API is checked here: attribute sizes and values; layouts that describe the
 * stored matrices (rows and columns before the operation) and agree with D's m and n;
 * C's layout equal to D's; an algorithm used only with the descriptors it was found for;
 * pointers at least as aligned as the preference promised the heuristic (and the bias as
 * aligned as it was when the heuristic saw it); the workspace the algorithm asked for,
 * which the GEMM then overwrites with NaN bytes (memory r1 shares with it shows).  Algorithms
 * for k >= 256 ask for up to 1 MiB of workspace.  With R1_EMU_LT_NO_BIAS=1 in the
 * environment the heuristic has no algorithm with the bias epilogue, as cuBLASLt may not
 * for some shapes. */
#include "cublasLt.h"

#include <stdlib.h>

struct r1_emu_lt {
    int unused;
};
struct r1_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType scale;
    int32_t ta, tb;
    uint32_t epilogue;
    const void *bias;
};
struct r1_emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct r1_emu_lt_pref {
    uint64_t max_ws;
    uint32_t align[4]; /* A, B, C, D */
};

namespace {

const uint64_t ALGO_MAGIC = 0x72314c74656d75ull;

float load(const void *p, cudaDataType t, size_t i)
{
    if (t == CUDA_R_16BF) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
    }
    return ((const float *)p)[i];
}

uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t low = a & (~a + 1);
    return low == 0 || low >= 256 ? 256 : (uint32_t)low;
}

cublasStatus_t bad(const char *fn, const char *why)
{
    fprintf(stderr, "cublaslt-emu: %s: %s\n", fn, why);
    return CUBLAS_STATUS_INVALID_VALUE;
}

/* m, n, k of the product the descriptors describe, or a status naming what is wrong */
cublasStatus_t shape(const char *fn, const r1_emu_lt_desc *d, const r1_emu_lt_layout *a,
                     const r1_emu_lt_layout *b, const r1_emu_lt_layout *c,
                     const r1_emu_lt_layout *dd, uint64_t *m, uint64_t *n, uint64_t *k)
{
    if (!d || !a || !b || !c || !dd)
        return bad(fn, "a descriptor is NULL");
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type != b->type || (a->type != CUDA_R_32F && a->type != CUDA_R_16BF) ||
        dd->type != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (c->type != dd->type || c->rows != dd->rows || c->cols != dd->cols || c->ld != dd->ld)
        return bad(fn, "C's layout differs from D's");
    const r1_emu_lt_layout *all[4] = {a, b, c, dd};
    for (int i = 0; i < 4; i++)
        if (all[i]->ld < (int64_t)(all[i]->rows > 1 ? all[i]->rows : 1))
            return bad(fn, "a leading dimension is below the rows of its layout");
    *m = dd->rows;
    *n = dd->cols;
    uint64_t am = d->ta ? a->cols : a->rows, ak = d->ta ? a->rows : a->cols;
    uint64_t bk = d->tb ? b->cols : b->rows, bn = d->tb ? b->rows : b->cols;
    if (am != *m || bn != *n || ak != bk)
        return bad(fn, "op(A) (m,k) and op(B) (k,n) do not match D (m,n)");
    *k = ak;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && !d->bias)
        return bad(fn, "bias epilogue without a bias pointer");
    return CUBLAS_STATUS_SUCCESS;
}

uint64_t flags_of(const r1_emu_lt_desc *d, const r1_emu_lt_layout *a)
{
    return (uint64_t)d->ta | (uint64_t)d->tb << 1 |
           (uint64_t)(d->epilogue == CUBLASLT_EPILOGUE_BIAS) << 2 | (uint64_t)a->type << 8;
}

void gemm(bool ta, bool tb, uint64_t m, uint64_t n, uint64_t k, float alpha, const void *A,
          cudaDataType at, int64_t lda, const void *B, int64_t ldb, float beta, const float *C,
          float *D, int64_t ldd, const float *bias)
{
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double acc = 0;
            for (uint64_t p = 0; p < k; p++) {
                float x = load(A, at, ta ? p + i * lda : i + p * lda);
                float y = load(B, at, tb ? j + p * ldb : p + j * ldb);
                acc += (double)x * y;
            }
            size_t o = i + j * ldd;
            /* beta = 0 ignores C (it may hold NaN), as cuBLASLt does */
            double v = alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * C[o]);
            D[o] = (float)(bias ? v + bias[i] : v);
        }
}

} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    *h = new r1_emu_lt();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale)
{
    *d = new r1_emu_lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                            NULL};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size)
{
    const char *fn = "cublasLtMatmulDescSetAttribute";
    if (!d || !buf)
        return bad(fn, "NULL descriptor or value");
    int32_t v32 = 0;
    if (attr != CUBLASLT_MATMUL_DESC_BIAS_POINTER) {
        if (size != sizeof(int32_t))
            return bad(fn, "the value's size is not the attribute's");
        memcpy(&v32, buf, sizeof(v32));
    }
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: d->compute = (cublasComputeType_t)v32; break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: d->scale = (cudaDataType)v32; break;
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (v32 != CUBLAS_OP_N && v32 != CUBLAS_OP_T)
            return bad(fn, "an operation is neither N nor T");
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = v32;
        break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (v32 != CUBLASLT_EPILOGUE_DEFAULT && v32 != CUBLASLT_EPILOGUE_BIAS)
            return CUBLAS_STATUS_NOT_SUPPORTED;
        d->epilogue = (uint32_t)v32;
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *))
            return bad(fn, "the bias pointer's size is not a pointer's");
        memcpy(&d->bias, buf, sizeof(void *));
        break;
    default: return bad(fn, "an attribute the emulator does not know");
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld)
{
    *l = new r1_emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new r1_emu_lt_pref{0, {256, 256, 256, 256}}; /* the toolkit's defaults */
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size)
{
    const char *fn = "cublasLtMatmulPreferenceSetAttribute";
    if (!p || !buf)
        return bad(fn, "NULL preference or value");
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != sizeof(uint64_t))
            return bad(fn, "the workspace size is not a uint64_t");
        memcpy(&p->max_ws, buf, sizeof(uint64_t));
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES ||
        attr > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
        return bad(fn, "an attribute the emulator does not know");
    uint32_t v;
    if (size != sizeof(v))
        return bad(fn, "an alignment is not a uint32_t");
    memcpy(&v, buf, sizeof(v));
    if (v == 0 || (v & (v - 1)) || v > 256)
        return bad(fn, "an alignment is not a power of two up to 256");
    p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned)
{
    const char *fn = "cublasLtMatmulAlgoGetHeuristic";
    *returned = 0;
    if (!h || !p || requested < 1 || !results)
        return bad(fn, "no handle, preference or room for a result");
    uint64_t m, n, k;
    cublasStatus_t st = shape(fn, d, a, b, c, dd, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    const char *nb = getenv("R1_EMU_LT_NO_BIAS");
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && nb && *nb == '1')
        return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t need = k >= 256 ? (p->max_ws < ((uint64_t)1 << 20) ? p->max_ws : (uint64_t)1 << 20)
                             : 0;
    cublasLtMatmulHeuristicResult_t *r = &results[0];
    memset(r, 0, sizeof(*r));
    r->algo.data[0] = ALGO_MAGIC;
    r->algo.data[1] = m;
    r->algo.data[2] = n;
    r->algo.data[3] = k;
    r->algo.data[4] = flags_of(d, a);
    r->algo.data[5] = need;
    r->algo.data[6] = (uint64_t)p->align[0] | (uint64_t)p->align[1] << 16 |
                      (uint64_t)p->align[2] << 32 | (uint64_t)p->align[3] << 48;
    r->algo.data[7] = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? align_of(d->bias) : 0;
    r->workspaceSize = need;
    r->state = CUBLAS_STATUS_SUCCESS;
    r->wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t dd,
                              const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t stream)
{
    const char *fn = "cublasLtMatmul";
    if (!h || !alpha || !beta || !A || !B || !D || !algo)
        return bad(fn, "a NULL argument");
    uint64_t m, n, k;
    cublasStatus_t st = shape(fn, d, a, b, c, dd, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    const uint64_t *g = algo->data;
    if (g[0] != ALGO_MAGIC || g[1] != m || g[2] != n || g[3] != k || g[4] != flags_of(d, a))
        return bad(fn, "the algorithm was found for other descriptors");
    float al, be;
    memcpy(&al, alpha, sizeof(al)); /* host pointer mode: read at the call */
    memcpy(&be, beta, sizeof(be));
    if (be != 0.0f && !C)
        return bad(fn, "beta != 0 without C");
    const void *ptr[4] = {A, B, C ? C : D, D};
    for (int i = 0; i < 4; i++)
        if (align_of(ptr[i]) < (uint32_t)((g[6] >> (16 * i)) & 0xffff))
            return bad(fn, "a matrix is less aligned than the preference told the heuristic");
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && align_of(d->bias) < g[7])
        return bad(fn, "the bias is less aligned than when the heuristic saw it");
    if (g[5] && (!workspace || workspace_bytes < g[5]))
        return bad(fn, "less workspace than the algorithm asked for");
    bool ta = d->ta, tb = d->tb;
    cudaDataType at = a->type;
    int64_t lda = a->ld, ldb = b->ld, ldd = dd->ld;
    const float *bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? (const float *)d->bias : NULL;
    const float *Cf = (const float *)(C ? C : D);
    size_t scribble = (size_t)g[5];
    r1_emu_enqueue(stream, [=]() {
        gemm(ta, tb, m, n, k, al, A, at, lda, B, ldb, be, Cf, (float *)D, ldd, bias);
        if (scribble) /* the workspace is the algorithm's: whatever was there is gone */
            memset(workspace, 0xff, scribble);
    });
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasLtGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
}
