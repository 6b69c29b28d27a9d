/* test-emu.cc - the CUDA emulator's own semantics (tests/cuda-emu): the test that makes
 * test-cuda-emu's results worth something.  Shuffles give the partner lane's value,
 * barriers order shared memory, thread and block coordinates cover 2-D grids and blocks,
 * a launch CUDA would refuse sets cudaErrorInvalidConfiguration, a race between threads
 * without a barrier gives a wrong result in some block, a barrier that some threads
 * of a warp never reach aborts with "deadlock", and a stream capture records work (runs
 * it only at each graph launch) and refuses what CUDA refuses during one. */
#include "kernels/cuda/reduce.cuh" /* R1_LAUNCH, as the kernels launch */

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

    int fd[2];
    CHECK(pipe(fd) == 0, "pipe");
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        int o[32];
        R1_LAUNCH(k_deadlock, dim3(1), dim3(32), 0)(o);
        _exit(0); /* not reached when the deadlock is caught */
    }
    close(fd[1]);
    char msg[512] = {0};
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof(msg) && (r = read(fd[0], msg + got, sizeof(msg) - 1 - got)) > 0)
        got += (size_t)r;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(msg, "deadlock"),
          "a kernel whose warp splits between a barrier and a shuffle did not abort with "
          "'deadlock' (status %d, said: %s)", status, msg);

    check_capture();

    if (failures)
        fprintf(stderr, "test-emu: %d failures\n", failures);
    else
        printf("test-emu: shuffles, barriers, coordinates, launch limits, races, deadlocks "
               "and stream capture behave\n");
    return failures ? 1 : 0;
}
