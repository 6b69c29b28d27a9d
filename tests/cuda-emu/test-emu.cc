/* test-emu.cc - the CUDA emulator's own semantics (tests/cuda-emu): the test that makes
 * test-cuda-emu's results worth something.  Shuffles give the partner lane's value,
 * barriers order shared memory, thread and block coordinates cover 2-D grids and blocks,
 * a launch CUDA would refuse sets cudaErrorInvalidConfiguration, a race between threads
 * without a barrier gives a wrong result in some block, a barrier that some threads
 * of a warp never reach aborts with "deadlock", a stream capture records work (runs
 * it only at each graph launch) and refuses what CUDA refuses during one, and the
 * tensor-core API (mma.h): products of bf16 tiles from global and shared memory in every
 * layout, chained over K, against a host reference; loads and stores of accumulators;
 * fragment mappings that are bijections, differ between fragment types and are learnt by
 * the row-index trick; the calls' misuse (alignment, ldm, arguments that differ between
 * lanes, a lane that skips a call, a partial warp) aborts with a message; __syncwarp orders
 * a warp's shared memory (and refuses a partial mask). */
#include "kernels/cuda/reduce.cuh" /* R1_LAUNCH, as the kernels launch */

#include <cuda_bf16.h>
#include <mma.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* every lane: the butterfly sum of the lanes' values, and the xor-1 partner's value */
__global__ void k_shuffle(int *sum, int *partner)
{
    int lane = threadIdx.x & 31, v = (int)threadIdx.x * 3 + 1;
    int s = v;
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    sum[threadIdx.x] = s;
    partner[threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 1);
    (void)lane;
}

/* block (bx, by) of 2-D blocks: out[block] = Σ linear thread ids, through shared memory */
__global__ void k_block_sum(long *out, int *coords_ok)
{
    __shared__ long sh[256];
    int tid = threadIdx.x + threadIdx.y * blockDim.x;
    int n = blockDim.x * blockDim.y;
    sh[tid] = tid;
    __syncthreads();
    for (int h = n / 2; h > 0; h >>= 1) {
        if (tid < h)
            sh[tid] += sh[tid + h];
        __syncthreads();
    }
    int b = blockIdx.x + blockIdx.y * gridDim.x;
    if (tid == 0)
        out[b] = sh[0];
    if (threadIdx.x >= blockDim.x || threadIdx.y >= blockDim.y || blockIdx.y >= gridDim.y)
        *coords_ok = 0;
}

/* each lane reads its xor-1 partner's slot after __syncwarp (mask: __syncwarp's) */
__global__ void k_syncwarp(int *out, unsigned mask)
{
    __shared__ int sh[64];
    int t = threadIdx.x;
    sh[t] = (int)blockIdx.x * 1000 + t;
    __syncwarp(mask);
    out[blockIdx.x * 64 + t] = sh[t ^ 1];
}

/* each thread reads its neighbour's slot, with or without the barrier between */
template <bool BARRIER> __global__ void k_neighbour(int *out)
{
    __shared__ int sh[64];
    int t = threadIdx.x, n = blockDim.x;
    sh[t] = (int)blockIdx.x * 1000 + t;
    if (BARRIER)
        __syncthreads();
    out[blockIdx.x * n + t] = sh[(t + 1) % n];
}

/* lanes 0..15 wait at the block barrier, lanes 16..31 at a shuffle: a deadlock */
__global__ void k_deadlock(int *out)
{
    if (threadIdx.x < 16)
        __syncthreads();
    else
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

/* x[i] += 1 */
__global__ void k_increment(int *x, int n)
{
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n)
        x[i] += 1;
}

