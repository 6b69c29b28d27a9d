/* gguf-quant.c - ggml tensor types to f32: F32, F16, BF16 and the block
 * quantizations Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (32 elements a block) and the
 * super-blocks Q4_K, Q6_K (256 elements), written from ggml's block definitions.
 *
 * Every block scale is an f16 (d, and m or dmin); quants are unsigned nibbles,
 * 5-bit values with the fifth bit packed apart, or signed bytes.  Element j of a
 * 32-block pairs the low nibble of byte j (element j) with its high nibble
 * (element j + 16). */
#include <string.h>

#include "core/err.h"
#include "core/gguf.h"
#include "core/tensor.h"

static float f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return r1_f16_to_f32(h);
}

int r1_ggml_block_size(int type)
{
    switch (type) {
    case R1_GGML_F32:
    case R1_GGML_F16:
    case R1_GGML_BF16:
        return 1;
    case R1_GGML_Q4_0:
    case R1_GGML_Q4_1:
    case R1_GGML_Q5_0:
    case R1_GGML_Q5_1:
    case R1_GGML_Q8_0:
        return 32;
    case R1_GGML_Q4_K:
    case R1_GGML_Q6_K:
        return 256;
    default:
        return 0;
    }
}

size_t r1_ggml_block_bytes(int type)
{
    switch (type) {
    case R1_GGML_F32:
        return 4;
    case R1_GGML_F16:
    case R1_GGML_BF16:
        return 2;
    case R1_GGML_Q4_0:
        return 2 + 16; /* d, 32 nibbles */
    case R1_GGML_Q4_1:
        return 2 + 2 + 16; /* d, m, 32 nibbles */
    case R1_GGML_Q5_0:
        return 2 + 4 + 16; /* d, fifth bits, nibbles */
    case R1_GGML_Q5_1:
        return 2 + 2 + 4 + 16; /* d, m, fifth bits, nibbles */
    case R1_GGML_Q8_0:
        return 2 + 32; /* d, 32 int8 */
    case R1_GGML_Q4_K:
        return 2 + 2 + 12 + 128; /* d, dmin, 8 packed 6-bit scale/min, nibbles */
    case R1_GGML_Q6_K:
        return 128 + 64 + 16 + 2; /* low nibbles, high 2 bits, int8 scales, d */
    default:
        return 0;
    }
}

/* Q4_K: sub-block j's 6-bit scale and min, packed in 12 bytes. */
static void q4k_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dq_q4k(const uint8_t *b, float *y)
{
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32, y += 64) {
        int sc, m;
        q4k_scale_min(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        q4k_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            y[l] = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++)
            y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void dq_q6k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

static void dq_block32(int type, const uint8_t *b, float *y)
{
    float d = f16(b);
    switch (type) {
    case R1_GGML_Q8_0:
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)b[2 + j] * d;
        break;
    case R1_GGML_Q4_0:
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
        break;
    case R1_GGML_Q4_1: {
        float m = f16(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 0xF) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
        break;
    }
    case R1_GGML_Q5_0:
    case R1_GGML_Q5_1: {
        int q51 = type == R1_GGML_Q5_1;
        float m = q51 ? f16(b + 2) : 0.0f;
        uint32_t qh;
        memcpy(&qh, b + 2 + 2 * q51, 4);
        const uint8_t *qs = b + 6 + 2 * q51;
        int off = q51 ? 0 : 16;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
            int x0 = ((qs[j] & 0xF) | h0) - off, x1 = ((qs[j] >> 4) | h1) - off;
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        }
        break;
    }
    default:
        break;
    }
}

int r1_ggml_dequantize(int type, const void *src, float *dst, int64_t n)
{
    int bs = r1_ggml_block_size(type);
    if (bs == 0)
        return r1_err_set(R1_EFORMAT, "ggml type %s cannot be read by r1", r1_ggml_type_name(type));
    if (n % bs != 0)
        return r1_err_set(R1_EINVAL, "%lld elements are not whole %s blocks of %d", (long long)n,
                          r1_ggml_type_name(type), bs);
    const uint8_t *s = src;
    size_t bb = r1_ggml_block_bytes(type);
    int64_t nb = n / bs;
    switch (type) {
    case R1_GGML_F32:
        memcpy(dst, src, (size_t)n * 4);
        return 0;
    case R1_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = f16(s + 2 * i);
        return 0;
    case R1_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = r1_bf16_to_f32(h);
        }
        return 0;
    case R1_GGML_Q4_K:
#pragma omp parallel for schedule(static) if (nb >= 1024)
        for (int64_t i = 0; i < nb; i++)
            dq_q4k(s + (size_t)i * bb, dst + i * 256);
        return 0;
    case R1_GGML_Q6_K:
#pragma omp parallel for schedule(static) if (nb >= 1024)
        for (int64_t i = 0; i < nb; i++)
            dq_q6k(s + (size_t)i * bb, dst + i * 256);
        return 0;
    default:
#pragma omp parallel for schedule(static) if (nb >= 8192)
        for (int64_t i = 0; i < nb; i++)
            dq_block32(type, s + (size_t)i * bb, dst + i * 32);
        return 0;
    }
}
