/* linear.c - matmul (OpenBLAS sgemm) and token embedding, CPU reference.
 *
 * Threading: OpenBLAS runs single-threaded (backend-cpu.c sets it) and sgemm
 * calls are split over the output's rows or columns by our own OpenMP team.
 * One thread pool means no fight between OpenBLAS's pthreads and OpenMP's
 * spinning workers (which cost 3x on small models), and every output element
 * is still one sgemm dot product in K order, so the split changes no bits.
 *
 * Weights are (N,K) row-major, so out = in · wᵀ.  Parameter gradients (dw,
 * dbias, dwte) are accumulated (+=), activation gradients (din) written (=).
 * Reductions over tokens (dbias, dwte) are parallel over the channel axis, each
 * channel summed by one thread in token order: the bits do not depend on the
 * thread count.
 */
#include "kernels/cpu/cpu-ops.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

/* Row-major C (M,N) = op(A) · op(B) + beta·C, split over M or N across threads. */
static void sgemm_par(const struct r1_cpu *cpu, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
                      int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc)
{
    int T = cpu->threads;
    if (T <= 1 || (int64_t)M * N * K < (int64_t)R1_CPU_PAR_MIN * 64) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int split_m = M >= N || N < 64 * T;
    int total = split_m ? M : N, align = split_m ? 4 : 16;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int chunk = ((total + nt - 1) / nt + align - 1) / align * align;
        int b = t * chunk, e = b + chunk < total ? b + chunk : total;
        if (b < e) {
            if (split_m) {
                const float *a = ta == CblasNoTrans ? A + (size_t)b * lda : A + b;
                cblas_sgemm(CblasRowMajor, ta, tb, e - b, N, K, 1.0f, a, lda, B, ldb, beta,
                            C + (size_t)b * ldc, ldc);
            } else {
                const float *bb = tb == CblasNoTrans ? B + b : B + (size_t)b * ldb;
                cblas_sgemm(CblasRowMajor, ta, tb, M, e - b, K, 1.0f, A, lda, bb, ldb, beta,
                            C + b, ldc);
            }
        }
    }
}

/* channels per task in the channel-parallel reductions: 64 floats = four
 * cache lines, so two threads never write the same line */
#define R1_CPU_CHAN_BLOCK 64
/* forward matmuls with at most this many rows use sgemv (measured: sgemm spends
 * 3/4 of an M=1 call packing w) */
#define R1_CPU_GEMV_MAX_M 2

static void linear_forward(void *ctx, float *out /* (M,N) */, const float *in /* (M,K) */,
                           const float *w /* (N,K) */, const float *bias /* (N) or NULL */, int M,
                           int K, int N)
{
    struct r1_cpu *cpu = ctx;
    if (M <= 0 || N <= 0)
        return;
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)M * N >= R1_CPU_PAR_MIN)
        for (int m = 0; m < M; m++)
            memcpy(out + (size_t)m * N, bias, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    if (K <= 0) {
        if (!bias)
            memset(out, 0, (size_t)M * N * sizeof(float));
        return;
    }
    if (M <= R1_CPU_GEMV_MAX_M) {
        /* decode-sized batches: sgemv streams w once per row instead of packing it */
        int T = (int64_t)N * K >= R1_CPU_PAR_MIN * 8 ? cpu->threads : 1;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
            int b = t * chunk, e = b + chunk < N ? b + chunk : N;
            for (int m = 0; m < M && b < e; m++)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, e - b, K, 1.0f, w + (size_t)b * K, K,
                            in + (size_t)m * K, 1, beta, out + (size_t)m * N + b, 1);
        }
        return;
    }
    sgemm_par(cpu, CblasNoTrans, CblasTrans, M, N, K, in, K, w, K, beta, out, N);
}

void r1_cpu_matmul_forward(void *ctx, float *out /* (M,N) */, const float *in /* (M,K) */,
                           const float *w /* (N,K) */, const float *bias /* (N) or NULL */,
                           const float *res /* (M,N) or NULL */, int M, int K, int N)
{
    linear_forward(ctx, out, in, w, bias, M, K, N);
    if (res && M > 0 && N > 0) /* the bits of the matmul, then ops->add */
        r1_cpu_add(ctx, out, out, res, (int64_t)M * N);
}

