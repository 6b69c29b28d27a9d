/* cuda_runtime.h - the CUDA runtime and device language as tests/cuda-emu provides them.
 *
 * The CUDA emulator compiles the .cu files of kernels/cuda as C++ (g++, -DR1_CUDA_EMU)
 * against this header in place of the toolkit's, so the CUDA backend's own kernels run on
 * the CPU: every CUDA thread is a fiber, a block's fibers run in turn between barriers
 * (__syncthreads, and the warp barriers of __syncwarp, the shuffles and the WMMA calls),
 * blocks run one after the other, and device memory is host memory (emu.cc).  Stream
 * capture (CUDA graphs) records the launches, memsets and device-to-device copies put on
 * the capturing stream and replays them at each cudaGraphLaunch; what a capture forbids
 * (synchronising, host copies, allocating or freeing) fails and invalidates it, as on a
 * GPU.  What it checks: indexing, bounds, the += / = rules, reductions and the barriers'
 * placement (a barrier some threads of a block or warp never reach is reported as a
 * deadlock and aborts), the WMMA calls' arguments, launch limits (block size, grid
 * dimensions).  What it cannot: timing, warp-synchronous code without barriers, real
 * races between blocks (they never overlap here), the GPU's floating-point details
 * (FMA contraction, expf ulps, tensor-core sums) and anything of cuBLASLt (emulated by
 * cublaslt-emu.cc).  Only what r1's kernels use is here; the tensor-core API (nvcuda::wmma)
 * and bf16 are mma.h and cuda_bf16.h beside this header. */
#ifndef R1_CUDA_EMU_RUNTIME_H
#define R1_CUDA_EMU_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <vector>

/* ---- runtime API ---------------------------------------------------------------------- */

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

typedef struct r1_emu_stream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

/* A stream: while it captures, the work put on it is recorded in *capture (a launch, memset
 * or copy as a closure) instead of run; invalid is set by a call the capture forbids. */
struct r1_emu_stream {
    std::vector<std::function<void()>> *capture;
    bool invalid;
};
/* runs work now, or records it when s captures (libcublaslt-emu's GEMMs go through it too) */
static inline void r1_emu_enqueue(cudaStream_t s, std::function<void()> work)
{
    if (s && s->capture)
        s->capture->push_back(std::move(work));
    else
        work();
}

enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
typedef struct r1_emu_graph *cudaGraph_t;
typedef struct r1_emu_graph_exec *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
typedef enum cudaDataType_t cudaDataType;

struct cudaDeviceProp {
    char name[256];
    int multiProcessorCount;
    int major, minor;
    size_t totalGlobalMem;
};

struct cudaFuncAttributes {
    int maxThreadsPerBlock;
};

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F *)
{
    a->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

/* ---- the device language ---------------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...) /* a hint for the register allocator */
/* one block runs at a time, so one static instance per declaration is the block's */
#define __shared__ static
/* as the toolkit's; `__shared__ __align__(32) T a[n]` aligns the (function-local static) a */
#ifndef __align__
#define __align__(n) __attribute__((aligned(n)))
#endif

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float4 {
    float x, y, z, w;
};
struct uint4 {
    unsigned x, y, z, w;
};
struct uint2 {
    unsigned x, y;
};
inline uint2 make_uint2(unsigned x, unsigned y)
{
    return uint2{x, y};
}
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w)
{
    return uint4{x, y, z, w};
}

/* the running fiber's coordinates (emu.cc sets them before it resumes a fiber) */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

void r1_emu_syncthreads(void);
void r1_emu_syncwarp(void);
/* the running thread's linear index in its block (-1 outside kernels), the block's size,
 * and one exchange slot per thread of the block (shuffles) */
extern int r1_emu_cur, r1_emu_nthreads;
extern uint64_t *r1_emu_slots;

static inline void __syncthreads(void)
{
    r1_emu_syncthreads();
}

/* the warp barrier (orders the lanes' memory accesses); only the full mask is emulated */
static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    if (mask != 0xffffffffu) {
        fprintf(stderr, "cuda-emu: __syncwarp(0x%08x): only the full mask is emulated\n", mask);
        abort();
    }
    r1_emu_syncwarp();
}

/* v of lane (lane ^ lane_mask) of the warp; every lane of the warp must take part */
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    (void)mask;
    int tid = r1_emu_cur, lane = tid & 31, base = tid - lane;
    int src = (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1));
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
    memcpy(&r1_emu_slots[tid], &v, sizeof(T));
    r1_emu_syncwarp(); /* every lane has written */
    T r = v;
    if (base + src < r1_emu_nthreads)
        memcpy(&r, &r1_emu_slots[base + src], sizeof(T));
    r1_emu_syncwarp(); /* every lane has read before the slots are reused */
    return r;
}

static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* float arithmetic rounded on its own (never contracted into an FMA); the emulator is built
 * without contraction (ISO C++, no -mfma), so plain operators already are */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* A launch on stream s: body runs once per thread of grid × block, blocks in order, a
 * block's threads as fibers (at once, or at each launch of the graph s is capturing).  A
 * configuration CUDA would refuse sets the error cudaGetLastError returns. */
void r1_emu_run(dim3 grid, dim3 block, cudaStream_t s, std::function<void()> body);

template <class K> struct r1_emu_launcher {
    dim3 grid, block;
    cudaStream_t stream;
    K k;
    template <class... A> void operator()(A &&...args) const
    {
        /* the arguments by value (arrays as pointers), as a launch takes them: a graph
         * replays them later */
        r1_emu_run(grid, block, stream,
                   [k = k, a = std::tuple<std::decay_t<A>...>(args...)]() { std::apply(k, a); });
    }
};
template <class K>
static inline r1_emu_launcher<K> r1_emu_launch(dim3 g, dim3 b, cudaStream_t s, K k)
{
    return r1_emu_launcher<K>{g, b, s, k};
}

#endif
