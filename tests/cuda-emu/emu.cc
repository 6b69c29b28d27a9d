/* emu.cc - the CUDA emulator's runtime: device memory, streams, errors, launches with one
 * fiber per CUDA thread (see cuda_runtime.h), and the records behind the WMMA calls (mma.h).
 *
 * A launch runs its blocks in order.  A block's fibers run in thread order (odd blocks in
 * reverse thread order), each until it reaches a barrier or returns; then the barriers
 * whose threads have all arrived are released (a block barrier: every live thread of the
 * block; a warp barrier: every live lane of the warp) and the round repeats.  Threads that
 * returned count as arrived, as on the GPU.  A round that releases nothing while threads
 * wait is a deadlock: a barrier some threads never reach.  It is reported with the
 * kernel's shape and aborts the process.  A WMMA call records each lane's arguments before
 * its warp barrier and checks them after it, so that lanes at different calls (or gone)
 * are reported too. */
#include "cuda_runtime.h"
#include "mma.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <vector>

/* Switching fibers: on x86-64 a few instructions that keep the callee-saved registers on
 * the fiber's own stack (swapcontext would also save the signal mask, a system call per
 * switch, which made the emulator ~10x slower); elsewhere ucontext. */
#if defined(__x86_64__) && defined(__GNUC__)
#define R1_EMU_ASM_SWITCH 1
extern "C" void r1_emu_switch(void **save_sp, void *next_sp);
__asm__(".text\n"
        ".globl r1_emu_switch\n"
        ".type r1_emu_switch, @function\n"
        "r1_emu_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size r1_emu_switch, .-r1_emu_switch\n");
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