void r1_cpu_matmul_backward(void *ctx, float *din /* (M,K) or NULL */, int din_add,
                            float *dw /* (N,K) or NULL */, float *dbias /* (N) or NULL */,
                            const float *dout /* (M,N) */, const float *in /* (M,K) */,
                            const float *w /* (N,K) */, int M, int K, int N)
{
    struct r1_cpu *cpu = ctx;
    size_t mk = (size_t)(M > 0 ? M : 0) * (K > 0 ? K : 0);
    if (din && mk > 0 && !din_add) {
        if (N > 0)
            sgemm_par(cpu, CblasNoTrans, CblasNoTrans, M, K, N, dout, N, w, K, 0.0f, din, K);
        else
            memset(din, 0, mk * sizeof(float));
    } else if (din && mk > 0 && N > 0) {
        /* din_add: the product into scratch, then added: the bits of writing it and ops->add
         * (a GEMM with beta 1 would add each block of the K sum to din in turn, other bits) */
        float *t = r1_cpu_wide(cpu, R1_CPU_WIDE_ACC, mk);
        if (!t) {
            r1_cpu_poison(din, (int64_t)mk);
        } else {
            sgemm_par(cpu, CblasNoTrans, CblasNoTrans, M, K, N, dout, N, w, K, 0.0f, t, K);
            r1_cpu_add(ctx, din, din, t, (int64_t)mk);
        }
    }
    if (dw && M > 0 && N > 0 && K > 0)
        sgemm_par(cpu, CblasTrans, CblasNoTrans, N, K, M, dout, N, in, K, 1.0f, dw, K);
    if (dbias && M > 0 && N > 0) {
        int nblocks = (N + R1_CPU_CHAN_BLOCK - 1) / R1_CPU_CHAN_BLOCK;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)M * N >= R1_CPU_PAR_MIN)
        for (int blk = 0; blk < nblocks; blk++) {
            int n0 = blk * R1_CPU_CHAN_BLOCK;
            int nn = N - n0 < R1_CPU_CHAN_BLOCK ? N - n0 : R1_CPU_CHAN_BLOCK;
            double acc[R1_CPU_CHAN_BLOCK] = {0};
            for (int m = 0; m < M; m++) {
                const float *restrict row = dout + (size_t)m * N + n0;
                for (int j = 0; j < nn; j++)
                    acc[j] += row[j];
            }
            for (int j = 0; j < nn; j++)
                dbias[n0 + j] += (float)acc[j];
        }
    }
}

void r1_cpu_embedding_forward(void *ctx, float *out /* (N,C) */, const int32_t *tokens /* (N) */,
                              const float *wte /* (V,C) */, int N, int C)
{
    struct r1_cpu *cpu = ctx;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * C >= R1_CPU_PAR_MIN)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

void r1_cpu_embedding_backward(void *ctx, float *dwte /* (V,C) */, const float *dout /* (N,C) */,
                               const int32_t *tokens /* (N) */, int N, int C)
{
    struct r1_cpu *cpu = ctx;
    /* each channel block is owned by one task, which walks the tokens in order:
     * repeated tokens add up in token order, independent of the thread count */
    int nblocks = (C + R1_CPU_CHAN_BLOCK - 1) / R1_CPU_CHAN_BLOCK;
#pragma omp parallel for num_threads(cpu->threads)                                                 \
    schedule(static) if ((int64_t)N * C >= R1_CPU_PAR_MIN)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * R1_CPU_CHAN_BLOCK;
        int cn = C - c0 < R1_CPU_CHAN_BLOCK ? C - c0 : R1_CPU_CHAN_BLOCK;
        for (int n = 0; n < N; n++) {
            float *restrict dst = dwte + (size_t)tokens[n] * C + c0;
            const float *restrict src = dout + (size_t)n * C + c0;
            for (int j = 0; j < cn; j++)
                dst[j] += src[j];
        }
    }
}