static void check_capture(void)
{
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "stream");
    int *x, *y;
    CHECK(cudaMalloc((void **)&x, 64 * sizeof(int)) == cudaSuccess, "malloc");
    CHECK(cudaMalloc((void **)&y, 64 * sizeof(int)) == cudaSuccess, "malloc");
    memset(x, 0, 64 * sizeof(int));
    cudaGraph_t g;
    cudaGraphExec_t e;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
    R1_LAUNCH(k_increment, dim3(2), dim3(32), s)(x, 64);
    cudaMemcpyAsync(y, x, 64 * sizeof(int), cudaMemcpyDeviceToDevice, s);
    R1_LAUNCH(k_increment, dim3(2), dim3(32), s)(x, 64);
    CHECK(x[0] == 0 && x[63] == 0, "a launch on a capturing stream ran at once");
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g, "end capture");
    CHECK(cudaGraphInstantiate(&e, g, 0) == cudaSuccess, "instantiate");
    cudaGraphDestroy(g);
    for (int r = 1; r <= 2; r++) {
        CHECK(cudaGraphLaunch(e, s) == cudaSuccess, "graph launch");
        CHECK(x[0] == 2 * r && x[63] == 2 * r && y[5] == 2 * r - 1,
              "graph launch %d: x %d %d, copy %d (want %d, %d)", r, x[0], x[63], y[5], 2 * r,
              2 * r - 1);
    }
    cudaGraphExecDestroy(e);

    /* forbidden during a capture: synchronising, copies with the host, malloc */
    int host[4];
    for (int what = 0; what < 3; what++) {
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
        void *p = NULL;
        cudaError_t r = what == 0 ? cudaStreamSynchronize(s)
                        : what == 1 ? cudaMemcpyAsync(host, x, sizeof(host),
                                                      cudaMemcpyDeviceToHost, s)
                                    : cudaMalloc(&p, 64);
        CHECK(r == cudaErrorStreamCaptureUnsupported, "forbidden call %d during a capture: %d",
              what, (int)r);
        CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g,
              "a capture with a forbidden call %d ended valid", what);
        cudaGetLastError();
    }
    CHECK(cudaStreamSynchronize(s) == cudaSuccess, "sync after the capture ended");
    cudaFree(x), cudaFree(y);
    cudaStreamDestroy(s);
}

/* runs body in a child process: whether it aborted (SIGABRT) with want in what it wrote on
 * stderr, which is left in msg */
static bool aborts_saying(void (*body)(void), const char *want, char *msg, size_t n)
{
    int fd[2];
    msg[0] = 0;
    if (pipe(fd) != 0)
        return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        body();
        _exit(0); /* not reached when the emulator catches it */
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], msg + got, n - 1 - got)) > 0)
        got += (size_t)r;
    msg[got] = 0;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(msg, want);
}

static void run_deadlock(void)
{
    int o[32];
    R1_LAUNCH(k_deadlock, dim3(1), dim3(32), 0)(o);
}

/* ---- WMMA (mma.h) ------------------------------------------------------------------------ */

namespace wmma = nvcuda::wmma;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> wm_acc;

/* A (16 x 48) and B (48 x 16) stored both ways, leading dimensions past the tiles (whose
 * padding holds NaN); the products' outputs have leading dimension WM_LDO */
enum { WM_LDA_ROW = 56, WM_LDA_COL = 24, WM_LDB_ROW = 24, WM_LDB_COL = 56, WM_LDO = 20 };
enum { WM_A_ROW = 16 * WM_LDA_ROW, WM_A_COL = 48 * WM_LDA_COL, WM_B_ROW = 48 * WM_LDB_ROW,
       WM_B_COL = 16 * WM_LDB_COL, WM_OUT = 16 * WM_LDO };

struct wm_args {
    const uint16_t *a_row, *a_col, *b_row, *b_col; /* bf16 bit patterns */
    const float *c;   /* (16,16) column-major: warp 1's initial accumulator (warp 0's: 0.5) */
    const float *idx; /* (16,16) row-major, (r,c) = 16 r + c */
    float *out;       /* per block, warp, layout of a, of b, memory: a product (16, WM_LDO) */
    float *copy;      /* per block, warp: idx loaded and stored the other way, (16,16) */
    float *lanes;     /* per block, warp, lane: x[0..7] of the product a row, b col, global */
    int *pos;         /* per block, warp, lane: 16 r + c of each x[i], by the row-index trick */
};