enum state { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

struct ctx {
#ifdef R1_EMU_ASM_SWITCH
    void *sp; /* saved stack pointer while switched out */
#else
    ucontext_t uc;
#endif
};

struct fiber {
    ctx c;
    enum state st;
};

const size_t STACK = 256 * 1024;

cudaError_t last_error = cudaSuccess;
ctx sched;
std::vector<fiber> fibers;
std::vector<char *> stacks;
std::vector<uint64_t> slot_mem;
std::vector<int> warp_live, warp_waiting; /* per warp: threads not done, threads at its barrier */
int live, block_waiting;                  /* the block's */
bool reverse;
unsigned long long block_serial; /* run_block's count: which block a wmma record is from */
const std::function<void()> *body;

cudaError_t fail(cudaError_t e)
{
    if (last_error == cudaSuccess)
        last_error = e;
    return e;
}

void jump(ctx *from, ctx *to)
{
#ifdef R1_EMU_ASM_SWITCH
    r1_emu_switch(&from->sp, to->sp);
#else
    if (swapcontext(&from->uc, &to->uc) != 0)
        abort();
#endif
}

void set_coords(int tid)
{
    if (blockDim.y == 1 && blockDim.z == 1) {
        threadIdx.x = (unsigned)tid, threadIdx.y = threadIdx.z = 0;
        return;
    }
    threadIdx.x = (unsigned)tid % blockDim.x;
    threadIdx.y = (unsigned)tid / blockDim.x % blockDim.y;
    threadIdx.z = (unsigned)tid / (blockDim.x * blockDim.y);
}

/* releases the barriers every live thread of has reached */
void release(int warp)
{
    if (warp_live[warp] > 0 && warp_waiting[warp] == warp_live[warp]) {
        int lo = warp * 32, hi = lo + 32 < r1_emu_nthreads ? lo + 32 : r1_emu_nthreads;
        for (int t = lo; t < hi; t++)
            if (fibers[t].st == WAIT_WARP)
                fibers[t].st = RUN;
        warp_waiting[warp] = 0;
    }
    if (live > 0 && block_waiting == live) {
        for (int t = 0; t < r1_emu_nthreads; t++)
            if (fibers[t].st == WAIT_BLOCK)
                fibers[t].st = RUN;
        block_waiting = 0;
    }
}

/* From the running fiber to the next runnable one in the block's order (itself when it is
 * the only one), or to the scheduler when every thread is done; a deadlock otherwise. */
void yield_next(void)
{
    int me = r1_emu_cur, n = r1_emu_nthreads, t = me;
    for (int i = 0; i < n; i++) {
        t = reverse ? (t == 0 ? n - 1 : t - 1) : (t + 1 == n ? 0 : t + 1);
        if (fibers[t].st != RUN)
            continue;
        if (t == me)
            return;
        r1_emu_cur = t;
        set_coords(t);
        jump(&fibers[me].c, &fibers[t].c);
        return; /* resumed: r1_emu_cur and the coordinates are this fiber's again */
    }
    if (live == 0) {
        jump(&fibers[me].c, &sched);
        abort(); /* a finished fiber is never resumed */
    }
    fprintf(stderr,
            "cuda-emu: deadlock in block (%u,%u,%u) of a grid (%u,%u,%u) x block (%u,%u,%u): "
            "%d of %d threads wait at __syncthreads, the rest at a warp barrier (a shuffle or "
            "a wmma call) with lanes elsewhere\n",
            blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z, blockDim.x,
            blockDim.y, blockDim.z, block_waiting, live);
    abort();
}

void trampoline_body(void)
{
    (*body)();
    int me = r1_emu_cur;
    fibers[me].st = DONE;
    live--;
    warp_live[me / 32]--;
    release(me / 32);
    yield_next();
}

#ifdef R1_EMU_ASM_SWITCH
void trampoline(void)
{
    trampoline_body();
}
#else
void trampoline(int)
{
    trampoline_body();
}
#endif

void wait_here(enum state st)
{
    int me = r1_emu_cur;
    if (me < 0) {
        fprintf(stderr, "cuda-emu: a barrier outside a kernel\n");
        abort();
    }
    fibers[me].st = st;
    if (st == WAIT_WARP)
        warp_waiting[me / 32]++;
    else
        block_waiting++;
    release(me / 32);
    yield_next();
}

void run_block(void)
{
    int n = r1_emu_nthreads, warps = (n + 31) / 32;
    for (int t = 0; t < n; t++) {
        fiber &f = fibers[t];
#ifdef R1_EMU_ASM_SWITCH
        /* a frame r1_emu_switch returns from into trampoline: six zeroed registers, the
         * trampoline's address, and a slot for its (never used) return address, so that
         * it starts with the stack aligned as after a call */
        uintptr_t top = ((uintptr_t)stacks[t] + STACK) & ~(uintptr_t)15;
        void **sp = (void **)(top - 16);
        sp[1] = nullptr;
        sp[0] = (void *)trampoline;
        sp -= 6;
        for (int r = 0; r < 6; r++)
            sp[r] = nullptr;
        f.c.sp = sp;
#else
        getcontext(&f.c.uc);
        f.c.uc.uc_stack.ss_sp = stacks[t];
        f.c.uc.uc_stack.ss_size = STACK;
        f.c.uc.uc_link = nullptr;
        makecontext(&f.c.uc, (void (*)(void))trampoline, 1, t);
#endif
        f.st = RUN;
    }
    warp_live.assign((size_t)warps, 32);
    warp_live[(size_t)warps - 1] = n - (warps - 1) * 32;
    warp_waiting.assign((size_t)warps, 0);
    live = n;
    block_waiting = 0;
    block_serial++;
    /* odd blocks run their threads last to first: a read that races with another
     * thread's write (no barrier between) then sees the stale value in one of the two
     * orders, as long as the grid has two blocks */
    unsigned long long row = blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z;
    reverse = (blockIdx.x + (unsigned long long)gridDim.x * row) & 1;
    int first = reverse ? n - 1 : 0;
    r1_emu_cur = first;
    set_coords(first);
    jump(&sched, &fibers[first].c);
    r1_emu_cur = -1;
}

} // namespace

int r1_emu_cur = -1, r1_emu_nthreads = 0;
uint64_t *r1_emu_slots;

void r1_emu_syncthreads(void)
{
    wait_here(WAIT_BLOCK);
}

void r1_emu_syncwarp(void)
{
    wait_here(WAIT_WARP);
}

/* ---- WMMA (mma.h): the records of the warp-collective calls, and mma_sync's scratch ------ */

