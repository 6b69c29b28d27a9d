/* gemm.c - a small single-threaded GEMM for use inside OpenMP tasks.
 *
 * OpenBLAS is not called inside parallel regions (its pthread pool would
 * oversubscribe the cores or serialise), so attention tiles use this instead.
 * C (M,N) = [C +] A (M,K) · B (K,N); A is addressed with two strides so the
 * same routine serves A and Aᵀ; B rows are contiguous along N.
 *
 * The main path keeps a 4×16 block of C in registers and walks k in
 * increasing order; the edge paths walk k in the same order.  So every C
 * element is the same sequence of float operations for given inputs.
 */
#include "kernels/cpu/cpu-ops.h"

#include <string.h>

#define R1_GEMM_MR 4
#define R1_GEMM_NR 16

/* one MR×NR block of C, accumulators in registers: GCC/Clang vector
 * extensions (8 floats: one AVX register, two SSE registers), the same
 * per-element mul-then-add in k order as the scalar edge paths */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
/* AVX2 code path picked at load time on CPUs that have it (ifunc) */
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#endif
static void
gemm_block(int K, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *restrict B,
           ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate)
{
    float __attribute__((vector_size(32))) acc[R1_GEMM_MR][2] = {{{0}}};
    _Static_assert(sizeof(acc) == R1_GEMM_MR * R1_GEMM_NR * sizeof(float), "vector layout");
    if (accumulate)
        for (int r = 0; r < R1_GEMM_MR; r++) {
            memcpy(&acc[r][0], C + r * ldc, 32);
            memcpy(&acc[r][1], C + r * ldc + 8, 32);
        }
    for (int k = 0; k < K; k++) {
        float __attribute__((vector_size(32))) b[2];
        memcpy(&b[0], B + k * ldb, 32);
        memcpy(&b[1], B + k * ldb + 8, 32);
        for (int r = 0; r < R1_GEMM_MR; r++) {
            float a = A[r * ars + k * acs];
            acc[r][0] += a * b[0];
            acc[r][1] += a * b[1];
        }
    }
    for (int r = 0; r < R1_GEMM_MR; r++) {
        memcpy(C + r * ldc, &acc[r][0], 32);
        memcpy(C + r * ldc + 8, &acc[r][1], 32);
    }
}

/* one row × NR columns of C (row tail) */
static void gemm_row(int K, const float *A, ptrdiff_t acs, const float *restrict B, ptrdiff_t ldb,
                     float *C, int accumulate)
{
    float acc[R1_GEMM_NR];
    for (int j = 0; j < R1_GEMM_NR; j++)
        acc[j] = accumulate ? C[j] : 0.0f;
    for (int k = 0; k < K; k++) {
        const float *restrict b = B + k * ldb;
        float a = A[k * acs];
        for (int j = 0; j < R1_GEMM_NR; j++)
            acc[j] += a * b[j];
    }
    for (int j = 0; j < R1_GEMM_NR; j++)
        C[j] = acc[j];
}

void r1_cpu_gemm(int M, int N, int K, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *B,
                 ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate)
{
    int n_main = N - N % R1_GEMM_NR;
    int m_main = M - M % R1_GEMM_MR;
    /* column stripes outer: a K×16 stripe of B stays in L1 while the row
     * blocks of A (a query tile, also L1-sized) stream past it */
    for (int j = 0; j < n_main; j += R1_GEMM_NR)
        for (int i = 0; i < m_main; i += R1_GEMM_MR)
            gemm_block(K, A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, accumulate);
    for (int i = m_main; i < M; i++)
        for (int j = 0; j < n_main; j += R1_GEMM_NR)
            gemm_row(K, A + i * ars, acs, B + j, ldb, C + i * ldc + j, accumulate);
    /* column tail: scalar, same k order */
    for (int i = 0; i < M; i++)
        for (int j = n_main; j < N; j++) {
            float s = accumulate ? C[i * ldc + j] : 0.0f;
            for (int k = 0; k < K; k++)
                s += A[i * ars + k * acs] * B[k * ldb + j];
            C[i * ldc + j] = s;
        }
}
