/* tensor.h - dtypes, tensor views and arenas.
 *
 * A tensor is a view (data pointer, dtype, up to 4 dims, row-major, last dim
 * contiguous) into an arena.  There is one arena per purpose (parameters,
 * gradients, optimizer state, activations), allocated once through the backend
 * before step 0; the step loop never allocates.
 *
 * Arenas are planned in two passes: a fresh arena (base == NULL) only counts
 * bytes; r1_arena_commit() then allocates that many bytes and the same sequence
 * of r1_arena_take() calls is replayed to hand out real views. */
#ifndef R1_TENSOR_H
#define R1_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum r1_dtype { R1_F32 = 0, R1_BF16, R1_F16, R1_I32, R1_DTYPE_COUNT };

#define R1_TENSOR_MAX_DIMS 4
#define R1_ARENA_ALIGN 64

struct r1_backend;

struct r1_tensor {
    void *data;
    enum r1_dtype dtype;
    int ndim;
    int64_t shape[R1_TENSOR_MAX_DIMS];
};

size_t r1_dtype_size(enum r1_dtype dt);
const char *r1_dtype_name(enum r1_dtype dt);
int64_t r1_tensor_numel(const struct r1_tensor *t);
size_t r1_tensor_nbytes(const struct r1_tensor *t);

struct r1_arena {
    struct r1_backend *be; /* owner of the memory; NULL while planning */
    char *base;            /* NULL while planning */
    size_t cap;            /* bytes allocated */
    size_t used;           /* bytes handed out (or counted while planning) */
};

/* Hands out a view of ndim dims; while planning, data is NULL and only used grows. */
struct r1_tensor r1_arena_take(struct r1_arena *a, enum r1_dtype dt, int ndim, const int64_t *shape);
/* Raw bytes (aligned), NULL while planning. */
void *r1_arena_take_bytes(struct r1_arena *a, size_t bytes);
/* Allocates a->used bytes (zeroed) on be and rewinds used to 0 for the replay pass. */
int r1_arena_commit(struct r1_arena *a, struct r1_backend *be);
void r1_arena_release(struct r1_arena *a);

/* Scalar conversions (round to nearest even for narrowing). */
float r1_bf16_to_f32(uint16_t h);
uint16_t r1_f32_to_bf16(float f);
float r1_f16_to_f32(uint16_t h);
uint16_t r1_f32_to_f16(float f);
/* Converts n elements of src (dtype src_dt) to f32 in dst, or f32 to dst_dt. */
void r1_convert_to_f32(float *dst, const void *src, enum r1_dtype src_dt, int64_t n);
void r1_convert_from_f32(void *dst, enum r1_dtype dst_dt, const float *src, int64_t n);

#endif
