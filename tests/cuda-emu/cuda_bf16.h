/* cuda_bf16.h - the toolkit's bfloat16 type and conversions as tests/cuda-emu provides them.
 *
 * Kernels of kernels/cuda built by the CUDA emulator (-DR1_CUDA_EMU) find this header in
 * place of the toolkit's.  Only what r1's kernels use: the type (its bit pattern is the top
 * 16 bits of an IEEE float), float <-> bf16 with round to nearest even, and the bit casts.
 * No arithmetic operators and no implicit conversions, so that a kernel that compiles here
 * uses nothing the toolkit's header would refuse without its conversions. */
#ifndef R1_CUDA_EMU_BF16_H
#define R1_CUDA_EMU_BF16_H

#include "cuda_runtime.h"

#include <type_traits>

/* 2 bytes, trivially copyable: memory holding bf16 bit patterns (uint16_t tiles, say) can
 * be read as __nv_bfloat16 through memcpy.  The bits are private, as the toolkit's are: a
 * kernel reaches them through the bit casts. */
struct __nv_bfloat16 {
    __nv_bfloat16() = default;

  private:
    unsigned short r1_emu_bits;
    friend unsigned short __bfloat16_as_ushort(const __nv_bfloat16 h);
    friend __nv_bfloat16 __ushort_as_bfloat16(const unsigned short i);
};
static_assert(sizeof(__nv_bfloat16) == 2 && std::is_trivially_copyable<__nv_bfloat16>::value,
              "__nv_bfloat16 is 2 trivially copyable bytes");

inline unsigned short __bfloat16_as_ushort(const __nv_bfloat16 h)
{
    return h.r1_emu_bits;
}

inline __nv_bfloat16 __ushort_as_bfloat16(const unsigned short i)
{
    __nv_bfloat16 h;
    h.r1_emu_bits = i;
    return h;
}

/* round to nearest, ties to even; a NaN stays a NaN (quietened, its sign kept) */
inline __nv_bfloat16 __float2bfloat16_rn(const float a)
{
    uint32_t u;
    memcpy(&u, &a, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return __ushort_as_bfloat16((unsigned short)((u >> 16) | 0x0040u));
    u += 0x7fffu + ((u >> 16) & 1u);
    return __ushort_as_bfloat16((unsigned short)(u >> 16));
}

inline float __bfloat162float(const __nv_bfloat16 a)
{
    uint32_t u = (uint32_t)__bfloat16_as_ushort(a) << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

#endif