static float wm_a(int r, int k)
{
    return (float)((r * 7 + k * 3) % 9 - 4) * 0.5f;
}
static float wm_b(int k, int c)
{
    return (float)((k * 5 + c * 11) % 7 - 3);
}
static float wm_c(int warp, int r, int c)
{
    return warp == 0 ? 0.5f : (float)r - 0.25f * (float)c;
}

/* d = c0 + A B over K = 48 (three mma_sync into d), stored at out with layout lo */
template <class LA, class LB>
__device__ static wm_acc wm_product(float *out, wmma::layout_t lo, const uint16_t *a,
                                    unsigned lda, const uint16_t *b, unsigned ldb,
                                    const wm_acc &c0)
{
    bool acol = std::is_same<LA, wmma::col_major>::value;
    bool bcol = std::is_same<LB, wmma::col_major>::value;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> fb;
    wm_acc d = c0;
    for (unsigned kk = 0; kk < 3; kk++) {
        wmma::load_matrix_sync(fa, (const __nv_bfloat16 *)(a + (acol ? kk * 16 * lda : kk * 16)),
                               lda);
        wmma::load_matrix_sync(fb, (const __nv_bfloat16 *)(b + (bcol ? kk * 16 : kk * 16 * ldb)),
                               ldb);
        wmma::mma_sync(d, fa, fb, d);
    }
    wmma::store_matrix_sync(out, d, WM_LDO, lo);
    return d;
}

/* two warps: every product of wm_args, from global memory and from copies in shared */
__global__ void k_wmma(wm_args g)
{
    __shared__ __align__(32) uint16_t a_row[WM_A_ROW], a_col[WM_A_COL];
    __shared__ __align__(32) uint16_t b_row[WM_B_ROW], b_col[WM_B_COL];
    /* (the declared alignment: g++ places big arrays at 32 bytes even without it) */
    static_assert(__alignof__(a_row) == 32, "__align__ does not align a __shared__ array");
    int t = threadIdx.x, warp = t / 32, lane = t % 32, bw = (int)blockIdx.x * 2 + warp;
    for (int i = t; i < WM_A_ROW; i += blockDim.x)
        a_row[i] = g.a_row[i], b_col[i] = g.b_col[i];
    for (int i = t; i < WM_A_COL; i += blockDim.x)
        a_col[i] = g.a_col[i], b_row[i] = g.b_row[i];
    __syncthreads();

    wm_acc c0;
    if (warp == 0)
        wmma::fill_fragment(c0, 0.5f);
    else
        wmma::load_matrix_sync(c0, g.c, 16, wmma::mem_col_major);
    for (int m = 0; m < 2; m++) {
        const uint16_t *ar = m ? a_row : g.a_row, *ac = m ? a_col : g.a_col;
        const uint16_t *br = m ? b_row : g.b_row, *bc = m ? b_col : g.b_col;
        float *o = g.out + (size_t)bw * 8 * WM_OUT;
        wmma::layout_t lo = m ? wmma::mem_col_major : wmma::mem_row_major;
        wmma::layout_t lo2 = m ? wmma::mem_row_major : wmma::mem_col_major;
        wm_product<wmma::row_major, wmma::row_major>(o + (0 + m) * WM_OUT, lo, ar, WM_LDA_ROW,
                                                     br, WM_LDB_ROW, c0);
        wm_acc d = wm_product<wmma::row_major, wmma::col_major>(
            o + (2 + m) * WM_OUT, lo2, ar, WM_LDA_ROW, bc, WM_LDB_COL, c0);
        wm_product<wmma::col_major, wmma::row_major>(o + (4 + m) * WM_OUT, lo2, ac, WM_LDA_COL,
                                                     br, WM_LDB_ROW, c0);
        wm_product<wmma::col_major, wmma::col_major>(o + (6 + m) * WM_OUT, lo, ac, WM_LDA_COL,
                                                     bc, WM_LDB_COL, c0);
        if (m)
            continue;
        /* the row-index trick: an accumulator loaded from idx says where each x[i] is */
        wm_acc where;
        wmma::load_matrix_sync(where, g.idx, 16, wmma::mem_row_major);
        for (int i = 0; i < where.num_elements; i++) {
            g.lanes[(bw * 32 + lane) * 8 + i] = d.x[i];
            g.pos[(bw * 32 + lane) * 8 + i] = (int)where.x[i];
        }
    }

    /* idx loaded one way, stored the other: its transpose */
    wm_acc f;
    wmma::load_matrix_sync(f, g.idx, 16, warp ? wmma::mem_col_major : wmma::mem_row_major);
    wmma::store_matrix_sync(g.copy + bw * 256, f, 16,
                            warp ? wmma::mem_row_major : wmma::mem_col_major);
}