namespace {

/* one lane's call: which (kind), with what, and its place in the lane's sequence of wmma
 * calls in the block (so that a lane that returned, or waits at another collective call,
 * shows as a stale or different record) */
struct wmma_call {
    unsigned long long block; /* block_serial when it was made */
    unsigned seq;             /* the lane's wmma calls in that block, this one included */
    int kind, layout;
    unsigned ldm;
    const void *p;
};
struct wmma_count {
    unsigned long long block;
    unsigned seq;
};
/* by the parity of seq: a lane that has passed call n's barrier can reach call n + 1's
 * (other parity) while the others still read call n's records and scratch, but not call
 * n + 2's, whose barrier needs them all */
wmma_call wmma_calls[2][1024];
wmma_count wmma_counts[1024];
float wmma_scratch[2][32][3 * 256]; /* per warp of the block: a, b, c as 16 x 16 row-major */

void wmma_where(char *s, size_t n)
{
    snprintf(s, n, "thread %d of block (%u,%u,%u), grid (%u,%u,%u) x block (%u,%u,%u)",
             r1_emu_cur, blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z,
             blockDim.x, blockDim.y, blockDim.z);
}

[[noreturn]] void wmma_fail(const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void wmma_fail(const char *fn, const char *fmt, ...)
{
    char where[160], what[320];
    wmma_where(where, sizeof(where));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda-emu: nvcuda::wmma::%s in %s: %s\n", fn, where, what);
    abort();
}

} // namespace

float *r1_emu_wmma_arrive(const char *fn, int kind, const void *p, unsigned ldm, int layout,
                          unsigned elem_bytes)
{
    int tid = r1_emu_cur;
    if (tid < 0) {
        fprintf(stderr, "cuda-emu: nvcuda::wmma::%s outside a kernel\n", fn);
        abort();
    }
    int warp = tid / 32;
    if (warp * 32 + 32 > r1_emu_nthreads)
        wmma_fail(fn, "warp %d has only %d threads: a wmma call needs a full warp of 32", warp,
                  r1_emu_nthreads - warp * 32);
    if (elem_bytes) {
        if ((uintptr_t)p % 32)
            wmma_fail(fn, "pointer %p is not 32-byte (256-bit) aligned", p);
        if (ldm * elem_bytes % 16)
            wmma_fail(fn, "ldm %u is not a multiple of %u elements (16 bytes)", ldm,
                      16 / elem_bytes);
    }
    if (layout != -1 && layout != 0 && layout != 1)
        wmma_fail(fn, "layout %d is neither mem_row_major nor mem_col_major", layout);
    wmma_count &n = wmma_counts[tid];
    if (n.block != block_serial)
        n.block = block_serial, n.seq = 0;
    n.seq++;
    wmma_calls[n.seq & 1][tid] = wmma_call{block_serial, n.seq, kind, layout, ldm, p};
    return wmma_scratch[n.seq & 1][warp];
}

void r1_emu_wmma_sync(const char *fn)
{
    r1_emu_syncwarp();
    int tid = r1_emu_cur, base = tid & ~31;
    const wmma_call &me = wmma_calls[wmma_counts[tid].seq & 1][tid];
    for (int l = 0; l < 32; l++) {
        const wmma_call &o = wmma_calls[me.seq & 1][base + l];
        if (o.block != me.block || o.seq != me.seq || o.kind != me.kind)
            wmma_fail(fn, "lane %d of the warp is not at this call (it returned, or waits at "
                      "another warp-collective call): every lane of a warp must make the "
                      "same wmma calls together", l);
        if (o.p != me.p || o.ldm != me.ldm || o.layout != me.layout)
            wmma_fail(fn, "the warp's lanes pass different arguments: lane %d pointer %p, "
                      "ldm %u, layout %d; lane %d pointer %p, ldm %u, layout %d", tid - base,
                      me.p, me.ldm, me.layout, l, o.p, o.ldm, o.layout);
    }
}

namespace {

void run_grid(dim3 grid, dim3 block, const std::function<void()> &fn)
{
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (fibers.size() < threads) {
        fibers.resize(threads);
        slot_mem.resize(threads);
        while (stacks.size() < threads) {
            char *s = (char *)malloc(STACK);
            if (!s) {
                fail(cudaErrorMemoryAllocation);
                return;
            }
            stacks.push_back(s);
        }
    }
    r1_emu_nthreads = (int)threads;
    r1_emu_slots = slot_mem.data();
    body = &fn;
    gridDim = grid;
    blockDim = block;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
                run_block();
            }
    body = nullptr;
}

/* a call a capture forbids, on stream s (or on any capturing stream when s is NULL: the
 * global capture mode): the capture is invalidated and the call fails */
std::vector<cudaStream_t> capturing;

bool forbidden_in_capture(cudaStream_t s)
{
    if (capturing.empty() || (s && !s->capture))
        return false;
    if (s)
        s->invalid = true;
    else
        for (cudaStream_t c : capturing)
            c->invalid = true;
    fail(cudaErrorStreamCaptureUnsupported);
    return true;
}

} // namespace

