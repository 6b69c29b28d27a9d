/* emu.cc - the CUDA emulator's runtime: device memory, streams, errors, and launches with
 * one fiber per CUDA thread (see cuda_runtime.h).
 *
 * A launch runs its blocks in order.  A block's fibers run in thread order (odd blocks in
 * reverse thread order), each until it reaches a barrier or returns; then the barriers
 * whose threads have all arrived are released (a block barrier: every live thread of the
 * block; a warp barrier: every live lane of the warp) and the round repeats.  Threads that returned count as arrived, as on
 * the GPU.  A round that releases nothing while threads wait is a deadlock: a barrier some
 * threads never reach.  It is reported with the kernel's shape and aborts the process. */
#include "cuda_runtime.h"

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

struct fiber {
#ifdef R1_EMU_ASM_SWITCH
    void *sp; /* saved stack pointer while switched out */
#else
    ucontext_t ctx;
#endif
    enum state st;
};

const size_t STACK = 256 * 1024;

cudaError_t last_error = cudaSuccess;
#ifdef R1_EMU_ASM_SWITCH
void *sched_sp;
#else
ucontext_t sched;
#endif
std::vector<fiber> fibers;
std::vector<char *> stacks;
std::vector<uint64_t> slots;
int cur = -1, nthreads = 0;
const std::function<void()> *body;

cudaError_t fail(cudaError_t e)
{
    if (last_error == cudaSuccess)
        last_error = e;
    return e;
}

void set_coords(int tid)
{
    threadIdx.x = (unsigned)tid % blockDim.x;
    threadIdx.y = (unsigned)tid / blockDim.x % blockDim.y;
    threadIdx.z = (unsigned)tid / (blockDim.x * blockDim.y);
}

/* from the running fiber back to the scheduler */
void to_scheduler(void)
{
#ifdef R1_EMU_ASM_SWITCH
    r1_emu_switch(&fibers[cur].sp, sched_sp);
#else
    if (swapcontext(&fibers[cur].ctx, &sched) != 0)
        abort();
#endif
}

#ifdef R1_EMU_ASM_SWITCH
void trampoline(void)
{
    int tid = cur;
    (*body)();
    fibers[tid].st = DONE;
    to_scheduler(); /* never resumed */
    abort();
}
#else
void trampoline(int tid)
{
    (*body)();
    fibers[tid].st = DONE; /* uc_link returns to the scheduler */
}
#endif

void wait_here(enum state st)
{
    if (cur < 0) {
        fprintf(stderr, "cuda-emu: a barrier outside a kernel\n");
        abort();
    }
    fibers[cur].st = st;
    to_scheduler();
}

void run_block(void)
{
    for (int t = 0; t < nthreads; t++) {
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
        f.sp = sp;
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks[t];
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, (void (*)(void))trampoline, 1, t);
#endif
        f.st = RUN;
    }
    /* odd blocks run their threads last to first: a read that races with another
     * thread's write (no barrier between) then sees the stale value in one of the two
     * orders, as long as the grid has two blocks */
    unsigned long long row = blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z;
    bool reverse = (blockIdx.x + (unsigned long long)gridDim.x * row) & 1;
    for (;;) {
        for (int i = 0; i < nthreads; i++) {
            int t = reverse ? nthreads - 1 - i : i;
            if (fibers[t].st == RUN) {
                cur = t;
                set_coords(t);
#ifdef R1_EMU_ASM_SWITCH
                r1_emu_switch(&sched_sp, fibers[t].sp);
#else
                if (swapcontext(&sched, &fibers[t].ctx) != 0)
                    abort();
#endif
            }
        }
        cur = -1;
        int live = 0, at_block = 0;
        for (int t = 0; t < nthreads; t++) {
            live += fibers[t].st != DONE;
            at_block += fibers[t].st == WAIT_BLOCK;
        }
        if (live == 0)
            return;
        bool released = false;
        if (at_block == live) {
            for (int t = 0; t < nthreads; t++)
                if (fibers[t].st == WAIT_BLOCK)
                    fibers[t].st = RUN;
            released = true;
        } else {
            for (int w = 0; w * 32 < nthreads; w++) {
                int lo = w * 32, hi = lo + 32 < nthreads ? lo + 32 : nthreads, n = 0, waiting = 0;
                for (int t = lo; t < hi; t++) {
                    n += fibers[t].st != DONE;
                    waiting += fibers[t].st == WAIT_WARP;
                }
                if (n > 0 && waiting == n) {
                    for (int t = lo; t < hi; t++)
                        if (fibers[t].st == WAIT_WARP)
                            fibers[t].st = RUN;
                    released = true;
                }
            }
        }
        if (!released) {
            fprintf(stderr,
                    "cuda-emu: deadlock in block (%u,%u,%u) of a grid (%u,%u,%u) x block "
                    "(%u,%u,%u): %d of %d threads wait at __syncthreads, the rest at a warp "
                    "shuffle with lanes elsewhere\n",
                    blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z,
                    blockDim.x, blockDim.y, blockDim.z, at_block, live);
            abort();
        }
    }
}

} // namespace

void r1_emu_syncthreads(void)
{
    wait_here(WAIT_BLOCK);
}

void r1_emu_syncwarp(void)
{
    wait_here(WAIT_WARP);
}

uint64_t *r1_emu_slot(int tid)
{
    return &slots[(size_t)tid];
}

int r1_emu_tid(void)
{
    return cur;
}

int r1_emu_block_threads(void)
{
    return nthreads;
}

void r1_emu_run(dim3 grid, dim3 block, const std::function<void()> &fn)
{
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (cur >= 0) {
        fprintf(stderr, "cuda-emu: a launch from inside a kernel\n");
        abort();
    }
    nthreads = (int)threads;
    if (fibers.size() < threads) {
        fibers.resize(threads);
        slots.resize(threads);
        while (stacks.size() < threads) {
            char *s = (char *)malloc(STACK);
            if (!s) {
                fail(cudaErrorMemoryAllocation);
                return;
            }
            stacks.push_back(s);
        }
    }
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

/* ---- runtime ---------------------------------------------------------------------------- */

struct r1_emu_stream {
    int unused;
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
    }
    return "unknown error";
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
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

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t)
{
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t)
{
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = new r1_emu_stream();
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t)
{
    return cudaSuccess;
}
