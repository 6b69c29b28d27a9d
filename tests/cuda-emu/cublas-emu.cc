/* cublas-emu.cc - the cuBLAS entry points r1 opens (kernels/cuda/cuda-ops.h struct r1_cublas),
 * on the CPU, for the CUDA emulator: built as libcublas-emu.so and named by R1_CUBLAS.
 * Column-major GEMMs with each element summed in double over k in order (an exact-enough
 * stand-in: the parity tests compare against the CPU backend's SGEMM within the f32
 * tolerances).  bf16 inputs of cublasGemmEx are widened to f32 first, as tensor cores take
 * them.  Arguments cuBLAS would refuse return CUBLAS_STATUS_INVALID_VALUE.  A GEMM on a
 * stream that captures a graph is recorded in it (r1_emu_enqueue), as cuBLAS's kernels are. */
#include "cublas_v2.h"

#include <stdlib.h>

struct r1_emu_cublas {
    cudaStream_t stream;
};

namespace {

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

bool bad_dims(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb,
              int ldc)
{
    int ar = ta == CUBLAS_OP_N ? m : k, br = tb == CUBLAS_OP_N ? k : n;
    return m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) ||
           ldc < (m > 1 ? m : 1);
}

void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
          const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
          float beta, float *C, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int p = 0; p < k; p++) {
                float a = load(A, at, ta == CUBLAS_OP_N ? (size_t)i + (size_t)p * lda
                                                        : (size_t)p + (size_t)i * lda);
                float b = load(B, bt, tb == CUBLAS_OP_N ? (size_t)p + (size_t)j * ldb
                                                        : (size_t)j + (size_t)p * ldb);
                acc += (double)a * b;
            }
            float *c = &C[(size_t)i + (size_t)j * ldc];
            /* beta = 0 ignores C (it may hold NaN), as cuBLAS does */
            *c = beta == 0.0f ? (float)(alpha * acc) : (float)(alpha * acc + (double)beta * *c);
        }
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
    *h = new r1_emu_cublas();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s)
{
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t m)
{
    return m == CUBLAS_DEFAULT_MATH ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t, cublasPointerMode_t m)
{
    return m == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc)
{
    if (bad_dims(ta, tb, m, n, k, lda, ldb, ldc))
        return CUBLAS_STATUS_INVALID_VALUE;
    float al = *alpha, be = *beta; /* host pointer mode: read at the call */
    r1_emu_enqueue(h->stream, [=]() {
        gemm(ta, tb, m, n, k, al, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, be, C, ldc);
    });
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t)
{
    if (bad_dims(ta, tb, m, n, k, lda, ldb, ldc))
        return CUBLAS_STATUS_INVALID_VALUE;
    /* the combinations r1 asks for: f32 or bf16 inputs (the same type), f32 out and compute */
    if (ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F || at != bt ||
        (at != CUDA_R_32F && at != CUDA_R_16BF))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    float al = *(const float *)alpha, be = *(const float *)beta;
    r1_emu_enqueue(h->stream, [=]() {
        gemm(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, (float *)C, ldc);
    });
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
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