void r1_emu_run(dim3 grid, dim3 block, cudaStream_t s, std::function<void()> fn)
{
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (r1_emu_cur >= 0) {
        fprintf(stderr, "cuda-emu: a launch from inside a kernel\n");
        abort();
    }
    r1_emu_enqueue(s, [grid, block, fn = std::move(fn)]() { run_grid(grid, block, fn); });
}

/* ---- runtime ---------------------------------------------------------------------------- */

struct r1_emu_graph {
    std::vector<std::function<void()>> work;
};
struct r1_emu_graph_exec {
    std::vector<std::function<void()>> work;
};

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidValue);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (device != 0)
        return fail(cudaErrorInvalidValue);
    memset(prop, 0, sizeof(*prop));
    snprintf(prop->name, sizeof(prop->name), "r1 CUDA emulator (CPU)");
    prop->multiProcessorCount = 4;
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = (size_t)8 << 30;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    return last_error;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    }
    return "unknown error";
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    if (forbidden_in_capture(nullptr))
        return cudaErrorStreamCaptureUnsupported;
    /* 256-byte aligned, as cudaMalloc's; filled with NaN bytes so that reading memory no
     * one wrote shows */
    size_t n = (bytes + 255) / 256 * 256;
    *p = aligned_alloc(256, n ? n : 256);
    if (!*p)
        return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (forbidden_in_capture(nullptr))
        return cudaErrorStreamCaptureUnsupported;
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    return cudaMalloc(p, bytes);
}

cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s)
{
    r1_emu_enqueue(s, [p, value, bytes]() { memset(p, value, bytes); });
    return cudaSuccess;
}

/* during a capture only device-to-device copies (r1's host buffers are pageable) */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    if (kind != cudaMemcpyDeviceToDevice && forbidden_in_capture(s))
        return cudaErrorStreamCaptureUnsupported;
    r1_emu_enqueue(s, [dst, src, bytes]() { memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = new r1_emu_stream{nullptr, false};
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    if (forbidden_in_capture(s))
        return cudaErrorStreamCaptureUnsupported;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode)
{
    if (!s || s->capture)
        return fail(cudaErrorInvalidValue); /* the legacy stream, or already capturing */
    s->capture = new std::vector<std::function<void()>>();
    s->invalid = false;
    capturing.push_back(s);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
    *graph = nullptr;
    if (!s || !s->capture)
        return fail(cudaErrorInvalidValue);
    std::vector<std::function<void()>> *work = s->capture;
    s->capture = nullptr;
    for (size_t i = 0; i < capturing.size(); i++)
        if (capturing[i] == s) {
            capturing.erase(capturing.begin() + (long)i);
            break;
        }
    if (s->invalid) {
        delete work;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *graph = new r1_emu_graph{std::move(*work)};
    delete work;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long)
{
    if (!graph)
        return fail(cudaErrorInvalidValue);
    *exec = new r1_emu_graph_exec{graph->work};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
    if (!exec)
        return fail(cudaErrorInvalidValue);
    for (const std::function<void()> &w : exec->work)
        r1_emu_enqueue(s, w);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}
