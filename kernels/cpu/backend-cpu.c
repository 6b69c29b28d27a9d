/* backend-cpu.c - the CPU reference backend: ops table, ctx, memory, scratch.
 *
 * Memory is host memory, so upload/download/copy are memcpy.  alloc returns
 * 64-byte aligned, zeroed blocks.  The op kernels live in the other files of
 * kernels/cpu (one per op family); cpu-ops.h lists them.
 *
 * r1_backend_cpu_create returns a struct r1_backend the caller owns: release
 * frees the ctx, the registry (r1_backend_free) frees the struct.  The OpenBLAS
 * thread pool is process-wide, so the last backend created sets its size.
 */
#include "core/backend.h"
#include "core/err.h"
#include "kernels/cpu/cpu-ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    size_t n = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple */
    if (n == 0)
        n = 64;
    void *p = aligned_alloc(64, n);
    if (p)
        memset(p, 0, n);
    return p;
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void cpu_memcpy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memcpy(dst, src, bytes);
}

static void cpu_zero(void *ctx, void *p, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memset(p, 0, bytes);
}

static void cpu_release(void *ctx)
{
    struct r1_cpu *cpu = ctx;
    if (!cpu)
        return;
    free(cpu->scratch);
    for (int i = 0; i < R1_CPU_WIDE_SLOTS; i++)
        free(cpu->wide[i]);
    free(cpu);
}

float *r1_cpu_wide(struct r1_cpu *cpu, int slot, size_t floats)
{
    if (floats <= cpu->wide_cap[slot] && cpu->wide[slot])
        return cpu->wide[slot];
    size_t n = (floats + 15) / 16 * 16;
    float *p = n && n <= SIZE_MAX / sizeof(float) ? aligned_alloc(64, n * sizeof(float)) : NULL;
    if (!p) {
        r1_err_set(R1_ENOMEM, "backend-cpu: cannot allocate %zu MiB for a bf16 matmul's operands",
                   floats * sizeof(float) >> 20);
        return NULL;
    }
    free(cpu->wide[slot]);
    cpu->wide[slot] = p;
    cpu->wide_cap[slot] = n;
    return p;
}

