/* tensor.c - dtypes, tensor views, two-pass arenas and f32 <-> bf16/f16 conversion.
 *
 * Conventions:
 *  - narrowing conversions round to nearest, ties to even; NaN stays NaN (sign
 *    and the top payload bits kept, quiet bit set); values past the target's
 *    range become ±inf; f16 subnormals are produced and read exactly;
 *  - I32 in the bulk converters converts by value: to f32 as (float)i, from f32
 *    rounded to nearest even, saturated to the int32 range, NaN -> 0;
 *  - an arena view's start is aligned to R1_ARENA_ALIGN bytes relative to base
 *    (and base comes from ops->alloc, which is 64-byte aligned).  Taking more
 *    than was planned from a committed arena is a programming error: the view
 *    (or raw pointer) comes back with data NULL and used is left unchanged. */
#include "core/tensor.h"

#include <math.h>
#include <string.h>

#include "core/backend.h"
#include "core/err.h"

size_t r1_dtype_size(enum r1_dtype dt)
{
    switch (dt) {
    case R1_F32:
        return 4;
    case R1_BF16:
        return 2;
    case R1_F16:
        return 2;
    case R1_I32:
        return 4;
    default:
        return 0;
    }
}

const char *r1_dtype_name(enum r1_dtype dt)
{
    switch (dt) {
    case R1_F32:
        return "F32";
    case R1_BF16:
        return "BF16";
    case R1_F16:
        return "F16";
    case R1_I32:
        return "I32";
    default:
        return "?";
    }
}

int64_t r1_tensor_numel(const struct r1_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t r1_tensor_nbytes(const struct r1_tensor *t)
{
    return (size_t)r1_tensor_numel(t) * r1_dtype_size(t->dtype);
}

/* --- arenas ------------------------------------------------------------------ */

static size_t arena_align_up(size_t x)
{
    return (x + (R1_ARENA_ALIGN - 1)) & ~(size_t)(R1_ARENA_ALIGN - 1);
}

/* Reserves bytes at the next aligned offset; returns the offset, or SIZE_MAX when
 * a committed arena has no room (or the count would overflow). */
static size_t arena_reserve(struct r1_arena *a, size_t bytes)
{
    if (a->used > SIZE_MAX - (R1_ARENA_ALIGN - 1))
        return SIZE_MAX;
    size_t off = arena_align_up(a->used);
    if (bytes > SIZE_MAX - off)
        return SIZE_MAX;
    if (a->base && off + bytes > a->cap)
        return SIZE_MAX;
    a->used = off + bytes;
    return off;
}

void *r1_arena_take_bytes(struct r1_arena *a, size_t bytes)
{
    size_t off = arena_reserve(a, bytes);
    if (off == SIZE_MAX || !a->base)
        return NULL;
    return a->base + off;
}

struct r1_tensor r1_arena_take(struct r1_arena *a, enum r1_dtype dt, int ndim, const int64_t *shape)
{
    struct r1_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = dt;
    if (ndim < 0 || ndim > R1_TENSOR_MAX_DIMS || (ndim > 0 && !shape) || r1_dtype_size(dt) == 0)
        return t; /* programming error: data NULL, nothing reserved */
    t.ndim = ndim;
    /* numel with an overflow check, in size_t since that is what we allocate */
    size_t bytes = r1_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return t;
        t.shape[i] = shape[i];
        if ((uint64_t)shape[i] > SIZE_MAX || (shape[i] != 0 && bytes > SIZE_MAX / (size_t)shape[i]))
            return t;
        bytes *= (size_t)shape[i];
    }
    size_t off = arena_reserve(a, bytes);
    if (off != SIZE_MAX && a->base)
        t.data = a->base + off;
    return t;
}