/* one warp: 16 r + c of the element each lane's x[i] holds, per fragment type */
__global__ void k_wmma_map(const uint16_t *idx, const float *fidx, int *where)
{
    int lane = threadIdx.x;
    const __nv_bfloat16 *p = (const __nv_bfloat16 *)idx;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ar;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> ac;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> br;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bc;
    wm_acc acc;
    wmma::load_matrix_sync(ar, p, 16);
    wmma::load_matrix_sync(ac, p, 16); /* (r,c) at p[16 c + r]: 16 c + r, transposed back */
    wmma::load_matrix_sync(br, p, 16);
    wmma::load_matrix_sync(bc, p, 16);
    wmma::load_matrix_sync(acc, fidx, 16, wmma::mem_row_major);
    for (int i = 0; i < 8; i++) {
        int *w = where + lane * 8 + i;
        int t_ac = (int)__bfloat162float(ac.x[i]), t_bc = (int)__bfloat162float(bc.x[i]);
        w[0 * 256] = (int)__bfloat162float(ar.x[i]);
        w[1 * 256] = t_ac % 16 * 16 + t_ac / 16;
        w[2 * 256] = (int)__bfloat162float(br.x[i]);
        w[3 * 256] = t_bc % 16 * 16 + t_bc / 16;
        w[4 * 256] = (int)acc.x[i];
    }
}

/* misuse: each aborts (a lane's pointer, ldm, lanes that disagree, skip a call) */
static uint16_t *wm_buf; /* 4096 bf16 ones, 256-byte aligned */

__global__ void k_wm_load(const uint16_t *p, unsigned ldm, int lane_off)
{
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    int off = threadIdx.x % 32 == 3 ? lane_off : 0;
    wmma::load_matrix_sync(a, (const __nv_bfloat16 *)(p + off), ldm);
}

/* skip 1: thread 7 goes on to the block barrier; skip 2: it returns */
__global__ void k_wm_skip(int skip)
{
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
    wm_acc c;
    wmma::fill_fragment(a, __float2bfloat16_rn(1.0f));
    wmma::fill_fragment(b, __float2bfloat16_rn(2.0f));
    wmma::fill_fragment(c, 0.0f);
    if (threadIdx.x == 7 && skip == 2)
        return;
    if (threadIdx.x != 7 || skip == 0)
        wmma::mma_sync(c, a, b, c);
    __syncthreads();
}

static void run_syncwarp_mask(void)
{
    int o[128];
    R1_LAUNCH(k_syncwarp, dim3(1), dim3(64), 0)(o, 0xffffu);
}
static void run_wm_misaligned(void)
{
    R1_LAUNCH(k_wm_load, dim3(1), dim3(32), 0)(wm_buf + 8, 16u, 0);
}
static void run_wm_ldm(void)
{
    R1_LAUNCH(k_wm_load, dim3(1), dim3(32), 0)(wm_buf, 20u, 0);
}
static void run_wm_lanes_differ(void)
{
    R1_LAUNCH(k_wm_load, dim3(1), dim3(64), 0)(wm_buf, 16u, 16);
}
static void run_wm_partial_warp(void)
{
    R1_LAUNCH(k_wm_load, dim3(1), dim3(48), 0)(wm_buf, 16u, 0);
}
static void run_wm_skip_deadlock(void)
{
    R1_LAUNCH(k_wm_skip, dim3(1), dim3(64), 0)(1);
}
static void run_wm_skip_return(void)
{
    R1_LAUNCH(k_wm_skip, dim3(1), dim3(32), 0)(2);
}