float *r1_cpu_scratch(struct r1_cpu *cpu, size_t floats_per_thread)
{
    size_t stride = (floats_per_thread + 15) / 16 * 16;
    if (stride <= cpu->scratch_stride && cpu->scratch)
        return cpu->scratch;
    size_t total = stride * (size_t)cpu->threads;
    if (stride == 0 || total / (size_t)cpu->threads != stride || total > SIZE_MAX / sizeof(float)) {
        r1_err_set(R1_ENOMEM, "backend-cpu: scratch request of %zu floats per thread overflows",
                   floats_per_thread);
        return NULL;
    }
    float *p = aligned_alloc(64, total * sizeof(float));
    if (!p) {
        r1_err_set(R1_ENOMEM,
                   "backend-cpu: cannot allocate %zu MiB of attention scratch; "
                   "use fewer threads or a shorter sequence",
                   total * sizeof(float) >> 20);
        return NULL;
    }
    free(cpu->scratch);
    cpu->scratch = p;
    cpu->scratch_stride = stride;
    return p;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* the scratch the ops will need for calls up to *s, allocated now; *held: the bytes held */
static int cpu_reserve(void *ctx, const struct r1_op_sizes *s, size_t *held)
{
    struct r1_cpu *cpu = ctx;
    size_t per = 0;
    *held = 0;
    if (s->T > 0)
        per = max_sz(per, r1_cpu_attention_scratch(s->T, s->D));
    if (s->cache_len > 0)
        per = max_sz(per, r1_cpu_attention_cached_scratch(s->cache_len, s->D));
    if (s->bf16_weights)
        per = max_sz(per, r1_cpu_matmul_bf16_scratch(s->width > s->hidden ? s->width : s->hidden));
    if (per && !r1_cpu_scratch(cpu, per))
        return R1_ENOMEM;
    /* matmul_forward_bf16's bf16-rounded input rows */
    int64_t k_max = s->width > s->hidden ? s->width : s->hidden;
    if (s->bf16_weights && !r1_cpu_wide(cpu, 0, r1_cpu_matmul_bf16_rows(s->rows, k_max)))
        return R1_ENOMEM;
    if (s->bf16) { /* matmul16's widened operands: inputs, weights, output gradients */
        size_t rows = (size_t)s->rows, width = (size_t)s->width, c = (size_t)s->hidden;
        size_t heads = (size_t)s->head_rows * (size_t)s->vocab;
        if (!r1_cpu_wide(cpu, 0, rows * width) ||
            !r1_cpu_wide(cpu, 1, max_sz(width * c, (size_t)s->vocab * c)) ||
            !r1_cpu_wide(cpu, 2, max_sz(rows * width, heads)))
            return R1_ENOMEM;
    }
    /* training (attention over T): the backward's din products that are added, (rows, C) */
    if (s->T > 0 && !r1_cpu_wide(cpu, R1_CPU_WIDE_ACC, (size_t)s->rows * (size_t)s->hidden))
        return R1_ENOMEM;
    size_t bytes = cpu->scratch ? cpu->scratch_stride * (size_t)cpu->threads * sizeof(float) : 0;
    for (int i = 0; i < R1_CPU_WIDE_SLOTS; i++)
        bytes += cpu->wide[i] ? cpu->wide_cap[i] * sizeof(float) : 0;
    *held = bytes;
    return 0;
}

void r1_cpu_poison(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
}

static const struct r1_backend_ops cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .sync = NULL,
    .release = cpu_release,
    .reserve = cpu_reserve,
    .matmul_forward = r1_cpu_matmul_forward,
    .matmul_backward = r1_cpu_matmul_backward,
    .matmul_forward_bf16 = r1_cpu_matmul_forward_bf16,
    .convert_bf16 = r1_cpu_convert_bf16,
    .matmul16_forward = r1_cpu_matmul16_forward,
    .matmul16_backward = r1_cpu_matmul16_backward,
    .embedding_forward = r1_cpu_embedding_forward,
    .embedding_backward = r1_cpu_embedding_backward,
    .rmsnorm_forward = r1_cpu_rmsnorm_forward,
    .rmsnorm_backward = r1_cpu_rmsnorm_backward,
    .rope_forward = r1_cpu_rope_forward,
    .rope_backward = r1_cpu_rope_backward,
    .attention_forward = r1_cpu_attention_forward,
    .attention_backward = r1_cpu_attention_backward,
    .attention16_forward = r1_cpu_attention16_forward,
    .attention16_backward = r1_cpu_attention16_backward,
    .kv_store = r1_cpu_kv_store,
    .attention_cached = r1_cpu_attention_cached,
    .kv_store16 = r1_cpu_kv_store16,
    .attention_cached16 = r1_cpu_attention_cached16,
    .swiglu_forward = r1_cpu_swiglu_forward,
    .swiglu_backward = r1_cpu_swiglu_backward,
    .add = r1_cpu_add,
    .scale = r1_cpu_scale,
    .sumsq = r1_cpu_sumsq,
    .logprobs_forward = r1_cpu_logprobs_forward,
    .logprobs_backward = r1_cpu_logprobs_backward,
    .pg_loss = r1_cpu_pg_loss,
    .adamw_update = r1_cpu_adamw_update,
};

int r1_backend_cpu_create(struct r1_backend **out, int threads)
{
    *out = NULL;
    if (threads <= 0)
        threads = omp_get_max_threads();
    if (threads <= 0)
        threads = 1;
    struct r1_backend *be = malloc(sizeof(*be));
    struct r1_cpu *cpu = calloc(1, sizeof(*cpu));
    if (!be || !cpu) {
        free(be);
        free(cpu);
        return r1_err_set(R1_ENOMEM, "backend-cpu: out of memory creating the CPU backend");
    }
    cpu->threads = threads;
    omp_set_num_threads(threads);
#ifdef OPENBLAS_VERSION
    /* sgemm is split across our OpenMP team (linear.c); OpenBLAS's own threads would
     * compete with it */
    openblas_set_num_threads(1);
#endif
    be->ops = &cpu_ops;
    be->ctx = cpu;
    be->arena_bytes = 0;
    *out = be;
    return 0;
}