int r1_arena_commit(struct r1_arena *a, struct r1_backend *be)
{
    if (!a || !be || !be->ops || !be->ops->alloc)
        return r1_err_set(R1_EINVAL, "arena commit: no backend (or backend without alloc) given");
    if (a->base)
        return r1_err_set(R1_ESTATE,
                          "arena commit: arena already committed (%zu bytes); "
                          "release it before planning again",
                          a->cap);
    if (a->used > SIZE_MAX - (R1_ARENA_ALIGN - 1))
        return r1_err_set(R1_ENOMEM, "arena commit: planned size %zu bytes overflows", a->used);
    /* at least one alignment unit so that an empty plan still gets a real base */
    size_t bytes = a->used ? arena_align_up(a->used) : R1_ARENA_ALIGN;
    void *p = be->ops->alloc(be->ctx, bytes);
    if (!p)
        return r1_err_set(R1_ENOMEM,
                          "arena commit: %s backend could not allocate %zu bytes (%.2f GiB); "
                          "reduce the batch size or sequence length",
                          be->ops->name ? be->ops->name : "?", bytes,
                          (double)bytes / (1024.0 * 1024.0 * 1024.0));
    a->be = be;
    a->base = p;
    a->cap = bytes;
    a->used = 0;
    be->arena_bytes += bytes;
    return R1_OK;
}

void r1_arena_release(struct r1_arena *a)
{
    if (!a)
        return;
    if (a->base && a->be && a->be->ops && a->be->ops->free) {
        a->be->ops->free(a->be->ctx, a->base);
        a->be->arena_bytes -= a->cap;
    }
    memset(a, 0, sizeof(*a));
}

/* --- scalar conversions -------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float r1_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t r1_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* ties to even; a carry out of the mantissa bumps the exponent, up to inf */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float r1_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13); /* inf, or NaN with its payload */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (mant << 13); /* rebias 15 -> 127 */
    } else if (mant == 0) {
        u = sign;
    } else {
        /* subnormal: value = mant * 2^-24; normalise into an f32 normal */
        uint32_t e = 113; /* exponent of 2^-14 in f32 bias */
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        u = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return f32_from_bits(u);
}

uint16_t r1_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t x = u & 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u)
            return sign | 0x7c00u;
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu)); /* quiet NaN */
    }
    if (x >= 0x477ff000u) /* >= 65520 rounds (ties to even) past 65504 */
        return sign | 0x7c00u;
    if (x < 0x38800000u) {
        /* below 2^-14: f16 subnormal (or zero), in units of 2^-24 */
        uint32_t e = x >> 23;
        if (e < 102) /* < 2^-25: rounds to zero */
            return sign;
        uint32_t mant = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++; /* may carry into the smallest normal, which is the right encoding */
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((x >> 23) - 112u) << 10 | ((x >> 13) & 0x3ffu);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* carry may bump the exponent; cannot reach inf (checked above) */
    return (uint16_t)(sign | h);
}

/* --- bulk conversions ------------------------------------------------------------- */

static int32_t f32_to_i32_sat(float f)
{
    if (isnan(f))
        return 0;
    if (f >= 2147483648.0f)
        return INT32_MAX;
    if (f <= -2147483648.0f)
        return INT32_MIN;
    return (int32_t)lrintf(f);
}

void r1_convert_to_f32(float *dst, const void *src, enum r1_dtype src_dt, int64_t n)
{
    switch (src_dt) {
    case R1_F32:
        if (n > 0 && (const void *)dst != src)
            memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case R1_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = r1_bf16_to_f32(s[i]);
        break;
    }
    case R1_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = r1_f16_to_f32(s[i]);
        break;
    }
    case R1_I32: {
        const int32_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    default:
        break;
    }
}

void r1_convert_from_f32(void *dst, enum r1_dtype dst_dt, const float *src, int64_t n)
{
    switch (dst_dt) {
    case R1_F32:
        if (n > 0 && dst != (const void *)src)
            memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case R1_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = r1_f32_to_bf16(src[i]);
        break;
    }
    case R1_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = r1_f32_to_f16(src[i]);
        break;
    }
    case R1_I32: {
        int32_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = f32_to_i32_sat(src[i]);
        break;
    }
    default:
        break;
    }
}