/* the float of bits u, and back (host side) */
static float wm_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}
static uint32_t wm_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static void *wm_alloc(size_t bytes)
{
    void *p = NULL;
    CHECK(cudaMalloc(&p, bytes) == cudaSuccess, "malloc");
    return p;
}

static void check_wmma(void)
{
    /* bf16 conversions */
    CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(1.0f)) == 0x3f80, "bf16 of 1");
    CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(wm_float(0x3f808000u))) == 0x3f80 &&
              __bfloat16_as_ushort(__float2bfloat16_rn(wm_float(0x3f818000u))) ==
                  0x3f82 &&
              __bfloat16_as_ushort(__float2bfloat16_rn(wm_float(0x3f808001u))) ==
                  0x3f81,
          "bf16 rounding is not to nearest, ties to even");
    CHECK(isnan(__bfloat162float(__float2bfloat16_rn(wm_float(0x7f800001u)))) &&
              __bfloat162float(__float2bfloat16_rn(INFINITY)) == INFINITY &&
              __bfloat162float(__float2bfloat16_rn(-2.5f)) == -2.5f,
          "bf16 of a NaN, infinity or -2.5");

    uint16_t *a_row = (uint16_t *)wm_alloc(WM_A_ROW * 2);
    uint16_t *a_col = (uint16_t *)wm_alloc(WM_A_COL * 2);
    uint16_t *b_row = (uint16_t *)wm_alloc(WM_B_ROW * 2);
    uint16_t *b_col = (uint16_t *)wm_alloc(WM_B_COL * 2);
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 48; k++) {
            a_row[r * WM_LDA_ROW + k] = a_col[k * WM_LDA_COL + r] =
                __bfloat16_as_ushort(__float2bfloat16_rn(wm_a(r, k)));
            b_row[k * WM_LDB_ROW + r] = b_col[r * WM_LDB_COL + k] =
                __bfloat16_as_ushort(__float2bfloat16_rn(wm_b(k, r)));
        }
    float *c = (float *)wm_alloc(256 * 4), *idx = (float *)wm_alloc(256 * 4);
    for (int r = 0; r < 16; r++)
        for (int j = 0; j < 16; j++)
            c[j * 16 + r] = wm_c(1, r, j), idx[r * 16 + j] = (float)(r * 16 + j);
    wm_args g = {a_row, a_col, b_row, b_col, c, idx, (float *)wm_alloc(4 * 8 * WM_OUT * 4),
                 (float *)wm_alloc(4 * 256 * 4), (float *)wm_alloc(4 * 256 * 4),
                 (int *)wm_alloc(4 * 256 * 4)};
    R1_LAUNCH(k_wmma, dim3(2), dim3(64), 0)(g);
    CHECK(cudaGetLastError() == cudaSuccess, "the wmma kernel's launch failed");

    int bad = 0;
    for (int bw = 0; bw < 4; bw++) {
        float ref[256];
        for (int r = 0; r < 16; r++)
            for (int j = 0; j < 16; j++) {
                float s = wm_c(bw % 2, r, j);
                for (int k = 0; k < 48; k++)
                    s += wm_a(r, k) * wm_b(k, j);
                ref[r * 16 + j] = s;
            }
        for (int p = 0; p < 8; p++) {
            /* stored row-major for p 0, 3, 5, 6 (see k_wmma) */
            bool col = p == 1 || p == 2 || p == 4 || p == 7;
            const float *o = g.out + (bw * 8 + p) * WM_OUT;
            for (int r = 0; r < 16; r++)
                for (int j = 0; j < 16; j++) {
                    float v = col ? o[j * WM_LDO + r] : o[r * WM_LDO + j];
                    if (v != ref[r * 16 + j] && bad++ < 5)
                        CHECK(0, "block %d warp %d product %d (a %s, b %s, %s memory) (%d,%d): "
                              "%g, want %g", bw / 2, bw % 2, p, p / 4 ? "col" : "row",
                              p / 2 % 2 ? "col" : "row", p % 2 ? "shared" : "global", r, j, v,
                              ref[r * 16 + j]);
                }
            for (int i = 0; i < 16; i++)
                for (int j = 16; j < WM_LDO; j++)
                    if (wm_bits(o[i * WM_LDO + j]) != 0xffffffffu && bad++ < 5)
                        CHECK(0, "product %d: a store wrote the padding at (%d,%d)", p, i, j);
        }
        int seen[256] = {0};
        for (int e = 0; e < 256; e++) {
            int q = g.pos[bw * 256 + e];
            CHECK(q >= 0 && q < 256 && !seen[q]++, "the row-index trick: lane %d x[%d] at %d",
                  e / 8, e % 8, q);
            if (q >= 0 && q < 256 && g.lanes[bw * 256 + e] != ref[q] && bad++ < 5)
                CHECK(0, "lane %d x[%d] of the product: %g, want (%d,%d)'s %g", e / 8, e % 8,
                      g.lanes[bw * 256 + e], q / 16, q % 16, ref[q]);
        }
        for (int r = 0; r < 16; r++)
            for (int j = 0; j < 16; j++)
                if (g.copy[bw * 256 + r * 16 + j] != (float)(j * 16 + r) && bad++ < 5)
                    CHECK(0, "an accumulator loaded and stored the other way: (%d,%d) is %g",
                          r, j, g.copy[bw * 256 + r * 16 + j]);
    }
    CHECK(bad == 0, "%d wrong wmma results", bad);

    /* the mappings: bijections, one per fragment type, none the naive one (8 l + i) */
    uint16_t *bidx = (uint16_t *)wm_alloc(256 * 2);
    for (int i = 0; i < 256; i++)
        bidx[i] = __bfloat16_as_ushort(__float2bfloat16_rn((float)i));
    int *where = (int *)wm_alloc(5 * 256 * sizeof(int));
    R1_LAUNCH(k_wmma_map, dim3(1), dim3(32), 0)(bidx, idx, where);
    const char *names[5] = {"matrix_a row_major", "matrix_a col_major", "matrix_b row_major",
                            "matrix_b col_major", "accumulator"};
    for (int f = 0; f < 5; f++) {
        int seen[256] = {0}, naive = 0, rows = 0;
        for (int e = 0; e < 256; e++) {
            int q = where[f * 256 + e];
            CHECK(q >= 0 && q < 256 && !seen[q]++, "%s: lane %d x[%d] at %d", names[f], e / 8,
                  e % 8, q);
            naive += q == e;
            rows += e % 8 && q / 16 != where[f * 256 + e - 1] / 16;
        }
        CHECK(naive < 8 && rows > 100, "%s: a near-trivial mapping (%d elements at 8 l + i, %d "
              "row changes in a lane)", names[f], naive, rows);
        for (int f2 = 0; f2 < f; f2++) {
            int same = 0;
            for (int e = 0; e < 256; e++)
                same += where[f * 256 + e] == where[f2 * 256 + e];
            CHECK(same < 32, "%s and %s: %d elements mapped alike", names[f], names[f2], same);
        }
    }

    /* misuse */
    wm_buf = (uint16_t *)wm_alloc(4096 * 2);
    for (int i = 0; i < 4096; i++)
        wm_buf[i] = 0x3f80;
    struct {
        void (*run)(void);
        const char *want, *what;
    } misuse[] = {
        {run_wm_misaligned, "is not 32-byte (256-bit) aligned", "a pointer off by 16 bytes"},
        {run_wm_ldm, "ldm 20 is not a multiple of 8", "ldm 20 for bf16"},
        {run_wm_lanes_differ, "lanes pass different arguments", "lane 3's pointer differs"},
        {run_wm_partial_warp, "needs a full warp", "a warp of 16 threads"},
        {run_wm_skip_deadlock, "deadlock", "lane 7 skips mma_sync for __syncthreads"},
        {run_wm_skip_return, "is not at this call", "lane 7 returns before mma_sync"},
        {run_syncwarp_mask, "only the full mask", "__syncwarp(0xffff)"},
    };
    for (auto &m : misuse) {
        char msg[512];
        CHECK(aborts_saying(m.run, m.want, msg, sizeof(msg)) && strstr(msg, "cuda-emu: "),
              "%s did not abort with '%s' (said: %s)", m.what, m.want, msg);
    }
    /* the same calls, used right, run */
    R1_LAUNCH(k_wm_load, dim3(1), dim3(64), 0)(wm_buf, 16u, 0);
    R1_LAUNCH(k_wm_skip, dim3(1), dim3(64), 0)(0);

    void *bufs[] = {a_row, a_col, b_row, b_col, c, idx, g.out, g.copy, g.lanes, g.pos,
                    bidx, where, wm_buf};
    for (void *b : bufs)
        cudaFree(b);
}

int main(void)
{
    int sum[64], partner[64];
    R1_LAUNCH(k_shuffle, dim3(1), dim3(64), 0)(sum, partner);
    for (int t = 0; t < 64; t++) {
        int w = t / 32 * 32, want = 0;
        for (int l = 0; l < 32; l++)
            want += (w + l) * 3 + 1;
        CHECK(sum[t] == want, "shuffle sum of thread %d: %d, want %d", t, sum[t], want);
        CHECK(partner[t] == (t ^ 1) * 3 + 1, "xor-1 partner of thread %d: %d", t, partner[t]);
    }

    int sw[128];
    R1_LAUNCH(k_syncwarp, dim3(2), dim3(64), 0)(sw, 0xffffffffu);
    for (int i = 0; i < 128; i++)
        CHECK(sw[i] == i / 64 * 1000 + (i % 64 ^ 1), "__syncwarp: thread %d read %d", i, sw[i]);

    long out[6];
    int ok = 1;
    R1_LAUNCH(k_block_sum, dim3(3, 2), dim3(16, 8), 0)(out, &ok);
    for (int b = 0; b < 6; b++)
        CHECK(out[b] == 127L * 128 / 2, "block %d sum %ld, want %ld", b, out[b], 127L * 128 / 2);
    CHECK(ok, "thread or block coordinates out of range");
    CHECK(cudaGetLastError() == cudaSuccess, "a valid launch set an error");

    R1_LAUNCH(k_block_sum, dim3(1), dim3(2048), 0)(out, &ok);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "a 2048-thread block ran");
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError does not clear the error");
    R1_LAUNCH(k_block_sum, dim3(1, 70000), dim3(32), 0)(out, &ok);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "a grid of 70000 rows ran");

    int good[128], racy[128];
    R1_LAUNCH(k_neighbour<true>, dim3(2), dim3(64), 0)(good);
    R1_LAUNCH(k_neighbour<false>, dim3(2), dim3(64), 0)(racy);
    int wrong = 0;
    for (int i = 0; i < 128; i++) {
        CHECK(good[i] == i / 64 * 1000 + (i % 64 + 1) % 64, "neighbour %d: %d", i, good[i]);
        wrong += racy[i] != good[i];
    }
    CHECK(wrong > 0, "a read racing with the neighbour's write (no barrier) went unnoticed");

    char msg[512];
    CHECK(aborts_saying(run_deadlock, "deadlock", msg, sizeof(msg)),
          "a kernel whose warp splits between a barrier and a shuffle did not abort with "
          "'deadlock' (said: %s)", msg);

    check_capture();
    check_wmma();

    if (failures)
        fprintf(stderr, "test-emu: %d failures\n", failures);
    else
        printf("test-emu: shuffles, barriers, coordinates, launch limits, races, deadlocks, "
               "stream capture and wmma behave\n");
    return failures ? 1 : 0;
}
